/* test_proto.c -- proto.c: every command round trip, every rejection of a
 * request, both kinds of response, malformed responses, and a mutation run
 * that must neither crash nor leak (run it under SANITIZE=address,undefined).
 */
#include "proto.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>

static int decode(const char *line, bf_request *req, const char **code, char *err, size_t errlen)
{
	return bf_request_decode(line, strlen(line), req, code, err, errlen);
}

/* Encodes req, checks the exact line, decodes it back and compares. */
static void round_trip(const bf_request *req, const char *expected)
{
	char *line = bf_request_encode(req);
	bf_request back;
	const char *code = NULL;
	char err[512] = "";

	UNIT_CHECK_STR(line, expected);
	if (!line)
		return;
	UNIT_CHECK_INT(bf_request_decode(line, strlen(line), &back, &code, err, sizeof err), 0);
	UNIT_CHECK_STR(err, "");
	UNIT_CHECK_INT(back.version, BF_PROTO_VERSION);
	UNIT_CHECK_INT(back.cmd, req->cmd);
	UNIT_CHECK(!req->job == !back.job);
	if (req->job && back.job)
		UNIT_CHECK_STR(back.job, req->job);
	UNIT_CHECK_INT(back.all, req->all);
	UNIT_CHECK_INT(back.now, req->now);
	UNIT_CHECK(!req->settings == !back.settings);
	if (req->settings && back.settings)
		UNIT_CHECK(json_equal(req->settings, back.settings));
	bf_request_free(&back);
	free(line);
}

static void test_round_trip_every_command(void)
{
	bf_request req = {.cmd = BF_CMD_STATUS};

	round_trip(&req, "{\"v\":1,\"cmd\":\"status\"}\n");
	req.job = "orders-total-cents";
	round_trip(&req, "{\"v\":1,\"cmd\":\"status\",\"job\":\"orders-total-cents\"}\n");
	req = (bf_request){.cmd = BF_CMD_STATUS, .all = 1};
	round_trip(&req, "{\"v\":1,\"cmd\":\"status\",\"all\":true}\n");

	req = (bf_request){.cmd = BF_CMD_PAUSE, .job = "orders"};
	round_trip(&req, "{\"v\":1,\"cmd\":\"pause\",\"job\":\"orders\"}\n");
	req = (bf_request){.cmd = BF_CMD_PAUSE, .all = 1, .now = 1};
	round_trip(&req, "{\"v\":1,\"cmd\":\"pause\",\"all\":true,\"now\":true}\n");

	req = (bf_request){.cmd = BF_CMD_RESUME, .job = "j\xc3\xa9"};
	round_trip(&req, "{\"v\":1,\"cmd\":\"resume\",\"job\":\"j\xc3\xa9\"}\n");
	req = (bf_request){.cmd = BF_CMD_RESUME, .all = 1};
	round_trip(&req, "{\"v\":1,\"cmd\":\"resume\",\"all\":true}\n");

	req = (bf_request){.cmd = BF_CMD_CANCEL, .job = "orders", .now = 1};
	round_trip(&req, "{\"v\":1,\"cmd\":\"cancel\",\"job\":\"orders\",\"now\":true}\n");

	req = (bf_request){.cmd = BF_CMD_SET, .job = "orders"};
	req.settings = json_pack("{s:i, s:i}", "batch_size", 5000, "max_rows_per_s", 0);
	round_trip(&req, "{\"v\":1,\"cmd\":\"set\",\"job\":\"orders\","
			 "\"settings\":{\"batch_size\":5000,\"max_rows_per_s\":0}}\n");
	json_decref(req.settings);

	req = (bf_request){.cmd = BF_CMD_PLAN, .job = "orders"};
	round_trip(&req, "{\"v\":1,\"cmd\":\"plan\",\"job\":\"orders\"}\n");
}

