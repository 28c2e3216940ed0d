/* job.c -- one claimed job: its lifecycle and the step driver that walks it, query by query. */
#include <assert.h>

#include "job_int.h"
#include "session.h"
#include "definition.h"
#include "sqltext.h"

void job_params_fence(bf_job *job, job_params *p)
{
	/* The row the lease is on: the slice's, or the job's while setting up. */
	fmt_int(p->id, sizeof(p->id), job->slice_id ? job->slice_id : job->id);
	fmt_int(p->epoch, sizeof(p->epoch), job->lease_epoch);
	p->values[0] = p->id;
	p->values[1] = job->owner;
	p->values[2] = p->epoch;
}

static void job_throttle_end(bf_job *job);

bool bf_job_phase_change_allowed(bf_job_phase from, bf_job_phase to)
{
	(void)to;
	return from != BF_JOB_CLOSING;
}

void job_set_phase(bf_job *job, bf_job_phase to)
{
	assert(bf_job_phase_change_allowed(job->phase, to));
	job->phase = to;
}

void job_set_synced(bf_job *job, bool synced)
{
	/* Only a read of the row makes the job synced, and only while it
	 * still runs. */
	assert(!synced || job->phase != BF_JOB_CLOSING);
	job->synced = synced;
}

void job_send(bf_job *job, const char *activity, const char *sql, int nparams,
		     const char *const *params, bf_pg_query_cb cb)
{
	job_throttle_end(job);
	job->activity = activity;
	job->in_batch = 0;
	job->cancel_requested = 0;
	job->cancel_blocking = 0;
	job_set_phase(job, BF_JOB_QUERY);
	job->query_started_ns = uv_hrtime();
	if (bf_pg_query(&job->pg, sql, nparams, params, cb, job) != 0) {
		/* Not connected after all: the "up" event resumes the walk. */
		job_set_phase(job, BF_JOB_CONNECTING);
	}
}



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
void job_wait_for(bf_job *job, uint64_t delay_ms, const char *reason)
{
	job_throttle_end(job);
	job_set_phase(job, BF_JOB_WAITING);
	if (reason) {
		snprintf(job->wait_reason, sizeof(job->wait_reason), "%s", reason);
		job->throttled_since_ns = uv_hrtime();
	}
	job->wake_ns = uv_hrtime() + delay_ms * 1000000ULL;
	uv_timer_start(&job->timer, job_timer_cb, delay_ms, 0);
}

void job_wait(bf_job *job, uint64_t delay_ms)
{
	job_wait_for(job, delay_ms, NULL);
}

/* Try the current step again after the next backoff delay. */
void job_retry_later(bf_job *job)
{
	job_wait(job, bf_backoff_next(&job->retry));
}


/* ---- the driver ---- */

void job_step(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	if (!bf_pg_is_ready(&job->pg)) {
		/* Stopping without a connection: the lease expires by itself,
		 * and the engine releases what it can on its own connection. */
		if (job->stop_requested)
			job_close(job);
		else
			job_set_phase(job, BF_JOB_CONNECTING);
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
	} else if (job->env.ops->paused(job->env.owner)) {
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
	} else if (!job->pinned_oid) {
		job_pin(job);
	} else if (!job->slice_id) {
		job_split(job);
	} else if (job->row_locked) {
		job_probe_row_lock(job);
	} else if (!job->walk_done && strcmp(job->upper_bound, "{}") != 0) {
		if (!job_hold(job, 1))
			job_batch(job);
	} else if (!job->caught_up && job->last_slice && strcmp(job->upper_bound, "{}") != 0) {
		job_catch_up(job);
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
		job_set_synced(job, false);
		if (job->stop_requested)
			job_close(job);
		else if (job->phase != BF_JOB_WAITING)
			job_set_phase(job, BF_JOB_CONNECTING);
		return;
	}
	job_set_synced(job, false);
	if (job->phase == BF_JOB_CONNECTING)
		job_step(job);
}

/* ---- lifecycle ---- */

/* What the log calls it: the job, and which of its ranges when it has
 * several (one range is the whole job). */
void job_label(bf_job *job)
{
	if (job->slice_id && job->nranges > 1)
		snprintf(job->label, sizeof(job->label), "job \"%s\" slice %d/%d", job->name,
			 job->slice, job->nranges);
	else
		snprintf(job->label, sizeof(job->label), "job \"%s\"", job->name);
}

/* Its connection's application_name: how an operator tells the walks
 * apart in pg_stat_activity. */
