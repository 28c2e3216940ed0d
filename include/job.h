/* job.h -- one claimed job: its own connection, its keyset walk, its checkpoint.
 *
 * A job is created from a claimed row and runs until it finishes
 * (succeeded/failed), finds the row no longer its own (lease lost, paused,
 * cancelled, re-queued), or is asked to stop. Then it closes its connection
 * and hands itself back to the engine, which frees it.
 */
#ifndef BF_JOB_H
#define BF_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "batch_size.h"
#include "backoff.h"
#include "config.h"
#include "keyset.h"
#include "pg.h"
#include "resolve.h"
#include "rate.h"
#include "sampler.h"
#include "throttle.h"

typedef struct bf_job bf_job;

/* What a job needs of its owner (the engine), given when it starts: a job
 * calls no function of its owner but these. None is called before
 * bf_job_start returns. */
typedef struct bf_job_ops {
	/* pause --all in effect (every batch held). */
	bool (*paused)(void *owner);
	/* What the job read of backfill.control: the owner follows it. */
	void (*set_paused)(void *owner, bool paused);
	/* Outside the allowed time windows: writes the reason and returns
	 * the ms until the next look; 0 when allowed now. */
	uint64_t (*window_wait)(void *owner, char *reason, size_t len);
	/* The owner's walk of that job and slice, or NULL (a reply may
	 * outlive it). */
	bf_job *(*find)(void *owner, int64_t id, int64_t slice_id);
	/* The job's setup went on as its first slice: what its lease is on
	 * changed (renewals, status). */
	void (*unit_changed)(void *owner, bf_job *job);
	/* The job's last call, once it has closed; it is freed right after.
	 * Never for a job whose bf_job_start failed. */
	void (*closed)(void *owner, bf_job *job);
} bf_job_ops;

typedef struct bf_job_env {
	uv_loop_t *loop;
	const bf_config *cfg;
	const char *owner_name;	   /* the lease owner: host:pid:random */
	struct bf_monitor *monitor; /* control-plane queries, batch cancels */
	struct bf_sampler *sampler; /* throttle signals */
	bf_rate *rate;		    /* throttle.max_rows_per_s over every job */
	const bf_job_ops *ops;
	void *owner;
} bf_job_env;

/* What the claim query returned: the job's definition and our lease. */
typedef struct bf_job_def {
	int64_t id;
	const char *name;
	const char *table_name;
	const char *kind;
	const char *set_clause;
	const char *where_clause;
	const char *statement;
	const char *key_columns; /* text[] literal or NULL: the primary key */
	int batch_size;		 /* 0: the configured default */
	int64_t lease_epoch;
	const char *created_by; /* the role that scheduled it; NULL for rows older than that */
	bool allow_triggers;	/* the author vouches for code on the table */
	int slices;		/* ranges to cut the walk into; 0: engine.slices */
	/* What was claimed: a slice (its row id, number and lease epoch; the
	 * claim fills these in), or, with slice_id 0, the job row itself, to
	 * set its walk up (the bound, the pin, the slices). */
	int64_t slice_id;
	int slice;
	int nranges; /* the job's ranges when claimed, for the log */
} bf_job_def;

/* A job's definition as a SELECT (or RETURNING) list over backfill.jobs
 * aliased j, with its columns by name: the claim and backfillctl plan read
 * the same row the same way. */
#define BF_JOB_DEF_COLUMNS                                                                         \
	"j.id, j.name, j.table_name, j.kind, j.set_clause, j.where_clause, j.statement,\n"         \
	"  j.key_columns, j.batch_size, j.lease_epoch, j.created_by, j.allow_triggers, j.slices"
enum bf_job_def_col {
	BF_DEF_ID,
	BF_DEF_NAME,
	BF_DEF_TABLE_NAME,
	BF_DEF_KIND,
	BF_DEF_SET_CLAUSE,
	BF_DEF_WHERE_CLAUSE,
	BF_DEF_STATEMENT,
	BF_DEF_KEY_COLUMNS,
	BF_DEF_BATCH_SIZE,
	BF_DEF_LEASE_EPOCH,
	BF_DEF_CREATED_BY,
	BF_DEF_ALLOW_TRIGGERS,
	BF_DEF_SLICES,
	BF_DEF_NCOLUMNS /* the query's own columns follow */
};

/* def from row `row` of a result that starts with BF_JOB_DEF_COLUMNS; its
 * strings point into res. */
void bf_job_def_read(const PGresult *res, int row, bf_job_def *def);

