/* monitor.c -- a queue of queries on the monitor connection. */
#include "monitor.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session.h"

struct bf_monitor_item {
	bf_monitor_item *next;
	char *sql;
	int nparams;
	char **params;
	bf_pg_query_cb cb;
	void *arg;
};

static void monitor_next(bf_monitor *m);

static void query_free(bf_monitor_item *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	free(q);
}

static void query_fail(bf_monitor *m, bf_monitor_item *q, const char *why)
{
	bf_pg_result r = {.res = NULL, .ok = 0, .sqlstate = NULL, .message = why};

	q->cb(&m->pg, &r, q->arg);
	query_free(q);
}

static void monitor_fail_all(bf_monitor *m, const char *why)
{
	while (m->head) {
		bf_monitor_item *q = m->head;

		m->head = q->next;
		if (!m->head)
			m->tail = NULL;
		m->queued--;
		query_fail(m, q, why);
	}
}

static void monitor_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_monitor *m = arg;
	bf_monitor_item *q = m->head;

	(void)pg;
	m->head = q->next;
	if (!m->head)
		m->tail = NULL;
	m->queued--;
	q->cb(&m->pg, r, q->arg);
	query_free(q);
	monitor_next(m);
}

static void monitor_next(bf_monitor *m)
{
	const char *why;

	if (!m->head || m->closing || bf_pg_is_busy(&m->pg))
		return;
	if (!bf_monitor_up(m, &why)) {
		monitor_fail_all(m, why);
		return;
	}
	bf_monitor_item *q = m->head;

	if (bf_pg_query(&m->pg, q->sql, q->nparams, (const char *const *)q->params, monitor_done,
			m) != 0) {
		m->head = q->next;
		if (!m->head)
			m->tail = NULL;
		m->queued--;
		query_fail(m, q, "the monitor connection is not ready");
		monitor_next(m);
	}
}

int bf_monitor_up(const bf_monitor *m, const char **why)
{
	if (bf_pg_is_ready(&m->pg) || bf_pg_is_busy(&m->pg)) {
		*why = "";
		return 1;
	}
	*why = m->pg.last_error[0] ? m->pg.last_error : "not connected to the database yet";
	return 0;
}

static void monitor_enqueue(bf_monitor *m, const char *sql, int nparams,
			    const char *const *params, bf_pg_query_cb cb, void *arg, int first)
{
	bf_monitor_item *q = calloc(1, sizeof(*q));
	int oom = !q;

	if (q) {
		q->sql = strdup(sql);
		q->cb = cb;
		q->arg = arg;
		q->params = nparams ? calloc((size_t)nparams, sizeof(char *)) : NULL;
		q->nparams = nparams;
		oom = !q->sql || (nparams && !q->params);
		for (int i = 0; !oom && i < nparams; i++)
			if (params[i] && !(q->params[i] = strdup(params[i])))
				oom = 1;
	}
	if (oom || m->closing) {
		bf_pg_result r = {.res = NULL,
				  .ok = 0,
				  .sqlstate = NULL,
				  .message = oom ? "out of memory" : "the daemon is stopping"};

		if (q) {
			q->nparams = q->params ? nparams : 0;
			query_free(q);
		}
		cb(&m->pg, &r, arg);
		return;
	}
	if (first && m->head && bf_pg_is_busy(&m->pg)) {
		/* Right after the query in flight (the head). */
		q->next = m->head->next;
		m->head->next = q;
		if (m->tail == m->head)
			m->tail = q;
	} else if (first) {
		q->next = m->head;
		m->head = q;
		if (!m->tail)
			m->tail = q;
	} else if (m->tail) {
		m->tail->next = q;
		m->tail = q;
	} else {
		m->head = m->tail = q;
	}
	m->queued++;
	monitor_next(m);
}

void bf_monitor_query(bf_monitor *m, const char *sql, int nparams, const char *const *params,
		      bf_pg_query_cb cb, void *arg)
{
	monitor_enqueue(m, sql, nparams, params, cb, arg, 0);
}

void bf_monitor_query_first(bf_monitor *m, const char *sql, int nparams,
			    const char *const *params, bf_pg_query_cb cb, void *arg)
{
	monitor_enqueue(m, sql, nparams, params, cb, arg, 1);
}

static void monitor_event(bf_pg *pg, int up, void *arg)
{
	bf_monitor *m = arg;

	(void)pg;
	if (up)
		monitor_next(m);
	else
		monitor_fail_all(m, m->pg.last_error[0] ? m->pg.last_error : "connection lost");
}

int bf_monitor_init(bf_monitor *m, uv_loop_t *loop, const bf_config *cfg)
{
	char init_sql[768];

	memset(m, 0, sizeof(*m));
	bf_session_sql(init_sql, sizeof(init_sql), cfg, 0);

	bf_pg_options opts = bf_session_pg_options(cfg, false, "monitor connection",
						   "backfilld monitor", init_sql, monitor_event, m);

	return bf_pg_init(&m->pg, loop, &opts);
}

void bf_monitor_start(bf_monitor *m)
{
	bf_pg_start(&m->pg);
}

void bf_monitor_close(bf_monitor *m, bf_pg_close_cb cb, void *arg)
{
	if (m->closing)
		return;
	m->closing = 1;
	/* The query in flight (the head) never gets its pg callback after
	 * bf_pg_close: fail it here with the rest. */
	monitor_fail_all(m, "the daemon is stopping");
	bf_pg_close(&m->pg, cb, arg);
}
