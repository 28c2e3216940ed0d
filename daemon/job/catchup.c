/* catchup.c -- after the walk, the rows inserted above its bound: walked on, or counted as left. */
#include "job_int.h"

static void job_caught_up(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "counting rows above the walked range");
		return;
	}
	if (PQntuples(r->res) == 0) {
		job_set_synced(job, false); /* fenced out, or the bound moved: the row decides */
		job_step(job);
		return;
	}
	const char *bound = bf_cell(r->res, 0, BF_CATCHUP_UPPER_BOUND);
	int rounds = (int)bf_cell_int(r->res, 0, BF_CATCHUP_ROUNDS, 0);
	int64_t above = bf_cell_int(r->res, 0, BF_CATCHUP_ABOVE, 0);
	bool extended = bf_cell_bool(r->res, 0, BF_CATCHUP_EXTENDED);

	job_succeeded_step(job);
	if (extended) {
		job_log(job, BF_LOG_NOTICE,
			"catch-up round %d of %d: %" PRId64 " rows above the walked range %s; "
			"walking on to keys up to %s",
			rounds, job->cfg->catchup_rounds, above,
			job->where_clause ? "match where_clause" : "were inserted during the walk",
			bound);
		replace_str(&job->upper_bound, bound);
		job->catchup_rounds = rounds;
		job->walk_done = 0;
	} else {
		if (above > 0)
			job_log(job, BF_LOG_WARNING,
				"%" PRId64 " rows above the walked range (keys above %s) %s after %d "
				"catch-up rounds: they are left (rows_left); the application keeps "
				"writing such rows",
				above, job->upper_bound,
				job->where_clause ? "still match where_clause" : "were inserted",
				rounds);
		job->caught_up = true;
	}
	job_step(job);
}

/* After the walk: rows above its bound that still need the work (inserted
 * meanwhile) are walked too, to the table's then-current end, in at most
 * catchup_rounds rounds (a job must end under inserts); what is left then
 * is counted into rows_left. */
void job_catch_up(bf_job *job)
{
	char *sql = bf_keyset_catchup_sql(&job->walk);
	char rounds[16];
	job_params p;

	if (!sql) {
		job_retry_later(job);
		return;
	}
	job_params_fence(job, &p);
	snprintf(rounds, sizeof(rounds), "%d", job->cfg->catchup_rounds);
	p.values[3] = job->upper_bound;
	p.values[4] = rounds;
	job_send(job, "counting rows above the walked range", sql, 5, p.values, job_caught_up);
	free(sql);
}
