/* plan.c -- backfillctl plan: one batch of a job, run and rolled back. (stub until written) */
#include <stdlib.h>

#include "commands.h"

void bf_plan_start(bf_commands *cmds, bf_client *client, bf_request *req)
{
	(void)cmds;
	bf_client_reply(client, bf_response_error(BF_ERR_REFUSED, "plan: not available yet"));
	bf_request_free(req);
	free(req);
}

void bf_plan_abort_all(bf_commands *cmds)
{
	(void)cmds;
}
