/* render.c -- the daemon's answers for people: status table, plan summary,
 * acknowledgements. Numbers in human units (4.8M, 52.1k/s, 1h02m).
 */
#include "render.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Cells of the progress bar: 5% each. */
#define BAR_CELLS 20

static const char *jstr(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jnum(const json_t *obj, const char *key, double *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_number(v))
		return 0;
	*out = json_number_value(v);
	return isfinite(*out);
}

static int jtrue(const json_t *obj, const char *key)
{
	return json_is_true(json_object_get(obj, key));
}

/* Prints s cleaned for the terminal (newlines kept only when asked). */
static void put_clean(FILE *out, const char *s, int keep_newlines)
{
	char *clean = bf_term_clean(s, keep_newlines);

	fputs(clean, out);
	bf_term_free(clean);
}

/* 999, 1.2k, 52.1k, 512k, 4.8M: three significant digits at most. */
static void fmt_count(char *buf, size_t len, double v)
{
	static const char units[] = "kMGTPE";
	int unit = -1;

	if (v < 0)
		v = 0;
	while (unit < (int)sizeof units - 2 && v >= 999.5) {
		v /= 1000;
		unit++;
	}
	if (unit < 0)
		snprintf(buf, len, "%.0f", v);
	else if (v < 99.95)
		snprintf(buf, len, "%.1f%c", v, units[unit]);
	else
		snprintf(buf, len, "%.0f%c", v, units[unit]);
}

