/* sync.c -- re-reading the job row (the row is the truth), applying its knobs and session settings. */
#include "job_int.h"
#include "session.h"
#include "knobs.h"

/* Sets the job's session timeouts: now on this connection (before the next
 * query) and after every reconnect. */
static void job_session_timeouts(bf_job *job, int lock_ms, int statement_ms)
{
	char sql[768];

	job->lock_timeout_ms = lock_ms;
	job->statement_timeout_ms = statement_ms;
	bf_session_batch_sql(sql, sizeof(sql), job->cfg, lock_ms, statement_ms);
	/* A batch is two statements, each bounded by statement_timeout on the
	 * server; past that and a margin, the server is gone. */
	bf_pg_reconfigure(&job->pg, sql, 2 * statement_ms, job->cfg->lease_s);
}

/* Applies the row's knobs (backfillctl set) over the configuration: bounds
 * and target now, a changed batch_size column as the size to continue
 * from, limits and timeouts before the next batch. A knob the daemon
 * cannot apply fails the job, with the reason, rather than run it with
 * settings the operator did not ask for. Returns -1 when it failed. */
static int job_apply_settings(bf_job *job, const char *text, int batch_size_column, int share)
{
	char error[512];
	bf_job_knobs knobs;
	const long long *k = knobs.v;

	if (text && job->settings_text && strcmp(text, job->settings_text) == 0 &&
	    batch_size_column == job->batch_size_column && share == job->rate_share)
		return 0;
	if (bf_job_knobs_resolve(&knobs, job->cfg, text, error, sizeof(error)) != 0) {
		job_log(job, BF_LOG_ERROR, "%s", error);
		job_set_synced(job, true); /* the row was read: finish from it */
		job_finish(job, "failed", error);
		return -1;
	}
	bf_batch_size_bounds(&job->batch_size, (int)k[BF_KNOB_BATCH_SIZE_MIN],
			     (int)k[BF_KNOB_BATCH_SIZE_MAX], (int)k[BF_KNOB_BATCH_TARGET_MS]);
	if (batch_size_column > 0 && batch_size_column != job->batch_size_column)
		bf_batch_size_set(&job->batch_size, batch_size_column);
	job->batch_size_column = batch_size_column;
	/* max_rows_per_s is the job's: each of the ranges running at once
	 * takes its share. */
	job->rate_share = share;
	bf_rate_set(&job->rate, k[BF_KNOB_MAX_ROWS_PER_S] > 0 && share > 1
					? (k[BF_KNOB_MAX_ROWS_PER_S] + share - 1) / share
					: k[BF_KNOB_MAX_ROWS_PER_S]);
	job->limits.replay_lag_high_bytes = k[BF_KNOB_REPLAY_LAG_HIGH_BYTES];
	job->limits.replay_lag_low_bytes = k[BF_KNOB_REPLAY_LAG_LOW_BYTES];
	job->limits.replay_lag_high_ms = k[BF_KNOB_REPLAY_LAG_HIGH_MS];
	job->limits.replay_lag_low_ms = k[BF_KNOB_REPLAY_LAG_LOW_MS];
	job->limits.slot_lag_high_bytes = k[BF_KNOB_SLOT_LAG_HIGH_BYTES];
	job->limits.slot_lag_low_bytes = k[BF_KNOB_SLOT_LAG_LOW_BYTES];
	job->lock_wait_max_ms = (int)k[BF_KNOB_LOCK_WAIT_MAX_MS];
	job->wait_for_replay = k[BF_KNOB_WAIT_FOR_REPLAY] != 0;
	job->replay_wait_timeout_ms = (int)k[BF_KNOB_REPLAY_WAIT_TIMEOUT_MS];
	if (k[BF_KNOB_LOCK_TIMEOUT_MS] != job->lock_timeout_ms ||
	    k[BF_KNOB_STATEMENT_TIMEOUT_MS] != job->statement_timeout_ms) {
		job_session_timeouts(job, (int)k[BF_KNOB_LOCK_TIMEOUT_MS],
				     (int)k[BF_KNOB_STATEMENT_TIMEOUT_MS]);
		job->session_stale = 1;
	}
	replace_str(&job->settings_text, text);
	job_log(job, BF_LOG_DEBUG,
		"settings applied: batch size %d (bounds %lld..%lld, target %lld ms), "
		"max_rows_per_s %lld, lock_wait_max_ms %lld, lock_timeout_ms %lld, "
		"statement_timeout_ms %lld, wait_for_replay %lld",
		bf_batch_size_get(&job->batch_size), k[BF_KNOB_BATCH_SIZE_MIN],
		k[BF_KNOB_BATCH_SIZE_MAX], k[BF_KNOB_BATCH_TARGET_MS], k[BF_KNOB_MAX_ROWS_PER_S],
		k[BF_KNOB_LOCK_WAIT_MAX_MS], k[BF_KNOB_LOCK_TIMEOUT_MS],
		k[BF_KNOB_STATEMENT_TIMEOUT_MS], k[BF_KNOB_WAIT_FOR_REPLAY]);
	return 0;
}

