/* test_sqltext.c -- sqltext.c: reading SQL text as PostgreSQL would (strings,
 * comments, dollar quotes): WITH lists, semicolons, parentheses, names. */
#include <string.h>

#include "sqltext.h"
#include "unit.h"

static void test_semicolons(void)
{
	UNIT_CHECK_INT(bf_sql_has_semicolon("x = ';' || $$;$$ || \"a;b\" -- ;\n /* ; */"), 0);
	UNIT_CHECK_INT(bf_sql_has_semicolon("x = 1; DROP TABLE t"), 1);
	/* E'\';' is one string holding the ';' */
	UNIT_CHECK_INT(bf_sql_has_semicolon("x = E'\\';'"), 0);
	UNIT_CHECK_INT(bf_sql_has_semicolon("x = E'\\'' ; y"), 1);
	UNIT_CHECK_INT(bf_sql_has_semicolon("x = 'abc"), -1);
	UNIT_CHECK_INT(bf_sql_has_semicolon("x IS NULL /* note"), -1);
	UNIT_CHECK_INT(bf_sql_has_semicolon("x IS NULL /* a /* nested */ still open"), -1);
	UNIT_CHECK_INT(bf_sql_has_semicolon("x IS NULL /* a /* nested */ closed */"), 0);
}

static void test_parens(void)
{
	UNIT_CHECK_INT(bf_sql_parens("f(a, (b)) = ')' || $$($$ -- )\n /* ( */"), 0);
	/* Closing a parenthesis of ours: the rest would run outside the batch. */
	UNIT_CHECK_INT(bf_sql_parens("true) OR (true"), -1);
	UNIT_CHECK_INT(
		bf_sql_parens("SELECT 1 FROM batch), evil AS (DELETE FROM victim RETURNING 1"), -1);
	UNIT_CHECK_INT(bf_sql_parens("coalesce(x, 0"), 1);
	UNIT_CHECK_INT(bf_sql_parens("x = \"a)b\" AND y = E'\\')'"), 0);
}

static void test_mentions(void)
{
	UNIT_CHECK_INT(
		bf_sql_mentions("INSERT INTO a SELECT * FROM users JOIN batch USING (id)", "batch"),
		1);
	UNIT_CHECK_INT(bf_sql_mentions("... FROM BATCH b", "batch"), 1);
	UNIT_CHECK_INT(bf_sql_mentions("... FROM \"batch\"", "batch"), 1);
	UNIT_CHECK_INT(bf_sql_mentions("UPDATE t SET x = 1", "batch"), 0);
	UNIT_CHECK_INT(
		bf_sql_mentions("UPDATE t SET note = 'batch' -- batch\n /* batch */", "batch"), 0);
	UNIT_CHECK_INT(
		bf_sql_mentions("UPDATE t SET x = t.batch, y = batches, z = \"Batch\"", "batch"),
		0);
	UNIT_CHECK_INT(bf_sql_mentions("SELECT $batch$ x $batch$", "batch"), 0);
}

static void test_split_with(void)
{
	bf_sql_with w;
	const char *s =
		"  /* c */ WITH RECURSIVE a (x) AS (SELECT ')' FROM t), \"B c\" AS MATERIALIZED "
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

int main(void)
{
	UNIT_RUN(test_semicolons);
	UNIT_RUN(test_parens);
	UNIT_RUN(test_mentions);
	UNIT_RUN(test_split_with);
	return UNIT_DONE();
}
