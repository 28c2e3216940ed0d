"""Slices: one job walked as several key ranges, by several connections and
daemons, each range claimed, leased, fenced and checkpointed on its own,
the job row the one place to look and steer.
"""

import os
import random
import re
import time

from daemon import job_row, wait_for, wait_job_state
from workload import (assert_each_row_once, counter_job, counter_table, replace_table,
                      wait_succeeded)

SLICED = {'batch': {'size': 50, 'size_min': 50, 'size_max': 50},
          'engine': {'max_jobs': 4, 'lease_s': 3, 'poll_interval_ms': 200}}


def slices_of(conn, name):
    return job_row(conn, name)['slices']


def walking(conn, name, n):
    """Waits until n slices of the job are leased and have committed a batch."""
    def ready():
        s = slices_of(conn, name)
        return len([x for x in s if x['owner'] and x['batches'] > 0]) >= n and s
    return wait_for(ready, 60, what=f'{n} slices walking')


def released(conn, name):
    """Waits until neither the job row nor any of its slices is leased."""
    return wait_for(lambda: (row := job_row(conn, name))['row']['owner'] is None
                    and all(s['owner'] is None for s in row['slices']) and row, 20,
                    what='every lease of the job given back')


def range_counts(conn, table, name, key):
    """Rows of the table in each slice's range, by the slices' bounds."""
    counts = []
    for s in slices_of(conn, name):
        lower, upper = s['lower_bound'], s['upper_bound']
        where, params = [], []
        if lower is not None:
            where.append(f'({key}) > %s')
            params.append(lower[0])
        if upper:
            where.append(f'({key}) <= %s')
            params.append(upper[0])
        counts.append(conn.execute(f'SELECT count(*) FROM {table} WHERE '
                                   + (' AND '.join(where) or 'true'), params).fetchone()[0])
    return counts


def test_four_slices_walk_every_row_once_and_sum_on_the_job_row(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    daemon = daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'sliced', pause_ms=1, slices=4)
    s = walking(conn, 'sliced', 4)
    assert [x['slice'] for x in s] == [1, 2, 3, 4]
    # Four connections at once, one per slice.
    pids = conn.execute("SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'backfilld job sliced slice %'").fetchone()[0]
    assert pids == 4
    status = daemon.ctl_json('status', 'sliced')['jobs'][0]
    assert len(status['slices']) == 4 and all(x['here'] for x in status['slices']), status
    text = daemon.ctl('status', 'sliced').stdout
    assert all(f'slice {n}/4' in text for n in range(1, 5)), text
    assert len([line for line in text.splitlines() if line.startswith('sliced ')]) == 1, text
    row = wait_succeeded(conn, 'sliced', 120)
    assert_each_row_once(conn, rows=4000)
    # The row's own totals are the slices' sums, and every range is done.
    assert (row['row']['rows_scanned'], row['row']['rows_updated']) == (4000, 4000), row['row']
    assert row['row']['batches'] == sum(x['batches'] for x in row['slices'])
    assert all(x['state'] == 'done' and x['owner'] is None for x in row['slices'])
    # Ranges follow each other without gap or overlap.
    bounds = [(x['lower_bound'], x['upper_bound']) for x in row['slices']]
    assert bounds[0][0] is None and bounds[-1][1] == ['4000']
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(3)), bounds
    assert 'state running -> succeeded: 4000 rows scanned' in daemon.log()
    # A quiet run: every lease renewed, none lost or given back.
    for trouble in ('lease lost', 'not running here', 'fence refused', 'taking over'):
        assert trouble not in daemon.log(), trouble


