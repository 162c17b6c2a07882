/*
 * jwt_verify.c: see jwt_verify.h.  Every call into libjwt 1.10 is here.
 *
 * One exception to "libjwt does the JWT": signing with RS256/ES256.
 * libjwt 1.10 takes the key as PEM and decodes it for every token it
 * signs; with OpenSSL 3's decoders that is ~400 us per ES256 ticket, one
 * per job (docs/performance.md).  Those tokens are signed here with the
 * EVP_PKEY decoded once at load (EVP_DigestSign; ES256's DER signature
 * turned into the JWS R || S form), and verified by libjwt like any other
 * (the unit tests verify every signed token with libjwt).
 */
#include "jwt_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "json_util.h"
#include "log.h"

/* Nesting allowed in a token's header and payload. */
#define JWT_HEADER_DEPTH 4
#define JWT_PAYLOAD_DEPTH 16

struct jwt_key {
	jwt_alg_t alg;
	/*
	 * HS256: both point to the one secret buffer.  RS256/ES256: `verify`
	 * is the SubjectPublicKeyInfo PEM, `sign` the PKCS#8 PEM or NULL.
	 */
	unsigned char *sign;
	size_t sign_len;
	unsigned char *verify;
	size_t verify_len;
	EVP_PKEY *pkey; /* RS256/ES256 private key, decoded once; or NULL */
};

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

/* ---- keys ---- */

static int alg_parse(const char *alg, jwt_alg_t *out, char *err, size_t errlen)
{
	if (!strcmp(alg, "HS256"))
		*out = JWT_ALG_HS256;
	else if (!strcmp(alg, "RS256"))
		*out = JWT_ALG_RS256;
	else if (!strcmp(alg, "ES256"))
		*out = JWT_ALG_ES256;
	else {
		set_err(err, errlen,
			"alg '%.16s' is not supported (HS256, RS256, ES256)",
			alg);
		return -ENOTSUP;
	}
	return 0;
}

static const char *alg_name(jwt_alg_t alg)
{
	switch (alg) {
	case JWT_ALG_HS256:
		return "HS256";
	case JWT_ALG_RS256:
		return "RS256";
	case JWT_ALG_ES256:
		return "ES256";
	case JWT_ALG_NONE:
	case JWT_ALG_HS384:
	case JWT_ALG_HS512:
	case JWT_ALG_RS384:
	case JWT_ALG_RS512:
	case JWT_ALG_ES384:
	case JWT_ALG_ES512:
	case JWT_ALG_TERM:
		break;
	}
	return "?";
}

static void wipe_free(unsigned char *p, size_t len)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

void jwt_key_free(struct jwt_key *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey);
	if (key->sign != key->verify)
		wipe_free(key->sign, key->sign_len);
	wipe_free(key->verify, key->verify_len);
	OPENSSL_cleanse(key, sizeof(*key));
	free(key);
}

const char *jwt_key_alg(const struct jwt_key *key)
{
	return key ? alg_name(key->alg) : "?";
}

bool jwt_key_can_sign(const struct jwt_key *key)
{
	return key && key->sign && key->sign_len;
}

/* Never prompt on a terminal for the passphrase of an encrypted key. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* The first OpenSSL reason on the queue (no key bytes), queue cleared. */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "no detail";
}

/* Copy a memory BIO's contents into a malloc'd NUL-terminated buffer. */
static int bio_take(BIO *bio, unsigned char **out, size_t *outlen)
{
	BUF_MEM *bm = NULL;
	unsigned char *p;

	BIO_get_mem_ptr(bio, &bm);
	if (!bm || !bm->length)
		return -EINVAL;
	p = malloc(bm->length + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, bm->data, bm->length);
	p[bm->length] = '\0';
	*out = p;
	*outlen = bm->length;
	return 0;
}

/* RS256 or ES256 for this key, or -EINVAL with the reason. */
static int pkey_alg(EVP_PKEY *pkey, jwt_alg_t *out, char *err, size_t errlen)
{
	char group[64] = "";
	int bits;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(pkey);
		if (bits < 2048) {
			set_err(err, errlen,
				"RSA key has %d bits, at least 2048 needed",
				bits);
			return -EINVAL;
		}
		*out = JWT_ALG_RS256;
		return 0;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) !=
			1 ||
		    (strcmp(group, "prime256v1") && strcmp(group, "P-256"))) {
			ERR_clear_error();
			set_err(err, errlen,
				"EC key is on curve '%s', ES256 needs P-256",
				group[0] ? group : "unknown");
			return -EINVAL;
		}
		*out = JWT_ALG_ES256;
		return 0;
	default:
		set_err(err, errlen, "PEM key is neither RSA nor EC (type %d)",
			EVP_PKEY_get_base_id(pkey));
		return -EINVAL;
	}
}

