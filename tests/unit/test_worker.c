/*
 * test_worker.c: the worker pool with real threads and a real loop.
 * Synchronisation with work() uses condition variables, never sleeps, so
 * the tests are deterministic on a loaded machine.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "worker.h"

static pthread_t loop_thread;

static int setup(void **state)
{
	struct loop *l = loop_new();

	assert_non_null(l);
	loop_thread = pthread_self();
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

/* -------------------------------------------------------- a plain job */

struct tjob {
	struct worker_job job;
	pthread_t work_thread;
	atomic_int work_calls;
	int done_calls;
	int status;
	bool blocker; /* work() waits for the gate */
	int *n_done;
};

static atomic_int total_work;

/* The gate: a blocker job announces it started and waits to be let go. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_started;
static bool gate_open;

static void gate_reset(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_started = 0;
	gate_open = false;
	pthread_mutex_unlock(&gate_lock);
}

static void gate_wait_started(int n)
{
	pthread_mutex_lock(&gate_lock);
	while (gate_started < n)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
}

static void gate_release(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static void tjob_work(struct worker_job *j)
{
	struct tjob *t = container_of(j, struct tjob, job);

	t->work_thread = pthread_self();
	atomic_fetch_add(&t->work_calls, 1);
	atomic_fetch_add(&total_work, 1);
	if (t->blocker) {
		pthread_mutex_lock(&gate_lock);
		gate_started++;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
		pthread_mutex_unlock(&gate_lock);
	}
}

static void tjob_done(struct worker_job *j, int status)
{
	struct tjob *t = container_of(j, struct tjob, job);

	assert_true(pthread_equal(pthread_self(), loop_thread));
	assert_int_equal(j->state, WORKER_JOB_IDLE);
	t->done_calls++;
	t->status = status;
	if (t->n_done)
		(*t->n_done)++;
}

static void tjob_init(struct tjob *t, const char *name, int *n_done)
{
	memset(t, 0, sizeof(*t));
	t->job.name = name;
	t->job.work = tjob_work;
	t->job.done = tjob_done;
	t->n_done = n_done;
}

#define N_JOBS 100

static void test_100_jobs_3_threads(void **state)
{
	struct loop *l = *state;
	struct worker_pool *p = worker_pool_new(l, 3, "test");
	struct tjob *jobs = calloc(N_JOBS, sizeof(*jobs));
	struct worker_pool_stats st;
	pthread_t seen[N_JOBS];
	int i, k, n_done = 0, n_seen = 0;
	bool all = false;
	char buf[256];

	assert_non_null(p);
	assert_non_null(jobs);
	atomic_store(&total_work, 0);
	for (i = 0; i < N_JOBS; i++) {
		tjob_init(&jobs[i], "count", &n_done);
		assert_int_equal(worker_submit(p, &jobs[i].job), 0);
	}
	/* in flight: a second submit is refused */
	assert_int_equal(worker_submit(p, &jobs[N_JOBS - 1].job), -EINVAL);
	while (!all) {
		assert_true(loop_run_once(l, 50) >= 0);
		all = n_done == N_JOBS;
	}
	assert_int_equal(atomic_load(&total_work), N_JOBS);
	for (i = 0; i < N_JOBS; i++) {
		assert_int_equal(jobs[i].done_calls, 1);
		assert_int_equal(atomic_load(&jobs[i].work_calls), 1);
		assert_int_equal(jobs[i].status, 0);
		/* the work really ran off the loop thread */
		assert_false(pthread_equal(jobs[i].work_thread, loop_thread));
		for (k = 0; k < n_seen; k++)
			if (pthread_equal(seen[k], jobs[i].work_thread))
				break;
		if (k == n_seen)
			seen[n_seen++] = jobs[i].work_thread;
	}
	assert_true(n_seen >= 1 && n_seen <= 3);
	worker_pool_stats(p, &st);
	assert_int_equal(st.threads, 3);
	assert_int_equal(st.submitted, N_JOBS);
	assert_int_equal(st.done_ok, N_JOBS);
	assert_int_equal(st.done_cancelled, 0);
	assert_int_equal(st.queued + st.running + st.completed, 0);
	worker_pool_debug_str(p, buf, sizeof(buf));
	assert_non_null(strstr(buf, "workers 'test' threads=3"));
	/* done() is over: a job can be submitted again */
	assert_int_equal(worker_submit(p, &jobs[0].job), 0);
	while (jobs[0].done_calls < 2)
		loop_run_once(l, 50);
	worker_pool_free(p);
	free(jobs);
}

