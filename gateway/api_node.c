/*
 * api_node.c: what the plugin and its relay send (docs/protocol.md):
 * events and output chunks, authenticated by a MUNGE credential of the
 * site's realm (decoded on a worker) or by the job's ticket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "jobs.h"
#include "log.h"
#include "loop.h"
#include "output_store.h"
#include "store.h"
#include "ticket.h"

/* How long after the latest unresolved submit began unknown Slurm ids
 * at its site are asked to wait (503 job_not_ready). */
#define NOT_READY_MAX_MS (10 * 60 * 1000u)

/* Events in one POST at most (docs/protocol.md, "Batches"). */
#define EVENTS_BATCH_MAX 256

/* One node report in flight: auth, then the store. */
struct node_op {
	struct gw *gw;
	struct http_req *req;
	struct auth_munge_req *munge;
	json_t *events;	 /* events, in order (one event: an array of one) */
	size_t next;	 /* the event being stored */
	json_t *results; /* a batch's answers; NULL: one event, answered
			  * with its own status as before batches */
	bool by_ticket;	 /* authenticated by the ticket of ticket_job */
	uint64_t ticket_job;
	char site[64];
	uint64_t job_id;
	char stream[96]; /* output: the stored stream's key */
	uint64_t offset;
	bool eof;
	struct store_req sreq;
	struct output_req oreq;
	struct store_job upd; /* the job's fields the event changes */
	uint64_t fields;
	struct store_event ev;
	void (*authed)(struct node_op *op);
};

/* Forget the stored event (a batch goes on to the next). */
static void event_clear(struct node_op *op)
{
	store_job_clear(&op->upd);
	op->fields = 0;
	free(op->ev.id);
	free(op->ev.site);
	free(op->ev.gw_job);
	free(op->ev.kind);
	free(op->ev.body);
	memset(&op->ev, 0, sizeof(op->ev));
}

static void node_op_free(struct node_op *op)
{
	auth_munge_release(op->munge);
	json_decref(op->events);
	json_decref(op->results);
	event_clear(op);
	if (op->req)
		http_req_unref(op->req);
	free(op);
}

static void finish_error(struct node_op *op, unsigned status, const char *code,
			 const char *msg)
{
	if (!http_req_destroyed(op->req))
		http_reply_error(op->req, status, code, "%s", msg);
	node_op_free(op);
}

static bool not_ready(struct node_op *op, const struct gw_job *j);
static bool not_ready_msg(struct node_op *op, const struct gw_job *j, char *msg,
			  size_t len);

static void munge_checked(struct auth_munge_req *r, void *arg)
{
	struct node_op *op = arg;
	struct auth_identity id;
	char err[256];
	const char *code;
	int rv, status;

	rv = auth_munge_result(r, &id, err, sizeof(err));
	if (rv) {
		auth_http_error(rv, &status, &code);
		finish_error(op, (unsigned)status, code, err);
		return;
	}
	op->authed(op);
}

/*
 * Authenticate a node report for (site, job): MUNGE of the site's realm
 * (async), or the ticket of the gateway job that Slurm job belongs to.
 * On success op->authed(op) runs (now or later); on failure the request
 * is answered and op freed.
 */
static void node_auth(struct node_op *op)
{
	const char *hdr = http_req_header(op->req, "Authorization");
	const char *cred;
	size_t body_len, cred_len;
	const void *body = http_req_body(op->req, &body_len);
	struct gw_job *j;
	char err[256], tok[8300];
	struct auth_identity id;
	const char *code;
	int rv = -EACCES, status;

	switch (hdr ? auth_parse_header(hdr, &cred, &cred_len)
		    : AUTH_SCHEME_NONE) {
	case AUTH_SCHEME_MUNGE:
		rv = auth_node_munge_start(op->gw->auth, op->site, cred,
					   http_req_path(op->req), body,
					   body_len, NULL, munge_checked, op,
					   &op->munge, err, sizeof(err));
		break;
	case AUTH_SCHEME_BEARER:
		j = jobs_find_slurm(op->gw->jobs, op->site,
				    (uint32_t)op->job_id);
		if (not_ready(op, j))
			return;
		if (!j) {
			finish_error(op, 404, "not_found",
				     "no gateway job for that Slurm job");
			return;
		}
		snprintf(tok, sizeof(tok), "%.*s", (int)cred_len, cred);
		rv = auth_ticket(op->gw->auth, tok, time(NULL), j->rec.id,
				 op->site, NULL, &id, err, sizeof(err));
		explicit_bzero(tok, sizeof(tok));
		if (rv == 0) {
			op->by_ticket = true;
			op->ticket_job = op->job_id;
			op->authed(op);
			return;
		}
		break;
	case AUTH_SCHEME_NONE:
	case AUTH_SCHEME_OTHER:
		snprintf(
		    err, sizeof(err),
		    "node reports need a MUNGE credential or the job's ticket");
		rv = -EACCES;
		break;
	}
	if (rv == 0)
		return; /* munge_checked follows */
	auth_http_error(rv, &status, &code);
	finish_error(op, (unsigned)status, code, err);
}

