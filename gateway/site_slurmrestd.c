/*
 * site_slurmrestd.c: the slurmrestd v0.0.38 adapter (see
 * site_slurmrestd.h for the facts it follows, site.h for the interface).
 *
 * One HTTP request per call, on the loop's http_client; the request's
 * completion callback (deferred, outside libcurl) reads the answer into
 * call->result and hands the call back to site.c.
 */
#include "site_slurmrestd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "json_util.h"
#include "jwt_verify.h"
#include "log.h"
#include "slurmrestd_list.h"
#include "worker.h"

#define SRD_TOKEN_CACHE 64
#define SRD_CONNECT_TIMEOUT_MS 3000u
/* answers at least this big are parsed on a worker (a list of ~100 jobs) */
#define SRD_PARSE_OFFLOAD_MIN (256u * 1024)

struct srd_token {
	char user[SITE_USER_MAX]; /* "" = free slot */
	char *token;
	time_t exp;
	uint64_t last_use;
};

struct srd {
	struct jwt_key *key; /* jwt-key */
	struct srd_token toks[SRD_TOKEN_CACHE];
	unsigned n_toks;
	uint64_t use_seq;
	time_t (*now)(void);
	uint64_t minted, reused, dropped;
};

static time_t wall_now(void)
{
	return time(NULL);
}

/* ------------------------------------------------------------ tokens */

static void token_wipe(struct srd *p, struct srd_token *t)
{
	if (!t->user[0])
		return;
	if (t->token) {
		explicit_bzero(t->token, strlen(t->token));
		free(t->token);
	}
	memset(t, 0, sizeof(*t));
	p->n_toks--;
}

static void token_drop(struct site *s, const char *user)
{
	struct srd *p = s->priv;
	size_t i;

	for (i = 0; i < SRD_TOKEN_CACHE; i++) {
		if (p->toks[i].user[0] && strcmp(p->toks[i].user, user) == 0) {
			token_wipe(p, &p->toks[i]);
			p->dropped++;
			dbg("site %s: token of %s dropped", s->name, user);
		}
	}
}

/*
 * The token to send for `as`: borrowed from the cache or from as.  0, or
 * < 0 with call->result filled.
 */
static int token_get(struct site *s, const struct site_cred *as,
		     struct site_call *call, const char **out)
{
	struct srd *p = s->priv;
	struct srd_token *slot = NULL, *lru = NULL;
	time_t now, lifetime = (time_t)s->cfg.jwt_lifetime_s;
	json_t *claims;
	char *tok = NULL, err[256];
	size_t i;
	int rv;

	if (s->cfg.auth == SITE_AUTH_MUNGE) {
		*out = NULL; /* the socket's peer credentials say who we are */
		return 0;
	}
	if (s->cfg.auth == SITE_AUTH_JWT_USER) {
		if (!as->token || !*as->token) {
			site_result_set(&call->result, SITE_ERR_AUTH,
					"site %s: user %s has no registered "
					"token (auth jwt-user)",
					s->name, as->user);
			return -EACCES;
		}
		*out = as->token;
		return 0;
	}
	now = p->now();
	for (i = 0; i < SRD_TOKEN_CACHE; i++) {
		struct srd_token *t = &p->toks[i];

		if (!t->user[0]) {
			if (!slot)
				slot = t;
			continue;
		}
		if (strcmp(t->user, as->user) == 0) {
			if (t->exp - now > lifetime / 5) {
				t->last_use = ++p->use_seq;
				p->reused++;
				*out = t->token;
				return 0;
			}
			token_wipe(p, t); /* near expiry: mint anew */
			slot = t;
			continue;
		}
		if (!lru || t->last_use < lru->last_use)
			lru = t;
	}
	if (!slot) {
		token_wipe(p, lru);
		slot = lru;
	}
	claims =
	    json_pack("{s:s, s:I, s:I}", "sun", as->user, "iat",
		      (json_int_t)now, "exp", (json_int_t)(now + lifetime));
	if (!claims) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"out of memory");
		return -ENOMEM;
	}
	rv = jwt_sign_token(p->key, claims, &tok, err, sizeof(err));
	json_decref(claims);
	if (rv < 0) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"site %s: cannot mint a token for %s: %s",
				s->name, as->user, err);
		return rv;
	}
	snprintf(slot->user, sizeof(slot->user), "%s", as->user);
	slot->token = tok;
	slot->exp = now + lifetime;
	slot->last_use = ++p->use_seq;
	p->n_toks++;
	p->minted++;
	*out = tok;
	return 0;
}

