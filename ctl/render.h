/* render.h -- the daemon's answers as text for people: the status table,
 * the plan summary, the one-line acknowledgement of a command.
 *
 * Every field is optional (a daemon older or newer than this backfillctl
 * may leave one out or send null): what is missing prints as "-".
 */
#ifndef BF_CTL_RENDER_H
#define BF_CTL_RENDER_H

#include <jansson.h>
#include <stdio.h>

#include "term.h"

/* status: the daemon header, then one line per job with details beneath. */
void bf_render_status(FILE *out, const json_t *result, const bf_term *term);

/* plan: what one rolled-back batch took, the extrapolation, the plan. */
void bf_render_plan(FILE *out, const json_t *result);

/* pause, resume, cancel, set: the result's "message", or "ok". */
void bf_render_message(FILE *out, const json_t *result);

/* The result as indented JSON (status --json). */
void bf_render_json(FILE *out, const json_t *result);

/* Durations as people read them: 42s, 12m05s, 3h12m, 2d04h. */
void bf_render_duration(char *buf, size_t len, double seconds);

#endif
