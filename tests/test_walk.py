"""The keyset walk: every key shape, both kinds, where_clause, table split."""
import pytest

from daemon import insert_job, wait_job_state
from workload import SMALL_BATCHES, assert_each_row_once, wait_succeeded

ROWS = 1200

# name -> (key columns DDL, key column list, INSERT ... SELECT of the keys)
KEY_SHAPES = {
    'bigint': ('id bigint PRIMARY KEY', 'id',
               'SELECT g FROM generate_series(1, {n}) g'),
    'int': ('id int PRIMARY KEY', 'id',
            'SELECT g * 7 - 3000 FROM generate_series(1, {n}) g'),
    'uuid': ('id uuid PRIMARY KEY', 'id',
             'SELECT gen_random_uuid() FROM generate_series(1, {n}) g'),
    # Quotes, commas, braces, backslashes, spaces, non-ASCII: keys travel as text[].
    'text': ('id text PRIMARY KEY', 'id',
             """SELECT 'k' || g || (ARRAY['', ' ', ',', '"', '{{}}', '\\', 'é', 'NULL'])[1 + g % 8]
                FROM generate_series(1, {n}) g"""),
    # Microseconds and a daylight-saving zone: the checkpoint must round-trip exactly.
    'timestamptz': ('id timestamptz PRIMARY KEY', 'id',
                    """SELECT timestamptz '2024-03-09 12:00:00.000001 America/New_York'
                              + g * interval '37 minutes 0.000123 seconds'
                       FROM generate_series(1, {n}) g"""),
    # char(n): the cast must be to bpchar, not "character" (which is char(1)).
    'char': ('id char(6) PRIMARY KEY', 'id',
             "SELECT lpad(g::text, 6, 'a') FROM generate_series(1, {n}) g"),
    'composite': ('tenant int, code text, PRIMARY KEY (tenant, code)', 'tenant, code',
                  "SELECT g % 7, 'c' || g FROM generate_series(1, {n}) g"),
}


@pytest.mark.parametrize('shape', sorted(KEY_SHAPES))
def test_every_key_shape_walks_each_row_once(db, daemon_factory, shape):
    ddl, cols, keys = KEY_SHAPES[shape]
    conn = db.conn
    conn.execute(f"ALTER DATABASE {db.name} SET timezone = 'America/New_York'")
    conn.execute(f'CREATE TABLE walk ({ddl}, counter int NOT NULL DEFAULT 0)')
    conn.execute(f'INSERT INTO walk ({cols}) ' + keys.format(n=ROWS))
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='walk', table_name='walk', set_clause='counter = counter + 1')
    row = wait_succeeded(conn, 'walk', timeout=60)
    assert row['rows_scanned'] == ROWS and row['rows_updated'] == ROWS
    assert row['batches'] == ROWS // 50
    assert_each_row_once(conn, 'walk', ROWS)


def test_key_columns_walk_a_table_without_primary_key(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE events (seq bigint NOT NULL UNIQUE, counter int NOT NULL DEFAULT 0)')
    conn.execute('INSERT INTO events (seq) SELECT g FROM generate_series(1, 500) g')
    daemon_factory(db.server, db.name)
    insert_job(conn, name='events', table_name='events', key_columns=['seq'],
               set_clause='counter = counter + 1', batch_size=64)
    row = wait_succeeded(conn, 'events')
    assert_each_row_once(conn, 'events', 500)


def test_where_clause_leaves_other_rows_alone(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(10,2) NOT NULL, '
                 'total_cents bigint, touched int NOT NULL DEFAULT 0)')
    # Every third order already has its cents: scanned, never written.
    conn.execute("""INSERT INTO orders (id, total, total_cents)
                    SELECT g, g / 100.0, CASE WHEN g % 3 = 0 THEN g END
                    FROM generate_series(1, 3000) g""")
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='cents', table_name='public.orders',
               set_clause='total_cents = (total * 100)::bigint, touched = touched + 1',
               where_clause='total_cents IS NULL')
    row = wait_succeeded(conn, 'cents', timeout=60)
    assert row['rows_scanned'] == 3000
    assert row['rows_updated'] == 2000
    assert conn.execute('SELECT count(*) FROM orders WHERE total_cents IS NULL').fetchone()[0] == 0
    assert dict(conn.execute('SELECT id % 3 = 0, max(touched) FROM orders GROUP BY 1').fetchall()) \
        == {True: 0, False: 1}
    assert conn.execute('SELECT count(*) FROM orders WHERE total_cents <> id').fetchone()[0] == 0


def test_clauses_are_read_with_standard_strings_whatever_the_database_default(db,
                                                                              daemon_factory):
    """The definition checks read quotes the standard way (a backslash is
    just a character), and the daemon makes its sessions do the same: with
    standard_conforming_strings off, 'a\\' would be an unterminated string to
    the server, and a ';' after it could pass the checks unseen."""
    conn = db.conn
    conn.execute(f'ALTER DATABASE "{db.name}" SET standard_conforming_strings = off')
    conn.execute('CREATE TABLE notes (id bigint PRIMARY KEY, note text)')
    conn.execute('INSERT INTO notes (id) SELECT generate_series(1, 50)')
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='backslash', table_name='notes', set_clause="note = 'a\\'")
    wait_succeeded(conn, 'backslash', timeout=60)
    assert conn.execute("SELECT DISTINCT note FROM notes").fetchall() == [('a\\',)]


