/*
 * test_http_server.c: the HTTP front door over real loopback HTTP.
 *
 * The server runs on a real loop in the test thread; clients are libcurl
 * easy handles in a thread (struct call) or raw sockets driven between
 * loop turns (for what curl will not send: garbage, trickled headers,
 * idle connections, a reader that never reads).  Every test ends (in the
 * teardown) with the server freed and no io watch, timer or deferred work
 * left on the loop.  Time is asserted with generous bounds only (a loaded
 * 2-core machine): "not before X", "within X + slack".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "http_response.h"
#include "http_server.h"
#include "log.h"
#include "loop.h"
#include "task.h"

#define RUN_LIMIT_MS 30000

struct fx {
	struct loop *l;
	struct http_server *srv;
	unsigned port;
};

/* ------------------------------------------------------------ helpers */

static void run_until_atomic(struct loop *l, atomic_bool *done)
{
	uint64_t start = loop_clock_ms();

	while (!atomic_load(done)) {
		assert_true(loop_run_once(l, 10) >= 0);
		if (loop_clock_ms() - start > RUN_LIMIT_MS)
			fail_msg("loop did not reach its done flag in %d ms",
				 RUN_LIMIT_MS);
	}
}

static void run_until(struct loop *l, const bool *done)
{
	uint64_t start = loop_clock_ms();

	while (!*done) {
		assert_true(loop_run_once(l, 10) >= 0);
		if (loop_clock_ms() - start > RUN_LIMIT_MS)
			fail_msg("loop did not reach its done flag in %d ms",
				 RUN_LIMIT_MS);
	}
}

static void run_for(struct loop *l, uint64_t ms)
{
	uint64_t end = loop_clock_ms() + ms;

	while (loop_clock_ms() < end)
		assert_true(loop_run_once(l, 5) >= 0);
}

static struct http_server_stats *stats_of(struct fx *f)
{
	static struct http_server_stats st;

	http_server_stats(f->srv, &st);
	return &st;
}

static void run_until_conns(struct fx *f, unsigned n)
{
	uint64_t start = loop_clock_ms();

	while (stats_of(f)->connections_active != n) {
		assert_true(loop_run_once(f->l, 5) >= 0);
		if (loop_clock_ms() - start > RUN_LIMIT_MS)
			fail_msg("connections_active %u, wanted %u",
				 stats_of(f)->connections_active, n);
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->l = loop_new();
	assert_non_null(f->l);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct loop_stats st;
	int i;

	http_server_free(f->srv);
	for (i = 0; i < 3; i++)
		loop_run_once(f->l, 0); /* end-of-turn frees */
	loop_stats(f->l, &st);
	assert_int_equal(st.live_io, 0);
	assert_int_equal(st.live_timers, 0);
	assert_int_equal(st.pending_deferred, 0);
	assert_int_equal(st.holds, 0);
	assert_int_equal(task_count_live(f->l), 0);
	assert_true(loop_idle(f->l));
	loop_free(f->l);
	free(f);
	return 0;
}

/* ------------------------------------------------------------- routes */

struct seen {
	int calls;
	char id[HTTP_REQ_ID_MAX + 1];
	char param_id[64];
	char param_site[64];
	char q_offset[32];
	char q_stream[32];
	bool q_flag_empty;
	bool q_missing_null;
	char route[64];
};
static struct seen seen;

static void h_ping(struct http_req *req, void *arg)
{
	seen.calls++;
	snprintf(seen.id, sizeof(seen.id), "%s", http_req_id(req));
	assert_int_equal(http_reply_json(req, 200,
					 json_pack("{s:b, s:s}", "ok", 1, "id",
						   http_req_id(req))),
			 0);
	/* a second answer is refused, and logged */
	assert_int_equal(http_reply_text(req, 200, "text/plain", "x"), -EINVAL);
}

static void h_params(struct http_req *req, void *arg)
{
	const char *v;

	seen.calls++;
	snprintf(seen.route, sizeof(seen.route), "%s",
		 http_req_route(req)->pattern);
	v = http_req_param(req, "id");
	snprintf(seen.param_id, sizeof(seen.param_id), "%s", v ? v : "(null)");
	v = http_req_param(req, "site");
	snprintf(seen.param_site, sizeof(seen.param_site), "%s",
		 v ? v : "(null)");
	v = http_req_query(req, "offset");
	snprintf(seen.q_offset, sizeof(seen.q_offset), "%s", v ? v : "(null)");
	v = http_req_query(req, "stream");
	snprintf(seen.q_stream, sizeof(seen.q_stream), "%s", v ? v : "(null)");
	v = http_req_query(req, "flag");
	seen.q_flag_empty = v && !*v;
	seen.q_missing_null = http_req_query(req, "nope") == NULL;
	http_reply_json(req, 200, json_pack("{s:s}", "route", seen.route));
}

static void h_echo(struct http_req *req, void *arg)
{
	json_t *body;

	if (http_req_body_json(req, &body) < 0)
		return; /* answered */
	http_reply_json(req, 200, json_pack("{s:o}", "got", body));
}

static void h_text(struct http_req *req, void *arg)
{
	http_reply_text(req, 200, "text/plain; version=0.0.4", "metric 1\n");
}

static void h_silent(struct http_req *req, void *arg)
{
	/* returns without answering: a bug the server answers 500 */
}

static void h_bad_code(struct http_req *req, void *arg)
{
	/* a (status, code) pair not in the table: answered 500 internal */
	http_reply_error(req, 404, "gone_fishing", "nope");
}

static void h_table_code(struct http_req *req, void *arg)
{
	http_reply_error(req, 0, "conflict", "job %s is final", "j-1");
}

static void add_route(struct fx *f, const char *method, const char *pattern,
		      http_handler_fn *fn, void *arg, unsigned flags)
{
	struct http_route r = {method, pattern, fn, arg, flags};

	assert_int_equal(http_server_route(f->srv, &r), 0);
}

static void start_server(struct fx *f, struct http_server_config *cfg)
{
	struct http_server_config def = {0};

	if (!cfg)
		cfg = &def;
	if (!cfg->listen)
		cfg->listen = "127.0.0.1:0";
	f->srv = http_server_new(f->l, cfg);
	assert_non_null(f->srv);
	f->port = http_server_port(f->srv);
	assert_true(f->port > 0);
	add_route(f, "GET", "/v1/ping", h_ping, NULL, 0);
	add_route(f, "GET", "/v1/jobs/{id}/output", h_params, NULL, 0);
	add_route(f, "GET", "/v1/jobs/{id}", h_params, NULL, 0);
	add_route(f, "DELETE", "/v1/jobs/{id}", h_params, NULL, 0);
	add_route(f, "GET", "/v1/jobs/stats", h_params, NULL, 0);
	add_route(f, "POST", "/v1/output/{site}/{id}/{stream}", h_params, NULL,
		  0);
	add_route(f, "POST", "/v1/echo", h_echo, NULL, 0);
	add_route(f, "GET", "/metrics", h_text, NULL, HTTP_ROUTE_DRAINING);
	add_route(f, "GET", "/v1/silent", h_silent, NULL, 0);
	add_route(f, "GET", "/v1/badcode", h_bad_code, NULL, 0);
	add_route(f, "GET", "/v1/tablecode", h_table_code, NULL, 0);
	memset(&seen, 0, sizeof(seen));
}

/* -------------------------------------------------------- curl client */

struct call {
	/* in */
	const char *method;
	char url[1024];
	const char *body;
	size_t body_len;
	bool has_body;
	const char *headers[8];
	long timeout_ms;
	size_t abort_after; /* stop reading after this many body bytes */
	CURL *easy;	    /* reused when set (keep-alive) */
	/* out */
	CURLcode rc;
	long status;
	char *out;
	size_t out_len;
	char hdrs[8192];
	size_t hdrs_len;
	long num_connects;
	atomic_bool done;
};

static size_t call_write(char *p, size_t size, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = size * n;
	char *o;

	o = realloc(c->out, c->out_len + len + 1);
	assert_non_null(o);
	c->out = o;
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
	c->out[c->out_len] = '\0';
	if (c->abort_after && c->out_len >= c->abort_after)
		return 0; /* abort the transfer: the client goes away */
	return len;
}

static size_t call_header(char *p, size_t size, size_t n, void *arg)
{
	struct call *c = arg;
	size_t len = size * n;

	if (c->hdrs_len + len < sizeof(c->hdrs)) {
		memcpy(c->hdrs + c->hdrs_len, p, len);
		c->hdrs_len += len;
		c->hdrs[c->hdrs_len] = '\0';
	}
	return len;
}

static void *call_main(void *arg)
{
	struct call *c = arg;
	CURL *e = c->easy ? c->easy : curl_easy_init();
	struct curl_slist *hl = NULL;
	size_t i;

	for (i = 0; i < 8 && c->headers[i]; i++)
		hl = curl_slist_append(hl, c->headers[i]);
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	if (c->has_body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)c->body_len);
	} else {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	}
	/* after HTTPGET, which resets NOBODY */
	curl_easy_setopt(e, CURLOPT_NOBODY,
			 strcmp(c->method, "HEAD") == 0 ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, call_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, call_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 c->timeout_ms ? c->timeout_ms : 20000L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	c->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &c->num_connects);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	if (!c->easy)
		curl_easy_cleanup(e);
	atomic_store(&c->done, true);
	return NULL;
}

