/*
 * slurmrestd_list.c: see slurmrestd_list.h.  Follows parse_job() and
 * read_jobs() in site_slurmrestd.c field by field: a job's field counts only
 * with the type jansson's accessors would accept (job_id, exit_code and the
 * times as integers, the others as strings), the last of duplicate keys
 * wins, and a job without a usable job_id is skipped and counted.
 */
#include "slurmrestd_list.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "log.h"
#include "slurm_state.h"

/* Longer strings in the fields we read go to the full parser. */
#define FIELD_MAX 512

enum field {
	F_OTHER,
	F_JOB_ID,
	F_EXIT_CODE,
	F_STATE,
	F_REASON,
	F_COMMENT,
	F_USER,
	F_NODES,
	F_SUBMIT,
	F_START,
	F_END,
};

static const struct {
	const char *name;
	enum field f;
} fields[] = {
    {"job_id", F_JOB_ID},    {"exit_code", F_EXIT_CODE},
    {"job_state", F_STATE},  {"state_reason", F_REASON},
    {"comment", F_COMMENT},  {"user_name", F_USER},
    {"nodes", F_NODES},	     {"submit_time", F_SUBMIT},
    {"start_time", F_START}, {"end_time", F_END},
};

/* One job as read so far; has_* false when absent or of another type. */
struct cur_job {
	bool has_id, has_exit, has_state, has_reason, has_comment, has_user,
	    has_nodes;
	long long id, exit_code, submit, start, end;
	char state[FIELD_MAX], reason[FIELD_MAX], comment[FIELD_MAX],
	    user[FIELD_MAX], nodes[FIELD_MAX];
};

enum top_key { TOP_OTHER, TOP_JOBS, TOP_ERRORS };

struct reader {
	const char *tag;
	int depth;	  /* maps and arrays open */
	enum top_key top; /* the root's key whose value is being read */
	bool in_jobs;	  /* inside the root's "jobs" array */
	bool in_errors;	  /* inside the root's "errors" array */
	bool seen_jobs;	  /* "jobs" was an array */
	bool in_job;	  /* inside one job object (depth 3) */
	bool need_full;	  /* only the full parser can say */
	enum field field; /* the job's key being read */
	struct cur_job cur;
	struct site_job *jobs;
	size_t n_jobs, cap, n_elems, n_bad;
	bool nomem;
};

static void set_int(struct reader *rd, long long v, bool is_int)
{
	struct cur_job *c = &rd->cur;

	switch (rd->field) {
	case F_JOB_ID:
		c->has_id = is_int;
		c->id = v;
		break;
	case F_EXIT_CODE:
		c->has_exit = is_int;
		c->exit_code = v;
		break;
	case F_SUBMIT:
		c->submit = is_int ? v : 0;
		break;
	case F_START:
		c->start = is_int ? v : 0;
		break;
	case F_END:
		c->end = is_int ? v : 0;
		break;
	case F_STATE:
		c->has_state = false;
		break;
	case F_REASON:
		c->has_reason = false;
		break;
	case F_COMMENT:
		c->has_comment = false;
		break;
	case F_USER:
		c->has_user = false;
		break;
	case F_NODES:
		c->has_nodes = false;
		break;
	case F_OTHER:
		break;
	}
}

/* A value of another type than the field's, or a container: "absent". */
static void clear_field(struct reader *rd)
{
	set_int(rd, 0, false);
}

static void set_str(struct reader *rd, const unsigned char *s, size_t len)
{
	struct cur_job *c = &rd->cur;
	char *dst = NULL;
	bool *has = NULL;

	switch (rd->field) {
	case F_STATE:
		dst = c->state, has = &c->has_state;
		break;
	case F_REASON:
		dst = c->reason, has = &c->has_reason;
		break;
	case F_COMMENT:
		dst = c->comment, has = &c->has_comment;
		break;
	case F_USER:
		dst = c->user, has = &c->has_user;
		break;
	case F_NODES:
		dst = c->nodes, has = &c->has_nodes;
		break;
	case F_OTHER:
		return;
	case F_JOB_ID:
	case F_EXIT_CODE:
	case F_SUBMIT:
	case F_START:
	case F_END:
		clear_field(rd); /* a string where an integer belongs */
		return;
	}
	/* jansson refuses "\u0000"; a long one would be cut here, not there */
	if (len >= FIELD_MAX || memchr(s, '\0', len)) {
		rd->need_full = true;
		return;
	}
	memcpy(dst, s, len);
	dst[len] = '\0';
	*has = true;
}

