/*
 * main.c: `tiergate`, the synchronous command-line client of tiergated.
 * The pure parts (command line, requests, formatting) are in cmd.c, the
 * HTTP in client.c; this file does the I/O and picks exit codes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"
#include "sse.h"

#define TG_VERSION "0.1.0"
#define SCRIPT_MAX (4u << 20)
#define TOKEN_FILE_MAX 16384
#define FOLLOW_IDLE_S 90
#define FOLLOW_MAX_FAILURES 30
/* what the follow callback returns to stop the transfer */
#define FOLLOW_STOP_END 11
#define FOLLOW_STOP_ERROR 12
#define FOLLOW_STOP_WRITE 13

static int die(int code, const char *msg)
{
	fprintf(stderr, "tiergate: %s\n", msg);
	return code;
}

/* Read all of fd (at most max bytes) into a malloc'd NUL-terminated buf. */
static int read_all(int fd, size_t max, char **out, size_t *outlen)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap), *b;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len + 1 >= cap) {
			if (cap > max) {
				free(buf);
				return -EFBIG;
			}
			b = realloc(buf, cap * 2);
			if (!b) {
				free(buf);
				return -ENOMEM;
			}
			buf = b;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			free(buf);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			free(buf);
			return -EFBIG;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

static int read_path(const char *path, size_t max, char **out, size_t *len,
		     char *err, size_t errlen)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	int rv;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	rv = read_all(fd, max, out, len);
	if (fd)
		close(fd);
	if (rv == -EFBIG)
		snprintf(err, errlen, "%s: larger than %zu bytes",
			 strcmp(path, "-") ? path : "stdin", max);
	else if (rv)
		snprintf(err, errlen, "%s: %s",
			 strcmp(path, "-") ? path : "stdin", strerror(-rv));
	return rv;
}

/* The token from --token-file / TIERGATE_TOKEN_FILE / TIERGATE_TOKEN. */
static int get_token(const struct tg_cmdline *cl, char **token, char *err,
		     size_t errlen)
{
	const char *env;
	char *t = NULL;
	size_t n = 0;
	struct stat st;
	int rv;

	*token = NULL;
	if (cl->munge)
		return 0;
	if (cl->token_file) {
		rv = read_path(cl->token_file, TOKEN_FILE_MAX, &t, &n, err,
			       errlen);
		if (rv)
			return rv;
		if (!stat(cl->token_file, &st) && (st.st_mode & 0077))
			fprintf(stderr,
				"tiergate: warning: %s is readable by others "
				"(chmod 600 it)\n",
				cl->token_file);
	} else if ((env = getenv("TIERGATE_TOKEN")) && *env) {
		t = strdup(env);
		if (!t)
			return -ENOMEM;
		n = strlen(t);
	} else {
		return 0; /* the server will say 401 with what it wants */
	}
	while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' ||
		     t[n - 1] == '\t'))
		t[--n] = '\0';
	if (!n || strpbrk(t, " \t\r\n")) {
		snprintf(err, errlen,
			 "%s: not a token (empty or blanks inside)",
			 cl->token_file ? cl->token_file : "TIERGATE_TOKEN");
		memset(t, 0, n);
		free(t);
		return -EINVAL;
	}
	*token = t;
	return 0;
}

/* The body as received, with a final newline. */
static void print_raw(const struct tg_response *r)
{
	if (r->body_len)
		fwrite(r->body, 1, r->body_len, stdout);
	if (!r->body_len || r->body[r->body_len - 1] != '\n')
		putchar('\n');
}

