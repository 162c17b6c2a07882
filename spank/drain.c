/* drain.c: see drain.h. */
#include "drain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/*
 * A dir's events as listed once per call: names[next] is the oldest not yet
 * delivered.  Not listed again for every batch: the dir may hold thousands
 * (a long job's steps while the gateway was down).  Events queued after
 * the listing wait for the next call (the plugin wakes the relay for
 * them).
 */
struct dir_queue {
	char **names;
	size_t n, next;
	bool listed;
};

/* Up to DELIVER_EVENTS_MAX queued events, each dir's oldest first. */
struct event_batch {
	char *names[DELIVER_EVENTS_MAX];
	char *jsons[DELIVER_EVENTS_MAX];
	int dir[DELIVER_EVENTS_MAX];	  /* which of the dirs */
	size_t index[DELIVER_EVENTS_MAX]; /* in that dir's queue */
	size_t n, bytes, max;		  /* max: events per POST, for now */
};

/* 0 added, 1 the batch is full (the next POST takes it), -ENOMEM. */
static int batch_add(struct event_batch *b, int dir, size_t index,
		     const char *name, const char *json)
{
	size_t len = strlen(json);

	if (b->n == b->max || (b->n && b->bytes + len > DELIVER_EVENTS_BYTES))
		return 1;
	b->names[b->n] = strdup(name);
	b->jsons[b->n] = strdup(json);
	if (!b->names[b->n] || !b->jsons[b->n]) {
		free(b->names[b->n]);
		free(b->jsons[b->n]);
		return -ENOMEM; /* what is in the batch goes; the rest waits */
	}
	b->bytes += len + 1;
	b->dir[b->n] = dir;
	b->index[b->n] = index;
	b->n++;
	return 0;
}

static void batch_free(struct event_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->names[i]);
		free(b->jsons[i]);
	}
	b->n = b->bytes = 0;
}

/*
 * Add dir k's next undelivered events to the batch (the dir is listed at
 * its first batch).  1 when the batch is full, 0 when the dir has no more
 * to add, -errno when it cannot be listed or on ENOMEM.
 */
static int batch_fill(struct event_batch *b, struct drain_dir *dd,
		      struct dir_queue *q, int k, char *buf)
{
	size_t i;
	int rv;

	if (!q->listed) {
		rv = spool_events_list(dd->sj, &q->names, &q->n);
		if (rv)
			return rv; /* listed again at the next batch */
		q->listed = true;
	}
	for (i = q->next; i < q->n; i++) {
		rv = spool_event_read(dd->sj, q->names[i], buf,
				      SPOOL_EVENT_MAX_BYTES);
		if (rv == -ENOENT)
			continue; /* delivered by someone else meanwhile */
		if (rv < 0)
			return rv; /* unreadable now (EMFILE, EIO): the dir's
				      later events wait behind it, in order */
		rv = batch_add(b, k, i, q->names[i], buf);
		if (rv)
			return rv;
	}
	return 0;
}

/* What became of event k of a batch the gateway answered with rv. */
static int res_of(int rv, const int *results, size_t k)
{
	return rv ? rv : results[k];
}

/* One batch's results: 1 to go on, 0 when done with this call (with *out
 * set), the dirs' queues and blocked flags updated. */
static int batch_settle(struct event_batch *b, struct drain_dir *dirs,
			struct dir_queue *qs, int rv, const int *results,
			const char *err, int *out)
{
	size_t k;

	for (k = 0; k < b->n; k++) {
		struct drain_dir *dd = &dirs[b->dir[k]];
		int res = res_of(rv, results, k), done;

		if (res == 0) {
			done = spool_event_done(dd->sj, b->names[k]);
		} else if (res == -EBADMSG) {
			log_err("job %u: gateway refused event %s, kept in "
				"dead/: %s",
				dd->job_id, b->names[k], err);
			done = spool_event_dead(dd->sj, b->names[k]);
		} else {
			log_info("job %u: event %s not delivered yet: %s",
				 dd->job_id, b->names[k], err);
			break; /* the gateway handled none after it */
		}
		if (done && done != -ENOENT) {
			/* it would be sent again at once, forever (a spool
			 * gone read-only, full): back off */
			log_err("job %u: event %s stays queued: %s", dd->job_id,
				b->names[k], strerror(-done));
			*out = -EAGAIN;
			return 0;
		}
		/* handled: the dir's events up to it (those skipped as
		 * delivered meanwhile included) need no other look */
		qs[b->dir[k]].next = b->index[k] + 1;
	}
	if (k < b->n && res_of(rv, results, k) != -EINPROGRESS) {
		*out = -EAGAIN;
		return 0;
	}
	/* -EINPROGRESS: the gateway answers, only this job waits (its submit
	 * has not told the gateway its id yet), for one event or for the
	 * whole request (a ticket's: one job's events); later events of the
	 * others go in the next batch */
	for (size_t i = k; i < b->n && (rv || i == k); i++)
		dirs[b->dir[i]].blocked = true;
	return 1;
}

int drain_events(struct drain_dir *dirs, int n, struct deliverer *d,
		 int timeout_ms)
{
	int results[DELIVER_EVENTS_MAX], rv, out = 0, i;
	size_t max = DELIVER_EVENTS_MAX;
	struct dir_queue *qs = calloc((size_t)n, sizeof(*qs));
	char err[320], *buf = malloc(SPOOL_EVENT_MAX_BYTES);

	if (!qs || !buf) {
		free(qs);
		free(buf);
		return -EAGAIN;
	}
	for (;;) {
		struct event_batch b = {.n = 0, .bytes = 0, .max = max};
		bool read_failed = false;

		for (i = 0; i < n; i++) {
			if (dirs[i].blocked)
				continue;
			rv = batch_fill(&b, &dirs[i], &qs[i], i, buf);
			read_failed |= rv < 0;
			if (rv > 0)
				break; /* full */
		}
		if (!b.n) { /* none left, or none could be read (ENOMEM) */
			out = read_failed ? -EAGAIN : 0;
			break;
		}
		rv = deliver_events(d, (const char *const *)b.jsons, b.n,
				    results, timeout_ms, err, sizeof(err));
		if (rv == -E2BIG && b.n > 1) { /* none stored: half as many */
			log_info("gateway refused %zu events at once (%s): "
				 "sending %zu",
				 b.n, err, b.n / 2);
			max = b.n / 2;
			batch_free(&b);
			continue;
		}
		rv = batch_settle(&b, dirs, qs, rv, results, err, &out);
		batch_free(&b);
		if (!rv)
			break;
	}
	for (i = 0; i < n; i++)
		spool_names_free(qs[i].names, qs[i].n);
	free(qs);
	free(buf);
	return out;
}
