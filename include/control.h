/* control.h -- the control socket: a unix stream server speaking proto.h.
 *
 * The socket is created safely (a stale socket from a crashed run is
 * replaced, a live one is never stolen, anything that is not a socket is
 * left alone) or taken from systemd socket activation (LISTEN_FDS). Every
 * peer is checked with SO_PEERCRED. A client gets control.request_timeout_ms
 * to send its request line and again to read its reply; a line longer than
 * BF_PROTO_MAX_REQUEST is refused; at most control.max_clients are served at
 * once. None of it can stall the loop: the batches go on whatever the
 * clients do.
 */
#ifndef BF_CONTROL_H
#define BF_CONTROL_H

#include <sys/types.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "proto.h"

typedef struct bf_control bf_control;
typedef struct bf_client bf_client;

/* A decoded, authorized request. The handler answers it exactly once with
 * bf_client_reply, now or later; req is the handler's to free. */
typedef void (*bf_control_request_cb)(bf_control *ctl, bf_client *client, bf_request *req,
				      void *arg);
typedef void (*bf_control_closed_cb)(bf_control *ctl, void *arg);

struct bf_control {
	uv_loop_t *loop;
	uv_pipe_t server;
	int activated; /* the socket came from systemd: never unlink it */
	char *path;    /* what we bound, to unlink on close; NULL when activated */
	dev_t dev;     /* identity of the socket file we created */
	ino_t ino;
	bf_auth auth;
	int max_clients;
	int request_timeout_ms;

	bf_client *clients; /* connected */
	int nclients;
	int nalive; /* allocated: connected, or closing, or with a handler */
	uint64_t served, refused;

	bf_control_request_cb on_request;
	void *arg;
	bf_control_closed_cb on_closed;
	void *closed_arg;
	int closing;
	int closes_pending;
};

/* Opens the socket (activation first, else cfg->control_socket) and starts
 * listening. Returns 0, or -1 with a one-line reason in err. */
int bf_control_open(bf_control *ctl, uv_loop_t *loop, const bf_config *cfg,
		    bf_control_request_cb on_request, void *arg, char *err, size_t errlen);

/* Applies the reloadable settings: allowed users and groups, limits.
 * Returns -1 with a reason (and changes nothing) when a name is unknown. */
int bf_control_reload(bf_control *ctl, const bf_config *cfg, char *err, size_t errlen);

/* Answers the client's request; takes over line (a response from proto.h,
 * malloc'd; NULL means out of memory and closes the connection). A client
 * that went away meanwhile is freed here. */
void bf_client_reply(bf_client *client, char *line);

/* Credentials of the peer, for the log. */
uid_t bf_client_uid(const bf_client *client);

/* Stops listening, drops every client (pending handlers still get to call
 * bf_client_reply, which then only frees), unlinks the socket we created,
 * and calls cb once every handle is closed. */
void bf_control_close(bf_control *ctl, bf_control_closed_cb cb, void *arg);

#endif
