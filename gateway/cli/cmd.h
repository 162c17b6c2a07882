/*
 * cmd.h: the pure half of the `tiergate` CLI: the command line into a
 * struct, a struct into an API request (method, path, JSON body), and API
 * answers into readable text.  No globals, no network, no environment
 * access except through the getenv function passed in, output only to the
 * FILE given: everything here is testable in-process (tests/unit/test_cli.c).
 */
#ifndef TIERGATE_CLI_CMD_H
#define TIERGATE_CLI_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "sse.h"

/* Exit codes (documented in tiergate(1)). */
#define TG_EXIT_OK 0
#define TG_EXIT_API 1	      /* the API answered with an error */
#define TG_EXIT_USAGE 2	      /* bad command line, unreadable file */
#define TG_EXIT_UNREACHABLE 3 /* no (usable) answer from tiergated */
/* follow: the job's final state */
#define TG_EXIT_FAILED 10
#define TG_EXIT_CANCELLED 11
#define TG_EXIT_TIMEOUT 12
#define TG_EXIT_REJECTED 13
#define TG_EXIT_UNKNOWN 14

#define TG_COMMANDS(X)                                                         \
	X(NONE, "")                                                            \
	X(SUBMIT, "submit")                                                    \
	X(STATUS, "status")                                                    \
	X(LS, "ls")                                                            \
	X(CANCEL, "cancel")                                                    \
	X(FOLLOW, "follow")                                                    \
	X(SITES, "sites")                                                      \
	X(USAGE, "usage")                                                      \
	X(CREDENTIAL, "credential")                                            \
	X(HELP, "help")                                                        \
	X(VERSION, "version")

enum tg_command {
#define TG_COMMAND_ENUM_(name, str) TG_CMD_##name,
	TG_COMMANDS(TG_COMMAND_ENUM_)
#undef TG_COMMAND_ENUM_
};
const char *tg_command_name(enum tg_command c);

typedef char *tg_getenv_fn(const char *name);

/* The parsed command line; strings are borrowed from argv / the env. */
struct tg_cmdline {
	/* global options */
	const char *url;	/* --url, TIERGATE_URL, or TG_DEFAULT_URL */
	const char *token_file; /* --token-file or TIERGATE_TOKEN_FILE */
	bool json;
	bool munge;		  /* --munge: MUNGE instead of a token */
	const char *munge_socket; /* --munge-socket (implies --munge) */
	long timeout_s;		  /* --timeout, default TG_DEFAULT_TIMEOUT */
	enum tg_command cmd;
	/* status, cancel, follow */
	const char *job_id;
	/* submit */
	const char *site, *tier, *name, *script, *idempotency_key;
	long ntasks, cpus_per_task, time_min; /* -1: not given */
	const char **env; /* "K=V" or "K" (value from the environment) */
	size_t n_env;
	/* ls, usage */
	const char *state, *user, *since;
	long limit; /* -1: not given */
	/* follow */
	const char *stream; /* --stream stdout|stderr, NULL: server default */
	/* credential SITE [TOKEN|-] [--delete] */
	const char *cred_site, *cred_token; /* token "-": from stdin */
	bool cred_delete;
};

/*
 * Parse `tiergate [GLOBAL OPTIONS] COMMAND [ARGS]`.  0, or -EINVAL with a
 * one-line message in err (a usage error).  --help/-h anywhere gives
 * cmd = TG_CMD_HELP.  tg_cmdline_free afterwards.
 */
int tg_parse_cmdline(int argc, char *const argv[], tg_getenv_fn *getenv_fn,
		     struct tg_cmdline *cl, char *err, size_t errlen);
void tg_cmdline_free(struct tg_cmdline *cl);
/* The --help text. */
const char *tg_usage_text(void);

/*
 * The API request for cl.  For submit, `script` (script_len bytes) is the
 * script's text; `--env K` takes K's value from getenv_fn.  now is for
 * `usage --since 7d`.  0 or -EINVAL with err (a usage error).  The request
 * owns its path and body: tg_request_clear afterwards.
 */
