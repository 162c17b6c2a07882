/* api_admin.c: sites, health, metrics, introspection, usage (docs/api.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "config.h"
#include "credentials.h"
#include "jobs.h"
#include "log.h"
#include "loop.h"
#include "site.h"
#include "store.h"
#include "task.h"
#include "tier.h"

void api_sites(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const struct auth_identity *id = api_identity(req);
	json_t *sites = json_array(), *o, *tiers;
	size_t i, t;

	for (i = 0; i < gw->n_sites; i++) {
		struct gw_site *s = &gw->sites[i];

		o = json_object();
		tiers = json_array();
		for (t = 0; gw->cfg->tiers && t < gw->cfg->tiers->n_tiers; t++)
			json_array_append_new(
			    tiers, json_string(gw->cfg->tiers->tiers[t].name));
		json_object_set_new(o, "name", json_string(s->cfg->name));
		json_object_set_new(
		    o, "auth", json_string(gw_site_auth_name(s->cfg->auth)));
		json_object_set_new(
		    o, "queue_wait_s",
		    s->queue_waits
			? json_integer((json_int_t)(s->queue_wait_s + 0.5))
			: json_null());
		if (s->cfg->auth == GW_SITE_AUTH_JWT_USER) {
			/* the caller's own token: until when (never itself) */
			const struct gw_cred *c =
			    creds_find(gw->creds, s->cfg->name, id->user);

			json_object_set_new(o, "credential_expires_at",
					    c ? json_integer(c->expires_at)
					      : json_null());
		}
		json_object_set_new(
		    o, "state",
		    json_string(s->breaker == BREAKER_CLOSED
				    ? (s->last_ok ? "up" : "unknown")
				: s->breaker == BREAKER_OPEN ? "down"
							     : "degraded"));
		json_object_set_new(
		    o, "breaker", json_string(breaker_state_name(s->breaker)));
		json_object_set_new(o, "tiers", tiers);
		json_object_set_new(o, "last_ok",
				    s->last_ok ? json_integer(s->last_ok)
					       : json_null());
		json_object_set_new(o, "last_error",
				    s->last_error[0]
					? json_string(s->last_error)
					: json_null());
		json_array_append_new(sites, o);
	}
	o = json_object();
	json_object_set_new(o, "sites", sites);
	http_reply_json(req, 200, o);
}

void api_healthz(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	json_t *o = json_object();

	json_object_set_new(o, "status",
			    json_string(gw->draining ? "draining" : "ok"));
	http_reply_json(req, gw->draining ? 503 : 200, o);
}

struct buf {
	char *p;
	size_t len, cap;
};

static void bprintf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL,
			      b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			return;
	}
}

