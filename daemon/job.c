/* job.c -- one claimed job: sync, resolve, fix the bound, walk in batches, verify, finish.
 *
 * Every step is one query on the job's own connection; the next step is
 * chosen from what is known (job_step). After any failure the job row is
 * re-read before the next batch, so the database, never our memory, says
 * where the walk stands: a batch whose commit we did not see is not redone.
 */
#include "job.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine.h"
#include "definition.h"
#include "errclass.h"
#include "log.h"
#include "monitor.h"
#include "resolve.h"
#include "settings.h"
#include "sqltext.h"
#include "strbuf.h"

/* How often a running job logs its progress. */
#define PROGRESS_LOG_NS (10ULL * 1000 * 1000 * 1000)

static void job_step(bf_job *job);
static void job_close(bf_job *job);

#define job_log(job, level, fmt, ...) bf_log(level, "job \"%s\": " fmt, (job)->name, ##__VA_ARGS__)

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void replace_str(char **dst, const char *src)
{
	free(*dst);
	*dst = dup_or_null(src);
}

/* A text column, NULL for SQL NULL. */
static const char *col(const PGresult *res, int row, int c)
{
	return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

static int64_t col_int(const PGresult *res, int row, int c, int64_t null_value)
{
	const char *v = col(res, row, c);

	return v ? strtoll(v, NULL, 10) : null_value;
}

static void fmt_int(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

/* snprintf may cut a multibyte character in two, and PostgreSQL refuses
 * such text: drop an incomplete UTF-8 sequence at the end of s. */
static void utf8_trim(char *s)
{
	size_t n = strlen(s), i = n;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;

	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

/* ---- sending queries ---- */

/* Parameters shared by every fenced statement: $1 id, $2 owner, $3 epoch. */
typedef struct job_params {
	char id[24], epoch[24];
	const char *values[8];
} job_params;

static void job_params_fence(bf_job *job, job_params *p)
{
	fmt_int(p->id, sizeof(p->id), job->id);
	fmt_int(p->epoch, sizeof(p->epoch), job->lease_epoch);
	p->values[0] = p->id;
	p->values[1] = job->owner;
	p->values[2] = p->epoch;
}

static void job_throttle_end(bf_job *job);

static void job_send(bf_job *job, const char *activity, const char *sql, int nparams,
		     const char *const *params, bf_pg_query_cb cb)
{
	job_throttle_end(job);
	job->activity = activity;
	job->in_batch = 0;
	job->cancel_requested = 0;
	job->cancel_blocking = 0;
	job->phase = BF_JOB_QUERY;
	job->query_started_ns = uv_hrtime();
	if (bf_pg_query(&job->pg, sql, nparams, params, cb, job) != 0) {
		/* Not connected after all: the "up" event resumes the walk. */
		job->phase = BF_JOB_CONNECTING;
	}
}

/* ---- failures ---- */

static void job_timer_cb(uv_timer_t *timer)
{
	bf_job *job = timer->data;

	if (job->phase == BF_JOB_WAITING)
		job_step(job);
}

/* Time spent held back (throttled or waiting to retry) is counted apart:
 * status reports it, and it never counts as batch time. */
static void job_throttle_end(bf_job *job)
{
	if (job->throttled_since_ns) {
		job->throttled_total_ns += uv_hrtime() - job->throttled_since_ns;
		job->throttled_since_ns = 0;
	}
	job->wait_reason[0] = '\0';
	job->held = 0;
	job->replay_wait_active = 0;
}

/* Waits delay_ms, then takes the next step. A reason makes the wait a
 * throttle: status lists it and counts the time. */
static void job_wait_for(bf_job *job, uint64_t delay_ms, const char *reason)
{
	job_throttle_end(job);
	job->phase = BF_JOB_WAITING;
	if (reason) {
		snprintf(job->wait_reason, sizeof(job->wait_reason), "%s", reason);
		job->throttled_since_ns = uv_hrtime();
	}
	job->wake_ns = uv_hrtime() + delay_ms * 1000000ULL;
	uv_timer_start(&job->timer, job_timer_cb, delay_ms, 0);
}

static void job_wait(bf_job *job, uint64_t delay_ms)
{
	job_wait_for(job, delay_ms, NULL);
}

/* Try the current step again after the next backoff delay. */
static void job_retry_later(bf_job *job)
{
	job_wait(job, bf_backoff_next(&job->retry));
}

static void job_finish(bf_job *job, const char *state, const char *error);
static void job_rates_settle(bf_job *job, int64_t scanned);

/* Decides what a failed query means for the job. `what` names the step for
 * the log and for last_error ("batch", "resolving the table", ...). */
static void job_query_failed(bf_job *job, const bf_pg_result *r, const char *what)
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
				 "lock_timeout: the %s waited more than %d ms for a lock; retrying with "
				 "batch size %d",
				 what, job->lock_timeout_ms, bf_batch_size_get(&job->batch_size));
		else
			snprintf(reason, sizeof(reason), "retry: %.1000s", error);
		job_wait_for(job, delay, reason);
		return;
	}
	case BF_ERR_PERMANENT:
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

static void job_succeeded_step(bf_job *job)
{
	job->failures = 0;
	bf_backoff_reset(&job->retry);
}

/* ---- release and finish ---- */

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
static void job_release(bf_job *job)
{
	static const char sql[] =
		"UPDATE backfill.jobs SET owner = NULL, lease_until = NULL,\n"
		"  state = CASE WHEN state = 'running' THEN 'pending' ELSE state END\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3\n"
		"RETURNING state";
	job_params p;

	job_params_fence(job, &p);
	job_send(job, "releasing the lease", sql, 3, p.values, job_released);
	if (job->phase != BF_JOB_QUERY)
		job_close(job);
}

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
		job->synced = 0;
		job_step(job);
		return;
	}
	const char *state = PQgetvalue(r->res, 0, 0);

	job_log(job, strcmp(state, "succeeded") == 0 ? BF_LOG_NOTICE : BF_LOG_ERROR,
		"state running -> %s: %" PRId64 " rows scanned, %" PRId64 " updated in %" PRId64
		" batches",
		state, job->rows_scanned, job->rows_updated, job->batches);
	job_close(job);
}