typedef enum bf_job_phase {
	BF_JOB_CONNECTING, /* waiting for its connection */
	BF_JOB_QUERY,	   /* a query of the walk is in flight */
	BF_JOB_WAITING,	   /* retry backoff timer */
	BF_JOB_CLOSING,	   /* its handles are closing; it is freed once they have */
} bf_job_phase;

/* Whether a job may go from one phase to another: a closing job never
 * leaves CLOSING (its timer and connection are on their way out, and a
 * query or a wait would outlive them), and closes only once. Every other
 * change is a step of the walk. */
bool bf_job_phase_change_allowed(bf_job_phase from, bf_job_phase to);

struct bf_job {
	bf_job *next; /* the owner's list */
	bf_job_env env;
	const bf_config *cfg; /* env.cfg */
	const char *owner;    /* env.owner_name */
	bool started;	      /* bf_job_start succeeded: the owner hears of its close */

	int64_t id;
	char *name;
	char *table_name;
	bf_job_kind kind;
	char *set_clause, *where_clause, *statement;
	char *key_columns;
	char *created_by;
	bool allow_triggers;
	char *definition_error; /* the row cannot be run as written: fail it */
	int64_t lease_epoch;   /* of the slice's row; of the job row while setting up */
	int slices;	       /* ranges asked for (the row's, else engine.slices) */
	/* The slice this walks: its row in backfill.slices (0: none; the job
	 * row is claimed to set the walk up), its number, and whether it is
	 * the last range (the one that catches up with rows inserted above
	 * the bound). */
	int64_t slice_id;
	int slice;
	int nranges;	 /* the job's ranges, as last read */
	int nactive;	 /* ... not done yet: max_rows_per_s is shared among them */
	bool last_slice;
	char *lower_bound; /* text[] literal, exclusive; NULL: from the first key */
	char label[300];   /* "job \"name\"" or "job \"name\" slice 2/4", for the log */

	/* What the slice's row says (the job row's while setting up), re-read
	 * after every failure. */
	bool synced;
	char *checkpoint;  /* text[] literal; NULL before the first batch */
	char *upper_bound; /* text[] literal; "{}" for an empty table; NULL: not fixed yet */
	int64_t batches, rows_scanned, rows_updated;
	int64_t rows_estimate; /* -1: unknown */
	uint32_t pinned_oid; /* the table the walk was fixed on (table_oid); 0: none yet */
	char *pinned_key;    /* its key columns and types (walk_key); NULL: none yet */
	int catchup_rounds;  /* catch-up rounds done past the first bound */
	bool repairing;	     /* a repair pass after a failed verification */

	/* The table, resolved on this connection (again after every sync). */
	bool resolved;
	bool resolved_once; /* its "walking ..." line is logged */
	bf_table table;
	bf_walk walk;

	/* Walk and verification progress, known only since the last sync: a
	 * re-read row is the whole truth, and a walk it says is unfinished
	 * goes on (a batch past the end finds nothing and ends it again). */
	bool walk_done;
	bool caught_up;	     /* no catch-up round is due: verify next */
	bool verify_started;
	char *verify_checkpoint;
	int64_t verify_matching;

	bf_batch_size batch_size;
	int batch_limit;       /* the size the batch in flight was sent with */
	int64_t sessions_held; /* sessions that waited on its batches' row locks */
	bf_backoff retry;
	int failures;  /* non-transient failures in a row */
	bool finishing; /* the last query sent records the job's end */
	int cuts;      /* batches in a row cut at their first row */
	/* A batch failed on its data: smaller batches find the row (see
	 * job_batch_failed). narrow_limit 0: not narrowing. */
	int narrow_limit;
	int64_t narrow_span;	/* rows of the first failed batch not yet passed */
	char *narrow_error;	/* that failure, for last_error */
	int min_timeouts;	/* statement timeouts in a row at the minimum batch size */
	bool row_locked;	/* a lock timeout: probe the job row before the next batch */
	bool row_lock_held;	/* ... and the probe found it held by someone */
	char *finish_error;	/* what the end being recorded says, for the log */
	uint64_t query_started_ns;
	uint64_t last_progress_ns;

	/* Run-time knobs from the row (backfillctl set): applied at each sync,
	 * over the configuration's defaults. */
	char *settings_text;   /* the row's settings as last applied */
	int batch_size_column; /* the row's batch_size as last applied; 0: none */
	bf_rate rate;	       /* max_rows_per_s of this job, its share of it */
	int rate_share;	       /* ... among that many ranges */
	bf_limits limits;      /* the replication marks */
	int lock_wait_max_ms;
	int lock_timeout_ms, statement_timeout_ms;
	bool wait_for_replay;
	int replay_wait_timeout_ms;

