/*
 * test_task.c: tasks on a real loop.  State machines are checked by the
 * sequence of state names they went through (recorded by the registry's
 * observer); every test ends with no live task, io watch or timer.
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
#include "task.h"

/* Transitions of every task, "kind#id:STATE" appended by the observer. */
static char trace[4096];

static void observer(struct task *t, int old_state, int new_state, int line,
		     void *arg)
{
	char buf[128];

	assert_int_equal(t->state, new_state);
	assert_true(line > 0);
	snprintf(buf, sizeof(buf), "%s>", task_state_name_of(t, new_state));
	strncat(trace, buf, sizeof(trace) - strlen(trace) - 1);
}

static int setup(void **state)
{
	struct loop *l = loop_new();

	assert_non_null(l);
	assert_int_equal(task_set_observer(l, observer, NULL), 0);
	trace[0] = '\0';
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

/* ------------------------------------------------- a sequence of states */

#define CONN_STATES(X)                                                         \
	X(INIT)                                                                \
	X(RESOLVING)                                                           \
	X(CONNECTING)                                                          \
	X(SENDING)                                                             \
	X(RECEIVING)                                                           \
	X(CLOSING)

enum conn_state { CONN_STATES(TASK_STATE_ENUM) };
static const char *const conn_state_names[] = {CONN_STATES(TASK_STATE_NAME)};

struct conn {
	struct task task;
	struct loop *l;
	int fds[2];
	struct loop_io *io;
	char wakes[256];
	bool destroyed_called;
	bool done;
};

static void conn_debug(const struct task *t, char *buf, size_t len)
{
	const struct conn *c = container_of(t, struct conn, task);

	snprintf(buf, len, "fd=%d", c->fds[0]);
}

static void conn_destroy(struct task *t)
{
	struct conn *c = container_of(t, struct conn, task);

	c->destroyed_called = true;
	c->done = true;
}

static enum task_step conn_step(struct task *t, unsigned wake)
{
	struct conn *c = container_of(t, struct conn, task);
	char buf[64];

	strcat(c->wakes, task_wake_str(wake, buf, sizeof(buf)));
	strcat(c->wakes, " ");
	switch ((enum conn_state)t->state) {
	case INIT:
		task_set_state(t, RESOLVING);
		task_sleep(t, 1);
		task_wait_on(t, "resolver");
		return TASK_WAIT;
	case RESOLVING:
		assert_true(wake & TASK_WAKE_TIMER);
		task_set_state(t, CONNECTING);
		c->io = loop_io_add(c->l, c->fds[0], POLLIN, task_io_cb, t);
		assert_non_null(c->io);
		task_wait_on(t, "connect");
		return TASK_WAIT;
	case CONNECTING:
		assert_true(wake & TASK_WAKE_IO);
		assert_true(task_take_io_revents(t) & POLLIN);
		loop_io_close(c->io);
		c->io = NULL;
		task_set_state(t, SENDING);
		task_wake(t,
			  TASK_WAKE_USER); /* wake during a step: runs again */
		return TASK_WAIT;
	case SENDING:
		task_set_state(t, RECEIVING);
		task_sleep(t, 2);
		return TASK_WAIT;
	case RECEIVING:
		task_set_state(t, CLOSING);
		return TASK_DONE;
	case CLOSING:
		break;
	}
	fail_msg("step in unexpected state %s", task_state_name(t));
	return TASK_DONE;
}

static const struct task_ops conn_ops = {
    .kind = "conn",
    .state_names = conn_state_names,
    .n_states = sizeof(conn_state_names) / sizeof(conn_state_names[0]),
    .step = conn_step,
    .debug_str = conn_debug,
    .destroy = conn_destroy,
};

static void test_state_sequence(void **state)
{
	struct loop *l = *state;
	struct conn c = {.l = l};
	char buf[512];

	assert_int_equal(pipe(c.fds), 0);
	assert_int_equal(write(c.fds[1], "x", 1), 1);
	assert_int_equal(task_start(l, &c.task, &conn_ops), 0);
	assert_int_equal(task_count_live(l), 1);
	assert_string_equal(task_state_name(&c.task), "INIT");
	run_until(l, &c.done);
	assert_string_equal(trace,
			    "RESOLVING>CONNECTING>SENDING>RECEIVING>CLOSING>");
	assert_string_equal(c.wakes, "START TIMER IO USER TIMER ");
	assert_true(c.destroyed_called);
	assert_true(task_destroyed(&c.task));
	assert_int_equal(c.task.n_steps, 5);
	task_debug_str(&c.task, buf, sizeof(buf));
	assert_non_null(strstr(buf, "conn#1 state=CLOSING"));
	assert_non_null(
	    strstr(buf, "hist=INIT>RESOLVING>CONNECTING>SENDING>RECEIVING>"
			"CLOSING"));
	assert_non_null(strstr(buf, "| fd="));
	close(c.fds[0]);
	close(c.fds[1]);
}

static void test_bad_ops_refused(void **state)
{
	struct loop *l = *state;
	struct task t;
	struct task_ops ops = conn_ops;

	ops.step = NULL;
	assert_int_equal(task_start(l, &t, &ops), -EINVAL);
	ops = conn_ops;
	ops.n_states = 0;
	assert_int_equal(task_start(l, &t, &ops), -EINVAL);
	assert_int_equal(task_count_live(l), 0);
}

/* ------------------------------------------- cancel at every state */

#define MINI_STATES(X)                                                         \
	X(A)                                                                   \
	X(B)                                                                   \
	X(C)                                                                   \
	X(D)                                                                   \
	X(CANCELLED)

enum mini_state { MINI_STATES(TASK_STATE_ENUM) };
static const char *const mini_state_names[] = {MINI_STATES(TASK_STATE_NAME)};

struct mini {
	struct task task;
	int cancel_wakes;
	char reason[TASK_CANCEL_REASON_MAX];
	bool finished; /* reached the end without cancel */
	bool freed;
};

static void mini_destroy(struct task *t)
{
	container_of(t, struct mini, task)->freed = true;
}

static enum task_step mini_step(struct task *t, unsigned wake)
{
	struct mini *m = container_of(t, struct mini, task);

	/* cancel first: it is a message handled here, like any other */
	if (wake & TASK_WAKE_CANCEL) {
		m->cancel_wakes++;
		snprintf(m->reason, sizeof(m->reason), "%s",
			 task_cancel_reason(t));
		task_sleep_stop(t);
		task_set_state(t, CANCELLED);
		return TASK_DONE;
	}
	switch ((enum mini_state)t->state) {
	case A:
		if (wake & TASK_WAKE_START) {
			task_sleep(t, 2);
			task_wait_on(t, "timer a");
			return TASK_WAIT;
		}
		task_set_state(t, B);
		task_sleep(t, 2);
		return TASK_WAIT;
	case B:
		task_set_state(t, C);
		task_sleep(t, 2);
		return TASK_WAIT;
	case C:
		task_set_state(t, D);
		task_sleep(t, 2);
		return TASK_WAIT;
	case D:
		m->finished = true;
		return TASK_DONE;
	case CANCELLED:
		break;
	}
	fail_msg("unexpected state");
	return TASK_DONE;
}

static const struct task_ops mini_ops = {
    .kind = "mini",
    .state_names = mini_state_names,
    .n_states = sizeof(mini_state_names) / sizeof(mini_state_names[0]),
    .step = mini_step,
    .destroy = mini_destroy,
};

/* cancel_at: -1 before the first step, else once the task sits in it */
static void run_mini(struct loop *l, int cancel_at, const char *want_trace,
		     bool want_cancel)
{
	struct mini m = {0};
	char reason[64];

	trace[0] = '\0';
	assert_int_equal(task_start(l, &m.task, &mini_ops), 0);
	snprintf(reason, sizeof(reason), "test cancel at %d", cancel_at);
	if (cancel_at == -1)
		assert_int_equal(task_cancel(&m.task, reason), 0);
	while (!m.freed) {
		assert_true(loop_run_once(l, 50) >= 0);
		/* between turns the task is waiting in one state */
		if (cancel_at >= 0 && !m.task.destroyed && !m.task.cancelled &&
		    m.task.n_steps > 0 && m.task.state == cancel_at) {
			assert_int_equal(task_cancel(&m.task, reason), 0);
			/* a second cancel keeps the first reason */
			assert_int_equal(task_cancel(&m.task, "again"), 0);
			assert_true(task_cancelled(&m.task));
		}
	}
	assert_string_equal(trace, want_trace);
	if (want_cancel) {
		assert_int_equal(m.cancel_wakes, 1);
		assert_string_equal(m.reason, reason);
		assert_false(m.finished);
	} else {
		assert_int_equal(m.cancel_wakes, 0);
		assert_true(m.finished);
	}
	assert_int_equal(task_count_live(l), 0);
}

static void test_cancel_at_every_state(void **state)
{
	struct loop *l = *state;

	run_mini(l, -2, "B>C>D>", false); /* never cancelled */
	run_mini(l, -1, "CANCELLED>", true);
	run_mini(l, A, "CANCELLED>", true);
	run_mini(l, B, "B>CANCELLED>", true);
	run_mini(l, C, "B>C>CANCELLED>", true);
	run_mini(l, D, "B>C>D>CANCELLED>", true);
}

/* ---------------------------------------- freed only at end of turn */

struct quick {
	struct task task;
	struct loop_defer check;
	bool freed;
	bool checked;
};

static const char *const one_state[] = {"ONLY"};

static enum task_step quick_step(struct task *t, unsigned wake)
{
	return TASK_DONE;
}

static void quick_destroy(struct task *t)
{
	container_of(t, struct quick, task)->freed = true;
}

static const struct task_ops quick_ops = {
    .kind = "quick",
    .state_names = one_state,
    .n_states = 1,
    .step = quick_step,
    .destroy = quick_destroy,
};

static void quick_check(struct loop_defer *d, void *arg)
{
	struct quick *q = arg;

	/* same turn, after the step returned TASK_DONE */
	assert_true(q->task.destroyed);
	assert_false(q->freed);
	assert_int_equal(task_cancel(&q->task, "late"), -ESRCH);
	task_wake(&q->task, TASK_WAKE_USER); /* ignored */
	q->checked = true;
}

static void test_freed_only_at_end_of_turn(void **state)
{
	struct loop *l = *state;
	struct quick q = {0};

	assert_int_equal(task_start(l, &q.task, &quick_ops), 0);
	loop_defer(l, &q.check, quick_check, &q);
	loop_run_once(l, 0);
	assert_true(q.checked);
	assert_true(q.freed);
	assert_int_equal(task_count_live(l), 0);
}

/* -------------------------------------------------- destroyed re-check */

#define PEER_STATES(X) X(WAITING) X(GONE)
enum peer_state { PEER_STATES(TASK_STATE_ENUM) };
static const char *const peer_state_names[] = {PEER_STATES(TASK_STATE_NAME)};

struct peer {
	struct task task;
	struct task *watcher;
	bool freed;
	int freed_order;
};

struct watcher {
	struct task task;
	struct peer *peer; /* holds a task reference */
	bool saw_destroyed;
	bool freed;
	int unref_order;
};

static int order_counter;

static enum task_step peer_step(struct task *t, unsigned wake)
{
	struct peer *p = container_of(t, struct peer, task);

	if (wake & TASK_WAKE_USER) {
		/* tell the watcher, then end: the watcher's step runs later */
		task_wake(p->watcher, TASK_WAKE_USER);
		task_set_state(t, GONE);
		return TASK_DONE;
	}
	task_wait_on(t, "poke");
	return TASK_WAIT;
}

static void peer_destroy(struct task *t)
{
	struct peer *p = container_of(t, struct peer, task);

	p->freed = true;
	p->freed_order = ++order_counter;
}

static const struct task_ops peer_ops = {
    .kind = "peer",
    .state_names = peer_state_names,
    .n_states = 2,
    .step = peer_step,
    .destroy = peer_destroy,
};

static enum task_step watcher_step(struct task *t, unsigned wake)
{
	struct watcher *w = container_of(t, struct watcher, task);

	if (!(wake & TASK_WAKE_USER)) {
		task_wait_on(t, "peer news");
		return TASK_WAIT;
	}
	/* after a wake, re-check before touching the shared object */
	if (task_destroyed(&w->peer->task)) {
		w->saw_destroyed = true;
		assert_false(w->peer->freed); /* our reference keeps it */
		assert_int_equal(task_cancel(&w->peer->task, "x"), -ESRCH);
		w->unref_order = ++order_counter;
		task_unref(&w->peer->task);
		w->peer = NULL;
	}
	return TASK_DONE;
}

static void watcher_destroy(struct task *t)
{
	container_of(t, struct watcher, task)->freed = true;
}

static const struct task_ops watcher_ops = {
    .kind = "watcher",
    .state_names = one_state,
    .n_states = 1,
    .step = watcher_step,
    .destroy = watcher_destroy,
};

static void test_destroyed_recheck(void **state)
{
	struct loop *l = *state;
	struct peer p = {0};
	struct watcher w = {0};

	order_counter = 0;
	assert_int_equal(task_start(l, &p.task, &peer_ops), 0);
	assert_int_equal(task_start(l, &w.task, &watcher_ops), 0);
	p.watcher = &w.task;
	w.peer = &p;
	task_ref(&p.task);
	loop_run_once(l, 0); /* both wait */
	assert_int_equal(task_count_live(l), 2);

	task_wake(&p.task, TASK_WAKE_USER);
	loop_run_once(l, 0); /* peer ends, memory kept by the reference */
	assert_true(p.task.destroyed);
	assert_false(p.freed);
	assert_int_equal(task_count_live(l), 1);
	assert_int_equal(task_count_ended_unreleased(l), 1);
	assert_int_equal(p.task.refs, 1);

	run_until(l, &w.freed);
	assert_true(w.saw_destroyed);
	assert_true(p.freed);
	assert_true(p.freed_order > w.unref_order);
	assert_string_equal(trace, "GONE>");
}

/* ------------------------------------------------------- stall report */

static char captured[8192];

static void capture_sink(enum log_level lvl, const char *line, void *arg)
{
	if (lvl <= LOG_LVL_INFO) {
		strncat(captured, line,
			sizeof(captured) - strlen(captured) - 2);
		strcat(captured, "\n");
	}
}

struct sleeper {
	struct task task;
	bool freed;
};

static enum task_step sleeper_step(struct task *t, unsigned wake)
{
	if (wake & TASK_WAKE_CANCEL)
		return TASK_DONE;
	task_wait_on(t, "godot");
	return TASK_WAIT;
}

static void sleeper_destroy(struct task *t)
{
	container_of(t, struct sleeper, task)->freed = true;
}

static const struct task_ops sleeper_ops = {
    .kind = "sleeper",
    .state_names = one_state,
    .n_states = 1,
    .step = sleeper_step,
    .destroy = sleeper_destroy,
};

struct seen {
	int n;
	char state[16];
	char waiting_on[16];
	uint64_t waited_ms;
	bool runnable;
	bool idle;
};

static int foreach_cb(struct task *t, const struct task_info *info, void *arg)
{
	struct seen *s = arg;

	s->n++;
	snprintf(s->state, sizeof(s->state), "%s", info->state);
	snprintf(s->waiting_on, sizeof(s->waiting_on), "%s", info->waiting_on);
	s->waited_ms = info->waited_ms;
	s->runnable = info->runnable;
	s->idle = info->idle;
	assert_string_equal(info->kind, "sleeper");
	assert_non_null(strstr(info->debug, "waits='godot'"));
	return 0;
}

static void test_stall_report(void **state)
{
	struct loop *l = *state;
	struct sleeper s = {0};
	struct seen seen = {0};
	uint64_t start;

	assert_int_equal(task_start(l, &s.task, &sleeper_ops), 0);
	loop_run_once(l, 0); /* it says it waits on godot */
	start = loop_clock_ms();
	while (loop_clock_ms() - start < 30)
		loop_run_once(l, 30);

	assert_int_equal(task_foreach(l, foreach_cb, &seen), 1);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.state, "ONLY");
	assert_string_equal(seen.waiting_on, "godot");
	assert_true(seen.waited_ms >= 30);
	assert_false(seen.runnable);

	captured[0] = '\0';
	log_set_sink(capture_sink, NULL);
	assert_int_equal(task_report_stalled(l, 60000), 0);
	assert_int_equal(task_report_stalled(l, 10), 1);
	assert_int_equal(task_dump(l), 1);
	log_set_sink(NULL, NULL);
	assert_non_null(strstr(captured, "task stalled"));
	assert_non_null(strstr(captured, "sleeper#1"));
	assert_non_null(strstr(captured, "waits='godot'"));
	assert_non_null(strstr(captured, "1 live task(s)"));

	/* a wait with no end by design is not a stall; it shows as idle */
	task_wait_idle(&s.task, "godot");
	seen.n = 0;
	task_foreach(l, foreach_cb, &seen);
	assert_true(seen.idle);
	assert_int_equal(task_report_stalled(l, 10), 0);
	task_wait_on(&s.task, "godot");
	assert_int_equal(task_report_stalled(l, 10), 1);

	/* a woken (runnable) task is not stalled */
	task_wake(&s.task, TASK_WAKE_USER);
	assert_int_equal(task_report_stalled(l, 10), 0);

	assert_int_equal(task_cancel(&s.task, "test over"), 0);
	run_until(l, &s.freed);
}

