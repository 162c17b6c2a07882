/*
 * spool.h: the on-node spool that keeps what could not be delivered yet.
 *
 *   <spool>/<site>-<jobid>/            one dir per job (0700, root)
 *       .seq.lock, .relay.lock         flocks: seq allocation, one relay;
 *                                      .seq.lock holds the last sequence
 *                                      number (older spools: a "seq" file)
 *       events/<seq:010>.json          undelivered events, in order
 *       dead/<seq:010>.json            events the gateway refused (4xx;
 *                                      dead/ made at the first one)
 *       meta                           key=value: what the relay needs
 *       stdio                          "stream<TAB>path-of-fd" lines
 *       <stream>.acked                 bytes of a stream the gateway holds
 *       relay.pid, end                 relay control
 *   <spool>/.spare-<k>/                a delivered job dir, emptied but
 *                                      for events/ and .seq.lock, kept
 *                                      for the next job (k < 8)
 *
 * Several slurmstepds of one job on one node (batch and srun steps) append
 * concurrently; seq numbers are allocated under the flock, files appear by
 * rename(2) (never over an existing one), so a reader sees whole events in
 * order.  Nothing is fsync'ed (it never was; see "The on-node spool" in
 * docs/protocol.md): queued events survive the death of any process
 * (slurmstepd, the relay, the gateway), not a crash of the node's kernel.
 * Plain C.
 */
#ifndef TIERGATE_SPANK_SPOOL_H
#define TIERGATE_SPANK_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool_job {
	char dir[4096];
	int dir_fd;
	int seq_fd; /* .seq.lock, opened at the first append, kept open */
};

/*
 * Open the job's directory, made (0700) when missing: a spare one (an
 * emptied job dir the relay kept, "<spool>/.spare-<k>") renamed into
 * place, else a new one.
 */
int spool_job_open(const char *spool, const char *site, uint32_t job_id,
		   struct spool_job *sj);
/* Open an existing job dir (the relay): -ENOENT when it is gone. */
int spool_job_open_dir(const char *dir, struct spool_job *sj);
void spool_job_close(struct spool_job *sj);

/*
 * Append an event; it becomes visible atomically.  0 or -errno; -ESTALE
 * when the dir was removed or made a spare since it was opened (open it
 * again).
 */
int spool_event_append(struct spool_job *sj, const char *json);
/* Append n events in this order under one lock (all or the first few:
 * on error the ones before the failing one stay queued). */
int spool_event_append_n(struct spool_job *sj, const char *const *jsons,
			 size_t n);
/* True when undelivered events exist (so a new one must queue behind). */
bool spool_events_pending(struct spool_job *sj);
/* The largest event the spool reads back. */
#define SPOOL_EVENT_MAX_BYTES (64 * 1024)
/* The names of the undelivered events, oldest first (*names is NULL when
 * there are none); 0 or -errno.  Free with spool_names_free. */
int spool_events_list(struct spool_job *sj, char ***names, size_t *n);
void spool_names_free(char **names, size_t n);
/* Event `name` (as listed) into buf, NUL-terminated: its length, or
 * -errno (-ENOENT: delivered meanwhile by someone else). */
int spool_event_read(struct spool_job *sj, const char *name, char *buf,
		     size_t len);
int spool_event_done(struct spool_job *sj, const char *name);
int spool_event_dead(struct spool_job *sj, const char *name);

/* Small files in the job dir: atomic write, bounded read. */
int spool_write_file(struct spool_job *sj, const char *name, const char *text);
/*
 * The same under the seq lock, only if sj is still the job's dir (else
 * -ESTALE, nothing written: a dir made a spare may be another job's by
 * now); if_missing: leave an existing file as it is.  For what a step
 * writes (meta), which a relay may empty meanwhile.
 */
int spool_write_file_locked(struct spool_job *sj, const char *name,
			    const char *text, bool if_missing);
int spool_read_file(struct spool_job *sj, const char *name, char *buf,
		    size_t len);
bool spool_has_file(struct spool_job *sj, const char *name);
int spool_remove_job(struct spool_job *sj);
/*
 * Make spare job dirs until there are 8, at most max_new of them (the
 * node relay, off every step's path: while the gateway is down no dir is
 * delivered and emptied).  Returns how many it made.
 */
int spool_make_spares(const char *spool, int max_new);
/*
 * Unless an event is waiting (appenders are excluded meanwhile): keep the
 * dir as a spare (up to 8), else remove it; *relay_lock_fd, the caller's
 * relay lock, is released (-1) first.  -ESTALE when it is no longer at
 * its path (another relay took it first).
 */
int spool_remove_job_if_idle(struct spool_job *sj, int *relay_lock_fd);

/* Take one of the job dir's locks; blocking or not.  -EWOULDBLOCK when
 * held by another process. */
#define SPOOL_LOCK_SEQ ".seq.lock"     /* event sequence numbers */
#define SPOOL_LOCK_RELAY ".relay.lock" /* one relay per job dir */
int spool_lock(struct spool_job *sj, const char *which, bool wait,
	       int *lock_fd);
void spool_unlock(int lock_fd);

#endif
