/* settings.c -- the run-time knobs of a job and their bounds. */
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	{NULL, 0, 0, NULL, NULL},
};

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
	char name[64], names[256];
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

	if (strcmp(v, "off") == 0 && (*knob)->min == 0) {
		*value = 0;
		return 0;
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
