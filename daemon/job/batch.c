/* batch.c -- one batch: sent with its checkpoint, and what its result says. */
#include "job_int.h"

/* The batch scanned `scanned` of the rows it reserved: give back the rest. */
void job_rates_settle(bf_job *job, int64_t scanned)
{
	if (job->reserved)
		bf_rate_settle(&job->rate, job->reserved, scanned);
	/* A turn claimed but never used is given back too. */
	if (job->overall_reserved)
		bf_rate_settle(job->env.rate, job->overall_reserved, scanned);
	job->reserved = job->overall_reserved = 0;
	job->overall_slot_ns = 0;
}

static void job_log_progress(bf_job *job, int force)
{
	uint64_t now = uv_hrtime();

	if (!force && now - job->last_progress_ns < PROGRESS_LOG_NS)
		return;
	job->last_progress_ns = now;
	if (job->rows_estimate > 0)
		job_log(job, BF_LOG_INFO,
			"%" PRId64 " of about %" PRId64 " rows scanned (%.1f%%), %" PRId64
			" updated, %" PRId64 " batches, batch size %d",
			job->rows_scanned, job->rows_estimate,
			100.0 * (double)job->rows_scanned / (double)job->rows_estimate,
			job->rows_updated, job->batches, bf_batch_size_get(&job->batch_size));
	else
		job_log(job, BF_LOG_INFO,
			"%" PRId64 " rows scanned, %" PRId64 " updated, %" PRId64
			" batches, batch size %d",
			job->rows_scanned, job->rows_updated, job->batches,
			bf_batch_size_get(&job->batch_size));
}

/* The batch's size for next time. Sessions that waited on its row locks
 * (counted at its end: they wait until the commit) show the application
 * writes where we walk: the size halves and grows back slowly
 * (batch_size.c), however short the batches are. Otherwise its duration
 * steers it toward the target. A run of contention is logged where it
 * starts and where it ends, not at every batch. */
static void job_size_next(bf_job *job, int64_t rows, double busy_ms, int64_t waiters)
{
	int was = bf_batch_size_is_contended(&job->batch_size);

	if (waiters > 0) {
		job->sessions_held += waiters;
		bf_batch_size_contended(&job->batch_size, (int)rows);
		if (!was)
			job_log(job, BF_LOG_INFO,
				"%" PRId64 " application session%s waited on a batch's row locks"
				" until it committed; batch size now %d, growing slowly while"
				" the application writes where the job walks",
				waiters, waiters == 1 ? "" : "s", bf_batch_size_get(&job->batch_size));
		return;
	}
	bf_batch_size_observe(&job->batch_size, (int)rows, busy_ms, 0);
	if (was && !bf_batch_size_is_contended(&job->batch_size))
		job_log(job, BF_LOG_INFO,
			"no application session waited on the last batches; the batch size"
			" (%d) grows at the usual pace again",
			bf_batch_size_get(&job->batch_size));
}

/* The batch's row into the job: the counters, the checkpoint, and where
 * the WAL stood after its work (until a sample taken after it, every job
 * counts it on top of the sampled lags: job_hold). */
static void job_batch_read(bf_job *job, const PGresult *res)
{
	job->batches = bf_cell_int(res, 0, BF_BATCH_BATCHES, job->batches);
	if (bf_cell(res, 0, BF_BATCH_CHECKPOINT))
		replace_str(&job->checkpoint, bf_cell(res, 0, BF_BATCH_CHECKPOINT));
	job->rows_scanned = bf_cell_int(res, 0, BF_BATCH_ROWS_SCANNED, job->rows_scanned);
	job->rows_updated = bf_cell_int(res, 0, BF_BATCH_ROWS_UPDATED, job->rows_updated);
	bf_sampler_note_lsn(job->env.sampler, bf_lsn_parse(bf_cell(res, 0, BF_BATCH_WAL_LSN)));
}

/* Strict mode: the next batch waits until this one is on the standbys
 * (the poll takes the WAL position after our commit). */
static void job_want_replay(bf_job *job)
{
	job->replay_waiting = 1;
	job->replay_target = 0;
	job->replay_since_ns = uv_hrtime();
	bf_sampler_replay_wanted(job->env.sampler);
}

/* Cut: a row changed between the snapshot and its lock. The next batch
 * locks it in its first statement, so it gets through; a cut right at the
 * first row is retried after a pause, so that a row changing that often
 * is not spun on. */
