/*
 * auth.c: see auth.h.
 *
 * Bearer tokens are verified on the loop (an HMAC or one public-key
 * verification) behind a set-associative cache keyed by the token's
 * SHA-256.  MUNGE credentials go to a worker thread: the request object
 * copies everything the worker reads, so the worker never touches the
 * struct auth, the config or the caller.  A request has two owners, the
 * caller (until auth_munge_release) and the worker pool (until done()),
 * and is freed when both have let go; a timer answers -ETIMEDOUT when
 * munged hangs (a SIGSTOPped munged keeps munge_decode blocked ~10 s).
 */
#include "auth.h"
#include "digest.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>
#include <munge.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config.h"
#include "json_util.h"
#include "jwt_verify.h"
#include "log.h"
#include "loop.h"
#include "task.h"
#include "ticket.h"
#include "worker.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define CACHE_WAYS 4
#define AUTH_ERR_MAX 256
#define MINT_DEFAULT_TTL 3600

static const char *const auth_method_names[] = {
#define AUTH_METHOD_NAME_(name, str) str,
    AUTH_METHODS(AUTH_METHOD_NAME_)
#undef AUTH_METHOD_NAME_
};

const char *auth_method_name(enum auth_method m)
{
	if ((unsigned)m >=
	    sizeof(auth_method_names) / sizeof(*auth_method_names))
		return "?";
	return auth_method_names[m];
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

/* ------------------------------------------------------------ objects */

struct cache_entry {
	unsigned char hash[32];
	int64_t exp;
	bool used;
	bool admin_claim;
	char user[JWT_USER_MAX + 1];
};

struct auth {
	struct loop *loop;
	struct worker_pool *workers;
	struct gw_config *cfg;
	struct cache_entry *cache;
	unsigned cache_sets; /* power of two; CACHE_WAYS entries each */
	unsigned cache_entries;
	unsigned munge_timeout_ms;
	unsigned live_reqs;
	bool freed; /* auth_free called; destroyed with the last request */
	struct auth_stats st;
};

#define REQ_STATES(X)                                                          \
	X(QUEUED)  /* submitted to the pool */                                 \
	X(DECODED) /* worker answered */                                       \
	X(TIMEDOUT)                                                            \
	X(CANCELLED)

enum req_state {
#define REQ_STATE_ENUM_(name) REQ_##name,
	REQ_STATES(REQ_STATE_ENUM_)
#undef REQ_STATE_ENUM_
};

static const char *const req_state_names[] = {
#define REQ_STATE_NAME_(name) #name,
    REQ_STATES(REQ_STATE_NAME_)
#undef REQ_STATE_NAME_
};

struct auth_munge_req {
	struct auth *a;
	enum auth_method method; /* MUNGE or NODE_MUNGE */
	enum req_state state;
	struct worker_job job;
	struct loop_timer timer;
	struct task *task; /* referenced while the caller is attached */
	auth_done_fn *cb;
	void *arg;
	bool caller_attached;
	bool worker_owned;
	bool notifying;
	bool ready;
	uint64_t started_ms;
	/* inputs, owned, read by the worker */
	char *cred;
	char *socket;
	char *req_method; /* user: "GET" */
	char *req_path;
	char *site; /* node: the site name (for messages) */
	void *body; /* node: a copy of the body */
	size_t body_len;
	/* written by the worker, read on the loop after done() */
	int w_rv;
	char w_err[AUTH_ERR_MAX];
	int64_t w_uid, w_gid;
	char w_user[JWT_USER_MAX + 1];
	/* the answer */
	int rv;
	char err[AUTH_ERR_MAX];
	struct auth_identity id;
};

static void identity_init(struct auth_identity *id, enum auth_method m)
{
	memset(id, 0, sizeof(*id));
	id->method = m;
	id->uid = -1;
	id->gid = -1;
}

int auth_new(struct loop *l, struct worker_pool *workers, struct gw_config *cfg,
	     const struct auth_opts *opts, struct auth **out)
{
	struct auth *a;
	unsigned want =
	    opts && opts->cache_size ? opts->cache_size : AUTH_DEFAULT_CACHE;
	unsigned sets = 4;

	*out = NULL;
	if (!cfg)
		return -EINVAL;
	while (sets * CACHE_WAYS < want && sets < (1u << 22))
		sets <<= 1;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->cache = calloc((size_t)sets * CACHE_WAYS, sizeof(*a->cache));
	if (!a->cache) {
		free(a);
		return -ENOMEM;
	}
	a->loop = l;
	a->workers = workers;
	a->cfg = gw_config_ref(cfg);
	a->cache_sets = sets;
	a->munge_timeout_ms = opts && opts->munge_timeout_ms
				  ? opts->munge_timeout_ms
				  : AUTH_DEFAULT_MUNGE_TIMEOUT_MS;
	*out = a;
	return 0;
}

static void cache_flush(struct auth *a)
{
	OPENSSL_cleanse(a->cache,
			(size_t)a->cache_sets * CACHE_WAYS * sizeof(*a->cache));
	a->cache_entries = 0;
}

static void auth_destroy(struct auth *a)
{
	cache_flush(a);
	free(a->cache);
	gw_config_unref(a->cfg);
	free(a);
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	a->freed = true;
	if (!a->live_reqs)
		auth_destroy(a);
}

void auth_set_config(struct auth *a, struct gw_config *cfg)
{
	struct gw_config *old = a->cfg;

	a->cfg = gw_config_ref(cfg);
	gw_config_unref(old);
	cache_flush(a);
}

/* ------------------------------------------------------------ header */

enum auth_scheme auth_parse_header(const char *hdr, const char **cred,
				   size_t *cred_len)
{
	const char *p, *c;
	size_t slen, n;
	enum auth_scheme s;

	*cred = NULL;
	*cred_len = 0;
	if (!hdr)
		return AUTH_SCHEME_NONE;
	p = hdr;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p)
		return AUTH_SCHEME_NONE;
	slen = strcspn(p, " \t");
	if (slen == 6 && !strncasecmp(p, "Bearer", 6))
		s = AUTH_SCHEME_BEARER;
	else if (slen == 5 && !strncasecmp(p, "MUNGE", 5))
		s = AUTH_SCHEME_MUNGE;
	else
		return AUTH_SCHEME_OTHER;
	c = p + slen;
	while (*c == ' ' || *c == '\t')
		c++;
	n = strcspn(c, " \t\r\n");
	if (!n)
		return AUTH_SCHEME_OTHER;
	/* only blanks may follow the credential */
	if (c[n + strspn(c + n, " \t")])
		return AUTH_SCHEME_OTHER;
	*cred = c;
	*cred_len = n;
	return s;
}

