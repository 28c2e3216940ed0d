/* split.c -- the SQL that cuts a walk's key range into slices of equal row count.
 *
 * The keys (every one up to the bound, or a page sample) are numbered in
 * key order and dealt into n tiles of equal count (ntile); the last key of
 * each tile but the last is a boundary. Quantiles of the rows themselves:
 * a key with most of its rows in a tenth of its space is cut where the
 * rows are, which no arithmetic on the key space can do.
 *
 * Everything is ordered by the key columns themselves (their types, their
 * collations), as the walk is, and keys travel as text[] as the checkpoint
 * does (ARRAY[a::text, b::text], cast back with the key types): a boundary
 * means the same key to the walk that compares against it.
 */
#include "split.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "strbuf.h"

/* Our own names are quoted, so that no key column (one named "boundary"
 * or "tile", say) collides with them. */
#define CTE_RATE   "\"backfill rate\""
#define CTE_SAMPLE "\"backfill sample\""
#define CTE_KEYS   "\"backfill keys\""
#define CTE_ENDS   "\"backfill ends\""
#define COL_BOUND  "\"backfill bound\""
#define COL_PCT	   "\"backfill percent\""
#define COL_FIRST  "\"backfill first percent\""
#define COL_TILE   "\"backfill tile\""
#define COL_NEXT   "\"backfill next\""
#define COL_RN	   "\"backfill rn\""

double bf_split_sample_percent(int64_t rows_estimate)
{
	double percent;

	if (rows_estimate <= BF_SPLIT_SAMPLE_ROWS)
		return 100;
	percent = 100.0 * BF_SPLIT_SAMPLE_ROWS / (double)rows_estimate;
	return percent > 100 ? 100 : percent;
}

bool bf_split_reads_every_key(int64_t rows_estimate)
{
	return rows_estimate < 0 || rows_estimate <= BF_SPLIT_EXACT_MAX_ROWS;
}

/* "backfill k1", "backfill k2" -- the key columns under our names */
static void aliases(bf_strbuf *sb, const bf_walk *w, const char *suffix)
{
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s\"backfill k%d\"%s", i ? ", " : "", i + 1, suffix);
}

/* a AS "backfill k1", b AS "backfill k2": the alias keeps the column's
 * type and collation, so ordering by it is ordering by the column. */
static void keys_as_aliases(bf_strbuf *sb, const bf_walk *w)
{
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s%s AS \"backfill k%d\"", i ? ", " : "", w->key_names[i],
				 i + 1);
}

/* WHERE (a, b) <= ((U::text[])[1]::bigint, (U::text[])[2]::text): as the
 * walk casts its bound (keyset.c), so the split covers exactly its range.
 * An empty table's bound '{}' casts to NULLs: no key is below it. */
static void up_to_bound(bf_strbuf *sb, const bf_walk *w, const char *upper)
{
	bf_strbuf_append(sb, " WHERE (");
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s%s", i ? ", " : "", w->key_names[i]);
	bf_strbuf_append(sb, ") <= (");
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s(%s::text[])[%d]::%s", i ? ", " : "", upper, i + 1,
				 w->key_types[i]);
	bf_strbuf_append(sb, ")");
}

/* Every key up to the bound: the exact split. */
static void every_key(bf_strbuf *sb, const bf_walk *w, const char *upper)
{
	bf_strbuf_append(sb, CTE_KEYS " AS (\n  SELECT ");
	keys_as_aliases(sb, w);
	bf_strbuf_printf(sb, ", 100::real AS " COL_PCT "\n  FROM %s", w->table);
	up_to_bound(sb, w, upper);
	bf_strbuf_append(sb, "\n)");
}

/* The table's name as a string constant (E'' reads the same whatever
 * standard_conforming_strings says), for its pg_class row. */
