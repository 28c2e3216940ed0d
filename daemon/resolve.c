/* resolve.c -- the table and key columns of a walk, and why they may be refused. */
#include "resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* The server quotes every identifier we compose (format %I,
 * quote_ident), and $1::regclass resolves the name the way the
 * operator's own session would. One row per key column, with what makes
 * a walk correct: NOT NULL keys that are exactly a unique index. The
 * type without modifier, as format_type(t, -1) spells it ("bpchar", not
 * "character", which means char(1) in a cast). */
const char bf_resolve_sql[] =
	"WITH rel AS (\n"
	"  SELECT c.oid, c.reltuples, c.relkind, c.relhassubclass,\n"
	"         format('%I.%I', n.nspname, c.relname) AS qualified\n"
	"  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	"  WHERE c.oid = $1::regclass\n"
	"), keys AS (\n"
	"  SELECT u.ord, u.name, a.attnum, a.attnotnull, quote_ident(a.attname) AS quoted,\n"
	"         format_type(a.atttypid, -1) AS type\n"
	"  FROM rel\n"
	"  CROSS JOIN LATERAL unnest(coalesce($2::text[], ARRAY(\n"
	"      SELECT pa.attname::text\n"
	"      FROM pg_catalog.pg_index i,\n"
	"           unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord),\n"
	"           pg_catalog.pg_attribute pa\n"
	"      WHERE i.indrelid = rel.oid AND i.indisprimary\n"
	"        AND pa.attrelid = rel.oid AND pa.attnum = k.attnum\n"
	"      ORDER BY k.ord))) WITH ORDINALITY u(name, ord)\n"
	"  LEFT JOIN pg_catalog.pg_attribute a\n"
	"    ON a.attrelid = rel.oid AND a.attname = u.name AND a.attnum > 0 AND NOT a.attisdropped\n"
	")\n"
	"SELECT rel.qualified, CASE WHEN rel.reltuples >= 0 THEN rel.reltuples::bigint END,\n"
	"       k.name, k.quoted, k.type, k.attnotnull,\n"
	"       EXISTS (SELECT 1 FROM pg_catalog.pg_index i\n"
	"               WHERE i.indrelid = rel.oid AND i.indisunique AND i.indisvalid\n"
	"                 AND i.indpred IS NULL AND i.indexprs IS NULL\n"
	"                 AND i.indnkeyatts = (SELECT count(*) FROM keys)\n"
	"                 AND (i.indkey::int2[])[0:i.indnkeyatts - 1]\n"
	"                     = ARRAY(SELECT k2.attnum FROM keys k2 ORDER BY k2.ord)),\n"
	"       rel.relkind, rel.relhassubclass,\n"
	"       $2::text[] IS NOT NULL AND array_position($2::text[], NULL) IS NOT NULL,\n"
	"       rel.oid\n"
	"FROM rel LEFT JOIN keys k ON true\n"
	"ORDER BY k.ord";

/* *out = a copy of error; -1. */
static int resolve_fail(char **out, const char *error)
{
	*out = strdup(error);
	return -1;
}

void bf_table_free(bf_table *t)
{
	for (int i = 0; i < t->nkeys; i++) {
		free(t->key_names ? t->key_names[i] : NULL);
		free(t->key_types ? t->key_types[i] : NULL);
	}
	free(t->key_names);
	free(t->key_types);
	free(t->quoted);
	memset(t, 0, sizeof(*t));
}

void bf_table_walk(const bf_table *t, bf_walk *w, bf_job_kind kind, const char *set_clause,
		   const char *where_clause, const char *statement)
{
	w->table = t->quoted;
	w->nkeys = t->nkeys;
	w->key_names = (const char *const *)t->key_names;
	w->key_types = (const char *const *)t->key_types;
	w->kind = kind;
	w->set_clause = set_clause;
	w->where_clause = where_clause;
	w->statement = statement;
}

