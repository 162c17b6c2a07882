/*
 * http_server.h: the gateway's HTTP front door, libmicrohttpd 0.9.75 in
 * external mode on our loop (one thread).
 *
 *   listen fd  --loop_io POLLIN-->  accept4, limits (429), MHD_add_connection
 *   MHD epoll fd --loop_io POLLIN-->  MHD_run, then a loop timer from
 *                                     MHD_get_timeout
 *   MHD_resume_connection        -->  loop_defer(MHD_run)
 *
 * The server accepts connections itself (MHD_USE_NO_LISTEN_SOCKET) so that
 * a client over the total or per-IP connection limit gets a JSON 429
 * instead of libmicrohttpd's silent close (so MHD's per-IP limit is not
 * used, its total limit is a backstop above ours, and quiescing closes our
 * listening socket instead of calling MHD_quiesce_daemon).  Limits, since
 * libmicrohttpd has none by default:
 *
 * - connection_timeout: libmicrohttpd's inactivity timeout, and also the
 *   deadline for receiving a whole request (request line, headers and
 *   body) counted from the connection's start or its previous request's
 *   end; a client too slow gets a JSON 408 and is closed (slowloris
 *   trickling one byte per timeout-1 s included).  A connection idle
 *   between requests is closed silently.
 * - max_header (at most 128 KiB): request line + headers over it get a
 *   JSON 431.  The MHD memory pool per connection is max_header + 8 KiB:
 *   beyond about that much, libmicrohttpd itself answers 431 (or 414 for
 *   a request line alone that long) with its own small HTML body, and
 *   closes.  (The pool is most of what an idle SSE follower costs:
 *   libmicrohttpd 0.9.75 zeroes half of it when the request has been
 *   read; docs/performance.md.)
 * - max_body: a Content-Length over it gets a JSON 413 at once, before any
 *   of the body is read (no "100 Continue" is sent); a chunked body that
 *   grows over it gets a JSON 413 written on the socket and the
 *   connection closed.
 * - max_connections, max_connections_per_ip: the next connection gets a
 *   JSON 429 (Retry-After: 1) and is closed.
 * - What libmicrohttpd rejects before a request exists is answered by
 *   libmicrohttpd: a malformed request line with spaces ("GET /") or a
 *   malformed header gets its 400 (HTML body), an unknown HTTP version its
 *   505, and a request line without any space ("GARBAGE") is closed
 *   without an answer; bytes without a line end (a TLS hello) wait for
 *   the request deadline (408).  Every other error is JSON
 *   (http_response.h).
 *
 * Work per turn.  libmicrohttpd serves every ready connection in one
 * MHD_run, so at 256 busy connections one call would be 256 requests
 * long.  The server hands at most requests_per_turn requests to routing and
 * handlers in a loop turn; a request read after that is held (left in
 * libmicrohttpd's ready list, unanswered, which calls its handler again
 * at each MHD_run) and handed on at the next turn, before any newer one, so
 * no request waits behind later ones and the loop's other work (timers,
 * site answers, the store) runs between slices.  A held request whose
 * client hung up meanwhile still reaches its handler (libmicrohttpd calls
 * it before it reads the socket again); its answer then goes nowhere, as
 * for a client that leaves while its request is handled.
 *
 * Requests.  A request (struct http_req) is created when its request line
 * arrives and ends when libmicrohttpd completes or drops it.  It is
 * reference counted: libmicrohttpd's side holds one reference until the
 * end; anyone keeping the pointer across a suspension (a task completing
 * it later) takes one with http_req_ref and re-checks http_req_destroyed()
 * after every wait.  At the end `destroyed` is set, the owner's done
 * callback (http_req_on_done) says why (completed, client gone, timeout,
 * error, shutdown), and the memory is freed at the end of the loop turn
 * once the last reference is dropped.  Functions on a destroyed request
 * are safe: id, method, path, params, client and body still answer,
 * headers and query give NULL, replies return -ESHUTDOWN (freeing what
 * they were given), streams -EPIPE.
 *
 * While a request is suspended (waiting for an async reply, or an SSE
 * stream waiting for data) libmicrohttpd does not watch its socket, so the
 * server does: a client that closes its end is noticed at once, the
 * connection is dropped and the owner is told HTTP_REQ_END_CLIENT_GONE.
 * (A client that pipelines another request meanwhile disables that watch
 * for this request.)  Suspended requests do not time out: the owner's
 * task bounds its own wait, and streams write heartbeats.
 *
 * Request ids: X-Request-ID when it is 1-64 chars of [A-Za-z0-9._:-], else
 * "r-<16 hex>".  Echoed in the X-Request-ID response header, in every
 * error body and in every log line about the request, including the access
 * line at completion:
 *   "http GET /v1/jobs 200 1234B 12ms id=r-... client=127.0.0.1 end=OK"
 *
 * Use (the API layer):
 *
 *   static void get_job(struct http_req *req, void *arg)      // sync
 *   {
 *           struct job *j = jobs_find(arg, http_req_param(req, "id"));
 *
 *           if (!j)
 *                   return (void)http_reply_error(req, 404, "not_found",
 *                                   "no job %s", http_req_param(req, "id"));
 *           http_reply_json(req, 200, job_json(j));   // takes the ref
 *   }
 *   // async: keep a ref, suspend, answer from a later loop callback
 *   op->req = req; http_req_ref(req); http_req_suspend(req);
 *   ...  if (!http_req_destroyed(op->req)) http_reply_json(op->req, ...);
 *        http_req_unref(op->req);
 *   // SSE: s = http_stream_start(req, "text/event-stream"); keep a ref;
 *   // http_req_on_done(req, gone_cb, task) to hear the client leave;
 *   // http_stream_write(s, ...) == -ENOBUFS -> http_stream_abort(s)
 *
 * Loop-thread only.  The caller (main) ignores SIGPIPE.
 */
