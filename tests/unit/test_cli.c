/*
 * test_cli.c: the pure half of the `tiergate` CLI (gateway/cli/cmd.c,
 * sse.c, and client.c's request/response helpers).  The CLI is not part
 * of libtggateway.a, so its sources are compiled into this test directly;
 * they keep no globals, which is what makes that safe.  The network half
 * is exercised end to end by the integration tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.c"
#include "cli/cmd.c"
#include "cli/sse.c"

/* ------------------------------------------------------------ SSE */

struct got {
	char type[64][32];
	char id[64][64];
	char data[64][256];
	size_t len[64];
	long retry[64];
	int n;
	int stop_at; /* return 7 on this event number (1-based), 0: never */
};

static int got_cb(const struct sse_event *ev, void *arg)
{
	struct got *g = arg;

	assert_true(g->n < 64);
	snprintf(g->type[g->n], sizeof(g->type[0]), "%s", ev->type);
	snprintf(g->id[g->n], sizeof(g->id[0]), "%s", ev->id);
	assert_true(ev->data_len < sizeof(g->data[0]));
	memcpy(g->data[g->n], ev->data, ev->data_len);
	g->data[g->n][ev->data_len] = '\0';
	g->len[g->n] = ev->data_len;
	g->retry[g->n] = ev->retry_ms;
	g->n++;
	return g->stop_at == g->n ? 7 : 0;
}

static const char stream_text[] =
    "\xEF\xBB\xBF: a comment, then a heartbeat\r\n"
    ":\n"
    "\n"
    "event: output\r\n"
    "id: stdout:7\r\n"
    "data: {\"data\":\"line 1\\n\"}\r\n"
    "\r\n"
    "data:no space\n"
    "data:  two spaces\n"
    "\n"
    "event: nodata\n"
    "id: 9\n"
    "\n"
    "retry: 2500\n"
    "data\n"
    "data\n"
    "\r"
    "unknown: field\n"
    "data: last\r"
    "\r";

static void check_stream(const struct got *g)
{
	assert_int_equal(g->n, 4);
	assert_string_equal(g->type[0], "output");
	assert_string_equal(g->id[0], "stdout:7");
	assert_string_equal(g->data[0], "{\"data\":\"line 1\\n\"}");
	assert_string_equal(g->type[1], "message");
	assert_string_equal(g->id[1], "stdout:7"); /* persists */
	assert_string_equal(g->data[1], "no space\n two spaces");
	/* "event: nodata" had no data: not dispatched, but its id counts */
	assert_string_equal(g->id[2], "9");
	assert_string_equal(g->type[2], "message");
	assert_int_equal(g->len[2], 1); /* "data" twice: "\n" */
	assert_string_equal(g->data[2], "\n");
	assert_int_equal(g->retry[2], 2500);
	assert_string_equal(g->data[3], "last");
}

static void test_sse_whole_and_bytewise(void **state)
{
	struct sse_parser p;
	struct got g = {0};
	size_t i;

	(void)state;
	sse_init(&p, got_cb, &g);
	assert_int_equal(sse_feed(&p, stream_text, strlen(stream_text)), 0);
	check_stream(&g);
	assert_string_equal(sse_last_id(&p), "9");
	sse_free(&p);

	/* one byte at a time: CRLF and the BOM split across calls */
	memset(&g, 0, sizeof(g));
	sse_init(&p, got_cb, &g);
	for (i = 0; i < strlen(stream_text); i++)
		assert_int_equal(sse_feed(&p, stream_text + i, 1), 0);
	/* (bytewise the BOM is not recognised: its line is ignored) */
	check_stream(&g);
	sse_free(&p);
}

static void test_sse_stop_reset_limits(void **state)
{
	struct sse_parser p;
	struct got g = {.stop_at = 1};
	char *big;

	(void)state;
	sse_init(&p, got_cb, &g);
	assert_int_equal(sse_feed(&p, "data: a\n\ndata: b\n\n", 18), 7);
	assert_int_equal(g.n, 1);
	sse_free(&p);

	/* reset drops a half event but keeps the last id */
	memset(&g, 0, sizeof(g));
	sse_init(&p, got_cb, &g);
	assert_int_equal(sse_feed(&p, "id: 5\ndata: half", 16), 0);
	sse_reset(&p);
	assert_int_equal(sse_feed(&p, "\ndata: whole\n\n", 14), 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.data[0], "whole");
	assert_string_equal(g.id[0], "5");
	sse_free(&p);

	/* a line over the limit */
	big = malloc(SSE_LINE_MAX + 2);
	assert_non_null(big);
	memset(big, 'x', SSE_LINE_MAX + 1);
	sse_init(&p, got_cb, &g);
	assert_int_equal(sse_feed(&p, big, SSE_LINE_MAX + 1), -E2BIG);
	sse_free(&p);
	free(big);
}

