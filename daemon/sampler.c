/* sampler.c -- replication, slots, locks and the throttle query, from the monitor. */
#include "sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgcell.h"

/* Strict mode polls this often while a job waits: a standby on the same
 * network replays a batch within milliseconds. */
#define REPLAY_POLL_MS 20

/* One query, three kinds of rows: ourselves (role, privilege, WAL position),
 * every physical standby (logical walsenders are slots' consumers, counted
 * by slot), and every logical slot that still retains WAL (an invalidated
 * one, wal_status 'lost', retains none). NULL replay_lag means caught up.
 * Standbys come in a stable order, so that those sharing a name keep their
 * numbers from one sample to the next. */
static const char replication_sql[] =
	"SELECT 'self' AS kind, current_user::text AS name,\n"
	"  CASE WHEN pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')\n"
	"       THEN 'privileged' ELSE '' END AS state,\n"
	"  NULL::bigint AS lag_bytes, NULL::bigint AS lag_ms, pg_current_wal_lsn()::text AS lsn,\n"
	"  '' AS addr\n"
	"UNION ALL\n"
	"SELECT 'standby', coalesce(r.application_name, ''), coalesce(r.state, ''),\n"
	"  pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint,\n"
	"  coalesce((extract(epoch FROM r.replay_lag) * 1000)::bigint, 0), r.replay_lsn::text,\n"
	"  coalesce(host(r.client_addr), '') || ':' || coalesce(r.client_port, 0)\n"
	"FROM pg_stat_replication r\n"
	"WHERE r.pid NOT IN (SELECT active_pid FROM pg_replication_slots\n"
	"                    WHERE slot_type = 'logical' AND active_pid IS NOT NULL)\n"
	"UNION ALL\n"
	"SELECT 'slot', s.slot_name::text, CASE WHEN s.active THEN 'active' ELSE '' END,\n"
	"  pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, NULL, NULL, ''\n"
	"FROM pg_replication_slots s\n"
	"WHERE s.slot_type = 'logical' AND s.wal_status IS DISTINCT FROM 'lost'\n"
	"ORDER BY 1, 2, 7";

/* Sessions waiting on a lock that one of our batches ($1) holds. pg_locks
 * is readable by every role (pg_stat_activity hides others' wait events
 * without pg_read_all_stats); only waiting sessions are asked
 * pg_blocking_pids (it takes the lock manager's locks). Our own sessions
 * wait with a lock_timeout of their own and are left alone. A relation
 * lock in a mode that conflicts with ROW EXCLUSIVE is DDL (or LOCK TABLE):
 * it stalls the whole table. The relation is the lock's own, or for a row
 * (a transactionid wait) that of the tuple lock the waiter holds, and only
 * in our database (another's OIDs mean nothing here). The blocker's
 * transaction start, as a number (text would depend on DateStyle and
 * TimeZone), tells the batch apart from the next one on the same
 * connection. Nothing of the waiting session's own is read: its query,
 * application_name and user are none of the job's business (the job's
 * status and row may be read by people who may not see them). */
static const char locks_sql[] =
	"SELECT b.blocker AS blocker_pid, l.pid,\n"
	"  (extract(epoch FROM clock_timestamp() - coalesce(l.waitstart, clock_timestamp()))\n"
	"     * 1000)::bigint AS waited_ms,\n"
	"  l.locktype = 'relation' AND l.mode IN\n"
	"    ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') AS ddl,\n"
	"  l.locktype, l.mode,\n"
	"  (SELECT r.relation::regclass::text FROM pg_locks r\n"
	"   WHERE r.pid = l.pid AND r.relation IS NOT NULL\n"
	"     AND r.database = (SELECT oid FROM pg_database WHERE datname = current_database())\n"
	"     AND ((r.locktype = l.locktype AND r.mode = l.mode AND NOT r.granted)\n"
	"          OR (l.locktype = 'transactionid' AND r.locktype = 'tuple' AND r.granted))\n"
	"   LIMIT 1) AS relation,\n"
	"  (SELECT (extract(epoch FROM x.xact_start) * 1000000)::bigint\n"
	"   FROM pg_stat_activity x WHERE x.pid = b.blocker) AS xact_start_us\n"
	"FROM (SELECT DISTINCT ON (pid) pid, locktype, mode, waitstart FROM pg_locks\n"
	"      WHERE NOT granted AND pid IS NOT NULL AND pid <> pg_backend_pid()\n"
	"      ORDER BY pid, waitstart) l\n"
	"CROSS JOIN LATERAL unnest(pg_blocking_pids(l.pid)) AS b(blocker)\n"
	"LEFT JOIN pg_stat_activity a ON a.pid = l.pid\n"
	"WHERE b.blocker = ANY ($1::int[])\n"
	"  AND coalesce(a.application_name, '') NOT LIKE 'backfilld %'";

