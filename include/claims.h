/* claims.h -- the scheduler's statements on the control table.
 *
 * All on the engine's listener connection, one at a time (engine_kick picks
 * the next): claims of work (a job's walk to set up, a slice to walk), the
 * renewal of our leases, their release on shutdown, and the job rows'
 * totals summed from their slices. Each replies to the engine through
 * bf_engine_run and bf_engine_kick.
 */
#ifndef BF_CLAIMS_H
#define BF_CLAIMS_H

#include "engine.h"

/* Jobs whose walk is not set up yet (the job row is leased to do that),
 * then slices, up to the free slots, best priority first. */
void bf_claims_claim(bf_engine *engine);

/* Renews the leases of what we run (and publishes its live status); gives
 * back rows leased to us that we do not run. */
void bf_claims_renew(bf_engine *engine);

/* Shutdown: every lease still ours is given back; then the engine closes. */
void bf_claims_release_all(bf_engine *engine);

/* The totals of the jobs we run slices of, summed into their rows. */
void bf_claims_rollup(bf_engine *engine);

#endif
