/* control.c -- the control socket server: accept, authorize, frame, time out. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"

/* Read buffers start small and grow to the request limit (and a byte more,
 * to tell "exactly at the limit" from "over it"). */
#define CLIENT_BUF_INITIAL 4096
#define CLIENT_BUF_MAX	   (BF_PROTO_MAX_REQUEST + 1)

struct bf_client {
	bf_client *next, *prev;
	bf_control *ctl;
	uv_pipe_t pipe;
	uv_timer_t timer;
	char *buf;
	size_t len, cap;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int reading;
	int handling; /* a request is with the handler */
	int writing;  /* a reply is on its way */
	int close_after_write;
	int closed;	  /* uv_close called on both handles */
	int handles_open; /* pipe and timer not yet through their close callback */
};

typedef struct client_write {
	uv_write_t req;
	bf_client *client;
	char *line;
} client_write;

static void client_process(bf_client *client);

uid_t bf_client_uid(const bf_client *client)
{
	return client->uid;
}

/* ---- a client's end ---- */

static void client_maybe_free(bf_client *client)
{
	if (client->closed && client->handles_open == 0 && !client->handling) {
		bf_control *ctl = client->ctl;

		free(client->buf);
		free(client);
		ctl->nalive--;
		if (ctl->closing && --ctl->closes_pending == 0 && ctl->on_closed)
			ctl->on_closed(ctl, ctl->closed_arg);
	}
}

static void client_handle_closed(uv_handle_t *handle)
{
	bf_client *client = handle->data;

	client->handles_open--;
	client_maybe_free(client);
}

static void client_close(bf_client *client)
{
	bf_control *ctl = client->ctl;

	if (client->closed)
		return;
	client->closed = 1;
	if (client->prev)
		client->prev->next = client->next;
	else
		ctl->clients = client->next;
	if (client->next)
		client->next->prev = client->prev;
	ctl->nclients--;
	uv_close((uv_handle_t *)&client->pipe, client_handle_closed);
	uv_close((uv_handle_t *)&client->timer, client_handle_closed);
}

static void client_timeout(uv_timer_t *timer)
{
	bf_client *client = timer->data;

	if (client->writing) {
		bf_info("control: a client (uid %d) did not read its reply within %d ms; "
			"dropping it",
			(int)client->uid, client->ctl->request_timeout_ms);
		client_close(client);
		return;
	}
	if (client->len == 0) {
		/* Idle between requests: nothing to answer. */
		client_close(client);
		return;
	}
	client->close_after_write = 1;
	bf_client_reply(client, bf_response_error(BF_ERR_TIMEOUT,
						  "incomplete request: no end of line within %d ms",
						  client->ctl->request_timeout_ms));
}

static void client_arm_timer(bf_client *client)
{
	uv_timer_start(&client->timer, client_timeout, (uint64_t)client->ctl->request_timeout_ms,
		       0);
}

/* ---- writing replies ---- */

static void client_written(uv_write_t *req, int status)
{
	client_write *w = (client_write *)req;
	bf_client *client = w->client;

	free(w->line);
	free(w);
	client->writing = 0;
	if (client->closed) {
		client_maybe_free(client);
		return;
	}
	if (status < 0 || client->close_after_write) {
		client_close(client);
		return;
	}
	client_arm_timer(client);
	client_process(client);
}

void bf_client_reply(bf_client *client, char *line)
{
	client->handling = 0;
	if (client->closed || !line) {
		free(line);
		if (!client->closed)
			client_close(client);
		client_maybe_free(client);
		return;
	}
	client_write *w = calloc(1, sizeof(*w));

	if (!w) {
		free(line);
		client_close(client);
		return;
	}
	w->client = client;
	w->line = line;
	uv_buf_t buf = uv_buf_init(line, (unsigned int)strlen(line));

	client->writing = 1;
	client->ctl->served++;
	client_arm_timer(client);
	if (uv_write(&w->req, (uv_stream_t *)&client->pipe, &buf, 1, client_written) != 0) {
		free(line);
		free(w);
		client->writing = 0;
		client_close(client);
	}
}

