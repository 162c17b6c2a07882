/*
 * sse.h: an incremental parser of Server-Sent Events (text/event-stream,
 * WHATWG HTML "Server-sent events" section 9.2.6), for `tiergate follow`.
 *
 * Feed it bytes as they arrive, in chunks of any size (a line or a CRLF may
 * be split across chunks); it calls back once per dispatched event.  Lines
 * end with CRLF, LF or CR; "field: value" strips one space after the colon;
 * "data" lines are joined with "\n"; ":" lines (heartbeats) are ignored; an
 * event with no data is not dispatched; the last event id persists across
 * events (and is what a reconnect sends as Last-Event-ID).
 *
 * No globals, no I/O: unit-testable.
 */
#ifndef TIERGATE_CLI_SSE_H
#define TIERGATE_CLI_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest line and largest event data accepted (then -E2BIG). */
#define SSE_LINE_MAX (4u << 20)
#define SSE_DATA_MAX (16u << 20)

struct sse_event {
	const char *type; /* "message" when the event named none */
	const char *id;	  /* the last event id so far ("" if none) */
	const char *data; /* NUL-terminated; may also hold NULs: use len */
	size_t data_len;
	long retry_ms; /* last "retry:" seen, -1 if none */
};

/* Return non-zero to stop parsing: sse_feed returns that value. */
typedef int sse_event_cb(const struct sse_event *ev, void *arg);

struct sse_parser {
	sse_event_cb *cb;
	void *arg;
	char *line;
	size_t line_len, line_cap;
	char *data;
	size_t data_len, data_cap;
	char type[64];
	char id[256];
	long retry_ms;
	bool saw_cr; /* the previous chunk ended with CR: skip a leading LF */
	bool bom_checked;
};

void sse_init(struct sse_parser *p, sse_event_cb *cb, void *arg);
/*
 * Parse len bytes.  0; the callback's non-zero return; -E2BIG (a line or
 * an event's data over the limits); -ENOMEM.
 */
int sse_feed(struct sse_parser *p, const char *buf, size_t len);
/* The last event id ("" if none); borrowed from p. */
const char *sse_last_id(const struct sse_parser *p);
/* Forget the partial line/event (after a dropped connection); the last
 * event id is kept. */
void sse_reset(struct sse_parser *p);
void sse_free(struct sse_parser *p);

#endif
