"""A corpus of hostile job rows: SQL in identifiers, names that need quoting,
enormous clauses, NULLs, bad kinds, clauses that try to escape the batch
statement, bad settings, extreme numbers, control characters.

Every row either is refused by the schema's constraints, or ends `failed`
with a last_error that says what is wrong and where, or (a legitimate job,
however odd) succeeds with every row of its table once.  In every case the
daemon keeps running and still completes an ordinary job, no table other
than the job's own changes, no object appears or disappears, and
backfillctl status still renders.

One database and one daemon serve the whole module (a daemon per case would
take minutes); the cases run one after the other against them.
"""

import json
import re
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from daemon import Daemon, insert_job, job_row, tail, wait_for, wait_job_state
from workload import assert_each_row_once

ROWS = 30
MB = 1024 * 1024

# Tables the cases walk (each: id key, payload, counter), by how SQL names them.
WALKED = {
    'items': 'items',
    'mixed': '"Items Mixed"',
    'spaced': '"my items"',
    'quote': '"we""ird"',
    'unicode': '"ünïcødé"',
    'dotted': '"odd.schema"."tab.le"',
    'injected_name': '"items; DROP TABLE victim"',
    'canary': 'canary',
}

SETUP = [
    'CREATE SCHEMA "odd.schema"',
    *[f'CREATE TABLE {t} (id bigint PRIMARY KEY, payload text, counter int NOT NULL DEFAULT 0)'
      for t in WALKED.values()],
    *[f"INSERT INTO {t} (id, payload) SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g"
      for t in WALKED.values()],
    # A key column whose name is an injection attempt.
    'CREATE TABLE keyed ("id""; DROP TABLE victim; --" bigint PRIMARY KEY, '
    'counter int NOT NULL DEFAULT 0)',
    f'INSERT INTO keyed SELECT g FROM generate_series(1, {ROWS}) g',
    # What an attack would go after, and a table no job names.
    'CREATE TABLE victim (id int PRIMARY KEY, secret text NOT NULL)',
    "INSERT INTO victim VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma')",
    'CREATE TABLE bystander (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0)',
    'INSERT INTO bystander (id) SELECT generate_series(1, 5)',
    'CREATE VIEW items_view AS SELECT * FROM items',
]


@dataclass
class Case:
    id: str
    columns: dict
    outcome: str                      # 'rejected', 'failed' or 'succeeded'
    expect: str = ''                  # regex: the constraint error / last_error
    table: str = None                 # 'succeeded': key of WALKED (or 'keyed')
    touches: set = field(default_factory=set)   # tables the job may change

    def __post_init__(self):
        if self.outcome == 'succeeded':
            self.touches = self.touches | {self.table}


def upd(**columns):
    """An ordinary update job's columns, overridden by columns."""
    base = {'table_name': 'items', 'set_clause': 'counter = counter + 1'}
    base.update(columns)
    return base


SQL_OK = ('UPDATE items SET counter = counter + 1 FROM batch WHERE items.id = batch.id')

