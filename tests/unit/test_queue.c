/*
 * test_queue.c: queues between tasks on a real loop.  Every test ends with
 * no live task, io watch or timer, and counts the values it frees.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "log.h"
#include "loop.h"
#include "queue.h"
#include "task.h"

#define V(i) ((void *)(intptr_t)(i))
#define I(v) ((int)(intptr_t)(v))

static int n_freed;

static void count_free(void *v)
{
	n_freed++;
	free(v);
}

static int setup(void **state)
{
	struct loop *l = loop_new();

	assert_non_null(l);
	n_freed = 0;
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	struct loop *l = *state;

	assert_loop_quiet(l);
	loop_free(l);
	return 0;
}

/* ----------------------------------------------------------- no tasks */

static void test_push_pop_order(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "order", 0, NULL);
	void *v;
	int i, next = 0;

	assert_non_null(q);
	assert_int_equal(queue_pop(q, &v), -EAGAIN);
	/* wrap the ring, then make it grow with head != 0 */
	for (i = 0; i < 6; i++)
		assert_int_equal(queue_push(q, V(i)), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(queue_pop(q, &v), 0);
		assert_int_equal(I(v), next++);
	}
	for (i = 6; i < 40; i++)
		assert_int_equal(queue_push(q, V(i)), 0);
	assert_int_equal(queue_len(q), 36);
	assert_int_equal(queue_peek(q, &v), 0);
	assert_int_equal(I(v), next);
	while (queue_pop(q, &v) == 0)
		assert_int_equal(I(v), next++);
	assert_int_equal(next, 40);
	assert_int_equal(queue_pop(q, &v), -EAGAIN);
	queue_free(q);
}

static void test_bounded_capacity(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "bounded", 3, NULL);
	void *v;
	char buf[160];

	assert_non_null(q);
	assert_int_equal(queue_capacity(q), 3);
	assert_int_equal(queue_push(q, V(1)), 0);
	assert_int_equal(queue_push(q, V(2)), 0);
	assert_int_equal(queue_push(q, V(3)), 0);
	assert_int_equal(queue_push(q, V(4)), -EAGAIN);
	assert_int_equal(queue_pop(q, &v), 0);
	assert_int_equal(I(v), 1);
	assert_int_equal(queue_push(q, V(4)), 0);
	queue_debug_str(q, buf, sizeof(buf));
	assert_string_equal(buf, "queue 'bounded' len=3/3 consumers=0 "
				 "producers=0 refs=1 shut='' destroyed=0");
	for (int i = 2; i <= 4; i++) {
		assert_int_equal(queue_pop(q, &v), 0);
		assert_int_equal(I(v), i);
	}
	queue_free(q);
}

static void test_push_after_shutdown_refused(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "shut", 0, count_free);
	int *val = malloc(sizeof(int));
	void *v;

	assert_non_null(q);
	assert_non_null(val);
	assert_null(queue_shutdown_reason(q));
	assert_int_equal(queue_shutdown(q, "site removed"), 0);
	assert_int_equal(queue_shutdown(q, "second"), -EALREADY);
	assert_true(queue_is_shutdown(q));
	assert_string_equal(queue_shutdown_reason(q), "site removed");
	assert_int_equal(queue_push(q, val), -ESHUTDOWN);
	assert_int_equal(queue_pop(q, &v), -ESHUTDOWN);
	queue_free(q);
	loop_run_once(l, 0);
	/* the queue never owned val: not freed by it, still ours */
	assert_int_equal(n_freed, 0);
	*val = 1;
	count_free(val);
	assert_int_equal(n_freed, 1);
}

static void test_leftovers_freed(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "leftovers", 0, count_free);
	void *v;
	int i;

	assert_non_null(q);
	for (i = 0; i < 5; i++)
		assert_int_equal(queue_push(q, malloc(16)), 0);
	/* shut down: pops drain what is left first */
	queue_shutdown(q, "stop");
	assert_int_equal(queue_pop(q, &v), 0);
	count_free(v);
	queue_free(q);
	assert_int_equal(n_freed, 5); /* 1 by us, 4 by the queue */
	loop_run_once(l, 0);	      /* memory goes at end of turn */
}

/* ---------------------------------------------------------- consumers */

#define CONS_STATES(X) X(CONSUMING) X(FINISHED)
enum cons_state { CONS_STATES(TASK_STATE_ENUM) };
static const char *const cons_state_names[] = {CONS_STATES(TASK_STATE_NAME)};

