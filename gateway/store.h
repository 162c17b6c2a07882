/*
 * store.h: the gateway's durable state, SQLite in WAL mode, owned by ONE
 * store thread.
 *
 *   loop thread                        store thread ("tg-store")
 *   store_job_insert(st, req, job)
 *     copy inputs, req QUEUED  ->  pending list (mutex + cond)
 *                                  take everything pending (<= max_batch)
 *                                  BEGIN IMMEDIATE; run each; COMMIT
 *                                  (synchronous=FULL: the WAL is fsync'ed)
 *   req->cb(req), then          <- done list + loop_async (eventfd)
 *   task_wake(req->task, TASK_WAKE_WORKER)
 *
 * Why a thread of its own and not the worker pool: the SQLite connection
 * has exactly one owner thread for its whole life (open, prepare,
 * migrate, every statement, close), whatever size the general pool is
 * given; group commit falls out of the queue (whatever arrived while a
 * COMMIT was fsyncing is the next transaction); a slow fsync never takes a
 * pool thread that a MUNGE decode needs; and the start-up calls
 * (store_open, store_load_all) can block on a condition variable without
 * running the loop.  The loop thread only ever takes the store lock to
 * append to or splice a list.
 *
 * Durability: journal_mode=WAL, synchronous=FULL.  In WAL mode NORMAL does
 * not fsync at COMMIT, so a power loss may take back transactions that
 * were acknowledged; FULL fsyncs the WAL at every COMMIT, so "the API said
 * it accepted the job" implies "the row is on disk".  Group commit pays
 * one fsync per batch, not per request.  A request's completion (cb and
 * task wake) runs only after its transaction's COMMIT returned SQLITE_OK.
 *
 * Failures: a request-level failure (-ENOENT, -EEXIST, ...) changes
 * nothing and does not disturb its batch.  A storage failure (disk full,
 * I/O error, ...) rolls the batch back; the batch is then re-run one
 * request per transaction so that one poisoned request cannot fail its
 * neighbours, and whatever still fails gets the storage code.  Nothing
 * crashes; everything is logged with the statement text and SQLite's
 * message (never the bound values: request bodies may carry secrets).
 *
 * Error codes (req->rv; submit calls return the first four synchronously):
 *   0             done (committed, for writes)
 *   -EINVAL       bad arguments (missing id/site/user, bad state)
 *   -ENOMEM       out of memory
 *   -ESHUTDOWN    the store is closing
 *   -EBUSY        the request is still in flight (submit), or the
 *                 database is locked by another process
 *   -ENOENT       no such job
 *   -EEXIST       insert: same user + Idempotency-Key, other body (422
 *                 idempotency_mismatch); req->job is the stored job
 *   -ENOTUNIQ     insert: a job with this gateway id exists
 *   -ESTALE       update: the row's state was not expect_state; req->job
 *                 is the stored job
 *   -ENOSPC       disk full (SQLITE_FULL)          \
 *   -EIO          I/O error, corrupt database      | store_error_unavailable():
 *   -EROFS        database or filesystem read-only |  503 storage_unavailable
 *   -EBUSY        locked by another process        /
 *   -EREMOTE      store_open: network filesystem refused
 *   -EPROTO       anything else SQLite says (a bug: 500 internal)
 *
 * Threads: every function is loop-thread only unless it says otherwise.
 */
#ifndef TIERGATE_STORE_H
#define TIERGATE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "task.h"

struct store;

/* PRAGMA user_version of the newest schema this code knows. */
#define STORE_SCHEMA_VERSION 2

/* An absent integer (SQL NULL): slurm_job_id, exit_code, signal, ... */
#define STORE_NULL INT64_MIN

/*
 * The job state vocabulary of docs/api.md, as stored (the names are the
 * TEXT in the `state` column).  X(ENUM, name, final)
 */
#define STORE_JOB_STATES(X)                                                    \
	X(ACCEPTED, accepted, 0)                                               \
	X(SUBMITTING, submitting, 0)                                           \
	X(PENDING, pending, 0)                                                 \
	X(RUNNING, running, 0)                                                 \
	X(COMPLETING, completing, 0)                                           \
	X(COMPLETED, completed, 1)                                             \
	X(FAILED, failed, 1)                                                   \
	X(CANCELLED, cancelled, 1)                                             \
	X(TIMEOUT, timeout, 1)                                                 \
	X(REJECTED, rejected, 1)                                               \
	X(UNKNOWN, unknown, 1)

