/* fuzz_config.c -- libFuzzer target for the YAML config loader: any bytes as
 * backfilld.yaml. Beyond "no crash, no leak, no UB", a refused file must get
 * one line "NAME:LINE:COL: why" and leave the defaults, and an accepted one
 * must hold only values the daemon can run with (bounds written out here
 * independently of config.c's table, as tests/unit/test_config.c does).
 *
 * Built and run by `make fuzz` / `make fuzz-short`.
 */
#include "config.h"
#include "window.h"

#include "fuzz.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz.yaml"
#define TB   (1LL << 40)

#define INT_FIELD(field, lo, hi)                                                                   \
	{                                                                                          \
		offsetof(bf_config, field), #field, lo, hi                                         \
	}

/* Every int key and its bounds, as config/backfilld.yaml documents them. */
static const struct {
	size_t offset;
	const char *name;
	long long min, max;
} int_fields[] = {
	INT_FIELD(connect_timeout_ms, 100, 600000),
	INT_FIELD(control_socket_mode, 0, 0777),
	INT_FIELD(control_max_clients, 1, 4096),
	INT_FIELD(control_request_timeout_ms, 100, 600000),
	INT_FIELD(max_jobs, 1, 256),
	INT_FIELD(lease_s, 2, 3600),
	INT_FIELD(poll_interval_ms, 50, 3600000),
	INT_FIELD(shutdown_grace_ms, 0, 3600000),
	INT_FIELD(batch_size, 1, 10000000),
	INT_FIELD(batch_size_min, 1, 10000000),
	INT_FIELD(batch_size_max, 1, 10000000),
	INT_FIELD(batch_target_ms, 1, 3600000),
	INT_FIELD(lock_timeout_ms, 1, 3600000),
	INT_FIELD(statement_timeout_ms, 1, 86400000),
	INT_FIELD(idle_in_transaction_timeout_ms, 1, 86400000),
	INT_FIELD(verify_chunk_rows, 1, 100000000),
	INT_FIELD(throttle_sample_interval_ms, 50, 60000),
	INT_FIELD(throttle_replay_lag_high_ms, 0, 86400000),
	INT_FIELD(throttle_replay_lag_low_ms, 0, 86400000),
	INT_FIELD(throttle_logical_slots, 0, 2),
	INT_FIELD(throttle_wait_for_replay, 0, 1),
	INT_FIELD(throttle_replay_wait_timeout_ms, 1, 3600000),
	INT_FIELD(throttle_lock_wait_max_ms, 1, 3600000),
	INT_FIELD(throttle_lock_check_interval_ms, 10, 60000),
	INT_FIELD(throttle_max_rows_per_s, 0, 1000000000),
	INT_FIELD(retry_initial_ms, 1, 3600000),
	INT_FIELD(retry_max_ms, 1, 86400000),
	INT_FIELD(retry_max_failures, 1, 1000),
};

/* "NAME:LINE:COL: reason", all on one line, LINE and COL from 1. */
static void check_error(const char *err)
{
	const char *p = err;
	char *end;

	FUZZ_CHECK(strncmp(p, NAME ":", strlen(NAME ":")) == 0);
	p += strlen(NAME ":");
	FUZZ_CHECK(isdigit((unsigned char)*p) && strtoul(p, &end, 10) >= 1 && *end == ':');
	p = end + 1;
	FUZZ_CHECK(isdigit((unsigned char)*p) && strtoul(p, &end, 10) >= 1);
	FUZZ_CHECK(strncmp(end, ": ", 2) == 0 && end[2] != '\0');
	for (p = err; *p; p++)
		FUZZ_CHECK(!iscntrl((unsigned char)*p));
}

/* A "a,b" list of names or numeric ids, each as useradd accepts it. */
static void check_names(const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");

		FUZZ_CHECK(n >= 1 && n <= 64 && *p != '-');
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(isalnum((unsigned char)p[i]) || strchr("_-.$", p[i]));
		p += n;
		if (*p == ',')
			FUZZ_CHECK(*++p != '\0');
	}
}

static void check_config(const bf_config *cfg)
{
	bf_windows ws;
	char why[256];

	for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
		int v = *(const int *)((const char *)cfg + int_fields[i].offset);

		if (v < int_fields[i].min || v > int_fields[i].max) {
			fprintf(stderr, "%s = %d\n", int_fields[i].name, v);
			FUZZ_CHECK(!"an int key out of its bounds");
		}
	}
	FUZZ_CHECK(cfg->log_level >= BF_LOG_DEBUG && cfg->log_level <= BF_LOG_ERROR);
	FUZZ_CHECK(cfg->throttle_replay_lag_high_bytes >= 0 &&
		   cfg->throttle_replay_lag_high_bytes <= TB);
	FUZZ_CHECK(cfg->throttle_replay_lag_low_bytes >= 0 &&
		   cfg->throttle_replay_lag_low_bytes <= TB);
	FUZZ_CHECK(cfg->throttle_slot_lag_high_bytes >= 0 &&
		   cfg->throttle_slot_lag_high_bytes <= TB);
	FUZZ_CHECK(cfg->throttle_slot_lag_low_bytes >= 0 && cfg->throttle_slot_lag_low_bytes <= TB);

	/* Pairs: low <= high (0 as the high mark turns a lag signal off). */
	FUZZ_CHECK(cfg->batch_size_min <= cfg->batch_size);
	FUZZ_CHECK(cfg->batch_size <= cfg->batch_size_max);
	FUZZ_CHECK(cfg->retry_initial_ms <= cfg->retry_max_ms);
	FUZZ_CHECK(cfg->throttle_replay_lag_high_bytes == 0 ||
		   cfg->throttle_replay_lag_low_bytes <= cfg->throttle_replay_lag_high_bytes);
	FUZZ_CHECK(cfg->throttle_replay_lag_high_ms == 0 ||
		   cfg->throttle_replay_lag_low_ms <= cfg->throttle_replay_lag_high_ms);
	FUZZ_CHECK(cfg->throttle_slot_lag_high_bytes == 0 ||
		   cfg->throttle_slot_lag_low_bytes <= cfg->throttle_slot_lag_high_bytes);

	FUZZ_CHECK(cfg->conninfo && cfg->control_socket && cfg->control_socket_group &&
		   cfg->control_allowed_users && cfg->control_allowed_groups &&
		   cfg->throttle_expected_standbys && cfg->throttle_windows && cfg->throttle_query);
	check_names(cfg->control_allowed_users);
	check_names(cfg->control_allowed_groups);
	/* What the throttle will parse again at every reload. */
	FUZZ_CHECK(bf_windows_parse(&ws, cfg->throttle_windows, why, sizeof why) == 0);

	PQconninfoOption *opts = PQconninfoParse(cfg->conninfo, NULL);

	FUZZ_CHECK(opts != NULL);
	PQconninfoFree(opts);
}

