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

/* One node report in flight: auth, then the store. */
struct node_op {
	struct gw *gw;
	struct http_req *req;
	struct auth_munge_req *munge;
	json_t *event; /* events */
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

static void node_op_free(struct node_op *op)
{
	auth_munge_release(op->munge);
	json_decref(op->event);
	store_job_clear(&op->upd);
	free(op->ev.id);
	free(op->ev.site);
	free(op->ev.gw_job);
	free(op->ev.kind);
	free(op->ev.body);
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
static bool not_ready(struct node_op *op, const struct gw_job *j)
{
	struct gw_site *s = gw_site_find(op->gw, op->site);
	char msg[160];

	/* bounded: a submit stuck for long (a site down for hours, a user's
	 * token gone) must not hold every unknown job's reports back */
	if (j || !s || !s->awaiting_id ||
	    loop_clock_ms() - s->awaiting_since_ms > NOT_READY_MAX_MS)
		return false;
	snprintf(msg, sizeof(msg),
		 "Slurm job %llu at %s is not known yet (%u submit%s "
		 "awaiting the site's id): retry",
		 (unsigned long long)op->job_id, op->site, s->awaiting_id,
		 s->awaiting_id == 1 ? "" : "s");
	dbg("node report: %s", msg);
	finish_error(op, 503, "job_not_ready", msg);
	return true;
}

/* ---- events ---------------------------------------------------------- */

static void event_stored(struct store_req *r)
{
	struct node_op *op = r->arg;
	struct gw_job *j;
	json_t *o;

	if (r->rv) {
		finish_error(op, store_error_unavailable(r->rv) ? 503 : 500,
			     store_error_unavailable(r->rv)
				 ? "storage_unavailable"
				 : "internal",
			     store_strerror(r->rv));
		return;
	}
	op->gw->m.events_received++;
	if (r->duplicate) {
		op->gw->m.events_duplicate++;
	} else if (op->fields &&
		   (j = jobs_find_slurm(op->gw->jobs, op->site,
					(uint32_t)op->job_id)) &&
		   !strcmp(j->rec.id, op->upd.id)) {
		job_apply_update(j, &op->upd, op->fields);
	}
	o = json_object();
	json_object_set_new(o, "duplicate", json_boolean(r->duplicate));
	if (!http_req_destroyed(op->req))
		http_reply_json(op->req, r->duplicate ? 200 : 201, o);
	else
		json_decref(o);
	store_req_reset(r);
	node_op_free(op);
}

static void event_authed(struct node_op *op)
{
	struct gw_job *j =
	    jobs_find_slurm(op->gw->jobs, op->site, (uint32_t)op->job_id);
	const char *gw_job =
	    json_string_value(json_object_get(op->event, "gw_job"));
	int rv;

	if (not_ready(op, j))
		return;
	op->ev.id = strdup(json_string_value(json_object_get(op->event, "id")));
	op->ev.site = strdup(op->site);
	op->ev.slurm_job_id = (int64_t)op->job_id;
	op->ev.gw_job = gw_job ? strdup(gw_job) : j ? strdup(j->rec.id) : NULL;
	op->ev.kind =
	    strdup(json_string_value(json_object_get(op->event, "kind")));
	op->ev.body = json_dumps(op->event, JSON_COMPACT | JSON_SORT_KEYS);
	if (j) /* what it changes in the job, committed with it */
		op->fields = job_event_update(j, op->event, &op->upd);
	op->sreq.cb = event_stored;
	op->sreq.arg = op;
	rv = store_event_insert(op->gw->store, &op->sreq, &op->ev,
				op->fields ? &op->upd : NULL, op->fields);
	if (rv)
		finish_error(op, 503, "storage_unavailable",
			     store_strerror(rv));
}

void api_node_event(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	struct node_op *op;
	json_t *ev;
	const char *site, *id, *kind;
	json_int_t job;

	if (http_req_body_json(req, &ev))
		return;
	site = json_string_value(json_object_get(ev, "site"));
	id = json_string_value(json_object_get(ev, "id"));
	kind = json_string_value(json_object_get(ev, "kind"));
	job = json_integer_value(json_object_get(ev, "job_id"));
	if (!site || !id || !kind || job <= 0 || strlen(id) > 256) {
		json_decref(ev);
		http_reply_error(req, 400, "bad_request",
				 "an event needs id, kind, site and job_id");
		return;
	}
	if (!gw_site_find(gw, site)) {
		json_decref(ev);
		http_reply_error(req, 404, "not_found", "no site '%.64s'",
				 site);
		return;
	}
	op = node_op_new(req, gw);
	if (!op) {
		json_decref(ev);
		return;
	}
	op->event = ev;
	snprintf(op->site, sizeof(op->site), "%s", site);
	op->job_id = (uint64_t)job;
	op->authed = event_authed;
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
