"""A job's life as an operator steers it with SQL, and jobs that cannot run."""
import signal
import time

from daemon import insert_job, job_row, wait_for, wait_job_state
from workload import (SMALL_BATCHES, assert_each_row_once, counter_job, counter_table, counters,
                      steer, wait_succeeded)


def test_bad_jobs_fail_clearly_and_the_rest_carry_on(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    conn.execute('CREATE TABLE docs (id int PRIMARY KEY, doc json, counter int DEFAULT 0)')
    conn.execute("INSERT INTO docs (id, doc) SELECT g, '{}' FROM generate_series(1, 10) g")
    conn.execute('CREATE TABLE nokey (a int, b int)')
    conn.execute('INSERT INTO nokey SELECT g, g FROM generate_series(1, 10) g')
    conn.execute('CREATE TABLE nullable (id int PRIMARY KEY, seq int UNIQUE)')
    conn.execute('CREATE TABLE checked (id int PRIMARY KEY, v int CHECK (v < 5))')
    conn.execute('INSERT INTO checked SELECT g, 0 FROM generate_series(1, 10) g')
    daemon = daemon_factory(db.server, db.name, {'engine': {'max_jobs': 8}, **SMALL_BATCHES})
    bad = {
        'missing-table': dict(table_name='public.nope', set_clause='x = 1'),
        'bad-set': dict(table_name='items', set_clause='counter = = 1'),
        'unknown-column': dict(table_name='items', set_clause='nosuch = 1'),
        'unordered-key': dict(table_name='docs', key_columns=['doc'], set_clause='counter = 1'),
        'missing-key-column': dict(table_name='items', key_columns=['nosuch'], set_clause='counter = 1'),
        'no-primary-key': dict(table_name='nokey', set_clause='b = 0'),
        'constraint': dict(table_name='checked', set_clause='v = 10'),
        'nullable-key': dict(table_name='nullable', key_columns=['seq'], set_clause='seq = seq'),
        'non-unique-key': dict(table_name='items', key_columns=['payload'], set_clause='counter = 1'),
        'two-statements': dict(table_name='items', set_clause='counter = 1; DROP TABLE items'),
        'no-batch': dict(table_name='items', kind='sql', statement="UPDATE items SET payload = 'batch'"),
    }
    for name, columns in bad.items():
        insert_job(conn, name=name, **columns)
    counter_job(conn, 'good', pause_ms=0.05)
    expect = {
        'missing-table': 'relation "public.nope" does not exist',
        'bad-set': 'syntax error',
        'unknown-column': 'column "nosuch" of relation "items" does not exist',
        'unordered-key': 'key columns (doc json) of table public.docs are not exactly the columns '
                         'of a unique btree index',
        'missing-key-column': 'key column "nosuch" does not exist in table public.items',
        'no-primary-key': 'has no primary key: set key_columns',
        'constraint': 'violates check constraint',
        'nullable-key': 'key column seq of table public.nullable is nullable',
        'non-unique-key': 'key columns (payload text) of table public.items are not exactly',
        'two-statements': "set_clause contains a ';'",
        'no-batch': 'statement never mentions "batch"',
    }
    for name, message in expect.items():
        row = wait_job_state(conn, name, {'failed', 'succeeded'}, timeout=60)
        assert row['state'] == 'failed'
        assert message in row['last_error'], row['last_error']
        assert row['owner'] is None
    row = wait_succeeded(conn, 'good', timeout=60)
    assert_each_row_once(conn, rows=3000)
    assert conn.execute('SELECT count(*) FROM checked WHERE v <> 0').fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM items WHERE payload = 'batch'").fetchone()[0] == 0
    assert daemon.alive()
    assert 'job "bad-set": batch: syntax error' in daemon.log()


def test_schema_refuses_incomplete_jobs(db, daemon_factory):
    import psycopg
    daemon_factory(db.server, db.name)
    for columns in (dict(name='a', table_name='t'),                       # update without set_clause
                    dict(name='b', table_name='t', kind='sql'),           # sql without statement
                    dict(name='c', table_name='t', kind='delete', set_clause='x = 1'),
                    dict(name='', table_name='t', set_clause='x = 1'),
                    dict(name='d', table_name='t', set_clause='x = 1', batch_size=0)):
        try:
            insert_job(db.conn, **columns)
        except psycopg.errors.CheckViolation:
            continue
        raise AssertionError(f'accepted {columns}')


def test_pause_and_resume_with_sql_are_durable(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'steered', pause_ms=0.1)
    row = steer(conn, 'steered', 'paused', min_batches=3)
    assert row['state'] == 'paused'
    # Nothing moves while paused, across a daemon restart too.
    daemon.stop()
    daemon_factory(db.server, db.name, SMALL_BATCHES, name='after-restart')
    time.sleep(1.5)
    again = job_row(conn, 'steered')
    assert (again['state'], again['batches'], again['rows_scanned']) == \
        ('paused', row['batches'], row['rows_scanned'])
    assert 0 < row['rows_scanned'] < 4000
    assert counters(conn).get(1, 0) == row['rows_scanned']
    conn.execute("UPDATE backfill.jobs SET state = 'pending' WHERE name = 'steered'")
    row = wait_succeeded(conn, 'steered', timeout=60)
    assert_each_row_once(conn, rows=4000)


def test_cancel_stops_before_the_next_batch(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'doomed', pause_ms=0.1)
    row = steer(conn, 'doomed', 'cancelled')
    time.sleep(1)
    final = job_row(conn, 'doomed')
    assert final['state'] == 'cancelled' and final['finished_at'] is not None
    assert final['batches'] == row['batches']
    # Exactly the committed batches were applied, each row at most once.
    assert counters(conn) == {1: final['rows_scanned'], 0: 4000 - final['rows_scanned']}
    assert 'state changed to cancelled' in daemon.log()


def test_verification_fails_when_rows_still_match(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE t (id int PRIMARY KEY, x int)')
    conn.execute('INSERT INTO t SELECT g, NULL FROM generate_series(1, 300) g')
    daemon_factory(db.server, db.name, {'batch': {'verify_chunk_rows': 70}})
    # The SET leaves a third of the rows matching the where_clause.
    insert_job(conn, name='leaky', table_name='t', where_clause='x IS NULL',
               set_clause='x = CASE WHEN id % 3 = 0 THEN NULL ELSE 1 END')
    row = wait_job_state(conn, 'leaky', {'succeeded', 'failed'})
    assert row['state'] == 'failed'
    assert 'verification failed: 100 rows in the walked range still match where_clause (x IS NULL)' \
        in row['last_error']
    # A failed job is retried by putting it back to pending: it verifies again.
    conn.execute('UPDATE t SET x = 2 WHERE x IS NULL')
    conn.execute("UPDATE backfill.jobs SET state = 'pending' WHERE name = 'leaky'")
    row = wait_succeeded(conn, 'leaky')
    assert row['last_error'] is None


def test_sigterm_mid_job_releases_the_lease_and_exits_zero(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'interrupted', pause_ms=0.2)
    wait_for(lambda: job_row(conn, 'interrupted')['batches'] >= 2, 30, what='some batches')
    started = time.monotonic()
    assert daemon.stop(timeout=20) == 0
    assert time.monotonic() - started < 5
    row = job_row(conn, 'interrupted')
    # The walk is under way, and its slice is free for any daemon to take.
    assert (row['state'], row['owner']) == ('running', None)
    assert [(x['state'], x['owner']) for x in row['slices']] == [('pending', None)]
    assert 0 < row['rows_scanned'] < 4000
    assert counters(conn).get(1, 0) == row['rows_scanned']
    daemon_factory(db.server, db.name, SMALL_BATCHES, name='again')
    row = wait_succeeded(conn, 'interrupted', timeout=60)
    assert_each_row_once(conn, rows=4000)


def test_listen_picks_a_new_job_up_at_once(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=10)
    # With a one-minute poll, only the NOTIFY can explain a fast pickup.
    daemon_factory(db.server, db.name, {'engine': {'poll_interval_ms': 60000}})
    time.sleep(0.5)
    inserted = time.monotonic()
    counter_job(conn, 'quick')
    wait_job_state(conn, 'quick', 'succeeded', timeout=10)
    assert time.monotonic() - inserted < 5


def test_second_sigterm_cuts_the_grace_short(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=100)
    daemon = daemon_factory(db.server, db.name, {'batch': {'size': 100}})
    # One batch that takes a long while: 100 rows x 50 ms.
    counter_job(conn, 'slow', pause_ms=50)
    # The batch itself, not the job's first queries (resolve, bound), which
    # a poll right after the INSERT can catch too.
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'backfilld job slow' "
        "AND state = 'active' AND starts_with(query, '/* backfilld batch */')").fetchone(),
        10, what='the slow batch to run')
    daemon.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert daemon.alive(), 'the daemon did not wait for its batch in flight'
    started = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - started < 3
    row = job_row(conn, 'slow')
    assert row['batches'] == 0 and counters(conn) == {0: 100}


