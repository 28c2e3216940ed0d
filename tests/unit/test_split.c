/* test_split.c -- the SQL that cuts a key range into slices: its shape for one
 * and for composite keys, quoting, one slice, and the exact or sampled read. */
#include <stdlib.h>

#include "split.h"
#include "unit.h"
#include "walks.h"

static const char *two_types[] = {"text", "bigint"};

static bf_walk walk_one(void)
{
	bf_walk w = unit_walk_one();
	return w;
}

static bf_walk walk_two(void)
{
	return unit_walk_two(walk_one(), two_types);
}

static void test_exact_split_reads_every_key_in_key_order(void)
{
	bf_walk w = walk_one();
	char *sql = bf_split_sql(&w, "$4", 4, 5000);

	UNIT_CHECK_CONTAINS(sql, "WITH \"backfill keys\" AS (\n  SELECT id AS \"backfill k1\", "
				 "100::real AS \"backfill percent\"\n"
				 "  FROM public.orders WHERE (id) <= (($4::text[])[1]::bigint)\n)");
	UNIT_CHECK_CONTAINS(sql, "ARRAY[\"backfill k1\"::text] AS \"backfill bound\"");
	UNIT_CHECK_CONTAINS(sql, "ntile(4) OVER (ORDER BY \"backfill k1\")");
	UNIT_CHECK_CONTAINS(sql, "SELECT \"backfill bound\" AS boundary FROM \"backfill ends\"\n"
				 "WHERE \"backfill next\" <> \"backfill tile\"\n"
				 "ORDER BY \"backfill k1\"");
	UNIT_CHECK(strstr(sql, "TABLESAMPLE") == NULL);
	/* Embeddable as a subquery. */
	UNIT_CHECK(strchr(sql, ';') == NULL);
	free(sql);
}

static void test_composite_keys_quoted_and_cast_back(void)
{
	bf_walk w = walk_two();
	char *sql = bf_split_sql(&w, "'{\"a b\",7}'", 3, 100);

	UNIT_CHECK_CONTAINS(sql,
			    "SELECT tenant AS \"backfill k1\", \"Order No\" AS \"backfill k2\"");
	UNIT_CHECK_CONTAINS(sql, "FROM \"my schema\".\"Orders\" WHERE (tenant, \"Order No\") <= "
				 "(('{\"a b\",7}'::text[])[1]::text, "
				 "('{\"a b\",7}'::text[])[2]::bigint)");
	UNIT_CHECK_CONTAINS(sql, "ARRAY[\"backfill k1\"::text, \"backfill k2\"::text]");
	UNIT_CHECK_CONTAINS(sql, "ntile(3) OVER (ORDER BY \"backfill k1\", \"backfill k2\")");
	UNIT_CHECK_CONTAINS(sql, "ORDER BY \"backfill k1\", \"backfill k2\"");
	free(sql);
}

static void test_one_slice_has_no_boundary_and_reads_nothing(void)
{
	bf_walk w = walk_one();
	char *sql = bf_split_sql(&w, "$4", 1, 1000000);

	UNIT_CHECK_STR(sql, "SELECT NULL::text[] AS boundary WHERE false");
	free(sql);
	/* The plan's form still reports the one range and its rows. */
	sql = bf_split_plan_sql(&w, "$4", 1, 1000);
	UNIT_CHECK_CONTAINS(sql, "ntile(1) OVER");
	free(sql);
}

static void test_large_table_is_sampled_by_pages(void)
{
	bf_walk w = walk_one();
	w.table = "\"it's\".\"a\\b\"";
	char *sql = bf_split_sql(&w, "$4", 8, 10000000);

	/* 100k of 10M rows: 1% of the pages, or 256 pages per range. */
	UNIT_CHECK_CONTAINS(sql, "SELECT least(100, greatest(1, CASE WHEN relpages > 0\n"
				 "    THEN 100.0 * 256 * 8 / relpages ELSE 0 END))::real AS "
				 "\"backfill first percent\"\n"
				 "  FROM pg_class WHERE oid = E'\"it''s\".\"a\\\\b\"'::regclass");
	UNIT_CHECK_CONTAINS(sql,
			    "FROM \"it's\".\"a\\b\" TABLESAMPLE SYSTEM ((SELECT "
			    "\"backfill first percent\" FROM \"backfill rate\")) WHERE (id) <= ");
	UNIT_CHECK_CONTAINS(sql, "WHERE (SELECT count(*) FROM \"backfill sample\") >= 10000");
	/* Too few sampled: drawn again, larger, never more than every page. */
	UNIT_CHECK_CONTAINS(sql,
			    "TABLESAMPLE SYSTEM ((SELECT least(100, \"backfill first percent\" "
			    "* \"backfill first percent\" * 10000000 / 100.0\n"
			    "    / greatest(s.n, 1))::real FROM (SELECT count(*) AS n FROM "
			    "\"backfill sample\") s, \"backfill rate\"))");
	UNIT_CHECK_CONTAINS(sql, "AND (SELECT count(*) FROM \"backfill sample\") < 10000");
	UNIT_CHECK_CONTAINS(sql, "ntile(8) OVER");
	free(sql);
}