void api_metrics(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	struct loop_stats ls;
	struct store_stats ss;
	struct http_server_stats hs;
	struct buf b = {0};
	size_t i;
	int s;

	loop_stats(gw->loop, &ls);
	store_stats(gw->store, &ss);
	bprintf(&b, "# HELP tiergate_jobs Jobs known to the gateway by state.\n"
		    "# TYPE tiergate_jobs gauge\n");
	for (s = 0; s < STORE_JOB_STATE_COUNT_; s++)
		bprintf(&b, "tiergate_jobs{state=\"%s\"} %zu\n",
			store_job_state_name((enum store_job_state)s),
			jobs_count(gw->jobs, (enum store_job_state)s));
	bprintf(&b,
		"# TYPE tiergate_loop_lag_seconds gauge\n"
		"tiergate_loop_lag_seconds{quantile=\"0.5\"} %.6f\n"
		"tiergate_loop_lag_seconds{quantile=\"0.99\"} %.6f\n"
		"tiergate_loop_lag_seconds{quantile=\"1\"} %.6f\n"
		"# TYPE tiergate_loop_step_seconds gauge\n"
		"tiergate_loop_step_seconds{quantile=\"0.99\"} %.6f\n"
		"tiergate_loop_step_seconds{quantile=\"1\"} %.6f\n"
		"# TYPE tiergate_loop_turns_total counter\n"
		"tiergate_loop_turns_total %llu\n"
		"# TYPE tiergate_loop_slow_steps_total counter\n"
		"tiergate_loop_slow_steps_total %llu\n"
		"# TYPE tiergate_tasks gauge\n"
		"tiergate_tasks %zu\n",
		ls.lag.p50_us / 1e6, ls.lag.p99_us / 1e6, ls.lag.max_us / 1e6,
		ls.callback.p99_us / 1e6, ls.callback.max_us / 1e6,
		(unsigned long long)ls.turns, (unsigned long long)ls.slow_steps,
		task_count_live(gw->loop));
	bprintf(&b,
		"# TYPE tiergate_jobs_submitted_total counter\n"
		"tiergate_jobs_submitted_total %llu\n"
		"# TYPE tiergate_jobs_adopted_total counter\n"
		"tiergate_jobs_adopted_total %llu\n"
		"# TYPE tiergate_events_total counter\n"
		"tiergate_events_total %llu\n"
		"# TYPE tiergate_events_duplicate_total counter\n"
		"tiergate_events_duplicate_total %llu\n"
		"# TYPE tiergate_output_bytes_total counter\n"
		"tiergate_output_bytes_total %llu\n",
		(unsigned long long)gw->m.jobs_submitted,
		(unsigned long long)gw->m.jobs_adopted,
		(unsigned long long)gw->m.events_received,
		(unsigned long long)gw->m.events_duplicate,
		(unsigned long long)gw->m.output_bytes);
	bprintf(&b, "# TYPE tiergate_site_breaker gauge\n"
		    "# TYPE tiergate_site_upstream_calls_total counter\n"
		    "# TYPE tiergate_site_polls_total counter\n");
	for (i = 0; i < gw->n_sites; i++) {
		struct gw_site *st = &gw->sites[i];

		bprintf(&b,
			"tiergate_site_breaker{site=\"%s\",state=\"%s\"} 1\n"
			"tiergate_site_upstream_calls_total{site=\"%s\"} %llu\n"
			"tiergate_site_polls_total{site=\"%s\"} %llu\n",
			st->cfg->name, breaker_state_name(st->breaker),
			st->cfg->name, (unsigned long long)st->upstream_calls,
			st->cfg->name, (unsigned long long)st->polls);
	}
	bprintf(&b,
		"# HELP tiergate_store_commit_seconds SQLite commit (fsync) "
		"latency: p50/p99 of the last 1024, max since start.\n"
		"# TYPE tiergate_store_commit_seconds gauge\n"
		"tiergate_store_commit_seconds{quantile=\"0.5\"} %.6f\n"
		"tiergate_store_commit_seconds{quantile=\"0.99\"} %.6f\n"
		"tiergate_store_commit_seconds{quantile=\"1\"} %.6f\n"
		"# TYPE tiergate_store_commits_total counter\n"
		"tiergate_store_commits_total %llu\n"
		"# TYPE tiergate_store_rows_committed_total counter\n"
		"tiergate_store_rows_committed_total %llu\n"
		"# TYPE tiergate_store_failed_transactions_total counter\n"
		"tiergate_store_failed_transactions_total %llu\n"
		"# TYPE tiergate_store_queued gauge\n"
		"tiergate_store_queued %u\n",
		ss.commit_us_p50 / 1e6, ss.commit_us_p99 / 1e6,
		ss.commit_us_max / 1e6, (unsigned long long)ss.commits,
		(unsigned long long)ss.rows_committed,
		(unsigned long long)ss.failed_txns, ss.queued);
	http_server_stats(gw->server, &hs);
	bprintf(&b,
		"# TYPE tiergate_http_connections gauge\n"
		"tiergate_http_connections %u\n"
		"# TYPE tiergate_http_streams gauge\n"
		"tiergate_http_streams %u\n"
		"# TYPE tiergate_http_rejected_total counter\n"
		"tiergate_http_rejected_total %llu\n"
		"# HELP tiergate_http_held Requests read and waiting for a "
		"later loop turn (requests_per_turn).\n"
		"# TYPE tiergate_http_held gauge\n"
		"tiergate_http_held %u\n"
		"# TYPE tiergate_http_held_total counter\n"
		"tiergate_http_held_total %llu\n"
		"# HELP tiergate_http_requests_total Ended requests by status "
		"(0: none sent, the client left first).\n"
		"# TYPE tiergate_http_requests_total counter\n",
		hs.connections_active, hs.streams_active,
		(unsigned long long)hs.rejected_limit, hs.held,
		(unsigned long long)hs.held_total);
	for (i = 0; i < HTTP_STATUS_MAX; i++)
		if (hs.by_status[i])
			bprintf(
			    &b,
			    "tiergate_http_requests_total{code=\"%zu\"} %llu\n",
			    i, (unsigned long long)hs.by_status[i]);
	if (!b.p) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	http_reply_text(req, 200, "text/plain; version=0.0.4", b.p);
	free(b.p);
}

