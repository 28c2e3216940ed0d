/* settings.c -- the run-time knobs of a job and their bounds. */
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bounds match config.c's for the same keys: a knob set on a job can never
 * be something the configuration file would refuse. */
const bf_knob bf_knobs[] = {
	{"batch_size", 1, 10000000, "rows",
	 "batch size to continue from; the controller adapts it within the bounds"},
	{"batch_size_min", 1, 10000000, "rows", "smallest batch the controller may choose"},
	{"batch_size_max", 1, 10000000, "rows", "largest batch the controller may choose"},
	{"batch_target_ms", 1, 3600000, "ms", "batch duration the controller aims for"},
	{"max_rows_per_s", 0, 1000000000, "rows/s",
	 "rows scanned per second at most for this job; 0: no limit"},
	{"replay_lag_high_bytes", 0, 1LL << 40, "bytes",
	 "a standby's replay lag that holds the job; 0: off"},
	{"replay_lag_low_bytes", 0, 1LL << 40, "bytes", "the replay lag below which it resumes"},
	{"replay_lag_high_ms", 0, 86400000, "ms", "a standby's replay_lag that holds the job; 0: off"},
	{"replay_lag_low_ms", 0, 86400000, "ms", "the replay_lag below which it resumes"},
	{"slot_lag_high_bytes", 0, 1LL << 40, "bytes",
	 "a logical slot's lag that holds the job; 0: off"},
	{"slot_lag_low_bytes", 0, 1LL << 40, "bytes", "the slot lag below which it resumes"},
	{"lock_wait_max_ms", 1, 3600000, "ms",
	 "a session blocked this long by a batch gets the batch cancelled"},
	{"lock_timeout_ms", 1, 3600000, "ms", "how long a batch waits for a lock before retrying"},
	{"statement_timeout_ms", 1, 86400000, "ms", "how long one batch statement may run"},
	{"wait_for_replay", 0, 1, "0/1",
	 "1: after each batch, wait until the standbys replayed it"},
	{"replay_wait_timeout_ms", 1, 3600000, "ms", "how long that wait may last"},
	{NULL, 0, 0, NULL, NULL},
};

_Static_assert(sizeof(bf_knobs) / sizeof(bf_knobs[0]) == BF_KNOB_COUNT + 1,
	       "bf_knobs[] and bf_knob_id list the same knobs");

const bf_knob *bf_knob_find(const char *name)
{
	for (const bf_knob *k = bf_knobs; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static void knob_names(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (const bf_knob *k = bf_knobs; k->name && used < len; k++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", k == bf_knobs ? "" : ", ",
					 k->name);
}

int bf_knob_check(const bf_knob *knob, long long value, char *err, size_t errlen)
{
	if (value >= knob->min && value <= knob->max)
		return 0;
	snprintf(err, errlen, "%s must be between %lld and %lld %s, got %lld", knob->name,
		 knob->min, knob->max, knob->unit, value);
	return -1;
}

int bf_knob_parse_assignment(const char *text, const bf_knob **knob, long long *value, char *err,
			     size_t errlen)
{
	const char *eq = strchr(text, '=');
	char name[64], names[640];
	char *end;

	if (!eq || eq == text) {
		snprintf(err, errlen, "expected KEY=VALUE, got \"%s\"", text);
		return -1;
	}
	if ((size_t)(eq - text) >= sizeof(name)) {
		snprintf(err, errlen, "unknown setting \"%.*s...\"", 32, text);
		return -1;
	}
	memcpy(name, text, (size_t)(eq - text));
	name[eq - text] = '\0';
	if (!(*knob = bf_knob_find(name))) {
		knob_names(names, sizeof(names));
		snprintf(err, errlen, "unknown setting \"%s\" (known: %s)", name, names);
		return -1;
	}
	const char *v = eq + 1;

	/* A 0/1 knob reads as a switch: the words are the ones PostgreSQL
	 * takes for a boolean setting. Any other word is refused below. */
	if ((*knob)->min == 0 && (*knob)->max == 1) {
		if (strcasecmp(v, "true") == 0 || strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0) {
			*value = 1;
			return 0;
		}
		if (strcasecmp(v, "false") == 0 || strcasecmp(v, "off") == 0 || strcmp(v, "0") == 0) {
			*value = 0;
			return 0;
		}
		snprintf(err, errlen, "%s is a switch: it takes true or false (also on/off, 1/0), got "
			 "\"%s\"", name, v);
		return -1;
	}
	if (strcmp(v, "off") == 0 && (*knob)->min == 0) {
		*value = 0;
		return 0;
	}
	if (strcmp((*knob)->unit, "bytes") == 0) {
		int64_t bytes;

		if (bf_parse_bytes(v, &bytes) != 0) {
			snprintf(err, errlen,
				 "%s must be a byte count such as 1048576, 512kB, 16MB or 1GB, got "
				 "\"%s\"",
				 name, v);
			return -1;
		}
		*value = bytes;
		return bf_knob_check(*knob, *value, err, errlen);
	}
	errno = 0;
	*value = strtoll(v, &end, 10);
	if (!isdigit((unsigned char)v[*v == '-' || *v == '+']) || *end || errno == ERANGE) {
		snprintf(err, errlen, "%s must be an integer (%s), got \"%s\"", name, (*knob)->unit,
			 v);
		return -1;
	}
	return bf_knob_check(*knob, *value, err, errlen);
}

int bf_parse_bytes(const char *text, int64_t *bytes)
{
	static const struct {
		const char *unit;
		long long factor;
	} units[] = {
		{"", 1}, {"B", 1}, {"kB", 1LL << 10}, {"MB", 1LL << 20}, {"GB", 1LL << 30}, {"TB", 1LL << 40},
	};
	char *end;

	if (!isdigit((unsigned char)*text))
		return -1;
	errno = 0;
	long long v = strtoll(text, &end, 10);

	if (errno == ERANGE)
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].unit) != 0)
			continue;
		if (v > INT64_MAX / units[i].factor)
			return -1;
		*bytes = v * units[i].factor;
		return 0;
	}
	return -1;
}
