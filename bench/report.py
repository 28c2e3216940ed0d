"""The bench's results: a table of metrics with their goals, printed and
written as Markdown and JSON, and the throughput run's timeline as a PNG."""

import json
import platform
import os
from pathlib import Path


class Metric:
    """One line of the table. goal is (op, bound) with op one of '<=', '>=',
    '<', or None for a number shown for context."""

    def __init__(self, name, value, unit, goal=None, note=''):
        self.name, self.value, self.unit, self.goal, self.note = name, value, unit, goal, note

    @property
    def met(self):
        if self.goal is None or self.value is None:
            return None
        op, bound = self.goal
        return {'<=': self.value <= bound, '>=': self.value >= bound,
                '<': self.value < bound}[op]

    def goal_text(self):
        if self.goal is None:
            return ''
        op, bound = self.goal
        return f'{op} {fmt(bound)}{(" " + self.unit) if self.unit else ""}'

    def as_json(self):
        return {'metric': self.name, 'value': self.value, 'unit': self.unit,
                'goal': None if self.goal is None else {'op': self.goal[0], 'bound': self.goal[1]},
                'met': self.met, 'note': self.note}


def fmt(value):
    if value is None:
        return 'n/a'
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 100:
        return f'{int(value):,}'
    if abs(value) >= 100:
        return f'{value:,.0f}'
    if abs(value) >= 10:
        return f'{value:.1f}'
    return f'{value:.2f}'


def verdict(metric):
    return {True: 'met', False: 'NOT met', None: ''}[metric.met]


def machine():
    cpu = ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    return {'cpu': cpu, 'cores': os.cpu_count(), 'memory_gib': round(mem_gib, 1),
            'kernel': platform.release(), 'python': platform.python_version()}


def table_lines(metrics):
    rows = [(m.name, f'{fmt(m.value)} {m.unit}'.strip(), m.goal_text(), verdict(m))
            for m in metrics]
    head = ('metric', 'value', 'goal', 'met')
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    line = lambda r: '  '.join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
    return [line(head), line(tuple('-' * w for w in widths))] + [line(r) for r in rows]


def markdown(metrics, context):
    out = ['| metric | value | goal | met |', '|---|---:|---|---|']
    for m in metrics:
        note = f' ({m.note})' if m.note else ''
        out.append(f'| {m.name}{note} | {fmt(m.value)} {m.unit} | {m.goal_text()} | {verdict(m)} |')
    mach = context['machine']
    out += ['', f"Measured {context['date']} with `{context['command']}` on "
            f"{mach['cores']} cores ({mach['cpu'] or 'unknown CPU'}), {mach['memory_gib']} GiB, "
            f"PostgreSQL {context['postgres']}, {context['rows']:,} rows, "
            f"{context['rounds']} rounds (medians)."]
    return '\n'.join(out) + '\n'


def write(out_dir, metrics, context, raw):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'results.md').write_text(markdown(metrics, context))
    (out_dir / 'results.json').write_text(json.dumps(
        {'context': context, 'metrics': [m.as_json() for m in metrics], 'raw': raw},
        indent=2, default=str) + '\n')


def plot(path, batches, title):
    """rows/s and batch size of each batch over the run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not batches:
        return None
    t0 = batches[0][0] - batches[0][2] / 1000.0
    times = [b[0] - t0 for b in batches]
    rates = [b[1] / (b[2] / 1000.0) if b[2] > 0 else 0 for b in batches]
    sizes = [b[1] for b in batches]
    fig, left = plt.subplots(figsize=(9, 4.5), dpi=100)
    left.plot(times, rates, color='tab:blue', marker='.', label='rows/s (per batch)')
    left.set_xlabel('seconds since the first batch started')
    left.set_ylabel('rows/s', color='tab:blue')
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.step(times, sizes, where='post', color='tab:orange', label='batch size')
    right.set_ylabel('batch size (rows)', color='tab:orange')
    right.set_ylim(bottom=0)
    left.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
