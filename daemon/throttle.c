/* throttle.c -- judging a sample against a job's limits, with hysteresis. */
#include "throttle.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct eval {
	bf_holds *holds;
	uint64_t now_ns;
	int64_t ahead; /* WAL written since the sample */
	char (*reasons)[BF_THROTTLE_REASON_LEN];
	int max, n;
	char estimates[BF_THROTTLE_MAX_HOLDS][BF_THROTTLE_REASON_LEN]; /* go after the holds */
	int nestimates;
	bf_throttle_change *changes;
	int maxchanges, nchanges;
} eval;

static int hold_find(const bf_holds *holds, const char *key)
{
	for (int i = 0; i < holds->n; i++)
		if (strcmp(holds->h[i].key, key) == 0)
			return i;
	return -1;
}

/* The signal `key` holds the job now, for the reason given. */
static void hold(eval *e, const char *key, const char *fmt, ...)
{
	char reason[BF_THROTTLE_REASON_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (e->n < e->max)
		memcpy(e->reasons[e->n++], reason, sizeof(reason));

	int i = hold_find(e->holds, key);

	if (i >= 0) {
		e->holds->h[i].seen = 1;
		return;
	}
	if (e->holds->n == BF_THROTTLE_MAX_HOLDS)
		return; /* reported, just not remembered: no hysteresis for it */
	i = e->holds->n++;
	snprintf(e->holds->h[i].key, sizeof(e->holds->h[i].key), "%s", key);
	e->holds->h[i].since_ns = e->now_ns;
	e->holds->h[i].seen = 1;
	if (e->changes && e->nchanges < e->maxchanges) {
		bf_throttle_change *c = &e->changes[e->nchanges++];

		snprintf(c->key, sizeof(c->key), "%s", key);
		memcpy(c->reason, reason, sizeof(reason));
		c->started = 1;
		c->held_s = 0;
	}
}

/* Hysteresis: holds above high; once holding, until at or below low.
 * Returns the limit that applies (>0) when holding, 0 when not. */
static int64_t over(const eval *e, const char *key, int64_t value, int64_t high, int64_t low)
{
	if (high <= 0)
		return 0; /* the signal is off */
	if (low <= 0 || low > high)
		low = high; /* no low mark: resume at the high mark */
	if (value > high)
		return high;
	if (hold_find(e->holds, key) >= 0 && value > low)
		return low > 0 ? low : -1;
	return 0;
}

/* A byte lag sampled under its high mark, not holding: the WAL written
 * since the sample may have taken it past the mark, and no standby or
 * consumer can have confirmed any of it when the sample was taken. Assume
 * none was replayed since (the lag can only be smaller): if the estimate
 * reaches the mark, the next batch waits for a fresh sample, which is then
 * judged as usual. Not a hold: nothing for hysteresis or the log. */
static void estimate_bytes(eval *e, const char *signal, const char *name, int64_t value,
			   int64_t high)
{
	char v[32], l[32];

	if (high <= 0 || e->ahead <= 0 || e->ahead < high - value)
		return;
	bf_format_bytes(v, sizeof(v), e->ahead > INT64_MAX - value ? INT64_MAX : value + e->ahead);
	bf_format_bytes(l, sizeof(l), high);
	if (e->nestimates < BF_THROTTLE_MAX_HOLDS)
		snprintf(e->estimates[e->nestimates++], BF_THROTTLE_REASON_LEN,
			 "%s %s: about %s estimated (WAL written since the last sample), high mark "
			 "%s; sampling now",
			 signal, name, v, l);
}

static void hold_bytes(eval *e, const char *signal, const char *name, int64_t value,
		       int64_t high, int64_t low)
{
	char key[96], v[32], l[32];
	int64_t limit;

	snprintf(key, sizeof(key), "%s %s", signal, name);
	if (!(limit = over(e, key, value, high, low))) {
		estimate_bytes(e, signal, name, value, high);
		return;
	}
	bf_format_bytes(v, sizeof(v), value);
	if (limit == high) {
		bf_format_bytes(l, sizeof(l), high);
		hold(e, key, "%s %s %s > %s", signal, name, v, l);
	} else {
		bf_format_bytes(l, sizeof(l), limit > 0 ? limit : 0);
		hold(e, key, "%s %s %s, held until at most %s (low mark)", signal, name, v, l);
	}
}

static void hold_ms(eval *e, const char *signal, const char *name, int64_t value, int64_t high,
		    int64_t low)
{
	char key[96];
	int64_t limit;

	snprintf(key, sizeof(key), "%s %s", signal, name);
	if (!(limit = over(e, key, value, high, low)))
		return;
	if (limit == high)
		hold(e, key, "%s %s %.1f s > %.1f s", signal, name, (double)value / 1000.0,
		     (double)high / 1000.0);
	else
		hold(e, key, "%s %s %.1f s, held until at most %.1f s (low mark)", signal, name,
		     (double)value / 1000.0, limit > 0 ? (double)limit / 1000.0 : 0.0);
}

static void eval_expected(eval *e, const bf_sample *s, const char *list)
{
	char name[64], key[96];

	for (const char *p = list; p && *p;) {
		size_t n = strcspn(p, ",");
		const char *state = NULL;

		snprintf(name, sizeof(name), "%.*s", (int)(n < 63 ? n : 63), p);
		p += n + (p[n] == ',');
		if (!name[0])
			continue;
		for (int i = 0; i < s->nstandbys; i++) {
			if (strcmp(s->standbys[i].name, name) != 0)
				continue;
			if (!state || strcmp(s->standbys[i].state, "streaming") == 0)
				state = s->standbys[i].state;
		}
		snprintf(key, sizeof(key), "standby %s", name);
		if (!state)
			hold(e, key, "standby %s missing from pg_stat_replication (expected)", name);
		else if (strcmp(state, "streaming") != 0)
			hold(e, key, "standby %s not streaming (state %s)", name, state);
	}
}

static void eval_standbys(eval *e, const bf_sample *s, const bf_limits *l)
{
	for (int i = 0; i < s->nstandbys; i++) {
		const bf_standby_sample *sb = &s->standbys[i];
		char name[80], key[128];
		int same = 0;

		/* Standbys left at the default application_name share it:
		 * number them, so that each keeps its own hysteresis. */
		for (int j = 0; j < i; j++)
			same += strcmp(s->standbys[j].name, sb->name) == 0;
		snprintf(name, sizeof(name), "%s", sb->name[0] ? sb->name : "(unnamed)");
		if (same)
			snprintf(name + strlen(name), sizeof(name) - strlen(name), "#%d", same + 1);

		/* A base backup in progress is not a standby to wait for. */
		if (strcmp(sb->state, "backup") == 0 && !bf_list_has(l->expected_standbys, sb->name))
			continue;
		if (sb->lag_bytes < 0) {
			/* No replay position: a standby just starting, or a WAL
			 * receiver that applies nothing (pg_receivewal, Barman, a
			 * base backup's WAL stream). Only an expected standby
			 * must report one. */
			if (!bf_list_has(l->expected_standbys, sb->name))
				continue;
			snprintf(key, sizeof(key), "replay_lag_bytes %s", name);
			hold(e, key, "replay_lag_bytes %s unknown (no replay position reported yet)",
			     name);
			continue;
		}
		hold_bytes(e, "replay_lag_bytes", name, sb->lag_bytes, l->replay_lag_high_bytes,
			   l->replay_lag_low_bytes);
		hold_ms(e, "replay_lag_time", name, sb->lag_ms, l->replay_lag_high_ms,
			l->replay_lag_low_ms);
	}
}

static void eval_slots(eval *e, const bf_sample *s, const bf_limits *l)
{
	if (l->slots == BF_SLOTS_OFF)
		return;
	for (int i = 0; i < s->nslots; i++) {
		const bf_slot_sample *sl = &s->slots[i];

		if (sl->lag_bytes < 0 || (l->slots == BF_SLOTS_ACTIVE && !sl->active))
			continue;
		hold_bytes(e, "slot_lag_bytes", sl->name, sl->lag_bytes, l->slot_lag_high_bytes,
			   l->slot_lag_low_bytes);
	}
}

int bf_throttle_eval(const bf_sample *s, const bf_limits *l, bf_holds *holds, uint64_t now_ns,
		     int64_t ahead_bytes, char (*reasons)[BF_THROTTLE_REASON_LEN], int max,
		     int *nestimated, bf_throttle_change *changes, int maxchanges, int *nchanges)
{
	eval e = {.holds = holds,
		  .now_ns = now_ns,
		  .ahead = ahead_bytes,
		  .reasons = reasons,
		  .max = max,
		  .changes = changes,
		  .maxchanges = maxchanges};
	int judged = 0;

	for (int i = 0; i < holds->n; i++)
		holds->h[i].seen = 0;
	if (s->taken_ns == 0) {
		hold(&e, "replication sample", "replication: no sample taken yet");
	} else if (s->error[0]) {
		hold(&e, "replication sample", "replication: cannot sample: %s", s->error);
	} else if (l->stale_ms > 0 && now_ns > s->taken_ns &&
		   (now_ns - s->taken_ns) / 1000000 > (uint64_t)l->stale_ms) {
		hold(&e, "replication sample",
		     "replication: the last sample is %.1f s old (sampling stalled; at most %.1f s)",
		     (double)(now_ns - s->taken_ns) / 1e9, (double)l->stale_ms / 1000.0);
	} else {
		judged = 1;
		int expected = l->expected_standbys && *l->expected_standbys;

		if (!s->privileged && (s->nstandbys > 0 || expected)) {
			/* Without pg_monitor, pg_stat_replication shows the
			 * standbys but not where they are: NULL is not 0. */
			hold(&e, "replication privilege",
			     "replication: role \"%s\" lacks pg_monitor: pg_stat_replication hides "
			     "the standbys' positions (GRANT pg_monitor TO \"%s\")",
			     s->role, s->role);
		} else {
			eval_expected(&e, s, l->expected_standbys);
			eval_standbys(&e, s, l);
		}
		eval_slots(&e, s, l);
		if (s->locks_error[0])
			hold(&e, "blocking check",
			     "blocking check: cannot look for sessions blocked by our batches: %s",
			     s->locks_error);
		if (s->query_set && s->query_holds)
			hold(&e, "throttle query", "throttle query: %s", s->query_reason);
	}

	/* What no longer holds ends; a failed sample keeps the old holds: it
	 * cannot tell that they are over. */
	int kept = 0;

	for (int i = 0; i < holds->n; i++) {
		if (holds->h[i].seen || !judged) {
			holds->h[kept++] = holds->h[i];
			continue;
		}
		if (changes && e.nchanges < maxchanges) {
			bf_throttle_change *c = &changes[e.nchanges++];

			snprintf(c->key, sizeof(c->key), "%s", holds->h[i].key);
			c->reason[0] = '\0';
			c->started = 0;
			c->held_s = (double)(now_ns - holds->h[i].since_ns) / 1e9;
		}
	}
	holds->n = kept;
	if (nchanges)
		*nchanges = e.nchanges;
	int n = e.n;

	for (int i = 0; i < e.nestimates && n < max; i++)
		memcpy(reasons[n++], e.estimates[i], BF_THROTTLE_REASON_LEN);
	if (nestimated)
		*nestimated = n - e.n;
	return n;
}

int64_t bf_throttle_ahead(const bf_sample *s, uint64_t written_lsn)
{
	/* No position (a failed sample): nothing to measure from; the
	 * failure holds by itself. */
	if (!s->current_lsn || written_lsn <= s->current_lsn)
		return 0;
	uint64_t ahead = written_lsn - s->current_lsn;

	return ahead > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ahead;
}

uint64_t bf_lsn_parse(const char *text)
{
	char *end;

	if (!text || !*text)
		return 0;
	if (!isxdigit((unsigned char)*text))
		return 0;
	unsigned long long hi = strtoull(text, &end, 16);

	if (*end != '/' || !isxdigit((unsigned char)end[1]))
		return 0;
	unsigned long long lo = strtoull(end + 1, &end, 16);

	if (*end || hi > 0xffffffffULL || lo > 0xffffffffULL)
		return 0;
	return ((uint64_t)hi << 32) | (uint64_t)lo;
}

void bf_format_bytes(char *buf, size_t len, int64_t bytes)
{
	static const char *const units[] = {"kB", "MB", "GB", "TB"};
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024 && bytes > -1024) {
		snprintf(buf, len, "%lld bytes", (long long)bytes);
		return;
	}
	while ((v >= 1024 || v <= -1024) && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
}

int bf_list_has(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; p && *p;) {
		size_t n = strcspn(p, ",");

		if (n == len && strncmp(p, name, n) == 0)
			return 1;
		p += n + (p[n] == ',');
	}
	return 0;
}
