/*
 * auth.h: who is calling.  Inbound authentication of API users and of the
 * plugin's reports (docs/api.md "Authentication", docs/protocol.md
 * "Authentication of plugin reports").
 *
 *   Authorization: Bearer <JWT>     users: verified with the configured
 *                                   user key through shared/jwt_verify.c
 *                                   (iss = user_issuer, aud "tiergate-api",
 *                                   user "sub", iat required, lifetime
 *                                   capped), synchronously on the loop; a
 *                                   bounded cache of verified tokens (by
 *                                   SHA-256 of the token) answers repeats
 *                                   until the token's exp.
 *   Authorization: MUNGE <cred>     users on a login node in the gateway's
 *                                   realm: payload "<METHOD> <path>";
 *                                   decoded on a WORKER thread (munge_decode
 *                                   is a blocking round trip to munged),
 *                                   the caller's task woken with
 *                                   TASK_WAKE_WORKER (and/or a callback).
 *   node reports, MUNGE             payload "POST <path>\n<sha256 hex of
 *                                   body>", uid 0, decoded with the SITE's
 *                                   munged (each site its own realm).
 *   node reports, ticket            "Bearer <the job's ticket>": verified
 *                                   with the ticket key (shared/ticket.h).
 *
 * Admin: a bearer token with "admin": true (a JSON boolean; any other type
 * refuses the token), or a user listed in `admins =`.  A MUNGE uid 0 is an
 * admin only if its name ("root") is listed.
 *
 * Nothing here logs a credential: messages say which check failed, never
 * the token or credential text (the logger redacts them as well).
 *
 * Errors: 0 or a negative errno, and a message in err:
 *   -ENOENT       no Authorization header
 *   -EINVAL       malformed header / credential / claim of the wrong type
 *   -E2BIG        token or credential too long
 *   -EACCES       bad signature or alg, wrong iss/aud, payload mismatch,
 *                 another realm, not root, unknown uid, scheme not enabled
 *   -EKEYEXPIRED  token or credential expired
 *   -EKEYREJECTED MUNGE credential replayed
 *   -EHOSTDOWN    munged unreachable       -ETIMEDOUT  munged did not answer
 *   -ENOMEM, -EIO
 * auth_http_error() maps them to the contract's status and code.
 *
 * Loop-thread only, except where a function says otherwise.
 */
#ifndef TIERGATE_GW_AUTH_H
#define TIERGATE_GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "jwt_verify.h"

struct auth;
struct auth_munge_req;
struct gw_config;
struct loop;
struct task;
struct ticket;
struct worker_pool;

/* The audience of user tokens (docs/api.md). */
#define AUTH_AUDIENCE "tiergate-api"
/* Verified tokens remembered (rounded up to a power of two, >= 16). */
#define AUTH_DEFAULT_CACHE 4096
/* A MUNGE decode that takes longer answers -ETIMEDOUT. */
#define AUTH_DEFAULT_MUNGE_TIMEOUT_MS 5000
/* Longest MUNGE credential accepted (a credential for ~200 bytes of
 * payload is ~400 characters). */
#define AUTH_MUNGE_CRED_MAX 4096
/* Longest request path accepted in a MUNGE payload. */
#define AUTH_PATH_MAX 2048
/* auth_request(): the answer will come from a worker. */
#define AUTH_PENDING 1

#define AUTH_METHODS(X)                                                        \
	X(NONE, "none")                                                        \
	X(BEARER, "bearer")	    /* user JWT */                             \
	X(MUNGE, "munge")	    /* user MUNGE credential */                \
	X(TICKET, "ticket")	    /* node report with the job's ticket */    \
	X(NODE_MUNGE, "node-munge") /* node report, MUNGE uid 0 */

enum auth_method {
#define AUTH_METHOD_ENUM_(name, str) AUTH_METHOD_##name,
	AUTH_METHODS(AUTH_METHOD_ENUM_)
#undef AUTH_METHOD_ENUM_
};
const char *auth_method_name(enum auth_method m);

