"""Throttling against a real primary with a real streaming standby.

Lag is induced for real: pg_wal_replay_pause() on the standby (byte lag grows
with every batch), recovery_min_apply_delay (time lag, and byte lag that a
sample a second old does not see coming), stopping the standby
(an expected standby missing), a logical slot nobody consumes, pg_receivewal
(a WAL receiver that replays nothing). Then the
operator's own limits: the throttle query, time windows (the daemon's clock
set with TZ) and the overall rate limit.

The standby is shared by the module (replica_pair in conftest.py): each test
that pauses, delays or stops it puts it back in a finally block, and every
test starts by waiting until the standby streams and has replayed everything.
"""

import contextlib
import datetime
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from conftest import _stop_daemons
from daemon import job_row, merge_config, wait_for
from pgserver import PG_BIN, PG_USER, Database, _pg_command
from poller import MaxPoller
from workload import (assert_each_row_once, counter_job, counter_table, login_role,
                      wait_succeeded)

SAMPLE_MS = 200
SAMPLE_S = SAMPLE_MS / 1000.0
STANDBY = 'standby1'

REPLICATION_SQL = """
SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
       extract(epoch FROM replay_lag)::float8 AS lag_s
  FROM pg_stat_replication WHERE application_name = %s
"""
SLOT_LAG_SQL = """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
  FROM pg_replication_slots WHERE slot_name = %s
"""


# -- fixtures ------------------------------------------------------------------

@pytest.fixture(scope='module')
def primary(replica_pair):
    return replica_pair[0]


@pytest.fixture(scope='module')
def standby(replica_pair):
    return replica_pair[1]


_db_numbers = iter(range(1, 1000))


@pytest.fixture
def rdb(primary, standby, request):
    """A fresh database on the primary, dropped after the test (its daemons
    stopped first). The standby streams and has replayed everything before the
    test begins, whatever the previous test did to it."""
    base = re.sub(r'[^a-z0-9]+', '_', request.node.name.lower()).strip('_')[:40]
    name = f'r_{base}_{next(_db_numbers)}'
    restore_standby(primary, standby)
    primary.create_database(name)
    database = Database(primary, name)
    wait_caught_up(primary)
    yield database
    database.conn.close()
    _stop_daemons()             # before their database disappears
    primary.drop_database(name)


def restore_standby(primary, standby):
    """Running, replaying, no apply delay."""
    if not standby.running():
        standby.start()
    with standby.connect('postgres') as conn:
        if conn.execute('SELECT pg_is_wal_replay_paused()').fetchone()[0]:
            conn.execute('SELECT pg_wal_replay_resume()')
        if conn.execute("SELECT setting FROM pg_settings "
                        "WHERE name = 'recovery_min_apply_delay'").fetchone()[0] != '0':
            set_apply_delay(standby, None)


def wait_caught_up(primary, timeout=60):
    """standby1 streams, has replayed the WAL current now, and shows no stale
    replay_lag (it is cleared after two idle status replies)."""
    with primary.connect('postgres') as conn:
        target = conn.execute('SELECT pg_current_wal_lsn()').fetchone()[0]

        def caught_up():
            return conn.execute(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                "AND state = 'streaming' AND replay_lsn >= %s "
                "AND (replay_lag IS NULL OR replay_lag < interval '100 ms')",
                (STANDBY, target)).fetchone()
        wait_for(caught_up, timeout, interval=0.1,
                 what=lambda: f'{STANDBY} to catch up: {replication(conn)}')


def set_apply_delay(standby, delay):
    """recovery_min_apply_delay on the standby (None: reset), reloaded."""
    with standby.connect('postgres') as conn:
        if delay is None:
            conn.execute('ALTER SYSTEM RESET recovery_min_apply_delay')
        else:
            conn.execute(sql.SQL('ALTER SYSTEM SET recovery_min_apply_delay = {}')
                         .format(sql.Literal(delay)))
        conn.execute('SELECT pg_reload_conf()')


def replication(conn, app=STANDBY):
    """(state, lag_bytes, lag_s) of the standby in pg_stat_replication, or None."""
    return conn.execute(REPLICATION_SQL, (app,)).fetchone()


