"""What a newcomer hit: the first batch's plan, rows inserted during the walk,
repairing a failed verification, a failing row named, reasons in the log."""
import re

import pytest

from daemon import insert_job, job_row, wait_for, wait_job_state
from workload import PAUSE_FUNCTION, SMALL_BATCHES, assert_each_row_once, counter_table, \
    counter_job, wait_succeeded


# -- the first batch is a bounded index range scan -----------------------------

ORDERS = {
    # Every row matches the where_clause and the statistics know it: a
    # one-sided key range (the first batch's, before the fix) is estimated
    # at a third of the table, and a sequential scan wins; a closed range
    # is estimated at 0.5%.
    'bigint': ('id bigint PRIMARY KEY', 'id', 'SELECT g'),
    'composite': ('tenant int, id bigint, PRIMARY KEY (tenant, id)', 'tenant, id',
                  'SELECT g % 3, g'),
}


@pytest.mark.parametrize('shape', sorted(ORDERS))
def test_the_first_batch_is_planned_as_an_index_range_scan(db, daemon_factory, shape):
    ddl, cols, keys = ORDERS[shape]
    conn = db.conn
    # Random I/O priced as on spinning disks: a third of the table through
    # the index (the planner's guess for a one-sided range) now costs more
    # than reading all of it.
    conn.execute(f'ALTER DATABASE {db.name} SET random_page_cost = 10')
    conn.execute(f'CREATE TABLE orders ({ddl}, total numeric NOT NULL, total_cents bigint)')
    # Inserted in random order: the key does not follow the heap, so a
    # third of the table through the index costs more than all of it.
    conn.execute(f'INSERT INTO orders ({cols}, total) {keys}, g / 100.0 '
                 'FROM generate_series(1, 200000) g ORDER BY random()')
    conn.execute('ANALYZE orders')
    daemon = daemon_factory(db.server, db.name)
    insert_job(conn, name='cents', table_name='orders', state='paused', batch_size=1000,
               set_clause='total_cents = (total * 100)::bigint',
               where_clause='total_cents IS NULL')
    plan = daemon.ctl_json('plan', 'cents')['plan']
    update = plan[plan.index('Update on'):]
    assert 'Seq Scan on orders' not in update, plan
    assert re.search(r'(Index (Only )?Scan using|Bitmap Index Scan on) orders_pkey', update), plan
    # The batch scanned its page, not the table.
    assert 'Rows Removed by Filter' not in update or \
        int(re.search(r'Rows Removed by Filter: (\d+)', update).group(1)) < 1000, plan


# -- rows inserted during the walk -------------------------------------------

def _slow_fill_table(conn, rows):
    conn.execute(PAUSE_FUNCTION)
    conn.execute('CREATE TABLE fills (id bigint PRIMARY KEY, v int)')
    conn.execute('INSERT INTO fills (id) SELECT g FROM generate_series(1, %s) g', (rows,))
    conn.execute('ANALYZE fills')


def _fill_job(conn, name, **extra):
    insert_job(conn, name=name, table_name='fills', set_clause='v = 1 + test_pause(0.02)',
               where_clause='v IS NULL', **extra)


def test_rows_inserted_during_the_walk_are_caught_up(db, daemon_factory):
    conn = db.conn
    _slow_fill_table(conn, 1000)
    daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
    _fill_job(conn, 'fill')
    wait_for(lambda: job_row(conn, 'fill')['upper_bound'] is not None
             and job_row(conn, 'fill')['batches'] >= 2, 30, what='the walk under way')
    # The application inserts rows above the fixed bound, unfilled, and some
    # already filled (nothing to do for those).
    conn.execute('INSERT INTO fills (id) SELECT g FROM generate_series(1001, 1300) g')
    conn.execute('INSERT INTO fills (id, v) SELECT g, 7 FROM generate_series(1301, 1350) g')
    row = wait_succeeded(conn, 'fill', timeout=120)
    assert conn.execute('SELECT count(*) FROM fills WHERE v IS NULL').fetchone()[0] == 0
    assert row['catchup_rounds'] >= 1 and row['rows_left'] == 0, row
    assert row['upper_bound'] == ['1350'], row
    assert 'catch-up round 1 of 3: 300 rows above the walked range match where_clause' \
        in daemon.log()
    assert conn.execute('SELECT count(*) FROM fills WHERE v = 7').fetchone()[0] == 50


def test_rows_left_after_the_last_catch_up_round_are_reported(db, daemon_factory):
    conn = db.conn
    _slow_fill_table(conn, 400)
    daemon = daemon_factory(db.server, db.name, {**SMALL_BATCHES,
                                                 'batch': {**SMALL_BATCHES['batch'],
                                                           'catchup_rounds': 0}})
    _fill_job(conn, 'fill')
    wait_for(lambda: job_row(conn, 'fill')['batches'] >= 2, 30, what='the walk under way')
    conn.execute('INSERT INTO fills (id) SELECT g FROM generate_series(401, 437) g')
    row = wait_succeeded(conn, 'fill', timeout=120)
    assert row['rows_left'] == 37 and row['catchup_rounds'] == 0, row
    assert 'state running -> succeeded' in daemon.log()
    assert '37 rows above the walked range (keys above {400}) still match where_clause ' \
        'after 0 catch-up rounds' in daemon.log()
    shown = daemon.ctl_json('status', 'fill')['jobs'][0]
    assert shown['rows_left'] == 37 and shown['catchup_rounds'] == 0, shown
    assert 'rows left above the walked range: 37' in daemon.ctl('status', 'fill', check=0).stdout


# -- a failed verification is repaired by resume ------------------------------

