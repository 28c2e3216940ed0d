/* test_settings.c -- settings.c: run-time knobs as backfillctl set writes them. */
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
	UNIT_CHECK_INT(
		bf_knob_parse_assignment("wait_for_replay=false", &knob, &v, err, sizeof err), 0);
	UNIT_CHECK_INT(v, 0);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=off", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 0);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=1", &knob, &v, err, sizeof err),
		       0);
	UNIT_CHECK_INT(v, 1);
	UNIT_CHECK_INT(
		bf_knob_parse_assignment("wait_for_replay=yes please", &knob, &v, err, sizeof err),
		-1);
	UNIT_CHECK(strstr(err, "wait_for_replay is a switch: it takes true or false") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("wait_for_replay=2", &knob, &v, err, sizeof err),
		       -1);
	UNIT_CHECK_INT(bf_knob_parse_assignment("max_rows_per_s=true", &knob, &v, err, sizeof err),
		       -1);
	UNIT_CHECK(strstr(err, "must be an integer") != NULL);
	UNIT_CHECK_INT(bf_knob_parse_assignment("batch_target_ms=99999999999999999999", &knob, &v,
						err, sizeof err),
		       -1);
}

int main(void)
{
	UNIT_RUN(test_knob_assignments);
	return UNIT_DONE();
}
