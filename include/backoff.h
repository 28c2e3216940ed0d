/* backoff.h -- capped exponential backoff with jitter, for retries and reconnects. */
#ifndef BF_BACKOFF_H
#define BF_BACKOFF_H

#include <stdint.h>

typedef struct bf_backoff {
	uint64_t initial_ms;
	uint64_t max_ms;
	unsigned attempt; /* failures since the last success */
	uint64_t rng;	  /* xorshift state; seeded per instance so daemons do not retry in step */
} bf_backoff;

void bf_backoff_init(bf_backoff *b, uint64_t initial_ms, uint64_t max_ms, uint64_t seed);

/* The delay before the next attempt: "equal jitter", uniformly in
 * [d/2, d] where d = min(max, initial * 2^attempt). Counts the attempt. */
uint64_t bf_backoff_next(bf_backoff *b);

/* A success: the next failure starts again from initial_ms. */
void bf_backoff_reset(bf_backoff *b);

#endif
