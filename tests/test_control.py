"""The control plane: backfillctl status, pause, resume, cancel, set and plan
against a running daemon with real jobs."""

import time

from daemon import job_row, wait_for, wait_job_state
from workload import (SMALL_BATCHES, assert_each_row_once, counter_job, counter_table,
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
