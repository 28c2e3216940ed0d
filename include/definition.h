/* definition.h -- a job row's clauses, checked before any SQL is built from them. */
#ifndef BF_DEFINITION_H
#define BF_DEFINITION_H

#include "keyset.h"

/* A copy of an operator clause without a trailing ";" and blanks (inside a
 * CTE those are an error); NULL for NULL, empty, or out of memory. */
char *bf_clause_dup(const char *s);

/* Why a job with these clauses cannot run (malloc'd), or NULL when it can. */
char *bf_definition_check(bf_job_kind kind, const char *set_clause, const char *where_clause,
			  const char *statement);

#endif
