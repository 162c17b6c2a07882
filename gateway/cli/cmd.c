/*
 * cmd.c: see cmd.h.
 */
#include "cmd.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"

static const char *const command_names[] = {
#define TG_COMMAND_NAME_(name, str) str,
    TG_COMMANDS(TG_COMMAND_NAME_)
#undef TG_COMMAND_NAME_
};
#define N_COMMANDS (sizeof(command_names) / sizeof(*command_names))

const char *tg_command_name(enum tg_command c)
{
	return (unsigned)c < N_COMMANDS ? command_names[c] : "?";
}

static void cmd_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cmd_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *tg_usage_text(void)
{
	return "usage: tiergate [OPTIONS] COMMAND [ARGS]\n"
	       "\n"
	       "Commands:\n"
	       "  submit --site S --tier T [--name N] [--ntasks N]\n"
	       "         [--cpus-per-task N] [--time MIN] [--env K[=V]]...\n"
	       "         [--idempotency-key K] SCRIPT|-\n"
	       "                          submit a batch script; prints the "
	       "job id\n"
	       "  status JOBID            show a job\n"
	       "  ls [--state S] [--site S] [--user U] [--limit N]\n"
	       "                          list jobs, newest first\n"
	       "  cancel JOBID            cancel a job\n"
	       "  follow [--stream S] JOBID\n"
	       "                          print the job's output as it "
	       "comes; exit\n"
	       "                          with its final state (0 = "
	       "completed)\n"
	       "  sites                   list sites and their health\n"
	       "  usage [--user U] [--since T]\n"
	       "                          CPU usage and charges per user "
	       "and tier\n"
	       "  credential SITE [-|TOKEN] [--delete]\n"
	       "                          your Slurm token for a jwt-user "
	       "site:\n"
	       "                          show it, register it (- reads it "
	       "from\n"
	       "                          stdin: scontrol token | tiergate "
	       "credential\n"
	       "                          SITE -), or delete it\n"
	       "\n"
	       "Options:\n"
	       "  --url URL               tiergated (env TIERGATE_URL; "
	       "default\n"
	       "                          " TG_DEFAULT_URL ")\n"
	       "  --token-file FILE       bearer token file (env "
	       "TIERGATE_TOKEN_FILE;\n"
	       "                          or the token in TIERGATE_TOKEN)\n"
	       "  --munge                 authenticate with MUNGE instead\n"
	       "  --munge-socket PATH     munged socket (implies --munge)\n"
	       "  --json                  print the API's JSON as is\n"
	       "  --timeout SECONDS       per call (default 60)\n"
	       "  -h, --help              this text\n"
	       "\n"
	       "Exit: 0 ok, 1 API error, 2 usage, 3 tiergated unreachable;\n"
	       "follow: 10 failed, 11 cancelled, 12 timeout, 13 rejected, "
	       "14 unknown.\n";
}

/* ------------------------------------------------------ the command line */

#define CMD_BIT(c) (1u << (c))
#define ALL_CMDS 0xffffu

/*
 * How an option is stored.  Most only set a field of struct tg_cmdline, at
 * opt.off; the few that check their value or do more are OPT_x cases of
 * their own in set_opt.
 */
enum optkind {
	OPT_STR,  /* const char *: the value */
	OPT_FLAG, /* bool: true */
	OPT_LONG, /* long: the value, a number in min..max */
	OPT_HELP,
	OPT_VERSION,
	OPT_MUNGE_SOCKET,
	OPT_TIME,
	OPT_ENV,
	OPT_IDEM,
	OPT_STREAM,
};

struct opt {
	const char *name;
	char shrt;
	bool value;
	unsigned cmds; /* where it is allowed */
	enum optkind kind;
	size_t off;    /* OPT_STR, OPT_FLAG, OPT_LONG: the field */
	long min, max; /* OPT_LONG */
};

/* designated, so each kind names only the fields it uses */
#define STR(f) .kind = OPT_STR, .off = offsetof(struct tg_cmdline, f)
#define FLAG(f) .kind = OPT_FLAG, .off = offsetof(struct tg_cmdline, f)
#define NUM(f, lo, hi)                                                         \
	.kind = OPT_LONG, .off = offsetof(struct tg_cmdline, f), .min = (lo),  \
	.max = (hi)
#define SUBMIT CMD_BIT(TG_CMD_SUBMIT)
#define LS CMD_BIT(TG_CMD_LS)
#define USAGE CMD_BIT(TG_CMD_USAGE)

static const struct opt opts[] = {
    {"url", 0, true, ALL_CMDS, STR(url)},
    {"json", 0, false, ALL_CMDS, FLAG(json)},
    {"token-file", 0, true, ALL_CMDS, STR(token_file)},
    {"munge", 0, false, ALL_CMDS, FLAG(munge)},
    {"munge-socket", 0, true, ALL_CMDS, .kind = OPT_MUNGE_SOCKET},
    {"timeout", 0, true, ALL_CMDS, NUM(timeout_s, 0, 86400)},
    {"help", 'h', false, ALL_CMDS, .kind = OPT_HELP},
    {"version", 0, false, ALL_CMDS, .kind = OPT_VERSION},
    {"site", 0, true, SUBMIT | LS, STR(site)},
    {"tier", 0, true, SUBMIT, STR(tier)},
    {"name", 'J', true, SUBMIT, STR(name)},
    {"ntasks", 'n', true, SUBMIT, NUM(ntasks, 1, 1000000)},
    {"cpus-per-task", 'c', true, SUBMIT, NUM(cpus_per_task, 1, 4096)},
    {"time", 't', true, SUBMIT, .kind = OPT_TIME},
    {"env", 'e', true, SUBMIT, .kind = OPT_ENV},
    {"idempotency-key", 0, true, SUBMIT, .kind = OPT_IDEM},
    {"state", 0, true, LS, STR(state)},
    {"user", 'u', true, LS | USAGE, STR(user)},
    {"limit", 0, true, LS, NUM(limit, 1, 100000)},
    {"since", 0, true, USAGE, STR(since)},
    {"stream", 0, true, CMD_BIT(TG_CMD_FOLLOW), .kind = OPT_STREAM},
    {"delete", 0, false, CMD_BIT(TG_CMD_CREDENTIAL), FLAG(cred_delete)},
};

#undef STR
#undef FLAG
#undef NUM
#undef SUBMIT
#undef LS
#undef USAGE

