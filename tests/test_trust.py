"""Code on a walked table that someone else controls does not run as the daemon.

The finding (issue 13): mallory owns `orders` but may not schedule jobs. Her
BEFORE UPDATE trigger on it ran as the daemon's role during alice's ordinary
backfill of `orders`, copied `payroll` (which the daemon may read and
update) into a table of hers and inserted a job that zeroed it.

Now a job is refused at resolve when its table carries code that would run
as the daemon during a batch (triggers, SECURITY DEFINER ones too, rules,
row security policies, functions that its constraints, indexes, generated
columns and domains call) and that a role controls which is neither the
job's author (created_by, recorded by the schema) nor able to act as the
daemon already (a superuser). The author vouches with allow_triggers.

One server of the module's own (the roles are cluster-wide), set up with
config/roles.sql as tests/test_roles.py does, and one daemon running as its
least-privilege role serve every test; each test walks tables of its own.
"""

import re

import pytest

from daemon import Daemon, insert_job, job_row, tail, wait_for, wait_job_state
from pgserver import PgServer
from test_roles import ADMIN_ROLE, DAEMON_ROLE, connect_as, run_roles_sql

SCHEDULER = 'alice'     # member of backfilld_admin: may schedule jobs
OWNER = 'mallory'       # owns tables, may not schedule jobs
ROWS = 40
ENDED = {'succeeded', 'failed', 'cancelled'}


@pytest.fixture(scope='module')
def env(pg_base_dir, tmp_path_factory):
    """(server, superuser connection, daemon): database "app" prepared by
    roles.sql, roles alice and mallory, each with a schema of their own,
    and the daemon running as the role of roles.sql."""
    server = PgServer(pg_base_dir, name='trust').init().start()
    daemon = None
    try:
        server.create_database('app')
        conn = server.connect('app')
        run_roles_sql(server, 'app')
        conn.execute(f'CREATE ROLE {SCHEDULER} LOGIN IN ROLE {ADMIN_ROLE}')
        conn.execute(f'CREATE ROLE {OWNER} LOGIN')
        for role in (SCHEDULER, OWNER):
            conn.execute(f'CREATE SCHEMA {role} AUTHORIZATION {role}')
            conn.execute(f'GRANT USAGE ON SCHEMA {role} TO PUBLIC')
        daemon = Daemon(server, 'app', tmp_path_factory.mktemp('trust'), {
            'database': {'conninfo': f'host={server.host} port={server.port} '
                                     f'user={DAEMON_ROLE} dbname=app'},
            'engine': {'poll_interval_ms': 200},
            'retry': {'initial_ms': 20, 'max_ms': 200, 'max_failures': 2},
        }, name='trust')
        daemon.start().wait_ready(30)
        yield server, conn, daemon
        code = daemon.stop(timeout=30)
        problems = [f'exited {code} on SIGTERM'] if code != 0 else []
        problems += daemon.sanitizer_reports()
        assert not problems, f'daemon problems: {problems}\n{tail(daemon.log(), 100)}'
    finally:
        if daemon and daemon.alive():
            daemon.kill()
        server.destroy()


def table_of(conn, owner, table, *extra_columns):
    """owner.table (id, counter) with ROWS rows, owned by owner, and the
    daemon's grants as section 4 of roles.sql says (made by its owner)."""
    columns = ', '.join(['id bigint PRIMARY KEY', 'counter int NOT NULL DEFAULT 0',
                         *extra_columns])
    conn.execute(f'CREATE TABLE {owner}.{table} ({columns})')
    conn.execute(f'INSERT INTO {owner}.{table} (id) SELECT generate_series(1, {ROWS})')
    conn.execute(f'ALTER TABLE {owner}.{table} OWNER TO {owner}')
    conn.execute(f'GRANT SELECT, UPDATE ON {owner}.{table} TO {DAEMON_ROLE}')


def as_role(conn, role, *statements):
    """statements run as role, on the superuser's connection."""
    conn.execute(f'SET ROLE {role}')
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.execute('RESET ROLE')


