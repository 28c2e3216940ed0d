/* keyset.c -- builds the SQL of a keyset walk. */
#include "keyset.h"

#include <inttypes.h>
#include <stdlib.h>

#include "sqltext.h"
#include "strbuf.h"

/* The page's row count, next to its last key (kind update). */
#define COL_ROWS "\"backfill rows\""

/* "a", "b" -- the key columns, optionally with a suffix (" DESC", "::text"). */
static void keys_list(bf_strbuf *sb, const bf_walk *w, const char *suffix)
{
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s%s%s", i ? ", " : "", w->key_names[i], suffix);
}

/* ((V::text[])[1]::bigint, (V::text[])[2]::text): V a parameter or a literal */
static void keys_from_array(bf_strbuf *sb, const bf_walk *w, const char *array)
{
	bf_strbuf_append(sb, "(");
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s(%s::text[])[%d]::%s", i ? ", " : "", array, i + 1,
				 w->key_types[i]);
	bf_strbuf_append(sb, ")");
}

/* WHERE (a, b) > (lower) AND (a, b) <= (upper); no lower bound when NULL */
static void keys_range(bf_strbuf *sb, const bf_walk *w, const char *lower, const char *upper)
{
	bf_strbuf_append(sb, "WHERE ");
	if (lower) {
		bf_strbuf_append(sb, "(");
		keys_list(sb, w, "");
		bf_strbuf_append(sb, ") > ");
		keys_from_array(sb, w, lower);
		bf_strbuf_append(sb, " AND ");
	}
	bf_strbuf_append(sb, "(");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ") <= ");
	keys_from_array(sb, w, upper);
}

/* SELECT <what>a, b[, row_number() OVER (ORDER BY a, b) AS "backfill rows"]
 * FROM table WHERE <range> ORDER BY a, b LIMIT n */
static void page_query(bf_strbuf *sb, const bf_walk *w, const bf_batch_args *a, const char *what,
		       int numbered)
{
	bf_strbuf_printf(sb, "SELECT %s", what);
	keys_list(sb, w, "");
	if (numbered) {
		bf_strbuf_append(sb, ", row_number() OVER (ORDER BY ");
		keys_list(sb, w, "");
		bf_strbuf_append(sb, ") AS " COL_ROWS);
	}
	bf_strbuf_printf(sb, " FROM %s ", w->table);
	keys_range(sb, w, a->lower, a->upper);
	bf_strbuf_append(sb, " ORDER BY ");
	keys_list(sb, w, "");
	bf_strbuf_printf(sb, " LIMIT %d", a->limit);
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

/* Our own CTE names are quoted so that no operator SQL can collide with
 * them; only "batch" is a name the operator uses. */
#define CTE_PAGE   "\"backfill page\""
#define CTE_LOCKED "\"backfill locked\""
#define CTE_CUT	   "\"backfill cut\""
#define CTE_DONE   "\"backfill done\""
#define CTE_WORK   "\"backfill work\""
#define CTE_CKPT   "\"backfill checkpoint\""
#define CTE_LAST   "\"backfill last\""
#define CTE_FIRST  "\"backfill first\""

/* (a, b) IN (SELECT a, b FROM <from>): in the subquery the key names
 * resolve to <from>'s columns, outside it to the enclosing query's. */
static void keys_in(bf_strbuf *sb, const bf_walk *w, const char *from)
{
	bf_strbuf_append(sb, "(");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ") IN (SELECT ");
	keys_list(sb, w, "");
	bf_strbuf_printf(sb, " FROM %s)", from);
}

/* p.a, p.b -- the key columns of a FROM item */
static void keys_of(bf_strbuf *sb, const bf_walk *w, const char *alias)
{
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s%s.%s", i ? ", " : "", alias, w->key_names[i]);
}

/* <from> p, LATERAL (SELECT <what> FROM table WHERE (a, b) = (p.a, p.b)
 * [AND (<where_clause>)] [FOR NO KEY UPDATE]) l -- one (locked) index probe per
 * page key, whatever the statistics say: a plain IN (...) is planned as a
 * hash join over a sequential scan once pages are large, and the cost of a
 * batch would grow with the table. Unqualified names inside resolve to the
 * table first, so the operator's where_clause reads the table's columns. */
