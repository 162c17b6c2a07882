/*
 * tiergate-relay: delivers one job's output and queued events to the
 * gateway, from the node, without ever holding up the job.
 *
 *   tiergate-relay --job-dir DIR [--control-fd=N]
 *                  [--linger=SECONDS] [--poll-ms=MS]
 *   tiergate-relay --drain SPOOL      deliver what every idle job dir holds
 *   tiergate-relay --node SPOOL       the node's relay for steps outside batch
 *                  [--idle-exit=S]    jobs (one process, woken by SIGUSR1)
 *   tiergate-relay --check-ticket KEY verify the ticket on stdin for the
 *                                     plugin (ticket_check.h), print verdict
 *
 * The plugin starts it for a batch step; the task then passes the job's
 * output files, opened by the job's user, over the control socket (never
 * a path the relay opens with its own rights).  It sends the bytes as
 * offset-addressed chunks (docs/protocol.md), remembering in <stream>.acked
 * what the gateway holds, so a retry or a restart of either side neither loses
 * nor repeats bytes.  Memory is one chunk buffer whatever the job writes.  When
 * the plugin writes DIR/end (and signals SIGUSR1) it flushes to EOF, marks each
 * stream complete, delivers the remaining events and removes DIR.  If the
 * gateway is away it keeps trying with backoff for --linger seconds, then
 * leaves DIR for a later relay (--drain).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "drain.h"
#include "jwt_verify.h"
#include "log.h"
#include "relay_spawn.h"
#include "spool.h"
#include "ticket_check.h"

#define CHUNK_MAX (1024 * 1024)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SEND_TIMEOUT_MS 10000
/* the node relay's pass after a kick waits this long for more steps' */
#define COALESCE_MS 200
#define RELAY_NICE 10

struct stream {
	const char *name;
	int fd;
	uint64_t acked; /* bytes the gateway holds */
	bool eof_sent;
};

struct relay {
	struct spool_job sj;
	char site[32];
	char gateway[512];
	bool batch; /* a batch job's dir (meta batch=1) */
	uint32_t job_id;
	struct deliverer *d;
	struct stream streams[2];
	int n_streams;
	char *buf;
	int backoff_ms;
	long poll_ms;
	long linger_s;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "key=value" lines of the job dir's meta file. */
static const char *meta_get(const char *meta, const char *key, char *out,
			    size_t len)
{
	size_t klen = strlen(key);
	const char *p = meta;

	out[0] = '\0';
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);

		if (l > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			l -= klen + 1;
			if (l >= len)
				l = len - 1;
			memcpy(out, p + klen + 1, l);
			out[l] = '\0';
			return out;
		}
		p = nl ? nl + 1 : NULL;
	}
	return out;
}

static int load_meta(struct relay *r)
{
	char meta[16384], auth[16], sock[4096], ticket[8200], rid[128], job[16],
	    batch[8];
	struct deliver_cfg cfg = {0};
	int rv;

	rv = spool_read_file(&r->sj, "meta", meta, sizeof(meta));
	if (rv < 0) {
		log_err("%s: no meta file: %s", r->sj.dir, strerror(-rv));
		return rv;
	}
	meta_get(meta, "gateway", r->gateway, sizeof(r->gateway));
	r->batch = !strcmp(meta_get(meta, "batch", batch, sizeof(batch)), "1");
	meta_get(meta, "auth", auth, sizeof(auth));
	meta_get(meta, "munge_socket", sock, sizeof(sock));
	meta_get(meta, "site", r->site, sizeof(r->site));
	meta_get(meta, "job_id", job, sizeof(job));
	meta_get(meta, "ticket", ticket, sizeof(ticket));
	meta_get(meta, "request_id", rid, sizeof(rid));
	explicit_bzero(meta, sizeof(meta));
	r->job_id = (uint32_t)strtoul(job, NULL, 10);
	cfg.gateway = r->gateway;
	cfg.auth = !strcmp(auth, "munge")    ? REPORT_AUTH_MUNGE
		   : !strcmp(auth, "ticket") ? REPORT_AUTH_TICKET
					     : REPORT_AUTH_NONE;
	cfg.munge_socket = sock[0] ? sock : NULL;
	cfg.ticket = ticket[0] ? ticket : NULL;
	cfg.request_id = rid[0] ? rid : NULL;
	r->d = deliverer_new(&cfg);
	explicit_bzero(ticket, sizeof(ticket));
	if (!r->gateway[0] || !r->site[0] || !r->job_id || !r->d) {
		log_err("%s: incomplete meta file", r->sj.dir);
		return -EINVAL;
	}
	return 0;
}

