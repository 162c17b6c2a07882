/* api.c: routes and the authentication guard (api.h). */
#include "api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"

struct api_auth {
	struct auth_identity id;
	struct auth_munge_req *munge;
	struct http_req *req; /* referenced while a decode runs */
	struct gw *gw;
	unsigned route_flags;
};

static void api_auth_free(void *data)
{
	struct api_auth *aa = data;

	auth_munge_release(aa->munge);
	free(aa);
}

const struct auth_identity *api_identity(struct http_req *req)
{
	struct api_auth *aa = http_req_data(req);

	return aa ? &aa->id : NULL;
}

bool api_may_see(const struct auth_identity *id, const char *owner)
{
	return id && (id->admin || !strcmp(id->user, owner));
}

static bool listed_admin(const struct gw *gw, const char *user)
{
	size_t i;

	for (i = 0; i < gw->cfg->n_admins; i++)
		if (!strcmp(gw->cfg->admins[i], user))
			return true;
	return false;
}

static void reply_auth_error(struct http_req *req, int rv, const char *err)
{
	const char *code;
	int status;

	auth_http_error(rv, &status, &code);
	if (status == 401)
		http_reply_header(req, "WWW-Authenticate",
				  "Bearer realm=\"tiergate\"");
	http_reply_error(req, (unsigned)status, code, "%s", err);
}

/* A MUNGE decode finished on its worker: go on, or refuse. */
static void munge_done(struct auth_munge_req *r, void *arg)
{
	struct api_auth *aa = arg;
	struct http_req *req = aa->req;
	struct gw *gw = aa->gw; /* not the route: gone if the client left */
	char err[256];
	int rv;

	aa->req = NULL;
	if (!http_req_destroyed(req)) {
		rv = auth_munge_result(r, &aa->id, err, sizeof(err));
		if (rv == 0) {
			aa->id.admin =
			    aa->id.admin || listed_admin(gw, aa->id.user);
			if ((aa->route_flags & HTTP_ROUTE_ADMIN) &&
			    !aa->id.admin)
				http_reply_error(req, 403, "forbidden",
						 "admins only");
			else
				http_req_proceed(req);
		} else {
			reply_auth_error(req, rv, err);
		}
	}
	auth_munge_release(aa->munge);
	aa->munge = NULL;
	http_req_unref(req);
}

static enum http_guard_result guard(struct http_req *req,
				    const struct http_route *route, void *arg)
{
	struct gw *gw = arg;
	struct api_auth *aa;
	char err[256];
	int rv;

	if (!(route->flags & HTTP_ROUTE_AUTH))
		return HTTP_GUARD_PASS;
	aa = calloc(1, sizeof(*aa));
	if (!aa) {
		http_reply_error(req, 500, "internal", "out of memory");
		return HTTP_GUARD_HELD;
	}
	aa->gw = gw;
	aa->route_flags = route->flags;
	http_req_set_data(req, aa, api_auth_free);
	rv = auth_request(gw->auth, http_req_header(req, "Authorization"),
			  http_req_method(req), http_req_path(req), time(NULL),
			  NULL, munge_done, aa, &aa->id, &aa->munge, err,
			  sizeof(err));
	if (rv == AUTH_PENDING) {
		aa->req = req;
		http_req_ref(req);
		http_req_suspend(req);
		return HTTP_GUARD_HELD;
	}
	if (rv) {
		if (rv == -ENOENT)
			snprintf(err, sizeof(err),
				 "no credential: send Authorization: Bearer "
				 "<token>");
		reply_auth_error(req, rv, err);
		return HTTP_GUARD_HELD;
	}
	aa->id.admin = aa->id.admin || listed_admin(gw, aa->id.user);
	if ((route->flags & HTTP_ROUTE_ADMIN) && !aa->id.admin) {
		http_reply_error(req, 403, "forbidden", "admins only");
		return HTTP_GUARD_HELD;
	}
	return HTTP_GUARD_PASS;
}

int api_register(struct gw *gw)
{
	const unsigned A = HTTP_ROUTE_AUTH;
	const struct http_route routes[] = {
	    {"POST", "/v1/jobs", api_jobs_create, gw, A},
	    {"GET", "/v1/jobs", api_jobs_list, gw, A},
	    {"GET", "/v1/jobs/{id}", api_jobs_get, gw, A},
	    {"DELETE", "/v1/jobs/{id}", api_jobs_cancel, gw, A},
	    {"GET", "/v1/jobs/{id}/output", api_jobs_output, gw, A},
	    {"GET", "/v1/usage", api_usage, gw, A},
	    {"GET", "/v1/sites", api_sites, gw, A},
	    {"PUT", "/v1/sites/{site}/credential", api_credential_put, gw, A},
	    {"GET", "/v1/sites/{site}/credential", api_credential_get, gw, A},
	    {"DELETE", "/v1/sites/{site}/credential", api_credential_delete, gw,
	     A},
	    {"POST", "/v1/events", api_node_event, gw, API_ROUTE_NODE},
	    {"POST", "/v1/output/{site}/{job}/{stream}", api_node_output, gw,
	     API_ROUTE_NODE},
	    {"GET", "/healthz", api_healthz, gw, HTTP_ROUTE_DRAINING},
	    {"GET", "/metrics", api_metrics, gw, HTTP_ROUTE_DRAINING},
	    {"GET", "/debug/tasks", api_debug_tasks, gw,
	     A | HTTP_ROUTE_ADMIN | HTTP_ROUTE_DRAINING},
	};
	size_t i;
	int rv;

	for (i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
		rv = http_server_route(gw->server, &routes[i]);
		if (rv) {
			log_err("cannot route %s %s: %s", routes[i].method,
				routes[i].pattern, strerror(-rv));
			return rv;
		}
	}
	http_server_set_guard(gw->server, guard, gw);
	return 0;
}