static void job_finish(bf_job *job, const char *state, const char *error)
{
	static const char sql[] =
		"UPDATE backfill.jobs SET state = $4, last_error = $5, owner = NULL, lease_until = NULL\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"RETURNING state";
	char text[1024];
	job_params p;

	job->finishing = 1;
	job_params_fence(job, &p);
	p.values[3] = state;
	p.values[4] = NULL;
	if (error) {
		snprintf(text, sizeof(text), "%s", error);
		utf8_trim(text);
		p.values[4] = text;
	}
	job_send(job, "recording the end", sql, 5, p.values, job_finished);
}

/* ---- run-time knobs ---- */

/* Every knob's value for this job: the configuration's, then the row's. */
typedef struct job_knobs {
	long long batch_size_min, batch_size_max, batch_target_ms, max_rows_per_s;
	long long replay_lag_high_bytes, replay_lag_low_bytes;
	long long replay_lag_high_ms, replay_lag_low_ms;
	long long slot_lag_high_bytes, slot_lag_low_bytes;
	long long lock_wait_max_ms, lock_timeout_ms, statement_timeout_ms;
	long long wait_for_replay, replay_wait_timeout_ms;
} job_knobs;

static const struct {
	const char *name;
	size_t offset;
} job_knob_fields[] = {
#define KNOB(f) {#f, offsetof(job_knobs, f)}
	KNOB(batch_size_min),	     KNOB(batch_size_max),	  KNOB(batch_target_ms),
	KNOB(max_rows_per_s),	     KNOB(replay_lag_high_bytes), KNOB(replay_lag_low_bytes),
	KNOB(replay_lag_high_ms),    KNOB(replay_lag_low_ms),	  KNOB(slot_lag_high_bytes),
	KNOB(slot_lag_low_bytes),    KNOB(lock_wait_max_ms),	  KNOB(lock_timeout_ms),
	KNOB(statement_timeout_ms),  KNOB(wait_for_replay),	  KNOB(replay_wait_timeout_ms),
#undef KNOB
};

static void job_knobs_defaults(job_knobs *k, const bf_config *cfg)
{
	*k = (job_knobs){
		.batch_size_min = cfg->batch_size_min,
		.batch_size_max = cfg->batch_size_max,
		.batch_target_ms = cfg->batch_target_ms,
		.max_rows_per_s = 0,
		.replay_lag_high_bytes = cfg->throttle_replay_lag_high_bytes,
		.replay_lag_low_bytes = cfg->throttle_replay_lag_low_bytes,
		.replay_lag_high_ms = cfg->throttle_replay_lag_high_ms,
		.replay_lag_low_ms = cfg->throttle_replay_lag_low_ms,
		.slot_lag_high_bytes = cfg->throttle_slot_lag_high_bytes,
		.slot_lag_low_bytes = cfg->throttle_slot_lag_low_bytes,
		.lock_wait_max_ms = cfg->throttle_lock_wait_max_ms,
		.lock_timeout_ms = cfg->lock_timeout_ms,
		.statement_timeout_ms = cfg->statement_timeout_ms,
		.wait_for_replay = cfg->throttle_wait_for_replay,
		.replay_wait_timeout_ms = cfg->throttle_replay_wait_timeout_ms,
	};
}

/* The knobs' combinations that make no sense: batch bounds the wrong way
 * round fail (-1, the reason in error); a low mark above its high mark is
 * lowered to it. */
static int job_knobs_check(job_knobs *k, char *error, size_t len)
{
	static const struct {
		const char *lo, *hi;
		size_t lo_off, hi_off;
		int hi_zero_is_off;
	} pairs[] = {
		{"batch_size_min", "batch_size_max", offsetof(job_knobs, batch_size_min),
		 offsetof(job_knobs, batch_size_max), 0},
		{"replay_lag_low_bytes", "replay_lag_high_bytes",
		 offsetof(job_knobs, replay_lag_low_bytes), offsetof(job_knobs, replay_lag_high_bytes),
		 1},
		{"replay_lag_low_ms", "replay_lag_high_ms", offsetof(job_knobs, replay_lag_low_ms),
		 offsetof(job_knobs, replay_lag_high_ms), 1},
		{"slot_lag_low_bytes", "slot_lag_high_bytes", offsetof(job_knobs, slot_lag_low_bytes),
		 offsetof(job_knobs, slot_lag_high_bytes), 1},
	};

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		long long *lo = (long long *)((char *)k + pairs[i].lo_off);
		long long hi = *(const long long *)((const char *)k + pairs[i].hi_off);

		if (*lo <= hi || (pairs[i].hi_zero_is_off && hi == 0))
			continue;
		if (!pairs[i].hi_zero_is_off) {
			snprintf(error, len, "settings: %s (%lld) is greater than %s (%lld)",
				 pairs[i].lo, *lo, pairs[i].hi, hi);
			return -1;
		}
		/* A job's high mark below the configuration's low mark (or
		 * a reload that lowered a high mark under the job's low one):
		 * the job resumes at its high mark, rather than fail. */
		*lo = hi;
	}
	return 0;
}

/* Sets the job's session timeouts: now on this connection (before the next
 * query) and after every reconnect. */
static void job_session_timeouts(bf_job *job, int lock_ms, int statement_ms)
{
	char sql[768];

	job->lock_timeout_ms = lock_ms;
	job->statement_timeout_ms = statement_ms;
	bf_engine_batch_session_sql(sql, sizeof(sql), job->cfg, lock_ms, statement_ms);
	/* A batch is two statements, each bounded by statement_timeout on the
	 * server; past that and a margin, the server is gone. */
	bf_pg_reconfigure(&job->pg, sql, 2 * statement_ms, job->cfg->lease_s);
}

