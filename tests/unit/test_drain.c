/*
 * test_drain.c: draining job dirs' events in batches (spank/drain.c) from a
 * real spool to a fake gateway: every event once, each dir's in order, a
 * backlog read with a few directory listings (not one per batch), events a
 * gateway did not handle sent again after the handled ones, and a job the
 * gateway does not know yet left waiting while the others go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "drain.h"
#include "fake_http.h"

/* spool_events_list, counted (test_drain.wrap) */
static int n_listings;
int __real_spool_events_list(struct spool_job *sj, char ***names, size_t *n);
int __wrap_spool_events_list(struct spool_job *sj, char ***names, size_t *n);
int __wrap_spool_events_list(struct spool_job *sj, char ***names, size_t *n)
{
	n_listings++;
	return __real_spool_events_list(sj, names, n);
}

#define MAX_STORED 4096

/* The gateway: written by the server thread before it answers, read by
 * the test after drain_events returns (the answers order them). */
struct gw_fake {
	unsigned handle_max;	  /* results for at most this many (0: all) */
	const char *not_ready;	  /* ids with this prefix: 503 job_not_ready */
	char *stored[MAX_STORED]; /* ids stored, in the order stored */
	size_t n_stored;
	unsigned posts;
};

static void gw_handler(const struct fake_http_req *req,
		       struct fake_http_resp *resp, void *arg)
{
	struct gw_fake *g = arg;
	json_t *body = json_loads(req->body ? req->body : "", 0, NULL);
	json_t *results = json_array(), *ev, *answer;
	size_t i;

	g->posts++;
	json_array_foreach(body, i, ev)
	{
		const char *id = json_string_value(json_object_get(ev, "id"));

		if (g->handle_max && i >= g->handle_max)
			break;
		if (g->not_ready &&
		    !strncmp(id, g->not_ready, strlen(g->not_ready))) {
			json_array_append_new(
			    results,
			    json_pack("{s:s, s:i, s:b, s:{s:s, s:s}}", "id", id,
				      "status", 503, "duplicate", 0, "error",
				      "code", "job_not_ready", "message",
				      "not yet"));
			continue;
		}
		if (g->n_stored < MAX_STORED)
			g->stored[g->n_stored++] = strdup(id);
		json_array_append_new(results,
				      json_pack("{s:s, s:i, s:b}", "id", id,
						"status", 201, "duplicate", 0));
	}
	answer = json_pack("{s:o}", "results", results);
	resp->status = 200;
	resp->body = json_dumps(answer, 0);
	resp->body_len = strlen(resp->body);
	json_decref(answer);
	json_decref(body);
}

static void gw_free(struct gw_fake *g)
{
	for (size_t i = 0; i < g->n_stored; i++)
		free(g->stored[i]);
}

static struct deliverer *new_deliverer(const struct fake_http *s)
{
	struct deliver_cfg cfg = {.gateway = fake_http_base(s),
				  .auth = REPORT_AUTH_NONE};

	return deliverer_new(&cfg);
}

/* Queue n events "a/<job>/0/n/e<i>" in job's dir, in order. */
static void queue(struct spool_job *sj, uint32_t job, int n)
{
	char json[128];

	for (int i = 0; i < n; i++) {
		snprintf(json, sizeof(json),
			 "{\"id\":\"a/%u/0/n/e%05d\",\"kind\":\"step_end\"}",
			 job, i);
		assert_int_equal(spool_event_append(sj, json), 0);
	}
}

static size_t queued(struct spool_job *sj)
{
	char **names;
	size_t n;

	assert_int_equal(__real_spool_events_list(sj, &names, &n), 0);
	spool_names_free(names, n);
	return n;
}

/* The stored ids of job, in order, are e00000..e<n-1>, each once. */
static void assert_stored_in_order(const struct gw_fake *g, uint32_t job, int n)
{
	char prefix[32], want[64];
	int next = 0;

	snprintf(prefix, sizeof(prefix), "a/%u/", job);
	for (size_t i = 0; i < g->n_stored; i++) {
		if (strncmp(g->stored[i], prefix, strlen(prefix)))
			continue;
		snprintf(want, sizeof(want), "a/%u/0/n/e%05d", job, next++);
		assert_string_equal(g->stored[i], want);
	}
	assert_int_equal(next, n);
}

struct two_dirs {
	char root[64];
	struct spool_job a, b;
	struct drain_dir dd[2];
};

static void two_dirs_open(struct two_dirs *t, int n_a, int n_b)
{
	snprintf(t->root, sizeof(t->root), "/tmp/test_drain.XXXXXX");
	assert_non_null(mkdtemp(t->root));
	assert_int_equal(spool_job_open(t->root, "alpha", 1, &t->a), 0);
	assert_int_equal(spool_job_open(t->root, "alpha", 2, &t->b), 0);
	queue(&t->a, 1, n_a);
	queue(&t->b, 2, n_b);
	t->dd[0] = (struct drain_dir){.sj = &t->a, .job_id = 1};
	t->dd[1] = (struct drain_dir){.sj = &t->b, .job_id = 2};
}