static int parse_long(const char *opt, const char *v, long min, long max,
		      long *out, char *err, size_t errlen)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < min || n > max) {
		cmd_err(err, errlen, "--%s: '%s' is not a number in %ld..%ld",
			opt, v, min, max);
		return -EINVAL;
	}
	*out = n;
	return 0;
}

int tg_parse_minutes(const char *s, long *out)
{
	long d = 0, h = 0, m = 0, sec = 0, total;
	const char *p = s;
	char *end;
	int fields[3], nf = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	if (!strpbrk(s, ":-")) {
		errno = 0;
		total = strtol(s, &end, 10);
		if (*end || errno || total < 1 || total > 525600L * 10)
			return -EINVAL;
		*out = total;
		return 0;
	}
	if (strchr(s, '-')) {
		errno = 0;
		d = strtol(s, &end, 10);
		if (*end != '-' || errno || d < 0 || d > 3650)
			return -EINVAL;
		p = end + 1;
	}
	while (nf < 3) {
		long v;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || v < 0 || v > 100000)
			return -EINVAL;
		fields[nf++] = (int)v;
		if (!*end)
			break;
		if (*end != ':')
			return -EINVAL;
		p = end + 1;
	}
	if (*end)
		return -EINVAL;
	if (nf == 1) /* "D-H" */
		h = fields[0];
	else if (nf == 2) { /* H:MM */
		h = fields[0];
		m = fields[1];
	} else {
		h = fields[0];
		m = fields[1];
		sec = fields[2];
	}
	if ((nf >= 2 && m > 59) || sec > 59 || (d && h > 23))
		return -EINVAL;
	total = d * 1440 + h * 60 + m + (sec ? 1 : 0);
	if (total < 1)
		return -EINVAL;
	*out = total;
	return 0;
}

static int set_opt(struct tg_cmdline *cl, const struct opt *o, const char *v,
		   char *err, size_t errlen)
{
	char *field = (char *)cl + o->off;
	const char **envs;

	switch (o->kind) {
	case OPT_STR:
		*(const char **)(void *)field = v;
		return 0;
	case OPT_FLAG:
		*(bool *)(void *)field = true;
		return 0;
	case OPT_LONG:
		return parse_long(o->name, v, o->min, o->max,
				  (long *)(void *)field, err, errlen);
	case OPT_HELP:
		cl->cmd = TG_CMD_HELP;
		return 0;
	case OPT_VERSION:
		cl->cmd = TG_CMD_VERSION;
		return 0;
	case OPT_MUNGE_SOCKET:
		cl->munge = true;
		cl->munge_socket = v;
		return 0;
	case OPT_TIME:
		if (tg_parse_minutes(v, &cl->time_min)) {
			cmd_err(err, errlen,
				"--time: '%s' is not minutes (or H:MM, "
				"H:MM:SS, D-H:MM:SS)",
				v);
			return -EINVAL;
		}
		return 0;
	case OPT_ENV:
		envs = realloc(cl->env, (cl->n_env + 1) * sizeof(*envs));
		if (!envs) {
			cmd_err(err, errlen, "out of memory");
			return -ENOMEM;
		}
		cl->env = envs;
		cl->env[cl->n_env++] = v;
		return 0;
	case OPT_IDEM:
		if (!*v || strlen(v) > 128 || strpbrk(v, "\r\n")) {
			cmd_err(err, errlen,
				"--idempotency-key: 1..128 characters, one "
				"line");
			return -EINVAL;
		}
		cl->idempotency_key = v;
		return 0;
	case OPT_STREAM:
		if (strcmp(v, "stdout") && strcmp(v, "stderr")) {
			cmd_err(err, errlen, "--stream: stdout or stderr");
			return -EINVAL;
		}
		cl->stream = v;
		return 0;
	}
	return 0;
}

static const struct opt *find_long(const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < sizeof(opts) / sizeof(*opts); i++)
		if (strlen(opts[i].name) == nlen &&
		    !strncmp(opts[i].name, name, nlen))
			return &opts[i];
	return NULL;
}

static const struct opt *find_short(char c)
{
	size_t i;

	for (i = 0; i < sizeof(opts) / sizeof(*opts); i++)
		if (opts[i].shrt && opts[i].shrt == c)
			return &opts[i];
	return NULL;
}

static int positional(struct tg_cmdline *cl, const char *a, int *npos,
		      char *err, size_t errlen)
{
	size_t i;

	if (cl->cmd == TG_CMD_NONE) {
		for (i = 1; i < N_COMMANDS; i++) {
			if (!strcmp(a, command_names[i])) {
				cl->cmd = (enum tg_command)i;
				return 0;
			}
		}
		cmd_err(err, errlen, "unknown command '%s' (see --help)", a);
		return -EINVAL;
	}
	(*npos)++;
	switch (cl->cmd) {
	case TG_CMD_SUBMIT:
		if (*npos == 1) {
			cl->script = a;
			return 0;
		}
		break;
	case TG_CMD_STATUS:
	case TG_CMD_CANCEL:
	case TG_CMD_FOLLOW:
		if (*npos == 1) {
			cl->job_id = a;
			return 0;
		}
		break;
	case TG_CMD_CREDENTIAL:
		if (*npos <= 2) {
			*(*npos == 1 ? &cl->cred_site : &cl->cred_token) = a;
			return 0;
		}
		break;
	case TG_CMD_NONE:
	case TG_CMD_LS:
	case TG_CMD_SITES:
	case TG_CMD_USAGE:
	case TG_CMD_HELP:
	case TG_CMD_VERSION:
		break;
	}
	cmd_err(err, errlen, "%s: unexpected argument '%s'",
		tg_command_name(cl->cmd), a);
	return -EINVAL;
}

static bool job_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	return n >= 1 && n <= 128 &&
	       strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			  "0123456789._:-") == n;
}

