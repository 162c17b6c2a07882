/*
 * slurm_state.h: the gateway's one job-state vocabulary (docs/api.md) and
 * how a Slurm job_state string, state_reason and raw exit_code map onto it.
 *
 * Two X-macro lists, each giving an enum and its name table:
 *
 *   TG_JOB_STATES    what the API shows: accepted, submitting, pending,
 *                    running, completing, completed, failed, cancelled,
 *                    timeout, rejected, unknown.  The names are the API's
 *                    lower-case strings and are stable.
 *   SLURM_STATES     what slurmctld reports in job_state (job_state_string()
 *                    of Slurm 22.05: a flag name such as COMPLETING or
 *                    REQUEUED when a flag is set, else the base state).
 *
 * Rules that matter:
 *  - "job not found" (the site purged the job after MinJobAge before its
 *    final state was seen) is `unknown`, never a guessed completed/failed:
 *    use slurm_status_missing().
 *  - An unrecognised Slurm state string maps to `unknown` (and is kept
 *    verbatim in slurm_status.slurm_name for the API's slurm.state).
 *  - exit_code from slurmrestd is a raw wait(2) status: 768 is exit 3, a
 *    job killed by SIGTERM (CANCELLED) shows 15.  It is decoded only once
 *    the job is final (while it runs Slurm reports 0, which means nothing).
 *
 * Pure functions, no allocation, any thread.
 */
#ifndef TIERGATE_SLURM_STATE_H
#define TIERGATE_SLURM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* X(ENUM_SUFFIX, "api name", final) */
#define TG_JOB_STATES(X)                                                       \
	X(ACCEPTED, "accepted", false) /* journaled, not yet at the site */    \
	X(SUBMITTING, "submitting", false) /* submit call in flight */         \
	X(PENDING, "pending", false)                                           \
	X(RUNNING, "running", false)                                           \
	X(COMPLETING, "completing", false)                                     \
	X(COMPLETED, "completed", true)                                        \
	X(FAILED, "failed", true)                                              \
	X(CANCELLED, "cancelled", true)                                        \
	X(TIMEOUT, "timeout", true)                                            \
	X(REJECTED, "rejected", true) /* the site refused the job */           \
	X(UNKNOWN, "unknown", true)   /* the site forgot it: never guessed */

enum tg_job_state {
#define TG_JOB_STATE_ENUM_(e, name, final) TG_JOB_##e,
	TG_JOB_STATES(TG_JOB_STATE_ENUM_)
#undef TG_JOB_STATE_ENUM_
	    TG_JOB_STATE_COUNT_
};

/* "running"; "?" for an out-of-range value. */
const char *tg_job_state_name(enum tg_job_state s);
/* 0 and *out for an API name ("running"); -EINVAL otherwise. */
int tg_job_state_from_name(const char *name, enum tg_job_state *out);
/* completed failed cancelled timeout rejected unknown */
bool tg_job_state_final(enum tg_job_state s);

/*
 * Slurm 22.05 job_state strings.  X(NAME, maps-to).  The flag states come
 * first in job_state_string(), so COMPLETING hides whether the job will be
 * COMPLETED or FAILED: it is not final.
 */
