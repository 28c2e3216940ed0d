/* test_throttle.c -- throttle.c: the judging of samples (hysteresis, fail
 * closed, every reason reported) and the WAL estimates, with synthetic
 * clocks and samples. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "throttle.h"
#include "unit.h"

#define MS 1000000ULL
#define S  1000000000ULL
#define MB (1024LL * 1024)
#define GB (1024LL * MB)

#define NOW (1000 * S)

static bf_limits limits_default(void)
{
	bf_limits l;

	memset(&l, 0, sizeof l);
	l.replay_lag_high_bytes = 64 * MB;
	l.replay_lag_low_bytes = 16 * MB;
	l.replay_lag_high_ms = 5000;
	l.replay_lag_low_ms = 1000;
	l.slot_lag_high_bytes = 1 * GB;
	l.slot_lag_low_bytes = 256 * MB;
	l.slots = BF_SLOTS_ALL;
	l.expected_standbys = "";
	l.stale_ms = 5000;
	return l;
}

static void sample_init(bf_sample *s, uint64_t taken_ns)
{
	memset(s, 0, sizeof *s);
	s->taken_ns = taken_ns;
	snprintf(s->role, sizeof s->role, "backfill");
	s->privileged = 1;
	s->current_lsn = 0x16B374D848ULL;
}

static bf_standby_sample *add_standby(bf_sample *s, const char *name, const char *state,
				      int64_t lag_bytes, int64_t lag_ms)
{
	bf_standby_sample *sb = &s->standbys[s->nstandbys++];

	snprintf(sb->name, sizeof sb->name, "%s", name);
	snprintf(sb->state, sizeof sb->state, "%s", state);
	sb->lag_bytes = lag_bytes;
	sb->lag_ms = lag_ms;
	sb->replay_lsn = lag_bytes >= 0 ? s->current_lsn - (uint64_t)lag_bytes : 0;
	return sb;
}

static void add_slot(bf_sample *s, const char *name, int active, int64_t lag_bytes)
{
	bf_slot_sample *sl = &s->slots[s->nslots++];

	snprintf(sl->name, sizeof sl->name, "%s", name);
	sl->active = active;
	sl->lag_bytes = lag_bytes;
}

typedef struct evaluation {
	int n;
	char reasons[BF_THROTTLE_MAX_HOLDS][BF_THROTTLE_REASON_LEN];
	int nestimated;
	bf_throttle_change changes[BF_THROTTLE_MAX_HOLDS];
	int nchanges;
} evaluation;

/* Judges s with ahead bytes of WAL written since it was taken. */
static int eval_ahead(const bf_sample *s, const bf_limits *l, bf_holds *h, uint64_t now,
		      int64_t ahead, evaluation *e)
{
	memset(e, 0, sizeof *e);
	e->nestimated = -1;
	e->n = bf_throttle_eval(s, l, h, now, ahead, e->reasons, BF_THROTTLE_MAX_HOLDS,
				&e->nestimated, e->changes, BF_THROTTLE_MAX_HOLDS, &e->nchanges);
	return e->n;
}

static int eval(const bf_sample *s, const bf_limits *l, bf_holds *h, uint64_t now, evaluation *e)
{
	int n = eval_ahead(s, l, h, now, 0, e);

	/* Nothing written since the sample: nothing is ever estimated. */
	UNIT_CHECK_INT(e->nestimated, 0);
	return n;
}

/* The reason starting with prefix, or NULL. */
static const char *reason_with(const evaluation *e, const char *prefix)
{
	for (int i = 0; i < e->n; i++)
		if (strncmp(e->reasons[i], prefix, strlen(prefix)) == 0)
			return e->reasons[i];
	return NULL;
}

static void show(const evaluation *e)
{
	for (int i = 0; i < e->n; i++)
		fprintf(stderr, "  reason %d: %s\n", i, e->reasons[i]);
}

#define CHECK_REASON(e, prefix)                                                                    \
	do {                                                                                       \
		if (!reason_with((e), (prefix))) {                                                 \
			fprintf(stderr, "%s:%d: no reason starting \"%s\" among %d:\n", __FILE__,  \
				__LINE__, (prefix), (e)->n);                                       \
			show(e);                                                                   \
			unit_current_failed = 1;                                                   \
		}                                                                                  \
	} while (0)