static int check_cmdline(struct tg_cmdline *cl, char *err, size_t errlen)
{
	switch (cl->cmd) {
	case TG_CMD_NONE:
		cmd_err(err, errlen, "no command given (see --help)");
		return -EINVAL;
	case TG_CMD_SUBMIT:
		if (!cl->site || !*cl->site) {
			cmd_err(err, errlen, "submit: --site is required");
			return -EINVAL;
		}
		if (!cl->tier || !*cl->tier) {
			cmd_err(err, errlen, "submit: --tier is required");
			return -EINVAL;
		}
		if (!cl->script) {
			cmd_err(err, errlen,
				"submit: the batch script is required (a "
				"file, or - for stdin)");
			return -EINVAL;
		}
		return 0;
	case TG_CMD_STATUS:
	case TG_CMD_CANCEL:
	case TG_CMD_FOLLOW:
		if (!cl->job_id) {
			cmd_err(err, errlen, "%s: JOBID is required",
				tg_command_name(cl->cmd));
			return -EINVAL;
		}
		if (!job_id_ok(cl->job_id)) {
			cmd_err(err, errlen, "%s: '%s' is not a job id",
				tg_command_name(cl->cmd), cl->job_id);
			return -EINVAL;
		}
		return 0;
	case TG_CMD_CREDENTIAL:
		if (!cl->cred_site || !*cl->cred_site) {
			cmd_err(err, errlen, "credential: SITE is required");
			return -EINVAL;
		}
		if (cl->cred_delete && cl->cred_token) {
			cmd_err(err, errlen,
				"credential: --delete takes no token");
			return -EINVAL;
		}
		if (cl->cred_token && !*cl->cred_token) {
			cmd_err(err, errlen, "credential: the token is empty");
			return -EINVAL;
		}
		return 0;
	case TG_CMD_USAGE:
	case TG_CMD_LS:
	case TG_CMD_SITES:
	case TG_CMD_HELP:
	case TG_CMD_VERSION:
		return 0;
	}
	return 0;
}

int tg_parse_cmdline(int argc, char *const argv[], tg_getenv_fn *getenv_fn,
		     struct tg_cmdline *cl, char *err, size_t errlen)
{
	bool opts_done = false, help = false, version = false;
	int i, npos = 0, rv;

	memset(cl, 0, sizeof(*cl));
	cl->ntasks = cl->cpus_per_task = cl->time_min = cl->limit = -1;
	cl->timeout_s = TG_DEFAULT_TIMEOUT;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL, *name;
		const struct opt *o;
		size_t nlen;
		bool inline_val = false;

		if (opts_done || a[0] != '-' || !strcmp(a, "-")) {
			rv = positional(cl, a, &npos, err, errlen);
			if (rv)
				goto out_free;
			continue;
		}
		if (!strcmp(a, "--")) {
			opts_done = true;
			continue;
		}
		if (a[1] == '-') {
			name = a + 2;
			nlen = strcspn(name, "=");
			if (name[nlen] == '=') {
				v = name + nlen + 1;
				inline_val = true;
			}
			o = find_long(name, nlen);
		} else {
			name = a + 1;
			nlen = 1;
			if (a[2]) { /* -c4 */
				v = a + 2;
				inline_val = true;
			}
			o = find_short(a[1]);
		}
		if (!o) {
			cmd_err(err, errlen, "unknown option '%.*s'",
				(int)(nlen + (a[1] == '-' ? 2 : 1)), a);
			rv = -EINVAL;
			goto out_free;
		}
		if (o->cmds != ALL_CMDS &&
		    !(cl->cmd != TG_CMD_NONE && (o->cmds & CMD_BIT(cl->cmd)))) {
			if (cl->cmd == TG_CMD_NONE)
				cmd_err(err, errlen,
					"option --%s goes after the command",
					o->name);
			else
				cmd_err(err, errlen, "%s does not take --%s",
					tg_command_name(cl->cmd), o->name);
			rv = -EINVAL;
			goto out_free;
		}
		if (o->value && !inline_val) {
			if (i + 1 >= argc) {
				cmd_err(err, errlen, "--%s needs a value",
					o->name);
				rv = -EINVAL;
				goto out_free;
			}
			v = argv[++i];
		} else if (!o->value && inline_val) {
			cmd_err(err, errlen, "--%s takes no value", o->name);
			rv = -EINVAL;
			goto out_free;
		}
		if (o->kind == OPT_HELP) {
			help = true;
			continue;
		}
		if (o->kind == OPT_VERSION) {
			version = true;
			continue;
		}
		rv = set_opt(cl, o, v, err, errlen);
		if (rv)
			goto out_free;
	}
	if (help || version) {
		cl->cmd = help ? TG_CMD_HELP : TG_CMD_VERSION;
		return 0;
	}
	if (cl->cmd == TG_CMD_HELP || cl->cmd == TG_CMD_VERSION)
		return 0;
	if (!cl->url && getenv_fn)
		cl->url = getenv_fn("TIERGATE_URL");
	if (!cl->url || !*cl->url)
		cl->url = TG_DEFAULT_URL;
	if (!cl->token_file && getenv_fn)
		cl->token_file = getenv_fn("TIERGATE_TOKEN_FILE");
	if (cl->token_file && !*cl->token_file)
		cl->token_file = NULL;
	rv = check_cmdline(cl, err, errlen);
	if (rv)
		goto out_free;
	return 0;
out_free:
	tg_cmdline_free(cl);
	return rv;
}

void tg_cmdline_free(struct tg_cmdline *cl)
{
	free(cl->env);
	cl->env = NULL;
	cl->n_env = 0;
}

/* ------------------------------------------------------ requests */

/*
 * Percent-encode everything but unreserved characters (RFC 3986); in a
 * path segment ':' and '@' stay too (pchar).
 */
static int append_escaped_(char **buf, size_t *len, const char *s, bool segment)
{
	static const char hx[] = "0123456789ABCDEF";
	size_t n = strlen(s), i, o = *len;
	char *b = realloc(*buf, *len + 3 * n + 1);

	if (!b)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~' || (segment && (c == ':' || c == '@'))) {
			b[o++] = (char)c;
		} else {
			b[o++] = '%';
			b[o++] = hx[c >> 4];
			b[o++] = hx[c & 15];
		}
	}
	b[o] = '\0';
	*buf = b;
	*len = o;
	return 0;
}

static int append_escaped(char **buf, size_t *len, const char *s)
{
	return append_escaped_(buf, len, s, false);
}

static int append_raw(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	char *b = realloc(*buf, *len + n + 1);

	if (!b)
		return -ENOMEM;
	memcpy(b + *len, s, n + 1);
	*buf = b;
	*len += n;
	return 0;
}

