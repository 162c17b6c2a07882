/* relay_spawn.c: see relay_spawn.h. */
#include "relay_spawn.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

int relay_default_path(char *buf, unsigned len)
{
	Dl_info info;
	char tmp[4096];

	if (!dladdr((void *)relay_default_path, &info) || !info.dli_fname)
		return -ENOENT;
	snprintf(tmp, sizeof(tmp), "%s", info.dli_fname);
	snprintf(buf, len, "%s/tiergate-relay", dirname(tmp));
	return 0;
}

/* Put fd `from` at `to`, open across exec. */
static void place_fd(int from, int to)
{
	if (from != to)
		dup2(from, to); /* the copy is not close-on-exec */
	else
		fcntl(to, F_SETFD, 0);
}

static void exec_relay(const char *relay, const char *mode, const char *dir,
		       int ctl_fd, int lock_fd)
{
	char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
	char *argv[8];
	int i = 0, null_fd;

	/* fd 3: the control socket, fd 4: the job dir's relay lock, already
	 * held; nothing else survives exec */
	if (ctl_fd >= 0 && lock_fd == 3)
		lock_fd = dup(lock_fd);
	if (ctl_fd >= 0)
		place_fd(ctl_fd, 3);
	if (lock_fd >= 0)
		place_fd(lock_fd, 4);
	close_range(lock_fd >= 0 ? 5 : ctl_fd >= 0 ? 4 : 3, ~0U, 0);
	null_fd = open("/dev/null", O_RDWR);
	if (null_fd >= 0) {
		dup2(null_fd, 0);
		dup2(null_fd, 1);
		dup2(null_fd, 2);
		if (null_fd > 3)
			close(null_fd);
	}
	argv[i++] = (char *)"tiergate-relay";
	argv[i++] = (char *)mode;
	argv[i++] = (char *)dir;
	if (ctl_fd >= 0)
		argv[i++] = (char *)"--control-fd=3";
	if (lock_fd >= 0)
		argv[i++] = (char *)"--lock-fd=4";
	argv[i] = NULL;
	execve(relay, argv, envp);
	_exit(127);
}

static int spawn(const char *relay, const char *mode, const char *dir,
		 int ctl_fd, int lock_fd)
{
	pid_t child, done;
	int status = 0;

	if (access(relay, X_OK) < 0) {
		int rv = -errno;

		log_err("relay %s is not executable: %m", relay);
		return rv;
	}
	child = fork();
	if (child < 0)
		return -errno;
	if (child == 0) {
		/* middle process: detach and leave at once */
		setsid();
		signal(SIGHUP, SIG_IGN);
		switch (fork()) {
		case -1:
			_exit(1);
		case 0:
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			exec_relay(relay, mode, dir, ctl_fd, lock_fd);
			_exit(127);
		default:
			_exit(0);
		}
	}
	do
		done = waitpid(child, &status, 0);
	while (done < 0 && errno == EINTR);
	if (done < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_err("could not start relay %s for %s", relay, dir);
		return -ECHILD;
	}
	return 0;
}

int relay_spawn(const char *relay, const char *job_dir, int ctl_fd, int lock_fd)
{
	return spawn(relay, "--job-dir", job_dir, ctl_fd, lock_fd);
}

int relay_node_kick(const char *relay, const char *spool)
{
	char path[4200], buf[32];
	long pid = 0;
	int lock_fd;
	FILE *f;

	/* the relay's flock says whether it lives; a pid file alone could
	 * name a recycled pid, and SIGUSR1 kills what does not expect it */
	snprintf(path, sizeof(path), "%s/.node-relay.lock", spool);
	lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) == 0) {
		close(lock_fd); /* nobody holds it: start one */
		return spawn(relay, "--node", spool, -1, -1);
	}
	if (lock_fd >= 0)
		close(lock_fd);
	snprintf(path, sizeof(path), "%s/node-relay.pid", spool);
	f = fopen(path, "re");
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			pid = strtol(buf, NULL, 10);
		fclose(f);
	}
	if (pid > 1)
		kill((pid_t)pid, SIGUSR1);
	return 0;
}

int relay_send_stdio(int ctl_fd)
{
	char desc[9000] = "", path[4096];
	struct stat st[2];
	int fds[2] = {-1, -1}, n = 0, i, rv = 0;
	size_t o = 0;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} cm;
	struct iovec iov;
	struct msghdr msg = {0};
	struct cmsghdr *c;

	for (i = 0; i < 2; i++) {
		char self[32];
		ssize_t l;

		snprintf(self, sizeof(self), "/proc/self/fd/%d", i + 1);
		fds[n] = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fds[n] < 0)
			continue;
		if (fstat(fds[n], &st[n]) < 0 || !S_ISREG(st[n].st_mode) ||
		    (n == 1 && st[1].st_dev == st[0].st_dev &&
		     st[1].st_ino == st[0].st_ino)) {
			close(fds[n]);
			fds[n] = -1;
			continue;
		}
		l = readlink(self, path, sizeof(path) - 1);
		path[l > 0 ? l : 0] = '\0';
		o += snprintf(desc + o, sizeof(desc) - o, "%s %lu %lu %s\n",
			      i == 0 ? "stdout" : "stderr",
			      (unsigned long)st[n].st_dev,
			      (unsigned long)st[n].st_ino, path);
		n++;
	}
	iov.iov_base = desc;
	iov.iov_len = o + 1;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (n) {
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	if (sendmsg(ctl_fd, &msg, MSG_NOSIGNAL) < 0)
		rv = -errno;
	for (i = 0; i < n; i++)
		close(fds[i]);
	close(ctl_fd);
	return rv;
}

int relay_recv_stdio(int ctl_fd, int timeout_ms, int fds[2], char *desc,
		     size_t desclen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} cm;
	struct pollfd pfd = {.fd = ctl_fd, .events = POLLIN};
	struct iovec iov = {.iov_base = desc, .iov_len = desclen - 1};
	struct msghdr msg = {0};
	struct cmsghdr *c;
	int got[2] = {-1, -1}, n = 0, i;
	char *line, *save = NULL;
	ssize_t r;

	fds[0] = fds[1] = -1;
	desc[0] = '\0';
	if (poll(&pfd, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	r = recvmsg(ctl_fd, &msg, MSG_CMSG_CLOEXEC);
	if (r <= 0)
		return r < 0 ? -errno : -EPIPE;
	desc[r] = '\0';
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (n > 2)
				n = 2;
			memcpy(got, CMSG_DATA(c), sizeof(int) * n);
		}
	}
	/* fds arrive in the order of the description's lines */
	{
		char copy[9000];

		snprintf(copy, sizeof(copy), "%s", desc);
		i = 0;
		for (line = strtok_r(copy, "\n", &save); line && i < n;
		     line = strtok_r(NULL, "\n", &save), i++)
			fds[strncmp(line, "stderr", 6) ? 0 : 1] = got[i];
	}
	return 0;
}
