/* window.c -- allowed time windows, "HH:MM-HH:MM", possibly wrapping midnight. */
#include "window.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define DAY_MINUTES (24 * 60)

/* "HH:MM" at *p (exactly two digits each): minutes since midnight, or -1. */
static int parse_clock(const char **p)
{
	const char *s = *p;

	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) || s[2] != ':' ||
	    !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[3] - '0') * 10 + (s[4] - '0');

	/* 24:00 is accepted as the end of the day. */
	if (m > 59 || h > 24 || (h == 24 && m != 0))
		return -1;
	*p = s + 5;
	return h * 60 + m;
}

int bf_window_parse_one(const char *text, int *start, int *end, char *err, size_t errlen)
{
	const char *p = text;

	while (*p == ' ')
		p++;
	*start = parse_clock(&p);
	if (*start >= 0 && *start < DAY_MINUTES) {
		while (*p == ' ')
			p++;
		if (*p == '-') {
			p++;
			while (*p == ' ')
				p++;
			*end = parse_clock(&p);
			while (*p == ' ')
				p++;
			if (*end >= 0 && *p == '\0') {
				*start %= DAY_MINUTES;
				*end %= DAY_MINUTES;
				return 0;
			}
		}
	}
	snprintf(err, errlen,
		 "time window \"%s\" is not HH:MM-HH:MM (24-hour local time, e.g. 22:00-06:00)",
		 text);
	return -1;
}

int bf_windows_parse(bf_windows *ws, const char *list, char *err, size_t errlen)
{
	char one[64];

	memset(ws, 0, sizeof(*ws));
	if (!list || !*list)
		return 0;
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");

		if (ws->n == BF_WINDOWS_MAX) {
			snprintf(err, errlen, "too many time windows (at most %d)", BF_WINDOWS_MAX);
			return -1;
		}
		if (n >= sizeof(one)) {
			snprintf(err, errlen, "time window \"%.20s...\" is not HH:MM-HH:MM", p);
			return -1;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (bf_window_parse_one(one, &ws->w[ws->n].start, &ws->w[ws->n].end, err, errlen) !=
		    0)
			return -1;
		/* As status shows it: "22:00-06:00,12:00-13:00", at most 16 x 11
		 * characters and the commas. */
		size_t used = strlen(ws->text);

		snprintf(ws->text + used, sizeof(ws->text) - used, "%s%02d:%02d-%02d:%02d",
			 ws->n ? "," : "", ws->w[ws->n].start / 60, ws->w[ws->n].start % 60,
			 ws->w[ws->n].end / 60, ws->w[ws->n].end % 60);
		ws->n++;
		p += n;
		if (*p == ',' && !*++p) {
			snprintf(err, errlen, "time window list \"%s\" ends with a comma", list);
			return -1;
		}
	}
	return 0;
}

static int inside(int start, int end, int minute)
{
	if (start == end)
		return 1; /* the whole day */
	if (start < end)
		return minute >= start && minute < end;
	return minute >= start || minute < end; /* wraps midnight */
}

int bf_windows_allow(const bf_windows *ws, int minute)
{
	if (ws->n == 0)
		return 1;
	minute = ((minute % DAY_MINUTES) + DAY_MINUTES) % DAY_MINUTES;
	for (int i = 0; i < ws->n; i++)
		if (inside(ws->w[i].start, ws->w[i].end, minute))
			return 1;
	return 0;
}

int bf_windows_wait_minutes(const bf_windows *ws, int minute)
{
	int best = -1;

	if (bf_windows_allow(ws, minute))
		return 0;
	minute = ((minute % DAY_MINUTES) + DAY_MINUTES) % DAY_MINUTES;
	for (int i = 0; i < ws->n; i++) {
		int wait = (ws->w[i].start - minute + DAY_MINUTES) % DAY_MINUTES;

		if (best < 0 || wait < best)
			best = wait;
	}
	return best;
}