char *tg_job_path(const char *job_id, const char *suffix)
{
	char *p = NULL;
	size_t n = 0;

	if (append_raw(&p, &n, "/v1/jobs/") ||
	    append_escaped_(&p, &n, job_id, true) ||
	    (suffix && append_raw(&p, &n, suffix))) {
		free(p);
		return NULL;
	}
	return p;
}

/* Append "?k=v" or "&k=v" (v escaped) when v is set. */
static int add_query(char **p, size_t *n, bool *first, const char *k,
		     const char *v)
{
	if (!v)
		return 0;
	if (append_raw(p, n, *first ? "?" : "&") || append_raw(p, n, k) ||
	    append_raw(p, n, "=") || append_escaped(p, n, v))
		return -ENOMEM;
	*first = false;
	return 0;
}

static bool env_name_ok(const char *s, size_t n)
{
	size_t i;

	if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

static int submit_body(const struct tg_cmdline *cl, const char *script,
		       size_t script_len, tg_getenv_fn *getenv_fn, char **out,
		       char *err, size_t errlen)
{
	json_t *body = json_object(), *res = NULL, *env = NULL, *s;
	const char *name = cl->name;
	size_t i;
	int rv = -ENOMEM;

	*out = NULL;
	if (!body)
		goto out_nomem;
	if (memchr(script, '\0', script_len)) {
		cmd_err(err, errlen, "the script contains a NUL byte");
		rv = -EINVAL;
		goto out;
	}
	if (!script_len) {
		cmd_err(err, errlen, "the script is empty");
		rv = -EINVAL;
		goto out;
	}
	s = json_stringn(script, script_len);
	if (!s) {
		cmd_err(err, errlen, "the script is not valid UTF-8 text");
		rv = -EINVAL;
		goto out;
	}
	if (json_object_set_new(body, "script", s))
		goto out_nomem;
	if (json_object_set_new(body, "site", json_string(cl->site)) ||
	    json_object_set_new(body, "tier", json_string(cl->tier)))
		goto out_nomem;
	if (!name && cl->script && strcmp(cl->script, "-")) {
		name = strrchr(cl->script, '/');
		name = name ? name + 1 : cl->script;
	}
	if (name && *name) {
		s = json_string(name);
		if (!s) {
			cmd_err(err, errlen, "--name is not valid UTF-8");
			rv = -EINVAL;
			goto out;
		}
		if (json_object_set_new(body, "name", s))
			goto out_nomem;
	}
	if (cl->ntasks > 0 || cl->cpus_per_task > 0 || cl->time_min > 0) {
		res = json_object();
		if (!res)
			goto out_nomem;
		if ((cl->ntasks > 0 &&
		     json_object_set_new(res, "ntasks",
					 json_integer(cl->ntasks))) ||
		    (cl->cpus_per_task > 0 &&
		     json_object_set_new(res, "cpus_per_task",
					 json_integer(cl->cpus_per_task))) ||
		    (cl->time_min > 0 &&
		     json_object_set_new(res, "time_limit_min",
					 json_integer(cl->time_min))))
			goto out_nomem;
		if (json_object_set(body, "resources", res))
			goto out_nomem;
	}
	if (cl->n_env) {
		env = json_object();
		if (!env)
			goto out_nomem;
	}
	for (i = 0; i < cl->n_env; i++) {
		const char *kv = cl->env[i], *eq = strchr(kv, '=');
		size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
		char key[256];
		const char *val;

		if (!env_name_ok(kv, klen) || klen >= sizeof(key)) {
			cmd_err(err, errlen,
				"--env '%s': want NAME=VALUE or NAME (a "
				"variable name is [A-Za-z_][A-Za-z0-9_]*)",
				kv);
			rv = -EINVAL;
			goto out;
		}
		memcpy(key, kv, klen);
		key[klen] = '\0';
		if (json_object_get(env, key)) {
			cmd_err(err, errlen, "--env %s given twice", key);
			rv = -EINVAL;
			goto out;
		}
		val = eq ? eq + 1 : (getenv_fn ? getenv_fn(key) : NULL);
		if (!val) {
			cmd_err(err, errlen,
				"--env %s: not set in this environment (use "
				"%s=VALUE)",
				key, key);
			rv = -EINVAL;
			goto out;
		}
		s = json_string(val);
		if (!s) {
			cmd_err(err, errlen, "--env %s: not valid UTF-8", key);
			rv = -EINVAL;
			goto out;
		}
		if (json_object_set_new(env, key, s))
			goto out_nomem;
	}
	if (env && json_object_set(body, "environment", env))
		goto out_nomem;
	rv = json_dump_text(body, JSON_COMPACT | JSON_SORT_KEYS, out, err,
			    errlen);
	goto out;
out_nomem:
	cmd_err(err, errlen, "out of memory");
	rv = -ENOMEM;
out:
	json_decref(res);
	json_decref(env);
	json_decref(body);
	return rv;
}

int tg_build_request(const struct tg_cmdline *cl, const char *script,
		     size_t script_len, tg_getenv_fn *getenv_fn, time_t now,
		     struct tg_request *req, char *err, size_t errlen)
{
	char *p = NULL, num[32];
	size_t n = 0;
	bool first = true;
	int64_t since;
	int rv = 0;

	memset(req, 0, sizeof(*req));
	switch (cl->cmd) {
	case TG_CMD_SUBMIT:
		req->method = "POST";
		req->path = strdup("/v1/jobs");
		req->idempotency_key = cl->idempotency_key;
		if (!req->path)
			goto out_nomem;
		rv = submit_body(cl, script ? script : "", script_len,
				 getenv_fn, &req->body, err, errlen);
		if (rv)
			goto out_clear;
		return 0;
	case TG_CMD_STATUS:
	case TG_CMD_CANCEL:
		req->method = cl->cmd == TG_CMD_STATUS ? "GET" : "DELETE";
		req->path = tg_job_path(cl->job_id, NULL);
		if (!req->path)
			goto out_nomem;
		return 0;
	case TG_CMD_FOLLOW:
		req->method = "GET";
		req->path = tg_job_path(cl->job_id, "/output");
		if (!req->path)
			goto out_nomem;
		return 0;
	case TG_CMD_LS:
		req->method = "GET";
		if (append_raw(&p, &n, "/v1/jobs") ||
		    add_query(&p, &n, &first, "state", cl->state) ||
		    add_query(&p, &n, &first, "site", cl->site) ||
		    add_query(&p, &n, &first, "user", cl->user))
			goto out_nomem_p;
		if (cl->limit > 0) {
			snprintf(num, sizeof(num), "%ld", cl->limit);
			if (add_query(&p, &n, &first, "limit", num))
				goto out_nomem_p;
		}
		req->path = p;
		return 0;
	case TG_CMD_SITES:
		req->method = "GET";
		req->path = strdup("/v1/sites");
		if (!req->path)
			goto out_nomem;
		return 0;
	case TG_CMD_USAGE:
		req->method = "GET";
		if (append_raw(&p, &n, "/v1/usage") ||
		    add_query(&p, &n, &first, "user", cl->user))
			goto out_nomem_p;
		if (cl->since) {
			if (tg_parse_since(cl->since, now, false, &since)) {
				free(p);
				cmd_err(err, errlen,
					"--since: '%s' is not a time (epoch "
					"seconds, YYYY-MM-DD[THH:MM[:SS]], or "
					"an age like 12h, 7d)",
					cl->since);
				return -EINVAL;
			}
			snprintf(num, sizeof(num), "%" PRId64, since);
			if (add_query(&p, &n, &first, "since", num))
				goto out_nomem_p;
		}
		req->path = p;
		return 0;
	case TG_CMD_CREDENTIAL:
		if (append_raw(&p, &n, "/v1/sites/") ||
		    append_escaped_(&p, &n, cl->cred_site, true) ||
		    append_raw(&p, &n, "/credential"))
			goto out_nomem_p;
		req->path = p;
		req->method = cl->cred_delete ? "DELETE" : "GET";
		if (cl->cred_token) {
			/* "-": main read stdin into `script` */
			json_t *b = json_pack("{s:s%}", "token",
					      strcmp(cl->cred_token, "-")
						  ? cl->cred_token
						  : (script ? script : ""),
					      strcmp(cl->cred_token, "-")
						  ? strlen(cl->cred_token)
						  : (script ? script_len : 0));

			req->method = "PUT";
			req->body = b ? json_dumps(b, JSON_COMPACT) : NULL;
			if (b)
				explicit_bzero(
				    (char *)json_string_value(
					json_object_get(b, "token")),
				    json_string_length(
					json_object_get(b, "token")));
			json_decref(b);
			if (!req->body) {
				cmd_err(err, errlen,
					"the token is not valid UTF-8 text");
				rv = -EINVAL;
				goto out_clear;
			}
		}
		return 0;
	case TG_CMD_NONE:
	case TG_CMD_HELP:
	case TG_CMD_VERSION:
		break;
	}
	cmd_err(err, errlen, "no request for command '%s'",
		tg_command_name(cl->cmd));
	return -EINVAL;
out_nomem_p:
	free(p);
out_nomem:
	cmd_err(err, errlen, "out of memory");
	rv = -ENOMEM;
out_clear:
	tg_request_clear(req);
	return rv;
}

int tg_parse_since(const char *s, time_t now, bool utc, int64_t *out)
{
	struct tm tm;
	char *end;
	long long v;
	const char *rest;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return -EINVAL;
	if (!*end) {
		*out = v; /* epoch seconds */
		return 0;
	}
	if (!end[1]) {
		long long mult = 0;

		switch (*end) {
		case 's':
			mult = 1;
			break;
		case 'm':
			mult = 60;
			break;
		case 'h':
			mult = 3600;
			break;
		case 'd':
			mult = 86400;
			break;
		case 'w':
			mult = 7 * 86400;
			break;
		default:
			return -EINVAL;
		}
		if (v > (long long)now / mult)
			return -EINVAL;
		*out = (int64_t)now - v * mult;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	rest = strptime(s, "%Y-%m-%d", &tm);
	if (!rest)
		return -EINVAL;
	if (*rest == 'T' || *rest == ' ') {
		const char *r2 = strptime(rest + 1, "%H:%M:%S", &tm);

		if (!r2)
			r2 = strptime(rest + 1, "%H:%M", &tm);
		if (!r2)
			return -EINVAL;
		rest = r2;
	}
	if (*rest)
		return -EINVAL;
	tm.tm_isdst = -1;
	*out = (int64_t)(utc ? timegm(&tm) : mktime(&tm));
	return *out < 0 ? -EINVAL : 0;
}

/* ------------------------------------------------------ answers */

bool tg_state_final(const char *state)
{
	return tg_state_exit_code(state) >= 0;
}

int tg_state_exit_code(const char *state)
{
	static const struct {
		const char *state;
		int code;
	} t[] = {
	    {"completed", TG_EXIT_OK},	      {"failed", TG_EXIT_FAILED},
	    {"cancelled", TG_EXIT_CANCELLED}, {"timeout", TG_EXIT_TIMEOUT},
	    {"rejected", TG_EXIT_REJECTED},   {"unknown", TG_EXIT_UNKNOWN},
	};
	size_t i;

	if (!state)
		return -1;
	for (i = 0; i < sizeof(t) / sizeof(*t); i++)
		if (!strcmp(state, t[i].state))
			return t[i].code;
	return -1;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
	const char *s = NULL;

	return json_get_str(o, key, &s) == 0 ? s : dflt;
}

/* "2026-11-25 17:38:05" */
static const char *fmt_time(const json_t *o, const char *key,
			    const struct tg_fmt *f, char *buf, size_t len)
{
	int64_t t;
	time_t tt;
	struct tm tm;

	if (json_get_int(o, key, &t) || t < 0)
		return "-";
	tt = (time_t)t;
	if (!(f->utc ? gmtime_r(&tt, &tm) : localtime_r(&tt, &tm)))
		return "-";
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

/* "45s", "12m", "3h", "5d" */
static const char *fmt_age(const json_t *o, const char *key,
			   const struct tg_fmt *f, char *buf, size_t len)
{
	int64_t t, d;

	if (json_get_int(o, key, &t) || t < 0)
		return "-";
	d = (int64_t)f->now - t;
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(buf, len, "%" PRId64 "s", d);
	else if (d < 7200)
		snprintf(buf, len, "%" PRId64 "m", d / 60);
	else if (d < 172800)
		snprintf(buf, len, "%" PRId64 "h", d / 3600);
	else
		snprintf(buf, len, "%" PRId64 "d", d / 86400);
	return buf;
}

/* A number or "-": integers as is, reals with up to 2 decimals. */
static const char *fmt_num(const json_t *v, char *buf, size_t len)
{
	if (json_is_integer(v))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, len, "%.2f", json_real_value(v));
	else
		return "-";
	return buf;
}

/* "exit 3", "signal 9", "-" from slurm.exit_code (a raw wait status) */
static const char *fmt_exit(const json_t *slurm, char *buf, size_t len)
{
	int64_t ws, sig;

	if (!json_get_int(slurm, "signal", &sig) && sig > 0) {
		snprintf(buf, len, "signal %" PRId64, sig);
		return buf;
	}
	if (json_get_int(slurm, "exit_code", &ws) || ws < 0)
		return "-";
	if (ws & 0x7f)
		snprintf(buf, len, "signal %" PRId64, ws & 0x7f);
	else
		snprintf(buf, len, "exit %" PRId64, (ws >> 8) & 0xff);
	return buf;
}

int tg_print_job(FILE *out, const json_t *job, const struct tg_fmt *f)
{
	const json_t *slurm, *usage, *err_v;
	char b1[64], b2[64], b3[64], b4[64];
	int64_t sid;
	bool cancel = false;

	if (!json_is_object(job))
		return -EINVAL;
	slurm = json_object_get(job, "slurm");
	usage = json_object_get(job, "usage");
	fprintf(out, "id:         %s\n", str_or(job, "id", "-"));
	fprintf(out, "name:       %s\n", str_or(job, "name", "-"));
	fprintf(out, "site:       %s\n", str_or(job, "site", "-"));
	fprintf(out, "user:       %s\n", str_or(job, "user", "-"));
	fprintf(out, "tier:       %s\n", str_or(job, "tier", "-"));
	fprintf(out, "state:      %s\n", str_or(job, "state", "-"));
	if (json_is_object(slurm) && !json_get_int(slurm, "job_id", &sid)) {
		fprintf(out, "slurm:      %" PRId64 " %s", sid,
			str_or(slurm, "state", "-"));
		const char *reason = str_or(slurm, "reason", NULL);

		if (reason && *reason && strcmp(reason, "None"))
			fprintf(out, " (reason %s)", reason);
		fprintf(out, "\n");
		fprintf(out, "exit:       %s\n",
			fmt_exit(slurm, b1, sizeof(b1)));
	} else {
		fprintf(out, "slurm:      -\n");
	}
	fprintf(out, "created:    %s\n",
		fmt_time(job, "created_at", f, b1, sizeof(b1)));
	fprintf(out, "updated:    %s\n",
		fmt_time(job, "updated_at", f, b2, sizeof(b2)));
	json_get_bool(job, "cancel_requested", &cancel);
	fprintf(out, "cancel:     %s\n", cancel ? "requested" : "-");
	fprintf(out, "ended by:   %s\n", str_or(job, "ended_by", "-"));
	err_v = json_object_get(job, "error");
	if (json_is_string(err_v))
		fprintf(out, "error:      %s\n", json_string_value(err_v));
	else if (json_is_object(err_v))
		fprintf(out, "error:      %s\n",
			str_or(err_v, "message", "(see --json)"));
	else
		fprintf(out, "error:      -\n");
	if (json_is_object(json_object_get(job, "waiting")))
		fprintf(
		    out, "waiting:    %s (the site says: %s)\n",
		    str_or(json_object_get(job, "waiting"), "code", "?"),
		    str_or(json_object_get(job, "waiting"), "message", "?"));
	if (json_is_object(usage))
		fprintf(
		    out, "usage:      %s cpu-seconds at rate %s = charge %s\n",
		    fmt_num(json_object_get(usage, "cpu_seconds"), b3,
			    sizeof(b3)),
		    fmt_num(json_object_get(usage, "rate"), b4, sizeof(b4)),
		    fmt_num(json_object_get(usage, "charge"), b1, sizeof(b1)));
	fprintf(out, "request:    %s\n", str_or(job, "request_id", "-"));
	return ferror(out) ? -EIO : 0;
}

/* ------------------------------------------------------ tables */

#define TABLE_MAX_COLS 8

struct table {
	size_t ncols, nrows;
	char **cells; /* nrows * ncols, row 0 = header */
	size_t width[TABLE_MAX_COLS];
};

static int table_add(struct table *t, const char *const *row)
{
	char **c = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*c));
	size_t i;

	if (!c)
		return -ENOMEM;
	t->cells = c;
	for (i = 0; i < t->ncols; i++) {
		const char *v = row[i] && *row[i] ? row[i] : "-";
		char *d = strdup(v), *p;
		size_t w;

		if (!d) {
			size_t j;

			for (j = 0; j < i; j++)
				free(c[t->nrows * t->ncols + j]);
			return -ENOMEM;
		}
		/* one line per cell: control characters become '?' */
		for (p = d; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		c[t->nrows * t->ncols + i] = d;
		w = strlen(d);
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
	return 0;
}

static void table_print_free(struct table *t, FILE *out)
{
	size_t r, i;

	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			const char *v = t->cells[r * t->ncols + i];

			if (i + 1 == t->ncols)
				fprintf(out, "%s\n", v);
			else
				fprintf(out, "%-*s  ", (int)t->width[i], v);
		}
	}
	for (r = 0; r < t->nrows * t->ncols; r++)
		free(t->cells[r]);
	free(t->cells);
	t->cells = NULL;
}

