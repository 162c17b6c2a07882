/*
 * loop.h: tiergated's event loop, one thread, built on poll(2).
 *
 * A turn (loop_run_once) goes like redis ae.c and libuv:
 *
 *   1. RUN_DEFERRED  run at most `budget` deferred callbacks (task steps are
 *                    deferred callbacks), in FIFO order
 *   2. POLL          poll() every watched fd; the timeout is 0 while
 *                    deferred work or closings are pending, else the
 *                    earliest timer (capped by max_wait_ms), else infinite
 *   3. IO            call the callback of every ready fd watch
 *   4. TIMERS        call the callback of every expired timer
 *   5. CLOSING       free what was closed during the turn (io watches,
 *                    signals, asyncs, loop_close_at_end/loop_free_at_end)
 *
 * Everything here is loop-thread only, except loop_async_send() which any
 * thread may call.  No function of this file blocks.
 *
 * Object life cycle: an object closed during a turn stays in memory until
 * the CLOSING phase of that turn, so a pointer taken earlier in the turn is
 * never dangling; a callback of a closed object is never called again.
 *
 * Lag: the loop measures (a) the interval between the starts of two turns
 * when the first one left work pending (the loop could not sleep: this is
 * how long ready work waits), and (b) the duration of every single
 * callback; both go into log-linear histograms over a sliding window
 * (p50/p99/max) exported by loop_stats().
 */
#ifndef TIERGATE_LOOP_H
#define TIERGATE_LOOP_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* Phases of a turn, for loop_debug_str and the logs. */
#define LOOP_PHASES(X)                                                         \
	X(IDLE)                                                                \
	X(RUN_DEFERRED)                                                        \
	X(POLL)                                                                \
	X(IO)                                                                  \
	X(TIMERS)                                                              \
	X(CLOSING)

enum loop_phase {
#define LOOP_PHASE_ENUM_(name) LOOP_PHASE_##name,
	LOOP_PHASES(LOOP_PHASE_ENUM_)
#undef LOOP_PHASE_ENUM_
	    LOOP_PHASE_COUNT_
};
const char *loop_phase_name(enum loop_phase p);

#define LOOP_DEFAULT_BUDGET 64
#define LOOP_DEFAULT_STATS_WINDOW_MS 60000

/*
 * A new loop, or NULL with errno set.  Loop-thread only from here on: the
 * thread that calls loop_run is "the loop thread".
 */
struct loop *loop_new(void);
/*
 * Runs what is still scheduled to close, then frees the loop.  Live io
 * watches, armed timers, pending deferred work and live tasks are logged
 * (log_warn) and leaked, never freed under their owner's feet: close them
 * and run the loop (until task_count_live() == 0) first.  Restores the
 * signal mask changed by loop_signal_add.
 */
void loop_free(struct loop *l);

/*
 * Run turns until loop_stop(), or, when loop_set_exit_when_idle(l, true),
 * until nothing is live (no io watch, no armed timer, no deferred work, no
 * hold).  Returns 0, or a negative errno when poll() fails other than EINTR.
 */
int loop_run(struct loop *l);
/*
 * One turn; poll() waits at most max_wait_ms (-1: as long as the next
 * timer says).  Returns 1 when something is still live, 0 when idle, or a
 * negative errno.  For tests and for embedding.
 */
int loop_run_once(struct loop *l, int max_wait_ms);
/* loop_run returns at the end of the current turn. */
void loop_stop(struct loop *l);
void loop_set_exit_when_idle(struct loop *l, bool on);
/*
 * Deferred callbacks run per turn (>= 1, default LOOP_DEFAULT_BUDGET).
 * The rest wait for the next turn; poll() does not sleep meanwhile.
 */
void loop_set_budget(struct loop *l, unsigned budget);
/*
 * Keep loop_run (exit_when_idle) alive while something not visible to the
 * loop is in flight, e.g. a job on a worker thread.  Loop thread only.
 */
void loop_hold(struct loop *l);
void loop_release(struct loop *l);

/* Monotonic milliseconds (CLOCK_MONOTONIC), read now. */
uint64_t loop_clock_ms(void);
/* Monotonic microseconds, read now. */
uint64_t loop_clock_us(void);
/* The loop's idea of now: updated at each phase, cheap. */
uint64_t loop_now_ms(const struct loop *l);
/* Turns completed so far. */
uint64_t loop_turn(const struct loop *l);

/* ------------------------------------------------------------------ fds */

