/*
 * queue.h: value-carrying queues between tasks, which can be shut down
 * with a reason.  The only channel between tasks (the job supervisor's
 * lesson: a queue says *why* you woke, an event does not).
 *
 * Consumer side:
 *
 *   setup:     queue_wait(q, &s->w, &s->task);    // register once
 *   in step:   while ((rv = queue_pop(q, &v)) == 0) handle(v);
 *              if (rv == -EAGAIN) { task_wait_on(t, "queue events");
 *                                   return TASK_WAIT; }
 *              // rv == -ESHUTDOWN: queue_shutdown_reason(q) says why
 *   teardown:  queue_unwait(&s->w);
 *
 * A registered waiter's task is woken with TASK_WAKE_MSG: one idle waiter
 * per pushed value (least recently woken first), every waiter on shutdown
 * and again when a shut-down queue has been drained.
 * A pop that leaves values behind makes sure someone will look again (an
 * idle waiter, one already woken, or the popper itself), so a consumer may
 * take one value per step and return TASK_WAIT without losing a wakeup.
 * Registration persists until queue_unwait (a -EAGAIN pop keeps it).
 *
 * The contract for consumers: TASK_WAKE_MSG does not say which queue, so a
 * task woken with it pops (or peeks) every queue it waits on; a registered
 * consumer is expected to pop when woken, or to unregister.
 *
 * Life cycle: refs.  queue_new gives the creator one; every registered
 * waiter holds one (and a task reference).  When the last goes, leftover
 * values are released with the free fn and the memory is freed at the end
 * of the turn.
 *
 * Loop-thread only: other threads reach the loop through the worker pool
 * or a loop_async.
 */
#ifndef TIERGATE_QUEUE_H
#define TIERGATE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"
#include "task.h"

struct queue;

#define QUEUE_NAME_MAX 32
#define QUEUE_REASON_MAX 96

/* Embedded in the waiting object; zero it before first use.  Private. */
struct queue_waiter {
	struct queue *q;
	struct task *task;
	struct queue_waiter *prev, *next;
	bool producer;
};

/*
 * capacity 0: unbounded (push fails only with -ENOMEM).  free_fn (may be
 * NULL) releases values left in the queue when it is freed.  `name` is
 * copied (truncated) for logs.  NULL with errno on failure.
 */
struct queue *queue_new(struct loop *l, const char *name, size_t capacity,
			void (*free_fn)(void *val));
void queue_ref(struct queue *q);
void queue_unref(struct queue *q);
/*
 * The creator's end: shut down with "queue freed" (if still open), waking
 * every waiter, then drop the creator's reference.  NULL is ignored.
 */
void queue_free(struct queue *q);

/*
 * Append val.  On success the queue owns val.  On failure the caller still
 * owns it: -ESHUTDOWN (shut down), -EAGAIN (full: register with
 * queue_wait_space to learn when there is room), -ENOMEM.
 */
int queue_push(struct queue *q, void *val);
/*
 * 0 and *val (ownership passes to the caller); -EAGAIN when empty (a
 * registered waiter stays registered and will be woken); -ESHUTDOWN when
 * shut down and drained (see queue_shutdown_reason).
 */
int queue_pop(struct queue *q, void **val);
/* The oldest value without taking it, or -EAGAIN / -ESHUTDOWN as pop. */
int queue_peek(struct queue *q, void **val);

/*
 * Shut down: no more pushes; pops drain what is left, then -ESHUTDOWN.
 * Every waiter (both sides) is woken with TASK_WAKE_MSG.  `reason` is
 * copied.  0, or -EALREADY (first reason kept).
 */
int queue_shutdown(struct queue *q, const char *reason);
bool queue_is_shutdown(const struct queue *q);
/* NULL while open. */
const char *queue_shutdown_reason(const struct queue *q);

size_t queue_len(const struct queue *q);
size_t queue_capacity(const struct queue *q);
const char *queue_name(const struct queue *q);

/*
 * Register t as a consumer of q (w embedded in t's object, unused).
 * Takes a reference on q and on t until queue_unwait.  If q already has
 * values or is shut down, t is woken at once.
 */
void queue_wait(struct queue *q, struct queue_waiter *w, struct task *t);
/* Same, for a producer waiting for room in a bounded queue. */
void queue_wait_space(struct queue *q, struct queue_waiter *w, struct task *t);
/* Unregister (drops both references); unregistered w is ignored. */
void queue_unwait(struct queue_waiter *w);

/*
 * "queue 'events' len=3/16 consumers=2 producers=0 refs=3 shut='job
 * ended' destroyed=0".  Returns buf.
 */
const char *queue_debug_str(const struct queue *q, char *buf, size_t len);

#endif