/* Answer of a non-follow command: print, pick the exit code. */
static int answer(const struct tg_cmdline *cl, const struct tg_response *r)
{
	struct tg_fmt f = {.now = time(NULL)};
	char msg[1024];
	const char *id = NULL;
	int rv = 0;

	if (r->status < 200 || r->status >= 300)
		return die(TG_EXIT_API,
			   tg_format_api_error(r, msg, sizeof(msg)));
	if (cl->json) {
		print_raw(r);
		return fflush(stdout) ? TG_EXIT_API : TG_EXIT_OK;
	}
	if (!r->json) {
		snprintf(msg, sizeof(msg),
			 "unexpected answer from tiergated at %s (HTTP %ld, "
			 "not JSON)",
			 cl->url, r->status);
		return die(TG_EXIT_UNREACHABLE, msg);
	}
	switch (cl->cmd) {
	case TG_CMD_SUBMIT:
		id = json_string_value(json_object_get(r->json, "id"));
		if (!id)
			rv = -EINVAL;
		else
			printf("%s\n", id);
		break;
	case TG_CMD_STATUS:
		rv = tg_print_job(stdout, r->json, &f);
		break;
	case TG_CMD_LS:
		rv = tg_print_jobs(stdout, r->json, &f);
		break;
	case TG_CMD_CANCEL:
		rv = tg_print_cancel(stdout, r->json);
		break;
	case TG_CMD_SITES:
		rv = tg_print_sites(stdout, r->json, &f);
		break;
	case TG_CMD_USAGE:
		rv = tg_print_usage(stdout, r->json, &f);
		break;
	case TG_CMD_CREDENTIAL:
		rv = tg_print_credential(stdout, r->json, &f);
		break;
	case TG_CMD_FOLLOW:
	case TG_CMD_NONE:
	case TG_CMD_HELP:
	case TG_CMD_VERSION:
		break;
	}
	if (rv == -EINVAL) {
		snprintf(msg, sizeof(msg),
			 "unexpected answer from tiergated at %s (HTTP %ld): "
			 "not the documented shape (try --json)",
			 cl->url, r->status);
		return die(TG_EXIT_UNREACHABLE, msg);
	}
	if (rv || fflush(stdout))
		return die(TG_EXIT_API, "cannot write the output");
	return TG_EXIT_OK;
}