static struct call *call_new(struct fx *f, const char *method, const char *path)
{
	struct call *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->method = method;
	snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%u%s", f->port,
		 path);
	return c;
}

static void call_free(struct call *c)
{
	if (!c)
		return;
	free(c->out);
	free(c);
}

static void call_start(struct call *c, pthread_t *th)
{
	assert_int_equal(pthread_create(th, NULL, call_main, c), 0);
}

static void call_finish(struct fx *f, struct call *c, pthread_t th)
{
	run_until_atomic(f->l, &c->done);
	pthread_join(th, NULL);
}

/* Run the loop while the call runs in a thread. */
static void call_run(struct fx *f, struct call *c)
{
	pthread_t th;

	call_start(c, &th);
	call_finish(f, c, th);
}

static struct call *do_call(struct fx *f, const char *method, const char *path)
{
	struct call *c = call_new(f, method, path);

	call_run(f, c);
	return c;
}

/* The value of a response header (first one), or NULL; static buffer. */
static const char *resp_header(const char *hdrs, const char *name)
{
	static char val[512];
	const char *p = hdrs;
	size_t n = strlen(name);

	while (p && *p) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *end;

			while (*v == ' ')
				v++;
			end = strpbrk(v, "\r\n");
			snprintf(val, sizeof(val), "%.*s",
				 (int)(end ? end - v : (long)strlen(v)), v);
			return val;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

/* Assert a body is our error shape with `code`; returns request_id. */
static void assert_error_body(const char *body, const char *code, char *id_out,
			      size_t id_len)
{
	json_error_t jerr;
	json_t *j = json_loads(body ? body : "", 0, &jerr);
	json_t *e;

	if (!j)
		fail_msg("not JSON: '%s'", body ? body : "(null)");
	e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "code")),
			    code);
	assert_non_null(json_string_value(json_object_get(e, "message")));
	assert_non_null(json_string_value(json_object_get(e, "request_id")));
	assert_int_equal(json_object_size(e), 3);
	assert_int_equal(json_object_size(j), 1);
	if (id_out)
		snprintf(id_out, id_len, "%s",
			 json_string_value(json_object_get(e, "request_id")));
	json_decref(j);
}

static bool generated_id(const char *id)
{
	size_t i;

	if (!id || strlen(id) != 18 || strncmp(id, "r-", 2) != 0)
		return false;
	for (i = 2; i < 18; i++)
		if (!strchr("0123456789abcdef", id[i]))
			return false;
	return true;
}

/* ---------------------------------------------------------- raw sockets */

static int raw_connect(unsigned port)
{
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void raw_send(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = {fd, POLLOUT, 0};

			poll(&pfd, 1, 100);
			continue;
		}
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/*
 * Read until the peer closes (EOF or reset) or timeout_ms, running the
 * loop meanwhile.  Returns the bytes read; *closed says whether it ended.
 */
static size_t raw_read(struct fx *f, int fd, char *buf, size_t cap,
		       int timeout_ms, bool *closed)
{
	uint64_t end = loop_clock_ms() + (uint64_t)timeout_ms;
	size_t got = 0;

	*closed = false;
	while (loop_clock_ms() < end) {
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);

		if (n > 0) {
			got += (size_t)n;
			buf[got] = '\0';
			if (got == cap - 1)
				break;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			*closed = true;
			break;
		}
		loop_run_once(f->l, 5);
	}
	buf[got] = '\0';
	return got;
}

/* Read until the buffer holds `needle` or timeout; true when found. */
static bool raw_read_until(struct fx *f, int fd, char *buf, size_t cap,
			   const char *needle, int timeout_ms)
{
	uint64_t end = loop_clock_ms() + (uint64_t)timeout_ms;
	size_t got = strlen(buf);

	while (loop_clock_ms() < end && !strstr(buf, needle)) {
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);

		if (n > 0) {
			got += (size_t)n;
			buf[got] = '\0';
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
		loop_run_once(f->l, 5);
	}
	return strstr(buf, needle) != NULL;
}

/* -------------------------------------------------------- log capture */

static char logbuf[65536];

static void capture_sink(enum log_level lvl, const char *line, void *arg)
{
	size_t n = strlen(logbuf);

	snprintf(logbuf + n, sizeof(logbuf) - n, "%s\n", line);
	fprintf(stderr, "%s\n", line);
}

/* ============================================================== tests */

static void test_get_json_and_request_id(void **state)
{
	struct fx *f = *state;
	struct call *c;
	char line[256];
	json_t *j;
	CURL *easy;

	start_server(f, NULL);

	/* a sane X-Request-ID is honoured and echoed */
	logbuf[0] = '\0';
	log_set_sink(capture_sink, NULL);
	c = call_new(f, "GET", "/v1/ping");
	c->headers[0] = "X-Request-ID: abc-123.x:Y_z";
	call_run(f, c);
	log_set_sink(NULL, NULL);
	assert_int_equal(c->rc, CURLE_OK);
	assert_int_equal(c->status, 200);
	assert_string_equal(resp_header(c->hdrs, "X-Request-ID"),
			    "abc-123.x:Y_z");
	assert_string_equal(resp_header(c->hdrs, "Content-Type"),
			    "application/json");
	assert_string_equal(seen.id, "abc-123.x:Y_z");
	j = json_loads(c->out, 0, NULL);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	/* the access line: method path status bytes ms request-id */
	snprintf(line, sizeof(line), "http GET /v1/ping 200 %zuB ", c->out_len);
	assert_non_null(strstr(logbuf, line));
	assert_non_null(strstr(logbuf, "id=abc-123.x:Y_z client=127.0.0.1 "
				       "end=OK"));
	call_free(c);

	/* none, too long, or bad characters: generated */
	c = do_call(f, "GET", "/v1/ping");
	assert_true(generated_id(resp_header(c->hdrs, "X-Request-ID")));
	assert_string_equal(seen.id, resp_header(c->hdrs, "X-Request-ID"));
	call_free(c);
	c = call_new(f, "GET", "/v1/ping");
	c->headers[0] = "X-Request-ID: has space";
	call_run(f, c);
	assert_true(generated_id(resp_header(c->hdrs, "X-Request-ID")));
	call_free(c);
	c = call_new(f, "GET", "/v1/ping");
	c->headers[0] = "X-Request-ID: "
			"12345678901234567890123456789012345678901234567890"
			"123456789012345";
	call_run(f, c);
	assert_true(generated_id(resp_header(c->hdrs, "X-Request-ID")));
	call_free(c);

	/* keep-alive: a second request reuses the connection */
	easy = curl_easy_init();
	c = call_new(f, "GET", "/v1/ping");
	c->easy = easy;
	call_run(f, c);
	assert_int_equal(c->status, 200);
	assert_int_equal(c->num_connects, 1);
	call_free(c);
	c = call_new(f, "GET", "/v1/ping");
	c->easy = easy;
	call_run(f, c);
	assert_int_equal(c->status, 200);
	assert_int_equal(c->num_connects, 0);
	call_free(c);
	curl_easy_cleanup(easy);

	/* HEAD is served by the GET route, without a body */
	c = do_call(f, "HEAD", "/v1/ping");
	assert_int_equal(c->rc, CURLE_OK);
	assert_int_equal(c->status, 200);
	assert_int_equal(c->out_len, 0);
	call_free(c);

	/* text replies */
	c = do_call(f, "GET", "/metrics");
	assert_int_equal(c->status, 200);
	assert_string_equal(c->out, "metric 1\n");
	assert_string_equal(resp_header(c->hdrs, "Content-Type"),
			    "text/plain; version=0.0.4");
	call_free(c);
}