static void test_exact_or_sampled_by_the_estimate(void)
{
	UNIT_CHECK(bf_split_reads_every_key(-1)); /* never analyzed */
	UNIT_CHECK(bf_split_reads_every_key(0));
	UNIT_CHECK(bf_split_reads_every_key(BF_SPLIT_EXACT_MAX_ROWS));
	UNIT_CHECK(!bf_split_reads_every_key(BF_SPLIT_EXACT_MAX_ROWS + 1));
	UNIT_CHECK(bf_split_sample_percent(200000) == 50);
	UNIT_CHECK(bf_split_sample_percent(50) == 100);
	double tiny = bf_split_sample_percent(INT64_MAX);

	UNIT_CHECK(tiny > 0 && tiny < 1e-9);

	bf_walk w = walk_one();
	char *unknown = bf_split_sql(&w, "$4", 4, -1);
	char *exact = bf_split_sql(&w, "$4", 4, BF_SPLIT_EXACT_MAX_ROWS);
	char *sampled = bf_split_sql(&w, "$4", 4, BF_SPLIT_EXACT_MAX_ROWS + 1);

	UNIT_CHECK(strstr(unknown, "TABLESAMPLE") == NULL);
	UNIT_CHECK(strstr(exact, "TABLESAMPLE") == NULL);
	UNIT_CHECK_CONTAINS(sampled, "greatest(99.999, CASE");
	free(unknown);
	free(exact);
	free(sampled);
}

static void test_plan_form_counts_keys_per_range(void)
{
	bf_walk w = walk_two();
	char *sql = bf_split_plan_sql(&w, "$1", 4, 50);

	UNIT_CHECK_CONTAINS(sql, "SELECT CASE WHEN \"backfill next\" IS NOT NULL THEN "
				 "\"backfill bound\" END AS boundary,\n"
				 "       \"backfill rn\" - coalesce(lag(\"backfill rn\") OVER "
				 "(ORDER BY \"backfill k1\", \"backfill k2\"), 0) AS keys,\n"
				 "       \"backfill percent\" AS percent,\n"
				 "       to_json(CASE WHEN \"backfill next\" IS NOT NULL THEN "
				 "\"backfill bound\" ELSE $1::text[] END) AS upper_json\n");
	UNIT_CHECK_CONTAINS(sql, "WHERE \"backfill next\" IS DISTINCT FROM \"backfill tile\"");
	free(sql);
}

/* Small tables get fewer ranges; an unknown size gets what was asked. */
static void test_ranges_are_never_tiny(void)
{
	UNIT_CHECK_INT(bf_split_ranges(4, -1), 4);
	UNIT_CHECK_INT(bf_split_ranges(4, 0), 1);
	UNIT_CHECK_INT(bf_split_ranges(4, BF_SPLIT_MIN_RANGE_ROWS - 1), 1);
	UNIT_CHECK_INT(bf_split_ranges(4, 2 * BF_SPLIT_MIN_RANGE_ROWS), 3);
	UNIT_CHECK_INT(bf_split_ranges(64, 1000000000), 64);
	UNIT_CHECK_INT(bf_split_ranges(0, 1000), 1);
}

int main(void)
{
	UNIT_RUN(test_exact_split_reads_every_key_in_key_order);
	UNIT_RUN(test_composite_keys_quoted_and_cast_back);
	UNIT_RUN(test_one_slice_has_no_boundary_and_reads_nothing);
	UNIT_RUN(test_large_table_is_sampled_by_pages);
	UNIT_RUN(test_exact_or_sampled_by_the_estimate);
	UNIT_RUN(test_plan_form_counts_keys_per_range);
	UNIT_RUN(test_ranges_are_never_tiny);
	return UNIT_DONE();
}
