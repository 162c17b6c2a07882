/*
 * site.c: what every site adapter shares (see site.h): the adapter table,
 * the call life cycle (begin -> in flight -> complete/abort), results,
 * stats and debug strings.  Nothing here knows slurmrestd.
 */
#include "site.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_verify.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The adapters: a new kind of site is one file and one line here. */
static const struct site_ops *const site_adapters[] = {
    &site_slurmrestd_ops,
};

static const char *const auth_words[] = {
#define AUTH_WORD_(e, word) word,
    SITE_AUTH_MODES(AUTH_WORD_)
#undef AUTH_WORD_
};

static const char *const err_names[] = {
#define ERR_NAME_(e, code, transient) code,
    SITE_ERRORS(ERR_NAME_)
#undef ERR_NAME_
};

static const bool err_transient[] = {
#define ERR_TRANSIENT_(e, code, transient) transient,
    SITE_ERRORS(ERR_TRANSIENT_)
#undef ERR_TRANSIENT_
};

static const char *const op_names[] = {
#define OP_NAME_(name) #name,
    SITE_OPS_LIST(OP_NAME_)
#undef OP_NAME_
};

static const char *const call_state_names[] = {
#define CALL_STATE_NAME_(name) #name,
    SITE_CALL_STATES(CALL_STATE_NAME_)
#undef CALL_STATE_NAME_
};

const char *site_auth_name(enum site_auth a)
{
	return (unsigned)a < ARRAY_SIZE(auth_words) ? auth_words[a] : "?";
}

