/* test_keyset.c -- the SQL of the keyset walk, for one and for composite keys. */
#include <stdlib.h>

#include "keyset.h"
#include "unit.h"
#include "walks.h"

static const char *two_types[] = {"integer", "text"};

static bf_walk walk_one(void)
{
	bf_walk w = unit_walk_one();

	w.where_clause = "total_cents IS NULL";
	return w;
}

static bf_walk walk_two(void)
{
	return unit_walk_two(walk_one(), two_types);
}

static bf_batch_args args(int first, int limit)
{
	bf_batch_args a = {
		.upper = "'{9}'",
		.lower = first ? NULL : "'{3}'",
		.owner = "'host:1:ab'",
		.table_literal = "'public.orders'",
		.lease_epoch = 7,
		.slice_id = 42,
		.job_id = 9,
		.table_oid = 16384,
		.batches = 5,
		.limit = limit,
	};
	return a;
}

static void test_first_batch_has_no_lower_bound(void)
{
	bf_walk w = walk_one();
	bf_batch_args a = args(1, 500);
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK_CONTAINS(sql, "SELECT id, row_number() OVER (ORDER BY id) AS \"backfill rows\" "
				 "FROM public.orders WHERE (id) <= (('{9}'::text[])[1]::bigint)"
				 " ORDER BY id LIMIT 500");
	UNIT_CHECK(strstr(sql, "'{3}'") == NULL);
	UNIT_CHECK(strstr(sql, "SKIP LOCKED") == NULL);
	UNIT_CHECK(strstr(sql, "OFFSET") == NULL);
	free(sql);
}

static void test_next_batch_is_a_row_value_range(void)
{
	bf_walk w = walk_two();
	bf_batch_args a = args(0, 1000);
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK_CONTAINS(
		sql,
		"WHERE (tenant, \"Order No\") > (('{3}'::text[])[1]::integer, ('{3}'::text[])[2]::text)"
		" AND (tenant, \"Order No\") <= (('{9}'::text[])[1]::integer, ('{9}'::text[])[2]::text)"
		" ORDER BY tenant, \"Order No\" LIMIT 1000");
	UNIT_CHECK_CONTAINS(sql, "FROM \"my schema\".\"Orders\"");
	free(sql);
}

static void test_update_is_one_range_statement(void)
{
	bf_walk w = walk_one();
	bf_batch_args a = args(0, 10);
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK_INT(bf_keyset_locks_first(&w), 0);
	/* One statement: one pass over the page in key order keeps its last
	 * key and numbers the rows up to it (no OFFSET: the pass starts at the
	 * checkpoint)... */
	UNIT_CHECK_CONTAINS(sql,
			    "/* backfilld batch */\nWITH \"backfill last\" AS MATERIALIZED (\n"
			    "  SELECT id, \"backfill rows\" FROM (\n"
			    "    SELECT id, row_number() OVER (ORDER BY id) AS \"backfill rows\" "
			    "FROM public.orders WHERE (id) > (('{3}'::text[])[1]::bigint) AND "
			    "(id) <= (('{9}'::text[])[1]::bigint) ORDER BY id LIMIT 10\n"
			    "  ) p ORDER BY \"backfill rows\" DESC LIMIT 1\n),");
	UNIT_CHECK(strncmp(sql, "/* backfilld batch */\n", 22) == 0);
	UNIT_CHECK(strchr(sql, ';') == NULL);
	UNIT_CHECK(strstr(sql, "OFFSET") == NULL);
	UNIT_CHECK(strstr(sql, "MATERIALIZED (\n  SELECT id FROM public.orders") == NULL);
	/* ...and an UPDATE of the key range up to it, where_clause re-checked by
	 * the UPDATE itself; no separate locking pass. */
	UNIT_CHECK_CONTAINS(sql, "UPDATE public.orders SET total_cents = (total * 100)::bigint\n"
				 "  WHERE (id) > (('{3}'::text[])[1]::bigint) AND (id) <= "
				 "(SELECT id FROM \"backfill last\")\n"
				 "    AND (total_cents IS NULL\n    )\n  RETURNING 1");
	UNIT_CHECK(strstr(sql, "FOR NO KEY UPDATE") == NULL);
	UNIT_CHECK(strstr(sql, "SKIP LOCKED") == NULL);
	free(sql);

	/* The first batch has no checkpoint: its first key bounds the UPDATE
	 * from below, so that the planner sees a closed range (issue: a
	 * one-sided range was planned as a sequential scan). */
	a = args(1, 10);
	sql = bf_keyset_batch_sql(&w, &a);
	UNIT_CHECK_CONTAINS(sql,
			    "\"backfill first\" AS MATERIALIZED (\n  SELECT id FROM public.orders "
			    "WHERE (id) <= (('{9}'::text[])[1]::bigint) ORDER BY id LIMIT 1\n)");
	UNIT_CHECK_CONTAINS(sql, "  WHERE (id) >= (SELECT id FROM \"backfill first\") AND (id) <= "
				 "(SELECT id FROM \"backfill last\")\n");
	free(sql);
}

