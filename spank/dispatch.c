/*
 * dispatch.c: the SPANK entry points.  Each hook only routes by context
 * (pyxis style); the work is in ctx_local.c and ctx_remote.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "plugin.h"
#include "relay_spawn.h"
#include "tier.h"

SPANK_PLUGIN(tiergate, 1)

struct plugin tg;

static char help_text[512] = "CPU tier to run at";

static int option_cb(int val, const char *optarg, int remote);

static struct spank_option cpu_tier_option = {
    .name = "cpu-tier",
    .arginfo = "NAME",
    .usage = help_text,
    .has_arg = 1,
    .val = 0,
    .cb = option_cb,
};

static const char *context_name(spank_context_t c)
{
	switch (c) {
	case S_CTX_LOCAL:
		return "local";
	case S_CTX_REMOTE:
		return "remote";
	case S_CTX_ALLOCATOR:
		return "allocator";
	case S_CTX_SLURMD:
		return "slurmd";
	case S_CTX_JOB_SCRIPT:
		return "job_script";
	case S_CTX_ERROR:
		break;
	}
	return "unknown";
}

/* Lines go to Slurm's own log: the caller's stderr locally, the slurmd
 * log remotely. */
static void slurm_sink(enum log_level lvl, const char *line, void *arg)
{
	(void)arg;
	switch (lvl) {
	case LOG_LVL_ERR:
		slurm_error("%s", line);
		break;
	case LOG_LVL_WARN:
	case LOG_LVL_INFO:
		slurm_info("%s", line);
		break;
	case LOG_LVL_DBG:
		slurm_info("%s", line);
		break;
	}
}

static bool user_facing(void)
{
	return tg.ctx == S_CTX_LOCAL || tg.ctx == S_CTX_ALLOCATOR;
}

/* Parse arguments and load the tier table and ticket key.  Failures are
 * remembered in tg.broken; callers decide where that may fail a job. */
static void load_config(int argc, char **argv)
{
	char err[384];
	int rv;

	rv = args_parse(argc, argv, &tg.args, err, sizeof(err));
	if (rv) {
		snprintf(tg.broken, sizeof(tg.broken), "%s", err);
		return;
	}
	if (tg.args.debug[0])
		log_set_debug(tg.args.debug);
	rv = tier_table_load(tg.args.tiers, &tg.tiers, err, sizeof(err));
	if (rv) {
		snprintf(tg.broken, sizeof(tg.broken), "tier table: %s", err);
		return;
	}
	if (tg.args.relay[0])
		snprintf(tg.relay, sizeof(tg.relay), "%s", tg.args.relay);
	else if (relay_default_path(tg.relay, sizeof(tg.relay)))
		snprintf(tg.broken, sizeof(tg.broken),
			 "cannot locate tiergate-relay; set relay=");
	/* the key itself is read by the relay when a job carries a ticket */
	if (tg.args.ticket_key[0] && access(tg.args.ticket_key, R_OK) < 0)
		snprintf(tg.broken, sizeof(tg.broken), "ticket_key %.400s: %m",
			 tg.args.ticket_key);
}

void plugin_check_ticket(const char *token, bool too_long,
			 struct ticket_check *tc)
{
	memset(tc, 0, sizeof(*tc));
	if (too_long) {
		tc->present = true;
		snprintf(tc->error, sizeof(tc->error),
			 "ticket longer than %d bytes", JWT_TOKEN_MAX);
		return;
	}
	if (!token || !*token)
		return;
	if (!tg.args.ticket_key[0]) {
		tc->present = true;
		snprintf(tc->error, sizeof(tc->error),
			 "this site accepts no tickets (no ticket_key)");
		return;
	}
	ticket_check_exec(tg.relay, tg.args.ticket_key, token,
			  TICKET_CHECK_TIMEOUT_MS, tc);
}

int slurm_spank_init(spank_t sp, int argc, char **argv)
{
	char prefix[64], names[256];
	spank_err_t serr;

	memset(&tg, 0, sizeof(tg));
	tg.ctx = spank_context();
	tg.ctx_name = context_name(tg.ctx);
	snprintf(prefix, sizeof(prefix), "tiergate: %s: ", tg.ctx_name);
	log_set_prefix(prefix);
	log_set_sink(slurm_sink, NULL);

	load_config(argc, argv);
	if (tg.tiers) {
		tier_names(tg.tiers, names, sizeof(names));
		snprintf(help_text, sizeof(help_text),
			 "CPU tier to run at: %s (default %s)", names,
			 tier_default(tg.tiers)->name);
	}

	serr = spank_option_register(sp, &cpu_tier_option);
	if (serr != ESPANK_SUCCESS)
		log_err("cannot register --cpu-tier: %s", spank_strerror(serr));

	if (tg.broken[0]) {
		log_err("%s", tg.broken);
		/* refuse where the user sees it; never in slurmd/slurmstepd */
		return user_facing() ? -1 : 0;
	}
	dbg("init: tiers=%s gateway=%s spool=%s auth=%s", tg.args.tiers,
	    tg.args.gateway, tg.args.spool,
	    args_report_auth_name(tg.args.report_auth));
	return 0;
}

/* May run more than once (command line and environment): last one wins. */
static int option_cb(int val, const char *optarg, int remote)
{
	(void)val;
	snprintf(tg.requested, sizeof(tg.requested), "%s",
		 optarg ? optarg : "");
	tg.requested_set = true;
	if (remote)
		return 0; /* judged in task_init_privileged, never here */
	return local_option(optarg);
}

int slurm_spank_init_post_opt(spank_t sp, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	switch (tg.ctx) {
	case S_CTX_LOCAL:
	case S_CTX_ALLOCATOR:
		return local_init_post_opt(sp);
	case S_CTX_REMOTE:
		remote_init_post_opt(sp);
		return 0;
	case S_CTX_SLURMD:
	case S_CTX_JOB_SCRIPT:
	case S_CTX_ERROR:
		break;
	}
	return 0;
}

int slurm_spank_task_init_privileged(spank_t sp, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return tg.ctx == S_CTX_REMOTE ? remote_task_init_privileged(sp) : 0;
}

int slurm_spank_task_init(spank_t sp, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return tg.ctx == S_CTX_REMOTE ? remote_task_init(sp) : 0;
}

int slurm_spank_task_exit(spank_t sp, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (tg.ctx == S_CTX_REMOTE)
		remote_task_exit(sp);
	return 0;
}

int slurm_spank_exit(spank_t sp, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (tg.ctx == S_CTX_REMOTE)
		remote_exit(sp);
	tier_table_free(tg.tiers);
	tg.tiers = NULL;
	return 0;
}
