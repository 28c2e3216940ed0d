/* test_throttle.c -- the pure parts of throttling: the batch size controller,
 * the rows-per-second pacer, time windows, and the judging of samples
 * (hysteresis, fail closed, every reason reported), with synthetic durations,
 * clocks and samples. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "batch_size.h"
#include "rate.h"
#include "throttle.h"
#include "window.h"
#include "unit.h"

#define MS 1000000ULL
#define S  1000000000ULL
#define MB (1024LL * 1024)
#define GB (1024LL * MB)

/* ---- batch size controller ---------------------------------------------- */

/* One batch of the synthetic table: duration = rows * cost_per_row, nothing
 * throttled. Returns the size before the batch. */
static int run_batch(bf_batch_size *bs, double cost_per_row_ms)
{
	int rows = bf_batch_size_get(bs);

	bf_batch_size_observe(bs, rows, rows * cost_per_row_ms, 0.0);
	return rows;
}

static int within(double value, double want, double share)
{
	return fabs(value - want) <= want * share;
}

static void test_batch_size_converges_from_below(void)
{
	bf_batch_size bs;

	/* 0.5 ms a row, 500 ms target: 1000 rows. */
	bf_batch_size_init(&bs, 10, 1, 100000, 500);
	for (int i = 0; i < 40; i++)
		run_batch(&bs, 0.5);
	UNIT_CHECK(within(bf_batch_size_get(&bs), 1000, 0.15));
	if (!within(bf_batch_size_get(&bs), 1000, 0.15))
		fprintf(stderr, "  size %d, want about 1000\n", bf_batch_size_get(&bs));
	/* Once there, it stays there (no hunting out of the band). */
	for (int i = 0; i < 20; i++) {
		run_batch(&bs, 0.5);
		UNIT_CHECK(within(bf_batch_size_get(&bs), 1000, 0.15));
	}
}

static void test_batch_size_converges_from_above(void)
{
	bf_batch_size bs;

	/* 4 ms a row, 2000 ms target: 500 rows, starting at 80000. */
	bf_batch_size_init(&bs, 80000, 1, 100000, 2000);
	for (int i = 0; i < 40; i++)
		run_batch(&bs, 4.0);
	UNIT_CHECK(within(bf_batch_size_get(&bs), 500, 0.15));
	if (!within(bf_batch_size_get(&bs), 500, 0.15))
		fprintf(stderr, "  size %d, want about 500\n", bf_batch_size_get(&bs));
}

static void test_batch_size_follows_a_change_of_cost(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 1, 100000, 1000);
	for (int i = 0; i < 40; i++)
		run_batch(&bs, 1.0); /* 1000 rows */
	UNIT_CHECK(within(bf_batch_size_get(&bs), 1000, 0.15));
	for (int i = 0; i < 40; i++)
		run_batch(&bs, 10.0); /* rows got wider: 100 rows */
	UNIT_CHECK(within(bf_batch_size_get(&bs), 100, 0.15));
	for (int i = 0; i < 60; i++)
		run_batch(&bs, 0.25); /* and cheap again: 4000 rows */
	UNIT_CHECK(within(bf_batch_size_get(&bs), 4000, 0.15));
}

static void test_batch_size_steps_are_bounded(void)
{
	bf_batch_size bs;
	/* A cost that jumps around by orders of magnitude. */
	static const double costs[] = {0.001, 50.0, 0.01, 0.01, 0.01, 1000.0, 0.5, 0.0, 3.0, 0.002};

	bf_batch_size_init(&bs, 1000, 20, 50000, 500);
	for (int i = 0; i < 200; i++) {
		int rows = run_batch(&bs, costs[i % 10]);
		int after = bf_batch_size_get(&bs);

		/* Grows at most 25% a batch (the first doubles: a job's first
		 * batches do until one takes half the target, as the second
		 * does here), shrinks at most by half (one row of rounding
		 * either way), and never leaves the bounds. */
		UNIT_CHECK(after <= rows * (i == 0 ? 2.0 : 1.25) + 1);
		UNIT_CHECK(after >= rows * 0.5 - 1);
		UNIT_CHECK(after >= 20 && after <= 50000);
		UNIT_CHECK(bs.size >= 20 && bs.size <= 50000);
	}
	/* Very fast batches: capped at the max; very slow ones: at the min. */
	for (int i = 0; i < 100; i++)
		run_batch(&bs, 0.00001);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 50000);
	for (int i = 0; i < 100; i++)
		run_batch(&bs, 1000.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 20);
}

static void test_batch_size_one_step_each_way(void)
{
	bf_batch_size bs;

	/* Ten times too fast: doubled while the job ramps up, then a batch
	 * over half the target ends that, and +25% only from then on. */
	bf_batch_size_init(&bs, 1000, 1, 100000, 1000);
	bf_batch_size_observe(&bs, 1000, 100.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 2000);
	bf_batch_size_observe(&bs, 2000, 600.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 3333);
	bf_batch_size_observe(&bs, 3333, 100.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 4166);
	/* Ten times too slow: halved only. */
	bf_batch_size_init(&bs, 1000, 1, 100000, 1000);
	bf_batch_size_observe(&bs, 1000, 10000.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 500);
	/* Right on target: unchanged. */
	bf_batch_size_init(&bs, 1000, 1, 100000, 1000);
	bf_batch_size_observe(&bs, 1000, 1000.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1000);
}

