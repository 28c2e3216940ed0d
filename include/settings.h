/* settings.h -- the run-time knobs of a job (backfillctl set JOB KEY=VALUE).
 *
 * Stored in the job row: batch_size in its own column (the starting size of
 * the adaptive controller), every other knob in the jsonb column "settings".
 * Applied by the daemon before the job's next batch. One table here serves
 * the daemon (validation of the row) and backfillctl (parsing KEY=VALUE).
 */
#ifndef BF_SETTINGS_H
#define BF_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bf_knob {
	const char *name;
	long long min, max;
	const char *unit; /* "rows", "ms", "rows/s" */
	const char *what; /* one line for help and errors */
} bf_knob;

/* The knobs, in the order of bf_knobs[]: a knob's index there. */
typedef enum bf_knob_id {
	BF_KNOB_BATCH_SIZE,
	BF_KNOB_BATCH_SIZE_MIN,
	BF_KNOB_BATCH_SIZE_MAX,
	BF_KNOB_BATCH_TARGET_MS,
	BF_KNOB_MAX_ROWS_PER_S,
	BF_KNOB_REPLAY_LAG_HIGH_BYTES,
	BF_KNOB_REPLAY_LAG_LOW_BYTES,
	BF_KNOB_REPLAY_LAG_HIGH_MS,
	BF_KNOB_REPLAY_LAG_LOW_MS,
	BF_KNOB_SLOT_LAG_HIGH_BYTES,
	BF_KNOB_SLOT_LAG_LOW_BYTES,
	BF_KNOB_LOCK_WAIT_MAX_MS,
	BF_KNOB_LOCK_TIMEOUT_MS,
	BF_KNOB_STATEMENT_TIMEOUT_MS,
	BF_KNOB_WAIT_FOR_REPLAY,
	BF_KNOB_REPLAY_WAIT_TIMEOUT_MS,
	BF_KNOB_COUNT,
} bf_knob_id;

/* NULL-name terminated; entry i is knob i of bf_knob_id. */
extern const bf_knob bf_knobs[];

const bf_knob *bf_knob_find(const char *name);

/* Parses "KEY=VALUE" (value an integer, or 0 for "off" where allowed).
 * On error returns -1 with a one-line reason in err. */
int bf_knob_parse_assignment(const char *text, const bf_knob **knob, long long *value, char *err,
			     size_t errlen);

/* Checks value against knob's bounds; -1 with a reason in err. */
int bf_knob_check(const bf_knob *knob, long long value, char *err, size_t errlen);

/* "16MB", "512kB", "1GB", "1048576" (kB, MB, GB, TB: powers of 1024, as
 * PostgreSQL counts; case and one space before the unit are forgiven).
 * Returns 0, or -1 when text is not a byte count. */
int bf_parse_bytes(const char *text, int64_t *bytes);

#endif
