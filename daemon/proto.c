/* proto.c -- the control protocol codec (JSON Lines through jansson), shared
 * by backfilld and backfillctl. Requests are decoded strictly, responses
 * leniently (a newer daemon may add fields a client does not know yet).
 */
#include "proto.h"
#include "settings.h"
#include "utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A job name is an operator's label, not a document; this bounds what one
 * malformed request can make the daemon look up, log or echo back. */
#define BF_PROTO_MAX_JOB 1000

/* Fields a request may carry, as bits of a mask. */
enum {
	F_V = 1 << 0,
	F_CMD = 1 << 1,
	F_JOB = 1 << 2,
	F_ALL = 1 << 3,
	F_NOW = 1 << 4,
	F_SETTINGS = 1 << 5,
};

static const struct {
	const char *name;
	unsigned bit;
} proto_fields[] = {
	{"v", F_V},	{"cmd", F_CMD}, {"job", F_JOB},
	{"all", F_ALL}, {"now", F_NOW}, {"settings", F_SETTINGS},
};

#define NFIELDS (sizeof proto_fields / sizeof proto_fields[0])

/* Every command: its name, the fields it accepts and the ones it requires.
 * pause and resume take exactly one of job / all, checked in code. */
static const struct {
	const char *name;
	unsigned allowed, required;
} proto_cmds[] = {
	[BF_CMD_STATUS] = {"status", F_JOB | F_ALL, 0},
	[BF_CMD_PAUSE] = {"pause", F_JOB | F_ALL | F_NOW, 0},
	[BF_CMD_RESUME] = {"resume", F_JOB | F_ALL, 0},
	[BF_CMD_CANCEL] = {"cancel", F_JOB | F_NOW, F_JOB},
	[BF_CMD_SET] = {"set", F_JOB | F_SETTINGS, F_JOB | F_SETTINGS},
	[BF_CMD_PLAN] = {"plan", F_JOB, F_JOB},
};

#define NCMDS (sizeof proto_cmds / sizeof proto_cmds[0])

const char *bf_cmd_name(bf_cmd cmd)
{
	return (size_t)cmd < NCMDS ? proto_cmds[cmd].name : "unknown";
}

int bf_cmd_parse(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(proto_cmds[i].name, name) == 0)
			return (int)i;
	return -1;
}

static const char *json_type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number with a fraction";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		break;
	}
	return "null";
}

/* Text from the wire, made fit to quote inside a one-line message: control
 * characters become '?', and anything long is cut on a character boundary. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (; s[n] && n + 4 < len; n++)
		buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
	if (s[n]) {
		/* Control characters are ASCII: buf and s agree on where
		 * characters start. */
		n = bf_utf8_cut(s, n);
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

static int fail(const char **code, const char *what, char *err, size_t errlen, const char *fmt, ...)
	BF_PRINTF(5, 6);

static int fail(const char **code, const char *what, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	*code = what;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* jansson's parse errors quote the offending token, raw. (With
	 * errlen 0, vsnprintf wrote nothing, not even the terminating NUL.) */
	for (char *p = err; errlen > 0 && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -1;
}

static int decode_job(json_t *job, const char *cmd, bf_request *req, const char **code, char *err,
		      size_t errlen)
{
	if (!json_is_string(job))
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"job\" must be a string (command %s), got %s", cmd,
			    json_type_name(job));
	const char *name = json_string_value(job);
	size_t len = json_string_length(job);

	if (len == 0)
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"job\" must not be empty (command %s)", cmd);
	if (len > BF_PROTO_MAX_JOB)
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"job\" is longer than %d bytes (command %s)", BF_PROTO_MAX_JOB, cmd);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "\"job\" contains a control character at byte %zu (command %s)",
				    i, cmd);
	if (!(req->job = strdup(name)))
		return fail(code, BF_ERR_INTERNAL, err, errlen, "out of memory");
	return 0;
}

