"""Fault injection: daemons killed, frozen and cut off, a database that
refuses connections or imposes its own timeouts. Whatever happens, every
row of every job is processed exactly once (its counter ends at 1).

The soak runs BACKFILLD_SOAK_SECONDS (default 25) of random faults from a
seeded RNG (BACKFILLD_CHAOS_SEED to replay a run; the seed is printed and in
every failure message); BACKFILLD_SOAK_REPORT=PATH writes its numbers as
JSON. The database restarted under in-flight batches and a daemon frozen
beyond its lease are covered in test_faults.py.
"""

import json
import os
import random
import re
import time

import psycopg
import pytest

from conftest import _stop_daemons
from daemon import job_row, merge_config, wait_for
from pgserver import PgServer
from workload import (assert_each_row_once, counter_job, counter_table, counters,
                      wait_succeeded)


def _backends(conn, like):
    """pids of this database's sessions whose application_name is LIKE `like`."""
    return [r[0] for r in conn.execute(
        'SELECT pid FROM pg_stat_activity WHERE datname = current_database() '
        'AND application_name LIKE %s', (like,)).fetchall()]


def _terminate(conn, like):
    """pg_terminate_backend of every session matching `like`; how many."""
    return conn.execute(
        'SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity '
        'WHERE datname = current_database() AND application_name LIKE %s',
        (like,)).fetchone()[0]


# -- 1. the soak ---------------------------------------------------------------

SOAK_SECONDS = float(os.environ.get('BACKFILLD_SOAK_SECONDS') or 25)
SOAK_JOBS = 8
SOAK_DAEMONS = 3
# Rows per table: enough that the jobs run through the whole soak (a batch
# of 50 rows pauses 2 ms a row, about 0.1 s), so that faults land mid-walk.
SOAK_ROWS = max(2000, int(SOAK_SECONDS * 250))
SOAK_CONFIG = {
    'batch': {'size': 50, 'size_min': 50, 'size_max': 50},
    # Short leases: a killed or frozen daemon's jobs are taken over within
    # seconds, and a SIGSTOP of a few seconds outlives the lease.
    'engine': {'lease_s': 3, 'poll_interval_ms': 300, 'max_jobs': 3},
    'retry': {'initial_ms': 50, 'max_ms': 1000},
}
# Connections by kind, as the daemon names them (application_name).
SOAK_CONNECTIONS = {
    'terminate_job': 'backfilld job %',
    'terminate_monitor': 'backfilld monitor',
    'terminate_listener': 'backfilld listener',
}


