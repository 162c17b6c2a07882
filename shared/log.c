/*
 * log.c: see log.h.  Lines are formatted into a stack buffer, redacted,
 * then handed to the sink; nothing here allocates on the logging path.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

int log_debug_on;

static const char *log_prog = "tiergate";
static char log_prefix[128];
static log_sink_fn *log_sink;
static void *log_sink_arg;

/*
 * The debug regex.  Call sites cache their match against a generation
 * number, so regexec runs once per site per regex change, not per line.
 */
static pthread_mutex_t dbg_lock = PTHREAD_MUTEX_INITIALIZER;
static regex_t dbg_re;
static bool dbg_re_set;
static unsigned dbg_generation = 1;

static const char *const level_names[] = {
    [LOG_LVL_ERR] = "error",
    [LOG_LVL_WARN] = "warning",
    [LOG_LVL_INFO] = "info",
    [LOG_LVL_DBG] = "debug",
};

void log_init(const char *prog)
{
	if (prog)
		log_prog = prog;
}

void log_set_sink(log_sink_fn *sink, void *arg)
{
	log_sink = sink;
	log_sink_arg = arg;
}

void log_set_prefix(const char *prefix)
{
	snprintf(log_prefix, sizeof(log_prefix), "%s", prefix ? prefix : "");
}

int log_set_debug(const char *re)
{
	int rv = 0;

	pthread_mutex_lock(&dbg_lock);
	if (dbg_re_set) {
		regfree(&dbg_re);
		dbg_re_set = false;
	}
	__atomic_add_fetch(&dbg_generation, 1, __ATOMIC_ACQ_REL);
	if (re && *re) {
		if (regcomp(&dbg_re, re, REG_EXTENDED | REG_NOSUB) == 0)
			dbg_re_set = true;
		else
			rv = -EINVAL;
	}
	__atomic_store_n(&log_debug_on, dbg_re_set, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&dbg_lock);
	if (rv)
		log_err("debug regex '%s' does not compile; debug stays off",
			re);
	return rv;
}

int log_debug_from_env(void)
{
	return log_set_debug(getenv("TIERGATE_DEBUG"));
}

int log_dbg_site_enabled(struct log_dbg_site *site)
{
	char where[512];
	const char *base;
	int enabled;

	if (__atomic_load_n(&site->generation, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&dbg_generation, __ATOMIC_ACQUIRE))
		return site->enabled;

	base = strrchr(site->file, '/');
	base = base ? base + 1 : site->file;
	snprintf(where, sizeof(where), "%s:%d:%s", base, site->line,
		 site->func);
	pthread_mutex_lock(&dbg_lock);
	enabled = dbg_re_set && regexec(&dbg_re, where, 0, NULL, 0) == 0;
	site->enabled = enabled;
	__atomic_store_n(&site->generation, dbg_generation, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&dbg_lock);
	return enabled;
}

/* ---- redaction ---------------------------------------------------- */

static bool is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '=';
}

static bool is_word(char c)
{
	return is_b64url(c) || c == '.';
}

