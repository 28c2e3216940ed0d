"""backfillctl and status as an operator meets them (issues 12 and 13): the
whole help, switches that read true/false, what status says about paused,
orphaned and blocked jobs, a status that does not need the database, the
default cut of finished jobs, the watch header's width, and plan's estimate
under a rate limit."""

import json
import os
import re
import subprocess

from daemon import BACKFILLCTL, job_row, read_pty_to_end, wait_for
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
    assert max(len(line) for line in out.split('\n')) <= 80, out
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


def test_status_shows_no_rate_and_no_eta_while_paused(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'slow', pause_ms=2, batch_size=50)
    wait_for(lambda: daemon.ctl_json('status', 'slow')['jobs'][0]['rate_rows_s'] > 0, 30,
             what='a measured rate')
    daemon.ctl('pause', '--all', check=0)
    wait_for(lambda: daemon.ctl_json('status')['daemon']['paused'], 10, what='pause --all seen')
    status = daemon.ctl_json('status')
    [job] = status['jobs']
    assert status['daemon']['summary'].endswith(', 0 rows/s'), status['daemon']
    assert job['state'] == 'running' and job['throttled'] is True, job
    assert job['rate_rows_s'] == 0 and job['eta_s'] is None, job
    assert isinstance(job['rate_rows_s'], (int, float))
    line = next(l for l in daemon.ctl('status', check=0).stdout.splitlines()
                if l.startswith('slow'))
    assert line.split()[-3:-1] == ['-', '-'], line     # RATE and ETA
    # The job's own pause: the same.
    daemon.ctl('resume', '--all', check=0)
    daemon.ctl('pause', 'slow', check=0)
    [job] = daemon.ctl_json('status')['jobs']
    assert job['state'] == 'paused' and job['rate_rows_s'] == 0 and job['eta_s'] is None, job


def test_status_after_a_crash_names_the_dead_owner_and_the_lease_end(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name, {'engine': {'lease_s': 120}})
    counter_job(conn, 'orphan', pause_ms=2, batch_size=50)
    wait_for(lambda: job_row(conn, 'orphan')['batches'] >= 2, 30, what='some batches')
    dead_owner = job_row(conn, 'orphan')['owner']
    daemon.kill()
    daemon.start().wait_ready()
    status = daemon.ctl_json('status')
    [job] = status['jobs']
    assert job['state'] == 'running' and job['here'] is False, job
    assert job['owner'] == dead_owner != status['daemon']['owner']
    assert job['owner_alive'] is False, job
    assert job['lease_until'] and 0 < job['lease_expires_in_s'] <= 120, job
    text = daemon.ctl('status', check=0).stdout
    print(text)
    assert f'lease held by {dead_owner} (not this daemon; that process is gone)' in text
    assert re.search(r', expires in \d+m\d\ds \(at \S+.*\); another daemon takes the job '
                     r'over then', text), text


def test_status_names_the_session_that_blocks_a_batch(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=2000)
    daemon = daemon_factory(db.server, db.name, {
        'batch': {'size': 100, 'size_min': 100, 'size_max': 100}})
    counter_job(conn, 'blocked', state='paused')
    daemon.ctl('set', 'blocked', 'lock_timeout_ms=120000', 'statement_timeout_ms=120000',
               'lock_wait_max_ms=120000', check=0)
    with db.connect(autocommit=False) as holder:
        holder.execute("UPDATE items SET payload = 'mine' /* SECRET-QUERY-TEXT */ "
                       "WHERE id = 1500")
        holder_pid = holder.execute('SELECT pg_backend_pid()').fetchone()[0]
        daemon.ctl('resume', 'blocked', check=0)

        def blocked():
            [job] = daemon.ctl_json('status', 'blocked')['jobs']
            return job if job['blocked_by'] else None
        job = wait_for(blocked, 60, interval=0.2, what='status to name the blocker')
        assert [b['pid'] for b in job['blocked_by']] == [holder_pid], job
        assert job['blocked_by'][0]['state'] == 'idle in transaction', job
        assert isinstance(job['lock_wait_s'], (int, float)) and job['lock_wait_s'] >= 0
        text = daemon.ctl('status', check=0).stdout
        print(text)
        assert re.search(rf'batch waiting for a lock for \d+s, held by pid {holder_pid} '
                         r'\(user \S+, idle in transaction for \d+s', text), text
        assert 'pg_terminate_backend' in text
        assert 'SECRET-QUERY-TEXT' not in text + json.dumps(job)
        holder.rollback()
    wait_for(lambda: not daemon.ctl_json('status', 'blocked')['jobs'][0]['blocked_by'], 30,
             what='the block to end')