static void test_batch_size_shrinks_on_timeouts(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 100, 5000, 500);
	bf_batch_size_shrink(&bs);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 500);
	bf_batch_size_shrink(&bs);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 250);
	bf_batch_size_shrink(&bs);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 125);
	bf_batch_size_shrink(&bs);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 100); /* clamped at the min */
	bf_batch_size_shrink(&bs);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 100);
	/* And it grows back slowly afterwards. */
	bf_batch_size_observe(&bs, 100, 1.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 125);
}

static void test_batch_size_ignores_throttled_time(void)
{
	bf_batch_size bs;

	/* 1000 rows, 500 ms of work inside a 60.5 s span, 60 s of it throttled
	 * or waiting: on target, the size stays. */
	bf_batch_size_init(&bs, 1000, 10, 10000, 500);
	bf_batch_size_observe(&bs, 1000, 60500.0, 60000.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1000);
	/* Fast work (100 ms) inside a long throttled span: grows. */
	bf_batch_size_observe(&bs, 1000, 30100.0, 30000.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1250);
	/* The same span unthrottled does shrink it: the above is no accident. */
	bf_batch_size_observe(&bs, 1250, 60500.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 625);
	/* A throttled time over the elapsed time (clock noise) stays in bounds. */
	bf_batch_size_observe(&bs, 625, 100.0, 250.0);
	UNIT_CHECK(bf_batch_size_get(&bs) >= 10 && bf_batch_size_get(&bs) <= 10000);
	UNIT_CHECK(bf_batch_size_get(&bs) >= 625);
}

static void test_batch_size_ignores_a_short_last_batch(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 10, 10000, 500);
	/* The walk's end: 300 rows of 1000, whatever they took. */
	bf_batch_size_observe(&bs, 300, 100000.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1000);
	bf_batch_size_observe(&bs, 300, 0.01, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1000);
	bf_batch_size_observe(&bs, 0, 0.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1000);
}

static void test_batch_size_bounds_change(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 100, 5000, 500);
	bf_batch_size_bounds(&bs, 10, 400, 200);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 400);
	bf_batch_size_bounds(&bs, 600, 900, 200);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 600);
	/* The new target applies: 600 rows in 150 ms of a 200 ms target grow
	 * toward it (4/3), then are capped at the new max. */
	bf_batch_size_observe(&bs, 600, 150.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 800);
	bf_batch_size_observe(&bs, 800, 100.0, 0.0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 900); /* capped at the new max */
	bf_batch_size_set(&bs, 5);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 600);
	/* A start outside the bounds is clamped from the beginning. */
	bf_batch_size_init(&bs, 5, 50, 500, 100);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 50);
	bf_batch_size_init(&bs, 5000, 50, 500, 100);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 500);
}

/* ---- rate pacer ------------------------------------------------------------ */

static void test_rate_limits_rows_started(void)
{
	bf_rate r;
	uint64_t now = 5 * S; /* a monotonic clock does not start at 0 */
	const uint64_t end = now + 10 * S;
	int64_t started = 0;

	bf_rate_init(&r, 1000);
	for (;;) {
		now += bf_rate_wait_ns(&r, now);
		if (now >= end)
			break;
		bf_rate_reserve(&r, now, 100);
		started += 100;
		/* Each batch takes 20 ms and scans all it reserved. */
		now += 20 * MS;
		bf_rate_settle(&r, 100, 100);
	}
	UNIT_CHECK(started <= 10 * 1000 + 100);
	/* ... and the pacer does let the rate through. */
	UNIT_CHECK(started >= 10 * 1000 - 100);
	if (started > 10 * 1000 + 100 || started < 10 * 1000 - 100)
		fprintf(stderr, "  %lld rows started in 10 s at 1000 rows/s\n", (long long)started);
}

static void test_rate_slow_batches_are_not_followed_by_a_wait(void)
{
	bf_rate r;
	uint64_t now = 5 * S;

	bf_rate_init(&r, 1000);
	bf_rate_reserve(&r, now, 100); /* 100 ms worth */
	now += 300 * MS;	       /* the batch took 300 ms */
	bf_rate_settle(&r, 100, 100);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 0);
}

static void test_rate_bursts_never_exceed_one_batch(void)
{
	bf_rate r;
	uint64_t now = 5 * S;

	bf_rate_init(&r, 1000);
	bf_rate_reserve(&r, now, 100);
	bf_rate_settle(&r, 100, 100);
	/* Idle for a minute: no credit piles up. */
	now += 60 * S;
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 0);
	bf_rate_reserve(&r, now, 100);
	bf_rate_settle(&r, 100, 100);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 100 * MS);
}

static void test_rate_settle_gives_back_unscanned_rows(void)
{
	bf_rate r;
	uint64_t now = 5 * S;

	bf_rate_init(&r, 1000);
	bf_rate_reserve(&r, now, 100);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 100 * MS);
	bf_rate_settle(&r, 100, 40); /* the walk ended: only 40 rows */
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 40 * MS);
	bf_rate_settle(&r, 40, 40);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 40 * MS);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now + 40 * MS), 0);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now + 41 * MS), 0);
}

static void test_rate_zero_never_waits(void)
{
	bf_rate r;
	uint64_t now = 5 * S;

	bf_rate_init(&r, 0);
	for (int i = 0; i < 1000; i++) {
		UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 0);
		bf_rate_reserve(&r, now, 1000000);
		bf_rate_settle(&r, 1000000, 999999);
	}
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 0);
}

