/* claims.c -- the scheduler's statements on the control table: claims, leases, releases, totals. */
#include "claims.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgcell.h"
#include "schema.h"
#include "strbuf.h"

/* Which ids a list names (claims_ids). */
enum claims_list {
	CLAIMS_SLICES,	    /* the slices we walk (their rows' ids) */
	CLAIMS_SETUPS,	    /* the jobs we set up (their rows' ids) */
	CLAIMS_SLICED_JOBS, /* the jobs we walk slices of */
};

/* {1,2,3}: an id list of what we run, as an array literal. */
static char *claims_ids(bf_engine *engine, enum claims_list which)
{
	bf_strbuf ids;
	int n = 0;

	bf_strbuf_init(&ids);
	bf_strbuf_append(&ids, "{");
	for (bf_job *job = engine->jobs; job; job = job->next) {
		if ((which == CLAIMS_SETUPS) != !job->slice_id)
			continue;
		bf_strbuf_printf(&ids, "%s%" PRId64, n++ ? "," : "",
				 which == CLAIMS_SLICES ? job->slice_id : job->id);
	}
	bf_strbuf_append(&ids, "}");
	return bf_strbuf_finish(&ids);
}

/* ---- claims ---- */

/* What both claims return: the job's definition, then the unit claimed. */
enum { CLAIM_SLICE_ID = BF_DEF_NCOLUMNS, CLAIM_SLICE, CLAIM_EPOCH, CLAIM_RANGES, CLAIM_PREV_OWNER };

static void claims_claimed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	if (!r->ok) {
		if (r->res)
			bf_warning("claiming work failed: %s", r->message);
		/* The next poll tries again. */
		engine->claim_slices = engine->want_claim = 0;
		bf_engine_kick(engine);
		return;
	}
	for (int i = 0; i < PQntuples(r->res); i++) {
		bf_job_def def;

		bf_job_def_read(r->res, i, &def);
		def.slice_id = bf_cell_int(r->res, i, CLAIM_SLICE_ID, 0);
		def.slice = (int)bf_cell_int(r->res, i, CLAIM_SLICE, 0);
		def.lease_epoch = bf_cell_int(r->res, i, CLAIM_EPOCH, 0);
		def.nranges = (int)bf_cell_int(r->res, i, CLAIM_RANGES, 1);
		/* Claimed while we began to stop: released with the rest. */
		if (!engine->stopping)
			bf_engine_run(engine, &def, bf_cell(r->res, i, CLAIM_PREV_OWNER));
	}
	/* The setups are answered: the slices next, in the slots left. */
	engine->claim_slices = !engine->claim_slices;
	if (!engine->claim_slices)
		engine->want_claim = 0;
	bf_engine_kick(engine);
}

/* Jobs whose walk is not set up (no slices yet): pending ones, and running
 * ones whose setup's lease expired; then slices, at most each job's
 * `slices` at once. The functions (schema.c) lock each job row before
 * they look at it, and return it as they read it: a job inserted after
 * this statement's snapshot is claimed too, and reading its row here
 * again would lose that claim. Both answer the job's definition, then the
 * claim. */
static const char claim_setup_sql[] =
	"SELECT " BF_JOB_DEF_COLUMNS ", 0, 0, j.lease_epoch, 1, c.prev_owner\n"
	"FROM backfill.claim_setups($1, $2, $3, $4::bigint[]) c, LATERAL (SELECT (c.job).*) j";
static const char claim_slices_sql[] =
	"SELECT " BF_JOB_DEF_COLUMNS ", c.slice_id, c.slice, c.lease_epoch, c.ranges, c.prev_owner\n"
	"FROM backfill.claim_slices($1, $2, $3, $4::bigint[]) c, LATERAL (SELECT (c.job).*) j\n"
	"ORDER BY j.priority, j.id, c.slice";

