"""config/roles.sql: the daemon runs as the least-privilege role it creates.

On a server of its own, the test runs the script with psql as the superuser,
grants the daemon role its tables as section 4 of the script says, and runs
the daemon as that role: it creates and migrates its schema, runs an update
and a sql job exactly once, reads the throttle's replication signals
(pg_read_all_stats, the least that shows them), cancels its own batch (pause --now), and fails a job on a table
it was not granted with the permission error in last_error while the other
jobs go on. Then, connected as the role itself, it is shown to have nothing
more. Jobs are scheduled by a member of the script's jobs_admin group role.
Run again over an older setup that granted pg_monitor, the script takes it
back.

Also: a malformed conninfo is refused at start without quoting it, since
libpq's parse errors can quote a password.
"""

import re
import subprocess
import time

import psycopg
import pytest
from psycopg import errors

from daemon import (BACKFILLD, REPO_ROOT, insert_job, job_row, merge_config, wait_for,
                    wait_job_state)
from pgserver import PG_BIN, Database
from workload import assert_each_row_once, counter_job, counter_table, wait_succeeded

ROLES_SQL = REPO_ROOT / 'config' / 'roles.sql'
DAEMON_ROLE = 'backfilld'           # the script's defaults
ADMIN_ROLE = 'backfilld_admin'
SCHEDULER = 'alice'                 # a person allowed to schedule jobs
GHOST = 'ghost'                     # an expected standby that never comes
SAMPLE_MS = 200

# Section 4 of roles.sql, for this test's tables.
TABLE_GRANTS = [
    # kind update on items, and on slow
    f'GRANT SELECT, UPDATE ON public.items TO {DAEMON_ROLE}',
    f'GRANT SELECT, UPDATE ON public.slow TO {DAEMON_ROLE}',
    # kind sql walking users, copying into copies (INSERT ... ON CONFLICT DO UPDATE)
    f'GRANT SELECT, UPDATE ON public.users TO {DAEMON_ROLE}',
    f'GRANT SELECT, INSERT, UPDATE ON public.copies TO {DAEMON_ROLE}',
]

# A copy that shows every row exactly once: a key copied twice counts 2.
COPY_STATEMENT = ('INSERT INTO copies (id, counter) '
                  'SELECT u.id, 1 FROM users u JOIN batch USING (id) '
                  'ON CONFLICT (id) DO UPDATE SET counter = copies.counter + 1')

# What current_user owns: schemas, and relations and functions outside
# "backfill" (TOAST tables, owned with their table, left out).
OWNED_SQL = """
SELECT 'schema ' || nspname FROM pg_namespace WHERE nspowner = current_user::regrole
UNION ALL
SELECT 'relation ' || oid::regclass::text FROM pg_class
 WHERE relowner = current_user::regrole
   AND relnamespace NOT IN ('backfill'::regnamespace, 'pg_toast'::regnamespace)
UNION ALL
SELECT 'function ' || oid::regprocedure::text FROM pg_proc
 WHERE proowner = current_user::regrole AND pronamespace <> 'backfill'::regnamespace
"""


@pytest.fixture
def app(own_pg):
    """Database "app" on a server of the test's own: the roles the script
    makes are cluster-wide, and go with the server."""
    own_pg.create_database('app')
    database = Database(own_pg, 'app')
    yield database
    database.conn.close()


def run_roles_sql(server, dbname, *variables):
    """psql -f config/roles.sql as the superuser; its output (it must succeed)."""
    cmd = [str(PG_BIN / 'psql'), '-X', '-q', '-d', server.conninfo(dbname), '-f', str(ROLES_SQL)]
    for var in variables:
        cmd += ['-v', var]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f'psql -f roles.sql exited {proc.returncode}:\n' \
                                 f'{proc.stdout}\n{proc.stderr}'
    return proc.stdout + proc.stderr


