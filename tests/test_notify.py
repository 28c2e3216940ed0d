"""systemd integration without systemd: the sd_notify datagrams the daemon
sends (READY, STATUS, WATCHDOG, RELOADING, STOPPING) collected on a socket of
our own, and what a SIGHUP reload changes in the running daemon."""

import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from daemon import tail, wait_for
from workload import counter_job, counter_table, wait_succeeded


# -- helpers -------------------------------------------------------------------


def log_count(daemon, text):
    return daemon.current_log().count(text)


def reload(daemon, timeout=10):
    daemon.reload(timeout)


class NotifyListener:
    """An AF_UNIX datagram socket like systemd's NOTIFY_SOCKET; a thread
    records every datagram as (monotonic time, {field: value}, raw text,
    whether the daemon's log said "ready" by then)."""

    def __init__(self, path, daemon=None):
        self.path = str(path)
        self.daemon = daemon
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            text = data.decode(errors='replace')
            fields = {}
            for line in text.split('\n'):
                if '=' in line:
                    key, value = line.split('=', 1)
                    fields[key] = value
            logged_ready = bool(self.daemon and
                                re.search(r'\bready\b', self.daemon.current_log()))
            with self.lock:
                self.messages.append((now, fields, text, logged_ready))

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def find(self, key, value=None, start=0):
        """Index of the first message from index start with key (=value)."""
        for i, (_, fields, _, _) in enumerate(self.snapshot()[start:], start):
            if key in fields and (value is None or fields[key] == value):
                return i
        return None

    def wait(self, key, value=None, start=0, timeout=10):
        return wait_for(lambda: (i := self.find(key, value, start)) is not None and (i,),
                        timeout, interval=0.02,
                        what=lambda: f'{key}={value or "*"} from message {start}; got '
                                     f'{[m[2] for m in self.snapshot()]}')[0]

    def times(self, key, value, since, until):
        return [t for t, fields, _, _ in self.snapshot()
                if fields.get(key) == value and since <= t <= until]


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / 'notify.sock'
    assert len(str(path)) < 100, path
    listener = NotifyListener(path)
    yield listener
    listener.close()


# -- 6. the sd_notify protocol -----------------------------------------------------

def test_sd_notify_sequence(db, daemon_factory, notify_socket):
    n = notify_socket
    d = daemon_factory(db.server, db.name, start=False)
    n.daemon = d
    d.start({'NOTIFY_SOCKET': n.path, 'WATCHDOG_USEC': '1000000'})
    d.wait_ready(30)

    ready = n.wait('READY', '1')
    _, _, _, logged_ready = n.snapshot()[ready]
    assert logged_ready, 'READY=1 came before the daemon logged "ready"'
    assert 'systemd watchdog: 1000 ms; pinging every 500 ms' in d.current_log()
    status = n.wait('STATUS', start=ready)
    assert n.snapshot()[status][1]['STATUS'].strip(), 'empty STATUS='

    # The watchdog: about every 0.5 s.
    since = time.monotonic()
    time.sleep(2.5)
    pings = n.times('WATCHDOG', '1', since, time.monotonic())
    assert len(pings) >= 3, f'{len(pings)} WATCHDOG=1 in 2.5s'
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert all(0.25 <= g <= 0.9 for g in gaps), f'watchdog gaps {gaps}'

    # SIGHUP: RELOADING=1 with the monotonic time, then READY=1.
    start = len(n.snapshot())
    sent_us = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    d.send_signal(signal.SIGHUP)
    reloading = n.wait('RELOADING', '1', start)
    fields = n.snapshot()[reloading][1]
    assert 'MONOTONIC_USEC' in fields, f'RELOADING=1 without MONOTONIC_USEC: {fields}'
    assert re.fullmatch(r'\d+', fields['MONOTONIC_USEC']), fields
    assert abs(int(fields['MONOTONIC_USEC']) - sent_us) < 10e6, (fields, sent_us)
    n.wait('READY', '1', reloading + 1)
    wait_for(lambda: 'reloaded ' in d.current_log(), 10, what='the reload to be logged')

    # A broken config file: refused, and READY=1 again all the same.
    start = len(n.snapshot())
    d.config_path.write_text('database: [\n  this is: not yaml\n')
    d.send_signal(signal.SIGHUP)
    reloading = n.wait('RELOADING', '1', start)
    n.wait('READY', '1', reloading + 1)
    wait_for(lambda: 'reload refused' in d.current_log(), 10, what='"reload refused"')
    d.write_config()
    d.ctl('status', check=0)

    # A stopped process sends no pings; they resume with it.
    n.wait('WATCHDOG', '1', len(n.snapshot()), timeout=3)
    d.sigstop()
    stopped = time.monotonic()
    time.sleep(1.5)
    resumed = time.monotonic()
    late = n.times('WATCHDOG', '1', stopped + 0.1, resumed)
    d.sigcont()
    assert not late, f'WATCHDOG=1 while stopped at {[t - stopped for t in late]}'
    wait_for(lambda: n.times('WATCHDOG', '1', resumed, time.monotonic() + 1), 3,
             what='WATCHDOG=1 after SIGCONT')

    # SIGTERM: STOPPING=1, then exit 0.
    start = len(n.snapshot())
    assert d.stop() == 0
    n.wait('STOPPING', '1', start, timeout=3)