CASES = [
    # -- SQL in identifiers -------------------------------------------------
    Case('table-semicolon', upd(table_name='items; DROP TABLE victim'), 'failed',
         r'resolving the table.*invalid name syntax'),
    Case('table-quote-semicolon', upd(table_name='items" ; DROP TABLE victim; --'), 'failed',
         r'resolving the table.*(invalid name syntax|does not exist)'),
    Case('table-paren-injection', upd(table_name="items'::regclass); DROP TABLE victim; --"),
         'failed', r'resolving the table.*(invalid name syntax|does not exist)'),
    Case('table-literally-named-injection', upd(table_name='"items; DROP TABLE victim"'),
         'succeeded', table='injected_name'),
    Case('key-columns-injection', upd(key_columns=['id); DROP TABLE victim; --']), 'failed',
         r'key column "id\); DROP TABLE victim; --" does not exist in table public\.items'),
    Case('key-columns-quoted', upd(key_columns=['"id"']), 'failed',
         r'key column ""id"" does not exist'),
    Case('key-column-named-injection',
         upd(table_name='keyed', key_columns=['id"; DROP TABLE victim; --']),
         'succeeded', table='keyed'),
    Case('key-columns-null-element', upd(key_columns=[None]), 'failed',
         r'key_columns.*NULL'),
    Case('key-columns-null-second', upd(key_columns=['id', None]), 'failed',
         r'key_columns.*NULL'),
    Case('key-columns-empty', upd(key_columns=[]), 'rejected', r'key_columns_check'),
    Case('name-injection', upd(name="x'); DROP TABLE victim; --"), 'succeeded', table='items'),
    # -- names that need quoting ------------------------------------------
    Case('table-mixed-case-unquoted', upd(table_name='Items Mixed'), 'failed',
         r'resolving the table.*invalid name syntax'),
    Case('table-mixed-case', upd(table_name='"Items Mixed"'), 'succeeded', table='mixed'),
    Case('table-spaces', upd(table_name='"my items"'), 'succeeded', table='spaced'),
    Case('table-quote', upd(table_name='public."we""ird"'), 'succeeded', table='quote'),
    Case('table-unicode', upd(table_name='ünïcødé'), 'succeeded', table='unicode'),
    Case('table-dotted-schema', upd(table_name='"odd.schema"."tab.le"'), 'succeeded',
         table='dotted'),
    Case('table-dotted-unquoted', upd(table_name='odd.schema.tab.le'), 'failed',
         r'resolving the table.*improper (qualified|relation) name'),
    Case('table-missing', upd(table_name='no_such_table'), 'failed',
         r'resolving the table.*relation "no_such_table" does not exist'),
    Case('table-view', upd(table_name='items_view'), 'failed', r'items_view is a view'),
    Case('table-empty', upd(table_name=''), 'rejected', r'jobs_table_name_check'),
    # -- enormous values ------------------------------------------------------
    Case('huge-set-clause',
         upd(set_clause="counter = counter + 1, payload = '" + 'x' * MB + "'"),
         'succeeded', table='items'),
    Case('huge-where-clause', upd(where_clause="counter = 0 AND payload <> '" + 'y' * MB + "'"),
         'succeeded', table='items'),
    # The unique index on name bounds it (compressed) to a few kB.
    Case('huge-name', upd(name='n' * MB), 'rejected', r'index row (size|requires)'),
    Case('long-name', upd(name='n' * 64 * 1024), 'succeeded', table='items'),
    Case('huge-table-name', upd(table_name='t' * MB), 'failed',
         r'resolving the table.*does not exist'),
    Case('huge-statement-no-batch',
         {'table_name': 'items', 'kind': 'sql',
          'statement': 'UPDATE items SET counter = counter + 1 /* ' + 'z' * MB + ' */'},
         'failed', r'statement never mentions "batch"'),
    # -- NULLs ------------------------------------------------------------------
    Case('null-name', upd(name=None), 'rejected', r'null value in column "name"'),
    Case('null-table', upd(table_name=None), 'rejected', r'null value in column "table_name"'),
    Case('null-kind', upd(kind=None), 'rejected', r'null value in column "kind"'),
    Case('null-set-clause', upd(set_clause=None), 'rejected', r'jobs_update_needs_set_clause'),
    Case('null-statement', {'table_name': 'items', 'kind': 'sql', 'statement': None},
         'rejected', r'jobs_sql_needs_statement'),
    Case('null-priority', upd(priority=None), 'rejected', r'null value in column "priority"'),
    Case('null-state', upd(state=None), 'rejected', r'null value in column "state"'),
    Case('null-settings', upd(settings=None), 'rejected', r'null value in column "settings"'),
    Case('null-nullables', upd(where_clause=None, statement=None, key_columns=None,
                               batch_size=None, last_error=None, checkpoint=None,
                               upper_bound=None, rows_estimate=None),
         'succeeded', table='items'),
    # -- kinds --------------------------------------------------------------------
    Case('kind-unknown', upd(kind='delete'), 'rejected', r'jobs_kind_check'),
    Case('kind-uppercase', upd(kind='SQL'), 'rejected', r'jobs_kind_check'),
    Case('kind-injection', upd(kind="sql'; DROP TABLE victim; --"), 'rejected',
         r'jobs_kind_check'),
    # -- kind sql statements ------------------------------------------------------
    Case('statement-no-batch',
         {'table_name': 'items', 'kind': 'sql', 'statement': 'UPDATE items SET counter = 1'},
         'failed', r'statement never mentions "batch"'),
    Case('statement-batch-only-in-comment',
         {'table_name': 'items', 'kind': 'sql',
          'statement': "UPDATE items SET counter = 1 -- batch\n WHERE 'batch' <> ''"},
         'failed', r'statement never mentions "batch"'),
    Case('statement-two-statements',
         {'table_name': 'items', 'kind': 'sql', 'statement': SQL_OK + '; DROP TABLE victim'},
         'failed', r"statement contains a ';'"),
    Case('statement-trailing-semicolons',
         {'table_name': 'items', 'kind': 'sql', 'statement': SQL_OK + ' ;; \n'},
         'succeeded', table='items'),
    Case('statement-escapes-its-cte',
         {'table_name': 'items', 'kind': 'sql',
          'statement': 'SELECT 1 FROM batch), evil AS (DELETE FROM victim RETURNING 1'},
         'failed', r'statement.*parenthes'),
    Case('statement-only-semicolons', {'table_name': 'items', 'kind': 'sql', 'statement': ';\n;'},
         'failed', r'statement is empty'),
    Case('statement-unterminated-quote',
         {'table_name': 'items', 'kind': 'sql', 'statement': SQL_OK + " AND payload = 'x"},
         'failed', r'statement has an unterminated quoted string'),
    # -- clauses that try to leave the batch ---------------------------------------
    Case('set-two-statements', upd(set_clause='counter = counter + 1; DROP TABLE victim'),
         'failed', r"set_clause contains a ';'"),
    Case('set-semicolon-in-comment-and-quotes',
         upd(set_clause="counter = counter + 1, payload = $q$;$q$ || ';' -- ; DROP TABLE victim"),
         'succeeded', table='items'),
    Case('set-only-semicolons', upd(set_clause=' ; ;'), 'failed', r'set_clause.*empty'),
    Case('set-escapes-the-update',
         upd(set_clause='counter = counter + 1 WHERE false RETURNING 1), evil AS '
                        '(DELETE FROM victim RETURNING 1), more AS (UPDATE items SET '
                        'counter = counter'),
         'failed', r'set_clause.*parenthes'),
    Case('set-other-tables-column', upd(set_clause='counter = 1, bystander.counter = 2'),
         'failed', r'batch.*column "bystander" of relation "items" does not exist'),
    Case('set-reads-another-table',
         upd(set_clause='counter = counter + 1 + (SELECT count(*) - count(*) FROM victim)'),
         'succeeded', table='items'),
    Case('where-closes-paren', upd(where_clause='true) OR (true'), 'failed',
         r'where_clause.*parenthes'),
    Case('where-parens-in-strings',
         upd(where_clause="counter = 0 AND payload <> ')' AND payload <> $$($$ AND \")\" IS NULL"),
         'failed', r'batch: column "\)" does not exist'),
    Case('where-balanced-parens-in-strings',
         upd(where_clause="counter = 0 AND (payload <> ')') AND ((payload <> '((('))"),
         'succeeded', table='items'),
    Case('where-opens-paren', upd(where_clause='(true'), 'failed', r'where_clause.*parenthes'),
    Case('where-unterminated-comment', upd(where_clause='true /* OR (true'), 'failed',
         r'where_clause has an unterminated'),
    Case('where-trailing-line-comment', upd(where_clause='counter = 0 -- ) OR (true'), 'succeeded',
         table='items'),
    Case('where-two-statements', upd(where_clause='true; DELETE FROM victim'), 'failed',
         r"where_clause contains a ';'"),
    # -- settings -------------------------------------------------------------------
    Case('settings-wrong-type', upd(settings=json.dumps({'batch_size_min': 'ten'})), 'failed',
         r'settings: batch_size_min must be an integer'),
    Case('settings-unknown-knob', upd(settings=json.dumps({'drop_table': 'victim'})), 'failed',
         r'settings: unknown knob "drop_table"'),
    Case('settings-huge-number', upd(settings='{"batch_size_max": 99999999999999999999999}'),
         'failed', r'settings: (not valid JSON|batch_size_max must be an integer)'),
    Case('settings-int64-max', upd(settings=json.dumps({'lock_timeout_ms': 2**63 - 1})),
         'failed', r'lock_timeout_ms must be between 1 and \d+ ms, got 9223372036854775807'),
    Case('settings-float', upd(settings=json.dumps({'batch_target_ms': 2.5})), 'failed',
         r'settings: batch_target_ms must be an integer'),
    # jsonb spells 1e300 out as a 301-digit integer.
    Case('settings-1e300', upd(settings=json.dumps({'batch_target_ms': 1e300})), 'failed',
         r'settings: not valid JSON: too big integer'),
    Case('settings-negative', upd(settings=json.dumps({'statement_timeout_ms': -1})), 'failed',
         r'statement_timeout_ms must be between 1 and \d+ ms, got -1'),
    Case('settings-bounds-reversed',
         upd(settings=json.dumps({'batch_size_min': 500, 'batch_size_max': 10})), 'failed',
         r'settings: batch_size_min \(500\) is greater than batch_size_max \(10\)'),
    Case('settings-nested', upd(settings=json.dumps({'batch_size_max': {'a': [1]}})), 'failed',
         r'settings: batch_size_max must be an integer'),
    Case('settings-array', upd(settings='[]'), 'rejected', r'jobs_settings_object'),
    Case('settings-json-null', upd(settings='null'), 'rejected', r'jobs_settings_object'),
    # -- numbers --------------------------------------------------------------------
    Case('batch-size-zero', upd(batch_size=0), 'rejected', r'jobs_batch_size_check'),
    Case('batch-size-negative', upd(batch_size=-5), 'rejected', r'jobs_batch_size_check'),
    Case('batch-size-max', upd(batch_size=2**31 - 1), 'succeeded', table='items'),
    Case('priority-min', upd(priority=-2**31), 'succeeded', table='items'),
    Case('priority-max', upd(priority=2**31 - 1), 'succeeded', table='items'),
    # -- the author and what it vouches for (tests/test_trust.py has the rest) -------
    # The row cannot name its author: the schema records who inserted it.
    Case('created-by-claimed', upd(created_by='nobody; DROP TABLE victim'), 'succeeded',
         table='items'),
    Case('allow-triggers-null', upd(allow_triggers=None), 'rejected',
         r'null value in column "allow_triggers"'),
    # -- control characters -----------------------------------------------------------
    Case('name-control-characters',
         upd(name='evil\nFAKE 2026-01-01T00:00:00.000 error: forged\r\x1b[31mred\x07\x7f\t!'),
         'succeeded', table='items'),
]

