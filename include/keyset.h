/* keyset.h -- the SQL of a keyset walk: batches, the upper bound, verification.
 *
 * Keys travel as text[] (the checkpoint and the upper bound are stored that
 * way in backfill.jobs) and are cast back to each key column's type inside
 * the statement, so one row-value comparison "(a, b) > (x, y)" serves every
 * key shape and the primary key index answers every batch.
 */
#ifndef BF_KEYSET_H
#define BF_KEYSET_H

#include <stdint.h>

typedef enum bf_job_kind {
	BF_KIND_UPDATE,
	BF_KIND_SQL,
} bf_job_kind;

typedef struct bf_walk {
	const char *table; /* quoted and qualified by the server: "public"."orders" */
	int nkeys;
	const char *const *key_names; /* quoted identifiers, in index order */
	const char *const *key_types; /* format_type(type, -1) of each key column */
	bf_job_kind kind;
	const char *set_clause;	  /* kind update */
	const char *where_clause; /* NULL or "": every row of the page is in the batch */
	const char *statement;	  /* kind sql: reads the keys from CTE "batch" */
} bf_walk;

/* One batch's values, already SQL literals (escaped by libpq). */
typedef struct bf_batch_args {
	const char *upper; /* text[] literal: the walk's inclusive upper bound */
	const char *lower; /* text[] literal: the checkpoint (exclusive); NULL on the first batch */
	const char *owner; /* the fence: the slice's owner, lease epoch, batches so far */
	const char *table_literal; /* the fence: the table's quoted name as a literal ... */
	uint32_t table_oid;	   /* ... still naming the table the walk was pinned to */
	int64_t lease_epoch;
	int64_t slice_id; /* backfill.slices.id: the row the checkpoint goes to */
	int64_t job_id;	  /* its job, which must still be running */
	int64_t batches;
	int limit;   /* the page size */
	int dry_run; /* plan: EXPLAIN ANALYZE, no checkpoint, no fence (bf_keyset_work_sql) */
} bf_batch_args;

/* The batch: one round trip of the simple query protocol, run by the server
 * as ONE implicit transaction (any error rolls it all back).
 *
 * kind update, one statement: read the next page of keys in key order, and
 * UPDATE the key range it spans (up to its last key) where where_clause
 * holds. Rows changed meanwhile are re-checked by the UPDATE itself on
 * their newest version (READ COMMITTED's EvalPlanQual).
 *
 * kind sql, two statements (bf_keyset_locks_first):
 *  1. lock the next page's rows that match where_clause (FOR NO KEY UPDATE,
 *     never SKIP LOCKED); the lock waits happen here;
 *  2. with a fresh snapshot taken after those waits, re-read the page in
 *     key order without locks, lock its matching rows (where_clause
 *     re-checked on the locked versions), cut the batch before the first
 *     locked row whose version is not the snapshot's (changed meanwhile: the
 *     next batch locks it first), and run the operator's statement on the
 *     rest (CTE "batch"): it may read any column of those rows, or other
 *     tables, and sees them as of after the waits.
 * Either way the checkpoint advances to the last key done, fenced by owner,
 * lease epoch, state and batch count (backfill.checkpoint_fence raises
 * BF001), and the last statement returns one row: fence, page rows, rows
 * done, updated, and the row's new batches, checkpoint (text[]),
 * rows_scanned, rows_updated, then the WAL insert position after the work
 * (pg_lsn as text; kind sql: before the operator's statement, which runs
 * after the row is formed). Requires READ COMMITTED.
 * Returns a malloc'd string, NULL when out of memory. */
char *bf_keyset_batch_sql(const bf_walk *w, const bf_batch_args *a);

/* The columns of the row a batch returns, in order. */
enum bf_batch_col {
	BF_BATCH_FENCE,	       /* rows the fenced checkpoint update matched */
	BF_BATCH_PAGE,	       /* keys the page read */
	BF_BATCH_DONE,	       /* keys the batch covered */
	BF_BATCH_UPDATED,      /* rows the work changed */
	BF_BATCH_BATCHES,      /* the job row's new batches */
	BF_BATCH_CHECKPOINT,   /* ... checkpoint (text[]) */
	BF_BATCH_ROWS_SCANNED, /* ... rows_scanned */
	BF_BATCH_ROWS_UPDATED, /* ... rows_updated */
	BF_BATCH_WAL_LSN,      /* the WAL insert position after the work */
	BF_BATCH_WAITERS,      /* sessions waiting for the batch to commit */
};

/* Every batch's text starts with this comment: a cancel aimed at a batch
 * (pg_stat_activity.query) never hits another statement of the job, and an
 * operator sees at a glance which sessions run batches. */
#define BF_KEYSET_BATCH_MARK "/* backfilld batch */"

/* Whether a batch of this walk starts with the locking statement. */
int bf_keyset_locks_first(const bf_walk *w);

/* The statements apart, for backfillctl plan. The first counts the page's
 * rows that match where_clause, locking them as a batch would when the walk
 * locks first. With a->dry_run the work statement is EXPLAIN (ANALYZE,
 * BUFFERS) of the batch without the checkpoint write (owner, epoch and
 * batches are ignored); run both in a transaction and roll it back. The
 * work statement's non-dry form returns page rows, rows done, updated and
 * the checkpoint it would write. */
char *bf_keyset_matching_sql(const bf_walk *w, const bf_batch_args *a);
char *bf_keyset_work_sql(const bf_walk *w, const bf_batch_args *a);

/* The largest key of the table, as text[]: fixed as the upper bound when a
 * job starts. No parameters; no row for an empty table. */
char *bf_keyset_upper_bound_sql(const bf_walk *w);

/* After the walk of the last slice: counts the rows above the bound $4
 * (text[]) that match where_clause (every row without one) and, if there
 * are any and the job has done fewer than $5 catch-up rounds, moves the
 * slice's and the job's upper bound to the table's current largest key and
 * counts the round on the job row; otherwise records the count there as
 * rows_left. Fenced by the slice's lease ($1 slice id, $2 owner, $3 epoch).
 * Returns the new bound, rounds, the count and whether it extended; no
 * row when fenced out or the bound moved meanwhile. */
char *bf_keyset_catchup_sql(const bf_walk *w);

/* The columns of the row bf_keyset_catchup_sql returns. */
enum bf_catchup_col {
	BF_CATCHUP_UPPER_BOUND,
	BF_CATCHUP_ROUNDS,
	BF_CATCHUP_ABOVE,
	BF_CATCHUP_EXTENDED,
};

/* The first key after $2 (absent when first) up to $1 (the upper bound), as
 * text[]: one row, or none. Reads the keys only (no clause of the job's). */
char *bf_keyset_next_key_sql(const bf_walk *w, int first);

/* One chunk of the verification pass: among the next `chunk` keys after $2
 * (absent when first) up to $1 (the upper bound), how many rows still match
 * where_clause. Returns one row: matching, scanned, last key (text[]). */
char *bf_keyset_verify_sql(const bf_walk *w, int first, int chunk);

/* The columns of the row bf_keyset_verify_sql returns. */
enum bf_verify_col {
	BF_VERIFY_MATCHING,
	BF_VERIFY_SCANNED,
	BF_VERIFY_LAST_KEY,
};

#endif