def test_a_held_row_lock_is_waited_out_not_failed(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=1000)
    daemon = daemon_factory(db.server, db.name, {'batch': {'size': 100, 'size_min': 10,
                                                           'lock_timeout_ms': 100}})
    # The application holds row 500 for a few seconds.
    app = db.connect(autocommit=False)
    app.execute('SELECT * FROM items WHERE id = 500 FOR UPDATE')
    try:
        counter_job(conn, 'patient')
        wait_for(lambda: 'lock timeout' in daemon.log() or 'canceling statement due to lock timeout'
                 in daemon.log(), 15, what='a lock timeout on the held row')
        assert job_row(conn, 'patient')['state'] == 'running'
        assert 0 < job_row(conn, 'patient')['rows_scanned'] < 1000
    finally:
        app.rollback()
        app.close()
    row = wait_succeeded(conn, 'patient', timeout=60)
    assert_each_row_once(conn, rows=1000)
    assert 'transient, retrying' in daemon.log()


def test_two_daemons_installing_the_schema_at_once(db, daemon_factory):
    first = daemon_factory(db.server, db.name, start=False)
    second = daemon_factory(db.server, db.name, start=False)
    first.start()
    second.start()
    first.wait_ready(30)
    second.wait_ready(30)
    assert db.conn.execute('SELECT array_agg(version) FROM backfill.schema_version').fetchone()[0] == [1, 2, 3, 4]
    # A restart finds the schema in place and changes nothing.
    first.stop()
    first.start().wait_ready(30)
    assert db.conn.execute('SELECT count(*) FROM backfill.schema_version').fetchone()[0] == 4


