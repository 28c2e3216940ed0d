/* config.c -- backfilld.yaml: one table of keys drives defaults, parsing and
 * validation; libyaml's event parser gives every error its line and column.
 */
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libpq-fe.h>
#include <yaml.h>

#include "config_keys.h"
#include "settings.h"
#include "window.h"


#define BF_NKEYS bf_nkeys

/* Pairs checked after loading: the first key must not exceed the second
 * (unless the second is 0 and that turns a signal off). */
static const struct {
	size_t lo, hi;
	bool zero_is_off;
} bf_orders[] = {
	{offsetof(bf_config, batch_size_min), offsetof(bf_config, batch_size), false},
	{offsetof(bf_config, batch_size), offsetof(bf_config, batch_size_max), false},
	{offsetof(bf_config, retry_initial_ms), offsetof(bf_config, retry_max_ms), false},
	/* Low marks: a job resumes at or below them. */
	{offsetof(bf_config, throttle_replay_lag_low_bytes),
	 offsetof(bf_config, throttle_replay_lag_high_bytes), true},
	{offsetof(bf_config, throttle_replay_lag_low_ms),
	 offsetof(bf_config, throttle_replay_lag_high_ms), true},
	{offsetof(bf_config, throttle_slot_lag_low_bytes),
	 offsetof(bf_config, throttle_slot_lag_high_bytes), true},
};

static const char *const bf_log_level_names[] = {
	[BF_LOG_DEBUG] = "debug",     [BF_LOG_INFO] = "info",	[BF_LOG_NOTICE] = "notice",
	[BF_LOG_WARNING] = "warning", [BF_LOG_ERROR] = "error",
};

#define BF_NLEVELS (sizeof bf_log_level_names / sizeof bf_log_level_names[0])

/* Where a key or section was first seen, for duplicates and cross checks. */
struct bf_seen {
	bool set;
	yaml_mark_t mark;
};

struct bf_parse {
	yaml_parser_t parser;
	yaml_event_t event; /* the current event, deleted by bf_next */
	bf_config *cfg;
	const char *name; /* file name for messages */
	const char *buf;
	size_t len;
	char *err;
	size_t errlen;
	struct bf_seen keys[BF_CONFIG_MAX_KEYS];
	struct bf_seen sections[BF_CONFIG_MAX_KEYS]; /* indexed by a section's first key */
};

