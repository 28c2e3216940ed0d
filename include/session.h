/* session.h -- the session settings of every connection of ours.
 *
 * Whatever the server's, the database's or the role's defaults: bounded
 * waits, READ COMMITTED, standard strings, values that read back the same
 * as text (DateStyle ISO, exact floats), no idle_session_timeout; batch
 * connections also never idle in a transaction and run without JIT.
 */
#ifndef BF_SESSION_H
#define BF_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "pg.h"

/* The statement_timeout of the daemon's own queries (claims, renewals,
 * status): bounded by the lease (pg.c says why), and never longer than a
 * batch statement may take. */
int bf_session_control_statement_timeout_ms(const bf_config *cfg);

/* The settings as one query, into buf (768 bytes suffice): batches != 0
 * for a job's or a plan's connection, which runs the operator's SQL. A
 * buffer too small gets a query that fails, and the log says why. */
void bf_session_sql(char *buf, size_t len, const bf_config *cfg, int batches);
/* The same for a job's batch connection with its own timeouts. */
void bf_session_batch_sql(char *buf, size_t len, const bf_config *cfg, int lock_timeout_ms,
			  int statement_timeout_ms);

/* The options of a connection of ours: the configuration's conninfo,
 * connect timeout and backoff, and the deadline of its queries (batches:
 * a job's or a plan's connection, whose batch statements are bounded by
 * batch.statement_timeout_ms; otherwise the daemon's own queries). The
 * strings must outlive bf_pg_init. */
bf_pg_options bf_session_pg_options(const bf_config *cfg, bool batches, const char *name,
				    const char *application_name, const char *init_sql,
				    bf_pg_event_cb on_event, void *arg);

#endif
