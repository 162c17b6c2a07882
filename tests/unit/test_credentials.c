/*
 * test_credentials.c: users' own site tokens (gateway/credentials.c):
 * what a registered token must look like, and the table the gateway
 * keeps them in (replace, remove, the poller's turns, the call's cred).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "config.h"
#include "credentials.h"
#include "site.h"

#define NOW 1800000000

/* An unsigned-looking JWT with these claims (the gateway never verifies
 * a site token's signature: slurmctld does). */
static char *token_with(const char *claims_json)
{
	static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	unsigned char b[2][1024];
	const char *parts[2] = {hdr, claims_json};
	char *out = malloc(4096);
	size_t i, n;

	assert_non_null(out);
	out[0] = '\0';
	for (i = 0; i < 2; i++) {
		int len = EVP_EncodeBlock(b[i], (const unsigned char *)parts[i],
					  (int)strlen(parts[i]));
		/* base64 -> base64url, no padding */
		for (n = 0; n < (size_t)len; n++) {
			if (b[i][n] == '+')
				b[i][n] = '-';
			else if (b[i][n] == '/')
				b[i][n] = '_';
			else if (b[i][n] == '=')
				b[i][n] = '\0';
		}
		b[i][len] = '\0';
		strcat(out, (char *)b[i]);
		strcat(out, ".");
	}
	strcat(out, "c2lnbmF0dXJl");
	return out;
}

static int inspect(const char *text, const char *want, int64_t *exp, char *err,
		   size_t errlen)
{
	char *tok = NULL, user[64];
	int rv = creds_inspect(text, want, NOW, 60, &tok, exp, user,
			       sizeof(user), err, errlen);

	if (!rv) {
		assert_non_null(tok);
		assert_string_equal(user, want);
		assert_null(strchr(tok, '\n'));
		assert_int_equal(strncmp(tok, "SLURM_JWT=", 10) != 0, 1);
	} else {
		assert_null(tok);
	}
	creds_token_free(tok);
	return rv;
}

