/*
 * http_server.c: libmicrohttpd 0.9.75 in external epoll mode on our loop
 * (see http_server.h for the contract and the limits).
 *
 * Who holds what:
 *   struct http_conn   one per accepted socket, from accept to MHD's
 *                      NOTIFY_CONNECTION CLOSED: the per-IP count, the
 *                      request deadline timer, the request in progress.
 *   struct http_req    one per request, from MHD's URI callback to
 *                      NOTIFY_COMPLETED (MHD's reference), plus the
 *                      references of whoever completes it later; a stream
 *                      response holds one more until MHD frees it.
 *
 * MHD rules this file follows (checked against 0.9.75):
 * - A response queued before the request is fully received makes MHD
 *   close the connection after it: normal replies are queued from the
 *   final access-handler call only; early errors (413, 431, 503 while
 *   draining) are meant to close.
 * - A response can only be queued from the access handler: an async
 *   reply is stored, the connection resumed, and MHD's next call of the
 *   handler queues it.
 * - A suspended connection is not watched by MHD: we poll its fd for the
 *   client going away.
 * - MHD_run is never called from inside an MHD callback: a resume defers
 *   it to the next loop turn.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http_response.h"
#include "json_util.h"
#include "log.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define MAX_SEGS 16
#define MAX_PARAMS 8
#define IP_BUCKETS 256
#define ACCEPT_BUDGET 64       /* accepts per loop callback */
#define ACCEPT_PAUSE_MS 100    /* after EMFILE/ENFILE */
#define LINGER_MAX 64	       /* rejected sockets closed gently at once */
#define LINGER_MS 1000	       /* how long one may linger */
#define POOL_EXTRA (4 * 1024u) /* MHD memory pool = max_header + this */
#define MHD_LIMIT_MARGIN 16    /* MHD's own connection limit, over ours */
#define STREAM_BLOCK 1024    /* MHD callocs it per stream (HTTP/1.0 clients) */
#define STREAM_MAX_PULL 8192 /* bytes handed to MHD per call */
#define BODY_FIRST_MAX (64 * 1024u) /* request body buffer to start with */
#define LOG_PATH_MAX 200	    /* path chars in a log line */
#define MHD_LOG_PER_SEC 20
#define ABUSE_LOG_PER_SEC                                                      \
	10 /* 429/408/413 lines: an attack must not                            \
	      flood the log */

/* ----------------------------------------------------------- structures */

struct ip_entry {
	struct ip_entry *next;
	unsigned char key[17]; /* family byte + address */
	unsigned count;
};

struct http_conn {
	struct http_server *srv;
	struct http_conn *prev, *next;
	int fd;
	struct MHD_Connection *mc;
	struct ip_entry *ip;
	char client[INET6_ADDRSTRLEN];
	struct loop_timer deadline;
	struct http_req *cur; /* request MHD has not completed yet */
	unsigned n_requests;  /* completed on this connection */
	bool timed_out;
};

struct route_ent {
	struct http_route r;
	char *segs[MAX_SEGS];
	bool is_param[MAX_SEGS];
	size_t n_segs;
	unsigned n_literal;
};

struct http_stream {
	struct http_req *req;
	char *buf;
	size_t off, len, cap; /* unsent bytes: buf[off, off + len) */
	http_stream_drain_fn *drain_fn;
	void *drain_arg;
	bool closed;
	bool aborted;
};

struct reply_header {
	char *name, *value;
};

struct http_req {
	struct http_server *srv;   /* NULL once ended */
	struct http_conn *hc;	   /* NULL once ended */
	struct MHD_Connection *mc; /* NULL once ended */
	struct loop *loop;
	struct http_req *prev, *next; /* srv->reqs while live */
	unsigned refs;
	bool destroyed;
	enum http_req_state state;
	enum http_req_end end;
	char id[HTTP_REQ_ID_MAX + 1];
	char *method, *path;
	char client[INET6_ADDRSTRLEN];
	const struct route_ent *route;
	char *pnames[MAX_PARAMS], *pvalues[MAX_PARAMS];
	size_t n_params;
	char *body;
	size_t body_len, body_cap;
	uint64_t start_us;
	/* the reply */
	struct MHD_Response *resp; /* built, not yet queued */
	bool resp_queued;
	unsigned status;
	size_t resp_bytes;
	struct reply_header *hdrs;
	size_t n_hdrs;
	/* flow */
	bool first_done;
	bool in_ah; /* inside MHD's access handler for this request */
	bool want_suspend;
	bool mhd_suspended;
	bool guard_held;
	bool client_gone;
	bool is_stream;
	bool held;     /* waiting in srv->held for a later turn */
	bool released; /* let through by held_release: counted already */
	struct http_req *held_prev, *held_next;
	struct loop_io *watch; /* client-gone watch while suspended */
	struct http_stream stream;
	/* owner */
	http_req_done_fn *done_fn;
	void *done_arg;
	void *data;
	void (*data_free)(void *data);
	struct loop_closing closing;
};

struct linger_sock {
	struct http_server *srv;
	struct linger_sock *prev, *next;
	int fd;
	struct loop_io *io;
	struct loop_timer timer;
};

struct http_server {
	struct loop *loop;
	struct http_server_config cfg;
	char listen_str[128];
	int lfd;
	struct loop_io *lio;
	struct loop_timer accept_pause;
	unsigned port;
	struct MHD_Daemon *d;
	struct loop_io *eio;
	struct loop_timer mhd_timer;
	struct loop_defer kick;
	/* requests per turn (see http_server.h, "Work per turn") */
	uint64_t budget_turn; /* loop turn budget_used counts */
	unsigned budget_used;
	struct http_req *held_head, *held_tail; /* FIFO */
	struct loop_defer release;
	struct route_ent **routes;
	size_t n_routes, cap_routes;
	http_guard_fn *guard;
	void *guard_arg;
	struct ip_entry *ips[IP_BUCKETS];
	struct http_conn *conns;
	struct http_conn *adding; /* handed to NOTIFY_CONNECTION STARTED */
	struct http_req *reqs;
	struct linger_sock *lingers;
	bool quiescing;
	bool stopping;
	uint64_t id_seed, id_counter;
	uint64_t mhd_log_sec;
	unsigned mhd_log_n, mhd_log_dropped;
	uint64_t abuse_log_sec;
	unsigned abuse_log_n, abuse_log_dropped;
	uint64_t emfile_logged_ms;
	struct http_server_stats st;
};

static const char *const req_state_names[] = {
#define HTTP_REQ_STATE_NAME_(name) #name,
    HTTP_REQ_STATES(HTTP_REQ_STATE_NAME_)
#undef HTTP_REQ_STATE_NAME_
};

static const char *const req_end_names[] = {
#define HTTP_REQ_END_NAME_(name) #name,
    HTTP_REQ_ENDS(HTTP_REQ_END_NAME_)
#undef HTTP_REQ_END_NAME_
};

const char *http_req_state_name(enum http_req_state s)
{
	if ((size_t)s >= sizeof(req_state_names) / sizeof(req_state_names[0]))
		return "?";
	return req_state_names[s];
}

const char *http_req_end_name(enum http_req_end e)
{
	if ((size_t)e >= sizeof(req_end_names) / sizeof(req_end_names[0]))
		return "?";
	return req_end_names[e];
}

static void kick(struct http_server *srv);
static void req_end(struct http_req *req, enum http_req_end how);
static int req_set_response(struct http_req *req, unsigned status,
			    struct MHD_Response *r, const char *ctype);
static void after_handler(struct http_req *req);

#define req_set_state(req, s)                                                  \
	do {                                                                   \
		dbg("req %s %s -> %s", (req)->id,                              \
		    http_req_state_name((req)->state),                         \
		    http_req_state_name(s));                                   \
		(req)->state = (s);                                            \
	} while (0)

/* ------------------------------------------------------------- helpers */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void new_request_id(struct http_server *srv, char *out, size_t len)
{
	snprintf(out, len, "r-%016" PRIx64,
		 splitmix64(srv->id_seed + ++srv->id_counter));
}

static bool request_id_ok(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];

		if (n >= HTTP_REQ_ID_MAX)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == ':' || c == '-'))
			return false;
	}
	return n > 0;
}

/*
 * May a line about a misbehaving client be logged now?  At most
 * ABUSE_LOG_PER_SEC per second; the rest are counted and summed up.
 */
static bool abuse_log_ok(struct http_server *srv)
{
	uint64_t sec = loop_clock_ms() / 1000;

	if (sec != srv->abuse_log_sec) {
		if (srv->abuse_log_dropped)
			log_info("http: %u more lines about misbehaving "
				 "clients not logged",
				 srv->abuse_log_dropped);
		srv->abuse_log_sec = sec;
		srv->abuse_log_n = 0;
		srv->abuse_log_dropped = 0;
	}
	if (++srv->abuse_log_n > ABUSE_LOG_PER_SEC) {
		srv->abuse_log_dropped++;
		return false;
	}
	return true;
}

