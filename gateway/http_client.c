/*
 * http_client.c: libcurl multi on the loop (see http_client.h).
 *
 * Who owns what:
 *  - the client owns the CURLM, its timer, one struct http_sock per socket
 *    curl asked us to watch (kept with curl_multi_assign), and the hosts;
 *  - a request owns its easy handle from start until it is DONE or
 *    CANCELLED (the handle is removed from the multi and cleaned up at
 *    that moment, so a finished request holds no curl resources);
 *  - every request holds a reference on its client, so the client's memory
 *    outlives every request pointing at it.
 *
 * Nothing here calls user code from inside a curl callback or from inside
 * curl_multi_socket_action: the drain after socket_action only records
 * results, wakes tasks (a deferred step) and defers callbacks.
 */
#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "log.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define HTTP_LOG_URL_MAX 512
#define HTTP_ERROR_MAX CURL_ERROR_SIZE

struct http_sock {
	struct http_sock *prev, *next;
	struct loop_io *io;
	curl_socket_t fd;
};

struct http_host {
	struct http_host *next;
	char key[HTTP_HOST_KEY_MAX];
	unsigned limit, active, queued;
	struct http_request *qhead, *qtail;
	uint64_t started, ok, failed, timed_out, cancelled, connects;
};

struct http_client {
	struct loop *loop;
	CURLM *multi;
	struct loop_timer timer;
	unsigned refs;
	bool shut;
	struct http_client_opts opts;
	struct http_host *hosts, *hosts_tail;
	unsigned n_hosts;
	struct http_request *active; /* ACTIVE requests, doubly linked */
	unsigned n_active, n_queued;
	struct http_sock *socks;
	unsigned n_socks;
	uint64_t next_id;
	uint64_t started, ok, failed, timed_out, cancelled, connects;
};

struct http_request {
	struct http_client *client;
	struct http_host *host;
	uint64_t id;
	unsigned refs;
	bool destroyed;
	bool in_flight;	       /* holds the in-flight reference */
	bool delivery_pending; /* callback deferred, not yet run */
	bool too_big;
	bool oom;
	bool expect_off; /* "Expect:" added to headers */
	enum http_request_state state;
	char method[8];
	char *url;	 /* what curl fetches */
	char *unix_path; /* NULL: TCP */
	char *log_url;	 /* redacted, for logs */
	struct curl_slist *headers;
	bool has_body;
	char *body;
	size_t body_len;
	uint32_t timeout_ms, connect_timeout_ms;
	size_t max_response;
	struct task *task; /* referenced while in flight */
	http_request_cb *cb;
	void *cb_arg;
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
	/* result */
	int result;
	long status;
	long connects;
	char *resp;
	size_t resp_len, resp_cap;
	char *content_type;
	char error[HTTP_ERROR_MAX];
	uint64_t started_ms, ended_ms;
	/* links: the host's queue (QUEUED) or the client's active list */
	struct http_request *prev, *next;
	struct loop_timer queue_timer;
	struct loop_defer deliver;
	struct loop_closing closing;
};

static const char *const http_request_state_names[] = {
#define HTTP_REQUEST_STATE_NAME_(name) #name,
    HTTP_REQUEST_STATES(HTTP_REQUEST_STATE_NAME_)
#undef HTTP_REQUEST_STATE_NAME_
};

const char *http_request_state_name(enum http_request_state s)
{
	if ((unsigned)s >= sizeof(http_request_state_names) /
			       sizeof(http_request_state_names[0]))
		return "?";
	return http_request_state_names[s];
}

static void drain(struct http_client *c);
static void host_kick(struct http_client *c, struct http_host *h);

/* Every transition is logged (dbg) with the line, as curl's mstate(). */
#define req_set_state(r, s) req_set_state_((r), (s), __LINE__)
static void req_set_state_(struct http_request *req, enum http_request_state s,
			   int line)
{
	dbg("http#%" PRIu64 " %s -> %s (line %d)", req->id,
	    http_request_state_name(req->state), http_request_state_name(s),
	    line);
	req->state = s;
}

/* ------------------------------------------------------------ global */

int http_client_global_init(void)
{
	static bool done;
	CURLcode rc;

	if (done)
		return 0;
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK) {
		log_err("curl_global_init: %s", curl_easy_strerror(rc));
		return -EIO;
	}
	done = true;
	return 0;
}

/* ------------------------------------------------------- URL helpers */

static bool name_looks_secret(const char *k, size_t n)
{
	static const char *const words[] = {"token", "secret", "pass",
					    "key",   "auth",   "sig",
					    "jwt",   "cred",   "session"};
	char low[64];
	size_t i;

	if (n >= sizeof(low))
		n = sizeof(low) - 1;
	for (i = 0; i < n; i++)
		low[i] =
		    (char)((k[i] >= 'A' && k[i] <= 'Z') ? k[i] + 32 : k[i]);
	low[n] = '\0';
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(low, words[i]))
			return true;
	return false;
}

