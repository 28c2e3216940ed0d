/* status.c -- builds the status object of backfillctl status. */
#include "status.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgcell.h"
#include "proto.h"
#include "strbuf.h"
#include "utf8.h"

/* The timeouts first, for this transaction only (a multi-statement string
 * runs as one implicit transaction, and since PostgreSQL 13 each statement
 * gets its own statement_timeout). Then the control row and the jobs: %s
 * is the job's name as a literal or NULL, %s whether --all, %d the cut of
 * finished jobs, %s and %s the ids of our jobs with a query in flight and
 * their backend pids, whose lock waits are named. */
static const char status_sql_format[] =
	"SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = %d;\n"
	"WITH p AS (SELECT %s::text AS job, %s::boolean AS every),\n"
	"shown AS (\n"
	"  SELECT j.* FROM backfill.jobs j, p\n"
	"  WHERE CASE WHEN p.job IS NOT NULL THEN j.name = p.job\n"
	"             WHEN p.every THEN true\n"
	"             ELSE j.state NOT IN ('succeeded', 'failed', 'cancelled')\n"
	"                  OR j.id IN (SELECT id FROM backfill.jobs\n"
	"                              WHERE state IN ('succeeded', 'failed', 'cancelled')\n"
	"                                AND finished_at > now() - interval '24 hours'\n"
	"                              ORDER BY finished_at DESC, id DESC LIMIT %d) END),\n"
	"ours AS (SELECT * FROM unnest('{%s}'::bigint[], '{%s}'::int[]) AS o(id, pid)),\n"
	"blocked AS (\n"
	"  SELECT o.id, json_build_object(\n"
	"    'waiting_s', (SELECT round(extract(epoch FROM now() - min(l.waitstart))::numeric, 1)\n"
	"                  FROM pg_locks l WHERE NOT l.granted\n"
	"                    AND l.pid IN (SELECT pid FROM ours x WHERE x.id = o.id)),\n"
	"    'pids', json_agg(json_build_object('pid', b.pid, 'user', a.usename,\n"
	"      'application', a.application_name, 'state', a.state,\n"
	"      'xact_s', round(extract(epoch FROM now() - a.xact_start)::numeric, 1),\n"
	"      'state_s', round(extract(epoch FROM now() - a.state_change)::numeric, 1))\n"
	"      ORDER BY b.pid))::text AS info\n"
	"  FROM ours o CROSS JOIN LATERAL unnest(pg_blocking_pids(o.pid)) AS b(pid)\n"
	"  LEFT JOIN pg_stat_activity a ON a.pid = b.pid\n"
	"  GROUP BY o.id)\n"
	"SELECT c.paused, c.paused_at, c.paused_by,\n"
	"       CASE WHEN p.job IS NULL AND NOT p.every\n"
	"            THEN (SELECT count(*) FROM backfill.jobs) - (SELECT count(*) FROM shown)\n"
	"            ELSE 0 END,\n"
	"       j.*\n"
	"FROM p, (SELECT coalesce(bool_or(paused), false) AS paused,\n"
	"             max(to_json(paused_at) #>> '{}') AS paused_at, max(paused_by) AS paused_by\n"
	"      FROM backfill.control) c\n"
	"LEFT JOIN LATERAL (\n"
	"  SELECT s.id, name, table_name, kind, state, priority, l.owner,\n"
	"         coalesce(t.rows_scanned, s.rows_scanned), coalesce(t.rows_updated, s.rows_updated),\n"
	"         coalesce(t.batches, s.batches), rows_estimate, last_error, settings::text,\n"
	"         to_json(started_at) #>> '{}', to_json(finished_at) #>> '{}',\n"
	"         to_json(updated_at) #>> '{}', live::text, batch_size,\n"
	"         coalesce(l.lease_until > now(), false), to_json(l.lease_until) #>> '{}',\n"
	"         round(extract(epoch FROM l.lease_until - now())::numeric, 1), b.info,\n"
	"         rows_left, catchup_rounds, repairing, verification_failed, t.slices\n"
	"  FROM shown s LEFT JOIN blocked b ON b.id = s.id\n"
	/* The job's lease while it is set up; then its first slice's. */
	"  LEFT JOIN LATERAL (\n"
	"    SELECT s.owner, s.lease_until WHERE s.owner IS NOT NULL\n"
	"    UNION ALL (SELECT x.owner, x.lease_until FROM backfill.slices x\n"
	"               WHERE x.job_id = s.id AND x.owner IS NOT NULL ORDER BY x.slice)\n"
	"    LIMIT 1) l ON true\n"
	/* Its slices, and their sums: fresher than the row's totals. */
	"  LEFT JOIN LATERAL (\n"
	"    SELECT sum(x.rows_scanned)::bigint AS rows_scanned,\n"
	"           sum(x.rows_updated)::bigint AS rows_updated, sum(x.batches)::bigint AS batches,\n"
	"           json_agg(json_build_object('id', x.id, 'slice', x.slice, 'state', x.state,\n"
	"             'owner', x.owner, 'lower_bound', x.lower_bound, 'upper_bound', x.upper_bound,\n"
	"             'checkpoint', x.checkpoint, 'rows_estimate', x.rows_estimate,\n"
	"             'rows_scanned', x.rows_scanned, 'rows_updated', x.rows_updated,\n"
	"             'batches', x.batches, 'lease_until', to_json(x.lease_until) #>> '{}',\n"
	"             'lease_live', coalesce(x.lease_until > now(), false),\n"
	"             'lease_expires_in_s', round(extract(epoch FROM x.lease_until - now())::numeric, 1),\n"
	"             'live', x.live, 'last_error', x.last_error) ORDER BY x.slice)::text AS slices\n"
	"    FROM backfill.slices x WHERE x.job_id = s.id HAVING count(*) > 0) t ON true\n"
	"  ORDER BY CASE state WHEN 'running' THEN 0 WHEN 'paused' THEN 1 WHEN 'pending' THEN 2\n"
	"           ELSE 3 END, priority, finished_at DESC NULLS FIRST, s.id\n"
	") j ON true";

