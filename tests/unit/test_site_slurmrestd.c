/*
 * test_site_slurmrestd.c: the slurmrestd v0.0.38 adapter.
 *
 * 1. Table-driven: every recorded answer in tests/unit/data/slurmrestd/
 *    (see its README.md) -> the expected parsed result.
 * 1b. Lists read by the stream reader (slurmrestd_list.c) give the same
 *    result as jansson's tree, job by job, for the samples, a big list and
 *    odd answers; those it leaves to jansson it says so.
 * 2. End to end through the site interface against a fake slurmrestd on
 *    loopback (tests/unit/fake_http.h): the request's shape (path, the
 *    X-SLURM-* headers, a JWT that verifies with the site's key, the
 *    submit body with its tag and environment), token caching, faults
 *    (hang, garbage, refused, HTML 502), abort, site close, config errors.
 *
 * The live test against a real slurmrestd is not here (unit tests run
 * without a cluster); see the report of the adapter for how to wire one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_http.h"
#include "fixture.h"
#include "http_client.h"
#include "json_util.h"
#include "jwt_verify.h"
#include "log.h"
#include "loop.h"
#include "site.h"
#include "site_slurmrestd.h"
#include "slurm_state.h"
#include "slurmrestd_list.h"
#include "task.h"
#include "worker.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------- the samples */

static char data_dir[512];

static void find_data_dir(void)
{
	const char *env = getenv("TIERGATE_TEST_DATA");
	const char *file = __FILE__;
	const char *slash = strrchr(file, '/');

	if (env)
		snprintf(data_dir, sizeof(data_dir), "%s/slurmrestd", env);
	else if (slash)
		snprintf(data_dir, sizeof(data_dir), "%.*s/data/slurmrestd",
			 (int)(slash - file), file);
	else
		snprintf(data_dir, sizeof(data_dir), "data/slurmrestd");
}

/* The file's bytes, NUL-terminated, malloc'd. */
static char *load(const char *name, size_t *len)
{
	char path[700];
	struct stat st;
	char *buf;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", data_dir, name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (run from the repository root or "
			 "set TIERGATE_TEST_DATA=tests/unit/data)",
			 path);
	assert_int_equal(fstat(fileno(f), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)st.st_size, f),
			 (size_t)st.st_size);
	buf[st.st_size] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)st.st_size;
	return buf;
}

struct sample {
	const char *file;
	enum site_op op;
	uint32_t job_id; /* get */
	const char *tag; /* find_by_tag */
	long status;
	enum site_err err;
	int slurm_errno;
	const char *message; /* exact, NULL: not checked */
	bool outcome_unknown;
	uint32_t submit_id;
	size_t n_jobs;
	enum tg_job_state state; /* of jobs[0] when n_jobs */
	const char *slurm_state;
	const char *reason;
	int exit_code; /* -1: none */
	int signal;    /* 0: none */
	bool exit_known;
};

#define S(f, o, st, e)                                                         \
	.file = (f), .op = SITE_OP_##o, .status = (st), .err = SITE_ERR_##e
#define JOB(n, s, name, why, code, sig, known)                                 \
	.n_jobs = (n), .state = TG_JOB_##s, .slurm_state = (name),             \
	.reason = (why), .exit_code = (code), .signal = (sig),                 \
	.exit_known = (known)

static const struct sample samples[] = {
    {S("submit.json", SUBMIT, 200, OK), .message = "", .submit_id = 27},
    {S("submit-fail.json", SUBMIT, 200, OK), .message = "", .submit_id = 29},
    /* a job id and an error: the job exists (PENDING), a warning */
    {S("submit-warning.json", SUBMIT, 200, OK), .slurm_errno = 2015,
     .message = "Requested partition configuration not available now",
     .submit_id = 1500004},
    {S("submit-no-env.json", SUBMIT, 400, REJECTED), .slurm_errno = 2127,
     .message = "environment must be set; Failure during parsing"},
    {S("submit-no-script.json", SUBMIT, 500, REJECTED), .slurm_errno = 2009,
     .message = "Job script not specified"},
    {S("submit-bad-partition.json", SUBMIT, 500, REJECTED), .slurm_errno = 2000,
     .message = "Invalid partition name specified"},
    {S("submit-unparsable.txt", SUBMIT, 400, REJECTED),
     .message = "Unable to parse query."},
    {S("submit-bad-token.json", SUBMIT, 500, BACKEND), .slurm_errno = 5005,
     .message = "Zero Bytes were transmitted or received",
     .outcome_unknown = true},
    {S("job-completed.json", GET, 200, OK), .job_id = 27, .message = "",
     JOB(1, COMPLETED, "COMPLETED", "None", 0, 0, true)},
    {S("job-failed.json", GET, 200, OK), .job_id = 29, .message = "",
     JOB(1, FAILED, "FAILED", "NonZeroExitCode", 3, 0, true)},
    {S("job-cancelled.json", GET, 200, OK), .job_id = 28, .message = "",
     JOB(1, CANCELLED, "CANCELLED", "None", -1, 15, true)},
    {S("job-running.json", GET, 200, OK), .job_id = 28, .message = "",
     JOB(1, RUNNING, "RUNNING", "None", -1, 0, false)},
    {S("job-pending-or-running.json", GET, 200, OK), .job_id = 27,
     .message = "", JOB(1, PENDING, "PENDING", "None", -1, 0, false)},
    {S("job-nonexistent.json", GET, 500, NOT_FOUND), .job_id = 999999,
     .slurm_errno = 2017, .message = "Unable to find JobId=999999"},
    /* a bad token also says "Unable to find JobId", but with -1 */
    {S("job-bad-token.json", GET, 500, BACKEND), .job_id = 1500003,
     .slurm_errno = -1, .message = "Unable to find JobId=1500003"},
    {S("jobs.json", LIST, 200, OK), .message = "",
     JOB(27, COMPLETED, "COMPLETED", "None", 0, 0, true)},
    {S("jobs.json", FIND_BY_TAG, 200, OK), .tag = "j-none", .message = ""},
    {S("jobs-expired-token.json", LIST, 500, BACKEND), .slurm_errno = -1,
     .message = "Failed while looking for jobs"},
    {S("jobs-not-modified.txt", LIST, 304, OK), .message = ""},
    {S("cancel.json", CANCEL, 200, OK), .message = ""},
    {S("cancel-nonexistent.json", CANCEL, 500, NOT_FOUND), .slurm_errno = 2017,
     .message = "unable to kill JobId=999999 with signal 9: Invalid job id "
		"specified"},
    {S("cancel-bad-token.json", CANCEL, 500, BACKEND), .slurm_errno = 5005,
     .message = "unable to kill JobId=1500003 with signal 9: Zero Bytes were "
		"transmitted or received",
     .outcome_unknown = true},
    {S("ping.json", PING, 200, OK), .message = ""},
    {S("ping-bad-token.json", PING, 500, BACKEND), .slurm_errno = -1,
     .message = "slurmctld config is unable to load"},
    {S("ping-no-headers.txt", PING, 401, AUTH),
     .message = "Authentication failure"},
};
#undef S
#undef JOB

static void check_sample(const struct sample *s, const struct site_result *r)
{
	if (r->err != s->err)
		fail_msg("%s: err %s (%s), want %s", s->file,
			 site_err_name(r->err), r->message,
			 site_err_name(s->err));
	assert_int_equal(r->http_status, s->status);
	assert_int_equal(r->slurm_errno, s->slurm_errno);
	if (s->message)
		assert_string_equal(r->message, s->message);
	assert_int_equal(r->outcome_unknown, s->outcome_unknown);
	assert_int_equal(r->job_id, s->submit_id);
	assert_int_equal(r->n_jobs, s->n_jobs);
	assert_int_equal(r->not_modified, s->status == 304);
	if (s->n_jobs) {
		const struct site_job *j = &r->jobs[0];

		if (s->op == SITE_OP_GET)
			assert_int_equal(j->job_id, s->job_id);
		assert_int_equal(j->status.state, s->state);
		assert_string_equal(j->status.slurm_name, s->slurm_state);
		assert_string_equal(j->status.reason, s->reason);
		assert_int_equal(j->status.exit.known, s->exit_known);
		if (s->exit_known) {
			assert_int_equal(j->status.exit.code, s->exit_code);
			assert_int_equal(j->status.exit.signal, s->signal);
		}
		assert_string_equal(j->user,
				    s->op == SITE_OP_LIST ? "root" : "alice");
		assert_string_equal(j->tag, "");
	}
}