void bf_render_duration(char *buf, size_t len, double seconds)
{
	if (!(seconds >= 0) || seconds > 1e12) {
		snprintf(buf, len, "-");
		return;
	}
	long long s = llround(seconds);

	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* [#########-----------]  48% on a terminal, 48% otherwise. Never 100%
 * before the end: 99.7% shows as 99%. */
static void fmt_progress(char *buf, size_t len, double progress, int bar)
{
	if (progress < 0)
		progress = 0;
	if (progress > 1)
		progress = 1;
	int percent = (int)floor(progress * 100);

	if (!bar) {
		snprintf(buf, len, "%d%%", percent);
		return;
	}
	int filled = (int)floor(progress * BAR_CELLS);
	char cells[BAR_CELLS + 1];

	memset(cells, '#', (size_t)filled);
	memset(cells + filled, '-', (size_t)(BAR_CELLS - filled));
	cells[BAR_CELLS] = '\0';
	snprintf(buf, len, "[%s]%4d%%", cells, percent);
}

enum {
	COL_NAME,
	COL_STATE,
	COL_PROGRESS,
	COL_SCANNED,
	COL_UPDATED,
	COL_RATE,
	COL_ETA,
	COL_BATCH,
	NCOLS
};

static const struct {
	const char *title;
	int align_right;
} columns[NCOLS] = {
	[COL_NAME] = {"NAME", 0},	  [COL_STATE] = {"STATE", 0},
	[COL_PROGRESS] = {"PROGRESS", 0}, [COL_SCANNED] = {"SCANNED", 1},
	[COL_UPDATED] = {"UPDATED", 1},	  [COL_RATE] = {"RATE", 1},
	[COL_ETA] = {"ETA", 1},		  [COL_BATCH] = {"BATCH", 1},
};

/* One job as its table cells. name and state are cleaned copies (freed
 * by row_free); the rest live in fixed buffers. */
typedef struct job_row {
	const json_t *job;
	char *name, *state;
	char progress[48], scanned[16], updated[16], rate[24], eta[24], batch[24];
	const char *cells[NCOLS];
	const char *state_sgr;
} job_row;

/* Bars line up by themselves; bare percentages line up on the right. */
static int align_right(int column, const bf_term *term)
{
	return column == COL_PROGRESS ? !term->tty : columns[column].align_right;
}

static const char *state_color(const char *state, int throttled)
{
	static const struct {
		const char *state, *sgr;
	} colors[] = {
		{"running", BF_SGR_GREEN},	    {"paused", BF_SGR_YELLOW},
		{"failed", BF_SGR_BOLD BF_SGR_RED}, {"succeeded", BF_SGR_BLUE},
		{"cancelled", BF_SGR_DIM},
	};

	if (!state)
		return NULL;
	if (throttled && strcmp(state, "running") == 0)
		return BF_SGR_YELLOW;
	for (size_t i = 0; i < sizeof colors / sizeof colors[0]; i++)
		if (strcmp(colors[i].state, state) == 0)
			return colors[i].sgr;
	return NULL;
}

static void row_fill(job_row *row, const json_t *job, const bf_term *term)
{
	const char *name = jstr(job, "name"), *state = jstr(job, "state"),
		   *phase = jstr(job, "phase");
	double v;

	row->job = job;
	row->name = bf_term_clean(name ? name : "-", 0);
	if (phase && *phase) {
		size_t len = strlen(state ? state : "-") + strlen(phase) + 4;
		char *both = malloc(len);

		if (both)
			snprintf(both, len, "%s (%s)", state ? state : "-", phase);
		row->state = bf_term_clean(both ? both : "?", 0);
		free(both);
	} else {
		row->state = bf_term_clean(state ? state : "-", 0);
	}
	row->state_sgr = term->color ? state_color(state, jtrue(job, "throttled")) : NULL;

	if (jnum(job, "progress", &v))
		fmt_progress(row->progress, sizeof row->progress, v, term->tty);
	else
		snprintf(row->progress, sizeof row->progress, "-");
	if (jnum(job, "rows_scanned", &v))
		fmt_count(row->scanned, sizeof row->scanned, v);
	else
		snprintf(row->scanned, sizeof row->scanned, "-");
	if (jnum(job, "rows_updated", &v))
		fmt_count(row->updated, sizeof row->updated, v);
	else
		snprintf(row->updated, sizeof row->updated, "-");
	/* A rate is news only while the job runs; a stopped job's is stale,
	 * and a paused one's is 0 (the daemon says so): "-" for both. */
	if (jnum(job, "rate_rows_s", &v) && v > 0 && state && strcmp(state, "running") == 0) {
		if (v > 0 && v < 9.95)
			snprintf(row->rate, sizeof row->rate, "%.1f/s", v);
		else {
			fmt_count(row->rate, sizeof row->rate - 2, v);
			strcat(row->rate, "/s");
		}
	} else {
		snprintf(row->rate, sizeof row->rate, "-");
	}
	if (jnum(job, "eta_s", &v))
		bf_render_duration(row->eta, sizeof row->eta, v);
	else
		snprintf(row->eta, sizeof row->eta, "-");
	if (jnum(job, "batch_size", &v))
		snprintf(row->batch, sizeof row->batch, "%.0f", v);
	else
		snprintf(row->batch, sizeof row->batch, "-");

	row->cells[COL_NAME] = row->name;
	row->cells[COL_STATE] = row->state;
	row->cells[COL_PROGRESS] = row->progress;
	row->cells[COL_SCANNED] = row->scanned;
	row->cells[COL_UPDATED] = row->updated;
	row->cells[COL_RATE] = row->rate;
	row->cells[COL_ETA] = row->eta;
	row->cells[COL_BATCH] = row->batch;
}

static void row_free(job_row *row)
{
	bf_term_free(row->name);
	bf_term_free(row->state);
}

/* A line built in memory, then written folded to the terminal's width. */
typedef struct folded_line {
	FILE *f;
	char *text;
	size_t len;
} folded_line;

static FILE *line_open(folded_line *l)
{
	l->text = NULL;
	l->len = 0;
	l->f = open_memstream(&l->text, &l->len);
	return l->f;
}

/* indent: of the lines after the first. */
static void line_emit(folded_line *l, FILE *out, const bf_term *term, int indent, const char *sgr)
{
	if (!l->f)
		return;
	if (fclose(l->f) == 0 && l->text)
		bf_term_put_folded(out, l->text, term->columns, indent, term->color ? sgr : NULL);
	free(l->text);
}

/* "pid 4242 (user app, application psql, idle in transaction for 40s)" */
static void render_blocker(FILE *out, const json_t *blocker)
{
	const char *user = jstr(blocker, "user"), *app = jstr(blocker, "application"),
		   *state = jstr(blocker, "state");
	double pid, state_s, xact_s;
	char took[24];
	int parens = 0;

	if (!jnum(blocker, "pid", &pid))
		return;
	fprintf(out, "pid %.0f", pid);
	if (user && *user) {
		fprintf(out, "%suser ", parens++ ? ", " : " (");
		put_clean(out, user, 0);
	}
	if (app && *app) {
		fprintf(out, "%sapplication ", parens++ ? ", " : " (");
		put_clean(out, app, 0);
	}
	if (state && *state) {
		fputs(parens++ ? ", " : " (", out);
		put_clean(out, state, 0);
		if (jnum(blocker, "state_s", &state_s)) {
			bf_render_duration(took, sizeof took, state_s);
			fprintf(out, " for %s", took);
		}
	}
	if (jnum(blocker, "xact_s", &xact_s)) {
		bf_render_duration(took, sizeof took, xact_s);
		fprintf(out, "%stransaction open %s", parens++ ? ", " : " (", took);
	}
	if (parens)
		fputc(')', out);
}

/* Whom the job's batch waits for, in words an operator can act on. */
static void render_blocked(FILE *out, const json_t *job, const bf_term *term)
{
	const json_t *blockers = json_object_get(job, "blocked_by");
	size_t n = json_is_array(blockers) ? json_array_size(blockers) : 0;
	double waiting;
	char took[24];
	folded_line l;

	if (n == 0 || !line_open(&l))
		return;
	fputs("  batch waiting for a lock", l.f);
	if (jnum(job, "lock_wait_s", &waiting)) {
		bf_render_duration(took, sizeof took, waiting);
		fprintf(l.f, " for %s", took);
	}
	fputs(", held by ", l.f);
	for (size_t i = 0; i < n; i++) {
		fputs(i == 0 ? "" : i + 1 == n ? " and " : ", ", l.f);
		render_blocker(l.f, json_array_get(blockers, i));
	}
	line_emit(&l, out, term, 4, BF_SGR_YELLOW);
	if (line_open(&l)) {
		fputs("  (the batch retries after its lock_timeout; pg_terminate_backend(PID) "
		      "ends a session that holds it)",
		      l.f);
		line_emit(&l, out, term, 4, NULL);
	}
}

/* A running job another daemon holds: after a crash it stays "running"
 * under a dead owner until the lease ends, so say who and until when. */
static void render_lease(FILE *out, const json_t *job, const char *owner, const bf_term *term)
{
	const char *until = jstr(job, "lease_until"), *state = jstr(job, "state");
	const json_t *alive = json_object_get(job, "owner_alive");
	double left;
	char took[24];
	folded_line l;

	if (!line_open(&l))
		return;
	if (!state || strcmp(state, "running") != 0 || !jnum(job, "lease_expires_in_s", &left)) {
		fputs("  owner: ", l.f);
		put_clean(l.f, owner, 0);
		line_emit(&l, out, term, 4, NULL);
		return;
	}
	fputs("  lease held by ", l.f);
	put_clean(l.f, owner, 0);
	fputs(json_is_false(alive) ? " (not this daemon; that process is gone)"
				   : " (another daemon)",
	      l.f);
	bf_render_duration(took, sizeof took, left < 0 ? -left : left);
	if (left >= 0) {
		fprintf(l.f, ", expires in %s", took);
		if (until) {
			fputs(" (at ", l.f);
			put_clean(l.f, until, 0);
			fputc(')', l.f);
		}
		fputs(json_is_false(alive) ? "; another daemon takes the job over then"
					   : "; if that daemon is gone, another takes the job "
					     "over then",
		      l.f);
	} else {
		fprintf(l.f,
			", expired %s ago; the next daemon with a free job slot takes the job "
			"over",
			took);
	}
	line_emit(&l, out, term, 4, NULL);
}

/* The lines beneath a job: why it is held back, how long it was, its last
 * error, and who runs it when this daemon does not. */
static void render_job_details(FILE *out, const json_t *job, const bf_term *term)
{
	const json_t *reasons = json_object_get(job, "throttle_reasons");
	const char *last_error = jstr(job, "last_error"), *owner = jstr(job, "owner");
	json_t *here = json_object_get(job, "here");
	double throttled_s, share, v;

	if (jtrue(job, "throttled")) {
		size_t n = json_is_array(reasons) ? json_array_size(reasons) : 0, shown = 0;

		fprintf(out, "  %sheld back", term->color ? BF_SGR_YELLOW : "");
		for (size_t i = 0; i < n; i++) {
			const char *reason = json_string_value(json_array_get(reasons, i));

			if (!reason)
				continue;
			/* One signal a line: several often hold at once. */
			fputs(shown++ ? "\n             " : ": ", out);
			put_clean(out, reason, 0);
		}
		if (!shown)
			fputs(" (no reason given)", out);
		fprintf(out, "%s\n", term->color ? BF_SGR_RESET : "");
	}
	if (jnum(job, "throttled_s", &throttled_s) && throttled_s >= 1) {
		char took[24];

		bf_render_duration(took, sizeof took, throttled_s);
		fprintf(out, "  throttled %s", took);
		if (jnum(job, "throttled_share", &share))
			fprintf(out, " (%.0f%% of its run time)", share * 100);
		fputc('\n', out);
	}
	if (jnum(job, "sessions_waited", &v) && v >= 1)
		fprintf(out,
			"  application sessions that waited on its batches: %.0f"
			" (batch size kept small while they do)\n",
			v);
	if (jnum(job, "rows_left", &v) && v >= 1)
		fprintf(out,
			"  rows left above the walked range: %.0f (inserted after its last catch-up"
			" round and still matching where_clause)\n",
			v);
	if (jtrue(job, "repairing"))
		fputs("  repair pass: walking the range again after a failed verification\n", out);
	else if (jtrue(job, "verification_failed"))
		fputs("  verification failed: resume walks the whole range again (a repair pass)\n",
		      out);
	if (last_error && *last_error) {
		fprintf(out, "  %slast error: ", term->color ? BF_SGR_RED : "");
		put_clean(out, last_error, 0);
		fprintf(out, "%s\n", term->color ? BF_SGR_RESET : "");
	}
	render_blocked(out, job, term);
	if (json_is_false(here) && owner && *owner)
		render_lease(out, job, owner, term);
}

/* "{1200}" of a key as text[], or the words for none. */
static void put_key(FILE *out, const json_t *key, const char *none)
{
	char *text = json_is_array(key) ? json_dumps(key, JSON_COMPACT) : NULL;

	put_clean(out, text ? text : none, 0);
	free(text);
}

/* status JOB of a job walked as several ranges: one line each. */
static void render_slices(FILE *out, const json_t *job, const bf_term *term)
{
	const json_t *slices = json_object_get(job, "slices"), *sl;
	size_t i, n = json_is_array(slices) ? json_array_size(slices) : 0;
	double v, est;
	char count[32], of[32];
	folded_line l;

	if (n < 2)
		return;
	json_array_foreach(slices, i, sl) {
		if (!line_open(&l))
			return;
		fprintf(l.f, "  slice %zu/%zu  ", i + 1, n);
		put_clean(l.f, jstr(sl, "state") ? jstr(sl, "state") : "?", 0);
		fmt_count(count, sizeof count, jnum(sl, "rows_scanned", &v) ? v : 0);
		if (jnum(sl, "rows_estimate", &est) && est > 0) {
			fmt_count(of, sizeof of, est);
			fprintf(l.f, "  %s of about %s rows", count, of);
		} else {
			fprintf(l.f, "  %s rows", count);
		}
		fputs("  keys ", l.f);
		put_key(l.f, json_object_get(sl, "lower_bound"), "from the first");
		fputs(" .. ", l.f);
		put_key(l.f, json_object_get(sl, "upper_bound"), "?");
		if (jstr(sl, "phase") && jstr(sl, "owner")) {
			fputs("  ", l.f);
			put_clean(l.f, jstr(sl, "phase"), 0);
		}
		if (jnum(sl, "batch_size", &v) && jstr(sl, "owner"))
			fprintf(l.f, ", batch %.0f", v);
		if (jtrue(sl, "here"))
			fputs("  (this daemon)", l.f);
		else if (jstr(sl, "owner")) {
			fputs("  owner ", l.f);
			put_clean(l.f, jstr(sl, "owner"), 0);
		}
		if (jstr(sl, "last_error")) {
			fputs("  error: ", l.f);
			put_clean(l.f, jstr(sl, "last_error"), 0);
		}
		line_emit(&l, out, term, 4, NULL);
	}
}

static void render_jobs(FILE *out, const json_t *jobs, const bf_term *term)
{
	size_t n = json_is_array(jobs) ? json_array_size(jobs) : 0, width[NCOLS];
	job_row *rows;

	if (n == 0) {
		fputs("no jobs\n", out);
		return;
	}
	if (!(rows = calloc(n, sizeof *rows))) {
		fputs("(out of memory)\n", out);
		return;
	}
	for (int c = 0; c < NCOLS; c++)
		width[c] = strlen(columns[c].title);
	for (size_t i = 0; i < n; i++) {
		row_fill(&rows[i], json_array_get(jobs, i), term);
		for (int c = 0; c < NCOLS; c++) {
			size_t w = bf_term_width(rows[i].cells[c]);

			if (w > width[c])
				width[c] = w;
		}
	}
	for (int c = 0; c < NCOLS; c++) {
		bf_term_cell(out, columns[c].title, width[c], align_right(c, term), NULL);
		fputs(c == NCOLS - 1 ? "\n" : "  ", out);
	}
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < NCOLS; c++) {
			bf_term_cell(out, rows[i].cells[c], width[c], align_right(c, term),
				     c == COL_STATE ? rows[i].state_sgr : NULL);
			fputs(c == NCOLS - 1 ? "\n" : "  ", out);
		}
		render_job_details(out, rows[i].job, term);
		/* One job asked for (status JOB): its ranges too. */
		if (n == 1)
			render_slices(out, rows[i].job, term);
		row_free(&rows[i]);
	}
	free(rows);
}

