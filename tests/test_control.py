"""The control plane: backfillctl status, pause, resume, cancel, set and plan
against a running daemon with real jobs."""

import time

from daemon import job_row, read_pty_to_end, wait_for, wait_job_state
from workload import (SMALL_BATCHES, assert_each_row_once, counter_job, counter_table, counters,
                      wait_succeeded)


def test_status_json_describes_the_daemon_and_every_job(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'walker', pause_ms=20, batch_size=100)
    wait_for(lambda: job_row(conn, 'walker')['batches'] >= 3, 30, what='some batches')
    status = daemon.ctl_json('status')
    print(status)
    d = status['daemon']
    assert d['version'] and d['paused'] is False and d['uptime_s'] >= 0
    assert d['database'] == {'connected': True, 'error': None}
    [job] = status['jobs']
    assert job['name'] == 'walker' and job['state'] == 'running' and job['here'] is True
    assert 0 < job['progress'] < 1
    assert job['rows_scanned'] > 0 and job['rate_rows_s'] > 0
    assert job['throttled'] is False and job['throttle_reasons'] == []
    # Every field DESIGN.md promises, with its type.
    for key, kind in {'version': str, 'paused': bool, 'uptime_s': int}.items():
        assert isinstance(d[key], kind), (key, d[key])
    for key, kind in {'name': str, 'state': str, 'rows_scanned': int, 'rows_updated': int,
                      'progress': (int, float), 'rate_rows_s': (int, float),
                      'batch_size': int, 'throttled': bool, 'throttle_reasons': list}.items():
        assert isinstance(job[key], kind), (key, job[key])
    assert job['eta_s'] is None or (isinstance(job['eta_s'], int) and job['eta_s'] >= 0)
    assert job['owner'] == d['owner'] and job['rows_estimate'] == 3000
    assert job['batch_size'] >= 1 and job['rows_updated'] == job['rows_scanned']


