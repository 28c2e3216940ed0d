/* test_settargets.c -- settargets.c: the columns a set_clause assigns, for
 * every form of PostgreSQL's SET list, through quotes, comments and
 * parentheses; every refusal with its reason and offset; and truncated or
 * mangled clauses, which must be answered, never read past their end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settargets.h"
#include "unit.h"

/* The targets of clause joined by '|', or "error: <reason>". */
static const char *targets(const char *clause)
{
	static char out[1024];
	char **names, err[256];
	int n;

	if (bf_set_targets(clause, &names, &n, err, sizeof(err)) < 0) {
		snprintf(out, sizeof(out), "error: %s", err);
		if (names || n)
			snprintf(out, sizeof(out), "error left names behind");
		return out;
	}
	out[0] = '\0';
	for (int k = 0; k < n; k++) {
		if (k)
			strcat(out, "|");
		strcat(out, names[k]);
	}
	bf_set_targets_free(names, n);
	return out;
}

static void test_single_columns(void)
{
	UNIT_CHECK_STR(targets("total_cents = (total * 100)::bigint"), "total_cents");
	UNIT_CHECK_STR(targets("a = 1, \"B c\" = lower(x), d = DEFAULT"), "a|B c|d");
	UNIT_CHECK_STR(targets("A = 1, MixedCase = 2, \"MixedCase\" = 3"), "a|mixedcase|MixedCase");
	UNIT_CHECK_STR(targets("\"Weird \"\"name\"\"\"= 1"), "Weird \"name\"");
	UNIT_CHECK_STR(targets("\"select\" = 1, \"a,b = c\" = 2"), "select|a,b = c");
	/* row is a col_name keyword: a column may be called that. */
	UNIT_CHECK_STR(targets("row = 1, rowid = 2"), "row|rowid");
	UNIT_CHECK_STR(targets("a$1 = 1, b2 = 2, _x = 3"), "a$1|b2|_x");
	UNIT_CHECK_STR(targets("\n\ta\n=\n1\n"), "a");
}

static void test_tuples(void)
{
	UNIT_CHECK_STR(targets("(a, b) = (1, 2)"), "a|b");
	UNIT_CHECK_STR(targets("(a, b) = (SELECT x, y FROM z WHERE z.id = t.id)"), "a|b");
	UNIT_CHECK_STR(targets("(a, b) = ROW(1, 2), c = 3"), "a|b|c");
	UNIT_CHECK_STR(targets("(a) = ROW(1)"), "a");
	UNIT_CHECK_STR(targets("(a) = (SELECT 1)"), "a");
	UNIT_CHECK_STR(targets("\n( a ,\n \"B\" ) =\n ( 1 , 2 )\n"), "a|B");
	UNIT_CHECK_STR(targets("(a, b[1], c.f) = (1, 2, 3)"), "a|b|c");
	/* The count is checked only when it shows. */
	UNIT_CHECK_STR(targets("(a, b) = ((SELECT 1, 2))"), "a|b");
	UNIT_CHECK_STR(targets("(a, b) = (WITH q AS (SELECT 1, 2) SELECT * FROM q)"), "a|b");
	UNIT_CHECK_STR(targets("(a, b) = (VALUES (1, 2))"), "a|b");
	UNIT_CHECK_STR(targets("(a, b) = (1, 2, 3)::pair"), "a|b");
	UNIT_CHECK_STR(targets("(a, b, c) = ((SELECT 1), (2), f(3, 4))"), "a|b|c");
	UNIT_CHECK_STR(targets("(a, b) = row_of(t)"), "a|b");
}

static void test_parts_of_columns(void)
{
	UNIT_CHECK_STR(targets("arr[1] = 5"), "arr");
	UNIT_CHECK_STR(targets("arr[1:2] = '{1,2}', m[i + f(1, 2)][j] = 0"), "arr|m");
	UNIT_CHECK_STR(targets("comp.field = 3"), "comp");
	UNIT_CHECK_STR(targets("\"Comp\" . \"F g\".sub = 3, arr [1].f = 4"), "Comp|arr");
	/* Fields are any word, reserved ones too. */
	UNIT_CHECK_STR(targets("comp.order = 1"), "comp");
	/* The server takes several assignments to parts of one column. */
	UNIT_CHECK_STR(targets("arr[1] = 1, arr[2] = 2, comp.a = 1, comp.b = 2"), "arr|comp");
	UNIT_CHECK_STR(targets("arr[']'] = 1"), "arr");
}