static void test_decode_accepts(void)
{
	bf_request req;
	const char *code = NULL;
	char err[512] = "";

	/* Without the newline, with CRLF, with whitespace, fields in any order. */
	UNIT_CHECK_INT(decode("{\"cmd\":\"status\",\"v\":1}", &req, &code, err, sizeof err), 0);
	bf_request_free(&req);
	UNIT_CHECK_INT(
		decode(" { \"v\" : 1 , \"cmd\" : \"status\" }\r\n", &req, &code, err, sizeof err),
		0);
	bf_request_free(&req);
	/* all: false is the same as no all. */
	UNIT_CHECK_INT(
		decode("{\"v\":1,\"cmd\":\"pause\",\"job\":\"a\",\"all\":false,\"now\":false}",
		       &req, &code, err, sizeof err),
		0);
	UNIT_CHECK_STR(req.job, "a");
	UNIT_CHECK_INT(req.all, 0);
	bf_request_free(&req);
	/* A job name of exactly 1000 bytes. */
	char line[1200];

	snprintf(line, sizeof line, "{\"v\":1,\"cmd\":\"plan\",\"job\":\"%01000d\"}", 7);
	UNIT_CHECK_INT(decode(line, &req, &code, err, sizeof err), 0);
	UNIT_CHECK_INT(strlen(req.job), 1000);
	bf_request_free(&req);
	UNIT_CHECK_INT(bf_cmd_parse("plan"), BF_CMD_PLAN);
	UNIT_CHECK_INT(bf_cmd_parse("Plan"), -1);
	UNIT_CHECK_STR(bf_cmd_name(BF_CMD_SET), "set");
}