# -- helpers -------------------------------------------------------------------

def overrides(throttle=None, batch_size=100, **sections):
    """Fast sampling, standby1 expected, fixed batch size; throttle keys over that."""
    keys = {'sample_interval_ms': SAMPLE_MS, 'expected_standbys': [STANDBY]}
    keys.update(throttle or {})
    out = {'throttle': keys,
           'batch': {'size': batch_size, 'size_min': batch_size, 'size_max': batch_size}}
    out.update(sections)
    return out


def wide_counter_table(conn, table='items', rows=4000, width=400):
    """counter_table whose rows are wide, so that every batch writes a lot of WAL."""
    counter_table(conn, table=table, rows=rows)
    conn.execute(f"UPDATE {table} SET payload = repeat('x', %s) || id", (width,))
    conn.execute(f'VACUUM ANALYZE {table}')


def job_status(daemon, name):
    [job] = daemon.ctl_json('status', name)['jobs']
    return job


def wait_reason(daemon, name, prefix, *words, timeout=30):
    """Waits until a throttle_reasons entry of the job starts with prefix and
    holds every one of words; returns the job's status."""
    seen = {}

    def found():
        job = seen['job'] = job_status(daemon, name)
        assert job['state'] not in ('succeeded', 'failed', 'cancelled'), (
            f'{name} ended {job["state"]} without a reason "{prefix} ... {" ".join(words)}": '
            f'{job}')
        hits = [r for r in job['throttle_reasons']
                if r.startswith(prefix) and all(w in r for w in words)]
        return job if hits else None

    job = wait_for(found, timeout, interval=0.1,
                   what=lambda: f'a reason "{prefix} ... {" ".join(words)}" for {name}; last '
                                f'status: {seen.get("job")}')
    assert job['throttled'] is True, job
    return job


def reasons_matching(job, prefix):
    return [r for r in job['throttle_reasons'] if r.startswith(prefix)]


def wait_quiet(conn, name, quiet_s, timeout=30):
    """Waits until the job's batch count has not moved for quiet_s seconds;
    returns (that count, the monotonic time it last moved)."""
    state = {'batches': None, 'since': None}

    def quiet():
        batches = job_row(conn, name)['batches']
        now = time.monotonic()
        if batches != state['batches']:
            state.update(batches=batches, since=now)
        return now - state['since'] >= quiet_s

    wait_for(quiet, timeout, interval=0.05,
             what=lambda: f'{name} to stop making batches (at {state["batches"]})')
    return state['batches'], state['since']


