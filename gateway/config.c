/*
 * config.c: see config.h.  shared/conf checks the syntax (and names file,
 * line and key); this file checks the meaning, loads the key files and the
 * tier table, and builds a struct gw_config that owns all its strings.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "jwt_verify.h"
#include "log.h"
#include "tier.h"

#define GW_CONF_MAX_SITES 256
#define GW_CONF_MAX_ADMINS 256
#define GW_CONF_MAX_USER_MAP 4096

static const char *const site_auth_names[] = {
#define GW_SITE_AUTH_NAME_(name, str) str,
    GW_SITE_AUTHS(GW_SITE_AUTH_NAME_)
#undef GW_SITE_AUTH_NAME_
};

#define N_SITE_AUTHS (sizeof(site_auth_names) / sizeof(site_auth_names[0]))

const char *gw_site_auth_name(enum gw_site_auth a)
{
	if ((unsigned)a >= N_SITE_AUTHS)
		return "?";
	return site_auth_names[a];
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ parsing */

/* Everything the section parsers need. */
struct ctx {
	struct conf *c;
	const char *dir; /* directory of the config file, for relative paths */
	char *err;
	size_t errlen;
};

static int nomem(struct ctx *x)
{
	set_err(x->err, x->errlen, "%s: out of memory", x->c->path);
	return -ENOMEM;
}

/* "FILE:LINE: key 'K': missing in [site alpha]" (line of the header). */
static int missing(struct ctx *x, const char *section, const char *label,
		   int line, const char *key)
{
	set_err(x->err, x->errlen, "%s:%d: key '%s': missing in [%s%s%s]",
		x->c->path, line, key, section, *label ? " " : "", label);
	return -EINVAL;
}

static int entry_err(struct ctx *x, const char *section, const char *label,
		     const char *key, int rv, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int entry_err(struct ctx *x, const char *section, const char *label,
		     const char *key, int rv, const char *fmt, ...)
{
	struct conf_entry *e = conf_find(x->c, section, label, key);
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e)
		conf_entry_error(x->c, e, x->err, x->errlen, "%s", msg);
	else
		set_err(x->err, x->errlen, "%s: key '%s': %s", x->c->path, key,
			msg);
	return rv;
}

/* A string key; *out = strdup(value or dflt) (dflt NULL: stays NULL). */
static int get_str(struct ctx *x, const char *section, const char *label,
		   const char *key, const char *dflt, char **out)
{
	const char *v = dflt;
	int rv = conf_get_str(x->c, section, label, key, &v, x->err, x->errlen);

	if (rv < 0)
		return rv;
	*out = NULL;
	if (!v)
		return 0;
	*out = strdup(v);
	return *out ? 0 : nomem(x);
}

static int get_uint(struct ctx *x, const char *section, const char *label,
		    const char *key, long min, long max, long dflt,
		    unsigned *out)
{
	long v = dflt;
	int rv = conf_get_int(x->c, section, label, key, min, max, &v, x->err,
			      x->errlen);

	if (rv < 0)
		return rv;
	*out = (unsigned)v;
	return 0;
}

static int get_size(struct ctx *x, const char *section, const char *label,
		    const char *key, uint64_t min, uint64_t max, uint64_t dflt,
		    uint64_t *out)
{
	uint64_t v = dflt;
	int rv =
	    conf_get_size(x->c, section, label, key, &v, x->err, x->errlen);

	if (rv < 0)
		return rv;
	if (v < min || v > max)
		return entry_err(x, section, label, key, -ERANGE,
				 "%llu bytes is outside %llu..%llu",
				 (unsigned long long)v, (unsigned long long)min,
				 (unsigned long long)max);
	*out = v;
	return 0;
}

/*
 * A path key: "" means none (*out NULL) when allow_empty; a relative path
 * is joined to the config file's directory.
 */
static int get_path(struct ctx *x, const char *section, const char *label,
		    const char *key, const char *dflt, bool allow_empty,
		    char **out)
{
	const char *v = dflt;
	int rv = conf_get_str(x->c, section, label, key, &v, x->err, x->errlen);

	*out = NULL;
	if (rv < 0)
		return rv;
	if (!v)
		return 0;
	if (!*v) {
		if (allow_empty)
			return 0;
		return entry_err(x, section, label, key, -EINVAL, "empty path");
	}
	if (strlen(v) >= PATH_MAX)
		return entry_err(x, section, label, key, -ENAMETOOLONG,
				 "path longer than %d bytes", PATH_MAX - 1);
	if (*v == '/' || !*x->dir) {
		*out = strdup(v);
	} else if (asprintf(out, "%s/%s", x->dir, v) < 0) {
		*out = NULL;
	}
	return *out ? 0 : nomem(x);
}