struct consumer {
	struct task task;
	struct queue *q;
	struct queue_waiter w;
	bool one_per_step; /* else drain until -EAGAIN */
	int got[64];
	void *vals[64];
	int n_got;
	int msg_steps;
	int steps;
	int end_rv;
	char reason[QUEUE_REASON_MAX];
	bool freed;
};

static enum task_step cons_step(struct task *t, unsigned wake)
{
	struct consumer *c = container_of(t, struct consumer, task);
	void *v;
	int rv;

	c->steps++;
	if (wake & TASK_WAKE_MSG)
		c->msg_steps++;
	switch ((enum cons_state)t->state) {
	case CONSUMING:
		while ((rv = queue_pop(c->q, &v)) == 0) {
			c->vals[c->n_got] = v;
			c->got[c->n_got++] = I(v);
			if (c->one_per_step)
				return TASK_WAIT;
		}
		if (rv == -EAGAIN) {
			task_wait_on(t, "queue");
			return TASK_WAIT;
		}
		c->end_rv = rv;
		snprintf(c->reason, sizeof(c->reason), "%s",
			 queue_shutdown_reason(c->q));
		queue_unwait(&c->w);
		task_set_state(t, FINISHED);
		return TASK_DONE;
	case FINISHED:
		break;
	}
	return TASK_DONE;
}

static void cons_destroy(struct task *t)
{
	container_of(t, struct consumer, task)->freed = true;
}

static const struct task_ops cons_ops = {
    .kind = "consumer",
    .state_names = cons_state_names,
    .n_states = 2,
    .step = cons_step,
    .destroy = cons_destroy,
};

static void cons_start(struct loop *l, struct consumer *c, struct queue *q)
{
	c->q = q;
	assert_int_equal(task_start(l, &c->task, &cons_ops), 0);
	queue_wait(q, &c->w, &c->task);
}

struct pusher {
	struct queue *q;
	struct loop_timer t;
	int val;
};

static void pusher_cb(struct loop_timer *t, void *arg)
{
	struct pusher *p = arg;

	assert_int_equal(queue_push(p->q, V(p->val)), 0);
}

static void test_waiter_woken_with_value(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "events", 0, NULL);
	struct consumer c = {0};
	struct pusher p = {.q = q, .val = 42};

	assert_non_null(q);
	cons_start(l, &c, q);
	loop_run_once(l, 0); /* START: empty, waits */
	assert_int_equal(c.steps, 1);
	assert_int_equal(c.n_got, 0);
	assert_int_equal(task_report_stalled(l, 60000), 0);

	loop_timer_start(l, &p.t, 5, pusher_cb, &p);
	while (c.n_got == 0)
		loop_run_once(l, 50);
	assert_int_equal(c.got[0], 42);
	assert_int_equal(c.msg_steps, 1);
	assert_false(c.task.destroyed); /* -EAGAIN kept it registered */

	/* a second value, pushed straight from the loop thread */
	assert_int_equal(queue_push(q, V(43)), 0);
	while (c.n_got == 1)
		loop_run_once(l, 50);
	assert_int_equal(c.got[1], 43);

	queue_shutdown(q, "test over");
	run_until(l, &c.freed);
	assert_int_equal(c.end_rv, -ESHUTDOWN);
	assert_string_equal(c.reason, "test over");
	queue_free(q);
}

static void test_shutdown_wakes_all_waiters(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "fanout", 0, NULL);
	struct consumer c[3];
	int i;

	assert_non_null(q);
	memset(c, 0, sizeof(c));
	for (i = 0; i < 3; i++)
		cons_start(l, &c[i], q);
	loop_run_once(l, 0);
	assert_int_equal(task_count_live(l), 3);
	queue_shutdown(q, "job ended");
	loop_run_once(l, 0);
	loop_run_once(l, 0);
	for (i = 0; i < 3; i++) {
		assert_true(c[i].freed);
		assert_int_equal(c[i].msg_steps, 1);
		assert_int_equal(c[i].end_rv, -ESHUTDOWN);
		assert_string_equal(c[i].reason, "job ended");
	}
	queue_free(q);
}

static void test_one_wake_per_value(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "work", 0, NULL);
	struct consumer c[3];
	int i, sum = 0;

	assert_non_null(q);
	memset(c, 0, sizeof(c));
	for (i = 0; i < 3; i++) {
		c[i].one_per_step = true;
		cons_start(l, &c[i], q);
	}
	loop_run_once(l, 0); /* all three wait */
	for (i = 0; i < 3; i++)
		assert_int_equal(queue_push(q, V(10 + i)), 0);
	loop_run_once(l, 0);
	loop_run_once(l, 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(c[i].n_got, 1); /* one value each */
		assert_int_equal(c[i].msg_steps, 1);
		assert_int_equal(c[i].steps, 2); /* START, MSG: no spurious */
		sum += c[i].got[0];
	}
	assert_int_equal(sum, 10 + 11 + 12);
	assert_int_equal(queue_len(q), 0);
	queue_free(q); /* shuts down: everyone leaves */
	for (i = 0; i < 3; i++)
		run_until(l, &c[i].freed);
	for (i = 0; i < 3; i++)
		assert_string_equal(c[i].reason, "queue freed");
}

