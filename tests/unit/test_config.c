/* test_config.c -- config.c: defaults, a full file, every error with its
 * position, the shipped example and the tests/config/bad corpus.
 * Run from the repository root (make unit does).
 */
#include "config.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>

#define BAD_DIR "tests/config/bad/"

/* The defaults as documented, written out independently of config.c's table. */
static const bf_config spec_defaults = {
	.conninfo = "",
	.connect_timeout_ms = 10000,
	.control_socket = "/run/backfilld/backfilld.sock",
	.control_socket_mode = 0660,
	.control_socket_group = "",
	.control_allowed_users = "",
	.control_allowed_groups = "",
	.control_max_clients = 64,
	.control_request_timeout_ms = 5000,
	.max_jobs = 4,
	.lease_s = 30,
	.poll_interval_ms = 5000,
	.shutdown_grace_ms = 30000,
	.batch_size = 1000,
	.batch_size_min = 100,
	.batch_size_max = 50000,
	.batch_target_ms = 500,
	.lock_timeout_ms = 2000,
	.statement_timeout_ms = 30000,
	.idle_in_transaction_timeout_ms = 60000,
	.verify_chunk_rows = 100000,
	.retry_initial_ms = 500,
	.retry_max_ms = 30000,
	.retry_max_failures = 5,
	.log_level = BF_LOG_INFO,
	.throttle_sample_interval_ms = 1000,
	.throttle_expected_standbys = "",
	.throttle_replay_lag_high_bytes = 64LL << 20,
	.throttle_replay_lag_low_bytes = 16LL << 20,
	.throttle_replay_lag_high_ms = 5000,
	.throttle_replay_lag_low_ms = 1000,
	.throttle_logical_slots = 0,
	.throttle_slot_lag_high_bytes = 1LL << 30,
	.throttle_slot_lag_low_bytes = 256LL << 20,
	.throttle_wait_for_replay = 0,
	.throttle_replay_wait_timeout_ms = 10000,
	.throttle_lock_wait_max_ms = 1000,
	.throttle_lock_check_interval_ms = 200,
	.throttle_max_rows_per_s = 0,
	.throttle_windows = "",
	.throttle_query = "",
};

static int load(bf_config *cfg, const char *text, char *err, size_t errlen)
{
	return bf_config_load_buffer(cfg, "t.yaml", text, strlen(text), err, errlen);
}