/* An absolute socket path (munge_socket); "" or absent: NULL. */
static int get_socket(struct ctx *x, const char *section, const char *label,
		      const char *key, char **out)
{
	const char *v = NULL;
	int rv = conf_get_str(x->c, section, label, key, &v, x->err, x->errlen);

	*out = NULL;
	if (rv < 0)
		return rv;
	if (!v || !*v)
		return 0;
	if (*v != '/')
		return entry_err(x, section, label, key, -EINVAL,
				 "'%s' is not an absolute path", v);
	if (strlen(v) >= 108) /* sizeof(sun_path) */
		return entry_err(x, section, label, key, -ENAMETOOLONG,
				 "socket path longer than 107 bytes");
	*out = strdup(v);
	return *out ? 0 : nomem(x);
}

/* ------------------------------------------------------------ key tables */

/*
 * A section's keys are a table, read in its order (so the first bad key in
 * that order is the one reported); each key's checks run as soon as it is
 * read, through then().  The value goes to the field at off of the
 * section's struct: struct gw_config or struct gw_site_config.
 */
enum key_type {
	KEY_STR,	  /* char *: strdup'd; no dflt_s: stays NULL */
	KEY_PATH,	  /* char *: see get_path; "" refused */
	KEY_PATH_OR_NONE, /* char *: see get_path; "" means none */
	KEY_SOCKET,	  /* char *: see get_socket */
	KEY_UINT,	  /* unsigned, in min..max */
	KEY_INT64,	  /* int64_t, in min..max */
	KEY_SIZE,	  /* uint64_t, "64M" and the like, in min..max */
	KEY_RAW,	  /* no field: then() gets the value, or dflt_s */
};

/*
 * obj is the section's struct; v the value for KEY_RAW (called only when
 * there is one), NULL for the others (then() reads the field).
 */
typedef int key_then_fn(struct ctx *x, void *obj, const char *v);

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	long min, max, dflt; /* KEY_UINT, KEY_INT64, KEY_SIZE */
	const char *dflt_s;  /* KEY_STR, KEY_PATH*, KEY_RAW */
	key_then_fn *then;   /* or NULL */
};

static int get_key(struct ctx *x, const char *section, const char *label,
		   const struct key *k, void *obj)
{
	void *field = (char *)obj + k->off;
	const char *v = k->dflt_s;
	long n = k->dflt;
	int rv = 0;

	switch (k->type) {
	case KEY_STR:
		rv = get_str(x, section, label, k->name, k->dflt_s, field);
		break;
	case KEY_PATH:
	case KEY_PATH_OR_NONE:
		rv = get_path(x, section, label, k->name, k->dflt_s,
			      k->type == KEY_PATH_OR_NONE, field);
		break;
	case KEY_SOCKET:
		rv = get_socket(x, section, label, k->name, field);
		break;
	case KEY_UINT:
		rv = get_uint(x, section, label, k->name, k->min, k->max,
			      k->dflt, field);
		break;
	case KEY_INT64:
		rv = conf_get_int(x->c, section, label, k->name, k->min, k->max,
				  &n, x->err, x->errlen);
		*(int64_t *)field = n;
		rv = rv < 0 ? rv : 0;
		break;
	case KEY_SIZE:
		rv = get_size(x, section, label, k->name, (uint64_t)k->min,
			      (uint64_t)k->max, (uint64_t)k->dflt, field);
		break;
	case KEY_RAW:
		rv = conf_get_str(x->c, section, label, k->name, &v, x->err,
				  x->errlen);
		if (rv < 0)
			return rv;
		return v && k->then ? k->then(x, obj, v) : 0;
	}
	if (rv || !k->then)
		return rv;
	return k->then(x, obj, NULL);
}

static int get_keys(struct ctx *x, const char *section, const char *label,
		    const struct key *keys, size_t n, void *obj)
{
	size_t i;
	int rv = 0;

	for (i = 0; !rv && i < n; i++)
		rv = get_key(x, section, label, &keys[i], obj);
	return rv;
}

/* ------------------------------------------------------------ [gateway] */

/* listen: "HOST:PORT" or "[V6]:PORT" into cfg->listen_host / listen_port. */
static int parse_listen(struct ctx *x, void *obj, const char *unused)
{
	struct gw_config *cfg = obj;
	const char *v = cfg->listen, *colon, *hs, *he;
	char *end;
	long port;

	if (*v == '[') {
		he = strchr(v, ']');
		if (!he || he[1] != ':')
			goto bad;
		hs = v + 1;
		colon = he + 1;
	} else {
		colon = strrchr(v, ':');
		if (!colon || memchr(v, ':', (size_t)(colon - v)))
			goto bad;
		hs = v;
		he = colon;
	}
	if (he == hs)
		goto bad;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 1 || port > 65535)
		goto bad;
	if (he - hs == 1 && *hs == '*')
		cfg->listen_host = strdup("0.0.0.0");
	else
		cfg->listen_host = strndup(hs, (size_t)(he - hs));
	if (!cfg->listen_host)
		return nomem(x);
	cfg->listen_port = (unsigned)port;
	return 0;
