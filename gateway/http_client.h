/*
 * http_client.h: outgoing HTTP/1.1 on the loop.  One libcurl multi handle
 * per client (one client per loop), driven the curl docs/examples/
 * hiperfifo.c way:
 *
 *   CURLMOPT_SOCKETFUNCTION  -> loop_io_add / loop_io_modify / loop_io_close
 *                               (the loop_io is kept with curl_multi_assign)
 *   CURLMOPT_TIMERFUNCTION   -> loop_timer_start(ms) / loop_timer_stop (-1)
 *   io callback              -> curl_multi_socket_action(fd, IN|OUT|ERR)
 *   timer callback           -> curl_multi_socket_action(CURL_SOCKET_TIMEOUT)
 *   after each socket_action -> drain curl_multi_info_read
 *
 * No user code ever runs inside a libcurl callback or inside
 * curl_multi_socket_action: completions are recorded while draining and
 * delivered afterwards (a task wake, or a deferred callback), so any
 * function below may be called from a task step or a completion callback.
 *
 * A request:
 *
 *   req = http_request_new(c, "POST", "http://127.0.0.1:6820", "/x?y=1");
 *   http_request_add_header(req, "X-Token", tok);       // copied, never logged
 *   http_request_set_body(req, json, len, "application/json");   // copied
 *   http_request_set_task(req, &job->task);   // or http_request_set_callback
 *   if (http_request_start(req) < 0) ...      // nothing will be delivered
 *   ... return TASK_WAIT; ... woken with HTTP_REQUEST_WAKE:
 *   if (!http_request_done(req)) return TASK_WAIT;      // another wake
 *   rc = http_request_result(req);  // 0: an HTTP answer (any status)
 *   status = http_request_status(req); body = http_request_body(req, &len);
 *   http_request_close(req); req = NULL;
 *
 * Base URLs: "http://host:port[/prefix]", "https://..." or "unix:/abs/path"
 * (a unix socket: CURLOPT_UNIX_SOCKET_PATH with http://localhost + path).
 * The path (with its query) is appended verbatim to the base.
 *
 * Per-host bound: http_client_set_host_limit() caps the transfers active at
 * once towards one base (scheme://host:port, or the unix socket path); the
 * others wait in FIFO order, and the wait counts against their total
 * timeout: one that could not start with at least min(connect timeout,
 * half the total) left fails unsent (-EAGAIN).  This is the per-site connection
 * bound: a transfer holds one connection, and idle connections are reused
 * (keep-alive) from curl's cache.  CURLMOPT_MAX_HOST_CONNECTIONS is also set
 * from the options, as a backstop (curl counts all unix sockets as one host,
 * hence our own queue).
 *
 * Life cycle: http_request_new gives the caller one reference; a request
 * in flight holds another (and a task reference when it has a task).
 * http_request_close() cancels, sets `destroyed` and drops the caller's
 * reference; memory is freed at the end of the loop turn in which the last
 * reference goes.  The client is reference counted by its requests, so
 * http_client_free() may come first: it fails what is in flight with
 * -ESHUTDOWN (delivered like any completion) and closes every socket.
 *
 * Loop-thread only.
 */
#ifndef TIERGATE_HTTP_CLIENT_H
#define TIERGATE_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "task.h"

struct http_client;
struct http_request;

#define HTTP_DEFAULT_TIMEOUT_MS 10000u
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 3000u
#define HTTP_DEFAULT_MAX_RESPONSE (16u * 1024 * 1024)
/* The wake a request's task gets on completion (io_revents untouched). */
#define HTTP_REQUEST_WAKE TASK_WAKE_IO

/* Zero means the default for every field. */
struct http_client_opts {
	long max_host_connections;  /* CURLMOPT_MAX_HOST_CONNECTIONS */
	long max_total_connections; /* CURLMOPT_MAX_TOTAL_CONNECTIONS */
	long max_idle_connections;  /* CURLMOPT_MAXCONNECTS (the cache) */
	uint32_t timeout_ms;	    /* per request, HTTP_DEFAULT_TIMEOUT_MS */
	uint32_t connect_timeout_ms;
	size_t max_response; /* body cap, HTTP_DEFAULT_MAX_RESPONSE */
};

