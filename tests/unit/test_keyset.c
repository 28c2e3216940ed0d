/* test_keyset.c -- the SQL of the keyset walk, for one and for composite keys. */
#include <stdlib.h>

#include "keyset.h"
#include "sqltext.h"
#include "unit.h"

static const char *one_name[] = {"id"};
static const char *one_type[] = {"bigint"};
static const char *two_names[] = {"tenant", "\"Order No\""};
static const char *two_types[] = {"integer", "text"};

static bf_walk walk_one(void)
{
	bf_walk w = {
		.table = "public.orders",
		.nkeys = 1,
		.key_names = one_name,
		.key_types = one_type,
		.kind = BF_KIND_UPDATE,
		.set_clause = "total_cents = (total * 100)::bigint",
		.where_clause = "total_cents IS NULL",
	};
	return w;
}

static bf_walk walk_two(void)
{
	bf_walk w = walk_one();

	w.table = "\"my schema\".\"Orders\"";
	w.nkeys = 2;
	w.key_names = two_names;
	w.key_types = two_types;
	return w;
}

static void test_first_batch_has_no_lower_bound(void)
{
	bf_walk w = walk_one();
	char *sql = bf_keyset_batch_sql(&w, 1, 500);

	UNIT_CHECK_CONTAINS(sql, "WHERE (id) <= (($1::text[])[1]::bigint)");
	UNIT_CHECK(strstr(sql, "$6") == NULL);
	UNIT_CHECK_CONTAINS(sql, "LIMIT 500\n  FOR NO KEY UPDATE");
	UNIT_CHECK(strstr(sql, "SKIP LOCKED") == NULL);
	UNIT_CHECK(strstr(sql, "OFFSET") == NULL);
	free(sql);
}

static void test_next_batch_is_a_row_value_range(void)
{
	bf_walk w = walk_two();
	char *sql = bf_keyset_batch_sql(&w, 0, 1000);

	UNIT_CHECK_CONTAINS(sql,
		"WHERE (tenant, \"Order No\") > (($6::text[])[1]::integer, ($6::text[])[2]::text)"
		" AND (tenant, \"Order No\") <= (($1::text[])[1]::integer, ($1::text[])[2]::text)");
	UNIT_CHECK_CONTAINS(sql, "ORDER BY tenant, \"Order No\"\n  LIMIT 1000");
	UNIT_CHECK_CONTAINS(sql, "FROM \"my schema\".\"Orders\"");
	free(sql);
}

static void test_checkpoint_is_largest_scanned_key_and_fenced(void)
{
	bf_walk w = walk_two();
	char *sql = bf_keyset_batch_sql(&w, 0, 10);

	/* From scan (every locked row), not from the work's RETURNING. */
	UNIT_CHECK_CONTAINS(sql,
		"checkpoint = coalesce((SELECT ARRAY[tenant::text, \"Order No\"::text] FROM scan"
		" ORDER BY tenant DESC, \"Order No\" DESC LIMIT 1), checkpoint)");
	UNIT_CHECK_CONTAINS(sql, "WHERE id = $2 AND owner = $3 AND lease_epoch = $4\n"
				 "    AND state = 'running' AND batches = $5");
	UNIT_CHECK_CONTAINS(sql, "SELECT backfill.checkpoint_fence(count(*))");
	free(sql);
}

static void test_where_clause_filters_batch_not_scan(void)
{
	bf_walk w = walk_one();
	char *sql = bf_keyset_batch_sql(&w, 1, 10);

	UNIT_CHECK_CONTAINS(sql, "SELECT id, (total_cents IS NULL\n  ) AS \"backfill match\"");
	UNIT_CHECK_CONTAINS(sql, "batch AS (SELECT id FROM scan WHERE \"backfill match\")");
	UNIT_CHECK_CONTAINS(sql, "UPDATE public.orders SET total_cents = (total * 100)::bigint\n"
				 "  WHERE (id) IN (SELECT id FROM batch)\n  RETURNING 1");
	UNIT_CHECK_CONTAINS(sql, "rows_updated = rows_updated + (SELECT count(*) FROM work)");
	free(sql);

	w.where_clause = NULL;
	sql = bf_keyset_batch_sql(&w, 1, 10);
	UNIT_CHECK(strstr(sql, "backfill match") == NULL);
	UNIT_CHECK_CONTAINS(sql, "batch AS (SELECT id FROM scan)");
	free(sql);
}

