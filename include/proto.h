/* proto.h -- the control protocol between backfillctl and backfilld, version 1.
 *
 * A unix stream socket carries JSON Lines: every message is one compact JSON
 * object followed by "\n" (compact JSON never contains a raw newline). The
 * client sends a request, the daemon answers with exactly one response, in
 * order; a connection may carry several requests one after the other.
 *
 *   request:  {"v":1,"cmd":"pause","job":"orders","now":true}
 *   response: {"v":1,"ok":true,"result":{...}}
 *             {"v":1,"ok":false,"error":{"code":"no_such_job","message":"..."}}
 *
 * Requests are checked strictly (unknown fields, wrong types and a version
 * newer than ours are refused), so a typo never becomes a silent no-op.
 * Encoding and decoding go through jansson; nothing here touches a socket,
 * so the decoder can be fuzzed on its own.
 */
#ifndef BF_PROTO_H
#define BF_PROTO_H

#include <jansson.h>
#include <stddef.h>

#include "log.h" /* BF_PRINTF */

#define BF_PROTO_VERSION 1
/* A request line longer than this is refused (and the connection closed). */
#define BF_PROTO_MAX_REQUEST 65536
/* What a client accepts in one response line (status of thousands of jobs). */
#define BF_PROTO_MAX_RESPONSE (64 * 1024 * 1024)

typedef enum bf_cmd {
	BF_CMD_STATUS, /* job: optional */
	BF_CMD_PAUSE,  /* job or all; now */
	BF_CMD_RESUME, /* job or all */
	BF_CMD_CANCEL, /* job; now */
	BF_CMD_SET,    /* job, settings: object of knob -> integer */
	BF_CMD_PLAN,   /* job */
} bf_cmd;

/* Error codes of a refused request (the "code" of an error response). */
#define BF_ERR_BAD_REQUEST	   "bad_request"
#define BF_ERR_UNSUPPORTED_VERSION "unsupported_version"
#define BF_ERR_UNKNOWN_COMMAND	   "unknown_command"
#define BF_ERR_TOO_LARGE	   "too_large"
#define BF_ERR_TIMEOUT		   "timeout"
#define BF_ERR_PERMISSION_DENIED   "permission_denied"
#define BF_ERR_BUSY		   "busy"
#define BF_ERR_NO_SUCH_JOB	   "no_such_job"
#define BF_ERR_REFUSED		   "refused"
#define BF_ERR_DATABASE		   "database_unavailable"
#define BF_ERR_INTERNAL		   "internal"

typedef struct bf_request {
	int version;
	bf_cmd cmd;
	char *job;	  /* NULL when not given */
	int all;	  /* pause/resume --all */
	int now;	  /* pause/cancel --now: also cancel the batch in flight */
	json_t *settings; /* set: a JSON object, owned; NULL otherwise */
} bf_request;

const char *bf_cmd_name(bf_cmd cmd);
/* -1 when unknown. */
int bf_cmd_parse(const char *name);

/* Decodes one request line (without or with its "\n"). On error returns -1,
 * sets *code to one of the BF_ERR_* codes and writes a one-line reason into
 * err. On success req owns its strings: bf_request_free. */
int bf_request_decode(const char *line, size_t len, bf_request *req, const char **code, char *err,
		      size_t errlen);
void bf_request_free(bf_request *req);

/* The request as one line ending in "\n" (malloc'd), NULL when out of memory. */
char *bf_request_encode(const bf_request *req);

/* Response lines ending in "\n" (malloc'd; NULL when out of memory).
 * bf_response_ok takes over result (a reference is stolen; NULL sends {}). */
char *bf_response_ok(json_t *result);
char *bf_response_error(const char *code, const char *fmt, ...) BF_PRINTF(2, 3);

/* Decodes a response line. Returns 1 for ok (*result: a new reference the
 * caller releases with json_decref), 0 for an error response (*code and msg
 * filled: code points into static storage or the decoded text copied into
 * codebuf), -1 when the line is not a valid response (msg says why). */
int bf_response_decode(const char *line, size_t len, json_t **result, char *code, size_t codelen,
		       char *msg, size_t msglen);

#endif
