/*
 * site_slurmrestd.h: the slurmrestd (openapi/v0.0.38, Slurm 22.05) site
 * adapter, behind the interface of site.h (site_slurmrestd_ops).  What is
 * exported here beyond that is for tests and tools: the pure functions
 * that build a submit body and read an answer.
 *
 * Facts it is built on (docs: slurm-facts README section 8):
 *  - base <url>/slurm/v0.0.38; headers X-SLURM-USER-NAME and
 *    X-SLURM-USER-TOKEN.  jwt-key: an HS256 JWT {sun, iat, exp} minted
 *    with the site's key, cached per user until 1/5 of its lifetime is
 *    left (dropped early when the site refuses it).  jwt-user: the user's
 *    registered token, as given.
 *  - errors come in two shapes, {error, error_code} and {description,
 *    error_number, error, source}; the status is 500 for a bad token and
 *    for unknown job ids alike, so the error number decides:
 *    2017 -> NOT_FOUND, 2002 -> DENIED, -1 / 1xxx / 5xxx -> BACKEND
 *    (slurmctld unreachable, or it refused the credential: a bad token
 *    gives "Unable to find JobId=N" with error_number -1, not 2017),
 *    anything else -> REJECTED with the site's text verbatim.
 *  - 400 with plain text ("Unable to parse query") -> REJECTED verbatim;
 *    401 plain text -> AUTH.
 *  - a submit answered with a job_id is a success even when errors come
 *    with it (the job exists: "Requested partition configuration not
 *    available now" leaves it PENDING): they become result.message.
 *  - GET /jobs?update_time=T answers 304 with no body when nothing
 *    changed, else every job in memory (a full snapshot).
 *  - DELETE of a job that already ended answers 200.
 *  - exit_code is a raw wait status (slurm_state.h decodes it).
 */
#ifndef TIERGATE_SITE_SLURMRESTD_H
#define TIERGATE_SITE_SLURMRESTD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "site.h"

#define SLURMRESTD_API_PREFIX "/slurm/v0.0.38"
/* GET /jobs answers hold every job in memory: a bigger cap than usual. */
#define SLURMRESTD_LIST_MAX_RESPONSE (64u * 1024 * 1024)

/*
 * The JSON body of POST /job/submit for req (see struct site_submit),
 * with default_partition used when req->partition is NULL.  On success
 * *out is malloc'd.  -EINVAL (no script, bad tag, environment not an
 * object of strings) or -ENOMEM, with err set.
 */
int site_slurmrestd_submit_body(const struct site_submit *req,
				const char *default_partition, char **out,
				char *err, size_t errlen);

/*
 * Read one answer into r (cleared first).  op, job_id (get) and tag
 * (find_by_tag) say what was asked; http_rc is http_request_result() (0:
 * an HTTP answer with status and body; < 0: transport error described by
 * transport_error).
 */
void site_slurmrestd_parse(enum site_op op, uint32_t job_id, const char *tag,
			   int http_rc, long status, const char *body,
			   size_t len, const char *transport_error,
			   struct site_result *r);

/*
 * Tests and benchmarks: read list answers with jansson only (false) or,
 * the default, with slurmrestd_list.c's stream reader where it can.
 */
void site_slurmrestd_stream_lists(bool on);

/* Tests: the wall clock used for token claims (NULL: time()). */
void site_slurmrestd_set_clock(struct site *s, time_t (*now)(void));

struct site_slurmrestd_stats {
	unsigned tokens_cached;
	uint64_t tokens_minted, tokens_reused, tokens_dropped;
};
void site_slurmrestd_stats(const struct site *s,
			   struct site_slurmrestd_stats *st);

#endif