/* --------------------------------------------------- command line */

static char *fake_env(const char *name)
{
	if (!strcmp(name, "TIERGATE_URL"))
		return "http://gw.example:8480";
	if (!strcmp(name, "TIERGATE_TOKEN_FILE"))
		return "/home/alice/.tiergate-token";
	if (!strcmp(name, "HOME"))
		return "/home/alice";
	return NULL;
}

static char *no_env(const char *name)
{
	(void)name;
	return NULL;
}

#define ARGV(...) ((char *const[]){"tiergate", __VA_ARGS__, NULL})
#define ARGC(...)                                                              \
	((int)(sizeof((char *const[]){"tiergate", __VA_ARGS__}) /              \
	       sizeof(char *)))
#define PARSE(cl, env, ...)                                                    \
	tg_parse_cmdline(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), env, cl, err,   \
			 sizeof(err))

static void test_parse_submit(void **state)
{
	struct tg_cmdline cl;
	char err[256] = "";

	(void)state;
	assert_int_equal(PARSE(&cl, fake_env, "submit", "--site", "alpha",
			       "--tier=premium", "-c4", "-n", "2", "--time",
			       "1:30", "--env", "A=1", "-e", "HOME",
			       "--idempotency-key", "k-1", "--name", "hello",
			       "job.sh", "--json"),
			 0);
	assert_int_equal(cl.cmd, TG_CMD_SUBMIT);
	assert_string_equal(cl.site, "alpha");
	assert_string_equal(cl.tier, "premium");
	assert_int_equal(cl.cpus_per_task, 4);
	assert_int_equal(cl.ntasks, 2);
	assert_int_equal(cl.time_min, 90);
	assert_int_equal(cl.n_env, 2);
	assert_string_equal(cl.env[0], "A=1");
	assert_string_equal(cl.env[1], "HOME");
	assert_string_equal(cl.idempotency_key, "k-1");
	assert_string_equal(cl.name, "hello");
	assert_string_equal(cl.script, "job.sh");
	assert_true(cl.json);
	assert_string_equal(cl.url, "http://gw.example:8480");
	assert_string_equal(cl.token_file, "/home/alice/.tiergate-token");
	assert_int_equal(cl.timeout_s, TG_DEFAULT_TIMEOUT);
	tg_cmdline_free(&cl);

	/* globals before the command; "-" is stdin; "--" ends options */
	assert_int_equal(PARSE(&cl, no_env, "--url", "unix:/run/tg.sock",
			       "--munge-socket", "/run/m.sock", "--timeout",
			       "5", "submit", "--site", "a", "--tier", "b",
			       "-"),
			 0);
	assert_string_equal(cl.url, "unix:/run/tg.sock");
	assert_true(cl.munge);
	assert_string_equal(cl.munge_socket, "/run/m.sock");
	assert_int_equal(cl.timeout_s, 5);
	assert_string_equal(cl.script, "-");
	assert_null(cl.token_file);
	tg_cmdline_free(&cl);
	assert_int_equal(PARSE(&cl, no_env, "submit", "--site", "a", "--tier",
			       "b", "--", "--weird-name.sh"),
			 0);
	assert_string_equal(cl.script, "--weird-name.sh");
	assert_string_equal(cl.url, TG_DEFAULT_URL);
	tg_cmdline_free(&cl);
}

