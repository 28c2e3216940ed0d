/* pg_resolve.h -- the host names of a conninfo, resolved off the loop for libpq.
 *
 * libpq resolves host names with a blocking getaddrinfo() unless hostaddr is
 * given. Before each connect attempt, the names the operator's conninfo (or
 * PGHOST) lists are looked up one after the other on libuv's thread pool and
 * handed back as libpq's host, hostaddr and port lists: host still names the
 * server for TLS verification and .pgpass, hostaddr spares libpq the lookup.
 * A name that does not resolve is left out (logged as a warning), as libpq
 * itself skips it, so that the other hosts of a failover list are still tried.
 */
#ifndef BF_PG_RESOLVE_H
#define BF_PG_RESOLVE_H

#include <uv.h>

typedef struct bf_pg_resolution bf_pg_resolution;

typedef enum bf_pg_resolve_outcome {
	BF_PG_RESOLVED,		/* host, hostaddr (and port) are set */
	BF_PG_RESOLVE_FAILED,	/* error says why; no connect attempt possible */
	BF_PG_RESOLVE_CANCELLED /* bf_pg_resolve_cancel() was called */
} bf_pg_resolve_outcome;

typedef struct bf_pg_resolve_result {
	bf_pg_resolve_outcome outcome;
	/* BF_PG_RESOLVED: libpq's host, hostaddr and port lists, which line up
	 * (a name with several addresses stands as many times in each); port
	 * is NULL when the conninfo's one port serves every host. */
	const char *host;
	const char *hostaddr;
	const char *port;
	const char *error; /* BF_PG_RESOLVE_FAILED: for the log and last_error */
} bf_pg_resolve_result;

/* Runs on the loop, never before bf_pg_resolve_start() returns. r and every
 * string it points to live only during the call; the resolution is freed
 * when cb returns, so cb must not cancel it. */
typedef void (*bf_pg_resolve_cb)(const bf_pg_resolve_result *r, void *arg);

/* Starts looking up the host names that conninfo (or PGHOST) lists. Three
 * outcomes:
 *  - 0 and *out set: cb runs exactly once, later (also after a cancel);
 *  - 0 and *out NULL: nothing to look up (unix sockets, IP addresses,
 *    hostaddr or a service given, a conninfo libpq will refuse, or no memory
 *    to plan the lookups): connect with conninfo as it is; cb never runs;
 *  - a negative libuv error: the first lookup could not start; nothing to
 *    free, cb never runs.
 * log_name prefixes the log lines ("listener", "job \"x\"") and must stay
 * valid until cb has run; conninfo is only read during the call. */
int bf_pg_resolve_start(bf_pg_resolution **out, uv_loop_t *loop, const char *conninfo,
			const char *log_name, bf_pg_resolve_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Abandons res (before its cb has run): the lookup under way is cancelled if
 * it has not begun, else left to finish and ignored, and cb runs with
 * BF_PG_RESOLVE_CANCELLED once it is through; nothing is logged after this. */
void bf_pg_resolve_cancel(bf_pg_resolution *res);

#endif
