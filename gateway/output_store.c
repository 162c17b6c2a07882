/*
 * output_store.c: offset-addressed job output files (see output_store.h).
 *
 * Loop side: a hash of active streams (keyed by path).  A stream is active
 * while a batch of its appends is on the pool or more wait behind it;
 * then it is freed (the file is the state: its size is L).  Reads and
 * length queries are one worker job each, embedded in the request.
 *
 * Worker side (batch_work): open (creating directories and the file, with
 * directory fsyncs), fstat for L, apply each chunk in order, one
 * fdatasync, then the .eof marker if asked.  Requests of a batch are only
 * touched by the worker between submit and done.
 */
#include "output_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define OS_HASH_SIZE 256
#define EOF_SUFFIX ".eof"

enum out_op { OP_APPEND, OP_READ, OP_LENGTH };
enum out_state { REQ_IDLE, REQ_QUEUED, REQ_DONE };

static const char *const out_op_names[] = {"append", "read", "length"};

struct ostream {
	struct ostream *hnext;
	struct output_store *os;
	char *path; /* also the hash key */
	char *site, *stream;
	uint64_t job_id;
	struct output_req *pend_head, *pend_tail; /* waiting for the batch */
	struct output_req *batch;		  /* on the pool */
	unsigned n_batch;
	struct worker_job job;
	/* written by the worker, read in done */
	uint64_t length;
	bool complete;
	bool stored; /* stored or completed something */
	unsigned fsyncs;
	uint64_t bytes;
};

struct output_store {
	struct loop *loop;
	struct worker_pool *pool;
	char *root; /* <state_dir>/output */
	struct ostream *hash[OS_HASH_SIZE];
	output_hook_fn *hook;
	void *hook_arg;
	unsigned n_streams;
	unsigned in_flight;
	bool freeing;
	struct output_stats st;
};

/* ------------------------------------------------------------- names */

bool output_name_valid(const char *name, bool allow_dots)
{
	size_t i;

	if (!name || !name[0] || name[0] == '.')
		return false;
	for (i = 0; name[i]; i++) {
		char c = name[i];

		if (i >= OUTPUT_NAME_MAX)
			return false;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-')
			continue;
		if (c == '.' && allow_dots)
			continue;
		return false;
	}
	return true;
}

static int path_of(const char *root, const char *site, uint64_t job_id,
		   const char *stream, char *buf, size_t len)
{
	int n;

	if (!output_name_valid(site, true) ||
	    !output_name_valid(stream, false) || job_id == 0)
		return -EINVAL;
	n = snprintf(buf, len, "%s/%s/%" PRIu64 "/%s", root, site, job_id,
		     stream);
	if (n < 0 || (size_t)n + sizeof(EOF_SUFFIX) > len)
		return -ENAMETOOLONG;
	return 0;
}

int output_path(const struct output_store *os, const char *site,
		uint64_t job_id, const char *stream, char *buf, size_t len)
{
	return path_of(os->root, site, job_id, stream, buf, len);
}

static unsigned hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h % OS_HASH_SIZE;
}

/* ------------------------------------------------------ worker side */

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rv = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rv = -errno;
	close(fd);
	return rv;
}

/* The directory part of path into buf (path has a '/'). */
static void dir_of(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (n >= len)
		n = len - 1;
	memcpy(buf, path, n);
	buf[n] = '\0';
}

/*
 * mkdir each missing directory between root and path's directory; a new
 * directory's parent is fsync'ed so the entry is durable.
 */
static int make_dirs(const char *root, const char *path, unsigned *fsyncs)
{
	char dir[4096], parent[4096];
	char *p, *slash;
	int rv;

	dir_of(path, dir, sizeof(dir));
	if (strlen(dir) <= strlen(root))
		return -EINVAL;
	p = dir + strlen(root) + 1;
	for (;;) {
		slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		if (mkdir(dir, 0750) == 0) {
			dir_of(dir, parent, sizeof(parent));
			rv = fsync_dir(parent);
			if (rv)
				return rv;
			(*fsyncs)++;
		} else if (errno != EEXIST) {
			return -errno;
		}
		if (!slash)
			return 0;
		*slash = '/';
		p = slash + 1;
	}
}

