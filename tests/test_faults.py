"""Crashes, restarts, concurrency: every row is still processed exactly once."""
import datetime
import random
import re
import time

import psycopg
import pytest

from daemon import insert_job, job_row, merge_config, wait_for
from workload import (SMALL_BATCHES, application, assert_each_row_once, counter_job, counter_table,
                      counters, wait_succeeded)

FAST_LEASE = {'engine': {'lease_s': 2, 'poll_interval_ms': 200}}


def test_sigkill_at_random_moments_never_processes_a_row_twice(db, daemon_factory):
    rows = 6000
    conn = db.conn
    counter_table(conn, rows=rows)
    overrides = merge_config(SMALL_BATCHES, FAST_LEASE)
    rng = random.Random(20261121)
    kills = 0
    for round_no in range(6):
        daemon = daemon_factory(db.server, db.name, overrides, name=f'life{round_no}')
        if round_no == 0:
            counter_job(conn, 'crashy', pause_ms=0.05)
        time.sleep(rng.uniform(0.3, 1.5))
        if job_row(conn, 'crashy')['state'] == 'succeeded':
            break
        daemon.kill()
        kills += 1
        # Mid-walk: some progress, not all of it.
        assert 0 < job_row(conn, 'crashy')['rows_scanned'] < rows or round_no == 0
    assert kills >= 3, 'the job finished before the daemon could be killed often enough'
    daemon_factory(db.server, db.name, overrides, name='last')
    row = wait_succeeded(conn, 'crashy', timeout=120)
    assert row['rows_scanned'] == rows
    assert_each_row_once(conn, rows=rows)


def test_concurrent_writer_loses_nothing(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL, '
                 'balance_x2 bigint, bf_counter int NOT NULL DEFAULT 0, app_counter int NOT NULL DEFAULT 0)')
    # Even keys now; the application inserts odd keys inside the walk's range
    # and new keys above it, and keeps updating existing rows.
    conn.execute('INSERT INTO accounts (id, balance) SELECT g * 2, g FROM generate_series(1, 4000) g')
    done = {'updates': 0, 'inserts': 0}

    def write(app, rng):
        key = rng.randrange(1, 4001) * 2
        # The application writes balance_x2 correctly itself.
        app.execute('UPDATE accounts SET balance = balance + 1, balance_x2 = (balance + 1) * 2, '
                    'app_counter = app_counter + 1 WHERE id = %s', (key,))
        done['updates'] += 1
        new_key = rng.choice([rng.randrange(0, 4000) * 2 + 1, 10000 + done['inserts']])
        cur = app.execute('INSERT INTO accounts (id, balance, balance_x2) VALUES (%s, 5, 10) '
                          'ON CONFLICT DO NOTHING', (new_key,))
        done['inserts'] += cur.rowcount

    with application(db, write, seed=7):
        daemon_factory(db.server, db.name, SMALL_BATCHES)
        insert_job(conn, name='x2', table_name='accounts',
                   set_clause='balance_x2 = balance * 2, bf_counter = bf_counter + 1',
                   where_clause='balance_x2 IS NULL')
        wait_succeeded(conn, 'x2', timeout=120)
    assert done['updates'] > 100, 'the application barely ran during the backfill'
    wrong = conn.execute('SELECT count(*) FROM accounts WHERE balance_x2 IS DISTINCT FROM balance * 2').fetchone()[0]
    assert wrong == 0
    # No lost update: every increment of the application is there.
    assert conn.execute('SELECT sum(app_counter) FROM accounts').fetchone()[0] == done['updates']
    assert conn.execute('SELECT sum(balance) FROM accounts').fetchone()[0] == \
        sum(range(1, 4001)) + done['updates'] + 5 * done['inserts']
    assert conn.execute('SELECT count(*) FROM accounts').fetchone()[0] == 4000 + done['inserts']
    # Never twice; and rows the application wrote correctly were left alone.
    assert conn.execute('SELECT max(bf_counter) FROM accounts').fetchone()[0] == 1


