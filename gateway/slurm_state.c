/*
 * slurm_state.c: the job-state vocabulary and the Slurm mapping (see
 * slurm_state.h).
 */
#include "slurm_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *const tg_names[] = {
#define TG_NAME_(e, name, final) name,
    TG_JOB_STATES(TG_NAME_)
#undef TG_NAME_
};

static const bool tg_final[] = {
#define TG_FINAL_(e, name, final) final,
    TG_JOB_STATES(TG_FINAL_)
#undef TG_FINAL_
};

static const char *const slurm_names[] = {"UNRECOGNIZED",
#define SLURM_NAME_(name, tg) #name,
					  SLURM_STATES(SLURM_NAME_)
#undef SLURM_NAME_
};

static const enum tg_job_state slurm_to_tg[] = {TG_JOB_UNKNOWN,
#define SLURM_TG_(name, tg) TG_JOB_##tg,
						SLURM_STATES(SLURM_TG_)
#undef SLURM_TG_
};

const char *tg_job_state_name(enum tg_job_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(tg_names))
		return "?";
	return tg_names[s];
}

int tg_job_state_from_name(const char *name, enum tg_job_state *out)
{
	size_t i;

	if (!name)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(tg_names); i++) {
		if (strcmp(name, tg_names[i]) == 0) {
			*out = (enum tg_job_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool tg_job_state_final(enum tg_job_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(tg_final))
		return false;
	return tg_final[s];
}

const char *slurm_state_name(enum slurm_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(slurm_names))
		return "?";
	return slurm_names[s];
}

enum slurm_state slurm_state_parse(const char *s)
{
	size_t i;

	if (!s)
		return SLURM_STATE_UNRECOGNIZED;
	for (i = 1; i < ARRAY_SIZE(slurm_names); i++)
		if (strcmp(s, slurm_names[i]) == 0)
			return (enum slurm_state)i;
	return SLURM_STATE_UNRECOGNIZED;
}

enum tg_job_state slurm_state_to_tg(enum slurm_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(slurm_to_tg))
		return TG_JOB_UNKNOWN;
	return slurm_to_tg[s];
}

void slurm_exit_decode(int64_t raw, struct slurm_exit *out)
{
	int st;

	memset(out, 0, sizeof(*out));
	out->code = -1;
	if (raw < 0 || raw > 0xffff)
		return;
	st = (int)raw;
	out->known = true;
	if ((st & 0x7f) == 0) { /* WIFEXITED */
		out->code = (st >> 8) & 0xff;
	} else if ((st & 0x7f) != 0x7f) { /* WIFSIGNALED */
		out->signal = st & 0x7f;
		out->core_dumped = (st & 0x80) != 0;
	} else { /* WIFSTOPPED: not an end, Slurm never reports it */
		out->known = false;
	}
}

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void slurm_status_set(struct slurm_status *st, const char *job_state,
		      const char *reason, bool has_exit, int64_t raw_exit)
{
	memset(st, 0, sizeof(*st));
	st->slurm = slurm_state_parse(job_state);
	st->state = slurm_state_to_tg(st->slurm);
	copy_str(st->slurm_name, sizeof(st->slurm_name), job_state);
	copy_str(st->reason, sizeof(st->reason), reason);
	st->exit.code = -1;
	if (has_exit && tg_job_state_final(st->state) &&
	    st->state != TG_JOB_UNKNOWN)
		slurm_exit_decode(raw_exit, &st->exit);
}

void slurm_status_missing(struct slurm_status *st)
{
	memset(st, 0, sizeof(*st));
	st->state = TG_JOB_UNKNOWN;
	st->slurm = SLURM_STATE_UNRECOGNIZED;
	copy_str(st->reason, sizeof(st->reason), "purged");
	st->exit.code = -1;
	st->missing = true;
}

const char *slurm_status_debug_str(const struct slurm_status *st, char *buf,
				   size_t len)
{
	char ex[48] = "";

	if (st->exit.known && st->exit.signal)
		snprintf(ex, sizeof(ex), " signal=%d%s", st->exit.signal,
			 st->exit.core_dumped ? "+core" : "");
	else if (st->exit.known)
		snprintf(ex, sizeof(ex), " exit=%d", st->exit.code);
	snprintf(buf, len, "%s (%s reason=%s%s%s)",
		 tg_job_state_name(st->state),
		 st->slurm_name[0] ? st->slurm_name : "-",
		 st->reason[0] ? st->reason : "-", ex,
		 st->missing ? " missing" : "");
	return buf;
}
