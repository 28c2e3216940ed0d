"""Latencies an operator feels: `backfillctl status` while jobs run, and
the time from scheduling a job to its first committed batch."""

import json
import random
import socket
import subprocess
import time

from cluster import BACKFILLCTL, schedule, wait_finished


def status_round_trip(path):
    """One status request the way backfillctl makes it (connect, one JSON
    line each way, close); returns (ms, jobs running per the reply)."""
    started = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(b'{"v":1,"cmd":"status"}\n')
        reply = b''
        while not reply.endswith(b'\n'):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    ms = (time.perf_counter() - started) * 1000
    body = json.loads(reply)
    if not body.get('ok'):
        raise RuntimeError(f'status refused: {body}')
    running = sum(1 for j in body['result']['jobs'] if j.get('state') == 'running')
    return ms, running


def status_while_jobs_run(cluster, daemon, tables, prefix, interval_s=0.005):
    """Schedules one job per table, then asks for status every interval_s
    until they are all done. Counts only requests answered while every job
    was running."""
    conn = cluster.conn
    names = [f'{prefix}-{i}' for i in range(len(tables))]
    for name, table in zip(names, tables):
        schedule(conn, name, table)
    all_running, any_time, cli_ms = [], [], []
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        ms, running = status_round_trip(daemon.socket)
        any_time.append(ms)
        if running == len(tables):
            all_running.append(ms)
            if len(cli_ms) < 20:
                started = time.perf_counter()
                subprocess.run([str(BACKFILLCTL), '-s', str(daemon.socket), 'status'],
                               stdin=subprocess.DEVNULL, capture_output=True, check=True)
                cli_ms.append((time.perf_counter() - started) * 1000)
        # Whether they are done, every 20th request only: a query at every
        # request would load the server the status query waits for.
        if len(any_time) % 20 == 0 and conn.execute(
                'SELECT count(*) FROM backfill.jobs WHERE name = ANY(%s) '
                "AND state NOT IN ('succeeded', 'failed', 'cancelled')",
                (names,)).fetchone()[0] == 0:
            break
        time.sleep(interval_s)
    wait_finished(conn, names, timeout=60)
    return {'all_running_ms': all_running, 'any_ms': any_time, 'cli_ms': cli_ms}


def pickup(cluster, daemon, table, prefix, samples):
    """From the commit of a job's INSERT to the commit of its first batch,
    both read from the server's commit timestamps (no client clock)."""
    conn = cluster.conn
    out = []
    for i in range(samples):
        # An idle daemon, woken by the INSERT alone (not by a previous end).
        time.sleep(random.uniform(0.05, 0.3))
        name = f'{prefix}-{i}'
        xid = schedule(conn, name, table)
        wait_finished(conn, [name], timeout=60)
        ms = conn.execute(
            f'SELECT extract(epoch FROM pg_xact_commit_timestamp(t.xmin) - '
            f'pg_xact_commit_timestamp(%s::xid)) * 1000 FROM {table} t WHERE id = 1',
            (xid,)).fetchone()[0]
        out.append(float(ms))
    return out