int tg_build_request(const struct tg_cmdline *cl, const char *script,
		     size_t script_len, tg_getenv_fn *getenv_fn, time_t now,
		     struct tg_request *req, char *err, size_t errlen);

/* "/v1/jobs/<id>" with the id percent-encoded; malloc'd or NULL. */
char *tg_job_path(const char *job_id, const char *suffix);

/*
 * --since: epoch seconds ("1795628285"), a date ("2026-11-25"), a date
 * and time ("2026-11-25T17:00[:00]", local time unless utc), or an age
 * ("90m", "12h", "7d", "2w").  0 or -EINVAL.
 */
int tg_parse_since(const char *s, time_t now, bool utc, int64_t *out);
/* --time: "MIN", "H:MM", "H:MM:SS" or "D-H:MM[:SS]" into minutes (rounded
 * up).  0 or -EINVAL. */
int tg_parse_minutes(const char *s, long *out);

/* ------------------------------------------------------ answers */

struct tg_fmt {
	time_t now; /* for ages */
	bool utc;   /* times in UTC (else local time) */
};

/* `status`: "key: value" lines.  0, or -EINVAL when not a job object. */
int tg_print_job(FILE *out, const json_t *job, const struct tg_fmt *f);
/* `ls`: a table of {"jobs": [...]}; "no jobs" when empty. */
int tg_print_jobs(FILE *out, const json_t *answer, const struct tg_fmt *f);
/* `sites`: a table of {"sites": [...]}. */
int tg_print_sites(FILE *out, const json_t *answer, const struct tg_fmt *f);
/* `usage`: a table of {"usage": [...]}. */
int tg_print_usage(FILE *out, const json_t *answer, const struct tg_fmt *f);
/* GET/PUT/DELETE /v1/sites/{site}/credential: one line. */
int tg_print_credential(FILE *out, const json_t *answer,
			const struct tg_fmt *f);
/* `cancel`: "j-1: cancel requested (state running)". */
int tg_print_cancel(FILE *out, const json_t *job);

/*
 * "<code>: <message> (request <id>)" from an error answer, or
 * "HTTP <status>: <start of the body>" when it is not the contract's
 * error shape.  Returns buf.
 */
const char *tg_format_api_error(const struct tg_response *resp, char *buf,
				size_t len);

/* Final states of the contract, and the exit code `follow` gives them
 * (-1 for a state that is not final). */
bool tg_state_final(const char *state);
int tg_state_exit_code(const char *state);

/* ------------------------------------------------------ follow */

/*
 * What `follow` knows across reconnects: bytes written per stream (so a
 * replayed chunk is never printed twice) and how the stream ended.
 *
 * Events understood (docs: tiergate(1) FOLLOW):
 *   output (or unnamed)  data {"stream": "stdout"|"stderr", "offset": N,
 *                        "data": "text"} or "data_b64": "..." instead of
 *                        "data"; data that is not such an object is
 *                        written to stdout as text
 *   end, done            the stream is over; data may hold {"state": S}
 *   state, job           data {"state": S, ...}: remembered
 *   eof                  one stream is complete ({"stream": ...})
 *   error                data {"error": {...}} or {"code","message"}
 *   anything else        ignored (heartbeats are comments)
 */
struct tg_follow {
	uint64_t written[2]; /* stdout, stderr */
	bool eof[2];
	char state[32]; /* last state seen, "" if none */
	bool ended;	/* an end/done event came */
	char error[512];
	bool json; /* print each event as a JSON line instead */
	FILE *out, *errout;
};
void tg_follow_init(struct tg_follow *f, FILE *out, FILE *errout, bool json);
/*
 * Handle one event: write output, remember state.  0 to go on; 1 when the
 * stream is over (end/done); 2 after an error event (f->error says it);
 * -EIO when writing failed.
 */
int tg_follow_event(struct tg_follow *f, const struct sse_event *ev);
/* The path to (re)connect to: "/v1/jobs/<id>/output[?stream=S][&offset=N]"
 * (offset only when no event id is known).  malloc'd. */
char *tg_follow_path(const struct tg_follow *f, const char *job_id,
		     const char *stream, const char *last_event_id);

#endif