static struct node_op *node_op_new(struct http_req *req, struct gw *gw)
{
	struct node_op *op = calloc(1, sizeof(*op));

	if (!op) {
		http_reply_error(req, 500, "internal", "out of memory");
		return NULL;
	}
	op->gw = gw;
	op->req = req;
	http_req_ref(req);
	http_req_suspend(req);
	return op;
}

/*
 * A Slurm id we cannot place while a submit to its site has not told us
 * its id yet: it may be that job.  Answer 503 (the node keeps the report
 * in its spool and retries) instead of filing it under the Slurm id
 * alone, where the gateway job would never see it.  True when answered.
 */
static bool not_ready_msg(struct node_op *op, const struct gw_job *j, char *msg,
			  size_t len)
{
	struct gw_site *s = gw_site_find(op->gw, op->site);

	/* bounded: a submit stuck for long (a site down for hours, a user's
	 * token gone) must not hold every unknown job's reports back */
	if (j || !s || !s->awaiting_id ||
	    loop_clock_ms() - s->awaiting_since_ms > NOT_READY_MAX_MS)
		return false;
	snprintf(msg, len,
		 "Slurm job %llu at %s is not known yet (%u submit%s "
		 "awaiting the site's id): retry",
		 (unsigned long long)op->job_id, op->site, s->awaiting_id,
		 s->awaiting_id == 1 ? "" : "s");
	dbg("node report: %s", msg);
	return true;
}

static bool not_ready(struct node_op *op, const struct gw_job *j)
{
	char msg[160];

	if (!not_ready_msg(op, j, msg, sizeof(msg)))
		return false;
	finish_error(op, 503, "job_not_ready", msg);
	return true;
}

/* ---- events ----------------------------------------------------------
 *
 * A POST carries one event (answered with that event's own status) or an
 * array of them, a batch: stored one after the other, in order, answered
 * 200 with a result per event handled.  The first event that must be
 * retried (503) ends the batch; the node resends it and the ones after.
 */

static void event_next(struct node_op *op);

static void events_answered(struct node_op *op)
{
	if (!http_req_destroyed(op->req))
		http_reply_json(op->req, 200,
				json_pack("{sO}", "results", op->results));
	node_op_free(op);
}

/* The current event's result in a batch.  */
static void event_result(struct node_op *op, unsigned status, const char *code,
			 const char *msg, bool duplicate)
{
	const char *id = json_string_value(
	    json_object_get(json_array_get(op->events, op->next), "id"));
	json_t *r =
	    json_pack("{sisb}", "status", (int)status, "duplicate", duplicate);

	if (id)
		json_object_set_new(r, "id", json_string(id));
	if (code)
		json_object_set_new(
		    r, "error",
		    json_pack("{ssss}", "code", code, "message", msg));
	json_array_append_new(op->results, r);
}

/* The current event cannot be stored now: the node retries it. */
static void event_failed(struct node_op *op, unsigned status, const char *code,
			 const char *msg)
{
	if (!op->results) {
		finish_error(op, status, code, msg);
		return;
	}
	event_result(op, status, code, msg, false);
	events_answered(op);
}