/*
 * curl_global_init, once.  Call it from main before any thread starts;
 * http_client_new calls it too (harmless when already done).  0 or -EIO.
 */
int http_client_global_init(void);

/* A client on loop l (opts may be NULL).  NULL with errno on failure. */
struct http_client *http_client_new(struct loop *l,
				    const struct http_client_opts *opts);
/*
 * Shut down: every queued or active request completes with -ESHUTDOWN
 * (tasks woken, callbacks deferred as usual), curl's sockets are closed and
 * its timer stopped; new requests are refused.  Drops the creator's
 * reference: the memory goes with the last request.  NULL is ignored.
 */
void http_client_free(struct http_client *c);

/*
 * At most max_active transfers at once towards `base` (0: no bound).
 * 0, -EINVAL (bad base), -ENOMEM.  Lowering the bound does not stop
 * transfers already active.
 */
int http_client_set_host_limit(struct http_client *c, const char *base,
			       unsigned max_active);

#define HTTP_HOST_KEY_MAX 160

struct http_host_stats {
	char key[HTTP_HOST_KEY_MAX]; /* "http://127.0.0.1:6820", "unix:/p" */
	unsigned limit, active, queued;
	uint64_t started;   /* http_request_start calls */
	uint64_t ok;	    /* got an HTTP answer (any status) */
	uint64_t failed;    /* transport errors other than timeouts */
	uint64_t timed_out; /* -ETIMEDOUT on the wire, -EAGAIN queued */
	uint64_t cancelled; /* http_request_cancel/close while in flight */
	uint64_t connects;  /* new connections (the rest were reused) */
};

struct http_client_stats {
	unsigned hosts, active, queued, sockets;
	bool timer_armed;
	uint64_t started, ok, failed, timed_out, cancelled, connects;
};

void http_client_stats(struct http_client *c, struct http_client_stats *st);
/* 0 and *st for the host of `base`; -ENOENT if never used; -EINVAL. */
int http_client_host_stats(struct http_client *c, const char *base,
			   struct http_host_stats *st);
typedef void http_host_stats_fn(const struct http_host_stats *st, void *arg);
/* Visit every host seen so far, in first-use order. */
void http_client_foreach_host(struct http_client *c, http_host_stats_fn *fn,
			      void *arg);
/*
 * "http_client active=2 queued=0 sockets=2 timer=15ms hosts=1 started=10
 * ok=8 failed=1 timed_out=1 cancelled=0 connects=3 refs=4 shut=0".
 */
const char *http_client_debug_str(struct http_client *c, char *buf, size_t len);

/* ------------------------------------------------------------ requests */

#define HTTP_REQUEST_STATES(X)                                                 \
	X(NEW)	     /* being set up */                                        \
	X(QUEUED)    /* started, waiting for a slot of its host */             \
	X(ACTIVE)    /* in curl */                                             \
	X(DONE)	     /* finished: see http_request_result */                   \
	X(CANCELLED) /* cancelled or closed: nothing is delivered */

enum http_request_state {
#define HTTP_REQUEST_STATE_ENUM_(name) HTTP_REQUEST_##name,
	HTTP_REQUEST_STATES(HTTP_REQUEST_STATE_ENUM_)
#undef HTTP_REQUEST_STATE_ENUM_
};
const char *http_request_state_name(enum http_request_state s);

/* Called once, on the loop thread, in the RUN_DEFERRED phase. */
typedef void http_request_cb(struct http_request *req, void *arg);

/*
 * A new request (state NEW, one reference for the caller).  method: GET,
 * HEAD, POST, PUT, PATCH or DELETE.  base and path are copied; path may be
 * NULL.  NULL with errno: EINVAL (method, base), ESHUTDOWN, ENOMEM.
 */
struct http_request *http_request_new(struct http_client *c, const char *method,
				      const char *base, const char *path);
/* Header "name: value", copied.  Values are never logged. 0/-EINVAL/-ENOMEM
 * (-EBUSY once started). */
int http_request_add_header(struct http_request *req, const char *name,
			    const char *value);