def schedule(server, name, table, **columns):
    """alice schedules a counter job on table, as herself."""
    with connect_as(server, 'app', SCHEDULER) as alice:
        insert_job(alice, name=name, table_name=table, set_clause='counter = counter + 1',
                   **columns)


def vouch(server, name):
    """alice reviews the code and vouches for it: what the refusal says to do."""
    with connect_as(server, 'app', SCHEDULER) as alice:
        alice.execute("UPDATE backfill.jobs SET allow_triggers = true, state = 'pending' "
                      "WHERE name = %s", (name,))


def ended(conn, name):
    return wait_job_state(conn, name, ENDED, timeout=30)


def refused(conn, name):
    """The job failed at resolve, before any batch: its last_error."""
    row = ended(conn, name)
    assert row['state'] == 'failed', row
    assert row['batches'] == 0 and row['rows_scanned'] == 0, row
    assert 'would run as the daemon\'s role' in (row['last_error'] or ''), row
    return row['last_error']


def succeeded(conn, name, table):
    row = ended(conn, name)
    assert row['state'] == 'succeeded', row['last_error']
    counts = conn.execute(f'SELECT counter, count(*) FROM {table} GROUP BY 1').fetchall()
    assert counts == [(1, ROWS)], counts
    return row


def count(conn, query):
    return conn.execute(query).fetchone()[0]


# The attack: copy payroll into a table of mallory's, and schedule a job
# that zeroes it, as whoever runs the trigger.
AUDIT_FUNCTION = f"""
CREATE FUNCTION {OWNER}.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {OWNER}.stolen SELECT id, salary FROM public.payroll ON CONFLICT DO NOTHING;
  INSERT INTO backfill.jobs (name, table_name, set_clause)
    VALUES ('zero-payroll', 'public.payroll', 'salary = 0') ON CONFLICT DO NOTHING;
  RETURN NEW;
END $$
"""


def test_a_table_owners_trigger_does_not_run_as_the_daemon(env):
    server, conn, daemon = env
    conn.execute('CREATE TABLE payroll (id int PRIMARY KEY, salary int NOT NULL)')
    conn.execute('INSERT INTO payroll SELECT g, 1000 * g FROM generate_series(1, 5) g')
    conn.execute(f'GRANT SELECT, UPDATE ON payroll TO {DAEMON_ROLE}')
    table_of(conn, OWNER, 'orders')
    as_role(conn, OWNER,
            f'CREATE TABLE {OWNER}.stolen (id int PRIMARY KEY, salary int)',
            f'GRANT INSERT ON {OWNER}.stolen TO PUBLIC',
            AUDIT_FUNCTION,
            f'CREATE TRIGGER orders_audit BEFORE UPDATE ON {OWNER}.orders '
            f'FOR EACH ROW EXECUTE FUNCTION {OWNER}.audit()')

    schedule(server, 'fill-orders', f'{OWNER}.orders')
    error = refused(conn, 'fill-orders')
    assert error.startswith(f'table {OWNER}.orders has code that would run as the daemon\'s '
                            f'role during the backfill and is controlled by role "{OWNER}", '
                            f'not by the job\'s author "{SCHEDULER}": trigger "orders_audit" '
                            f'(function {OWNER}.audit())'), error
    assert ("set allow_triggers = true on the job and resume it (UPDATE backfill.jobs SET "
            "allow_triggers = true, state = 'pending' WHERE name = 'fill-orders')") in error, error
    # backfillctl plan runs a batch (rolled back): refused the same way.
    plan = daemon.ctl('plan', 'fill-orders')
    assert plan.returncode != 0 and 'controlled by role "mallory"' in plan.stderr, plan
    # The trigger never ran: nothing copied, no job, payroll as it was.
    assert count(conn, f'SELECT count(*) FROM {OWNER}.stolen') == 0
    assert job_row(conn, 'zero-payroll') is None
    assert count(conn, 'SELECT sum(salary) FROM payroll') == 15000
    assert count(conn, f'SELECT count(*) FROM {OWNER}.orders WHERE counter <> 0') == 0
    assert job_row(conn, 'fill-orders')['created_by'] == SCHEDULER

    # alice reviews the trigger and vouches for it: it runs, as the daemon
    # (that is what she vouched for), and the job it inserts says so.
    vouch(server, 'fill-orders')
    succeeded(conn, 'fill-orders', f'{OWNER}.orders')
    assert count(conn, f'SELECT count(*) FROM {OWNER}.stolen') == 5
    assert job_row(conn, 'zero-payroll')['created_by'] == DAEMON_ROLE
    conn.execute("UPDATE backfill.jobs SET state = 'cancelled' WHERE name = 'zero-payroll'")
    assert daemon.alive()


