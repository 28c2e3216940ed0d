/* commands.c -- status, pause, resume, cancel, set: the control schema is the truth. */
#include "commands.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "monitor.h"
#include "schema.h"
#include "settings.h"
#include "status.h"

typedef struct cmd_call {
	bf_commands *cmds;
	bf_client *client;
	bf_request *req;
	char by[128];
} cmd_call;

static cmd_call *call_new(bf_commands *cmds, bf_client *client, bf_request *req)
{
	cmd_call *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	call->cmds = cmds;
	call->client = client;
	call->req = req;
	snprintf(call->by, sizeof(call->by), "uid %d via backfillctl", (int)bf_client_uid(client));
	return call;
}

static void call_reply(cmd_call *call, char *line)
{
	bf_client_reply(call->client, line);
	bf_request_free(call->req);
	free(call->req);
	free(call);
}

static void call_reply_ok(cmd_call *call, json_t *result)
{
	call_reply(call, result ? bf_response_ok(result) : NULL);
}

/* A failed query: the database's words, for the operator. */
static void call_reply_db_error(cmd_call *call, const bf_pg_result *r)
{
	if (!r->res)
		call_reply(call, bf_response_error(BF_ERR_DATABASE, "database unreachable: %s",
						   r->message));
	else
		call_reply(call,
			   bf_response_error(BF_ERR_DATABASE, "database error: %s (SQLSTATE %s)",
					     r->message, r->sqlstate ? r->sqlstate : "none"));
}

/* A failed query, or no row for the job named: answered here (1). */
static int call_failed_or_missing(cmd_call *call, const bf_pg_result *r)
{
	if (!r->ok) {
		call_reply_db_error(call, r);
		return 1;
	}
	if (PQntuples(r->res) == 0) {
		call_reply(call, bf_response_error(BF_ERR_NO_SUCH_JOB, "no such job: \"%s\"",
						   call->req->job));
		return 1;
	}
	return 0;
}

static json_t *message_result(const char *fmt, ...) BF_PRINTF(1, 2);

static json_t *message_result(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "message", msg);
}

/* ---- status ---- */

/* How long status waits for the database before it answers from memory:
 * the query's own timeouts (BF_STATUS_DB_TIMEOUT_MS) plus a round trip.
 * A network black hole answers nothing at all; the operator still gets
 * what this daemon knows, at once rather than after the monitor gives up. */
#define STATUS_DB_WAIT_MS (BF_STATUS_DB_TIMEOUT_MS + 500)

/* A status request. Freed once both the monitor's callback (always called,
 * exactly once) and the timer's close callback have run; answered by
 * whichever of the query and the timer comes first. */
typedef struct status_call {
	bf_commands *cmds;
	bf_client *client;
	bf_request *req;
	uv_timer_t timer;
	int answered;
	int timed_out; /* counted in cmds->status_stuck until the query returns */
	int refs;
} status_call;

static void status_unref(status_call *st)
{
	if (--st->refs > 0)
		return;
	bf_request_free(st->req);
	free(st->req);
	free(st);
}

static void status_timer_closed(uv_handle_t *handle)
{
	status_unref(handle->data);
}

/* res NULL: the query failed or did not answer (why): ours, from memory. */
static void status_answer(status_call *st, const PGresult *res, const char *why)
{
	const char *job = st->req->job;
	json_t *result;

	st->answered = 1;
	uv_close((uv_handle_t *)&st->timer, status_timer_closed);
	result = bf_status_build(st->cmds->engine, res, why, job);
	if (result && job && json_array_size(json_object_get(result, "jobs")) == 0) {
		json_decref(result);
		if (res)
			bf_client_reply(st->client, bf_response_error(BF_ERR_NO_SUCH_JOB,
								      "no such job: \"%s\"", job));
		else
			bf_client_reply(st->client,
					bf_response_error(BF_ERR_DATABASE,
							  "cannot read job \"%s\" (this daemon "
							  "does not run it): %s",
							  job, why));
		return;
	}
	bf_client_reply(st->client, result ? bf_response_ok(result) : NULL);
}