/* ------------------------------------------------------- the answer */

static void msg_append(struct site_result *r, const char *piece)
{
	size_t n = strlen(r->message);

	if (!piece || !*piece)
		return;
	if (n)
		snprintf(r->message + n, sizeof(r->message) - n, "; %s", piece);
	else
		snprintf(r->message, sizeof(r->message), "%s", piece);
}

/* Plain text for a message: first line, no trailing white space. */
static void text_message(struct site_result *r, const char *body, size_t len)
{
	size_t n = 0;

	while (n < len && body[n] && body[n] != '\n' && body[n] != '\r')
		n++;
	while (n > 0 && (body[n - 1] == ' ' || body[n - 1] == '\t'))
		n--;
	if (n >= sizeof(r->message))
		n = sizeof(r->message) - 1;
	memcpy(r->message, body, n);
	r->message[n] = '\0';
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
	const char *v;

	return json_get_str(o, key, &v) == 0 ? v : dflt;
}

static int64_t int_or(const json_t *o, const char *key, int64_t dflt)
{
	int64_t v;

	return json_get_int(o, key, &v) == 0 ? v : dflt;
}

/*
 * Read the errors array (both shapes) into r->message and r->slurm_errno.
 * Returns the number of errors.
 */
static size_t read_errors(const json_t *root, struct site_result *r)
{
	const json_t *errs = json_object_get(root, "errors");
	size_t i, n = 0;

	if (!json_is_array(errs))
		return 0;
	for (i = 0; i < json_array_size(errs); i++) {
		const json_t *e = json_array_get(errs, i);
		const char *desc = str_or(e, "description", NULL);
		const char *text = str_or(e, "error", NULL);
		int64_t num;

		if (!json_is_object(e))
			continue;
		if (json_get_int(e, "error_number", &num) != 0 &&
		    json_get_int(e, "error_code", &num) != 0)
			num = 0;
		if (n == 0)
			r->slurm_errno = (int)num;
		msg_append(r, desc && *desc   ? desc
			      : text && *text ? text
					      : "unspecified error");
		n++;
	}
	return n;
}

/*
 * Errors with which slurmctld refuses a job it could take later, so that
 * sbatch sleeps and retries them (src/sbatch/sbatch.c): EAGAIN (the job
 * table is full: MaxJobCount), ESLURM_ERROR_ON_DESC_TO_RECORD_COPY (2007)
 * and ESLURM_NODES_BUSY (2016, job creation disabled for now).  The job was
 * not created: submit again later, without a lookup.
 */
static bool submit_retry_later(int slurm_errno)
{
	return slurm_errno == EAGAIN || slurm_errno == 2007 ||
	       slurm_errno == 2016;
}

static enum site_err classify(int slurm_errno)
{
	if (slurm_errno == 2017) /* ESLURM_INVALID_JOB_ID */
		return SITE_ERR_NOT_FOUND;
	if (slurm_errno == 2002) /* ESLURM_ACCESS_DENIED */
		return SITE_ERR_DENIED;
	if (slurm_errno == -1 || (slurm_errno >= 1000 && slurm_errno < 2000) ||
	    (slurm_errno >= 5000 && slurm_errno < 6000))
		return SITE_ERR_BACKEND; /* communication, credential */
	return SITE_ERR_REJECTED;
}

static int parse_job(const json_t *j, struct site_job *out)
{
	struct slurmrestd_job_fields f = {
	    .state = str_or(j, "job_state", NULL),
	    .reason = str_or(j, "state_reason", NULL),
	    .comment = str_or(j, "comment", NULL),
	    .user = str_or(j, "user_name", NULL),
	    .nodes = str_or(j, "nodes", NULL),
	    .submit = int_or(j, "submit_time", 0),
	    .start = int_or(j, "start_time", 0),
	    .end = int_or(j, "end_time", 0),
	};

	memset(out, 0, sizeof(*out));
	if (!json_is_object(j))
		return -EINVAL;
	f.has_id = json_get_int(j, "job_id", &f.id) == 0;
	f.has_exit = json_get_int(j, "exit_code", &f.exit_code) == 0;
	return slurmrestd_job_fill(&f, out);
}

