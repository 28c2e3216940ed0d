/* failure.c -- what a failed query means for a job: retry, back off, re-read, or fail it. */
#include "job_int.h"
#include "engine.h"
#include "errclass.h"

/* Decides what a failed query means for the job. `what` names the step for
 * the log and for last_error ("batch", "resolving the table", ...). */
void job_query_failed(bf_job *job, const bf_pg_result *r, const char *what)
{
	char error[1024];

	job->synced = 0;
	job_rates_settle(job, 0);
	if (!r->res) {
		/* The connection broke; bf_pg reconnects and its "up" event
		 * resumes the walk from the row. Whether the batch committed is
		 * for the row to say, not for us to guess. */
		job->phase = BF_JOB_CONNECTING;
		job_log(job, BF_LOG_WARNING, "%s interrupted: %s", what, r->message);
		if (job->stop_requested)
			job_close(job);
		return;
	}

	bf_errclass cls = bf_errclass_of(r->sqlstate);

	snprintf(error, sizeof(error), "%s: %s (SQLSTATE %s)", what, r->message,
		 r->sqlstate ? r->sqlstate : "none");
	if (job->stop_requested) {
		/* Stopping: no retry, no backoff; release what is ours. */
		job_log(job, BF_LOG_WARNING, "%s", error);
		job_step(job);
		return;
	}
	if (job->cancel_requested && job->cancel_blocking && r->sqlstate &&
	    strcmp(r->sqlstate, "57014") == 0) {
		/* We cancelled it because it blocked a session: smaller
		 * batches hold their locks for less time; back off first. */
		uint64_t delay = bf_backoff_next(&job->retry);
		char reason[sizeof(job->wait_reason)];

		job->cancel_requested = job->cancel_blocking = 0;
		bf_batch_size_shrink(&job->batch_size);
		job_log(job, BF_LOG_NOTICE,
			"blocking: the batch was cancelled and rolled back (%s); batch size now %d, "
			"retrying in %" PRIu64 " ms",
			job->blocking, bf_batch_size_get(&job->batch_size), delay);
		snprintf(reason, sizeof(reason),
			 "blocking: the last batch was cancelled (%s); backing off, batch size now %d",
			 job->blocking, bf_batch_size_get(&job->batch_size));
		job_wait_for(job, delay, reason);
		return;
	}
	if (job->cancel_requested && r->sqlstate && strcmp(r->sqlstate, "57014") == 0) {
		/* Our own cancel (pause --now): rolled back; the row says why. */
		job->cancel_requested = 0;
		job_log(job, BF_LOG_NOTICE,
			"the %s in flight was cancelled and rolled back; re-reading the job row",
			what);
		job_step(job);
		return;
	}
	switch (cls) {
	case BF_ERR_FENCE:
		job_log(job, BF_LOG_NOTICE,
			"the checkpoint fence refused the %s; re-reading the job row", what);
		job_step(job);
		return;
	case BF_ERR_TRANSIENT_SHRINK:
		bf_batch_size_shrink(&job->batch_size);
		/* fall through */
	case BF_ERR_TRANSIENT: {
		uint64_t delay = bf_backoff_next(&job->retry);
		char reason[sizeof(job->wait_reason)];

		job_log(job, BF_LOG_WARNING,
			"%s; transient, retrying in %" PRIu64 " ms (batch size %d)", error, delay,
			bf_batch_size_get(&job->batch_size));
		if (r->sqlstate && strcmp(r->sqlstate, "55P03") == 0)
			/* A lock we wait for is a throttle, never a failure. */
			snprintf(reason, sizeof(reason),
				 "lock_timeout: waited more than %d ms for a lock (%s); retrying with "
				 "batch size %d",
				 job->lock_timeout_ms, what, bf_batch_size_get(&job->batch_size));
		else
			snprintf(reason, sizeof(reason), "retry: %.1000s", error);
		job_wait_for(job, delay, reason);
		return;
	}
	case BF_ERR_PERMANENT:
	case BF_ERR_DATA: /* outside a batch: nothing to narrow */
		break;
	}

	job->failures++;
	if (job->failures >= job->cfg->retry_max_failures) {
		job_log(job, BF_LOG_ERROR, "%s; failed %d times in a row, giving up", error,
			job->failures);
		if (job->finishing) {
			/* Even recording the end fails: leave the row to the lease,
			 * so that this daemon or another tries again later. */
			job_close(job);
			return;
		}
		job_finish(job, "failed", error);
		return;
	}
	uint64_t delay = bf_backoff_next(&job->retry);

	job_log(job, BF_LOG_WARNING, "%s; attempt %d of %d, retrying in %" PRIu64 " ms", error,
		job->failures, job->cfg->retry_max_failures, delay);
	job_wait(job, delay);
}

void job_succeeded_step(bf_job *job)
{
	job->failures = 0;
	bf_backoff_reset(&job->retry);
}
