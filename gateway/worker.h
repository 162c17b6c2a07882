/*
 * worker.h: a small pthread pool for blocking calls (munge_decode, sqlite
 * commits, file I/O), munge's job-queue style.
 *
 *   loop thread                 worker thread
 *   worker_submit  -> pending (mutex + cond) -> work(job)
 *                                               |
 *   done(job, st)  <- completed (mutex) + loop_async (eventfd) <-
 *   task_wake(job->task, TASK_WAKE_WORKER)
 *
 * No work is ever done under the pool lock: the loop thread only takes it
 * to append or splice a list.  done() is called exactly once per submitted
 * job, on the loop thread, with status 0 (work ran) or -ECANCELED (never
 * started: worker_cancel, or shutdown in WORKER_SHUTDOWN_CANCEL mode).
 *
 * The pool keeps a loop_hold while jobs are in flight, so loop_run with
 * exit_when_idle waits for them.  Worker threads block every signal.
 */
#ifndef TIERGATE_WORKER_H
#define TIERGATE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "task.h"

struct worker_pool;
struct worker_job;

/* A job's life; transitions are logged (dbg) with the source line. */
#define WORKER_JOB_STATES(X)                                                   \
	X(IDLE)	     /* not submitted, or done() has run */                    \
	X(QUEUED)    /* waiting for a thread */                                \
	X(RUNNING)   /* work() on a worker thread */                           \
	X(COMPLETED) /* waiting for done() on the loop thread */

enum worker_job_state {
#define WORKER_JOB_STATE_ENUM_(name) WORKER_JOB_##name,
	WORKER_JOB_STATES(WORKER_JOB_STATE_ENUM_)
#undef WORKER_JOB_STATE_ENUM_
};
const char *worker_job_state_name(enum worker_job_state s);

/*
 * Embedded in the caller's object, zeroed before first use; set the public
 * fields and submit.  The job (and what work() touches) must stay alive
 * until done() has been called; a job may be resubmitted from done().
 */
struct worker_job {
	/* public */
	const char *name;		    /* for logs: a string literal (a
					       worker may log it after done()) */
	void (*work)(struct worker_job *j); /* worker thread: no loop/task
					       API, no logging of secrets */
	void (*done)(struct worker_job *j, int status); /* loop thread */
	/*
	 * Optional task to wake with TASK_WAKE_WORKER after done(); the pool
	 * holds a task reference meanwhile (so the job may be embedded in
	 * the task's object).  Not woken if the task has ended.
	 */
	struct task *task;
	/* private, under the pool lock */
	struct worker_pool *pool;
	struct worker_job *next;
	enum worker_job_state state;
	int status;
	uint64_t queued_us, started_us, finished_us;
};

#define WORKER_SHUTDOWN_MODES(X)                                               \
	X(DRAIN)  /* run every queued job first */                             \
	X(CANCEL) /* queued jobs complete with -ECANCELED */

enum worker_shutdown {
#define WORKER_SHUTDOWN_ENUM_(name) WORKER_SHUTDOWN_##name,
	WORKER_SHUTDOWN_MODES(WORKER_SHUTDOWN_ENUM_)
#undef WORKER_SHUTDOWN_ENUM_
};

/*
 * Start n_threads (1..64) threads named "<name>/N".  NULL with errno on
 * failure (nothing left running).  Loop thread.
 */
struct worker_pool *worker_pool_new(struct loop *l, unsigned n_threads,
				    const char *name);
/*
 * Stop taking jobs, finish or cancel the queued ones (see modes), join the
 * threads (this blocks the loop thread until running work() calls return:
 * for daemon shutdown), then call done() for every job still owed one,
 * from inside this call.  Idempotent.  Not from inside a done() callback
 * (the pool is draining its completions there).
 */
void worker_pool_shutdown(struct worker_pool *p, enum worker_shutdown how);
/* worker_pool_shutdown(CANCEL) if needed, then free.  NULL is ignored. */
void worker_pool_free(struct worker_pool *p);

/*
 * Queue job (state must be IDLE).  0; -ESHUTDOWN (pool shutting down) or
 * -EINVAL (no work/done, or job already in flight): then done() is NOT
 * called and the job stays the caller's.
 */
int worker_submit(struct worker_pool *p, struct worker_job *job);
/*
 * Cancel a job that has not started: 0 and done(job, -ECANCELED) follows
 * on a later turn; -EBUSY if work() is running or finished (done() will
 * report status 0); -EINVAL if the job is not in flight.  Loop thread.
 */
int worker_cancel(struct worker_job *job);

struct worker_pool_stats {
	unsigned threads;
	unsigned queued;    /* pending, not started */
	unsigned running;   /* inside work() */
	unsigned completed; /* waiting for done() */
	uint64_t submitted, done_ok, done_cancelled;
	uint64_t max_queue_wait_us; /* submit -> work() start */
	uint64_t max_work_us;
	bool stopping;
};
/* Any thread (takes the lock briefly). */
void worker_pool_stats(struct worker_pool *p, struct worker_pool_stats *st);
/* "workers 'db' threads=2 queued=3 running=2 completed=0 ..."; any thread. */
const char *worker_pool_debug_str(struct worker_pool *p, char *buf, size_t len);
/* "db-commit state=RUNNING for=12ms"; loop thread. */
const char *worker_job_debug_str(const struct worker_job *j, char *buf,
				 size_t len);

#endif
