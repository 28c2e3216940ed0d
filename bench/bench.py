"""make bench: backfilld measured side by side with the alternatives.

    /usr/bin/python3 bench/bench.py [--rows 1m|10m|N] [--rounds 3] [--out build/bench]
    /usr/bin/python3 bench/bench.py --tiny      # seconds; what `make check` runs

Everything runs against one throwaway PostgreSQL started here, on data
generated here; see README.md ("Benchmarks") for what each number means.
The results go to OUT/results.md, OUT/results.json and OUT/throughput.png.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import control  # noqa: E402
import impact  # noqa: E402
import methods  # noqa: E402
import report  # noqa: E402
from cluster import Cluster, Daemon, REPO  # noqa: E402
from procstat import memory_kib, thread_cpu_s  # noqa: E402
from report import Metric  # noqa: E402
from sampler import REPLAY_LAG_BYTES, WaitSampler, lock_share, max_poller, wait_spread  # noqa: E402

# backfilld's defaults that the comparison depends on (config/backfilld.yaml).
DEFAULT_BATCH_MAX = 50000       # batch.size_max: its batch size on a fast table
DEFAULT_LOCK_WAIT_MAX_MS = 1000  # throttle.lock_wait_max_ms
# A gentler job, for contrast: batches a tenth of the default maximum hold
# fewer rows for less time (see README, "Benchmarks").
GENTLE = {'batch_size_max': 5000}
MIB = 1024 * 1024


def parse_rows(text):
    text = text.strip().lower().replace('_', '')
    scale = {'k': 1000, 'm': 1000000}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    rows = int(float(number) * scale)
    if rows < 1000:
        raise argparse.ArgumentTypeError(f'--rows {text}: at least 1000 rows')
    return rows


def options(argv):
    p = argparse.ArgumentParser(prog='bench.py', description=__doc__.split('\n')[0])
    p.add_argument('--rows', type=parse_rows, default=1000000,
                   help='rows in the table (1m by default; 10m for the large run)')
    p.add_argument('--rounds', type=int, default=3,
                   help='rounds of the throughput comparison (medians reported)')
    p.add_argument('--out', default=str(REPO / 'build' / 'bench'), help='output directory')
    p.add_argument('--tiny', action='store_true',
                   help='a seconds-long run on 20,000 rows that only proves the bench works')
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error('--rounds must be at least 1')
    a.pgbench_s, a.idle_s, a.pickups, a.lag_high = 10, 30, 20, 16 * MIB
    if a.tiny:
        a.rows, a.rounds = 20000, 1
        a.pgbench_s, a.idle_s, a.pickups, a.lag_high = 2, 2, 3, 1 * MIB
    return a


class Clock:
    def __init__(self):
        self.start = time.monotonic()

    def say(self, text):
        print(f'[{time.monotonic() - self.start:6.1f}s] {text}', flush=True)


# backfilld's ways in the throughput rounds: the key in the results, and the
# job's slices (None: the column left NULL, the configuration's default, 1).
SLICED = {'backfilld': None, 'backfilld_2': 2, 'backfilld_4': 4}
OTHER_APPS = {'single': methods.SINGLE_UPDATE_APP, 'two': methods.TWO_UPDATES_APP,
              'plpgsql': methods.PLPGSQL_APP, 'offset': methods.OFFSET_APP}


def throughput(cluster, daemon, a, clock):
    """Six ways (backfilld with 1, 2 and 4 slices, and the three others),
    rotating which goes first, `rounds` times, after one untimed UPDATE, so
    that no timed run creates the WAL segments the others recycle. (The
    first run of all, backfilld's, was the slowest in every bench so far; it
    still is more often than not, and keeps one pace from its first batch to
    its last: the machine's state, see BENCHMARKS.md.) A WaitSampler watches
    every way's sessions, so that each carries the same probe load."""
    ways = ['backfilld', 'backfilld_2', 'backfilld_4', 'single', 'two', 'plpgsql', 'offset']
    runs = {w: [] for w in ways}
    methods.single_update(cluster, cluster.fresh_table('bench_t'))
    for r in range(a.rounds):
        first = r % len(ways)
        for way in ways[first:] + ways[:first]:
            table = cluster.fresh_table('bench_t')
            name = f'throughput-{r}' + (f'-{SLICED[way]}' if SLICED.get(way) else '')
            app = f'backfilld job {name}' if way in SLICED else OTHER_APPS[way]
            with WaitSampler(cluster, app) as sampler:
                if way in SLICED:
                    out = methods.backfilld(cluster, daemon, table, name, slices=SLICED[way])
                elif way == 'single':
                    out = methods.single_update(cluster, table)
                elif way == 'two':
                    out = methods.two_updates(cluster, table, a.rows)
                elif way == 'plpgsql':
                    out = methods.plpgsql_loop(cluster, table, DEFAULT_BATCH_MAX)
                else:
                    out = methods.offset_loop(cluster, table, DEFAULT_BATCH_MAX, a.rows)
            out['waits'] = sampler.counts
            left = cluster.unfilled(table)
            if left:
                raise RuntimeError(f'{way} left {left} rows unfilled')
            out['rows_per_s'] = a.rows / out['seconds']
            runs[way].append(out)
            clock.say(f'round {r + 1}/{a.rounds}: {way:11} {out["rows_per_s"]:>12,.0f} rows/s '
                      f'({out["seconds"]:.2f} s)')
    return runs


def median_run(runs):
    ordered = sorted(runs, key=lambda r: r['seconds'])
    return ordered[(len(ordered) - 1) // 2]


def flat_cost(cluster, daemon, a):
    """A walk at a fixed batch size: mean batch duration in the first and
    the last 10% of the walk (the final, partial batch left out)."""
    size = max(100, a.rows // 100)
    table = cluster.fresh_table('bench_t')
    out = methods.backfilld(cluster, daemon, table, 'flat-cost',
                            settings={'batch_size_min': size, 'batch_size_max': size})
    full = [b for b in out['batches'] if b[1] == size]
    tenth = max(1, len(full) // 10)
    first = statistics.mean(b[2] for b in full[:tenth])
    last = statistics.mean(b[2] for b in full[-tenth:])
    return {'batch_size': size, 'batches': len(full), 'first_ms': first, 'last_ms': last,
            'ratio': last / first}


def lag(cluster, daemon, a, clock):
    """A standby that applies every commit 200 ms late, and a job whose
    replay lag high mark is a.lag_high (low mark a quarter of it)."""
    cluster.start_standby(apply_delay_ms=200)
    table = cluster.fresh_table('bench_lag')
    cluster.wait_standby_caught_up()
    clock.say('standby caught up; lag run starts')
    settings = {'replay_lag_high_bytes': a.lag_high, 'replay_lag_low_bytes': a.lag_high // 4}
    with max_poller(cluster, REPLAY_LAG_BYTES, interval_s=0.005) as poller:
        out = methods.backfilld(cluster, daemon, table, 'lag', settings=settings)
    # A lag of 0 from a standby that stopped streaming would prove nothing.
    if not cluster.standby_streaming():
        raise RuntimeError('the bench standby stopped streaming during the lag run; '
                           f'see {cluster.standby.log_path}')
    cluster.stop_standby()
    biggest = max((b[1] for b in out['batches']), default=0)
    batch_wal = out['wal_bytes'] / a.rows * biggest
    return {'max_lag_bytes': poller.peak, 'polls': poller.polls,
            'high_mark_bytes': a.lag_high, 'batch_wal_bytes': batch_wal,
            'seconds': out['seconds'], 'largest_batch': biggest,
            'throttled_holds': daemon.log_path.read_text().count('job "lag": throttled:')}


def application(cluster, daemon, a, hint):
    """pgbench idle, during backfilld and during a gentler backfilld, in
    turn, `rounds` times, each phase's rounds pooled; during one UPDATE once
    (it is nowhere near). Every run on a fresh table."""
    rounds = {'idle': [], 'backfilld': [], 'gentle': []}
    for r in range(a.rounds):
        rounds['idle'].append(impact.idle(cluster, cluster.fresh_table('bench_app'),
                                          a.rows, a.pgbench_s))
        rounds['backfilld'].append(impact.during_backfilld(
            cluster, daemon, cluster.fresh_table('bench_app'), a.rows, hint, f'impact-{r}'))
        rounds['gentle'].append(impact.during_backfilld(
            cluster, daemon, cluster.fresh_table('bench_app'), a.rows, hint * 4,
            f'impact-gentle-{r}', settings=GENTLE))
    app = {phase: impact.pooled(runs) for phase, runs in rounds.items()}
    app['single'] = impact.pooled([impact.during_single_update(
        cluster, cluster.fresh_table('bench_app'), a.rows, hint)])
    return app


def main(argv):
    a = options(argv)
    clock = Clock()
    cluster = Cluster(a.rows)
    daemon = None
    raw = {}
    ok = False
    try:
        cluster.start()
        clock.say(f'PostgreSQL on port {cluster.primary.port}; generating {a.rows:,} rows')
        cluster.make_source()
        daemon = Daemon(cluster, Path(a.out) / 'daemon').start()

        # Idle first: a daemon that has never run a job.
        before = thread_cpu_s(daemon.pid)
        time.sleep(a.idle_s)
        raw['idle_cpu_s_per_hour'] = (thread_cpu_s(daemon.pid) - before) * 3600 / a.idle_s
        clock.say(f'idle: {raw["idle_cpu_s_per_hour"]:.3f} CPU s per hour')

        runs = throughput(cluster, daemon, a, clock)
        raw['throughput'] = {w: [{k: v for k, v in r.items() if k != 'batches'} for r in rs]
                             for w, rs in runs.items()}
        raw['flat_cost'] = flat_cost(cluster, daemon, a)
        clock.say(f'flat cost: last/first {raw["flat_cost"]["ratio"]:.2f}')

        hint = max(r['seconds'] for r in runs['single'] + runs['backfilld']) * 2 + 2
        app = raw['application'] = application(cluster, daemon, a, hint)
        clock.say('application impact: p99 idle {:.1f} ms, during backfilld {:.1f} ms, '
                  'during one UPDATE {:.1f} ms'.format(
                      app['idle']['p99_ms'] or 0, app['backfilld']['p99_ms'] or 0,
                      app['single']['p99_ms'] or 0))

        raw['lag'] = lag(cluster, daemon, a, clock)
        clock.say(f'lag: max {raw["lag"]["max_lag_bytes"] / MIB:.1f} MiB')

        per_job = max(1000, a.rows // 8)
        tables = [cluster.fresh_table(f'bench_c{i}', rows=per_job) for i in range(8)]
        raw['control'] = control.status_while_jobs_run(cluster, daemon, tables, 'control')
        clock.say(f'control: {len(raw["control"]["all_running_ms"])} status requests '
                  'while 8 jobs ran')

        table = cluster.fresh_table('bench_pickup', rows=1000)
        raw['pickup_ms'] = control.pickup(cluster, daemon, table, 'pickup', a.pickups)
        clock.say(f'pickup: max {max(raw["pickup_ms"]):.1f} ms')

        # VmHWM over the daemon's life: every backfilld run resets it to
        # measure its own peak (Daemon.reset_peak_rss).
        raw['memory_kib'] = dict(memory_kib(daemon.pid), VmHWM=daemon.peak_rss_kib())
        version = cluster.conn.execute('SHOW server_version').fetchone()[0]
        timeline = median_run(runs['backfilld'])['batches']
        ok = True
    finally:
        if daemon is not None:
            daemon.stop()
        cluster.stop(keep=not ok)

    metrics = build_metrics(a, runs, raw)
    shown = ' '.join(arg for i, arg in enumerate(argv)
                     if arg != '--out' and (i == 0 or argv[i - 1] != '--out')
                     and not arg.startswith('--out='))
    context = {'date': datetime.now(timezone.utc).strftime('%Y-%m-%d'),
               'command': 'make bench' + (f' BENCH_ARGS="{shown}"' if shown else ''),
               'machine': report.machine(), 'postgres': version, 'rows': a.rows,
               'rounds': a.rounds, 'seconds': round(time.monotonic() - clock.start, 1)}
    out = Path(a.out)
    report.write(out, metrics, context, raw)
    png = report.plot(out / 'throughput.png', timeline,
                      f'backfilld, {a.rows:,} rows: rows/s and batch size per batch')
    print()
    print('\n'.join(report.table_lines(metrics)))
    print(f'\nwritten: {out / "results.md"}, {out / "results.json"}'
          + (f', {png}' if png else ''))
    return 0


def slice_label(way):
    n = SLICED[way] or 1
    return f'{n} slice' + ('s' if n > 1 else '')


def slice_metrics(a, runs, rate):
    """backfilld's scaling over 1, 2 and 4 slices, and where its limit is:
    the database's CPU and WAL per row, the share of the machine's cores the
    database used, the daemon's CPU, and what the sessions waited on; the
    one UPDATE for contrast. Each a median of the rounds (waits: pooled)."""
    cores = os.cpu_count() or 1
    ways = list(SLICED) + ['single', 'two']
    label = {w: slice_label(w) for w in SLICED}
    label['single'] = 'one UPDATE'
    label['two'] = 'two UPDATEs at once (halves)'
    best = max(SLICED, key=lambda w: rate[w])
    m = [Metric(f'throughput: backfilld, {label[w]}', rate[w], 'rows/s')
         for w in SLICED if w != 'backfilld']
    m += [
        Metric('backfilld 2 slices / 1 slice', rate['backfilld_2'] / rate['backfilld'], 'x',
               ('>=', 1.4)),
        Metric('backfilld 4 slices / 1 slice', rate['backfilld_4'] / rate['backfilld'], 'x'),
        Metric('best slice count / one UPDATE', rate[best] / rate['single'], 'x', ('>=', 1.1),
               note=label[best]),
        # The machine's own ceiling for two writers of one table, for scale.
        Metric('two UPDATEs at once (halves) / one UPDATE', rate['two'] / rate['single'], 'x'),
        Metric('backfilld 2 slices / two UPDATEs at once', rate['backfilld_2'] / rate['two'],
               'x'),
    ]

    def per_run(way, value):
        return statistics.median(value(r) for r in runs[way])

    for w in ways:
        m.append(Metric(f'database CPU per million rows, {label[w]}',
                        per_run(w, lambda r: r['db_cpu_s'] / a.rows * 1e6), 's'))
    for w in ways:
        m.append(Metric(f'database CPU share of {cores} cores, {label[w]}',
                        per_run(w, lambda r: 100.0 * r['db_cpu_s'] / (r['seconds'] * cores)),
                        '%', note=f'CPU s of every PostgreSQL process / (run s x {cores})'))
    for w in ways:
        m.append(Metric(f'WAL per row, {label[w]}',
                        per_run(w, lambda r: r['wal_bytes'] / a.rows), 'bytes'))
    for w in SLICED:
        m.append(Metric(f'daemon CPU per million rows, {label[w]}',
                        per_run(w, lambda r: r['daemon_cpu_s'] / a.rows * 1e6), 's'))
    for w in ways:
        counts = {}
        for r in runs[w]:
            for what, n in r['waits'].items():
                counts[what] = counts.get(what, 0) + n
        if not counts:
            m.append(Metric(f'sessions waiting on a lock, {label[w]}', None, '%',
                            note='no sample: the run was shorter than one sampling interval'))
            continue
        spread, samples = wait_spread(counts)
        m.append(Metric(f'sessions waiting on a lock, {label[w]}', 100.0 * lock_share(counts),
                        '%', note=f'{samples:,} sample{"s" if samples != 1 else ""} of its '
                        f'sessions: {spread}'))
    return m


def rss_per_slice_kib(runs):
    """What a slice adds to the daemon's resident set: each run's own peak
    (Daemon.reset_peak_rss), 4 slices against 1."""
    four = statistics.median(r['peak_rss_kib'] for r in runs['backfilld_4'])
    one = statistics.median(r['peak_rss_kib'] for r in runs['backfilld'])
    return (four - one) / 3.0


def build_metrics(a, runs, raw):
    rate = {w: statistics.median(r['rows_per_s'] for r in rs) for w, rs in runs.items()}
    m = [
        Metric('throughput: backfilld', rate['backfilld'], 'rows/s'),
        Metric('throughput: one UPDATE', rate['single'], 'rows/s'),
        Metric('throughput: PL/pgSQL keyset loop', rate['plpgsql'], 'rows/s',
               note=f'{DEFAULT_BATCH_MAX:,} rows per commit'),
        Metric('throughput: OFFSET loop from psql', rate['offset'], 'rows/s',
               note=f'{DEFAULT_BATCH_MAX:,} rows per commit'),
        Metric('backfilld / one UPDATE', rate['backfilld'] / rate['single'], 'x', ('>=', 0.9)),
        Metric('backfilld / PL/pgSQL loop', rate['backfilld'] / rate['plpgsql'], 'x',
               ('>=', 1.0)),
        Metric('backfilld / OFFSET loop', rate['backfilld'] / rate['offset'], 'x'),
    ]
    m += slice_metrics(a, runs, rate)
    flat = raw['flat_cost']
    m.append(Metric('flat cost: last / first 10% mean batch duration', flat['ratio'], 'x',
                    ('<=', 1.15), note=f'{flat["batch_size"]:,}-row batches'))
    offset_ms = median_run(runs['offset'])['statement_ms']
    if len(offset_ms) >= 2:
        tenth = max(1, len(offset_ms) // 10)
        m.append(Metric('flat cost of the OFFSET loop, for contrast',
                        statistics.mean(offset_ms[-tenth - 1:-1] or offset_ms[-1:]) /
                        statistics.mean(offset_ms[:tenth]), 'x'))
    app = raw['application']
    for phase, label in (('idle', 'idle'), ('backfilld', 'during backfilld'),
                         ('gentle', f'during backfilld, batch_size_max {GENTLE["batch_size_max"]}'),
                         ('single', 'during one UPDATE')):
        m.append(Metric(f'application p50 latency, {label}', app[phase]['p50_ms'], 'ms'))
        m.append(Metric(f'application p99 latency, {label}', app[phase]['p99_ms'], 'ms',
                        note=f'{app[phase]["transactions"]:,} transactions'
                        + (f' in {app[phase]["rounds"]} rounds' if app[phase]['rounds'] > 1
                           else '')))
        m.append(Metric(f'application TPS, {label}', app[phase]['tps'], 'tx/s',
                        note=f'offered {impact.RATE_TPS}'))
    if app['idle']['p99_ms'] and app['backfilld']['p99_ms']:
        m.append(Metric('application p99: during backfilld / idle',
                        app['backfilld']['p99_ms'] / app['idle']['p99_ms'], 'x', ('<=', 1.5)))
    if app['idle']['p99_ms'] and app['gentle']['p99_ms']:
        m.append(Metric('application p99: during gentler backfilld / idle',
                        app['gentle']['p99_ms'] / app['idle']['p99_ms'], 'x',
                        note=f'{app["gentle"]["backfill_seconds"]:.1f} s instead of '
                        f'{app["backfilld"]["backfill_seconds"]:.1f} s'))
    m.append(Metric('longest application wait on a backfilld lock',
                    app['backfilld']['max_app_lock_wait_ms'], 'ms',
                    ('<=', DEFAULT_LOCK_WAIT_MAX_MS)))
    m.append(Metric('longest application wait on the one UPDATE\'s locks',
                    app['single']['max_app_lock_wait_ms'], 'ms'))
    lag = raw['lag']
    bound = lag['high_mark_bytes'] + lag['batch_wal_bytes']
    m.append(Metric('max replay lag', lag['max_lag_bytes'] / MIB, 'MiB', ('<=', bound / MIB),
                    note=f'high mark {lag["high_mark_bytes"] / MIB:.0f} MiB + one batch\'s WAL'))
    daemon_cpu = sum(r['daemon_cpu_s'] for r in runs['backfilld'])
    db_cpu = sum(r['db_cpu_s'] for r in runs['backfilld'])
    rows_done = a.rows * len(runs['backfilld'])
    m += [
        Metric('daemon peak RSS', raw['memory_kib']['VmHWM'] / 1024.0, 'MiB', ('<', 10),
               note='of which shared libraries {:.1f} MiB at the end'.format(
                   raw['memory_kib'].get('RssFile', 0) / 1024.0)),
        Metric('daemon RSS per slice', rss_per_slice_kib(runs), 'KiB',
               note='peak RSS of the 4-slice run minus that of the 1-slice run, divided by 3; '
               'medians of the rounds'),
        Metric('daemon CPU per million rows', daemon_cpu / rows_done * 1e6, 's'),
        Metric('daemon CPU / database CPU, same work', 100.0 * daemon_cpu / db_cpu
               if db_cpu else None, '%', ('<', 5)),
        Metric('daemon CPU when idle', raw['idle_cpu_s_per_hour'], 's/hour'),
    ]
    ctl = raw['control']
    samples = ctl['all_running_ms'] or ctl['any_ms']
    note = (f'{len(samples)} requests, 8 jobs running' if ctl['all_running_ms']
            else f'{len(samples)} requests; the jobs ended before all 8 ran at once')
    m.append(Metric('status round trip p50', impact.percentile(samples, 50), 'ms', note=note))
    m.append(Metric('status round trip p99', impact.percentile(samples, 99), 'ms', ('<', 10),
                    note=note))
    if ctl['cli_ms']:
        m.append(Metric('`backfillctl status` command p50', statistics.median(ctl['cli_ms']),
                        'ms', note='process start included'))
    m.append(Metric('pickup latency p50', statistics.median(raw['pickup_ms']), 'ms'))
    m.append(Metric('pickup latency max', max(raw['pickup_ms']), 'ms', ('<', 200),
                    note=f'{len(raw["pickup_ms"])} jobs'))
    return m


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