int bf_log_level_parse(const char *name)
{
	for (size_t i = 0; i < BF_NLEVELS; i++)
		if (strcasecmp(name, bf_log_level_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *bf_log_level_name(bf_log_level level)
{
	return (size_t)level < BF_NLEVELS ? bf_log_level_names[level] : "unknown";
}

static void *bf_field(bf_config *cfg, const struct bf_key *key)
{
	return (char *)cfg + key->offset;
}

void bf_config_defaults(bf_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < BF_NKEYS; i++) {
		const struct bf_key *key = &bf_keys[i];
		void *field = bf_field(cfg, key);

		switch (key->type) {
		case BF_KEY_INT:
			*(int *)field = (int)key->def;
			break;
		case BF_KEY_LOG_LEVEL:
			*(bf_log_level *)field = (bf_log_level)key->def;
			break;
		case BF_KEY_MODE:
			*(int *)field = (int)key->def;
			break;
		case BF_KEY_BYTES:
			*(int64_t *)field = key->def;
			break;
		case BF_KEY_BOOL:
		case BF_KEY_CHOICE:
			*(int *)field = (int)key->def;
			break;
		case BF_KEY_STRING:
		case BF_KEY_NAMES:
		case BF_KEY_LIST:
			/* Points at the literal so that defaults cannot fail;
			 * bf_config_free knows not to free it. */
			*(char **)field = (char *)key->def_str;
			break;
		}
	}
}

void bf_config_free(bf_config *cfg)
{
	for (size_t i = 0; i < BF_NKEYS; i++) {
		char **field = bf_field(cfg, &bf_keys[i]);

		if ((bf_keys[i].type == BF_KEY_STRING || bf_keys[i].type == BF_KEY_NAMES ||
		     bf_keys[i].type == BF_KEY_LIST) &&
		    *field != bf_keys[i].def_str)
			free(*field);
	}
	bf_config_defaults(cfg);
}

static int bf_section_find(const char *name)
{
	for (size_t i = 0; i < BF_NKEYS; i++)
		if (strcmp(bf_keys[i].section, name) == 0)
			return (int)i;
	return -1;
}

static int bf_key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < BF_NKEYS; i++)
		if (strcmp(bf_keys[i].section, section) == 0 && strcmp(bf_keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* A key left at the top level (lost its indentation) reads as a section. */
static const struct bf_key *bf_key_named(const char *name)
{
	for (size_t i = 0; i < BF_NKEYS; i++)
		if (strcmp(bf_keys[i].name, name) == 0)
			return &bf_keys[i];
	return NULL;
}

static size_t bf_key_at(size_t offset)
{
	size_t i = 0;

	while (bf_keys[i].offset != offset)
		i++;
	return i;
}

/* Start of 0-based line `line` in the buffer, or its end. */
static const char *bf_line_start(const struct bf_parse *p, size_t line)
{
	const char *s = p->buf, *end = p->buf + p->len;

	while (line > 0 && s < end)
		if (*s++ == '\n')
			line--;
	return s;
}

static int bf_fail(struct bf_parse *p, const yaml_mark_t *at, const char *fmt, ...) BF_PRINTF(3, 4);

/* Formats "NAME:LINE:COL: message" (1-based, as editors count) into p->err,
 * flattened to one line since values may hold newlines. Returns -1. */
static int bf_fail(struct bf_parse *p, const yaml_mark_t *at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (at)
		n = snprintf(p->err, p->errlen, "%s:%zu:%zu: ", p->name, at->line + 1,
			     at->column + 1);
	else
		n = snprintf(p->err, p->errlen, "%s: ", p->name);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	for (char *c = p->err; p->errlen > 0 && *c; c++)
		if (iscntrl((unsigned char)*c))
			*c = '?';
	return -1;
}

static int bf_syntax_error(struct bf_parse *p)
{
	const yaml_parser_t *y = &p->parser;
	yaml_mark_t at = y->problem_mark;
	const char *hint = "";

	if (y->error == YAML_MEMORY_ERROR || !y->problem)
		return bf_fail(p, NULL, "out of memory");
	if (y->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark; count
		 * characters (UTF-8 lead bytes) back to the line start. */
		const char *bad = p->buf + y->problem_offset, *s = p->buf;

		at.line = at.column = 0;
		for (; s < bad; s++) {
			if (*s == '\n')
				at.line++, at.column = 0;
			else if (((unsigned char)*s & 0xc0) != 0x80)
				at.column++;
		}
	} else if (!strstr(y->problem, "tab")) {
		/* libyaml's words for some tabs ("cannot start any token")
		 * do not say what to fix. */
		for (const char *s = bf_line_start(p, at.line);
		     s < p->buf + p->len && (*s == ' ' || *s == '\t'); s++)
			if (*s == '\t')
				hint = "; YAML does not allow tabs for indentation";
	}
	if (y->context)
		return bf_fail(p, &at, "%s (%s at %zu:%zu)%s", y->problem, y->context,
			       y->context_mark.line + 1, y->context_mark.column + 1, hint);
	return bf_fail(p, &at, "%s%s", y->problem, hint);
}

static int bf_next(struct bf_parse *p)
{
	yaml_event_delete(&p->event);
	if (!yaml_parser_parse(&p->parser, &p->event))
		return bf_syntax_error(p);
	if (p->event.type == YAML_ALIAS_EVENT)
		return bf_fail(p, &p->event.start_mark, "aliases (*%s) are not supported",
			       (const char *)p->event.data.alias.anchor);
	return 0;
}

static const char *bf_scalar(const struct bf_parse *p)
{
	return (const char *)p->event.data.scalar.value;
}

/* An unquoted empty value, ~ or null. */
static bool bf_is_null(const struct bf_parse *p)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	if (p->event.type != YAML_SCALAR_EVENT ||
	    p->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
		if (strcmp(bf_scalar(p), nulls[i]) == 0)
			return true;
	return false;
}

/* The current event in words, for "expected X, got Y". */
static const char *bf_describe(const struct bf_parse *p, char *buf, size_t size)
{
	switch (p->event.type) {
	case YAML_SCALAR_EVENT:
		snprintf(buf, size, "\"%s\"", bf_scalar(p));
		return buf;
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_SEQUENCE_START_EVENT:
		return "a sequence";
	default:
		return "nothing";
	}
}

/* A user or group name as useradd accepts it, or a numeric id. */
static bool bf_name_valid(const char *s)
{
	if (!*s || strlen(s) > 64 || *s == '-')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.' && *s != '$')
			return false;
	return true;
}

/* Appends one name of the current scalar to a BF_KEY_NAMES field. */
static int bf_names_append(struct bf_parse *p, const struct bf_key *key, const char *text)
{
	const yaml_mark_t *at = &p->event.start_mark;
	char **field = bf_field(p->cfg, key);
	char *joined;

	char why[256];

	if (key->type == BF_KEY_NAMES && !bf_name_valid(text))
		return bf_fail(p, at,
			       "\"%s.%s\": \"%s\" is not a valid user or group name or numeric id",
			       key->section, key->name, text);
	if (key->type == BF_KEY_LIST && key->check(text, why, sizeof why) != 0)
		return bf_fail(p, at, "\"%s.%s\": %s", key->section, key->name, why);
	if (asprintf(&joined, "%s%s%s", *field, **field ? "," : "", text) < 0)
		return bf_fail(p, at, "out of memory");
	if (*field != key->def_str)
		free(*field);
	*field = joined;
	return 0;
}

/* The setters of bf_key_set, one per key type: text is the current
 * scalar at p, field the key's place in the configuration. Each returns 0,
 * or bf_fail's -1 with the field unchanged. */

static int bf_set_int(struct bf_parse *p, const struct bf_key *key, const char *text, int *field)
{
	const yaml_mark_t *at = &p->event.start_mark;
	char *end;
	long long n;

	if (!*text)
		return bf_fail(p, at, "\"%s.%s\" must be an integer, got an empty value",
			       key->section, key->name);
	errno = 0;
	n = strtoll(text, &end, 10);
	/* strtoll alone would skip leading blanks and stop at garbage. */
	if (!isdigit((unsigned char)text[*text == '-' || *text == '+']) || *end)
		return bf_fail(p, at, "\"%s.%s\" must be an integer, got \"%s\"", key->section,
			       key->name, text);
	if (errno == ERANGE || n < key->min || n > key->max)
		return bf_fail(p, at, "\"%s.%s\" must be between %lld and %lld, got %s",
			       key->section, key->name, key->min, key->max, text);
	*field = (int)n;
	return 0;
}

static int bf_set_mode(struct bf_parse *p, const struct bf_key *key, const char *text, int *field)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(text, &end, 8);
	if (!*text || !isdigit((unsigned char)*text) || *end || errno == ERANGE || n < 0 ||
	    n > key->max)
		return bf_fail(p, &p->event.start_mark,
			       "\"%s.%s\" must be an octal file mode such as \"0660\", got \"%s\"",
			       key->section, key->name, text);
	*field = (int)n;
	return 0;
}

static int bf_set_bytes(struct bf_parse *p, const struct bf_key *key, const char *text,
			int64_t *field)
{
	const yaml_mark_t *at = &p->event.start_mark;
	int64_t bytes;

	if (bf_parse_bytes(text, &bytes) != 0)
		return bf_fail(p, at,
			       "\"%s.%s\" must be a byte count such as 1048576, \"512kB\", "
			       "\"16MB\" or \"1GB\", got \"%s\"",
			       key->section, key->name, text);
	if (bytes < key->min || bytes > key->max)
		return bf_fail(p, at, "\"%s.%s\" must be between %lld and %lld, got %s",
			       key->section, key->name, key->min, key->max, text);
	*field = bytes;
	return 0;
}

static int bf_set_bool(struct bf_parse *p, const struct bf_key *key, const char *text, int *field)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
									       "off"};
	int v = -1;

	for (size_t k = 0; k < 3; k++) {
		if (strcasecmp(text, yes[k]) == 0)
			v = 1;
		if (strcasecmp(text, no[k]) == 0)
			v = 0;
	}
	if (v < 0)
		return bf_fail(p, &p->event.start_mark,
			       "\"%s.%s\" must be true or false, got \"%s\"", key->section,
			       key->name, text);
	*field = v;
	return 0;
}