def test_code_the_author_controls_runs_without_allow_triggers(env):
    server, conn, daemon = env
    # alice's own table, trigger and function.
    table_of(conn, SCHEDULER, 'notes')
    as_role(conn, SCHEDULER,
            f'CREATE TABLE {SCHEDULER}.seen (id bigint)',
            f'GRANT INSERT ON {SCHEDULER}.seen TO {DAEMON_ROLE}',
            f'CREATE FUNCTION {SCHEDULER}.note() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f'BEGIN INSERT INTO {SCHEDULER}.seen VALUES (NEW.id); RETURN NEW; END $$',
            f'CREATE TRIGGER notes_seen BEFORE UPDATE ON {SCHEDULER}.notes '
            f'FOR EACH ROW EXECUTE FUNCTION {SCHEDULER}.note()')
    schedule(server, 'fill-notes', f'{SCHEDULER}.notes')
    succeeded(conn, 'fill-notes', f'{SCHEDULER}.notes')
    assert count(conn, f'SELECT count(*) FROM {SCHEDULER}.seen') == ROWS

    # A superuser's trigger: whoever controls it could be the daemon anyway.
    conn.execute('CREATE TABLE public.ledger (id bigint PRIMARY KEY, '
                 'counter int NOT NULL DEFAULT 0)')
    conn.execute(f'INSERT INTO public.ledger (id) SELECT generate_series(1, {ROWS})')
    conn.execute(f'GRANT SELECT, UPDATE ON public.ledger TO {DAEMON_ROLE}')
    conn.execute('CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ '
                 'BEGIN RETURN NEW; END $$')
    conn.execute('CREATE TRIGGER ledger_touch BEFORE UPDATE ON public.ledger '
                 'FOR EACH ROW EXECUTE FUNCTION public.touch()')
    schedule(server, 'fill-ledger', 'public.ledger')
    succeeded(conn, 'fill-ledger', 'public.ledger')

    # mallory's table with constraints, defaults and indexes of built-ins
    # only: nothing runs that she could turn against the daemon.
    table_of(conn, OWNER, 'plain', "note text NOT NULL DEFAULT 'x' || now()::text "
                                   'CHECK (length(note) > 0)')
    as_role(conn, OWNER, f'CREATE INDEX ON {OWNER}.plain (lower(note))')
    schedule(server, 'fill-plain', f'{OWNER}.plain')
    succeeded(conn, 'fill-plain', f'{OWNER}.plain')


# (table, its owner, its extra column, run as mallory, run as the table's
# owner, the object the refusal names). Each is then vouched for and walks,
# except the rule: PostgreSQL refuses DO ALSO rules in the batch's WITH.
EXPRESSIONS = [
    # alice's table; the function its constraint calls is mallory's.
    ('checked', SCHEDULER, None, [
        f'CREATE FUNCTION {OWNER}.valid(int) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$',
    ], [
        f'ALTER TABLE {SCHEDULER}.checked ADD CONSTRAINT checked_valid '
        f'CHECK ({OWNER}.valid(counter))',
    ], f'check constraint "checked_valid" (function {OWNER}.valid(integer))'),
    # mallory's table; a built-in that reads any table the daemon may read.
    ('leaky', OWNER, None, [], [
        f'ALTER TABLE {OWNER}.leaky ADD CONSTRAINT leaky_read '
        "CHECK (length(table_to_xml('pg_catalog.pg_am', true, false, '')::text) > 0)",
    ], 'check constraint "leaky_read"'),
    # alice's table; a column of mallory's domain.
    ('typed', SCHEDULER, f'amount {OWNER}.amount', [
        f'CREATE FUNCTION {OWNER}.positive(int) RETURNS boolean LANGUAGE sql IMMUTABLE '
        'AS $$ SELECT $1 >= 0 $$',
        f'CREATE DOMAIN {OWNER}.amount AS int CHECK ({OWNER}.positive(VALUE))',
    ], [], f'domain {OWNER}.amount (constraint "amount_check") '
           f'(function {OWNER}.positive(integer))'),
    # alice's table; an index on a function of mallory's.
    ('indexed', SCHEDULER, None, [
        f'CREATE FUNCTION {OWNER}.twice(int) RETURNS int LANGUAGE sql IMMUTABLE '
        'AS $$ SELECT 2 * $1 $$',
    ], [
        f'CREATE INDEX indexed_twice ON {SCHEDULER}.indexed ({OWNER}.twice(counter))',
    ], f'index "indexed_twice" (function {OWNER}.twice(integer))'),
    # mallory's table; a rule.
    ('ruled', OWNER, None, [], [
        f'CREATE RULE ruled_notify AS ON UPDATE TO {OWNER}.ruled DO ALSO NOTIFY ruled',
    ], 'rule "ruled_notify"'),
]


