/* pg.c -- one PostgreSQL connection on the libuv loop, never blocking it. */
#include "pg.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "pg_resolve.h"

static void pg_poll_cb(uv_poll_t *handle, int status, int events);
static void pg_connect_begin(bf_pg *pg);
static void pg_fail(bf_pg *pg, const char *why);

static char *pg_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void pg_release_one(bf_pg *pg)
{
	if (--pg->handles_open == 0 && pg->state == BF_PG_CLOSING) {
		bf_pg_close_cb cb = pg->close_cb;

		pg->state = BF_PG_STOPPED;
		free(pg->name);
		free(pg->conninfo);
		free(pg->application_name);
		free(pg->init_sql);
		pg->name = pg->conninfo = pg->application_name = pg->init_sql = NULL;
		if (cb)
			cb(pg, pg->close_arg);
	}
}

static void pg_handle_closed(uv_handle_t *handle)
{
	bf_pg *pg = handle->data;

	if (handle->type == UV_POLL)
		free(handle);
	pg_release_one(pg);
}

static void pg_poll_stop(bf_pg *pg)
{
	if (!pg->poll)
		return;
	/* uv_close removes the fd from epoll at once, so libpq may close or
	 * replace the socket right after this returns. */
	uv_close((uv_handle_t *)pg->poll, pg_handle_closed);
	pg->poll = NULL;
	pg->poll_events = 0;
}

/* Watches libpq's current socket for events. During connect libpq may switch
 * to a new socket (another host, SSL fallback) that can even reuse the old fd
 * number, so the handle is recreated rather than trusted across calls. */
static int pg_poll_watch(bf_pg *pg, int events, int fresh)
{
	int fd = PQsocket(pg->conn);

	if (fd < 0)
		return -1;
	if (fresh)
		pg_poll_stop(pg);
	if (!pg->poll) {
		pg->poll = malloc(sizeof(*pg->poll));
		if (!pg->poll)
			return -1;
		if (uv_poll_init(pg->loop, pg->poll, fd) != 0) {
			free(pg->poll);
			pg->poll = NULL;
			return -1;
		}
		pg->poll->data = pg;
		pg->handles_open++;
		pg->poll_events = 0;
	}
	if (pg->poll_events != events) {
		if (uv_poll_start(pg->poll, events, pg_poll_cb) != 0)
			return -1;
		pg->poll_events = events;
	}
	return 0;
}

static void pg_teardown(bf_pg *pg)
{
	if (pg->resolution) {
		/* Its callback still comes, and releases the handle count. */
		bf_pg_resolve_cancel(pg->resolution);
		pg->resolution = NULL;
	}
	pg_poll_stop(pg);
	if (pg->conn) {
		PQfinish(pg->conn);
		pg->conn = NULL;
	}
	if (pg->query_result) {
		PQclear(pg->query_result);
		pg->query_result = NULL;
	}
	pg->backend_pid = 0;
}

static void pg_reconnect_timer_cb(uv_timer_t *timer)
{
	bf_pg *pg = timer->data;

	if (pg->state == BF_PG_BACKOFF)
		pg_connect_begin(pg);
}

static void pg_connect_timeout_cb(uv_timer_t *timer)
{
	bf_pg *pg = timer->data;

	if (pg->state == BF_PG_RESOLVING || pg->state == BF_PG_CONNECTING ||
	    pg->state == BF_PG_INITIALIZING)
		pg_fail(pg, "connection attempt timed out");
}

/* The connection is gone (or never came): clean up, schedule a reconnect,
 * then tell the owner: first the query in flight (its own result when the
 * server sent one before closing, else a broken-connection result), then
 * the "down" event. */