static void test_sql_kind_locks_first_then_works_on_a_fresh_page(void)
{
	bf_walk w = walk_one();
	bf_batch_args a = args(0, 10);

	w.kind = BF_KIND_SQL;
	w.statement = "INSERT INTO copies SELECT id FROM batch";
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK_INT(bf_keyset_locks_first(&w), 1);
	/* Statement 1 locks the page's matching rows, one index probe each... */
	UNIT_CHECK(strncmp(sql,
			   "/* backfilld batch */\n"
			   "SELECT count(*) FROM (SELECT id FROM public.orders WHERE (id) > ",
			   86) == 0);
	UNIT_CHECK_CONTAINS(
		sql,
		" ORDER BY id LIMIT 10) p,\n  LATERAL (SELECT id FROM public.orders WHERE (id) = (p.id)\n"
		"    AND (total_cents IS NULL\n    )\n    FOR NO KEY UPDATE) l;\n");
	/* ...statement 2 re-reads the page unlocked, with the snapshot's ctid... */
	UNIT_CHECK_CONTAINS(
		sql,
		";\nWITH \"backfill page\" AS MATERIALIZED (\n  SELECT ctid AS \"backfill ctid\", id"
		" FROM public.orders WHERE (id) > ");
	/* ...locks its matching rows, re-checked on the locked versions... */
	UNIT_CHECK_CONTAINS(
		sql,
		"\"backfill locked\" AS MATERIALIZED (\n  SELECT l.* FROM \"backfill page\" p,\n"
		"  LATERAL (SELECT ctid AS \"backfill ctid\", id FROM public.orders WHERE (id) = (p.id)\n"
		"    AND (total_cents IS NULL\n    )\n    FOR NO KEY UPDATE) l\n)");
	/* ...and cuts the batch before the first row changed since the snapshot. */
	UNIT_CHECK_CONTAINS(
		sql,
		"\"backfill cut\" AS MATERIALIZED (\n  SELECT p.id FROM \"backfill page\" p JOIN "
		"\"backfill locked\" l ON (p.id) = (l.id)\n  WHERE p.\"backfill ctid\" <> l.\"backfill ctid\"");
	UNIT_CHECK_CONTAINS(
		sql,
		"WHERE NOT EXISTS (SELECT FROM \"backfill cut\") OR (id) < (SELECT * FROM \"backfill cut\")");
	UNIT_CHECK_CONTAINS(
		sql,
		"batch AS (SELECT id FROM \"backfill locked\" WHERE (id) IN (SELECT id FROM \"backfill done\"))");
	UNIT_CHECK_CONTAINS(sql, "rows_scanned = rows_scanned + CASE WHEN repairing THEN 0 ELSE "
				 "(SELECT count(*) FROM \"backfill done\") END");
	UNIT_CHECK(strstr(sql, "SKIP LOCKED") == NULL);
	free(sql);
}