int slurmrestd_job_fill(const struct slurmrestd_job_fields *f,
			struct site_job *out)
{
	const size_t plen = strlen(SITE_TAG_COMMENT_PREFIX);
	const char *c = f->comment;

	memset(out, 0, sizeof(*out));
	if (!f->has_id || f->id <= 0 || f->id > UINT32_MAX)
		return -EINVAL;
	out->job_id = (uint32_t)f->id;
	slurm_status_set(&out->status, f->state, f->reason, f->has_exit,
			 f->has_exit ? f->exit_code : 0);
	if (c && strncmp(c, SITE_TAG_COMMENT_PREFIX, plen) == 0 &&
	    site_tag_valid(c + plen))
		snprintf(out->tag, sizeof(out->tag), "%s", c + plen);
	snprintf(out->user, sizeof(out->user), "%.*s",
		 (int)sizeof(out->user) - 1, f->user ? f->user : "");
	snprintf(out->nodes, sizeof(out->nodes), "%.*s",
		 (int)sizeof(out->nodes) - 1, f->nodes ? f->nodes : "");
	out->submit_time = f->submit;
	out->start_time = f->start;
	out->end_time = f->end;
	return 0;
}

/* The end of one job object: into rd->jobs. */
static void job_done(struct reader *rd)
{
	const struct cur_job *c = &rd->cur;
	const struct slurmrestd_job_fields f = {
	    .has_id = c->has_id,
	    .has_exit = c->has_exit,
	    .id = c->id,
	    .exit_code = c->exit_code,
	    .submit = c->submit,
	    .start = c->start,
	    .end = c->end,
	    .state = c->has_state ? c->state : NULL,
	    .reason = c->has_reason ? c->reason : NULL,
	    .comment = c->has_comment ? c->comment : NULL,
	    .user = c->has_user ? c->user : NULL,
	    .nodes = c->has_nodes ? c->nodes : NULL,
	};
	struct site_job *sj;

	rd->n_elems++;
	if (rd->n_jobs == rd->cap) {
		size_t cap = rd->cap ? rd->cap * 2 : 256;
		struct site_job *j = realloc(rd->jobs, cap * sizeof(*j));

		if (!j) {
			rd->nomem = true;
			return;
		}
		rd->jobs = j;
		rd->cap = cap;
	}
	sj = &rd->jobs[rd->n_jobs];
	if (slurmrestd_job_fill(&f, sj) < 0) {
		rd->n_bad++;
		return;
	}
	if (rd->tag && strcmp(sj->tag, rd->tag) != 0)
		return;
	rd->n_jobs++;
}

/* ------------------------------------------------------ yajl callbacks */

/*
 * Every scalar goes through here.  Returns 0 (stop the parse) when the
 * full parser must take over.
 */
static int scalar(struct reader *rd, long long v, bool is_int,
		  const unsigned char *s, size_t len)
{
	if (rd->depth == 0) /* the root is not an object */
		rd->need_full = true;
	else if (rd->depth == 1 && rd->top == TOP_JOBS)
		rd->need_full = true; /* "jobs" is not an array */
	else if (rd->depth == 2 && rd->in_jobs) {
		rd->n_elems++; /* a job that is not an object */
		rd->n_bad++;
	} else if (rd->depth == 2 && rd->in_errors)
		rd->need_full = true; /* an error: the full path reports it */
	else if (rd->depth == 3 && rd->in_job) {
		if (s)
			set_str(rd, s, len);
		else
			set_int(rd, v, is_int);
	}
	return !rd->need_full;
}

static int on_null(void *ctx)
{
	return scalar(ctx, 0, false, NULL, 0);
}

