/* api_jobs.c: POST/GET/DELETE /v1/jobs (docs/api.md). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "config.h"
#include "credentials.h"
#include "digest.h"
#include "jobs.h"
#include "log.h"
#include "tier.h"

#define SCRIPT_MAX (512 * 1024)
#define NAME_MAX_LEN 128
#define IDEM_KEY_MAX 128
#define ENV_MAX_VARS 256

static bool env_name_ok(const char *k)
{
	static const char *const reserved[] = {"SLURM", "_SLURM", "TIERGATE"};
	size_t i;

	if (!*k || !(isalpha((unsigned char)*k) || *k == '_'))
		return false;
	for (const char *p = k; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return false;
	for (i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
		if (!strncmp(k, reserved[i], strlen(reserved[i])))
			return false;
	return true;
}

/*
 * jwt-user site: the user's own token must last until the job can have
 * ended (the site's queue estimate + the job's time limit), or the job
 * would lose its identity at the site half way.  Replies and returns
 * -EACCES when it cannot.
 */
static int check_credential(struct http_req *req, struct gw *gw,
			    const struct gw_site_config *sc, const char *user,
			    json_int_t time_limit_min)
{
	const struct gw_cred *c = creds_find(gw->creds, sc->name, user);
	int64_t now = time(NULL), need,
		queue = gw_site_queue_estimate(gw_site_find(gw, sc->name));

	if (!c) {
		http_reply_error(
		    req, 409, "credential_missing",
		    "site %s uses your own Slurm token and you "
		    "have not registered one: run `scontrol token "
		    "lifespan=SECONDS` at the site, then `tiergate "
		    "credential %s TOKEN` (PUT "
		    "/v1/sites/%s/credential)",
		    sc->name, sc->name, sc->name);
		return -EACCES;
	}
	if (time_limit_min <= 0)
		time_limit_min = sc->default_time_limit_min;
	need = now + queue + time_limit_min * 60;
	if (c->expires_at < need) {
		http_reply_error(req, 422, "credential_expires_too_soon",
				 "your token for site %s expires in %lld s, "
				 "before this job could end (queue estimate "
				 "%lld s + time limit %lld min): register a "
				 "token with a longer lifespan (scontrol token "
				 "lifespan=%lld) or ask for a shorter "
				 "resources.time_limit_min",
				 sc->name, (long long)(c->expires_at - now),
				 (long long)queue, (long long)time_limit_min,
				 (long long)(need - now + 3600));
		return -EACCES;
	}
	return 0;
}