bad:
	return entry_err(x, "gateway", "", "listen", -EINVAL,
			 "'%s' is not HOST:PORT (e.g. 127.0.0.1:8480, "
			 "[::1]:8480, *:8480)",
			 v);
}

static int check_user_issuer(struct ctx *x, void *obj, const char *unused)
{
	struct gw_config *cfg = obj;

	if (*cfg->user_issuer)
		return 0;
	return entry_err(x, "gateway", "", "user_issuer", -EINVAL,
			 "must not be empty");
}

/* admins: "root, alice" into cfg->admins. */
static int parse_admins(struct ctx *x, void *obj, const char *v)
{
	struct gw_config *cfg = obj;
	char *copy = strdup(v), *tok, *save = NULL;
	int rv = 0;

	if (!copy)
		return nomem(x);
	cfg->admins = calloc(GW_CONF_MAX_ADMINS, sizeof(*cfg->admins));
	if (!cfg->admins) {
		rv = nomem(x);
		goto out_free;
	}
	for (tok = strtok_r(copy, ", \t", &save); tok;
	     tok = strtok_r(NULL, ", \t", &save)) {
		if (!jwt_user_name_valid(tok)) {
			rv = entry_err(x, "gateway", "", "admins", -EINVAL,
				       "'%s' is not a valid user name", tok);
			goto out_free;
		}
		if (cfg->n_admins == GW_CONF_MAX_ADMINS) {
			rv = entry_err(x, "gateway", "", "admins", -E2BIG,
				       "more than %d admins",
				       GW_CONF_MAX_ADMINS);
			goto out_free;
		}
		cfg->admins[cfg->n_admins] = strdup(tok);
		if (!cfg->admins[cfg->n_admins]) {
			rv = nomem(x);
			goto out_free;
		}
		cfg->n_admins++;
	}
out_free:
	free(copy);
	return rv;
}

static int check_per_ip(struct ctx *x, void *obj, const char *unused)
{
	struct gw_config *cfg = obj;

	if (cfg->max_connections_per_ip <= cfg->max_connections)
		return 0;
	return entry_err(x, "gateway", "", "max_connections_per_ip", -EINVAL,
			 "%u is more than max_connections (%u)",
			 cfg->max_connections_per_ip, cfg->max_connections);
}

#define GW(field) offsetof(struct gw_config, field)

static const struct key gateway_keys[] = {
    {"listen", KEY_STR, GW(listen), .dflt_s = GW_CONF_DEFAULT_LISTEN,
     .then = parse_listen},
    {"state_dir", KEY_PATH, GW(state_dir), .dflt_s = GW_CONF_DEFAULT_STATE_DIR},
    {"user_key", KEY_PATH_OR_NONE, GW(user_key_path),
     .dflt_s = GW_CONF_DEFAULT_USER_KEY},
    {"user_issuer", KEY_STR, GW(user_issuer),
     .dflt_s = GW_CONF_DEFAULT_USER_ISSUER, .then = check_user_issuer},
    {"ticket_key", KEY_PATH, GW(ticket_key_path),
     .dflt_s = GW_CONF_DEFAULT_TICKET_KEY},
    {"tiers", KEY_PATH, GW(tiers_path), .dflt_s = GW_CONF_DEFAULT_TIERS},
    {"munge_socket", KEY_SOCKET, .off = GW(munge_socket)},
    {"admins", KEY_RAW, .then = parse_admins},
    {"workers", KEY_UINT, GW(workers), .min = 1, .max = 64,
     .dflt = GW_CONF_DEFAULT_WORKERS},
    {"max_connections", KEY_UINT, GW(max_connections), .min = 1, .max = 1000000,
     .dflt = GW_CONF_DEFAULT_MAX_CONNECTIONS},
    {"max_connections_per_ip", KEY_UINT, GW(max_connections_per_ip), .min = 1,
     .max = 1000000, .dflt = GW_CONF_DEFAULT_MAX_CONNECTIONS_PER_IP,
     .then = check_per_ip},
    {"connection_timeout", KEY_UINT, GW(connection_timeout_s), .min = 1,
     .max = 3600, .dflt = GW_CONF_DEFAULT_CONNECTION_TIMEOUT},
    {"max_body", KEY_SIZE, GW(max_body), .min = 1024, .max = 1L << 30,
     .dflt = GW_CONF_DEFAULT_MAX_BODY},
    {"max_header", KEY_SIZE, GW(max_header), .min = 1024, .max = 1L << 20,
     .dflt = GW_CONF_DEFAULT_MAX_HEADER},
    {"requests_per_turn", KEY_UINT, GW(requests_per_turn), .min = 1,
     .max = 100000, .dflt = GW_CONF_DEFAULT_REQUESTS_PER_TURN},
    {"drain_timeout", KEY_UINT, GW(drain_timeout_s), .min = 0, .max = 3600,
     .dflt = GW_CONF_DEFAULT_DRAIN_TIMEOUT},
    {"stall_threshold", KEY_UINT, GW(stall_threshold_s), .min = 1, .max = 86400,
     .dflt = GW_CONF_DEFAULT_STALL_THRESHOLD},
    {"max_token_lifetime", KEY_INT64, GW(max_token_lifetime_s), .min = 60,
     .max = 366L * 24 * 3600, .dflt = GW_CONF_DEFAULT_MAX_TOKEN_LIFETIME},
    {"ticket_ttl", KEY_INT64, GW(ticket_ttl_s), .min = 60,
     .max = 366L * 24 * 3600, .dflt = GW_CONF_DEFAULT_TICKET_TTL},
};

