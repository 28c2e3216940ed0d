"""Throwaway PostgreSQL 15 servers for the tests.

    server = PgServer(base_dir, name='primary')
    server.init()                  # initdb (as `postgres` when we are root)
    server.start()                 # free loopback port, pg_ctl -w start
    conn = server.connect('postgres')
    server.restart(mode='immediate')
    server.stop()                  # idempotent; also run at exit

Each server lives in its own directory, created under base_dir and owned by
`postgres`: data/ (PGDATA), server.log, and the unix socket.  base_dir must be
traversable by `postgres`, so it cannot be pytest's tmp_path (0700, root):
use make_base_dir().  Only psycopg is needed besides the standard library.
"""

import atexit
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get('PG_BIN', '/usr/lib/postgresql/15/bin'))
PG_USER = 'postgres'
PG_CTL_TIMEOUT = 60        # seconds pg_ctl may wait for start or stop
CONNECT_TIMEOUT = 10       # seconds, for psycopg connections
START_ATTEMPTS = 3         # a free port may be taken between probe and bind

# Every server that was started, so that the atexit hook can stop it even when
# the test run is interrupted and the fixtures' finalizers never ran.
_started = set()


def make_base_dir(prefix='backfilld-test-'):
    """A fresh directory under the system temp dir that `postgres` can enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _as_root():
    return os.geteuid() == 0


def _pg_command(args):
    """args run as `postgres` when we are root (initdb refuses root)."""
    if _as_root():
        return ['runuser', '-u', PG_USER, '--'] + [str(a) for a in args]
    return [str(a) for a in args]


def _proc_stat(pid):
    """(state, pgrp) of a process from /proc, None if it does not exist."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    # The fields follow the parenthesised command name, which may hold spaces.
    fields = stat.rsplit(')', 1)[1].split()
    return fields[0], int(fields[2])


