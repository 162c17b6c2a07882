/*
 * worker.c: the blocking-call thread pool (see worker.h).
 *
 * Two lists under one mutex: `pending` (QUEUED jobs, consumed by worker
 * threads waiting on `cond`) and `completed` (COMPLETED jobs, spliced off
 * by the loop thread when the pool's loop_async fires).  Nothing but list
 * manipulation and counters happens under the lock; state transitions are
 * logged after it is released, from copies, since the job may already
 * belong to the other side by then.
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define WORKER_MAX_THREADS 64

struct job_list {
	struct worker_job *head, *tail;
};

struct worker_pool {
	struct loop *loop;
	char name[16];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job_list pending, completed; /* under lock */
	unsigned n_queued, n_running, n_completed;
	uint64_t submitted, done_ok, done_cancelled;
	uint64_t max_wait_us, max_work_us;
	bool stopping;
	/* loop thread only */
	bool shut;
	unsigned in_flight;
	struct loop_async *async;
	pthread_t *threads;
	unsigned n_threads;
};

struct transition {
	const char *job;
	const char *pool;
	enum worker_job_state from, to;
	int line;
};

static const char *const worker_job_state_names[] = {
#define WORKER_JOB_STATE_NAME_(name) #name,
    WORKER_JOB_STATES(WORKER_JOB_STATE_NAME_)
#undef WORKER_JOB_STATE_NAME_
};

const char *worker_job_state_name(enum worker_job_state s)
{
	if ((unsigned)s >=
	    sizeof(worker_job_state_names) / sizeof(worker_job_state_names[0]))
		return "?";
	return worker_job_state_names[s];
}

/* Record a transition (under the lock); log it later with tr_log. */
#define job_set_state(p, j, s, tr) job_set_state_((p), (j), (s), __LINE__, (tr))
static void job_set_state_(struct worker_pool *p, struct worker_job *j,
			   enum worker_job_state s, int line,
			   struct transition *tr)
{
	tr->job = j->name ? j->name : "job";
	tr->pool = p->name;
	tr->from = j->state;
	tr->to = s;
	tr->line = line;
	j->state = s;
}

static void tr_log(const struct transition *tr)
{
	dbg("workers '%s' job '%s' %s -> %s (line %d)", tr->pool, tr->job,
	    worker_job_state_name(tr->from), worker_job_state_name(tr->to),
	    tr->line);
}

static void list_append(struct job_list *jl, struct worker_job *j)
{
	j->next = NULL;
	if (jl->tail)
		jl->tail->next = j;
	else
		jl->head = j;
	jl->tail = j;
}

static struct worker_job *list_pop(struct job_list *jl)
{
	struct worker_job *j = jl->head;

	if (j) {
		jl->head = j->next;
		if (!jl->head)
			jl->tail = NULL;
		j->next = NULL;
	}
	return j;
}

static bool list_remove(struct job_list *jl, struct worker_job *j)
{
	struct worker_job *prev = NULL, *cur;

	for (cur = jl->head; cur; prev = cur, cur = cur->next) {
		if (cur != j)
			continue;
		if (prev)
			prev->next = cur->next;
		else
			jl->head = cur->next;
		if (jl->tail == cur)
			jl->tail = prev;
		cur->next = NULL;
		return true;
	}
	return false;
}

/* ---------------------------------------------------------- worker side */