#ifndef TIERGATE_HTTP_SERVER_H
#define TIERGATE_HTTP_SERVER_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

struct http_server;
struct http_req;
struct http_stream;

/* ------------------------------------------------------------ server */

struct http_server_config {
	/* "host:port", "[v6]:port" or ":port" (all IPv4 interfaces); port 0
	   picks a free one (http_server_port) */
	const char *listen;
	unsigned max_connections;	 /* total; default 1024 */
	unsigned max_connections_per_ip; /* default 256 */
	unsigned connection_timeout_s;	 /* see above; default 30 */
	size_t max_body;		 /* default 1 MiB */
	size_t max_header;		 /* default 16 KiB */
	size_t max_stream_buffer;	 /* per SSE stream; default 1 MiB */
	/* requests handed to handlers per loop turn (more wait, in order,
	   for the next turn); default 64 */
	unsigned requests_per_turn;
};
/* Zeros in a config mean these. */
#define HTTP_DEFAULT_MAX_CONNECTIONS 1024
#define HTTP_DEFAULT_MAX_CONNECTIONS_PER_IP 256
#define HTTP_DEFAULT_CONNECTION_TIMEOUT_S 30
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTP_DEFAULT_MAX_HEADER (16 * 1024)
#define HTTP_DEFAULT_MAX_STREAM_BUFFER (1024 * 1024)
#define HTTP_DEFAULT_REQUESTS_PER_TURN 32

/*
 * Bind, listen and start serving on loop l.  The config is copied.
 * NULL with errno on failure (logged with the address and the cause).
 */
struct http_server *http_server_new(struct loop *l,
				    const struct http_server_config *cfg);
/* The bound port (useful with port 0). */
unsigned http_server_port(const struct http_server *srv);
/*
 * Stop accepting: the listening socket is closed; live connections go on,
 * responses carry "Connection: close", and requests arriving from now on
 * get 503 shutting_down unless their route has HTTP_ROUTE_DRAINING.
 * Idempotent.
 */
void http_server_quiesce(struct http_server *srv);
bool http_server_quiescing(const struct http_server *srv);
/*
 * Quiesce, end every live request (owners are told HTTP_REQ_END_SHUTDOWN,
 * suspended ones are resumed), close every connection and free the
 * server.  Requests still referenced stay valid (destroyed) until their
 * last unref.  Call from a loop callback or between turns, never from a
 * handler or done callback.  NULL is ignored.
 */