/* The columns of locks_sql, by name. */
enum {
	LOCKS_BLOCKER_PID,
	LOCKS_PID,
	LOCKS_WAITED_MS,
	LOCKS_DDL,
	LOCKS_LOCKTYPE,
	LOCKS_MODE,
	LOCKS_RELATION,
	LOCKS_XACT_START_US,
	LOCKS_NCOLUMNS
};

/* The columns of replication_sql, by name. */
enum {
	REPL_KIND,
	REPL_NAME,
	REPL_STATE,
	REPL_LAG_BYTES,
	REPL_LAG_MS,
	REPL_LSN,
	REPL_ADDR,
	REPL_NCOLUMNS
};

/* Fills out (standbys, slots, role, privilege, current LSN) from the rows
 * of replication_sql. Returns 0, or -1 with out->error set. */
static int sampler_parse(const PGresult *res, bf_sample *out)
{
	out->nstandbys = out->nslots = 0;
	out->privileged = 0;
	out->role[0] = '\0';
	out->current_lsn = 0;
	if (PQnfields(res) != REPL_NCOLUMNS) {
		snprintf(out->error, sizeof(out->error), "unexpected result shape");
		return -1;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *kind = PQgetvalue(res, i, REPL_KIND);
		const char *name = bf_cell(res, i, REPL_NAME) ? bf_cell(res, i, REPL_NAME) : "";
		const char *state = bf_cell(res, i, REPL_STATE) ? bf_cell(res, i, REPL_STATE) : "";

		if (strcmp(kind, "self") == 0) {
			snprintf(out->role, sizeof(out->role), "%s", name);
			out->privileged = strcmp(state, "privileged") == 0;
			out->current_lsn = bf_lsn_parse(bf_cell(res, i, REPL_LSN));
		} else if (strcmp(kind, "standby") == 0 && out->nstandbys < BF_SAMPLE_MAX_STANDBYS) {
			bf_standby_sample *sb = &out->standbys[out->nstandbys++];

			snprintf(sb->name, sizeof(sb->name), "%s", name);
			snprintf(sb->state, sizeof(sb->state), "%s", state);
			sb->lag_bytes = bf_cell_int(res, i, REPL_LAG_BYTES, -1);
			if (sb->lag_bytes < -1)
				sb->lag_bytes = 0; /* replayed past our insert position */
			sb->lag_ms = bf_cell_int(res, i, REPL_LAG_MS, 0);
			sb->replay_lsn = bf_lsn_parse(bf_cell(res, i, REPL_LSN));
		} else if (strcmp(kind, "slot") == 0 && out->nslots < BF_SAMPLE_MAX_SLOTS) {
			bf_slot_sample *sl = &out->slots[out->nslots++];

			snprintf(sl->name, sizeof(sl->name), "%s", name);
			sl->active = strcmp(state, "active") == 0;
			sl->lag_bytes = bf_cell_int(res, i, REPL_LAG_BYTES, -1);
		}
	}
	return 0;
}

/* ---- the lock check's rows ---- */

/* s as it may go into a log line or a status reason: a relation's name
 * may hold any character, a newline included. */
static void printable(char *dst, size_t len, const char *s)
{
	size_t i = 0;

	for (; s && *s && i + 1 < len; s++, i++)
		dst[i] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	if (len)
		dst[i] = '\0';
}

