/* jobs.c: see jobs.h. */
#include "jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "credentials.h"
#include "json_util.h"
#include "log.h"
#include "ticket.h"
#include "tier.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define SUBMIT_ATTEMPTS_MAX 8
#define FINDER_WAIT_MS 250   /* behind another job's lookup: look again */
#define FINDER_SLACK_MS 1000 /* a lookup's call may take its timeout + this */
#define FIND_SETTLE_MS 5000  /* after a site failed: submits still landing */

static const char *const job_task_state_names[] = {
    JOB_TASK_STATES(TASK_STATE_NAME)};

#define USER_BUCKETS 1024

/* A user's jobs, newest first (gw_job.user_older): lists by user. */
struct user_jobs {
	struct user_jobs *next; /* in the bucket */
	struct gw_job *newest;
	char user[];
};

struct jobs {
	struct gw *gw;
	struct gw_job **by_id;
	struct gw_job **by_slurm;
	size_t n_buckets;
	size_t n_jobs;
	struct gw_job *newest, *oldest;
	size_t per_state[STORE_JOB_STATE_COUNT_];
	struct user_jobs *by_user[USER_BUCKETS];
};

/* ---- index ------------------------------------------------------- */

static uint64_t hash_str(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static size_t id_bucket(const struct jobs *js, const char *id)
{
	return hash_str(id, 1469598103934665603ull) & (js->n_buckets - 1);
}

static size_t slurm_bucket(const struct jobs *js, const char *site,
			   uint32_t slurm_id)
{
	uint64_t h = hash_str(site, 1469598103934665603ull);

	h = (h ^ slurm_id) * 1099511628211ull;
	return h & (js->n_buckets - 1);
}

static void index_slurm(struct jobs *js, struct gw_job *j)
{
	size_t b;

	if (j->in_slurm_index || j->rec.slurm_job_id == STORE_NULL)
		return;
	b = slurm_bucket(js, j->rec.site, (uint32_t)j->rec.slurm_job_id);
	j->slurm_next = js->by_slurm[b];
	js->by_slurm[b] = j;
	j->in_slurm_index = true;
}

static int grow(struct jobs *js)
{
	size_t nb = js->n_buckets * 2, i;
	struct gw_job **by_id = calloc(nb, sizeof(*by_id));
	struct gw_job **by_slurm = calloc(nb, sizeof(*by_slurm));
	struct gw_job *j;

	if (!by_id || !by_slurm) {
		free(by_id);
		free(by_slurm);
		return -ENOMEM;
	}
	free(js->by_id);
	free(js->by_slurm);
	js->by_id = by_id;
	js->by_slurm = by_slurm;
	js->n_buckets = nb;
	for (j = js->oldest; j; j = j->newer) {
		i = id_bucket(js, j->rec.id);
		j->id_next = js->by_id[i];
		js->by_id[i] = j;
		j->in_slurm_index = false;
		index_slurm(js, j);
	}
	return 0;
}

static struct user_jobs *user_jobs_find(const struct jobs *js, const char *user)
{
	struct user_jobs *u;

	for (u = js->by_user[hash_str(user, 1469598103934665603ull) %
			     USER_BUCKETS];
	     u; u = u->next)
		if (!strcmp(u->user, user))
			return u;
	return NULL;
}

static int index_user(struct jobs *js, struct gw_job *j)
{
	struct user_jobs *u = user_jobs_find(js, j->rec.user);
	size_t b;

	if (!u) {
		u = calloc(1, sizeof(*u) + strlen(j->rec.user) + 1);
		if (!u)
			return -ENOMEM;
		strcpy(u->user, j->rec.user);
		b = hash_str(j->rec.user, 1469598103934665603ull) %
		    USER_BUCKETS;
		u->next = js->by_user[b];
		js->by_user[b] = u;
	}
	j->user_older = u->newest;
	u->newest = j;
	return 0;
}

static int index_add(struct jobs *js, struct gw_job *j)
{
	size_t b;

	if (js->n_jobs + 1 > js->n_buckets && grow(js))
		return -ENOMEM;
	if (index_user(js, j))
		return -ENOMEM;
	b = id_bucket(js, j->rec.id);
	j->id_next = js->by_id[b];
	js->by_id[b] = j;
	index_slurm(js, j);
	j->older = js->newest;
	if (js->newest)
		js->newest->newer = j;
	else
		js->oldest = j;
	js->newest = j;
	js->n_jobs++;
	js->per_state[j->rec.state]++;
	return 0;
}

struct gw_job *jobs_find(struct jobs *js, const char *id)
{
	struct gw_job *j;

	for (j = js->by_id[id_bucket(js, id)]; j; j = j->id_next)
		if (!strcmp(j->rec.id, id))
			return j;
	return NULL;
}

struct gw_job *jobs_find_slurm(struct jobs *js, const char *site,
			       uint32_t slurm_id)
{
	struct gw_job *j;

	for (j = js->by_slurm[slurm_bucket(js, site, slurm_id)]; j;
	     j = j->slurm_next)
		if (j->rec.slurm_job_id == slurm_id &&
		    !strcmp(j->rec.site, site))
			return j;
	return NULL;
}

void jobs_foreach(struct jobs *js, int (*fn)(struct gw_job *j, void *arg),
		  void *arg)
{
	struct gw_job *j;

	for (j = js->newest; j; j = j->older)
		if (fn(j, arg))
			break;
}

void jobs_foreach_user(struct jobs *js, const char *user,
		       int (*fn)(struct gw_job *j, void *arg), void *arg)
{
	struct user_jobs *u = user_jobs_find(js, user);
	struct gw_job *j;

	for (j = u ? u->newest : NULL; j; j = j->user_older)
		if (fn(j, arg))
			break;
}

size_t jobs_count(const struct jobs *js, enum store_job_state state)
{
	return js->per_state[state];
}

bool job_final(const struct gw_job *j)
{
	return store_job_state_final(j->rec.state);
}

static void set_state(struct gw_job *j, enum store_job_state s)
{
	if (j->rec.state == s)
		return;
	j->jobs->per_state[j->rec.state]--;
	j->jobs->per_state[s]++;
	dbg("job %s: %s -> %s", j->rec.id, store_job_state_name(j->rec.state),
	    store_job_state_name(s));
	j->rec.state = s;
	j->rec.updated_at = time(NULL);
	j->dirty |= STORE_F(STATE) | STORE_F(UPDATED_AT);
}

static void set_str(char **field, const char *v)
{
	if ((!*field && !v) || (*field && v && !strcmp(*field, v)))
		return;
	free(*field);
	*field = v ? strdup(v) : NULL;
}

/* The site said "try again" (msg), or took it / it ended (NULL). */
static void set_waiting(struct gw_job *j, const char *msg)
{
	if (!msg) {
		free(j->waiting_msg);
		j->waiting_msg = NULL;
		return;
	}
	if (!j->waiting_msg)
		j->waiting_since = (int64_t)time(NULL);
	set_str(&j->waiting_msg, msg);
}

/*
 * A submit that may have reached the site while its Slurm id has not
 * reached us (a crash, a lost answer, the site down): the node may report
 * on a Slurm id we cannot place yet.  Counted per site: node reports for
 * unknown ids there wait (api_node.c) rather than be filed under the
 * Slurm id alone.
 */
static bool awaiting_id(const struct gw_job *j)
{
	return j->rec.intent && !strcmp(j->rec.intent, "submit") &&
	       j->rec.slurm_job_id == STORE_NULL;
}

static void count_awaiting(struct gw_job *j, bool before)
{
	bool now = awaiting_id(j);

	if (!j->site || now == before)
		return;
	if (now) {
		j->site->awaiting_id++;
		j->site->awaiting_since_ms = loop_clock_ms();
	} else if (j->site->awaiting_id)
		j->site->awaiting_id--;
}

static void set_intent(struct gw_job *j, const char *v)
{
	bool before = awaiting_id(j);

	set_str(&j->rec.intent, v);
	count_awaiting(j, before);
}

void output_stream_key(const char *gw_job_id, const char *stream, char *buf,
		       size_t len)
{
	if (gw_job_id)
		snprintf(buf, len, "%s-%s", gw_job_id, stream);
	else
		snprintf(buf, len, "%s", stream);
}

/* ---- JSON ---------------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *int_or_null(int64_t v)
{
	return v == STORE_NULL ? json_null() : json_integer(v);
}

json_t *job_to_json(const struct gw_job *j)
{
	const struct store_job *r = &j->rec;
	const struct tier *t = j->jobs->gw->cfg->tiers && r->tier
				   ? tier_find(j->jobs->gw->cfg->tiers, r->tier)
				   : NULL;
	json_t *o = json_object(), *slurm = json_object(),
	       *usage = json_object();
	json_t *err = json_null();

	json_object_set_new(slurm, "job_id", int_or_null(r->slurm_job_id));
	json_object_set_new(slurm, "state", str_or_null(r->slurm_state));
	json_object_set_new(slurm, "reason", str_or_null(r->reason));
	json_object_set_new(slurm, "exit_code", int_or_null(r->exit_code));
	json_object_set_new(slurm, "signal", int_or_null(r->signal));
	json_object_set_new(usage, "cpu_seconds", json_real(r->cpu_seconds));
	json_object_set_new(usage, "rate", json_real(t ? t->rate : 0));
	json_object_set_new(usage, "charge", json_real(r->charge));
	if (r->error_code) {
		err = json_object();
		json_object_set_new(err, "code", json_string(r->error_code));
		json_object_set_new(err, "message",
				    str_or_null(r->error_message));
	}
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "site", json_string(r->site));
	json_object_set_new(o, "user", json_string(r->user));
	json_object_set_new(o, "tier", str_or_null(r->tier));
	json_object_set_new(o, "name", str_or_null(r->name));
	json_object_set_new(o, "state",
			    json_string(store_job_state_name(r->state)));
	json_object_set_new(o, "slurm", slurm);
	json_object_set_new(o, "created_at", json_integer(r->created_at));
	json_object_set_new(o, "updated_at", json_integer(r->updated_at));
	json_object_set_new(o, "cancel_requested",
			    json_boolean(r->cancel_requested));
	/* until the end, ended_by holds who asked to cancel: not yet true */
	json_object_set_new(o, "ended_by",
			    str_or_null(job_final(j) ? r->ended_by : NULL));
	json_object_set_new(o, "error", err);
	json_object_set_new(o, "usage", usage);
	json_object_set_new(o, "request_id", str_or_null(r->request_id));
	if (j->waiting_msg)
		json_object_set_new(o, "waiting",
				    json_pack("{s:s, s:s, s:I}", "code",
					      "site_busy", "message",
					      j->waiting_msg, "since",
					      (json_int_t)j->waiting_since));
	else
		json_object_set_new(o, "waiting", json_null());
	return o;
}

