/* client.c -- one request, one answer over the control socket, with a
 * deadline on the whole exchange (poll on a non-blocking socket), and every
 * failure mapped to backfillctl's exit status.
 */
#include "client.h"
#include "term.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t bf_ctl_interrupted;

/* The exit status for each error code a daemon may answer with; anything
 * else (a newer daemon's code included) is a plain failure. */
static const struct {
	const char *code;
	int status;
} error_statuses[] = {
	{BF_ERR_PERMISSION_DENIED, BF_CTL_DENIED},
	{BF_ERR_NO_SUCH_JOB, BF_CTL_NO_SUCH_JOB},
};

typedef struct call {
	const char *path;
	int fd;
	long long deadline_ms; /* CLOCK_MONOTONIC */
	int timeout_ms;
	char *err;
	size_t errlen;
} call;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int call_fail(call *c, int status, const char *fmt, ...) BF_PRINTF(3, 4);

static int call_fail(call *c, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return status;
}

static int timed_out(call *c)
{
	return call_fail(c, BF_CTL_FAILED,
			 "no answer from the daemon on %s within %gs (see --timeout)", c->path,
			 c->timeout_ms / 1000.0);
}

/* Waits for events on the socket until the deadline. 1: ready, 0: timed
 * out, BF_CTL_INTERRUPTED; a signal that is not ours just resumes the wait. */
static int call_wait(call *c, short events)
{
	for (;;) {
		long long left = c->deadline_ms - now_ms();
		struct pollfd pfd = {.fd = c->fd, .events = events};

		if (bf_ctl_interrupted)
			return BF_CTL_INTERRUPTED;
		if (left <= 0)
			return 0;
		int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);

		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return 1; /* let the next read or write report it */
	}
}

static int connect_status(call *c, int error)
{
	switch (error) {
	case ENOENT:
	case ENOTDIR:
	case ECONNREFUSED:
		return call_fail(c, BF_CTL_NOT_RUNNING,
				 "daemon not running? cannot connect to %s: %s", c->path,
				 strerror(error));
	case EACCES:
	case EPERM:
		/* Whoever may connect is set by the socket's mode and group. */
		return call_fail(c, BF_CTL_DENIED,
				 "cannot connect to %s: %s (see control.socket_group)", c->path,
				 strerror(error));
	default:
		return call_fail(c, BF_CTL_FAILED, "cannot connect to %s: %s", c->path,
				 strerror(error));
	}
}

static int call_connect(call *c)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	size_t len = strlen(c->path);

	if (len == 0 || len >= sizeof addr.sun_path)
		return call_fail(c, BF_CTL_USAGE, "socket path \"%s\" must be 1 to %zu bytes long",
				 c->path, sizeof addr.sun_path - 1);
	memcpy(addr.sun_path, c->path, len + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return call_fail(c, BF_CTL_FAILED, "socket: %s", strerror(errno));
	for (;;) {
		if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) == 0)
			return BF_CTL_OK;
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS) {
			int error = 0, w = call_wait(c, POLLOUT);
			socklen_t elen = sizeof error;

			if (w != 1)
				return w ? w : timed_out(c);
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &elen) != 0)
				error = errno;
			return error ? connect_status(c, error) : BF_CTL_OK;
		}
		if (errno != EAGAIN)
			return connect_status(c, errno);
		/* A unix socket's backlog is full: the daemon is alive but
		 * swamped. Try again shortly, within the deadline. */
		struct timespec pause = {0, 50 * 1000000};

		if (bf_ctl_interrupted)
			return BF_CTL_INTERRUPTED;
		if (now_ms() >= c->deadline_ms)
			return call_fail(
				c, BF_CTL_FAILED,
				"the daemon on %s did not accept the connection within %gs",
				c->path, c->timeout_ms / 1000.0);
		nanosleep(&pause, NULL);
	}
}

/* Sends line. A daemon that closes early (a request it refuses as too
 * large, say) may still have answered: the caller reads on regardless. */