static void load_acked(struct relay *r, struct stream *s)
{
	char name[64], buf[32];

	snprintf(name, sizeof(name), "%s.acked", s->name);
	if (spool_read_file(&r->sj, name, buf, sizeof(buf)) > 0)
		s->acked = strtoull(buf, NULL, 10);
	snprintf(name, sizeof(name), "%s.eof", s->name);
	s->eof_sent = spool_has_file(&r->sj, name);
}

static void save_acked(struct relay *r, struct stream *s)
{
	char name[64], buf[32];

	snprintf(name, sizeof(name), "%s.acked", s->name);
	snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)s->acked);
	spool_write_file(&r->sj, name, buf);
}

/*
 * Without fds (a later drain): re-open each stream by the path recorded
 * by the plugin, refusing anything but the very file (device and inode)
 * the job wrote, so a user cannot swap in another file.
 */
static void reopen_streams(struct relay *r)
{
	char stdio[9000], *line, *save = NULL;
	int rv = spool_read_file(&r->sj, "stdio", stdio, sizeof(stdio));

	if (rv <= 0)
		return;
	for (line = strtok_r(stdio, "\n", &save); line && r->n_streams < 2;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[16], path[4097];
		unsigned long dev, ino;
		struct stat st;
		int fd;

		if (sscanf(line, "%15s %lu %lu %4096[^\n]", name, &dev, &ino,
			   path) != 4)
			continue;
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_dev != dev || st.st_ino != ino) {
			log_warn("%s: stream %s: %s is gone or replaced; its "
				 "unsent output is lost",
				 r->sj.dir, name, path);
			if (fd >= 0)
				close(fd);
			continue;
		}
		r->streams[r->n_streams++] = (struct stream){
		    .name = strcmp(name, "stderr") ? "stdout" : "stderr",
		    .fd = fd};
	}
}

/* Send what is new in one stream; 0 when caught up, -EAGAIN to retry. */
static int pump_stream(struct relay *r, struct stream *s, bool final)
{
	char err[320];
	struct stat st;
	uint64_t next;
	ssize_t n;
	int rv;

	if (s->eof_sent)
		return 0;
	if (fstat(s->fd, &st) < 0)
		return -errno;
	while (s->acked < (uint64_t)st.st_size) {
		n = pread(s->fd, r->buf, CHUNK_MAX, (off_t)s->acked);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		rv = deliver_chunk(r->d, r->site, r->job_id, s->name, s->acked,
				   r->buf, (size_t)n, false, SEND_TIMEOUT_MS,
				   &next, err, sizeof(err));
		if (rv == -ESPIPE) {
			log_info("job %u %s: gateway holds %llu bytes, we had "
				 "%llu acked; resuming there",
				 r->job_id, s->name, (unsigned long long)next,
				 (unsigned long long)s->acked);
			s->acked = next;
			save_acked(r, s);
			continue;
		}
		if (rv) {
			if (rv == -EBADMSG)
				log_err("job %u %s @%llu: gateway refused the "
					"chunk, kept for a later try: %s",
					r->job_id, s->name,
					(unsigned long long)s->acked, err);
			else
				log_info("job %u %s @%llu: %s", r->job_id,
					 s->name, (unsigned long long)s->acked,
					 err);
			return -EAGAIN;
		}
		s->acked = next;
		save_acked(r, s);
		if (fstat(s->fd, &st) < 0)
			return -errno;
	}
	if (final) {
		char name[64];

		rv = deliver_chunk(r->d, r->site, r->job_id, s->name, s->acked,
				   NULL, 0, true, SEND_TIMEOUT_MS, &next, err,
				   sizeof(err));
		if (rv == -ESPIPE && next >= s->acked)
			rv = 0; /* it holds all we have: complete */
		if (rv == -ESPIPE) {
			/* it lost bytes: send them again from its length */
			s->acked = next;
			save_acked(r, s);
			return -EAGAIN;
		}
		if (rv) {
			log_info("job %u %s eof: %s", r->job_id, s->name, err);
			return -EAGAIN;
		}
		s->eof_sent = true;
		snprintf(name, sizeof(name), "%s.eof", s->name);
		spool_write_file(&r->sj, name, "");
	}
	return 0;
}

