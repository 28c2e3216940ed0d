/* status.c -- builds the status object of backfillctl status. */
#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

const char bf_status_sql[] =
	"SELECT c.paused, c.paused_at, c.paused_by, j.*\n"
	"FROM (SELECT coalesce(bool_or(paused), false) AS paused,\n"
	"             max(to_json(paused_at) #>> '{}') AS paused_at, max(paused_by) AS paused_by\n"
	"      FROM backfill.control) c\n"
	"LEFT JOIN LATERAL (\n"
	"  SELECT id, name, table_name, kind, state, priority, owner, rows_scanned, rows_updated,\n"
	"         batches, rows_estimate, last_error, settings::text,\n"
	"         to_json(started_at) #>> '{}', to_json(finished_at) #>> '{}',\n"
	"         to_json(updated_at) #>> '{}', live::text, batch_size,\n"
	"         coalesce(lease_until > now(), false)\n"
	"  FROM backfill.jobs\n"
	"  WHERE CASE WHEN $1::text IS NULL\n"
	"             THEN state IN ('pending', 'running', 'paused')\n"
	"                  OR finished_at > now() - interval '24 hours'\n"
	"             ELSE name = $1 END\n"
	"  ORDER BY CASE state WHEN 'running' THEN 0 WHEN 'paused' THEN 1 WHEN 'pending' THEN 2\n"
	"           ELSE 3 END, priority, id\n"
	") j ON true";

#define REASONS_MAX 16