@pytest.mark.parametrize('table, owner, column, by_mallory, by_owner, named', EXPRESSIONS,
                         ids=[case[0] for case in EXPRESSIONS])
def test_functions_that_constraints_call_count_as_code(env, table, owner, column, by_mallory,
                                                       by_owner, named):
    server, conn, daemon = env
    as_role(conn, OWNER, *by_mallory)
    table_of(conn, owner, table, *([column] if column else []))
    as_role(conn, owner, *by_owner)
    schedule(server, f'fill-{table}', f'{owner}.{table}')
    error = refused(conn, f'fill-{table}')
    assert f'controlled by role "{OWNER}"' in error and named in error, error

    vouch(server, f'fill-{table}')
    if table != 'ruled':
        succeeded(conn, f'fill-{table}', f'{owner}.{table}')
        return
    row = ended(conn, f'fill-{table}')
    assert 'DO ALSO rules are not supported' in row['last_error'], row['last_error']


def test_the_refusal_names_every_stranger_and_its_remedy_works_as_written(env):
    server, conn, daemon = env
    conn.execute('CREATE ROLE bob')
    conn.execute('CREATE SCHEMA bob AUTHORIZATION bob')
    conn.execute('GRANT USAGE ON SCHEMA bob TO PUBLIC')
    as_role(conn, 'bob', 'CREATE FUNCTION bob.fine(int) RETURNS boolean LANGUAGE sql '
                         'AS $$ SELECT true $$')
    table_of(conn, OWNER, 'crowded')
    as_role(conn, OWNER,
            f'CREATE FUNCTION {OWNER}.pass() RETURNS trigger LANGUAGE plpgsql AS $$ '
            'BEGIN RETURN NEW; END $$',
            *[f'CREATE TRIGGER crowded_{n} BEFORE UPDATE ON {OWNER}.crowded '
              f'FOR EACH ROW EXECUTE FUNCTION {OWNER}.pass()' for n in range(1, 5)],
            f'ALTER TABLE {OWNER}.crowded ADD CONSTRAINT crowded_fine CHECK (bob.fine(id::int))')
    name = "it's crowded"
    schedule(server, name, f'{OWNER}.crowded')
    error = refused(conn, name)
    assert f'controlled by roles "bob", "{OWNER}", not by the job\'s author' in error, error
    assert ': trigger "crowded_1" (function mallory.pass()), trigger "crowded_2" ' in error, error
    assert 'crowded_4' not in error and ' and 2 more; review it' in error, error
    # What it says to run, run as written (the name quoted by the server).
    remedy = re.search(r'\((UPDATE backfill\.jobs SET .*)\)$', error).group(1)
    assert remedy.endswith("WHERE name = 'it''s crowded'"), remedy
    with connect_as(server, 'app', SCHEDULER) as alice:
        assert alice.execute(remedy).rowcount == 1
    succeeded(conn, name, f'{OWNER}.crowded')