static void lock_rows(bf_strbuf *sb, const bf_walk *w, const char *from, const char *what,
		      int lock)
{
	bf_strbuf_printf(sb, "%s p,\n  LATERAL (SELECT %s", from, what);
	keys_list(sb, w, "");
	bf_strbuf_printf(sb, " FROM %s WHERE (", w->table);
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ") = (");
	keys_of(sb, w, "p");
	bf_strbuf_append(sb, ")");
	/* The operator's clause may end in a "--" comment. */
	if (w->where_clause && w->where_clause[0])
		bf_strbuf_printf(sb, "\n    AND (%s\n    )", w->where_clause);
	bf_strbuf_append(sb, lock ? "\n    FOR NO KEY UPDATE) l" : ") l");
}

/* 1: lock the page's rows that match where_clause (or only count them). The
 * lock waits (and the EvalPlanQual re-reads after them) happen here, where
 * their results are not used; rows that do not match are never written. */
static void lock_statement(bf_strbuf *sb, const bf_walk *w, const bf_batch_args *a, int lock)
{
	bf_strbuf page;

	bf_strbuf_init(&page);
	bf_strbuf_append(&page, "(");
	page_query(&page, w, a, "", 0);
	bf_strbuf_append(&page, ")");
	if (page.oom) {
		sb->oom = 1;
		return;
	}
	bf_strbuf_append(sb, "SELECT count(*) FROM ");
	lock_rows(sb, w, page.data, "", lock);
	bf_strbuf_free(&page);
}

/* The end of every batch statement: the checkpoint is the last key the
 * batch covered (found in last_of), written fenced, and the one row the
 * daemon reads back. page, scanned and updated are SQL expressions: the
 * keys read, the keys the batch covered (fewer than the page when a sql
 * batch is cut), the rows the work changed. An empty batch (the walk ended
 * exactly on a full page, or the cut came first) is no batch. dry_run
 * (plan): the same without the write. */
static void checkpoint_tail(bf_strbuf *sb, const bf_walk *w, const bf_batch_args *a,
			    const char *page, const char *scanned, const char *last_of,
			    const char *updated)
{
	if (a->dry_run) {
		bf_strbuf_append(sb, CTE_CKPT " AS (\n  SELECT ");
		last_key(sb, w, last_of);
		bf_strbuf_printf(sb,
				 " AS checkpoint\n)\n"
				 "SELECT %s,\n"
				 "       %s,\n"
				 "       %s,\n"
				 "       (SELECT checkpoint FROM " CTE_CKPT ")",
				 page, scanned, updated);
		return;
	}
	/* The last column is where the WAL stands after the batch's work, for
	 * the throttle's estimates until the next sample: evaluated after the
	 * columns before it, which run the work (an operator's statement that
	 * no column reads runs after this row: it counts one batch late). The
	 * insert position: the write position (pg_current_wal_lsn) trails it
	 * by up to wal_buffers until the commit flushes. The very last column
	 * counts the sessions waiting for this transaction to end: a session
	 * that needs a row this batch changed or locked waits on its
	 * transaction id until the commit, so counted here, after all the
	 * work, it is every session the batch has held up (the first in line
	 * for each row; later ones queue behind that one). pg_locks needs no
	 * privilege. */
	bf_strbuf_append(sb,
			 CTE_CKPT " AS (\n  UPDATE backfill.slices SET\n    checkpoint = coalesce(");
	last_key(sb, w, last_of);
	bf_strbuf_printf(sb,
			 ", checkpoint),\n"
			 /* A repair pass walks rows already counted. */
			 "    rows_scanned = rows_scanned + CASE WHEN repairing THEN 0 ELSE %s END,\n"
			 "    rows_updated = rows_updated + %s,\n"
			 "    batches = batches + least(%s, 1)\n"
			 "  WHERE id = %" PRId64 " AND owner = %s AND lease_epoch = %" PRId64 "\n"
			 "    AND state = 'running' AND batches = %" PRId64 "\n"
			 /* The name may now resolve to another table (renamed and
			  * replaced): the checkpoint is not its. */
			 "    AND %u::oid = %s::regclass\n"
			 /* Read, not locked: a pause takes the slice's lease back
			  * (jobs_slices_follow), which is what fences a batch out;
			  * this only spares a batch started after it. */
			 "    AND EXISTS (SELECT FROM backfill.jobs WHERE id = %" PRId64
			 " AND state = 'running')\n"
			 "    AND NOT coalesce((SELECT paused FROM backfill.control), false)\n"
			 "  RETURNING checkpoint, batches, rows_scanned, rows_updated\n"
			 ")\n"
			 "SELECT backfill.checkpoint_fence(count(*)),\n"
			 "       %s,\n"
			 "       %s,\n"
			 "       %s,\n"
			 "       max(c.batches),\n"
			 "       max(c.checkpoint),\n"
			 "       max(c.rows_scanned),\n"
			 "       max(c.rows_updated),\n"
			 "       pg_current_wal_insert_lsn()::text,\n"
			 "       (SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'\n"
			 "          AND NOT granted\n"
			 "          AND transactionid = pg_current_xact_id_if_assigned()::xid)\n"
			 "FROM " CTE_CKPT " c",
			 scanned, updated, scanned, a->slice_id, a->owner, a->lease_epoch, a->batches,
			 a->table_oid, a->table_literal, a->job_id, page, scanned, updated);
}

