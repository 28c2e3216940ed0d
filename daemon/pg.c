/* pg.c -- one PostgreSQL connection on the libuv loop, never blocking it. */
#include "pg.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static void pg_poll_cb(uv_poll_t *handle, int status, int events);
static void pg_connect_begin(bf_pg *pg);
static void pg_fail(bf_pg *pg, const char *why);

static char *pg_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void pg_handle_closed(uv_handle_t *handle)
{
	bf_pg *pg = handle->data;

	if (handle->type == UV_POLL)
		free(handle);
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

	if (pg->state == BF_PG_CONNECTING || pg->state == BF_PG_INITIALIZING)
		pg_fail(pg, "connection attempt timed out");
}

/* The connection is gone (or never came): clean up, schedule a reconnect,
 * then tell the owner: first the query in flight (its own result when the
 * server sent one before closing, else a broken-connection result), then
 * the "down" event. */
static void pg_fail_with(bf_pg *pg, const char *why, bf_pg_query_cb cb,
			 void *cb_arg, const bf_pg_result *result)
{
	char message[512];
	int was_up = pg->state == BF_PG_READY || pg->state == BF_PG_BUSY;

	if (pg->conn && PQerrorMessage(pg->conn)[0])
		snprintf(message, sizeof(message), "%s: %s", why, PQerrorMessage(pg->conn));
	else
		snprintf(message, sizeof(message), "%s", why);
	/* libpq messages end in newlines; the log wants one line. */
	for (char *p = message + strlen(message); p > message && (p[-1] == '\n' || p[-1] == ' '); )
		*--p = '\0';

	pg_teardown(pg);
	pg->query_cb = NULL;
	pg->query_arg = NULL;
	pg->state = BF_PG_BACKOFF;
	uint64_t delay = bf_backoff_next(&pg->backoff);
	uv_timer_start(&pg->timer, pg_reconnect_timer_cb, delay, 0);
	bf_warning("%s: %s; reconnecting in %llu ms", pg->name, message,
		   (unsigned long long)delay);

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

static void pg_became_ready(bf_pg *pg)
{
	uv_timer_stop(&pg->timer);
	bf_backoff_reset(&pg->backoff);
	pg->state = BF_PG_READY;
	pg->connects++;
	pg->backend_pid = PQbackendPID(pg->conn);
	bf_debug("%s: connected (backend pid %d)", pg->name, pg->backend_pid);
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
			   : PQsendQueryParams(pg->conn, sql, nparams, NULL, params,
					       NULL, NULL, 0);
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

static void pg_connect_begin(bf_pg *pg)
{
	/* TCP keepalives first, so that the operator's conninfo (expanded from
	 * "dbname") can override them; application_name last, so that ours
	 * wins. Without keepalives a peer that vanished is noticed only after
	 * the kernel's two hours. */
	const char *keywords[] = {"keepalives", "keepalives_idle", "keepalives_interval",
				  "keepalives_count", "dbname", "application_name", NULL};
	const char *values[] = {"1", "30", "10", "3", pg->conninfo, pg->application_name, NULL};

	pg->state = BF_PG_CONNECTING;
	/* expand_dbname = 1: the first "dbname" is the operator's whole
	 * conninfo; keywords after it (application_name) override it. */
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
	uv_timer_start(&pg->timer, pg_connect_timeout_cb, (uint64_t)pg->connect_timeout_ms, 0);
	/* libpq: "consider a status of PGRES_POLLING_WRITING" before the first poll */
	if (pg_poll_watch(pg, UV_WRITABLE, 1) != 0)
		pg_fail(pg, "could not watch the connection's socket");
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

static void pg_query_timeout_cb(uv_timer_t *timer)
{
	bf_pg *pg = timer->data;

	if (pg->state == BF_PG_BUSY)
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
		if (pg->query_result &&
		    PQresultStatus(pg->query_result) == PGRES_FATAL_ERROR) {
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

	if (status < 0) {
		pg_fail(pg, uv_strerror(status));
		return;
	}
	if (pg->state == BF_PG_CONNECTING) {
		pg_connect_step(pg);
		return;
	}
	if (pg->state != BF_PG_READY && pg->state != BF_PG_BUSY &&
	    pg->state != BF_PG_INITIALIZING)
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
		if (pg_poll_watch(pg, flushed ? (UV_READABLE | UV_WRITABLE) : UV_READABLE, 0) != 0) {
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
	pg->application_name = pg_strdup(opts->application_name ? opts->application_name : "backfilld");
	pg->init_sql = pg_strdup(opts->init_sql);
	pg->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
	pg->query_timeout_ms = opts->query_timeout_ms;
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

int bf_pg_query(bf_pg *pg, const char *sql, int nparams,
		const char *const *params, bf_pg_query_cb cb, void *arg)
{
	if (pg->state != BF_PG_READY)
		return -1;
	pg->state = BF_PG_BUSY;
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

void bf_pg_reset(bf_pg *pg, const char *why)
{
	if (pg->state == BF_PG_STOPPED || pg->state == BF_PG_CLOSING ||
	    pg->state == BF_PG_BACKOFF)
		return;
	pg_fail(pg, why);
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