static void *worker_main(void *arg)
{
	struct worker_pool *p = arg;
	struct transition tr;
	struct worker_job *j;
	uint64_t t0, t1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->pending.head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		j = list_pop(&p->pending);
		if (!j)
			break; /* stopping and nothing left */
		p->n_queued--;
		p->n_running++;
		t0 = loop_clock_us();
		j->started_us = t0;
		if (t0 - j->queued_us > p->max_wait_us)
			p->max_wait_us = t0 - j->queued_us;
		job_set_state(p, j, WORKER_JOB_RUNNING, &tr);
		pthread_mutex_unlock(&p->lock);

		tr_log(&tr);
		j->work(j);
		t1 = loop_clock_us();

		pthread_mutex_lock(&p->lock);
		p->n_running--;
		j->finished_us = t1;
		if (t1 - t0 > p->max_work_us)
			p->max_work_us = t1 - t0;
		j->status = 0;
		job_set_state(p, j, WORKER_JOB_COMPLETED, &tr);
		list_append(&p->completed, j);
		p->n_completed++;
		pthread_mutex_unlock(&p->lock);
		/* j belongs to the loop thread from here on */
		tr_log(&tr);
		loop_async_send(p->async);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ------------------------------------------------------------ loop side */

static void drain_completed(struct worker_pool *p)
{
	struct worker_job *list, *j, *next;

	pthread_mutex_lock(&p->lock);
	list = p->completed.head;
	p->completed.head = p->completed.tail = NULL;
	for (j = list; j; j = j->next) {
		p->n_completed--;
		if (j->status == 0)
			p->done_ok++;
		else
			p->done_cancelled++;
	}
	pthread_mutex_unlock(&p->lock);

	for (j = list; j; j = next) {
		struct task *t = j->task;
		int status = j->status;
		struct transition tr;

		next = j->next;
		j->next = NULL;
		job_set_state(p, j, WORKER_JOB_IDLE, &tr);
		tr_log(&tr);
		j->pool = NULL;
		p->in_flight--;
		loop_release(p->loop);
		j->done(j, status); /* may free or resubmit j */
		if (t) {
			if (!task_destroyed(t))
				task_wake(t, TASK_WAKE_WORKER);
			task_unref(t);
		}
	}
}

static void pool_async_cb(struct loop_async *a, void *arg)
{
	drain_completed(arg);
}

static void join_threads(struct worker_pool *p, unsigned n)
{
	unsigned i;

	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < n; i++)
		pthread_join(p->threads[i], NULL);
}

struct worker_pool *worker_pool_new(struct loop *l, unsigned n_threads,
				    const char *name)
{
	struct worker_pool *p;
	sigset_t all, old;
	unsigned i;
	int e = 0;

	if (n_threads == 0 || n_threads > WORKER_MAX_THREADS) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->loop = l;
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "workers");
	p->threads = calloc(n_threads, sizeof(*p->threads));
	if (!p->threads) {
		e = ENOMEM;
		goto out_free_pool;
	}
	if ((e = pthread_mutex_init(&p->lock, NULL)))
		goto out_free_threads;
	if ((e = pthread_cond_init(&p->cond, NULL)))
		goto out_destroy_lock;
	p->async = loop_async_new(l, pool_async_cb, p);
	if (!p->async) {
		e = errno;
		goto out_destroy_cond;
	}
	/* threads inherit the mask: block every signal for them */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < n_threads; i++) {
		char tname[16];

		e = pthread_create(&p->threads[i], NULL, worker_main, p);
		if (e)
			break;
		snprintf(tname, sizeof(tname), "%.10s/%u", p->name, i);
		pthread_setname_np(p->threads[i], tname);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		log_err("workers '%s': pthread_create: %s", p->name,
			strerror(e));
		join_threads(p, i);
		goto out_close_async;
	}
	p->n_threads = n_threads;
	log_info("workers '%s': %u thread(s) started", p->name, n_threads);
	return p;

out_close_async:
	loop_async_close(p->async);
out_destroy_cond:
	pthread_cond_destroy(&p->cond);
out_destroy_lock:
	pthread_mutex_destroy(&p->lock);
out_free_threads:
	free(p->threads);
out_free_pool:
	free(p);
	errno = e;
	return NULL;
}

int worker_submit(struct worker_pool *p, struct worker_job *job)
{
	struct transition tr;

	if (!job->work || !job->done)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	if (job->state != WORKER_JOB_IDLE) { /* in flight: a worker writes it */
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		return -ESHUTDOWN;
	}
	/* the loop thread alone drains completions: refs taken here are safe */
	if (job->task)
		task_ref(job->task);
	job->pool = p;
	job->status = 0;
	job->queued_us = loop_clock_us();
	job->started_us = job->finished_us = 0;
	job_set_state(p, job, WORKER_JOB_QUEUED, &tr);
	list_append(&p->pending, job);
	p->n_queued++;
	p->submitted++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	tr_log(&tr);
	p->in_flight++;
	loop_hold(p->loop);
	return 0;
}

