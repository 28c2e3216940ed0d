/* test_window.c -- window.c: throttle.windows, parsed and judged by the minute. */
#include <stdio.h>
#include <string.h>

#include "window.h"
#include "unit.h"

static void test_window_parse_one(void)
{
	int start = -1, end = -1;
	char err[256];

	UNIT_CHECK_INT(bf_window_parse_one("22:00-06:00", &start, &end, err, sizeof err), 0);
	UNIT_CHECK_INT(start, 22 * 60);
	UNIT_CHECK_INT(end, 6 * 60);
	UNIT_CHECK_INT(bf_window_parse_one("09:00-17:30", &start, &end, err, sizeof err), 0);
	UNIT_CHECK_INT(start, 9 * 60);
	UNIT_CHECK_INT(end, 17 * 60 + 30);
	UNIT_CHECK_INT(bf_window_parse_one("00:00-23:59", &start, &end, err, sizeof err), 0);
	UNIT_CHECK_INT(start, 0);
	UNIT_CHECK_INT(end, 1439);

	static const char *const bad[] = {
		"25:00-01:00",
		"9-17",
		"",
		"10:00-10:61",
		"junk",
		"10:00",
		"10:00-",
		"-10:00",
		"99:00-01:00",
		"10:00-11:00x",
		"10:00 11:00",
		"10:00-11:00-",
		"aa:bb-cc:dd",
		"-1:00-02:00",
		"10:-5-11:00",
		"10:00-11:00,12:00-13:00",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		int rc = bf_window_parse_one(bad[i], &start, &end, err, sizeof err);

		UNIT_CHECK_INT(rc, -1);
		UNIT_CHECK(err[0] != '\0');
		if (rc != -1)
			fprintf(stderr, "  \"%s\" was accepted (%d-%d)\n", bad[i], start, end);
	}
}

static void test_windows_parse_list(void)
{
	bf_windows ws;
	char err[256];

	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,13:00-14:00", err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, 2);
	UNIT_CHECK_INT(ws.w[0].start, 60);
	UNIT_CHECK_INT(ws.w[0].end, 120);
	UNIT_CHECK_INT(ws.w[1].start, 13 * 60);
	UNIT_CHECK_INT(ws.w[1].end, 14 * 60);
	UNIT_CHECK_STR(ws.text, "01:00-02:00,13:00-14:00");

	UNIT_CHECK_INT(bf_windows_parse(&ws, "", err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, 0);

	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,25:00-26:00", err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');
	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,,13:00-14:00", err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');
	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, ",01:00-02:00", err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');

	/* As many windows as fit, and one more is refused (not overflowed). */
	char list[BF_WINDOWS_MAX * 12 + 16];
	size_t off = 0;

	list[0] = '\0';
	for (int i = 0; i < BF_WINDOWS_MAX; i++)
		off += (size_t)snprintf(list + off, sizeof list - off, "%s%02d:00-%02d:30",
					i ? "," : "", i, i);
	UNIT_CHECK_INT(bf_windows_parse(&ws, list, err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, BF_WINDOWS_MAX);
	UNIT_CHECK_STR(ws.text, list);
	snprintf(list + off, sizeof list - off, ",23:00-23:30");
	err[0] = '\0';
	UNIT_CHECK_INT(bf_windows_parse(&ws, list, err, sizeof err), -1);
	UNIT_CHECK(err[0] != '\0');
}

static void test_windows_allow_edges(void)
{
	bf_windows ws;
	char err[256];

	UNIT_CHECK_INT(bf_windows_parse(&ws, "22:00-06:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 22 * 60), 1); /* start inclusive */
	UNIT_CHECK_INT(bf_windows_allow(&ws, 22 * 60 - 1), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 1439), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 0), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 6 * 60 - 1), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 6 * 60), 0); /* end exclusive */
	UNIT_CHECK_INT(bf_windows_allow(&ws, 12 * 60), 0);

	UNIT_CHECK_INT(bf_windows_parse(&ws, "09:00-17:30", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 9 * 60 - 1), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 9 * 60), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 17 * 60 + 29), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 17 * 60 + 30), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 0), 0);

	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,13:00-14:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 60), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 120), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 13 * 60 + 30), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 12 * 60), 0);
}

static void test_windows_wait_minutes(void)
{
	bf_windows ws;
	char err[256];

	UNIT_CHECK_INT(bf_windows_parse(&ws, "22:00-06:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 7 * 60), 900);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 6 * 60), 960);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 22 * 60 - 1), 1);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 23 * 60), 0);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 3 * 60), 0);

	UNIT_CHECK_INT(bf_windows_parse(&ws, "01:00-02:00,13:00-14:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 0), 60);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 2 * 60), 660);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 14 * 60), 660); /* tomorrow 01:00 */
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 1439), 61);
	UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, 13 * 60 + 59), 0);
}

static void test_windows_none_and_whole_day(void)
{
	bf_windows ws;
	char err[256];

	memset(&ws, 0, sizeof ws);
	UNIT_CHECK_INT(bf_windows_parse(&ws, "", err, sizeof err), 0);
	for (int m = 0; m < 1440; m += 7) {
		UNIT_CHECK_INT(bf_windows_allow(&ws, m), 1);
		UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, m), 0);
	}
	UNIT_CHECK_INT(bf_windows_parse(&ws, "00:00-00:00", err, sizeof err), 0);
	UNIT_CHECK_INT(ws.n, 1);
	for (int m = 0; m < 1440; m += 7) {
		UNIT_CHECK_INT(bf_windows_allow(&ws, m), 1);
		UNIT_CHECK_INT(bf_windows_wait_minutes(&ws, m), 0);
	}
	UNIT_CHECK_INT(bf_windows_parse(&ws, "12:00-12:00", err, sizeof err), 0);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 11 * 60), 1);
	UNIT_CHECK_INT(bf_windows_allow(&ws, 1439), 1);
}

int main(void)
{
	UNIT_RUN(test_window_parse_one);
	UNIT_RUN(test_windows_parse_list);
	UNIT_RUN(test_windows_allow_edges);
	UNIT_RUN(test_windows_wait_minutes);
	UNIT_RUN(test_windows_none_and_whole_day);
	return UNIT_DONE();
}
