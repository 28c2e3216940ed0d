/* errclass.h -- what a failed batch means: retry it, or give up on the job. */
#ifndef BF_ERRCLASS_H
#define BF_ERRCLASS_H

#include <stdbool.h>

typedef enum bf_errclass {
	/* Worth retrying as it is: lock timeout, deadlock, serialization
	 * failure, lost connection, server shutting down or out of slots. */
	BF_ERR_TRANSIENT,
	/* The batch took too long or waited on a lock: retry, with a smaller batch. */
	BF_ERR_TRANSIENT_SHRINK,
	/* Retrying will not help: bad SQL, missing table, permissions. */
	BF_ERR_PERMANENT,
	/* A row's data made it fail (invalid input, constraint violation, an
	 * exception raised by a function): retrying the same rows fails the
	 * same way, and narrowing the batch finds the row. */
	BF_ERR_DATA,
	/* Our checkpoint fence refused the batch: lease lost or the row changed
	 * under us (paused, cancelled, taken over). Re-read the job row. */
	BF_ERR_FENCE,
} bf_errclass;

/* SQLSTATE raised by backfill.checkpoint_fence(). */
#define BF_SQLSTATE_FENCE "BF001"
/* Our lock_timeout expired. */
#define BF_SQLSTATE_LOCK_NOT_AVAILABLE "55P03"
/* A statement_timeout, or a cancel (ours: pause --now, a blocking batch). */
#define BF_SQLSTATE_QUERY_CANCELED "57014"
/* No such function or operator (a key type without ordering, say). */
#define BF_SQLSTATE_UNDEFINED_FUNCTION "42883"

/* Whether sqlstate (NULL: none) is code. */
bool bf_sqlstate_is(const char *sqlstate, const char *code);

/* Classifies a five-character SQLSTATE; NULL (no SQLSTATE: the connection
 * broke before the server could answer) is transient. */
bf_errclass bf_errclass_of(const char *sqlstate);

#endif