/* backfilld 0.1.0 (pid 123, up 3h12m) on db-host:123 - 2 of 4 job slots busy
 * - database connected */
static void render_daemon_line(FILE *out, const json_t *daemon)
{
	const json_t *db = json_object_get(daemon, "database");
	const char *version = jstr(daemon, "version"), *owner = jstr(daemon, "owner");
	double pid, uptime, here, max;
	int parens = 0;
	char up[24];

	fputs("backfilld ", out);
	put_clean(out, version ? version : "(unknown version)", 0);
	if (jnum(daemon, "pid", &pid))
		fprintf(out, "%s%.0f", parens++ ? ", " : " (pid ", pid);
	if (jnum(daemon, "uptime_s", &uptime)) {
		bf_render_duration(up, sizeof up, uptime);
		fprintf(out, "%sup %s", parens++ ? ", " : " (", up);
	}
	if (parens)
		fputc(')', out);
	if (owner && *owner) {
		fputs(" on ", out);
		put_clean(out, owner, 0);
	}
	if (jnum(daemon, "jobs_here", &here) && jnum(daemon, "max_jobs", &max))
		fprintf(out, " - %.0f of %.0f job slots busy", here, max);
	if (jtrue(db, "connected"))
		fputs(" - database connected", out);
}

/* The header: the daemon's line, then, loudly, what stops every job. Each
 * line folded to the terminal's width (watch redraws in place: a line the
 * terminal wraps itself would scroll the frame). */
