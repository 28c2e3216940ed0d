/* main.c -- backfilld: runs PostgreSQL backfills in safe, checkpointed batches. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth.h"
#include "commands.h"
#include "config.h"
#include "control.h"
#include "engine.h"
#include "log.h"
#include "notify.h"
#include "status.h"

/* How often STATUS= is refreshed (sent only when the line changed). */
#define STATUS_INTERVAL_MS 2000

typedef struct bf_daemon {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t watchdog_timer, status_timer;
	bf_config cfg;
	const char *config_path;
	bf_engine engine;
	bf_control control;
	bf_commands commands;
	char last_status[512];
	int exit_code;
} bf_daemon;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: backfilld [-c FILE] [--check-config] [--version]\n"
		"\n"
		"Runs the backfill jobs scheduled in backfill.jobs in small, checkpointed,\n"
		"throttled batches. Stays in the foreground and logs to stderr.\n"
		"Steer it with backfillctl(1).\n"
		"\n"
		"  -c, --config FILE   configuration file (default " BF_CONFIG_DEFAULT_PATH ")\n"
		"      --check-config  validate the configuration and exit (0: valid)\n"
		"      --version       print the version and exit\n"
		"  -h, --help          this help\n");
}

/* ---- systemd: STATUS= and the watchdog ---- */

static void status_refresh(bf_daemon *d)
{
	char line[512];

	bf_status_summary(&d->engine, line, sizeof(line));
	if (strcmp(line, d->last_status) == 0)
		return;
	snprintf(d->last_status, sizeof(d->last_status), "%s", line);
	bf_notify_status("%s", line);
}

static void status_timer_cb(uv_timer_t *timer)
{
	status_refresh(timer->data);
}

/* The ping comes from a timer of the loop itself: a loop that is stuck
 * (a blocking call, a busy spin) sends none, and systemd restarts us. */
static void watchdog_timer_cb(uv_timer_t *timer)
{
	(void)timer;
	bf_notify_watchdog();
}

static void on_engine_ready(bf_engine *engine, void *arg)
{
	bf_daemon *d = arg;

	bf_notice("ready: connected, control schema in place, control socket serving, "
		  "waiting for jobs (owner %s)",
		  engine->owner);
	bf_notify_ready();
	d->last_status[0] = '\0';
	status_refresh(d);
}

/* ---- stopping ---- */

static void on_handle_closed(uv_handle_t *handle)
{
	(void)handle;
}

static void on_engine_stopped(bf_engine *engine, void *arg)
{
	bf_daemon *d = arg;

	if (engine->fatal)
		d->exit_code = 1;
	/* The engine may stop on its own (a schema newer than us): the
	 * socket must close too, or the loop never ends. */
	if (!d->commands.stopping) {
		bf_commands_stop(&d->commands);
		bf_control_close(&d->control, NULL, NULL);
	}
	uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
	uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
	uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
	uv_close((uv_handle_t *)&d->watchdog_timer, on_handle_closed);
	uv_close((uv_handle_t *)&d->status_timer, on_handle_closed);
}

static void daemon_stop(bf_daemon *d)
{
	bf_notify_stopping();
	if (!d->commands.stopping) {
		bf_commands_stop(&d->commands);
		bf_control_close(&d->control, NULL, NULL);
	}
	bf_engine_stop(&d->engine);
}