/* Body, copied; content_type may be NULL.  0/-ENOMEM/-EBUSY. */
int http_request_set_body(struct http_request *req, const void *body,
			  size_t len, const char *content_type);
/* 0 keeps the client's default.  Both are always set on the transfer. */
void http_request_set_timeouts(struct http_request *req, uint32_t total_ms,
			       uint32_t connect_ms);
/* Response body cap (bigger: -EFBIG); 0 keeps the client's default. */
void http_request_set_max_response(struct http_request *req, size_t max);
/*
 * Wake t with HTTP_REQUEST_WAKE when the request is DONE.  A task
 * reference is held from start until then (or until cancel).
 */
void http_request_set_task(struct http_request *req, struct task *t);
/* Call cb(req, arg) when the request is DONE (a later turn). */
void http_request_set_callback(struct http_request *req, http_request_cb *cb,
			       void *arg);

/*
 * Send it.  0: the completion (task wake and/or callback) will be
 * delivered exactly once, unless the request is cancelled first.  < 0:
 * nothing was sent and nothing will be delivered: -EALREADY (not NEW),
 * -ESHUTDOWN, -ENOMEM, -EINVAL.
 */
int http_request_start(struct http_request *req);
/*
 * Cancel: a queued request leaves its queue, an active one is removed from
 * curl (its connection is closed if the transfer had not finished).  Safe
 * at any time on the loop thread.  Nothing is delivered afterwards (a
 * completion already recorded but not yet delivered is suppressed).
 * 0 (now CANCELLED), -EALREADY (already DONE, result kept, or CANCELLED).
 */
int http_request_cancel(struct http_request *req);
/* Cancel, set destroyed, drop the caller's reference.  NULL is ignored. */
void http_request_close(struct http_request *req);
void http_request_ref(struct http_request *req);
void http_request_unref(struct http_request *req);

enum http_request_state http_request_state(const struct http_request *req);
bool http_request_done(const struct http_request *req); /* state DONE */
bool http_request_destroyed(const struct http_request *req);
/*
 * Once DONE: 0 when an HTTP answer came back (whatever its status), else
 * -ETIMEDOUT (total or connect timeout, on the wire: it may have been
 * acted on), -EAGAIN (queued for a host slot until too little of the
 * total timeout was left to send it: NOT sent),
 * -ECONNREFUSED (or connect's own errno when it says more: -ENOENT for a
 * missing unix socket, -EACCES, -ENETUNREACH), -EHOSTUNREACH (name did not
 * resolve), -ECONNRESET (closed / empty
 * reply / reset), -EPROTO (not HTTP: garbage), -EFBIG (body over the cap),
 * -ESHUTDOWN (client freed), -ENOMEM, -EIO (other).  -EINPROGRESS before.
 */
int http_request_result(const struct http_request *req);
/* HTTP status, 0 when none. */
long http_request_status(const struct http_request *req);
/* Response body, NUL-terminated (the NUL is not counted); borrowed until
 * the request is freed.  "" when none.  len may be NULL. */
const char *http_request_body(const struct http_request *req, size_t *len);
/*
 * Take the response body (malloc'ed, NUL-terminated; the caller frees
 * it): NULL when there was none.  The request's body is "" afterwards.
 * For a big answer parsed elsewhere (a worker) after the request closed.
 */
char *http_request_take_body(struct http_request *req, size_t *len);
/* Content-Type of the answer, or "" (borrowed). */
const char *http_request_content_type(const struct http_request *req);
/* libcurl's own error text, "" when none (borrowed). */
const char *http_request_error(const struct http_request *req);
/* Start to DONE (or to now while in flight), ms; 0 before start. */
uint64_t http_request_elapsed_ms(const struct http_request *req);
/* New connections opened for this transfer (0: a kept-alive one). */
long http_request_connects(const struct http_request *req);
/*
 * "http#12 POST http://127.0.0.1:6820/x?token=[REDACTED]&y=1 state=ACTIVE
 * 153ms status=0 rc=0 refs=2 destroyed=0" (query values whose name looks
 * secret are redacted, user info dropped, headers and body never shown).
 */
const char *http_request_debug_str(const struct http_request *req, char *buf,
				   size_t len);

#endif
