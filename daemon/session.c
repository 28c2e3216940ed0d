/* session.c -- the session settings every connection of the daemon makes its own. */
#include "session.h"

#include <stdio.h>

#include "log.h"
#include "pg.h"

/* One setting of every connection of ours. */
typedef struct session_setting {
	const char *name;
	char value[32];
} session_setting;

#define SESSION_SETTINGS_MAX 12

static int session_add(session_setting *set, int n, const char *name, const char *value)
{
	set[n].name = name;
	snprintf(set[n].value, sizeof(set[n].value), "%s", value);
	return n + 1;
}

static int session_add_ms(session_setting *set, int n, const char *name, int ms)
{
	char value[24];

	snprintf(value, sizeof(value), "%dms", ms);
	return session_add(set, n, name, value);
}

int bf_session_control_statement_timeout_ms(const bf_config *cfg)
{
	bf_pg_liveness l;

	/* The daemon's own queries: bounded by the lease (pg.c says why),
	 * and never longer than a batch statement may take. */
	bf_pg_liveness_for_lease(&l, cfg->lease_s);
	return cfg->statement_timeout_ms < l.control_statement_timeout_ms
		       ? cfg->statement_timeout_ms
		       : l.control_statement_timeout_ms;
}

/* The settings of every connection of ours, whatever the server's, the
 * database's or the role's defaults (set_config(..., false) is a session
 * setting, which outranks them all). batches: a job's (or a plan's)
 * connection, which runs the operator's SQL. */
static int session_settings(session_setting *set, const bf_config *cfg, int batches, int lock_ms,
			    int statement_ms)
{
	int n = 0;

	/* Bounded waits, so that an operator's transaction left open on a job
	 * row cannot freeze claims, renewals or a job. */
	n = session_add_ms(set, n, "lock_timeout", lock_ms);
	n = session_add_ms(set, n, "statement_timeout", statement_ms);
	/* READ COMMITTED and read-write whatever the role's defaults: a
	 * batch's second statement must see what its first one waited for. */
	n = session_add(set, n, "default_transaction_isolation", "read committed");
	n = session_add(set, n, "default_transaction_read_only", "off");
	/* The definition checks read quotes the standard way (sqltext.c): so
	 * must the server, or a backslash could hide a ';' from them. */
	n = session_add(set, n, "standard_conforming_strings", "on");
	/* Values travel as text: keys, checkpoints, bounds. Dates in ISO (a
	 * 'Postgres' or 'SQL' style cannot be read back: "IST" is taken for
	 * Israel's time), intervals as PostgreSQL writes them, floats exact.
	 * The DMY/MDY order of date input stays the database's: the
	 * operator's literals mean what they mean in psql. So does TimeZone,
	 * on every connection alike (they share the conninfo): it changes what
	 * the operator's SQL computes (ts::date, date_trunc), and nothing of
	 * ours depends on it (ISO text carries its offset, transaction starts
	 * are compared as numbers). */
	n = session_add(set, n, "DateStyle", "ISO");
	n = session_add(set, n, "IntervalStyle", "postgres");
	n = session_add(set, n, "extra_float_digits", "3");
	/* A database-wide idle_session_timeout would kill the listener (it
	 * idles between notifications), the monitor and a job between batches
	 * over and over; dead peers are found by keepalives instead (pg.c). */
	n = session_add(set, n, "idle_session_timeout", "0");
	if (batches) {
		/* Never idle in a transaction: a stalled daemon's locks go. */
		n = session_add_ms(set, n, "idle_in_transaction_session_timeout",
				   cfg->idle_in_transaction_timeout_ms);
		/* A batch is short and planned afresh each time: JIT would
		 * compile for tens of milliseconds per batch (large row
		 * estimates trigger it) to save less. */
		n = session_add(set, n, "jit", "off");
	}
	return n;
}

static void session_sql(char *buf, size_t len, const bf_config *cfg, int batches, int lock_ms,
			int statement_ms)
{
	session_setting set[SESSION_SETTINGS_MAX];
	int n = session_settings(set, cfg, batches, lock_ms, statement_ms);
	size_t used;

	used = (size_t)snprintf(buf, len, "SELECT set_config(name, value, false) FROM (VALUES ");
	for (int i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s('%s', '%s')", i ? ", " : "",
					 set[i].name, set[i].value);
	if (used < len)
		used += (size_t)snprintf(buf + used, len - used, ") AS s(name, value)");
	if (used >= len) {
		/* A caller's buffer too small: a cut query would fail every
		 * connect, and the log would not say why. */
		bf_error("internal: the session settings need %zu bytes, %zu given", used + 1, len);
		snprintf(buf, len, "SELECT 1/0 AS session_settings_do_not_fit");
	}
}

void bf_session_sql(char *buf, size_t len, const bf_config *cfg, int batches)
{
	session_sql(buf, len, cfg, batches, cfg->lock_timeout_ms,
		    batches ? cfg->statement_timeout_ms
			    : bf_session_control_statement_timeout_ms(cfg));
}

void bf_session_batch_sql(char *buf, size_t len, const bf_config *cfg, int lock_timeout_ms,
				 int statement_timeout_ms)
{
	session_sql(buf, len, cfg, 1, lock_timeout_ms, statement_timeout_ms);
}

bf_pg_options bf_session_pg_options(const bf_config *cfg, bool batches, const char *name,
				    const char *application_name, const char *init_sql,
				    bf_pg_event_cb on_event, void *arg)
{
	return (bf_pg_options){
		.name = name,
		.conninfo = cfg->conninfo,
		.application_name = application_name,
		.init_sql = init_sql,
		.connect_timeout_ms = cfg->connect_timeout_ms,
		/* A batch is two statements, each bounded by statement_timeout
		 * on the server; the daemon's own queries by theirs. Past
		 * that and a margin (pg.c), the server is gone. */
		.server_timeout_ms = batches ? 2 * cfg->statement_timeout_ms
					     : bf_session_control_statement_timeout_ms(cfg),
		.lease_s = cfg->lease_s,
		.backoff_initial_ms = cfg->retry_initial_ms,
		.backoff_max_ms = cfg->retry_max_ms,
		.on_event = on_event,
		.arg = arg,
	};
}