static void render_daemon(FILE *out, const json_t *daemon, const bf_term *term)
{
	const json_t *db = json_object_get(daemon, "database");
	folded_line l;

	if (line_open(&l))
		render_daemon_line(l.f, daemon);
	line_emit(&l, out, term, 2, NULL);
	if (jtrue(daemon, "paused") && line_open(&l)) {
		const char *since = jstr(daemon, "paused_since");

		fputs("ALL JOBS PAUSED", l.f);
		if (since) {
			fputs(" since ", l.f);
			put_clean(l.f, since, 0);
		}
		fputs(" (backfillctl resume --all)", l.f);
		line_emit(&l, out, term, 2, BF_SGR_BOLD BF_SGR_YELLOW);
	}
	if (jtrue(daemon, "stopping") && line_open(&l)) {
		fputs("daemon is shutting down", l.f);
		line_emit(&l, out, term, 2, BF_SGR_BOLD);
	}
	if (json_is_object(db) && !jtrue(db, "connected") && line_open(&l)) {
		const char *error = jstr(db, "error");

		fputs("database unreachable", l.f);
		if (error && *error) {
			fputs(": ", l.f);
			put_clean(l.f, error, 0);
		}
		line_emit(&l, out, term, 2, BF_SGR_BOLD BF_SGR_RED);
	}
}