/* 400 with the field's name, or 0. */
static int validate(struct http_req *req, struct gw *gw, const json_t *body,
		    const struct auth_identity *id, struct job_request *jr)
{
	const json_t *res, *env, *v;
	const char *site, *tier, *script, *name, *k;
	const struct gw_site_config *sc;
	const struct tier *t;
	char mapped[64];

	if (!json_is_object(body))
		goto bad_body;
	site = json_string_value(json_object_get(body, "site"));
	tier = json_string_value(json_object_get(body, "tier"));
	script = json_string_value(json_object_get(body, "script"));
	v = json_object_get(body, "name");
	name = json_string_value(v);
	if (!site)
		return http_reply_error(req, 400, "bad_request",
					"'site' (string) is required"),
		       -EINVAL;
	if (!gw_site_find(gw, site))
		return http_reply_error(req, 404, "not_found",
					"no site '%.64s'", site),
		       -ENOENT;
	if (!tier)
		return http_reply_error(req, 400, "bad_request",
					"'tier' (string) is required"),
		       -EINVAL;
	t = tier_find(gw->cfg->tiers, tier);
	if (!t)
		return http_reply_error(req, 400, "bad_request",
					"unknown tier '%.32s'", tier),
		       -EINVAL;
	if (!script || !*script || strlen(script) > SCRIPT_MAX)
		return http_reply_error(req, 400, "bad_request",
					"'script' must be a non-empty string "
					"of at most %d bytes",
					SCRIPT_MAX),
		       -EINVAL;
	if (strncmp(script, "#!", 2))
		return http_reply_error(
			   req, 400, "bad_request",
			   "'script' must start with #! (e.g. #!/bin/bash)"),
		       -EINVAL;
	if (v && (!name || strlen(name) > NAME_MAX_LEN))
		return http_reply_error(
			   req, 400, "bad_request",
			   "'name' must be a string of at most %d characters",
			   NAME_MAX_LEN),
		       -EINVAL;
	res = json_object_get(body, "resources");
	if (res && !json_is_object(res))
		return http_reply_error(req, 400, "bad_request",
					"'resources' must be an object"),
		       -EINVAL;
	json_object_foreach((json_t *)res, k, v)
	{
		if (strcmp(k, "ntasks") && strcmp(k, "cpus_per_task") &&
		    strcmp(k, "time_limit_min"))
			return http_reply_error(req, 400, "bad_request",
						"unknown resource '%.32s'", k),
			       -EINVAL;
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 1000000)
			return http_reply_error(
				   req, 400, "bad_request",
				   "'resources.%s' must be a positive integer",
				   k),
			       -EINVAL;
	}
	if (json_integer_value(json_object_get(res, "cpus_per_task")) >
	    (json_int_t)t->cpus)
		return http_reply_error(req, 400, "bad_request",
					"tier '%s' allows %u CPU%s per task",
					t->name, t->cpus,
					t->cpus == 1 ? "" : "s"),
		       -EINVAL;
	env = json_object_get(body, "environment");
	if (env &&
	    (!json_is_object(env) || json_object_size(env) > ENV_MAX_VARS))
		return http_reply_error(req, 400, "bad_request",
					"'environment' must be an object of at "
					"most %d strings",
					ENV_MAX_VARS),
		       -EINVAL;
	json_object_foreach((json_t *)env, k, v)
	{
		if (!env_name_ok(k) || !json_is_string(v))
			return http_reply_error(
				   req, 400, "bad_request",
				   "environment variable '%.64s' is not "
				   "allowed (names [A-Za-z_][A-Za-z0-9_]*, not "
				   "SLURM*/TIERGATE*, string values)",
				   k),
			       -EINVAL;
	}
	json_object_foreach((json_t *)body, k, v)
	{
		if (strcmp(k, "site") && strcmp(k, "tier") &&
		    strcmp(k, "script") && strcmp(k, "name") &&
		    strcmp(k, "resources") && strcmp(k, "environment"))
			return http_reply_error(req, 400, "bad_request",
						"unknown field '%.32s'", k),
			       -EINVAL;
	}
	sc = gw_site_find(gw, site)->cfg;
	if (gw_config_map_user(sc, id->user, mapped, sizeof(mapped)))
		return http_reply_error(req, 403, "forbidden",
					"user %s has no account on site %s",
					id->user, site),
		       -EPERM;
	if (!tier_entitled(gw->cfg->tiers, t, id->user, NULL, 0, NULL))
		return http_reply_error(req, 403, "forbidden",
					"user %s is not entitled to tier '%s'",
					id->user, t->name),
		       -EPERM;
	if (sc->auth == GW_SITE_AUTH_JWT_USER &&
	    check_credential(
		req, gw, sc, id->user,
		json_integer_value(json_object_get(res, "time_limit_min"))))
		return -EACCES;
	jr->site = site;
	jr->tier = tier;
	jr->script = script;
	jr->name = name;
	jr->environment = env;
	return 0;
bad_body:
	http_reply_error(req, 400, "bad_request",
			 "the body must be a JSON object");
	return -EINVAL;
}

static void created(struct gw_job *j, int rv, void *arg)
{
	struct http_req *req = arg;

	if (http_req_destroyed(req)) {
		/* the client left; the job stands (it was committed) */
	} else if (rv == 0 && j) {
		gw_crash_point("accepted");
		http_reply_json(req, 202, job_to_json(j));
	} else if (rv == 1 && j) {
		http_reply_json(req, 200, job_to_json(j));
	} else if (rv == -EEXIST) {
		http_reply_error(
		    req, 422, "idempotency_mismatch",
		    "Idempotency-Key was used for another request%s%s%s",
		    j ? " (job " : "", j ? j->rec.id : "", j ? ")" : "");
	} else if (store_error_unavailable(rv)) {
		http_reply_error(req, 503, "storage_unavailable",
				 "the job could not be stored (%s); nothing "
				 "was sent to the site",
				 store_strerror(rv));
	} else {
		http_reply_error(req, 500, "internal",
				 "cannot store the job: %s",
				 store_strerror(rv));
	}
	http_req_unref(req);
}