enum store_job_state {
#define STORE_JOB_STATE_ENUM_(e, name, final) STORE_JOB_##e,
	STORE_JOB_STATES(STORE_JOB_STATE_ENUM_)
#undef STORE_JOB_STATE_ENUM_
	    STORE_JOB_STATE_COUNT_
};
/* "accepted", ...; "?" when out of range.  Any thread. */
const char *store_job_state_name(enum store_job_state s);
/* The state named `name`, or -1.  Any thread. */
int store_job_state_parse(const char *name);
/* completed failed cancelled timeout rejected unknown.  Any thread. */
bool store_job_state_final(enum store_job_state s);

/*
 * A row of `jobs`.  Strings are malloc'ed and owned by the struct (NULL
 * is SQL NULL); nullable integers use STORE_NULL.  Initialise with
 * store_job_init() (a zeroed struct says exit_code 0, not "unknown").
 *
 * Exactly-once submit (for the lead's job task): write state SUBMITTING
 * with intent/intent_at and submit_attempts+1 (and `tag`, the marker put
 * into the Slurm job, e.g. its comment) BEFORE calling the site; write
 * slurm_job_id and PENDING after.  After a crash a job found in
 * SUBMITTING is resolved by looking for its tag at the site, never by
 * blindly submitting again.
 */
struct store_job {
	char *id;	      /* gateway id "j-...": the key, never updated */
	char *site;	      /* NOT NULL */
	int64_t slurm_job_id; /* STORE_NULL until the site gave one */
	char *user;	      /* NOT NULL */
	char *tier;
	char *name;
	enum store_job_state state;
	char *slurm_state; /* "RUNNING", as the site says */
	char *reason;
	int64_t exit_code;  /* STORE_NULL: not known */
	int64_t signal;	    /* STORE_NULL: not known */
	char *request_body; /* the submit request, JSON text */
	char *idem_key;	    /* Idempotency-Key, NULL when none */
	char *body_hash;    /* the caller's hash of the request; see insert */
	bool cancel_requested;
	char *ended_by;	  /* "user:<name>", "site", "gateway:..." */
	char *error_code; /* API error code, e.g. "site_rejected" */
	char *error_message;
	char *request_id;   /* the API request that created the job */
	int64_t created_at; /* unix seconds; 0 on insert: now */
	int64_t updated_at; /* unix seconds; 0 on insert: created_at */
	double cpu_seconds;
	double charge;
	int64_t submit_attempts;
	char *tag;	   /* marker put into the Slurm job */
	char *intent;	   /* the site call in progress ("submit", "cancel") */
	int64_t intent_at; /* when the intent was journaled; STORE_NULL */
	int64_t seq;	   /* out only: SQLite rowid, insertion order */
};

/*
 * The columns, in one list: the field bits below, the SELECT/INSERT
 * column lists and the row reader all come from it.  X(FIELD, member, type)
 */
#define STORE_JOB_FIELDS(X)                                                    \
	X(ID, id, TEXT)                                                        \
	X(SITE, site, TEXT)                                                    \
	X(SLURM_JOB_ID, slurm_job_id, INT)                                     \
	X(USER, user, TEXT)                                                    \
	X(TIER, tier, TEXT)                                                    \
	X(NAME, name, TEXT)                                                    \
	X(STATE, state, STATE)                                                 \
	X(SLURM_STATE, slurm_state, TEXT)                                      \
	X(REASON, reason, TEXT)                                                \
	X(EXIT_CODE, exit_code, INT)                                           \
	X(SIGNAL, signal, INT)                                                 \
	X(REQUEST_BODY, request_body, TEXT)                                    \
	X(IDEM_KEY, idem_key, TEXT)                                            \
	X(BODY_HASH, body_hash, TEXT)                                          \
	X(CANCEL_REQUESTED, cancel_requested, BOOL)                            \
	X(ENDED_BY, ended_by, TEXT)                                            \
	X(ERROR_CODE, error_code, TEXT)                                        \
	X(ERROR_MESSAGE, error_message, TEXT)                                  \
	X(REQUEST_ID, request_id, TEXT)                                        \
	X(CREATED_AT, created_at, INT)                                         \
	X(UPDATED_AT, updated_at, INT)                                         \
	X(CPU_SECONDS, cpu_seconds, REAL)                                      \
	X(CHARGE, charge, REAL)                                                \
	X(SUBMIT_ATTEMPTS, submit_attempts, INT)                               \
	X(TAG, tag, TEXT)                                                      \
	X(INTENT, intent, TEXT)                                                \
	X(INTENT_AT, intent_at, INT)