def test_status_answers_from_memory_while_the_jobs_table_is_locked(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'busy', pause_ms=2, batch_size=50)
    wait_for(lambda: job_row(conn, 'busy')['batches'] >= 2, 30, what='some batches')
    with db.connect(autocommit=False) as locker:
        locker.execute('LOCK TABLE backfill.jobs IN ACCESS EXCLUSIVE MODE')
        for _ in range(2):      # again while the first query's aftermath settles
            status = daemon.ctl_json('status')
            assert status['partial'] is True, status
            assert 'lock timeout' in status['partial_reason'], status
            [job] = status['jobs']
            assert job['name'] == 'busy' and job['state'] == 'running' and job['here']
            assert job['rows_scanned'] > 0 and job['batch_size'] >= 1
            assert isinstance(job['rate_rows_s'], (int, float))
            assert isinstance(job['throttle_reasons'], list)
        text = daemon.ctl('status', check=0).stdout
        assert 'PARTIAL: only the jobs this daemon runs, from its memory' in text, text
        assert 'busy' in text
        # One job by name: ours, so known.
        assert daemon.ctl_json('status', 'busy')['jobs'][0]['name'] == 'busy'
        locker.rollback()
    status = daemon.ctl_json('status')
    assert status['partial'] is False and status['partial_reason'] is None


def test_status_answers_from_memory_when_the_database_does_not_answer(db, daemon_factory):
    import signal
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'busy', pause_ms=2, batch_size=50)
    wait_for(lambda: job_row(conn, 'busy')['batches'] >= 2, 30, what='some batches')
    # A black hole for the monitor connection: its backend stopped.
    monitor_pid = conn.execute("SELECT pid FROM pg_stat_activity "
                               "WHERE application_name = 'backfilld monitor'").fetchone()[0]
    os.kill(monitor_pid, signal.SIGSTOP)
    try:
        status = daemon.ctl_json('status')
        assert status['partial'] is True, status
        assert 'did not answer' in status['partial_reason'], status
        assert [j['name'] for j in status['jobs']] == ['busy']
        # That query is still out: the next one does not queue up behind it.
        again = daemon.ctl_json('status')
        assert again['partial'] is True
        assert 'an earlier status query has not come back' in again['partial_reason'], again
        assert [j['name'] for j in again['jobs']] == ['busy']
    finally:
        os.kill(monitor_pid, signal.SIGCONT)
    wait_for(lambda: daemon.ctl_json('status')['partial'] is False, 30, what='a full status')


def test_status_leaves_out_old_finished_jobs_unless_asked(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=100)
    daemon = daemon_factory(db.server, db.name)
    conn.execute("INSERT INTO backfill.jobs (name, table_name, set_clause, state) "
                 "SELECT 'done-' || g, 'public.items', 'counter = counter', 'succeeded' "
                 "FROM generate_series(1, 3000) g")
    conn.execute("UPDATE backfill.jobs SET finished_at = now() - g.n * interval '1 minute' "
                 "FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM backfill.jobs) g "
                 "WHERE g.id = backfill.jobs.id")
    counter_job(conn, 'waiting', state='paused')
    status = daemon.ctl_json('status')
    names = [j['name'] for j in status['jobs']]
    assert 'waiting' in names and len(names) == 51, len(names)
    # The newest finished ones: done-1 finished a minute ago, done-50 fifty.
    assert {f'done-{n}' for n in range(1, 51)} <= set(names)
    assert status['jobs_omitted'] == 2950
    text = daemon.ctl('status', check=0).stdout
    assert '(2950 older finished jobs not shown: backfillctl status --all)' in text
    every = daemon.ctl_json('status', '--all')
    assert len(every['jobs']) == 3001 and every['jobs_omitted'] == 0
    old = daemon.ctl_json('status', 'done-2999')
    assert [j['name'] for j in old['jobs']] == ['done-2999']


