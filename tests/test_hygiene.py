"""Resource hygiene: a daemon that runs jobs for weeks must not grow.

A thousand jobs go through one daemon, in waves, four at a time (each job
claims its row, opens its own connection, walks, verifies and ends). After
the first wave the daemon's file descriptors, its connections to the server
and its memory are counted; after the last wave they must be the same, give
or take what a wave in flight may hold. A leak of one descriptor, one
connection or one PGresult per job would show a thousand times over.
"""

import os
import time
from pathlib import Path

from daemon import insert_job, wait_for

JOBS = int(os.environ.get("BACKFILLD_HYGIENE_JOBS", 1000))
WAVE = min(100, JOBS)
TABLES = 4


def fd_count(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def rss_kib(pid):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0


def server_connections(conn):
    return conn.execute("SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'backfilld%'").fetchone()[0]


def settle(conn, daemon, names, timeout):
    """Waits until the named jobs succeeded, then until only the daemon's
    lasting connections (listener, monitor) are left."""
    def done():
        rows = conn.execute("SELECT state, count(*) FROM backfill.jobs WHERE name = ANY(%s) "
                            'GROUP BY state', (names,)).fetchall()
        states = dict(rows)
        bad = {s: n for s, n in states.items() if s not in ('succeeded', 'pending', 'running')}
        assert not bad, f'jobs ended badly: {bad}'
        return states.get('succeeded', 0) == len(names)
    wait_for(done, timeout, interval=0.1, what=f'{len(names)} jobs to succeed')
    wait_for(lambda: server_connections(conn) <= 2, 30,
             what='the job connections to close')


def test_a_thousand_jobs_leave_no_descriptor_connection_or_memory_behind(db, daemon_factory):
    conn = db.conn
    for t in range(TABLES):
        conn.execute(f'CREATE TABLE t{t} (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0)')
        conn.execute(f'INSERT INTO t{t} (id) SELECT generate_series(1, 20)')
    daemon = daemon_factory(db.server, db.name, overrides={
        'engine': {'max_jobs': 4, 'poll_interval_ms': 200},
        # Per-batch debug lines for a thousand jobs would only slow this down.
        'log': {'level': os.environ.get('BACKFILLD_HYGIENE_LOG', 'info')}})
    pid = daemon.pid

    samples = []
    for wave in range(JOBS // WAVE):
        names = [f'job-{wave}-{i}' for i in range(WAVE)]
        with conn.transaction():
            for i, name in enumerate(names):
                insert_job(conn, name=name, table_name=f't{i % TABLES}', set_clause='n = n + 1')
        settle(conn, daemon, names, timeout=300)
        samples.append((fd_count(pid), server_connections(conn), rss_kib(pid)))
        print(f'after wave {wave + 1}: {samples[-1][0]} fds, {samples[-1][1]} server '
              f'connections, {samples[-1][2]} KiB resident')

    # Every row was updated by every job on its table, exactly once each.
    for t in range(TABLES):
        counts = conn.execute(f'SELECT min(n), max(n) FROM t{t}').fetchone()
        assert counts == (JOBS // TABLES, JOBS // TABLES), (t, counts)

    first, last = samples[0], samples[-1]
    assert last[0] <= first[0], f'file descriptors grew from {first[0]} to {last[0]}'
    assert last[1] <= first[1], f'server connections grew from {first[1]} to {last[1]}'
    # Memory: allocator caches settle after the first waves; a leak of even
    # a kilobyte per job would add a megabyte over the last seven hundred.
    # Not under AddressSanitizer, whose quarantine holds freed memory back
    # (its leak check at exit covers leaks there).
    if 'libasan' not in Path(f'/proc/{pid}/maps').read_text():
        growth = last[2] - max(s[2] for s in samples[:3])
        assert growth < 1024, f'resident memory grew by {growth} KiB over {JOBS - 3 * WAVE} jobs'
    assert daemon.alive()
