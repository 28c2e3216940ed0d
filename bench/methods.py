"""The same logical change made four ways, each on a fresh copy of the data.

Each function returns a dict with at least `seconds`; the table must be a
fresh copy (Cluster.fresh_table) with amount_cents still NULL.
"""

import re
import subprocess
import tempfile
import time

from cluster import SET_CLAUSE, job_seconds, schedule, wait_finished
from procstat import cluster_cpu_s, peak_rss_kib, thread_cpu_s
from pgserver import PG_BIN


def backfilld(cluster, daemon, table, name, settings=None, timeout=3600):
    """A job row, walked by the daemon to the end (default settings,
    throttling on). Time: from the INSERT to the job's end, database time."""
    conn = cluster.conn
    log_from = daemon.log_size()
    daemon_cpu = thread_cpu_s(daemon.pid)
    db_cpu = cluster_cpu_s(cluster.postmaster_pid())
    wal = cluster.wal_lsn()
    schedule(conn, name, table, settings=settings)
    wait_finished(conn, [name], timeout)
    result = {
        'seconds': job_seconds(conn, name),
        'daemon_cpu_s': thread_cpu_s(daemon.pid) - daemon_cpu,
        'db_cpu_s': cluster_cpu_s(cluster.postmaster_pid()) - db_cpu,
        'wal_bytes': cluster.wal_bytes_since(wal),
        'peak_rss_kib': peak_rss_kib(daemon.pid),
    }
    # The last batch line may trail the state change by a moment.
    deadline = time.monotonic() + 5
    while True:
        batches = daemon.batches(name, since=log_from)
        if sum(b[1] for b in batches) >= cluster.rows_in(table) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    result['batches'] = batches
    return result


def single_update(cluster, table):
    """One UPDATE of the whole table: the speed limit, and the lock hog."""
    with cluster.connect() as conn:
        conn.execute("SET application_name = 'bench single update'")
        started = time.perf_counter()
        conn.execute(f'UPDATE {table} SET {SET_CLAUSE}')
        return {'seconds': time.perf_counter() - started}


def plpgsql_loop(cluster, table, batch_size):
    """A server-side keyset loop committing every batch: the best a
    hand-written loop can do (no round trips at all)."""
    with cluster.connect() as conn:
        started = time.perf_counter()
        conn.execute(f'''DO $bench$
DECLARE
  last_id bigint := 0;
  next_id bigint;
BEGIN
  LOOP
    SELECT max(id) INTO next_id
      FROM (SELECT id FROM {table} WHERE id > last_id ORDER BY id LIMIT {int(batch_size)}) page;
    EXIT WHEN next_id IS NULL;
    UPDATE {table} SET {SET_CLAUSE} WHERE id > last_id AND id <= next_id;
    last_id := next_id;
    COMMIT;
  END LOOP;
END
$bench$''')
        return {'seconds': time.perf_counter() - started}


TIMING = re.compile(r'^Time: ([\d.]+) ms', re.M)


def offset_loop(cluster, table, batch_size, rows):
    """What people write first: pages by OFFSET, one autocommit UPDATE each,
    run by psql. Each page re-reads every row before it."""
    pages = (rows + batch_size - 1) // batch_size
    with tempfile.NamedTemporaryFile('w', suffix='.sql', prefix='bench-offset-') as script:
        script.write('\\set ON_ERROR_STOP on\n\\timing on\n')
        for page in range(pages):
            script.write(f'UPDATE {table} SET {SET_CLAUSE} WHERE id IN '
                         f'(SELECT id FROM {table} ORDER BY id '
                         f'LIMIT {int(batch_size)} OFFSET {page * int(batch_size)});\n')
        script.flush()
        started = time.perf_counter()
        out = subprocess.run([str(PG_BIN / 'psql'), '-X', '-q', '-d',
                              cluster.primary.conninfo('postgres'), '-f', script.name],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             check=True)
        seconds = time.perf_counter() - started
    return {'seconds': seconds,
            'statement_ms': [float(ms) for ms in TIMING.findall(out.stdout)]}