static void check_config(const bf_config *got, const bf_config *want)
{
	UNIT_CHECK_STR(got->conninfo, want->conninfo);
	UNIT_CHECK_INT(got->connect_timeout_ms, want->connect_timeout_ms);
	UNIT_CHECK_STR(got->control_socket, want->control_socket);
	UNIT_CHECK_INT(got->control_socket_mode, want->control_socket_mode);
	UNIT_CHECK_STR(got->control_socket_group, want->control_socket_group);
	UNIT_CHECK_STR(got->control_allowed_users, want->control_allowed_users);
	UNIT_CHECK_STR(got->control_allowed_groups, want->control_allowed_groups);
	UNIT_CHECK_INT(got->control_max_clients, want->control_max_clients);
	UNIT_CHECK_INT(got->control_request_timeout_ms, want->control_request_timeout_ms);
	UNIT_CHECK_INT(got->max_jobs, want->max_jobs);
	UNIT_CHECK_INT(got->lease_s, want->lease_s);
	UNIT_CHECK_INT(got->poll_interval_ms, want->poll_interval_ms);
	UNIT_CHECK_INT(got->shutdown_grace_ms, want->shutdown_grace_ms);
	UNIT_CHECK_INT(got->batch_size, want->batch_size);
	UNIT_CHECK_INT(got->batch_size_min, want->batch_size_min);
	UNIT_CHECK_INT(got->batch_size_max, want->batch_size_max);
	UNIT_CHECK_INT(got->batch_target_ms, want->batch_target_ms);
	UNIT_CHECK_INT(got->lock_timeout_ms, want->lock_timeout_ms);
	UNIT_CHECK_INT(got->statement_timeout_ms, want->statement_timeout_ms);
	UNIT_CHECK_INT(got->idle_in_transaction_timeout_ms, want->idle_in_transaction_timeout_ms);
	UNIT_CHECK_INT(got->verify_chunk_rows, want->verify_chunk_rows);
	UNIT_CHECK_INT(got->retry_initial_ms, want->retry_initial_ms);
	UNIT_CHECK_INT(got->retry_max_ms, want->retry_max_ms);
	UNIT_CHECK_INT(got->retry_max_failures, want->retry_max_failures);
	UNIT_CHECK_INT(got->log_level, want->log_level);
	UNIT_CHECK_INT(got->throttle_sample_interval_ms, want->throttle_sample_interval_ms);
	UNIT_CHECK_STR(got->throttle_expected_standbys, want->throttle_expected_standbys);
	UNIT_CHECK_INT(got->throttle_replay_lag_high_bytes, want->throttle_replay_lag_high_bytes);
	UNIT_CHECK_INT(got->throttle_replay_lag_low_bytes, want->throttle_replay_lag_low_bytes);
	UNIT_CHECK_INT(got->throttle_replay_lag_high_ms, want->throttle_replay_lag_high_ms);
	UNIT_CHECK_INT(got->throttle_replay_lag_low_ms, want->throttle_replay_lag_low_ms);
	UNIT_CHECK_INT(got->throttle_logical_slots, want->throttle_logical_slots);
	UNIT_CHECK_INT(got->throttle_slot_lag_high_bytes, want->throttle_slot_lag_high_bytes);
	UNIT_CHECK_INT(got->throttle_slot_lag_low_bytes, want->throttle_slot_lag_low_bytes);
	UNIT_CHECK_INT(got->throttle_wait_for_replay, want->throttle_wait_for_replay);
	UNIT_CHECK_INT(got->throttle_replay_wait_timeout_ms, want->throttle_replay_wait_timeout_ms);
	UNIT_CHECK_INT(got->throttle_lock_wait_max_ms, want->throttle_lock_wait_max_ms);
	UNIT_CHECK_INT(got->throttle_lock_check_interval_ms, want->throttle_lock_check_interval_ms);
	UNIT_CHECK_INT(got->throttle_max_rows_per_s, want->throttle_max_rows_per_s);
	UNIT_CHECK_STR(got->throttle_windows, want->throttle_windows);
	UNIT_CHECK_STR(got->throttle_query, want->throttle_query);
}

/* err must start with "PREFIX" and contain substring. */
static void check_error(const char *err, const char *prefix, const char *substring)
{
	char head[256];

	snprintf(head, sizeof head, "%.*s", (int)strlen(prefix), err);
	UNIT_CHECK_STR(head, prefix);
	UNIT_CHECK_CONTAINS(err, substring);
	UNIT_CHECK(!strchr(err, '\n'));
}

static void test_defaults(void)
{
	bf_config cfg;

	bf_config_defaults(&cfg);
	check_config(&cfg, &spec_defaults);
	bf_config_free(&cfg);
	check_config(&cfg, &spec_defaults);
	bf_config_free(&cfg); /* freeing twice is harmless */
}

static void test_log_levels(void)
{
	static const char *const names[] = {"debug", "info", "notice", "warning", "error"};

	for (int i = 0; i < 5; i++) {
		UNIT_CHECK_INT(bf_log_level_parse(names[i]), i);
		UNIT_CHECK_STR(bf_log_level_name((bf_log_level)i), names[i]);
	}
	UNIT_CHECK_INT(bf_log_level_parse("WARNING"), BF_LOG_WARNING);
	UNIT_CHECK_INT(bf_log_level_parse("verbose"), -1);
	UNIT_CHECK_INT(bf_log_level_parse(""), -1);
	UNIT_CHECK_STR(bf_log_level_name((bf_log_level)99), "unknown");
}