static void status_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	status_call *st = arg;
	char why[700];

	(void)pg;
	if (st->timed_out)
		st->cmds->status_stuck--;
	if (!st->answered) {
		if (r->ok)
			status_answer(st, r->res, NULL);
		else {
			snprintf(why, sizeof(why), "%s%s",
				 r->res ? "the status query failed: " : "", r->message);
			status_answer(st, NULL, why);
		}
	}
	status_unref(st);
}

static void status_timeout(uv_timer_t *timer)
{
	status_call *st = timer->data;
	char why[128];

	snprintf(why, sizeof(why), "the database did not answer the status query within %.1f s",
		 STATUS_DB_WAIT_MS / 1000.0);
	st->timed_out = 1;
	st->cmds->status_stuck++;
	status_answer(st, NULL, why);
}

static void cmd_status(bf_commands *cmds, bf_client *client, bf_request *req)
{
	bf_monitor *monitor = bf_engine_monitor(cmds->engine);
	status_call *st = calloc(1, sizeof(*st));
	const char *why;
	char *sql;

	if (!st) {
		bf_client_reply(client, NULL);
		bf_request_free(req);
		free(req);
		return;
	}
	st->cmds = cmds;
	st->client = client;
	st->req = req;
	st->refs = 1; /* the timer */
	uv_timer_init(bf_engine_loop(cmds->engine), &st->timer);
	st->timer.data = st;
	if (!bf_monitor_up(monitor, &why)) {
		status_answer(st, NULL, why);
		return;
	}
	/* The database holds an earlier status query past its deadline: this
	 * one would wait the same, and pile up on the monitor connection ahead
	 * of the throttle samples. */
	if (cmds->status_stuck > 0) {
		status_answer(st, NULL,
			      "an earlier status query has not come back from the "
			      "database yet");
		return;
	}
	if (!(sql = bf_status_sql(cmds->engine, &monitor->pg, req->job, req->all))) {
		status_answer(st, NULL,
			      "cannot build the status query (out of memory, or the "
			      "job's name is not valid in the database's encoding)");
		return;
	}
	st->refs++; /* the monitor's callback */
	uv_timer_start(&st->timer, status_timeout, STATUS_DB_WAIT_MS, 0);
	bf_monitor_query(monitor, sql, 0, NULL, status_done, st);
	free(sql);
}

/* ---- pause, resume, cancel: one job ---- */

/* The states a transition applies to, and where it leads. */
typedef struct transition {
	bf_cmd cmd;
	const char *to;
	const char *from_sql;	/* SQL list of the states it applies to */
	const char *from_words; /* the same, for people */
	const char *done;	/* "paused", ... for messages */
} transition;

static const transition transitions[] = {
	{BF_CMD_PAUSE, "paused", "'pending', 'running'", "pending or running", "paused"},
	{BF_CMD_RESUME, "pending", "'paused', 'failed'", "paused or failed", "resumed"},
	{BF_CMD_CANCEL, "cancelled", "'pending', 'running', 'paused', 'failed'",
	 "pending, running, paused or failed", "cancelled"},
};

static const transition *transition_of(bf_cmd cmd)
{
	for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++)
		if (transitions[i].cmd == cmd)
			return &transitions[i];
	return NULL;
}