#define SLURM_STATES(X)                                                        \
	X(PENDING, PENDING)                                                    \
	X(RUNNING, RUNNING)                                                    \
	X(SUSPENDED, RUNNING) /* allocated, stopped by an admin */             \
	X(COMPLETED, COMPLETED)                                                \
	X(CANCELLED, CANCELLED)                                                \
	X(FAILED, FAILED)                                                      \
	X(TIMEOUT, TIMEOUT)                                                    \
	X(NODE_FAIL, FAILED)                                                   \
	X(PREEMPTED, FAILED) /* ended by the site, not by the user */          \
	X(BOOT_FAIL, FAILED)                                                   \
	X(DEADLINE, TIMEOUT) /* ended at its --deadline */                     \
	X(OUT_OF_MEMORY, FAILED)                                               \
	X(COMPLETING, COMPLETING) /* flag: epilog / step cleanup running */    \
	X(CONFIGURING, PENDING)	  /* flag: allocated, nodes booting */         \
	X(RESIZING, RUNNING)                                                   \
	X(REQUEUED, PENDING) /* flag: will run again */                        \
	X(REQUEUE_FED, PENDING)                                                \
	X(REQUEUE_HOLD, PENDING)                                               \
	X(SPECIAL_EXIT, PENDING) /* requeued and held */                       \
	X(STOPPED, RUNNING)	 /* SIGSTOP'ed, still allocated */             \
	X(REVOKED, UNKNOWN)	 /* federation: runs on another cluster */     \
	X(RESV_DEL_HOLD, PENDING)                                              \
	X(SIGNALING, RUNNING)                                                  \
	X(STAGE_OUT, COMPLETING)                                               \
	X(UPDATE_DB, PENDING)                                                  \
	X(POWER_UP_NODE, PENDING)                                              \
	X(RECONFIG_FAIL, FAILED)

enum slurm_state {
	SLURM_STATE_UNRECOGNIZED = 0, /* a string this table does not know */
#define SLURM_STATE_ENUM_(name, tg) SLURM_STATE_##name,
	SLURM_STATES(SLURM_STATE_ENUM_)
#undef SLURM_STATE_ENUM_
	    SLURM_STATE_COUNT_
};

/* "RUNNING"; "UNRECOGNIZED" for SLURM_STATE_UNRECOGNIZED; "?" out of range */
const char *slurm_state_name(enum slurm_state s);
/* Exact (case-sensitive) match; SLURM_STATE_UNRECOGNIZED otherwise. */
enum slurm_state slurm_state_parse(const char *s);
/* The API state for a Slurm state (UNRECOGNIZED -> TG_JOB_UNKNOWN). */
enum tg_job_state slurm_state_to_tg(enum slurm_state s);

/* A decoded raw wait status. */
struct slurm_exit {
	bool known;	  /* decoded from a final job's exit_code */
	int code;	  /* exit status (WEXITSTATUS), -1 when killed */
	int signal;	  /* terminating signal (WTERMSIG), 0 when exited */
	bool core_dumped; /* WCOREDUMP */
};

/*
 * Decode a raw wait status (768 -> code 3; 15 -> signal 15; 0x8b -> signal
 * 11 + core).  Values outside 0..0xffff (NO_VAL and friends) give
 * known = false.
 */
void slurm_exit_decode(int64_t raw, struct slurm_exit *out);

#define SLURM_STATUS_NAME_MAX 24
#define SLURM_STATUS_REASON_MAX 64

/* One job's state as the gateway records it. */
struct slurm_status {
	enum tg_job_state state; /* mapped */
	enum slurm_state slurm;	 /* parsed */
	/* as reported (truncated), "" when missing: the API's slurm.state */
	char slurm_name[SLURM_STATUS_NAME_MAX];
	char reason[SLURM_STATUS_REASON_MAX]; /* state_reason, "" if none */
	struct slurm_exit exit;		      /* decoded when final */
	bool missing; /* the site does not know the job (purged) */
};

/*
 * Fill st from a job's job_state (NULL -> unknown), state_reason (kept
 * verbatim, "None" included; NULL -> "") and raw exit_code (has_exit
 * false: not reported).
 * The exit code is decoded only when the mapped state is final.
 */
void slurm_status_set(struct slurm_status *st, const char *job_state,
		      const char *reason, bool has_exit, int64_t raw_exit);
/* The site answered "Invalid job id": state unknown, reason "purged". */
void slurm_status_missing(struct slurm_status *st);
/* "running (RUNNING reason=None)" / "failed (FAILED reason=NonZeroExitCode
 * exit=3)" / "cancelled (CANCELLED signal=15)".  Returns buf. */
const char *slurm_status_debug_str(const struct slurm_status *st, char *buf,
				   size_t len);

#endif