static void test_parse_errors(void **state)
{
	struct tg_cmdline cl;
	char err[256] = "";

	(void)state;
	assert_int_equal(PARSE(&cl, no_env, "--json"), -EINVAL);
	assert_non_null(strstr(err, "no command"));
	assert_int_equal(PARSE(&cl, no_env, "frobnicate"), -EINVAL);
	assert_non_null(strstr(err, "unknown command 'frobnicate'"));
	assert_int_equal(PARSE(&cl, no_env, "sites", "--bogus"), -EINVAL);
	assert_non_null(strstr(err, "unknown option '--bogus'"));
	assert_int_equal(PARSE(&cl, no_env, "--site", "a", "ls"), -EINVAL);
	assert_non_null(strstr(err, "goes after the command"));
	assert_int_equal(PARSE(&cl, no_env, "ls", "--tier", "x"), -EINVAL);
	assert_non_null(strstr(err, "ls does not take --tier"));
	assert_int_equal(PARSE(&cl, no_env, "submit", "--tier", "b", "x.sh"),
			 -EINVAL);
	assert_non_null(strstr(err, "--site is required"));
	assert_int_equal(
	    PARSE(&cl, no_env, "submit", "--site", "a", "--tier", "b"),
	    -EINVAL);
	assert_non_null(strstr(err, "script is required"));
	assert_int_equal(PARSE(&cl, no_env, "submit", "--site", "a", "--tier",
			       "b", "x.sh", "y.sh"),
			 -EINVAL);
	assert_non_null(strstr(err, "unexpected argument 'y.sh'"));
	assert_int_equal(PARSE(&cl, no_env, "submit", "--site"), -EINVAL);
	assert_non_null(strstr(err, "--site needs a value"));
	assert_int_equal(PARSE(&cl, no_env, "sites", "--json=yes"), -EINVAL);
	assert_int_equal(PARSE(&cl, no_env, "submit", "-c", "0", "--site", "a",
			       "--tier", "b", "x"),
			 -EINVAL);
	assert_non_null(strstr(err, "--cpus-per-task"));
	assert_int_equal(PARSE(&cl, no_env, "submit", "--time", "1:75",
			       "--site", "a", "--tier", "b", "x"),
			 -EINVAL);
	assert_int_equal(PARSE(&cl, no_env, "submit", "--idempotency-key", "",
			       "--site", "a", "--tier", "b", "x"),
			 -EINVAL);
	assert_int_equal(PARSE(&cl, no_env, "status"), -EINVAL);
	assert_non_null(strstr(err, "JOBID is required"));
	assert_int_equal(PARSE(&cl, no_env, "status", "j/../x"), -EINVAL);
	assert_non_null(strstr(err, "not a job id"));
	assert_int_equal(
	    PARSE(&cl, no_env, "follow", "--stream", "both", "j-1"), -EINVAL);
	assert_int_equal(PARSE(&cl, no_env, "ls", "--limit", "0"), -EINVAL);
	/* help wins over everything, even errors later on the line */
	assert_int_equal(PARSE(&cl, no_env, "submit", "--help"), 0);
	assert_int_equal(cl.cmd, TG_CMD_HELP);
	assert_int_equal(PARSE(&cl, no_env, "-h"), 0);
	assert_int_equal(cl.cmd, TG_CMD_HELP);
	assert_int_equal(PARSE(&cl, no_env, "--version"), 0);
	assert_int_equal(cl.cmd, TG_CMD_VERSION);
	assert_non_null(strstr(tg_usage_text(), "follow"));
}

static void test_minutes_and_since(void **state)
{
	long m;
	int64_t t;

	(void)state;
	assert_int_equal(tg_parse_minutes("10", &m), 0);
	assert_int_equal(m, 10);
	assert_int_equal(tg_parse_minutes("1:30", &m), 0);
	assert_int_equal(m, 90);
	assert_int_equal(tg_parse_minutes("0:00:01", &m), 0);
	assert_int_equal(m, 1);
	assert_int_equal(tg_parse_minutes("2:00:30", &m), 0);
	assert_int_equal(m, 121);
	assert_int_equal(tg_parse_minutes("1-2:00", &m), 0);
	assert_int_equal(m, 1440 + 120);
	assert_int_equal(tg_parse_minutes("1-2", &m), 0);
	assert_int_equal(m, 1440 + 120);
	assert_int_equal(tg_parse_minutes("0", &m), -EINVAL);
	assert_int_equal(tg_parse_minutes("-5", &m), -EINVAL);
	assert_int_equal(tg_parse_minutes("1:60", &m), -EINVAL);
	assert_int_equal(tg_parse_minutes("1:2:3:4", &m), -EINVAL);
	assert_int_equal(tg_parse_minutes("ten", &m), -EINVAL);
	assert_int_equal(tg_parse_minutes("", &m), -EINVAL);

	assert_int_equal(tg_parse_since("1795628285", 0, true, &t), 0);
	assert_int_equal(t, 1795628285);
	assert_int_equal(tg_parse_since("7d", 1000000, true, &t), 0);
	assert_int_equal(t, 1000000 - 7 * 86400);
	assert_int_equal(tg_parse_since("90m", 10000, true, &t), 0);
	assert_int_equal(t, 10000 - 5400);
	assert_int_equal(tg_parse_since("2026-11-25", 0, true, &t), 0);
	assert_int_equal(t, 1795564800);
	assert_int_equal(tg_parse_since("2026-11-25T17:38", 0, true, &t), 0);
	assert_int_equal(t, 1795564800 + 17 * 3600 + 38 * 60);
	assert_int_equal(tg_parse_since("2026-11-25T17:38:05", 0, true, &t), 0);
	assert_int_equal(t, 1795564800 + 17 * 3600 + 38 * 60 + 5);
	assert_int_equal(tg_parse_since("yesterday", 0, true, &t), -EINVAL);
	assert_int_equal(tg_parse_since("5y", 0, true, &t), -EINVAL);
	assert_int_equal(tg_parse_since("2026-13-01", 0, true, &t), -EINVAL);
	assert_int_equal(tg_parse_since("9999d", 100, true, &t), -EINVAL);
}

