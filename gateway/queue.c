/*
 * queue.c: value queues between tasks (see queue.h).
 *
 * Values sit in a ring (fixed size for a bounded queue, doubling for an
 * unbounded one).  Waiters are intrusive lists, one per side; a wake goes
 * to the head waiter, which then moves to the tail (round robin).
 */
#include "queue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct waiter_list {
	struct queue_waiter *head, *tail;
	unsigned n;
};

struct queue {
	struct loop *loop;
	char name[QUEUE_NAME_MAX];
	void **ring;
	size_t ring_cap, head, len;
	size_t capacity; /* 0: unbounded */
	void (*free_fn)(void *val);
	unsigned refs;
	bool destroyed;
	bool shut;
	char reason[QUEUE_REASON_MAX];
	struct waiter_list consumers, producers;
	struct loop_closing closing;
};

struct queue *queue_new(struct loop *l, const char *name, size_t capacity,
			void (*free_fn)(void *val))
{
	struct queue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->loop = l;
	snprintf(q->name, sizeof(q->name), "%s", name ? name : "?");
	q->capacity = capacity;
	q->free_fn = free_fn;
	q->refs = 1;
	q->ring_cap = capacity ? capacity : 8;
	q->ring = calloc(q->ring_cap, sizeof(*q->ring));
	if (!q->ring) {
		free(q);
		errno = ENOMEM;
		return NULL;
	}
	dbg("queue '%s' created capacity=%zu", q->name, capacity);
	return q;
}

static void queue_closing_fn(struct loop_closing *c)
{
	struct queue *q =
	    (struct queue *)(void *)((char *)c -
				     offsetof(struct queue, closing));

	free(q);
}

void queue_ref(struct queue *q)
{
	q->refs++;
}

void queue_unref(struct queue *q)
{
	char buf[160];
	size_t n = 0;

	if (!q)
		return;
	if (q->refs == 0) {
		log_err("queue_unref with no reference: %s",
			queue_debug_str(q, buf, sizeof(buf)));
		return;
	}
	if (--q->refs > 0)
		return;
	q->destroyed = true;
	while (q->len > 0) {
		void *v = q->ring[q->head];

		q->head = (q->head + 1) % q->ring_cap;
		q->len--;
		if (q->free_fn)
			q->free_fn(v);
		n++;
	}
	free(q->ring);
	q->ring = NULL;
	dbg("queue '%s' released (%zu leftover value(s) freed)", q->name, n);
	loop_close_at_end(q->loop, &q->closing, queue_closing_fn);
}

void queue_free(struct queue *q)
{
	if (!q)
		return;
	if (!q->shut)
		queue_shutdown(q, "queue freed");
	queue_unref(q);
}

/* ------------------------------------------------------------ waiters */

static void list_append(struct waiter_list *wl, struct queue_waiter *w)
{
	w->next = NULL;
	w->prev = wl->tail;
	if (wl->tail)
		wl->tail->next = w;
	else
		wl->head = w;
	wl->tail = w;
	wl->n++;
}

static void list_remove(struct waiter_list *wl, struct queue_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		wl->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		wl->tail = w->prev;
	w->prev = w->next = NULL;
	wl->n--;
}

static void rotate(struct waiter_list *wl, struct queue_waiter *w)
{
	list_remove(wl, w);
	list_append(wl, w);
}

static bool waiter_pending(const struct queue_waiter *w)
{
	return !task_destroyed(w->task) &&
	       (w->task->wake_pending & TASK_WAKE_MSG);
}

static bool waiter_idle(const struct queue_waiter *w)
{
	return !task_destroyed(w->task) && !w->task->in_step &&
	       !(w->task->wake_pending & TASK_WAKE_MSG);
}

/*
 * `want` values (or free slots) wait for takers: make sure at least that
 * many waiters (or all of them) will look.  Waiters already woken count;
 * idle ones are woken least recently woken first; if nobody else will
 * look, the waiter inside its step (the one that just popped one value)
 * is woken to run again.
 */
static void wake_for(struct waiter_list *wl, size_t want)
{
	struct queue_waiter *w, *next;
	size_t pending = 0;

	if (want == 0 || !wl->head)
		return;
	for (w = wl->head; w; w = w->next)
		pending += waiter_pending(w);
	for (w = wl->head; w && pending < want; w = next) {
		next = w->next;
		if (!waiter_idle(w))
			continue;
		rotate(wl, w);
		task_wake(w->task, TASK_WAKE_MSG);
		pending++;
	}
	if (pending > 0)
		return;
	for (w = wl->head; w; w = w->next) {
		if (!task_destroyed(w->task)) {
			rotate(wl, w);
			task_wake(w->task, TASK_WAKE_MSG);
			return;
		}
	}
}