int site_auth_parse(const char *word, enum site_auth *out)
{
	size_t i;

	for (i = 0; word && i < ARRAY_SIZE(auth_words); i++) {
		if (strcmp(word, auth_words[i]) == 0) {
			*out = (enum site_auth)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *site_err_name(enum site_err e)
{
	return (unsigned)e < ARRAY_SIZE(err_names) ? err_names[e] : "?";
}

bool site_err_transient(enum site_err e)
{
	return (unsigned)e < ARRAY_SIZE(err_transient) && err_transient[e];
}

const char *site_err_api_code(enum site_err e)
{
	switch (e) {
	case SITE_ERR_OK:
		return "ok";
	case SITE_ERR_REJECTED:
		return "site_rejected";
	case SITE_ERR_NOT_FOUND:
		return "not_found";
	case SITE_ERR_DENIED:
		return "forbidden";
	case SITE_ERR_UNAVAILABLE:
	case SITE_ERR_TIMEOUT:
	case SITE_ERR_BACKEND:
	case SITE_ERR_AUTH:
	case SITE_ERR_PROTOCOL:
		return "site_unavailable";
	case SITE_ERR_CANCELLED:
	case SITE_ERR_INTERNAL:
	case SITE_ERR_COUNT_:
		break;
	}
	return "internal";
}

const char *site_op_name(enum site_op op)
{
	return (unsigned)op < ARRAY_SIZE(op_names) ? op_names[op] : "?";
}

const char *site_call_state_name(enum site_call_state s)
{
	return (unsigned)s < ARRAY_SIZE(call_state_names) ? call_state_names[s]
							  : "?";
}

bool site_tag_valid(const char *tag)
{
	size_t n;

	if (!tag)
		return false;
	for (n = 0; tag[n]; n++) {
		char c = tag[n];

		if (n >= SITE_TAG_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return n > 0;
}

/* ---------------------------------------------------------- results */

void site_result_clear(struct site_result *r)
{
	free(r->jobs);
	memset(r, 0, sizeof(*r));
}

static int cmp_job_id(const void *a, const void *b)
{
	uint32_t x = ((const struct site_job *)a)->job_id;
	uint32_t y = ((const struct site_job *)b)->job_id;

	return x < y ? -1 : x > y;
}

void site_result_sort(struct site_result *r)
{
	if (r->n_jobs > 1)
		qsort(r->jobs, r->n_jobs, sizeof(*r->jobs), cmp_job_id);
	r->sorted = true;
}

const struct site_job *site_result_find(const struct site_result *r,
					uint32_t job_id)
{
	struct site_job key = {.job_id = job_id};
	size_t i;

	if (r->sorted && r->n_jobs) {
		return bsearch(&key, r->jobs, r->n_jobs, sizeof(*r->jobs),
			       cmp_job_id);
	}
	for (i = 0; i < r->n_jobs; i++)
		if (r->jobs[i].job_id == job_id)
			return &r->jobs[i];
	return NULL;
}

void site_result_set(struct site_result *r, enum site_err err, const char *fmt,
		     ...)
{
	va_list ap;

	r->err = err;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ sites */

static char *dup_or_null(const char *s, bool *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static void config_free(struct site_config *c)
{
	free((char *)c->name);
	free((char *)c->kind);
	free((char *)c->url);
	free((char *)c->jwt_key);
	free((char *)c->partition);
}

struct site *site_new(struct loop *l, struct http_client *http,
		      const struct site_config *cfg, char *err, size_t errlen)
{
	const struct site_ops *ops = NULL;
	const char *kind;
	struct site *s;
	bool oom = false;
	size_t i;

	if (!cfg || !cfg->name || !*cfg->name || !cfg->url || !*cfg->url) {
		snprintf(err, errlen, "site: name and url are required");
		errno = EINVAL;
		return NULL;
	}
	kind = cfg->kind ? cfg->kind : "slurmrestd";
	for (i = 0; i < ARRAY_SIZE(site_adapters); i++)
		if (strcmp(site_adapters[i]->kind, kind) == 0)
			ops = site_adapters[i];
	if (!ops) {
		snprintf(err, errlen,
			 "site %s: unknown kind '%s' (known: "
			 "slurmrestd)",
			 cfg->name, kind);
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "site %s: out of memory", cfg->name);
		errno = ENOMEM;
		return NULL;
	}
	s->ops = ops;
	s->loop = l;
	s->http = http;
	s->cfg = *cfg;
	s->cfg.name = dup_or_null(cfg->name, &oom);
	s->cfg.kind = dup_or_null(kind, &oom);
	s->cfg.url = dup_or_null(cfg->url, &oom);
	s->cfg.jwt_key = dup_or_null(cfg->jwt_key, &oom);
	s->cfg.partition = dup_or_null(cfg->partition, &oom);
	s->name = (char *)s->cfg.name;
	if (!s->cfg.request_timeout_s)
		s->cfg.request_timeout_s = SITE_DEFAULT_REQUEST_TIMEOUT_S;
	if (!s->cfg.max_connections)
		s->cfg.max_connections = SITE_DEFAULT_MAX_CONNECTIONS;
	if (!s->cfg.jwt_lifetime_s)
		s->cfg.jwt_lifetime_s = SITE_DEFAULT_JWT_LIFETIME_S;
	if (oom) {
		snprintf(err, errlen, "site %s: out of memory", cfg->name);
		config_free(&s->cfg);
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	if (ops->open(s, err, errlen) < 0) {
		config_free(&s->cfg);
		free(s);
		errno = EINVAL;
		return NULL;
	}
	log_info("site %s: %s at %s, auth %s", s->name, kind, s->cfg.url,
		 site_auth_name(s->cfg.auth));
	return s;
}

static void call_unlink(struct site_call *call)
{
	struct site *s = call->site;

	if (call->prev)
		call->prev->next = call->next;
	else
		s->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	s->stats.in_flight--;
}

static void call_drop_task(struct site_call *call, bool wake)
{
	struct task *t = call->held_task;

	call->held_task = NULL;
	if (!t)
		return;
	if (wake)
		task_wake(t, SITE_CALL_WAKE);
	task_unref(t);
}

static void call_count(struct site_call *call)
{
	struct site *s = call->site;
	struct site_result *r = &call->result;

	if (r->err == SITE_ERR_OK) {
		s->stats.ok++;
		s->stats.last_ok_ms = loop_clock_ms();
		return;
	}
	if ((unsigned)r->err < SITE_ERR_COUNT_)
		s->stats.errors[r->err]++;
	if (r->err == SITE_ERR_NOT_FOUND || r->err == SITE_ERR_CANCELLED)
		return; /* not the site's fault */
	s->stats.last_err = r->err;
	s->stats.last_err_ms = loop_clock_ms();
	snprintf(s->stats.last_message, sizeof(s->stats.last_message), "%.*s",
		 (int)sizeof(s->stats.last_message) - 1, r->message);
}

static void call_log(const struct site_call *call)
{
	const struct site_result *r = &call->result;
	char buf[256];

	site_call_debug_str(call, buf, sizeof(buf));
	switch (r->err) {
	case SITE_ERR_OK:
	case SITE_ERR_NOT_FOUND:
	case SITE_ERR_CANCELLED:
		dbg("%s: %s", buf, r->message);
		break;
	case SITE_ERR_REJECTED:
	case SITE_ERR_DENIED:
		log_info("%s (http %d, slurm errno %d): %s", buf,
			 r->http_status, r->slurm_errno, r->message);
		break;
	case SITE_ERR_UNAVAILABLE:
	case SITE_ERR_TIMEOUT:
	case SITE_ERR_BACKEND:
	case SITE_ERR_AUTH:
	case SITE_ERR_PROTOCOL:
	case SITE_ERR_INTERNAL:
	case SITE_ERR_COUNT_:
		log_warn("%s (http %d, slurm errno %d%s): %s", buf,
			 r->http_status, r->slurm_errno,
			 r->outcome_unknown ? ", outcome unknown" : "",
			 r->message);
		break;
	}
}

void site_call_complete(struct site_call *call)
{
	if (call->state != SITE_CALL_IN_FLIGHT) {
		log_err("site call completed twice (state %s)",
			site_call_state_name(call->state));
		return;
	}
	call_unlink(call);
	call->io = NULL;
	call->state = SITE_CALL_DONE;
	call->result.elapsed_ms = loop_clock_ms() - call->started_ms;
	call_count(call);
	call_log(call);
	call_drop_task(call, true);
	if (call->done)
		call->done(call, call->arg); /* may free or reuse call */
}

/*
 * Common start of an operation.  0, or < 0 with the result filled (or, for
 * -EBUSY, the in-flight call left alone).
 */
static int call_begin(struct site *s, const struct site_cred *as,
		      struct site_call *call, enum site_op op)
{
	if (call->state == SITE_CALL_IN_FLIGHT)
		return -EBUSY;
	site_result_clear(&call->result);
	call->site = s;
	call->op = op;
	call->state = SITE_CALL_IDLE;
	call->job_id = 0;
	call->tag[0] = '\0';
	call->user[0] = '\0';
	call->io = NULL;
	call->started_ms = loop_clock_ms();
	if (s->closing) {
		site_result_set(&call->result, SITE_ERR_CANCELLED,
				"site %s is closing", s->name);
		call->state = SITE_CALL_DONE;
		return -ESHUTDOWN;
	}
	if (!as || !jwt_user_name_valid(as->user)) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"site %s: %s: no valid site user name", s->name,
				site_op_name(op));
		call->state = SITE_CALL_DONE;
		return -EINVAL;
	}
	snprintf(call->user, sizeof(call->user), "%s", as->user);
	s->stats.calls++;
	return 0;
}

/* After the adapter's start function. */
static int call_started(struct site_call *call, int rv)
{
	struct site *s = call->site;

	if (rv < 0) {
		if (call->result.err == SITE_ERR_OK)
			site_result_set(&call->result, SITE_ERR_INTERNAL, "%s",
					strerror(-rv));
		call->state = SITE_CALL_DONE;
		call_count(call);
		call_log(call);
		return rv;
	}
	call->state = SITE_CALL_IN_FLIGHT;
	call->prev = NULL;
	call->next = s->calls;
	if (s->calls)
		s->calls->prev = call;
	s->calls = call;
	s->stats.in_flight++;
	if (call->task) {
		call->held_task = call->task;
		task_ref(call->task);
	}
	return 0;
}

int site_submit(struct site *s, const struct site_cred *as,
		const struct site_submit *req, struct site_call *call)
{
	int rv = call_begin(s, as, call, SITE_OP_SUBMIT);

	if (rv < 0)
		return rv;
	if (!req || !site_tag_valid(req->tag)) {
		site_result_set(
		    &call->result, SITE_ERR_INTERNAL,
		    "submit: the gateway tag is missing or invalid");
		return call_started(call, -EINVAL);
	}
	snprintf(call->tag, sizeof(call->tag), "%s", req->tag);
	return call_started(call, s->ops->submit(s, as, req, call));
}

int site_get(struct site *s, const struct site_cred *as, uint32_t job_id,
	     struct site_call *call)
{
	int rv = call_begin(s, as, call, SITE_OP_GET);

	if (rv < 0)
		return rv;
	call->job_id = job_id;
	if (!job_id) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"get: job id 0");
		return call_started(call, -EINVAL);
	}
	return call_started(call, s->ops->get(s, as, job_id, call));
}

int site_list(struct site *s, const struct site_cred *as, int64_t update_time,
	      struct site_call *call)
{
	int rv = call_begin(s, as, call, SITE_OP_LIST);

	if (rv < 0)
		return rv;
	return call_started(call, s->ops->list(s, as, update_time, call));
}

int site_find_by_tag(struct site *s, const struct site_cred *as,
		     const char *tag, struct site_call *call)
{
	int rv = call_begin(s, as, call, SITE_OP_FIND_BY_TAG);

	if (rv < 0)
		return rv;
	if (!site_tag_valid(tag)) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"find_by_tag: invalid tag");
		return call_started(call, -EINVAL);
	}
	snprintf(call->tag, sizeof(call->tag), "%s", tag);
	return call_started(call, s->ops->find_by_tag(s, as, tag, call));
}

int site_cancel(struct site *s, const struct site_cred *as, uint32_t job_id,
		struct site_call *call)
{
	int rv = call_begin(s, as, call, SITE_OP_CANCEL);

	if (rv < 0)
		return rv;
	call->job_id = job_id;
	if (!job_id) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"cancel: job id 0");
		return call_started(call, -EINVAL);
	}
	return call_started(call, s->ops->cancel(s, as, job_id, call));
}

