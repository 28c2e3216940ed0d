/* test_batch_size.c -- batch_size.c: the batch size controller, with synthetic
 * durations (a cost per row, a simulated application that blocks). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "batch_size.h"
#include "unit.h"

static void test_batch_size_converges_to_target(void)
{
	bf_batch_size bs;

	/* Synthetic cost: 0.1 ms a row; the target of 500 ms means 5000 rows. */
	bf_batch_size_init(&bs, 100, 10, 100000, 500);
	for (int i = 0; i < 60; i++) {
		int n = bf_batch_size_get(&bs);

		bf_batch_size_observe(&bs, n, n * 0.1, 0);
	}
	int n = bf_batch_size_get(&bs);

	UNIT_CHECK(n >= 4500 && n <= 5500);
}

static void test_batch_size_shrinks_fast_and_stays_in_bounds(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 8000, 100, 10000, 500);
	/* One batch takes 10x the target: at most halve, at once. */
	bf_batch_size_observe(&bs, 8000, 5000, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 4000);
	for (int i = 0; i < 20; i++)
		bf_batch_size_shrink(&bs);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 100);
	for (int i = 0; i < 100; i++)
		bf_batch_size_observe(&bs, bf_batch_size_get(&bs), 0.01, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 10000);
	/* Growth is at most 25% a step, once the first batches have
	 * doubled up to half the target. */
	bf_batch_size_init(&bs, 1000, 1, 100000, 500);
	bf_batch_size_observe(&bs, 1000, 1, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 2000);
	bf_batch_size_observe(&bs, 2000, 2, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 4000);
	bf_batch_size_observe(&bs, 4000, 300, 0);     /* over half the target */
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 6667); /* 4000 x 500/300: toward the target */
	bf_batch_size_observe(&bs, 6667, 1, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 8334); /* +25% from now on */
	/* A shrink ends the doubling too. */
	bf_batch_size_init(&bs, 1000, 1, 100000, 500);
	bf_batch_size_shrink(&bs);
	bf_batch_size_observe(&bs, 500, 1, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 625);
}

static void test_batch_size_ignores_short_last_batch(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 1, 100000, 500);
	bf_batch_size_observe(&bs, 3, 0.5, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1000);
}

static void test_batch_size_contention_halves_then_grows_slowly(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 40000, 100, 50000, 500);
	UNIT_CHECK(!bf_batch_size_is_contended(&bs));
	bf_batch_size_observe(&bs, 40000, 300, 0); /* done ramping */
	/* Halved from the rows the batch really had. */
	bf_batch_size_contended(&bs, 30000);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 15000);
	UNIT_CHECK(bf_batch_size_is_contended(&bs));
	/* A quick clean batch grows it by 2%, not 25%. */
	bf_batch_size_observe(&bs, 15000, 1, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 15300);
	/* New bounds (a reload) keep the contention. */
	bf_batch_size_bounds(&bs, 100, 60000, 500);
	UNIT_CHECK(bf_batch_size_is_contended(&bs));
	/* A hundred clean batches: fast growth again. */
	for (int i = 0; i < 99; i++)
		bf_batch_size_observe(&bs, bf_batch_size_get(&bs), 1, 0);
	UNIT_CHECK(!bf_batch_size_is_contended(&bs));
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 60000); /* 15300 x 1.02^99, capped */
	bf_batch_size_set(&bs, 1000);
	bf_batch_size_observe(&bs, 1000, 1, 0);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 1250);
	/* Never below the floor. */
	for (int i = 0; i < 30; i++)
		bf_batch_size_contended(&bs, bf_batch_size_get(&bs));
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 100);
}

static void test_batch_size_settles_where_blocking_is_rare(void)
{
	bf_batch_size bs;
	uint32_t seed = 12345;
	double sum = 0;
	int blocked = 0, counted = 0;

	/* A simulated application writing random rows: the chance that a
	 * batch of B rows blocks a session grows as B squared (more rows
	 * locked, for longer); certain at 20000 rows. Batches are fast (the
	 * duration alone would grow them to size_max). */
	bf_batch_size_init(&bs, 1000, 100, 50000, 500);
	for (int i = 0; i < 4000; i++) {
		int n = bf_batch_size_get(&bs);
		double p = ((double)n / 20000) * ((double)n / 20000);

		seed = seed * 1103515245u + 12345u;
		if ((double)(seed >> 8) / (double)(1u << 24) < p) {
			bf_batch_size_contended(&bs, n);
			blocked += i >= 2000;
		} else {
			bf_batch_size_observe(&bs, n, n * 0.003, 0);
		}
		if (i >= 2000) {
			sum += n;
			counted++;
		}
	}
	double mean = sum / counted;

	/* About one batch in 35 blocks somebody, at about 3400 rows. */
	UNIT_CHECK(mean > 1500 && mean < 8000);
	UNIT_CHECK(blocked > counted / 100 && blocked < counted / 12);
}

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

static void test_batch_bounds(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 100, 5000, 500);
	bf_batch_size_bounds(&bs, 10, 400, 200);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 400); /* clamped into the new bounds */
	bf_batch_size_set(&bs, 50);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 50);
	bf_batch_size_set(&bs, 5);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 10);
	bf_batch_size_bounds(&bs, 40, 40, 200);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 40);
}

int main(void)
{
	UNIT_RUN(test_batch_size_converges_to_target);
	UNIT_RUN(test_batch_size_shrinks_fast_and_stays_in_bounds);
	UNIT_RUN(test_batch_size_ignores_short_last_batch);
	UNIT_RUN(test_batch_size_contention_halves_then_grows_slowly);
	UNIT_RUN(test_batch_size_settles_where_blocking_is_rare);
	UNIT_RUN(test_batch_size_converges_from_below);
	UNIT_RUN(test_batch_size_converges_from_above);
	UNIT_RUN(test_batch_size_follows_a_change_of_cost);
	UNIT_RUN(test_batch_size_steps_are_bounded);
	UNIT_RUN(test_batch_size_one_step_each_way);
	UNIT_RUN(test_batch_size_shrinks_on_timeouts);
	UNIT_RUN(test_batch_size_ignores_throttled_time);
	UNIT_RUN(test_batch_size_ignores_a_short_last_batch);
	UNIT_RUN(test_batch_size_bounds_change);
	UNIT_RUN(test_batch_bounds);
	return UNIT_DONE();
}
