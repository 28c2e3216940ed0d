/* watch.h -- backfillctl watch: status, refreshed until interrupted. */
#ifndef BF_CTL_WATCH_H
#define BF_CTL_WATCH_H

#include "term.h"

/* Asks for the status of job (NULL: every job) every interval_ms and
 * prints it: redrawn in place on a terminal, one after the other (a blank
 * line between) otherwise. Errors are shown and the next round tries again;
 * a daemon that goes away is waited for. Returns 0 on SIGINT or SIGTERM,
 * 1 when stdout cannot be written. */
int bf_ctl_watch(const char *socket_path, int timeout_ms, const char *job, int interval_ms,
		 const bf_term *term);

#endif