void bf_claims_claim(bf_engine *engine)
{
	char slots[16], lease[16];
	int free_slots = engine->cfg->max_jobs - engine->njobs;

	if (free_slots <= 0) {
		engine->want_claim = engine->claim_slices = 0;
		return;
	}
	char *running = claims_ids(engine, engine->claim_slices ? CLAIMS_SLICES : CLAIMS_SETUPS);

	if (!running)
		return;
	snprintf(slots, sizeof(slots), "%d", free_slots);
	snprintf(lease, sizeof(lease), "%d", engine->cfg->lease_s);
	const char *params[4] = {engine->owner, slots, lease, running};

	if (engine->claim_slices)
		bf_pg_query(&engine->listener, claim_slices_sql, 4, params, claims_claimed, engine);
	else
		bf_pg_query(&engine->listener, claim_setup_sql, 4, params, claims_claimed, engine);
	free(running);
}

/* ---- leases ---- */

/* Every walk's live fields, keyed by the id of its lease's row: the
 * renewal publishes them. */
static char *claims_live_all(bf_engine *engine)
{
	json_t *all = json_object();
	uint64_t now = uv_hrtime();
	char id[24];

	for (bf_job *job = engine->jobs; job; job = job->next) {
		snprintf(id, sizeof(id), "%" PRId64, job->slice_id ? job->slice_id : job->id);
		json_object_set_new(all, id, bf_job_live(job, now));
	}
	char *text = json_dumps(all, JSON_COMPACT);

	json_decref(all);
	return text;
}

static void claims_renewed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	if (!r->ok) {
		if (r->res)
			bf_warning("lease renewal failed: %s; retrying", r->message);
		engine->want_renew = 1;
		bf_engine_kick(engine);
		return;
	}
	for (int i = 0; i < PQntuples(r->res); i++)
		bf_warning("job \"%s\": held our lease but was not running here; released it",
			   PQgetvalue(r->res, i, 0));
	bf_engine_kick(engine);
}

/* Renews what we run, and only that: slices, and job rows being set up.
 * SKIP LOCKED: a row locked right now (its batch committing, an operator's
 * open transaction) is renewed next time, at most a third of the lease
 * later, rather than holding up every other renewal. A row that says it
 * is ours but that we do not run (a claim whose reply was lost) is given
 * back, or it would stay leased by a daemon that never runs it. Returns
 * the names of those. */
static const char renew_sql[] =
	"WITH renewed AS (\n"
	"  UPDATE backfill.slices SET lease_until = now() + $2 * interval '1 second',\n"
	"    live = $4::jsonb -> id::text\n"
	"  WHERE id IN (SELECT id FROM backfill.slices\n"
	"               WHERE owner = $1 AND state = 'running' AND id = ANY ($3::bigint[])\n"
	"               FOR UPDATE SKIP LOCKED)\n"
	"  RETURNING id\n"
	"), released AS (\n"
	"  UPDATE backfill.slices SET " BF_SCHEMA_LEASE_RELEASE_SET
	"  WHERE id IN (SELECT id FROM backfill.slices\n"
	"               WHERE owner = $1 AND id <> ALL ($3::bigint[])\n"
	"               FOR UPDATE SKIP LOCKED)\n"
	"  RETURNING job_id\n"
	"), setups AS (\n"
	"  UPDATE backfill.jobs SET lease_until = now() + $2 * interval '1 second',\n"
	"    live = $4::jsonb -> id::text\n"
	"  WHERE id IN (SELECT id FROM backfill.jobs\n"
	"               WHERE owner = $1 AND state = 'running' AND id = ANY ($5::bigint[])\n"
	"               FOR UPDATE SKIP LOCKED)\n"
	"  RETURNING id\n"
	"), setups_released AS (\n"
	"  UPDATE backfill.jobs SET " BF_SCHEMA_LEASE_RELEASE_SET
	"  WHERE id IN (SELECT id FROM backfill.jobs\n"
	"               WHERE owner = $1 AND id <> ALL ($5::bigint[])\n"
	"               FOR UPDATE SKIP LOCKED)\n"
	"  RETURNING name\n"
	")\n"
	"SELECT j.name FROM released r JOIN backfill.jobs j ON j.id = r.job_id\n"
	"UNION ALL SELECT name FROM setups_released";

