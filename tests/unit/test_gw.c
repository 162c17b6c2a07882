/*
 * test_gw.c: the per-site circuit breaker (gw.c): what a call's result
 * counts as, when it opens, the one trial after the open time, and what a
 * trial's result does.  The loop's clock is a fake (test_gw.wrap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "gw.h"
#include "site.h"

static uint64_t now_ms = 1000000;

uint64_t __wrap_loop_clock_ms(void);
uint64_t __wrap_loop_clock_ms(void)
{
	return now_ms;
}

struct fixture {
	struct gw_site_config cfg;
	struct gw_site s;
};

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	f.cfg.name = "alpha";
	f.s.cfg = &f.cfg;
	*state = &f;
	return 0;
}

static void record(struct gw_site *s, enum site_err err, const char *msg)
{
	struct site_result r;

	memset(&r, 0, sizeof(r));
	site_result_set(&r, err, "%s", msg);
	gw_site_record_result(s, &r);
	site_result_clear(&r);
}

/* Three failures in a row open it; a submit is refused until the trial. */
static void test_opens_after_three_failures(void **state)
{
	struct fixture *f = *state;

	record(&f->s, SITE_ERR_OK, "");
	assert_int_equal(f->s.breaker, BREAKER_CLOSED);
	assert_true(f->s.last_ok > 0);
	record(&f->s, SITE_ERR_UNAVAILABLE, "refused");
	record(&f->s, SITE_ERR_TIMEOUT, "timed out");
	assert_int_equal(f->s.breaker, BREAKER_CLOSED);
	assert_true(gw_site_allows(&f->s));
	record(&f->s, SITE_ERR_BACKEND, "slurmctld away");
	assert_int_equal(f->s.breaker, BREAKER_OPEN);
	assert_string_equal(f->s.last_error, "slurmctld away");
	assert_false(gw_site_allows(&f->s));
	now_ms += 9999;
	assert_false(gw_site_allows(&f->s));
	now_ms += 1;
	/* the trial */
	assert_true(gw_site_allows(&f->s));
	assert_int_equal(f->s.breaker, BREAKER_HALF_OPEN);
	record(&f->s, SITE_ERR_OK, "");
	assert_int_equal(f->s.breaker, BREAKER_CLOSED);
	assert_int_equal(f->s.consecutive_failures, 0);
	/* the last error stays for GET /v1/sites */
	assert_string_equal(f->s.last_error, "slurmctld away");
}

/* A trial that fails opens it again, for the whole open time. */
static void test_failed_trial_reopens(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < 3; i++)
		record(&f->s, SITE_ERR_TIMEOUT, "timed out");
	assert_int_equal(f->s.breaker, BREAKER_OPEN);
	now_ms += 10000;
	assert_true(gw_site_allows(&f->s));
	record(&f->s, SITE_ERR_UNAVAILABLE, "still refused");
	assert_int_equal(f->s.breaker, BREAKER_OPEN);
	assert_string_equal(f->s.last_error, "still refused");
	now_ms += 5000;
	assert_false(gw_site_allows(&f->s));
}

/*
 * Garbage is a sick site even when it came with HTTP 200: a job's calls
 * answered with garbage must not keep the breaker closed between the
 * poller's failures (the adapter says SITE_ERR_PROTOCOL, not transient).
 */
static void test_garbage_counts_as_failure(void **state)
{
	struct fixture *f = *state;

	record(&f->s, SITE_ERR_PROTOCOL, "unreadable slurmrestd answer");
	record(&f->s, SITE_ERR_UNAVAILABLE, "poll: HTTP/0.9");
	record(&f->s, SITE_ERR_PROTOCOL, "unreadable slurmrestd answer");
	assert_int_equal(f->s.breaker, BREAKER_OPEN);
	assert_string_equal(f->s.last_error, "unreadable slurmrestd answer");
}

/* Answers about the request itself mean the site works. */
static void test_answers_close_it(void **state)
{
	static const enum site_err answers[] = {
	    SITE_ERR_REJECTED,
	    SITE_ERR_NOT_FOUND,
	    SITE_ERR_DENIED,
	    SITE_ERR_AUTH,
	};
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		record(&f->s, SITE_ERR_TIMEOUT, "timed out");
		record(&f->s, SITE_ERR_TIMEOUT, "timed out");
		record(&f->s, answers[i], "an answer");
		assert_int_equal(f->s.consecutive_failures, 0);
		record(&f->s, SITE_ERR_TIMEOUT, "timed out");
		assert_int_equal(f->s.breaker, BREAKER_CLOSED);
		record(&f->s, SITE_ERR_OK, "");
	}
}

/* An aborted call or a local error says nothing about the site. */
static void test_local_results_do_not_count(void **state)
{
	struct fixture *f = *state;

	record(&f->s, SITE_ERR_TIMEOUT, "timed out");
	record(&f->s, SITE_ERR_TIMEOUT, "timed out");
	record(&f->s, SITE_ERR_CANCELLED, "aborted");
	record(&f->s, SITE_ERR_INTERNAL, "out of memory");
	assert_int_equal(f->s.consecutive_failures, 2);
	assert_int_equal(f->s.breaker, BREAKER_CLOSED);
	assert_string_equal(f->s.last_error, "timed out");
	record(&f->s, SITE_ERR_TIMEOUT, "timed out");
	assert_int_equal(f->s.breaker, BREAKER_OPEN);
}

/*
 * jwt-user's queue estimate: the configured one until the site's jobs
 * wait longer; a longer wait counts at once, shorter ones fade it.
 */
static void test_queue_estimate(void **state)
{
	struct fixture *f = *state;
	int i;

	f->cfg.queue_estimate_s = 600;
	assert_int_equal(gw_site_queue_estimate(&f->s), 600);
	gw_site_queue_wait(&f->s, 30);
	assert_int_equal(gw_site_queue_estimate(&f->s), 600);
	gw_site_queue_wait(&f->s, 3600); /* a busy queue: at once */
	assert_int_equal(gw_site_queue_estimate(&f->s), 3600);
	for (i = 0; i < 10; i++)
		gw_site_queue_wait(&f->s, 60);
	assert_true(gw_site_queue_estimate(&f->s) < 3600);
	assert_true(gw_site_queue_estimate(&f->s) > 600);
	for (i = 0; i < 50; i++)
		gw_site_queue_wait(&f->s, 60);
	assert_int_equal(gw_site_queue_estimate(&f->s), 600);
	assert_int_equal(f->s.queue_waits, 62);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_opens_after_three_failures, setup),
	    cmocka_unit_test_setup(test_failed_trial_reopens, setup),
	    cmocka_unit_test_setup(test_garbage_counts_as_failure, setup),
	    cmocka_unit_test_setup(test_answers_close_it, setup),
	    cmocka_unit_test_setup(test_local_results_do_not_count, setup),
	    cmocka_unit_test_setup(test_queue_estimate, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