static void test_comments_and_quotes(void)
{
	UNIT_CHECK_STR(targets("-- lead\n a /* x = 1, y */ = 1 -- , b = 2\n, c /* a /* nested "
			       "*/ still */ = 2"),
		       "a|c");
	UNIT_CHECK_STR(targets("a = 'x, y = z', b = 'it''s, (', c = \"q,)\""), "a|b|c");
	UNIT_CHECK_STR(targets("a = $$ , b = 1 $$, c = $fn$ ) $$ ( $fn$"), "a|c");
	UNIT_CHECK_STR(targets("a = E'it\\'s, b = 1', c = 2"), "a|c");
	UNIT_CHECK_STR(targets("a = e'\\\\', b = 2"), "a|b");
	/* Without E a backslash is a plain character. */
	UNIT_CHECK_STR(targets("a = 'C:\\', b = 2"), "a|b");
	UNIT_CHECK_STR(targets("a = U&'d\\0061t', b = x'1F', c = $1, d = b$$x"), "a|b|c|d");
	UNIT_CHECK_STR(targets("a=--comment\n1, b=/* c */2"), "a|b");
}

static void test_values(void)
{
	UNIT_CHECK_STR(targets("a = b::text, c = '1'::int, d = x::numeric(10, 2)"), "a|c|d");
	UNIT_CHECK_STR(targets("a = coalesce(x, y, z), b = greatest(1, (2), 3)"), "a|b");
	UNIT_CHECK_STR(targets("a = (b = c), d = b = c"), "a|d");
	UNIT_CHECK_STR(targets("a = b >= c, d = e <> f, g = h => i, j = k == l"), "a|d|g|j");
	UNIT_CHECK_STR(targets("a =-1, b =+2, c=-+-3"), "a|b|c");
	UNIT_CHECK_STR(targets("a = ARRAY[1, 2], b = x[1:2], c = '{}'::int[]"), "a|b|c");
	UNIT_CHECK_STR(targets("a = CASE WHEN x = 1 THEN 'a,b' ELSE NULL END, b = 1"), "a|b");
	UNIT_CHECK_STR(targets("a = (SELECT max(y) FROM t2 WHERE t2.id = t.id), b = 2"), "a|b");
}

static void test_identifiers_as_the_server_resolves_them(void)
{
	char long_name[80], want[64];

	UNIT_CHECK_STR(targets("Ünïcode = 1, \"Ωmega\" = 2, ÄBC = 3"), "Ünïcode|Ωmega|Äbc");
	/* Longer than 63 bytes: cut, at a character boundary. */
	memset(long_name, 'A', 70);
	strcpy(long_name + 70, " = 1");
	memset(want, 'a', 63);
	want[63] = '\0';
	UNIT_CHECK_STR(targets(long_name), want);
	memset(long_name, 'a', 62);
	strcpy(long_name + 62, "é = 1"); /* é would straddle byte 63 */
	want[62] = '\0';
	UNIT_CHECK_STR(targets(long_name), want);
	UNIT_CHECK_CONTAINS(
		targets("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaX = "
			"1, aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaY = 2"),
		"is assigned twice");
}

static void test_unsupported_identifiers(void)
{
	UNIT_CHECK_STR(
		targets("U&\"d\\0061t\" = 1"),
		"error: U&\"...\" identifiers are not supported: write the column as a plain "
		"\"...\" identifier at offset 0 (near \"U&\"d\\0061t\" = 1\")");
	UNIT_CHECK_CONTAINS(targets("a = 1, u&\"x\" = 2"),
			    "U&\"...\" identifiers are not supported");
	UNIT_CHECK_CONTAINS(targets("comp.U&\"x\" = 2"), "U&\"...\" identifiers are not supported");
}

