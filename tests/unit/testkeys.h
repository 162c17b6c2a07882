/*
 * testkeys.h: TEST-ONLY helpers that make fresh keys and hand-built tokens
 * at run time, so no key is ever committed.  Header-only (static inline) so
 * the Makefile does not link it into every unit test.
 */
#ifndef TIERGATE_TESTKEYS_H
#define TIERGATE_TESTKEYS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

/* Copy a memory BIO into a malloc'd string. */
static inline char *tk_bio_str(BIO *b)
{
	BUF_MEM *bm = NULL;
	char *s;

	BIO_get_mem_ptr(b, &bm);
	s = malloc(bm->length + 1);
	if (!s)
		abort();
	memcpy(s, bm->data, bm->length);
	s[bm->length] = '\0';
	return s;
}

/*
 * A fresh key pair as PEM strings.  kind: "EC" (curve arg, e.g. "P-256")
 * or "RSA" (bits).  sec1: write the EC private key as "EC PRIVATE KEY"
 * (traditional) instead of PKCS#8.  Caller frees *priv and *pub.
 */
static inline void tk_keypair(const char *kind, const char *curve, size_t bits,
			      bool sec1, char **priv, char **pub)
{
	EVP_PKEY *k;
	BIO *b;

	if (!strcmp(kind, "EC"))
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
	if (!k)
		abort();
	b = BIO_new(BIO_s_mem());
	if (sec1) {
		if (!PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0,
							  NULL, NULL))
			abort();
	} else if (!PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)) {
		abort();
	}
	*priv = tk_bio_str(b);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	if (!PEM_write_bio_PUBKEY(b, k))
		abort();
	*pub = tk_bio_str(b);
	BIO_free(b);
	EVP_PKEY_free(k);
}

/* An AES-encrypted PKCS#8 PEM of a fresh P-256 key (passphrase "pw"). */
static inline char *tk_encrypted_ec(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	BIO *b = BIO_new(BIO_s_mem());
	char *s;

	if (!k || !b ||
	    !PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_128_cbc(), "pw", 2,
					   NULL, NULL))
		abort();
	s = tk_bio_str(b);
	BIO_free(b);
	EVP_PKEY_free(k);
	return s;
}

/* Unpadded base64url of n bytes; malloc'd. */
static inline char *tk_b64url(const void *data, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				"abcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *p = data;
	char *out = malloc(n * 4 / 3 + 4), *o = out;
	size_t i;

	if (!out)
		abort();
	for (i = 0; i + 2 < n; i += 3) {
		*o++ = a[p[i] >> 2];
		*o++ = a[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = a[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = a[p[i + 2] & 63];
	}
	if (n - i == 1) {
		*o++ = a[p[i] >> 2];
		*o++ = a[(p[i] & 3) << 4];
	} else if (n - i == 2) {
		*o++ = a[p[i] >> 2];
		*o++ = a[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = a[(p[i + 1] & 15) << 2];
	}
	*o = '\0';
	return out;
}

/* "b64(hdr).b64(payload).sig" with sig used as is; malloc'd. */
static inline char *tk_raw_token(const char *hdr, const char *payload,
				 const char *sig)
{
	char *h = tk_b64url(hdr, strlen(hdr));
	char *p = tk_b64url(payload, strlen(payload));
	size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
	char *t = malloc(n);

	if (!t)
		abort();
	snprintf(t, n, "%s.%s.%s", h, p, sig);
	free(h);
	free(p);
	return t;
}

/*
 * An HS256 token over hand-written header and payload JSON, signed with
 * `secret` (any bytes: tests use it to forge alg-confusion tokens).
 */
static inline char *tk_hs256_token(const void *secret, size_t slen,
				   const char *hdr, const char *payload)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char *t = tk_raw_token(hdr, payload, ""), *sig, *out;
	size_t n;

	/* t is "h.p." : sign "h.p" */
	n = strlen(t) - 1;
	if (!HMAC(EVP_sha256(), secret, (int)slen, (unsigned char *)t, n, mac,
		  &maclen))
		abort();
	sig = tk_b64url(mac, maclen);
	out = malloc(n + strlen(sig) + 2);
	if (!out)
		abort();
	memcpy(out, t, n + 1);
	strcpy(out + n + 1, sig);
	free(t);
	free(sig);
	return out;
}

/* Write text to dir/name; returns the malloc'd path. */
static inline char *tk_write_file(const char *dir, const char *name,
				  const void *data, size_t n)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = malloc(len);
	FILE *f;

	if (!path)
		abort();
	snprintf(path, len, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fwrite(data, 1, n, f) != n || fclose(f))
		abort();
	return path;
}

/*
 * A key file: tk_write_file, then mode 0600 as keys should have (the
 * gateway warns otherwise).  Returns the path (free it).
 */
static inline char *tk_write_key(const char *dir, const char *name,
				 const void *data, size_t n)
{
	char *path = tk_write_file(dir, name, data, n);

	if (chmod(path, 0600))
		abort();
	return path;
}

#endif
