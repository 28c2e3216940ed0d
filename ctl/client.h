/* client.h -- backfillctl's side of the control socket: connect, send one
 * request, wait for its one answer, and turn every outcome into an exit code.
 */
#ifndef BF_CTL_CLIENT_H
#define BF_CTL_CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>

#include "proto.h"

/* backfillctl's exit statuses: a public interface, scripts test them. */
enum {
	BF_CTL_OK = 0,
	BF_CTL_FAILED = 1,	/* the daemon refused or failed the request, or did not answer */
	BF_CTL_USAGE = 2,	/* bad command line: nothing was sent */
	BF_CTL_NOT_RUNNING = 3, /* no socket, or nobody listening on it */
	BF_CTL_DENIED = 4,	/* the socket or the daemon said no */
	BF_CTL_NO_SUCH_JOB = 5,
};

/* Returned by bf_ctl_call, never an exit status: set bf_ctl_interrupted
 * from a signal handler to abandon a call (watch does, on SIGINT). */
#define BF_CTL_INTERRUPTED (-1)
extern volatile sig_atomic_t bf_ctl_interrupted;

/* Sends req to the daemon listening on socket_path and waits at most
 * timeout_ms for the whole exchange. Returns BF_CTL_OK with *result set (a
 * new reference), or another BF_CTL_* status with a one-line reason (without
 * the program name) in err and *result NULL. */
int bf_ctl_call(const char *socket_path, int timeout_ms, const bf_request *req, json_t **result,
		char *err, size_t errlen);

#endif
