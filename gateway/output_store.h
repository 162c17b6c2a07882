/*
 * output_store.h: job output, stored once, offset-addressed, under the
 * state dir:
 *
 *   <state_dir>/output/<site>/<slurm_job_id>/<stream>       the bytes
 *   <state_dir>/output/<site>/<slurm_job_id>/<stream>.eof   "complete"
 *
 * Appends follow docs/protocol.md.  For a stream of length L and a chunk
 * at offset N:
 *   N == L   append;                                rv 0, next_offset L+len
 *   N <  L   append only the bytes past L (a retry); rv 0, next_offset max
 *   N >  L   a gap: store nothing;                  rv -ERANGE, next_offset L
 * and an EOF (OUTPUT_EOF, normally with an empty chunk at N == L) marks
 * the stream complete once its bytes are durable.  New bytes for a
 * complete stream are refused (-EROFS, next_offset L); a retry carrying
 * only bytes already stored is answered as usual.
 *
 * Threads: no file I/O on the loop thread.  Every operation runs on the
 * worker pool given to output_store_new (borrowed; a small dedicated pool
 * keeps fsyncs from delaying MUNGE decodes).  Appends and EOFs of one
 * stream are serialised by the loop side (one batch in flight per stream);
 * whatever queued for that stream meanwhile becomes the next batch: its
 * chunks are written in order and made durable by ONE fdatasync (batched
 * fsync).  Reads and length queries of a stream run concurrently with its
 * appends; they may see bytes whose fdatasync has not returned yet, which
 * is harmless: the content at an offset never changes (a crash can only
 * shorten the stream, and the relay resends the same bytes).
 *
 * Reads for followers also go through the pool, never pread on the loop:
 * a page-cached pread costs microseconds, but an evicted page or a slow
 * disk would stall every connection of the gateway, and the DESIGN says
 * file I/O runs on workers.  A follower learns about new bytes from the
 * append hook (output_store_set_hook) rather than by polling.
 *
 * Durability: a chunk's completion (the ack) runs after fdatasync of the
 * file returned; a new file's directory entry (and any new directory) is
 * fsync'ed too.  When fdatasync fails, the batch's bytes are cut off again
 * (ftruncate to the length before the batch) and every chunk of the batch
 * gets -EIO, so nothing is acknowledged that may not be on disk.  At the
 * first append after a restart the existing file is fdatasync'ed before
 * its length is trusted in an answer.
 *
 * Error codes (req->rv; submit calls return the first three synchronously):
 *   -EINVAL     bad site/stream name (see output_name_valid) or job id 0
 *   -ENOMEM     out of memory
 *   -ESHUTDOWN  the pool or the store is shutting down
 *   -ERANGE     append: gap (next_offset = L); read: offset past the end
 *   -EROFS      append: new bytes for a complete stream
 *   -ENOSPC, -EIO, ...  the file system's errno (503 for the API)
 *   -ECANCELED  the pool was shut down with WORKER_SHUTDOWN_CANCEL
 *
 * Loop-thread only, unless said otherwise.
 */
#ifndef TIERGATE_OUTPUT_STORE_H
#define TIERGATE_OUTPUT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "task.h"
#include "worker.h"

struct output_store;
struct ostream;

#define OUTPUT_EOF 1u /* output_append flag: mark the stream complete */
#define OUTPUT_NAME_MAX 64

/*
 * A request, embedded in the caller's object and zeroed before first use,
 * like struct store_req: set cb/arg/task, call an output_* function; when
 * it returns 0 exactly one completion follows on the loop thread on a
 * later turn: cb(req) if set, then task_wake(task, TASK_WAKE_WORKER) if
 * set (a task reference is held meanwhile).  The request, and the data or
 * buffer passed with it, must stay valid until then (borrowed: never
 * copied).
 */
struct output_req {
	/* public */
	void (*cb)(struct output_req *r); /* loop thread; may resubmit r */
	void *arg;
	struct task *task;
	/* results */
	int rv;
	uint64_t next_offset; /* append: L after it (on -ERANGE/-EROFS: L) */
	uint64_t length;      /* read, length: the stream's length */
	size_t nread;	      /* read: bytes put in buf */
	bool complete;	      /* the stream is marked complete */
	/* private to output_store.c */
	struct {
		struct output_store *os;
		struct ostream *s;
		struct output_req *next;
		int op;
		int state;
		char *path;
		uint64_t offset;
		const void *data;
		void *buf;
		size_t len;
		unsigned flags;
		struct worker_job job;
	} p_;
};