static void test_empty_documents(void)
{
	static const char *const texts[] = {
		"",	      "\n",	  "# only\n# comments\n",	   "---\n", "--- ~\n",
		"---\n...\n", "batch:\n", "batch:\n  # size: 5\nlog: ~\n", "{}\n",  "batch: {}\n",
	};
	char err[256];
	bf_config cfg;

	bf_config_defaults(&cfg);
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		err[0] = '\0';
		UNIT_CHECK_INT(load(&cfg, texts[i], err, sizeof err), 0);
		UNIT_CHECK_STR(err, "");
		check_config(&cfg, &spec_defaults);
	}
	bf_config_free(&cfg);
}

static void test_full_file(void)
{
	static const char text[] =
		"# every key, none at its default\n"
		"database:\n"
		"  conninfo: \"host=db1 port=5433 dbname=app user=backfill\"\n"
		"  connect_timeout_ms: 2500\n"
		"control:\n"
		"  socket: /tmp/bf.sock\n"
		"  socket_mode: \"0600\"\n"
		"  socket_group: ops\n"
		"  allowed_users: [alice]\n"
		"  allowed_groups: [ops, dba]\n"
		"  max_clients: 4096\n"
		"  request_timeout_ms: 100\n"
		"engine:\n"
		"  max_jobs: 256\n"
		"  lease_s: 2\n"
		"  poll_interval_ms: 50\n"
		"  shutdown_grace_ms: 0\n"
		"batch: {size: '+2000', size_min: 1, size_max: 10000000, target_ms: 250,\n"
		"        lock_timeout_ms: 1000, statement_timeout_ms: 86400000,\n"
		"        idle_in_transaction_timeout_ms: 120000, verify_chunk_rows: 7}\n"
		"retry:\n"
		"  initial_ms: 100   # a comment after a value\n"
		"  max_ms: 100\n"
		"  max_failures: 1000\n"
		"log:\n"
		"  level: Debug\n"
		"throttle:\n"
		"  sample_interval_ms: 250\n"
		"  expected_standbys: [standby1, dr-site]\n"
		"  replay_lag_high_bytes: 32MB\n"
		"  replay_lag_low_bytes: 512 kB\n"
		"  replay_lag_high_ms: 0\n"
		"  replay_lag_low_ms: 20000\n"
		"  logical_slots: active\n"
		"  slot_lag_high_bytes: 2gb\n"
		"  slot_lag_low_bytes: 1048576\n"
		"  wait_for_replay: yes\n"
		"  replay_wait_timeout_ms: 3000\n"
		"  lock_wait_max_ms: 250\n"
		"  lock_check_interval_ms: 50\n"
		"  max_rows_per_s: 10000\n"
		"  windows: [22:00-06:00, '12:00-13:30']\n"
		"  query: SELECT false\n";
	const bf_config want = {
		.conninfo = "host=db1 port=5433 dbname=app user=backfill",
		.connect_timeout_ms = 2500,
		.control_socket = "/tmp/bf.sock",
		.control_socket_mode = 0600,
		.control_socket_group = "ops",
		.control_allowed_users = "alice",
		.control_allowed_groups = "ops,dba",
		.control_max_clients = 4096,
		.control_request_timeout_ms = 100,
		.max_jobs = 256,
		.lease_s = 2,
		.poll_interval_ms = 50,
		.shutdown_grace_ms = 0,
		.batch_size = 2000,
		.batch_size_min = 1,
		.batch_size_max = 10000000,
		.batch_target_ms = 250,
		.lock_timeout_ms = 1000,
		.statement_timeout_ms = 86400000,
		.idle_in_transaction_timeout_ms = 120000,
		.verify_chunk_rows = 7,
		.retry_initial_ms = 100,
		.retry_max_ms = 100,
		.retry_max_failures = 1000,
		.log_level = BF_LOG_DEBUG,
		.throttle_sample_interval_ms = 250,
		.throttle_expected_standbys = "standby1,dr-site",
		.throttle_replay_lag_high_bytes = 32LL << 20,
		.throttle_replay_lag_low_bytes = 512LL << 10,
		.throttle_replay_lag_high_ms = 0, /* off: the low mark may exceed it */
		.throttle_replay_lag_low_ms = 20000,
		.throttle_logical_slots = 1,
		.throttle_slot_lag_high_bytes = 2LL << 30,
		.throttle_slot_lag_low_bytes = 1048576,
		.throttle_wait_for_replay = 1,
		.throttle_replay_wait_timeout_ms = 3000,
		.throttle_lock_wait_max_ms = 250,
		.throttle_lock_check_interval_ms = 50,
		.throttle_max_rows_per_s = 10000,
		.throttle_windows = "22:00-06:00,12:00-13:30",
		.throttle_query = "SELECT false",
	};
	char err[256] = "";
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(load(&cfg, text, err, sizeof err), 0);
	UNIT_CHECK_STR(err, "");
	check_config(&cfg, &want);
	bf_config_free(&cfg);
	check_config(&cfg, &spec_defaults);
}