/* Applies the row's knobs (backfillctl set) over the configuration: bounds
 * and target now, a changed batch_size column as the size to continue
 * from, limits and timeouts before the next batch. A knob the daemon
 * cannot apply fails the job, with the reason, rather than run it with
 * settings the operator did not ask for. Returns -1 when it failed. */
static int job_apply_settings(bf_job *job, const char *text, int batch_size_column)
{
	char error[512];
	json_error_t jerr;
	json_t *obj = NULL, *value;
	const char *key;
	job_knobs k;

	if (text && job->settings_text && strcmp(text, job->settings_text) == 0 &&
	    batch_size_column == job->batch_size_column)
		return 0;
	job_knobs_defaults(&k, job->cfg);
	if (text && !(obj = json_loads(text, 0, &jerr))) {
		snprintf(error, sizeof(error), "settings: not valid JSON: %s", jerr.text);
		goto invalid;
	}
	json_object_foreach(obj, key, value)
	{
		const bf_knob *knob = bf_knob_find(key);
		size_t f = 0, nfields = sizeof(job_knob_fields) / sizeof(job_knob_fields[0]);

		while (knob && f < nfields && strcmp(job_knob_fields[f].name, key) != 0)
			f++;
		if (!knob || f == nfields) {
			snprintf(
				error, sizeof(error),
				"settings: unknown knob \"%s\" (batch_size is a column of its own; "
				"see backfillctl set)",
				key);
			goto invalid;
		}
		long long v;

		if (json_is_boolean(value) && knob->min == 0 && knob->max == 1) {
			v = json_is_true(value); /* {"wait_for_replay": true} */
		} else if (!json_is_integer(value)) {
			snprintf(error, sizeof(error), "settings: %s must be an integer", key);
			goto invalid;
		} else {
			v = json_integer_value(value);
		}

		if (bf_knob_check(knob, v, error, sizeof(error)) != 0)
			goto invalid;
		*(long long *)((char *)&k + job_knob_fields[f].offset) = v;
	}
	json_decref(obj);
	obj = NULL;
	if (job_knobs_check(&k, error, sizeof(error)) != 0)
		goto invalid;

	bf_batch_size_bounds(&job->batch_size, (int)k.batch_size_min, (int)k.batch_size_max,
			     (int)k.batch_target_ms);
	if (batch_size_column > 0 && batch_size_column != job->batch_size_column)
		bf_batch_size_set(&job->batch_size, batch_size_column);
	job->batch_size_column = batch_size_column;
	bf_rate_set(&job->rate, k.max_rows_per_s);
	job->limits.replay_lag_high_bytes = k.replay_lag_high_bytes;
	job->limits.replay_lag_low_bytes = k.replay_lag_low_bytes;
	job->limits.replay_lag_high_ms = k.replay_lag_high_ms;
	job->limits.replay_lag_low_ms = k.replay_lag_low_ms;
	job->limits.slot_lag_high_bytes = k.slot_lag_high_bytes;
	job->limits.slot_lag_low_bytes = k.slot_lag_low_bytes;
	job->lock_wait_max_ms = (int)k.lock_wait_max_ms;
	job->wait_for_replay = (int)k.wait_for_replay;
	job->replay_wait_timeout_ms = (int)k.replay_wait_timeout_ms;
	if (k.lock_timeout_ms != job->lock_timeout_ms ||
	    k.statement_timeout_ms != job->statement_timeout_ms) {
		job_session_timeouts(job, (int)k.lock_timeout_ms, (int)k.statement_timeout_ms);
		job->session_stale = 1;
	}
	replace_str(&job->settings_text, text);
	job_log(job, BF_LOG_DEBUG,
		"settings applied: batch size %d (bounds %lld..%lld, target %lld ms), "
		"max_rows_per_s %lld, lock_wait_max_ms %lld, lock_timeout_ms %lld, "
		"statement_timeout_ms %lld, wait_for_replay %lld",
		bf_batch_size_get(&job->batch_size), k.batch_size_min, k.batch_size_max,
		k.batch_target_ms, k.max_rows_per_s, k.lock_wait_max_ms, k.lock_timeout_ms,
		k.statement_timeout_ms, k.wait_for_replay);
	return 0;

invalid:
	json_decref(obj);
	job_log(job, BF_LOG_ERROR, "%s", error);
	job->synced = 1; /* the row was read: finish from it */
	job_finish(job, "failed", error);
	return -1;
}

/* One (time, rows) point for the rate. */
static void job_sample(bf_job *job)
{
	int n = (int)(sizeof(job->samples) / sizeof(job->samples[0]));

	job->samples[job->sample_next].t_ns = uv_hrtime();
	job->samples[job->sample_next].rows = job->rows_scanned;
	job->sample_next = (job->sample_next + 1) % n;
	if (job->nsamples < n)
		job->nsamples++;
}

/* ---- sync: the row is the truth ---- */

