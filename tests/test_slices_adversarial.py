"""Slices, adversarially: races between daemons' claims, repair passes, and
the job row steered while slices run. Each test here failed when written
(review of issue 15); see the docstrings for the bug each one proves."""

import time

from daemon import insert_job, job_row, wait_for, wait_job_state
from workload import assert_each_row_once, counter_job, counter_table, wait_succeeded

SLICED = {'batch': {'size': 50, 'size_min': 50, 'size_max': 50},
          'engine': {'max_jobs': 4, 'lease_s': 6, 'poll_interval_ms': 200}}

# -- a claim that takes a while ------------------------------------------------
#
# Every claim reads backfill.control (the global pause). Replacing it with a
# view that sleeps, for the listener connections named in slow_claims and
# only while the claim's own statement is running, stretches the time
# between a claim's snapshot and its row locks: what a busy server, a large
# jobs table or a preempted backend does. Nothing else of the daemons changes.

SLOW_CONTROL = """
CREATE TABLE public.slow_claims (pid int PRIMARY KEY, seconds float8 NOT NULL,
                                 query_like text NOT NULL, only_if text NOT NULL);
CREATE FUNCTION public.claim_delay() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  s public.slow_claims;
  go boolean;
BEGIN
  SELECT * INTO s FROM public.slow_claims
  WHERE pid = pg_backend_pid() AND current_query() LIKE query_like;
  IF FOUND THEN
    EXECUTE s.only_if INTO go;
    IF go THEN
      PERFORM pg_sleep(s.seconds);
    END IF;
  END IF;
  RETURN true;
END $$;
ALTER TABLE backfill.control RENAME TO control_real;
CREATE VIEW backfill.control AS SELECT * FROM backfill.control_real WHERE public.claim_delay();
"""

CLAIM_SETUP_LIKE = '%FROM backfill.claim_setups(%'
CLAIM_SLICES_LIKE = '%FROM backfill.claim_slices(%'


def listener_pids(conn):
    return {r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'backfilld listener' "
        "AND datname = current_database()").fetchall()}


def two_daemons(db, daemon_factory):
    """Two daemons, and the pid of each one's listener connection."""
    conn = db.conn
    first = daemon_factory(db.server, db.name, SLICED, name='first')
    wait_for(lambda: len(listener_pids(conn)) == 1, 10, what='the first listener')
    first_pid = listener_pids(conn).pop()
    second = daemon_factory(db.server, db.name, SLICED, name='second')
    wait_for(lambda: len(listener_pids(conn)) == 2, 10, what='the second listener')
    second_pid = (listener_pids(conn) - {first_pid}).pop()
    conn.execute(SLOW_CONTROL)
    return (first, first_pid), (second, second_pid)


def slow(conn, pid, seconds, like, only_if):
    conn.execute('INSERT INTO public.slow_claims VALUES (%s, %s, %s, %s)',
                 (pid, seconds, like, only_if))


def test_a_claim_never_takes_a_slice_another_daemon_just_claimed(db, daemon_factory):
    """claim_slices_sql locks the job row (FOR NO KEY UPDATE SKIP LOCKED) to
    "count the same free room" only once, but in READ COMMITTED the row lock
    does not refresh the statement's snapshot: `cand` and the room are read
    from the snapshot taken before the lock. `pick` then locks the slice
    with FOR UPDATE SKIP LOCKED: a slice claimed (and committed) by another
    daemon in between is not locked any more, so it is locked, and the
    EvalPlanQual recheck only re-tests `s.id IN (cand ...)`, not owner or
    lease_until. The claim bumps the epoch of a slice whose lease is live:
    the first daemon's walk is fenced out (lease lost), its batch in flight
    rolled back, with both daemons healthy."""
    conn = db.conn
    counter_table(conn, rows=4000)
    (first, first_pid), (second, second_pid) = two_daemons(db, daemon_factory)
    # Takeovers of a lease that was still live, as they happen.
    conn.execute("""
        CREATE TABLE public.steals (slice integer, old_owner text, new_owner text,
                                    old_until timestamptz, at timestamptz);
        CREATE FUNCTION public.note_steal() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.owner IS NOT NULL AND NEW.owner IS NOT NULL AND NEW.owner <> OLD.owner
             AND OLD.lease_until > now() THEN
            INSERT INTO public.steals VALUES (NEW.slice, OLD.owner, NEW.owner,
                                              OLD.lease_until, now());
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER note_steal BEFORE UPDATE ON backfill.slices
          FOR EACH ROW EXECUTE FUNCTION public.note_steal();""")
    free = ("SELECT EXISTS (SELECT FROM backfill.slices "
            "WHERE state = 'pending' AND owner IS NULL)")
    # One claim takes half a second, the other's two and a half: the
    # second's snapshot predates the first's commit, its locks follow it.
    slow(conn, first_pid, 0.5, CLAIM_SLICES_LIKE, free)
    slow(conn, second_pid, 2.5, CLAIM_SLICES_LIKE, free)
    counter_job(conn, 'raced', pause_ms=2, slices=2)
    wait_succeeded(conn, 'raced', 120)
    assert_each_row_once(conn, rows=4000)
    steals = conn.execute('SELECT * FROM public.steals').fetchall()
    assert steals == [], f'live leases taken over by a claim: {steals}'
    for d in (first, second):
        assert 'lease lost' not in d.log(), d.name


