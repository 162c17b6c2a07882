/*
 * api_output.c: GET /v1/jobs/{id}/output, the job's output as Server-Sent
 * Events while it is produced.  One follower task per client reads the
 * output store from its offset and writes:
 *
 *   id: <offset after this chunk>
 *   event: output
 *   data: {"stream":"stdout","offset":N,"data_b64":"..."}
 *
 * then `event: end` with the job's final state once the job is final and
 * the stream complete.  `?offset=N` or `Last-Event-ID: N` resumes without
 * gaps or repeats.  A comment line every 15 s tells dead clients apart; a
 * client that cannot keep up (per-stream buffer cap) is dropped without
 * slowing the others.
 */
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

#define CHUNK 49152 /* base64 of it stays under 64 KiB */
#define IDLE_POLL_MS 200
#define HEARTBEAT_MS 15000
#define FINAL_GRACE_MS 15000 /* after the job ends, for its last bytes */

#define FOLLOW_STATES(X) X(READING) X(WAITING)
enum follow_state {
	FOLLOW_STATES(TASK_STATE_ENUM)
};
static const char *const follow_state_names[] = {
	FOLLOW_STATES(TASK_STATE_NAME)};

struct follower {
	struct task task;
	struct gw *gw;
	struct http_req *req;
	struct http_stream *st;
	char job_id[32];
	char stream_name[16]; /* stdout or stderr, as the client sees it */
	char stream[96];      /* the stored stream's key */
	uint64_t offset;
	uint64_t last_write_ms;
	uint64_t final_since_ms; /* when the job was first seen final */
	struct output_req oreq;
	unsigned char buf[CHUNK];
	char enc[CHUNK / 3 * 4 + 8];
};

static int send_event(struct follower *f, const char *text)
{
	int rv = http_stream_write(f->st, text, strlen(text));

	if (rv == -ENOBUFS) {
		log_warn("follower of %s: client too slow, dropped", f->job_id);
		http_stream_abort(f->st);
	}
	f->last_write_ms = loop_clock_ms();
	return rv;
}

static int send_chunk(struct follower *f, size_t n)
{
	char head[160];
	int rv;

	EVP_EncodeBlock((unsigned char *)f->enc, f->buf, (int)n);
	snprintf(head, sizeof(head),
		 "id: %llu\nevent: output\ndata: {\"stream\":\"%s\",\"offset\":%llu,\"data_b64\":\"",
		 (unsigned long long)(f->offset + n), f->stream_name,
		 (unsigned long long)f->offset);
	rv = send_event(f, head);
	if (!rv)
		rv = send_event(f, f->enc);
	if (!rv)
		rv = send_event(f, "\"}\n\n");
	return rv;
}

static enum task_step follow_step(struct task *t, unsigned wake)
{
	struct follower *f = (struct follower *)t;
	struct gw_job *j;
	char end[128];

	if ((wake & TASK_WAKE_CANCEL) || http_req_destroyed(f->req))
		return output_req_pending(&f->oreq) ? TASK_WAIT : TASK_DONE;
	if (output_req_pending(&f->oreq))
		return TASK_WAIT;
	j = jobs_find(f->gw->jobs, f->job_id);
	switch ((enum follow_state)t->state) {
	case READING:
		if (f->oreq.rv == 0 && f->oreq.nread > 0) {
			if (send_chunk(f, f->oreq.nread))
				return TASK_DONE;
			f->offset += f->oreq.nread;
			f->oreq.nread = 0;
			break; /* read on */
		}
		if (j && job_final(j) && !f->final_since_ms)
			f->final_since_ms = loop_clock_ms();
		/* complete, or the node never said so (relay gone): end */
		if (j && job_final(j) &&
		    (f->oreq.complete || j->rec.slurm_job_id == STORE_NULL ||
		     loop_clock_ms() - f->final_since_ms > FINAL_GRACE_MS)) {
			snprintf(end, sizeof(end),
				 "event: end\ndata: {\"state\":\"%s\"}\n\n",
				 store_job_state_name(j->rec.state));
			send_event(f, end);
			http_stream_close(f->st);
			return TASK_DONE;
		}
		if (loop_clock_ms() - f->last_write_ms > HEARTBEAT_MS &&
		    send_event(f, ": keep-alive\n\n"))
			return TASK_DONE;
		task_set_state(t, WAITING);
		task_wait_on(t, "new output");
		task_sleep(t, IDLE_POLL_MS);
		return TASK_WAIT;
	case WAITING:
		if (!(wake & TASK_WAKE_TIMER))
			return TASK_WAIT;
		break;
	}
	task_set_state(t, READING);
	f->oreq.nread = 0;
	f->oreq.rv = 0;
	f->oreq.complete = false;
	if (!j || j->rec.slurm_job_id == STORE_NULL) {
		/* not at the site yet: nothing to read; look again soon */
		task_set_state(t, WAITING);
		task_sleep(t, IDLE_POLL_MS);
		return TASK_WAIT;
	}
	f->oreq.task = t;
	task_wait_on(t, "output store");
	if (output_read(f->gw->output, &f->oreq, j->rec.site,
			(uint64_t)j->rec.slurm_job_id, f->stream, f->offset,
			f->buf, sizeof(f->buf))) {
		http_stream_abort(f->st);
		return TASK_DONE;
	}
	return TASK_WAIT;
}

static void follow_debug_str(const struct task *t, char *buf, size_t len)
{
	const struct follower *f = (const struct follower *)t;

	snprintf(buf, len, "follower job=%s stream=%s offset=%llu req=%s",
		 f->job_id, f->stream, (unsigned long long)f->offset,
		 http_req_id(f->req));
}

static void follow_destroy(struct task *t)
{
	struct follower *f = (struct follower *)t;

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

static void client_gone(struct http_req *req, enum http_req_end how,
			void *arg)
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
	f = calloc(1, sizeof(*f));
	if (!f) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (from) {
		f->offset = strtoull(from, &end, 10);
		if (*end) {
			free(f);
			http_reply_error(req, 400, "bad_request",
					 "offset (or Last-Event-ID) must be a number");
			return;
		}
	}
	f->gw = gw;
	f->req = req;
	snprintf(f->job_id, sizeof(f->job_id), "%s", j->rec.id);
	snprintf(f->stream_name, sizeof(f->stream_name), "%s", stream);
	output_stream_key(j->rec.id, stream, f->stream, sizeof(f->stream));
	f->st = http_stream_start(req, "text/event-stream");
	if (!f->st) {
		free(f);
		return;
	}
	http_req_ref(req);
	f->last_write_ms = loop_clock_ms();
	if (task_start(gw->loop, &f->task, &follow_ops)) {
		http_stream_abort(f->st);
		http_req_unref(req);
		free(f);
		return;
	}
	f->task.state = WAITING;
	http_req_on_done(req, client_gone, f);
	task_wake(&f->task, TASK_WAKE_TIMER);
}
