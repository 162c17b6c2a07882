/*
 * test_http_client.c: the libcurl multi glue against real HTTP on loopback
 * (a small server thread, tests/unit/fake_http.h) and over a unix socket.
 * Every test runs the real loop until its done condition, and ends with no
 * live io watch, timer, deferred work or task.
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

#include "fake_http.h"
#include "fixture.h"
#include "http_client.h"
#include "log.h"
#include "loop.h"
#include "task.h"

/* ------------------------------------------------------------ server */

static void router(const struct fake_http_req *rq, struct fake_http_resp *rs,
		   void *arg)
{
	const char *p = rq->path;
	char *b = NULL;

	if (strncmp(p, "/echo", 5) == 0) {
		if (asprintf(&b, "%s %s %s", rq->method, p, rq->body) < 0)
			abort();
		rs->body = b;
		rs->body_len = strlen(b);
	} else if (strcmp(p, "/hang") == 0) {
		rs->action = FAKE_HANG;
	} else if (strcmp(p, "/close") == 0) {
		rs->action = FAKE_CLOSE;
	} else if (strcmp(p, "/garbage") == 0) {
		rs->action = FAKE_GARBAGE;
		fake_body(rs, "this is not http\r\n\r\n");
	} else if (strcmp(p, "/garbage-status") == 0) {
		rs->action = FAKE_GARBAGE;
		fake_body(rs, "HTTP/1.1 abc\r\nfoo\r\n\r\n");
	} else if (strcmp(p, "/garbage-binary") == 0) {
		static const char junk[] =
		    "\x00\x01\xff\xfe\r\n\r\n\x80garbage";

		rs->action = FAKE_GARBAGE;
		rs->body = malloc(sizeof(junk));
		memcpy(rs->body, junk, sizeof(junk));
		rs->body_len = sizeof(junk) - 1;
	} else if (strcmp(p, "/truncated") == 0) {
		rs->action = FAKE_GARBAGE;
		fake_body(
		    rs, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
	} else if (strncmp(p, "/slow/", 6) == 0) {
		rs->delay_ms = (unsigned)atoi(p + 6);
		fake_body(rs, "slow");
	} else if (strncmp(p, "/big/", 5) == 0 ||
		   strncmp(p, "/bigstream/", 11) == 0) {
		size_t n = strtoul(strchr(p + 1, '/') + 1, NULL, 10);

		rs->body = malloc(n + 1);
		memset(rs->body, 'x', n);
		rs->body_len = n;
		if (p[4] == 's') { /* no length: read until close */
			rs->no_content_length = true;
			rs->close = true;
		}
	} else if (strncmp(p, "/status/", 8) == 0) {
		rs->status = atoi(p + 8);
		fake_body(rs, "{\"status\": \"as asked\"}");
	} else if (strcmp(p, "/headers") == 0) {
		if (asprintf(&b, "%s\n\n%s", rq->headers, rq->body) < 0)
			abort();
		rs->body = b;
		rs->body_len = strlen(b);
	} else {
		rs->status = 404;
		fake_body(rs, "no route");
	}
}

/* ------------------------------------------------------------ fixture */

struct fx {
	struct loop *l;
	struct http_client *c;
	struct fake_http *srv;
	const char *base;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->l = loop_new();
	assert_non_null(f->l);
	f->c = http_client_new(f->l, NULL);
	assert_non_null(f->c);
	f->srv = fake_http_start(router, NULL);
	f->base = fake_http_base(f->srv);
	*state = f;
	return 0;
}

static void assert_quiet_loop(struct loop *l)
{
	struct loop_stats st;
	int i;

	for (i = 0; i < 3; i++)
		loop_run_once(l, 0);
	loop_stats(l, &st);
	assert_int_equal(st.live_io, 0);
	assert_int_equal(st.live_timers, 0);
	assert_int_equal(st.pending_deferred, 0);
	assert_int_equal(task_count_live(l), 0);
	assert_int_equal(task_count_ended_unreleased(l), 0);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	http_client_free(f->c);
	assert_quiet_loop(f->l);
	fake_http_stop(f->srv);
	loop_free(f->l);
	free(f);
	return 0;
}

/* A completion record, filled by the callback. */
struct rec {
	int calls;
	int rc;
	long status;
	char *body;
	size_t len;
	uint64_t elapsed;
	char error[256];
};

static void rec_cb(struct http_request *req, void *arg)
{
	struct rec *r = arg;
	const char *b;

	r->calls++;
	assert_true(http_request_done(req));
	r->rc = http_request_result(req);
	r->status = http_request_status(req);
	b = http_request_body(req, &r->len);
	free(r->body);
	r->body = malloc(r->len + 1);
	memcpy(r->body, b, r->len + 1);
	r->elapsed = http_request_elapsed_ms(req);
	snprintf(r->error, sizeof(r->error), "%s", http_request_error(req));
}

static struct http_request *start(struct fx *f, const char *method,
				  const char *path, struct rec *r,
				  uint32_t timeout_ms)
{
	struct http_request *req =
	    http_request_new(f->c, method, f->base, path);

	assert_non_null(req);
	if (r)
		http_request_set_callback(req, rec_cb, r);
	http_request_set_timeouts(req, timeout_ms, 0);
	assert_int_equal(http_request_start(req), 0);
	return req;
}

/* One request, run to completion, closed. */
static void fetch(struct fx *f, const char *method, const char *path,
		  struct rec *r, uint32_t timeout_ms)
{
	struct http_request *req = start(f, method, path, r, timeout_ms);

	RUN_UNTIL(f->l, r->calls > 0);
	http_request_close(req);
}

/* -------------------------------------------------------------- tests */

static void test_get_ok(void **state)
{
	struct fx *f = *state;
	struct rec r = {0};
	struct http_client_stats st;

	fetch(f, "GET", "/echo/hello?a=1", &r, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "GET /echo/hello?a=1 ");
	http_client_stats(f->c, &st);
	assert_int_equal(st.started, 1);
	assert_int_equal(st.ok, 1);
	assert_int_equal(st.active, 0);
	free(r.body);
}

#define N_CONCURRENT 100

static void test_concurrent_100(void **state)
{
	struct fx *f = *state;
	static struct rec recs[N_CONCURRENT];
	struct http_request *reqs[N_CONCURRENT];
	struct http_host_stats hs;
	unsigned done;
	int i;

	memset(recs, 0, sizeof(recs));
	for (i = 0; i < N_CONCURRENT; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/echo/%d?i=%d", i, i);
		reqs[i] =
		    start(f, i % 2 ? "POST" : "GET", path, &recs[i], 20000);
	}
	do {
		assert_true(loop_run_once(f->l, 20) >= 0);
		for (done = 0, i = 0; i < N_CONCURRENT; i++)
			done += recs[i].calls > 0;
	} while (done < N_CONCURRENT);
	for (i = 0; i < N_CONCURRENT; i++) {
		char want[80];

		snprintf(want, sizeof(want), "%s /echo/%d?i=%d ",
			 i % 2 ? "POST" : "GET", i, i);
		assert_int_equal(recs[i].calls, 1);
		assert_int_equal(recs[i].rc, 0);
		assert_int_equal(recs[i].status, 200);
		assert_string_equal(recs[i].body, want);
		http_request_close(reqs[i]);
		free(recs[i].body);
	}
	assert_int_equal(http_client_host_stats(f->c, f->base, &hs), 0);
	assert_int_equal(hs.started, N_CONCURRENT);
	assert_int_equal(hs.ok, N_CONCURRENT);
	assert_int_equal(hs.failed + hs.timed_out + hs.cancelled, 0);
	assert_true(hs.connects >= 1);
	assert_int_equal(fake_http_count(&f->srv->requests), N_CONCURRENT);
}

static void test_post_body_and_headers(void **state)
{
	struct fx *f = *state;
	struct rec r = {0};
	struct http_request *req;
	const char *body = "{\"k\": \"v/w\"}";

	req = http_request_new(f->c, "POST", f->base, "/headers");
	assert_non_null(req);
	assert_int_equal(http_request_add_header(req, "X-Test", "value 1"), 0);
	assert_int_equal(
	    http_request_set_body(req, body, strlen(body), "application/json"),
	    0);
	http_request_set_callback(req, rec_cb, &r);
	assert_int_equal(http_request_start(req), 0);
	assert_int_equal(http_request_start(req), -EALREADY);
	assert_int_equal(http_request_add_header(req, "X-Late", "no"), -EBUSY);
	RUN_UNTIL(f->l, r.calls > 0);
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.body, "X-Test: value 1\r\n"));
	assert_non_null(strstr(r.body, "Content-Type: application/json"));
	assert_non_null(strstr(r.body, "Content-Length: 12"));
	assert_null(strstr(r.body, "Expect"));
	assert_non_null(strstr(r.body, "\n\n{\"k\": \"v/w\"}"));
	assert_string_equal(http_request_content_type(req), "application/json");
	http_request_close(req);
	free(r.body);
}