char *bf_status_sql(bf_engine *engine, bf_pg *pg, const char *job, int all)
{
	bf_strbuf ids, pids;
	char *name = NULL, *sql = NULL, *id_text, *pid_text;
	int n = 0;

	if (job && !(name = bf_pg_escape_literal(pg, job)))
		return NULL;
	bf_strbuf_init(&ids);
	bf_strbuf_init(&pids);
	/* Only a job with a query in flight can be waiting for a lock. */
	for (bf_job *j = engine->jobs; j; j = j->next) {
		if (bf_job_query_pid(j) <= 0)
			continue;
		bf_strbuf_printf(&ids, "%s%" PRId64, n ? "," : "", j->id);
		bf_strbuf_printf(&pids, "%s%d", n ? "," : "", bf_job_query_pid(j));
		n++;
	}
	id_text = bf_strbuf_finish(&ids);
	pid_text = bf_strbuf_finish(&pids);
	if (id_text && pid_text) {
		bf_strbuf out;

		bf_strbuf_init(&out);
		bf_strbuf_printf(&out, status_sql_format, BF_STATUS_LOCK_TIMEOUT_MS,
				 BF_STATUS_DB_TIMEOUT_MS, name ? name : "NULL",
				 all ? "true" : "false", BF_STATUS_FINISHED_MAX, id_text, pid_text);
		sql = bf_strbuf_finish(&out);
	}
	free(id_text);
	free(pid_text);
	free(name);
	return sql;
}

#define REASONS_MAX 16

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *int_cell(const PGresult *res, int row, int col)
{
	const char *v = bf_cell(res, row, col);

	return v ? json_integer(strtoll(v, NULL, 10)) : json_null();
}

static double rounded(double v, double unit)
{
	return (double)(long long)(v / unit + 0.5) * unit;
}

