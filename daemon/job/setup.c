/* setup.c -- a job's walk set up: its range cut into slices, each then claimed on its own. */
#include "job_int.h"
#include "split.h"
#include "strbuf.h"

/* {"{1}","{5}"}: the boundaries, each a text[] literal, as one text[]
 * literal (every element quoted), in key order. */
static char *job_boundaries_literal(const PGresult *res)
{
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	bf_strbuf_append(&sb, "{");
	for (int i = 0; i < PQntuples(res); i++) {
		bf_strbuf_append(&sb, i ? ",\"" : "\"");
		for (const char *c = PQgetvalue(res, i, 0); *c; c++)
			bf_strbuf_printf(&sb, "%s%c", *c == '"' || *c == '\\' ? "\\" : "", *c);
		bf_strbuf_append(&sb, "\"");
	}
	bf_strbuf_append(&sb, "}");
	return bf_strbuf_finish(&sb);
}

static void job_connection_named(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "naming the connection");
		return;
	}
	job_step(job);
}

/* The connection is the first slice's now: named so in pg_stat_activity,
 * as the others' are, and again after a reconnect. */
static void job_name_connection(bf_job *job)
{
	char app[64];
	const char *params[1] = {app};

	job_application_name(job, app, sizeof(app));
	bf_pg_set_application_name(&job->pg, app);
	job_send(job, "naming the connection", "SELECT set_config('application_name', $1, false)",
		 1, params, job_connection_named);
}

static void job_slices_made(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "recording the job's slices");
		return;
	}
	int64_t made = PQntuples(r->res) ? bf_cell_int(r->res, 0, 0, 0) : 0;
	int64_t released = PQntuples(r->res) ? bf_cell_int(r->res, 0, 1, 0) : 0;

	if (!released) {
		job_set_synced(job, false); /* fenced out: the row decides */
		job_step(job);
		return;
	}
	if (made == 0) {
		/* Cut already (the claim saw it too late): nothing to do. */
		job_log(job, BF_LOG_NOTICE, "the walk is cut into slices already; letting go");
		job_close(job);
		return;
	}
	job_log(job, BF_LOG_INFO, "walk cut into %" PRId64 " slice%s (asked for %d)", made,
		made == 1 ? "" : "s", job->slices);
	job_succeeded_step(job);
	/* The job row is given back, and this walk goes on as the first
	 * slice, leased to it by the same statement, on the same connection:
	 * the others are claimed like any work. The row is read again (its
	 * bounds, the ranges) before the first batch. */
	job->slice_id = bf_cell_int(r->res, 0, 2, 0);
	job->slice = 1;
	job->lease_epoch = 1;
	job->nranges = (int)made;
	job_label(job);
	job->env.ops->unit_changed(job->env.owner, job);
	job_set_synced(job, false);
	job_name_connection(job);
}

/* The slices, in one statement with the job row's release: range i is
 * (boundary i-1, boundary i], the last one ends at the walk's bound. Each
 * starts with its checkpoint at its lower bound, so a batch needs nothing
 * else. Fenced by the job row's lease; nothing is made when the job has
 * slices already. */
static void job_slices_insert(bf_job *job, const char *boundaries)
{
	static const char sql[] =
		"WITH j AS (\n"
		"  SELECT id, rows_estimate FROM backfill.jobs\n"
		"  WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"    AND upper_bound = $4::text[]\n"
		"    AND NOT EXISTS (SELECT FROM backfill.slices WHERE job_id = $1)\n"
		"  FOR NO KEY UPDATE\n"
		"), b AS (\n"
		"  SELECT lit::text[] AS upper_bound, n FROM unnest($5::text[]) WITH ORDINALITY AS u (lit, n)\n"
		"  UNION ALL\n"
		"  SELECT $4::text[], cardinality($5::text[]) + 1\n"
		"), r AS (\n"
		"  SELECT n, lag(upper_bound) OVER (ORDER BY n) AS lower_bound, upper_bound FROM b\n"
		"), made AS (\n"
		"  INSERT INTO backfill.slices (job_id, slice, lower_bound, upper_bound, checkpoint,\n"
		"                               rows_estimate, state, owner, lease_epoch, lease_until,\n"
		"                               started_at)\n"
		"  SELECT j.id, r.n, r.lower_bound, r.upper_bound, r.lower_bound,\n"
		"         j.rows_estimate / (cardinality($5::text[]) + 1),\n"
		/* The first is ours: we walk on as it. */
		"         CASE WHEN r.n = 1 THEN 'running' ELSE 'pending' END,\n"
		"         CASE WHEN r.n = 1 THEN $2 END, CASE WHEN r.n = 1 THEN 1 ELSE 0 END,\n"
		"         CASE WHEN r.n = 1 THEN now() + $7 * interval '1 second' END,\n"
		"         CASE WHEN r.n = 1 THEN now() END\n"
		"  FROM j, r\n"
		"  RETURNING id, slice\n"
		"), released AS (\n"
		/* Given back once cut (by us, or already): the job's slice count
		 * fixed with its ranges, the configuration's when the row has
		 * none, so that every daemon counts the same room. */
		"  UPDATE backfill.jobs SET owner = NULL, lease_until = NULL,\n"
		"    slices = coalesce(slices, $6::integer)\n"
		"  WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"    AND (EXISTS (SELECT FROM made)\n"
		"         OR EXISTS (SELECT FROM backfill.slices WHERE job_id = $1))\n"
		"  RETURNING id\n"
		")\n"
		"SELECT (SELECT count(*) FROM made), (SELECT count(*) FROM released),\n"
		"       (SELECT id FROM made WHERE slice = 1)";
	job_params p;

	char slices[16], lease[16];

	job_params_fence(job, &p);
	snprintf(slices, sizeof(slices), "%d", job->slices);
	snprintf(lease, sizeof(lease), "%d", job->cfg->lease_s);
	p.values[3] = job->upper_bound;
	p.values[4] = boundaries;
	p.values[5] = slices;
	p.values[6] = lease;
	job_send(job, "recording the slices", sql, 7, p.values, job_slices_made);
}

static void job_split_read(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "cutting the walk into slices");
		return;
	}
	char *boundaries = job_boundaries_literal(r->res);

	if (!boundaries) {
		job_retry_later(job);
		return;
	}
	job_slices_insert(job, boundaries);
	free(boundaries);
}

/* The walk's range cut into up to `slices` ranges of about equal row
 * count (split.c), then recorded. An empty table is one empty range. */
void job_split(bf_job *job)
{
	int ranges = bf_split_ranges(job->slices, job->rows_estimate);

	if (ranges <= 1 || strcmp(job->upper_bound, "{}") == 0) {
		job_slices_insert(job, "{}");
		return;
	}
	char *sql = bf_split_sql(&job->walk, "$1", ranges, job->rows_estimate);
	const char *params[1] = {job->upper_bound};

	if (!sql) {
		job_retry_later(job);
		return;
	}
	job_send(job, "cutting the walk into slices", sql, 1, params, job_split_read);
	free(sql);
}
