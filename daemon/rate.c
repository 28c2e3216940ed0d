/* rate.c -- a rows-per-second limit, paced from each batch's start. */
#include "rate.h"

void bf_rate_init(bf_rate *r, int64_t rows_per_s)
{
	r->rows_per_s = rows_per_s > 0 ? rows_per_s : 0;
	r->next_ns = 0;
}

void bf_rate_set(bf_rate *r, int64_t rows_per_s)
{
	rows_per_s = rows_per_s > 0 ? rows_per_s : 0;
	/* What was reserved at the old rate would make a raised limit wait
	 * out the old one: start afresh (a burst of at most one batch). */
	if (rows_per_s != r->rows_per_s)
		r->next_ns = 0;
	r->rows_per_s = rows_per_s;
}

uint64_t bf_rate_wait_ns(const bf_rate *r, uint64_t now_ns)
{
	if (!r->rows_per_s || r->next_ns <= now_ns)
		return 0;
	return r->next_ns - now_ns;
}

static uint64_t rows_ns(const bf_rate *r, int64_t rows)
{
	return rows > 0 ? (uint64_t)((double)rows * 1e9 / (double)r->rows_per_s) : 0;
}

void bf_rate_reserve(bf_rate *r, uint64_t now_ns, int64_t rows)
{
	if (!r->rows_per_s)
		return;
	/* Idle time is not saved up: a limit that was not used for a minute
	 * does not allow a minute's rows in one burst. */
	uint64_t from = r->next_ns > now_ns ? r->next_ns : now_ns;

	r->next_ns = from + rows_ns(r, rows);
}

uint64_t bf_rate_claim(bf_rate *r, uint64_t now_ns, int64_t rows)
{
	uint64_t start = r->next_ns > now_ns ? r->next_ns : now_ns;

	bf_rate_reserve(r, now_ns, rows);
	return start;
}

void bf_rate_settle(bf_rate *r, int64_t reserved, int64_t scanned)
{
	if (!r->rows_per_s || scanned >= reserved)
		return;
	uint64_t back = rows_ns(r, reserved - scanned);

	r->next_ns = r->next_ns > back ? r->next_ns - back : 0;
}
