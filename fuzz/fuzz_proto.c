/* fuzz_proto.c -- libFuzzer target for the control protocol codec: any bytes
 * as a request line (the daemon's side) and as a response line (the CLI's
 * side). Beyond "no crash, no leak, no UB", every outcome is checked against
 * the contract in proto.h; a broken invariant aborts, which libFuzzer reports
 * as a crash with the input that caused it.
 *
 * Built and run by `make fuzz` / `make fuzz-short`.
 */
#include "proto.h"
#include "settings.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The same as proto.c's private limit on a job name. */
#define FUZZ_MAX_JOB 1000

static const char *const error_codes[] = {
	BF_ERR_BAD_REQUEST,
	BF_ERR_UNSUPPORTED_VERSION,
	BF_ERR_UNKNOWN_COMMAND,
	BF_ERR_TOO_LARGE,
	BF_ERR_TIMEOUT,
	BF_ERR_PERMISSION_DENIED,
	BF_ERR_BUSY,
	BF_ERR_NO_SUCH_JOB,
	BF_ERR_REFUSED,
	BF_ERR_DATABASE,
	BF_ERR_INTERNAL,
};

/* A request padded past the limit, kept for every run: filling 64 kB costs
 * far less than the JSON parse it must never reach. */
static char *oversized;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* jansson seeds its hash from /dev/urandom: object iteration order
	 * (and so which bad field is reported first) would vary between runs
	 * and a crash would not reproduce. */
	json_object_seed(1);
	oversized = malloc(BF_PROTO_MAX_REQUEST + 2);
	FUZZ_CHECK(oversized != NULL);
	return 0;
}

static int known_code(const char *code)
{
	for (size_t i = 0; i < sizeof error_codes / sizeof error_codes[0]; i++)
		if (code == error_codes[i] || (code && strcmp(code, error_codes[i]) == 0))
			return 1;
	return 0;
}