/* Length of a JWT (three base64url segments starting "eyJ") at s, or 0. */
static size_t jwt_len_at(const char *s)
{
	size_t n = 0;
	int dots = 0;

	if (strncmp(s, "eyJ", 3) != 0)
		return 0;
	while (is_b64url(s[n]) || (s[n] == '.' && dots < 2)) {
		if (s[n] == '.')
			dots++;
		n++;
	}
	return dots == 2 ? n : 0;
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* s starts with word (lower case), ignoring ASCII case. */
static bool starts_ci(const char *s, const char *word)
{
	for (; *word; s++, word++)
		if (ascii_lower(*s) != *word)
			return false;
	return true;
}

/* Key names whose values are secrets in "key=value" / "key: value": any
 * key with one of these words in its first 63 characters, in any case. */
static bool key_is_secret(const char *key, size_t len)
{
	static const char *const secret_words[] = {
	    "token",	     "secret", "password", "passwd",  "credential",
	    "authorization", "cookie", "jwt",	   "private",
	};
	size_t i, w, n;

	if (len > 63)
		len = 63;
	/* one pass over the key, comparing only where a word can start:
	 * this runs at every '=' and ':' of every log line */
	for (i = 0; i + 3 <= len; i++) {
		switch (ascii_lower(key[i])) {
		case 't':
		case 's':
		case 'p':
		case 'c':
		case 'a':
		case 'j':
			break;
		default:
			continue;
		}
		for (w = 0; w < sizeof(secret_words) / sizeof(*secret_words);
		     w++) {
			n = strlen(secret_words[w]);
			if (n <= len - i && starts_ci(key + i, secret_words[w]))
				return true;
		}
	}
	return false;
}

static size_t put(char *out, size_t o, size_t outlen, const char *s, size_t n)
{
	while (n-- && o + 1 < outlen)
		out[o++] = *s++;
	return o;
}

size_t log_redact(const char *in, char *out, size_t outlen)
{
	static const char red[] = "[REDACTED]";
	size_t i = 0, o = 0, n;

	if (!outlen)
		return 0;
	while (in[i] && o + 1 < outlen) {
		/* only these characters can start what is redacted */
		switch (in[i]) {
		case 'e':
		case 'b':
		case 'B':
		case 'M':
		case '=':
		case ':':
			break;
		default:
			out[o++] = in[i++];
			continue;
		}
		/* a bare JWT anywhere */
		if ((n = jwt_len_at(in + i))) {
			o = put(out, o, outlen, red, sizeof(red) - 1);
			i += n;
			continue;
		}
		/* "Bearer X", "MUNGE:X" credentials */
		if (starts_ci(in + i, "bearer ")) {
			o = put(out, o, outlen, in + i, 7);
			i += 7;
			if (in[i] && in[i] != ' ') {
				o = put(out, o, outlen, red, sizeof(red) - 1);
				while (in[i] && in[i] != ' ' && in[i] != '"' &&
				       in[i] != ',')
					i++;
			}
			continue;
		}
		if (!strncmp(in + i, "MUNGE:", 6)) {
			o = put(out, o, outlen, red, sizeof(red) - 1);
			while (in[i] && (is_word(in[i]) || in[i] == ':' ||
					 in[i] == '+' || in[i] == '/'))
				i++;
			continue;
		}
		/* key=value or "key": "value" with a secret-sounding key */
		if ((in[i] == '=' || in[i] == ':') && i > 0) {
			size_t k = i, vstart = i + 1;
			bool quoted_key = false;

			if (k > 0 && in[k - 1] == '"') {
				quoted_key = true;
				k--;
			}
			while (k > 0 &&
			       (is_b64url(in[k - 1]) || in[k - 1] == '-'))
				k--;
			if (key_is_secret(in + k, i - k - quoted_key)) {
				o = put(out, o, outlen, in + i, 1);
				while (in[vstart] == ' ')
					o = put(out, o, outlen, in + vstart++,
						1);
				/* "Authorization: Bearer X": keep the scheme */
				if (starts_ci(in + vstart, "bearer ") ||
				    starts_ci(in + vstart, "basic ")) {
					n = in[vstart + 1] == 'e' ||
						    in[vstart + 1] == 'E'
						? 7
						: 6;
					o = put(out, o, outlen, in + vstart, n);
					vstart += n;
				}
				if (in[vstart] == '"') {
					o = put(out, o, outlen, "\"", 1);
					vstart++;
					while (in[vstart] && in[vstart] != '"')
						vstart++;
				} else {
					while (in[vstart] &&
					       in[vstart] != ' ' &&
					       in[vstart] != ',' &&
					       in[vstart] != '&' &&
					       in[vstart] != '}')
						vstart++;
				}
				if (vstart > i + 1)
					o = put(out, o, outlen, red,
						sizeof(red) - 1);
				i = vstart;
				continue;
			}
		}
		out[o++] = in[i++];
	}
	out[o] = '\0';
	return o;
}

/* ---- emitting ----------------------------------------------------- */

/* getpid(2) is a system call on glibc >= 2.25: once per process. */
static pid_t log_pid; /* atomic: any thread may fill it */

static void log_pid_reset(void)
{
	__atomic_store_n(&log_pid, 0, __ATOMIC_RELAXED);
}

static void log_pid_install(void)
{
	pthread_atfork(NULL, NULL, log_pid_reset);
}

static pid_t cached_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pid_t pid = __atomic_load_n(&log_pid, __ATOMIC_RELAXED);

	if (!pid) {
		pthread_once(&once, log_pid_install);
		pid = getpid();
		__atomic_store_n(&log_pid, pid, __ATOMIC_RELAXED);
	}
	return pid;
}

/* log_buffer_thread: this thread's pending lines */
#define LOG_BUF_SIZE (16 * 1024)
static __thread char *tbuf;
static __thread size_t tbuf_len;

static void write_all(const char *p, size_t n)
{
	size_t off = 0;

	/* one write(2) per piece so concurrent writers do not interleave
	   (dprintf would also fstat and lseek the fd each time) */
	while (off < n) {
		ssize_t w = write(STDERR_FILENO, p + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* cut (a full non-blocking pipe): end the line, so
			   the next one does not glue onto it */
			if (off) {
				ssize_t nl = write(STDERR_FILENO, "\n", 1);

				(void)nl;
			}
			return;
		}
		off += (size_t)w;
	}
}

void log_buffer_thread(bool on)
{
	if (on && !tbuf) {
		tbuf = malloc(LOG_BUF_SIZE);
		tbuf_len = 0;
	} else if (!on && tbuf) {
		log_flush();
		free(tbuf);
		tbuf = NULL;
	}
}

