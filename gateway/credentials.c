/*
 * credentials.c: users' own Slurm tokens for jwt-user sites (see
 * credentials.h).  A flat array: a site has as many entries as users who
 * registered a token, and a submit looks up one of them.
 */
#include "credentials.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jwt_verify.h"
#include "log.h"
#include "loop.h"
#include "site.h"
#include "store.h"

#define CREDS_LOAD_WAIT_MS 1000

struct cred_table {
	struct gw_cred *v;
	size_t n, cap;
};

static void wipe_token(struct gw_cred *c)
{
	if (c->token) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
		c->token = NULL;
	}
}

struct cred_table *creds_new(void)
{
	return calloc(1, sizeof(struct cred_table));
}

void creds_free(struct cred_table *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++)
		wipe_token(&t->v[i]);
	free(t->v);
	free(t);
}

static struct gw_cred *find(const struct cred_table *t, const char *site,
			    const char *user)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].site, site) && !strcmp(t->v[i].user, user))
			return &t->v[i];
	return NULL;
}

const struct gw_cred *creds_find(const struct cred_table *t, const char *site,
				 const char *user)
{
	return t && site && user ? find(t, site, user) : NULL;
}

int creds_set(struct cred_table *t, const char *site, const char *user,
	      const char *site_user, const char *token, int64_t expires_at,
	      int64_t registered_at)
{
	struct gw_cred *c;
	char *copy;

	if (!t || !site || !user || !site_user || !token ||
	    strlen(site) >= sizeof(c->site) ||
	    strlen(user) >= sizeof(c->user) ||
	    strlen(site_user) >= sizeof(c->site_user))
		return -EINVAL;
	copy = strdup(token);
	if (!copy)
		return -ENOMEM;
	c = find(t, site, user);
	if (!c) {
		if (t->n == t->cap) {
			size_t ncap = t->cap ? t->cap * 2 : 16;
			struct gw_cred *v = realloc(t->v, ncap * sizeof(*v));

			if (!v) {
				explicit_bzero(copy, strlen(copy));
				free(copy);
				return -ENOMEM;
			}
			t->v = v;
			t->cap = ncap;
		}
		c = &t->v[t->n++];
		memset(c, 0, sizeof(*c));
		snprintf(c->site, sizeof(c->site), "%s", site);
		snprintf(c->user, sizeof(c->user), "%s", user);
	}
	wipe_token(c);
	snprintf(c->site_user, sizeof(c->site_user), "%s", site_user);
	c->token = copy;
	c->expires_at = expires_at;
	c->registered_at = registered_at;
	return 0;
}

int creds_remove(struct cred_table *t, const char *site, const char *user)
{
	struct gw_cred *c = t ? find(t, site, user) : NULL;

	if (!c)
		return -ENOENT;
	wipe_token(c);
	*c = t->v[--t->n];
	return 0;
}

size_t creds_count(const struct cred_table *t)
{
	return t ? t->n : 0;
}

void creds_token_free(char *token)
{
	if (!token)
		return;
	explicit_bzero(token, strlen(token));
	free(token);
}

/* The bare token of "  SLURM_JWT=eyJ...\n": a malloc'ed copy. */
static char *bare_token(const char *text)
{
	const char *b = text, *e;

	while (isspace((unsigned char)*b))
		b++;
	if (!strncmp(b, "SLURM_JWT=", 10))
		b += 10;
	e = b + strlen(b);
	while (e > b && isspace((unsigned char)e[-1]))
		e--;
	return strndup(b, (size_t)(e - b));
}

int creds_inspect(const char *text, const char *want_user, int64_t now,
		  int64_t min_valid_s, char **token_out, int64_t *exp_out,
		  char *user_out, size_t user_len, char *err, size_t errlen)
{
	json_t *claims = NULL, *exp, *u;
	char *tok, why[200];
	const char *user;
	int rv;

	*token_out = NULL;
	if (!text || strnlen(text, CRED_TOKEN_MAX + 64) > CRED_TOKEN_MAX + 32) {
		snprintf(err, errlen, "the token is longer than %d bytes",
			 CRED_TOKEN_MAX);
		return text ? -E2BIG : -EINVAL;
	}
	tok = bare_token(text);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (strlen(tok) > CRED_TOKEN_MAX) {
		snprintf(err, errlen, "the token is longer than %d bytes",
			 CRED_TOKEN_MAX);
		rv = -E2BIG;
		goto fail;
	}
	rv = jwt_peek_claims(tok, &claims, why, sizeof(why));
	if (rv) {
		snprintf(err, errlen,
			 "not a Slurm token (%s): give what `scontrol token` "
			 "prints",
			 why);
		goto fail;
	}
	exp = json_object_get(claims, "exp");
	u = json_object_get(claims, "sun");
	if (!u)
		u = json_object_get(claims, "username");
	user = json_string_value(u);
	if (!json_is_integer(exp) || !user || !*user) {
		snprintf(err, errlen,
			 "the token has no %s: Slurm tokens carry an integer "
			 "\"exp\" and a \"sun\" (user name)",
			 !json_is_integer(exp) ? "integer \"exp\""
					       : "\"sun\" user claim");
		rv = -EINVAL;
		goto fail;
	}
	if (want_user && strcmp(user, want_user)) {
		snprintf(err, errlen,
			 "the token is for user '%.64s', your account at this "
			 "site is '%.64s'",
			 user, want_user);
		rv = -EACCES;
		goto fail;
	}
	if (json_integer_value(exp) <= now + min_valid_s) {
		snprintf(err, errlen,
			 "the token %s at %" PRId64 " (now %" PRId64
			 "): make a new one with `scontrol token "
			 "lifespan=SECONDS`",
			 json_integer_value(exp) <= now ? "expired"
							: "expires too soon,",
			 (int64_t)json_integer_value(exp), now);
		rv = -EKEYEXPIRED;
		goto fail;
	}
	*exp_out = json_integer_value(exp);
	if (user_out)
		snprintf(user_out, user_len, "%s", user);
	json_decref(claims);
	*token_out = tok;
	return 0;
fail:
	json_decref(claims);
	creds_token_free(tok);
	return rv;
}

