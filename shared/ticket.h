/*
 * ticket.h: the gateway-signed job ticket.
 *
 * A ticket is a JWT (shared/jwt_verify.h) by which the gateway says it
 * accepted job `job` for user `sub` at tier `tier`:
 *
 *   iss  "tiergate"          aud  "tiergate-ticket"
 *   sub  user name           tier tier name       job  gateway job id
 *   site site name (optional)
 *   iat, exp                 integers, both required
 *
 * The plugin verifies it with the site's ticket key before granting the
 * tier; the gateway verifies the same token, presented as the Bearer of
 * the plugin's reports, with the same key and checks that `job_id` is the
 * job being reported.  Nothing else is needed for report authentication.
 *
 * Names are checked on both sign and verify: user as jwt_user_name_valid(),
 * tier as tier_name_valid(), job id 1..63 and site 1..31 characters of
 * [A-Za-z0-9_.-] not starting with '.' or '-'.  Values too long for the
 * struct are refused, never truncated.  Unknown extra claims are ignored.
 */
#ifndef TIERGATE_TICKET_H
#define TIERGATE_TICKET_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TICKET_ISSUER "tiergate"
#define TICKET_AUDIENCE "tiergate-ticket"

struct jwt_key;

struct ticket {
	char user[64];
	char tier[32];
	char job_id[64];
	char site[32]; /* "" when the ticket names no site */
	int64_t iat, exp;
};

/*
 * Verify `token` with `key` at `now` and fill *out (zeroed first; left
 * zeroed on failure).  Returns 0, or the negative errno of
 * jwt_verify_token() (-EINVAL for a missing, mistyped or invalid ticket
 * claim) with err saying which check failed (never the token).
 * The caller still has to compare out->user with the job's user
 * (ticket_check_user) and out->job_id with what it expects.
 */
int ticket_verify(const struct jwt_key *key, const char *token, time_t now,
		  struct ticket *out, char *err, size_t errlen);

/*
 * Sign `t` (borrowed) with `key`, which must be able to sign.  t->iat and
 * t->exp must be set (exp > iat >= 0); t->site may be "".  On success
 * *token_out is a malloc'd token the caller frees with free().
 */
int ticket_sign(const struct jwt_key *key, const struct ticket *t,
		char **token_out, char *err, size_t errlen);

/*
 * 0 when the ticket was issued to `user`, else -EACCES with a message
 * naming both users (user names are not secrets).
 */
int ticket_check_user(const struct ticket *t, const char *user, char *err,
		      size_t errlen);

#endif