void bf_render_status(FILE *out, const json_t *result, const bf_term *term)
{
	const json_t *daemon = json_object_get(result, "daemon");
	const char *partial = jstr(result, "partial_reason");
	double omitted;
	folded_line l;

	if (json_is_object(daemon))
		render_daemon(out, daemon, term);
	if (jtrue(result, "partial") && line_open(&l)) {
		fputs("PARTIAL: only the jobs this daemon runs, from its memory", l.f);
		if (partial && *partial) {
			fputs(" (", l.f);
			put_clean(l.f, partial, 0);
			fputc(')', l.f);
		}
		line_emit(&l, out, term, 2, BF_SGR_BOLD BF_SGR_YELLOW);
	}
	if (json_is_object(daemon) || jtrue(result, "partial"))
		fputc('\n', out);
	render_jobs(out, json_object_get(result, "jobs"), term);
	if (jnum(result, "jobs_omitted", &omitted) && omitted >= 1)
		fprintf(out, "(%.0f older finished job%s not shown: backfillctl status --all)\n",
			omitted, omitted == 1 ? "" : "s");
}

/* ", about 3m20s at this pace", or what the rate limit makes of it. */
static void render_plan_total(FILE *out, const json_t *result, double total)
{
	const char *limited_by = jstr(result, "limited_by"),
		   *from = jstr(result, "max_rows_per_s_from");
	double limit, paced;
	char buf[32], rate[32];
	int have_limit = jnum(result, "max_rows_per_s", &limit);

	bf_render_duration(buf, sizeof buf, total);
	if (have_limit)
		fmt_count(rate, sizeof rate, limit);
	if (limited_by && have_limit) {
		fprintf(out, ", about %s at %s of %s rows/s", buf, limited_by, rate);
		if (jnum(result, "estimated_paced_s", &paced)) {
			bf_render_duration(buf, sizeof buf, paced);
			fprintf(out, " (%s at the measured pace)", buf);
		}
	} else if (have_limit) {
		fprintf(out, ", about %s at this pace (under %s of %s rows/s)", buf,
			from ? from : "a rate limit", rate);
	} else {
		fprintf(out, ", about %s at this pace", buf);
	}
	fputs(", without the verification pass", out);
}