void bf_claims_renew(bf_engine *engine)
{
	char lease[16];
	char *slices = claims_ids(engine, CLAIMS_SLICES);
	char *setups = claims_ids(engine, CLAIMS_SETUPS);
	/* What status shows for our walks on every other instance too. */
	char *live = claims_live_all(engine);

	if (slices && setups && live) {
		engine->want_renew = 0;
		snprintf(lease, sizeof(lease), "%d", engine->cfg->lease_s);
		const char *params[5] = {engine->owner, lease, slices, live, setups};

		bf_pg_query(&engine->listener, renew_sql, 5, params, claims_renewed, engine);
	}
	free(slices);
	free(setups);
	free(live);
}

static void claims_released_all(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	if (!r->ok)
		bf_warning("could not release leases on shutdown: %s; they expire by themselves",
			   r->message);
	else if (PQntuples(r->res) == 1 && strcmp(PQgetvalue(r->res, 0, 0), "0") != 0)
		bf_info("released %s remaining lease(s)", PQgetvalue(r->res, 0, 0));
	bf_engine_close(engine);
}

/* Last act on shutdown: walks that could not release their own lease
 * (their connection was down) are released here. Safe: no batch of ours is
 * in flight any more, and every batch is fenced anyway. */
void bf_claims_release_all(bf_engine *engine)
{
	static const char sql[] =
		"WITH s AS (UPDATE backfill.slices SET " BF_SCHEMA_LEASE_RELEASE_SET
		"           WHERE owner = $1\n"
		"           RETURNING pg_notify('" BF_NOTIFY_CHANNEL "', job_id::text || ' released')),\n"
		"     j AS (UPDATE backfill.jobs SET " BF_SCHEMA_LEASE_RELEASE_SET
		"           WHERE owner = $1 RETURNING 1)\n"
		"SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM j)";
	const char *params[1] = {engine->owner};

	if (bf_pg_query(&engine->listener, sql, 1, params, claims_released_all, engine) != 0)
		bf_engine_close(engine);
}

/* ---- totals ---- */

static void claims_rolled_up(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_engine *engine = arg;

	(void)pg;
	if (!r->ok && r->res)
		bf_warning("summing the jobs' totals failed: %s; retrying at the next poll",
			   r->message);
	bf_engine_kick(engine);
}

/* No batch writes the job row (every slice would wait on its lock): the
 * totals are summed into it here, every poll interval while batches
 * commit, and at every change of the job's state (jobs_slices_follow). A
 * row locked right now is summed next time. */
void bf_claims_rollup(bf_engine *engine)
{
	static const char sql[] =
		"UPDATE backfill.jobs j SET rows_scanned = t.rows_scanned,\n"
		"  rows_updated = t.rows_updated, batches = t.batches\n"
		"FROM (SELECT job_id, sum(rows_scanned)::bigint AS rows_scanned,\n"
		"             sum(rows_updated)::bigint AS rows_updated, sum(batches)::bigint AS batches\n"
		"      FROM backfill.slices WHERE job_id = ANY ($1::bigint[]) GROUP BY job_id) t\n"
		"WHERE j.id = t.job_id\n"
		"  AND j.id IN (SELECT id FROM backfill.jobs WHERE id = ANY ($1::bigint[])\n"
		"               FOR NO KEY UPDATE SKIP LOCKED)\n"
		"  AND (j.rows_scanned, j.rows_updated, j.batches)\n"
		"      IS DISTINCT FROM (t.rows_scanned, t.rows_updated, t.batches)";
	char *ids = claims_ids(engine, CLAIMS_SLICED_JOBS);
	const char *params[1] = {ids};

	engine->want_rollup = 0;
	if (ids)
		bf_pg_query(&engine->listener, sql, 1, params, claims_rolled_up, engine);
	free(ids);
}