/* URL for logs: user info dropped, secret-looking query values redacted. */
static char *make_log_url(const char *shown_base, const char *path)
{
	char out[HTTP_LOG_URL_MAX];
	size_t o = 0;
	const char *p, *q, *auth, *at, *slash;

#define PUT(s, n)                                                              \
	do {                                                                   \
		size_t n_ = (n);                                               \
		if (n_ > sizeof(out) - 1 - o)                                  \
			n_ = sizeof(out) - 1 - o;                              \
		memcpy(out + o, (s), n_);                                      \
		o += n_;                                                       \
	} while (0)

	auth = strstr(shown_base, "://");
	if (auth) {
		auth += 3;
		slash = strchr(auth, '/');
		at = strchr(auth, '@');
		if (at && (!slash || at < slash)) {
			PUT(shown_base, (size_t)(auth - shown_base));
			shown_base = at + 1;
		}
	}
	PUT(shown_base, strlen(shown_base));
	if (!path)
		path = "";
	q = strchr(path, '?');
	if (!q) {
		PUT(path, strlen(path));
	} else {
		PUT(path, (size_t)(q - path) + 1);
		p = q + 1;
		while (*p) {
			const char *amp = strchr(p, '&');
			const char *end = amp ? amp : p + strlen(p);
			const char *eq = memchr(p, '=', (size_t)(end - p));

			if (eq && name_looks_secret(p, (size_t)(eq - p))) {
				PUT(p, (size_t)(eq - p) + 1);
				PUT("[REDACTED]", 10);
			} else {
				PUT(p, (size_t)(end - p));
			}
			if (!amp)
				break;
			PUT("&", 1);
			p = amp + 1;
		}
	}
	out[o] = '\0';
#undef PUT
	return strdup(out);
}

