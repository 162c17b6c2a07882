/*
 * deliver.h: send events and output chunks to the gateway (libcurl easy,
 * one connection kept alive per deliverer).  The wire format is
 * docs/protocol.md.  Authentication per args.h report_auth:
 *   munge:  "Authorization: MUNGE <cred>", the credential's payload being
 *           "<METHOD> <path>\n<sha256 hex of body>" so it vouches for this
 *           request only; munged's replay check refuses a second use.
 *   ticket: "Authorization: Bearer <the job's gateway ticket>".
 *
 * Results: 0 delivered; -EAGAIN worth retrying (connection refused,
 * timeout, 5xx, 429); -EINPROGRESS retry this job's reports later, the
 * gateway is fine (503 job_not_ready: it does not know the Slurm job yet);
 * -EBADMSG the gateway refused it for good (4xx); for
 * chunks -ESPIPE when the gateway holds a different length (*next_offset
 * says which).
 */
#ifndef TIERGATE_SPANK_DELIVER_H
#define TIERGATE_SPANK_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "args.h"

struct deliver_cfg {
	const char *gateway; /* base URL, e.g. http://127.0.0.1:8480 */
	enum report_auth auth;
	const char *munge_socket; /* NULL: munge's default */
	const char *ticket;	  /* NULL unless auth is ticket */
	const char *request_id;	  /* sent as X-Request-ID, may be NULL */
};

struct deliverer;

/* Copies cfg; NULL on ENOMEM. */
struct deliverer *deliverer_new(const struct deliver_cfg *cfg);
void deliverer_free(struct deliverer *d);

int deliver_event(struct deliverer *d, const char *json, long timeout_ms,
		  char *err, size_t errlen);
int deliver_chunk(struct deliverer *d, const char *site, uint32_t job_id,
		  const char *stream, uint64_t offset, const void *data,
		  size_t len, bool eof, long timeout_ms, uint64_t *next_offset,
		  char *err, size_t errlen);

#endif