/* Who the caller is. */
struct auth_identity {
	enum auth_method method;
	char user[JWT_USER_MAX + 1]; /* bearer/munge: the user; ticket: sub;
					node-munge: "root" */
	bool admin;
	int64_t exp; /* bearer/ticket: the token's exp; 0 otherwise */
	int64_t uid; /* munge, node-munge: the credential's uid; else -1 */
	int64_t gid; /* munge, node-munge: the credential's gid; else -1 */
	bool cached; /* bearer: answered from the verified-token cache */
};

struct auth_opts {
	unsigned cache_size;	   /* 0: AUTH_DEFAULT_CACHE */
	unsigned munge_timeout_ms; /* 0: AUTH_DEFAULT_MUNGE_TIMEOUT_MS */
};

/*
 * A new authenticator on loop `l`, decoding MUNGE on `workers` (borrowed:
 * must outlive it; NULL disables MUNGE with a clear error).  Takes its own
 * reference on cfg.  0, or -ENOMEM.
 */
int auth_new(struct loop *l, struct worker_pool *workers, struct gw_config *cfg,
	     const struct auth_opts *opts, struct auth **out);
/*
 * Drops the config reference.  MUNGE requests still in flight keep the
 * object alive until their worker returns (their callers must have
 * released them or must still do so).  NULL is fine.
 */
void auth_free(struct auth *a);
/*
 * After a successful reload: take a reference on cfg, drop the old one and
 * forget every cached token (the user key or issuer may have changed).
 * Requests in flight keep what they started with.
 */
void auth_set_config(struct auth *a, struct gw_config *cfg);

/* ------------------------------------------------ the header itself */

enum auth_scheme {
	AUTH_SCHEME_NONE,   /* no header */
	AUTH_SCHEME_BEARER, /* "Bearer <cred>" */
	AUTH_SCHEME_MUNGE,  /* "MUNGE <cred>" */
	AUTH_SCHEME_OTHER,  /* anything else (Basic, garbage) */
};
/*
 * Split an Authorization header value: the scheme (case-insensitive) and
 * *cred pointing into hdr at the credential (non-empty, no blanks in it,
 * trailing blanks ignored: *cred_len gives its length).  A scheme with an
 * empty or blank-separated credential is AUTH_SCHEME_OTHER.
 */
enum auth_scheme auth_parse_header(const char *hdr, const char **cred,
				   size_t *cred_len);

/* --------------------------------------------------- user requests */

/*
 * Verify a bearer token (the credential only, without "Bearer ") at `now`.
 * Cached: a token verified before answers from the cache until its exp
 * (id->cached).  0 with *id filled, or a negative errno (see top).
 */
int auth_bearer(struct auth *a, const char *token, time_t now,
		struct auth_identity *id, char *err, size_t errlen);

typedef void auth_done_fn(struct auth_munge_req *r, void *arg);

/*
 * Start decoding a user's MUNGE credential (`cred`, without "MUNGE ",
 * copied) with the gateway's munge_socket; the payload must be exactly
 * "<method> <path>" (path as received, without the query string).
 * When the answer is ready (decoded, refused or timed out), on the loop
 * thread: cb(req, arg) is called if cb is set, and `task` (if set; a
 * reference is held until auth_munge_release) is woken with
 * TASK_WAKE_WORKER.  Never calls back from inside this function.
 * 0 and *out (release it with auth_munge_release), or a negative errno
 * (nothing started, *out NULL).
 */
int auth_munge_start(struct auth *a, const char *cred, const char *method,
		     const char *path, struct task *task, auth_done_fn *cb,
		     void *arg, struct auth_munge_req **out, char *err,
		     size_t errlen);

/*
 * Start checking a node's report: `cred` made with the munged of `site`
 * (its munge_socket), payload "POST <path>\n<sha256 hex of body>", uid 0.
 * The body is copied (the hash is computed on the worker).  As above.
 */
int auth_node_munge_start(struct auth *a, const char *site, const char *cred,
			  const char *path, const void *body, size_t body_len,
			  struct task *task, auth_done_fn *cb, void *arg,
			  struct auth_munge_req **out, char *err,
			  size_t errlen);

