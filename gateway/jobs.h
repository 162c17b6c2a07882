/*
 * jobs.h: the gateway's jobs: an in-memory index over the store, and one
 * task per unfinished job that carries it through the site.
 *
 * Exactly-once submit: a new job is committed (ACCEPTED) before the API
 * answers; before the site is called the job is marked SUBMITTING with the
 * intent journaled; the Slurm job carries the gateway id as its name and
 * comment (the tag).  After a timeout, a lost reply or a restart in
 * SUBMITTING, the task first asks the site for a job with that tag and
 * adopts it; only when the site has none does it submit again.
 *
 * Cancel is a message: accepted in any state, applied by the job's own
 * task (before the site has an id: the job ends without being submitted;
 * with an id: the site is asked, and asked again until it confirms).
 *
 * Loop-thread only.
 */
#ifndef TIERGATE_JOBS_H
#define TIERGATE_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gw.h"
#include "site.h"
#include "store.h"
#include "task.h"

struct jobs;

#define JOB_TASK_STATES(X)                                                     \
	X(JOURNALING) /* new job: waiting for the durable insert */            \
	X(MARKING) /* journal SUBMITTING + intent before calling the site */   \
	X(FINDING) /* ask the site for a job with our tag: adopt it */         \
	X(SUBMITTING) /* the site call */                                      \
	X(RECORDING)  /* journal the site's job id */                          \
	X(TRACKING)   /* wait for the poller, events, a cancel */              \
	X(SAVING)     /* journal a change the poller or an event brought */    \
	X(CANCELLING) /* ask the site to cancel */                             \
	X(BACKOFF)    /* the site failed; try again later */                   \
	X(FINISHING)  /* journal the final state */

enum job_task_state { JOB_TASK_STATES(TASK_STATE_ENUM) };

struct gw_job {
	struct task task;
	struct jobs *jobs;
	struct gw_site *site;
	struct store_job rec; /* what the API shows; journaled by the task */
	uint64_t dirty;	      /* STORE_F bits changed, not yet journaled */
	uint64_t inflight;    /* bits in the write in flight */
	uint64_t
	    slurm_id_at_ms;	/* when the site's id was learnt (loop clock) */
	uint64_t find_after_ms; /* a lookup by tag must start after this */
	struct site_call *call; /* while the job talks to its site, else NULL */
	struct store_req sreq;
	char site_user[64];
	bool cancel_pending; /* a cancel not yet applied at the site */
	/* why the site has not taken the job yet ("try again": its job table
	   full), its words; not journaled: the next try says it again */
	char *waiting_msg;
	int64_t waiting_since; /* unix seconds */
	/* job_json_text's copy, and the fingerprint of what it shows */
	char *json_text;
	size_t json_len;
	uint64_t json_fp;
	unsigned attempts; /* site calls failed in a row */
	enum job_task_state after_backoff;
	/* a new job: who waits for the durable ack */
	void (*created_cb)(struct gw_job *j, int rv, void *arg);
	void *created_arg;
	/* index */
	struct gw_job *id_next, *slurm_next;
	struct gw_job *older, *newer;
	struct gw_job *user_older; /* the same user's next older job */
	bool in_slurm_index;
};

/* What POST /v1/jobs asks for, validated by the API layer. */
struct job_request {
	const char *user;
	const char *site;
	const char *tier;
	const char *name;
	const char *script;
	const json_t *environment; /* object of strings, may be NULL */
	uint32_t ntasks, cpus_per_task, time_limit_min; /* 0: not given */
	const char *idempotency_key;			/* may be NULL */
	const char *body_hash; /* of the canonical request body */
	const char *request_body;
	const char *request_id;
};

int jobs_new(struct gw *gw, struct jobs **out);
void jobs_free(struct jobs *js);
/*
 * Shutdown, once the loop has stopped: end every job's task without a step
 * (task_abandon; a cancel would be the user's).  Their state is in the
 * store, and the next start resumes them.
 */
void jobs_park(struct jobs *js);
/* Start-up: index every job in the store; resume the unfinished. */
int jobs_load(struct jobs *js, size_t *n_loaded);

struct gw_job *jobs_find(struct jobs *js, const char *id);
struct gw_job *jobs_find_slurm(struct jobs *js, const char *site,
			       uint32_t slurm_id);
/* Newest first; fn returns non-zero to stop. */
void jobs_foreach(struct jobs *js, int (*fn)(struct gw_job *j, void *arg),
		  void *arg);
/* The jobs of one gateway user, newest first: O(theirs), not O(all). */
void jobs_foreach_user(struct jobs *js, const char *user,
		       int (*fn)(struct gw_job *j, void *arg), void *arg);
size_t jobs_count(const struct jobs *js, enum store_job_state state);

/*
 * Create and journal a job.  cb(j, rv, arg) runs once the insert is
 * durable (rv 0), or the idempotency key matched an existing job (rv 1,
 * j is that job), or failed: -EEXIST (same key, other body: j is the
 * stored job), or a store error (j NULL).  Returns 0 or -errno (then cb is
 * not called).
 */
int jobs_create(struct jobs *js, const struct job_request *req,
		void (*cb)(struct gw_job *j, int rv, void *arg), void *arg);

/*
 * The site answers again (its breaker closed): jobs backing off from it
 * (finding, submitting, cancelling) retry now, a few milliseconds apart,
 * instead of at the end of a backoff that grew while it was down.
 */
void jobs_site_recovered(struct jobs *js, const struct gw_site *s);
/* Record a cancel request (idempotent) and wake the job's task. */
void job_request_cancel(struct gw_job *j, const char *who);

/* From the site poller: the site's view of the job. */
void job_apply_site(struct gw_job *j, const struct site_job *sj);
/* From the site poller: the site no longer knows the job. */
void job_apply_missing(struct gw_job *j);
/*
 * What a node's event changes in the job, committed with the event
 * (store_event_insert): fills upd (initialized here; the caller clears it)
 * and returns its STORE_F fields.  step_end adds CPU-seconds and the charge
 * at the tier's rate; the batch task's exit code; and a job the site forgot
 * before its end was seen (unknown) takes its final state from it.
 */
uint64_t job_event_update(const struct gw_job *j, const json_t *event,
			  struct store_job *upd);
/* Once that commit is durable: the same fields into the job in memory. */
void job_apply_update(struct gw_job *j, const struct store_job *upd,
		      uint64_t fields);

/*
 * The output store's stream key for a job's stdout/stderr: "<gateway
 * id>-<stream>" for a gateway job (a site that reuses Slurm ids cannot mix
 * two jobs' output), the plain stream name for other jobs.
 */
void output_stream_key(const char *gw_job_id, const char *stream, char *buf,
		       size_t len);

/* The API's view of the job (new reference). */
json_t *job_to_json(const struct gw_job *j);
/*
 * The same, serialized as http_reply_json would (compact, sorted keys),
 * kept until what it shows changes: a job polled by web services is
 * serialized once per change, not once per GET.  Owned by the job; NULL
 * when out of memory.
 */
const char *job_json_text(struct gw_job *j, size_t *len);
const char *job_debug_str(const struct gw_job *j, char *buf, size_t len);
bool job_final(const struct gw_job *j);

#endif