static void test_not_found_and_method_not_allowed(void **state)
{
	struct fx *f = *state;
	struct call *c;
	char id[80];

	start_server(f, NULL);
	c = do_call(f, "GET", "/v1/nope");
	assert_int_equal(c->status, 404);
	assert_string_equal(resp_header(c->hdrs, "Content-Type"),
			    "application/json");
	assert_error_body(c->out, "not_found", id, sizeof(id));
	assert_string_equal(id, resp_header(c->hdrs, "X-Request-ID"));
	assert_non_null(strstr(c->out, "no route for GET /v1/nope"));
	call_free(c);

	/* a trailing slash or an empty {param} segment is another path */
	c = do_call(f, "GET", "/v1/ping/");
	assert_int_equal(c->status, 404);
	call_free(c);
	c = do_call(f, "GET", "/v1/jobs//output");
	assert_int_equal(c->status, 404);
	call_free(c);

	c = do_call(f, "DELETE", "/v1/ping");
	assert_int_equal(c->status, 405);
	assert_string_equal(resp_header(c->hdrs, "Allow"), "GET, HEAD");
	assert_error_body(c->out, "method_not_allowed", NULL, 0);
	call_free(c);

	c = do_call(f, "PUT", "/v1/jobs/j-1");
	assert_int_equal(c->status, 405);
	assert_string_equal(resp_header(c->hdrs, "Allow"), "GET, DELETE, HEAD");
	call_free(c);

	/* a body sent to a missing route does not break the connection */
	c = call_new(f, "POST", "/v1/nope");
	c->body = "{}";
	c->body_len = 2;
	c->has_body = true;
	call_run(f, c);
	assert_int_equal(c->status, 404);
	call_free(c);
	assert_int_equal(seen.calls, 0);
}

