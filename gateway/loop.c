/*
 * loop.c: the poll(2) event loop (see loop.h for the shape of a turn).
 *
 * fd watches live in two parallel arrays (struct pollfd[] for poll, and
 * struct loop_io *[] for us) indexed by io->idx.  A watch closed during a
 * turn only gets pfd.fd = -1 (poll ignores it) and is swap-removed in the
 * CLOSING phase, so indices never move while the IO phase walks them.
 *
 * Timers are an intrusive pairing heap ordered by (due_ms, seq): starting
 * one allocates nothing and cannot fail; insert O(1), pop and arbitrary
 * removal O(log n) amortized.
 */
#include "loop.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* log-linear histogram: 4 sub-buckets per power of two (~20 % error) */
#define HIST_SUB_BITS 2
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 40
#define HIST_N (HIST_SUB + (HIST_MAX_EXP - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint32_t b[HIST_N];
	uint64_t count;
	uint64_t max;
};

struct loop_io {
	struct loop *loop;
	loop_io_cb *cb;
	void *arg;
	int fd;
	unsigned events;
	size_t idx;
	bool closed;
	bool internal; /* signalfd / eventfd: not counted as live */
	struct loop_closing closing;
};

struct loop_signal {
	struct loop *loop;
	struct loop_signal *next;
	loop_signal_cb *cb;
	void *arg;
	int signo;
	bool closed;
	struct loop_closing closing;
};

struct loop_async {
	struct loop *loop;
	struct loop_async *next;
	loop_async_cb *cb;
	void *arg;
	atomic_int pending;
	bool closed;
	struct loop_closing closing;
};

struct loop_free_node {
	struct loop_closing closing;
	void *ptr;
	void (*free_fn)(void *);
};

struct loop {
	uint64_t now_ms;
	uint64_t turns;
	enum loop_phase phase;
	bool stop;
	bool exit_when_idle;
	bool in_turn;
	unsigned budget;
	unsigned holds;

	/* fd watches */
	struct pollfd *pfds;
	struct loop_io **ios;
	size_t n_io, cap_io;
	unsigned live_io;

	/* timers */
	struct loop_timer *timer_root;
	unsigned n_timers;
	uint64_t timer_seq;

	/* deferred work, FIFO */
	struct loop_defer *dhead, *dtail;
	unsigned n_deferred;

	/* end-of-turn closings, FIFO */
	struct loop_closing *chead, *ctail;

	/* signals */
	int sigfd;
	struct loop_io *sigio;
	sigset_t sigmask;	/* signals in the signalfd */
	sigset_t blocked_by_us; /* to unblock at loop_free */
	struct loop_signal *signals;

	/* cross-thread wakeups */
	int evfd;
	struct loop_io *evio;
	struct loop_async *asyncs;

	void *slots[LOOP_SLOT_COUNT_];
	void (*slot_free[LOOP_SLOT_COUNT_])(void *);

	/* stats */
	uint64_t n_callbacks, n_deferred_run, n_budget_exhausted;
	uint64_t window_ms, window_start_us;
	struct hist lag[2], cb[2]; /* [0] current window, [1] previous */
	uint64_t lag_max_ever, cb_max_ever;
	uint64_t slow_step_us, n_slow_steps, slow_unlogged;
	uint64_t slow_logged_ms; /* when the last slow step was logged */
	const char *label_kind;	 /* loop_step_label of the running callback */
	uint64_t label_id;
	uint64_t prev_turn_start_us;
	bool prev_turn_busy;
};

static const char *const loop_phase_names[] = {
#define LOOP_PHASE_NAME_(name) #name,
    LOOP_PHASES(LOOP_PHASE_NAME_)
#undef LOOP_PHASE_NAME_
};

const char *loop_phase_name(enum loop_phase p)
{
	if ((unsigned)p >= LOOP_PHASE_COUNT_)
		return "?";
	return loop_phase_names[p];
}

/* ---------------------------------------------------------------- clock */

uint64_t loop_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t loop_clock_ms(void)
{
	return loop_clock_us() / 1000u;
}

