/* site_poller.c: see site_poller.h. */
#include "site_poller.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "credentials.h"
#include "jobs.h"
#include "log.h"
#include "site.h"
#include "task.h"

#define POLLER_STATES(X) X(SLEEPING) X(LISTING)
enum poller_state { POLLER_STATES(TASK_STATE_ENUM) };
static const char *const poller_state_names[] = {
    POLLER_STATES(TASK_STATE_NAME)};

#define FULL_LIST_EVERY 10
/* Slurm's SlurmUser sees every job; see docs/architecture.md */

struct site_poller {
	struct task task;
	struct gw *gw;
	struct gw_site *s;
	struct site_call call;
	int64_t update_time; /* of the last answer, for ?update_time= */
	int64_t list_started;
	uint64_t n;
	uint64_t n_full; /* full lists made */
	bool full;
	bool saw_down; /* the breaker was not closed since the last good poll */
	/* whose token the list in flight used (see apply) */
	char listed_as[64];
};

struct missing_ctx {
	struct gw_site *s;
	const struct site_result *r;
	uint64_t started_ms;
	const char *only_user; /* NULL: every job of the site */
};

static int mark_missing(struct gw_job *j, void *arg)
{
	struct missing_ctx *m = arg;

	if (m->only_user && strcmp(j->site_user, m->only_user))
		return 0;
	/* a job whose id came after the listing started is not in it */
	if (j->site == m->s && !job_final(j) &&
	    j->rec.slurm_job_id != STORE_NULL &&
	    j->slurm_id_at_ms < m->started_ms &&
	    !site_result_find(m->r, (uint32_t)j->rec.slurm_job_id))
		job_apply_missing(j);
	return 0;
}

static void apply(struct site_poller *p)
{
	const struct site_result *r = &p->call.result;
	size_t i;

	for (i = 0; i < r->n_jobs; i++) {
		const struct site_job *sj = &r->jobs[i];
		struct gw_job *j =
		    jobs_find_slurm(p->gw->jobs, p->s->cfg->name, sj->job_id);

		/* by id only: a tag (the job's comment) is anyone's to write;
		 * jobs without an id yet are the job task's (FINDING) */
		if (j)
			job_apply_site(j, sj);
	}
	/* every job of the site, as one who sees all: the jobs looking
	 * for their tag take their answer from it (jobs.c, FINDING) */
	if (p->full && !r->not_modified && gw_site_lists_all(p->s) &&
	    gw_site_set_tagged(p->s, r, p->call.started_ms))
		log_warn("site %s: out of memory keeping its tagged jobs",
			 p->s->cfg->name);
	if (p->full && !r->not_modified) {
		site_result_sort(&p->call.result);
		/*
		 * A list made with one user's token (jwt-user) may show only
		 * that user's jobs (PrivateData=jobs): a job is called missing
		 * only if it is theirs.  The token used turns over the users.
		 */
		struct missing_ctx m = {p->s, r, p->call.started_ms,
					gw_site_lists_all(p->s) ? NULL
								: p->listed_as};

		jobs_foreach(p->gw->jobs, mark_missing, &m);
	}
}

static enum task_step poller_step(struct task *t, unsigned wake)
{
	struct site_poller *p = (struct site_poller *)t;
	struct site_cred cred;
	bool full;
	int rv;

	if (wake & TASK_WAKE_CANCEL) {
		site_call_abort(&p->call);
		return TASK_DONE;
	}
	switch ((enum poller_state)t->state) {
	case SLEEPING:
		if (!(wake &
		      (TASK_WAKE_TIMER | TASK_WAKE_START | TASK_WAKE_USER)))
			return TASK_WAIT;
		task_sleep_stop(t);
		if (p->s->breaker != BREAKER_CLOSED)
			p->saw_down = true;
		full = p->n % FULL_LIST_EVERY == 0;
		/* the users' turns count full lists apart: each user's jobs
		 * get a full list made with their own token in turn */
		if (!gw_site_allows(p->s) ||
		    !creds_poll_cred(p->gw->creds, p->s->cfg, time(NULL),
				     full ? p->n_full : p->n, &cred)) {
			/* jwt-user: no token yet; events still arrive */
			task_sleep(t, p->s->cfg->poll_interval_s * 1000);
			return TASK_WAIT;
		}
		p->full = full;
		p->n++;
		p->n_full += full;
		snprintf(p->listed_as, sizeof(p->listed_as), "%s", cred.user);
		site_call_reset(&p->call);
		p->call.task = t;
		p->s->upstream_calls++;
		p->s->polls++;
		task_set_state(t, LISTING);
		task_wait_on(t, "site list");
		p->list_started = time(NULL);
		rv = site_list(p->s->site, &cred, p->full ? 0 : p->update_time,
			       &p->call);
		if (rv == 0)
			return TASK_WAIT;
		/* not started: the call is DONE with the reason */
		/* fallthrough */
	case LISTING:
		if (!site_call_done(&p->call))
			return TASK_WAIT;
		gw_site_record_result(p->s, &p->call.result);
		if (p->s->breaker != BREAKER_CLOSED)
			p->saw_down = true;
		if (p->call.result.err == SITE_ERR_OK) {
			apply(p);
			if (p->saw_down && p->s->breaker == BREAKER_CLOSED) {
				/* back: what waits for it need not wait on */
				p->saw_down = false;
				jobs_site_recovered(p->gw->jobs, p->s);
			}
			/* from when the call started (changes during it count);
			 * Slurm's update_time has second granularity: overlap
			 */
			p->update_time = p->list_started - 2;
		} else {
			log_warn("site %s: poll failed: %s", p->s->cfg->name,
				 p->call.result.message);
		}
		site_result_clear(&p->call.result);
		task_set_state(t, SLEEPING);
		task_wait_idle(t, "poll interval");
		/* one list per interval, counted from when this one started:
		 * a slow list shortens the wait, never adds to the period */
		{
			uint64_t period = p->s->cfg->poll_interval_s * 1000ull,
				 took = loop_clock_ms() - p->call.started_ms;

			task_sleep(t, took < period ? period - took : 0);
		}
		return TASK_WAIT;
	}
	return TASK_WAIT;
}

static void poller_debug_str(const struct task *t, char *buf, size_t len)
{
	const struct site_poller *p = (const struct site_poller *)t;

	snprintf(buf, len, "poller site=%s polls=%llu breaker=%s",
		 p->s->cfg->name, (unsigned long long)p->n,
		 breaker_state_name(p->s->breaker));
}

static void poller_destroy(struct task *t)
{
	struct site_poller *p = (struct site_poller *)t;

	p->s->poller = NULL;
	free(p);
}

static const struct task_ops poller_ops = {
    .kind = "poller",
    .state_names = poller_state_names,
    .n_states = sizeof(poller_state_names) / sizeof(*poller_state_names),
    .step = poller_step,
    .debug_str = poller_debug_str,
    .destroy = poller_destroy,
};

int site_poller_start(struct gw *gw, struct gw_site *s)
{
	struct site_poller *p = calloc(1, sizeof(*p));
	int rv;

	if (!p)
		return -ENOMEM;
	p->gw = gw;
	p->s = s;
	rv = task_start(gw->loop, &p->task, &poller_ops);
	if (rv) {
		free(p);
		return rv;
	}
	s->poller = p;
	return 0;
}

void site_poller_kick(struct site_poller *p)
{
	if (p && p->task.state == SLEEPING)
		task_wake(&p->task, TASK_WAKE_USER);
}

void site_poller_stop(struct site_poller *p)
{
	if (p)
		task_cancel(&p->task, "shutdown");
}
