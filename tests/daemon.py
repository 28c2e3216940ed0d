"""Runs the daemon under test, and helpers to wait for things and look at jobs.

    d = Daemon(server, dbname, tmp_path, overrides={'engine': {'lease_s': 3}})
    d.start(); d.wait_ready(30)
    job_id = insert_job(conn, name='j1', table_name='public.t', set_clause='n = n + 1')
    row = wait_job_state(conn, 'j1', 'succeeded', timeout=30)
    assert d.stop() == 0

The binary is $BACKFILLD (set by `make pytest`), else build/backfilld.
"""

import atexit
import contextlib
import ctypes
import json
import os
import re
import socket
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from psycopg import sql
from psycopg.rows import dict_row

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKFILLD = Path(os.environ.get('BACKFILLD') or REPO_ROOT / 'build' / 'backfilld')
BACKFILLCTL = Path(os.environ.get('BACKFILLCTL') or REPO_ROOT / 'build' / 'backfillctl')

# Test-friendly settings under every test's overrides: quick polling and
# retries, and debug logs to read when a test fails.
TEST_DEFAULTS = {
    'engine': {'poll_interval_ms': 500},
    'retry': {'initial_ms': 50, 'max_ms': 1000},
    'log': {'level': 'debug'},
}

SANITIZER_ENV = {
    # A smaller quarantine than ASan's 256 MB: freed memory it holds back
    # would swamp the memory bounds some tests check.
    'ASAN_OPTIONS': 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=32',
    'UBSAN_OPTIONS': 'print_stacktrace=1:halt_on_error=1',
}
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:')

READY_RE = re.compile(r'\bready\b')

# `make valgrind`: every daemon runs under memcheck (same pid: valgrind runs
# the program in its own process), and anything memcheck reports -- an
# invalid access, a use of uninitialised memory, a definite or indirect leak
# at exit -- is a finding that fails the test.
VALGRIND = os.environ.get('BACKFILLD_VALGRIND') == '1'
VALGRIND_ARGS = ['valgrind', '--quiet', '--tool=memcheck', '--leak-check=full',
                 '--show-leak-kinds=definite,indirect',
                 '--errors-for-leak-kinds=definite,indirect', '--error-exitcode=97',
                 '--num-callers=30']
SUN_PATH_MAX = 107     # sizeof(sockaddr_un.sun_path) - 1 on Linux


# -- waiting -----------------------------------------------------------------

def wait_for(predicate, timeout, interval=0.05, what='condition'):
    """Polls predicate until it returns something truthy, and returns that.
    AssertionError naming `what` after timeout seconds; `what` may be a
    callable, evaluated only then (to describe the state at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            desc = what() if callable(what) else what
            raise AssertionError(f'timed out after {timeout}s waiting for {desc}')
        time.sleep(interval)


def read_pty_to_end(fd):
    """Everything a pty's other side writes until it closes (EOF, or EIO
    once the child is gone)."""
    out = b''
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def tail(text, lines=200):
    return '\n'.join(text.splitlines()[-lines:])


# -- configuration -----------------------------------------------------------

def merge_config(base, *overrides):
    """base with each of overrides applied in turn, section by section (dict
    of dicts); a value of None removes the key, and a section of None the
    whole section."""
    merged = {section: dict(keys) for section, keys in base.items()}
    for override in overrides:
        for section, keys in (override or {}).items():
            if keys is None:
                merged.pop(section, None)
                continue
            target = merged.setdefault(section, {})
            for key, value in keys.items():
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value
    return merged


def yaml_scalar(value):
    """A YAML scalar for value.  JSON strings are valid YAML double-quoted
    scalars, so json.dumps quotes and escapes strings correctly."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(yaml_scalar(v) for v in value) + ']'
    return json.dumps(str(value))


def render_yaml(config):
    """Two-level YAML: sections of scalar (or flow-list) keys."""
    out = ['# written by tests/daemon.py']
    for section, keys in config.items():
        out.append(f'{section}:')
        out.extend(f'  {key}: {yaml_scalar(value)}' for key, value in keys.items())
    return '\n'.join(out) + '\n'


