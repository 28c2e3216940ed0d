/* backoff.c -- capped exponential backoff with jitter. */
#include "backoff.h"

void bf_backoff_init(bf_backoff *b, uint64_t initial_ms, uint64_t max_ms, uint64_t seed)
{
	b->initial_ms = initial_ms ? initial_ms : 1;
	b->max_ms = max_ms < b->initial_ms ? b->initial_ms : max_ms;
	b->attempt = 0;
	b->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

static uint64_t backoff_rand(bf_backoff *b)
{
	uint64_t x = b->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	b->rng = x;
	return x;
}

uint64_t bf_backoff_next(bf_backoff *b)
{
	uint64_t delay = b->initial_ms;

	for (unsigned i = 0; i < b->attempt && delay < b->max_ms; i++)
		delay *= 2;
	if (delay > b->max_ms)
		delay = b->max_ms;
	if (b->attempt < 64)
		b->attempt++;
	/* Half fixed, half random: never a tight loop, never a herd. */
	uint64_t half = delay / 2;
	return half + backoff_rand(b) % (delay - half + 1);
}

void bf_backoff_reset(bf_backoff *b)
{
	b->attempt = 0;
}