static void test_path_params_and_query(void **state)
{
	struct fx *f = *state;
	struct call *c;

	start_server(f, NULL);
	c = do_call(f, "GET",
		    "/v1/jobs/j-42/output?offset=7&stream=std%20out&flag");
	assert_int_equal(c->status, 200);
	assert_string_equal(seen.route, "/v1/jobs/{id}/output");
	assert_string_equal(seen.param_id, "j-42");
	assert_string_equal(seen.param_site, "(null)");
	assert_string_equal(seen.q_offset, "7");
	assert_string_equal(seen.q_stream, "std out");
	assert_true(seen.q_flag_empty);
	assert_true(seen.q_missing_null);
	call_free(c);

	/* a literal segment beats a {param} */
	c = do_call(f, "GET", "/v1/jobs/stats");
	assert_string_equal(seen.route, "/v1/jobs/stats");
	call_free(c);
	c = do_call(f, "DELETE", "/v1/jobs/stats");
	assert_int_equal(c->status, 200);
	assert_string_equal(seen.route, "/v1/jobs/{id}");
	assert_string_equal(seen.param_id, "stats");
	call_free(c);

	/* several params; percent-decoding of the path */
	c = call_new(f, "POST", "/v1/output/alpha/1001/stdout?offset=0");
	c->body = "abc";
	c->body_len = 3;
	c->has_body = true;
	call_run(f, c);
	assert_int_equal(c->status, 200);
	assert_string_equal(seen.param_site, "alpha");
	assert_string_equal(seen.param_id, "1001");
	call_free(c);
	c = do_call(f, "GET", "/v1/jobs/j%2D7");
	assert_string_equal(seen.param_id, "j-7");
	call_free(c);

	/* bad route patterns are refused */
	{
		struct http_route bad[] = {
		    {"GET", "no-slash", h_ping, NULL, 0},
		    {"GET", "/a/{", h_ping, NULL, 0},
		    {"GET", "/a/{}", h_ping, NULL, 0},
		    {"GET", "/v1/ping", h_ping, NULL, 0}, /* duplicate */
		    {"GET", "/a", NULL, NULL, 0},
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			assert_int_equal(http_server_route(f->srv, &bad[i]),
					 -EINVAL);
	}
}

static void test_error_table_matches_api_md(void **state)
{
	const char *paths[] = {"docs/api.md", "../docs/api.md",
			       "../../docs/api.md", "../../../docs/api.md"};
	const struct http_error_def *t;
	char line[512];
	size_t n, i, rows = 0;
	FILE *fp = NULL;

	(void)state;
	for (i = 0; i < 4 && !fp; i++)
		fp = fopen(paths[i], "r");
	if (!fp)
		skip(); /* not run from the source tree */
	t = http_error_table(&n);
	/* every "| 404 | `not_found` |" row is in the table, same status */
	while (fgets(line, sizeof(line), fp)) {
		unsigned status;
		char code[64];

		if (sscanf(line, " | %u | `%63[a-z_]` |", &status, code) != 2)
			continue;
		rows++;
		if (!http_error_valid(status, code))
			fail_msg("docs/api.md row %u %s is not in "
				 "http_response.c",
				 status, code);
	}
	fclose(fp);
	assert_int_equal(rows, n);
	for (i = 0; i < n; i++) {
		assert_non_null(t[i].message);
		assert_ptr_equal(http_error_lookup(t[i].code), &t[i]);
	}
	assert_null(http_error_lookup("nope"));
	assert_false(http_error_valid(404, "conflict"));
	assert_true(http_error_valid(422, "site_rejected"));
}

static void test_error_helpers(void **state)
{
	struct fx *f = *state;
	struct call *c;
	char buf[1024], small[64];
	char *text;
	size_t len;
	int n;

	/* the shape, with JSON null for an unknown id, escaping */
	text = http_error_text("not_found", "no \"job\"", NULL, &len);
	assert_string_equal(text, "{\"error\":{\"code\":\"not_found\","
				  "\"message\":\"no \\\"job\\\"\","
				  "\"request_id\":null}}");
	assert_int_equal(len, strlen(text));
	free(text);
	text = http_error_text("conflict", NULL, "r-1", NULL);
	assert_non_null(strstr(text, "\"message\":\"conflict\""));
	free(text);
	n = http_error_raw(buf, sizeof(buf), 429, "too_many_requests", NULL,
			   "r-9", "Retry-After: 1\r\n");
	assert_true(n > 0);
	assert_int_equal(strncmp(buf, "HTTP/1.1 429 Too Many Requests\r\n", 32),
			 0);
	assert_non_null(strstr(buf, "\r\nRetry-After: 1\r\n"));
	assert_non_null(strstr(buf, "\r\nX-Request-ID: r-9\r\n"));
	assert_error_body(strstr(buf, "\r\n\r\n") + 4, "too_many_requests",
			  NULL, 0);
	assert_int_equal(http_error_raw(small, sizeof(small), 429,
					"too_many_requests", NULL, "r-9", NULL),
			 -ENOSPC);

	/* over HTTP: a table code with status 0, a bad pair, no answer */
	start_server(f, NULL);
	c = do_call(f, "GET", "/v1/tablecode");
	assert_int_equal(c->status, 409);
	assert_error_body(c->out, "conflict", NULL, 0);
	assert_non_null(strstr(c->out, "job j-1 is final"));
	call_free(c);
	c = do_call(f, "GET", "/v1/badcode");
	assert_int_equal(c->status, 500);
	assert_error_body(c->out, "internal", NULL, 0);
	call_free(c);
	c = do_call(f, "GET", "/v1/silent");
	assert_int_equal(c->status, 500);
	assert_error_body(c->out, "internal", NULL, 0);
	call_free(c);
}

static void test_body_json(void **state)
{
	struct fx *f = *state;
	struct call *c;
	char deep[200];
	size_t i;

	start_server(f, NULL);
	c = call_new(f, "POST", "/v1/echo");
	c->body = "{\"a\": [1, 2]}";
	c->body_len = strlen(c->body);
	c->has_body = true;
	c->headers[0] = "Content-Type: application/json; charset=utf-8";
	call_run(f, c);
	assert_int_equal(c->status, 200);
	assert_string_equal(c->out, "{\"got\":{\"a\":[1,2]}}");
	call_free(c);

	c = call_new(f, "POST", "/v1/echo");
	c->body = "{}";
	c->body_len = 2;
	c->has_body = true;
	c->headers[0] = "Content-Type: text/plain";
	call_run(f, c);
	assert_int_equal(c->status, 415);
	assert_error_body(c->out, "unsupported_media_type", NULL, 0);
	call_free(c);

	c = call_new(f, "POST", "/v1/echo");
	c->body = "{\"a\": ";
	c->body_len = strlen(c->body);
	c->has_body = true;
	c->headers[0] = "Content-Type: application/json";
	call_run(f, c);
	assert_int_equal(c->status, 400);
	assert_error_body(c->out, "invalid_json", NULL, 0);
	assert_non_null(strstr(c->out, "line 1"));
	call_free(c);

	for (i = 0; i < 40; i++)
		deep[i] = '[';
	for (; i < 80; i++)
		deep[i] = ']';
	deep[80] = '\0';
	c = call_new(f, "POST", "/v1/echo");
	c->body = deep;
	c->body_len = strlen(deep);
	c->has_body = true;
	c->headers[0] = "Content-Type: application/json";
	call_run(f, c);
	assert_int_equal(c->status, 400);
	assert_error_body(c->out, "invalid_json", NULL, 0);
	call_free(c);

	/* a body larger than the first buffer (64 KiB): grown, all kept */
	{
		size_t n = 200 * 1024;
		char *big = malloc(n + 1), *want = malloc(n + 32);

		assert_non_null(big);
		assert_non_null(want);
		memcpy(big, "{\"s\":\"", 6);
		for (i = 6; i < n - 2; i++)
			big[i] = (char)('a' + i % 26);
		memcpy(big + n - 2, "\"}", 2);
		big[n] = '\0';
		c = call_new(f, "POST", "/v1/echo");
		c->body = big;
		c->body_len = n;
		c->has_body = true;
		c->headers[0] = "Content-Type: application/json";
		call_run(f, c);
		assert_int_equal(c->status, 200);
		snprintf(want, n + 32, "{\"got\":%s}", big);
		assert_string_equal(c->out, want);
		call_free(c);
		free(big);
		free(want);
	}
}

/* --------------------------------------------------------------- async */

struct async_ctx {
	struct fx *f;
	struct http_req *req;
	struct loop_timer t;
	uint64_t delay_ms;
	int done_calls;
	enum http_req_end how;
	bool destroyed_at_done;
	bool handler_ran;
	bool timer_fired;
	int reply_rv;
	uint64_t suspended_at;
};

static void async_done(struct http_req *req, enum http_req_end how, void *arg)
{
	struct async_ctx *a = arg;

	a->done_calls++;
	a->how = how;
	a->destroyed_at_done = http_req_destroyed(req);
}

static void async_timer(struct loop_timer *t, void *arg)
{
	struct async_ctx *a = arg;

	a->timer_fired = true;
	/* the lesson: re-check after the wait */
	if (http_req_destroyed(a->req))
		a->reply_rv = http_reply_json(a->req, 200,
					      json_pack("{s:s}", "late", "x"));
	else
		a->reply_rv = http_reply_json(
		    a->req, 200, json_pack("{s:s}", "id", http_req_id(a->req)));
	http_req_unref(a->req);
}

static void h_async(struct http_req *req, void *arg)
{
	struct async_ctx *a = arg;

	a->handler_ran = true;
	a->req = req;
	a->suspended_at = loop_clock_ms();
	http_req_ref(req);
	http_req_on_done(req, async_done, a);
	assert_int_equal(http_req_suspend(req), 0);
	loop_timer_init(&a->t);
	loop_timer_start(a->f->l, &a->t, a->delay_ms, async_timer, a);
}

static void test_async_reply(void **state)
{
	struct fx *f = *state;
	struct async_ctx a = {.f = f, .delay_ms = 50};
	struct call *c;
	uint64_t t0;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/async", h_async, &a, 0);
	t0 = loop_clock_ms();
	c = do_call(f, "GET", "/v1/async");
	assert_int_equal(c->rc, CURLE_OK);
	assert_int_equal(c->status, 200);
	assert_true(loop_clock_ms() - t0 >= 50);
	assert_non_null(strstr(c->out, resp_header(c->hdrs, "X-Request-ID")));
	assert_int_equal(a.reply_rv, 0);
	run_until_conns(f, 0); /* curl closed its connection */
	assert_int_equal(a.done_calls, 1);
	assert_int_equal(a.how, HTTP_REQ_END_OK);
	assert_true(a.destroyed_at_done);
	assert_int_equal(stats_of(f)->suspended, 0);
	assert_int_equal(stats_of(f)->requests_active, 0);
	call_free(c);
}

static void test_async_client_gone(void **state)
{
	struct fx *f = *state;
	struct async_ctx a = {.f = f, .delay_ms = 20000};
	const char *req = "GET /v1/async HTTP/1.1\r\nHost: x\r\n\r\n";
	char dbgs[256];
	int fd;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/async", h_async, &a, 0);
	fd = raw_connect(f->port);
	assert_true(fd >= 0);
	raw_send(fd, req, strlen(req));
	run_until(f->l, &a.handler_ran);
	run_for(f->l, 20);
	http_req_debug_str(a.req, dbgs, sizeof(dbgs));
	assert_non_null(strstr(dbgs, "state=SUSPENDED"));
	assert_non_null(strstr(dbgs, "susp,watch,"));
	assert_int_equal(stats_of(f)->suspended, 1);
	/* the client leaves while the request is suspended */
	close(fd);
	while (!a.done_calls)
		assert_true(loop_run_once(f->l, 10) >= 0);
	/* noticed at once, long before the task's timer */
	assert_false(a.timer_fired);
	assert_int_equal(a.how, HTTP_REQ_END_CLIENT_GONE);
	assert_true(a.destroyed_at_done);
	assert_true(http_req_destroyed(a.req));
	/* the task's reference keeps the memory: getters still answer */
	assert_int_equal(http_req_state(a.req), HTTP_REQ_DONE);
	assert_null(http_req_header(a.req, "Host"));
	assert_string_equal(http_req_method(a.req), "GET");
	/* the task's next step: it re-checks, cannot answer, lets go */
	loop_timer_stop(&a.t);
	async_timer(&a.t, &a);
	assert_int_equal(a.reply_rv, -ESHUTDOWN);
	assert_int_equal(stats_of(f)->client_gone, 1);
	run_until_conns(f, 0);
	assert_int_equal(stats_of(f)->suspended, 0);
}

/* A guard (auth) that suspends, then lets the handler run or answers 401. */
struct guard_ctx {
	struct fx *f;
	struct http_req *req;
	struct loop_timer t;
	int calls;
	unsigned last_flags;
};

static void guard_timer(struct loop_timer *t, void *arg)
{
	struct guard_ctx *g = arg;

	if (!http_req_destroyed(g->req)) {
		const char *auth = http_req_header(g->req, "Authorization");

		if (auth && strcmp(auth, "Bearer good") == 0) {
			assert_int_equal(http_req_proceed(g->req), 0);
		} else {
			http_reply_header(g->req, "WWW-Authenticate", "Bearer");
			http_reply_error(g->req, 401, "unauthorized",
					 "bad token");
		}
	}
	http_req_unref(g->req);
}

static enum http_guard_result guard(struct http_req *req,
				    const struct http_route *route, void *arg)
{
	struct guard_ctx *g = arg;

	g->calls++;
	g->last_flags = route->flags;
	if (!(route->flags & HTTP_ROUTE_AUTH))
		return HTTP_GUARD_PASS;
	g->req = req;
	http_req_ref(req);
	http_req_suspend(req);
	loop_timer_init(&g->t);
	loop_timer_start(g->f->l, &g->t, 20, guard_timer, g);
	return HTTP_GUARD_HELD;
}

static void test_guard_async(void **state)
{
	struct fx *f = *state;
	struct guard_ctx g = {.f = f};
	struct async_ctx a = {.f = f, .delay_ms = 10};
	struct call *c;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/private", h_ping, NULL, HTTP_ROUTE_AUTH);
	add_route(f, "GET", "/v1/private-async", h_async, &a,
		  HTTP_ROUTE_AUTH | HTTP_ROUTE_ADMIN);
	http_server_set_guard(f->srv, guard, &g);

	c = call_new(f, "GET", "/v1/private");
	c->headers[0] = "Authorization: Bearer good";
	call_run(f, c);
	assert_int_equal(c->status, 200);
	assert_int_equal(seen.calls, 1);
	call_free(c);

	c = do_call(f, "GET", "/v1/private");
	assert_int_equal(c->status, 401);
	assert_string_equal(resp_header(c->hdrs, "WWW-Authenticate"), "Bearer");
	assert_error_body(c->out, "unauthorized", NULL, 0);
	assert_int_equal(seen.calls, 1);
	call_free(c);

	/* guard suspends, handler suspends again, timer answers */
	c = call_new(f, "GET", "/v1/private-async");
	c->headers[0] = "Authorization: Bearer good";
	call_run(f, c);
	assert_int_equal(c->status, 200);
	assert_int_equal(g.last_flags, HTTP_ROUTE_AUTH | HTTP_ROUTE_ADMIN);
	call_free(c);

	c = do_call(f, "GET", "/v1/ping"); /* no AUTH flag: passes */
	assert_int_equal(c->status, 200);
	call_free(c);
	assert_int_equal(g.calls, 4);
	run_until_conns(f, 0);
}

/* -------------------------------------------------------------- limits */

static void test_body_too_large(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.max_body = 1000};
	struct call *c;
	char *big = malloc(5000), buf[4096];
	bool closed;
	int fd;
	const char *head = "POST /v1/echo HTTP/1.1\r\nHost: x\r\n"
			   "Content-Type: application/json\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n";

	memset(big, 'a', 5000);
	start_server(f, &cfg);
	/* Content-Length over the cap: 413 before the body is read */
	c = call_new(f, "POST", "/v1/echo");
	c->body = big;
	c->body_len = 5000;
	c->has_body = true;
	c->headers[0] = "Content-Type: application/json";
	call_run(f, c);
	assert_int_equal(c->status, 413);
	assert_error_body(c->out, "payload_too_large", NULL, 0);
	assert_int_equal(stats_of(f)->bytes_in, 0);
	call_free(c);

	/* exactly at the cap is fine (and parsed) */
	memset(big, ' ', 1000);
	big[0] = '[';
	big[999] = ']';
	c = call_new(f, "POST", "/v1/echo");
	c->body = big;
	c->body_len = 1000;
	c->has_body = true;
	c->headers[0] = "Content-Type: application/json";
	call_run(f, c);
	assert_int_equal(c->status, 200);
	call_free(c);

	/* a chunked body growing over the cap: 413 on the socket, closed */
	fd = raw_connect(f->port);
	raw_send(fd, head, strlen(head));
	raw_send(fd, "1f4\r\n", 5);
	memset(big, 'b', 500);
	raw_send(fd, big, 500);
	raw_send(fd, "\r\n1f4\r\n", 7);
	raw_send(fd, big, 500);
	raw_send(fd, "\r\n1f4\r\n", 7);
	raw_send(fd, big, 500);
	raw_send(fd, "\r\n0\r\n\r\n", 7);
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(buf, "HTTP/1.1 413 ", 13), 0);
	assert_error_body(strstr(buf, "\r\n\r\n") + 4, "payload_too_large",
			  NULL, 0);
	close(fd);
	free(big);
	run_until_conns(f, 0);
}