static double progress_of(const char *state, int64_t scanned, int64_t estimate)
{
	if (strcmp(state, "succeeded") == 0)
		return 1.0;
	if (estimate <= 0)
		return 0.0;
	double p = (double)scanned / (double)estimate;

	/* The estimate is the planner's: never claim done before it is. */
	return rounded(p > 0.99 ? 0.99 : p, 0.0001);
}

/* The reason a job nobody runs right now is held back, when it is paused. */
static void add_pause_reason(json_t *live, const char *state, const char *name, int paused_all)
{
	json_t *reasons = json_object_get(live, "throttle_reasons");
	int running = strcmp(state, "running") == 0;

	if (!json_is_array(reasons) || json_array_size(reasons) > 0)
		return;
	if (strcmp(state, "paused") == 0) {
		size_t n = strlen(name);
		char text[1200];

		/* A name longer than fits is cut on a character boundary:
		 * json_string refuses broken UTF-8. */
		if (n > 1000)
			n = bf_utf8_cut(name, 1000);
		snprintf(text, sizeof(text),
			 "paused: this job is paused (backfillctl resume %.*s%s)", (int)n, name,
			 name[n] ? "..." : "");
		json_array_append_new(reasons, json_string(text));
	} else if (paused_all && (running || strcmp(state, "pending") == 0)) {
		json_array_append_new(
			reasons,
			json_string("paused: every job is held by backfillctl pause --all"));
	}
	if (json_array_size(reasons) > 0)
		json_object_set_new(live, "throttled", json_true());
}

/* A paused job (by its own state or by pause --all) scans nothing: the
 * rate of the minute before the pause, and an ETA from it, would be news
 * that is not true. rate_rows_s stays a number (the contract), eta_s null. */
static void stop_clock_if_paused(json_t *live, const char *state, int paused_all)
{
	int active = strcmp(state, "running") == 0 || strcmp(state, "pending") == 0;

	if (strcmp(state, "paused") != 0 && !(paused_all && active))
		return;
	json_object_set_new(live, "rate_rows_s", json_real(0));
	json_object_set_new(live, "eta_s", json_null());
}

/* Who holds the lease of a running job another daemon (or a dead one)
 * owns, and when it ends: after a crash the job sits "running" under a
 * dead owner until then. owner_alive is false only when the owner ran on
 * this host and its pid is gone; null when we cannot tell. */
static void add_lease(json_t *obj, const PGresult *res, int row, const bf_engine *engine, int here)
{
	const char *owner = bf_cell(res, row, BF_ST_OWNER),
		   *left = bf_cell(res, row, BF_ST_LEASE_LEFT_S);
	json_t *alive = json_null();

	json_object_set_new(obj, "lease_until", str_or_null(bf_cell(res, row, BF_ST_LEASE_UNTIL)));
	json_object_set_new(obj, "lease_expires_in_s",
			    left ? json_real(strtod(left, NULL)) : json_null());
	if (here) {
		alive = json_true();
	} else if (owner) {
		const char *ours = strrchr(engine->owner, ':'), *theirs = strrchr(owner, ':');

		/* host:pid:random; the host is everything before ":pid". */
		if (ours && theirs && theirs > owner) {
			const char *pid_at = theirs - 1, *our_pid_at = ours - 1;

			while (pid_at > owner && *pid_at != ':')
				pid_at--;
			while (our_pid_at > engine->owner && *our_pid_at != ':')
				our_pid_at--;
			long pid = strtol(pid_at + 1, NULL, 10);

			if (*pid_at == ':' && pid > 0 &&
			    pid_at - owner == our_pid_at - engine->owner &&
			    strncmp(owner, engine->owner, (size_t)(pid_at - owner)) == 0 &&
			    kill((pid_t)pid, 0) != 0 && errno == ESRCH)
				alive = json_false();
		}
	}
	json_object_set_new(obj, "owner_alive", alive);
}

/* Whom the batch of a job of ours waits for: pids, how long, their state
 * (never their query text: it is the application's). */