static void test_eval_healthy(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 1 * MB, 10);
	add_slot(&s, "myslot", 1, 10 * MB);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 0);
	show(&e);
}

static void test_eval_hysteresis_bytes(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 30 * MB, 0);

	/* Between the marks, not held before: runs. */
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	/* Above high: holds. */
	sb->lag_bytes = 70 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	UNIT_CHECK_CONTAINS(e.reasons[0], "MB");
	/* Between the marks, held before: keeps holding. */
	sb->lag_bytes = 30 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	/* Below low: released. */
	sb->lag_bytes = 10 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	/* Between the marks again, not held: runs. */
	sb->lag_bytes = 60 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
}

static void test_eval_hysteresis_time(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 0, 4200);

	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	sb->lag_ms = 6000;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_time standby1");
	sb->lag_ms = 2000;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "replay_lag_time standby1");
	sb->lag_ms = 0; /* replay_lag NULL: caught up */
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
}

static void test_eval_no_flapping_around_the_high_mark(void)
{
	static const int64_t lags_mb[] = {63, 65, 63, 65, 64, 66, 63, 17, 65, 20, 63, 66, 62};
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;
	int started = 0, ended = 0;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 0, 0);

	for (size_t i = 0; i < sizeof lags_mb / sizeof lags_mb[0]; i++) {
		sb->lag_bytes = lags_mb[i] * MB;
		s.taken_ns = now += S;
		int n = eval(&s, &l, &h, now, &e);

		/* Held from the first sample above 64 MB on, and never let go
		 * since nothing fell below 16 MB. */
		UNIT_CHECK_INT(n, i == 0 ? 0 : 1);
		for (int c = 0; c < e.nchanges; c++) {
			if (e.changes[c].started)
				started++;
			else
				ended++;
		}
	}
	UNIT_CHECK_INT(started, 1);
	UNIT_CHECK_INT(ended, 0);
}

static void test_eval_changes_start_and_end_once(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 100 * MB, 0);

	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 1);
	UNIT_CHECK_STR(e.changes[0].key, "replay_lag_bytes standby1");
	UNIT_CHECK(strncmp(e.changes[0].reason, "replay_lag_bytes standby1", 25) == 0);
	for (int i = 0; i < 5; i++) {
		sb->lag_bytes = (100 + i) * MB;
		s.taken_ns = now += S;
		UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
		UNIT_CHECK_INT(e.nchanges, 0); /* still holding: nothing to log */
	}
	/* Released 6 s after it started. */
	sb->lag_bytes = 0;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 0);
	UNIT_CHECK_STR(e.changes[0].key, "replay_lag_bytes standby1");
	UNIT_CHECK(fabs(e.changes[0].held_s - 6.0) < 0.01);
	if (fabs(e.changes[0].held_s - 6.0) >= 0.01)
		fprintf(stderr, "  held_s %.3f, want 6.0\n", e.changes[0].held_s);
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 0);
	/* changes may be NULL. */
	int nchanges = -1;

	sb->lag_bytes = 100 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(bf_throttle_eval(&s, &l, &h, now, 0, e.reasons, BF_THROTTLE_MAX_HOLDS, NULL,
					NULL, 0, &nchanges),
		       1);
}

static void test_eval_expected_standbys(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	l.expected_standbys = "standby1";
	memset(&h, 0, sizeof h);

	/* Missing: fail closed. */
	sample_init(&s, now);
	add_standby(&s, "standby2", "streaming", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "standby standby1 missing");
	UNIT_CHECK_INT(e.nchanges, 1);
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 0);

	/* There but catching up. */
	sample_init(&s, now += S);
	add_standby(&s, "standby1", "catchup", 0, 0);
	add_standby(&s, "standby2", "streaming", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 1);
	CHECK_REASON(&e, "standby standby1 not streaming");
	UNIT_CHECK(reason_with(&e, "standby standby1 not streaming") &&
		   strstr(reason_with(&e, "standby standby1 not streaming"), "catchup"));

	/* Streaming: runs. */
	sample_init(&s, now += S);
	add_standby(&s, "standby1", "streaming", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);

	/* Two expected, neither there: both reported. */
	l.expected_standbys = "standby1,standby3";
	sample_init(&s, now += S);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 2);
	CHECK_REASON(&e, "standby standby1 missing");
	CHECK_REASON(&e, "standby standby3 missing");

	/* A standby not expected may be missing or catching up freely. */
	l.expected_standbys = "";
	memset(&h, 0, sizeof h);
	sample_init(&s, now += S);
	add_standby(&s, "standby2", "catchup", 0, 0);
	UNIT_CHECK_INT(eval(&s, &l, &h, now, &e), 0);
}