def assert_still(conn, name, batches, seconds):
    """The job makes no batch for `seconds` (checked all along)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = job_row(conn, name)['batches']
        assert now == batches, f'{name} made batches while held: {batches} -> {now}'
        time.sleep(0.1)


def log_lines(daemon, marker, *words):
    return [line for line in daemon.log().splitlines()
            if marker in line and all(w in line for w in words)]


def wait_batches(conn, name, at_least, timeout=30):
    return wait_for(lambda: job_row(conn, name)['batches'] >= at_least, timeout,
                    what=lambda: f'{name} to make {at_least} batches: {job_row(conn, name)}')


# -- replication: physical standby ----------------------------------------------

def test_replay_paused_holds_the_job_until_replay_resumes(rdb, standby, daemon_factory):
    conn = rdb.conn
    rows, high = 4000, 256 * 1024
    wide_counter_table(conn, rows=rows)
    daemon = daemon_factory(rdb.server, rdb.name, overrides({
        'replay_lag_high_bytes': '256kB', 'replay_lag_low_bytes': '64kB',
        'replay_lag_high_ms': 0, 'replay_lag_low_ms': 0}))
    started = time.monotonic()
    counter_job(conn, 'paused', pause_ms=2)
    wait_batches(conn, 'paused', 3)
    batch_s = (time.monotonic() - started) / job_row(conn, 'paused')['batches']
    standby_conn = standby.connect('postgres')
    try:
        standby_conn.execute('SELECT pg_wal_replay_pause()')
        # When the lag passes the high mark (as the primary shows it, the
        # daemon's source too), the job stops within one sample plus one batch.
        crossed = wait_for(lambda: (replication(conn) or (None, 0))[1] > high and time.monotonic(),
                           30, interval=0.02,
                           what=lambda: f'the lag to pass 256kB: {replication(conn)} '
                                        f'{job_row(conn, "paused")}')
        batches, last_moved = wait_quiet(conn, 'paused', 2.0)
        allowed = SAMPLE_S + 1.5 * batch_s + 0.5
        print(f'last batch {last_moved - crossed:.2f}s after the crossing (allowed {allowed:.2f}s)')
        assert last_moved - crossed <= allowed, (
            f'the job made batches for {last_moved - crossed:.2f}s after the lag passed the '
            f'high mark (allowed {allowed:.2f}s: a sample, a batch of {batch_s:.2f}s, margin)')
        row = job_row(conn, 'paused')
        assert row['state'] == 'running' and row['rows_scanned'] < rows, row
        job = wait_reason(daemon, 'paused', 'replay_lag_bytes', STANDBY)
        assert job['state'] == 'running', job
        assert_still(conn, 'paused', batches, 2.0)
        assert log_lines(daemon, 'throttled:', 'replay_lag_bytes', STANDBY), daemon.log()
        assert not log_lines(daemon, 'throttle ended:', 'replay_lag_bytes')
    finally:
        standby_conn.execute('SELECT pg_wal_replay_resume()')
        standby_conn.close()
    wait_succeeded(conn, 'paused', timeout=60)
    assert_each_row_once(conn, rows=rows)
    assert log_lines(daemon, 'throttle ended:', 'replay_lag_bytes', STANDBY), daemon.log()


def test_apply_delay_holds_on_time_lag(rdb, standby, daemon_factory):
    conn = rdb.conn
    rows = 5000
    counter_table(conn, rows=rows)
    daemon = daemon_factory(rdb.server, rdb.name, overrides({
        'replay_lag_high_ms': 1000, 'replay_lag_low_ms': 200,
        'replay_lag_high_bytes': 0, 'replay_lag_low_bytes': 0}))
    counter_job(conn, 'delayed', pause_ms=2)
    wait_batches(conn, 'delayed', 2)
    try:
        set_apply_delay(standby, '2500ms')
        job = wait_reason(daemon, 'delayed', 'replay_lag_time', STANDBY)
        assert job['state'] == 'running' and job_row(conn, 'delayed')['rows_scanned'] < rows
        # Held for real: the last replay_lag measured (about the delay) stays
        # until the standby has replayed everything, well above the low mark.
        wait_quiet(conn, 'delayed', 1.0, timeout=15)
        assert job_row(conn, 'delayed')['rows_scanned'] < rows
        # Byte marks are off (0): the bytes behind never hold.
        assert not reasons_matching(job, 'replay_lag_bytes'), job
        assert log_lines(daemon, 'throttled:', 'replay_lag_time', STANDBY), daemon.log()
    finally:
        set_apply_delay(standby, None)
    wait_succeeded(conn, 'delayed', timeout=90)
    assert_each_row_once(conn, rows=rows)
    assert not log_lines(daemon, 'throttled:', 'replay_lag_bytes'), daemon.log()


def test_stopped_standby_holds_the_job_until_it_is_back(rdb, standby, daemon_factory):
    conn = rdb.conn
    rows = 4000
    counter_table(conn, rows=rows)
    daemon = daemon_factory(rdb.server, rdb.name, overrides())
    counter_job(conn, 'orphan', pause_ms=2)
    wait_batches(conn, 'orphan', 2)
    try:
        standby.stop()
        job = wait_reason(daemon, 'orphan', f'standby {STANDBY} missing')
        assert job['state'] == 'running', job
        batches, _ = wait_quiet(conn, 'orphan', 1.0)
        assert job_row(conn, 'orphan')['rows_scanned'] < rows
        assert_still(conn, 'orphan', batches, 1.5)
        assert log_lines(daemon, 'throttled:', f'standby {STANDBY}'), daemon.log()
    finally:
        standby.start()
    wait_succeeded(conn, 'orphan', timeout=60)
    assert_each_row_once(conn, rows=rows)
    assert log_lines(daemon, 'throttle ended:', f'standby {STANDBY}'), daemon.log()


def test_an_expected_standby_that_never_was_holds_at_once(rdb, daemon_factory):
    conn = rdb.conn
    counter_table(conn, rows=1000)
    daemon = daemon_factory(rdb.server, rdb.name, overrides({'expected_standbys': ['nosuch']}))
    counter_job(conn, 'closed')
    job = wait_reason(daemon, 'closed', 'standby nosuch missing')
    # Fail closed: not a single batch, even though standby1 streams fine.
    assert not reasons_matching(job, f'standby {STANDBY}'), job
    assert_still(conn, 'closed', 0, 1.5)
    assert job_row(conn, 'closed')['rows_scanned'] == 0


REPLAY_LAG_BYTES = ('SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::bigint '
                    'FROM pg_stat_replication')


def test_wal_written_since_the_sample_counts_against_the_high_mark(rdb, standby,
                                                                   daemon_factory):
    """A sample a second old cannot see the WAL written since: batches of a
    fraction of a second would write far past the high mark before the next
    one. Each batch reports where the WAL stands after it; before the next,
    the job adds what was written since the sample to the sampled lag and, if
    that reaches the high mark, takes a fresh sample first. So the lag never
    passes the high mark by more than the batch that crosses it."""
    conn = rdb.conn
    rows, high, low, batch = 200000, 4 * 1024 * 1024, 1024 * 1024, 10000
    counter_table(conn, rows=rows)
    # The standby replays each commit 500 ms late: the byte lag follows our
    # writes, about half a second of them (tens of MB unthrottled), and a
    # sample shows it as it was up to a second ago.
    set_apply_delay(standby, '500ms')
    try:
        wait_caught_up(rdb.server)
        # The default interval: the one that lets ~100 MB through unseen.
        # Time lag off: this is about the bytes.
        daemon = daemon_factory(rdb.server, rdb.name, overrides(
            {'sample_interval_ms': 1000, 'replay_lag_high_ms': 0, 'replay_lag_low_ms': 0},
            batch_size=batch))
        start_lsn = conn.execute('SELECT pg_current_wal_lsn()').fetchone()[0]
        started = time.monotonic()
        with MaxPoller(rdb.connect, REPLAY_LAG_BYTES, 0.005) as poller:
            counter_job(conn, 'ahead', settings=(
                f'{{"replay_lag_high_bytes": {high}, "replay_lag_low_bytes": {low}}}'))
            wait_succeeded(conn, 'ahead', timeout=50)
        elapsed = time.monotonic() - started
        wal = conn.execute('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint',
                           (start_lsn,)).fetchone()[0]
    finally:
        set_apply_delay(standby, None)
    assert_each_row_once(conn, rows=rows)
    scanned = [int(m.group(1)) for m in
               re.finditer(r'batch \d+: (\d+) rows scanned', daemon.log())]
    assert sum(scanned) == rows, scanned
    batch_wal = wal * max(scanned) // rows
    bound = high + batch_wal + 1024 * 1024
    estimates = log_lines(daemon, 'waiting for a fresh sample:', 'replay_lag_bytes', STANDBY)
    print(f'{len(scanned)} batches, {wal / 2**20:.1f} MB of WAL in {elapsed:.1f}s, '
          f'{len(estimates)} fresh samples asked for; max lag {poller.peak / 2**20:.2f} MB '
          f'in {poller.polls} polls, bound {bound / 2**20:.2f} MB (high mark 4 MB + a batch '
          f'of {batch_wal / 2**20:.2f} MB + 1 MB)')
    assert poller.polls > 100, poller.polls
    assert poller.peak <= bound, (
        f'replay lag reached {poller.peak / 2**20:.2f} MB: more than the high mark plus '
        f'one batch ({bound / 2**20:.2f} MB)')
    # The estimate did the work: fresh samples were asked for, and waiting
    # for one is no throttle (only real holds are logged as such).
    assert estimates, daemon.log()
    assert all('about' not in line for line in log_lines(daemon, 'throttled:')), daemon.log()


ARCHIVER = 'walarchiver'


@contextlib.contextmanager
def wal_receiver(primary, name, timeout=30):
    """pg_receivewal streaming from primary as application_name name, run as
    postgres (like pgserver's commands), into a directory of its own: in
    pg_stat_replication, streaming, with no replay position. Stopped (and its
    walsender gone) when the block ends, even on failure."""
    wal_dir = Path(tempfile.mkdtemp(prefix=f'{name}-', dir=primary.dir))
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        os.chown(wal_dir, pw.pw_uid, pw.pw_gid)
    out_path = wal_dir.parent / f'{wal_dir.name}.out'
    cmd = _pg_command([PG_BIN / 'pg_receivewal', '-D', wal_dir, '--no-loop',
                       '--status-interval=1', '-d',
                       f'{primary.conninfo("postgres")} application_name={name}'])
    with open(out_path, 'wb') as out:
        # Its own process group: runuser and pg_receivewal are stopped together.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with primary.connect('postgres') as conn:
            def streaming():
                assert proc.poll() is None, (
                    f'pg_receivewal exited {proc.returncode}: {out_path.read_text()}')
                return conn.execute(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                    "AND state = 'streaming'", (name,)).fetchone()
            wait_for(streaming, timeout, interval=0.1,
                     what=lambda: f'{name} streaming: {out_path.read_text()}')
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        print(f'pg_receivewal output: {out_path.read_text(errors="replace")}')
        with primary.connect('postgres') as conn:
            wait_for(lambda: not conn.execute(
                'SELECT 1 FROM pg_stat_replication WHERE application_name = %s',
                (name,)).fetchone(), 10, what=f'{name} gone from pg_stat_replication')
        shutil.rmtree(wal_dir, ignore_errors=True)
        out_path.unlink(missing_ok=True)


def test_a_wal_receiver_that_applies_nothing_does_not_hold(rdb, daemon_factory):
    conn = rdb.conn
    rows = 2000
    counter_table(conn, table='first', rows=rows)
    counter_table(conn, table='second', rows=rows)
    with wal_receiver(rdb.server, ARCHIVER):
        # Streaming, but it replays nothing: no replay position at all.
        state = replication(conn, ARCHIVER)
        print(f'{ARCHIVER} in pg_stat_replication (state, lag bytes, lag s): {state}')
        assert state[:2] == ('streaming', None), state
        daemon = daemon_factory(rdb.server, rdb.name, overrides())      # standby1 expected
        counter_job(conn, 'archived', table='first', pause_ms=1)
        wait_succeeded(conn, 'archived', timeout=30)
        assert_each_row_once(conn, 'first', rows=rows)
        assert replication(conn, ARCHIVER)[:2] == ('streaming', None)
        assert not log_lines(daemon, 'throttled:'), daemon.log()

        # Expected, it must report a replay position: until it does, held.
        daemon.config = merge_config(daemon.config, {
            'throttle': {'expected_standbys': [STANDBY, ARCHIVER]}})
        daemon.reload()
        counter_job(conn, 'held', table='second')
        job = wait_reason(daemon, 'held', f'replay_lag_bytes {ARCHIVER}', 'unknown')
        assert not reasons_matching(job, f'replay_lag_bytes {STANDBY}'), job
        assert not reasons_matching(job, f'standby {ARCHIVER}'), job
        assert_still(conn, 'held', 0, 1.5)
        assert log_lines(daemon, 'throttled:', 'replay_lag_bytes', ARCHIVER), daemon.log()

        daemon.config = merge_config(daemon.config, {
            'throttle': {'expected_standbys': [STANDBY]}})
        daemon.reload()
        wait_succeeded(conn, 'held', timeout=60)
        assert_each_row_once(conn, 'second', rows=rows)
        assert log_lines(daemon, 'throttle ended:', ARCHIVER), daemon.log()


# -- replication: logical slots --------------------------------------------------

def test_unconsumed_logical_slot_holds_the_job(rdb, daemon_factory):
    conn = rdb.conn
    slot = 'bf_test_slot'
    marks = {'slot_lag_high_bytes': '256kB', 'slot_lag_low_bytes': '64kB'}
    conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
    try:
        # logical_slots: active -- the slot has no consumer, so it never holds,
        # though it lags well past the high mark all along.
        wide_counter_table(conn, table='first', rows=2000)
        assert conn.execute(SLOT_LAG_SQL, (slot,)).fetchone()[0] > 256 * 1024
        daemon = daemon_factory(rdb.server, rdb.name,
                                overrides(dict(marks, logical_slots='active')), name='active')
        counter_job(conn, 'ignores', table='first')
        wait_succeeded(conn, 'ignores', timeout=60)
        assert_each_row_once(conn, 'first', rows=2000)
        assert conn.execute(SLOT_LAG_SQL, (slot,)).fetchone()[0] > 256 * 1024
        assert not log_lines(daemon, 'throttled:', 'slot_lag'), daemon.log()
        daemon.stop()

        # logical_slots: all -- from a slot caught up, the job runs until the
        # slot's lag passes the high mark, and is held there.
        rows = 4000
        wide_counter_table(conn, table='second', rows=rows)
        conn.execute('SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())', (slot,))
        assert conn.execute(SLOT_LAG_SQL, (slot,)).fetchone()[0] < 64 * 1024
        daemon = daemon_factory(rdb.server, rdb.name,
                                overrides(dict(marks, logical_slots='all')), name='all')
        counter_job(conn, 'held', table='second', pause_ms=2)
        job = wait_reason(daemon, 'held', 'slot_lag_bytes', slot)
        batches, _ = wait_quiet(conn, 'held', 1.0)
        assert batches > 0, 'the job should have run until the lag passed the mark'
        assert job_row(conn, 'held')['rows_scanned'] < rows and job['state'] == 'running'
        assert conn.execute(SLOT_LAG_SQL, (slot,)).fetchone()[0] > 256 * 1024
        assert_still(conn, 'held', batches, 1.5)
        assert log_lines(daemon, 'throttled:', 'slot_lag_bytes', slot), daemon.log()
    finally:
        conn.execute('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots '
                     'WHERE slot_name = %s', (slot,))
    wait_succeeded(conn, 'held', timeout=60)
    assert_each_row_once(conn, 'second', rows=rows)
    assert log_lines(daemon, 'throttle ended:', 'slot_lag_bytes', slot), daemon.log()


# -- strict mode -------------------------------------------------------------------

STRICT_MARKS_OFF = {'replay_lag_high_bytes': 0, 'replay_lag_low_bytes': 0,
                    'replay_lag_high_ms': 0, 'replay_lag_low_ms': 0}


def strict_mode_stops_after_one_batch(rdb, standby, daemon_factory, throttle, **job):
    """With the lag marks off, only strict mode can hold the job: replay
    paused, it makes at most one more batch, says wait_for_replay, and ends
    once replay resumes."""
    conn = rdb.conn
    rows = 1800
    counter_table(conn, rows=rows)
    daemon = daemon_factory(rdb.server, rdb.name, overrides(
        dict(STRICT_MARKS_OFF, replay_wait_timeout_ms=60000, **throttle), batch_size=200))
    counter_job(conn, 'strict', pause_ms=1, **job)
    wait_batches(conn, 'strict', 1)
    standby_conn = standby.connect('postgres')
    try:
        standby_conn.execute('SELECT pg_wal_replay_pause()')
        paused_at = job_row(conn, 'strict')['batches']
        job = wait_reason(daemon, 'strict', 'wait_for_replay')
        assert job['state'] == 'running', job
        batches, _ = wait_quiet(conn, 'strict', 2.0)
        print(f'batches: {paused_at} when replay paused, {batches} when quiet')
        assert batches <= paused_at + 1, (
            f'{batches - paused_at} batches after replay paused (at most one)')
        assert job_row(conn, 'strict')['rows_scanned'] < rows
        assert reasons_matching(job_status(daemon, 'strict'), 'wait_for_replay')
    finally:
        standby_conn.execute('SELECT pg_wal_replay_resume()')
        standby_conn.close()
    wait_succeeded(conn, 'strict', timeout=90)
    assert_each_row_once(conn, rows=rows)


def test_wait_for_replay_stops_after_one_batch(rdb, standby, daemon_factory):
    strict_mode_stops_after_one_batch(rdb, standby, daemon_factory, {'wait_for_replay': True})


def test_wait_for_replay_accepts_true_in_the_row(rdb, standby, daemon_factory):
    # Off in the configuration, on in the row as a JSON boolean (not 1).
    strict_mode_stops_after_one_batch(rdb, standby, daemon_factory, {'wait_for_replay': False},
                                      settings='{"wait_for_replay": true}')
    assert job_row(rdb.conn, 'strict')['settings'] == {'wait_for_replay': True}


# -- fail closed on permissions ------------------------------------------------------

@pytest.fixture
def nomon_role(primary):
    """A login role without pg_monitor; dropped after the test's database."""
    with login_role(primary, 'bf_nomon') as role:
        yield role


def test_role_without_pg_monitor_holds_until_granted(nomon_role, rdb, daemon_factory):
    conn = rdb.conn
    rows = 2000
    conn.execute(f'ALTER DATABASE {rdb.name} OWNER TO {nomon_role}')
    counter_table(conn, rows=rows)
    conn.execute(f'ALTER TABLE items OWNER TO {nomon_role}')
    server = rdb.server
    conninfo = f'host={server.host} port={server.port} user={nomon_role} dbname={rdb.name}'
    with psycopg.connect(conninfo, autocommit=True) as nomon:
        # What the daemon's role sees: the standby, but none of its positions.
        state = nomon.execute(REPLICATION_SQL, (STANDBY,)).fetchone()
        assert state == (None, None, None), state
    daemon = daemon_factory(server, rdb.name, overrides(database={'conninfo': conninfo}))
    counter_job(conn, 'unprivileged')
    job = wait_reason(daemon, 'unprivileged', 'replication: role', 'pg_monitor')
    assert_still(conn, 'unprivileged', 0, 1.0)
    assert log_lines(daemon, 'throttled:', 'pg_monitor'), daemon.log()
    assert job['state'] in ('pending', 'running'), job
    conn.execute(f'GRANT pg_monitor TO {nomon_role}')
    wait_succeeded(conn, 'unprivileged', timeout=60)
    assert_each_row_once(conn, rows=rows)
    assert log_lines(daemon, 'throttle ended:'), daemon.log()


# -- the operator's limits --------------------------------------------------------------

def test_throttle_query_holds_and_fails_closed(rdb, daemon_factory):
    conn = rdb.conn
    rows = 5000
    counter_table(conn, rows=rows)
    conn.execute('CREATE TABLE flags (value bool)')
    conn.execute('INSERT INTO flags VALUES (true)')
    daemon = daemon_factory(rdb.server, rdb.name, overrides({
        'query': "SELECT value, 'maintenance flag' FROM flags"}))
    counter_job(conn, 'flagged', pause_ms=2)
    wait_reason(daemon, 'flagged', 'throttle query: maintenance flag')
    assert_still(conn, 'flagged', 0, 1.0)
    assert log_lines(daemon, 'throttled:', 'maintenance flag'), daemon.log()

    conn.execute('UPDATE flags SET value = false')
    wait_batches(conn, 'flagged', 2)
    assert log_lines(daemon, 'throttle ended:', 'throttle query'), daemon.log()
    # A query that fails holds (fail closed), and says why.
    conn.execute('DROP TABLE flags')
    wait_reason(daemon, 'flagged', 'throttle query: failed:')
    batches, _ = wait_quiet(conn, 'flagged', 1.0)
    assert job_row(conn, 'flagged')['rows_scanned'] < rows
    assert_still(conn, 'flagged', batches, 1.0)

    conn.execute('CREATE TABLE flags AS SELECT false AS value')
    wait_succeeded(conn, 'flagged', timeout=60)
    assert_each_row_once(conn, rows=rows)


def _tz_for_local(hour, minute):
    """(POSIX TZ string, its UTC offset in minutes) that makes the local time
    hour:minute now. 'BFT-05:30' means local = UTC + 5:30."""
    now = datetime.datetime.now(datetime.timezone.utc)
    offset = (hour * 60 + minute - (now.hour * 60 + now.minute)) % 1440
    if offset > 720:
        offset -= 1440
    sign = '-' if offset >= 0 else '+'
    return f'BFT{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}', offset


def test_time_windows_in_the_daemons_local_time(rdb, daemon_factory):
    conn = rdb.conn
    rows = 2000
    counter_table(conn, rows=rows)
    tz, offset = _tz_for_local(0, 30)
    local = datetime.datetime.now(datetime.timezone(datetime.timedelta(minutes=offset)))
    assert abs((local.hour * 60 + local.minute) - 30) <= 1, (tz, local)
    # 00:30 local: outside 01:00-00:15 (which wraps midnight), inside 22:00-01:00.
    daemon = daemon_factory(rdb.server, rdb.name, overrides({'windows': ['01:00-00:15']}),
                            start=False)
    daemon.start(extra_env={'TZ': tz}).wait_ready()
    counter_job(conn, 'nightly')
    wait_reason(daemon, 'nightly', 'window: outside')
    assert_still(conn, 'nightly', 0, 1.0)

    daemon.config = merge_config(daemon.config, {'throttle': {'windows': ['22:00-01:00']}})
    daemon.reload()
    wait_succeeded(conn, 'nightly', timeout=60)
    assert_each_row_once(conn, rows=rows)


def test_overall_rate_limit_over_two_jobs(rdb, daemon_factory):
    conn = rdb.conn
    rows, limit, batch = 2500, 500, 100
    counter_table(conn, table='left_t', rows=rows)
    counter_table(conn, table='right_t', rows=rows)
    daemon = daemon_factory(rdb.server, rdb.name, overrides({'max_rows_per_s': limit},
                                                          batch_size=batch))
    counter_job(conn, 'left', table='left_t')
    counter_job(conn, 'right', table='right_t')
    # Both claimed and under way.
    wait_for(lambda: all(job_row(conn, n)['state'] == 'running' for n in ('left', 'right'))
             and job_row(conn, 'left')['batches'] + job_row(conn, 'right')['batches'] > 0,
             30, what='both jobs running')

    def scanned():
        return conn.execute("SELECT sum(rows_scanned)::bigint FROM backfill.jobs "
                            "WHERE name IN ('left', 'right')").fetchone()[0]

    def each():
        return {n: job_row(conn, n)['rows_scanned'] for n in ('left', 'right')}

    reasons = set()
    start, scanned_before, each_before = time.monotonic(), scanned(), each()
    while time.monotonic() - start < 4.0:
        for name in ('left', 'right'):
            reasons.update(job_status(daemon, name)['throttle_reasons'])
        time.sleep(0.1)
    period, done = time.monotonic() - start, scanned() - scanned_before
    each_after = each()
    # Work was left at the end of the period: the limit, not the end of the
    # work, is what bounded the rows (without it all would be done in a second).
    assert scanned() < 2 * rows, [job_row(conn, n) for n in ('left', 'right')]
    print(f'{done} rows in {period:.2f}s; reasons seen: {sorted(reasons)}')
    assert 0 < done <= limit * period + 2 * batch, (
        f'{done} rows scanned in {period:.2f}s with max_rows_per_s {limit} '
        f'(at most {limit * period + 2 * batch:.0f})')
    assert any(r.startswith('overall max_rows_per_s') for r in reasons), reasons
    # The jobs take turns under the shared limit: neither is starved.
    for name in ('left', 'right'):
        assert each_after[name] > each_before[name], (name, each_before, each_after)
    wait_succeeded(conn, 'left', timeout=60)
    wait_succeeded(conn, 'right', timeout=60)
    assert_each_row_once(conn, 'left_t', rows=rows)
    assert_each_row_once(conn, 'right_t', rows=rows)