static const struct {
	const char *line;
	const char *code;
	const char *message; /* a part of it */
} rejections[] = {
	/* malformed JSON, not an object */
	{"", BF_ERR_BAD_REQUEST, "empty request"},
	{"{\"v\":1,\"cmd\":\"status\"", BF_ERR_BAD_REQUEST, "not valid JSON"},
	{"{\"v\":1,\"cmd\":\"status\"}{}", BF_ERR_BAD_REQUEST, "not valid JSON"},
	{"{'v':1}", BF_ERR_BAD_REQUEST, "not valid JSON"},
	{"{\"v\":1,\"cmd\":\"st\xffus\"}", BF_ERR_BAD_REQUEST, "not valid JSON"},
	{"{\"v\":1,\"cmd\":\"status\",\"job\":\"a\\u0000b\"}", BF_ERR_BAD_REQUEST,
	 "not valid JSON"},
	{"[1,2]", BF_ERR_BAD_REQUEST, "must be a JSON object, got an array"},
	{"\"status\"", BF_ERR_BAD_REQUEST, "must be a JSON object, got a string"},
	{"null", BF_ERR_BAD_REQUEST, "must be a JSON object, got null"},
	/* duplicate keys */
	{"{\"v\":1,\"cmd\":\"status\",\"cmd\":\"pause\"}", BF_ERR_BAD_REQUEST, "duplicate"},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"batch_size\":1,\"batch_size\":2}}",
	 BF_ERR_BAD_REQUEST, "duplicate"},
	/* version */
	{"{\"cmd\":\"status\"}", BF_ERR_BAD_REQUEST, "no \"v\""},
	{"{\"v\":\"1\",\"cmd\":\"status\"}", BF_ERR_BAD_REQUEST,
	 "\"v\" must be an integer, got a string"},
	{"{\"v\":1.0,\"cmd\":\"status\"}", BF_ERR_BAD_REQUEST, "\"v\" must be an integer"},
	{"{\"v\":0,\"cmd\":\"status\"}", BF_ERR_BAD_REQUEST, "\"v\" must be 1 or more, got 0"},
	{"{\"v\":-3,\"cmd\":\"status\"}", BF_ERR_BAD_REQUEST, "got -3"},
	{"{\"v\":2,\"cmd\":\"status\"}", BF_ERR_UNSUPPORTED_VERSION, "version 2 is newer"},
	/* newer version wins over an unknown command or field */
	{"{\"v\":99,\"cmd\":\"explode\",\"x\":1}", BF_ERR_UNSUPPORTED_VERSION, "99"},
	{"{\"v\":99999999999999999999,\"cmd\":\"status\"}", BF_ERR_BAD_REQUEST, "not valid JSON"},
	/* command */
	{"{\"v\":1}", BF_ERR_BAD_REQUEST, "no \"cmd\""},
	{"{\"v\":1,\"cmd\":7}", BF_ERR_BAD_REQUEST, "\"cmd\" must be a string, got an integer"},
	{"{\"v\":1,\"cmd\":\"explode\"}", BF_ERR_UNKNOWN_COMMAND, "unknown command \"explode\""},
	{"{\"v\":1,\"cmd\":\"bad\\nname\"}", BF_ERR_UNKNOWN_COMMAND, "\"bad?name\""},
	/* unknown fields */
	{"{\"v\":1,\"cmd\":\"pause\",\"job\":\"a\",\"force\":true}", BF_ERR_BAD_REQUEST,
	 "unknown field \"force\" for command pause"},
	{"{\"v\":1,\"cmd\":\"status\",\"now\":true}", BF_ERR_BAD_REQUEST,
	 "unknown field \"now\" for command status"},
	{"{\"v\":1,\"cmd\":\"resume\",\"all\":true,\"now\":true}", BF_ERR_BAD_REQUEST,
	 "unknown field \"now\" for command resume"},
	{"{\"v\":1,\"cmd\":\"plan\",\"job\":\"a\",\"settings\":{}}", BF_ERR_BAD_REQUEST,
	 "unknown field \"settings\" for command plan"},
	{"{\"v\":1,\"cmd\":\"cancel\",\"job\":\"a\",\"all\":true}", BF_ERR_BAD_REQUEST,
	 "unknown field \"all\" for command cancel"},
	/* missing fields */
	{"{\"v\":1,\"cmd\":\"cancel\"}", BF_ERR_BAD_REQUEST, "command cancel needs \"job\""},
	{"{\"v\":1,\"cmd\":\"plan\"}", BF_ERR_BAD_REQUEST, "command plan needs \"job\""},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\"}", BF_ERR_BAD_REQUEST,
	 "command set needs \"settings\""},
	{"{\"v\":1,\"cmd\":\"pause\"}", BF_ERR_BAD_REQUEST,
	 "command pause needs \"job\" or \"all\""},
	{"{\"v\":1,\"cmd\":\"resume\",\"all\":false}", BF_ERR_BAD_REQUEST,
	 "command resume needs \"job\" or \"all\""},
	{"{\"v\":1,\"cmd\":\"pause\",\"job\":\"a\",\"all\":true}", BF_ERR_BAD_REQUEST, "not both"},
	/* wrong types and bad job names */
	{"{\"v\":1,\"cmd\":\"pause\",\"job\":5}", BF_ERR_BAD_REQUEST,
	 "\"job\" must be a string (command pause), got an integer"},
	{"{\"v\":1,\"cmd\":\"status\",\"job\":null}", BF_ERR_BAD_REQUEST, "got null"},
	{"{\"v\":1,\"cmd\":\"pause\",\"all\":1}", BF_ERR_BAD_REQUEST,
	 "\"all\" must be true or false (command pause), got an integer"},
	{"{\"v\":1,\"cmd\":\"cancel\",\"job\":\"a\",\"now\":\"yes\"}", BF_ERR_BAD_REQUEST,
	 "\"now\" must be true or false"},
	{"{\"v\":1,\"cmd\":\"plan\",\"job\":\"\"}", BF_ERR_BAD_REQUEST, "must not be empty"},
	{"{\"v\":1,\"cmd\":\"plan\",\"job\":\"a\\tb\"}", BF_ERR_BAD_REQUEST,
	 "control character at byte 1"},
	{"{\"v\":1,\"cmd\":\"plan\",\"job\":\"a\\u007f\"}", BF_ERR_BAD_REQUEST,
	 "control character"},
	/* settings */
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{}}", BF_ERR_BAD_REQUEST,
	 "\"settings\" must be a non-empty object (command set), got an empty object"},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":[1]}", BF_ERR_BAD_REQUEST,
	 "got an array"},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"bach_size\":5}}",
	 BF_ERR_BAD_REQUEST, "unknown setting \"bach_size\""},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"batch_size\":\"5\"}}",
	 BF_ERR_BAD_REQUEST, "setting \"batch_size\" must be an integer (rows), got a string"},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"batch_size\":2.5}}",
	 BF_ERR_BAD_REQUEST, "must be an integer"},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"batch_size\":0}}",
	 BF_ERR_BAD_REQUEST, "batch_size must be between 1 and 10000000 rows, got 0"},
	{"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"max_rows_per_s\":-1}}",
	 BF_ERR_BAD_REQUEST, "got -1"},
};