int bf_resolve_table(const PGresult *res, const char *table_name, bf_table *t, char **out)
{
	char error[1024];

	*out = NULL;
	int n = PQntuples(res);

	/* A batch locks rows and compares their ctid: tables only. */
	static const struct {
		char relkind;
		const char *what;
	} relkinds[] = {
		{'v', "a view"},
		{'m', "a materialized view"},
		{'f', "a foreign table"},
		{'S', "a sequence"},
		{'c', "a composite type"},
		{'i', "an index"},
		{'I', "a partitioned index"},
		{'t', "a TOAST table"},
	};
	char relkind = n > 0 ? PQgetvalue(res, 0, 7)[0] : 'r';

	for (size_t i = 0; i < sizeof(relkinds) / sizeof(relkinds[0]); i++) {
		if (relkinds[i].relkind == relkind) {
			snprintf(error, sizeof(error),
				 "%s is %s: backfilld walks tables and partitioned tables only",
				 PQgetvalue(res, 0, 0), relkinds[i].what);
			return resolve_fail(out, error);
		}
	}
	/* A unique index of a parent does not cover its inheritance children:
	 * keys could repeat across the hierarchy. (Partitioned tables are
	 * fine: their unique indexes span every partition.) */
	if (relkind == 'r' && strcmp(PQgetvalue(res, 0, 8), "t") == 0) {
		snprintf(error, sizeof(error),
			 "%s has inheritance children, whose keys its unique index does not cover: "
			 "run one job per child table instead",
			 PQgetvalue(res, 0, 0));
		return resolve_fail(out, error);
	}
	/* key_columns = '{NULL}' would otherwise read as "no primary key". */
	if (n > 0 && strcmp(PQgetvalue(res, 0, 9), "t") == 0) {
		snprintf(error, sizeof(error),
			 "key_columns of table %s contains a NULL: give the names of columns "
			 "that identify a row",
			 PQgetvalue(res, 0, 0));
		return resolve_fail(out, error);
	}
	/* One row per key column; a NULL key name: no primary key; a NULL
	 * attribute: a key_columns entry the table does not have. */
	if (n == 0 || PQgetisnull(res, 0, 2)) {
		snprintf(
			error, sizeof(error),
			"table %s has no primary key: set key_columns to columns that identify a row",
			table_name);
		return resolve_fail(out, error);
	}
	for (int i = 0; i < n; i++) {
		if (PQgetisnull(res, i, 3)) {
			snprintf(error, sizeof(error),
				 "key column \"%s\" does not exist in table %s",
				 PQgetvalue(res, i, 2), PQgetvalue(res, 0, 0));
			return resolve_fail(out, error);
		}
	}
	if (strcmp(PQgetvalue(res, 0, 6), "t") != 0) {
		bf_strbuf keys;

		bf_strbuf_init(&keys);
		for (int i = 0; i < n; i++)
			bf_strbuf_printf(&keys, "%s%s %s", i ? ", " : "", PQgetvalue(res, i, 3),
					 PQgetvalue(res, i, 4));
		/* Equal keys straddling two pages would be skipped, and without
		 * an index on exactly these columns every batch scans the table.
		 * A type without btree ordering (json, point) can have no such index. */
		snprintf(
			error, sizeof(error),
			"key columns (%s) of table %s are not exactly the columns of a unique btree index, "
			"in index order: create such an index or choose other key_columns",
			keys.data ? keys.data : "", PQgetvalue(res, 0, 0));
		bf_strbuf_free(&keys);
		return resolve_fail(out, error);
	}
	for (int i = 0; i < n; i++) {
		if (strcmp(PQgetvalue(res, i, 5), "t") != 0) {
			snprintf(
				error, sizeof(error),
				"key column %s of table %s is nullable: rows with a NULL key would never be "
				"walked; make it NOT NULL or choose other key_columns",
				PQgetvalue(res, i, 3), PQgetvalue(res, 0, 0));
			return resolve_fail(out, error);
		}
	}
	bf_table_free(t);
	t->key_names = calloc((size_t)n, sizeof(char *));
	t->key_types = calloc((size_t)n, sizeof(char *));
	t->quoted = strdup(PQgetvalue(res, 0, 0));
	if (!t->key_names || !t->key_types || !t->quoted) {
		bf_table_free(t);
		return -1;
	}
	t->nkeys = n;
	for (int i = 0; i < n; i++) {
		t->key_names[i] = strdup(PQgetvalue(res, i, 3));
		t->key_types[i] = strdup(PQgetvalue(res, i, 4));
		if (!t->key_names[i] || !t->key_types[i]) {
			bf_table_free(t);
			return -1;
		}
	}
	t->rows_estimate = PQgetisnull(res, 0, 1) ? -1 : strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	t->oid = (uint32_t)strtoul(PQgetvalue(res, 0, 10), NULL, 10);
	return 0;
}