static int load_pem(struct jwt_key *k, const void *data, size_t len,
		    bool alg_given, char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	BIO *in = NULL, *pub = NULL, *priv = NULL;
	jwt_alg_t found;
	bool is_private = true;
	int rv = -ENOMEM;

	in = BIO_new_mem_buf(data, (int)len);
	if (!in)
		goto out_nomem;
	pkey = PEM_read_bio_PrivateKey(in, NULL, no_passphrase, NULL);
	if (!pkey) {
		ERR_clear_error();
		is_private = false;
		BIO_free(in);
		in = BIO_new_mem_buf(data, (int)len);
		if (!in)
			goto out_nomem;
		pkey = PEM_read_bio_PUBKEY(in, NULL, no_passphrase, NULL);
	}
	if (!pkey) {
		set_err(err, errlen,
			"no usable PEM private or public key (encrypted keys "
			"are not supported; OpenSSL: %s)",
			ssl_reason());
		rv = -EINVAL;
		goto out_free_bio;
	}
	rv = pkey_alg(pkey, &found, err, errlen);
	if (rv)
		goto out_free_pkey;
	if (alg_given && found != k->alg) {
		set_err(err, errlen, "%s key cannot be used for %s",
			found == JWT_ALG_ES256 ? "an EC P-256" : "an RSA",
			alg_name(k->alg));
		rv = -EINVAL;
		goto out_free_pkey;
	}
	k->alg = found;

	rv = -ENOMEM;
	pub = BIO_new(BIO_s_mem());
	if (!pub || PEM_write_bio_PUBKEY(pub, pkey) != 1)
		goto out_ssl;
	rv = bio_take(pub, &k->verify, &k->verify_len);
	if (rv)
		goto out_free_out;
	if (is_private) {
		rv = -ENOMEM;
		priv = BIO_new(BIO_s_secmem());
		if (!priv || PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0,
						      NULL, NULL) != 1)
			goto out_ssl;
		rv = bio_take(priv, &k->sign, &k->sign_len);
		if (rv)
			goto out_free_out;
		k->pkey = pkey; /* kept for jwt_sign_token */
		pkey = NULL;
	}
	rv = 0;
	goto out_free_out;

out_ssl:
	set_err(err, errlen, "cannot export the key (OpenSSL: %s)",
		ssl_reason());
out_free_out:
	BIO_free(priv);
	BIO_free(pub);
out_free_pkey:
	EVP_PKEY_free(pkey);
out_free_bio:
	BIO_free(in);
	return rv;
out_nomem:
	set_err(err, errlen, "out of memory loading a PEM key");
	return -ENOMEM;
}

int jwt_key_load_mem(const void *data, size_t len, const char *alg,
		     struct jwt_key **out, char *err, size_t errlen)
{
	struct jwt_key *k = NULL;
	bool pem;
	int rv;

