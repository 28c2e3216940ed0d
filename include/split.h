/* split.h -- cutting a walk's key range into slices of about equal row count.
 *
 * A job with N slices walks N key ranges at once. The ranges must hold
 * about as many rows each, whatever the key's shape or skew: so they are
 * cut at quantiles of the keys themselves (every key of a small table, a
 * page sample of a large one), never by arithmetic on the key space, which
 * knows nothing of where the rows are.
 */
#ifndef BF_SPLIT_H
#define BF_SPLIT_H

#include <stdbool.h>
#include <stdint.h>

#include "keyset.h"

/* Up to this many rows (the planner's estimate) the split reads every key
 * up to the bound; above it, a page sample of about as many rows. At this
 * size the exact pass reads no more keys than the sample would, so below
 * it a sample would cost as much and be less even. */
#define BF_SPLIT_EXACT_MAX_ROWS 100000

/* The rows a sample aims for at least: 100k keys sort in tens of
 * milliseconds, and on a table whose rows are not stored in key order
 * they put 25k independent keys in each of 4 ranges. */
#define BF_SPLIT_SAMPLE_ROWS 100000

/* And at least this many pages per range: on a table stored in key order
 * (ids inserted in order, the common case) a sampled page brings a run of
 * adjacent keys, so the error of a range's row count goes with the pages
 * sampled in it, not the rows: about 1/sqrt(pages), some 6% at one
 * standard deviation here, so that every range of a 64-slice job stays
 * well within ±25%. 256 pages (2 MB) per range: 8 MB for 4 slices, 128 MB
 * for 64, read page by page (the table is then large: 64 slices are for
 * billions of rows). */
#define BF_SPLIT_SAMPLE_PAGES_PER_RANGE 256

/* A sample that came back with fewer rows than this (statistics far too
 * high: a table emptied since its last ANALYZE) is drawn again, larger,
 * by the count it did return (bf_split_sql). */
#define BF_SPLIT_SAMPLE_MIN 10000

/* No range is cut smaller than this (by the planner's estimate): a range
 * costs a connection, a claim, a lease and a verification of its own, more
 * than the parallelism of so few rows saves. A table of fewer rows than
 * slices gets fewer ranges in any case (bf_split_sql). */
#define BF_SPLIT_MIN_RANGE_ROWS 500

/* How many ranges to cut a table of rows_estimate rows (< 0: unknown) into
 * when `slices` are asked for: at least 1, at most slices. */
int bf_split_ranges(int slices, int64_t rows_estimate);

/* The percentage of the table's pages to sample for BF_SPLIT_SAMPLE_ROWS
 * of rows_estimate rows: (0, 100]. The SQL raises it to the pages floor
 * above, from the table's relpages. */
double bf_split_sample_percent(int64_t rows_estimate);

/* Whether the split of a table of rows_estimate rows (< 0: unknown) reads
 * every key (true) or a page sample (false). */
bool bf_split_reads_every_key(int64_t rows_estimate);

/* The inner boundaries that cut the keys of w up to `upper` (an SQL
 * expression of the walk's inclusive upper bound, text[], e.g. "$4" or a
 * literal; '{}' for an empty table) into up to n ranges of about equal row
 * count. A SELECT without a trailing semicolon, fit to be a subquery; one
 * column, "boundary" (text[]: each key column as text, the form of the
 * checkpoint and of the upper bound), one row per boundary, in KEY order
 * (not text[] order: keep the subquery's order, or number it), distinct,
 * each strictly below the upper bound, at most n - 1 rows: the inclusive
 * upper bound of every range but the last. Fewer when the table holds
 * fewer than n keys (none for an empty table, or when n <= 1). Reads every
 * key up to the bound when rows_estimate is unknown (< 0) or at most
 * BF_SPLIT_EXACT_MAX_ROWS; otherwise a TABLESAMPLE SYSTEM page sample
 * (only the sampled pages are read). Read-only; run it in READ COMMITTED
 * or stronger. Returns a malloc'd string, NULL when out of memory. */
char *bf_split_sql(const bf_walk *w, const char *upper, int n, int64_t rows_estimate);

/* The same split for backfillctl plan: one row per range, in key order,
 * with the columns below (the last range's boundary is NULL: it ends at
 * the upper bound). No row for an empty table; one range when n <= 1.
 * `upper` is an expression of the bound, as for bf_split_sql. */
char *bf_split_plan_sql(const bf_walk *w, const char *upper, int n, int64_t rows_estimate);

/* The columns of a row of bf_split_plan_sql. */
enum bf_split_plan_col {
	BF_SPLIT_BOUNDARY,   /* text[]: the range's inclusive upper bound; NULL for the last */
	BF_SPLIT_KEYS,	     /* keys read in the range (sampled or all) */
	BF_SPLIT_PERCENT,    /* the sample's percentage of the table: 100 when every key was read */
	BF_SPLIT_UPPER_JSON, /* json: the range's inclusive upper bound, an array of strings */
};

#endif
