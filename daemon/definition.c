/* definition.c -- refuses job clauses that would break the statements they go into. */
#include "definition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqltext.h"

char *bf_clause_dup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	size_t n;

	if (!d)
		return NULL;
	n = strlen(d);
	while (n > 0 && (d[n - 1] == ';' || d[n - 1] == ' ' || d[n - 1] == '\t' ||
			 d[n - 1] == '\n' || d[n - 1] == '\r'))
		d[--n] = '\0';
	if (n == 0) {
		free(d);
		return NULL;
	}
	return d;
}

/* Each operator clause is put into a statement of ours, inside parentheses
 * or a CTE of ours: a ';' would end that statement early (and split the
 * batch's transaction), and a ')' it did not open would close ours, letting
 * the rest of the clause run outside the batch (another CTE, say, that
 * modifies any table). */
char *bf_definition_check(bf_job_kind kind, const char *set_clause, const char *where_clause,
			  const char *statement)
{
	const struct {
		const char *column, *text;
	} clauses[] = {
		{"set_clause", set_clause},
		{"where_clause", where_clause},
		{"statement", statement},
	};
	char error[256];

	/* The schema requires the clause; a clause of only blanks and ';'
	 * passes its check but is nothing once they are trimmed. */
	if (kind == BF_KIND_UPDATE && !set_clause)
		return strdup("set_clause is empty (only blanks or ';'): give the SET list of "
			      "a kind update job, e.g. total_cents = (total * 100)::bigint");
	if (kind == BF_KIND_SQL && !statement)
		return strdup("statement is empty (only blanks or ';'): give the statement of "
			      "a kind sql job, reading the batch's keys from \"batch\"");
	for (size_t i = 0; i < sizeof(clauses) / sizeof(clauses[0]); i++) {
		int found = clauses[i].text ? bf_sql_has_semicolon(clauses[i].text) : 0;

		if (found == 0) {
			int parens = clauses[i].text ? bf_sql_parens(clauses[i].text) : 0;

			if (parens == 0)
				continue;
			snprintf(error, sizeof(error),
				 parens < 0 ? "%s has a ')' without its '(': it would close a "
					      "parenthesis of the batch statement; balance the "
					      "clause's parentheses"
					    : "%s has a '(' that is never closed: balance the "
					      "clause's parentheses",
				 clauses[i].column);
			return strdup(error);
		}
		snprintf(
			error, sizeof(error),
			found > 0
				? "%s contains a ';': give one SQL fragment, not several statements"
				: "%s has an unterminated quoted string, identifier or /* comment",
			clauses[i].column);
		return strdup(error);
	}
	/* A statement that never reads the batch would run on the whole table
	 * once per batch. */
	if (kind == BF_KIND_SQL && statement && !bf_sql_mentions(statement, "batch"))
		return strdup("statement never mentions \"batch\": it would run over "
			      "the whole table once per batch; join the batch's keys, "
			      "e.g. ... JOIN batch USING (id)");
	return NULL;
}