/* True once the answer is there (auth_munge_result will not be pending). */
bool auth_munge_ready(const struct auth_munge_req *r);
/*
 * The answer: 0 with *id filled, AUTH_PENDING while not ready, or a
 * negative errno with err set.  May be called more than once.
 */
int auth_munge_result(const struct auth_munge_req *r, struct auth_identity *id,
		      char *err, size_t errlen);
/*
 * The caller is done with r (read, or no longer interested: client gone,
 * task cancelled).  No callback or wake follows; a decode not started yet
 * is cancelled; one running finishes on its worker and is then freed.
 * NULL is fine.
 */
void auth_munge_release(struct auth_munge_req *r);

/*
 * One call for a request handler: parse the header and either verify a
 * bearer token now (0, *id filled, *req NULL), or start a MUNGE decode
 * (AUTH_PENDING, *req set: wait for the wake/callback, then
 * auth_munge_result and auth_munge_release), or fail (negative errno,
 * -ENOENT without a header).
 */
int auth_request(struct auth *a, const char *authorization, const char *method,
		 const char *path, time_t now, struct task *task,
		 auth_done_fn *cb, void *arg, struct auth_identity *id,
		 struct auth_munge_req **req, char *err, size_t errlen);

/* ------------------------------------------------- node reports */

/*
 * A report carrying "Bearer <ticket>": verify the ticket with the ticket
 * key at `now`; when expect_job is set the ticket's job must be it, when
 * expect_site is set and the ticket names a site it must be it.  0 with
 * *t (optional) and *id (method TICKET, user = the ticket's sub, never
 * admin) filled, or a negative errno.
 */
int auth_ticket(struct auth *a, const char *token, time_t now,
		const char *expect_job, const char *expect_site,
		struct ticket *t, struct auth_identity *id, char *err,
		size_t errlen);

/* ------------------------------------------------------- answers */

/*
 * HTTP status and contract code for an auth error: 401 "unauthorized" for
 * credential problems; 503 "site_unavailable" when munged cannot be
 * reached or does not answer (the client should retry; a node keeps the
 * report in its spool); 500 "internal" otherwise.
 */
void auth_http_error(int rv, int *status, const char **code);

/* -------------------------------------------------------- tokens */

/*
 * A user token from the configured user key (which must be able to sign:
 * an HS256 secret or a private key): iss = user_issuer, aud
 * "tiergate-api", sub = user, iat = now, exp = now + ttl_s, and
 * "admin": true when admin.  ttl_s is 1..max_token_lifetime.  *token is
 * malloc'd (free()).  Any thread.
 */
int auth_mint_token(const struct gw_config *cfg, const char *user, bool admin,
		    int64_t ttl_s, time_t now, char **token, char *err,
		    size_t errlen);

/*
 * `tiergated [-c FILE] mint-token --user U [--admin] [--ttl S]`: argv[0]
 * is "mint-token"; loads config_path, prints the token and a newline to
 * stdout; returns the exit code (0; 1 error; 2 usage).  Default ttl 3600.
 */
int auth_mint_main(const char *config_path, int argc, char **argv);

/* --------------------------------------------------- introspection */

struct auth_stats {
	uint64_t bearer_ok;	/* verified by signature */
	uint64_t bearer_cached; /* answered from the cache */
	uint64_t bearer_refused;
	uint64_t munge_ok;
	uint64_t munge_refused;	    /* bad, replayed, mismatched, other realm */
	uint64_t munge_unavailable; /* munged down or timed out */
	uint64_t ticket_ok;
	uint64_t ticket_refused;
	unsigned cache_entries, cache_capacity;
	unsigned munge_in_flight;
};
void auth_get_stats(const struct auth *a, struct auth_stats *st);
/* "auth cache=12/4096 bearer=ok:5,cached:40,refused:2 munge=... " */
const char *auth_debug_str(const struct auth *a, char *buf, size_t len);
/* "munge-req user method=GET path=/v1/jobs state=RUNNING ready=0 ..." */
const char *auth_munge_req_debug_str(const struct auth_munge_req *r, char *buf,
				     size_t len);

#endif