enum store_job_field {
#define STORE_JOB_FIELD_ENUM_(F, m, t) STORE_FI_##F,
	STORE_JOB_FIELDS(STORE_JOB_FIELD_ENUM_)
#undef STORE_JOB_FIELD_ENUM_
	    STORE_FI_COUNT_
};
/* A field bit for store_job_update: STORE_F(STATE) | STORE_F(UPDATED_AT) */
#define STORE_F(F) (UINT64_C(1) << STORE_FI_##F)
#define STORE_F_ALL ((UINT64_C(1) << STORE_FI_COUNT_) - 1)

/* Any thread. */
void store_job_init(struct store_job *j);
/* Free the strings and re-init.  NULL is ignored. */
void store_job_clear(struct store_job *j);
/* store_job_clear + free(j).  NULL is ignored. */
void store_job_free(struct store_job *j);
/* A deep copy (seq included), or NULL (ENOMEM). */
struct store_job *store_job_dup(const struct store_job *j);
/* The STORE_F bits of the fields that differ (seq is not compared). */
uint64_t store_job_diff(const struct store_job *a, const struct store_job *b);
/* Column name of a field ("slurm_job_id"), "?" when out of range. */
const char *store_job_field_name(enum store_job_field f);

/* A row of `events` (protocol.md): strings as in struct store_job. */
struct store_event {
	char *id; /* "alpha/1001/batch/a1/task_exit/0": the key */
	char *site;
	int64_t slurm_job_id;
	char *gw_job; /* NULL when the event had no ticket */
	char *kind;
	char *body;	     /* the event, JSON text */
	int64_t received_at; /* 0: now */
};

/* One row of store_usage: sums over a user's jobs of a tier. */
struct store_usage {
	char *user;
	char *tier;
	double cpu_seconds;
	double charge;
	int64_t jobs;
};

/*
 * A row of `site_credentials`: a user's own token for a jwt-user site
 * (PUT /v1/sites/{site}/credential).  token is a secret: cleared with
 * explicit_bzero, never logged (the store logs statement text only).
 */
struct store_credential {
	char *site;
	char *user; /* the gateway user */
	char *token;
	int64_t expires_at;    /* the token's exp, unix seconds */
	int64_t registered_at; /* unix seconds */
};
/* Free the strings (the token wiped first) and zero c.  NULL ignored. */
void store_credential_clear(struct store_credential *c);

/* Filters of store_jobs_list; NULL / -1 / 0 mean "any" / default. */
struct store_filter {
	const char *user;
	const char *site;
	int state;	/* enum store_job_state, or -1 */
	unsigned limit; /* 0: 100; capped at 10000 */
};

/*
 * A request, embedded in the caller's object and zeroed before first use
 * (like struct worker_job).  Set the public fields, then call one of the
 * store_* functions below.  When one returns 0 the request is in flight:
 * exactly one completion follows, on the loop thread, on a later turn:
 * cb(req) if set, then task_wake(task, TASK_WAKE_WORKER) if set (the
 * store holds a task reference meanwhile, so the request may live in the
 * task's object; no wake if the task ended).  The request's memory must
 * stay valid until then; its inputs were copied at submit time, so the
 * caller may change or free what it passed in at once.
 *
 * Results are owned by the request until store_req_reset (or the next
 * submit, which resets first); take one by NULLing the pointer.
 */