static void test_headers_too_large(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.max_header = 16 * 1024};
	size_t sizes[] = {18 * 1024, 100 * 1024};
	char *req = malloc(110 * 1024), buf[8192];
	bool closed;
	size_t i;
	int fd;

	start_server(f, &cfg);
	for (i = 0; i < 2; i++) {
		size_t n = (size_t)snprintf(req, 200,
					    "GET /v1/ping HTTP/1.1\r\nHost: "
					    "x\r\nX-Big: ");

		memset(req + n, 'a', sizes[i]);
		n += sizes[i];
		memcpy(req + n, "\r\n\r\n", 4);
		n += 4;
		fd = raw_connect(f->port);
		raw_send(fd, req, n);
		raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
		assert_true(closed);
		/* both 431; ours is JSON, MHD's own (past its memory pool
		   of max_header + 4 KiB) is its small HTML page */
		assert_int_equal(
		    strncmp(buf, "HTTP/1.1 431 Request Header Fields Too Large",
			    44),
		    0);
		if (i == 0)
			assert_error_body(strstr(buf, "\r\n\r\n") + 4,
					  "headers_too_large", NULL, 0);
		else
			assert_non_null(strstr(buf, "<html>"));
		close(fd);
	}
	free(req);
	assert_int_equal(seen.calls, 0);
	run_until_conns(f, 0);
}

static void test_garbage_request_line(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.connection_timeout_s = 1};
	char buf[4096];
	bool closed;
	struct call *c;
	int fd;

	start_server(f, &cfg);
	/* no space at all: MHD closes without an answer */
	fd = raw_connect(f->port);
	raw_send(fd, "GARBAGE\r\n\r\n", 11);
	assert_int_equal(raw_read(f, fd, buf, sizeof(buf), 5000, &closed), 0);
	assert_true(closed);
	close(fd);
	/* a malformed request line: MHD's 400, closed */
	fd = raw_connect(f->port);
	raw_send(fd, "GET /\r\n\r\n", 9);
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26), 0);
	close(fd);
	/* a TLS hello: no line end, so it waits for more, and gets the
	   request deadline's 408 */
	fd = raw_connect(f->port);
	raw_send(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(buf, "HTTP/1.1 408 ", 13), 0);
	close(fd);
	/* and the server goes on */
	c = do_call(f, "GET", "/v1/ping");
	assert_int_equal(c->status, 200);
	call_free(c);
	run_until_conns(f, 0);
	assert_int_equal(seen.calls, 1);
}

static void test_slowloris(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.connection_timeout_s = 1};
	const char *req = "GET /v1/ping HTTP/1.1\r\nHost: x\r\nX-Slow: "
			  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
			  "\r\n";
	/* slow: a byte per 1.5 s (slower than the timeout);
	   trickle: a byte per 200 ms (keeps MHD's idle timer happy) */
	int fd_slow, fd_trickle;
	size_t pos_slow = 0, pos_trickle = 0;
	uint64_t t0, next_slow, next_trickle, closed_slow = 0,
					      closed_trickle = 0;
	char buf_trickle[4096] = "", buf_slow[4096];
	size_t got_trickle = 0;
	struct call *c;
	pthread_t th;
	bool call_started = false;

	start_server(f, &cfg);
	fd_slow = raw_connect(f->port);
	fd_trickle = raw_connect(f->port);
	t0 = next_slow = next_trickle = loop_clock_ms();
	c = call_new(f, "GET", "/v1/ping");
	while (!closed_slow || !closed_trickle) {
		uint64_t now = loop_clock_ms();
		ssize_t n;

		assert_true(now - t0 < 10000);
		if (!closed_slow && now >= next_slow) {
			send(fd_slow, req + pos_slow++, 1, MSG_NOSIGNAL);
			next_slow = now + 1500;
		}
		if (!closed_trickle && now >= next_trickle) {
			send(fd_trickle, req + pos_trickle++, 1, MSG_NOSIGNAL);
			next_trickle = now + 200;
		}
		if (!closed_slow) {
			n = recv(fd_slow, buf_slow, sizeof(buf_slow),
				 MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN))
				closed_slow = now;
		}
		if (!closed_trickle) {
			n = recv(fd_trickle, buf_trickle + got_trickle,
				 sizeof(buf_trickle) - 1 - got_trickle,
				 MSG_DONTWAIT);
			if (n > 0)
				got_trickle += (size_t)n;
			else if (n == 0 || errno != EAGAIN)
				closed_trickle = now;
		}
		/* meanwhile another client is served normally */
		if (!call_started && now - t0 >= 300) {
			call_start(c, &th);
			call_started = true;
		}
		loop_run_once(f->l, 10);
	}
	call_finish(f, c, th);
	assert_int_equal(c->status, 200);
	assert_true(c->out_len > 0);
	call_free(c);
	/* closed at the timeout (1 s), not before, within generous slack */
	assert_true(closed_slow - t0 >= 900);
	assert_true(closed_slow - t0 < 1000 + 2500);
	assert_true(closed_trickle - t0 >= 900);
	assert_true(closed_trickle - t0 < 1000 + 2500);
	assert_true(pos_trickle < strlen(req)); /* it never finished */
	buf_trickle[got_trickle] = '\0';
	assert_int_equal(strncmp(buf_trickle, "HTTP/1.1 408 ", 13), 0);
	assert_error_body(strstr(buf_trickle, "\r\n\r\n") + 4,
			  "request_timeout", NULL, 0);
	close(fd_slow);
	close(fd_trickle);
	run_until_conns(f, 0);
	assert_true(stats_of(f)->timeouts >= 1);
	assert_int_equal(seen.calls, 1);
}

