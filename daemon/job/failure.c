/* failure.c -- what a failed query means for a job (a pure verdict), and the job acting on it. */
#include "failure.h"

#include "job_int.h"
#include "errclass.h"

bf_failure_verdict bf_failure_judge(const bf_failure *f)
{
	bf_failure_verdict v = {0};
	bool cancelled = bf_sqlstate_is(f->sqlstate, BF_SQLSTATE_QUERY_CANCELED);

	if (f->connection_broke) {
		v.action = BF_FAILURE_RECONNECT;
		return v;
	}
	if (f->stopping) {
		v.action = BF_FAILURE_STOPPING;
		return v;
	}
	if (f->cancel_requested && cancelled) {
		v.action = f->cancel_blocking ? BF_FAILURE_BLOCKING_CANCELLED : BF_FAILURE_CANCELLED;
		v.shrink = f->cancel_blocking;
		return v;
	}
	switch (bf_errclass_of(f->sqlstate)) {
	case BF_ERR_FENCE:
		v.action = BF_FAILURE_FENCED;
		return v;
	case BF_ERR_TRANSIENT_SHRINK:
		v.shrink = true;
		v.lock_timeout = bf_sqlstate_is(f->sqlstate, BF_SQLSTATE_LOCK_NOT_AVAILABLE);
		/* fall through */
	case BF_ERR_TRANSIENT:
		v.action = BF_FAILURE_RETRY;
		return v;
	case BF_ERR_PERMANENT:
	case BF_ERR_DATA: /* outside a batch: nothing to narrow */
		break;
	}
	if (f->failures + 1 < f->max_failures)
		v.action = BF_FAILURE_ATTEMPT;
	else
		v.action = f->finishing ? BF_FAILURE_LEAVE : BF_FAILURE_GIVE_UP;
	return v;
}

/* We cancelled the batch because it blocked a session: smaller batches
 * hold their locks for less time; back off first. */
static void job_blocking_cancelled(bf_job *job)
{
	uint64_t delay = bf_backoff_next(&job->retry);
	char reason[sizeof(job->wait_reason)];

	job_log(job, BF_LOG_NOTICE,
		"blocking: the batch was cancelled and rolled back (%s); batch size now %d, "
		"retrying in %" PRIu64 " ms",
		job->blocking, bf_batch_size_get(&job->batch_size), delay);
	snprintf(reason, sizeof(reason),
		 "blocking: the last batch was cancelled (%s); backing off, batch size now %d",
		 job->blocking, bf_batch_size_get(&job->batch_size));
	job_wait_for(job, delay, reason);
}

/* Transient: back off, and say why while waiting. */
static void job_retry_transient(bf_job *job, const char *what, const char *error,
				bool lock_timeout)
{
	uint64_t delay = bf_backoff_next(&job->retry);
	char reason[sizeof(job->wait_reason)];

	job_log(job, BF_LOG_WARNING, "%s; transient, retrying in %" PRIu64 " ms (batch size %d)",
		error, delay, bf_batch_size_get(&job->batch_size));
	if (lock_timeout)
		/* A lock we wait for is a throttle, never a failure. */
		snprintf(reason, sizeof(reason),
			 "lock_timeout: waited more than %d ms for a lock (%s); retrying with "
			 "batch size %d",
			 job->lock_timeout_ms, what, bf_batch_size_get(&job->batch_size));
	else
		snprintf(reason, sizeof(reason), "retry: %.1000s", error);
	job_wait_for(job, delay, reason);
}

/* Permanent: retried after a backoff until retry.max_failures in a row. */
static void job_permanent(bf_job *job, bf_failure_action action, const char *error)
{
	job->failures++;
	if (action == BF_FAILURE_ATTEMPT) {
		uint64_t delay = bf_backoff_next(&job->retry);

		job_log(job, BF_LOG_WARNING, "%s; attempt %d of %d, retrying in %" PRIu64 " ms",
			error, job->failures, job->cfg->retry_max_failures, delay);
		job_wait(job, delay);
		return;
	}
	job_log(job, BF_LOG_ERROR, "%s; failed %d times in a row, giving up", error, job->failures);
	if (action == BF_FAILURE_LEAVE)
		job_close(job);
	else
		job_finish(job, "failed", error);
}

/* Acts on what a failed query means for the job. `what` names the step for
 * the log and for last_error ("batch", "resolving the table", ...). */
void job_query_failed(bf_job *job, const bf_pg_result *r, const char *what)
{
	char error[1024];
	bf_failure f = {
		.sqlstate = r->sqlstate,
		/* No result on a connection still up ("the server returned no
		 * result"): no "up" event will come; retry it instead. */
		.connection_broke = r->res == NULL && !bf_pg_is_ready(&job->pg),
		.stopping = job->stop_requested,
		.cancel_requested = job->cancel_requested,
		.cancel_blocking = job->cancel_blocking,
		.finishing = job->finishing,
		.failures = job->failures,
		.max_failures = job->cfg->retry_max_failures,
	};
	bf_failure_verdict v = bf_failure_judge(&f);

	job_set_synced(job, false);
	job_rates_settle(job, 0);
	snprintf(error, sizeof(error), "%s: %s (SQLSTATE %s)", what, r->message,
		 r->sqlstate ? r->sqlstate : "none");
	if (v.shrink)
		bf_batch_size_shrink(&job->batch_size);
	switch (v.action) {
	case BF_FAILURE_RECONNECT:
		/* bf_pg reconnects and its "up" event resumes the walk from
		 * the row. Whether the batch committed is for the row to say,
		 * not for us to guess. */
		job_set_phase(job, BF_JOB_CONNECTING);
		job_log(job, BF_LOG_WARNING, "%s interrupted: %s", what, r->message);
		if (job->stop_requested)
			job_close(job);
		return;
	case BF_FAILURE_STOPPING:
		job_log(job, BF_LOG_WARNING, "%s", error);
		job_step(job);
		return;
	case BF_FAILURE_BLOCKING_CANCELLED:
		job->cancel_requested = job->cancel_blocking = 0;
		job_blocking_cancelled(job);
		return;
	case BF_FAILURE_CANCELLED:
		job->cancel_requested = 0;
		job_log(job, BF_LOG_NOTICE,
			"the %s in flight was cancelled and rolled back; re-reading the job row",
			what);
		job_step(job);
		return;
	case BF_FAILURE_FENCED:
		job_log(job, BF_LOG_NOTICE,
			"the checkpoint fence refused the %s; re-reading the job row", what);
		job_step(job);
		return;
	case BF_FAILURE_RETRY:
		job_retry_transient(job, what, error, v.lock_timeout);
		return;
	case BF_FAILURE_ATTEMPT:
	case BF_FAILURE_GIVE_UP:
	case BF_FAILURE_LEAVE:
		job_permanent(job, v.action, error);
		return;
	}
}

void job_succeeded_step(bf_job *job)
{
	job->failures = 0;
	bf_backoff_reset(&job->retry);
}
