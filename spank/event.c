/* event.c: see event.h.  The JSON is written here by hand, byte for byte
 * what jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS) gave (the unit
 * test compares the two), so that the plugin, loaded by every srun and
 * slurmstepd, links no JSON library. */
#include "event.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

void event_step_name(uint32_t step_id, char *buf, unsigned len)
{
	if (step_id == EVENT_STEP_BATCH)
		snprintf(buf, len, "batch");
	else if (step_id == EVENT_STEP_EXTERN)
		snprintf(buf, len, "extern");
	else
		snprintf(buf, len, "%u", step_id);
}

struct out {
	char *buf;
	size_t len, cap;
	bool oom;
	bool first;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 512;
		char *p;

		while (o->len + n + 1 > cap)
			cap *= 2;
		p = realloc(o->buf, cap);
		if (!p) {
			o->oom = true;
			return;
		}
		o->buf = p;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void putf(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp,
		    (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Bytes of the UTF-8 sequence at s, or 0 when it is not valid (overlong,
 * a surrogate, past U+10FFFF, cut short): as jansson checks. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n, i;
	uint32_t v;

	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xC2)
		return 0;
	if (s[0] < 0xE0) {
		n = 2;
		v = s[0] & 0x1F;
	} else if (s[0] < 0xF0) {
		n = 3;
		v = s[0] & 0x0F;
	} else if (s[0] < 0xF5) {
		n = 4;
		v = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
	    (n == 4 && (v < 0x10000 || v > 0x10FFFF)))
		return 0;
	return n;
}

static bool utf8_valid(const char *s)
{
	size_t n;

	for (; *s; s += n)
		if (!(n = utf8_len((const unsigned char *)s)))
			return false;
	return true;
}

static void key(struct out *o, const char *k)
{
	put(o, o->first ? "\"" : ",\"", o->first ? 1 : 2);
	o->first = false;
	put(o, k, strlen(k));
	put(o, "\":", 2);
}

/* A string member; like jansson, none at all for NULL or invalid UTF-8. */
static void set_str(struct out *o, const char *k, const char *v)
{
	const char *p, *run;

	if (!v || !utf8_valid(v))
		return;
	key(o, k);
	put(o, "\"", 1);
	for (run = p = v; *p; p++) {
		unsigned char c = (unsigned char)*p;
		const char *esc = NULL;
		char u[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(o, run, (size_t)(p - run));
		switch (c) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		default:
			snprintf(u, sizeof(u), "\\u%04X", c);
			esc = u;
		}
		put(o, esc, strlen(esc));
		run = p + 1;
	}
	put(o, run, (size_t)(p - run));
	put(o, "\"", 1);
}

static void set_int(struct out *o, const char *k, long long v)
{
	key(o, k);
	putf(o, "%lld", v);
}

/* jansson's real: %.17g, a ".0" when it looks like an integer, no '+' or
 * leading zeros in the exponent; no member for NaN or infinity. */
static void set_real(struct out *o, const char *k, double v)
{
	char b[64], *e, *from;
	size_t len;

	if (!isfinite(v))
		return;
	snprintf(b, sizeof(b) - 3, "%.17g", v);
	if (!strchr(b, '.') && !strchr(b, 'e'))
		strcat(b, ".0");
	e = strchr(b, 'e');
	if (e) {
		e++;
		if (*e == '-')
			e++;
		for (from = e; *from == '+' || *from == '0'; from++)
			;
		if (*from == '\0' && from > e)
			from--; /* keep one digit */
		memmove(e, from, strlen(from) + 1);
	}
	len = strlen(b);
	key(o, k);
	put(o, b, len);
}

char *event_to_json(const struct tg_event *ev)
{
	char step[16], id[256];
	struct out o = {.first = true};
	bool task = ev->task >= 0;

	event_step_name(ev->step_id, step, sizeof(step));
	if (task)
		snprintf(id, sizeof(id), "%s/%u/%s/%s/%s/%d@%lld", ev->site,
			 ev->job_id, step, ev->node, ev->kind, ev->task,
			 (long long)ev->step_start_ms);
	else
		snprintf(id, sizeof(id), "%s/%u/%s/%s/%s@%lld", ev->site,
			 ev->job_id, step, ev->node, ev->kind,
			 (long long)ev->step_start_ms);

	/* members in byte order of their keys (JSON_SORT_KEYS) */
	put(&o, "{", 1);
	set_str(&o, "cores", ev->cores);
	if (ev->kind && !strcmp(ev->kind, "step_end"))
		set_real(&o, "cpu_seconds", ev->cpu_seconds);
	if (task && WIFEXITED(ev->wait_status))
		set_int(&o, "exit_code", WEXITSTATUS(ev->wait_status));
	set_str(&o, "gw_job", ev->gw_job);
	set_str(&o, "id", id);
	set_int(&o, "job_id", ev->job_id);
	set_str(&o, "kind", ev->kind);
	set_str(&o, "message", ev->message);
	set_str(&o, "node", ev->node);
	set_str(&o, "request_id", ev->request_id);
	if (task && WIFSIGNALED(ev->wait_status))
		set_int(&o, "signal", WTERMSIG(ev->wait_status));
	set_str(&o, "site", ev->site);
	set_str(&o, "step", step);
	if (task)
		set_int(&o, "task", ev->task);
	set_str(&o, "tier", ev->tier);
	set_str(&o, "tier_source", ev->tier_source);
	set_int(&o, "time_ms", ev->time_ms);
	set_str(&o, "user", ev->user);
	if (task)
		set_int(&o, "wait_status", ev->wait_status);
	put(&o, "}", 1);
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	return o.buf;
}