static void test_lexical_errors(void)
{
	UNIT_CHECK_STR(targets(""), "error: the set_clause is empty at the end (offset 0)");
	UNIT_CHECK_CONTAINS(targets("  -- nothing\n /* here */ "),
			    "error: the set_clause is empty");
	UNIT_CHECK_STR(targets("a = 'abc"),
		       "error: unterminated string at offset 4 (near \"'abc\")");
	UNIT_CHECK_CONTAINS(targets("a = 1 /* x"), "error: unterminated /* comment at offset 6");
	UNIT_CHECK_CONTAINS(targets("a = /* /* */ 1"),
			    "error: unterminated /* comment at offset 4");
	UNIT_CHECK_CONTAINS(targets("\"a = 1"),
			    "error: unterminated quoted identifier at offset 0");
	UNIT_CHECK_CONTAINS(targets("a = $q$ x $Q$"), "error: unterminated dollar-quoted string");
	UNIT_CHECK_CONTAINS(targets("a = E'x\\'"), "error: unterminated string at offset 5");
	UNIT_CHECK_CONTAINS(targets("a = (1"), "error: '(' is never closed at offset 4");
	UNIT_CHECK_CONTAINS(targets("a = 1)"), "error: ')' closes a parenthesis that was never "
					       "opened at offset 5");
	UNIT_CHECK_CONTAINS(targets("a = f(x]"), "error: ']' does not close the '(' at offset 5");
	UNIT_CHECK_CONTAINS(targets("arr[1 = 1"), "error: '[' is never closed at offset 3");
	UNIT_CHECK_CONTAINS(targets("a = x], b = 1"), "error: ']' closes a parenthesis");
}

static void test_targets_that_are_not_columns(void)
{
	UNIT_CHECK_STR(targets("a + 1 = 2"),
		       "error: expected '=' after the target at offset 2 (near \"+ 1 = 2\")");
	UNIT_CHECK_CONTAINS(targets("lower(a) = 'x'"), "error: a function call is not a column");
	UNIT_CHECK_CONTAINS(targets("ROW(a, b) = (1, 2)"), "error: ROW(...) is not a column");
	UNIT_CHECK_CONTAINS(targets("$1 = 2"), "error: a parameter is not a column at offset 0");
	UNIT_CHECK_CONTAINS(targets("1 = 1"), "error: a number is not a column");
	UNIT_CHECK_CONTAINS(targets("'a' = 1"), "error: a string constant is not a column");
	UNIT_CHECK_CONTAINS(targets("E'a' = 1"), "error: a string constant is not a column");
	UNIT_CHECK_CONTAINS(targets("$$a$$ = 1"), "error: a string constant is not a column");
	UNIT_CHECK_CONTAINS(targets("(a, (b)) = (1, 2)"),
			    "error: a parenthesized expression is not a column at offset 4");
	UNIT_CHECK_CONTAINS(targets("() = (1)"), "error: an empty column list ()");
	UNIT_CHECK_CONTAINS(targets("(a, ) = (1, 2)"), "error: expected a column name at offset 4");
	UNIT_CHECK_CONTAINS(targets("(a, b = (1, 2)"), "error: expected ',' or ')' in the column");
	UNIT_CHECK_CONTAINS(targets("(a, b"), "error: '(' of the column list is never closed");
	UNIT_CHECK_CONTAINS(targets("order = 1"), "error: order is a reserved word");
	UNIT_CHECK_CONTAINS(targets("a = 1, USER = 2"), "error: user is a reserved word");
	UNIT_CHECK_CONTAINS(targets("\"\" = 1"), "error: a zero-length \"\" identifier");
	UNIT_CHECK_CONTAINS(targets("comp.* = 1"), "error: a .* target is not a column");
	UNIT_CHECK_CONTAINS(targets("comp. = 1"), "error: expected a field name after '.'");
	UNIT_CHECK_CONTAINS(targets("comp.1 = 1"), "error: expected a field name after '.'");
	UNIT_CHECK_CONTAINS(targets("a == 1"), "error: expected '=' after the target, not another");
	UNIT_CHECK_CONTAINS(targets("a => 1"), "error: expected '=' after the target, not another");
	UNIT_CHECK_CONTAINS(targets("a =+* 1"), "error: expected '=' after the target, not");
	UNIT_CHECK_CONTAINS(targets("a >= 1"), "error: expected '=' after the target at offset 2");
	UNIT_CHECK_CONTAINS(targets("a := 1"), "error: expected '=' after the target at offset 2");
	UNIT_CHECK_STR(targets("a"), "error: expected '=' after the target at the end (offset 1)");
}

