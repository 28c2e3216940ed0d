/* walk.c -- the walk set up: the table resolved, the walk pinned to it, the upper bound fixed. */
#include "job_int.h"
#include "errclass.h"
#include "resolve.h"
#include "strbuf.h"

/* "id" (type 20), "b" (type 25): the key as walked, pinned in the job row.
 * Type OIDs, not names: format_type qualifies a type's name or not
 * depending on search_path, which differs between sessions and roles. */
static char *job_walk_key(const bf_table *t)
{
	bf_strbuf keys;

	bf_strbuf_init(&keys);
	bf_strbuf_append(&keys, "");
	for (int i = 0; i < t->nkeys; i++)
		bf_strbuf_printf(&keys, "%s%s (type %u)", i ? ", " : "", t->key_names[i],
				 t->key_type_oids[i]);
	return bf_strbuf_finish(&keys);
}

/* "id" bigint, "b" text: the key in words, for the log. */
static char *job_key_words(const bf_table *t)
{
	bf_strbuf keys;

	bf_strbuf_init(&keys);
	bf_strbuf_append(&keys, "");
	for (int i = 0; i < t->nkeys; i++)
		bf_strbuf_printf(&keys, "%s%s %s", i ? ", " : "", t->key_names[i],
				 t->key_types[i]);
	return bf_strbuf_finish(&keys);
}

/* The checkpoint and the bound are keys of the table and key the walk was
 * fixed with: on another table (renamed and replaced) or another key (a
 * new primary key, a column's type changed) they mean other rows, and
 * walking on would skip some and repeat others. Fails the job, saying
 * what changed and how to start over; returns 1 then. */
static int job_walk_changed(bf_job *job, const char *key)
{
	char error[2048];
	char *words;

	if (!job->pinned_oid && !job->pinned_key)
		return 0;
	if (job->pinned_oid == job->table.oid && job->pinned_key && strcmp(job->pinned_key, key) == 0)
		return 0;
	words = job_key_words(&job->table);
	snprintf(error, sizeof(error),
		 "the table or its key changed under the job: its walk was fixed on table OID %u "
		 "keyed by (%s), and %s is now table OID %u keyed by (%s: %s); the checkpoint %s and "
		 "upper bound %s belong to the old walk, so going on would skip rows and repeat "
		 "others. To walk the table as it is now from the start: UPDATE backfill.jobs SET "
		 "state = 'pending', checkpoint = NULL, upper_bound = NULL, table_oid = NULL, "
		 "walk_key = NULL, catchup_rounds = 0, repairing = false WHERE id = %" PRId64,
		 job->pinned_oid, job->pinned_key ? job->pinned_key : "unknown", job->table.quoted,
		 job->table.oid, words ? words : "", key, job->checkpoint ? job->checkpoint : "(none)",
		 job->upper_bound ? job->upper_bound : "(none)", job->id);
	free(words);
	job_log(job, BF_LOG_ERROR, "%s", error);
	job_finish(job, "failed", error);
	return 1;
}

static void job_pinned(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "pinning the walk to its table and key");
		return;
	}
	/* Fenced out: the row decides. Otherwise the sync reads the pin. */
	job_set_synced(job, false);
	job_succeeded_step(job);
	job_step(job);
}

/* A job whose bound was fixed before walks were pinned (schema 3): pin it
 * to the table and key it resolves to now, as the bound was meant for. */
void job_pin(bf_job *job)
{
	static const char setup_sql[] =
		"UPDATE backfill.jobs SET table_oid = $4, walk_key = $5\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"  AND table_oid IS NULL";
	/* Carried over from before slices: the slice's lease is the fence. */
	static const char slice_sql[] =
		"UPDATE backfill.jobs SET table_oid = $4, walk_key = $5\n"
		"WHERE id = (SELECT job_id FROM backfill.slices\n"
		"            WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running')\n"
		"  AND state = 'running' AND table_oid IS NULL";
	char oid[16];
	char *key = job_walk_key(&job->table);
	job_params p;

	if (!key) {
		job_retry_later(job);
		return;
	}
	job_params_fence(job, &p);
	snprintf(oid, sizeof(oid), "%u", job->table.oid);
	p.values[3] = oid;
	p.values[4] = key;
	job_send(job, "pinning the walk", job->slice_id ? slice_sql : setup_sql, 5, p.values,
		 job_pinned);
	free(key);
}

