/* test_rate.c -- rate.c: the rows-per-second pacer, on a synthetic clock. */
#include <stdint.h>
#include <stdio.h>

#include "rate.h"
#include "unit.h"

#define MS 1000000ULL
#define S  1000000000ULL

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

int main(void)
{
	UNIT_RUN(test_rate_limits_rows_started);
	UNIT_RUN(test_rate_slow_batches_are_not_followed_by_a_wait);
	UNIT_RUN(test_rate_bursts_never_exceed_one_batch);
	UNIT_RUN(test_rate_settle_gives_back_unscanned_rows);
	UNIT_RUN(test_rate_zero_never_waits);
	UNIT_RUN(test_rate_set_forgets_the_old_reservation);
	UNIT_RUN(test_rate_give_back_after_a_rate_change_never_wraps);
	return UNIT_DONE();
}
