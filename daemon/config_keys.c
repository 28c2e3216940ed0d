/* config_keys.c -- every key of backfilld.yaml, its bounds and default, and why that default. */
#include "config_keys.h"

#include <stdio.h>
#include <string.h>

#include "settings.h"
#include "window.h"

#define MB (1024LL * 1024)
#define TB (1024LL * 1024 * 1024 * 1024)

static const char *const bf_slot_modes[] = {"all", "active", "off", NULL};

/* An application_name as a standby sends it: no commas (the list separator). */
static int bf_standby_name_check(const char *text, char *err, size_t errlen)
{
	if (*text && strlen(text) < 64 && !strchr(text, ','))
		return 0;
	snprintf(err, errlen,
		 "\"%s\" is not a standby's application_name (1 to 63 characters, no commas)",
		 text);
	return -1;
}

static int bf_window_check(const char *text, char *err, size_t errlen)
{
	int start, end;

	return bf_window_parse_one(text, &start, &end, err, errlen);
}

/* Every key. config/backfilld.yaml explains each default at length. */
const struct bf_key bf_keys[] = {
	/* "": libpq's PG* variables and .pgpass decide */
	BF_STRING("database", "conninfo", conninfo, ""),
	/* A live server answers in milliseconds; 10s rides out a slow DNS or
	 * TLS handshake, and a dead host is retried with backoff soon after. */
	BF_INT("database", "connect_timeout_ms", connect_timeout_ms, 10000, 100, 600000),

	BF_STRING("control", "socket", control_socket, "/run/backfilld/backfilld.sock"),
	/* Owner and group may steer jobs; nobody else may even connect. */
	{"control", "socket_mode", BF_KEY_MODE, offsetof(bf_config, control_socket_mode), 0, 0777,
	 0660, NULL, NULL, NULL},
	/* "": the daemon's own group. */
	BF_STRING("control", "socket_group", control_socket_group, ""),
	/* Root and the daemon's own user are always allowed. */
	BF_NAMES("control", "allowed_users", control_allowed_users),
	BF_NAMES("control", "allowed_groups", control_allowed_groups),
	/* Plenty for people and scripts; bounds the memory a flood can take. */
	BF_INT("control", "max_clients", control_max_clients, 64, 1, 4096),
	/* A client that has not sent its request (or read its reply) by then
	 * is stuck or hostile: its slot is freed. */
	BF_INT("control", "request_timeout_ms", control_request_timeout_ms, 5000, 100, 600000),

	/* One connection each: real parallelism, little of max_connections. */
	BF_INT("engine", "max_jobs", max_jobs, 4, 1, 256),
	/* One walk per job unless the job asks for more: a slice is a
	 * connection, and the database's cores are the operator's to give. */
	BF_INT("engine", "slices", slices, 1, 1, 64),
	/* A dead daemon's jobs move within 30s; renewals every lease/3
	 * survive a few seconds' hiccup. */
	BF_INT("engine", "lease_s", lease_s, 30, 2, 3600),
	/* Only a fallback for missed NOTIFYs; a cheap read of a small table. */
	BF_INT("engine", "poll_interval_ms", poll_interval_ms, 5000, 50, 3600000),
	/* Enough for an in-flight batch to commit rather than be thrown away,
	 * well inside systemd's 90s stop timeout. */
	BF_INT("engine", "shutdown_grace_ms", shutdown_grace_ms, 30000, 0, 3600000),

	/* Locks held briefly, round trips amortised; adapts from here. */
	BF_INT("batch", "size", batch_size, 1000, 1, 10000000),
	/* Below ~100 rows the commit and round trip dominate. */
	BF_INT("batch", "size_min", batch_size_min, 100, 1, 10000000),
	/* Bounds locks, WAL and rollback cost of one transaction. */
	BF_INT("batch", "size_max", batch_size_max, 50000, 1, 10000000),
	/* Row locks live until commit: the application waits at most this. */
	BF_INT("batch", "target_ms", batch_target_ms, 500, 1, 3600000),
	/* Rides out a brief application row lock; never queues it behind us long. */
	BF_INT("batch", "lock_timeout_ms", lock_timeout_ms, 2000, 1, 3600000),
	/* 60x the target: a batch this slow has a bad plan, not bad luck. */
	BF_INT("batch", "statement_timeout_ms", statement_timeout_ms, 30000, 1, 86400000),
	/* A stalled daemon's open transaction and locks die within a minute. */
	BF_INT("batch", "idle_in_transaction_timeout_ms", idle_in_transaction_timeout_ms, 60000, 1,
	       86400000),
	/* Short verification statements: no long snapshot holding back vacuum. */
	BF_INT("batch", "verify_chunk_rows", verify_chunk_rows, 100000, 1, 100000000),
	/* Rows inserted during the walk are walked too; three rounds catch
	 * what arrived during the walk and during the round before, and a
	 * job still ends under a steady stream of inserts. */
	BF_INT("batch", "catchup_rounds", catchup_rounds, 3, 0, 1000),

	/* Lag moves in seconds; a sample a second keeps the reaction within
	 * one batch or two, for one cheap query. */
	BF_INT("throttle", "sample_interval_ms", throttle_sample_interval_ms, 1000, 50, 60000),
	/* None by default: which standbys matter is the operator's call. */
	BF_LIST("throttle", "expected_standbys", throttle_expected_standbys, bf_standby_name_check),
	/* About a second of replay for a standby on ordinary disks; the gap
	 * between the marks keeps the job from flapping. */
	BF_BYTES("throttle", "replay_lag_high_bytes", throttle_replay_lag_high_bytes, 64 * MB, 0,
		 TB),
	BF_BYTES("throttle", "replay_lag_low_bytes", throttle_replay_lag_low_bytes, 16 * MB, 0, TB),
	/* Read-your-writes on replicas breaks down within seconds. */
	BF_INT("throttle", "replay_lag_high_ms", throttle_replay_lag_high_ms, 5000, 0, 86400000),
	BF_INT("throttle", "replay_lag_low_ms", throttle_replay_lag_low_ms, 1000, 0, 86400000),
	/* An abandoned slot retains WAL as surely as a slow consumer. */
	{"throttle", "logical_slots", BF_KEY_CHOICE, offsetof(bf_config, throttle_logical_slots), 0,
	 0, 0, NULL, NULL, bf_slot_modes},
	/* Change-data consumers read in bursts: wider marks than a standby's. */
	BF_BYTES("throttle", "slot_lag_high_bytes", throttle_slot_lag_high_bytes, 1024 * MB, 0, TB),
	BF_BYTES("throttle", "slot_lag_low_bytes", throttle_slot_lag_low_bytes, 256 * MB, 0, TB),
	/* Strict mode costs a round trip to the standby per batch: opt in. */
	BF_BOOL("throttle", "wait_for_replay", throttle_wait_for_replay, 0),
	BF_INT("throttle", "replay_wait_timeout_ms", throttle_replay_wait_timeout_ms, 10000, 1,
	       3600000),
	/* An application statement waiting a second on our row locks is
	 * noticeable; the batch is cheaper to redo than the wait. */
	BF_INT("throttle", "lock_wait_max_ms", throttle_lock_wait_max_ms, 1000, 1, 3600000),
	BF_INT("throttle", "lock_check_interval_ms", throttle_lock_check_interval_ms, 200, 10,
	       60000),
	/* No limit: the lag and lock signals already keep the database well. */
	BF_INT("throttle", "max_rows_per_s", throttle_max_rows_per_s, 0, 0, 1000000000),
	/* Always allowed. */
	BF_LIST("throttle", "windows", throttle_windows, bf_window_check),
	BF_STRING("throttle", "query", throttle_query, ""),

	/* Transient trouble (a lock, a failover) often clears within a second. */
	BF_INT("retry", "initial_ms", retry_initial_ms, 500, 1, 3600000),
	/* A recovered database is noticed within half a minute. */
	BF_INT("retry", "max_ms", retry_max_ms, 30000, 1, 86400000),
	/* Five in a row rules out flukes and still fails bad SQL in seconds. */
	BF_INT("retry", "max_failures", retry_max_failures, 5, 1, 1000),

	{"log", "level", BF_KEY_LOG_LEVEL, offsetof(bf_config, log_level), 0, 0, BF_LOG_INFO, NULL,
	 NULL, NULL},
};

const size_t bf_nkeys = sizeof(bf_keys) / sizeof(bf_keys[0]);

_Static_assert(sizeof(bf_keys) / sizeof(bf_keys[0]) <= BF_CONFIG_MAX_KEYS,
	       "raise BF_CONFIG_MAX_KEYS: the loader keeps a slot per key");