def test_two_daemons_share_the_jobs_and_survive_one_dying(db, daemon_factory):
    conn = db.conn
    tables = [f'part{i}' for i in range(4)]
    overrides = merge_config(SMALL_BATCHES, FAST_LEASE, {'engine': {'max_jobs': 2}})
    first = daemon_factory(db.server, db.name, overrides)
    second = daemon_factory(db.server, db.name, overrides)
    for table in tables:
        counter_table(conn, table, rows=3000)
        counter_job(conn, table, table, pause_ms=0.05)
    wait_for(lambda: conn.execute("SELECT count(DISTINCT owner) FROM backfill.slices "
                                  "WHERE state = 'running'").fetchone()[0] == 2,
             10, what='both daemons to run jobs')
    # One daemon dies; the other takes its jobs over once the leases expire.
    first.kill()
    for table in tables:
        row = wait_succeeded(conn, table, timeout=120)
        assert_each_row_once(conn, table, 3000)
    assert 'taking over' in second.log()
    assert conn.execute('SELECT max(lease_epoch) FROM backfill.slices').fetchone()[0] >= 2


def _batch_in_flight(conn, job):
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND state = 'active' AND starts_with(query, '/* backfilld batch */')",
                        (f'backfilld job {job}',)).fetchone()[0] > 0


# A batch that failed (the server's words) or whose connection broke.
CUT_BATCH = re.compile(r'job "restarts": batch(?:: | interrupted: )')


def test_database_restart_mid_job(own_pg, daemon_factory):
    """The server restarted (fast: sessions terminated; immediate: a crash
    and recovery) while a batch is in flight: the daemon reconnects by
    itself, the cut batch is rolled back, and the walk goes on from the
    committed checkpoint."""
    own_pg.create_database('app')
    conn = own_pg.connect('app')
    counter_table(conn, rows=3000)
    daemon = daemon_factory(own_pg, 'app', SMALL_BATCHES)
    # 50 rows x 4 ms: each batch is in flight for about 0.2 s.
    counter_job(conn, 'restarts', pause_ms=4)
    conn.close()
    for mode in ('fast', 'immediate'):
        conn = own_pg.connect('app')
        wait_for(lambda: conn.execute("SELECT rows_scanned > 0 FROM backfill.jobs").fetchone()[0],
                 30, what='progress before the restart')
        wait_for(lambda: _batch_in_flight(conn, 'restarts'), 30, what='a batch in flight')
        scanned = conn.execute('SELECT rows_scanned FROM backfill.jobs').fetchone()[0]
        assert scanned < 3000, 'the job finished before the restart'
        conn.close()
        cut_before = len(CUT_BATCH.findall(daemon.log()))
        own_pg.restart(mode=mode)
        conn = own_pg.connect('app')
        wait_for(lambda: conn.execute('SELECT rows_scanned FROM backfill.jobs').fetchone()[0] > scanned,
                 30, what=f'progress after the {mode} restart')
        conn.close()
        # The batch in flight was cut (interrupted, or ended by the
        # server's shutdown), not lost track of.
        assert len(CUT_BATCH.findall(daemon.log())) > cut_before, mode
    conn = own_pg.connect('app')
    row = wait_succeeded(conn, 'restarts', timeout=120)
    assert_each_row_once(conn, rows=3000)
    assert row['rows_scanned'] == 3000
    assert 'reconnecting' in daemon.log()
    assert daemon.alive()
    conn.close()


