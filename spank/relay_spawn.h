/*
 * relay_spawn.h: start tiergate-relay detached from the job step.
 *
 * The relay is double-forked and setsid()ed so that slurmstepd neither
 * waits for it nor kills it with the step's processes (it is re-parented
 * away from the step's process tree), which lets it make a final flush
 * after the job has ended.  Plain C.
 */
#ifndef TIERGATE_SPANK_RELAY_SPAWN_H
#define TIERGATE_SPANK_RELAY_SPAWN_H

#include <stddef.h>

/*
 * Run `relay` on `job_dir`.  ctl_fd (or -1) is one end of a unix socket
 * pair, passed to the relay as fd 3: the task sends the job's output files
 * over it once they are in place (relay_send_stdio).  lock_fd (or -1) is
 * the job dir's relay lock, taken by the caller and handed over as fd 4:
 * held from before the job starts, so a job that ends before the relay
 * is up still finds its relay.  Returns 0 once the relay process exists,
 * or -errno.
 */
int relay_spawn(const char *relay, const char *job_dir, int ctl_fd,
		int lock_fd);

/*
 * From the task, as the job's user, just before exec: open the task's
 * stdout and stderr for reading (through /proc/self/fd, never by a path
 * the user names; only if the user may read them) and pass them with their
 * description ("stdout DEV INO PATH" lines) over ctl_fd.  Same file for
 * both: one stream, stdout.  Closes ctl_fd.  0 or -errno.
 */
int relay_send_stdio(int ctl_fd);

/*
 * In the relay: wait up to timeout_ms for relay_send_stdio's message.
 * Fills fds[0..1] (stdout, stderr; -1 when absent) and desc.
 */
int relay_recv_stdio(int ctl_fd, int timeout_ms, int fds[2], char *desc,
		     size_t desclen);
/* Wake the node's relay for steps outside batch jobs, or start it. */
int relay_node_kick(const char *relay, const char *spool);

/* The relay next to the loaded plugin (dladdr), in buf. */
int relay_default_path(char *buf, unsigned len);

#endif
