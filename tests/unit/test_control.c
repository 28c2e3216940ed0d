/* test_control.c -- backoff, batch-size controller and error classes. */
#include <stdint.h>

#include "backoff.h"
#include "batch_size.h"
#include "errclass.h"
#include "unit.h"

static void test_backoff_grows_caps_and_jitters(void)
{
	bf_backoff b;

	bf_backoff_init(&b, 100, 1000, 42);
	for (int i = 0; i < 10; i++) {
		uint64_t cap = 100ULL << i;

		if (cap > 1000)
			cap = 1000;
		uint64_t d = bf_backoff_next(&b);

		UNIT_CHECK(d >= cap / 2 && d <= cap);
	}
	bf_backoff_reset(&b);
	UNIT_CHECK(bf_backoff_next(&b) <= 100);
}

static void test_backoff_differs_between_seeds(void)
{
	bf_backoff a, b;
	int differ = 0;

	bf_backoff_init(&a, 1000, 60000, 1);
	bf_backoff_init(&b, 1000, 60000, 2);
	for (int i = 0; i < 8; i++)
		differ += bf_backoff_next(&a) != bf_backoff_next(&b);
	UNIT_CHECK(differ > 0);
}

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
	bf_batch_size_observe(&bs, 4000, 300, 0); /* over half the target */
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

static void test_errclass(void)
{
	UNIT_CHECK_INT(bf_errclass_of("55P03"), BF_ERR_TRANSIENT_SHRINK);
	UNIT_CHECK_INT(bf_errclass_of("57014"), BF_ERR_TRANSIENT_SHRINK);
	UNIT_CHECK_INT(bf_errclass_of("40P01"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("40001"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("08006"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("57P01"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("53300"), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of(NULL), BF_ERR_TRANSIENT);
	UNIT_CHECK_INT(bf_errclass_of("BF001"), BF_ERR_FENCE);
	UNIT_CHECK_INT(bf_errclass_of("42P01"), BF_ERR_PERMANENT); /* undefined_table */
	UNIT_CHECK_INT(bf_errclass_of("42601"), BF_ERR_PERMANENT); /* syntax_error */
	UNIT_CHECK_INT(bf_errclass_of("23505"), BF_ERR_DATA); /* unique_violation */
	UNIT_CHECK_INT(bf_errclass_of("22P02"), BF_ERR_DATA); /* invalid_text_representation */
	UNIT_CHECK_INT(bf_errclass_of("P0001"), BF_ERR_DATA); /* raise_exception */
	UNIT_CHECK_INT(bf_errclass_of("42501"), BF_ERR_PERMANENT); /* insufficient_privilege */
	UNIT_CHECK_INT(bf_errclass_of("42883"), BF_ERR_PERMANENT); /* no ordering operator */
}

int main(void)
{
	UNIT_RUN(test_backoff_grows_caps_and_jitters);
	UNIT_RUN(test_backoff_differs_between_seeds);
	UNIT_RUN(test_batch_size_converges_to_target);
	UNIT_RUN(test_batch_size_shrinks_fast_and_stays_in_bounds);
	UNIT_RUN(test_batch_size_ignores_short_last_batch);
	UNIT_RUN(test_batch_size_contention_halves_then_grows_slowly);
	UNIT_RUN(test_batch_size_settles_where_blocking_is_rare);
	UNIT_RUN(test_errclass);
	return UNIT_DONE();
}
