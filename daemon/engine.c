/* engine.c -- the scheduler: schema, LISTEN, claims, lease renewal, shutdown. */
#include "engine.h"

#include "claims.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pgcell.h"
#include "session.h"
#include "schema.h"
#include "strbuf.h"

static void engine_session_applied(bf_pg *pg, const bf_pg_result *r, void *arg);

uv_loop_t *bf_engine_loop(bf_engine *engine)
{
	return engine->loop;
}

/* ---- what a job needs of the engine (bf_job_ops) ---- */

static uint64_t engine_window_wait(void *owner, char *reason, size_t len)
{
	bf_engine *engine = owner;
	time_t now = time(NULL);
	struct tm local;

	if (engine->windows.n == 0 || !localtime_r(&now, &local))
		return 0;
	int minute = local.tm_hour * 60 + local.tm_min;
	int wait = bf_windows_wait_minutes(&engine->windows, minute);

	if (wait == 0)
		return 0;
	snprintf(reason, len,
		 "window: outside the allowed windows %s (local time %02d:%02d; the next opens in "
		 "%dh%02dm)",
		 engine->windows.text, local.tm_hour, local.tm_min, wait / 60, wait % 60);
	/* Look again at the start of the next minute. */
	return (uint64_t)(60 - (local.tm_sec > 59 ? 59 : local.tm_sec)) * 1000;
}

struct bf_monitor *bf_engine_monitor(bf_engine *engine)
{
	return &engine->monitor;
}

int bf_engine_paused(const bf_engine *engine)
{
	return engine->paused;
}

static bool engine_job_paused(void *owner)
{
	return bf_engine_paused(owner);
}

static void engine_job_set_paused(void *owner, bool paused)
{
	bf_engine_set_paused(owner, paused);
}

static bf_job *engine_job_find(void *owner, int64_t id, int64_t slice_id)
{
	return bf_engine_find_job(owner, id, slice_id);
}

void bf_engine_set_paused(bf_engine *engine, int paused)
{
	if (engine->paused == !!paused)
		return;
	engine->paused = !!paused;
	if (paused) {
		bf_notice("pause --all in effect: no batch of any job starts until resume --all");
		return;
	}
	bf_notice("resume --all: jobs continue");
	for (bf_job *job = engine->jobs; job; job = job->next)
		bf_job_poke(job);
	engine->want_claim = 1;
}

bf_job *bf_engine_find_job(bf_engine *engine, int64_t id, int64_t slice_id)
{
	for (bf_job *job = engine->jobs; job; job = job->next)
		if (job->id == id && job->slice_id == slice_id)
			return job;
	return NULL;
}

/* ---- closing ---- */

static void engine_closed_one(bf_engine *engine)
{
	/* Jobs close on their own; on_stopped waits for the last of them too. */
	if (--engine->closes_pending == 0 && engine->njobs == 0 && engine->on_stopped)
		engine->on_stopped(engine, engine->arg);
}

static void engine_timer_closed(uv_handle_t *handle)
{
	engine_closed_one(handle->data);
}

static void engine_pg_closed(bf_pg *pg, void *arg)
{
	(void)pg;
	engine_closed_one(arg);
}

static void engine_sampler_closed(void *arg)
{
	engine_closed_one(arg);
}

/* Every job is gone: close our own connection and timers. */
void bf_engine_close(bf_engine *engine)
{
	if (engine->closing)
		return;
	engine->closing = 1;
	engine->closes_pending = 6;
	bf_sampler_close(&engine->sampler, engine_sampler_closed);
	uv_close((uv_handle_t *)&engine->poll_timer, engine_timer_closed);
	uv_close((uv_handle_t *)&engine->renew_timer, engine_timer_closed);
	uv_close((uv_handle_t *)&engine->grace_timer, engine_timer_closed);
	bf_pg_close(&engine->listener, engine_pg_closed, engine);
	bf_monitor_close(&engine->monitor, engine_pg_closed, engine);
}

/* ---- schema and LISTEN ---- */

