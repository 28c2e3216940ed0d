/* test_backoff.c -- backoff.c: delays that grow to a cap, with jitter. */
#include <stdint.h>

#include "backoff.h"
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

int main(void)
{
	UNIT_RUN(test_backoff_grows_caps_and_jitters);
	UNIT_RUN(test_backoff_differs_between_seeds);
	return UNIT_DONE();
}