static void test_eval_sample_failures_hold(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	/* The sample could not be taken. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	snprintf(s.error, sizeof s.error, "connection to server lost");
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	CHECK_REASON(&e, "replication: cannot sample");
	UNIT_CHECK(
		reason_with(&e, "replication: cannot sample") &&
		strstr(reason_with(&e, "replication: cannot sample"), "connection to server lost"));

	/* No sample taken yet. */
	memset(&h, 0, sizeof h);
	sample_init(&s, 0);
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	UNIT_CHECK(e.n >= 1 && e.reasons[0][0] != '\0');

	/* A stale sample: sampling stalled. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW - 5001 * MS);
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	UNIT_CHECK(e.n >= 1 && e.reasons[0][0] != '\0');
	/* ... but a recent one does not. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW - 4000 * MS);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);

	/* A role that cannot read the standbys' positions. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	snprintf(s.role, sizeof s.role, "weakling");
	s.privileged = 0;
	add_standby(&s, "standby1", "streaming", -1, 0);
	UNIT_CHECK(eval(&s, &l, &h, NOW, &e) >= 1);
	CHECK_REASON(&e, "replication: role");
	UNIT_CHECK(reason_with(&e, "replication: role") &&
		   strstr(reason_with(&e, "replication: role"), "weakling"));
}

static void test_eval_slots(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	l.slot_lag_high_bytes = 100 * MB;
	l.slot_lag_low_bytes = 50 * MB;
	sample_init(&s, NOW);
	add_slot(&s, "abandoned", 0, 300 * MB);
	add_slot(&s, "consumed", 1, 10 * MB);

	l.slots = BF_SLOTS_ALL;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	CHECK_REASON(&e, "slot_lag_bytes abandoned");

	l.slots = BF_SLOTS_ACTIVE;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);
	s.slots[1].lag_bytes = 200 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	CHECK_REASON(&e, "slot_lag_bytes consumed");

	l.slots = BF_SLOTS_OFF;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);

	/* Hysteresis on slots too. */
	l.slots = BF_SLOTS_ALL;
	memset(&h, 0, sizeof h);
	s.slots[1].lag_bytes = 10 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	s.slots[0].lag_bytes = 70 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + S, &e), 1);
	s.slots[0].lag_bytes = 40 * MB;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + 2 * S, &e), 0);
}

static void test_eval_zero_marks_switch_signals_off(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	l.replay_lag_high_bytes = l.replay_lag_low_bytes = 0;
	l.replay_lag_high_ms = l.replay_lag_low_ms = 0;
	l.slot_lag_high_bytes = l.slot_lag_low_bytes = 0;
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 100 * GB, 3600 * 1000);
	add_slot(&s, "myslot", 1, 100 * GB);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 0);
	show(&e);

	/* One signal off, the others still on. */
	l = limits_default();
	l.replay_lag_high_bytes = l.replay_lag_low_bytes = 0;
	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 2);
	CHECK_REASON(&e, "replay_lag_time standby1");
	CHECK_REASON(&e, "slot_lag_bytes myslot");
}

static void test_eval_reports_every_signal(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 100 * MB, 0);
	add_standby(&s, "standby2", "streaming", 200 * MB, 0);
	add_standby(&s, "standby3", "streaming", 0, 0);
	add_slot(&s, "myslot", 0, 2 * GB);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 3);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	CHECK_REASON(&e, "replay_lag_bytes standby2");
	CHECK_REASON(&e, "slot_lag_bytes myslot");
	UNIT_CHECK_INT(e.nchanges, 3);

	/* standby2 recovers: one ended, the other two hold on. */
	s.standbys[1].lag_bytes = 0;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + S, &e), 2);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_STR(e.changes[0].key, "replay_lag_bytes standby2");
	UNIT_CHECK_INT(e.changes[0].started, 0);

	/* Bytes and time on one standby are two reasons. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 100 * MB, 9000);
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 2);
	CHECK_REASON(&e, "replay_lag_bytes standby1");
	CHECK_REASON(&e, "replay_lag_time standby1");
}

static void test_eval_throttle_query(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	s.query_set = 1;
	s.query_holds = 1;
	snprintf(s.query_reason, sizeof s.query_reason, "month-end close");
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW, &e), 1);
	CHECK_REASON(&e, "throttle query: month-end close");
	s.query_holds = 0;
	UNIT_CHECK_INT(eval(&s, &l, &h, NOW + S, &e), 0);
}

/* ---- estimates: the WAL written since the sample ----------------------------- */