static void job_state_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	cmd_call *call = arg;
	const transition *t = transition_of(call->req->cmd);
	const char *name = call->req->job;

	(void)pg;
	if (call_failed_or_missing(call, r))
		return;
	const char *before = PQgetvalue(r->res, 0, 1);
	int changed = strcmp(PQgetvalue(r->res, 0, 2), "t") == 0;

	if (changed) {
		bf_notice("control: job \"%s\" %s (was %s) by %s%s", name, t->done, before,
			  call->by, call->req->now ? ", batch in flight cancelled" : "");
		json_t *result = message_result(
			"job \"%s\" %s (was %s)%s", name, t->done, before,
			call->req->cmd == BF_CMD_RESUME ? ": pending, a daemon picks it up now"
			: call->req->now ? "; the batch in flight is cancelled and rolled back"
			: strcmp(before, "running") == 0 ? "; takes effect before its next batch"
							 : "");

		json_object_set_new(result, "job", json_string(name));
		json_object_set_new(result, "state", json_string(t->to));
		json_object_set_new(result, "previous_state", json_string(before));
		call_reply_ok(call, result);
		return;
	}
	/* Asking again for what is already so is not an error. */
	if (strcmp(before, t->to) == 0 ||
	    (call->req->cmd == BF_CMD_RESUME && strcmp(before, "running") == 0)) {
		json_t *result = message_result("job \"%s\" is already %s", name, before);

		json_object_set_new(result, "job", json_string(name));
		json_object_set_new(result, "state", json_string(before));
		json_object_set_new(result, "previous_state", json_string(before));
		call_reply_ok(call, result);
		return;
	}
	call_reply(call,
		   bf_response_error(BF_ERR_REFUSED, "job \"%s\" is %s: only %s jobs can be %s",
				     name, before, t->from_sql, t->done));
}

static void cmd_job_state(cmd_call *call)
{
	const transition *t = transition_of(call->req->cmd);
	char sql[1024];
	const char *params[2] = {call->req->job, call->req->now ? "true" : "false"};

	/* One statement: the change, and (--now) the notification that makes
	 * the daemon running the job cancel its batch in flight. Both take
	 * effect at commit; the batch's fence already refuses a job that is no
	 * longer running, the cancel only spares waiting for it. */
	snprintf(sql, sizeof(sql),
		 "WITH j AS (SELECT id, state FROM backfill.jobs WHERE name = $1),\n"
		 "u AS (UPDATE backfill.jobs SET state = '%s'\n"
		 "      WHERE id = (SELECT id FROM j) AND state IN (%s) RETURNING id)\n"
		 "SELECT j.id, j.state, EXISTS (SELECT FROM u),\n"
		 "       CASE WHEN $2::boolean AND EXISTS (SELECT FROM u)\n"
		 "            THEN pg_notify('" BF_NOTIFY_CHANNEL
		 "', j.id || ' cancel-batch') END\n"
		 "FROM j",
		 t->to, t->from_sql);
	bf_monitor_query(bf_engine_monitor(call->cmds->engine), sql, 2, params, job_state_done,
			 call);
}

/* ---- pause --all, resume --all ---- */

static void all_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	cmd_call *call = arg;
	int pause = call->req->cmd == BF_CMD_PAUSE;
	json_t *result;

	(void)pg;
	if (!r->ok) {
		call_reply_db_error(call, r);
		return;
	}
	int was = strcmp(PQgetvalue(r->res, 0, 0), "t") == 0;
	const char *since = PQgetisnull(r->res, 0, 1) ? "" : PQgetvalue(r->res, 0, 1);
	long held = strtol(PQgetvalue(r->res, 0, 2), NULL, 10);

	bf_engine_set_paused(call->cmds->engine, pause);
	if (pause) {
		if (!was)
			bf_notice("control: pause --all by %s%s", call->by,
				  call->req->now ? ", batches in flight cancelled" : "");
		result = was ? message_result("all jobs were already paused (since %s)", since)
			     : message_result("all jobs paused: no batch of any job starts until "
					      "backfillctl resume --all%s",
					      call->req->now ? "; batches in flight are cancelled"
							     : "");
	} else {
		if (was)
			bf_notice("control: resume --all by %s", call->by);
		if (held > 0)
			result = message_result("%s; %ld job(s) stay paused on their own: "
						"resume them by name",
						was ? "pause --all lifted: jobs continue"
						    : "jobs were not paused with --all",
						held);
		else
			result = message_result("%s", was ? "pause --all lifted: jobs continue"
							  : "jobs were not paused with --all");
	}
	json_object_set_new(result, "paused", json_boolean(pause));
	json_object_set_new(result, "was_paused", json_boolean(was));
	call_reply_ok(call, result);
}