CONTROL_NAME = CASES[-1].columns['name']


# -- the module's database and daemon ------------------------------------------

@pytest.fixture(scope='module')
def env(pg, tmp_path_factory):
    """(conn, daemon): a database with the tables above and a daemon on it
    that fails a job after two failed attempts."""
    name = 't_hostile_jobs'
    pg.drop_database(name)
    pg.create_database(name)
    conn = pg.connect(name)
    for statement in SETUP:
        conn.execute(statement)
    conn.execute('ANALYZE')
    daemon = Daemon(pg, name, tmp_path_factory.mktemp('hostile'), {
        'retry': {'initial_ms': 20, 'max_ms': 200, 'max_failures': 2},
        'engine': {'poll_interval_ms': 200},
    }, name='hostile')
    daemon.start().wait_ready(30)
    try:
        yield conn, daemon
    finally:
        code = daemon.stop(timeout=30)
        conn.close()
        pg.drop_database(name)
    problems = [f'exited {code} on SIGTERM'] if code != 0 else []
    problems += daemon.sanitizer_reports()
    assert not problems, f'daemon problems: {problems}\n{tail(daemon.log(), 100)}'


def snapshot(conn):
    """What must not change behind a job's back: every user table's contents
    (as a hash) and every object of the database outside pg_catalog,
    information_schema and pg_toast."""
    tables = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', "
        "'backfill') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1").fetchall()
    contents = {}
    for (table,) in tables:
        contents[table] = conn.execute(
            sql.SQL('SELECT count(*), md5(coalesce(string_agg(t::text, {} ORDER BY t::text), {})) '
                    'FROM {} t').format(sql.Literal('|'), sql.Literal(''),
                                        sql.SQL(table))).fetchone()
    objects = conn.execute(
        "SELECT array_agg(x ORDER BY x) FROM ("
        " SELECT 'class ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text AS x"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        "   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
        " UNION ALL SELECT 'proc ' || p.oid::regprocedure::text FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " UNION ALL SELECT 'schema ' || nspname FROM pg_namespace"
        " UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text"
        " FROM pg_trigger"
        " UNION ALL SELECT 'role ' || rolname FROM pg_roles) o").fetchone()[0]
    return contents, objects


