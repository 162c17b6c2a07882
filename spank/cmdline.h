/*
 * cmdline.h: what sbatch/salloc/srun were asked for, read from the
 * command's own argv and input environment.  In allocator/local context
 * SPANK offers no item for the CPUs or account requested, and the plugin
 * runs inside that very process.  Plain C, unit-tested.
 */
#ifndef TIERGATE_SPANK_CMDLINE_H
#define TIERGATE_SPANK_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

struct cmd_request {
	long cpus_per_task; /* 0 = not given */
	char account[64];   /* "" = not given */
};

/*
 * Scan argv (stopping at the script / command, i.e. the first word that
 * is not an option) and the SBATCH_/SALLOC_/SRUN_ input variables in envp.
 * The command line wins over the environment, as in Slurm.
 */
void cmdline_scan(int argc, char *const argv[], char *const envp[],
		  struct cmd_request *req);
/* Read /proc/self/cmdline into a NULL-terminated argv (caller frees *buf
 * and *argv); 0 or -errno. */
int cmdline_self(char **buf, char ***argv, int *argc);

#endif