static void test_methods(void **state)
{
	struct fx *f = *state;
	static const char *const methods[] = {"DELETE", "PUT", "PATCH"};
	size_t i;

	for (i = 0; i < 3; i++) {
		struct rec r = {0};
		char want[64];

		fetch(f, methods[i], "/echo/m", &r, 5000);
		snprintf(want, sizeof(want), "%s /echo/m ", methods[i]);
		assert_int_equal(r.rc, 0);
		assert_string_equal(r.body, want);
		free(r.body);
	}
	{
		struct rec r = {0};

		fetch(f, "GET", "/status/500", &r, 5000);
		assert_int_equal(r.rc, 0); /* an answer is an answer */
		assert_int_equal(r.status, 500);
		free(r.body);
	}
}

static void test_timeout_hang(void **state)
{
	struct fx *f = *state;
	struct rec r = {0};
	struct http_host_stats hs;

	fetch(f, "GET", "/hang", &r, 200);
	assert_int_equal(r.rc, -ETIMEDOUT);
	assert_true(r.elapsed >= 200);
	assert_true(r.elapsed < 20000);
	assert_non_null(strstr(r.error, "timed out"));
	assert_int_equal(http_client_host_stats(f->c, f->base, &hs), 0);
	assert_int_equal(hs.timed_out, 1);
	/* curl closed the connection it gave up on */
	RUN_UNTIL(f->l, fake_http_count(&f->srv->peer_closed) >= 1);
	free(r.body);
}