void http_server_free(struct http_server *srv);

/* ----------------------------------------------------------- routing */

/* Route flags: kept for the guard (the API layer decides what they mean). */
#define HTTP_ROUTE_AUTH (1u << 0)     /* a credential is required */
#define HTTP_ROUTE_ADMIN (1u << 1)    /* admin only */
#define HTTP_ROUTE_DRAINING (1u << 2) /* served while quiescing */
#define HTTP_ROUTE_USER_SHIFT 8	      /* bits from here on: the API's own */

/*
 * A handler must, before returning: reply (http_reply_*), or start a
 * stream (http_stream_start), or suspend (http_req_suspend) and reply
 * later.  Returning without any of these is answered 500 (logged as a
 * bug).  The request is borrowed for the call.
 */
typedef void http_handler_fn(struct http_req *req, void *arg);

struct http_route {
	const char *method;  /* "GET", "POST", ... (copied) */
	const char *pattern; /* "/v1/jobs/{id}/output" (copied) */
	http_handler_fn *handler;
	void *arg;
	unsigned flags; /* HTTP_ROUTE_* */
};

/*
 * Add a route.  Patterns are '/'-separated segments, each a literal or a
 * {name} matching one non-empty segment; a path matching several routes
 * takes the one with the most literal segments (then the first added).
 * HEAD is served by the GET route.  A path matching a pattern but not the
 * method gets 405 method_not_allowed with Allow; no pattern, 404
 * not_found ("no route for GET /x").  0, -EINVAL (bad pattern or
 * duplicate), -ENOMEM.
 */
int http_server_route(struct http_server *srv, const struct http_route *r);

/*
 * Optional hook run before every matched handler (authentication):
 * return HTTP_GUARD_PASS to run the handler now, or HTTP_GUARD_HELD after
 * replying (e.g. 401) or suspending; a suspended request continues later
 * with http_req_proceed (or gets a reply).
 */
enum http_guard_result { HTTP_GUARD_PASS, HTTP_GUARD_HELD };
typedef enum http_guard_result
http_guard_fn(struct http_req *req, const struct http_route *route, void *arg);
void http_server_set_guard(struct http_server *srv, http_guard_fn *fn,
			   void *arg);

/* ------------------------------------------------------------ request */

#define HTTP_REQ_ID_MAX 64

/* Request states, for logs and debug strings. */
#define HTTP_REQ_STATES(X)                                                     \
	X(RECEIVING) /* headers and body arriving */                           \
	X(HANDLING)  /* guard/handler running */                               \
	X(SUSPENDED) /* waiting for an async reply (or http_req_proceed) */    \
	X(REPLIED)   /* a response is queued or being sent */                  \
	X(STREAMING) /* an SSE/streaming response is open */                   \
	X(DONE)	     /* ended: destroyed */

enum http_req_state {
#define HTTP_REQ_STATE_ENUM_(name) HTTP_REQ_##name,
	HTTP_REQ_STATES(HTTP_REQ_STATE_ENUM_)
#undef HTTP_REQ_STATE_ENUM_
};
const char *http_req_state_name(enum http_req_state s);

/* Why a request ended. */
#define HTTP_REQ_ENDS(X)                                                       \
	X(OK)	       /* the response was sent */                             \
	X(CLIENT_GONE) /* the client closed or reset the connection */         \
	X(TIMEOUT)     /* a connection timeout or request deadline */          \
	X(ERROR)       /* protocol or internal error, stream aborted */        \
	X(SHUTDOWN)    /* http_server_free */

enum http_req_end {
#define HTTP_REQ_END_ENUM_(name) HTTP_REQ_END_##name,
	HTTP_REQ_ENDS(HTTP_REQ_END_ENUM_)
#undef HTTP_REQ_END_ENUM_
};
const char *http_req_end_name(enum http_req_end e);

