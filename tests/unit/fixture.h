/*
 * fixture.h: set-up and tear-down pieces the unit tests share: turning a
 * loop until a flag, checking a loop was left with nothing live, removing
 * a temp directory.  Header-only (static inline), like testkeys.h, so the
 * Makefile links nothing more.  Include it after <cmocka.h>; a test that
 * needs longer than RUN_LIMIT_MS defines its own first.
 */
#ifndef TIERGATE_TEST_FIXTURE_H
#define TIERGATE_TEST_FIXTURE_H

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "loop.h"
#include "task.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#ifndef RUN_LIMIT_MS
#define RUN_LIMIT_MS 30000
#endif

/* Turn the loop until *done; a hang fails the test instead of the run. */
static inline void run_until(struct loop *l, const bool *done)
{
	uint64_t start = loop_clock_ms();

	while (!*done) {
		assert_true(loop_run_once(l, 50) >= 0);
		if (loop_clock_ms() - start > RUN_LIMIT_MS)
			fail_msg("loop did not reach its done flag in %d ms",
				 RUN_LIMIT_MS);
	}
}

/* The same for any condition; a macro so the message can name it. */
#define RUN_UNTIL(l, cond)                                                     \
	do {                                                                   \
		uint64_t ru_start_ = loop_clock_ms();                          \
		while (!(cond)) {                                              \
			assert_true(loop_run_once((l), 20) >= 0);              \
			if (loop_clock_ms() - ru_start_ > RUN_LIMIT_MS)        \
				fail_msg("timed out waiting for: %s", #cond);  \
		}                                                              \
	} while (0)

/*
 * After a test: one turn for the end-of-turn frees, then no task, io
 * watch, timer, deferred call or hold may be left.
 */
static inline void assert_loop_quiet(struct loop *l)
{
	struct loop_stats st;

	loop_run_once(l, 0);
	assert_int_equal(task_count_live(l), 0);
	assert_int_equal(task_count_ended_unreleased(l), 0);
	loop_stats(l, &st);
	assert_int_equal(st.live_io, 0);
	assert_int_equal(st.live_timers, 0);
	assert_int_equal(st.pending_deferred, 0);
	assert_int_equal(st.holds, 0);
}

static inline int rm_rf_cb_(const char *p, const struct stat *sb, int flag,
			    struct FTW *ftw)
{
	return remove(p);
}

/* rm -rf dir (a test's mkdtemp directory): 0 or -1. */
static inline int rm_rf(const char *dir)
{
	return nftw(dir, rm_rf_cb_, 16, FTW_DEPTH | FTW_PHYS) ? -1 : 0;
}

#endif
