"""The bench's throwaway PostgreSQL, its tables, and the daemon under test.

One primary serves every measurement, so that ratios compare like with like.
Its settings are PostgreSQL's defaults except where a default would measure
the machine instead of the methods: WAL is flushed at commit (fsync on, as in
production), checkpoints are spaced so that none lands inside a timed run,
WAL segments are recycled or created without zero-filling (else whichever
method first needs new segments pays for the disk), and commit timestamps are
tracked for the pickup latency.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / 'tests'))

from pgserver import PgServer, make_base_dir  # noqa: E402  (tests/ is on the path)
from procstat import memory_kib  # noqa: E402

BACKFILLD = Path(os.environ.get('BACKFILLD') or REPO / 'build' / 'backfilld')
BACKFILLCTL = Path(os.environ.get('BACKFILLCTL') or REPO / 'build' / 'backfillctl')

SERVER_SETTINGS = {
    'fsync': 'on',
    'shared_buffers': '512MB',
    'max_wal_size': '16GB',
    'min_wal_size': '4GB',
    'wal_init_zero': 'off',
    'checkpoint_timeout': '1h',
    'track_commit_timestamp': 'on',
    'max_connections': 100,
}

# The logical change every method makes: fill a new column from another.
SET_CLAUSE = 'amount_cents = (amount * 100)::bigint'


class Cluster:
    """The primary (and, for the lag measurement, a streaming standby)."""

    def __init__(self, rows):
        self.rows = rows
        self.base = make_base_dir('backfilld-bench-')
        self.primary = PgServer(self.base, 'primary', settings=SERVER_SETTINGS)
        self.standby = None

    def start(self):
        self.primary.init().start()
        self.conn = self.primary.connect('postgres')
        return self

    def stop(self, keep=False):
        """Stops the servers; their directory (gigabytes at 10m rows) goes
        too, unless keep (a failed run: its server logs tell why)."""
        for server in (self.standby, self.primary):
            if server is not None:
                server.stop(mode='immediate')
        if keep:
            print(f'bench: servers and logs kept in {self.base}', file=sys.stderr)
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    def connect(self, **kwargs):
        return self.primary.connect('postgres', **kwargs)

    # -- data --------------------------------------------------------------

    def make_source(self):
        """bench_source: `rows` orders, generated once; every run works on a
        fresh copy of it, so that no method inherits another's dead rows."""
        self.conn.execute('DROP TABLE IF EXISTS bench_source')
        self.conn.execute(
            'CREATE TABLE bench_source (id bigint PRIMARY KEY, customer integer NOT NULL, '
            'amount numeric(12,2) NOT NULL, note text NOT NULL, amount_cents bigint)')
        self.conn.execute(
            'INSERT INTO bench_source SELECT g, (g::bigint * 7919) %% 100000, '
            'round((random() * 1000)::numeric, 2), md5(g::text), NULL '
            'FROM generate_series(1, %s) g', (self.rows,))
        self.conn.execute('VACUUM (ANALYZE) bench_source')

    def fresh_table(self, name, rows=None):
        """A copy of bench_source (its first `rows` rows), frozen, analyzed
        and checkpointed: every run starts from the same physical state.
        Autovacuum is off for it so that no vacuum runs inside a timing."""
        self.conn.execute(f'DROP TABLE IF EXISTS {name}')
        self.conn.execute(f'CREATE TABLE {name} (LIKE bench_source INCLUDING ALL) '
                          'WITH (autovacuum_enabled = false)')
        limit = '' if rows is None else f' WHERE id <= {int(rows)}'
        self.conn.execute(f'INSERT INTO {name} SELECT * FROM bench_source{limit}')
        self.conn.execute(f'VACUUM (FREEZE, ANALYZE) {name}')
        self.conn.execute('CHECKPOINT')
        # And the kernel's dirty pages (the checkpoint's writes, the last
        # run's WAL) on disk now, not written back under the next run's
        # commits: every run starts with the disk idle.
        os.sync()
        return name

    def unfilled(self, name):
        return self.conn.execute(
            f'SELECT count(*) FROM {name} WHERE amount_cents IS DISTINCT FROM '
            '(amount * 100)::bigint').fetchone()[0]

    def rows_in(self, name):
        return self.conn.execute(f'SELECT count(*) FROM {name}').fetchone()[0]

    def wal_lsn(self):
        return self.conn.execute('SELECT pg_current_wal_lsn()').fetchone()[0]

    def wal_bytes_since(self, lsn):
        return int(self.conn.execute('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)',
                                     (lsn,)).fetchone()[0])

    def postmaster_pid(self):
        return self.primary.postmaster_pid()

    # -- the standby ---------------------------------------------------------

    def start_standby(self, apply_delay_ms):
        """A streaming standby that applies each commit apply_delay_ms late:
        a replica that is always a little behind, as over a slow link."""
        self.standby = PgServer(self.base, 'standby', settings={
            'hot_standby': 'on',
            'recovery_min_apply_delay': f'{apply_delay_ms}ms',
            'shared_buffers': '256MB',
            'cluster_name': 'bench_standby',
        })
        # Through a slot: the copies made for the next runs write and
        # recycle WAL faster than a standby that has just started fetches it.
        self.standby.init_standby(self.primary, slot='bench_standby')
        self.standby.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.conn.execute("SELECT count(*) FROM pg_stat_replication "
                                 "WHERE state = 'streaming'").fetchone()[0]:
                return self.standby
            time.sleep(0.1)
        raise RuntimeError('the bench standby never started streaming')

    def standby_streaming(self):
        return self.conn.execute("SELECT count(*) FROM pg_stat_replication "
                                 "WHERE state = 'streaming'").fetchone()[0] > 0

    def wait_standby_caught_up(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            lag = self.conn.execute(
                "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) "
                "FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f'the standby has not caught up after {timeout} s '
                                   f'(lag {lag} bytes)')
            time.sleep(0.1)

    def stop_standby(self):
        if self.standby is not None:
            self.standby.stop(mode='immediate')
            self.standby = None
            self.conn.execute("SELECT pg_drop_replication_slot('bench_standby')")


# A job of several slices names the slice: job "x" slice 2/4: batch ...
BATCH_LINE = re.compile(
    r'^(\S+) debug: job "(?P<job>[^"]+)"(?: slice \d+/\d+)?: batch \d+: (?P<rows>\d+) rows scanned, '
    r'\d+ updated in (?P<ms>[\d.]+) ms')


class Daemon:
    """backfilld with a bench configuration, its log in the bench directory."""

    def __init__(self, cluster, workdir, config_extra=''):
        self.cluster = cluster
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / 'ctl.sock'
        self.log_path = self.dir / 'backfilld.log'
        self.config_path = self.dir / 'backfilld.yaml'
        # Defaults everywhere, throttling included, but for the debug log
        # (one line per batch: the timeline of the plot) and room for the
        # eight jobs of the control-latency run (max_jobs counts slices, so
        # this is also room for the throughput runs' four slices).
        self.config_path.write_text(
            'database:\n'
            f'  conninfo: "{cluster.primary.conninfo("postgres")}"\n'
            'control:\n'
            f'  socket: "{self.socket}"\n'
            'engine:\n'
            '  max_jobs: 8\n'
            'log:\n'
            '  level: debug\n' + config_extra)
        self.proc = None
        self._peak_before_reset_kib = 0

    def start(self):
        if not os.access(BACKFILLD, os.X_OK):
            raise RuntimeError(f'{BACKFILLD} not found: run make first (or set BACKFILLD)')
        log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([str(BACKFILLD), '-c', str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'backfilld exited with {self.proc.returncode}:\n'
                                   + self.log_path.read_text()[-3000:])
            if ' ready: ' in self.log_path.read_text() and self.socket.exists():
                return self
            time.sleep(0.05)
        raise RuntimeError('backfilld was not ready within 60 s')

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self):
        return self.proc.pid

    def reset_peak_rss(self):
        """Starts a new peak resident set (VmHWM) from the current one, so
        that the peak after a run is that run's; the largest peak so far is
        kept for peak_rss_kib(). Writing 5 to clear_refs resets VmHWM and
        nothing else (proc(5), Linux 4.0)."""
        self._peak_before_reset_kib = self.peak_rss_kib()
        with open(f'/proc/{self.pid}/clear_refs', 'w') as f:
            f.write('5')

    def peak_rss_kib(self):
        """The largest resident set of the daemon's life, resets or not."""
        return max(self._peak_before_reset_kib, memory_kib(self.pid).get('VmHWM', 0))

    def log_size(self):
        return self.log_path.stat().st_size

    def batches(self, job, since=0):
        """[(end time s since epoch, rows, duration ms)] of job's batches,
        from the log written after offset `since`."""
        with open(self.log_path, 'rb') as f:
            f.seek(since)
            text = f.read().decode('utf-8', 'replace')
        out = []
        for line in text.splitlines():
            m = BATCH_LINE.match(line)
            if m and m.group('job') == job:
                stamp = datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S.%f').timestamp()
                out.append((stamp, int(m.group('rows')), float(m.group('ms'))))
        return out


def schedule(conn, name, table, settings=None, **columns):
    """Inserts a job row; returns the id of the transaction that committed it."""
    cols = {'name': name, 'table_name': table, 'set_clause': SET_CLAUSE, **columns}
    if settings:
        import json
        cols['settings'] = json.dumps(settings)
    names = ', '.join(cols)
    marks = ', '.join(['%s'] * len(cols))
    return conn.execute(f'INSERT INTO backfill.jobs ({names}) VALUES ({marks}) '
                        'RETURNING xmin::text', list(cols.values())).fetchone()[0]


def wait_finished(conn, names, timeout, interval=0.1):
    """Waits until every named job has ended; raises unless all succeeded.
    Every duration is taken from the jobs' own timestamps (job_span), so a
    faster poll would only load the server being measured (it did: a query
    every 10 ms, during backfilld's runs only)."""
    deadline = time.monotonic() + timeout
    names = list(names)
    while True:
        rows = conn.execute('SELECT name, state, last_error FROM backfill.jobs '
                            'WHERE name = ANY(%s)', (names,)).fetchall()
        states = {r[0]: (r[1], r[2]) for r in rows}
        if all(states.get(n, ('',))[0] in ('succeeded', 'failed', 'cancelled') for n in names):
            bad = {n: s for n, s in states.items() if s[0] != 'succeeded'}
            if bad:
                raise RuntimeError(f'bench jobs did not succeed: {bad}')
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f'bench jobs still running after {timeout} s: {states}')
        time.sleep(interval)


def job_span(conn, name):
    """(INSERT, end) of a job, seconds since the epoch, database time (the
    same clock as pgbench's log: one host)."""
    row = conn.execute('SELECT extract(epoch FROM created_at), extract(epoch FROM finished_at) '
                       'FROM backfill.jobs WHERE name = %s', (name,)).fetchone()
    return float(row[0]), float(row[1])


def job_seconds(conn, name):
    """From the job's INSERT to its end, in database time."""
    return float(conn.execute(
        'SELECT extract(epoch FROM finished_at - created_at) FROM backfill.jobs '
        'WHERE name = %s', (name,)).fetchone()[0])
