/* split.h -- cutting a walk's key range into ranges of about equal row count. */
#ifndef BF_SPLIT_H
#define BF_SPLIT_H

#include <stdint.h>

#include "keyset.h"

/* A SELECT of one column, boundary (text[]), in key order: at most n-1
 * distinct keys below the walk's inclusive upper bound `upper` (an SQL
 * expression of type text[]), each the inclusive upper bound of a range
 * but the last. Fewer when the table has fewer rows. NULL when out of
 * memory. */
char *bf_split_sql(const bf_walk *w, const char *upper, int n, int64_t rows_estimate);

#endif
