/* batch_failure.c -- a batch that failed: narrowed to the failing row, or held on a locked job row. */
#include "job_int.h"
#include "errclass.h"
#include "keyset.h"

/* "batch: <message> (SQLSTATE x) on keys after C up to U (a batch of at
 * most N rows); DETAIL: ...; HINT: ...; CONTEXT: ..." -- what and where,
 * with everything the server said about it. Without the prefix and the
 * SQLSTATE when `bare` (job_query_failed adds those). */
static void job_batch_error(const bf_job *job, const bf_pg_result *r, bool bare, char *buf,
			    size_t len)
{
	static const struct {
		int field;
		const char *label;
	} fields[] = {
		{PG_DIAG_MESSAGE_DETAIL, "DETAIL"},
		{PG_DIAG_MESSAGE_HINT, "HINT"},
		{PG_DIAG_CONTEXT, "CONTEXT"},
	};
	size_t n = (size_t)snprintf(buf, len, "%s%s", bare ? "" : "batch: ", r->message);

	if (!bare)
		n += (size_t)snprintf(buf + n, len - n, " (SQLSTATE %s)",
				      r->sqlstate ? r->sqlstate : "none");
	n += (size_t)snprintf(buf + n, len - n, " on keys %s%s up to %s (a batch of at most %d rows)",
			      job->checkpoint ? "after " : "from the first",
			      job->checkpoint ? job->checkpoint : "", job->upper_bound,
			      job->batch_limit);

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && r->res && n < len; i++) {
		const char *v = PQresultErrorField(r->res, fields[i].field);

		if (v && *v)
			n += (size_t)snprintf(buf + n, len - n, "; %s: %s", fields[i].label, v);
	}
	bf_utf8_trim(buf);
}

/* A narrowed batch committed `done` rows: they are past the failing one's
 * span; once all of it is passed the failure is behind us (it was not the
 * rows' after all: a concurrent change), and the size controller is back. */
void job_narrow_passed(bf_job *job, int64_t done)
{
	if (!job->narrow_limit)
		return;
	job->narrow_span -= done;
	if (job->narrow_span > 0)
		return;
	job_log(job, BF_LOG_NOTICE,
		"the rows of the batch that failed (%s) went through in smaller batches",
		job->narrow_error);
	job->narrow_limit = 0;
	free(job->narrow_error);
	job->narrow_error = NULL;
}

/* The failing key, found: the job fails naming it, the checkpoint just
 * before it. */
static void job_key_named(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;
	char error[4096];
	const char *key = r->ok && PQntuples(r->res) ? bf_cell(r->res, 0, 0) : NULL;

	(void)pg;
	if (!r->res) {
		job_query_failed(job, r, "finding the key of the failing row");
		return;
	}
	if (r->ok && !key) {
		/* The row is gone (deleted or re-keyed meanwhile): whatever
		 * failed on it went with it. The walk goes on. */
		job_log(job, BF_LOG_NOTICE,
			"the row the batch failed on is gone; going on with the walk");
		job->narrow_limit = 0;
		replace_str(&job->narrow_error, NULL);
		job_set_synced(job, false);
		job_step(job);
		return;
	}
	if (r->ok)
		snprintf(error, sizeof(error),
			 "%s; the first row after checkpoint %s, key %s, fails on its own: the rows "
			 "before it are done and the checkpoint stays just before it. Fix that row "
			 "(or the set_clause / statement) and resume the job",
			 job->narrow_error ? job->narrow_error : "batch failed",
			 job->checkpoint ? job->checkpoint : "(none: the first row)", key);
	else
		snprintf(error, sizeof(error),
			 "%s; it is the first row after checkpoint %s, whose key could not be read "
			 "(%s): the rows before it are done and the checkpoint stays just before it",
			 job->narrow_error ? job->narrow_error : "batch failed",
			 job->checkpoint ? job->checkpoint : "(none: the first row)", r->message);
	job_finish(job, "failed", error);
}

/* Asks for the first key after the checkpoint: the row a batch of one
 * failed on. Its keys only: none of the operator's SQL, which may be what
 * fails on that row. */
