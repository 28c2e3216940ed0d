/* status.h -- what backfillctl status shows: the daemon and every job.
 *
 * Jobs this daemon runs are described from memory (fresh to the batch);
 * jobs run by another instance from what that instance last published in
 * the row's "live" column at its lease renewal; the rest from the row.
 */
#ifndef BF_STATUS_H
#define BF_STATUS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "engine.h"

/* The columns of the status query's last result, in order. */
enum {
	BF_ST_PAUSED,
	BF_ST_PAUSED_AT,
	BF_ST_PAUSED_BY,
	BF_ST_OMITTED, /* jobs the default cut left out */
	BF_ST_ID,
	BF_ST_NAME,
	BF_ST_TABLE,
	BF_ST_KIND,
	BF_ST_STATE,
	BF_ST_PRIORITY,
	BF_ST_OWNER,
	BF_ST_ROWS_SCANNED,
	BF_ST_ROWS_UPDATED,
	BF_ST_BATCHES,
	BF_ST_ROWS_ESTIMATE,
	BF_ST_LAST_ERROR,
	BF_ST_SETTINGS,
	BF_ST_STARTED_AT,
	BF_ST_FINISHED_AT,
	BF_ST_UPDATED_AT,
	BF_ST_LIVE,
	BF_ST_BATCH_SIZE,
	BF_ST_LEASE_LIVE,
	BF_ST_LEASE_UNTIL,
	BF_ST_LEASE_LEFT_S,
	BF_ST_BLOCKED, /* json: who blocks the batch of a job of ours, or NULL */
	BF_ST_ROWS_LEFT, /* above the final bound when the job ended; NULL: not counted */
	BF_ST_CATCHUP_ROUNDS,
	BF_ST_REPAIRING,
	BF_ST_VERIFICATION_FAILED,
	BF_ST_SLICES, /* json array of the job's slices; NULL before its walk is set up */
};

/* By default status lists every job not finished and the finished ones of
 * the last day, at most this many (the newest): with thousands of finished
 * jobs, an answer of megabytes helped nobody. --all lists every job. */
#define BF_STATUS_FINISHED_MAX 50

/* The status query's server-side bounds: status must answer while a lock
 * on the jobs table or a slow server holds it up, from memory if need be.
 * The lock wait ends first, so that the reason given is the lock. */
#define BF_STATUS_LOCK_TIMEOUT_MS 1000
#define BF_STATUS_DB_TIMEOUT_MS	  1500

/* The status query as one simple-protocol string (its timeouts set with
 * SET LOCAL in the same round trip), for job (NULL: the default cut, or
 * every job when all) on the monitor connection pg, which escapes the
 * name. malloc'd; NULL when pg cannot escape (not connected) or out of
 * memory. Its last result always has at least one row (job columns NULL
 * if none). */
char *bf_status_sql(bf_engine *engine, bf_pg *pg, const char *job, int all);

/* The status object. res may be NULL (the status query failed or did not
 * answer: db_error says why); the jobs are then only ours, from memory, and
 * the answer says "partial". */
json_t *bf_status_build(bf_engine *engine, const PGresult *res, const char *db_error,
			const char *only_job);

/* One line for sd_notify STATUS= and the log. */
void bf_status_summary(bf_engine *engine, char *buf, size_t len);

#endif