static void test_decode_rejects(void)
{
	for (size_t i = 0; i < sizeof rejections / sizeof rejections[0]; i++) {
		bf_request req;
		const char *code = NULL;
		char err[512] = "";

		if (decode(rejections[i].line, &req, &code, err, sizeof err) != -1) {
			fprintf(stderr, "accepted: %s\n", rejections[i].line);
			unit_current_failed = 1;
			bf_request_free(&req);
			continue;
		}
		UNIT_CHECK_STR(code, rejections[i].code);
		UNIT_CHECK_CONTAINS(err, rejections[i].message);
		UNIT_CHECK(!strchr(err, '\n'));
		/* A failed decode leaves nothing to free. */
		UNIT_CHECK(req.job == NULL && req.settings == NULL);
	}
}

static void test_decode_rejects_nul_and_size(void)
{
	static const char with_nul[] = "{\"v\":1,\"cmd\":\"status\"}\0garbage";
	size_t max = BF_PROTO_MAX_REQUEST;
	char *line = malloc(max + 2);
	bf_request req;
	const char *code = NULL;
	char err[512];

	UNIT_CHECK_INT(
		bf_request_decode(with_nul, sizeof with_nul - 1, &req, &code, err, sizeof err), -1);
	UNIT_CHECK_STR(code, BF_ERR_BAD_REQUEST);
	UNIT_CHECK_CONTAINS(err, "NUL byte at byte 22");

	if (!line)
		return;
	/* A well-formed request, padded with whitespace: one byte over the
	 * limit (not counting the newline) is refused... */
	memset(line, ' ', max + 1);
	memcpy(line, "{\"v\":1,\"cmd\":\"status\"}", 22);
	line[max + 1] = '\n';
	UNIT_CHECK_INT(bf_request_decode(line, max + 2, &req, &code, err, sizeof err), -1);
	UNIT_CHECK_STR(code, BF_ERR_TOO_LARGE);
	UNIT_CHECK_CONTAINS(err, "larger than the limit");
	/* ...exactly at the limit is fine. */
	line[max] = '\n';
	UNIT_CHECK_INT(bf_request_decode(line, max + 1, &req, &code, err, sizeof err), 0);
	bf_request_free(&req);
	free(line);
}

static void test_decode_long_field_name_is_cut(void)
{
	char line[600], field[300];
	bf_request req;
	const char *code = NULL;
	char err[512];

	memset(field, 'x', sizeof field - 1);
	field[sizeof field - 1] = '\0';
	snprintf(line, sizeof line, "{\"v\":1,\"cmd\":\"status\",\"%s\":1}", field);
	UNIT_CHECK_INT(decode(line, &req, &code, err, sizeof err), -1);
	UNIT_CHECK_CONTAINS(err, "xxx...\" for command status");
	UNIT_CHECK(strlen(err) < 120);
	/* Cut inside a multibyte character: never half of one. */
	char accents[300] = "";

	for (int i = 0; i < 60; i++)
		strcat(accents, "\xc3\xa9");
	snprintf(line, sizeof line, "{\"v\":1,\"cmd\":\"status\",\"%s\":1}", accents);
	UNIT_CHECK_INT(decode(line, &req, &code, err, sizeof err), -1);
	UNIT_CHECK_CONTAINS(err, "\xc3\xa9...\"");
	/* A job name over 1000 bytes. */
	char job[1100];

	snprintf(job, sizeof job, "{\"v\":1,\"cmd\":\"plan\",\"job\":\"%01001d\"}", 7);
	UNIT_CHECK_INT(decode(job, &req, &code, err, sizeof err), -1);
	UNIT_CHECK_CONTAINS(err, "longer than 1000 bytes");
}