static void test_rate_set_forgets_the_old_reservation(void)
{
	bf_rate r;
	uint64_t now = 5 * S;

	bf_rate_init(&r, 1000);
	bf_rate_reserve(&r, now, 100);
	uint64_t next = r.next_ns;

	UNIT_CHECK_INT(next, now + 100 * MS);
	/* The same limit again (a reload that changes nothing) keeps it. */
	bf_rate_set(&r, 1000);
	UNIT_CHECK_INT(r.next_ns, next);
	/* A raised limit does not wait out what the old one reserved: at
	 * 1 row/s a 10000-row batch would otherwise hold for hours. */
	bf_rate_init(&r, 1);
	bf_rate_reserve(&r, now, 10000);
	UNIT_CHECK(bf_rate_wait_ns(&r, now) > 3600 * S);
	bf_rate_set(&r, 1000000);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 0);
	/* No limit: never waits, whatever was reserved. */
	bf_rate_reserve(&r, now, 100);
	bf_rate_set(&r, 0);
	UNIT_CHECK_INT(bf_rate_wait_ns(&r, now), 0);
}

static void test_rate_give_back_after_a_rate_change_never_wraps(void)
{
	bf_rate r;
	uint64_t now = 1 * S;

	/* Reserved at 1000 rows/s (100 ms), settled at 10 rows/s: giving back
	 * can only shorten the wait, never turn it into centuries. */
	bf_rate_init(&r, 1000);
	bf_rate_reserve(&r, now, 100);
	bf_rate_set(&r, 10);
	bf_rate_settle(&r, 100, 0);
	UNIT_CHECK(bf_rate_wait_ns(&r, now) <= 100 * MS);
}

/* ---- windows ----------------------------------------------------------------- */

static void test_window_parse_one(void)
{
	int start = -1, end = -1;
	char err[256];

	UNIT_CHECK_INT(bf_window_parse_one("22:00-06:00", &start, &end, err, sizeof err), 0);
	UNIT_CHECK_INT(start, 22 * 60);
	UNIT_CHECK_INT(end, 6 * 60);
	UNIT_CHECK_INT(bf_window_parse_one("09:00-17:30", &start, &end, err, sizeof err), 0);
	UNIT_CHECK_INT(start, 9 * 60);
	UNIT_CHECK_INT(end, 17 * 60 + 30);
	UNIT_CHECK_INT(bf_window_parse_one("00:00-23:59", &start, &end, err, sizeof err), 0);
	UNIT_CHECK_INT(start, 0);
	UNIT_CHECK_INT(end, 1439);

	static const char *const bad[] = {
		"25:00-01:00",
		"9-17",
		"",
		"10:00-10:61",
		"junk",
		"10:00",
		"10:00-",
		"-10:00",
		"99:00-01:00",
		"10:00-11:00x",
		"10:00 11:00",
		"10:00-11:00-",
		"aa:bb-cc:dd",
		"-1:00-02:00",
		"10:-5-11:00",
		"10:00-11:00,12:00-13:00",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		int rc = bf_window_parse_one(bad[i], &start, &end, err, sizeof err);

		UNIT_CHECK_INT(rc, -1);
		UNIT_CHECK(err[0] != '\0');
		if (rc != -1)
			fprintf(stderr, "  \"%s\" was accepted (%d-%d)\n", bad[i], start, end);
	}
}

static void test_windows_parse_list(void)
{
	bf_windows ws;
	char err[256];

	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,13:00-14:00", err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, 2);
	UNIT_CHECK_INT(ws.w[0].start, 60);
	UNIT_CHECK_INT(ws.w[0].end, 120);
	UNIT_CHECK_INT(ws.w[1].start, 13 * 60);
	UNIT_CHECK_INT(ws.w[1].end, 14 * 60);
	UNIT_CHECK_STR(ws.text, "01:00-02:00,13:00-14:00");

	UNIT_CHECK_INT(bf_windows_parse(&ws, "", err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, 0);

	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,25:00-26:00", err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');
	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,,13:00-14:00", err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');
	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, ",01:00-02:00", err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');

	/* As many windows as fit, and one more is refused (not overflowed). */
	char list[BF_WINDOWS_MAX * 12 + 16];
	size_t off = 0;

	list[0] = '\0';
	for (int i = 0; i < BF_WINDOWS_MAX; i++)
		off += (size_t)snprintf(list + off, sizeof list - off, "%s%02d:00-%02d:30",
					i ? "," : "", i, i);
	UNIT_CHECK_INT(bf_windows_parse(&ws, list, err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, BF_WINDOWS_MAX);
	UNIT_CHECK_STR(ws.text, list);
	snprintf(list + off, sizeof list - off, ",23:00-23:30");
	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, list, err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');
}

static void test_windows_allow_edges(void)
{
	bf_windows ws;
	char err[256];

	UNIT_CHECK_INT(bf_windows_parse(&ws, "22:00-06:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 22 * 60), 1); /* start inclusive */
	UNIT_CHECK_INT(bf_windows_allow(&ws, 22 * 60 - 1), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 1439), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 0), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 6 * 60 - 1), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 6 * 60), 0); /* end exclusive */
	UNIT_CHECK_INT(bf_windows_allow(&ws, 12 * 60), 0);

	UNIT_CHECK_INT(bf_windows_parse(&ws, "09:00-17:30", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 9 * 60 - 1), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 9 * 60), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 17 * 60 + 29), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 17 * 60 + 30), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 0), 0);

	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,13:00-14:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 60), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 120), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 13 * 60 + 30), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 12 * 60), 0);
}