static void table_literal(bf_strbuf *sb, const char *table)
{
	bf_strbuf_append(sb, "E'");
	for (const char *c = table; *c; c++) {
		char one[2] = {*c, '\0'};

		bf_strbuf_append(sb, *c == '\'' ? "''" : *c == '\\' ? "\\\\" : one);
	}
	bf_strbuf_append(sb, "'");
}

/* The first sample's percentage of the table's pages: enough for about
 * BF_SPLIT_SAMPLE_ROWS keys, and for BF_SPLIT_SAMPLE_PAGES_PER_RANGE pages
 * per range (split.h: on a table stored in key order the pages, not the
 * rows, are what the sample counts). A partitioned table has no pages of
 * its own (relpages 0): its rows decide. */
static void first_percent(bf_strbuf *sb, const bf_walk *w, int n, int64_t rows_estimate)
{
	bf_strbuf_printf(
		sb,
		CTE_RATE " AS MATERIALIZED (\n"
			 "  SELECT least(100, greatest(%.9g, CASE WHEN relpages > 0\n"
			 "    THEN 100.0 * %d * %d / relpages ELSE 0 END))::real AS " COL_FIRST
			 "\n  FROM pg_class WHERE oid = ",
		bf_split_sample_percent(rows_estimate), BF_SPLIT_SAMPLE_PAGES_PER_RANGE, n);
	table_literal(sb, w->table);
	bf_strbuf_append(sb, "::regclass\n),\n");
}

/* A page sample (TABLESAMPLE SYSTEM reads only the pages it picks) of the
 * first percentage. When it returns fewer than BF_SPLIT_SAMPLE_MIN keys
 * (the estimate is far too high: the table was emptied since its last
 * ANALYZE), a second sample is drawn at the percentage that the first
 * one's count says would have brought the keys expected: reading every key
 * instead would cost as much as the table is large, and the table may
 * still be large; the second sample costs what the first was meant to.
 * It is 100% (every page, once) only when the first sample says the whole
 * table is smaller than that, and a first sample of no key at all reads
 * every page too: the table is then empty or nearly so. Each branch runs
 * only when its condition holds (an uncorrelated subquery: a one-time
 * filter gates the scan). */
static void sampled_keys(bf_strbuf *sb, const bf_walk *w, const char *upper, int n,
			 int64_t rows_estimate)
{
	char again[320];

	snprintf(again, sizeof(again),
		 "(SELECT least(100, " COL_FIRST " * " COL_FIRST " * %" PRId64 " / 100.0\n"
		 "    / greatest(s.n, 1))::real FROM (SELECT count(*) AS n FROM " CTE_SAMPLE
		 ") s, " CTE_RATE ")",
		 rows_estimate);
	first_percent(sb, w, n, rows_estimate);
	bf_strbuf_append(sb, CTE_SAMPLE " AS MATERIALIZED (\n  SELECT ");
	keys_as_aliases(sb, w);
	bf_strbuf_printf(
		sb, "\n  FROM %s TABLESAMPLE SYSTEM ((SELECT " COL_FIRST " FROM " CTE_RATE "))",
		w->table);
	up_to_bound(sb, w, upper);
	bf_strbuf_append(sb, "\n),\n" CTE_KEYS " AS (\n  SELECT ");
	aliases(sb, w, "");
	bf_strbuf_printf(sb,
			 ", (SELECT " COL_FIRST " FROM " CTE_RATE ") AS " COL_PCT
			 " FROM " CTE_SAMPLE "\n"
			 "  WHERE (SELECT count(*) FROM " CTE_SAMPLE ") >= %d\n"
			 "  UNION ALL\n  SELECT ",
			 BF_SPLIT_SAMPLE_MIN);
	keys_as_aliases(sb, w);
	bf_strbuf_printf(sb, ", %s\n  FROM %s TABLESAMPLE SYSTEM (%s)", again, w->table, again);
	up_to_bound(sb, w, upper);
	bf_strbuf_printf(sb, "\n    AND (SELECT count(*) FROM " CTE_SAMPLE ") < %d\n)",
			 BF_SPLIT_SAMPLE_MIN);
}