/* A caller's error buffer is never read or written past errlen, even when
 * it is 0 (found by fuzz/fuzz_proto.c: fail() scanned err for control
 * characters without a terminating NUL having been written). */
static void test_decode_small_error_buffer(void)
{
	bf_request req;
	const char *code = NULL;
	char *none = malloc(1), err[8];

	if (!none)
		return;
	none[0] = 'x'; /* no NUL anywhere: a scan would run off the end */
	UNIT_CHECK_INT(bf_request_decode("", 0, &req, &code, none, 0), -1);
	UNIT_CHECK_STR(code, BF_ERR_BAD_REQUEST);
	UNIT_CHECK_INT(none[0], 'x');
	free(none);
	UNIT_CHECK_INT(decode("{\"v\":1,\"cmd\":\"a\\tb\"}", &req, &code, err, sizeof err), -1);
	UNIT_CHECK_STR(err, "unknown");
}

static void test_response_ok(void)
{
	char *line = bf_response_ok(json_pack("{s:s, s:i}", "message", "paused", "n", 2));
	json_t *result = NULL;
	char code[64], msg[256];

	UNIT_CHECK_STR(line, "{\"v\":1,\"ok\":true,\"result\":{\"message\":\"paused\",\"n\":2}}\n");
	UNIT_CHECK_INT(
		bf_response_decode(line, strlen(line), &result, code, sizeof code, msg, sizeof msg),
		1);
	UNIT_CHECK_STR(json_string_value(json_object_get(result, "message")), "paused");
	json_decref(result);
	free(line);

	/* No result at all becomes an empty object. */
	line = bf_response_ok(NULL);
	UNIT_CHECK_STR(line, "{\"v\":1,\"ok\":true,\"result\":{}}\n");
	free(line);
}

static void test_response_error(void)
{
	char *line = bf_response_error(BF_ERR_NO_SUCH_JOB, "no job named \"%s\"", "orders");
	json_t *result = NULL;
	char code[64], msg[256];

	UNIT_CHECK_STR(line, "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"no_such_job\","
			     "\"message\":\"no job named \\\"orders\\\"\"}}\n");
	UNIT_CHECK_INT(
		bf_response_decode(line, strlen(line), &result, code, sizeof code, msg, sizeof msg),
		0);
	UNIT_CHECK(result == NULL);
	UNIT_CHECK_STR(code, "no_such_job");
	UNIT_CHECK_STR(msg, "no job named \"orders\"");
	free(line);

	/* A server message over several lines, in another encoding, cut in
	 * the middle of a character: still one line of valid UTF-8. */
	line = bf_response_error(BF_ERR_DATABASE, "%s", "ERROR:  boom\nDETAIL: caf\xe9 \xc3");
	UNIT_CHECK(line != NULL);
	UNIT_CHECK_INT(
		bf_response_decode(line, strlen(line), &result, code, sizeof code, msg, sizeof msg),
		0);
	UNIT_CHECK_STR(msg, "ERROR:  boom DETAIL: caf? ?");
	free(line);
	/* Overlong and surrogate encodings are invalid too. */
	line = bf_response_error(BF_ERR_INTERNAL, "%s",
				 "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 ok");
	UNIT_CHECK(line != NULL);
	free(line);
}

static const char *bad_responses[] = {
	"",
	"{\"v\":1,\"ok\":true",
	"[]",
	"{\"ok\":true,\"result\":{}}",
	"{\"v\":2,\"ok\":true,\"result\":{}}",
	"{\"v\":1,\"result\":{}}",
	"{\"v\":1,\"ok\":\"true\",\"result\":{}}",
	"{\"v\":1,\"ok\":true}",
	"{\"v\":1,\"ok\":false}",
	"{\"v\":1,\"ok\":false,\"error\":\"boom\"}",
	"{\"v\":1,\"ok\":false,\"error\":{\"code\":\"x\"}}",
	"{\"v\":1,\"ok\":false,\"error\":{\"code\":1,\"message\":\"m\"}}",
	"{\"v\":1,\"ok\":true,\"ok\":false,\"result\":{}}",
};