	*out = NULL;
	if (!data || !len) {
		set_err(err, errlen, "key is empty");
		return -EINVAL;
	}
	if (len > JWT_KEY_MAX_BYTES) {
		set_err(err, errlen, "key is larger than %d bytes",
			JWT_KEY_MAX_BYTES);
		return -EFBIG;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pem = memmem(data, len, "-----BEGIN ", 11) != NULL;
	if (alg) {
		rv = alg_parse(alg, &k->alg, err, errlen);
		if (rv)
			goto out_free_key;
	} else {
		k->alg = pem ? JWT_ALG_NONE : JWT_ALG_HS256;
	}

	if (k->alg == JWT_ALG_HS256) {
		if (pem) {
			set_err(err, errlen,
				"HS256 secret looks like a PEM key; use RS256 "
				"or ES256 for PEM keys");
			rv = -EINVAL;
			goto out_free_key;
		}
		if (len < JWT_HS256_MIN_SECRET) {
			set_err(err, errlen,
				"HS256 secret is %zu bytes, at least %d needed",
				len, JWT_HS256_MIN_SECRET);
			rv = -EINVAL;
			goto out_free_key;
		}
		k->verify = malloc(len);
		if (!k->verify) {
			set_err(err, errlen, "out of memory");
			rv = -ENOMEM;
			goto out_free_key;
		}
		memcpy(k->verify, data, len);
		k->verify_len = len;
		k->sign = k->verify;
		k->sign_len = len;
	} else {
		if (!pem) {
			set_err(err, errlen, "%s key is not in PEM format",
				alg_name(k->alg));
			rv = -EINVAL;
			goto out_free_key;
		}
		rv = load_pem(k, data, len, alg != NULL, err, errlen);
		if (rv)
			goto out_free_key;
	}
	dbg("loaded %s key (%s)", alg_name(k->alg),
	    jwt_key_can_sign(k) ? "sign+verify" : "verify only");
	*out = k;
	return 0;

out_free_key:
	jwt_key_free(k);
	return rv;
}

int jwt_key_load_file(const char *path, const char *alg, struct jwt_key **out,
		      char *err, size_t errlen)
{
	char msg[256];
	unsigned char *buf = NULL;
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd, rv;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rv = -errno;
		set_err(err, errlen, "%s: cannot open key: %s", path,
			strerror(errno));
		return rv;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: key is not a regular file", path);
		rv = -EINVAL;
		goto out_close;
	}
	if (st.st_size > JWT_KEY_MAX_BYTES) {
		set_err(err, errlen, "%s: key is larger than %d bytes", path,
			JWT_KEY_MAX_BYTES);
		rv = -EFBIG;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		set_err(err, errlen, "%s: out of memory", path);
		rv = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rv = n < 0 ? -errno : -EIO;
			set_err(err, errlen, "%s: cannot read key: %s", path,
				n < 0 ? strerror(errno) : "short read");
			goto out_wipe;
		}
		got += (size_t)n;
	}
	rv = jwt_key_load_mem(buf, got, alg, out, msg, sizeof(msg));
	if (rv)
		set_err(err, errlen, "%s: %s", path, msg);
out_wipe:
	wipe_free(buf, (size_t)st.st_size + 1);
out_close:
	close(fd);
	return rv;
}

/* ---- tokens ---- */

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict unpadded base64url (RFC 7515): only the alphabet, no '=', no
 * impossible length, unused trailing bits zero.  *out is malloc'd and
 * NUL-terminated.
 */
static int b64url_decode(const char *in, size_t len, unsigned char **out,
			 size_t *outlen)
{
	unsigned char *p;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i, o = 0;
	int v;

	*out = NULL;
	if (len % 4 == 1)
		return -EINVAL;
	p = malloc(len * 3 / 4 + 2);
	if (!p)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		v = b64url_val((unsigned char)in[i]);
		if (v < 0)
			goto out_bad;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			p[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc)
		goto out_bad;
	p[o] = '\0';
	*out = p;
	*outlen = o;
	return 0;
out_bad:
	free(p);
	return -EINVAL;
}

/* ASCII only: isalnum() follows the locale. */
static bool is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static bool alg_printable(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (!is_alnum((unsigned char)*s) || n >= 16)
			return false;
	return n > 0;
}

/* Decode one segment into a JSON object. */
static int decode_part(const char *seg, size_t len, const char *what,
		       unsigned depth, json_t **out, char *err, size_t errlen)
{
	unsigned char *raw = NULL;
	char msg[160];
	size_t rawlen;
	int rv;

	*out = NULL;
	rv = b64url_decode(seg, len, &raw, &rawlen);
	if (rv == -ENOMEM) {
		set_err(err, errlen, "out of memory");
		return rv;
	}
	if (rv) {
		set_err(err, errlen, "token %s is not valid base64url", what);
		return -EINVAL;
	}
	rv = json_parse_text((const char *)raw, rawlen, depth, out, msg,
			     sizeof(msg));
	free(raw);
	if (rv == -ENOMEM) {
		set_err(err, errlen, "out of memory");
		return rv;
	}
	if (rv) {
		set_err(err, errlen, "token %s is not JSON: %s", what, msg);
		return -EINVAL;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		set_err(err, errlen, "token %s is not a JSON object", what);
		return -EINVAL;
	}
	return 0;
}

