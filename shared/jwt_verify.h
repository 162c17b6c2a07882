/*
 * jwt_verify.h: the one place tiergate touches libjwt.
 *
 * libjwt 1.10.2 (Debian 12) must not be called directly elsewhere:
 *  - with a NULL or empty key jwt_decode() checks no signature and reports
 *    alg "none";
 *  - it alloca()s the token's segments, so a multi-megabyte token smashes
 *    the stack;
 *  - it trusts the token's own "alg" header (an HS256 token "signed" with
 *    the bytes of an RSA/EC public key verifies against that public key);
 *  - it validates no claim at all.
 * This module refuses short keys at load, caps the token length before
 * libjwt sees it, decodes and allow-lists the header itself (the token's alg
 * must be exactly the key's alg), checks jwt_get_alg() after decoding, and
 * validates exp/nbf/iat/iss/aud and a user claim strictly typed.
 *
 * Keys.  One struct jwt_key holds one algorithm:
 *  - HS256: the raw secret, exactly the bytes given (no newline trimming),
 *    at least 32 bytes.  Data that looks like PEM is refused as a secret.
 *  - RS256: a PEM RSA key of at least 2048 bits.
 *  - ES256: a PEM EC key on P-256.
 * A PEM private key (PKCS#8 "PRIVATE KEY", "RSA PRIVATE KEY" or
 * "EC PRIVATE KEY", unencrypted) can sign and verify: its public half is
 * derived at load.  A PEM public key ("PUBLIC KEY", SubjectPublicKeyInfo)
 * can only verify.  With alg NULL the kind is detected: PEM data gives
 * RS256 or ES256 from the key type, anything else is an HS256 secret.
 * Key bytes never appear in error messages and are wiped on free.
 *
 * Errors: every function returns 0 or a negative errno and, on error, puts
 * a message in err (never the token or key bytes).
 */
#ifndef TIERGATE_JWT_VERIFY_H
#define TIERGATE_JWT_VERIFY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Longest token accepted (and minted), in bytes. */
#define JWT_TOKEN_MAX 8192
/* Shortest HS256 secret accepted. */
#define JWT_HS256_MIN_SECRET 32
/* Largest key file or buffer accepted. */
#define JWT_KEY_MAX_BYTES 65536
/* Clock skew allowed on exp/nbf/iat when jwt_expect.leeway_s is 0. */
#define JWT_DEFAULT_LEEWAY 30
/* Longest user name accepted in the user claim. */
#define JWT_USER_MAX 63

/* Opaque; owned by the caller of jwt_key_load_*(), freed by jwt_key_free. */
struct jwt_key;

/*
 * Load a key from `path` or from `len` bytes at `data`.  `alg` is "HS256",
 * "RS256", "ES256" or NULL to detect it (see above).  On success *out is a
 * new key; on failure *out is NULL and err says why:
 * -EINVAL (unusable key, wrong kind for alg, secret too short),
 * -ENOTSUP (alg not one of the three), -EFBIG, -ENOMEM, or the errno of
 * open/read.
 */
int jwt_key_load_file(const char *path, const char *alg, struct jwt_key **out,
		      char *err, size_t errlen);
int jwt_key_load_mem(const void *data, size_t len, const char *alg,
		     struct jwt_key **out, char *err, size_t errlen);
/* Wipes and frees; NULL is fine. */
void jwt_key_free(struct jwt_key *key);
/* "HS256", "RS256" or "ES256". */
const char *jwt_key_alg(const struct jwt_key *key);
/* True when the key holds a secret or a private key. */
bool jwt_key_can_sign(const struct jwt_key *key);

/*
 * What a token must satisfy besides its signature.  Zero-initialize and set
 * what matters:
 *   iss         required exact "iss" string; NULL: not checked
 *   aud         required audience: "aud" is that string or an array of
 *               strings holding it; NULL: not checked
 *   user_claim  name of a required claim (e.g. "sub") that must be a
 *               string accepted by jwt_user_name_valid(); NULL: none
 *   leeway_s    clock skew in seconds; 0 means JWT_DEFAULT_LEEWAY, a
 *               negative value means none
 *   max_lifetime_s  when > 0: refuse a token whose exp lies more than this
 *               past now (or past its iat), i.e. long-lived tokens
 *   require_iat when true "iat" must be present
 * "exp" is always required: an integer number of seconds (not a string, not
 * a real), non-negative, and later than now - leeway.  "nbf" and "iat", when
 * present, are non-negative integers no later than now + leeway.
 */
struct jwt_expect {
	const char *iss;
	const char *aud;
	const char *user_claim;
	int leeway_s;
	int64_t max_lifetime_s;
	bool require_iat;
};

/*
 * Verify `token` with `key` at time `now`.  Refuses, without calling libjwt,
 * tokens longer than JWT_TOKEN_MAX, not made of three non-empty base64url
 * segments, whose header is not a JSON object, whose "alg" is not exactly
 * the key's alg (so never "none" and never another family), or that carry
 * a "crit" header.  Then checks the signature with libjwt and the claims
 * against `expect` (NULL: only the defaults above).
 *
 * On success returns 0 and, if claims_out is not NULL, *claims_out is a new
 * reference to the claims object (caller json_decref()s it).  On failure
 * *claims_out is NULL and the return value is:
 *   -E2BIG       token too long
 *   -EINVAL      malformed token or a claim missing or of the wrong type
 *   -EACCES      bad signature, wrong alg, iss/aud/user mismatch, nbf/iat
 *                in the future, lifetime too long
 *   -EKEYEXPIRED exp has passed
 *   -ENOMEM
 */
int jwt_verify_token(const struct jwt_key *key, const char *token,
		     const struct jwt_expect *expect, time_t now,
		     json_t **claims_out, char *err, size_t errlen);

/*
 * The claims of `token` WITHOUT verifying it: for a token signed with a key
 * this process does not hold (a user's own slurmrestd token, whose expiry
 * and user the gateway needs to know).  Never a basis for trust: the
 * token's owner (slurmctld) verifies it.  Same shape and length checks as
 * jwt_verify_token; 0 and a new reference in *claims_out, or -E2BIG /
 * -EINVAL / -ENOMEM with the reason in err.
 */
int jwt_peek_claims(const char *token, json_t **claims_out, char *err,
		    size_t errlen);

/*
 * Sign the object `claims` (borrowed) with the key's alg.  The key must be
 * able to sign.  On success *out is a malloc'd token the caller frees with
 * free(); -E2BIG if it would be longer than JWT_TOKEN_MAX.
 */
int jwt_sign_token(const struct jwt_key *key, const json_t *claims, char **out,
		   char *err, size_t errlen);

/*
 * A user name safe to use as a claim, a file name part or a log word:
 * 1..JWT_USER_MAX characters of [A-Za-z0-9_.@-], not starting with
 * '-', '.' or '@'.
 */
bool jwt_user_name_valid(const char *name);

#endif
