/* rate.h -- a rows-per-second limit, paced from each batch's start.
 *
 * A batch reserves the rows it may scan when it starts, and gives back what
 * it did not scan when it ends; the next batch may start once the reserved
 * rows fit in the rate. Bursts never exceed one batch. Pure code: the
 * caller passes the clock, in nanoseconds.
 */
#ifndef BF_RATE_H
#define BF_RATE_H

#include <stdint.h>

typedef struct bf_rate {
	int64_t rows_per_s; /* 0: no limit */
	uint64_t next_ns;   /* no batch starts before this */
} bf_rate;

void bf_rate_init(bf_rate *r, int64_t rows_per_s);

/* A new limit forgets what was reserved at the old one (the same limit
 * keeps it: a reload that changes nothing changes nothing). */
void bf_rate_set(bf_rate *r, int64_t rows_per_s);

/* Nanoseconds to wait at now_ns before the next batch may start (0: now). */
uint64_t bf_rate_wait_ns(const bf_rate *r, uint64_t now_ns);

/* A batch starting at now_ns may scan up to rows: reserve them. */
void bf_rate_reserve(bf_rate *r, uint64_t now_ns, int64_t rows);

/* Takes the next slot for a batch of up to rows, asked at now_ns: returns
 * when it may start (now_ns or later) and reserves its rows from then.
 * Several jobs sharing one limit take turns in the order they asked,
 * instead of the quickest to come back taking every slot. */
uint64_t bf_rate_claim(bf_rate *r, uint64_t now_ns, int64_t rows);

/* The batch reserved `reserved` rows and scanned `scanned`: give back the rest. */
void bf_rate_settle(bf_rate *r, int64_t reserved, int64_t scanned);

#endif