/* ------------------------------------------------------- requests */

static void test_build_submit(void **state)
{
	static const char script[] = "#!/bin/bash\necho \"h\xc3\xa9\"\n";
	struct tg_cmdline cl;
	struct tg_request req;
	char err[256] = "";

	(void)state;
	assert_int_equal(PARSE(&cl, fake_env, "submit", "--site", "alpha",
			       "--tier", "premium", "-c", "2", "--time", "10",
			       "--env", "K=V=W", "--env", "HOME",
			       "--idempotency-key", "abc", "dir/job.sh"),
			 0);
	assert_int_equal(tg_build_request(&cl, script, strlen(script), fake_env,
					  0, &req, err, sizeof(err)),
			 0);
	assert_string_equal(req.method, "POST");
	assert_string_equal(req.path, "/v1/jobs");
	assert_string_equal(req.idempotency_key, "abc");
	assert_string_equal(
	    req.body,
	    "{\"environment\":{\"HOME\":\"/home/alice\",\"K\":\"V=W\"},"
	    "\"name\":\"job.sh\",\"resources\":{\"cpus_per_task\":2,"
	    "\"time_limit_min\":10},\"script\":\"#!/bin/bash\\necho "
	    "\\\"h\xc3\xa9\\\"\\n\",\"site\":\"alpha\",\"tier\":\"premium\"}");
	tg_request_clear(&req);
	tg_cmdline_free(&cl);

	/* stdin script: no default name, no resources, no environment */
	assert_int_equal(
	    PARSE(&cl, fake_env, "submit", "--site", "a", "--tier", "b", "-"),
	    0);
	assert_int_equal(
	    tg_build_request(&cl, "x", 1, fake_env, 0, &req, err, sizeof(err)),
	    0);
	assert_string_equal(req.body,
			    "{\"script\":\"x\",\"site\":\"a\",\"tier\":\"b\"}");
	assert_null(req.idempotency_key);
	tg_request_clear(&req);
	/* bad scripts */
	assert_int_equal(tg_build_request(&cl, "a\0b", 3, fake_env, 0, &req,
					  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "NUL"));
	assert_int_equal(tg_build_request(&cl, "\xff\xfe", 2, fake_env, 0, &req,
					  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "UTF-8"));
	assert_int_equal(
	    tg_build_request(&cl, "", 0, fake_env, 0, &req, err, sizeof(err)),
	    -EINVAL);
	assert_null(req.path);
	tg_cmdline_free(&cl);

	/* environment mistakes */
	assert_int_equal(PARSE(&cl, fake_env, "submit", "--site", "a", "--tier",
			       "b", "--env", "A=1", "--env", "A=2", "x"),
			 0);
	assert_int_equal(
	    tg_build_request(&cl, "x", 1, fake_env, 0, &req, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	tg_cmdline_free(&cl);
	assert_int_equal(PARSE(&cl, fake_env, "submit", "--site", "a", "--tier",
			       "b", "--env", "UNSET_VAR", "x"),
			 0);
	assert_int_equal(
	    tg_build_request(&cl, "x", 1, fake_env, 0, &req, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "not set"));
	tg_cmdline_free(&cl);
	assert_int_equal(PARSE(&cl, fake_env, "submit", "--site", "a", "--tier",
			       "b", "--env", "1A=x", "x"),
			 0);
	assert_int_equal(
	    tg_build_request(&cl, "x", 1, fake_env, 0, &req, err, sizeof(err)),
	    -EINVAL);
	tg_cmdline_free(&cl);
}

static void test_build_others(void **state)
{
	struct tg_cmdline cl;
	struct tg_request req;
	char err[256] = "";

	(void)state;
#define REQ(method_, path_, ...)                                               \
	do {                                                                   \
		assert_int_equal(PARSE(&cl, no_env, __VA_ARGS__), 0);          \
		assert_int_equal(tg_build_request(&cl, NULL, 0, no_env,        \
						  1000000, &req, err,          \
						  sizeof(err)),                \
				 0);                                           \
		assert_string_equal(req.method, method_);                      \
		assert_string_equal(req.path, path_);                          \
		assert_null(req.body);                                         \
		tg_request_clear(&req);                                        \
		tg_cmdline_free(&cl);                                          \
	} while (0)
	REQ("GET", "/v1/jobs/j-6f1c", "status", "j-6f1c");
	REQ("DELETE", "/v1/jobs/j-6f1c", "cancel", "j-6f1c");
	REQ("GET", "/v1/jobs/j:1/output", "follow", "j:1");
	REQ("GET", "/v1/jobs", "ls");
	REQ("GET", "/v1/jobs?state=running&site=alpha&user=a%20b%26c&limit=5",
	    "ls", "--state", "running", "--site", "alpha", "--user", "a b&c",
	    "--limit", "5");
	REQ("GET", "/v1/sites", "sites");
	REQ("GET", "/v1/usage", "usage");
	REQ("GET", "/v1/usage?user=bob&since=395200", "usage", "--user", "bob",
	    "--since", "7d");
#undef REQ
	assert_int_equal(PARSE(&cl, no_env, "usage", "--since", "soon"), 0);
	assert_int_equal(
	    tg_build_request(&cl, NULL, 0, no_env, 0, &req, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "--since"));
	tg_cmdline_free(&cl);
	{
		char *p = tg_job_path("a b/c", "/output");

		assert_string_equal(p, "/v1/jobs/a%20b%2Fc/output");
		free(p);
	}
}

/* ------------------------------------------------------- answers */

/* buf is only valid after fclose(f) (or fflush). */
#define MEM_OUT(f, buf, len)                                                   \
	do {                                                                   \
		(buf) = NULL;                                                  \
		(f) = open_memstream(&(buf), &(len));                          \
		assert_non_null(f);                                            \
	} while (0)

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	if (!j)
		print_message("bad test JSON: %s\n", e.text);
	assert_non_null(j);
	return j;
}

static const char job_json[] =
    "{\"id\":\"j-6f1c2a9e4b7d\",\"site\":\"alpha\",\"user\":\"alice\","
    "\"tier\":\"premium\",\"name\":\"hello\",\"state\":\"failed\","
    "\"slurm\":{\"job_id\":1001,\"state\":\"FAILED\",\"reason\":"
    "\"NonZeroExitCode\",\"exit_code\":768,\"signal\":null},"
    "\"created_at\":1795628285,\"updated_at\":1795628290,"
    "\"cancel_requested\":false,\"ended_by\":\"site\",\"error\":null,"
    "\"usage\":{\"cpu_seconds\":12.5,\"rate\":3.0,\"charge\":37.5},"
    "\"request_id\":\"r-4d2\"}";

static void test_print_job(void **state)
{
	struct tg_fmt f = {.now = 1795628285 + 600, .utc = true};
	json_t *j = J(job_json);
	size_t len;
	char *buf;
	FILE *out;

	(void)state;
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_job(out, j, &f), 0);
	fclose(out);
	assert_string_equal(
	    buf, "id:         j-6f1c2a9e4b7d\n"
		 "name:       hello\n"
		 "site:       alpha\n"
		 "user:       alice\n"
		 "tier:       premium\n"
		 "state:      failed\n"
		 "slurm:      1001 FAILED (reason NonZeroExitCode)\n"
		 "exit:       exit 3\n"
		 "created:    2026-11-25 17:38:05\n"
		 "updated:    2026-11-25 17:38:10\n"
		 "cancel:     -\n"
		 "ended by:   site\n"
		 "error:      -\n"
		 "usage:      12.50 cpu-seconds at rate 3.00 = charge 37.50\n"
		 "request:    r-4d2\n");
	free(buf);
	json_decref(j);

	/* accepted: no slurm id yet; a signal; an error string */
	j = J("{\"id\":\"j-1\",\"state\":\"accepted\",\"slurm\":null,"
	      "\"error\":\"the site said no\",\"cancel_requested\":true}");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_job(out, j, &f), 0);
	fclose(out);
	assert_non_null(strstr(buf, "slurm:      -\n"));
	assert_non_null(strstr(buf, "error:      the site said no\n"));
	assert_non_null(strstr(buf, "cancel:     requested\n"));
	assert_non_null(strstr(buf, "name:       -\n"));
	free(buf);
	json_decref(j);
	j = J("{\"slurm\":{\"job_id\":2,\"state\":\"CANCELLED\",\"exit_code\":"
	      "9,\"signal\":null}}");
	MEM_OUT(out, buf, len);
	tg_print_job(out, j, &f);
	fclose(out);
	assert_non_null(strstr(buf, "exit:       signal 9\n"));
	free(buf);
	json_decref(j);

	j = J("[1]");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_job(out, j, &f), -EINVAL);
	fclose(out);
	free(buf);
	json_decref(j);
}

