/* failure.h -- the verdict on a failed query of a job: what to do next.
 *
 * Pure: from what failed (SQLSTATE, or a broken connection) and the job's
 * situation, the action; the job applies it (daemon/job/failure.c). The
 * narrowing of a batch that failed on its data is decided apart
 * (batch_failure.c): outside a batch, a data error is a permanent one.
 */
#ifndef BF_FAILURE_H
#define BF_FAILURE_H

#include <stdbool.h>

typedef enum bf_failure_action {
	/* The connection broke: whether the query committed is for the row
	 * to say; the reconnect re-reads it. */
	BF_FAILURE_RECONNECT = 2,
	/* Stopping: no retry, no backoff; release what is ours. */
	BF_FAILURE_STOPPING,
	/* Our cancel of a batch that blocked a session: shrink, back off. */
	BF_FAILURE_BLOCKING_CANCELLED,
	/* Our own cancel (pause --now, cancel --now): re-read the row. */
	BF_FAILURE_CANCELLED,
	/* The checkpoint fence refused it: re-read the row. */
	BF_FAILURE_FENCED,
	/* Transient: retry after a backoff (the batch shrunk first when
	 * shrink is set in the verdict). */
	BF_FAILURE_RETRY,
	/* Permanent: count it, and retry after a backoff... */
	BF_FAILURE_ATTEMPT,
	/* ...until retry.max_failures in a row: the job fails. */
	BF_FAILURE_GIVE_UP,
	/* Giving up on recording the job's end itself: leave the row to the
	 * lease, so that this daemon or another tries again later. */
	BF_FAILURE_LEAVE,
} bf_failure_action;

typedef struct bf_failure {
	const char *sqlstate;  /* NULL when the connection broke */
	bool connection_broke; /* no result at all */
	bool stopping;	       /* the daemon is shutting the job down */
	bool cancel_requested; /* we asked the server to cancel the query */
	bool cancel_blocking;  /* ... because it blocked a session */
	bool finishing;	       /* the query recorded the job's end */
	int failures;	       /* permanent failures in a row before this one */
	int max_failures;      /* retry.max_failures */
} bf_failure;

typedef struct bf_failure_verdict {
	bf_failure_action action;
	bool shrink;	   /* halve the batch size before retrying */
	bool lock_timeout; /* it waited for a lock: a throttle, not a failure */
} bf_failure_verdict;

bf_failure_verdict bf_failure_judge(const bf_failure *f);

#endif