class Chaos:
    """The fault driver: until the soak time is up, picks a random fault
    every 0.2-1.2 s. SIGKILLed daemons are restarted and SIGSTOPped ones
    continued after a random delay; a daemon with such an action pending is
    left alone until it is done.

    It runs in the test's main thread, not a thread of its own: a daemon
    gets SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG, see
    daemon.py), so daemons restarted from a driver thread would die with it."""

    def __init__(self, db, daemons, seed):
        self.db = db
        self.daemons = daemons
        self.rng = random.Random(seed)
        self.faults = {k: 0 for k in ('sigkill', 'sigstop', *SOAK_CONNECTIONS)}
        self.misses = {k: 0 for k in SOAK_CONNECTIONS}   # nothing to terminate
        self.restarts = 0
        self.longest_stop_s = 0.0
        self.crashes = []          # daemons found dead that we did not kill
        self.pending = {}          # daemon name -> (due, action)
        self.first = ['sigkill', 'sigstop', *SOAK_CONNECTIONS]
        self.rng.shuffle(self.first)

    def run(self, seconds):
        """Injects faults for `seconds`, then continues and restarts every
        daemon it stopped or killed."""
        deadline = time.monotonic() + seconds
        try:
            with self.db.connect() as conn:
                while True:
                    time.sleep(min(self.rng.uniform(0.2, 1.2),
                                   max(0.0, deadline - time.monotonic())))
                    if time.monotonic() >= deadline:
                        break
                    self._due()
                    self._check_crashes()
                    self._inject(conn)
        finally:
            for name, (_, action) in list(self.pending.items()):
                action()
            self.pending.clear()

    def _due(self):
        now = time.monotonic()
        for name, (due, action) in list(self.pending.items()):
            if due <= now:
                del self.pending[name]
                action()

    def _check_crashes(self):
        for d in self.daemons:
            if d.name not in self.pending and not d.alive():
                self.crashes.append(f'{d.name} exited {d.returncode} by itself')
                self._restart(d)

    def _restart(self, daemon):
        daemon.start()
        self.restarts += 1

    def _free(self):
        return [d for d in self.daemons if d.name not in self.pending and d.alive()]

    def _inject(self, conn):
        # Every kind once first (in random order), so that each is sure to
        # happen even in a short soak; then at random.
        if self.first:
            kind = self.first.pop()
            if not self._inject_kind(conn, kind):
                self.first.append(kind)
        else:
            self._inject_kind(conn, self.rng.choices(['sigkill', 'sigstop', *SOAK_CONNECTIONS],
                                                     weights=[2, 2, 4, 1, 1])[0])

    def _inject_kind(self, conn, kind):
        """Injects one fault of `kind`; False if there was nothing to hit."""
        if kind in SOAK_CONNECTIONS:
            pids = _backends(conn, SOAK_CONNECTIONS[kind])
            if not pids:
                self.misses[kind] += 1
                return False
            pid = self.rng.choice(pids)
            if not conn.execute('SELECT pg_terminate_backend(%s)', (pid,)).fetchone()[0]:
                return False
            self.faults[kind] += 1
            return True
        free = self._free()
        # One daemon always runs freely, so that the walk moves on.
        if len(free) < 2:
            return False
        daemon = self.rng.choice(free)
        due = time.monotonic()
        if kind == 'sigkill':
            daemon.kill()
            due += self.rng.uniform(0.3, 4.0)
            self.pending[daemon.name] = (due, lambda d=daemon: self._restart(d))
        else:
            daemon.sigstop()
            # Up to twice the lease: about half of them lose it.
            held = self.rng.uniform(0.5, 6.0)
            self.longest_stop_s = max(self.longest_stop_s, held)
            self.pending[daemon.name] = (due + held, daemon.sigcont)
        self.faults[kind] += 1
        return True


def _count(daemons, text):
    return sum(d.log().count(text) for d in daemons)


