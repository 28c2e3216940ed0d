/* job.c -- one claimed job: sync, resolve, fix the bound, walk in batches, verify, finish.
 *
 * Every step is one query on the job's own connection; the next step is
 * chosen from what is known (job_step). After any failure the job row is
 * re-read before the next batch, so the database, never our memory, says
 * where the walk stands: a batch whose commit we did not see is not redone.
 */
#include "job.h"

#include <inttypes.h>
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

/* Decides what a failed query means for the job. `what` names the step for
 * the log and for last_error ("batch", "resolving the table", ...). */
static void job_query_failed(bf_job *job, const bf_pg_result *r, const char *what)
{
	char error[1024];

	job->synced = 0;
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

/* Applies the row's knobs (backfillctl set): bounds and target now, a
 * changed batch_size column as the size to continue from. A knob the
 * daemon cannot apply fails the job, with the reason, rather than run it
 * with settings the operator did not ask for. Returns -1 when it failed. */
static int job_apply_settings(bf_job *job, const char *text, int batch_size_column)
{
	const bf_config *cfg = job->cfg;
	long long min = cfg->batch_size_min, max = cfg->batch_size_max,
		  target = cfg->batch_target_ms;
	long long rate = 0;
	char error[512];
	json_error_t jerr;
	json_t *obj = NULL, *value;
	const char *key;

	if (text && job->settings_text && strcmp(text, job->settings_text) == 0 &&
	    batch_size_column == job->batch_size_column)
		return 0;
	if (text && !(obj = json_loads(text, 0, &jerr))) {
		snprintf(error, sizeof(error), "settings: not valid JSON: %s", jerr.text);
		goto invalid;
	}
	json_object_foreach(obj, key, value)
	{
		const bf_knob *knob = bf_knob_find(key);

		if (!knob || strcmp(key, "batch_size") == 0) {
			snprintf(
				error, sizeof(error),
				"settings: unknown knob \"%s\" (batch_size is a column of its own; "
				"see backfillctl set)",
				key);
			goto invalid;
		}
		if (!json_is_integer(value)) {
			snprintf(error, sizeof(error), "settings: %s must be an integer", key);
			goto invalid;
		}
		long long v = json_integer_value(value);

		if (bf_knob_check(knob, v, error, sizeof(error)) != 0)
			goto invalid;
		if (strcmp(key, "batch_size_min") == 0)
			min = v;
		else if (strcmp(key, "batch_size_max") == 0)
			max = v;
		else if (strcmp(key, "batch_target_ms") == 0)
			target = v;
		else if (strcmp(key, "max_rows_per_s") == 0)
			rate = v;
	}
	json_decref(obj);
	if (min > max) {
		snprintf(error, sizeof(error),
			 "settings: batch_size_min (%lld) is greater than batch_size_max (%lld)",
			 min, max);
		goto invalid_no_obj;
	}
	bf_batch_size_bounds(&job->batch_size, (int)min, (int)max, (int)target);
	if (batch_size_column > 0 && batch_size_column != job->batch_size_column)
		bf_batch_size_set(&job->batch_size, batch_size_column);
	job->batch_size_column = batch_size_column;
	job->max_rows_per_s = rate;
	if (!rate)
		job->rate_next_ns = 0;
	replace_str(&job->settings_text, text);
	job_log(job, BF_LOG_DEBUG,
		"settings applied: batch size %d (bounds %lld..%lld, target %lld ms), "
		"max_rows_per_s %lld",
		bf_batch_size_get(&job->batch_size), min, max, target, rate);
	return 0;

invalid:
	json_decref(obj);
invalid_no_obj:
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

	job->batches = col_int(res, 0, 4, job->batches);
	if (col(res, 0, 5))
		replace_str(&job->checkpoint, col(res, 0, 5));
	job->rows_scanned = col_int(res, 0, 6, job->rows_scanned);
	job->rows_updated = col_int(res, 0, 7, job->rows_updated);
	job_log(job, BF_LOG_DEBUG,
		"batch %" PRId64 ": %" PRId64 " rows scanned, %" PRId64
		" updated in %.1f ms, checkpoint %s",
		job->batches, done, updated, busy_ms, job->checkpoint ? job->checkpoint : "-");

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
		job_succeeded_step(job);
		job_step(job);
		return;
	}
	job->cuts = 0;
	job_succeeded_step(job);
	job_sample(job);
	if (job->max_rows_per_s > 0) {
		/* Paced from the batch's start: a batch that took longer than
		 * its share of the rate is not followed by a wait. */
		uint64_t share = (uint64_t)((double)done * 1e9 / (double)job->max_rows_per_s);
		uint64_t from = job->rate_next_ns > job->query_started_ns ? job->rate_next_ns
									  : job->query_started_ns;

		job->rate_next_ns = from + share;
	}
	/* Fewer rows than asked for: nothing is left up to the bound. */
	if (page < job->batch_limit) {
		job->walk_done = 1;
		job_log_progress(job, 1);
		job_log(job, BF_LOG_INFO, "walk complete at checkpoint %s",
			job->checkpoint ? job->checkpoint : "(none: no rows)");
	} else {
		bf_batch_size_observe(&job->batch_size, (int)page, busy_ms);
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

	bf_engine_session_sql(sql, sizeof(sql), job->cfg, 1);
	job_send(job, "applying reloaded settings", sql, 0, NULL, job_session_refreshed);
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
	/* Now on this connection, and after every reconnect. */
	char sql[768];

	bf_engine_session_sql(sql, sizeof(sql), job->cfg, 1);
	bf_pg_reconfigure(&job->pg, sql,
			  2 * job->cfg->statement_timeout_ms + BF_QUERY_DEADLINE_MARGIN_MS);
	job->session_stale = 1;
	bf_job_poke(job);
}

/* ---- cancelling the batch in flight ---- */

static void job_cancel_sent(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	(void)pg;
	(void)arg;
	if (!r->ok)
		bf_warning("could not cancel a batch in flight: %s; it finishes or is fenced out",
			   r->message);
}

void bf_job_cancel_batch(bf_job *job)
{
	char pid[16];
	const char *params[1] = {pid};

	if (job->phase != BF_JOB_QUERY || !job->in_batch || job->cancel_requested)
		return;
	/* The fence already keeps a paused job's batch from committing; the
	 * cancel only spares waiting for it. The cancel runs later, from the
	 * monitor's queue: only an active batch is hit (its text starts with
	 * the lock statement), never the re-read or the lease release that may
	 * follow it by then. */
	job->cancel_requested = 1;
	snprintf(pid, sizeof(pid), "%d", job->pg.backend_pid);
	job_log(job, BF_LOG_NOTICE, "cancelling the batch in flight (backend pid %s)", pid);
	bf_monitor_query(bf_engine_monitor(job->engine),
			 "SELECT pg_cancel_backend(pid) FROM pg_stat_activity\n"
			 "WHERE pid = $1 AND state = 'active'\n"
			 "  AND left(query, 29) = 'SELECT count(*) FROM (SELECT '",
			 1, params, job_cancel_sent, NULL);
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
	if (n < max && job->phase == BF_JOB_WAITING && job->wait_reason[0]) {
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
	uint64_t now;

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
	} else if (job->max_rows_per_s > 0 && job->rate_next_ns > (now = uv_hrtime()) &&
		   !job->walk_done) {
		char reason[128];

		snprintf(reason, sizeof(reason),
			 "max_rows_per_s: at the limit of %" PRId64 " rows/s", job->max_rows_per_s);
		job_wait_for(job, (job->rate_next_ns - now) / 1000000 + 1, reason);
	} else if (!job->resolved) {
		job_resolve(job);
	} else if (!job->upper_bound) {
		job_fix_bound(job);
	} else if (!job->walk_done && strcmp(job->upper_bound, "{}") != 0) {
		job_batch(job);
	} else {
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
		.query_timeout_ms = 2 * cfg->statement_timeout_ms + BF_QUERY_DEADLINE_MARGIN_MS,
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