static void test_sql_kind_wraps_statement(void)
{
	bf_walk w = walk_one();

	w.kind = BF_KIND_SQL;
	w.where_clause = "";
	w.statement = "INSERT INTO addresses (user_id) SELECT id FROM batch -- copy";
	char *sql = bf_keyset_batch_sql(&w, 1, 10);

	UNIT_CHECK_CONTAINS(sql, "work AS (\nINSERT INTO addresses (user_id) SELECT id FROM batch -- copy\n),");
	UNIT_CHECK_CONTAINS(sql, "rows_updated = rows_updated + (SELECT count(*) FROM batch)");
	UNIT_CHECK(strstr(sql, "UPDATE public.orders") == NULL);
	free(sql);
}

static void test_upper_bound(void)
{
	bf_walk w = walk_two();
	char *sql = bf_keyset_upper_bound_sql(&w);

	UNIT_CHECK_STR(sql, "SELECT ARRAY[tenant::text, \"Order No\"::text] FROM \"my schema\".\"Orders\""
			    " ORDER BY tenant DESC, \"Order No\" DESC LIMIT 1");
	free(sql);
}

static void test_verify(void)
{
	bf_walk w = walk_one();
	char *sql = bf_keyset_verify_sql(&w, 0, 5000);

	UNIT_CHECK_CONTAINS(sql, "WHERE (id) > (($2::text[])[1]::bigint) AND (id) <= (($1::text[])[1]::bigint)");
	UNIT_CHECK_CONTAINS(sql, "LIMIT 5000");
	UNIT_CHECK_CONTAINS(sql, "count(*) FILTER (WHERE \"backfill match\")");
	UNIT_CHECK(strstr(sql, "FOR NO KEY UPDATE") == NULL);
	free(sql);
	sql = bf_keyset_verify_sql(&w, 1, 5000);
	UNIT_CHECK(strstr(sql, "$2") == NULL);
	free(sql);
}

static void test_split_with(void)
{
	bf_sql_with w;
	const char *s = "  /* c */ WITH RECURSIVE a (x) AS (SELECT ')' FROM t), \"B c\" AS MATERIALIZED "
			"(SELECT $q$ ) ( $q$, E'\\')' -- )\n) UPDATE x SET y = 1";

	UNIT_CHECK_INT(bf_sql_split_with(s, &w), 1);
	UNIT_CHECK_INT(w.recursive, 1);
	UNIT_CHECK(strncmp(s + w.ctes_start, "a (x) AS", 8) == 0);
	UNIT_CHECK(s[w.ctes_end - 1] == ')' && s[w.ctes_end] == ' ');
	UNIT_CHECK_STR(s + w.main_start, "UPDATE x SET y = 1");

	UNIT_CHECK_INT(bf_sql_split_with("INSERT INTO t SELECT 1", &w), 0);
	UNIT_CHECK_INT(bf_sql_split_with("WITHOUT x", &w), 0);
	UNIT_CHECK_INT(bf_sql_split_with("WITH a AS (SELECT '(' ", &w), -1);
	UNIT_CHECK_INT(bf_sql_split_with("WITH a AS (SELECT 1)", &w), -1);
	UNIT_CHECK_INT(bf_sql_split_with("WITH a AS (SELECT $1) SELECT 2", &w), 1);
}

static void test_sql_kind_hoists_statement_ctes(void)
{
	bf_walk w = walk_one();

	w.kind = BF_KIND_SQL;
	w.statement = "WITH moved AS (DELETE FROM t USING batch b WHERE t.id = b.id RETURNING t.*) "
		      "INSERT INTO archive SELECT * FROM moved";
	char *sql = bf_keyset_batch_sql(&w, 1, 10);

	UNIT_CHECK(strncmp(sql, "WITH scan AS (", 14) == 0);
	UNIT_CHECK_CONTAINS(sql, "),\nmoved AS (DELETE FROM t USING batch b WHERE t.id = b.id RETURNING t.*),\n"
				 "work AS (\nINSERT INTO archive SELECT * FROM moved\n),");
	free(sql);
}

int main(void)
{
	UNIT_RUN(test_first_batch_has_no_lower_bound);
	UNIT_RUN(test_next_batch_is_a_row_value_range);
	UNIT_RUN(test_checkpoint_is_largest_scanned_key_and_fenced);
	UNIT_RUN(test_where_clause_filters_batch_not_scan);
	UNIT_RUN(test_sql_kind_wraps_statement);
	UNIT_RUN(test_upper_bound);
	UNIT_RUN(test_verify);
	UNIT_RUN(test_split_with);
	UNIT_RUN(test_sql_kind_hoists_statement_ctes);
	return UNIT_DONE();
}