/* A consumer taking one value per step still gets all of them. */
static void test_one_per_step_loses_no_wakeup(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "slow", 0, NULL);
	struct consumer c = {.one_per_step = true};
	int i;

	assert_non_null(q);
	cons_start(l, &c, q);
	for (i = 0; i < 10; i++)
		assert_int_equal(queue_push(q, V(i)), 0);
	queue_shutdown(q, "eof");
	run_until(l, &c.freed);
	assert_int_equal(c.n_got, 10);
	for (i = 0; i < 10; i++)
		assert_int_equal(c.got[i], i);
	assert_int_equal(c.end_rv, -ESHUTDOWN);
	queue_free(q);
}

/* Freed by its creator while a consumer holds it: values drained first. */
static void test_free_with_consumer_registered(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "handoff", 0, count_free);
	struct consumer c = {0};
	int i;

	assert_non_null(q);
	cons_start(l, &c, q);
	for (i = 0; i < 3; i++) {
		int *p = malloc(sizeof(int));

		assert_non_null(p);
		assert_int_equal(queue_push(q, p), 0);
	}
	queue_free(q); /* the consumer's reference keeps it */
	run_until(l, &c.freed);
	assert_int_equal(c.n_got, 3);
	assert_string_equal(c.reason, "queue freed");
	assert_int_equal(n_freed, 0); /* nothing left over */
	for (i = 0; i < 3; i++)
		free(c.vals[i]);
}

/* ------------------------------------------ bounded: producer waits */

#define PROD_STATES(X) X(PRODUCING) X(CLOSED)
enum prod_state { PROD_STATES(TASK_STATE_ENUM) };
static const char *const prod_state_names[] = {PROD_STATES(TASK_STATE_NAME)};

struct producer {
	struct task task;
	struct queue *q;
	struct queue_waiter w;
	int next, total;
	int full_hits;
	bool freed;
};

static enum task_step prod_step(struct task *t, unsigned wake)
{
	struct producer *p = container_of(t, struct producer, task);
	int rv;

	switch ((enum prod_state)t->state) {
	case PRODUCING:
		while (p->next < p->total) {
			rv = queue_push(p->q, V(p->next));
			if (rv == -EAGAIN) {
				p->full_hits++;
				task_wait_on(t, "room in queue");
				return TASK_WAIT;
			}
			assert_int_equal(rv, 0);
			p->next++;
		}
		queue_shutdown(p->q, "all sent");
		queue_unwait(&p->w);
		task_set_state(t, CLOSED);
		return TASK_DONE;
	case CLOSED:
		break;
	}
	return TASK_DONE;
}

static void prod_destroy(struct task *t)
{
	container_of(t, struct producer, task)->freed = true;
}

static const struct task_ops prod_ops = {
    .kind = "producer",
    .state_names = prod_state_names,
    .n_states = 2,
    .step = prod_step,
    .destroy = prod_destroy,
};

static void test_bounded_producer_waits_for_room(void **state)
{
	struct loop *l = *state;
	struct queue *q = queue_new(l, "pipe", 2, NULL);
	struct consumer c = {.one_per_step = true};
	struct producer p = {.q = q, .total = 20};
	int i;

	assert_non_null(q);
	cons_start(l, &c, q);
	assert_int_equal(task_start(l, &p.task, &prod_ops), 0);
	queue_wait_space(q, &p.w, &p.task);
	run_until(l, &c.freed);
	run_until(l, &p.freed);
	assert_true(p.full_hits > 0);
	assert_int_equal(c.n_got, 20);
	for (i = 0; i < 20; i++)
		assert_int_equal(c.got[i], i);
	assert_string_equal(c.reason, "all sent");
	queue_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_push_pop_order, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bounded_capacity, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_push_after_shutdown_refused,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_leftovers_freed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_waiter_woken_with_value, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_wakes_all_waiters,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_one_wake_per_value, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_one_per_step_loses_no_wakeup,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_with_consumer_registered,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_bounded_producer_waits_for_room, setup, teardown),
	};

	log_init("test_queue");
	log_debug_from_env();
	alarm(300);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