/* A second load starts from the defaults again and frees the first one's
 * strings (AddressSanitizer's leak check sees it if not). */
static void test_reload(void)
{
	char err[256];
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(load(&cfg,
			    "database: {conninfo: 'host=a'}\n"
			    "control: {socket: /tmp/a.sock}\n"
			    "engine: {max_jobs: 9}\n",
			    err, sizeof err),
		       0);
	UNIT_CHECK_STR(cfg.conninfo, "host=a");
	UNIT_CHECK_STR(cfg.control_socket, "/tmp/a.sock");
	UNIT_CHECK_INT(load(&cfg, "database: {conninfo: 'host=b'}\n", err, sizeof err), 0);
	UNIT_CHECK_STR(cfg.conninfo, "host=b");
	UNIT_CHECK_STR(cfg.control_socket, spec_defaults.control_socket);
	UNIT_CHECK_INT(cfg.max_jobs, spec_defaults.max_jobs);
	UNIT_CHECK_INT(load(&cfg, "", err, sizeof err), 0);
	check_config(&cfg, &spec_defaults);
	bf_config_free(&cfg);
}

static void test_null_string_is_default(void)
{
	char err[256];
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(
		load(&cfg, "database:\n  conninfo: ~\ncontrol:\n  socket: null\n", err, sizeof err),
		0);
	check_config(&cfg, &spec_defaults);
	UNIT_CHECK_INT(load(&cfg, "database:\n  conninfo:\n", err, sizeof err), 0);
	check_config(&cfg, &spec_defaults);
	/* Quoted, it is the string itself. */
	UNIT_CHECK_INT(load(&cfg, "control: {socket: '~'}\n", err, sizeof err), 0);
	UNIT_CHECK_STR(cfg.control_socket, "~");
	bf_config_free(&cfg);
}

/* Lists of names: flow or block sequences, or one name; ids as they are. */
static void test_name_lists(void)
{
	char err[256];
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(load(&cfg,
			    "control:\n  allowed_users: [alice, bob.smith, 1001]\n"
			    "  allowed_groups:\n    - ops\n    - db-admins\n  socket_mode: '0600'\n",
			    err, sizeof err),
		       0);
	UNIT_CHECK_STR(cfg.control_allowed_users, "alice,bob.smith,1001");
	UNIT_CHECK_STR(cfg.control_allowed_groups, "ops,db-admins");
	UNIT_CHECK_INT(cfg.control_socket_mode, 0600);
	UNIT_CHECK_INT(load(&cfg, "control:\n  allowed_users: carol\n", err, sizeof err), 0);
	UNIT_CHECK_STR(cfg.control_allowed_users, "carol");
	UNIT_CHECK_STR(cfg.control_allowed_groups, "");
	UNIT_CHECK_INT(load(&cfg, "control:\n  allowed_users: []\n", err, sizeof err), 0);
	check_config(&cfg, &spec_defaults);
	UNIT_CHECK_INT(load(&cfg, "control:\n  allowed_users: [a, '-rf']\n", err, sizeof err), -1);
	check_error(err, "t.yaml:2:", "is not a valid user or group name");
	check_config(&cfg, &spec_defaults);
	bf_config_free(&cfg);
}