/* --------------------------------------------------- wakes coalesce */

struct counter {
	struct task task;
	unsigned wakes[8];
	int steps;
	bool freed;
};

static enum task_step counter_step(struct task *t, unsigned wake)
{
	struct counter *c = container_of(t, struct counter, task);

	c->wakes[c->steps++] = wake;
	if (c->steps == 1)
		task_wake(t, TASK_WAKE_MSG); /* during the step */
	if (wake & TASK_WAKE_CANCEL)
		return TASK_DONE;
	return TASK_WAIT;
}

static void counter_destroy(struct task *t)
{
	container_of(t, struct counter, task)->freed = true;
}

static const struct task_ops counter_ops = {
    .kind = "counter",
    .state_names = one_state,
    .n_states = 1,
    .step = counter_step,
    .destroy = counter_destroy,
};

static void test_wakes_coalesce(void **state)
{
	struct loop *l = *state;
	struct counter c = {0};

	assert_int_equal(task_start(l, &c.task, &counter_ops), 0);
	task_wake(&c.task, TASK_WAKE_IO);
	task_wake(&c.task, TASK_WAKE_TIMER | TASK_WAKE_IO);
	loop_run_once(l, 0);
	assert_int_equal(c.steps, 1);
	assert_int_equal(c.wakes[0],
			 TASK_WAKE_START | TASK_WAKE_IO | TASK_WAKE_TIMER);
	loop_run_once(l, 0);
	assert_int_equal(c.steps, 2);
	assert_int_equal(c.wakes[1], TASK_WAKE_MSG);
	loop_run_once(l, 0);
	assert_int_equal(c.steps, 2); /* nothing pending: no step */
	task_cancel(&c.task, NULL);
	run_until(l, &c.freed);
	assert_int_equal(c.wakes[2], TASK_WAKE_CANCEL);
}