def test_soak_three_daemons_eight_jobs_under_random_faults(db, daemon_factory):
    seed = int(os.environ.get('BACKFILLD_CHAOS_SEED') or random.randrange(1, 2**31))
    print(f'\nchaos seed {seed} (BACKFILLD_CHAOS_SEED={seed} replays it), '
          f'{SOAK_SECONDS:.0f} s, {SOAK_JOBS} jobs x {SOAK_ROWS} rows, {SOAK_DAEMONS} daemons')
    conn = db.conn
    tables = [f'soak{i}' for i in range(SOAK_JOBS)]
    for table in tables:
        counter_table(conn, table, rows=SOAK_ROWS)
    daemons = [daemon_factory(db.server, db.name, SOAK_CONFIG, name=f'soak-d{i}')
               for i in range(SOAK_DAEMONS)]
    started = time.monotonic()
    for table in tables:
        counter_job(conn, table, table, pause_ms=2)
    chaos = Chaos(db, daemons, seed)
    chaos.run(SOAK_SECONDS)
    unfinished = conn.execute("SELECT count(*) FROM backfill.jobs "
                              "WHERE state <> 'succeeded'").fetchone()[0]
    soaked = time.monotonic() - started
    context = f'(seed {seed})'
    for d in daemons:
        if not d.alive():
            d.start()
    for d in daemons:
        d.wait_ready(60)

    # Every job ends, each row exactly once.
    finish_timeout = max(120.0, SOAK_SECONDS)
    for table in tables:
        row = wait_succeeded(conn, table, timeout=finish_timeout)
        assert row['rows_scanned'] == SOAK_ROWS, f'{table}: {row} {context}'
        assert row['owner'] is None, context
    finished = time.monotonic() - started
    by_counter = [counters(conn, table) for table in tables]
    lost = sum(seen.get(0, 0) for seen in by_counter)
    twice = sum(n for seen in by_counter for value, n in seen.items() if value > 1)
    for table in tables:
        assert_each_row_once(conn, table, SOAK_ROWS)

    assert not chaos.crashes, f'daemons died on their own {context}: {chaos.crashes}'
    for d in daemons:
        assert d.alive(), f'{d.name} exited {d.returncode} {context}'
        assert not d.findings(), f'{d.name}: {d.findings()} {context}'
        assert d.stop(timeout=30) == 0, f'{d.name} did not exit 0 on SIGTERM {context}'

    # Claims past the first, of the setups and of the slices.
    epochs = conn.execute('SELECT (SELECT sum(lease_epoch - 1) FROM backfill.jobs) '
                          '     + (SELECT sum(lease_epoch - 1) FROM backfill.slices), '
                          '(SELECT sum(batches) FROM backfill.jobs)').fetchone()
    summary = {
        'seed': seed,
        'soak_seconds': SOAK_SECONDS,
        'jobs': SOAK_JOBS,
        'daemons': SOAK_DAEMONS,
        'rows_per_job': SOAK_ROWS,
        'rows_total': SOAK_ROWS * SOAK_JOBS,
        'rows_lost': lost,
        'rows_twice': twice,
        'jobs_unfinished_when_faults_stopped': unfinished,
        'faults': dict(chaos.faults),
        'faults_total': sum(chaos.faults.values()),
        'terminate_misses': dict(chaos.misses),
        'restarts': chaos.restarts,
        'longest_sigstop_s': round(chaos.longest_stop_s, 2),
        'lease_takeovers': int(epochs[0]),
        'batches_committed': int(epochs[1]),
        'fence_refusals_logged': _count(daemons, 'the checkpoint fence refused'),
        'leases_lost_logged': _count(daemons, 'lease lost:'),
        'batches_interrupted_logged': _count(daemons, 'batch interrupted'),
        'reconnects_logged': _count(daemons, '; reconnecting in '),
        'seconds_faulting': round(soaked, 1),
        'seconds_to_all_succeeded': round(finished, 1),
    }
    print('soak summary: ' + json.dumps(summary, sort_keys=True))
    if os.environ.get('BACKFILLD_SOAK_REPORT'):
        with open(os.environ['BACKFILLD_SOAK_REPORT'], 'w') as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write('\n')
    # The faults were real: every kind landed, and jobs were mid-walk.
    for kind, n in chaos.faults.items():
        assert n > 0, f'no {kind} fault was injected {context}: {summary}'
    # ... and mid-walk: batches cut off, leases taken over.
    assert summary['batches_interrupted_logged'] > 0, summary
    assert summary['lease_takeovers'] > 0, summary


# -- 3. a database that refuses connections for a while ------------------------

DAEMON_ROLE = 'bf_chaos_daemon'
# Enough retries to see the curve: 250 ms first, doubling to 2 s at most, so
# a connection that keeps failing makes at most 10 attempts in 10 s (each
# wait is at least half its step), plus the ramp.
REFUSED_RETRY = {'retry': {'initial_ms': 250, 'max_ms': 2000}}
REFUSED_WINDOW_S = 10
MAX_ATTEMPTS_PER_CONNECTION = 16


@pytest.fixture
def small_pg(pg_base_dir):
    """A server of 20 connections, 3 of them for superusers, logging every
    connection; a database app owned by a plain (non-superuser) role, whose
    connections the limits apply to, with a counter table."""
    server = PgServer(pg_base_dir, name='small', settings={
        'max_connections': 20, 'superuser_reserved_connections': 3,
        'log_connections': 'on'})
    server.init().start()
    with server.connect('postgres') as conn:
        conn.execute(f'CREATE ROLE {DAEMON_ROLE} LOGIN')
        conn.execute(f'CREATE DATABASE app OWNER {DAEMON_ROLE}')
    with server.connect('app') as conn:
        counter_table(conn, rows=3000)
        conn.execute(f'ALTER TABLE items OWNER TO {DAEMON_ROLE}')
    yield server
    _stop_daemons()
    server.destroy()