/* ---- reading requests ---- */

static void client_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	bf_client *client = handle->data;

	(void)suggested;
	if (client->len == client->cap && client->cap < CLIENT_BUF_MAX) {
		size_t cap = client->cap ? client->cap * 2 : CLIENT_BUF_INITIAL;
		char *more;

		if (cap > CLIENT_BUF_MAX)
			cap = CLIENT_BUF_MAX;
		if ((more = realloc(client->buf, cap))) {
			client->buf = more;
			client->cap = cap;
		}
	}
	/* A zero-length buffer makes libuv report UV_ENOBUFS: the request is
	 * too long, or memory ran out; client_read answers either. */
	*buf = uv_buf_init(client->buf ? client->buf + client->len : NULL,
			   (unsigned int)(client->cap - client->len));
}

static void client_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	bf_client *client = stream->data;

	(void)buf;
	if (nread == UV_ENOBUFS) {
		uv_read_stop(stream);
		client->reading = 0;
		if (client->len < CLIENT_BUF_MAX) {
			client_close(client); /* out of memory */
			return;
		}
	} else if (nread < 0) {
		/* EOF or a reset: a pending reply has nobody to go to. */
		client_close(client);
		return;
	} else {
		client->len += (size_t)nread;
	}
	client_process(client);
}

static void client_start_reading(bf_client *client)
{
	if (client->reading || client->closed)
		return;
	if (uv_read_start((uv_stream_t *)&client->pipe, client_alloc, client_read) == 0)
		client->reading = 1;
	else
		client_close(client);
}

static void client_stop_reading(bf_client *client)
{
	if (client->reading)
		uv_read_stop((uv_stream_t *)&client->pipe);
	client->reading = 0;
}

/* Handles the next complete line in the buffer, if any; one at a time. */
static void client_process(bf_client *client)
{
	bf_control *ctl = client->ctl;
	char *nl;

	if (client->closed || client->handling || client->writing)
		return;
	nl = client->len ? memchr(client->buf, '\n', client->len) : NULL;
	if (!nl) {
		if (client->len >= CLIENT_BUF_MAX) {
			client_stop_reading(client);
			client->close_after_write = 1;
			bf_client_reply(
				client,
				bf_response_error(
					BF_ERR_TOO_LARGE,
					"request longer than %d bytes without an end of line",
					BF_PROTO_MAX_REQUEST));
			return;
		}
		client_start_reading(client);
		return;
	}
	size_t linelen = (size_t)(nl - client->buf);
	bf_request req;
	const char *code = NULL;
	char err[512];
	int rc = bf_request_decode(client->buf, linelen, &req, &code, err, sizeof(err));

	memmove(client->buf, nl + 1, client->len - linelen - 1);
	client->len -= linelen + 1;
	client_stop_reading(client);
	uv_timer_stop(&client->timer);
	client->handling = 1;
	if (rc != 0) {
		bf_debug("control: refused a request from uid %d: %s", (int)client->uid, err);
		bf_client_reply(client,
				bf_response_error(code ? code : BF_ERR_BAD_REQUEST, "%s", err));
		return;
	}
	bf_request *copy = malloc(sizeof(*copy));

	if (!copy) {
		bf_request_free(&req);
		bf_client_reply(client, NULL);
		return;
	}
	*copy = req;
	ctl->on_request(ctl, client, copy, ctl->arg);
}

/* ---- accepting ---- */

static void control_refuse(bf_client *client, const char *code, const char *message)
{
	client->handling = 1;
	client->close_after_write = 1;
	bf_client_reply(client, bf_response_error(code, "%s", message));
}

static void control_dropped_closed(uv_handle_t *handle)
{
	free(handle);
}

/* Frees the slots of clients that hung up before the loop read their end:
 * libuv accepts a whole burst of connections in one go, and a burst opened
 * and closed at once would otherwise fill every slot, and have the next
 * real client refused as busy, until their EOFs are read. Only clients
 * waiting for a request (one with a request in hand keeps its slot until
 * answered); one non-blocking peek each, and only when the slots are full. */