/*
 * Called once when the request ends, before `destroyed` takes effect for
 * the caller's next step.  It may unref, cancel a task, wake; it must not
 * reply (the request is ending) or free the server.
 */
typedef void http_req_done_fn(struct http_req *req, enum http_req_end how,
			      void *arg);
/* One owner callback per request (the last one set wins). */
void http_req_on_done(struct http_req *req, http_req_done_fn *fn, void *arg);

void http_req_ref(struct http_req *req);
/* At 0 refs (and ended) the memory goes at the end of the turn. */
void http_req_unref(struct http_req *req);
bool http_req_destroyed(const struct http_req *req);
enum http_req_state http_req_state(const struct http_req *req);

/*
 * Getters.  Strings are borrowed: id, method, path, client and params
 * live as long as the request object; headers and query values only until
 * the request ends (NULL afterwards).
 */
const char *http_req_id(const struct http_req *req);
const char *http_req_method(const struct http_req *req);
/* Decoded path without the query ("/v1/jobs/j-1"). */
const char *http_req_path(const struct http_req *req);
/* A {name} of the matched route's pattern; NULL when absent. */
const char *http_req_param(const struct http_req *req, const char *name);
/* Decoded query argument; "" for "?flag", NULL when absent. */
const char *http_req_query(const struct http_req *req, const char *name);
/* Request header, case-insensitive name. */
const char *http_req_header(const struct http_req *req, const char *name);
/* "127.0.0.1" or "::1". */
const char *http_req_client(const struct http_req *req);
/* The body received so far (the whole body once a handler runs). */
const void *http_req_body(const struct http_req *req, size_t *len);
/* The matched route; NULL before routing, on 404/405, or once ended. */
const struct http_route *http_req_route(const struct http_req *req);
/* Milliseconds since the request line arrived. */
uint64_t http_req_age_ms(const struct http_req *req);

/*
 * One pointer for the API layer (the authenticated user...).  free_fn
 * (may be NULL) runs when the request object is freed.
 */
void http_req_set_data(struct http_req *req, void *data,
		       void (*free_fn)(void *data));
void *http_req_data(const struct http_req *req);

/*
 * The body as JSON (Content-Type application/json, nesting <= 32).
 * 0 and *out (a new reference); on failure the request has been answered
 * (415 unsupported_media_type or 400 invalid_json naming line and column)
 * and a negative errno is returned.
 */
int http_req_body_json(struct http_req *req, json_t **out);

/*
 * "req r-... GET /v1/jobs state=SUSPENDED refs=2 destroyed=0 status=-
 * age=15ms client=127.0.0.1 flags=susp,watch".  Returns buf.
 */
const char *http_req_debug_str(const struct http_req *req, char *buf,
			       size_t len);

/* --------------------------------------------------------- suspension */

/*
 * Give control back to the loop: the request is answered later, from any
 * loop callback, with http_reply_* or http_stream_start (which resume
 * it).  Take a reference first if the pointer is kept.  0; -EINVAL if
 * already answered; -ESHUTDOWN if ended.
 */
int http_req_suspend(struct http_req *req);
/*
 * After a guard returned HTTP_GUARD_HELD and suspended: run the route's
 * handler now (from a loop callback).  0, -EINVAL (not suspended by a
 * guard), -ESHUTDOWN (ended).
 */
int http_req_proceed(struct http_req *req);

/* ------------------------------------------------------------ replies */

/*
 * Add a header to the reply to come (Allow, WWW-Authenticate, Location,
 * Retry-After...).  Copied.  0, -EINVAL (bad name/value: CR/LF),
 * -ENOMEM, -ESHUTDOWN.
 */
int http_reply_header(struct http_req *req, const char *name,
		      const char *value);
/*
 * Answer with JSON (Content-Type: application/json).  Takes ownership of
 * `body` (a new reference, as json_object_set_new) in every case.
 * 0; -EINVAL when already answered; -ESHUTDOWN when the request has ended;
 * -ENOMEM.
 */