/* ---- the API's view, serialized once per change ----------------------- */

/* FNV-1a, 64 bits: enough to tell a job's views apart. */
static uint64_t fp_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	while (n--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

static uint64_t fp_str(uint64_t h, const char *s)
{
	/* NULL and "" differ: the end marker is part of the value */
	if (!s)
		return fp_bytes(h, "\xff", 1);
	return fp_bytes(h, s, strlen(s) + 1);
}

#define FP_NUM(h, v)                                                           \
	do {                                                                   \
		__typeof__(v) v_ = (v);                                        \
		h = fp_bytes(h, &v_, sizeof(v_));                              \
	} while (0)

/*
 * Everything job_to_json() reads, hashed.  A field added there must be
 * added here, or its changes would not show until another field changes.
 */
static uint64_t job_view_fp(const struct gw_job *j)
{
	const struct store_job *r = &j->rec;
	const struct tier *t = j->jobs->gw->cfg->tiers && r->tier
				   ? tier_find(j->jobs->gw->cfg->tiers, r->tier)
				   : NULL;
	uint64_t h = 0xcbf29ce484222325ull;

	h = fp_str(h, r->id);
	h = fp_str(h, r->site);
	h = fp_str(h, r->user);
	h = fp_str(h, r->tier);
	h = fp_str(h, r->name);
	FP_NUM(h, (int)r->state);
	FP_NUM(h, r->slurm_job_id);
	h = fp_str(h, r->slurm_state);
	h = fp_str(h, r->reason);
	FP_NUM(h, r->exit_code);
	FP_NUM(h, r->signal);
	FP_NUM(h, r->cpu_seconds);
	FP_NUM(h, t ? t->rate : 0.0);
	FP_NUM(h, r->charge);
	h = fp_str(h, r->error_code);
	h = fp_str(h, r->error_message);
	FP_NUM(h, r->created_at);
	FP_NUM(h, r->updated_at);
	FP_NUM(h, (int)r->cancel_requested);
	h = fp_str(h, job_final(j) ? r->ended_by : NULL);
	h = fp_str(h, r->request_id);
	h = fp_str(h, j->waiting_msg);
	FP_NUM(h, j->waiting_since);
	return h;
}

/*
 * TIERGATE_CHECK_VIEW=1 (the integration tests set it): every copy served
 * is compared with a fresh one, and a difference logged as an error.
 */
static bool check_view(void)
{
	static int on = -1;

	if (on < 0)
		on = getenv("TIERGATE_CHECK_VIEW") != NULL;
	return on;
}

const char *job_json_text(struct gw_job *j, size_t *len)
{
	uint64_t fp = job_view_fp(j);
	char *text = NULL, err[128];
	json_t *o;

	if (j->json_text && j->json_fp == fp) {
		if (!check_view()) {
			*len = j->json_len;
			return j->json_text;
		}
		o = job_to_json(j);
		if (o && json_dump_text(o, 0, &text, err, sizeof(err)) == 0 &&
		    strcmp(text, j->json_text) != 0)
			log_err("job %s: stale view copy (a field job_to_json "
				"shows is missing from job_view_fp): %s",
				j->rec.id, text);
		free(text);
		text = NULL;
		json_decref(o);
		*len = j->json_len;
		return j->json_text;
	}
	o = job_to_json(j);
	if (!o || json_dump_text(o, 0, &text, err, sizeof(err)) < 0) {
		json_decref(o);
		return NULL;
	}
	json_decref(o);
	free(j->json_text);
	j->json_text = text;
	j->json_len = strlen(text);
	j->json_fp = fp;
	*len = j->json_len;
	return text;
}

const char *job_debug_str(const struct gw_job *j, char *buf, size_t len)
{
	snprintf(buf, len, "job %s site=%s slurm=%lld user=%s tier=%s %s%s",
		 j->rec.id, j->rec.site,
		 j->rec.slurm_job_id == STORE_NULL
		     ? -1LL
		     : (long long)j->rec.slurm_job_id,
		 j->rec.user, j->rec.tier ? j->rec.tier : "-",
		 store_job_state_name(j->rec.state),
		 j->cancel_pending ? " cancel-pending" : "");
	return buf;
}

static void job_task_debug_str(const struct task *t, char *buf, size_t len)
{
	const struct gw_job *j = (const struct gw_job *)t;

	job_debug_str(j, buf, len);
}

/* ---- the job's task ------------------------------------------------ */

static void journal(struct gw_job *j, int expect_state)
{
	int rv;

	store_req_reset(&j->sreq);
	j->sreq.task = &j->task;
	if (!j->dirty) {
		/* nothing to write (a retry after a failure that was redone) */
		j->sreq.rv = 0;
		task_wake(&j->task, TASK_WAKE_WORKER);
		return;
	}
	rv = store_job_update(j->jobs->gw->store, &j->sreq, &j->rec, j->dirty,
			      expect_state);
	if (rv) {
		log_err("job %s: journal failed: %s", j->rec.id,
			store_strerror(rv));
		j->sreq.rv = rv;
		task_wake(&j->task, TASK_WAKE_WORKER);
	} else {
		/* kept until the commit says so: a failed one writes them again
		 */
		j->inflight = j->dirty;
		j->dirty = 0;
	}
	task_wait_on(&j->task, "store commit");
}

static void finish(struct gw_job *j, enum store_job_state s,
		   const char *ended_by)
{
	set_state(j, s);
	set_waiting(j, NULL);
	/* a cancel's requester ended it only if it ends cancelled */
	if (ended_by && (!j->rec.ended_by || s != STORE_JOB_CANCELLED ||
			 !j->rec.cancel_requested)) {
		set_str(&j->rec.ended_by, ended_by);
		j->dirty |= STORE_F(ENDED_BY);
	}
	set_intent(j, NULL);
	j->dirty |= STORE_F(INTENT);
	task_set_state(&j->task, FINISHING);
	journal(j, -1);
}

static const struct site_cred *submit_cred(struct gw_job *j,
					   struct site_cred *c)
{
	creds_site_cred(j->jobs->gw->creds, j->site->cfg, j->rec.user,
			j->site_user, c);
	return c;
}

/* The job's environment: the user's, plus the ticket and the tier. */
static json_t *job_environment(struct gw_job *j, char *err, size_t errlen)
{
	struct gw_config *cfg = j->jobs->gw->cfg;
	json_t *req = json_loads(j->rec.request_body, 0, NULL);
	json_t *env = json_object(), *user_env;
	struct ticket t = {0};
	const char *k;
	json_t *v;
	char *tok = NULL;

	user_env = req ? json_object_get(req, "environment") : NULL;
	json_object_set_new(env, "PATH", json_string("/usr/bin:/bin"));
	json_object_foreach(user_env, k, v) json_object_set(env, k, v);
	json_decref(req);

	snprintf(t.user, sizeof(t.user), "%s", j->site_user);
	snprintf(t.tier, sizeof(t.tier), "%s", j->rec.tier);
	snprintf(t.job_id, sizeof(t.job_id), "%s", j->rec.id);
	snprintf(t.site, sizeof(t.site), "%s", j->rec.site);
	t.iat = time(NULL);
	t.exp = t.iat + cfg->ticket_ttl_s;
	if (ticket_sign(cfg->ticket_key, &t, &tok, err, errlen)) {
		json_decref(env);
		return NULL;
	}
	json_object_set_new(env, "TIERGATE_TICKET", json_string(tok));
	explicit_bzero(tok, strlen(tok));
	free(tok);
	json_object_set_new(env, "_SLURM_SPANK_OPTION_tiergate_cpu_tier",
			    json_string(j->rec.tier));
	json_object_set_new(env,
			    "SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier",
			    json_string(j->rec.tier));
	if (j->rec.request_id)
		json_object_set_new(env, "TIERGATE_REQUEST_ID",
				    json_string(j->rec.request_id));
	return env;
}

static uint32_t req_uint(const json_t *req, const char *k)
{
	const json_t *res = json_object_get(req, "resources");
	json_int_t v = json_integer_value(json_object_get(res, k));

	return v > 0 && v < UINT32_MAX ? (uint32_t)v : 0;
}

/*
 * The job's site call, made when it first talks to the site and given
 * back once it tracks the job or ends (call_release): 1.5 KB that 100 000
 * finished jobs need not hold.  Reset for a new operation; NULL when out
 * of memory.
 */
static struct site_call *call_prepare(struct gw_job *j)
{
	if (!j->call) {
		j->call = calloc(1, sizeof(*j->call));
		if (!j->call)
			return NULL;
	}
	site_call_reset(j->call);
	j->call->task = &j->task;
	return j->call;
}

static void call_release(struct gw_job *j)
{
	if (!j->call || site_call_in_flight(j->call))
		return;
	site_call_reset(j->call);
	free(j->call);
	j->call = NULL;
}

static int start_submit(struct gw_job *j)
{
	struct site_submit sub = {0};
	struct site_cred cred;
	char err[256], out[96];
	json_t *env, *req;
	int rv;

	env = job_environment(j, err, sizeof(err));
	if (!env) {
		log_err("job %s: cannot sign its ticket: %s", j->rec.id, err);
		return -EINVAL;
	}
	req = json_loads(j->rec.request_body, 0, NULL);
	/* named after the gateway id: Slurm ids repeat, e.g. after a reset,
	 * and another user's old slurm-%j.out would make the job fail */
	snprintf(out, sizeof(out), "/tmp/tiergate-%s.out", j->rec.id);
	sub.std_out = out;
	sub.tag = j->rec.id;
	sub.script = json_string_value(json_object_get(req, "script"));
	sub.partition = j->site->cfg->partition;
	sub.environment = env;
	sub.tasks = req_uint(req, "ntasks");
	sub.cpus_per_task = req_uint(req, "cpus_per_task");
	sub.time_limit_min = req_uint(req, "time_limit_min");
	if (!call_prepare(j)) {
		json_decref(env);
		json_decref(req);
		return -ENOMEM;
	}
	j->site->upstream_calls++;
	rv = site_submit(j->site->site, submit_cred(j, &cred), &sub, j->call);
	json_decref(env);
	json_decref(req);
	task_wait_on(&j->task, "site submit");
	return rv;
}

/*
 * Lookups by tag are shared on sites whose lists show every job
 * (gw_site_lists_all): a list of the site's jobs that started late enough
 * answers it (the poller's full lists and other jobs' lookups keep one
 * fresh), and one lookup per site is in flight for everyone waiting.
 * After a site's trouble left hundreds of submits unresolved, that is one
 * call per round instead of hundreds of full lists.  Elsewhere each job
 * looks with its own token.
 */
static bool find_shared(const struct gw_job *j)
{
	return gw_site_lists_all(j->site);
}

static const struct site_cred *poll_cred(struct gw_job *j, struct site_cred *c)
{
	if (!creds_poll_cred(j->jobs->gw->creds, j->site->cfg, time(NULL), 0,
			     c))
		return submit_cred(j, c);
	return c;
}

/* The longest a call to the job's site may take. */
static uint64_t call_time_ms(const struct gw_job *j)
{
	return (uint64_t)j->site->cfg->request_timeout_s * 1000u;
}

/*
 * When a list of the site's jobs can say "ours is not there": after our
 * submit had time to land (find_after_ms), and a while after the site's
 * last failure: a submit that slurmrestd still retries towards a
 * slurmctld coming back lands just after it answers again (test 0310:
 * slurmctld restarted; a list made at once missed the job, and the
 * gateway submitted it twice).
 */
static uint64_t find_not_before(const struct gw_job *j)
{
	uint64_t settle =
	    j->site->last_fail_ms ? j->site->last_fail_ms + FIND_SETTLE_MS : 0;

	return settle > j->find_after_ms ? settle : j->find_after_ms;
}

static int start_find(struct gw_job *j)
{
	struct site_cred cred;

	if (!call_prepare(j))
		return -ENOMEM;
	j->site->upstream_calls++;
	if (find_shared(j)) {
		/* every job of the site: this answer serves all lookups */
		task_wait_on(&j->task, "site list (find by tag)");
		return site_list(j->site->site, poll_cred(j, &cred), 0,
				 j->call);
	}
	task_wait_on(&j->task, "site find-by-tag");
	return site_find_by_tag(j->site->site, submit_cred(j, &cred), j->rec.id,
				j->call);
}

static int start_cancel(struct gw_job *j)
{
	struct site_cred cred;

	if (!call_prepare(j))
		return -ENOMEM;
	j->site->upstream_calls++;
	task_wait_on(&j->task, "site cancel");
	return site_cancel(j->site->site, submit_cred(j, &cred),
			   (uint32_t)j->rec.slurm_job_id, j->call);
}

static enum task_step enter(struct gw_job *j, enum job_task_state s);
static enum task_step resolve_find(struct gw_job *j,
				   const struct site_job *jobs, size_t n_jobs);

/* BACKOFF for ms, then `then`; `why` says what the job waits for. */
static enum task_step sleep_then(struct gw_job *j, enum job_task_state then,
				 uint64_t ms, const char *why)
{
	j->after_backoff = then;
	task_set_state(&j->task, BACKOFF);
	task_sleep(&j->task, ms);
	task_wait_on(&j->task, why);
	return TASK_WAIT;
}

/*
 * FINDING, not yet: behind another job's lookup, or until a submit of
 * unknown outcome had time to land.  Look again after ms; not a failure.
 */
static enum task_step wait_for_finder(struct gw_job *j, uint64_t ms)
{
	return sleep_then(j, FINDING, ms,
			  "a lookup by tag that can see our submit");
}

/* A failure: wait longer each time in a row, then `then`. */
static enum task_step backoff(struct gw_job *j, enum job_task_state then)
{
	uint64_t ms = BACKOFF_MIN_MS << (j->attempts < 6 ? j->attempts : 6);

	j->attempts++;
	return sleep_then(j, then, ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms,
			  "backoff");
}

/*
 * A site call that could not even start.  What time may cure (the site
 * down, out of memory) backs off; what it cannot (no usable credential, a
 * ticket that cannot be signed, a bad request) ends the job as rejected, or
 * for a cancel stops asking, instead of retrying for ever.
 */
static enum task_step not_started(struct gw_job *j, enum job_task_state s,
				  int rv)
{
	const struct site_result *r = j->call ? &j->call->result : NULL;
	bool done = r && site_call_done(j->call);
	bool hopeless =
	    rv == -EINVAL || rv == -EACCES || rv == -EPERM ||
	    (done && r->err != SITE_ERR_OK && !site_err_transient(r->err));

	log_err("job %s: cannot start %s: %s%s%s", j->rec.id,
		job_task_state_names[s], strerror(-rv), done ? ": " : "",
		done ? r->message : "");
	if (!hopeless)
		return backoff(j, s);
	if (s == CANCELLING) {
		j->cancel_pending = false;
		return enter(j, TRACKING);
	}
	if (s == SUBMITTING && j->rec.submit_attempts <= 1) {
		set_str(&j->rec.error_code,
			done ? site_err_api_code(r->err) : "internal");
		set_str(&j->rec.error_message,
			done && r->message[0]
			    ? r->message
			    : "the job could not be prepared for the site");
		j->dirty |= STORE_F(ERROR_CODE) | STORE_F(ERROR_MESSAGE);
		finish(j, STORE_JOB_REJECTED, "gateway");
		return TASK_WAIT;
	}
	/* a retry might have reached the site before: keep looking */
	return backoff(j, s);
}

/* Go to `s` and start its call; failures to even start back off. */
static enum task_step enter(struct gw_job *j, enum job_task_state s)
{
	int rv = 0;

	if ((s == FINDING || s == SUBMITTING || s == CANCELLING) &&
	    !gw_site_allows(j->site))
		return backoff(j, s);
	task_set_state(&j->task, s);
	switch (s) {
	case FINDING: {
		uint64_t now = loop_clock_ms(), after = find_not_before(j);

		/* a list begun late enough answers it */
		if (find_shared(j) && j->site->tagged_at_ms > after)
			return resolve_find(j, j->site->tagged,
					    j->site->n_tagged);
		/* one begun sooner would prove nothing */
		if (now < after)
			return wait_for_finder(j, after - now);
		if (find_shared(j)) {
			/* another job's lookup is on its way: its answer */
			if (now < j->site->finder_until_ms)
				return wait_for_finder(j, FINDER_WAIT_MS);
			j->site->finder_until_ms =
			    now + call_time_ms(j) + FINDER_SLACK_MS;
		}
		rv = start_find(j);
		if (rv && find_shared(j))
			j->site->finder_until_ms =
			    0; /* never left: others go */
		break;
	}
	case SUBMITTING:
		rv = start_submit(j);
		break;
	case CANCELLING:
		rv = start_cancel(j);
		break;
	case MARKING:
		set_state(j, STORE_JOB_SUBMITTING);
		set_intent(j, "submit");
		j->rec.intent_at = time(NULL);
		j->rec.submit_attempts++;
		j->dirty |= STORE_F(INTENT) | STORE_F(INTENT_AT) |
			    STORE_F(SUBMIT_ATTEMPTS);
		journal(j, -1);
		break;
	case TRACKING:
		call_release(j); /* the poller tracks it from here */
		task_wait_idle(&j->task, "site poller");
		/* what arrived while we were busy elsewhere was not a wake here
		 */
		if (job_final(j) || j->dirty || j->cancel_pending)
			task_wake(&j->task, TASK_WAKE_USER);
		break;
	case JOURNALING:
	case RECORDING:
	case SAVING:
	case BACKOFF:
	case FINISHING:
		break;
	}
	if (rv)
		return not_started(j, s, rv);
	return TASK_WAIT;
}

static void record_site_id(struct gw_job *j, uint32_t slurm_id)
{
	bool before = awaiting_id(j);

	set_waiting(j, NULL);
	j->slurm_id_at_ms = loop_clock_ms();
	j->rec.slurm_job_id = slurm_id;
	set_state(j, STORE_JOB_PENDING);
	set_str(&j->rec.intent, NULL);
	count_awaiting(j, before);
	j->dirty |= STORE_F(SLURM_JOB_ID) | STORE_F(INTENT);
	index_slurm(j->jobs, j);
	task_set_state(&j->task, RECORDING);
	journal(j, -1);
}

/*
 * The job the site holds under our tag, if any: only one of this user
 * (anyone can write a comment); the oldest if several.
 */
static bool own_tagged_job(const struct gw_job *j, const struct site_job *jobs,
			   size_t n_jobs, uint32_t *id)
{
	size_t i, n = 0;

	for (i = 0; i < n_jobs; i++) {
		if (strcmp(jobs[i].tag, j->rec.id) ||
		    strcmp(jobs[i].user, j->site_user))
			continue;
		if (!n++ || jobs[i].job_id < *id)
			*id = jobs[i].job_id;
	}
	if (n > 1)
		log_err("job %s: %zu Slurm jobs on %s carry its tag; adopting "
			"the oldest, %u",
			j->rec.id, n, j->rec.site, *id);
	return n > 0;
}

/* FINDING, answered by `jobs` (every tagged job the site holds): adopt
 * ours, or submit again (or end, if cancelled meanwhile). */
static enum task_step resolve_find(struct gw_job *j,
				   const struct site_job *jobs, size_t n_jobs)
{
	uint32_t id = 0;

	if (own_tagged_job(j, jobs, n_jobs, &id)) {
		log_info("job %s: adopted Slurm job %u on %s (found by tag)",
			 j->rec.id, id, j->rec.site);
		j->jobs->gw->m.jobs_adopted++;
		j->attempts = 0;
		record_site_id(j, id);
		return TASK_WAIT;
	}
	if (j->cancel_pending) {
		finish(j, STORE_JOB_CANCELLED,
		       j->rec.ended_by ? NULL
				       : "gateway:cancelled before submit");
		return TASK_WAIT;
	}
	/* the site has none: the journaled intent stands, submit */
	j->rec.submit_attempts++;
	j->dirty |= STORE_F(SUBMIT_ATTEMPTS);
	return enter(j, SUBMITTING);
}

static enum task_step after_site_call(struct gw_job *j)
{
	struct site_result *r = &j->call->result;
	bool transient = site_err_transient(r->err) || r->outcome_unknown;

	/*
	 * A lookup must begin after this to see what the submit did; one of
	 * unknown outcome may still be on its way into slurmctld behind
	 * slurmrestd: give it the time a call may take.
	 */
	if (j->task.state == SUBMITTING)
		j->find_after_ms = loop_clock_ms() +
				   (r->outcome_unknown ? call_time_ms(j) : 0);
	gw_site_record_result(j->site, r);
	switch ((enum job_task_state)j->task.state) {
	case FINDING:
		if (find_shared(j)) {
			j->site->finder_until_ms = 0; /* the others may go */
			if (r->err == SITE_ERR_OK &&
			    gw_site_set_tagged(j->site, r, j->call->started_ms))
				log_warn("job %s: out of memory keeping %s's "
					 "tagged jobs",
					 j->rec.id, j->rec.site);
		}
		if (r->err == SITE_ERR_OK)
			return resolve_find(j, r->jobs, r->n_jobs);
		if (r->err == SITE_ERR_NOT_FOUND)
			return resolve_find(j, NULL, 0);
		return backoff(j, FINDING);
	case SUBMITTING:
		if (r->err == SITE_ERR_OK) {
			gw_crash_point("site_submitted");
			log_info("job %s: submitted to %s as Slurm job %u",
				 j->rec.id, j->rec.site, r->job_id);
			j->jobs->gw->m.jobs_submitted++;
			j->attempts = 0;
			record_site_id(j, r->job_id);
			return TASK_WAIT;
		}
		if (r->busy) {
			/* not applied (our connection bound was full, or the
			 * site's job table): the intent stands, submit again
			 * later; no lookup, no strike */
			log_info("job %s: submit to %s waits: %s", j->rec.id,
				 j->rec.site, r->message);
			if (r->slurm_errno) /* the site's words, not our queue
					     */
				set_waiting(j, r->message);
			return backoff(j, SUBMITTING);
		}
		if (transient) {
			log_warn(
			    "job %s: submit to %s: %s; will look for it by tag",
			    j->rec.id, j->rec.site, r->message);
			if (j->rec.submit_attempts >= SUBMIT_ATTEMPTS_MAX &&
			    !r->outcome_unknown) {
				set_str(&j->rec.error_code,
					site_err_api_code(r->err));
				set_str(&j->rec.error_message, r->message);
				j->dirty |= STORE_F(ERROR_CODE) |
					    STORE_F(ERROR_MESSAGE);
				finish(j, STORE_JOB_REJECTED,
				       "gateway:site unavailable");
				return TASK_WAIT;
			}
			return backoff(j, FINDING);
		}
		log_info("job %s: %s refused it: %s", j->rec.id, j->rec.site,
			 r->message);
		set_str(&j->rec.error_code, site_err_api_code(r->err));
		set_str(&j->rec.error_message, r->message);
		j->dirty |= STORE_F(ERROR_CODE) | STORE_F(ERROR_MESSAGE);
		finish(j, STORE_JOB_REJECTED, "site");
		return TASK_WAIT;
	case CANCELLING:
		if (r->err == SITE_ERR_OK || r->err == SITE_ERR_NOT_FOUND) {
			j->cancel_pending = false;
			j->attempts = 0;
			return enter(j, TRACKING);
		}
		if (!transient) {
			/* asking again gets the same answer: stop asking and
			 * keep tracking the job (it ends as the site says) */
			log_err(
			    "job %s: %s refused to cancel Slurm job %lld: %s",
			    j->rec.id, j->rec.site,
			    (long long)j->rec.slurm_job_id, r->message);
			j->cancel_pending = false;
			j->attempts = 0;
			return enter(j, TRACKING);
		}
		return backoff(j, CANCELLING);
	case JOURNALING:
	case MARKING:
	case RECORDING:
	case TRACKING:
	case SAVING:
	case BACKOFF:
	case FINISHING:
		break;
	}
	return TASK_WAIT;
}

static enum task_step after_journal(struct gw_job *j)
{
	int rv = j->sreq.rv;

	if (rv)
		j->dirty |= j->inflight; /* not on disk: write them again */
	j->inflight = 0;
	if (rv) {
		/* disk full, I/O error: keep the job in memory, retry */
		log_err("job %s: journal in %s failed: %s", j->rec.id,
			job_task_state_names[j->task.state],
			store_strerror(rv));
		return backoff(j, (enum job_task_state)j->task.state);
	}
	switch ((enum job_task_state)j->task.state) {
	case JOURNALING:
		/* the API was answered by on_created when the insert committed
		 */
		if (j->cancel_pending) {
			finish(j, STORE_JOB_CANCELLED, NULL);
			return TASK_WAIT;
		}
		return enter(j, MARKING);
	case MARKING:
		gw_crash_point("submit_journaled");
		if (j->cancel_pending && j->rec.submit_attempts <= 1) {
			finish(j, STORE_JOB_CANCELLED,
			       "gateway:cancelled before submit");
			return TASK_WAIT;
		}
		/* a retry (or a restart) never submits blindly */
		return enter(j,
			     j->rec.submit_attempts > 1 ? FINDING : SUBMITTING);
	case RECORDING:
	case SAVING:
		if (j->dirty) {
			/* changed while the last write was in flight */
			task_set_state(&j->task, SAVING);
			journal(j, -1);
			return TASK_WAIT;
		}
		if (job_final(j)) {
			task_set_state(&j->task, FINISHING);
			return TASK_DONE;
		}
		if (j->cancel_pending && j->rec.slurm_job_id != STORE_NULL)
			return enter(j, CANCELLING);
		return enter(j, TRACKING);
	case FINISHING:
		return TASK_DONE;
	case FINDING:
	case SUBMITTING:
	case TRACKING:
	case CANCELLING:
	case BACKOFF:
		break;
	}
	return TASK_WAIT;
}

static enum task_step job_step(struct task *t, unsigned wake)
{
	struct gw_job *j = (struct gw_job *)t;

	if ((wake & TASK_WAKE_CANCEL) && !job_final(j))
		j->cancel_pending = true; /* applied below, in its turn */

	switch ((enum job_task_state)t->state) {
	case JOURNALING:
	case MARKING:
	case RECORDING:
	case SAVING:
	case FINISHING:
		if (store_req_pending(&j->sreq))
			return TASK_WAIT;
		if (!(wake & (TASK_WAKE_WORKER | TASK_WAKE_START)) &&
		    t->state != SAVING)
			return TASK_WAIT;
		if (wake & TASK_WAKE_START) {
			/* resumed from the store after a restart */
			if (j->cancel_pending &&
			    j->rec.slurm_job_id == STORE_NULL &&
			    j->rec.state == STORE_JOB_ACCEPTED) {
				finish(j, STORE_JOB_CANCELLED,
				       "gateway:cancelled before submit");
				return TASK_WAIT;
			}
			if (j->rec.state == STORE_JOB_ACCEPTED)
				return enter(j, MARKING);
			if (j->rec.state == STORE_JOB_SUBMITTING) {
				/* what our last life sent may still be landing
				 */
				j->find_after_ms =
				    loop_clock_ms() + call_time_ms(j);
				return enter(j, FINDING);
			}
			return enter(j,
				     j->cancel_pending ? CANCELLING : TRACKING);
		}
		return after_journal(j);
	case FINDING:
	case SUBMITTING:
	case CANCELLING:
		if (!j->call || !site_call_done(j->call))
			return TASK_WAIT;
		return after_site_call(j);
	case BACKOFF:
		if (j->after_backoff == CANCELLING && job_final(j)) {
			/* it ended while a cancel waited to be retried: the
			 * cancel has nothing left to do, the end is saved */
			task_sleep_stop(t);
			j->cancel_pending = false;
			task_set_state(t, SAVING);
			journal(j, -1);
			return TASK_WAIT;
		}
		if (j->after_backoff == SUBMITTING && j->cancel_pending) {
			/* cancelled while waiting to submit (a site whose
			 * job table is full can keep it here for hours):
			 * submit nothing new, settle it now */
			task_sleep_stop(t);
			return enter(j, FINDING);
		}
		if (!(wake & TASK_WAKE_TIMER))
			return TASK_WAIT;
		if (j->after_backoff == MARKING ||
		    j->after_backoff == FINISHING ||
		    j->after_backoff == RECORDING ||
		    j->after_backoff == SAVING) {
			task_set_state(t, j->after_backoff);
			journal(j, -1);
			return TASK_WAIT;
		}
		return enter(j, j->after_backoff);
	case TRACKING:
		if (job_final(j) || j->dirty) {
			task_set_state(t, SAVING);
			journal(j, -1);
			return TASK_WAIT;
		}
		if (j->cancel_pending)
			return enter(j, CANCELLING);
		return TASK_WAIT;
	}
	return TASK_WAIT;
}

static void job_destroy(struct task *t)
{
	struct gw_job *j = (struct gw_job *)t;

	/* the record stays in the index: only the task ends */
	store_req_reset(&j->sreq);
	call_release(j);
}

static const struct task_ops job_task_ops = {
    .kind = "job",
    .state_names = job_task_state_names,
    .n_states = sizeof(job_task_state_names) / sizeof(job_task_state_names[0]),
    .step = job_step,
    .debug_str = job_task_debug_str,
    .destroy = job_destroy,
};

static int start_task(struct gw_job *j, enum job_task_state s)
{
	int rv = task_start(j->jobs->gw->loop, &j->task, &job_task_ops);

	if (!rv)
		j->task.state = s;
	return rv;
}

/* ---- creation and loading ------------------------------------------ */

static struct gw_job *job_alloc(struct jobs *js, struct store_job *rec)
{
	struct gw_job *j = calloc(1, sizeof(*j));
	const struct gw_site_config *sc;

	if (!j)
		return NULL;
	j->jobs = js;
	j->rec = *rec; /* takes the strings */
	j->site = gw_site_find(js->gw, rec->site);
	j->cancel_pending = rec->cancel_requested && !job_final(j);
	sc = j->site ? j->site->cfg : NULL;
	if (!sc || gw_config_map_user(sc, rec->user, j->site_user,
				      sizeof(j->site_user)))
		snprintf(j->site_user, sizeof(j->site_user), "%s", rec->user);
	count_awaiting(j, false); /* loaded mid-submit */
	return j;
}

static void new_id(char *buf, size_t len)
{
	unsigned char r[6];
	size_t i;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		for (i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)rand();
	snprintf(buf, len, "j-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
		 r[4], r[5]);
}

static void on_created(struct store_req *r)
{
	struct gw_job *j = r->arg;
	struct jobs *js = j->jobs;
	void (*cb)(struct gw_job *, int, void *) = j->created_cb;
	void *arg = j->created_arg;
	struct gw_job *other;

	j->created_cb = NULL;
	r->cb = NULL; /* from now on the task waits on its own requests */
	r->arg = NULL;
	if (r->rv == 0 && !r->existed) {
		/* durable: index it and let its task carry it */
		if (index_add(js, j) || start_task(j, JOURNALING)) {
			cb(NULL, -ENOMEM, arg);
			return;
		}
		cb(j, 0, arg);
		task_wake(&j->task, TASK_WAKE_WORKER);
		return;
	}
	/* an idempotent replay, a mismatch, or a failure: not ours */
	other = r->job ? jobs_find(js, r->job->id) : NULL;
	/* rv 1: the same request again (Idempotency-Key) */
	cb(other, r->existed ? (other ? 1 : -ENOENT) : r->rv, arg);
	store_req_reset(r);
	store_job_clear(&j->rec);
	free(j);
}

int jobs_create(struct jobs *js, const struct job_request *req,
		void (*cb)(struct gw_job *j, int rv, void *arg), void *arg)
{
	struct store_job rec;
	struct gw_job *j;
	char id[32];
	int rv;

	store_job_init(&rec);
	new_id(id, sizeof(id));
	rec.id = strdup(id);
	rec.site = strdup(req->site);
	rec.user = strdup(req->user);
	rec.tier = strdup(req->tier);
	rec.name = req->name ? strdup(req->name) : NULL;
	rec.state = STORE_JOB_ACCEPTED;
	rec.request_body = strdup(req->request_body);
	rec.idem_key =
	    req->idempotency_key ? strdup(req->idempotency_key) : NULL;
	rec.body_hash = req->body_hash ? strdup(req->body_hash) : NULL;
	rec.request_id = req->request_id ? strdup(req->request_id) : NULL;
	rec.tag = strdup(id);
	rec.created_at = rec.updated_at = time(NULL);
	j = job_alloc(js, &rec);
	if (!j || !rec.id || !rec.site || !rec.user || !rec.request_body) {
		if (j)
			store_job_clear(&j->rec);
		else
			store_job_clear(&rec);
		free(j);
		return -ENOMEM;
	}
	j->created_cb = cb;
	j->created_arg = arg;
	j->sreq.cb = on_created;
	j->sreq.arg = j;
	rv = store_job_insert(js->gw->store, &j->sreq, &j->rec);
	if (rv) {
		store_job_clear(&j->rec);
		free(j);
	}
	return rv;
}

static int load_one(struct store_job *rec, void *arg)
{
	struct jobs *js = arg;
	struct gw_job *j = job_alloc(js, rec);

	free(rec); /* job_alloc took its strings */
	if (!j || index_add(js, j))
		return -ENOMEM;
	if (job_final(j))
		return 0;
	if (!j->site) {
		log_err(
		    "job %s: site '%s' is not configured any more; left as %s",
		    j->rec.id, j->rec.site, store_job_state_name(j->rec.state));
		return 0;
	}
	return start_task(j, JOURNALING) ? -ENOMEM : 0;
}

int jobs_load(struct jobs *js, size_t *n_loaded)
{
	uint64_t n = 0;
	/* finished jobs never need their request body again */
	int rv = store_load_all(js->gw->store, STORE_LOAD_BODY_UNFINISHED,
				load_one, js, &n);

	if (n_loaded)
		*n_loaded = (size_t)n;
	return rv;
}

int jobs_new(struct gw *gw, struct jobs **out)
{
	struct jobs *js = calloc(1, sizeof(*js));

	if (!js)
		return -ENOMEM;
	js->gw = gw;
	js->n_buckets = 1024;
	js->by_id = calloc(js->n_buckets, sizeof(*js->by_id));
	js->by_slurm = calloc(js->n_buckets, sizeof(*js->by_slurm));
	if (!js->by_id || !js->by_slurm) {
		jobs_free(js);
		return -ENOMEM;
	}
	*out = js;
	return 0;
}

void jobs_park(struct jobs *js)
{
	struct gw_job *j;
	size_t n = 0;

	if (!js)
		return;
	for (j = js->newest; j; j = j->older) {
		if (!j->task.ops || j->task.destroyed)
			continue;
		task_abandon(&j->task, "shutdown");
		n++;
	}
	if (n)
		log_info(
		    "%zu unfinished job(s) parked; they resume at the next "
		    "start",
		    n);
}

void jobs_free(struct jobs *js)
{
	struct gw_job *j, *older;
	size_t i;

	if (!js)
		return;
	/* after loop_free: no task step can run any more */
	for (j = js->newest; j; j = older) {
		older = j->older;
		free(j->waiting_msg);
		free(j->json_text);
		store_req_reset(&j->sreq);
		if (j->call)
			site_result_clear(&j->call->result);
		free(j->call);
		store_job_clear(&j->rec);
		free(j);
	}
	for (i = 0; i < USER_BUCKETS; i++) {
		while (js->by_user[i]) {
			struct user_jobs *u = js->by_user[i];

			js->by_user[i] = u->next;
			free(u);
		}
	}
	free(js->by_id);
	free(js->by_slurm);
	free(js);
}

/* ---- what others tell a job ---------------------------------------- */

#define RECOVERED_SPACING_MS 20

struct recovered_ctx {
	const struct gw_site *s;
	unsigned n;
};

static int retry_now(struct gw_job *j, void *arg)
{
	struct recovered_ctx *c = arg;

	if (j->site != c->s || job_final(j) || !j->task.ops ||
	    j->task.destroyed || j->task.state != BACKOFF ||
	    (j->after_backoff != FINDING && j->after_backoff != SUBMITTING &&
	     j->after_backoff != CANCELLING))
		return 0;
	/* a few at a time: not every waiting job at once at a site that
	 * has just come back */
	task_sleep(&j->task, (uint64_t)c->n++ * RECOVERED_SPACING_MS);
	return 0;
}

void jobs_site_recovered(struct jobs *js, const struct gw_site *s)
{
	struct recovered_ctx c = {s, 0};

	jobs_foreach(js, retry_now, &c);
	if (c.n)
		log_info(
		    "site %s answers again: %u job%s waiting for it retry now",
		    s->cfg->name, c.n, c.n == 1 ? "" : "s");
}

void job_request_cancel(struct gw_job *j, const char *who)
{
	if (job_final(j))
		return;
	if (!j->rec.cancel_requested) {
		j->rec.cancel_requested = true;
		j->dirty |= STORE_F(CANCEL_REQUESTED);
		set_str(&j->rec.ended_by, who);
		j->dirty |= STORE_F(ENDED_BY);
		j->rec.updated_at = time(NULL);
	}
	if (j->task.ops && !j->task.destroyed)
		task_cancel(&j->task, who);
}

static enum store_job_state from_tg(enum tg_job_state s)
{
	int st = store_job_state_parse(tg_job_state_name(s));

	return st < 0 ? STORE_JOB_UNKNOWN : (enum store_job_state)st;
}

void job_apply_site(struct gw_job *j, const struct site_job *sj)
{
	const struct slurm_status *st = &sj->status;
	enum store_job_state s = from_tg(st->state);

	if (job_final(j))
		return;
	if (!j->rec.slurm_state || strcmp(j->rec.slurm_state, st->slurm_name)) {
		set_str(&j->rec.slurm_state, st->slurm_name);
		j->dirty |= STORE_F(SLURM_STATE);
	}
	if (!j->rec.reason || strcmp(j->rec.reason, st->reason)) {
		set_str(&j->rec.reason, st->reason);
		j->dirty |= STORE_F(REASON);
	}
	if (st->exit.known) {
		j->rec.exit_code = st->exit.code;
		j->rec.signal = st->exit.signal ? st->exit.signal : STORE_NULL;
		j->dirty |= STORE_F(EXIT_CODE) | STORE_F(SIGNAL);
	}
	if (j->site && sj->start_time > 0 && sj->submit_time > 0 &&
	    sj->start_time >= sj->submit_time &&
	    (j->rec.state == STORE_JOB_PENDING ||
	     j->rec.state == STORE_JOB_SUBMITTING) &&
	    s != STORE_JOB_PENDING && s != STORE_JOB_CANCELLED)
		gw_site_queue_wait(j->site, sj->start_time - sj->submit_time);
	if (s != STORE_JOB_ACCEPTED && s != STORE_JOB_SUBMITTING)
		set_state(j, s);
	/*
	 * Who ended it: whoever asked to cancel (kept in ended_by since the
	 * request) only if it did end cancelled; a job that completed, failed
	 * or timed out first, the cancel racing its end, was ended by the site.
	 */
	if (store_job_state_final(s) &&
	    (!j->rec.ended_by ||
	     !(s == STORE_JOB_CANCELLED && j->rec.cancel_requested))) {
		set_str(&j->rec.ended_by, "site");
		j->dirty |= STORE_F(ENDED_BY);
	}
	if (j->dirty && j->task.ops && !j->task.destroyed)
		task_wake(&j->task, TASK_WAKE_USER);
}

void job_apply_missing(struct gw_job *j)
{
	if (job_final(j) || j->rec.slurm_job_id == STORE_NULL)
		return;
	/* never a guessed completed/failed: the plugin's events may still
	 * tell; until then the honest answer is unknown */
	log_warn("job %s: %s no longer knows Slurm job %lld; state unknown",
		 j->rec.id, j->rec.site, (long long)j->rec.slurm_job_id);
	set_state(j, STORE_JOB_UNKNOWN);
	if (j->task.ops && !j->task.destroyed)
		task_wake(&j->task, TASK_WAKE_USER);
}

uint64_t job_event_update(const struct gw_job *j, const json_t *ev,
			  struct store_job *upd)
{
	const char *kind = json_string_value(json_object_get(ev, "kind"));
	const char *step = json_string_value(json_object_get(ev, "step"));
	const json_t *code = json_object_get(ev, "exit_code");
	const struct tier *t =
	    j->jobs->gw->cfg->tiers && j->rec.tier
		? tier_find(j->jobs->gw->cfg->tiers, j->rec.tier)
		: NULL;
	uint64_t fields = 0;

	store_job_init(upd);
	upd->id = strdup(j->rec.id);
	if (!kind || !step)
		return 0;
	if (!strcmp(kind, "step_end")) {
		/* increments: the store adds them (store_event_insert) */
		upd->cpu_seconds =
		    json_number_value(json_object_get(ev, "cpu_seconds"));
		upd->charge = upd->cpu_seconds * (t ? t->rate : 0);
		fields |= STORE_F(CPU_SECONDS) | STORE_F(CHARGE);
	}
	if (strcmp(kind, "task_exit") || strcmp(step, "batch") ||
	    !json_is_integer(code))
		return fields;
	upd->exit_code = json_integer_value(code);
	fields |= STORE_F(EXIT_CODE);
	if (j->rec.state == STORE_JOB_UNKNOWN) {
		/* the site forgot the job before its end was seen */
		upd->state = upd->exit_code == 0 ? STORE_JOB_COMPLETED
						 : STORE_JOB_FAILED;
		upd->ended_by = strdup("site");
		fields |= STORE_F(STATE) | STORE_F(ENDED_BY);
	}
	return fields;
}

void job_apply_update(struct gw_job *j, const struct store_job *upd,
		      uint64_t fields)
{
	if (fields & STORE_F(CPU_SECONDS))
		j->rec.cpu_seconds += upd->cpu_seconds;
	if (fields & STORE_F(CHARGE))
		j->rec.charge += upd->charge;
	if (fields & STORE_F(EXIT_CODE))
		j->rec.exit_code = upd->exit_code;
	if (fields & STORE_F(ENDED_BY))
		set_str(&j->rec.ended_by, upd->ended_by);
	if (fields & STORE_F(STATE)) {
		log_info("job %s: final state %s from the node's report (the "
			 "site had forgotten it)",
			 j->rec.id, store_job_state_name(upd->state));
		set_state(j, upd->state);
		/* already on disk, with the event */
		j->dirty &= ~(STORE_F(STATE) | STORE_F(UPDATED_AT));
	}
}
