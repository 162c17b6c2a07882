/*
 * drain.h: deliver the queued events of job dirs through one deliverer,
 * in batches (docs/protocol.md "Batches"): one request and one credential
 * for what many steps left, each dir's events in order.  The relay drains
 * its job dir with it, the node relay the dirs of every srun step since its
 * last pass.
 */
#ifndef TIERGATE_SPANK_DRAIN_H
#define TIERGATE_SPANK_DRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "deliver.h"
#include "spool.h"

struct drain_dir {
	struct spool_job *sj;
	uint32_t job_id; /* for the log */
	bool blocked;	 /* out: an event waits (the gateway does not know
			    its job yet); the dir's later events wait too */
};

/*
 * Deliver what the n dirs hold now (each dir is listed once, so a backlog
 * of N events costs one directory read, not N / DELIVER_EVENTS_MAX; what
 * is queued after that waits for the next call).  A delivered event is
 * released, one the gateway refuses for good goes to dead/.  0 when
 * nothing deliverable is left (some dirs may be blocked); -EAGAIN when
 * the gateway failed or the spool could not release an event (every dir
 * keeps the rest, in order, for a later call).
 */
int drain_events(struct drain_dir *dirs, int n, struct deliverer *d,
		 int timeout_ms);

#endif