def test_a_job_already_cut_is_never_claimed_again_to_set_it_up(db, daemon_factory):
    """claim_setup_sql's NOT EXISTS (slices) is read from the statement's
    snapshot; the row lock (FOR UPDATE SKIP LOCKED) rechecks only the job
    row's own columns. A claim whose snapshot predates another daemon's
    setup (cut + release in one statement) and whose lock follows it
    re-claims the job row for a setup. That setup then spins: setup.c
    job_slices_made() gets made == 0 ("made by another"), marks the job
    unsynced and steps again, the sync finds the lease still ours, and
    job_split runs the split query and the INSERT again, without end, for
    as long as the slices walk; meanwhile the job row stays leased (renewed
    as a setup), and that daemon's shutdown (LEASE_RELEASE_SET: running ->
    pending) would revoke every slice of the job through jobs_slices_follow."""
    conn = db.conn
    counter_table(conn, rows=4000)
    (first, first_pid), (second, second_pid) = two_daemons(db, daemon_factory)
    uncut = ("SELECT EXISTS (SELECT FROM backfill.jobs j WHERE state IN ('pending', 'running')"
             " AND NOT EXISTS (SELECT FROM backfill.slices s WHERE s.job_id = j.id))")
    slow(conn, first_pid, 0.3, CLAIM_SETUP_LIKE, uncut)
    slow(conn, second_pid, 2.5, CLAIM_SETUP_LIKE, uncut)
    before = conn.execute('SELECT xact_commit FROM pg_stat_database '
                          'WHERE datname = current_database()').fetchone()[0]
    counter_job(conn, 'cut_twice', pause_ms=2, slices=2)
    leased_with_slices = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = job_row(conn, 'cut_twice')
        if row['slices'] and row['row']['owner'] is not None:
            leased_with_slices.append((row['row']['owner'], row['row']['lease_epoch']))
        if row['state'] in ('succeeded', 'failed', 'cancelled'):
            break
        time.sleep(0.2)
    row = wait_succeeded(conn, 'cut_twice', 5)
    after = conn.execute('SELECT xact_commit FROM pg_stat_database '
                         'WHERE datname = current_database()').fetchone()[0]
    assert_each_row_once(conn, rows=4000)
    setups = sum(d.log().count('claimed to set its walk up') for d in (first, second))
    assert setups == 1, f'the walk was claimed {setups} times to be set up ' \
        f'({after - before} transactions committed meanwhile)'
    assert leased_with_slices == [], \
        f'the job row was leased as a setup while its slices walked: {leased_with_slices[:3]}'


# -- a repair pass that fails -------------------------------------------------