static void test_inspect(void **state)
{
	char err[300], text[4200], *good, *t;
	int64_t exp = 0;

	(void)state;
	good = token_with("{\"exp\":1800003600,\"iat\":1800000000,"
			  "\"sun\":\"alice\"}");
	assert_int_equal(inspect(good, "alice", &exp, err, sizeof(err)), 0);
	assert_int_equal(exp, 1800003600);
	/* what scontrol prints, with its newline */
	snprintf(text, sizeof(text), "SLURM_JWT=%s\n", good);
	assert_int_equal(inspect(text, "alice", &exp, err, sizeof(err)), 0);
	snprintf(text, sizeof(text), "  %s  ", good);
	assert_int_equal(inspect(text, "alice", &exp, err, sizeof(err)), 0);

	/* another user's token */
	assert_int_equal(inspect(good, "bob", &exp, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "for user 'alice'"));
	assert_non_null(strstr(err, "'bob'"));
	free(good);

	/* "username" instead of "sun" is accepted, as slurmctld does */
	t = token_with("{\"exp\":1800003600,\"username\":\"bob\"}");
	assert_int_equal(inspect(t, "bob", &exp, err, sizeof(err)), 0);
	free(t);

	/* expired, and expiring within the minute */
	t = token_with("{\"exp\":1799999999,\"sun\":\"alice\"}");
	assert_int_equal(inspect(t, "alice", &exp, err, sizeof(err)),
			 -EKEYEXPIRED);
	assert_non_null(strstr(err, "expired"));
	free(t);
	t = token_with("{\"exp\":1800000030,\"sun\":\"alice\"}");
	assert_int_equal(inspect(t, "alice", &exp, err, sizeof(err)),
			 -EKEYEXPIRED);
	assert_non_null(strstr(err, "scontrol token lifespan="));
	free(t);

	/* claims missing or mistyped */
	t = token_with("{\"sun\":\"alice\"}");
	assert_int_equal(inspect(t, "alice", &exp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "exp"));
	free(t);
	t = token_with("{\"exp\":\"soon\",\"sun\":\"alice\"}");
	assert_int_equal(inspect(t, "alice", &exp, err, sizeof(err)), -EINVAL);
	free(t);
	t = token_with("{\"exp\":1800003600,\"sun\":7}");
	assert_int_equal(inspect(t, "alice", &exp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sun"));
	free(t);

	/* not a JWT at all */
	assert_int_equal(
	    inspect("not a token", "alice", &exp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "scontrol token"));
	assert_int_equal(inspect("", "alice", &exp, err, sizeof(err)), -EINVAL);
	assert_int_equal(inspect("a.b", "alice", &exp, err, sizeof(err)),
			 -EINVAL);

	/* oversized */
	t = malloc(CRED_TOKEN_MAX + 100);
	assert_non_null(t);
	memset(t, 'a', CRED_TOKEN_MAX + 99);
	t[CRED_TOKEN_MAX + 99] = '\0';
	assert_int_equal(inspect(t, "alice", &exp, err, sizeof(err)), -E2BIG);
	free(t);
}

static void test_table(void **state)
{
	struct cred_table *t = creds_new();
	struct gw_site_config user_site = {.name = (char *)"alpha",
					   .auth = GW_SITE_AUTH_JWT_USER};
	struct gw_site_config key_site = {.name = (char *)"beta",
					  .auth = GW_SITE_AUTH_JWT_KEY};
	struct gw_site_config munge_site = {.name = (char *)"gamma",
					    .auth = GW_SITE_AUTH_MUNGE,
					    .poll_user = (char *)"slurm"};
	const struct gw_cred *c;
	struct site_cred sc;

	(void)state;
	assert_non_null(t);
	/* nothing registered: no token, and the poller waits */
	creds_site_cred(t, &user_site, "alice", "asmith", &sc);
	assert_string_equal(sc.user, "asmith");
	assert_null(sc.token);
	assert_false(creds_poll_cred(t, &user_site, NOW, 0, &sc));

	assert_int_equal(
	    creds_set(t, "alpha", "alice", "asmith", "tok-a1", NOW + 100, NOW),
	    0);
	assert_int_equal(
	    creds_set(t, "alpha", "bob", "bjones", "tok-b", NOW + 900, NOW), 0);
	assert_int_equal(creds_set(t, "alpha", "alice", "asmith", "tok-a2",
				   NOW + 500, NOW + 1),
			 0); /* replaces */
	assert_int_equal(creds_count(t), 2);
	c = creds_find(t, "alpha", "alice");
	assert_non_null(c);
	assert_string_equal(c->token, "tok-a2");
	assert_int_equal(c->expires_at, NOW + 500);
	assert_null(creds_find(t, "beta", "alice"));

	creds_site_cred(t, &user_site, "alice", "asmith", &sc);
	assert_string_equal(sc.token, "tok-a2");
	/* jwt-key and munge sites never send a user's token */
	creds_site_cred(t, &key_site, "alice", "alice", &sc);
	assert_null(sc.token);
	assert_true(creds_poll_cred(t, &key_site, NOW, 0, &sc));
	assert_string_equal(sc.user, "root");
	assert_true(creds_poll_cred(t, &munge_site, NOW, 0, &sc));
	assert_string_equal(sc.user, "slurm");
	assert_null(sc.token);

	/* the poller lists with each user's token in turn, as that user */
	assert_true(creds_poll_cred(t, &user_site, NOW, 0, &sc));
	assert_string_equal(sc.user, "asmith");
	assert_string_equal(sc.token, "tok-a2");
	assert_true(creds_poll_cred(t, &user_site, NOW, 1, &sc));
	assert_string_equal(sc.user, "bjones");
	assert_string_equal(sc.token, "tok-b");
	assert_true(creds_poll_cred(t, &user_site, NOW, 2, &sc));
	assert_string_equal(sc.user, "asmith");
	/* an expired one is never picked */
	assert_true(creds_poll_cred(t, &user_site, NOW + 600, 0, &sc));
	assert_string_equal(sc.user, "bjones");
	assert_true(creds_poll_cred(t, &user_site, NOW + 600, 1, &sc));
	assert_string_equal(sc.user, "bjones");
	assert_false(creds_poll_cred(t, &user_site, NOW + 901, 0, &sc));

	assert_int_equal(creds_remove(t, "alpha", "bob"), 0);
	assert_int_equal(creds_remove(t, "alpha", "bob"), -ENOENT);
	assert_true(creds_poll_cred(t, &user_site, NOW, 1, &sc));
	assert_string_equal(sc.user, "asmith");
	assert_int_equal(creds_set(t, "alpha", NULL, "x", "y", 1, 1), -EINVAL);
	creds_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_inspect),
	    cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
