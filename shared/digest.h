/*
 * digest.h: SHA-256, and the payload a node's MUNGE credential vouches for
 * (docs/protocol.md): "<METHOD> <path without query>\n<sha256 hex of body>".
 * The relay signs it (spank/deliver.c) and the gateway checks it
 * (gateway/auth.c): one definition for both sides of the wire.
 */
#ifndef TIERGATE_DIGEST_H
#define TIERGATE_DIGEST_H

#include <stddef.h>

/* SHA-256(data): 0, or -EIO with out zeroed (OpenSSL failed). */
int digest_sha256(const void *data, size_t len, unsigned char out[32]);

/* Lowercase hex of SHA-256(data), NUL-terminated. */
void digest_sha256_hex(const void *data, size_t len, char out[65]);

/* The report payload into buf; its length, or -ENOSPC. */
int digest_report_payload(const char *method, const char *path,
			  const void *body, size_t len, char *buf,
			  size_t buflen);

#endif
