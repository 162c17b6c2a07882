/*
 * site.h: the site-adapter interface.  A site is a Slurm cluster the
 * gateway submits to; an adapter is one file that speaks one kind of site
 * (site_slurmrestd.c: slurmrestd openapi/v0.0.38 with JWT).  A new kind of
 * site is one new file plus one line in site.c's table.
 *
 * Every operation is asynchronous and runs on the loop thread:
 *
 *   struct site_call call;                 // embedded in the caller, zeroed
 *   call.task = &job->task;                // woken with SITE_CALL_WAKE
 *   rv = site_submit(site, &as, &sub, &call);
 *   if (rv < 0) ...call is DONE, call.result says why, no wake...
 *   ... TASK_WAIT; woken: if (!site_call_done(&call)) keep waiting ...
 *   call.result.err == SITE_ERR_OK ? call.result.job_id : call.result.message
 *
 * A call is IDLE, IN_FLIGHT or DONE.  While IN_FLIGHT it holds a task
 * reference (like worker jobs), so a call embedded in a task's object keeps
 * that object alive; the task must site_call_abort() it before it ends.
 * The completion is delivered exactly once, on the loop thread, outside any
 * libcurl callback: the task is woken, then `done` (if set) is called.
 * site_call_abort() stops it: nothing is delivered afterwards.  A DONE call
 * may be reused for the next operation (its result is cleared then); its
 * result owns memory (jobs) until then or site_call_reset().
 *
 * Errors have a stable code (enum site_err, names below) and, when the
 * site said something, the site's own message verbatim (a job_submit
 * rejection, "Invalid partition name specified"), so it can reach the user
 * as `site_rejected`.  Jobs the site no longer knows (purged after
 * MinJobAge) are SITE_ERR_NOT_FOUND on get: their state is `unknown`,
 * never a guessed final state (slurm_status_missing).
 *
 * Exactly-once: result.outcome_unknown is true when a submit or cancel
 * may have been applied although no clear answer came back (timeout,
 * connection lost after sending, garbage, controller trouble).  Before
 * submitting again, look for the job with site_find_by_tag(): every job
 * carries the gateway's tag (job name, and comment "tiergate:<tag>").
 */
#ifndef TIERGATE_SITE_H
#define TIERGATE_SITE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_client.h"
#include "loop.h"
#include "slurm_state.h"
#include "task.h"

struct site;
struct site_call;
struct worker_pool;

/* The wake a call's task gets on completion. */
#define SITE_CALL_WAKE TASK_WAKE_IO

/* ----------------------------------------------------------- config */

/* X(ENUM, "config word") */
#define SITE_AUTH_MODES(X)                                                     \
	X(JWT_KEY, "jwt-key")	/* mint HS256 tokens with the site's key */    \
	X(JWT_USER, "jwt-user") /* each user registered a token */             \
	X(MUNGE, "munge")	/* a MUNGE realm (not a slurmrestd mode) */

enum site_auth {
#define SITE_AUTH_ENUM_(e, word) SITE_AUTH_##e,
	SITE_AUTH_MODES(SITE_AUTH_ENUM_)
#undef SITE_AUTH_ENUM_
};
const char *site_auth_name(enum site_auth a);
/* 0 and *out for "jwt-key" etc.; -EINVAL otherwise. */
int site_auth_parse(const char *word, enum site_auth *out);

#define SITE_DEFAULT_REQUEST_TIMEOUT_S 10
#define SITE_DEFAULT_MAX_CONNECTIONS 4
#define SITE_DEFAULT_JWT_LIFETIME_S 300

/*
 * What an adapter needs from a [site NAME] section.  Borrowed by
 * site_new (everything is copied).  Zero numbers mean the defaults.
 */
struct site_config {
	const char *name;      /* "alpha" */
	const char *kind;      /* adapter, NULL: "slurmrestd" */
	const char *url;       /* "http://127.0.0.1:6820" or "unix:/path" */
	enum site_auth auth;   /* jwt-key | jwt-user | munge */
	const char *jwt_key;   /* jwt-key: path of the site's HS256 key */
	const char *partition; /* default partition, NULL: the site's */
	unsigned request_timeout_s; /* per call, total */
	unsigned max_connections;   /* transfers at once to this site */
	unsigned jwt_lifetime_s;    /* minted token lifetime */
};

/*
 * Who a call runs as at the site.  user: the site's user name (after the
 * gateway's user map).  token: jwt-user mode, the user's own token (NULL
 * in jwt-key mode).  Both borrowed for the duration of the call only.
 */
struct site_cred {
	const char *user;
	const char *token;
};

/*
 * What a config reload may change in a running site (SIGHUP): the rest of
 * site_config needs a restart.  Zero numbers mean the defaults.
 */
