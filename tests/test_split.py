"""The split of a job's key range into slices (issue 15), as backfillctl plan
reports it: skewed, composite, uuid, timestamptz and text keys get ranges of
about equal row count (every range within 25% of the mean, counted here
with SQL from the reported boundaries), through both the exact pass (every
key, small tables) and the page sample (large ones); a table smaller than
the slice count gets fewer ranges, an empty one a single range."""

import pytest

from daemon import insert_job

SLICES = 4
TOLERANCE = 0.25
# daemon/split.h: BF_SPLIT_EXACT_MAX_ROWS. Tables above it are sampled.
EXACT_MAX_ROWS = 100_000


def make_table(conn, table, columns, key, select, analyze=True):
    """CREATE TABLE table (columns, counter) with primary key `key`, filled
    by `select` (which yields the columns in order), then ANALYZE."""
    conn.execute(f'CREATE TABLE {table} ({columns}, counter int NOT NULL DEFAULT 0, '
                 f'PRIMARY KEY ({key}))')
    names = ', '.join(c.strip().split()[0] for c in columns.split(','))
    conn.execute(f'INSERT INTO {table} ({names}) {select}')
    if analyze:
        conn.execute(f'ANALYZE {table}')


def plan_slices(daemon, conn, table, slices=SLICES, name=None):
    """The `slices` object of backfillctl plan --json for a counter job
    (paused, so that nothing runs it) on table with `slices` slices."""
    name = name or f'split_{table}'
    insert_job(conn, name=name, table_name=table, set_clause='counter = counter + 1',
               state='paused', **({} if slices is None else {'slices': slices}))
    return daemon.ctl_json('plan', name)['slices']


def key_tuple(keys, array_param):
    """(a, b) and ((%s::text[])[1]::t1, ...) for a row-value comparison
    with a boundary passed as a text[] parameter."""
    cols = '(' + ', '.join(n for n, _ in keys) + ')'
    cast = '(' + ', '.join(f'({array_param}::text[])[{i + 1}]::{t}'
                           for i, (_, t) in enumerate(keys)) + ')'
    return cols, cast


def range_counts(conn, table, keys, ranges):
    """The rows of each reported range, counted with SQL as the walk would
    bound them: lower exclusive (none: from the first key), upper inclusive."""
    counts = []
    for r in ranges:
        cols, cast = key_tuple(keys, '%s')
        where, params = [], []
        if r['lower_bound'] is not None:
            where.append(f'{cols} > {cast}')
            params += [r['lower_bound']] * len(keys)
        if r['upper_bound'] is not None:
            where.append(f'{cols} <= {cast}')
            params += [r['upper_bound']] * len(keys)
        query = f'SELECT count(*) FROM {table}'
        if where:
            query += ' WHERE ' + ' AND '.join(where)
        counts.append(conn.execute(query, params).fetchone()[0])
    return counts


def assert_even(conn, table, keys, slices, rows, method):
    """Ranges chained end to end, covering every row once, each within
    TOLERANCE of the mean; the per-range estimates near the counts."""
    ranges = slices['ranges']
    assert slices['requested'] == SLICES and len(ranges) == SLICES, slices
    assert slices['method'] == method, slices
    assert [r['slice'] for r in ranges] == list(range(1, SLICES + 1))
    assert ranges[0]['lower_bound'] is None
    for before, after in zip(ranges, ranges[1:]):
        assert after['lower_bound'] == before['upper_bound'], ranges
    counts = range_counts(conn, table, keys, ranges)
    print(table, 'rows per range:', counts, 'estimates:', [r['rows_estimate'] for r in ranges])
    assert sum(counts) == rows, (counts, ranges)
    mean = rows / SLICES
    for count, r in zip(counts, ranges):
        assert abs(count - mean) <= TOLERANCE * mean, (counts, ranges)
        if method == 'every key':
            assert r['rows_estimate'] == count, (counts, ranges)
        else:
            assert abs(r['rows_estimate'] - count) <= TOLERANCE * count, (counts, ranges)
    return counts


@pytest.fixture
def daemon(db, daemon_factory):
    return daemon_factory(db.server, db.name)