/* One job dir's events; 0 when none is left, else why they wait. */
static int send_events(struct relay *r)
{
	struct drain_dir dd = {.sj = &r->sj, .job_id = r->job_id};
	int rv = drain_events(&dd, 1, r->d, SEND_TIMEOUT_MS);

	return rv ? rv : dd.blocked ? -EINPROGRESS : 0;
}

/* One pass; 0 when everything known so far is delivered. */
static int pump(struct relay *r, bool final)
{
	int rv = 0, i;

	for (i = 0; i < r->n_streams; i++) {
		/* any failure keeps the bytes for a later try, never drops them
		 */
		if (pump_stream(r, &r->streams[i], final))
			rv = -EAGAIN;
	}
	if (send_events(r))
		rv = -EAGAIN;
	return rv;
}

static int run_job(const char *dir, int ctl_fd, int given_lock_fd,
		   long linger_s, long poll_ms, bool drain)
{
	struct relay r = {.poll_ms = poll_ms, .linger_s = linger_s};
	int lock_fd = -1, sfd = -1, rv, i;
	int64_t end_seen = 0;
	bool stop = false;
	sigset_t mask;
	char pid[32];

	rv = spool_job_open_dir(dir, &r.sj);
	if (rv)
		return 1;
	if (given_lock_fd >= 0)
		lock_fd = given_lock_fd; /* taken by the plugin for us */
	else if (spool_lock(&r.sj, SPOOL_LOCK_RELAY, false, &lock_fd)) {
		dbg("%s: another relay has it", dir);
		spool_job_close(&r.sj);
		return 0;
	}
	if (load_meta(&r))
		goto out;
	r.buf = malloc(CHUNK_MAX);
	if (!r.buf)
		goto out;
	if (ctl_fd >= 0) {
		char desc[9000];
		int fds[2];

		rv = relay_recv_stdio(ctl_fd, 60000, fds, desc, sizeof(desc));
		close(ctl_fd);
		if (rv)
			log_warn("job %u: no output files from the task: %s",
				 r.job_id, strerror(-rv));
		else
			spool_write_file(&r.sj, "stdio", desc);
		if (fds[0] >= 0)
			r.streams[r.n_streams++] =
			    (struct stream){.name = "stdout", .fd = fds[0]};
		if (fds[1] >= 0)
			r.streams[r.n_streams++] =
			    (struct stream){.name = "stderr", .fd = fds[1]};
	} else if (drain || spool_has_file(&r.sj, "stdio")) {
		reopen_streams(&r);
	}
	for (i = 0; i < r.n_streams; i++)
		load_acked(&r, &r.streams[i]);

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (ctl_fd >= 0) { /* the batch relay: the plugin signals it */
		snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		spool_write_file(&r.sj, "relay.pid", pid);
	}
	log_info("relay for job %u started (%d stream%s)", r.job_id,
		 r.n_streams, r.n_streams == 1 ? "" : "s");

	/*
	 * A batch relay (control fd) works until the plugin writes "end",
	 * then flushes and marks its streams complete.  A relay without one
	 * (events of an srun step, or a drain) delivers what is there and
	 * leaves.  Only after "end" is the job dir removed: until then a
	 * step may still be writing into it.
	 */
	r.backoff_ms = 0;
	for (;;) {
		bool has_end = spool_has_file(&r.sj, "end");
		bool done_when_empty = has_end || ctl_fd < 0;
		struct pollfd pfd = {.fd = sfd, .events = POLLIN};
		struct signalfd_siginfo si;
		int wait_ms;

		if (done_when_empty && !end_seen)
			end_seen = mono_ms();
		rv = pump(&r, has_end);
		if (drain && !has_end)
			break; /* the job still runs: the next drain continues
				* from .acked */
		if (rv == 0 && done_when_empty) {
			log_info("relay for job %u: all delivered", r.job_id);
			if (has_end)
				spool_remove_job_if_idle(&r.sj, &lock_fd);
			break;
		}
		if (done_when_empty &&
		    mono_ms() - end_seen > r.linger_s * 1000) {
			log_warn("relay for job %u: gateway unreachable for "
				 "%lds; leaving %s for a later drain",
				 r.job_id, r.linger_s, dir);
			break;
		}
		if (rv) {
			r.backoff_ms =
			    r.backoff_ms ? r.backoff_ms * 2 : BACKOFF_MIN_MS;
			if (r.backoff_ms > BACKOFF_MAX_MS)
				r.backoff_ms = BACKOFF_MAX_MS;
			wait_ms = r.backoff_ms;
		} else {
			r.backoff_ms = 0;
			wait_ms = (int)r.poll_ms;
		}
		if (poll(&pfd, 1, wait_ms) > 0)
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGTERM)
					stop = true;
				r.backoff_ms = 0; /* the plugin says: now */
			}
		if (stop) {
			/* node shutdown: one last try; the spool keeps the rest
			 */
			pump(&r, spool_has_file(&r.sj, "end"));
			log_info("relay for job %u: stopped by SIGTERM",
				 r.job_id);
			break;
		}
	}