@pytest.mark.parametrize('where', ['mid_batch', 'between_batches'])
def test_sigstop_beyond_the_lease_is_fenced(db, daemon_factory, where):
    """A daemon frozen (SIGSTOP) longer than its lease, with a batch in
    flight or between two batches; another daemon takes the job over; then
    SIGCONT. The stale daemon's next checkpoint is refused by the fence,
    it says it lost the lease, and no row is processed twice."""
    conn = db.conn
    server_log_start = len(db.server.log())
    counter_table(conn, rows=1000)
    overrides = merge_config(SMALL_BATCHES, FAST_LEASE)
    stalled = daemon_factory(db.server, db.name, overrides, name='stalled')
    if where == 'mid_batch':
        # The fourth batch (keys 151..200) takes 50 x 60 ms = 3 s, longer
        # than the 2 s lease; the others are quick.
        insert_job(conn, name='stalled', table_name='items',
                   set_clause='counter = counter + 1 + test_pause('
                              'CASE WHEN id BETWEEN 151 AND 200 THEN 60 ELSE 0.1 END)')
        wait_for(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfilld job stalled' "
            "AND state = 'active' AND starts_with(query, '/* backfilld batch */') "
            "AND query_start < now() - interval '0.3 s'").fetchone()[0] > 0,
            30, what='the slow batch in flight')
    else:
        # Quick batches, half a second apart (100 rows/s, 50-row batches).
        counter_job(conn, 'stalled', pause_ms=0.1, settings='{"max_rows_per_s": 100}')
        wait_for(lambda: job_row(conn, 'stalled')['batches'] >= 2, 30, what='some batches')
        wait_for(lambda: not _batch_in_flight(conn, 'stalled'), 30, what='a gap between batches')
    stalled.sigstop()
    epoch = job_row(conn, 'stalled')['lease_epoch']
    other = daemon_factory(db.server, db.name, merge_config(overrides, {'batch': {'lock_timeout_ms': 10000}}),
                           name='other')
    wait_for(lambda: job_row(conn, 'stalled')['lease_epoch'] > epoch, 30, what='the takeover')
    # The new owner makes progress while the old one is still frozen.
    taken = job_row(conn, 'stalled')['batches']
    wait_for(lambda: job_row(conn, 'stalled')['batches'] > taken, 30, what='progress by the new owner')
    stalled.sigcont()
    wait_for(lambda: 'lease lost: the job is now owned by' in stalled.log(), 30,
             what='the stalled daemon to notice it lost the lease')
    assert 'job "stalled": the checkpoint fence refused the batch; re-reading the job row' \
        in stalled.log()
    # The server refused it: the batch was rolled back.
    assert 'ERROR:  backfill checkpoint fence' in db.server.log()[server_log_start:]
    row = wait_succeeded(conn, 'stalled', timeout=120)
    assert_each_row_once(conn, rows=1000)
    assert 'taking over' in other.log()
    assert counters(conn) == {1: 1000}
    assert stalled.alive() and other.alive()


def _waiting_on_a_lock(conn, job):
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND wait_event_type = 'Lock'", (f'backfilld job {job}',)).fetchone()[0] > 0


def test_a_key_moved_during_a_lock_wait_does_not_move_the_checkpoint(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)')
    conn.execute('INSERT INTO items (id) SELECT g * 10 FROM generate_series(1, 200) g')
    daemon_factory(db.server, db.name, {'batch': {'size': 50, 'size_min': 50, 'size_max': 50,
                                                  'lock_timeout_ms': 20000}})
    # The application moves key 30 to 1005 (within the walk) and commits while
    # the first batch waits for that row: the batch must not take 1005 as its
    # last key, or rows 40..1000 would never be walked.
    app = db.connect(autocommit=False)
    app.execute('UPDATE items SET id = 1005 WHERE id = 30')
    insert_job(conn, name='moved', table_name='items', set_clause='counter = counter + 1')
    wait_for(lambda: _waiting_on_a_lock(conn, 'moved'), 15, what='the batch to wait for the row')
    app.commit()
    app.close()
    row = wait_succeeded(conn, 'moved', timeout=60)
    assert_each_row_once(conn, rows=200)


