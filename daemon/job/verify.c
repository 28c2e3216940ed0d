/* verify.c -- the verification pass: no row of the walked range still matches where_clause. */
#include "job_int.h"

static void job_verified_chunk(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;
	char error[1024];

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "verification");
		return;
	}
	int64_t matching = bf_cell_int(r->res, 0, BF_VERIFY_MATCHING, 0);
	int64_t scanned = bf_cell_int(r->res, 0, BF_VERIFY_SCANNED, 0);

	job->verify_matching += matching;
	if (bf_cell(r->res, 0, BF_VERIFY_LAST_KEY))
		replace_str(&job->verify_checkpoint, bf_cell(r->res, 0, BF_VERIFY_LAST_KEY));
	job_succeeded_step(job);
	if (scanned >= job->cfg->verify_chunk_rows) {
		job_step(job);
		return;
	}
	if (job->verify_matching == 0) {
		job_log(job, BF_LOG_INFO,
			"verification: no row in the walked range matches where_clause");
		job_finish(job, "succeeded", NULL);
		return;
	}
	snprintf(error, sizeof(error),
		 "verification failed: %" PRId64
		 " rows in the walked range still match where_clause (%s) "
		 "after the walk; the set_clause or statement does not make them stop matching, "
		 "or the application keeps writing such rows",
		 job->verify_matching, job->where_clause);
	job_finish_as(job, "failed", error, true);
}

void job_verify(bf_job *job)
{
	if (!job->where_clause || strcmp(job->upper_bound, "{}") == 0) {
		/* Nothing can still match: every row was in a committed batch. */
		job_finish(job, "succeeded", NULL);
		return;
	}
	if (!job->verify_started) {
		job->verify_started = 1;
		job->verify_matching = 0;
		/* The slice's range starts above its lower bound. */
		replace_str(&job->verify_checkpoint, job->lower_bound);
		job_log(job, BF_LOG_INFO,
			"verifying: counting rows in the walked range that still match where_clause");
	}
	int first = job->verify_checkpoint == NULL;
	char *sql = bf_keyset_verify_sql(&job->walk, first, job->cfg->verify_chunk_rows);
	const char *params[2] = {job->upper_bound, job->verify_checkpoint};

	if (!sql) {
		job_retry_later(job);
		return;
	}
	job_send(job, "verifying", sql, first ? 1 : 2, params, job_verified_chunk);
	free(sql);
}
