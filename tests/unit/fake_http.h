/*
 * fake_http.h: a tiny HTTP/1.1 server on its own thread, for the unit
 * tests of the HTTP client and the site adapters (fault injection: answer
 * normally, answer garbage, accept but never answer, close at once, answer
 * late).  Raw sockets and poll(2), keep-alive, Content-Length bodies.
 * Loopback TCP on an ephemeral port or a unix socket.
 *
 * Header-only (static functions) so that only the tests that include it
 * carry it.  The handler runs on the server thread: it must only read
 * shared test data or use atomics.
 */
#ifndef TIERGATE_TEST_FAKE_HTTP_H
#define TIERGATE_TEST_FAKE_HTTP_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FAKE_UNUSED __attribute__((unused))

struct fake_http_req {
	char method[16];
	char path[2048];    /* with the query */
	char headers[8192]; /* header lines as received, "\r\n" separated */
	const char *body;   /* NUL-terminated copy */
	size_t body_len;
	unsigned conn_id; /* 1, 2, ... per accepted connection */
};

enum fake_http_action {
	FAKE_RESPOND, /* status line + headers + body, after delay_ms */
	FAKE_GARBAGE, /* write body as is (no HTTP framing), then close */
	FAKE_HANG,    /* never answer; keep the connection open */
	FAKE_CLOSE,   /* close the connection at once */
};

struct fake_http_resp {
	enum fake_http_action action;
	int status;		  /* default 200 */
	const char *content_type; /* default application/json */
	char *body;		  /* malloc'd; the server frees it */
	size_t body_len;
	unsigned delay_ms;	/* RESPOND/GARBAGE: wait before sending */
	bool close;		/* Connection: close after this answer */
	bool no_content_length; /* e.g. a 304 */
};

typedef void fake_http_handler(const struct fake_http_req *req,
			       struct fake_http_resp *resp, void *arg);

struct fake_conn {
	int fd;
	unsigned id;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off;
	uint64_t send_at_ms;
	bool responding; /* a request is being answered (delay/out) */
	bool hang;
	bool close_after;
};

struct fake_http {
	int lfd;
	int wake[2];
	pthread_t thread;
	fake_http_handler *handler;
	void *arg;
	char base[160];
	char unix_path[108];
	struct fake_conn **conns;
	size_t n_conns, cap_conns;
	/* counters, read with __atomic_load_n */
	unsigned accepted, requests, open, max_open, inflight, max_inflight,
	    peer_closed;
};

static FAKE_UNUSED uint64_t fake_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static FAKE_UNUSED void fake_set_max(unsigned *max, unsigned v)
{
	unsigned m = __atomic_load_n(max, __ATOMIC_SEQ_CST);

	while (v > m &&
	       !__atomic_compare_exchange_n(max, &m, v, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST))
		;
}

static FAKE_UNUSED void fake_conn_close(struct fake_http *s, size_t i,
					bool by_peer)
{
	struct fake_conn *c = s->conns[i];

	if (c->responding)
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	if (by_peer)
		__atomic_add_fetch(&s->peer_closed, 1, __ATOMIC_SEQ_CST);
	__atomic_sub_fetch(&s->open, 1, __ATOMIC_SEQ_CST);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
	s->conns[i] = s->conns[--s->n_conns];
}

static FAKE_UNUSED const char *fake_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 304:
		return "NOT MODIFIED";
	case 400:
		return "BAD REQUEST";
	case 401:
		return "UNAUTHORIZED";
	case 404:
		return "NOT FOUND";
	case 500:
		return "INTERNAL SERVER ERROR";
	default:
		return "WHATEVER";
	}
}

/* Parse one complete request from c->in, if any; returns true if it did. */
static FAKE_UNUSED bool fake_take_request(struct fake_http *s,
					  struct fake_conn *c)
{
	struct fake_http_req *req;
	struct fake_http_resp resp;
	char *end, *line_end, *p;
	size_t head_len, body_len = 0, total;