static void test_slow_body_gets_408(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.connection_timeout_s = 1};
	const char *req = "POST /v1/echo HTTP/1.1\r\nHost: x\r\n"
			  "X-Request-ID: slow-body-1\r\n"
			  "Content-Type: application/json\r\n"
			  "Content-Length: 100\r\n\r\n[1,2,3,4,5";
	char buf[4096] = "", id[80];
	uint64_t t0 = loop_clock_ms();
	bool closed;
	int fd;

	start_server(f, &cfg);
	fd = raw_connect(f->port);
	raw_send(fd, req, strlen(req));
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_true(loop_clock_ms() - t0 >= 900);
	assert_int_equal(strncmp(buf, "HTTP/1.1 408 Request Timeout\r\n", 30),
			 0);
	assert_non_null(strstr(buf, "\r\nX-Request-ID: slow-body-1\r\n"));
	assert_error_body(strstr(buf, "\r\n\r\n") + 4, "request_timeout", id,
			  sizeof(id));
	assert_string_equal(id, "slow-body-1");
	close(fd);
	run_until_conns(f, 0);
	assert_int_equal(stats_of(f)->by_status[408], 1);
	assert_int_equal(seen.calls, 0);
}

static void test_pipelined_requests(void **state)
{
	struct fx *f = *state;
	struct async_ctx a = {.f = f, .delay_ms = 50};
	const char *two = "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET /v1/ping HTTP/1.1\r\nHost: x\r\n"
			  "Connection: close\r\n\r\n";
	const char *async_then_sync =
	    "GET /v1/async HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char buf[8192] = "";
	char *first, *second;
	bool closed;
	int fd;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/async", h_async, &a, 0);
	fd = raw_connect(f->port);
	raw_send(fd, two, strlen(two));
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	first = strstr(buf, "HTTP/1.1 200 OK");
	assert_non_null(first);
	assert_non_null(strstr(first + 1, "HTTP/1.1 200 OK"));
	close(fd);
	/* an async request with the next one already sent behind it */
	fd = raw_connect(f->port);
	raw_send(fd, async_then_sync, strlen(async_then_sync));
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	first = strstr(buf, "\"id\":");
	assert_non_null(first);
	second = strstr(buf, "\"ok\":true");
	assert_non_null(second);
	assert_true(first < second); /* in order */
	assert_int_equal(a.how, HTTP_REQ_END_OK);
	close(fd);
	run_until_conns(f, 0);
	assert_int_equal(seen.calls, 3);
}

static void test_idle_keepalive_closed_silently(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.connection_timeout_s = 1};
	const char *req = "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096] = "";
	bool closed;
	int fd;

	start_server(f, &cfg);
	fd = raw_connect(f->port);
	raw_send(fd, req, strlen(req));
	assert_true(
	    raw_read_until(f, fd, buf, sizeof(buf), "\"ok\":true", 5000));
	/* then idle: closed after the timeout without a 408 */
	assert_int_equal(raw_read(f, fd, buf, sizeof(buf), 5000, &closed), 0);
	assert_true(closed);
	close(fd);
	run_until_conns(f, 0);
}

static void test_per_ip_limit(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.max_connections_per_ip = 3};
	const char *req = "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096] = "";
	bool closed;
	int fds[3], fd, i;

	start_server(f, &cfg);
	for (i = 0; i < 3; i++) {
		fds[i] = raw_connect(f->port);
		assert_true(fds[i] >= 0);
	}
	run_until_conns(f, 3);
	/* the fourth gets a JSON 429 and is closed */
	fd = raw_connect(f->port);
	assert_true(fd >= 0);
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(buf, "HTTP/1.1 429 ", 13), 0);
	assert_non_null(strstr(buf, "\r\nRetry-After: 1\r\n"));
	assert_error_body(strstr(buf, "\r\n\r\n") + 4, "too_many_requests",
			  NULL, 0);
	close(fd);
	assert_int_equal(stats_of(f)->rejected_limit, 1);
	/* the existing ones still work */
	for (i = 0; i < 3; i++) {
		buf[0] = '\0';
		raw_send(fds[i], req, strlen(req));
		assert_true(raw_read_until(f, fds[i], buf, sizeof(buf),
					   "\"ok\":true", 5000));
		assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
	}
	for (i = 0; i < 3; i++)
		close(fds[i]);
	run_until_conns(f, 0);
	assert_int_equal(seen.calls, 3);
	/* the count went down: a new one is served */
	fd = raw_connect(f->port);
	buf[0] = '\0';
	raw_send(fd, req, strlen(req));
	assert_true(
	    raw_read_until(f, fd, buf, sizeof(buf), "\"ok\":true", 5000));
	close(fd);
	run_until_conns(f, 0);
}

static void test_total_connection_limit(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.max_connections = 2};
	char buf[4096] = "";
	bool closed;
	struct call *c;
	int fds[2], fd, i;

	start_server(f, &cfg);
	for (i = 0; i < 2; i++)
		fds[i] = raw_connect(f->port);
	run_until_conns(f, 2);
	fd = raw_connect(f->port);
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_error_body(strstr(buf, "\r\n\r\n") + 4, "too_many_requests",
			  NULL, 0);
	close(fd);
	/* curl sees the 429 too */
	c = do_call(f, "GET", "/v1/ping");
	assert_int_equal(c->status, 429);
	call_free(c);
	for (i = 0; i < 2; i++)
		close(fds[i]);
	run_until_conns(f, 0);
	assert_int_equal(stats_of(f)->rejected_limit, 2);
	/* let the lingering rejected sockets finish */
	while (stats_of(f)->lingering)
		loop_run_once(f->l, 10);
}

static void raise_nofile(rlim_t want)
{
	struct rlimit rl;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
		skip(); /* cannot open that many here */
}

static void test_many_idle_connections(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.max_connections = 3000,
					 .max_connections_per_ip = 3000,
					 .connection_timeout_s = 60};
	enum { N = 2000 };
	int *fds = calloc(N, sizeof(int));
	struct call *c;
	uint64_t t0, ms;
	int i;

	raise_nofile(2 * N + 256);
	start_server(f, &cfg);
	for (i = 0; i < N; i++) {
		fds[i] = raw_connect(f->port);
		assert_true(fds[i] >= 0);
		if (i % 64 == 63)
			loop_run_once(f->l, 0); /* keep the backlog short */
	}
	run_until_conns(f, N);
	t0 = loop_clock_ms();
	c = do_call(f, "GET", "/v1/ping");
	ms = loop_clock_ms() - t0;
	assert_int_equal(c->status, 200);
	call_free(c);
	print_message("new client answered in %" PRIu64 "ms with %d idle "
		      "connections open\n",
		      ms, N);
	assert_true(ms < 3000);
	run_until_conns(f, N); /* curl's own went, the idle ones stay */
	for (i = 0; i < N; i++)
		close(fds[i]);
	free(fds);
	run_until_conns(f, 0);
}

/* ------------------------------------------------------------- streams */

struct sse_ctx {
	struct fx *f;
	struct http_req *req;
	struct http_stream *s;
	struct loop_timer t;
	int next;
	int n_events;
	size_t chunk;
	uint64_t period_ms;
	bool stop_after_first;
	bool keep_ref; /* the test drops the reference itself */
	int done_calls;
	enum http_req_end how;
	int last_rv;
	size_t total_written;
	bool started;
	bool enobufs;
};

static void sse_done(struct http_req *req, enum http_req_end how, void *arg)
{
	struct sse_ctx *x = arg;

	x->done_calls++;
	x->how = how;
	loop_timer_stop(&x->t);
	if (!x->keep_ref)
		http_req_unref(x->req);
}

static void sse_tick(struct loop_timer *t, void *arg)
{
	struct sse_ctx *x = arg;
	char ev[64];
	int rv;

	if (x->chunk) { /* flood: slow-reader test */
		char *blk = malloc(x->chunk);

		memset(blk, 'x', x->chunk);
		rv = http_stream_write(x->s, blk, x->chunk);
		free(blk);
		x->last_rv = rv;
		if (rv == 0) {
			x->total_written += x->chunk;
			assert_true(x->total_written < (512u << 20));
			loop_timer_start(x->f->l, &x->t, 1, sse_tick, x);
		} else {
			assert_int_equal(rv, -ENOBUFS);
			x->enobufs = true;
		}
		return;
	}
	snprintf(ev, sizeof(ev), "id: %d\ndata: event %d\n\n", x->next,
		 x->next);
	x->last_rv = http_stream_write(x->s, ev, strlen(ev));
	assert_int_equal(x->last_rv, 0);
	x->next++;
	if (x->stop_after_first)
		return; /* then silence: the stream sleeps */
	if (x->next == x->n_events)
		http_stream_close(x->s);
	else
		loop_timer_start(x->f->l, &x->t, x->period_ms, sse_tick, x);
}