static void engine_installed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	if (!r->ok) {
		if (r->res)
			bf_error(
				"cannot install or upgrade the control schema \"backfill\": %s (SQLSTATE %s); "
				"retrying every poll interval",
				r->message, r->sqlstate ? r->sqlstate : "none");
		return;
	}
	int version = PQntuples(r->res) ? atoi(PQgetvalue(r->res, 0, 0)) : 0;

	if (version > bf_schema_version()) {
		bf_error(
			"the control schema is at version %d, newer than this backfilld knows (%d): "
			"upgrade backfilld; refusing to run",
			version, bf_schema_version());
		engine->fatal = 1;
		bf_engine_stop(engine);
		return;
	}
	engine->listening = 1;
	engine->want_claim = 1;
	engine->want_control = 1;
	bf_info("control schema at version %d; listening on channel \"%s\"", version,
		BF_NOTIFY_CHANNEL);
	/* Notifications sent while we were disconnected are lost: every job
	 * re-reads its row, and a claim pass looks at the whole table. */
	for (bf_job *job = engine->jobs; job; job = job->next)
		bf_job_poke(job);
	if (!engine->ready_reported) {
		engine->ready_reported = 1;
		if (engine->on_ready)
			engine->on_ready(engine, engine->arg);
	}
	bf_engine_kick(engine);
}

static void engine_install(bf_engine *engine)
{
	const char *install = bf_schema_install_sql();
	bf_strbuf sb;

	bf_strbuf_init(&sb);
	/* LISTEN first: it takes effect with the install's commit, and the
	 * script's last statement must stay the version query. */
	bf_strbuf_append(&sb, "LISTEN " BF_NOTIFY_CHANNEL ";\n");
	if (install)
		bf_strbuf_append(&sb, install);
	char *sql = bf_strbuf_finish(&sb);

	if (!sql || !install) {
		free(sql);
		bf_error("out of memory building the schema script");
		return;
	}
	bf_pg_query(&engine->listener, sql, 0, NULL, engine_installed, engine);
	free(sql);
}

static void engine_renew_timer_cb(uv_timer_t *timer)
{
	bf_engine *engine = timer->data;

	engine->want_renew = 1;
	bf_engine_kick(engine);
}

/* ---- claims ---- */

static void engine_job_closed(void *owner, bf_job *job);

/* A setup that walks on as the first slice: the renewal sends its slice's
 * lease from now on (claims.c reads slice_id each time); the other slices
 * are free for any daemon, this one included. */
static void engine_job_unit_changed(void *owner, bf_job *job)
{
	bf_engine *engine = owner;

	(void)job;
	engine->want_claim = 1;
	bf_engine_kick(engine);
}

static const bf_job_ops engine_job_ops = {
	.unit_changed = engine_job_unit_changed,
	.paused = engine_job_paused,
	.set_paused = engine_job_set_paused,
	.window_wait = engine_window_wait,
	.find = engine_job_find,
	.closed = engine_job_closed,
};

/* What a job gets of the engine: its environment, and the ops above. */
static bf_job_env engine_job_env(bf_engine *engine)
{
	return (bf_job_env){
		.loop = engine->loop,
		.cfg = engine->cfg,
		.owner_name = engine->owner,
		.monitor = &engine->monitor,
		.sampler = &engine->sampler,
		.rate = &engine->rate,
		.ops = &engine_job_ops,
		.owner = engine,
	};
}

void bf_engine_run(bf_engine *engine, const bf_job_def *def, const char *prev_owner)
{
	bf_job_env env = engine_job_env(engine);

	if (prev_owner)
		bf_notice("job \"%s\"%s: taking over from %s, whose lease expired", def->name,
			  def->slice_id ? " (a slice)" : "", prev_owner);
	bf_job *job = bf_job_start(&env, def);

	if (!job) {
		bf_error("job \"%s\": out of memory starting it; the next lease renewal gives it "
			 "back",
			 def->name);
		return;
	}
	job->next = engine->jobs;
	engine->jobs = job;
	engine->njobs++;
	/* A fresh sample for it: it judges none taken before it started
	 * (job_judge), and the next periodic one may be a second away. */
	if (engine->njobs == 1)
		bf_sampler_start(&engine->sampler);
	else
		bf_sampler_sample_now(&engine->sampler);
}

/* ---- the global pause ---- */

static void engine_control_read(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	if (r->ok && PQntuples(r->res) == 1)
		bf_engine_set_paused(engine, strcmp(PQgetvalue(r->res, 0, 0), "t") == 0);
	else if (!r->ok && r->res)
		bf_warning("reading backfill.control failed: %s", r->message);
	bf_engine_kick(engine);
}