static int decode_settings(json_t *settings, bf_request *req, const char **code, char *err,
			   size_t errlen)
{
	char shown[72], reason[256];

	if (!json_is_object(settings) || json_object_size(settings) == 0)
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"settings\" must be a non-empty object (command set), got %s",
			    json_is_object(settings) ? "an empty object"
						     : json_type_name(settings));
	for (void *it = json_object_iter(settings); it; it = json_object_iter_next(settings, it)) {
		const char *key = json_object_iter_key(it);
		json_t *value = json_object_iter_value(it);
		const bf_knob *knob = bf_knob_find(key);

		if (!knob) {
			char names[256];
			size_t used = 0;

			names[0] = '\0';
			for (const bf_knob *k = bf_knobs; k->name && used < sizeof names; k++)
				used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
							 k == bf_knobs ? "" : ", ", k->name);
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "unknown setting \"%s\" in \"settings\" (known: %s)",
				    printable(key, shown, sizeof shown), names);
		}
		if (!json_is_integer(value))
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "setting \"%s\" must be an integer (%s), got %s", knob->name,
				    knob->unit, json_type_name(value));
		if (bf_knob_check(knob, (long long)json_integer_value(value), reason,
				  sizeof reason) != 0)
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen, "%s", reason);
	}
	req->settings = json_incref(settings);
	return 0;
}

static int decode_bool(json_t *value, const char *field, const char *cmd, int *out,
		       const char **code, char *err, size_t errlen)
{
	if (!json_is_boolean(value))
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"%s\" must be true or false (command %s), got %s", field, cmd,
			    json_type_name(value));
	*out = json_is_true(value);
	return 0;
}

/* The fields of a request whose version and command are known good. */
static int decode_fields(json_t *root, bf_cmd cmd, bf_request *req, const char **code, char *err,
			 size_t errlen)
{
	const char *name = proto_cmds[cmd].name;
	unsigned present = 0;
	json_t *value;
	char shown[72];

	for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
		const char *key = json_object_iter_key(it);
		unsigned bit = 0;

		for (size_t i = 0; i < NFIELDS; i++)
			if (strcmp(proto_fields[i].name, key) == 0)
				bit = proto_fields[i].bit;
		if (!(bit & (F_V | F_CMD | proto_cmds[cmd].allowed)))
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "unknown field \"%s\" for command %s",
				    printable(key, shown, sizeof shown), name);
		present |= bit;
	}
	unsigned missing = proto_cmds[cmd].required & ~present;

	for (size_t i = 0; i < NFIELDS; i++)
		if (missing & proto_fields[i].bit)
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "command %s needs \"%s\"", name, proto_fields[i].name);

	if ((value = json_object_get(root, "job")) &&
	    decode_job(value, name, req, code, err, errlen) != 0)
		return -1;
	if ((value = json_object_get(root, "all")) &&
	    decode_bool(value, "all", name, &req->all, code, err, errlen) != 0)
		return -1;
	if ((value = json_object_get(root, "now")) &&
	    decode_bool(value, "now", name, &req->now, code, err, errlen) != 0)
		return -1;
	if ((value = json_object_get(root, "settings")) &&
	    decode_settings(value, req, code, err, errlen) != 0)
		return -1;

	if (cmd == BF_CMD_PAUSE || cmd == BF_CMD_RESUME) {
		if (req->job && req->all)
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "command %s takes \"job\" or \"all\", not both", name);
		if (!req->job && !req->all)
			return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
				    "command %s needs \"job\" or \"all\": true", name);
	}
	return 0;
}