static void test_samples(void **state)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(samples); i++) {
		const struct sample *s = &samples[i];
		struct site_result r = {0};
		size_t len;
		char *body = load(s->file, &len);

		site_slurmrestd_parse(s->op, s->job_id, s->tag, 0, s->status,
				      body, len, "", &r);
		check_sample(s, &r);
		site_result_clear(&r);
		free(body);
	}
}

/* Every job of jobs.json, and the time fields of one. */
static void test_sample_jobs_list(void **state)
{
	struct site_result r = {0};
	size_t len, i;
	char *body = load("jobs.json", &len);

	site_slurmrestd_parse(SITE_OP_LIST, 0, NULL, 0, 200, body, len, "", &r);
	assert_int_equal(r.err, SITE_ERR_OK);
	assert_int_equal(r.n_jobs, 27);
	for (i = 0; i < r.n_jobs; i++) {
		assert_int_equal(r.jobs[i].job_id, i + 1);
		assert_int_equal(r.jobs[i].status.state, TG_JOB_COMPLETED);
		assert_int_equal(r.jobs[i].status.exit.code, 0);
		assert_true(r.jobs[i].end_time >= r.jobs[i].start_time);
		assert_true(r.jobs[i].submit_time > 0);
	}
	assert_string_equal(r.jobs[26].user, "alice");
	assert_string_equal(r.jobs[26].nodes, "an1");
	assert_non_null(site_result_find(&r, 27));
	assert_null(site_result_find(&r, 28));
	site_result_clear(&r);
	free(body);

	/* job-failed.json: all the fields */
	body = load("job-failed.json", &len);
	site_slurmrestd_parse(SITE_OP_GET, 29, NULL, 0, 200, body, len, "", &r);
	assert_int_equal(r.jobs[0].submit_time, 1795625742);
	assert_int_equal(r.jobs[0].end_time, 1795625742);
	assert_string_equal(r.jobs[0].nodes, "an1");
	site_result_clear(&r);
	free(body);
}

/* Answers not recorded from a real site: made from the real shapes. */
/* ------------------------------------- lists: stream reader vs jansson */

/* Parse body as op both ways; the results must be the same, byte for byte. */
static void same_both_ways(const char *what, enum site_op op, const char *tag,
			   const char *body, size_t len)
{
	struct site_result a = {0}, b = {0};
	size_t i;

	site_slurmrestd_stream_lists(false);
	site_slurmrestd_parse(op, 0, tag, 0, 200, body, len, "", &a);
	site_slurmrestd_stream_lists(true);
	site_slurmrestd_parse(op, 0, tag, 0, 200, body, len, "", &b);
	if (a.err != b.err || a.n_jobs != b.n_jobs ||
	    a.slurm_errno != b.slurm_errno || strcmp(a.message, b.message))
		fail_msg(
		    "%s: jansson %s %zu jobs '%s', stream %s %zu jobs '%s'",
		    what, site_err_name(a.err), a.n_jobs, a.message,
		    site_err_name(b.err), b.n_jobs, b.message);
	for (i = 0; i < a.n_jobs; i++)
		if (memcmp(&a.jobs[i], &b.jobs[i], sizeof(a.jobs[i])))
			fail_msg("%s: job %zu (%u) differs", what, i,
				 a.jobs[i].job_id);
	site_result_clear(&a);
	site_result_clear(&b);
}

/* 0: the stream reader took it; 1: it left it to jansson. */
static int stream_takes(const char *body)
{
	struct site_result r = {0};
	int rv = slurmrestd_list_read(body, strlen(body), NULL, &r);

	site_result_clear(&r);
	return rv;
}

static void test_list_stream_matches_jansson(void **state)
{
	static const char *const list_samples[] = {
	    "jobs.json",
	    "job-completed.json",
	    "job-failed.json",
	    "job-cancelled.json",
	    "job-running.json",
	    "job-pending-or-running.json",
	    "job-nonexistent.json",
	    "jobs-expired-token.json",
	};
	static const struct {
		const char *body;
		int taken; /* by the stream reader */
	} odd[] = {
	    {"{\"jobs\":[]}", 0},
	    {"{\"errors\":[],\"jobs\":[{\"job_id\":7,\"job_state\":"
	     "\"RUNNING\",\"comment\":\"tiergate:j-1\",\"nodes\":\"a\\\"1\","
	     "\"user_name\":\"\\u00e9l\\u00e8ve\",\"exit_code\":0}]}",
	     0},
	    /* fields of the wrong type count as absent */
	    {"{\"jobs\":[{\"job_id\":8,\"exit_code\":1.0,\"job_state\":3,"
	     "\"start_time\":{},\"end_time\":[1],\"submit_time\":null,"
	     "\"nodes\":false,\"comment\":7}]}",
	     0},
	    {"{\"jobs\":[{\"job_id\":9},{\"job_id\":0},5,[1],{}]}", 0},
	    {"{\"jobs\":[{\"job_id\":4294967296},{\"job_id\":3,"
	     "\"nested\":{\"job_id\":99,\"a\":[{\"job_id\":98}]}}]}",
	     0},
	    /* a tag too long, or after a prefix of another case */
	    {"{\"jobs\":[{\"job_id\":1,\"comment\":\"tiergate:"
	     "0123456789012345678901234567890123456789012345678901234567890"
	     "123456789\"},{\"job_id\":2,\"comment\":\"TIERGATE:j-2\"}]}",
	     0},
	    /* for jansson alone */
	    {"{\"jobs\":[{\"job_id\":1}],\"errors\":[{\"error\":\"x\"}]}", 1},
	    {"{\"jobs\":{}}", 1},
	    {"{\"jobs\":5}", 1},
	    {"{\"meta\":{}}", 1},
	    {"[{\"jobs\":[]}]", 1},
	    {"{\"jobs\":[5,{\"job_id\":0}]}", 1},
	    {"{\"jobs\":[{\"job_id\":1,\"comment\":\"a\\u0000b\"}]}", 1},
	    {"{\"jobs\":[{\"job_id\":1}],\"jobs\":[]}", 1},
	    {"{\"jobs\":[{\"job_id\":1}", 1},
	    {"{\"jobs\":[{\"job_id\":99999999999999999999}]}", 1},
	    {"garbage", 1},
	};
	char *body, *big, *p;
	size_t len, i, n = 3000;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(list_samples); i++) {
		body = load(list_samples[i], &len);
		same_both_ways(list_samples[i], SITE_OP_LIST, NULL, body, len);
		same_both_ways(list_samples[i], SITE_OP_FIND_BY_TAG, "j-1",
			       body, len);
		free(body);
	}
	body = load("jobs.json", &len);
	assert_int_equal(stream_takes(body), 0); /* the recorded list */
	free(body);
	/* the one known difference: jansson refuses duplicate keys anywhere
	   (JSON_REJECT_DUPLICATES); the stream reader takes the last value
	   (slurmrestd's objects are dictionaries: it never sends any) */
	{
		const char *dup =
		    "{\"jobs\":[{\"job_id\":\"7\",\"job_id\":8}]}";
		struct site_result r = {0};

		assert_int_equal(
		    slurmrestd_list_read(dup, strlen(dup), NULL, &r), 0);
		assert_int_equal(r.n_jobs, 1);
		assert_int_equal(r.jobs[0].job_id, 8);
		site_result_clear(&r);
	}
	for (i = 0; i < ARRAY_SIZE(odd); i++) {
		char what[32];

		snprintf(what, sizeof(what), "odd answer %zu", i);
		same_both_ways(what, SITE_OP_LIST, NULL, odd[i].body,
			       strlen(odd[i].body));
		same_both_ways(what, SITE_OP_FIND_BY_TAG, "j-1", odd[i].body,
			       strlen(odd[i].body));
		if (stream_takes(odd[i].body) != odd[i].taken)
			fail_msg(
			    "%s: taken by the stream reader: %d, wanted %d",
			    what, !odd[i].taken, odd[i].taken);
	}
	/* a big list: one recorded job, n times, with its id, tag and state
	   changed, and a long reason */
	body = load("job-completed.json", &len);
	{
		json_t *root = NULL, *jobs, *job, *copy;
		char err[128];

		assert_int_equal(
		    json_parse_text(body, len, 0, &root, err, sizeof(err)), 0);
		jobs = json_object_get(root, "jobs");
		job = json_array_get(jobs, 0);
		assert_non_null(job);
		for (i = 0; i < n; i++) {
			char tag[32];

			copy = json_deep_copy(job);
			json_object_set_new(
			    copy, "job_id",
			    json_integer((json_int_t)(5000 + i)));
			snprintf(tag, sizeof(tag), "tiergate:j-%zu", i % 700);
			json_object_set_new(copy, "comment", json_string(tag));
			json_object_set_new(
			    copy, "job_state",
			    json_string(i % 3 ? "PENDING" : "RUNNING"));
			if (i % 100 == 0)
				json_object_set_new(
				    copy, "state_reason",
				    json_string("Resources and then some text "
						"that goes on for a while"));
			json_array_append_new(jobs, copy);
		}
		big = json_dumps(root, JSON_INDENT(3));
		json_decref(root);
	}
	free(body);
	same_both_ways("big list", SITE_OP_LIST, NULL, big, strlen(big));
	same_both_ways("big list", SITE_OP_FIND_BY_TAG, "j-1", big,
		       strlen(big));
	assert_int_equal(stream_takes(big), 0);
	/* cut anywhere, it is refused the same way */
	for (p = big + strlen(big) / 2; p > big + strlen(big) / 2 - 40; p--) {
		char saved = *p;

		*p = '\0';
		same_both_ways("cut list", SITE_OP_LIST, NULL, big,
			       strlen(big));
		*p = saved;
	}
	free(big);
}

