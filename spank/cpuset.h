/*
 * cpuset.h: CPU list arithmetic for confining tasks to a tier.
 * "0-3,8,10-11" <-> cpu_set_t.  Plain C, unit-tested.
 */
#ifndef TIERGATE_SPANK_CPUSET_H
#define TIERGATE_SPANK_CPUSET_H

#include <sched.h>
#include <stddef.h>

/* Parse a Slurm/kernel CPU list; 0 or -EINVAL. */
int cpuset_parse(const char *list, cpu_set_t *out);
/* Format as a compact list ("0-1,4"); "" for an empty set. */
int cpuset_format(const cpu_set_t *set, char *buf, size_t len);

/*
 * The CPUs a task of a tier with `tier_cpus` CPUs may use: the first
 * tier_cpus CPUs of `allocated` that are also in `current` (the affinity
 * slurmstepd gave the task).  When the two do not meet (the allocation is
 * numbered differently from the machine) the first tier_cpus of `current`.
 * Returns the number of CPUs in *out (>= 1 when current is not empty).
 */
int cpuset_confine(const cpu_set_t *allocated, const cpu_set_t *current,
		   unsigned tier_cpus, cpu_set_t *out);

#endif