static int check_header(const struct jwt_key *key, const json_t *hdr, char *err,
			size_t errlen)
{
	const char *alg;
	int rv;

	rv = json_get_str(hdr, "alg", &alg);
	if (rv) {
		set_err(err, errlen, "token header %s",
			rv == -ENOENT ? "has no 'alg'"
				      : "'alg' is not a string");
		return -EINVAL;
	}
	if (!strcasecmp(alg, "none")) {
		set_err(err, errlen, "token alg 'none' (unsigned) is refused");
		return -EACCES;
	}
	if (strcmp(alg, alg_name(key->alg))) {
		if (alg_printable(alg))
			set_err(
			    err, errlen,
			    "token alg '%s' does not match the key's alg '%s'",
			    alg, alg_name(key->alg));
		else
			set_err(
			    err, errlen,
			    "token alg is not a valid name (key's alg is '%s')",
			    alg_name(key->alg));
		return -EACCES;
	}
	if (json_object_get(hdr, "crit")) {
		set_err(
		    err, errlen,
		    "token header has 'crit' extensions, none are supported");
		return -EACCES;
	}
	return 0;
}

/* A non-negative integer time claim; -ENOENT when absent. */
static int get_time(const json_t *claims, const char *name, bool required,
		    int64_t *out, char *err, size_t errlen)
{
	int rv = json_get_int(claims, name, out);

	if (rv == -ENOENT) {
		if (required)
			set_err(err, errlen, "token has no '%s' claim", name);
		return required ? -EINVAL : -ENOENT;
	}
	if (rv) {
		set_err(err, errlen, "claim '%s' is not an integer", name);
		return -EINVAL;
	}
	if (*out < 0) {
		set_err(err, errlen, "claim '%s' is negative", name);
		return -EINVAL;
	}
	return 0;
}

static int check_times(const json_t *claims, const struct jwt_expect *ex,
		       time_t now, char *err, size_t errlen)
{
	int64_t exp, nbf, iat, leeway, t = (int64_t)now;
	bool has_iat;
	int rv;

	leeway = ex->leeway_s == 0  ? JWT_DEFAULT_LEEWAY
		 : ex->leeway_s < 0 ? 0
				    : ex->leeway_s;

	rv = get_time(claims, "exp", true, &exp, err, errlen);
	if (rv)
		return rv;
	if (exp <= t - leeway) {
		set_err(err, errlen, "token expired %lld s ago",
			(long long)(t - exp));
		return -EKEYEXPIRED;
	}

	rv = get_time(claims, "nbf", false, &nbf, err, errlen);
	if (rv && rv != -ENOENT)
		return rv;
	if (!rv && nbf > t + leeway) {
		set_err(err, errlen,
			"token is not valid before %lld s from now (nbf)",
			(long long)(nbf - t));
		return -EACCES;
	}

	rv = get_time(claims, "iat", ex->require_iat, &iat, err, errlen);
	if (rv && rv != -ENOENT)
		return rv;
	has_iat = !rv;
	if (has_iat && iat > t + leeway) {
		set_err(err, errlen,
			"token was issued %lld s in the future (iat)",
			(long long)(iat - t));
		return -EACCES;
	}
	if (has_iat && exp <= iat) {
		set_err(err, errlen, "token expires before it was issued");
		return -EINVAL;
	}

	/* exp > t - leeway here, so neither difference overflows */
	if (ex->max_lifetime_s > 0 &&
	    (exp - t - leeway > ex->max_lifetime_s ||
	     (has_iat && exp - iat > ex->max_lifetime_s))) {
		set_err(err, errlen, "token lifetime exceeds %lld s",
			(long long)ex->max_lifetime_s);
		return -EACCES;
	}
	return 0;
}

static int check_aud(const json_t *claims, const char *want, char *err,
		     size_t errlen)
{
	json_t *aud = json_object_get(claims, "aud"), *v;
	bool found = false;
	size_t i;

	if (!aud) {
		set_err(err, errlen, "token has no 'aud' claim");
		return -EINVAL;
	}
	if (json_is_string(aud)) {
		found = !strcmp(json_string_value(aud), want);
	} else if (json_is_array(aud)) {
		for (i = 0; i < json_array_size(aud); i++) {
			v = json_array_get(aud, i);
			if (!json_is_string(v)) {
				set_err(err, errlen,
					"claim 'aud' holds a non-string");
				return -EINVAL;
			}
			if (!strcmp(json_string_value(v), want))
				found = true;
		}
	} else {
		set_err(
		    err, errlen,
		    "claim 'aud' is neither a string nor an array of strings");
		return -EINVAL;
	}
	if (!found) {
		set_err(err, errlen, "token audience does not include '%s'",
			want);
		return -EACCES;
	}
	return 0;
}