def connect_as(server, dbname, role):
    return psycopg.connect(f'host={server.host} port={server.port} user={role} dbname={dbname}',
                           autocommit=True, connect_timeout=10)


def job_status(daemon, name):
    [job] = daemon.ctl_json('status', name)['jobs']
    return job


def denied(conn, query, *params):
    """The query fails for lack of privilege (and changes nothing)."""
    with pytest.raises(errors.InsufficientPrivilege) as caught:
        conn.execute(query, params or None)
    return str(caught.value)


def test_daemon_runs_as_the_roles_sql_role_with_what_it_needs_and_no_more(app, daemon_factory):
    server, conn = app.server, app.conn         # conn: the superuser
    rows = 1500
    counter_table(conn, 'items', rows)
    counter_table(conn, 'users', rows)
    conn.execute('CREATE TABLE copies (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)')
    counter_table(conn, 'slow', 400)
    counter_table(conn, 'secrets', 100)         # never granted to the daemon

    # Before the daemon ever ran: the schema is made for it, no tables yet.
    out = run_roles_sql(server, 'app')
    assert 'roles.sql: role "backfilld" and group "backfilld_admin" are ready' in out, out
    for grant in TABLE_GRANTS:
        conn.execute(grant)
    conn.execute(f'CREATE ROLE {SCHEDULER} LOGIN IN ROLE {ADMIN_ROLE}')

    daemon = daemon_factory(server, 'app', {
        'database': {'conninfo': f'host={server.host} port={server.port} '
                                 f'user={DAEMON_ROLE} dbname=app'},
        'throttle': {'sample_interval_ms': SAMPLE_MS, 'expected_standbys': [GHOST]},
    })

    # The schema was created (every migration, in order) by the daemon, as
    # the role: it owns every table and function of it.
    owners = conn.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "WHERE c.relnamespace = 'backfill'::regnamespace AND c.relkind = 'r' "
        "ORDER BY 1").fetchall()
    assert {'jobs', 'control', 'schema_version'} <= {name for name, _ in owners}, owners
    assert {owner for _, owner in owners} == {DAEMON_ROLE}, owners
    functions = conn.execute(
        "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc "
        "WHERE pronamespace = 'backfill'::regnamespace").fetchall()
    assert functions == [(DAEMON_ROLE,)], functions
    versions = [v for (v,) in conn.execute(
        'SELECT version FROM backfill.schema_version ORDER BY 1').fetchall()]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 2, versions
    assert f'control schema at version {versions[-1]}' in daemon.log(), daemon.log()

    with connect_as(server, 'app', SCHEDULER) as alice:
        # The forbidden one first (priority 1): it is claimed before the others.
        counter_job(alice, 'forbidden', table='secrets', priority=1)
        counter_job(alice, 'fill', table='items')
        alice_id = alice.execute('SELECT pg_backend_pid()').fetchone()[0]
        insert_job(alice, name='copy', table_name='public.users', kind='sql',
                   statement=COPY_STATEMENT)

        # pg_read_all_stats: the replication sample is judged (a missing
        # expected standby), not refused for lack of privilege.
        def ghost_held():
            job = job_status(daemon, 'fill')
            reasons = job['throttle_reasons']
            return job if any(r.startswith(f'standby {GHOST} missing') for r in reasons) else None
        job = wait_for(ghost_held, 20, what=lambda: f'"standby {GHOST} missing" for fill: '
                                                    f'{job_status(daemon, "fill")}')
        assert job['throttled'] is True, job
        status = daemon.ctl_json('status')
        everything = [r for j in status['jobs'] for r in j['throttle_reasons']]
        assert not [r for r in everything if 'pg_monitor' in r], everything
        assert job_row(conn, 'fill')['batches'] == 0, 'held, yet it ran a batch'

        daemon.config = merge_config(daemon.config, {'throttle': {'expected_standbys': []}})
        daemon.reload()
        wait_succeeded(conn, 'fill', timeout=30)
        wait_succeeded(conn, 'copy', timeout=30)
        assert_each_row_once(conn, 'items', rows=rows)
        assert_each_row_once(conn, 'copies', rows=rows)

        # No rights on secrets: the job fails, saying so, and nothing else stops.
        row = wait_job_state(conn, 'forbidden', {'failed', 'succeeded', 'cancelled'}, timeout=30)
        assert row['state'] == 'failed', row
        assert 'permission denied for table secrets' in (row['last_error'] or ''), row
        # A missing privilege is not called a key that cannot be sorted.
        assert 'sortable' not in row['last_error'], row
        assert re.search(r'state running -> failed: .*permission denied for table secrets',
                         daemon.log()), daemon.log()
        assert job_status(daemon, 'forbidden')['state'] == 'failed'
        assert conn.execute('SELECT count(*) FROM secrets WHERE counter <> 0').fetchone()[0] == 0
        assert daemon.alive()

        # pause --now: the monitor cancels the role's own batch at once.
        counter_job(alice, 'slow', table='slow', pause_ms=25, batch_size=200)  # 5 s a batch
        wait_for(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfilld job slow' "
            "AND usename = %s AND state = 'active' AND wait_event = 'PgSleep'",
            (DAEMON_ROLE,)).fetchone()[0] > 0, 30, what='a batch of slow in flight')
        started = time.monotonic()
        daemon.ctl('pause', 'slow', '--now', check=0)
        wait_for(lambda: job_row(conn, 'slow')['owner'] is None, 10, what='slow let go')
        assert time.monotonic() - started < 4, 'the batch was waited for, not cancelled'
        row = job_row(conn, 'slow')
        assert row['state'] == 'paused', row
        done = conn.execute('SELECT count(*) FROM slow WHERE counter = 1').fetchone()[0]
        assert done == row['rows_scanned'], (done, row)
        assert 'batch in flight was cancelled and rolled back' in daemon.log(), daemon.log()
        assert 'could not cancel' not in daemon.log(), daemon.log()

        # The scheduler steers jobs, but has no DELETE on them.
        alice.execute("UPDATE backfill.jobs SET state = 'cancelled' WHERE name = 'slow'")
        denied(alice, "DELETE FROM backfill.jobs WHERE name = 'slow'")

        # The role itself: not privileged, and nothing beyond the script.
        with connect_as(server, 'app', DAEMON_ROLE) as role:
            flags = role.execute(
                'SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, '
                'rolinherit FROM pg_roles WHERE rolname = current_user').fetchone()
            assert flags == (False, False, False, False, False, True), flags
            member_of = role.execute(
                'SELECT array_agg(roleid::regrole::text ORDER BY 1) FROM pg_auth_members '
                'WHERE member = current_user::regrole').fetchone()[0]
            assert member_of == ['pg_read_all_stats'], member_of
            # Not the rest of pg_monitor: settings only superusers read, and
            # functions that lock any table.
            for group in ('pg_monitor', 'pg_read_all_settings', 'pg_stat_scan_tables'):
                assert role.execute("SELECT pg_has_role(%s, 'USAGE')",
                                    (group,)).fetchone()[0] is False, group
            assert 'permission denied for table secrets' in denied(role, 'SELECT * FROM secrets')
            denied(role, 'DELETE FROM items')
            denied(role, 'TRUNCATE items')
            denied(role, 'ALTER TABLE items ADD COLUMN extra int')
            denied(role, 'CREATE TABLE public.planted (i int)')
            denied(role, 'CREATE SCHEMA planted')
            assert role.execute(
                "SELECT has_database_privilege('app', 'CREATE')").fetchone()[0] is False
            # No pg_signal_backend: another role's session cannot be cancelled.
            denied(role, 'SELECT pg_cancel_backend(%s)', alice_id)
            # It owns its schema, and no other schema, table or function.
            owned = role.execute(OWNED_SQL).fetchall()
            assert owned == [('schema backfill',)], owned

    # Run again, once the daemon's tables exist, over an older setup that
    # granted pg_monitor: that is taken back, nothing else changes, nothing
    # breaks.
    conn.execute(f'GRANT pg_monitor TO {DAEMON_ROLE}')
    out = run_roles_sql(server, 'app', f'daemon_role={DAEMON_ROLE}', f'jobs_admin={ADMIN_ROLE}')
    assert 'WARNING' not in out, out
    assert conn.execute(
        'SELECT array_agg(roleid::regrole::text ORDER BY 1) FROM pg_auth_members '
        'WHERE member = %s::regrole', (DAEMON_ROLE,)).fetchone()[0] == ['pg_read_all_stats']
    assert daemon.stop() == 0
    daemon.start().wait_ready(30)       # the schema is current: no DDL at all
    with connect_as(server, 'app', SCHEDULER) as alice:
        counter_job(alice, 'again', table='items')
    wait_succeeded(conn, 'again', timeout=30)
    assert conn.execute('SELECT count(*) FROM items WHERE counter <> 2').fetchone()[0] == 0
    assert not re.search(r'cannot install or upgrade the control schema', daemon.log()), \
        daemon.log()


