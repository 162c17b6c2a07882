/*
 * task.h: coroutine-style state machines on the loop.
 *
 * A task is an object (struct task embedded in the user's struct) with a
 * named state and one step function:
 *
 *   #define JOB_STATES(X) X(START) X(SUBMITTING) X(RUNNING) X(CANCELLING)
 *   enum job_state { JOB_STATES(TASK_STATE_ENUM) };
 *   static const char *const job_state_names[] = {
 *           JOB_STATES(TASK_STATE_NAME) };
 *
 *   static enum task_step job_step(struct task *t, unsigned wake)
 *   {
 *           struct job *j = container_of(t, struct job, task);
 *
 *           if ((wake & TASK_WAKE_CANCEL) && ...) ...;   // cancel first
 *           switch ((enum job_state)t->state) {           // no default:
 *           case START: ...; task_set_state(t, SUBMITTING); return TASK_WAIT;
 *           ...
 *           }
 *   }
 *
 * Rules (the job supervisor's lessons):
 * - Nothing on the C stack survives TASK_WAIT.  A step runs to completion.
 * - A task is woken (task_wake) with a bitmask of reasons; wakes coalesce,
 *   and the step runs in the RUN_DEFERRED phase of the next turn, within
 *   the loop's budget.  A wake while the step runs makes it run again.
 * - Cancellation is a message (task_cancel: reason + TASK_WAKE_CANCEL)
 *   handled by the task's own step; a task is never freed from outside.
 * - TASK_DONE ends the task: `destroyed` is set, its timer and pending wake
 *   are dropped, it leaves the registry, and its own reference is dropped.
 *   ops->destroy runs in the CLOSING phase once refs reach 0, so memory is
 *   only ever freed at the end of a turn.
 * - Another object keeping a pointer to a task holds a reference
 *   (task_ref/task_unref) and re-checks task_destroyed() after anything
 *   that may have run other code.
 *
 * Loop-thread only.
 */
#ifndef TIERGATE_TASK_H
#define TIERGATE_TASK_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "loop.h"

/* X-macro helpers for a user's state list. */
#define TASK_STATE_ENUM(name) name,
#define TASK_STATE_NAME(name) #name,

/* Wake reasons (a bitmask). */
#define TASK_WAKES(X)                                                          \
	X(START, 0)  /* first step after task_start */                         \
	X(IO, 1)     /* an fd it watches is ready (task_io_cb) */              \
	X(TIMER, 2)  /* task_sleep expired */                                  \
	X(MSG, 3)    /* a queue it waits on has a value / space / shut */      \
	X(CANCEL, 4) /* task_cancel: see task_cancel_reason() */               \
	X(WORKER, 5) /* a worker job targeting it is done */                   \
	X(USER, 6)   /* for the task's own protocols */                        \
	X(YIELD, 7)  /* task_yield: a sliced long job continues */

enum task_wake {
#define TASK_WAKE_ENUM_(name, bit) TASK_WAKE_##name = 1u << (bit),
	TASK_WAKES(TASK_WAKE_ENUM_)
#undef TASK_WAKE_ENUM_
};

enum task_step {
	TASK_WAIT, /* suspend until a wake */
	TASK_DONE, /* the task ends */
};

struct task;

struct task_ops {
	const char *kind;		/* "job", "stream", ... */
	const char *const *state_names; /* indexed by state */
	size_t n_states;
	enum task_step (*step)(struct task *t, unsigned wake);
	/*
	 * Optional: the object's own details (ids, counters, peer) for
	 * task_debug_str; snprintf-like into buf.  Must not log or wake.
	 */
	void (*debug_str)(const struct task *t, char *buf, size_t len);
	/*
	 * Optional: free the object containing t.  Called in the CLOSING
	 * phase after TASK_DONE and once the last reference is gone.
	 */
	void (*destroy)(struct task *t);
};

#define TASK_CANCEL_REASON_MAX 96
#define TASK_HISTORY 8

/*
 * Embedded in the user's object.  Read-only for users except through the
 * functions below; `state` and `destroyed` may be read directly.
 */
struct task {
	const struct task_ops *ops;
	struct loop *loop;
	uint64_t id; /* per loop, from 1 */
	int state;
	bool destroyed; /* TASK_DONE was returned: do not touch but to unref */
	bool in_step;
	bool cancelled;
	unsigned refs;
	unsigned wake_pending;
	unsigned io_revents; /* accumulated by task_io_cb */
	uint64_t n_steps;
	uint64_t started_ms;
	uint64_t state_since_ms;
	uint64_t wait_since_ms;
	const char *waiting_on;		/* borrowed, see task_wait_on */
	bool wait_idle;			/* task_wait_idle: not a stall */
	int state_line;			/* source line of the last transition */
	uint16_t history[TASK_HISTORY]; /* last states, ring */
	unsigned n_history;
	char cancel_reason[TASK_CANCEL_REASON_MAX];
	struct loop_defer ready;
	struct loop_timer timer;
	struct loop_closing closing;
	struct task *reg_prev, *reg_next;
};

/*
 * Register and schedule the first step (TASK_WAKE_START) at the next turn,
 * in state 0.  t's fields are initialised here (the rest of the user's
 * object is not touched); refs = 1, owned by the task itself.
 * 0, or -EINVAL (bad ops), -ENOMEM (registry).
 */
int task_start(struct loop *l, struct task *t, const struct task_ops *ops);

/* Add wake reasons; the step runs at the next turn.  No-op if destroyed. */
void task_wake(struct task *t, unsigned reasons);

/*
 * For long work (GC of old jobs, fan-out to many streams): do a slice,
 * then `return task_yield(t);` to continue at a later turn (with
 * TASK_WAKE_YIELD) after I/O and other tasks had their share.
 */