static int write_all(int fd, const char *buf, size_t len, uint64_t off,
		     size_t *done)
{
	ssize_t n;

	*done = 0;
	while (*done < len) {
		n = pwrite(fd, buf + *done, len - *done, (off_t)(off + *done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		*done += (size_t)n;
	}
	return 0;
}

static int write_eof_marker(const char *path, uint64_t length, unsigned *fsyncs)
{
	char mpath[4200], dir[4096], txt[32];
	size_t done;
	int fd, rv, n;

	snprintf(mpath, sizeof(mpath), "%s" EOF_SUFFIX, path);
	fd = open(mpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	n = snprintf(txt, sizeof(txt), "%" PRIu64 "\n", length);
	rv = write_all(fd, txt, (size_t)n, 0, &done);
	if (!rv && fsync(fd) < 0)
		rv = -errno;
	close(fd);
	if (rv)
		return rv;
	(*fsyncs)++;
	dir_of(path, dir, sizeof(dir));
	rv = fsync_dir(dir);
	(*fsyncs)++;
	return rv;
}

static bool eof_exists(const char *path)
{
	char mpath[4200];

	snprintf(mpath, sizeof(mpath), "%s" EOF_SUFFIX, path);
	return access(mpath, F_OK) == 0;
}

static void batch_fail_all(struct ostream *s, int rv, uint64_t length)
{
	struct output_req *r;

	for (r = s->batch; r; r = r->p_.next) {
		r->rv = rv;
		r->next_offset = length;
		r->complete = s->complete;
	}
}

static void batch_work(struct worker_job *job)
{
	struct ostream *s = container_of(job, struct ostream, job);
	struct output_req *r;
	uint64_t L0 = 0, L = 0, skip;
	unsigned fsyncs = 0;
	bool created = false, want_eof = false, any_ok = false;
	char dir[4096];
	struct stat sb;
	size_t done, n;
	int fd, rv;

	s->stored = false;
	s->bytes = 0;
	fd = open(s->path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		rv = make_dirs(s->os->root, s->path, &fsyncs);
		if (rv) {
			s->complete = false;
			batch_fail_all(s, rv, 0);
			goto out;
		}
		fd = open(s->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			  0640);
		created = fd >= 0;
		if (fd < 0 && errno == EEXIST)
			fd = open(s->path, O_WRONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		rv = -errno;
		s->complete = eof_exists(s->path);
		batch_fail_all(s, rv, 0);
		goto out;
	}
	if (fstat(fd, &sb) < 0) {
		rv = -errno;
		batch_fail_all(s, rv, 0);
		goto out_close;
	}
	s->complete = eof_exists(s->path);
	L0 = L = (uint64_t)sb.st_size;
	for (r = s->batch; r; r = r->p_.next) {
		r->nread = 0;
		if (r->p_.offset > L) {
			r->rv = -ERANGE; /* a gap */
			r->next_offset = L;
			continue;
		}
		skip = L - r->p_.offset;
		n = skip < r->p_.len ? r->p_.len - (size_t)skip : 0;
		if (n && s->complete) {
			r->rv = -EROFS;
			r->next_offset = L;
			continue;
		}
		if (n) {
			rv = write_all(fd, (const char *)r->p_.data + skip, n,
				       L, &done);
			L += done;
			s->bytes += done;
			if (rv) {
				r->rv = rv;
				r->next_offset = L;
				continue;
			}
		}
		r->rv = 0;
		r->next_offset = L;
		any_ok = true;
		if (r->p_.flags & OUTPUT_EOF)
			want_eof = true;
	}
	/*
	 * Even with nothing new: bytes a previous process wrote may not be
	 * durable yet, and an answer vouches for all of [0, L).
	 */
	if (any_ok || L != L0) {
		if (fdatasync(fd) < 0) {
			rv = -errno;
			log_err(
			    "output %s: fdatasync: %s: cutting back to %" PRIu64
			    " bytes",
			    s->path, strerror(-rv), L0);
			if (ftruncate(fd, (off_t)L0) == 0)
				fdatasync(fd);
			L = L0;
			s->bytes = 0;
			for (r = s->batch; r; r = r->p_.next) {
				if (r->rv == 0)
					r->rv = -EIO;
				if (r->next_offset > L0)
					r->next_offset = L0;
			}
			want_eof = false;
			any_ok = false;
		}
		fsyncs++;
	}
	if (created) {
		dir_of(s->path, dir, sizeof(dir));
		rv = fsync_dir(dir);
		fsyncs++;
		if (rv) {
			for (r = s->batch; r; r = r->p_.next)
				if (r->rv == 0)
					r->rv = rv;
			want_eof = false;
			any_ok = false;
		}
	}
	if (want_eof && !s->complete) {
		rv = write_eof_marker(s->path, L, &fsyncs);
		if (rv) {
			for (r = s->batch; r; r = r->p_.next)
				if (r->rv == 0 && (r->p_.flags & OUTPUT_EOF))
					r->rv = rv;
		} else {
			s->complete = true;
		}
	}
	s->stored = any_ok && (L != L0 || want_eof);
	for (r = s->batch; r; r = r->p_.next)
		r->complete = s->complete;
out_close:
	close(fd);
out:
	s->length = L;
	s->fsyncs = fsyncs;
}

/* read and length queries */
static void req_work(struct worker_job *job)
{
	struct output_req *r = container_of(job, struct output_req, p_.job);
	struct stat sb;
	size_t want, got = 0;
	ssize_t n;
	int fd;

	r->nread = 0;
	r->length = 0;
	/* the marker first: if it exists, the length read after is final */
	r->complete = eof_exists(r->p_.path);
	fd = open(r->p_.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT) {
			r->rv = -errno;
			return;
		}
		r->rv = r->p_.op == OP_READ && r->p_.offset > 0 ? -ERANGE : 0;
		return;
	}
	if (fstat(fd, &sb) < 0) {
		r->rv = -errno;
		goto out_close;
	}
	r->length = (uint64_t)sb.st_size;
	r->rv = 0;
	if (r->p_.op != OP_READ)
		goto out_close;
	if (r->p_.offset > r->length) {
		r->rv = -ERANGE;
		goto out_close;
	}
	want = r->p_.len;
	if (r->length - r->p_.offset < want)
		want = (size_t)(r->length - r->p_.offset);
	while (got < want) {
		n = pread(fd, (char *)r->p_.buf + got, want - got,
			  (off_t)(r->p_.offset + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r->rv = -errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	r->nread = got;
out_close:
	close(fd);
}

/* ---------------------------------------------------------- loop side */

static void os_maybe_free(struct output_store *os)
{
	if (!os->freeing || os->in_flight || os->n_streams)
		return;
	log_info("output %s: closed", os->root);
	free(os->root);
	free(os);
}

static void req_complete(struct output_store *os, struct output_req *r)
{
	void (*cb)(struct output_req *) = r->cb;
	struct task *t = r->task;

	r->p_.next = NULL;
	r->p_.state = REQ_DONE;
	r->p_.s = NULL;
	free(r->p_.path);
	r->p_.path = NULL;
	os->in_flight--;
	if (r->p_.op == OP_APPEND) {
		os->st.appends++;
		if (r->rv == -ERANGE)
			os->st.gaps++;
	} else if (r->p_.op == OP_READ && r->rv == 0) {
		os->st.reads++;
		os->st.bytes_read += r->nread;
	}
	if (r->rv && r->rv != -ERANGE && r->rv != -EROFS)
		os->st.errors++;
	dbg("output %s req done rv=%d next=%" PRIu64 " len=%" PRIu64,
	    out_op_names[r->p_.op], r->rv, r->next_offset, r->length);
	if (cb)
		cb(r);
	if (t) {
		if (!task_destroyed(t))
			task_wake(t, TASK_WAKE_WORKER);
		task_unref(t);
	}
}

static void stream_free(struct output_store *os, struct ostream *s)
{
	struct ostream **pp = &os->hash[hash_str(s->path)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	}
	os->n_streams--;
	free(s->path);
	free(s->site);
	free(s->stream);
	free(s);
}

static void batch_done(struct worker_job *job, int status);

/* Move what is pending into the batch and submit it.  0 or -errno. */
static int stream_submit(struct ostream *s)
{
	struct output_req *r;
	int rv;

	s->batch = s->pend_head;
	s->pend_head = s->pend_tail = NULL;
	s->n_batch = 0;
	for (r = s->batch; r; r = r->p_.next)
		s->n_batch++;
	memset(&s->job, 0, sizeof(s->job));
	s->job.name = "output-append";
	s->job.work = batch_work;
	s->job.done = batch_done;
	rv = worker_submit(s->os->pool, &s->job);
	if (rv) {
		/* give the requests back to pending, in order */
		s->pend_head = s->batch;
		for (r = s->batch; r && r->p_.next; r = r->p_.next)
			;
		s->pend_tail = r;
		s->batch = NULL;
	}
	return rv;
}

/* Complete every request of list with rv. */
static void fail_list(struct output_store *os, struct output_req *list, int rv)
{
	struct output_req *r, *next;

	for (r = list; r; r = next) {
		next = r->p_.next;
		r->rv = rv;
		req_complete(os, r);
	}
}

static void batch_done(struct worker_job *job, int status)
{
	struct ostream *s = container_of(job, struct ostream, job);
	struct output_store *os = s->os;
	struct output_req *list = s->batch, *r, *next;
	int rv;

	s->batch = NULL;
	if (status) { /* never ran */
		for (r = list; r; r = r->p_.next)
			r->rv = status;
	} else {
		os->st.batches++;
		os->st.fsyncs += s->fsyncs;
		os->st.bytes_written += s->bytes;
		if (s->n_batch > os->st.max_batch)
			os->st.max_batch = s->n_batch;
		if (s->stored && os->hook)
			os->hook(os->hook_arg, s->site, s->job_id, s->stream,
				 s->length, s->complete);
	}
	/*
	 * s stays in the hash through the callbacks: an append they make
	 * for this stream waits in pending and is submitted below.
	 */
	for (r = list; r; r = next) {
		next = r->p_.next;
		req_complete(os, r);
	}
	if (s->pend_head) {
		rv = os->freeing ? -ESHUTDOWN : stream_submit(s);
		if (rv) {
			list = s->pend_head;
			s->pend_head = s->pend_tail = NULL;
			fail_list(os, list, rv);
		}
	}
	if (!s->batch && !s->pend_head) {
		stream_free(os, s);
		os_maybe_free(os);
	}
}

static void req_done(struct worker_job *job, int status)
{
	struct output_req *r = container_of(job, struct output_req, p_.job);
	struct output_store *os = r->p_.os;

	if (status)
		r->rv = status;
	req_complete(os, r);
	os_maybe_free(os);
}

bool output_req_pending(const struct output_req *r)
{
	return r->p_.state == REQ_QUEUED;
}

static int req_prep(struct output_store *os, struct output_req *r)
{
	if (!os || !r)
		return -EINVAL;
	if (os->freeing)
		return -ESHUTDOWN;
	if (output_req_pending(r))
		return -EBUSY;
	r->rv = 0;
	r->next_offset = r->length = 0;
	r->nread = 0;
	r->complete = false;
	r->p_.os = os;
	r->p_.s = NULL;
	r->p_.next = NULL;
	r->p_.path = NULL;
	r->p_.data = NULL;
	r->p_.buf = NULL;
	r->p_.len = 0;
	r->p_.flags = 0;
	return 0;
}

static void req_queued(struct output_store *os, struct output_req *r)
{
	r->p_.state = REQ_QUEUED;
	os->in_flight++;
	if (r->task)
		task_ref(r->task);
}

int output_append(struct output_store *os, struct output_req *r,
		  const char *site, uint64_t job_id, const char *stream,
		  uint64_t offset, const void *data, size_t len, unsigned flags)
{
	char path[4096];
	struct ostream *s;
	unsigned h;
	int rv = req_prep(os, r);

	if (rv)
		return rv;
	if ((len && !data) || (flags & ~OUTPUT_EOF))
		return -EINVAL;
	rv = path_of(os->root, site, job_id, stream, path, sizeof(path));
	if (rv)
		return rv;
	r->p_.op = OP_APPEND;
	r->p_.offset = offset;
	r->p_.data = data;
	r->p_.len = len;
	r->p_.flags = flags;
	h = hash_str(path);
	for (s = os->hash[h]; s; s = s->hnext)
		if (!strcmp(s->path, path))
			break;
	if (s) { /* a batch is in flight: join the next one */
		if (s->pend_tail)
			s->pend_tail->p_.next = r;
		else
			s->pend_head = r;
		s->pend_tail = r;
		r->p_.s = s;
		req_queued(os, r);
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->os = os;
	s->job_id = job_id;
	s->path = strdup(path);
	s->site = strdup(site);
	s->stream = strdup(stream);
	if (!s->path || !s->site || !s->stream) {
		free(s->path);
		free(s->site);
		free(s->stream);
		free(s);
		return -ENOMEM;
	}
	s->pend_head = s->pend_tail = r;
	rv = stream_submit(s);
	if (rv) {
		free(s->path);
		free(s->site);
		free(s->stream);
		free(s);
		return rv;
	}
	s->hnext = os->hash[h];
	os->hash[h] = s;
	os->n_streams++;
	r->p_.s = s;
	req_queued(os, r);
	return 0;
}

int output_mark_eof(struct output_store *os, struct output_req *r,
		    const char *site, uint64_t job_id, const char *stream,
		    uint64_t offset)
{
	return output_append(os, r, site, job_id, stream, offset, NULL, 0,
			     OUTPUT_EOF);
}

static int query(struct output_store *os, struct output_req *r, int op,
		 const char *site, uint64_t job_id, const char *stream,
		 uint64_t offset, void *buf, size_t len)
{
	char path[4096];
	int rv = req_prep(os, r);

	if (rv)
		return rv;
	if (len && !buf)
		return -EINVAL;
	rv = path_of(os->root, site, job_id, stream, path, sizeof(path));
	if (rv)
		return rv;
	r->p_.path = strdup(path);
	if (!r->p_.path)
		return -ENOMEM;
	r->p_.op = op;
	r->p_.offset = offset;
	r->p_.buf = buf;
	r->p_.len = len;
	memset(&r->p_.job, 0, sizeof(r->p_.job));
	r->p_.job.name = op == OP_READ ? "output-read" : "output-length";
	r->p_.job.work = req_work;
	r->p_.job.done = req_done;
	rv = worker_submit(os->pool, &r->p_.job);
	if (rv) {
		free(r->p_.path);
		r->p_.path = NULL;
		return rv;
	}
	req_queued(os, r);
	return 0;
}

int output_read(struct output_store *os, struct output_req *r, const char *site,
		uint64_t job_id, const char *stream, uint64_t offset, void *buf,
		size_t len)
{
	return query(os, r, OP_READ, site, job_id, stream, offset, buf, len);
}

int output_length(struct output_store *os, struct output_req *r,
		  const char *site, uint64_t job_id, const char *stream)
{
	return query(os, r, OP_LENGTH, site, job_id, stream, 0, NULL, 0);
}

int output_is_complete(struct output_store *os, struct output_req *r,
		       const char *site, uint64_t job_id, const char *stream)
{
	return output_length(os, r, site, job_id, stream);
}

/* ----------------------------------------------------- life cycle */

int output_store_new(struct loop *l, struct worker_pool *pool,
		     const char *state_dir, struct output_store **out)
{
	struct output_store *os;
	size_t n;
	int rv;

	*out = NULL;
	if (!l || !pool || !state_dir || !*state_dir)
		return -EINVAL;
	os = calloc(1, sizeof(*os));
	if (!os)
		return -ENOMEM;
	n = strlen(state_dir) + sizeof("/output");
	os->root = malloc(n);
	if (!os->root) {
		free(os);
		return -ENOMEM;
	}
	snprintf(os->root, n, "%s/output", state_dir);
	if (mkdir(os->root, 0750) < 0 && errno != EEXIST) {
		rv = -errno;
		log_err("output: mkdir %s: %s", os->root, strerror(-rv));
		free(os->root);
		free(os);
		return rv;
	}
	os->loop = l;
	os->pool = pool;
	*out = os;
	return 0;
}

void output_store_free(struct output_store *os)
{
	if (!os)
		return;
	os->freeing = true;
	if (os->in_flight || os->n_streams)
		log_info("output %s: closing after %u request(s) in flight",
			 os->root, os->in_flight);
	os_maybe_free(os);
}

void output_store_set_hook(struct output_store *os, output_hook_fn *fn,
			   void *arg)
{
	os->hook = fn;
	os->hook_arg = arg;
}

void output_store_stats(const struct output_store *os, struct output_stats *s)
{
	*s = os->st;
	s->streams_active = os->n_streams;
	s->in_flight = os->in_flight;
}

const char *output_store_debug_str(const struct output_store *os, char *buf,
				   size_t len)
{
	snprintf(buf, len,
		 "output %s active=%u in_flight=%u appends=%" PRIu64
		 " bytes=%" PRIu64 " batches=%" PRIu64 " max_batch=%" PRIu64
		 " fsyncs=%" PRIu64 " gaps=%" PRIu64 " errors=%" PRIu64
		 " reads=%" PRIu64 "%s",
		 os->root, os->n_streams, os->in_flight, os->st.appends,
		 os->st.bytes_written, os->st.batches, os->st.max_batch,
		 os->st.fsyncs, os->st.gaps, os->st.errors, os->st.reads,
		 os->freeing ? " freeing" : "");
	return buf;
}
