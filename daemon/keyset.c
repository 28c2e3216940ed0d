/* keyset.c -- builds the SQL of a keyset walk. */
#include "keyset.h"

#include "sqltext.h"
#include "strbuf.h"

/* "a", "b" -- the key columns, optionally with a suffix (" DESC", "::text"). */
static void keys_list(bf_strbuf *sb, const bf_walk *w, const char *suffix)
{
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s%s%s", i ? ", " : "", w->key_names[i], suffix);
}

/* (($N::text[])[1]::bigint, ($N::text[])[2]::text) */
static void keys_from_param(bf_strbuf *sb, const bf_walk *w, int param)
{
	bf_strbuf_append(sb, "(");
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s($%d::text[])[%d]::%s", i ? ", " : "", param,
				 i + 1, w->key_types[i]);
	bf_strbuf_append(sb, ")");
}

/* WHERE (a, b) > (lower) AND (a, b) <= (upper) */
static void keys_range(bf_strbuf *sb, const bf_walk *w, int first, int upper, int lower)
{
	bf_strbuf_append(sb, "WHERE ");
	if (!first) {
		bf_strbuf_append(sb, "(");
		keys_list(sb, w, "");
		bf_strbuf_append(sb, ") > ");
		keys_from_param(sb, w, lower);
		bf_strbuf_append(sb, " AND ");
	}
	bf_strbuf_append(sb, "(");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ") <= ");
	keys_from_param(sb, w, upper);
}

/* ARRAY[a::text, b::text] of the largest key of `from` */
static void last_key(bf_strbuf *sb, const bf_walk *w, const char *from)
{
	bf_strbuf_append(sb, "(SELECT ARRAY[");
	keys_list(sb, w, "::text");
	bf_strbuf_printf(sb, "] FROM %s ORDER BY ", from);
	keys_list(sb, w, " DESC");
	bf_strbuf_append(sb, " LIMIT 1)");
}

static int has_where(const bf_walk *w)
{
	return w->where_clause && w->where_clause[0];
}

char *bf_keyset_batch_sql(const bf_walk *w, int first, int limit)
{
	bf_strbuf sb;

	bf_sql_with with = {0};
	int hoist = w->kind == BF_KIND_SQL && w->statement &&
		    bf_sql_split_with(w->statement, &with) == 1;

	bf_strbuf_init(&sb);
	/* scan: the page of the walk, locked in key order. The match flag is
	 * evaluated here, on the row version we hold locked. */
	bf_strbuf_printf(&sb, "WITH %sscan AS (\n  SELECT ", with.recursive ? "RECURSIVE " : "");
	keys_list(&sb, w, "");
	if (has_where(w))
		bf_strbuf_printf(&sb, ", (%s\n  ) AS \"backfill match\"", w->where_clause);
	bf_strbuf_printf(&sb, "\n  FROM %s\n  ", w->table);
	keys_range(&sb, w, first, BF_BATCH_P_UPPER, BF_BATCH_P_LOWER);
	bf_strbuf_append(&sb, "\n  ORDER BY ");
	keys_list(&sb, w, "");
	bf_strbuf_printf(&sb, "\n  LIMIT %d\n  FOR NO KEY UPDATE\n),\n", limit);

	/* batch: the keys the work applies to. */
	bf_strbuf_append(&sb, "batch AS (SELECT ");
	keys_list(&sb, w, "");
	bf_strbuf_append(&sb, " FROM scan");
	if (has_where(w))
		bf_strbuf_append(&sb, " WHERE \"backfill match\"");
	bf_strbuf_append(&sb, "),\n");

	/* work: the change itself. In the subquery the key names resolve to
	 * batch's columns, outside it to the table's. */
	if (w->kind == BF_KIND_UPDATE) {
		bf_strbuf_printf(&sb, "work AS (\n  UPDATE %s SET %s\n  WHERE (", w->table,
				 w->set_clause);
		keys_list(&sb, w, "");
		bf_strbuf_append(&sb, ") IN (SELECT ");
		keys_list(&sb, w, "");
		bf_strbuf_append(&sb, " FROM batch)\n  RETURNING 1\n),\n");
	} else if (hoist) {
		/* A data-modifying WITH may only stand at the top level: the
		 * statement's own CTEs join ours (after batch, which they read). */
		bf_strbuf_printf(&sb, "%.*s,\nwork AS (\n%s\n),\n",
				 (int)(with.ctes_end - with.ctes_start),
				 w->statement + with.ctes_start, w->statement + with.main_start);
	} else {
		bf_strbuf_printf(&sb, "work AS (\n%s\n),\n", w->statement);
	}

	/* The operator's statement may lack RETURNING, so for kind sql the
	 * count is the keys it was given. */
	const char *updated = w->kind == BF_KIND_UPDATE ? "(SELECT count(*) FROM work)"
							: "(SELECT count(*) FROM batch)";

	/* ckpt: the checkpoint, fenced. An empty scan (the walk ended exactly
	 * on a full batch) does not count as a batch. */
	bf_strbuf_append(&sb, "ckpt AS (\n  UPDATE backfill.jobs SET\n    checkpoint = coalesce(");
	last_key(&sb, w, "scan");
	bf_strbuf_printf(&sb,
		", checkpoint),\n"
		"    rows_scanned = rows_scanned + (SELECT count(*) FROM scan),\n"
		"    rows_updated = rows_updated + %s,\n"
		"    batches = batches + (SELECT least(count(*), 1) FROM scan)\n"
		"  WHERE id = $%d AND owner = $%d AND lease_epoch = $%d\n"
		"    AND state = 'running' AND batches = $%d\n"
		"  RETURNING checkpoint, batches, rows_scanned, rows_updated\n"
		")\n"
		"SELECT backfill.checkpoint_fence(count(*)),\n"
		"       (SELECT count(*) FROM scan),\n"
		"       %s,\n"
		"       max(ckpt.batches),\n"
		"       max(ckpt.checkpoint),\n"
		"       max(ckpt.rows_scanned),\n"
		"       max(ckpt.rows_updated)\n"
		"FROM ckpt",
		updated, BF_BATCH_P_JOB_ID, BF_BATCH_P_OWNER, BF_BATCH_P_EPOCH,
		BF_BATCH_P_BATCHES, updated);
	return bf_strbuf_finish(&sb);
}

char *bf_keyset_upper_bound_sql(const bf_walk *w)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, "SELECT ARRAY[");
	keys_list(&sb, w, "::text");
	bf_strbuf_printf(&sb, "] FROM %s ORDER BY ", w->table);
	keys_list(&sb, w, " DESC");
	bf_strbuf_append(&sb, " LIMIT 1");
	return bf_strbuf_finish(&sb);
}

char *bf_keyset_verify_sql(const bf_walk *w, int first, int chunk)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, "WITH chunk AS (\n  SELECT ");
	keys_list(&sb, w, "");
	bf_strbuf_printf(&sb, ", (%s\n  ) AS \"backfill match\"\n  FROM %s\n  ",
			 has_where(w) ? w->where_clause : "false", w->table);
	keys_range(&sb, w, first, 1, 2);
	bf_strbuf_append(&sb, "\n  ORDER BY ");
	keys_list(&sb, w, "");
	bf_strbuf_printf(&sb, "\n  LIMIT %d\n)\n"
			 "SELECT count(*) FILTER (WHERE \"backfill match\"), count(*), ",
			 chunk);
	last_key(&sb, w, "chunk");
	bf_strbuf_append(&sb, "\nFROM chunk");
	return bf_strbuf_finish(&sb);
}