/* Every case starts from a load that allocated strings, so a failed load
 * must free them and leave the defaults. */
static void test_errors(void)
{
	static const struct {
		const char *text, *where, *message;
	} cases[] = {
		/* YAML syntax, with libyaml's words and position */
		{"batch: {size: 1\n", "2:1",
		 "did not find expected ',' or '}' (while parsing a flow mapping at 1:8)"},
		{"batch:\n  size: 1\n x: 2\n", "3:2", "did not find expected key"},
		{"batch:\n\tsize: 5\n", "2:1", "found character that cannot start any token"},
		{"batch:\n  size: 5\n\tsize_min: 5\n", "3:1",
		 "found a tab character that violates indentation"},
		{"database:\n  conninfo: 'host=x\n", "3:1", "found unexpected end of stream"},
		{"database:\n  # caf\xe9\n", "2:8", "incomplete UTF-8 octet sequence"},
		{"database:\n  # \xc3\xa9t\xe9 ok\n", "2:8", "invalid trailing UTF-8 octet"},
		/* names */
		{"batch:\n  sizee: 5\n", "2:3", "unknown key \"batch.sizee\""},
		{"database:\n  conninfo: 'host=x'\nbtach:\n  size: 5\n", "3:1",
		 "unknown section \"btach\""},
		{"batch:\n  size: 1000\nsize_max: 5\n", "3:1",
		 "unknown section \"size_max\"; did you mean \"batch.size_max\", indented under \"batch:\"?"},
		{"engine:\n  max_jobs: 2\n  lease_s: 5\n  max_jobs: 3\n", "4:3",
		 "duplicate key \"engine.max_jobs\" (first at line 2)"},
		{"log: {level: info}\nengine: {}\nlog: {level: debug}\n", "3:1",
		 "duplicate section \"log\" (first at line 1)"},
		/* integers */
		{"batch:\n  size: abc\n", "2:9", "\"batch.size\" must be an integer, got \"abc\""},
		{"batch:\n  size: 12abc\n", "2:9",
		 "\"batch.size\" must be an integer, got \"12abc\""},
		{"batch:\n  size: ' 12'\n", "2:9",
		 "\"batch.size\" must be an integer, got \" 12\""},
		{"batch:\n  size: 0x10\n", "2:9",
		 "\"batch.size\" must be an integer, got \"0x10\""},
		{"batch:\n  size: 1e3\n", "2:9", "\"batch.size\" must be an integer, got \"1e3\""},
		{"batch:\n  size: '-'\n", "2:9", "\"batch.size\" must be an integer, got \"-\""},
		{"batch:\n  size: 5.0\n", "2:9", "\"batch.size\" must be an integer, got \"5.0\""},
		{"batch:\n  size: ~\n", "2:9", "\"batch.size\" must be an integer, got \"~\""},
		{"batch:\n  size:\n", "2:8",
		 "\"batch.size\" must be an integer, got an empty value"},
		{"batch:\n  size: ''\n", "2:9",
		 "\"batch.size\" must be an integer, got an empty value"},
		{"batch:\n  size: 99999999999999999999\n", "2:9",
		 "\"batch.size\" must be between 1 and 10000000, got 99999999999999999999"},
		{"batch:\n  size: -99999999999999999999\n", "2:9",
		 "\"batch.size\" must be between 1 and 10000000, got -99999999999999999999"},
		{"batch:\n  size: 2147483648\n", "2:9",
		 "\"batch.size\" must be between 1 and 10000000, got 2147483648"},
		{"engine:\n  max_jobs: 0\n", "2:13",
		 "\"engine.max_jobs\" must be between 1 and 256, got 0"},
		{"engine:\n  max_jobs: 257\n", "2:13",
		 "\"engine.max_jobs\" must be between 1 and 256, got 257"},
		{"engine:\n  shutdown_grace_ms: -1\n", "2:22",
		 "\"engine.shutdown_grace_ms\" must be between 0 and 3600000, got -1"},
		{"log:\n  level: verbose\n", "2:10",
		 "\"log.level\" must be one of debug, info, notice, warning, error, got \"verbose\""},
		/* shapes */
		{"batch: 5\n", "1:8", "section \"batch\" must be a mapping of keys, got \"5\""},
		{"batch:\n  - size: 5\n", "2:3",
		 "section \"batch\" must be a mapping of keys, got a sequence"},
		{"batch:\n  size:\n    min: 5\n", "3:5",
		 "\"batch.size\" must be a single value, got a mapping"},
		{"control:\n  socket: [a, b]\n", "2:11",
		 "\"control.socket\" must be a single value, got a sequence"},
		{"batch:\n  ? [size]\n  : 5\n", "2:5",
		 "expected a key in section \"batch\", got a sequence"},
		{"? {batch: 1}\n: 5\n", "1:3", "expected a section name, got a mapping"},
		{"- batch\n", "1:1",
		 "expected a mapping of sections (database:, engine:, ...), got a sequence"},
		{"batch\n", "1:1",
		 "expected a mapping of sections (database:, engine:, ...), got \"batch\""},
		{"batch: {size: &n 5000}\nretry: {max_failures: *n}\n", "2:23",
		 "aliases (*n) are not supported"},
		{"batch: {}\n---\nbatch: {}\n", "2:1", "only one YAML document is allowed"},
		/* cross-key checks name the key the file set last */
		{"batch:\n  size: 50\n", "2:3",
		 "\"batch.size_min\" (100) must not be greater than \"batch.size\" (50)"},
		{"batch:\n  size_min: 2000\n", "2:3",
		 "\"batch.size_min\" (2000) must not be greater than \"batch.size\" (1000)"},
		{"batch:\n  size: 60000\n", "2:3",
		 "\"batch.size\" (60000) must not be greater than \"batch.size_max\" (50000)"},
		{"batch:\n  size_max: 200\n  size: 300\n", "3:3",
		 "\"batch.size\" (300) must not be greater than \"batch.size_max\" (200)"},
		{"batch:\n  size: 300\n  size_max: 200\n", "3:3",
		 "\"batch.size\" (300) must not be greater than \"batch.size_max\" (200)"},
		{"batch:\n  size_min: 300\n  size_max: 200\n", "3:3",
		 "\"batch.size\" (1000) must not be greater than \"batch.size_max\" (200)"},
		{"retry:\n  max_ms: 100\n", "2:3",
		 "\"retry.initial_ms\" (500) must not be greater than \"retry.max_ms\" (100)"},
		{"retry: {initial_ms: 40000}\n", "1:9",
		 "\"retry.initial_ms\" (40000) must not be greater than \"retry.max_ms\" (30000)"},
		/* a message stays on one line whatever the value holds */
		{"batch: {size: \"1\\n2\\t3\"}\n", "1:15",
		 "\"batch.size\" must be an integer, got \"1?2?3\""},
	};
	char err[512], want[512];
	bf_config cfg;

	bf_config_defaults(&cfg);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		UNIT_CHECK_INT(load(&cfg,
				    "database: {conninfo: 'host=old'}\n"
				    "control: {socket: /tmp/old.sock}\n",
				    err, sizeof err),
			       0);
		UNIT_CHECK_INT(load(&cfg, cases[i].text, err, sizeof err), -1);
		snprintf(want, sizeof want, "t.yaml:%s: %s", cases[i].where, cases[i].message);
		check_error(err, want, want);
		check_config(&cfg, &spec_defaults);
	}
	bf_config_free(&cfg);
}