static void job_synced(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "reading the job row");
		return;
	}
	if (PQntuples(r->res) == 0) {
		job_log(job, BF_LOG_WARNING, "the job row was deleted; dropping the job");
		job_close(job);
		return;
	}
	const PGresult *res = r->res;
	const char *state = PQgetvalue(res, 0, 0);
	const char *owner = col(res, 0, 1);
	int64_t epoch = col_int(res, 0, 2, -1);

	if (!owner || strcmp(owner, job->owner) != 0 || epoch != job->lease_epoch) {
		job_log(job, BF_LOG_WARNING,
			"lease lost: the job is now owned by %s (lease epoch %" PRId64
			", ours was %" PRId64 "); dropping it",
			owner ? owner : "nobody", epoch, job->lease_epoch);
		job_close(job);
		return;
	}
	if (strcmp(state, "running") != 0) {
		job_log(job, BF_LOG_NOTICE, "state changed to %s; stopping before the next batch",
			state);
		job->stop_requested = 1;
		job_release(job);
		return;
	}
	replace_str(&job->checkpoint, col(res, 0, 3));
	replace_str(&job->upper_bound, col(res, 0, 4));
	job->batches = col_int(res, 0, 5, 0);
	job->rows_scanned = col_int(res, 0, 6, 0);
	job->rows_updated = col_int(res, 0, 7, 0);
	job->rows_estimate = col_int(res, 0, 8, -1);
	/* Only ever to pause (fail closed): a sync whose snapshot predates a
	 * pause --all must not lift it; the listener's reads and
	 * notifications do that. */
	if (strcmp(PQgetvalue(res, 0, 11), "t") == 0)
		bf_engine_set_paused(job->engine, 1);
	if (job_apply_settings(job, col(res, 0, 9), (int)col_int(res, 0, 10, 0)) != 0)
		return;
	job->synced = 1;
	if (job->nsamples == 0)
		job_sample(job);
	job_step(job);
}

static void job_sync(bf_job *job)
{
	static const char sql[] =
		"SELECT state, owner, lease_epoch, checkpoint, upper_bound, batches,\n"
		"       rows_scanned, rows_updated, rows_estimate, settings, batch_size,\n"
		"       coalesce((SELECT paused FROM backfill.control), false)\n"
		"FROM backfill.jobs WHERE id = $1";
	job_params p;

	job_params_fence(job, &p);
	job_send(job, "reading the job row", sql, 1, p.values, job_synced);
}

/* ---- resolve: the table and its key columns ---- */

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
	job->resolved = 1;

	bf_strbuf keys;

	bf_strbuf_init(&keys);
	for (int i = 0; i < job->table.nkeys; i++)
		bf_strbuf_printf(&keys, "%s%s %s", i ? ", " : "", job->table.key_names[i],
				 job->table.key_types[i]);
	job_log(job, BF_LOG_INFO, "walking %s by (%s)", job->table.quoted,
		keys.data ? keys.data : "");
	bf_strbuf_free(&keys);
	job_succeeded_step(job);
	job_step(job);
}

static void job_resolve(bf_job *job)
{
	const char *params[2] = {job->table_name, job->key_columns};

	job_send(job, "resolving the table", bf_resolve_sql, 2, params, job_resolved);
}

/* ---- the upper bound, fixed once per job ---- */

static void job_bound_fixed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(
			job, r,
			"fixing the upper bound of the walk (key columns must be sortable)");
		return;
	}
	if (PQntuples(r->res) == 0) {
		job->synced = 0; /* fenced out: the row decides */
		job_step(job);
		return;
	}
	replace_str(&job->upper_bound, col(r->res, 0, 0));
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

static void job_fix_bound(bf_job *job)
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
	bf_strbuf_printf(
		&sb,
		"UPDATE backfill.jobs SET upper_bound = coalesce((%s), '{}'), rows_estimate = $4\n"
		"WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND state = 'running'\n"
		"RETURNING upper_bound",
		upper);
	free(upper);
	char *sql = bf_strbuf_finish(&sb);

	if (!sql) {
		job_retry_later(job);
		return;
	}
	job_params_fence(job, &p);
	fmt_int(estimate, sizeof(estimate), job->rows_estimate);
	p.values[3] = job->rows_estimate >= 0 ? estimate : NULL;
	job_send(job, "fixing the upper bound", sql, 4, p.values, job_bound_fixed);
	free(sql);
}

/* ---- batches ---- */

/* The batch scanned `scanned` of the rows it reserved: give back the rest. */
static void job_rates_settle(bf_job *job, int64_t scanned)
{
	if (job->reserved)
		bf_rate_settle(&job->rate, job->reserved, scanned);
	/* A turn claimed but never used is given back too. */
	if (job->overall_reserved)
		bf_rate_settle(bf_engine_rate(job->engine), job->overall_reserved, scanned);
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

static void job_batch_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;
	double busy_ms = (double)(uv_hrtime() - job->query_started_ns) / 1e6;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "batch");
		return;
	}
	const PGresult *res = r->res;
	int64_t page = col_int(res, 0, 1, 0);
	int64_t done = col_int(res, 0, 2, 0);
	int64_t updated = col_int(res, 0, 3, 0);

	job_rates_settle(job, done);
	job->batches = col_int(res, 0, 4, job->batches);
	if (col(res, 0, 5))
		replace_str(&job->checkpoint, col(res, 0, 5));
	job->rows_scanned = col_int(res, 0, 6, job->rows_scanned);
	job->rows_updated = col_int(res, 0, 7, job->rows_updated);
	/* Where the WAL stood after our work: until a sample taken after it,
	 * every job counts it on top of the sampled lags (job_hold). */
	if (PQnfields(res) > 8)
		bf_sampler_note_lsn(bf_engine_sampler(job->engine), bf_lsn_parse(col(res, 0, 8)));
	int64_t waiters = PQnfields(res) > 9 ? col_int(res, 0, 9, 0) : 0;

	job_log(job, BF_LOG_DEBUG,
		"batch %" PRId64 ": %" PRId64 " rows scanned, %" PRId64
		" updated in %.1f ms, checkpoint %s%s",
		job->batches, done, updated, busy_ms, job->checkpoint ? job->checkpoint : "-",
		waiters > 0 ? ", sessions waited on it" : "");

	if (done > 0 && job->wait_for_replay) {
		/* Strict mode: the next batch waits until this one is on the
		 * standbys (the poll takes the WAL position after our commit). */
		job->replay_waiting = 1;
		job->replay_target = 0;
		job->replay_since_ns = uv_hrtime();
		bf_sampler_replay_wanted(bf_engine_sampler(job->engine));
	}
	if (done < page) {
		/* Cut: a row changed between the snapshot and its lock. The
		 * next batch locks it in its first statement, so it gets
		 * through; a cut right at the first row is retried after a
		 * pause, so that a row changing that often is not spun on. */
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

static void job_batch(bf_job *job)
{
	int limit = bf_batch_size_get(&job->batch_size);
	char *upper = bf_pg_escape_literal(&job->pg, job->upper_bound);
	char *lower = job->checkpoint ? bf_pg_escape_literal(&job->pg, job->checkpoint) : NULL;
	char *owner = bf_pg_escape_literal(&job->pg, job->owner);
	char *sql = NULL;

	/* Two statements in one round trip and one implicit transaction: the
	 * simple query protocol takes no parameters, so the values are
	 * literals, escaped by libpq for this connection. */
	if (upper && owner && (lower || !job->checkpoint)) {
		bf_batch_args args = {
			.upper = upper,
			.lower = lower,
			.owner = owner,
			.lease_epoch = job->lease_epoch,
			.job_id = job->id,
			.batches = job->batches,
			.limit = limit,
		};
		sql = bf_keyset_batch_sql(&job->walk, &args);
	}
	free(upper);
	free(lower);
	free(owner);
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
		bf_sampler_batch_started(bf_engine_sampler(job->engine));
	}
}

