"""The control socket itself: creating it safely, peer credentials, a hostile
or broken client, floods, backfillctl's exit statuses and systemd socket
activation.  Raw protocol checks talk to the socket with Python sockets."""

import json
import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from daemon import BACKFILLCTL, job_row, socket_activated, wait_for
from workload import SMALL_BATCHES, counter_job, counter_table

STATUS = b'{"v":1,"cmd":"status"}\n'


# -- helpers -------------------------------------------------------------------

def use_socket(daemon, path):
    """Points the daemon's config (and its ctl()) at another socket path."""
    daemon.config['control']['socket'] = str(path)
    daemon.socket = Path(path)
    return daemon


def log_count(daemon, text):
    return daemon.current_log().count(text)


def reload(daemon, timeout=10):
    daemon.reload(timeout)


def ctl_raw(*args, timeout=20):
    """backfillctl ARGS (no daemon needed): a CompletedProcess (text)."""
    return subprocess.run([str(BACKFILLCTL), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def connect(path, deadline):
    """A connected AF_UNIX stream socket, retrying while the listen backlog is
    full (EAGAIN), until the monotonic deadline."""
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except (BlockingIOError, InterruptedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise AssertionError(f'could not connect to {path} in time')
            time.sleep(0.01)
            continue
        except BaseException:
            sock.close()
            raise
        sock.settimeout(5)
        return sock


class Raw:
    """One raw protocol connection."""

    def __init__(self, path, timeout=5):
        self.sock = connect(path, time.monotonic() + timeout)
        self.sock.settimeout(timeout)
        self.buf = b''

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def read_line(self, timeout=5):
        """The next response line, decoded; AssertionError on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f'no response line within {timeout}s (got {self.buf[:200]!r})'
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            assert chunk, f'connection closed without a response (got {self.buf[:200]!r})'
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def request(self, data, timeout=5):
        self.send(data)
        return self.read_line(timeout)

    def closed_by_peer(self, timeout=5):
        """True once the daemon closed the connection (EOF or reset) within
        timeout; data still arriving is collected in self.buf."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.buf += chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def error_code(response):
    assert response.get('ok') is False, f'expected an error response, got {response}'
    assert response.get('v') == 1, response
    return response['error']['code']


@pytest.fixture
def public_dir():
    """A fresh directory under /tmp that every user may traverse (0755)."""
    path = Path(tempfile.mkdtemp(prefix='bf-pub-', dir='/tmp'))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- 1. creating the socket safely ---------------------------------------------

def test_live_socket_is_never_stolen_and_stale_one_is_replaced(db, daemon_factory):
    a = daemon_factory(db.server, db.name, name='a')
    b = use_socket(daemon_factory(db.server, db.name, name='b', start=False), a.socket)

    started = time.monotonic()
    b.start()
    code = b.proc.wait(timeout=15)
    assert code != 0, f'b started on a live socket:\n{b.current_log()}'
    assert time.monotonic() - started < 10, 'b did not give up at once'
    assert 'in use' in b.current_log(), b.current_log()
    assert 'ready' not in b.current_log()
    a.ctl('status', check=0)        # a still serves, on a socket b left alone

    # a crashes: its socket file stays behind, with nobody listening.
    assert a.kill() == -signal.SIGKILL
    assert stat.S_ISSOCK(os.lstat(a.socket).st_mode)
    b.start().wait_ready(30)
    assert 'removed the stale socket' in b.current_log(), b.current_log()
    b.ctl('status', check=0)


def test_a_file_that_is_not_a_socket_is_left_alone(db, daemon_factory):
    d = daemon_factory(db.server, db.name, start=False)
    d.socket.write_text('precious data\n')
    d.socket.chmod(0o640)
    d.start()
    assert d.proc.wait(timeout=15) == 1
    assert 'not a socket' in d.current_log(), d.current_log()
    assert d.socket.read_text() == 'precious data\n'
    st = os.lstat(d.socket)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640

    # Nor a symlink, even a dangling one: never followed, never removed.
    d.socket.unlink()
    d.socket.symlink_to(d.dir / 'elsewhere.sock')
    d.start()
    assert d.proc.wait(timeout=15) == 1
    assert 'not a socket' in d.current_log(), d.current_log()
    assert d.socket.is_symlink() and not (d.dir / 'elsewhere.sock').exists()


def test_socket_mode_and_removal_on_clean_stop(db, daemon_factory):
    d = daemon_factory(db.server, db.name, {'control': {'socket_mode': '0600'}})
    st = os.lstat(d.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    d.ctl('status', check=0)
    assert d.stop() == 0
    assert not os.path.lexists(d.socket), 'the socket outlived a clean stop'


def test_clean_stop_leaves_a_successors_socket_alone(db, daemon_factory):
    a = daemon_factory(db.server, db.name, name='a')
    os.unlink(a.socket)                 # an operator cleaned up by hand...
    b = use_socket(daemon_factory(db.server, db.name, name='b', start=False), a.socket)
    b.start().wait_ready(30)            # ... and started another daemon there
    assert a.stop() == 0
    assert os.path.lexists(b.socket), (
        'a, stopping, removed the socket that b created at the same path')
    assert b.ctl_json('status')['daemon']['pid'] == b.pid


# -- 2. peer credentials ---------------------------------------------------------

def test_peer_credentials_and_allowed_users_groups_reload(db, daemon_factory, public_dir):
    d = daemon_factory(db.server, db.name, start=False)
    use_socket(d, public_dir / 'ctl.sock')
    d.config['control']['socket_mode'] = '0666'
    d.start().wait_ready(30)
    assert stat.S_IMODE(os.lstat(d.socket).st_mode) == 0o666

    r = d.ctl('status', user='nobody', timeout=20, check=4)
    assert 'permission denied' in r.stderr, r.stderr
    assert 'refused uid 65534' in d.current_log()
    d.ctl('status', check=0)    # root

    d.config['control']['allowed_users'] = ['nobody']
    reload(d)
    d.ctl('status', user='nobody', timeout=20, check=0)

    # By group instead: nobody's primary group is nogroup.
    del d.config['control']['allowed_users']
    d.config['control']['allowed_groups'] = ['nogroup']
    reload(d)
    d.ctl('status', user='nobody', timeout=20, check=0)

    # A name that does not resolve: the reload is refused as a whole and
    # the running list stays.
    d.config['control']['allowed_users'] = ['no_such_user_bf']
    refused = log_count(d, 'reload refused')
    d.write_config()
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: log_count(d, 'reload refused') > refused, 10, what='"reload refused"')
    assert 'no_such_user_bf' in d.current_log()
    d.ctl('status', user='nobody', timeout=20, check=0)
    del d.config['control']['allowed_users']

    # And taken back again.
    del d.config['control']['allowed_groups']
    reload(d)
    r = d.ctl('status', user='nobody', timeout=20, check=4)
    assert 'permission denied' in r.stderr, r.stderr


# -- 3. protocol abuse -------------------------------------------------------------

def test_protocol_errors_keep_or_close_the_connection(db, daemon_factory):
    d = daemon_factory(db.server, db.name, {'control': {'request_timeout_ms': 500}})

    with Raw(d.socket) as c:
        assert error_code(c.request(b'{"v":1,"cmd":\n')) == 'bad_request'
        ok = c.request(STATUS)            # same connection, still usable
        assert ok['ok'] is True and 'daemon' in ok['result'], ok
        assert error_code(c.request(b'{"v":1,"cmd":"frobnicate"}\n')) == 'unknown_command'
        assert error_code(c.request(b'{"v":99,"cmd":"status"}\n')) == 'unsupported_version'
        assert error_code(c.request(b'{"v":1,"cmd":"status","bogus":1}\n')) == 'bad_request'
        assert error_code(c.request(b'[1,2]\n')) == 'bad_request'
        assert c.request(STATUS)['ok'] is True

    # Pipelined requests: one answer each, in order.
    with Raw(d.socket) as c:
        c.send(STATUS + b'{"v":1,"cmd":"nope"}\n' + STATUS)
        assert c.read_line()['ok'] is True
        assert error_code(c.read_line()) == 'unknown_command'
        assert c.read_line()['ok'] is True

    # Requests then a half-close (what `socat` or `nc -N` do): still answered.
    with Raw(d.socket) as c:
        c.send(STATUS + STATUS)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_line()['ok'] is True
        assert c.read_line()['ok'] is True
        assert c.closed_by_peer(5)

    # The limit is on the line without its newline: 65536 bytes pass...
    limit = 65536
    with Raw(d.socket) as c:
        line = STATUS[:-1] + b' ' * (limit - len(STATUS) + 1)
        assert len(line) == limit
        assert c.request(line + b'\n')['ok'] is True
        # ... and 65537 do not.
        c.send(line + b' \n')
        assert error_code(c.read_line()) == 'too_large'
        assert c.closed_by_peer(5)

    # A line too long: refused, then the connection is closed.
    with Raw(d.socket) as c:
        c.send(b'x' * 70000)
        assert error_code(c.read_line()) == 'too_large'
        assert c.closed_by_peer(5), 'connection left open after too_large'

    # Half a request: a timeout reply after request_timeout_ms, then closed.
    with Raw(d.socket) as c:
        sent = time.monotonic()
        c.send(b'{"v":1,"cmd":"sta')
        assert error_code(c.read_line(timeout=5)) == 'timeout'
        took = time.monotonic() - sent
        assert 0.3 <= took <= 2.0, f'timeout reply after {took:.2f}s (want ~0.5s)'
        assert c.closed_by_peer(5), 'connection left open after the timeout reply'

    # A request dribbled in byte by byte: reads do not extend the deadline.
    with Raw(d.socket) as c:
        sent = time.monotonic()
        for byte in STATUS:
            try:
                c.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - sent > 2:
                break
        assert error_code(c.read_line(timeout=5)) == 'timeout'
        assert c.closed_by_peer(5)

    # Idle: closed after the timeout, without a word.
    with Raw(d.socket) as c:
        opened = time.monotonic()
        assert c.closed_by_peer(5), 'an idle connection was kept open'
        took = time.monotonic() - opened
        assert 0.3 <= took <= 2.5, f'idle connection closed after {took:.2f}s'
        assert c.buf == b'', c.buf

    d.ctl('status', check=0)


def test_clients_that_leave_before_their_answer(db, daemon_factory):
    d = daemon_factory(db.server, db.name)
    deadline = time.monotonic() + 20
    for i in range(200):
        s = connect(d.socket, deadline)
        try:
            s.sendall(STATUS * (1 + i % 3))
        except (BrokenPipeError, ConnectionResetError):
            # On a loaded machine the clients that left have not all been
            # reaped yet: past control.max_clients the daemon answers
            # "busy" and closes, before this client has written it all.
            pass
        if i % 2:
            time.sleep(0.002)           # some leave mid-answer, some before
        s.close()
    assert d.alive()
    assert d.ctl_json('status')['daemon']['pid'] == d.pid
    with Raw(d.socket) as c:
        assert c.request(STATUS)['ok'] is True


def test_client_that_never_reads_is_dropped(db, daemon_factory):
    d = daemon_factory(db.server, db.name, {'control': {'request_timeout_ms': 500}})
    with Raw(d.socket) as c:
        # Many requests in one go, and never a read: the replies pile up
        # until the daemon cannot write any more.
        c.sock.setblocking(False)
        pending = STATUS * 4000
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            try:
                pending = pending[c.sock.send(pending):]
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        wait_for(lambda: 'did not read its reply' in d.current_log(), 15,
                 what='the daemon to drop the client that does not read')
        # Everybody else is still served meanwhile.
        d.ctl('status', check=0, timeout=10)
        c.sock.setblocking(True)
        # What was written before the drop drains, then EOF.
        c.buf = b''
        assert c.closed_by_peer(10), 'the non-reading client is still connected'
    d.ctl('status', check=0, timeout=10)


def test_flood_of_connections_gets_busy_and_jobs_go_on(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=20000)
    d = daemon_factory(db.server, db.name, dict(SMALL_BATCHES, control={
        'max_clients': 16, 'request_timeout_ms': 20000}))
    counter_job(conn, 'walker', pause_ms=1)
    wait_for(lambda: job_row(conn, 'walker')['batches'] >= 2, 30, what='some batches')

    flood = []
    sel = selectors.DefaultSelector()
    try:
        deadline = time.monotonic() + 20
        for _ in range(300):
            flood.append(connect(d.socket, deadline))
        scanned_at_flood = job_row(conn, 'walker')['rows_scanned']

        replies = {}
        for s in flood:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        collect_until = time.monotonic() + 3
        while time.monotonic() < collect_until:
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    chunk = b''
                replies[s] = replies.get(s, b'') + chunk
                if not chunk:
                    sel.unregister(s)
        busy = silent = 0
        for s in flood:
            data = replies.get(s, b'')
            if not data:
                silent += 1
                continue
            line = data.split(b'\n', 1)[0]
            assert error_code(json.loads(line)) == 'busy', line
            busy += 1
        assert (busy, silent) == (300 - 16, 16), f'busy {busy}, held {silent}'

        # The held connections fill every slot: backfillctl is told busy.
        r = d.ctl('status', timeout=20)
        assert r.returncode == 1 and 'busy' in r.stderr, (r.returncode, r.stderr)
        # ... and the job keeps walking all along.
        wait_for(lambda: job_row(conn, 'walker')['rows_scanned'] > scanned_at_flood, 15,
                 what='progress while the flood is held')
        assert d.alive()
    finally:
        sel.close()
        for s in flood:
            s.close()
    wait_for(lambda: d.ctl('status', timeout=10).returncode == 0, 10,
             what='backfillctl status to work after the flood')


# -- 4. backfillctl exit statuses ----------------------------------------------------

def test_backfillctl_exit_statuses(db, daemon_factory, tmp_path):
    r = ctl_raw('-s', str(tmp_path / 'nodir' / 'ctl.sock'), 'status')
    assert r.returncode == 3 and 'daemon not running' in r.stderr, (r.returncode, r.stderr)

    # A socket file with nobody listening: a crashed daemon's.
    stale = tmp_path / 'stale.sock'
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    assert stat.S_ISSOCK(os.lstat(stale).st_mode)
    r = ctl_raw('-s', str(stale), 'status')
    assert r.returncode == 3 and 'daemon not running' in r.stderr, (r.returncode, r.stderr)

    r = ctl_raw('-s', str(stale), 'frobnicate')
    assert r.returncode == 2 and 'unknown command' in r.stderr, (r.returncode, r.stderr)
    # Refused before any connection: a missing socket would give 3.
    r = ctl_raw('-s', str(tmp_path / 'nodir' / 'ctl.sock'), 'set', 'somejob', 'bogus=1')
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'bogus' in r.stderr, r.stderr

    d = daemon_factory(db.server, db.name)
    r = d.ctl('status', 'nosuchjob', check=5)
    assert 'nosuchjob' in r.stderr, r.stderr
    d.ctl('status', check=0)


# -- 5. socket activation --------------------------------------------------------------

def test_socket_activation(db, daemon_factory, tmp_path):
    d = daemon_factory(db.server, db.name, start=False)
    missing = tmp_path / 'no-such-dir' / 'ctl.sock'
    d.config['control']['socket'] = str(missing)   # only the passed socket can work
    activated = d.socket                            # where "systemd" listens
    with socket_activated(d, activated):
        r = d.ctl('status', socket=activated, check=0)
        assert r.stdout.strip()
        assert d.ctl_json('status', socket=activated)['daemon']['pid'] == d.pid
        assert not missing.parent.exists()
        assert d.stop() == 0
        assert stat.S_ISSOCK(os.lstat(activated).st_mode), 'the activated socket was unlinked'