static void test_assignment_errors(void)
{
	UNIT_CHECK_STR(targets("a = "), "error: no value after '=' at the end (offset 4)");
	UNIT_CHECK_CONTAINS(targets("a = , b = 1"), "error: no value after '=' at offset 4");
	UNIT_CHECK_CONTAINS(targets("a = 1,"), "error: nothing after the last ','");
	UNIT_CHECK_CONTAINS(targets("a = 1, -- b = 2\n"), "error: nothing after the last ','");
	UNIT_CHECK_CONTAINS(targets("a = 1, , b = 2"), "error: expected a column name at offset 7");
	UNIT_CHECK_CONTAINS(targets(", a = 1"), "error: expected a column name at offset 0");
	UNIT_CHECK_CONTAINS(targets("(a, b) = (1, 2, 3)"),
			    "error: 2 columns but 3 values at offset 9");
	UNIT_CHECK_CONTAINS(targets("(a, b) = ROW(1)"), "error: 2 columns but 1 value at");
	UNIT_CHECK_CONTAINS(targets("(a) = ROW(1, 2)"), "error: 1 column but 2 values");
	UNIT_CHECK_CONTAINS(targets("(a, b) = ()"), "error: 2 columns but 0 values");
	UNIT_CHECK_CONTAINS(targets("(a, b) = row ( )"), "error: 2 columns but 0 values");
	UNIT_CHECK_STR(targets("a = 1, a = 2"),
		       "error: column \"a\" is assigned twice at offset 7 (near \"a = 2\")");
	UNIT_CHECK_CONTAINS(targets("A = 1, \"a\" = 2"), "error: column \"a\" is assigned twice");
	UNIT_CHECK_CONTAINS(targets("a = 1, a[1] = 2"), "error: column \"a\" is assigned twice");
	UNIT_CHECK_CONTAINS(targets("a[1] = 1, a = 2"), "error: column \"a\" is assigned twice");
	UNIT_CHECK_CONTAINS(targets("(a, A) = (1, 2)"), "error: column \"a\" is assigned twice");
	UNIT_CHECK_CONTAINS(targets("(a, b) = (1, 2), b = 3"), "is assigned twice");
}

static void test_error_reports(void)
{
	char **names = (char **)1, err[12], line[300];
	int n = 1;
	char deep[700];

	/* Nesting beyond any real clause is refused, not recursed into. */
	memset(deep, '(', 600);
	strcpy(deep + 600, "1");
	snprintf(line, sizeof(line), "a = %.280s", deep);
	UNIT_CHECK_CONTAINS(targets(line), "error: parentheses nested deeper than 256");
	/* One line, valid UTF-8, whatever the text near the error holds. */
	UNIT_CHECK_STR(
		targets("a = 1,\n\n \"x\ny\" = 2, \"x\ny\" = 3"),
		"error: column \"x y\" is assigned twice at offset 20 (near \"\"x y\" = 3\")");
	UNIT_CHECK_STR(targets("a = 1, b = 'ééééééééééééééééééé"),
		       "error: unterminated string at offset 11 (near \"'ééééééééééé\")");
	/* A short buffer holds a cut message; no buffer at all is fine too. */
	UNIT_CHECK_INT(bf_set_targets("a = 'é", &names, &n, err, sizeof(err)), -1);
	UNIT_CHECK(names == NULL && n == 0);
	UNIT_CHECK_STR(err, "unterminate");
	/* ... and no half of a character. */
	UNIT_CHECK_INT(bf_set_targets("\"ééé\" = 1, \"ééé\" = 2", &names, &n, err, sizeof(err)),
		       -1);
	UNIT_CHECK_STR(err, "column \"é");
	UNIT_CHECK_INT(bf_set_targets("a = (", &names, &n, NULL, 0), -1);
	UNIT_CHECK_INT(bf_set_targets(NULL, &names, &n, err, sizeof(err)), -1);
	bf_set_targets_free(NULL, 0);
}

static void test_quote(void)
{
	static const char *const names[] = {"B c", "Weird \"name\"", "", "a", "Ωmega", "\"\""};
	static const char *const quoted[] = {
		"\"B c\"", "\"Weird \"\"name\"\"\"", "\"\"", "\"a\"", "\"Ωmega\"", "\"\"\"\"\"\""};

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		char *q = bf_set_targets_quote(names[k]), clause[64];

		UNIT_CHECK_STR(q, quoted[k]);
		/* What is quoted reads back as the same column. */
		if (q && names[k][0]) {
			snprintf(clause, sizeof(clause), "%s = 1", q);
			UNIT_CHECK_STR(targets(clause), names[k]);
		}
		free(q);
	}
}