def _process_alive(pid):
    """True if pid exists and is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != 'Z'


def _group_alive(pgid):
    """True while a process of group pgid is alive (zombies do not count)."""
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat and stat[1] == pgid and stat[0] != 'Z':
                return True
    return False


class PgError(RuntimeError):
    pass


class PgServer:
    """One PostgreSQL server in its own directory.

    settings: extra server settings ({name: value}), passed with -c at every
    start (so they override postgresql.conf and ALTER SYSTEM).
    """

    def __init__(self, base_dir, name='pg', settings=None):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f'{name}-', dir=base_dir)).resolve()
        self.data_dir = self.dir / 'data'
        self.log_path = self.dir / 'server.log'
        self.settings = dict(settings or {})
        self.port = None          # chosen at the first start, then kept
        self.host = '127.0.0.1'
        self.user = PG_USER
        self._give_dir_to_postgres()

    def __repr__(self):
        return f'<PgServer {self.name} {self.host}:{self.port} {self.dir}>'

    # -- setup -------------------------------------------------------------

    def _give_dir_to_postgres(self):
        if not _as_root():
            return
        pw = pwd.getpwnam(PG_USER)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.dir.chmod(0o700)
        # Fail here, with a clear message, rather than deep inside initdb.
        check = subprocess.run(_pg_command(['test', '-w', self.dir]))
        if check.returncode != 0:
            raise PgError(f'{self.dir} is not writable by {PG_USER}: is every '
                          'parent directory traversable? (use make_base_dir())')

    def init(self):
        """initdb: trust authentication, superuser postgres, no fsync."""
        self._run([PG_BIN / 'initdb', '-D', self.data_dir, '-U', PG_USER,
                   '--auth=trust', '--no-sync', '--no-locale',
                   '--encoding=UTF8'])
        return self

    def init_standby(self, primary, slot=None):
        """Fills data/ with a base backup of primary (a running PgServer),
        configured (-R) to stream from it, optionally through a physical
        replication slot that is created if needed."""
        args = [PG_BIN / 'pg_basebackup', '-D', self.data_dir, '-R',
                '-X', 'stream', '--no-sync', '-c', 'fast',
                '-d', primary.conninfo('postgres')]
        if slot:
            args += ['-S', slot, '-C'] if not primary.has_slot(slot) else ['-S', slot]
        self._run(args)
        return self

    def has_slot(self, slot):
        with self.connect('postgres') as conn:
            return conn.execute('SELECT 1 FROM pg_replication_slots WHERE slot_name = %s',
                                (slot,)).fetchone() is not None

    # -- start / stop ------------------------------------------------------

    def server_options(self):
        """The settings passed with -c at start: they win over the config files."""
        opts = {
            'listen_addresses': self.host,
            'port': self.port,
            'unix_socket_directories': self.dir,
            'fsync': 'off',
            'max_connections': 100,
            'wal_level': 'replica',          # a streaming standby may follow
            'max_wal_senders': 10,
        }
        opts.update(self.settings)
        return opts

    def start(self):
        """pg_ctl -w start.  The first start chooses a free port (again if it
        was taken between the probe and the bind); later starts keep it."""
        if self.running():
            return self
        self._remove_stale_lock_files()
        _started.add(self)
        if self.port is not None:
            self._pg_ctl_start()
            return self
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            try:
                self._pg_ctl_start()
                return self
            except PgError:
                if attempt + 1 == START_ATTEMPTS or not self._port_was_taken():
                    raise
        return self

    def _pg_ctl_start(self):
        opts = ' '.join(shlex.quote(f'-c{k}={v}') for k, v in self.server_options().items())
        self._run([PG_BIN / 'pg_ctl', '-D', self.data_dir, '-l', self.log_path,
                   '-w', '-t', PG_CTL_TIMEOUT, '-o', opts, 'start'])

    def _port_was_taken(self):
        return 'Address already in use' in self.log()[-2000:]

    def stop(self, mode='fast', timeout=PG_CTL_TIMEOUT):
        """Stops the server if it runs (idempotent).  If pg_ctl cannot stop it
        in time, the postmaster and its children are killed."""
        if self.postmaster_pid() is None:
            _started.discard(self)
            return self
        try:
            self._run([PG_BIN / 'pg_ctl', '-D', self.data_dir, '-m', mode,
                       '-w', '-t', timeout, 'stop'], timeout=timeout + 10)
        except (PgError, subprocess.TimeoutExpired):
            self.kill()
        _started.discard(self)
        return self

    def restart(self, mode='fast'):
        """Stops (fast: clean; immediate: crash, recovery at start) and starts
        again on the same port."""
        self.stop(mode=mode)
        return self.start()

    def running(self):
        return self.postmaster_pid() is not None

    def postmaster_pid(self):
        """The pid in postmaster.pid if that process is alive, else None."""
        try:
            pid = int((self.data_dir / 'postmaster.pid').read_text().split('\n', 1)[0])
        except (OSError, ValueError):
            return None
        return pid if self._is_our_postmaster(pid) else None

    def _is_our_postmaster(self, pid):
        # Guards against pid reuse: the postmaster's command line names data_dir.
        if not _process_alive(pid):
            return False
        try:
            cmdline = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
        except OSError:
            return False
        return os.fsencode(str(self.data_dir)) in cmdline

    def kill(self, timeout=10):
        """SIGKILL to the postmaster and every backend: a crash, with recovery
        at the next start."""
        pid = self.postmaster_pid()
        if pid is None:
            return self
        # pg_ctl puts the postmaster in its own session (setsid), so its
        # process group holds the postmaster and every backend.
        try:
            group = os.getpgid(pid) == pid
            if group:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            group = False
        alive = _group_alive if group else _process_alive
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            raise PgError(f'{self}: postmaster {pid} survived SIGKILL')
        self._remove_stale_lock_files()
        _started.discard(self)
        return self

    def _remove_stale_lock_files(self):
        """Lock files of a postmaster that is gone.  Its zombie, until init
        reaps it, would look like a live owner to the next postmaster."""
        if self.postmaster_pid() is not None:
            return
        (self.data_dir / 'postmaster.pid').unlink(missing_ok=True)
        for stale in self.dir.glob('.s.PGSQL.*'):
            stale.unlink(missing_ok=True)

    # -- clients -----------------------------------------------------------

    def conninfo(self, dbname='postgres'):
        return f'host={self.host} port={self.port} user={self.user} dbname={dbname}'

    def connect(self, dbname='postgres', **kwargs):
        """A psycopg connection in autocommit mode."""
        kwargs.setdefault('autocommit', True)
        kwargs.setdefault('connect_timeout', CONNECT_TIMEOUT)
        return psycopg.connect(self.conninfo(dbname), **kwargs)

    def create_database(self, name):
        with self.connect('postgres') as conn:
            conn.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name)))
        return name

    def drop_database(self, name):
        """Drops name, terminating its sessions (PostgreSQL 13+)."""
        with self.connect('postgres') as conn:
            conn.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)')
                         .format(sql.Identifier(name)))

    def log(self):
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    # -- cleanup -----------------------------------------------------------

    def destroy(self):
        """Stops the server and removes its directory."""
        self.stop(mode='immediate')
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, args, timeout=PG_CTL_TIMEOUT + 30):
        """Runs a PostgreSQL program in self.dir (which `postgres` can enter);
        PgError with its output if it fails."""
        cmd = _pg_command(args)
        proc = subprocess.run(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise PgError(f'{self}: {shlex.join(cmd)} exited {proc.returncode}:\n'
                          f'{proc.stdout}\n--- server log tail ---\n'
                          + '\n'.join(self.log().splitlines()[-30:]))
        return proc.stdout


class Database:
    """A database on a server, with an autocommit connection to it."""

    def __init__(self, server, name):
        self.server = server
        self.name = name
        self.conn = server.connect(name)

    def __repr__(self):
        return f'<Database {self.name} on {self.server}>'

    @property
    def conninfo(self):
        return self.server.conninfo(self.name)

    def connect(self, **kwargs):
        """Another connection to this database."""
        return self.server.connect(self.name, **kwargs)


@atexit.register
def stop_all():
    """Stops every server still running (the run was interrupted or a
    fixture finalizer did not run)."""
    for server in list(_started):
        try:
            server.stop(mode='immediate', timeout=10)
        except Exception as exc:  # keep stopping the others
            print(f'pgserver: could not stop {server}: {exc}')
