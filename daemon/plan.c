/* plan.c -- backfillctl plan: one batch of a job, run and rolled back.
 *
 * A dry run on a connection of its own (never a job's, never the monitor's:
 * it may wait on locks for up to statement_timeout): read the job row, check
 * its clauses, resolve the table, take the walk's bound, cut the key range
 * into the job's slices as a start would (a read-only query: split.h), then
 * BEGIN, lock the page, EXPLAIN ANALYZE the batch without its checkpoint
 * write, and ROLLBACK. Nothing it did survives; what it measured is reported.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "definition.h"
#include "log.h"
#include "session.h"
#include "monitor.h"
#include "pgcell.h"
#include "resolve.h"
#include "split.h"
#include "strbuf.h"

typedef enum plan_step {
	PLAN_CONNECTING,
	PLAN_ROW,
	PLAN_RESOLVE,
	PLAN_BOUND,
	PLAN_SLICES,
	PLAN_BEGIN,
	PLAN_LOCK,
	PLAN_EXPLAIN,
	PLAN_ROLLBACK,
	PLAN_DONE,
} plan_step;

/* The columns of the job row query (row_sql) after its definition's. */
enum {
	ROW_STATE = BF_DEF_NCOLUMNS,
	ROW_CHECKPOINT,
	ROW_UPPER_BOUND,
	ROW_ROWS_SCANNED,
	ROW_MAX_ROWS_PER_S,
	ROW_SLICES,
};

struct bf_plan {
	bf_plan *next;
	bf_commands *cmds;
	bf_client *client;
	bf_request *req;
	bf_pg pg;
	uv_timer_t timer; /* the connect deadline */
	plan_step step;
	int closes_pending;
	int answered;

	/* The job row. */
	char *table_name, *set_clause, *where_clause, *statement, *key_columns, *checkpoint;
	char *upper_bound;
	char *created_by;    /* the job's author: the code on its table it controls */
	bool allow_triggers; /* the author vouches for the rest */
	bf_job_kind kind;
	int batch_size;
	int64_t rows_scanned;
	int64_t max_rows_per_s; /* the job's knob; 0: none */
	int slices;		/* jobs.slices, or engine.slices when the row says nothing */
	bf_table table;
	bf_walk walk;

	uint64_t started_ns;
	int64_t locked_rows;
	json_t *ranges;	       /* the key ranges the split would make (PLAN_SLICES) */
	double sample_percent; /* of the table's pages the split read: 100 for every key */
	json_t *result;
};

static void plan_send(bf_plan *plan);

static void plan_closed_one(bf_plan *plan)
{
	if (--plan->closes_pending > 0)
		return;
	free(plan->table_name);
	free(plan->set_clause);
	free(plan->where_clause);
	free(plan->statement);
	free(plan->key_columns);
	free(plan->checkpoint);
	free(plan->upper_bound);
	free(plan->created_by);
	bf_table_free(&plan->table);
	json_decref(plan->ranges);
	json_decref(plan->result);
	free(plan);
}

static void plan_pg_closed(bf_pg *pg, void *arg)
{
	(void)pg;
	plan_closed_one(arg);
}

static void plan_timer_closed(uv_handle_t *handle)
{
	plan_closed_one(handle->data);
}

/* Answers (once) and closes: closing the connection rolls back whatever
 * the dry run had not. */
static void plan_end(bf_plan *plan, char *reply)
{
	bf_commands *cmds = plan->cmds;

	if (!plan->answered) {
		plan->answered = 1;
		bf_client_reply(plan->client, reply);
		bf_request_free(plan->req);
		free(plan->req);
	} else {
		free(reply);
	}
	if (plan->step == PLAN_DONE)
		return;
	plan->step = PLAN_DONE;
	for (bf_plan **p = &cmds->plans; *p; p = &(*p)->next) {
		if (*p == plan) {
			*p = plan->next;
			break;
		}
	}
	plan->closes_pending = 2;
	uv_close((uv_handle_t *)&plan->timer, plan_timer_closed);
	bf_pg_close(&plan->pg, plan_pg_closed, plan);
}