void bf_sampler_blocked_parse(const PGresult *res, int row, bf_blocked *b)
{
	char locktype[32], mode[48], relation[128];
	const char *ddl;

	memset(b, 0, sizeof(*b));
	if (PQnfields(res) != LOCKS_NCOLUMNS) {
		snprintf(b->what, sizeof(b->what), "a session (unexpected result shape)");
		return;
	}
	ddl = bf_cell(res, row, LOCKS_DDL);
	b->blocker_pid = (int)bf_cell_int(res, row, LOCKS_BLOCKER_PID, 0);
	b->pid = (int)bf_cell_int(res, row, LOCKS_PID, 0);
	b->waited_ms = bf_cell_int(res, row, LOCKS_WAITED_MS, 0);
	b->ddl = ddl && strcmp(ddl, "t") == 0;
	b->xact_start_us = bf_cell_int(res, row, LOCKS_XACT_START_US, 0);
	printable(locktype, sizeof(locktype), bf_cell(res, row, LOCKS_LOCKTYPE));
	printable(mode, sizeof(mode), bf_cell(res, row, LOCKS_MODE));
	printable(relation, sizeof(relation), bf_cell(res, row, LOCKS_RELATION));
	/* Who waits, for what, on which table: the pid finds the rest in
	 * pg_stat_activity for whoever may see it. */
	const char *on = !relation[0]				  ? ""
			 : strcmp(locktype, "transactionid") == 0 ? " on a row of "
								  : " on ";

	snprintf(b->what, sizeof(b->what), "pid %d waiting for a %s %s%s%s", b->pid,
		 locktype[0] ? locktype : "?", mode[0] ? mode : "?", on, relation);
}

/* ---- the sample ---- */

static void sample_publish(bf_sampler *s)
{
	s->sample_busy = 0;
	s->next.taken_ns = uv_hrtime();
	/* Asked after the highest position our batches reported, the sample's
	 * own position is past it (one server's WAL only moves forward): there
	 * is nothing ahead of it. Forgetting it also keeps a position from
	 * before a failover from counting against the new primary forever. */
	if (!s->next.error[0] && s->next.current_lsn && s->written_ns <= s->next.asked_ns)
		s->written_lsn = 0;
	snprintf(s->next.locks_error, sizeof(s->next.locks_error), "%s", s->locks_error);
	s->sample = s->next;
	if (s->ops.on_sample)
		s->ops.on_sample(s->arg);
}

static void sample_failed(bf_sampler *s, const char *what, const bf_pg_result *r)
{
	snprintf(s->next.error, sizeof(s->next.error), "%s: %s%s%s%s", what, r->message,
		 r->sqlstate ? " (SQLSTATE " : "", r->sqlstate ? r->sqlstate : "",
		 r->sqlstate ? ")" : "");
}

static void sample_query_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_sampler *s = arg;
	bf_sample *n = &s->next;

	(void)pg;
	if (s->closing)
		return;
	n->query_set = 1;
	n->query_holds = 1; /* fail closed */
	if (!r->ok) {
		snprintf(n->query_reason, sizeof(n->query_reason), "failed: %s", r->message);
	} else if (PQntuples(r->res) < 1 || PQnfields(r->res) < 1) {
		snprintf(n->query_reason, sizeof(n->query_reason),
			 "returned no row (it must return one boolean)");
	} else if (PQgetisnull(r->res, 0, 0)) {
		snprintf(n->query_reason, sizeof(n->query_reason), "returned NULL");
	} else {
		const char *v = PQgetvalue(r->res, 0, 0);

		n->query_holds = strcmp(v, "t") == 0;
		if (strcmp(v, "t") != 0 && strcmp(v, "f") != 0)
			n->query_holds = 1;
		if (PQnfields(r->res) > 1 && !PQgetisnull(r->res, 0, 1) &&
		    *PQgetvalue(r->res, 0, 1))
			snprintf(n->query_reason, sizeof(n->query_reason), "%s",
				 PQgetvalue(r->res, 0, 1));
		else if (strcmp(v, "t") == 0)
			snprintf(n->query_reason, sizeof(n->query_reason), "returned true");
		else
			snprintf(n->query_reason, sizeof(n->query_reason),
				 "returned \"%.100s\", not a boolean", v);
	}
	if (n->query_holds && !r->ok)
		bf_debug("throttle query failed: %s", r->message);
	sample_publish(s);
}

