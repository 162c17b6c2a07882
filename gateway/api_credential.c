/*
 * api_credential.c: PUT/GET/DELETE /v1/sites/{site}/credential, a user's
 * own Slurm token for an `auth = jwt-user` site (docs/api.md).
 *
 * The token is checked for shape, user and expiry (the site's key is not
 * ours: slurmctld checks the signature at the first call), stored
 * durably, then used for this user's calls to the site.  It is never
 * logged and never returned: GET says only whose it is and until when.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "config.h"
#include "credentials.h"
#include "log.h"
#include "store.h"

/* A token must be good for at least this long to be worth storing. */
#define CRED_MIN_VALID_S 60

struct cred_put {
	struct store_req sr; /* first: the completion casts back */
	struct gw *gw;
	struct http_req *req;
	char site[32], user[64], site_user[64];
	char *token; /* wiped when freed */
	int64_t exp, now;
	bool remove;
};

static void cred_put_free(struct cred_put *p)
{
	store_req_reset(&p->sr);
	creds_token_free(p->token);
	free(p);
}

static json_t *cred_json(const char *site, const char *user,
			 const char *site_user, int64_t exp, int64_t registered)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I}", "site", site, "user",
			 user, "site_user", site_user, "expires_at",
			 (json_int_t)exp, "registered_at",
			 (json_int_t)registered);
}

/*
 * The site of the path, for a caller who may use it and a jwt-user site;
 * else the reply is sent and NULL returned.  site_user gets the caller's
 * account there.
 */
static const struct gw_site_config *
cred_site(struct http_req *req, struct gw *gw, char *site_user, size_t len)
{
	const char *name = http_req_param(req, "site");
	const struct auth_identity *id = api_identity(req);
	struct gw_site *s = name ? gw_site_find(gw, name) : NULL;

	if (!s) {
		http_reply_error(req, 404, "not_found", "no site '%.64s'",
				 name ? name : "");
		return NULL;
	}
	if (s->cfg->auth != GW_SITE_AUTH_JWT_USER) {
		http_reply_error(req, 409, "credential_not_used",
				 "site %s has auth = %s: the gateway acts for "
				 "you there without a token of yours",
				 s->cfg->name, gw_site_auth_name(s->cfg->auth));
		return NULL;
	}
	if (gw_config_map_user(s->cfg, id->user, site_user, len)) {
		http_reply_error(req, 403, "forbidden",
				 "user %s has no account on site %s", id->user,
				 s->cfg->name);
		return NULL;
	}
	return s->cfg;
}

static void put_done(struct store_req *r)
{
	struct cred_put *p = (struct cred_put *)r;
	struct http_req *req = p->req;
	int rv = r->rv;

	if (!rv && p->remove)
		creds_remove(p->gw->creds, p->site, p->user);
	else if (!rv)
		rv = creds_set(p->gw->creds, p->site, p->user, p->site_user,
			       p->token, p->exp, p->now);
	if (rv)
		log_err("credential of %s at site %s: not %s: %s", p->user,
			p->site, p->remove ? "removed" : "stored",
			rv < 0 ? store_strerror(rv) : "?");
	else
		log_info("credential of %s at site %s %s (site user %s, "
			 "expires %lld)",
			 p->user, p->site, p->remove ? "removed" : "registered",
			 p->site_user, (long long)p->exp);
	if (http_req_destroyed(req)) {
		/* the client left; what was committed stands */
	} else if (rv == -ENOENT) {
		http_reply_error(req, 404, "not_found",
				 "no credential of yours at site %s", p->site);
	} else if (store_error_unavailable(rv)) {
		http_reply_error(req, 503, "storage_unavailable",
				 "the credential could not be stored (%s)",
				 store_strerror(rv));
	} else if (rv) {
		http_reply_error(req, 500, "internal",
				 "cannot store the credential: %s",
				 store_strerror(rv));
	} else if (p->remove) {
		http_reply_json(req, 200,
				json_pack("{s:s, s:s, s:b}", "site", p->site,
					  "user", p->user, "removed", 1));
	} else {
		http_reply_json(
		    req, 200,
		    cred_json(p->site, p->user, p->site_user, p->exp, p->now));
	}
	http_req_unref(req);
	cred_put_free(p);
}