static void test_missing_file(void)
{
	char err[256], want[256];
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(bf_config_load(&cfg, "tests/config/no-such.yaml", err, sizeof err), -1);
	snprintf(want, sizeof want, "tests/config/no-such.yaml: %s", strerror(ENOENT));
	UNIT_CHECK_STR(err, want);
	UNIT_CHECK_INT(bf_config_load(&cfg, "tests/config", err, sizeof err), -1);
	snprintf(want, sizeof want, "tests/config: %s", strerror(EISDIR));
	UNIT_CHECK_STR(err, want);
	check_config(&cfg, &spec_defaults);
	bf_config_free(&cfg);
}

static void test_small_error_buffer(void)
{
	char err[8];
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(load(&cfg, "batch:\n  sizee: 1\n", err, sizeof err), -1);
	UNIT_CHECK_STR(err, "t.yaml:");
	UNIT_CHECK_INT(load(&cfg, "batch:\n  sizee: 1\n", NULL, 0), -1);
	UNIT_CHECK_INT(bf_config_load(&cfg, "tests/config/no-such.yaml", NULL, 0), -1);
	bf_config_free(&cfg);
}

/* The shipped example must load cleanly and say exactly the defaults. */
static void test_example_config(void)
{
	char err[512] = "";
	bf_config cfg;

	bf_config_defaults(&cfg);
	UNIT_CHECK_INT(bf_config_load(&cfg, "config/backfilld.yaml", err, sizeof err), 0);
	UNIT_CHECK_STR(err, "");
	check_config(&cfg, &spec_defaults);
	bf_config_free(&cfg);
}

