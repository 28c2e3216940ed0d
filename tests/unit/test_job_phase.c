/* test_job_phase.c -- the changes of a job's phase that may happen (job.h). */
#include "job.h"
#include "unit.h"

static void test_the_walk_moves_between_its_phases(void)
{
	const bf_job_phase live[] = {BF_JOB_CONNECTING, BF_JOB_QUERY, BF_JOB_WAITING};

	for (size_t i = 0; i < 3; i++) {
		for (size_t j = 0; j < 3; j++)
			UNIT_CHECK(bf_job_phase_change_allowed(live[i], live[j]));
		/* Any of them may close: a stop, a lost lease, the end. */
		UNIT_CHECK(bf_job_phase_change_allowed(live[i], BF_JOB_CLOSING));
	}
}

static void test_a_closing_job_never_leaves_closing(void)
{
	UNIT_CHECK(!bf_job_phase_change_allowed(BF_JOB_CLOSING, BF_JOB_CONNECTING));
	UNIT_CHECK(!bf_job_phase_change_allowed(BF_JOB_CLOSING, BF_JOB_QUERY));
	UNIT_CHECK(!bf_job_phase_change_allowed(BF_JOB_CLOSING, BF_JOB_WAITING));
	/* ...and closes once: its handles' close callbacks are counted. */
	UNIT_CHECK(!bf_job_phase_change_allowed(BF_JOB_CLOSING, BF_JOB_CLOSING));
}

int main(void)
{
	UNIT_RUN(test_the_walk_moves_between_its_phases);
	UNIT_RUN(test_a_closing_job_never_leaves_closing);
	return UNIT_DONE();
}
