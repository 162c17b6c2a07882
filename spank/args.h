/*
 * args.h: the plugin's plugstack.conf arguments.
 *
 *   required /usr/lib/slurm/tiergate.so tiers=/etc/slurm/tiergate-tiers.conf \
 *       ticket_key=/etc/slurm/tiergate-ticket.pub gateway=https://gw:8480 \
 *       spool=/var/spool/tiergate site=alpha [report_auth=munge|ticket|none] \
 *       [munge_socket=PATH] [relay=PATH] \
 *       [output=yes|no] [debug=REGEX]
 *
 * Unknown keys, repeated keys and malformed values are errors naming the
 * key.  Plain C: unit-tested without Slurm.
 */
#ifndef TIERGATE_SPANK_ARGS_H
#define TIERGATE_SPANK_ARGS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

enum report_auth {
	REPORT_AUTH_AUTO,   /* munge when munge_socket is set, else ticket */
	REPORT_AUTH_MUNGE,  /* MUNGE credential of the site's realm */
	REPORT_AUTH_TICKET, /* the job's gateway ticket as bearer */
	REPORT_AUTH_NONE,   /* no credential (tests against a local receiver) */
};

struct plugin_args {
	char tiers[PATH_MAX];
	char ticket_key[PATH_MAX]; /* "" = no tickets accepted */
	char gateway[512];	   /* "" = no reports */
	char spool[PATH_MAX];
	char site[32];
	char munge_socket[PATH_MAX];
	char relay[PATH_MAX]; /* "" = tiergate-relay next to the .so */
	char debug[256];
	enum report_auth report_auth;
	bool output;
};

#define ARGS_DEFAULT_SPOOL "/var/spool/tiergate"

/* Parse argv; 0, or -EINVAL with err naming the offending key. */
int args_parse(int argc, char *const argv[], struct plugin_args *out, char *err,
	       size_t errlen);
const char *args_report_auth_name(enum report_auth a);

#endif