/* (a, b) > lower AND (a, b) <= last, lower being the checkpoint literal or,
 * on the first batch, (a, b) >= the first key. A row comparison is
 * estimated from its first column alone and never as a range: the first
 * key column gets a plain closed range too, which the planner does see. */
static void update_range(bf_strbuf *sb, const bf_walk *w, const char *lower)
{
	bf_strbuf_append(sb, "(");
	keys_list(sb, w, "");
	if (lower) {
		bf_strbuf_append(sb, ") > ");
		keys_from_array(sb, w, lower);
	} else {
		bf_strbuf_append(sb, ") >= (SELECT ");
		keys_list(sb, w, "");
		bf_strbuf_append(sb, " FROM " CTE_FIRST ")");
	}
	bf_strbuf_append(sb, " AND (");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ") <= (SELECT ");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, " FROM " CTE_LAST ")");
	if (w->nkeys > 1) {
		if (lower)
			bf_strbuf_printf(sb, "\n    AND %s >= (%s::text[])[1]::%s", w->key_names[0],
					 lower, w->key_types[0]);
		else
			bf_strbuf_printf(sb, "\n    AND %s >= (SELECT %s FROM " CTE_FIRST ")",
					 w->key_names[0], w->key_names[0]);
		bf_strbuf_printf(sb, " AND %s <= (SELECT %s FROM " CTE_LAST ")", w->key_names[0],
				 w->key_names[0]);
	}
}

/* kind update: ONE statement. One pass over the primary key index finds
 * the page's last key and how many keys it holds (row_number streams with
 * the index scan: nothing is stored but the last row); the UPDATE then
 * covers that key range with a plain index range scan, and the last key
 * becomes the checkpoint. Rows an application changes while the batch
 * waits for their locks are handled by the UPDATE itself: READ COMMITTED
 * re-checks the range and where_clause on the newest version and computes
 * set_clause from it (EvalPlanQual), so a row moved out of the range or no
 * longer matching is left alone, and nothing is computed from a stale
 * version. No separate locking pass: it would write a lock WAL record per
 * row and cost as much as the update itself. */
static void update_statement(bf_strbuf *sb, const bf_walk *w, const bf_batch_args *a)
{
	if (a->dry_run)
		bf_strbuf_append(sb, "EXPLAIN (ANALYZE, BUFFERS)\n");
	bf_strbuf_append(sb, "WITH " CTE_LAST " AS MATERIALIZED (\n  SELECT ");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ", " COL_ROWS " FROM (\n    ");
	page_query(sb, w, a, "", 1);
	bf_strbuf_append(sb, "\n  ) p ORDER BY " COL_ROWS " DESC LIMIT 1\n),\n");
	if (!a->lower) {
		/* The first batch has no checkpoint: its first key bounds it
		 * from below, or the planner sees a one-sided range. */
		bf_strbuf_append(sb, CTE_FIRST " AS MATERIALIZED (\n  SELECT ");
		keys_list(sb, w, "");
		bf_strbuf_printf(sb, " FROM %s ", w->table);
		keys_range(sb, w, NULL, a->upper);
		bf_strbuf_append(sb, " ORDER BY ");
		keys_list(sb, w, "");
		bf_strbuf_append(sb, " LIMIT 1\n),\n");
	}

	/* Both ends as InitPlan parameters: the range is an index condition
	 * with the planner's default estimate for a closed range (0.5% of the
	 * table), whatever the statistics say about the table or the
	 * where_clause; a one-sided range is estimated at a third of the
	 * table, and a sequential scan was chosen for it. */
	bf_strbuf_printf(sb, CTE_WORK " AS (\n  UPDATE %s SET %s\n  WHERE ", w->table,
			 w->set_clause);
	update_range(sb, w, a->lower);
	/* The operator's clause may end in a "--" comment. */
	if (w->where_clause && w->where_clause[0])
		bf_strbuf_printf(sb, "\n    AND (%s\n    )", w->where_clause);
	bf_strbuf_append(sb, "\n  RETURNING 1\n),\n");

	const char *scanned = "coalesce((SELECT " COL_ROWS " FROM " CTE_LAST "), 0)";

	checkpoint_tail(sb, w, a, scanned, scanned, CTE_LAST,
			"(SELECT count(*) FROM " CTE_WORK ")");
}