static void pg_fail_with(bf_pg *pg, const char *why, bf_pg_query_cb cb, void *cb_arg,
			 const bf_pg_result *result)
{
	char message[512];
	int was_up = pg->state == BF_PG_READY || pg->state == BF_PG_BUSY;

	if (pg->conn && PQerrorMessage(pg->conn)[0])
		snprintf(message, sizeof(message), "%s: %s", why, PQerrorMessage(pg->conn));
	else
		snprintf(message, sizeof(message), "%s", why);
	/* libpq messages end in newlines; the log wants one line. */
	for (char *p = message + strlen(message); p > message && (p[-1] == '\n' || p[-1] == ' ');)
		*--p = '\0';

	snprintf(pg->last_error, sizeof(pg->last_error), "%s", message);
	pg_teardown(pg);
	pg->query_cb = NULL;
	pg->query_arg = NULL;
	pg->state = BF_PG_BACKOFF;
	uint64_t delay = bf_backoff_next(&pg->backoff);
	uv_timer_start(&pg->timer, pg_reconnect_timer_cb, delay, 0);
	bf_warning("%s: %s; reconnecting in %llu ms", pg->name, message, (unsigned long long)delay);

	if (cb) {
		bf_pg_result broken = {.res = NULL, .ok = 0, .sqlstate = NULL, .message = message};

		cb(pg, result ? result : &broken, cb_arg);
	}
	/* The query callback may have closed us. */
	if (was_up && pg->state == BF_PG_BACKOFF && pg->on_event)
		pg->on_event(pg, 0, pg->arg);
}

static void pg_fail(bf_pg *pg, const char *why)
{
	pg_fail_with(pg, why, pg->query_cb, pg->query_arg, NULL);
}

/* What the kernel applies to the connected socket (the operator's conninfo
 * may have set its own values): for the log, and for the tests. */
static void pg_describe_liveness(bf_pg *pg, char *buf, size_t len)
{
	int fd = PQsocket(pg->conn), on = 0;
	struct sockaddr_storage addr;
	socklen_t addrlen = sizeof(addr), optlen = sizeof(on);

	if (fd < 0 || getsockname(fd, (struct sockaddr *)&addr, &addrlen) != 0 ||
	    (addr.ss_family != AF_INET && addr.ss_family != AF_INET6)) {
		snprintf(buf, len, "unix socket");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &optlen) != 0 || !on) {
		snprintf(buf, len, "keepalives off");
		return;
	}
#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT) &&                     \
	defined(TCP_USER_TIMEOUT)
	int idle = -1, interval = -1, count = -1;
	unsigned int user_timeout = 0;

	optlen = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &optlen);
	optlen = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, &optlen);
	optlen = sizeof(int);
	getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, &optlen);
	optlen = sizeof(user_timeout);
	getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, &optlen);
	snprintf(buf, len,
		 "keepalives_idle=%d keepalives_interval=%d keepalives_count=%d "
		 "tcp_user_timeout=%u",
		 idle, interval, count, user_timeout);
#else
	snprintf(buf, len, "keepalives on");
#endif
}

static void pg_became_ready(bf_pg *pg)
{
	char liveness[160];

	uv_timer_stop(&pg->timer);
	bf_backoff_reset(&pg->backoff);
	pg->state = BF_PG_READY;
	pg->last_error[0] = '\0';
	pg->backend_pid = PQbackendPID(pg->conn);
	pg_describe_liveness(pg, liveness, sizeof(liveness));
	bf_debug("%s: connected (backend pid %d; %s)", pg->name, pg->backend_pid, liveness);
	if (pg->on_event)
		pg->on_event(pg, 1, pg->arg);
}

static void pg_init_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	char why[512];

	(void)arg;
	if (r->ok) {
		pg_became_ready(pg);
		return;
	}
	/* A broken connection was already failed by whoever called us. */
	if (r->res && pg->state == BF_PG_INITIALIZING) {
		/* Reachable but refusing our session settings: log it and back off
		 * like any failed connect, the server may be reconfigured. */
		snprintf(why, sizeof(why), "session setup failed: %s", r->message);
		pg_fail(pg, why);
	}
}

static int pg_send(bf_pg *pg, const char *sql, int nparams, const char *const *params)
{
	int sent = (nparams == 0 && params == NULL)
			   ? PQsendQuery(pg->conn, sql)
			   : PQsendQueryParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!sent)
		return -1;
	int flushed = PQflush(pg->conn);

	if (flushed < 0)
		return -1;
	return pg_poll_watch(pg, flushed ? (UV_READABLE | UV_WRITABLE) : UV_READABLE, 0);
}

static void pg_connected(bf_pg *pg)
{
	if (!pg->init_sql) {
		pg_became_ready(pg);
		return;
	}
	pg->state = BF_PG_INITIALIZING;
	pg->query_cb = pg_init_done;
	pg->query_arg = NULL;
	if (pg_send(pg, pg->init_sql, 0, NULL) != 0)
		pg_fail(pg, "could not send session setup");
}

