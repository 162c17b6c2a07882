/*
 * api.h: the HTTP API v1 (docs/api.md) on the http_server: routes, the
 * authentication guard, and the handlers, one file per concern:
 *   api.c        routes, guard, identity, helpers
 *   api_jobs.c   POST/GET/DELETE /v1/jobs...
 *   api_output.c GET /v1/jobs/{id}/output (SSE followers)
 *   api_node.c   POST /v1/events, POST /v1/output/... (the plugin's side)
 *   api_admin.c  /v1/sites, /healthz, /metrics, /debug/tasks, /v1/usage
 *   api_credential.c  /v1/sites/{site}/credential (jwt-user sites)
 */
#ifndef TIERGATE_API_H
#define TIERGATE_API_H

#include <jansson.h>
#include <stdbool.h>

#include "auth.h"
#include "gw.h"
#include "http_server.h"

/* Routes whose handler authenticates itself (node reports). */
#define API_ROUTE_NODE (1u << HTTP_ROUTE_USER_SHIFT)

int api_register(struct gw *gw);
/*
 * SIGTERM: end every follower's stream now, cleanly (no "end" event: the
 * job goes on), so that the drain need not wait for them; clients resume
 * with Last-Event-ID once the gateway is back.
 */
void api_output_quiesce(struct gw *gw);

/* The caller, set by the guard for HTTP_ROUTE_AUTH routes. */
const struct auth_identity *api_identity(struct http_req *req);
bool api_may_see(const struct auth_identity *id, const char *owner);

/* Handlers (gw passed as the route's arg). */
void api_jobs_create(struct http_req *req, void *arg);
void api_jobs_list(struct http_req *req, void *arg);
void api_jobs_get(struct http_req *req, void *arg);
void api_jobs_cancel(struct http_req *req, void *arg);
void api_jobs_output(struct http_req *req, void *arg);
void api_usage(struct http_req *req, void *arg);
void api_node_event(struct http_req *req, void *arg);
void api_node_output(struct http_req *req, void *arg);
void api_sites(struct http_req *req, void *arg);
void api_credential_put(struct http_req *req, void *arg);
void api_credential_get(struct http_req *req, void *arg);
void api_credential_delete(struct http_req *req, void *arg);
void api_healthz(struct http_req *req, void *arg);
void api_metrics(struct http_req *req, void *arg);
void api_debug_tasks(struct http_req *req, void *arg);

#endif