def test_at_most_slices_ranges_run_at_once_and_max_jobs_counts_slices(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    # One daemon with three slots for a job of four slices: three walk,
    # the fourth waits for a free slot.
    daemon = daemon_factory(db.server, db.name, {**SLICED, 'engine': {
        'max_jobs': 3, 'lease_s': 3, 'poll_interval_ms': 200}})
    counter_job(conn, 'narrow', pause_ms=2, slices=4)
    walking(conn, 'narrow', 3)
    running = [x for x in slices_of(conn, 'narrow') if x['owner']]
    assert len(running) == 3
    wait_succeeded(conn, 'narrow', 120)
    assert_each_row_once(conn, rows=3000)
    assert daemon.ctl_json('status')['daemon']['jobs_here'] == 0


def test_skewed_keys_get_even_slices(db, daemon_factory):
    """90% of the rows in the first tenth of the id space: slices cut by
    key space would put nine tenths of the rows into one slice."""
    conn = db.conn
    conn.execute('CREATE TABLE skew (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)')
    conn.execute('INSERT INTO skew (id) SELECT g FROM generate_series(1, 9000) g')
    conn.execute('INSERT INTO skew (id) SELECT 9000 + g * 90 FROM generate_series(1, 1000) g')
    conn.execute('ANALYZE skew')
    daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'skew', table='skew', slices=4)
    wait_succeeded(conn, 'skew', 120)
    counts = range_counts(conn, 'skew', 'skew', 'id')
    mean = sum(counts) / len(counts)
    assert len(counts) == 4 and all(abs(c - mean) <= 0.25 * mean for c in counts), counts
    assert_each_row_once(conn, 'skew', rows=10000)


def test_composite_and_uuid_keys_get_even_slices(db, daemon_factory):
    conn = db.conn
    conn.execute('CREATE TABLE comp (tenant text, n bigint, counter int NOT NULL DEFAULT 0, '
                 'PRIMARY KEY (tenant, n))')
    # Tenants of very different sizes.
    conn.execute("INSERT INTO comp SELECT 't' || (g % 3), g FROM generate_series(1, 6000) g")
    conn.execute("INSERT INTO comp SELECT 'u', g FROM generate_series(1, 6000) g")
    conn.execute('CREATE TABLE uu (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), '
                 'counter int NOT NULL DEFAULT 0)')
    conn.execute('INSERT INTO uu SELECT FROM generate_series(1, 8000)')
    conn.execute('ANALYZE comp; ANALYZE uu')
    daemon_factory(db.server, db.name, {**SLICED, 'engine': {
        'max_jobs': 8, 'lease_s': 3, 'poll_interval_ms': 200}})
    counter_job(conn, 'comp', table='comp', slices=4)
    counter_job(conn, 'uu', table='uu', slices=4)
    wait_succeeded(conn, 'comp', 120)
    wait_succeeded(conn, 'uu', 120)
    for table in ('comp', 'uu'):
        assert_each_row_once(conn, table)
        rows = slices_of(conn, table)
        assert len(rows) == 4, rows
        counts = [x['rows_scanned'] for x in rows]
        mean = sum(counts) / 4
        assert all(abs(c - mean) <= 0.25 * mean for c in counts), (table, counts)


def test_tiny_and_empty_tables_get_fewer_slices(db, daemon_factory):
    conn = db.conn
    counter_table(conn, 'tiny', rows=3)
    counter_table(conn, 'empty', rows=0)
    counter_table(conn, 'small', rows=1200)
    daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'tiny', table='tiny', slices=8)
    counter_job(conn, 'empty', table='empty', slices=8)
    counter_job(conn, 'small', table='small', slices=8)
    wait_succeeded(conn, 'tiny', 60)
    wait_succeeded(conn, 'empty', 60)
    wait_succeeded(conn, 'small', 60)
    assert len(slices_of(conn, 'tiny')) == 1
    # No range under 500 rows (split.h): 1200 rows make 3.
    assert len(slices_of(conn, 'small')) == 3
    assert_each_row_once(conn, 'small', rows=1200)
    assert [x['upper_bound'] for x in slices_of(conn, 'empty')] == [[]]
    assert_each_row_once(conn, 'tiny', rows=3)