static int bf_set_choice(struct bf_parse *p, const struct bf_key *key, const char *text, int *field)
{
	char levels[64] = "";

	for (int k = 0; key->choices[k]; k++) {
		if (strcmp(text, key->choices[k]) == 0) {
			*field = k;
			return 0;
		}
		snprintf(levels + strlen(levels), sizeof levels - strlen(levels), "%s%s",
			 k ? ", " : "", key->choices[k]);
	}
	return bf_fail(p, &p->event.start_mark, "\"%s.%s\" must be one of %s, got \"%s\"",
		       key->section, key->name, levels, text);
}

static int bf_set_log_level(struct bf_parse *p, const struct bf_key *key, const char *text,
			    bf_log_level *field)
{
	char levels[64] = "";
	int level;

	if ((level = bf_log_level_parse(text)) < 0) {
		for (size_t i = 0; i < BF_NLEVELS; i++)
			snprintf(levels + strlen(levels), sizeof levels - strlen(levels), "%s%s",
				 i ? ", " : "", bf_log_level_names[i]);
		return bf_fail(p, &p->event.start_mark, "\"%s.%s\" must be one of %s, got \"%s\"",
			       key->section, key->name, levels, text);
	}
	*field = (bf_log_level)level;
	return 0;
}

/* Stores the current scalar event into key's field. */
static int bf_key_set(struct bf_parse *p, const struct bf_key *key)
{
	const char *text = bf_scalar(p);
	void *field = bf_field(p->cfg, key);
	char *copy;

	switch (key->type) {
	case BF_KEY_STRING:
		if (bf_is_null(p))
			break; /* ~ keeps the default */
		if (!(copy = strdup(text)))
			return bf_fail(p, &p->event.start_mark, "out of memory");
		/* Duplicates are refused, so the field still holds the default. */
		*(char **)field = copy;
		break;
	case BF_KEY_INT:
		return bf_set_int(p, key, text, field);
	case BF_KEY_MODE:
		return bf_set_mode(p, key, text, field);
	case BF_KEY_NAMES:
	case BF_KEY_LIST:
		/* A single item; sequences go through bf_parse_names. */
		if (bf_is_null(p))
			break;
		return bf_names_append(p, key, text);
	case BF_KEY_BYTES:
		return bf_set_bytes(p, key, text, field);
	case BF_KEY_BOOL:
		return bf_set_bool(p, key, text, field);
	case BF_KEY_CHOICE:
		return bf_set_choice(p, key, text, field);
	case BF_KEY_LOG_LEVEL:
		return bf_set_log_level(p, key, text, field);
	}
	return 0;
}

