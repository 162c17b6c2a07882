/*
 * reload.c: SIGHUP.  The config file is read and checked on a worker (it
 * reads the tier table and key files: file I/O stays off the loop
 * thread), then applied on the loop thread in one step:
 *
 *   - a config that does not load keeps the old one (the error is logged);
 *   - one that changes what only a restart can change (listen address,
 *     state_dir, workers, the server's limits, the set of sites, a site's
 *     url / auth / kind / keys / user map: jobs keep the account they were
 *     mapped to) is refused as a whole, naming each key, so
 *     that what runs is always exactly one file's content;
 *   - otherwise it replaces the old: users' keys and issuer, admins, the
 *     tier table, the ticket key, TTLs and thresholds, and per site the
 *     partition, poll interval, request timeout, connection bound, token
 *     lifetime and jwt-user's queue estimate.
 */
#include "reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "site.h"
#include "tier.h"
#include "worker.h"

struct reload {
	struct worker_job wj; /* first: done() casts back */
	struct gw *gw;
	char path[4096];
	struct gw_config *cfg; /* result */
	char err[512];
	int rv;
	bool again; /* another SIGHUP came while this one ran */
};

static struct reload *in_flight;
static bool shutting_down;

void gw_reload_shutdown(void)
{
	shutting_down = true;
}

static bool str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

static void add(char *buf, size_t len, const char *what)
{
	size_t n = strlen(buf);

	snprintf(buf + n, len - n, "%s%s", n ? ", " : "", what);
}

static bool same_user_map(const struct gw_site_config *a,
			  const struct gw_site_config *b)
{
	size_t i;

	if (a->user_map_same != b->user_map_same ||
	    a->n_user_map != b->n_user_map)
		return false;
	for (i = 0; i < a->n_user_map; i++)
		if (strcmp(a->user_map[i].from, b->user_map[i].from) ||
		    strcmp(a->user_map[i].to, b->user_map[i].to))
			return false;
	return true;
}

/* The keys of old -> new that need a restart, as "listen, [site a] url". */
static void restart_only(const struct gw_config *o, const struct gw_config *n,
			 char *buf, size_t len)
{
	char what[128];
	size_t i;

	buf[0] = '\0';
#define CHECK_STR(k, label)                                                    \
	if (str_differs(o->k, n->k))                                           \
	add(buf, len, label)
#define CHECK_NUM(k, label)                                                    \
	if (o->k != n->k)                                                      \
	add(buf, len, label)
	CHECK_STR(listen, "listen");
	CHECK_STR(state_dir, "state_dir");
	CHECK_NUM(workers, "workers");
	CHECK_NUM(max_connections, "max_connections");
	CHECK_NUM(max_connections_per_ip, "max_connections_per_ip");
	CHECK_NUM(connection_timeout_s, "connection_timeout");
	CHECK_NUM(max_body, "max_body");
	CHECK_NUM(max_header, "max_header");
	CHECK_NUM(requests_per_turn, "requests_per_turn");
	if (o->n_sites != n->n_sites) {
		add(buf, len, "the set of sites");
		return;
	}
	for (i = 0; i < o->n_sites; i++) {
		const struct gw_site_config *a = &o->sites[i],
					    *b = &n->sites[i];

		if (strcmp(a->name, b->name)) {
			add(buf, len, "the set of sites");
			return;
		}
#define CHECK_SITE(test, key)                                                  \
	if (test) {                                                            \
		snprintf(what, sizeof(what), "[site %s] %s", a->name, key);    \
		add(buf, len, what);                                           \
	}
		CHECK_SITE(str_differs(a->kind, b->kind), "kind");
		CHECK_SITE(str_differs(a->url, b->url), "url");
		CHECK_SITE(a->auth != b->auth, "auth");
		CHECK_SITE(str_differs(a->jwt_key_path, b->jwt_key_path),
			   "jwt_key");
		CHECK_SITE(str_differs(a->munge_socket, b->munge_socket),
			   "munge_socket");
		/* each job keeps the site account it was mapped to */
		CHECK_SITE(!same_user_map(a, b), "user_map");
#undef CHECK_SITE
	}
#undef CHECK_STR
#undef CHECK_NUM
}

static void load_work(struct worker_job *wj)
{
	struct reload *r = (struct reload *)wj;

	r->rv = gw_config_load(r->path, &r->cfg, r->err, sizeof(r->err));
}

static void apply(struct gw *gw, struct gw_config *n)
{
	struct gw_config *old = gw->cfg;
	size_t i;

	for (i = 0; i < gw->n_sites; i++) {
		const struct gw_site_config *c = &n->sites[i];
		struct site_limits lim = {
		    .partition = c->partition,
		    .request_timeout_s = c->request_timeout_s,
		    .max_connections = c->max_connections,
		    .jwt_lifetime_s = c->jwt_lifetime_s,
		};

		gw->sites[i].cfg = c;
		site_set_limits(gw->sites[i].site, &lim);
	}
	auth_set_config(gw->auth, n);
	gw->cfg = gw_config_ref(n);
	gw_config_unref(old);
}

static void load_done(struct worker_job *wj, int status)
{
	struct reload *r = (struct reload *)wj;
	struct gw *gw = r->gw;
	char what[1024];
	bool again = r->again;

	in_flight = NULL;
	if (shutting_down) {
		again = false;
	} else if (status || r->rv) {
		log_err("SIGHUP: config %s refused, the old one stays: %s",
			r->path, status ? "the reload was cancelled" : r->err);
	} else {
		restart_only(gw->cfg, r->cfg, what, sizeof(what));
		if (what[0])
			log_err("SIGHUP: config %s changes what needs a "
				"restart (%s): nothing reloaded",
				r->path, what);
		else {
			apply(gw, r->cfg);
			log_info("SIGHUP: config reloaded from %s (%zu tiers, "
				 "%zu admins, %zu sites)",
				 r->path,
				 gw->cfg->tiers ? gw->cfg->tiers->n_tiers : 0,
				 gw->cfg->n_admins, gw->cfg->n_sites);
		}
	}
	gw_config_unref(r->cfg);
	free(r);
	if (again)
		gw_reload(gw); /* the file may have changed again meanwhile */
}

void gw_reload(struct gw *gw)
{
	struct reload *r;
	int rv;

	if (in_flight) {
		in_flight->again = true;
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		log_err("SIGHUP: out of memory: config not reloaded");
		return;
	}
	r->gw = gw;
	snprintf(r->path, sizeof(r->path), "%s", gw->cfg->path);
	r->wj.name = "config reload";
	r->wj.work = load_work;
	r->wj.done = load_done;
	rv = worker_submit(gw->workers, &r->wj);
	if (rv) {
		log_err("SIGHUP: cannot start the reload: %s", strerror(-rv));
		free(r);
		return;
	}
	in_flight = r;
	log_info("SIGHUP: reloading %s", r->path);
}
