/*
 * client.c: see client.h.  libcurl easy interface, one handle per call.
 */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <munge.h>

#include "json_util.h"

struct tg_client {
	char *url;	 /* as given */
	char *base;	 /* "http://host:port/prefix" without trailing '/' */
	char *unix_path; /* unix: URLs */
	char *token;
	bool munge;
	char *munge_socket;
	long timeout_s;
};

static void client_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void client_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void tg_request_clear(struct tg_request *r)
{
	free(r->path);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

void tg_response_clear(struct tg_response *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

struct tg_client *tg_client_new(const char *url, const char *token, char *err,
				size_t errlen)
{
	struct tg_client *c;
	size_t n;

	if (!url || !*url)
		url = TG_DEFAULT_URL;
	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8) &&
	    strncmp(url, "unix:/", 6)) {
		client_err(
		    err, errlen,
		    "bad URL '%s': want http://HOST:PORT, https://... or "
		    "unix:/PATH",
		    url);
		return NULL;
	}
	if (strpbrk(url, " \t\r\n")) {
		client_err(err, errlen, "bad URL '%s': blanks in it", url);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out_nomem;
	c->timeout_s = TG_DEFAULT_TIMEOUT;
	c->url = strdup(url);
	if (!strncmp(url, "unix:", 5)) {
		c->unix_path = strdup(url + 5);
		c->base = strdup("http://localhost");
	} else {
		c->base = strdup(url);
	}
	if (token)
		c->token = strdup(token);
	if (!c->url || !c->base || (token && !c->token) ||
	    (!strncmp(url, "unix:", 5) && !c->unix_path))
		goto out_free;
	n = strlen(c->base);
	while (n > 8 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		client_err(err, errlen, "curl_global_init failed");
		tg_client_free(c);
		return NULL;
	}
	return c;
out_free:
	tg_client_free(c);
out_nomem:
	client_err(err, errlen, "out of memory");
	return NULL;
}

void tg_client_free(struct tg_client *c)
{
	if (!c)
		return;
	free(c->url);
	free(c->base);
	free(c->unix_path);
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
	}
	free(c->munge_socket);
	free(c);
	curl_global_cleanup();
}

int tg_client_use_munge(struct tg_client *c, const char *socket)
{
	free(c->munge_socket);
	c->munge_socket = NULL;
	if (socket && !(c->munge_socket = strdup(socket)))
		return -ENOMEM;
	c->munge = true;
	return 0;
}

void tg_client_set_timeout(struct tg_client *c, long seconds)
{
	c->timeout_s = seconds < 0 ? 0 : seconds;
}

const char *tg_client_url(const struct tg_client *c)
{
	return c->url;
}

/* ----------------------------------------------------------- plumbing */

struct xfer {
	CURL *easy;
	struct tg_response *resp;
	size_t cap;
	bool too_big;
	/* streams */
	struct sse_parser *parser; /* NULL: not a stream request */
	bool decided;		   /* first body byte seen */
	bool streaming; /* a 200 text/event-stream: feed the parser */
	int stop_rv;	/* the callback's (or the parser's) stop value */
};

static size_t header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n, k;
	const char *v;
	size_t vlen;

	/* a new status line starts a new header block (100-continue) */
	if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
		x->resp->request_id[0] = '\0';
		x->resp->content_type[0] = '\0';
		return len;
	}
	for (k = 0; k < len && buf[k] != ':'; k++)
		;
	if (k == len)
		return len;
	v = buf + k + 1;
	vlen = len - k - 1;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && isspace((unsigned char)v[vlen - 1]))
		vlen--;
	if (k == 12 && !strncasecmp(buf, "X-Request-ID", 12))
		snprintf(x->resp->request_id, sizeof(x->resp->request_id),
			 "%.*s", (int)vlen, v);
	else if (k == 12 && !strncasecmp(buf, "Content-Type", 12))
		snprintf(x->resp->content_type, sizeof(x->resp->content_type),
			 "%.*s", (int)vlen, v);
	return len;
}