/* ------------------------------------------------------------ bearer */

static bool hash_zero(const unsigned char h[32])
{
	unsigned char acc = 0;
	int i;

	for (i = 0; i < 32; i++)
		acc |= h[i];
	return !acc;
}

static struct cache_entry *cache_set(struct auth *a, const unsigned char h[32])
{
	uint32_t idx = (uint32_t)h[0] | (uint32_t)h[1] << 8 |
		       (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;

	return &a->cache[(size_t)(idx & (a->cache_sets - 1)) * CACHE_WAYS];
}

/* An entry is good while the token would still verify: exp > now - leeway */
static bool entry_live(const struct cache_entry *e, time_t now)
{
	return e->used && e->exp > (int64_t)now - JWT_DEFAULT_LEEWAY;
}

static const struct cache_entry *
cache_lookup(struct auth *a, const unsigned char h[32], time_t now)
{
	struct cache_entry *set = cache_set(a, h);
	int i;

	if (hash_zero(h))
		return NULL;
	for (i = 0; i < CACHE_WAYS; i++) {
		struct cache_entry *e = &set[i];

		if (!e->used || CRYPTO_memcmp(e->hash, h, 32))
			continue;
		if (entry_live(e, now))
			return e;
		OPENSSL_cleanse(e, sizeof(*e)); /* expired: forget it */
		a->cache_entries--;
		return NULL;
	}
	return NULL;
}

static void cache_insert(struct auth *a, const unsigned char h[32],
			 const char *user, bool admin_claim, int64_t exp,
			 time_t now)
{
	struct cache_entry *set = cache_set(a, h), *victim = NULL;
	int i;

	if (hash_zero(h))
		return;
	for (i = 0; i < CACHE_WAYS; i++) {
		if (!set[i].used) {
			victim = &set[i];
			break;
		}
		if (!entry_live(&set[i], now)) {
			victim = &set[i];
			a->cache_entries--;
			break;
		}
		if (!victim || set[i].exp < victim->exp)
			victim = &set[i];
	}
	if (victim->used && entry_live(victim, now))
		a->cache_entries--; /* evicting the soonest to expire */
	memset(victim, 0, sizeof(*victim));
	memcpy(victim->hash, h, 32);
	victim->exp = exp;
	victim->admin_claim = admin_claim;
	snprintf(victim->user, sizeof(victim->user), "%s", user);
	victim->used = true;
	a->cache_entries++;
}

int auth_bearer(struct auth *a, const char *token, time_t now,
		struct auth_identity *id, char *err, size_t errlen)
{
	const struct gw_config *cfg = a->cfg;
	struct jwt_expect ex = {0};
	const struct cache_entry *e;
	unsigned char h[32];
	json_t *claims = NULL;
	const char *user = NULL;
	char jerr[AUTH_ERR_MAX];
	bool admin = false;
	int64_t exp = 0;
	size_t len;
	int rv;

