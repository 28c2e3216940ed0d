"""Lock waits: a batch that makes a session wait too long for one of its rows
is cancelled (rolled back), shrunk and backed off; a DDL lock queued behind a
batch cancels it at once; a lock a batch cannot get within lock_timeout is
waited out and retried, never a failure (with the job's own lock_timeout_ms
when its row sets one); and a short wait behind a batch is just a wait.
Blocked sessions are found even when the daemon's role sees nothing of the
application's sessions (no pg_monitor, no pg_read_all_stats).

The batches here are slow on purpose (test_pause() in the SET clause), so that
a batch holds its rows for seconds: every time bound asserted is far below what
the batch itself takes, so that a daemon that does not cancel fails the test.
"""

import json
import re
import threading
import time

import psycopg
import pytest

from daemon import job_row, merge_config, wait_for
from workload import (assert_each_row_once, counter_job, counter_table, login_role,
                      wait_succeeded)

# Full batches of 200 rows, allowed to shrink to 20; a target far above what
# a batch takes, so that only a cancel or a timeout shrinks them.
SLOW_BATCHES = {'batch': {'size': 200, 'size_min': 20, 'size_max': 200, 'target_ms': 60000}}
ROWS = 600
PAUSE_MS = 25       # 200 rows x 25 ms: a full batch holds its rows about 5 s

# "blocking" as a word of the log, not "non-blocking".
BLOCKING_RE = re.compile(r'(?<!non-)\bblocking\b')


def config(**throttle):
    return merge_config(SLOW_BATCHES, {'throttle': throttle})


def log_lines(daemon, pattern):
    """The daemon's log lines matching pattern (a regex)."""
    return [line for line in daemon.log().splitlines() if re.search(pattern, line)]


def sleeping_batch(conn, name):
    """(pid, xact_start) of the job's batch while it runs its SET clause (it
    sleeps in test_pause), once it has run for 0.3 s, or None."""
    return conn.execute(
        "SELECT pid, xact_start FROM pg_stat_activity "
        "WHERE application_name = %s AND state = 'active' AND wait_event = 'PgSleep' "
        "AND clock_timestamp() - xact_start > interval '300 ms'",
        (f'backfilld job {name}',)).fetchone()


def key_in_flight(conn, name, timeout=30):
    """(key, batch pid): a key of the batch in flight that it has locked by
    now. The batch covers the keys just above the checkpoint it started
    from, in key order, one test_pause each: after 0.3 s its first key has
    long been updated (and stays locked until the batch ends), whatever the
    batch size."""
    def probe():
        before = sleeping_batch(conn, name)
        if not before:
            return None
        checkpoint = job_row(conn, name)['checkpoint']
        # Still the same transaction: the checkpoint read is the one it
        # started from (its own is not committed yet).
        if sleeping_batch(conn, name) != before:
            return None
        return (int(checkpoint[-1]) + 1 if checkpoint else 1), before[0]
    return wait_for(probe, timeout, interval=0.02, what=f'a batch of job {name} in flight')


def run_waiting(watch, app, statement, params, batch_pid, timeout=40):
    """Runs statement on the connection app (the application) in a thread and
    meanwhile watches, from the connection watch, whether it waits on a lock
    held by batch_pid. Returns (first row or None, seconds it took, whether
    it was seen waiting on the batch)."""
    app_pid = app.info.backend_pid
    out = {}

    def run():
        started = time.monotonic()
        try:
            cur = app.execute(statement, params)
            out['row'] = cur.fetchone() if cur.description else None
        except Exception as exc:  # reported below, not lost in the thread
            out['error'] = exc
        out['elapsed'] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    seen = False
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        if not seen:
            seen = watch.execute('SELECT %s = ANY (pg_blocking_pids(%s))',
                                 (batch_pid, app_pid)).fetchone()[0]
        time.sleep(0.02)
    thread.join(10)
    assert not thread.is_alive(), f'the application statement still runs after {timeout}s'
    assert 'error' not in out, f'the application statement failed: {out["error"]}'
    return out['row'], out['elapsed'], seen



def application_update_in_batch(db, conn, name):
    """The application updates a row (key) of job `name`'s batch in flight, on a
    connection of its own (postgres); returns (its RETURNING row, seconds it
    waited, the key) after checking that it really waited on the batch."""
    key, batch_pid = key_in_flight(conn, name)
    with db.connect() as app:
        app.execute("SET statement_timeout = '30s'")
        row, waited, seen = run_waiting(
            conn, app, "UPDATE items SET payload = 'app' WHERE id = %s RETURNING counter",
            (key,), batch_pid)
    print(f'key {key}: the application waited {waited:.2f} s')
    assert seen, f'the application statement on key {key} never waited on the batch'
    return row, waited, key