static void plan_fail(bf_plan *plan, const char *code, const char *what, const bf_pg_result *r)
{
	if (r && !r->res)
		plan_end(plan,
			 bf_response_error(BF_ERR_DATABASE, "plan: %s: database unreachable: %s",
					   what, r->message));
	else if (r)
		plan_end(plan, bf_response_error(code, "plan: %s: %s (SQLSTATE %s)", what,
						 r->message, r->sqlstate ? r->sqlstate : "none"));
	else
		plan_end(plan, bf_response_error(code, "plan: %s", what));
}

static void plan_row(bf_plan *plan, const PGresult *res)
{
	const char *name = plan->req->job;
	const char *state;

	if (PQntuples(res) == 0) {
		plan_end(plan, bf_response_error(BF_ERR_NO_SUCH_JOB, "no such job: \"%s\"", name));
		return;
	}
	state = bf_cell(res, 0, ROW_STATE);
	if (strcmp(state, "pending") != 0 && strcmp(state, "paused") != 0 &&
	    strcmp(state, "failed") != 0) {
		plan_end(plan, bf_response_error(
				       BF_ERR_REFUSED,
				       "job \"%s\" is %s: plan is a dry run of a job that is not "
				       "running (pending, paused or failed); %s",
				       name, state,
				       strcmp(state, "running") == 0
					       ? "pause it first (backfillctl pause)"
					       : "insert a new job to plan another backfill"));
		return;
	}
	bf_job_def def;

	bf_job_def_read(res, 0, &def);
	plan->table_name = def.table_name ? strdup(def.table_name) : NULL;
	plan->kind = strcmp(def.kind, "sql") == 0 ? BF_KIND_SQL : BF_KIND_UPDATE;
	plan->set_clause = bf_clause_dup(def.set_clause);
	plan->where_clause = bf_clause_dup(def.where_clause);
	plan->statement = bf_clause_dup(def.statement);
	plan->key_columns = def.key_columns ? strdup(def.key_columns) : NULL;
	plan->batch_size = def.batch_size > 0 ? def.batch_size : plan->cmds->cfg->batch_size;
	plan->checkpoint = bf_cell_dup(res, 0, ROW_CHECKPOINT);
	plan->upper_bound = bf_cell_dup(res, 0, ROW_UPPER_BOUND);
	plan->rows_scanned = bf_cell_int(res, 0, ROW_ROWS_SCANNED, 0);
	/* Not a whole number (the row says something odd): the job would
	 * refuse it when it starts; the estimate leaves it out. */
	plan->max_rows_per_s = bf_cell_int(res, 0, ROW_MAX_ROWS_PER_S, 0);
	if (plan->max_rows_per_s < 0)
		plan->max_rows_per_s = 0;
	plan->slices = (int)bf_cell_int(res, 0, ROW_SLICES, plan->cmds->cfg->slices);
	plan->created_by = def.created_by ? strdup(def.created_by) : NULL;
	plan->allow_triggers = def.allow_triggers;

	char *error = bf_definition_check(plan->kind, plan->set_clause, plan->where_clause,
					  plan->statement);

	if (error) {
		plan_end(plan, bf_response_error(BF_ERR_REFUSED, "plan: job \"%s\" cannot run: %s",
						 name, error));
		free(error);
		return;
	}
	plan->step = PLAN_RESOLVE;
	plan_send(plan);
}

/* The rate limit that applies to the job alone: its own max_rows_per_s,
 * or the daemon's throttle.max_rows_per_s (over all its jobs), the lower;
 * 0: none. *which names it. */
static int64_t plan_rate_limit(const bf_plan *plan, const char **which)
{
	int64_t overall = plan->cmds->cfg->throttle_max_rows_per_s;

	*which = NULL;
	if (plan->max_rows_per_s > 0 && (overall <= 0 || plan->max_rows_per_s <= overall)) {
		*which = "max_rows_per_s";
		return plan->max_rows_per_s;
	}
	if (overall > 0) {
		*which = "throttle.max_rows_per_s";
		return overall;
	}
	return 0;
}