static void test_print_tables(void **state)
{
	struct tg_fmt f = {.now = 1795628285 + 7300, .utc = true};
	json_t *j;
	size_t len;
	char *buf, text[2048];
	FILE *out;

	(void)state;
	snprintf(text, sizeof(text),
		 "{\"jobs\":[%s,{\"id\":\"j-2\",\"site\":\"beta\",\"user\":"
		 "\"bob\",\"tier\":\"basic\",\"state\":\"accepted\","
		 "\"name\":\"a\\tb\",\"created_at\":%d}]}",
		 job_json, 1795628285 + 7290);
	j = J(text);
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_jobs(out, j, &f), 0);
	fclose(out);
	assert_string_equal(buf, "ID              SITE   USER   TIER     STATE "
				 "    SLURM  AGE  NAME\n"
				 "j-6f1c2a9e4b7d  alpha  alice  premium  "
				 "failed    1001   2h   hello\n"
				 "j-2             beta   bob    basic    "
				 "accepted  -      10s  a?b\n");
	free(buf);
	json_decref(j);

	j = J("{\"jobs\":[]}");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_jobs(out, j, &f), 0);
	fclose(out);
	assert_string_equal(buf, "no jobs\n");
	free(buf);
	json_decref(j);
	j = J("{\"sites\":[]}");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_jobs(out, j, &f), -EINVAL);
	fclose(out);
	free(buf);
	json_decref(j);

	j = J("{\"sites\":[{\"name\":\"alpha\",\"auth\":\"jwt-key\","
	      "\"state\":\"up\",\"breaker\":"
	      "\"closed\",\"tiers\":[\"basic\",\"premium\"],\"last_ok\":"
	      "1795628290,\"last_error\":null},{\"name\":\"beta\",\"auth\":"
	      "\"jwt-user\",\"credential_expires_at\":null,\"state\":"
	      "\"down\",\"breaker\":\"open\",\"tiers\":[],\"last_ok\":null,"
	      "\"last_error\":\"connect: refused\"}]}");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_sites(out, j, &f), 0);
	fclose(out);
	assert_string_equal(
	    buf,
	    "NAME   AUTH                  STATE  BREAKER  TIERS          "
	    "LAST_OK              LAST_ERROR\n"
	    "alpha  jwt-key               up     closed   basic,premium  "
	    "2026-11-25 17:38:10  -\n"
	    "beta   jwt-user(yours:none)  down   open     -              -  "
	    "                  connect: refused\n");
	free(buf);
	json_decref(j);

	j = J("{\"usage\":[{\"user\":\"alice\",\"tier\":\"premium\","
	      "\"cpu_seconds\":120.0,\"charge\":360.0},{\"user\":\"bob\","
	      "\"tier\":\"basic\",\"cpu_seconds\":3,\"charge\":3}]}");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_usage(out, j, &f), 0);
	fclose(out);
	assert_string_equal(buf, "USER   TIER     CPU_SECONDS  CHARGE\n"
				 "alice  premium  120.00       360.00\n"
				 "bob    basic    3            3\n");
	free(buf);
	json_decref(j);

	j = J(
	    "{\"id\":\"j-1\",\"state\":\"running\",\"cancel_requested\":true}");
	MEM_OUT(out, buf, len);
	assert_int_equal(tg_print_cancel(out, j), 0);
	fclose(out);
	assert_string_equal(buf, "j-1: cancel requested (state running)\n");
	free(buf);
	json_decref(j);
}

