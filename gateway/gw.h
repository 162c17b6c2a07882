/*
 * gw.h: the daemon's context, shared by the domain files (jobs, pollers,
 * API handlers).  One per process, built and torn down by main.c in
 * init/fini pairs.  Loop-thread only.
 */
#ifndef TIERGATE_GW_H
#define TIERGATE_GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;
struct cred_table;
struct gw_config;
struct gw_site_config;
struct http_client;
struct http_server;
struct jobs;
struct loop;
struct output_store;
struct site;
struct site_poller;
struct site_result;
struct store;
struct worker_pool;

#define BREAKER_STATES(X) X(CLOSED) X(OPEN) X(HALF_OPEN)
enum breaker_state {
#define BREAKER_ENUM_(name) BREAKER_##name,
	BREAKER_STATES(BREAKER_ENUM_)
#undef BREAKER_ENUM_
};
const char *breaker_state_name(enum breaker_state s);

/* A site as the gateway sees it: the adapter plus health. */
struct gw_site {
	struct site *site;
	const struct gw_site_config *cfg; /* borrowed from gw->cfg */
	struct site_poller *poller;
	/* circuit breaker: a sick site fails fast instead of piling up */
	enum breaker_state breaker;
	unsigned consecutive_failures;
	uint64_t open_until_ms;
	uint64_t upstream_calls; /* every call made to the site */
	/* jobs whose submit may be at the site without its id known here */
	unsigned awaiting_id;
	uint64_t awaiting_since_ms; /* the latest of them began (loop clock) */
	/* queue wait of the site's recent jobs (submit to start), seconds */
	double queue_wait_s;
	uint64_t queue_waits; /* jobs seen start */
	/*
	 * Lookups by tag are shared (jobs.c, FINDING): the site's jobs that
	 * carry a gateway tag, from a list that started at tagged_at_ms (a
	 * full poll or one job's find-by-tag), and until when one job's
	 * find-by-tag is in flight for all the others.
	 */
	struct site_job *tagged;
	size_t n_tagged;
	uint64_t tagged_at_ms;
	uint64_t finder_until_ms;
	uint64_t polls;
	int64_t last_ok; /* unix seconds, 0: never */
	uint64_t
	    last_fail_ms; /* loop clock of the last failed call, 0: never */
	char last_error[256];
};

struct gw_metrics {
	uint64_t jobs_submitted;
	uint64_t jobs_adopted; /* found by tag instead of submitted again */
	uint64_t events_received;
	uint64_t events_duplicate;
	uint64_t output_bytes;
};

struct gw {
	struct loop *loop;
	struct gw_config *cfg;
	struct worker_pool *workers;
	struct store *store;
	struct output_store *output;
	struct http_client *http;
	struct auth *auth;
	struct http_server *server;
	struct jobs *jobs;
	struct cred_table *creds; /* users' tokens for jwt-user sites */
	struct gw_site *sites;
	size_t n_sites;
	bool draining;
	struct gw_metrics m;
};

struct gw_site *gw_site_find(struct gw *gw, const char *name);
/*
 * Keep the tagged jobs of a list of every job of the site, made by a call
 * that started at started_ms (newer than what is kept).  -ENOMEM keeps
 * the old.
 */
int gw_site_set_tagged(struct gw_site *s, const struct site_result *r,
		       uint64_t started_ms);
/*
 * Whether a list of the site's jobs shows every job: jwt-key lists as the
 * SlurmUser, munge as its poll_user; a jwt-user list is what one user may
 * see (PrivateData=jobs).  Only such a list may share lookups by tag or
 * call another user's job missing.
 */
bool gw_site_lists_all(const struct gw_site *s);
/* A job of the site started after waiting `seconds` in its queue. */
void gw_site_queue_wait(struct gw_site *s, int64_t seconds);
/*
 * How long a new job may wait in the site's queue: the configured
 * queue_estimate, or what its recent jobs waited if that is longer.
 */
int64_t gw_site_queue_estimate(const struct gw_site *s);

/*
 * Fault injection for the crash tests: when TIERGATE_CRASH_AT names this
 * point, the daemon dies at once with SIGKILL (as kill -9 would).  Points:
 * "accepted" (job committed, before the API answers), "submit_journaled"
 * (SUBMITTING committed, before the site call), "site_submitted" (the
 * site answered, before its job id is journaled).
 */
void gw_crash_point(const char *where);

/* Breaker bookkeeping for every call a task makes to a site. */
bool gw_site_allows(struct gw_site *s);
void gw_site_record(struct gw_site *s, bool ok, const char *error);
/*
 * The same from a call's result: an answer about the request (ok,
 * rejected, not found, denied, 401) means the site works; no answer,
 * a timeout, slurmctld away or garbage (even with HTTP 200) count as a
 * failure; an aborted call or a local error does not count.
 */
void gw_site_record_result(struct gw_site *s, const struct site_result *r);

#endif
