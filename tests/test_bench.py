"""`make bench` at a tiny size: every measurement still runs and reports.

The numbers of a tiny run mean nothing (and goals are not asserted: speed
goals live in the bench, never in a timed test); what is checked is that the
bench works end to end and writes what README.md promises.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from daemon import BACKFILLCTL, BACKFILLD, REPO_ROOT

EXPECTED = [
    'throughput: backfilld', 'throughput: one UPDATE', 'throughput: PL/pgSQL keyset loop',
    'throughput: OFFSET loop from psql', 'backfilld / one UPDATE', 'backfilld / PL/pgSQL loop',
    'flat cost: last / first 10% mean batch duration',
    'application p99 latency, idle', 'application p99 latency, during backfilld',
    'application p99 latency, during one UPDATE',
    'longest application wait on a backfilld lock', 'max replay lag', 'daemon peak RSS',
    'daemon CPU / database CPU, same work', 'daemon CPU when idle',
    'status round trip p99', 'pickup latency max',
]


def test_the_bench_runs_at_a_tiny_size_and_writes_its_reports(tmp_path):
    out = tmp_path / 'bench'
    env = dict(os.environ, BACKFILLD=str(BACKFILLD), BACKFILLCTL=str(BACKFILLCTL))
    run = subprocess.run([sys.executable, str(REPO_ROOT / 'bench' / 'bench.py'), '--tiny',
                          '--out', str(out)], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f'bench failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}'
    assert 'metric' in run.stdout and 'goal' in run.stdout

    results = json.loads((out / 'results.json').read_text())
    by_name = {m['metric']: m for m in results['metrics']}
    for name in EXPECTED:
        assert name in by_name, f'{name} missing from results.json'
        # The database's CPU for a walk of a tenth of a second may round
        # to no clock tick at all: then there is no ratio to show.
        if name != 'daemon CPU / database CPU, same work':
            assert isinstance(by_name[name]['value'], (int, float)), f'{name}: no value'
    assert by_name['backfilld / one UPDATE']['goal'] == {'op': '>=', 'bound': 0.9}
    assert all(m['met'] in (True, False) for m in results['metrics']
               if m['goal'] and m['value'] is not None)
    assert results['context']['rows'] == 20000 and results['context']['command'] == \
        'make bench BENCH_ARGS="--tiny"'

    markdown = (out / 'results.md').read_text()
    assert markdown.startswith('| metric | value | goal | met |')
    assert all(name in markdown for name in EXPECTED)
    png = (out / 'throughput.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10000
    # The daemon it ran left no sanitizer report behind.
    log = (out / 'daemon' / 'backfilld.log').read_text()
    assert 'Sanitizer' not in log and 'runtime error:' not in log