static const json_t *answer_array(const json_t *answer, const char *key)
{
	const json_t *a = json_object_get(answer, key);

	return json_is_array(a) ? a : NULL;
}

int tg_print_jobs(FILE *out, const json_t *answer, const struct tg_fmt *f)
{
	static const char *const hdr[] = {"ID",	   "SITE",  "USER", "TIER",
					  "STATE", "SLURM", "AGE",  "NAME"};
	struct table t = {.ncols = 8};
	const json_t *jobs = answer_array(answer, "jobs"), *j;
	size_t i;
	int rv;

	if (!jobs)
		return -EINVAL;
	if (!json_array_size(jobs)) {
		fprintf(out, "no jobs\n");
		return ferror(out) ? -EIO : 0;
	}
	rv = table_add(&t, hdr);
	json_array_foreach(jobs, i, j)
	{
		const json_t *slurm = json_object_get(j, "slurm");
		char sid[32] = "", age[32];
		int64_t id;
		const char *row[8];

		if (json_is_object(slurm) &&
		    !json_get_int(slurm, "job_id", &id))
			snprintf(sid, sizeof(sid), "%" PRId64, id);
		row[0] = str_or(j, "id", "-");
		row[1] = str_or(j, "site", "-");
		row[2] = str_or(j, "user", "-");
		row[3] = str_or(j, "tier", "-");
		row[4] = str_or(j, "state", "-");
		row[5] = sid;
		row[6] = fmt_age(j, "created_at", f, age, sizeof(age));
		row[7] = str_or(j, "name", "-");
		if (!rv)
			rv = table_add(&t, row);
	}
	table_print_free(&t, out);
	if (rv)
		return rv;
	return ferror(out) ? -EIO : 0;
}

