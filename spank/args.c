/* args.c: see args.h. */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum arg_kind { ARG_PATH, ARG_STR, ARG_BOOL, ARG_AUTH };

struct arg_spec {
	const char *key;
	enum arg_kind kind;
	size_t offset;
	size_t size;
};

#define ARG(k, kind, field)                                                    \
	{                                                                      \
		k, kind, offsetof(struct plugin_args, field),                  \
		    sizeof(((struct plugin_args *)0)->field)                   \
	}

static const struct arg_spec arg_specs[] = {
    ARG("tiers", ARG_PATH, tiers),
    ARG("ticket_key", ARG_PATH, ticket_key),
    ARG("gateway", ARG_STR, gateway),
    ARG("spool", ARG_PATH, spool),
    ARG("site", ARG_STR, site),
    ARG("munge_socket", ARG_PATH, munge_socket),
    ARG("relay", ARG_PATH, relay),
    ARG("debug", ARG_STR, debug),
    ARG("report_auth", ARG_AUTH, report_auth),
    ARG("output", ARG_BOOL, output),
};
#define N_SPECS (sizeof(arg_specs) / sizeof(*arg_specs))

static const char *const auth_names[] = {
    [REPORT_AUTH_AUTO] = "auto",
    [REPORT_AUTH_MUNGE] = "munge",
    [REPORT_AUTH_TICKET] = "ticket",
    [REPORT_AUTH_NONE] = "none",
};

const char *args_report_auth_name(enum report_auth a)
{
	return a <= REPORT_AUTH_NONE ? auth_names[a] : "?";
}

static int set_value(const struct arg_spec *s, const char *val,
		     struct plugin_args *out, char *err, size_t errlen)
{
	char *field = (char *)out + s->offset;
	size_t i;

	switch (s->kind) {
	case ARG_PATH:
		if (val[0] != '/') {
			snprintf(err, errlen,
				 "plugin argument '%s': '%s' is not an "
				 "absolute path",
				 s->key, val);
			return -EINVAL;
		}
		/* fall through */
	case ARG_STR:
		if (strlen(val) >= s->size) {
			snprintf(
			    err, errlen,
			    "plugin argument '%s': value longer than %zu bytes",
			    s->key, s->size - 1);
			return -EINVAL;
		}
		memcpy(field, val, strlen(val) + 1);
		return 0;
	case ARG_BOOL:
		if (!strcmp(val, "yes") || !strcmp(val, "1") ||
		    !strcmp(val, "true"))
			*(bool *)field = true;
		else if (!strcmp(val, "no") || !strcmp(val, "0") ||
			 !strcmp(val, "false"))
			*(bool *)field = false;
		else
			goto bad;
		return 0;
	case ARG_AUTH:
		for (i = 0; i < sizeof(auth_names) / sizeof(*auth_names); i++) {
			if (!strcmp(val, auth_names[i])) {
				*(enum report_auth *)field =
				    (enum report_auth)i;
				return 0;
			}
		}
		goto bad;
	}
bad:
	snprintf(err, errlen, "plugin argument '%s': bad value '%s'", s->key,
		 val);
	return -EINVAL;
}

int args_parse(int argc, char *const argv[], struct plugin_args *out, char *err,
	       size_t errlen)
{
	bool seen[N_SPECS] = {false};
	int i, rv;

	memset(out, 0, sizeof(*out));
	snprintf(out->spool, sizeof(out->spool), "%s", ARGS_DEFAULT_SPOOL);
	out->output = true;

	for (i = 0; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		size_t klen, k;

		if (!eq || eq == argv[i]) {
			snprintf(err, errlen,
				 "plugin argument '%s': expected key=value",
				 argv[i]);
			return -EINVAL;
		}
		klen = (size_t)(eq - argv[i]);
		for (k = 0; k < N_SPECS; k++)
			if (strlen(arg_specs[k].key) == klen &&
			    !strncmp(arg_specs[k].key, argv[i], klen))
				break;
		if (k == N_SPECS) {
			snprintf(err, errlen, "unknown plugin argument '%.*s'",
				 (int)klen, argv[i]);
			return -EINVAL;
		}
		if (seen[k]) {
			snprintf(err, errlen, "plugin argument '%s' repeats",
				 arg_specs[k].key);
			return -EINVAL;
		}
		seen[k] = true;
		rv = set_value(&arg_specs[k], eq + 1, out, err, errlen);
		if (rv)
			return rv;
	}
	if (!out->tiers[0]) {
		snprintf(err, errlen, "plugin argument 'tiers' is required");
		return -EINVAL;
	}
	if (out->report_auth == REPORT_AUTH_AUTO)
		out->report_auth = out->munge_socket[0] ? REPORT_AUTH_MUNGE
							: REPORT_AUTH_TICKET;
	return 0;
}
