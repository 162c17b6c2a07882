/*
 * task.c: tasks (state machines stepped by the loop) and their registry.
 *
 * A task's step is a loop_defer callback: task_wake ORs reasons into
 * t->wake_pending and defers t->ready, so wakes coalesce and steps share
 * the loop's per-turn budget with every other deferred callback.
 */
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct task_registry {
	struct task *head, *tail; /* live tasks, oldest first */
	size_t n_live;
	size_t n_ended; /* TASK_DONE returned, memory not yet released */
	uint64_t next_id;
	task_observer_fn *observer;
	void *observer_arg;
};

static const char *const task_wake_names[] = {
#define TASK_WAKE_NAME_(name, bit) [bit] = #name,
    TASK_WAKES(TASK_WAKE_NAME_)
#undef TASK_WAKE_NAME_
};

#define TASK_WAKE_BITS (sizeof(task_wake_names) / sizeof(task_wake_names[0]))

static void registry_free(void *p)
{
	struct task_registry *reg = p;
	char buf[512];
	struct task *t;

	for (t = reg->head; t; t = t->reg_next)
		log_warn("loop freed with a live task (leaked): %s",
			 task_debug_str(t, buf, sizeof(buf)));
	if (reg->n_ended)
		log_warn("loop freed with %zu ended task(s) still referenced "
			 "(leaked: a task_ref or queue_wait without its undo?)",
			 reg->n_ended);
	free(reg);
}

static struct task_registry *registry(struct loop *l, bool create)
{
	struct task_registry *reg = loop_slot_get(l, LOOP_SLOT_TASKS);

	if (!reg && create) {
		reg = calloc(1, sizeof(*reg));
		if (!reg)
			return NULL;
		loop_slot_set(l, LOOP_SLOT_TASKS, reg, registry_free);
	}
	return reg;
}

/* --------------------------------------------------------------- names */

const char *task_state_name_of(const struct task *t, int state)
{
	if (state < 0 || (size_t)state >= t->ops->n_states ||
	    !t->ops->state_names[state])
		return "?";
	return t->ops->state_names[state];
}

const char *task_state_name(const struct task *t)
{
	return task_state_name_of(t, t->state);
}