static void test_windows_wait_minutes(void)
{
	bf_windows ws;
	char err[256];

	UNIT_CHECK_INT(bf_windows_parse(&ws, "22:00-06:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 7 * 60), 900);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 6 * 60), 960);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 22 * 60 - 1), 1);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 23 * 60), 0);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 3 * 60), 0);

	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,13:00-14:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 0), 60);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 2 * 60), 660);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 14 * 60), 660); /* tomorrow 01:00 */
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 1439), 61);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 13 * 60 + 59), 0);
}

static void test_windows_none_and_whole_day(void)
{
	bf_windows ws;
	char err[256];

	memset(&ws, 0, sizeof ws);
	UNIT_CHECK_INT(bf_windows_parse(&ws, "", err, sizeof err), 0);
	for (int m = 0; m < 1440; m += 7) {
		UNIT_CHECK_INT(bf_windows_allow(&ws, m), 1);
		UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, m), 0);
	}
	UNIT_CHECK_INT(bf_windows_parse(&ws, "00:00-00:00", err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, 1);
	for (int m = 0; m < 1440; m += 7) {
		UNIT_CHECK_INT(bf_windows_allow(&ws, m), 1);
		UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, m), 0);
	}
	UNIT_CHECK_INT(bf_windows_parse(&ws, "12:00-12:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 11 * 60), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 1439), 1);
}

/* ---- throttle eval ------------------------------------------------------------- */

#define NOW (1000 * S)

static bf_limits limits_default(void)
{
	bf_limits l;

	memset(&l, 0, sizeof l);
	l.replay_lag_high_bytes = 64 * MB;
	l.replay_lag_low_bytes = 16 * MB;
	l.replay_lag_high_ms = 5000;
	l.replay_lag_low_ms = 1000;
	l.slot_lag_high_bytes = 1 * GB;
	l.slot_lag_low_bytes = 256 * MB;
	l.slots = BF_SLOTS_ALL;
	l.expected_standbys = "";
	l.stale_ms = 5000;
	return l;
}

static void sample_init(bf_sample *s, uint64_t taken_ns)
{
	memset(s, 0, sizeof *s);
	s->taken_ns = taken_ns;
	snprintf(s->role, sizeof s->role, "backfill");
	s->privileged = 1;
	s->current_lsn = 0x16B374D848ULL;
}

static bf_standby_sample *add_standby(bf_sample *s, const char *name, const char *state,
				      int64_t lag_bytes, int64_t lag_ms)
{
	bf_standby_sample *sb = &s->standbys[s->nstandbys++];

	snprintf(sb->name, sizeof sb->name, "%s", name);
	snprintf(sb->state, sizeof sb->state, "%s", state);
	sb->lag_bytes = lag_bytes;
	sb->lag_ms = lag_ms;
	sb->replay_lsn = lag_bytes >= 0 ? s->current_lsn - (uint64_t)lag_bytes : 0;
	return sb;
}

static void add_slot(bf_sample *s, const char *name, int active, int64_t lag_bytes)
{
	bf_slot_sample *sl = &s->slots[s->nslots++];

	snprintf(sl->name, sizeof sl->name, "%s", name);
	sl->active = active;
	sl->lag_bytes = lag_bytes;
}

typedef struct evaluation {
	int n;
	char reasons[BF_THROTTLE_MAX_HOLDS][BF_THROTTLE_REASON_LEN];
	int nestimated;
	bf_throttle_change changes[BF_THROTTLE_MAX_HOLDS];
	int nchanges;
} evaluation;

/* Judges s with ahead bytes of WAL written since it was taken. */
static int eval_ahead(const bf_sample *s, const bf_limits *l, bf_holds *h, uint64_t now,
		      int64_t ahead, evaluation *e)
{
	memset(e, 0, sizeof *e);
	e->nestimated = -1;
	e->n = bf_throttle_eval(s, l, h, now, ahead, e->reasons, BF_THROTTLE_MAX_HOLDS,
				&e->nestimated, e->changes, BF_THROTTLE_MAX_HOLDS, &e->nchanges);
	return e->n;
}

static int eval(const bf_sample *s, const bf_limits *l, bf_holds *h, uint64_t now, evaluation *e)
{
	int n = eval_ahead(s, l, h, now, 0, e);

	/* Nothing written since the sample: nothing is ever estimated. */
	UNIT_CHECK_INT(e->nestimated, 0);
	return n;
}

/* The reason starting with prefix, or NULL. */
static const char *reason_with(const evaluation *e, const char *prefix)
{
	for (int i = 0; i < e->n; i++)
		if (strncmp(e->reasons[i], prefix, strlen(prefix)) == 0)
			return e->reasons[i];
	return NULL;
}

static void show(const evaluation *e)
{
	for (int i = 0; i < e->n; i++)
		fprintf(stderr, "  reason %d: %s\n", i, e->reasons[i]);
}

#define CHECK_REASON(e, prefix)                                                                    \
	do {                                                                                       \
		if (!reason_with((e), (prefix))) {                                                 \
			fprintf(stderr, "%s:%d: no reason starting \"%s\" among %d:\n", __FILE__,  \
				__LINE__, (prefix), (e)->n);                                       \
			show(e);                                                                   \
			unit_current_failed = 1;                                                   \
		}                                                                                  \
	} while (0)

static void test_eval_healthy(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 1 * MB, 10);
	add_slot(&s, "myslot", 1, 10 * MB);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 0);
	show(&e);
}