/* [a, b] or a block sequence of names. */
static int bf_parse_names(struct bf_parse *p, const struct bf_key *key)
{
	char what[64];

	for (;;) {
		if (bf_next(p) < 0)
			return -1;
		if (p->event.type == YAML_SEQUENCE_END_EVENT)
			return 0;
		if (p->event.type != YAML_SCALAR_EVENT)
			return bf_fail(p, &p->event.start_mark,
				       "\"%s.%s\" must be a list%s, got %s in it", key->section,
				       key->name, key->type == BF_KEY_NAMES ? " of names" : "",
				       bf_describe(p, what, sizeof what));
		if (bf_names_append(p, key, bf_scalar(p)) < 0)
			return -1;
	}
}

static int bf_parse_keys(struct bf_parse *p, const char *section)
{
	char what[64];
	int i;

	for (;;) {
		if (bf_next(p) < 0)
			return -1;
		if (p->event.type == YAML_MAPPING_END_EVENT)
			return 0;
		yaml_mark_t at = p->event.start_mark;

		if (p->event.type != YAML_SCALAR_EVENT)
			return bf_fail(p, &at, "expected a key in section \"%s\", got %s", section,
				       bf_describe(p, what, sizeof what));
		if ((i = bf_key_find(section, bf_scalar(p))) < 0)
			return bf_fail(p, &at, "unknown key \"%s.%s\"", section, bf_scalar(p));
		if (p->keys[i].set)
			return bf_fail(p, &at, "duplicate key \"%s.%s\" (first at line %zu)",
				       section, bf_keys[i].name, p->keys[i].mark.line + 1);
		p->keys[i] = (struct bf_seen){true, at};

		if (bf_next(p) < 0)
			return -1;
		if ((bf_keys[i].type == BF_KEY_NAMES || bf_keys[i].type == BF_KEY_LIST) &&
		    p->event.type == YAML_SEQUENCE_START_EVENT) {
			if (bf_parse_names(p, &bf_keys[i]) < 0)
				return -1;
			continue;
		}
		if (p->event.type != YAML_SCALAR_EVENT)
			return bf_fail(p, &p->event.start_mark,
				       "\"%s.%s\" must be a single value, got %s", section,
				       bf_keys[i].name, bf_describe(p, what, sizeof what));
		if (bf_key_set(p, &bf_keys[i]) < 0)
			return -1;
	}
}