struct load_wait {
	struct store_req req;
	bool done;
};

static void load_done(struct store_req *r)
{
	struct load_wait *w = (struct load_wait *)r;

	w->done = true;
}

int creds_load(struct cred_table *t, struct store *st, struct loop *l)
{
	struct load_wait w;
	size_t i, loaded = 0;
	int rv;

	memset(&w, 0, sizeof(w));
	w.req.cb = load_done;
	rv = store_credentials_list(st, &w.req);
	if (rv)
		return rv;
	while (!w.done)
		loop_run_once(l, CREDS_LOAD_WAIT_MS);
	rv = w.req.rv;
	for (i = 0; !rv && i < w.req.n_creds; i++) {
		const struct store_credential *c = &w.req.creds[i];
		json_t *claims = NULL;
		const char *user;
		char why[200];

		/* the token's user, as it was checked when registered */
		if (jwt_peek_claims(c->token, &claims, why, sizeof(why))) {
			log_warn("credential of %s at site %s: unreadable "
				 "token (%s), ignored",
				 c->user, c->site, why);
			continue;
		}
		user = json_string_value(json_object_get(claims, "sun"));
		if (!user)
			user = json_string_value(
			    json_object_get(claims, "username"));
		rv = creds_set(t, c->site, c->user, user ? user : c->user,
			       c->token, c->expires_at, c->registered_at);
		json_decref(claims);
		if (!rv)
			loaded++;
	}
	store_req_reset(&w.req);
	if (!rv)
		log_info("credentials: %zu user token%s for jwt-user sites",
			 loaded, loaded == 1 ? "" : "s");
	return rv;
}

const char *creds_debug_str(const struct cred_table *t, char *buf, size_t len)
{
	snprintf(buf, len, "creds n=%zu", creds_count(t));
	return buf;
}

void creds_site_cred(const struct cred_table *t,
		     const struct gw_site_config *sc, const char *user,
		     const char *site_user, struct site_cred *out)
{
	const struct gw_cred *c;

	out->user = site_user;
	out->token = NULL;
	if (sc->auth != GW_SITE_AUTH_JWT_USER)
		return;
	c = creds_find(t, sc->name, user);
	if (c)
		out->token = c->token;
}

/* The (turn % valid)-th token of `site` still valid at `now`, or NULL. */
static const struct gw_cred *nth_valid(const struct cred_table *t,
				       const char *site, int64_t now,
				       uint64_t turn)
{
	size_t i, n = 0, k;

	for (i = 0; t && i < t->n; i++)
		n += !strcmp(t->v[i].site, site) && t->v[i].expires_at > now;
	if (!n)
		return NULL;
	k = (size_t)(turn % n);
	for (i = 0; i < t->n; i++) {
		const struct gw_cred *c = &t->v[i];

		if (strcmp(c->site, site) || c->expires_at <= now)
			continue;
		if (!k--)
			return c;
	}
	return NULL;
}

bool creds_poll_cred(const struct cred_table *t,
		     const struct gw_site_config *sc, int64_t now,
		     uint64_t turn, struct site_cred *out)
{
	const struct gw_cred *c;

	out->token = NULL;
	switch (sc->auth) {
	case GW_SITE_AUTH_JWT_KEY:
		out->user = "root";
		return true;
	case GW_SITE_AUTH_MUNGE:
		out->user = sc->poll_user;
		return true;
	case GW_SITE_AUTH_JWT_USER:
		c = nth_valid(t, sc->name, now, turn);
		if (!c)
			return false;
		out->user = c->site_user;
		out->token = c->token;
		return true;
	}
	return false;
}