static void test_eval_hysteresis_bytes(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 30 * MB, 0);

	/* Between the marks, not held before: runs. */
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	/* Above high: holds. */
	sb->lag_bytes = 70 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	UNIT_CHECK_CONTAINS(e.reasons[0], "MB");
	/* Between the marks, held before: keeps holding. */
	sb->lag_bytes = 30 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	/* Below low: released. */
	sb->lag_bytes = 10 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	/* Between the marks again, not held: runs. */
	sb->lag_bytes = 60 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
}

static void test_eval_hysteresis_time(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 0, 4200);

	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	sb->lag_ms = 6000;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_time standby1");
	sb->lag_ms = 2000;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_time standby1");
	sb->lag_ms = 0; /* replay_lag NULL: caught up */
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
}

static void test_eval_no_flapping_around_the_high_mark(void)
{
	static const int64_t lags_mb[] = {63, 65, 63, 65, 64, 66, 63, 17, 65, 20, 63, 66, 62};
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;
	int started = 0, ended = 0;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 0, 0);

	for (size_t i = 0; i < sizeof lags_mb / sizeof lags_mb[0]; i++) {
		sb->lag_bytes = lags_mb[i] * MB;
		s.taken_ns = now += S;
		int n = eval(&s, &l, &h, now, &e);

		/* Held from the first sample above 64 MB on, and never let go
		 * since nothing fell below 16 MB. */
		UNIT_CHECK_INT(n, i == 0 ? 0 : 1);
		for (int c = 0; c < e.nchanges; c++) {
			if (e.changes[c].started)
				started++;
			else
				ended++;
		}
	}
	UNIT_CHECK_INT(started, 1);
	UNIT_CHECK_INT(ended, 0);
}

static void test_eval_changes_start_and_end_once(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 100 * MB, 0);

	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 1);
	UNIT_CHECK_STR(e.changes[0].key, "replay_lag_bytes standby1");
	UNIT_CHECK(strncmp(e.changes[0].reason, "replay_lag_bytes standby1", 25) == 0);
	for (int i = 0; i < 5; i++) {
		sb->lag_bytes = (100 + i) * MB;
		s.taken_ns = now += S;
		UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
		UNIT_CHECK_INT(e.nchanges, 0); /* still holding: nothing to log */
	}
	/* Released 6 s after it started. */
	sb->lag_bytes = 0;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 0);
	UNIT_CHECK_STR(e.changes[0].key, "replay_lag_bytes standby1");
	UNIT_CHECK(fabs(e.changes[0].held_s - 6.0) < 0.01);
	if (fabs(e.changes[0].held_s - 6.0) >= 0.01)
		fprintf(stderr, "  held_s %.3f, want 6.0\n", e.changes[0].held_s);
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 0);
	/* changes may be NULL. */
	int nchanges = -1;

	sb->lag_bytes = 100 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(bf_throttle_eval(&s, &l, &h, now, 0, e.reasons, BF_THROTTLE_MAX_HOLDS, NULL,
					NULL, 0, &nchanges),
		       1);
}

static void test_eval_expected_standbys(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	l.expected_standbys = "standby1";
	memset(&h, 0, sizeof h);

	/* Missing: fail closed. */
	sample_init(&s, now);
	add_standby(&s, "standby2", "streaming", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "standby standby1 missing");
	UNIT_CHECK_INT(e.nchanges, 1);
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 0);

	/* There but catching up. */
	sample_init(&s, now += S);
	add_standby(&s, "standby1", "catchup", 0, 0);
	add_standby(&s, "standby2", "streaming", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "standby standby1 not streaming");
	UNIT_CHECK(reason_with(&e, "standby standby1 not streaming") &&
		   strstr(reason_with(&e, "standby standby1 not streaming"), "catchup"));

	/* Streaming: runs. */
	sample_init(&s, now += S);
	add_standby(&s, "standby1", "streaming", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);

	/* Two expected, neither there: both reported. */
	l.expected_standbys = "standby1,standby3";
	sample_init(&s, now += S);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 2);
	CHECK_REASON(&e, "standby standby1 missing");
	CHECK_REASON(&e, "standby standby3 missing");

	/* A standby not expected may be missing or catching up freely. */
	l.expected_standbys = "";
	memset(&h, 0, sizeof h);
	sample_init(&s, now += S);
	add_standby(&s, "standby2", "catchup", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
}