/* WITH <keys>, "backfill ends": each key numbered (rn) and dealt into
 * one of n tiles in key order, with the tile of the key after it (NULL
 * after the last key). A key whose next key is in another tile ends its
 * tile. Both windows share one ordering: one sort (none when an index
 * scan delivers the keys in order). */
static void tiled_keys(bf_strbuf *sb, const bf_walk *w, const char *upper, int n,
		       int64_t rows_estimate)
{
	bf_strbuf_append(sb, "WITH ");
	if (bf_split_reads_every_key(rows_estimate))
		every_key(sb, w, upper);
	else
		sampled_keys(sb, w, upper, n, rows_estimate);
	bf_strbuf_append(sb,
			 ",\n" CTE_ENDS " AS (\n  SELECT *, lead(" COL_TILE ") OVER (ORDER BY ");
	aliases(sb, w, "");
	bf_strbuf_append(sb, ") AS " COL_NEXT "\n  FROM (SELECT *, ARRAY[");
	aliases(sb, w, "::text");
	bf_strbuf_printf(sb, "] AS " COL_BOUND ",\n    ntile(%d) OVER (ORDER BY ", n);
	aliases(sb, w, "");
	bf_strbuf_append(sb, ") AS " COL_TILE ",\n    row_number() OVER (ORDER BY ");
	aliases(sb, w, "");
	bf_strbuf_append(sb, ") AS " COL_RN "\n    FROM " CTE_KEYS ") t\n)\n");
}

char *bf_split_sql(const bf_walk *w, const char *upper, int n, int64_t rows_estimate)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	if (n <= 1) {
		/* One range: nothing to cut, nothing to read. */
		bf_strbuf_append(&sb, "SELECT NULL::text[] AS boundary WHERE false");
		return bf_strbuf_finish(&sb);
	}
	tiled_keys(&sb, w, upper, n, rows_estimate);
	/* The last key of the last tile is never a boundary (its next is
	 * NULL): every boundary is below a key, so below the bound. */
	bf_strbuf_append(&sb, "SELECT " COL_BOUND " AS boundary FROM " CTE_ENDS "\nWHERE " COL_NEXT
			      " <> " COL_TILE "\nORDER BY ");
	aliases(&sb, w, "");
	return bf_strbuf_finish(&sb);
}

char *bf_split_plan_sql(const bf_walk *w, const char *upper, int n, int64_t rows_estimate)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	tiled_keys(&sb, w, upper, n < 1 ? 1 : n, rows_estimate);
	/* One row per tile, its last key: the keys in it are the distance
	 * between its number and the previous tile's last. */
	bf_strbuf_append(&sb, "SELECT CASE WHEN " COL_NEXT " IS NOT NULL THEN " COL_BOUND
			      " END AS boundary,\n"
			      "       " COL_RN " - coalesce(lag(" COL_RN ") OVER (ORDER BY ");
	aliases(&sb, w, "");
	bf_strbuf_append(&sb, "), 0) AS keys,\n       " COL_PCT " AS percent,\n");
	/* The range's upper bound as JSON, an array of strings: the last
	 * range's is the walk's bound. */
	bf_strbuf_printf(&sb,
			 "       to_json(CASE WHEN " COL_NEXT " IS NOT NULL THEN " COL_BOUND
			 " ELSE %s::text[] END) AS upper_json\n",
			 upper);
	bf_strbuf_append(&sb, "FROM " CTE_ENDS "\nWHERE " COL_NEXT " IS DISTINCT FROM " COL_TILE
			      "\nORDER BY ");
	aliases(&sb, w, "");
	return bf_strbuf_finish(&sb);
}

int bf_split_ranges(int slices, int64_t rows_estimate)
{
	int64_t most;

	if (slices < 1)
		return 1;
	if (rows_estimate < 0)
		return slices;
	most = 1 + rows_estimate / BF_SPLIT_MIN_RANGE_ROWS;
	return most < slices ? (int)most : slices;
}
