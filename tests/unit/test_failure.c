/* test_failure.c -- the verdict on a failed query of a job (failure.h). */
#include "failure.h"
#include "unit.h"

static bf_failure_verdict judge(const char *sqlstate, int failures)
{
	bf_failure f = {.sqlstate = sqlstate, .failures = failures, .max_failures = 5};

	return bf_failure_judge(&f);
}

static void test_each_class_to_its_action(void)
{
	bf_failure_verdict v;

	/* Transient: retried as it is. */
	const char *transient[] = {"40001", "40P01", "25P03", "57P01", "57P02", "57P03", "57P05",
				   "08006", "53300", "58030", "XX000", "HV000"};
	for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
		v = judge(transient[i], 4);
		UNIT_CHECK_INT(v.action, BF_FAILURE_RETRY);
		UNIT_CHECK(!v.shrink && !v.lock_timeout);
	}
	/* A lock timeout: retried with a smaller batch, a throttle. */
	v = judge("55P03", 0);
	UNIT_CHECK_INT(v.action, BF_FAILURE_RETRY);
	UNIT_CHECK(v.shrink && v.lock_timeout);
	/* A statement timeout (not our cancel): smaller batch. */
	v = judge("57014", 0);
	UNIT_CHECK_INT(v.action, BF_FAILURE_RETRY);
	UNIT_CHECK(v.shrink && !v.lock_timeout);
	/* The fence: re-read, however many failures came before. */
	UNIT_CHECK_INT(judge("BF001", 4).action, BF_FAILURE_FENCED);
	/* Permanent (and data errors outside a batch): counted. */
	UNIT_CHECK_INT(judge("42601", 0).action, BF_FAILURE_ATTEMPT);
	UNIT_CHECK_INT(judge("42501", 3).action, BF_FAILURE_ATTEMPT);
	UNIT_CHECK_INT(judge("23505", 0).action, BF_FAILURE_ATTEMPT);
	UNIT_CHECK(!judge("42601", 0).shrink);
	/* A SQLSTATE that is not one (garbage): transient, never a verdict of failure. */
	UNIT_CHECK_INT(judge("x", 4).action, BF_FAILURE_RETRY);
}

static void test_retry_count_gives_up_at_the_limit(void)
{
	/* The fifth permanent failure in a row (four before it) gives up. */
	UNIT_CHECK_INT(judge("42P01", 3).action, BF_FAILURE_ATTEMPT);
	UNIT_CHECK_INT(judge("42P01", 4).action, BF_FAILURE_GIVE_UP);
	UNIT_CHECK_INT(judge("42P01", 9).action, BF_FAILURE_GIVE_UP);

	bf_failure f = {.sqlstate = "42P01", .failures = 0, .max_failures = 1};

	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_GIVE_UP);
	/* Recording the end itself failing: left to the lease, never failed. */
	f.finishing = true;
	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_LEAVE);
}

static void test_the_situation_comes_before_the_class(void)
{
	bf_failure f = {.sqlstate = "57014", .max_failures = 5};

	/* No result at all: the connection broke, whatever else is so. */
	f.connection_broke = true;
	f.stopping = true;
	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_RECONNECT);
	f.connection_broke = false;
	/* Stopping: no retry. */
	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_STOPPING);
	f.stopping = false;
	/* Our own cancel (pause --now): re-read, no shrink. */
	f.cancel_requested = true;
	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_CANCELLED);
	UNIT_CHECK(!bf_failure_judge(&f).shrink);
	/* Our cancel of a blocking batch: shrink and back off. */
	f.cancel_blocking = true;
	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_BLOCKING_CANCELLED);
	UNIT_CHECK(bf_failure_judge(&f).shrink);
	/* A cancel asked for, but the query failed otherwise: judged by class. */
	f.sqlstate = "42601";
	UNIT_CHECK_INT(bf_failure_judge(&f).action, BF_FAILURE_ATTEMPT);
}

int main(void)
{
	UNIT_RUN(test_each_class_to_its_action);
	UNIT_RUN(test_retry_count_gives_up_at_the_limit);
	UNIT_RUN(test_the_situation_comes_before_the_class);
	return UNIT_DONE();
}