/* Best effort: a small write on a socket nobody else writes to now. */
static void raw_send(int fd, const char *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0 || (size_t)n < len)
		dbg("raw send fd=%d: %zd of %zu bytes", fd, n, len);
}

static void send_raw_error(int fd, unsigned status, const char *code,
			   const char *message, const char *request_id,
			   const char *extra)
{
	char buf[1024];
	int n = http_error_raw(buf, sizeof(buf), status, code, message,
			       request_id, extra);

	if (n > 0)
		raw_send(fd, buf, (size_t)n);
}

/* ------------------------------------------------------ per-IP counts */

static void ip_key(const struct sockaddr_storage *ss, unsigned char key[17],
		   char *str, size_t strlen_)
{
	memset(key, 0, 17);
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const void *)ss;

		key[0] = 6;
		memcpy(key + 1, &a6->sin6_addr, 16);
		inet_ntop(AF_INET6, &a6->sin6_addr, str, (socklen_t)strlen_);
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a4 = (const void *)ss;

		key[0] = 4;
		memcpy(key + 1, &a4->sin_addr, 4);
		inet_ntop(AF_INET, &a4->sin_addr, str, (socklen_t)strlen_);
	} else {
		snprintf(str, strlen_, "?");
	}
}

static unsigned ip_hash(const unsigned char key[17])
{
	uint64_t h = 1469598103934665603ULL;
	int i;

	for (i = 0; i < 17; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (unsigned)(h % IP_BUCKETS);
}

static struct ip_entry *ip_find(struct http_server *srv,
				const unsigned char key[17], bool create)
{
	unsigned b = ip_hash(key);
	struct ip_entry *e;

	for (e = srv->ips[b]; e; e = e->next)
		if (memcmp(e->key, key, 17) == 0)
			return e;
	if (!create)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->key, key, 17);
	e->next = srv->ips[b];
	srv->ips[b] = e;
	return e;
}

static void ip_put(struct http_server *srv, struct ip_entry *e)
{
	struct ip_entry **pp;

	if (!e || --e->count > 0)
		return;
	for (pp = &srv->ips[ip_hash(e->key)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
}

/* ------------------------------------------------- rejected sockets */

static void linger_end(struct linger_sock *ls)
{
	struct http_server *srv = ls->srv;

	loop_io_close(ls->io);
	loop_timer_stop(&ls->timer);
	close(ls->fd);
	if (ls->prev)
		ls->prev->next = ls->next;
	else
		srv->lingers = ls->next;
	if (ls->next)
		ls->next->prev = ls->prev;
	srv->st.lingering--;
	free(ls);
}

static void linger_io_cb(struct loop_io *io, int fd, unsigned revents,
			 void *arg)
{
	struct linger_sock *ls = arg;
	char buf[4096];
	int i;

	for (i = 0; i < 4; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		break; /* EOF or error */
	}
	if (i == 4)
		return; /* more to drain: next turn, within LINGER_MS */
	linger_end(ls);
}

static void linger_timer_cb(struct loop_timer *t, void *arg)
{
	linger_end(arg);
}

/*
 * Answer 429 on a socket we will not serve, then close it gently: stop
 * writing and drain what the client sends for a moment, so the answer is
 * not destroyed by a reset.
 */
static void reject(struct http_server *srv, int fd, const char *client,
		   const char *why)
{
	struct linger_sock *ls;
	char id[32];

	new_request_id(srv, id, sizeof(id));
	srv->st.rejected_limit++;
	if (abuse_log_ok(srv))
		log_info("http reject %s: %s (429, id=%s)", client, why, id);
	send_raw_error(fd, 429, "too_many_requests", why, id,
		       "Retry-After: 1\r\n");
	if (srv->st.lingering >= LINGER_MAX || srv->stopping)
		goto out_close;
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		goto out_close;
	ls->srv = srv;
	ls->fd = fd;
	ls->io = loop_io_add(srv->loop, fd, POLLIN, linger_io_cb, ls);
	if (!ls->io) {
		free(ls);
		goto out_close;
	}
	shutdown(fd, SHUT_WR);
	loop_timer_init(&ls->timer);
	loop_timer_start(srv->loop, &ls->timer, LINGER_MS, linger_timer_cb, ls);
	ls->next = srv->lingers;
	if (srv->lingers)
		srv->lingers->prev = ls;
	srv->lingers = ls;
	srv->st.lingering++;
	return;
out_close:
	close(fd);
}

/* --------------------------------------------------------- connections */

static void conn_deadline_cb(struct loop_timer *t, void *arg);

static void conn_arm_deadline(struct http_conn *hc)
{
	struct http_server *srv = hc->srv;

	loop_timer_start(srv->loop, &hc->deadline,
			 (uint64_t)srv->cfg.connection_timeout_s * 1000,
			 conn_deadline_cb, hc);
}

/*
 * The whole request did not arrive within connection_timeout: a 408 to a
 * client in the middle of a request (or that never sent one), silence to
 * an idle keep-alive connection; then shut the socket so that MHD sees
 * the end and closes it.
 */
static void conn_deadline_cb(struct loop_timer *t, void *arg)
{
	struct http_conn *hc = arg;
	struct http_server *srv = hc->srv;
	struct http_req *req = hc->cur;
	char fresh[32];

	if (req && req->state != HTTP_REQ_RECEIVING)
		return; /* not waiting for the client (cannot happen) */
	hc->timed_out = true;
	srv->st.timeouts++;
	if (req || hc->n_requests == 0) {
		const char *id = req && req->id[0] ? req->id : NULL;

		if (!id) {
			new_request_id(srv, fresh, sizeof(fresh));
			id = fresh;
			if (req)
				snprintf(req->id, sizeof(req->id), "%s", fresh);
		}
		if (req)
			req->status = 408;
		if (abuse_log_ok(srv))
			log_info("http %s: request not received within %us "
				 "(408, id=%s)",
				 hc->client, srv->cfg.connection_timeout_s, id);
		send_raw_error(hc->fd, 408, "request_timeout", NULL, id, NULL);
	} else {
		dbg("http %s: idle connection closed", hc->client);
	}
	shutdown(hc->fd, SHUT_RDWR);
	kick(srv);
}

static void conn_free(struct http_conn *hc)
{
	struct http_server *srv = hc->srv;

	loop_timer_stop(&hc->deadline);
	ip_put(srv, hc->ip);
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		srv->conns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	srv->st.connections_active--;
	free(hc);
}

static void notify_connection(void *cls, struct MHD_Connection *mc,
			      void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *srv = cls;
	struct http_conn *hc;

	switch (toe) {
	case MHD_CONNECTION_NOTIFY_STARTED:
		hc = srv->adding;
		srv->adding = NULL;
		*socket_context = hc;
		if (hc)
			hc->mc = mc;
		else
			log_err("http: connection started that we did not add");
		break;
	case MHD_CONNECTION_NOTIFY_CLOSED:
		hc = *socket_context;
		*socket_context = NULL;
		if (!hc)
			break;
		if (hc->cur) /* MHD never completed it: should not happen */
			req_end(hc->cur, HTTP_REQ_END_ERROR);
		conn_free(hc);
		break;
	}
}

static void accept_pause_cb(struct loop_timer *t, void *arg)
{
	struct http_server *srv = arg;

	if (srv->lio)
		loop_io_modify(srv->lio, POLLIN);
}

static void add_connection(struct http_server *srv, int cfd,
			   const struct sockaddr_storage *ss, socklen_t sl)
{
	unsigned char key[17];
	char client[INET6_ADDRSTRLEN];
	struct ip_entry *ip;
	struct http_conn *hc;

	ip_key(ss, key, client, sizeof(client));
	if (srv->stopping) {
		close(cfd);
		return;
	}
	if (srv->st.connections_active >= srv->cfg.max_connections) {
		reject(srv, cfd, client, "too many connections");
		return;
	}
	ip = ip_find(srv, key, false);
	if (ip && ip->count >= srv->cfg.max_connections_per_ip) {
		reject(srv, cfd, client,
		       "too many connections from your address");
		return;
	}
	hc = calloc(1, sizeof(*hc));
	if (!hc || !(ip = ip_find(srv, key, true))) {
		log_err("http accept %s: out of memory", client);
		free(hc);
		close(cfd);
		return;
	}
	ip->count++;
	hc->srv = srv;
	hc->fd = cfd;
	hc->ip = ip;
	snprintf(hc->client, sizeof(hc->client), "%s", client);
	loop_timer_init(&hc->deadline);
	hc->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = hc;
	srv->conns = hc;
	srv->st.connections_active++;
	srv->st.connections_total++;
	conn_arm_deadline(hc);
	srv->adding = hc;
	if (MHD_add_connection(srv->d, cfd, (const struct sockaddr *)ss, sl) !=
	    MHD_YES) {
		/* MHD closed the socket; if it told us it started, it will
		   also tell us it closed */
		int e = errno;

		if (srv->adding == hc) {
			srv->adding = NULL;
			conn_free(hc);
		}
		log_err("http accept %s: MHD_add_connection: %s", client,
			strerror(e));
		return;
	}
	srv->adding = NULL;
	dbg("http accept %s fd=%d", client, cfd);
}

static void accept_cb(struct loop_io *io, int fd, unsigned revents, void *arg)
{
	struct http_server *srv = arg;
	int i;

	for (i = 0; i < ACCEPT_BUDGET; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &sl,
				  SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				uint64_t now = loop_now_ms(srv->loop);

				if (now - srv->emfile_logged_ms >= 1000) {
					log_err("http accept: %s (pausing "
						"accepts %dms)",
						strerror(errno),
						ACCEPT_PAUSE_MS);
					srv->emfile_logged_ms = now;
				}
				loop_io_modify(srv->lio, 0);
				loop_timer_start(srv->loop, &srv->accept_pause,
						 ACCEPT_PAUSE_MS,
						 accept_pause_cb, srv);
			} else if (errno != EAGAIN) {
				log_err("http accept: %s", strerror(errno));
			}
			break;
		}
		add_connection(srv, cfd, &ss, sl);
	}
	kick(srv);
}