static void test_eval_estimate_asks_for_a_fresh_sample(void)
{
	bf_sample s;
	bf_limits l = limits_default(); /* replay bytes 64 MB / 16 MB */
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 30 * MB, 0);

	/* 30 MB sampled, 40 MB written since: about 70 MB, past 64 MB. */
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 40 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1: about 70.0 MB estimated");
	UNIT_CHECK_CONTAINS(e.reasons[0], "64.0 MB");
	UNIT_CHECK_CONTAINS(e.reasons[0], "sampling now");
	/* Not a throttle: no hold to remember, nothing to log. */
	UNIT_CHECK_INT(e.nchanges, 0);
	UNIT_CHECK_INT(h.n, 0);

	/* Right at the mark is reaching it; a byte short is not. */
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 34 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 34 * MB - 1, &e), 0);
	UNIT_CHECK_INT(e.nestimated, 0);

	/* Nothing written since the sample: the sample alone decides. */
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 0, &e), 0);
	UNIT_CHECK_INT(e.nestimated, 0);

	/* The fresh sample asked for: above the mark it holds for real (and
	 * is logged once); the estimate no longer counts once held. */
	s.standbys[0].lag_bytes = 66 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + S, 0, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 1);
	CHECK_REASON(&e, "replay_lag_bytes standby1 66.0 MB > 64.0 MB");

	/* Or, below it (the standby replayed meanwhile), the job runs. */
	memset(&h, 0, sizeof h);
	s.standbys[0].lag_bytes = 20 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + S, 0, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 0);
}

static void test_eval_estimate_leaves_hysteresis_to_the_real_values(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;
	uint64_t now = NOW;

	memset(&h, 0, sizeof h);
	sample_init(&s, now);
	bf_standby_sample *sb = add_standby(&s, "standby1", "streaming", 70 * MB, 0);

	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 0, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	/* Held, between the marks: the hold goes on, as a hold (its reason,
	 * no estimate, no new start), whatever was written since. */
	sb->lag_bytes = 30 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 100 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	UNIT_CHECK_INT(e.nchanges, 0);
	CHECK_REASON(&e, "replay_lag_bytes standby1 30.0 MB, held until at most 16.0 MB");
	/* Below the low mark: the hold ends on the real value. WAL written
	 * since still counts against the high mark: a fresh sample first. */
	sb->lag_bytes = 10 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 60 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 0);
	CHECK_REASON(&e, "replay_lag_bytes standby1: about 70.0 MB estimated");
	UNIT_CHECK_INT(h.n, 0);
	/* ... and between the marks, not held: the estimate never starts a
	 * hold, so hysteresis starts only above the high mark. */
	sb->lag_bytes = 40 * MB;
	s.taken_ns = now += S;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 0, &e), 0);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, now, 30 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	UNIT_CHECK_INT(e.nchanges, 0);
	UNIT_CHECK_INT(h.n, 0);
}

