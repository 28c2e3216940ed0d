/* test_job_knobs.c -- a job's knobs: the row's settings over the configuration (knobs.h). */
#include "config.h"
#include "knobs.h"
#include "unit.h"

static bf_config config(void)
{
	bf_config cfg = {0};

	cfg.batch_size = 1000;
	cfg.batch_size_min = 10;
	cfg.batch_size_max = 50000;
	cfg.batch_target_ms = 500;
	cfg.throttle_replay_lag_high_bytes = 64 << 20;
	cfg.throttle_replay_lag_low_bytes = 16 << 20;
	cfg.throttle_replay_lag_high_ms = 10000;
	cfg.throttle_replay_lag_low_ms = 2000;
	cfg.lock_timeout_ms = 2000;
	cfg.statement_timeout_ms = 30000;
	cfg.throttle_lock_wait_max_ms = 500;
	cfg.throttle_replay_wait_timeout_ms = 60000;
	return cfg;
}

static void test_the_configuration_without_settings(void)
{
	bf_config cfg = config();
	bf_job_knobs k;
	char err[256];

	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, NULL, err, sizeof err), 0);
	UNIT_CHECK_INT(k.v[BF_KNOB_BATCH_SIZE_MAX], 50000);
	UNIT_CHECK_INT(k.v[BF_KNOB_MAX_ROWS_PER_S], 0);
	UNIT_CHECK_INT(k.v[BF_KNOB_REPLAY_LAG_HIGH_BYTES], 64 << 20);
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{}", err, sizeof err), 0);
	UNIT_CHECK_INT(k.v[BF_KNOB_STATEMENT_TIMEOUT_MS], 30000);
}

static void test_row_settings_override(void)
{
	bf_config cfg = config();
	bf_job_knobs k;
	char err[256];

	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg,
					    "{\"max_rows_per_s\": 5000, \"wait_for_replay\": true, "
					    "\"batch_size_max\": 2000}",
					    err, sizeof err),
		       0);
	UNIT_CHECK_INT(k.v[BF_KNOB_MAX_ROWS_PER_S], 5000);
	UNIT_CHECK_INT(k.v[BF_KNOB_WAIT_FOR_REPLAY], 1);
	UNIT_CHECK_INT(k.v[BF_KNOB_BATCH_SIZE_MAX], 2000);
	UNIT_CHECK_INT(k.v[BF_KNOB_BATCH_SIZE_MIN], 10); /* the configuration's */
	/* A high mark under the configuration's low mark lowers the low one. */
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"replay_lag_high_ms\": 1000}", err,
					    sizeof err),
		       0);
	UNIT_CHECK_INT(k.v[BF_KNOB_REPLAY_LAG_LOW_MS], 1000);
	/* 0 turns a high mark off: the low mark stays. */
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"replay_lag_high_ms\": 0}", err,
					    sizeof err),
		       0);
	UNIT_CHECK_INT(k.v[BF_KNOB_REPLAY_LAG_LOW_MS], 2000);
}

static void test_bad_values_say_what(void)
{
	bf_config cfg = config();
	bf_job_knobs k;
	char err[256];

	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"batch_size\": 5}", err, sizeof err), -1);
	UNIT_CHECK_CONTAINS(err, "unknown knob \"batch_size\" (batch_size is a column of its own");
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"nosuch\": 5}", err, sizeof err), -1);
	UNIT_CHECK_CONTAINS(err, "settings: unknown knob \"nosuch\"");
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"max_rows_per_s\": \"5\"}", err,
					    sizeof err),
		       -1);
	UNIT_CHECK_CONTAINS(err, "settings: max_rows_per_s must be an integer");
	/* A boolean only for a 0/1 knob. */
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"max_rows_per_s\": true}", err,
					    sizeof err),
		       -1);
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"lock_timeout_ms\": 0}", err, sizeof err),
		       -1);
	UNIT_CHECK_CONTAINS(err, "lock_timeout_ms");
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{\"batch_size_min\": 60000}", err,
					    sizeof err),
		       -1);
	UNIT_CHECK_CONTAINS(err, "settings: batch_size_min (60000) is greater than batch_size_max "
				 "(50000)");
	UNIT_CHECK_INT(bf_job_knobs_resolve(&k, &cfg, "{not json", err, sizeof err), -1);
	UNIT_CHECK_CONTAINS(err, "settings: not valid JSON");
}

int main(void)
{
	UNIT_RUN(test_the_configuration_without_settings);
	UNIT_RUN(test_row_settings_override);
	UNIT_RUN(test_bad_values_say_what);
	return UNIT_DONE();
}