static void add_blocked(json_t *obj, const PGresult *res, int row)
{
	const char *text = res ? bf_cell(res, row, BF_ST_BLOCKED) : NULL;
	json_t *info = text ? json_loads(text, 0, NULL) : NULL;
	json_t *pids = json_object_get(info, "pids");

	json_object_set_new(obj, "blocked_by",
			    json_is_array(pids) ? json_incref(pids) : json_array());
	json_object_set(obj, "lock_wait_s",
			json_is_number(json_object_get(info, "waiting_s"))
				? json_object_get(info, "waiting_s")
				: json_null());
	json_decref(info);
}

/* The row's counters, merged with ours (from memory, fresher) for a job we
 * run. */
typedef struct row_counts {
	int64_t scanned, updated, batches, estimate;
} row_counts;

static row_counts counts_of(const PGresult *res, int row, const bf_job *job, int running)
{
	row_counts c = {
		.scanned = bf_cell_int(res, row, BF_ST_ROWS_SCANNED, 0),
		.updated = bf_cell_int(res, row, BF_ST_ROWS_UPDATED, 0),
		.batches = bf_cell_int(res, row, BF_ST_BATCHES, 0),
		.estimate = bf_cell_int(res, row, BF_ST_ROWS_ESTIMATE, -1),
	};

	if (job && running) {
		/* Ours: the last committed batch is in memory already. */
		c.scanned = job->rows_scanned > c.scanned ? job->rows_scanned : c.scanned;
		c.updated = job->rows_updated > c.updated ? job->rows_updated : c.updated;
		c.batches = job->batches > c.batches ? job->batches : c.batches;
		if (job->rows_estimate >= 0)
			c.estimate = job->rows_estimate;
	}
	return c;
}

/* ---- a job's slices ---- */

/* Several slices' live fields as the job's: rates and waits add up, any
 * hold holds the job (every reason, once), the biggest batch. One slice's
 * are the job's as they are. */
static json_t *live_of_slices(json_t *lives, int64_t left)
{
	size_t n = json_array_size(lives), i;
	json_t *one, *reasons = json_array();
	double rate = 0, throttled_s = 0, share = 0;
	json_int_t batch = 0, waited = 0;
	int held = 0;

	if (n == 1) {
		json_decref(reasons);
		return json_incref(json_array_get(lives, 0));
	}
	json_array_foreach(lives, i, one) {
		json_t *r, *why = json_object_get(one, "throttle_reasons");
		size_t k, m;

		rate += json_number_value(json_object_get(one, "rate_rows_s"));
		throttled_s += json_number_value(json_object_get(one, "throttled_s"));
		share += json_number_value(json_object_get(one, "throttled_share")) / (double)n;
		waited += json_integer_value(json_object_get(one, "sessions_waited"));
		if (json_integer_value(json_object_get(one, "batch_size")) > batch)
			batch = json_integer_value(json_object_get(one, "batch_size"));
		held |= json_is_true(json_object_get(one, "throttled"));
		json_array_foreach(why, k, r) {
			for (m = 0; m < json_array_size(reasons); m++)
				if (json_equal(json_array_get(reasons, m), r))
					break;
			if (m == json_array_size(reasons))
				json_array_append(reasons, r);
		}
	}
	return json_pack("{s:s, s:I, s:f, s:o, s:b, s:o, s:f, s:f, s:I}", "phase",
			 n ? json_string_value(json_object_get(json_array_get(lives, 0), "phase"))
			   : "pending",
			 "batch_size", batch, "rate_rows_s", rounded(rate, 0.1), "eta_s",
			 rate > 0 && left >= 0 ? json_integer((json_int_t)((double)left / rate))
					       : json_null(),
			 "throttled", held, "throttle_reasons", reasons, "throttled_s",
			 rounded(throttled_s, 0.1), "throttled_share", rounded(share, 0.001),
			 "sessions_waited", waited);
}

/* One slice as status shows it, ours from memory where fresher; its live
 * fields (a running slice's) are appended to lives. */
