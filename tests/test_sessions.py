"""Session settings: the daemon works the same whatever the database's (or
role's) defaults, its connections notice a dead peer well inside the lease,
and it never repeats what other sessions run.

The database of most tests here has every default an operator might have
set that the daemon must not trip over: a non-ISO DateStyle (its output
cannot be read back: 'IST' in 'Postgres' style is parsed as Israel time), a
time zone that is not a whole hour off UTC, sql_standard intervals, floats
without extra digits, and an idle_session_timeout that kills any session
idle for 1.5 s. The test's own extra connections opt out of that timeout.

The lock tests reuse tests/test_locks.py's slow batches (test_pause() in the
SET clause): every bound asserted on a wait is far below what the batch
itself takes, so that a daemon that does not cancel fails.
"""

import json
import re
import time

import pytest
from psycopg import sql

from daemon import job_row, merge_config, wait_for
from test_locks import (BLOCKING_RE, PAUSE_MS, ROWS, application_update_in_batch, config,
                        key_in_flight, log_lines, run_waiting)
from workload import assert_each_row_once, counter_job, counter_table, wait_succeeded

ODD_DEFAULTS = {
    'DateStyle': 'Postgres, DMY',
    'TimeZone': 'Asia/Kolkata',
    'IntervalStyle': 'sql_standard',
    'idle_session_timeout': '1500ms',
    'extra_float_digits': '0',
}
IDLE_SESSION_TIMEOUT_S = 1.5
# What the test's own extra connections run with: the database's idle
# session timeout would kill them between two statements of a test.
NOT_IDLE_KILLED = {'options': '-c idle_session_timeout=0'}

RECONNECT_RE = r'; reconnecting in \d+ ms'


@pytest.fixture
def odd_db(db):
    """db with ODD_DEFAULTS as database defaults. db.conn predates them (a
    session takes a database's settings when it starts) and is not
    affected; every connection made after, the daemon's included, is."""
    for name, value in ODD_DEFAULTS.items():
        db.conn.execute(sql.SQL('ALTER DATABASE {} SET {} = {}').format(
            sql.Identifier(db.name), sql.Identifier(name.lower()), sql.Literal(value)))
    with db.connect() as fresh:
        assert fresh.execute('SHOW DateStyle').fetchone() == ('Postgres, DMY',)
        assert fresh.execute('SHOW idle_session_timeout').fetchone() == ('1500ms',)
    return db


def daemon_sessions(conn):
    """{application_name: seconds since its backend started} of the daemon's
    sessions."""
    return dict(conn.execute(
        "SELECT application_name, extract(epoch FROM now() - backend_start)::float8 "
        "FROM pg_stat_activity WHERE application_name LIKE 'backfilld %' "
        "AND datname = current_database()").fetchall())


# -- (a), (b): cancelling a batch that blocks the application ---------------

def test_a_blocked_update_is_released_under_odd_session_defaults(odd_db, daemon_factory):
    conn = odd_db.conn
    counter_table(conn, rows=ROWS)
    daemon = daemon_factory(odd_db.server, odd_db.name, overrides=config(
        lock_wait_max_ms=500, lock_check_interval_ms=100))
    counter_job(conn, 'j', pause_ms=PAUSE_MS)

    # The application's connection is made after the ALTER DATABASE too: it
    # runs with the odd defaults (its statement is never idle long enough
    # for the idle timeout).
    row, waited, key = application_update_in_batch(odd_db, conn, 'j')
    # A full batch holds its rows about 5 s; cancelled, the application
    # waits lock_wait_max_ms (0.5 s) plus the time to notice and cancel.
    assert waited < 2.5, (
        f'the application waited {waited:.2f} s on the batch (threshold 0.5 s): '
        f'the cancel did not hit it')
    assert row == (0,), f'the application saw counter {row}: the batch was not rolled back'
    cancels = log_lines(daemon, 'cancelling the batch in flight')
    assert 1 <= len(cancels) <= 3, (
        f'{len(cancels)} cancels for one blocked session:\n' + '\n'.join(cancels))

    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=ROWS)
    assert conn.execute('SELECT payload FROM items WHERE id = %s', (key,)).fetchone()[0] == 'app'