int site_ping(struct site *s, const struct site_cred *as,
	      struct site_call *call)
{
	int rv = call_begin(s, as, call, SITE_OP_PING);

	if (rv < 0)
		return rv;
	return call_started(call, s->ops->ping(s, as, call));
}

int site_call_abort(struct site_call *call)
{
	if (call->state != SITE_CALL_IN_FLIGHT)
		return -EALREADY;
	call->site->ops->abort(call);
	call_unlink(call);
	call->io = NULL;
	call->state = SITE_CALL_DONE;
	site_result_clear(&call->result);
	site_result_set(&call->result, SITE_ERR_CANCELLED, "aborted");
	call->result.elapsed_ms = loop_clock_ms() - call->started_ms;
	call_count(call);
	call_drop_task(call, false);
	return 0;
}

int site_call_reset(struct site_call *call)
{
	if (call->state == SITE_CALL_IN_FLIGHT)
		return -EBUSY;
	site_result_clear(&call->result);
	call->state = SITE_CALL_IDLE;
	return 0;
}

const char *site_call_debug_str(const struct site_call *call, char *buf,
				size_t len)
{
	char what[128] = "";
	uint64_t ms = call->state == SITE_CALL_IN_FLIGHT
			  ? loop_clock_ms() - call->started_ms
			  : call->result.elapsed_ms;

	if (call->job_id)
		snprintf(what, sizeof(what), " job=%" PRIu32, call->job_id);
	else if (call->tag[0])
		snprintf(what, sizeof(what), " tag=%s", call->tag);
	snprintf(buf, len, "site %s %s as %s%s state=%s %" PRIu64 "ms err=%s",
		 call->site ? call->site->name : "-", site_op_name(call->op),
		 call->user[0] ? call->user : "-", what,
		 site_call_state_name(call->state), ms,
		 site_err_name(call->result.err));
	return buf;
}