static void slice_merge(json_t *sl, bf_engine *engine, int64_t job_id, int running_job,
			uint64_t now, json_t *lives, row_counts *c, int *here)
{
	bf_job *walk = bf_engine_find_job(engine, job_id,
					  json_integer_value(json_object_get(sl, "id")));
	int running = running_job && strcmp(json_string_value(json_object_get(sl, "state")) ?: "",
					    "running") == 0;
	json_t *live = NULL;

	if (walk && running) {
		*here = 1;
		if (walk->rows_scanned > json_integer_value(json_object_get(sl, "rows_scanned"))) {
			json_object_set_new(sl, "rows_scanned", json_integer(walk->rows_scanned));
			json_object_set_new(sl, "rows_updated", json_integer(walk->rows_updated));
			json_object_set_new(sl, "batches", json_integer(walk->batches));
			json_object_set_new(sl, "checkpoint", str_or_null(walk->checkpoint));
		}
		live = bf_job_live(walk, now);
	} else if (running && json_is_true(json_object_get(sl, "lease_live"))) {
		live = json_incref(json_object_get(sl, "live"));
	}
	json_object_del(sl, "live");
	json_object_set_new(sl, "here", json_boolean(walk != NULL));
	c->scanned += json_integer_value(json_object_get(sl, "rows_scanned"));
	c->updated += json_integer_value(json_object_get(sl, "rows_updated"));
	c->batches += json_integer_value(json_object_get(sl, "batches"));
	if (json_is_object(live)) {
		json_object_update(sl, live);
		json_array_append(lives, live);
	}
	json_decref(live);
}

/* The job's slices (NULL before its walk is set up), merged with ours;
 * their sums go into *c, the job's live fields into *live. */
static json_t *job_slices(const PGresult *res, int row, bf_engine *engine, int64_t id,
			  int running, uint64_t now, row_counts *c, json_t **live, int *here)
{
	const char *text = bf_cell(res, row, BF_ST_SLICES);
	json_t *slices = text ? json_loads(text, 0, NULL) : NULL, *sl, *lives;
	size_t i;

	if (!json_is_array(slices)) {
		json_decref(slices);
		return NULL;
	}
	lives = json_array();
	c->scanned = c->updated = c->batches = 0;
	json_array_foreach(slices, i, sl)
		slice_merge(sl, engine, id, running, now, lives, c, here);
	if (json_array_size(lives) > 0)
		*live = live_of_slices(lives, c->estimate >= 0 && c->estimate > c->scanned
						      ? c->estimate - c->scanned
						      : -1);
	json_decref(lives);
	return slices;
}