uint64_t loop_now_ms(const struct loop *l)
{
	return l->now_ms;
}

uint64_t loop_turn(const struct loop *l)
{
	return l->turns;
}

/* ----------------------------------------------------------- histograms */

static unsigned hist_idx(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	if (e > HIST_MAX_EXP)
		return HIST_N - 1;
	return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB +
	       (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* Largest value that falls into bucket i. */
static uint64_t hist_upper(unsigned i)
{
	unsigned e, sub;

	if (i < HIST_SUB)
		return i;
	e = (i - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
	sub = (i - HIST_SUB) % HIST_SUB;
	return (((uint64_t)HIST_SUB + sub + 1) << (e - HIST_SUB_BITS)) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_idx(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

static void hist_summary(const struct hist *cur, const struct hist *prev,
			 struct loop_lag_stats *out)
{
	uint64_t count = cur->count + prev->count;
	uint64_t max = cur->max > prev->max ? cur->max : prev->max;
	uint64_t want50, want99, seen = 0;
	bool got50 = false;
	unsigned i;

	memset(out, 0, sizeof(*out));
	out->count = count;
	out->max_us = max;
	if (count == 0)
		return;
	want50 = (count * 50 + 99) / 100;
	want99 = (count * 99 + 99) / 100;
	for (i = 0; i < HIST_N; i++) {
		seen += (uint64_t)cur->b[i] + prev->b[i];
		if (!got50 && seen >= want50) {
			out->p50_us = hist_upper(i) < max ? hist_upper(i) : max;
			got50 = true;
		}
		if (seen >= want99) {
			out->p99_us = hist_upper(i) < max ? hist_upper(i) : max;
			break;
		}
	}
}

static void stats_rotate(struct loop *l, uint64_t now_us)
{
	uint64_t elapsed = now_us - l->window_start_us;

	if (elapsed < l->window_ms * 1000u)
		return;
	if (elapsed >= 2 * l->window_ms * 1000u) {
		memset(&l->lag[1], 0, sizeof(l->lag[1]));
		memset(&l->cb[1], 0, sizeof(l->cb[1]));
	} else {
		l->lag[1] = l->lag[0];
		l->cb[1] = l->cb[0];
	}
	memset(&l->lag[0], 0, sizeof(l->lag[0]));
	memset(&l->cb[0], 0, sizeof(l->cb[0]));
	l->window_start_us = now_us;
}

/* "name" of an exported function, else "file+0xOFFSET" for addr2line. */
static void callback_name(const void *fn, char *buf, size_t len)
{
	Dl_info di;
	const char *file;

	if (!dladdr(fn, &di) || !di.dli_fname) {
		snprintf(buf, len, "%p", fn);
		return;
	}
	if (di.dli_sname && di.dli_saddr == fn) {
		snprintf(buf, len, "%s", di.dli_sname);
		return;
	}
	file = strrchr(di.dli_fname, '/');
	snprintf(
	    buf, len, "%s+0x%lx", file ? file + 1 : di.dli_fname,
	    (unsigned long)((const char *)fn - (const char *)di.dli_fbase));
}

/* A step that held the loop up: say which, so the lag has a culprit. */
static void slow_step(struct loop *l, uint64_t d_us, const char *kind,
		      const void *fn)
{
	char name[160];

	l->n_slow_steps++;
	if (l->slow_logged_ms && l->now_ms < l->slow_logged_ms + 1000) {
		l->slow_unlogged++;
		return;
	}
	callback_name(fn, name, sizeof(name));
	if (l->label_kind) {
		size_t o = strlen(name);

		snprintf(name + o, sizeof(name) - o, " (%s#%" PRIu64 ")",
			 l->label_kind, l->label_id);
	}
	log_warn("loop: slow step: %s callback %s ran %.1f ms (slow_step "
		 "%.1f ms; %" PRIu64 " more since the last line)",
		 kind, name, d_us / 1000.0, l->slow_step_us / 1000.0,
		 l->slow_unlogged);
	l->slow_logged_ms = l->now_ms ? l->now_ms : 1;
	l->slow_unlogged = 0;
}

/* kind and fn name the callback for slow_step. */
static void record_callback(struct loop *l, uint64_t t0_us, const char *kind,
			    const void *fn)
{
	uint64_t d = loop_clock_us() - t0_us;

	hist_add(&l->cb[0], d);
	if (d > l->cb_max_ever)
		l->cb_max_ever = d;
	l->n_callbacks++;
	if (l->slow_step_us && d >= l->slow_step_us)
		slow_step(l, d, kind, fn);
	l->label_kind = NULL;
}

/* --------------------------------------------------------------- create */

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->budget = LOOP_DEFAULT_BUDGET;
	l->slow_step_us = LOOP_DEFAULT_SLOW_STEP_US;
	l->sigfd = -1;
	l->evfd = -1;
	sigemptyset(&l->sigmask);
	sigemptyset(&l->blocked_by_us);
	l->window_ms = LOOP_DEFAULT_STATS_WINDOW_MS;
	l->window_start_us = loop_clock_us();
	l->now_ms = l->window_start_us / 1000u;
	l->phase = LOOP_PHASE_IDLE;
	return l;
}

static void run_closing(struct loop *l)
{
	struct loop_closing *c;

	while ((c = l->chead)) {
		l->chead = c->next;
		if (!l->chead)
			l->ctail = NULL;
		c->next = NULL;
		c->queued = false;
		c->fn(c);
	}
}

static void io_remove(struct loop *l, struct loop_io *io)
{
	size_t last = l->n_io - 1;

	if (io->idx != last) {
		l->ios[io->idx] = l->ios[last];
		l->pfds[io->idx] = l->pfds[last];
		l->ios[io->idx]->idx = io->idx;
	}
	l->n_io--;
}

void loop_free(struct loop *l)
{
	char buf[256];
	size_t i;
	int s;

	if (!l)
		return;
	run_closing(l);
	for (s = 0; s < LOOP_SLOT_COUNT_; s++) {
		if (l->slot_free[s])
			l->slot_free[s](l->slots[s]);
		l->slots[s] = NULL;
		l->slot_free[s] = NULL;
	}
	run_closing(l);
	if (!loop_idle(l))
		log_warn("loop_free with live handles: %s",
			 loop_debug_str(l, buf, sizeof(buf)));

	while (l->signals) {
		struct loop_signal *sig = l->signals;

		l->signals = sig->next;
		free(sig);
	}
	while (l->asyncs) {
		struct loop_async *a = l->asyncs;

		l->asyncs = a->next;
		free(a);
	}
	if (l->sigfd >= 0) {
		struct signalfd_siginfo si;

		/* drop what is pending, or unblocking would deliver it */
		while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			;
		close(l->sigfd);
		pthread_sigmask(SIG_UNBLOCK, &l->blocked_by_us, NULL);
	}
	if (l->evfd >= 0)
		close(l->evfd);
	for (i = 0; i < l->n_io; i++)
		free(l->ios[i]);
	/* timers and deferred entries are embedded in their owners: unlink */
	while (l->dhead) {
		struct loop_defer *d = l->dhead;

		l->dhead = d->next;
		d->next = d->prev = NULL;
		d->queued = false;
	}
	free(l->pfds);
	free(l->ios);
	free(l);
}

/* ---------------------------------------------------------------- knobs */

void loop_stop(struct loop *l)
{
	l->stop = true;
}

void loop_set_exit_when_idle(struct loop *l, bool on)
{
	l->exit_when_idle = on;
}

void loop_set_budget(struct loop *l, unsigned budget)
{
	l->budget = budget ? budget : 1;
}

void loop_hold(struct loop *l)
{
	l->holds++;
}

void loop_release(struct loop *l)
{
	if (l->holds == 0) {
		log_err("loop_release without loop_hold");
		return;
	}
	l->holds--;
}

bool loop_idle(const struct loop *l)
{
	return l->live_io == 0 && l->n_timers == 0 && l->n_deferred == 0 &&
	       l->holds == 0;
}

void *loop_slot_get(const struct loop *l, enum loop_slot slot)
{
	if ((unsigned)slot >= LOOP_SLOT_COUNT_)
		return NULL;
	return l->slots[slot];
}

void loop_slot_set(struct loop *l, enum loop_slot slot, void *ptr,
		   void (*free_fn)(void *ptr))
{
	if ((unsigned)slot >= LOOP_SLOT_COUNT_)
		return;
	l->slots[slot] = ptr;
	l->slot_free[slot] = free_fn;
}

/* ------------------------------------------------------------------ fds */

static int io_grow(struct loop *l)
{
	size_t cap = l->cap_io ? l->cap_io * 2 : 16;
	struct pollfd *p;
	struct loop_io **v;

	p = realloc(l->pfds, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->pfds = p;
	v = realloc(l->ios, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->ios = v;
	l->cap_io = cap;
	return 0;
}

static void io_sync_pfd(struct loop_io *io)
{
	struct pollfd *p = &io->loop->pfds[io->idx];

	p->fd = (io->closed || io->events == 0) ? -1 : io->fd;
	p->events = (short)io->events;
}

static struct loop_io *io_add(struct loop *l, int fd, unsigned events,
			      loop_io_cb *cb, void *arg, bool internal)
{
	struct loop_io *io;

	if (fd < 0 || !cb ||
	    (events & ~(unsigned)(POLLIN | POLLOUT | POLLPRI))) {
		errno = EINVAL;
		return NULL;
	}
	if (l->n_io == l->cap_io && io_grow(l) < 0) {
		errno = ENOMEM;
		return NULL;
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		errno = ENOMEM;
		return NULL;
	}
	io->loop = l;
	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->arg = arg;
	io->internal = internal;
	io->idx = l->n_io++;
	l->ios[io->idx] = io;
	l->pfds[io->idx].revents = 0;
	io_sync_pfd(io);
	if (!internal)
		l->live_io++;
	dbg("io fd=%d events=%#x added (idx %zu)", fd, events, io->idx);
	return io;
}

struct loop_io *loop_io_add(struct loop *l, int fd, unsigned events,
			    loop_io_cb *cb, void *arg)
{
	return io_add(l, fd, events, cb, arg, false);
}

int loop_io_modify(struct loop_io *io, unsigned events)
{
	if (!io || io->closed ||
	    (events & ~(unsigned)(POLLIN | POLLOUT | POLLPRI)))
		return -EINVAL;
	io->events = events;
	io_sync_pfd(io);
	return 0;
}

unsigned loop_io_events(const struct loop_io *io)
{
	return io->events;
}

int loop_io_fd(const struct loop_io *io)
{
	return io->fd;
}

static void io_closing_fn(struct loop_closing *c)
{
	struct loop_io *io = container_of(c, struct loop_io, closing);

	io_remove(io->loop, io);
	free(io);
}

void loop_io_close(struct loop_io *io)
{
	if (!io || io->closed)
		return;
	io->closed = true;
	io_sync_pfd(io);
	if (!io->internal)
		io->loop->live_io--;
	dbg("io fd=%d closed", io->fd);
	loop_close_at_end(io->loop, &io->closing, io_closing_fn);
}

static void run_io(struct loop *l)
{
	size_t i, n = l->n_io; /* watches added by callbacks wait a turn */

	for (i = 0; i < n; i++) {
		struct loop_io *io = l->ios[i];
		unsigned rev = (unsigned)l->pfds[i].revents;
		loop_io_cb *cb;
		uint64_t t0;

		if (!rev)
			continue;
		l->pfds[i].revents = 0;
		if (io->closed)
			continue;
		rev &= io->events | POLLERR | POLLHUP | POLLNVAL;
		if (!rev)
			continue;
		t0 = loop_clock_us();
		cb = io->cb; /* the callback may free what holds io */
		cb(io, io->fd, rev, io->arg);
		record_callback(l, t0, "io", (const void *)cb);
		if ((rev & POLLNVAL) && !io->closed && io->events) {
			log_err("io fd=%d is not open (closed before "
				"loop_io_close?): watch disabled",
				io->fd);
			io->events = 0;
			io_sync_pfd(io);
		}
	}
}

/* --------------------------------------------------------------- timers */

static bool timer_less(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due_ms < b->due_ms ||
	       (a->due_ms == b->due_ms && a->seq < b->seq);
}

/* a and b are detached roots (no prev, no sibling). */
static struct loop_timer *heap_meld(struct loop_timer *a, struct loop_timer *b)
{
	struct loop_timer *tmp;

	if (!a)
		return b;
	if (!b)
		return a;
	if (timer_less(b, a)) {
		tmp = a;
		a = b;
		b = tmp;
	}
	b->sibling = a->child;
	if (a->child)
		a->child->prev = b;
	b->prev = a;
	a->child = b;
	return a;
}

/* Two-pass pairing of a sibling list; returns the new detached root. */
static struct loop_timer *heap_merge_pairs(struct loop_timer *first)
{
	struct loop_timer *pairs = NULL, *root = NULL;

	while (first) {
		struct loop_timer *a = first, *b = a->sibling, *m;

		first = b ? b->sibling : NULL;
		a->sibling = a->prev = NULL;
		if (b)
			b->sibling = b->prev = NULL;
		m = heap_meld(a, b);
		m->sibling = pairs; /* temporary, reversed list */
		pairs = m;
	}
	while (pairs) {
		struct loop_timer *next = pairs->sibling;

		pairs->sibling = NULL;
		root = heap_meld(root, pairs);
		pairs = next;
	}
	return root;
}

static void heap_insert(struct loop *l, struct loop_timer *t)
{
	t->child = t->sibling = t->prev = NULL;
	l->timer_root = heap_meld(l->timer_root, t);
}

static void heap_remove(struct loop *l, struct loop_timer *t)
{
	struct loop_timer *sub;

	if (t == l->timer_root) {
		l->timer_root = heap_merge_pairs(t->child);
	} else {
		if (t->prev->child == t)
			t->prev->child = t->sibling;
		else
			t->prev->sibling = t->sibling;
		if (t->sibling)
			t->sibling->prev = t->prev;
		t->sibling = t->prev = NULL;
		sub = heap_merge_pairs(t->child);
		l->timer_root = heap_meld(l->timer_root, sub);
	}
	t->child = t->sibling = t->prev = NULL;
}

void loop_timer_init(struct loop_timer *t)
{
	memset(t, 0, sizeof(*t));
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t ms,
		      loop_timer_cb *cb, void *arg)
{
	if (t->armed)
		loop_timer_stop(t);
	t->loop = l;
	t->cb = cb;
	t->arg = arg;
	/* fresh time, not the turn's: a timer never fires early */
	t->due_ms = loop_clock_ms() + ms;
	t->seq = l->timer_seq++;
	t->armed = true;
	heap_insert(l, t);
	l->n_timers++;
}

void loop_timer_stop(struct loop_timer *t)
{
	if (!t->armed)
		return;
	heap_remove(t->loop, t);
	t->armed = false;
	t->loop->n_timers--;
}

bool loop_timer_armed(const struct loop_timer *t)
{
	return t->armed;
}

int64_t loop_timer_remaining_ms(const struct loop_timer *t)
{
	uint64_t now;

	if (!t->armed)
		return -1;
	now = loop_clock_ms();
	return t->due_ms > now ? (int64_t)(t->due_ms - now) : 0;
}

static void run_timers(struct loop *l)
{
	/* timers (re)started by these callbacks wait for the next phase */
	uint64_t limit = l->timer_seq;
	struct loop_timer *t;

	while ((t = l->timer_root) && t->due_ms <= l->now_ms &&
	       t->seq < limit) {
		loop_timer_cb *cb;
		uint64_t t0;

		heap_remove(l, t);
		t->armed = false;
		l->n_timers--;
		t0 = loop_clock_us();
		cb = t->cb; /* the callback may free what holds t */
		cb(t, t->arg);
		record_callback(l, t0, "timer", (const void *)cb);
	}
}

/* ------------------------------------------------------ deferred work */

void loop_defer(struct loop *l, struct loop_defer *d, loop_defer_cb *cb,
		void *arg)
{
	d->cb = cb;
	d->arg = arg;
	if (d->queued)
		return;
	d->queued = true;
	d->next = NULL;
	d->prev = l->dtail;
	if (l->dtail)
		l->dtail->next = d;
	else
		l->dhead = d;
	l->dtail = d;
	l->n_deferred++;
}

void loop_defer_cancel(struct loop *l, struct loop_defer *d)
{
	if (!d->queued)
		return;
	if (d->prev)
		d->prev->next = d->next;
	else
		l->dhead = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		l->dtail = d->prev;
	d->next = d->prev = NULL;
	d->queued = false;
	l->n_deferred--;
}

bool loop_defer_queued(const struct loop_defer *d)
{
	return d->queued;
}

static void run_deferred(struct loop *l)
{
	unsigned at_start = l->n_deferred;
	unsigned n = at_start < l->budget ? at_start : l->budget;

	while (n-- > 0 && l->dhead) {
		struct loop_defer *d = l->dhead;
		loop_defer_cb *cb;
		uint64_t t0;

		loop_defer_cancel(l, d);
		t0 = loop_clock_us();
		cb = d->cb; /* the callback may free what holds d */
		cb(d, d->arg);
		record_callback(l, t0, "deferred", (const void *)cb);
		l->n_deferred_run++;
	}
	if (at_start > l->budget)
		l->n_budget_exhausted++;
}

/* ---------------------------------------------- end-of-turn freeing */

void loop_close_at_end(struct loop *l, struct loop_closing *c,
		       void (*fn)(struct loop_closing *c))
{
	if (c->queued)
		return;
	c->fn = fn;
	c->queued = true;
	c->next = NULL;
	if (l->ctail)
		l->ctail->next = c;
	else
		l->chead = c;
	l->ctail = c;
}

static void free_node_fn(struct loop_closing *c)
{
	struct loop_free_node *n =
	    container_of(c, struct loop_free_node, closing);

	n->free_fn(n->ptr);
	free(n);
}

void loop_free_at_end(struct loop *l, void *ptr, void (*free_fn)(void *))
{
	struct loop_free_node *n;

	if (!ptr)
		return;
	n = calloc(1, sizeof(*n));
	if (!n) {
		log_err("out of memory: object %p leaked, not freed early",
			ptr);
		return;
	}
	n->ptr = ptr;
	n->free_fn = free_fn;
	loop_close_at_end(l, &n->closing, free_node_fn);
}

/* -------------------------------------------------------------- signals */

static void signal_io_cb(struct loop_io *io, int fd, unsigned revents,
			 void *arg)
{
	struct loop *l = arg;
	struct signalfd_siginfo si;
	ssize_t r;

	for (;;) {
		struct loop_signal *s;

		r = read(fd, &si, sizeof(si));
		if (r != (ssize_t)sizeof(si))
			break;
		dbg("signal %u received", si.ssi_signo);
		for (s = l->signals; s; s = s->next)
			if (!s->closed && s->signo == (int)si.ssi_signo)
				s->cb(s, s->signo, s->arg);
	}
	if (r < 0 && errno != EAGAIN && errno != EINTR)
		log_err("read(signalfd): %s", strerror(errno));
}

struct loop_signal *loop_signal_add(struct loop *l, int signo,
				    loop_signal_cb *cb, void *arg)
{
	struct loop_signal *s;
	sigset_t one, old;
	int fd, e;

	if (signo <= 0 || signo >= NSIG || signo == SIGKILL ||
	    signo == SIGSTOP || !cb) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (!sigismember(&l->sigmask, signo)) {
		sigemptyset(&one);
		sigaddset(&one, signo);
		if ((e = pthread_sigmask(SIG_BLOCK, &one, &old))) {
			free(s);
			errno = e;
			return NULL;
		}
		if (!sigismember(&old, signo))
			sigaddset(&l->blocked_by_us, signo);
		sigaddset(&l->sigmask, signo);
		fd =
		    signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
		if (fd < 0) {
			e = errno;
			log_err("signalfd(%d): %s", signo, strerror(e));
			sigdelset(&l->sigmask, signo);
			free(s);
			errno = e;
			return NULL;
		}
		if (l->sigfd < 0) {
			l->sigfd = fd;
			l->sigio = io_add(l, fd, POLLIN, signal_io_cb, l, true);
			if (!l->sigio) {
				e = errno;
				close(fd);
				l->sigfd = -1;
				sigdelset(&l->sigmask, signo);
				free(s);
				errno = e;
				return NULL;
			}
		}
	}
	s->loop = l;
	s->signo = signo;
	s->cb = cb;
	s->arg = arg;
	s->next = l->signals;
	l->signals = s;
	dbg("signal %d handler added", signo);
	return s;
}

static void signal_closing_fn(struct loop_closing *c)
{
	struct loop_signal *s = container_of(c, struct loop_signal, closing);
	struct loop_signal **pp;

	for (pp = &s->loop->signals; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	free(s);
}

void loop_signal_del(struct loop_signal *s)
{
	if (!s || s->closed)
		return;
	s->closed = true;
	loop_close_at_end(s->loop, &s->closing, signal_closing_fn);
}

/* ------------------------------------------------------- cross-thread */

static void async_io_cb(struct loop_io *io, int fd, unsigned revents, void *arg)
{
	struct loop *l = arg;
	struct loop_async *a;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EINTR)
		log_err("read(eventfd): %s", strerror(errno));
	for (a = l->asyncs; a; a = a->next)
		if (!a->closed && atomic_exchange(&a->pending, 0))
			a->cb(a, a->arg);
}

struct loop_async *loop_async_new(struct loop *l, loop_async_cb *cb, void *arg)
{
	struct loop_async *a;
	int fd;

	if (!cb) {
		errno = EINVAL;
		return NULL;
	}
	if (l->evfd < 0) {
		fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fd < 0)
			return NULL;
		l->evio = io_add(l, fd, POLLIN, async_io_cb, l, true);
		if (!l->evio) {
			int e = errno;

			close(fd);
			errno = e;
			return NULL;
		}
		l->evfd = fd;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->loop = l;
	a->cb = cb;
	a->arg = arg;
	atomic_init(&a->pending, 0);
	a->next = l->asyncs;
	l->asyncs = a;
	return a;
}

void loop_async_send(struct loop_async *a)
{
	uint64_t one = 1;
	ssize_t r;

	if (atomic_exchange(&a->pending, 1))
		return; /* a wakeup is already on its way */
	do
		r = write(a->loop->evfd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
	/* EAGAIN: the counter is saturated, the loop wakes anyway */
}

static void async_closing_fn(struct loop_closing *c)
{
	struct loop_async *a = container_of(c, struct loop_async, closing);
	struct loop_async **pp;

	for (pp = &a->loop->asyncs; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	free(a);
}

void loop_async_close(struct loop_async *a)
{
	if (!a || a->closed)
		return;
	a->closed = true;
	loop_close_at_end(a->loop, &a->closing, async_closing_fn);
}

/* ----------------------------------------------------------------- run */

static int poll_timeout(struct loop *l, int max_wait_ms)
{
	int64_t t = -1;

	/* pending work, or closings to finish the turn with: do not sleep */
	if (l->n_deferred > 0 || l->chead || l->stop)
		return 0;
	if (l->timer_root) {
		uint64_t now = loop_clock_ms();

		t = l->timer_root->due_ms > now
			? (int64_t)(l->timer_root->due_ms - now)
			: 0;
		if (t > INT_MAX)
			t = INT_MAX;
	}
	if (max_wait_ms >= 0 && (t < 0 || t > max_wait_ms))
		t = max_wait_ms;
	return (int)t;
}

int loop_run_once(struct loop *l, int max_wait_ms)
{
	uint64_t start_us = loop_clock_us();
	int timeout, n, rv = 0;

	if (l->in_turn) {
		log_err("loop_run_once called from inside a turn");
		return -EBUSY;
	}
	l->in_turn = true;
	stats_rotate(l, start_us);
	if (l->prev_turn_busy) {
		uint64_t lag = start_us - l->prev_turn_start_us;

		hist_add(&l->lag[0], lag);
		if (lag > l->lag_max_ever)
			l->lag_max_ever = lag;
	}
	l->prev_turn_start_us = start_us;
	l->now_ms = start_us / 1000u;

	l->phase = LOOP_PHASE_RUN_DEFERRED;
	run_deferred(l);

	l->phase = LOOP_PHASE_POLL;
	log_flush(); /* the turn's lines, if this thread buffers them */
	timeout = poll_timeout(l, max_wait_ms);
	l->prev_turn_busy = l->n_deferred > 0;
	n = poll(l->pfds, (nfds_t)l->n_io, timeout);
	if (n < 0) {
		if (errno != EINTR) {
			rv = -errno;
			log_err("poll: %s", strerror(errno));
		}
		n = 0;
	}
	l->now_ms = loop_clock_ms();
	if (n > 0) {
		l->phase = LOOP_PHASE_IO;
		run_io(l);
	}
	l->phase = LOOP_PHASE_TIMERS;
	l->now_ms = loop_clock_ms();
	run_timers(l);

	l->phase = LOOP_PHASE_CLOSING;
	run_closing(l);
	l->phase = LOOP_PHASE_IDLE;
	l->turns++;
	l->in_turn = false;
	if (rv < 0)
		return rv;
	return loop_idle(l) ? 0 : 1;
}

int loop_run(struct loop *l)
{
	int rv;

	l->stop = false;
	while (!l->stop) {
		if (l->exit_when_idle && loop_idle(l))
			break;
		rv = loop_run_once(l, -1);
		if (rv < 0)
			return rv;
	}
	l->stop = false;
	return 0;
}

/* ------------------------------------------------------ introspection */

void loop_stats(struct loop *l, struct loop_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->turns = l->turns;
	st->callbacks = l->n_callbacks;
	st->deferred_run = l->n_deferred_run;
	st->budget_exhausted = l->n_budget_exhausted;
	st->live_io = l->live_io;
	st->live_timers = l->n_timers;
	st->pending_deferred = l->n_deferred;
	st->holds = l->holds;
	st->window_ms = l->window_ms;
	hist_summary(&l->lag[0], &l->lag[1], &st->lag);
	hist_summary(&l->cb[0], &l->cb[1], &st->callback);
	st->callback_max_ever_us = l->cb_max_ever;
	st->slow_steps = l->n_slow_steps;
	st->lag_max_ever_us = l->lag_max_ever;
}

void loop_stats_reset(struct loop *l)
{
	memset(l->lag, 0, sizeof(l->lag));
	memset(l->cb, 0, sizeof(l->cb));
	l->lag_max_ever = l->cb_max_ever = 0;
	l->window_start_us = loop_clock_us();
}

void loop_set_slow_step(struct loop *l, uint64_t us)
{
	l->slow_step_us = us;
}

void loop_step_label(struct loop *l, const char *kind, uint64_t id)
{
	l->label_kind = kind;
	l->label_id = id;
}

void loop_set_stats_window(struct loop *l, uint64_t window_ms)
{
	l->window_ms = window_ms ? window_ms : 1;
}

const char *loop_debug_str(struct loop *l, char *buf, size_t len)
{
	char next[32] = "none";

	if (l->timer_root)
		snprintf(next, sizeof(next), "%" PRId64 "ms",
			 loop_timer_remaining_ms(l->timer_root));
	snprintf(buf, len,
		 "loop turn=%" PRIu64 " phase=%s io=%u timers=%u deferred=%u "
		 "holds=%u next_timer=%s budget=%u lag_max=%" PRIu64
		 "us cb_max=%" PRIu64 "us",
		 l->turns, loop_phase_name(l->phase), l->live_io, l->n_timers,
		 l->n_deferred, l->holds, next, l->budget, l->lag_max_ever,
		 l->cb_max_ever);
	return buf;
}