struct loop_io;
/*
 * revents: POLLIN/POLLOUT as asked, and POLLERR/POLLHUP/POLLNVAL always.
 * The callback may close this or any other watch, add watches, start and
 * stop timers.
 */
typedef void loop_io_cb(struct loop_io *io, int fd, unsigned revents,
			void *arg);

/*
 * Watch fd for `events` (POLLIN|POLLOUT; 0 watches nothing but keeps the
 * watch).  The fd stays the caller's: it is never closed by the loop, and
 * must stay open until loop_io_close.  Several watches on one fd are
 * allowed.  Returns NULL with errno set (EINVAL, ENOMEM).
 */
struct loop_io *loop_io_add(struct loop *l, int fd, unsigned events,
			    loop_io_cb *cb, void *arg);
/* Change interest; 0, or -EINVAL on a closed watch. */
int loop_io_modify(struct loop_io *io, unsigned events);
unsigned loop_io_events(const struct loop_io *io);
int loop_io_fd(const struct loop_io *io);
/*
 * Stop watching.  The callback is never called again; the memory is freed
 * at the end of the turn (or of the next turn when called outside one).
 * NULL is ignored.  The caller may close(fd) right after.
 */
void loop_io_close(struct loop_io *io);

/* --------------------------------------------------------------- timers */

struct loop_timer;
typedef void loop_timer_cb(struct loop_timer *t, void *arg);

/*
 * A one-shot monotonic timer, embedded in the caller's object (no
 * allocation: starting a timer cannot fail).  Zero it or loop_timer_init()
 * it before first use; it must be stopped before its memory goes away.
 * Fields are private.
 */
struct loop_timer {
	struct loop *loop;
	loop_timer_cb *cb;
	void *arg;
	uint64_t due_ms;
	uint64_t seq; /* FIFO among equal deadlines */
	/* pairing heap links */
	struct loop_timer *child, *sibling, *prev;
	bool armed;
};

void loop_timer_init(struct loop_timer *t);
/*
 * (Re-)arm t to call cb(t, arg) once, `ms` after now (0: at the timer phase
 * of this or the next turn, never recursively).  Re-arming an armed timer
 * moves it.  Timers with the same deadline fire in the order they were
 * started.  A timer started from a timer callback never fires in the same
 * phase, so a 0 ms re-arm cannot spin.  This is also the deadline hook for
 * libcurl's CURLMOPT_TIMERFUNCTION (timeout_ms -1 = loop_timer_stop).
 */
void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t ms,
		      loop_timer_cb *cb, void *arg);
/* Disarm; a stopped timer never fires.  Stopping a stopped timer is fine. */
void loop_timer_stop(struct loop_timer *t);
bool loop_timer_armed(const struct loop_timer *t);
/* Milliseconds until t fires (0 if overdue), or -1 when not armed. */
int64_t loop_timer_remaining_ms(const struct loop_timer *t);

/* ------------------------------------------------------ deferred work */

struct loop_defer;
typedef void loop_defer_cb(struct loop_defer *d, void *arg);

/* Embedded in the caller's object; zero it before first use. Private. */
struct loop_defer {
	struct loop_defer *prev, *next;
	loop_defer_cb *cb;
	void *arg;
	bool queued;
};

/*
 * Run cb(d, arg) at the RUN_DEFERRED phase of the next turn (or of a later
 * one when the budget is spent).  Deferring an already queued d only
 * updates cb/arg: it runs once (this is how wakes coalesce).  Cannot fail.
 */
void loop_defer(struct loop *l, struct loop_defer *d, loop_defer_cb *cb,
		void *arg);
/* Unqueue d if queued; it will not run. */
void loop_defer_cancel(struct loop *l, struct loop_defer *d);
bool loop_defer_queued(const struct loop_defer *d);

/* ---------------------------------------------- end-of-turn freeing */

/* Embedded in an object that must be freed at the end of the turn. */
struct loop_closing {
	struct loop_closing *next;
	void (*fn)(struct loop_closing *c);
	bool queued;
};

/*
 * Call fn(c) in the CLOSING phase of this turn (or of the next one when
 * called outside a turn).  fn usually frees the object containing c.  A
 * closing function may schedule more closings: they run in the same
 * phase.  Cannot fail; queueing a queued c is a no-op.
 */
void loop_close_at_end(struct loop *l, struct loop_closing *c,
		       void (*fn)(struct loop_closing *c));
/*
 * free_fn(ptr) in the CLOSING phase.  Takes ownership of ptr in every
 * case: if the small bookkeeping allocation fails the object is leaked
 * (and logged), never freed early.
 */
void loop_free_at_end(struct loop *l, void *ptr, void (*free_fn)(void *));

