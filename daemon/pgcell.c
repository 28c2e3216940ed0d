/* pgcell.c -- one cell of a libpq result, with SQL NULL kept apart from "". */
#include "pgcell.h"

#include <stdlib.h>
#include <string.h>

const char *bf_cell(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int64_t bf_cell_int(const PGresult *res, int row, int col, int64_t null_value)
{
	const char *v = bf_cell(res, row, col);

	return v ? strtoll(v, NULL, 10) : null_value;
}

bool bf_cell_bool(const PGresult *res, int row, int col)
{
	const char *v = bf_cell(res, row, col);

	return v && strcmp(v, "t") == 0;
}

char *bf_cell_dup(const PGresult *res, int row, int col)
{
	const char *v = bf_cell(res, row, col);

	return v ? strdup(v) : NULL;
}