static void event_stored(struct store_req *r)
{
	struct node_op *op = r->arg;
	struct gw_job *j;
	bool duplicate = r->duplicate;
	json_t *o;

	if (r->rv) {
		bool unavailable = store_error_unavailable(r->rv);
		const char *why = store_strerror(r->rv);

		store_req_reset(r);
		event_failed(op, unavailable ? 503 : 500,
			     unavailable ? "storage_unavailable" : "internal",
			     why);
		return;
	}
	op->gw->m.events_received++;
	if (duplicate) {
		op->gw->m.events_duplicate++;
	} else if (op->fields &&
		   (j = jobs_find_slurm(op->gw->jobs, op->site,
					(uint32_t)op->job_id)) &&
		   !strcmp(j->rec.id, op->upd.id)) {
		job_apply_update(j, &op->upd, op->fields);
	}
	store_req_reset(r);
	if (op->results) {
		event_result(op, duplicate ? 200 : 201, NULL, NULL, duplicate);
		if (http_req_destroyed(op->req)) {
			node_op_free(op); /* the node resends the rest */
			return;
		}
		op->next++;
		event_next(op);
		return;
	}
	o = json_object();
	json_object_set_new(o, "duplicate", json_boolean(duplicate));
	if (!http_req_destroyed(op->req))
		http_reply_json(op->req, duplicate ? 200 : 201, o);
	else
		json_decref(o);
	node_op_free(op);
}

/* What is wrong with an event of op's request, or NULL. */
static const char *event_invalid(const struct node_op *op, const json_t *ev)
{
	const char *id = json_string_value(json_object_get(ev, "id"));
	const char *site = json_string_value(json_object_get(ev, "site"));
	json_int_t job = json_integer_value(json_object_get(ev, "job_id"));

	if (!json_is_object(ev) || !id || !site || job <= 0 ||
	    !json_string_value(json_object_get(ev, "kind")) || strlen(id) > 256)
		return "an event needs id, kind, site and job_id";
	if (strcmp(site, op->site))
		return "a batch holds the events of one site";
	if (op->by_ticket && (uint64_t)job != op->ticket_job)
		return "a ticket covers the events of its own job only";
	return NULL;
}

/* Store the current event, or answer when none is left. */
static void event_next(struct node_op *op)
{
	const char *gw_job, *why;
	struct gw_job *j;
	json_t *ev;
	char msg[160];
	int rv;

	for (; (ev = json_array_get(op->events, op->next)); op->next++) {
		why = event_invalid(op, ev);
		if (!why)
			break;
		/* never stored, whatever the node does: its dead/ keeps it */
		event_result(op, 400, "bad_request", why, false);
	}
	if (!ev) {
		events_answered(op);
		return;
	}
	event_clear(op);
	op->job_id =
	    (uint64_t)json_integer_value(json_object_get(ev, "job_id"));
	j = jobs_find_slurm(op->gw->jobs, op->site, (uint32_t)op->job_id);
	if (not_ready_msg(op, j, msg, sizeof(msg))) {
		event_failed(op, 503, "job_not_ready", msg);
		return;
	}
	gw_job = json_string_value(json_object_get(ev, "gw_job"));
	op->ev.id = strdup(json_string_value(json_object_get(ev, "id")));
	op->ev.site = strdup(op->site);
	op->ev.slurm_job_id = (int64_t)op->job_id;
	op->ev.gw_job = gw_job ? strdup(gw_job) : j ? strdup(j->rec.id) : NULL;
	op->ev.kind = strdup(json_string_value(json_object_get(ev, "kind")));
	op->ev.body = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
	if (j) /* what it changes in the job, committed with it */
		op->fields = job_event_update(j, ev, &op->upd);
	op->sreq.cb = event_stored;
	op->sreq.arg = op;
	rv = store_event_insert(op->gw->store, &op->sreq, &op->ev,
				op->fields ? &op->upd : NULL, op->fields);
	if (rv)
		event_failed(op, 503, "storage_unavailable",
			     store_strerror(rv));
}