/* ------------------------------------------------------------ MHD pump */

static void mhd_timer_cb(struct loop_timer *t, void *arg);

static void mhd_pump(struct http_server *srv)
{
	MHD_UNSIGNED_LONG_LONG to = 0;

	if (!srv->d)
		return;
	if (MHD_run(srv->d) != MHD_YES)
		dbg("MHD_run failed");
	if (MHD_get_timeout(srv->d, &to) == MHD_YES) {
		if (to > 60000)
			to = 60000;
		loop_timer_start(srv->loop, &srv->mhd_timer, to, mhd_timer_cb,
				 srv);
	} else {
		loop_timer_stop(&srv->mhd_timer);
	}
}

static void mhd_timer_cb(struct loop_timer *t, void *arg)
{
	mhd_pump(arg);
}

static void mhd_io_cb(struct loop_io *io, int fd, unsigned revents, void *arg)
{
	mhd_pump(arg);
}

static void kick_cb(struct loop_defer *d, void *arg)
{
	mhd_pump(arg);
}

static void kick(struct http_server *srv)
{
	if (!srv->stopping)
		loop_defer(srv->loop, &srv->kick, kick_cb, srv);
}

__attribute__((format(printf, 2, 0))) static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	struct http_server *srv = cls;
	uint64_t sec = loop_clock_ms() / 1000;
	char buf[512];
	size_t n;

	if (sec != srv->mhd_log_sec) {
		if (srv->mhd_log_dropped)
			log_info("mhd: %u messages not logged",
				 srv->mhd_log_dropped);
		srv->mhd_log_sec = sec;
		srv->mhd_log_n = 0;
		srv->mhd_log_dropped = 0;
	}
	if (++srv->mhd_log_n > MHD_LOG_PER_SEC) {
		srv->mhd_log_dropped++;
		return;
	}
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_info("mhd: %s", buf);
}

/* ------------------------------------------------------------ requests */

static void req_closing_fn(struct loop_closing *c)
{
	struct http_req *req = container_of(c, struct http_req, closing);
	size_t i;

	if (req->data_free)
		req->data_free(req->data);
	for (i = 0; i < req->n_params; i++) {
		free(req->pnames[i]);
		free(req->pvalues[i]);
	}
	for (i = 0; i < req->n_hdrs; i++) {
		free(req->hdrs[i].name);
		free(req->hdrs[i].value);
	}
	free(req->hdrs);
	free(req->stream.buf);
	free(req->body);
	free(req->method);
	free(req->path);
	free(req);
}

void http_req_ref(struct http_req *req)
{
	req->refs++;
}

void http_req_unref(struct http_req *req)
{
	if (!req)
		return;
	if (req->refs == 0) {
		log_err("req %s: unref at 0 refs (bug)", req->id);
		return;
	}
	if (--req->refs == 0) {
		if (!req->destroyed)
			log_err("req %s: last ref dropped while live (bug)",
				req->id);
		else
			loop_close_at_end(req->loop, &req->closing,
					  req_closing_fn);
	}
}

bool http_req_destroyed(const struct http_req *req)
{
	return req->destroyed;
}

enum http_req_state http_req_state(const struct http_req *req)
{
	return req->state;
}

void http_req_on_done(struct http_req *req, http_req_done_fn *fn, void *arg)
{
	req->done_fn = fn;
	req->done_arg = arg;
}

static void watch_stop(struct http_req *req)
{
	loop_io_close(req->watch);
	req->watch = NULL;
}

static void req_client_gone(struct http_req *req, const char *why);

/* While suspended, MHD does not look at the socket: we do. */
static void watch_cb(struct loop_io *io, int fd, unsigned revents, void *arg)
{
	struct http_req *req = arg;
	char c;
	ssize_t n;

	if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
		req_client_gone(req, "hangup");
		return;
	}
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0) {
		req_client_gone(req, "eof");
	} else if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			req_client_gone(req, strerror(errno));
	} else {
		/* a pipelined request: MHD reads it after this one; we
		   cannot watch for the end any more without reading it */
		dbg("req %s: client sent more data while suspended", req->id);
		watch_stop(req);
	}
}

static void watch_start(struct http_req *req)
{
	if (req->watch || !req->hc)
		return;
	req->watch = loop_io_add(req->loop, req->hc->fd, POLLIN, watch_cb, req);
	if (!req->watch)
		log_warn("req %s: cannot watch the client: %s", req->id,
			 strerror(errno));
}

/* MHD's side of a suspension, and its count; nothing else. */
static void suspend_in_mhd(struct http_req *req)
{
	MHD_suspend_connection(req->mc);
	req->mhd_suspended = true;
	req->srv->st.suspended++;
}

static void resume_in_mhd(struct http_req *req)
{
	req->mhd_suspended = false;
	req->srv->st.suspended--;
	MHD_resume_connection(req->mc);
}

static void mhd_suspend(struct http_req *req)
{
	if (req->mhd_suspended)
		return;
	suspend_in_mhd(req);
	watch_start(req);
}

static void mhd_resume(struct http_req *req)
{
	if (!req->mhd_suspended)
		return;
	watch_stop(req);
	resume_in_mhd(req);
	kick(req->srv);
}

static void req_client_gone(struct http_req *req, const char *why)
{
	if (req->destroyed || req->client_gone)
		return;
	dbg("req %s: client gone while suspended (%s)", req->id, why);
	req->client_gone = true;
	mhd_resume(req); /* MHD then drops the connection */
}

/* ------------------------------------------------- requests per turn */

static void held_release_cb(struct loop_defer *d, void *arg);

/* Requests the handlers may still take this turn. */
static unsigned budget_left(struct http_server *srv)
{
	uint64_t turn = loop_turn(srv->loop);

	if (srv->budget_turn != turn) {
		srv->budget_turn = turn;
		srv->budget_used = 0;
	}
	return srv->budget_used < srv->cfg.requests_per_turn
		   ? srv->cfg.requests_per_turn - srv->budget_used
		   : 0;
}

static void held_unlink(struct http_req *req)
{
	struct http_server *srv = req->srv;

	if (req->held_prev)
		req->held_prev->held_next = req->held_next;
	else
		srv->held_head = req->held_next;
	if (req->held_next)
		req->held_next->held_prev = req->held_prev;
	else
		srv->held_tail = req->held_prev;
	req->held_prev = req->held_next = NULL;
	req->held = false;
	srv->st.held--;
}

/*
 * From the access handler: true when req may go to its handler now;
 * false when it is held for a later turn.  A held request is not
 * suspended: answered MHD_YES with no response, its connection stays in
 * libmicrohttpd's ready list (epoll mode), which calls the handler again
 * at each MHD_run and keeps MHD_get_timeout at 0 meanwhile; that costs
 * no epoll_ctl, where a suspend and a resume cost two per request.  It
 * waits a turn or a few, without a client-gone watch; see http_server.h.
 */
