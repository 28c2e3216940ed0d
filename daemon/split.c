/* split.c -- interim: every key read, cut by ntile (exact). */
#include "split.h"

#include "strbuf.h"

static void keys(bf_strbuf *sb, const bf_walk *w, const char *suffix)
{
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(sb, "%s%s%s", i ? ", " : "", w->key_names[i], suffix);
}

char *bf_split_sql(const bf_walk *w, const char *upper, int n, int64_t rows_estimate)
{
	bf_strbuf sb;

	(void)rows_estimate;
	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, "WITH b AS (SELECT DISTINCT ON (t) t, ARRAY[");
	keys(&sb, w, "::text");
	bf_strbuf_append(&sb, "] AS boundary FROM (SELECT ");
	keys(&sb, w, "");
	bf_strbuf_printf(&sb, ", ntile(%d) OVER (ORDER BY ", n < 1 ? 1 : n);
	keys(&sb, w, "");
	bf_strbuf_printf(&sb, ") AS t FROM %s WHERE (", w->table);
	keys(&sb, w, "");
	bf_strbuf_append(&sb, ") <= (");
	for (int i = 0; i < w->nkeys; i++)
		bf_strbuf_printf(&sb, "%s(%s::text[])[%d]::%s", i ? ", " : "", upper, i + 1,
				 w->key_types[i]);
	bf_strbuf_append(&sb, ")) q ORDER BY t, ");
	keys(&sb, w, " DESC");
	bf_strbuf_append(&sb, ") SELECT boundary FROM b WHERE t < (SELECT max(t) FROM b) ORDER BY t");
	return bf_strbuf_finish(&sb);
}