# -- 7. what a reload changes ----------------------------------------------------------

def test_reload_applies_settings_and_keeps_restart_only_ones(db, daemon_factory):
    conn = db.conn
    d = daemon_factory(db.server, db.name, {'log': {'level': 'info'}})
    assert d.ctl_json('status')['daemon']['max_jobs'] == 4

    d.config['log']['level'] = 'debug'
    d.config.setdefault('engine', {})['max_jobs'] = 7
    reload(d)
    assert 'reloaded' in d.current_log() and 'log level debug, up to 7 jobs' in \
        d.current_log(), tail(d.current_log(), 10)
    assert d.ctl_json('status')['daemon']['max_jobs'] == 7

    d.config['database']['conninfo'] += ' application_name=changed_on_reload'
    reload(d)
    assert ('database.conninfo changed; it takes effect when backfilld is restarted'
            in d.current_log()), tail(d.current_log(), 20)
    status = d.ctl_json('status')
    assert status['daemon']['database']['connected'] is True, status['daemon']
    assert status['daemon']['max_jobs'] == 7
    # Still the old connection settings at work: a job runs to its end.
    counter_table(conn, rows=300)
    counter_job(conn, 'after_reload')
    wait_succeeded(conn, 'after_reload', timeout=30)
    names = {r[0] for r in conn.execute(
        "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")}
    assert 'changed_on_reload' not in names, names


# -- READY=1 means ready: never before, never while stopping ---------------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_sighup_before_ready_does_not_claim_ready(db, daemon_factory, notify_socket):
    n = notify_socket
    d = daemon_factory(db.server, db.name, start=False)
    # Nothing listens there: the daemon keeps trying to connect, never ready.
    d.config['database']['conninfo'] = (f'host=127.0.0.1 port={free_port()} '
                                        f'dbname={db.name} user=postgres')
    d.start({'NOTIFY_SOCKET': n.path})
    wait_for(lambda: 'control: serving on' in d.current_log(), 10, what='the control socket')
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: 'reloaded ' in d.current_log() or 'reload refused' in d.current_log(),
             10, what='the reload')
    time.sleep(0.5)
    assert d.alive() and not re.search(r'\bready:', d.current_log())
    sent = [m[2] for m in n.snapshot()]
    assert n.find('READY', '1') is None, (
        f'READY=1 sent by a daemon that is not ready (no database yet): {sent}')
    assert d.stop() == 0


def test_sighup_while_stopping_does_not_claim_ready(db, daemon_factory, notify_socket):
    n = notify_socket
    conn = db.conn
    counter_table(conn, rows=2000)
    d = daemon_factory(db.server, db.name,
                       {'batch': {'size': 50, 'size_min': 50, 'size_max': 50}}, start=False)
    d.start({'NOTIFY_SOCKET': n.path})
    d.wait_ready(30)
    counter_job(conn, 'slow', pause_ms=40)          # 2 s batches
    # Right after batch 1 commits, batch 2 is in flight for 2 s.
    wait_for(lambda: 'batch 1:' in d.current_log(), 20, what='the first batch')
    d.send_signal(signal.SIGTERM)
    stopping = n.wait('STOPPING', '1', timeout=5)
    d.send_signal(signal.SIGHUP)
    try:
        code = d.proc.wait(30)
    except subprocess.TimeoutExpired:
        d.kill()
        raise AssertionError(f'no exit after SIGTERM then SIGHUP:\n{tail(d.current_log(), 30)}')
    d.sigterm_exit_codes.append(code)
    log = d.current_log()
    assert log.index('received SIGTERM') < log.index('received SIGHUP'), (
        'the daemon was gone before the SIGHUP: the test proves nothing\n' + tail(log, 30))
    time.sleep(0.2)                                 # the last datagrams
    after = [m[2] for m in n.snapshot()[stopping + 1:]]
    assert 'READY=1' not in after, f'READY=1 after STOPPING=1: {after}'
    assert code == 0, tail(log, 30)



def unreachable_daemon(db, daemon_factory, notify_socket):
    d = daemon_factory(db.server, db.name, start=False)
    d.config['database']['conninfo'] = (f'host=127.0.0.1 port={free_port()} '
                                        f'dbname={db.name} user=postgres')
    return d.start({'NOTIFY_SOCKET': notify_socket.path})


def test_log_says_why_the_database_is_unreachable(db, daemon_factory, notify_socket):
    d = unreachable_daemon(db, daemon_factory, notify_socket)
    wait_for(lambda: 'listener connection: ' in d.current_log(), 10,
             what='a failed connection attempt in the log')
    line = next(l for l in d.current_log().splitlines() if 'listener connection: ' in l)
    # What libpq says (connection refused), not an artefact of the event loop.
    assert 'refused' in line.lower(), line
    assert d.stop() == 0


def test_status_line_before_ready_says_what_it_waits_for(db, daemon_factory, notify_socket):
    n = notify_socket
    d = unreachable_daemon(db, daemon_factory, notify_socket)
    i = n.wait('STATUS', timeout=5)     # systemctl status while "activating"
    line = n.snapshot()[i][1]['STATUS']
    assert line.startswith('database unreachable'), line
    assert d.stop() == 0