static void test_api_error(void **state)
{
	struct tg_response r = {0};
	char buf[512];

	(void)state;
	r.status = 404;
	r.json = J("{\"error\":{\"code\":\"not_found\",\"message\":\"no job "
		   "j-1a2b\",\"request_id\":\"r-77\"}}");
	snprintf(r.request_id, sizeof(r.request_id), "r-header");
	assert_string_equal(tg_format_api_error(&r, buf, sizeof(buf)),
			    "not_found: no job j-1a2b (request r-77)");
	json_decref(r.json);
	/* no request id in the body: the header's */
	r.json = J("{\"error\":{\"code\":\"unauthorized\",\"message\":\"token "
		   "expired 5 s ago\"}}");
	assert_string_equal(tg_format_api_error(&r, buf, sizeof(buf)),
			    "unauthorized: token expired 5 s ago (request "
			    "r-header)");
	json_decref(r.json);
	r.json = NULL;
	/* not JSON: the first line of the body */
	r.status = 502;
	r.body = "\n<html>Bad Gateway</html>\nmore";
	r.body_len = strlen(r.body);
	r.request_id[0] = '\0';
	assert_string_equal(tg_format_api_error(&r, buf, sizeof(buf)),
			    "HTTP 502: <html>Bad Gateway</html>");
	r.body = "";
	r.body_len = 0;
	assert_string_equal(tg_format_api_error(&r, buf, sizeof(buf)),
			    "HTTP 502");

	assert_int_equal(tg_state_exit_code("completed"), 0);
	assert_int_equal(tg_state_exit_code("failed"), TG_EXIT_FAILED);
	assert_int_equal(tg_state_exit_code("cancelled"), TG_EXIT_CANCELLED);
	assert_int_equal(tg_state_exit_code("timeout"), TG_EXIT_TIMEOUT);
	assert_int_equal(tg_state_exit_code("rejected"), TG_EXIT_REJECTED);
	assert_int_equal(tg_state_exit_code("unknown"), TG_EXIT_UNKNOWN);
	assert_int_equal(tg_state_exit_code("running"), -1);
	assert_int_equal(tg_state_exit_code(NULL), -1);
	assert_true(tg_state_final("rejected"));
	assert_false(tg_state_final("completing"));
}