void log_flush(void)
{
	if (tbuf && tbuf_len) {
		write_all(tbuf, tbuf_len);
		tbuf_len = 0;
	}
}

/* Append n bytes of s at out[o] (cap bytes in all); the new length. */
static size_t append(char *out, size_t o, size_t cap, const char *s, size_t n)
{
	if (n > cap - o)
		n = cap - o;
	memcpy(out + o, s, n);
	return o + n;
}

/*
 * "<date>.<ms>Z <prog>[<pid>] <level>: <line>\n".  Assembled with memcpy,
 * not printf: on the gateway's loop this runs for every request's access
 * line.
 */
static void default_sink(enum log_level lvl, const char *line, void *arg)
{
	/* the date changes once a second, "prog[pid]" at a fork: made once
	 * per thread and second */
	static __thread time_t when_sec = -1;
	static __thread pid_t who_pid;
	static __thread const char *who_prog;
	static __thread char when[32], who[288]; /* a longer name is cut */
	static __thread size_t when_len, who_len;
	char out[LOG_LINE_MAX + 128];
	struct timespec ts;
	size_t n = 0, cap = sizeof(out) - 1; /* room for the newline */
	pid_t pid = cached_pid();
	long ms;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != when_sec || pid != who_pid || log_prog != who_prog) {
		struct tm tm;
		int w;

		gmtime_r(&ts.tv_sec, &tm);
		when_len =
		    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		w = snprintf(who, sizeof(who), "Z %s[%d] ", log_prog, (int)pid);
		who_len = w < 0			     ? 0
			  : (size_t)w >= sizeof(who) ? sizeof(who) - 1
						     : (size_t)w;
		when_sec = ts.tv_sec;
		who_pid = pid;
		who_prog = log_prog;
	}
	ms = ts.tv_nsec / 1000000;
	n = append(out, n, cap, when, when_len);
	out[n++] = '.';
	out[n++] = (char)('0' + ms / 100);
	out[n++] = (char)('0' + ms / 10 % 10);
	out[n++] = (char)('0' + ms % 10);
	n = append(out, n, cap, who, who_len);
	n = append(out, n, cap, level_names[lvl], strlen(level_names[lvl]));
	n = append(out, n, cap, ": ", 2);
	n = append(out, n, cap, line, strlen(line)); /* cut: keep the newline */
	out[n++] = '\n';
	/* a line (out) always fits in an empty buffer */
	_Static_assert(sizeof(out) <= LOG_BUF_SIZE, "a line fits the buffer");
	if (tbuf && lvl >= LOG_LVL_INFO) {
		if (tbuf_len + n > LOG_BUF_SIZE)
			log_flush();
		memcpy(tbuf + tbuf_len, out, n);
		tbuf_len += n;
		return;
	}
	log_flush(); /* what came before goes first */
	write_all(out, n);
}

/*
 * Control characters as \xNN, so that what a client sent (a URL-decoded
 * path with %0A in it) cannot start a line of its own or cut one short.
 */
static void escape_controls(char *buf, size_t size)
{
	char tmp[LOG_LINE_MAX];
	size_t i, o = 0, n = strlen(buf);

	for (i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			break;
	if (i == n)
		return; /* the usual case: nothing to do */
	for (i = 0; i < n && o + 5 < sizeof(tmp); i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(tmp + o, sizeof(tmp) - o,
					      "\\x%02x", c);
		else
			tmp[o++] = (char)c;
	}
	tmp[o] = '\0';
	snprintf(buf, size, "%s", tmp);
}

void log_vmsg(enum log_level lvl, const char *file, int line, const char *func,
	      const char *fmt, va_list ap)
{
	char raw[LOG_LINE_MAX], clean[LOG_LINE_MAX];
	int n = 0;
	int saved_errno = errno;

	n = (int)strlen(log_prefix); /* < sizeof(raw): set with snprintf */
	memcpy(raw, log_prefix, (size_t)n + 1);
	if (lvl == LOG_LVL_DBG) {
		const char *base = strrchr(file, '/');

		n += snprintf(raw + n, sizeof(raw) - n,
			      "%s:%d:%s: ", base ? base + 1 : file, line, func);
	}
	if (n >= 0 && (size_t)n < sizeof(raw))
		vsnprintf(raw + n, sizeof(raw) - n, fmt, ap);
	escape_controls(raw, sizeof(raw));
	log_redact(raw, clean, sizeof(clean));
	if (log_sink)
		log_sink(lvl, clean, log_sink_arg);
	else
		default_sink(lvl, clean, NULL);
	errno = saved_errno;
}

void log_msg(enum log_level lvl, const char *file, int line, const char *func,
	     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, file, line, func, fmt, ap);
	va_end(ap);
}
