/* hold.c -- what holds a job's next batch back: signals, rates, windows, strict replay waits. */
#include "job_int.h"

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
int job_wait_replay(bf_job *job)
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
	bf_sampler_replay_wanted(job->env.sampler);
	return 1;
}

/* Everything that holds the job's next batch (batches != 0) or its next
 * verification step back now. Waits and returns 1 if anything does:
 * status lists every reason, not only the first. */
int job_hold(bf_job *job, int batches)
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

	if ((w = job->env.ops->window_wait(job->env.owner, text, sizeof(text))) > 0) {
		HOLD(w, "%s", text);
		if (!job->window_held)
			job_log(job, BF_LOG_NOTICE, "throttled: %s", text);
		job->window_held = 1;
	} else if (job->window_held) {
		job_log(job, BF_LOG_NOTICE, "throttle ended: window");
		job->window_held = 0;
	}
	if (batches) {
		bf_rate *overall = job->env.rate;

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
		bf_sampler *sampler = job->env.sampler;

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