/*
 * Called after every batch of a stream that stored or completed
 * something, before the chunks' completions, with the new durable length:
 * wake the stream's followers here.  Loop thread.
 */
typedef void output_hook_fn(void *arg, const char *site, uint64_t job_id,
			    const char *stream, uint64_t length, bool complete);

/*
 * `state_dir` is copied; <state_dir>/output is created if needed (start-
 * up, on the calling thread).  `pool` is borrowed and must outlive the
 * store's operations.  0, or -errno.
 */
int output_store_new(struct loop *l, struct worker_pool *pool,
		     const char *state_dir, struct output_store **out);
/*
 * Refuse new operations; the memory is freed once the ones in flight have
 * completed (now when none are).  A batch on the pool completes normally;
 * appends queued behind it complete with -ESHUTDOWN.  Shut the pool down
 * after this, or before: both orders deliver every completion.  NULL is
 * ignored.  Not from a completion callback or the hook.
 */
void output_store_free(struct output_store *os);
void output_store_set_hook(struct output_store *os, output_hook_fn *fn,
			   void *arg);

/* Site and stream names: 1..64 of [A-Za-z0-9_-], dots inside a site
 * name ("a.b"), never starting with a dot.  Any thread. */
bool output_name_valid(const char *name, bool allow_dots);
/*
 * "<state_dir>/output/<site>/<job_id>/<stream>" into buf.  0, -EINVAL
 * (bad name), -ENAMETOOLONG.  Any thread.
 */
int output_path(const struct output_store *os, const char *site,
		uint64_t job_id, const char *stream, char *buf, size_t len);

/*
 * Append `len` bytes of `data` (borrowed until the completion) that start
 * at byte `offset` of the stream; flags OUTPUT_EOF marks it complete
 * after.  Results: rv, next_offset, complete.
 */
int output_append(struct output_store *os, struct output_req *r,
		  const char *site, uint64_t job_id, const char *stream,
		  uint64_t offset, const void *data, size_t len,
		  unsigned flags);
/* output_append with no bytes and OUTPUT_EOF: `offset` is the sender's L. */
int output_mark_eof(struct output_store *os, struct output_req *r,
		    const char *site, uint64_t job_id, const char *stream,
		    uint64_t offset);
/*
 * Up to `len` bytes from `offset` into buf (borrowed until the
 * completion).  nread 0 at the end (check `complete` to know whether more
 * can come); -ERANGE past the end.  A stream never written reads as empty.
 * Results: rv, nread, length, complete.
 */
int output_read(struct output_store *os, struct output_req *r, const char *site,
		uint64_t job_id, const char *stream, uint64_t offset, void *buf,
		size_t len);
/* Results: length (0 for a stream never written) and complete. */
int output_length(struct output_store *os, struct output_req *r,
		  const char *site, uint64_t job_id, const char *stream);
/* The same query as output_length: read `complete` (and `length`). */
int output_is_complete(struct output_store *os, struct output_req *r,
		       const char *site, uint64_t job_id, const char *stream);

/* True between a successful submit and its completion. */
bool output_req_pending(const struct output_req *r);

struct output_stats {
	uint64_t appends;	/* append/EOF requests completed */
	uint64_t bytes_written; /* new bytes stored */
	uint64_t batches;	/* append batches (one fdatasync each) */
	uint64_t max_batch;	/* most requests in one batch */
	uint64_t fsyncs;	/* fdatasync + directory fsyncs */
	uint64_t gaps;		/* -ERANGE answers */
	uint64_t errors;	/* storage errors */
	uint64_t reads, bytes_read;
	unsigned streams_active; /* with a batch in flight or queued */
	unsigned in_flight;	 /* requests submitted, not completed */
};
void output_store_stats(const struct output_store *os, struct output_stats *s);
/* "output /var/lib/tiergated/output active=2 in_flight=5 appends=...". */
const char *output_store_debug_str(const struct output_store *os, char *buf,
				   size_t len);

#endif