static int on_bool(void *ctx, int b)
{
	return scalar(ctx, 0, false, NULL, 0);
}

static int on_integer(void *ctx, long long v)
{
	return scalar(ctx, v, true, NULL, 0);
}

static int on_double(void *ctx, double d)
{
	return scalar(ctx, 0, false, NULL, 0);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
	return scalar(ctx, 0, false, s, len);
}

static int on_key(void *ctx, const unsigned char *k, size_t len)
{
	struct reader *rd = ctx;
	size_t i;

	if (rd->depth == 1) {
		rd->top = TOP_OTHER;
		if (len == 4 && !memcmp(k, "jobs", 4))
			rd->top = TOP_JOBS;
		else if (len == 6 && !memcmp(k, "errors", 6))
			rd->top = TOP_ERRORS;
	} else if (rd->depth == 3 && rd->in_job) {
		rd->field = F_OTHER;
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			if (strlen(fields[i].name) == len &&
			    !memcmp(fields[i].name, k, len)) {
				rd->field = fields[i].f;
				break;
			}
	}
	return 1;
}

/* A map or an array opens. */
static int open_container(struct reader *rd, bool is_map)
{
	if (rd->depth == 0 && !is_map)
		rd->need_full = true; /* the root is not an object */
	else if (rd->depth == 1 && rd->top == TOP_JOBS) {
		if (!is_map && !rd->seen_jobs) {
			rd->in_jobs = rd->seen_jobs = true;
		} else {
			rd->need_full = true; /* not an array, or twice */
		}
	} else if (rd->depth == 1 && rd->top == TOP_ERRORS && !is_map)
		rd->in_errors = true;
	else if (rd->depth == 2 && rd->in_errors)
		rd->need_full = true;
	else if (rd->depth == 2 && rd->in_jobs) {
		if (is_map) {
			memset(&rd->cur, 0, sizeof(rd->cur));
			rd->in_job = true;
			rd->field = F_OTHER;
		} else {
			rd->n_elems++; /* a job that is not an object */
			rd->n_bad++;
		}
	} else if (rd->depth == 3 && rd->in_job)
		clear_field(rd); /* an object where a field's value belongs */
	rd->depth++;
	return !rd->need_full;
}

static int close_container(struct reader *rd)
{
	rd->depth--;
	if (rd->depth == 2 && rd->in_job) {
		rd->in_job = false;
		job_done(rd);
	} else if (rd->depth == 1) {
		rd->in_jobs = false;
		rd->in_errors = false;
	}
	return !rd->nomem;
}

static int on_start_map(void *ctx)
{
	return open_container(ctx, true);
}

static int on_end_map(void *ctx)
{
	return close_container(ctx);
}

static int on_start_array(void *ctx)
{
	return open_container(ctx, false);
}

static int on_end_array(void *ctx)
{
	return close_container(ctx);
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

int slurmrestd_list_read(const char *body, size_t len, const char *tag,
			 struct site_result *r)
{
	struct reader rd = {.tag = tag};
	yajl_handle h;
	yajl_status st;

	if (r->jobs || r->n_jobs)
		return 1; /* not a fresh result: leave it to the full path */
	h = yajl_alloc(&callbacks, NULL, &rd);
	if (!h)
		goto nomem;
	st = yajl_parse(h, (const unsigned char *)body, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	yajl_free(h);
	if (rd.nomem)
		goto nomem;
	/* a syntax error, or what jansson alone decides: the full path */
	if (st != yajl_status_ok || rd.need_full || !rd.seen_jobs ||
	    (rd.n_bad && rd.n_bad == rd.n_elems)) {
		free(rd.jobs);
		return 1;
	}
	if (rd.n_bad)
		log_warn("slurmrestd: %zu of %zu jobs without a job_id skipped",
			 rd.n_bad, rd.n_elems);
	r->jobs = rd.jobs;
	r->n_jobs = rd.n_jobs;
	return 0;

nomem:
	free(rd.jobs);
	site_result_set(r, SITE_ERR_INTERNAL,
			"out of memory reading a list "
			"of jobs");
	return -ENOMEM;
}