out:
	deliverer_free(r.d);
	free(r.buf);
	if (sfd >= 0)
		close(sfd);
	spool_unlock(lock_fd);
	spool_job_close(&r.sj);
	return 0;
}

/*
 * A job without a batch step (srun or salloc alone) never gets "end":
 * its dir goes once it has been empty of events for a day.
 */
static void remove_if_stale(const char *dir)
{
	struct spool_job sj;
	struct stat st;
	int lock_fd;

	if (stat(dir, &st) < 0 || time(NULL) - st.st_mtime < 86400)
		return;
	if (spool_job_open_dir(dir, &sj))
		return;
	if (spool_lock(&sj, SPOOL_LOCK_RELAY, false, &lock_fd) == 0) {
		/* under the seq lock, and only if still this job's dir */
		if (spool_remove_job_if_idle(&sj, &lock_fd) == 0)
			log_info("%s: idle for a day, removed", dir);
		spool_unlock(lock_fd);
	}
	spool_job_close(&sj);
}

/* Deliver whatever idle job dirs in the spool still hold. */
static int drain_spool(const char *spool, long linger_s, long poll_ms)
{
	struct dirent *de;
	char dir[4096];
	DIR *d = opendir(spool);

	if (!d) {
		log_err("cannot open spool %s: %m", spool);
		return 1;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", spool, de->d_name);
		if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			continue; /* relay.log */
		run_job(dir, -1, -1, linger_s, poll_ms, true);
		remove_if_stale(dir);
	}
	closedir(d);
	return 0;
}

