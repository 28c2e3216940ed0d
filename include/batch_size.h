/* batch_size.h -- adapts the batch size toward a target batch duration. */
#ifndef BF_BATCH_SIZE_H
#define BF_BATCH_SIZE_H

typedef struct bf_batch_size {
	double size; /* kept fractional so that slow growth is not rounded away */
	int min, max;
	double target_ms;
	/* Clean batches still to go at the slow growth rate since a batch
	 * made the application wait (0: not contended). */
	int calm_left;
	int ramping; /* a job's first batches: doubling while far below the target */
} bf_batch_size;

void bf_batch_size_init(bf_batch_size *bs, int start, int min, int max, int target_ms);

/* The size of the next batch (whole rows, within bounds). */
int bf_batch_size_get(const bf_batch_size *bs);

/* A batch of `rows` rows took elapsed_ms, of which throttled_ms were spent
 * held back or waiting (those are subtracted: they say nothing about what
 * the batch costs). Grows slowly (at most +25% a batch) when batches are
 * short, shrinks fast (at most half) when they are long, and leaves the size
 * alone within 10% of the target or after a short last batch. A job's
 * first batches double while they take under half the target. */
void bf_batch_size_observe(bf_batch_size *bs, int rows, double elapsed_ms, double throttled_ms);

/* A batch of `rows` rows made application sessions wait on its row locks
 * (they queue until it commits, however short it is): halve, and grow back
 * at only +2% a batch until a long run of batches blocks nobody. So the
 * size settles where blocking a session is rare: small where the
 * application writes densely, as large as the duration target allows
 * where it does not. */
void bf_batch_size_contended(bf_batch_size *bs, int rows);

/* Whether growth is slowed by a recent contended batch. */
int bf_batch_size_is_contended(const bf_batch_size *bs);

/* The batch hit a lock or statement timeout, or blocked others: halve. */
void bf_batch_size_shrink(bf_batch_size *bs);

/* New bounds and target (a reload, backfillctl set); the current size is
 * kept, clamped into the new bounds. */
void bf_batch_size_bounds(bf_batch_size *bs, int min, int max, int target_ms);

/* Continue from this size (clamped into the bounds). */
void bf_batch_size_set(bf_batch_size *bs, int size);

#endif