def test_a_queued_lock_table_cancels_the_batch_under_odd_session_defaults(odd_db,
                                                                          daemon_factory):
    conn = odd_db.conn
    rows = 400
    counter_table(conn, rows=rows)
    # A threshold far above the batch: only the DDL rule can explain a
    # quick grant. 200 rows x 40 ms: a full batch holds the table 8 s.
    daemon = daemon_factory(odd_db.server, odd_db.name, overrides=config(
        lock_wait_max_ms=60000, lock_check_interval_ms=100))
    counter_job(conn, 'j', pause_ms=40)

    _, batch_pid = key_in_flight(conn, 'j')
    with odd_db.connect(autocommit=False, **NOT_IDLE_KILLED) as ddl:
        ddl.execute("SET LOCAL lock_timeout = '60s'")
        _, waited, seen = run_waiting(conn, ddl, 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE',
                                      None, batch_pid, timeout=60)
        print(f'LOCK TABLE waited {waited:.2f} s')
        named = log_lines(daemon, rf'blocking: pid {ddl.info.backend_pid}\b')
        assert seen or named, 'LOCK TABLE never waited on the batch'
        assert waited < 4.0, (
            f'LOCK TABLE waited {waited:.2f} s behind an 8 s batch: not cancelled at once')
        ddl.commit()

    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=rows)
    assert log_lines(daemon, 'cancelling the batch in flight')


# -- (c): idle_session_timeout ----------------------------------------------

def test_idle_connections_outlive_the_databases_idle_session_timeout(odd_db, daemon_factory):
    conn = odd_db.conn
    rows = 200
    counter_table(conn, rows=rows)
    # 50-row batches at 25 rows/s: the job's connection idles about 2 s
    # between two batches, longer than the idle timeout.
    daemon = daemon_factory(odd_db.server, odd_db.name, overrides={
        'batch': {'size': 50, 'size_min': 50, 'size_max': 50},
        'throttle': {'max_rows_per_s': 25}})
    counter_job(conn, 'j')

    # Every connection of the daemon (monitor, listener, the job's) stays the
    # same session for three idle timeouts: none was killed and replaced.
    wanted = {'backfilld monitor', 'backfilld listener', 'backfilld job j'}
    ages = {}

    def all_old():
        ages.update(daemon_sessions(conn))
        return all(ages.get(app, 0) > 3 * IDLE_SESSION_TIMEOUT_S for app in wanted)
    wait_for(all_old, 30, interval=0.1,
             what=lambda: f'the daemon\'s sessions to live 4.5 s (ages: {ages})')
    assert job_row(conn, 'j')['batches'] >= 1
    reconnects = log_lines(daemon, RECONNECT_RE)
    assert not reconnects, 'the daemon reconnected:\n' + '\n'.join(reconnects)

    wait_succeeded(conn, 'j', timeout=60)
    assert_each_row_once(conn, rows=rows)

    # No job left: the monitor has nothing to ask at all. Three idle
    # timeouts after the job's end, the same sessions are still there.
    pids = dict(conn.execute(
        "SELECT application_name, pid FROM pg_stat_activity "
        "WHERE application_name IN ('backfilld monitor', 'backfilld listener') "
        "AND datname = current_database()").fetchall())
    assert len(pids) == 2, pids
    wait_for(lambda: conn.execute(
        "SELECT clock_timestamp() - finished_at > %s * interval '1 s' "
        "FROM backfill.jobs WHERE name = 'j'", (3 * IDLE_SESSION_TIMEOUT_S,)).fetchone()[0],
        30, what='three idle timeouts after the job ended')
    for app, pid in pids.items():
        assert conn.execute('SELECT application_name FROM pg_stat_activity WHERE pid = %s',
                            (pid,)).fetchone() == (app,), f'{app} (pid {pid}) is gone'
    reconnects = log_lines(daemon, RECONNECT_RE)
    assert not reconnects, 'the daemon reconnected:\n' + '\n'.join(reconnects)


