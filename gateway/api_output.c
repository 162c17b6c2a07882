/*
 * api_output.c: GET /v1/jobs/{id}/output, the job's output as Server-Sent
 * Events while it is produced.  One follower task per client writes:
 *
 *   id: <offset after this chunk>
 *   event: output
 *   data: {"stream":"stdout","offset":N,"data_b64":"..."}
 *
 * then `event: end` with the job's final state once the job is final and
 * the stream complete.  `?offset=N` or `Last-Event-ID: N` resumes without
 * gaps or repeats.  A comment line every 15 s tells dead clients apart.
 *
 * Followers of one stored stream share a feed:
 *
 *   output store --append hook--> feed --wake--> every follower waiting
 *   follower at offset o --> feed: a cached chunk at o, or the read at o
 *                            in flight (joined), or a new read at o
 *   read done --> the chunk is base64-encoded ONCE into its SSE event and
 *                 handed (a reference) to every follower that asked for it
 *
 * So a follower that is caught up costs nothing until the store appends
 * to its stream (no polling), and 1 000 followers at the same offset cost
 * one read (on a worker, never on the loop) and one encoding per chunk.
 * The only timer left is the feed's (FEED_CHECK_MS, one per followed
 * stream, armed while followers wait): the job's final state has no hook.
 *
 * Slow clients: a follower stops taking chunks while its connection holds
 * more than HIGH_WATER unsent bytes and goes on when libmicrohttpd drained
 * it below LOW_WATER (http_stream_on_drain): the output store is the
 * buffer, so a reader that is merely slow falls behind and reads from the
 * disk later.  A client that takes nothing for SLOW_DROP_MS while bytes
 * wait, or whose stream would pass the server's max_stream_buffer, is
 * dropped without slowing the others.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "jobs.h"
#include "log.h"
#include "output_store.h"
#include "task.h"

#define CHUNK 49152 /* bytes per read; base64 of it stays under 64 KiB */
#define HEARTBEAT_MS 15000
#define FINAL_GRACE_MS 15000 /* after the job ends, for its last bytes */
#define FEED_CHECK_MS 1000   /* the job's state, while followers wait */
#define FEED_CACHE 4	     /* recent chunks kept per feed */
#define FEED_BUCKETS 256
#define HIGH_WATER (192 * 1024) /* unsent bytes: stop taking chunks */
#define LOW_WATER (64 * 1024)	/* ... and go on below this */
#define SLOW_DROP_MS 30000
#define STEP_CHUNKS 4 /* chunks a follower writes per step, then yields */

#define FOLLOW_STATES(X) X(READING) X(WAITING) X(DRAINING)
enum follow_state { FOLLOW_STATES(TASK_STATE_ENUM) };
static const char *const follow_state_names[] = {
    FOLLOW_STATES(TASK_STATE_NAME)};

struct feed;

/* One read of the store, encoded once into its SSE event; shared. */
struct fchunk {
	unsigned refs;
	uint64_t offset; /* of its first byte */
	size_t n;	 /* bytes of output */
	size_t len;	 /* of text */
	char text[];	 /* the whole event */
};

struct follower {
	struct task task;
	struct gw *gw;
	struct http_req *req;
	struct http_stream *st;
	struct feed *feed;
	/* on the feed's waiting list or a read's: the one `list` points to */
	struct follower *prev, *next, **list;
	struct fchunk *chunk; /* handed by a read, not written yet */
	int read_rv;	      /* of the last read asked (not -ERANGE) */
	uint64_t offset;
	uint64_t last_write_ms;
	uint64_t drain_since_ms;
	char job_id[32];
};

/* A read of the store in flight for the followers listed. */
struct fread {
	struct fread *next; /* feed->reads */
	struct feed *feed;
	uint64_t offset;
	struct follower *waiters;
	struct output_req oreq;
	unsigned char buf[CHUNK];
};