static void test_checkpoint_is_the_last_key_scanned_and_fenced(void)
{
	bf_walk w = walk_two();
	bf_batch_args a = args(0, 10);
	char *sql = bf_keyset_batch_sql(&w, &a);

	/* From the page read in key order, never from returned rows. */
	UNIT_CHECK_CONTAINS(sql,
			    "SELECT tenant, \"Order No\", row_number() OVER (ORDER BY tenant, "
			    "\"Order No\") AS \"backfill rows\" FROM \"my schema\".\"Orders\"");
	UNIT_CHECK_CONTAINS(
		sql,
		"checkpoint = coalesce((SELECT ARRAY[tenant::text, \"Order No\"::text] FROM \"backfill last\""
		" ORDER BY tenant DESC, \"Order No\" DESC LIMIT 1), checkpoint)");
	UNIT_CHECK_CONTAINS(sql,
			    "UPDATE backfill.slices SET\n");
	/* The slice's row is fenced; the job row is only read. */
	UNIT_CHECK_CONTAINS(sql,
			    "WHERE id = 42 AND owner = 'host:1:ab' AND lease_epoch = 7\n"
			    "    AND state = 'running' AND batches = 5\n"
			    "    AND 16384::oid = 'public.orders'::regclass\n"
			    "    AND EXISTS (SELECT FROM backfill.jobs WHERE id = 9 AND state = 'running')\n"
			    "    AND NOT coalesce((SELECT paused FROM backfill.control), false)");
	UNIT_CHECK(strstr(sql, "UPDATE backfill.jobs") == NULL);
	UNIT_CHECK_CONTAINS(sql, "SELECT backfill.checkpoint_fence(count(*)),");
	/* A composite key is one row-value range in the UPDATE too. */
	UNIT_CHECK_CONTAINS(sql, "  WHERE (tenant, \"Order No\") > (('{3}'::text[])[1]::integer, "
				 "('{3}'::text[])[2]::text) AND (tenant, \"Order No\") <= "
				 "(SELECT tenant, \"Order No\" FROM \"backfill last\")");
	UNIT_CHECK_CONTAINS(
		sql, "rows_updated = rows_updated + (SELECT count(*) FROM \"backfill work\")");
	UNIT_CHECK_CONTAINS(sql,
			    "rows_scanned = rows_scanned + CASE WHEN repairing THEN 0 ELSE "
			    "coalesce((SELECT \"backfill rows\" FROM \"backfill last\"), 0) END");
	/* The row read back, column by column (job_batch_done); the WAL
	 * position last, after "updated" ran the work. */
	UNIT_CHECK_CONTAINS(
		sql, "SELECT backfill.checkpoint_fence(count(*)),\n"
		     "       coalesce((SELECT \"backfill rows\" FROM \"backfill last\"), 0),\n"
		     "       coalesce((SELECT \"backfill rows\" FROM \"backfill last\"), 0),\n"
		     "       (SELECT count(*) FROM \"backfill work\"),\n"
		     "       max(c.batches),\n"
		     "       max(c.checkpoint),\n"
		     "       max(c.rows_scanned),\n"
		     "       max(c.rows_updated),\n"
		     "       pg_current_wal_insert_lsn()::text,\n"
		     "       (SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'\n"
		     "          AND NOT granted\n"
		     "          AND transactionid = pg_current_xact_id_if_assigned()::xid)\n"
		     "FROM \"backfill checkpoint\" c");
	free(sql);
}

static void test_no_where_clause(void)
{
	bf_walk w = walk_one();
	bf_batch_args a = args(1, 10);

	w.where_clause = NULL;
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK(strstr(sql, "    AND (") == NULL);
	UNIT_CHECK_CONTAINS(sql, "(SELECT id FROM \"backfill last\")\n  RETURNING 1");
	free(sql);

	w.kind = BF_KIND_SQL;
	w.statement = "INSERT INTO copies SELECT id FROM batch";
	sql = bf_keyset_batch_sql(&w, &a);
	UNIT_CHECK(strstr(sql, "    AND (") == NULL);
	UNIT_CHECK_CONTAINS(sql, "WHERE (id) = (p.id)\n    FOR NO KEY UPDATE) l\n)");
	free(sql);
}

static void test_plan_reads_without_locking_for_update(void)
{
	bf_walk w = walk_one();
	bf_batch_args a = args(0, 10);

	a.dry_run = 1;
	char *sql = bf_keyset_matching_sql(&w, &a);

	UNIT_CHECK(strstr(sql, "FOR NO KEY UPDATE") == NULL);
	UNIT_CHECK_CONTAINS(sql, "AND (total_cents IS NULL\n    )) l");
	free(sql);
	sql = bf_keyset_work_sql(&w, &a);
	UNIT_CHECK(strncmp(sql, "EXPLAIN (ANALYZE, BUFFERS)\nWITH \"backfill last\"", 45) == 0);
	UNIT_CHECK(strstr(sql, "backfill.jobs") == NULL);
	UNIT_CHECK(strstr(sql, "pg_current_wal") == NULL); /* nothing is written */
	free(sql);

	w.kind = BF_KIND_SQL;
	w.statement = "INSERT INTO copies SELECT id FROM batch";
	sql = bf_keyset_matching_sql(&w, &a);
	UNIT_CHECK_CONTAINS(sql, "FOR NO KEY UPDATE) l");
	free(sql);
}