def test_skewed_bigint_keys_are_cut_where_the_rows_are(db, daemon):
    """90% of 400k rows in the first 7% of the id space, the rest spread
    over the last 90%: cuts at even key distances would put nearly every
    row in the first range. Sampled: above the exact threshold, and more
    pages than the sample's floor for 4 ranges (split.h)."""
    conn = db.conn
    rows, top = 400_000, 10_000_000
    make_table(conn, 'skewed', 'id bigint', 'id',
               'SELECT g * 2 FROM generate_series(1, 360000) g '
               'UNION ALL SELECT 1000000 + g * 225 FROM generate_series(1, 40000) g')
    assert rows > EXACT_MAX_ROWS
    # The data is what the test says: a key-space split is badly uneven.
    naive = [conn.execute('SELECT count(*) FROM skewed WHERE id > %s AND id <= %s',
                          (top * i // SLICES, top * (i + 1) // SLICES)).fetchone()[0]
             for i in range(SLICES)]
    assert sum(naive) == rows and max(naive) > 3 * rows / SLICES, naive
    slices = plan_slices(daemon, conn, 'skewed')
    assert 0 < slices['sample_percent'] < 100, slices
    assert_even(conn, 'skewed', [('id', 'bigint')], slices, rows, 'sample')
    assert slices['eta_s'] is not None and slices['eta_s'] >= 0


def test_composite_text_bigint_keys(db, daemon):
    """(tenant text, n bigint): one tenant holds 80% of the rows, so cuts
    fall inside a tenant, on the second key column. Every key is read."""
    conn = db.conn
    rows = 60_000
    make_table(conn, 'orders', 'tenant text, n bigint', 'tenant, n',
               "SELECT CASE WHEN g % 10 < 8 THEN 'acme' ELSE 'tenant ' || (g % 37) END, g "
               f'FROM generate_series(1, {rows}) g')
    slices = plan_slices(daemon, conn, 'orders')
    assert slices['sample_percent'] is None
    assert_even(conn, 'orders', [('tenant', 'text'), ('n', 'bigint')], slices, rows,
                'every key')
    # Cut inside the big tenant, by its second column.
    inner = [r['upper_bound'] for r in slices['ranges'][:-1]]
    assert any(b[0] == 'acme' for b in inner), inner


def test_uuid_keys_sampled(db, daemon):
    conn = db.conn
    rows = 300_000
    make_table(conn, 'devices', 'id uuid', 'id',
               f'SELECT gen_random_uuid() FROM generate_series(1, {rows})')
    slices = plan_slices(daemon, conn, 'devices')
    assert_even(conn, 'devices', [('id', 'uuid')], slices, rows, 'sample')


def test_timestamptz_keys_round_trip(db, daemon):
    """Keys dense at the start (microsecond steps growing quadratically);
    the boundaries travel as text and mean the same instant back."""
    conn = db.conn
    rows = 60_000
    make_table(conn, 'events', 'at timestamptz', 'at',
               "SELECT timestamptz '2024-03-31 01:59:59.5+00' "
               "+ (g::float8 ^ 2) * interval '1 microsecond' "
               f'FROM generate_series(1, {rows}) g')
    # Cut into even spans of time, the first quarter would hold half the rows.
    first = conn.execute("SELECT count(*) FROM events WHERE at <= "
                         "(SELECT min(at) + (max(at) - min(at)) / 4 FROM events)").fetchone()[0]
    assert first >= rows / 2 - 1, first
    slices = plan_slices(daemon, conn, 'events')
    counts = assert_even(conn, 'events', [('at', 'timestamptz')], slices, rows,
                         'every key')
    assert sorted(set(counts)) == [rows // SLICES], counts


def test_text_keys_in_the_columns_collation(db, daemon):
    """A text key in a collation other than the database's (ICU English
    sorts 'a' < 'B' < 'b'; the database's C sorts every capital first): the
    ranges follow the column's own order, as the walk does."""
    conn = db.conn
    rows = 40_000
    make_table(conn, 'words', 'word text COLLATE "en-x-icu"', 'word',
               "SELECT CASE WHEN g % 2 = 0 THEN upper(md5(g::text)) ELSE md5(g::text) END "
               "|| ' ' || g "
               f'FROM generate_series(1, {rows}) g')
    slices = plan_slices(daemon, conn, 'words')
    assert_even(conn, 'words', [('word', 'text')], slices, rows, 'every key')


def test_table_smaller_than_the_slice_count(db, daemon):
    conn = db.conn
    make_table(conn, 'tiny', 'id bigint', 'id', 'SELECT g FROM generate_series(1, 3) g')
    slices = plan_slices(daemon, conn, 'tiny', slices=8)
    ranges = slices['ranges']
    assert slices['requested'] == 8 and 1 <= len(ranges) <= 3, slices
    counts = range_counts(conn, 'tiny', [('id', 'bigint')], ranges)
    assert sum(counts) == 3 and min(counts) >= 1, (counts, ranges)
    assert [r['rows_estimate'] for r in ranges] == counts


def test_empty_table_is_one_range(db, daemon):
    conn = db.conn
    make_table(conn, 'nothing', 'id bigint', 'id', 'SELECT 1 WHERE false')
    slices = plan_slices(daemon, conn, 'nothing')
    assert slices['requested'] == SLICES
    assert slices['ranges'] == [{'slice': 1, 'lower_bound': None, 'upper_bound': None,
                                 'rows_estimate': 0}], slices


def test_slices_default_to_engine_slices_and_show_in_text(db, daemon):
    """A job row without slices takes engine.slices (1 by default): one
    range, the whole table. The text output has the slices' lines."""
    conn = db.conn
    make_table(conn, 'plain', 'id bigint', 'id', 'SELECT g FROM generate_series(1, 2000) g')
    slices = plan_slices(daemon, conn, 'plain', slices=None, name='plain')
    assert slices['requested'] == 1
    assert slices['ranges'] == [{'slice': 1, 'lower_bound': None, 'upper_bound': ['2000'],
                                 'rows_estimate': 2000}], slices
    conn.execute("UPDATE backfill.jobs SET slices = 4 WHERE name = 'plain'")
    text = daemon.ctl('plan', 'plain', check=0).stdout
    print(text)
    assert 'slices: 4 requested, 4 ranges (every key read)' in text, text
    assert 'ideal' in text and 'BENCHMARKS.md' in text, text


def stale_statistics(conn, table, reltuples):
    """The statistics as an ANALYZE long ago left them (before a mass
    delete, say): pg_class says `reltuples` rows, on as many pages as
    that many rows of the table fill now; autovacuum leaves them."""
    conn.execute(f'ALTER TABLE {table} SET (autovacuum_enabled = false)')
    conn.execute('UPDATE pg_class SET relpages = relpages * (%s / reltuples), reltuples = %s '
                 'WHERE oid = %s::regclass', (reltuples, reltuples, table))


def test_sample_far_short_of_its_size_is_drawn_again_larger(db, daemon):
    """Statistics say 10M rows, the table holds 300k: the first sample (2%
    of the pages the statistics count, 1024 of 54k for 4 ranges: some 30
    of the real ones) brings about 6000 keys, too few to cut evenly; the
    second one, drawn at the percentage that count says brings the keys
    expected (about 60%), is a sample still, not every page."""
    conn = db.conn
    rows = 300_000
    make_table(conn, 'shrunk', 'id bigint', 'id',
               f'SELECT g FROM generate_series(1, {rows}) g')
    stale_statistics(conn, 'shrunk', 10e6)
    slices = plan_slices(daemon, conn, 'shrunk')
    assert 5 < slices['sample_percent'] < 100, slices
    assert_even(conn, 'shrunk', [('id', 'bigint')], slices, rows, 'sample')


def test_small_table_with_large_statistics_reads_every_key(db, daemon):
    """Statistics say 50M rows, the table holds 20k: the first sample finds
    next to nothing, and the second one reads every page."""
    conn = db.conn
    rows = 20_000
    make_table(conn, 'emptied', 'id bigint', 'id',
               f'SELECT g FROM generate_series(1, {rows}) g')
    stale_statistics(conn, 'emptied', 50e6)
    slices = plan_slices(daemon, conn, 'emptied')
    assert_even(conn, 'emptied', [('id', 'bigint')], slices, rows, 'every key')


def test_never_analyzed_table_reads_every_key(db, daemon):
    conn = db.conn
    rows = 30_000
    make_table(conn, 'fresh', 'id bigint', 'id',
               f'SELECT g * g FROM generate_series(1, {rows}) g', analyze=False)
    conn.execute('ALTER TABLE fresh SET (autovacuum_enabled = false)')
    slices = plan_slices(daemon, conn, 'fresh')
    counts = assert_even(conn, 'fresh', [('id', 'bigint')], slices, rows, 'every key')
    assert counts == [rows // SLICES] * SLICES, counts
