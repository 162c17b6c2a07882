/* decide.c: see decide.h. */
#include "decide.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

const char *tier_source_name(enum tier_source s)
{
	switch (s) {
	case TIER_FROM_DEFAULT:
		return "default";
	case TIER_FROM_LOCAL:
		return "local";
	case TIER_FROM_TICKET:
		return "ticket";
	}
	return "?";
}

/* Use the ticket only if it is valid and this user's own. */
static void check_ticket(const struct tier_request *req,
			 struct tier_decision *d)
{
	const struct ticket_check *tc = req->ticket;

	if (!tc || !tc->present)
		return;
	if (!tc->valid) {
		snprintf(d->ticket_error, sizeof(d->ticket_error), "%s",
			 tc->error[0] ? tc->error : "invalid ticket");
		return;
	}
	if (strcmp(tc->t.user, req->user) != 0) {
		snprintf(d->ticket_error, sizeof(d->ticket_error),
			 "ticket was issued to another user");
		return;
	}
	d->ticket = tc->t;
	d->ticket_valid = true;
}

/* The groups only when a group rule names t and none were given yet. */
static bool entitled_by_loaded_groups(const struct tier_table *tab,
				      const struct tier *t,
				      const struct tier_request *req)
{
	const char *const *groups = NULL;
	size_t n = 0;

	if (!req->load_groups || req->n_groups || !tier_has_group_rule(tab, t))
		return false;
	req->load_groups(req->load_groups_arg, &groups, &n);
	return n && tier_entitled(tab, t, NULL, groups, n, NULL);
}

int tier_decide(const struct tier_table *tab, const struct tier_request *req,
		struct tier_decision *d)
{
	const struct tier *t;
	char names[256];

	memset(d, 0, sizeof(*d));
	check_ticket(req, d);

	if (!req->requested || !*req->requested) {
		if (d->ticket_valid && (t = tier_find(tab, d->ticket.tier))) {
			d->tier = t;
			d->source = TIER_FROM_TICKET;
			return 0;
		}
		d->tier = tier_default(tab);
		d->source = TIER_FROM_DEFAULT;
		return 0;
	}

	t = tier_find(tab, req->requested);
	if (!t) {
		tier_names(tab, names, sizeof(names));
		snprintf(d->why, sizeof(d->why),
			 "unknown CPU tier '%.40s' (tiers: %s)", req->requested,
			 names);
		return -ENOENT;
	}
	if (d->ticket_valid && !strcmp(d->ticket.tier, t->name)) {
		d->tier = t;
		d->source = TIER_FROM_TICKET;
		return 0;
	}
	if (tier_entitled(tab, t, req->user, req->groups, req->n_groups,
			  req->account) ||
	    entitled_by_loaded_groups(tab, t, req)) {
		d->tier = t;
		d->source = t == tier_default(tab) ? TIER_FROM_DEFAULT
						   : TIER_FROM_LOCAL;
		return 0;
	}
	if (d->ticket_error[0])
		snprintf(d->why, sizeof(d->why),
			 "user %s is not entitled to CPU tier '%s' (ticket "
			 "refused: %s)",
			 req->user, t->name, d->ticket_error);
	else if (d->ticket_valid)
		snprintf(d->why, sizeof(d->why),
			 "user %s is not entitled to CPU tier '%s' (the job's "
			 "ticket is for tier '%s')",
			 req->user, t->name, d->ticket.tier);
	else
		snprintf(d->why, sizeof(d->why),
			 "user %s is not entitled to CPU tier '%s'", req->user,
			 t->name);
	return -EPERM;
}
