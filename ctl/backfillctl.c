/* backfillctl.c -- the operator's command line for backfilld: parses the
 * command, checks it locally, sends one request over the control socket and
 * prints the answer. Exit statuses are in client.h.
 */
#include "client.h"
#include "render.h"
#include "settings.h"
#include "term.h"
#include "watch.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef BF_VERSION
#define BF_VERSION "unknown"
#endif

/* systemd's RuntimeDirectory=backfilld: the one service's socket, and
 * backfilld@NAME's at RUNTIME_DIR/NAME.sock (systemd/backfilld@.socket). */
#define RUNTIME_DIR	 "/run/backfilld"
#define INSTANCE_SUFFIX	 ".sock"
#define DEFAULT_INSTANCE "backfilld"
#define DEFAULT_SOCKET	 RUNTIME_DIR "/" DEFAULT_INSTANCE INSTANCE_SUFFIX
#define SUN_PATH_SIZE	 sizeof(((struct sockaddr_un *)0)->sun_path)
/* The longest NAME whose socket path fits in sun_path: 87 bytes. */
#define MAX_INSTANCE_NAME (SUN_PATH_SIZE - sizeof(RUNTIME_DIR "/" INSTANCE_SUFFIX))
/* Every answer but plan's is a read of memory the daemon already holds: 10s
 * means it is stuck, not busy. */
#define DEFAULT_TIMEOUT_MS 10000
/* plan runs one real batch (then rolls it back) on a possibly cold table. */
#define PLAN_TIMEOUT_MS	  300000
#define WATCH_INTERVAL_MS 2000
/* Same bound as the daemon's (proto.c): checked here to fail early. */
#define MAX_JOB_NAME 1000

/* The help, around the knob list that settings.c owns (one table serves
 * the daemon and this help, so neither can forget a knob). */
static const char usage_head[] =
	"usage: backfillctl [-s SOCKET | -i NAME] [--timeout SECONDS] COMMAND [ARGS]\n"
	"\n"
	"  status [JOB] [--json] [--all]\n"
	"                  the daemon and its jobs: running, pending, paused and the\n"
	"                  last finished ones; --all: every job (or one by name,\n"
	"                  with its slices)\n"
	"  watch [JOB] [-n SECONDS]\n"
	"                  status redrawn in place until interrupted (every 2 s)\n"
	"  pause [JOB | --all] [--now]\n"
	"                  pause a job, or every job; --now also cancels the batch\n"
	"                  in flight\n"
	"  resume [JOB | --all]\n"
	"                  undo pause; also re-queues a failed job\n"
	"  cancel JOB [--now]\n"
	"                  stop a job (state cancelled; an UPDATE of its row back to\n"
	"                  pending revives it)\n"
	"  set JOB KEY=VALUE...\n"
	"                  change run-time knobs of a job (0/1 knobs also take\n"
	"                  true/false or on/off; byte knobs take 16MB, 1GB, ...):\n";
static const char usage_tail[] =
	"  plan JOB [--json]\n"
	"                  dry run of one batch of a pending, paused or failed job,\n"
	"                  rolled back, and the slices it would be cut into; 5 min\n"
	"                  timeout\n"
	"\n"
	"  -s, --socket SOCKET   control socket\n"
	"  -i, --instance NAME   the instance backfilld@NAME, whose control socket is\n"
	"                        " RUNTIME_DIR "/NAME" INSTANCE_SUFFIX "\n"
	"                        neither -s nor -i: $BACKFILLD_SOCKET, else the\n"
	"                        instance $BACKFILLD_INSTANCE, else\n"
	"                        " DEFAULT_SOCKET "\n"
	"      --timeout SECONDS how long to wait for the answer (default 10)\n"
	"      --version         print the version\n"
	"  -h, --help            print this help\n"
	"\n"
	"Exit status: 0 done, 1 the daemon refused or failed (or did not answer),\n"
	"2 usage, 3 daemon not running, 4 permission denied, 5 no such job.\n";