static int check_claims(const json_t *claims, const struct jwt_expect *ex,
			time_t now, char *err, size_t errlen)
{
	const char *s;
	int rv;

	rv = check_times(claims, ex, now, err, errlen);
	if (rv)
		return rv;

	if (ex->iss) {
		rv = json_get_str(claims, "iss", &s);
		if (rv) {
			set_err(err, errlen,
				rv == -ENOENT ? "token has no 'iss' claim"
					      : "claim 'iss' is not a string");
			return -EINVAL;
		}
		if (strcmp(s, ex->iss)) {
			set_err(err, errlen, "token issuer is not '%s'",
				ex->iss);
			return -EACCES;
		}
	}
	if (ex->aud) {
		rv = check_aud(claims, ex->aud, err, errlen);
		if (rv)
			return rv;
	}
	if (ex->user_claim) {
		rv = json_get_str(claims, ex->user_claim, &s);
		if (rv) {
			set_err(err, errlen,
				rv == -ENOENT ? "token has no '%s' claim"
					      : "claim '%s' is not a string",
				ex->user_claim);
			return -EINVAL;
		}
		if (!*s) {
			set_err(err, errlen, "claim '%s' is empty",
				ex->user_claim);
			return -EINVAL;
		}
		if (!jwt_user_name_valid(s)) {
			set_err(err, errlen,
				"claim '%s' is not a valid user name (1..%d of "
				"[A-Za-z0-9_.@-])",
				ex->user_claim, JWT_USER_MAX);
			return -EINVAL;
		}
	}
	return 0;
}

/* Three non-empty base64url segments; seg/seglen get their bounds. */
static int split_token(const char *token, size_t len, const char *seg[3],
		       size_t seglen[3], char *err, size_t errlen)
{
	size_t i, n = 0, start = 0;

	for (i = 0; i <= len; i++) {
		if (i < len && token[i] != '.') {
			if (b64url_val((unsigned char)token[i]) < 0) {
				set_err(err, errlen,
					"token has a character outside "
					"base64url at offset %zu",
					i);
				return -EINVAL;
			}
			continue;
		}
		if (n == 3) {
			set_err(err, errlen, "token has more than 3 segments");
			return -EINVAL;
		}
		seg[n] = token + start;
		seglen[n] = i - start;
		if (!seglen[n]) {
			set_err(err, errlen, "token segment %zu is empty",
				n + 1);
			return -EINVAL;
		}
		n++;
		start = i + 1;
	}
	if (n != 3) {
		set_err(err, errlen, "token has %zu segment%s, 3 needed", n,
			n == 1 ? "" : "s");
		return -EINVAL;
	}
	return 0;
}

/*
 * A token present, not empty, at most JWT_TOKEN_MAX long (libjwt alloca()s
 * the segments: cap the length before it looks), cut in its three parts.
 */
static int token_parts(const char *token, const char **seg, size_t *seglen,
		       char *err, size_t errlen)
{
	size_t len;

	if (!token) {
		set_err(err, errlen, "no token");
		return -EINVAL;
	}
	len = strnlen(token, JWT_TOKEN_MAX + 1);
	if (len > JWT_TOKEN_MAX) {
		set_err(err, errlen, "token is longer than %d bytes",
			JWT_TOKEN_MAX);
		return -E2BIG;
	}
	if (!len) {
		set_err(err, errlen, "token is empty");
		return -EINVAL;
	}
	return split_token(token, len, seg, seglen, err, errlen);
}

int jwt_peek_claims(const char *token, json_t **claims_out, char *err,
		    size_t errlen)
{
	const char *seg[3];
	size_t seglen[3];
	int rv;

	*claims_out = NULL;
	rv = token_parts(token, seg, seglen, err, errlen);
	if (rv)
		return rv;
	return decode_part(seg[1], seglen[1], "payload", JWT_PAYLOAD_DEPTH,
			   claims_out, err, errlen);
}

