"""Exactly-once under failover at the worst moment, DDL that changes the
table or its key under a job, and a job row held by someone else."""
import re

import pytest

from daemon import job_row, wait_for, wait_job_state
from pgserver import PgServer
from workload import PAUSE_FUNCTION as PAUSE_SQL, SMALL_BATCHES, assert_each_row_once, \
    counter_job, counter_table, counters, replace_table, wait_succeeded


# -- failover between the last batch and the finish ---------------------------

HOLD_FINISH = """
CREATE TABLE public.test_flags (hold_finish boolean NOT NULL);
INSERT INTO public.test_flags VALUES (true);
CREATE FUNCTION public.test_hold_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'succeeded' AND (SELECT hold_finish FROM public.test_flags) THEN
    PERFORM pg_sleep(120);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_hold_finish BEFORE UPDATE ON backfill.jobs
  FOR EACH ROW EXECUTE FUNCTION public.test_hold_finish();
"""


@pytest.fixture
def failover_pair(pg_base_dir):
    """(primary, standby, dbname): a primary with a database and a streaming
    standby of it; both destroyed after the test."""
    servers = []
    try:
        primary = PgServer(pg_base_dir, name='fo-primary', settings={'wal_sender_timeout': '5s'})
        servers.append(primary)
        primary.init().start()
        primary.create_database('shop')
        standby = PgServer(pg_base_dir, name='fo-standby',
                           settings={'wal_receiver_status_interval': '1s'})
        servers.append(standby)
        standby.init_standby(primary).start()
        yield primary, standby, 'shop'
    finally:
        from conftest import _stop_daemons
        _stop_daemons()
        for server in reversed(servers):
            server.destroy()


def _replayed(primary, standby):
    with primary.connect('postgres') as p, standby.connect('postgres') as s:
        target = p.execute('SELECT pg_current_wal_lsn()').fetchone()[0]
        return wait_for(lambda: s.execute('SELECT pg_last_wal_replay_lsn() >= %s',
                                          (target,)).fetchone()[0], 60,
                        what='the standby to replay the primary')


def test_failover_between_the_last_batch_and_the_finish_loses_no_row(
        failover_pair, daemon_factory):
    primary, standby, dbname = failover_pair
    conn = primary.connect(dbname)
    counter_table(conn, rows=2000)
    conninfo = (f'host={primary.host},{standby.host} port={primary.port},{standby.port} '
                f'user={primary.user} dbname={dbname} target_session_attrs=read-write')
    daemon = daemon_factory(primary, dbname, {
        **SMALL_BATCHES, 'database': {'conninfo': conninfo}, 'engine': {'lease_s': 60}})
    conn.execute(HOLD_FINISH)
    counter_job(conn, 'count', pause_ms=0.2)
    wait_for(lambda: job_row(conn, 'count')['batches'] >= 8, 60, what='some batches')
    # Replication to the standby stops here: it keeps the row as of now.
    _replayed(primary, standby)
    with standby.connect('postgres') as s:
        s.execute("ALTER SYSTEM SET primary_conninfo = ''")
        s.execute('SELECT pg_reload_conf()')
        wait_for(lambda: s.execute('SELECT count(*) = 0 FROM pg_stat_wal_receiver').fetchone()[0],
                 30, what='the standby to stop receiving')
    with standby.connect(dbname) as s:
        behind = s.execute("SELECT s.batches, s.checkpoint FROM backfill.slices s "
                           "JOIN backfill.jobs j ON j.id = s.job_id WHERE j.name = 'count'"
                           ).fetchone()
    # The walk completes on the primary; its finish waits in the trigger.
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
        "AND query LIKE 'SELECT * FROM backfill.slice_end(%'").fetchone(), 120,
        what='the finishing UPDATE to be held')
    assert counters(conn) == {1: 2000}
    conn.close()
    primary.stop(mode='immediate')
    with standby.connect('postgres') as s:
        s.execute('SELECT pg_promote()')
    with standby.connect(dbname) as s:
        s.execute('UPDATE public.test_flags SET hold_finish = false')
        assert behind[0] < 40, behind
        row = wait_succeeded(s, 'count', timeout=120)
        # Every row exactly once on the database that survived.
        assert_each_row_once(s, rows=2000)
        assert row['rows_scanned'] == 2000 and row['batches'] == 40, row
    assert re.search(r'state running -> succeeded', daemon.log())