def _role_daemon(daemon_factory, server, overrides=None):
    conninfo = server.conninfo('app').replace('user=postgres', f'user={DAEMON_ROLE}')
    return daemon_factory(server, 'app', merge_config(
        {'database': {'conninfo': conninfo}},
        {'batch': {'size': 50, 'size_min': 50, 'size_max': 50}},
        REFUSED_RETRY, overrides or {}))


def _failures_by_connection(log):
    """{connection name: failed attempts}, from the daemon's
    '<name>: <why>; reconnecting in N ms' lines."""
    found = {}
    for m in re.finditer(r'\b(listener connection|monitor connection|job "[^"]+" connection)'
                         r': [^\n]*; reconnecting in \d+ ms', log):
        found[m.group(1)] = found.get(m.group(1), 0) + 1
    return found


def _backs_off_while_refused(daemon, server, server_refusal, daemon_refusal):
    """Over REFUSED_WINDOW_S: every connection of the daemon keeps trying
    (a few attempts), none in a tight loop (per the backoff), in its log and
    in the server's."""
    log_before, server_before = len(daemon.log()), len(server.log())
    time.sleep(REFUSED_WINDOW_S)
    log = daemon.log()[log_before:]
    refused_by_server = server.log()[server_before:].count(server_refusal)
    failures = _failures_by_connection(log)
    assert set(failures) == {'listener connection', 'monitor connection',
                             'job "refused" connection'}, (failures, log[-3000:])
    for name, n in failures.items():
        assert 2 <= n <= MAX_ATTEMPTS_PER_CONNECTION, (
            f'{name}: {n} failed attempts in {REFUSED_WINDOW_S} s: {failures}')
    print(f'\nrefused for {REFUSED_WINDOW_S} s: failed attempts by connection {failures}, '
          f'refusals in the server log {refused_by_server}')
    assert daemon_refusal in log, log[-3000:]
    # The server saw those attempts and no more.
    assert sum(failures.values()) - 3 <= refused_by_server <= sum(failures.values()) + 3, (
        refused_by_server, failures)
    return failures


def test_max_connections_reached_backs_off_and_recovers(small_pg, daemon_factory):
    """Every non-reserved slot taken by idle sessions, the daemon's own
    connections cut: it retries each with capped backoff (no tight loop),
    and once the slots are released it reconnects and finishes, each row
    once."""
    server = small_pg
    admin = server.connect('app')    # superuser: a reserved slot stays ours
    daemon = _role_daemon(daemon_factory, server)
    counter_job(admin, 'refused', pause_ms=2)
    wait_for(lambda: job_row(admin, 'refused')['batches'] >= 2, 30, what='some batches')
    fillers = []
    try:
        # Take every slot a plain role may use; cut the daemon's sessions,
        # and take theirs too before its reconnects (125 ms away at least)
        # get them. A reconnect that wins the race is cut again.
        for _ in range(20):
            while True:
                try:
                    fillers.append(psycopg.connect(
                        server.conninfo('app').replace('user=postgres', f'user={DAEMON_ROLE}'),
                        autocommit=True, application_name='filler'))
                except psycopg.OperationalError as exc:
                    assert 'reserved for' in str(exc), exc
                    break
            pids = _backends(admin, 'backfilld %')
            if not pids:
                break
            _terminate(admin, 'backfilld %')
            wait_for(lambda: not set(pids) & set(_backends(admin, 'backfilld %')), 10,
                     what='the cut sessions to end')
        assert not _backends(admin, 'backfilld %'), 'the daemon kept a connection'
        scanned = job_row(admin, 'refused')['rows_scanned']
        assert scanned < 3000, 'the job finished before the slots ran out'
        _backs_off_while_refused(
            daemon, server,
            'remaining connection slots are reserved for non-replication superuser connections',
            'remaining connection slots are reserved')
        assert job_row(admin, 'refused')['rows_scanned'] == scanned
    finally:
        for filler in fillers:
            filler.close()
    row = wait_succeeded(admin, 'refused', timeout=90)
    assert row['rows_scanned'] == 3000
    assert_each_row_once(admin, rows=3000)
    assert daemon.alive()
    admin.close()