static void test_slow_answers(void **state)
{
	struct fx *f = *state;
	struct rec r1 = {0}, r2 = {0};
	struct http_request *a, *b;

	a = start(f, "GET", "/slow/300", &r1, 10000);
	b = start(f, "GET", "/slow/5000", &r2, 300);
	RUN_UNTIL(f->l, r1.calls && r2.calls);
	assert_int_equal(r1.rc, 0);
	assert_string_equal(r1.body, "slow");
	assert_true(r1.elapsed >= 300);
	assert_int_equal(r2.rc, -ETIMEDOUT);
	http_request_close(a);
	http_request_close(b);
	free(r1.body);
	free(r2.body);
}

static void test_connect_timeout(void **state)
{
	struct fx *f = *state;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int lfd, fillers[4], i;
	char base[64];
	struct http_request *req;
	struct rec r = {0};

	/* a listener whose accept queue is full drops SYNs: connect hangs */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	for (i = 0; i < 4; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fillers[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(100000);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	req = http_request_new(f->c, "GET", base, "/x");
	assert_non_null(req);
	http_request_set_timeouts(req, 10000, 300);
	http_request_set_callback(req, rec_cb, &r);
	assert_int_equal(http_request_start(req), 0);
	RUN_UNTIL(f->l, r.calls > 0);
	assert_int_equal(r.rc, -ETIMEDOUT);
	assert_true(r.elapsed >= 300);
	assert_true(r.elapsed < 10000);
	http_request_close(req);
	for (i = 0; i < 4; i++)
		close(fillers[i]);
	close(lfd);
	free(r.body);
}

static void test_connection_refused(void **state)
{
	struct fx *f = *state;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char base[64];
	struct http_request *req;
	struct rec r = {0};

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd); /* nothing listens there now */
	snprintf(base, sizeof(base), "http://127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	req = http_request_new(f->c, "GET", base, "/x");
	http_request_set_callback(req, rec_cb, &r);
	assert_int_equal(http_request_start(req), 0);
	RUN_UNTIL(f->l, r.calls > 0);
	assert_int_equal(r.rc, -ECONNREFUSED);
	assert_int_equal(r.status, 0);
	assert_true(r.error[0] != '\0');
	http_request_close(req);
	free(r.body);
}

static void test_garbage(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *path;
		int rc;
	} cases[] = {
	    {"/garbage", -EPROTO},	  {"/garbage-status", -EPROTO},
	    {"/garbage-binary", -EPROTO}, {"/close", -ECONNRESET},
	    {"/truncated", -ECONNRESET},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rec r = {0};

		fetch(f, "GET", cases[i].path, &r, 5000);
		if (r.rc != cases[i].rc)
			fail_msg("%s: rc %d (%s), want %d", cases[i].path, r.rc,
				 r.error, cases[i].rc);
		assert_true(r.error[0] != '\0');
		free(r.body);
	}
	/* and the client still works */
	{
		struct rec r = {0};

		fetch(f, "GET", "/echo/after", &r, 5000);
		assert_int_equal(r.rc, 0);
		free(r.body);
	}
}

static void test_too_big(void **state)
{
	struct fx *f = *state;
	struct http_request *req;
	struct rec r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
	char path[64];

	req = http_request_new(f->c, "GET", f->base, "/big/1000");
	http_request_set_max_response(req, 1000);
	http_request_set_callback(req, rec_cb, &r1);
	assert_int_equal(http_request_start(req), 0);
	RUN_UNTIL(f->l, r1.calls);
	assert_int_equal(r1.rc, 0);
	assert_int_equal(r1.len, 1000);
	http_request_close(req);

	req = http_request_new(f->c, "GET", f->base, "/big/1001");
	http_request_set_max_response(req, 1000);
	http_request_set_callback(req, rec_cb, &r2);
	assert_int_equal(http_request_start(req), 0);
	RUN_UNTIL(f->l, r2.calls);
	assert_int_equal(r2.rc, -EFBIG);
	assert_non_null(strstr(r2.error, "over 1000 bytes"));
	http_request_close(req);

	/* no Content-Length: the cap is enforced while reading */
	req = http_request_new(f->c, "GET", f->base, "/bigstream/300000");
	http_request_set_max_response(req, 100000);
	http_request_set_callback(req, rec_cb, &r3);
	assert_int_equal(http_request_start(req), 0);
	RUN_UNTIL(f->l, r3.calls);
	assert_int_equal(r3.rc, -EFBIG);
	http_request_close(req);

	/* the default cap is 16 MiB */
	snprintf(path, sizeof(path), "/bigstream/%u",
		 HTTP_DEFAULT_MAX_RESPONSE + 1);
	fetch(f, "GET", path, &r4, 20000);
	assert_int_equal(r4.rc, -EFBIG);
	free(r1.body);
	free(r2.body);
	free(r3.body);
	free(r4.body);
}

static void test_cancel_mid_flight(void **state)
{
	struct fx *f = *state;
	struct rec r = {0}, r2 = {0};
	struct http_request *req;
	struct http_host_stats hs;
	int i;

	req = start(f, "GET", "/hang", &r, 10000);
	RUN_UNTIL(f->l, fake_http_count(&f->srv->inflight) == 1);
	assert_int_equal(http_request_state(req), HTTP_REQUEST_ACTIVE);
	assert_int_equal(http_request_cancel(req), 0);
	assert_int_equal(http_request_state(req), HTTP_REQUEST_CANCELLED);
	assert_int_equal(http_request_result(req), -ECANCELED);
	assert_int_equal(http_request_cancel(req), -EALREADY);
	/* the server sees the connection go; nothing is delivered */
	RUN_UNTIL(f->l, fake_http_count(&f->srv->peer_closed) >= 1);
	for (i = 0; i < 5; i++)
		loop_run_once(f->l, 10);
	assert_int_equal(r.calls, 0);
	assert_int_equal(http_client_host_stats(f->c, f->base, &hs), 0);
	assert_int_equal(hs.cancelled, 1);
	assert_int_equal(hs.active, 0);
	http_request_close(req);

	/* a new one still works */
	fetch(f, "GET", "/echo/x", &r2, 5000);
	assert_int_equal(r2.rc, 0);
	free(r2.body);

	/* cancel before start, and close twice */
	req = http_request_new(f->c, "GET", f->base, "/echo/never");
	assert_int_equal(http_request_cancel(req), 0);
	assert_int_equal(http_request_start(req), -EALREADY);
	http_request_close(req);
}

/* A completion recorded but not yet delivered is suppressed by cancel. */
static void test_cancel_pending_delivery(void **state)
{
	struct fx *f = *state;
	struct rec r = {0};
	struct http_request *req;
	int i;

	req = start(f, "GET", "/echo/x", &r, 5000);
	RUN_UNTIL(f->l, http_request_done(req));
	assert_int_equal(r.calls, 0); /* deferred to the next turn */
	assert_int_equal(http_request_cancel(req), -EALREADY);
	for (i = 0; i < 5; i++)
		loop_run_once(f->l, 10);
	assert_int_equal(r.calls, 0);
	assert_int_equal(http_request_result(req), 0); /* result kept */
	http_request_close(req);
}

struct pair {
	struct http_request *other;
	struct rec rec;
	int cancel_rc;
};

static void cancel_other_cb(struct http_request *req, void *arg)
{
	struct pair *p = arg;

	rec_cb(req, &p->rec);
	p->cancel_rc = http_request_cancel(p->other);
	http_request_close(req); /* closing itself from its callback */
}

static void test_cancel_from_callback(void **state)
{
	struct fx *f = *state;
	struct pair p = {0};
	struct rec r2 = {0};
	struct http_request *a, *b;

	b = start(f, "GET", "/hang", &r2, 10000);
	p.other = b;
	a = http_request_new(f->c, "GET", f->base, "/slow/100");
	http_request_set_callback(a, cancel_other_cb, &p);
	assert_int_equal(http_request_start(a), 0);
	RUN_UNTIL(f->l, p.rec.calls > 0);
	assert_int_equal(p.rec.rc, 0);
	assert_int_equal(p.cancel_rc, 0);
	assert_int_equal(http_request_state(b), HTTP_REQUEST_CANCELLED);
	http_request_close(b);
	loop_run_once(f->l, 0);
	assert_int_equal(r2.calls, 0);
	free(p.rec.body);
}

static void test_keepalive_reuse(void **state)
{
	struct fx *f = *state;
	struct http_host_stats hs;
	int i;

	for (i = 0; i < 20; i++) {
		struct rec r = {0};

		fetch(f, "GET", "/echo/k", &r, 5000);
		assert_int_equal(r.rc, 0);
		free(r.body);
	}
	assert_int_equal(fake_http_count(&f->srv->accepted), 1);
	assert_int_equal(http_client_host_stats(f->c, f->base, &hs), 0);
	assert_int_equal(hs.connects, 1);
	assert_int_equal(hs.ok, 20);
}

static void test_host_limit(void **state)
{
	struct fx *f = *state;
	static struct rec recs[30];
	struct http_request *reqs[30];
	struct http_host_stats hs;
	unsigned max_queued = 0;
	int i, done;

	memset(recs, 0, sizeof(recs));
	assert_int_equal(http_client_set_host_limit(f->c, f->base, 3), 0);
	for (i = 0; i < 30; i++)
		reqs[i] = start(f, "GET", "/slow/20", &recs[i], 20000);
	do {
		assert_true(loop_run_once(f->l, 20) >= 0);
		assert_int_equal(http_client_host_stats(f->c, f->base, &hs), 0);
		assert_true(hs.active <= 3);
		if (hs.queued > max_queued)
			max_queued = hs.queued;
		for (done = 0, i = 0; i < 30; i++)
			done += recs[i].calls;
	} while (done < 30);
	assert_int_equal(max_queued, 27);
	assert_true(fake_http_count(&f->srv->max_inflight) <= 3);
	assert_true(fake_http_count(&f->srv->accepted) <= 3);
	for (i = 0; i < 30; i++) {
		assert_int_equal(recs[i].rc, 0);
		http_request_close(reqs[i]);
		free(recs[i].body);
	}
	assert_int_equal(hs.limit, 3);
}

static void test_host_limit_queue_timeout(void **state)
{
	struct fx *f = *state;
	struct rec r1 = {0}, r2 = {0}, r3 = {0};
	struct http_request *a, *b, *c;

	assert_int_equal(http_client_set_host_limit(f->c, f->base, 1), 0);
	a = start(f, "GET", "/hang", &r1, 20000);
	b = start(f, "GET", "/echo/queued", &r2, 200);
	c = start(f, "GET", "/echo/queued-cancelled", &r3, 20000);
	assert_int_equal(http_request_state(b), HTTP_REQUEST_QUEUED);
	assert_int_equal(http_request_state(c), HTTP_REQUEST_QUEUED);
	RUN_UNTIL(f->l, r2.calls > 0);
	/* queued until too little time was left: failed unsent, early */
	assert_int_equal(r2.rc, -EAGAIN);
	assert_non_null(strstr(r2.error, "no connection slot"));
	assert_non_null(strstr(r2.error, "not sent"));
	assert_true(http_request_elapsed_ms(b) < 200);
	assert_int_equal(http_request_cancel(c), 0); /* leaves the queue */
	assert_int_equal(http_request_cancel(a), 0);
	http_request_close(a);
	http_request_close(b);
	http_request_close(c);
	/* the slot is free again */
	{
		struct rec r = {0};

		fetch(f, "GET", "/echo/next", &r, 5000);
		assert_int_equal(r.rc, 0);
		free(r.body);
	}
	assert_int_equal(r1.calls + r3.calls, 0);
	free(r2.body);
}

static void test_unix_socket(void **state)
{
	struct fx *f = *state;
	char path[108], base[160];
	struct fake_http *us;
	static struct rec recs[20];
	struct http_request *reqs[20];
	struct http_host_stats hs;
	int i, done;

	snprintf(path, sizeof(path), "/tmp/tg-test-http-%d.sock",
		 (int)getpid());
	us = fake_http_start_unix(path, router, NULL);
	snprintf(base, sizeof(base), "%s", fake_http_base(us));
	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 20; i++) {
		char p[32];

		snprintf(p, sizeof(p), "/echo/u%d", i);
		reqs[i] = http_request_new(f->c, "GET", base, p);
		assert_non_null(reqs[i]);
		http_request_set_callback(reqs[i], rec_cb, &recs[i]);
		assert_int_equal(http_request_start(reqs[i]), 0);
	}
	do {
		assert_true(loop_run_once(f->l, 20) >= 0);
		for (done = 0, i = 0; i < 20; i++)
			done += recs[i].calls;
	} while (done < 20);
	for (i = 0; i < 20; i++) {
		char want[32];

		snprintf(want, sizeof(want), "GET /echo/u%d ", i);
		assert_int_equal(recs[i].rc, 0);
		assert_string_equal(recs[i].body, want);
		http_request_close(reqs[i]);
		free(recs[i].body);
	}
	assert_int_equal(http_client_host_stats(f->c, base, &hs), 0);
	assert_int_equal(hs.ok, 20);
	assert_string_equal(hs.key, base);
	fake_http_stop(us);

	/* the socket is gone now */
	{
		struct rec r = {0};
		struct http_request *req =
		    http_request_new(f->c, "GET", base, "/echo/gone");

		http_request_set_callback(req, rec_cb, &r);
		assert_int_equal(http_request_start(req), 0);
		RUN_UNTIL(f->l, r.calls);
		assert_true(r.rc == -ENOENT || r.rc == -ECONNREFUSED);
		http_request_close(req);
		free(r.body);
	}
}