/* Per stored stream ("<gateway job id>-<stream>"): its followers. */
struct feed {
	struct feed *hnext;
	struct gw *gw;
	unsigned refs; /* followers attached + reads in flight */
	char key[96];  /* the stored stream's name */
	char job_id[32];
	char stream_name[16]; /* stdout or stderr, as the client sees it */
	uint64_t slurm_id;    /* from the store's hook, 0 until then */
	uint64_t length;      /* longest length the store has told */
	bool known;	      /* length was told at least once */
	bool complete;
	uint64_t final_since_ms;  /* when the job was first seen final */
	struct follower *waiting; /* caught up, waiting for bytes */
	unsigned n_waiting, n_followers;
	struct fread *reads;
	struct fchunk *cache[FEED_CACHE];
	unsigned cache_next;
	struct loop_timer check;
	uint64_t n_reads, n_chunks_given, n_wakes;
};

/* One gateway per process: the feeds of its output store. */
static struct {
	struct gw *gw;
	struct feed *hash[FEED_BUCKETS];
	unsigned n_feeds;
} feeds;

/* ------------------------------------------------------------- chunks */

static void chunk_unref(struct fchunk *c)
{
	if (c && !--c->refs)
		free(c);
}

static struct fchunk *chunk_ref(struct fchunk *c)
{
	c->refs++;
	return c;
}

static struct fchunk *chunk_new(const char *stream_name, uint64_t offset,
				const unsigned char *data, size_t n)
{
	size_t cap = 200 + (n + 2) / 3 * 4;
	struct fchunk *c = malloc(sizeof(*c) + cap);
	int head, b64;

	if (!c)
		return NULL;
	head = snprintf(c->text, cap,
			"id: %llu\nevent: output\ndata: "
			"{\"stream\":\"%s\",\"offset\":%llu,\"data_b64\":\"",
			(unsigned long long)(offset + n), stream_name,
			(unsigned long long)offset);
	b64 = EVP_EncodeBlock((unsigned char *)c->text + head, data, (int)n);
	memcpy(c->text + head + b64, "\"}\n\n", 5);
	c->len = (size_t)head + (size_t)b64 + 4;
	c->refs = 1;
	c->offset = offset;
	c->n = n;
	return c;
}

/* -------------------------------------------------------------- lists */

static void list_add(struct follower **head, struct follower *f)
{
	f->prev = NULL;
	f->next = *head;
	if (*head)
		(*head)->prev = f;
	*head = f;
	f->list = head;
}

static void list_del(struct follower *f)
{
	if (!f->list)
		return;
	if (f->prev)
		f->prev->next = f->next;
	else
		*f->list = f->next;
	if (f->next)
		f->next->prev = f->prev;
	if (f->feed && f->list == &f->feed->waiting)
		f->feed->n_waiting--;
	f->prev = f->next = NULL;
	f->list = NULL;
}

/* --------------------------------------------------------------- feeds */

static const char *feed_debug_str(const struct feed *fd, char *buf, size_t len)
{
	unsigned n_reads = 0;
	const struct fread *r;

	for (r = fd->reads; r; r = r->next)
		n_reads++;
	snprintf(buf, len,
		 "feed %s job=%s slurm=%llu len=%llu%s%s followers=%u "
		 "waiting=%u reads_in_flight=%u reads=%llu given=%llu "
		 "wakes=%llu",
		 fd->key, fd->job_id, (unsigned long long)fd->slurm_id,
		 (unsigned long long)fd->length, fd->known ? "" : "?",
		 fd->complete ? " complete" : "", fd->n_followers,
		 fd->n_waiting, n_reads, (unsigned long long)fd->n_reads,
		 (unsigned long long)fd->n_chunks_given,
		 (unsigned long long)fd->n_wakes);
	return buf;
}

static unsigned feed_bucket(const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key; key++) {
		h ^= (unsigned char)*key;
		h *= 16777619u;
	}
	return h % FEED_BUCKETS;
}

static struct feed *feed_find(const char *key)
{
	struct feed *fd;

	for (fd = feeds.hash[feed_bucket(key)]; fd; fd = fd->hnext)
		if (!strcmp(fd->key, key))
			return fd;
	return NULL;
}