static void test_eval_sample_failures_hold(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	/* The sample could not be taken. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	snprintf(s.error, sizeof s.error, "connection to server lost");
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	CHECK_REASON(&e, "replication: cannot sample");
	UNIT_CHECK(
		reason_with(&e, "replication: cannot sample") &&
		strstr(reason_with(&e, "replication: cannot sample"), "connection to server lost"));

	/* No sample taken yet. */
	memset(&h, 0, sizeof h);
	sample_init(&s, 0);
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	UNIT_CHECK(e.n >= 1 && e.reasons[0][0] != '\0');

	/* A stale sample: sampling stalled. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW - 5001 * MS);
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	UNIT_CHECK(e.n >= 1 && e.reasons[0][0] != '\0');
	/* ... but a recent one does not. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW - 4000 * MS);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);

	/* A role that cannot read the standbys' positions. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	snprintf(s.role, sizeof s.role, "weakling");
	s.privileged = 0;
	add_standby(&s, "standby1", "streaming", -1, 0);
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	CHECK_REASON(&e, "replication: role");
	UNIT_CHECK(reason_with(&e, "replication: role") &&
		   strstr(reason_with(&e, "replication: role"), "weakling"));
}

static void test_eval_slots(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	l.slot_lag_high_bytes = 100 * MB;
	l.slot_lag_low_bytes = 50 * MB;
	sample_init(&s, NOW);
	add_slot(&s, "abandoned", 0, 300 * MB);
	add_slot(&s, "consumed", 1, 10 * MB);

	l.slots = BF_SLOTS_ALL;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	CHECK_REASON(&e, "slot_lag_bytes abandoned");

	l.slots = BF_SLOTS_ACTIVE;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);
	s.slots[1].lag_bytes = 200 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	CHECK_REASON(&e, "slot_lag_bytes consumed");

	l.slots = BF_SLOTS_OFF;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);

	/* Hysteresis on slots too. */
	l.slots = BF_SLOTS_ALL;
	memset(&h, 0, sizeof h);
	s.slots[1].lag_bytes = 10 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	s.slots[0].lag_bytes = 70 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + S, &e), 1);
	s.slots[0].lag_bytes = 40 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + 2 * S, &e), 0);
}

static void test_eval_zero_marks_switch_signals_off(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	l.replay_lag_high_bytes = l.replay_lag_low_bytes = 0;
	l.replay_lag_high_ms = l.replay_lag_low_ms = 0;
	l.slot_lag_high_bytes = l.slot_lag_low_bytes = 0;
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 100 * GB, 3600 * 1000);
	add_slot(&s, "myslot", 1, 100 * GB);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);
	show(&e);

	/* One signal off, the others still on. */
	l = limits_default();
	l.replay_lag_high_bytes = l.replay_lag_low_bytes = 0;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 2);
	CHECK_REASON(&e, "replay_lag_time standby1");
	CHECK_REASON(&e, "slot_lag_bytes myslot");
}

static void test_eval_reports_every_signal(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 100 * MB, 0);
	add_standby(&s, "standby2", "streaming", 200 * MB, 0);
	add_standby(&s, "standby3", "streaming", 0, 0);
	add_slot(&s, "myslot", 0, 2 * GB);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 3);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	CHECK_REASON(&e, "replay_lag_bytes standby2");
	CHECK_REASON(&e, "slot_lag_bytes myslot");
	UNIT_CHECK_INT(e.nchanges, 3);

	/* standby2 recovers: one ended, the other two hold on. */
	s.standbys[1].lag_bytes = 0;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + S, &e), 2);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_STR(e.changes[0].key, "replay_lag_bytes standby2");
	UNIT_CHECK_INT(e.changes[0].started, 0);

	/* Bytes and time on one standby are two reasons. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 100 * MB, 9000);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 2);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	CHECK_REASON(&e, "replay_lag_time standby1");
}

static void test_eval_throttle_query(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	s.query_set = 1;
	s.query_holds = 1;
	snprintf(s.query_reason, sizeof s.query_reason, "month-end close");
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	CHECK_REASON(&e, "throttle query: month-end close");
	s.query_holds = 0;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + S, &e), 0);
}

/* ---- estimates: the WAL written since the sample ----------------------------- */

static void test_eval_estimate_asks_for_a_fresh_sample(void)
{
	bf_sample s;
	bf_limits l = limits_default(); /* replay bytes 64 MB / 16 MB */
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 30 * MB, 0);

	/* 30 MB sampled, 40 MB written since: about 70 MB, past 64 MB. */
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 40 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1: about 70.0 MB estimated");
	UNIT_CHECK_CONTAINS(e.reasons[0], "64.0 MB");
	UNIT_CHECK_CONTAINS(e.reasons[0], "sampling now");
	/* Not a throttle: no hold to remember, nothing to log. */
	UNIT_CHECK_INT(e.nchanges, 0);
	UNIT_CHECK_INT(h.n, 0);

	/* Right at the mark is reaching it; a byte short is not. */
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 34 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 34 * MB - 1, &e), 0);
	UNIT_CHECK_INT(e.nestimated, 0);

	/* Nothing written since the sample: the sample alone decides. */
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 0, &e), 0);
	UNIT_CHECK_INT(e.nestimated, 0);

	/* The fresh sample asked for: above the mark it holds for real (and
	 * is logged once); the estimate no longer counts once held. */
	s.standbys[0].lag_bytes = 66 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + S, 0, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1 66.0 MB > 64.0 MB");

	/* Or, below it (the standby replayed meanwhile), the job runs. */
	memset(&h, 0, sizeof h);
	s.standbys[0].lag_bytes = 20 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + S, 0, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 0);
}

