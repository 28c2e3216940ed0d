/* batch_size.c -- the batch size controller: grow slowly, shrink fast, bounded. */
#include "batch_size.h"

/* At most +25% per batch: a table whose rows suddenly get wider must not
 * turn a 500 ms batch into a 5 s one in a couple of steps. */
#define GROW_MAX 1.25
/* At most halve per batch on duration alone; timeouts halve too. */
#define SHRINK_MAX 0.5
/* Within +-10% of the target the size is left alone, so it does not hunt. */
#define DEADBAND 0.10

static double clamp(const bf_batch_size *bs, double v)
{
	if (v < bs->min)
		return bs->min;
	if (v > bs->max)
		return bs->max;
	return v;
}

void bf_batch_size_init(bf_batch_size *bs, int start, int min, int max, int target_ms)
{
	bs->min = min > 0 ? min : 1;
	bs->max = max >= bs->min ? max : bs->min;
	bs->target_ms = target_ms > 0 ? target_ms : 1;
	bs->size = clamp(bs, start);
}

int bf_batch_size_get(const bf_batch_size *bs)
{
	return (int)(bs->size + 0.5);
}

void bf_batch_size_observe(bf_batch_size *bs, int rows, double elapsed_ms, double throttled_ms)
{
	/* Time held back says nothing about what a batch costs. */
	double busy_ms = elapsed_ms - (throttled_ms > 0 ? throttled_ms : 0);

	/* A short last batch (end of the walk) or an empty one says little
	 * about the cost of a full batch. */
	if (rows <= 0 || rows < bf_batch_size_get(bs) / 2)
		return;
	if (busy_ms < 0.1)
		busy_ms = 0.1;

	double ratio = bs->target_ms / busy_ms; /* >1: we can do more */
	double factor;

	if (ratio > 1.0 + DEADBAND)
		factor = ratio > GROW_MAX ? GROW_MAX : ratio;
	else if (ratio < 1.0 - DEADBAND)
		factor = ratio < SHRINK_MAX ? SHRINK_MAX : ratio;
	else
		return;
	/* Size the next batch from the rows this one actually had. */
	bs->size = clamp(bs, rows * factor);
}

void bf_batch_size_shrink(bf_batch_size *bs)
{
	bs->size = clamp(bs, bs->size * SHRINK_MAX);
}

void bf_batch_size_bounds(bf_batch_size *bs, int min, int max, int target_ms)
{
	double size = bs->size;

	bf_batch_size_init(bs, 1, min, max, target_ms);
	bs->size = clamp(bs, size);
}

void bf_batch_size_set(bf_batch_size *bs, int size)
{
	bs->size = clamp(bs, size);
}
