/*
 * test_ticket.c: gateway tickets signed and verified (ES256, HS256), every
 * bad ticket refused, and a ticket of alice never passing as bob's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_verify.h"
#include "testkeys.h"
#include "ticket.h"

#define NOW ((time_t)1700000000)
#define HS_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const char secret[] = "tiergate-ticket-secret-for-tests-only-0123";

static struct {
	char *ec_priv_pem, *ec_pub_pem, *other_pem, *other_pub_pem;
	struct jwt_key *hs, *ec_priv, *ec_pub, *other;
} K;

static struct jwt_key *load(const char *data, const char *alg)
{
	struct jwt_key *k = NULL;
	char err[256];

	if (jwt_key_load_mem(data, strlen(data), alg, &k, err, sizeof(err)))
		print_message("load: %s\n", err);
	assert_non_null(k);
	return k;
}

static int group_setup(void **state)
{
	(void)state;
	tk_keypair("EC", "P-256", 0, false, &K.ec_priv_pem, &K.ec_pub_pem);
	tk_keypair("EC", "P-256", 0, true, &K.other_pem, &K.other_pub_pem);
	K.hs = load(secret, "HS256");
	K.ec_priv = load(K.ec_priv_pem, "ES256");
	K.ec_pub = load(K.ec_pub_pem, "ES256");
	K.other = load(K.other_pem, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	jwt_key_free(K.hs);
	jwt_key_free(K.ec_priv);
	jwt_key_free(K.ec_pub);
	jwt_key_free(K.other);
	free(K.ec_priv_pem);
	free(K.ec_pub_pem);
	free(K.other_pem);
	free(K.other_pub_pem);
	return 0;
}

static struct ticket alice_ticket(void)
{
	struct ticket t = {
	    .user = "alice",
	    .tier = "premium",
	    .job_id = "gw-000123",
	    .site = "alpha",
	    .iat = NOW - 60,
	    .exp = NOW + 86400,
	};

	return t;
}

static char *sign_ok(const struct jwt_key *k, const struct ticket *t)
{
	char err[256] = "", *tok = NULL;
	int rv = ticket_sign(k, t, &tok, err, sizeof(err));

	if (rv)
		print_message("sign: %s\n", err);
	assert_int_equal(rv, 0);
	assert_non_null(tok);
	return tok;
}

static void verify_ok(const struct jwt_key *k, const char *tok,
		      struct ticket *out)
{
	char err[256] = "";
	int rv = ticket_verify(k, tok, NOW, out, err, sizeof(err));

	if (rv)
		print_message("verify: %s\n", err);
	assert_int_equal(rv, 0);
}

static void assert_zeroed(const struct ticket *t)
{
	static const struct ticket zero;

	assert_memory_equal(t, &zero, sizeof(zero));
}

static void refused(const struct jwt_key *k, const char *tok, int want_rv,
		    const char *want_msg)
{
	struct ticket out;
	char err[256] = "";
	int rv;

	memset(&out, 0x5a, sizeof(out));
	rv = ticket_verify(k, tok, NOW, &out, err, sizeof(err));
	if (rv != want_rv || !strstr(err, want_msg))
		print_message("got rv %d err '%s', wanted %d '%s'\n", rv, err,
			      want_rv, want_msg);
	assert_int_equal(rv, want_rv);
	assert_non_null(strstr(err, want_msg));
	assert_zeroed(&out);
	/* never the token, nor its signature */
	if (*tok)
		assert_null(strstr(err, tok));
	if (strrchr(tok, '.') && strlen(strrchr(tok, '.')) > 10)
		assert_null(strstr(err, strrchr(tok, '.') + 1));
}

static void test_roundtrip_es256(void **state)
{
	struct ticket t = alice_ticket(), out;
	char *tok;

	(void)state;
	tok = sign_ok(K.ec_priv, &t);
	/* the plugin holds only the public key */
	verify_ok(K.ec_pub, tok, &out);
	assert_memory_equal(&out, &t, sizeof(t));
	assert_string_equal(out.user, "alice");
	assert_string_equal(out.tier, "premium");
	assert_string_equal(out.job_id, "gw-000123");
	assert_string_equal(out.site, "alpha");
	assert_int_equal(out.iat, NOW - 60);
	assert_int_equal(out.exp, NOW + 86400);
	/*
	 * The gateway authenticates the plugin's reports by the same ticket
	 * (Bearer) with its own signing key, then compares the job id.
	 */
	verify_ok(K.ec_priv, tok, &out);
	assert_string_equal(out.job_id, "gw-000123");
	free(tok);

	/* no site */
	memset(t.site, 0, sizeof(t.site));
	tok = sign_ok(K.ec_priv, &t);
	verify_ok(K.ec_pub, tok, &out);
	assert_string_equal(out.site, "");
	assert_memory_equal(&out, &t, sizeof(t));
	free(tok);
}