def test_journald_lines_carry_syslog_priorities(db, daemon_factory, tmp_path):
    import os
    import subprocess
    daemon = daemon_factory(db.server, db.name, start=False)
    daemon.write_config()
    log_path = tmp_path / 'journal.log'
    with open(log_path, 'w') as log:
        st = os.fstat(log.fileno())
        env = dict(daemon.env(), JOURNAL_STREAM=f'{st.st_dev}:{st.st_ino}')
        proc = subprocess.Popen(daemon.command(), stdout=log, stderr=log, env=env)
        try:
            wait_for(lambda: 'ready' in log_path.read_text(), 30, what='ready')
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    lines = log_path.read_text().splitlines()
    assert lines and all(line[:3] in ('<3>', '<4>', '<5>', '<6>', '<7>') for line in lines), lines
    assert any(line.startswith('<5>') and 'ready' in line for line in lines)


def test_poll_finds_a_job_whose_notification_was_lost(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=10)
    daemon_factory(db.server, db.name, {'engine': {'poll_interval_ms': 300}})
    conn.execute('ALTER TABLE backfill.jobs DISABLE TRIGGER jobs_notify_insert')
    counter_job(conn, 'silent')
    wait_job_state(conn, 'silent', 'succeeded', timeout=10)
    assert_each_row_once(conn, rows=10)


def test_host_names_are_resolved_and_tried_address_by_address(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=50)
    # localhost often resolves to ::1 first, where the server does not
    # listen: every address must be tried, as libpq itself would.
    conninfo = db.conninfo.replace('host=127.0.0.1', 'host=localhost')
    daemon = daemon_factory(db.server, db.name, {'database': {'conninfo': conninfo}})
    counter_job(conn, 'by-name')
    wait_succeeded(conn, 'by-name', timeout=30)
    assert 'host "localhost" is ' in daemon.log()


def test_an_unresolvable_host_is_retried_and_the_daemon_still_stops(db, daemon_factory):
    daemon = daemon_factory(db.server, db.name, {
        'database': {'conninfo': 'host=no-such-host.invalid dbname=x', 'connect_timeout_ms': 5000}},
        start=False)
    daemon.start()
    wait_for(lambda: daemon.log().count('could not resolve host name "no-such-host.invalid"') >= 2,
             30, what='repeated resolution failures')
    assert daemon.stop(timeout=10) == 0