	if (!c->in_len)
		return false;
	c->in[c->in_len] = '\0';
	end = strstr(c->in, "\r\n\r\n");
	if (!end)
		return false;
	head_len = (size_t)(end - c->in) + 4;
	for (p = strstr(c->in, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n"))
		if (strncasecmp(p + 2, "Content-Length:", 15) == 0)
			body_len = strtoul(p + 17, NULL, 10);
	total = head_len + body_len;
	if (c->in_len < total)
		return false;
	req = calloc(1, sizeof(*req));
	if (!req)
		abort();
	line_end = strstr(c->in, "\r\n");
	sscanf(c->in, "%15s %2047s", req->method, req->path);
	if (line_end + 2 < end)
		snprintf(req->headers, sizeof(req->headers), "%.*s",
			 (int)(end - (line_end + 2)), line_end + 2);
	{
		char *b = malloc(body_len + 1);

		if (!b)
			abort();
		memcpy(b, c->in + head_len, body_len);
		b[body_len] = '\0';
		req->body = b;
		req->body_len = body_len;
	}
	req->conn_id = c->id;
	memset(&resp, 0, sizeof(resp));
	resp.status = 200;
	__atomic_add_fetch(&s->requests, 1, __ATOMIC_SEQ_CST);
	fake_set_max(&s->max_inflight,
		     __atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST));
	c->responding = true;
	s->handler(req, &resp, s->arg);
	free((void *)req->body);
	free(req);
	memmove(c->in, c->in + total, c->in_len - total);
	c->in_len -= total;

	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	c->send_at_ms = fake_now_ms() + resp.delay_ms;
	switch (resp.action) {
	case FAKE_RESPOND: {
		char head[512];
		int n;

		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n",
			     resp.status, fake_reason(resp.status),
			     resp.content_type ? resp.content_type
					       : "application/json");
		if (!resp.no_content_length)
			n += snprintf(head + n, sizeof(head) - (size_t)n,
				      "Content-Length: %zu\r\n", resp.body_len);
		if (resp.close)
			n += snprintf(head + n, sizeof(head) - (size_t)n,
				      "Connection: close\r\n");
		n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
		c->out = malloc((size_t)n + resp.body_len);
		if (!c->out)
			abort();
		memcpy(c->out, head, (size_t)n);
		if (resp.body_len)
			memcpy(c->out + n, resp.body, resp.body_len);
		c->out_len = (size_t)n + resp.body_len;
		c->close_after = resp.close;
		break;
	}
	case FAKE_GARBAGE:
		c->out = malloc(resp.body_len + 1);
		if (!c->out)
			abort();
		memcpy(c->out, resp.body ? resp.body : "", resp.body_len);
		c->out_len = resp.body_len;
		c->close_after = true;
		break;
	case FAKE_HANG:
		c->hang = true;
		break;
	case FAKE_CLOSE:
		c->close_after = true;
		c->send_at_ms = 0;
		break;
	}
	free(resp.body);
	return true;
}