def test_a_batch_blocking_the_application_is_cancelled_and_shrunk(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=ROWS)
    daemon = daemon_factory(db.server, db.name, overrides=config(
        lock_wait_max_ms=500, lock_check_interval_ms=100))
    counter_job(conn, 'j', pause_ms=PAUSE_MS)

    # A whole 5 s batch with nobody waiting on it: the daemon's own sessions
    # (monitor, lease renewals, status) are never taken for its victims.
    wait_for(lambda: job_row(conn, 'j')['batches'] >= 1, 30, what='a first batch')
    assert not log_lines(daemon, 'cancelling the batch in flight'), \
        'a batch was cancelled with no application session around'
    assert daemon.ctl_json('status', 'j')['jobs'][0]['batch_size'] == 200

    row, waited, key = application_update_in_batch(db, conn, "j")
    # The contract: a session waits at most lock_wait_max_ms (500 ms) plus
    # the time to notice and cancel, not the 5 s the batch would take.
    assert waited < (500 + 2000) / 1000, \
        f'the application waited {waited:.2f} s on the batch (threshold 0.5 s)'
    # The batch holding the row was rolled back, not committed.
    assert row == (0,), f'the application saw counter {row}: the batch was not rolled back'
    wait_for(lambda: log_lines(daemon, 'cancelling the batch in flight'), 10,
             what='the cancel in the log')

    # Shrunk: halved from 200, and it grows back only slowly (+25% a batch).
    reasons = set()

    def shrunk():
        [job] = daemon.ctl_json('status', 'j')['jobs']
        reasons.update(job['throttle_reasons'])
        return job['batch_size'] < 200
    wait_for(shrunk, 10, interval=0.1, what='a smaller batch size in status')
    print('throttle reasons seen:', reasons)

    row = wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=ROWS)
    assert conn.execute('SELECT payload FROM items WHERE id = %s', (key,)).fetchone()[0] == 'app'
    cancels = log_lines(daemon, 'cancelling the batch in flight')
    blocking = log_lines(daemon, BLOCKING_RE)
    print('\n'.join(cancels + blocking))
    assert cancels and blocking, 'the log says neither that nor why the batch was cancelled'
    assert row['rows_scanned'] == ROWS


def test_a_ddl_lock_queued_behind_a_batch_cancels_it_at_once(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=ROWS)
    # A threshold far above the batch's 5 s: only the DDL rule can explain
    # a quick grant.
    daemon = daemon_factory(db.server, db.name, overrides=config(
        lock_wait_max_ms=10000, lock_check_interval_ms=100))
    counter_job(conn, 'j', pause_ms=PAUSE_MS)

    _, batch_pid = key_in_flight(conn, 'j')
    with db.connect(autocommit=False) as ddl:
        ddl.execute("SET LOCAL lock_timeout = '30s'")
        _, waited, seen = run_waiting(conn, ddl, 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE',
                                      None, batch_pid)
        print(f'LOCK TABLE waited {waited:.2f} s')
        # The daemon may cancel before the test's 20 ms poll ever sees the
        # wait (CI once saw a 10 ms grant): its log naming this very session
        # as blocked by the batch is the same proof.
        named = log_lines(daemon, rf'blocking: pid {ddl.info.backend_pid} waiting')
        assert seen or named, 'LOCK TABLE never waited on the batch'
        assert waited < 3.0, (
            f'LOCK TABLE waited {waited:.2f} s behind the batch: not cancelled at once')
        # Held a second: the job cannot move meanwhile, and does not fail.
        scanned = job_row(conn, 'j')['rows_scanned']
        time.sleep(1.0)
        row = job_row(conn, 'j')
        assert row['rows_scanned'] == scanned and row['state'] == 'running'
        ddl.commit()

    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=ROWS)
    cancels = log_lines(daemon, 'cancelling the batch in flight')
    print('\n'.join(cancels + log_lines(daemon, BLOCKING_RE)))
    assert cancels, 'the log does not say the batch was cancelled'


