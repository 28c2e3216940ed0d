"""The same logical change made four ways (backfilld with any number of
slices, one UPDATE, a PL/pgSQL loop, an OFFSET loop), each on a fresh copy
of the data.

Each function returns a dict with at least `seconds`; the table must be a
fresh copy (Cluster.fresh_table) with amount_cents still NULL.
"""

import re
import subprocess
import tempfile
import time

from cluster import SET_CLAUSE, job_seconds, schedule, wait_finished
from procstat import cluster_cpu_s, memory_kib, peak_rss_kib, thread_cpu_s
from pgserver import PG_BIN


def backfilld(cluster, daemon, table, name, settings=None, timeout=3600, slices=None):
    """A job row, walked by the daemon to the end (default settings,
    throttling on; `slices` ranges at once, None: the configuration's
    engine.slices, 1). Time: from the INSERT to the job's end, database
    time. peak_rss_kib is the daemon's peak during this run alone."""
    conn = cluster.conn
    log_from = daemon.log_size()
    daemon.reset_peak_rss()
    rss_start = memory_kib(daemon.pid).get('VmRSS')
    daemon_cpu = thread_cpu_s(daemon.pid)
    db_cpu = cluster_cpu_s(cluster.postmaster_pid())
    wal = cluster.wal_lsn()
    columns = {} if slices is None else {'slices': slices}
    schedule(conn, name, table, settings=settings, **columns)
    wait_finished(conn, [name], timeout)
    result = {
        'seconds': job_seconds(conn, name),
        'daemon_cpu_s': thread_cpu_s(daemon.pid) - daemon_cpu,
        'db_cpu_s': cluster_cpu_s(cluster.postmaster_pid()) - db_cpu,
        'wal_bytes': cluster.wal_bytes_since(wal),
        'peak_rss_kib': peak_rss_kib(daemon.pid),
        'rss_start_kib': rss_start,
        'ranges': conn.execute('SELECT count(*) FROM backfill.slices s JOIN backfill.jobs j '
                               'ON j.id = s.job_id WHERE j.name = %s', (name,)).fetchone()[0],
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


# The application_name of each method's session (WaitSampler samples them).
SINGLE_UPDATE_APP = 'bench single update'
TWO_UPDATES_APP = 'bench two updates'
PLPGSQL_APP = 'bench plpgsql loop'
OFFSET_APP = 'bench offset loop'


def single_update(cluster, table):
    """One UPDATE of the whole table: the speed limit, and the lock hog.
    Its database CPU and WAL are read outside the timing, for contrast."""
    with cluster.connect() as conn:
        conn.execute(f"SET application_name = '{SINGLE_UPDATE_APP}'")
        db_cpu = cluster_cpu_s(cluster.postmaster_pid())
        wal = cluster.wal_lsn()
        started = time.perf_counter()
        conn.execute(f'UPDATE {table} SET {SET_CLAUSE}')
        seconds = time.perf_counter() - started
        return {'seconds': seconds,
                'db_cpu_s': cluster_cpu_s(cluster.postmaster_pid()) - db_cpu,
                'wal_bytes': cluster.wal_bytes_since(wal)}


def two_updates(cluster, table, rows):
    """Two UPDATEs at once, each of half the key range, on two connections:
    what this machine gives two writers of the same table at best, the
    ceiling for backfilld with 2 slices."""
    import threading
    halves = [f'id <= {rows // 2}', f'id > {rows // 2}']
    errors = []
    conns = [cluster.connect() for _ in halves]
    for conn in conns:
        conn.execute(f"SET application_name = '{TWO_UPDATES_APP}'")

    def run(conn, where):
        try:
            conn.execute(f'UPDATE {table} SET {SET_CLAUSE} WHERE {where}')
        except Exception as exc:  # raised below, not lost in the thread
            errors.append(exc)

    db_cpu = cluster_cpu_s(cluster.postmaster_pid())
    wal = cluster.wal_lsn()
    threads = [threading.Thread(target=run, args=(c, w)) for c, w in zip(conns, halves)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for conn in conns:
        conn.close()
    if errors:
        raise errors[0]
    return {'seconds': seconds,
            'db_cpu_s': cluster_cpu_s(cluster.postmaster_pid()) - db_cpu,
            'wal_bytes': cluster.wal_bytes_since(wal)}


def plpgsql_loop(cluster, table, batch_size):
    """A server-side keyset loop committing every batch: the best a
    hand-written loop can do (no round trips at all)."""
    with cluster.connect() as conn:
        conn.execute(f"SET application_name = '{PLPGSQL_APP}'")
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
                              cluster.primary.conninfo('postgres')
                              + f" application_name='{OFFSET_APP}'", '-f', script.name],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             check=True)
        seconds = time.perf_counter() - started
    return {'seconds': seconds,
            'statement_ms': [float(ms) for ms in TIMING.findall(out.stdout)]}