struct site_limits {
	const char *partition;
	unsigned request_timeout_s, max_connections, jwt_lifetime_s;
};
/* Apply to calls started from now on.  0 or -ENOMEM (nothing changed). */
int site_set_limits(struct site *s, const struct site_limits *lim);
/*
 * Big answers (a list of thousands of jobs: tens of MB of JSON) are
 * parsed on these workers, not on the loop thread.  The pool must outlive
 * the site's calls (NULL: parse on the loop thread).
 */
void site_set_workers(struct site *s, struct worker_pool *workers);

/* -------------------------------------------------------- requests */

#define SITE_TAG_MAX 64
#define SITE_TAG_COMMENT_PREFIX "tiergate:"

/*
 * A batch job.  Borrowed for the duration of site_submit() (the adapter
 * copies what it sends).
 */
struct site_submit {
	const char *tag;    /* gateway job id, [A-Za-z0-9._-]{1,64}: the job's
			       name, and its comment "tiergate:<tag>" */
	const char *script; /* "#!/bin/bash\n..." */
	const char *partition; /* NULL: the site's default (site_config) */
	const char *cwd;       /* NULL: "/tmp" */
	/*
	 * Object of string values, passed through as the job's environment:
	 * the caller puts TIERGATE_TICKET, TIERGATE_REQUEST_ID,
	 * _SLURM_SPANK_OPTION_tiergate_cpu_tier and
	 * SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier in it.  PATH is
	 * added (/usr/bin:/bin) when absent.  NULL: only PATH.
	 */
	const json_t *environment;
	const char *std_out, *std_err; /* NULL: Slurm's default */
	uint32_t tasks, cpus_per_task, time_limit_min; /* 0: not sent */
};

/* -------------------------------------------------------- results */

/*
 * X(ENUM, "stable code", transient).  Transient errors say nothing about
 * the request itself: retry later (and count them in the site's breaker).
 *   UNAVAILABLE  no HTTP answer, or not slurmrestd's (refused, reset,
 *                garbage, a proxy's 502)
 *   TIMEOUT      no answer in time
 *   BACKEND      slurmrestd answered but slurmctld did not, or refused
 *                the token (Slurm errors -1, 1xxx, 5xxx)
 *   AUTH         401, or no usable credential
 *   REJECTED     the site refused the request: message verbatim
 *   NOT_FOUND    invalid job id (purged after MinJobAge, or never there)
 *   DENIED       Access/permission denied (another user's job)
 *   PROTOCOL     an answer we cannot read
 *   CANCELLED    the call was aborted, or the site closed
 *   INTERNAL     local: bad arguments, no memory, no key
 */
#define SITE_ERRORS(X)                                                         \
	X(OK, "ok", false)                                                     \
	X(UNAVAILABLE, "site_unavailable", true)                               \
	X(TIMEOUT, "site_timeout", true)                                       \
	X(BACKEND, "site_backend", true)                                       \
	X(AUTH, "site_auth", false)                                            \
	X(REJECTED, "site_rejected", false)                                    \
	X(NOT_FOUND, "not_found", false)                                       \
	X(DENIED, "forbidden", false)                                          \
	X(PROTOCOL, "site_protocol", false)                                    \
	X(CANCELLED, "cancelled", false)                                       \
	X(INTERNAL, "internal", false)

enum site_err {
#define SITE_ERR_ENUM_(e, code, transient) SITE_ERR_##e,
	SITE_ERRORS(SITE_ERR_ENUM_)
#undef SITE_ERR_ENUM_
	    SITE_ERR_COUNT_
};
/* The stable code, "site_rejected". */
const char *site_err_name(enum site_err e);
bool site_err_transient(enum site_err e);
/*
 * The API error code (docs/api.md) for a call that failed with e:
 * site_rejected, not_found, forbidden, site_unavailable or internal.
 */
const char *site_err_api_code(enum site_err e);

#define SITE_MSG_MAX 1024
#define SITE_USER_MAX 64
#define SITE_NODES_MAX 128

/* One job as the site reports it. */
struct site_job {
	uint32_t job_id;
	char tag[SITE_TAG_MAX + 1]; /* from comment "tiergate:<tag>", or "" */
	char user[SITE_USER_MAX];   /* user_name */
	struct slurm_status status; /* mapped state, reason, exit */
	int64_t submit_time, start_time, end_time; /* unix, 0 if not yet */
	char nodes[SITE_NODES_MAX];		   /* truncated */
};

