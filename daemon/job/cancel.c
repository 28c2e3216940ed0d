/* cancel.c -- cancelling the batch in flight: pause --now, or a session it blocks. */
#include "job_int.h"
#include "monitor.h"

/* Which cancel a reply is for: the job may be gone by then. */
typedef struct job_cancel {
	bf_job_env env;
	int64_t id, slice_id;
	int64_t batches; /* the batch it was for */
} job_cancel;

static void job_cancel_sent(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	job_cancel *c = arg;
	bf_job *job = c->env.ops->find(c->env.owner, c->id, c->slice_id);
	int hit = r->ok && PQntuples(r->res) > 0 && strcmp(PQgetvalue(r->res, 0, 0), "t") == 0;

	(void)pg;
	if (!r->ok)
		bf_warning("could not cancel a batch in flight: %s; it finishes or is fenced out",
			   r->message);
	/* Nothing cancelled while the same batch is still in flight: let the
	 * next look (pause --now, the lock check) try again. */
	if (!hit && job && job->cancel_requested && job->in_batch && job->batches == c->batches &&
	    job->phase == BF_JOB_QUERY)
		job->cancel_requested = 0;
	free(c);
}

/* Asks the server, from the monitor connection and ahead of its queue, to
 * cancel the batch in flight. Only an active batch is hit (its text starts
 * with BF_KEYSET_BATCH_MARK), never the re-read or the lease release that may
 * follow it by then; with the batch's transaction start known, never the
 * next batch either. */
static void job_cancel_in_flight(bf_job *job, int64_t xact_start_us)
{
	char pid[16], xact_start[24];
	const char *params[2] = {pid, xact_start_us ? xact_start : NULL};
	job_cancel *c = malloc(sizeof(*c));

	if (!c)
		return;
	*c = (job_cancel){job->env, job->id, job->slice_id, job->batches};
	job->cancel_requested = 1;
	snprintf(pid, sizeof(pid), "%d", job->pg.backend_pid);
	snprintf(xact_start, sizeof(xact_start), "%" PRId64, xact_start_us);
	job_log(job, BF_LOG_NOTICE, "cancelling the batch in flight (backend pid %s)", pid);
	bf_monitor_query_first(job->env.monitor,
			       "SELECT pg_cancel_backend(pid) FROM pg_stat_activity\n"
			       "WHERE pid = $1 AND state = 'active'\n"
			       "  AND starts_with(query, '" BF_KEYSET_BATCH_MARK "')\n"
			       /* A number, as the lock check read it: the text
				* of a timestamp depends on DateStyle and TimeZone */
			       "  AND ($2::bigint IS NULL\n"
			       "       OR (extract(epoch FROM xact_start) * 1000000)::bigint = $2)",
			       2, params, job_cancel_sent, c);
}

void bf_job_cancel_batch(bf_job *job)
{
	if (job->phase != BF_JOB_QUERY || !job->in_batch || job->cancel_requested)
		return;
	/* The fence already keeps a paused job's batch from committing; the
	 * cancel only spares waiting for it. */
	job->cancel_blocking = 0;
	job_cancel_in_flight(job, 0);
}

int64_t bf_job_on_blocked(bf_job *job, const bf_blocked *b)
{
	if (job->phase != BF_JOB_QUERY || !job->in_batch || job->cancel_requested)
		return 0;
	if (!b->ddl && b->waited_ms < job->lock_wait_max_ms)
		return job->lock_wait_max_ms - b->waited_ms;
	/* A DDL lock request queued behind our batch stalls every later
	 * query on the table, so it does not wait for the threshold. */
	if (b->ddl)
		snprintf(job->blocking, sizeof(job->blocking),
			 "%.200s; DDL queued behind the batch stalls the table", b->what);
	else
		snprintf(job->blocking, sizeof(job->blocking), "%.200s for %.1f s > %.1f s",
			 b->what, (double)b->waited_ms / 1000.0,
			 (double)job->lock_wait_max_ms / 1000.0);
	job_log(job, BF_LOG_NOTICE, "blocking: %s", job->blocking);
	job->cancel_blocking = 1;
	job_cancel_in_flight(job, b->xact_start_us);
	return 0;
}
