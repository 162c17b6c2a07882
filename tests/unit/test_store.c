/*
 * test_store.c: the SQLite store with real files in mkdtemp directories,
 * a real loop and the real store thread.
 *
 * TIERGATE_BENCH_100K=1 runs only the restart benchmark (100 000 jobs,
 * close -> open -> load_all), which prints its figures and asserts
 * nothing about time (bench/store-restart.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#define RUN_LIMIT_MS 60000 /* before fixture.h: longer than its default */
#include "fixture.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "task.h"

struct fx {
	struct loop *loop;
	char dir[64];
	char path[128];
	struct store *st;
};

static pthread_t loop_thread;

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->loop = loop_new();
	assert_non_null(f->loop);
	loop_thread = pthread_self();
	snprintf(f->dir, sizeof(f->dir), "/tmp/tg-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/jobs.db", f->dir);
	*state = f;
	return 0;
}

static void fx_open(struct fx *f, const struct store_opts *o)
{
	char err[512];
	int rv = store_open(f->loop, f->path, o, &f->st, err, sizeof(err));

	if (rv)
		fail_msg("store_open: %d %s", rv, err);
	assert_non_null(f->st);
}

static void fx_close(struct fx *f)
{
	store_close(f->st);
	f->st = NULL;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->st)
		fx_close(f);
	assert_loop_quiet(f->loop);
	loop_free(f->loop);
	rm_rf(f->dir);
	free(f);
	return 0;
}

/* ------------------------------------------------------------ helpers */

struct waiter {
	struct store_req req;
	bool done;
	int calls;
	bool on_loop;
};

static void waiter_cb(struct store_req *r)
{
	struct waiter *w = container_of(r, struct waiter, req);

	w->done = true;
	w->calls++;
	w->on_loop = pthread_equal(pthread_self(), loop_thread);
}

static void waiter_init(struct waiter *w)
{
	memset(w, 0, sizeof(*w));
	w->req.cb = waiter_cb;
}

static void waiter_wait(struct fx *f, struct waiter *w)
{
	run_until(f->loop, &w->done);
	assert_int_equal(w->calls, 1);
	assert_true(w->on_loop);
	assert_false(store_req_pending(&w->req));
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	assert_non_null(d);
	return d;
}

static char *xprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) >= 0);
	va_end(ap);
	return s;
}

/* A job with every field set to something not default. */
static void make_job(struct store_job *j, int i, enum store_job_state state)
{
	store_job_init(j);
	j->id = xprintf("j-%06d", i);
	j->site = xstrdup(i % 2 ? "beta" : "alpha");
	j->slurm_job_id = 1000 + i;
	j->user = xstrdup(i % 3 ? "alice" : "bob");
	j->tier = xstrdup(i % 2 ? "premium" : "basic");
	j->name = xprintf("job %d", i);
	j->state = state;
	j->slurm_state = xstrdup("RUNNING");
	j->reason = xstrdup("None");
	j->exit_code = i % 5;
	j->signal = i % 7 ? STORE_NULL : 9;
	j->request_body = xprintf(
	    "{\"site\":\"alpha\",\"tier\":\"premium\",\"script\":\"#!/bin/bash"
	    "\\necho %d\\n\",\"name\":\"job %d\",\"resources\":{\"ntasks\":1,"
	    "\"cpus_per_task\":2,\"time_limit_min\":10},\"environment\":"
	    "{\"K\":\"V\"}}",
	    i, i);
	j->body_hash = xprintf("h%d", i);
	j->cancel_requested = i % 4 == 0;
	j->ended_by = i % 4 == 0 ? xstrdup("user:alice") : NULL;
	j->error_code = i % 6 == 0 ? xstrdup("site_rejected") : NULL;
	j->error_message = i % 6 == 0 ? xstrdup("sbatch: error: nope") : NULL;
	j->request_id = xprintf("r-%d", i);
	j->created_at = 1795628285 + i;
	j->updated_at = 1795628290 + i;
	j->cpu_seconds = 1.5 * i;
	j->charge = 4.5 * i;
	j->submit_attempts = i % 3;
	j->tag = xprintf("tiergate:j-%06d:1", i);
	j->intent = i % 2 ? xstrdup("submit") : NULL;
	j->intent_at = i % 2 ? 1795628286 + i : STORE_NULL;
}

static int insert_sync(struct fx *f, const struct store_job *j,
		       struct waiter *w)
{
	int rv;

	waiter_init(w);
	rv = store_job_insert(f->st, &w->req, j);
	if (rv)
		return rv;
	waiter_wait(f, w);
	return w->req.rv;
}

static int insert1(struct fx *f, const struct store_job *j)
{
	struct waiter w;
	int rv = insert_sync(f, j, &w);

	store_req_reset(&w.req);
	return rv;
}

/* The stored job (caller frees), or NULL with *rv. */
static struct store_job *get_sync(struct fx *f, const char *id, int *rv)
{
	struct waiter w;
	struct store_job *j;

	waiter_init(&w);
	assert_int_equal(store_job_get(f->st, &w.req, id), 0);
	waiter_wait(f, &w);
	*rv = w.req.rv;
	j = w.req.job;
	w.req.job = NULL;
	store_req_reset(&w.req);
	return j;
}

static void assert_same_job(const struct store_job *a,
			    const struct store_job *b)
{
	uint64_t d = store_job_diff(a, b);
	int i;

	for (i = 0; i < STORE_FI_COUNT_; i++)
		if (d & (UINT64_C(1) << i))
			print_error("job %s: field %s differs\n", a->id,
				    store_job_field_name(i));
	assert_int_equal(d, 0);
}

/* ------------------------------------------------------------- tables */

static void test_states_and_errors(void **state)
{
	int i;

	assert_string_equal(store_job_state_name(STORE_JOB_ACCEPTED),
			    "accepted");
	assert_string_equal(store_job_state_name(STORE_JOB_UNKNOWN), "unknown");
	assert_string_equal(store_job_state_name(99), "?");
	for (i = 0; i < STORE_JOB_STATE_COUNT_; i++)
		assert_int_equal(store_job_state_parse(store_job_state_name(i)),
				 i);
	assert_int_equal(store_job_state_parse("bogus"), -1);
	assert_int_equal(store_job_state_parse(NULL), -1);
	assert_false(store_job_state_final(STORE_JOB_ACCEPTED));
	assert_false(store_job_state_final(STORE_JOB_SUBMITTING));
	assert_false(store_job_state_final(STORE_JOB_COMPLETING));
	assert_true(store_job_state_final(STORE_JOB_COMPLETED));
	assert_true(store_job_state_final(STORE_JOB_REJECTED));
	assert_true(store_job_state_final(STORE_JOB_UNKNOWN));
	assert_string_equal(store_job_field_name(STORE_FI_SLURM_JOB_ID),
			    "slurm_job_id");
	assert_true(store_error_unavailable(-ENOSPC));
	assert_true(store_error_unavailable(-EIO));
	assert_true(store_error_unavailable(-EROFS));
	assert_false(store_error_unavailable(-EEXIST));
	assert_false(store_error_unavailable(0));
	assert_string_equal(store_strerror(-ENOSPC), "disk full");
	assert_string_equal(store_strerror(-EEXIST), "idempotency mismatch");
}

