/*
 * config.h: tiergated.conf (docs/api.md "Configuration"), parsed with
 * shared/conf.h into one immutable struct gw_config.
 *
 *   [gateway]          exactly once: listen, state_dir, keys, limits
 *   [site NAME]        one per site, at least one
 *
 * Every error names file, line and key ("FILE:LINE: key 'K': ..."); unknown
 * keys and sections are errors (a misspelt key is never silently ignored).
 * Relative paths (keys, tiers, state_dir) are taken relative to the
 * directory of the configuration file.
 *
 * Loading reads and checks everything, key files and the tier table
 * included, into a NEW struct: a failed load changes nothing, so a SIGHUP
 * with a broken file keeps the old configuration (main.c swaps pointers
 * only on success).
 *
 * Life cycle: a loaded config has one reference.  Objects that keep
 * pointers into it across loop turns (a job's site, struct auth) take their
 * own reference with gw_config_ref() and drop it with gw_config_unref(); a
 * reload then never frees a config under their feet.  The refcount is
 * atomic, everything else is read-only after load, so worker threads may
 * read a config they hold a reference on.
 */
#ifndef TIERGATE_GW_CONFIG_H
#define TIERGATE_GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jwt_key;
struct tier_table;

/* Defaults (docs/api.md). */
#define GW_CONF_DEFAULT_PATH "/etc/tiergate/tiergated.conf"
#define GW_CONF_DEFAULT_LISTEN "127.0.0.1:8480"
#define GW_CONF_DEFAULT_STATE_DIR "/var/lib/tiergated"
#define GW_CONF_DEFAULT_USER_KEY "/etc/tiergate/user.key"
#define GW_CONF_DEFAULT_USER_ISSUER "tiergate"
#define GW_CONF_DEFAULT_TICKET_KEY "/etc/tiergate/ticket-es256.key"
#define GW_CONF_DEFAULT_TIERS "/etc/tiergate/tiers.conf"
#define GW_CONF_DEFAULT_WORKERS 4
#define GW_CONF_DEFAULT_MAX_CONNECTIONS 1024
#define GW_CONF_DEFAULT_MAX_CONNECTIONS_PER_IP 256
#define GW_CONF_DEFAULT_CONNECTION_TIMEOUT 30
#define GW_CONF_DEFAULT_MAX_BODY (1u << 20)
#define GW_CONF_DEFAULT_MAX_HEADER (8u << 10)
#define GW_CONF_DEFAULT_REQUESTS_PER_TURN 32
#define GW_CONF_DEFAULT_DRAIN_TIMEOUT 10
#define GW_CONF_DEFAULT_STALL_THRESHOLD 30
#define GW_CONF_DEFAULT_MAX_TOKEN_LIFETIME (7 * 24 * 3600)
#define GW_CONF_DEFAULT_TICKET_TTL (7 * 24 * 3600)
#define GW_CONF_DEFAULT_POLL_INTERVAL 2
#define GW_CONF_DEFAULT_REQUEST_TIMEOUT 10
#define GW_CONF_DEFAULT_SITE_MAX_CONNECTIONS 4
#define GW_CONF_DEFAULT_SITE_KIND "slurmrestd"
#define GW_CONF_DEFAULT_JWT_LIFETIME 300
#define GW_CONF_DEFAULT_QUEUE_ESTIMATE 600 /* seconds */
#define GW_CONF_DEFAULT_TIME_LIMIT 60	   /* minutes */

/* Site names: like ticket site claims, 1..31 of [A-Za-z0-9_.-]. */
#define GW_SITE_NAME_MAX 31

/* How the gateway authenticates to a site's slurmrestd. */
#define GW_SITE_AUTHS(X)                                                       \
	X(JWT_KEY, "jwt-key")	/* mint per-user HS256 tokens with jwt_key */  \
	X(JWT_USER, "jwt-user") /* each user registered a Slurm token */       \
	X(MUNGE, "munge")	/* slurmrestd in the site's MUNGE realm */

enum gw_site_auth {
#define GW_SITE_AUTH_ENUM_(name, str) GW_SITE_AUTH_##name,
	GW_SITE_AUTHS(GW_SITE_AUTH_ENUM_)
#undef GW_SITE_AUTH_ENUM_
};
/* "jwt-key", ...; "?" for an out-of-range value. */
const char *gw_site_auth_name(enum gw_site_auth a);

enum gw_url_kind {
	GW_URL_HTTP,
	GW_URL_HTTPS,
	GW_URL_UNIX, /* "unix:/path/to/socket": HTTP over a unix socket */
};

struct gw_user_map_entry {
	char *from; /* gateway user */
	char *to;   /* user on the site */
};