/* The estimates: at the measured pace, and no faster than the rate limit
 * lets the job go. The slower of the two is the estimate. */
static void plan_estimates(bf_plan *plan, json_t *result, double batch_ms)
{
	int64_t estimate = plan->table.rows_estimate;
	int64_t left = estimate >= 0 ? estimate - plan->rows_scanned : -1;
	const char *which;
	int64_t limit = plan_rate_limit(plan, &which);
	json_t *batches = json_null(), *total = json_null(), *paced = json_null();
	json_t *limited = json_null();

	if (left < 0)
		left = estimate >= 0 ? 0 : -1;
	if (left > 0 && plan->batch_size > 0) {
		int64_t n = (left + plan->batch_size - 1) / plan->batch_size;
		double pace_s = (double)n * batch_ms / 1000.0;
		double limit_s = limit > 0 ? (double)left / (double)limit : 0;
		double slower = limit_s > pace_s ? limit_s : pace_s;

		batches = json_integer(n);
		paced = json_real((double)(int64_t)(pace_s * 10 + 0.5) / 10);
		if (limit > 0)
			limited = json_real((double)(int64_t)(limit_s * 10 + 0.5) / 10);
		total = json_real((double)(int64_t)(slower * 10 + 0.5) / 10);
		if (limit > 0 && limit_s > pace_s)
			json_object_set_new(result, "limited_by", json_string(which));
	} else if (left == 0) {
		batches = json_integer(0);
		total = json_real(0);
		paced = json_real(0);
	}
	if (!json_object_get(result, "limited_by"))
		json_object_set_new(result, "limited_by", json_null());
	json_object_set_new(result, "estimated_batches", batches);
	json_object_set_new(result, "estimated_total_s", total);
	json_object_set_new(result, "estimated_paced_s", paced);
	json_object_set_new(result, "estimated_rate_limited_s", limited);
	json_object_set_new(result, "max_rows_per_s",
			    limit > 0 ? json_integer(limit) : json_null());
	json_object_set_new(result, "max_rows_per_s_from",
			    which ? json_string(which) : json_null());
}

/* The ranges of the split (bf_split_plan_sql), each with its rows: counted
 * when every key was read, the sampled keys scaled up by the sample's
 * percentage otherwise (an estimate that holds even when the table's
 * statistics are stale). No row: the table holds no key up to the bound,
 * and the job is one range with nothing in it. Returns 0, -1 when out of
 * memory. */
static int plan_slices_read(bf_plan *plan, const PGresult *res)
{
	json_t *ranges = json_array(), *lower = json_null();
	int n = PQntuples(res);

	plan->sample_percent = 100;
	for (int i = 0; ranges && i < n; i++) {
		const char *upper_json = bf_cell(res, i, BF_SPLIT_UPPER_JSON);
		json_t *upper = upper_json ? json_loads(upper_json, JSON_DECODE_ANY, NULL) : NULL;
		double percent = strtod(bf_cell(res, i, BF_SPLIT_PERCENT), NULL);
		int64_t keys = bf_cell_int(res, i, BF_SPLIT_KEYS, 0);
		int64_t rows = percent >= 100 || percent <= 0
				       ? keys
				       : (int64_t)((double)keys * 100.0 / percent + 0.5);

		if (!upper)
			upper = json_null(); /* not JSON: cannot happen (to_json) */
		plan->sample_percent = percent;
		/* The next range starts where this one ends. */
		json_t *next_lower = json_incref(upper);

		if (json_array_append_new(ranges,
					  json_pack("{s:i, s:o, s:o, s:I}", "slice", i + 1,
						    "lower_bound", lower, "upper_bound", upper,
						    "rows_estimate", (json_int_t)rows)) != 0) {
			json_decref(ranges);
			ranges = NULL;
		}
		lower = next_lower;
	}
	json_decref(lower);
	if (ranges && n == 0 &&
	    json_array_append_new(ranges,
				  json_pack("{s:i, s:n, s:n, s:i}", "slice", 1, "lower_bound",
					    "upper_bound", "rows_estimate", 0)) != 0) {
		json_decref(ranges);
		ranges = NULL;
	}
	plan->ranges = ranges;
	return ranges ? 0 : -1;
}