static void cmd_all(cmd_call *call)
{
	/* An upsert: the row may have been deleted by hand. The old value
	 * comes from the locked row read first. */
	static const char pause_sql[] =
		"WITH old AS (SELECT paused FROM backfill.control FOR UPDATE),\n"
		"u AS (INSERT INTO backfill.control AS c (singleton, paused, paused_at, paused_by)\n"
		"      VALUES (true, true, now(), $1)\n"
		"      ON CONFLICT (singleton) DO UPDATE SET paused = true,\n"
		"        paused_at = CASE WHEN c.paused THEN c.paused_at ELSE now() END,\n"
		"        paused_by = CASE WHEN c.paused THEN c.paused_by ELSE $1 END,\n"
		"        updated_at = now()\n"
		"      RETURNING paused_at)\n"
		"SELECT coalesce((SELECT paused FROM old), false),\n"
		"       (SELECT to_json(paused_at) #>> '{}' FROM u),\n"
		"       (SELECT count(*) FROM backfill.jobs WHERE state = 'running'),\n"
		"       CASE WHEN $2::boolean THEN pg_notify('" BF_NOTIFY_CHANNEL
		"', '0 cancel-batches') END";
	static const char resume_sql[] =
		"WITH old AS (SELECT paused FROM backfill.control FOR UPDATE),\n"
		"u AS (UPDATE backfill.control SET paused = false, paused_at = NULL, paused_by = NULL,\n"
		"        updated_at = now()\n"
		"      RETURNING 1)\n"
		"SELECT coalesce((SELECT paused FROM old), false), NULL,\n"
		"       (SELECT count(*) FROM backfill.jobs WHERE state = 'paused'),\n"
		"       (SELECT count(*) FROM u)";
	int pause = call->req->cmd == BF_CMD_PAUSE;
	const char *params[2] = {call->by, call->req->now ? "true" : "false"};

	bf_monitor_query(bf_engine_monitor(call->cmds->engine), pause ? pause_sql : resume_sql,
			 pause ? 2 : 0, pause ? params : NULL, all_done, call);
}

/* ---- set ---- */

static void set_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	cmd_call *call = arg;
	const char *name = call->req->job;

	(void)pg;
	if (call_failed_or_missing(call, r))
		return;
	const PGresult *res = r->res;
	const char *state = PQgetvalue(res, 0, 1);

	if (strcmp(PQgetvalue(res, 0, 6), "t") != 0) {
		if (strcmp(state, "succeeded") == 0 || strcmp(state, "cancelled") == 0)
			call_reply(call, bf_response_error(BF_ERR_REFUSED,
							   "job \"%s\" is %s: nothing left to tune",
							   name, state));
		else
			call_reply(call,
				   bf_response_error(
					   BF_ERR_REFUSED,
					   "job \"%s\": batch_size_min (%s) would be greater than "
					   "batch_size_max (%s); set both",
					   name, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3)));
		return;
	}
	char *assigned = json_dumps(call->req->settings, JSON_COMPACT | JSON_SORT_KEYS);
	json_t *settings = json_loads(PQgetvalue(res, 0, 4), 0, NULL);

	bf_notice("control: job \"%s\": set %s by %s", name, assigned ? assigned : "?", call->by);
	json_t *result = message_result("job \"%s\": %s set; applied before its next batch", name,
					assigned ? assigned : "settings");

	free(assigned);
	json_object_set_new(result, "job", json_string(name));
	json_object_set_new(result, "settings", settings ? settings : json_object());
	json_object_set_new(result, "batch_size",
			    PQgetisnull(res, 0, 5) ? json_null()
						   : json_integer(atoi(PQgetvalue(res, 0, 5))));
	call_reply_ok(call, result);
}