	identity_init(id, AUTH_METHOD_BEARER);
	if (!token || !*token) {
		set_err(err, errlen, "empty bearer token");
		rv = -EINVAL;
		goto out_refused;
	}
	if (!cfg->user_key) {
		set_err(err, errlen,
			"bearer tokens are not accepted here (no user_key "
			"configured)");
		rv = -EACCES;
		goto out_refused;
	}
	/* before hashing: a 12 MB token costs nothing more than a short one */
	len = strnlen(token, JWT_TOKEN_MAX + 1);
	if (len > JWT_TOKEN_MAX) {
		set_err(err, errlen, "token longer than %d bytes",
			JWT_TOKEN_MAX);
		rv = -E2BIG;
		goto out_refused;
	}
	digest_sha256(token, len, h); /* zeros on failure: see cache_lookup */
	e = cache_lookup(a, h, now);
	if (e) {
		snprintf(id->user, sizeof(id->user), "%s", e->user);
		id->admin = e->admin_claim || gw_config_is_admin(cfg, e->user);
		id->exp = e->exp;
		id->cached = true;
		a->st.bearer_cached++;
		dbg("bearer: cached token for %s", id->user);
		return 0;
	}

	ex.iss = cfg->user_issuer;
	ex.aud = AUTH_AUDIENCE;
	ex.user_claim = "sub";
	ex.require_iat = true;
	ex.max_lifetime_s = cfg->max_token_lifetime_s;
	rv = jwt_verify_token(cfg->user_key, token, &ex, now, &claims, jerr,
			      sizeof(jerr));
	if (rv) {
		set_err(err, errlen, "%s", jerr);
		goto out_refused;
	}
	if (json_get_str(claims, "sub", &user) ||
	    json_get_int(claims, "exp", &exp)) {
		/* jwt_verify checked both: defensive */
		set_err(err, errlen, "token lacks 'sub' or 'exp'");
		rv = -EINVAL;
		goto out_refused;
	}
	/* strictly a JSON boolean: "true", 1 and null refuse the token */
	if (json_object_get(claims, "admin")) {
		rv = json_get_bool(claims, "admin", &admin);
		if (rv) {
			set_err(err, errlen,
				"claim 'admin' must be true or false (a JSON "
				"boolean)");
			rv = -EINVAL;
			goto out_refused;
		}
	}
	snprintf(id->user, sizeof(id->user), "%s", user);
	id->admin = admin || gw_config_is_admin(cfg, user);
	id->exp = exp;
	cache_insert(a, h, user, admin, exp, now);
	json_decref(claims);
	a->st.bearer_ok++;
	dbg("bearer: verified token for %s admin=%d", id->user, id->admin);
	return 0;

out_refused:
	json_decref(claims);
	identity_init(id, AUTH_METHOD_BEARER);
	a->st.bearer_refused++;
	dbg("bearer: refused: %s", err ? err : "");
	return rv;
}

/* ------------------------------------------------------------ MUNGE */

static int munge_err_to_errno(munge_err_t e)
{
	switch (e) {
	case EMUNGE_SUCCESS:
		return 0;
	case EMUNGE_CRED_REPLAYED:
		return -EKEYREJECTED;
	case EMUNGE_CRED_EXPIRED:
		return -EKEYEXPIRED;
	case EMUNGE_SOCKET:
	case EMUNGE_TIMEOUT:
		return -EHOSTDOWN;
	case EMUNGE_NO_MEMORY:
		return -ENOMEM;
	case EMUNGE_BAD_ARG:
	case EMUNGE_BAD_LENGTH:
	case EMUNGE_BAD_CRED:
	case EMUNGE_BAD_VERSION:
	case EMUNGE_BAD_CIPHER:
	case EMUNGE_BAD_MAC:
	case EMUNGE_BAD_ZIP:
		return -EINVAL;
	case EMUNGE_BAD_REALM:
	case EMUNGE_CRED_INVALID:
	case EMUNGE_CRED_REWOUND:
	case EMUNGE_CRED_UNAUTHORIZED:
		return -EACCES;
	case EMUNGE_SNAFU:
	case EMUNGE_OVERFLOW:
		return -EIO;
	}
	return -EIO;
}

/* Worker thread: the user name of uid (getpwuid_r may read NSS files). */
static int uid_name(uid_t uid, char *out, size_t len, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
	char *buf;
	int e;

	if (sz < 1024)
		sz = 16384;
	buf = malloc((size_t)sz);
	if (!buf)
		return -ENOMEM;
	e = getpwuid_r(uid, &pw, buf, (size_t)sz, &res);
	if (e || !res) {
		set_err(err, errlen, "uid %u has no user name%s%s",
			(unsigned)uid, e ? ": " : "", e ? strerror(e) : "");
		free(buf);
		return -EACCES;
	}
	if (!jwt_user_name_valid(pw.pw_name) || strlen(pw.pw_name) >= len) {
		set_err(err, errlen, "uid %u: user name is not acceptable",
			(unsigned)uid);
		free(buf);
		return -EACCES;
	}
	snprintf(out, len, "%s", pw.pw_name);
	free(buf);
	return 0;
}

/* Worker thread: decode, compare the payload, name the uid. */
static void munge_work(struct worker_job *j)
{
	struct auth_munge_req *r = container_of(j, struct auth_munge_req, job);
	munge_ctx_t ctx;
	munge_err_t merr;
	void *buf = NULL;
	int len = 0;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	char *expect = NULL;
	int n;

	r->w_rv = 0;
	ctx = munge_ctx_create();
	if (!ctx) {
		r->w_rv = -ENOMEM;
		set_err(r->w_err, sizeof(r->w_err), "munge_ctx_create failed");
		return;
	}
	if (munge_ctx_set(ctx, MUNGE_OPT_SOCKET, r->socket) != EMUNGE_SUCCESS) {
		r->w_rv = -EINVAL;
		set_err(r->w_err, sizeof(r->w_err), "munge socket %s: %s",
			r->socket, munge_ctx_strerror(ctx));
		goto out;
	}
	merr = munge_decode(r->cred, ctx, &buf, &len, &uid, &gid);
	if (merr != EMUNGE_SUCCESS) {
		r->w_rv = munge_err_to_errno(merr);
		if (merr == EMUNGE_CRED_REPLAYED)
			set_err(r->w_err, sizeof(r->w_err),
				"credential replayed");
		else if (r->w_rv == -EHOSTDOWN)
			set_err(r->w_err, sizeof(r->w_err),
				"cannot reach munged at %s: %s", r->socket,
				munge_ctx_strerror(ctx));
		else if (merr == EMUNGE_CRED_INVALID ||
			 merr == EMUNGE_BAD_REALM)
			set_err(r->w_err, sizeof(r->w_err),
				"invalid MUNGE credential (not from this "
				"realm's munged?): %s",
				munge_strerror(merr));
		else
			set_err(r->w_err, sizeof(r->w_err),
				"MUNGE credential refused: %s",
				munge_strerror(merr));
		goto out;
	}
	r->w_uid = (int64_t)uid;
	r->w_gid = (int64_t)gid;
	if (r->method == AUTH_METHOD_NODE_MUNGE) {
		/* the relay signed this very form (shared/digest.c) */
		size_t cap = strlen(r->req_path) + 80;

		expect = malloc(cap);
		n = expect ? digest_report_payload("POST", r->req_path, r->body,
						   r->body_len, expect, cap)
			   : -1;
	} else {
		n = asprintf(&expect, "%s %s", r->req_method, r->req_path);
	}
	if (n < 0) {
		expect = NULL;
		r->w_rv = -ENOMEM;
		set_err(r->w_err, sizeof(r->w_err), "out of memory");
		goto out;
	}
	if (!buf || len != n || memcmp(buf, expect, (size_t)n)) {
		r->w_rv = -EACCES;
		if (r->method == AUTH_METHOD_NODE_MUNGE)
			set_err(r->w_err, sizeof(r->w_err),
				"credential payload does not match this "
				"request (want \"POST %s\\n<sha256 of the "
				"body>\")",
				r->req_path);
		else
			set_err(r->w_err, sizeof(r->w_err),
				"credential payload does not match this "
				"request (want \"%s %s\")",
				r->req_method, r->req_path);
		goto out;
	}
	if (r->method == AUTH_METHOD_NODE_MUNGE) {
		if (uid != 0) {
			r->w_rv = -EACCES;
			set_err(r->w_err, sizeof(r->w_err),
				"credential of uid %u: node reports must come "
				"from root (slurmstepd)",
				(unsigned)uid);
			goto out;
		}
		snprintf(r->w_user, sizeof(r->w_user), "root");
		goto out;
	}
	r->w_rv = uid_name(uid, r->w_user, sizeof(r->w_user), r->w_err,
			   sizeof(r->w_err));
out:
	if (buf) {
		OPENSSL_cleanse(buf, (size_t)len);
		free(buf);
	}
	free(expect);
	munge_ctx_destroy(ctx);
}

static void req_free(struct auth_munge_req *r)
{
	struct auth *a = r->a;

	if (r->cred)
		OPENSSL_cleanse(r->cred, strlen(r->cred));
	free(r->cred);
	free(r->socket);
	free(r->req_method);
	free(r->req_path);
	free(r->site);
	free(r->body);
	free(r);
	a->live_reqs--;
	if (a->freed && !a->live_reqs)
		auth_destroy(a);
}

static void req_maybe_free(struct auth_munge_req *r)
{
	if (!r->caller_attached && !r->worker_owned && !r->notifying)
		req_free(r);
}

/* The answer is there: tell the caller (wake first, then the callback). */
static void req_notify(struct auth_munge_req *r)
{
	if (!r->caller_attached)
		return;
	r->notifying = true;
	if (r->task && !task_destroyed(r->task))
		task_wake(r->task, TASK_WAKE_WORKER);
	if (r->cb)
		r->cb(r, r->arg); /* may release r: freed below at the latest */
	r->notifying = false;
}

static void req_finish(struct auth_munge_req *r)
{
	struct auth *a = r->a;
	const char *what =
	    r->method == AUTH_METHOD_NODE_MUNGE ? "node" : "user";

	r->rv = r->w_rv;
	snprintf(r->err, sizeof(r->err), "%s", r->w_err);
	identity_init(&r->id, r->method);
	if (!r->rv) {
		snprintf(r->id.user, sizeof(r->id.user), "%s", r->w_user);
		r->id.uid = r->w_uid;
		r->id.gid = r->w_gid;
		r->id.admin = r->method == AUTH_METHOD_MUNGE &&
			      gw_config_is_admin(a->cfg, r->w_user);
		a->st.munge_ok++;
		dbg("munge %s: uid %" PRId64 " (%s) accepted", what, r->w_uid,
		    r->w_user);
	} else if (r->rv == -EHOSTDOWN || r->rv == -ENOMEM || r->rv == -EIO) {
		a->st.munge_unavailable++;
		log_warn("munge %s credential not checked: %s", what, r->err);
	} else {
		a->st.munge_refused++;
		dbg("munge %s: refused: %s", what, r->err);
	}
}

static void munge_done(struct worker_job *j, int status)
{
	struct auth_munge_req *r = container_of(j, struct auth_munge_req, job);

	r->worker_owned = false; /* a release from the callback frees after */
	if (!r->ready) {
		loop_timer_stop(&r->timer);
		if (status == -ECANCELED) {
			r->state = REQ_CANCELLED;
			r->w_rv = -ECANCELED;
			snprintf(r->w_err, sizeof(r->w_err),
				 "MUNGE decode cancelled (shutting down)");
		} else {
			r->state = REQ_DECODED;
		}
		req_finish(r);
		r->ready = true;
		req_notify(r);
	}
	req_maybe_free(r);
}

static void munge_timeout(struct loop_timer *t, void *arg)
{
	struct auth_munge_req *r = arg;

	(void)t;
	if (r->ready)
		return;
	r->state = REQ_TIMEDOUT;
	r->rv = -ETIMEDOUT;
	snprintf(r->err, sizeof(r->err),
		 "munged at %s did not answer within %u ms", r->socket,
		 r->a->munge_timeout_ms);
	identity_init(&r->id, r->method);
	r->a->st.munge_unavailable++;
	log_warn("munge: %s", r->err);
	r->ready = true;
	req_notify(r);
	req_maybe_free(r);
}

static int req_start(struct auth *a, struct auth_munge_req *r,
		     struct task *task, auth_done_fn *cb, void *arg,
		     struct auth_munge_req **out, char *err, size_t errlen)
{
	int rv;

