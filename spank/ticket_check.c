/* ticket_check.c: see ticket_check.h.  Verification lives in
 * ticket_check_verify.c so that the plugin, which links this file, does
 * not pull in libjwt. */
#include "ticket_check.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* "ok USER TIER JOB SITE EXP" or "bad MESSAGE"; names never hold blanks. */
int ticket_check_format(const struct ticket_check *tc, char *buf, size_t len)
{
	int n;

	if (tc->valid)
		n = snprintf(buf, len, "ok %s %s %s %s %lld\n", tc->t.user,
			     tc->t.tier, tc->t.job_id,
			     tc->t.site[0] ? tc->t.site : "-",
			     (long long)tc->t.exp);
	else
		n = snprintf(buf, len, "bad %s\n", tc->error);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int ticket_check_parse(const char *line, struct ticket_check *tc)
{
	long long exp = 0;
	char site[sizeof(tc->t.site)];

	memset(&tc->t, 0, sizeof(tc->t));
	tc->present = true;
	tc->valid = false;
	if (!strncmp(line, "bad ", 4)) {
		snprintf(tc->error, sizeof(tc->error), "%.*s",
			 (int)strcspn(line + 4, "\n"), line + 4);
		return 0;
	}
	if (sscanf(line, "ok %63s %31s %63s %31s %lld", tc->t.user, tc->t.tier,
		   tc->t.job_id, site, &exp) != 5) {
		snprintf(tc->error, sizeof(tc->error),
			 "ticket verifier gave no verdict");
		return -EINVAL;
	}
	if (strcmp(site, "-"))
		snprintf(tc->t.site, sizeof(tc->t.site), "%s", site);
	tc->t.exp = exp;
	tc->valid = true;
	tc->error[0] = '\0';
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ticket_check_exec(const char *relay, const char *key_path,
		       const char *token, int timeout_ms,
		       struct ticket_check *tc)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, status;
	char buf[512] = "";
	size_t got = 0, len = strlen(token);
	int64_t deadline = mono_ms() + timeout_ms;
	pid_t pid;

	memset(tc, 0, sizeof(*tc));
	tc->present = true;
	snprintf(tc->error, sizeof(tc->error), "ticket verifier failed");
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		goto out_close;
	pid = fork();
	if (pid < 0)
		goto out_close;
	if (pid == 0) {
		char *const envp[] = {"PATH=/usr/bin:/bin", NULL};

		dup2(in[0], 0);
		dup2(out[1], 1);
		close_range(3, ~0U, 0);
		execle(relay, "tiergate-relay", "--check-ticket", key_path,
		       (char *)NULL, envp);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	/* a token is at most a few KiB: it fits the pipe buffer */
	if (write(in[1], token, len) != (ssize_t)len)
		log_err("ticket verifier: short write");
	close(in[1]);
	in[1] = -1;
	while (got < sizeof(buf) - 1) {
		struct pollfd pfd = {.fd = out[0], .events = POLLIN};
		int64_t left = deadline - mono_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			kill(pid, SIGKILL);
			snprintf(tc->error, sizeof(tc->error),
				 "ticket verifier timed out");
			break;
		}
		n = read(out[0], buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got && ticket_check_parse(buf, tc) == 0)
		goto out_close;
	tc->valid = false;
	if (!got)
		log_err("ticket verifier %s gave no answer", relay);
out_close:
	if (in[0] >= 0)
		close(in[0]);
	if (in[1] >= 0)
		close(in[1]);
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
}