static void feed_unref(struct feed *fd)
{
	struct feed **pp;
	unsigned i;
	char dbg_buf[256];

	if (--fd->refs)
		return;
	dbg("output %s: freed", feed_debug_str(fd, dbg_buf, sizeof(dbg_buf)));
	for (pp = &feeds.hash[feed_bucket(fd->key)]; *pp; pp = &(*pp)->hnext)
		if (*pp == fd) {
			*pp = fd->hnext;
			break;
		}
	feeds.n_feeds--;
	loop_timer_stop(&fd->check);
	for (i = 0; i < FEED_CACHE; i++)
		chunk_unref(fd->cache[i]);
	free(fd);
}

/* Wake every waiting follower: there is more to read, or to decide. */
static void feed_wake_all(struct feed *fd)
{
	struct follower *f;

	while ((f = fd->waiting)) {
		list_del(f);
		task_wake(&f->task, TASK_WAKE_USER);
		fd->n_wakes++;
	}
	loop_timer_stop(&fd->check);
}

/* The fallback: the job's end has no hook, so look while followers wait. */
static void feed_check(struct loop_timer *t, void *arg)
{
	struct feed *fd = arg;
	struct gw_job *j = jobs_find(fd->gw->jobs, fd->job_id);

	(void)t;
	if (!fd->waiting)
		return;
	if (!j || job_final(j)) {
		feed_wake_all(fd);
		return;
	}
	loop_timer_start(fd->gw->loop, &fd->check, FEED_CHECK_MS, feed_check,
			 fd);
}

static void feed_wait(struct feed *fd, struct follower *f)
{
	list_add(&fd->waiting, f);
	fd->n_waiting++;
	if (!loop_timer_armed(&fd->check))
		loop_timer_start(fd->gw->loop, &fd->check, FEED_CHECK_MS,
				 feed_check, fd);
}

/* The output store appended to (or completed) a stream: wake its feed. */
static void feed_hook(void *arg, const char *site, uint64_t job_id,
		      const char *stream, uint64_t length, bool complete)
{
	struct feed *fd = feed_find(stream);

	(void)arg;
	(void)site;
	if (!fd)
		return;
	fd->slurm_id = job_id;
	if (length > fd->length)
		fd->length = length;
	fd->known = true;
	if (complete)
		fd->complete = true;
	feed_wake_all(fd);
}

static struct feed *feed_get(struct gw *gw, const struct gw_job *j,
			     const char *stream_name)
{
	char key[96];
	struct feed *fd;
	unsigned h;

	if (feeds.gw != gw) {
		/* the first follower of this gateway: hear its appends */
		feeds.gw = gw;
		output_store_set_hook(gw->output, feed_hook, gw);
	}
	output_stream_key(j->rec.id, stream_name, key, sizeof(key));
	fd = feed_find(key);
	if (fd) {
		fd->refs++;
		return fd;
	}
	fd = calloc(1, sizeof(*fd));
	if (!fd)
		return NULL;
	fd->gw = gw;
	fd->refs = 1;
	snprintf(fd->key, sizeof(fd->key), "%s", key);
	snprintf(fd->job_id, sizeof(fd->job_id), "%s", j->rec.id);
	snprintf(fd->stream_name, sizeof(fd->stream_name), "%s", stream_name);
	loop_timer_init(&fd->check);
	h = feed_bucket(key);
	fd->hnext = feeds.hash[h];
	feeds.hash[h] = fd;
	feeds.n_feeds++;
	return fd;
}

static struct fchunk *feed_cached(struct feed *fd, uint64_t offset)
{
	unsigned i;

	for (i = 0; i < FEED_CACHE; i++)
		if (fd->cache[i] && fd->cache[i]->offset == offset)
			return fd->cache[i];
	return NULL;
}