int jwt_verify_token(const struct jwt_key *key, const char *token,
		     const struct jwt_expect *expect, time_t now,
		     json_t **claims_out, char *err, size_t errlen)
{
	static const struct jwt_expect defaults;
	json_t *hdr = NULL, *claims = NULL;
	const char *seg[3];
	size_t seglen[3];
	jwt_t *jwt = NULL;
	int rv;

	if (claims_out)
		*claims_out = NULL;
	if (!expect)
		expect = &defaults;
	/* libjwt skips the signature check with an empty key: never pass one */
	if (!key || !key->verify || !key->verify_len) {
		set_err(err, errlen, "no verification key");
		return -EINVAL;
	}
	rv = token_parts(token, seg, seglen, err, errlen);
	if (rv)
		return rv;
	rv = decode_part(seg[0], seglen[0], "header", JWT_HEADER_DEPTH, &hdr,
			 err, errlen);
	if (rv)
		return rv;
	rv = check_header(key, hdr, err, errlen);
	if (rv)
		goto out_free_hdr;
	rv = decode_part(seg[1], seglen[1], "payload", JWT_PAYLOAD_DEPTH,
			 &claims, err, errlen);
	if (rv)
		goto out_free_hdr;

	rv = jwt_decode(&jwt, token, key->verify, (int)key->verify_len);
	if (rv) {
		jwt = NULL;
		if (rv == ENOMEM) {
			set_err(err, errlen, "out of memory");
			rv = -ENOMEM;
		} else {
			set_err(err, errlen,
				"token signature verification failed");
			rv = -EACCES;
		}
		goto out_free_claims;
	}
	if (jwt_get_alg(jwt) != key->alg) {
		set_err(err, errlen, "token alg changed while decoding");
		rv = -EACCES;
		goto out_free_jwt;
	}
	rv = check_claims(claims, expect, now, err, errlen);
	if (rv)
		goto out_free_jwt;
	if (claims_out) {
		*claims_out = claims;
		claims = NULL;
	}

out_free_jwt:
	jwt_free(jwt);
out_free_claims:
	json_decref(claims);
out_free_hdr:
	json_decref(hdr);
	if (rv)
		dbg("token refused: %s", err ? err : "");
	return rv;
}

/* base64url without padding of n bytes at out; returns the length. */
static size_t b64url(const unsigned char *in, size_t n, char *out)
{
	size_t len = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);

	while (len && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	return len;
}

/*
 * JWS signature bytes of in[0, n) with an RS256/ES256 key, into sig (room
 * for *siglen bytes: at least sig_max(key)).
 */
static int pkey_sign(const struct jwt_key *key, const char *in, size_t n,
		     unsigned char *sig, size_t *siglen)
{
	unsigned char *der = NULL;
	size_t derlen = 0, dercap = 0;
	const unsigned char *p;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *es = NULL;
	const BIGNUM *r, *s;
	int rv = -EINVAL;

	if (!md)
		return -ENOMEM;
	/* the size query gives the most the signature can take */
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) != 1 ||
	    EVP_DigestSign(md, NULL, &dercap, (const unsigned char *)in, n) !=
		1)
		goto out;
	der = malloc(dercap);
	if (!der) {
		rv = -ENOMEM;
		goto out;
	}
	derlen = dercap;
	if (EVP_DigestSign(md, der, &derlen, (const unsigned char *)in, n) != 1)
		goto out;
	p = der;
	if (key->alg == JWT_ALG_RS256) {
		if (derlen > *siglen)
			goto out;
		memcpy(sig, der, derlen);
		*siglen = derlen;
		rv = 0;
		goto out;
	}
	/* ES256: DER ECDSA-Sig-Value -> R || S, 32 bytes each */
	es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (!es || *siglen < 64)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, sig, 32) != 32 ||
	    BN_bn2binpad(s, sig + 32, 32) != 32)
		goto out;
	*siglen = 64;
	rv = 0;
out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	if (der) {
		OPENSSL_cleanse(der, dercap);
		free(der);
	}
	return rv;
}

/* The longest JWS signature of the key: RSA's modulus, or R || S. */
static size_t sig_max(const struct jwt_key *key)
{
	int n = EVP_PKEY_get_size(key->pkey);

	return n > 64 ? (size_t)n : 64;
}