static void test_response_malformed(void)
{
	for (size_t i = 0; i < sizeof bad_responses / sizeof bad_responses[0]; i++) {
		json_t *result = NULL;
		char code[64], msg[256] = "";
		const char *line = bad_responses[i];

		UNIT_CHECK_INT(bf_response_decode(line, strlen(line), &result, code, sizeof code,
						  msg, sizeof msg),
			       -1);
		UNIT_CHECK(result == NULL);
		UNIT_CHECK(msg[0] != '\0');
	}
	/* Unknown fields in a response are a newer daemon's business. */
	const char *newer = "{\"v\":1,\"ok\":true,\"result\":[],\"took_ms\":3}\n";
	json_t *result = NULL;
	char code[64], msg[256];

	UNIT_CHECK_INT(bf_response_decode(newer, strlen(newer), &result, code, sizeof code, msg,
					  sizeof msg),
		       1);
	UNIT_CHECK(json_is_array(result));
	json_decref(result);
}

/* Mutations of valid requests: each must be decoded or refused, never
 * crash, and (under ASan) never leak. */
static void test_decode_survives_mutations(void)
{
	static const char *seeds[] = {
		"{\"v\":1,\"cmd\":\"set\",\"job\":\"a\",\"settings\":{\"batch_size\":5000,"
		"\"max_rows_per_s\":0}}",
		"{\"v\":1,\"cmd\":\"pause\",\"all\":true,\"now\":true}",
		"{\"v\":1,\"cmd\":\"status\",\"job\":\"j\\u00e9\"}",
	};
	static const char alphabet[] = "{}[]\",:\\01-.aetnu \n\x80\xc3\xff";
	uint64_t state = 0x9e3779b97f4a7c15ULL;
	char buf[256];

	for (int i = 0; i < 30000; i++) {
		const char *seed = seeds[i % 3];
		size_t len = strlen(seed);
		bf_request req;
		const char *code = NULL;
		char err[256];

		memcpy(buf, seed, len);
		for (int m = 0; m < 1 + i % 4; m++) {
			state ^= state << 13;
			state ^= state >> 7;
			state ^= state << 17;
			size_t at = (size_t)(state % len);
			char c = alphabet[(state >> 32) % (sizeof alphabet - 1)];

			switch ((state >> 48) % 3) {
			case 0:
				buf[at] = c;
				break;
			case 1:
				len = at; /* truncate */
				break;
			default:
				if (len + 1 < sizeof buf) {
					memmove(buf + at + 1, buf + at, len - at);
					buf[at] = c;
					len++;
				}
			}
			if (len == 0)
				break;
		}
		if (bf_request_decode(buf, len, &req, &code, err, sizeof err) == 0) {
			char *again = bf_request_encode(&req);

			UNIT_CHECK(again != NULL);
			free(again);
			bf_request_free(&req);
		} else {
			UNIT_CHECK(code != NULL && !strchr(err, '\n'));
		}
		json_t *result = NULL;
		char rcode[32], msg[128];

		if (bf_response_decode(buf, len, &result, rcode, sizeof rcode, msg, sizeof msg) ==
		    1)
			json_decref(result);
	}
}

int main(void)
{
	UNIT_RUN(test_round_trip_every_command);
	UNIT_RUN(test_decode_accepts);
	UNIT_RUN(test_decode_rejects);
	UNIT_RUN(test_decode_rejects_nul_and_size);
	UNIT_RUN(test_decode_long_field_name_is_cut);
	UNIT_RUN(test_decode_small_error_buffer);
	UNIT_RUN(test_response_ok);
	UNIT_RUN(test_response_error);
	UNIT_RUN(test_response_malformed);
	UNIT_RUN(test_decode_survives_mutations);
	return UNIT_DONE();
}
