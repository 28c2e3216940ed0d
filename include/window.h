/* window.h -- allowed time windows ("22:00-06:00"), in the daemon's local time.
 *
 * A window may wrap midnight; several windows are allowed at once. With no
 * window at all, every time is allowed. Pure code: callers pass the minute
 * of the day, so tests control the clock.
 */
#ifndef BF_WINDOW_H
#define BF_WINDOW_H

#include <stddef.h>

#define BF_WINDOWS_MAX 16

typedef struct bf_windows {
	struct {
		int start, end; /* minutes since midnight; end == start: the whole day */
	} w[BF_WINDOWS_MAX];
	int n;
	char text[BF_WINDOWS_MAX * 12]; /* "22:00-06:00,12:00-13:00" as configured */
} bf_windows;

/* Parses one "HH:MM-HH:MM". Returns 0, or -1 with a reason in err. */
int bf_window_parse_one(const char *text, int *start, int *end, char *err, size_t errlen);

/* Parses a comma-separated list ("" = no windows). -1 with a reason in err. */
int bf_windows_parse(bf_windows *ws, const char *list, char *err, size_t errlen);

/* 1 when minute (0..1439) of the day is inside a window (or none is set). */
int bf_windows_allow(const bf_windows *ws, int minute);

/* Minutes from minute until the next window opens (0 when allowed now). */
int bf_windows_wait_minutes(const bf_windows *ws, int minute);

#endif
