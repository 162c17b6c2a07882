/*
 * ticket.c: see ticket.h.  A thin, strict layer on jwt_verify.
 */
#include "ticket.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_util.h"
#include "jwt_verify.h"
#include "tier.h"

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

/* [A-Za-z0-9_.-]{1,max}, not starting with '.' or '-'. */
static bool id_valid(const char *s, size_t max)
{
	size_t n;

	if (!s || !*s || *s == '.' || *s == '-')
		return false;
	for (n = 0; s[n]; n++) {
		char c = s[n];

		if (n >= max)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

static bool user_ok(const char *s)
{
	return jwt_user_name_valid(s);
}

static bool tier_ok(const char *s)
{
	return tier_name_valid(s);
}

static bool job_ok(const char *s)
{
	return id_valid(s, 63);
}

static bool site_ok(const char *s)
{
	return id_valid(s, 31);
}

struct field {
	const char *claim;
	size_t off, size;
	bool required;
	bool (*valid)(const char *s);
	const char *what;
};

#define FIELD(claim, member, req, fn, what)                                    \
	{                                                                      \
		claim, offsetof(struct ticket, member),                        \
		    sizeof(((struct ticket *)0)->member), req, fn, what        \
	}

static const struct field fields[] = {
    FIELD("sub", user, true, user_ok, "user name"),
    FIELD("tier", tier, true, tier_ok, "tier name"),
    FIELD("job", job_id, true, job_ok, "job id"),
    FIELD("site", site, false, site_ok, "site name"),
};

#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

int ticket_verify(const struct jwt_key *key, const char *token, time_t now,
		  struct ticket *out, char *err, size_t errlen)
{
	const struct jwt_expect ex = {
	    .iss = TICKET_ISSUER,
	    .aud = TICKET_AUDIENCE,
	    .user_claim = "sub",
	    .require_iat = true,
	};
	json_t *claims = NULL;
	const char *s;
	size_t i;
	int rv;

	if (!out) {
		set_err(err, errlen, "no ticket to fill");
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	rv = jwt_verify_token(key, token, &ex, now, &claims, err, errlen);
	if (rv)
		return rv;

	for (i = 0; i < N_FIELDS; i++) {
		const struct field *f = &fields[i];

		rv = json_get_str(claims, f->claim, &s);
		if (rv == -ENOENT && !f->required) {
			rv = 0;
			continue;
		}
		if (rv == -ENOENT) {
			set_err(err, errlen, "ticket has no '%s' claim",
				f->claim);
			goto out_invalid;
		}
		if (rv) {
			set_err(err, errlen,
				"ticket claim '%s' is not a string", f->claim);
			goto out_invalid;
		}
		if (strlen(s) >= f->size) {
			set_err(
			    err, errlen,
			    "ticket claim '%s' is longer than %zu characters",
			    f->claim, f->size - 1);
			goto out_invalid;
		}
		if (!f->valid(s)) {
			set_err(err, errlen,
				"ticket claim '%s' is not a valid %s", f->claim,
				f->what);
			goto out_invalid;
		}
		memcpy((char *)out + f->off, s, strlen(s) + 1);
	}
	/* present and typed: jwt_verify_token checked them */
	if (json_get_int(claims, "iat", &out->iat) ||
	    json_get_int(claims, "exp", &out->exp)) {
		set_err(err, errlen, "ticket lacks integer 'iat' and 'exp'");
		goto out_invalid;
	}
	json_decref(claims);
	return 0;

out_invalid:
	rv = -EINVAL;
	json_decref(claims);
	memset(out, 0, sizeof(*out));
	return rv;
}

/* The same checks as ticket_verify, on the signing side. */
static int check_fields(const struct ticket *t, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < N_FIELDS; i++) {
		const struct field *f = &fields[i];
		const char *s = (const char *)t + f->off;

		if (!memchr(s, '\0', f->size)) {
			set_err(err, errlen, "ticket %s is not terminated",
				f->what);
			return -EINVAL;
		}
		if (!*s && !f->required)
			continue;
		if (!f->valid(s)) {
			set_err(err, errlen, "ticket %s '%.*s' is not valid",
				f->what, 64, s);
			return -EINVAL;
		}
	}
	if (t->iat < 0 || t->exp <= t->iat) {
		set_err(err, errlen,
			"ticket needs 0 <= iat < exp (iat %lld, exp %lld)",
			(long long)t->iat, (long long)t->exp);
		return -EINVAL;
	}
	return 0;
}

int ticket_sign(const struct jwt_key *key, const struct ticket *t,
		char **token_out, char *err, size_t errlen)
{
	json_t *claims;
	int rv;

	*token_out = NULL;
	if (!t) {
		set_err(err, errlen, "no ticket");
		return -EINVAL;
	}
	rv = check_fields(t, err, errlen);
	if (rv)
		return rv;
	claims = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss",
			   TICKET_ISSUER, "aud", TICKET_AUDIENCE, "sub",
			   t->user, "tier", t->tier, "job", t->job_id, "iat",
			   (json_int_t)t->iat, "exp", (json_int_t)t->exp);
	if (!claims) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (t->site[0] &&
	    json_object_set_new(claims, "site", json_string(t->site))) {
		set_err(err, errlen, "out of memory");
		rv = -ENOMEM;
		goto out_free_claims;
	}
	rv = jwt_sign_token(key, claims, token_out, err, errlen);
out_free_claims:
	json_decref(claims);
	return rv;
}

int ticket_check_user(const struct ticket *t, const char *user, char *err,
		      size_t errlen)
{
	if (!t || !user || !*user) {
		set_err(err, errlen, "no ticket or no user to compare");
		return -EINVAL;
	}
	if (strcmp(t->user, user)) {
		set_err(err, errlen,
			"ticket was issued to user '%s', not to '%.63s'",
			t->user, user);
		return -EACCES;
	}
	return 0;
}
