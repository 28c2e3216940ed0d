/* finish.c -- giving a job back (the lease released) or recording its end. */
#include "job_int.h"
#include "schema.h"

static void job_released(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (r->ok && PQntuples(r->res) == 1)
		job_log(job, BF_LOG_INFO, "lease released (state %s)", PQgetvalue(r->res, 0, 0));
	else if (!r->ok)
		job_log(job, BF_LOG_WARNING,
			"could not release the lease: %s; it expires by itself", r->message);
	job_close(job);
}

/* Gives the job back: a running slice (or job being set up) goes back to
 * pending for any daemon to take; a paused or cancelled job keeps its
 * state. */
void job_release(bf_job *job)
{
	static const char setup_sql[] =
		"UPDATE backfill.jobs SET " BF_SCHEMA_LEASE_RELEASE_SET "WHERE id = $1 AND owner = $2 AND lease_epoch = $3\n"
		"RETURNING state";
	static const char slice_sql[] =
		"UPDATE backfill.slices SET " BF_SCHEMA_LEASE_RELEASE_SET "WHERE id = $1 AND owner = $2 AND lease_epoch = $3\n"
		/* The job stays running: other daemons hear that a slice is
		 * free now, not at their next poll. */
		"RETURNING (SELECT state FROM backfill.jobs j WHERE j.id = job_id),\n"
		"  pg_notify('" BF_NOTIFY_CHANNEL "', job_id::text || ' released')";
	job_params p;

	job_params_fence(job, &p);
	job_send(job, "releasing the lease", job->slice_id ? slice_sql : setup_sql, 3, p.values,
		 job_released);
	if (job->phase != BF_JOB_QUERY)
		job_close(job);
}

/* The columns of the end's RETURNING: the job's state after it, the
 * ranges not done, the job's totals, rows_left. */
enum { FINISH_STATE, FINISH_LEFT, FINISH_SCANNED, FINISH_UPDATED, FINISH_BATCHES, FINISH_ROWS_LEFT };

static void job_finished(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "recording the end");
		return;
	}
	if (PQntuples(r->res) == 0) {
		/* Paused, cancelled or taken over at the last moment: the row
		 * decides, and a resumed job re-verifies from its checkpoint. */
		job_set_synced(job, false);
		job_step(job);
		return;
	}
	const char *state = PQgetvalue(r->res, 0, FINISH_STATE);
	int64_t rows_left = bf_cell_int(r->res, 0, FINISH_ROWS_LEFT, -1);
	char left[128] = "";

	if (strcmp(state, "running") == 0) {
		job_log(job, BF_LOG_INFO,
			"slice done: %" PRId64 " rows scanned, %" PRId64 " updated in %" PRId64
			" batches; %" PRId64 " of the job's ranges not done yet",
			job->rows_scanned, job->rows_updated, job->batches,
			bf_cell_int(r->res, 0, FINISH_LEFT, 0));
		job_close(job);
		return;
	}
	if (rows_left > 0)
		snprintf(left, sizeof(left),
			 "; %" PRId64 " rows above the walked range still match (rows_left)",
			 rows_left);
	/* The reason is on the line that says the job failed: an operator
	 * reading the log needs no second look. The totals are the job's. */
	bf_log(strcmp(state, "succeeded") == 0 ? BF_LOG_NOTICE : BF_LOG_ERROR,
	       "job \"%s\": state running -> %s: %" PRId64 " rows scanned, %" PRId64
	       " updated in %" PRId64 " batches%s%s%s",
	       job->name, state, bf_cell_int(r->res, 0, FINISH_SCANNED, job->rows_scanned),
	       bf_cell_int(r->res, 0, FINISH_UPDATED, job->rows_updated),
	       bf_cell_int(r->res, 0, FINISH_BATCHES, job->batches), left,
	       job->finish_error ? ": " : "", job->finish_error ? job->finish_error : "");
	job_close(job);
}

/* Records the end of the slice, and the job's when it was its last range
 * or it failed (backfill.slice_end); while setting up, the job's.
 * verification_failed makes a resume walk the range again (the jobs_touch
 * trigger starts the repair pass). */
void job_finish_as(bf_job *job, const char *state, const char *error,
			  bool verification_failed)
{
	static const char setup_sql[] =
		"UPDATE backfill.jobs SET state = $4, last_error = $5, owner = NULL, lease_until = NULL,\n"
		"  verification_failed = $6\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"RETURNING state, 0, rows_scanned, rows_updated, batches, rows_left";
	static const char slice_sql[] =
		"SELECT * FROM backfill.slice_end($1, $2, $3,\n"
		"  CASE $4::text WHEN 'succeeded' THEN 'done' ELSE $4::text END, $5, $6)";
	char text[2048];
	job_params p;

	job->finishing = 1;
	job_params_fence(job, &p);
	p.values[3] = state;
	p.values[4] = NULL;
	p.values[5] = verification_failed ? "true" : "false";
	if (error) {
		snprintf(text, sizeof(text), "%s", error);
		bf_utf8_trim(text);
		p.values[4] = text;
	}
	replace_str(&job->finish_error, p.values[4]);
	job_send(job, "recording the end", job->slice_id ? slice_sql : setup_sql, 6, p.values,
		 job_finished);
}

void job_finish(bf_job *job, const char *state, const char *error)
{
	job_finish_as(job, state, error, false);
}
