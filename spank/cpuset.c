/* cpuset.c: see cpuset.h. */
#include "cpuset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cpuset_parse(const char *list, cpu_set_t *out)
{
	const char *p = list;

	CPU_ZERO(out);
	if (!p || !*p)
		return -EINVAL;
	while (*p) {
		char *end;
		unsigned long lo, hi;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		lo = strtoul(p, &end, 10);
		hi = lo;
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			hi = strtoul(p, &end, 10);
		}
		if (hi < lo || hi >= CPU_SETSIZE)
			return -EINVAL;
		for (; lo <= hi; lo++)
			CPU_SET(lo, out);
		p = end;
		if (*p == ',')
			p++;
		else if (*p)
			return -EINVAL;
	}
	return 0;
}

int cpuset_format(const cpu_set_t *set, char *buf, size_t len)
{
	size_t o = 0;
	int cpu, start = -1;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	for (cpu = 0; cpu <= CPU_SETSIZE; cpu++) {
		int in = cpu < CPU_SETSIZE && CPU_ISSET(cpu, set);

		if (in && start < 0)
			start = cpu;
		if (!in && start >= 0) {
			int n = start == cpu - 1
				    ? snprintf(buf + o, len - o, "%s%d",
					       o ? "," : "", start)
				    : snprintf(buf + o, len - o, "%s%d-%d",
					       o ? "," : "", start, cpu - 1);
			if (n < 0 || (size_t)n >= len - o)
				return -ENOSPC;
			o += (size_t)n;
			start = -1;
		}
	}
	return 0;
}

static int take_first(const cpu_set_t *from, unsigned n, cpu_set_t *out)
{
	int cpu, got = 0;

	CPU_ZERO(out);
	for (cpu = 0; cpu < CPU_SETSIZE && (unsigned)got < n; cpu++) {
		if (CPU_ISSET(cpu, from)) {
			CPU_SET(cpu, out);
			got++;
		}
	}
	return got;
}

int cpuset_confine(const cpu_set_t *allocated, const cpu_set_t *current,
		   unsigned tier_cpus, cpu_set_t *out)
{
	cpu_set_t both;

	CPU_AND(&both, allocated, current);
	if (CPU_COUNT(&both) > 0)
		return take_first(&both, tier_cpus, out);
	return take_first(current, tier_cpus, out);
}