static void engine_read_control(bf_engine *engine)
{
	engine->want_control = 0;
	bf_pg_query(&engine->listener,
		    "SELECT coalesce((SELECT paused FROM backfill.control), false)", 0, NULL,
		    engine_control_read, engine);
}

/* ---- the listener connection's work queue ---- */

/* One query at a time on the listener; this picks the most urgent. */
void bf_engine_kick(bf_engine *engine)
{
	if (engine->closing)
		return;
	if (engine->stopping && engine->njobs == 0) {
		/* Last act: release what we still hold, unless the listener
		 * cannot (down, or the grace is over and it is busy). */
		if (bf_pg_is_ready(&engine->listener) && !engine->grace_over)
			bf_claims_release_all(engine);
		else if (!bf_pg_is_busy(&engine->listener) || engine->grace_over)
			bf_engine_close(engine);
		return;
	}
	if (!bf_pg_is_ready(&engine->listener))
		return;
	if (engine->want_session) {
		char sql[768];

		engine->want_session = 0;
		bf_session_sql(sql, sizeof(sql), engine->cfg, 0);
		bf_pg_query(&engine->listener, sql, 0, NULL, engine_session_applied, engine);
		return;
	}
	/* Renewals first: the jobs we run must not lose their leases. */
	if (engine->want_renew && engine->njobs > 0)
		bf_claims_renew(engine);
	else if (engine->stopping)
		return;
	else if (!engine->listening)
		engine_install(engine);
	else if (engine->want_renew)
		bf_claims_renew(engine);
	else if (engine->want_control)
		engine_read_control(engine);
	else if (engine->want_claim)
		bf_claims_claim(engine);
	else if (engine->want_rollup)
		bf_claims_rollup(engine);
}

static void engine_listener_event(bf_pg *pg, int up, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	engine->listening = 0;
	if (up) {
		/* Renewals may have been missed while we were away. */
		engine->want_renew = 1;
		bf_engine_kick(engine);
	}
}

static void engine_notify(bf_pg *pg, const char *channel, const char *payload, void *arg)
{
	bf_engine *engine = arg;
	char state[32] = "";
	long long id = 0;

	(void)pg;
	if (strcmp(channel, BF_NOTIFY_CHANNEL) != 0)
		return;
	if (sscanf(payload, "%lld %31s", &id, state) != 2)
		return;
	bf_debug("notification: job %lld: %s", id, state);
	if (id == 0) {
		/* backfill.control, and pause --all --now. */
		if (strcmp(state, "paused-all") == 0 || strcmp(state, "resumed-all") == 0)
			bf_engine_set_paused(engine, strcmp(state, "paused-all") == 0);
		else if (strcmp(state, "cancel-batches") == 0)
			for (bf_job *job = engine->jobs; job; job = job->next)
				bf_job_cancel_batch(job);
		bf_engine_kick(engine);
		return;
	}
	/* A slice given back by its daemon: free for us to take. */
	if (strcmp(state, "released") == 0) {
		engine->want_claim = 1;
		bf_engine_kick(engine);
		return;
	}
	/* Every walk of the job: its slices, or its setup. */
	for (bf_job *job = engine->jobs; job; job = job->next) {
		if (job->id != id)
			continue;
		if (strcmp(state, "cancel-batch") == 0)
			bf_job_cancel_batch(job);
		else if (strcmp(state, "running") != 0)
			bf_job_poke(job);
	}
	if (strcmp(state, "cancel-batch") == 0)
		return;
	if (strcmp(state, "pending") == 0 || strcmp(state, "running") == 0) {
		engine->want_claim = 1;
		bf_engine_kick(engine);
	}
}

static void engine_poll_timer_cb(uv_timer_t *timer)
{
	bf_engine *engine = timer->data;

	engine->want_claim = 1;
	engine->want_control = 1;
	/* The job rows' totals, while slices of ours walk. */
	for (bf_job *job = engine->jobs; job; job = job->next)
		if (job->slice_id)
			engine->want_rollup = 1;
	bf_engine_kick(engine);
}

static void engine_job_closed(void *owner, bf_job *job)
{
	bf_engine *engine = owner;

	for (bf_job **p = &engine->jobs; *p; p = &(*p)->next) {
		if (*p == job) {
			*p = job->next;
			engine->njobs--;
			break;
		}
	}
	/* A free slot: look for more work (or finish stopping). */
	engine->want_claim = 1;
	bf_engine_kick(engine);
}

