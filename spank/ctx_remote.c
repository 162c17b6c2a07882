/*
 * ctx_remote.c: slurmstepd, one process per job step per node.
 *
 * init_post_opt (root, before any task) decides the tier and reports the
 * step's start; it never fails.  task_init_privileged (root, in each task
 * just before exec) confines the task to the tier, or fails it with the
 * decision's message on the job's stderr; for the batch step it also
 * starts the relay that streams the job's output.  task_exit and exit
 * report the end.  Reports never touch the network here: each is queued
 * in the node's spool (a rename, well under a millisecond) and delivered
 * by the relay, so no gateway, however slow or down, can hold up a step.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cpuset.h"
#include "event.h"
#include "hostlist.h"
#include "identity.h"
#include "jwt_verify.h"
#include "log.h"
#include "plugin.h"
#include "relay_spawn.h"
#include "spool.h"

struct remote_step {
	bool prepared;
	uint32_t job_id;
	uint32_t step_id;
	struct identity id;
	char node[64];
	char account[64];
	int64_t start_ms; /* part of every event id of this step */
	char ticket[JWT_TOKEN_MAX + 1];
	bool ticket_too_long;
	char request_id[128];
	char alloc_cores[256];
	cpu_set_t alloc;
	bool have_alloc;
	int decide_rv;
	struct tier_decision decision;
	/* reports */
	struct spool_job spool;
	bool spool_ok;
	bool queued; /* an event of this step went into the spool */
	char **held; /* events waiting for the next report (report_ex) */
	size_t n_held;
	int relay_ctl; /* in task 0 of the batch step: socket to the relay */
};

static struct remote_step rs;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_batch(void)
{
	return rs.step_id == EVENT_STEP_BATCH;
}

static void job_getenv(spank_t sp, const char *name, char *buf, int len)
{
	if (spank_getenv(sp, name, buf, len) != ESPANK_SUCCESS)
		buf[0] = '\0';
}

/*
 * slurmstepd has no item for its node's name (several slurmd may share a
 * host): the batch step runs on the job's first node, other steps on entry
 * S_JOB_NODEID of the step's node list.
 */
static void find_node_name(spank_t sp)
{
	char list[4096];
	uint32_t nodeid = 0;

	if (is_batch()) {
		job_getenv(sp, "SLURM_JOB_NODELIST", list, sizeof(list));
	} else {
		job_getenv(sp, "SLURM_STEP_NODELIST", list, sizeof(list));
		spank_get_item(sp, S_JOB_NODEID, &nodeid);
	}
	if (!list[0] || hostlist_nth(list, nodeid, rs.node, sizeof(rs.node)))
		gethostname(rs.node, sizeof(rs.node) - 1);
}

/* The ticket from the job's environment, noting one too long to use. */
static void read_ticket(spank_t sp)
{
	char **env = NULL;
	size_t klen = strlen(TICKET_ENV);
	int i;

	rs.ticket[0] = '\0';
	if (spank_get_item(sp, S_JOB_ENV, &env) != ESPANK_SUCCESS || !env)
		return;
	for (i = 0; env[i]; i++) {
		if (strncmp(env[i], TICKET_ENV, klen) || env[i][klen] != '=')
			continue;
		if (strlen(env[i] + klen + 1) >= sizeof(rs.ticket))
			rs.ticket_too_long = true;
		else
			snprintf(rs.ticket, sizeof(rs.ticket), "%s",
				 env[i] + klen + 1);
	}
}