/* The jobs array into r->jobs (only those matching tag, if given). */
static int read_jobs(const json_t *root, const char *tag, struct site_result *r)
{
	const json_t *jobs = json_object_get(root, "jobs");
	size_t i, n, bad = 0;

	if (!json_is_array(jobs)) {
		site_result_set(r, SITE_ERR_PROTOCOL,
				"slurmrestd answer has no jobs array");
		return -EPROTO;
	}
	n = json_array_size(jobs);
	if (n) {
		r->jobs = calloc(n, sizeof(*r->jobs));
		if (!r->jobs) {
			site_result_set(r, SITE_ERR_INTERNAL,
					"out of memory "
					"for %zu jobs",
					n);
			return -ENOMEM;
		}
	}
	for (i = 0; i < n; i++) {
		struct site_job *sj = &r->jobs[r->n_jobs];

		if (parse_job(json_array_get(jobs, i), sj) < 0) {
			bad++;
			continue;
		}
		if (tag && strcmp(sj->tag, tag) != 0)
			continue;
		r->n_jobs++;
	}
	if (bad && bad == n) {
		site_result_set(r, SITE_ERR_PROTOCOL,
				"no readable job in slurmrestd's answer");
		return -EPROTO;
	}
	if (bad)
		log_warn("slurmrestd: %zu of %zu jobs without a job_id skipped",
			 bad, n);
	return 0;
}

static void read_pings(const json_t *root, struct site_result *r)
{
	const json_t *pings = json_object_get(root, "pings");
	size_t i;

	if (!json_is_array(pings) || json_array_size(pings) == 0) {
		site_result_set(r, SITE_ERR_PROTOCOL,
				"slurmrestd ping answer has no pings");
		return;
	}
	for (i = 0; i < json_array_size(pings); i++) {
		const json_t *p = json_array_get(pings, i);
		const char *up = str_or(p, "ping", "");

		if (strcmp(up, "UP") == 0)
			return; /* one controller answering is enough */
	}
	{
		const json_t *p = json_array_get(pings, 0);

		site_result_set(r, SITE_ERR_BACKEND, "slurmctld %s is %s",
				str_or(p, "hostname", "?"),
				str_or(p, "ping", "?"));
	}
}

/* Lists read by slurmrestd_list.c (false: jansson only, for the tests). */
static bool stream_lists = true;

void site_slurmrestd_stream_lists(bool on)
{
	stream_lists = on;
}

void site_slurmrestd_parse(enum site_op op, uint32_t job_id, const char *tag,
			   int http_rc, long status, const char *body,
			   size_t len, const char *transport_error,
			   struct site_result *r)
{
	bool mutating = op == SITE_OP_SUBMIT || op == SITE_OP_CANCEL;
	json_t *root = NULL;
	char jerr[128];
	size_t n_err;
	int64_t jid;

	site_result_clear(r);
	r->http_status = (int)status;
	if (!transport_error || !*transport_error)
		transport_error = http_rc < 0 ? strerror(-http_rc) : "";

