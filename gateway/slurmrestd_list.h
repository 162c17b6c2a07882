/*
 * slurmrestd_list.h: slurmrestd's job lists (GET /slurm/v0.0.38/jobs) read
 * as a stream of events (yajl), the one place the gateway uses yajl.
 *
 * Slurm answers a list with every job it holds whenever anything changed,
 * about 3 KB of JSON per job: 30 MB at 10 000 jobs, of which the poller
 * needs ten fields per job.  Building jansson's tree of all of it and
 * freeing it again cost ~370 ms for 21 MB here; reading the events and
 * keeping only those fields costs ~50 ms (docs/performance.md).
 *
 * Only a plain answer is read this way: an object whose "jobs" is an array
 * and whose "errors" (if any) is empty.  Everything else, and anything the
 * full parser would judge differently (a string with a NUL, a field too
 * long to copy, no readable job at all), is left to the jansson path in
 * site_slurmrestd.c, so both give the same result (the unit tests compare
 * them job by job).  One difference is left: jansson refuses an answer
 * with a duplicate key anywhere; this reader takes the last value.
 * slurmrestd builds its answers from dictionaries and never sends one.
 */
#ifndef TIERGATE_SLURMRESTD_LIST_H
#define TIERGATE_SLURMRESTD_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "site.h"

/*
 * One job of a list as the answer gave it: a string NULL and has_* false
 * when the key is absent or its value of another type.  Both readers (the
 * stream here, jansson's tree in site_slurmrestd.c) fill one and hand it
 * to slurmrestd_job_fill, so a job reads the same either way.
 */
struct slurmrestd_job_fields {
	bool has_id, has_exit;
	int64_t id, exit_code;
	int64_t submit, start, end; /* 0 when absent */
	const char *state, *reason, *comment, *user, *nodes;
};

/* Into out (cleared first); -EINVAL when the job has no usable job_id. */
int slurmrestd_job_fill(const struct slurmrestd_job_fields *f,
			struct site_job *out);

/*
 * Read a 2xx list answer into r->jobs / r->n_jobs, keeping only jobs tagged
 * `tag` when tag is not NULL.  0 when done; 1 when the answer needs the full
 * parser, with r as it was; -ENOMEM (r->err set) when out of memory.
 */
int slurmrestd_list_read(const char *body, size_t len, const char *tag,
			 struct site_result *r);

#endif