static void test_roundtrip_hs256(void **state)
{
	struct ticket t = alice_ticket(), out;
	char *tok;

	(void)state;
	strcpy(t.user, "john.doe@lab");
	strcpy(t.tier, "gpu_2-x");
	strcpy(t.job_id, "550e8400-e29b-41d4-a716-446655440000");
	strcpy(t.site, "Site_B.2");
	tok = sign_ok(K.hs, &t);
	verify_ok(K.hs, tok, &out);
	assert_memory_equal(&out, &t, sizeof(t));
	free(tok);
}

static void test_alice_never_bob(void **state)
{
	struct ticket t = alice_ticket(), out;
	char err[256], *tok, *forged, *payload;

	(void)state;
	tok = sign_ok(K.ec_priv, &t);
	verify_ok(K.ec_pub, tok, &out);
	assert_int_equal(ticket_check_user(&out, "alice", err, sizeof(err)), 0);
	assert_int_equal(ticket_check_user(&out, "bob", err, sizeof(err)),
			 -EACCES);
	assert_string_equal(err,
			    "ticket was issued to user 'alice', not to 'bob'");
	assert_int_equal(ticket_check_user(&out, "Alice", err, sizeof(err)),
			 -EACCES);
	assert_int_equal(ticket_check_user(&out, "alic", err, sizeof(err)),
			 -EACCES);
	assert_int_equal(ticket_check_user(&out, "alice2", err, sizeof(err)),
			 -EACCES);
	assert_int_equal(ticket_check_user(&out, "", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ticket_check_user(&out, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ticket_check_user(NULL, "alice", err, sizeof(err)),
			 -EINVAL);

	/* rewriting sub to bob under alice's signature does not verify */
	payload = malloc(512);
	assert_non_null(payload);
	snprintf(
	    payload, 512,
	    "{\"aud\":\"tiergate-ticket\",\"exp\":%lld,\"iat\":%lld,"
	    "\"iss\":\"tiergate\",\"job\":\"gw-000123\",\"site\":\"alpha\","
	    "\"sub\":\"bob\",\"tier\":\"premium\"}",
	    (long long)t.exp, (long long)t.iat);
	forged = tk_raw_token("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload,
			      strrchr(tok, '.') + 1);
	refused(K.ec_pub, forged, -EACCES, "signature verification failed");
	free(forged);
	free(payload);
	free(tok);
}

static void test_wrong_key_or_alg(void **state)
{
	struct ticket t = alice_ticket();
	char *tok;

	(void)state;
	tok = sign_ok(K.other, &t);
	refused(K.ec_pub, tok, -EACCES, "signature verification failed");
	refused(K.hs, tok, -EACCES,
		"token alg 'ES256' does not match the key's alg 'HS256'");
	free(tok);
	tok = sign_ok(K.hs, &t);
	refused(K.ec_pub, tok, -EACCES, "'HS256' does not match");
	free(tok);
	/* HS256 with the plugin's public key bytes as the secret */
	tok = tk_hs256_token(
	    K.ec_pub_pem, strlen(K.ec_pub_pem), HS_HDR,
	    "{\"iss\":\"tiergate\",\"aud\":\"tiergate-ticket\","
	    "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
	    "\"iat\":1699999000,\"exp\":1800000000}");
	refused(K.ec_pub, tok, -EACCES, "'HS256' does not match");
	free(tok);
	refused(K.ec_pub, "not-a-ticket", -EINVAL, "3 needed");
	refused(K.ec_pub, "", -EINVAL, "token is empty");
}

/* Claims around a valid base, one thing changed per case. */
struct bad_claims {
	const char *payload;
	int rv;
	const char *msg;
};

#define I "\"iss\":\"tiergate\","
#define A "\"aud\":\"tiergate-ticket\","
#define T "\"iat\":1699999000,\"exp\":1800000000"
static const struct bad_claims bad[] = {
    {"{\"iss\":\"gateway\"," A "\"sub\":\"alice\",\"tier\":\"premium\","
     "\"job\":\"1\"," T "}",
     -EACCES, "token issuer is not 'tiergate'"},
    {"{" A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\"," T "}",
     -EINVAL, "token has no 'iss' claim"},
    {"{" I "\"aud\":\"tiergate-user\",\"sub\":\"alice\","
     "\"tier\":\"premium\",\"job\":\"1\"," T "}",
     -EACCES, "token audience does not include 'tiergate-ticket'"},
    {"{" I A "\"tier\":\"premium\",\"job\":\"1\"," T "}", -EINVAL,
     "token has no 'sub' claim"},
    {"{" I A "\"sub\":7,\"tier\":\"premium\",\"job\":\"1\"," T "}", -EINVAL,
     "claim 'sub' is not a string"},
    {"{" I A "\"sub\":\"\",\"tier\":\"premium\",\"job\":\"1\"," T "}", -EINVAL,
     "claim 'sub' is empty"},
    {"{" I A "\"sub\":\"al/ice\",\"tier\":\"premium\",\"job\":\"1\"," T "}",
     -EINVAL, "claim 'sub' is not a valid user name"},
    {"{" I A "\"sub\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
     "\"tier\":\"premium\",\"job\":\"1\"," T "}",
     -EINVAL, "claim 'sub' is not a valid user name"},
    {"{" I A "\"sub\":\"alice\",\"job\":\"1\"," T "}", -EINVAL,
     "ticket has no 'tier' claim"},
    {"{" I A "\"sub\":\"alice\",\"tier\":[\"premium\"],\"job\":\"1\"," T "}",
     -EINVAL, "ticket claim 'tier' is not a string"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"Premium\",\"job\":\"1\"," T "}",
     -EINVAL, "ticket claim 'tier' is not a valid tier name"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"\",\"job\":\"1\"," T "}", -EINVAL,
     "ticket claim 'tier' is not a valid tier name"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"pppppppppppppppppppppppppppppppp\","
     "\"job\":\"1\"," T "}",
     -EINVAL, "ticket claim 'tier' is longer than 31 characters"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\"," T "}", -EINVAL,
     "ticket has no 'job' claim"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":123," T "}",
     -EINVAL, "ticket claim 'job' is not a string"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1;reboot\"," T
     "}",
     -EINVAL, "ticket claim 'job' is not a valid job id"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"-1\"," T "}",
     -EINVAL, "ticket claim 'job' is not a valid job id"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\","
     "\"job\":"
     "\"jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj\"," T
     "}",
     -EINVAL, "ticket claim 'job' is longer than 63 characters"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"site\":false," T "}",
     -EINVAL, "ticket claim 'site' is not a string"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"site\":\"../etc\"," T "}",
     -EINVAL, "ticket claim 'site' is not a valid site name"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"site\":\"ssssssssssssssssssssssssssssssss\"," T "}",
     -EINVAL, "ticket claim 'site' is longer than 31 characters"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"exp\":1800000000}",
     -EINVAL, "token has no 'iat' claim"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"iat\":1699999000}",
     -EINVAL, "token has no 'exp' claim"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"iat\":1699999000,\"exp\":\"1800000000\"}",
     -EINVAL, "claim 'exp' is not an integer"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"iat\":1699990000,\"exp\":1699999000}",
     -EKEYEXPIRED, "token expired 1000 s ago"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"iat\":1700009000,\"exp\":1800000000}",
     -EACCES, "issued 9000 s in the future"},
    {"{" I A "\"sub\":\"alice\",\"tier\":\"premium\",\"job\":\"1\","
     "\"nbf\":1700009000," T "}",
     -EACCES, "not valid before"},
};
#undef I
#undef A
#undef T

static void test_bad_tickets(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *tok = tk_hs256_token(secret, strlen(secret), HS_HDR,
					   bad[i].payload);

		refused(K.hs, tok, bad[i].rv, bad[i].msg);
		free(tok);
	}
}

static void test_sign_refusals(void **state)
{
	struct ticket t;
	char err[256], *tok = (char *)&tok;

	(void)state;
	t = alice_ticket();
	assert_int_equal(ticket_sign(K.ec_pub, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_null(tok);
	assert_non_null(strstr(err, "public key only"));

	t = alice_ticket();
	strcpy(t.user, "bad user");
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "ticket user name 'bad user' is not valid");

	t = alice_ticket();
	t.user[0] = '\0';
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	t = alice_ticket();
	strcpy(t.tier, "Gold");
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "tier name"));
	t = alice_ticket();
	t.job_id[0] = '\0';
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "job id"));
	t = alice_ticket();
	strcpy(t.site, "a b");
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	t = alice_ticket();
	memset(t.job_id, 'j', sizeof(t.job_id)); /* not terminated */
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "not terminated"));
	t = alice_ticket();
	t.exp = t.iat;
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "0 <= iat < exp"));
	t = alice_ticket();
	t.iat = -1;
	assert_int_equal(ticket_sign(K.hs, &t, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ticket_sign(K.hs, NULL, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_null(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_es256),
	    cmocka_unit_test(test_roundtrip_hs256),
	    cmocka_unit_test(test_alice_never_bob),
	    cmocka_unit_test(test_wrong_key_or_alg),
	    cmocka_unit_test(test_bad_tickets),
	    cmocka_unit_test(test_sign_refusals),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