def test_a_failing_slice_fails_the_job_naming_it_and_resume_continues_each_slice(
        db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    # Row 3500 (in the last of four ranges) makes the update raise.
    conn.execute("""CREATE FUNCTION bump(id bigint, c int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN
          IF id = 3500 AND NOT EXISTS (SELECT FROM fixed) THEN
            RAISE EXCEPTION 'row % is broken', id;
          END IF;
          PERFORM pg_sleep(0.001);
          RETURN c + 1;
        END $$""")
    conn.execute('CREATE TABLE fixed ()')
    daemon = daemon_factory(db.server, db.name, SLICED)
    from daemon import insert_job
    insert_job(conn, name='fails', table_name='items', set_clause='counter = bump(id, counter)',
               slices=4)
    row = wait_job_state(conn, 'fails', 'failed', 120)
    assert re.search(r'slice 4 of 4 \(keys above \{\d+\} to \{4000\}\): .*3500', row['last_error']), \
        row['last_error']
    row = released(conn, 'fails')
    # The other slices stopped cleanly: nothing leased, no row twice, and
    # every slice's checkpoint matches its counters.
    assert_done = conn.execute('SELECT count(*) FROM items WHERE counter > 1').fetchone()[0]
    assert assert_done == 0
    failed = [x for x in row['slices'] if x['state'] == 'failed']
    assert [x['slice'] for x in failed] == [4]
    before = {x['slice']: x['checkpoint'] for x in row['slices']}
    done_rows = conn.execute('SELECT count(*) FROM items WHERE counter = 1').fetchone()[0]
    assert done_rows == row['rows_updated']
    # Fixed: resume continues every slice from its own checkpoint.
    conn.execute('INSERT INTO fixed DEFAULT VALUES')
    assert daemon.ctl('resume', 'fails').returncode == 0
    row = wait_succeeded(conn, 'fails', 120)
    assert_each_row_once(conn, rows=4000)
    assert row['row']['rows_scanned'] == 4000
    for x in row['slices']:
        assert before[x['slice']] is None or x['lower_bound'] is None or \
            int(x['checkpoint'][0]) >= int(before[x['slice']][0])


def test_pause_set_and_cancel_act_on_every_slice(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=6000)
    daemon = daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'steered', pause_ms=2, slices=3)
    walking(conn, 'steered', 3)
    assert daemon.ctl('pause', 'steered').returncode == 0
    row = released(conn, 'steered')
    assert row['state'] == 'paused'
    assert all(x['state'] == 'pending' for x in row['slices']), row['slices']
    # The totals were summed when it paused, and nothing moves now.
    assert row['row']['rows_scanned'] == row['rows_scanned'] > 0
    time.sleep(1)
    assert job_row(conn, 'steered')['rows_scanned'] == row['rows_scanned']
    # set reaches every slice: max_rows_per_s is the job's, shared.
    assert daemon.ctl('set', 'steered', 'max_rows_per_s=600').returncode == 0
    assert daemon.ctl('resume', 'steered').returncode == 0
    walking(conn, 'steered', 3)
    assert wait_for(lambda: 'max_rows_per_s' in daemon.log(), 10)
    # pause --now cancels the batches in flight of every slice.
    assert daemon.ctl('pause', '--now', 'steered').returncode == 0
    row = released(conn, 'steered')
    assert row['state'] == 'paused'
    assert daemon.ctl('cancel', 'steered').returncode == 0
    row = job_row(conn, 'steered')
    assert row['state'] == 'cancelled' and all(x['owner'] is None for x in row['slices'])
    # No row was done twice, and every committed batch is counted.
    done = conn.execute('SELECT count(*) FROM items WHERE counter = 1').fetchone()[0]
    assert conn.execute('SELECT count(*) FROM items WHERE counter > 1').fetchone()[0] == 0
    assert done == row['row']['rows_updated'] == row['rows_updated']


