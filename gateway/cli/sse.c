/*
 * sse.c: see sse.h.
 */
#include "sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sse_init(struct sse_parser *p, sse_event_cb *cb, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->cb = cb;
	p->arg = arg;
	p->retry_ms = -1;
}

void sse_free(struct sse_parser *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

void sse_reset(struct sse_parser *p)
{
	p->line_len = 0;
	p->data_len = 0;
	p->type[0] = '\0';
	p->saw_cr = false;
	p->bom_checked = false;
}

const char *sse_last_id(const struct sse_parser *p)
{
	return p->id;
}

static int grow(char **buf, size_t *cap, size_t need, size_t max)
{
	size_t n = *cap ? *cap : 256;
	char *b;

	if (need > max)
		return -E2BIG;
	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	if (n > max + 1)
		n = max + 1;
	b = realloc(*buf, n);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*cap = n;
	return 0;
}

static int dispatch(struct sse_parser *p)
{
	struct sse_event ev;
	int rv = 0;

	if (p->data_len) {
		/* drop the last "\n" the data lines added */
		p->data_len--;
		p->data[p->data_len] = '\0';
		ev.type = p->type[0] ? p->type : "message";
		ev.id = p->id;
		ev.data = p->data;
		ev.data_len = p->data_len;
		ev.retry_ms = p->retry_ms;
		rv = p->cb ? p->cb(&ev, p->arg) : 0;
	}
	p->data_len = 0;
	p->type[0] = '\0';
	return rv;
}

/* One complete line (without its terminator) in p->line[0..line_len). */
static int process_line(struct sse_parser *p)
{
	char *l = p->line, *colon, *val;
	size_t n = p->line_len, flen, vlen;
	int rv;

	if (n == 0)
		return dispatch(p);
	if (l[0] == ':')
		return 0; /* comment / heartbeat */
	colon = memchr(l, ':', n);
	if (colon) {
		flen = (size_t)(colon - l);
		val = colon + 1;
		vlen = n - flen - 1;
		if (vlen && *val == ' ') {
			val++;
			vlen--;
		}
	} else {
		flen = n;
		val = l + n;
		vlen = 0;
	}
	if (flen == 4 && !memcmp(l, "data", 4)) {
		rv = grow(&p->data, &p->data_cap, p->data_len + vlen + 2,
			  SSE_DATA_MAX);
		if (rv)
			return rv;
		memcpy(p->data + p->data_len, val, vlen);
		p->data_len += vlen;
		p->data[p->data_len++] = '\n';
		p->data[p->data_len] = '\0';
	} else if (flen == 5 && !memcmp(l, "event", 5)) {
		snprintf(p->type, sizeof(p->type), "%.*s", (int)vlen, val);
	} else if (flen == 2 && !memcmp(l, "id", 2)) {
		if (!memchr(val, '\0', vlen) && vlen < sizeof(p->id))
			snprintf(p->id, sizeof(p->id), "%.*s", (int)vlen, val);
	} else if (flen == 5 && !memcmp(l, "retry", 5)) {
		long r = 0;
		size_t i;

		for (i = 0; i < vlen && val[i] >= '0' && val[i] <= '9' &&
			    r < 100000000;
		     i++)
			r = r * 10 + (val[i] - '0');
		if (vlen && i == vlen)
			p->retry_ms = r;
	}
	/* unknown fields are ignored */
	return 0;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len)
{
	size_t i = 0;
	int rv;

	if (!p->bom_checked && len) {
		/* a UTF-8 BOM may start the stream (whole in this chunk) */
		if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3))
			i = 3;
		p->bom_checked = true;
	}
	for (; i < len; i++) {
		char c = buf[i];

		if (p->saw_cr) {
			p->saw_cr = false;
			if (c == '\n')
				continue; /* the LF of a CRLF */
		}
		if (c == '\r' || c == '\n') {
			p->saw_cr = c == '\r';
			rv = process_line(p);
			p->line_len = 0;
			if (rv)
				return rv;
			continue;
		}
		rv =
		    grow(&p->line, &p->line_cap, p->line_len + 2, SSE_LINE_MAX);
		if (rv)
			return rv;
		p->line[p->line_len++] = c;
	}
	return 0;
}