/* Under the lock: a QUEUED job completes with -ECANCELED. */
static void cancel_locked(struct worker_pool *p, struct worker_job *j,
			  struct transition *tr)
{
	p->n_queued--;
	j->status = -ECANCELED;
	j->finished_us = loop_clock_us();
	job_set_state(p, j, WORKER_JOB_COMPLETED, tr);
	list_append(&p->completed, j);
	p->n_completed++;
}

int worker_cancel(struct worker_job *job)
{
	struct worker_pool *p = job->pool;
	struct transition tr;
	enum worker_job_state st;

	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	st = job->state;
	if (st != WORKER_JOB_QUEUED || !list_remove(&p->pending, job)) {
		pthread_mutex_unlock(&p->lock);
		return st == WORKER_JOB_IDLE ? -EINVAL : -EBUSY;
	}
	cancel_locked(p, job, &tr);
	pthread_mutex_unlock(&p->lock);
	tr_log(&tr);
	loop_async_send(p->async);
	return 0;
}

void worker_pool_shutdown(struct worker_pool *p, enum worker_shutdown how)
{
	struct worker_job *j;
	unsigned n_cancelled = 0;

	if (p->shut)
		return;
	p->shut = true;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	switch (how) {
	case WORKER_SHUTDOWN_CANCEL:
		while ((j = list_pop(&p->pending))) {
			struct transition tr;

			cancel_locked(p, j, &tr);
			n_cancelled++;
		}
		break;
	case WORKER_SHUTDOWN_DRAIN:
		break;
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	log_info("workers '%s': shutting down (%s), %u queued job(s) cancelled",
		 p->name, how == WORKER_SHUTDOWN_DRAIN ? "drain" : "cancel",
		 n_cancelled);
	join_threads(p, p->n_threads);
	drain_completed(p);
	loop_async_close(p->async);
	p->async = NULL;
	if (p->in_flight)
		log_err("workers '%s': %u job(s) unaccounted for at shutdown",
			p->name, p->in_flight);
}

void worker_pool_free(struct worker_pool *p)
{
	if (!p)
		return;
	worker_pool_shutdown(p, WORKER_SHUTDOWN_CANCEL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}

/* ------------------------------------------------------ introspection */

void worker_pool_stats(struct worker_pool *p, struct worker_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	st->threads = p->n_threads;
	st->queued = p->n_queued;
	st->running = p->n_running;
	st->completed = p->n_completed;
	st->submitted = p->submitted;
	st->done_ok = p->done_ok;
	st->done_cancelled = p->done_cancelled;
	st->max_queue_wait_us = p->max_wait_us;
	st->max_work_us = p->max_work_us;
	st->stopping = p->stopping;
	pthread_mutex_unlock(&p->lock);
}

const char *worker_pool_debug_str(struct worker_pool *p, char *buf, size_t len)
{
	struct worker_pool_stats st;

	worker_pool_stats(p, &st);
	snprintf(buf, len,
		 "workers '%s' threads=%u queued=%u running=%u completed=%u "
		 "submitted=%" PRIu64 " ok=%" PRIu64 " cancelled=%" PRIu64
		 " max_wait=%" PRIu64 "us max_work=%" PRIu64 "us stopping=%d",
		 p->name, st.threads, st.queued, st.running, st.completed,
		 st.submitted, st.done_ok, st.done_cancelled,
		 st.max_queue_wait_us, st.max_work_us, st.stopping);
	return buf;
}

const char *worker_job_debug_str(const struct worker_job *j, char *buf,
				 size_t len)
{
	struct worker_pool *p =
	    j->pool; /* set and cleared by the loop thread */
	uint64_t now = loop_clock_us(), since = now;
	enum worker_job_state st;
	int status;

	if (p)
		pthread_mutex_lock(&p->lock);
	st = j->state;
	status = j->status;
	switch (st) {
	case WORKER_JOB_QUEUED:
		since = j->queued_us;
		break;
	case WORKER_JOB_RUNNING:
		since = j->started_us;
		break;
	case WORKER_JOB_COMPLETED:
		since = j->finished_us;
		break;
	case WORKER_JOB_IDLE:
		break;
	}
	if (p)
		pthread_mutex_unlock(&p->lock);
	snprintf(buf, len, "%s state=%s for=%" PRIu64 "ms status=%d",
		 j->name ? j->name : "job", worker_job_state_name(st),
		 (now - since) / 1000u, status);
	return buf;
}