/* "basic,premium" from an array of strings */
static void join_strings(const json_t *a, char *buf, size_t len)
{
	const json_t *v;
	size_t i, off = 0;

	buf[0] = '\0';
	if (!json_is_array(a))
		return;
	json_array_foreach(a, i, v)
	{
		int n;

		if (!json_is_string(v))
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off ? "," : "",
			     json_string_value(v));
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}

int tg_print_sites(FILE *out, const json_t *answer, const struct tg_fmt *f)
{
	static const char *const hdr[] = {"NAME",      "AUTH",	"STATE",
					  "BREAKER",   "TIERS", "LAST_OK",
					  "LAST_ERROR"};
	struct table t = {.ncols = 7};
	const json_t *sites = answer_array(answer, "sites"), *s;
	size_t i;
	int rv;

	if (!sites)
		return -EINVAL;
	if (!json_array_size(sites)) {
		fprintf(out, "no sites\n");
		return ferror(out) ? -EIO : 0;
	}
	rv = table_add(&t, hdr);
	json_array_foreach(sites, i, s)
	{
		char tiers[256], ok[64], auth[96], exp[64];
		const json_t *le = json_object_get(s, "last_error");
		const char *row[7];

		join_strings(json_object_get(s, "tiers"), tiers, sizeof(tiers));
		/* jwt-user: and until when your own token is good */
		if (json_object_get(s, "credential_expires_at"))
			snprintf(auth, sizeof(auth), "%s(yours:%s)",
				 str_or(s, "auth", "-"),
				 json_is_integer(json_object_get(
				     s, "credential_expires_at"))
				     ? fmt_time(s, "credential_expires_at", f,
						exp, sizeof(exp))
				     : "none");
		else
			snprintf(auth, sizeof(auth), "%s",
				 str_or(s, "auth", "-"));
		row[0] = str_or(s, "name", "-");
		row[1] = auth;
		row[2] = str_or(s, "state", "-");
		row[3] = str_or(s, "breaker", "-");
		row[4] = tiers;
		row[5] = fmt_time(s, "last_ok", f, ok, sizeof(ok));
		row[6] = json_is_string(le)   ? json_string_value(le)
			 : json_is_object(le) ? str_or(le, "message", "-")
					      : "-";
		if (!rv)
			rv = table_add(&t, row);
	}
	table_print_free(&t, out);
	if (rv)
		return rv;
	return ferror(out) ? -EIO : 0;
}