/* Options, as bits: which command accepts which. */
enum {
	OPT_JSON = 1 << 0,
	OPT_ALL = 1 << 1,
	OPT_NOW = 1 << 2,
	OPT_INTERVAL = 1 << 3,
};

static const char *const option_names[] = {"--json", "--all", "--now", "-n"};

typedef struct ctl {
	const char *socket_path; /* -s */
	const char *instance;	 /* -i */
	/* The socket of -i or $BACKFILLD_INSTANCE, when one of them chose it. */
	char instance_socket[SUN_PATH_SIZE];
	int timeout_ms; /* 0: the command's default */
	int interval_ms;
	unsigned options;
	char **args; /* after the command name */
	int nargs;
	bf_term term;
} ctl;

typedef struct ctl_cmd {
	const char *name;
	int (*run)(ctl *c, const struct ctl_cmd *cmd);
	unsigned options;
	int min_args, max_args; /* -1: any number */
	int timeout_ms;
	const char *args_usage;
} ctl_cmd;

static int usage_error(const char *fmt, ...) BF_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("backfillctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return BF_CTL_USAGE;
}

static void print_usage(FILE *out)
{
	fputs(usage_head, out);
	/* 80 columns: a long description goes on a line of its own. */
	for (const bf_knob *k = bf_knobs; k->name; k++) {
		if (4 + 23 + 1 + strlen(k->what) <= 80)
			fprintf(out, "    %-23s %s\n", k->name, k->what);
		else
			fprintf(out, "    %s\n      %s\n", k->name, k->what);
	}
	fputs(usage_tail, out);
}

/* Job names: the daemon refuses the same, but a local check gives the
 * usage exit status and sends nothing. */