static void pg_connect_step(bf_pg *pg)
{
	switch (PQconnectPoll(pg->conn)) {
	case PGRES_POLLING_OK:
		pg_poll_stop(pg);
		if (pg_poll_watch(pg, UV_READABLE, 1) != 0) {
			pg_fail(pg, "could not watch the connection's socket");
			return;
		}
		pg_connected(pg);
		return;
	case PGRES_POLLING_READING:
		if (pg_poll_watch(pg, UV_READABLE, 1) != 0)
			pg_fail(pg, "could not watch the connection's socket");
		return;
	case PGRES_POLLING_WRITING:
		if (pg_poll_watch(pg, UV_WRITABLE, 1) != 0)
			pg_fail(pg, "could not watch the connection's socket");
		return;
	default:
		pg_fail(pg, "connection failed");
		return;
	}
}

/* Server NOTICEs and WARNINGs go to our log, one line each, instead of
 * libpq's default of raw lines on stderr. */
static void pg_notice(void *arg, const PGresult *res)
{
	bf_pg *pg = arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	bf_log(severity && strcmp(severity, "WARNING") == 0 ? BF_LOG_WARNING : BF_LOG_DEBUG,
	       "%s: server %s: %s", pg->name, severity ? severity : "NOTICE",
	       message ? message : "");
}

static void pg_connect_start(bf_pg *pg, const char *host, const char *hostaddr, const char *port)
{
	/* Dead-peer detection first, so that the operator's conninfo (expanded
	 * from "dbname") overrides any of it; then ours: hostaddr,
	 * application_name. Without it a peer that vanished is noticed only
	 * after the kernel's two hours, or a retransmission's fifteen minutes:
	 * long after the lease. libpq applies none of it to a unix socket. */
	char idle[16], interval[16], count[16], user_timeout[16];
	const bf_pg_liveness *l = &pg->liveness;

	snprintf(idle, sizeof(idle), "%d", l->keepalives_idle_s);
	snprintf(interval, sizeof(interval), "%d", l->keepalives_interval_s);
	snprintf(count, sizeof(count), "%d", l->keepalives_count);
	snprintf(user_timeout, sizeof(user_timeout), "%d", l->tcp_user_timeout_ms);

	const char *keywords[] = {"keepalives",
				  "keepalives_idle",
				  "keepalives_interval",
				  "keepalives_count",
				  "tcp_user_timeout",
				  "dbname",
				  "application_name",
				  host ? "host" : NULL,
				  "hostaddr",
				  port ? "port" : NULL,
				  NULL};
	const char *values[] = {
		"1",  idle,	interval, count, user_timeout, pg->conninfo, pg->application_name,
		host, hostaddr, port,	  NULL};

	pg->state = BF_PG_CONNECTING;
	/* expand_dbname = 1: the first "dbname" is the operator's whole
	 * conninfo; keywords after it override it. */
	pg->conn = PQconnectStartParams(keywords, values, 1);
	if (!pg->conn) {
		pg_fail(pg, "out of memory starting a connection");
		return;
	}
	if (PQstatus(pg->conn) == CONNECTION_BAD) {
		pg_fail(pg, "connection failed");
		return;
	}
	if (PQsetnonblocking(pg->conn, 1) != 0) {
		pg_fail(pg, "could not make the connection non-blocking");
		return;
	}
	PQsetNoticeReceiver(pg->conn, pg_notice, pg);
	/* libpq: "consider a status of PGRES_POLLING_WRITING" before the first poll */
	if (pg_poll_watch(pg, UV_WRITABLE, 1) != 0)
		pg_fail(pg, "could not watch the connection's socket");
}

/* The host names are looked up: connect to the addresses found. */
static void pg_resolved(const bf_pg_resolve_result *r, void *arg)
{
	bf_pg *pg = arg;

	if (r->outcome == BF_PG_RESOLVE_CANCELLED) {
		/* Abandoned: timed out, failed or closed meanwhile. */
		pg_release_one(pg);
		return;
	}
	/* The resolution frees itself when we return: teardown must not cancel it. */
	pg->resolution = NULL;
	pg->handles_open--;
	if (r->outcome == BF_PG_RESOLVED)
		pg_connect_start(pg, r->host, r->hostaddr, r->port);
	else
		pg_fail(pg, r->error);
}

