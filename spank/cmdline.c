/* cmdline.c: see cmdline.h. */
#include "cmdline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sbatch/srun options that take a separate argument (short and long). */
static const char *const short_with_arg = "AaBbCcDdeFGiJLMmNnopqSTtwx";
static const char *const long_with_arg[] = {
    "account",
    "acctg-freq",
    "array",
    "batch",
    "bb",
    "bbf",
    "begin",
    "chdir",
    "cluster-constraint",
    "clusters",
    "comment",
    "constraint",
    "container",
    "core-spec",
    "cores-per-socket",
    "cpu-freq",
    "cpus-per-gpu",
    "cpus-per-task",
    "deadline",
    "delay-boot",
    "dependency",
    "distribution",
    "error",
    "exclude",
    "export",
    "export-file",
    "extra-node-info",
    "get-user-env",
    "gid",
    "gpu-bind",
    "gpu-freq",
    "gpus",
    "gpus-per-node",
    "gpus-per-socket",
    "gpus-per-task",
    "gres",
    "gres-flags",
    "hint",
    "input",
    "job-name",
    "licenses",
    "mail-type",
    "mail-user",
    "mcs-label",
    "mem",
    "mem-bind",
    "mem-per-cpu",
    "mem-per-gpu",
    "mincpus",
    "network",
    "nice",
    "nodefile",
    "nodelist",
    "nodes",
    "ntasks",
    "ntasks-per-core",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "ntasks-per-socket",
    "open-mode",
    "output",
    "partition",
    "power",
    "priority",
    "profile",
    "propagate",
    "qos",
    "reservation",
    "signal",
    "sockets-per-node",
    "switches",
    "thread-spec",
    "threads-per-core",
    "time",
    "time-min",
    "tmp",
    "uid",
    "wckey",
    "wrap",
    "cpu-tier",
    "mpi",
    "kill-on-bad-exit",
    "slurmd-debug",
    "task-epilog",
    "task-prolog",
    "label",
    "multi-prog",
    NULL,
};

static bool long_takes_arg(const char *name, size_t len)
{
	size_t i;

	for (i = 0; long_with_arg[i]; i++)
		if (strlen(long_with_arg[i]) == len &&
		    !strncmp(long_with_arg[i], name, len))
			return true;
	return false;
}

static long parse_count(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return (*s && !*end && v > 0) ? v : 0;
}

static void from_env(char *const envp[], struct cmd_request *req)
{
	static const char *const cpu_vars[] = {
	    "SBATCH_CPUS_PER_TASK=",
	    "SALLOC_CPUS_PER_TASK=",
	    "SRUN_CPUS_PER_TASK=",
	    NULL,
	};
	static const char *const acct_vars[] = {
	    "SBATCH_ACCOUNT=",
	    "SALLOC_ACCOUNT=",
	    "SLURM_ACCOUNT=",
	    NULL,
	};
	size_t i, j;

	for (i = 0; envp && envp[i]; i++) {
		for (j = 0; cpu_vars[j]; j++)
			if (!strncmp(envp[i], cpu_vars[j], strlen(cpu_vars[j])))
				req->cpus_per_task =
				    parse_count(envp[i] + strlen(cpu_vars[j]));
		for (j = 0; acct_vars[j]; j++)
			if (!strncmp(envp[i], acct_vars[j],
				     strlen(acct_vars[j])))
				snprintf(req->account, sizeof(req->account),
					 "%s", envp[i] + strlen(acct_vars[j]));
	}
}

void cmdline_scan(int argc, char *const argv[], char *const envp[],
		  struct cmd_request *req)
{
	int i;

	memset(req, 0, sizeof(*req));
	from_env(envp, req);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL, *eq;
		size_t nlen;

		if (a[0] != '-' || !a[1])
			break; /* the script or command: its args are not ours
				*/
		if (!strcmp(a, "--"))
			break;
		if (a[1] == '-') {
			eq = strchr(a, '=');
			nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			if (eq)
				val = eq + 1;
			else if (long_takes_arg(a + 2, nlen) && i + 1 < argc)
				val = argv[++i];
			if (!val)
				continue;
			if (nlen == 13 && !strncmp(a + 2, "cpus-per-task", 13))
				req->cpus_per_task = parse_count(val);
			else if (nlen == 7 && !strncmp(a + 2, "account", 7))
				snprintf(req->account, sizeof(req->account),
					 "%s", val);
			continue;
		}
		/* short options; only the last of a cluster may take an arg */
		for (const char *p = a + 1; *p; p++) {
			if (!strchr(short_with_arg, *p))
				continue;
			val = p[1] ? p + 1 : (i + 1 < argc ? argv[++i] : NULL);
			if (val && *p == 'c')
				req->cpus_per_task = parse_count(val);
			else if (val && *p == 'A')
				snprintf(req->account, sizeof(req->account),
					 "%s", val);
			break;
		}
	}
}

int cmdline_self(char **buf, char ***argv, int *argc)
{
	size_t cap = 65536, len = 0, i;
	char *b = malloc(cap + 1), **v;
	int fd, n = 0;
	ssize_t r;

	if (!b)
		return -ENOMEM;
	fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(b);
		return -errno;
	}
	while (len < cap && (r = read(fd, b + len, cap - len)) > 0)
		len += (size_t)r;
	close(fd);
	b[len] = '\0';
	for (i = 0; i < len; i++)
		if (!b[i])
			n++;
	v = calloc((size_t)n + 1, sizeof(*v));
	if (!v) {
		free(b);
		return -ENOMEM;
	}
	n = 0;
	for (i = 0; i < len; i += strlen(b + i) + 1)
		v[n++] = b + i;
	*buf = b;
	*argv = v;
	*argc = n;
	return 0;
}