static bool budget_take(struct http_req *req)
{
	struct http_server *srv = req->srv;

	if (req->released) {
		req->released = false;
		return true;
	}
	if (req->held)
		return false; /* still waiting its turn */
	if (!srv->held_head && budget_left(srv) > 0) {
		srv->budget_used++;
		return true;
	}
	req->held = true;
	req->held_prev = srv->held_tail;
	req->held_next = NULL;
	if (srv->held_tail)
		srv->held_tail->held_next = req;
	else
		srv->held_head = req;
	srv->held_tail = req;
	srv->st.held++;
	srv->st.held_total++;
	dbg("req %s: held for a later turn (%u held)", req->id, srv->st.held);
	loop_defer(srv->loop, &srv->release, held_release_cb, srv);
	return false;
}

/* Next turn: let the oldest held requests through, up to the budget. */
static void held_release_cb(struct loop_defer *d, void *arg)
{
	struct http_server *srv = arg;
	unsigned n = budget_left(srv);

	while (srv->held_head && n-- > 0) {
		struct http_req *req = srv->held_head;

		held_unlink(req);
		req->released = true; /* its handler's next call goes on */
		srv->budget_used++;
	}
	if (srv->held_head)
		loop_defer(srv->loop, &srv->release, held_release_cb, srv);
	dbg("http %s: released held requests, %u still held", srv->listen_str,
	    srv->st.held);
	mhd_pump(srv); /* the released ones run in this turn */
}

static void access_log(struct http_req *req, uint64_t ms)
{
	char status[12];

	if (req->status)
		snprintf(status, sizeof(status), "%u", req->status);
	else
		snprintf(status, sizeof(status), "-");
	log_info("http %s %.*s %s %zuB %" PRIu64 "ms id=%s client=%s end=%s",
		 req->method ? req->method : "-", LOG_PATH_MAX,
		 req->path ? req->path : "-", status, req->resp_bytes, ms,
		 req->id[0] ? req->id : "-", req->client,
		 http_req_end_name(req->end));
}

/* The end of a request: once, from MHD's completion or the server's end. */
static void req_end(struct http_req *req, enum http_req_end how)
{
	struct http_server *srv = req->srv;
	uint64_t ms;

	if (req->destroyed)
		return;
	watch_stop(req);
	if (req->held)
		held_unlink(req);
	if (req->mhd_suspended) {
		req->mhd_suspended = false;
		srv->st.suspended--;
	}
	if (req->resp) {
		MHD_destroy_response(req->resp);
		req->resp = NULL;
	}
	req->end = how;
	req_set_state(req, HTTP_REQ_DONE);
	req->destroyed = true;
	if (req->prev)
		req->prev->next = req->next;
	else
		srv->reqs = req->next;
	if (req->next)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	if (req->hc && req->hc->cur == req)
		req->hc->cur = NULL;
	srv->st.requests_active--;
	srv->st.requests_total++;
	srv->st.by_class[req->status / 100 <= 5 ? req->status / 100 : 0]++;
	if (req->status < HTTP_STATUS_MAX)
		srv->st.by_status[req->status]++;
	srv->st.bytes_out += req->resp_bytes;
	if (how == HTTP_REQ_END_CLIENT_GONE)
		srv->st.client_gone++;
	if (req->is_stream)
		srv->st.streams_active--;
	ms = (loop_clock_us() - req->start_us) / 1000;
	access_log(req, ms);
	req->srv = NULL;
	req->hc = NULL;
	req->mc = NULL;
	if (req->done_fn) {
		http_req_done_fn *fn = req->done_fn;

		req->done_fn = NULL;
		fn(req, how, req->done_arg);
	}
	http_req_unref(req); /* MHD's side */
}

static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *mc)
{
	struct http_server *srv = cls;
	const union MHD_ConnectionInfo *ci;
	struct http_conn *hc;
	struct http_req *req;

	ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	hc = ci ? ci->socket_context : NULL;
	if (!hc) {
		log_err("http: request on a connection we do not know");
		return NULL;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		log_err("http %s: out of memory for a request", hc->client);
		return NULL;
	}
	req->srv = srv;
	req->hc = hc;
	req->mc = mc;
	req->loop = srv->loop;
	req->refs = 1; /* MHD's side, dropped in req_end */
	req->state = HTTP_REQ_RECEIVING;
	req->start_us = loop_clock_us();
	snprintf(req->client, sizeof(req->client), "%s", hc->client);
	req->next = srv->reqs;
	if (srv->reqs)
		srv->reqs->prev = req;
	srv->reqs = req;
	srv->st.requests_active++;
	if (hc->cur) { /* cannot happen: MHD completes one before the next */
		log_err("http %s: new request while one is live", hc->client);
		req_end(hc->cur, HTTP_REQ_END_ERROR);
	}
	hc->cur = req;
	return req;
}

static enum http_req_end end_from_mhd(const struct http_req *req,
				      enum MHD_RequestTerminationCode toe)
{
	if (req->hc && req->hc->timed_out)
		return HTTP_REQ_END_TIMEOUT;
	if (req->stream.aborted)
		return HTTP_REQ_END_ERROR;
	if (req->client_gone)
		return HTTP_REQ_END_CLIENT_GONE;
	if (req->srv->stopping)
		return HTTP_REQ_END_SHUTDOWN;
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return HTTP_REQ_END_OK;
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return HTTP_REQ_END_TIMEOUT;
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return HTTP_REQ_END_SHUTDOWN;
	case MHD_REQUEST_TERMINATED_READ_ERROR:
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return HTTP_REQ_END_CLIENT_GONE;
	case MHD_REQUEST_TERMINATED_WITH_ERROR:
		/* a send failed while we were answering: the peer went */
		if (req->resp_queued)
			return HTTP_REQ_END_CLIENT_GONE;
		return HTTP_REQ_END_ERROR;
	}
	return HTTP_REQ_END_ERROR;
}

static void completed_cb(void *cls, struct MHD_Connection *mc, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_req *req = *req_cls;
	struct http_conn *hc;

	*req_cls = NULL;
	if (!req || req->destroyed)
		return;
	hc = req->hc;
	if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
		req->srv->st.timeouts++;
	req_end(req, end_from_mhd(req, toe));
	if (hc) {
		hc->n_requests++;
		if (!hc->timed_out)
			conn_arm_deadline(hc); /* for the next request */
	}
}

/* ------------------------------------------------------------- routing */

static void route_free(struct route_ent *re)
{
	size_t i;

	if (!re)
		return;
	for (i = 0; i < re->n_segs; i++)
		free(re->segs[i]);
	free((char *)re->r.method);
	free((char *)re->r.pattern);
	free(re);
}

/*
 * Split "/a/{b}/c", in place, into segments pointing into buf; false when
 * it does not start with '/' or has more than MAX_SEGS segments.  Empty
 * segments ("//", a trailing "/") are kept: they match nothing.
 */
static bool split_path(char *buf, char **segs, size_t *n)
{
	char *p;

	*n = 0;
	if (buf[0] != '/')
		return false;
	if (!buf[1])
		return true; /* "/" */
	for (p = buf + 1;; p++) {
		char *start = p;

		while (*p && *p != '/')
			p++;
		if (*n == MAX_SEGS)
			return false;
		segs[(*n)++] = start;
		if (!*p)
			break;
		*p = '\0';
	}
	return true;
}

static bool method_ok(const char *m)
{
	return m && *m && strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == strlen(m);
}

int http_server_route(struct http_server *srv, const struct http_route *r)
{
	struct route_ent *re = NULL;
	char *buf = NULL, *segs[MAX_SEGS];
	size_t i, n;

	if (!r || !method_ok(r->method) || !r->pattern || !r->handler)
		goto out_inval;
	buf = strdup(r->pattern);
	if (!buf)
		return -ENOMEM;
	if (!split_path(buf, segs, &n))
		goto out_inval;
	for (i = 0; i < srv->n_routes; i++)
		if (strcmp(srv->routes[i]->r.pattern, r->pattern) == 0 &&
		    strcmp(srv->routes[i]->r.method, r->method) == 0)
			goto out_inval;
	re = calloc(1, sizeof(*re));
	if (!re)
		goto out_nomem;
	re->r = *r;
	re->r.method = strdup(r->method);
	re->r.pattern = strdup(r->pattern);
	if (!re->r.method || !re->r.pattern)
		goto out_nomem;
	for (i = 0; i < n; i++) {
		size_t len = strlen(segs[i]);
		bool param =
		    len > 2 && segs[i][0] == '{' && segs[i][len - 1] == '}';

		if (!len ||
		    (!param && (strchr(segs[i], '{') || strchr(segs[i], '}'))))
			goto out_inval;
		re->is_param[i] = param;
		re->segs[i] =
		    param ? strndup(segs[i] + 1, len - 2) : strdup(segs[i]);
		re->n_segs = i + 1;
		if (!re->segs[i])
			goto out_nomem;
		if (!param)
			re->n_literal++;
	}
	if (srv->n_routes == srv->cap_routes) {
		size_t cap = srv->cap_routes ? srv->cap_routes * 2 : 16;
		struct route_ent **v = realloc(srv->routes, cap * sizeof(*v));

		if (!v)
			goto out_nomem;
		srv->routes = v;
		srv->cap_routes = cap;
	}
	srv->routes[srv->n_routes++] = re;
	free(buf);
	dbg("route %s %s flags=%#x", re->r.method, re->r.pattern, re->r.flags);
	return 0;
out_nomem:
	route_free(re);
	free(buf);
	return -ENOMEM;
out_inval:
	route_free(re);
	free(buf);
	log_err("http route %s %s: invalid or duplicate route",
		r && r->method ? r->method : "?",
		r && r->pattern ? r->pattern : "?");
	return -EINVAL;
}

