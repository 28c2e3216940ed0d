/* schema.h -- the control schema "backfill": created and upgraded by the daemon. */
#ifndef BF_SCHEMA_H
#define BF_SCHEMA_H

/* The newest schema version this daemon knows. */
int bf_schema_version(void);

/* One script, for the simple query protocol, that brings the schema to
 * bf_schema_version() in a single transaction: idempotent, and serialized
 * between daemons starting at once by a transaction-scoped advisory lock.
 * Its last statement returns one row: the schema's version after the run
 * (larger than ours when a newer daemon already upgraded it).
 * Returns a static string. */
const char *bf_schema_install_sql(void);

/* The channel the jobs trigger notifies on. */
#define BF_NOTIFY_CHANNEL "backfill_jobs"

/* Giving a job's lease back, as the SET list of an UPDATE of backfill.jobs:
 * no owner, no lease, and a running job pending again for any daemon (a
 * paused or cancelled one keeps its state). */
#define BF_SCHEMA_LEASE_RELEASE_SET                                                                \
	"owner = NULL, lease_until = NULL,\n"                                                      \
	"  state = CASE WHEN state = 'running' THEN 'pending' ELSE state END\n"

#endif