/* result.slices: the split and the estimate with that many slices. The
 * ideal: the one-walk estimate at the measured pace divided by the number
 * of ranges, but no faster than the rate limit, which is the job's total
 * (its slices share it). Real scaling is lower: the ranges share the
 * server's CPU, WAL and disks (BENCHMARKS.md measures it). */
static void plan_slices_report(bf_plan *plan, json_t *result)
{
	size_t ranges = json_array_size(plan->ranges);
	json_t *paced = json_object_get(result, "estimated_paced_s");
	json_t *limited = json_object_get(result, "estimated_rate_limited_s");
	json_t *eta = json_null();
	bool every_key = plan->sample_percent >= 100;

	if (json_is_number(paced) && ranges > 0) {
		double ideal = json_number_value(paced) / (double)ranges;

		if (json_is_number(limited) && json_number_value(limited) > ideal)
			ideal = json_number_value(limited);
		eta = json_real((double)(int64_t)(ideal * 10 + 0.5) / 10);
	}
	json_object_set_new(
		result, "slices",
		json_pack("{s:i, s:O, s:s, s:o, s:o, s:s}", "requested", plan->slices, "ranges",
			  plan->ranges ? plan->ranges : json_null(), "method",
			  every_key ? "every key" : "sample", "sample_percent",
			  every_key ? json_null() : json_real(plan->sample_percent), "eta_s", eta,
			  "eta_note",
			  "ideal: the one-walk estimate at the measured pace divided by the number "
			  "of ranges, no faster than the job's rate limit (its slices share it); "
			  "real scaling is lower, the ranges sharing the server's CPU, WAL and "
			  "disks: see BENCHMARKS.md for measured speed-ups"));
}

static void plan_explained(bf_plan *plan, const PGresult *res)
{
	double ms = (double)(uv_hrtime() - plan->started_ns) / 1e6;
	bf_strbuf text;

	bf_strbuf_init(&text);
	for (int i = 0; i < PQntuples(res); i++)
		bf_strbuf_printf(&text, "%s\n", PQgetvalue(res, i, 0));
	char *plan_text = bf_strbuf_finish(&text);
	int64_t estimate = plan->table.rows_estimate;

	plan->result = json_pack(
		"{s:s, s:s, s:i, s:I, s:f, s:o, s:s, s:s, s:b}", "job", plan->req->job, "table",
		plan->table.quoted, "batch_size", plan->batch_size, "batch_rows",
		(json_int_t)plan->locked_rows, "duration_ms", (double)(int64_t)(ms * 10 + 0.5) / 10,
		"rows_estimate", estimate >= 0 ? json_integer(estimate) : json_null(), "plan",
		plan_text ? plan_text : "", "note",
		"one batch ran inside a transaction that was rolled back: no row changed and the job "
		"row is untouched; triggers fired and sequences advanced as in any rolled-back "
		"transaction. Estimates scale this batch's duration (with EXPLAIN ANALYZE overhead) to "
		"the planner's row count, no faster than max_rows_per_s allows; throttling and the "
		"adaptive batch size change the real pace, and the verification pass at the end "
		"(one more read of the walked range) is not included.",
		"rolled_back", 1);
	if (plan->result) {
		plan_estimates(plan, plan->result, ms);
		plan_slices_report(plan, plan->result);
	}
	free(plan_text);
	plan->step = PLAN_ROLLBACK;
	plan_send(plan);
}

