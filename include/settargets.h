/* settargets.h -- the columns a job's set_clause assigns, read from its text
 * as PostgreSQL's grammar reads an UPDATE's SET list: the columns whose old
 * values an undo journal must keep.
 *
 * Pure functions on NUL-terminated strings; nothing here talks to a server,
 * so a name found here still has to be checked against the table's columns.
 * The text is read as a UTF-8 database with standard_conforming_strings on
 * (the defaults) would read it. */
#ifndef BF_SETTARGETS_H
#define BF_SETTARGETS_H

#include <stddef.h>

/* The columns set_clause assigns, in order, each once: identifiers as the
 * server would resolve them (a bare name folded to lower case, a
 * double-quoted one as written, unescaped; both cut to 63 bytes), in *names
 * (a malloc'd array of malloc'd strings, *n of them; free with
 * bf_set_targets_free). For a target with a subscript or a field
 * (arr[1] = ..., comp.f = ...) the column is the whole column (arr, comp):
 * its old value is what a restore puts back; several such targets on one
 * column (arr[1] = 1, arr[2] = 2, which the server accepts) name it once.
 *
 * Returns 0. On error returns -1, sets *names = NULL and *n = 0 and writes a
 * one-line reason to err (what, and where: the offset and the text near it)
 * when the targets cannot be determined: an empty clause, an unterminated
 * quote or block comment, unbalanced parentheses or brackets, a target that
 * is not a column name (an expression, a parameter, a constant, a reserved
 * word, ROW(...), a U&"..." identifier), a missing '=' or value, a tuple
 * whose column count differs from the visible count of its (...) or ROW(...)
 * source, a column assigned twice (the server refuses it too), or memory
 * running out. */
int bf_set_targets(const char *set_clause, char ***names, int *n, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees what bf_set_targets returned; names may be NULL. */
void bf_set_targets_free(char **names, int n);

/* name as an SQL identifier, always double-quoted with every '"' doubled
 * ("B c" -> "\"B c\""), malloc'd; NULL when memory runs out. For names
 * bf_set_targets returned, which the server has not quoted for us. */
char *bf_set_targets_quote(const char *name);

#endif
