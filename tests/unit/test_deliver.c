/*
 * test_deliver.c: the relay's side of event batches (spank/deliver.c,
 * docs/protocol.md "Batches") against a fake gateway: the body is one JSON
 * array of the events in order; each event's fate comes from its result;
 * events past the results are sent again; a refusal of the whole request
 * stands for every event; anything unreadable is retried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "deliver.h"
#include "fake_http.h"

/* Written by the server thread before it answers, read by the test
 * after deliver_events has the answer: the request/answer orders them. */
struct gw_fake {
	const char *answer; /* body of the answer */
	int status;
	char body[4096]; /* what the gateway got */
	char ctype[128];
	char path[2048];
};

static void gw_handler(const struct fake_http_req *req,
		       struct fake_http_resp *resp, void *arg)
{
	struct gw_fake *g = arg;
	const char *ct = strcasestr(req->headers, "Content-Type: ");

	snprintf(g->body, sizeof(g->body), "%s", req->body ? req->body : "");
	snprintf(g->path, sizeof(g->path), "%s", req->path);
	snprintf(g->ctype, sizeof(g->ctype), "%.*s",
		 ct ? (int)strcspn(ct, "\r") : 0, ct ? ct : "");
	resp->status = g->status;
	fake_body(resp, g->answer);
}

static const char *const events[] = {
    "{\"id\":\"a/1/0/n/step_start@1\",\"kind\":\"step_start\"}",
    "{\"id\":\"a/1/0/n/task_exit/0@1\",\"kind\":\"task_exit\"}",
    "{\"id\":\"a/1/0/n/step_end@1\",\"kind\":\"step_end\"}",
    "{\"id\":\"a/2/0/n/step_start@1\",\"kind\":\"step_start\"}",
    "{\"id\":\"a/2/0/n/step_end@1\",\"kind\":\"step_end\"}",
};

static struct deliverer *new_deliverer(const struct fake_http *s)
{
	struct deliver_cfg cfg = {.gateway = fake_http_base(s),
				  .auth = REPORT_AUTH_NONE};

	return deliverer_new(&cfg);
}

static void test_batch_results(void **state)
{
	struct gw_fake g = {
	    .status = 200,
	    .answer = "{\"results\":["
		      "{\"id\":\"a/1/0/n/step_start@1\",\"status\":201,"
		      "\"duplicate\":false},"
		      "{\"id\":\"a/1/0/n/task_exit/0@1\",\"status\":200,"
		      "\"duplicate\":true},"
		      "{\"status\":400,\"duplicate\":false,\"error\":{\"code\":"
		      "\"bad_request\",\"message\":\"an event needs id\"}},"
		      "{\"status\":503,\"duplicate\":false,\"error\":{\"code\":"
		      "\"job_not_ready\",\"message\":\"not known yet\"}}]}"};
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	int results[5];
	char err[320];
	json_t *sent;

	(void)state;
	assert_int_equal(
	    deliver_events(d, events, 5, results, 2000, err, sizeof(err)), 0);
	/* stored, a repeat, refused for good, job not ready, not handled */
	assert_int_equal(results[0], 0);
	assert_int_equal(results[1], 0);
	assert_int_equal(results[2], -EBADMSG);
	assert_int_equal(results[3], -EINPROGRESS);
	assert_int_equal(results[4], -EAGAIN);
	assert_non_null(strstr(err, "bad_request"));
	/* one JSON array of the events, in order */
	assert_string_equal(g.path, "/v1/events");
	assert_string_equal(g.ctype, "Content-Type: application/json");
	sent = json_loads(g.body, 0, NULL);
	assert_true(json_is_array(sent));
	assert_int_equal(json_array_size(sent), 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *one = json_loads(events[i], 0, NULL);

		assert_true(json_equal(json_array_get(sent, i), one));
		json_decref(one);
	}
	json_decref(sent);
	deliverer_free(d);
	fake_http_stop(s);
}

static void test_batch_refused_or_unreadable(void **state)
{
	static const struct {
		int status;
		const char *answer;
		int want;
	} cases[] = {
	    /* the whole request: its status stands for every event, but
	     * for a body too big: fewer at a time will do */
	    {413, "{\"error\":{\"code\":\"payload_too_large\"}}", -E2BIG},
	    {401, "{\"error\":{\"code\":\"unauthenticated\"}}", -EBADMSG},
	    {503, "{\"error\":{\"code\":\"job_not_ready\"}}", -EINPROGRESS},
	    {503, "{\"error\":{\"code\":\"storage_unavailable\"}}", -EAGAIN},
	    {429, "{}", -EAGAIN},
	    /* 2xx without results (a gateway from before batches would
	     * not say 2xx; anything unreadable is sent again) */
	    {200, "{\"duplicate\":false}", -EAGAIN},
	    {200, "not json", -EAGAIN},
	};
	struct gw_fake g;
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	int results[2];
	char err[320];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		g.status = cases[i].status;
		g.answer = cases[i].answer;
		assert_int_equal(deliver_events(d, events, 2, results, 2000,
						err, sizeof(err)),
				 cases[i].want);
		assert_true(err[0] != '\0'); /* says why */
	}
	/* one event too big is refused for good */
	g.status = 413;
	g.answer = "{\"error\":{\"code\":\"payload_too_large\"}}";
	assert_int_equal(
	    deliver_events(d, events, 1, results, 2000, err, sizeof(err)),
	    -EBADMSG);
	deliverer_free(d);
	fake_http_stop(s);
}

static void test_gateway_down(void **state)
{
	struct gw_fake g = {.status = 200, .answer = "{}"};
	struct fake_http *s = fake_http_start(gw_handler, &g);
	struct deliverer *d = new_deliverer(s);
	int results[1];
	char err[320];

	(void)state;
	fake_http_stop(s); /* the port is closed now: refused */
	assert_int_equal(
	    deliver_events(d, events, 1, results, 2000, err, sizeof(err)),
	    -EAGAIN);
	deliverer_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batch_results),
	    cmocka_unit_test(test_batch_refused_or_unreadable),
	    cmocka_unit_test(test_gateway_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