/* A job from its row and its slices'; ours from memory where fresher. */
static json_t *job_object(const PGresult *res, int row, bf_engine *engine, int paused_all,
			  uint64_t now)
{
	int64_t id = bf_cell_int(res, row, BF_ST_ID, 0);
	bf_job *job = bf_engine_find_job(engine, id, 0); /* its setup, if ours */
	const char *state = bf_cell(res, row, BF_ST_STATE), *name = bf_cell(res, row, BF_ST_NAME);
	const char *live_text = bf_cell(res, row, BF_ST_LIVE);
	int running = strcmp(state, "running") == 0;
	int lease_live = bf_cell_bool(res, row, BF_ST_LEASE_LIVE);
	json_t *settings = bf_cell(res, row, BF_ST_SETTINGS)
				   ? json_loads(bf_cell(res, row, BF_ST_SETTINGS), 0, NULL)
				   : NULL;
	row_counts c = counts_of(res, row, job, running);
	json_t *live = NULL;
	int here = job != NULL;
	json_t *slices = job_slices(res, row, engine, id, running, now, &c, &live, &here);

	if (slices)
		;
	else if (job && running)
		live = bf_job_live(job, now);
	else if (running && lease_live && live_text)
		live = json_loads(live_text, 0, NULL);
	if (!live || !json_is_object(live)) {
		json_decref(live);
		live = json_pack("{s:n, s:o, s:f, s:n, s:b, s:[], s:f, s:f, s:i}", "phase",
				 "batch_size", int_cell(res, row, BF_ST_BATCH_SIZE), "rate_rows_s",
				 0.0, "eta_s", "throttled", 0, "throttle_reasons", "throttled_s",
				 0.0, "throttled_share", 0.0, "sessions_waited", 0);
	}
	add_pause_reason(live, state, name, paused_all);
	stop_clock_if_paused(live, state, paused_all);

	json_t *obj = json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:o, s:o, s:b, s:I, s:I, s:I, s:o, s:f, s:o, s:o, s:o}",
		"id", (json_int_t)bf_cell_int(res, row, BF_ST_ID, 0), "name", name, "table",
		bf_cell(res, row, BF_ST_TABLE), "kind", bf_cell(res, row, BF_ST_KIND), "state",
		state, "priority", int_cell(res, row, BF_ST_PRIORITY), "owner",
		str_or_null(bf_cell(res, row, BF_ST_OWNER)), "here", here, "rows_scanned",
		(json_int_t)c.scanned, "rows_updated", (json_int_t)c.updated, "batches",
		(json_int_t)c.batches, "rows_estimate",
		c.estimate >= 0 ? json_integer(c.estimate) : json_null(), "progress",
		progress_of(state, c.scanned, c.estimate), "last_error",
		str_or_null(bf_cell(res, row, BF_ST_LAST_ERROR)), "settings",
		settings ? settings : json_object(), "started_at",
		str_or_null(bf_cell(res, row, BF_ST_STARTED_AT)));

	if (!obj) {
		json_decref(live);
		json_decref(slices);
		return NULL;
	}
	json_object_set_new(obj, "slices", slices ? slices : json_array());
	json_object_set_new(obj, "finished_at", str_or_null(bf_cell(res, row, BF_ST_FINISHED_AT)));
	json_object_set_new(obj, "updated_at", str_or_null(bf_cell(res, row, BF_ST_UPDATED_AT)));
	json_object_set_new(obj, "rows_left", int_cell(res, row, BF_ST_ROWS_LEFT));
	json_object_set_new(obj, "catchup_rounds", int_cell(res, row, BF_ST_CATCHUP_ROUNDS));
	json_object_set_new(obj, "repairing",
			    json_boolean(bf_cell_bool(res, row, BF_ST_REPAIRING)));
	json_object_set_new(obj, "verification_failed",
			    json_boolean(bf_cell_bool(res, row, BF_ST_VERIFICATION_FAILED)));
	add_lease(obj, res, row, engine, here);
	add_blocked(obj, res, row);
	/* phase, batch_size, rate_rows_s, eta_s, throttled, throttle_reasons,
	 * throttled_s, throttled_share, sessions_waited */
	json_object_update(obj, live);
	json_decref(live);
	return obj;
}

/* A job of ours when the database cannot be asked: what this daemon knows
 * (the row's other columns are unknown: null). */
static json_t *job_from_memory(bf_engine *engine, bf_job *job, int paused_all, uint64_t now)
{
	row_counts c = {0};
	json_t *lives = json_array(), *live;

	/* One object a job: at its first walk in our list, its slices' sums. */
	for (bf_job *other = engine->jobs; other != job; other = other->next)
		if (other->id == job->id) {
			json_decref(lives);
			return NULL;
		}
	for (bf_job *w = job; w; w = w->next) {
		if (w->id != job->id)
			continue;
		c.scanned += w->rows_scanned;
		c.updated += w->rows_updated;
		c.batches += w->batches;
		json_array_append_new(lives, bf_job_live(w, now));
	}
	live = live_of_slices(lives, -1);
	json_decref(lives);

	json_t *obj = json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:n, s:s, s:b, s:I, s:I, s:I, s:o, s:f, "
		"s:n, s:o, s:n, s:n, s:n, s:n, s:n, s:b, s:[], s:n}",
		"id", (json_int_t)job->id, "name", job->name, "table", job->table_name, "kind",
		job->kind == BF_KIND_SQL ? "sql" : "update", "state", "running", "priority",
		"owner", job->owner, "here", 1, "rows_scanned", (json_int_t)c.scanned,
		"rows_updated", (json_int_t)c.updated, "batches", (json_int_t)c.batches,
		"rows_estimate",
		job->rows_estimate >= 0 ? json_integer(job->rows_estimate) : json_null(),
		"progress",
		progress_of("running", c.scanned, job->rows_estimate),
		"last_error", "settings", json_object(), "started_at", "finished_at", "updated_at",
		"lease_until", "lease_expires_in_s", "owner_alive", 1, "blocked_by", "lock_wait_s");

	add_pause_reason(live, "running", job->name, paused_all);
	stop_clock_if_paused(live, "running", paused_all);
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
		/* Paused: the last minute's rate is not what happens now. */
		rate += engine->paused ? 0 : bf_job_rate(job, now);
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

