"""Tests of the test infrastructure itself; none needs the daemon binary
(the Daemon class is exercised with a stand-in written in Python)."""

import os
import signal
import sys
import time

import psycopg
import pytest

import daemon
from daemon import Daemon, insert_job, job_row, merge_config, render_yaml, wait_for, wait_job_state
from pgserver import PgServer


def count_rows(server, dbname, table):
    with server.connect(dbname) as conn:
        return conn.execute(f'SELECT count(*) FROM {table}').fetchone()[0]


def test_server_stop_start_restart(own_pg):
    port = own_pg.port
    with own_pg.connect() as conn:
        conn.execute('CREATE TABLE t AS SELECT 1 AS x')
        assert conn.execute('SHOW fsync').fetchone() == ('off',)
        assert conn.execute('SHOW wal_level').fetchone() == ('replica',)

    own_pg.restart(mode='fast')
    assert count_rows(own_pg, 'postgres', 't') == 1
    own_pg.restart(mode='immediate')            # crash recovery at start
    assert count_rows(own_pg, 'postgres', 't') == 1
    assert own_pg.port == port

    own_pg.stop()
    own_pg.stop()                               # idempotent
    assert not own_pg.running()
    with pytest.raises(psycopg.OperationalError):
        own_pg.connect(connect_timeout=2)
    own_pg.start()
    assert count_rows(own_pg, 'postgres', 't') == 1
    assert 'database system is ready' in own_pg.log()


def test_stop_kills_unresponsive_postmaster(own_pg):
    pid = own_pg.postmaster_pid()
    os.kill(pid, signal.SIGSTOP)                # pg_ctl stop cannot succeed now
    own_pg.stop(timeout=1)
    assert not own_pg.running()
    assert not os.path.exists(f'/proc/{pid}/cmdline') or \
        open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z'
    own_pg.start()                              # and it comes back after a crash
    assert count_rows(own_pg, 'postgres', 'pg_class') > 0
    own_pg.kill()
    assert not own_pg.running()
    own_pg.start()
    assert 'database system was interrupted' in own_pg.log()


def test_two_databases(pg):
    a = pg.create_database('infra_a')
    b = pg.create_database('infra_b')
    try:
        assert pg.conninfo(a) == f'host=127.0.0.1 port={pg.port} user=postgres dbname=infra_a'
        with pg.connect(a) as conn:
            assert conn.autocommit
            conn.execute('CREATE TABLE only_in_a (id int)')
        with pg.connect(b) as conn:
            assert conn.execute("SELECT to_regclass('only_in_a')").fetchone() == (None,)
    finally:
        pg.drop_database(a)
        pg.drop_database(b)


def test_db_fixture(db):
    assert db.conn.autocommit
    assert db.conn.execute('SELECT current_database()').fetchone() == (db.name,)
    assert f'dbname={db.name}' in db.conninfo


def test_standby_streams(own_pg, pg_base_dir):
    standby = PgServer(pg_base_dir, name='standby').init_standby(own_pg, slot='s1').start()
    try:
        with own_pg.connect() as conn:
            conn.execute('CREATE TABLE t AS SELECT generate_series(1, 10) AS x')
        wait_for(lambda: _standby_rows(standby) == 10, 10, what='the standby to replay')
        with own_pg.connect() as conn:
            state = conn.execute('SELECT state FROM pg_stat_replication').fetchall()
        assert state == [('streaming',)]
    finally:
        standby.destroy()


def _standby_rows(standby):
    with standby.connect() as conn:
        if conn.execute("SELECT to_regclass('t')").fetchone() == (None,):
            return 0
        return conn.execute('SELECT count(*) FROM t').fetchone()[0]


def test_wait_for():
    assert wait_for(lambda: 42, 1) == 42
    started = time.monotonic()
    with pytest.raises(AssertionError, match='the impossible'):
        wait_for(lambda: False, 0.3, what='the impossible')
    assert 0.3 <= time.monotonic() - started < 2


def test_config_rendering():
    config = merge_config(daemon.TEST_DEFAULTS, {
        'engine': {'lease_s': 3, 'poll_interval_ms': None},
        'database': {'conninfo': 'host=h dbname="x y"'},
        'throttle': {'standbys': ['a', 'b'], 'enabled': True},
    })
    assert config['engine'] == {'lease_s': 3}
    assert config['retry'] == {'initial_ms': 50, 'max_ms': 1000}
    text = render_yaml(config)
    assert '  conninfo: "host=h dbname=\\"x y\\""\n' in text
    assert '  standbys: ["a", "b"]\n  enabled: true\n' in text


# A stand-in for backfilld: creates backfill.jobs, says it is ready, marks
# every pending job succeeded, exits with $FAKE_EXIT on SIGTERM.
FAKE_DAEMON = f'''#!{sys.executable}
import json, os, re, signal, sys, time
import psycopg
text = open(sys.argv[2]).read()
conninfo = json.loads(re.search(r'conninfo: (".*")', text).group(1))
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
with psycopg.connect(conninfo, autocommit=True) as conn:
    conn.execute("CREATE SCHEMA IF NOT EXISTS backfill")
    conn.execute("CREATE TABLE IF NOT EXISTS backfill.jobs (id bigint GENERATED ALWAYS "
                 "AS IDENTITY PRIMARY KEY, name text UNIQUE NOT NULL, table_name text "
                 "NOT NULL, state text NOT NULL DEFAULT 'pending')")
    print("fake: ready", file=sys.stderr, flush=True)
    while not stop:
        conn.execute("UPDATE backfill.jobs SET state = 'succeeded' WHERE state = 'pending'")
        time.sleep(0.05)
print(os.environ.get('FAKE_SAY', 'fake: bye'), file=sys.stderr, flush=True)
sys.exit(int(os.environ.get('FAKE_EXIT', '0')))
'''


@pytest.fixture
def fake_backfilld(tmp_path, monkeypatch):
    path = tmp_path / 'fake-backfilld'
    path.write_text(FAKE_DAEMON)
    path.chmod(0o755)
    monkeypatch.setattr(daemon, 'BACKFILLD', path)
    return path


def test_daemon_lifecycle(db, daemon_factory, fake_backfilld):
    d = daemon_factory(db.server, db.name, {'engine': {'lease_s': 3}})
    assert d.alive() and d.name == 'd1'
    assert 'lease_s: 3' in d.config_path.read_text()
    insert_job(db.conn, name='j1', table_name='public.t')
    row = wait_job_state(db.conn, 'j1', 'succeeded', timeout=10)
    assert row['table_name'] == 'public.t'
    with pytest.raises(AssertionError, match="'j1' to be \\['failed'\\]"):
        wait_job_state(db.conn, 'j1', ['failed'], timeout=0.3)

    d.sigstop()
    d.sigcont()
    assert d.stop() == 0
    assert 'fake: bye' in d.log()
    d.start().wait_ready(10)                    # a second run, same log
    assert d.kill() == -signal.SIGKILL
    assert d.log().count('fake: ready') == 2
    assert job_row(db.conn, 'nope') is None


def test_daemon_findings(db, daemon_factory, fake_backfilld, monkeypatch):
    monkeypatch.setenv('FAKE_EXIT', '3')
    monkeypatch.setenv('FAKE_SAY', 'x.c:1:2: runtime error: signed integer overflow')
    d = daemon_factory(db.server, db.name)
    assert d.stop() == 3
    findings = d.findings()
    assert findings == ['d1 exited 3 on SIGTERM',
                        'd1: x.c:1:2: runtime error: signed integer overflow']
    Daemon.registry.remove(d)                   # expected: do not fail this test