	/* no HTTP answer */
	if (http_rc < 0) {
		enum site_err e = SITE_ERR_UNAVAILABLE;

		r->outcome_unknown = mutating;
		switch (http_rc) {
		case -ETIMEDOUT:
			e = SITE_ERR_TIMEOUT;
			break;
		case -EAGAIN: /* queued for a connection until too late */
			e = SITE_ERR_TIMEOUT;
			r->outcome_unknown = false; /* nothing was sent */
			r->busy = true;
			break;
		case -ECONNREFUSED:
		case -ENOENT:
		case -EHOSTUNREACH:
		case -ENETUNREACH:
		case -EACCES:
			r->outcome_unknown = false; /* nothing was sent */
			break;
		case -EFBIG:
			e = SITE_ERR_PROTOCOL;
			break;
		case -ECANCELED:
		case -ESHUTDOWN:
			e = SITE_ERR_CANCELLED;
			break;
		default:
			break;
		}
		site_result_set(r, e, "slurmrestd: %s", transport_error);
		return;
	}
	if (status == 401 || status == 403) {
		r->err = SITE_ERR_AUTH;
		text_message(r, body, len);
		if (!r->message[0])
			snprintf(r->message, sizeof(r->message),
				 "HTTP %ld from slurmrestd", status);
		return;
	}
	if (status == 304 &&
	    (op == SITE_OP_LIST || op == SITE_OP_FIND_BY_TAG)) {
		r->not_modified = true;
		return;
	}
	/* big lists: only the fields we keep, without jansson's tree */
	if ((op == SITE_OP_LIST || op == SITE_OP_FIND_BY_TAG) &&
	    status >= 200 && status < 300 && stream_lists &&
	    slurmrestd_list_read(
		body, len, op == SITE_OP_FIND_BY_TAG ? tag : NULL, r) <= 0)
		return;
	if (json_parse_text(body, len, 0, &root, jerr, sizeof(jerr)) < 0 ||
	    !json_is_object(root)) {
		json_decref(root);
		if (status >= 400 && status < 500) {
			/* "Unable to parse query": the site's words */
			r->err = SITE_ERR_REJECTED;
			text_message(r, body, len);
		} else if (status >= 200 && status < 300) {
			site_result_set(r, SITE_ERR_PROTOCOL,
					"unreadable slurmrestd answer "
					"(HTTP %ld): %s",
					status, jerr);
			r->outcome_unknown = mutating;
		} else {
			char first[160];
			struct site_result tmp = {0};

			text_message(&tmp, body, len);
			snprintf(first, sizeof(first), "%.*s",
				 (int)sizeof(first) - 1, tmp.message);
			site_result_set(r, SITE_ERR_UNAVAILABLE,
					"HTTP %ld from slurmrestd: %s", status,
					first[0] ? first : "(no body)");
			r->outcome_unknown = mutating;
		}
		return;
	}

	if (op == SITE_OP_SUBMIT) {
		const char *um = str_or(root, "job_submit_user_msg", "");

		snprintf(r->user_msg, sizeof(r->user_msg), "%s", um);
		msg_append(r, um); /* the site's words for the user, first */
	}
	n_err = read_errors(root, r);
	if (op == SITE_OP_SUBMIT && status >= 200 && status < 300 &&
	    json_get_int(root, "job_id", &jid) == 0 && jid > 0 &&
	    jid <= UINT32_MAX) {
		r->job_id = (uint32_t)jid; /* errors, if any, are warnings */
		goto out;
	}
	if (n_err || status < 200 || status >= 300) {
		if (!n_err) {
			site_result_set(r, SITE_ERR_UNAVAILABLE,
					"HTTP %ld from slurmrestd without "
					"errors",
					status);
			r->outcome_unknown = mutating;
			goto out;
		}
		r->err = classify(r->slurm_errno);
		if (r->err == SITE_ERR_BACKEND)
			r->outcome_unknown = mutating;
		if (op == SITE_OP_SUBMIT &&
		    submit_retry_later(r->slurm_errno)) {
			r->err = SITE_ERR_UNAVAILABLE;
			r->outcome_unknown = false;
			r->busy = true;
		}
		goto out;
	}
	switch (op) {
	case SITE_OP_SUBMIT:
		site_result_set(r, SITE_ERR_PROTOCOL,
				"slurmrestd accepted the job but sent no "
				"job_id");
		r->outcome_unknown = true;
		break;
	case SITE_OP_GET:
		if (read_jobs(root, NULL, r) < 0)
			break;
		if (!site_result_find(r, job_id)) {
			/* the answer does not hold the job: it is gone */
			free(r->jobs);
			r->jobs = NULL;
			r->n_jobs = 0;
			site_result_set(r, SITE_ERR_NOT_FOUND,
					"job %" PRIu32 " not in the answer",
					job_id);
		}
		break;
	case SITE_OP_LIST:
		read_jobs(root, NULL, r);
		break;
	case SITE_OP_FIND_BY_TAG:
		read_jobs(root, tag, r);
		break;
	case SITE_OP_CANCEL:
		break;
	case SITE_OP_PING:
		read_pings(root, r);
		break;
	}
out:
	json_decref(root);
}

/* ------------------------------------------------------- submit body */