/*
 * Gateways that failed during this pass of the node relay: the other job
 * dirs bound for one wait for the next pass instead of each paying a
 * MUNGE credential and a connection attempt (an outage must not cost the
 * node CPU per queued job).
 */
#define FAILED_MAX 8
static char failed_gw[FAILED_MAX][512];
static int n_failed_gw;

static bool gateway_failed(const char *gw)
{
	for (int i = 0; i < n_failed_gw; i++)
		if (!strcmp(failed_gw[i], gw))
			return true;
	return false;
}

/* A job dir the node relay works on in this pass: open and locked. */
struct node_dir {
	struct relay r;
	int lock_fd;
};

/*
 * Take dir for this pass when it has events and meta, nobody else works
 * on it and its gateway has not failed in this pass.  0 taken; 1 it
 * waits (counted pending); -1 nothing to do now.
 */
static int node_dir_take(const char *dir, struct node_dir *nd)
{
	int rv;

	memset(&nd->r, 0, sizeof(nd->r));
	nd->lock_fd = -1;
	if (spool_job_open_dir(dir, &nd->r.sj))
		return -1;
	if (!spool_events_pending(&nd->r.sj) ||
	    spool_lock(&nd->r.sj, SPOOL_LOCK_RELAY, false, &nd->lock_fd)) {
		spool_job_close(
		    &nd->r.sj); /* empty, or its batch relay has it */
		return -1;
	}
	if (!spool_has_file(&nd->r.sj, "meta")) {
		/* an srun step that still runs: its end writes meta and
		 * kicks us (not "pending": that would mean backing off) */
		dbg("%s: no meta yet", dir);
		spool_unlock(nd->lock_fd);
		spool_job_close(&nd->r.sj);
		return -1;
	}
	/* a meta that cannot be used (logged) is no reason to back off */
	rv = load_meta(&nd->r) ? -1 : gateway_failed(nd->r.gateway) ? 1 : 0;
	if (rv) {
		deliverer_free(nd->r.d);
		spool_unlock(nd->lock_fd);
		spool_job_close(&nd->r.sj);
	}
	return rv;
}

/* Done with dir for this pass; rv what its delivery came to. */
static void node_dir_release(struct node_dir *nd, int rv)
{
	if (rv == -EAGAIN && !gateway_failed(nd->r.gateway) &&
	    n_failed_gw < FAILED_MAX)
		snprintf(failed_gw[n_failed_gw++], sizeof(failed_gw[0]), "%s",
			 nd->r.gateway);
	deliverer_free(nd->r.d);
	/* a job without a batch step: nothing else will remove its dir; a
	 * batch job's dir goes only after its end */
	if (!rv && (!nd->r.batch || spool_has_file(&nd->r.sj, "end")))
		spool_remove_job_if_idle(&nd->r.sj, &nd->lock_fd);
	spool_unlock(nd->lock_fd);
	spool_job_close(&nd->r.sj);
}

/*
 * One pass of the node relay over its spool; returns how many job dirs
 * still hold events.  Dirs whose reports go the same way (one gateway, a
 * MUNGE realm) share batches: the events of every srun step since the
 * last pass in one request.  A ticket is one job's: such dirs go alone.
 */
#define PASS_SHARED_MAX 64

