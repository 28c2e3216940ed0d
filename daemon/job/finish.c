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

/* Gives the job back: a running job goes back to pending for any daemon to
 * take; a paused or cancelled one keeps its state. */
void job_release(bf_job *job)
{
	static const char sql[] =
		"UPDATE backfill.jobs SET " BF_SCHEMA_LEASE_RELEASE_SET "WHERE id = $1 AND owner = $2 AND lease_epoch = $3\n"
		"RETURNING state";
	job_params p;

	job_params_fence(job, &p);
	job_send(job, "releasing the lease", sql, 3, p.values, job_released);
	if (job->phase != BF_JOB_QUERY)
		job_close(job);
}

/* The columns of job_finish_as's RETURNING. */
enum { FINISH_STATE, FINISH_ROWS_LEFT };

static void job_finished(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "recording the job's end");
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

	if (rows_left > 0)
		snprintf(left, sizeof(left),
			 "; %" PRId64 " rows above the walked range still match (rows_left)",
			 rows_left);
	/* The reason is on the line that says the job failed: an operator
	 * reading the log needs no second look. */
	job_log(job, strcmp(state, "succeeded") == 0 ? BF_LOG_NOTICE : BF_LOG_ERROR,
		"state running -> %s: %" PRId64 " rows scanned, %" PRId64 " updated in %" PRId64
		" batches%s%s%s",
		state, job->rows_scanned, job->rows_updated, job->batches, left,
		job->finish_error ? ": " : "", job->finish_error ? job->finish_error : "");
	job_close(job);
}

/* Records the job's end; verification_failed makes a resume walk the range
 * again (the jobs_touch trigger starts the repair pass). */
void job_finish_as(bf_job *job, const char *state, const char *error,
			  bool verification_failed)
{
	static const char sql[] =
		"UPDATE backfill.jobs SET state = $4, last_error = $5, owner = NULL, lease_until = NULL,\n"
		"  verification_failed = $6\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"RETURNING state, rows_left";
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
	job_send(job, "recording the end", sql, 6, p.values, job_finished);
}

void job_finish(bf_job *job, const char *state, const char *error)
{
	job_finish_as(job, state, error, false);
}