# -- the table or its key changed under a job ---------------------------------

def _pause_after(conn, name, batches):
    wait_for(lambda: job_row(conn, name)['batches'] >= batches, 60, what='some batches')
    conn.execute("UPDATE backfill.jobs SET state = 'paused' WHERE name = %s", (name,))
    return wait_for(lambda: (row := job_row(conn, name))['owner'] is None and row, 30,
                    what='the job to be let go')


DDL = {
    'new primary key': ['ALTER TABLE items ADD COLUMN id2 bigint',
                        'UPDATE items SET id2 = 100000 - id',
                        'ALTER TABLE items ALTER COLUMN id2 SET NOT NULL',
                        'ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (id2)'],
    'key type changed': ['ALTER TABLE items ALTER COLUMN id TYPE text'],
    'table replaced': ['ALTER TABLE items RENAME TO items_old',
                       'ALTER TABLE items_old RENAME CONSTRAINT items_pkey TO items_old_pkey',
                       'CREATE TABLE items (LIKE items_old INCLUDING ALL)',
                       'INSERT INTO items SELECT id, payload, 0 FROM items_old'],
}


@pytest.mark.parametrize('change', sorted(DDL))
@pytest.mark.parametrize('how', ['resume', 'restart'])
def test_a_job_stops_when_its_table_or_key_changed(db, daemon_factory, change, how):
    conn = db.conn
    counter_table(conn, rows=3000)
    daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'count', pause_ms=0.05)
    if how == 'resume':
        _pause_after(conn, 'count', 5)
    else:
        wait_for(lambda: job_row(conn, 'count')['batches'] >= 5, 60, what='some batches')
        daemon.kill()
    for statement in DDL[change]:
        conn.execute(statement)
    if how == 'resume':
        conn.execute("UPDATE backfill.jobs SET state = 'pending' WHERE name = 'count'")
    else:
        daemon.start().wait_ready(30)
    row = wait_job_state(conn, 'count', {'failed', 'succeeded'}, timeout=90)
    assert row['state'] == 'failed', row
    assert 'the table or its key changed under the job' in row['last_error'], row
    assert 'checkpoint = NULL, upper_bound = NULL, table_oid = NULL' in row['last_error']
    # Nothing was walked after the change: no row done twice, none past the checkpoint.
    table = 'items_old' if change == 'table replaced' else 'items'
    done = conn.execute(f'SELECT count(*) FROM {table} WHERE counter = 1').fetchone()[0]
    assert set(counters(conn, table)) <= {0, 1}
    assert done == row['rows_scanned'] and done < 3000, (done, row)
    if change == 'table replaced':
        assert counters(conn, 'items') == {0: 3000}
    assert re.search(r'state running -> failed: .*the table or its key changed', daemon.log())


def test_a_table_replaced_while_the_job_runs_is_not_walked(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'count', pause_ms=0.05)
    wait_for(lambda: job_row(conn, 'count')['batches'] >= 5, 60, what='some batches')
    replace_table(db)
    row = wait_job_state(conn, 'count', {'failed', 'succeeded'}, timeout=90)
    assert row['state'] == 'failed', row
    assert 'the table or its key changed under the job' in row['last_error'], row
    assert counters(conn, 'items') == {0: 3000}
    assert set(counters(conn, 'items_old')) <= {0, 1}


# -- a job row held by someone else ----------------------------------------------

def _walking_with_short_lock_timeout(db, daemon_factory):
    """A counter job under way whose batches give up on a lock after 200 ms."""
    counter_table(db.conn, rows=2000)
    daemon = daemon_factory(db.server, db.name, {**SMALL_BATCHES,
                                                 'batch': {**SMALL_BATCHES['batch'],
                                                           'lock_timeout_ms': 200}})
    counter_job(db.conn, 'count', pause_ms=0.05)
    wait_for(lambda: job_row(db.conn, 'count')['batches'] >= 3, 60, what='some batches')
    return daemon