#undef GW

static int parse_gateway(struct ctx *x, struct gw_config *cfg)
{
	int rv = get_keys(x, "gateway", "", gateway_keys,
			  sizeof(gateway_keys) / sizeof(*gateway_keys), cfg);

	if (!rv && !cfg->user_key_path && !cfg->munge_socket)
		rv = entry_err(x, "gateway", "", "user_key", -EINVAL,
			       "no way to authenticate users: set user_key "
			       "or munge_socket");
	return rv;
}

/* ------------------------------------------------------------ [site NAME] */

static int check_kind(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;

	if (*site->kind && strlen(site->kind) <= 31 &&
	    strspn(site->kind, "abcdefghijklmnopqrstuvwxyz0123456789_-") ==
		strlen(site->kind))
		return 0;
	return entry_err(x, "site", site->name, "kind", -EINVAL,
			 "'%s' is not an adapter name ([a-z0-9_-], "
			 "e.g. slurmrestd)",
			 site->kind);
}

/* url (required): "http://host[:port][/prefix]", "https://...", "unix:/path".
 */
static int parse_url(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;
	const char *u = site->url, *host;
	size_t n;

	if (!u)
		return missing(x, "site", site->name, site->line, "url");
	if (!strncmp(u, "unix:", 5)) {
		site->url_kind = GW_URL_UNIX;
		if (u[5] != '/')
			goto bad;
		if (strlen(u + 5) >= 108)
			return entry_err(x, "site", site->name, "url",
					 -ENAMETOOLONG,
					 "socket path longer than 107 bytes");
		site->unix_path = strdup(u + 5);
		return site->unix_path ? 0 : nomem(x);
	}
	if (!strncmp(u, "http://", 7)) {
		site->url_kind = GW_URL_HTTP;
		host = u + 7;
	} else if (!strncmp(u, "https://", 8)) {
		site->url_kind = GW_URL_HTTPS;
		host = u + 8;
	} else {
		goto bad;
	}
	n = strcspn(host, "/?#");
	if (n == 0 || host[0] == ':' || memchr(host, '@', n) ||
	    strpbrk(u, " \t\"'<>\\"))
		goto bad;
	return 0;
bad:
	return entry_err(x, "site", site->name, "url", -EINVAL,
			 "'%s' is not http://HOST[:PORT], https://HOST[:PORT] "
			 "or unix:/PATH",
			 u);
}

static int parse_auth(struct ctx *x, void *obj, const char *v)
{
	struct gw_site_config *site = obj;
	size_t i;

	for (i = 0; i < N_SITE_AUTHS; i++) {
		if (!strcmp(v, site_auth_names[i])) {
			site->auth = (enum gw_site_auth)i;
			return 0;
		}
	}
	return entry_err(x, "site", site->name, "auth", -EINVAL,
			 "'%s' is not jwt-key, jwt-user or munge", v);
}

static int check_jwt_key(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;

	if (site->auth == GW_SITE_AUTH_JWT_KEY && !site->jwt_key_path)
		return missing(x, "site", site->name, site->line, "jwt_key");
	if (site->auth != GW_SITE_AUTH_JWT_KEY && site->jwt_key_path)
		return entry_err(x, "site", site->name, "jwt_key", -EINVAL,
				 "only used with auth = jwt-key (this site "
				 "has auth = %s)",
				 gw_site_auth_name(site->auth));
	return 0;
}

static int check_munge_socket(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;

	if (site->auth == GW_SITE_AUTH_MUNGE && !site->munge_socket)
		return missing(x, "site", site->name, site->line,
			       "munge_socket");
	/* %u: the user's own slurmrestd (rest_auth/local runs as its user) */
	if ((site->auth == GW_SITE_AUTH_MUNGE) !=
	    (site->url_kind == GW_URL_UNIX && strstr(site->url, "%u") != NULL))
		return entry_err(
		    x, "site", site->name, "url", -EINVAL,
		    site->auth == GW_SITE_AUTH_MUNGE
			? "auth = munge needs unix:/PATH/%%u.sock: one "
			  "slurmrestd (rest_auth/local) per site user, %%u "
			  "replaced by the user's name"
			: "%%u in the url is for auth = munge only");
	return 0;
}