def qualified(key):
    names = {'keyed': 'public.keyed', 'items': 'public.items', 'mixed': 'public."Items Mixed"',
             'spaced': 'public."my items"', 'quote': 'public."we""ird"',
             'unicode': 'public."ünïcødé"', 'dotted': '"odd.schema"."tab.le"',
             'injected_name': 'public."items; DROP TABLE victim"', 'canary': 'public.canary'}
    return names[key]


def check_untouched(conn, before, touches, what):
    contents, objects = snapshot(conn)
    assert objects == before[1], (
        f'{what}: objects changed: gone {sorted(set(before[1]) - set(objects))}, '
        f'new {sorted(set(objects) - set(before[1]))}')
    allowed = {qualified(t) for t in touches}
    changed = sorted(t for t in before[0] if contents.get(t) != before[0][t] and t not in allowed)
    assert not changed, f'{what}: tables changed that the job does not name: {changed}'
    assert conn.execute('SELECT id, secret FROM victim ORDER BY id').fetchall() == [
        (1, 'alpha'), (2, 'beta'), (3, 'gamma')], what


def insert(conn, columns):
    columns = dict(columns)
    columns.setdefault('name', 'job')
    return insert_job(conn, **columns)


def short(text, n=300):
    text = repr(text)
    return text if len(text) <= n else text[:n] + '...'


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_hostile_job(env, case):
    conn, daemon = env
    assert daemon.alive(), f'the daemon died before this case:\n{tail(daemon.log(), 60)}'
    number = CASES.index(case)
    columns = dict(case.columns)
    if 'name' not in columns:
        columns['name'] = f'case {number} {case.id}'
    if case.table and case.table != 'keyed':
        conn.execute(sql.SQL('UPDATE {} SET counter = 0').format(sql.SQL(WALKED[case.table])))
    elif case.table == 'keyed':
        conn.execute('UPDATE keyed SET counter = 0')
    before = snapshot(conn)
    log_at = len(daemon.log())

    if case.outcome == 'rejected':
        with pytest.raises(psycopg.Error) as caught:
            insert(conn, columns)
        assert re.search(case.expect, str(caught.value)), (
            f'{case.id}: INSERT refused with {caught.value!r}, want /{case.expect}/')
    else:
        insert(conn, columns)
        try:
            row = wait_job_state(conn, columns['name'], {'succeeded', 'failed', 'cancelled'},
                                 timeout=30, daemons=[daemon])
        except AssertionError as exc:
            raise AssertionError(f'{case.id}: {str(exc)[:3000]}') from None
        if case.outcome == 'failed':
            assert row['state'] == 'failed', (
                f"{case.id}: ended {row['state']} ({short(row['last_error'])}), want failed")
            assert row['last_error'] and re.search(case.expect, row['last_error']), (
                f"{case.id}: last_error {short(row['last_error'], 1000)}, want /{case.expect}/")
            assert row['rows_updated'] == 0, f'{case.id}: a failed job updated rows'
        else:
            assert row['state'] == 'succeeded', (
                f"{case.id}: ended {row['state']}: {short(row['last_error'], 1000)}")
            target = WALKED.get(case.table, case.table)
            assert row['rows_scanned'] == ROWS and row['rows_updated'] == ROWS, row['rows_scanned']
            assert_each_row_once(conn, target, ROWS)

    check_untouched(conn, before, case.touches, case.id)
    check_log_lines(daemon.log()[log_at:], case.id)
    check_status(daemon, case.id)
    check_canary(conn, daemon, number)


LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (debug|info|notice|warning|error): ')


def check_log_lines(log, what):
    """Every line the daemon wrote is one record: a timestamp and a level
    first, and no control character that a terminal would act on."""
    for line in log.splitlines():
        if line.startswith('===== tests:'):
            continue
        assert LOG_LINE.match(line), f'{what}: a log line without its prefix: {short(line)}'
        assert not re.search(r'[\x00-\x08\x0b-\x1f\x7f]', line), (
            f'{what}: a control character in a log line: {short(line)}')


def check_status(daemon, what):
    """status --json parses and lists the jobs; the text form renders as
    table lines without raw control characters."""
    status = daemon.ctl_json('status', timeout=30)
    assert status['daemon']['pid'] == daemon.pid, what
    for job in status['jobs']:
        assert {'name', 'state', 'progress'} <= set(job), job
    text = daemon.ctl('status', timeout=30, check=0).stdout
    assert not re.search(r'[\x00-\x08\x0b-\x1f\x7f]', text), (
        f'{what}: control characters in status output: {short(text, 2000)}')


def check_canary(conn, daemon, number):
    """The daemon still completes an ordinary job."""
    conn.execute('UPDATE canary SET counter = 0')
    name = f'canary after case {number}'
    insert_job(conn, name=name, table_name='canary', set_clause='counter = counter + 1')
    row = wait_job_state(conn, name, {'succeeded', 'failed', 'cancelled'}, timeout=30,
                         daemons=[daemon])
    assert row['state'] == 'succeeded', f"canary {row['state']}: {row['last_error']}"
    assert_each_row_once(conn, 'canary', ROWS)