def _held_without_redoing(daemon, reason):
    """Status gives the reason, and while the row stays held the job keeps
    looking without redoing a batch (no more lock timeouts)."""
    wait_for(lambda: any(reason in r for j in daemon.ctl_json('status')['jobs']
                         for r in j['throttle_reasons']), 30,
             what=f'status to say "{reason}"')
    timeouts = daemon.log().count('lock timeout')
    wait_for(lambda: daemon.log().count('the slice row is still locked') >= 4, 30,
             what='the job to keep looking')
    assert daemon.log().count('lock timeout') == timeouts


def test_a_slice_row_held_for_update_is_a_hold_naming_the_holder(db, daemon_factory):
    """The batch's checkpoint goes to its slice's row: a session holding
    that row (an operator's open transaction) holds the batches, and is
    named, rather than every batch redone and rolled back at each
    lock_timeout."""
    conn = db.conn
    daemon = _walking_with_short_lock_timeout(db, daemon_factory)
    holder = db.connect(autocommit=False)
    try:
        pid = holder.execute('SELECT pg_backend_pid()').fetchone()[0]
        holder.execute('SELECT * FROM backfill.slices s JOIN backfill.jobs j ON j.id = s.job_id '
                       "WHERE j.name = 'count' FOR UPDATE OF s")
        reason = f'slice row locked: pid {pid} holds this slice\'s row in backfill.slices'
        _held_without_redoing(daemon, reason)
        assert daemon.log().count(reason) == 1     # logged where it starts
    finally:
        holder.rollback()
        holder.close()
    wait_succeeded(conn, 'count', timeout=120)
    assert_each_row_once(conn, rows=2000)
    assert 'the slice row is no longer locked; going on' in daemon.log()


def test_a_slice_row_share_locked_by_several_sessions_is_a_hold_too(db, daemon_factory):
    """Two FOR SHARE lockers: the row's xmax is a multixact, no single pid
    is its holder, and still no batch is redone while they hold it."""
    conn = db.conn
    daemon = _walking_with_short_lock_timeout(db, daemon_factory)
    holders = [db.connect(autocommit=False) for _ in range(2)]
    try:
        for h in holders:
            h.execute('SELECT * FROM backfill.slices s JOIN backfill.jobs j ON j.id = s.job_id '
                      "WHERE j.name = 'count' FOR SHARE OF s")
        _held_without_redoing(
            daemon, 'slice row locked: more than one session (sharing the lock) holds')
    finally:
        for h in holders:
            h.rollback()
            h.close()
    wait_succeeded(conn, 'count', timeout=120)
    assert_each_row_once(conn, rows=2000)


def test_the_job_row_held_for_update_does_not_stop_the_batches(db, daemon_factory):
    """No batch writes the job row (its slices' rows hold the checkpoints):
    an operator's transaction holding it holds up only the job's end."""
    conn = db.conn
    _walking_with_short_lock_timeout(db, daemon_factory)
    holder = db.connect(autocommit=False)
    try:
        holder.execute("SELECT * FROM backfill.jobs WHERE name = 'count' FOR UPDATE")
        done = job_row(conn, 'count')['batches']
        wait_for(lambda: job_row(conn, 'count')['batches'] >= done + 5, 30,
                 what='batches while the job row is held')
    finally:
        holder.rollback()
        holder.close()
    wait_succeeded(conn, 'count', timeout=120)
    assert_each_row_once(conn, rows=2000)


def test_the_pin_does_not_depend_on_search_path(db, daemon_factory):
    """A key of a domain type: its name as format_type spells it depends on
    search_path; the walk is pinned to the type itself."""
    conn = db.conn
    conn.execute('CREATE SCHEMA app')
    conn.execute('CREATE DOMAIN app.order_id AS bigint')
    conn.execute(PAUSE_SQL)
    conn.execute('CREATE TABLE public.orders (id app.order_id PRIMARY KEY, '
                 'counter int NOT NULL DEFAULT 0)')
    conn.execute('INSERT INTO orders (id) SELECT g FROM generate_series(1, 1000) g')
    conn.execute(f'ALTER DATABASE {db.name} SET search_path = app, public')
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'count', table='orders', pause_ms=0.05)
    _pause_after(conn, 'count', 3)
    conn.execute(f'ALTER DATABASE {db.name} SET search_path = public')
    conn.execute("UPDATE backfill.jobs SET state = 'pending' WHERE name = 'count'")
    wait_succeeded(conn, 'count', timeout=120)
    assert_each_row_once(conn, 'orders', rows=1000)