static void job_resolved(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "resolving the table and its key");
		return;
	}
	char *error = NULL;
	int rc = bf_resolve_table(r->res, job->table_name, &job->table, &error);

	if (rc < 0) {
		if (!error) {
			job_log(job, BF_LOG_ERROR, "out of memory");
			job_retry_later(job);
			return;
		}
		job_finish(job, "failed", error);
		free(error);
		return;
	}
	if (job->rows_estimate < 0)
		job->rows_estimate = job->table.rows_estimate;

	bf_table_walk(&job->table, &job->walk, job->kind, job->set_clause, job->where_clause,
		      job->statement);
	char *key = job_walk_key(&job->table);

	if (!key) {
		job_log(job, BF_LOG_ERROR, "out of memory");
		job_retry_later(job);
		return;
	}
	if (job_walk_changed(job, key)) {
		free(key);
		return;
	}
	free(key);
	if (!job->resolved_once && (key = job_key_words(&job->table))) {
		job_log(job, BF_LOG_INFO, "walking %s by (%s)", job->table.quoted, key);
		free(key);
	}
	job->resolved = 1;
	job->resolved_once = true;
	/* Not progress (no job_succeeded_step): it runs after every failure,
	 * and must not reset the count of failures in a row. */
	job_step(job);
}

void job_resolve(bf_job *job)
{
	const char *params[5] = {job->table_name, job->key_columns, job->created_by,
				 job->allow_triggers ? "true" : "false", job->name};

	job_send(job, "resolving the table", bf_resolve_sql, 5, params, job_resolved);
}

/* ---- the upper bound, fixed once per job ---- */

/* The columns of job_fix_bound's RETURNING. */
enum { BOUND_UPPER_BOUND, BOUND_TABLE_OID, BOUND_WALK_KEY };

static void job_bound_fixed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		/* No ordering operator for a key's type: say why it matters. */
		job_query_failed(job, r,
				 bf_sqlstate_is(r->sqlstate, BF_SQLSTATE_UNDEFINED_FUNCTION)
					 ? "fixing the upper bound of the walk (key columns must be "
					   "sortable)"
					 : "fixing the upper bound of the walk");
		return;
	}
	if (PQntuples(r->res) == 0) {
		job_set_synced(job, false); /* fenced out: the row decides */
		job_step(job);
		return;
	}
	replace_str(&job->upper_bound, bf_cell(r->res, 0, BOUND_UPPER_BOUND));
	job->pinned_oid = (uint32_t)bf_cell_int(r->res, 0, BOUND_TABLE_OID, 0);
	replace_str(&job->pinned_key, bf_cell(r->res, 0, BOUND_WALK_KEY));
	if (job->rows_estimate >= 0)
		job_log(job, BF_LOG_INFO, "walk fixed: keys up to %s (about %" PRId64 " rows)",
			job->upper_bound, job->rows_estimate);
	else
		job_log(job, BF_LOG_INFO,
			"walk fixed: keys up to %s (row count unknown: table never analyzed)",
			job->upper_bound);
	job_succeeded_step(job);
	job_step(job);
}

void job_fix_bound(bf_job *job)
{
	char *upper = bf_keyset_upper_bound_sql(&job->walk);
	char estimate[24];
	job_params p;
	bf_strbuf sb;

	if (!upper) {
		job_retry_later(job);
		return;
	}
	/* '{}' marks an empty table: nothing to walk, but the bound is fixed. */
	bf_strbuf_init(&sb);
	/* The walk is pinned with its bound: the table and key it is for. */
	bf_strbuf_printf(
		&sb,
		"UPDATE backfill.jobs SET upper_bound = coalesce((%s), '{}'), rows_estimate = $4,\n"
		"  table_oid = $5, walk_key = $6\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"RETURNING upper_bound, table_oid, walk_key",
		upper);
	free(upper);
	char *sql = bf_strbuf_finish(&sb);
	char *key = job_walk_key(&job->table);
	char oid[16];

	if (!sql || !key) {
		free(sql);
		free(key);
		job_retry_later(job);
		return;
	}
	job_params_fence(job, &p);
	fmt_int(estimate, sizeof(estimate), job->rows_estimate);
	snprintf(oid, sizeof(oid), "%u", job->table.oid);
	p.values[3] = job->rows_estimate >= 0 ? estimate : NULL;
	p.values[4] = oid;
	p.values[5] = key;
	job_send(job, "fixing the upper bound", sql, 6, p.values, job_bound_fixed);
	free(sql);
	free(key);
}