def test_sql_job_splits_a_table(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE users (id bigint PRIMARY KEY, name text, street text, city text)')
    conn.execute('CREATE TABLE addresses (user_id bigint PRIMARY KEY REFERENCES users, '
                 'street text, city text)')
    conn.execute("""INSERT INTO users SELECT g, 'user ' || g, g || ' Main St', 'City ' || (g % 10)
                    FROM generate_series(1, 2500) g""")
    # Some rows were copied already (a previous attempt): ON CONFLICT keeps them.
    conn.execute('INSERT INTO addresses SELECT id, street, city FROM users WHERE id <= 100')
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='split', table_name='users', kind='sql',
               statement='INSERT INTO addresses (user_id, street, city) '
                         'SELECT u.id, u.street, u.city FROM users u JOIN batch USING (id) '
                         'ON CONFLICT (user_id) DO NOTHING;')
    row = wait_succeeded(conn, 'split', timeout=60)
    assert row['rows_scanned'] == 2500
    assert conn.execute("""SELECT count(*) FROM users u JOIN addresses a ON a.user_id = u.id
                           AND a.street = u.street AND a.city = u.city""").fetchone()[0] == 2500
    assert conn.execute('SELECT count(*) FROM addresses').fetchone()[0] == 2500


def test_sql_job_with_where_clause_and_its_own_with(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE src (id int PRIMARY KEY, v int, done bool NOT NULL DEFAULT false)')
    conn.execute('CREATE TABLE dst (id int PRIMARY KEY, v2 int)')
    conn.execute('INSERT INTO src (id, v) SELECT g, g FROM generate_series(1, 900) g')
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='copy', table_name='src', kind='sql', where_clause='v % 2 = 0 AND NOT done',
               statement='WITH moved AS (INSERT INTO dst SELECT s.id, s.v * 2 FROM src s '
                         'JOIN batch USING (id) RETURNING id) '
                         'UPDATE src SET done = true FROM moved WHERE src.id = moved.id')
    row = wait_succeeded(conn, 'copy', timeout=60)
    assert row['rows_updated'] == 450
    assert conn.execute('SELECT count(*), sum(v2) FROM dst').fetchone() == (450, 2 * sum(range(2, 901, 2)))


def test_empty_table_succeeds(db, daemon_factory):
    db.conn.execute('CREATE TABLE nothing (id int PRIMARY KEY, x int)')
    daemon_factory(db.server, db.name)
    insert_job(db.conn, name='nothing', table_name='nothing', set_clause='x = 1', where_clause='x IS NULL')
    row = wait_job_state(db.conn, 'nothing', {'succeeded', 'failed'})
    assert row['state'] == 'succeeded', row['last_error']
    assert row['rows_scanned'] == 0 and row['batches'] == 0


def test_operator_sql_may_use_names_of_its_own(db, daemon_factory):
    """The daemon's own CTEs cannot collide with the operator's tables or
    CTEs (only "batch" is taken)."""
    conn = db.conn
    conn.execute('CREATE TABLE page (id int PRIMARY KEY, title text)')
    conn.execute('CREATE TABLE copies (id int PRIMARY KEY, title text)')
    conn.execute("INSERT INTO page SELECT g, 'title ' || g FROM generate_series(1, 300) g")
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='names', table_name='page', kind='sql', where_clause='NOT EXISTS (SELECT 1 FROM copies c WHERE c.id = page.id)',
               statement='WITH page AS (SELECT id FROM batch), work AS (SELECT 1) '
                         'INSERT INTO copies SELECT p.id, t.title FROM page p JOIN public.page t USING (id)')
    wait_succeeded(conn, 'names')
    assert conn.execute('SELECT count(*) FROM copies JOIN page USING (id, title)').fetchone()[0] == 300


def test_partitioned_table(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE events (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0) '
                 'PARTITION BY RANGE (id)')
    for lo in range(0, 3000, 1000):
        conn.execute(f'CREATE TABLE events_{lo} PARTITION OF events FOR VALUES FROM ({lo}) TO ({lo + 1000})')
    conn.execute('INSERT INTO events (id) SELECT g FROM generate_series(1, 2999) g')
    daemon_factory(db.server, db.name, SMALL_BATCHES)
    insert_job(conn, name='parts', table_name='events', set_clause='counter = counter + 1')
    wait_succeeded(conn, 'parts')
    assert_each_row_once(conn, 'events', 2999)


def test_a_view_is_refused_clearly(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE base (id int PRIMARY KEY, x int)')
    conn.execute('CREATE VIEW v AS SELECT * FROM base')
    daemon_factory(db.server, db.name)
    insert_job(conn, name='view', table_name='v', key_columns=['id'], set_clause='x = 1')
    row = wait_job_state(conn, 'view', {'succeeded', 'failed'})
    assert row['state'] == 'failed'
    assert 'public.v is a view' in row['last_error'], row['last_error']


def test_an_inheritance_parent_is_refused(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE parent (id int PRIMARY KEY, x int)')
    conn.execute('CREATE TABLE child () INHERITS (parent)')
    daemon_factory(db.server, db.name)
    insert_job(conn, name='inherited', table_name='parent', set_clause='x = 1')
    row = wait_job_state(conn, 'inherited', {'succeeded', 'failed'})
    assert row['state'] == 'failed'
    assert 'public.parent has inheritance children' in row['last_error'], row['last_error']
