"""What a backfill does to the application: pgbench runs a mixed read/write
workload on the table being backfilled, at a fixed rate, and its latency is
compared idle, during backfilld and during one single UPDATE.

The rate is fixed (pgbench -R), so latency includes any queueing behind a
lock or a busy CPU. A phase counts the transactions that were due to start
while it ran, however late they ended: counting by end time would leave out
exactly the ones a lock held back.
"""

import subprocess
import tempfile
import time
from pathlib import Path

from cluster import job_seconds, job_span, schedule, wait_finished
from methods import single_update
from pgserver import PG_BIN
from sampler import APP_LOCK_WAIT_MS, max_poller

CLIENTS = 4
RATE_TPS = 400

# Read a random order, then update another random order: updates of random
# rows are exactly what contends with a backfill's row locks.
SCRIPT = """\\set aid random(1, :nrows)
\\set bid random(1, :nrows)
BEGIN;
SELECT amount, note FROM {table} WHERE id = :aid;
UPDATE {table} SET customer = customer + 1 WHERE id = :bid;
END;
"""


class Pgbench:
    """pgbench in the background for `seconds`, every transaction logged."""

    def __init__(self, cluster, table, rows, seconds):
        self.dir = Path(tempfile.mkdtemp(prefix='bench-pgbench-', dir=cluster.base))
        script = self.dir / 'workload.sql'
        script.write_text(SCRIPT.format(table=table))
        self.args = [str(PG_BIN / 'pgbench'), '-n', '-f', str(script), '-D', f'nrows={rows}',
                     '-c', str(CLIENTS), '-j', '2', '-R', str(RATE_TPS), '-T', str(int(seconds)),
                     '-l', '--log-prefix', str(self.dir / 'tx'),
                     '-h', cluster.primary.host, '-p', str(cluster.primary.port),
                     '-U', cluster.primary.user, 'postgres']
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)     # connected and at its pace before anything starts
        return self

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc.poll() is None:
            self.proc.kill()
        out, _ = self.proc.communicate(timeout=3600)
        if exc[0] is None and self.proc.returncode != 0:
            raise RuntimeError(f'pgbench failed ({self.proc.returncode}):\n{out[-2000:]}')

    def transactions(self):
        """[(scheduled start, end (s since epoch), latency ms)] of every
        transaction (with -R the latency runs from the scheduled start)."""
        out = []
        for log in self.dir.glob('tx*'):
            for line in log.read_text().splitlines():
                f = line.split()
                # client tx latency_us script epoch_s epoch_us [lag_us]
                if len(f) >= 6 and f[2].isdigit():
                    end = int(f[4]) + int(f[5]) / 1e6
                    out.append((end - int(f[2]) / 1e6, end, int(f[2]) / 1000.0))
        return out


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def summarize(transactions, start, end):
    """Latency of the transactions due in [start, end]; TPS of those that
    ended in it (what the application got done meanwhile). latencies_ms
    (every one of them) is for pooled(), which takes it out."""
    inside = [ms for due, _, ms in transactions if start <= due <= end]
    ended = sum(1 for _, done, _ in transactions if start <= done <= end)
    span = max(end - start, 1e-9)
    return {'transactions': len(inside), 'seconds': span, 'tps': ended / span,
            'ended': ended, 'p50_ms': percentile(inside, 50), 'p99_ms': percentile(inside, 99),
            'max_ms': max(inside) if inside else None, 'latencies_ms': inside}


def pooled(results):
    """One phase's rounds as one: percentiles over all their transactions
    (the p99 of a single walk's 1,500 transactions is its 15th worst: one
    unlucky fsync moves it), TPS over their summed time, the longest lock
    wait of any, the median duration; each round's own figures kept."""
    latencies = [ms for r in results for ms in r.pop('latencies_ms')]
    seconds = sum(r['seconds'] for r in results)
    out = {'rounds': len(results), 'transactions': len(latencies), 'seconds': seconds,
           'tps': sum(r['ended'] for r in results) / max(seconds, 1e-9),
           'p50_ms': percentile(latencies, 50), 'p99_ms': percentile(latencies, 99),
           'max_ms': max(latencies) if latencies else None,
           'per_round': results}
    for key in ('backfill_seconds', 'update_seconds'):
        values = [r[key] for r in results if r.get(key) is not None]
        if values:
            out[key] = sorted(values)[len(values) // 2]
    waits = [r['max_app_lock_wait_ms'] for r in results if 'max_app_lock_wait_ms' in r]
    if waits:
        out['max_app_lock_wait_ms'] = max((w for w in waits if w is not None), default=None)
    return out


def idle(cluster, table, rows, seconds):
    # The lock poller runs here too: the phases compared carry the same
    # probe load (a pg_locks read every 10 ms), finding nothing here.
    with max_poller(cluster, APP_LOCK_WAIT_MS.format(holder='backfilld job %')):
        with Pgbench(cluster, table, rows, seconds + 1) as bench:
            start = time.time()
    return summarize(bench.transactions(), start, start + seconds)


def during_backfilld(cluster, daemon, table, rows, seconds_hint, name, settings=None):
    conn = cluster.conn
    with max_poller(cluster, APP_LOCK_WAIT_MS.format(holder='backfilld job %')) as locks:
        with Pgbench(cluster, table, rows, seconds_hint + 3) as bench:
            schedule(conn, name, table, settings=settings)
            wait_finished(conn, [name], timeout=3600)
    start, end = job_span(conn, name)
    result = summarize(bench.transactions(), start, end)
    result['backfill_seconds'] = job_seconds(conn, name)
    result['max_app_lock_wait_ms'] = locks.peak
    result['lock_polls'] = locks.polls
    return result


def during_single_update(cluster, table, rows, seconds_hint):
    with max_poller(cluster, APP_LOCK_WAIT_MS.format(holder='bench single update')) as locks:
        with Pgbench(cluster, table, rows, seconds_hint + 3) as bench:
            start = time.time()
            outcome = single_update(cluster, table)
            end = time.time()
    result = summarize(bench.transactions(), start, end)
    result['update_seconds'] = outcome.get('seconds')
    result['max_app_lock_wait_ms'] = locks.peak
    return result