/* ---- verification ---- */

static void job_verified_chunk(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;
	char error[1024];

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "verification");
		return;
	}
	int64_t matching = col_int(r->res, 0, 0, 0);
	int64_t scanned = col_int(r->res, 0, 1, 0);

	job->verify_matching += matching;
	if (col(r->res, 0, 2))
		replace_str(&job->verify_checkpoint, col(r->res, 0, 2));
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
	job_finish(job, "failed", error);
}

static void job_verify(bf_job *job)
{
	if (!job->where_clause || strcmp(job->upper_bound, "{}") == 0) {
		/* Nothing can still match: every row was in a committed batch. */
		job_finish(job, "succeeded", NULL);
		return;
	}
	if (!job->verify_started) {
		job->verify_started = 1;
		job->verify_matching = 0;
		replace_str(&job->verify_checkpoint, NULL);
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

/* ---- reload ---- */

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

static void job_refresh_session(bf_job *job)
{
	char sql[768];

	/* The job's own timeouts, which may differ from the configuration's. */
	bf_engine_batch_session_sql(sql, sizeof(sql), job->cfg, job->lock_timeout_ms,
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

/* ---- cancelling the batch in flight ---- */

/* Which cancel a reply is for: the job may be gone by then. */
typedef struct job_cancel {
	bf_engine *engine;
	int64_t id;
	int64_t batches; /* the batch it was for */
} job_cancel;

static void job_cancel_sent(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	job_cancel *c = arg;
	bf_job *job = bf_engine_find_job(c->engine, c->id);
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
	*c = (job_cancel){job->engine, job->id, job->batches};
	job->cancel_requested = 1;
	snprintf(pid, sizeof(pid), "%d", job->pg.backend_pid);
	snprintf(xact_start, sizeof(xact_start), "%" PRId64, xact_start_us);
	job_log(job, BF_LOG_NOTICE, "cancelling the batch in flight (backend pid %s)", pid);
	bf_monitor_query_first(bf_engine_monitor(job->engine),
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

/* ---- throttling ---- */

/* Judges a sample against the job's limits; the log gets the holds that
 * start and end, never a line per sample. ahead: the WAL our batches wrote
 * since the sample, counted on top of its byte lags before a batch. */
static void job_judge(bf_job *job, const bf_sample *sample, int64_t ahead)
{
	bf_throttle_change changes[8];
	int nchanges = 0;
	const bf_config *cfg = job->cfg;

	/* The configuration may have been reloaded (its strings replaced). */
	job->limits.expected_standbys = cfg->throttle_expected_standbys;
	job->limits.slots = (bf_slot_mode)cfg->throttle_logical_slots;
	/* Several intervals without a sample: sampling stalled, fail closed. */
	job->limits.stale_ms = 3LL * cfg->throttle_sample_interval_ms + 5000;
	if (sample->taken_ns < job->started_ns) {
		/* Sampling idles while a daemon has no jobs; the engine asked
		 * for a fresh sample when this one was claimed. Not a hold
		 * worth a log line: it lasts one query. */
		snprintf(job->signals[0], sizeof(job->signals[0]),
			 "replication: waiting for the first sample");
		job->nsignals = 1;
		job->nestimated = 0;
		return;
	}
	job->nsignals = bf_throttle_eval(sample, &job->limits, &job->holds, uv_hrtime(), ahead,
					 job->signals,
					 (int)(sizeof(job->signals) / sizeof(job->signals[0])),
					 &job->nestimated, changes, 8, &nchanges);
	for (int i = 0; i < nchanges; i++) {
		if (changes[i].started)
			job_log(job, BF_LOG_NOTICE, "throttled: %s", changes[i].reason);
		else
			job_log(job, BF_LOG_NOTICE, "throttle ended: %s, after %.1f s",
				changes[i].key, changes[i].held_s);
	}
}

void bf_job_on_sample(bf_job *job, const bf_sample *sample)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	/* The sample as it is: a job that would start a batch now adds what
	 * was written since (job_hold). */
	job_judge(job, sample, 0);
	if (job->phase == BF_JOB_WAITING && job->held) {
		/* Held by the signals (or a rate, a window): look again now. */
		uv_timer_stop(&job->timer);
		job_step(job);
	}
}

/* Whether every standby that counts has replayed up to target; if not,
 * the first one behind goes into behind. */
static int job_replayed(const bf_job *job, const bf_sample *poll, uint64_t target, char *behind,
			size_t len)
{
	const char *list = job->cfg->throttle_expected_standbys;

	if (list && *list) {
		for (const char *p = list; *p;) {
			size_t n = strcspn(p, ",");
			int ok = 0;

			for (int i = 0; i < poll->nstandbys; i++)
				if (strlen(poll->standbys[i].name) == n &&
				    strncmp(poll->standbys[i].name, p, n) == 0 &&
				    poll->standbys[i].replay_lsn >= target)
					ok = 1;
			if (!ok) {
				snprintf(behind, len, "%.*s", (int)n, p);
				return 0;
			}
			p += n + (p[n] == ',');
		}
		return 1;
	}
	/* None expected: every standby streaming now. */
	for (int i = 0; i < poll->nstandbys; i++) {
		if (strcmp(poll->standbys[i].state, "streaming") == 0 &&
		    poll->standbys[i].replay_lsn < target) {
			snprintf(behind, len, "%s", poll->standbys[i].name);
			return 0;
		}
	}
	return 1;
}

void bf_job_on_replay(bf_job *job, const bf_sample *poll)
{
	char behind[64];

	if (!job->replay_waiting || job->phase == BF_JOB_CLOSING || poll->error[0])
		return;
	if (!job->replay_target) {
		/* Only a poll asked after our commit is at or past its WAL
		 * position; one already in flight may predate it. */
		if (poll->asked_ns > job->replay_since_ns)
			job->replay_target = poll->current_lsn;
		return;
	}
	if (!job_replayed(job, poll, job->replay_target, behind, sizeof(behind))) {
		if (job->phase == BF_JOB_WAITING && job->replay_wait_active)
			snprintf(job->wait_reason, sizeof(job->wait_reason),
				 "wait_for_replay: standby %s has not replayed batch %" PRId64
				 " (WAL %X/%X) yet",
				 behind, job->batches, (unsigned)(job->replay_target >> 32),
				 (unsigned)job->replay_target);
		return;
	}
	job->replay_waiting = 0;
	if (job->phase == BF_JOB_WAITING && job->replay_wait_active) {
		uv_timer_stop(&job->timer);
		job_step(job);
	}
}

/* Strict mode: waits (bounded) until the last batch is on the standbys.
 * Returns 1 when the job waits. */
static int job_wait_replay(bf_job *job)
{
	uint64_t waited_ms = (uv_hrtime() - job->replay_since_ns) / 1000000;
	char reason[sizeof(job->wait_reason)];

	if (waited_ms >= (uint64_t)job->replay_wait_timeout_ms) {
		job_log(job, BF_LOG_WARNING,
			"wait_for_replay: the standbys did not replay batch %" PRId64
			" within %d ms; continuing under the lag marks",
			job->batches, job->replay_wait_timeout_ms);
		job->replay_waiting = 0;
		return 0;
	}
	snprintf(reason, sizeof(reason),
		 "wait_for_replay: waiting for the standbys to replay batch %" PRId64,
		 job->batches);
	job_wait_for(job, (uint64_t)job->replay_wait_timeout_ms - waited_ms, reason);
	job->replay_wait_active = 1;
	bf_sampler_replay_wanted(bf_engine_sampler(job->engine));
	return 1;
}

/* Everything that holds the job's next batch (batches != 0) or its next
 * verification step back now. Waits and returns 1 if anything does:
 * status lists every reason, not only the first. */
static int job_hold(bf_job *job, int batches)
{
	char text[BF_THROTTLE_REASON_LEN];
	uint64_t now = uv_hrtime(), wait_ms = UINT64_MAX, w;
	int n = 0;
	const int max = (int)(sizeof(job->hold_reasons) / sizeof(job->hold_reasons[0]));

#define HOLD(ms, ...)                                                                              \
	do {                                                                                       \
		if (n < max)                                                                       \
			snprintf(job->hold_reasons[n++], BF_THROTTLE_REASON_LEN, __VA_ARGS__);     \
		if ((ms) < wait_ms)                                                                \
			wait_ms = (ms);                                                            \
	} while (0)

	if ((w = bf_engine_window_wait(job->engine, text, sizeof(text))) > 0) {
		HOLD(w, "%s", text);
		if (!job->window_held)
			job_log(job, BF_LOG_NOTICE, "throttled: %s", text);
		job->window_held = 1;
	} else if (job->window_held) {
		job_log(job, BF_LOG_NOTICE, "throttle ended: window");
		job->window_held = 0;
	}
	if (batches) {
		bf_rate *overall = bf_engine_rate(job->engine);

		if ((w = bf_rate_wait_ns(&job->rate, now)) > 0)
			HOLD(w / 1000000 + 1, "max_rows_per_s: at the limit of %" PRId64 " rows/s",
			     job->rate.rows_per_s);
		if (overall->rows_per_s && !job->overall_slot_ns) {
			job->overall_reserved = bf_batch_size_get(&job->batch_size);
			job->overall_slot_ns = bf_rate_claim(overall, now, job->overall_reserved);
		}
		if (overall->rows_per_s && job->overall_slot_ns > now)
			HOLD((job->overall_slot_ns - now) / 1000000 + 1,
			     "overall max_rows_per_s: at the limit of %" PRId64
			     " rows/s for every job of this daemon",
			     overall->rows_per_s);
		bf_sampler *sampler = bf_engine_sampler(job->engine);

		/* A sample is up to an interval old, and a batch may write tens
		 * of MB in a fraction of one: the byte lags count the WAL
		 * written since. */
		job_judge(job, &sampler->sample,
			  bf_throttle_ahead(&sampler->sample, sampler->written_lsn));
		for (int i = 0; i < job->nsignals; i++)
			/* A new sample wakes the job sooner (bf_job_on_sample). */
			HOLD(2ULL * (uint64_t)job->cfg->throttle_sample_interval_ms, "%s",
			     job->signals[i]);
		if (job->nestimated) {
			/* Not a throttle (no "throttled:", no hysteresis): the
			 * fresh sample, judged as usual, decides. */
			job_log(job, BF_LOG_DEBUG, "waiting for a fresh sample: %s",
				job->signals[job->nsignals - job->nestimated]);
			bf_sampler_sample_now(sampler);
		}
	}
#undef HOLD
	if (n == 0)
		return 0;
	job_wait_for(job, wait_ms, job->hold_reasons[0]);
	job->nhold_reasons = n;
	job->held = 1;
	return 1;
}

/* ---- status ---- */

double bf_job_rate(const bf_job *job, uint64_t now_ns)
{
	const uint64_t window = 60ULL * 1000000000ULL;
	int n = (int)(sizeof(job->samples) / sizeof(job->samples[0]));
	int oldest = -1;

	/* The oldest sample within the last minute, else the newest before
	 * it: the rate spans at least one batch and decays while nothing
	 * moves. */
	for (int k = 0; k < job->nsamples; k++) {
		int i = (job->sample_next - 1 - k + n) % n;

		oldest = i;
		if (now_ns - job->samples[i].t_ns > window)
			break;
	}
	if (oldest < 0 || now_ns <= job->samples[oldest].t_ns)
		return 0;
	double dt = (double)(now_ns - job->samples[oldest].t_ns) / 1e9;

	return dt > 0 ? (double)(job->rows_scanned - job->samples[oldest].rows) / dt : 0;
}

double bf_job_throttled_s(const bf_job *job, uint64_t now_ns)
{
	uint64_t total = job->throttled_total_ns;

	if (job->throttled_since_ns)
		total += now_ns - job->throttled_since_ns;
	return (double)total / 1e9;
}

int bf_job_throttle_reasons(const bf_job *job, char **reasons, int max)
{
	int n = 0;

	if (n < max && bf_engine_paused(job->engine) && !strstr(job->wait_reason, "pause --all"))
		reasons[n++] = strdup("paused: every job is held by backfillctl pause --all");
	if (job->phase == BF_JOB_WAITING && job->held) {
		/* Every reason of the hold: windows, rates, signals. */
		for (int i = 0; i < job->nhold_reasons && n < max; i++)
			if (!strstr(job->hold_reasons[i], "pause --all"))
				reasons[n++] = strdup(job->hold_reasons[i]);
	} else {
		/* A batch or a backoff is under way: the signals that will
		 * hold the next batch. */
		for (int i = 0; i < job->nsignals && n < max; i++)
			reasons[n++] = strdup(job->signals[i]);
	}
	if (n < max && job->phase == BF_JOB_WAITING && job->wait_reason[0] && !job->held) {
		char text[sizeof(job->wait_reason) + 64];
		uint64_t now = uv_hrtime();

		if (job->wake_ns > now)
			snprintf(text, sizeof(text), "%s (next try in %.1f s)", job->wait_reason,
				 (double)(job->wake_ns - now) / 1e9);
		else
			snprintf(text, sizeof(text), "%s", job->wait_reason);
		reasons[n++] = strdup(text);
	}
	if (n < max && job->phase == BF_JOB_CONNECTING) {
		char text[600];

		snprintf(text, sizeof(text), "database: %s",
			 job->pg.last_error[0] ? job->pg.last_error : "connecting");
		reasons[n++] = strdup(text);
	}
	/* strdup may fail: drop the holes. */
	int kept = 0;

	for (int i = 0; i < n; i++)
		if (reasons[i])
			reasons[kept++] = reasons[i];
	return kept;
}

const char *bf_job_phase_name(const bf_job *job)
{
	switch (job->phase) {
	case BF_JOB_CONNECTING:
		return "connecting";
	case BF_JOB_QUERY:
		return job->activity ? job->activity : "query";
	case BF_JOB_WAITING:
		return job->wait_reason[0] ? "held" : "waiting";
	case BF_JOB_CLOSING:
		return "closing";
	}
	return "unknown";
}

/* ---- the driver ---- */

static void job_step(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	if (!bf_pg_is_ready(&job->pg)) {
		/* Stopping without a connection: the lease expires by itself,
		 * and the engine releases what it can on its own connection. */
		if (job->stop_requested)
			job_close(job);
		else
			job->phase = BF_JOB_CONNECTING;
		return;
	}
	if (job->stop_requested) {
		job_release(job);
		return;
	}
	if (!job->synced) {
		/* Verification restarts from its beginning after a failure: it
		 * is read-only and cheap next to the walk. */
		job->verify_started = 0;
		job->finishing = 0;
		job_sync(job);
	} else if (job->definition_error) {
		job_finish(job, "failed", job->definition_error);
	} else if (job->session_stale) {
		job_refresh_session(job);
	} else if (bf_engine_paused(job->engine)) {
		/* pause --all: nothing starts until resume --all (which pokes
		 * us); the poll re-checks in case the notification is lost. */
		job_wait_for(job, (uint64_t)job->cfg->poll_interval_ms,
			     "paused: every job is held by backfillctl pause --all");
	} else if (job->replay_waiting && job_wait_replay(job)) {
		return;
	} else if (!job->resolved) {
		job_resolve(job);
	} else if (!job->upper_bound) {
		job_fix_bound(job);
	} else if (!job->walk_done && strcmp(job->upper_bound, "{}") != 0) {
		if (!job_hold(job, 1))
			job_batch(job);
	} else {
		if (!job_hold(job, 0))
			job_verify(job);
	}
}

static void job_pg_event(bf_pg *pg, int up, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (job->phase == BF_JOB_CLOSING)
		return;
	if (!up) {
		job->synced = 0;
		if (job->stop_requested)
			job_close(job);
		else if (job->phase != BF_JOB_WAITING)
			job->phase = BF_JOB_CONNECTING;
		return;
	}
	job->synced = 0;
	if (job->phase == BF_JOB_CONNECTING)
		job_step(job);
}

/* ---- lifecycle ---- */

static void job_free(bf_job *job)
{
	bf_table_free(&job->table);
	free(job->name);
	free(job->table_name);
	free(job->set_clause);
	free(job->where_clause);
	free(job->statement);
	free(job->key_columns);
	free(job->created_by);
	free(job->checkpoint);
	free(job->upper_bound);
	free(job->verify_checkpoint);
	free(job->definition_error);
	free(job->settings_text);
	free(job);
}

static void job_handle_closed(bf_job *job)
{
	if (--job->closes_pending == 0) {
		bf_engine *engine = job->engine;

		bf_engine_job_closed(engine, job);
		job_free(job);
	}
}

static void job_timer_closed(uv_handle_t *handle)
{
	job_handle_closed(handle->data);
}

static void job_pg_closed(bf_pg *pg, void *arg)
{
	(void)pg;
	job_handle_closed(arg);
}

static void job_close(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	job_rates_settle(job, 0);
	job->phase = BF_JOB_CLOSING;
	job->closes_pending = 2;
	uv_close((uv_handle_t *)&job->timer, job_timer_closed);
	bf_pg_close(&job->pg, job_pg_closed, job);
}

bf_job *bf_job_start(bf_engine *engine, const bf_config *cfg, const char *owner,
		     const bf_job_def *def)
{
	bf_job *job = calloc(1, sizeof(*job));
	char app[64], init_sql[768], pgname[300];

	if (!job)
		return NULL;
	job->engine = engine;
	job->cfg = cfg;
	job->owner = owner;
	job->id = def->id;
	job->lease_epoch = def->lease_epoch;
	job->name = strdup(def->name);
	job->table_name = strdup(def->table_name);
	job->kind = strcmp(def->kind, "sql") == 0 ? BF_KIND_SQL : BF_KIND_UPDATE;
	job->set_clause = bf_clause_dup(def->set_clause);
	job->where_clause = bf_clause_dup(def->where_clause);
	job->statement = bf_clause_dup(def->statement);
	job->key_columns = dup_or_null(def->key_columns);
	job->created_by = dup_or_null(def->created_by);
	job->allow_triggers = def->allow_triggers;
	job->rows_estimate = -1;
	job->started_ns = uv_hrtime();
	job->definition_error =
		bf_definition_check(job->kind, job->set_clause, job->where_clause, job->statement);
	if (!job->name || !job->table_name) {
		job_free(job);
		return NULL;
	}
	bf_batch_size_init(&job->batch_size,
			   def->batch_size > 0 ? def->batch_size : cfg->batch_size,
			   cfg->batch_size_min, cfg->batch_size_max, cfg->batch_target_ms);
	bf_rate_init(&job->rate, 0);
	job->lock_wait_max_ms = cfg->throttle_lock_wait_max_ms;
	job->lock_timeout_ms = cfg->lock_timeout_ms;
	job->statement_timeout_ms = cfg->statement_timeout_ms;
	job->replay_wait_timeout_ms = cfg->throttle_replay_wait_timeout_ms;
	bf_backoff_init(&job->retry, (uint64_t)cfg->retry_initial_ms, (uint64_t)cfg->retry_max_ms,
			(uint64_t)def->id * 0x9e3779b97f4a7c15ULL ^ uv_hrtime());

	/* Every batch connection carries its own limits (see the engine). */
	bf_engine_session_sql(init_sql, sizeof(init_sql), cfg, 1);
	snprintf(app, sizeof(app), "backfilld job %s", def->name);
	snprintf(pgname, sizeof(pgname), "job \"%s\" connection", def->name);

	bf_pg_options opts = {
		.name = pgname,
		.conninfo = cfg->conninfo,
		.application_name = app,
		.init_sql = init_sql,
		.connect_timeout_ms = cfg->connect_timeout_ms,
		/* A batch is two statements, each bounded by statement_timeout
		 * on the server; past that and a margin, the server is gone. */
		.server_timeout_ms = 2 * cfg->statement_timeout_ms,
		.lease_s = cfg->lease_s,
		.backoff_initial_ms = cfg->retry_initial_ms,
		.backoff_max_ms = cfg->retry_max_ms,
		.on_event = job_pg_event,
		.arg = job,
	};
	if (uv_timer_init(bf_engine_loop(engine), &job->timer) != 0) {
		job_free(job);
		return NULL;
	}
	job->timer.data = job;
	if (bf_pg_init(&job->pg, bf_engine_loop(engine), &opts) != 0) {
		/* The timer is initialized: it must go through uv_close. */
		job->phase = BF_JOB_CLOSING;
		job->closes_pending = 1;
		uv_close((uv_handle_t *)&job->timer, job_timer_closed);
		return NULL;
	}
	job->phase = BF_JOB_CONNECTING;
	job_log(job, BF_LOG_NOTICE, "claimed (lease epoch %" PRId64 "): %s %s", job->lease_epoch,
		def->kind, job->table_name);
	bf_pg_start(&job->pg);
	return job;
}

void bf_job_poke(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	job->synced = 0;
	if (job->phase == BF_JOB_WAITING) {
		uv_timer_stop(&job->timer);
		job_step(job);
	}
}

void bf_job_stop(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	job->stop_requested = 1;
	switch (job->phase) {
	case BF_JOB_QUERY:
		/* The batch in flight commits or rolls back; then we release. */
		break;
	case BF_JOB_WAITING:
		uv_timer_stop(&job->timer);
		job_step(job);
		break;
	case BF_JOB_CONNECTING:
		/* No connection to release on: the lease expires by itself (and
		 * the engine releases what it still can on its own connection). */
		job_close(job);
		break;
	case BF_JOB_CLOSING:
		break;
	}
}

void bf_job_abort(bf_job *job)
{
	if (job->phase != BF_JOB_CLOSING)
		job_log(job, BF_LOG_WARNING,
			"shutdown grace over: closing the connection; the server "
			"finishes or rolls back the batch in flight on its own, and the fence lets it "
			"commit at most once");
	job_close(job);
}