/* The columns of job_sync's query. */
enum {
	SYNC_STATE,
	SYNC_OWNER,
	SYNC_LEASE_EPOCH,
	SYNC_CHECKPOINT,
	SYNC_UPPER_BOUND,
	SYNC_BATCHES,
	SYNC_ROWS_SCANNED,
	SYNC_ROWS_UPDATED,
	SYNC_ROWS_ESTIMATE,
	SYNC_SETTINGS,
	SYNC_BATCH_SIZE,
	SYNC_PAUSED_ALL,
	SYNC_TABLE_OID,
	SYNC_WALK_KEY,
	SYNC_CATCHUP_ROUNDS,
	SYNC_REPAIRING,
	SYNC_UNIT_STATE,  /* the slice's own state */
	SYNC_LOWER_BOUND, /* where the slice starts */
	SYNC_LAST_SLICE,  /* it reaches the walk's end */
	SYNC_NRANGES,	  /* the job's ranges */
	SYNC_NACTIVE,	  /* ... that may run at once and are not done */
};

/* The row into the walk. It is the whole truth: whatever the walk had
 * reached in memory (its end, the catch-up, the verification, the table as
 * resolved) may belong to a row that no longer says so, after a failover
 * to a standby that missed the last batches, or DDL. */
static void job_read_row(bf_job *job, const PGresult *res)
{
	replace_str(&job->lower_bound, bf_cell(res, 0, SYNC_LOWER_BOUND));
	job->last_slice = bf_cell_bool(res, 0, SYNC_LAST_SLICE);
	job->nranges = (int)bf_cell_int(res, 0, SYNC_NRANGES, 1);
	job->nactive = (int)bf_cell_int(res, 0, SYNC_NACTIVE, 1);
	job_label(job);
	replace_str(&job->checkpoint, bf_cell(res, 0, SYNC_CHECKPOINT));
	replace_str(&job->upper_bound, bf_cell(res, 0, SYNC_UPPER_BOUND));
	job->batches = bf_cell_int(res, 0, SYNC_BATCHES, 0);
	job->rows_scanned = bf_cell_int(res, 0, SYNC_ROWS_SCANNED, 0);
	job->rows_updated = bf_cell_int(res, 0, SYNC_ROWS_UPDATED, 0);
	job->rows_estimate = bf_cell_int(res, 0, SYNC_ROWS_ESTIMATE, -1);
	job->pinned_oid = (uint32_t)bf_cell_int(res, 0, SYNC_TABLE_OID, 0);
	replace_str(&job->pinned_key, bf_cell(res, 0, SYNC_WALK_KEY));
	job->catchup_rounds = (int)bf_cell_int(res, 0, SYNC_CATCHUP_ROUNDS, 0);
	job->repairing = bf_cell_bool(res, 0, SYNC_REPAIRING);
	job->walk_done = 0;
	job->caught_up = false;
	job->resolved = 0;
}