/* Everything a decision and a report need; idempotent. */
static void prepare(spank_t sp)
{
	struct tier_request req;
	struct ticket_check tc;
	char *cores = NULL, step[16];
	uid_t uid = 0;
	gid_t gid = 0;

	if (rs.prepared)
		return;
	rs.prepared = true;
	rs.start_ms = now_ms();
	rs.spool.dir_fd = -1;
	rs.relay_ctl = -1;
	spank_get_item(sp, S_JOB_ID, &rs.job_id);
	spank_get_item(sp, S_JOB_STEPID, &rs.step_id);
	spank_get_item(sp, S_JOB_UID, &uid);
	spank_get_item(sp, S_JOB_GID, &gid);
	if (identity_load(uid, gid, &rs.id))
		snprintf(rs.id.user, sizeof(rs.id.user), "uid%u",
			 (unsigned)uid);
	find_node_name(sp);
	job_getenv(sp, "SLURM_JOB_ACCOUNT", rs.account, sizeof(rs.account));
	read_ticket(sp);
	job_getenv(sp, REQUEST_ID_ENV, rs.request_id, sizeof(rs.request_id));
	if (spank_get_item(sp, S_STEP_ALLOC_CORES, &cores) == ESPANK_SUCCESS &&
	    cores && cpuset_parse(cores, &rs.alloc) == 0) {
		snprintf(rs.alloc_cores, sizeof(rs.alloc_cores), "%s", cores);
		rs.have_alloc = true;
	}

	if (tg.broken[0] || !tg.tiers) {
		rs.decide_rv = -EINVAL;
		snprintf(rs.decision.why, sizeof(rs.decision.why),
			 "CPU tiers are misconfigured on this node: %.300s",
			 tg.broken);
		return;
	}
	plugin_check_ticket(rs.ticket, rs.ticket_too_long, &tc);
	req = (struct tier_request){
	    .requested = tg.requested_set ? tg.requested : NULL,
	    .ticket = &tc,
	    .user = rs.id.user,
	    .load_groups = identity_groups_cb,
	    .load_groups_arg = &rs.id,
	    .account = rs.account[0] ? rs.account : NULL,
	    .now = time(NULL),
	};
	rs.decide_rv = tier_decide(tg.tiers, &req, &rs.decision);
	event_step_name(rs.step_id, step, sizeof(step));
	/* one id finds a job's story in the gateway's log and in slurmd's */
	if (rs.request_id[0] && is_batch())
		log_info(
		    "job %u.%s: gateway job %s, request %s", rs.job_id, step,
		    rs.decision.ticket_valid ? rs.decision.ticket.job_id : "-",
		    rs.request_id);
	if (rs.decision.ticket_error[0])
		log_info("job %u.%s: ticket not used: %s", rs.job_id, step,
			 rs.decision.ticket_error);
	if (rs.decide_rv)
		log_info("job %u.%s user %s: refused: %s", rs.job_id, step,
			 rs.id.user, rs.decision.why);
	else
		dbg("job %u.%s user %s: tier %s from %s, alloc cores %s",
		    rs.job_id, step, rs.id.user, rs.decision.tier->name,
		    tier_source_name(rs.decision.source), rs.alloc_cores);
}

/* Reporting needs a gateway and a credential to show it. */
static bool reports_on(void)
{
	if (!tg.args.gateway[0] || !rs.prepared || !tg.args.site[0])
		return false;
	return tg.args.report_auth != REPORT_AUTH_TICKET ||
	       rs.decision.ticket_valid;
}

static bool open_spool(void)
{
	if (rs.spool_ok)
		return true;
	if (!tg.args.site[0])
		return false;
	rs.spool_ok = spool_job_open(tg.args.spool, tg.args.site, rs.job_id,
				     &rs.spool) == 0;
	return rs.spool_ok;
}

static void write_meta(bool if_missing);

/* Queue the event in the spool; the relay delivers it, in order. */
/* Queue events in the spool, in order, under one lock; the relay
 * delivers them.  kinds names them in the log. */
static void queue_events(const char *const *jsons, size_t n, const char *kinds)
{
	int rv;

	rv = open_spool() ? spool_event_append_n(&rs.spool, jsons, n) : -ENOENT;
	if (rv == -ESTALE) {
		/* the node's relay removed the idle dir meanwhile */
		spool_job_close(&rs.spool);
		rs.spool_ok = false;
		rv = open_spool() ? spool_event_append_n(&rs.spool, jsons, n)
				  : -ENOENT;
		if (!rv)
			write_meta(true);
	}
	if (rv)
		log_err("job %u: event %s lost: spool %s: %s", rs.job_id, kinds,
			tg.args.spool, strerror(-rv));
	else {
		rs.queued = true;
		dbg("job %u: event %s queued", rs.job_id, kinds);
	}
}

/*
 * Report an event.  hold: keep it in memory and queue it with the next
 * one that is not held (task exits of srun steps go with step_end, so a
 * task's exit reaches srun without waiting on the spool; the events and
 * their order and times are the same).
 */
static void report_ex(const struct tg_event *ev, bool hold)
{
	char *json, **p;
	size_t i;

	if (!reports_on())
		return;
	json = event_to_json(ev);
	if (!json) {
		log_err("job %u: event %s lost: out of memory", rs.job_id,
			ev->kind);
		return;
	}
	p = reallocarray(rs.held, rs.n_held + 1, sizeof(*p));
	if (!p) {
		log_err("job %u: event %s lost: out of memory", rs.job_id,
			ev->kind);
		free(json);
		return;
	}
	rs.held = p;
	rs.held[rs.n_held++] = json;
	if (hold)
		return;
	queue_events((const char *const *)rs.held, rs.n_held, ev->kind);
	for (i = 0; i < rs.n_held; i++)
		free(rs.held[i]);
	rs.n_held = 0;
}

