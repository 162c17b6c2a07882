/*
 * tier.c: see tier.h.  Built on shared/conf: conf checks the syntax, this
 * file the meaning.
 */
#include "tier.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"

#define TIER_RATE_MAX 1e6

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

bool tier_name_valid(const char *name)
{
	size_t n;

	if (!name || !*name)
		return false;
	for (n = 0; name[n]; n++) {
		char c = name[n];

		if (n >= TIER_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

void tier_table_free(struct tier_table *tab)
{
	size_t i;

	if (!tab)
		return;
	for (i = 0; i < tab->n_rules; i++)
		free(tab->rules[i].name);
	free(tab->rules);
	free(tab);
}

static int find_idx(const struct tier_table *tab, const char *name)
{
	size_t i;

	if (!tab || !name)
		return -1;
	for (i = 0; i < tab->n_tiers; i++)
		if (!strcmp(tab->tiers[i].name, name))
			return (int)i;
	return -1;
}

const struct tier *tier_find(const struct tier_table *tab, const char *name)
{
	int i = find_idx(tab, name);

	return i < 0 ? NULL : &tab->tiers[i];
}

const struct tier *tier_default(const struct tier_table *tab)
{
	if (!tab || tab->default_idx >= tab->n_tiers)
		return NULL;
	return &tab->tiers[tab->default_idx];
}

int tier_names(const struct tier_table *tab, char *buf, size_t len)
{
	size_t i, used = 0;
	int n;

	if (!buf || !len)
		return -ENOSPC;
	buf[0] = '\0';
	for (i = 0; tab && i < tab->n_tiers; i++) {
		n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
			     tab->tiers[i].name);
		if (n < 0 || (size_t)n >= len - used) {
			buf[used] = '\0'; /* whole names only */
			return -ENOSPC;
		}
		used += (size_t)n;
	}
	return 0;
}

const char *tier_debug_str(const struct tier *t, char *buf, size_t len)
{
	if (!buf || !len)
		return "";
	if (!t) {
		snprintf(buf, len, "tier (none)");
		return buf;
	}
	snprintf(buf, len,
		 "tier %s cpus=%u mem=%" PRIu64 " nice=%d cpu_time=%" PRIu64
		 " rate=%g",
		 t->name, t->cpus, t->mem_bytes, t->nice, t->cpu_time_s,
		 t->rate);
	return buf;
}

/* ---- loading ---- */

static int parse_tier(struct conf *c, const struct conf_section *s,
		      struct tier *t, char *err, size_t errlen)
{
	long v;
	double d;
	uint64_t sz;
	int rv;

	snprintf(t->name, sizeof(t->name), "%s", s->label);
	rv = conf_get_int(c, "tier", s->label, "cpus", 1, TIER_CPUS_MAX, &v,
			  err, errlen);
	if (rv < 0)
		return rv;
	if (rv) {
		set_err(err, errlen,
			"%s:%d: [tier %s]: missing required key 'cpus' (1..%d)",
			c->path, s->line, s->label, TIER_CPUS_MAX);
		return -EINVAL;
	}
	t->cpus = (unsigned)v;

	t->nice = 0;
	rv =
	    conf_get_int(c, "tier", s->label, "nice", -20, 19, &v, err, errlen);
	if (rv < 0)
		return rv;
	if (!rv)
		t->nice = (int)v;

	t->rate = 1.0;
	rv = conf_get_double(c, "tier", s->label, "rate", 0, TIER_RATE_MAX, &d,
			     err, errlen);
	if (rv < 0)
		return rv;
	if (!rv)
		t->rate = d;

	t->mem_bytes = 0;
	rv = conf_get_size(c, "tier", s->label, "mem", &sz, err, errlen);
	if (rv < 0)
		return rv;
	if (!rv)
		t->mem_bytes = sz;

	t->cpu_time_s = 0;
	rv = conf_get_int(c, "tier", s->label, "cpu_time", 0, LONG_MAX, &v, err,
			  errlen);
	if (rv < 0)
		return rv;
	if (!rv)
		t->cpu_time_s = (uint64_t)v;
	return 0;
}

/* "user.alice = premium, gold" into a rule. */
static int parse_rule(struct conf *c, struct conf_entry *e,
		      struct tier_table *tab, struct tier_rule *r, char *err,
		      size_t errlen)
{
	const char *dot = strchr(e->key, '.'), *p, *end;
	char name[TIER_NAME_MAX + 2];
	size_t plen, n;
	int idx;

	e->used = true;
	plen = dot ? (size_t)(dot - e->key) : 0;
	if (dot && plen == 4 && !strncmp(e->key, "user", 4))
		r->who = TIER_WHO_USER;
	else if (dot && plen == 5 && !strncmp(e->key, "group", 5))
		r->who = TIER_WHO_GROUP;
	else if (dot && plen == 7 && !strncmp(e->key, "account", 7))
		r->who = TIER_WHO_ACCOUNT;
	else {
		conf_entry_error(
		    c, e, err, errlen,
		    "expected user.NAME, group.NAME or account.NAME");
		return -EINVAL;
	}
	if (!dot[1]) {
		conf_entry_error(c, e, err, errlen, "empty %.*s name",
				 (int)plen, e->key);
		return -EINVAL;
	}
	r->mask = 0;
	for (p = e->value;; p = end + 1) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		n = (size_t)(end - p);
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (!n) {
			conf_entry_error(c, e, err, errlen,
					 "empty tier name in '%s'", e->value);
			return -EINVAL;
		}
		idx = -1;
		if (n < sizeof(name)) {
			memcpy(name, p, n);
			name[n] = '\0';
			idx = find_idx(tab, name);
		}
		if (idx < 0) {
			char names[256];

			tier_names(tab, names, sizeof(names));
			conf_entry_error(c, e, err, errlen,
					 "unknown tier '%.*s' (tiers: %s)",
					 (int)(n > 40 ? 40 : n), p, names);
			return -EINVAL;
		}
		r->mask |= UINT64_C(1) << idx;
		if (!*end)
			break;
	}
	r->name = strdup(dot + 1);
	if (!r->name) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int load_tiers(struct conf *c, struct tier_table *tab, char *err,
		      size_t errlen)
{
	size_t i;
	int rv;

	for (i = 0; i < c->n_sections; i++) {
		const struct conf_section *s = &c->sections[i];

		if (!strcmp(s->section, "entitle") && !*s->label)
			continue;
		if (strcmp(s->section, "tier")) {
			set_err(err, errlen,
				"%s:%d: unknown section [%s%s%s] (expected "
				"[tier NAME] or [entitle])",
				c->path, s->line, s->section,
				*s->label ? " " : "", s->label);
			return -EINVAL;
		}
		if (!*s->label) {
			set_err(err, errlen,
				"%s:%d: [tier] needs a name, e.g. [tier basic]",
				c->path, s->line);
			return -EINVAL;
		}
		if (!tier_name_valid(s->label)) {
			set_err(err, errlen,
				"%s:%d: tier name '%.40s' is not 1..%d of "
				"[a-z0-9_-]",
				c->path, s->line, s->label, TIER_NAME_MAX);
			return -EINVAL;
		}
		if (find_idx(tab, s->label) >= 0) {
			set_err(err, errlen,
				"%s:%d: tier '%s' is defined twice", c->path,
				s->line, s->label);
			return -EINVAL;
		}
		if (tab->n_tiers == TIER_MAX) {
			set_err(err, errlen, "%s:%d: more than %d tiers",
				c->path, s->line, TIER_MAX);
			return -EINVAL;
		}
		rv = parse_tier(c, s, &tab->tiers[tab->n_tiers], err, errlen);
		if (rv)
			return rv;
		tab->n_tiers++;
	}
	if (!tab->n_tiers) {
		set_err(err, errlen, "%s: no [tier NAME] section", c->path);
		return -EINVAL;
	}
	return 0;
}

static int load_default(struct conf *c, struct tier_table *tab, char *err,
			size_t errlen)
{
	struct conf_entry *e = conf_find(c, "", "", "default");
	char names[256];
	int idx;

	if (!e) {
		set_err(err, errlen,
			"%s: missing top-level key 'default' (the tier "
			"everyone may use)",
			c->path);
		return -EINVAL;
	}
	idx = find_idx(tab, e->value);
	if (idx < 0) {
		tier_names(tab, names, sizeof(names));
		conf_entry_error(c, e, err, errlen,
				 "unknown tier '%.40s' (tiers: %s)", e->value,
				 names);
		return -EINVAL;
	}
	tab->default_idx = (size_t)idx;
	return 0;
}

static int load_rules(struct conf *c, struct tier_table *tab, char *err,
		      size_t errlen)
{
	size_t i, n = 0;
	int rv;

	for (i = 0; i < c->n_entries; i++)
		if (!strcmp(c->entries[i].section, "entitle"))
			n++;
	if (!n)
		return 0;
	tab->rules = calloc(n, sizeof(*tab->rules));
	if (!tab->rules) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (i = 0; i < c->n_entries; i++) {
		struct conf_entry *e = &c->entries[i];

		if (strcmp(e->section, "entitle"))
			continue;
		rv = parse_rule(c, e, tab, &tab->rules[tab->n_rules], err,
				errlen);
		if (rv)
			return rv;
		tab->n_rules++;
	}
	return 0;
}

/* Takes ownership of c. */
static int build(struct conf *c, struct tier_table **out, char *err,
		 size_t errlen)
{
	struct tier_table *tab;
	char dbuf[160];
	size_t i;
	int rv = -ENOMEM;

	tab = calloc(1, sizeof(*tab));
	if (!tab) {
		set_err(err, errlen, "out of memory");
		goto out_free_conf;
	}
	rv = load_tiers(c, tab, err, errlen);
	if (rv)
		goto out_free_tab;
	rv = load_default(c, tab, err, errlen);
	if (rv)
		goto out_free_tab;
	rv = load_rules(c, tab, err, errlen);
	if (rv)
		goto out_free_tab;
	rv = conf_check_unused(c, err, errlen);
	if (rv)
		goto out_free_tab;
	for (i = 0; i < tab->n_tiers; i++)
		dbg("%s: %s%s", c->path,
		    tier_debug_str(&tab->tiers[i], dbuf, sizeof(dbuf)),
		    i == tab->default_idx ? " (default)" : "");
	*out = tab;
	tab = NULL;
	rv = 0;
out_free_tab:
	tier_table_free(tab);
out_free_conf:
	conf_free(c);
	return rv;
}

int tier_table_load(const char *path, struct tier_table **out, char *err,
		    size_t errlen)
{
	struct conf *c;
	int rv;

	*out = NULL;
	rv = conf_parse_file(path, &c, err, errlen);
	if (rv)
		return rv;
	return build(c, out, err, errlen);
}

int tier_table_parse_string(const char *name, const char *text,
			    struct tier_table **out, char *err, size_t errlen)
{
	struct conf *c;
	int rv;

	*out = NULL;
	rv = conf_parse_string(name, text, &c, err, errlen);
	if (rv)
		return rv;
	return build(c, out, err, errlen);
}

bool tier_has_group_rule(const struct tier_table *tab, const struct tier *t)
{
	size_t i;

	if (!tab || !t || t < tab->tiers || t >= tab->tiers + tab->n_tiers)
		return false;
	for (i = 0; i < tab->n_rules; i++)
		if (tab->rules[i].who == TIER_WHO_GROUP &&
		    (tab->rules[i].mask &
		     (UINT64_C(1) << (size_t)(t - tab->tiers))))
			return true;
	return false;
}

bool tier_entitled(const struct tier_table *tab, const struct tier *t,
		   const char *user, const char *const *groups, size_t ngroups,
		   const char *account)
{
	size_t i, g, idx = SIZE_MAX;

	if (!tab || !t)
		return false;
	for (i = 0; i < tab->n_tiers; i++)
		if (&tab->tiers[i] == t)
			idx = i;
	if (idx == SIZE_MAX)
		return false; /* not a tier of this table */
	if (idx == tab->default_idx)
		return true;
	for (i = 0; i < tab->n_rules; i++) {
		const struct tier_rule *r = &tab->rules[i];

		if (!(r->mask & (UINT64_C(1) << idx)))
			continue;
		switch (r->who) {
		case TIER_WHO_USER:
			if (user && !strcmp(r->name, user))
				return true;
			break;
		case TIER_WHO_GROUP:
			for (g = 0; groups && g < ngroups; g++)
				if (groups[g] && !strcmp(r->name, groups[g]))
					return true;
			break;
		case TIER_WHO_ACCOUNT:
			if (account && !strcmp(r->name, account))
				return true;
			break;
		}
	}
	return false;
}