static void cmd_set(cmd_call *call)
{
	static const char sql[] =
		"WITH j AS (\n"
		"  SELECT id, state,\n"
		"    coalesce(((settings || $2::jsonb) ->> 'batch_size_min')::bigint, $4::bigint) AS lo,\n"
		"    coalesce(((settings || $2::jsonb) ->> 'batch_size_max')::bigint, $5::bigint) AS hi\n"
		"  FROM backfill.jobs WHERE name = $1),\n"
		"u AS (UPDATE backfill.jobs SET settings = settings || $2::jsonb,\n"
		"        batch_size = coalesce($3::integer, batch_size)\n"
		"      WHERE id = (SELECT id FROM j WHERE lo <= hi)\n"
		"        AND state NOT IN ('succeeded', 'cancelled')\n"
		"      RETURNING settings, batch_size)\n"
		"SELECT j.id, j.state, j.lo, j.hi, (SELECT settings::text FROM u),\n"
		"       (SELECT batch_size FROM u), EXISTS (SELECT FROM u)\n"
		"FROM j";
	json_t *knobs = json_deep_copy(call->req->settings);
	json_t *batch_size = json_object_get(knobs, "batch_size");
	char size[24] = "", lo[24], hi[24];

	/* batch_size has a column of its own (the starting size). */
	if (batch_size) {
		snprintf(size, sizeof(size), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(batch_size));
		json_object_del(knobs, "batch_size");
	}
	char *text = json_dumps(knobs, JSON_COMPACT);

	json_decref(knobs);
	if (!text) {
		call_reply(call, NULL);
		return;
	}
	snprintf(lo, sizeof(lo), "%d", call->cmds->cfg->batch_size_min);
	snprintf(hi, sizeof(hi), "%d", call->cmds->cfg->batch_size_max);
	const char *params[5] = {call->req->job, text, size[0] ? size : NULL, lo, hi};

	bf_monitor_query(bf_engine_monitor(call->cmds->engine), sql, 5, params, set_done, call);
	free(text);
}

/* ---- dispatch ---- */

void bf_commands_init(bf_commands *cmds, bf_engine *engine, const bf_config *cfg)
{
	memset(cmds, 0, sizeof(*cmds));
	cmds->engine = engine;
	cmds->cfg = cfg;
}

void bf_commands_handle(bf_control *ctl, bf_client *client, bf_request *req, void *arg)
{
	bf_commands *cmds = arg;
	cmd_call *call;

	(void)ctl;
	if (cmds->stopping) {
		bf_client_reply(client,
				bf_response_error(BF_ERR_REFUSED, "the daemon is stopping"));
		bf_request_free(req);
		free(req);
		return;
	}
	if (req->cmd == BF_CMD_PLAN) {
		bf_plan_start(cmds, client, req);
		return;
	}
	if (req->cmd == BF_CMD_STATUS) {
		cmd_status(cmds, client, req);
		return;
	}
	if (!(call = call_new(cmds, client, req))) {
		bf_client_reply(client, NULL);
		bf_request_free(req);
		free(req);
		return;
	}
	switch (req->cmd) {
	case BF_CMD_STATUS:
	case BF_CMD_PLAN: /* handled above, without a cmd_call */
		break;
	case BF_CMD_PAUSE:
	case BF_CMD_RESUME:
		if (req->all)
			cmd_all(call);
		else
			cmd_job_state(call);
		break;
	case BF_CMD_CANCEL:
		cmd_job_state(call);
		break;
	case BF_CMD_SET:
		cmd_set(call);
		break;
	}
}

void bf_commands_stop(bf_commands *cmds)
{
	cmds->stopping = 1;
	bf_plan_abort_all(cmds);
}