def test_a_partitions_trigger_counts(env):
    server, conn, daemon = env
    conn.execute(f'CREATE TABLE {SCHEDULER}.parted (id bigint PRIMARY KEY, '
                 'counter int NOT NULL DEFAULT 0) PARTITION BY RANGE (id)')
    conn.execute(f'CREATE TABLE {SCHEDULER}.parted_low PARTITION OF {SCHEDULER}.parted '
                 'FOR VALUES FROM (0) TO (20)')
    conn.execute(f'CREATE TABLE {OWNER}.parted_high PARTITION OF {SCHEDULER}.parted '
                 'FOR VALUES FROM (20) TO (MAXVALUE)')
    conn.execute(f'INSERT INTO {SCHEDULER}.parted (id) SELECT generate_series(1, {ROWS})')
    conn.execute(f'ALTER TABLE {SCHEDULER}.parted OWNER TO {SCHEDULER}')
    conn.execute(f'ALTER TABLE {SCHEDULER}.parted_low OWNER TO {SCHEDULER}')
    conn.execute(f'ALTER TABLE {OWNER}.parted_high OWNER TO {OWNER}')
    conn.execute(f'GRANT SELECT, UPDATE ON {SCHEDULER}.parted TO {DAEMON_ROLE}')
    as_role(conn, OWNER,
            f'CREATE FUNCTION {OWNER}.high() RETURNS trigger LANGUAGE plpgsql AS $$ '
            'BEGIN RETURN NEW; END $$',
            f'CREATE TRIGGER parted_high_t BEFORE UPDATE ON {OWNER}.parted_high '
            f'FOR EACH ROW EXECUTE FUNCTION {OWNER}.high()')
    schedule(server, 'fill-parted', f'{SCHEDULER}.parted')
    error = refused(conn, 'fill-parted')
    assert (f'trigger "parted_high_t" on partition {OWNER}.parted_high '
            f'(function {OWNER}.high())') in error, error


def test_a_security_definer_trigger_counts_too(env):
    # It runs as mallory, but inside the daemon's session: a session-wide
    # search_path it sets makes the daemon's later statements call her
    # functions, as the daemon.
    server, conn, daemon = env
    table_of(conn, OWNER, 'definer')
    as_role(conn, OWNER,
            f'CREATE FUNCTION {OWNER}.sneak() RETURNS trigger LANGUAGE plpgsql '
            f'SECURITY DEFINER AS $$ BEGIN '
            f"PERFORM set_config('search_path', '{OWNER}, pg_catalog', false); "
            f'RETURN NEW; END $$',
            f'CREATE TRIGGER definer_sneak AFTER UPDATE ON {OWNER}.definer '
            f'FOR EACH ROW EXECUTE FUNCTION {OWNER}.sneak()')
    schedule(server, 'fill-definer', f'{OWNER}.definer')
    error = refused(conn, 'fill-definer')
    assert f'trigger "definer_sneak" (function {OWNER}.sneak())' in error, error


def test_row_security_policies_count_unless_they_run_nothing(env):
    server, conn, daemon = env
    table_of(conn, OWNER, 'guarded')
    # What roles.sql suggests for a table with row security: runs nothing.
    as_role(conn, OWNER,
            f'ALTER TABLE {OWNER}.guarded ENABLE ROW LEVEL SECURITY',
            f'CREATE POLICY backfilld_all ON {OWNER}.guarded TO {DAEMON_ROLE} '
            'USING (true) WITH CHECK (true)',
            # Not the daemon's: never applied to its statements.
            f'CREATE POLICY others ON {OWNER}.guarded TO {SCHEDULER} '
            'USING (EXISTS (SELECT FROM pg_catalog.pg_class))')
    schedule(server, 'fill-guarded', f'{OWNER}.guarded')
    succeeded(conn, 'fill-guarded', f'{OWNER}.guarded')

    # A policy whose expression runs a query, as the daemon.
    as_role(conn, OWNER,
            f'CREATE POLICY peek ON {OWNER}.guarded AS RESTRICTIVE TO PUBLIC '
            'USING (EXISTS (SELECT FROM pg_catalog.pg_class))')
    schedule(server, 'again-guarded', f'{OWNER}.guarded')
    error = refused(conn, 'again-guarded')
    assert 'row security policy "peek"' in error and 'backfilld_all' not in error, error


