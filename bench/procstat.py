"""CPU time and memory of processes, read from /proc.

The daemon's CPU is summed over its threads in nanoseconds (schedstat), since
a backfill of a million rows costs it only tens of milliseconds. PostgreSQL's
CPU is the postmaster's own and reaped children's time plus every live
child's, in clock ticks: a backend that exits during a measurement (a job's
connection closes when the job ends) still counts, through cutime.
"""

import os
from pathlib import Path

TICK_S = 1.0 / os.sysconf('SC_CLK_TCK')


def _stat_fields(pid):
    """The fields of /proc/pid/stat after the command name, or None."""
    try:
        text = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    return text.rsplit(')', 1)[1].split()


def thread_cpu_s(pid):
    """CPU seconds of every thread of pid (nanosecond resolution)."""
    total = 0
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            total += int(Path(f'/proc/{pid}/task/{tid}/schedstat').read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def memory_kib(pid):
    """{VmHWM: the largest resident set the process ever had; VmRSS and its
    parts RssAnon (the process's own memory) and RssFile (mapped files,
    mostly shared libraries)}, in KiB."""
    out = {}
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            key = line.split(':', 1)[0]
            if key in ('VmHWM', 'VmRSS', 'RssAnon', 'RssFile', 'RssShmem'):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def peak_rss_kib(pid):
    return memory_kib(pid).get('VmHWM')


def cluster_cpu_s(postmaster_pid):
    """CPU seconds used so far by a PostgreSQL cluster: the postmaster with
    its reaped children, plus every live child."""
    fields = _stat_fields(postmaster_pid)
    if fields is None:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat (1-based), that
    # is 11-14 after the command name (state is index 0 here).
    ticks = sum(int(v) for v in fields[11:15])
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        child = _stat_fields(entry)
        if child is not None and int(child[1]) == postmaster_pid:
            ticks += int(child[11]) + int(child[12])
    return ticks * TICK_S
