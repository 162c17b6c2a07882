/*
 * ctx_local.c: sbatch and salloc (allocator context) and srun (local
 * context).  This is where a refusal reaches the user: the command fails
 * with one clear message and nothing is submitted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmdline.h"
#include "identity.h"
#include "log.h"
#include "plugin.h"

extern char **environ;

int local_option(const char *optarg)
{
	char names[256];

	if (tg.broken[0] || !tg.tiers)
		return -1; /* already reported by init */
	if (!optarg || !tier_find(tg.tiers, optarg)) {
		tier_names(tg.tiers, names, sizeof(names));
		log_err("unknown CPU tier '%s' (tiers: %s)",
			optarg ? optarg : "", names);
		return -1;
	}
	return 0;
}

int local_init_post_opt(spank_t sp)
{
	(void)sp;
	struct tier_decision d;
	struct tier_request req;
	struct ticket_check tc;
	const char *ticket;
	struct cmd_request cmd;
	struct identity id;
	uid_t uid;
	gid_t gid;
	char *buf = NULL, **argv = NULL;
	int argc = 0, rv;

	if (tg.broken[0] || !tg.tiers)
		return -1;
	if (!tg.requested_set)
		return 0; /* no tier asked for: the default, decided remotely */

	/* the command runs as the user (S_JOB_UID is not offered to sbatch) */
	uid = getuid();
	gid = getgid();
	if (identity_load(uid, gid, &id)) {
		log_err("uid %u has no passwd entry", (unsigned)uid);
		return -1;
	}
	if (cmdline_self(&buf, &argv, &argc) == 0)
		cmdline_scan(argc, argv, environ, &cmd);
	else
		cmdline_scan(0, NULL, environ, &cmd);
	free(argv);
	free(buf);

	ticket = getenv(TICKET_ENV);
	plugin_check_ticket(ticket, ticket && strlen(ticket) > JWT_TOKEN_MAX,
			    &tc);
	req = (struct tier_request){
	    .requested = tg.requested,
	    .ticket = &tc,
	    .user = id.user,
	    .load_groups = identity_groups_cb,
	    .load_groups_arg = &id,
	    .account = cmd.account[0] ? cmd.account : NULL,
	    .now = time(NULL),
	};
	rv = tier_decide(tg.tiers, &req, &d);
	if (rv) {
		log_err("%s", d.why);
		return -1;
	}
	if (cmd.cpus_per_task > (long)d.tier->cpus) {
		log_err("CPU tier '%s' allows %u CPU%s per task; %ld requested "
			"(--cpus-per-task)",
			d.tier->name, d.tier->cpus,
			d.tier->cpus == 1 ? "" : "s", cmd.cpus_per_task);
		return -1;
	}
	dbg("user %s may use tier %s (%s)", id.user, d.tier->name,
	    tier_source_name(d.source));
	return 0;
}