static void h_sse(struct http_req *req, void *arg)
{
	struct sse_ctx *x = arg;

	x->req = req;
	http_req_ref(req);
	http_req_on_done(req, sse_done, x);
	x->s = http_stream_start(req, "text/event-stream");
	assert_non_null(x->s);
	assert_ptr_equal(http_stream_req(x->s), req);
	x->started = true;
	loop_timer_init(&x->t);
	loop_timer_start(x->f->l, &x->t, x->period_ms, sse_tick, x);
}

static void test_sse_in_order(void **state)
{
	struct fx *f = *state;
	struct sse_ctx x = {.f = f, .n_events = 20, .period_ms = 5};
	char want[4096] = "";
	struct call *c;
	int i;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/jobs/{id}/stream", h_sse, &x, 0);
	c = do_call(f, "GET", "/v1/jobs/j-1/stream");
	assert_int_equal(c->rc, CURLE_OK);
	assert_int_equal(c->status, 200);
	assert_string_equal(resp_header(c->hdrs, "Content-Type"),
			    "text/event-stream");
	assert_string_equal(resp_header(c->hdrs, "Cache-Control"), "no-cache");
	assert_true(generated_id(resp_header(c->hdrs, "X-Request-ID")));
	for (i = 0; i < 20; i++) {
		char ev[64];

		snprintf(ev, sizeof(ev), "id: %d\ndata: event %d\n\n", i, i);
		strcat(want, ev);
	}
	assert_string_equal(c->out, want);
	run_until_conns(f, 0);
	assert_int_equal(x.done_calls, 1);
	assert_int_equal(x.how, HTTP_REQ_END_OK);
	assert_int_equal(stats_of(f)->streams_active, 0);
	assert_true(stats_of(f)->bytes_out >= strlen(want));
	call_free(c);
}

static void test_sse_client_close_notifies(void **state)
{
	struct fx *f = *state;
	struct sse_ctx x = {
	    .f = f, .period_ms = 5, .stop_after_first = true, .keep_ref = true};
	struct call *c;
	uint64_t t0;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/jobs/{id}/stream", h_sse, &x, 0);
	c = call_new(f, "GET", "/v1/jobs/j-1/stream");
	c->abort_after = 1; /* leave after the first event */
	call_run(f, c);
	assert_int_equal(c->rc, CURLE_WRITE_ERROR);
	assert_int_equal(c->status, 200);
	/* the stream sleeps (nothing to write): the watch sees the close */
	t0 = loop_clock_ms();
	while (!x.done_calls) {
		assert_true(loop_run_once(f->l, 10) >= 0);
		assert_true(loop_clock_ms() - t0 < 5000);
	}
	assert_int_equal(x.how, HTTP_REQ_END_CLIENT_GONE);
	assert_int_equal(http_stream_write(x.s, "x", 1), -EPIPE);
	http_stream_close(x.s); /* harmless */
	http_stream_abort(x.s);
	http_req_unref(x.req);
	run_until_conns(f, 0);
	assert_int_equal(stats_of(f)->client_gone, 1);
	call_free(c);
}

static void test_sse_slow_reader(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.max_stream_buffer = 64 * 1024};
	struct sse_ctx x = {.f = f, .period_ms = 1, .chunk = 16 * 1024};
	const char *req = "GET /v1/jobs/j-1/stream HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sockaddr_in sa = {0};
	int fd, small = 4096;

	start_server(f, &cfg);
	add_route(f, "GET", "/v1/jobs/{id}/stream", h_sse, &x, 0);
	/* a reader that never reads, with a small window */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)f->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	raw_send(fd, req, strlen(req));
	run_until(f->l, &x.enobufs);
	assert_int_equal(x.last_rv, -ENOBUFS);
	assert_true(http_stream_buffered(x.s) <= 64 * 1024);
	assert_true(http_stream_buffered(x.s) + x.chunk > 64 * 1024);
	print_message("slow reader: %zu bytes accepted before -ENOBUFS\n",
		      x.total_written);
	/* the owner drops the reader */
	http_stream_abort(x.s);
	while (!x.done_calls)
		assert_true(loop_run_once(f->l, 10) >= 0);
	assert_int_equal(x.how, HTTP_REQ_END_ERROR);
	close(fd);
	run_until_conns(f, 0);
}

/* ----------------------------------------------------- stop and drain */

static void test_quiesce(void **state)
{
	struct fx *f = *state;
	const char *ping = "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n";
	const char *metrics = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096] = "";
	bool closed;
	int fd, fd2;

	start_server(f, NULL);
	fd = raw_connect(f->port);
	fd2 = raw_connect(f->port);
	run_until_conns(f, 2);
	http_server_quiesce(f->srv);
	assert_true(http_server_quiescing(f->srv));
	/* no new connections */
	assert_int_equal(raw_connect(f->port), -1);
	assert_int_equal(errno, ECONNREFUSED);
	/* open ones: 503 shutting_down, and closed */
	raw_send(fd, ping, strlen(ping));
	raw_read(f, fd, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(buf, "HTTP/1.1 503 ", 13), 0);
	assert_error_body(strstr(buf, "\r\n\r\n") + 4, "shutting_down", NULL,
			  0);
	/* a route marked DRAINING is still served, with Connection: close */
	raw_send(fd2, metrics, strlen(metrics));
	raw_read(f, fd2, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(buf, "HTTP/1.1 200 ", 13), 0);
	assert_non_null(strstr(buf, "Connection: close"));
	assert_non_null(strstr(buf, "metric 1"));
	close(fd);
	close(fd2);
	run_until_conns(f, 0);
}

static void test_free_with_live_requests(void **state)
{
	struct fx *f = *state;
	struct async_ctx a = {.f = f, .delay_ms = 10000};
	struct sse_ctx x = {.f = f, .period_ms = 1, .stop_after_first = true};
	const char *r1 = "GET /v1/async HTTP/1.1\r\nHost: x\r\n\r\n";
	const char *r2 = "GET /v1/jobs/j-1/stream HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096] = "";
	int fd1, fd2;
	bool closed;

	start_server(f, NULL);
	add_route(f, "GET", "/v1/async", h_async, &a, 0);
	add_route(f, "GET", "/v1/jobs/{id}/stream", h_sse, &x, 0);
	fd1 = raw_connect(f->port);
	fd2 = raw_connect(f->port);
	raw_send(fd1, r1, strlen(r1));
	raw_send(fd2, r2, strlen(r2));
	run_until(f->l, &a.handler_ran);
	assert_true(raw_read_until(f, fd2, buf, sizeof(buf), "event 0", 5000));
	run_for(f->l, 20);
	assert_int_equal(stats_of(f)->suspended, 2);
	http_server_free(f->srv);
	f->srv = NULL;
	/* owners told, the async one still holds its reference */
	assert_int_equal(a.done_calls, 1);
	assert_int_equal(a.how, HTTP_REQ_END_SHUTDOWN);
	assert_int_equal(x.done_calls, 1);
	assert_int_equal(x.how, HTTP_REQ_END_SHUTDOWN);
	assert_true(http_req_destroyed(a.req));
	assert_int_equal(http_reply_text(a.req, 200, "text/plain", "late"),
			 -ESHUTDOWN);
	loop_timer_stop(&a.t);
	http_req_unref(a.req);
	raw_read(f, fd1, buf, sizeof(buf), 5000, &closed);
	assert_true(closed);
	close(fd1);
	close(fd2);
}

static void test_stats_and_debug_str(void **state)
{
	struct fx *f = *state;
	struct http_server_stats *st;
	struct call *c;
	char buf[512];

	start_server(f, NULL);
	call_free(do_call(f, "GET", "/v1/ping"));
	call_free(do_call(f, "GET", "/v1/ping"));
	call_free(do_call(f, "GET", "/v1/nope"));
	call_free(do_call(f, "GET", "/v1/silent"));
	c = do_call(f, "HEAD", "/v1/nope");
	call_free(c);
	run_until_conns(f, 0);
	st = stats_of(f);
	assert_int_equal(st->requests_total, 5);
	assert_int_equal(st->by_class[2], 2);
	assert_int_equal(st->by_class[4], 2);
	assert_int_equal(st->by_class[5], 1);
	assert_int_equal(st->by_status[404], 2);
	assert_int_equal(st->connections_total, 5);
	assert_int_equal(st->connections_active, 0);
	assert_int_equal(st->requests_active, 0);
	http_server_debug_str(f->srv, buf, sizeof(buf));
	assert_non_null(strstr(buf, "http_server 127.0.0.1:"));
	assert_non_null(strstr(buf, " conns=0/1024 reqs=0 "));
	assert_non_null(strstr(buf, " total=5 "));
	assert_string_equal(http_req_state_name(HTTP_REQ_STREAMING),
			    "STREAMING");
	assert_string_equal(http_req_end_name(HTTP_REQ_END_CLIENT_GONE),
			    "CLIENT_GONE");
}