# -- the daemon --------------------------------------------------------------

def _die_with_parent():
    """preexec_fn: SIGKILL the daemon if the test process dies, even by
    SIGKILL (atexit cannot cover that)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Daemon:
    """One backfilld process with its own directory tmp_path/name holding
    backfilld.yaml, backfilld.log (every run appended) and ctl.sock.

    `config` is the dict written to backfilld.yaml at every start: change it
    and restart to test another configuration.
    """

    # The daemons of the current test: conftest empties it before each test,
    # checks them after it, and wait_job_state shows their logs on timeout.
    registry = []
    _all = []          # every daemon ever made, for the atexit hook

    def __init__(self, server, dbname, tmp_path, overrides=None, name='d1'):
        self.server = server
        self.dbname = dbname
        self.name = name
        self.dir = Path(tmp_path) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / 'backfilld.yaml'
        self.log_path = self.dir / 'backfilld.log'
        self.socket = self._socket_path()
        self.config = merge_config(TEST_DEFAULTS, {
            'database': {'conninfo': server.conninfo(dbname)},
            'control': {'socket': str(self.socket)},
        })
        self.config = merge_config(self.config, overrides)
        self.proc = None
        self.starts = 0
        self.sigterm_exit_codes = []   # exit code of every stop() by SIGTERM
        self.problems = []             # e.g. did not exit on SIGTERM
        self._log_offset = 0           # where the current run's output begins
        Daemon.registry.append(self)
        Daemon._all.append(self)

    def __repr__(self):
        return f'<Daemon {self.name} pid={self.pid}>'

    def _socket_path(self):
        # A unix socket path must fit in sun_path; deep tmp dirs may not.
        path = self.dir / 'ctl.sock'
        if len(str(path)) <= SUN_PATH_MAX:
            return path
        return Path(tempfile.mkdtemp(prefix='bf-sock-')) / 'ctl.sock'

    # -- running ---------------------------------------------------------

    def write_config(self):
        self.config_path.write_text(render_yaml(self.config))

    def command(self, *extra):
        return [str(BACKFILLD), '-c', str(self.config_path), *extra]

    def check_config(self, timeout=30):
        """`backfilld -c FILE --check-config`: a CompletedProcess (text)."""
        self._require_binary()
        self.write_config()
        return subprocess.run(self.command('--check-config'), env=self.env(),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    def env(self):
        env = dict(os.environ)
        for key, value in SANITIZER_ENV.items():
            env.setdefault(key, value)
        return env

    def start(self, extra_env=None, shell_prefix=None, preexec=None):
        """Starts the daemon in the foreground, output appended to the log.

        extra_env: more environment (systemd's own variables, inherited from
        whatever runs the tests, are never passed on); shell_prefix: shell
        text run in the daemon's own process before it execs the daemon
        (LISTEN_PID=$$); preexec: a hook run in the child, whose inheritable
        fds are then passed on."""
        assert not self.alive(), f'{self} is already running'
        self._require_binary()
        self.write_config()
        self.starts += 1
        env = self.env()
        for key in ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS',
                    'LISTEN_PID', 'LISTEN_FDNAMES'):
            env.pop(key, None)
        env.update(extra_env or {})
        cmd = self.command()
        if VALGRIND:
            cmd = VALGRIND_ARGS + [f'--log-file={self.valgrind_log(self.starts)}'] + cmd
        if shell_prefix:
            cmd = ['sh', '-c', f'{shell_prefix} exec "$0" "$@"', *cmd]

        def child():
            _die_with_parent()
            if preexec:
                preexec()

        with open(self.log_path, 'ab') as log:
            log.write(f'===== tests: start #{self.starts}: {" ".join(cmd)}'
                      f'{f" (env {extra_env})" if extra_env else ""} =====\n'.encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, preexec_fn=child,
                                         close_fds=preexec is None)
        return self

    def reload(self, timeout=10):
        """Writes the config, SIGHUP, and waits for this reload's "reloaded"
        line (failing at once on "reload refused")."""
        log = self.current_log
        before, refused = log().count('reloaded '), log().count('reload refused')
        self.write_config()
        self.send_signal(signal.SIGHUP)

        def done():
            assert log().count('reload refused') == refused, (
                f'reload refused:\n{tail(log(), 20)}')
            return log().count('reloaded ') > before
        wait_for(done, timeout, what=lambda: f'the reload:\n{tail(log(), 20)}')

    def ctl(self, *args, timeout=60, user=None, socket=None, check=None):
        """Runs backfillctl against this daemon's socket: a CompletedProcess
        (text). user: run it as that OS user (runuser). check: the exit code
        expected (asserted, with the output in the message)."""
        cmd = [str(BACKFILLCTL), '-s', str(socket or self.socket), *args]
        if user:
            cmd = ['runuser', '-u', user, '--', *cmd]
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=timeout, env=self.env())
        if check is not None:
            assert result.returncode == check, (
                f'backfillctl {" ".join(args)}: exit {result.returncode}, want {check}\n'
                f'stdout: {result.stdout}\nstderr: {result.stderr}')
        return result

    def ctl_json(self, *args, **kwargs):
        """backfillctl ARGS --json, which must succeed: the parsed object."""
        import json
        return json.loads(self.ctl(*args, '--json', check=0, **kwargs).stdout)

    def _require_binary(self):
        if not os.access(BACKFILLD, os.X_OK):
            raise AssertionError(f'daemon binary {BACKFILLD} not found: run make '
                                 '(or set BACKFILLD)')

    def wait_ready(self, timeout=30):
        """Waits until backfill.jobs exists and this run has logged "ready"."""
        with self.server.connect(self.dbname) as conn:
            def ready():
                if not self.alive():
                    raise AssertionError(f'{self.name} exited with {self.proc.returncode} '
                                         f'before it was ready:\n{tail(self.log(), 100)}')
                return (READY_RE.search(self.current_log()) and
                        _jobs_table_exists(conn))
            wait_for(ready, timeout, interval=0.1,
                     what=lambda: f'{self.name} to be ready:\n{tail(self.current_log(), 100)}')
        return self

    def stop(self, timeout=30):
        """SIGTERM, then the exit code.  A daemon that does not exit within
        timeout is killed and the test fails."""
        if not self.alive():
            return self.returncode
        self.sigcont()              # a stopped process would not act on SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.problems.append(f'{self.name} did not exit within {timeout}s of '
                                 'SIGTERM and was killed')
            raise AssertionError(f'{self.problems[-1]}:\n{tail(self.current_log(), 100)}')
        self.sigterm_exit_codes.append(code)
        return code

    def kill(self):
        """SIGKILL, then the exit code (-9)."""
        if self.alive():
            self.proc.kill()
        return self.proc.wait(30) if self.proc else None

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    # -- output ------------------------------------------------------------

    def log(self):
        """Everything logged by every run of this daemon."""
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def current_log(self):
        """What the current (or last) run has logged."""
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(self._log_offset)
                return f.read().decode(errors='replace')
        except FileNotFoundError:
            return ''

    def valgrind_log(self, start):
        return self.dir / f'valgrind.{start}.log'

    def valgrind_reports(self):
        """What memcheck wrote, run by run (it writes nothing when clean)."""
        out = []
        for start in range(1, self.starts + 1):
            try:
                text = self.valgrind_log(start).read_text(errors='replace').strip()
            except FileNotFoundError:
                continue
            if text:
                out.append(f'valgrind, start #{start}:\n{tail(text, 60)}')
        return out

    def sanitizer_reports(self):
        """Lines of the log in which a sanitizer reported an error."""
        return [line for line in self.log().splitlines()
                if any(marker in line for marker in SANITIZER_MARKERS)]

    def findings(self):
        """Why this daemon should fail the test, whatever the test asserted:
        sanitizer reports, a non-zero exit on SIGTERM, a hang on SIGTERM."""
        found = list(self.problems)
        found += [f'{self.name} exited {code} on SIGTERM'
                  for code in self.sigterm_exit_codes if code != 0]
        found += [f'{self.name}: {line}' for line in self.sanitizer_reports()]
        found += [f'{self.name}: {report}' for report in self.valgrind_reports()]
        return found


def _jobs_table_exists(conn):
    return conn.execute("SELECT to_regclass('backfill.jobs') IS NOT NULL").fetchone()[0]


@atexit.register
def _kill_all():
    """Daemons left running by an interrupted run."""
    for daemon in Daemon._all:
        if daemon.alive():
            daemon.kill()


# -- jobs --------------------------------------------------------------------

def insert_job(conn, **columns):
    """INSERT INTO backfill.jobs (columns...) RETURNING id.  Python lists
    become arrays (key_columns=['a', 'b'])."""
    names = list(columns)
    query = sql.SQL('INSERT INTO backfill.jobs ({}) VALUES ({}) RETURNING id').format(
        sql.SQL(', ').join(map(sql.Identifier, names)),
        sql.SQL(', ').join(sql.Placeholder() * len(names)))
    return conn.execute(query, [columns[n] for n in names]).fetchone()[0]


def job_row(conn, name):
    """The job's row as a dict, or None, with its walk as status shows it:
    once the walk is cut into slices (backfill.slices), the lease is a
    slice's (owner: the first leased one's; lease_epoch: the highest), the
    counters are the slices' sums (the row's own are summed now and then),
    and a job of one slice has that slice's checkpoint. The row's own
    values stay under 'row'."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute('SELECT * FROM backfill.jobs WHERE name = %s', (name,)).fetchone()
        if row is None:
            return None
        # A schema older than slices (or the fake daemon's of test_infra) has none.
        has_slices = cur.execute(
            "SELECT to_regclass('backfill.slices') IS NOT NULL AS yes").fetchone()['yes']
        slices = cur.execute('SELECT * FROM backfill.slices WHERE job_id = %s ORDER BY slice',
                             (row['id'],)).fetchall() if has_slices else []
    row['row'] = dict(row)
    row['slices'] = slices
    if slices:
        leased = [s for s in slices if s['owner'] is not None]
        if row['owner'] is None and leased:
            row['owner'], row['lease_until'] = leased[0]['owner'], leased[0]['lease_until']
        row['lease_epoch'] = max([row['lease_epoch']] + [s['lease_epoch'] for s in slices])
        for column in ('rows_scanned', 'rows_updated', 'batches'):
            row[column] = sum(s[column] for s in slices)
        if len(slices) == 1:
            row['checkpoint'] = slices[0]['checkpoint']
    return row


