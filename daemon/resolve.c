/* resolve.c -- the table and key columns of a walk, and why they may be refused. */
#include "resolve.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgcell.h"
#include "strbuf.h"

/* The server quotes every identifier we compose (format %I,
 * quote_ident), and $1::regclass resolves the name the way the
 * operator's own session would. One row per key column, with what makes
 * a walk correct: NOT NULL keys that are exactly a unique index. The
 * type without modifier, as format_type(t, -1) spells it ("bpchar", not
 * "character", which means char(1) in a cast).
 *
 * Every row also carries the verdict on the table's code (SECURITY.md,
 * "Code on the walked table"): what would run as the daemon's role during
 * a batch, UPDATE or SELECT, and is controlled by a role that the job's
 * author ($3) is not a member of and that could not act as the daemon's
 * role already (a superuser, or a member of that role). Controlled by:
 * the owner of the table (or partition, or domain) that carries it, and
 * the owner of every function it calls, who can replace the body.
 * Triggers (SECURITY DEFINER too: see SECURITY.md), rules and policies
 * always count as code. An expression (CHECK, domain, index, partition
 * key, generated column, default) counts when it calls a function that is
 * not built in; a CHECK or domain constraint also when it calls a built-in
 * that is not immutable (table_to_xml() reads any table, pg_notify()
 * sends it out). pg_depend holds the calls of non-built-in functions
 * (operators lead to their functions); it omits built-ins, whose ids are
 * read from the stored expression (funcid, opfuncid). A default runs on
 * UPDATE only for SET col = DEFAULT, so its built-ins (nextval, now) do
 * not count. A policy runs only when row security applies to the daemon
 * and the policy names one of its roles; USING (true) WITH CHECK (true),
 * what roles.sql suggests, runs nothing. */
