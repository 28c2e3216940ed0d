/* log.c -- leveled logging to stderr, with syslog priority prefixes under journald. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static bf_log_level log_min_level = BF_LOG_INFO;
static int log_to_journal;

/* syslog priorities: debug 7, info 6, notice 5, warning 4, err 3 */
static const int log_priority[] = {7, 6, 5, 4, 3};

/* journald sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
 * our stderr; only when stderr is still that stream do prefixes make sense
 * (a redirect in a wrapper script would otherwise get raw "<6>" noise). */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void bf_log_init(bf_log_level min_level)
{
	log_min_level = min_level;
	log_to_journal = stderr_is_journal();
	/* Line-buffered so that a line from us is never interleaved with a
	 * sanitizer report or split across journald records. */
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void bf_log_set_level(bf_log_level min_level)
{
	log_min_level = min_level;
}

void bf_log(bf_log_level level, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	int n;

	if (level < log_min_level)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* Keep one record one line: a newline inside an error message from
	 * the server (or a job's name) would otherwise start a record without
	 * a priority; other control characters (a terminal's escapes) are
	 * shown as '?'. */
	for (char *p = line; *p; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
		else if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			*p = '?';
	}

	if (log_to_journal) {
		fprintf(stderr, "<%d>%s\n", log_priority[level], line);
		return;
	}

	struct timeval tv;
	struct tm tm;
	char stamp[32];

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s: %s\n", stamp, (long)(tv.tv_usec / 1000),
		bf_log_level_name(level), line);
}
