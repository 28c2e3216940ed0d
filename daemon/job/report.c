/* report.c -- what status shows of a job: its rate, time throttled, reasons held, phase. */
#include <jansson.h>

#include "job_int.h"

/* One (time, rows) point for the rate. */
void job_sample(bf_job *job)
{
	int n = (int)(sizeof(job->samples) / sizeof(job->samples[0]));

	job->samples[job->sample_next].t_ns = uv_hrtime();
	job->samples[job->sample_next].rows = job->rows_scanned;
	job->sample_next = (job->sample_next + 1) % n;
	if (job->nsamples < n)
		job->nsamples++;
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

	if (n < max && job->env.ops->paused(job->env.owner) && !strstr(job->wait_reason, "pause --all"))
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

int bf_job_query_pid(const bf_job *job)
{
	return job->phase == BF_JOB_QUERY && job->pg.backend_pid > 0 ? job->pg.backend_pid : 0;
}

int bf_job_batch_pid(const bf_job *job)
{
	return job->in_batch ? bf_job_query_pid(job) : 0;
}

bool bf_job_replay_waiting(const bf_job *job)
{
	return job->replay_waiting;
}

#define LIVE_REASONS_MAX 16

static double rounded(double v, double unit)
{
	return (double)(long long)(v / unit + 0.5) * unit;
}

/* The fields only the daemon running a job knows. */
json_t *bf_job_live(const bf_job *job, uint64_t now)
{
	char *reasons[LIVE_REASONS_MAX];
	int n = bf_job_throttle_reasons(job, reasons, LIVE_REASONS_MAX);
	json_t *list = json_array();
	double rate = bf_job_rate(job, now);
	double throttled_s = bf_job_throttled_s(job, now);
	double alive_s = (double)(now - job->started_ns) / 1e9;
	json_t *eta = json_null();

	for (int i = 0; i < n; i++) {
		json_array_append_new(list, json_string(reasons[i]));
		free(reasons[i]);
	}
	if (job->walk_done)
		eta = json_integer(0);
	else if (rate > 0 && job->rows_estimate > job->rows_scanned)
		eta = json_integer((
			json_int_t)((double)(job->rows_estimate - job->rows_scanned) / rate + 0.5));
	return json_pack("{s:s, s:i, s:f, s:o, s:b, s:o, s:f, s:f, s:I}", "phase",
			 bf_job_phase_name(job), "batch_size", bf_batch_size_get(&job->batch_size),
			 "rate_rows_s", rounded(rate, 0.1), "eta_s", eta, "throttled", n > 0,
			 "throttle_reasons", list, "throttled_s", rounded(throttled_s, 0.1),
			 "throttled_share",
			 alive_s > 0 ? rounded(throttled_s / alive_s, 0.001) : 0.0,
			 "sessions_waited", (json_int_t)job->sessions_held);
}
