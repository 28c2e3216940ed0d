/* engine.h -- claims jobs and keeps their leases: the daemon's scheduler.
 *
 * One "listener" connection installs the control schema, LISTENs for job
 * changes, claims jobs (FOR UPDATE SKIP LOCKED: the jobs table is a queue)
 * and renews the leases of the jobs this daemon runs. Each claimed job then
 * runs on its own connection (job.h).
 */
#ifndef BF_ENGINE_H
#define BF_ENGINE_H

#include <uv.h>

#include "config.h"
#include "job.h"
#include "monitor.h"
#include "pg.h"
#include "rate.h"
#include "sampler.h"
#include "window.h"

typedef struct bf_engine bf_engine;
typedef void (*bf_engine_cb)(bf_engine *engine, void *arg);

struct bf_engine {
	uv_loop_t *loop;
	const bf_config *cfg;
	char owner[192]; /* lease owner: host:pid:random, unique per run */

	bf_pg listener;
	bf_monitor monitor;	/* control-plane queries, batch cancels */
	bf_sampler sampler;	/* throttle signals, on the monitor connection */
	bf_rate rate;		/* throttle.max_rows_per_s over all our jobs */
	bf_windows windows;	/* throttle.windows */
	uv_timer_t poll_timer;	/* fallback for missed notifications */
	uv_timer_t renew_timer; /* lease renewal, every lease/3 */
	uv_timer_t grace_timer; /* shutdown: how long in-flight batches may take */

	bf_job *jobs;
	int njobs;

	int listening; /* schema checked and LISTEN active on this connection */
	int want_claim, want_renew, want_control;
	int want_rollup;  /* slices of ours walk: sum their jobs' totals (each poll) */
	int claim_slices; /* the claim of setups is answered: slices are next */
	int want_session; /* a reload: re-apply the session settings */
	int paused;	  /* backfill.control says pause --all */
	uint64_t started_ns;
	int stopping;
	int grace_over; /* stopping: batches in flight are no longer waited for */
	int closing;	/* engine_close ran: one way, never twice */
	int fatal;	/* cannot run at all (schema newer than us) */
	int closes_pending;

	bf_engine_cb on_ready;	 /* first time the daemon is connected and serving */
	bf_engine_cb on_stopped; /* every handle closed; the loop can end */
	void *arg;
	int ready_reported;
};

/* Returns 0, or a negative libuv error with nothing to clean up. */
int bf_engine_init(bf_engine *engine, uv_loop_t *loop, const bf_config *cfg, bf_engine_cb on_ready,
		   bf_engine_cb on_stopped, void *arg);

void bf_engine_start(bf_engine *engine);

/* Graceful stop: no new claims or batches, in-flight batches finish (for at
 * most shutdown_grace_ms), leases are released, every handle is closed, then
 * on_stopped. Calling it again cuts the grace short. */
void bf_engine_stop(bf_engine *engine);

/* The configuration struct was reloaded in place: apply it to the jobs. */
void bf_engine_reconfigure(bf_engine *engine);

/* The walk this daemon runs of that job and slice (slice_id 0: the job's
 * setup), or NULL. */
bf_job *bf_engine_find_job(bf_engine *engine, int64_t id, int64_t slice_id);

/* For claims.c: run what a claim returned (prev_owner: whose lease
 * expired, or NULL); look for the next thing to do on the listener; close
 * once every lease is given back. */
void bf_engine_run(bf_engine *engine, const bf_job_def *def, const char *prev_owner);
void bf_engine_kick(bf_engine *engine);
void bf_engine_close(bf_engine *engine);

/* For the control commands: the loop, the monitor connection, and
 * pause --all (what backfill.control says; the engine follows it). */
uv_loop_t *bf_engine_loop(bf_engine *engine);
struct bf_monitor *bf_engine_monitor(bf_engine *engine);
int bf_engine_paused(const bf_engine *engine);
void bf_engine_set_paused(bf_engine *engine, int paused);


#endif
