"""Control socket abuse: oversized and endless requests, thousands of
connections, clients that never read a huge reply, slowloris, malformed
bytes.  Throughout, the daemon's memory stays bounded, backfillctl status
round trips stay prompt, refused clients get a clear error where the
protocol allows one, and the job keeps walking.

(The basic protocol errors, the exact request limit, a 300-connection flood
and a client that never reads a small reply are in test_control_socket.py.)
"""

import json
import os
import socket
import subprocess
import threading
import time

from daemon import BACKFILLCTL, job_row, wait_for
from test_control_socket import Raw, connect, error_code
from workload import SMALL_BATCHES, counter_job, counter_table

STATUS = b'{"v":1,"cmd":"status"}\n'
MAX_CLIENTS = 16
TIMEOUT_MS = 1500
MIB = 1024 * 1024
# Memory the daemon may keep after an abuse, over what it had before. Under
# AddressSanitizer freed memory sits in a quarantine (256 MiB by default).
RSS_SLACK = 20 * MIB
RSS_SLACK_ASAN = 400 * MIB
# A status round trip on a loaded 2-core machine, with backfillctl's start.
PROMPT_S = 5.0


# -- helpers -------------------------------------------------------------------

def rss(pid):
    """VmRSS of pid, in bytes."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError(f'no VmRSS for {pid}')


def open_fds(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def sanitized(pid):
    with open(f'/proc/{pid}/maps') as f:
        return 'libasan' in f.read()


def rss_slack(d):
    return RSS_SLACK_ASAN if sanitized(d.pid) else RSS_SLACK


def start(db, daemon_factory, paused_jobs=0, **control):
    """A daemon (max_clients 16, request timeout 1.5 s) walking a slow job,
    with paused_jobs more jobs (a long last_error each) to make status big;
    returns it once the walk is under way, with status warmed up."""
    conn = db.conn
    counter_table(conn, rows=100000)
    d = daemon_factory(db.server, db.name, dict(SMALL_BATCHES, control=dict(
        {'max_clients': MAX_CLIENTS, 'request_timeout_ms': TIMEOUT_MS}, **control)))
    if paused_jobs:
        conn.execute(
            "INSERT INTO backfill.jobs (name, table_name, set_clause, state, last_error) "
            "SELECT 'parked job ' || g || repeat('.', 200), 'items', 'counter = counter', "
            "'paused', repeat('a long reason ', 60) FROM generate_series(1, %s) g",
            (paused_jobs,))
    counter_job(conn, 'walker', pause_ms=1)
    wait_for(lambda: job_row(conn, 'walker')['batches'] >= 2, 30, what='the walk to start')
    # Warm up: the first big status allocates what every later one reuses.
    for _ in range(3):
        d.ctl('status', '--json', check=0, timeout=30)
    return d


class Probe:
    """backfillctl status --json in a loop on a thread, each round trip timed."""

    def __init__(self, d, *args):
        self.d = d
        self.args = args or ('status', '--json')
        self.results = []          # (seconds, returncode, stderr)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                r = subprocess.run([str(BACKFILLCTL), '-s', str(self.d.socket), *self.args],
                                   stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, timeout=30, env=self.d.env())
                code, err = r.returncode, r.stderr.strip()
                if code == 0:
                    json.loads(r.stdout)
            except subprocess.TimeoutExpired:
                code, err = 'hung', 'no answer within 30 s'
            self.results.append((time.monotonic() - began, code, err))
            self.stop.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)

    def slowest(self):
        return max(t for t, _, _ in self.results)

    def check(self, allow_busy=False):
        """At least a few round trips, every one prompt, and every one ok
        (or, with allow_busy, refused as busy: a clear error)."""
        assert len(self.results) >= 3, f'only {len(self.results)} status round trips'
        assert self.slowest() < PROMPT_S, (
            f'slowest status round trip {self.slowest():.2f}s: {self.results}')
        for took, code, err in self.results:
            if allow_busy and code == 1 and 'busy' in err:
                continue
            assert code == 0, f'status failed ({code}) after {took:.2f}s: {err}'
        return self.slowest()


def progress(conn):
    return job_row(conn, 'walker')['rows_scanned']


def assert_walks_on(conn, since):
    wait_for(lambda: progress(conn) > since or
             job_row(conn, 'walker')['state'] == 'succeeded', 20,
             what='the walker to make progress')


def assert_bounded(d, before, what):
    after = rss(d.pid)
    print(f'{what}: VmRSS {before // 1024} kB -> {after // 1024} kB')
    assert after - before <= rss_slack(d), (
        f'{what}: VmRSS {before // 1024} kB before, {after // 1024} kB after')
    return after


def stream(path, total, chunk, pause=0.0):
    """Sends up to total bytes of 'x' (no newline) in chunks; returns
    (bytes sent, the first response line or None)."""
    sock = connect(path, time.monotonic() + 10)
    sock.settimeout(10)
    sent = 0
    block = b'x' * chunk
    try:
        while sent < total:
            try:
                sent += sock.send(block)
            except (BrokenPipeError, ConnectionResetError):
                break
            except socket.timeout:
                break
            if pause:
                time.sleep(pause)
        data = b''
        try:
            while b'\n' not in data:
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except (ConnectionResetError, socket.timeout):
            pass
        return sent, (json.loads(data.split(b'\n', 1)[0]) if b'\n' in data else None)
    finally:
        sock.close()


# -- oversized and endless requests ------------------------------------------------

def test_oversized_and_endless_requests_are_cut_off(db, daemon_factory):
    conn = db.conn
    d = start(db, daemon_factory)
    before, fds = rss(d.pid), open_fds(d.pid)
    walked = progress(conn)
    results = []

    def firehose():
        results.append(('firehose', stream(d.socket, 100 * MIB, MIB)))

    def drip():
        # Endless but slow: 200 bytes every 50 ms never reach the limit
        # before the request timeout does.
        results.append(('drip', stream(d.socket, 10 * MIB, 200, pause=0.05)))

    with Probe(d) as probe:
        threads = [threading.Thread(target=firehose) for _ in range(6)]
        threads += [threading.Thread(target=drip) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # Over the limit by a byte, then one more firehose: still cut off.
        with Raw(d.socket) as c:
            c.send(b'{"v":1,"cmd":"status"}' + b' ' * (65536 - 22 + 1) + b'\n')
            assert error_code(c.read_line()) == 'too_large'
            assert c.closed_by_peer(5)
        firehose()

    for kind, (sent, reply) in results:
        if kind == 'firehose':
            # The daemon stops reading at the limit; what it took is the
            # limit plus the socket buffers, far below the 100 MiB offered.
            assert sent < 16 * MIB, f'the daemon read {sent} bytes of an oversized request'
            assert reply is not None and error_code(reply) == 'too_large', reply
        else:
            assert reply is not None and error_code(reply) == 'timeout', reply
            assert sent < 1 * MIB, sent
    print(f'oversized: slowest status {probe.check():.2f}s; sent '
          f'{sorted(sent for _, (sent, _) in results)}')
    assert_bounded(d, before, 'oversized requests')
    wait_for(lambda: open_fds(d.pid) <= fds, 10, what='the daemon to close every client')
    assert_walks_on(conn, walked)
    assert d.alive()


# -- thousands of connections ----------------------------------------------------------

def test_thousands_of_connections_held_and_churned(db, daemon_factory):
    conn = db.conn
    d = start(db, daemon_factory)
    before, fds = rss(d.pid), open_fds(d.pid)
    walked = progress(conn)

    # Held: 2000 at once, far more than max_clients. The first ones get a
    # slot (and are dropped when idle past the request timeout), every
    # other one a clear "busy" and the door.
    held = []
    try:
        deadline = time.monotonic() + 30
        for _ in range(2000):
            held.append(connect(d.socket, deadline))
        busy_reply = ctl_took = None
        began = time.monotonic()
        r = d.ctl('status', timeout=30)
        ctl_took = time.monotonic() - began
        assert ctl_took < PROMPT_S, f'backfillctl took {ctl_took:.2f}s during the flood'
        assert r.returncode == 0 or (r.returncode == 1 and 'busy' in r.stderr), (
            r.returncode, r.stderr)
        replies = busy = 0
        for s in held:
            s.settimeout(5)
            try:
                line = b''
                while b'\n' not in line:
                    more = s.recv(4096)
                    if not more:
                        break
                    line += more
            except (ConnectionResetError, socket.timeout):
                continue
            if b'\n' in line:
                replies += 1
                busy_reply = json.loads(line.split(b'\n')[0])
                busy += error_code(busy_reply) == 'busy'
        assert busy >= 2000 - MAX_CLIENTS - 2, f'{busy} busy replies of 2000 connections'
        assert 'max_clients' in busy_reply['error']['message'], busy_reply
        assert d.alive()
    finally:
        for s in held:
            s.close()
    assert_walks_on(conn, walked)

    # Churn: connections opened and closed as fast as four threads can,
    # some after sending a request, while backfillctl keeps asking.
    connections = []

    def churn(seconds, seed, send_every):
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            i += 1
            s = connect(d.socket, deadline + 30)
            if send_every and (i + seed) % send_every == 0:
                try:
                    s.send(STATUS)
                except OSError:
                    pass
            s.close()
        connections.append(i)

    # Opened and closed: the slots free up as fast as they fill.
    walked = progress(conn)
    with Probe(d) as probe:
        threads = [threading.Thread(target=churn, args=(3, k, 0)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    probe.check()
    print(f'churn: {sum(connections)} connections in 3 s; slowest status '
          f'{probe.slowest():.2f}s')

    # Opened, a request sent, closed: each request is answered (to nobody)
    # before its slot frees, so the slots fill and backfillctl may be told
    # busy, but promptly, and it gets through often.
    connections.clear()
    with Probe(d) as probe:
        threads = [threading.Thread(target=churn, args=(3, k, 2)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    probe.check(allow_busy=True)
    ok = sum(1 for _, code, _ in probe.results if code == 0)
    print(f'churn with requests: {sum(connections)} connections in 3 s; status {ok} ok of '
          f'{len(probe.results)}, slowest {probe.slowest():.2f}s')
    assert ok >= 1, probe.results
    assert_bounded(d, before, 'thousands of connections')
    wait_for(lambda: open_fds(d.pid) <= fds, 10,
             what=lambda: f'the daemon to close every client ({open_fds(d.pid)} fds, '
                          f'{fds} before)')
    assert_walks_on(conn, walked)
    d.ctl('status', check=0, timeout=30)


# -- clients that never read a huge reply -----------------------------------------------

def test_clients_that_never_read_a_huge_status(db, daemon_factory):
    conn = db.conn
    d = start(db, daemon_factory, paused_jobs=3000)
    size = len(d.ctl('status', '--json', check=0, timeout=30).stdout)
    assert size > 2 * MIB, f'status is only {size} bytes'
    before, fds = rss(d.pid), open_fds(d.pid)
    walked = progress(conn)
    drops = d.current_log().count('did not read its reply')

    sockets = []
    # Another client's own status (one job: the daemon's answer, not
    # backfillctl parsing megabytes, is what is timed).
    with Probe(d, 'status', 'walker', '--json') as probe:
        try:
            for _ in range(4):
                s = connect(d.socket, time.monotonic() + 10)
                s.sendall(STATUS * 20)       # and never a read
                sockets.append(s)
            wait_for(lambda: d.current_log().count('did not read its reply') >= drops + 4, 30,
                     what='the daemon to drop the clients that do not read')
            wait_for(lambda: len(probe.results) >= 3, 30, what='three status round trips')
        finally:
            for s in sockets:
                s.close()
    print(f'huge status ({size} bytes), not read: slowest status {probe.check():.2f}s')
    assert_bounded(d, before, 'non-reading clients of a huge status')
    wait_for(lambda: open_fds(d.pid) <= fds, 10, what='the daemon to close every client')
    assert_walks_on(conn, walked)


# -- slowloris ------------------------------------------------------------------------

def test_slowloris_clients_do_not_starve_the_others(db, daemon_factory):
    conn = db.conn
    d = start(db, daemon_factory)
    before, fds = rss(d.pid), open_fds(d.pid)
    walked = progress(conn)
    stop = threading.Event()
    timeouts = []

    def slowloris():
        # One byte a second, reconnecting whenever the daemon hangs up.
        while not stop.is_set():
            s = connect(d.socket, time.monotonic() + 10)
            data = b''
            try:
                for byte in STATUS:
                    s.send(bytes([byte]))
                    s.settimeout(1.0)
                    try:
                        data += s.recv(4096)
                    except socket.timeout:
                        continue
                    if not data or b'\n' in data or stop.is_set():
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                s.close()
            if b'\n' in data:
                timeouts.append(json.loads(data.split(b'\n')[0]))

    threads = [threading.Thread(target=slowloris) for _ in range(MAX_CLIENTS - 4)]
    with Probe(d) as probe:
        for t in threads:
            t.start()
        time.sleep(6)
        stop.set()
        for t in threads:
            t.join(20)
    print(f'slowloris: slowest status {probe.check():.2f}s, {len(timeouts)} timeouts')
    assert timeouts and all(error_code(r) == 'timeout' for r in timeouts), timeouts[:3]
    assert_bounded(d, before, 'slowloris')
    wait_for(lambda: open_fds(d.pid) <= fds, 10, what='the daemon to close every client')
    assert_walks_on(conn, walked)


# -- malformed bytes ----------------------------------------------------------------------

MALFORMED = {
    'invalid utf-8 in a string': b'{"v":1,"cmd":"status","job":"\xff\xfe"}',
    'invalid utf-8 outside strings': b'{"v":1,"cmd":"status"\xc3}',
    'overlong utf-8': b'{"v":1,"cmd":"status","job":"\xc0\xaf"}',
    'utf-16 surrogate': b'{"v":1,"cmd":"status","job":"\xed\xa0\x80"}',
    'escaped lone surrogate': b'{"v":1,"cmd":"status","job":"\\ud800"}',
    'raw nul byte': b'{"v":1,"cmd":"status"}\x00',
    'nul inside a string': b'{"v":1,"cmd":"status","job":"a\x00b"}',
    'escaped nul': b'{"v":1,"cmd":"status","job":"a\\u0000b"}',
    'control character in job': b'{"v":1,"cmd":"status","job":"a\\u001b[31mb"}',
    'nested arrays at the depth limit': b'[' * 3000 + b']' * 3000,
    'nested arrays in a field': (b'{"v":1,"cmd":"status","job":' + b'[' * 20000
                                 + b']' * 20000 + b'}'),
    'nested objects': b'{"a":' * 10000 + b'1' + b'}' * 10000,
    'unclosed nesting': b'[' * 60000,
    'huge number': b'{"v":1' + b'0' * 60000 + b',"cmd":"status"}',
    'long job name': b'{"v":1,"cmd":"status","job":"' + b'j' * 60000 + b'"}',
    'duplicate keys': b'{"v":1,"cmd":"status","cmd":"pause"}',
    'only whitespace': b' \t ',
    'binary noise': bytes(range(256)).replace(b'\n', b''),
}


def test_malformed_request_lines(db, daemon_factory):
    """Each line is refused with a clear one-line error, on a connection
    that stays good for the next request; one daemon for them all."""
    d = daemon_factory(db.server, db.name, {'control': {'request_timeout_ms': 3000}})
    before = rss(d.pid)
    for what, line in MALFORMED.items():
        assert len(line) <= 65536 and b'\n' not in line, what
        with Raw(d.socket) as c:
            reply = c.request(line + b'\n')
            code = error_code(reply)
            message = reply['error']['message']
            assert code in ('bad_request', 'no_such_job'), (what, reply)
            assert message and len(message) < 2000, (what, message)
            assert not any(ord(ch) < 0x20 for ch in message), (what, message)
            # The connection is still good for the next request.
            assert c.request(STATUS)['ok'] is True, what
        assert d.alive(), what
    assert_bounded(d, before, 'malformed lines')
    d.ctl('status', check=0, timeout=30)