const char bf_resolve_sql[] =
	"WITH RECURSIVE rel AS (\n"
	"  SELECT c.oid, c.reltuples, c.relkind, c.relhassubclass,\n"
	"         format('%I.%I', n.nspname, c.relname) AS qualified\n"
	"  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	"  WHERE c.oid = $1::regclass\n"
	"), keys AS (\n"
	"  SELECT u.ord, u.name, a.attnum, a.attnotnull, quote_ident(a.attname) AS quoted,\n"
	"         format_type(a.atttypid, -1) AS type, a.atttypid AS type_oid\n"
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
	/* The table and its partitions: a partition's triggers fire too. */
	"), tree AS (\n"
	"  SELECT c.oid AS relid, c.relowner, c.oid = rel.oid AS root,\n"
	"         CASE WHEN c.oid <> rel.oid\n"
	"              THEN format(' on partition %I.%I', n.nspname, c.relname) ELSE '' END AS on_rel\n"
	"  FROM rel\n"
	"  JOIN pg_catalog.pg_class c\n"
	"    ON c.oid = rel.oid OR c.oid IN (SELECT relid FROM pg_catalog.pg_partition_tree(rel.oid))\n"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	/* Column types, array elements, and the domains they are built on. */
	"), types(typid) AS (\n"
	"  SELECT x.typid\n"
	"  FROM tree\n"
	"  JOIN pg_catalog.pg_attribute a\n"
	"    ON a.attrelid = tree.relid AND a.attnum > 0 AND NOT a.attisdropped\n"
	"  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid\n"
	"  CROSS JOIN LATERAL (VALUES (t.oid), (nullif(t.typelem, 0))) x(typid)\n"
	"  WHERE x.typid IS NOT NULL\n"
	"  UNION\n"
	"  SELECT t.typbasetype FROM types JOIN pg_catalog.pg_type t ON t.oid = types.typid\n"
	"  WHERE t.typtype = 'd'\n"
	"), code(rank, what, writer, always, expr, classid, objid) AS (\n"
	"  SELECT 1, format('trigger \"%s\"%s', t.tgname, tree.on_rel), tree.relowner, true,\n"
	"         NULL::pg_node_tree, 'pg_catalog.pg_trigger'::regclass, t.oid\n"
	"  FROM tree JOIN pg_catalog.pg_trigger t ON t.tgrelid = tree.relid\n"
	"  WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'\n"
	"  UNION ALL\n"
	"  SELECT 2, format('rule \"%s\"%s', r.rulename, tree.on_rel), tree.relowner, true, NULL,\n"
	"         'pg_catalog.pg_rewrite'::regclass, r.oid\n"
	"  FROM tree JOIN pg_catalog.pg_rewrite r ON r.ev_class = tree.relid\n"
	"  WHERE r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'\n"
	"  UNION ALL\n"
	"  SELECT 3, format('row security policy \"%s\"', p.polname), tree.relowner, true, NULL,\n"
	"         'pg_catalog.pg_policy'::regclass, p.oid\n"
	"  FROM tree JOIN pg_catalog.pg_policy p ON p.polrelid = tree.relid\n"
	"  WHERE tree.root AND pg_catalog.row_security_active(tree.relid)\n"
	"    AND (0 = ANY (p.polroles) OR EXISTS (\n"
	"           SELECT FROM unnest(p.polroles) pr(oid)\n"
	"           WHERE pr.oid <> 0 AND pg_catalog.pg_has_role(pr.oid, 'USAGE')))\n"
	"    AND NOT (coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') = 'true'\n"
	"             AND coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true')\n"
	"                 = 'true')\n"
	"  UNION ALL\n"
	"  SELECT 4, format('check constraint \"%s\"%s', k.conname, tree.on_rel), tree.relowner,\n"
	"         false, k.conbin, 'pg_catalog.pg_constraint'::regclass, k.oid\n"
	"  FROM tree JOIN pg_catalog.pg_constraint k ON k.conrelid = tree.relid AND k.contype = 'c'\n"
	"  UNION ALL\n"
	"  SELECT 5, format('domain %I.%I (constraint \"%s\")', n.nspname, t.typname, k.conname),\n"
	"         t.typowner, false, k.conbin, 'pg_catalog.pg_constraint'::regclass, k.oid\n"
	"  FROM types JOIN pg_catalog.pg_type t ON t.oid = types.typid AND t.typtype = 'd'\n"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace\n"
	"  JOIN pg_catalog.pg_constraint k ON k.contypid = t.oid\n"
	"  UNION ALL\n"
	"  SELECT 6, format('index \"%s\"', ic.relname), tree.relowner, false, NULL,\n"
	"         'pg_catalog.pg_class'::regclass, i.indexrelid\n"
	"  FROM tree JOIN pg_catalog.pg_index i ON i.indrelid = tree.relid\n"
	"  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid\n"
	"  WHERE i.indexprs IS NOT NULL OR i.indpred IS NOT NULL\n"
	"  UNION ALL\n"
	"  SELECT 7, format('partition key%s', tree.on_rel), tree.relowner, false, NULL,\n"
	"         'pg_catalog.pg_class'::regclass, tree.relid\n"
	"  FROM tree JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = tree.relid\n"
	"  WHERE pt.partexprs IS NOT NULL\n"
	"  UNION ALL\n"
	"  SELECT 8, format(CASE WHEN a.attgenerated <> '' THEN 'generated column \"%s\"%s'\n"
	"                        ELSE 'default of column \"%s\"%s' END, a.attname, tree.on_rel),\n"
	"         tree.relowner, false, NULL, 'pg_catalog.pg_attrdef'::regclass, d.oid\n"
	"  FROM tree JOIN pg_catalog.pg_attrdef d ON d.adrelid = tree.relid\n"
	"  JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum\n"
	"), calls AS (\n"
	"  SELECT DISTINCT d.classid, d.objid, p.proowner,\n"
	"         format('%I.%I(%s)', n.nspname, p.proname,\n"
	"                pg_catalog.oidvectortypes(p.proargtypes)) AS signature\n"
	"  FROM code\n"
	"  JOIN pg_catalog.pg_depend d ON d.classid = code.classid AND d.objid = code.objid\n"
	"  LEFT JOIN pg_catalog.pg_operator o\n"
	"    ON d.refclassid = 'pg_catalog.pg_operator'::regclass AND o.oid = d.refobjid\n"
	"  JOIN pg_catalog.pg_proc p\n"
	"    ON p.oid = CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::regclass THEN d.refobjid\n"
	"                    ELSE o.oprcode END\n"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace\n"
	"  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')\n"
	"), judged AS (\n"
	"  SELECT code.rank, code.what, code.always,\n"
	"         ARRAY(SELECT c.signature FROM calls c\n"
	"               WHERE c.classid = code.classid AND c.objid = code.objid\n"
	"               UNION\n"
	"               SELECT format('%I.%I(%s)', 'pg_catalog', p.proname,\n"
	"                             pg_catalog.oidvectortypes(p.proargtypes))\n"
	"               FROM regexp_matches(code.expr::text, ':(funcid|opfuncid) (\\d+)', 'g') m\n"
	"               JOIN pg_catalog.pg_proc p ON p.oid = m[2]::oid\n"
	"               WHERE p.provolatile <> 'i'\n"
	"                 AND p.pronamespace = 'pg_catalog'::regnamespace\n"
	"               ORDER BY 1) AS functions,\n"
	"         ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r\n"
	"               WHERE (r.oid = code.writer OR r.oid IN (\n"
	"                        SELECT c.proowner FROM calls c\n"
	"                        WHERE c.classid = code.classid AND c.objid = code.objid))\n"
	"                 AND NOT coalesce(pg_catalog.pg_has_role(author.oid, r.oid, 'MEMBER'), false)\n"
	"                 AND NOT pg_catalog.pg_has_role(r.oid, current_user, 'MEMBER')\n"
	"               ORDER BY 1) AS strangers\n"
	"  FROM code\n"
	"  LEFT JOIN pg_catalog.pg_roles author ON author.rolname = $3::text\n"
	"  WHERE NOT $4::boolean\n"
	"), foreign_code AS (\n"
	"  SELECT j.*, row_number() OVER (ORDER BY j.rank, j.what) AS nth\n"
	"  FROM judged j\n"
	"  WHERE (j.always OR cardinality(j.functions) > 0) AND cardinality(j.strangers) > 0\n"
	"), verdict AS (\n"
	"  SELECT count(*) AS n,\n"
	"         string_agg(f.what || CASE cardinality(f.functions) WHEN 0 THEN ''\n"
	"                                  WHEN 1 THEN ' (function ' ELSE ' (functions ' END\n"
	"                           || array_to_string(f.functions, ', ')\n"
	"                           || CASE WHEN cardinality(f.functions) > 0 THEN ')' ELSE '' END,\n"
	"                    ', ' ORDER BY f.nth) FILTER (WHERE f.nth <= 3) AS objects,\n"
	"         (SELECT string_agg(format('\"%s\"', s.role), ', ' ORDER BY s.role)\n"
	"          FROM (SELECT DISTINCT unnest(f2.strangers) FROM foreign_code f2) s(role)) AS roles,\n"
	"         (SELECT count(DISTINCT s.role)\n"
	"          FROM foreign_code f3, unnest(f3.strangers) s(role)) AS nroles\n"
	"  FROM foreign_code f\n"
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
	"       rel.oid,\n"
	"       v.n, v.objects, v.roles, v.nroles, $3::text, quote_literal($5::text),\n"
	"       k.type_oid\n"
	"FROM rel LEFT JOIN keys k ON true CROSS JOIN verdict v\n"
	"ORDER BY k.ord";