/* Network FS refusal: the f_type check with injected values. */
static void test_network_fs_magic(void **state)
{
	struct fx *f = *state;
	char err[512];

	assert_string_equal(store_network_fs_name(0x6969), "nfs");
	assert_string_equal(store_network_fs_name(0xFF534D42), "cifs");
	assert_string_equal(store_network_fs_name(0xFE534D42), "smb2");
	assert_string_equal(store_network_fs_name(0x517B), "smb");
	assert_string_equal(store_network_fs_name(0x65735546), "fuse");
	assert_string_equal(store_network_fs_name(0x01021997), "9p");
	assert_string_equal(store_network_fs_name(0x00c36400), "ceph");
	assert_string_equal(store_network_fs_name(0x5346414F), "afs");
	assert_string_equal(store_network_fs_name(0x0BD00BD0), "lustre");
	assert_null(store_network_fs_name(0xEF53));	/* ext4 */
	assert_null(store_network_fs_name(0x58465342)); /* xfs */
	assert_null(store_network_fs_name(0x9123683E)); /* btrfs */
	assert_null(store_network_fs_name(0x01021994)); /* tmpfs */
	assert_null(store_network_fs_name(0));
	/* the real check on the test directory (local) */
	assert_int_equal(store_check_local_fs(f->path, err, sizeof(err)), 0);
	assert_int_equal(
	    store_check_local_fs("/nonexistent-dir/x.db", err, sizeof(err)),
	    -ENOENT);
	assert_non_null(strstr(err, "/nonexistent-dir"));
	assert_int_equal(store_check_local_fs("", err, sizeof(err)), -EINVAL);
}

/* --------------------------------------------------------- basic CRUD */