struct store_req {
	/* public: set before submitting */
	void (*cb)(struct store_req *r); /* loop thread; may resubmit r */
	void *arg;
	struct task *task;
	/* results, valid from the completion until store_req_reset */
	int rv;
	bool existed;		 /* insert: idempotent replay (req->job) */
	bool duplicate;		 /* event: the id was already stored */
	bool job_missing;	 /* event: the update's job does not exist */
	int64_t seq;		 /* insert: the new row's rowid */
	struct store_job *job;	 /* get; insert replay/mismatch; -ESTALE */
	struct store_job **jobs; /* list, unfinished (newest first / oldest
				    first) */
	size_t n_jobs;
	struct store_usage *usage;
	size_t n_usage;
	struct store_credential *creds; /* credentials_list */
	size_t n_creds;
	uint64_t queued_us;   /* loop_clock_us() at submit */
	uint64_t finished_us; /* when its transaction ended */
	/* private to store.c */
	struct {
		struct store *st;
		struct store_req *next;
		int op;
		int state;
		struct store_job *job;
		struct store_event *event;
		uint64_t fields;
		int expect;
		char *user, *site;
		int fstate;
		unsigned limit;
		int64_t since;
		void *load;
		struct store_credential *cred;
	} p_;
};

struct store_opts {
	/* requests per transaction (default 1024) */
	unsigned max_batch;
	/*
	 * Debug hook, store thread: called with the text of every SQL
	 * statement the store runs (sqlite3_trace_v2) and with "open",
	 * "prepare" and "close" around the other SQLite calls.  Tests use
	 * it to prove no SQLite call runs on the loop thread.
	 */
	void (*trace)(void *arg, const char *what);
	void *trace_arg;
};

/*
 * Open (create, migrate) the database at `path` and start the store
 * thread.  Blocks until the database is open: start-up only.  Refuses a
 * database on a network filesystem (-EREMOTE), one another process holds
 * (-EBUSY: `<path>.lock` is flock'ed), or a schema newer than this code
 * (-EPROTO).  On failure *out is NULL and `err` (may be NULL) says why in
 * one line, which is also logged.  opts may be NULL.
 */
int store_open(struct loop *l, const char *path, const struct store_opts *opts,
	       struct store **out, char *err, size_t errlen);
/*
 * Stop taking requests, let the store thread run (and commit) everything
 * already queued, close the database, join the thread (blocks: daemon
 * shutdown only), then deliver every owed completion from inside this
 * call, and free st.  NULL is ignored.  Not from a store completion.
 */
void store_close(struct store *st);

/*
 * Insert a job (copied).  With job->idem_key set, a stored job of the same
 * user and key is looked up first: same request (body_hash equal, or when
 * both hashes are NULL the request_body text equal) -> rv 0, existed, and
 * req->job is the stored job (nothing inserted); other request -> -EEXIST
 * and req->job is the stored job.  The completion of a successful insert
 * is the durable ack: it runs after COMMIT.
 */
int store_job_insert(struct store *st, struct store_req *r,
		     const struct store_job *job);
/*
 * Update the `fields` (STORE_F bits, not ID) of job job->id from *job
 * (the fields are copied).  expect_state >= 0: only if the row is in that
 * state, else -ESTALE (compare-and-set for the journal's transitions).
 * updated_at is written only when STORE_F(UPDATED_AT) is set.
 */
int store_job_update(struct store *st, struct store_req *r,
		     const struct store_job *job, uint64_t fields,
		     int expect_state);
/* req->job, or -ENOENT. */
int store_job_get(struct store *st, struct store_req *r, const char *id);
/* req->jobs newest first, without request_body. */
int store_jobs_list(struct store *st, struct store_req *r,
		    const struct store_filter *f);
/* Every job in a non-final state, all fields, oldest first. */
int store_jobs_unfinished(struct store *st, struct store_req *r);
/*
 * Store an event once.  An id already stored -> rv 0 and duplicate.  A
 * new event and the update of `fields` of job upd->id (upd may be NULL)
 * commit in one transaction: the event's effect is applied exactly once.
 * CPU_SECONDS and CHARGE are ADDED to the row's (each step's end brings
 * its own usage, and several may be in flight at once); other fields are
 * set.
 * job_missing is set when the update found no job (the event is kept).
 */