/* The columns of bf_resolve_sql, by name. */
enum resolve_col {
	RC_QUALIFIED,	    /* "schema"."table" */
	RC_ROWS_ESTIMATE,   /* reltuples, NULL when never analyzed */
	RC_KEY_NAME,	    /* as the job (or the primary key) names it; NULL: no key */
	RC_KEY_QUOTED,	    /* NULL: the table has no such column */
	RC_KEY_TYPE,	    /* format_type(type, -1) */
	RC_KEY_NOT_NULL,    /* attnotnull */
	RC_KEYS_UNIQUE,	    /* exactly the columns of a valid unique btree index */
	RC_RELKIND,	    /* pg_class.relkind */
	RC_HAS_CHILDREN,    /* relhassubclass */
	RC_KEYS_HAVE_NULL,  /* key_columns contains a NULL */
	RC_OID,		    /* pg_class.oid */
	RC_FOREIGN_COUNT,   /* code on the table controlled by strangers: how many */
	RC_FOREIGN_OBJECTS, /* the first three, described */
	RC_FOREIGN_ROLES,   /* the strangers, quoted, comma-separated */
	RC_FOREIGN_NROLES,  /* how many strangers */
	RC_AUTHOR,	    /* $3, the job's author; NULL when not recorded */
	RC_JOB_LITERAL,	    /* $5 as an SQL literal, for the remedy's UPDATE */
	RC_KEY_TYPE_OID,    /* atttypid: what the walk is pinned to (names vary with search_path) */
};

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
	free(t->key_type_oids);
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