def test_a_frozen_daemon_loses_its_slice_and_the_fence_refuses_its_batch(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    first = daemon_factory(db.server, db.name, SLICED, name='first')
    counter_job(conn, 'frozen', pause_ms=4, slices=2)
    walking(conn, 'frozen', 2)
    second = daemon_factory(db.server, db.name, SLICED, name='second')
    first.sigstop()
    try:
        # The second daemon takes both slices over once the leases end.
        wait_for(lambda: all(x['owner'] and x['owner'] in second.log()
                             for x in slices_of(conn, 'frozen')), 30, what='the takeover')
        taken = job_row(conn, 'frozen')['batches']
        wait_for(lambda: job_row(conn, 'frozen')['batches'] > taken + 2, 30)
    finally:
        first.sigcont()
    wait_succeeded(conn, 'frozen', 120)
    assert_each_row_once(conn, rows=3000)
    wait_for(lambda: 'lease lost' in first.log() or 'fence refused' in first.log(), 30,
             what='the frozen daemon to find its lease gone')


def test_four_slices_three_daemons_random_kills_every_row_once(db, daemon_factory):
    from test_chaos import Chaos
    seed = int(os.environ.get('BACKFILLD_CHAOS_SEED') or random.randrange(1, 2**31))
    conn = db.conn
    counter_table(conn, rows=8000)
    config = {**SLICED, 'engine': {'max_jobs': 2, 'lease_s': 3, 'poll_interval_ms': 300}}
    daemons = [daemon_factory(db.server, db.name, config, name=f'chaos-d{i}') for i in range(3)]
    # About 8 s a slice without faults: the faults land mid-walk.
    counter_job(conn, 'chaos', pause_ms=4, slices=4)
    walking(conn, 'chaos', 4)
    Chaos(db, daemons, seed).run(12)
    for d in daemons:
        if not d.alive():
            d.start()
    row = wait_succeeded(conn, 'chaos', 180)
    assert_each_row_once(conn, rows=8000)
    assert row['row']['rows_scanned'] == 8000, f'seed {seed}: {row["row"]}'
    assert sum(x['lease_epoch'] for x in row['slices']) > 4, f'seed {seed}: no takeover'


def _migrations_before_slices():
    """The SQL of schema migrations 1-3, as daemon/schema.c holds them (a
    released migration is never edited): what a daemon of the version
    before slices installed."""
    import ast
    from daemon import REPO_ROOT
    source = (REPO_ROOT / 'daemon' / 'schema.c').read_text()
    body = source[source.index('schema_migrations[] = {'):source.index('};')]
    body = re.sub(r'/\*.*?\*/', '', body, flags=re.S)
    body = body.replace('" BF_NOTIFY_CHANNEL "', 'backfill_jobs')
    migrations, current = [], []
    for token in re.findall(r'"(?:[^"\\]|\\.)*"|,', body):
        if token == ',':
            migrations.append(''.join(current))
            current = []
        else:
            current.append(ast.literal_eval(token))
    return migrations[:3]


def test_an_upgrade_carries_a_job_paused_mid_walk_over_at_its_checkpoint(db, daemon_factory):
    """A database left by the version before slices: schema 3 and a job
    paused after walking ids 1..1200 of 3000 (its counters and checkpoint
    as that version committed them), and one running under a dead owner's
    lease. The upgrade makes each one slice; resumed, they go on from their
    checkpoints and no row is done twice."""
    conn = db.conn
    conn.execute('CREATE SCHEMA backfill')
    conn.execute('CREATE TABLE backfill.schema_version (version integer PRIMARY KEY, '
                 'applied_at timestamptz NOT NULL DEFAULT now())')
    for n, sql in enumerate(_migrations_before_slices(), 1):
        conn.execute(sql)
        conn.execute('INSERT INTO backfill.schema_version (version) VALUES (%s)', (n,))
    counter_table(conn, 'old_paused', rows=3000)
    counter_table(conn, 'old_running', rows=3000)
    conn.execute('UPDATE old_paused SET counter = 1 WHERE id <= 1200')
    conn.execute('UPDATE old_running SET counter = 1 WHERE id <= 700')
    key = 'id (type 20)'
    for name, state, done, owner in (('old_paused', 'paused', 1200, None),
                                     ('old_running', 'running', 700, 'gone:1:dead')):
        conn.execute(
            "INSERT INTO backfill.jobs (name, table_name, set_clause, state, rows_scanned, "
            "rows_updated, batches, checkpoint, upper_bound, rows_estimate, table_oid, "
            "walk_key, owner, lease_epoch, lease_until, started_at) "
            "VALUES (%s, %s, 'counter = counter + 1', %s, %s, %s, %s, %s, '{3000}', 3000, "
            "%s::regclass, %s, %s, 3, now() - interval '1 minute', now())",
            (name, name, state, done, done, done // 100, [str(done)], name, key, owner))
    daemon = daemon_factory(db.server, db.name, SLICED)
    versions = [r[0] for r in conn.execute('SELECT version FROM backfill.schema_version '
                                           'ORDER BY 1').fetchall()]
    assert versions == [1, 2, 3, 4]
    row = job_row(conn, 'old_paused')
    assert row['state'] == 'paused'
    assert [(s['slice'], s['checkpoint'], s['rows_scanned']) for s in row['slices']] == \
        [(1, ['1200'], 1200)]
    # The running one is taken over from its checkpoint; the paused one
    # waits for its resume.
    wait_succeeded(conn, 'old_running', 60)
    assert_each_row_once(conn, 'old_running', rows=3000)
    assert job_row(conn, 'old_running')['row']['rows_scanned'] == 3000
    assert job_row(conn, 'old_paused')['state'] == 'paused'
    assert daemon.ctl('resume', 'old_paused').returncode == 0
    row = wait_succeeded(conn, 'old_paused', 60)
    assert_each_row_once(conn, 'old_paused', rows=3000)
    assert row['row']['rows_scanned'] == 3000 and row['row']['rows_updated'] == 3000


def test_max_rows_per_s_is_the_jobs_total_shared_by_its_slices(db, daemon_factory):
    """Two slices and max_rows_per_s 200: together they stay at about 200
    rows/s, not 200 each. (A bound on speed from above: a busy machine
    only makes it slower.)"""
    conn = db.conn
    counter_table(conn, rows=20000)
    daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'capped', slices=2, settings='{"max_rows_per_s": 200}')
    walking(conn, 'capped', 2)
    start_rows, start = job_row(conn, 'capped')['rows_scanned'], time.monotonic()
    time.sleep(4)
    rows, took = job_row(conn, 'capped')['rows_scanned'] - start_rows, time.monotonic() - start
    # One batch of 50 rows per slice may run ahead of the limit.
    assert rows <= 200 * took + 2 * 50 + 50, (rows, took)
    assert rows > 0
    conn.execute("UPDATE backfill.jobs SET state = 'cancelled' WHERE name = 'capped'")


def test_a_finished_sliced_job_put_back_to_pending_runs_again(db, daemon_factory):
    """An operator sets a succeeded job back to pending (say, to pick up
    rows inserted since): its ranges are walked on from their checkpoints
    and verified again, the last one catching up with the new rows."""
    conn = db.conn
    counter_table(conn, rows=2000)
    daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'again', slices=3)
    wait_succeeded(conn, 'again', 60)
    conn.execute("INSERT INTO items (id, payload) SELECT g, 'late' FROM generate_series(2001, 2100) g")
    conn.execute("UPDATE backfill.jobs SET state = 'pending' WHERE name = 'again'")
    row = wait_succeeded(conn, 'again', 60)
    assert_each_row_once(conn, rows=2100)
    assert row['row']['rows_scanned'] == 2100


def test_a_table_replaced_under_a_sliced_job_fails_it_and_touches_nothing_new(
        db, daemon_factory):
    """Every slice's batch checks that the name still means the table the
    walk was pinned to: a table renamed away and replaced mid-walk fails
    the job, and no row of the new table is touched."""
    conn = db.conn
    counter_table(conn, rows=4000)
    daemon_factory(db.server, db.name, SLICED)
    counter_job(conn, 'replaced', pause_ms=2, slices=3)
    walking(conn, 'replaced', 3)
    replace_table(db)
    row = wait_job_state(conn, 'replaced', {'failed', 'succeeded'}, timeout=60)
    assert row['state'] == 'failed', row
    assert 'the table or its key changed under the job' in row['last_error'], row['last_error']
    released(conn, 'replaced')
    assert conn.execute('SELECT count(*) FROM items WHERE counter <> 0').fetchone()[0] == 0
    assert conn.execute('SELECT max(counter) FROM items_old').fetchone()[0] == 1


def test_status_on_another_instance_shows_the_slices_and_their_owners(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=4000)
    walker = daemon_factory(db.server, db.name, SLICED, name='walker')
    counter_job(conn, 'watched', pause_ms=2, slices=2)
    walking(conn, 'watched', 2)
    # A second daemon with no free slot: it only answers status.
    watcher = daemon_factory(db.server, db.name, {**SLICED, 'engine': {
        'max_jobs': 1, 'lease_s': 3, 'poll_interval_ms': 200}}, name='watcher')
    owner = walker.ctl_json('status')['daemon']['owner']
    job = wait_for(lambda: (j := watcher.ctl_json('status', 'watched')['jobs'][0])
                   and all(s['owner'] == owner for s in j['slices']) and j, 30,
                   what='the slices seen from the other daemon')
    assert job['here'] is False and job['owner'] == owner
    assert len(job['slices']) == 2 and not any(s['here'] for s in job['slices'])
    # What the walker published: each running slice's phase and batch size.
    wait_for(lambda: all('batch_size' in s for s in
                         watcher.ctl_json('status', 'watched')['jobs'][0]['slices']), 30,
             what='the slices\' live fields')
    text = watcher.ctl('status', 'watched').stdout
    assert 'slice 1/2' in text and f'owner {owner}' in text, text
    conn.execute("UPDATE backfill.jobs SET state = 'cancelled' WHERE name = 'watched'")