void api_jobs_create(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const struct auth_identity *id = api_identity(req);
	struct job_request jr = {0};
	const char *idem = http_req_header(req, "Idempotency-Key");
	char hash[65];
	char *canon = NULL;
	json_t *body = NULL;
	struct gw_site *s;
	int rv;

	if (gw->draining) {
		http_reply_error(req, 503, "shutting_down", "draining");
		return;
	}
	if (idem && (!*idem || strlen(idem) > IDEM_KEY_MAX)) {
		http_reply_error(req, 400, "bad_request",
				 "Idempotency-Key must be 1..%d characters",
				 IDEM_KEY_MAX);
		return;
	}
	if (http_req_body_json(req, &body))
		return; /* answered */
	if (validate(req, gw, body, id, &jr))
		goto out;
	s = gw_site_find(gw, jr.site);
	if (s->breaker == BREAKER_OPEN && !gw_site_allows(s)) {
		http_reply_header(req, "Retry-After", "10");
		http_reply_error(req, 503, "site_unavailable",
				 "site %s is not answering: %s", jr.site,
				 s->last_error);
		goto out;
	}
	canon = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	if (!canon) {
		http_reply_error(req, 500, "internal", "out of memory");
		goto out;
	}
	digest_sha256_hex(canon, strlen(canon), hash);
	jr.user = id->user;
	jr.idempotency_key = idem;
	jr.body_hash = hash;
	jr.request_body = canon;
	jr.request_id = http_req_id(req);
	http_req_ref(req);
	http_req_suspend(req);
	rv = jobs_create(gw->jobs, &jr, created, req);
	if (rv) {
		http_reply_error(req, 503, "storage_unavailable",
				 "the job could not be stored: %s",
				 store_strerror(rv));
		http_req_unref(req);
	}
out:
	free(canon);
	json_decref(body);
}

struct list_ctx {
	const struct auth_identity *id;
	const char *user, *site;
	int state;
	long limit;
	json_t *out;
};

static int list_one(struct gw_job *j, void *arg)
{
	struct list_ctx *c = arg;

	if ((long)json_array_size(c->out) >= c->limit)
		return 1;
	if (!api_may_see(c->id, j->rec.user) ||
	    (c->user && strcmp(c->user, j->rec.user)) ||
	    (c->site && strcmp(c->site, j->rec.site)) ||
	    (c->state >= 0 && (int)j->rec.state != c->state))
		return 0;
	json_array_append_new(c->out, job_to_json(j));
	return 0;
}

void api_jobs_list(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	struct list_ctx c = {
	    .id = api_identity(req), .state = -1, .limit = 100};
	const char *state = http_req_query(req, "state");
	const char *limit = http_req_query(req, "limit");
	json_t *o;

	c.site = http_req_query(req, "site");
	c.user = http_req_query(req, "user");
	if (c.user && !c.id->admin && strcmp(c.user, c.id->user)) {
		http_reply_error(req, 403, "forbidden",
				 "only admins list other users' jobs");
		return;
	}
	if (state && (c.state = store_job_state_parse(state)) < 0) {
		http_reply_error(req, 400, "bad_request",
				 "unknown state '%.32s'", state);
		return;
	}
	if (limit) {
		char *end;

		c.limit = strtol(limit, &end, 10);
		if (*end || c.limit < 1 || c.limit > 10000) {
			http_reply_error(req, 400, "bad_request",
					 "limit must be 1..10000");
			return;
		}
	}
	c.out = json_array();
	/* a user sees only their own: walk those, not every job */
	if (!c.user && !c.id->admin)
		c.user = c.id->user;
	if (c.user)
		jobs_foreach_user(gw->jobs, c.user, list_one, &c);
	else
		jobs_foreach(gw->jobs, list_one, &c);
	o = json_object();
	json_object_set_new(o, "jobs", c.out);
	http_reply_json(req, 200, o);
}

static struct gw_job *visible_job(struct http_req *req, struct gw *gw)
{
	const char *id = http_req_param(req, "id");
	struct gw_job *j = id ? jobs_find(gw->jobs, id) : NULL;

	/* another user's job is "not found": ids are not confirmed */
	if (!j || !api_may_see(api_identity(req), j->rec.user)) {
		http_reply_error(req, 404, "not_found", "no job %.64s",
				 id ? id : "");
		return NULL;
	}
	return j;
}

void api_jobs_get(struct http_req *req, void *arg)
{
	struct gw_job *j = visible_job(req, arg);
	const char *text;
	size_t len;

	if (!j)
		return;
	text = job_json_text(j, &len);
	if (text)
		http_reply_data(req, 200, "application/json", text, len);
	else
		http_reply_error(req, 500, "internal", "out of memory");
}

void api_jobs_cancel(struct http_req *req, void *arg)
{
	const struct auth_identity *id = api_identity(req);
	struct gw_job *j = visible_job(req, arg);
	char who[96];

	if (!j)
		return;
	snprintf(who, sizeof(who), "%s:%s",
		 strcmp(id->user, j->rec.user) ? "admin" : "user", id->user);
	job_request_cancel(j, who);
	log_info("job %s: cancel requested by %s (request %s)", j->rec.id, who,
		 http_req_id(req));
	http_reply_json(req, 202, job_to_json(j));
}