/* Two loads of the same bytes agree, strings included. */
static void check_same(const bf_config *a, const bf_config *b)
{
	bf_config sa = *a, sb = *b;

	FUZZ_CHECK(strcmp(a->conninfo, b->conninfo) == 0);
	FUZZ_CHECK(strcmp(a->control_socket, b->control_socket) == 0);
	FUZZ_CHECK(strcmp(a->control_socket_group, b->control_socket_group) == 0);
	FUZZ_CHECK(strcmp(a->control_allowed_users, b->control_allowed_users) == 0);
	FUZZ_CHECK(strcmp(a->control_allowed_groups, b->control_allowed_groups) == 0);
	FUZZ_CHECK(strcmp(a->throttle_expected_standbys, b->throttle_expected_standbys) == 0);
	FUZZ_CHECK(strcmp(a->throttle_windows, b->throttle_windows) == 0);
	FUZZ_CHECK(strcmp(a->throttle_query, b->throttle_query) == 0);
	/* Everything else, bit for bit, once the string pointers agree. */
	sb.conninfo = sa.conninfo;
	sb.control_socket = sa.control_socket;
	sb.control_socket_group = sa.control_socket_group;
	sb.control_allowed_users = sa.control_allowed_users;
	sb.control_allowed_groups = sa.control_allowed_groups;
	sb.throttle_expected_standbys = sa.throttle_expected_standbys;
	sb.throttle_windows = sa.throttle_windows;
	sb.throttle_query = sa.throttle_query;
	FUZZ_CHECK(memcmp(&sa, &sb, sizeof sa) == 0);
}

/* An earlier load that leaves every kind of string allocated. */
static const char earlier[] = "database:\n"
			      "  conninfo: host=db1 dbname=app\n"
			      "control:\n"
			      "  socket: /tmp/b.sock\n"
			      "  socket_group: staff\n"
			      "  allowed_users: [alice, 1001]\n"
			      "  allowed_groups: ops\n"
			      "throttle:\n"
			      "  expected_standbys: [replica1, replica2]\n"
			      "  windows: [\"22:00-06:00\", \"12:00-13:00\"]\n"
			      "  query: select 1\n"
			      "batch:\n"
			      "  size: 5000\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bf_config cfg, again, defaults;
	char err[1024] = "", err2[1024] = "";
	int rc;

	bf_config_defaults(&defaults);
	bf_config_defaults(&cfg);
	rc = bf_config_load_buffer(&cfg, NAME, (const char *)data, size, err, sizeof err);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0) {
		check_config(&cfg);
	} else {
		check_error(err);
		/* A refused file leaves the defaults (the very same pointers). */
		FUZZ_CHECK(memcmp(&cfg, &defaults, sizeof cfg) == 0);
	}

	/* A reload over a loaded config frees the old strings first and ends
	 * up where a fresh load does. */
	bf_config_defaults(&again);
	FUZZ_CHECK(bf_config_load_buffer(&again, "earlier.yaml", earlier, strlen(earlier), err2,
					 sizeof err2) == 0);
	FUZZ_CHECK(bf_config_load_buffer(&again, NAME, (const char *)data, size, err2,
					 sizeof err2) == rc);
	if (rc == 0)
		check_same(&cfg, &again);
	else
		FUZZ_CHECK(strcmp(err, err2) == 0);
	FUZZ_CHECK(bf_config_load_buffer(&cfg, NAME, (const char *)data, size, err2, sizeof err2) ==
		   rc);
	bf_config_free(&again);
	bf_config_free(&again); /* twice is harmless */

	/* A small error buffer is cut, never overrun (exact-size heap block). */
	size_t small = size % 16;
	char *cut = malloc(small);

	FUZZ_CHECK(cut != NULL || small == 0);
	FUZZ_CHECK(bf_config_load_buffer(&cfg, NAME, (const char *)data, size, cut, small) == rc);
	if (rc != 0 && small > 0)
		FUZZ_CHECK(strlen(cut) < small);
	free(cut);

	bf_config_free(&cfg);
	FUZZ_CHECK(memcmp(&cfg, &defaults, sizeof cfg) == 0);
	return 0;
}
