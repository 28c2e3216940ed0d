/* watch.c -- backfillctl watch: the status table redrawn in place. */
#include "watch.h"
#include "client.h"
#include "render.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Home, then every line erased to its end and whatever is left below
 * erased too: the new frame overwrites the old one without the flicker of
 * clearing the whole screen first. */
#define HOME	     "\033[H"
#define CLEAR_SCREEN "\033[2J"
#define CLEAR_TO_EOL "\033[K"
#define CLEAR_TO_END "\033[J"

static void on_signal(int signo)
{
	(void)signo;
	bf_ctl_interrupted = 1;
}

/* Sleeps ms, or less when a signal arrives. */
static void pause_ms(int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long elapsed = (now.tv_sec - start.tv_sec) * 1000LL +
				    (now.tv_nsec - start.tv_nsec) / 1000000;

		if (bf_ctl_interrupted || elapsed >= ms)
			return;
		poll(NULL, 0, (int)(ms - elapsed));
	}
}

/* One frame: the status table or the reason there is none. */
static char *watch_frame(const char *socket_path, int timeout_ms, const char *job,
			 const bf_term *term, size_t *len, int *failed)
{
	bf_request req = {.cmd = BF_CMD_STATUS, .job = (char *)job};
	json_t *result = NULL;
	char err[1024], *frame = NULL;
	FILE *out = open_memstream(&frame, len);
	int status;

	if (!out)
		return NULL;
	status = bf_ctl_call(socket_path, timeout_ms, &req, &result, err, sizeof err);
	*failed = status != BF_CTL_OK;
	if (status == BF_CTL_OK)
		bf_render_status(out, result, term);
	else if (status != BF_CTL_INTERRUPTED)
		fprintf(out, "%sbackfillctl: %s%s\n", term->color ? "\033[1;31m" : "", err,
			term->color ? "\033[0m" : "");
	json_decref(result);
	if (fclose(out) != 0) {
		free(frame);
		return NULL;
	}
	return frame;
}

/* The frame with every line erased to its end, after the header. */
static void draw_in_place(const char *frame, int interval_ms, int first)
{
	char now[32];
	time_t t = time(NULL);
	struct tm tm;

	strftime(now, sizeof now, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
	printf("%s%severy %gs, Ctrl-C to stop  %s" CLEAR_TO_EOL "\n" CLEAR_TO_EOL "\n",
	       first ? CLEAR_SCREEN : "", HOME, interval_ms / 1000.0, now);
	for (const char *line = frame, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl) {
			printf("%s" CLEAR_TO_EOL "\n", line);
			break;
		}
		printf("%.*s" CLEAR_TO_EOL "\n", (int)(nl - line), line);
	}
	fputs(CLEAR_TO_END, stdout);
}

int bf_ctl_watch(const char *socket_path, int timeout_ms, const char *job, int interval_ms,
		 const bf_term *term)
{
	struct sigaction sa = {.sa_handler = on_signal};

	/* No SA_RESTART: a signal must cut poll() short. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	for (int round = 0, printed = 0; !bf_ctl_interrupted; round++) {
		size_t len = 0;
		int failed = 0;
		bf_term now = *term;
		char *frame;

		/* The width each frame: the terminal may have been resized. */
		if (term->tty)
			now.columns = bf_term_columns(STDOUT_FILENO);
		frame = watch_frame(socket_path, timeout_ms, job, &now, &len, &failed);

		if (bf_ctl_interrupted) {
			free(frame);
			break;
		}
		if (!frame) {
			fprintf(stderr, "backfillctl: out of memory\n");
		} else if (term->tty) {
			draw_in_place(frame, interval_ms, round == 0);
		} else if (failed) {
			fflush(stdout);
			fputs(frame, stderr);
		} else {
			printf("%s%s", printed++ ? "\n" : "", frame);
		}
		free(frame);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "backfillctl: cannot write to standard output: %s\n",
				strerror(errno));
			return BF_CTL_FAILED;
		}
		pause_ms(interval_ms);
	}
	return BF_CTL_OK;
}