static size_t body_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	struct tg_response *r = x->resp;
	size_t len = size * n, need;
	char *b;

	if (!x->decided) {
		long code = 0;

		x->decided = true;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		x->streaming =
		    x->parser && code == 200 &&
		    !strncasecmp(r->content_type, "text/event-stream", 17);
	}
	if (x->streaming) {
		int rv = sse_feed(x->parser, buf, len);

		if (rv) {
			x->stop_rv = rv;
			return 0; /* abort the transfer */
		}
		return len;
	}
	need = r->body_len + len + 1;
	if (need > TG_RESPONSE_MAX) {
		x->too_big = true;
		return 0;
	}
	if (need > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;

		while (cap < need)
			cap *= 2;
		b = realloc(r->body, cap);
		if (!b)
			return 0;
		r->body = b;
		x->cap = cap;
	}
	memcpy(r->body + r->body_len, buf, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return len;
}

/* The MUNGE header for "<METHOD> <path without query>"; malloc'd. */
static int munge_header(struct tg_client *c, const char *method,
			const char *path, char **hdr, char *err, size_t errlen)
{
	munge_ctx_t ctx = munge_ctx_create();
	char *payload = NULL, *cred = NULL;
	munge_err_t e;
	size_t plen = strcspn(path, "?");
	int rv = 0;

	*hdr = NULL;
	if (!ctx)
		return -ENOMEM;
	if (c->munge_socket &&
	    munge_ctx_set(ctx, MUNGE_OPT_SOCKET, c->munge_socket) !=
		EMUNGE_SUCCESS) {
		client_err(err, errlen, "munge socket %s: %s", c->munge_socket,
			   munge_ctx_strerror(ctx));
		rv = -EINVAL;
		goto out;
	}
	if (asprintf(&payload, "%s %.*s", method, (int)plen, path) < 0) {
		payload = NULL;
		rv = -ENOMEM;
		goto out;
	}
	e = munge_encode(&cred, ctx, payload, (int)strlen(payload));
	if (e != EMUNGE_SUCCESS) {
		client_err(err, errlen, "cannot make a MUNGE credential: %s",
			   munge_ctx_strerror(ctx));
		rv = -EACCES;
		goto out;
	}
	if (asprintf(hdr, "Authorization: MUNGE %s", cred) < 0) {
		*hdr = NULL;
		rv = -ENOMEM;
	}
out:
	free(payload);
	free(cred);
	munge_ctx_destroy(ctx);
	return rv;
}