void api_node_event(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	struct node_op *op;
	json_t *body, *first;
	const char *site, *why;
	size_t n;

	if (http_req_body_json(req, &body))
		return;
	n = json_is_array(body) ? json_array_size(body) : 1;
	first = json_is_array(body) ? json_array_get(body, 0) : body;
	site = json_string_value(json_object_get(first, "site"));
	if (n == 0 || n > EVENTS_BATCH_MAX) {
		json_decref(body);
		http_reply_error(req, 400, "bad_request",
				 "a batch holds 1 to %d events",
				 EVENTS_BATCH_MAX);
		return;
	}
	if (!site) {
		json_decref(body);
		http_reply_error(req, 400, "bad_request",
				 "an event needs id, kind, site and job_id");
		return;
	}
	if (!gw_site_find(gw, site)) {
		http_reply_error(req, 404, "not_found", "no site '%.64s'",
				 site);
		json_decref(body);
		return;
	}
	op = node_op_new(req, gw);
	if (!op) {
		json_decref(body);
		return;
	}
	snprintf(op->site, sizeof(op->site), "%s", site);
	op->job_id =
	    (uint64_t)json_integer_value(json_object_get(first, "job_id"));
	if (json_is_array(body)) {
		op->events = body;
		op->results = json_array();
	} else {
		op->events = json_pack("[o]", body);
		why = event_invalid(op, body);
		if (why) {
			finish_error(op, 400, "bad_request", why);
			return;
		}
	}
	op->authed = event_next; /* from the first event on */
	node_auth(op);
}

/* ---- output chunks ----------------------------------------------------- */

static void chunk_stored(struct output_req *r)
{
	struct node_op *op = r->arg;
	json_t *o;

	if (r->rv && r->rv != -ERANGE && r->rv != -EROFS) {
		finish_error(op, 503, "storage_unavailable", strerror(-r->rv));
		return;
	}
	o = json_object();
	json_object_set_new(o, "next_offset",
			    json_integer((json_int_t)r->next_offset));
	json_object_set_new(o, "complete", json_boolean(r->complete));
	if (!r->rv)
		op->gw->m.output_bytes += r->next_offset > op->offset
					      ? r->next_offset - op->offset
					      : 0;
	if (!http_req_destroyed(op->req))
		/* a gap, or bytes after the end: the relay goes by our length
		 */
		http_reply_json(op->req, r->rv ? 409 : 200, o);
	else
		json_decref(o);
	node_op_free(op);
}

static void chunk_authed(struct node_op *op)
{
	size_t len;
	const void *data = http_req_body(op->req, &len);
	struct gw_job *j =
	    jobs_find_slurm(op->gw->jobs, op->site, (uint32_t)op->job_id);
	char key[96];
	int rv;

	if (not_ready(op, j))
		return;
	/* a gateway job's output is its own, even if the site reuses the
	 * Slurm id: "<gateway id>-<stream>" (output_stream_key) */
	output_stream_key(j ? j->rec.id : NULL, op->stream, key, sizeof(key));
	snprintf(op->stream, sizeof(op->stream), "%s", key);

	op->oreq.cb = chunk_stored;
	op->oreq.arg = op;
	/* the body stays valid: op holds a reference on the request */
	rv = output_append(op->gw->output, &op->oreq, op->site, op->job_id,
			   op->stream, op->offset, data, len,
			   op->eof ? OUTPUT_EOF : 0);
	if (rv == -EINVAL)
		finish_error(op, 400, "bad_request", strerror(-rv));
	else if (rv) /* shutting down, out of memory: the relay retries */
		finish_error(op, 503, "storage_unavailable", strerror(-rv));
}

void api_node_output(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const char *site = http_req_param(req, "site");
	const char *job = http_req_param(req, "job");
	const char *stream = http_req_param(req, "stream");
	const char *offset = http_req_query(req, "offset");
	const char *eof = http_req_query(req, "eof");
	struct node_op *op;
	char *end;
	unsigned long long jid, off;

	jid = job ? strtoull(job, &end, 10) : 0;
	if (!job || *end || !jid || !offset) {
		http_reply_error(
		    req, 400, "bad_request",
		    "POST /v1/output/{site}/{job_id}/{stream}?offset=N");
		return;
	}
	off = strtoull(offset, &end, 10);
	if (*end || (strcmp(stream, "stdout") && strcmp(stream, "stderr"))) {
		http_reply_error(
		    req, 400, "bad_request",
		    "offset must be a number, stream stdout or stderr");
		return;
	}
	if (!gw_site_find(gw, site)) {
		http_reply_error(req, 404, "not_found", "no site '%.64s'",
				 site);
		return;
	}
	op = node_op_new(req, gw);
	if (!op)
		return;
	snprintf(op->site, sizeof(op->site), "%s", site);
	snprintf(op->stream, sizeof(op->stream), "%s", stream);
	op->job_id = jid;
	op->offset = off;
	op->eof = eof && !strcmp(eof, "1");
	op->authed = chunk_authed;
	node_auth(op);
}
