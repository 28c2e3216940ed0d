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

/* The columns bf_status_sql returns, in order. */
enum {
	BF_ST_PAUSED,
	BF_ST_PAUSED_AT,
	BF_ST_PAUSED_BY,
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
};

/* $1: a job name, or NULL for every job not finished and those finished in
 * the last 24 hours. Always at least one row (job columns NULL if none). */
extern const char bf_status_sql[];

/* The status object. res may be NULL (the database is unreachable: db_error
 * says why); the jobs are then only ours, from memory. */
json_t *bf_status_build(bf_engine *engine, const PGresult *res, const char *db_error,
			const char *only_job);

/* {"<id>": live, ...} of every job we run, as JSON text (malloc'd). */
char *bf_status_live_all(bf_engine *engine);

/* One line for sd_notify STATUS= and the log. */
void bf_status_summary(bf_engine *engine, char *buf, size_t len);

#endif
