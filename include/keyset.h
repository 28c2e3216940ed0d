/* keyset.h -- the SQL of a keyset walk: batches, the upper bound, verification.
 *
 * Keys travel as text[] (the checkpoint and the upper bound are stored that
 * way in backfill.jobs) and are cast back to each key column's type inside
 * the statement, so one row-value comparison "(a, b) > (x, y)" serves every
 * key shape and the primary key index answers every batch.
 */
#ifndef BF_KEYSET_H
#define BF_KEYSET_H

typedef enum bf_job_kind {
	BF_KIND_UPDATE,
	BF_KIND_SQL,
} bf_job_kind;

typedef struct bf_walk {
	const char *table;              /* quoted and qualified by the server: "public"."orders" */
	int nkeys;
	const char *const *key_names;   /* quoted identifiers, in index order */
	const char *const *key_types;   /* format_type() of each key column */
	bf_job_kind kind;
	const char *set_clause;         /* kind update */
	const char *where_clause;       /* NULL or "": every scanned row is in the batch */
	const char *statement;          /* kind sql: reads the keys from CTE "batch" */
} bf_walk;

/* Parameters of the batch statement. */
enum {
	BF_BATCH_P_UPPER = 1,   /* text[]: the walk's inclusive upper bound */
	BF_BATCH_P_JOB_ID,      /* the fence: job id, owner, lease epoch, batches so far */
	BF_BATCH_P_OWNER,
	BF_BATCH_P_EPOCH,
	BF_BATCH_P_BATCHES,
	BF_BATCH_P_LOWER,       /* text[]: the checkpoint (exclusive); absent on the first batch */
};

/* One statement, one round trip, one transaction: lock the next `limit` keys
 * after the checkpoint (FOR NO KEY UPDATE, never SKIP LOCKED), run the work
 * on those matching where_clause, and advance the checkpoint to the largest
 * key scanned, fenced by owner, lease epoch, state and batch count. Returns
 * one row: fence, scanned, updated, and the row's new batches, checkpoint
 * (text[]), rows_scanned, rows_updated.
 * first: no checkpoint yet (the statement then takes 5 parameters, else 6).
 * Returns a malloc'd string, NULL when out of memory. */
char *bf_keyset_batch_sql(const bf_walk *w, int first, int limit);

/* The largest key of the table, as text[]: fixed as the upper bound when a
 * job starts. No parameters; no row for an empty table. */
char *bf_keyset_upper_bound_sql(const bf_walk *w);

/* One chunk of the verification pass: among the next `chunk` keys after $2
 * (absent when first) up to $1 (the upper bound), how many rows still match
 * where_clause. Returns one row: matching, scanned, last key (text[]). */
char *bf_keyset_verify_sql(const bf_walk *w, int first, int chunk);

#endif
