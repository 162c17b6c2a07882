/*
 * decide.h: which tier a job step runs at, and why.
 *
 * The tier a user asks for (--cpu-tier, or the _SLURM_SPANK_OPTION_ variable
 * that anyone can set) is only a request.  It is granted by a gateway
 * ticket signed for this very user and tier, or by the site's local
 * entitlements (user, groups, account).  No request at all (for example
 * `sbatch --export=NONE` drops the option) means the ticket's tier when a
 * valid ticket is present, else the default tier: on purpose.
 *
 * Plain C on shared/tier and shared/ticket: unit-tested without Slurm.
 */
#ifndef TIERGATE_SPANK_DECIDE_H
#define TIERGATE_SPANK_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "ticket_check.h"
#include "tier.h"

struct tier_request {
	const char *requested;		   /* NULL or "" = no tier asked for */
	const struct ticket_check *ticket; /* NULL = no ticket */
	const char *user;
	const char *const *groups;
	size_t n_groups;
	/*
	 * Optional: called at most once, and only when a group rule could
	 * grant the requested tier, to fill groups/n_groups (a group lookup
	 * goes through NSS: getgrouplist loads every group service).
	 */
	void (*load_groups)(void *arg, const char *const **groups,
			    size_t *n_groups);
	void *load_groups_arg;
	const char *account; /* NULL when unknown */
	time_t now;
};

enum tier_source {
	TIER_FROM_DEFAULT,
	TIER_FROM_LOCAL,
	TIER_FROM_TICKET,
};

struct tier_decision {
	const struct tier *tier; /* NULL when refused */
	enum tier_source source;
	bool ticket_valid;
	struct ticket ticket;	/* when ticket_valid */
	char ticket_error[192]; /* why a presented ticket was not used */
	char why[384];		/* refusal message for the user */
};

/*
 * Decide.  Returns 0 with d->tier set, or -EPERM / -ENOENT (unknown tier)
 * with d->why holding one clear sentence for the job's stderr or the
 * sbatch caller.  The ticket's signature was checked already
 * (ticket_check.h); here it must also be the job user's own.
 */
int tier_decide(const struct tier_table *tab, const struct tier_request *req,
		struct tier_decision *d);
const char *tier_source_name(enum tier_source s);

#endif
