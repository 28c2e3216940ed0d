"""backfillctl and status as an operator meets them (issues 12 and 13): the
whole help, switches that read true/false, what status says about paused,
orphaned and blocked jobs, a status that does not need the database, the
default cut of finished jobs, the watch header's width, and plan's estimate
under a rate limit."""

import json
import os
import re
import subprocess

from daemon import BACKFILLCTL, job_row, wait_for
from workload import counter_job, counter_table


def run_ctl(*args, check=None):
    result = subprocess.run([str(BACKFILLCTL), *args], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30)
    if check is not None:
        assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
    return result


def knob_names():
    """The knob table the daemon uses, read from its source: the help must
    list every one of them."""
    src = (BACKFILLCTL.parent.parent / 'daemon' / 'settings.c').read_text()
    table = src[src.index('const bf_knob bf_knobs[]'):src.index('{NULL, 0, 0, NULL, NULL}')]
    return re.findall(r'\{"([a-z_]+)",', table)


def test_help_is_whole_and_lists_every_knob():
    out = run_ctl('--help', check=0).stdout
    knobs = knob_names()
    assert len(knobs) >= 16, knobs
    for knob in knobs:
        assert re.search(rf'^\s+{knob}\s+\S', out, re.M), f'{knob} missing from --help:\n{out}'
    # Nothing cut off: the text after the knobs is all there, in order.
    for tail in ('plan JOB [--json]', '--socket SOCKET', 'Exit status:', '5 no such job.'):
        assert tail in out, f'{tail!r} missing from --help:\n{out}'
    assert out.index('replay_wait_timeout_ms') < out.index('plan JOB')
    assert out.endswith('5 no such job.\n')
    assert run_ctl('help', check=0).stdout == out


def test_switch_knobs_take_true_and_false(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=100)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'sw', state='paused')
    for word, want in (('true', True), ('off', False), ('ON', True), ('false', False)):
        daemon.ctl('set', 'sw', f'wait_for_replay={word}', check=0)
        settings = job_row(conn, 'sw')['settings']
        assert settings['wait_for_replay'] in (want, int(want)), (word, settings)
    bad = daemon.ctl('set', 'sw', 'wait_for_replay=maybe', check=2)
    assert 'wait_for_replay is a switch: it takes true or false' in bad.stderr
    assert '"maybe"' in bad.stderr and bad.stderr.count('\n') == 1