static void job_name_key(bf_job *job)
{
	int first = job->checkpoint == NULL;
	char *sql = bf_keyset_next_key_sql(&job->walk, first);
	const char *params[2] = {job->upper_bound, job->checkpoint};

	if (!sql) {
		job_retry_later(job);
		return;
	}
	job_send(job, "finding the failing row", sql, first ? 1 : 2, params, job_key_named);
	free(sql);
}

/* A batch failed on its rows' data (errclass BF_ERR_DATA), or timed out
 * at the minimum size again and again: retrying the same rows fails the
 * same way, and the message seldom says which row. Halve the batch until
 * a batch of one row fails: that row is named and the job fails; the
 * smaller batches before it commit as usual. `why` follows the first
 * failure's text in last_error. */
static void job_narrow(bf_job *job, const bf_pg_result *r, const char *why)
{
	char error[3072];

	job_rates_settle(job, 0);
	job_batch_error(job, r, false, error, sizeof(error));
	if (why)
		snprintf(error + strlen(error), sizeof(error) - strlen(error), "; %s", why);
	bf_utf8_trim(error);
	if (!job->narrow_limit) {
		replace_str(&job->narrow_error, error);
		job->narrow_span = job->batch_limit;
	}
	if (job->batch_limit <= 1) {
		job_log(job, BF_LOG_ERROR, "%s", error);
		job_name_key(job);
		return;
	}
	job->narrow_limit = job->batch_limit / 2;
	job_log(job, BF_LOG_WARNING, "%s; narrowing the batch to %d rows to find the row",
		error, job->narrow_limit);
	/* The row re-read first: the failure may be a pause or a takeover. */
	job_set_synced(job, false);
	job_step(job);
}

static const char *job_unit(const bf_job *job)
{
	return job->slice_id ? "slice" : "job";
}

/* Someone holds our slice's row (or job row): a hold, logged where it starts, looked at
 * again every poll interval. who: "pid N" or what is known of them. */
static void job_row_lock_hold(bf_job *job, const char *who)
{
	char reason[512];

	snprintf(reason, sizeof(reason),
		 "%s row locked: %s holds this %s's row in backfill.%s (SELECT ... FOR "
		 "UPDATE or FOR SHARE, or an open UPDATE, such as a change of the job's state not "
		 "committed yet); no batch can record its checkpoint and the lease cannot be "
		 "renewed until that transaction ends",
		 job_unit(job), who, job_unit(job), job->slice_id ? "slices" : "jobs");
	if (!job->row_lock_held)
		job_log(job, BF_LOG_WARNING, "%s", reason);
	else
		job_log(job, BF_LOG_DEBUG, "the %s row is still locked (%s)", job_unit(job), who);
	job->row_lock_held = true;
	job_wait_for(job, (uint64_t)job->cfg->poll_interval_ms, reason);
	job->held = 1;
	snprintf(job->hold_reasons[0], sizeof(job->hold_reasons[0]), "%s", reason);
	job->nhold_reasons = 1;
}

static void job_row_lock_free(bf_job *job)
{
	if (job->row_lock_held) {
		/* The lease may have lapsed meanwhile: the row decides. */
		job_log(job, BF_LOG_NOTICE, "the %s row is no longer locked; going on",
			job_unit(job));
		job_set_synced(job, false);
	}
	job->row_locked = job->row_lock_held = false;
	job_step(job);
}

static void job_row_lock_tried(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_job *job = arg;

	(void)pg;
	if (r->ok)
		job_row_lock_free(job);
	else if (r->res && bf_sqlstate_is(r->sqlstate, BF_SQLSTATE_LOCK_NOT_AVAILABLE))
		job_row_lock_hold(job, "more than one session (sharing the lock)");
	else
		job_query_failed(job, r, "looking for a lock on the job row");
}

