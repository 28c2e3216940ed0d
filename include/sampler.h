/* sampler.h -- the throttle signals, read from the monitor connection.
 *
 * Three timers, each sending at most one query at a time through the
 * monitor's queue (never a batch connection):
 *  - the sample: physical standbys, logical slots, the role's privilege and
 *    the operator's throttle query, every throttle.sample_interval_ms while
 *    the daemon runs jobs, and at once when a job asks (the WAL our batches
 *    wrote since the last one may have taken a lag past its high mark); each
 *    job judges it against its own limits;
 *  - the lock check: sessions waiting on a lock held by one of our batches,
 *    while a batch is in flight; the engine decides which batch to cancel;
 *  - the replay poll (strict mode): where the standbys have replayed to,
 *    while some job waits for its batch to reach them.
 */
#ifndef BF_SAMPLER_H
#define BF_SAMPLER_H

#include <uv.h>

#include "config.h"
#include "monitor.h"
#include "throttle.h"

/* A session waiting for a lock that one of our batch backends holds. */
typedef struct bf_blocked {
	int blocker_pid; /* our batch's backend */
	int pid;
	int64_t waited_ms;
	int ddl; /* it asks for a relation lock that conflicts with our writes */
	/* "pid 123 waiting for a transactionid ShareLock on a row of items":
	 * never the session's query, application_name or user */
	char what[256];
	int64_t xact_start_us; /* the blocking batch's transaction start (epoch
				* microseconds); 0 unknown */
} bf_blocked;

typedef struct bf_sampler_ops {
	/* A new sample (good or failed) is in sampler->sample. */
	void (*on_sample)(void *arg);
	/* The batch pids in flight now, for the lock check ("{1,2}"); NULL
	 * or "{}" when none (the check stops until bf_sampler_batch_started). */
	char *(*batch_pids)(void *arg);
	/* One blocked session; returns the ms after which this session's wait
	 * needs another look (0: no need), so the check can come back sooner
	 * than its interval. */
	int64_t (*on_blocked)(const bf_blocked *b, void *arg);
	/* A replay poll: the current WAL position and the standbys'. */
	void (*on_replay)(const bf_sample *poll, void *arg);
	/* Whether some job still waits for replay (keeps the poll going). */
	int (*replay_wanted)(void *arg);
	/* Whether sampling is needed at all (the daemon runs jobs). */
	int (*sample_wanted)(void *arg);
} bf_sampler_ops;

typedef struct bf_sampler {
	bf_monitor *monitor;
	const bf_config *cfg;
	bf_sampler_ops ops;
	void *arg;

	bf_sample sample; /* the latest, good or failed */
	bf_sample next;	  /* being filled */
	bf_sample replay; /* the latest replay poll */

	/* The highest WAL position a batch of ours reported, and when: what
	 * the latest sample cannot have counted (bf_throttle_ahead). 0 once a
	 * sample asked after it has landed. */
	uint64_t written_lsn, written_ns;

	uv_timer_t sample_timer, lock_timer, replay_timer;
	int sample_busy, lock_busy, replay_busy;
	uint64_t replay_asked_ns;
	char locks_error[200]; /* the lock check fails: "" when it works */
	int closing, closes_pending;
	void (*on_closed)(void *arg);
} bf_sampler;

int bf_sampler_init(bf_sampler *s, uv_loop_t *loop, bf_monitor *monitor, const bf_config *cfg,
		    const bf_sampler_ops *ops, void *arg);

/* Starts sampling (again): at once, then every interval. */
void bf_sampler_start(bf_sampler *s);

/* The configuration was reloaded: new intervals and throttle query. */
void bf_sampler_reconfigure(bf_sampler *s);

/* A job would start a batch, but the WAL written since the latest sample
 * may have taken a lag past its high mark: sample now (from the loop, never
 * inside this call), and tell the jobs when it lands (on_sample). While a
 * sample is in flight this does nothing: that one lands soon, and a job
 * that still needs a fresher one asks again then. */
void bf_sampler_sample_now(bf_sampler *s);

/* A batch of ours wrote WAL up to lsn (the insert position after its work,
 * as the batch statement reports it): kept if it is the highest yet, so that
 * every job counts every job's writes until a sample asked after it lands. */
void bf_sampler_note_lsn(bf_sampler *s, uint64_t lsn);

/* A batch began: make sure the lock check runs. */
void bf_sampler_batch_started(bf_sampler *s);

/* A job waits for replay: make sure the replay poll runs. */
void bf_sampler_replay_wanted(bf_sampler *s);

/* Stops the timers; on_closed once they are closed. Queries in flight are
 * failed by the monitor's own close. */
void bf_sampler_close(bf_sampler *s, void (*on_closed)(void *arg));

/* Fills b from row `row` of the lock check's result. */
void bf_sampler_blocked_parse(const PGresult *res, int row, bf_blocked *b);

#endif
