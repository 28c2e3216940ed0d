/* monitor.h -- the monitor connection: control-plane queries and, later,
 * throttle sampling, never on a batch connection.
 *
 * Queries queue up and run one at a time in order. While the database is
 * unreachable a query fails at once (the operator learns it now, instead of
 * a command hanging until the database is back).
 */
#ifndef BF_MONITOR_H
#define BF_MONITOR_H

#include <uv.h>

#include "config.h"
#include "pg.h"

typedef struct bf_monitor_item bf_monitor_item;

typedef struct bf_monitor {
	bf_pg pg;
	bf_monitor_item *head, *tail;
	int queued;
	int closing;
} bf_monitor;

int bf_monitor_init(bf_monitor *m, uv_loop_t *loop, const bf_config *cfg);
void bf_monitor_start(bf_monitor *m);

/* Queues a query (parameters are copied). cb is called exactly once: with
 * the result, or with a failed result (r->res == NULL, r->message says why)
 * when the connection is down, breaks, or the monitor closes. */
void bf_monitor_query(bf_monitor *m, const char *sql, int nparams, const char *const *params,
		      bf_pg_query_cb cb, void *arg);

/* The same, ahead of everything queued (after the query in flight): for
 * cancels, which an application session waits on. */
void bf_monitor_query_first(bf_monitor *m, const char *sql, int nparams,
			    const char *const *params, bf_pg_query_cb cb, void *arg);

/* 1 when connected; else why not in *why (never NULL). */
int bf_monitor_up(const bf_monitor *m, const char **why);

/* Fails what is queued and closes the connection; cb once it is closed. */
void bf_monitor_close(bf_monitor *m, bf_pg_close_cb cb, void *arg);

#endif
