"""pytest fixtures: real PostgreSQL 15 servers, databases and daemons.

    pg              session   one server for the whole run (initdb is slow)
    db              function  a fresh database on pg: Database(.server, .name, .conn, .conninfo)
    own_pg          function  a private server, for tests that restart or break it
    daemon_factory  function  make(server, dbname, overrides=None, name=None,
                                   start=True, ready_timeout=30) -> Daemon
    pg_base_dir     session   the directory (under /tmp) holding every server

After every test each daemon still running is stopped with SIGTERM, and the
test fails if a daemon exited non-zero on SIGTERM, hung on it, or if its log
holds a sanitizer report.  A failed test shows the tail of every daemon log
and server log it used.
"""

import itertools
import os
import re
import shutil
import signal

import pytest

from daemon import Daemon, tail
from pgserver import Database, PgServer, make_base_dir

LOG_TAIL_LINES = 200
_db_numbers = itertools.count(1)
_logs_shown = pytest.StashKey[bool]()


def pytest_configure(config):
    # A SIGTERM (a CI timeout, say) would kill pytest without running atexit
    # hooks, leaving postmasters behind; as KeyboardInterrupt it unwinds.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


# -- servers and databases ---------------------------------------------------

@pytest.fixture(scope='session')
def pg_base_dir():
    path = make_base_dir()
    yield path
    if not os.environ.get('BACKFILLD_KEEP_TMP'):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='session')
def pg(pg_base_dir):
    server = PgServer(pg_base_dir, name='primary').init().start()
    yield server
    server.destroy()


@pytest.fixture
def db(pg, request):
    """A fresh database on pg, dropped after the test."""
    name = _database_name(request.node.name)
    pg.create_database(name)
    database = Database(pg, name)
    yield database
    database.conn.close()
    _stop_daemons()             # before their database disappears
    pg.drop_database(name)


def _database_name(test_name):
    base = re.sub(r'[^a-z0-9]+', '_', test_name.lower()).strip('_')[:40]
    return f't_{base}_{next(_db_numbers)}'


@pytest.fixture
def own_pg(pg_base_dir):
    """A server of the test's own, started; removed after the test."""
    server = PgServer(pg_base_dir, name='own').init().start()
    yield server
    _stop_daemons()             # before their server disappears
    server.destroy()


# -- daemons -----------------------------------------------------------------

@pytest.fixture(autouse=True)
def _daemons_checked():
    """Every Daemon made during a test is stopped and checked after it."""
    Daemon.registry.clear()
    yield
    _stop_daemons()
    findings = [f for d in Daemon.registry for f in d.findings()]
    if findings:
        pytest.fail('daemon problems:\n  ' + '\n  '.join(findings), pytrace=False)


def _stop_daemons():
    """SIGTERM to every daemon of the test still running (a SIGSTOPped one is
    continued first); a hang is recorded in the daemon's findings."""
    for daemon in Daemon.registry:
        if daemon.alive():
            try:
                daemon.stop(timeout=30)
            except AssertionError:
                pass


@pytest.fixture
def daemon_factory(tmp_path, _daemons_checked):
    """make(server, dbname, overrides=None, name=None, start=True,
    ready_timeout=30) -> Daemon, started and ready unless start=False.
    Names default to d1, d2, ...; overrides go over daemon.TEST_DEFAULTS."""
    made = []

    def make(server, dbname, overrides=None, name=None, start=True, ready_timeout=30):
        daemon = Daemon(server, dbname, tmp_path, overrides, name or f'd{len(made) + 1}')
        made.append(daemon)
        if start:
            daemon.start().wait_ready(ready_timeout)
        return daemon

    return make


# -- logs of failed tests ----------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On the first failed phase of a test, appends the tail of each log it
    used to the report, so that it shows under the failure."""
    report = (yield).get_result()
    if report.failed and not item.stash.get(_logs_shown, False):
        item.stash[_logs_shown] = True
        for title, text in _log_tails(item):
            report.sections.append((title, text))


def _log_tails(item):
    for daemon in Daemon.registry:
        yield (f'daemon {daemon.name} log (last {LOG_TAIL_LINES} lines)',
               tail(daemon.log(), LOG_TAIL_LINES))
    for server in _servers_used(item):
        yield (f'server {server.name} log (last {LOG_TAIL_LINES} lines)',
               tail(server.log(), LOG_TAIL_LINES))


def _servers_used(item):
    servers = []
    for value in getattr(item, 'funcargs', {}).values():
        server = value.server if isinstance(value, Database) else value
        if isinstance(server, PgServer) and server not in servers:
            servers.append(server)
    return servers


# -- a primary with a streaming standby (throttling tests) -------------------

REPLICA_PRIMARY_SETTINGS = {'wal_level': 'logical', 'max_replication_slots': 10,
                            'wal_sender_timeout': '5s'}
# cluster_name is the walreceiver's application_name (pg_basebackup -R puts
# none in primary_conninfo); a status reply every second keeps the replay
# position the primary shows fresh when the standby is idle.
REPLICA_STANDBY_SETTINGS = {'cluster_name': 'standby1', 'wal_receiver_status_interval': '1s'}


@pytest.fixture(scope='module')
def replica_pair(pg_base_dir):
    """(primary, standby): a primary (wal_level logical) and a standby streaming
    from it as application_name standby1, both running; destroyed after the
    module, even when it fails.  Tests that pause, delay or stop the standby
    put it back themselves."""
    from daemon import wait_for
    servers = []
    try:
        primary = PgServer(pg_base_dir, name='replprimary', settings=REPLICA_PRIMARY_SETTINGS)
        servers.append(primary)
        primary.init().start()
        standby = PgServer(pg_base_dir, name='standby1', settings=REPLICA_STANDBY_SETTINGS)
        servers.append(standby)
        standby.init_standby(primary).start()
        with primary.connect('postgres') as conn:
            wait_for(lambda: conn.execute(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = 'standby1' "
                "AND state = 'streaming'").fetchone(), 60,
                what='standby1 streaming from the primary')
        yield primary, standby
    finally:
        for server in reversed(servers):
            server.destroy()