int site_slurmrestd_submit_body(const struct site_submit *req,
				const char *default_partition, char **out,
				char *err, size_t errlen)
{
	json_t *root = NULL, *job = NULL, *env = NULL;
	const char *partition, *key;
	json_t *val;
	char comment[sizeof(SITE_TAG_COMMENT_PREFIX) + SITE_TAG_MAX];
	int rv = -ENOMEM;

	*out = NULL;
	if (!req->script || !*req->script) {
		snprintf(err, errlen, "submit: no script");
		return -EINVAL;
	}
	if (!site_tag_valid(req->tag)) {
		snprintf(err, errlen, "submit: invalid gateway tag");
		return -EINVAL;
	}
	if (req->environment && !json_is_object(req->environment)) {
		snprintf(err, errlen, "submit: environment is not an object");
		return -EINVAL;
	}
	env = json_object();
	job = json_object();
	root = json_object();
	if (!env || !job || !root)
		goto out_nomem;
	if (req->environment) {
		json_object_foreach((json_t *)req->environment, key, val)
		{
			if (!*key || strchr(key, '=')) {
				snprintf(err, errlen,
					 "submit: bad environment name '%.64s'",
					 key);
				rv = -EINVAL;
				goto out;
			}
			if (!json_is_string(val)) {
				snprintf(err, errlen,
					 "submit: environment %.64s is not a "
					 "string",
					 key);
				rv = -EINVAL;
				goto out;
			}
			if (json_object_set(env, key, val) < 0)
				goto out_nomem;
		}
	}
	if (!json_object_get(env, "PATH") &&
	    json_object_set_new(env, "PATH", json_string("/usr/bin:/bin")) < 0)
		goto out_nomem;
	snprintf(comment, sizeof(comment), "%s%s", SITE_TAG_COMMENT_PREFIX,
		 req->tag);
	partition = req->partition ? req->partition : default_partition;
	if (json_object_set_new(job, "name", json_string(req->tag)) < 0 ||
	    json_object_set_new(job, "comment", json_string(comment)) < 0 ||
	    json_object_set_new(job, "current_working_directory",
				json_string(req->cwd ? req->cwd : "/tmp")) < 0)
		goto out_nomem;
	if (partition && *partition &&
	    json_object_set_new(job, "partition", json_string(partition)) < 0)
		goto out_nomem;
	if (req->std_out && json_object_set_new(job, "standard_output",
						json_string(req->std_out)) < 0)
		goto out_nomem;
	if (req->std_err && json_object_set_new(job, "standard_error",
						json_string(req->std_err)) < 0)
		goto out_nomem;
	if (req->tasks &&
	    json_object_set_new(job, "tasks", json_integer(req->tasks)) < 0)
		goto out_nomem;
	if (req->cpus_per_task &&
	    json_object_set_new(job, "cpus_per_task",
				json_integer(req->cpus_per_task)) < 0)
		goto out_nomem;
	if (req->time_limit_min &&
	    json_object_set_new(job, "time_limit",
				json_integer(req->time_limit_min)) < 0)
		goto out_nomem;
	if (json_object_set(job, "environment", env) < 0 ||
	    json_object_set(root, "job", job) < 0 ||
	    json_object_set_new(root, "script", json_string(req->script)) < 0)
		goto out_nomem;
	rv = json_dump_text(root, 0, out, err, errlen);
	goto out;
out_nomem:
	snprintf(err, errlen,
		 "submit: out of memory (or a string that is "
		 "not UTF-8)");
	rv = -ENOMEM;
out:
	json_decref(root);
	json_decref(job);
	json_decref(env);
	return rv;
}

/* ---------------------------------------------------------- requests */

static int user_socket(const struct site *s, const char *user, char *buf,
		       size_t len);

/* The answer is in call->result: the adapter's last word, then deliver. */
static void srd_finish(struct site_call *call)
{
	struct site *s = call->site;

	if (s->cfg.auth == SITE_AUTH_MUNGE &&
	    (call->result.err == SITE_ERR_UNAVAILABLE ||
	     call->result.err == SITE_ERR_TIMEOUT)) {
		char base[256], msg[SITE_MSG_MAX];

		/* one slurmrestd per user: say whose is missing */
		if (user_socket(s, call->user, base, sizeof(base)))
			snprintf(base, sizeof(base), "%s", s->cfg.url);
		snprintf(msg, sizeof(msg), "%s", call->result.message);
		snprintf(call->result.message, sizeof(call->result.message),
			 "slurmrestd of user %s (%.200s): %.700s", call->user,
			 base, msg);
	}
	if (s->cfg.auth == SITE_AUTH_JWT_KEY &&
	    (call->result.err == SITE_ERR_AUTH ||
	     call->result.err == SITE_ERR_BACKEND))
		token_drop(s, call->user); /* mint a fresh one next time */
	site_call_complete(call);
}