/* A one-line message fit for a log and an error response. */
static void check_message(const char *msg)
{
	FUZZ_CHECK(msg[0] != '\0');
	for (const char *p = msg; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void check_fields(const bf_request *req)
{
	FUZZ_CHECK(req->version == BF_PROTO_VERSION);
	FUZZ_CHECK((unsigned)req->cmd <= BF_CMD_PLAN);
	FUZZ_CHECK(bf_cmd_parse(bf_cmd_name(req->cmd)) == (int)req->cmd);
	FUZZ_CHECK(req->all == 0 || req->all == 1);
	FUZZ_CHECK(req->now == 0 || req->now == 1);

	if (req->job) {
		size_t len = strlen(req->job);

		FUZZ_CHECK(len >= 1 && len <= FUZZ_MAX_JOB);
		for (size_t i = 0; i < len; i++)
			FUZZ_CHECK((unsigned char)req->job[i] >= 0x20 && req->job[i] != 0x7f);
	}

	switch (req->cmd) {
	case BF_CMD_STATUS:
		/* all: every job, finished ones too (status --all); a job
		 * named is shown whatever all says. */
		FUZZ_CHECK(!req->now);
		break;
	case BF_CMD_PAUSE:
	case BF_CMD_RESUME:
		FUZZ_CHECK(!req->job != !req->all); /* exactly one */
		FUZZ_CHECK(req->cmd == BF_CMD_PAUSE || !req->now);
		break;
	case BF_CMD_CANCEL:
		FUZZ_CHECK(req->job && !req->all);
		break;
	case BF_CMD_SET:
	case BF_CMD_PLAN:
		FUZZ_CHECK(req->job && !req->all && !req->now);
		break;
	}

	FUZZ_CHECK(!req->settings == (req->cmd != BF_CMD_SET));
	if (req->settings) {
		char why[256];

		FUZZ_CHECK(json_is_object(req->settings) && json_object_size(req->settings) > 0);
		for (void *it = json_object_iter(req->settings); it;
		     it = json_object_iter_next(req->settings, it)) {
			const bf_knob *knob = bf_knob_find(json_object_iter_key(it));
			json_t *value = json_object_iter_value(it);

			FUZZ_CHECK(knob != NULL);
			FUZZ_CHECK(json_is_integer(value));
			FUZZ_CHECK(bf_knob_check(knob, (long long)json_integer_value(value), why,
						 sizeof why) == 0);
		}
	}
}

/* What the daemon does with a good request, in miniature: encode it again
 * (the CLI's side), decode that, and answer it. */
static void check_round_trip(const bf_request *req)
{
	char *line = bf_request_encode(req), *response;
	bf_request back;
	const char *code = NULL;
	char err[512];
	json_t *result = NULL;
	char rcode[64], msg[256];

	FUZZ_CHECK(line != NULL);
	FUZZ_CHECK(strchr(line, '\n') == line + strlen(line) - 1);
	FUZZ_CHECK(bf_request_decode(line, strlen(line), &back, &code, err, sizeof err) == 0);
	FUZZ_CHECK(back.version == req->version && back.cmd == req->cmd);
	FUZZ_CHECK(!back.job == !req->job && (!back.job || strcmp(back.job, req->job) == 0));
	FUZZ_CHECK(back.all == req->all && back.now == req->now);
	FUZZ_CHECK(!back.settings == !req->settings &&
		   (!back.settings || json_equal(back.settings, req->settings)));
	bf_request_free(&back);
	FUZZ_CHECK(back.job == NULL && back.settings == NULL);

	response = bf_response_ok(json_pack("{s:s, s:s?, s:O?}", "cmd", bf_cmd_name(req->cmd),
					    "job", req->job, "settings", req->settings));
	FUZZ_CHECK(response != NULL);
	FUZZ_CHECK(bf_response_decode(response, strlen(response), &result, rcode, sizeof rcode, msg,
				      sizeof msg) == 1);
	FUZZ_CHECK(json_is_object(result));
	FUZZ_CHECK(!req->job ||
		   strcmp(json_string_value(json_object_get(result, "job")), req->job) == 0);
	json_decref(result);
	free(response);
	free(line);
}

/* The error response the daemon sends for a refused request. */
static void check_refusal(const char *code, const char *err)
{
	char *response = bf_response_error(code, "%s", err);
	json_t *result = NULL;
	char rcode[64], msg[1024];

	FUZZ_CHECK(response != NULL);
	FUZZ_CHECK(strchr(response, '\n') == response + strlen(response) - 1);
	FUZZ_CHECK(bf_response_decode(response, strlen(response), &result, rcode, sizeof rcode, msg,
				      sizeof msg) == 0);
	FUZZ_CHECK(result == NULL);
	FUZZ_CHECK(strcmp(rcode, code) == 0);
	FUZZ_CHECK(strlen(msg) == strlen(err));
	free(response);
}

/* The same bytes as a response line: the CLI must never trust it. */
static void check_response_decode(const char *line, size_t len)
{
	json_t *result = (json_t *)1;
	char code[32], msg[128];
	int rc = bf_response_decode(line, len, &result, code, sizeof code, msg, sizeof msg);

	FUZZ_CHECK(rc >= -1 && rc <= 1);
	FUZZ_CHECK((rc == 1) == (result != NULL));
	if (rc == -1)
		FUZZ_CHECK(msg[0] != '\0');
	json_decref(result);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	size_t body = size > 0 && line[size - 1] == '\n' ? size - 1 : size;
	bf_request req;
	const char *code = NULL;
	char err[512] = "";
	int rc;

	memset(&req, 0xa5, sizeof req); /* the decoder must not rely on a zeroed req */
	rc = bf_request_decode(line, size, &req, &code, err, sizeof err);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0) {
		FUZZ_CHECK(body <= BF_PROTO_MAX_REQUEST);
		FUZZ_CHECK(memchr(line, '\0', body) == NULL);
		check_fields(&req);
		check_round_trip(&req);
		bf_request_free(&req);
	} else {
		FUZZ_CHECK(known_code(code));
		FUZZ_CHECK((strcmp(code, BF_ERR_TOO_LARGE) == 0) == (body > BF_PROTO_MAX_REQUEST));
		check_message(err);
		/* A refusal leaves nothing to free. */
		FUZZ_CHECK(req.job == NULL && req.settings == NULL);
		check_refusal(code, err);
	}

	/* The line's "\n" is optional: with one added, the same verdict. */
	if (body == size) {
		char *with_newline = malloc(size + 1), again[512];
		const char *code_again = NULL;

		FUZZ_CHECK(with_newline != NULL);
		memcpy(with_newline, line, size);
		with_newline[size] = '\n';
		FUZZ_CHECK(bf_request_decode(with_newline, size + 1, &req, &code_again, again,
					     sizeof again) == rc);
		if (rc == 0)
			bf_request_free(&req);
		else
			FUZZ_CHECK(strcmp(code_again, code) == 0 && strcmp(again, err) == 0);
		free(with_newline);
	}

	/* A caller's small error buffer is cut, never overrun: an exact-size
	 * heap block lets ASan see one byte too many. */
	size_t small = size % 8;
	char *cut = malloc(small); /* malloc(0) too: ASan flags any access */

	FUZZ_CHECK(cut != NULL || small == 0);
	if (bf_request_decode(line, size, &req, &code, cut, small) == 0) {
		FUZZ_CHECK(rc == 0);
		bf_request_free(&req);
	} else {
		FUZZ_CHECK(rc == -1);
		if (small)
			FUZZ_CHECK(strlen(cut) < small);
	}
	free(cut);

	/* The same request, padded with blanks to one byte over the limit, is
	 * refused before it is parsed, whatever it holds. */
	size_t keep = size < BF_PROTO_MAX_REQUEST ? size : BF_PROTO_MAX_REQUEST;

	memcpy(oversized, line, keep);
	memset(oversized + keep, ' ', BF_PROTO_MAX_REQUEST + 1 - keep);
	oversized[BF_PROTO_MAX_REQUEST + 1] = '\n';
	FUZZ_CHECK(bf_request_decode(oversized, BF_PROTO_MAX_REQUEST + 2, &req, &code, err,
				     sizeof err) == -1);
	FUZZ_CHECK(strcmp(code, BF_ERR_TOO_LARGE) == 0);
	check_message(err);

	check_response_decode(line, size);
	return 0;
}
