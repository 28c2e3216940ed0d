/* sqltext.h -- just enough SQL lexing to take an operator's statement apart:
 * quotes, dollar quotes, comments and parentheses are respected. */
#ifndef BF_SQLTEXT_H
#define BF_SQLTEXT_H

#include <stddef.h>

typedef struct bf_sql_with {
	int recursive;	   /* WITH RECURSIVE */
	size_t ctes_start; /* the CTE list: [ctes_start, ctes_end) */
	size_t ctes_end;
	size_t main_start; /* the statement after the CTE list */
} bf_sql_with;

/* If stmt starts with a WITH clause, fills out and returns 1; returns 0 when
 * it does not start with WITH, -1 when the WITH clause cannot be taken apart
 * (unbalanced, unterminated, SEARCH/CYCLE): the caller then leaves the
 * statement as it is and lets the server say what is wrong. */
int bf_sql_split_with(const char *stmt, bf_sql_with *out);

/* 1 if text has a ';' outside quotes and comments (it would end the
 * statement it is put into), 0 if not, -1 if a quote or a block comment is
 * unterminated (it would swallow what follows it). */
int bf_sql_has_semicolon(const char *text);

/* 0 if every '(' of text outside quotes and comments is closed by a ')' of
 * its own; -1 if a ')' closes a parenthesis text did not open (it would
 * close one of the statement it is put into), 1 if a '(' is never closed.
 * Call it on text without unterminated quotes (bf_sql_has_semicolon). */
int bf_sql_parens(const char *text);

/* 1 if text uses the identifier name (case-insensitive bare word, or
 * exactly when double-quoted) outside quotes and comments, 0 if not. */
int bf_sql_mentions(const char *text, const char *name);

#endif
