/* deliver.c: see deliver.h.  The one place the plugin side uses libcurl
 * and libmunge. */
#include "deliver.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <munge.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "log.h"

/* a batch's answer: DELIVER_EVENTS_MAX results, each under 600 bytes */
#define REPLY_MAX (64 * 1024)

struct deliverer {
	CURL *curl;
	char *gateway;
	enum report_auth auth;
	char *munge_socket;
	char *ticket;
	char *request_id;
	char *reply; /* REPLY_MAX bytes */
	size_t reply_len;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

struct deliverer *deliverer_new(const struct deliver_cfg *cfg)
{
	struct deliverer *d;

	pthread_once(&curl_once, curl_init_once);
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->gateway = strdup(cfg->gateway);
	d->auth = cfg->auth;
	d->munge_socket = dup_or_null(cfg->munge_socket);
	d->ticket = dup_or_null(cfg->ticket);
	d->request_id = dup_or_null(cfg->request_id);
	if (!d->gateway) {
		deliverer_free(d);
		return NULL;
	}
	return d;
}

void deliverer_free(struct deliverer *d)
{
	if (!d)
		return;
	if (d->curl)
		curl_easy_cleanup(d->curl);
	free(d->gateway);
	free(d->munge_socket);
	if (d->ticket)
		explicit_bzero(d->ticket, strlen(d->ticket));
	free(d->ticket);
	free(d->request_id);
	free(d->reply);
	free(d);
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

bool deliverer_can_share(const struct deliverer *d)
{
	return d->auth == REPORT_AUTH_MUNGE || d->auth == REPORT_AUTH_NONE;
}

bool deliverer_same_route(const struct deliverer *a, const struct deliverer *b)
{
	return deliverer_can_share(a) && a->auth == b->auth &&
	       !strcmp(a->gateway, b->gateway) &&
	       same_str(a->munge_socket, b->munge_socket);
}

struct deliverer *deliverer_shared(const struct deliverer *d)
{
	struct deliver_cfg cfg = {.gateway = d->gateway,
				  .auth = d->auth,
				  .munge_socket = d->munge_socket};

	return deliverer_can_share(d) ? deliverer_new(&cfg) : NULL;
}

static size_t on_reply(char *p, size_t size, size_t n, void *arg)
{
	struct deliverer *d = arg;
	size_t len = size * n, room = REPLY_MAX - 1 - d->reply_len;

	memcpy(d->reply + d->reply_len, p, len < room ? len : room);
	d->reply_len += len < room ? len : room;
	d->reply[d->reply_len] = '\0';
	return len;
}

/* "Authorization: ..." header for this request, or NULL (none / failed). */
static char *auth_header(struct deliverer *d, const char *method,
			 const char *path, const void *body, size_t len,
			 char *err, size_t errlen)
{
	char *hdr = NULL, *cred = NULL, payload[640];
	munge_ctx_t ctx;
	munge_err_t merr;

	switch (d->auth) {
	case REPORT_AUTH_NONE:
	case REPORT_AUTH_AUTO:
		return NULL;
	case REPORT_AUTH_TICKET:
		if (!d->ticket) {
			snprintf(err, errlen, "no ticket to authenticate with");
			return NULL;
		}
		if (asprintf(&hdr, "Authorization: Bearer %s", d->ticket) < 0)
			hdr = NULL;
		return hdr;
	case REPORT_AUTH_MUNGE:
		break;
	}
	if (digest_report_payload(method, path, body, len, payload,
				  sizeof(payload)) < 0) {
		snprintf(err, errlen, "report path too long");
		return NULL;
	}
	ctx = munge_ctx_create();
	if (!ctx) {
		snprintf(err, errlen, "munge_ctx_create failed");
		return NULL;
	}
	if (d->munge_socket &&
	    munge_ctx_set(ctx, MUNGE_OPT_SOCKET, d->munge_socket) !=
		EMUNGE_SUCCESS) {
		snprintf(err, errlen, "munge socket %s: %s", d->munge_socket,
			 munge_ctx_strerror(ctx));
		goto out;
	}
	merr = munge_encode(&cred, ctx, payload, (int)strlen(payload));
	if (merr != EMUNGE_SUCCESS) {
		snprintf(err, errlen, "munge_encode: %s",
			 munge_ctx_strerror(ctx));
		goto out;
	}
	if (asprintf(&hdr, "Authorization: MUNGE %s", cred) < 0)
		hdr = NULL;
out:
	free(cred);
	munge_ctx_destroy(ctx);
	return hdr;
}

/* POST body to gateway+path; returns the HTTP status or -errno. */
static long post(struct deliverer *d, const char *path, const char *ctype,
		 const void *body, size_t len, long timeout_ms, char *err,
		 size_t errlen)
{
	struct curl_slist *hdrs = NULL;
	char url[1024], ct[96], rid[128];
	char *auth = NULL;
	long status = 0;
	CURLcode rc;

	/* made at the first request: a node relay makes a deliverer for
	 * every queued job dir, most of which wait out a failed gateway */
	if (!d->curl)
		d->curl = curl_easy_init();
	if (!d->reply)
		d->reply = malloc(REPLY_MAX);
	if (!d->curl || !d->reply) {
		snprintf(err, errlen, "out of memory");
		return -EAGAIN;
	}
	if (snprintf(url, sizeof(url), "%s%s", d->gateway, path) >=
	    (int)sizeof(url)) {
		snprintf(err, errlen, "gateway URL too long");
		return -EINVAL;
	}
	if (d->auth == REPORT_AUTH_MUNGE || d->auth == REPORT_AUTH_TICKET) {
		auth = auth_header(d, "POST", path, body, len, err, errlen);
		if (!auth)
			return -EAGAIN; /* munged down: keep it for later */
		hdrs = curl_slist_append(hdrs, auth);
	}
	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
	hdrs = curl_slist_append(hdrs, ct);
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (d->request_id) {
		snprintf(rid, sizeof(rid), "X-Request-ID: %s", d->request_id);
		hdrs = curl_slist_append(hdrs, rid);
	}

	d->reply_len = 0;
	d->reply[0] = '\0';
	curl_easy_reset(d->curl);
	curl_easy_setopt(d->curl, CURLOPT_URL, url);
	curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(d->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(d->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(d->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(d->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(d->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(d->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(d->curl, CURLOPT_WRITEFUNCTION, on_reply);
	curl_easy_setopt(d->curl, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(d->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(d->curl);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
		status = -EAGAIN;
	} else {
		curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
	}
	curl_slist_free_all(hdrs);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	return status;
}

static int classify(long status, const char *what, const char *reply, char *err,
		    size_t errlen)
{
	if (status < 0)
		return (int)status;
	if (status >= 200 && status < 300)
		return 0;
	snprintf(err, errlen, "%s: gateway answered %ld: %.200s", what, status,
		 reply);
	/* this job's reports later; the gateway itself is fine */
	if (status == 503 && strstr(reply, "\"job_not_ready\""))
		return -EINPROGRESS;
	if (status >= 500 || status == 429 || status == 408)
		return -EAGAIN;
	return -EBADMSG;
}

/* One event's fate from its entry in a batch's answer. */
static int event_result(const json_t *r)
{
	json_int_t status = json_integer_value(json_object_get(r, "status"));
	const char *code = json_string_value(
	    json_object_get(json_object_get(r, "error"), "code"));

	if (status >= 200 && status < 300)
		return 0;
	if (status == 503 && code && !strcmp(code, "job_not_ready"))
		return -EINPROGRESS;
	if (status >= 500 || status == 429 || status == 408 || status < 100)
		return -EAGAIN;
	return -EBADMSG;
}

int deliver_events(struct deliverer *d, const char *const *jsons, size_t n,
		   int *results, long timeout_ms, char *err, size_t errlen)
{
	size_t i, len = 2, o = 0, got;
	json_t *reply, *rs;
	char *body;
	long status;
	int rv;

	for (i = 0; i < n; i++)
		len += strlen(jsons[i]) + 1;
	body = malloc(len + 1);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return -EAGAIN;
	}
	body[o++] = '[';
	for (i = 0; i < n; i++) {
		size_t l = strlen(jsons[i]);

		if (i)
			body[o++] = ',';
		memcpy(body + o, jsons[i], l);
		o += l;
	}
	body[o++] = ']';
	body[o] = '\0';
	status = post(d, "/v1/events", "application/json", body, o, timeout_ms,
		      err, errlen);
	free(body);
	rv = classify(status, "events", d->reply, err, errlen);
	if (rv == -EBADMSG && status == 413 && n > 1)
		return -E2BIG; /* a gateway with a smaller max_body */
	if (rv)
		return rv;
	reply = json_loads(d->reply, 0, NULL);
	rs = json_object_get(reply, "results");
	if (!json_is_array(rs)) {
		snprintf(err, errlen, "events: gateway answered %ld: %.200s",
			 status, d->reply);
		json_decref(reply);
		return -EAGAIN; /* all of them again: they count once */
	}
	got = json_array_size(rs);
	err[0] = '\0';
	for (i = 0; i < n; i++) {
		const json_t *e =
		    json_object_get(json_array_get(rs, i), "error");
		const char *code =
		    json_string_value(json_object_get(e, "code"));
		const char *msg =
		    json_string_value(json_object_get(e, "message"));

		/* past the results: not handled (the batch stopped), resend */
		results[i] =
		    i < got ? event_result(json_array_get(rs, i)) : -EAGAIN;
		if (results[i] && !err[0])
			snprintf(err, errlen, "event %zu of %zu: %s: %.200s",
				 i + 1, n, code ? code : "not handled",
				 msg ? msg : "resent later");
	}
	json_decref(reply);
	return 0;
}

static uint64_t reply_next_offset(const char *reply)
{
	json_t *o = json_loads(reply, 0, NULL);
	json_t *v = o ? json_object_get(o, "next_offset") : NULL;
	uint64_t n = json_is_integer(v) && json_integer_value(v) >= 0
			 ? (uint64_t)json_integer_value(v)
			 : UINT64_MAX;

	json_decref(o);
	return n;
}

int deliver_chunk(struct deliverer *d, const char *site, uint32_t job_id,
		  const char *stream, uint64_t offset, const void *data,
		  size_t len, bool eof, long timeout_ms, uint64_t *next_offset,
		  char *err, size_t errlen)
{
	char path[256];
	long status;
	int rv;

	snprintf(path, sizeof(path), "/v1/output/%s/%u/%s?offset=%llu%s", site,
		 job_id, stream, (unsigned long long)offset,
		 eof ? "&eof=1" : "");
	status = post(d, path, "application/octet-stream", len ? data : "", len,
		      timeout_ms, err, errlen);
	rv = classify(status, "output chunk", d->reply, err, errlen);
	*next_offset = offset + len;
	if (status == 409) {
		*next_offset = reply_next_offset(d->reply);
		return *next_offset == UINT64_MAX ? -EBADMSG : -ESPIPE;
	}
	if (!rv) {
		uint64_t n = reply_next_offset(d->reply);

		if (n != UINT64_MAX)
			*next_offset = n;
	}
	return rv;
}
