/*
 * test_jwt_verify.c: the libjwt 1.10 wrapper and every bad-token case of
 * DESIGN.md.  Keys are generated at run time (testkeys.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "jwt_verify.h"
#include "testkeys.h"

#define NOW ((time_t)1700000000)
#define HS_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const char secret[] = "0123456789abcdef0123456789abcdef-test-only";

static struct {
	char dir[64];
	char *ec_priv_pem, *ec_pub_pem, *rsa_priv_pem, *rsa_pub_pem;
	struct jwt_key *hs, *ec_priv, *ec_pub, *rsa_priv, *rsa_pub;
} K;

static struct jwt_key *load(const char *pem, const char *alg)
{
	struct jwt_key *k = NULL;
	char err[256];
	int rv = jwt_key_load_mem(pem, strlen(pem), alg, &k, err, sizeof(err));

	if (rv)
		print_message("load: %s\n", err);
	assert_int_equal(rv, 0);
	return k;
}

static int group_setup(void **state)
{
	(void)state;
	strcpy(K.dir, "/tmp/tg-test-jwt-XXXXXX");
	if (!mkdtemp(K.dir))
		return -1;
	tk_keypair("EC", "P-256", 0, false, &K.ec_priv_pem, &K.ec_pub_pem);
	tk_keypair("RSA", NULL, 2048, false, &K.rsa_priv_pem, &K.rsa_pub_pem);
	K.hs = load(secret, "HS256");
	K.ec_priv = load(K.ec_priv_pem, NULL);
	K.ec_pub = load(K.ec_pub_pem, NULL);
	K.rsa_priv = load(K.rsa_priv_pem, NULL);
	K.rsa_pub = load(K.rsa_pub_pem, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	jwt_key_free(K.hs);
	jwt_key_free(K.ec_priv);
	jwt_key_free(K.ec_pub);
	jwt_key_free(K.rsa_priv);
	jwt_key_free(K.rsa_pub);
	free(K.ec_priv_pem);
	free(K.ec_pub_pem);
	free(K.rsa_priv_pem);
	free(K.rsa_pub_pem);
	return rm_rf(K.dir);
}

/* The error never quotes the token (nor a long piece of it). */
static void assert_no_token_in(const char *err, const char *tok)
{
	const char *p = tok;

	if (!tok || !*tok)
		return;
	assert_null(strstr(err, tok));
	while (p && *p) {
		char win[13];

		if (strlen(p) >= 12) {
			memcpy(win, p, 12);
			win[12] = '\0';
			if (!strchr(win, '.'))
				assert_null(strstr(err, win));
		}
		p = strchr(p, '.');
		if (p)
			p++;
	}
}

static void refused(const struct jwt_key *k, const char *tok,
		    const struct jwt_expect *ex, int want_rv,
		    const char *want_msg)
{
	json_t *claims = (json_t *)&claims; /* must come back NULL */
	char err[256] = "";
	int rv;

	rv = jwt_verify_token(k, tok, ex, NOW, &claims, err, sizeof(err));
	if (rv != want_rv || !strstr(err, want_msg))
		print_message("got rv %d err '%s', wanted %d '%s'\n", rv, err,
			      want_rv, want_msg);
	assert_int_equal(rv, want_rv);
	assert_null(claims);
	assert_non_null(strstr(err, want_msg));
	assert_no_token_in(err, tok);
}

static json_t *accepted(const struct jwt_key *k, const char *tok,
			const struct jwt_expect *ex)
{
	json_t *claims = NULL;
	char err[256] = "";
	int rv;

	rv = jwt_verify_token(k, tok, ex, NOW, &claims, err, sizeof(err));
	if (rv)
		print_message("refused: %s\n", err);
	assert_int_equal(rv, 0);
	assert_true(json_is_object(claims));
	return claims;
}

/* An HS256 token over `payload`, correctly signed with K.hs's secret. */
static char *hs(const char *payload)
{
	return tk_hs256_token(secret, strlen(secret), HS_HDR, payload);
}

static char *sign(const struct jwt_key *k, json_t *claims)
{
	char err[256] = "", *tok = NULL;
	int rv = jwt_sign_token(k, claims, &tok, err, sizeof(err));

	if (rv)
		print_message("sign: %s\n", err);
	assert_int_equal(rv, 0);
	json_decref(claims);
	return tok;
}