static void control_reap_hung_up(bf_control *ctl, bf_client *except)
{
	bf_client *client, *next;

	for (client = ctl->clients; client; client = next) {
		uv_os_fd_t fd;
		char byte;

		next = client->next;
		if (client == except || client->closed || client->handling || client->writing ||
		    uv_fileno((uv_handle_t *)&client->pipe, &fd) != 0)
			continue;
		ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			client_close(client);
	}
}

static void control_connection(uv_stream_t *server, int status)
{
	bf_control *ctl = server->data;
	bf_client *client;

	if (status < 0) {
		bf_warning("control: accepting a connection failed: %s", uv_strerror(status));
		return;
	}
	if (ctl->closing || !(client = calloc(1, sizeof(*client)))) {
		/* Accept and drop, or the listen queue would keep waking us. */
		uv_pipe_t *dropped = malloc(sizeof(*dropped));

		if (dropped && uv_pipe_init(ctl->loop, dropped, 0) == 0) {
			uv_accept(server, (uv_stream_t *)dropped);
			uv_close((uv_handle_t *)dropped, control_dropped_closed);
		} else {
			free(dropped);
		}
		return;
	}
	client->ctl = ctl;
	ctl->nalive++;
	uv_pipe_init(ctl->loop, &client->pipe, 0);
	uv_timer_init(ctl->loop, &client->timer);
	client->pipe.data = client->timer.data = client;
	client->handles_open = 2;
	client->next = ctl->clients;
	if (ctl->clients)
		ctl->clients->prev = client;
	ctl->clients = client;
	ctl->nclients++;
	if (uv_accept(server, (uv_stream_t *)&client->pipe) != 0) {
		client_close(client);
		return;
	}
	client_arm_timer(client);

	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&client->pipe, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) != 0) {
		bf_warning("control: cannot read the peer's credentials (SO_PEERCRED): %s",
			   strerror(errno));
		client_close(client);
		return;
	}
	client->uid = cred.uid;
	client->gid = cred.gid;
	client->pid = cred.pid;
	if (!bf_auth_allows(&ctl->auth, cred.uid, cred.gid)) {
		char msg[256];

		ctl->refused++;
		bf_warning("control: refused uid %d (gid %d, pid %d): not in control.allowed_users "
			   "or control.allowed_groups",
			   (int)cred.uid, (int)cred.gid, (int)cred.pid);
		snprintf(msg, sizeof(msg),
			 "permission denied: uid %d is not allowed to use this control socket "
			 "(control.allowed_users, control.allowed_groups)",
			 (int)cred.uid);
		control_refuse(client, BF_ERR_PERMISSION_DENIED, msg);
		return;
	}
	if (ctl->nclients > ctl->max_clients)
		control_reap_hung_up(ctl, client);
	if (ctl->nclients > ctl->max_clients) {
		ctl->refused++;
		control_refuse(client, BF_ERR_BUSY,
			       "busy: too many control connections at once (control.max_clients); "
			       "try again");
		return;
	}
	client_start_reading(client);
}

/* ---- the socket ---- */

static int control_group(const char *name, gid_t *gid, char *err, size_t errlen)
{
	struct group *gr;
	char *end;

	*gid = (gid_t)-1;
	if (!name || !*name)
		return 0;
	errno = 0;
	unsigned long n = strtoul(name, &end, 10);

	if (*end == '\0') {
		*gid = (gid_t)n;
		return 0;
	}
	if (!(gr = getgrnam(name))) {
		snprintf(err, errlen, "control.socket_group: no such group \"%s\"", name);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

/* A file at path: a stale socket is removed; a live socket, or anything
 * that is not a socket, is refused. */
static int control_clear_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "control socket %s: the path exists and is not a socket; refusing to "
			 "replace it (set control.socket to another path)",
			 path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* Non-blocking: a live daemon with a full backlog answers EAGAIN
	 * instead of holding our start up. */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int saved = errno;

	close(fd);
	if (rc == 0 || saved == EAGAIN) {
		snprintf(
			err, errlen,
			"control socket %s is in use by a running daemon (it accepts connections); "
			"stop that one first, or set control.socket to another path",
			path);
		return -1;
	}
	if (saved != ECONNREFUSED) {
		snprintf(err, errlen, "control socket %s: cannot tell whether it is in use: %s",
			 path, strerror(saved));
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "control socket %s: cannot remove the stale socket: %s", path,
			 strerror(errno));
		return -1;
	}
	bf_notice("control: removed the stale socket %s left by an earlier run", path);
	return 0;
}