/* What the table is, rather than its key: a reason it cannot be walked. */
static int resolve_check_relation(const PGresult *res, char **out)
{
	char error[1024];
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
	char relkind = n > 0 ? bf_cell(res, 0, RC_RELKIND)[0] : 'r';

	for (size_t i = 0; i < sizeof(relkinds) / sizeof(relkinds[0]); i++) {
		if (relkinds[i].relkind == relkind) {
			snprintf(error, sizeof(error),
				 "%s is %s: backfilld walks tables and partitioned tables only",
				 bf_cell(res, 0, RC_QUALIFIED), relkinds[i].what);
			return resolve_fail(out, error);
		}
	}
	/* A unique index of a parent does not cover its inheritance children:
	 * keys could repeat across the hierarchy. (Partitioned tables are
	 * fine: their unique indexes span every partition.) */
	if (n > 0 && relkind == 'r' && bf_cell_bool(res, 0, RC_HAS_CHILDREN)) {
		snprintf(error, sizeof(error),
			 "%s has inheritance children, whose keys its unique index does not cover: "
			 "run one job per child table instead",
			 bf_cell(res, 0, RC_QUALIFIED));
		return resolve_fail(out, error);
	}
	return 0;
}

/* The key columns: present, NOT NULL, and exactly a unique btree index. */
static int resolve_check_keys(const PGresult *res, const char *table_name, char **out)
{
	char error[1024];
	int n = PQntuples(res);

	/* key_columns = '{NULL}' would otherwise read as "no primary key". */
	if (n > 0 && bf_cell_bool(res, 0, RC_KEYS_HAVE_NULL)) {
		snprintf(error, sizeof(error),
			 "key_columns of table %s contains a NULL: give the names of columns "
			 "that identify a row",
			 bf_cell(res, 0, RC_QUALIFIED));
		return resolve_fail(out, error);
	}
	/* One row per key column; a NULL key name: no primary key; a NULL
	 * attribute: a key_columns entry the table does not have. */
	if (n == 0 || !bf_cell(res, 0, RC_KEY_NAME)) {
		snprintf(
			error, sizeof(error),
			"table %s has no primary key: set key_columns to columns that identify a row",
			table_name);
		return resolve_fail(out, error);
	}
	for (int i = 0; i < n; i++) {
		if (!bf_cell(res, i, RC_KEY_QUOTED)) {
			snprintf(error, sizeof(error),
				 "key column \"%s\" does not exist in table %s",
				 bf_cell(res, i, RC_KEY_NAME), bf_cell(res, 0, RC_QUALIFIED));
			return resolve_fail(out, error);
		}
	}
	if (!bf_cell_bool(res, 0, RC_KEYS_UNIQUE)) {
		bf_strbuf keys;

		bf_strbuf_init(&keys);
		for (int i = 0; i < n; i++)
			bf_strbuf_printf(&keys, "%s%s %s", i ? ", " : "",
					 bf_cell(res, i, RC_KEY_QUOTED),
					 bf_cell(res, i, RC_KEY_TYPE));
		/* Equal keys straddling two pages would be skipped, and without
		 * an index on exactly these columns every batch scans the table.
		 * A type without btree ordering (json, point) can have no such index. */
		snprintf(
			error, sizeof(error),
			"key columns (%s) of table %s are not exactly the columns of a unique btree index, "
			"in index order: create such an index or choose other key_columns",
			keys.data ? keys.data : "", bf_cell(res, 0, RC_QUALIFIED));
		bf_strbuf_free(&keys);
		return resolve_fail(out, error);
	}
	for (int i = 0; i < n; i++) {
		if (!bf_cell_bool(res, i, RC_KEY_NOT_NULL)) {
			snprintf(
				error, sizeof(error),
				"key column %s of table %s is nullable: rows with a NULL key would never be "
				"walked; make it NOT NULL or choose other key_columns",
				bf_cell(res, i, RC_KEY_QUOTED), bf_cell(res, 0, RC_QUALIFIED));
			return resolve_fail(out, error);
		}
	}
	return 0;
}