static int task_row(struct task *t, const struct task_info *in, void *arg)
{
	json_t *o = json_object();

	(void)t;
	json_object_set_new(o, "kind", json_string(in->kind));
	json_object_set_new(o, "id", json_integer((json_int_t)in->id));
	json_object_set_new(o, "state", json_string(in->state));
	json_object_set_new(o, "waiting_on", json_string(in->waiting_on));
	json_object_set_new(o, "waited_ms",
			    json_integer((json_int_t)in->waited_ms));
	json_object_set_new(o, "idle", json_boolean(in->idle));
	json_object_set_new(o, "age_ms", json_integer((json_int_t)in->age_ms));
	json_object_set_new(o, "steps", json_integer((json_int_t)in->n_steps));
	json_object_set_new(o, "debug", json_string(in->debug));
	json_array_append_new(arg, o);
	return 0;
}

void api_debug_tasks(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	json_t *o = json_object(), *tasks = json_array(), *loop = json_object();
	struct loop_stats ls;
	char buf[512];

	task_foreach(gw->loop, task_row, tasks);
	loop_stats(gw->loop, &ls);
	json_object_set_new(
	    loop, "debug",
	    json_string(loop_debug_str(gw->loop, buf, sizeof(buf))));
	json_object_set_new(loop, "lag_p99_us",
			    json_integer((json_int_t)ls.lag.p99_us));
	json_object_set_new(loop, "lag_max_us",
			    json_integer((json_int_t)ls.lag.max_us));
	json_object_set_new(o, "loop", loop);
	json_object_set_new(o, "tasks", tasks);
	json_object_set_new(
	    o, "stalled",
	    json_integer((json_int_t)task_report_stalled(
		gw->loop, gw->cfg->stall_threshold_s * 1000ull)));
	http_reply_json(req, 200, o);
}

/* ---- usage ----------------------------------------------------------- */

static void usage_done(struct store_req *r)
{
	struct http_req *req = r->arg;
	json_t *o, *rows;
	size_t i;

	if (!http_req_destroyed(req)) {
		if (r->rv) {
			http_reply_error(req, 503, "storage_unavailable", "%s",
					 store_strerror(r->rv));
		} else {
			rows = json_array();
			for (i = 0; i < r->n_usage; i++) {
				o = json_object();
				json_object_set_new(
				    o, "user", json_string(r->usage[i].user));
				json_object_set_new(
				    o, "tier",
				    json_string(r->usage[i].tier
						    ? r->usage[i].tier
						    : ""));
				json_object_set_new(
				    o, "jobs", json_integer(r->usage[i].jobs));
				json_object_set_new(
				    o, "cpu_seconds",
				    json_real(r->usage[i].cpu_seconds));
				json_object_set_new(
				    o, "charge", json_real(r->usage[i].charge));
				json_array_append_new(rows, o);
			}
			o = json_object();
			json_object_set_new(o, "usage", rows);
			http_reply_json(req, 200, o);
		}
	}
	store_req_reset(r);
	free(r);
	http_req_unref(req);
}

void api_usage(struct http_req *req, void *arg)
{
	struct gw *gw = arg;
	const struct auth_identity *id = api_identity(req);
	const char *user = http_req_query(req, "user");
	const char *since = http_req_query(req, "since");
	struct store_req *r;
	long long t = 0;
	char *end;
	int rv;

	if (!user && !id->admin)
		user = id->user;
	if (user && !api_may_see(id, user)) {
		http_reply_error(req, 403, "forbidden",
				 "only admins see other users' usage");
		return;
	}
	if (since) {
		t = strtoll(since, &end, 10);
		if (*end || t < 0) {
			http_reply_error(req, 400, "bad_request",
					 "since is a unix time in seconds");
			return;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	r->cb = usage_done;
	r->arg = req;
	http_req_ref(req);
	http_req_suspend(req);
	rv = store_usage(gw->store, r, user, t);
	if (rv) {
		http_reply_error(req, 503, "storage_unavailable", "%s",
				 store_strerror(rv));
		free(r);
		http_req_unref(req);
	}
}