def test_a_lock_held_elsewhere_is_waited_out_between_batches(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    # Quick batches (50 rows x 1 ms), so that the lock is taken between two
    # of them or, at worst, after a short wait behind one.
    daemon = daemon_factory(db.server, db.name, overrides={
        'batch': {'size': 50, 'size_min': 50, 'size_max': 50, 'lock_timeout_ms': 300}})
    counter_job(conn, 'j', pause_ms=1)
    wait_for(lambda: job_row(conn, 'j')['batches'] >= 2, 30, what='some batches')

    reasons, states = set(), set()
    with db.connect(autocommit=False) as holder:
        holder.execute("SET LOCAL lock_timeout = '30s'")
        holder.execute('LOCK TABLE items IN ACCESS EXCLUSIVE MODE')
        scanned = job_row(conn, 'j')['rows_scanned']
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            [job] = daemon.ctl_json('status', 'j')['jobs']
            reasons.update(job['throttle_reasons'])
            states.add(job['state'])
            states.add(job_row(conn, 'j')['state'])
            time.sleep(0.1)
        assert job_row(conn, 'j')['rows_scanned'] == scanned
        holder.commit()

    print('throttle reasons seen:', reasons)
    assert states == {'running'}, f'the job went through {states} while the lock was held'
    assert any(r.startswith('lock_timeout') for r in reasons), (
        f'no lock_timeout reason in status while the table was locked: {reasons}')
    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=4000)


def test_a_lock_held_before_the_job_starts_is_waited_out(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=500)
    daemon_factory(db.server, db.name, overrides={'batch': {'lock_timeout_ms': 300}})
    states = set()
    with db.connect(autocommit=False) as holder:
        holder.execute("SET LOCAL lock_timeout = '30s'")
        holder.execute('LOCK TABLE items IN ACCESS EXCLUSIVE MODE')
        counter_job(conn, 'j')
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            states.add(job_row(conn, 'j')['state'])
            time.sleep(0.1)
        holder.commit()
    assert states <= {'pending', 'running'}, f'the job went through {states}'
    wait_succeeded(conn, 'j', timeout=60)
    assert_each_row_once(conn, rows=500)


def test_a_short_wait_behind_a_batch_is_not_cancelled(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=ROWS)
    daemon = daemon_factory(db.server, db.name, overrides=config(
        lock_wait_max_ms=5000, lock_check_interval_ms=100))
    # 200 rows x 8 ms: a batch holds its rows about 1.6 s, well under 5 s.
    counter_job(conn, 'j', pause_ms=8)

    row, waited, key = application_update_in_batch(db, conn, "j")
    # It waited for the batch to commit, then updated the batch's version.
    assert row == (1,), f'the application saw counter {row}: the batch did not commit first'

    # Not cancelled, but felt: the batch that made a session wait counted
    # it at its end, and the size halved (from 200: nothing else shrinks it
    # here, the duration target being a minute).
    def halved():
        [job] = daemon.ctl_json('status', 'j')['jobs']
        return job if job['sessions_waited'] >= 1 else None
    job = wait_for(halved, 10, interval=0.1, what='sessions_waited in status')
    assert job['batch_size'] < 200, f'batch size {job["batch_size"]} after a session waited'
    assert log_lines(daemon, r'1 application session waited on a batch.s row locks'
                             r' until it committed; batch size now 100,')
    text = daemon.ctl('status', 'j', check=0).stdout
    assert 'application sessions that waited on its batches: 1' in text, text

    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=ROWS)
    assert conn.execute('SELECT payload FROM items WHERE id = %s', (key,)).fetchone()[0] == 'app'
    assert not log_lines(daemon, 'cancelling the batch in flight')
    assert not log_lines(daemon, BLOCKING_RE)


# -- a daemon role that sees no other role's wait events --------------------

@pytest.fixture
def plain_role(pg):
    """A plain login role (not superuser, no pg_monitor, no
    pg_read_all_stats); dropped after the test's database (requested before
    db, so torn down after it, daemons stopped first), even on failure."""
    with login_role(pg, 'bf_plain_owner') as role:
        yield role