/* poll_user: munge only, "slurm" by default there. */
static int check_poll_user(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;

	if (!site->poll_user && site->auth == GW_SITE_AUTH_MUNGE) {
		site->poll_user = strdup("slurm");
		if (!site->poll_user)
			return nomem(x);
	}
	if (site->poll_user && site->auth != GW_SITE_AUTH_MUNGE)
		return entry_err(x, "site", site->name, "poll_user", -EINVAL,
				 "only used with auth = munge");
	if (site->poll_user && !jwt_user_name_valid(site->poll_user))
		return entry_err(x, "site", site->name, "poll_user", -EINVAL,
				 "'%s' is not a user name", site->poll_user);
	return 0;
}

/* user_map: "same" or "alice=asmith, bob=bjones". */
static int parse_user_map(struct ctx *x, void *obj, const char *v)
{
	struct gw_site_config *site = obj;
	char *copy, *tok, *save = NULL;
	size_t i;
	int rv = 0;

	if (!strcmp(v, "same")) {
		site->user_map_same = true;
		return 0;
	}
	copy = strdup(v);
	site->user_map = calloc(GW_CONF_MAX_USER_MAP, sizeof(*site->user_map));
	if (!copy || !site->user_map) {
		rv = nomem(x);
		goto out_free;
	}
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *from, *to;

		from = tok;
		if (eq)
			*eq = '\0';
		while (*from == ' ' || *from == '\t')
			from++;
		for (i = strlen(from);
		     i && (from[i - 1] == ' ' || from[i - 1] == '\t');)
			from[--i] = '\0';
		to = eq ? eq + 1 : NULL;
		if (to) {
			while (*to == ' ' || *to == '\t')
				to++;
			for (i = strlen(to);
			     i && (to[i - 1] == ' ' || to[i - 1] == '\t');)
				to[--i] = '\0';
		}
		if (!to || !jwt_user_name_valid(from) ||
		    !jwt_user_name_valid(to)) {
			rv = entry_err(
			    x, "site", site->name, "user_map", -EINVAL,
			    "'%s%s%s' is not USER=SITE_USER (the "
			    "value is \"same\" or a comma-separated "
			    "list like \"alice=asmith, bob=bjones\")",
			    from, to ? "=" : "", to ? to : "");
			goto out_free;
		}
		for (i = 0; i < site->n_user_map; i++) {
			if (!strcmp(site->user_map[i].from, from)) {
				rv = entry_err(
				    x, "site", site->name, "user_map", -EINVAL,
				    "user '%s' is mapped twice", from);
				goto out_free;
			}
		}
		if (site->n_user_map == GW_CONF_MAX_USER_MAP) {
			rv = entry_err(x, "site", site->name, "user_map",
				       -E2BIG, "more than %d users",
				       GW_CONF_MAX_USER_MAP);
			goto out_free;
		}
		site->user_map[site->n_user_map].from = strdup(from);
		site->user_map[site->n_user_map].to = strdup(to);
		site->n_user_map++;
		if (!site->user_map[site->n_user_map - 1].from ||
		    !site->user_map[site->n_user_map - 1].to) {
			rv = nomem(x);
			goto out_free;
		}
	}
	if (!site->n_user_map)
		rv = entry_err(x, "site", site->name, "user_map", -EINVAL,
			       "empty: use \"same\" or \"alice=asmith, ...\"");
out_free:
	free(copy);
	return rv;
}

static bool site_name_valid(const char *s)
{
	size_t n = strlen(s);

	/* conf already restricts labels to [A-Za-z0-9_.-] */
	return n >= 1 && n <= GW_SITE_NAME_MAX && *s != '.' && *s != '-';
}

static int check_partition(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;

	if (site->partition &&
	    (!*site->partition || strpbrk(site->partition, " \t,\"'\\")))
		return entry_err(x, "site", site->name, "partition", -EINVAL,
				 "'%s' is not a partition name",
				 site->partition);
	return 0;
}

static int check_jwt_lifetime(struct ctx *x, void *obj, const char *unused)
{
	struct gw_site_config *site = obj;

	if (site->auth != GW_SITE_AUTH_JWT_KEY &&
	    conf_find(x->c, "site", site->name, "jwt_lifetime"))
		return entry_err(x, "site", site->name, "jwt_lifetime", -EINVAL,
				 "only used with auth = jwt-key");
	return 0;
}

#define SITE(field) offsetof(struct gw_site_config, field)