static void test_bad_listen(void **state)
{
	struct fx *f = *state;
	const char *bad[] = {"", "127.0.0.1", "127.0.0.1:x", "[::1:80",
			     "999.1.1.1:80"};
	struct http_server_config cfg = {0};
	struct http_server *other;
	char addr[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.listen = bad[i];
		assert_null(http_server_new(f->l, &cfg));
	}
	/* a port in use */
	start_server(f, NULL);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", f->port);
	cfg.listen = addr;
	other = http_server_new(f->l, &cfg);
	assert_null(other);
	assert_int_equal(errno, EADDRINUSE);
}

/* ------------------------------------------------------------- openapi */

static void h_any(struct http_req *req, void *arg)
{
	http_reply_error(req, 401, "unauthorized", "test server");
}

/* Run check-openapi.sh --server against f's server; its exit status. */
static int run_check_openapi(struct fx *f)
{
	char url[64], *argv[4];
	int status = -1;
	pid_t pid;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", f->port);
	argv[0] = "tests/unit/check-openapi.sh";
	argv[1] = "--server";
	argv[2] = url;
	argv[3] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, WNOHANG) != pid)
		assert_true(loop_run_once(f->l, 10) >= 0);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/*
 * tests/unit/check-openapi.sh: docs/openapi.yaml parses (stdlib YAML
 * subset), covers every endpoint of docs/api.md and docs/protocol.md and
 * every error code; then, against this live server with the API's routes,
 * every operation is routed and every error has the shape.
 */
static void test_openapi_check(void **state)
{
	struct fx *f = *state;
	const char *routes[][2] = {
	    {"POST", "/v1/jobs"},
	    {"GET", "/v1/jobs"},
	    {"GET", "/v1/jobs/{id}"},
	    {"DELETE", "/v1/jobs/{id}"},
	    {"GET", "/v1/jobs/{id}/output"},
	    {"GET", "/v1/usage"},
	    {"GET", "/v1/sites"},
	    {"PUT", "/v1/sites/{site}/credential"},
	    {"GET", "/v1/sites/{site}/credential"},
	    {"DELETE", "/v1/sites/{site}/credential"},
	    {"GET", "/healthz"},
	    {"GET", "/metrics"},
	    {"GET", "/debug/tasks"},
	    {"POST", "/v1/events"},
	    {"POST", "/v1/output/{site}/{job}/{stream}"},
	};
	struct http_server_config cfg = {0};
	size_t i, n = sizeof(routes) / sizeof(routes[0]);

	if (access("tests/unit/check-openapi.sh", X_OK) != 0)
		skip(); /* not run from the source tree */
	cfg.listen = "127.0.0.1:0";
	f->srv = http_server_new(f->l, &cfg);
	assert_non_null(f->srv);
	f->port = http_server_port(f->srv);
	/* one route missing: the check must fail */
	for (i = 0; i + 1 < n; i++)
		add_route(f, routes[i][0], routes[i][1], h_any, NULL, 0);
	assert_int_equal(run_check_openapi(f), 1);
	add_route(f, routes[n - 1][0], routes[n - 1][1], h_any, NULL, 0);
	assert_int_equal(run_check_openapi(f), 0);
	run_until_conns(f, 0);
}

/* ------------------------------------------------- requests per turn */

struct turn_log {
	struct loop *l;
	uint64_t turn[16];
	unsigned n;
};

static void h_turn(struct http_req *req, void *arg)
{
	struct turn_log *tl = arg;

	if (tl->n < 16)
		tl->turn[tl->n] = loop_turn(tl->l);
	tl->n++;
	http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* Send one request on each of n fresh connections, all before the server
   reads any: its next MHD_run finds them all ready at once. */
static void send_on_each(struct fx *f, int *fds, unsigned n)
{
	const char *get = "GET /v1/turn HTTP/1.1\r\nHost: x\r\n"
			  "Connection: close\r\n\r\n";
	unsigned i;

	for (i = 0; i < n; i++) {
		fds[i] = raw_connect(f->port);
		assert_true(fds[i] >= 0);
	}
	run_until_conns(f, n);
	for (i = 0; i < n; i++)
		raw_send(fds[i], get, strlen(get));
}

static void test_requests_per_turn(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.requests_per_turn = 2};
	struct turn_log tl = {.l = f->l};
	uint64_t start = loop_clock_ms();
	int fds[7];
	unsigned i, j;

	start_server(f, &cfg);
	add_route(f, "GET", "/v1/turn", h_turn, &tl, 0);
	send_on_each(f, fds, 7);
	while (tl.n < 7) {
		assert_true(loop_run_once(f->l, 10) >= 0);
		assert_true(loop_clock_ms() - start < RUN_LIMIT_MS);
	}
	/* never more than two handlers in one turn; the five read beyond
	   the budget waited, and all were answered */
	for (i = 0; i < 7; i++) {
		unsigned same = 0;

		for (j = 0; j < 7; j++)
			same += tl.turn[j] == tl.turn[i];
		assert_true(same <= 2);
	}
	assert_int_equal(stats_of(f)->held_total, 5);
	assert_int_equal(stats_of(f)->held, 0);
	for (i = 0; i < 7; i++) {
		char buf[4096] = "";

		assert_true(raw_read_until(f, fds[i], buf, sizeof(buf),
					   "\"ok\":true", 5000));
		assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
		close(fds[i]);
	}
	run_until_conns(f, 0);
	assert_int_equal(stats_of(f)->requests_active, 0);
}

/* Clients gone while held, then the server freed with requests held. */
static void test_held_requests_client_gone_and_free(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.requests_per_turn = 1};
	struct turn_log tl = {.l = f->l};
	uint64_t start = loop_clock_ms();
	int fds[4];
	unsigned i;

	start_server(f, &cfg);
	add_route(f, "GET", "/v1/turn", h_turn, &tl, 0);
	send_on_each(f, fds, 4);
	while (stats_of(f)->held_total < 3) {
		assert_true(loop_run_once(f->l, 10) >= 0);
		assert_true(loop_clock_ms() - start < RUN_LIMIT_MS);
	}
	close(fds[3]); /* waits in the queue; its turn comes with a dead peer */
	while (tl.n < 4 && stats_of(f)->requests_active > 0) {
		assert_true(loop_run_once(f->l, 10) >= 0);
		assert_true(loop_clock_ms() - start < RUN_LIMIT_MS);
	}
	for (i = 0; i < 3; i++)
		close(fds[i]);
	run_until_conns(f, 0);
	assert_int_equal(stats_of(f)->held, 0);
	/* again, and free the server while two requests are held */
	send_on_each(f, fds, 3);
	while (stats_of(f)->held < 2) {
		assert_true(loop_run_once(f->l, 0) >= 0);
		assert_true(loop_clock_ms() - start < RUN_LIMIT_MS);
	}
	/* held in MHD's ready list, not suspended (no epoll_ctl each) */
	assert_int_equal(stats_of(f)->suspended, 0);
	http_server_free(f->srv); /* teardown checks nothing is left */
	f->srv = NULL;
	for (i = 0; i < 3; i++)
		close(fds[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T_(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T_(test_get_json_and_request_id),
	    T_(test_not_found_and_method_not_allowed),
	    T_(test_path_params_and_query),
	    T_(test_error_table_matches_api_md),
	    T_(test_error_helpers),
	    T_(test_body_json),
	    T_(test_async_reply),
	    T_(test_async_client_gone),
	    T_(test_guard_async),
	    T_(test_body_too_large),
	    T_(test_headers_too_large),
	    T_(test_garbage_request_line),
	    T_(test_slowloris),
	    T_(test_slow_body_gets_408),
	    T_(test_pipelined_requests),
	    T_(test_idle_keepalive_closed_silently),
	    T_(test_per_ip_limit),
	    T_(test_total_connection_limit),
	    T_(test_many_idle_connections),
	    T_(test_sse_in_order),
	    T_(test_sse_client_close_notifies),
	    T_(test_sse_slow_reader),
	    T_(test_quiesce),
	    T_(test_free_with_live_requests),
	    T_(test_stats_and_debug_str),
	    T_(test_bad_listen),
	    T_(test_openapi_check),
	    T_(test_requests_per_turn),
	    T_(test_held_requests_client_gone_and_free),
#undef T_
	};

	log_init("test_http_server");
	log_debug_from_env();
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	alarm(600);
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