static int bf_parse_sections(struct bf_parse *p)
{
	char what[64];
	int sec;

	for (;;) {
		if (bf_next(p) < 0)
			return -1;
		if (p->event.type == YAML_MAPPING_END_EVENT)
			return 0;
		yaml_mark_t at = p->event.start_mark;

		if (p->event.type != YAML_SCALAR_EVENT)
			return bf_fail(p, &at, "expected a section name, got %s",
				       bf_describe(p, what, sizeof what));
		if ((sec = bf_section_find(bf_scalar(p))) < 0) {
			const struct bf_key *key = bf_key_named(bf_scalar(p));

			if (key)
				return bf_fail(p, &at,
					       "unknown section \"%s\"; did you mean "
					       "\"%s.%s\", indented under \"%s:\"?",
					       key->name, key->section, key->name, key->section);
			return bf_fail(p, &at, "unknown section \"%s\"", bf_scalar(p));
		}
		if (p->sections[sec].set)
			return bf_fail(p, &at, "duplicate section \"%s\" (first at line %zu)",
				       bf_keys[sec].section, p->sections[sec].mark.line + 1);
		p->sections[sec] = (struct bf_seen){true, at};

		if (bf_next(p) < 0)
			return -1;
		/* A section whose keys are all commented out is empty, not wrong. */
		if (bf_is_null(p))
			continue;
		if (p->event.type != YAML_MAPPING_START_EVENT)
			return bf_fail(p, &p->event.start_mark,
				       "section \"%s\" must be a mapping of keys, got %s",
				       bf_keys[sec].section, bf_describe(p, what, sizeof what));
		if (bf_parse_keys(p, bf_keys[sec].section) < 0)
			return -1;
	}
}

static int bf_parse_stream(struct bf_parse *p)
{
	char what[64];

	if (bf_next(p) < 0 || bf_next(p) < 0) /* STREAM-START, then a document? */
		return -1;
	if (p->event.type == YAML_STREAM_END_EVENT)
		return 0; /* an empty file, or only comments: all defaults */
	if (bf_next(p) < 0)
		return -1;
	if (p->event.type == YAML_MAPPING_START_EVENT) {
		if (bf_parse_sections(p) < 0)
			return -1;
	} else if (!bf_is_null(p)) {
		return bf_fail(p, &p->event.start_mark,
			       "expected a mapping of sections (database:, engine:, ...), got %s",
			       bf_describe(p, what, sizeof what));
	}
	if (bf_next(p) < 0 || bf_next(p) < 0) /* DOCUMENT-END, then STREAM-END? */
		return -1;
	if (p->event.type != YAML_STREAM_END_EVENT)
		return bf_fail(p, &p->event.start_mark, "only one YAML document is allowed");
	return 0;
}

/* An integer or byte count key's value. */
static long long bf_number(struct bf_parse *p, size_t key)
{
	if (bf_keys[key].type == BF_KEY_BYTES)
		return *(int64_t *)bf_field(p->cfg, &bf_keys[key]);
	return *(int *)bf_field(p->cfg, &bf_keys[key]);
}