/* (a, b): a range's bound, each key column as text. */
static void render_key(FILE *out, const json_t *key)
{
	size_t i;
	const json_t *column;

	fputc('(', out);
	json_array_foreach(key, i, column)
	{
		if (i)
			fputs(", ", out);
		put_clean(out, json_is_string(column) ? json_string_value(column) : "?", 0);
	}
	fputc(')', out);
}

/* The first ranges of the split are enough to see its shape; --json has
 * them all (up to 64). */
#define PLAN_RANGES_SHOWN 8

/* "slices: 4 requested, 4 ranges (...)", a line per range, and the ideal
 * duration with that many slices, said to be the ideal. */
static void render_plan_slices(FILE *out, const json_t *result)
{
	const json_t *slices = json_object_get(result, "slices");
	const json_t *ranges = json_object_get(slices, "ranges"), *range;
	const char *method = jstr(slices, "method");
	double requested, percent, rows, eta, limited;
	size_t i, n = json_array_size(ranges);
	char buf[32];

	if (!json_is_object(slices) || !jnum(slices, "requested", &requested))
		return;
	fprintf(out, "slices: %.0f requested, %zu range%s", requested, n, n == 1 ? "" : "s");
	if (jnum(slices, "sample_percent", &percent))
		fprintf(out, " (cut at a sample of %.2g%% of the table's pages)\n", percent);
	else
		fprintf(out, " (%s read)\n", method ? method : "every key");
	json_array_foreach(ranges, i, range)
	{
		const json_t *lower = json_object_get(range, "lower_bound"),
			     *upper = json_object_get(range, "upper_bound");

		if (i == PLAN_RANGES_SHOWN) {
			fprintf(out, "  ... %zu more (--json lists them)\n", n - i);
			break;
		}
		fprintf(out, "  %2zu  ", i + 1);
		if (json_is_array(lower)) {
			fputs("after ", out);
			render_key(out, lower);
		} else {
			fputs("from the first key", out);
		}
		if (json_is_array(upper)) {
			fputs(" to ", out);
			render_key(out, upper);
		} else {
			fputs(" (no key)", out);
		}
		if (jnum(range, "rows_estimate", &rows)) {
			fmt_count(buf, sizeof buf, rows);
			fprintf(out, ": about %s rows", buf);
		}
		fputc('\n', out);
	}
	if (!jnum(slices, "eta_s", &eta))
		return;
	bf_render_duration(buf, sizeof buf, eta);
	fprintf(out, "with %zu slice%s: about %s at best (", n, n == 1 ? "" : "s", buf);
	/* The rate limit is the job's total: its slices share it. */
	if (jnum(result, "estimated_rate_limited_s", &limited) && limited >= eta)
		fputs("the rate limit, which the slices share", out);
	else
		fprintf(out, "the estimate above / %zu", n);
	fputs(": the ideal;\n  real scaling is lower, measured in BENCHMARKS.md)\n", out);
}