static void test_eval_estimate_slots(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	l.slot_lag_high_bytes = 100 * MB;
	l.slot_lag_low_bytes = 50 * MB;
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_slot(&s, "consumed", 1, 60 * MB);
	add_slot(&s, "abandoned", 0, 20 * MB);

	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 50 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 1);
	CHECK_REASON(&e, "slot_lag_bytes consumed: about 110.0 MB estimated");
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 80 * MB, &e), 2);
	UNIT_CHECK_INT(e.nestimated, 2);
	CHECK_REASON(&e, "slot_lag_bytes abandoned: about 100.0 MB estimated");
	UNIT_CHECK_INT(h.n, 0);
	/* Slots that do not count are not estimated either. */
	l.slots = BF_SLOTS_ACTIVE;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 80 * MB, &e), 1);
	CHECK_REASON(&e, "slot_lag_bytes consumed: about");
	l.slots = BF_SLOTS_OFF;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 80 * MB, &e), 0);
	s.slots[0].lag_bytes = -1; /* no confirmed position */
	l.slots = BF_SLOTS_ALL;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 50 * MB, &e), 0);

	/* Held: hysteresis on the real values, as for standbys. */
	s.slots[0].lag_bytes = 120 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 0, &e), 1);
	UNIT_CHECK_INT(e.nchanges, 1);
	s.slots[0].lag_bytes = 70 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + S, 10 * MB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	CHECK_REASON(&e, "slot_lag_bytes consumed 70.0 MB, held until");
	s.slots[0].lag_bytes = 40 * MB;
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW + 2 * S, 10 * MB, &e), 0);
	UNIT_CHECK_INT(e.nchanges, 1);
	UNIT_CHECK_INT(e.changes[0].started, 0);
}

static void test_eval_estimate_only_where_a_lag_is_known(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	/* No standby, no slot: the WAL we write holds nothing. */
	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 0);
	UNIT_CHECK_INT(e.nestimated, 0);

	/* A WAL receiver that replays nothing is not waited for, estimated
	 * or not; a standby in base backup neither. */
	add_standby(&s, "walarchiver", "streaming", -1, 0);
	add_standby(&s, "backup", "backup", 0, 0);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 0);

	/* Time lag is not estimated; bytes off, nothing is. */
	l.replay_lag_high_bytes = l.replay_lag_low_bytes = 0;
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 10 * MB, 4900);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 0);

	/* A failed sample holds by itself; no estimate on top. */
	l = limits_default();
	snprintf(s.error, sizeof s.error, "connection to server lost");
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	CHECK_REASON(&e, "replication: cannot sample");
	memset(&h, 0, sizeof h);

	/* Without pg_monitor the positions are unknown: the privilege holds. */
	sample_init(&s, NOW);
	s.privileged = 0;
	add_standby(&s, "standby1", "streaming", -1, 0);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 100 * GB, &e), 1);
	UNIT_CHECK_INT(e.nestimated, 0);
	CHECK_REASON(&e, "replication: role");
}

static void test_eval_estimates_come_after_the_holds(void)
{
	bf_sample s;
	bf_limits l = limits_default();
	bf_holds h;
	evaluation e;

	memset(&h, 0, sizeof h);
	sample_init(&s, NOW);
	add_standby(&s, "standby1", "streaming", 30 * MB, 0);
	add_standby(&s, "standby2", "streaming", 100 * MB, 0);
	add_standby(&s, "standby3", "streaming", 50 * MB, 9000);
	UNIT_CHECK_INT(eval_ahead(&s, &l, &h, NOW, 40 * MB, &e), 4);
	UNIT_CHECK_INT(e.nestimated, 2);
	UNIT_CHECK(strncmp(e.reasons[0], "replay_lag_bytes standby2 100.0 MB >", 36) == 0);
	UNIT_CHECK(strncmp(e.reasons[1], "replay_lag_time standby3", 24) == 0);
	UNIT_CHECK(strncmp(e.reasons[2], "replay_lag_bytes standby1: about 70.0 MB", 40) == 0);
	UNIT_CHECK(strncmp(e.reasons[3], "replay_lag_bytes standby3: about 90.0 MB", 40) == 0);
	UNIT_CHECK_INT(e.nchanges, 2);

	/* Room for only some: the holds first. */
	int nestimated = -1;

	memset(&h, 0, sizeof h);
	UNIT_CHECK_INT(bf_throttle_eval(&s, &l, &h, NOW, 40 * MB, e.reasons, 3, &nestimated, NULL,
					0, NULL),
		       3);
	UNIT_CHECK_INT(nestimated, 1);
	UNIT_CHECK(strncmp(e.reasons[0], "replay_lag_bytes standby2", 25) == 0);
}

static void test_ahead(void)
{
	bf_sample s;

	sample_init(&s, NOW);
	s.current_lsn = 0x16B374D848ULL;
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL + 18 * MB), 18 * MB);
	/* Written before the sample was taken: it is in the sampled lags. */
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL), 0);
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL - 1), 0);
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0), 0);
	/* A sample without a position (failed): nothing to measure from. */
	s.current_lsn = 0;
	UNIT_CHECK_INT(bf_throttle_ahead(&s, 0x16B374D848ULL), 0);
	/* Never negative, never wrapped. */
	s.current_lsn = 1;
	UNIT_CHECK(bf_throttle_ahead(&s, UINT64_MAX) == INT64_MAX);
}