/*
 * A big answer parsed on a worker.  It owns the body (taken from the
 * request, which is closed at once); `call` is NULL once the call was
 * aborted: the result is then dropped.
 */
struct srd_parse {
	struct worker_job wj; /* first: the callbacks cast back */
	struct site_call *call;
	enum site_op op;
	uint32_t job_id;
	char tag[SITE_TAG_MAX + 1];
	int http_rc;
	long status;
	char error[256];
	char *body;
	size_t len;
	struct site_result result;
};

static void parse_work(struct worker_job *wj)
{
	struct srd_parse *p = (struct srd_parse *)wj;

	site_slurmrestd_parse(p->op, p->job_id, p->tag, p->http_rc, p->status,
			      p->body ? p->body : "", p->len, p->error,
			      &p->result);
	free(p->body); /* tens of MB: freed here, not on the loop */
	p->body = NULL;
}

static void parse_done(struct worker_job *wj, int status)
{
	struct srd_parse *p = (struct srd_parse *)wj;
	struct site_call *call = p->call;

	if (call) {
		call->parse = NULL;
		site_result_clear(&call->result);
		if (status == 0) {
			call->result = p->result; /* takes the jobs */
			memset(&p->result, 0, sizeof(p->result));
		} else {
			site_result_set(&call->result, SITE_ERR_INTERNAL,
					"site %s: the answer was not parsed "
					"(shutting down)",
					call->site->name);
		}
		srd_finish(call);
	}
	site_result_clear(&p->result);
	free(p->body);
	free(p);
}

/* 0 when the answer went to a worker; else the caller parses it. */
static int parse_on_worker(struct site_call *call, struct http_request *req)
{
	struct site *s = call->site;
	struct srd_parse *p;
	size_t len;

	http_request_body(req, &len);
	if (!s->workers || len < SRD_PARSE_OFFLOAD_MIN)
		return -1;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	p->call = call;
	p->op = call->op;
	p->job_id = call->job_id;
	snprintf(p->tag, sizeof(p->tag), "%s", call->tag);
	p->http_rc = http_request_result(req);
	p->status = http_request_status(req);
	snprintf(p->error, sizeof(p->error), "%s", http_request_error(req));
	p->body = http_request_take_body(req, &p->len);
	p->wj.name = "slurmrestd answer";
	p->wj.work = parse_work;
	p->wj.done = parse_done;
	call->parse = p;
	if (worker_submit(s->workers, &p->wj)) {
		/* the pool is going away: parse it here after all */
		parse_work(&p->wj);
		parse_done(&p->wj, 0);
		return 0;
	}
	dbg("site %s: %s answer of %zu bytes parsed on a worker", s->name,
	    site_op_name(call->op), len);
	return 0;
}

static void srd_http_done(struct http_request *req, void *arg)
{
	struct site_call *call = arg;
	size_t len;
	const char *body;

	call->io = NULL;
	if (parse_on_worker(call, req) == 0) {
		http_request_close(req);
		return;
	}
	body = http_request_body(req, &len);
	site_slurmrestd_parse(call->op, call->job_id, call->tag,
			      http_request_result(req),
			      http_request_status(req), body, len,
			      http_request_error(req), &call->result);
	http_request_close(req);
	srd_finish(call);
}

/*
 * munge: "unix:/run/slurmrestd/alpha/%u.sock" with the user's name: that
 * user's own slurmrestd (rest_auth/local runs as its user and submits as
 * it; it accepts connections from its user and root).  0 or -1.
 */
static int user_socket(const struct site *s, const char *user, char *buf,
		       size_t len)
{
	const char *u = s->cfg.url, *p = strstr(u, "%u");
	int n;

	if (!p)
		return -1;
	n = snprintf(buf, len, "%.*s%s%s", (int)(p - u), u, user, p + 2);
	/* sun_path holds 107 bytes after "unix:" */
	return n < 0 || (size_t)n >= len || n - 5 > 107 ? -1 : 0;
}