static void test_sql_kind_wraps_statement(void)
{
	bf_walk w = walk_one();
	bf_batch_args a = args(1, 10);

	w.kind = BF_KIND_SQL;
	w.where_clause = "";
	w.statement = "INSERT INTO addresses (user_id) SELECT id FROM batch -- copy";
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK_CONTAINS(
		sql,
		"\"backfill work\" AS (\nINSERT INTO addresses (user_id) SELECT id FROM batch -- copy\n),");
	UNIT_CHECK_CONTAINS(sql, "rows_updated = rows_updated + (SELECT count(*) FROM batch)");
	UNIT_CHECK_CONTAINS(
		sql, "       max(c.rows_updated),\n"
		     "       pg_current_wal_insert_lsn()::text,\n"
		     "       (SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'\n"
		     "          AND NOT granted\n"
		     "          AND transactionid = pg_current_xact_id_if_assigned()::xid)\n"
		     "FROM \"backfill checkpoint\" c");
	UNIT_CHECK(strstr(sql, "UPDATE public.orders") == NULL);
	free(sql);
}

static void test_upper_bound(void)
{
	bf_walk w = walk_two();
	char *sql = bf_keyset_upper_bound_sql(&w);

	UNIT_CHECK_STR(
		sql, "SELECT ARRAY[tenant::text, \"Order No\"::text] FROM \"my schema\".\"Orders\""
		     " ORDER BY tenant DESC, \"Order No\" DESC LIMIT 1");
	free(sql);
}

static void test_verify(void)
{
	bf_walk w = walk_one();
	char *sql = bf_keyset_verify_sql(&w, 0, 5000);

	UNIT_CHECK_CONTAINS(
		sql,
		"WHERE (id) > (($2::text[])[1]::bigint) AND (id) <= (($1::text[])[1]::bigint)");
	UNIT_CHECK_CONTAINS(sql, "LIMIT 5000");
	UNIT_CHECK_CONTAINS(sql, "count(*) FILTER (WHERE \"backfill match\")");
	UNIT_CHECK(strstr(sql, "FOR NO KEY UPDATE") == NULL);
	free(sql);
	sql = bf_keyset_verify_sql(&w, 1, 5000);
	UNIT_CHECK(strstr(sql, "$2") == NULL);
	free(sql);
}

static void test_sql_kind_hoists_statement_ctes(void)
{
	bf_walk w = walk_one();

	w.kind = BF_KIND_SQL;
	w.statement =
		"WITH RECURSIVE moved AS (DELETE FROM t USING batch b WHERE t.id = b.id RETURNING t.*) "
		"INSERT INTO archive SELECT * FROM moved";
	bf_batch_args a = args(1, 10);
	char *sql = bf_keyset_batch_sql(&w, &a);

	UNIT_CHECK_CONTAINS(sql, ";\nWITH RECURSIVE \"backfill page\" AS MATERIALIZED (");
	UNIT_CHECK_CONTAINS(
		sql, "),\nmoved AS (DELETE FROM t USING batch b WHERE t.id = b.id RETURNING t.*),\n"
		     "\"backfill work\" AS (\nINSERT INTO archive SELECT * FROM moved\n),");
	free(sql);
}

int main(void)
{
	UNIT_RUN(test_first_batch_has_no_lower_bound);
	UNIT_RUN(test_next_batch_is_a_row_value_range);
	UNIT_RUN(test_update_is_one_range_statement);
	UNIT_RUN(test_sql_kind_locks_first_then_works_on_a_fresh_page);
	UNIT_RUN(test_checkpoint_is_the_last_key_scanned_and_fenced);
	UNIT_RUN(test_no_where_clause);
	UNIT_RUN(test_plan_reads_without_locking_for_update);
	UNIT_RUN(test_sql_kind_wraps_statement);
	UNIT_RUN(test_upper_bound);
	UNIT_RUN(test_verify);
	UNIT_RUN(test_sql_kind_hoists_statement_ctes);
	return UNIT_DONE();
}
