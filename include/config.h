/* config.h -- backfilld.yaml: the daemon's settings, loaded with libyaml.
 *
 * Every key lives in one table in config.c ({section, key, type, target,
 * bounds, default}); this struct is what the rest of the daemon reads.
 * config/backfilld.yaml documents every key and why its default is what it is.
 */
#ifndef BF_CONFIG_H
#define BF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BF_CONFIG_DEFAULT_PATH "/etc/backfilld/backfilld.yaml"

typedef enum bf_log_level {
	BF_LOG_DEBUG = 0,
	BF_LOG_INFO,
	BF_LOG_NOTICE,
	BF_LOG_WARNING,
	BF_LOG_ERROR,
} bf_log_level;

typedef struct bf_config {
	/* database */
	char *conninfo;		/* libpq conninfo; "" means libpq's PG* defaults */
	int connect_timeout_ms; /* a connect attempt that takes longer is abandoned */

	/* control */
	char *control_socket; /* path of the unix control socket */
	int control_socket_mode;
	char *control_socket_group;   /* "": the daemon's group */
	char *control_allowed_users;  /* "a,b": names or numeric uids */
	char *control_allowed_groups; /* "a,b": names or numeric gids */
	int control_max_clients;
	int control_request_timeout_ms;

	/* engine */
	int slices;	       /* key ranges a job is split into when its row says nothing */
	int max_jobs;	       /* jobs this daemon runs at once (one connection each) */
	int lease_s;	       /* how long a claim stays valid without renewal */
	int poll_interval_ms;  /* fallback poll of backfill.jobs when no NOTIFY arrives */
	int shutdown_grace_ms; /* SIGTERM: how long in-flight batches may take to finish */

	/* batch */
	int batch_size; /* starting batch size when the job row gives none */
	int batch_size_min;
	int batch_size_max;
	int batch_target_ms; /* the batch size adapts toward this batch duration */
	int lock_timeout_ms;
	int statement_timeout_ms;
	int idle_in_transaction_timeout_ms;
	int verify_chunk_rows; /* rows counted per statement in the verification pass */
	int catchup_rounds;    /* walks on past the bound for rows inserted meanwhile */

	/* throttle (throttle.h, sampler.h) */
	int throttle_sample_interval_ms;
	char *throttle_expected_standbys; /* "a,b": application_name values */
	int64_t throttle_replay_lag_high_bytes, throttle_replay_lag_low_bytes;
	int throttle_replay_lag_high_ms, throttle_replay_lag_low_ms;
	int throttle_logical_slots; /* bf_slot_mode */
	int64_t throttle_slot_lag_high_bytes, throttle_slot_lag_low_bytes;
	int throttle_wait_for_replay;
	int throttle_replay_wait_timeout_ms;
	int throttle_lock_wait_max_ms;
	int throttle_lock_check_interval_ms;
	int throttle_max_rows_per_s; /* over all jobs of this daemon; 0: no limit */
	char *throttle_windows;		 /* "22:00-06:00,...": local time; "": always */
	char *throttle_query;		 /* "": none */

	/* retry */
	int retry_initial_ms;	/* first backoff after a failed batch or connection */
	int retry_max_ms;	/* backoff cap */
	int retry_max_failures; /* non-transient failures in a row before a job is failed */

	/* log */
	bf_log_level log_level;
} bf_config;

/* Fills cfg with every key's default. Never fails. */
void bf_config_defaults(bf_config *cfg);

/* Loads path over the defaults: cfg must hold defaults or an earlier load,
 * which is freed first, and keys the file leaves out take their default. An
 * empty file is valid. On error returns -1, leaves a one-line message
 * "FILE:LINE:COL: what is wrong" in err (errlen bytes) and frees whatever it
 * had allocated in cfg, leaving cfg at its defaults. To keep the old settings
 * when a reload fails, load into a second bf_config and swap on success. */
int bf_config_load(bf_config *cfg, const char *path, char *err, size_t errlen);

/* Same as bf_config_load but from a buffer; name is used in messages. */
int bf_config_load_buffer(bf_config *cfg, const char *name, const char *buf, size_t len, char *err,
			  size_t errlen);

/* Frees the strings of cfg (not cfg itself) and leaves cfg at its defaults,
 * so freeing twice is harmless. */
void bf_config_free(bf_config *cfg);

/* "debug", "info", ... -> level; -1 if unknown. */
int bf_log_level_parse(const char *name);
const char *bf_log_level_name(bf_log_level level);

#endif
