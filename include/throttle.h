/* throttle.h -- what the database says about holding jobs back, and how a
 * job judges it: the sampled signals, the limits, and hysteresis.
 *
 * The sampler (sampler.h) fills a bf_sample from the monitor connection on
 * a timer. Each job judges the latest sample against its own limits (the
 * configuration, overridden per job by the row's settings) and keeps its
 * own hysteresis memory: a signal holds above its high mark and keeps
 * holding until it falls below its low mark. Between samples, the byte
 * lags are estimated with the WAL our own batches wrote since (a batch of
 * tens of MB takes a fraction of a second; a sample comes once a second),
 * and a job whose estimate reaches a high mark waits for a fresh sample
 * before its next batch. Pure code, no I/O: the unit tests drive it with
 * synthetic samples and clocks.
 */
#ifndef BF_THROTTLE_H
#define BF_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#define BF_SAMPLE_MAX_STANDBYS 32
#define BF_SAMPLE_MAX_SLOTS 32
#define BF_THROTTLE_REASON_LEN 512
#define BF_THROTTLE_MAX_HOLDS 24

/* Which logical replication slots count. */
typedef enum bf_slot_mode {
	BF_SLOTS_ALL = 0, /* every logical slot: an abandoned one retains WAL too */
	BF_SLOTS_ACTIVE,  /* only slots a consumer is connected to */
	BF_SLOTS_OFF,
} bf_slot_mode;

typedef struct bf_standby_sample {
	char name[64];	   /* application_name */
	char state[16];	   /* streaming, catchup, startup, backup, stopping */
	int64_t lag_bytes; /* -1: no replay position reported (a starting standby, or a WAL
			    * receiver that applies nothing: pg_receivewal, a backup) */
	int64_t lag_ms;	   /* replay_lag; NULL (idle, caught up) is 0 */
	uint64_t replay_lsn; /* 0: unknown */
} bf_standby_sample;

typedef struct bf_slot_sample {
	char name[64];
	int active;
	int64_t lag_bytes; /* -1: no confirmed position */
} bf_slot_sample;

typedef struct bf_sample {
	uint64_t taken_ns; /* 0: none taken yet */
	uint64_t asked_ns; /* when its query was sent */
	char error[400];   /* non-empty: this sample failed (fail closed) */
	char role[64];	   /* the monitor's role */
	int privileged;	   /* may read others' replication positions (pg_monitor) */
	/* pg_current_wal_lsn() when sampled (the lags are measured from it); 0: unknown */
	uint64_t current_lsn;
	bf_standby_sample standbys[BF_SAMPLE_MAX_STANDBYS];
	int nstandbys;
	bf_slot_sample slots[BF_SAMPLE_MAX_SLOTS];
	int nslots;
	/* The operator's throttle query: configured, holds, and its words. */
	char locks_error[200]; /* the blocking check fails (fail closed) */
	int query_set;
	int query_holds;
	char query_reason[256];
} bf_sample;

/* A job's limits; 0 marks switch a signal off. */
typedef struct bf_limits {
	int64_t replay_lag_high_bytes, replay_lag_low_bytes;
	int64_t replay_lag_high_ms, replay_lag_low_ms;
	int64_t slot_lag_high_bytes, slot_lag_low_bytes;
	bf_slot_mode slots;
	const char *expected_standbys; /* "a,b"; "" none */
	int64_t stale_ms;	       /* a sample older than this holds (sampling stalled) */
} bf_limits;

/* A job's hysteresis memory: the signals holding it now, and since when. */
typedef struct bf_holds {
	struct {
		char key[96]; /* "replay_lag_bytes standby1" */
		uint64_t since_ns;
		int seen; /* still holding in this evaluation */
	} h[BF_THROTTLE_MAX_HOLDS];
	int n;
} bf_holds;

/* What changed in one evaluation, for the log (starts and ends only). */
typedef struct bf_throttle_change {
	char key[96];
	char reason[BF_THROTTLE_REASON_LEN]; /* started: why */
	int started;			     /* 1 started, 0 ended */
	double held_s;			     /* ended: how long it held */
} bf_throttle_change;

/* Judges sample at now_ns against limits, updating holds. Writes every
 * reason that holds the job back into reasons (at most max, each
 * BF_THROTTLE_REASON_LEN bytes) and returns how many; changes (at most
 * maxchanges, may be NULL) receive the holds that started or ended.
 *
 * ahead_bytes is the WAL this daemon wrote since the sample was taken
 * (bf_throttle_ahead). A byte-lag signal that is not holding, sampled under
 * its high mark but reaching it with ahead_bytes added, is an estimate, not
 * a hold: its reason (ending "sampling now") comes after those of the holds,
 * the last *nestimated (may be NULL) of reasons, and it changes neither
 * holds nor changes. The job must not start a batch on such a sample: it
 * waits for a fresh one. */
int bf_throttle_eval(const bf_sample *sample, const bf_limits *limits, bf_holds *holds,
		     uint64_t now_ns, int64_t ahead_bytes, char (*reasons)[BF_THROTTLE_REASON_LEN],
		     int max, int *nestimated, bf_throttle_change *changes, int maxchanges,
		     int *nchanges);

/* The WAL from the sample's position up to written_lsn (the highest position
 * our batches reported): written since the sample, so no standby or slot had
 * confirmed it then. 0 when written_lsn is not past it, or the sample has no
 * position. */
int64_t bf_throttle_ahead(const bf_sample *sample, uint64_t written_lsn);

/* "0/3000060" -> 0x3000060; 0 for NULL or malformed text. */
uint64_t bf_lsn_parse(const char *text);

/* 48 MB, 1.5 GB, 512 bytes: a byte count for people. */
void bf_format_bytes(char *buf, size_t len, int64_t bytes);

/* 1 when name is in the comma-separated list. */
int bf_list_has(const char *list, const char *name);

#endif
