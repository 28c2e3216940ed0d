/* test_sessions.c -- the settings every connection gets: session SQL,
 * dead-peer detection derived from the lease, and the blocked-session text. */
#include <libpq-fe.h>
#include <stdlib.h>

#include "config.h"
#include "session.h"
#include "pg.h"
#include "sampler.h"
#include "unit.h"

/* The smallest buffer a caller passes for the session SQL. */
#define SESSION_SQL_BUF 768

static void test_liveness_for_the_default_lease(void)
{
	bf_pg_liveness l, zero;

	bf_pg_liveness_for_lease(&l, 30);
	UNIT_CHECK_INT(l.keepalives_idle_s, 5);
	UNIT_CHECK_INT(l.keepalives_interval_s, 1);
	UNIT_CHECK_INT(l.keepalives_count, 5);
	UNIT_CHECK_INT(l.tcp_user_timeout_ms, 10000);
	UNIT_CHECK_INT(l.control_statement_timeout_ms, 5000);
	UNIT_CHECK_INT(l.answer_margin_ms, 5000);
	/* Not set: the default lease. */
	bf_pg_liveness_for_lease(&zero, 0);
	UNIT_CHECK(memcmp(&zero, &l, sizeof(l)) == 0);
}

/* Every lease the configuration accepts: a silent peer, an unacknowledged
 * send and (from 30 s up) an unanswered query of ours are all given up on
 * within a third of the lease, so that a renewal sent a third into the
 * lease can still be retried on a fresh connection before it ends. */
static void test_liveness_fits_the_lease(void)
{
	for (int lease = 2; lease <= 3600; lease++) {
		bf_pg_liveness l;
		int third_ms = lease * 1000 / 3 > 2000 ? lease * 1000 / 3 : 2000;
		int silent_s;

		bf_pg_liveness_for_lease(&l, lease);
		silent_s = l.keepalives_idle_s + l.keepalives_count * l.keepalives_interval_s;
		UNIT_CHECK(l.keepalives_idle_s >= 1 && l.keepalives_interval_s >= 1 &&
			   l.keepalives_count >= 1);
		UNIT_CHECK(silent_s * 1000 <= third_ms);
		/* Not much sooner either: probes are not free. */
		UNIT_CHECK(silent_s * 1000 >= third_ms - 1000 - l.keepalives_interval_s * 1000);
		UNIT_CHECK(l.tcp_user_timeout_ms <= third_ms);
		UNIT_CHECK(l.answer_margin_ms >= 1000);
		if (lease >= 30)
			UNIT_CHECK(l.control_statement_timeout_ms + l.answer_margin_ms <= third_ms);
		if (unit_current_failed) {
			fprintf(stderr, "lease %d s\n", lease);
			return;
		}
	}
}

static void test_session_sql_for_every_connection(void)
{
	bf_config cfg;
	char sql[SESSION_SQL_BUF];

	bf_config_defaults(&cfg);
	for (int batches = 0; batches <= 1; batches++) {
		bf_session_sql(sql, sizeof(sql), &cfg, batches);
		UNIT_CHECK_CONTAINS(sql, "SELECT set_config(name, value, false) FROM (VALUES ");
		UNIT_CHECK_CONTAINS(sql, "('DateStyle', 'ISO')");
		UNIT_CHECK_CONTAINS(sql, "('IntervalStyle', 'postgres')");
		UNIT_CHECK_CONTAINS(sql, "('extra_float_digits', '3')");
		UNIT_CHECK_CONTAINS(sql, "('idle_session_timeout', '0')");
		UNIT_CHECK_CONTAINS(sql, "('lock_timeout', '2000ms')");
		UNIT_CHECK_CONTAINS(sql, ") AS s(name, value)");
		/* The operator's SQL computes in the database's time zone. */
		UNIT_CHECK(!strstr(sql, "TimeZone"));
	}
	/* The daemon's own queries: bounded by the lease. */
	bf_session_sql(sql, sizeof(sql), &cfg, 0);
	UNIT_CHECK_CONTAINS(sql, "('statement_timeout', '5000ms')");
	UNIT_CHECK(!strstr(sql, "idle_in_transaction"));
	/* A batch: by batch.statement_timeout_ms. */
	bf_session_sql(sql, sizeof(sql), &cfg, 1);
	UNIT_CHECK_CONTAINS(sql, "('statement_timeout', '30000ms')");
	UNIT_CHECK_CONTAINS(sql, "('idle_in_transaction_session_timeout', '60000ms')");
	UNIT_CHECK_CONTAINS(sql, "('jit', 'off')");
	/* A batch timeout below the lease's bound bounds ours too. */
	cfg.statement_timeout_ms = 400;
	bf_session_sql(sql, sizeof(sql), &cfg, 0);
	UNIT_CHECK_CONTAINS(sql, "('statement_timeout', '400ms')");
	bf_config_free(&cfg);
}