/* ------------------------------------------------------- follow */

static int follow_adapter(const struct sse_event *ev, void *arg)
{
	return tg_follow_event(arg, ev);
}

static int feed_follow(struct tg_follow *f, const char *text)
{
	struct sse_parser p;
	int rv;

	sse_init(&p, follow_adapter, f);
	rv = sse_feed(&p, text, strlen(text));
	sse_free(&p);
	return rv;
}

static void test_follow_events(void **state)
{
	struct tg_follow f;
	char *ob, *eb, *path;
	size_t ol, el;
	FILE *out, *errout;

	(void)state;
	MEM_OUT(out, ob, ol);
	MEM_OUT(errout, eb, el);
	tg_follow_init(&f, out, errout, false);
	assert_int_equal(
	    feed_follow(&f,
			": hb\n\n"
			"event: output\nid: s:7\ndata: {\"stream\":\"stdout\","
			"\"offset\":0,\"data\":\"line 1\\n\"}\n\n"
			/* a replay, partly new */
			"event: output\nid: s:14\ndata: {\"stream\":\"stdout\","
			"\"offset\":3,\"data\":\"e 1\\nline 2\\n\"}\n\n"
			/* an exact replay */
			"event: output\ndata: {\"stream\":\"stdout\","
			"\"offset\":7,\"data\":\"line 2\\n\"}\n\n"
			"event: output\ndata: {\"stream\":\"stderr\","
			"\"offset\":0,\"data_b64\":\"d2Fybgo=\"}\n\n"
			"event: state\ndata: {\"state\":\"completing\"}\n\n"
			"event: eof\ndata: {\"stream\":\"stdout\"}\n\n"
			"event: ping\ndata: x\n\n"),
	    0);
	assert_false(f.ended);
	assert_string_equal(f.state, "completing");
	assert_true(f.eof[0]);
	assert_false(f.eof[1]);
	assert_int_equal(f.written[0], 14);
	assert_int_equal(f.written[1], 5);
	path = tg_follow_path(&f, "j-1", NULL, "");
	assert_string_equal(path, "/v1/jobs/j-1/output?offset=14");
	free(path);
	path = tg_follow_path(&f, "j-1", "stderr", NULL);
	assert_string_equal(path, "/v1/jobs/j-1/output?stream=stderr&offset=5");
	free(path);
	path = tg_follow_path(&f, "j-1", NULL, "s:14");
	assert_string_equal(path, "/v1/jobs/j-1/output");
	free(path);
	assert_int_equal(feed_follow(&f, "event: end\ndata: {\"state\":"
					 "\"completed\"}\n\n"
					 "event: output\ndata: late\n\n"),
			 1);
	assert_true(f.ended);
	assert_string_equal(f.state, "completed");
	fclose(out);
	fclose(errout);
	assert_string_equal(ob, "line 1\nline 2\n");
	assert_string_equal(eb, "warn\n");
	free(ob);
	free(eb);

	/* plain text data, an error event, bad base64 */
	MEM_OUT(out, ob, ol);
	MEM_OUT(errout, eb, el);
	tg_follow_init(&f, out, errout, false);
	assert_int_equal(feed_follow(&f, "data: plain\ndata: text\n\n"), 0);
	assert_int_equal(feed_follow(&f,
				     "event: error\ndata: {\"error\":{\"code\":"
				     "\"not_found\",\"message\":\"no job j-9\","
				     "\"request_id\":\"r-1\"}}\n\n"),
			 2);
	assert_string_equal(f.error, "not_found: no job j-9 (request r-1)");
	assert_int_equal(feed_follow(&f,
				     "event: error\ndata: {\"code\":\"gone\","
				     "\"message\":\"expired\"}\n\n"),
			 2);
	assert_string_equal(f.error, "gone: expired");
	assert_int_equal(feed_follow(&f, "event: output\ndata: {\"data_b64\":"
					 "\"!!\"}\n\n"),
			 2);
	fclose(out);
	fclose(errout);
	assert_string_equal(ob, "plain\ntext\n");
	free(ob);
	free(eb);

	/* --json: one JSON line per event, nothing else */
	MEM_OUT(out, ob, ol);
	MEM_OUT(errout, eb, el);
	tg_follow_init(&f, out, errout, true);
	assert_int_equal(feed_follow(&f,
				     "event: output\nid: 1\ndata: {\"data\":"
				     "\"x\"}\n\nevent: output\ndata: raw "
				     "text\n\nevent: end\ndata: {\"state\":"
				     "\"failed\"}\n\n"),
			 1);
	fclose(out);
	fclose(errout);
	assert_string_equal(
	    ob,
	    "{\"event\":\"output\",\"id\":\"1\",\"data\":{\"data\":\"x\"}}\n"
	    "{\"event\":\"output\",\"id\":\"1\",\"data\":\"raw text\"}\n"
	    "{\"event\":\"end\",\"id\":\"1\",\"data\":{\"state\":\"failed\"}}"
	    "\n");
	assert_string_equal(f.state, "failed");
	free(ob);
	free(eb);
}