/* ----------------------------------------------- a flood of tasks */

#define N_FLOOD 500

static void test_many_tasks_share_the_budget(void **state)
{
	struct loop *l = *state;
	struct quick *q = calloc(N_FLOOD, sizeof(*q));
	uint64_t turns0 = loop_turn(l);
	int i, freed = 0;

	assert_non_null(q);
	loop_set_budget(l, 64);
	for (i = 0; i < N_FLOOD; i++)
		assert_int_equal(task_start(l, &q[i].task, &quick_ops), 0);
	assert_int_equal(task_count_live(l), N_FLOOD);
	while (task_count_live(l) > 0)
		loop_run_once(l, 0);
	assert_true(loop_turn(l) - turns0 >= (N_FLOOD + 63) / 64);
	for (i = 0; i < N_FLOOD; i++)
		freed += q[i].freed;
	assert_int_equal(freed, N_FLOOD);
	free(q);
}

/* ----------------------------------------- a long job, sliced */

struct slicer {
	struct task task;
	int done_items, slices;
	int fds[2];
	int io_seen_mid; /* fd served while the job was half way */
	bool freed;
};

static enum task_step slicer_step(struct task *t, unsigned wake)
{
	struct slicer *s = container_of(t, struct slicer, task);
	int i;

	for (i = 0; i < 100 && s->done_items < 1000; i++)
		s->done_items++;
	s->slices++;
	if (s->done_items < 1000)
		return task_yield(t);
	return TASK_DONE;
}