def test_role_connection_limit_zero_backs_off_and_recovers(small_pg, daemon_factory):
    """ALTER ROLE ... CONNECTION LIMIT 0 while the daemon's sessions are cut:
    the same patient retrying, and recovery once the limit is lifted."""
    server = small_pg
    admin = server.connect('app')
    daemon = _role_daemon(daemon_factory, server)
    counter_job(admin, 'refused', pause_ms=2)
    wait_for(lambda: job_row(admin, 'refused')['batches'] >= 2, 30, what='some batches')
    admin.execute(f'ALTER ROLE {DAEMON_ROLE} CONNECTION LIMIT 0')
    try:
        _terminate(admin, 'backfilld %')
        wait_for(lambda: not _backends(admin, 'backfilld %'), 10,
                 what='the daemon to be without connections')
        scanned = job_row(admin, 'refused')['rows_scanned']
        assert scanned < 3000, 'the job finished before the limit'
        _backs_off_while_refused(daemon, server,
                                 f'too many connections for role "{DAEMON_ROLE}"',
                                 f'too many connections for role "{DAEMON_ROLE}"')
        assert job_row(admin, 'refused')['rows_scanned'] == scanned
    finally:
        admin.execute(f'ALTER ROLE {DAEMON_ROLE} CONNECTION LIMIT -1')
    row = wait_succeeded(admin, 'refused', timeout=90)
    assert row['rows_scanned'] == 3000
    assert_each_row_once(admin, rows=3000)
    assert daemon.alive()
    admin.close()


def test_a_failed_blocking_check_holds_jobs_only_until_it_works_again(small_pg, daemon_factory):
    """Regression (found by the soak under ASan, where a monitor connection
    terminated during the blocking check): a failed check holds every job
    (fail closed), and the check used to run only while a batch was in
    flight. No batch could start, so the check never ran again and the jobs
    stayed held for good, with "blocking check: cannot look for sessions
    blocked by our batches". Now it is retried while jobs are held by it.
    Here the check fails because pg_blocking_pids() is made unavailable to
    the daemon's role."""
    server = small_pg
    admin = server.connect('app')
    daemon = _role_daemon(daemon_factory, server, {'throttle': {'lock_check_interval_ms': 100}})
    counter_job(admin, 'checked', pause_ms=2)
    wait_for(lambda: job_row(admin, 'checked')['batches'] >= 2, 30, what='some batches')
    admin.execute('REVOKE EXECUTE ON FUNCTION pg_blocking_pids(int) FROM PUBLIC')
    try:
        wait_for(lambda: 'checking for sessions blocked by our batches failed' in daemon.log(),
                 30, what='the blocking check to fail')
        # Held: no batch commits (one in flight may finish).
        time.sleep(1.5)
        held = job_row(admin, 'checked')['batches']
        time.sleep(2)
        row = job_row(admin, 'checked')
        assert row['batches'] == held and row['state'] == 'running', row
        job = daemon.ctl_json('status')['jobs'][0]
        assert job['throttled'] and any('blocking check' in r for r in job['throttle_reasons']), job
    finally:
        admin.execute('GRANT EXECUTE ON FUNCTION pg_blocking_pids(int) TO PUBLIC')
    wait_for(lambda: 'checking for sessions blocked by our batches works again' in daemon.log(),
             30, what='the blocking check to work again')
    row = wait_succeeded(admin, 'checked', timeout=60)
    assert row['rows_scanned'] == 3000
    assert_each_row_once(admin, rows=3000)
    admin.close()


# -- 5. the server's own statement_timeout and lock_timeout --------------------

# Our own sessions: client options outrank every server-side default.
NO_TIMEOUTS = '-c statement_timeout=0 -c lock_timeout=0'


