/* batch_size.c -- the batch size controller: grow slowly, shrink fast, bounded. */
#include "batch_size.h"

/* At most +25% per batch: a table whose rows suddenly get wider must not
 * turn a 500 ms batch into a 5 s one in a couple of steps. */
#define GROW_MAX 1.25
/* A job's first batches double while they take under half the target
 * (a walk of a million fast rows spent a fifth of itself growing from the
 * starting size at +25%); the first batch that does not, a shrink or a
 * contended batch end that for good. */
#define GROW_RAMP 2.0
/* At most halve per batch on duration alone; timeouts halve too. */
#define SHRINK_MAX 0.5
/* Within +-10% of the target the size is left alone, so it does not hunt. */
#define DEADBAND 0.10
/* After a batch that made the application wait: halving on every such
 * batch and growing +2% on every clean one settle where about one batch
 * in 35 blocks somebody (ln 1.02 / (ln 1.02 + ln 2)); as the chance of a
 * block grows with the square of the batch size, that is a size a few
 * times smaller than one blocking every batch. */
#define GROW_CONTENDED 1.02
/* Clean batches in a row, at +2%, before growth is fast again: about three
 * times the run between blocks at that balance, so that an application
 * still writing keeps it slow, and one that stopped gets it back soon. */
#define CALM_BATCHES 100

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
	bs->calm_left = 0;
	bs->ramping = 1;
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

	double grow_max = bs->calm_left > 0 ? GROW_CONTENDED : bs->ramping ? GROW_RAMP : GROW_MAX;

	if (bs->calm_left > 0)
		bs->calm_left--;
	if (ratio < GROW_RAMP)
		bs->ramping = 0;
	if (ratio > 1.0 + DEADBAND)
		factor = ratio > grow_max ? grow_max : ratio;
	else if (ratio < 1.0 - DEADBAND)
		factor = ratio < SHRINK_MAX ? SHRINK_MAX : ratio;
	else
		return;
	/* Size the next batch from the rows this one actually had. */
	bs->size = clamp(bs, rows * factor);
}

void bf_batch_size_contended(bf_batch_size *bs, int rows)
{
	double from = rows > 0 && rows < bs->size ? rows : bs->size;

	bs->size = clamp(bs, from * SHRINK_MAX);
	bs->calm_left = CALM_BATCHES;
	bs->ramping = 0;
}

int bf_batch_size_is_contended(const bf_batch_size *bs)
{
	return bs->calm_left > 0;
}

void bf_batch_size_shrink(bf_batch_size *bs)
{
	bs->size = clamp(bs, bs->size * SHRINK_MAX);
	bs->ramping = 0;
}

void bf_batch_size_bounds(bf_batch_size *bs, int min, int max, int target_ms)
{
	double size = bs->size;
	int calm_left = bs->calm_left, ramping = bs->ramping;

	bf_batch_size_init(bs, 1, min, max, target_ms);
	bs->size = clamp(bs, size);
	bs->calm_left = calm_left;
	bs->ramping = ramping;
}

void bf_batch_size_set(bf_batch_size *bs, int size)
{
	bs->size = clamp(bs, size);
}