/* The socket file just bound at path: remembered by its identity (to
 * unlink only our own on close) and given to group gid. Reached with
 * O_PATH | O_NOFOLLOW and changed through that descriptor, never by its
 * path: whoever can write to the directory could swap a symlink in after
 * bind, and a chown(path) would follow it and hand some other file (root's,
 * say) to the group. A swapped path is refused. */
static int control_adopt_file(bf_control *ctl, const char *path, gid_t gid, const char *group,
			      char *err, size_t errlen)
{
	struct stat st = {0};
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	/* With O_PATH, O_NOFOLLOW opens a symlink itself: fstat tells. */
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		int saved = fd < 0 ? errno : 0;

		if (fd >= 0)
			close(fd);
		snprintf(err, errlen,
			 "control socket %s: the path no longer holds the socket just bound "
			 "there (%s); someone replaced it: refusing to touch it",
			 path,
			 saved		       ? strerror(saved)
			 : S_ISLNK(st.st_mode) ? "it is a symlink now"
					       : "not a socket now");
		return -1;
	}
	if (gid != (gid_t)-1 && fchownat(fd, "", (uid_t)-1, gid, AT_EMPTY_PATH) != 0) {
		snprintf(err, errlen, "control socket %s: cannot give it to group %s: %s", path,
			 group, strerror(errno));
		close(fd);
		return -1;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	close(fd);
	return 0;
}

static int control_create(bf_control *ctl, const bf_config *cfg, char *err, size_t errlen)
{
	const char *path = cfg->control_socket;
	struct sockaddr_un sa;
	gid_t gid;
	int rc;

	if (!path || !*path) {
		snprintf(err, errlen, "control.socket is empty");
		return -1;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket %s: path longer than %zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -1;
	}
	if (control_group(cfg->control_socket_group, &gid, err, errlen) != 0 ||
	    control_clear_path(path, err, errlen) != 0)
		return -1;
	/* Our own socket, handed to libuv: a pipe libuv bound itself is
	 * unlinked by libuv on close, whoever owns the path by then. The mode
	 * is right from the first moment: nobody can connect in the window
	 * between bind and a chmod. */
	struct sockaddr_un sa_bind = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	snprintf(sa_bind.sun_path, sizeof(sa_bind.sun_path), "%s", path);
	mode_t old = umask((mode_t)(~cfg->control_socket_mode & 0777));

	rc = bind(fd, (struct sockaddr *)&sa_bind, sizeof(sa_bind));
	int saved = errno;

	umask(old);
	if (rc != 0) {
		close(fd);
		snprintf(err, errlen, "control socket %s: cannot bind: %s", path, strerror(saved));
		return -1;
	}
	if ((rc = uv_pipe_open(&ctl->server, fd)) != 0) {
		close(fd);
		unlink(path);
		snprintf(err, errlen, "control socket %s: %s", path, uv_strerror(rc));
		return -1;
	}
	if (control_adopt_file(ctl, path, gid, cfg->control_socket_group, err, errlen) != 0) {
		/* Never unlink: what is at the path now may not be ours. */
		return -1;
	}
	ctl->path = strdup(path);
	return 0;
}