static int srd_send(struct site *s, const struct site_cred *as,
		    struct site_call *call, const char *method,
		    const char *path, const char *body, size_t max_response)
{
	char full[256], base[256];
	const char *token;
	struct http_request *req;
	uint32_t total = s->cfg.request_timeout_s * 1000u;
	int rv;

	rv = token_get(s, as, call, &token);
	if (rv < 0)
		return rv;
	snprintf(full, sizeof(full), "%s%s", SLURMRESTD_API_PREFIX, path);
	if (s->cfg.auth == SITE_AUTH_MUNGE &&
	    user_socket(s, as->user, base, sizeof(base))) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"site %s: the socket path of user %s is too "
				"long",
				s->name, as->user);
		return -ENAMETOOLONG;
	}
	/* munge: the bound applies per user's slurmrestd */
	if (s->cfg.auth == SITE_AUTH_MUNGE)
		http_client_set_host_limit(s->http, base,
					   s->cfg.max_connections);
	req = http_request_new(
	    s->http, method, s->cfg.auth == SITE_AUTH_MUNGE ? base : s->cfg.url,
	    full);
	if (!req) {
		rv = -errno;
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"site %s: cannot make a request to %s: %s",
				s->name, s->cfg.url, strerror(errno));
		return rv;
	}
	rv = 0;
	if (token) { /* rest_auth/local ignores these */
		rv =
		    http_request_add_header(req, "X-SLURM-USER-NAME", as->user);
		if (!rv)
			rv = http_request_add_header(req, "X-SLURM-USER-TOKEN",
						     token);
	}
	if (!rv)
		rv = http_request_add_header(req, "Accept", "application/json");
	if (!rv && body)
		rv = http_request_set_body(req, body, strlen(body),
					   "application/json");
	if (rv < 0) {
		site_result_set(
		    &call->result,
		    rv == -EINVAL ? SITE_ERR_AUTH : SITE_ERR_INTERNAL,
		    "site %s: cannot build the request: %s", s->name,
		    rv == -EINVAL ? "token or user unusable in a "
				    "header"
				  : strerror(-rv));
		http_request_close(req);
		return rv;
	}
	http_request_set_timeouts(
	    req, total,
	    total < SRD_CONNECT_TIMEOUT_MS ? total : SRD_CONNECT_TIMEOUT_MS);
	http_request_set_max_response(req, max_response);
	http_request_set_callback(req, srd_http_done, call);
	rv = http_request_start(req);
	if (rv < 0) {
		site_result_set(&call->result, SITE_ERR_INTERNAL,
				"site %s: cannot start the request: %s",
				s->name, strerror(-rv));
		http_request_close(req);
		return rv;
	}
	call->io = req;
	return 0;
}

static int srd_submit(struct site *s, const struct site_cred *as,
		      const struct site_submit *req, struct site_call *call)
{
	char *body = NULL, err[256];
	int rv;

	rv = site_slurmrestd_submit_body(req, s->cfg.partition, &body, err,
					 sizeof(err));
	if (rv < 0) {
		site_result_set(&call->result, SITE_ERR_INTERNAL, "%s", err);
		return rv;
	}
	rv = srd_send(s, as, call, "POST", "/job/submit", body, 0);
	free(body);
	return rv;
}

static int srd_get(struct site *s, const struct site_cred *as, uint32_t job_id,
		   struct site_call *call)
{
	char path[64];

	snprintf(path, sizeof(path), "/job/%" PRIu32, job_id);
	return srd_send(s, as, call, "GET", path, NULL, 0);
}

static int srd_list(struct site *s, const struct site_cred *as,
		    int64_t update_time, struct site_call *call)
{
	char path[64];

	if (update_time > 0)
		snprintf(path, sizeof(path), "/jobs?update_time=%" PRId64,
			 update_time);
	else
		snprintf(path, sizeof(path), "/jobs");
	return srd_send(s, as, call, "GET", path, NULL,
			SLURMRESTD_LIST_MAX_RESPONSE);
}

static int srd_find_by_tag(struct site *s, const struct site_cred *as,
			   const char *tag, struct site_call *call)
{
	/* every job in memory; parse keeps those carrying the tag */
	return srd_send(s, as, call, "GET", "/jobs", NULL,
			SLURMRESTD_LIST_MAX_RESPONSE);
}

static int srd_cancel(struct site *s, const struct site_cred *as,
		      uint32_t job_id, struct site_call *call)
{
	char path[64];

	snprintf(path, sizeof(path), "/job/%" PRIu32, job_id);
	return srd_send(s, as, call, "DELETE", path, NULL, 0);
}

static int srd_ping(struct site *s, const struct site_cred *as,
		    struct site_call *call)
{
	return srd_send(s, as, call, "GET", "/ping", NULL, 0);
}