static void read_done(struct output_req *oreq)
{
	struct fread *r = oreq->arg;
	struct feed *fd = r->feed;
	struct fread **pp;
	struct fchunk *c = NULL;
	struct follower *f;
	char dbg_buf[256];

	for (pp = &fd->reads; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	if (!oreq->rv || oreq->rv == -ERANGE) {
		if (oreq->length > fd->length)
			fd->length = oreq->length;
		fd->known = true;
		if (oreq->complete)
			fd->complete = true;
	} else {
		log_err("output %s: read at %llu: %s",
			feed_debug_str(fd, dbg_buf, sizeof(dbg_buf)),
			(unsigned long long)r->offset, strerror(-oreq->rv));
	}
	if (!oreq->rv && oreq->nread) {
		c = chunk_new(fd->stream_name, r->offset, r->buf, oreq->nread);
		if (!c)
			log_err("output %s: out of memory for a chunk of %zu "
				"bytes",
				feed_debug_str(fd, dbg_buf, sizeof(dbg_buf)),
				oreq->nread);
	}
	if (c) {
		chunk_unref(fd->cache[fd->cache_next]);
		fd->cache[fd->cache_next] = c; /* the feed's reference */
		fd->cache_next = (fd->cache_next + 1) % FEED_CACHE;
	}
	while ((f = r->waiters)) {
		list_del(f);
		/* -ERANGE: past the end, wait for more like at the end */
		f->read_rv = c			   ? 0
			     : oreq->nread	   ? -ENOMEM
			     : oreq->rv == -ERANGE ? 0
						   : oreq->rv;
		if (c) {
			f->chunk = chunk_ref(c);
			fd->n_chunks_given++;
		}
		task_wake(&f->task, TASK_WAKE_WORKER);
	}
	free(r);
	feed_unref(fd);
}

/* Join the read at f->offset, or start it.  0 or -errno. */
static int feed_read(struct feed *fd, struct follower *f, const char *site,
		     uint64_t slurm_id)
{
	struct fread *r;
	int rv;

	for (r = fd->reads; r; r = r->next)
		if (r->offset == f->offset)
			break;
	if (!r) {
		r = malloc(sizeof(*r));
		if (!r)
			return -ENOMEM;
		memset(&r->oreq, 0, sizeof(r->oreq));
		r->feed = fd;
		r->offset = f->offset;
		r->waiters = NULL;
		r->oreq.cb = read_done;
		r->oreq.arg = r;
		rv = output_read(fd->gw->output, &r->oreq, site, slurm_id,
				 fd->key, r->offset, r->buf, sizeof(r->buf));
		if (rv) {
			free(r);
			return rv;
		}
		r->next = fd->reads;
		fd->reads = r;
		fd->refs++;
		fd->n_reads++;
	}
	list_add(&r->waiters, f);
	return 0;
}

/* ---------------------------------------------------------- followers */

static int send_text(struct follower *f, const char *text, size_t len)
{
	int rv = http_stream_write(f->st, text, len);

	if (rv == -ENOBUFS) {
		log_warn("follower of %s at %llu: client too slow "
			 "(%zu bytes unsent), dropped",
			 f->job_id, (unsigned long long)f->offset,
			 http_stream_buffered(f->st));
		http_stream_abort(f->st);
	} else if (rv && rv != -EPIPE) {
		log_err("follower of %s at %llu: write: %s", f->job_id,
			(unsigned long long)f->offset, strerror(-rv));
		http_stream_abort(f->st);
	}
	f->last_write_ms = loop_clock_ms();
	return rv;
}

static void follower_drained(struct http_stream *s, void *arg)
{
	struct follower *f = arg;

	if (f->task.state == DRAINING && http_stream_buffered(s) < LOW_WATER)
		task_wake(&f->task, TASK_WAKE_IO);
}

static void follow_detach(struct follower *f)
{
	list_del(f);
	chunk_unref(f->chunk);
	f->chunk = NULL;
	if (f->feed) {
		f->feed->n_followers--;
		feed_unref(f->feed);
		f->feed = NULL;
	}
}

/* The job is final: end the stream if its output is whole (or never will
 * be).  True when the follower is done. */
static bool follow_maybe_end(struct follower *f, struct gw_job *j)
{
	struct feed *fd = f->feed;
	char end[128];
	int n;

	if (!j) {
		log_warn("follower of %s at %llu: the job is gone, closing",
			 f->job_id, (unsigned long long)f->offset);
		http_stream_close(f->st);
		return true;
	}
	if (!job_final(j))
		return false;
	if (!fd->final_since_ms)
		fd->final_since_ms = loop_clock_ms();
	/* complete, or the node never said so (relay gone): end */
	if (!(fd->complete ||
	      (j->rec.slurm_job_id == STORE_NULL && !fd->slurm_id) ||
	      loop_clock_ms() - fd->final_since_ms > FINAL_GRACE_MS))
		return false;
	n = snprintf(end, sizeof(end),
		     "event: end\ndata: {\"state\":\"%s\"}\n\n",
		     store_job_state_name(j->rec.state));
	send_text(f, end, (size_t)n);
	http_stream_close(f->st);
	return true;
}

static enum task_step follow_step(struct task *t, unsigned wake)
{
	struct follower *f = (struct follower *)t;
	struct feed *fd = f->feed;
	struct gw_job *j;
	uint64_t now, slurm_id;
	int i, rv;

	if ((wake & TASK_WAKE_CANCEL) || http_req_destroyed(f->req)) {
		if (!http_req_destroyed(f->req))
			http_stream_close(f->st); /* shutting down */
		follow_detach(f);
		return TASK_DONE;
	}
	if (f->list && f->list != &fd->waiting)
		return TASK_WAIT; /* a read of ours is in flight */
	list_del(f);
	if (f->read_rv) {
		log_err("follower of %s at %llu: reading the output: %s",
			f->job_id, (unsigned long long)f->offset,
			strerror(-f->read_rv));
		http_stream_abort(f->st);
		follow_detach(f);
		return TASK_DONE;
	}
	now = loop_clock_ms();
	for (i = 0; i < STEP_CHUNKS; i++) {
		if (f->chunk) {
			if (f->chunk->offset == f->offset) {
				if (send_text(f, f->chunk->text,
					      f->chunk->len)) {
					follow_detach(f);
					return TASK_DONE;
				}
				f->offset += f->chunk->n;
			}
			chunk_unref(f->chunk);
			f->chunk = NULL;
		}
		if (http_stream_buffered(f->st) >= HIGH_WATER) {
			if (t->state != DRAINING) {
				task_set_state(t, DRAINING);
				task_wait_on(t, "client reading");
				f->drain_since_ms = now;
			} else if (now - f->drain_since_ms > SLOW_DROP_MS) {
				log_warn("follower of %s at %llu: client took "
					 "nothing for %d s (%zu bytes "
					 "unsent), dropped",
					 f->job_id,
					 (unsigned long long)f->offset,
					 SLOW_DROP_MS / 1000,
					 http_stream_buffered(f->st));
				http_stream_abort(f->st);
				follow_detach(f);
				return TASK_DONE;
			}
			task_sleep(t, SLOW_DROP_MS + 1);
			return TASK_WAIT;
		}
		if (t->state == DRAINING)
			task_set_state(t, READING);
		j = jobs_find(f->gw->jobs, f->job_id);
		if (!j) {
			follow_maybe_end(f, NULL);
			follow_detach(f);
			return TASK_DONE;
		}
		slurm_id = j->rec.slurm_job_id != STORE_NULL
			       ? (uint64_t)j->rec.slurm_job_id
			       : fd->slurm_id;
		if (slurm_id && (!fd->known || f->offset < fd->length)) {
			struct fchunk *c = feed_cached(fd, f->offset);

			if (c) {
				f->chunk = chunk_ref(c);
				fd->n_chunks_given++;
				continue;
			}
			rv = feed_read(fd, f, j->rec.site, slurm_id);
			if (rv) {
				log_err("follower of %s at %llu: cannot read "
					"the output: %s",
					f->job_id,
					(unsigned long long)f->offset,
					strerror(-rv));
				http_stream_abort(f->st);
				follow_detach(f);
				return TASK_DONE;
			}
			task_set_state(t, READING);
			task_wait_on(t, "output store");
			task_sleep_stop(t);
			return TASK_WAIT;
		}
		/* caught up (or not at the site yet) */
		if (follow_maybe_end(f, j)) {
			follow_detach(f);
			return TASK_DONE;
		}
		{
			/* one reading of the clock: the sleep never wraps */
			uint64_t quiet = loop_clock_ms() - f->last_write_ms;

			if (quiet >= HEARTBEAT_MS) {
				if (send_text(f, ": keep-alive\n\n", 14)) {
					follow_detach(f);
					return TASK_DONE;
				}
				quiet = loop_clock_ms() - f->last_write_ms;
				if (quiet > HEARTBEAT_MS)
					quiet = HEARTBEAT_MS;
			}
			task_set_state(t, WAITING);
			task_wait_idle(t, "new output");
			feed_wait(fd, f);
			task_sleep(t, HEARTBEAT_MS - quiet);
		}
		return TASK_WAIT;
	}
	return task_yield(t);
}

static void follow_debug_str(const struct task *t, char *buf, size_t len)
{
	const struct follower *f = (const struct follower *)t;
	char fbuf[256];

	snprintf(buf, len, "follower job=%s offset=%llu unsent=%zu req=%s | %s",
		 f->job_id, (unsigned long long)f->offset,
		 f->st ? http_stream_buffered(f->st) : 0, http_req_id(f->req),
		 f->feed ? feed_debug_str(f->feed, fbuf, sizeof(fbuf))
			 : "no feed");
}

static void follow_destroy(struct task *t)
{
	struct follower *f = (struct follower *)t;

	follow_detach(f);
	http_stream_on_drain(f->st, NULL, NULL);
	http_req_on_done(f->req, NULL, NULL); /* f goes now */
	http_req_unref(f->req);
	free(f);
}

static const struct task_ops follow_ops = {
    .kind = "follower",
    .state_names = follow_state_names,
    .n_states = sizeof(follow_state_names) / sizeof(*follow_state_names),
    .step = follow_step,
    .debug_str = follow_debug_str,
    .destroy = follow_destroy,
};

static int quiesce_one(struct task *t, const struct task_info *in, void *arg)
{
	if (t->ops == &follow_ops)
		task_cancel(t, "shutdown");
	return 0;
}

void api_output_quiesce(struct gw *gw)
{
	size_t n = task_foreach(gw->loop, quiesce_one, NULL);

	dbg("quiesce: %zu task(s) looked at", n);
}

static void client_gone(struct http_req *req, enum http_req_end how, void *arg)
{
	struct follower *f = arg;

	(void)req;
	(void)how;
	task_cancel(&f->task, "client gone");
}

void api_jobs_output(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const char *id = http_req_param(req, "id");
	const char *stream = http_req_query(req, "stream");
	const char *from = http_req_query(req, "offset");
	struct gw_job *j = id ? jobs_find(gw->jobs, id) : NULL;
	struct follower *f;
	uint64_t offset = 0;
	char *end;

	if (!j || !api_may_see(api_identity(req), j->rec.user)) {
		http_reply_error(req, 404, "not_found", "no job %.64s",
				 id ? id : "");
		return;
	}
	if (!stream)
		stream = "stdout";
	if (strcmp(stream, "stdout") && strcmp(stream, "stderr")) {
		http_reply_error(req, 400, "bad_request",
				 "stream is stdout or stderr");
		return;
	}
	if (!from)
		from = http_req_header(req, "Last-Event-ID");
	if (from) {
		errno = 0;
		offset = strtoull(from, &end, 10);
		/* digits only: strtoull would take " 7", "" and "-1" */
		if (!isdigit((unsigned char)from[0]) || *end || errno) {
			http_reply_error(
			    req, 400, "bad_request",
			    "offset (or Last-Event-ID) must be a number");
			return;
		}
	}
	f = calloc(1, sizeof(*f));
	if (f)
		f->feed = feed_get(gw, j, stream);
	if (!f || !f->feed) {
		log_err("req %s: follower of %s: out of memory",
			http_req_id(req), j->rec.id);
		free(f);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	f->feed->n_followers++;
	f->gw = gw;
	f->req = req;
	f->offset = offset;
	snprintf(f->job_id, sizeof(f->job_id), "%s", j->rec.id);
	f->st = http_stream_start(req, "text/event-stream");
	if (!f->st) {
		follow_detach(f);
		free(f);
		return;
	}
	http_req_ref(req);
	f->last_write_ms = loop_clock_ms();
	if (task_start(gw->loop, &f->task, &follow_ops)) {
		http_stream_abort(f->st);
		http_req_unref(req);
		follow_detach(f);
		free(f);
		return;
	}
	f->task.state = WAITING;
	http_stream_on_drain(f->st, follower_drained, f);
	http_req_on_done(req, client_gone, f);
}
