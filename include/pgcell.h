/* pgcell.h -- reading one cell of a libpq result: text, integer, boolean, copy.
 *
 * row and col must lie inside res (the caller has checked PQntuples and
 * reads its columns by name, an enum per query); SQL NULL is told apart
 * from the empty string by every function here. None of them fails except
 * bf_cell_dup, which returns NULL when it runs out of memory. */
#ifndef BF_PGCELL_H
#define BF_PGCELL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* The cell's text, owned by res; NULL for SQL NULL. */
const char *bf_cell(const PGresult *res, int row, int col);

/* The cell read as a base-10 integer (strtoll), null_value for SQL NULL. */
int64_t bf_cell_int(const PGresult *res, int row, int col, int64_t null_value);

/* True when the cell is a boolean true ("t"); false for false and SQL NULL. */
bool bf_cell_bool(const PGresult *res, int row, int col);

/* A malloc'd copy of the cell's text (the caller frees it); NULL for SQL
 * NULL or when out of memory. */
char *bf_cell_dup(const PGresult *res, int row, int col);

#endif
