/*
 * credentials.h: users' own Slurm tokens for `auth = jwt-user` sites.
 *
 * A user registers the token `scontrol token` gave them at a site
 * (PUT /v1/sites/{site}/credential).  The gateway cannot verify it (the
 * site's key is not ours): it reads the token's user and expiry, checks
 * them against the user's mapped site account, stores it durably
 * (store.h, table site_credentials) and keeps it here in memory for the
 * site calls made for that user.  Tokens are secrets: wiped when
 * replaced, never logged, never returned by the API.
 *
 * Loop thread only.
 */
#ifndef TIERGATE_CREDENTIALS_H
#define TIERGATE_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cred_table;
struct store;
struct loop;

/* A registered token: site + gateway user are the key. */
struct gw_cred {
	char site[32];
	char user[64];	    /* the gateway user */
	char site_user[64]; /* the token's user at the site */
	char *token;
	int64_t expires_at;    /* the token's exp */
	int64_t registered_at; /* unix seconds */
};

/* The longest token accepted (a Slurm token is about 200 bytes). */
#define CRED_TOKEN_MAX 8192

struct cred_table *creds_new(void);
void creds_free(struct cred_table *t);

/*
 * Start-up, before the daemon serves: read every stored credential (runs
 * the loop until the store answered).  0 or the store's error.
 */
int creds_load(struct cred_table *t, struct store *st, struct loop *l);

/* The credential of (site, gateway user), or NULL. */
const struct gw_cred *creds_find(const struct cred_table *t, const char *site,
				 const char *user);
/*
 * Add or replace (the old token is wiped).  The caller stored it
 * durably first.  0 or -ENOMEM / -EINVAL.
 */
int creds_set(struct cred_table *t, const char *site, const char *user,
	      const char *site_user, const char *token, int64_t expires_at,
	      int64_t registered_at);
/* 0, or -ENOENT. */
int creds_remove(struct cred_table *t, const char *site, const char *user);
size_t creds_count(const struct cred_table *t);

struct gw_site_config;
struct site_cred;
/*
 * Who a call for gateway user `user` (site account `site_user`) runs as
 * at the site: jwt-key and munge need no token (minted / the socket
 * says), jwt-user the user's registered one.  A jwt-user site without
 * one gives a cred without token: the adapter refuses the call with
 * "no registered token".  `out` borrows from t until it next changes.
 */
void creds_site_cred(const struct cred_table *t,
		     const struct gw_site_config *sc, const char *user,
		     const char *site_user, struct site_cred *out);
/*
 * Who lists a site's jobs for the poller: jwt-key "root" (the SlurmUser
 * of the test sites; minted), munge its poll_user, jwt-user one of the
 * registered tokens still valid, turn by turn (poll number `turn`), so
 * that each user's jobs are listed with their own token in their turn.
 * false: nobody can yet (no valid token registered).
 */
bool creds_poll_cred(const struct cred_table *t,
		     const struct gw_site_config *sc, int64_t now,
		     uint64_t turn, struct site_cred *out);

/*
 * Read a user's token without verifying it: accepts "SLURM_JWT=<token>"
 * (what scontrol prints) and surrounding white space.  On success 0,
 * *token_out points into a malloc'ed copy of the bare token (free with
 * creds_token_free), *exp_out and user_out (its "sun" or "username"
 * claim) are filled.  Errors, with a message for the user in err:
 *   -EINVAL      not a JWT, or no exp / user claim of the right type
 *   -E2BIG       longer than CRED_TOKEN_MAX
 *   -EACCES      the token is for another user than `want_user`
 *   -EKEYEXPIRED expired at or before now + min_valid_s
 */
int creds_inspect(const char *text, const char *want_user, int64_t now,
		  int64_t min_valid_s, char **token_out, int64_t *exp_out,
		  char *user_out, size_t user_len, char *err, size_t errlen);
/* Wipe and free a token from creds_inspect.  NULL ignored. */
void creds_token_free(char *token);

/* "creds n=3" (never a token).  Returns buf. */
const char *creds_debug_str(const struct cred_table *t, char *buf, size_t len);

#endif