static void two_dirs_close(struct two_dirs *t)
{
	char cmd[128];

	spool_job_close(&t->a);
	spool_job_close(&t->b);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", t->root);
	assert_int_equal(system(cmd), 0);
}

static void finish(struct two_dirs *t, struct deliverer *d, struct fake_http *s,
		   struct gw_fake *g)
{
	two_dirs_close(t);
	deliverer_free(d);
	fake_http_stop(s);
	gw_free(g);
}

static void test_backlog_in_order_few_listings(void **state)
{
	struct gw_fake g = {0};
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	struct two_dirs t;

	(void)state;
	two_dirs_open(&t, 700, 300);
	n_listings = 0;
	assert_int_equal(drain_events(t.dd, 2, d, 5000), 0);
	assert_int_equal(g.n_stored, 1000);
	assert_stored_in_order(&g, 1, 700);
	assert_stored_in_order(&g, 2, 300);
	assert_int_equal(g.posts,
			 (1000 + DELIVER_EVENTS_MAX - 1) / DELIVER_EVENTS_MAX);
	/* each dir listed once: not once per batch (16 batches here) */
	assert_int_equal(n_listings, 2);
	assert_int_equal(queued(&t.a), 0);
	assert_int_equal(queued(&t.b), 0);
	assert_false(t.dd[0].blocked || t.dd[1].blocked);
	finish(&t, d, s, &g);
}

/* The gateway answers for the first 10 of each request (it stopped): the
 * others are sent again, after, in order, and counted once. */
static void test_unhandled_sent_again_in_order(void **state)
{
	struct gw_fake g = {.handle_max = 10};
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	struct two_dirs t;
	int calls = 0;

	(void)state;
	two_dirs_open(&t, 50, 40);
	while (drain_events(t.dd, 2, d, 5000) == -EAGAIN)
		assert_true(++calls < 100);
	assert_int_equal(calls, 8); /* 90 events, 10 a call: the 9th ends */
	assert_int_equal(g.n_stored, 90);
	assert_stored_in_order(&g, 1, 50);
	assert_stored_in_order(&g, 2, 40);
	assert_int_equal(queued(&t.a) + queued(&t.b), 0);
	finish(&t, d, s, &g);
}

/* Job 2 is not known to the gateway yet: job 1's events all go, job 2's
 * all stay, and job 2's dir is marked blocked. */
static void test_job_not_ready_waits_alone(void **state)
{
	struct gw_fake g = {.not_ready = "a/2/"};
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	struct two_dirs t;

	(void)state;
	two_dirs_open(&t, 100, 30);
	assert_int_equal(drain_events(t.dd, 2, d, 5000), 0);
	assert_stored_in_order(&g, 1, 100);
	assert_stored_in_order(&g, 2, 0);
	assert_false(t.dd[0].blocked);
	assert_true(t.dd[1].blocked);
	assert_int_equal(queued(&t.a), 0);
	assert_int_equal(queued(&t.b), 30);
	/* known now: the next call delivers them, in order */
	g.not_ready = NULL;
	t.dd[1].blocked = false;
	assert_int_equal(drain_events(t.dd, 2, d, 5000), 0);
	assert_stored_in_order(&g, 2, 30);
	finish(&t, d, s, &g);
}

/* An event that cannot be read now (here a directory where its file was)
 * holds back its dir's later events: none overtakes it. */
static void test_unreadable_event_keeps_order(void **state)
{
	struct gw_fake g = {0};
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	struct two_dirs t;

	(void)state;
	two_dirs_open(&t, 5, 2);
	assert_int_equal(
	    renameat(t.a.dir_fd, "events/0000000003.json", t.a.dir_fd, "aside"),
	    0);
	assert_int_equal(mkdirat(t.a.dir_fd, "events/0000000003.json", 0700),
			 0);
	assert_int_equal(drain_events(t.dd, 2, d, 5000), -EAGAIN);
	assert_stored_in_order(&g, 1, 2); /* e00000, e00001, not e00003 */
	assert_stored_in_order(&g, 2, 2); /* the other dir goes on */
	assert_int_equal(
	    unlinkat(t.a.dir_fd, "events/0000000003.json", AT_REMOVEDIR), 0);
	assert_int_equal(
	    renameat(t.a.dir_fd, "aside", t.a.dir_fd, "events/0000000003.json"),
	    0);
	assert_int_equal(drain_events(t.dd, 2, d, 5000), 0);
	assert_stored_in_order(&g, 1, 5);
	finish(&t, d, s, &g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backlog_in_order_few_listings),
	    cmocka_unit_test(test_unhandled_sent_again_in_order),
	    cmocka_unit_test(test_job_not_ready_waits_alone),
	    cmocka_unit_test(test_unreadable_event_keeps_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