# -- (d): a timestamptz key under an odd time zone and DateStyle ------------

def test_a_timestamptz_keyed_job_walks_each_row_once_under_odd_session_defaults(
        odd_db, daemon_factory):
    conn = odd_db.conn
    # Keys with microseconds, 37 min 12.345678 s apart: many fall on
    # instants whose Asia/Kolkata local time is a half hour, and the walk
    # crosses days (a DMY/MDY mix-up would reorder them) and a year.
    conn.execute("SELECT set_config('TimeZone', 'Asia/Kolkata', false)")
    conn.execute('CREATE TABLE events (at timestamptz PRIMARY KEY, counter int NOT NULL '
                 'DEFAULT 0)')
    conn.execute("INSERT INTO events (at) SELECT timestamptz '2026-12-30 18:00:00.123456+00' "
                 "+ g * interval '37 minutes 12.345678 seconds' "
                 "FROM generate_series(0, 1499) g")
    conn.execute('ANALYZE events')
    daemon_factory(odd_db.server, odd_db.name, overrides={
        'batch': {'size': 37, 'size_min': 37, 'size_max': 37}})
    counter_job(conn, 'ts', table='events')
    row = wait_succeeded(conn, 'ts', timeout=120)
    assert_each_row_once(conn, table='events', rows=1500)
    assert row['rows_scanned'] == 1500


# -- dead peers: keepalives and tcp_user_timeout ----------------------------

CONNECTED_RE = re.compile(
    r'(monitor|listener|job "\w+") connection: connected \(backend pid \d+; '
    r'keepalives_idle=(\d+) keepalives_interval=(\d+) keepalives_count=(\d+) '
    r'tcp_user_timeout=(\d+)\)')


def connected_lines(daemon):
    """{connection: (idle, interval, count, tcp_user_timeout)} from the log."""
    return {m.group(1): tuple(int(g) for g in m.groups()[1:])
            for m in CONNECTED_RE.finditer(daemon.log())}


def test_dead_peer_detection_is_derived_from_the_lease(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=100)
    daemon = daemon_factory(db.server, db.name, overrides={'engine': {'lease_s': 30}})
    counter_job(conn, 'j')
    wait_succeeded(conn, 'j')
    found = connected_lines(daemon)
    # Lease 30 s: a dead peer is given up on within lease/3 = 10 s, silent
    # (5 s, then 5 probes a second apart) or with data unacknowledged.
    for name in ('monitor', 'listener', 'job "j"'):
        assert found.get(name) == (5, 1, 5, 10000), (name, found)


def test_the_operators_keepalive_settings_are_kept(db, daemon_factory):
    conn = db.conn
    server = db.server
    conninfo = (f'{server.conninfo(db.name)} keepalives_idle=7 keepalives_count=2 '
                f'tcp_user_timeout=4321')
    daemon = daemon_factory(server, db.name, overrides={'database': {'conninfo': conninfo}})
    wait_for(lambda: {'monitor', 'listener'} <= set(connected_lines(daemon)), 10,
             what='the connected lines')
    found = connected_lines(daemon)
    for name in ('monitor', 'listener'):
        # The interval the operator left out is derived from the lease.
        assert found[name] == (7, 1, 2, 4321), (name, found)