static void sample_replication_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_sampler *s = arg;

	(void)pg;
	if (s->closing)
		return;
	if (!r->ok)
		sample_failed(s, "monitor connection", r);
	else
		sampler_parse(r->res, &s->next);
	if (!s->next.error[0] && s->cfg->throttle_query && *s->cfg->throttle_query) {
		/* The operator's query shares the monitor with status and
		 * cancels: bounded by a statement_timeout of its own (1 s), set
		 * for the implicit transaction of this one query string. */
		int timeout = 1000;
		char *sql = NULL;

		if (asprintf(&sql, "SELECT set_config('statement_timeout', '%dms', true);\n%s",
			     timeout, s->cfg->throttle_query) < 0) {
			snprintf(s->next.error, sizeof(s->next.error), "out of memory");
			sample_publish(s);
			return;
		}
		bf_monitor_query(s->monitor, sql, 0, NULL, sample_query_done, s);
		free(sql);
		return;
	}
	sample_publish(s);
}

static void sample_timer_cb(uv_timer_t *timer)
{
	bf_sampler *s = timer->data;

	if (s->sample_busy || s->closing)
		return;
	if (s->ops.sample_wanted && !s->ops.sample_wanted(s->arg))
		return;
	s->sample_busy = 1;
	memset(&s->next, 0, sizeof(s->next));
	s->next.asked_ns = uv_hrtime();
	bf_monitor_query(s->monitor, replication_sql, 0, NULL, sample_replication_done,
			 s);
}

void bf_sampler_sample_now(bf_sampler *s)
{
	if (s->closing || s->sample_busy)
		return;
	/* Through the timer, at once: the monitor may fail the query (and
	 * publish) within bf_monitor_query, which must not call back into the
	 * job that is asking. The interval starts over from this sample. */
	uv_timer_start(&s->sample_timer, sample_timer_cb, 0,
		       (uint64_t)s->cfg->throttle_sample_interval_ms);
}

void bf_sampler_note_lsn(bf_sampler *s, uint64_t lsn)
{
	if (lsn <= s->written_lsn)
		return;
	s->written_lsn = lsn;
	s->written_ns = uv_hrtime();
}

/* ---- the lock check ---- */

static void lock_timer_cb(uv_timer_t *timer);

static void lock_again(bf_sampler *s, int64_t soon_ms)
{
	int64_t delay = s->cfg->throttle_lock_check_interval_ms;

	if (soon_ms > 0 && soon_ms < delay)
		delay = soon_ms;
	uv_timer_start(&s->lock_timer, lock_timer_cb, (uint64_t)delay, 0);
}

static void lock_check_done(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_sampler *s = arg;
	int64_t soonest = 0;

	(void)pg;
	s->lock_busy = 0;
	if (s->closing)
		return;
	if (!r->ok) {
		/* Fail closed: jobs hold until the check works again (the
		 * next sample carries the error; the log says it once). */
		if (!s->locks_error[0])
			bf_warning("checking for sessions blocked by our batches failed: %s",
				   r->message);
		snprintf(s->locks_error, sizeof(s->locks_error), "%s", r->message);
	} else {
		if (s->locks_error[0])
			bf_notice("checking for sessions blocked by our batches works again");
		s->locks_error[0] = '\0';
		for (int i = 0; i < PQntuples(r->res); i++) {
			bf_blocked b;

			bf_sampler_blocked_parse(r->res, i, &b);
			int64_t again = s->ops.on_blocked(&b, s->arg);

			if (again > 0 && (!soonest || again < soonest))
				soonest = again;
		}
	}
	lock_again(s, soonest);
}