static int control_activated(bf_control *ctl, int n, char *err, size_t errlen)
{
	int fd = SD_LISTEN_FDS_START;

	if (n > 1)
		bf_warning("control: systemd passed %d sockets; using the first (fd %d)", n, fd);
	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		snprintf(err, errlen,
			 "the socket passed by systemd (fd %d) is not a listening unix stream "
			 "socket: check ListenStream= in backfilld.socket",
			 fd);
		return -1;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (uv_pipe_open(&ctl->server, fd) != 0) {
		snprintf(err, errlen, "cannot use the socket passed by systemd (fd %d)", fd);
		return -1;
	}
	ctl->activated = 1;
	return 0;
}

int bf_control_open(bf_control *ctl, uv_loop_t *loop, const bf_config *cfg,
		    bf_control_request_cb on_request, void *arg, char *err, size_t errlen)
{
	int n, rc;

	memset(ctl, 0, sizeof(*ctl));
	ctl->loop = loop;
	ctl->on_request = on_request;
	ctl->arg = arg;
	ctl->max_clients = cfg->control_max_clients;
	ctl->request_timeout_ms = cfg->control_request_timeout_ms;
	if (bf_auth_load(&ctl->auth, cfg->control_allowed_users, cfg->control_allowed_groups, err,
			 errlen) != 0)
		return -1;
	uv_pipe_init(loop, &ctl->server, 0);
	ctl->server.data = ctl;
	/* Unsets LISTEN_FDS and LISTEN_PID: nothing we start inherits them. */
	n = sd_listen_fds(1);
	if (n < 0)
		bf_warning("control: ignoring LISTEN_FDS: %s", strerror(-n));
	rc = n > 0 ? control_activated(ctl, n, err, errlen) : control_create(ctl, cfg, err, errlen);
	if (rc == 0 && (rc = uv_listen((uv_stream_t *)&ctl->server, 128, control_connection)) != 0)
		snprintf(err, errlen, "control socket: cannot listen: %s", uv_strerror(rc));
	if (rc != 0) {
		/* The caller closes the loop's handles; ours must go through it. */
		ctl->closing = 1;
		ctl->closes_pending = 1;
		uv_close((uv_handle_t *)&ctl->server, NULL);
		if (ctl->path && !ctl->activated)
			unlink(ctl->path);
		free(ctl->path);
		ctl->path = NULL;
		bf_auth_free(&ctl->auth);
		return -1;
	}
	if (ctl->activated)
		bf_info("control: serving on the socket passed by systemd");
	else
		bf_info("control: serving on %s (mode %04o)", ctl->path, cfg->control_socket_mode);
	return 0;
}

int bf_control_reload(bf_control *ctl, const bf_config *cfg, char *err, size_t errlen)
{
	bf_auth fresh;

	if (bf_auth_load(&fresh, cfg->control_allowed_users, cfg->control_allowed_groups, err,
			 errlen) != 0)
		return -1;
	bf_auth_free(&ctl->auth);
	ctl->auth = fresh;
	ctl->max_clients = cfg->control_max_clients;
	ctl->request_timeout_ms = cfg->control_request_timeout_ms;
	return 0;
}

static void control_server_closed(uv_handle_t *handle)
{
	bf_control *ctl = handle->data;

	if (--ctl->closes_pending == 0 && ctl->on_closed)
		ctl->on_closed(ctl, ctl->closed_arg);
}

void bf_control_close(bf_control *ctl, bf_control_closed_cb cb, void *arg)
{
	struct stat st;

	if (ctl->closing)
		return;
	ctl->closing = 1;
	ctl->on_closed = cb;
	ctl->closed_arg = arg;
	/* Only our own socket file: another daemon may have replaced it. */
	if (ctl->path && lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
	    st.st_ino == ctl->ino)
		unlink(ctl->path);
	free(ctl->path);
	ctl->path = NULL;
	ctl->closes_pending = 1 + ctl->nalive;
	/* Clients still with a handler are freed when it replies. */
	while (ctl->clients)
		client_close(ctl->clients);
	uv_close((uv_handle_t *)&ctl->server, control_server_closed);
	bf_auth_free(&ctl->auth);
}