def test_roles_sql_takes_over_a_schema_that_a_superuser_daemon_made(app, daemon_factory):
    server, conn = app.server, app.conn
    counter_table(conn, 'items', 500)
    # The old way: the daemon ran as a superuser and made the schema its own.
    daemon = daemon_factory(server, 'app')
    assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class "
                        "WHERE oid = 'backfill.jobs'::regclass").fetchone()[0] == 'postgres'
    assert daemon.stop() == 0

    run_roles_sql(server, 'app')
    conn.execute(TABLE_GRANTS[0])
    conn.execute(f'CREATE ROLE {SCHEDULER} LOGIN IN ROLE {ADMIN_ROLE}')
    not_ours = conn.execute(
        "SELECT 'relation ' || oid::regclass::text FROM pg_class "
        "WHERE relnamespace = 'backfill'::regnamespace AND relowner <> %s::regrole "
        "UNION ALL SELECT 'function ' || oid::regprocedure::text FROM pg_proc "
        "WHERE pronamespace = 'backfill'::regnamespace AND proowner <> %s::regrole "
        "UNION ALL SELECT 'schema' FROM pg_namespace "
        "WHERE nspname = 'backfill' AND nspowner <> %s::regrole",
        (DAEMON_ROLE,) * 3).fetchall()
    assert not_ours == [], not_ours

    daemon.config = merge_config(daemon.config, {'database': {
        'conninfo': f'host={server.host} port={server.port} user={DAEMON_ROLE} dbname=app'}})
    daemon.start().wait_ready(30)
    with connect_as(server, 'app', SCHEDULER) as alice:     # granted on existing tables
        counter_job(alice, 'fill', table='items')
    wait_succeeded(conn, 'fill', timeout=30)
    assert_each_row_once(conn, 'items', rows=500)
    assert conn.execute("SELECT usename FROM pg_stat_activity "
                        "WHERE application_name = 'backfilld listener'").fetchall() == \
        [(DAEMON_ROLE,)]


def test_a_malformed_conninfo_is_refused_without_quoting_it(tmp_path):
    # libpq quotes the offending token, here the whole password, in its
    # parse error; the daemon must not copy that to its log.
    config = tmp_path / 'backfilld.yaml'
    config.write_text('database:\n'
                      '  conninfo: "postgresql://bob:hunter%zz2@127.0.0.1:1/app"\n'
                      'control:\n'
                      f'  socket: {tmp_path}/ctl.sock\n')
    for extra in (['--check-config'], []):
        proc = subprocess.run([str(BACKFILLD), '-c', str(config), *extra],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=10)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        assert f'{config}:2:' in output and 'database.conninfo' in output, output
        assert 'hunter' not in output, output