def test_code_added_while_a_job_is_paused_is_caught_at_resume(env):
    server, conn, daemon = env
    table_of(conn, OWNER, 'growing')
    conn.execute('CREATE OR REPLACE FUNCTION public.test_pause(ms float8) RETURNS int '
                 'LANGUAGE sql VOLATILE AS $$ SELECT 0 FROM pg_sleep(ms / 1000.0) $$')
    with connect_as(server, 'app', SCHEDULER) as alice:
        insert_job(alice, name='fill-growing', table_name=f'{OWNER}.growing', batch_size=5,
                   settings='{"batch_size_min": 5, "batch_size_max": 5}',
                   set_clause='counter = counter + 1 + test_pause(20)')
        wait_for(lambda: job_row(conn, 'fill-growing')['batches'] >= 1, 30,
                 what='a first batch')
        alice.execute("UPDATE backfill.jobs SET state = 'paused' WHERE name = 'fill-growing'")
        wait_for(lambda: job_row(conn, 'fill-growing')['owner'] is None, 10,
                 what='the job let go')
    scanned = job_row(conn, 'fill-growing')['rows_scanned']
    assert 0 < scanned < ROWS
    as_role(conn, OWNER,
            f'CREATE TABLE {OWNER}.log (id bigint)',
            f'GRANT INSERT ON {OWNER}.log TO PUBLIC',
            f'CREATE FUNCTION {OWNER}.record() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f'BEGIN INSERT INTO {OWNER}.log VALUES (NEW.id); RETURN NEW; END $$',
            f'CREATE TRIGGER growing_log BEFORE UPDATE ON {OWNER}.growing '
            f'FOR EACH ROW EXECUTE FUNCTION {OWNER}.record()')
    daemon.ctl('resume', 'fill-growing', check=0)
    row = ended(conn, 'fill-growing')
    assert row['state'] == 'failed' and 'trigger "growing_log"' in row['last_error'], row
    assert row['rows_scanned'] == scanned, row
    assert count(conn, f'SELECT count(*) FROM {OWNER}.log') == 0


def test_a_job_without_a_recorded_author_controls_nothing(env):
    server, conn, daemon = env
    table_of(conn, OWNER, 'legacy')
    as_role(conn, OWNER,
            f'CREATE FUNCTION {OWNER}.noop() RETURNS trigger LANGUAGE plpgsql AS $$ '
            'BEGIN RETURN NEW; END $$',
            f'CREATE TRIGGER legacy_noop BEFORE UPDATE ON {OWNER}.legacy '
            f'FOR EACH ROW EXECUTE FUNCTION {OWNER}.noop()')
    # A row from before schema 3 had no author: as if the trigger had not
    # run (a superuser's session, so the job's own triggers are not ours).
    with conn.transaction():
        conn.execute('ALTER TABLE backfill.jobs DISABLE TRIGGER jobs_created_by')
        insert_job(conn, name='fill-legacy', table_name=f'{OWNER}.legacy',
                   set_clause='counter = counter + 1')
        conn.execute('ALTER TABLE backfill.jobs ENABLE TRIGGER jobs_created_by')
    assert job_row(conn, 'fill-legacy')['created_by'] is None
    error = refused(conn, 'fill-legacy')
    assert "not by the job's author (not recorded" in error, error


def test_the_author_is_recorded_not_claimed(env):
    server, conn, daemon = env
    table_of(conn, SCHEDULER, 'claimed')
    with connect_as(server, 'app', SCHEDULER) as alice:
        insert_job(alice, name='fill-claimed', table_name=f'{SCHEDULER}.claimed',
                   set_clause='counter = counter + 1', created_by='postgres',
                   state='paused')
        assert job_row(alice, 'fill-claimed')['created_by'] == SCHEDULER
        alice.execute("UPDATE backfill.jobs SET created_by = 'postgres' "
                      "WHERE name = 'fill-claimed'")
        assert job_row(alice, 'fill-claimed')['created_by'] == SCHEDULER
        alice.execute("UPDATE backfill.jobs SET state = 'cancelled' WHERE name = 'fill-claimed'")