static bool route_match_path(const struct route_ent *re, char **segs, size_t n)
{
	size_t i;

	if (re->n_segs != n)
		return false;
	for (i = 0; i < n; i++) {
		if (re->is_param[i] ? !segs[i][0]
				    : strcmp(re->segs[i], segs[i]) != 0)
			return false;
	}
	return true;
}

static bool method_matches(const char *route_method, const char *method)
{
	return strcmp(route_method, method) == 0 ||
	       (strcmp(method, "HEAD") == 0 &&
		strcmp(route_method, "GET") == 0);
}

/* Append method to the "GET, POST" list unless it is there. */
static void allow_add(char *allow, size_t len, const char *method)
{
	size_t n = strlen(method), used = strlen(allow);
	const char *p;

	for (p = allow; (p = strstr(p, method)); p += n)
		if ((p == allow || p[-1] == ' ') && (!p[n] || p[n] == ','))
			return;
	snprintf(allow + used, len - used, "%s%s", used ? ", " : "", method);
}

/*
 * Find the route: 0 and req->route (params copied), or -ENOENT (no path
 * matches), or -EPERM (path matches, method does not: allow filled), or
 * -ENOMEM.
 */
static int route_find(struct http_req *req, char *allow, size_t allow_len)
{
	struct http_server *srv = req->srv;
	const struct route_ent *best = NULL;
	char *buf, *segs[MAX_SEGS];
	bool path_seen = false, get_seen = false, head_seen = false;
	unsigned best_score = 0;
	size_t i, n;
	int rv = 0;

	allow[0] = '\0';
	buf = strdup(req->path);
	if (!buf)
		return -ENOMEM;
	if (!split_path(buf, segs, &n)) {
		rv = -ENOENT;
		goto out_free;
	}
	for (i = 0; i < srv->n_routes; i++) {
		const struct route_ent *re = srv->routes[i];

		if (!route_match_path(re, segs, n))
			continue;
		path_seen = true;
		if (method_matches(re->r.method, req->method)) {
			/* most literal segments, then the exact method */
			unsigned score =
			    re->n_literal * 2 +
			    (strcmp(re->r.method, req->method) == 0);

			if (!best || score > best_score) {
				best = re;
				best_score = score;
			}
		}
	}
	if (!best && path_seen) {
		/* 405: the methods the path has, for Allow (only then:
		 * this is every request's path otherwise) */
		for (i = 0; i < srv->n_routes; i++) {
			const struct route_ent *re = srv->routes[i];

			if (!route_match_path(re, segs, n))
				continue;
			allow_add(allow, allow_len, re->r.method);
			get_seen |= strcmp(re->r.method, "GET") == 0;
			head_seen |= strcmp(re->r.method, "HEAD") == 0;
		}
		if (get_seen && !head_seen)
			allow_add(allow, allow_len, "HEAD");
	}
	if (!best) {
		rv = path_seen ? -EPERM : -ENOENT;
		goto out_free;
	}
	req->route = best;
	for (i = 0; i < n && req->n_params < MAX_PARAMS; i++) {
		if (!best->is_param[i])
			continue;
		req->pnames[req->n_params] = strdup(best->segs[i]);
		req->pvalues[req->n_params] = strdup(segs[i]);
		if (!req->pnames[req->n_params] ||
		    !req->pvalues[req->n_params]) {
			free(req->pnames[req->n_params]);
			free(req->pvalues[req->n_params]);
			rv = -ENOMEM;
			goto out_free;
		}
		req->n_params++;
	}
out_free:
	free(buf);
	return rv;
}

static void route_forget(struct http_req *req)
{
	req->route = NULL;
	while (req->n_params) {
		req->n_params--;
		free(req->pnames[req->n_params]);
		free(req->pvalues[req->n_params]);
	}
}

static void run_handler(struct http_req *req)
{
	const struct route_ent *re = req->route;

	req_set_state(req, HTTP_REQ_HANDLING);
	re->r.handler(req, re->r.arg);
	if (!req->destroyed)
		after_handler(req);
}

/* Route, guard, handler: from MHD's final call for the request. */
static void dispatch(struct http_req *req)
{
	struct http_server *srv = req->srv;
	char allow[256];
	int rv;

	req_set_state(req, HTTP_REQ_HANDLING);
	rv = route_find(req, allow, sizeof(allow));
	if (rv == -ENOENT) {
		http_reply_error(req, 404, "not_found", "no route for %s %s",
				 req->method, req->path);
		return;
	}
	if (rv == -EPERM) {
		http_reply_header(req, "Allow", allow);
		http_reply_error(req, 405, "method_not_allowed",
				 "%s not allowed on %s (allowed: %s)",
				 req->method, req->path, allow);
		return;
	}
	if (rv < 0) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (srv->quiescing && !(req->route->r.flags & HTTP_ROUTE_DRAINING)) {
		http_reply_error(req, 503, "shutting_down", NULL);
		return;
	}
	if (srv->guard && srv->guard(req, &req->route->r, srv->guard_arg) ==
			      HTTP_GUARD_HELD) {
		if (req->destroyed)
			return;
		if (req->want_suspend && !req->resp)
			req->guard_held = true;
		after_handler(req);
		return;
	}
	if (req->destroyed)
		return;
	run_handler(req);
}

/*
 * After a guard or handler returned: it replied, started a stream, or
 * suspended; anything else is a bug answered 500.
 */
static void after_handler(struct http_req *req)
{
	if (req->resp) {
		if (!req->in_ah)
			mhd_resume(req); /* MHD's next call queues it */
		return;
	}
	if (req->want_suspend) {
		req->want_suspend = false;
		req_set_state(req, HTTP_REQ_SUSPENDED);
		if (req->in_ah)
			mhd_suspend(req);
		return;
	}
	if (req->state == HTTP_REQ_HANDLING) {
		log_err("req %s: %s %s: handler returned without answering "
			"(bug)",
			req->id, req->method, req->path);
		http_reply_error(req, 500, "internal", NULL);
		if (!req->in_ah && req->resp)
			mhd_resume(req);
	}
}

/* --------------------------------------------------- MHD's access handler */

static enum MHD_Result queue_reply(struct http_req *req)
{
	struct MHD_Response *r = req->resp;
	enum MHD_Result rv;

	req->resp = NULL;
	if (req->hc)
		loop_timer_stop(&req->hc->deadline);
	rv = MHD_queue_response(req->mc, req->status, r);
	MHD_destroy_response(r); /* MHD holds its own reference */
	req->resp_queued = true;
	if (rv != MHD_YES)
		log_err("req %s: MHD_queue_response %u failed", req->id,
			req->status);
	return rv;
}

static void first_call(struct http_req *req, const char *url,
		       const char *method)
{
	struct http_server *srv = req->srv;
	const union MHD_ConnectionInfo *ci;
	const char *xid, *cl;

	req->first_done = true;
	req->method = strdup(method);
	req->path = strdup(url);
	xid = MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND,
					  "X-Request-ID");
	if (request_id_ok(xid))
		snprintf(req->id, sizeof(req->id), "%s", xid);
	else
		new_request_id(srv, req->id, sizeof(req->id));
	if (!req->method || !req->path) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	dbg("req %s: %s %s from %s", req->id, req->method, req->path,
	    req->client);
	ci = MHD_get_connection_info(req->mc,
				     MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (ci && ci->header_size > srv->cfg.max_header) {
		http_reply_error(req, 431, "headers_too_large",
				 "request line and headers are %zu bytes, "
				 "over the limit of %zu",
				 ci->header_size, srv->cfg.max_header);
		return;
	}
	cl = MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(cl, &end, 10);
		if (errno || end == cl || v > srv->cfg.max_body) {
			http_reply_error(req, 413, "payload_too_large",
					 "body of %s bytes is over the limit "
					 "of %zu",
					 cl, srv->cfg.max_body);
			return;
		}
		if (v) {
			/* what the client says, up to 64 KiB: a header alone
			   must not reserve max_body (body_append grows it) */
			size_t cap =
			    v < BODY_FIRST_MAX ? (size_t)v : BODY_FIRST_MAX;

			req->body = malloc(cap);
			if (req->body)
				req->body_cap = cap;
		}
	}
	if (srv->quiescing) {
		/* refuse now, before the body, unless the route drains */
		char allow[256];

		if (route_find(req, allow, sizeof(allow)) != 0 ||
		    !(req->route->r.flags & HTTP_ROUTE_DRAINING)) {
			route_forget(req);
			http_reply_error(req, 503, "shutting_down", NULL);
			return;
		}
		route_forget(req); /* routed again at the end */
	}
}