def test_a_failover_list_with_an_unresolvable_name_still_connects(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=20)
    port = db.server.port
    # Per-host ports, one name gone from DNS: libpq would skip it; so do we.
    conninfo = (f'host=no-such-host.invalid,localhost port={port + 1},{port} '
                f'user=postgres dbname={db.name}')
    daemon = daemon_factory(db.server, db.name, {'database': {'conninfo': conninfo}})
    counter_job(conn, 'failover')
    wait_succeeded(conn, 'failover', timeout=30)
    assert 'could not resolve host name "no-such-host.invalid"' in daemon.log()
    assert 'trying the other hosts' in daemon.log()


def test_jobs_are_claimed_by_priority(db, daemon_factory):
    conn = db.conn
    for table in ('low', 'high', 'mid'):
        counter_table(conn, table, rows=300)
    daemon = daemon_factory(db.server, db.name, {'engine': {'max_jobs': 1}})
    daemon.stop()
    for table, priority in (('low', 300), ('high', 10), ('mid', 20)):
        counter_job(conn, table, table, priority=priority)
    daemon_factory(db.server, db.name, {'engine': {'max_jobs': 1}}, name='one-at-a-time')
    for table in ('low', 'high', 'mid'):
        wait_succeeded(conn, table)
    order = [r[0] for r in conn.execute('SELECT name FROM backfill.jobs ORDER BY started_at')]
    assert order == ['high', 'mid', 'low']


def test_a_batch_over_statement_timeout_shrinks_until_it_fits(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=600)
    # 200 rows x 5 ms = 1 s per batch against a 400 ms statement_timeout.
    daemon = daemon_factory(db.server, db.name, {'batch': {
        'size': 200, 'size_min': 10, 'statement_timeout_ms': 400, 'target_ms': 100}})
    counter_job(conn, 'shrinking', pause_ms=5)
    row = wait_succeeded(conn, 'shrinking', timeout=120)
    assert row['rows_scanned'] == 600
    assert_each_row_once(conn, rows=600)
    log = daemon.log()
    assert 'canceling statement due to statement timeout' in log
    assert 'transient, retrying' in log


def test_sighup_keeps_the_running_config_when_the_file_is_broken(db, daemon_factory):
    daemon = daemon_factory(db.server, db.name)
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good + '\nbatch:\n  sizee: 1\n')
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: 'reload refused, keeping the running configuration' in daemon.log(), 10,
             what='the refused reload')
    assert daemon.alive()
    daemon.config_path.write_text(good.replace('level: "debug"', 'level: notice'))
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: '(log level notice,' in daemon.log(), 10, what='the reload')
    assert daemon.alive()


def test_a_schema_newer_than_the_daemon_stops_it_with_exit_1(db, daemon_factory):
    daemon = daemon_factory(db.server, db.name)
    daemon.stop()
    db.conn.execute('INSERT INTO backfill.schema_version (version) VALUES (99)')
    daemon.start()
    wait_for(lambda: not daemon.alive(), 20, what='the daemon to exit by itself')
    assert daemon.returncode == 1
    assert 'newer than this backfilld knows' in daemon.log()
    assert not daemon.socket.exists(), 'the control socket is removed'


def test_reloaded_session_settings_survive_a_reconnect(db, daemon_factory):
    from workload import counter_table
    conn = db.conn
    counter_table(conn, rows=3000)
    daemon = daemon_factory(db.server, db.name, overrides={
        'batch': {'size': 50, 'size_min': 50, 'size_max': 50, 'lock_timeout_ms': 2000}})
    insert_job(conn, name='timeouts', table_name='items',
               set_clause="counter = counter + 1 + test_pause(2), "
                          "payload = current_setting('lock_timeout')")
    wait_for(lambda: job_row(conn, 'timeouts')['batches'] >= 2, 30, what='some batches')
    daemon.config['batch']['lock_timeout_ms'] = 3000
    daemon.write_config()
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: conn.execute("SELECT count(*) FROM items WHERE payload = '3s'"
                                  ).fetchone()[0] > 0, 20, what='the new lock_timeout applied')
    # A new connection of the job's keeps the reloaded value.
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = 'backfilld job timeouts'")
    row = wait_job_state(conn, 'timeouts', {'succeeded'}, timeout=60)
    assert row['state'] == 'succeeded'
    last = conn.execute('SELECT payload FROM items ORDER BY id DESC LIMIT 1').fetchone()[0]
    assert last == '3s', last