static void on_stop_signal(uv_signal_t *handle, int signum)
{
	bf_daemon *d = handle->data;

	bf_notice("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	daemon_stop(d);
}

/* ---- reload ---- */

/* Settings a running daemon cannot change: the connections and the socket
 * are made with them. The new file's values are kept aside (and the old
 * ones kept running) until a restart. */
static void reload_keep_restart_keys(bf_config *fresh, bf_config *old)
{
	const struct {
		const char *name;
		size_t offset;
	} strings[] = {
		{"database.conninfo", offsetof(bf_config, conninfo)},
		{"control.socket", offsetof(bf_config, control_socket)},
		{"control.socket_group", offsetof(bf_config, control_socket_group)},
	};
	const struct {
		const char *name;
		size_t offset;
	} ints[] = {
		{"database.connect_timeout_ms", offsetof(bf_config, connect_timeout_ms)},
		{"control.socket_mode", offsetof(bf_config, control_socket_mode)},
	};

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		char **a = (char **)((char *)fresh + strings[i].offset);
		char **b = (char **)((char *)old + strings[i].offset);

		if (strcmp(*a, *b) == 0)
			continue;
		bf_warning("reload: %s changed; it takes effect when backfilld is restarted",
			   strings[i].name);
		/* Swap: the running value stays, the old struct frees the new. */
		char *keep = *b;

		*b = *a;
		*a = keep;
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		int *a = (int *)((char *)fresh + ints[i].offset);
		int *b = (int *)((char *)old + ints[i].offset);

		if (*a == *b)
			continue;
		bf_warning("reload: %s changed; it takes effect when backfilld is restarted",
			   ints[i].name);
		*a = *b;
	}
}

static void on_sighup(uv_signal_t *handle, int signum)
{
	bf_daemon *d = handle->data;
	char err[1024];
	bf_config fresh, old;
	/* systemd hears of a reload only while we are ready: READY=1 before
	 * the database is reached, or after STOPPING=1, would be a lie. */
	int tell = d->engine.ready_reported && !d->engine.stopping && !d->commands.stopping;

	(void)signum;
	if (tell)
		bf_notify_reloading();
	bf_notice("received SIGHUP: reloading %s", d->config_path);
	bf_config_defaults(&fresh);
	if (bf_config_load(&fresh, d->config_path, err, sizeof(err)) != 0 ||
	    (!d->control.closing &&
	     bf_control_reload(&d->control, &fresh, err, sizeof(err)) != 0)) {
		bf_error("reload refused, keeping the running configuration: %s", err);
		bf_config_free(&fresh);
		if (tell) {
			bf_notify_ready();
			bf_notify_status("reload refused (see the log); running with the previous "
					 "configuration");
		}
		d->last_status[0] = '\0';
		return;
	}
	/* Swap in place: the engine and the jobs point at d->cfg. */
	old = d->cfg;
	reload_keep_restart_keys(&fresh, &old);
	d->cfg = fresh;
	bf_config_free(&old);
	bf_log_set_level(d->cfg.log_level);
	bf_engine_reconfigure(&d->engine);
	bf_notice("reloaded %s (log level %s, up to %d jobs, batch target %d ms)", d->config_path,
		  bf_log_level_name(d->cfg.log_level), d->cfg.max_jobs, d->cfg.batch_target_ms);
	if (tell)
		bf_notify_ready();
	d->last_status[0] = '\0';
	status_refresh(d);
}

/* ---- main ---- */

static int check_config(bf_daemon *d)
{
	char err[1024];
	bf_auth auth;

	if (bf_auth_load(&auth, d->cfg.control_allowed_users, d->cfg.control_allowed_groups, err,
			 sizeof(err)) != 0) {
		fprintf(stderr, "backfilld: %s: %s\n", d->config_path, err);
		return 1;
	}
	bf_auth_free(&auth);
	printf("%s: configuration is valid\n", d->config_path);
	return 0;
}

/* The command line into d and *check_only. Returns true to go on; false
 * with *exit_code when done (--version, --help: 0) or refused (2). */
static bool parse_args(int argc, char **argv, bf_daemon *d, int *check_only, int *exit_code)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d->config_path = optarg;
			break;
		case 'C':
			*check_only = 1;
			break;
		case 'V':
			printf("backfilld %s\n", BF_VERSION);
			*exit_code = 0;
			return false;
		case 'h':
			usage(stdout);
			*exit_code = 0;
			return false;
		default:
			usage(stderr);
			*exit_code = 2;
			return false;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "backfilld: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		*exit_code = 2;
		return false;
	}
	return true;
}