/* Body bytes; false when the body goes over max_body (chunked). */
static bool body_append(struct http_req *req, const char *data, size_t len)
{
	size_t max = req->srv->cfg.max_body;

	if (len > max - req->body_len)
		return false;
	if (req->body_len + len > req->body_cap) {
		size_t cap = req->body_cap ? req->body_cap : 4096;
		char *b;

		while (cap < req->body_len + len)
			cap *= 2;
		if (cap > max)
			cap = max;
		b = realloc(req->body, cap);
		if (!b)
			return false;
		req->body = b;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
	req->srv->st.bytes_in += len;
	return true;
}

static enum MHD_Result access_body(struct http_req *req, const char *url,
				   const char *method, const char *upload_data,
				   size_t *upload_size)
{
	if (!req->first_done) {
		first_call(req, url, method);
		if (req->resp)
			return queue_reply(req); /* early error: closes */
		return MHD_YES;
	}
	if (*upload_size) {
		if (!body_append(req, upload_data, *upload_size)) {
			if (abuse_log_ok(req->srv))
				log_info("req %s: body over %zu bytes "
					 "(chunked): 413 and close",
					 req->id, req->srv->cfg.max_body);
			req->status = 413;
			send_raw_error(req->hc->fd, 413, "payload_too_large",
				       NULL, req->id, NULL);
			return MHD_NO;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->client_gone || req->srv->stopping)
		return MHD_NO;
	if (req->resp)
		return queue_reply(req);
	switch (req->state) {
	case HTTP_REQ_RECEIVING:
		if (req->hc)
			loop_timer_stop(&req->hc->deadline);
		if (!budget_take(req))
			return MHD_YES; /* held for a later turn */
		dispatch(req);
		if (req->destroyed)
			return MHD_NO;
		if (req->resp)
			return queue_reply(req);
		if (req->state == HTTP_REQ_SUSPENDED)
			return MHD_YES;
		return MHD_NO; /* not even a 500 could be built */
	case HTTP_REQ_SUSPENDED:
	case HTTP_REQ_HANDLING:
		/* resumed without an answer: wait again */
		mhd_suspend(req);
		return MHD_YES;
	case HTTP_REQ_REPLIED:
	case HTTP_REQ_STREAMING:
	case HTTP_REQ_DONE:
		break;
	}
	return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *mc,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_size, void **req_cls)
{
	struct http_req *req = *req_cls;
	enum MHD_Result rv;

	if (!req || req->destroyed)
		return MHD_NO;
	req->in_ah = true;
	http_req_ref(req);
	rv = access_body(req, url, method, upload_data, upload_size);
	req->in_ah = false;
	http_req_unref(req);
	return rv;
}

/* -------------------------------------------------------------- getters */

const char *http_req_id(const struct http_req *req)
{
	return req->id;
}

const char *http_req_method(const struct http_req *req)
{
	return req->method;
}

const char *http_req_path(const struct http_req *req)
{
	return req->path;
}

const char *http_req_param(const struct http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->n_params; i++)
		if (strcmp(req->pnames[i], name) == 0)
			return req->pvalues[i];
	return NULL;
}

const char *http_req_query(const struct http_req *req, const char *name)
{
	const char *v = NULL;
	size_t vlen = 0;

	if (req->destroyed || !req->mc || !name)
		return NULL;
	if (MHD_lookup_connection_value_n(req->mc, MHD_GET_ARGUMENT_KIND, name,
					  strlen(name), &v, &vlen) != MHD_YES)
		return NULL;
	return v ? v : "";
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	if (req->destroyed || !req->mc || !name)
		return NULL;
	return MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND, name);
}

const char *http_req_client(const struct http_req *req)
{
	return req->client;
}

const void *http_req_body(const struct http_req *req, size_t *len)
{
	if (len)
		*len = req->body_len;
	return req->body;
}

const struct http_route *http_req_route(const struct http_req *req)
{
	return req->destroyed || !req->route ? NULL : &req->route->r;
}

uint64_t http_req_age_ms(const struct http_req *req)
{
	return (loop_clock_us() - req->start_us) / 1000;
}

void http_req_set_data(struct http_req *req, void *data,
		       void (*free_fn)(void *data))
{
	if (req->data_free && req->data != data)
		req->data_free(req->data);
	req->data = data;
	req->data_free = free_fn;
}

void *http_req_data(const struct http_req *req)
{
	return req->data;
}

int http_req_body_json(struct http_req *req, json_t **out)
{
	const char *ct = http_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	char err[160];
	size_t n = strlen("application/json");

	*out = NULL;
	if (req->destroyed)
		return -ESHUTDOWN;
	if (!ct || strncasecmp(ct, "application/json", n) != 0 ||
	    (ct[n] && ct[n] != ';' && ct[n] != ' ')) {
		http_reply_error(req, 415, "unsupported_media_type",
				 "Content-Type must be application/json");
		return -EINVAL;
	}
	if (!req->body_len) {
		http_reply_error(req, 400, "invalid_json", "empty body");
		return -EINVAL;
	}
	if (json_parse_text(req->body, req->body_len, JSON_UTIL_DEFAULT_DEPTH,
			    out, err, sizeof(err)) < 0) {
		http_reply_error(req, 400, "invalid_json", "%s", err);
		return -EINVAL;
	}
	return 0;
}

const char *http_req_debug_str(const struct http_req *req, char *buf,
			       size_t len)
{
	char status[12];

	if (req->status)
		snprintf(status, sizeof(status), "%u", req->status);
	else
		snprintf(status, sizeof(status), "-");
	snprintf(buf, len,
		 "req %s %s %.*s state=%s refs=%u destroyed=%d status=%s "
		 "age=%" PRIu64 "ms client=%s flags=%s%s%s%s%s%s%s",
		 req->id[0] ? req->id : "-", req->method ? req->method : "-",
		 LOG_PATH_MAX, req->path ? req->path : "-",
		 http_req_state_name(req->state), req->refs, req->destroyed,
		 status, http_req_age_ms(req), req->client,
		 req->held ? "held," : "", req->mhd_suspended ? "susp," : "",
		 req->watch ? "watch," : "", req->client_gone ? "gone," : "",
		 req->guard_held ? "guard," : "",
		 req->is_stream ? "stream," : "",
		 req->destroyed ? http_req_end_name(req->end) : "");
	return buf;
}

/* ---------------------------------------------------------- suspension */

int http_req_suspend(struct http_req *req)
{
	if (req->destroyed)
		return -ESHUTDOWN;
	if (req->resp || req->resp_queued)
		return -EINVAL;
	if (req->state == HTTP_REQ_SUSPENDED && !req->in_ah)
		return 0; /* already waiting */
	req->want_suspend = true;
	return 0;
}

int http_req_proceed(struct http_req *req)
{
	if (req->destroyed)
		return -ESHUTDOWN;
	if (!req->guard_held || req->state != HTTP_REQ_SUSPENDED || req->resp ||
	    req->resp_queued)
		return -EINVAL;
	req->guard_held = false;
	run_handler(req);
	return 0;
}

/* -------------------------------------------------------------- replies */

int http_reply_header(struct http_req *req, const char *name, const char *value)
{
	struct reply_header *h;

	if (req->destroyed)
		return -ESHUTDOWN;
	if (!name || !value || !name[0] || strpbrk(name, "\r\n:") ||
	    strpbrk(value, "\r\n"))
		return -EINVAL;
	h = realloc(req->hdrs, (req->n_hdrs + 1) * sizeof(*h));
	if (!h)
		return -ENOMEM;
	req->hdrs = h;
	h = &req->hdrs[req->n_hdrs];
	h->name = strdup(name);
	h->value = strdup(value);
	if (!h->name || !h->value) {
		free(h->name);
		free(h->value);
		return -ENOMEM;
	}
	req->n_hdrs++;
	return 0;
}

/*
 * Hand a built response to the request: queued by MHD's access handler,
 * now (inside it) or after a resume.  Takes r in every case.
 */