/* Whether name is listed in EXPECTED, which is held with a leading newline. */
static int expected_lists(const char *expected, const char *name)
{
	char entry[300];

	snprintf(entry, sizeof entry, "\n%s\t", name);
	return strstr(expected, entry) != NULL;
}

static void test_bad_corpus(void)
{
	char expected[16384], err[512], path[256], prefix[300];
	char *line, *save = NULL;
	FILE *f = fopen(BAD_DIR "EXPECTED", "r");
	size_t len;
	int checked = 0;
	DIR *dir;
	struct dirent *entry;
	bf_config cfg;

	UNIT_CHECK(f != NULL);
	if (!f)
		return;
	expected[0] = '\n';
	len = fread(expected + 1, 1, sizeof expected - 2, f);
	expected[len + 1] = '\0';
	fclose(f);

	/* Every broken file has an entry: none is silently untested. */
	dir = opendir(BAD_DIR);
	UNIT_CHECK(dir != NULL);
	while (dir && (entry = readdir(dir))) {
		const char *dot = strrchr(entry->d_name, '.');

		if (dot && strcmp(dot, ".yaml") == 0 && !expected_lists(expected, entry->d_name)) {
			fprintf(stderr, "%s%s is not listed in EXPECTED\n", BAD_DIR, entry->d_name);
			UNIT_CHECK(0);
		}
	}
	if (dir)
		closedir(dir);

	bf_config_defaults(&cfg);
	for (line = strtok_r(expected, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *file = line, *where, *substring;

		if (*line == '#')
			continue;
		where = strchr(file, '\t');
		substring = where ? strchr(where + 1, '\t') : NULL;
		UNIT_CHECK(substring != NULL);
		if (!substring)
			continue;
		*where++ = '\0';
		*substring++ = '\0';
		snprintf(path, sizeof path, BAD_DIR "%s", file);
		snprintf(prefix, sizeof prefix, "%s:%s: ", path, where);
		UNIT_CHECK_INT(bf_config_load(&cfg, path, err, sizeof err), -1);
		check_error(err, prefix, substring);
		check_config(&cfg, &spec_defaults);
		checked++;
	}
	bf_config_free(&cfg);
	UNIT_CHECK(checked >= 10);
}

int main(void)
{
	UNIT_RUN(test_defaults);
	UNIT_RUN(test_log_levels);
	UNIT_RUN(test_empty_documents);
	UNIT_RUN(test_full_file);
	UNIT_RUN(test_reload);
	UNIT_RUN(test_null_string_is_default);
	UNIT_RUN(test_name_lists);
	UNIT_RUN(test_errors);
	UNIT_RUN(test_missing_file);
	UNIT_RUN(test_small_error_buffer);
	UNIT_RUN(test_example_config);
	UNIT_RUN(test_bad_corpus);
	return UNIT_DONE();
}