static void test_synthetic_answers(void **state)
{
	static const char meta[] =
	    "\"meta\":{\"plugin\":{\"type\":\"openapi\\/v0.0.38\"}}";
	static const struct {
		const char *name;
		enum site_op op;
		int http_rc;
		long status;
		const char *body;
		enum site_err err;
		bool outcome_unknown;
		const char *message;
		bool busy; /* not applied: submit again later */
	} cases[] = {
	    /* a job_submit plugin says no: its words first, verbatim */
	    {"job_submit rejection", SITE_OP_SUBMIT, 0, 500,
	     "{%s,\"errors\":[{\"error_code\":2047,\"error\":\"Invalid "
	     "account or account/partition combination specified\"}],"
	     "\"job_submit_user_msg\":\"tier premium: account \\\"x\\\" is "
	     "not allowed\"}",
	     SITE_ERR_REJECTED, false,
	     "tier premium: account \"x\" is not allowed; Invalid account or "
	     "account/partition combination specified",
	     false},
	    {"access denied", SITE_OP_CANCEL, 0, 500,
	     "{%s,\"errors\":[{\"description\":\"unable to kill JobId=5 "
	     "with signal 9: Access\\/permission denied\","
	     "\"error_number\":2002,\"error\":\"Access\\/permission "
	     "denied\",\"source\":\"slurm_kill_job\"}]}",
	     SITE_ERR_DENIED, false,
	     "unable to kill JobId=5 with signal 9: Access/permission denied",
	     false},
	    {"controller down", SITE_OP_PING, 0, 200,
	     "{%s,\"errors\":[],\"pings\":[{\"hostname\":\"vm\",\"ping\":"
	     "\"DOWN\",\"status\":-1,\"mode\":\"primary\"}]}",
	     SITE_ERR_BACKEND, false, "slurmctld vm is DOWN", false},
	    {"ping without pings", SITE_OP_PING, 0, 200, "{%s,\"errors\":[]}",
	     SITE_ERR_PROTOCOL, false, NULL, false},
	    {"get: empty jobs", SITE_OP_GET, 0, 200,
	     "{%s,\"errors\":[],\"jobs\":[]}", SITE_ERR_NOT_FOUND, false, NULL,
	     false},
	    {"get: not json", SITE_OP_GET, 0, 200, "<html>oops</html>",
	     SITE_ERR_PROTOCOL, false, NULL, false},
	    {"submit: 200 not json", SITE_OP_SUBMIT, 0, 200, "garbage",
	     SITE_ERR_PROTOCOL, true, NULL, false},
	    {"submit: no job_id", SITE_OP_SUBMIT, 0, 200, "{%s,\"errors\":[]}",
	     SITE_ERR_PROTOCOL, true, NULL, false},
	    {"submit: proxy 502", SITE_OP_SUBMIT, 0, 502,
	     "<html><body>Bad Gateway</body></html>\n", SITE_ERR_UNAVAILABLE,
	     true,
	     "HTTP 502 from slurmrestd: <html><body>Bad "
	     "Gateway</body></html>",
	     false},
	    {"list: 500 no errors", SITE_OP_LIST, 0, 500,
	     "{%s,\"errors\":[],\"jobs\":[]}", SITE_ERR_UNAVAILABLE, false,
	     "HTTP 500 from slurmrestd without errors", false},
	    {"list: jobs not an array", SITE_OP_LIST, 0, 200,
	     "{%s,\"errors\":[],\"jobs\":{}}", SITE_ERR_PROTOCOL, false, NULL,
	     false},
	    {"list: no readable job", SITE_OP_LIST, 0, 200,
	     "{%s,\"errors\":[],\"jobs\":[{\"job_state\":\"RUNNING\"}]}",
	     SITE_ERR_PROTOCOL, false, NULL, false},
	    {"timeout", SITE_OP_SUBMIT, -ETIMEDOUT, 0, "", SITE_ERR_TIMEOUT,
	     true, "slurmrestd: Connection timed out", false},
	    {"no slot in time: not sent", SITE_OP_SUBMIT, -EAGAIN, 0, "",
	     SITE_ERR_TIMEOUT, false, NULL, true},
	    /* recorded: slurmctld at MaxJobCount; sbatch would retry */
	    {"submit: job table full", SITE_OP_SUBMIT, 0, 500,
	     "{%s,\"errors\":[{\"error_code\":11,\"error\":\"Resource "
	     "temporarily unavailable\"}]}",
	     SITE_ERR_UNAVAILABLE, false, "Resource temporarily unavailable",
	     true},
	    {"submit: job creation disabled", SITE_OP_SUBMIT, 0, 500,
	     "{%s,\"errors\":[{\"error_code\":2016,\"error\":\"Requested "
	     "nodes are busy\"}]}",
	     SITE_ERR_UNAVAILABLE, false, NULL, true},
	    /* the same errno on a cancel is no "submit again" */
	    {"cancel: EAGAIN", SITE_OP_CANCEL, 0, 500,
	     "{%s,\"errors\":[{\"error_code\":11,\"error\":\"Resource "
	     "temporarily unavailable\"}]}",
	     SITE_ERR_REJECTED, false, NULL, false},
	    {"refused", SITE_OP_SUBMIT, -ECONNREFUSED, 0, "",
	     SITE_ERR_UNAVAILABLE, false, NULL, false},
	    {"reset", SITE_OP_CANCEL, -ECONNRESET, 0, "", SITE_ERR_UNAVAILABLE,
	     true, NULL, false},
	    {"reset (read-only)", SITE_OP_GET, -ECONNRESET, 0, "",
	     SITE_ERR_UNAVAILABLE, false, NULL, false},
	    {"garbage", SITE_OP_LIST, -EPROTO, 0, "", SITE_ERR_UNAVAILABLE,
	     false, NULL, false},
	    {"too big", SITE_OP_LIST, -EFBIG, 200, "", SITE_ERR_PROTOCOL, false,
	     NULL, false},
	    {"shutdown", SITE_OP_PING, -ESHUTDOWN, 0, "", SITE_ERR_CANCELLED,
	     false, NULL, false},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct site_result r = {0};
		char body[2048];

		/* "%s" in the body stands for the meta object */
		{
			const char *m = strstr(cases[i].body, "%s");

			if (m)
				snprintf(body, sizeof(body), "%.*s%s%s",
					 (int)(m - cases[i].body),
					 cases[i].body, meta, m + 2);
			else
				snprintf(body, sizeof(body), "%s",
					 cases[i].body);
		}
		site_slurmrestd_parse(cases[i].op, 5, NULL, cases[i].http_rc,
				      cases[i].status, body, strlen(body), "",
				      &r);
		if (r.err != cases[i].err ||
		    r.outcome_unknown != cases[i].outcome_unknown)
			fail_msg("%s: err %s unknown=%d (%s)", cases[i].name,
				 site_err_name(r.err), r.outcome_unknown,
				 r.message);
		if (cases[i].message)
			assert_string_equal(r.message, cases[i].message);
		if (r.busy != cases[i].busy)
			fail_msg("%s: busy=%d", cases[i].name, r.busy);
		assert_true(r.message[0] != '\0');
		site_result_clear(&r);
	}
}