/* One [site NAME] section.  Read-only; lives as long as its gw_config. */
struct gw_site_config {
	char *name;
	int line;   /* of the [site NAME] header */
	char *kind; /* the site adapter: "slurmrestd" (site.h) */
	char *url;  /* as written: "http://h:p", "https://...", "unix:/p" */
	enum gw_url_kind url_kind;
	char *unix_path; /* GW_URL_UNIX: the socket path; else NULL */
	enum gw_site_auth auth;
	char *jwt_key_path;	 /* jwt-key only; else NULL */
	struct jwt_key *jwt_key; /* jwt-key: the site's Slurm key (signs) */
	char *munge_socket;	 /* verifies node events; NULL: not accepted */
	bool user_map_same;	 /* "same": the gateway user is the site user */
	struct gw_user_map_entry *user_map;
	size_t n_user_map;
	char *partition; /* NULL: the site's default partition */
	unsigned poll_interval_s;
	unsigned request_timeout_s;
	unsigned max_connections;
	unsigned jwt_lifetime_s; /* jwt-key: lifetime of minted Slurm tokens */
	/* jwt-user: a user's token must outlive queue wait + time limit */
	unsigned queue_estimate_s;
	unsigned default_time_limit_min; /* for jobs that give none */
	char *poll_user; /* munge: whose slurmrestd lists the jobs */
};

struct gw_config {
	char *path;
	/* [gateway] */
	char *listen;	   /* as written */
	char *listen_host; /* "127.0.0.1", "::1" (no brackets), "0.0.0.0" */
	unsigned listen_port;
	char *state_dir;
	char *user_key_path;	  /* NULL: "user_key =" (no bearer auth) */
	struct jwt_key *user_key; /* verifies (and maybe signs) user tokens */
	char *user_issuer;
	char *ticket_key_path;
	struct jwt_key *ticket_key; /* signs job tickets */
	char *tiers_path;
	struct tier_table *tiers;
	char *munge_socket; /* NULL: no MUNGE user authentication */
	char **admins;
	size_t n_admins;
	unsigned workers;
	unsigned max_connections;
	unsigned max_connections_per_ip;
	unsigned connection_timeout_s;
	uint64_t max_body;
	uint64_t max_header;
	unsigned requests_per_turn; /* to handlers per loop turn */
	unsigned drain_timeout_s;
	unsigned stall_threshold_s;
	int64_t max_token_lifetime_s; /* cap on user tokens (exp - iat) */
	int64_t ticket_ttl_s;	      /* job tickets expire after this */
	/* [site NAME], in file order */
	struct gw_site_config *sites;
	size_t n_sites;
	/* private */
	_Atomic int refs_;
};

/*
 * Load and check `path` (keys, tier table).  On success returns 0 and *out
 * is a new config with one reference; on failure returns a negative errno,
 * *out is NULL and err holds one line naming file, line and key.  Nothing
 * global is touched either way.
 */
int gw_config_load(const char *path, struct gw_config **out, char *err,
		   size_t errlen);
/* Same from text; `name` stands for the file name (and its directory). */
int gw_config_load_string(const char *name, const char *text,
			  struct gw_config **out, char *err, size_t errlen);

/* Take a reference; returns cfg.  Any thread. */
struct gw_config *gw_config_ref(struct gw_config *cfg);
/* Drop a reference; the last one frees (keys wiped).  NULL is fine. */
void gw_config_unref(struct gw_config *cfg);
/* gw_config_unref: drops the caller's (loader's) reference. */
void gw_config_free(struct gw_config *cfg);

/* The site called `name`, or NULL.  Borrowed from cfg. */
const struct gw_site_config *gw_config_site(const struct gw_config *cfg,
					    const char *name);

/*
 * The user `gateway_user` runs as on `site`, into out (len bytes):
 * 0; -ENOENT when the site's user_map has no entry for the user (the
 * gateway must refuse: slurmrestd accepts tokens for users unknown to the
 * site and such a job requeues forever); -EINVAL for a NULL/invalid name;
 * -ENOSPC when out is too small.
 */
int gw_config_map_user(const struct gw_site_config *site,
		       const char *gateway_user, char *out, size_t len);

/* True when `user` is listed in `admins =`. */
bool gw_config_is_admin(const struct gw_config *cfg, const char *user);

/*
 * "config /etc/t.conf listen=127.0.0.1:8480 sites=alpha,beta
 * tiers=basic,premium user_key=HS256 ticket_key=ES256 munge=on admins=1
 * refs=2".  No key material.  Returns buf.
 */
const char *gw_config_debug_str(const struct gw_config *cfg, char *buf,
				size_t len);
/* "site alpha url=http://... auth=jwt-key user_map=same ..."; returns buf */
const char *gw_site_debug_str(const struct gw_site_config *s, char *buf,
			      size_t len);

/*
 * `tiergated --check-config FILE`: load FILE; print "ok" plus a one-line
 * summary to stdout and return 0, or print "tiergated: <error>" to stderr
 * and return 1.  For main().
 */
int gw_config_check_main(const char *path);

#endif