/* Code on the table that would run as the daemon's role and that someone
 * other than the job's author controls: refused until the author vouches
 * for it (allow_triggers). The message names the strangers, the first
 * objects and the remedy; building it can run out of memory (*out NULL). */
static int resolve_check_code(const PGresult *res, char **out)
{
	long count = (long)bf_cell_int(res, 0, RC_FOREIGN_COUNT, 0);

	if (count <= 0)
		return 0;

	bf_strbuf msg;
	bool one_role = strcmp(bf_cell(res, 0, RC_FOREIGN_NROLES), "1") == 0;

	bf_strbuf_init(&msg);
	bf_strbuf_printf(
		&msg,
		"table %s has code that would run as the daemon's role during the backfill "
		"and is controlled by %s %s, not by the job's author ",
		bf_cell(res, 0, RC_QUALIFIED), one_role ? "role" : "roles",
		bf_cell(res, 0, RC_FOREIGN_ROLES));
	if (!bf_cell(res, 0, RC_AUTHOR))
		bf_strbuf_append(&msg, "(not recorded: the job was scheduled before backfilld "
				       "recorded authors)");
	else
		bf_strbuf_printf(&msg, "\"%s\"", bf_cell(res, 0, RC_AUTHOR));
	bf_strbuf_printf(&msg, ": %s", bf_cell(res, 0, RC_FOREIGN_OBJECTS));
	if (count > 3)
		bf_strbuf_printf(&msg, " and %ld more", count - 3);
	bf_strbuf_printf(&msg,
			 "; review it, then set allow_triggers = true on the job and resume it "
			 "(UPDATE backfill.jobs SET allow_triggers = true, state = 'pending' "
			 "WHERE name = %s)",
			 bf_cell(res, 0, RC_JOB_LITERAL));
	*out = bf_strbuf_finish(&msg);
	return -1;
}

static int resolve_fill(const PGresult *res, bf_table *t)
{
	int n = PQntuples(res);

	bf_table_free(t);
	t->key_names = calloc((size_t)n, sizeof(char *));
	t->key_types = calloc((size_t)n, sizeof(char *));
	t->key_type_oids = calloc((size_t)n, sizeof(uint32_t));
	t->quoted = strdup(bf_cell(res, 0, RC_QUALIFIED));
	if (!t->key_names || !t->key_types || !t->key_type_oids || !t->quoted) {
		bf_table_free(t);
		return -1;
	}
	t->nkeys = n;
	for (int i = 0; i < n; i++) {
		t->key_names[i] = strdup(bf_cell(res, i, RC_KEY_QUOTED));
		t->key_types[i] = strdup(bf_cell(res, i, RC_KEY_TYPE));
		t->key_type_oids[i] = (uint32_t)bf_cell_int(res, i, RC_KEY_TYPE_OID, 0);
		if (!t->key_names[i] || !t->key_types[i]) {
			bf_table_free(t);
			return -1;
		}
	}
	t->rows_estimate = bf_cell_int(res, 0, RC_ROWS_ESTIMATE, -1);
	t->oid = (uint32_t)strtoul(bf_cell(res, 0, RC_OID), NULL, 10);
	return 0;
}

int bf_resolve_table(const PGresult *res, const char *table_name, bf_table *t, char **out)
{
	*out = NULL;
	/* The shape is ours; a mismatch is a bug, not the operator's to fix. */
	if (PQnfields(res) != RC_KEY_TYPE_OID + 1)
		return resolve_fail(out, "internal error: unexpected result of the resolve query");
	if (resolve_check_relation(res, out) != 0 || resolve_check_keys(res, table_name, out) != 0)
		return -1;
	/* After the definition's own mistakes: the operator fixes those first. */
	if (resolve_check_code(res, out) != 0)
		return -1;
	return resolve_fill(res, t);
}