	/* Throttling: what the latest sample says, and the holds it keeps. */
	bf_holds holds;
	char signals[12][BF_THROTTLE_REASON_LEN];
	int nsignals;
	int nestimated; /* the last of signals: lags estimated past a mark, sampling now */
	bool held;	    /* waiting because of holds (not a retry backoff) */
	char hold_reasons[16][BF_THROTTLE_REASON_LEN]; /* every reason of that wait */
	int nhold_reasons;
	bool window_held;    /* outside the time windows (logged once) */
	int64_t reserved;   /* rows the batch in flight reserved of its own rate */
	int64_t overall_reserved; /* ... of the daemon's rate (claimed while waiting) */
	uint64_t overall_slot_ns; /* when its turn under the daemon's rate comes; 0: none */
	bool replay_waiting; /* strict mode: the last batch is not on the standbys yet */
	bool replay_wait_active; /* the job's current wait is that one */
	uint64_t replay_target, replay_since_ns;

	/* What status shows. */
	const char *activity;	     /* the query in flight, in words */
	char wait_reason[1100];	     /* why the job is waiting: a throttle reason */
	uint64_t wake_ns;	     /* when the wait ends */
	uint64_t started_ns;	     /* claimed */
	uint64_t throttled_since_ns; /* 0: not throttled now */
	uint64_t throttled_total_ns;
	struct {
		uint64_t t_ns;
		int64_t rows;
	} samples[32]; /* (time, rows_scanned) after each batch, for the rate */
	int nsamples, sample_next;

	bool in_batch;	      /* the query in flight is a batch */
	bool cancel_requested; /* we asked the server to cancel it */
	bool cancel_blocking;  /* ... because it blocked a session (not pause --now) */
	char blocking[256];   /* whom it blocked */
	bool session_stale;    /* the configuration was reloaded: re-apply session settings */

	bf_job_phase phase;
	bool stop_requested;
	int closes_pending;
	bf_pg pg;
	uv_timer_t timer;
};

/* Creates the job and starts connecting. Returns NULL when out of memory. */
bf_job *bf_job_start(const bf_job_env *env, const bf_job_def *def);

/* Something may have changed the row (a NOTIFY, a failed lease renewal):
 * re-read it before the next batch, and now if the job is only waiting. */
void bf_job_poke(bf_job *job);

/* Shutdown: let the query in flight finish, release the lease, close. */
void bf_job_stop(bf_job *job);

/* Shutdown grace is over: drop the connection now (the server rolls the
 * batch back) and close. */
void bf_job_abort(bf_job *job);

/* pause --now, cancel --now: ask the server to cancel the batch in flight
 * (from the monitor connection); it rolls back and the row is re-read. */
void bf_job_cancel_batch(bf_job *job);

/* The configuration was reloaded: new bounds now, session settings before
 * the next query. */
void bf_job_reconfigure(bf_job *job);

/* For status: rows/s over the last minute (0 when unknown), seconds
 * throttled so far, and the reasons holding the job back now (each a
 * malloc'd string appended to reasons, at most max; returns the count). */
double bf_job_rate(const bf_job *job, uint64_t now_ns);
double bf_job_throttled_s(const bf_job *job, uint64_t now_ns);
int bf_job_throttle_reasons(const bf_job *job, char **reasons, int max);
const char *bf_job_phase_name(const bf_job *job);
/* What only the daemon running the job knows, as status and the row's
 * live column show it: phase, batch_size, rate_rows_s, eta_s, throttled,
 * throttle_reasons, throttled_s, throttled_share, sessions_waited. A new
 * reference; NULL when out of memory. */
json_t *bf_job_live(const bf_job *job, uint64_t now_ns);
/* The server pid of the job's connection while a query is in flight, and
 * while that query is a batch; 0 otherwise. */
int bf_job_query_pid(const bf_job *job);
int bf_job_batch_pid(const bf_job *job);
/* Strict mode: the job waits for the standbys to replay its last batch. */
bool bf_job_replay_waiting(const bf_job *job);

/* A new throttle sample: judge it (the log records holds that start and
 * end) and, if the job waits only because of the signals, look again. */
void bf_job_on_sample(bf_job *job, const bf_sample *sample);

/* A session waits on a lock our batch holds: cancel the batch when the
 * wait is DDL or past lock_wait_max_ms. Returns in how many ms this wait
 * passes the threshold (0: no need to look again for it). */
int64_t bf_job_on_blocked(bf_job *job, const bf_blocked *b);

/* Strict mode: a replay poll; the job continues once its batch reached
 * the standbys. */
void bf_job_on_replay(bf_job *job, const bf_sample *poll);


#endif
