/* digest.c: see digest.h. */
#include "digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/*
 * OpenSSL 3 looks EVP_sha256()'s implementation up in its providers at
 * every EVP_Digest (a lock and a hash table: a quarter of the time of
 * hashing a bearer token per request); fetched once, it is not.
 */
static EVP_MD *sha256_md;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int digest_sha256(const void *data, size_t len, unsigned char out[32])
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	unsigned int n = 0;

	pthread_once(&once, sha256_fetch);
	if (!EVP_Digest(data, len, out, &n,
			sha256_md ? sha256_md : EVP_sha256(), NULL) ||
	    n != 32) {
		memset(out, 0, 32);
		return -EIO;
	}
	return 0;
}

void digest_sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hx[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int i;

	digest_sha256(data, len, md); /* zeros on failure: no real body's */
	for (i = 0; i < 32; i++) {
		out[2 * i] = hx[md[i] >> 4];
		out[2 * i + 1] = hx[md[i] & 15];
	}
	out[64] = '\0';
}

int digest_report_payload(const char *method, const char *path,
			  const void *body, size_t len, char *buf,
			  size_t buflen)
{
	char hex[65];
	int n;

	digest_sha256_hex(len ? body : "", len, hex);
	n = snprintf(buf, buflen, "%s %.*s\n%s", method,
		     (int)strcspn(path, "?"), path, hex);
	return n < 0 || (size_t)n >= buflen ? -ENOSPC : n;
}