void job_application_name(const bf_job *job, char *buf, size_t len)
{
	if (job->slice_id && job->nranges > 1)
		snprintf(buf, len, "backfilld job %s slice %d", job->name, job->slice);
	else
		snprintf(buf, len, "backfilld job %s", job->name);
}

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
	free(job->lower_bound);
	free(job->verify_checkpoint);
	free(job->definition_error);
	free(job->settings_text);
	free(job->pinned_key);
	free(job->narrow_error);
	free(job->finish_error);
	free(job);
}

static void job_handle_closed(bf_job *job)
{
	if (--job->closes_pending == 0) {
		/* A job that failed to start was never its owner's. */
		if (job->started)
			job->env.ops->closed(job->env.owner, job);
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

void job_close(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	job_rates_settle(job, 0);
	job_set_phase(job, BF_JOB_CLOSING);
	job->closes_pending = 2;
	uv_close((uv_handle_t *)&job->timer, job_timer_closed);
	bf_pg_close(&job->pg, job_pg_closed, job);
}

static void job_log_claim(bf_job *job, const char *kind)
{
	if (job->slice_id)
		job_log(job, BF_LOG_NOTICE, "claimed (lease epoch %" PRId64 "): %s %s", job->lease_epoch,
			kind, job->table_name);
	else
		job_log(job, BF_LOG_NOTICE,
			"claimed to set its walk up (lease epoch %" PRId64 "): %s %s, %d slice%s",
			job->lease_epoch, kind, job->table_name, job->slices,
			job->slices == 1 ? "" : "s");
}

bf_job *bf_job_start(const bf_job_env *env, const bf_job_def *def)
{
	bf_job *job = calloc(1, sizeof(*job));
	const bf_config *cfg = env->cfg;
	char app[64], init_sql[768], pgname[300];

	if (!job)
		return NULL;
	job->env = *env;
	job->cfg = cfg;
	job->owner = env->owner_name;
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
	job->slices = def->slices > 0 ? def->slices : cfg->slices;
	job->slice_id = def->slice_id;
	job->slice = def->slice;
	job->nranges = job->nactive = def->nranges > 0 ? def->nranges : 1;
	job->rows_estimate = -1;
	job->started_ns = uv_hrtime();
	job->definition_error =
		bf_definition_check(job->kind, job->set_clause, job->where_clause, job->statement);
	if (!job->name || !job->table_name) {
		job_free(job);
		return NULL;
	}
	job_label(job);
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
	bf_session_sql(init_sql, sizeof(init_sql), cfg, 1);
	job_application_name(job, app, sizeof(app));
	snprintf(pgname, sizeof(pgname), "job \"%s\" connection", def->name);

	bf_pg_options opts =
		bf_session_pg_options(cfg, true, pgname, app, init_sql, job_pg_event, job);

	if (uv_timer_init(env->loop, &job->timer) != 0) {
		job_free(job);
		return NULL;
	}
	job->timer.data = job;
	if (bf_pg_init(&job->pg, env->loop, &opts) != 0) {
		/* The timer is initialized: it must go through uv_close. */
		job_set_phase(job, BF_JOB_CLOSING);
		job->closes_pending = 1;
		uv_close((uv_handle_t *)&job->timer, job_timer_closed);
		return NULL;
	}
	job_set_phase(job, BF_JOB_CONNECTING);
	job_log_claim(job, def->kind);
	job->started = true;
	bf_pg_start(&job->pg);
	return job;
}

void bf_job_poke(bf_job *job)
{
	if (job->phase == BF_JOB_CLOSING)
		return;
	job_set_synced(job, false);
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

void bf_job_def_read(const PGresult *res, int row, bf_job_def *def)
{
	*def = (bf_job_def){
		.id = bf_cell_int(res, row, BF_DEF_ID, 0),
		.name = bf_cell(res, row, BF_DEF_NAME),
		.table_name = bf_cell(res, row, BF_DEF_TABLE_NAME),
		.kind = bf_cell(res, row, BF_DEF_KIND),
		.set_clause = bf_cell(res, row, BF_DEF_SET_CLAUSE),
		.where_clause = bf_cell(res, row, BF_DEF_WHERE_CLAUSE),
		.statement = bf_cell(res, row, BF_DEF_STATEMENT),
		.key_columns = bf_cell(res, row, BF_DEF_KEY_COLUMNS),
		.batch_size = (int)bf_cell_int(res, row, BF_DEF_BATCH_SIZE, 0),
		.lease_epoch = bf_cell_int(res, row, BF_DEF_LEASE_EPOCH, 0),
		.created_by = bf_cell(res, row, BF_DEF_CREATED_BY),
		.allow_triggers = bf_cell_bool(res, row, BF_DEF_ALLOW_TRIGGERS),
		.slices = (int)bf_cell_int(res, row, BF_DEF_SLICES, 0),
	};
}