static FAKE_UNUSED void *fake_http_thread(void *arg)
{
	struct fake_http *s = arg;
	struct pollfd *pfds = NULL;
	size_t cap = 0;

	for (;;) {
		size_t i, n = 0;
		uint64_t now = fake_now_ms();
		int timeout = -1;

		if (cap < s->n_conns + 2) {
			cap = s->n_conns + 64;
			struct pollfd *grown =
			    realloc(pfds, cap * sizeof(*pfds));

			if (!grown)
				abort();
			pfds = grown;
		}
		pfds[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
		pfds[n++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
		for (i = 0; i < s->n_conns; i++) {
			struct fake_conn *c = s->conns[i];
			short ev = POLLIN;

			if (c->responding && !c->hang) {
				if (c->send_at_ms > now) {
					int t = (int)(c->send_at_ms - now);

					if (timeout < 0 || t < timeout)
						timeout = t;
				} else {
					ev |= POLLOUT;
				}
			}
			pfds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
		}
		if (poll(pfds, (nfds_t)n, timeout) < 0 && errno != EINTR)
			abort();
		if (pfds[0].revents)
			break;
		if (pfds[1].revents & POLLIN) {
			int fd = accept4(s->lfd, NULL, NULL,
					 SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (fd >= 0) {
				struct fake_conn *c = calloc(1, sizeof(*c));

				if (!c)
					abort();
				c->fd = fd;
				c->id = __atomic_add_fetch(&s->accepted, 1,
							   __ATOMIC_SEQ_CST);
				fake_set_max(
				    &s->max_open,
				    __atomic_add_fetch(&s->open, 1,
						       __ATOMIC_SEQ_CST));
				if (s->n_conns == s->cap_conns) {
					s->cap_conns = s->cap_conns * 2 + 16;
					s->conns = realloc(
					    s->conns,
					    s->cap_conns * sizeof(*s->conns));
					if (!s->conns)
						abort();
				}
				s->conns[s->n_conns++] = c;
			}
		}
		/* walk backwards: closing swaps the last one in */
		for (i = n; i-- > 2;) {
			size_t ci = i - 2;
			struct fake_conn *c;
			short rev = pfds[i].revents;

			if (ci >= s->n_conns)
				continue;
			c = s->conns[ci];
			if (c->fd != pfds[i].fd)
				continue;
			if (rev & POLLIN) {
				ssize_t r;

				if (c->in_cap - c->in_len < 65537) {
					c->in_cap = c->in_cap * 2 + 65537;
					c->in = realloc(c->in, c->in_cap);
					if (!c->in)
						abort();
				}
				r = read(c->fd, c->in + c->in_len,
					 c->in_cap - c->in_len - 1);
				if (r == 0 || (r < 0 && errno != EAGAIN)) {
					fake_conn_close(s, ci, true);
					continue;
				}
				if (r > 0)
					c->in_len += (size_t)r;
			} else if (rev & (POLLERR | POLLHUP)) {
				fake_conn_close(s, ci, true);
				continue;
			}
			if (!c->responding && fake_take_request(s, c)) {
				if (c->close_after && !c->out) {
					fake_conn_close(s, ci, false);
					continue;
				}
			}
			if ((rev & POLLOUT) && c->responding && !c->hang &&
			    c->send_at_ms <= fake_now_ms()) {
				ssize_t w = 0;

				if (c->out_off < c->out_len)
					w = send(c->fd, c->out + c->out_off,
						 c->out_len - c->out_off,
						 MSG_NOSIGNAL);
				if (w < 0 && errno != EAGAIN) {
					fake_conn_close(s, ci, true);
					continue;
				}
				if (w > 0)
					c->out_off += (size_t)w;
				if (c->out_off >= c->out_len) {
					c->responding = false;
					__atomic_sub_fetch(&s->inflight, 1,
							   __ATOMIC_SEQ_CST);
					if (c->close_after) {
						fake_conn_close(s, ci, false);
						continue;
					}
					/* pipelined leftovers */
					fake_take_request(s, c);
				}
			}
		}
	}
	free(pfds);
	return NULL;
}

static FAKE_UNUSED struct fake_http *
fake_http_start_(int lfd, fake_http_handler *h, void *arg)
{
	struct fake_http *s = calloc(1, sizeof(*s));

	if (!s)
		abort();
	s->lfd = lfd;
	s->handler = h;
	s->arg = arg;
	if (pipe2(s->wake, O_CLOEXEC) < 0)
		abort();
	if (pthread_create(&s->thread, NULL, fake_http_thread, s) != 0)
		abort();
	return s;
}

/* On 127.0.0.1, an ephemeral port; base "http://127.0.0.1:PORT". */
static FAKE_UNUSED struct fake_http *fake_http_start(fake_http_handler *h,
						     void *arg)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct fake_http *s;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 512) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		abort();
	s = fake_http_start_(fd, h, arg);
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	return s;
}

/* On a unix socket at path; base "unix:<path>". */
static FAKE_UNUSED struct fake_http *
fake_http_start_unix(const char *path, fake_http_handler *h, void *arg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct fake_http *s;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 512) < 0)
		abort();
	s = fake_http_start_(fd, h, arg);
	snprintf(s->base, sizeof(s->base), "unix:%s", path);
	snprintf(s->unix_path, sizeof(s->unix_path), "%s", path);
	return s;
}

static FAKE_UNUSED const char *fake_http_base(const struct fake_http *s)
{
	return s->base;
}

static FAKE_UNUSED unsigned fake_http_count(const unsigned *counter)
{
	return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
}

/* Stop the thread, close every connection and the listener, free. */
static FAKE_UNUSED void fake_http_stop(struct fake_http *s)
{
	if (!s)
		return;
	if (write(s->wake[1], "x", 1) != 1)
		abort();
	pthread_join(s->thread, NULL);
	while (s->n_conns)
		fake_conn_close(s, s->n_conns - 1, false);
	free(s->conns);
	close(s->lfd);
	close(s->wake[0]);
	close(s->wake[1]);
	if (s->unix_path[0])
		unlink(s->unix_path);
	free(s);
}

/* A malloc'd copy of a string, for fake_http_resp.body. */
static FAKE_UNUSED void fake_body(struct fake_http_resp *r, const char *s)
{
	r->body_len = strlen(s);
	r->body = malloc(r->body_len + 1);
	if (!r->body)
		abort();
	memcpy(r->body, s, r->body_len + 1);
}

#endif
