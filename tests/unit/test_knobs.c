/* test_knobs.c -- run-time knobs (backfillctl set), control socket peers, batch bounds. */
#include <unistd.h>

#include "auth.h"
#include "batch_size.h"
#include "settings.h"
#include "unit.h"

static void test_knob_assignments(void)
{
	const bf_knob *knob;
	long long v;
	char err[256];

	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_size=500", &knob, &v, err, sizeof err), 0);
	UNIT_CHECK_STR(knob->name, "batch_size");
	UNIT_CHECK_INT(v, 500);
	UNIT_CHECK_INT(bf_knob_parse_assignment("max_rows_per_s=off", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 0);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_size=off", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "must be an integer") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_size=0", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "between 1 and") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_size=12x", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_size= 12", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_size", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "KEY=VALUE") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("=5", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_sise=5", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "unknown setting \"batch_sise\" (known: batch_size") != NULL);
	/* A 0/1 knob is a switch: true/false, on/off, 1/0; other words refused. */
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=true", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=On", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=false", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 0);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=off", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 0);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=1", &knob, &v, err, sizeof err), 0);
	UNIT_CHECK_INT(v, 1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=yes please", &knob, &v, err,
						sizeof err),
		       -1);
	UNIT_CHECK(strstr(err, "wait_for_replay is a switch: it takes true or false") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=2", &knob, &v, err, sizeof err), -1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("max_rows_per_s=true", &knob, &v, err, sizeof err),
		       -1);
	UNIT_CHECK(strstr(err, "must be an integer") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_target_ms=99999999999999999999", &knob, &v,
						err, sizeof err),
		       -1);
}

static void test_auth(void)
{
	bf_auth auth;
	char err[256];

	UNIT_CHECK_INT(bf_auth_load(&auth, "", "", err, sizeof err), 0);
	UNIT_CHECK(bf_auth_allows(&auth, 0, 0));
	UNIT_CHECK(bf_auth_allows(&auth, geteuid(), 12345));
	UNIT_CHECK(!bf_auth_allows(&auth, 54321, 54321));
	bf_auth_free(&auth);

	UNIT_CHECK_INT(bf_auth_load(&auth, "root,54321", "77777", err, sizeof err), 0);
	UNIT_CHECK(bf_auth_allows(&auth, 54321, 1));
	UNIT_CHECK(bf_auth_allows(&auth, 999, 77777));
	UNIT_CHECK(!bf_auth_allows(&auth, 999, 1));
	bf_auth_free(&auth);

	UNIT_CHECK_INT(bf_auth_load(&auth, "no_such_user_here", "", err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "no such user \"no_such_user_here\"") != NULL);
	UNIT_CHECK_INT(bf_auth_load(&auth, "", "no_such_group_here", err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "no such group \"no_such_group_here\"") != NULL);
}

static void test_batch_bounds(void)
{
	bf_batch_size bs;

	bf_batch_size_init(&bs, 1000, 100, 5000, 500);
	bf_batch_size_bounds(&bs, 10, 400, 200);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 400); /* clamped into the new bounds */
	bf_batch_size_set(&bs, 50);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 50);
	bf_batch_size_set(&bs, 5);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 10);
	bf_batch_size_bounds(&bs, 40, 40, 200);
	UNIT_CHECK_INT(bf_batch_size_get(&bs), 40);
}

int main(void)
{
	UNIT_RUN(test_knob_assignments);
	UNIT_RUN(test_auth);
	UNIT_RUN(test_batch_bounds);
	return UNIT_DONE();
}