static int node_pass(const char *spool)
{
	static struct node_dir group[PASS_SHARED_MAX], alone;
	struct drain_dir dd[PASS_SHARED_MAX]; /* group[i]'s */
	struct deliverer *shared = NULL;
	char path[4200];
	struct dirent *de;
	int n = 0, pending = 0, rv, i;
	DIR *d = opendir(spool);

	n_failed_gw = 0; /* each pass tries every gateway again */
	while (d && (de = readdir(d))) {
		struct stat st;
		struct node_dir *nd = n < PASS_SHARED_MAX ? &group[n] : &alone;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", spool, de->d_name);
		if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		rv = node_dir_take(path, nd);
		pending += rv > 0;
		if (rv)
			continue;
		/* the gateway takes one site's events per request */
		if (nd != &alone && deliverer_can_share(nd->r.d) &&
		    (!n || (deliverer_same_route(group[0].r.d, nd->r.d) &&
			    !strcmp(group[0].r.site, nd->r.site)))) {
			dd[n] = (struct drain_dir){.sj = &nd->r.sj,
						   .job_id = nd->r.job_id};
			n++;
			continue;
		}
		if (nd != &alone) /* another route: this one goes alone */
			alone = *nd;
		rv = send_events(&alone.r);
		pending += rv != 0;
		node_dir_release(&alone, rv);
	}
	if (d)
		closedir(d);
	if (!n)
		return pending;
	/* several jobs' events: no one job's request id on the request */
	shared = n > 1 ? deliverer_shared(group[0].r.d) : NULL;
	rv = drain_events(dd, n, shared ? shared : group[0].r.d,
			  SEND_TIMEOUT_MS);
	deliverer_free(shared);
	for (i = 0; i < n; i++) {
		int dir_rv = rv ? rv : dd[i].blocked ? -EINPROGRESS : 0;

		pending += dir_rv != 0;
		node_dir_release(&group[i], dir_rv);
	}
	return pending;
}

/*
 * One relay per node for the events of steps outside batch jobs (srun,
 * salloc): started by the first step that leaves events behind, woken by
 * SIGUSR1 from later ones, gone after idle_s seconds without work.  One
 * process for all such steps costs far less than one per step.
 */
static int run_node(const char *spool, long idle_s)
{
	char path[4200], pid[32];
	int lock_fd, sfd, backoff_ms = 0;
	int64_t idle_since = mono_ms();
	sigset_t mask;

	snprintf(path, sizeof(path), "%s/.node-relay.lock", spool);
	lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0)
		return 0; /* another node relay runs */
	snprintf(path, sizeof(path), "%s/node-relay.pid", spool);
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	{
		FILE *f = fopen(path, "w");

		if (f) {
			fputs(pid, f);
			fclose(f);
		}
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	for (;;) {
		struct pollfd pfd = {.fd = sfd, .events = POLLIN};
		struct signalfd_siginfo si;
		int pending = node_pass(spool), wait_ms;
		bool stop = false;

		if (pending) {
			/* while the gateway fails no dir is emptied into a
			 * spare: the next steps' dirs are made here, not on
			 * their path (when it answers, delivered dirs keep
			 * the spares coming, and more would only be made to
			 * be removed) */
			spool_make_spares(spool, 8);
			idle_since = mono_ms();
			backoff_ms =
			    backoff_ms ? backoff_ms * 2 : BACKOFF_MIN_MS;
			if (backoff_ms > BACKOFF_MAX_MS)
				backoff_ms = BACKOFF_MAX_MS;
			wait_ms = backoff_ms;
		} else {
			backoff_ms = 0;
			wait_ms = 1000;
			if (mono_ms() - idle_since > idle_s * 1000)
				break;
		}
		/*
		 * A kick (SIGUSR1: a step left events) means "soon" while the
		 * gateway answers: the next pass comes COALESCE_MS after the
		 * first kick, taking the events of every step that ended
		 * meanwhile in one request.  While it fails, kicks wait out
		 * the backoff rather than retry every queued job at each srun.
		 */
		for (int64_t until = mono_ms() + wait_ms; !stop;) {
			int64_t left = until - mono_ms();
			bool kicked = false;

			if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
				break;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGTERM)
					stop = true;
				kicked = true;
			}
			idle_since = mono_ms();
			if (kicked && !pending &&
			    until > idle_since + COALESCE_MS)
				until = idle_since + COALESCE_MS;
			if (kicked && pending) /* a step took a spare, maybe */
				spool_make_spares(spool, 1);
		}
		if (stop)
			break;
	}
	snprintf(path, sizeof(path), "%s/node-relay.pid", spool);
	unlink(path);
	close(sfd);
	close(lock_fd);
	return 0;
}