/* The jobs of the answer: from the query's rows, or (res NULL) ours from
 * memory. *omitted: how many the default cut left out. */
static json_t *status_jobs(bf_engine *engine, const PGresult *res, const char *only_job, int paused,
			   uint64_t now, int64_t *omitted)
{
	json_t *jobs = json_array();

	*omitted = 0;
	if (!res) {
		for (bf_job *job = engine->jobs; job; job = job->next) {
			if (only_job && strcmp(only_job, job->name) != 0)
				continue;
			json_t *obj = job_from_memory(engine, job, paused, now);

			if (obj)
				json_array_append_new(jobs, obj);
		}
		return jobs;
	}
	if (PQntuples(res) > 0)
		*omitted = bf_cell_int(res, 0, BF_ST_OMITTED, 0);
	for (int i = 0; i < PQntuples(res); i++) {
		if (!bf_cell(res, i, BF_ST_ID))
			continue;
		json_t *obj = job_object(res, i, engine, paused, now);

		if (obj)
			json_array_append_new(jobs, obj);
	}
	return jobs;
}

json_t *bf_status_build(bf_engine *engine, const PGresult *res, const char *db_error,
			const char *only_job)
{
	uint64_t now = uv_hrtime();
	int paused = engine->paused;
	const char *paused_at = NULL, *paused_by = NULL, *why;
	char summary[512];
	int64_t omitted;

	if (res && PQntuples(res) > 0) {
		paused = bf_cell_bool(res, 0, BF_ST_PAUSED);
		paused_at = bf_cell(res, 0, BF_ST_PAUSED_AT);
		paused_by = bf_cell(res, 0, BF_ST_PAUSED_BY);
	}
	json_t *jobs = status_jobs(engine, res, only_job, paused, now, &omitted);
	int connected = bf_monitor_up(&engine->monitor, &why);

	bf_status_summary(engine, summary, sizeof(summary));

	json_t *daemon = json_pack(
		"{s:s, s:i, s:s, s:i, s:I, s:b, s:o, s:o, s:b, s:{s:b, s:o}, s:i, s:i, s:s}",
		"version", BF_VERSION, "protocol", BF_PROTO_VERSION, "owner", engine->owner, "pid",
		(int)getpid(), "uptime_s", (json_int_t)((now - engine->started_ns) / 1000000000ULL),
		"paused", paused, "paused_since", str_or_null(paused_at), "paused_by",
		str_or_null(paused_by), "stopping", engine->stopping, "database", "connected",
		connected, "error", str_or_null(res ? NULL : db_error), "max_jobs",
		engine->cfg->max_jobs, "jobs_here", engine->njobs, "summary", summary);

	/* partial: the database could not be asked; the jobs are only ours,
	 * from memory, and other instances' jobs are missing. */
	return json_pack("{s:o, s:o, s:I, s:b, s:o}", "daemon", daemon ? daemon : json_object(),
			 "jobs", jobs, "jobs_omitted", (json_int_t)omitted, "partial", res == NULL,
			 "partial_reason", str_or_null(res ? NULL : db_error));
}