@pytest.mark.parametrize('how', ['backfillctl', 'sql by way of paused'])
def test_resume_after_a_failed_verification_walks_the_range_again(db, daemon_factory, how):
    conn = db.conn
    _slow_fill_table(conn, 600)
    daemon = daemon_factory(db.server, db.name, SMALL_BATCHES)
    _fill_job(conn, 'fill')
    wait_for(lambda: (job_row(conn, 'fill')['batches'] or 0) >= 4, 60,
             what='the walk past key 200')
    # The application undoes the work behind the walk: verification fails.
    conn.execute('UPDATE fills SET v = NULL WHERE id <= 10')
    row = wait_job_state(conn, 'fill', {'failed', 'succeeded'}, timeout=120)
    assert row['state'] == 'failed', row
    assert row['verification_failed'] and 'verification failed: 10 rows' in row['last_error']
    assert re.search(r'state running -> failed: .*verification failed: 10 rows', daemon.log())
    assert row['rows_scanned'] == 600
    assert daemon.ctl_json('status', 'fill')['jobs'][0]['verification_failed'] is True
    assert 'verification failed: resume walks the whole range again' in \
        daemon.ctl('status', 'fill', check=0).stdout
    if how == 'backfillctl':
        daemon.ctl('resume', 'fill', check=0)
    else:
        conn.execute("UPDATE backfill.jobs SET state = 'paused' WHERE name = 'fill'")
        conn.execute("UPDATE backfill.jobs SET state = 'pending' WHERE name = 'fill'")
    row = wait_succeeded(conn, 'fill', timeout=120)
    assert conn.execute('SELECT count(*) FROM fills WHERE v IS NULL').fetchone()[0] == 0
    # The repair pass walked the range again without counting its rows twice.
    assert row['rows_scanned'] == 600 and row['rows_updated'] == 610, row
    assert not row['repairing'] and not row['verification_failed'], row


# -- a failing row is named ----------------------------------------------------

@pytest.mark.parametrize('where', ['doc IS NULL',
                                   # The where_clause itself fails on the row: the
                                   # key is still named (read without the clause).
                                   'doc IS NULL AND (raw::json) IS NOT NULL'])
def test_a_data_error_narrows_the_batch_to_the_failing_row(db, daemon_factory, where):
    conn = db.conn
    conn.execute('CREATE TABLE docs (id bigint PRIMARY KEY, raw text, doc json)')
    conn.execute("""INSERT INTO docs (id, raw)
                    SELECT g, CASE WHEN g = 1234 THEN '{"broken": ' ELSE '{"n": ' || g || '}' END
                    FROM generate_series(1, 3000) g""")
    daemon = daemon_factory(db.server, db.name)
    insert_job(conn, name='parse', table_name='docs', set_clause='doc = raw::json',
               where_clause=where, batch_size=1000)
    row = wait_job_state(conn, 'parse', {'failed', 'succeeded'}, timeout=120)
    assert row['state'] == 'failed', row
    error = row['last_error']
    assert 'invalid input syntax for type json' in error and '22P02' in error, error
    assert 'key {1234}' in error, error
    assert 'DETAIL:' in error and 'CONTEXT: JSON data' in error, error
    # The rows before it are done; the checkpoint stands just before it.
    assert row['checkpoint'] == ['1233'], row
    assert conn.execute('SELECT count(*) FROM docs WHERE doc IS NULL').fetchone()[0] == 3000 - 1233
    # Narrowed, not retried as if the failure were transient.
    log = daemon.log()
    assert 'narrowing the batch to 500 rows' in log
    assert 'attempt 2 of' not in log
    assert re.search(r'state running -> failed: .*key \{1234\}', log)


def test_a_batch_that_cannot_fit_statement_timeout_at_the_minimum_fails_naming_the_key(
        db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=200)
    daemon = daemon_factory(db.server, db.name, {
        'batch': {'size': 4, 'size_min': 2, 'statement_timeout_ms': 150},
        'retry': {'max_failures': 3, 'initial_ms': 10, 'max_ms': 50}})
    # Row 51 takes a second: no batch holding it fits 150 ms.
    insert_job(conn, name='slow', table_name='items',
               set_clause='counter = counter + 1 + test_pause(CASE WHEN id = 51 THEN 1000 ELSE 0 END)')
    row = wait_job_state(conn, 'slow', {'failed', 'succeeded'}, timeout=120)
    assert row['state'] == 'failed', row
    assert 'statement timeout' in row['last_error'] and 'key {51}' in row['last_error'], row
    assert 'statement_timeout_ms' in row['last_error'], row
    assert row['checkpoint'] == ['50'], row
    assert 'state running -> failed' in daemon.log()


# -- reasons in the log --------------------------------------------------------

def test_a_definition_error_is_on_the_state_line(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE nokey (a int, b int)')
    daemon = daemon_factory(db.server, db.name)
    insert_job(conn, name='nokey', table_name='nokey', set_clause='b = 0')
    wait_job_state(conn, 'nokey', 'failed')
    assert re.search(r'state running -> failed: .*has no primary key', daemon.log()), \
        daemon.log()


def test_each_row_once_with_catch_up_while_the_application_inserts(db, daemon_factory):
    """The counter job under inserts: every row present at the end of the
    walk's rounds is counted once, none twice."""
    conn = db.conn
    counter_table(conn, rows=1500)
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    counter_job(conn, 'count', pause_ms=0.02)
    wait_for(lambda: job_row(conn, 'count')['batches'] >= 3, 30, what='the walk under way')
    conn.execute("INSERT INTO items (id, payload) SELECT g, 'late' FROM generate_series(1501, 1700) g")
    row = wait_succeeded(conn, 'count', timeout=120)
    assert row['rows_left'] == 0, row
    assert_each_row_once(conn, rows=1700)