static inline enum task_step task_yield(struct task *t)
{
	task_wake(t, TASK_WAKE_YIELD);
	return TASK_WAIT;
}

/*
 * Shutdown only: end t now, without another step, as if it had returned
 * TASK_DONE (its destroy op runs once the last reference goes).  For
 * tasks whose state lives elsewhere (a job's is in the store) and for
 * which a cancel would mean something else.  A no-op on a task that was
 * never started or has ended.
 */
void task_abandon(struct task *t, const char *why);

/*
 * Ask the task to stop: records `reason` (copied, first one wins) and wakes
 * it with TASK_WAKE_CANCEL.  Its step decides what that means (it may
 * still need to cancel remote work).  0, or -ESRCH if already destroyed.
 */
int task_cancel(struct task *t, const char *reason);
bool task_cancelled(const struct task *t);
/* NULL when not cancelled. */
const char *task_cancel_reason(const struct task *t);

void task_ref(struct task *t);
/* Drop a reference; at 0 (and destroyed) ops->destroy runs at end of turn. */
void task_unref(struct task *t);
static inline bool task_destroyed(const struct task *t)
{
	return t->destroyed;
}

/*
 * Transition, logged at debug level at the caller's file:line as
 * "<kind>#<id> OLD -> NEW" (curl mstate), recorded in the task's history
 * and given to the registry's observer.  Resets state_since and the wait
 * clock.
 */
#define task_set_state(t, s)                                                   \
	do {                                                                   \
		struct task *tss_t_ = (t);                                     \
		int tss_s_ = (int)(s);                                         \
		dbg("%s#%" PRIu64 " %s -> %s", tss_t_->ops->kind, tss_t_->id,  \
		    task_state_name(tss_t_),                                   \
		    task_state_name_of(tss_t_, tss_s_));                       \
		task_set_state_(tss_t_, tss_s_, __LINE__);                     \
	} while (0)
void task_set_state_(struct task *t, int state, int line);
const char *task_state_name(const struct task *t);
const char *task_state_name_of(const struct task *t, int state);

/*
 * Say what the task waits on ("slurmrestd reply", "queue events").
 * `what` is borrowed until the next task_wait_on or the end of the task:
 * use string literals or strings owned by the task.  The wait clock
 * restarts when `what` changes or on a state change; stall reports use it.
 */
void task_wait_on(struct task *t, const char *what);
/*
 * The same, for a wait with no end by design (a job tracked until its
 * site or node tells something, a poller's interval, a follower of a
 * quiet job): never reported as stalled.
 */
void task_wait_idle(struct task *t, const char *what);

/* Wake with TASK_WAKE_TIMER after ms (re-arms; one timer per task). */
void task_sleep(struct task *t, uint64_t ms);
void task_sleep_stop(struct task *t);

/*
 * loop_io_cb for a watch whose arg is a task: ORs revents into
 * t->io_revents and wakes it with TASK_WAKE_IO.  The step reads and clears
 * t->io_revents (task_take_io_revents).
 */
void task_io_cb(struct loop_io *io, int fd, unsigned revents, void *arg);
unsigned task_take_io_revents(struct task *t);

/* ------------------------------------------------------ introspection */

struct task_info {
	const char *kind;
	uint64_t id;
	const char *state;
	const char *waiting_on;	 /* "" when the task did not say */
	uint64_t state_since_ms; /* loop_clock_ms() base */
	uint64_t wait_since_ms;
	uint64_t waited_ms; /* now - wait_since_ms */
	uint64_t age_ms;
	uint64_t n_steps;
	unsigned refs;
	bool runnable;		   /* a wake is pending */
	bool idle;		   /* waits by design (task_wait_idle) */
	const char *cancel_reason; /* NULL when not cancelled */
	const char *debug;	   /* task_debug_str() */
};

/* Return non-zero to stop.  Must not start or end tasks. */
typedef int task_foreach_cb(struct task *t, const struct task_info *info,
			    void *arg);
/* Visit every live task, oldest first.  Returns the number visited. */
size_t task_foreach(struct loop *l, task_foreach_cb *cb, void *arg);
size_t task_count_live(struct loop *l);
/*
 * Tasks that returned TASK_DONE but are still referenced (not yet freed).
 * Non-zero between turns means someone holds a reference it forgot: a
 * task_ref without task_unref, a queue_wait without queue_unwait.
 */
size_t task_count_ended_unreleased(struct loop *l);

/*
 * log_warn every task waiting (not runnable) for >= threshold_ms:
 * "task stalled for <N>ms: <debug str>".  Returns how many.
 */
size_t task_report_stalled(struct loop *l, uint64_t threshold_ms);
/* log_info every live task (SIGUSR1).  Returns how many. */
size_t task_dump(struct loop *l);

/*
 * "job#12 state=SUBMITTING(1503ms) waits='slurmrestd reply'(1500ms) refs=2
 * wake=- steps=4 destroyed=0 cancel='client gone' hist=START>SUBMITTING |
 * <ops->debug_str>".  Returns buf.
 */
const char *task_debug_str(const struct task *t, char *buf, size_t len);
/* "START|IO" for a wake mask, into buf.  Returns buf. */
const char *task_wake_str(unsigned wake, char *buf, size_t len);

/*
 * Called on every transition of every task of the loop (metrics, tests).
 * One per loop; NULL removes it.  -ENOMEM if the registry cannot be made.
 */
typedef void task_observer_fn(struct task *t, int old_state, int new_state,
			      int line, void *arg);
int task_set_observer(struct loop *l, task_observer_fn *fn, void *arg);

#endif