/* kind sql: the operator's statement reads the keys from "batch"; its rows
 * are locked first and read in a snapshot taken after the lock waits. */
static void sql_statement(bf_strbuf *sb, const bf_walk *w, const bf_batch_args *a)
{
	bf_sql_with with = {0};
	int hoist = w->statement && bf_sql_split_with(w->statement, &with) == 1;

	if (a->dry_run)
		bf_strbuf_append(sb, "EXPLAIN (ANALYZE, BUFFERS)\n");
	/* 2: a fresh snapshot, taken after those waits. The page is read in key
	 * order without locks, so its keys are never keys a concurrent update
	 * moved; its matching rows are locked (ours already, but for rows that
	 * changed in between) and where_clause is re-checked on the locked
	 * versions. MATERIALIZED: each runs once, as a whole. */
	bf_strbuf_printf(sb, "WITH %s" CTE_PAGE " AS MATERIALIZED (\n  ",
			 with.recursive ? "RECURSIVE " : "");
	page_query(sb, w, a, "ctid AS \"backfill ctid\", ", 0);
	bf_strbuf_append(sb, "\n),\n");

	bf_strbuf_append(sb, CTE_LOCKED " AS MATERIALIZED (\n  SELECT l.* FROM ");
	lock_rows(sb, w, CTE_PAGE, "ctid AS \"backfill ctid\", ", 1);
	bf_strbuf_append(sb, "\n),\n");

	/* A locked row whose version is not the snapshot's was changed by
	 * someone else after the snapshot: the work would read it stale. The
	 * batch ends just before the first such row; the next batch's
	 * statement 1 locks it first. (A row deleted or re-keyed meanwhile is
	 * simply not locked: there is nothing left to do for it.) */
	bf_strbuf_append(sb, CTE_CUT " AS MATERIALIZED (\n  SELECT ");
	keys_of(sb, w, "p");
	bf_strbuf_append(sb, " FROM " CTE_PAGE " p JOIN " CTE_LOCKED " l ON (");
	keys_of(sb, w, "p");
	bf_strbuf_append(sb, ") = (");
	keys_of(sb, w, "l");
	bf_strbuf_append(sb, ")\n  WHERE p.\"backfill ctid\" <> l.\"backfill ctid\"\n  ORDER BY ");
	keys_of(sb, w, "p");
	bf_strbuf_append(sb, " LIMIT 1\n),\n");

	bf_strbuf_append(sb, CTE_DONE " AS MATERIALIZED (\n  SELECT ");
	keys_list(sb, w, "");
	bf_strbuf_append(sb,
			 " FROM " CTE_PAGE "\n  WHERE NOT EXISTS (SELECT FROM " CTE_CUT ") OR (");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, ") < (SELECT * FROM " CTE_CUT ")\n),\n");

	bf_strbuf_append(sb, "batch AS (SELECT ");
	keys_list(sb, w, "");
	bf_strbuf_append(sb, " FROM " CTE_LOCKED " WHERE ");
	keys_in(sb, w, CTE_DONE);
	bf_strbuf_append(sb, "),\n");

	if (hoist) {
		/* A data-modifying WITH may only stand at the top level: the
		 * statement's own CTEs join ours (after batch, which they read). */
		bf_strbuf_printf(sb, "%.*s,\n" CTE_WORK " AS (\n%s\n),\n",
				 (int)(with.ctes_end - with.ctes_start),
				 w->statement + with.ctes_start, w->statement + with.main_start);
	} else {
		bf_strbuf_printf(sb, CTE_WORK " AS (\n%s\n),\n", w->statement);
	}

	/* The operator's statement may lack RETURNING: the count is the keys
	 * it was given. */
	checkpoint_tail(sb, w, a, "(SELECT count(*) FROM " CTE_PAGE ")",
			"(SELECT count(*) FROM " CTE_DONE ")", CTE_DONE, "(SELECT count(*) FROM batch)");
}