static int bf_check_orders(struct bf_parse *p)
{
	for (size_t i = 0; i < sizeof bf_orders / sizeof bf_orders[0]; i++) {
		size_t lo = bf_key_at(bf_orders[i].lo), hi = bf_key_at(bf_orders[i].hi);
		long long lo_value = bf_number(p, lo), hi_value = bf_number(p, hi);

		if (lo_value <= hi_value || (bf_orders[i].zero_is_off && hi_value == 0))
			continue;
		/* Blame the key the file set last: it broke the pair. The
		 * defaults are consistent, so at least one was set. */
		size_t blame = !p->keys[lo].set || (p->keys[hi].set &&
						    p->keys[hi].mark.index > p->keys[lo].mark.index)
				       ? hi
				       : lo;

		return bf_fail(p, &p->keys[blame].mark,
			       "\"%s.%s\" (%lld) must not be greater than \"%s.%s\" (%lld)",
			       bf_keys[lo].section, bf_keys[lo].name, lo_value, bf_keys[hi].section,
			       bf_keys[hi].name, hi_value);
	}
	return 0;
}

/* Each window was checked as it was read; the list as a whole must fit. */
static int bf_check_windows(struct bf_parse *p)
{
	size_t key = bf_key_at(offsetof(bf_config, throttle_windows));
	bf_windows ws;
	char why[256];

	if (bf_windows_parse(&ws, p->cfg->throttle_windows, why, sizeof why) == 0)
		return 0;
	return bf_fail(p, &p->keys[key].mark, "\"throttle.windows\": %s", why);
}

/* A conninfo libpq cannot parse would fail every connection attempt, and
 * libpq's reason quotes the offending part, which may be a password (a URI's
 * "invalid percent-encoded token: ..." quotes all of it): refused here, and
 * the reason is not copied into the log. */
static int bf_check_conninfo(struct bf_parse *p)
{
	size_t key = bf_key_at(offsetof(bf_config, conninfo));
	char *libpq_error = NULL;
	PQconninfoOption *opts = PQconninfoParse(p->cfg->conninfo, &libpq_error);

	if (opts) {
		PQconninfoFree(opts);
		return 0;
	}
	if (!libpq_error)
		return bf_fail(p, &p->keys[key].mark, "out of memory");
	PQfreemem(libpq_error);
	return bf_fail(p, &p->keys[key].mark,
		       "\"database.conninfo\" is not a valid libpq connection string (libpq's "
		       "reason is not shown, since it may quote a password: try the string with "
		       "psql)");
}

int bf_config_load_buffer(bf_config *cfg, const char *name, const char *buf, size_t len, char *err,
			  size_t errlen)
{
	struct bf_parse p = {
		.cfg = cfg, .name = name, .buf = buf, .len = len, .err = err, .errlen = errlen};
	int rc;

	/* Keys the file leaves out take their default, not an older value. */
	bf_config_free(cfg);
	if (!yaml_parser_initialize(&p.parser))
		return bf_fail(&p, NULL, "out of memory");
	yaml_parser_set_input_string(&p.parser, (const unsigned char *)buf, len);

	rc = bf_parse_stream(&p);
	if (rc == 0)
		rc = bf_check_orders(&p);
	if (rc == 0)
		rc = bf_check_windows(&p);
	if (rc == 0)
		rc = bf_check_conninfo(&p);

	yaml_event_delete(&p.event);
	yaml_parser_delete(&p.parser);
	if (rc < 0)
		bf_config_free(cfg);
	return rc;
}

/* Reads all of path into a malloc'd buffer; NULL with errno set on error. */
static char *bf_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *bigger;
	size_t cap = 0;
	int saved;

	*len = 0;
	if (!f)
		return NULL;
	while (!feof(f)) {
		if (*len == cap) {
			cap = cap ? 2 * cap : 4096;
			if (!(bigger = realloc(buf, cap)))
				goto fail;
			buf = bigger;
		}
		*len += fread(buf + *len, 1, cap - *len, f);
		if (ferror(f))
			goto fail;
	}
	fclose(f);
	return buf;
fail:
	saved = errno;
	free(buf);
	fclose(f);
	errno = saved;
	return NULL;
}

int bf_config_load(bf_config *cfg, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *buf = bf_read_file(path, &len);
	int rc;

	if (!buf) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		bf_config_free(cfg);
		return -1;
	}
	rc = bf_config_load_buffer(cfg, path, buf, len, err, errlen);
	free(buf);
	return rc;
}