static int call_send(call *c, const char *line)
{
	size_t len = strlen(line), sent = 0;

	while (sent < len) {
		ssize_t n = send(c->fd, line + sent, len - sent, MSG_NOSIGNAL);

		if (n >= 0) {
			sent += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return BF_CTL_OK;
		if (errno != EAGAIN)
			return call_fail(c, BF_CTL_FAILED, "cannot send to the daemon on %s: %s",
					 c->path, strerror(errno));
		int w = call_wait(c, POLLOUT);

		if (w != 1)
			return w ? w : timed_out(c);
	}
	return BF_CTL_OK;
}

/* Reads up to the first "\n" into *line (malloc'd, NUL-terminated, the
 * newline dropped). */
static int call_receive(call *c, char **line, size_t *linelen)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int status;

	for (;;) {
		if (cap - len < 65536) {
			size_t ncap = cap ? cap * 2 : 65536 * 2;
			char *nbuf = realloc(buf, ncap);

			if (!nbuf) {
				status = call_fail(c, BF_CTL_FAILED, "out of memory");
				goto fail;
			}
			buf = nbuf;
			cap = ncap;
		}
		ssize_t n = recv(c->fd, buf + len, cap - len - 1, 0);

		if (n > 0) {
			char *nl = memchr(buf + len, '\n', (size_t)n);

			len += (size_t)n;
			if (nl) {
				*nl = '\0';
				*line = buf;
				*linelen = (size_t)(nl - buf);
				return BF_CTL_OK;
			}
			if (len > BF_PROTO_MAX_RESPONSE) {
				status = call_fail(c, BF_CTL_FAILED,
						   "the daemon's answer is longer than %d MiB",
						   BF_PROTO_MAX_RESPONSE >> 20);
				goto fail;
			}
			continue;
		}
		if (n == 0 || errno == ECONNRESET) {
			status = call_fail(
				c, BF_CTL_FAILED,
				len ? "the daemon closed the connection in the middle of "
				      "its answer"
				    : "the daemon closed the connection without answering");
			goto fail;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			status =
				call_fail(c, BF_CTL_FAILED, "cannot read from the daemon on %s: %s",
					  c->path, strerror(errno));
			goto fail;
		}
		int w = call_wait(c, POLLIN);

		if (w != 1) {
			status = w ? w : timed_out(c);
			goto fail;
		}
	}

fail:
	free(buf);
	return status;
}

static int call_answer(call *c, const char *line, size_t len, json_t **result)
{
	char code[64], msg[1024];
	int rc = bf_response_decode(line, len, result, code, sizeof code, msg, sizeof msg);

	if (rc == 1)
		return BF_CTL_OK;
	if (rc < 0)
		return call_fail(c, BF_CTL_FAILED, "the daemon's answer makes no sense: %s", msg);

	char *text = bf_term_clean(msg[0] ? msg : code, 0);
	int status = BF_CTL_FAILED;

	for (size_t i = 0; i < sizeof error_statuses / sizeof error_statuses[0]; i++)
		if (strcmp(code, error_statuses[i].code) == 0)
			status = error_statuses[i].status;
	call_fail(c, status, "%s", text);
	bf_term_free(text);
	return status;
}

int bf_ctl_call(const char *socket_path, int timeout_ms, const bf_request *req, json_t **result,
		char *err, size_t errlen)
{
	call c = {
		.path = socket_path,
		.fd = -1,
		.deadline_ms = now_ms() + timeout_ms,
		.timeout_ms = timeout_ms,
		.err = err,
		.errlen = errlen,
	};
	char *request = NULL, *answer = NULL;
	size_t answer_len = 0;
	int status;

	*result = NULL;
	err[0] = '\0';
	if (!(request = bf_request_encode(req))) {
		status = call_fail(&c, BF_CTL_FAILED, "out of memory");
		goto done;
	}
	if ((status = call_connect(&c)) != BF_CTL_OK)
		goto done;
	if ((status = call_send(&c, request)) != BF_CTL_OK)
		goto done;
	if ((status = call_receive(&c, &answer, &answer_len)) != BF_CTL_OK)
		goto done;
	status = call_answer(&c, answer, answer_len, result);

done:
	if (c.fd >= 0)
		close(c.fd);
	free(request);
	free(answer);
	return status;
}
