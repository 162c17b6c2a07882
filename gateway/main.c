/*
 * tiergated: the gateway daemon.  main() reads as init/fini pairs; each
 * part lives in its own file (loop, workers, store, output, auth, sites,
 * jobs, pollers, HTTP).  Only main() exits on an error.
 *
 *   tiergated [-c FILE]                  serve (foreground)
 *   tiergated [-c FILE] --check-config   check the config and exit
 *   tiergated [-c FILE] mint-token --user U [--admin] [--ttl S]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "credentials.h"
#include "gw.h"
#include "http_client.h"
#include "http_server.h"
#include "jobs.h"
#include "log.h"
#include "loop.h"
#include "output_store.h"
#include "reload.h"
#include "site.h"
#include "site_poller.h"
#include "store.h"
#include "task.h"
#include "worker.h"

static struct gw gw;
static struct loop_timer stall_timer, drain_timer;

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: tiergated [-c FILE]                 serve\n"
	    "       tiergated [-c FILE] --check-config  check FILE and exit\n"
	    "       tiergated [-c FILE] mint-token --user U [--admin] [--ttl "
	    "S]\n"
	    "FILE defaults to %s; TIERGATE_DEBUG=REGEX enables debug lines.\n",
	    GW_CONF_DEFAULT_PATH);
}

/* ---- signals ------------------------------------------------------- */

static uint64_t drain_deadline_ms;

/* Pollers end on the cancel on_term sent them (a list in flight is cut). */
static bool pollers_live(void)
{
	for (size_t i = 0; i < gw.n_sites; i++)
		if (gw.sites[i].poller)
			return true;
	return false;
}

/*
 * Every 100 ms: stop once no request, stream or poller is left, or at the
 * deadline.
 */
static void drain_check(struct loop_timer *t, void *arg)
{
	struct http_server_stats st;

	(void)arg;
	http_server_stats(gw.server, &st);
	if (st.requests_active == 0 && st.streams_active == 0 &&
	    !pollers_live()) {
		log_info("drained; exiting");
		loop_stop(gw.loop);
		return;
	}
	if (loop_clock_ms() >= drain_deadline_ms) {
		log_warn("drain timeout: %u request(s), %u stream(s) cut",
			 (unsigned)st.requests_active,
			 (unsigned)st.streams_active);
		loop_stop(gw.loop);
		return;
	}
	loop_timer_start(gw.loop, t, 100, drain_check, NULL);
}

static void on_term(struct loop_signal *s, int signo, void *arg)
{
	size_t i;

	(void)s;
	(void)arg;
	if (gw.draining) {
		log_warn("signal %d again: exiting now", signo);
		loop_stop(gw.loop);
		return;
	}
	log_info("signal %d: draining (at most %us); every accepted job is "
		 "journaled and resumes at the next start",
		 signo, gw.cfg->drain_timeout_s);
	gw.draining = true;
	http_server_quiesce(gw.server);
	api_output_quiesce(&gw);
	for (i = 0; i < gw.n_sites; i++)
		site_poller_stop(gw.sites[i].poller);
	/* in-flight requests get their answers; then stop */
	drain_deadline_ms = loop_clock_ms() + gw.cfg->drain_timeout_s * 1000ull;
	loop_timer_start(gw.loop, &drain_timer, 0, drain_check, NULL);
}

static void on_hup(struct loop_signal *s, int signo, void *arg)
{
	(void)s;
	(void)signo;
	(void)arg;
	gw_reload(&gw);
}

static void on_usr1(struct loop_signal *s, int signo, void *arg)
{
	char buf[512];

	(void)s;
	(void)signo;
	(void)arg;
	log_info("SIGUSR1: %s", loop_debug_str(gw.loop, buf, sizeof(buf)));
	task_dump(gw.loop);
}

static void stall_check(struct loop_timer *t, void *arg)
{
	uint64_t ms = gw.cfg->stall_threshold_s * 1000ull;

	(void)arg;
	task_report_stalled(gw.loop, ms);
	loop_timer_start(gw.loop, t, ms / 2 ? ms / 2 : 1000, stall_check, NULL);
}

/* ---- init/fini pairs ------------------------------------------------ */

static int sites_init(void)
{
	size_t i;
	char err[256];

	gw.sites = calloc(gw.cfg->n_sites, sizeof(*gw.sites));
	if (!gw.sites)
		return -ENOMEM;
	for (i = 0; i < gw.cfg->n_sites; i++) {
		const struct gw_site_config *c = &gw.cfg->sites[i];
		struct site_config sc = {
		    .name = c->name,
		    .kind = c->kind,
		    .url = c->url,
		    .jwt_key = c->jwt_key_path,
		    .partition = c->partition,
		    .request_timeout_s = c->request_timeout_s,
		    .max_connections = c->max_connections,
		    .jwt_lifetime_s = c->jwt_lifetime_s,
		};

		site_auth_parse(gw_site_auth_name(c->auth), &sc.auth);
		gw.sites[i].cfg = c;
		gw.sites[i].site =
		    site_new(gw.loop, gw.http, &sc, err, sizeof(err));
		if (!gw.sites[i].site) {
			log_err("site %s: %s", c->name, err);
			return -EINVAL;
		}
		/* a list of thousands of jobs is parsed off the loop */
		site_set_workers(gw.sites[i].site, gw.workers);
		gw.n_sites++;
	}
	return 0;
}

static void sites_fini(void)
{
	size_t i;

	for (i = 0; i < gw.n_sites; i++) {
		site_free(gw.sites[i].site);
		gw.sites[i].site = NULL;
	}
	/* gw.sites itself stays until the loop is gone: its pollers' and
	 * jobs' tasks read it until then (debug strings at their end) */
}