/* ----------------------------------------------- a task waits on one */

#define FETCH_STATES(X)                                                        \
	X(START)                                                               \
	X(WAITING)                                                             \
	X(END)

enum fetch_state { FETCH_STATES(TASK_STATE_ENUM) };
static const char *const fetch_state_names[] = {FETCH_STATES(TASK_STATE_NAME)};

struct fetcher {
	struct task task;
	struct fx *f;
	const char *path;
	struct http_request *req;
	unsigned wakes;
	int rc;
	long status;
	bool destroyed;
	bool finished;
};

static enum task_step fetch_step(struct task *t, unsigned wake)
{
	struct fetcher *x = container_of(t, struct fetcher, task);

	x->wakes |= wake;
	if (wake & TASK_WAKE_CANCEL) {
		http_request_close(x->req); /* nothing comes after this */
		x->req = NULL;
		x->rc = -ECANCELED;
		x->finished = true;
		task_set_state(t, END);
		return TASK_DONE;
	}
	switch ((enum fetch_state)t->state) {
	case START:
		x->req = http_request_new(x->f->c, "GET", x->f->base, x->path);
		if (!x->req)
			return TASK_DONE;
		http_request_set_task(x->req, t);
		if (http_request_start(x->req) < 0) {
			http_request_close(x->req);
			return TASK_DONE;
		}
		task_set_state(t, WAITING);
		task_wait_on(t, "http reply");
		return TASK_WAIT;
	case WAITING:
		if (!http_request_done(x->req))
			return TASK_WAIT;
		x->rc = http_request_result(x->req);
		x->status = http_request_status(x->req);
		http_request_close(x->req);
		x->req = NULL;
		x->finished = true;
		task_set_state(t, END);
		return TASK_DONE;
	case END:
		return TASK_DONE;
	}
	return TASK_DONE;
}

