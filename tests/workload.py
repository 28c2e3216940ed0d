"""Tables, checks and application load shared by the daemon tests.

Every backfill in these tests increments a counter column, so that "each
row exactly once" is a plain query: every counter is 1.
"""

import contextlib
import random
import threading

# A per-row pause (milliseconds) to make batches take a while, so that kills,
# pauses and restarts land in the middle of a walk.
PAUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION test_pause(ms float8) RETURNS int
LANGUAGE sql VOLATILE AS $$ SELECT 0 FROM pg_sleep(ms / 1000.0) $$
"""

# Batch settings that make a walk many small batches.
SMALL_BATCHES = {'batch': {'size': 50, 'size_min': 50, 'size_max': 50}}


def counter_table(conn, table='items', rows=2000, key='bigint'):
    """A table of `rows` rows with a bigint key 1..rows and a counter at 0."""
    conn.execute(PAUSE_FUNCTION)
    conn.execute(f'CREATE TABLE {table} (id {key} PRIMARY KEY, '
                 f'payload text, counter int NOT NULL DEFAULT 0)')
    conn.execute(f"INSERT INTO {table} (id, payload) "
                 f"SELECT g, 'row ' || g FROM generate_series(1, %s) g", (rows,))
    conn.execute(f'ANALYZE {table}')


def counter_job(conn, name, table='items', pause_ms=0.0, **extra):
    """A job that adds 1 to every row's counter (slowly, with pause_ms)."""
    from daemon import insert_job
    set_clause = 'counter = counter + 1'
    if pause_ms:
        set_clause += f' + test_pause({pause_ms})'
    return insert_job(conn, name=name, table_name=table, set_clause=set_clause, **extra)


def replace_table(db, table='items'):
    """What a careless migration does under a running job: the table
    renamed away (to TABLE_old) and a copy created under its name, every
    counter at 0, in one transaction."""
    with db.connect(autocommit=False) as ddl:
        ddl.execute(f'ALTER TABLE {table} RENAME TO {table}_old')
        ddl.execute(f'ALTER TABLE {table}_old RENAME CONSTRAINT {table}_pkey TO {table}_old_pkey')
        ddl.execute(f'CREATE TABLE {table} (LIKE {table}_old INCLUDING ALL)')
        ddl.execute(f'INSERT INTO {table} SELECT id, payload, 0 FROM {table}_old')
        ddl.commit()


def counters(conn, table='items'):
    """{counter value: number of rows}."""
    return dict(conn.execute(
        f'SELECT counter, count(*) FROM {table} GROUP BY counter').fetchall())


def assert_each_row_once(conn, table='items', rows=None):
    seen = counters(conn, table)
    total = sum(seen.values())
    assert set(seen) == {1}, f'{table}: rows by counter value {seen} (want every row at 1)'
    if rows is not None:
        assert total == rows, f'{table}: {total} rows, want {rows}'


def wait_succeeded(conn, name, timeout=60):
    """Waits for the job to end and fails with its last_error unless it succeeded."""
    from daemon import wait_job_state
    row = wait_job_state(conn, name, {'succeeded', 'failed', 'cancelled'}, timeout=timeout)
    assert row['state'] == 'succeeded', f"job {name} ended {row['state']}: {row['last_error']}"
    return row


def steer(conn, name, state, min_batches=2):
    """After a few batches, sets the job's state with SQL as an operator
    would, and returns its row once the daemon has let go of it."""
    from daemon import job_row, wait_for
    wait_for(lambda: job_row(conn, name)['batches'] >= min_batches, 30, what='some batches')
    conn.execute('UPDATE backfill.jobs SET state = %s WHERE name = %s', (state, name))
    return wait_for(lambda: (row := job_row(conn, name))['owner'] is None and row, 10,
                    what=f'the lease to be released on {state}')


@contextlib.contextmanager
def login_role(server, role):
    """A plain login role on server (not superuser, no pg_monitor) for the
    block; dropped afterwards, even on failure. Use it from a fixture
    requested before `db`, so the role outlives the test's database."""
    with server.connect('postgres') as conn:
        conn.execute(f'DROP ROLE IF EXISTS {role}')
        conn.execute(f'CREATE ROLE {role} LOGIN')
    try:
        yield role
    finally:
        with server.connect('postgres') as conn:
            conn.execute(f'DROP ROLE IF EXISTS {role}')


@contextlib.contextmanager
def application(db, step, sessions=1, seed=0):
    """The application writing while a backfill runs: step(conn, rng) in a
    loop, on `sessions` connections of its own, for as long as the
    with-block runs. Then fails the test with any error a session hit."""
    stop, errors = threading.Event(), []

    def run(session_seed):
        conn = db.connect()
        rng = random.Random(session_seed)
        try:
            while not stop.is_set():
                step(conn, rng)
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(seed + n,)) for n in range(sessions)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