int http_reply_json(struct http_req *req, unsigned status, json_t *body);
/*
 * Answer with the error shape of docs/api.md.  (status, code) must be a
 * row of the table (http_response.c); status 0 takes the code's status.
 * A pair not in the table is a bug: logged, and answered 500 internal.
 * Returns as http_reply_json.
 */
int http_reply_error(struct http_req *req, unsigned status, const char *code,
		     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int http_reply_verror(struct http_req *req, unsigned status, const char *code,
		      const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* Answer with text (e.g. "text/plain; version=0.0.4" for /metrics). */
int http_reply_text(struct http_req *req, unsigned status,
		    const char *content_type, const char *text);
/* Same with bytes of a given length (copied). */
int http_reply_data(struct http_req *req, unsigned status,
		    const char *content_type, const void *data, size_t len);

/* ------------------------------------------------------------ streams */

/*
 * Start a streaming 200 response (chunked) with this Content-Type, e.g.
 * "text/event-stream" (Cache-Control: no-cache is added).  The stream
 * lives inside the request: keep a reference on http_stream_req() while
 * writing from other callbacks.  NULL with errno: EINVAL (already
 * answered), ESHUTDOWN (ended), ENOMEM.
 */
struct http_stream *http_stream_start(struct http_req *req,
				      const char *content_type);
struct http_req *http_stream_req(struct http_stream *s);
/*
 * Queue bytes (copied).  0; -ENOBUFS when the stream would hold more
 * than max_stream_buffer unsent bytes (nothing queued: the reader is too
 * slow, drop it with http_stream_abort); -EPIPE when the request has ended
 * or the stream was closed or aborted.
 */
int http_stream_write(struct http_stream *s, const void *data, size_t len);
/* Bytes queued and not yet handed to the socket. */
size_t http_stream_buffered(const struct http_stream *s);
/*
 * Call fn(s, arg) each time libmicrohttpd took queued bytes for the
 * socket (http_stream_buffered tells how many are left): a writer that
 * paused above its own high-water mark resumes here instead of polling.
 * From inside MHD_run: fn may wake a task, not write or end the stream.
 * NULL fn: none.  The buffer of a stream with nothing queued is freed.
 */
typedef void http_stream_drain_fn(struct http_stream *s, void *arg);
void http_stream_on_drain(struct http_stream *s, http_stream_drain_fn *fn,
			  void *arg);
/* End the stream cleanly once everything queued is sent.  Idempotent. */
void http_stream_close(struct http_stream *s);
/*
 * Drop the connection now (a reader too slow, a protocol error); the
 * owner is told HTTP_REQ_END_ERROR.  Idempotent.
 */
void http_stream_abort(struct http_stream *s);

/* ----------------------------------------------------- introspection */

#define HTTP_STATUS_MAX 600

struct http_server_stats {
	unsigned connections_active;
	unsigned requests_active; /* created and not ended */
	unsigned suspended;	  /* requests suspended in MHD now */
	unsigned held;		  /* read, waiting for a later turn */
	unsigned streams_active;
	unsigned lingering; /* rejected sockets being closed gently */
	uint64_t connections_total;
	uint64_t rejected_limit; /* 429 at accept */
	uint64_t timeouts;	 /* 408 deadlines + MHD inactivity */
	uint64_t requests_total; /* ended */
	uint64_t held_total;	 /* requests that waited a turn or more */
	uint64_t by_class[6];	 /* [1..5]: 1xx..5xx; [0]: no status */
	uint64_t client_gone;	 /* ended CLIENT_GONE */
	uint64_t bytes_in;	 /* request bodies */
	uint64_t bytes_out;	 /* response bodies (stream bytes too) */
	uint64_t by_status[HTTP_STATUS_MAX]; /* ended requests by status */
};
void http_server_stats(const struct http_server *srv,
		       struct http_server_stats *st);

/*
 * "http_server 127.0.0.1:8480 conns=3/1024 reqs=1 susp=1 streams=0
 * linger=0 quiescing=0 total=120 rejected=0 timeouts=0".  Returns buf.
 */
const char *http_server_debug_str(const struct http_server *srv, char *buf,
				  size_t len);

#endif