/* ---- throttle signals (sampler.h) ---- */

static void engine_on_sample(void *arg)
{
	bf_engine *engine = arg;

	for (bf_job *job = engine->jobs, *next; job; job = next) {
		next = job->next; /* a job may close on the way */
		bf_job_on_sample(job, &engine->sampler.sample);
	}
}

static char *engine_batch_pids(void *arg)
{
	bf_engine *engine = arg;
	bf_strbuf pids;
	int n = 0;

	bf_strbuf_init(&pids);
	bf_strbuf_append(&pids, "{");
	for (bf_job *job = engine->jobs; job; job = job->next)
		if (bf_job_batch_pid(job))
			bf_strbuf_printf(&pids, "%s%d", n++ ? "," : "", bf_job_batch_pid(job));
	bf_strbuf_append(&pids, "}");
	return bf_strbuf_finish(&pids);
}

static int64_t engine_on_blocked(const bf_blocked *b, void *arg)
{
	bf_engine *engine = arg;

	for (bf_job *job = engine->jobs; job; job = job->next)
		if (bf_job_batch_pid(job) == b->blocker_pid)
			return bf_job_on_blocked(job, b);
	return 0;
}

static void engine_on_replay(const bf_sample *poll, void *arg)
{
	bf_engine *engine = arg;

	for (bf_job *job = engine->jobs, *next; job; job = next) {
		next = job->next;
		bf_job_on_replay(job, poll);
	}
}

static int engine_replay_wanted(void *arg)
{
	bf_engine *engine = arg;

	for (bf_job *job = engine->jobs; job; job = job->next)
		if (bf_job_replay_waiting(job))
			return 1;
	return 0;
}

static int engine_sample_wanted(void *arg)
{
	bf_engine *engine = arg;

	/* No jobs, no queries: an idle daemon costs the database nothing. */
	return engine->njobs > 0 && !engine->stopping;
}

static const bf_sampler_ops engine_sampler_ops = {
	.on_sample = engine_on_sample,
	.batch_pids = engine_batch_pids,
	.on_blocked = engine_on_blocked,
	.on_replay = engine_on_replay,
	.replay_wanted = engine_replay_wanted,
	.sample_wanted = engine_sample_wanted,
};

static void engine_limits(bf_engine *engine)
{
	char err[256];
	bf_windows windows;

	/* Checked when the configuration was loaded, so this cannot fail; if
	 * it did, the old windows stay (never "no window": always allowed). */
	if (bf_windows_parse(&windows, engine->cfg->throttle_windows, err, sizeof(err)) == 0)
		engine->windows = windows;
	else
		bf_error("throttle.windows: %s; keeping the windows in effect", err);
	bf_rate_set(&engine->rate, engine->cfg->throttle_max_rows_per_s);
}

/* ---- lifecycle ---- */

static void engine_make_owner(bf_engine *engine)
{
	char host[128] = "unknown";
	unsigned char rnd[4] = {0};

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
		uint64_t t = uv_hrtime();

		memcpy(rnd, &t, sizeof(rnd));
	}
	/* Unique per run: a restarted daemon is a new owner, so a lease from
	 * before a crash can never be mistaken for ours. */
	snprintf(engine->owner, sizeof(engine->owner), "%s:%d:%02x%02x%02x%02x", host,
		 (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]);
}

int bf_engine_init(bf_engine *engine, uv_loop_t *loop, const bf_config *cfg, bf_engine_cb on_ready,
		   bf_engine_cb on_stopped, void *arg)
{
	int rc;

	memset(engine, 0, sizeof(*engine));
	engine->loop = loop;
	engine->cfg = cfg;
	engine->on_ready = on_ready;
	engine->on_stopped = on_stopped;
	engine->arg = arg;
	engine_make_owner(engine);

	char init_sql[768];

	bf_session_sql(init_sql, sizeof(init_sql), cfg, 0);

	bf_pg_options opts =
		bf_session_pg_options(cfg, false, "listener connection", "backfilld listener",
				      init_sql, engine_listener_event, engine);

	opts.on_notify = engine_notify;
	/* All or nothing: timers are only closed through the loop. */
	if ((rc = uv_timer_init(loop, &engine->poll_timer)) != 0)
		return rc;
	uv_timer_init(loop, &engine->renew_timer);
	uv_timer_init(loop, &engine->grace_timer);
	engine->poll_timer.data = engine->renew_timer.data = engine->grace_timer.data = engine;
	bf_pg_init(&engine->listener, loop, &opts);
	bf_monitor_init(&engine->monitor, loop, cfg);
	bf_sampler_init(&engine->sampler, loop, &engine->monitor, cfg, &engine_sampler_ops, engine);
	bf_rate_init(&engine->rate, 0);
	engine_limits(engine);
	return 0;
}