static void pg_connect_begin(bf_pg *pg)
{
	bf_pg_resolution *res;
	int rc;

	uv_timer_start(&pg->timer, pg_connect_timeout_cb, (uint64_t)pg->connect_timeout_ms, 0);
	rc = bf_pg_resolve_start(&res, pg->loop, pg->conninfo, pg->name, pg_resolved, pg);
	if (rc != 0) {
		pg_fail(pg, "could not start a host name lookup");
		return;
	}
	if (!res) {
		pg_connect_start(pg, NULL, NULL, NULL);
		return;
	}
	/* A handle of ours until pg_resolved: close waits for it. */
	pg->handles_open++;
	pg->state = BF_PG_RESOLVING;
	pg->resolution = res;
}

static void pg_drain_notifies(bf_pg *pg)
{
	PGnotify *n;

	while (pg->conn && (n = PQnotifies(pg->conn)) != NULL) {
		if (pg->on_notify)
			pg->on_notify(pg, n->relname, n->extra, pg->arg);
		PQfreemem(n);
	}
}

static void pg_read_results(bf_pg *pg);

static void pg_query_timeout_cb(uv_timer_t *timer)
{
	bf_pg *pg = timer->data;
	uint64_t query = pg->queries_sent;

	if (pg->state != BF_PG_BUSY)
		return;
	/* libuv runs due timers before it polls: when the daemon itself
	 * stalled (stopped, swapped out) past the deadline, the answer may be
	 * waiting unread, and the server is not to blame. */
	if (!PQconsumeInput(pg->conn)) {
		pg_fail(pg, "connection lost");
		return;
	}
	pg_read_results(pg);
	pg_drain_notifies(pg);
	if (pg->state == BF_PG_BUSY && pg->queries_sent == query)
		pg_fail(pg, "no answer from the server in time (query deadline)");
}

static void pg_query_done(bf_pg *pg)
{
	PGresult *res = pg->query_result;
	bf_pg_query_cb cb = pg->query_cb;
	void *arg = pg->query_arg;
	bf_pg_result r = {.res = res, .ok = 0, .sqlstate = NULL, .message = ""};

	pg->query_result = NULL;
	pg->query_cb = NULL;
	pg->query_arg = NULL;
	if (pg->state == BF_PG_BUSY)
		uv_timer_stop(&pg->timer);
	if (!res) {
		r.message = "the server returned no result";
	} else {
		ExecStatusType st = PQresultStatus(res);

		r.ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
		if (!r.ok) {
			const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			r.sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			r.message = primary ? primary : PQresultErrorMessage(res);
		}
	}
	if (pg->state == BF_PG_BUSY)
		pg->state = BF_PG_READY;
	/* A FATAL error (the server shutting down, our backend terminated)
	 * arrives as a result and then the socket closes: notice it now, and
	 * hand the caller the server's own words. */
	if (pg->conn && PQstatus(pg->conn) == CONNECTION_BAD)
		pg_fail_with(pg, "connection lost", cb, arg, &r);
	else if (cb)
		cb(pg, &r, arg);
	PQclear(res);
}

static void pg_read_results(bf_pg *pg)
{
	while (pg->conn && !PQisBusy(pg->conn)) {
		PGresult *res = PQgetResult(pg->conn);

		if (!res) {
			pg_query_done(pg);
			return;
		}
		/* Keep the error if there is one, else the last result. */
		if (pg->query_result && PQresultStatus(pg->query_result) == PGRES_FATAL_ERROR) {
			PQclear(res);
		} else {
			PQclear(pg->query_result);
			pg->query_result = res;
		}
	}
}