static const struct key site_keys[] = {
    {"kind", KEY_STR, SITE(kind), .dflt_s = GW_CONF_DEFAULT_SITE_KIND,
     .then = check_kind},
    {"url", KEY_STR, SITE(url), .then = parse_url},
    {"auth", KEY_RAW, .dflt_s = "jwt-key", .then = parse_auth},
    {"jwt_key", KEY_PATH, SITE(jwt_key_path), .then = check_jwt_key},
    {"munge_socket", KEY_SOCKET, SITE(munge_socket),
     .then = check_munge_socket},
    {"poll_user", KEY_STR, SITE(poll_user), .then = check_poll_user},
    {"user_map", KEY_RAW, .dflt_s = "same", .then = parse_user_map},
    {"partition", KEY_STR, SITE(partition), .then = check_partition},
    {"poll_interval", KEY_UINT, SITE(poll_interval_s), .min = 1, .max = 3600,
     .dflt = GW_CONF_DEFAULT_POLL_INTERVAL},
    {"request_timeout", KEY_UINT, SITE(request_timeout_s), .min = 1, .max = 600,
     .dflt = GW_CONF_DEFAULT_REQUEST_TIMEOUT},
    {"max_connections", KEY_UINT, SITE(max_connections), .min = 1, .max = 256,
     .dflt = GW_CONF_DEFAULT_SITE_MAX_CONNECTIONS},
    {"jwt_lifetime", KEY_UINT, SITE(jwt_lifetime_s), .min = 30, .max = 86400,
     .dflt = GW_CONF_DEFAULT_JWT_LIFETIME, .then = check_jwt_lifetime},
    {"queue_estimate", KEY_UINT, SITE(queue_estimate_s), .min = 0,
     .max = 30 * 86400, .dflt = GW_CONF_DEFAULT_QUEUE_ESTIMATE},
    {"default_time_limit", KEY_UINT, SITE(default_time_limit_min), .min = 1,
     .max = 366 * 1440, .dflt = GW_CONF_DEFAULT_TIME_LIMIT},
};

#undef SITE

static int parse_site(struct ctx *x, const struct conf_section *sec,
		      struct gw_site_config *site)
{
	const char *s = "site", *l = sec->label;
	size_t i;
	int rv;

	site->line = sec->line;
	if (!site_name_valid(l)) {
		set_err(x->err, x->errlen,
			"%s:%d: [site %s]: a site name is 1..%d characters "
			"of [A-Za-z0-9_.-], not starting with '.' or '-'",
			x->c->path, sec->line, l, GW_SITE_NAME_MAX);
		return -EINVAL;
	}
	site->name = strdup(l);
	if (!site->name)
		return nomem(x);
	rv = get_keys(x, s, l, site_keys,
		      sizeof(site_keys) / sizeof(*site_keys), site);
	/* after both: a bad value is reported before a misplaced key */
	for (i = 0; !rv && i < 2; i++) {
		const char *k = i ? "default_time_limit" : "queue_estimate";

		if (site->auth != GW_SITE_AUTH_JWT_USER &&
		    conf_find(x->c, s, l, k))
			rv = entry_err(x, s, l, k, -EINVAL,
				       "only used with auth = jwt-user");
	}
	return rv;
}

/* Only [gateway] and [site NAME]; no top-level keys. */
static int check_sections(struct ctx *x, size_t *n_sites)
{
	size_t i;

	*n_sites = 0;
	for (i = 0; i < x->c->n_sections; i++) {
		const struct conf_section *s = &x->c->sections[i];

		if (!strcmp(s->section, "gateway") && !*s->label)
			continue;
		if (!strcmp(s->section, "site") && *s->label) {
			(*n_sites)++;
			continue;
		}
		if (!strcmp(s->section, "site"))
			set_err(x->err, x->errlen,
				"%s:%d: [site] needs a name: [site NAME]",
				x->c->path, s->line);
		else if (!strcmp(s->section, "gateway"))
			set_err(x->err, x->errlen,
				"%s:%d: [gateway %s]: the gateway section "
				"takes no name",
				x->c->path, s->line, s->label);
		else
			set_err(x->err, x->errlen,
				"%s:%d: unknown section [%s%s%s] (expected "
				"[gateway] or [site NAME])",
				x->c->path, s->line, s->section,
				*s->label ? " " : "", s->label);
		return -EINVAL;
	}
	if (!*n_sites) {
		set_err(x->err, x->errlen,
			"%s: no [site NAME] section: at least one site is "
			"needed",
			x->c->path);
		return -EINVAL;
	}
	if (*n_sites > GW_CONF_MAX_SITES) {
		set_err(x->err, x->errlen, "%s: more than %d sites", x->c->path,
			GW_CONF_MAX_SITES);
		return -E2BIG;
	}
	return 0;
}

/* --------------------------------------------------------- key files */

/* Group/world-readable secrets are worth a warning, not a refusal. */
static void warn_if_readable(const char *what, const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
		log_warn("%s %s is accessible by group or others (mode %03o):"
			 " it should be 0600",
			 what, path, (unsigned)(st.st_mode & 0777));
}

static int load_key(struct ctx *x, const char *section, const char *label,
		    const char *key, const char *path, bool must_sign,
		    const char *why, struct jwt_key **out)
{
	char jerr[384];
	int rv;

	rv = jwt_key_load_file(path, NULL, out, jerr, sizeof(jerr));
	if (rv)
		return entry_err(x, section, label, key, rv, "%s", jerr);
	if (must_sign && !jwt_key_can_sign(*out)) {
		jwt_key_free(*out);
		*out = NULL;
		return entry_err(x, section, label, key, -EINVAL,
				 "%s holds a public key only: %s", path, why);
	}
	if (jwt_key_can_sign(*out))
		warn_if_readable("key", path);
	return 0;
}