static void fetch_destroy(struct task *t)
{
	struct fetcher *x = container_of(t, struct fetcher, task);

	x->destroyed = true;
}

static const struct task_ops fetch_ops = {
    .kind = "fetch",
    .state_names = fetch_state_names,
    .n_states = sizeof(fetch_state_names) / sizeof(fetch_state_names[0]),
    .step = fetch_step,
    .destroy = fetch_destroy,
};

static void test_task_wake(void **state)
{
	struct fx *f = *state;
	struct fetcher x = {.f = f, .path = "/echo/task"};
	struct fetcher y = {.f = f, .path = "/hang"};

	assert_int_equal(task_start(f->l, &x.task, &fetch_ops), 0);
	assert_int_equal(task_start(f->l, &y.task, &fetch_ops), 0);
	RUN_UNTIL(f->l, x.destroyed);
	assert_int_equal(x.rc, 0);
	assert_int_equal(x.status, 200);
	assert_true(x.wakes & HTTP_REQUEST_WAKE);
	/* the other one is cancelled while its request hangs */
	RUN_UNTIL(f->l, fake_http_count(&f->srv->inflight) == 1);
	assert_int_equal(task_cancel(&y.task, "test says stop"), 0);
	RUN_UNTIL(f->l, y.destroyed);
	assert_int_equal(y.rc, -ECANCELED);
	RUN_UNTIL(f->l, fake_http_count(&f->srv->peer_closed) >= 1);
}

