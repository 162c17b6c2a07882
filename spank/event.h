/*
 * event.h: the job-life reports the plugin sends to the gateway
 * (docs/protocol.md, "Events").  Each event carries an id derived from what
 * it reports (site/job/step/node/kind[/task]@step-start-ms), so delivering
 * it twice counts once, and a site that restarts its job ids at 1 does not
 * make a new job's events look like an old one's.
 */
#ifndef TIERGATE_SPANK_EVENT_H
#define TIERGATE_SPANK_EVENT_H

#include <stdint.h>

#define EVENT_STEP_BATCH 0xfffffffbu /* SLURM_BATCH_SCRIPT */
#define EVENT_STEP_EXTERN 0xfffffffcu

struct tg_event {
	const char *kind; /* step_start, task_exit, step_end, tier_refused */
	const char *site;
	uint32_t job_id;
	uint32_t step_id;
	const char *node;
	const char *user;
	const char *tier;
	const char *tier_source;
	const char *cores;	/* CPUs the tasks were confined to */
	const char *gw_job;	/* gateway job id from the ticket, or NULL */
	const char *request_id; /* X-Request-ID that created the job, or NULL */
	const char *message;	/* refusal text, or NULL */
	int task;		/* global task id, -1 when not a task event */
	int wait_status;	/* task_exit: raw wait status */
	double cpu_seconds;	/* step_end: user+system CPU of the step */
	int64_t time_ms;	/* wall clock, ms since the epoch */
	int64_t step_start_ms;	/* when the step began: part of the id, so
				   ids stay unique when a site reuses job ids */
};

/* "batch", "extern" or the step number. */
void event_step_name(uint32_t step_id, char *buf, unsigned len);
/* New JSON text (caller frees), or NULL on ENOMEM. */
char *event_to_json(const struct tg_event *ev);

#endif