int tg_print_usage(FILE *out, const json_t *answer, const struct tg_fmt *f)
{
	static const char *const hdr[] = {"USER", "TIER", "CPU_SECONDS",
					  "CHARGE"};
	struct table t = {.ncols = 4};
	const json_t *usage = answer_array(answer, "usage"), *u;
	size_t i;
	int rv;

	(void)f;
	if (!usage)
		return -EINVAL;
	if (!json_array_size(usage)) {
		fprintf(out, "no usage\n");
		return ferror(out) ? -EIO : 0;
	}
	rv = table_add(&t, hdr);
	json_array_foreach(usage, i, u)
	{
		char cpu[64], charge[64];
		const char *row[4];

		row[0] = str_or(u, "user", "-");
		row[1] = str_or(u, "tier", "-");
		row[2] = fmt_num(json_object_get(u, "cpu_seconds"), cpu,
				 sizeof(cpu));
		row[3] = fmt_num(json_object_get(u, "charge"), charge,
				 sizeof(charge));
		if (!rv)
			rv = table_add(&t, row);
	}
	table_print_free(&t, out);
	if (rv)
		return rv;
	return ferror(out) ? -EIO : 0;
}

int tg_print_credential(FILE *out, const json_t *a, const struct tg_fmt *f)
{
	char exp[64], reg[64];

	if (!json_is_object(a) || !json_is_string(json_object_get(a, "site")))
		return -EINVAL;
	if (json_is_true(json_object_get(a, "removed"))) {
		fprintf(out, "site %s: your token is removed\n",
			str_or(a, "site", "-"));
		return ferror(out) ? -EIO : 0;
	}
	fprintf(out,
		"site %s: token of %s (site user %s) valid until %s, "
		"registered %s\n",
		str_or(a, "site", "-"), str_or(a, "user", "-"),
		str_or(a, "site_user", "-"),
		fmt_time(a, "expires_at", f, exp, sizeof(exp)),
		fmt_time(a, "registered_at", f, reg, sizeof(reg)));
	return ferror(out) ? -EIO : 0;
}

int tg_print_cancel(FILE *out, const json_t *job)
{
	bool req = false;

	if (!json_is_object(job))
		return -EINVAL;
	json_get_bool(job, "cancel_requested", &req);
	fprintf(out, "%s: %s (state %s)\n", str_or(job, "id", "-"),
		req ? "cancel requested" : "not cancelled",
		str_or(job, "state", "-"));
	return ferror(out) ? -EIO : 0;
}