static int load_files(struct ctx *x, struct gw_config *cfg)
{
	char terr[512];
	size_t i;
	int rv;

	if (cfg->user_key_path) {
		rv = load_key(x, "gateway", "", "user_key", cfg->user_key_path,
			      false, NULL, &cfg->user_key);
		if (rv)
			return rv;
	}
	rv =
	    load_key(x, "gateway", "", "ticket_key", cfg->ticket_key_path, true,
		     "the gateway signs job tickets and needs the private "
		     "key (the nodes get the public one)",
		     &cfg->ticket_key);
	if (rv)
		return rv;
	for (i = 0; i < cfg->n_sites; i++) {
		struct gw_site_config *s = &cfg->sites[i];

		if (!s->jwt_key_path)
			continue;
		rv = load_key(x, "site", s->name, "jwt_key", s->jwt_key_path,
			      true,
			      "the gateway signs the site's Slurm tokens and "
			      "needs the site's secret (jwt_hs256.key)",
			      &s->jwt_key);
		if (rv)
			return rv;
	}
	rv = tier_table_load(cfg->tiers_path, &cfg->tiers, terr, sizeof(terr));
	if (rv)
		return entry_err(x, "gateway", "", "tiers", rv, "%s", terr);
	return 0;
}

/* ------------------------------------------------------------ loading */

static void free_site(struct gw_site_config *s)
{
	size_t i;

	free(s->name);
	free(s->kind);
	free(s->url);
	free(s->unix_path);
	free(s->jwt_key_path);
	jwt_key_free(s->jwt_key);
	free(s->munge_socket);
	free(s->poll_user);
	for (i = 0; i < s->n_user_map; i++) {
		free(s->user_map[i].from);
		free(s->user_map[i].to);
	}
	free(s->user_map);
	free(s->partition);
}

static void config_destroy(struct gw_config *cfg)
{
	size_t i;

	free(cfg->path);
	free(cfg->listen);
	free(cfg->listen_host);
	free(cfg->state_dir);
	free(cfg->user_key_path);
	jwt_key_free(cfg->user_key);
	free(cfg->user_issuer);
	free(cfg->ticket_key_path);
	jwt_key_free(cfg->ticket_key);
	free(cfg->tiers_path);
	tier_table_free(cfg->tiers);
	free(cfg->munge_socket);
	for (i = 0; i < cfg->n_admins; i++)
		free(cfg->admins[i]);
	free(cfg->admins);
	for (i = 0; i < cfg->n_sites; i++)
		free_site(&cfg->sites[i]);
	free(cfg->sites);
	free(cfg);
}

static int build(struct conf *c, struct gw_config **out, char *err,
		 size_t errlen)
{
	struct ctx x = {.c = c, .err = err, .errlen = errlen};
	struct gw_config *cfg;
	char *dir = NULL, *slash;
	size_t i, n_sites, k = 0;
	int rv;

	*out = NULL;
	cfg = calloc(1, sizeof(*cfg));
	dir = strdup(c->path);
	if (!cfg || !dir) {
		free(dir);
		free(cfg);
		return nomem(&x);
	}
	atomic_init(&cfg->refs_, 1);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		*dir = '\0';
	if (slash == dir)
		strcpy(dir, "/");
	x.dir = dir;
	cfg->path = strdup(c->path);
	if (!cfg->path) {
		rv = nomem(&x);
		goto out_free;
	}

	rv = check_sections(&x, &n_sites);
	if (rv)
		goto out_free;
	rv = parse_gateway(&x, cfg);
	if (rv)
		goto out_free;
	cfg->sites = calloc(n_sites, sizeof(*cfg->sites));
	if (!cfg->sites) {
		rv = nomem(&x);
		goto out_free;
	}
	for (i = 0; i < c->n_sections; i++) {
		if (strcmp(c->sections[i].section, "site"))
			continue;
		cfg->n_sites = k + 1;
		rv = parse_site(&x, &c->sections[i], &cfg->sites[k++]);
		if (rv)
			goto out_free;
	}
	/* every key asked for: what is left is misspelt or misplaced */
	rv = conf_check_unused(c, err, errlen);
	if (rv)
		goto out_free;
	/* files last: cheap mistakes are reported first */
	rv = load_files(&x, cfg);
	if (rv)
		goto out_free;
	free(dir);
	*out = cfg;
	return 0;

out_free:
	free(dir);
	config_destroy(cfg);
	return rv;
}

int gw_config_load(const char *path, struct gw_config **out, char *err,
		   size_t errlen)
{
	struct conf *c = NULL;
	int rv;

	*out = NULL;
	if (!path || !*path) {
		set_err(err, errlen, "no configuration file given");
		return -EINVAL;
	}
	rv = conf_parse_file(path, &c, err, errlen);
	if (rv)
		return rv;
	rv = build(c, out, err, errlen);
	conf_free(c);
	return rv;
}