	r->job.name =
	    r->method == AUTH_METHOD_NODE_MUNGE ? "munge-node" : "munge-user";
	r->job.work = munge_work;
	r->job.done = munge_done;
	r->cb = cb;
	r->arg = arg;
	r->started_ms = loop_clock_ms();
	rv = worker_submit(a->workers, &r->job);
	if (rv) {
		set_err(err, errlen, "cannot queue the MUNGE decode: %s",
			strerror(-rv));
		req_free(r);
		return rv == -ESHUTDOWN ? -ESHUTDOWN : -EIO;
	}
	r->worker_owned = true;
	r->caller_attached = true;
	if (task) {
		task_ref(task);
		r->task = task;
	}
	loop_timer_init(&r->timer);
	loop_timer_start(a->loop, &r->timer, a->munge_timeout_ms, munge_timeout,
			 r);
	*out = r;
	return 0;
}

/* Common checks and copies; *rp is a new request not yet submitted. */
static int req_new(struct auth *a, enum auth_method m, const char *cred,
		   const char *socket, const char *path,
		   struct auth_munge_req **rp, char *err, size_t errlen)
{
	struct auth_munge_req *r;
	size_t clen, plen;

	*rp = NULL;
	if (!a->workers) {
		set_err(err, errlen, "MUNGE is not available (no workers)");
		return -EACCES;
	}
	clen = cred ? strnlen(cred, AUTH_MUNGE_CRED_MAX + 1) : 0;
	if (!clen) {
		set_err(err, errlen, "empty MUNGE credential");
		return -EINVAL;
	}
	if (clen > AUTH_MUNGE_CRED_MAX) {
		set_err(err, errlen, "MUNGE credential longer than %d bytes",
			AUTH_MUNGE_CRED_MAX);
		return -E2BIG;
	}
	/* base64 with the MUNGE: prefix and : suffix */
	if (strncmp(cred, "MUNGE:", 6) ||
	    strspn(cred, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789+/=:") != clen) {
		set_err(err, errlen, "not a MUNGE credential");
		return -EINVAL;
	}
	plen = path ? strnlen(path, AUTH_PATH_MAX + 1) : 0;
	if (!plen || plen > AUTH_PATH_MAX || *path != '/') {
		set_err(err, errlen, "bad request path for a MUNGE payload");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		goto out_nomem;
	a->live_reqs++; /* req_free() gives it back */
	r->a = a;
	r->method = m;
	r->state = REQ_QUEUED;
	r->cred = strndup(cred, clen);
	r->socket = strdup(socket);
	r->req_path = strndup(path, plen);
	if (!r->cred || !r->socket || !r->req_path) {
		req_free(r);
		goto out_nomem;
	}
	*rp = r;
	return 0;
out_nomem:
	set_err(err, errlen, "out of memory");
	return -ENOMEM;
}

static bool method_valid(const char *m)
{
	size_t n = m ? strlen(m) : 0;

	return n >= 1 && n <= 16 &&
	       strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == n;
}

int auth_munge_start(struct auth *a, const char *cred, const char *method,
		     const char *path, struct task *task, auth_done_fn *cb,
		     void *arg, struct auth_munge_req **out, char *err,
		     size_t errlen)
{
	struct auth_munge_req *r;
	int rv;

	*out = NULL;
	if (!a->cfg->munge_socket) {
		set_err(err, errlen,
			"MUNGE credentials are not accepted here (no "
			"munge_socket in [gateway])");
		a->st.munge_refused++;
		return -EACCES;
	}
	if (!method_valid(method)) {
		set_err(err, errlen, "bad request method for a MUNGE payload");
		return -EINVAL;
	}
	rv = req_new(a, AUTH_METHOD_MUNGE, cred, a->cfg->munge_socket, path, &r,
		     err, errlen);
	if (rv) {
		a->st.munge_refused++;
		return rv;
	}
	r->req_method = strdup(method);
	if (!r->req_method) {
		req_free(r);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return req_start(a, r, task, cb, arg, out, err, errlen);
}

int auth_node_munge_start(struct auth *a, const char *site, const char *cred,
			  const char *path, const void *body, size_t body_len,
			  struct task *task, auth_done_fn *cb, void *arg,
			  struct auth_munge_req **out, char *err, size_t errlen)
{
	const struct gw_site_config *s = gw_config_site(a->cfg, site);
	struct auth_munge_req *r;
	int rv;

	*out = NULL;
	if (!s) {
		set_err(err, errlen, "unknown site '%s'", site ? site : "");
		a->st.munge_refused++;
		return -EACCES;
	}
	if (!s->munge_socket) {
		set_err(err, errlen,
			"site %s has no munge_socket: MUNGE reports from its "
			"nodes are not accepted",
			s->name);
		a->st.munge_refused++;
		return -EACCES;
	}
	rv = req_new(a, AUTH_METHOD_NODE_MUNGE, cred, s->munge_socket, path, &r,
		     err, errlen);
	if (rv) {
		a->st.munge_refused++;
		return rv;
	}
	r->site = strdup(s->name);
	r->body_len = body_len;
	r->body = malloc(body_len ? body_len : 1);
	if (!r->site || !r->body) {
		req_free(r);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (body_len)
		memcpy(r->body, body, body_len);
	return req_start(a, r, task, cb, arg, out, err, errlen);
}

bool auth_munge_ready(const struct auth_munge_req *r)
{
	return r && r->ready;
}

int auth_munge_result(const struct auth_munge_req *r, struct auth_identity *id,
		      char *err, size_t errlen)
{
	if (!r->ready) {
		identity_init(id, r->method);
		set_err(err, errlen, "MUNGE decode still running");
		return AUTH_PENDING;
	}
	*id = r->id;
	if (r->rv)
		set_err(err, errlen, "%s", r->err);
	return r->rv;
}

void auth_munge_release(struct auth_munge_req *r)
{
	if (!r || !r->caller_attached)
		return;
	r->caller_attached = false;
	r->cb = NULL;
	loop_timer_stop(&r->timer);
	if (r->task) {
		task_unref(r->task);
		r->task = NULL;
	}
	if (r->worker_owned)
		(void)worker_cancel(&r->job); /* -EBUSY: running, let it end */
	req_maybe_free(r);
}

int auth_request(struct auth *a, const char *authorization, const char *method,
		 const char *path, time_t now, struct task *task,
		 auth_done_fn *cb, void *arg, struct auth_identity *id,
		 struct auth_munge_req **req, char *err, size_t errlen)
{
	const char *cred = NULL;
	char *copy;
	size_t n = 0;
	int rv;

	*req = NULL;
	identity_init(id, AUTH_METHOD_NONE);
	switch (auth_parse_header(authorization, &cred, &n)) {
	case AUTH_SCHEME_NONE:
		set_err(err, errlen,
			"no credential: send 'Authorization: Bearer <token>' "
			"or 'Authorization: MUNGE <credential>'");
		return -ENOENT;
	case AUTH_SCHEME_OTHER:
		set_err(err, errlen,
			"unsupported Authorization header: use 'Bearer "
			"<token>' or 'MUNGE <credential>'");
		a->st.bearer_refused++;
		return -EINVAL;
	case AUTH_SCHEME_BEARER:
		if (n > JWT_TOKEN_MAX) {
			set_err(err, errlen, "token longer than %d bytes",
				JWT_TOKEN_MAX);
			a->st.bearer_refused++;
			return -E2BIG;
		}
		if (!cred[n])
			return auth_bearer(a, cred, now, id, err, errlen);
		copy = strndup(cred, n);
		if (!copy) {
			set_err(err, errlen, "out of memory");
			return -ENOMEM;
		}
		rv = auth_bearer(a, copy, now, id, err, errlen);
		OPENSSL_cleanse(copy, n);
		free(copy);
		return rv;
	case AUTH_SCHEME_MUNGE:
		if (n > AUTH_MUNGE_CRED_MAX) {
			set_err(err, errlen,
				"MUNGE credential longer than %d bytes",
				AUTH_MUNGE_CRED_MAX);
			a->st.munge_refused++;
			return -E2BIG;
		}
		copy = strndup(cred, n);
		if (!copy) {
			set_err(err, errlen, "out of memory");
			return -ENOMEM;
		}
		rv = auth_munge_start(a, copy, method, path, task, cb, arg, req,
				      err, errlen);
		OPENSSL_cleanse(copy, n);
		free(copy);
		return rv ? rv : AUTH_PENDING;
	}
	set_err(err, errlen, "bad Authorization header");
	return -EINVAL;
}

/* ------------------------------------------------------------ tickets */

int auth_ticket(struct auth *a, const char *token, time_t now,
		const char *expect_job, const char *expect_site,
		struct ticket *t, struct auth_identity *id, char *err,
		size_t errlen)
{
	struct ticket tk;
	char terr[AUTH_ERR_MAX];
	int rv;

	identity_init(id, AUTH_METHOD_TICKET);
	if (t)
		memset(t, 0, sizeof(*t));
	if (!token || !*token) {
		set_err(err, errlen, "empty ticket");
		rv = -EINVAL;
		goto out_refused;
	}
	if (strnlen(token, JWT_TOKEN_MAX + 1) > JWT_TOKEN_MAX) {
		set_err(err, errlen, "ticket longer than %d bytes",
			JWT_TOKEN_MAX);
		rv = -E2BIG;
		goto out_refused;
	}
	rv = ticket_verify(a->cfg->ticket_key, token, now, &tk, terr,
			   sizeof(terr));
	if (rv) {
		set_err(err, errlen, "ticket refused: %s", terr);
		goto out_refused;
	}
	if (expect_job && strcmp(tk.job_id, expect_job)) {
		set_err(err, errlen,
			"ticket is for job %s, the report is for job %s",
			tk.job_id, expect_job);
		rv = -EACCES;
		goto out_refused;
	}
	if (expect_site && *tk.site && strcmp(tk.site, expect_site)) {
		set_err(err, errlen,
			"ticket is for site %s, the report is from site %s",
			tk.site, expect_site);
		rv = -EACCES;
		goto out_refused;
	}
	snprintf(id->user, sizeof(id->user), "%s", tk.user);
	id->exp = tk.exp;
	if (t)
		*t = tk;
	a->st.ticket_ok++;
	return 0;
out_refused:
	a->st.ticket_refused++;
	dbg("ticket refused: %s", err ? err : "");
	return rv;
}

/* ------------------------------------------------------------ answers */

void auth_http_error(int rv, int *status, const char **code)
{
	switch (rv) {
	case -ENOENT:
	case -EINVAL:
	case -E2BIG:
	case -EACCES:
	case -EPERM:
	case -EKEYEXPIRED:
	case -EKEYREJECTED:
		*status = 401;
		*code = "unauthorized";
		return;
	case -EHOSTDOWN:
	case -ETIMEDOUT:
	case -ESHUTDOWN:
	case -ECANCELED:
		*status = 503;
		*code = "site_unavailable";
		return;
	default:
		*status = 500;
		*code = "internal";
		return;
	}
}

/* ------------------------------------------------------------ minting */

int auth_mint_token(const struct gw_config *cfg, const char *user, bool admin,
		    int64_t ttl_s, time_t now, char **token, char *err,
		    size_t errlen)
{
	json_t *claims;
	char jerr[AUTH_ERR_MAX];
	int rv;

	*token = NULL;
	if (!cfg->user_key) {
		set_err(err, errlen, "%s: no user_key configured", cfg->path);
		return -EINVAL;
	}
	if (!jwt_key_can_sign(cfg->user_key)) {
		set_err(err, errlen,
			"user_key %s is a public key: it can verify tokens "
			"but not mint them (use the private key or the HS256 "
			"secret)",
			cfg->user_key_path);
		return -EINVAL;
	}
	if (!user || !jwt_user_name_valid(user)) {
		set_err(err, errlen,
			"'%s' is not a valid user name (1..%d of "
			"[A-Za-z0-9_.@-], not starting with '-', '.' or '@')",
			user ? user : "", JWT_USER_MAX);
		return -EINVAL;
	}
	if (ttl_s < 1 || ttl_s > cfg->max_token_lifetime_s) {
		set_err(err, errlen,
			"ttl %lld s is outside 1..%lld (max_token_lifetime)",
			(long long)ttl_s, (long long)cfg->max_token_lifetime_s);
		return -ERANGE;
	}
	claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", cfg->user_issuer,
			   "aud", AUTH_AUDIENCE, "sub", user, "iat",
			   (json_int_t)now, "exp", (json_int_t)(now + ttl_s));
	if (!claims ||
	    (admin && json_object_set_new(claims, "admin", json_true()))) {
		json_decref(claims);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rv = jwt_sign_token(cfg->user_key, claims, token, jerr, sizeof(jerr));
	json_decref(claims);
	if (rv)
		set_err(err, errlen, "cannot sign: %s", jerr);
	return rv;
}

/* "3600", "90s", "30m", "12h", "7d" into seconds; -1 when bad. */
static int64_t parse_duration(const char *s)
{
	char *end;
	long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0 || v > 100LL * 365 * 86400)
		return -1;
	if (!*end || !strcmp(end, "s"))
		return v;
	if (!strcmp(end, "m"))
		return v * 60;
	if (!strcmp(end, "h"))
		return v * 3600;
	if (!strcmp(end, "d"))
		return v * 86400;
	return -1;
}

static int mint_usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "tiergated: mint-token: %s\n", msg);
	fprintf(stderr, "usage: tiergated [-c FILE] mint-token --user USER "
			"[--admin] [--ttl SECONDS|Nm|Nh|Nd]\n");
	return 2;
}

int auth_mint_main(const char *config_path, int argc, char **argv)
{
	struct gw_config *cfg = NULL;
	const char *user = NULL;
	int64_t ttl = MINT_DEFAULT_TTL;
	bool admin = false;
	char err[1024], *token = NULL;
	int i, rv;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;

		if (!strcmp(a, "--admin")) {
			admin = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			mint_usage(NULL);
			return 0;
		}
		if (!strncmp(a, "--user=", 7) || !strncmp(a, "--ttl=", 6)) {
			v = strchr(a, '=') + 1;
		} else if (!strcmp(a, "--user") || !strcmp(a, "--ttl")) {
			if (i + 1 >= argc)
				return mint_usage("option needs a value");
			v = argv[++i];
		} else {
			snprintf(err, sizeof(err), "unknown argument '%s'", a);
			return mint_usage(err);
		}
		if (!strncmp(a, "--user", 6)) {
			user = v;
		} else {
			ttl = parse_duration(v);
			if (ttl < 1)
				return mint_usage("--ttl: not a duration "
						  "(3600, 90s, 30m, 12h, 7d)");
		}
	}
	if (!user)
		return mint_usage("--user is required");
	rv = gw_config_load(config_path, &cfg, err, sizeof(err));
	if (rv) {
		fprintf(stderr, "tiergated: %s\n", err);
		return 1;
	}
	rv = auth_mint_token(cfg, user, admin, ttl, time(NULL), &token, err,
			     sizeof(err));
	gw_config_unref(cfg);
	if (rv) {
		fprintf(stderr, "tiergated: mint-token: %s\n", err);
		return 1;
	}
	printf("%s\n", token);
	OPENSSL_cleanse(token, strlen(token));
	free(token);
	return fflush(stdout) ? 1 : 0;
}

/* ------------------------------------------------------ introspection */

void auth_get_stats(const struct auth *a, struct auth_stats *st)
{
	*st = a->st;
	st->cache_entries = a->cache_entries;
	st->cache_capacity = a->cache_sets * CACHE_WAYS;
	st->munge_in_flight = a->live_reqs;
}

const char *auth_debug_str(const struct auth *a, char *buf, size_t len)
{
	snprintf(buf, len,
		 "auth cache=%u/%u bearer=ok:%" PRIu64 ",cached:%" PRIu64
		 ",refused:%" PRIu64 " munge=ok:%" PRIu64 ",refused:%" PRIu64
		 ",unavailable:%" PRIu64 " ticket=ok:%" PRIu64
		 ",refused:%" PRIu64 " live_reqs=%u freed=%d",
		 a->cache_entries, a->cache_sets * CACHE_WAYS, a->st.bearer_ok,
		 a->st.bearer_cached, a->st.bearer_refused, a->st.munge_ok,
		 a->st.munge_refused, a->st.munge_unavailable, a->st.ticket_ok,
		 a->st.ticket_refused, a->live_reqs, a->freed);
	return buf;
}

const char *auth_munge_req_debug_str(const struct auth_munge_req *r, char *buf,
				     size_t len)
{
	snprintf(buf, len,
		 "munge-req %s site=%s method=%s path=%s state=%s ready=%d "
		 "rv=%d attached=%d worker=%d age=%" PRIu64 "ms",
		 auth_method_name(r->method), r->site ? r->site : "-",
		 r->req_method ? r->req_method : "POST", r->req_path,
		 req_state_names[r->state], r->ready, r->rv, r->caller_attached,
		 r->worker_owned, loop_clock_ms() - r->started_ms);
	return buf;
}