static int follow_cb(const struct sse_event *ev, void *arg)
{
	int rv = tg_follow_event(arg, ev);

	if (rv < 0)
		return FOLLOW_STOP_WRITE;
	if (rv == 1)
		return FOLLOW_STOP_END;
	if (rv == 2)
		return FOLLOW_STOP_ERROR;
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* GET the job: its state into buf ("" if unknown).  Exit code or -1. */
static int job_state(struct tg_client *c, const struct tg_cmdline *cl,
		     char *state, size_t len)
{
	struct tg_request req = {.method = "GET"};
	struct tg_response resp = {0};
	char err[512], msg[1024];
	const char *s;
	int rv;

	state[0] = '\0';
	req.path = tg_job_path(cl->job_id, NULL);
	if (!req.path)
		return die(TG_EXIT_API, "out of memory");
	rv = tg_call_req(c, &req, &resp, err, sizeof(err));
	tg_request_clear(&req);
	if (rv < 0)
		return -1; /* the caller retries */
	if (resp.status >= 400 && resp.status < 500) {
		rv = die(TG_EXIT_API,
			 tg_format_api_error(&resp, msg, sizeof(msg)));
		tg_response_clear(&resp);
		return rv;
	}
	s = json_string_value(json_object_get(resp.json, "state"));
	if (s)
		snprintf(state, len, "%s", s);
	tg_response_clear(&resp);
	return -1;
}

static int follow(struct tg_client *c, const struct tg_cmdline *cl)
{
	struct tg_follow f;
	struct sse_parser parser;
	struct tg_response resp = {0};
	char err[512], msg[1024], state[32];
	int failures = 0, rv, code = -1;
	long backoff = 500;
	bool told = false, connected = false;

	tg_follow_init(&f, stdout, stderr, cl->json);
	sse_init(&parser, follow_cb, &f);
	for (;;) {
		const char *last = sse_last_id(&parser);
		char *path = tg_follow_path(&f, cl->job_id, cl->stream, last);
		uint64_t before = f.written[0] + f.written[1];
		char id_before[sizeof(parser.id)];
		bool news;

		snprintf(id_before, sizeof(id_before), "%s", parser.id);

		if (!path) {
			code = die(TG_EXIT_API, "out of memory");
			break;
		}
		rv = tg_stream(c, path, last, &parser, FOLLOW_IDLE_S, &resp,
			       err, sizeof(err));
		free(path);
		news = f.written[0] + f.written[1] != before ||
		       strcmp(id_before, parser.id);
		if (news)
			failures = 0;
		if (rv >= 0)
			connected = true;
		if (rv == FOLLOW_STOP_ERROR) {
			code = die(TG_EXIT_API, f.error);
			break;
		}
		if (rv == FOLLOW_STOP_WRITE) {
			code = die(TG_EXIT_API, "cannot write the output");
			break;
		}
		if (rv == 1) { /* not a stream: an error answer */
			if (resp.status >= 500 || resp.status == 408 ||
			    resp.status == 429) {
				snprintf(err, sizeof(err), "%s",
					 tg_format_api_error(&resp, msg,
							     sizeof(msg)));
				goto retry;
			}
			code =
			    die(TG_EXIT_API,
				tg_format_api_error(&resp, msg, sizeof(msg)));
			break;
		}
		if (rv < 0)
			goto retry;
		/*
		 * The stream ended.  With an end event: done.  Closed without
		 * one: maybe a drop, maybe a server that does not send "end".
		 * Stop only when the job is final AND a connection brought
		 * nothing new (so no output is left behind); else resume.
		 */
		if (f.ended && tg_state_final(f.state)) {
			snprintf(state, sizeof(state), "%s", f.state);
		} else {
			code = job_state(c, cl, state, sizeof(state));
			if (code >= 0)
				break;
			if (!f.ended && news) {
				sse_reset(&parser);
				continue; /* resume at once from the last id */
			}
		}
		if (tg_state_final(state)) {
			code = tg_state_exit_code(state);
			if (code && !cl->json)
				fprintf(stderr, "tiergate: job %s ended: %s\n",
					cl->job_id, state);
			break;
		}
		/* not over: the server closed early; come back */
		f.ended = false;
		sleep_ms(1000);
		continue;
	retry:
		if (!connected || ++failures > FOLLOW_MAX_FAILURES) {
			code = die(TG_EXIT_UNREACHABLE, err);
			break;
		}
		if (!told) {
			fprintf(stderr, "tiergate: %s; reconnecting\n", err);
			told = true;
		}
		sleep_ms(backoff);
		backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
	}
	tg_response_clear(&resp);
	sse_free(&parser);
	return code;
}

int main(int argc, char **argv)
{
	struct tg_cmdline cl;
	struct tg_request req = {0};
	struct tg_response resp = {0};
	struct tg_client *c = NULL;
	char err[1024], *token = NULL, *script = NULL;
	size_t script_len = 0;
	int rv, code;

	if (tg_parse_cmdline(argc, argv, getenv, &cl, err, sizeof(err))) {
		fprintf(stderr, "tiergate: %s\n", err);
		return TG_EXIT_USAGE;
	}
	if (cl.cmd == TG_CMD_HELP) {
		fputs(tg_usage_text(), stdout);
		tg_cmdline_free(&cl);
		return TG_EXIT_OK;
	}
	if (cl.cmd == TG_CMD_VERSION) {
		printf("tiergate " TG_VERSION "\n");
		tg_cmdline_free(&cl);
		return TG_EXIT_OK;
	}
	code = TG_EXIT_USAGE;
	if (get_token(&cl, &token, err, sizeof(err))) {
		fprintf(stderr, "tiergate: %s\n", err);
		goto out;
	}
	c = tg_client_new(cl.url, token, err, sizeof(err));
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	if (!c) {
		fprintf(stderr, "tiergate: %s\n", err);
		goto out;
	}
	if (cl.munge && tg_client_use_munge(c, cl.munge_socket)) {
		fprintf(stderr, "tiergate: out of memory\n");
		goto out;
	}
	tg_client_set_timeout(c, cl.timeout_s);
	if (cl.cmd == TG_CMD_FOLLOW) {
		code = follow(c, &cl);
		goto out;
	}
	if (((cl.cmd == TG_CMD_SUBMIT &&
	      read_path(cl.script, SCRIPT_MAX, &script, &script_len, err,
			sizeof(err))) ||
	     (cl.cmd == TG_CMD_CREDENTIAL && cl.cred_token &&
	      !strcmp(cl.cred_token, "-") &&
	      read_path("-", TOKEN_FILE_MAX, &script, &script_len, err,
			sizeof(err))))) {
		fprintf(stderr, "tiergate: %s\n", err);
		goto out;
	}
	if (tg_build_request(&cl, script, script_len, getenv, time(NULL), &req,
			     err, sizeof(err))) {
		fprintf(stderr, "tiergate: %s\n", err);
		goto out;
	}
	rv = tg_call_req(c, &req, &resp, err, sizeof(err));
	if (rv < 0)
		code = die(rv == -EACCES || rv == -EINVAL ? TG_EXIT_USAGE
							  : TG_EXIT_UNREACHABLE,
			   err);
	else
		code = answer(&cl, &resp);
out:
	tg_response_clear(&resp);
	tg_request_clear(&req);
	if (script)
		explicit_bzero(script, script_len); /* may be a token */
	free(script);
	tg_client_free(c);
	tg_cmdline_free(&cl);
	return code;
}