static void srd_abort(struct site_call *call)
{
	struct srd_parse *p = call->parse;

	http_request_close(call->io);
	call->io = NULL;
	if (p) {
		/* its worker may be running: it drops the result when done */
		p->call = NULL;
		call->parse = NULL;
	}
}

/* ------------------------------------------------------------- site */

static int srd_open(struct site *s, char *err, size_t errlen)
{
	struct srd *p;
	char kerr[256];
	int rv;

	if (s->cfg.auth == SITE_AUTH_MUNGE &&
	    (strncmp(s->cfg.url, "unix:/", 6) || !strstr(s->cfg.url, "%u") ||
	     strstr(strstr(s->cfg.url, "%u") + 2, "%"))) {
		snprintf(err, errlen,
			 "site %s: auth munge needs url = "
			 "unix:/PATH/%%u.sock (one rest_auth/local slurmrestd "
			 "per user), not %s",
			 s->name, s->cfg.url);
		return -EINVAL;
	}
	if (!s->http) {
		snprintf(err, errlen, "site %s: no HTTP client", s->name);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "site %s: out of memory", s->name);
		return -ENOMEM;
	}
	p->now = wall_now;
	if (s->cfg.auth == SITE_AUTH_JWT_KEY) {
		if (!s->cfg.jwt_key || !*s->cfg.jwt_key) {
			snprintf(err, errlen,
				 "site %s: auth jwt-key needs jwt_key = <the "
				 "site's Slurm JWT key file>",
				 s->name);
			free(p);
			return -EINVAL;
		}
		rv = jwt_key_load_file(s->cfg.jwt_key, "HS256", &p->key, kerr,
				       sizeof(kerr));
		if (rv < 0) {
			snprintf(err, errlen, "site %s: jwt_key %s: %s",
				 s->name, s->cfg.jwt_key, kerr);
			free(p);
			return rv;
		}
	}
	rv = s->cfg.auth == SITE_AUTH_MUNGE
		 ? 0 /* per user socket, set at each call */
		 : http_client_set_host_limit(s->http, s->cfg.url,
					      s->cfg.max_connections);
	if (rv < 0) {
		snprintf(err, errlen,
			 "site %s: bad url '%s' (want http://host:port or "
			 "unix:/path)",
			 s->name, s->cfg.url);
		jwt_key_free(p->key);
		free(p);
		return rv;
	}
	s->priv = p;
	return 0;
}

static void srd_close(struct site *s)
{
	struct srd *p = s->priv;
	size_t i;

	if (!p)
		return;
	for (i = 0; i < SRD_TOKEN_CACHE; i++)
		token_wipe(p, &p->toks[i]);
	jwt_key_free(p->key);
	free(p);
	s->priv = NULL;
}

static void srd_debug_str(const struct site *s, char *buf, size_t len)
{
	const struct srd *p = s->priv;

	snprintf(buf, len,
		 "slurmrestd v0.0.38 tokens=%u minted=%" PRIu64
		 " reused=%" PRIu64 " dropped=%" PRIu64,
		 p->n_toks, p->minted, p->reused, p->dropped);
}

void site_slurmrestd_set_clock(struct site *s, time_t (*now)(void))
{
	struct srd *p = s->priv;

	p->now = now ? now : wall_now;
}

void site_slurmrestd_stats(const struct site *s,
			   struct site_slurmrestd_stats *st)
{
	const struct srd *p = s->priv;

	st->tokens_cached = p->n_toks;
	st->tokens_minted = p->minted;
	st->tokens_reused = p->reused;
	st->tokens_dropped = p->dropped;
}

static void srd_limits_changed(struct site *s)
{
	/* munge: set per user socket at each call */
	if (s->cfg.auth != SITE_AUTH_MUNGE)
		http_client_set_host_limit(s->http, s->cfg.url,
					   s->cfg.max_connections);
}

const struct site_ops site_slurmrestd_ops = {
    .kind = "slurmrestd",
    .open = srd_open,
    .close = srd_close,
    .submit = srd_submit,
    .get = srd_get,
    .list = srd_list,
    .find_by_tag = srd_find_by_tag,
    .cancel = srd_cancel,
    .ping = srd_ping,
    .abort = srd_abort,
    .debug_str = srd_debug_str,
    .limits_changed = srd_limits_changed,
};