static void pg_poll_cb(uv_poll_t *handle, int status, int events)
{
	bf_pg *pg = handle->data;

	/* A socket error while connecting (a refused connection shows as
	 * POLLERR): libpq's own words say what went wrong ("Connection
	 * refused ... Is the server running"), libuv's only "bad file
	 * descriptor". */
	if (status < 0 && pg->state != BF_PG_CONNECTING) {
		pg_fail(pg, uv_strerror(status));
		return;
	}
	if (pg->state == BF_PG_CONNECTING) {
		pg_connect_step(pg);
		return;
	}
	if (pg->state != BF_PG_READY && pg->state != BF_PG_BUSY && pg->state != BF_PG_INITIALIZING)
		return;

	if (events & UV_READABLE) {
		if (!PQconsumeInput(pg->conn)) {
			pg_fail(pg, "connection lost");
			return;
		}
		pg_drain_notifies(pg);
		if (!pg->conn)
			return;
	}
	if (pg->poll_events & UV_WRITABLE) {
		int flushed = PQflush(pg->conn);

		if (flushed < 0) {
			pg_fail(pg, "connection lost while sending");
			return;
		}
		if (pg_poll_watch(pg, flushed ? (UV_READABLE | UV_WRITABLE) : UV_READABLE, 0) !=
		    0) {
			pg_fail(pg, "could not watch the connection's socket");
			return;
		}
	}
	if (pg->query_cb) {
		pg_read_results(pg);
		/* Notifications parsed while reading results wait in libpq
		 * until the next read otherwise. */
		pg_drain_notifies(pg);
	} else if (PQstatus(pg->conn) == CONNECTION_BAD) {
		pg_fail(pg, "connection lost");
	}
}

/* ---- how soon a dead peer is noticed ---- */

/* All from the lease L (engine.lease_s, default 30 s). The listener renews
 * our leases every L/3. A renewal sent at most L/3 after the last good one
 * must be answered, or its connection given up on, within D = L/3, so that
 * a fresh connection still has L/3 to renew before the lease runs out and
 * another daemon may take the job over:
 *
 *   renewed --L/3--> next renewal sent --D--> given up --L/3--> lease ends
 *
 * Each way a peer can vanish is noticed within D:
 *  - data sent and not acknowledged (a query to a host that is gone):
 *    tcp_user_timeout = D;
 *  - nothing in flight (the idle listener, a job between batches, a long
 *    batch computing on the server): keepalive probes after D/2 of
 *    silence, then `count` probes `interval` apart, D in all (the server's
 *    kernel answers probes while its backend works, so a long batch is
 *    never cut by them);
 *  - TCP alive but no answer (a proxy whose server is gone, a frozen
 *    backend): the query deadline. The daemon's own queries (renewals,
 *    claims, samples, status) run with statement_timeout D/2 and their
 *    deadline falls D/2 later: D. A batch may run its two statements for
 *    batch.statement_timeout_ms each, so its deadline is twice that plus
 *    D/2; its lease is not at stake meanwhile (the listener renews it).
 *
 * Keepalive times are whole seconds and D is at least 2 s. The daemon's own
 * queries keep at least 5 s: they take milliseconds, but a server with
 * every core busy can stretch one to seconds. Below a lease of 30 s the
 * bounds above are therefore looser than D; below about 6 s no network
 * could keep them. L = 30: probes after 5 s, 5 of them 1 s apart,
 * tcp_user_timeout 10 s, own queries cancelled at 5 s by the server and
 * given up at 10 s; a batch given up at 2 x 30 + 5 = 65 s. */
void bf_pg_liveness_for_lease(bf_pg_liveness *out, int lease_s)
{
	int64_t lease_ms = (int64_t)(lease_s > 0 ? lease_s : 30) * 1000;
	int detect_ms = (int)(lease_ms / 3 > 2000 ? lease_ms / 3 : 2000);
	int detect_s = detect_ms / 1000;

	out->tcp_user_timeout_ms = detect_ms;
	out->keepalives_idle_s = detect_s / 2 > 1 ? detect_s / 2 : 1;
	out->keepalives_interval_s = detect_s / 10 > 1 ? detect_s / 10 : 1;
	out->keepalives_count = (detect_s - out->keepalives_idle_s) / out->keepalives_interval_s;
	if (out->keepalives_count < 1)
		out->keepalives_count = 1;
	out->control_statement_timeout_ms = detect_ms / 2 > 5000 ? detect_ms / 2 : 5000;
	out->answer_margin_ms = detect_ms / 2;
}

