/*
 * client.h: a tiny synchronous client of the tiergated API (docs/api.md),
 * the `call_api_sync` of the design's "backfitting is hard" lesson: the
 * same API the daemon serves asynchronously, one blocking call at a time,
 * for the `tiergate` CLI and for scripts written in C.
 *
 *   struct tg_client *c = tg_client_new("http://127.0.0.1:8480", token);
 *   long status; json_t *job; char err[256];
 *   if (tg_call(c, "GET", "/v1/jobs/j-1", NULL, &status, &job, err,
 *               sizeof(err)) < 0)  ... cannot reach tiergated: err
 *   else if (status >= 400)        ... API error: job holds {"error":...}
 *   json_decref(job); tg_client_free(c);
 *
 * URLs: "http://HOST:PORT[/prefix]", "https://...", or "unix:/path" (HTTP
 * over a unix socket).  Authentication: a bearer token (never logged or
 * printed), or a fresh MUNGE credential per request whose payload is
 * "<METHOD> <path without query>" (docs/api.md).
 *
 * No globals of its own (libcurl's global init is reference counted by
 * libcurl); one client per thread.
 */
#ifndef TIERGATE_CLI_CLIENT_H
#define TIERGATE_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sse.h"

/* Largest response body read (an `ls` of many jobs fits). */
#define TG_RESPONSE_MAX (64u << 20)
#define TG_DEFAULT_URL "http://127.0.0.1:8480"
#define TG_DEFAULT_TIMEOUT 60

struct tg_client;

/* What one call sends. */
struct tg_request {
	const char *method;	     /* "GET", "POST", "DELETE" */
	char *path;		     /* "/v1/jobs?state=running" (owned) */
	char *body;		     /* JSON text or NULL (owned) */
	const char *idempotency_key; /* header, or NULL (borrowed) */
};
/* Frees path and body. */
void tg_request_clear(struct tg_request *r);

/* What came back (an HTTP answer of any status). */
struct tg_response {
	long status;
	char *body; /* NUL-terminated, body_len bytes */
	size_t body_len;
	json_t *json;	     /* the body parsed, or NULL when it is not JSON */
	char request_id[80]; /* X-Request-ID, "" if none */
	char content_type[80];
};
void tg_response_clear(struct tg_response *r);

/*
 * A client for `url` (copied; NULL: TG_DEFAULT_URL) sending `token`
 * (copied, may be NULL) as a bearer token.  NULL on a bad URL (err says
 * why) or out of memory.
 */
struct tg_client *tg_client_new(const char *url, const char *token, char *err,
				size_t errlen);
void tg_client_free(struct tg_client *c);
/* Authenticate with MUNGE instead (socket NULL: munged's default). */
int tg_client_use_munge(struct tg_client *c, const char *socket);
/* Whole-call timeout for tg_call (seconds, 0 = none; default 60). */
void tg_client_set_timeout(struct tg_client *c, long seconds);
/* The URL as given (for messages). */
const char *tg_client_url(const struct tg_client *c);

/*
 * Send req and wait for the answer.  0 when an HTTP answer arrived (any
 * status: check resp->status); a negative errno when none did, with err
 * "cannot reach tiergated at URL: ..." (-ECONNREFUSED, -ETIMEDOUT,
 * -EHOSTUNREACH, -EIO) or the reason (-ENOMEM, -EFBIG: answer too big,
 * -EACCES: no MUNGE credential).  resp is cleared first.
 */
int tg_call_req(struct tg_client *c, const struct tg_request *req,
		struct tg_response *resp, char *err, size_t errlen);

/*
 * The plain form: json_body may be NULL; *status the HTTP status; *json_out
 * the parsed answer (new reference, NULL when not JSON).  Returns as
 * tg_call_req.
 */
int tg_call(struct tg_client *c, const char *method, const char *path,
	    const char *json_body, long *status, json_t **json_out, char *err,
	    size_t errlen);

/*
 * GET an SSE stream at path, sending Last-Event-ID when last_event_id is
 * not NULL/"": each event goes to cb as it arrives.  No whole-call
 * timeout; a connection silent for idle_s seconds (heartbeats count) is
 * treated as dropped.  Returns 0 when the server ended a 200 stream, the
 * callback's non-zero value if it stopped, a negative errno when the
 * connection failed or dropped (err set), or 1 when the answer was not a
 * 200 stream (resp holds it, e.g. a JSON error).  `parser` keeps the last
 * event id across reconnects: sse_init it once, pass it to every call.
 */
int tg_stream(struct tg_client *c, const char *path, const char *last_event_id,
	      struct sse_parser *parser, long idle_s, struct tg_response *resp,
	      char *err, size_t errlen);

#endif