static void lock_timer_cb(uv_timer_t *timer)
{
	bf_sampler *s = timer->data;
	char *pids;

	if (s->lock_busy || s->closing)
		return;
	pids = s->ops.batch_pids(s->arg);
	int jobs = !s->ops.sample_wanted || s->ops.sample_wanted(s->arg);

	if (!pids || (strcmp(pids, "{}") == 0 && (!s->locks_error[0] || !jobs))) {
		/* No batch in flight: idle until the next one starts. But a
		 * check that failed holds every job, so no batch would start
		 * to run it again: while there are jobs it is retried with no
		 * pids (no rows when it works) until it works; without jobs
		 * there is nothing to hold, and the next batch checks anew. */
		if (pids && !jobs)
			s->locks_error[0] = '\0';
		free(pids);
		return;
	}
	const char *params[1] = {pids};

	s->lock_busy = 1;
	bf_monitor_query(s->monitor, locks_sql, 1, params, lock_check_done, s);
	free(pids);
}

void bf_sampler_batch_started(bf_sampler *s)
{
	if (s->closing || s->lock_busy || uv_is_active((uv_handle_t *)&s->lock_timer))
		return;
	lock_again(s, 0);
}

/* ---- the replay poll (strict mode) ---- */

static void replay_timer_cb(uv_timer_t *timer);

static void replay_polled(bf_pg *pg, const bf_pg_result *r, void *arg)
{
	bf_sampler *s = arg;

	(void)pg;
	s->replay_busy = 0;
	if (s->closing)
		return;
	memset(&s->replay, 0, sizeof(s->replay));
	if (!r->ok)
		snprintf(s->replay.error, sizeof(s->replay.error), "monitor connection: %s",
			 r->message);
	else
		sampler_parse(r->res, &s->replay);
	s->replay.taken_ns = uv_hrtime();
	s->replay.asked_ns = s->replay_asked_ns;
	s->ops.on_replay(&s->replay, s->arg);
	if (s->ops.replay_wanted(s->arg))
		uv_timer_start(&s->replay_timer, replay_timer_cb, REPLAY_POLL_MS, 0);
}

static void replay_timer_cb(uv_timer_t *timer)
{
	bf_sampler *s = timer->data;

	if (s->replay_busy || s->closing || !s->ops.replay_wanted(s->arg))
		return;
	s->replay_busy = 1;
	s->replay_asked_ns = uv_hrtime();
	bf_monitor_query(s->monitor, replication_sql, 0, NULL, replay_polled, s);
}

void bf_sampler_replay_wanted(bf_sampler *s)
{
	if (s->closing || s->replay_busy || uv_is_active((uv_handle_t *)&s->replay_timer))
		return;
	uv_timer_start(&s->replay_timer, replay_timer_cb, 0, 0);
}

/* ---- lifecycle ---- */

int bf_sampler_init(bf_sampler *s, uv_loop_t *loop, bf_monitor *monitor, const bf_config *cfg,
		    const bf_sampler_ops *ops, void *arg)
{
	memset(s, 0, sizeof(*s));
	s->monitor = monitor;
	s->cfg = cfg;
	s->ops = *ops;
	s->arg = arg;
	uv_timer_init(loop, &s->sample_timer);
	uv_timer_init(loop, &s->lock_timer);
	uv_timer_init(loop, &s->replay_timer);
	s->sample_timer.data = s->lock_timer.data = s->replay_timer.data = s;
	return 0;
}

void bf_sampler_start(bf_sampler *s)
{
	uint64_t every = (uint64_t)s->cfg->throttle_sample_interval_ms;

	if (!s->closing)
		uv_timer_start(&s->sample_timer, sample_timer_cb, 0, every);
}

void bf_sampler_reconfigure(bf_sampler *s)
{
	bf_sampler_start(s);
}

static void sampler_timer_closed(uv_handle_t *handle)
{
	bf_sampler *s = handle->data;

	if (--s->closes_pending == 0 && s->on_closed)
		s->on_closed(s->arg);
}

void bf_sampler_close(bf_sampler *s, void (*on_closed)(void *arg))
{
	if (s->closing)
		return;
	s->closing = 1;
	s->on_closed = on_closed;
	s->closes_pending = 3;
	uv_close((uv_handle_t *)&s->sample_timer, sampler_timer_closed);
	uv_close((uv_handle_t *)&s->lock_timer, sampler_timer_closed);
	uv_close((uv_handle_t *)&s->replay_timer, sampler_timer_closed);
}