static const char *cell(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *int_cell(const PGresult *res, int row, int col)
{
	const char *v = cell(res, row, col);

	return v ? json_integer(strtoll(v, NULL, 10)) : json_null();
}

static double rounded(double v, double unit)
{
	return (double)(long long)(v / unit + 0.5) * unit;
}

/* The fields only the daemon running a job knows. */
static json_t *job_live(const bf_job *job, uint64_t now)
{
	char *reasons[REASONS_MAX];
	int n = bf_job_throttle_reasons(job, reasons, REASONS_MAX);
	json_t *list = json_array();
	double rate = bf_job_rate(job, now);
	double throttled_s = bf_job_throttled_s(job, now);
	double alive_s = (double)(now - job->started_ns) / 1e9;
	json_t *eta = json_null();

	for (int i = 0; i < n; i++) {
		json_array_append_new(list, json_string(reasons[i]));
		free(reasons[i]);
	}
	if (job->walk_done)
		eta = json_integer(0);
	else if (rate > 0 && job->rows_estimate > job->rows_scanned)
		eta = json_integer((
			json_int_t)((double)(job->rows_estimate - job->rows_scanned) / rate + 0.5));
	return json_pack("{s:s, s:i, s:f, s:o, s:b, s:o, s:f, s:f, s:I}", "phase",
			 bf_job_phase_name(job), "batch_size", bf_batch_size_get(&job->batch_size),
			 "rate_rows_s", rounded(rate, 0.1), "eta_s", eta, "throttled", n > 0,
			 "throttle_reasons", list, "throttled_s", rounded(throttled_s, 0.1),
			 "throttled_share",
			 alive_s > 0 ? rounded(throttled_s / alive_s, 0.001) : 0.0,
			 "sessions_waited", (json_int_t)job->sessions_held);
}

char *bf_status_live_all(bf_engine *engine)
{
	json_t *all = json_object();
	uint64_t now = uv_hrtime();
	char id[24];

	for (bf_job *job = engine->jobs; job; job = job->next) {
		snprintf(id, sizeof(id), "%" PRId64, job->id);
		json_object_set_new(all, id, job_live(job, now));
	}
	char *text = json_dumps(all, JSON_COMPACT);

	json_decref(all);
	return text;
}

static double progress_of(const char *state, int64_t scanned, int64_t estimate, int walk_done)
{
	if (strcmp(state, "succeeded") == 0)
		return 1.0;
	if (walk_done)
		return 0.99;
	if (estimate <= 0)
		return 0.0;
	double p = (double)scanned / (double)estimate;

	/* The estimate is the planner's: never claim done before it is. */
	return rounded(p > 0.99 ? 0.99 : p, 0.0001);
}

/* A job from its row; ours (job != NULL) from memory where fresher. */
static json_t *job_object(const PGresult *res, int row, bf_job *job, int paused_all, uint64_t now)
{
	const char *state = cell(res, row, BF_ST_STATE);
	const char *live_text = cell(res, row, BF_ST_LIVE);
	int running = strcmp(state, "running") == 0;
	int lease_live = strcmp(PQgetvalue(res, row, BF_ST_LEASE_LIVE), "t") == 0;
	json_t *settings = cell(res, row, BF_ST_SETTINGS)
				   ? json_loads(cell(res, row, BF_ST_SETTINGS), 0, NULL)
				   : NULL;
	int64_t scanned = strtoll(PQgetvalue(res, row, BF_ST_ROWS_SCANNED), NULL, 10);
	int64_t updated = strtoll(PQgetvalue(res, row, BF_ST_ROWS_UPDATED), NULL, 10);
	int64_t batches = strtoll(PQgetvalue(res, row, BF_ST_BATCHES), NULL, 10);
	int64_t estimate = cell(res, row, BF_ST_ROWS_ESTIMATE)
				   ? strtoll(cell(res, row, BF_ST_ROWS_ESTIMATE), NULL, 10)
				   : -1;
	json_t *live = NULL;

	if (job && running) {
		/* Ours: the last committed batch is in memory already. */
		scanned = job->rows_scanned > scanned ? job->rows_scanned : scanned;
		updated = job->rows_updated > updated ? job->rows_updated : updated;
		batches = job->batches > batches ? job->batches : batches;
		if (job->rows_estimate >= 0)
			estimate = job->rows_estimate;
		live = job_live(job, now);
	} else if (running && lease_live && live_text) {
		live = json_loads(live_text, 0, NULL);
	}
	if (!live || !json_is_object(live)) {
		json_decref(live);
		live = json_pack("{s:n, s:o, s:f, s:n, s:b, s:[], s:f, s:f, s:i}", "phase",
				 "batch_size", int_cell(res, row, BF_ST_BATCH_SIZE), "rate_rows_s",
				 0.0, "eta_s", "throttled", 0, "throttle_reasons", "throttled_s",
				 0.0, "throttled_share", 0.0, "sessions_waited", 0);
	}
	/* What holds back a job nobody runs right now. */
	json_t *reasons = json_object_get(live, "throttle_reasons");

	if (json_is_array(reasons) && json_array_size(reasons) == 0) {
		if (strcmp(state, "paused") == 0) {
			const char *name = cell(res, row, BF_ST_NAME);
			size_t n = strlen(name);
			char text[1200];

			/* A name longer than fits is cut on a character
			 * boundary: json_string refuses broken UTF-8. */
			if (n > 1000)
				for (n = 1000; n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80; n--)
					;
			snprintf(text, sizeof(text),
				 "paused: this job is paused (backfillctl resume %.*s%s)", (int)n,
				 name, name[n] ? "..." : "");
			json_array_append_new(reasons, json_string(text));
		} else if (paused_all && (running || strcmp(state, "pending") == 0)) {
			json_array_append_new(
				reasons,
				json_string(
					"paused: every job is held by backfillctl pause --all"));
		}
		if (json_array_size(reasons) > 0)
			json_object_set_new(live, "throttled", json_true());
	}

	json_t *obj = json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:o, s:o, s:b, s:I, s:I, s:I, s:o, s:f, s:o, s:o, s:o}",
		"id", (json_int_t)strtoll(PQgetvalue(res, row, BF_ST_ID), NULL, 10), "name",
		cell(res, row, BF_ST_NAME), "table", cell(res, row, BF_ST_TABLE), "kind",
		cell(res, row, BF_ST_KIND), "state", state, "priority",
		int_cell(res, row, BF_ST_PRIORITY), "owner",
		str_or_null(cell(res, row, BF_ST_OWNER)), "here", job != NULL, "rows_scanned",
		(json_int_t)scanned, "rows_updated", (json_int_t)updated, "batches",
		(json_int_t)batches, "rows_estimate",
		estimate >= 0 ? json_integer(estimate) : json_null(), "progress",
		progress_of(state, scanned, estimate, job && job->walk_done), "last_error",
		str_or_null(cell(res, row, BF_ST_LAST_ERROR)), "settings",
		settings ? settings : json_object(), "started_at",
		str_or_null(cell(res, row, BF_ST_STARTED_AT)));

	if (!obj) {
		json_decref(live);
		return NULL;
	}
	json_object_set_new(obj, "finished_at", str_or_null(cell(res, row, BF_ST_FINISHED_AT)));
	json_object_set_new(obj, "updated_at", str_or_null(cell(res, row, BF_ST_UPDATED_AT)));
	/* phase, batch_size, rate_rows_s, eta_s, throttled, throttle_reasons,
	 * throttled_s, throttled_share */
	json_object_update(obj, live);
	json_decref(live);
	return obj;
}