/* Every clause the tests above accept; the fuzz below cuts and mangles them. */
static const char *const valid_clauses[] = {
	"total_cents = (total * 100)::bigint",
	"a = 1, \"B c\" = lower(x), d = DEFAULT",
	"(a, b) = (SELECT x, y FROM z WHERE z.id = t.id)",
	"(a, b) = ROW(1, 2), c = 3",
	"arr[1:2] = '{1,2}', m[i + f(1, 2)][j] = 0, comp.f = 3",
	"\"Comp\" . \"F g\".sub = 3, arr [1].f = 4",
	"\"Weird \"\"name\"\"\"= 1",
	"-- lead\n a /* x = 1, y */ = 1 -- , b = 2\n, c /* a /* nested */ still */ = 2",
	"a = 'x, y = z', b = 'it''s, (', c = \"q,)\"",
	"a = $$ , b = 1 $$, c = $fn$ ) $$ ( $fn$",
	"a = E'it\\'s, b = 1', c = 2",
	"a = U&'d\\0061t', b = x'1F', c = $1, d = b$$x",
	"a = b >= c, d = e <> f, g = h => i, j = (k = l)",
	"a =-1, b =+2, c=-+-3, d = ARRAY[1, 2]",
	"Ünïcode = 1, \"Ωmega\" = 2, ÄBC = 3",
	"(a, b) = ((SELECT 1, 2)), c = CASE WHEN x = 1 THEN 'a,b' END",
};

/* Runs the parser on a malloc'd copy of exactly len bytes of clause, so
 * that the sanitizers catch a read past its end. */
static int run_exact(const char *clause, size_t len)
{
	char *copy = malloc(len + 1), **names, err[128];
	int n, rc;

	memcpy(copy, clause, len);
	copy[len] = '\0';
	rc = bf_set_targets(copy, &names, &n, err, sizeof(err));
	if (rc == 0 && (n < 1 || !names))
		rc = 2;
	if (rc == -1 && (names || n || !err[0]))
		rc = 3;
	if (rc == 0)
		bf_set_targets_free(names, n);
	free(copy);
	return rc;
}

static void test_fuzz_truncations_and_mutations(void)
{
	static const char mutations[] = "'\"()[]$,=-/*\\.;E&U \n\x80\xc3";

	for (size_t k = 0; k < sizeof(valid_clauses) / sizeof(valid_clauses[0]); k++) {
		const char *clause = valid_clauses[k];
		size_t len = strlen(clause);
		char *mutated = malloc(len + 1);

		UNIT_CHECK_INT(run_exact(clause, len), 0);
		for (size_t cut = 0; cut < len; cut++) {
			int rc = run_exact(clause, cut);

			UNIT_CHECK(rc == 0 || rc == -1);
		}
		/* Every byte replaced by each character the scanner treats
		 * specially: an answer each time, never a crash. */
		for (size_t at = 0; at < len; at++) {
			for (const char *m = mutations; *m; m++) {
				memcpy(mutated, clause, len + 1);
				mutated[at] = *m;
				int rc = run_exact(mutated, len);

				UNIT_CHECK(rc == 0 || rc == -1);
			}
		}
		free(mutated);
	}
}

int main(void)
{
	UNIT_RUN(test_single_columns);
	UNIT_RUN(test_tuples);
	UNIT_RUN(test_parts_of_columns);
	UNIT_RUN(test_comments_and_quotes);
	UNIT_RUN(test_values);
	UNIT_RUN(test_identifiers_as_the_server_resolves_them);
	UNIT_RUN(test_unsupported_identifiers);
	UNIT_RUN(test_lexical_errors);
	UNIT_RUN(test_targets_that_are_not_columns);
	UNIT_RUN(test_assignment_errors);
	UNIT_RUN(test_error_reports);
	UNIT_RUN(test_quote);
	UNIT_RUN(test_fuzz_truncations_and_mutations);
	return UNIT_DONE();
}
