/* gw.c: site lookup and the per-site circuit breaker (gw.h). */
#include "gw.h"

#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "loop.h"
#include "log.h"
#include "site.h"

#define BREAKER_THRESHOLD 3   /* failures in a row open it */
#define BREAKER_OPEN_MS 10000 /* then one trial call after this */

static const char *const breaker_names[] = {
    [BREAKER_CLOSED] = "closed",
    [BREAKER_OPEN] = "open",
    [BREAKER_HALF_OPEN] = "half_open",
};

const char *breaker_state_name(enum breaker_state s)
{
	return breaker_names[s];
}

void gw_crash_point(const char *where)
{
	const char *at = getenv("TIERGATE_CRASH_AT");

	if (at && !strcmp(at, where)) {
		log_warn("TIERGATE_CRASH_AT=%s: dying here", where);
		raise(SIGKILL);
	}
}

struct gw_site *gw_site_find(struct gw *gw, const char *name)
{
	size_t i;

	for (i = 0; i < gw->n_sites; i++)
		if (!strcmp(gw->sites[i].cfg->name, name))
			return &gw->sites[i];
	return NULL;
}

bool gw_site_allows(struct gw_site *s)
{
	if (s->breaker != BREAKER_OPEN)
		return true;
	if (loop_clock_ms() < s->open_until_ms)
		return false;
	s->breaker = BREAKER_HALF_OPEN; /* one trial */
	log_info("site %s: breaker half-open, trying again", s->cfg->name);
	return true;
}

void gw_site_record(struct gw_site *s, bool ok, const char *error)
{
	if (ok) {
		if (s->breaker != BREAKER_CLOSED)
			log_info("site %s: breaker closed, site answers",
				 s->cfg->name);
		s->breaker = BREAKER_CLOSED;
		s->consecutive_failures = 0;
		s->last_ok = time(NULL);
		return;
	}
	snprintf(s->last_error, sizeof(s->last_error), "%s",
		 error ? error : "error");
	s->last_fail_ms = loop_clock_ms();
	if (++s->consecutive_failures >= BREAKER_THRESHOLD ||
	    s->breaker == BREAKER_HALF_OPEN) {
		if (s->breaker != BREAKER_OPEN)
			log_warn("site %s: breaker open after %u failures: %s",
				 s->cfg->name, s->consecutive_failures,
				 s->last_error);
		s->breaker = BREAKER_OPEN;
		s->open_until_ms = loop_clock_ms() + BREAKER_OPEN_MS;
	}
}

void gw_site_record_result(struct gw_site *s, const struct site_result *r)
{
	if (r->busy)
		return; /* not sent, or "try again": no verdict on health */
	switch (r->err) {
	case SITE_ERR_OK:
	case SITE_ERR_REJECTED:
	case SITE_ERR_NOT_FOUND:
	case SITE_ERR_DENIED:
	case SITE_ERR_AUTH:
		/* slurmrestd answered about the request itself: it works */
		gw_site_record(s, true, NULL);
		return;
	case SITE_ERR_UNAVAILABLE:
	case SITE_ERR_TIMEOUT:
	case SITE_ERR_BACKEND:
	case SITE_ERR_PROTOCOL:
		/* no answer, or none a working slurmrestd gives (garbage) */
		gw_site_record(s, false, r->message);
		return;
	case SITE_ERR_CANCELLED:
	case SITE_ERR_INTERNAL:
	case SITE_ERR_COUNT_:
		break; /* ours (aborted, no memory): says nothing of the site */
	}
}

void gw_site_queue_wait(struct gw_site *s, int64_t seconds)
{
	/* an average that follows change within ~10 jobs; a jump up counts
	 * at once (a token must not be judged by yesterday's quiet queue) */
	if (!s->queue_waits++ || (double)seconds > s->queue_wait_s)
		s->queue_wait_s = (double)seconds;
	else
		s->queue_wait_s = 0.9 * s->queue_wait_s + 0.1 * (double)seconds;
}

int64_t gw_site_queue_estimate(const struct gw_site *s)
{
	int64_t seen = (int64_t)(s->queue_wait_s + 0.5);

	return seen > (int64_t)s->cfg->queue_estimate_s
		   ? seen
		   : (int64_t)s->cfg->queue_estimate_s;
}

int gw_site_set_tagged(struct gw_site *s, const struct site_result *r,
		       uint64_t started_ms)
{
	struct site_job *v = NULL;
	size_t i, n = 0;

	if (started_ms < s->tagged_at_ms)
		return 0; /* an older list finished later */
	for (i = 0; i < r->n_jobs; i++)
		n += r->jobs[i].tag[0] != '\0';
	if (n) {
		v = malloc(n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (i = 0, n = 0; i < r->n_jobs; i++)
			if (r->jobs[i].tag[0])
				v[n++] = r->jobs[i];
	}
	free(s->tagged);
	s->tagged = v;
	s->n_tagged = n;
	s->tagged_at_ms = started_ms;
	return 0;
}

bool gw_site_lists_all(const struct gw_site *s)
{
	return s->cfg->auth != GW_SITE_AUTH_JWT_USER;
}