/* The line as a JSON object (a new reference), or NULL with the reason. */
static json_t *decode_line(const char *line, size_t len, const char **code, char *err,
			   size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	const char *nul;

	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > BF_PROTO_MAX_REQUEST) {
		fail(code, BF_ERR_TOO_LARGE, err, errlen,
		     "request of %zu bytes is larger than the limit of %d", len,
		     BF_PROTO_MAX_REQUEST);
		return NULL;
	}
	if ((nul = memchr(line, '\0', len))) {
		fail(code, BF_ERR_BAD_REQUEST, err, errlen,
		     "request contains a NUL byte at byte %td", nul - line);
		return NULL;
	}
	if (len == 0 || (len == 1 && line[0] == '\r')) {
		fail(code, BF_ERR_BAD_REQUEST, err, errlen,
		     "empty request: expected a JSON object");
		return NULL;
	}
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root) {
		fail(code, BF_ERR_BAD_REQUEST, err, errlen,
		     "request is not valid JSON: %s (at byte %d)", jerr.text, jerr.position);
		return NULL;
	}
	if (!json_is_object(root)) {
		fail(code, BF_ERR_BAD_REQUEST, err, errlen, "request must be a JSON object, got %s",
		     json_type_name(root));
		json_decref(root);
		return NULL;
	}
	return root;
}

/* "v": present, an integer, and a version this daemon speaks. */
static int decode_version(json_t *root, bf_request *req, const char **code, char *err,
			  size_t errlen)
{
	json_t *v = json_object_get(root, "v");

	if (!v)
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "request has no \"v\" (the protocol version, %d)", BF_PROTO_VERSION);
	if (!json_is_integer(v))
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"v\" must be an integer, got %s", json_type_name(v));
	if (json_integer_value(v) > BF_PROTO_VERSION)
		return fail(code, BF_ERR_UNSUPPORTED_VERSION, err, errlen,
			    "protocol version %" JSON_INTEGER_FORMAT
			    " is newer than this daemon's (%d): upgrade backfilld",
			    json_integer_value(v), BF_PROTO_VERSION);
	if (json_integer_value(v) < 1)
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"v\" must be 1 or more, got %" JSON_INTEGER_FORMAT,
			    json_integer_value(v));
	req->version = (int)json_integer_value(v);
	return 0;
}

/* "cmd": present, a string, and a command this daemon knows. */
static int decode_cmd(json_t *root, bf_request *req, const char **code, char *err, size_t errlen)
{
	json_t *cmd = json_object_get(root, "cmd");
	char shown[72];
	int c;

	if (!cmd)
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen, "request has no \"cmd\"");
	if (!json_is_string(cmd))
		return fail(code, BF_ERR_BAD_REQUEST, err, errlen,
			    "\"cmd\" must be a string, got %s", json_type_name(cmd));
	if ((c = bf_cmd_parse(json_string_value(cmd))) < 0)
		return fail(
			code, BF_ERR_UNKNOWN_COMMAND, err, errlen,
			"unknown command \"%s\" (known: status, pause, resume, cancel, set, plan)",
			printable(json_string_value(cmd), shown, sizeof shown));
	req->cmd = (bf_cmd)c;
	return 0;
}

int bf_request_decode(const char *line, size_t len, bf_request *req, const char **code, char *err,
		      size_t errlen)
{
	json_t *root;

	memset(req, 0, sizeof *req);
	if (!(root = decode_line(line, len, code, err, errlen)))
		return -1;
	/* The version first: a newer client's request may well carry
	 * commands and fields this daemon has never heard of. */
	if (decode_version(root, req, code, err, errlen) != 0 ||
	    decode_cmd(root, req, code, err, errlen) != 0 ||
	    decode_fields(root, req->cmd, req, code, err, errlen) != 0) {
		json_decref(root);
		bf_request_free(req);
		return -1;
	}
	json_decref(root);
	return 0;
}

void bf_request_free(bf_request *req)
{
	free(req->job);
	json_decref(req->settings);
	memset(req, 0, sizeof *req);
}

/* root as one compact line with its "\n"; takes over root. */
static char *dump_line(json_t *root)
{
	char *text, *line;
	size_t len;

	if (!root)
		return NULL;
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return NULL;
	len = strlen(text);
	line = realloc(text, len + 2);
	if (!line) {
		free(text);
		return NULL;
	}
	memcpy(line + len, "\n", 2);
	return line;
}