static void test_lsn_bytes_lists(void)
{
	char buf[64];

	UNIT_CHECK(bf_lsn_parse("0/3000060") == 0x3000060ULL);
	UNIT_CHECK(bf_lsn_parse("16/B374D848") == 0x16B374D848ULL);
	UNIT_CHECK(bf_lsn_parse("FFFFFFFF/FFFFFFFF") == 0xFFFFFFFFFFFFFFFFULL);
	UNIT_CHECK(bf_lsn_parse("0/0") == 0);
	UNIT_CHECK(bf_lsn_parse(NULL) == 0);
	UNIT_CHECK(bf_lsn_parse("") == 0);
	UNIT_CHECK(bf_lsn_parse("junk") == 0);
	UNIT_CHECK(bf_lsn_parse("16B374D848") == 0);
	UNIT_CHECK(bf_lsn_parse("16/") == 0);
	UNIT_CHECK(bf_lsn_parse("/3000060") == 0);

	bf_format_bytes(buf, sizeof buf, 48 * MB);
	UNIT_CHECK_CONTAINS(buf, "48");
	UNIT_CHECK_CONTAINS(buf, "MB");
	bf_format_bytes(buf, sizeof buf, 3 * GB / 2);
	UNIT_CHECK_CONTAINS(buf, "1.5");
	UNIT_CHECK_CONTAINS(buf, "GB");
	bf_format_bytes(buf, sizeof buf, 512);
	UNIT_CHECK_CONTAINS(buf, "512");
	UNIT_CHECK(strstr(buf, "MB") == NULL && strstr(buf, "kB") == NULL);
	bf_format_bytes(buf, sizeof buf, 256 * MB);
	UNIT_CHECK_CONTAINS(buf, "256");
	/* A small buffer is cut, not overrun. */
	memset(buf, 'x', sizeof buf);
	bf_format_bytes(buf, 4, 123456789012LL);
	UNIT_CHECK(memchr(buf, '\0', 4) != NULL);
	UNIT_CHECK(buf[4] == 'x');

	UNIT_CHECK_INT(bf_list_has("a,b", "b"), 1);
	UNIT_CHECK_INT(bf_list_has("a,b", "a"), 1);
	UNIT_CHECK_INT(bf_list_has("a,b", "c"), 0);
	UNIT_CHECK_INT(bf_list_has("ab", "a"), 0);
	UNIT_CHECK_INT(bf_list_has("a", "ab"), 0);
	UNIT_CHECK_INT(bf_list_has("standby10,standby2", "standby1"), 0);
	UNIT_CHECK_INT(bf_list_has("standby10,standby1", "standby1"), 1);
	UNIT_CHECK_INT(bf_list_has("", "a"), 0);
}

int main(void)
{
	UNIT_RUN(test_eval_healthy);
	UNIT_RUN(test_eval_hysteresis_bytes);
	UNIT_RUN(test_eval_hysteresis_time);
	UNIT_RUN(test_eval_no_flapping_around_the_high_mark);
	UNIT_RUN(test_eval_changes_start_and_end_once);
	UNIT_RUN(test_eval_expected_standbys);
	UNIT_RUN(test_eval_sample_failures_hold);
	UNIT_RUN(test_eval_slots);
	UNIT_RUN(test_eval_zero_marks_switch_signals_off);
	UNIT_RUN(test_eval_reports_every_signal);
	UNIT_RUN(test_eval_throttle_query);
	UNIT_RUN(test_eval_estimate_asks_for_a_fresh_sample);
	UNIT_RUN(test_eval_estimate_leaves_hysteresis_to_the_real_values);
	UNIT_RUN(test_eval_estimate_slots);
	UNIT_RUN(test_eval_estimate_only_where_a_lag_is_known);
	UNIT_RUN(test_eval_estimates_come_after_the_holds);
	UNIT_RUN(test_ahead);
	UNIT_RUN(test_lsn_bytes_lists);
	return UNIT_DONE();
}