/* The signal handlers and the daemon's own timers (the status timer is
 * started later, with the engine). */
static void handles_start(bf_daemon *d)
{
	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sigint);
	uv_signal_init(&d->loop, &d->sighup);
	uv_timer_init(&d->loop, &d->watchdog_timer);
	uv_timer_init(&d->loop, &d->status_timer);
	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	d->watchdog_timer.data = d->status_timer.data = d;
	uv_signal_start(&d->sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&d->sigint, on_stop_signal, SIGINT);
	uv_signal_start(&d->sighup, on_sighup, SIGHUP);
}

/* Pings systemd's watchdog at half its interval, when it has one. */
static void watchdog_start(bf_daemon *d)
{
	uint64_t usec = bf_notify_watchdog_usec();

	if (usec > 0) {
		uint64_t every = usec / 2000 > 0 ? usec / 2000 : 1;

		bf_info("systemd watchdog: %llu ms; pinging every %llu ms",
			(unsigned long long)(usec / 1000), (unsigned long long)every);
		uv_timer_start(&d->watchdog_timer, watchdog_timer_cb, every, every);
	}
}

/* Runs the loop until every handle is closed; the exit status. */
static int run_until_stopped(bf_daemon *d)
{
	uv_run(&d->loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&d->loop);

	if (rc != 0)
		bf_error("event loop closed with handles still open: %s", uv_strerror(rc));
	bf_notice("stopped");
	bf_config_free(&d->cfg);
	return d->exit_code ? d->exit_code : (rc != 0);
}

int main(int argc, char **argv)
{
	static bf_daemon d;
	int check_only = 0, exit_code;
	char err[1024];

	d.config_path = BF_CONFIG_DEFAULT_PATH;
	/* throttle.windows are in local time: read TZ (or /etc/localtime) once. */
	tzset();
	if (!parse_args(argc, argv, &d, &check_only, &exit_code))
		return exit_code;

	bf_config_defaults(&d.cfg);
	if (bf_config_load(&d.cfg, d.config_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "backfilld: %s\n", err);
		return 1;
	}
	if (check_only) {
		int rc = check_config(&d);

		bf_config_free(&d.cfg);
		return rc;
	}
	bf_log_init(d.cfg.log_level);
	/* A peer that goes away must be an error on write, not a signal. */
	signal(SIGPIPE, SIG_IGN);

	/* Order matters: the loop, then signals (so a SIGTERM during connect
	 * is handled), then the control socket (a live daemon on it stops us
	 * before we touch the database), then the engine. */
	if (uv_loop_init(&d.loop) != 0) {
		fprintf(stderr, "backfilld: cannot initialize the event loop\n");
		return 1;
	}
	handles_start(&d);

	bf_notice("backfilld %s starting with %s", BF_VERSION, d.config_path);
	if (bf_engine_init(&d.engine, &d.loop, &d.cfg, on_engine_ready, on_engine_stopped, &d) !=
	    0) {
		bf_error("cannot initialize the engine");
		return 1;
	}
	bf_commands_init(&d.commands, &d.engine, &d.cfg);
	if (bf_control_open(&d.control, &d.loop, &d.cfg, bf_commands_handle, &d.commands, err,
			    sizeof(err)) != 0) {
		bf_error("%s", err);
		d.exit_code = 1;
		/* Close what is open through the loop, then leave. */
		d.commands.stopping = 1;
		bf_engine_stop(&d.engine);
	} else {
		watchdog_start(&d);
		bf_engine_start(&d.engine);
		/* STATUS= from the start: while the database is unreachable,
		 * systemctl status says so. */
		uv_timer_start(&d.status_timer, status_timer_cb, 500, STATUS_INTERVAL_MS);
	}
	return run_until_stopped(&d);
}