void bf_render_plan(FILE *out, const json_t *result)
{
	const char *job = jstr(result, "job"), *table = jstr(result, "table"),
		   *plan = jstr(result, "plan"), *note = jstr(result, "note");
	double batch_size, rows, ms, estimate, batches, total;
	char buf[32];

	fputs("plan for job \"", out);
	put_clean(out, job ? job : "?", 0);
	fputs("\" on ", out);
	put_clean(out, table ? table : "?", 0);
	fputs(": one batch", out);
	int have_size = jnum(result, "batch_size", &batch_size);

	if (jnum(result, "batch_rows", &rows)) {
		fprintf(out, " of %.0f rows", rows);
		if (have_size && batch_size != rows)
			fprintf(out, " (batch size %.0f)", batch_size);
	} else if (have_size) {
		fprintf(out, " of at most %.0f rows", batch_size);
	}
	if (jnum(result, "duration_ms", &ms))
		fprintf(out, ms < 10 ? " took %.1f ms" : " took %.0f ms", ms);
	fputs(" (rolled back)\n", out);

	if (jnum(result, "rows_estimate", &estimate)) {
		fmt_count(buf, sizeof buf, estimate);
		fprintf(out, "table: about %s rows", buf);
		if (jnum(result, "estimated_batches", &batches)) {
			fmt_count(buf, sizeof buf, batches);
			fprintf(out, " -> about %s batches", buf);
		}
		if (jnum(result, "estimated_total_s", &total))
			render_plan_total(out, result, total);
		fputc('\n', out);
	} else {
		fputs("table: size unknown (no statistics yet)\n", out);
	}
	render_plan_slices(out, result);

	if (plan && *plan) {
		char *clean = bf_term_clean(plan, 1);

		fputc('\n', out);
		for (char *line = clean, *next; line && *line; line = next) {
			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			fprintf(out, "  %s\n", line);
		}
		bf_term_free(clean);
		fputc('\n', out);
	}
	if (note && *note) {
		put_clean(out, note, 0);
		fputc('\n', out);
	}
}

void bf_render_message(FILE *out, const json_t *result)
{
	const char *message = jstr(result, "message");

	put_clean(out, message && *message ? message : "ok", 0);
	fputc('\n', out);
}

void bf_render_json(FILE *out, const json_t *result)
{
	/* 15 digits: 0.48, not the 0.47999999999999998 of an exact dump. */
	json_dumpf(result, out, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
	fputc('\n', out);
}
