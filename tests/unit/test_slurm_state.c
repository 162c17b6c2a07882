/*
 * test_slurm_state.c: the job-state vocabulary and the Slurm mapping,
 * table-driven.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "slurm_state.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void test_vocabulary(void **state)
{
	/* docs/api.md, in order; final ones marked */
	static const struct {
		const char *name;
		bool final;
	} want[] = {
	    {"accepted", false}, {"submitting", false}, {"pending", false},
	    {"running", false},	 {"completing", false}, {"completed", true},
	    {"failed", true},	 {"cancelled", true},	{"timeout", true},
	    {"rejected", true},	 {"unknown", true},
	};
	size_t i;

	assert_int_equal(TG_JOB_STATE_COUNT_, ARRAY_SIZE(want));
	for (i = 0; i < ARRAY_SIZE(want); i++) {
		enum tg_job_state s;

		assert_string_equal(tg_job_state_name((enum tg_job_state)i),
				    want[i].name);
		assert_int_equal(tg_job_state_final((enum tg_job_state)i),
				 want[i].final);
		assert_int_equal(tg_job_state_from_name(want[i].name, &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(tg_job_state_name(TG_JOB_STATE_COUNT_), "?");
	assert_false(tg_job_state_final(TG_JOB_STATE_COUNT_));
	{
		enum tg_job_state s = TG_JOB_PENDING;

		assert_int_equal(tg_job_state_from_name("RUNNING", &s),
				 -EINVAL);
		assert_int_equal(tg_job_state_from_name(NULL, &s), -EINVAL);
		assert_int_equal(s, TG_JOB_PENDING);
	}
}

static void test_slurm_mapping(void **state)
{
	static const struct {
		const char *slurm;
		enum tg_job_state tg;
	} cases[] = {
	    {"PENDING", TG_JOB_PENDING},
	    {"RUNNING", TG_JOB_RUNNING},
	    {"SUSPENDED", TG_JOB_RUNNING},
	    {"COMPLETING", TG_JOB_COMPLETING},
	    {"STAGE_OUT", TG_JOB_COMPLETING},
	    {"COMPLETED", TG_JOB_COMPLETED},
	    {"FAILED", TG_JOB_FAILED},
	    {"NODE_FAIL", TG_JOB_FAILED},
	    {"BOOT_FAIL", TG_JOB_FAILED},
	    {"OUT_OF_MEMORY", TG_JOB_FAILED},
	    {"PREEMPTED", TG_JOB_FAILED},
	    {"CANCELLED", TG_JOB_CANCELLED},
	    {"TIMEOUT", TG_JOB_TIMEOUT},
	    {"DEADLINE", TG_JOB_TIMEOUT},
	    {"CONFIGURING", TG_JOB_PENDING},
	    {"REQUEUED", TG_JOB_PENDING},
	    {"REQUEUE_HOLD", TG_JOB_PENDING},
	    {"REQUEUE_FED", TG_JOB_PENDING},
	    {"SPECIAL_EXIT", TG_JOB_PENDING},
	    {"RESV_DEL_HOLD", TG_JOB_PENDING},
	    {"RESIZING", TG_JOB_RUNNING},
	    {"SIGNALING", TG_JOB_RUNNING},
	    {"STOPPED", TG_JOB_RUNNING},
	    {"REVOKED", TG_JOB_UNKNOWN},
	    /* not Slurm's: never guessed */
	    {"running", TG_JOB_UNKNOWN},
	    {"", TG_JOB_UNKNOWN},
	    {"BRAND_NEW_STATE", TG_JOB_UNKNOWN},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		enum slurm_state ss = slurm_state_parse(cases[i].slurm);
		struct slurm_status st;

		if (slurm_state_to_tg(ss) != cases[i].tg)
			fail_msg("%s -> %s, want %s", cases[i].slurm,
				 tg_job_state_name(slurm_state_to_tg(ss)),
				 tg_job_state_name(cases[i].tg));
		if (cases[i].tg != TG_JOB_UNKNOWN ||
		    strcmp(cases[i].slurm, "REVOKED") == 0)
			assert_string_equal(slurm_state_name(ss),
					    cases[i].slurm);
		slurm_status_set(&st, cases[i].slurm, "None", true, 0);
		assert_int_equal(st.state, cases[i].tg);
		assert_string_equal(st.slurm_name, cases[i].slurm);
		assert_string_equal(st.reason, "None");
	}
	assert_int_equal(slurm_state_parse(NULL), SLURM_STATE_UNRECOGNIZED);
	assert_string_equal(slurm_state_name(SLURM_STATE_UNRECOGNIZED),
			    "UNRECOGNIZED");
	assert_string_equal(slurm_state_name(SLURM_STATE_COUNT_), "?");
	assert_int_equal(slurm_state_to_tg(SLURM_STATE_COUNT_), TG_JOB_UNKNOWN);
}

static void test_exit_decode(void **state)
{
	static const struct {
		int64_t raw;
		bool known;
		int code, signal;
		bool core;
	} cases[] = {
	    {0, true, 0, 0, false},    /* exit 0 */
	    {768, true, 3, 0, false},  /* exit 3 (job-failed.json) */
	    {256, true, 1, 0, false},  /* exit 1 (SPANK task_init fail) */
	    {2048, true, 8, 0, false}, /* exit 8 (exec format error) */
	    {0xff00, true, 255, 0, false},
	    {15, true, -1, 15, false},	   /* SIGTERM (job-cancelled.json) */
	    {9, true, -1, 9, false},	   /* SIGKILL */
	    {0x8b, true, -1, 11, true},	   /* SIGSEGV + core */
	    {0x137f, false, -1, 0, false}, /* stopped: not an end */
	    {-1, false, -1, 0, false},
	    {0xfffffffe, false, -1, 0, false}, /* NO_VAL */
	    {0x10000, false, -1, 0, false},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct slurm_exit ex;

		slurm_exit_decode(cases[i].raw, &ex);
		if (ex.known != cases[i].known || ex.code != cases[i].code ||
		    ex.signal != cases[i].signal ||
		    ex.core_dumped != cases[i].core)
			fail_msg("raw %lld: known=%d code=%d signal=%d core=%d",
				 (long long)cases[i].raw, ex.known, ex.code,
				 ex.signal, ex.core_dumped);
	}
}

static void test_status(void **state)
{
	struct slurm_status st;
	char buf[128];

	/* exit codes are decoded only once final */
	slurm_status_set(&st, "RUNNING", "None", true, 768);
	assert_int_equal(st.state, TG_JOB_RUNNING);
	assert_false(st.exit.known);
	assert_string_equal(slurm_status_debug_str(&st, buf, sizeof(buf)),
			    "running (RUNNING reason=None)");

	slurm_status_set(&st, "FAILED", "NonZeroExitCode", true, 768);
	assert_int_equal(st.state, TG_JOB_FAILED);
	assert_true(st.exit.known);
	assert_int_equal(st.exit.code, 3);
	assert_string_equal(slurm_status_debug_str(&st, buf, sizeof(buf)),
			    "failed (FAILED reason=NonZeroExitCode exit=3)");

	slurm_status_set(&st, "CANCELLED", "None", true, 15);
	assert_int_equal(st.state, TG_JOB_CANCELLED);
	assert_int_equal(st.exit.signal, 15);
	assert_int_equal(st.exit.code, -1);
	assert_string_equal(slurm_status_debug_str(&st, buf, sizeof(buf)),
			    "cancelled (CANCELLED reason=None signal=15)");

	slurm_status_set(&st, "COMPLETED", NULL, false, 0);
	assert_int_equal(st.state, TG_JOB_COMPLETED);
	assert_false(st.exit.known); /* not reported */
	assert_string_equal(st.reason, "");

	/* an unknown string: unknown, kept verbatim, no exit guessed */
	slurm_status_set(&st, "WEIRD", "Something", true, 0);
	assert_int_equal(st.state, TG_JOB_UNKNOWN);
	assert_string_equal(st.slurm_name, "WEIRD");
	assert_false(st.exit.known);

	slurm_status_set(&st, NULL, NULL, false, 0);
	assert_int_equal(st.state, TG_JOB_UNKNOWN);
	assert_string_equal(st.slurm_name, "");

	/* purged after MinJobAge: unknown, never completed or failed */
	slurm_status_missing(&st);
	assert_int_equal(st.state, TG_JOB_UNKNOWN);
	assert_true(st.missing);
	assert_false(st.exit.known);
	assert_string_equal(slurm_status_debug_str(&st, buf, sizeof(buf)),
			    "unknown (- reason=purged missing)");

	/* long strings are truncated, not overflowed */
	slurm_status_set(&st, "PENDING",
			 "A_reason_that_is_much_longer_than_the_buffer_of_"
			 "sixty_four_bytes_we_keep_for_it",
			 false, 0);
	assert_int_equal(strlen(st.reason), SLURM_STATUS_REASON_MAX - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vocabulary),
	    cmocka_unit_test(test_slurm_mapping),
	    cmocka_unit_test(test_exit_decode),
	    cmocka_unit_test(test_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
