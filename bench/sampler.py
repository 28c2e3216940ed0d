"""What the bench polls while a backfill runs (with tests/poller.py)."""

from poller import MaxPoller


def max_poller(cluster, query, interval_s=0.01):
    return MaxPoller(cluster.connect, query, interval_s, application_name='bench poller')


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