static void test_cancel_queued_job(void **state)
{
	struct loop *l = *state;
	struct worker_pool *p = worker_pool_new(l, 1, "one");
	struct tjob blocker, x, y;
	int n_done = 0;
	char buf[128];

	assert_non_null(p);
	gate_reset();
	tjob_init(&blocker, "blocker", &n_done);
	blocker.blocker = true;
	tjob_init(&x, "x", &n_done);
	tjob_init(&y, "y", &n_done);
	assert_int_equal(worker_cancel(&x.job), -EINVAL); /* not submitted */
	assert_int_equal(worker_submit(p, &blocker.job), 0);
	gate_wait_started(1); /* the only thread is busy */
	assert_int_equal(worker_submit(p, &x.job), 0);
	assert_int_equal(worker_submit(p, &y.job), 0);
	worker_job_debug_str(&x.job, buf, sizeof(buf));
	assert_non_null(strstr(buf, "x state=QUEUED"));

	assert_int_equal(worker_cancel(&x.job), 0);
	assert_int_equal(worker_cancel(&x.job), -EBUSY);       /* done() owed */
	assert_int_equal(worker_cancel(&blocker.job), -EBUSY); /* running */
	/* the cancelled job's done() comes on a later turn, not inside */
	assert_int_equal(x.done_calls, 0);
	while (x.done_calls == 0)
		loop_run_once(l, 50);
	assert_int_equal(x.status, -ECANCELED);
	assert_int_equal(atomic_load(&x.work_calls), 0);

	gate_release();
	while (n_done < 3)
		loop_run_once(l, 50);
	assert_int_equal(blocker.status, 0);
	assert_int_equal(y.status, 0);
	assert_int_equal(atomic_load(&y.work_calls), 1);
	assert_int_equal(x.done_calls, 1);
	assert_int_equal(atomic_load(&x.work_calls), 0);
	worker_pool_free(p);
}

/* Releases the gate once the pool says it is stopping. */
static void *releaser(void *arg)
{
	struct worker_pool *p = arg;
	struct worker_pool_stats st;

	for (;;) {
		worker_pool_stats(p, &st);
		if (st.stopping)
			break;
		usleep(1000);
	}
	gate_release();
	return NULL;
}

static void test_shutdown_with_jobs_pending(void **state)
{
	struct loop *l = *state;
	struct worker_pool *p = worker_pool_new(l, 1, "stop");
	struct tjob blocker, queued[5], late;
	struct worker_pool_stats st;
	pthread_t th;
	int i, n_done = 0;

	assert_non_null(p);
	gate_reset();
	tjob_init(&blocker, "blocker", &n_done);
	blocker.blocker = true;
	assert_int_equal(worker_submit(p, &blocker.job), 0);
	gate_wait_started(1);
	for (i = 0; i < 5; i++) {
		tjob_init(&queued[i], "queued", &n_done);
		assert_int_equal(worker_submit(p, &queued[i].job), 0);
	}
	worker_pool_stats(p, &st);
	assert_int_equal(st.queued, 5);
	assert_int_equal(st.running, 1);

	assert_int_equal(pthread_create(&th, NULL, releaser, p), 0);
	/* blocks until the running job returns; done() all called inside */
	worker_pool_shutdown(p, WORKER_SHUTDOWN_CANCEL);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(n_done, 6);
	assert_int_equal(blocker.done_calls, 1);
	assert_int_equal(blocker.status, 0);
	for (i = 0; i < 5; i++) {
		assert_int_equal(queued[i].done_calls, 1);
		assert_int_equal(queued[i].status, -ECANCELED);
		assert_int_equal(atomic_load(&queued[i].work_calls), 0);
	}
	tjob_init(&late, "late", &n_done);
	assert_int_equal(worker_submit(p, &late.job), -ESHUTDOWN);
	worker_pool_shutdown(p, WORKER_SHUTDOWN_CANCEL); /* idempotent */
	worker_pool_stats(p, &st);
	assert_int_equal(st.done_cancelled, 5);
	assert_int_equal(st.done_ok, 1);
	worker_pool_free(p);
	loop_run_once(l, 0);
	assert_int_equal(late.done_calls, 0);
	assert_int_equal(n_done, 6); /* exactly once each, even after turns */
}

static void test_shutdown_drain(void **state)
{
	struct loop *l = *state;
	struct worker_pool *p = worker_pool_new(l, 2, "drain");
	struct tjob jobs[10];
	int i, n_done = 0;

	assert_non_null(p);
	for (i = 0; i < 10; i++) {
		tjob_init(&jobs[i], "drained", &n_done);
		assert_int_equal(worker_submit(p, &jobs[i].job), 0);
	}
	worker_pool_shutdown(p, WORKER_SHUTDOWN_DRAIN);
	assert_int_equal(n_done, 10);
	for (i = 0; i < 10; i++) {
		assert_int_equal(jobs[i].done_calls, 1);
		assert_int_equal(jobs[i].status, 0);
		assert_int_equal(atomic_load(&jobs[i].work_calls), 1);
	}
	worker_pool_free(p);
}