/* A job of ours when the database cannot be asked. */
static json_t *job_from_memory(bf_job *job, int paused_all, uint64_t now)
{
	json_t *obj = json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:n, s:s, s:b, s:I, s:I, s:I, s:o, s:f, "
		"s:n, s:o, s:n, s:n, s:n}",
		"id", (json_int_t)job->id, "name", job->name, "table", job->table_name, "kind",
		job->kind == BF_KIND_SQL ? "sql" : "update", "state", "running", "priority",
		"owner", job->owner, "here", 1, "rows_scanned", (json_int_t)job->rows_scanned,
		"rows_updated", (json_int_t)job->rows_updated, "batches", (json_int_t)job->batches,
		"rows_estimate",
		job->rows_estimate >= 0 ? json_integer(job->rows_estimate) : json_null(),
		"progress",
		progress_of("running", job->rows_scanned, job->rows_estimate, job->walk_done),
		"last_error", "settings", json_object(), "started_at", "finished_at", "updated_at");
	json_t *live = job_live(job, now);

	(void)paused_all;
	if (obj)
		json_object_update(obj, live);
	json_decref(live);
	return obj;
}

void bf_status_summary(bf_engine *engine, char *buf, size_t len)
{
	int held = 0;
	double rate = 0;
	uint64_t now = uv_hrtime();
	const char *why;

	for (bf_job *job = engine->jobs; job; job = job->next) {
		char *reasons[REASONS_MAX];
		int n = bf_job_throttle_reasons(job, reasons, REASONS_MAX);

		held += n > 0;
		for (int i = 0; i < n; i++)
			free(reasons[i]);
		rate += bf_job_rate(job, now);
	}
	if (engine->stopping)
		snprintf(buf, len, "stopping: %d job(s) finishing their batch", engine->njobs);
	else if (!bf_monitor_up(&engine->monitor, &why) && !bf_pg_is_ready(&engine->listener) &&
		 !bf_pg_is_busy(&engine->listener))
		snprintf(buf, len, "database unreachable: %.200s", why);
	else
		snprintf(buf, len, "%s%d of %d job slots busy, %d held back, %.0f rows/s",
			 engine->paused ? "ALL JOBS PAUSED (pause --all); " : "", engine->njobs,
			 engine->cfg->max_jobs, held, rate);
}

json_t *bf_status_build(bf_engine *engine, const PGresult *res, const char *db_error,
			const char *only_job)
{
	uint64_t now = uv_hrtime();
	int paused = engine->paused;
	const char *paused_at = NULL, *paused_by = NULL;
	json_t *jobs = json_array();
	char summary[512];

	if (res && PQntuples(res) > 0) {
		paused = strcmp(PQgetvalue(res, 0, BF_ST_PAUSED), "t") == 0;
		paused_at = cell(res, 0, BF_ST_PAUSED_AT);
		paused_by = cell(res, 0, BF_ST_PAUSED_BY);
		for (int i = 0; i < PQntuples(res); i++) {
			if (PQgetisnull(res, i, BF_ST_ID))
				continue;
			int64_t id = strtoll(PQgetvalue(res, i, BF_ST_ID), NULL, 10);
			json_t *obj =
				job_object(res, i, bf_engine_find_job(engine, id), paused, now);

			if (obj)
				json_array_append_new(jobs, obj);
		}
	} else if (!res) {
		for (bf_job *job = engine->jobs; job; job = job->next) {
			if (only_job && strcmp(only_job, job->name) != 0)
				continue;
			json_t *obj = job_from_memory(job, paused, now);

			if (obj)
				json_array_append_new(jobs, obj);
		}
	}
	bf_status_summary(engine, summary, sizeof(summary));

	json_t *daemon = json_pack(
		"{s:s, s:i, s:s, s:i, s:I, s:b, s:o, s:o, s:b, s:{s:b, s:o}, s:i, s:i, s:s}",
		"version", BF_VERSION, "protocol", BF_PROTO_VERSION, "owner", engine->owner, "pid",
		(int)getpid(), "uptime_s", (json_int_t)((now - engine->started_ns) / 1000000000ULL),
		"paused", paused, "paused_since", str_or_null(paused_at), "paused_by",
		str_or_null(paused_by), "stopping", engine->stopping, "database", "connected",
		res != NULL, "error", str_or_null(res ? NULL : db_error), "max_jobs",
		engine->cfg->max_jobs, "jobs_here", engine->njobs, "summary", summary);

	return json_pack("{s:o, s:o}", "daemon", daemon ? daemon : json_object(), "jobs", jobs);
}
