"""What the bench polls while a backfill runs (with tests/poller.py)."""


from poller import MaxPoller, Poller


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


# What the connections of one run are doing, sampled: on CPU (active, no
# wait event), waiting on a wait event (by type and name), or idle, that is,
# waiting for their client (for backfilld: the round trip and the daemon's
# work between batches).
ACTIVITY = """
SELECT CASE WHEN state <> 'active' THEN 'idle:' || state
            WHEN wait_event_type IS NULL THEN 'CPU'
            ELSE wait_event_type || ':' || wait_event END, count(*)
FROM pg_stat_activity
WHERE application_name = %(name)s OR application_name LIKE %(name)s || ' slice %%'
GROUP BY 1
"""

# 20 samples a second: a profile of some 60 samples per connection from a
# 3-second walk, for a read of shared memory that costs the server next to
# nothing (the bench's own job poll runs every 100 ms for the same reason).
ACTIVITY_INTERVAL_S = 0.05


class WaitSampler(Poller):
    """Counts, every ACTIVITY_INTERVAL_S until the with-block ends, what the
    sessions named application_name (or 'application_name slice N') are
    doing: `counts` maps 'CPU', 'idle:STATE' or 'TYPE:event' to samples.
    Bounded: one connection, one thread, stopped at the end of the block; a
    failing query is raised there."""

    def __init__(self, cluster, application_name):
        super().__init__(cluster.connect, ACTIVITY_INTERVAL_S, 'bench wait sampler')
        self.watched = application_name
        self.counts = {}

    def poll(self, conn):
        for what, n in conn.execute(ACTIVITY, {'name': self.watched}).fetchall():
            self.counts[what] = self.counts.get(what, 0) + n


def wait_spread(counts):
    """'CPU 57%, Lock 29% (extend), IO 14% (WALSync)': the share of the
    samples in each class (the part before ':' of WaitSampler's keys),
    largest first, with the class's most frequent event; and the number of
    samples."""
    total = sum(counts.values())
    per_class, events = {}, {}
    for what, n in counts.items():
        kind, _, event = what.partition(':')
        per_class[kind] = per_class.get(kind, 0) + n
        if event and kind != 'idle':
            seen = events.setdefault(kind, {})
            seen[event] = seen.get(event, 0) + n
    parts = []
    for kind, n in sorted(per_class.items(), key=lambda kv: -kv[1]):
        seen = events.get(kind)
        top = f' ({max(seen, key=seen.get)})' if seen else ''
        parts.append(f'{kind} {100.0 * n / total:.0f}%{top}')
    return ', '.join(parts), total


def lock_share(counts):
    """The share of the samples waiting on a heavyweight lock (type Lock)."""
    total = sum(counts.values())
    return sum(n for what, n in counts.items() if what.startswith('Lock:')) / total
