/* main.c -- backfilld: runs PostgreSQL backfills in safe, checkpointed batches. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "notify.h"

typedef struct bf_daemon {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint, sighup;
	bf_config cfg;
	const char *config_path;
	bf_engine engine;
	int exit_code;
} bf_daemon;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: backfilld [-c FILE] [--check-config] [--version]\n"
		"\n"
		"Runs the backfill jobs scheduled in backfill.jobs in small, checkpointed,\n"
		"throttled batches. Stays in the foreground and logs to stderr.\n"
		"\n"
		"  -c, --config FILE   configuration file (default " BF_CONFIG_DEFAULT_PATH ")\n"
		"      --check-config  validate the configuration and exit (0: valid)\n"
		"      --version       print the version and exit\n"
		"  -h, --help          this help\n");
}

static void on_engine_ready(bf_engine *engine, void *arg)
{
	(void)arg;
	bf_notice("ready: connected, control schema in place, waiting for jobs (owner %s)",
		  engine->owner);
	bf_notify_ready();
	bf_notify_status("running, up to %d jobs at once", engine->cfg->max_jobs);
}

static void on_signal_closed(uv_handle_t *handle)
{
	(void)handle;
}

static void on_engine_stopped(bf_engine *engine, void *arg)
{
	bf_daemon *d = arg;

	if (engine->fatal)
		d->exit_code = 1;
	uv_close((uv_handle_t *)&d->sigterm, on_signal_closed);
	uv_close((uv_handle_t *)&d->sigint, on_signal_closed);
	uv_close((uv_handle_t *)&d->sighup, on_signal_closed);
}

static void on_stop_signal(uv_signal_t *handle, int signum)
{
	bf_daemon *d = handle->data;

	bf_notice("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	bf_notify_stopping();
	bf_engine_stop(&d->engine);
}

/* Until the control plane brings a full reload, SIGHUP re-reads the file
 * and applies the log level; it never kills the daemon. */
static void on_sighup(uv_signal_t *handle, int signum)
{
	bf_daemon *d = handle->data;
	char err[512];
	bf_config fresh;

	(void)signum;
	bf_config_defaults(&fresh);
	if (bf_config_load(&fresh, d->config_path, err, sizeof(err)) != 0) {
		bf_error("reload refused, keeping the running configuration: %s", err);
		return;
	}
	bf_log_set_level(fresh.log_level);
	bf_notice("reloaded %s: log level %s applied; other settings take effect on restart",
		  d->config_path, bf_log_level_name(fresh.log_level));
	bf_config_free(&fresh);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static bf_daemon d;
	int check_only = 0, opt;
	char err[1024];

	d.config_path = BF_CONFIG_DEFAULT_PATH;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d.config_path = optarg;
			break;
		case 'C':
			check_only = 1;
			break;
		case 'V':
			printf("backfilld %s\n", BF_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "backfilld: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	bf_config_defaults(&d.cfg);
	if (bf_config_load(&d.cfg, d.config_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "backfilld: %s\n", err);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration is valid\n", d.config_path);
		bf_config_free(&d.cfg);
		return 0;
	}
	bf_log_init(d.cfg.log_level);
	/* A peer that goes away must be an error on write, not a signal. */
	signal(SIGPIPE, SIG_IGN);

	/* Order matters: the loop, then signals (so a SIGTERM during connect
	 * is handled), then the engine, which starts connecting. */
	if (uv_loop_init(&d.loop) != 0) {
		fprintf(stderr, "backfilld: cannot initialize the event loop\n");
		return 1;
	}
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	uv_signal_init(&d.loop, &d.sighup);
	d.sigterm.data = d.sigint.data = d.sighup.data = &d;
	uv_signal_start(&d.sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_stop_signal, SIGINT);
	uv_signal_start(&d.sighup, on_sighup, SIGHUP);

	bf_notice("backfilld %s starting with %s", BF_VERSION, d.config_path);
	if (bf_engine_init(&d.engine, &d.loop, &d.cfg, on_engine_ready, on_engine_stopped, &d) !=
	    0) {
		bf_error("cannot initialize the engine");
		return 1;
	}
	bf_engine_start(&d.engine);

	uv_run(&d.loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&d.loop);

	if (rc != 0)
		bf_error("event loop closed with handles still open: %s", uv_strerror(rc));
	bf_notice("stopped");
	bf_config_free(&d.cfg);
	return d.exit_code ? d.exit_code : (rc != 0);
}
