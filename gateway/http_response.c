/*
 * http_response.c: the error table of docs/api.md and the one error shape
 * (see http_response.h).  tests/unit/check-openapi.sh checks that every
 * code of docs/api.md is in docs/openapi.yaml; test_http_server.c checks
 * this table against docs/api.md.
 */
#include "http_response.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "json_util.h"

/* status, code, default message, when (docs/api.md, in its order) */
#define HTTP_ERRORS(X)                                                         \
	X(400, "bad_request", "bad request",                                   \
	  "missing/invalid field (message names it)")                          \
	X(400, "invalid_json", "body is not valid JSON",                       \
	  "body is not JSON, or nests deeper than 32 levels")                  \
	X(401, "unauthorized", "authentication required",                      \
	  "no/invalid/expired credential (WWW-Authenticate: Bearer)")          \
	X(403, "forbidden", "forbidden",                                       \
	  "authenticated, not allowed (other user's job, admin only)")         \
	X(404, "not_found", "not found", "no such job, site or route")         \
	X(405, "method_not_allowed", "method not allowed",                     \
	  "(Allow header lists methods)")                                      \
	X(408, "request_timeout", "request not received in time",              \
	  "client too slow sending the request")                               \
	X(409, "conflict", "conflict", "state does not allow it")              \
	X(409, "credential_missing", "no registered site token",               \
	  "jwt-user site: register yours first (PUT .../credential)")          \
	X(409, "credential_not_used", "the site takes no user token",          \
	  "PUT .../credential on a jwt-key or munge site")                     \
	X(413, "payload_too_large", "request body too large",                  \
	  "body over the limit (default 1 MiB)")                               \
	X(415, "unsupported_media_type", "body must be application/json",      \
	  "body not application/json")                                         \
	X(422, "idempotency_mismatch",                                         \
	  "Idempotency-Key reused with another body",                          \
	  "same Idempotency-Key, different body")                              \
	X(422, "site_rejected", "the site refused the job",                    \
	  "the site refused the job; message is the site's own text")          \
	X(422, "credential_invalid", "not a Slurm token",                      \
	  "the registered text is not a JWT with exp and sun")                 \
	X(422, "credential_wrong_user", "token of another user",               \
	  "the token's user is not your account at the site")                  \
	X(422, "credential_expired", "token expired",                          \
	  "the token expired or expires within a minute")                      \
	X(422, "credential_expires_too_soon", "token expires before the job",  \
	  "jwt-user: token ends before queue estimate + time limit")           \
	X(429, "too_many_requests", "too many connections",                    \
	  "per-IP or global connection limit")                                 \
	X(431, "headers_too_large", "request headers too large",               \
	  "request headers over the limit")                                    \
	X(500, "internal", "internal error",                                   \
	  "a bug; logged with the request id")                                 \
	X(503, "site_unavailable", "site unavailable",                         \
	  "the site's circuit breaker is open / site down")                    \
	X(503, "storage_unavailable", "storage unavailable",                   \
	  "the store cannot commit: nothing was sent to a site")               \
	X(503, "shutting_down", "shutting down", "draining after SIGTERM")     \
	X(503, "job_not_ready", "Slurm job not known yet",                     \
	  "node report for a Slurm id a pending submit may own: retry")

static const struct http_error_def error_rows[] = {
#define HTTP_ERROR_ROW_(status, code, msg, when) {status, code, msg, when},
    HTTP_ERRORS(HTTP_ERROR_ROW_)
#undef HTTP_ERROR_ROW_
};

#define N_ERRORS (sizeof(error_rows) / sizeof(error_rows[0]))

const struct http_error_def *http_error_lookup(const char *code)
{
	size_t i;

	if (!code)
		return NULL;
	for (i = 0; i < N_ERRORS; i++)
		if (strcmp(error_rows[i].code, code) == 0)
			return &error_rows[i];
	return NULL;
}

const struct http_error_def *http_error_table(size_t *n)
{
	*n = N_ERRORS;
	return error_rows;
}

bool http_error_valid(unsigned status, const char *code)
{
	const struct http_error_def *r = http_error_lookup(code);

	return r && r->status == status;
}

json_t *http_error_json(const char *code, const char *message,
			const char *request_id)
{
	const struct http_error_def *r = http_error_lookup(code);
	json_t *inner, *outer;

	if (!message)
		message = r ? r->message : "error";
	inner = json_pack("{s:s, s:s, s:o}", "code", code ? code : "internal",
			  "message", message, "request_id",
			  request_id ? json_string(request_id) : json_null());
	if (!inner) {
		/* message not UTF-8: keep the shape, lose the text */
		inner = json_pack(
		    "{s:s, s:s, s:o}", "code", code ? code : "internal",
		    "message", "(message not valid UTF-8)", "request_id",
		    request_id ? json_string(request_id) : json_null());
		if (!inner)
			return NULL;
	}
	outer = json_pack("{s:o}", "error", inner);
	return outer;
}

char *http_error_text(const char *code, const char *message,
		      const char *request_id, size_t *len)
{
	json_t *j = http_error_json(code, message, request_id);
	char *text = NULL;
	char err[128];

	if (!j)
		return NULL;
	if (json_dump_text(j, 0, &text, err, sizeof(err)) < 0)
		text = NULL;
	json_decref(j);
	if (text && len)
		*len = strlen(text);
	return text;
}

int http_error_raw(char *buf, size_t len, unsigned status, const char *code,
		   const char *message, const char *request_id,
		   const char *extra_headers)
{
	size_t body_len = 0;
	char *body = http_error_text(code, message, request_id, &body_len);
	int n;

	if (!body)
		return -ENOMEM;
	n = snprintf(buf, len,
		     "HTTP/1.1 %u %s\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\n"
		     "X-Request-ID: %s\r\n"
		     "Connection: close\r\n"
		     "%s"
		     "\r\n"
		     "%s",
		     status, http_status_reason(status), body_len,
		     request_id ? request_id : "-",
		     extra_headers ? extra_headers : "", body);
	free(body);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return n;
}

const char *http_status_reason(unsigned status)
{
	return MHD_get_reason_phrase_for(status);
}
