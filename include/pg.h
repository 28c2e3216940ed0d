/* pg.h -- one PostgreSQL connection driven by the libuv loop (libpq's async API).
 *
 * Connects with PQconnectStartParams/PQconnectPoll, sends one query at a
 * time with PQsendQuery(Params), reads with PQconsumeInput/PQgetResult, all
 * on uv_poll readiness: nothing here ever blocks the loop. A broken
 * connection is re-established with capped exponential backoff and jitter.
 */
#ifndef BF_PG_H
#define BF_PG_H

#include <libpq-fe.h>
#include <stdint.h>
#include <uv.h>

#include "backoff.h"

typedef struct bf_pg bf_pg;

/* How soon a connection notices that its peer is gone, all derived from the
 * lease (engine.lease_s) by bf_pg_liveness_for_lease(), which explains the
 * arithmetic. Values are as libpq's connection options take them. */
typedef struct bf_pg_liveness {
	int keepalives_idle_s;	   /* silence before the first keepalive probe */
	int keepalives_interval_s; /* between unanswered probes */
	int keepalives_count;	   /* unanswered probes before the connection is dropped */
	int tcp_user_timeout_ms;   /* data sent but unacknowledged this long: dropped */
	/* statement_timeout of the daemon's own queries (claims, renewals,
	 * samples, status); capped by batch.statement_timeout_ms elsewhere */
	int control_statement_timeout_ms;
	/* a query unanswered this long past the server's own bound (its
	 * statement_timeouts) means a peer that is alive for TCP but dead to
	 * us (a proxy whose server is gone) */
	int answer_margin_ms;
} bf_pg_liveness;

/* Fills out for a lease of lease_s seconds (<= 0: the default, 30). */
void bf_pg_liveness_for_lease(bf_pg_liveness *out, int lease_s);

typedef struct bf_pg_result {
	PGresult *res;	      /* the query's last result; NULL if the connection broke */
	int ok;		      /* 1 when the query succeeded */
	const char *sqlstate; /* on error: the SQLSTATE; NULL when the connection broke */
	const char *message;  /* on error: the primary message; "" on success */
} bf_pg_result;

/* r and everything it points to live only during the callback. */
typedef void (*bf_pg_query_cb)(bf_pg *pg, const bf_pg_result *r, void *arg);
/* up = 1: connected and init_sql done, queries may be sent; up = 0: lost. */
typedef void (*bf_pg_event_cb)(bf_pg *pg, int up, void *arg);
typedef void (*bf_pg_notify_cb)(bf_pg *pg, const char *channel, const char *payload, void *arg);
typedef void (*bf_pg_close_cb)(bf_pg *pg, void *arg);

typedef struct bf_pg_options {
	const char *name;	      /* for the log: "listener", "job \"x\"" */
	const char *conninfo;	      /* libpq conninfo; may be "" */
	const char *application_name; /* overrides the conninfo's */
	const char *init_sql;	      /* run after every connect, before "up"; may be NULL */
	int connect_timeout_ms;
	/* The longest a live server may take to answer one query string (the
	 * statement_timeouts it runs under). Past it and the lease's answer
	 * margin, the peer is presumed dead (a failover, a silent partition)
	 * and the connection is dropped. 0: no deadline. */
	int server_timeout_ms;
	/* engine.lease_s: keepalives, tcp_user_timeout and the answer margin
	 * derive from it (bf_pg_liveness_for_lease); <= 0: the default lease.
	 * The operator's conninfo keeps any of those options it sets. */
	int lease_s;
	int backoff_initial_ms;
	int backoff_max_ms;
	bf_pg_event_cb on_event;
	bf_pg_notify_cb on_notify;
	void *arg;
} bf_pg_options;

typedef enum bf_pg_state {
	BF_PG_STOPPED,
	BF_PG_RESOLVING, /* host names being resolved off the loop (pg_resolve.h) */
	BF_PG_CONNECTING,
	BF_PG_INITIALIZING,
	BF_PG_READY,
	BF_PG_BUSY,
	BF_PG_BACKOFF,
	BF_PG_CLOSING,
} bf_pg_state;

struct bf_pg {
	uv_loop_t *loop;
	char *name;
	char *conninfo;
	char *application_name;
	char *init_sql;
	int connect_timeout_ms;
	int query_timeout_ms; /* server_timeout_ms + the answer margin; 0: none */
	bf_pg_liveness liveness;
	bf_pg_event_cb on_event;
	bf_pg_notify_cb on_notify;
	void *arg;

	bf_pg_state state;
	PGconn *conn;
	uv_poll_t *poll; /* heap: replaced whenever libpq may have changed its socket */
	int poll_events;
	uv_timer_t timer; /* connect timeout, query deadline, reconnect backoff */
	bf_backoff backoff;
	int handles_open; /* timer + polls + a name lookup not yet through their callback */
	struct bf_pg_resolution *resolution; /* the lookup this connect attempt waits for */
	int backend_pid;
	char last_error[512]; /* why the last attempt or connection failed; "" once up */

	bf_pg_query_cb query_cb;
	void *query_arg;
	uint64_t queries_sent;	/* tells a query from the next one its callback sends */
	PGresult *query_result; /* the result kept for query_cb: the error one if any */

	bf_pg_close_cb close_cb;
	void *close_arg;
};

/* Sets up pg; copies every string in opts. Returns 0, or a negative libuv
 * error with nothing to clean up. */
int bf_pg_init(bf_pg *pg, uv_loop_t *loop, const bf_pg_options *opts);

/* Starts connecting (and keeps reconnecting until closed). */
void bf_pg_start(bf_pg *pg);

/* Sends one query. nparams == 0 with params == NULL uses the simple query
 * protocol (several statements allowed); otherwise parameters are text.
 * Returns 0, or -1 when the connection is not ready (nothing was sent and
 * cb will not be called). cb is called exactly once otherwise, also when
 * the connection breaks (r->res == NULL), but not after bf_pg_close. */
int bf_pg_query(bf_pg *pg, const char *sql, int nparams, const char *const *params,
		bf_pg_query_cb cb, void *arg);

/* s as an SQL string literal for this connection (quotes included), in
 * malloc'd memory; NULL when not connected, out of memory, or s is not valid
 * in the connection's encoding. */
char *bf_pg_escape_literal(bf_pg *pg, const char *s);

int bf_pg_is_ready(const bf_pg *pg);
int bf_pg_is_busy(const bf_pg *pg);

/* A reload: the session SQL run after every (re)connect and the query
 * deadline (as in bf_pg_options), from the next query on; the keepalive
 * options from the next connect on. */
void bf_pg_reconfigure(bf_pg *pg, const char *init_sql, int server_timeout_ms, int lease_s);

/* The application_name of the next connection (a reconnect); the caller
 * sets it on the live one itself. Kept when out of memory. */
void bf_pg_set_application_name(bf_pg *pg, const char *name);

/* Closes the connection and every handle; cb (may be NULL) runs once the
 * last handle is closed, after which pg may be freed. A pending query's cb
 * is never called. */
void bf_pg_close(bf_pg *pg, bf_pg_close_cb cb, void *arg);

#endif