const char *task_wake_str(unsigned wake, char *buf, size_t len)
{
	size_t off = 0;
	unsigned bit;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (!wake) {
		snprintf(buf, len, "-");
		return buf;
	}
	for (bit = 0; bit < 32 && off < len; bit++) {
		const char *name;
		int n;

		if (!(wake & (1u << bit)))
			continue;
		name = bit < TASK_WAKE_BITS && task_wake_names[bit]
			   ? task_wake_names[bit]
			   : "?";
		n = snprintf(buf + off, len - off, "%s%s", off ? "|" : "",
			     name);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

/* --------------------------------------------------------------- steps */

static void task_finish(struct task *t)
{
	struct task_registry *reg = registry(t->loop, false);

	t->destroyed = true;
	t->wake_pending = 0;
	loop_timer_stop(&t->timer);
	loop_defer_cancel(t->loop, &t->ready);
	if (reg) {
		if (t->reg_prev)
			t->reg_prev->reg_next = t->reg_next;
		else
			reg->head = t->reg_next;
		if (t->reg_next)
			t->reg_next->reg_prev = t->reg_prev;
		else
			reg->tail = t->reg_prev;
		reg->n_live--;
		reg->n_ended++;
	}
	t->reg_prev = t->reg_next = NULL;
	dbg("%s#%" PRIu64 " done in state %s after %" PRIu64 " steps",
	    t->ops->kind, t->id, task_state_name(t), t->n_steps);
	task_unref(t); /* the task's own reference */
}

static void task_run_cb(struct loop_defer *d, void *arg)
{
	struct task *t = arg;
	unsigned wake = t->wake_pending;
	enum task_step r;

	t->wake_pending = 0;
	if (t->destroyed)
		return;
	t->in_step = true;
	t->n_steps++;
	loop_step_label(t->loop, t->ops->kind, t->id); /* a slow step's name */
	r = t->ops->step(t, wake);
	t->in_step = false;
	switch (r) {
	case TASK_WAIT:
		if (t->wake_pending)
			loop_defer(t->loop, &t->ready, task_run_cb, t);
		break;
	case TASK_DONE:
		task_finish(t);
		break;
	}
}

int task_start(struct loop *l, struct task *t, const struct task_ops *ops)
{
	struct task_registry *reg;

	if (!ops || !ops->step || !ops->kind || !ops->state_names ||
	    ops->n_states == 0 || ops->n_states > UINT16_MAX)
		return -EINVAL;
	reg = registry(l, true);
	if (!reg)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->ops = ops;
	t->loop = l;
	t->id = ++reg->next_id;
	t->refs = 1;
	t->started_ms = t->state_since_ms = t->wait_since_ms = loop_clock_ms();
	t->history[0] = 0;
	t->n_history = 1;
	t->reg_prev = reg->tail;
	if (reg->tail)
		reg->tail->reg_next = t;
	else
		reg->head = t;
	reg->tail = t;
	reg->n_live++;
	dbg("%s#%" PRIu64 " started in state %s", ops->kind, t->id,
	    task_state_name(t));
	task_wake(t, TASK_WAKE_START);
	return 0;
}

void task_wake(struct task *t, unsigned reasons)
{
	if (t->destroyed) {
		dbg("%s#%" PRIu64 " destroyed: wake %#x ignored", t->ops->kind,
		    t->id, reasons);
		return;
	}
	t->wake_pending |= reasons;
	if (!t->in_step)
		loop_defer(t->loop, &t->ready, task_run_cb, t);
}

void task_abandon(struct task *t, const char *why)
{
	if (!t->ops || t->destroyed)
		return;
	dbg("%s#%" PRIu64 " abandoned in state %s: %s", t->ops->kind, t->id,
	    task_state_name(t), why);
	task_finish(t);
}

int task_cancel(struct task *t, const char *reason)
{
	if (t->destroyed)
		return -ESRCH;
	if (!reason || !*reason)
		reason = "cancelled";
	if (!t->cancelled) {
		t->cancelled = true;
		snprintf(t->cancel_reason, sizeof(t->cancel_reason), "%s",
			 reason);
		dbg("%s#%" PRIu64 " cancel in state %s: %s", t->ops->kind,
		    t->id, task_state_name(t), t->cancel_reason);
	} else {
		dbg("%s#%" PRIu64
		    " cancelled again (%s), first reason kept: %s",
		    t->ops->kind, t->id, reason, t->cancel_reason);
	}
	task_wake(t, TASK_WAKE_CANCEL);
	return 0;
}

bool task_cancelled(const struct task *t)
{
	return t->cancelled;
}

const char *task_cancel_reason(const struct task *t)
{
	return t->cancelled ? t->cancel_reason : NULL;
}

/* ------------------------------------------------------------- refs */

static void task_destroy_fn(struct loop_closing *c)
{
	struct task *t =
	    (struct task *)(void *)((char *)c - offsetof(struct task, closing));

	struct task_registry *reg = registry(t->loop, false);

	dbg("%s#%" PRIu64 " freed", t->ops->kind, t->id);
	if (reg)
		reg->n_ended--;
	if (t->ops->destroy)
		t->ops->destroy(t);
}

void task_ref(struct task *t)
{
	t->refs++;
}

void task_unref(struct task *t)
{
	char buf[256];

	if (t->refs == 0) {
		log_err("task_unref with no reference: %s",
			task_debug_str(t, buf, sizeof(buf)));
		return;
	}
	if (--t->refs > 0)
		return;
	if (!t->destroyed) {
		log_err("last reference of a live task dropped (unref without "
			"ref?), kept: %s",
			task_debug_str(t, buf, sizeof(buf)));
		t->refs = 1;
		return;
	}
	loop_close_at_end(t->loop, &t->closing, task_destroy_fn);
}

/* ------------------------------------------------------------ states */

void task_set_state_(struct task *t, int state, int line)
{
	struct task_registry *reg;
	int old = t->state;

	if (state < 0 || (size_t)state >= t->ops->n_states) {
		log_err("%s#%" PRIu64 " bad state %d at line %d (ignored)",
			t->ops->kind, t->id, state, line);
		return;
	}
	t->state = state;
	t->state_since_ms = t->wait_since_ms = loop_clock_ms();
	t->waiting_on = NULL;
	t->wait_idle = false;
	t->state_line = line;
	t->history[t->n_history % TASK_HISTORY] = (uint16_t)state;
	t->n_history++;
	reg = registry(t->loop, false);
	if (reg && reg->observer)
		reg->observer(t, old, state, line, reg->observer_arg);
}

void task_wait_on(struct task *t, const char *what)
{
	if (!what || !t->waiting_on || strcmp(what, t->waiting_on) != 0)
		t->wait_since_ms = loop_clock_ms();
	t->waiting_on = what;
	t->wait_idle = false;
}

void task_wait_idle(struct task *t, const char *what)
{
	task_wait_on(t, what);
	t->wait_idle = true;
}

/* ----------------------------------------------------------- timers, io */

static void task_timer_cb(struct loop_timer *timer, void *arg)
{
	task_wake(arg, TASK_WAKE_TIMER);
}

void task_sleep(struct task *t, uint64_t ms)
{
	if (t->destroyed)
		return;
	loop_timer_start(t->loop, &t->timer, ms, task_timer_cb, t);
}

void task_sleep_stop(struct task *t)
{
	loop_timer_stop(&t->timer);
}

void task_io_cb(struct loop_io *io, int fd, unsigned revents, void *arg)
{
	struct task *t = arg;

	t->io_revents |= revents;
	task_wake(t, TASK_WAKE_IO);
}

unsigned task_take_io_revents(struct task *t)
{
	unsigned r = t->io_revents;

	t->io_revents = 0;
	return r;
}

int task_set_observer(struct loop *l, task_observer_fn *fn, void *arg)
{
	struct task_registry *reg = registry(l, true);

	if (!reg)
		return -ENOMEM;
	reg->observer = fn;
	reg->observer_arg = arg;
	return 0;
}

/* ------------------------------------------------------ introspection */

__attribute__((format(printf, 4, 5))) static void
append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off += (size_t)n;
	if (*off >= len)
		*off = len;
}

static bool task_runnable(const struct task *t)
{
	return t->in_step || t->wake_pending || loop_defer_queued(&t->ready);
}

const char *task_debug_str(const struct task *t, char *buf, size_t len)
{
	uint64_t now = loop_clock_ms();
	char wake[64];
	size_t off = 0;
	unsigned i, first;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	append(buf, len, &off,
	       "%s#%" PRIu64 " state=%s(%" PRIu64 "ms) waits='%s'(%" PRIu64
	       "ms) refs=%u wake=%s steps=%" PRIu64 " destroyed=%d",
	       t->ops->kind, t->id, task_state_name(t), now - t->state_since_ms,
	       t->waiting_on ? t->waiting_on : "", now - t->wait_since_ms,
	       t->refs, task_wake_str(t->wake_pending, wake, sizeof(wake)),
	       t->n_steps, t->destroyed);
	if (t->cancelled)
		append(buf, len, &off, " cancel='%s'", t->cancel_reason);
	if (loop_timer_armed(&t->timer))
		append(buf, len, &off, " sleep=%" PRId64 "ms",
		       loop_timer_remaining_ms(&t->timer));
	append(buf, len, &off, " hist=%s",
	       t->n_history > TASK_HISTORY ? "..>" : "");
	first = t->n_history > TASK_HISTORY ? t->n_history - TASK_HISTORY : 0;
	for (i = first; i < t->n_history; i++)
		append(buf, len, &off, "%s%s", i == first ? "" : ">",
		       task_state_name_of(t, t->history[i % TASK_HISTORY]));
	if (t->ops->debug_str && off + 4 < len) {
		append(buf, len, &off, " | ");
		if (off < len)
			t->ops->debug_str(t, buf + off, len - off);
	}
	return buf;
}

size_t task_foreach(struct loop *l, task_foreach_cb *cb, void *arg)
{
	struct task_registry *reg = registry(l, false);
	uint64_t now = loop_clock_ms();
	struct task *t, *next;
	size_t n = 0;
	char dbuf[512];

	if (!reg)
		return 0;
	for (t = reg->head; t; t = next) {
		struct task_info info;

		next = t->reg_next;
		memset(&info, 0, sizeof(info));
		info.kind = t->ops->kind;
		info.id = t->id;
		info.state = task_state_name(t);
		info.waiting_on = t->waiting_on ? t->waiting_on : "";
		info.idle = t->wait_idle;
		info.state_since_ms = t->state_since_ms;
		info.wait_since_ms = t->wait_since_ms;
		info.waited_ms = now - t->wait_since_ms;
		info.age_ms = now - t->started_ms;
		info.n_steps = t->n_steps;
		info.refs = t->refs;
		info.runnable = task_runnable(t);
		info.cancel_reason = task_cancel_reason(t);
		info.debug = task_debug_str(t, dbuf, sizeof(dbuf));
		n++;
		if (cb(t, &info, arg))
			break;
	}
	return n;
}

size_t task_count_live(struct loop *l)
{
	struct task_registry *reg = registry(l, false);

	return reg ? reg->n_live : 0;
}

size_t task_count_ended_unreleased(struct loop *l)
{
	struct task_registry *reg = registry(l, false);

	return reg ? reg->n_ended : 0;
}

struct stalled_ctx {
	uint64_t threshold_ms;
	size_t n;
};

static int stalled_cb(struct task *t, const struct task_info *info, void *arg)
{
	struct stalled_ctx *ctx = arg;

	if (!info->runnable && !info->idle &&
	    info->waited_ms >= ctx->threshold_ms) {
		log_warn("task stalled for %" PRIu64 "ms: %s", info->waited_ms,
			 info->debug);
		ctx->n++;
	}
	return 0;
}

size_t task_report_stalled(struct loop *l, uint64_t threshold_ms)
{
	struct stalled_ctx ctx = {threshold_ms, 0};

	task_foreach(l, stalled_cb, &ctx);
	return ctx.n;
}

static int dump_cb(struct task *t, const struct task_info *info, void *arg)
{
	log_info("task: %s", info->debug);
	return 0;
}

size_t task_dump(struct loop *l)
{
	size_t n = task_foreach(l, dump_cb, NULL);

	log_info("%zu live task(s)", n);
	return n;
}