# Plays the attacker who can write to the socket's directory: right after
# the daemon binds its control socket, the socket is replaced by a symlink
# to a file the attacker must not be able to touch.
SWAP_SHIM = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	int (*real_bind)(int, const struct sockaddr *, socklen_t) =
		(int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	const char *path = getenv("BF_TEST_SWAP_PATH"), *target = getenv("BF_TEST_SWAP_TARGET");
	int rc = real_bind(fd, addr, len);

	if (rc == 0 && path && target && addr->sa_family == AF_UNIX &&
	    strcmp(((const struct sockaddr_un *)addr)->sun_path, path) == 0) {
		unlink(path);
		if (symlink(target, path) != 0)
			abort();
	}
	return rc;
}
'''


def test_control_socket_group_never_follows_a_symlink_swapped_in(db, daemon_factory, tmp_path):
    import grp
    import stat
    shim_c = tmp_path / 'swap.c'
    shim = tmp_path / 'swap.so'
    shim_c.write_text(SWAP_SHIM)
    subprocess.run(['cc', '-shared', '-fPIC', '-o', str(shim), str(shim_c), '-ldl'], check=True)
    group = grp.getgrgid(65534).gr_name if 65534 in [g.gr_gid for g in grp.getgrall()] \
        else grp.getgrall()[-1].gr_name
    precious = tmp_path / 'precious'
    precious.write_text('root owns this\n')
    os.chown(precious, 0, 0)
    precious.chmod(0o600)
    before = os.lstat(precious)
    d = daemon_factory(db.server, db.name, {'control': {'socket_group': group}}, start=False)
    asan = d.env().get('ASAN_OPTIONS', '')
    d.start(extra_env={'LD_PRELOAD': str(shim), 'BF_TEST_SWAP_PATH': str(d.socket),
                       'BF_TEST_SWAP_TARGET': str(precious),
                       'ASAN_OPTIONS': f'{asan}:verify_asan_link_order=0'.lstrip(':')})
    wait_for(lambda: not d.alive() or 'serving on' in d.current_log(), 15,
             what='the daemon to refuse the socket, or to serve on it')
    after = os.lstat(precious)
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (0, 0, 0o600), \
        (after.st_uid, after.st_gid, oct(after.st_mode), group)
    assert (after.st_uid, after.st_gid, after.st_mode) == \
        (before.st_uid, before.st_gid, before.st_mode)
    assert d.proc.wait(timeout=15) == 1, d.current_log()
    log = d.current_log()
    assert 'no longer holds the socket just bound there (it is a symlink now)' in log, log
    assert d.socket.is_symlink(), 'the swapped-in path is left as it is'
    # Without the attacker, the group is set on the socket itself.
    d.socket.unlink()
    d.start().wait_ready()
    st = os.lstat(d.socket)
    assert stat.S_ISSOCK(st.st_mode) and grp.getgrgid(st.st_gid).gr_name == group


def watch_on_a_terminal(daemon, columns, frames=2, deadline_s=30):
    """backfillctl watch on a pty `columns` wide: its output once `frames`
    frames were drawn, escape sequences removed, as lines."""
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios
    import time
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack('HHHH', 40, columns, 0, 0))
        os.environ.pop('NO_COLOR', None)
        os.environ['TERM'] = 'xterm'
        os.execv(str(BACKFILLCTL), [str(BACKFILLCTL), '-s', str(daemon.socket), 'watch',
                                    '-n', '0.2'])
    out = b''
    end = time.monotonic() + deadline_s
    try:
        while out.count(b'NAME') < frames and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
    finally:
        os.kill(pid, signal.SIGINT)
        out += read_pty_to_end(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    text = re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', out.decode(errors='replace'))
    return text.replace('\r', '').split('\n')


def test_watch_header_fits_the_terminal(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'watched', pause_ms=2, batch_size=50)
    wait_for(lambda: job_row(conn, 'watched')['batches'] >= 2, 30, what='some batches')
    daemon.ctl('pause', '--all', check=0)
    # The longest header: the daemon, ALL JOBS PAUSED, and PARTIAL with its
    # reason (the jobs table locked).
    with db.connect(autocommit=False) as locker:
        locker.execute('LOCK TABLE backfill.jobs IN ACCESS EXCLUSIVE MODE')
        status = daemon.ctl('status', check=0).stdout
        header = status.split('\n\n')[0].split('\n')
        assert len(header) == 3 and max(len(l) for l in header) > 100, status  # a pipe: whole
        for columns in (80, 100):
            lines = watch_on_a_terminal(daemon, columns)
            print('\n'.join(lines))
            frame = lines[lines.index(next(l for l in lines if l.startswith('backfilld '))):]
            frame = frame[:frame.index(next(l for l in frame if l.startswith('NAME')))]
            assert frame[0].startswith('backfilld ') and 'job slots busy' in '\n'.join(frame)
            assert any(l.startswith('ALL JOBS PAUSED') for l in frame), frame
            assert any(l.startswith('PARTIAL: ') for l in frame), frame
            too_wide = [l for l in frame if len(l) > columns]
            assert not too_wide, f'{columns} columns: {too_wide}'
        locker.rollback()


def test_plan_estimate_obeys_max_rows_per_s(db, daemon_factory):
    conn = db.conn
    counter_table(conn, rows=5000)
    daemon = daemon_factory(db.server, db.name)
    counter_job(conn, 'capped', batch_size=500, state='paused')
    free = daemon.ctl_json('plan', 'capped')
    assert free['max_rows_per_s'] is None and free['limited_by'] is None
    assert free['estimated_total_s'] == free['estimated_paced_s']
    # 5000 rows at 10 rows/s: 500 s, far slower than any measured pace.
    daemon.ctl('set', 'capped', 'max_rows_per_s=10', check=0)
    capped = daemon.ctl_json('plan', 'capped')
    print(capped)
    assert capped['max_rows_per_s'] == 10 and capped['limited_by'] == 'max_rows_per_s'
    assert capped['estimated_rate_limited_s'] == 500.0
    assert capped['estimated_total_s'] == 500.0 > capped['estimated_paced_s']
    text = daemon.ctl('plan', 'capped', check=0).stdout
    print(text)
    assert re.search(r'about 8m20s at max_rows_per_s of 10 rows/s \(\S+ at the measured '
                     r'pace\), without the verification pass', text), text
    assert 'verification pass' in capped['note']
    # A failed job can be planned too (documented): the plan is how to find out why.
    conn.execute("UPDATE backfill.jobs SET state = 'failed' WHERE name = 'capped'")
    assert daemon.ctl_json('plan', 'capped')['estimated_total_s'] == 500.0
