/*
 * hostlist.h: the n-th name of a Slurm host list ("a1,b[01-03,7],c").
 * slurmstepd offers no item for its own node name; a step's node is entry
 * S_JOB_NODEID of SLURM_STEP_NODELIST.  Plain C, unit-tested.
 */
#ifndef TIERGATE_SPANK_HOSTLIST_H
#define TIERGATE_SPANK_HOSTLIST_H

#include <stddef.h>

/* 0, -ENOENT when the list is shorter, -EINVAL when malformed. */
int hostlist_nth(const char *list, unsigned n, char *out, size_t len);

#endif