static void pg_set_deadlines(bf_pg *pg, int server_timeout_ms, int lease_s)
{
	bf_pg_liveness_for_lease(&pg->liveness, lease_s);
	pg->query_timeout_ms =
		server_timeout_ms > 0 ? server_timeout_ms + pg->liveness.answer_margin_ms : 0;
}

int bf_pg_init(bf_pg *pg, uv_loop_t *loop, const bf_pg_options *opts)
{
	int rc;

	memset(pg, 0, sizeof(*pg));
	pg->loop = loop;
	rc = uv_timer_init(loop, &pg->timer);
	if (rc != 0)
		return rc;
	pg->timer.data = pg;
	pg->handles_open = 1;
	pg->name = pg_strdup(opts->name ? opts->name : "connection");
	pg->conninfo = pg_strdup(opts->conninfo ? opts->conninfo : "");
	pg->application_name =
		pg_strdup(opts->application_name ? opts->application_name : "backfilld");
	pg->init_sql = pg_strdup(opts->init_sql);
	pg->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
	pg_set_deadlines(pg, opts->server_timeout_ms, opts->lease_s);
	pg->on_event = opts->on_event;
	pg->on_notify = opts->on_notify;
	pg->arg = opts->arg;
	/* Seed from the address and the clock: several daemons, or several
	 * jobs of one daemon, must not reconnect in lockstep. */
	bf_backoff_init(&pg->backoff, (uint64_t)opts->backoff_initial_ms,
			(uint64_t)opts->backoff_max_ms,
			(uint64_t)(uintptr_t)pg ^ ((uint64_t)time(NULL) << 20) ^ uv_hrtime());
	pg->state = BF_PG_STOPPED;
	return 0;
}

void bf_pg_start(bf_pg *pg)
{
	if (pg->state == BF_PG_STOPPED)
		pg_connect_begin(pg);
}

int bf_pg_query(bf_pg *pg, const char *sql, int nparams, const char *const *params,
		bf_pg_query_cb cb, void *arg)
{
	if (pg->state != BF_PG_READY)
		return -1;
	pg->state = BF_PG_BUSY;
	pg->queries_sent++;
	pg->query_cb = cb;
	pg->query_arg = arg;
	if (pg->query_timeout_ms > 0)
		uv_timer_start(&pg->timer, pg_query_timeout_cb, (uint64_t)pg->query_timeout_ms, 0);
	if (pg_send(pg, sql, nparams, params) != 0) {
		/* The query may or may not have reached the server; the caller
		 * learns through cb that the connection broke. */
		pg_fail(pg, "could not send query");
	}
	return 0;
}

char *bf_pg_escape_literal(bf_pg *pg, const char *s)
{
	char *escaped, *copy;

	if (!pg->conn || pg->state == BF_PG_CONNECTING)
		return NULL;
	/* Client-side only: libpq needs the connection for its encoding and
	 * standard_conforming_strings, it sends nothing. */
	escaped = PQescapeLiteral(pg->conn, s, strlen(s));
	if (!escaped)
		return NULL;
	copy = strdup(escaped);
	PQfreemem(escaped);
	return copy;
}

int bf_pg_is_ready(const bf_pg *pg)
{
	return pg->state == BF_PG_READY;
}

int bf_pg_is_busy(const bf_pg *pg)
{
	return pg->state == BF_PG_BUSY;
}

void bf_pg_close(bf_pg *pg, bf_pg_close_cb cb, void *arg)
{
	if (pg->state == BF_PG_CLOSING)
		return;
	pg->close_cb = cb;
	pg->close_arg = arg;
	pg->query_cb = NULL;
	pg->query_arg = NULL;
	pg_teardown(pg);
	pg->state = BF_PG_CLOSING;
	uv_close((uv_handle_t *)&pg->timer, pg_handle_closed);
}

void bf_pg_reconfigure(bf_pg *pg, const char *init_sql, int server_timeout_ms, int lease_s)
{
	char *copy = pg_strdup(init_sql);

	if (init_sql && !copy)
		return; /* out of memory: keep the old settings */
	free(pg->init_sql);
	pg->init_sql = copy;
	pg_set_deadlines(pg, server_timeout_ms, lease_s);
}

void bf_pg_set_application_name(bf_pg *pg, const char *name)
{
	char *copy = pg_strdup(name);

	if (!copy)
		return;
	free(pg->application_name);
	pg->application_name = copy;
}