/* -------------------------------------- shutdown with work in flight */

static void test_client_free_in_flight(void **state)
{
	struct fx *f = *state;
	struct rec r[4] = {{0}};
	struct http_request *reqs[4];
	struct fetcher x = {.f = f, .path = "/hang"};
	int i;

	assert_int_equal(http_client_set_host_limit(f->c, f->base, 2), 0);
	for (i = 0; i < 4; i++)
		reqs[i] = start(f, "GET", "/hang", &r[i], 20000);
	assert_int_equal(task_start(f->l, &x.task, &fetch_ops), 0);
	RUN_UNTIL(f->l, fake_http_count(&f->srv->inflight) == 2);
	http_client_free(f->c);
	f->c = NULL;
	RUN_UNTIL(f->l, r[0].calls && r[1].calls && r[2].calls && r[3].calls &&
			    x.destroyed);
	for (i = 0; i < 4; i++) {
		assert_int_equal(r[i].rc, -ESHUTDOWN);
		assert_int_equal(r[i].calls, 1);
		http_request_close(reqs[i]);
		free(r[i].body);
	}
	assert_int_equal(x.rc, -ESHUTDOWN);
}

/* ------------------------------------------------ arguments and logs */

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	struct http_request *req;

	errno = 0;
	assert_null(http_request_new(f->c, "FETCH", f->base, "/"));
	assert_int_equal(errno, EINVAL);
	assert_null(http_request_new(f->c, "GET", "ftp://x/", "/"));
	assert_null(http_request_new(f->c, "GET", "unix:relative", "/"));
	assert_null(http_request_new(f->c, "GET", "http://h/?q=1", "/"));
	assert_null(http_request_new(f->c, "GET", "http://h", "no-slash"));
	assert_null(http_request_new(f->c, "GET", "http://h", "/a b"));
	assert_null(http_request_new(f->c, "GET", "http://h", "/a\r\nX: y"));
	assert_null(http_request_new(f->c, "GET", NULL, "/"));
	assert_int_equal(http_client_set_host_limit(f->c, "gopher://x", 1),
			 -EINVAL);
	req = http_request_new(f->c, "GET", f->base, "/");
	assert_non_null(req);
	assert_int_equal(http_request_add_header(req, "X-A", "b\r\nX-C: d"),
			 -EINVAL);
	assert_int_equal(http_request_add_header(req, "X A", "b"), -EINVAL);
	assert_int_equal(http_request_add_header(req, "", "b"), -EINVAL);
	assert_int_equal(http_request_result(req), -EINPROGRESS);
	http_request_close(req);
}