static void test_eval_estimate_leaves_hysteresis_to_the_real_values(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 70 * MB, 0);

	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 0, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	/* Held, between the marks: the hold goes on, as a hold (its reason,
	 * no estimate, no new start), whatever was written since. */
	sb->lag_bytes = 30 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 100 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	UNIT_CHECK_INT(e.nchanges, 0);
	CHECK_REASON(&e, "replay_lag_bytes standby1 30.0 MB, held until at most 16.0 MB");
	/* Below the low mark: the hold ends on the real value. WAL written
	 * since still counts against the high mark: a fresh sample first. */
	sb->lag_bytes = 10 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 60 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 0);
	CHECK_REASON(&e, "replay_lag_bytes standby1: about 70.0 MB estimated");
	UNIT_CHECK_INT(h.n, 0);
	/* ... and between the marks, not held: the estimate never starts a
	 * hold, so hysteresis starts only above the high mark. */
	sb->lag_bytes = 40 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 0, &e), 0);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 30 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	UNIT_CHECK_INT(e.nchanges, 0);
	UNIT_CHECK_INT(h.n, 0);
}

static void test_eval_estimate_slots(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	l.slot_lag_high_bytes = 100 * MB;
	l.slot_lag_low_bytes = 50 * MB;
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_slot(&s, "consumed", 1, 60 * MB);
	add_slot(&s, "abandoned", 0, 20 * MB);

	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 50 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	CHECK_REASON(&e, "slot_lag_bytes consumed: about 110.0 MB estimated");
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 80 * MB, &e), 2);
	UNIT_CHECK_INT(e.nestimated, 2);
	CHECK_REASON(&e, "slot_lag_bytes abandoned: about 100.0 MB estimated");
	UNIT_CHECK_INT(h.n, 0);
	/* Slots that do not count are not estimated either. */
	l.slots = BF_SLOTS_ACTIVE;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 80 * MB, &e), 1);
	CHECK_REASON(&e, "slot_lag_bytes consumed: about");
	l.slots = BF_SLOTS_OFF;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 80 * MB, &e), 0);
	s.slots[0].lag_bytes = -1; /* no confirmed position */
	l.slots = BF_SLOTS_ALL;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 50 * MB, &e), 0);

	/* Held: hysteresis on the real values, as for standbys. */
	s.slots[0].lag_bytes = 120 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 0, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	s.slots[0].lag_bytes = 70 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + S, 10 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	CHECK_REASON(&e, "slot_lag_bytes consumed 70.0 MB, held until");
	s.slots[0].lag_bytes = 40 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + 2 * S, 10 * MB, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 0);
}

static void test_eval_estimate_only_where_a_lag_is_known(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	/* No standby, no slot: the WAL we write holds nothing. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 0);
	UNIT_CHECK_INT(e.nestimated, 0);

	/* A WAL receiver that replays nothing is not waited for, estimated
	 * or not; a standby in base backup neither. */
	add_standby(&s, "walarchiver", "streaming", -1, 0);
	add_standby(&s, "backup", "backup", 0, 0);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 0);

	/* Time lag is not estimated; bytes off, nothing is. */
	l.replay_lag_high_bytes = l.replay_lag_low_bytes = 0;
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 10 * MB, 4900);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 0);

	/* A failed sample holds by itself; no estimate on top. */
	l = limits_default();
	snprintf(s.error, sizeof s.error, "connection to server lost");
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	CHECK_REASON(&e, "replication: cannot sample");
	memset(&h, 0, sizeof h);

	/* Without pg_monitor the positions are unknown: the privilege holds. */
	sample_init(&s, NOW);
	s.privileged = 0;
	add_standby(&s, "standby1", "streaming", -1, 0);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	CHECK_REASON(&e, "replication: role");
}

static void test_eval_estimates_come_after_the_holds(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 30 * MB, 0);
	add_standby(&s, "standby2", "streaming", 100 * MB, 0);
	add_standby(&s, "standby3", "streaming", 50 * MB, 9000);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 40 * MB, &e), 4);
	UNIT_CHECK_INT(e.nestimated, 2);
	UNIT_CHECK(strncmp(e.reasons[0], "replay_lag_bytes standby2 100.0 MB >", 36) == 0);
	UNIT_CHECK(strncmp(e.reasons[1], "replay_lag_time standby3", 24) == 0);
	UNIT_CHECK(strncmp(e.reasons[2], "replay_lag_bytes standby1: about 70.0 MB", 40) == 0);
	UNIT_CHECK(strncmp(e.reasons[3], "replay_lag_bytes standby3: about 90.0 MB", 40) == 0);
	UNIT_CHECK_INT(e.nchanges, 2);

	/* Room for only some: the holds first. */
	int nestimated = -1;

	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(bf_throttle_eval(&s, &l, &h, NOW, 40 * MB, e.reasons, 3, &nestimated, NULL,
					0, NULL),
		       3);
	UNIT_CHECK_INT(nestimated, 1);
	UNIT_CHECK(strncmp(e.reasons[0], "replay_lag_bytes standby2", 25) == 0);
}

static void test_ahead(void)
{
	bf_sample s;

	sample_init(&s, NOW);
	s.current_lsn = 0x16B374D848ULL;
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL + 18 * MB), 18 * MB);
	/* Written before the sample was taken: it is in the sampled lags. */
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL), 0);
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL - 1), 0);
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0), 0);
	/* A sample without a position (failed): nothing to measure from. */
	s.current_lsn = 0;
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL), 0);
	/* Never negative, never wrapped. */
	s.current_lsn = 1;
	UNIT_CHECK(bf_throttle_ahead(&s, UINT64_MAX) == INT64_MAX);
}