def test_a_second_failed_verification_is_repaired_by_the_next_resume(db, daemon_factory):
    """jobs_touch sets repairing := true on a resume after a failed
    verification, and jobs_slices_follow resets the slices (checkpoint back
    to lower_bound) only when repairing goes false -> true. The job row's
    repairing is cleared only by success or a start over (never by a
    failure, and catch-up now clears the slice's, not the row's): after a
    repair pass whose verification fails again, the next resume finds
    repairing already true, takes the ELSIF branch, and merely sets the
    failed slice pending at its old checkpoint (its upper bound). Nothing is
    walked again; verification fails again, forever. Before slices,
    jobs_touch's `checkpoint := NULL` did the reset on every such resume."""
    conn = db.conn
    conn.execute('CREATE TABLE fills (id bigint PRIMARY KEY, v int)')
    conn.execute('INSERT INTO fills (id) SELECT g FROM generate_series(1, 600) g')
    conn.execute('ANALYZE fills')
    # While sabotage has a row, the application undoes the update of rows 1..10.
    conn.execute('CREATE TABLE sabotage ()')
    conn.execute('INSERT INTO sabotage DEFAULT VALUES')
    conn.execute("""CREATE FUNCTION undo_fill() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT FROM sabotage) THEN NEW.v := NULL; END IF;
          RETURN NEW;
        END $$""")
    conn.execute('CREATE TRIGGER undo_fill BEFORE UPDATE ON fills FOR EACH ROW '
                 'WHEN (NEW.id <= 10) EXECUTE FUNCTION undo_fill()')
    daemon = daemon_factory(db.server, db.name, SLICED)
    insert_job(conn, name='fill', table_name='fills', set_clause='v = 1',
               where_clause='v IS NULL', slices=2, allow_triggers=True)
    row = wait_job_state(conn, 'fill', {'failed', 'succeeded'}, timeout=60)
    assert row['state'] == 'failed' and row['verification_failed'], row['last_error']
    # The repair pass runs while the application still undoes: fails again.
    daemon.ctl('resume', 'fill', check=0)
    wait_for(lambda: job_row(conn, 'fill')['state'] != 'failed', 10, what='the resume')
    row = wait_job_state(conn, 'fill', {'failed', 'succeeded'}, timeout=60)
    assert row['state'] == 'failed' and row['verification_failed'], row['last_error']
    # The application is fixed: the next resume must walk the range again.
    conn.execute('DELETE FROM sabotage')
    daemon.ctl('resume', 'fill', check=0)
    wait_for(lambda: job_row(conn, 'fill')['state'] != 'failed', 10, what='the resume')
    row = wait_job_state(conn, 'fill', {'failed', 'succeeded'}, timeout=60)
    assert row['state'] == 'succeeded', \
        f"second repair pass never walked: {row['last_error']}; slices: " \
        f"{[(s['slice'], s['state'], s['checkpoint'], s['repairing']) for s in row['slices']]}"
    assert conn.execute('SELECT count(*) FROM fills WHERE v IS NULL').fetchone()[0] == 0


def test_a_job_inserted_during_a_claim_is_run_by_the_daemon_that_claimed_it(
        db, daemon_factory):
    """The claim functions lock and read each job row in statements of
    their own, with snapshots newer than the calling statement's. A job
    inserted while a claim runs is claimed by it; when the caller read the
    job's row again with its own, older snapshot, that row was not there:
    the claim was made in the database and lost to the daemon, the job sat
    leased to a daemon that did not run it until the next renewal gave it
    back."""
    conn = db.conn
    counter_table(conn, 'early', rows=200)
    counter_table(conn, 'late', rows=200)
    first = daemon_factory(db.server, db.name, SLICED, name='first')
    wait_for(lambda: len(listener_pids(conn)) == 1, 10, what='the listener')
    conn.execute(SLOW_CONTROL)
    # The claim of setups sleeps 1.5 s (once its statement has its
    # snapshot) while a job is pending and the late job is not there yet.
    slow(conn, listener_pids(conn).pop(), 1.5, CLAIM_SETUP_LIKE,
         "SELECT NOT EXISTS (SELECT FROM backfill.jobs WHERE name = 'late')")
    counter_job(conn, 'early', table='early')
    wait_for(lambda: conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
        "AND query LIKE '%backfill.claim_setups(%'").fetchone()[0] == 1, 10,
        what='the claim asleep')
    counter_job(conn, 'late', table='late')
    wait_succeeded(conn, 'early', 30)
    # Claimed by the same call, and run at once: not handed back 10 s later.
    wait_succeeded(conn, 'late', 8)
    assert 'not running here' not in first.log()
    assert_each_row_once(conn, 'late', rows=200)