static void report(const struct tg_event *ev)
{
	report_ex(ev, false);
}

static struct tg_event base_event(const char *kind)
{
	const struct tier *t = rs.decision.tier;

	return (struct tg_event){
	    .kind = kind,
	    .site = tg.args.site,
	    .job_id = rs.job_id,
	    .step_id = rs.step_id,
	    .node = rs.node,
	    .user = rs.id.user,
	    .tier = t ? t->name : NULL,
	    .tier_source = t ? tier_source_name(rs.decision.source) : NULL,
	    .gw_job =
		rs.decision.ticket_valid ? rs.decision.ticket.job_id : NULL,
	    .request_id = rs.request_id[0] ? rs.request_id : NULL,
	    .task = -1,
	    .time_ms = now_ms(),
	    .step_start_ms = rs.start_ms,
	};
}

/*
 * The relay needs to know where and how to deliver: the job dir's meta.
 * Under the spool's lock, and never through a handle on a dir the relay
 * has emptied since (-ESTALE: our events went with it, delivered).
 */
static void write_meta(bool if_missing)
{
	char meta[16384];

	snprintf(meta, sizeof(meta),
		 "gateway=%s\nauth=%s\nmunge_socket=%s\nsite=%s\njob_id=%u\n"
		 "request_id=%s\nticket=%s\nbatch=%d\n",
		 tg.args.gateway, args_report_auth_name(tg.args.report_auth),
		 tg.args.munge_socket, tg.args.site, rs.job_id, rs.request_id,
		 rs.ticket, is_batch());
	spool_write_file_locked(&rs.spool, "meta", meta, if_missing);
	explicit_bzero(meta, sizeof(meta));
}

int remote_init_post_opt(spank_t sp)
{
	struct tg_event ev;
	char cores[256] = "";
	cpu_set_t cur, use;

	prepare(sp);
	if (!reports_on())
		return 0;
	if (is_batch() && open_spool())
		write_meta(false);
	if (rs.decide_rv) {
		ev = base_event("tier_refused");
		ev.message = rs.decision.why;
	} else {
		/* the CPUs tasks will get, as task_init_privileged computes */
		if (sched_getaffinity(0, sizeof(cur), &cur) == 0 &&
		    cpuset_confine(rs.have_alloc ? &rs.alloc : &cur, &cur,
				   rs.decision.tier->cpus, &use) > 0)
			cpuset_format(&use, cores, sizeof(cores));
		ev = base_event("step_start");
		ev.cores = cores;
	}
	report(&ev);
	return 0;
}

static int confine(void)
{
	const struct tier *t = rs.decision.tier;
	cpu_set_t cur, use;
	char list[256];
	int n;

	if (sched_getaffinity(0, sizeof(cur), &cur) < 0) {
		slurm_error(
		    "tiergate: cannot read the task's CPU affinity: %m");
		return -1;
	}
	n = cpuset_confine(rs.have_alloc ? &rs.alloc : &cur, &cur, t->cpus,
			   &use);
	if (n <= 0 || sched_setaffinity(0, sizeof(use), &use) < 0) {
		slurm_error(
		    "tiergate: cannot confine the task to CPU tier '%s': %m",
		    t->name);
		return -1;
	}
	cpuset_format(&use, list, sizeof(list));
	if (setpriority(PRIO_PROCESS, 0, t->nice) < 0) {
		slurm_error(
		    "tiergate: cannot set nice %d for CPU tier '%s': %m",
		    t->nice, t->name);
		return -1;
	}
	dbg("job %u: task confined to CPUs %s (tier %s, nice %d)", rs.job_id,
	    list, t->name, t->nice);
	return 0;
}

/*
 * Start the relay for the batch step's task 0, as root.  The job's output
 * files are not in place yet (fd 1 is /dev/null here); task_init sends
 * them over the control socket once they are.
 */
static void start_relay(spank_t sp)
{
	int task_id = -1, sv[2], lock_fd;

	if (!tg.args.output || !is_batch() || !open_spool())
		return;
	if (spank_get_item(sp, S_TASK_ID, &task_id) != ESPANK_SUCCESS ||
	    task_id != 0)
		return;
	/* the relay's lock, taken here and handed over: held from now on */
	if (spool_lock(&rs.spool, SPOOL_LOCK_RELAY, false, &lock_fd))
		return; /* a relay already works on this job */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_err("job %u: socketpair: %m", rs.job_id);
		spool_unlock(lock_fd);
		return;
	}
	if (relay_spawn(tg.relay, rs.spool.dir, sv[1], lock_fd) == 0)
		rs.relay_ctl = sv[0];
	else
		close(sv[0]);
	close(sv[1]);
	close(lock_fd); /* our copy; the relay's keeps the lock */
}

