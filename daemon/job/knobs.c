/* knobs.c -- a job's run-time knobs: the configuration's defaults, then its row's settings. */
#include "knobs.h"

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

void bf_job_knobs_defaults(bf_job_knobs *k, const bf_config *cfg)
{
	long long *v = k->v;

	v[BF_KNOB_BATCH_SIZE] = cfg->batch_size;
	v[BF_KNOB_BATCH_SIZE_MIN] = cfg->batch_size_min;
	v[BF_KNOB_BATCH_SIZE_MAX] = cfg->batch_size_max;
	v[BF_KNOB_BATCH_TARGET_MS] = cfg->batch_target_ms;
	v[BF_KNOB_MAX_ROWS_PER_S] = 0;
	v[BF_KNOB_REPLAY_LAG_HIGH_BYTES] = cfg->throttle_replay_lag_high_bytes;
	v[BF_KNOB_REPLAY_LAG_LOW_BYTES] = cfg->throttle_replay_lag_low_bytes;
	v[BF_KNOB_REPLAY_LAG_HIGH_MS] = cfg->throttle_replay_lag_high_ms;
	v[BF_KNOB_REPLAY_LAG_LOW_MS] = cfg->throttle_replay_lag_low_ms;
	v[BF_KNOB_SLOT_LAG_HIGH_BYTES] = cfg->throttle_slot_lag_high_bytes;
	v[BF_KNOB_SLOT_LAG_LOW_BYTES] = cfg->throttle_slot_lag_low_bytes;
	v[BF_KNOB_LOCK_WAIT_MAX_MS] = cfg->throttle_lock_wait_max_ms;
	v[BF_KNOB_LOCK_TIMEOUT_MS] = cfg->lock_timeout_ms;
	v[BF_KNOB_STATEMENT_TIMEOUT_MS] = cfg->statement_timeout_ms;
	v[BF_KNOB_WAIT_FOR_REPLAY] = cfg->throttle_wait_for_replay;
	v[BF_KNOB_REPLAY_WAIT_TIMEOUT_MS] = cfg->throttle_replay_wait_timeout_ms;
}

/* The knobs' combinations that make no sense: batch bounds the wrong way
 * round fail (-1, the reason in error); a low mark above its high mark is
 * lowered to it. */
static int knobs_check(bf_job_knobs *k, char *error, size_t len)
{
	static const struct {
		bf_knob_id lo, hi;
		bool hi_zero_is_off;
	} pairs[] = {
		{BF_KNOB_BATCH_SIZE_MIN, BF_KNOB_BATCH_SIZE_MAX, false},
		{BF_KNOB_REPLAY_LAG_LOW_BYTES, BF_KNOB_REPLAY_LAG_HIGH_BYTES, true},
		{BF_KNOB_REPLAY_LAG_LOW_MS, BF_KNOB_REPLAY_LAG_HIGH_MS, true},
		{BF_KNOB_SLOT_LAG_LOW_BYTES, BF_KNOB_SLOT_LAG_HIGH_BYTES, true},
	};

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		long long *lo = &k->v[pairs[i].lo], hi = k->v[pairs[i].hi];

		if (*lo <= hi || (pairs[i].hi_zero_is_off && hi == 0))
			continue;
		if (!pairs[i].hi_zero_is_off) {
			snprintf(error, len, "settings: %s (%lld) is greater than %s (%lld)",
				 bf_knobs[pairs[i].lo].name, *lo, bf_knobs[pairs[i].hi].name, hi);
			return -1;
		}
		/* A job's high mark below the configuration's low mark (or
		 * a reload that lowered a high mark under the job's low one):
		 * the job resumes at its high mark, rather than fail. */
		*lo = hi;
	}
	return 0;
}

/* One "key": value of the row's settings into k. */
static int knobs_set(bf_job_knobs *k, const char *key, json_t *value, char *error, size_t len)
{
	const bf_knob *knob = bf_knob_find(key);
	long long v;

	/* batch_size is a column of its own (the size to continue from). */
	if (!knob || knob == &bf_knobs[BF_KNOB_BATCH_SIZE]) {
		snprintf(error, len,
			 "settings: unknown knob \"%s\" (batch_size is a column of its own; "
			 "see backfillctl set)",
			 key);
		return -1;
	}
	if (json_is_boolean(value) && knob->min == 0 && knob->max == 1) {
		v = json_is_true(value); /* {"wait_for_replay": true} */
	} else if (!json_is_integer(value)) {
		snprintf(error, len, "settings: %s must be an integer", key);
		return -1;
	} else {
		v = json_integer_value(value);
	}
	if (bf_knob_check(knob, v, error, len) != 0)
		return -1;
	k->v[knob - bf_knobs] = v;
	return 0;
}

int bf_job_knobs_resolve(bf_job_knobs *k, const bf_config *cfg, const char *settings,
			 char *error, size_t len)
{
	json_error_t jerr;
	json_t *obj = NULL, *value;
	const char *key;
	int rc = 0;

	bf_job_knobs_defaults(k, cfg);
	if (settings && !(obj = json_loads(settings, 0, &jerr))) {
		snprintf(error, len, "settings: not valid JSON: %s", jerr.text);
		return -1;
	}
	json_object_foreach(obj, key, value)
	{
		if ((rc = knobs_set(k, key, value, error, len)) != 0)
			break;
	}
	json_decref(obj);
	return rc == 0 ? knobs_check(k, error, len) : rc;
}