/* ----------------------------------------------------- a job wakes a task */

#define USER_STATES(X) X(LOOKUP) X(WAITING) X(FINISHED)
enum user_state { USER_STATES(TASK_STATE_ENUM) };
static const char *const user_state_names[] = {USER_STATES(TASK_STATE_NAME)};

struct lookup {
	struct task task;
	struct worker_pool *pool;
	struct worker_job job; /* embedded: the pool's task ref keeps it */
	int input, result;     /* written by work(), read after done() */
	int done_status;
	bool job_done;
	bool freed;
	bool slow;
	unsigned wakes_seen;
};

static void lookup_work(struct worker_job *j)
{
	struct lookup *k = container_of(j, struct lookup, job);

	if (k->slow) {
		pthread_mutex_lock(&gate_lock);
		gate_started++;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
		pthread_mutex_unlock(&gate_lock);
	}
	k->result = k->input * 2; /* "munge_decode" */
}

static void lookup_done(struct worker_job *j, int status)
{
	struct lookup *k = container_of(j, struct lookup, job);

	assert_true(pthread_equal(pthread_self(), loop_thread));
	assert_false(k->freed); /* the pool's reference kept the task */
	k->done_status = status;
	k->job_done = true;
}

static enum task_step lookup_step(struct task *t, unsigned wake)
{
	struct lookup *k = container_of(t, struct lookup, task);

	k->wakes_seen |= wake;
	if (wake & TASK_WAKE_CANCEL) {
		/* the job cannot be recalled once running: end anyway */
		worker_cancel(&k->job);
		task_set_state(t, FINISHED);
		return TASK_DONE;
	}
	switch ((enum user_state)t->state) {
	case LOOKUP:
		k->job.name = "lookup";
		k->job.work = lookup_work;
		k->job.done = lookup_done;
		k->job.task = t;
		assert_int_equal(worker_submit(k->pool, &k->job), 0);
		task_set_state(t, WAITING);
		task_wait_on(t, "worker lookup");
		return TASK_WAIT;
	case WAITING:
		if (!(wake & TASK_WAKE_WORKER))
			return TASK_WAIT;
		assert_true(k->job_done);
		assert_int_equal(k->result, 42);
		task_set_state(t, FINISHED);
		return TASK_DONE;
	case FINISHED:
		break;
	}
	return TASK_DONE;
}

static void lookup_destroy(struct task *t)
{
	container_of(t, struct lookup, task)->freed = true;
}

static const struct task_ops lookup_ops = {
    .kind = "lookup",
    .state_names = user_state_names,
    .n_states = 3,
    .step = lookup_step,
    .destroy = lookup_destroy,
};

static void test_job_wakes_its_task(void **state)
{
	struct loop *l = *state;
	struct worker_pool *p = worker_pool_new(l, 2, "tasks");
	struct lookup k = {.input = 21};

	assert_non_null(p);
	k.pool = p;
	assert_int_equal(task_start(l, &k.task, &lookup_ops), 0);
	run_until(l, &k.freed);
	assert_true(k.wakes_seen & TASK_WAKE_WORKER);
	assert_int_equal(k.done_status, 0);
	worker_pool_free(p);
}

/* The task ends while its job runs: done() still runs, memory still there. */
static void test_task_ends_before_its_job(void **state)
{
	struct loop *l = *state;
	struct worker_pool *p = worker_pool_new(l, 1, "orphan");
	struct lookup k = {.input = 21, .slow = true};

	assert_non_null(p);
	gate_reset();
	k.pool = p;
	assert_int_equal(task_start(l, &k.task, &lookup_ops), 0);
	loop_run_once(l, 0); /* submits */
	gate_wait_started(1);
	assert_int_equal(task_cancel(&k.task, "client went away"), 0);
	loop_run_once(l, 0);
	assert_true(k.task.destroyed);
	assert_false(k.freed); /* the pool holds a reference */
	assert_int_equal(task_count_live(l), 0);
	gate_release();
	run_until(l, &k.freed);
	assert_true(k.job_done);
	assert_int_equal(k.done_status, 0);
	assert_false(k.wakes_seen & TASK_WAKE_WORKER);
	worker_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_100_jobs_3_threads, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_queued_job, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_with_jobs_pending,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_drain, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_job_wakes_its_task, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_task_ends_before_its_job,
					    setup, teardown),
	};

	log_init("test_worker");
	log_debug_from_env();
	alarm(300);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