static void wake_all(struct waiter_list *wl)
{
	struct queue_waiter *w;

	for (w = wl->head; w; w = w->next)
		task_wake(w->task, TASK_WAKE_MSG);
}

static void waiter_add(struct queue *q, struct queue_waiter *w, struct task *t,
		       bool producer)
{
	char buf[160];

	if (w->q) {
		log_err("queue waiter registered twice (on '%s', now '%s')",
			w->q->name, q->name);
		return;
	}
	if (q->destroyed) {
		log_err("wait on a released queue: %s",
			queue_debug_str(q, buf, sizeof(buf)));
		return;
	}
	w->q = q;
	w->task = t;
	w->producer = producer;
	queue_ref(q);
	task_ref(t);
	list_append(producer ? &q->producers : &q->consumers, w);
	if (q->shut || (!producer && q->len > 0) ||
	    (producer && (q->capacity == 0 || q->len < q->capacity)))
		task_wake(t, TASK_WAKE_MSG);
}

void queue_wait(struct queue *q, struct queue_waiter *w, struct task *t)
{
	waiter_add(q, w, t, false);
}

void queue_wait_space(struct queue *q, struct queue_waiter *w, struct task *t)
{
	waiter_add(q, w, t, true);
}

void queue_unwait(struct queue_waiter *w)
{
	struct queue *q = w->q;
	struct task *t = w->task;

	if (!q)
		return;
	list_remove(w->producer ? &q->producers : &q->consumers, w);
	w->q = NULL;
	w->task = NULL;
	task_unref(t);
	queue_unref(q);
}

/* ------------------------------------------------------------- values */

static int ring_grow(struct queue *q)
{
	size_t cap = q->ring_cap * 2, i;
	void **r;

	if (cap < q->ring_cap)
		return -ENOMEM;
	r = calloc(cap, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (i = 0; i < q->len; i++)
		r[i] = q->ring[(q->head + i) % q->ring_cap];
	free(q->ring);
	q->ring = r;
	q->ring_cap = cap;
	q->head = 0;
	return 0;
}

int queue_push(struct queue *q, void *val)
{
	if (q->shut || q->destroyed)
		return -ESHUTDOWN;
	if (q->capacity && q->len >= q->capacity)
		return -EAGAIN;
	if (q->len == q->ring_cap && ring_grow(q) < 0) {
		log_err("queue '%s': out of memory at %zu values", q->name,
			q->len);
		return -ENOMEM;
	}
	q->ring[(q->head + q->len) % q->ring_cap] = val;
	q->len++;
	wake_for(&q->consumers, q->len);
	return 0;
}

int queue_peek(struct queue *q, void **val)
{
	if (q->len > 0) {
		*val = q->ring[q->head];
		return 0;
	}
	return q->shut || q->destroyed ? -ESHUTDOWN : -EAGAIN;
}

int queue_pop(struct queue *q, void **val)
{
	if (q->len == 0)
		return q->shut || q->destroyed ? -ESHUTDOWN : -EAGAIN;
	*val = q->ring[q->head];
	q->ring[q->head] = NULL;
	q->head = (q->head + 1) % q->ring_cap;
	q->len--;
	if (q->capacity && !q->shut)
		wake_for(&q->producers, q->capacity - q->len);
	if (q->shut && q->len == 0)
		wake_all(&q->consumers); /* drained: now they learn why */
	else
		wake_for(&q->consumers, q->len);
	return 0;
}

int queue_shutdown(struct queue *q, const char *reason)
{
	if (q->shut)
		return -EALREADY;
	q->shut = true;
	snprintf(q->reason, sizeof(q->reason), "%s",
		 reason && *reason ? reason : "shut down");
	dbg("queue '%s' shut down (%s), %zu value(s) left, %u+%u waiter(s)",
	    q->name, q->reason, q->len, q->consumers.n, q->producers.n);
	wake_all(&q->consumers);
	wake_all(&q->producers);
	return 0;
}

bool queue_is_shutdown(const struct queue *q)
{
	return q->shut;
}

const char *queue_shutdown_reason(const struct queue *q)
{
	return q->shut ? q->reason : NULL;
}

size_t queue_len(const struct queue *q)
{
	return q->len;
}

size_t queue_capacity(const struct queue *q)
{
	return q->capacity;
}

const char *queue_name(const struct queue *q)
{
	return q->name;
}

const char *queue_debug_str(const struct queue *q, char *buf, size_t len)
{
	char cap[24] = "inf";

	if (q->capacity)
		snprintf(cap, sizeof(cap), "%zu", q->capacity);
	snprintf(buf, len,
		 "queue '%s' len=%zu/%s consumers=%u producers=%u refs=%u "
		 "shut='%s' destroyed=%d",
		 q->name, q->len, cap, q->consumers.n, q->producers.n, q->refs,
		 q->shut ? q->reason : "", q->destroyed);
	return buf;
}