def test_control_characters_never_reach_a_log_line_raw(env):
    """The name with a newline, a forged log prefix and terminal escapes
    (case name-control-characters) was logged, but only inside one line."""
    conn, daemon = env
    if not job_row(conn, CONTROL_NAME):
        pytest.skip('the control-character case did not run')
    log = daemon.log()
    assert 'forged' in log
    for line in log.splitlines():
        if 'forged' in line:
            assert not line.startswith('FAKE'), line
            assert 'evil' in line, f'the name was split across lines: {short(line)}'
    status = daemon.ctl_json('status', timeout=30)
    assert CONTROL_NAME in [j['name'] for j in status['jobs']]
    wait_for(lambda: daemon.alive(), 1, what='the daemon alive')


def test_paused_job_with_a_long_unicode_name_shows_why(env):
    """A paused job's reason quotes its name; a long name of multi-byte
    characters is cut on a character boundary, never dropped."""
    conn, daemon = env
    name = 'é' * 700          # 1400 bytes
    insert_job(conn, name=name, table_name='items', set_clause='counter = counter + 1',
               state='paused')
    try:
        status = daemon.ctl_json('status', timeout=30)
        job = next(j for j in status['jobs'] if j['name'] == name)
        assert job['throttled'] is True, job
        assert any(r.startswith('paused: this job is paused (backfillctl resume éé')
                   and r.endswith('...)') for r in job['throttle_reasons']), job
    finally:
        conn.execute("UPDATE backfill.jobs SET state = 'cancelled' WHERE name = %s", (name,))