static void test_session_sql_fits_with_the_largest_values(void)
{
	bf_config cfg;
	char sql[SESSION_SQL_BUF];

	bf_config_defaults(&cfg);
	cfg.lock_timeout_ms = 2147483647;
	cfg.statement_timeout_ms = 2147483647;
	cfg.idle_in_transaction_timeout_ms = 2147483647;
	cfg.lease_s = 3600;
	bf_session_batch_sql(sql, sizeof(sql), &cfg, -2147483647 - 1, -2147483647 - 1);
	UNIT_CHECK_CONTAINS(sql, ") AS s(name, value)");
	UNIT_CHECK(!strstr(sql, "do_not_fit"));
	bf_config_free(&cfg);
}

/* A result as the lock check's query returns it, built client-side. */
static PGresult *locks_result(const char *const *row)
{
	static const char *names[] = {"blocker_pid", "pid",  "waited_ms", "ddl",
				      "locktype",    "mode", "relation",  "xact_start_us"};
	PGresAttDesc attrs[8];
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < 8; i++) {
		attrs[i].name = (char *)names[i];
		attrs[i].format = 0;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	PQsetResultAttrs(res, 8, attrs);
	for (int i = 0; i < 8; i++)
		PQsetvalue(res, 0, i, (char *)row[i], row[i] ? (int)strlen(row[i]) : -1);
	return res;
}

static void test_blocked_session_text(void)
{
	const char *row_lock[] = {"101",	   "202",	"1500",	 "f",
				  "transactionid", "ShareLock", "items", "1796300830123456"};
	const char *ddl[] = {"101",	      "203", "20", "t", "relation", "AccessExclusiveLock",
			     "\"odd\nname\"", NULL};
	bf_blocked b;
	PGresult *res = locks_result(row_lock);

	bf_sampler_blocked_parse(res, 0, &b);
	UNIT_CHECK_INT(b.blocker_pid, 101);
	UNIT_CHECK_INT(b.pid, 202);
	UNIT_CHECK_INT(b.waited_ms, 1500);
	UNIT_CHECK_INT(b.ddl, 0);
	UNIT_CHECK_INT(b.xact_start_us, 1796300830123456LL);
	UNIT_CHECK_STR(b.what, "pid 202 waiting for a transactionid ShareLock on a row of items");
	PQclear(res);

	res = locks_result(ddl);
	bf_sampler_blocked_parse(res, 0, &b);
	UNIT_CHECK_INT(b.ddl, 1);
	UNIT_CHECK_INT(b.xact_start_us, 0); /* unknown: the cancel does not check it */
	/* A newline in a relation's name cannot start a log line of its own. */
	UNIT_CHECK_STR(b.what,
		       "pid 203 waiting for a relation AccessExclusiveLock on \"odd?name\"");
	PQclear(res);
}

int main(void)
{
	UNIT_RUN(test_liveness_for_the_default_lease);
	UNIT_RUN(test_liveness_fits_the_lease);
	UNIT_RUN(test_session_sql_for_every_connection);
	UNIT_RUN(test_session_sql_fits_with_the_largest_values);
	UNIT_RUN(test_blocked_session_text);
	return UNIT_DONE();
}