def test_a_sql_job_copies_what_was_committed_during_its_lock_wait(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE users (id bigint PRIMARY KEY, street text)')
    conn.execute('CREATE TABLE addresses (user_id bigint PRIMARY KEY, street text)')
    conn.execute("INSERT INTO users SELECT g, 'old' FROM generate_series(1, 100) g")
    daemon_factory(db.server, db.name, {'batch': {'lock_timeout_ms': 20000}})
    app = db.connect(autocommit=False)
    app.execute("UPDATE users SET street = 'new' WHERE id = 3")
    insert_job(conn, name='copy', table_name='users', kind='sql',
               statement='INSERT INTO addresses SELECT u.id, u.street FROM users u JOIN batch USING (id)')
    wait_for(lambda: _waiting_on_a_lock(conn, 'copy'), 15, what='the batch to wait for the row')
    app.commit()
    app.close()
    row = wait_succeeded(conn, 'copy', timeout=60)
    assert conn.execute('SELECT street FROM addresses WHERE user_id = 3').fetchone()[0] == 'new'
    assert conn.execute('SELECT count(*) FROM addresses a JOIN users u ON u.id = a.user_id '
                        'AND u.street = a.street').fetchone()[0] == 100


def test_shutdown_grace_ends_cleanly_while_the_job_row_is_locked(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=2000)
    daemon = daemon_factory(db.server, db.name, merge_config(SMALL_BATCHES, {
        'engine': {'shutdown_grace_ms': 1000, 'lease_s': 3},
        'batch': {'lock_timeout_ms': 30000}}))
    counter_job(conn, 'held', pause_ms=0.1)
    wait_for(lambda: job_row(conn, 'held')['batches'] >= 2, 30, what='some batches')
    # An operator's transaction holds the job row: the batch's checkpoint,
    # the renewals and the release all wait on it.
    operator = db.connect(autocommit=False)
    operator.execute("SELECT * FROM backfill.jobs WHERE name = 'held' FOR UPDATE")
    try:
        wait_for(lambda: _waiting_on_a_lock(conn, 'held'), 15, what='the batch to wait on the job row')
        started = time.monotonic()
        assert daemon.stop(timeout=20) == 0
        assert time.monotonic() - started < 10
    finally:
        operator.rollback()
        operator.close()
    daemon_factory(db.server, db.name, merge_config(SMALL_BATCHES, FAST_LEASE), name='next')
    row = wait_succeeded(conn, 'held', timeout=60)
    assert_each_row_once(conn, rows=2000)


def test_a_lease_held_in_our_name_for_a_job_we_do_not_run_is_given_back(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=100)
    daemon = daemon_factory(db.server, db.name, FAST_LEASE)
    owner = re.search(r'starting as lease owner (\S+)', daemon.log()).group(1)
    # As if a claim committed but its reply never reached the daemon: one
    # INSERT, so that the row is never claimable in between.
    counter_job(conn, 'orphan', state='running', owner=owner, lease_epoch=1,
                lease_until=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    row = wait_succeeded(conn, 'orphan', timeout=20)
    assert 'held our lease but was not running here' in daemon.log()
    assert_each_row_once(conn, rows=100)


def test_delete_and_reinsert_churn_never_stalls_the_walk(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    # Two hot spots inside the walk, hammered by two application sessions
    # that delete and re-insert rows (a queue, a session table), carrying the
    # counter over.
    hot = list(range(1000, 1010)) + list(range(2000, 2010))
    touched = set()

    def churn(app, rng):
        key = rng.choice(hot)
        with app.transaction():
            row = app.execute('DELETE FROM items WHERE id = %s RETURNING counter', (key,)).fetchone()
            if row:
                app.execute('INSERT INTO items (id, counter) VALUES (%s, %s)', (key, row[0]))
        touched.add(key)

    with application(db, churn, sessions=2, seed=1):
        daemon_factory(db.server, db.name, SMALL_BATCHES)
        wait_for(lambda: len(touched) >= len(hot), 30, what='the application to churn every hot key')
        counter_job(conn, 'churned', pause_ms=0.2)
        wait_succeeded(conn, 'churned', timeout=90)
    rows = dict(conn.execute('SELECT id, counter FROM items').fetchall())
    assert len(rows) == 3000
    assert max(rows.values()) == 1, 'a row was processed twice'
    # Rows the application never touched: exactly once. (A deleted and
    # re-inserted row is a new row, the application's to write.)
    assert all(rows[k] == 1 for k in rows if k not in touched)


def test_a_repeatable_read_default_does_not_break_batches(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=2000)
    conn.execute(f"ALTER DATABASE {db.name} SET default_transaction_isolation = 'repeatable read'")

    def update(app, rng):
        try:
            app.execute("UPDATE items SET payload = 'app' WHERE id = %s", (rng.randrange(1, 2001),))
        except psycopg.errors.SerializationFailure:
            pass    # a REPEATABLE READ application retries these

    with application(db, update, seed=3):
        daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
        counter_job(conn, 'rr')
        wait_succeeded(conn, 'rr', timeout=60)
    assert_each_row_once(conn, rows=2000)
    assert 'could not serialize access' not in daemon.log()


GATE = """
-- Returns needs. Its n-th call in a transaction takes advisory lock n when
-- n is 2 or 4: a test holding those locks sees exactly where a batch is,
-- acts, and lets it go on.
CREATE FUNCTION test_gate(needs bool) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
DECLARE n int := coalesce(nullif(current_setting('test.calls', true), ''), '0')::int + 1;
BEGIN
  PERFORM set_config('test.calls', n::text, true);
  IF n IN (2, 4) THEN PERFORM pg_advisory_xact_lock(n); END IF;
  RETURN needs;
END $$;
"""


def _gated_at(conn, job, call):
    return conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = %s AND l.locktype = 'advisory' AND NOT l.granted "
        "AND l.objid = %s", (f'backfilld job {job}', call)).fetchone()[0] > 0


def test_a_row_changed_between_snapshot_and_lock_cuts_the_batch(db, daemon_factory):
    conn = db.conn
    conn.execute(GATE)
    conn.execute("CREATE TABLE items (id int PRIMARY KEY, needs bool NOT NULL, payload text NOT NULL DEFAULT '')")
    conn.execute('CREATE TABLE copies (id int PRIMARY KEY, payload text)')
    # Row 2 does not need work when the first batch's statement 1 looks at it.
    conn.execute('INSERT INTO items (id, needs) VALUES (1, true), (2, false)')
    gatekeeper = db.connect()
    gatekeeper.execute('SELECT pg_advisory_lock(2), pg_advisory_lock(4)')
    try:
        daemon = daemon_factory(db.server, db.name, {'batch': {'size': 2, 'size_min': 2, 'size_max': 2,
                                                               'lock_timeout_ms': 20000}})
        # A copy reads the rows through its own snapshot: a row changed
        # after that snapshot must not be copied stale.
        insert_job(conn, name='cut', table_name='items', kind='sql',
                   where_clause='test_gate(needs) AND NOT EXISTS (SELECT FROM copies c WHERE c.id = items.id)',
                   statement='INSERT INTO copies SELECT i.id, i.payload FROM items i JOIN batch USING (id)')
        # Call 2: statement 1 checks row 2 (not matching, so never locked).
        # Now it starts to match.
        wait_for(lambda: _gated_at(conn, 'cut', 2), 15, what='statement 1 to check row 2')
        conn.execute('UPDATE items SET needs = true WHERE id = 2')
        gatekeeper.execute('SELECT pg_advisory_unlock(2)')
        # Call 4: statement 2 checks row 2, which its snapshot shows matching
        # but which no one has locked. Now someone changes it.
        wait_for(lambda: _gated_at(conn, 'cut', 4), 15, what='statement 2 to check row 2')
        conn.execute("UPDATE items SET payload = 'changed' WHERE id = 2")
        gatekeeper.execute('SELECT pg_advisory_unlock(4)')
    finally:
        gatekeeper.close()
    wait_succeeded(conn, 'cut', timeout=30)
    # The batch ended before row 2; the next one locked it first, and copied
    # what it holds.
    assert conn.execute('SELECT id, payload FROM copies ORDER BY id').fetchall() == [(1, ''), (2, 'changed')]
    assert 'batch cut after 1 of 2 rows' in daemon.log()