/* The plugin links no libjwt/OpenSSL; it asks us (ticket_check_exec). */
static int check_ticket(const char *key_path)
{
	char token[JWT_TOKEN_MAX + 2], err[256], line[512];
	struct ticket_check tc = {.present = true};
	struct jwt_key *key = NULL;
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(token) - 1 &&
	       (n = read(STDIN_FILENO, token + got, sizeof(token) - 1 - got)) >
		   0)
		got += (size_t)n;
	token[got] = '\0';
	token[strcspn(token, "\r\n")] = '\0';
	if (jwt_key_load_file(key_path, NULL, &key, err, sizeof(err)))
		snprintf(tc.error, sizeof(tc.error), "ticket key: %.140s", err);
	else
		ticket_check_verify(key, token, time(NULL), &tc);
	jwt_key_free(key);
	explicit_bzero(token, sizeof(token));
	ticket_check_format(&tc, line, sizeof(line));
	fputs(line, stdout);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: tiergate-relay --job-dir DIR [--control-fd=N]\n"
		   "                      [--linger=SECONDS] [--poll-ms=MS]\n"
		   "       tiergate-relay --drain SPOOL [--linger=SECONDS]\n"
		   "       tiergate-relay --node SPOOL [--idle-exit=SECONDS]\n"
		   "       tiergate-relay --check-ticket KEYFILE < TICKET\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"job-dir", required_argument, NULL, 'j'},
	    {"control-fd", required_argument, NULL, 'c'},
	    {"lock-fd", required_argument, NULL, 'L'},
	    {"linger", required_argument, NULL, 'l'},
	    {"poll-ms", required_argument, NULL, 'p'},
	    {"drain", required_argument, NULL, 'd'},
	    {"check-ticket", required_argument, NULL, 't'},
	    {"node", required_argument, NULL, 'n'},
	    {"idle-exit", required_argument, NULL, 'i'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *job_dir = NULL, *spool = NULL, *node_spool = NULL;
	long idle_s = 60;
	int ctl_fd = -1, lock_fd = -1, c, logfd;
	long linger_s = 600, poll_ms = 100;
	char logpath[4200];

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			job_dir = optarg;
			break;
		case 'c':
			ctl_fd = atoi(optarg);
			break;
		case 'L':
			lock_fd = atoi(optarg);
			break;
		case 'l':
			linger_s = atol(optarg);
			break;
		case 'p':
			poll_ms = atol(optarg);
			break;
		case 'd':
			spool = optarg;
			break;
		case 't':
			return check_ticket(optarg);
		case 'n':
			node_spool = optarg;
			break;
		case 'i':
			idle_s = atol(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!!job_dir + !!spool + !!node_spool != 1) {
		usage(stderr);
		return 2;
	}
	log_init("tiergate-relay");
	/* the job comes first: delivery takes the CPU the job leaves */
	if (setpriority(PRIO_PROCESS, 0, RELAY_NICE) < 0)
		log_warn("cannot lower the relay's priority: %m");
	log_debug_from_env();
	/* started detached with stderr on /dev/null: log beside the spool */
	if (!isatty(STDERR_FILENO)) {
		if (job_dir)
			snprintf(logpath, sizeof(logpath), "%s/../relay.log",
				 job_dir);
		else
			snprintf(logpath, sizeof(logpath), "%s/relay.log",
				 spool ? spool : node_spool);
		logfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			     0600);
		if (logfd >= 0) {
			dup2(logfd, STDERR_FILENO);
			close(logfd);
		}
	}
	if (node_spool)
		return run_node(node_spool, idle_s);
	if (spool)
		return drain_spool(spool, linger_s, poll_ms);
	return run_job(job_dir, ctl_fd, lock_fd, linger_s, poll_ms, false);
}
