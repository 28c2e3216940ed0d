/* knobs.h -- a job's run-time knobs resolved: the configuration's defaults,
 * then the job row's settings (backfillctl set), checked together.
 *
 * Pure: no I/O, no job. The knobs are those of settings.h, one table.
 */
#ifndef BF_KNOBS_H
#define BF_KNOBS_H

#include <stddef.h>

#include "config.h"
#include "settings.h"

/* Every knob's value, indexed by bf_knob_id (BF_KNOB_BATCH_SIZE is unused:
 * batch_size is a column of its own). */
typedef struct bf_job_knobs {
	long long v[BF_KNOB_COUNT];
} bf_job_knobs;

/* The configuration's values. */
void bf_job_knobs_defaults(bf_job_knobs *k, const bf_config *cfg);

/* The configuration's values, then those of settings (the row's jsonb as
 * text; NULL: none), then the checks of the knobs together. A low mark
 * above its high mark is lowered to it. Returns 0; or -1 with a reason an
 * operator can act on in error ("settings: ..."), k then undefined. */
int bf_job_knobs_resolve(bf_job_knobs *k, const bf_config *cfg, const char *settings,
			 char *error, size_t len);

#endif