static void plan_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_plan *plan = arg;
	char *error = NULL;

	(void)pg;
	if (plan->step == PLAN_DONE)
		return;
	if (!r->ok) {
		static const char *const what[] = {
			[PLAN_ROW] = "reading the job row",
			[PLAN_RESOLVE] = "resolving the table",
			[PLAN_BOUND] = "finding the walk's upper bound",
			[PLAN_SLICES] = "cutting the key range into slices",
			[PLAN_BEGIN] = "starting the transaction",
			[PLAN_LOCK] = "reading (and locking) the batch's rows",
			[PLAN_EXPLAIN] = "running the batch",
			[PLAN_ROLLBACK] = "rolling back",
		};
		plan_fail(plan, BF_ERR_REFUSED, what[plan->step] ? what[plan->step] : "query", r);
		return;
	}
	switch (plan->step) {
	case PLAN_ROW:
		plan_row(plan, r->res);
		return;
	case PLAN_RESOLVE:
		if (bf_resolve_table(r->res, plan->table_name, &plan->table, &error) != 0) {
			plan_end(plan, error ? bf_response_error(BF_ERR_REFUSED,
								 "plan: job \"%s\" cannot run: %s",
								 plan->req->job, error)
					     : NULL);
			free(error);
			return;
		}
		bf_table_walk(&plan->table, &plan->walk, plan->kind, plan->set_clause,
			      plan->where_clause, plan->statement);
		plan->step = plan->upper_bound ? PLAN_SLICES : PLAN_BOUND;
		break;
	case PLAN_BOUND:
		/* An empty table: the walk's bound is '{}' (no key is below
		 * it), and the plan says what a start would do with it. */
		plan->upper_bound = strdup(PQntuples(r->res) ? PQgetvalue(r->res, 0, 0) : "{}");
		if (!plan->upper_bound) {
			plan_end(plan, NULL);
			return;
		}
		plan->step = PLAN_SLICES;
		break;
	case PLAN_SLICES:
		if (plan_slices_read(plan, r->res) != 0) {
			plan_end(plan, NULL);
			return;
		}
		plan->step = PLAN_BEGIN;
		break;
	case PLAN_BEGIN:
		plan->started_ns = uv_hrtime();
		plan->step = PLAN_LOCK;
		break;
	case PLAN_LOCK:
		plan->locked_rows = bf_cell_int(r->res, 0, 0, 0);
		plan->step = PLAN_EXPLAIN;
		break;
	case PLAN_EXPLAIN:
		plan_explained(plan, r->res);
		return;
	case PLAN_ROLLBACK: {
		json_t *result = plan->result;

		plan->result = NULL;
		bf_info("control: planned job \"%s\" (dry run, rolled back)", plan->req->job);
		plan_end(plan, bf_response_ok(result));
		return;
	}
	default:
		return;
	}
	plan_send(plan);
}

static void plan_send(bf_plan *plan)
{
	static const char row_sql[] =
		"SELECT " BF_JOB_DEF_COLUMNS ",\n"
		"       j.state, j.checkpoint, j.upper_bound, j.rows_scanned,\n"
		"       CASE WHEN jsonb_typeof(j.settings -> 'max_rows_per_s') = 'number'\n"
		"             AND (j.settings ->> 'max_rows_per_s')::numeric BETWEEN 0 AND 1e15\n"
		"            THEN (j.settings ->> 'max_rows_per_s')::numeric::bigint END,\n"
		"       j.slices\n"
		"FROM backfill.jobs j WHERE j.name = $1";
	const char *params[5] = {NULL, NULL, NULL, NULL, NULL};
	char *sql = NULL;
	const char *text = NULL;
	int nparams = 0;

	switch (plan->step) {
	case PLAN_ROW:
		text = row_sql;
		params[0] = plan->req->job;
		nparams = 1;
		break;
	case PLAN_RESOLVE:
		text = bf_resolve_sql;
		params[0] = plan->table_name;
		params[1] = plan->key_columns;
		params[2] = plan->created_by;
		params[3] = plan->allow_triggers ? "true" : "false";
		params[4] = plan->req->job;
		nparams = 5;
		break;
	case PLAN_BOUND:
		text = sql = bf_keyset_upper_bound_sql(&plan->walk);
		break;
	case PLAN_SLICES:
		/* Before the transaction of the dry run: the keys as they are,
		 * not as the batch left them. */
		text = sql = bf_split_plan_sql(
			&plan->walk, "$1",
			bf_split_ranges(plan->slices, plan->table.rows_estimate),
			plan->table.rows_estimate);
		params[0] = plan->upper_bound;
		nparams = 1;
		break;
	case PLAN_BEGIN:
		text = "BEGIN";
		break;
	case PLAN_LOCK:
	case PLAN_EXPLAIN: {
		char *upper = bf_pg_escape_literal(&plan->pg, plan->upper_bound);
		char *lower =
			plan->checkpoint ? bf_pg_escape_literal(&plan->pg, plan->checkpoint) : NULL;
		bf_batch_args args = {
			.upper = upper,
			.lower = lower,
			.owner = "NULL",
			.limit = plan->batch_size,
			.dry_run = 1,
		};

		if (upper && (lower || !plan->checkpoint))
			text = sql = plan->step == PLAN_LOCK
					     ? bf_keyset_matching_sql(&plan->walk, &args)
					     : bf_keyset_work_sql(&plan->walk, &args);
		free(upper);
		free(lower);
		break;
	}
	case PLAN_ROLLBACK:
		text = "ROLLBACK";
		break;
	default:
		return;
	}
	if (!text) {
		plan_end(plan, NULL);
		return;
	}
	if (bf_pg_query(&plan->pg, text, nparams, nparams ? params : NULL, plan_done, plan) != 0)
		plan_fail(plan, BF_ERR_DATABASE, "the connection is not ready", NULL);
	free(sql);
}