/* A job carrying a gateway tag; find_by_tag keeps only those. */
static void test_tag_parse(void **state)
{
	static const char body[] =
	    "{\"errors\":[],\"jobs\":["
	    "{\"job_id\":7,\"name\":\"j-aaa\",\"comment\":\"tiergate:j-aaa\","
	    "\"job_state\":\"RUNNING\",\"user_name\":\"alice\"},"
	    "{\"job_id\":8,\"name\":\"other\",\"comment\":\"\","
	    "\"job_state\":\"PENDING\"},"
	    "{\"job_id\":9,\"name\":\"j-bbb\",\"comment\":\"tiergate:j bad\","
	    "\"job_state\":\"PENDING\"},"
	    "{\"job_id\":10,\"name\":\"j-aaa\",\"comment\":\"tiergate:j-aaa\","
	    "\"job_state\":\"COMPLETED\",\"exit_code\":0}]}";
	struct site_result r = {0};

	site_slurmrestd_parse(SITE_OP_LIST, 0, NULL, 0, 200, body, strlen(body),
			      "", &r);
	assert_int_equal(r.n_jobs, 4);
	assert_string_equal(r.jobs[0].tag, "j-aaa");
	assert_string_equal(r.jobs[1].tag, "");
	assert_string_equal(r.jobs[2].tag, ""); /* not a valid tag */
	/* sorted by id, found by bisection: the same answers */
	r.jobs[0].job_id = 11; /* out of order now: 11 8 9 10 */
	site_result_sort(&r);
	assert_true(r.sorted);
	assert_int_equal(r.jobs[0].job_id, 8);
	assert_int_equal(r.jobs[3].job_id, 11);
	assert_int_equal(site_result_find(&r, 9)->job_id, 9);
	assert_int_equal(site_result_find(&r, 11)->job_id, 11);
	assert_null(site_result_find(&r, 7));
	assert_null(site_result_find(&r, 12));
	site_result_clear(&r);
	assert_false(r.sorted);
	site_slurmrestd_parse(SITE_OP_FIND_BY_TAG, 0, "j-aaa", 0, 200, body,
			      strlen(body), "", &r);
	assert_int_equal(r.err, SITE_ERR_OK);
	assert_int_equal(r.n_jobs, 2); /* submitted twice: the caller sees it */
	assert_int_equal(r.jobs[0].job_id, 7);
	assert_int_equal(r.jobs[1].job_id, 10);
	assert_int_equal(r.jobs[1].status.state, TG_JOB_COMPLETED);
	site_result_clear(&r);
}