static void test_lsn_bytes_lists(void)
{
	char buf[64];

	UNIT_CHECK(bf_lsn_parse("0/3000060") == 0x3000060ULL);
	UNIT_CHECK(bf_lsn_parse("16/B374D848") == 0x16B374D848ULL);
	UNIT_CHECK(bf_lsn_parse("FFFFFFFF/FFFFFFFF") == 0xFFFFFFFFFFFFFFFFULL);
	UNIT_CHECK(bf_lsn_parse("0/0") == 0);
	UNIT_CHECK(bf_lsn_parse(NULL) == 0);
	UNIT_CHECK(bf_lsn_parse("") == 0);
	UNIT_CHECK(bf_lsn_parse("junk") == 0);
	UNIT_CHECK(bf_lsn_parse("16B374D848") == 0);
	UNIT_CHECK(bf_lsn_parse("16/") == 0);
	UNIT_CHECK(bf_lsn_parse("/3000060") == 0);

	bf_format_bytes(buf, sizeof buf, 48 * MB);
	UNIT_CHECK_CONTAINS(buf, "48");
	UNIT_CHECK_CONTAINS(buf, "MB");
	bf_format_bytes(buf, sizeof buf, 3 * GB / 2);
	UNIT_CHECK_CONTAINS(buf, "1.5");
	UNIT_CHECK_CONTAINS(buf, "GB");
	bf_format_bytes(buf, sizeof buf, 512);
	UNIT_CHECK_CONTAINS(buf, "512");
	UNIT_CHECK(strstr(buf, "MB") == NULL && strstr(buf, "kB") == NULL);
	bf_format_bytes(buf, sizeof buf, 256 * MB);
	UNIT_CHECK_CONTAINS(buf, "256");
	/* A small buffer is cut, not overrun. */
	memset(buf, 'x', sizeof buf);
	bf_format_bytes(buf, 4, 123456789012LL);
	UNIT_CHECK(memchr(buf, '\0', 4) != NULL);
	UNIT_CHECK(buf[4] == 'x');

	UNIT_CHECK_INT(bf_list_has("a,b", "b"), 1);
	UNIT_CHECK_INT(bf_list_has("a,b", "a"), 1);
	UNIT_CHECK_INT(bf_list_has("a,b", "c"), 0);
	UNIT_CHECK_INT(bf_list_has("ab", "a"), 0);
	UNIT_CHECK_INT(bf_list_has("a", "ab"), 0);
	UNIT_CHECK_INT(bf_list_has("standby10,standby2", "standby1"), 0);
	UNIT_CHECK_INT(bf_list_has("standby10,standby1", "standby1"), 1);
	UNIT_CHECK_INT(bf_list_has("", "a"), 0);
}

int main(void)
{
	UNIT_RUN(test_batch_size_converges_from_below);
	UNIT_RUN(test_batch_size_converges_from_above);
	UNIT_RUN(test_batch_size_follows_a_change_of_cost);
	UNIT_RUN(test_batch_size_steps_are_bounded);
	UNIT_RUN(test_batch_size_one_step_each_way);
	UNIT_RUN(test_batch_size_shrinks_on_timeouts);
	UNIT_RUN(test_batch_size_ignores_throttled_time);
	UNIT_RUN(test_batch_size_ignores_a_short_last_batch);
	UNIT_RUN(test_batch_size_bounds_change);
	UNIT_RUN(test_rate_limits_rows_started);
	UNIT_RUN(test_rate_slow_batches_are_not_followed_by_a_wait);
	UNIT_RUN(test_rate_bursts_never_exceed_one_batch);
	UNIT_RUN(test_rate_settle_gives_back_unscanned_rows);
	UNIT_RUN(test_rate_zero_never_waits);
	UNIT_RUN(test_rate_set_forgets_the_old_reservation);
	UNIT_RUN(test_rate_give_back_after_a_rate_change_never_wraps);
	UNIT_RUN(test_window_parse_one);
	UNIT_RUN(test_windows_parse_list);
	UNIT_RUN(test_windows_allow_edges);
	UNIT_RUN(test_windows_wait_minutes);
	UNIT_RUN(test_windows_none_and_whole_day);
	UNIT_RUN(test_eval_healthy);
	UNIT_RUN(test_eval_hysteresis_bytes);
	UNIT_RUN(test_eval_hysteresis_time);
	UNIT_RUN(test_eval_no_flapping_around_the_high_mark);
	UNIT_RUN(test_eval_changes_start_and_end_once);
	UNIT_RUN(test_eval_expected_standbys);
	UNIT_RUN(test_eval_sample_failures_hold);
	UNIT_RUN(test_eval_slots);
	UNIT_RUN(test_eval_zero_marks_switch_signals_off);
	UNIT_RUN(test_eval_reports_every_signal);
	UNIT_RUN(test_eval_throttle_query);
	UNIT_RUN(test_eval_estimate_asks_for_a_fresh_sample);
	UNIT_RUN(test_eval_estimate_leaves_hysteresis_to_the_real_values);
	UNIT_RUN(test_eval_estimate_slots);
	UNIT_RUN(test_eval_estimate_only_where_a_lag_is_known);
	UNIT_RUN(test_eval_estimates_come_after_the_holds);
	UNIT_RUN(test_ahead);
	UNIT_RUN(test_lsn_bytes_lists);
	return UNIT_DONE();
}