static void test_client_new(void **state)
{
	struct tg_client *c;
	char err[256] = "";

	(void)state;
	assert_null(tg_client_new("ftp://x", NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "bad URL 'ftp://x'"));
	assert_null(tg_client_new("http://a b", NULL, err, sizeof(err)));
	c = tg_client_new(NULL, "tok", err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(tg_client_url(c), TG_DEFAULT_URL);
	tg_client_free(c);
	c = tg_client_new("http://h:1/prefix///", NULL, err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(c->base, "http://h:1/prefix");
	tg_client_free(c);
	c = tg_client_new("unix:/run/tg.sock", NULL, err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(c->unix_path, "/run/tg.sock");
	assert_string_equal(c->base, "http://localhost");
	assert_int_equal(tg_client_use_munge(c, "/run/m.sock"), 0);
	tg_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sse_whole_and_bytewise),
	    cmocka_unit_test(test_sse_stop_reset_limits),
	    cmocka_unit_test(test_parse_submit),
	    cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_minutes_and_since),
	    cmocka_unit_test(test_build_submit),
	    cmocka_unit_test(test_build_others),
	    cmocka_unit_test(test_print_job),
	    cmocka_unit_test(test_print_tables),
	    cmocka_unit_test(test_api_error),
	    cmocka_unit_test(test_follow_events),
	    cmocka_unit_test(test_client_new),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