int gw_config_load_string(const char *name, const char *text,
			  struct gw_config **out, char *err, size_t errlen)
{
	struct conf *c = NULL;
	int rv;

	*out = NULL;
	rv = conf_parse_string(name, text, &c, err, errlen);
	if (rv)
		return rv;
	rv = build(c, out, err, errlen);
	conf_free(c);
	return rv;
}

struct gw_config *gw_config_ref(struct gw_config *cfg)
{
	if (cfg)
		atomic_fetch_add(&cfg->refs_, 1);
	return cfg;
}

void gw_config_unref(struct gw_config *cfg)
{
	if (!cfg)
		return;
	if (atomic_fetch_sub(&cfg->refs_, 1) == 1)
		config_destroy(cfg);
}

void gw_config_free(struct gw_config *cfg)
{
	gw_config_unref(cfg);
}

/* ------------------------------------------------------------ queries */

const struct gw_site_config *gw_config_site(const struct gw_config *cfg,
					    const char *name)
{
	size_t i;

	if (!cfg || !name)
		return NULL;
	for (i = 0; i < cfg->n_sites; i++)
		if (!strcmp(cfg->sites[i].name, name))
			return &cfg->sites[i];
	return NULL;
}

int gw_config_map_user(const struct gw_site_config *site,
		       const char *gateway_user, char *out, size_t len)
{
	const char *to = NULL;
	size_t i;

	if (!site || !gateway_user || !jwt_user_name_valid(gateway_user))
		return -EINVAL;
	if (site->user_map_same) {
		to = gateway_user;
	} else {
		for (i = 0; i < site->n_user_map; i++) {
			if (!strcmp(site->user_map[i].from, gateway_user)) {
				to = site->user_map[i].to;
				break;
			}
		}
	}
	if (!to)
		return -ENOENT;
	if (strlen(to) >= len)
		return -ENOSPC;
	memcpy(out, to, strlen(to) + 1);
	return 0;
}

bool gw_config_is_admin(const struct gw_config *cfg, const char *user)
{
	size_t i;

	if (!cfg || !user)
		return false;
	for (i = 0; i < cfg->n_admins; i++)
		if (!strcmp(cfg->admins[i], user))
			return true;
	return false;
}

/* Append to buf at *off, keeping it NUL-terminated and bounded. */
static void append(char *buf, size_t len, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*off = *off + (size_t)n >= len ? len - 1 : *off + (size_t)n;
}

const char *gw_config_debug_str(const struct gw_config *cfg, char *buf,
				size_t len)
{
	char tiers[256] = "";
	size_t off = 0, i;

	if (!buf || !len)
		return buf;
	buf[0] = '\0';
	if (!cfg) {
		append(buf, len, &off, "config (null)");
		return buf;
	}
	if (cfg->tiers)
		tier_names(cfg->tiers, tiers, sizeof(tiers));
	append(buf, len, &off, "config %s listen=%s sites=", cfg->path,
	       cfg->listen);
	for (i = 0; i < cfg->n_sites; i++)
		append(buf, len, &off, "%s%s", i ? "," : "",
		       cfg->sites[i].name);
	append(buf, len, &off,
	       " tiers=%s user_key=%s ticket_key=%s munge=%s admins=%zu"
	       " workers=%u refs=%d",
	       tiers, cfg->user_key ? jwt_key_alg(cfg->user_key) : "none",
	       cfg->ticket_key ? jwt_key_alg(cfg->ticket_key) : "none",
	       cfg->munge_socket ? "on" : "off", cfg->n_admins, cfg->workers,
	       atomic_load(&cfg->refs_));
	return buf;
}

const char *gw_site_debug_str(const struct gw_site_config *s, char *buf,
			      size_t len)
{
	size_t off = 0;

	if (!buf || !len)
		return buf;
	buf[0] = '\0';
	if (!s) {
		append(buf, len, &off, "site (null)");
		return buf;
	}
	append(buf, len, &off,
	       "site %s kind=%s url=%s auth=%s user_map=", s->name, s->kind,
	       s->url, gw_site_auth_name(s->auth));
	if (s->user_map_same)
		append(buf, len, &off, "same");
	else
		append(buf, len, &off, "%zu-users", s->n_user_map);
	append(buf, len, &off,
	       " partition=%s poll=%us timeout=%us max_conn=%u munge=%s",
	       s->partition ? s->partition : "-", s->poll_interval_s,
	       s->request_timeout_s, s->max_connections,
	       s->munge_socket ? s->munge_socket : "-");
	return buf;
}

int gw_config_check_main(const char *path)
{
	struct gw_config *cfg = NULL;
	char err[1024], dbgs[1024];
	int rv;

	rv = gw_config_load(path, &cfg, err, sizeof(err));
	if (rv) {
		fprintf(stderr, "tiergated: %s\n", err);
		return 1;
	}
	dbg("%s", gw_config_debug_str(cfg, dbgs, sizeof(dbgs)));
	printf("ok\n");
	gw_config_unref(cfg);
	return 0;
}