def test_server_side_one_ms_timeouts_do_not_reach_the_daemons_sessions(own_pg, daemon_factory):
    """statement_timeout and lock_timeout of 1 ms, set by the server for
    every session (ALTER SYSTEM + reload, ALTER DATABASE, ALTER ROLE IN
    DATABASE), while a job runs and its connections are cut and remade.

    What really happens: such settings are only defaults for a new session.
    The daemon's first statement on every connection sets its own values
    with set_config(..., false), a session setting, which outranks the
    configuration file, ALTER SYSTEM, database and role defaults; a reload
    does not reach a session that set its own. So every batch, claim and
    renewal runs under the daemon's batch.statement_timeout_ms and
    lock_timeout_ms: each row records the values its batch ran with, and
    all show 30s/2s, none 1ms. What the server's value does govern is that
    first statement itself: should it take over 1 ms, it is cancelled, the
    daemon logs "session setup failed", and reconnects with backoff. Either
    way the job finishes, each row exactly once."""
    own_pg.create_database('app')
    conn = own_pg.connect('app', options=NO_TIMEOUTS)
    counter_table(conn, rows=3000)
    daemon = daemon_factory(own_pg, 'app', {
        'batch': {'size': 50, 'size_min': 50, 'size_max': 50,
                  'statement_timeout_ms': 30000, 'lock_timeout_ms': 2000}})
    from daemon import insert_job
    insert_job(conn, name='timeouts', table_name='items',
               set_clause="counter = counter + 1 + test_pause(2), payload = "
                          "current_setting('statement_timeout') || '/' || "
                          "current_setting('lock_timeout')")
    wait_for(lambda: job_row(conn, 'timeouts')['batches'] >= 2, 30, what='some batches')
    conn.execute("ALTER SYSTEM SET statement_timeout = '1ms'")
    conn.execute("ALTER SYSTEM SET lock_timeout = '1ms'")
    conn.execute('SELECT pg_reload_conf()')
    conn.execute("ALTER DATABASE app SET statement_timeout = '1ms'")
    conn.execute("ALTER DATABASE app SET lock_timeout = '1ms'")
    conn.execute("ALTER ROLE postgres IN DATABASE app SET statement_timeout = '1ms'")
    conn.execute("ALTER ROLE postgres IN DATABASE app SET lock_timeout = '1ms'")
    try:
        # A new session without options gets the server's values.
        with own_pg.connect('app') as plain:
            assert plain.execute("SELECT current_setting('statement_timeout'), "
                                 "current_setting('lock_timeout')").fetchone() == ('1ms', '1ms')
        # Sessions made before the change, then new ones: cut them twice.
        for _ in range(2):
            before = job_row(conn, 'timeouts')['batches']
            assert job_row(conn, 'timeouts')['state'] == 'running', 'finished too early'
            # (A connection whose setup the 1 ms cancelled may be between
            # two attempts.)
            assert _terminate(conn, 'backfilld %') >= 1
            wait_for(lambda: job_row(conn, 'timeouts')['batches'] >= before + 3, 60,
                     what='batches on fresh connections')
        row = wait_succeeded(conn, 'timeouts', timeout=90)
    finally:
        conn.execute('ALTER SYSTEM RESET statement_timeout')
        conn.execute('ALTER SYSTEM RESET lock_timeout')
        conn.execute('SELECT pg_reload_conf()')
        conn.execute('ALTER DATABASE app RESET ALL')
        conn.execute('ALTER ROLE postgres IN DATABASE app RESET ALL')
    assert row['rows_scanned'] == 3000
    assert_each_row_once(conn, rows=3000)
    seen = dict(conn.execute('SELECT payload, count(*) FROM items GROUP BY 1').fetchall())
    assert seen == {'30s/2s': 3000}, seen
    # No batch, claim or renewal met the server's 1 ms: only a session
    # setup may have.
    for line in daemon.log().splitlines():
        if 'statement timeout' in line or 'lock timeout' in line:
            assert 'session setup failed' in line, line
    assert daemon.alive()
    conn.close()