def test_blocking_is_detected_for_a_role_without_pg_monitor(plain_role, db, daemon_factory):
    conn = db.conn
    role = plain_role
    # The role owns the database (the daemon creates its schema there) and
    # the table; everything else here runs as the superuser postgres.
    conn.execute(f'ALTER DATABASE {db.name} OWNER TO {role}')
    counter_table(conn, rows=ROWS)
    conn.execute(f'ALTER TABLE items OWNER TO {role}')
    assert conn.execute(
        "SELECT rolsuper, pg_has_role(oid, 'pg_monitor', 'MEMBER'), "
        "pg_has_role(oid, 'pg_read_all_stats', 'MEMBER') FROM pg_roles WHERE rolname = %s",
        (role,)).fetchone() == (False, False, False)
    server = db.server
    conninfo = f'host={server.host} port={server.port} user={role} dbname={db.name}'
    with psycopg.connect(conninfo, autocommit=True) as plain:
        # What the daemon's role sees of another role's session: no wait
        # event (postgres sees this idle session wait on its client).
        pid = conn.info.backend_pid
        sql_wait = 'SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s'
        assert plain.execute(sql_wait, (pid,)).fetchone() == (None,)
    with db.connect() as other:
        assert other.execute(sql_wait, (pid,)).fetchone() == ('Client',)

    daemon = daemon_factory(server, db.name, overrides=merge_config(
        config(lock_wait_max_ms=500, lock_check_interval_ms=100),
        {'database': {'conninfo': conninfo}}))
    counter_job(conn, 'j', pause_ms=PAUSE_MS)
    wait_for(lambda: job_row(conn, 'j')['batches'] >= 1, 30, what='a first batch')
    assert conn.execute("SELECT usename FROM pg_stat_activity WHERE application_name = %s",
                        ('backfilld job j',)).fetchone() == (role,)

    # The application: postgres, another role than the daemon's.
    row, waited, key = application_update_in_batch(db, conn, "j")
    assert waited < (500 + 2000) / 1000, (
        f'the application waited {waited:.2f} s on the batch (threshold 0.5 s): the daemon, '
        f'as {role}, did not see it blocked')
    assert row == (0,), f'the application saw counter {row}: the batch was not rolled back'
    wait_for(lambda: log_lines(daemon, 'cancelling the batch in flight'), 10,
             what='the cancel in the log')

    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=ROWS)
    assert conn.execute('SELECT payload FROM items WHERE id = %s', (key,)).fetchone()[0] == 'app'
    assert not log_lines(daemon, 'blocking check: cannot'), 'the blocking check failed'


# -- per-job lock_timeout ----------------------------------------------------

def status_reasons(daemon, name):
    """(state, throttle_reasons) of the job in status, or None if status fails."""
    result = daemon.ctl('status', name, '--json')
    if result.returncode != 0:
        return None
    [job] = json.loads(result.stdout)['jobs']
    return job['state'], job['throttle_reasons']


def test_per_job_lock_timeout_applies_to_the_live_session(db, daemon_factory):
    conn = db.conn
    rows = 500
    counter_table(conn, rows=rows)
    # The configuration's lock_timeout (20 s) is far beyond every bound below:
    # only the job's own 300 ms can explain a lock_timeout reason in time.
    daemon = daemon_factory(db.server, db.name, overrides={'batch': {'lock_timeout_ms': 20000}})
    reasons, states = set(), set()
    with db.connect(autocommit=False) as holder:
        holder.execute("SET LOCAL lock_timeout = '30s'")
        holder.execute('LOCK TABLE items IN ACCESS EXCLUSIVE MODE')
        counter_job(conn, 'j', settings='{"lock_timeout_ms": 300}')
        inserted = time.monotonic()

        def lock_timeout_reason():
            found = status_reasons(daemon, 'j')
            if found:
                states.add(found[0])
                reasons.update(found[1])
            return [r for r in reasons if r.startswith('lock_timeout')]
        hits = wait_for(lock_timeout_reason, 3.0, interval=0.03,
                        what=lambda: f'a lock_timeout reason (reasons seen: {reasons}, '
                                     f'states: {states})')
        print(f'lock_timeout reason after {time.monotonic() - inserted:.2f} s: {hits}')
        assert any('300 ms' in r for r in hits), (
            f'the reason does not name the job\'s 300 ms: {hits}')
        # Held 4 s in all: nothing done, and never a failure.
        while time.monotonic() < inserted + 4.0:
            states.add(job_row(conn, 'j')['state'])
            time.sleep(0.1)
        assert job_row(conn, 'j')['rows_scanned'] == 0
        holder.commit()

    assert states <= {'pending', 'running'}, f'the job went through {states}'
    wait_succeeded(conn, 'j', timeout=30)
    assert_each_row_once(conn, rows=rows)
    assert job_row(conn, 'j')['settings'] == {'lock_timeout_ms': 300}