def wait_job_state(conn, name, states, timeout=30, daemons=None):
    """Waits until job `name` is in one of states (a string or a collection)
    and returns its row.  On timeout the message holds the row and the logs of
    daemons (default: every daemon of the current test)."""
    wanted = {states} if isinstance(states, str) else set(states)
    last = {}

    def reached():
        last['row'] = job_row(conn, name)
        return last['row'] if last['row'] and last['row']['state'] in wanted else None

    def describe():
        logs = ''.join(f'\n--- {d.name} log (tail) ---\n{tail(d.log(), 100)}'
                       for d in (Daemon.registry if daemons is None else daemons))
        return f'job {name!r} to be {sorted(wanted)}; row: {last.get("row")}{logs}'

    return wait_for(reached, timeout, interval=0.1, what=describe)


@contextlib.contextmanager
def socket_activated(daemon, path):
    """Starts daemon as systemd's socket activation would: a unix socket
    listening at path, passed as fd 3 (LISTEN_FDS=1). Waits until it is
    ready; kills it and closes the socket at the end of the block."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(16)
        fd = listener.fileno()

        def as_fd3():
            if fd == 3:
                os.set_inheritable(3, True)
            else:
                os.dup2(fd, 3, inheritable=True)

        daemon.start(shell_prefix='LISTEN_PID=$$ LISTEN_FDS=1', preexec=as_fd3)
        daemon.wait_ready(30)
        assert 'socket passed by systemd' in daemon.current_log(), daemon.current_log()
        yield daemon
    finally:
        if daemon.alive():
            daemon.kill()
        listener.close()