struct site_result {
	enum site_err err;
	int http_status;      /* 0: no HTTP answer */
	int slurm_errno;      /* first error's number/code, 0 when none */
	bool outcome_unknown; /* submit/cancel may have been applied */
	/*
	 * Not applied, and to be tried again later without a lookup or a
	 * strike against the site: no connection to the site came free in
	 * time (our bound), or slurmctld said "try again" to a submit (its
	 * job table full: MaxJobCount), as sbatch would retry.
	 */
	bool busy;
	/*
	 * The site's text verbatim (error descriptions joined by "; ",
	 * job_submit_user_msg first), or ours for transport errors.  On a
	 * successful submit: warnings the site returned with the job id.
	 */
	char message[SITE_MSG_MAX];
	uint32_t job_id;    /* submit */
	char user_msg[256]; /* submit: job_submit_user_msg */
	bool not_modified;  /* list: nothing changed since update_time */
	/*
	 * get: the job; list: every job the site holds (a full snapshot:
	 * a job missing from it was purged); find_by_tag: the jobs carrying
	 * the tag (0, 1, or more if something submitted twice).
	 */
	struct site_job *jobs;
	size_t n_jobs;
	bool sorted; /* by job_id (site_result_sort) */
	uint64_t elapsed_ms;
};

/* Free the jobs and zero r. */
void site_result_clear(struct site_result *r);
/* The job with id, or NULL. */
/* Sort jobs by id: site_result_find is then O(log n) (a poll's check of
 * every tracked job against a 10 000-job list). */
void site_result_sort(struct site_result *r);
const struct site_job *site_result_find(const struct site_result *r,
					uint32_t job_id);

/* ----------------------------------------------------------- calls */

#define SITE_OPS_LIST(X)                                                       \
	X(SUBMIT)                                                              \
	X(GET)                                                                 \
	X(LIST)                                                                \
	X(FIND_BY_TAG)                                                         \
	X(CANCEL)                                                              \
	X(PING)

enum site_op {
#define SITE_OP_ENUM_(name) SITE_OP_##name,
	SITE_OPS_LIST(SITE_OP_ENUM_)
#undef SITE_OP_ENUM_
};
const char *site_op_name(enum site_op op);

#define SITE_CALL_STATES(X)                                                    \
	X(IDLE)                                                                \
	X(IN_FLIGHT)                                                           \
	X(DONE)

enum site_call_state {
#define SITE_CALL_STATE_ENUM_(name) SITE_CALL_##name,
	SITE_CALL_STATES(SITE_CALL_STATE_ENUM_)
#undef SITE_CALL_STATE_ENUM_
};
const char *site_call_state_name(enum site_call_state s);

/*
 * Embedded in the caller's object and zeroed before first use.  The
 * public fields are set before a call; result is valid once DONE.
 */
struct site_call {
	/* public */
	struct task *task; /* woken with SITE_CALL_WAKE when DONE */
	void (*done)(struct site_call *call, void *arg); /* optional */
	void *arg;
	struct site_result result;
	/* private: site.c and the adapter */
	struct site *site;
	enum site_op op;
	enum site_call_state state;
	struct task *held_task; /* referenced while in flight */
	uint32_t job_id;
	char tag[SITE_TAG_MAX + 1];
	char user[SITE_USER_MAX];
	uint64_t started_ms;
	void *io;    /* the adapter's in-flight handle */
	void *parse; /* the adapter's answer being parsed on a worker */
	struct site_call *prev, *next;
};

/*
 * The operations.  `as` is who the call runs as.  0: in flight, the
 * completion will be delivered.  < 0: nothing in flight, nothing will be
 * delivered, call->result says why (err INTERNAL/AUTH/..., message):
 * -EBUSY (call already in flight: left untouched), -EINVAL (arguments),
 * -EACCES (jwt-user: no token), -ENOMEM,
 * -ESHUTDOWN.
 */
int site_submit(struct site *s, const struct site_cred *as,
		const struct site_submit *req, struct site_call *call);
/* One job by id; NOT_FOUND when the site does not know it (any more). */
int site_get(struct site *s, const struct site_cred *as, uint32_t job_id,
	     struct site_call *call);
/*
 * Every job the site holds, in one request.  update_time > 0: only if
 * something changed since then (else result.not_modified).
 */
int site_list(struct site *s, const struct site_cred *as, int64_t update_time,
	      struct site_call *call);
/* The site's jobs carrying `tag` (exactly-once adoption after a crash). */
int site_find_by_tag(struct site *s, const struct site_cred *as,
		     const char *tag, struct site_call *call);
/* Cancel (signal KILL).  A job that already ended is not an error. */
int site_cancel(struct site *s, const struct site_cred *as, uint32_t job_id,
		struct site_call *call);
