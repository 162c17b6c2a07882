/*
 * tier.h: the CPU tier table and a site's local entitlement policy.
 *
 * The table is an INI file (shared/conf.h syntax):
 *
 *   default = basic               required; must name a tier
 *   [tier basic]                  up to TIER_MAX tiers, in file order
 *   cpus = 1                      required, 1..4096
 *   nice = 5                      optional, -20..19, default 0
 *   rate = 1.0                    optional, charge per CPU-second, 0..1e6,
 *                                 default 1.0
 *   mem = 1G                      optional, bytes (RLIMIT_AS style),
 *                                 0/absent = unlimited
 *   cpu_time = 3600               optional, seconds (RLIMIT_CPU),
 *                                 0/absent = unlimited
 *   [entitle]                     optional; who may use which tiers
 *   user.alice = premium
 *   group.tiergate-premium = premium
 *   account.physics = premium, gold
 *
 * Tier names are [a-z0-9_-]{1,31}.  Unknown keys and sections, a missing
 * or unknown default, and entitlements naming unknown tiers are errors that
 * name the file and line ("FILE:LINE: key 'K': ...").
 *
 * Policy: the default tier is open to everyone; any other tier needs a
 * rule for the user, one of the user's groups, or the job's account.
 */
#ifndef TIERGATE_TIER_H
#define TIERGATE_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIER_MAX 64
#define TIER_NAME_MAX 31
#define TIER_CPUS_MAX 4096

struct tier {
	char name[TIER_NAME_MAX + 1];
	unsigned cpus;
	uint64_t mem_bytes;  /* 0 = unlimited */
	int nice;	     /* -20..19 */
	uint64_t cpu_time_s; /* 0 = unlimited */
	double rate;	     /* charge per CPU-second, >= 0 */
};

enum tier_who {
	TIER_WHO_USER,
	TIER_WHO_GROUP,
	TIER_WHO_ACCOUNT,
};

/* One [entitle] line: who.name may use the tiers whose bits are set. */
struct tier_rule {
	enum tier_who who;
	char *name;    /* owned by the table */
	uint64_t mask; /* bit i = tiers[i] */
};

/* Owned by whoever loaded it; read-only afterwards (safe to share). */
struct tier_table {
	struct tier tiers[TIER_MAX];
	size_t n_tiers;
	size_t default_idx;
	struct tier_rule *rules;
	size_t n_rules;
};

/*
 * Load the table from `path`, or from `text` (`name` stands for the file
 * name in messages).  On success *out is a new table (tier_table_free);
 * on failure *out is NULL, a negative errno is returned and err names
 * file, line and key.
 */
int tier_table_load(const char *path, struct tier_table **out, char *err,
		    size_t errlen);
int tier_table_parse_string(const char *name, const char *text,
			    struct tier_table **out, char *err, size_t errlen);
void tier_table_free(struct tier_table *tab);

/* The tier called `name`, or NULL.  Pointers live as long as the table. */
const struct tier *tier_find(const struct tier_table *tab, const char *name);
const struct tier *tier_default(const struct tier_table *tab);

/* Does any [entitle] group.NAME rule grant t?  Only then do a user's
 * groups matter, and only then are they worth an NSS lookup. */
bool tier_has_group_rule(const struct tier_table *tab, const struct tier *t);

/*
 * May this user (with these groups, charging this account) run at tier
 * `t` (a pointer from this table)?  The default tier always; otherwise
 * when a rule for the user, any of the groups, or the account lists it.
 * user, groups and account may be NULL.
 */
bool tier_entitled(const struct tier_table *tab, const struct tier *t,
		   const char *user, const char *const *groups, size_t ngroups,
		   const char *account);

/*
 * "basic, premium": the tier names in file order, for --help text.
 * Returns 0, or -ENOSPC when they do not all fit (buf then holds the
 * names that fit whole, NUL-terminated).
 */
int tier_names(const struct tier_table *tab, char *buf, size_t len);

/*
 * "tier premium cpus=2 mem=1073741824 nice=0 cpu_time=3600 rate=3" for
 * log lines; returns buf.
 */
const char *tier_debug_str(const struct tier *t, char *buf, size_t len);

/* [a-z0-9_-]{1,31} */
bool tier_name_valid(const char *name);

#endif