char *bf_request_encode(const bf_request *req)
{
	json_t *root = json_object();

	if (!root)
		return NULL;
	if (json_object_set_new(root, "v",
				json_integer(req->version ? req->version : BF_PROTO_VERSION)) ||
	    json_object_set_new(root, "cmd", json_string(bf_cmd_name(req->cmd))) ||
	    (req->job && json_object_set_new(root, "job", json_string(req->job))) ||
	    (req->all && json_object_set_new(root, "all", json_true())) ||
	    (req->now && json_object_set_new(root, "now", json_true())) ||
	    (req->settings && json_object_set(root, "settings", req->settings))) {
		json_decref(root);
		return NULL;
	}
	return dump_line(root);
}

char *bf_response_ok(json_t *result)
{
	json_t *root = json_object();

	if (!result)
		result = json_object();
	if (!root || !result || json_object_set_new(root, "v", json_integer(BF_PROTO_VERSION)) ||
	    json_object_set_new(root, "ok", json_true())) {
		json_decref(result);
		json_decref(root);
		return NULL;
	}
	if (json_object_set_new(root, "result", result)) {
		json_decref(root);
		return NULL;
	}
	return dump_line(root);
}

char *bf_response_error(const char *code, const char *fmt, ...)
{
	json_t *root = json_object(), *error = json_object();
	va_list ap;
	char *msg = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		msg = NULL;
	else
		bf_utf8_one_line(msg);
	if (!root || !error || !msg || json_object_set_new(error, "code", json_string(code)) ||
	    json_object_set_new(error, "message", json_string(msg)) ||
	    json_object_set_new(root, "v", json_integer(BF_PROTO_VERSION)) ||
	    json_object_set_new(root, "ok", json_false())) {
		json_decref(error);
		json_decref(root);
		free(msg);
		return NULL;
	}
	free(msg);
	if (json_object_set_new(root, "error", error)) {
		json_decref(root);
		return NULL;
	}
	return dump_line(root);
}

static int bad_response(char *msg, size_t msglen, json_t *root, const char *fmt, ...)
	BF_PRINTF(4, 5);

static int bad_response(char *msg, size_t msglen, json_t *root, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
	json_decref(root);
	return -1;
}

int bf_response_decode(const char *line, size_t len, json_t **result, char *code, size_t codelen,
		       char *msg, size_t msglen)
{
	json_error_t jerr;
	json_t *root, *v, *ok, *error, *ecode, *emsg;

	*result = NULL;
	if (codelen)
		code[0] = '\0';
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > BF_PROTO_MAX_RESPONSE)
		return bad_response(msg, msglen, NULL, "response of %zu bytes is over the limit",
				    len);
	if (memchr(line, '\0', len))
		return bad_response(msg, msglen, NULL, "response contains a NUL byte");
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root)
		return bad_response(msg, msglen, NULL,
				    "response is not valid JSON: %s (at byte %d)", jerr.text,
				    jerr.position);
	if (!json_is_object(root))
		return bad_response(msg, msglen, root, "response must be a JSON object, got %s",
				    json_type_name(root));
	v = json_object_get(root, "v");
	if (!json_is_integer(v))
		return bad_response(msg, msglen, root, "response has no integer \"v\"");
	if (json_integer_value(v) != BF_PROTO_VERSION)
		return bad_response(msg, msglen, root,
				    "response speaks protocol version %" JSON_INTEGER_FORMAT
				    ", this program only %d",
				    json_integer_value(v), BF_PROTO_VERSION);
	ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok))
		return bad_response(msg, msglen, root, "response has no boolean \"ok\"");
	if (json_is_true(ok)) {
		if (!(*result = json_object_get(root, "result")))
			return bad_response(msg, msglen, root, "response has no \"result\"");
		json_incref(*result);
		json_decref(root);
		return 1;
	}
	error = json_object_get(root, "error");
	ecode = json_object_get(error, "code");
	emsg = json_object_get(error, "message");
	if (!json_is_object(error) || !json_is_string(ecode) || !json_is_string(emsg))
		return bad_response(msg, msglen, root,
				    "error response without \"error\": {\"code\", \"message\"}");
	snprintf(code, codelen, "%s", json_string_value(ecode));
	snprintf(msg, msglen, "%s", json_string_value(emsg));
	json_decref(root);
	return 0;
}
