/*
 * plugin.h: the plugin's per-process state and the hooks of each context.
 *
 * dispatch.c holds SPANK_PLUGIN() and routes every hook by context; the
 * allocator/local side (sbatch, salloc, srun) lives in ctx_local.c, the
 * slurmstepd side in ctx_remote.c.  Everything that needs no Slurm (args,
 * decisions, cpusets, events, spool, delivery) is plain C beside them.
 *
 * Failure rules (measured, slurm-facts section 9): in allocator/local
 * context a -1 refuses the command and submits nothing; in remote context
 * only task_init_privileged / task_init may fail (job FAILED, node stays
 * up); init, init_post_opt and user_init never fail there, since that
 * drains the node and reports the job COMPLETED 0:0.
 */
#ifndef TIERGATE_SPANK_PLUGIN_H
#define TIERGATE_SPANK_PLUGIN_H

#include <slurm/spank.h>
#include <stdbool.h>

#include "args.h"
#include "jwt_verify.h" /* constants only: the plugin links no libjwt */
#include "decide.h"

#define TICKET_ENV "TIERGATE_TICKET"
#define TICKET_CHECK_TIMEOUT_MS 2000
#define REQUEST_ID_ENV "TIERGATE_REQUEST_ID"

struct plugin {
	spank_context_t ctx;
	const char *ctx_name;
	struct plugin_args args;
	struct tier_table *tiers;
	char relay[4096]; /* tiergate-relay: ticket checks, delivery */
	/* why the plugin cannot work (bad args, unreadable tier table) */
	char broken[512];
	/* --cpu-tier as given (option callback) */
	char requested[64];
	bool requested_set;
};

extern struct plugin tg;

/* Verify a job's ticket through the relay (dispatch.c). */
void plugin_check_ticket(const char *token, bool too_long,
			 struct ticket_check *tc);

/* ctx_local.c: sbatch/salloc (allocator) and srun (local) */
int local_option(const char *optarg);
int local_init_post_opt(spank_t sp);

/* ctx_remote.c: slurmstepd */
int remote_init_post_opt(spank_t sp);
int remote_task_init_privileged(spank_t sp);
int remote_task_init(spank_t sp);
int remote_task_exit(spank_t sp);
int remote_exit(spank_t sp);

#endif