def test_a_daemon_stalled_past_a_query_deadline_reads_the_answer_first(db, daemon_factory):
    """The daemon itself stops (SIGSTOP, as a stalled VM or a swapped-out
    process would) with a query in flight on the monitor, for longer than
    that query's deadline (10 s with the default lease). The answer came
    meanwhile: it is read, the connection is kept."""
    conn = db.conn
    counter_table(conn, rows=ROWS)
    # The throttle query keeps the monitor busy most of each 1 s sample.
    daemon = daemon_factory(db.server, db.name, overrides={
        'throttle': {'query': 'SELECT false FROM pg_sleep(0.9)'}})
    counter_job(conn, 'j', pause_ms=PAUSE_MS)

    def monitor_just_began_sleeping():
        return conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'backfilld monitor' "
            "AND state = 'active' AND query LIKE '%pg_sleep(0.9)%' "
            "AND clock_timestamp() - query_start < interval '300 ms'").fetchone()
    wait_for(monitor_just_began_sleeping, 30, interval=0.01, what='the throttle query running')
    daemon.sigstop()
    try:
        # The stimulus, not the proof: stopped past the deadline, while the
        # server answers the query within 0.9 s.
        time.sleep(11)
    finally:
        daemon.sigcont()
    # Due timers run first after the stop: once status answers, the
    # deadline has been looked at.
    wait_for(lambda: daemon.ctl('status').returncode == 0, 30, what='status')
    stale = log_lines(daemon, r'query deadline|monitor connection: .*reconnecting')
    assert not stale, '\n'.join(stale)
    wait_succeeded(conn, 'j', timeout=120)
    assert_each_row_once(conn, rows=ROWS)


# -- other sessions' text stays out of job rows and status --------------------

MARKER = 'sekrit_7f3a'


def test_a_blocked_sessions_query_and_name_are_not_repeated(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=ROWS)
    # A long backoff after the cancel, and renewals (which write the
    # slice's live status into its row) every second, so that the reason naming
    # the blocked session is seen in status and in the row.
    daemon = daemon_factory(db.server, db.name, overrides=merge_config(
        config(lock_wait_max_ms=500, lock_check_interval_ms=100),
        {'retry': {'initial_ms': 4000, 'max_ms': 4000}, 'engine': {'lease_s': 3}}))
    counter_job(conn, 'j', pause_ms=PAUSE_MS)

    key, batch_pid = key_in_flight(conn, 'j')
    with db.connect(application_name=f'app {MARKER}') as app:
        app.execute("SET statement_timeout = '30s'")
        _, waited, seen = run_waiting(
            conn, app, f"UPDATE items SET payload = '{MARKER}' WHERE id = %s /* {MARKER} */",
            (key,), batch_pid)
        app_pid = app.info.backend_pid
    assert seen and waited < 2.5, (seen, waited)

    texts, blocking = [], []

    def reason_in_row_and_status():
        status = daemon.ctl('status', 'j', '--json', check=0).stdout
        # What the renewal publishes is in the slice's row.
        row = conn.execute("SELECT j.last_error, s.live::text FROM backfill.jobs j "
                           "JOIN backfill.slices s ON s.job_id = j.id "
                           "WHERE j.name = 'j'").fetchone()
        texts.extend([status, *[t for t in row if t]])
        reasons = json.loads(status)['jobs'][0]['throttle_reasons'] if status else []
        blocking.extend(r for r in reasons if r.startswith('blocking:'))
        return blocking and row[1] and 'blocking:' in row[1]
    wait_for(reason_in_row_and_status, 10, interval=0.05,
             what=lambda: f'a blocking reason in status and in the row ({blocking})')
    print('\n'.join(blocking))
    leaks = [t for t in texts if MARKER in t]
    assert not leaks, f'another session\'s text in a job row or status: {leaks[0]}'
    # Who waited, how long, on what: what an operator acts on.
    assert any(f'pid {app_pid} ' in r and 'ShareLock' in r and 'items' in r for r in blocking), \
        blocking

    wait_succeeded(conn, 'j', timeout=120)
    texts.append(daemon.ctl('status', 'j', '--json', check=0).stdout)
    texts.append(str(job_row(conn, 'j')['last_error']))
    leaks = [t for t in texts if MARKER in t]
    assert not leaks, f'another session\'s text in a job row or status: {leaks[0]}'
    said = log_lines(daemon, BLOCKING_RE)
    assert said and not [line for line in said if MARKER in line], said