static json_t *std_claims(void)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", "tiergate", "aud",
			 "tiergate-ticket", "sub", "alice", "iat",
			 (json_int_t)NOW - 10, "exp", (json_int_t)NOW + 3600);
}

static const struct jwt_expect std_expect = {
    .iss = "tiergate",
    .aud = "tiergate-ticket",
    .user_claim = "sub",
};

/* ---- keys ---- */

static void test_key_refuses_null_empty_short(void **state)
{
	struct jwt_key *k = (struct jwt_key *)&k;
	char err[256];

	(void)state;
	assert_int_equal(
	    jwt_key_load_mem(NULL, 0, "HS256", &k, err, sizeof(err)), -EINVAL);
	assert_null(k);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(jwt_key_load_mem("", 0, NULL, &k, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(
	    jwt_key_load_mem(secret, 31, "HS256", &k, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "31 bytes, at least 32"));
	assert_null(strstr(err, "0123456789")); /* no key bytes */
	/* NULL alg: non-PEM data is an HS256 secret, still >= 32 bytes */
	assert_int_equal(
	    jwt_key_load_mem("short", 5, NULL, &k, err, sizeof(err)), -EINVAL);
	assert_int_equal(
	    jwt_key_load_mem(secret, 32, NULL, &k, err, sizeof(err)), 0);
	assert_string_equal(jwt_key_alg(k), "HS256");
	assert_true(jwt_key_can_sign(k));
	jwt_key_free(k);
	jwt_key_free(NULL);
}

static void test_key_refuses_bad_alg_and_kinds(void **state)
{
	static const char junk_pem[] = "-----BEGIN PUBLIC KEY-----\nxx\n"
				       "-----END PUBLIC KEY-----\n";
	struct jwt_key *k = NULL;
	char err[256], *p384, *p384pub, *rsa1k, *rsa1kpub, *enc;

	(void)state;
	assert_int_equal(jwt_key_load_mem(secret, strlen(secret), "none", &k,
					  err, sizeof(err)),
			 -ENOTSUP);
	assert_int_equal(jwt_key_load_mem(secret, strlen(secret), "HS512", &k,
					  err, sizeof(err)),
			 -ENOTSUP);
	assert_non_null(strstr(err, "HS256, RS256, ES256"));
	/* a public key used as an HMAC secret is the alg-confusion attack */
	assert_int_equal(jwt_key_load_mem(K.rsa_pub_pem, strlen(K.rsa_pub_pem),
					  "HS256", &k, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "looks like a PEM key"));
	/* family mismatch */
	assert_int_equal(jwt_key_load_mem(K.ec_pub_pem, strlen(K.ec_pub_pem),
					  "RS256", &k, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "EC P-256 key cannot be used for RS256"));
	assert_int_equal(jwt_key_load_mem(K.rsa_priv_pem,
					  strlen(K.rsa_priv_pem), "ES256", &k,
					  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "RSA key cannot be used for ES256"));
	assert_int_equal(jwt_key_load_mem(secret, strlen(secret), "ES256", &k,
					  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "not in PEM format"));
	/* wrong curve, small RSA */
	tk_keypair("EC", "P-384", 0, false, &p384, &p384pub);
	assert_int_equal(
	    jwt_key_load_mem(p384, strlen(p384), NULL, &k, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "ES256 needs P-256"));
	tk_keypair("RSA", NULL, 1024, false, &rsa1k, &rsa1kpub);
	assert_int_equal(jwt_key_load_mem(rsa1kpub, strlen(rsa1kpub), NULL, &k,
					  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "1024 bits, at least 2048"));
	/* garbage PEM, encrypted PEM (must not prompt) */
	assert_int_equal(jwt_key_load_mem(junk_pem, strlen(junk_pem), NULL, &k,
					  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no usable PEM"));
	enc = tk_encrypted_ec();
	assert_int_equal(
	    jwt_key_load_mem(enc, strlen(enc), "ES256", &k, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "encrypted keys are not supported"));
	assert_null(k);
	free(p384);
	free(p384pub);
	free(rsa1k);
	free(rsa1kpub);
	free(enc);
}

static void test_key_detect_and_files(void **state)
{
	struct jwt_key *k = NULL;
	char err[512], *sec1, *sec1pub, *path;
	char big[JWT_KEY_MAX_BYTES + 2];

	(void)state;
	assert_string_equal(jwt_key_alg(K.ec_priv), "ES256");
	assert_string_equal(jwt_key_alg(K.ec_pub), "ES256");
	assert_string_equal(jwt_key_alg(K.rsa_priv), "RS256");
	assert_string_equal(jwt_key_alg(K.rsa_pub), "RS256");
	assert_true(jwt_key_can_sign(K.ec_priv));
	assert_false(jwt_key_can_sign(K.ec_pub));
	assert_true(jwt_key_can_sign(K.rsa_priv));
	assert_false(jwt_key_can_sign(K.rsa_pub));

	/* traditional "EC PRIVATE KEY" from a file */
	tk_keypair("EC", "P-256", 0, true, &sec1, &sec1pub);
	assert_non_null(strstr(sec1, "BEGIN EC PRIVATE KEY"));
	path = tk_write_file(K.dir, "ec.pem", sec1, strlen(sec1));
	assert_int_equal(jwt_key_load_file(path, "ES256", &k, err, sizeof(err)),
			 0);
	assert_true(jwt_key_can_sign(k));
	jwt_key_free(k);
	free(path);

	/* HS256 secret file: bytes as they are */
	path = tk_write_file(K.dir, "hs.key", secret, strlen(secret));
	assert_int_equal(jwt_key_load_file(path, NULL, &k, err, sizeof(err)),
			 0);
	assert_string_equal(jwt_key_alg(k), "HS256");
	jwt_key_free(k);
	free(path);

	/* short secret file: message names the file */
	path = tk_write_file(K.dir, "short.key", "abc\n", 4);
	assert_int_equal(jwt_key_load_file(path, "HS256", &k, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "short.key: HS256 secret is 4 bytes"));
	free(path);
	path = tk_write_file(K.dir, "empty.key", "", 0);
	assert_int_equal(jwt_key_load_file(path, "HS256", &k, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "empty.key: key is empty"));
	free(path);
	memset(big, 'x', sizeof(big));
	path = tk_write_file(K.dir, "big.key", big, sizeof(big));
	assert_int_equal(jwt_key_load_file(path, "HS256", &k, err, sizeof(err)),
			 -EFBIG);
	free(path);
	assert_int_equal(jwt_key_load_file("/nonexistent/tg.key", NULL, &k, err,
					   sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/tg.key: cannot open"));
	assert_int_equal(jwt_key_load_file(K.dir, NULL, &k, err, sizeof(err)),
			 -EINVAL);
	assert_null(k);
	free(sec1);
	free(sec1pub);
}

/* ---- round trips ---- */

static void test_roundtrip_all_algs(void **state)
{
	struct {
		struct jwt_key *signer, *verifier;
		const char *alg;
	} cases[] = {
	    {K.hs, K.hs, "HS256"},
	    {K.ec_priv, K.ec_pub, "ES256"},
	    {K.ec_priv, K.ec_priv, "ES256"}, /* private verifies too */
	    {K.rsa_priv, K.rsa_pub, "RS256"},
	    {K.rsa_priv, K.rsa_priv, "RS256"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *tok = sign(cases[i].signer, std_claims());
		json_t *c = accepted(cases[i].verifier, tok, &std_expect);
		char *hdr;

		assert_string_equal(
		    json_string_value(json_object_get(c, "sub")), "alice");
		assert_int_equal(json_integer_value(json_object_get(c, "exp")),
				 NOW + 3600);
		/* the header says what the key says */
		hdr = tk_b64url("{\"alg\":\"", 8);
		assert_int_equal(strncmp(tok, hdr, strlen(hdr) - 1), 0);
		free(hdr);
		json_decref(c);
		/* claims_out may be NULL */
		assert_int_equal(jwt_verify_token(cases[i].verifier, tok,
						  &std_expect, NOW, NULL, NULL,
						  0),
				 0);
		free(tok);
	}
}

static void test_sign_refusals(void **state)
{
	char err[256], *tok = (char *)&tok;
	json_t *c;

	(void)state;
	c = std_claims();
	assert_int_equal(jwt_sign_token(K.ec_pub, c, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_null(tok);
	assert_non_null(strstr(err, "public key only"));
	assert_int_equal(jwt_sign_token(NULL, c, &tok, err, sizeof(err)),
			 -EINVAL);
	json_object_del(c, "exp");
	assert_int_equal(jwt_sign_token(K.hs, c, &tok, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "integer 'exp'"));
	json_decref(c);
	c = json_array();
	assert_int_equal(jwt_sign_token(K.hs, c, &tok, err, sizeof(err)),
			 -EINVAL);
	json_decref(c);
	/* a token we could not verify is never minted */
	c = std_claims();
	{
		char pad[JWT_TOKEN_MAX];

		memset(pad, 'a', sizeof(pad) - 1);
		pad[sizeof(pad) - 1] = '\0';
		json_object_set_new(c, "pad", json_string(pad));
	}
	assert_int_equal(jwt_sign_token(K.hs, c, &tok, err, sizeof(err)),
			 -E2BIG);
	assert_null(tok);
	json_decref(c);
}

/* ---- bad tokens ---- */

static void test_verify_needs_key_and_token(void **state)
{
	char err[256];
	json_t *c = NULL;

	(void)state;
	assert_int_equal(
	    jwt_verify_token(NULL, "a.b.c", NULL, NOW, &c, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "no verification key"));
	assert_int_equal(
	    jwt_verify_token(K.hs, NULL, NULL, NOW, &c, err, sizeof(err)),
	    -EINVAL);
	refused(K.hs, "", NULL, -EINVAL, "token is empty");
}

static void test_alg_none(void **state)
{
	const char *p = "{\"sub\":\"alice\",\"exp\":1800000000}";
	char *t;
	jwt_t *j = NULL;

	(void)state;
	/* libjwt's own unsigned token: "h.p." */
	assert_int_equal(jwt_new(&j), 0);
	assert_int_equal(jwt_add_grants_json(j, p), 0);
	t = jwt_encode_str(j);
	assert_non_null(t);
	jwt_free(j);
	refused(K.hs, t, NULL, -EINVAL, "segment 3 is empty");
	refused(K.ec_pub, t, NULL, -EINVAL, "segment 3 is empty");
	free(t);
	/* alg none with a signature attached, any case */
	t = tk_raw_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", p,
			 "c2lnbmF0dXJl");
	refused(K.hs, t, NULL, -EACCES, "alg 'none' (unsigned) is refused");
	refused(K.rsa_pub, t, NULL, -EACCES, "alg 'none'");
	free(t);
	t = tk_raw_token("{\"alg\":\"NoNe\"}", p, "c2ln");
	refused(K.ec_pub, t, NULL, -EACCES, "alg 'none'");
	free(t);
}

static void test_alg_swapped(void **state)
{
	const char *p = "{\"sub\":\"alice\",\"exp\":1800000000}";
	char *t;

	(void)state;
	/* HS256 "signed" with the public key bytes as the HMAC secret */
	t = tk_hs256_token(K.ec_pub_pem, strlen(K.ec_pub_pem), HS_HDR, p);
	refused(K.ec_pub, t, NULL, -EACCES,
		"token alg 'HS256' does not match the key's alg 'ES256'");
	refused(K.ec_priv, t, NULL, -EACCES, "'HS256' does not match");
	free(t);
	t = tk_hs256_token(K.rsa_pub_pem, strlen(K.rsa_pub_pem), HS_HDR, p);
	refused(K.rsa_pub, t, NULL, -EACCES,
		"token alg 'HS256' does not match the key's alg 'RS256'");
	free(t);
	/* and the reverse / cross family */
	t = sign(K.ec_priv, std_claims());
	refused(K.hs, t, NULL, -EACCES,
		"'ES256' does not match the key's alg 'HS256'");
	refused(K.rsa_pub, t, NULL, -EACCES, "'ES256' does not match");
	free(t);
	t = sign(K.rsa_priv, std_claims());
	refused(K.ec_pub, t, NULL, -EACCES, "'RS256' does not match");
	free(t);
	/* same family, other strength */
	t = tk_raw_token("{\"alg\":\"HS512\"}", p, "c2ln");
	refused(K.hs, t, NULL, -EACCES, "'HS512' does not match");
	free(t);
	/* alg that is not even a name, or not a string, or absent */
	t = tk_raw_token("{\"alg\":\"HS256'; DROP\"}", p, "c2ln");
	refused(K.hs, t, NULL, -EACCES, "token alg is not a valid name");
	free(t);
	t = tk_raw_token("{\"alg\":256}", p, "c2ln");
	refused(K.hs, t, NULL, -EINVAL, "'alg' is not a string");
	free(t);
	t = tk_raw_token("{\"typ\":\"JWT\"}", p, "c2ln");
	refused(K.hs, t, NULL, -EINVAL, "has no 'alg'");
	free(t);
	t = tk_hs256_token(secret, strlen(secret),
			   "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", p);
	refused(K.hs, t, NULL, -EACCES, "'crit'");
	free(t);
}

static void test_bad_signature(void **state)
{
	struct jwt_key *other_ec, *other_hs;
	char *t, *pem, *pub, *dot;
	char other_secret[] = "ffffffffffffffffffffffffffffffffffffffff";
	char err[256];

	(void)state;
	/* flipped character in the signature */
	t = sign(K.ec_priv, std_claims());
	dot = strrchr(t, '.');
	dot[5] = dot[5] == 'A' ? 'B' : 'A';
	refused(K.ec_pub, t, &std_expect, -EACCES,
		"signature verification failed");
	free(t);
	t = sign(K.rsa_priv, std_claims());
	dot = strrchr(t, '.');
	dot[5] = dot[5] == 'A' ? 'B' : 'A';
	refused(K.rsa_pub, t, &std_expect, -EACCES,
		"signature verification failed");
	free(t);
	t = sign(K.hs, std_claims());
	dot = strrchr(t, '.');
	dot[5] = dot[5] == 'A' ? 'B' : 'A';
	refused(K.hs, t, &std_expect, -EACCES, "signature verification failed");
	free(t);

	/* right alg, another key */
	tk_keypair("EC", "P-256", 0, false, &pem, &pub);
	other_ec = load(pem, NULL);
	t = sign(other_ec, std_claims());
	refused(K.ec_pub, t, &std_expect, -EACCES,
		"signature verification failed");
	free(t);
	assert_int_equal(jwt_key_load_mem(other_secret, strlen(other_secret),
					  "HS256", &other_hs, err, sizeof(err)),
			 0);
	t = sign(other_hs, std_claims());
	refused(K.hs, t, &std_expect, -EACCES, "signature verification failed");
	free(t);

	/* payload changed after signing (sub alice -> bob) */
	{
		char *good = sign(K.hs, std_claims());
		char *forged =
		    tk_raw_token(HS_HDR, "{\"sub\":\"bob\",\"exp\":1800000000}",
				 strrchr(good, '.') + 1);

		refused(K.hs, forged, NULL, -EACCES,
			"signature verification failed");
		free(good);
		free(forged);
	}
	jwt_key_free(other_ec);
	jwt_key_free(other_hs);
	free(pem);
	free(pub);
}

static void test_truncated(void **state)
{
	char *t, *dot;
	size_t n;

	(void)state;
	t = sign(K.ec_priv, std_claims());
	n = strlen(t);
	t[n - 10] = '\0'; /* signature cut short */
	refused(K.ec_pub, t, NULL, -EACCES, "signature verification failed");
	dot = strrchr(t, '.');
	dot[1] = '\0'; /* no signature */
	refused(K.ec_pub, t, NULL, -EINVAL, "segment 3 is empty");
	*dot = '\0'; /* two segments */
	refused(K.ec_pub, t, NULL, -EINVAL, "token has 2 segments, 3 needed");
	dot = strchr(t, '.');
	dot[3] = '\0'; /* payload cut into an impossible length or bad JSON */
	refused(K.ec_pub, t, NULL, -EINVAL, "token has 2 segments");
	free(t);
	refused(K.hs, "abc", NULL, -EINVAL, "token has 1 segment, 3 needed");
	refused(K.hs, "a.b.c.d", NULL, -EINVAL, "more than 3 segments");
	refused(K.hs, "..", NULL, -EINVAL, "segment 1 is empty");
}

static void test_oversized_tokens(void **state)
{
	static const char hs256_hdr[] = "eyJhbGciOiJIUzI1NiJ9."; /* HS256 */
	size_t big = 12u << 20, i;
	char *t = malloc(big + 1);
	char *ok;

	(void)state;
	assert_non_null(t);
	/*
	 * 12 MB: a valid {"alg":"HS256"} header and a 12 MB payload.  Given
	 * to libjwt 1.10.2's jwt_decode() this shape segfaults (checked by
	 * hand): it alloca()s the payload.
	 */
	memset(t, 'A', big);
	memcpy(t, hs256_hdr, strlen(hs256_hdr));
	t[big - 100] = '.';
	t[big] = '\0';
	refused(K.hs, t, NULL, -E2BIG, "longer than 8192 bytes");
	refused(K.ec_pub, t, NULL, -E2BIG, "longer than 8192 bytes");
	/* 8 KiB + 1 */
	t[JWT_TOKEN_MAX - 100] = '.';
	t[JWT_TOKEN_MAX + 1] = '\0';
	refused(K.hs, t, NULL, -E2BIG, "longer than 8192 bytes");
	/* exactly 8 KiB is not refused for its length */
	t[JWT_TOKEN_MAX] = '\0';
	refused(K.hs, t, NULL, -EINVAL, "payload is not JSON");
	/* a real token padded to just over the limit */
	ok = sign(K.hs, std_claims());
	for (i = 0; i <= JWT_TOKEN_MAX; i++)
		t[i] = 'A';
	memcpy(t, ok, strlen(ok));
	t[JWT_TOKEN_MAX + 1] = '\0';
	refused(K.hs, t, NULL, -E2BIG, "longer than 8192 bytes");
	free(ok);
	free(t);
}

static void test_garbage_and_not_json(void **state)
{
	char *t, *h;

	(void)state;
	refused(K.hs, "!!!!.abcd.efgh", NULL, -EINVAL,
		"character outside base64url at offset 0");
	refused(K.hs, "eyJh bGc.abcd.efgh", NULL, -EINVAL,
		"outside base64url at offset 4");
	refused(K.hs, "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ==.c2ln", NULL, -EINVAL,
		"outside base64url");
	refused(K.hs, "eyJhbGciOiJIUzI1NiJ9.e.c2ln", NULL, -EINVAL,
		"payload is not valid base64url");
	refused(K.hs, "AAAAA.abcd.efgh", NULL, -EINVAL,
		"header is not valid base64url");
	/* header not JSON, header JSON but not an object */
	t = tk_raw_token("not json at all", "{}", "c2ln");
	refused(K.hs, t, NULL, -EINVAL, "header is not JSON: line 1, column");
	free(t);
	t = tk_raw_token("[\"HS256\"]", "{}", "c2ln");
	refused(K.hs, t, NULL, -EINVAL, "header is not a JSON object");
	free(t);
	t = tk_raw_token("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}", "c2ln");
	refused(K.hs, t, NULL, -EINVAL, "header is not JSON");
	free(t);
	/* payload not JSON, deeply nested, duplicate claims */
	t = tk_hs256_token(secret, strlen(secret), HS_HDR, "sub=alice");
	refused(K.hs, t, NULL, -EINVAL, "payload is not JSON");
	free(t);
	t = hs("{\"sub\":\"bob\",\"exp\":1800000000,\"sub\":\"alice\"}");
	refused(K.hs, t, NULL, -EINVAL, "payload is not JSON");
	free(t);
	h = malloc(4000);
	assert_non_null(h);
	memset(h, '[', 1000);
	memset(h + 1000, ']', 1000);
	h[2000] = '\0';
	t = hs(h);
	refused(K.hs, t, NULL, -EINVAL, "nests deeper than");
	free(t);
	free(h);
	t = hs("[1,2]");
	refused(K.hs, t, NULL, -EINVAL, "payload is not a JSON object");
	free(t);
}

static void test_exp(void **state)
{
	struct jwt_expect strict = {.leeway_s = -1};
	json_t *c;
	char *t;

	(void)state;
	t = hs("{\"sub\":\"alice\"}");
	refused(K.hs, t, NULL, -EINVAL, "token has no 'exp' claim");
	free(t);
	t = hs("{\"exp\":\"999999999999\"}");
	refused(K.hs, t, NULL, -EINVAL, "claim 'exp' is not an integer");
	free(t);
	t = hs("{\"exp\":1800000000.0}");
	refused(K.hs, t, NULL, -EINVAL, "claim 'exp' is not an integer");
	free(t);
	t = hs("{\"exp\":true}");
	refused(K.hs, t, NULL, -EINVAL, "claim 'exp' is not an integer");
	free(t);
	t = hs("{\"exp\":null}");
	refused(K.hs, t, NULL, -EINVAL, "token has no 'exp' claim");
	free(t);
	t = hs("{\"exp\":-5}");
	refused(K.hs, t, NULL, -EINVAL, "claim 'exp' is negative");
	free(t);
	t = hs("{\"exp\":1699990000}");
	refused(K.hs, t, NULL, -EKEYEXPIRED, "token expired 10000 s ago");
	free(t);
	/* within the default 30 s leeway, but not with none */
	t = hs("{\"exp\":1699999980}");
	c = accepted(K.hs, t, NULL);
	json_decref(c);
	refused(K.hs, t, &strict, -EKEYEXPIRED, "token expired 20 s ago");
	free(t);
	t = hs("{\"exp\":1700000000}"); /* exp == now is expired */
	refused(K.hs, t, &strict, -EKEYEXPIRED, "expired 0 s ago");
	free(t);
	t = hs("{\"exp\":9223372036854775807}");
	c = accepted(K.hs, t, NULL);
	json_decref(c);
	free(t);
}

static void test_nbf_iat(void **state)
{
	struct jwt_expect need_iat = {.require_iat = true};
	json_t *c;
	char *t;

	(void)state;
	t = hs("{\"exp\":1800000000,\"nbf\":1700000100}");
	refused(K.hs, t, NULL, -EACCES, "not valid before 100 s from now");
	free(t);
	t = hs("{\"exp\":1800000000,\"nbf\":\"1600000000\"}");
	refused(K.hs, t, NULL, -EINVAL, "claim 'nbf' is not an integer");
	free(t);
	t = hs("{\"exp\":1800000000,\"nbf\":1700000020,\"iat\":1700000020}");
	c = accepted(K.hs, t, NULL); /* within leeway */
	json_decref(c);
	free(t);
	t = hs("{\"exp\":1800000000,\"iat\":1700000500}");
	refused(K.hs, t, NULL, -EACCES, "issued 500 s in the future (iat)");
	free(t);
	t = hs("{\"exp\":1800000000,\"iat\":1.7e9}");
	refused(K.hs, t, NULL, -EINVAL, "claim 'iat' is not an integer");
	free(t);
	t = hs("{\"exp\":1800000000}");
	refused(K.hs, t, &need_iat, -EINVAL, "token has no 'iat' claim");
	free(t);
	t = hs("{\"exp\":1700000010,\"iat\":1700000020}");
	refused(K.hs, t, NULL, -EINVAL, "expires before it was issued");
	free(t);
}

static void test_max_lifetime(void **state)
{
	struct jwt_expect ex = {.max_lifetime_s = 3600};
	json_t *c;
	char *t;

	(void)state;
	t = hs("{\"exp\":1700003600,\"iat\":1700000000}");
	c = accepted(K.hs, t, &ex);
	json_decref(c);
	free(t);
	t = hs("{\"exp\":1700007200}");
	refused(K.hs, t, &ex, -EACCES, "lifetime exceeds 3600 s");
	free(t);
	t = hs("{\"exp\":1700000100,\"iat\":1690000000}");
	refused(K.hs, t, &ex, -EACCES, "lifetime exceeds 3600 s");
	free(t);
}

static void test_iss_aud(void **state)
{
	struct jwt_expect ex = {.iss = "tiergate", .aud = "tiergate-ticket"};
	json_t *c;
	char *t;

	(void)state;
	t = hs("{\"exp\":1800000000,\"iss\":\"evil\",\"aud\":\"tiergate-"
	       "ticket\"}");
	refused(K.hs, t, &ex, -EACCES, "token issuer is not 'tiergate'");
	free(t);
	t = hs("{\"exp\":1800000000,\"aud\":\"tiergate-ticket\"}");
	refused(K.hs, t, &ex, -EINVAL, "token has no 'iss' claim");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":[\"tiergate\"],\"aud\":\"x\"}");
	refused(K.hs, t, &ex, -EINVAL, "claim 'iss' is not a string");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":\"tiergate\",\"aud\":\"tiergate-"
	       "user\"}");
	refused(K.hs, t, &ex, -EACCES,
		"token audience does not include 'tiergate-ticket'");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":\"tiergate\"}");
	refused(K.hs, t, &ex, -EINVAL, "token has no 'aud' claim");
	free(t);
	t = hs(
	    "{\"exp\":1800000000,\"iss\":\"tiergate\",\"aud\":[\"a\",\"b\"]}");
	refused(K.hs, t, &ex, -EACCES, "does not include");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":\"tiergate\",\"aud\":[]}");
	refused(K.hs, t, &ex, -EACCES, "does not include");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":\"tiergate\",\"aud\":[\"tiergate-"
	       "ticket\",7]}");
	refused(K.hs, t, &ex, -EINVAL, "claim 'aud' holds a non-string");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":\"tiergate\",\"aud\":42}");
	refused(K.hs, t, &ex, -EINVAL, "neither a string nor an array");
	free(t);
	t = hs("{\"exp\":1800000000,\"iss\":\"tiergate\",\"aud\":[\"x\","
	       "\"tiergate-ticket\"]}");
	c = accepted(K.hs, t, &ex);
	json_decref(c);
	free(t);
}

static void test_user_claim(void **state)
{
	struct jwt_expect ex = {.user_claim = "sub"};
	static const char *const bad[] = {
	    "{\"exp\":1800000000,\"sub\":\"alice;rm -rf\"}",
	    "{\"exp\":1800000000,\"sub\":\"../etc\"}",
	    "{\"exp\":1800000000,\"sub\":\"-n\"}",
	    "{\"exp\":1800000000,\"sub\":\"al ice\"}",
	    "{\"exp\":1800000000,\"sub\":\"al\\nice\"}",
	    "{\"exp\":1800000000,\"sub\":\"\\u00e9mile\"}",
	    "{\"exp\":1800000000,\"sub\":"
	    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "\"}",
	};
	json_t *c;
	char *t;
	size_t i;

	(void)state;
	t = hs("{\"exp\":1800000000}");
	refused(K.hs, t, &ex, -EINVAL, "token has no 'sub' claim");
	free(t);
	t = hs("{\"exp\":1800000000,\"sub\":1000}");
	refused(K.hs, t, &ex, -EINVAL, "claim 'sub' is not a string");
	free(t);
	t = hs("{\"exp\":1800000000,\"sub\":\"\"}");
	refused(K.hs, t, &ex, -EINVAL, "claim 'sub' is empty");
	free(t);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = hs(bad[i]);
		refused(K.hs, t, &ex, -EINVAL,
			"claim 'sub' is not a valid user name");
		free(t);
	}
	t = hs("{\"exp\":1800000000,\"sub\":\"john.doe@lab_1-x\"}");
	c = accepted(K.hs, t, &ex);
	json_decref(c);
	free(t);
	ex.user_claim = "user";
	t = hs("{\"exp\":1800000000,\"sub\":\"alice\"}");
	refused(K.hs, t, &ex, -EINVAL, "token has no 'user' claim");
	free(t);
}

static void test_user_name_valid(void **state)
{
	(void)state;
	assert_true(jwt_user_name_valid("alice"));
	assert_true(jwt_user_name_valid("a"));
	assert_true(jwt_user_name_valid("_svc"));
	assert_true(jwt_user_name_valid("John.Doe@LAB"));
	assert_false(jwt_user_name_valid(NULL));
	assert_false(jwt_user_name_valid(""));
	assert_false(jwt_user_name_valid(".hidden"));
	assert_false(jwt_user_name_valid("@x"));
	assert_false(jwt_user_name_valid("a/b"));
	assert_false(jwt_user_name_valid("a$"));
	assert_true(jwt_user_name_valid(
	    "a23456789012345678901234567890123456789012345678901234567890123"));
	assert_false(jwt_user_name_valid("a234567890123456789012345678901234567"
					 "890123456789012345678901234"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_refuses_null_empty_short),
	    cmocka_unit_test(test_key_refuses_bad_alg_and_kinds),
	    cmocka_unit_test(test_key_detect_and_files),
	    cmocka_unit_test(test_roundtrip_all_algs),
	    cmocka_unit_test(test_sign_refusals),
	    cmocka_unit_test(test_verify_needs_key_and_token),
	    cmocka_unit_test(test_alg_none),
	    cmocka_unit_test(test_alg_swapped),
	    cmocka_unit_test(test_bad_signature),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_oversized_tokens),
	    cmocka_unit_test(test_garbage_and_not_json),
	    cmocka_unit_test(test_exp),
	    cmocka_unit_test(test_nbf_iat),
	    cmocka_unit_test(test_max_lifetime),
	    cmocka_unit_test(test_iss_aud),
	    cmocka_unit_test(test_user_claim),
	    cmocka_unit_test(test_user_name_valid),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
