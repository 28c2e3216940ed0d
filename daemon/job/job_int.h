/* job_int.h -- what the files of daemon/job/ share; not for the rest of the daemon.
 *
 * A job is one claimed row, walked on its own connection: job.c drives it
 * step by step (job_step), each step one query whose callback takes the
 * next step. The files split that walk by concept; every cross-file call
 * is declared here.
 */
#ifndef BF_JOB_INT_H
#define BF_JOB_INT_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "log.h"
#include "pgcell.h"
#include "utf8.h"

#define job_log(job, level, fmt, ...) bf_log(level, "%s: " fmt, (job)->label, ##__VA_ARGS__)

/* How often a running job logs its progress. */
#define PROGRESS_LOG_NS (10ULL * 1000 * 1000 * 1000)

static inline char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static inline void replace_str(char **dst, const char *src)
{
	free(*dst);
	*dst = dup_or_null(src);
}


static inline void fmt_int(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}


/* Parameters shared by every fenced statement: $1 id, $2 owner, $3 epoch. */
typedef struct job_params {
	char id[24], epoch[24];
	const char *values[8];
} job_params;

/* job.c: sending a query, waiting, the step driver, closing */
/* Every change of phase goes through here: a closing job never leaves
 * CLOSING (its handles are on their way out). */
void job_set_phase(bf_job *job, bf_job_phase to);
/* The job row must be re-read before the next step (a failure, a
 * notification, a reconnect, or a statement fenced out); or it was. */
void job_set_synced(bf_job *job, bool synced);
void job_close(bf_job *job);
void job_label(bf_job *job);
void job_application_name(const bf_job *job, char *buf, size_t len);
void job_params_fence(bf_job *job, job_params *p);
void job_retry_later(bf_job *job);
void job_send(bf_job *job, const char *activity, const char *sql, int nparams,
		     const char *const *params, bf_pg_query_cb cb);
void job_step(bf_job *job);
void job_wait(bf_job *job, uint64_t delay_ms);
void job_wait_for(bf_job *job, uint64_t delay_ms, const char *reason);

/* failure.c: what a failed query means for the job */
void job_query_failed(bf_job *job, const bf_pg_result *r, const char *what);
void job_succeeded_step(bf_job *job);

/* finish.c: releasing the lease, recording the end */
void job_finish(bf_job *job, const char *state, const char *error);
void job_finish_as(bf_job *job, const char *state, const char *error,
			  bool verification_failed);
void job_release(bf_job *job);

/* sync.c: the job row re-read, its knobs applied, session settings */
void job_refresh_session(bf_job *job);
void job_sync(bf_job *job);

/* report.c: what status shows of a job */
void job_sample(bf_job *job);

/* walk.c: the table resolved, the walk pinned, its bound fixed */
void job_fix_bound(bf_job *job);
void job_split(bf_job *job);
void job_pin(bf_job *job);
void job_resolve(bf_job *job);

/* batch.c: one batch, and what its result means */
void job_batch(bf_job *job);
void job_rates_settle(bf_job *job, int64_t scanned);

/* batch_failure.c: a batch that failed: narrowing, the failing key, a locked job row */
void job_batch_failed(bf_job *job, const bf_pg_result *r);
void job_narrow_passed(bf_job *job, int64_t done);
void job_probe_row_lock(bf_job *job);

/* catchup.c: rows inserted above the bound during the walk */
void job_catch_up(bf_job *job);

/* verify.c: the verification pass */
void job_verify(bf_job *job);

/* hold.c: what holds a batch back: signals, rates, windows, replay waits */
int job_hold(bf_job *job, int batches);
int job_wait_replay(bf_job *job);

#endif