static void test_submit_body(void **state)
{
	json_t *env =
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "TIERGATE_TICKET", "eyJ.x.y",
		      "TIERGATE_REQUEST_ID", "r-1",
		      "_SLURM_SPANK_OPTION_tiergate_cpu_tier", "premium",
		      "SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier",
		      "premium", "GREETING", "a/b");
	struct site_submit req = {
	    .tag = "j-6f1c2a9e4b7d",
	    .script = "#!/bin/bash\necho hi\n",
	    .environment = env,
	    .std_out = "/tmp/out/%j.out",
	    .tasks = 1,
	    .cpus_per_task = 2,
	    .time_limit_min = 10,
	};
	char *out = NULL, err[256];
	json_t *root, *job, *e;
	const char *s;
	int64_t v;

	assert_int_equal(
	    site_slurmrestd_submit_body(&req, "debug", &out, err, sizeof(err)),
	    0);
	assert_int_equal(
	    json_parse_text(out, strlen(out), 0, &root, err, sizeof(err)), 0);
	job = json_object_get(root, "job");
	assert_int_equal(json_get_str(root, "script", &s), 0);
	assert_string_equal(s, "#!/bin/bash\necho hi\n");
	assert_int_equal(json_get_str(job, "name", &s), 0);
	assert_string_equal(s, "j-6f1c2a9e4b7d");
	assert_int_equal(json_get_str(job, "comment", &s), 0);
	assert_string_equal(s, "tiergate:j-6f1c2a9e4b7d");
	assert_int_equal(json_get_str(job, "partition", &s), 0);
	assert_string_equal(s, "debug");
	assert_int_equal(json_get_str(job, "current_working_directory", &s), 0);
	assert_string_equal(s, "/tmp");
	assert_int_equal(json_get_str(job, "standard_output", &s), 0);
	assert_string_equal(s, "/tmp/out/%j.out");
	assert_int_equal(json_get_str(job, "standard_error", &s), -ENOENT);
	assert_int_equal(json_get_int(job, "tasks", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(json_get_int(job, "cpus_per_task", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(json_get_int(job, "time_limit", &v), 0);
	assert_int_equal(v, 10);
	e = json_object_get(job, "environment");
	assert_true(json_is_object(e)); /* an object, never a K=V list */
	assert_int_equal(json_object_size(e), 6);
	assert_int_equal(json_get_str(e, "PATH", &s), 0);
	assert_string_equal(s, "/usr/bin:/bin");
	assert_int_equal(json_get_str(e, "TIERGATE_TICKET", &s), 0);
	assert_string_equal(s, "eyJ.x.y");
	assert_int_equal(
	    json_get_str(e, "SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier",
			 &s),
	    0);
	assert_string_equal(s, "premium");
	json_decref(root);
	free(out);

	/* the caller's PATH wins; partition of the request wins */
	json_object_set_new(env, "PATH", json_string("/opt/bin"));
	req.partition = "big";
	req.tasks = req.cpus_per_task = req.time_limit_min = 0;
	assert_int_equal(
	    site_slurmrestd_submit_body(&req, "debug", &out, err, sizeof(err)),
	    0);
	assert_non_null(strstr(out, "\"PATH\":\"/opt/bin\""));
	assert_non_null(strstr(out, "\"partition\":\"big\""));
	assert_null(strstr(out, "\"tasks\""));
	free(out);

	/* refusals */
	json_object_set_new(env, "N", json_integer(3));
	assert_int_equal(
	    site_slurmrestd_submit_body(&req, NULL, &out, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "environment N is not a string"));
	json_object_del(env, "N");
	json_object_set_new(env, "A=B", json_string("x"));
	assert_int_equal(
	    site_slurmrestd_submit_body(&req, NULL, &out, err, sizeof(err)),
	    -EINVAL);
	json_object_del(env, "A=B");
	req.script = "";
	assert_int_equal(
	    site_slurmrestd_submit_body(&req, NULL, &out, err, sizeof(err)),
	    -EINVAL);
	req.script = "#!/bin/sh\n";
	req.tag = "bad tag";
	assert_int_equal(
	    site_slurmrestd_submit_body(&req, NULL, &out, err, sizeof(err)),
	    -EINVAL);
	req.tag = "j-1";
	req.environment = NULL;
	req.partition = NULL;
	assert_int_equal(
	    site_slurmrestd_submit_body(&req, NULL, &out, err, sizeof(err)), 0);
	assert_non_null(strstr(out, "\"environment\":{\"PATH\":"));
	assert_null(strstr(out, "partition"));
	free(out);
	json_decref(env);
}

/* ------------------------------------------- a fake slurmrestd server */

#define ROUTE(m, p, st, f)                                                     \
	{                                                                      \
		.method = (m), .path = (p), .status = (st), .file = (f)        \
	}
#define ROUTE_DO(m, p, st, f, b, a)                                            \
	{                                                                      \
		.method = (m), .path = (p), .status = (st), .file = (f),       \
		.body = (b), .action = (a)                                     \
	}

struct route {
	const char *method;
	const char *path; /* prefix */
	int status;
	const char *file; /* sample to answer with */
	const char *body; /* or this */
	enum fake_http_action action;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct route routes[8];
static char *route_bodies[8];
static size_t n_routes;
static struct {
	unsigned n;
	char method[16];
	char path[2048];
	char headers[8192];
	char *body;
} last;

static void set_routes(const struct route *r, size_t n)
{
	size_t i;

	pthread_mutex_lock(&mu);
	for (i = 0; i < n_routes; i++)
		free(route_bodies[i]);
	for (i = 0; i < n; i++) {
		routes[i] = r[i];
		route_bodies[i] = r[i].file
				      ? load(r[i].file, NULL)
				      : strdup(r[i].body ? r[i].body : "");
	}
	n_routes = n;
	pthread_mutex_unlock(&mu);
}

static void slurmrestd_handler(const struct fake_http_req *rq,
			       struct fake_http_resp *rs, void *arg)
{
	size_t i;

	pthread_mutex_lock(&mu);
	last.n++;
	snprintf(last.method, sizeof(last.method), "%s", rq->method);
	snprintf(last.path, sizeof(last.path), "%s", rq->path);
	snprintf(last.headers, sizeof(last.headers), "%s", rq->headers);
	free(last.body);
	last.body = strdup(rq->body);
	rs->status = 404;
	for (i = 0; i < n_routes; i++) {
		if (strcmp(routes[i].method, rq->method) == 0 &&
		    strncmp(routes[i].path, rq->path, strlen(routes[i].path)) ==
			0) {
			rs->action = routes[i].action;
			rs->status = routes[i].status;
			fake_body(rs, route_bodies[i]);
			if (rs->status == 304)
				rs->no_content_length = true;
			break;
		}
	}
	if (i == n_routes)
		fake_body(rs, "no route");
	pthread_mutex_unlock(&mu);
}

/* The value of header `name` in the last request, or "". */
static const char *last_header(const char *name, char *out, size_t len)
{
	const char *p = last.headers;
	size_t n = strlen(name);

	out[0] = '\0';
	while (p && *p) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			snprintf(out, len, "%.*s",
				 (int)(e ? (size_t)(e - v) : strlen(v)), v);
			return out;
		}
		p = strstr(p, "\r\n");
		if (p)
			p += 2;
	}
	return out;
}

struct fx {
	struct loop *l;
	struct http_client *http;
	struct fake_http *srv;
	struct site *site;
	char key_path[64];
	struct jwt_key *key;
};

static void write_key(struct fx *f)
{
	unsigned char k[32];
	int fd, i;

	for (i = 0; i < 32; i++)
		k[i] = (unsigned char)(rand() & 0xff);
	k[0] = 'k'; /* never looks like PEM */
	snprintf(f->key_path, sizeof(f->key_path), "/tmp/tg-test-site-%d.key",
		 (int)getpid());
	fd = open(f->key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, k, sizeof(k)), sizeof(k));
	close(fd);
}

static struct site *open_site(struct fx *f, const char *url,
			      enum site_auth auth, unsigned timeout_s)
{
	struct site_config cfg = {
	    .name = "alpha",
	    .url = url,
	    .auth = auth,
	    .jwt_key = f->key_path,
	    .partition = "debug",
	    .request_timeout_s = timeout_s,
	    .max_connections = 2,
	};
	char err[256];
	struct site *s = site_new(f->l, f->http, &cfg, err, sizeof(err));

	if (!s)
		fail_msg("site_new: %s", err);
	return s;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	f->l = loop_new();
	f->http = http_client_new(f->l, NULL);
	assert_non_null(f->http);
	f->srv = fake_http_start(slurmrestd_handler, NULL);
	write_key(f);
	assert_int_equal(
	    jwt_key_load_file(f->key_path, "HS256", &f->key, err, sizeof(err)),
	    0);
	f->site = open_site(f, fake_http_base(f->srv), SITE_AUTH_JWT_KEY, 5);
	pthread_mutex_lock(&mu);
	last.n = 0;
	pthread_mutex_unlock(&mu);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	struct loop_stats st;
	size_t i;

	site_free(f->site);
	http_client_free(f->http);
	for (i = 0; i < 3; i++)
		loop_run_once(f->l, 0);
	loop_stats(f->l, &st);
	assert_int_equal(st.live_io, 0);
	assert_int_equal(st.live_timers, 0);
	assert_int_equal(st.pending_deferred, 0);
	assert_int_equal(task_count_live(f->l), 0);
	assert_int_equal(task_count_ended_unreleased(f->l), 0);
	fake_http_stop(f->srv);
	loop_free(f->l);
	jwt_key_free(f->key);
	unlink(f->key_path);
	set_routes(NULL, 0);
	free(last.body);
	last.body = NULL;
	free(f);
	return 0;
}

struct done_rec {
	int calls;
	struct site_result result; /* a copy, jobs not kept */
};

static void done_cb(struct site_call *call, void *arg)
{
	struct done_rec *d = arg;

	d->calls++;
	d->result = call->result;
	d->result.jobs = NULL;
}

static const struct site_cred alice = {.user = "alice"};

/* The token sent with the last request, verified with the site's key. */
static json_t *last_claims(struct fx *f, char *token, size_t len)
{
	struct jwt_expect ex = {.user_claim = "sun", .require_iat = true};
	json_t *claims = NULL;
	char err[256];

	pthread_mutex_lock(&mu);
	last_header("X-SLURM-USER-TOKEN", token, len);
	pthread_mutex_unlock(&mu);
	if (jwt_verify_token(f->key, token, &ex, time(NULL), &claims, err,
			     sizeof(err)) != 0)
		fail_msg("token does not verify: %s", err);
	return claims;
}

/* ---------------------------------------------- a task that submits */

#define SUB_STATES(X)                                                          \
	X(START)                                                               \
	X(SUBMITTING)                                                          \
	X(END)

enum sub_state { SUB_STATES(TASK_STATE_ENUM) };
static const char *const sub_state_names[] = {SUB_STATES(TASK_STATE_NAME)};

struct submitter {
	struct task task;
	struct site *site;
	json_t *env;
	struct site_call call;
	unsigned wakes;
	struct site_result result;
	bool destroyed;
};

static enum task_step sub_step(struct task *t, unsigned wake)
{
	struct submitter *x = container_of(t, struct submitter, task);
	struct site_submit req = {
	    .tag = "j-6f1c2a9e4b7d",
	    .script = "#!/bin/bash\nhostname\n",
	    .environment = x->env,
	    .tasks = 1,
	};

	x->wakes |= wake;
	if (wake & TASK_WAKE_CANCEL) {
		site_call_abort(&x->call);
		task_set_state(t, END);
		return TASK_DONE;
	}
	switch ((enum sub_state)t->state) {
	case START:
		x->call.task = t;
		if (site_submit(x->site, &alice, &req, &x->call) < 0) {
			x->result = x->call.result;
			task_set_state(t, END);
			return TASK_DONE;
		}
		task_set_state(t, SUBMITTING);
		task_wait_on(t, "slurmrestd submit");
		return TASK_WAIT;
	case SUBMITTING:
		if (!site_call_done(&x->call))
			return TASK_WAIT;
		x->result = x->call.result; /* no jobs for a submit */
		x->call.result.jobs = NULL;
		site_call_reset(&x->call);
		task_set_state(t, END);
		return TASK_DONE;
	case END:
		break;
	}
	return TASK_DONE;
}

static void sub_destroy(struct task *t)
{
	container_of(t, struct submitter, task)->destroyed = true;
}

static const struct task_ops sub_ops = {
    .kind = "submitter",
    .state_names = sub_state_names,
    .n_states = ARRAY_SIZE(sub_state_names),
    .step = sub_step,
    .destroy = sub_destroy,
};

static void test_submit_end_to_end(void **state)
{
	struct fx *f = *state;
	const struct route r[] = {
	    ROUTE("POST", "/slurm/v0.0.38/job/submit", 200, "submit.json"),
	};
	struct submitter x = {.site = f->site};
	char token[JWT_TOKEN_MAX + 1], hv[256], err[256];
	json_t *claims, *body, *job, *env;
	const char *s;
	int64_t iat, exp;

	set_routes(r, ARRAY_SIZE(r));
	x.env = json_pack("{s:s, s:s, s:s, s:s}", "TIERGATE_TICKET", "eyJ.t.s",
			  "TIERGATE_REQUEST_ID", "r-42",
			  "_SLURM_SPANK_OPTION_tiergate_cpu_tier", "premium",
			  "SLURM_SPANK__SLURM_SPANK_OPTION_tiergate_cpu_tier",
			  "premium");
	assert_int_equal(task_start(f->l, &x.task, &sub_ops), 0);
	RUN_UNTIL(f->l, x.destroyed);
	assert_int_equal(x.result.err, SITE_ERR_OK);
	assert_int_equal(x.result.job_id, 27);
	assert_true(x.wakes & SITE_CALL_WAKE);

	pthread_mutex_lock(&mu);
	assert_string_equal(last.method, "POST");
	assert_string_equal(last.path, "/slurm/v0.0.38/job/submit");
	assert_string_equal(last_header("X-SLURM-USER-NAME", hv, sizeof(hv)),
			    "alice");
	assert_string_equal(last_header("Content-Type", hv, sizeof(hv)),
			    "application/json");
	assert_int_equal(json_parse_text(last.body, strlen(last.body), 0, &body,
					 err, sizeof(err)),
			 0);
	pthread_mutex_unlock(&mu);
	job = json_object_get(body, "job");
	assert_int_equal(json_get_str(job, "name", &s), 0);
	assert_string_equal(s, "j-6f1c2a9e4b7d");
	assert_int_equal(json_get_str(job, "comment", &s), 0);
	assert_string_equal(s, "tiergate:j-6f1c2a9e4b7d");
	assert_int_equal(json_get_str(job, "partition", &s), 0);
	assert_string_equal(s, "debug"); /* the site's default */
	env = json_object_get(job, "environment");
	assert_int_equal(json_get_str(env, "TIERGATE_REQUEST_ID", &s), 0);
	assert_string_equal(s, "r-42");
	assert_int_equal(
	    json_get_str(env, "_SLURM_SPANK_OPTION_tiergate_cpu_tier", &s), 0);
	assert_string_equal(s, "premium");
	json_decref(body);

	claims = last_claims(f, token, sizeof(token));
	assert_int_equal(json_get_str(claims, "sun", &s), 0);
	assert_string_equal(s, "alice");
	assert_int_equal(json_get_int(claims, "iat", &iat), 0);
	assert_int_equal(json_get_int(claims, "exp", &exp), 0);
	assert_int_equal(exp - iat, SITE_DEFAULT_JWT_LIFETIME_S);
	json_decref(claims);
	json_decref(x.env);
}

static time_t fake_time;
static time_t fake_clock(void)
{
	return fake_time;
}

static void run_call(struct fx *f,
		     int (*start)(struct fx *, struct site_call *),
		     struct done_rec *d, struct site_call *call)
{
	memset(d, 0, sizeof(*d));
	call->done = done_cb;
	call->arg = d;
	assert_int_equal(start(f, call), 0);
	assert_true(site_call_in_flight(call));
	RUN_UNTIL(f->l, d->calls > 0);
	assert_true(site_call_done(call));
}

static int start_ping(struct fx *f, struct site_call *call)
{
	return site_ping(f->site, &alice, call);
}

static void test_token_cache(void **state)
{
	struct fx *f = *state;
	const struct route ok[] = {
	    ROUTE("GET", "/slurm/v0.0.38/ping", 200, "ping.json")};
	const struct route bad[] = {
	    ROUTE("GET", "/slurm/v0.0.38/ping", 500, "ping-bad-token.json")};
	struct site_slurmrestd_stats st;
	struct site_call call = {0};
	struct done_rec d;
	char t1[JWT_TOKEN_MAX + 1], t2[JWT_TOKEN_MAX + 1], hv[64];

	set_routes(ok, 1);
	fake_time = time(NULL);
	site_slurmrestd_set_clock(f->site, fake_clock);
	run_call(f, start_ping, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	json_decref(last_claims(f, t1, sizeof(t1)));
	/* reused while more than 1/5 of the lifetime is left */
	fake_time += SITE_DEFAULT_JWT_LIFETIME_S * 4 / 5 - 1;
	run_call(f, start_ping, &d, &call);
	pthread_mutex_lock(&mu);
	last_header("X-SLURM-USER-TOKEN", t2, sizeof(t2));
	pthread_mutex_unlock(&mu);
	assert_string_equal(t1, t2);
	/* then a new one */
	fake_time += 2;
	run_call(f, start_ping, &d, &call);
	pthread_mutex_lock(&mu);
	last_header("X-SLURM-USER-TOKEN", t2, sizeof(t2));
	pthread_mutex_unlock(&mu);
	assert_string_not_equal(t1, t2);
	site_slurmrestd_stats(f->site, &st);
	assert_int_equal(st.tokens_minted, 2);
	assert_int_equal(st.tokens_reused, 1);
	assert_int_equal(st.tokens_cached, 1);
	/* refused by the site: dropped, the next call mints */
	set_routes(bad, 1);
	run_call(f, start_ping, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_BACKEND);
	assert_string_equal(d.result.message,
			    "slurmctld config is unable to load");
	site_slurmrestd_stats(f->site, &st);
	assert_int_equal(st.tokens_cached, 0);
	assert_int_equal(st.tokens_dropped, 1);
	/* another user gets its own */
	{
		struct site_cred bob = {.user = "bob"};

		set_routes(ok, 1);
		memset(&d, 0, sizeof(d));
		call.done = done_cb;
		call.arg = &d;
		assert_int_equal(site_ping(f->site, &bob, &call), 0);
		RUN_UNTIL(f->l, d.calls);
		pthread_mutex_lock(&mu);
		assert_string_equal(
		    last_header("X-SLURM-USER-NAME", hv, sizeof(hv)), "bob");
		pthread_mutex_unlock(&mu);
	}
	site_call_reset(&call);
}

static int start_get27(struct fx *f, struct site_call *call)
{
	return site_get(f->site, &alice, 27, call);
}
static int start_get999999(struct fx *f, struct site_call *call)
{
	return site_get(f->site, &alice, 999999, call);
}
static int start_list(struct fx *f, struct site_call *call)
{
	return site_list(f->site, &alice, 0, call);
}
static int start_list_since(struct fx *f, struct site_call *call)
{
	return site_list(f->site, &alice, 1795625700, call);
}
static int start_cancel28(struct fx *f, struct site_call *call)
{
	return site_cancel(f->site, &alice, 28, call);
}
static int start_find(struct fx *f, struct site_call *call)
{
	return site_find_by_tag(f->site, &alice, "j-aaa", call);
}

static void test_operations_end_to_end(void **state)
{
	struct fx *f = *state;
	const struct route r[] = {
	    ROUTE("GET", "/slurm/v0.0.38/job/27", 200, "job-completed.json"),
	    ROUTE("GET", "/slurm/v0.0.38/job/999999", 500,
		  "job-nonexistent.json"),
	    ROUTE("GET", "/slurm/v0.0.38/jobs?update_time=", 304,
		  "jobs-not-modified.txt"),
	    ROUTE("GET", "/slurm/v0.0.38/jobs", 200, "jobs.json"),
	    ROUTE("DELETE", "/slurm/v0.0.38/job/28", 200, "cancel.json"),
	};
	struct site_call call = {0};
	struct done_rec d;
	struct site_stats st;
	char buf[512];

	set_routes(r, ARRAY_SIZE(r));

	run_call(f, start_get27, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	assert_int_equal(call.result.n_jobs, 1);
	assert_int_equal(call.result.jobs[0].status.state, TG_JOB_COMPLETED);
	assert_string_equal(last.path, "/slurm/v0.0.38/job/27");

	run_call(f, start_get999999, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_NOT_FOUND);
	assert_string_equal(d.result.message, "Unable to find JobId=999999");
	assert_string_equal(site_err_api_code(d.result.err), "not_found");

	run_call(f, start_list, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	assert_int_equal(call.result.n_jobs, 27);
	assert_string_equal(last.path, "/slurm/v0.0.38/jobs");

	run_call(f, start_list_since, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	assert_true(d.result.not_modified);
	assert_int_equal(call.result.n_jobs, 0);
	assert_string_equal(last.path,
			    "/slurm/v0.0.38/jobs?update_time=1795625700");

	run_call(f, start_cancel28, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	assert_string_equal(last.method, "DELETE");
	assert_string_equal(last.path, "/slurm/v0.0.38/job/28");

	run_call(f, start_find, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	assert_int_equal(call.result.n_jobs, 0);

	site_stats(f->site, &st);
	assert_int_equal(st.calls, 6);
	assert_int_equal(st.ok, 5);
	assert_int_equal(st.errors[SITE_ERR_NOT_FOUND], 1);
	assert_int_equal(st.in_flight, 0);
	site_debug_str(f->site, buf, sizeof(buf));
	assert_non_null(strstr(buf, "site alpha kind=slurmrestd"));
	assert_non_null(strstr(buf, "calls=6 ok=5"));
	assert_non_null(strstr(buf, "minted=1 reused=5"));
	site_call_debug_str(&call, buf, sizeof(buf));
	assert_non_null(strstr(buf, "site alpha FIND_BY_TAG as alice "
				    "tag=j-aaa state=DONE"));
	assert_int_equal(site_call_reset(&call), 0);
	assert_null(call.result.jobs);
}

static int start_submit(struct fx *f, struct site_call *call)
{
	struct site_submit req = {.tag = "j-1", .script = "#!/bin/sh\n"};

	return site_submit(f->site, &alice, &req, call);
}

static void test_faults(void **state)
{
	struct fx *f = *state;
	const struct route hang[] = {ROUTE_DO(
	    "POST", "/slurm/v0.0.38/job/submit", 200, NULL, NULL, FAKE_HANG)};
	const struct route garbage[] = {
	    ROUTE_DO("POST", "/slurm/v0.0.38/job/submit", 200, NULL,
		     "this is not http\r\n\r\n", FAKE_GARBAGE)};
	const struct route closed[] = {ROUTE_DO(
	    "POST", "/slurm/v0.0.38/job/submit", 200, NULL, NULL, FAKE_CLOSE)};
	const struct route html[] = {
	    ROUTE_DO("POST", "/slurm/v0.0.38/job/submit", 502, NULL,
		     "<html>Bad Gateway</html>", FAKE_RESPOND)};
	const struct route rejected[] = {ROUTE("POST",
					       "/slurm/v0.0.38/job/submit", 500,
					       "submit-bad-partition.json")};
	struct site_call call = {0};
	struct done_rec d;
	uint64_t t0;

	site_free(f->site);
	f->site = open_site(f, fake_http_base(f->srv), SITE_AUTH_JWT_KEY, 1);

	set_routes(hang, 1);
	t0 = loop_clock_ms();
	run_call(f, start_submit, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_TIMEOUT);
	assert_true(d.result.outcome_unknown); /* look before resubmitting */
	assert_true(loop_clock_ms() - t0 >= 1000);
	assert_true(site_err_transient(d.result.err));
	assert_string_equal(site_err_api_code(d.result.err),
			    "site_unavailable");

	set_routes(garbage, 1);
	run_call(f, start_submit, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_UNAVAILABLE);
	assert_true(d.result.outcome_unknown);

	set_routes(closed, 1);
	run_call(f, start_submit, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_UNAVAILABLE);
	assert_true(d.result.outcome_unknown);

	set_routes(html, 1);
	run_call(f, start_submit, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_UNAVAILABLE);
	assert_int_equal(d.result.http_status, 502);

	set_routes(rejected, 1);
	run_call(f, start_submit, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_REJECTED);
	assert_false(d.result.outcome_unknown);
	assert_false(site_err_transient(d.result.err));
	assert_string_equal(d.result.message,
			    "Invalid partition name specified");
	assert_string_equal(site_err_api_code(d.result.err), "site_rejected");
	site_call_reset(&call);
}

static void test_refused_and_unix(void **state)
{
	struct fx *f = *state;
	char path[108], base[160];
	struct fake_http *us;
	const struct route ok[] = {
	    ROUTE("GET", "/slurm/v0.0.38/ping", 200, "ping.json")};
	struct site_call call = {0};
	struct done_rec d;

	snprintf(path, sizeof(path), "/tmp/tg-test-site-%d.sock",
		 (int)getpid());
	us = fake_http_start_unix(path, slurmrestd_handler, NULL);
	snprintf(base, sizeof(base), "%s", fake_http_base(us));
	set_routes(ok, 1);
	site_free(f->site);
	f->site = open_site(f, base, SITE_AUTH_JWT_KEY, 5);
	run_call(f, start_ping, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	fake_http_stop(us); /* gone: refused, nothing was sent */
	run_call(f, start_submit, &d, &call);
	assert_int_equal(d.result.err, SITE_ERR_UNAVAILABLE);
	assert_false(d.result.outcome_unknown);
	site_call_reset(&call);
}

static void test_jwt_user_mode(void **state)
{
	struct fx *f = *state;
	const struct route ok[] = {
	    ROUTE("GET", "/slurm/v0.0.38/ping", 200, "ping.json")};
	struct site_cred carol = {.user = "carol", .token = "users.own.token"};
	struct site_cred dave = {.user = "dave"};
	struct site_call call = {0};
	struct done_rec d = {0};
	char hv[64];

	site_free(f->site);
	f->site = open_site(f, fake_http_base(f->srv), SITE_AUTH_JWT_USER, 5);
	set_routes(ok, 1);
	call.done = done_cb;
	call.arg = &d;
	assert_int_equal(site_ping(f->site, &carol, &call), 0);
	RUN_UNTIL(f->l, d.calls);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	pthread_mutex_lock(&mu);
	assert_string_equal(last_header("X-SLURM-USER-TOKEN", hv, sizeof(hv)),
			    "users.own.token");
	assert_string_equal(last_header("X-SLURM-USER-NAME", hv, sizeof(hv)),
			    "carol");
	pthread_mutex_unlock(&mu);
	/* no token registered: refused at once, nothing delivered */
	d.calls = 0;
	assert_int_equal(site_ping(f->site, &dave, &call), -EACCES);
	assert_true(site_call_done(&call));
	assert_int_equal(call.result.err, SITE_ERR_AUTH);
	loop_run_once(f->l, 0);
	assert_int_equal(d.calls, 0);
}

/*
 * munge: each user's call goes to that user's own socket (rest_auth/local
 * submits as the slurmrestd's user), without token headers.
 */
static void test_munge_mode(void **state)
{
	struct fx *f = *state;
	char dir[64], path[108], tmpl[160], hv[64];
	struct fake_http *us;
	const struct route ok[] = {
	    ROUTE("GET", "/slurm/v0.0.38/ping", 200, "ping.json")};
	struct site_cred as_alice = {.user = "alice"}, as_bob = {.user = "bob"};
	struct site_call call = {0};
	struct done_rec d = {0};

	snprintf(dir, sizeof(dir), "/tmp/tg-test-munge-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/alice.sock", dir);
	snprintf(tmpl, sizeof(tmpl), "unix:%s/%%u.sock", dir);
	us = fake_http_start_unix(path, slurmrestd_handler, NULL);
	set_routes(ok, 1);
	site_free(f->site);
	f->site = open_site(f, tmpl, SITE_AUTH_MUNGE, 5);
	call.done = done_cb;
	call.arg = &d;
	assert_int_equal(site_ping(f->site, &as_alice, &call), 0);
	RUN_UNTIL(f->l, d.calls);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	pthread_mutex_lock(&mu);
	assert_int_equal(last.n, 1);
	assert_string_equal(last_header("X-SLURM-USER-TOKEN", hv, sizeof(hv)),
			    "");
	assert_string_equal(last_header("X-SLURM-USER-NAME", hv, sizeof(hv)),
			    "");
	pthread_mutex_unlock(&mu);
	/* bob has no slurmrestd of his own here: refused, nothing sent */
	d.calls = 0;
	site_call_reset(&call);
	call.done = done_cb;
	call.arg = &d;
	assert_int_equal(site_ping(f->site, &as_bob, &call), 0);
	RUN_UNTIL(f->l, d.calls);
	assert_int_equal(d.result.err, SITE_ERR_UNAVAILABLE);
	print_message("no socket: %s\n", d.result.message);
	assert_non_null(strstr(d.result.message, "slurmrestd of user bob"));
	assert_non_null(strstr(d.result.message, "/bob.sock"));
	pthread_mutex_lock(&mu);
	assert_int_equal(last.n, 1);
	pthread_mutex_unlock(&mu);
	site_call_reset(&call);
	fake_http_stop(us);
	rmdir(dir);
}

/* A job list of n jobs as slurmrestd writes it (malloc'ed). */
static char *big_list(unsigned n)
{
	size_t cap = 64 + (size_t)n * 200, off;
	char *b = malloc(cap);
	unsigned i;

	assert_non_null(b);
	off = (size_t)snprintf(b, cap, "{\"errors\":[],\"jobs\":[");
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(
		    b + off, cap - off,
		    "%s{\"job_id\":%u,\"name\":\"j-%06u\",\"comment\":"
		    "\"tiergate:j-%06u\",\"job_state\":\"PENDING\","
		    "\"user_name\":\"alice\",\"state_reason\":\"None\"}",
		    i ? "," : "", 1000 + i, i, i);
	snprintf(b + off, cap - off, "]}");
	return b;
}

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void gate_work(struct worker_job *j)
{
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

struct gate {
	struct worker_job wj; /* first */
	bool done;
};

static void gate_done(struct worker_job *j, int status)
{
	((struct gate *)j)->done = true;
}

/*
 * A list of thousands of jobs is parsed on a worker, not the loop, with
 * the same result; a call aborted while its answer waits for a worker is
 * never delivered.
 */
static void test_big_answer_on_worker(void **state)
{
	struct fx *f = *state;
	struct worker_pool *pool = worker_pool_new(f->l, 1, "parse");
	char *body = big_list(3000);
	struct route big[] = {{.method = "GET",
			       .path = "/slurm/v0.0.38/jobs",
			       .status = 200,
			       .body = body}};
	struct site_call call = {0};
	struct done_rec d = {0};
	struct gate g = {0};

	assert_non_null(pool);
	assert_true(strlen(body) > 256 * 1024);
	set_routes(big, 1);
	site_set_workers(f->site, pool);
	call.done = done_cb;
	call.arg = &d;
	assert_int_equal(site_list(f->site, &alice, 0, &call), 0);
	RUN_UNTIL(f->l, d.calls > 0);
	assert_int_equal(d.result.err, SITE_ERR_OK);
	assert_int_equal(call.result.n_jobs, 3000);
	assert_int_equal(call.result.jobs[2999].job_id, 3999);
	assert_string_equal(call.result.jobs[5].tag, "j-000005");
	site_call_reset(&call);

	/* the only worker busy: the answer waits for it; abort meanwhile */
	g.wj.name = "gate";
	g.wj.work = gate_work;
	g.wj.done = gate_done;
	gate_open = false;
	assert_int_equal(worker_submit(pool, &g.wj), 0);
	memset(&d, 0, sizeof(d));
	call.done = done_cb;
	call.arg = &d;
	assert_int_equal(site_list(f->site, &alice, 0, &call), 0);
	RUN_UNTIL(f->l, call.parse != NULL);
	assert_int_equal(site_call_abort(&call), 0);
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
	RUN_UNTIL(f->l, g.done);
	for (int i = 0; i < 20; i++)
		loop_run_once(f->l, 10); /* the parse ends, dropped */
	assert_int_equal(d.calls, 0);
	site_set_workers(f->site, NULL);
	worker_pool_shutdown(pool, WORKER_SHUTDOWN_DRAIN);
	worker_pool_free(pool);
	site_call_reset(&call);
	free(body);
}

static void test_bad_calls(void **state)
{
	struct fx *f = *state;
	const struct route hang[] = {
	    ROUTE_DO("GET", "/slurm/v0.0.38/ping", 200, NULL, NULL, FAKE_HANG)};
	struct site_cred nobody = {.user = "-rf"};
	struct site_submit bad = {.tag = "not a tag", .script = "#!/bin/sh\n"};
	struct site_submit noscript = {.tag = "j-2"};
	struct site_call call = {0};
	struct done_rec d = {0};

	assert_int_equal(site_ping(f->site, &nobody, &call), -EINVAL);
	assert_int_equal(call.result.err, SITE_ERR_INTERNAL);
	assert_int_equal(site_ping(f->site, NULL, &call), -EINVAL);
	assert_int_equal(site_submit(f->site, &alice, &bad, &call), -EINVAL);
	assert_int_equal(site_submit(f->site, &alice, &noscript, &call),
			 -EINVAL);
	assert_string_equal(call.result.message, "submit: no script");
	assert_int_equal(site_get(f->site, &alice, 0, &call), -EINVAL);
	assert_int_equal(site_cancel(f->site, &alice, 0, &call), -EINVAL);
	assert_int_equal(site_find_by_tag(f->site, &alice, "", &call), -EINVAL);
	/* a call in flight cannot be reused */
	set_routes(hang, 1);
	call.done = done_cb;
	call.arg = &d;
	assert_int_equal(site_ping(f->site, &alice, &call), 0);
	assert_int_equal(site_ping(f->site, &alice, &call), -EBUSY);
	assert_int_equal(site_call_reset(&call), -EBUSY);
	assert_true(site_call_in_flight(&call)); /* untouched */
	RUN_UNTIL(f->l, fake_http_count(&f->srv->inflight) == 1);
	assert_int_equal(site_call_abort(&call), 0);
	assert_int_equal(call.result.err, SITE_ERR_CANCELLED);
	assert_int_equal(site_call_abort(&call), -EALREADY);
	RUN_UNTIL(f->l, fake_http_count(&f->srv->peer_closed) >= 1);
	assert_int_equal(d.calls, 0);
}

/* A task cancelled while its submit hangs aborts it; nothing leaks. */
static void test_task_abort(void **state)
{
	struct fx *f = *state;
	const struct route hang[] = {ROUTE_DO(
	    "POST", "/slurm/v0.0.38/job/submit", 200, NULL, NULL, FAKE_HANG)};
	struct submitter x = {.site = f->site};

	set_routes(hang, 1);
	assert_int_equal(task_start(f->l, &x.task, &sub_ops), 0);
	RUN_UNTIL(f->l, fake_http_count(&f->srv->inflight) == 1);
	assert_int_equal(x.task.refs, 2); /* itself + the call */
	assert_int_equal(task_cancel(&x.task, "user cancelled"), 0);
	RUN_UNTIL(f->l, x.destroyed);
	assert_int_equal(x.call.result.err, SITE_ERR_CANCELLED);
}

/* Closing the site delivers CANCELLED to what is in flight. */
static void test_site_free_in_flight(void **state)
{
	struct fx *f = *state;
	const struct route hang[] = {
	    ROUTE_DO("GET", "/slurm/v0.0.38/ping", 200, NULL, NULL, FAKE_HANG)};
	struct site_call calls[3] = {{0}};
	struct done_rec d[3] = {{0}};
	int i;

	set_routes(hang, 1);
	for (i = 0; i < 3; i++) {
		calls[i].done = done_cb;
		calls[i].arg = &d[i];
		assert_int_equal(site_ping(f->site, &alice, &calls[i]), 0);
	}
	RUN_UNTIL(f->l, fake_http_count(&f->srv->inflight) == 2); /* limit */
	site_free(f->site);
	f->site = NULL;
	for (i = 0; i < 3; i++) {
		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].result.err, SITE_ERR_CANCELLED);
		assert_string_equal(d[i].result.message, "site alpha closed");
	}
}

static void test_config_errors(void **state)
{
	struct fx *f = *state;
	char err[256], short_key[64];
	struct site_config cfg = {.name = "beta", .url = "http://127.0.0.1:1"};
	int fd;

	cfg.auth = SITE_AUTH_MUNGE;
	assert_null(site_new(f->l, f->http, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "%u.sock"));

	cfg.auth = SITE_AUTH_JWT_KEY;
	assert_null(site_new(f->l, f->http, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "needs jwt_key"));

	snprintf(short_key, sizeof(short_key), "/tmp/tg-test-short-%d.key",
		 (int)getpid());
	fd = open(short_key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	cfg.jwt_key = short_key;
	assert_null(site_new(f->l, f->http, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "site beta: jwt_key"));
	unlink(short_key);

	cfg.jwt_key = f->key_path;
	cfg.url = "ftp://x";
	assert_null(site_new(f->l, f->http, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "bad url"));

	cfg.url = "http://127.0.0.1:1";
	cfg.kind = "slurmrestd-v0.0.99";
	assert_null(site_new(f->l, f->http, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown kind"));

	cfg.kind = NULL;
	cfg.name = NULL;
	assert_null(site_new(f->l, f->http, &cfg, err, sizeof(err)));

	{
		enum site_auth a;

		assert_int_equal(site_auth_parse("jwt-user", &a), 0);
		assert_int_equal(a, SITE_AUTH_JWT_USER);
		assert_int_equal(site_auth_parse("bearer", &a), -EINVAL);
		assert_string_equal(site_auth_name(SITE_AUTH_JWT_KEY),
				    "jwt-key");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_samples),
	    cmocka_unit_test(test_sample_jobs_list),
	    cmocka_unit_test(test_synthetic_answers),
	    cmocka_unit_test(test_list_stream_matches_jansson),
	    cmocka_unit_test(test_tag_parse),
	    cmocka_unit_test(test_submit_body),
	    cmocka_unit_test_setup_teardown(test_submit_end_to_end, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_token_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_operations_end_to_end, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_and_unix, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_jwt_user_mode, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_munge_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_big_answer_on_worker, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_calls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_task_abort, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_site_free_in_flight, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_config_errors, setup,
					    teardown),
	};

	log_init("test_site_slurmrestd");
	log_debug_from_env();
	find_data_dir();
	http_client_global_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