static int req_set_response(struct http_req *req, unsigned status,
			    struct MHD_Response *r, const char *ctype)
{
	size_t i;
	bool ok = true;

	if (!r)
		return -ENOMEM;
	if (req->destroyed) {
		MHD_destroy_response(r);
		return -ESHUTDOWN;
	}
	if (req->resp || req->resp_queued) {
		log_err("req %s: answered twice (status %u after %u)", req->id,
			status, req->status);
		MHD_destroy_response(r);
		return -EINVAL;
	}
	if (ctype)
		ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					      ctype) == MHD_YES;
	ok &= MHD_add_response_header(r, "X-Request-ID", req->id) == MHD_YES;
	for (i = 0; i < req->n_hdrs; i++)
		ok &= MHD_add_response_header(r, req->hdrs[i].name,
					      req->hdrs[i].value) == MHD_YES;
	if (req->srv->quiescing)
		ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION,
					      "close") == MHD_YES;
	if (!ok)
		log_warn("req %s: a response header was refused", req->id);
	req->resp = r;
	req->status = status;
	req->want_suspend = false;
	req->guard_held = false;
	if (req->state != HTTP_REQ_STREAMING)
		req_set_state(req, HTTP_REQ_REPLIED);
	if (!req->in_ah)
		mhd_resume(req); /* the access handler queues it */
	return 0;
}

int http_reply_data(struct http_req *req, unsigned status,
		    const char *content_type, const void *data, size_t len)
{
	struct MHD_Response *r;

	if (req->destroyed)
		return -ESHUTDOWN;
	if (req->resp || req->resp_queued)
		return -EINVAL;
	r = MHD_create_response_from_buffer(len, (void *)data,
					    MHD_RESPMEM_MUST_COPY);
	if (r)
		req->resp_bytes = len;
	return req_set_response(req, status, r, content_type);
}

int http_reply_text(struct http_req *req, unsigned status,
		    const char *content_type, const char *text)
{
	return http_reply_data(req, status, content_type, text,
			       text ? strlen(text) : 0);
}

int http_reply_json(struct http_req *req, unsigned status, json_t *body)
{
	struct MHD_Response *r;
	char *text = NULL;
	char err[128];
	int rv;

	if (req->destroyed) {
		json_decref(body);
		return -ESHUTDOWN;
	}
	if (req->resp || req->resp_queued) {
		json_decref(body);
		log_err("req %s: answered twice (status %u after %u)", req->id,
			status, req->status);
		return -EINVAL;
	}
	rv = body ? json_dump_text(body, 0, &text, err, sizeof(err)) : -EINVAL;
	json_decref(body);
	if (rv < 0) {
		log_err("req %s: cannot serialize the %u reply: %s", req->id,
			status, body ? err : "no body");
		return -ENOMEM;
	}
	req->resp_bytes = strlen(text);
	r = MHD_create_response_from_buffer(req->resp_bytes, text,
					    MHD_RESPMEM_MUST_FREE);
	if (!r)
		free(text);
	return req_set_response(req, status, r, "application/json");
}

int http_reply_verror(struct http_req *req, unsigned status, const char *code,
		      const char *fmt, va_list ap)
{
	const struct http_error_def *def = http_error_lookup(code);
	char msg[512];
	json_t *j;

	if (req->destroyed)
		return -ESHUTDOWN;
	if (fmt)
		vsnprintf(msg, sizeof(msg), fmt, ap);
	else
		snprintf(msg, sizeof(msg), "%s", def ? def->message : "error");
	if (!def || (status && status != def->status)) {
		log_err("req %s: error (%u, %s) is not in the table of "
			"docs/api.md (bug): answering 500",
			req->id, status, code ? code : "(null)");
		status = 500;
		code = "internal";
	} else if (!status) {
		status = def->status;
	}
	if (status >= 500)
		log_err("req %s: %s %s: %u %s: %s", req->id,
			req->method ? req->method : "-",
			req->path ? req->path : "-", status, code, msg);
	else
		dbg("req %s: %u %s: %s", req->id, status, code, msg);
	j = http_error_json(code, msg, req->id);
	if (!j)
		return -ENOMEM;
	return http_reply_json(req, status, j);
}

int http_reply_error(struct http_req *req, unsigned status, const char *code,
		     const char *fmt, ...)
{
	va_list ap;
	int rv;

	va_start(ap, fmt);
	rv = http_reply_verror(req, status, code, fmt, ap);
	va_end(ap);
	return rv;
}

/* -------------------------------------------------------------- streams */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct http_req *req = cls;
	struct http_stream *s = &req->stream;
	size_t n;

	if (req->destroyed || req->client_gone || s->aborted || !req->srv ||
	    req->srv->stopping)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (s->len) {
		/* MHD offers all its free pool: touch at most this much */
		if (max > STREAM_MAX_PULL)
			max = STREAM_MAX_PULL;
		n = s->len < max ? s->len : max;
		memcpy(buf, s->buf + s->off, n);
		s->off += n;
		s->len -= n;
		if (!s->len)
			s->off = 0;
		req->resp_bytes += n;
		if (!s->len) {
			/* an idle stream holds no buffer (followers wait) */
			free(s->buf);
			s->buf = NULL;
			s->off = s->cap = 0;
		}
		if (s->drain_fn)
			s->drain_fn(s, s->drain_arg);
		return (ssize_t)n;
	}
	if (s->closed)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* nothing to send: sleep until a write (or the client leaves) */
	mhd_suspend(req);
	return 0;
}

static void stream_free_cb(void *cls)
{
	http_req_unref(cls); /* the response's reference */
}

struct http_stream *http_stream_start(struct http_req *req,
				      const char *content_type)
{
	struct MHD_Response *r;
	int rv;

	if (req->destroyed) {
		errno = ESHUTDOWN;
		return NULL;
	}
	if (req->resp || req->resp_queued) {
		errno = EINVAL;
		return NULL;
	}
	r = MHD_create_response_from_callback(
	    MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, req, stream_free_cb);
	if (!r) {
		errno = ENOMEM;
		return NULL;
	}
	http_req_ref(req); /* dropped by stream_free_cb */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	req->stream.req = req;
	req->is_stream = true;
	req->srv->st.streams_active++;
	req_set_state(req, HTTP_REQ_STREAMING);
	rv = req_set_response(req, 200, r, content_type);
	if (rv < 0) {
		errno = -rv;
		return NULL;
	}
	return &req->stream;
}

struct http_req *http_stream_req(struct http_stream *s)
{
	return s->req;
}

int http_stream_write(struct http_stream *s, const void *data, size_t len)
{
	struct http_req *req = s->req;
	size_t max;

	if (req->destroyed || req->client_gone || s->closed || s->aborted)
		return -EPIPE;
	max = req->srv->cfg.max_stream_buffer;
	if (len > max - s->len)
		return -ENOBUFS;
	if (s->off + s->len + len > s->cap) {
		if (s->off) { /* compact first */
			memmove(s->buf, s->buf + s->off, s->len);
			s->off = 0;
		}
		if (s->len + len > s->cap) {
			size_t cap = s->cap ? s->cap : 4096;
			char *b;

			while (cap < s->len + len)
				cap *= 2;
			b = realloc(s->buf, cap);
			if (!b)
				return -ENOMEM;
			s->buf = b;
			s->cap = cap;
		}
	}
	memcpy(s->buf + s->off + s->len, data, len);
	s->len += len;
	mhd_resume(req);
	return 0;
}

void http_stream_on_drain(struct http_stream *s, http_stream_drain_fn *fn,
			  void *arg)
{
	s->drain_fn = fn;
	s->drain_arg = arg;
}

size_t http_stream_buffered(const struct http_stream *s)
{
	return s->len;
}

void http_stream_close(struct http_stream *s)
{
	struct http_req *req = s->req;

	if (req->destroyed || s->closed || s->aborted)
		return;
	s->closed = true;
	mhd_resume(req);
}

void http_stream_abort(struct http_stream *s)
{
	struct http_req *req = s->req;

	if (req->destroyed || s->aborted)
		return;
	s->aborted = true;
	log_info("req %s: stream aborted with %zu bytes unsent", req->id,
		 s->len);
	/* MHD may be waiting for the socket to drain: end it now */
	if (req->hc)
		shutdown(req->hc->fd, SHUT_RDWR);
	mhd_resume(req);
	kick(req->srv);
}

/* --------------------------------------------------------------- server */

static int parse_listen(const char *listen_str, char *host, size_t hostlen,
			char *port, size_t portlen)
{
	const char *colon;

	if (!listen_str || !*listen_str)
		return -EINVAL;
	if (listen_str[0] == '[') {
		const char *end = strchr(listen_str, ']');

		if (!end || end[1] != ':' ||
		    (size_t)(end - listen_str - 1) >= hostlen)
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(end - listen_str - 1),
			 listen_str + 1);
		colon = end + 1;
	} else {
		colon = strrchr(listen_str, ':');
		if (!colon || (size_t)(colon - listen_str) >= hostlen)
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(colon - listen_str),
			 listen_str);
	}
	if (!colon[1] || strlen(colon + 1) >= portlen ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -EINVAL;
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}