static int state_init(void)
{
	char path[4096], err[512];
	size_t n = 0;
	uint64_t t0;
	int rv;

	if (mkdir(gw.cfg->state_dir, 0700) < 0 && errno != EEXIST) {
		log_err("state_dir %s: %m", gw.cfg->state_dir);
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/tiergated.db", gw.cfg->state_dir);
	rv = store_open(gw.loop, path, NULL, &gw.store, err, sizeof(err));
	if (rv)
		return rv; /* logged by the store */
	gw.creds = creds_new();
	if (!gw.creds)
		return -ENOMEM;
	/* before the jobs resume: their site calls may need a user's token */
	rv = creds_load(gw.creds, gw.store, gw.loop);
	if (rv) {
		log_err("loading credentials from %s: %s", path,
			store_strerror(rv));
		return rv;
	}
	rv = output_store_new(gw.loop, gw.workers, gw.cfg->state_dir,
			      &gw.output);
	if (rv) {
		log_err("output store in %s: %s", gw.cfg->state_dir,
			strerror(-rv));
		return rv;
	}
	rv = jobs_new(&gw, &gw.jobs);
	if (rv)
		return rv;
	t0 = loop_clock_ms();
	rv = jobs_load(gw.jobs, &n);
	if (rv) {
		log_err("loading jobs from %s: %s", path, store_strerror(rv));
		return rv;
	}
	log_info("%zu jobs loaded from %s in %llu ms", n, path,
		 (unsigned long long)(loop_clock_ms() - t0));
	return 0;
}

static int serve_init(void)
{
	struct http_server_config hc = {
	    .listen = gw.cfg->listen,
	    .max_connections = gw.cfg->max_connections,
	    .max_connections_per_ip = gw.cfg->max_connections_per_ip,
	    .connection_timeout_s = gw.cfg->connection_timeout_s,
	    .max_body = gw.cfg->max_body,
	    .max_header = gw.cfg->max_header,
	    .requests_per_turn = gw.cfg->requests_per_turn,
	};
	size_t i;
	int rv;

	for (i = 0; i < gw.n_sites; i++) {
		rv = site_poller_start(&gw, &gw.sites[i]);
		if (rv)
			return rv;
	}
	gw.server = http_server_new(gw.loop, &hc);
	if (!gw.server)
		return -errno;
	rv = api_register(&gw);
	if (rv)
		return rv;
	log_info("tiergated serving on %s (%zu site%s)", gw.cfg->listen,
		 gw.n_sites, gw.n_sites == 1 ? "" : "s");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *conf = getenv("TIERGATED_CONF");
	struct auth_opts ao = {0};
	char err[512];
	bool check = false;
	int c, rv = 1;

	if (!conf)
		conf = GW_CONF_DEFAULT_PATH;
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	log_init("tiergated");
	log_debug_from_env();
	if (check)
		return gw_config_check_main(conf);
	if (optind < argc && !strcmp(argv[optind], "mint-token"))
		return auth_mint_main(conf, argc - optind, argv + optind);
	if (optind < argc) {
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	if (gw_config_load(conf, &gw.cfg, err, sizeof(err))) {
		log_err("%s", err);
		return 1;
	}
	gw.loop = loop_new();
	if (!gw.loop)
		goto out_config;
	/* the loop thread's info lines: one write(2) per turn, not per line */
	log_buffer_thread(true);
	/* before any thread exists, so that threads inherit the mask */
	loop_signal_add(gw.loop, SIGTERM, on_term, NULL);
	loop_signal_add(gw.loop, SIGINT, on_term, NULL);
	loop_signal_add(gw.loop, SIGHUP, on_hup, NULL);
	loop_signal_add(gw.loop, SIGUSR1, on_usr1, NULL);
	gw.workers = worker_pool_new(gw.loop, gw.cfg->workers, "workers");
	if (!gw.workers)
		goto out_loop;
	if (http_client_global_init())
		goto out_workers;
	gw.http = http_client_new(gw.loop, NULL);
	if (!gw.http)
		goto out_workers;
	if (auth_new(gw.loop, gw.workers, gw.cfg, &ao, &gw.auth))
		goto out_http;
	if (sites_init())
		goto out_sites;
	if (state_init())
		goto out_state;
	if (serve_init())
		goto out_serve;
	loop_timer_init(&stall_timer);
	loop_timer_init(&drain_timer);
	loop_timer_start(gw.loop, &stall_timer, 1000, stall_check, NULL);
	rv = loop_run(gw.loop) < 0 ? 1 : 0;
	loop_timer_stop(&stall_timer);
	loop_timer_stop(&drain_timer);
	jobs_park(gw.jobs);
	loop_run_once(gw.loop, 0); /* their end-of-turn closings */

out_serve:
	if (gw.server)
		http_server_free(gw.server);
out_state:
	if (gw.store)
		store_close(gw.store);
	creds_free(gw.creds);
	if (gw.output)
		output_store_free(gw.output);
out_sites:
	gw_reload_shutdown(); /* a reload still out must not touch the sites */
	sites_fini();
	auth_free(gw.auth);
out_http:
	http_client_free(gw.http);
out_workers:
	worker_pool_shutdown(gw.workers, WORKER_SHUTDOWN_CANCEL);
	worker_pool_free(gw.workers);
out_loop:
	/* jobs' tasks live on the loop: their memory goes with it */
	loop_free(gw.loop);
	jobs_free(gw.jobs);
	for (size_t i = 0; i < gw.n_sites; i++)
		free(gw.sites[i].tagged);
	free(gw.sites);
out_config:
	gw_config_unref(gw.cfg);
	if (rv)
		log_err("tiergated stopped with an error");
	log_buffer_thread(false); /* what is left */
	return rv;
}