const char *tg_format_api_error(const struct tg_response *resp, char *buf,
				size_t len)
{
	const json_t *e = json_object_get(resp->json, "error");
	const char *code = NULL, *msg = NULL, *rid = NULL;
	char excerpt[201];
	size_t i, n;

	if (json_is_object(e)) {
		code = str_or(e, "code", NULL);
		msg = str_or(e, "message", NULL);
		rid = str_or(e, "request_id", NULL);
	}
	if (!rid && resp->request_id[0])
		rid = resp->request_id;
	if (code || msg) {
		snprintf(buf, len, "%s: %s%s%s%s", code ? code : "error",
			 msg ? msg : "(no message)", rid ? " (request " : "",
			 rid ? rid : "", rid ? ")" : "");
		return buf;
	}
	/* not the contract's shape: the first line of the body */
	n = 0;
	for (i = 0; resp->body && i < resp->body_len && n < 200; i++) {
		unsigned char c = (unsigned char)resp->body[i];

		if (c == '\n' || c == '\r') {
			if (n)
				break;
			continue;
		}
		excerpt[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	excerpt[n] = '\0';
	snprintf(buf, len, "HTTP %ld%s%s%s%s%s", resp->status, n ? ": " : "",
		 excerpt, rid ? " (request " : "", rid ? rid : "",
		 rid ? ")" : "");
	return buf;
}

/* ------------------------------------------------------ follow */

void tg_follow_init(struct tg_follow *f, FILE *out, FILE *errout, bool json)
{
	memset(f, 0, sizeof(*f));
	f->out = out;
	f->errout = errout;
	f->json = json;
}

/* Base64 (standard or url alphabet, padding optional) into a new buffer. */
static int b64_decode(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s), i, o = 0;
	unsigned acc = 0;
	int bits = 0;
	unsigned char *b = malloc(n * 3 / 4 + 3);

	if (!b)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		char c = s[i];
		int v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+' || c == '-')
			v = 62;
		else if (c == '/' || c == '_')
			v = 63;
		else if (c == '=' || c == '\n' || c == '\r')
			continue;
		else {
			free(b);
			return -EINVAL;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			b[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*out = b;
	*outlen = o;
	return 0;
}

static int stream_index(const char *s)
{
	return s && !strcmp(s, "stderr") ? 1 : 0;
}

/* Write bytes of stream si that start at offset off (or unknown: -1),
 * skipping what was already written. */
static int write_chunk(struct tg_follow *f, int si, int64_t off,
		       const void *data, size_t len)
{
	FILE *o = si ? f->errout : f->out;
	const unsigned char *p = data;

	if (off >= 0) {
		uint64_t end = (uint64_t)off + len;

		if (end <= f->written[si])
			return 0; /* all seen before (a replay) */
		if ((uint64_t)off < f->written[si]) {
			size_t skip = (size_t)(f->written[si] - (uint64_t)off);

			p += skip;
			len -= skip;
		}
		f->written[si] = end;
	} else {
		f->written[si] += len;
	}
	if (len && fwrite(p, 1, len, o) != len)
		return -EIO;
	fflush(o);
	return 0;
}

static void note_state(struct tg_follow *f, const json_t *d)
{
	const char *s = NULL;

	if (!json_get_str(d, "state", &s))
		snprintf(f->state, sizeof(f->state), "%s", s);
}

int tg_follow_event(struct tg_follow *f, const struct sse_event *ev)
{
	json_t *d = NULL;
	const char *t = ev->type, *text = NULL, *b64 = NULL, *sname = NULL;
	int64_t off = -1;
	int rv = 0;

	if (ev->data_len &&
	    json_parse_text(ev->data, ev->data_len, 0, &d, NULL, 0))
		d = NULL;
	if (f->json) {
		json_t *line;

		if (d)
			line = json_pack("{s:s, s:s, s:O}", "event", t, "id",
					 ev->id, "data", d);
		else
			line =
			    json_pack("{s:s, s:s, s:s%}", "event", t, "id",
				      ev->id, "data", ev->data, ev->data_len);
		if (line) {
			char *s = json_dumps(line, JSON_COMPACT);

			if (s) {
				fprintf(f->out, "%s\n", s);
				fflush(f->out);
				free(s);
			}
			json_decref(line);
		}
	}
	if (!strcmp(t, "output") || !strcmp(t, "message")) {
		if (f->json)
			goto out;
		if (json_is_object(d) && (!json_get_str(d, "data", &text) ||
					  !json_get_str(d, "data_b64", &b64))) {
			json_get_str(d, "stream", &sname);
			if (json_get_int(d, "offset", &off))
				off = -1;
			if (b64) {
				unsigned char *bytes;
				size_t n;

				if (b64_decode(b64, &bytes, &n)) {
					snprintf(f->error, sizeof(f->error),
						 "output event with bad "
						 "base64 data");
					rv = 2;
					goto out;
				}
				rv = write_chunk(f, stream_index(sname), off,
						 bytes, n);
				free(bytes);
			} else {
				rv = write_chunk(f, stream_index(sname), off,
						 text, strlen(text));
			}
		} else {
			/* plain text data: one event, one line of output */
			rv = write_chunk(f, 0, -1, ev->data, ev->data_len);
			if (!rv)
				rv = write_chunk(f, 0, -1, "\n", 1);
		}
		goto out;
	}
	if (!strcmp(t, "end") || !strcmp(t, "done")) {
		if (json_is_object(d))
			note_state(f, d);
		f->ended = true;
		rv = 1;
		goto out;
	}
	if (!strcmp(t, "state") || !strcmp(t, "job")) {
		if (json_is_object(d))
			note_state(f, d);
		goto out;
	}
	if (!strcmp(t, "eof")) {
		if (json_is_object(d))
			json_get_str(d, "stream", &sname);
		f->eof[stream_index(sname)] = true;
		goto out;
	}
	if (!strcmp(t, "error")) {
		struct tg_response r = {0};

		r.json = d;
		r.body = (char *)ev->data;
		r.body_len = ev->data_len;
		if (json_is_object(d) && !json_object_get(d, "error") &&
		    json_object_get(d, "code")) {
			snprintf(f->error, sizeof(f->error), "%s: %s",
				 str_or(d, "code", "error"),
				 str_or(d, "message", "(no message)"));
		} else {
			tg_format_api_error(&r, f->error, sizeof(f->error));
		}
		rv = 2;
		goto out;
	}
out:
	json_decref(d);
	return rv;
}

char *tg_follow_path(const struct tg_follow *f, const char *job_id,
		     const char *stream, const char *last_event_id)
{
	char *p = tg_job_path(job_id, "/output"), num[32];
	size_t n = p ? strlen(p) : 0;
	bool first = true;
	int si = stream_index(stream);

	if (!p)
		return NULL;
	if (add_query(&p, &n, &first, "stream", stream))
		goto out_free;
	if ((!last_event_id || !*last_event_id) && f->written[si]) {
		snprintf(num, sizeof(num), "%" PRIu64, f->written[si]);
		if (add_query(&p, &n, &first, "offset", num))
			goto out_free;
	}
	return p;
out_free:
	free(p);
	return NULL;
}