def test_watch_refreshes_until_interrupted(db, daemon_factory):
    import signal
    import subprocess
    from daemon import BACKFILLCTL
    conn = db.conn
    counter_table(conn, rows=2000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'watched', pause_ms=2, batch_size=100)
    proc = subprocess.Popen([str(BACKFILLCTL), '-s', str(daemon.socket), 'watch', '-n', '0.2'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.count('watched') >= 3, out


def test_status_shows_finished_jobs_and_reads_as_plain_text(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=300)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'quick')
    wait_succeeded(conn, 'quick')
    status = daemon.ctl_json('status', 'quick')
    [job] = status['jobs']
    assert job['state'] == 'succeeded' and job['progress'] == 1.0
    assert job['rows_scanned'] == 300 and job['rows_updated'] == 300
    assert job['throttled'] is False and job['eta_s'] is None
    text = daemon.ctl('status', check=0).stdout
    assert '\x1b' not in text, 'no escape codes when stdout is not a terminal'
    assert 'quick' in text and 'succeeded' in text
    # One job by name; an unknown name is exit 5.
    result = daemon.ctl('status', 'nosuch', check=5)
    assert 'no such job' in result.stderr and result.stderr.count('\n') == 1


def test_status_on_a_terminal_draws_progress_bars(db, daemon_factory):
    import os
    import pty
    conn = db.conn
    counter_table(conn, rows=2000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'barred', pause_ms=5, batch_size=100)
    wait_for(lambda: job_row(conn, 'barred')['batches'] >= 2, 30, what='some batches')
    from daemon import BACKFILLCTL
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.pop('NO_COLOR', None)
        os.execv(str(BACKFILLCTL), [str(BACKFILLCTL), '-s', str(daemon.socket), 'status'])
    out = read_pty_to_end(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    text = out.decode(errors='replace')
    assert 'barred' in text and '[' in text and '#' in text and '%' in text, text


def test_pause_resume_cancel_are_durable_and_visible_in_sql(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=2000)
    daemon = daemon_factory(db.server, db.name, overrides=SMALL_BATCHES)
    counter_job(conn, 'steady', pause_ms=2)
    counter_table(conn, table='others', rows=5000)
    counter_job(conn, 'doomed', table='others', pause_ms=5, priority=200)
    wait_for(lambda: job_row(conn, 'steady')['batches'] >= 2, 30, what='some batches')

    result = daemon.ctl('pause', 'steady', check=0)
    assert 'paused' in result.stdout
    assert job_row(conn, 'steady')['state'] == 'paused'      # written before the reply
    wait_for(lambda: job_row(conn, 'steady')['owner'] is None, 10, what='the lease released')
    scanned = job_row(conn, 'steady')['rows_scanned']
    assert daemon.ctl('pause', 'steady', check=0).stdout.strip().endswith('already paused')

    # Paused survives a restart: nothing moves.
    daemon.stop()
    daemon.start().wait_ready()
    time.sleep(1.5)
    row = job_row(conn, 'steady')
    assert row['state'] == 'paused' and row['rows_scanned'] == scanned
    [job] = daemon.ctl_json('status', 'steady')['jobs']
    assert job['state'] == 'paused' and job['throttled'] is True
    assert any('paused' in r for r in job['throttle_reasons'])

    # cancel is final, and so is a finished job.
    daemon.ctl('cancel', 'doomed', check=0)
    assert job_row(conn, 'doomed')['state'] == 'cancelled'
    result = daemon.ctl('resume', 'doomed', check=1)
    assert 'cancelled' in result.stderr
    assert daemon.ctl('pause', 'nosuch', check=5).stderr.startswith('backfillctl: ')

    daemon.ctl('resume', 'steady', check=0)
    wait_succeeded(conn, 'steady')
    assert_each_row_once(conn, rows=2000)
    assert job_row(conn, 'doomed')['state'] == 'cancelled'
    daemon.ctl('pause', 'steady', check=1)          # succeeded: nothing to pause


def test_pause_now_cancels_the_batch_in_flight_and_loses_nothing(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=600)
    daemon = daemon_factory(db.server, db.name, overrides={
        'batch': {'size': 200, 'size_min': 200, 'size_max': 200}})
    # 200 rows x 25 ms: each batch takes 5 s.
    counter_job(conn, 'slow', pause_ms=25)
    wait_for(lambda: conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfilld job slow' "
        "AND state = 'active' AND wait_event = 'PgSleep'").fetchone()[0] > 0, 30,
        what='a batch in flight')
    before = job_row(conn, 'slow')
    started = time.monotonic()
    daemon.ctl('pause', 'slow', '--now', check=0)
    # The pause takes the slice's lease at once (the fence keeps the batch
    # from committing); the cancel ends the batch itself.
    wait_for(lambda: 'cancelled and rolled back' in daemon.log(), 10,
             what='the batch in flight cancelled')
    assert time.monotonic() - started < 4, 'the batch was waited for, not cancelled'
    row = job_row(conn, 'slow')
    assert row['owner'] is None
    assert row['state'] == 'paused'
    assert (row['batches'], row['rows_scanned'], row['checkpoint']) == \
        (before['batches'], before['rows_scanned'], before['checkpoint'])
    # Nothing of the cancelled batch committed: counters match the checkpoint.
    done = conn.execute('SELECT count(*) FROM items WHERE counter = 1').fetchone()[0]
    assert done == row['rows_scanned']

    daemon.ctl('resume', 'slow', check=0)
    daemon.ctl('set', 'slow', 'batch_size=300', 'batch_size_max=300', check=0)
    wait_succeeded(conn, 'slow', timeout=60)
    assert_each_row_once(conn, rows=600)


def test_pause_all_holds_every_job_on_every_instance_until_resume_all(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=1500)
    counter_table(conn, table='others', rows=1500)
    first = daemon_factory(db.server, db.name, overrides=SMALL_BATCHES, name='d1')
    second = daemon_factory(db.server, db.name, overrides=SMALL_BATCHES, name='d2')
    counter_job(conn, 'one', pause_ms=2)
    counter_job(conn, 'two', table='others', pause_ms=2)
    wait_for(lambda: job_row(conn, 'one')['batches'] >= 1 and job_row(conn, 'two')['batches'] >= 1,
             30, what='both jobs running')

    result = first.ctl('pause', '--all', check=0)
    assert 'paused' in result.stdout
    assert conn.execute('SELECT paused FROM backfill.control').fetchone()[0] is True
    time.sleep(1.5)     # a batch in flight finishes, then nothing starts
    progress = [job_row(conn, n)['rows_scanned'] for n in ('one', 'two')]
    counter_table(conn, table='late', rows=100)
    counter_job(conn, 'late', table='late')
    time.sleep(1.5)
    assert [job_row(conn, n)['rows_scanned'] for n in ('one', 'two')] == progress
    assert job_row(conn, 'late')['state'] == 'pending'      # not even claimed

    for daemon in (first, second):
        status = daemon.ctl_json('status')
        assert status['daemon']['paused'] is True and status['daemon']['paused_since']
        for job in status['jobs']:
            assert job['throttled'] and any('pause --all' in r for r in job['throttle_reasons'])

    # Durable: a restarted instance stays paused.
    second.stop()
    second.start().wait_ready()
    time.sleep(1.0)
    assert [job_row(conn, n)['rows_scanned'] for n in ('one', 'two')] == progress

    second.ctl('resume', '--all', check=0)
    for name in ('one', 'two', 'late'):
        wait_succeeded(conn, name)
    assert_each_row_once(conn, rows=1500)
    assert_each_row_once(conn, table='others', rows=1500)
    assert first.ctl_json('status')['daemon']['paused'] is False


def test_set_changes_knobs_before_the_next_batch(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=3000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'tuned', pause_ms=1, batch_size=100)
    wait_for(lambda: job_row(conn, 'tuned')['batches'] >= 1, 30, what='a batch')

    result = daemon.ctl('set', 'tuned', 'batch_size=40', 'batch_size_min=40',
                        'batch_size_max=40', 'max_rows_per_s=200', check=0)
    assert 'tuned' in result.stdout
    row = conn.execute("SELECT settings, batch_size FROM backfill.jobs WHERE name = 'tuned'"
                       ).fetchone()
    assert row[0] == {'batch_size_min': 40, 'batch_size_max': 40, 'max_rows_per_s': 200}
    assert row[1] == 40
    wait_for(lambda: daemon.ctl_json('status', 'tuned')['jobs'][0]['batch_size'] == 40, 10,
             what='the new batch size applied')
    # The rate limit holds the job back, and says so.
    start = job_row(conn, 'tuned')['rows_scanned']
    time.sleep(3)
    moved = job_row(conn, 'tuned')['rows_scanned'] - start
    assert moved <= 200 * 3 + 80, f'{moved} rows in 3 s at a 200 rows/s limit'
    wait_for(lambda: any('max_rows_per_s' in r for r in
                         daemon.ctl_json('status', 'tuned')['jobs'][0]['throttle_reasons']),
             5, what='the rate limit among the throttle reasons')

    # Bad input: refused locally (2) or by the daemon (1), nothing written.
    daemon.ctl('set', 'tuned', 'batch_sise=5', check=2)
    daemon.ctl('set', 'tuned', 'batch_size=-5', check=2)
    daemon.ctl('set', 'tuned', 'batch_size_min=500', check=1)     # > batch_size_max 40
    daemon.ctl('set', 'nosuch', 'batch_size=5', check=5)
    # SQL sets knobs too; an unknown one fails the job with the reason.
    daemon.ctl('set', 'tuned', 'max_rows_per_s=off', check=0)
    wait_succeeded(conn, 'tuned', timeout=60)
    assert_each_row_once(conn, rows=3000)
    daemon.ctl('set', 'tuned', 'batch_size=5', check=1)           # succeeded


def test_a_bad_knob_written_with_sql_fails_the_job_with_the_reason(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=100)
    daemon_factory(db.server, db.name)
    counter_job(conn, 'knobbed', settings='{"batch_sise": 5}')
    row = wait_job_state(conn, 'knobbed', {'failed'})
    assert 'batch_sise' in row['last_error']


def test_plan_reports_a_rolled_back_batch_and_changes_nothing(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name)
    # A job planned before it runs: scheduled paused.
    counter_job(conn, 'planned', batch_size=500, state='paused')
    before = job_row(conn, 'planned')
    result = daemon.ctl_json('plan', 'planned')
    print(result)
    assert result['batch_size'] == 500 and result['batch_rows'] == 500
    assert result['duration_ms'] > 0 and result['rows_estimate'] == 5000
    assert result['estimated_batches'] == 10 and result['estimated_total_s'] is not None
    assert 'Update on' in result['plan'] and 'actual' in result['plan']
    assert counters(conn) == {0: 5000}
    assert job_row(conn, 'planned') == before
    text = daemon.ctl('plan', 'planned', check=0).stdout
    assert 'rolled back' in text

    daemon.ctl('resume', 'planned', check=0)
    wait_succeeded(conn, 'planned')
    daemon.ctl('plan', 'planned', check=1)            # succeeded: nothing to plan
    daemon.ctl('plan', 'nosuch', check=5)