static void test_debug_str(void **state)
{
	struct fx *f = *state;
	struct http_request *req;
	char buf[512];

	req = http_request_new(
	    f->c, "GET", "http://user:pw@127.0.0.1:1/base/",
	    "/jobs?update_time=5&token=abc.def&X-Api-Key=k&y=2");
	assert_non_null(req);
	http_request_debug_str(req, buf, sizeof(buf));
	assert_non_null(strstr(buf, "GET http://127.0.0.1:1/base/jobs?"
				    "update_time=5&token=[REDACTED]&"
				    "X-Api-Key=[REDACTED]&y=2 state=NEW"));
	assert_null(strstr(buf, "abc.def"));
	assert_null(strstr(buf, "pw"));
	assert_non_null(strstr(buf, "refs=1 destroyed=0"));
	http_request_close(req);
	http_client_debug_str(f->c, buf, sizeof(buf));
	assert_non_null(strstr(buf, "http_client active=0 queued=0"));
	assert_non_null(strstr(buf, "shut=0"));
	assert_string_equal(http_request_state_name(HTTP_REQUEST_QUEUED),
			    "QUEUED");
}

/* Idle kept-alive connections leave no watch, no timer behind. */
static void test_quiet_after_completion(void **state)
{
	struct fx *f = *state;
	struct http_client_stats st;
	struct rec r = {0};

	fetch(f, "GET", "/echo/q", &r, 5000);
	assert_quiet_loop(f->l);
	http_client_stats(f->c, &st);
	assert_int_equal(st.sockets, 0);
	assert_false(st.timer_armed);
	free(r.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_get_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_100, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_post_body_and_headers, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_methods, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_hang, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_connect_timeout, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_connection_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_mid_flight, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_pending_delivery, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_from_callback, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_host_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_limit_queue_timeout,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_task_wake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_free_in_flight, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_debug_str, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quiet_after_completion, setup,
					    teardown),
	};

	log_init("test_http_client");
	log_debug_from_env();
	http_client_global_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