static void slicer_destroy(struct task *t)
{
	container_of(t, struct slicer, task)->freed = true;
}

static const struct task_ops slicer_ops = {
    .kind = "slicer",
    .state_names = one_state,
    .n_states = 1,
    .step = slicer_step,
    .destroy = slicer_destroy,
};

static void slicer_io_cb(struct loop_io *io, int fd, unsigned revents,
			 void *arg)
{
	struct slicer *s = arg;

	if (s->done_items > 0 && s->done_items < 1000)
		s->io_seen_mid++;
}

static void test_sliced_job_yields_to_io(void **state)
{
	struct loop *l = *state;
	struct slicer s = {0};
	struct loop_io *io;

	assert_int_equal(pipe(s.fds), 0);
	assert_int_equal(write(s.fds[1], "x", 1), 1); /* stays readable */
	io = loop_io_add(l, s.fds[0], POLLIN, slicer_io_cb, &s);
	assert_non_null(io);
	assert_int_equal(task_start(l, &s.task, &slicer_ops), 0);
	run_until(l, &s.freed);
	assert_int_equal(s.slices, 10);
	assert_true(s.io_seen_mid >= 9); /* between every two slices */
	loop_io_close(io);
	close(s.fds[0]);
	close(s.fds[1]);
}

/* Shutdown: an abandoned task takes no further step, not even for a wake
   already queued, and is freed at the end of the turn. */
static void test_abandon(void **state)
{
	struct loop *l = *state;
	struct sleeper never = {0}, s = {0};

	task_abandon(&never.task, "never started"); /* a no-op */
	assert_int_equal(task_start(l, &s.task, &sleeper_ops), 0);
	loop_run_once(l, 0);
	assert_int_equal(s.task.n_steps, 1);
	assert_int_equal(task_count_live(l), 1);
	task_wake(&s.task, TASK_WAKE_MSG);
	task_abandon(&s.task, "shutdown");
	assert_true(s.task.destroyed);
	assert_int_equal(task_count_live(l), 0);
	assert_false(s.freed); /* freed at the end of the turn */
	loop_run_once(l, 0);
	assert_true(s.freed);
	assert_int_equal(s.task.n_steps, 1);
	task_abandon(&s.task, "again"); /* ended: a no-op */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_state_sequence, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_ops_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_at_every_state, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_freed_only_at_end_of_turn,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_destroyed_recheck, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stall_report, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wakes_coalesce, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_many_tasks_share_the_budget,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sliced_job_yields_to_io, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_abandon, setup, teardown),
	};

	log_init("test_task");
	log_debug_from_env();
	alarm(300);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