static int curl_to_errno(CURLcode cc)
{
	/* if/else: -Wswitch-enum would want all ~100 CURLcodes */
	if (cc == CURLE_COULDNT_CONNECT)
		return -ECONNREFUSED;
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return -ETIMEDOUT;
	if (cc == CURLE_COULDNT_RESOLVE_HOST ||
	    cc == CURLE_COULDNT_RESOLVE_PROXY)
		return -EHOSTUNREACH;
	if (cc == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	return -EIO;
}

/*
 * One transfer.  stream: Accept text/event-stream, Last-Event-ID, no
 * overall timeout, low-speed abort after idle_s.
 */
static int perform(struct tg_client *c, const struct tg_request *req,
		   bool stream, const char *last_event_id, long idle_s,
		   struct sse_parser *parser, struct tg_response *resp,
		   char *err, size_t errlen)
{
	struct curl_slist *hdrs = NULL, *h;
	struct xfer x = {.resp = resp, .parser = stream ? parser : NULL};
	char errbuf[CURL_ERROR_SIZE] = "", *url = NULL, *line = NULL;
	CURL *e = NULL;
	CURLcode cc;
	json_t *j = NULL;
	int rv = 0;

	tg_response_clear(resp);
	if (!req->path || req->path[0] != '/') {
		client_err(err, errlen, "bad request path");
		return -EINVAL;
	}
	if (asprintf(&url, "%s%s", c->base, req->path) < 0) {
		url = NULL;
		goto out_nomem;
	}
	e = curl_easy_init();
	if (!e)
		goto out_nomem;
	x.easy = e;

#define ADD_HDR(s)                                                             \
	do {                                                                   \
		h = curl_slist_append(hdrs, (s));                              \
		if (!h)                                                        \
			goto out_nomem;                                        \
		hdrs = h;                                                      \
	} while (0)
	ADD_HDR(stream ? "Accept: text/event-stream"
		       : "Accept: application/json");
	if (req->body)
		ADD_HDR("Content-Type: application/json");
	else
		ADD_HDR("Content-Type:"); /* curl's default form type: off */
	ADD_HDR("Expect:");
	if (c->munge) {
		rv =
		    munge_header(c, req->method, req->path, &line, err, errlen);
		if (rv)
			goto out;
		ADD_HDR(line);
	} else if (c->token) {
		if (asprintf(&line, "Authorization: Bearer %s", c->token) < 0) {
			line = NULL;
			goto out_nomem;
		}
		ADD_HDR(line);
	}
	if (line) {
		memset(line, 0, strlen(line));
		free(line);
		line = NULL;
	}
	if (req->idempotency_key) {
		if (asprintf(&line, "Idempotency-Key: %s",
			     req->idempotency_key) < 0) {
			line = NULL;
			goto out_nomem;
		}
		ADD_HDR(line);
		free(line);
		line = NULL;
	}
	if (stream && last_event_id && *last_event_id) {
		if (asprintf(&line, "Last-Event-ID: %s", last_event_id) < 0) {
			line = NULL;
			goto out_nomem;
		}
		ADD_HDR(line);
		free(line);
		line = NULL;
	}
#undef ADD_HDR

	curl_easy_setopt(e, CURLOPT_URL, url);
	if (c->unix_path)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (!strcmp(req->method, "GET"))
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (req->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
				 (long)strlen(req->body));
	} else if (strcmp(req->method, "GET")) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tiergate-cli/1");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (stream) {
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 0L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
				 idle_s > 0 ? idle_s : 90L);
	} else {
		curl_easy_setopt(e, CURLOPT_TIMEOUT, c->timeout_s);
	}
	cc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
	if (x.stop_rv) {
		rv = x.stop_rv;
		goto out;
	}
	if (x.too_big) {
		client_err(err, errlen, "answer from %s larger than %u bytes",
			   c->url, TG_RESPONSE_MAX);
		rv = -EFBIG;
		goto out;
	}
	if (cc != CURLE_OK) {
		client_err(err, errlen, "cannot reach tiergated at %s: %s",
			   c->url, *errbuf ? errbuf : curl_easy_strerror(cc));
		rv = curl_to_errno(cc);
		goto out;
	}
	if (stream &&
	    (x.streaming ||
	     (resp->status == 200 &&
	      !strncasecmp(resp->content_type, "text/event-stream", 17)))) {
		rv = 0; /* the server ended the stream */
		goto out;
	}
	if (!resp->body) {
		resp->body = strdup("");
		if (!resp->body)
			goto out_nomem;
	}
	if (resp->body_len &&
	    !json_parse_text(resp->body, resp->body_len, 0, &j, NULL, 0))
		resp->json = j;
	rv = stream ? 1 : 0; /* a stream request answered otherwise */
	goto out;

out_nomem:
	client_err(err, errlen, "out of memory");
	rv = -ENOMEM;
out:
	if (line) {
		memset(line, 0, strlen(line));
		free(line);
	}
	for (h = hdrs; h; h = h->next)
		if (!strncasecmp(h->data, "Authorization:", 14))
			memset(h->data, 0, strlen(h->data));
	curl_slist_free_all(hdrs);
	if (e)
		curl_easy_cleanup(e);
	free(url);
	return rv;
}

int tg_call_req(struct tg_client *c, const struct tg_request *req,
		struct tg_response *resp, char *err, size_t errlen)
{
	return perform(c, req, false, NULL, 0, NULL, resp, err, errlen);
}

int tg_call(struct tg_client *c, const char *method, const char *path,
	    const char *json_body, long *status, json_t **json_out, char *err,
	    size_t errlen)
{
	struct tg_request req = {.method = method};
	struct tg_response resp = {0};
	int rv;

	*status = 0;
	*json_out = NULL;
	req.path = (char *)path;
	req.body = (char *)json_body;
	rv = perform(c, &req, false, NULL, 0, NULL, &resp, err, errlen);
	if (!rv) {
		*status = resp.status;
		*json_out = resp.json;
		resp.json = NULL;
	}
	tg_response_clear(&resp);
	return rv;
}

int tg_stream(struct tg_client *c, const char *path, const char *last_event_id,
	      struct sse_parser *parser, long idle_s, struct tg_response *resp,
	      char *err, size_t errlen)
{
	struct tg_request req = {.method = "GET"};

	req.path = (char *)path;
	sse_reset(parser);
	return perform(c, &req, true, last_event_id, idle_s, parser, resp, err,
		       errlen);
}