/* header.claims.signature for RS256/ES256, from the claims' JSON text. */
static int sign_with_pkey(const struct jwt_key *key, const char *claims,
			  char **out, char *err, size_t errlen)
{
	char hdr[64];
	size_t clen = strlen(claims), n, cap, sigcap = sig_max(key);
	size_t siglen = sigcap;
	unsigned char *sig;
	char *tok;
	int rv;

	snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
		 alg_name(key->alg));
	/* three base64url parts: 4 bytes per 3, plus padding room */
	cap = (strlen(hdr) + 2) / 3 * 4 + (clen + 2) / 3 * 4 +
	      (sigcap + 2) / 3 * 4 + 8;
	if (cap > JWT_TOKEN_MAX * 2) {
		set_err(err, errlen,
			"signed token would be longer than %d bytes",
			JWT_TOKEN_MAX);
		return -E2BIG;
	}
	tok = malloc(cap);
	sig = malloc(sigcap);
	if (!tok || !sig) {
		free(tok);
		free(sig);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n = b64url((const unsigned char *)hdr, strlen(hdr), tok);
	tok[n++] = '.';
	n += b64url((const unsigned char *)claims, clen, tok + n);
	rv = pkey_sign(key, tok, n, sig, &siglen);
	if (rv) {
		set_err(err, errlen,
			"could not sign with the %s key (OpenSSL: %s)",
			alg_name(key->alg), ssl_reason());
		log_err("signing with a %s key failed", alg_name(key->alg));
		free(tok);
		free(sig);
		return rv;
	}
	tok[n++] = '.';
	b64url(sig, siglen, tok + n);
	OPENSSL_cleanse(sig, sigcap);
	free(sig);
	*out = tok;
	return 0;
}

int jwt_sign_token(const struct jwt_key *key, const json_t *claims, char **out,
		   char *err, size_t errlen)
{
	char *text = NULL, *tok = NULL;
	jwt_t *jwt = NULL;
	int64_t exp;
	int rv;

	*out = NULL;
	if (!jwt_key_can_sign(key)) {
		set_err(err, errlen, "key cannot sign (public key only)");
		return -EINVAL;
	}
	if (!json_is_object(claims)) {
		set_err(err, errlen, "claims are not a JSON object");
		return -EINVAL;
	}
	if (json_get_int(claims, "exp", &exp)) {
		set_err(err, errlen, "claims lack an integer 'exp'");
		return -EINVAL;
	}
	rv = json_dump_text(claims, 0, &text, err, errlen);
	if (rv)
		return rv;
	if (key->pkey) {
		rv = sign_with_pkey(key, text, &tok, err, errlen);
		if (rv)
			goto out_free_text;
		goto check_len;
	}
	rv = -jwt_new(&jwt);
	if (rv) {
		jwt = NULL;
		set_err(err, errlen, "out of memory");
		goto out_free_text;
	}
	rv = -jwt_add_grants_json(jwt, text);
	if (rv) {
		set_err(err, errlen, "libjwt refused the claims");
		goto out_free_jwt;
	}
	rv = -jwt_set_alg(jwt, key->alg, key->sign, (int)key->sign_len);
	if (rv) {
		set_err(err, errlen, "libjwt refused the %s key",
			alg_name(key->alg));
		goto out_free_jwt;
	}
	errno = 0;
	tok = jwt_encode_str(jwt);
	if (!tok) {
		rv = errno == ENOMEM ? -ENOMEM : -EINVAL;
		set_err(err, errlen, "libjwt could not sign with the %s key",
			alg_name(key->alg));
		log_err("jwt_encode_str failed for a %s key",
			alg_name(key->alg));
		ERR_clear_error();
		goto out_free_jwt;
	}
check_len:
	if (strlen(tok) > JWT_TOKEN_MAX) {
		set_err(err, errlen,
			"signed token would be longer than %d bytes",
			JWT_TOKEN_MAX);
		free(tok);
		rv = -E2BIG;
		goto out_free_jwt;
	}
	*out = tok;
	rv = 0;

out_free_jwt:
	jwt_free(jwt);
out_free_text:
	free(text);
	return rv;
}

bool jwt_user_name_valid(const char *name)
{
	size_t n;

	if (!name || !*name || *name == '-' || *name == '.' || *name == '@')
		return false;
	for (n = 0; name[n]; n++) {
		unsigned char c = (unsigned char)name[n];

		if (n >= JWT_USER_MAX)
			return false;
		if (!is_alnum(c) && c != '_' && c != '.' && c != '@' &&
		    c != '-')
			return false;
	}
	return true;
}