static void store_change(struct http_req *req, struct gw *gw,
			 struct cred_put *p)
{
	struct store_credential c = {
	    .site = p->site,
	    .user = p->user,
	    .token = p->remove ? NULL : p->token,
	    .expires_at = p->exp,
	    .registered_at = p->now,
	};
	int rv;

	p->gw = gw;
	p->req = req;
	p->sr.cb = put_done;
	rv = store_credential_put(gw->store, &p->sr, &c);
	if (rv) {
		http_reply_error(
		    req, store_error_unavailable(rv) ? 503 : 500,
		    store_error_unavailable(rv) ? "storage_unavailable"
						: "internal",
		    "cannot store the credential: %s", store_strerror(rv));
		cred_put_free(p);
		return;
	}
	http_req_ref(req);
	http_req_suspend(req);
}

/* The body's copy of a token: wiped before it is freed. */
static void wipe_and_decref(json_t *body)
{
	json_t *t = json_object_get(body, "token");

	if (json_is_string(t) && json_string_length(t))
		explicit_bzero((char *)json_string_value(t),
			       json_string_length(t));
	json_decref(body);
}

void api_credential_put(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const struct auth_identity *id = api_identity(req);
	const struct gw_site_config *sc;
	struct cred_put *p;
	json_t *body = NULL;
	const char *text;
	char err[300];
	int rv;

	if (gw->draining) {
		http_reply_error(req, 503, "shutting_down", "draining");
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	sc = cred_site(req, gw, p->site_user, sizeof(p->site_user));
	if (!sc)
		goto out;
	if (http_req_body_json(req, &body))
		goto out; /* replied */
	text = json_string_value(json_object_get(body, "token"));
	if (!json_is_object(body) || !text || json_object_size(body) != 1) {
		http_reply_error(req, 400, "bad_request",
				 "the body must be {\"token\": \"<what "
				 "`scontrol token` prints>\"}");
		goto out;
	}
	p->now = time(NULL);
	rv = creds_inspect(text, p->site_user, p->now, CRED_MIN_VALID_S,
			   &p->token, &p->exp, NULL, 0, err, sizeof(err));
	if (rv) {
		http_reply_error(req, rv == -E2BIG ? 413 : 422,
				 rv == -E2BIG	      ? "payload_too_large"
				 : rv == -EACCES      ? "credential_wrong_user"
				 : rv == -EKEYEXPIRED ? "credential_expired"
						      : "credential_invalid",
				 "%s", err);
		goto out;
	}
	snprintf(p->site, sizeof(p->site), "%s", sc->name);
	snprintf(p->user, sizeof(p->user), "%s", id->user);
	wipe_and_decref(body);
	store_change(req, gw, p);
	return;
out:
	wipe_and_decref(body);
	cred_put_free(p);
}

void api_credential_get(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const struct auth_identity *id = api_identity(req);
	const struct gw_site_config *sc;
	const struct gw_cred *c;
	char site_user[64];

	sc = cred_site(req, gw, site_user, sizeof(site_user));
	if (!sc)
		return;
	c = creds_find(gw->creds, sc->name, id->user);
	if (!c) {
		http_reply_error(req, 404, "not_found",
				 "no credential of yours at site %s: register "
				 "one with PUT /v1/sites/%s/credential",
				 sc->name, sc->name);
		return;
	}
	http_reply_json(req, 200,
			cred_json(c->site, c->user, c->site_user, c->expires_at,
				  c->registered_at));
}

void api_credential_delete(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const struct auth_identity *id = api_identity(req);
	struct cred_put *p = calloc(1, sizeof(*p));

	if (!p) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (!cred_site(req, gw, p->site_user, sizeof(p->site_user))) {
		cred_put_free(p);
		return;
	}
	snprintf(p->site, sizeof(p->site), "%s", http_req_param(req, "site"));
	snprintf(p->user, sizeof(p->user), "%s", id->user);
	p->remove = true;
	store_change(req, gw, p);
}
