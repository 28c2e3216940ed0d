/* commands.h -- what the control socket's requests do.
 *
 * Every change is written to the control schema on the monitor connection,
 * so it is durable, visible to SQL and to every daemon instance, and reaches
 * the daemon running the job through the same NOTIFY an operator's own
 * UPDATE would send.
 */
#ifndef BF_COMMANDS_H
#define BF_COMMANDS_H

#include "control.h"
#include "engine.h"

typedef struct bf_plan bf_plan;

typedef struct bf_commands {
	bf_engine *engine;
	const bf_config *cfg;
	bf_plan *plans;	  /* dry runs in progress */
	int status_stuck; /* status queries answered from memory, still on the monitor */
	int stopping;
} bf_commands;

void bf_commands_init(bf_commands *cmds, bf_engine *engine, const bf_config *cfg);

/* The control server's request callback (arg: the bf_commands). */
void bf_commands_handle(bf_control *ctl, bf_client *client, bf_request *req, void *arg);

/* Shutdown: new requests are refused; dry runs in progress are abandoned
 * (their connection closed, which rolls them back) and answered. Requests
 * waiting on the monitor connection are answered when it closes. */
void bf_commands_stop(bf_commands *cmds);

/* Implemented by plan.c. */
void bf_plan_start(bf_commands *cmds, bf_client *client, bf_request *req);
void bf_plan_abort_all(bf_commands *cmds);

#endif
