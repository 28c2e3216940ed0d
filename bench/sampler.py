"""A background poller: one query every few milliseconds on its own
connection, keeping the largest value it returned."""

import threading
import time


class MaxSampler:
    """Runs `query` (one row, one number or NULL) every interval_s until
    stopped; `peak` is the largest value seen, `samples` how many ran."""

    def __init__(self, cluster, query, interval_s=0.01):
        self.cluster = cluster
        self.query = query
        self.interval_s = interval_s
        self.peak = 0.0
        self.samples = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        if self.error is not None and exc[0] is None:
            raise RuntimeError(f'sampler query failed: {self.error}')

    def _run(self):
        try:
            with self.cluster.connect() as conn:
                conn.execute("SET application_name = 'bench sampler'")
                while not self._stop.is_set():
                    value = conn.execute(self.query).fetchone()[0]
                    self.samples += 1
                    if value is not None and float(value) > self.peak:
                        self.peak = float(value)
                    time.sleep(self.interval_s)
        except Exception as e:  # reported by __exit__
            self.error = e


# The longest wait, in ms, of an application session (pgbench) on a lock
# held by `holder` (an application_name pattern).
APP_LOCK_WAIT_MS = """
SELECT max(extract(epoch FROM clock_timestamp() - l.waitstart) * 1000)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.application_name = 'pgbench'
  AND EXISTS (SELECT FROM pg_stat_activity b
              WHERE b.pid = ANY (pg_blocking_pids(l.pid))
                AND b.application_name LIKE '{holder}')
"""

# Bytes the furthest-behind standby has still to replay.
REPLAY_LAG_BYTES = """
SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) FROM pg_stat_replication
"""