int store_event_insert(struct store *st, struct store_req *r,
		       const struct store_event *ev,
		       const struct store_job *upd, uint64_t fields);
/*
 * req->usage: per (user, tier), sums of cpu_seconds and charge of the
 * jobs created at or after `since`; user NULL: every user.
 */
int store_usage(struct store *st, struct store_req *r, const char *user,
		int64_t since);

/*
 * Store (replace) the credential (site, user), durably: the completion is
 * the ack.  token NULL deletes it (-ENOENT when there was none).
 */
int store_credential_put(struct store *st, struct store_req *r,
			 const struct store_credential *c);
/* req->creds: every stored credential, by site and user. */
int store_credentials_list(struct store *st, struct store_req *r);

/* True between a successful submit and its completion. */
bool store_req_pending(const struct store_req *r);
/* Free the results, keep cb/arg/task.  Not while pending. */
void store_req_reset(struct store_req *r);

#define STORE_LOAD_BODY 1u /* include request_body (big) */
/* include request_body only for jobs in a non-final state (to resubmit) */
#define STORE_LOAD_BODY_UNFINISHED 2u
/*
 * Called with every job, oldest first, on the caller's thread; it owns j
 * (store_job_free).  Non-zero stops the load (store_load_all returns it).
 */
typedef int store_load_fn(struct store_job *j, void *arg);
/*
 * Start-up only, before the loop serves: stream every job to fn.  The
 * store thread reads rows while the caller's thread runs fn (at most a
 * few thousand rows are buffered between them), so SQLite decoding and
 * the caller's indexing overlap.  Blocks until done; waits behind the
 * requests already queued.  *count (may be NULL) = jobs given to fn.
 */
int store_load_all(struct store *st, unsigned flags, store_load_fn *fn,
		   void *arg, uint64_t *count);

/* -ENOSPC -EIO -EROFS -EBUSY: answer 503 storage_unavailable. */
bool store_error_unavailable(int rv);
/* "disk full", "idempotency mismatch", ...  Any thread. */
const char *store_strerror(int rv);

/*
 * The name of a network or FUSE filesystem ("nfs", "cifs", "smb2",
 * "fuse", "9p", ...) for a statfs f_type, or NULL for a local one.
 */
const char *store_network_fs_name(unsigned long f_type);
/*
 * 0 if the directory holding `path` is on a local filesystem; -EREMOTE
 * (with the reason in err) on a network one; -errno if statfs fails.
 * Used by store_open; exported for output_store and tests.
 */
int store_check_local_fs(const char *path, char *err, size_t errlen);

struct store_stats {
	uint64_t requests;	 /* completed */
	uint64_t commits;	 /* write transactions committed */
	uint64_t rows_committed; /* write requests in them */
	uint64_t max_batch;	 /* most write requests in one commit */
	uint64_t read_txns;	 /* read-only transactions */
	uint64_t failed_txns;	 /* rolled back on a storage error */
	uint64_t commit_us_max;	 /* BEGIN .. COMMIT returned, since open */
	uint64_t commit_us_p50;	 /* over the last 1024 commits */
	uint64_t commit_us_p99;
	uint64_t queue_wait_us_max; /* submit .. its transaction began */
	unsigned queued;	    /* waiting for the store thread */
	unsigned in_flight;	    /* submitted, completion not yet run */
	uint64_t off_thread_sqlite; /* SQLite calls off the store thread: 0 */
	int last_error;		    /* last storage error (negative errno) */
	uint64_t last_error_at;	    /* loop_clock_ms() of it */
};
/* Any thread. */
void store_stats(struct store *st, struct store_stats *s);
/*
 * "store /var/lib/tiergated/jobs.db schema=1 open queued=3 in_flight=12
 * requests=9000 commits=812 rows/commit=9.4 max_batch=120 commit_max=14000us
 * p50=900us p99=6000us failed_txns=0 off_thread=0 last_error=none".
 * Loop thread.  Returns buf.
 */
const char *store_debug_str(struct store *st, char *buf, size_t len);

#endif