static void test_insert_get_update_list(void **state)
{
	struct fx *f = *state;
	struct store_job jobs[6], upd, *got;
	struct store_filter flt;
	struct waiter w;
	int i, rv;

	fx_open(f, NULL);
	for (i = 0; i < 6; i++) {
		make_job(&jobs[i], i + 1, STORE_JOB_RUNNING);
		assert_int_equal(insert1(f, &jobs[i]), 0);
	}
	/* every field round-trips */
	for (i = 0; i < 6; i++) {
		got = get_sync(f, jobs[i].id, &rv);
		assert_int_equal(rv, 0);
		assert_non_null(got);
		assert_same_job(got, &jobs[i]);
		assert_true(got->seq > 0);
		store_job_free(got);
	}
	assert_null(get_sync(f, "j-nope", &rv));
	assert_int_equal(rv, -ENOENT);

	/* same id again */
	assert_int_equal(insert1(f, &jobs[0]), -ENOTUNIQ);
	/* bad input is refused at submit, no completion */
	waiter_init(&w);
	store_job_init(&upd);
	assert_int_equal(store_job_insert(f->st, &w.req, &upd), -EINVAL);
	assert_false(store_req_pending(&w.req));

	/* update some fields, the rest stays */
	store_job_init(&upd);
	upd.id = xstrdup(jobs[1].id);
	upd.state = STORE_JOB_COMPLETED;
	upd.exit_code = 3;
	upd.signal = STORE_NULL;
	upd.cpu_seconds = 42.25;
	upd.updated_at = 1795700000;
	upd.slurm_state = xstrdup("COMPLETED");
	upd.request_body = xstrdup("not written: not in the mask");
	waiter_init(&w);
	assert_int_equal(
	    store_job_update(f->st, &w.req, &upd,
			     STORE_F(STATE) | STORE_F(EXIT_CODE) |
				 STORE_F(SIGNAL) | STORE_F(CPU_SECONDS) |
				 STORE_F(UPDATED_AT) | STORE_F(SLURM_STATE),
			     STORE_JOB_RUNNING),
	    0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	store_req_reset(&w.req);
	got = get_sync(f, jobs[1].id, &rv);
	assert_non_null(got);
	assert_int_equal(got->state, STORE_JOB_COMPLETED);
	assert_int_equal(got->exit_code, 3);
	assert_int_equal(got->signal, STORE_NULL);
	assert_true(got->cpu_seconds == 42.25);
	assert_int_equal(got->updated_at, 1795700000);
	assert_string_equal(got->slurm_state, "COMPLETED");
	assert_string_equal(got->request_body, jobs[1].request_body);
	assert_string_equal(got->tag, jobs[1].tag);
	store_job_free(got);

	/* compare-and-set: the row is no longer RUNNING */
	waiter_init(&w);
	assert_int_equal(store_job_update(f->st, &w.req, &upd, STORE_F(STATE),
					  STORE_JOB_RUNNING),
			 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, -ESTALE);
	assert_non_null(w.req.job);
	assert_int_equal(w.req.job->state, STORE_JOB_COMPLETED);
	store_req_reset(&w.req);
	assert_null(w.req.job);
	/* unknown job; bad masks */
	free(upd.id);
	upd.id = xstrdup("j-nope");
	waiter_init(&w);
	assert_int_equal(
	    store_job_update(f->st, &w.req, &upd, STORE_F(STATE), -1), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, -ENOENT);
	store_req_reset(&w.req);
	assert_int_equal(store_job_update(f->st, &w.req, &upd, STORE_F(ID), -1),
			 -EINVAL);
	assert_int_equal(store_job_update(f->st, &w.req, &upd, 0, -1), -EINVAL);
	assert_int_equal(
	    store_job_update(f->st, &w.req, &upd, STORE_F(SITE), -1),
	    -EINVAL); /* site NULL: NOT NULL column */
	store_job_clear(&upd);

	/* lists: newest first, filters, limit, no request body */
	waiter_init(&w);
	assert_int_equal(store_jobs_list(f->st, &w.req, NULL), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	assert_int_equal(w.req.n_jobs, 6);
	assert_string_equal(w.req.jobs[0]->id, jobs[5].id);
	assert_string_equal(w.req.jobs[5]->id, jobs[0].id);
	assert_null(w.req.jobs[0]->request_body);
	store_req_reset(&w.req);

	memset(&flt, 0, sizeof(flt));
	flt.user = "alice";
	flt.site = "beta";
	flt.state = -1;
	waiter_init(&w);
	assert_int_equal(store_jobs_list(f->st, &w.req, &flt), 0);
	waiter_wait(f, &w);
	/* alice: i % 3 != 0 for i in 1..6 -> 1 2 4 5; beta: odd -> 1 5 */
	assert_int_equal(w.req.n_jobs, 2);
	assert_string_equal(w.req.jobs[0]->id, "j-000005");
	assert_string_equal(w.req.jobs[1]->id, "j-000001");
	store_req_reset(&w.req);

	memset(&flt, 0, sizeof(flt));
	flt.state = STORE_JOB_COMPLETED;
	waiter_init(&w);
	assert_int_equal(store_jobs_list(f->st, &w.req, &flt), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.n_jobs, 1);
	assert_string_equal(w.req.jobs[0]->id, jobs[1].id);
	store_req_reset(&w.req);

	memset(&flt, 0, sizeof(flt));
	flt.state = -1;
	flt.limit = 2;
	waiter_init(&w);
	assert_int_equal(store_jobs_list(f->st, &w.req, &flt), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.n_jobs, 2);
	store_req_reset(&w.req);

	for (i = 0; i < 6; i++)
		store_job_clear(&jobs[i]);
}

static void test_idempotency(void **state)
{
	struct fx *f = *state;
	struct store_job a, b, c, d;
	struct waiter w;

	fx_open(f, NULL);
	make_job(&a, 1, STORE_JOB_ACCEPTED);
	a.idem_key = xstrdup("key-1");
	assert_int_equal(insert1(f, &a), 0);

	/* same key, same request: the stored job, nothing inserted */
	make_job(&b, 2, STORE_JOB_ACCEPTED);
	free(b.user);
	b.user = xstrdup(a.user);
	b.idem_key = xstrdup("key-1");
	free(b.body_hash);
	b.body_hash = xstrdup(a.body_hash);
	assert_int_equal(insert_sync(f, &b, &w), 0);
	assert_true(w.req.existed);
	assert_non_null(w.req.job);
	assert_string_equal(w.req.job->id, a.id);
	assert_same_job(w.req.job, &a);
	store_req_reset(&w.req);

	/* same key, another request: mismatch, the stored job says which */
	free(b.body_hash);
	b.body_hash = xstrdup("other");
	assert_int_equal(insert_sync(f, &b, &w), -EEXIST);
	assert_false(w.req.existed);
	assert_non_null(w.req.job);
	assert_string_equal(w.req.job->id, a.id);
	store_req_reset(&w.req);

	/* another user may use the same key */
	make_job(&c, 3, STORE_JOB_ACCEPTED);
	free(c.user);
	c.user = xstrdup("carol");
	c.idem_key = xstrdup("key-1");
	assert_int_equal(insert_sync(f, &c, &w), 0);
	assert_false(w.req.existed);
	assert_null(w.req.job);
	store_req_reset(&w.req);

	/* without hashes the request bodies are compared */
	make_job(&d, 4, STORE_JOB_ACCEPTED);
	free(d.user);
	d.user = xstrdup("dave");
	d.idem_key = xstrdup("k");
	free(d.body_hash);
	d.body_hash = NULL;
	assert_int_equal(insert1(f, &d), 0);
	free(d.id);
	d.id = xstrdup("j-other");
	assert_int_equal(insert_sync(f, &d, &w), 0);
	assert_true(w.req.existed);
	assert_string_equal(w.req.job->id, "j-000004");
	store_req_reset(&w.req);
	free(d.request_body);
	d.request_body = xstrdup("{}");
	assert_int_equal(insert1(f, &d), -EEXIST);

	/* two inserts with one key in the same batch: one wins */
	{
		struct waiter w1, w2;
		struct store_job e1, e2;

		make_job(&e1, 10, STORE_JOB_ACCEPTED);
		make_job(&e2, 11, STORE_JOB_ACCEPTED);
		free(e2.user);
		e2.user = xstrdup(e1.user);
		free(e2.body_hash);
		e2.body_hash = xstrdup(e1.body_hash);
		e1.idem_key = xstrdup("same-turn");
		e2.idem_key = xstrdup("same-turn");
		waiter_init(&w1);
		waiter_init(&w2);
		assert_int_equal(store_job_insert(f->st, &w1.req, &e1), 0);
		assert_int_equal(store_job_insert(f->st, &w2.req, &e2), 0);
		run_until(f->loop, &w2.done);
		assert_true(w1.done);
		assert_int_equal(w1.req.rv, 0);
		assert_false(w1.req.existed);
		assert_int_equal(w2.req.rv, 0);
		assert_true(w2.req.existed);
		assert_string_equal(w2.req.job->id, e1.id);
		store_req_reset(&w1.req);
		store_req_reset(&w2.req);
		store_job_clear(&e1);
		store_job_clear(&e2);
	}
	store_job_clear(&a);
	store_job_clear(&b);
	store_job_clear(&c);
	store_job_clear(&d);
}

static void test_events_and_usage(void **state)
{
	struct fx *f = *state;
	struct store_job j1, j2, j3, upd, *got;
	struct store_event ev;
	struct waiter w;
	int rv;
	size_t i;

	fx_open(f, NULL);
	make_job(&j1, 1, STORE_JOB_RUNNING); /* alice premium */
	make_job(&j2, 2, STORE_JOB_RUNNING); /* alice basic */
	make_job(&j3, 3, STORE_JOB_RUNNING); /* bob premium */
	j1.cpu_seconds = j2.cpu_seconds = j3.cpu_seconds = 0;
	j1.charge = j2.charge = j3.charge = 0;
	assert_int_equal(insert1(f, &j1), 0);
	assert_int_equal(insert1(f, &j2), 0);
	assert_int_equal(insert1(f, &j3), 0);

	memset(&ev, 0, sizeof(ev));
	ev.id = "alpha/1001/batch/a1/step_end";
	ev.site = "alpha";
	ev.slurm_job_id = 1001;
	ev.gw_job = j1.id;
	ev.kind = "step_end";
	ev.body = "{\"cpu_seconds\":10}";
	store_job_init(&upd);
	upd.id = j1.id;
	upd.cpu_seconds = 10;
	upd.charge = 30;
	upd.state = STORE_JOB_COMPLETED;

	waiter_init(&w);
	assert_int_equal(store_event_insert(f->st, &w.req, &ev, &upd,
					    STORE_F(CPU_SECONDS) |
						STORE_F(CHARGE) |
						STORE_F(STATE)),
			 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	assert_false(w.req.duplicate);
	assert_false(w.req.job_missing);
	store_req_reset(&w.req);

	/* the same event again: a duplicate, its update is not applied */
	upd.cpu_seconds = 20;
	waiter_init(&w);
	assert_int_equal(
	    store_event_insert(f->st, &w.req, &ev, &upd, STORE_F(CPU_SECONDS)),
	    0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	assert_true(w.req.duplicate);
	store_req_reset(&w.req);
	got = get_sync(f, j1.id, &rv);
	assert_non_null(got);
	assert_true(got->cpu_seconds == 10);
	assert_int_equal(got->state, STORE_JOB_COMPLETED);
	store_job_free(got);

	/* two steps' ends in flight at once: usage is added, none lost */
	{
		struct waiter w2;

		upd.cpu_seconds = 2.5;
		upd.charge = 7.5;
		waiter_init(&w);
		waiter_init(&w2);
		ev.id = "alpha/1001/0/a1/step_end";
		assert_int_equal(
		    store_event_insert(f->st, &w.req, &ev, &upd,
				       STORE_F(CPU_SECONDS) | STORE_F(CHARGE)),
		    0);
		ev.id = "alpha/1001/1/a2/step_end";
		assert_int_equal(
		    store_event_insert(f->st, &w2.req, &ev, &upd,
				       STORE_F(CPU_SECONDS) | STORE_F(CHARGE)),
		    0);
		waiter_wait(f, &w);
		waiter_wait(f, &w2);
		assert_int_equal(w.req.rv, 0);
		assert_int_equal(w2.req.rv, 0);
		store_req_reset(&w.req);
		store_req_reset(&w2.req);
		got = get_sync(f, j1.id, &rv);
		assert_true(got->cpu_seconds == 15);
		assert_true(got->charge == 45);
		store_job_free(got);
		/* back to what the usage checks below expect */
		upd.cpu_seconds = -5;
		upd.charge = -15;
		ev.id = "alpha/1001/2/a1/step_end";
		waiter_init(&w);
		assert_int_equal(
		    store_event_insert(f->st, &w.req, &ev, &upd,
				       STORE_F(CPU_SECONDS) | STORE_F(CHARGE)),
		    0);
		waiter_wait(f, &w);
		store_req_reset(&w.req);
		ev.id = "alpha/1001/batch/a1/step_end";
	}

	/* an event without an update, and one for an unknown job */
	ev.id = "alpha/1001/batch/a1/task_exit/0";
	waiter_init(&w);
	assert_int_equal(store_event_insert(f->st, &w.req, &ev, NULL, 0), 0);
	waiter_wait(f, &w);
	assert_false(w.req.duplicate);
	store_req_reset(&w.req);
	ev.id = "beta/7/batch/b1/step_end";
	upd.id = "j-gone";
	waiter_init(&w);
	assert_int_equal(
	    store_event_insert(f->st, &w.req, &ev, &upd, STORE_F(CPU_SECONDS)),
	    0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	assert_true(w.req.job_missing);
	store_req_reset(&w.req);
	assert_int_equal(store_event_insert(f->st, &w.req, NULL, NULL, 0),
			 -EINVAL);

	/* usage */
	upd.id = j2.id;
	upd.cpu_seconds = 5;
	upd.charge = 5;
	waiter_init(&w);
	assert_int_equal(
	    store_job_update(f->st, &w.req, &upd,
			     STORE_F(CPU_SECONDS) | STORE_F(CHARGE), -1),
	    0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
	upd.id = j3.id;
	upd.cpu_seconds = 7;
	upd.charge = 21;
	waiter_init(&w);
	assert_int_equal(
	    store_job_update(f->st, &w.req, &upd,
			     STORE_F(CPU_SECONDS) | STORE_F(CHARGE), -1),
	    0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);

	waiter_init(&w);
	assert_int_equal(store_usage(f->st, &w.req, NULL, 0), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	assert_int_equal(w.req.n_usage, 3);
	/* ORDER BY user, tier */
	assert_string_equal(w.req.usage[0].user, "alice");
	assert_string_equal(w.req.usage[0].tier, "basic");
	assert_true(w.req.usage[0].cpu_seconds == 5);
	assert_string_equal(w.req.usage[1].user, "alice");
	assert_string_equal(w.req.usage[1].tier, "premium");
	assert_true(w.req.usage[1].cpu_seconds == 10);
	assert_true(w.req.usage[1].charge == 30);
	assert_string_equal(w.req.usage[2].user, "bob");
	assert_true(w.req.usage[2].charge == 21);
	for (i = 0; i < w.req.n_usage; i++)
		assert_int_equal(w.req.usage[i].jobs, 1);
	store_req_reset(&w.req);

	waiter_init(&w);
	assert_int_equal(store_usage(f->st, &w.req, "alice", j2.created_at), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.n_usage, 1); /* j1 is older than j2 */
	assert_string_equal(w.req.usage[0].tier, "basic");
	store_req_reset(&w.req);

	store_job_clear(&j1);
	store_job_clear(&j2);
	store_job_clear(&j3);
}

/* --------------------------------------------------- restart recovery */

struct loaded {
	struct store_job *v[64];
	size_t n;
};

static int collect_cb(struct store_job *j, void *arg)
{
	struct loaded *l = arg;

	assert_true(pthread_equal(pthread_self(), loop_thread));
	assert_true(l->n < 64);
	l->v[l->n++] = j;
	return 0;
}

static void test_restart_unfinished(void **state)
{
	struct fx *f = *state;
	struct store_job jobs[STORE_JOB_STATE_COUNT_];
	struct loaded ld = {0};
	struct waiter w;
	uint64_t count;
	size_t i, k;

	fx_open(f, NULL);
	for (i = 0; i < STORE_JOB_STATE_COUNT_; i++) {
		make_job(&jobs[i], (int)i + 1, (enum store_job_state)i);
		assert_int_equal(insert1(f, &jobs[i]), 0);
	}
	fx_close(f);

	fx_open(f, NULL);
	waiter_init(&w);
	assert_int_equal(store_jobs_unfinished(f->st, &w.req), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	/* accepted submitting pending running completing, oldest first */
	assert_int_equal(w.req.n_jobs, 5);
	for (i = 0, k = 0; i < STORE_JOB_STATE_COUNT_; i++) {
		if (store_job_state_final(jobs[i].state))
			continue;
		assert_same_job(w.req.jobs[k], &jobs[i]);
		assert_non_null(w.req.jobs[k]->request_body);
		k++;
	}
	assert_int_equal(k, 5);
	store_req_reset(&w.req);

	/* load_all: every job, oldest first, with or without bodies */
	assert_int_equal(
	    store_load_all(f->st, STORE_LOAD_BODY, collect_cb, &ld, &count), 0);
	assert_int_equal(count, STORE_JOB_STATE_COUNT_);
	assert_int_equal(ld.n, STORE_JOB_STATE_COUNT_);
	for (i = 0; i < ld.n; i++) {
		assert_same_job(ld.v[i], &jobs[i]);
		store_job_free(ld.v[i]);
	}
	ld.n = 0;
	assert_int_equal(store_load_all(f->st, 0, collect_cb, &ld, &count), 0);
	assert_int_equal(ld.n, STORE_JOB_STATE_COUNT_);
	for (i = 0; i < ld.n; i++) {
		assert_null(ld.v[i]->request_body);
		assert_int_equal(store_job_diff(ld.v[i], &jobs[i]),
				 STORE_F(REQUEST_BODY));
		store_job_free(ld.v[i]);
	}
	ld.n = 0;
	assert_int_equal(store_load_all(f->st, STORE_LOAD_BODY_UNFINISHED,
					collect_cb, &ld, &count),
			 0);
	assert_int_equal(ld.n, STORE_JOB_STATE_COUNT_);
	for (i = 0; i < ld.n; i++) {
		if (store_job_state_final(ld.v[i]->state))
			assert_null(ld.v[i]->request_body);
		else
			assert_same_job(ld.v[i], &jobs[i]);
		store_job_free(ld.v[i]);
	}
	for (i = 0; i < STORE_JOB_STATE_COUNT_; i++)
		store_job_clear(&jobs[i]);
}

static int stop_after_3(struct store_job *j, void *arg)
{
	int *n = arg;

	store_job_free(j);
	return ++*n == 3 ? 42 : 0;
}

/* load_all stops when its callback says so; more than a chunk of rows */
static void test_load_all_stop(void **state)
{
	struct fx *f = *state;
	struct waiter *ws;
	struct store_job j;
	uint64_t count;
	int i, n = 0, acked = 0;
	const int N = 3000;

	fx_open(f, NULL);
	ws = calloc(N, sizeof(*ws));
	assert_non_null(ws);
	for (i = 0; i < N; i++) {
		make_job(&j, i, STORE_JOB_RUNNING);
		waiter_init(&ws[i]);
		assert_int_equal(store_job_insert(f->st, &ws[i].req, &j), 0);
		store_job_clear(&j);
	}
	/* load_all waits behind the queued inserts */
	assert_int_equal(store_load_all(f->st, 0, stop_after_3, &n, &count),
			 42);
	assert_int_equal(count, 3);
	n = 0;
	while (acked < N) {
		loop_run_once(f->loop, 50);
		for (acked = 0, i = 0; i < N; i++)
			acked += ws[i].done;
	}
	for (i = 0; i < N; i++) {
		assert_int_equal(ws[i].req.rv, 0);
		store_req_reset(&ws[i].req);
	}
	free(ws);
}

/* ------------------------------------------------------- durable ack */

#define KILL_N 3000
#define KILL_AFTER 700

struct child_ctx {
	int fd;
	int acked;
};

struct child_req {
	struct store_req req;
	int32_t idx;
};

static void child_cb(struct store_req *r)
{
	struct child_req *cr = container_of(r, struct child_req, req);
	struct child_ctx *c = r->arg;

	if (r->rv != 0)
		_exit(3);
	if (write(c->fd, &cr->idx, sizeof(cr->idx)) != sizeof(cr->idx))
		_exit(4);
	if (++c->acked == KILL_AFTER)
		kill(getpid(), SIGKILL); /* no close, no flush: kill -9 */
}

static void child_run(const char *path, int fd)
{
	struct child_ctx c = {.fd = fd};
	struct child_req *reqs = calloc(KILL_N, sizeof(*reqs));
	struct store *st;
	struct store_job j;
	struct loop *l = loop_new();
	char err[256];
	int i;

	if (!l || !reqs || store_open(l, path, NULL, &st, err, sizeof(err)))
		_exit(2);
	/* in waves, so acks arrive while later commits are in flight */
	for (i = 0; i < KILL_N; i++) {
		make_job(&j, i, STORE_JOB_ACCEPTED);
		reqs[i].idx = i;
		reqs[i].req.cb = child_cb;
		reqs[i].req.arg = &c;
		if (store_job_insert(st, &reqs[i].req, &j))
			_exit(5);
		store_job_clear(&j);
		if (i % 100 == 99)
			loop_run_once(l, 0);
	}
	for (;;)
		loop_run_once(l, 100);
}

struct loaded_ids {
	bool *present;
	int n;
};

static int mark_present_cb(struct store_job *j, void *arg)
{
	struct loaded_ids *x = arg;
	int k = atoi(j->id + 2); /* "j-000123" */

	if (k >= 0 && k < KILL_N)
		x->present[k] = true;
	x->n++;
	store_job_free(j);
	return 0;
}

static void test_durable_ack_kill9(void **state)
{
	struct fx *f = *state;
	bool *acked = calloc(KILL_N, sizeof(bool));
	bool *present = calloc(KILL_N, sizeof(bool));
	struct loaded_ids li = {present, 0};
	int fds[2], status, n_acked = 0, i;
	int32_t idx;
	uint64_t count;
	pid_t pid;

	assert_non_null(acked);
	assert_non_null(present);
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child_run(f->path, fds[1]);
		_exit(1);
	}
	close(fds[1]);
	while (read(fds[0], &idx, sizeof(idx)) == sizeof(idx)) {
		assert_true(idx >= 0 && idx < KILL_N);
		acked[idx] = true;
		n_acked++;
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("child exited with %d, not killed",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_int_equal(n_acked, KILL_AFTER);

	/* reopen what the killed process left (WAL recovery) */
	fx_open(f, NULL);
	assert_int_equal(store_load_all(f->st, 0, mark_present_cb, &li, &count),
			 0);
	assert_int_equal(count, (uint64_t)li.n);
	for (i = 0; i < KILL_N; i++)
		if (acked[i] && !present[i])
			fail_msg("job %d was acknowledged but is not stored",
				 i);
	print_message("kill -9 after %d acks: %d rows stored (every acked "
		      "one; %d committed but not yet acknowledged)\n",
		      n_acked, li.n, li.n - n_acked);
	assert_true(li.n >= n_acked);
	free(acked);
	free(present);
}

/* ------------------------------------------------------ group commit */

static void test_group_commit(void **state)
{
	struct fx *f = *state;
	const int N = 2000;
	struct waiter *ws = calloc(N, sizeof(*ws));
	struct store_stats s;
	struct store_job j;
	char buf[512];
	int i, acked = 0;

	assert_non_null(ws);
	fx_open(f, NULL);
	for (i = 0; i < N; i++) {
		make_job(&j, i, STORE_JOB_ACCEPTED);
		waiter_init(&ws[i]);
		assert_int_equal(store_job_insert(f->st, &ws[i].req, &j), 0);
		store_job_clear(&j);
	}
	while (acked < N) {
		assert_true(loop_run_once(f->loop, 50) >= 0);
		for (acked = 0, i = 0; i < N; i++)
			acked += ws[i].done;
	}
	for (i = 0; i < N; i++) {
		assert_int_equal(ws[i].calls, 1);
		assert_int_equal(ws[i].req.rv, 0);
		store_req_reset(&ws[i].req);
	}
	store_stats(f->st, &s);
	print_message(
	    "group commit: %d inserts in %" PRIu64 " commits (max %" PRIu64
	    " per commit, commit max %" PRIu64 "us p99 %" PRIu64 "us)\n",
	    N, s.commits, s.max_batch, s.commit_us_max, s.commit_us_p99);
	assert_int_equal(s.rows_committed, N);
	assert_true(s.commits < (uint64_t)N / 10);
	assert_true(s.max_batch > 1);
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.queued, 0);
	assert_int_equal(s.off_thread_sqlite, 0);
	store_debug_str(f->st, buf, sizeof(buf));
	assert_non_null(strstr(buf, "commits="));
	assert_non_null(strstr(buf, "p99="));
	free(ws);
}

/*
 * A batch that finishes while a bounded delivery (256 per turn) still has
 * leftovers, its wakeup coalesced with the loop's own "more next turn"
 * wakeup, must not be stranded.  The store thread is held at chosen
 * BEGINs through the trace hook to force exactly that order.
 */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static unsigned gate_begins, gate_allowed = UINT32_MAX;

static void gate_hook(void *arg, const char *what)
{
	if (strcmp(what, "BEGIN"))
		return;
	pthread_mutex_lock(&gate_lock);
	while (gate_begins >= gate_allowed)
		pthread_cond_wait(&gate_cond, &gate_lock);
	gate_begins++;
	pthread_mutex_unlock(&gate_lock);
}

static void gate_allow(unsigned more)
{
	pthread_mutex_lock(&gate_lock);
	gate_allowed = gate_begins + more;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

/* Wait (not running the loop) until the store thread ran n requests. */
static void wait_requests(struct store *st, uint64_t n)
{
	struct store_stats s;
	uint64_t start = loop_clock_ms();

	for (;;) {
		store_stats(st, &s);
		if (s.requests >= n)
			return;
		if (loop_clock_ms() - start > 10000)
			fail_msg("store thread ran %" PRIu64 " of %" PRIu64,
				 s.requests, n);
		usleep(1000);
	}
}

static void test_completions_never_lost(void **state)
{
	struct fx *f = *state;
	struct store_opts o = {.max_batch = 300, .trace = gate_hook};
	enum { A = 300, B = 10, N = 1 + A + B };
	struct waiter *ws = calloc(N, sizeof(*ws));
	struct store_job j;
	uint64_t start, base;
	int i, acked;

	assert_non_null(ws);
	gate_begins = 0;
	gate_allowed = UINT32_MAX;
	fx_open(f, &o);
	make_job(&j, 1, STORE_JOB_RUNNING);
	assert_int_equal(insert1(f, &j), 0);
	store_job_clear(&j);
	base = 1;

	gate_allow(0); /* the next read transaction waits */
	for (i = 0; i < N; i++) {
		waiter_init(&ws[i]);
		assert_int_equal(store_job_get(f->st, &ws[i].req, "j-000001"),
				 0);
	}
	/* batches {g0} and A (300) finish; B waits at its BEGIN */
	gate_allow(2);
	wait_requests(f->st, base + 1 + A);
	/* one turn: 256 delivered, the rest left for the next turn */
	assert_true(loop_run_once(f->loop, 1000) >= 0);
	for (acked = 0, i = 0; i < N; i++)
		acked += ws[i].done;
	assert_int_equal(acked, 256);
	/* B finishes now: its wakeup coalesces with the loop's own */
	gate_allow(UINT32_MAX / 2);
	wait_requests(f->st, base + N);
	start = loop_clock_ms();
	do {
		assert_true(loop_run_once(f->loop, 50) >= 0);
		for (acked = 0, i = 0; i < N; i++)
			acked += ws[i].done;
		if (loop_clock_ms() - start > 3000)
			fail_msg("%d of %d completions delivered: stranded",
				 acked, N);
	} while (acked < N);
	for (i = 0; i < N; i++) {
		assert_int_equal(ws[i].calls, 1);
		assert_int_equal(ws[i].req.rv, 0);
		store_req_reset(&ws[i].req);
	}
	free(ws);
}

/* ------------------------------------------------ loop never blocks */

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	unsigned calls, on_loop, other_threads;
	pthread_t first;
	bool have_first;
} tr;

static void trace_fn(void *arg, const char *what)
{
	pthread_mutex_lock(&trace_lock);
	tr.calls++;
	if (pthread_equal(pthread_self(), loop_thread))
		tr.on_loop++;
	if (!tr.have_first) {
		tr.first = pthread_self();
		tr.have_first = true;
	} else if (!pthread_equal(tr.first, pthread_self())) {
		tr.other_threads++;
	}
	pthread_mutex_unlock(&trace_lock);
}

static int free_cb(struct store_job *j, void *arg)
{
	store_job_free(j);
	return 0;
}

static void test_sqlite_only_on_store_thread(void **state)
{
	struct fx *f = *state;
	struct store_opts o = {.trace = trace_fn};
	struct store_job j;
	struct store_event ev = {.id = "e1"};
	struct store_stats s;
	struct waiter w;

	memset(&tr, 0, sizeof(tr));
	fx_open(f, &o);
	make_job(&j, 1, STORE_JOB_ACCEPTED);
	assert_int_equal(insert1(f, &j), 0);
	waiter_init(&w);
	assert_int_equal(
	    store_job_update(f->st, &w.req, &j, STORE_F(STATE), -1), 0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
	waiter_init(&w);
	assert_int_equal(store_jobs_list(f->st, &w.req, NULL), 0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
	waiter_init(&w);
	assert_int_equal(store_jobs_unfinished(f->st, &w.req), 0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
	waiter_init(&w);
	assert_int_equal(store_event_insert(f->st, &w.req, &ev, NULL, 0), 0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
	waiter_init(&w);
	assert_int_equal(store_usage(f->st, &w.req, NULL, 0), 0);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
	assert_int_equal(store_load_all(f->st, 0, free_cb, NULL, NULL), 0);
	store_stats(f->st, &s);
	fx_close(f);
	store_job_clear(&j);

	pthread_mutex_lock(&trace_lock);
	print_message("sqlite calls traced: %u, on the loop thread: %u\n",
		      tr.calls, tr.on_loop);
	assert_true(tr.calls > 20);
	assert_int_equal(tr.on_loop, 0);
	assert_int_equal(tr.other_threads, 0);
	pthread_mutex_unlock(&trace_lock);
	assert_int_equal(s.off_thread_sqlite, 0);
}

/* ---------------------------------------------------------- open etc. */

static void test_schema_and_lock(void **state)
{
	struct fx *f = *state;
	struct store *st2 = NULL;
	sqlite3 *db;
	sqlite3_stmt *s;
	char err[512];

	fx_open(f, NULL);
	/* a second opener of the same database is refused */
	assert_int_equal(
	    store_open(f->loop, f->path, NULL, &st2, err, sizeof(err)), -EBUSY);
	assert_null(st2);
	assert_non_null(strstr(err, "in use by another process"));
	fx_close(f);

	/* WAL and the schema version are on disk */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), STORE_SCHEMA_VERSION);
	sqlite3_finalize(s);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	/* a newer schema is refused, with a clear message */
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(
	    store_open(f->loop, f->path, NULL, &st2, err, sizeof(err)),
	    -EPROTO);
	assert_non_null(strstr(err, "newer"));

	/* not a database */
	rm_rf(f->dir);
	assert_int_equal(mkdir(f->dir, 0700), 0);
	{
		int fd = open(f->path, O_WRONLY | O_CREAT, 0600);

		assert_true(fd >= 0);
		assert_int_equal(write(fd,
				       "garbage garbage garbage garbage "
				       "garbage garbage garbage garbage "
				       "garbage garbage garbage garbage ",
				       96),
				 96);
		close(fd);
	}
	assert_int_equal(
	    store_open(f->loop, f->path, NULL, &st2, err, sizeof(err)), -EIO);
	print_message("garbage file: %s\n", err);
	assert_int_equal(store_open(f->loop, "/nonexistent-dir/jobs.db", NULL,
				    &st2, err, sizeof(err)),
			 -ENOENT);
}

static int cred_put_sync(struct fx *f, const char *site, const char *user,
			 const char *token, int64_t exp)
{
	struct waiter w;
	struct store_credential c = {.site = (char *)site,
				     .user = (char *)user,
				     .token = (char *)token,
				     .expires_at = exp,
				     .registered_at = 1700000000};
	int rv;

	waiter_init(&w);
	assert_int_equal(store_credential_put(f->st, &w.req, &c), 0);
	waiter_wait(f, &w);
	rv = w.req.rv;
	store_req_reset(&w.req);
	return rv;
}

/*
 * jwt-user credentials: put replaces, delete of none is -ENOENT, the rows
 * survive a restart, and a schema-1 database (jobs kept) migrates.
 */
static void test_credentials(void **state)
{
	struct fx *f = *state;
	struct store_job j;
	struct waiter w;
	sqlite3 *db;

	/* a database of the previous schema, with a job in it */
	fx_open(f, NULL);
	make_job(&j, 1, STORE_JOB_RUNNING);
	assert_int_equal(insert1(f, &j), 0);
	store_job_clear(&j);
	fx_close(f);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "DROP TABLE site_credentials;"
				      "PRAGMA user_version = 1",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	fx_open(f, NULL); /* migrates 1 -> 2 */
	assert_int_equal(cred_put_sync(f, "alpha", "alice", "tok-1", 100), 0);
	assert_int_equal(cred_put_sync(f, "alpha", "alice", "tok-2", 200), 0);
	assert_int_equal(cred_put_sync(f, "beta", "alice", "tok-3", 300), 0);
	assert_int_equal(cred_put_sync(f, "alpha", "bob", "tok-4", 400), 0);
	assert_int_equal(cred_put_sync(f, "alpha", "bob", NULL, 0), 0);
	assert_int_equal(cred_put_sync(f, "alpha", "bob", NULL, 0), -ENOENT);
	/* bad arguments are refused before anything is queued */
	waiter_init(&w);
	{
		struct store_credential bad = {.site = (char *)"alpha"};

		assert_int_equal(store_credential_put(f->st, &w.req, &bad),
				 -EINVAL);
	}
	fx_close(f);

	fx_open(f, NULL);
	waiter_init(&w);
	assert_int_equal(store_credentials_list(f->st, &w.req), 0);
	waiter_wait(f, &w);
	assert_int_equal(w.req.rv, 0);
	assert_int_equal(w.req.n_creds, 2);
	assert_string_equal(w.req.creds[0].site, "alpha");
	assert_string_equal(w.req.creds[0].user, "alice");
	assert_string_equal(w.req.creds[0].token, "tok-2");
	assert_int_equal(w.req.creds[0].expires_at, 200);
	assert_int_equal(w.req.creds[0].registered_at, 1700000000);
	assert_string_equal(w.req.creds[1].site, "beta");
	assert_string_equal(w.req.creds[1].token, "tok-3");
	store_req_reset(&w.req);
	/* the job of schema 1 is still there */
	{
		int rv;
		struct store_job *g = get_sync(f, "j-000001", &rv);

		assert_int_equal(rv, 0);
		store_job_free(g);
	}
}

/* A closed store answers -ESHUTDOWN; queued work still commits. */
static void test_close_drains(void **state)
{
	struct fx *f = *state;
	struct waiter ws[50], w;
	struct store_job j;
	int i, rv;

	fx_open(f, NULL);
	for (i = 0; i < 50; i++) {
		make_job(&j, i, STORE_JOB_ACCEPTED);
		waiter_init(&ws[i]);
		assert_int_equal(store_job_insert(f->st, &ws[i].req, &j), 0);
		store_job_clear(&j);
	}
	fx_close(f); /* completions delivered inside */
	for (i = 0; i < 50; i++) {
		assert_int_equal(ws[i].calls, 1);
		assert_int_equal(ws[i].req.rv, 0);
		store_req_reset(&ws[i].req);
	}
	fx_open(f, NULL);
	for (i = 0; i < 50; i += 7) {
		char id[16];
		struct store_job *got;

		snprintf(id, sizeof(id), "j-%06d", i);
		got = get_sync(f, id, &rv);
		assert_non_null(got);
		store_job_free(got);
	}
	/* a request still in flight cannot be resubmitted */
	waiter_init(&w);
	assert_int_equal(store_job_get(f->st, &w.req, "j-000001"), 0);
	assert_int_equal(store_job_get(f->st, &w.req, "j-000001"), -EBUSY);
	waiter_wait(f, &w);
	store_req_reset(&w.req);
}

/* ------------------------------------------------------ a task's step */

#define JT_STATES(X) X(JT_START) X(JT_JOURNALING) X(JT_ACKED)
enum jt_state { JT_STATES(TASK_STATE_ENUM) };
static const char *const jt_state_names[] = {JT_STATES(TASK_STATE_NAME)};

struct jobtask {
	struct task task;
	struct store_req req; /* the store holds a task ref while in flight */
	struct store *st;
	struct store_job rec;
	int result;
	unsigned wake;
	bool finished;
};

/*
 * The lead's pattern: journal the job, return TASK_WAIT, and continue
 * when the store wakes the task after COMMIT (the durable ack).
 */
static enum task_step jt_step(struct task *t, unsigned wake)
{
	struct jobtask *j = container_of(t, struct jobtask, task);
	int rv;

	switch ((enum jt_state)t->state) {
	case JT_START:
		j->req.task = t;
		rv = store_job_insert(j->st, &j->req, &j->rec);
		if (rv) { /* refused at once: -ENOMEM, -ESHUTDOWN, -EINVAL */
			j->result = rv;
			j->finished = true;
			return TASK_DONE;
		}
		task_set_state(t, JT_JOURNALING);
		task_wait_on(t, "store commit");
		return TASK_WAIT;
	case JT_JOURNALING:
		if (store_req_pending(&j->req))
			return TASK_WAIT; /* woken for something else */
		j->wake = wake;
		j->result = j->req.rv; /* 0: committed; 503 if unavailable */
		store_req_reset(&j->req);
		task_set_state(t, JT_ACKED);
		j->finished = true;
		return TASK_DONE;
	case JT_ACKED:
		return TASK_DONE;
	}
	return TASK_DONE;
}

static const struct task_ops jt_ops = {
    .kind = "jobtask",
    .state_names = jt_state_names,
    .n_states = 3,
    .step = jt_step,
};

static void test_task_durable_ack_wake(void **state)
{
	struct fx *f = *state;
	struct jobtask jt;
	struct store_job *got;
	int rv;

	fx_open(f, NULL);
	memset(&jt, 0, sizeof(jt));
	jt.st = f->st;
	make_job(&jt.rec, 77, STORE_JOB_ACCEPTED);
	assert_int_equal(task_start(f->loop, &jt.task, &jt_ops), 0);
	run_until(f->loop, &jt.finished);
	assert_int_equal(jt.result, 0);
	assert_true(jt.wake & TASK_WAKE_WORKER);
	loop_run_once(f->loop, 0); /* CLOSING frees the task record */
	got = get_sync(f, "j-000077", &rv);
	assert_non_null(got);
	assert_same_job(got, &jt.rec);
	store_job_free(got);
	store_job_clear(&jt.rec);
}

/* --------------------------------------------------------- disk full */

static bool mount_tiny(const char *dir, const char *size)
{
	char opts[64];

	snprintf(opts, sizeof(opts), "size=%s", size);
	if (mount("tmpfs", dir, "tmpfs", 0, opts) < 0) {
		print_message("SKIP: cannot mount a %s tmpfs on %s: %s\n", size,
			      dir, strerror(errno));
		return false;
	}
	return true;
}

static void test_disk_full(void **state)
{
	struct fx *f = *state;
	char filler[160], *big;
	struct waiter small[20], huge;
	struct store_job j, *got;
	struct store_stats s;
	int i, fd, rv, ok = 0, last_ok = -1;

	if (!mount_tiny(f->dir, "1M"))
		skip();
	fx_open(f, NULL);
	/* hold back some space to free later */
	snprintf(filler, sizeof(filler), "%s/filler", f->dir);
	fd = open(filler, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	big = calloc(1, 3 << 20);
	assert_non_null(big);
	assert_int_equal(write(fd, big, 256 << 10), 256 << 10);
	close(fd);

	/* one poisoned request in a batch fails alone */
	for (i = 0; i < 20; i++) {
		make_job(&j, i, STORE_JOB_ACCEPTED);
		waiter_init(&small[i]);
		assert_int_equal(store_job_insert(f->st, &small[i].req, &j), 0);
		store_job_clear(&j);
	}
	make_job(&j, 999, STORE_JOB_ACCEPTED);
	free(j.request_body);
	memset(big, 'x', (2 << 20) - 1);
	j.request_body = big; /* 2 MiB: more than the filesystem */
	waiter_init(&huge);
	assert_int_equal(store_job_insert(f->st, &huge.req, &j), 0);
	j.request_body = NULL;
	store_job_clear(&j);
	run_until(f->loop, &huge.done);
	for (i = 0; i < 20; i++) {
		run_until(f->loop, &small[i].done);
		assert_int_equal(small[i].req.rv, 0);
		store_req_reset(&small[i].req);
	}
	assert_int_equal(huge.req.rv, -ENOSPC);
	assert_true(store_error_unavailable(huge.req.rv));
	store_req_reset(&huge.req);

	/* fill up with ordinary jobs until the disk is full */
	memset(big, 'y', 16 << 10);
	big[16 << 10] = '\0';
	for (i = 100; i < 400; i++) {
		make_job(&j, i, STORE_JOB_ACCEPTED);
		free(j.request_body);
		j.request_body = xstrdup(big);
		rv = insert1(f, &j);
		store_job_clear(&j);
		if (rv) {
			print_message("disk full after %d more jobs: %d (%s)\n",
				      ok, rv, store_strerror(rv));
			assert_int_equal(rv, -ENOSPC);
			break;
		}
		ok++;
		last_ok = i;
	}
	assert_true(i < 400);
	assert_true(last_ok >= 100);
	/* reads still work on a full disk */
	{
		char id[16];

		snprintf(id, sizeof(id), "j-%06d", last_ok);
		got = get_sync(f, id, &rv);
		assert_int_equal(rv, 0);
		assert_non_null(got);
		store_job_free(got);
	}
	store_stats(f->st, &s);
	assert_int_equal(s.last_error, -ENOSPC);
	assert_true(s.failed_txns >= 2);
	/* space comes back: so does the store */
	assert_int_equal(unlink(filler), 0);
	make_job(&j, 500, STORE_JOB_ACCEPTED);
	assert_int_equal(insert1(f, &j), 0);
	store_job_clear(&j);
	got = get_sync(f, "j-000500", &rv);
	assert_non_null(got);
	store_job_free(got);
	fx_close(f);
	free(big);
	/* what was acknowledged survived */
	fx_open(f, NULL);
	got = get_sync(f, "j-000019", &rv);
	assert_non_null(got);
	store_job_free(got);
	assert_null(get_sync(f, "j-000999", &rv));
	assert_int_equal(rv, -ENOENT);
	fx_close(f);
	assert_int_equal(umount(f->dir), 0);
}

/* ---------------------------------------------------- 100k benchmark */

struct bench_index {
	struct store_job **v;
	size_t n;
};

static int bench_cb(struct store_job *j, void *arg)
{
	struct bench_index *x = arg;

	x->v[x->n++] = j;
	return 0;
}

static void copy_file(const char *from, const char *to, const char *suffix)
{
	char a[160], b[160], buf[65536];
	ssize_t n;
	int in, out;

	snprintf(a, sizeof(a), "%s%s", from, suffix);
	snprintf(b, sizeof(b), "%s%s", to, suffix);
	in = open(a, O_RDONLY);
	assert_true(in >= 0);
	out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

static double ms_since(uint64_t t0)
{
	return (double)(loop_clock_us() - t0) / 1000.0;
}

/*
 * The baseline: plain SQLite on this thread, open + a scan of the same
 * columns (no request bodies) touching every value, no allocation.
 */
static double raw_scan_ms(const char *path, int *rows)
{
	uint64_t t0 = loop_clock_us();
	sqlite3_stmt *s;
	sqlite3 *db;
	size_t sum = 0;
	int i, n;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db,
			       "SELECT id, site, slurm_job_id, user, tier, "
			       "name, state, slurm_state, reason, exit_code, "
			       "signal, NULL, idem_key, body_hash, "
			       "cancel_requested, ended_by, error_code, "
			       "error_message, request_id, created_at, "
			       "updated_at, cpu_seconds, charge, "
			       "submit_attempts, tag, intent, intent_at, rowid "
			       "FROM jobs ORDER BY rowid",
			       -1, &s, NULL),
	    SQLITE_OK);
	*rows = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		n = sqlite3_column_count(s);
		for (i = 0; i < n; i++) {
			switch (sqlite3_column_type(s, i)) {
			case SQLITE_TEXT:
				sqlite3_column_text(s, i);
				sum += (size_t)sqlite3_column_bytes(s, i);
				break;
			case SQLITE_INTEGER:
				sum += (size_t)sqlite3_column_int64(s, i) & 1;
				break;
			case SQLITE_FLOAT:
				sum += sqlite3_column_double(s, i) > 0;
				break;
			default:
				break;
			}
		}
		(*rows)++;
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	assert_true(sum > 0);
	return ms_since(t0);
}

static void test_bench_restart_100k(void **state)
{
	struct fx *f = *state;
	const int N = 100000, WAVE = 5000;
	struct waiter *ws = calloc(WAVE, sizeof(*ws));
	struct bench_index ix = {calloc(N, sizeof(struct store_job *)), 0};
	struct store_job j;
	struct stat sb, sw;
	char crash[128], wal[140];
	uint64_t t0, count;
	double t_open, t_load, t_load_body, t_ins, t_copen, t_cload, t_raw,
	    t_load_bu;
	int raw_rows;
	int i, k, acked;

	assert_non_null(ws);
	assert_non_null(ix.v);
	fx_open(f, NULL);
	t0 = loop_clock_us();
	for (i = 0; i < N; i += WAVE) {
		for (k = 0; k < WAVE; k++) {
			make_job(&j, i + k,
				 (i + k) % 50 ? STORE_JOB_COMPLETED
					      : STORE_JOB_RUNNING);
			waiter_init(&ws[k]);
			assert_int_equal(
			    store_job_insert(f->st, &ws[k].req, &j), 0);
			store_job_clear(&j);
		}
		do {
			loop_run_once(f->loop, 50);
			for (acked = 0, k = 0; k < WAVE; k++)
				acked += ws[k].done;
		} while (acked < WAVE);
		for (k = 0; k < WAVE; k++) {
			assert_int_equal(ws[k].req.rv, 0);
			store_req_reset(&ws[k].req);
		}
	}
	t_ins = ms_since(t0);
	t_raw = raw_scan_ms(f->path, &raw_rows); /* warms the page cache */
	t_raw = raw_scan_ms(f->path, &raw_rows);
	assert_int_equal(raw_rows, N);
	/*
	 * What a kill -9 leaves: the database and its WAL as they are while
	 * the store is open (idle: every commit acknowledged).
	 */
	snprintf(crash, sizeof(crash), "%s/crash.db", f->dir);
	copy_file(f->path, crash, "");
	copy_file(f->path, crash, "-wal");
	fx_close(f);
	assert_int_equal(stat(f->path, &sb), 0);

	/* restart: open + load every job into an in-memory index */
	t0 = loop_clock_us();
	fx_open(f, NULL);
	t_open = ms_since(t0);
	assert_int_equal(store_load_all(f->st, 0, bench_cb, &ix, &count), 0);
	t_load = ms_since(t0);
	assert_int_equal(count, N);
	for (i = 0; i < N; i++)
		store_job_free(ix.v[i]);
	ix.n = 0;
	t0 = loop_clock_us();
	assert_int_equal(
	    store_load_all(f->st, STORE_LOAD_BODY, bench_cb, &ix, &count), 0);
	t_load_body = ms_since(t0);
	for (i = 0; i < N; i++)
		store_job_free(ix.v[i]);
	ix.n = 0;
	t0 = loop_clock_us();
	assert_int_equal(store_load_all(f->st, STORE_LOAD_BODY_UNFINISHED,
					bench_cb, &ix, &count),
			 0);
	t_load_bu = ms_since(t0);
	for (i = 0; i < N; i++)
		store_job_free(ix.v[i]);
	fx_close(f);

	/* restart after a crash: WAL recovery on open */
	snprintf(f->path, sizeof(f->path), "%s", crash);
	assert_int_equal(stat(f->path, &sb), 0);
	snprintf(wal, sizeof(wal), "%s-wal", crash);
	assert_int_equal(stat(wal, &sw), 0);
	ix.n = 0;
	t0 = loop_clock_us();
	fx_open(f, NULL);
	t_copen = ms_since(t0);
	assert_int_equal(store_load_all(f->st, 0, bench_cb, &ix, &count), 0);
	t_cload = ms_since(t0);
	assert_int_equal(count, N);
	for (i = 0; i < N; i++)
		store_job_free(ix.v[i]);

	printf("store-restart: jobs=%d db=%.1fMB insert=%.0fms "
	       "open=%.1fms open+load_all=%.1fms load_all_with_bodies=%.1fms "
	       "load_all_bodies_unfinished=%.1fms\n",
	       N, (double)sb.st_size / 1048576.0, t_ins, t_open, t_load,
	       t_load_body, t_load_bu);
	printf("store-restart-after-crash: jobs=%d wal=%.1fMB open=%.1fms "
	       "open+load_all=%.1fms\n",
	       N, (double)sw.st_size / 1048576.0, t_copen, t_cload);
	printf("store-restart-baseline: raw sqlite3 open+scan=%.1fms "
	       "ratio open+load_all/raw=%.2f\n",
	       t_raw, t_load / t_raw);
	fflush(stdout);
	free(ix.v);
	free(ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_states_and_errors),
	    cmocka_unit_test_setup_teardown(test_network_fs_magic, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_insert_get_update_list, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_events_and_usage, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_restart_unfinished, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_load_all_stop, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_durable_ack_kill9, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_completions_never_lost, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sqlite_only_on_store_thread,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_schema_and_lock, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_task_durable_ack_wake, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
	};
	const struct CMUnitTest bench[] = {
	    cmocka_unit_test_setup_teardown(test_bench_restart_100k, setup,
					    teardown),
	};
	const char *b = getenv("TIERGATE_BENCH_100K");

	log_init("test_store");
	if (b && !strcmp(b, "1"))
		return cmocka_run_group_tests(bench, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