static void work_statement(bf_strbuf *sb, const bf_walk *w, const bf_batch_args *a)
{
	if (w->kind == BF_KIND_UPDATE)
		update_statement(sb, w, a);
	else
		sql_statement(sb, w, a);
}

int bf_keyset_locks_first(const bf_walk *w)
{
	return w->kind == BF_KIND_SQL;
}

char *bf_keyset_batch_sql(const bf_walk *w, const bf_batch_args *a)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, BF_KEYSET_BATCH_MARK "\n");
	if (bf_keyset_locks_first(w)) {
		lock_statement(&sb, w, a, 1);
		bf_strbuf_append(&sb, ";\n");
	}
	work_statement(&sb, w, a);
	return bf_strbuf_finish(&sb);
}

char *bf_keyset_matching_sql(const bf_walk *w, const bf_batch_args *a)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	lock_statement(&sb, w, a, bf_keyset_locks_first(w));
	return bf_strbuf_finish(&sb);
}

char *bf_keyset_work_sql(const bf_walk *w, const bf_batch_args *a)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	work_statement(&sb, w, a);
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

char *bf_keyset_catchup_sql(const bf_walk *w)
{
	bf_strbuf sb;
	char *top = bf_keyset_upper_bound_sql(w);

	if (!top)
		return NULL;
	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, "WITH above AS (\n  SELECT count(*) AS n FROM ");
	bf_strbuf_printf(&sb, "%s WHERE (", w->table);
	keys_list(&sb, w, "");
	bf_strbuf_append(&sb, ") > ");
	keys_from_array(&sb, w, "$4");
	/* The operator's clause may end in a "--" comment. */
	if (w->where_clause && w->where_clause[0])
		bf_strbuf_printf(&sb, "\n    AND (%s\n    )", w->where_clause);
	bf_strbuf_printf(
		&sb,
		"\n), s AS (\n"
		"  SELECT id, job_id FROM backfill.slices\n"
		"  WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"    AND upper_bound = $4::text[]\n"
		"), d AS (\n"
		"  SELECT above.n, above.n > 0 AND j.catchup_rounds < $5::integer AS extend,\n"
		"         coalesce((%s), $4::text[]) AS bound\n"
		"  FROM above, s JOIN backfill.jobs j ON j.id = s.job_id\n"
		"), walk AS (\n"
		/* The job row says how far the walk reaches: one write per
		 * round, not per batch. */
		"  UPDATE backfill.jobs j SET\n"
		"    upper_bound = CASE WHEN d.extend THEN d.bound ELSE j.upper_bound END,\n"
		"    catchup_rounds = j.catchup_rounds + d.extend::integer,\n"
		"    rows_left = CASE WHEN d.extend THEN NULL ELSE d.n END\n"
		"  FROM d, s WHERE j.id = s.job_id\n"
		"  RETURNING j.catchup_rounds\n"
		")\n"
		"UPDATE backfill.slices sl SET\n"
		"  upper_bound = CASE WHEN d.extend THEN d.bound ELSE sl.upper_bound END,\n"
		/* Rows above the old bound were never walked: a repair pass
		 * counts them as scanned. */
		"  repairing = sl.repairing AND NOT d.extend\n"
		"FROM d, walk\n"
		"WHERE sl.id = $1\n"
		"RETURNING sl.upper_bound, walk.catchup_rounds, d.n, d.extend",
		top);
	free(top);
	return bf_strbuf_finish(&sb);
}

char *bf_keyset_next_key_sql(const bf_walk *w, int first)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, "SELECT ARRAY[");
	keys_list(&sb, w, "::text");
	bf_strbuf_printf(&sb, "] FROM %s ", w->table);
	keys_range(&sb, w, first ? NULL : "$2", "$1");
	bf_strbuf_append(&sb, " ORDER BY ");
	keys_list(&sb, w, "");
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
			 w->where_clause && w->where_clause[0] ? w->where_clause : "false",
			 w->table);
	keys_range(&sb, w, first ? NULL : "$2", "$1");
	bf_strbuf_append(&sb, "\n  ORDER BY ");
	keys_list(&sb, w, "");
	bf_strbuf_printf(&sb,
			 "\n  LIMIT %d\n)\n"
			 "SELECT count(*) FILTER (WHERE \"backfill match\"), count(*), ",
			 chunk);
	last_key(&sb, w, "chunk");
	bf_strbuf_append(&sb, "\nFROM chunk");
	return bf_strbuf_finish(&sb);
}