static int listen_socket(struct http_server *srv)
{
	char host[96], port[16];
	struct addrinfo hints = {0}, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int rv, fd = -1, one = 1, e = EADDRNOTAVAIL;

	rv = parse_listen(srv->cfg.listen, host, sizeof(host), port,
			  sizeof(port));
	if (rv < 0) {
		log_err("http listen '%s': expected host:port",
			srv->cfg.listen ? srv->cfg.listen : "");
		return rv;
	}
	hints.ai_family = host[0] ? AF_UNSPEC : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rv = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rv) {
		log_err("http listen '%s': %s", srv->cfg.listen,
			gai_strerror(rv));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, SOMAXCONN) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_err("http listen '%s': %s", srv->cfg.listen, strerror(e));
		return -e;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		srv->port = ntohs(ss.ss_family == AF_INET6
				      ? ((struct sockaddr_in6 *)&ss)->sin6_port
				      : ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(srv->listen_str, sizeof(srv->listen_str), "%s%s%s:%u",
		 strchr(host, ':') ? "[" : "", host[0] ? host : "0.0.0.0",
		 strchr(host, ':') ? "]" : "", srv->port);
	srv->lfd = fd;
	return 0;
}

struct http_server *http_server_new(struct loop *l,
				    const struct http_server_config *cfg)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	const union MHD_DaemonInfo *di;
	int rv;

	if (!srv) {
		errno = ENOMEM;
		return NULL;
	}
	srv->loop = l;
	srv->lfd = -1;
	srv->cfg = *cfg;
	srv->cfg.listen = NULL;
#define DEFAULT_(field, v)                                                     \
	if (!srv->cfg.field)                                                   \
	srv->cfg.field = (v)
	DEFAULT_(max_connections, HTTP_DEFAULT_MAX_CONNECTIONS);
	DEFAULT_(max_connections_per_ip, HTTP_DEFAULT_MAX_CONNECTIONS_PER_IP);
	DEFAULT_(connection_timeout_s, HTTP_DEFAULT_CONNECTION_TIMEOUT_S);
	DEFAULT_(max_body, HTTP_DEFAULT_MAX_BODY);
	DEFAULT_(max_header, HTTP_DEFAULT_MAX_HEADER);
	DEFAULT_(max_stream_buffer, HTTP_DEFAULT_MAX_STREAM_BUFFER);
	DEFAULT_(requests_per_turn, HTTP_DEFAULT_REQUESTS_PER_TURN);
#undef DEFAULT_
	if (srv->cfg.max_header > HTTP_DEFAULT_MAX_HEADER * 8)
		srv->cfg.max_header = HTTP_DEFAULT_MAX_HEADER * 8;
	loop_timer_init(&srv->accept_pause);
	loop_timer_init(&srv->mhd_timer);
	if (getrandom(&srv->id_seed, sizeof(srv->id_seed), GRND_NONBLOCK) !=
	    sizeof(srv->id_seed))
		srv->id_seed = loop_clock_us() ^ ((uint64_t)getpid() << 32);
	srv->cfg.listen = cfg->listen;
	rv = listen_socket(srv);
	srv->cfg.listen = NULL;
	if (rv < 0)
		goto out_free;
	srv->d = MHD_start_daemon(
	    MHD_USE_ERROR_LOG | MHD_USE_EPOLL | MHD_USE_TURBO |
		MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET,
	    0, NULL, NULL, access_cb, srv, MHD_OPTION_EXTERNAL_LOGGER,
	    mhd_logger, srv, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)(srv->cfg.max_header + POOL_EXTRA),
	    MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)(srv->cfg.max_connections + MHD_LIMIT_MARGIN),
	    MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.connection_timeout_s,
	    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, srv,
	    MHD_OPTION_NOTIFY_CONNECTION, notify_connection, srv,
	    MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, srv, MHD_OPTION_END);
	if (!srv->d) {
		rv = -EIO;
		log_err("http %s: MHD_start_daemon failed", srv->listen_str);
		goto out_close;
	}
	di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di) {
		rv = -EIO;
		log_err("http %s: no MHD epoll fd", srv->listen_str);
		goto out_stop;
	}
	srv->eio = loop_io_add(l, di->epoll_fd, POLLIN, mhd_io_cb, srv);
	if (!srv->eio) {
		rv = -errno;
		goto out_stop;
	}
	srv->lio = loop_io_add(l, srv->lfd, POLLIN, accept_cb, srv);
	if (!srv->lio) {
		rv = -errno;
		goto out_eio;
	}
	log_info("http listening on %s (max_connections=%u per_ip=%u "
		 "timeout=%us max_body=%zu max_header=%zu)",
		 srv->listen_str, srv->cfg.max_connections,
		 srv->cfg.max_connections_per_ip, srv->cfg.connection_timeout_s,
		 srv->cfg.max_body, srv->cfg.max_header);
	return srv;
out_eio:
	loop_io_close(srv->eio);
out_stop:
	MHD_stop_daemon(srv->d);
out_close:
	close(srv->lfd);
out_free:
	free(srv);
	errno = -rv;
	return NULL;
}

unsigned http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void http_server_set_guard(struct http_server *srv, http_guard_fn *fn,
			   void *arg)
{
	srv->guard = fn;
	srv->guard_arg = arg;
}

void http_server_quiesce(struct http_server *srv)
{
	if (srv->quiescing)
		return;
	srv->quiescing = true;
	loop_io_close(srv->lio);
	srv->lio = NULL;
	loop_timer_stop(&srv->accept_pause);
	close(srv->lfd);
	srv->lfd = -1;
	log_info("http %s: quiescing (no new connections; %u open, %u "
		 "requests live)",
		 srv->listen_str, srv->st.connections_active,
		 srv->st.requests_active);
}

bool http_server_quiescing(const struct http_server *srv)
{
	return srv->quiescing;
}

void http_server_free(struct http_server *srv)
{
	struct http_req *req, *next;
	size_t i;

	if (!srv)
		return;
	http_server_quiesce(srv);
	srv->stopping = true;
	loop_defer_cancel(srv->loop, &srv->kick);
	loop_defer_cancel(srv->loop, &srv->release);
	while (srv->held_head)
		held_unlink(srv->held_head); /* not suspended: MHD ends them */
	while (srv->lingers)
		linger_end(srv->lingers);
	/* MHD must not be stopped with suspended connections */
	for (req = srv->reqs; req; req = req->next)
		if (req->mhd_suspended) {
			watch_stop(req);
			resume_in_mhd(req);
		}
	loop_io_close(srv->eio);
	srv->eio = NULL;
	MHD_stop_daemon(srv->d); /* completes and closes everything */
	srv->d = NULL;
	for (req = srv->reqs; req; req = next) {
		next = req->next;
		req_end(req, HTTP_REQ_END_SHUTDOWN);
	}
	while (srv->conns) {
		log_warn("http: connection %s left after MHD stopped",
			 srv->conns->client);
		close(srv->conns->fd);
		conn_free(srv->conns);
	}
	loop_timer_stop(&srv->mhd_timer);
	loop_timer_stop(&srv->accept_pause);
	for (i = 0; i < srv->n_routes; i++)
		route_free(srv->routes[i]);
	free(srv->routes);
	for (i = 0; i < IP_BUCKETS; i++)
		while (srv->ips[i]) {
			struct ip_entry *e = srv->ips[i];

			srv->ips[i] = e->next;
			free(e);
		}
	log_info("http %s: stopped (%" PRIu64 " requests served)",
		 srv->listen_str, srv->st.requests_total);
	free(srv);
}

void http_server_stats(const struct http_server *srv,
		       struct http_server_stats *st)
{
	*st = srv->st;
}

const char *http_server_debug_str(const struct http_server *srv, char *buf,
				  size_t len)
{
	snprintf(buf, len,
		 "http_server %s conns=%u/%u reqs=%u susp=%u held=%u "
		 "streams=%u linger=%u quiescing=%d total=%" PRIu64
		 " rejected=%" PRIu64 " timeouts=%" PRIu64,
		 srv->listen_str, srv->st.connections_active,
		 srv->cfg.max_connections, srv->st.requests_active,
		 srv->st.suspended, srv->st.held, srv->st.streams_active,
		 srv->st.lingering, srv->quiescing, srv->st.requests_total,
		 srv->st.rejected_limit, srv->st.timeouts);
	return buf;
}