static void job_synced(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "reading the job row");
		return;
	}
	if (PQntuples(r->res) == 0) {
		job_log(job, BF_LOG_WARNING, "%s",
			job->slice_id ? "the slice's row is gone (the job was deleted, or started "
					"over: its walk set up anew); dropping the slice"
				      : "the job row was deleted; dropping the job");
		job_close(job);
		return;
	}
	const PGresult *res = r->res;
	const char *state = PQgetvalue(res, 0, SYNC_STATE);
	const char *owner = bf_cell(res, 0, SYNC_OWNER);
	int64_t epoch = bf_cell_int(res, 0, SYNC_LEASE_EPOCH, -1);

	bool ours = owner && strcmp(owner, job->owner) == 0 && epoch == job->lease_epoch;

	/* A job that stopped running took its slices' leases back (a
	 * setup's stays ours to give back): that is the stop, not a
	 * takeover. */
	if (strcmp(state, "running") != 0 && (ours || (job->slice_id && !owner))) {
		job_log(job, BF_LOG_NOTICE, "state changed to %s; stopping before the next batch",
			state);
		job->stop_requested = 1;
		if (ours)
			job_release(job);
		else
			job_close(job);
		return;
	}
	if (!ours) {
		job_log(job, BF_LOG_WARNING,
			"lease lost: the job is now owned by %s (lease epoch %" PRId64
			", ours was %" PRId64 "); dropping it",
			owner ? owner : "nobody", epoch, job->lease_epoch);
		job_close(job);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, SYNC_UNIT_STATE), "running") != 0) {
		job_log(job, BF_LOG_NOTICE, "the slice is %s; stopping",
			PQgetvalue(res, 0, SYNC_UNIT_STATE));
		job_close(job);
		return;
	}
	job_read_row(job, res);
	/* Only ever to pause (fail closed): a sync whose snapshot predates a
	 * pause --all must not lift it; the listener's reads and
	 * notifications do that. */
	if (bf_cell_bool(res, 0, SYNC_PAUSED_ALL))
		job->env.ops->set_paused(job->env.owner, true);
	if (job_apply_settings(job, bf_cell(res, 0, SYNC_SETTINGS),
			       (int)bf_cell_int(res, 0, SYNC_BATCH_SIZE, 0),
			       job->nactive > 1 ? job->nactive : 1) != 0)
		return;
	job_set_synced(job, true);
	if (job->nsamples == 0)
		job_sample(job);
	job_step(job);
}

void job_sync(bf_job *job)
{
	/* Setting the walk up: the job row is the unit. */
	static const char setup_sql[] =
		"SELECT state, owner, lease_epoch, checkpoint, upper_bound, batches,\n"
		"       rows_scanned, rows_updated, rows_estimate, settings, batch_size,\n"
		"       coalesce((SELECT paused FROM backfill.control), false),\n"
		"       table_oid, walk_key, catchup_rounds, repairing,\n"
		"       state, NULL::text[], true, 1, 1\n"
		"FROM backfill.jobs WHERE id = $1";
	/* A slice: its own row, and what the job row says of all of them. */
	static const char slice_sql[] =
		"SELECT j.state, s.owner, s.lease_epoch, s.checkpoint, s.upper_bound, s.batches,\n"
		"       s.rows_scanned, s.rows_updated, s.rows_estimate, j.settings, j.batch_size,\n"
		"       coalesce((SELECT paused FROM backfill.control), false),\n"
		"       j.table_oid, j.walk_key, j.catchup_rounds, s.repairing,\n"
		"       s.state, s.lower_bound,\n"
		"       s.slice = (SELECT max(slice) FROM backfill.slices x WHERE x.job_id = s.job_id),\n"
		"       (SELECT count(*) FROM backfill.slices x WHERE x.job_id = s.job_id),\n"
		"       least(coalesce(j.slices, $2::integer),\n"
		"             (SELECT count(*) FROM backfill.slices x\n"
		"              WHERE x.job_id = s.job_id AND x.state <> 'done'))\n"
		"FROM backfill.slices s JOIN backfill.jobs j ON j.id = s.job_id WHERE s.id = $1";
	char slices[16];
	job_params p;

	job_params_fence(job, &p);
	snprintf(slices, sizeof(slices), "%d", job->cfg->slices);
	p.values[1] = slices;
	if (job->slice_id)
		job_send(job, "reading the slice's row", slice_sql, 2, p.values, job_synced);
	else
		job_send(job, "reading the job row", setup_sql, 1, p.values, job_synced);
}

static void job_session_refreshed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "applying the reloaded session settings");
		return;
	}
	job->session_stale = 0;
	job_step(job);
}

void job_refresh_session(bf_job *job)
{
	char sql[768];

	/* The job's own timeouts, which may differ from the configuration's. */
	bf_session_batch_sql(sql, sizeof(sql), job->cfg, job->lock_timeout_ms,
				    job->statement_timeout_ms);
	job_send(job, "applying session settings", sql, 0, NULL, job_session_refreshed);
}

void bf_job_reconfigure(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	/* Re-applies the knobs over the new defaults, then the session. */
	free(job->settings_text);
	job->settings_text = NULL;
	bf_batch_size_bounds(&job->batch_size, job->cfg->batch_size_min, job->cfg->batch_size_max,
			     job->cfg->batch_target_ms);
	/* Now on this connection, and after every reconnect; the row's own
	 * timeouts, if any, follow at the next sync. */
	job_session_timeouts(job, job->cfg->lock_timeout_ms, job->cfg->statement_timeout_ms);
	job->session_stale = 1;
	bf_job_poke(job);
}