int remote_task_init_privileged(spank_t sp)
{
	char env[32];

	prepare(sp);
	if (rs.decide_rv) {
		slurm_error("tiergate: %s", rs.decision.why);
		return -1;
	}
	if (confine())
		return -1;
	spank_setenv(sp, "TIERGATE_TIER", rs.decision.tier->name, 1);
	snprintf(env, sizeof(env), "%u", rs.decision.tier->cpus);
	spank_setenv(sp, "TIERGATE_TIER_CPUS", env, 1);
	if (reports_on())
		start_relay(sp);
	return 0;
}

/* Lower (never raise) a limit; the soft one first warns (SIGXCPU). */
static int lower_limit(int resource, rlim_t soft, rlim_t hard)
{
	struct rlimit rl;

	if (getrlimit(resource, &rl) < 0)
		return -1;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < hard)
		hard = rl.rlim_max;
	if (soft > hard)
		soft = hard;
	rl.rlim_cur = soft;
	rl.rlim_max = hard;
	return setrlimit(resource, &rl);
}

/*
 * Limits are lowered in task_init, as the user, after slurmstepd has
 * applied the submitting shell's limits (it would otherwise complain on
 * the job's stderr that it cannot raise them back).
 */
int remote_task_init(spank_t sp)
{
	const struct tier *t;

	prepare(sp);
	if (rs.relay_ctl > 0) {
		if (relay_send_stdio(rs.relay_ctl))
			log_err("job %u: cannot hand output to the relay: %m",
				rs.job_id);
		rs.relay_ctl = -1;
	}
	if (rs.decide_rv || !(t = rs.decision.tier))
		return 0; /* refused in task_init_privileged already */
	if (t->cpu_time_s &&
	    lower_limit(RLIMIT_CPU, t->cpu_time_s, t->cpu_time_s + 10)) {
		slurm_error("tiergate: cannot limit CPU time to %llus: %m",
			    (unsigned long long)t->cpu_time_s);
		return -1;
	}
	if (t->mem_bytes &&
	    lower_limit(RLIMIT_AS, t->mem_bytes, t->mem_bytes)) {
		slurm_error("tiergate: cannot limit memory to %llu bytes: %m",
			    (unsigned long long)t->mem_bytes);
		return -1;
	}
	return 0;
}

int remote_task_exit(spank_t sp)
{
	struct tg_event ev;
	int status = 0;
	uint32_t task = 0;

	if (!reports_on())
		return 0;
	spank_get_item(sp, S_TASK_EXIT_STATUS, &status);
	spank_get_item(sp, S_TASK_GLOBAL_ID, &task);
	ev = base_event("task_exit");
	ev.task = (int)task;
	ev.wait_status = status;
	/* a batch job's relay streams as the job runs: tell it now */
	report_ex(&ev, !is_batch());
	return 0;
}

/* The batch step ends: its relay flushes now; with no relay, the node's. */
static void stop_relay(void)
{
	char buf[32];
	long pid;
	int lock_fd;

	spool_write_file(&rs.spool, "end", "");
	if (spool_lock(&rs.spool, SPOOL_LOCK_RELAY, false, &lock_fd) == 0) {
		/* no relay holds it (output=no, spawn failed, refused tier) */
		spool_unlock(lock_fd);
		relay_node_kick(tg.relay, tg.args.spool);
		return;
	}
	/* the lock is held: the pid is the relay's, not a recycled one */
	if (spool_read_file(&rs.spool, "relay.pid", buf, sizeof(buf)) > 0 &&
	    (pid = strtol(buf, NULL, 10)) > 1)
		kill((pid_t)pid, SIGUSR1);
}

int remote_exit(spank_t sp)
{
	struct rusage ru;
	struct tg_event ev;

	(void)sp;
	if (!reports_on())
		goto out;
	ev = base_event("step_end");
	if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
		ev.cpu_seconds =
		    ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
		    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	report(&ev);
	if (!open_spool())
		goto out;
	if (is_batch()) {
		stop_relay();
	} else if (rs.queued) {
		/* a batch job's relay takes these too; for an srun outside a
		 * batch job the node's relay does (woken, or started) */
		write_meta(true);
		relay_node_kick(tg.relay, tg.args.spool);
	}
out:
	for (size_t i = 0; i < rs.n_held; i++)
		free(rs.held[i]); /* only when reports went off meanwhile */
	free(rs.held);
	rs.held = NULL;
	rs.n_held = 0;
	if (rs.spool_ok)
		spool_job_close(&rs.spool);
	explicit_bzero(rs.ticket, sizeof(rs.ticket));
	return 0;
}