static void plan_event(bf_pg *pg, int up, void *arg)
{
	bf_plan *plan = arg;

	(void)pg;
	if (plan->step == PLAN_DONE)
		return;
	if (!up) {
		/* A dry run is not resumed on another connection. */
		plan_fail(plan, BF_ERR_DATABASE, "the connection was lost", NULL);
		return;
	}
	if (plan->step == PLAN_CONNECTING) {
		uv_timer_stop(&plan->timer);
		plan->step = PLAN_ROW;
		plan_send(plan);
	}
}

static void plan_connect_timeout(uv_timer_t *timer)
{
	bf_plan *plan = timer->data;
	char why[600];

	snprintf(why, sizeof(why), "cannot connect to the database: %s",
		 plan->pg.last_error[0] ? plan->pg.last_error : "no answer in time");
	plan_fail(plan, BF_ERR_DATABASE, why, NULL);
}

void bf_plan_start(bf_commands *cmds, bf_client *client, bf_request *req)
{
	const bf_config *cfg = cmds->cfg;
	bf_plan *plan = calloc(1, sizeof(*plan));
	char init_sql[768], app[64];
	const char *why;

	if (!plan) {
		bf_client_reply(client, NULL);
		bf_request_free(req);
		free(req);
		return;
	}
	plan->cmds = cmds;
	plan->client = client;
	plan->req = req;
	if (!bf_monitor_up(bf_engine_monitor(cmds->engine), &why)) {
		bf_client_reply(client, bf_response_error(BF_ERR_DATABASE,
							  "plan: database unreachable: %s", why));
		bf_request_free(req);
		free(req);
		free(plan);
		return;
	}
	/* A batch connection's settings: the same timeouts bound the dry run. */
	bf_session_sql(init_sql, sizeof(init_sql), cfg, 1);
	snprintf(app, sizeof(app), "backfilld plan %s", req->job);

	bf_pg_options opts = bf_session_pg_options(cfg, true, "plan connection", app, init_sql,
						   plan_event, plan);

	uv_timer_init(bf_engine_loop(cmds->engine), &plan->timer);
	plan->timer.data = plan;
	bf_pg_init(&plan->pg, bf_engine_loop(cmds->engine), &opts);
	plan->next = cmds->plans;
	cmds->plans = plan;
	plan->step = PLAN_CONNECTING;
	uv_timer_start(&plan->timer, plan_connect_timeout, (uint64_t)cfg->connect_timeout_ms + 1000,
		       0);
	bf_pg_start(&plan->pg);
}

void bf_plan_abort_all(bf_commands *cmds)
{
	while (cmds->plans)
		plan_fail(cmds->plans, BF_ERR_REFUSED,
			  "the daemon is stopping; the dry run was rolled back", NULL);
}
