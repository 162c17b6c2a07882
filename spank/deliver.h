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
/*
 * Reports of several jobs may share a request when they go to one gateway
 * with one MUNGE realm (or no auth); a ticket speaks for its own job only.
 */
bool deliverer_can_share(const struct deliverer *d);
bool deliverer_same_route(const struct deliverer *a, const struct deliverer *b);
/* A deliverer for d's route with no job's ticket or request id. */
struct deliverer *deliverer_shared(const struct deliverer *d);

/* Events in one POST at most (the gateway takes up to 256, and bodies
 * up to its max_body, 1 MiB by default; an event is at most 64 KiB) */
#define DELIVER_EVENTS_MAX 64
#define DELIVER_EVENTS_BYTES (256 * 1024)

/*
 * POST n (1..DELIVER_EVENTS_MAX) events, JSON objects, as one batch.  The
 * result of the request as above; when it is 0 the gateway answered each
 * event, in order, and results[i] says what became of event i: 0 stored,
 * -EBADMSG refused for good, else retry it and the ones after it.
 * -E2BIG: the gateway takes smaller bodies (413): send fewer at a time.
 */
int deliver_events(struct deliverer *d, const char *const *jsons, size_t n,
		   int *results, long timeout_ms, char *err, size_t errlen);
int deliver_chunk(struct deliverer *d, const char *site, uint32_t job_id,
		  const char *stream, uint64_t offset, const void *data,
		  size_t len, bool eof, long timeout_ms, uint64_t *next_offset,
		  char *err, size_t errlen);

#endif