static bool path_ok(const char *path)
{
	const unsigned char *p;

	if (!path || !*path)
		return true;
	if (path[0] != '/')
		return false;
	for (p = (const unsigned char *)path; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/*
 * Split a base into what curl needs and the host key.  On success *url,
 * *unix_path (may stay NULL) and *log_url are malloc'd.
 */
static int parse_base(const char *base, const char *path, char *key,
		      size_t keylen, char **url, char **unix_path,
		      char **log_url)
{
	size_t blen;
	int n;

	*url = *unix_path = *log_url = NULL;
	if (!base || !path_ok(path))
		return -EINVAL;
	if (!path)
		path = "";
	if (strncmp(base, "unix:", 5) == 0) {
		const char *sp = base + 5;

		if (sp[0] != '/' ||
		    strlen(sp) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return -EINVAL;
		n = snprintf(key, keylen, "unix:%s", sp);
		if (n < 0 || (size_t)n >= keylen)
			return -EINVAL;
		*unix_path = strdup(sp);
		if (asprintf(url, "http://localhost%s", *path ? path : "/") < 0)
			*url = NULL;
		*log_url = make_log_url(base, path);
	} else {
		CURLU *u = curl_url();
		char *scheme = NULL, *host = NULL, *port = NULL, *query = NULL;
		CURLUcode uc;
		int rv = 0;

		if (!u)
			return -ENOMEM;
		if (strncasecmp(base, "http://", 7) != 0 &&
		    strncasecmp(base, "https://", 8) != 0)
			rv = -EINVAL;
		if (!rv && curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
			rv = -EINVAL;
		if (!rv && (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
			    curl_url_get(u, CURLUPART_HOST, &host, 0) ||
			    curl_url_get(u, CURLUPART_PORT, &port,
					 CURLU_DEFAULT_PORT)))
			rv = -EINVAL;
		if (!rv) {
			uc = curl_url_get(u, CURLUPART_QUERY, &query, 0);
			if (uc == CURLUE_OK || strchr(base, '#'))
				rv = -EINVAL; /* a base has no query */
		}
		if (!rv) {
			char *h;

			for (h = host; *h; h++)
				if (*h >= 'A' && *h <= 'Z')
					*h = (char)(*h + 32);
			n = snprintf(key, keylen, "%s://%s:%s", scheme, host,
				     port);
			if (n < 0 || (size_t)n >= keylen)
				rv = -EINVAL;
		}
		curl_free(scheme);
		curl_free(host);
		curl_free(port);
		curl_free(query);
		curl_url_cleanup(u);
		if (rv)
			return rv;
		blen = strlen(base);
		while (blen > 0 && base[blen - 1] == '/')
			blen--;
		if (asprintf(url, "%.*s%s", (int)blen, base, path) < 0)
			*url = NULL;
		{
			char *shown = strndup(base, blen);

			if (shown)
				*log_url = make_log_url(shown, path);
			free(shown);
		}
	}
	if (!*url || !*log_url ||
	    (strncmp(base, "unix:", 5) == 0 && !*unix_path)) {
		free(*url);
		free(*unix_path);
		free(*log_url);
		*url = *unix_path = *log_url = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* ------------------------------------------------------------- hosts */

static struct http_host *host_find(struct http_client *c, const char *key)
{
	struct http_host *h;

	for (h = c->hosts; h; h = h->next)
		if (strcmp(h->key, key) == 0)
			return h;
	return NULL;
}

static struct http_host *host_get(struct http_client *c, const char *key)
{
	struct http_host *h = host_find(c, key);

	if (h)
		return h;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	snprintf(h->key, sizeof(h->key), "%s", key);
	if (c->hosts_tail)
		c->hosts_tail->next = h;
	else
		c->hosts = h;
	c->hosts_tail = h;
	c->n_hosts++;
	return h;
}

static int base_key(const char *base, char *key, size_t keylen)
{
	char *url, *unix_path, *log_url;
	int rv = parse_base(base, "", key, keylen, &url, &unix_path, &log_url);

	free(url);
	free(unix_path);
	free(log_url);
	return rv;
}

/* ------------------------------------------------------------ client */

static void client_unref(struct http_client *c)
{
	struct http_host *h, *next;

	if (--c->refs > 0)
		return;
	for (h = c->hosts; h; h = next) {
		next = h->next;
		free(h);
	}
	free(c);
}

static void io_cb(struct loop_io *io, int fd, unsigned revents, void *arg)
{
	struct http_client *c = arg;
	int flags = 0, running = 0;
	CURLMcode mc;

	if (!c->multi)
		return;
	if (revents & POLLIN)
		flags |= CURL_CSELECT_IN;
	if (revents & POLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (revents & (POLLERR | POLLHUP | POLLNVAL))
		flags |= CURL_CSELECT_ERR;
	mc = curl_multi_socket_action(c->multi, fd, flags, &running);
	if (mc != CURLM_OK)
		log_err("curl_multi_socket_action(fd %d): %s", fd,
			curl_multi_strerror(mc));
	drain(c);
}

static void timer_cb(struct loop_timer *t, void *arg)
{
	struct http_client *c = arg;
	int running = 0;
	CURLMcode mc;

	if (!c->multi)
		return;
	mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0,
				      &running);
	if (mc != CURLM_OK)
		log_err("curl_multi_socket_action(timeout): %s",
			curl_multi_strerror(mc));
	drain(c);
}

static void sock_free(struct http_client *c, struct http_sock *s)
{
	loop_io_close(s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	c->n_socks--;
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION */
static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp,
		     void *socketp)
{
	struct http_client *c = userp;
	struct http_sock *s = socketp;
	unsigned events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s)
			sock_free(c, s);
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= POLLIN;
	if (what & CURL_POLL_OUT)
		events |= POLLOUT;
	if (s)
		return loop_io_modify(s->io, events) == 0 ? 0 : -1;
	s = calloc(1, sizeof(*s));
	if (!s) {
		log_err("socket fd %d: out of memory", fd);
		return -1;
	}
	s->fd = fd;
	s->io = loop_io_add(c->loop, fd, events, io_cb, c);
	if (!s->io) {
		log_err("loop_io_add(fd %d): %s", fd, strerror(errno));
		free(s);
		return -1;
	}
	s->next = c->socks;
	if (c->socks)
		c->socks->prev = s;
	c->socks = s;
	c->n_socks++;
	curl_multi_assign(c->multi, fd, s);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int multi_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct http_client *c = userp;

	if (timeout_ms < 0)
		loop_timer_stop(&c->timer);
	else
		loop_timer_start(c->loop, &c->timer, (uint64_t)timeout_ms,
				 timer_cb, c);
	return 0;
}

struct http_client *http_client_new(struct loop *l,
				    const struct http_client_opts *opts)
{
	struct http_client *c;
	CURLMcode mc = CURLM_OK;

	if (!l) {
		errno = EINVAL;
		return NULL;
	}
	if (http_client_global_init() < 0) {
		errno = EIO;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->loop = l;
	c->refs = 1;
	c->next_id = 1;
	loop_timer_init(&c->timer);
	if (opts)
		c->opts = *opts;
	if (!c->opts.timeout_ms)
		c->opts.timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
	if (!c->opts.connect_timeout_ms)
		c->opts.connect_timeout_ms = HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
	if (!c->opts.max_response)
		c->opts.max_response = HTTP_DEFAULT_MAX_RESPONSE;
	c->multi = curl_multi_init();
	if (!c->multi) {
		free(c);
		errno = ENOMEM;
		return NULL;
	}
#define MSET(opt, val)                                                         \
	do {                                                                   \
		if (mc == CURLM_OK)                                            \
			mc = curl_multi_setopt(c->multi, opt, val);            \
	} while (0)
	MSET(CURLMOPT_SOCKETFUNCTION, socket_cb);
	MSET(CURLMOPT_SOCKETDATA, c);
	MSET(CURLMOPT_TIMERFUNCTION, multi_timer_cb);
	MSET(CURLMOPT_TIMERDATA, c);
	MSET(CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	if (c->opts.max_host_connections > 0)
		MSET(CURLMOPT_MAX_HOST_CONNECTIONS,
		     c->opts.max_host_connections);
	if (c->opts.max_total_connections > 0)
		MSET(CURLMOPT_MAX_TOTAL_CONNECTIONS,
		     c->opts.max_total_connections);
	if (c->opts.max_idle_connections > 0)
		MSET(CURLMOPT_MAXCONNECTS, c->opts.max_idle_connections);
#undef MSET
	if (mc != CURLM_OK) {
		log_err("curl_multi_setopt: %s", curl_multi_strerror(mc));
		curl_multi_cleanup(c->multi);
		free(c);
		errno = EINVAL;
		return NULL;
	}
	dbg("http_client %p created", (void *)c);
	return c;
}

/* --------------------------------------------------------- requests */

static void req_closing_fn(struct loop_closing *cl)
{
	struct http_request *req =
	    container_of(cl, struct http_request, closing);
	struct curl_slist *sl;

	dbg("http#%" PRIu64 " freed", req->id);
	for (sl = req->headers; sl; sl = sl->next)
		explicit_bzero(sl->data, strlen(sl->data)); /* tokens */
	curl_slist_free_all(req->headers);
	free(req->url);
	free(req->unix_path);
	free(req->log_url);
	free(req->body);
	free(req->resp);
	free(req->content_type);
	client_unref(req->client);
	free(req);
}

void http_request_ref(struct http_request *req)
{
	req->refs++;
}

void http_request_unref(struct http_request *req)
{
	if (!req)
		return;
	if (req->refs == 0) {
		log_err("http#%" PRIu64 " unref with no reference", req->id);
		return;
	}
	if (--req->refs > 0)
		return;
	loop_close_at_end(req->client->loop, &req->closing, req_closing_fn);
}

static void drop_in_flight(struct http_request *req)
{
	struct task *t = req->task;

	req->task = NULL;
	if (t)
		task_unref(t);
	if (req->in_flight) {
		req->in_flight = false;
		http_request_unref(req);
	}
}

struct http_request *http_request_new(struct http_client *c, const char *method,
				      const char *base, const char *path)
{
	static const char *const methods[] = {"GET", "HEAD",  "POST",
					      "PUT", "PATCH", "DELETE"};
	struct http_request *req;
	char key[HTTP_HOST_KEY_MAX];
	size_t i;
	int rv;

	if (!c || !method) {
		errno = EINVAL;
		return NULL;
	}
	if (c->shut) {
		errno = ESHUTDOWN;
		return NULL;
	}
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(method, methods[i]) == 0)
			break;
	if (i == sizeof(methods) / sizeof(methods[0])) {
		errno = EINVAL;
		return NULL;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		errno = ENOMEM;
		return NULL;
	}
	rv = parse_base(base, path, key, sizeof(key), &req->url,
			&req->unix_path, &req->log_url);
	if (rv == 0) {
		req->host = host_get(c, key);
		if (!req->host)
			rv = -ENOMEM;
	}
	if (rv < 0) {
		free(req->url);
		free(req->unix_path);
		free(req->log_url);
		free(req);
		errno = -rv;
		return NULL;
	}
	snprintf(req->method, sizeof(req->method), "%s", method);
	req->client = c;
	c->refs++;
	req->id = c->next_id++;
	req->refs = 1;
	req->state = HTTP_REQUEST_NEW;
	req->result = -EINPROGRESS;
	req->timeout_ms = c->opts.timeout_ms;
	req->connect_timeout_ms = c->opts.connect_timeout_ms;
	req->max_response = c->opts.max_response;
	loop_timer_init(&req->queue_timer);
	return req;
}

int http_request_add_header(struct http_request *req, const char *name,
			    const char *value)
{
	struct curl_slist *sl;
	const char *p;
	char *line;
	int n;

	if (req->state != HTTP_REQUEST_NEW)
		return -EBUSY;
	if (!name || !*name || !value)
		return -EINVAL;
	for (p = name; *p; p++)
		if (*p <= ' ' || *p == ':' || *p == 0x7f)
			return -EINVAL;
	for (p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			return -EINVAL;
	/* curl sends "name;" as an empty header, "name:" would remove it */
	n = *value ? asprintf(&line, "%s: %s", name, value)
		   : asprintf(&line, "%s;", name);
	if (n < 0)
		return -ENOMEM;
	sl = curl_slist_append(req->headers, line);
	explicit_bzero(line, (size_t)n);
	free(line);
	if (!sl)
		return -ENOMEM;
	req->headers = sl;
	return 0;
}

int http_request_set_body(struct http_request *req, const void *body,
			  size_t len, const char *content_type)
{
	char *copy;
	int rv;

	if (req->state != HTTP_REQUEST_NEW)
		return -EBUSY;
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, body, len);
	copy[len] = '\0';
	if (content_type) {
		rv = http_request_add_header(req, "Content-Type", content_type);
		if (rv < 0) {
			free(copy);
			return rv;
		}
	}
	free(req->body);
	req->body = copy;
	req->body_len = len;
	req->has_body = true;
	return 0;
}

void http_request_set_timeouts(struct http_request *req, uint32_t total_ms,
			       uint32_t connect_ms)
{
	if (total_ms)
		req->timeout_ms = total_ms;
	if (connect_ms)
		req->connect_timeout_ms = connect_ms;
}

void http_request_set_max_response(struct http_request *req, size_t max)
{
	if (max)
		req->max_response = max;
}

void http_request_set_task(struct http_request *req, struct task *t)
{
	if (req->state != HTTP_REQUEST_NEW) {
		log_err("http#%" PRIu64 " set_task after start", req->id);
		return;
	}
	req->task = t; /* referenced at start */
}

void http_request_set_callback(struct http_request *req, http_request_cb *cb,
			       void *arg)
{
	req->cb = cb;
	req->cb_arg = arg;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct http_request *req = userdata;
	size_t n = size * nmemb;

	if (n > req->max_response - req->resp_len) {
		req->too_big = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	if (req->resp_len + n + 1 > req->resp_cap) {
		size_t cap = req->resp_cap ? req->resp_cap : 4096;
		char *p;

		while (cap < req->resp_len + n + 1)
			cap *= 2;
		if (cap > req->max_response + 1)
			cap = req->max_response + 1;
		p = realloc(req->resp, cap);
		if (!p) {
			req->oom = true;
			return 0;
		}
		req->resp = p;
		req->resp_cap = cap;
	}
	memcpy(req->resp + req->resp_len, ptr, n);
	req->resp_len += n;
	req->resp[req->resp_len] = '\0';
	return n;
}

static int build_easy(struct http_request *req)
{
	CURLcode rc = CURLE_OK;
	CURL *e = curl_easy_init();

	if (!e)
		return -ENOMEM;
#define SET(opt, val)                                                          \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(e, opt, val);                    \
	} while (0)
	SET(CURLOPT_URL, req->url);
	if (req->unix_path)
		SET(CURLOPT_UNIX_SOCKET_PATH, req->unix_path);
	SET(CURLOPT_PRIVATE, req);
	SET(CURLOPT_ERRORBUFFER, req->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, req);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_PROXY, ""); /* never the environment's proxy */
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_response);
	if (strcmp(req->method, "GET") == 0 && !req->has_body) {
		SET(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(req->method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else {
		if (strcmp(req->method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, req->method);
		if (req->has_body || strcmp(req->method, "POST") == 0) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE,
			    (curl_off_t)req->body_len);
			SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
		}
	}
	if ((req->has_body || strcmp(req->method, "POST") == 0) &&
	    !req->expect_off) {
		/* no "Expect: 100-continue" round trip */
		struct curl_slist *sl =
		    curl_slist_append(req->headers, "Expect:");

		if (!sl) {
			rc = CURLE_OUT_OF_MEMORY;
		} else {
			req->headers = sl;
			req->expect_off = true;
		}
	}
	if (req->headers)
		SET(CURLOPT_HTTPHEADER, req->headers);
#undef SET
	if (rc != CURLE_OK) {
		log_err("http#%" PRIu64 " curl_easy_setopt: %s", req->id,
			curl_easy_strerror(rc));
		curl_easy_cleanup(e);
		return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
	}
	req->errbuf[0] = '\0';
	req->easy = e;
	return 0;
}

static void easy_release(struct http_request *req)
{
	if (!req->easy)
		return;
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
}

static void deliver_cb(struct loop_defer *d, void *arg)
{
	struct http_request *req = arg;

	req->delivery_pending = false;
	if (req->cb && req->state == HTTP_REQUEST_DONE)
		req->cb(req, req->cb_arg);
	drop_in_flight(req);
}

/*
 * QUEUED or ACTIVE (already unlinked, easy released) -> DONE; record, count,
 * deliver.  Never calls user code.
 */
static void complete(struct http_request *req, int rc, const char *error)
{
	struct http_client *c = req->client;
	struct http_host *h = req->host;
	char dbuf[HTTP_LOG_URL_MAX + 128];
	struct task *t;

	req->result = rc;
	req->ended_ms = loop_clock_ms();
	if (error && !req->error[0])
		snprintf(req->error, sizeof(req->error), "%s", error);
	req_set_state(req, HTTP_REQUEST_DONE);
	if (rc == 0) {
		h->ok++;
		c->ok++;
	} else if (rc == -ETIMEDOUT || rc == -EAGAIN) {
		h->timed_out++;
		c->timed_out++;
	} else {
		h->failed++;
		c->failed++;
	}
	if (rc == 0)
		dbg("%s", http_request_debug_str(req, dbuf, sizeof(dbuf)));
	else if (rc != -ESHUTDOWN)
		log_warn("%s: %s",
			 http_request_debug_str(req, dbuf, sizeof(dbuf)),
			 req->error);
	t = req->task;
	req->task = NULL;
	if (t) {
		task_wake(t, HTTP_REQUEST_WAKE);
		task_unref(t);
	}
	if (req->cb) {
		req->delivery_pending = true;
		loop_defer(c->loop, &req->deliver, deliver_cb, req);
	} else {
		drop_in_flight(req);
	}
}

static int map_curl_code(CURLcode code, struct http_request *req, long os_errno)
{
	/* (int): curl's enum has ~100 values, most irrelevant to HTTP */
	switch ((int)code) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		if (os_errno == ENOENT || os_errno == EACCES ||
		    os_errno == ENETUNREACH || os_errno == EHOSTUNREACH)
			return -(int)os_errno;
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
		return -EPROTO;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_WRITE_ERROR:
		if (req->too_big)
			return -EFBIG;
		if (req->oom)
			return -ENOMEM;
		return -EIO;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static void active_unlink(struct http_request *req)
{
	struct http_client *c = req->client;

	if (req->prev)
		req->prev->next = req->next;
	else
		c->active = req->next;
	if (req->next)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	c->n_active--;
	req->host->active--;
}

/* An ACTIVE request's transfer ended (curl said DONE). */
static void finish_active(struct http_request *req, CURLcode code)
{
	struct http_client *c = req->client;
	char *ct = NULL;
	long status = 0, nconn = 0, os_errno = 0;
	char err[HTTP_ERROR_MAX];
	int rc;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(req->easy, CURLINFO_NUM_CONNECTS, &nconn);
	curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &os_errno);
	if (curl_easy_getinfo(req->easy, CURLINFO_CONTENT_TYPE, &ct) ==
		CURLE_OK &&
	    ct)
		req->content_type = strdup(ct);
	req->status = status;
	req->connects = nconn;
	req->host->connects += (uint64_t)nconn;
	c->connects += (uint64_t)nconn;
	rc = map_curl_code(code, req, os_errno);
	if (rc == -EFBIG)
		snprintf(err, sizeof(err), "response body over %zu bytes",
			 req->max_response);
	else if (rc)
		snprintf(err, sizeof(err), "%s",
			 req->errbuf[0] ? req->errbuf
					: curl_easy_strerror(code));
	else
		err[0] = '\0';
	curl_multi_remove_handle(c->multi, req->easy);
	easy_release(req);
	active_unlink(req);
	complete(req, rc, rc ? err : NULL);
}

static void drain(struct http_client *c)
{
	CURLMsg *msg;
	int left;

	while (c->multi && (msg = curl_multi_info_read(c->multi, &left))) {
		struct http_request *req = NULL;
		CURL *e = msg->easy_handle;
		CURLcode code = msg->data.result;
		struct http_host *h;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)(void *)&req);
		if (!req || req->easy != e ||
		    req->state != HTTP_REQUEST_ACTIVE) {
			log_err("curl finished a transfer we do not know");
			curl_multi_remove_handle(c->multi, e);
			continue;
		}
		h = req->host;
		finish_active(req, code);
		host_kick(c, h);
	}
}

/*
 * What a transfer must have left of its total timeout to be worth
 * starting after waiting for a slot: a request sent with a few
 * milliseconds left times out on the wire, and then nobody knows whether
 * the other side acted on it.  Below this it fails unsent (-EAGAIN).
 */
static uint64_t min_on_wire_ms(const struct http_request *req)
{
	uint64_t half = req->timeout_ms / 2;

	return req->connect_timeout_ms && req->connect_timeout_ms < half
		   ? req->connect_timeout_ms
		   : half;
}

/* QUEUED -> ACTIVE.  0, or a negative errno (the caller completes). */
static int activate(struct http_request *req)
{
	struct http_client *c = req->client;
	uint64_t waited = loop_clock_ms() - req->started_ms;
	long left;
	CURLMcode mc;

	if (waited && waited + min_on_wire_ms(req) > req->timeout_ms)
		return -EAGAIN;
	left = (long)(req->timeout_ms - waited);
	curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, left);
	if (left < (long)req->connect_timeout_ms)
		curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, left);
	mc = curl_multi_add_handle(c->multi, req->easy);
	if (mc != CURLM_OK) {
		log_err("http#%" PRIu64 " curl_multi_add_handle: %s", req->id,
			curl_multi_strerror(mc));
		return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	}
	req_set_state(req, HTTP_REQUEST_ACTIVE);
	req->next = c->active;
	req->prev = NULL;
	if (c->active)
		c->active->prev = req;
	c->active = req;
	c->n_active++;
	req->host->active++;
	return 0;
}

static void queue_unlink(struct http_request *req)
{
	struct http_host *h = req->host;

	if (req->prev)
		req->prev->next = req->next;
	else
		h->qhead = req->next;
	if (req->next)
		req->next->prev = req->prev;
	else
		h->qtail = req->prev;
	req->prev = req->next = NULL;
	h->queued--;
	req->client->n_queued--;
	loop_timer_stop(&req->queue_timer);
}

static void queue_timeout_cb(struct loop_timer *t, void *arg)
{
	struct http_request *req = arg;
	char err[HTTP_ERROR_MAX];

	if (req->state != HTTP_REQUEST_QUEUED)
		return;
	snprintf(err, sizeof(err),
		 "no connection slot within %" PRIu64 " ms (host limit %u): "
		 "not sent",
		 loop_clock_ms() - req->started_ms, req->host->limit);
	queue_unlink(req);
	easy_release(req);
	complete(req, -EAGAIN, err);
}

static void host_kick(struct http_client *c, struct http_host *h)
{
	while (!c->shut && h->qhead && (!h->limit || h->active < h->limit)) {
		struct http_request *req = h->qhead;
		int rv;

		queue_unlink(req);
		rv = activate(req);
		if (rv < 0) {
			easy_release(req);
			complete(req, rv,
				 rv == -EAGAIN ? "no connection slot in time: "
						 "not sent"
					       : "could not start transfer");
		}
	}
}

int http_request_start(struct http_request *req)
{
	struct http_client *c = req->client;
	struct http_host *h = req->host;
	int rv;

	if (req->state != HTTP_REQUEST_NEW)
		return -EALREADY;
	if (c->shut)
		return -ESHUTDOWN;
	rv = build_easy(req);
	if (rv < 0)
		return rv;
	req->started_ms = loop_clock_ms();
	if (h->limit && (h->active >= h->limit || h->qhead)) {
		req_set_state(req, HTTP_REQUEST_QUEUED);
		req->prev = h->qtail;
		req->next = NULL;
		if (h->qtail)
			h->qtail->next = req;
		else
			h->qhead = req;
		h->qtail = req;
		h->queued++;
		c->n_queued++;
		loop_timer_start(c->loop, &req->queue_timer,
				 req->timeout_ms - min_on_wire_ms(req),
				 queue_timeout_cb, req);
	} else {
		rv = activate(req);
		if (rv < 0) {
			easy_release(req);
			req->started_ms = 0;
			return rv;
		}
	}
	req->in_flight = true;
	req->refs++;
	if (req->task)
		task_ref(req->task);
	h->started++;
	c->started++;
	dbg("http#%" PRIu64 " %s %s started", req->id, req->method,
	    req->log_url);
	return 0;
}

int http_request_cancel(struct http_request *req)
{
	struct http_client *c = req->client;
	struct http_host *h = req->host;

	switch (req->state) {
	case HTTP_REQUEST_NEW:
		req_set_state(req, HTTP_REQUEST_CANCELLED);
		req->task = NULL; /* never referenced */
		return 0;
	case HTTP_REQUEST_QUEUED:
		queue_unlink(req);
		easy_release(req);
		break;
	case HTTP_REQUEST_ACTIVE:
		curl_multi_remove_handle(c->multi, req->easy);
		easy_release(req);
		active_unlink(req);
		break;
	case HTTP_REQUEST_DONE:
		if (req->delivery_pending) {
			loop_defer_cancel(c->loop, &req->deliver);
			req->delivery_pending = false;
			drop_in_flight(req);
		}
		return -EALREADY;
	case HTTP_REQUEST_CANCELLED:
		return -EALREADY;
	}
	req->result = -ECANCELED;
	req->ended_ms = loop_clock_ms();
	req_set_state(req, HTTP_REQUEST_CANCELLED);
	h->cancelled++;
	c->cancelled++;
	drop_in_flight(req);
	host_kick(c, h);
	return 0;
}

void http_request_close(struct http_request *req)
{
	if (!req || req->destroyed)
		return;
	http_request_cancel(req);
	req->destroyed = true;
	http_request_unref(req);
}

enum http_request_state http_request_state(const struct http_request *req)
{
	return req->state;
}

bool http_request_done(const struct http_request *req)
{
	return req->state == HTTP_REQUEST_DONE;
}

bool http_request_destroyed(const struct http_request *req)
{
	return req->destroyed;
}

int http_request_result(const struct http_request *req)
{
	return req->result;
}

long http_request_status(const struct http_request *req)
{
	return req->status;
}

const char *http_request_body(const struct http_request *req, size_t *len)
{
	if (len)
		*len = req->resp_len;
	return req->resp ? req->resp : "";
}

char *http_request_take_body(struct http_request *req, size_t *len)
{
	char *b = req->resp;

	if (len)
		*len = req->resp_len;
	req->resp = NULL;
	req->resp_len = req->resp_cap = 0;
	return b;
}

const char *http_request_content_type(const struct http_request *req)
{
	return req->content_type ? req->content_type : "";
}

const char *http_request_error(const struct http_request *req)
{
	return req->error;
}

uint64_t http_request_elapsed_ms(const struct http_request *req)
{
	if (!req->started_ms)
		return 0;
	if (req->ended_ms)
		return req->ended_ms - req->started_ms;
	return loop_clock_ms() - req->started_ms;
}

long http_request_connects(const struct http_request *req)
{
	return req->connects;
}

const char *http_request_debug_str(const struct http_request *req, char *buf,
				   size_t len)
{
	snprintf(buf, len,
		 "http#%" PRIu64 " %s %s state=%s %" PRIu64 "ms status=%ld "
		 "rc=%d refs=%u destroyed=%d",
		 req->id, req->method, req->log_url,
		 http_request_state_name(req->state),
		 http_request_elapsed_ms(req), req->status,
		 req->result == -EINPROGRESS ? 0 : req->result, req->refs,
		 req->destroyed);
	return buf;
}

/* ----------------------------------------------------- client, cont. */

void http_client_free(struct http_client *c)
{
	struct http_host *h;

	if (!c)
		return;
	if (c->shut) {
		log_err("http_client freed twice");
		return;
	}
	c->shut = true;
	for (h = c->hosts; h; h = h->next) {
		while (h->qhead) {
			struct http_request *req = h->qhead;

			queue_unlink(req);
			easy_release(req);
			complete(req, -ESHUTDOWN, "client shut down");
		}
	}
	while (c->active) {
		struct http_request *req = c->active;

		curl_multi_remove_handle(c->multi, req->easy);
		easy_release(req);
		active_unlink(req);
		complete(req, -ESHUTDOWN, "client shut down");
	}
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	loop_timer_stop(&c->timer);
	while (c->socks) {
		dbg("http_client: closing leftover watch of fd %d",
		    c->socks->fd);
		sock_free(c, c->socks);
	}
	dbg("http_client %p shut down", (void *)c);
	client_unref(c);
}

int http_client_set_host_limit(struct http_client *c, const char *base,
			       unsigned max_active)
{
	char key[HTTP_HOST_KEY_MAX];
	struct http_host *h;
	int rv = base_key(base, key, sizeof(key));

	if (rv < 0)
		return rv;
	h = host_get(c, key);
	if (!h)
		return -ENOMEM;
	h->limit = max_active;
	host_kick(c, h);
	return 0;
}

static void host_fill(const struct http_host *h, struct http_host_stats *st)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->key, sizeof(st->key), "%s", h->key);
	st->limit = h->limit;
	st->active = h->active;
	st->queued = h->queued;
	st->started = h->started;
	st->ok = h->ok;
	st->failed = h->failed;
	st->timed_out = h->timed_out;
	st->cancelled = h->cancelled;
	st->connects = h->connects;
}

int http_client_host_stats(struct http_client *c, const char *base,
			   struct http_host_stats *st)
{
	char key[HTTP_HOST_KEY_MAX];
	struct http_host *h;
	int rv = base_key(base, key, sizeof(key));

	if (rv < 0)
		return rv;
	h = host_find(c, key);
	if (!h)
		return -ENOENT;
	host_fill(h, st);
	return 0;
}

void http_client_foreach_host(struct http_client *c, http_host_stats_fn *fn,
			      void *arg)
{
	struct http_host *h;
	struct http_host_stats st;

	for (h = c->hosts; h; h = h->next) {
		host_fill(h, &st);
		fn(&st, arg);
	}
}

void http_client_stats(struct http_client *c, struct http_client_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->hosts = c->n_hosts;
	st->active = c->n_active;
	st->queued = c->n_queued;
	st->sockets = c->n_socks;
	st->timer_armed = loop_timer_armed(&c->timer);
	st->started = c->started;
	st->ok = c->ok;
	st->failed = c->failed;
	st->timed_out = c->timed_out;
	st->cancelled = c->cancelled;
	st->connects = c->connects;
}

const char *http_client_debug_str(struct http_client *c, char *buf, size_t len)
{
	char timer[24];
	int64_t rem = loop_timer_remaining_ms(&c->timer);

	if (rem < 0)
		snprintf(timer, sizeof(timer), "-");
	else
		snprintf(timer, sizeof(timer), "%" PRId64 "ms", rem);
	snprintf(buf, len,
		 "http_client active=%u queued=%u sockets=%u timer=%s hosts=%u "
		 "started=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
		 " timed_out=%" PRIu64 " cancelled=%" PRIu64
		 " connects=%" PRIu64 " refs=%u shut=%d",
		 c->n_active, c->n_queued, c->n_socks, timer, c->n_hosts,
		 c->started, c->ok, c->failed, c->timed_out, c->cancelled,
		 c->connects, c->refs, c->shut);
	return buf;
}
