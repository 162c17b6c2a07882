/* event.c: see event.h. */
#include "event.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

void event_step_name(uint32_t step_id, char *buf, unsigned len)
{
	if (step_id == EVENT_STEP_BATCH)
		snprintf(buf, len, "batch");
	else if (step_id == EVENT_STEP_EXTERN)
		snprintf(buf, len, "extern");
	else
		snprintf(buf, len, "%u", step_id);
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

char *event_to_json(const struct tg_event *ev)
{
	char step[16], id[256];
	json_t *o;
	char *text;

	event_step_name(ev->step_id, step, sizeof(step));
	if (ev->task >= 0)
		snprintf(id, sizeof(id), "%s/%u/%s/%s/%s/%d@%lld", ev->site,
			 ev->job_id, step, ev->node, ev->kind, ev->task,
			 (long long)ev->step_start_ms);
	else
		snprintf(id, sizeof(id), "%s/%u/%s/%s/%s@%lld", ev->site,
			 ev->job_id, step, ev->node, ev->kind,
			 (long long)ev->step_start_ms);

	o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "id", json_string(id));
	set_str(o, "kind", ev->kind);
	set_str(o, "site", ev->site);
	json_object_set_new(o, "job_id", json_integer(ev->job_id));
	json_object_set_new(o, "step", json_string(step));
	set_str(o, "node", ev->node);
	set_str(o, "user", ev->user);
	set_str(o, "tier", ev->tier);
	set_str(o, "tier_source", ev->tier_source);
	set_str(o, "cores", ev->cores);
	set_str(o, "gw_job", ev->gw_job);
	set_str(o, "request_id", ev->request_id);
	set_str(o, "message", ev->message);
	json_object_set_new(o, "time_ms", json_integer(ev->time_ms));
	if (ev->task >= 0) {
		json_object_set_new(o, "task", json_integer(ev->task));
		json_object_set_new(o, "wait_status",
				    json_integer(ev->wait_status));
		if (WIFEXITED(ev->wait_status))
			json_object_set_new(
				o, "exit_code",
				json_integer(WEXITSTATUS(ev->wait_status)));
		if (WIFSIGNALED(ev->wait_status))
			json_object_set_new(
				o, "signal",
				json_integer(WTERMSIG(ev->wait_status)));
	}
	if (!strcmp(ev->kind, "step_end"))
		json_object_set_new(o, "cpu_seconds",
				    json_real(ev->cpu_seconds));
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return text;
}