void bf_engine_start(bf_engine *engine)
{
	uint64_t renew_ms = (uint64_t)engine->cfg->lease_s * 1000 / 3;

	bf_info("starting as lease owner %s (up to %d jobs at once)", engine->owner,
		engine->cfg->max_jobs);
	uv_timer_start(&engine->poll_timer, engine_poll_timer_cb,
		       (uint64_t)engine->cfg->poll_interval_ms,
		       (uint64_t)engine->cfg->poll_interval_ms);
	uv_timer_start(&engine->renew_timer, engine_renew_timer_cb, renew_ms, renew_ms);
	engine->started_ns = uv_hrtime();
	bf_pg_start(&engine->listener);
	bf_monitor_start(&engine->monitor);
	bf_sampler_start(&engine->sampler);
}

static void engine_session_applied(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	if (!r->ok && r->res)
		bf_warning("%s: applying the reloaded session settings failed: %s", pg->name,
			   r->message);
	if (pg == &engine->listener)
		bf_engine_kick(engine);
}

void bf_engine_reconfigure(bf_engine *engine)
{
	uint64_t renew_ms = (uint64_t)engine->cfg->lease_s * 1000 / 3;
	int server_ms = bf_session_control_statement_timeout_ms(engine->cfg);
	char sql[768];

	if (engine->stopping)
		return;
	/* Our own connections: after every reconnect, and now. */
	bf_session_sql(sql, sizeof(sql), engine->cfg, 0);
	bf_pg_reconfigure(&engine->listener, sql, server_ms, engine->cfg->lease_s);
	bf_pg_reconfigure(&engine->monitor.pg, sql, server_ms, engine->cfg->lease_s);
	bf_monitor_query(&engine->monitor, sql, 0, NULL, engine_session_applied, engine);
	engine->want_session = 1;
	uv_timer_start(&engine->poll_timer, engine_poll_timer_cb,
		       (uint64_t)engine->cfg->poll_interval_ms,
		       (uint64_t)engine->cfg->poll_interval_ms);
	uv_timer_start(&engine->renew_timer, engine_renew_timer_cb, renew_ms, renew_ms);
	engine_limits(engine);
	bf_sampler_reconfigure(&engine->sampler);
	for (bf_job *job = engine->jobs; job; job = job->next)
		bf_job_reconfigure(job);
	/* max_jobs may have grown. */
	engine->want_claim = 1;
	bf_engine_kick(engine);
}

static void engine_grace_timer_cb(uv_timer_t *timer)
{
	bf_engine *engine = timer->data;

	if (engine->grace_over)
		return;
	engine->grace_over = 1;
	if (engine->njobs)
		bf_warning("shutdown grace of %d ms is over", engine->cfg->shutdown_grace_ms);
	for (bf_job *job = engine->jobs; job; job = job->next)
		bf_job_abort(job);
	/* The engine closes once the last job has (engine_job_closed). */
	bf_engine_kick(engine);
}

void bf_engine_stop(bf_engine *engine)
{
	if (engine->closing)
		return;
	if (engine->stopping) {
		/* Asked twice: do not wait for the batches any longer. */
		uv_timer_start(&engine->grace_timer, engine_grace_timer_cb, 0, 0);
		return;
	}
	engine->stopping = 1;
	bf_info("stopping: %d job(s) finish their batch in flight and release their lease",
		engine->njobs);
	uv_timer_stop(&engine->poll_timer);
	uv_timer_start(&engine->grace_timer, engine_grace_timer_cb,
		       (uint64_t)engine->cfg->shutdown_grace_ms, 0);
	for (bf_job *job = engine->jobs; job; job = job->next)
		bf_job_stop(job);
	bf_engine_kick(engine);
}