void site_set_workers(struct site *s, struct worker_pool *workers)
{
	s->workers = workers;
}

int site_set_limits(struct site *s, const struct site_limits *lim)
{
	bool oom = false;
	char *part = dup_or_null(lim->partition, &oom);

	if (oom)
		return -ENOMEM;
	free((char *)s->cfg.partition);
	s->cfg.partition = part;
	s->cfg.request_timeout_s = lim->request_timeout_s
				       ? lim->request_timeout_s
				       : SITE_DEFAULT_REQUEST_TIMEOUT_S;
	s->cfg.max_connections = lim->max_connections
				     ? lim->max_connections
				     : SITE_DEFAULT_MAX_CONNECTIONS;
	s->cfg.jwt_lifetime_s = lim->jwt_lifetime_s
				    ? lim->jwt_lifetime_s
				    : SITE_DEFAULT_JWT_LIFETIME_S;
	if (s->ops->limits_changed)
		s->ops->limits_changed(s);
	log_info("site %s: limits now partition=%s timeout=%us max_conn=%u "
		 "jwt_lifetime=%us",
		 s->name, s->cfg.partition ? s->cfg.partition : "(default)",
		 s->cfg.request_timeout_s, s->cfg.max_connections,
		 s->cfg.jwt_lifetime_s);
	return 0;
}

void site_free(struct site *s)
{
	if (!s)
		return;
	s->closing = true;
	while (s->calls) {
		struct site_call *call = s->calls;

		s->ops->abort(call);
		call->io = NULL;
		site_result_clear(&call->result);
		site_result_set(&call->result, SITE_ERR_CANCELLED,
				"site %s closed", s->name);
		site_call_complete(call);
	}
	s->ops->close(s);
	log_info("site %s: closed", s->name);
	config_free(&s->cfg);
	free(s);
}

const char *site_name(const struct site *s)
{
	return s->name;
}

const char *site_kind(const struct site *s)
{
	return s->ops->kind;
}

const struct site_config *site_config(const struct site *s)
{
	return &s->cfg;
}

void site_stats(const struct site *s, struct site_stats *st)
{
	*st = s->stats;
}

const char *site_debug_str(const struct site *s, char *buf, size_t len)
{
	char last[96] = "-";
	char extra[256] = "";
	uint64_t now = loop_clock_ms();

	if (s->stats.last_err_ms)
		snprintf(last, sizeof(last), "%s(%" PRIu64 "s ago)",
			 site_err_name(s->stats.last_err),
			 (now - s->stats.last_err_ms) / 1000);
	if (s->ops->debug_str)
		s->ops->debug_str(s, extra, sizeof(extra));
	snprintf(buf, len,
		 "site %s kind=%s url=%s auth=%s in_flight=%u calls=%" PRIu64
		 " ok=%" PRIu64 " last_err=%s%s%s",
		 s->name, s->ops->kind, s->cfg.url, site_auth_name(s->cfg.auth),
		 s->stats.in_flight, s->stats.calls, s->stats.ok, last,
		 extra[0] ? " | " : "", extra);
	return buf;
}