/* Is the site up (slurmrestd and slurmctld answer)? */
int site_ping(struct site *s, const struct site_cred *as,
	      struct site_call *call);

/*
 * Stop an in-flight call: its I/O is cancelled, nothing is delivered, the
 * task reference is dropped; state DONE with err CANCELLED.  0, or
 * -EALREADY when not in flight.
 */
int site_call_abort(struct site_call *call);
static inline bool site_call_done(const struct site_call *call)
{
	return call->state == SITE_CALL_DONE;
}
static inline bool site_call_in_flight(const struct site_call *call)
{
	return call->state == SITE_CALL_IN_FLIGHT;
}
/* Clear the result of a DONE call (IDLE again); -EBUSY if in flight. */
int site_call_reset(struct site_call *call);
/* "site alpha SUBMIT as alice state=IN_FLIGHT 120ms err=ok". */
const char *site_call_debug_str(const struct site_call *call, char *buf,
				size_t len);

/* ------------------------------------------------------------ sites */

/*
 * Open a site: picks the adapter for cfg->kind, which checks the config
 * (loads the JWT key, ...).  http: the loop's client (borrowed: it must
 * outlive the site).  NULL on failure with err set (and errno).
 */
struct site *site_new(struct loop *l, struct http_client *http,
		      const struct site_config *cfg, char *err, size_t errlen);
/*
 * Close: every in-flight call completes with SITE_ERR_CANCELLED ("site
 * closed"; tasks woken, done called), then the adapter's state is freed.
 * NULL is ignored.
 */
void site_free(struct site *s);
const char *site_name(const struct site *s);
const char *site_kind(const struct site *s);
const struct site_config *site_config(const struct site *s);

struct site_stats {
	unsigned in_flight;
	uint64_t calls, ok;
	uint64_t errors[SITE_ERR_COUNT_]; /* by err */
	uint64_t last_ok_ms, last_err_ms; /* loop_clock_ms, 0: never */
	enum site_err last_err;
	char last_message[256];
};
void site_stats(const struct site *s, struct site_stats *st);
/*
 * "site alpha kind=slurmrestd url=http://127.0.0.1:6820 auth=jwt-key
 * in_flight=2 calls=10 ok=9 last_err=site_timeout(3s ago) | <adapter>".
 */
const char *site_debug_str(const struct site *s, char *buf, size_t len);

/* --------------------------------------------- for adapters only */

/*
 * An adapter: one file, one `const struct site_ops`, listed in site.c.
 * Each operation starts the I/O for call (already IN_FLIGHT-to-be, fields
 * set, result cleared) and returns 0, or fills call->result and returns
 * < 0.  When the I/O ends, the adapter fills call->result and calls
 * site_call_complete(call) (never from inside its start function).
 */
struct site_ops {
	const char *kind;
	int (*open)(struct site *s, char *err, size_t errlen);
	void (*close)(struct site *s);
	int (*submit)(struct site *s, const struct site_cred *as,
		      const struct site_submit *req, struct site_call *call);
	int (*get)(struct site *s, const struct site_cred *as, uint32_t job_id,
		   struct site_call *call);
	int (*list)(struct site *s, const struct site_cred *as,
		    int64_t update_time, struct site_call *call);
	int (*find_by_tag)(struct site *s, const struct site_cred *as,
			   const char *tag, struct site_call *call);
	int (*cancel)(struct site *s, const struct site_cred *as,
		      uint32_t job_id, struct site_call *call);
	int (*ping)(struct site *s, const struct site_cred *as,
		    struct site_call *call);
	/* Cancel the I/O of an in-flight call; nothing may follow. */
	void (*abort)(struct site_call *call);
	/* Optional: the adapter's part of site_debug_str. */
	void (*debug_str)(const struct site *s, char *buf, size_t len);
	/* Optional: s->cfg's limits changed (site_set_limits). */
	void (*limits_changed)(struct site *s);
};

extern const struct site_ops site_slurmrestd_ops;

/* The adapter's view of a site. */
struct site {
	char *name;
	const struct site_ops *ops;
	struct loop *loop;
	struct http_client *http;
	struct worker_pool *workers; /* NULL: parse on the loop thread */
	struct site_config cfg;	     /* strings owned by the site */
	void *priv;		     /* the adapter's state */
	struct site_call *calls;     /* in flight */
	struct site_stats stats;
	bool closing;
};

/* The I/O of call is over and call->result is filled: deliver. */
void site_call_complete(struct site_call *call);
/* printf into call->result.message (err is set too). */
void site_result_set(struct site_result *r, enum site_err err, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));
/* A gateway tag: [A-Za-z0-9._-]{1,SITE_TAG_MAX}. */
bool site_tag_valid(const char *tag);

#endif