static void job_row_lock_probed(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	/* A lock no batch of ours could take: FOR SHARE conflicts, FOR KEY
	 * SHARE does not (neither does our checkpoint update). NOWAIT: in
	 * autocommit, taken and let go at once, or refused at once. */
	static const char try_sql[] =
		"SELECT 1 FROM backfill.jobs WHERE id = $1 FOR NO KEY UPDATE NOWAIT";
	static const char try_slice_sql[] =
		"SELECT 1 FROM backfill.slices WHERE id = $1 FOR NO KEY UPDATE NOWAIT";
	bf_job *job = arg;
	const char *holders = r->ok && PQntuples(r->res) ? bf_cell(r->res, 0, 0) : NULL;
	char who[256];
	job_params p;

	(void)pg;
	if (!r->ok) {
		job_query_failed(job, r, "looking for a lock on the job row");
		return;
	}
	if (holders) {
		snprintf(who, sizeof(who), "pid %s", holders);
		job_row_lock_hold(job, who);
		return;
	}
	/* No single locker: several share-lockers (xmax is then a
	 * multixact), or nobody. */
	job_params_fence(job, &p);
	job_send(job, "trying the lock on the row", job->slice_id ? try_slice_sql : try_sql, 1,
		 p.values, job_row_lock_tried);
}

/* Who holds our job row: its xmax is the locking transaction (a single
 * locker), whose holder pg_locks shows to every role. A batch that waited
 * for it would redo its work and roll back at every lock_timeout. */
void job_probe_row_lock(bf_job *job)
{
	static const char sql[] =
		"SELECT (SELECT string_agg(l.pid::text, ', ' ORDER BY l.pid) FROM pg_locks l\n"
		"        WHERE l.locktype = 'transactionid' AND l.granted\n"
		"          AND l.mode = 'ExclusiveLock' AND l.transactionid = j.xmax\n"
		"          AND l.pid <> pg_backend_pid())\n"
		"FROM backfill.jobs j WHERE j.id = $1";
	static const char slice_sql[] =
		"SELECT (SELECT string_agg(l.pid::text, ', ' ORDER BY l.pid) FROM pg_locks l\n"
		"        WHERE l.locktype = 'transactionid' AND l.granted\n"
		"          AND l.mode = 'ExclusiveLock' AND l.transactionid = s.xmax\n"
		"          AND l.pid <> pg_backend_pid())\n"
		"FROM backfill.slices s WHERE s.id = $1";
	job_params p;

	job_params_fence(job, &p);
	job_send(job, "looking for a lock on the row", job->slice_id ? slice_sql : sql, 1,
		 p.values, job_row_lock_probed);
}

/* When the minimum batch size still cannot finish within
 * statement_timeout, retrying would never end: after retry.max_failures
 * such timeouts in a row, the batch narrows below the minimum to the row
 * that cannot fit, and the job fails naming it. Returns 1 when narrowing. */
static int job_timeout_at_min(bf_job *job, const bf_pg_result *r)
{
	char why[512];

	if (job->cancel_requested || !bf_sqlstate_is(r->sqlstate, BF_SQLSTATE_QUERY_CANCELED))
		return 0;
	if (!job->narrow_limit) {
		if (job->batch_limit > job->batch_size.min ||
		    ++job->min_timeouts < job->cfg->retry_max_failures)
			return 0;
	}
	snprintf(why, sizeof(why),
		 "%d batches in a row at the minimum size (%d rows) did not finish within "
		 "statement_timeout_ms (%d): raise it for this job (backfillctl set %s "
		 "statement_timeout_ms=...) or make the work cheaper",
		 job->min_timeouts, job->batch_size.min, job->statement_timeout_ms, job->name);
	job_narrow(job, r, why);
	return 1;
}

void job_batch_failed(bf_job *job, const bf_pg_result *r)
{
	if (!r->res || job->stop_requested) {
		job_query_failed(job, r, "batch");
		return;
	}
	if (bf_errclass_of(r->sqlstate) == BF_ERR_DATA) {
		job_narrow(job, r, NULL);
		return;
	}
	if (job_timeout_at_min(job, r))
		return;
	char error[3072];
	bf_pg_result described = *r;

	/* The rest as before, with the range and the server's details. */
	job_batch_error(job, r, true, error, sizeof(error));
	described.message = error;
	job_query_failed(job, &described, "batch");
	/* A lock timeout: on the table's rows, or on our own job row (its
	 * checkpoint)? The next try asks first, so that a job row held for
	 * minutes is a hold that names its holder, not a batch redone and
	 * rolled back at every lock_timeout. */
	if (bf_sqlstate_is(r->sqlstate, BF_SQLSTATE_LOCK_NOT_AVAILABLE))
		job->row_locked = true;
}