static int check_job(const char *job)
{
	size_t len = strlen(job);

	if (len == 0)
		return usage_error("JOB must not be empty");
	if (len > MAX_JOB_NAME)
		return usage_error("JOB is longer than %d bytes", MAX_JOB_NAME);
	for (const char *p = job; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return usage_error("JOB contains a control character");
	return BF_CTL_OK;
}

/* Sends req; on failure prints the reason, on success hands the result. */
static int ctl_call(ctl *c, const ctl_cmd *cmd, const bf_request *req, json_t **result)
{
	char err[1024];
	int status = bf_ctl_call(c->socket_path, c->timeout_ms ? c->timeout_ms : cmd->timeout_ms,
				 req, result, err, sizeof err);

	if (status != BF_CTL_OK)
		fprintf(stderr, "backfillctl: %s\n", err);
	return status;
}

static int run_status(ctl *c, const ctl_cmd *cmd)
{
	bf_request req = {
		.cmd = BF_CMD_STATUS,
		.job = c->nargs ? c->args[0] : NULL,
		.all = !!(c->options & OPT_ALL),
	};
	json_t *result;
	int status = ctl_call(c, cmd, &req, &result);

	if (status != BF_CTL_OK)
		return status;
	if (c->options & OPT_JSON)
		bf_render_json(stdout, result);
	else
		bf_render_status(stdout, result, &c->term);
	json_decref(result);
	return BF_CTL_OK;
}

static int run_watch(ctl *c, const ctl_cmd *cmd)
{
	return bf_ctl_watch(c->socket_path, c->timeout_ms ? c->timeout_ms : cmd->timeout_ms,
			    c->nargs ? c->args[0] : NULL, c->interval_ms, &c->term);
}

/* pause, resume, cancel, set: one line of acknowledgement. */
static int run_simple(ctl *c, const ctl_cmd *cmd, bf_request *req)
{
	json_t *result;
	int status;

	if (!req->all && !c->nargs)
		return usage_error("%s needs JOB or --all", cmd->name);
	if (req->all && c->nargs)
		return usage_error("%s takes JOB or --all, not both", cmd->name);
	status = ctl_call(c, cmd, req, &result);
	if (status != BF_CTL_OK)
		return status;
	bf_render_message(stdout, result);
	json_decref(result);
	return BF_CTL_OK;
}

static int run_pause(ctl *c, const ctl_cmd *cmd)
{
	bf_request req = {
		.cmd = BF_CMD_PAUSE,
		.job = c->nargs ? c->args[0] : NULL,
		.all = !!(c->options & OPT_ALL),
		.now = !!(c->options & OPT_NOW),
	};

	return run_simple(c, cmd, &req);
}

static int run_resume(ctl *c, const ctl_cmd *cmd)
{
	bf_request req = {
		.cmd = BF_CMD_RESUME,
		.job = c->nargs ? c->args[0] : NULL,
		.all = !!(c->options & OPT_ALL),
	};

	return run_simple(c, cmd, &req);
}

static int run_cancel(ctl *c, const ctl_cmd *cmd)
{
	bf_request req = {
		.cmd = BF_CMD_CANCEL,
		.job = c->args[0],
		.now = !!(c->options & OPT_NOW),
	};

	return run_simple(c, cmd, &req);
}

static int run_set(ctl *c, const ctl_cmd *cmd)
{
	bf_request req = {.cmd = BF_CMD_SET, .job = c->args[0]};
	int status = BF_CTL_USAGE;
	char err[512];

	if (!(req.settings = json_object()))
		return usage_error("out of memory");
	for (int i = 1; i < c->nargs; i++) {
		const bf_knob *knob;
		long long value;

		if (bf_knob_parse_assignment(c->args[i], &knob, &value, err, sizeof err) != 0) {
			usage_error("%s", err);
			goto done;
		}
		if (json_object_get(req.settings, knob->name)) {
			usage_error("%s is given twice", knob->name);
			goto done;
		}
		if (json_object_set_new(req.settings, knob->name, json_integer(value)) != 0) {
			usage_error("out of memory");
			goto done;
		}
	}
	status = run_simple(c, cmd, &req);
done:
	json_decref(req.settings);
	return status;
}

static int run_plan(ctl *c, const ctl_cmd *cmd)
{
	bf_request req = {.cmd = BF_CMD_PLAN, .job = c->args[0]};
	json_t *result;
	int status = ctl_call(c, cmd, &req, &result);

	if (status != BF_CTL_OK)
		return status;
	if (c->options & OPT_JSON)
		bf_render_json(stdout, result);
	else
		bf_render_plan(stdout, result);
	json_decref(result);
	return BF_CTL_OK;
}

static const ctl_cmd commands[] = {
	{"status", run_status, OPT_JSON | OPT_ALL, 0, 1, DEFAULT_TIMEOUT_MS,
	 "[JOB] [--json] [--all]"},
	{"watch", run_watch, OPT_INTERVAL, 0, 1, DEFAULT_TIMEOUT_MS, "[JOB] [-n SECONDS]"},
	{"pause", run_pause, OPT_ALL | OPT_NOW, 0, 1, DEFAULT_TIMEOUT_MS, "[JOB | --all] [--now]"},
	{"resume", run_resume, OPT_ALL, 0, 1, DEFAULT_TIMEOUT_MS, "[JOB | --all]"},
	{"cancel", run_cancel, OPT_NOW, 1, 1, DEFAULT_TIMEOUT_MS, "JOB [--now]"},
	{"set", run_set, 0, 2, -1, DEFAULT_TIMEOUT_MS, "JOB KEY=VALUE..."},
	{"plan", run_plan, OPT_JSON, 1, 1, PLAN_TIMEOUT_MS, "JOB [--json]"},
};

/* SECONDS for --timeout and -n: a positive number, fractions allowed. */
static int parse_seconds(const char *option, const char *text, double min, int *ms)
{
	char *end;
	double s = strtod(text, &end);

	if (end == text || *end || !isfinite(s) || s < min || s > 86400 * 7)
		return usage_error("%s wants a number of seconds from %g to %d, got \"%s\"", option,
				   min, 86400 * 7, text);
	*ms = (int)ceil(s * 1000);
	return BF_CTL_OK;
}

/* The options into c, the other arguments into positional[]. Returns true
 * to go on; false when done (--help, --version: *status BF_CTL_OK) or
 * refused (*status BF_CTL_USAGE, said on stderr). */
static bool parse_options(int argc, char **argv, ctl *c, char **positional, int *npositional,
			  int *status)
{
	static const struct option long_options[] = {
		{"socket", required_argument, NULL, 's'},
		{"instance", required_argument, NULL, 'i'},
		{"timeout", required_argument, NULL, 'T'},
		{"json", no_argument, NULL, 'j'},
		{"interval", required_argument, NULL, 'n'},
		{"all", no_argument, NULL, 'a'},
		{"now", no_argument, NULL, 'N'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	/* "-" first: options and arguments in any order (status --json and
	 * --json status alike) even under POSIXLY_CORRECT; ":" next: missing
	 * arguments reported here, in our words. "--" ends the options, for
	 * a job whose name starts with "-". */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "-:s:i:n:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 1:
			positional[(*npositional)++] = optarg;
			break;
		case 's':
			c->socket_path = optarg;
			break;
		case 'i':
			c->instance = optarg;
			break;
		case 'T':
			if ((*status = parse_seconds("--timeout", optarg, 0.001, &c->timeout_ms)))
				return false;
			break;
		case 'n':
			if ((*status = parse_seconds("-n", optarg, 0.1, &c->interval_ms)))
				return false;
			c->options |= OPT_INTERVAL;
			break;
		case 'j':
			c->options |= OPT_JSON;
			break;
		case 'a':
			c->options |= OPT_ALL;
			break;
		case 'N':
			c->options |= OPT_NOW;
			break;
		case 'V':
			printf("backfillctl %s (control protocol %d)\n", BF_VERSION,
			       BF_PROTO_VERSION);
			*status = BF_CTL_OK;
			return false;
		case 'h':
			print_usage(stdout);
			*status = BF_CTL_OK;
			return false;
		case ':':
			*status = usage_error("option %s needs a value", argv[optind - 1]);
			return false;
		default:
			if (optopt)
				*status = usage_error("unknown option -%c (see backfillctl --help)",
						      optopt);
			else
				*status = usage_error("unknown option %s (see backfillctl --help)",
						      argv[optind - 1]);
			return false;
		}
	}
	while (optind < argc)
		positional[(*npositional)++] = argv[optind++];
	if (c->socket_path && c->instance) {
		*status = usage_error("-s and -i both name the socket: give one of them");
		return false;
	}
	return true;
}

static const ctl_cmd *command_named(const char *name)
{
	const ctl_cmd *cmd = NULL;

	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			cmd = &commands[i];
	return cmd;
}

/* The options and arguments c holds, against what cmd takes: BF_CTL_OK, or
 * BF_CTL_USAGE said on stderr. */
static int check_usage(const ctl *c, const ctl_cmd *cmd)
{
	for (size_t i = 0; i < sizeof option_names / sizeof option_names[0]; i++)
		if ((c->options & ~cmd->options) & (1u << i))
			return usage_error("%s is not an option of %s (usage: backfillctl %s %s)",
					   option_names[i], cmd->name, cmd->name, cmd->args_usage);
	if (c->nargs < cmd->min_args)
		return usage_error("%s needs %s (usage: backfillctl %s %s)", cmd->name,
				   c->nargs ? "KEY=VALUE" : "JOB", cmd->name, cmd->args_usage);
	if (cmd->max_args >= 0 && c->nargs > cmd->max_args)
		return usage_error("too many arguments for %s (usage: backfillctl %s %s)",
				   cmd->name, cmd->name, cmd->args_usage);
	if (c->nargs)
		return check_job(c->args[0]);
	return BF_CTL_OK;
}

/* The socket of instance name (from source: "-i" or "BACKFILLD_INSTANCE")
 * into c->instance_socket. The name becomes a file name in RUNTIME_DIR, so
 * it must be one: no "/", not "." or "..". Returns BF_CTL_OK, or
 * BF_CTL_USAGE said on stderr. */
static int instance_socket(ctl *c, const char *name, const char *source)
{
	size_t len = strlen(name);

	if (len == 0)
		return usage_error("%s: the instance name is empty", source);
	if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return usage_error("%s: the instance name \"%s\" is not a file name (no \"/\", "
				   "not \".\" or \"..\")",
				   source, name);
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return usage_error("%s: the instance name contains a control character",
					   source);
	if (len > MAX_INSTANCE_NAME)
		return usage_error("%s: the instance name is %zu bytes long, more than the %zu "
				   "that fit in a socket path (" RUNTIME_DIR "/NAME.sock)",
				   source, len, (size_t)MAX_INSTANCE_NAME);
	snprintf(c->instance_socket, sizeof c->instance_socket, RUNTIME_DIR "/%s" INSTANCE_SUFFIX,
		 name);
	c->socket_path = c->instance_socket;
	return BF_CTL_OK;
}

/* Which socket: the command line before the environment, and at each level
 * a path before a name: -s, -i, $BACKFILLD_SOCKET, $BACKFILLD_INSTANCE,
 * DEFAULT_SOCKET. An empty variable counts as unset. Returns BF_CTL_OK, or
 * BF_CTL_USAGE said on stderr. */
static int choose_socket(ctl *c)
{
	const char *env;

	/* An empty -s falls through, as it always has. */
	if (c->socket_path && *c->socket_path)
		return BF_CTL_OK;
	if (c->instance)
		return instance_socket(c, c->instance, "-i");
	if ((env = getenv("BACKFILLD_SOCKET")) && *env) {
		c->socket_path = env;
		return BF_CTL_OK;
	}
	if ((env = getenv("BACKFILLD_INSTANCE")) && *env)
		return instance_socket(c, env, "BACKFILLD_INSTANCE");
	c->socket_path = DEFAULT_SOCKET;
	return BF_CTL_OK;
}

/* Runs cmd against the socket; an answer that could not be written out
 * fails, whatever the daemon said. */
static int run_command(ctl *c, const ctl_cmd *cmd)
{
	int status;

	if ((status = choose_socket(c)) != BF_CTL_OK)
		return status;
	bf_term_detect(&c->term, STDOUT_FILENO);
	status = cmd->run(c, cmd);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "backfillctl: cannot write to standard output\n");
		if (status == BF_CTL_OK)
			status = BF_CTL_FAILED;
	}
	return status;
}

int main(int argc, char **argv)
{
	ctl c = {.interval_ms = WATCH_INTERVAL_MS};
	char **positional = calloc((size_t)argc + 1, sizeof *positional);
	int npositional = 0, status;
	const ctl_cmd *cmd;

	if (!positional)
		return usage_error("out of memory");
	if (!parse_options(argc, argv, &c, positional, &npositional, &status))
		goto done;
	if (npositional == 0) {
		print_usage(stderr);
		status = BF_CTL_USAGE;
		goto done;
	}
	if (strcmp(positional[0], "help") == 0) {
		print_usage(stdout);
		status = BF_CTL_OK;
		goto done;
	}
	cmd = command_named(positional[0]);
	if (!cmd) {
		status = usage_error("unknown command \"%s\" (see backfillctl --help)",
				     positional[0]);
		goto done;
	}
	c.args = positional + 1;
	c.nargs = npositional - 1;
	status = check_usage(&c, cmd);
	if (status == BF_CTL_OK)
		status = run_command(&c, cmd);
done:
	free(positional);
	return status;
}