/* -------------------------------------------------------------- signals */

struct loop_signal;
typedef void loop_signal_cb(struct loop_signal *s, int signo, void *arg);

/*
 * Run cb in the loop when signo arrives (signalfd).  The signal is blocked
 * in the calling thread; threads created afterwards inherit the mask (the
 * worker pool blocks every signal in its threads), so the signalfd sees
 * process-directed signals.  Several handlers per signal are allowed.
 * Returns NULL with errno set.
 */
struct loop_signal *loop_signal_add(struct loop *l, int signo,
				    loop_signal_cb *cb, void *arg);
/* Remove a handler (freed at end of turn); the signal stays blocked. */
void loop_signal_del(struct loop_signal *s);

/* ------------------------------------------------------- cross-thread */

struct loop_async;
typedef void loop_async_cb(struct loop_async *a, void *arg);

/*
 * A wakeup that any thread can send (eventfd).  Sends coalesce: cb runs at
 * least once after each send, in the IO phase.  Returns NULL + errno.
 */
struct loop_async *loop_async_new(struct loop *l, loop_async_cb *cb, void *arg);
/* Any thread.  Lock-free; at most one write(2) per coalesced batch. */
void loop_async_send(struct loop_async *a);
/*
 * Loop thread.  No thread may send after (or while) this is called; freed
 * at end of turn.
 */
void loop_async_close(struct loop_async *a);

/* ------------------------------------------------------------ slots */

/*
 * Per-loop pointers for the layers above (the task registry) so that this
 * file knows nothing of them.  free_fn runs in loop_free.
 */
enum loop_slot {
	LOOP_SLOT_TASKS,
	LOOP_SLOT_APP,
	LOOP_SLOT_COUNT_,
};
void *loop_slot_get(const struct loop *l, enum loop_slot slot);
void loop_slot_set(struct loop *l, enum loop_slot slot, void *ptr,
		   void (*free_fn)(void *ptr));

/* ------------------------------------------------------ introspection */

struct loop_lag_stats {
	uint64_t count;	 /* samples in the window */
	uint64_t p50_us; /* upper bound of the histogram bucket (~20 %) */
	uint64_t p99_us;
	uint64_t max_us; /* exact, over the window */
};

struct loop_stats {
	uint64_t turns;
	uint64_t callbacks; /* io, timer, deferred, signal, async */
	uint64_t deferred_run;
	uint64_t budget_exhausted; /* turns that left deferred work pending */
	unsigned live_io;	   /* user watches (not signal/async ones) */
	unsigned live_timers;	   /* armed timers */
	unsigned pending_deferred;
	unsigned holds;
	uint64_t window_ms;	   /* the window below spans 1-2 of these */
	struct loop_lag_stats lag; /* turn interval while work pending */
	struct loop_lag_stats callback; /* one callback / task step */
	uint64_t callback_max_ever_us;
	uint64_t lag_max_ever_us;
	uint64_t slow_steps; /* callbacks that ran slow_step or longer */
};

void loop_stats(struct loop *l, struct loop_stats *st);
/* Zero the histograms and max-ever values (counters stay). */
void loop_stats_reset(struct loop *l);
/* Histogram window, default LOOP_DEFAULT_STATS_WINDOW_MS. */
void loop_set_stats_window(struct loop *l, uint64_t window_ms);
/*
 * A callback (task step) that runs `us` or longer is counted and logged as
 * a warning that names it ("loop: slow step: timer callback
 * tiergated+0x1c550 ran 62.3 ms": addr2line -f -e tiergated 0x1c550), at
 * most one line a second.  Default LOOP_DEFAULT_SLOW_STEP_US; 0: never.
 */
#define LOOP_DEFAULT_SLOW_STEP_US (50 * 1000)
void loop_set_slow_step(struct loop *l, uint64_t us);
/*
 * Name the work the running callback does, for that warning, when the
 * callback is a dispatcher (tasks' steps all run from one deferred
 * callback): "(task submit#12)".  kind must outlive the callback (a
 * string constant); two stores, cleared after each callback.
 */
void loop_step_label(struct loop *l, const char *kind, uint64_t id);

/* True when no io, timer, deferred work or hold is live. */
bool loop_idle(const struct loop *l);

/*
 * "loop turn=N phase=POLL io=3 timers=2 deferred=0 holds=0 next_timer=15ms
 * budget=64 lag_max=1200us cb_max=800us".  Returns buf.
 */
const char *loop_debug_str(struct loop *l, char *buf, size_t len);

#endif