static void job_batch_cut(bf_job *job, int64_t done, int64_t page, double busy_ms,
			  int64_t waiters)
{
	job_log(job, BF_LOG_DEBUG,
		"batch cut after %" PRId64 " of %" PRId64
		" rows: a row changed while it was being locked",
		done, page);
	if (done == 0) {
		job->cuts++;
		if (job->cuts > 1) {
			job_retry_later(job);
			return;
		}
	} else {
		job->cuts = 0;
	}
	if (waiters > 0)
		job_size_next(job, done, busy_ms, waiters);
	job_succeeded_step(job);
	job_step(job);
}

static void job_batch_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;
	double busy_ms = (double)(uv_hrtime() - job->query_started_ns) / 1e6;

	(void)pg;
	if (!r->ok) {
		job_batch_failed(job, r);
		return;
	}
	const PGresult *res = r->res;
	int64_t page = bf_cell_int(res, 0, BF_BATCH_PAGE, 0);
	int64_t done = bf_cell_int(res, 0, BF_BATCH_DONE, 0);
	int64_t updated = bf_cell_int(res, 0, BF_BATCH_UPDATED, 0);
	int64_t waiters = bf_cell_int(res, 0, BF_BATCH_WAITERS, 0);

	job->min_timeouts = 0;
	job_narrow_passed(job, done);
	job_rates_settle(job, done);
	job_batch_read(job, res);
	job_log(job, BF_LOG_DEBUG,
		"batch %" PRId64 ": %" PRId64 " rows scanned, %" PRId64
		" updated in %.1f ms, checkpoint %s%s",
		job->batches, done, updated, busy_ms, job->checkpoint ? job->checkpoint : "-",
		waiters > 0 ? ", sessions waited on it" : "");
	if (done > 0 && job->wait_for_replay)
		job_want_replay(job);
	if (done < page) {
		job_batch_cut(job, done, page, busy_ms, waiters);
		return;
	}
	job->cuts = 0;
	job_succeeded_step(job);
	job_sample(job);
	/* Fewer rows than asked for: nothing is left up to the bound. */
	if (page < job->batch_limit) {
		job->walk_done = 1;
		job_log_progress(job, 1);
		job_log(job, BF_LOG_INFO, "walk complete at checkpoint %s",
			job->checkpoint ? job->checkpoint : "(none: no rows)");
	} else {
		job_size_next(job, page, busy_ms, waiters);
		job_log_progress(job, 0);
	}
	job_step(job);
}

void job_batch(bf_job *job)
{
	/* Narrowing down to a failing row overrides the size controller. */
	int limit = job->narrow_limit ? job->narrow_limit : bf_batch_size_get(&job->batch_size);
	char *upper = bf_pg_escape_literal(&job->pg, job->upper_bound);
	char *lower = job->checkpoint ? bf_pg_escape_literal(&job->pg, job->checkpoint) : NULL;
	char *owner = bf_pg_escape_literal(&job->pg, job->owner);
	char *table = bf_pg_escape_literal(&job->pg, job->table.quoted);
	char *sql = NULL;

	/* Two statements in one round trip and one implicit transaction: the
	 * simple query protocol takes no parameters, so the values are
	 * literals, escaped by libpq for this connection. */
	if (upper && owner && table && (lower || !job->checkpoint)) {
		bf_batch_args args = {
			.upper = upper,
			.lower = lower,
			.owner = owner,
			.table_literal = table,
			.table_oid = job->pinned_oid,
			.lease_epoch = job->lease_epoch,
			.slice_id = job->slice_id,
			.job_id = job->id,
			.batches = job->batches,
			.limit = limit,
		};
		sql = bf_keyset_batch_sql(&job->walk, &args);
	}
	free(upper);
	free(lower);
	free(owner);
	free(table);
	if (!sql) {
		job_log(job, BF_LOG_ERROR, "could not build the batch statement (out of memory)");
		job_retry_later(job);
		return;
	}
	job->batch_limit = limit;
	job_send(job, "batch", sql, 0, NULL, job_batch_done);
	job->in_batch = job->phase == BF_JOB_QUERY;
	free(sql);
	if (job->in_batch) {
		/* The rate limits count the rows a batch may scan from its start. */
		uint64_t now = uv_hrtime();

		bf_rate_reserve(&job->rate, now, limit);
		job->reserved = limit;
		/* The daemon's rate: the turn claimed while holding (job_hold). */
		job->overall_slot_ns = 0;
		bf_sampler_batch_started(job->env.sampler);
	}
}
