/* test_log.c: debug switch by regex, redaction, sinks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <regex.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

static char lines[16][4096];
static int n_lines;

static void capture(enum log_level lvl, const char *line, void *arg)
{
	(void)lvl;
	(void)arg;
	if (n_lines < 16)
		snprintf(lines[n_lines++], sizeof(lines[0]), "%s", line);
}

static int setup(void **state)
{
	(void)state;
	n_lines = 0;
	log_set_sink(capture, NULL);
	log_set_prefix(NULL);
	log_set_debug(NULL);
	return 0;
}

static void debug_line_one(void)
{
	dbg("from one %d", 1);
}

static void debug_line_two(void)
{
	dbg("from two %d", 2);
}

static void test_debug_off_by_default(void **state)
{
	(void)state;
	assert_int_equal(log_debug_on, 0);
	debug_line_one();
	debug_line_two();
	assert_int_equal(n_lines, 0);
}

static void test_debug_regex_selects_sites(void **state)
{
	(void)state;
	assert_int_equal(log_set_debug("debug_line_one"), 0);
	debug_line_one();
	debug_line_two();
	assert_int_equal(n_lines, 1);
	assert_non_null(strstr(lines[0], "from one 1"));
	assert_non_null(strstr(lines[0], "test_log.c:"));

	/* a new regex is noticed by sites that already cached a verdict */
	assert_int_equal(log_set_debug("test_log\\.c:[0-9]+:debug_line_two"),
			 0);
	debug_line_one();
	debug_line_two();
	assert_int_equal(n_lines, 2);
	assert_non_null(strstr(lines[1], "from two 2"));

	assert_int_equal(log_set_debug(""), 0);
	debug_line_one();
	debug_line_two();
	assert_int_equal(n_lines, 2);
}

static void test_debug_bad_regex_refused(void **state)
{
	(void)state;
	assert_int_equal(log_set_debug("(unclosed"), -EINVAL);
	assert_int_equal(log_debug_on, 0);
	/* the refusal itself is logged as an error */
	assert_int_equal(n_lines, 1);
	assert_non_null(strstr(lines[0], "does not compile"));
}

static void test_debug_from_env(void **state)
{
	(void)state;
	setenv("TIERGATE_DEBUG", "debug_line_two", 1);
	assert_int_equal(log_debug_from_env(), 0);
	debug_line_one();
	debug_line_two();
	assert_int_equal(n_lines, 1);
	unsetenv("TIERGATE_DEBUG");
	log_debug_from_env();
	assert_int_equal(log_debug_on, 0);
}

#define JWT "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhbGljZSJ9.c2lnbmF0dXJlX2J5dGVz"

static void test_token_never_reaches_a_log_line(void **state)
{
	(void)state;
	log_set_debug(".");
	log_info("submitting with token %s for alice", JWT);
	log_err("header Authorization: Bearer %s", "opaque-secret-value");
	log_warn("slurmrestd X-SLURM-USER-TOKEN=%s rejected", "abc.def");
	dbg("json {\"token\": \"%s\", \"user\": \"bob\"}", "s3cr3t");
	log_info("cred MUNGE:AwQDAAD+1xyz:= from login node");
	log_info("password=hunter2 key_file=/etc/k");
	assert_int_equal(n_lines, 6);
	for (int i = 0; i < n_lines; i++) {
		assert_null(strstr(lines[i], "eyJhbGci"));
		assert_null(strstr(lines[i], "opaque-secret-value"));
		assert_null(strstr(lines[i], "abc.def"));
		assert_null(strstr(lines[i], "s3cr3t"));
		assert_null(strstr(lines[i], "AwQDAAD"));
		assert_null(strstr(lines[i], "hunter2"));
		assert_non_null(strstr(lines[i], "[REDACTED]"));
	}
	/* the rest of each line survives */
	assert_non_null(strstr(lines[0], "for alice"));
	assert_non_null(strstr(lines[3], "\"user\": \"bob\""));
	assert_non_null(strstr(lines[5], "key_file=/etc/k"));
}

static void test_redact_leaves_plain_text(void **state)
{
	char out[256];

	(void)state;
	log_redact("job 42 on site alpha: state=RUNNING eyJ-not-a-jwt", out,
		   sizeof(out));
	assert_string_equal(
	    out, "job 42 on site alpha: state=RUNNING eyJ-not-a-jwt");
	/* truncation keeps a terminated string */
	log_redact("0123456789", out, 5);
	assert_string_equal(out, "0123");
}

/*
 * The redaction as first written, plainly (a strncasecmp and a strstr per
 * character): log_redact, which skips what cannot start a secret, must
 * give the same bytes for any input.
 */
static bool ref_is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '=';
}

static bool ref_is_word(char c)
{
	return ref_is_b64url(c) || c == '.';
}

/* Length of a JWT (three base64url segments starting "eyJ") at s, or 0. */
static size_t ref_jwt_len_at(const char *s)
{
	size_t n = 0;
	int dots = 0;

	if (strncmp(s, "eyJ", 3) != 0)
		return 0;
	while (ref_is_b64url(s[n]) || (s[n] == '.' && dots < 2)) {
		if (s[n] == '.')
			dots++;
		n++;
	}
	return dots == 2 ? n : 0;
}

/* Key names whose values are secrets in "key=value" / "key: value". */
static bool ref_key_is_secret(const char *key, size_t len)
{
	static const char *const secret_words[] = {
	    "token",	     "secret", "password", "passwd",  "credential",
	    "authorization", "cookie", "jwt",	   "private",
	};
	char low[64];
	size_t i;

	if (len >= sizeof(low))
		len = sizeof(low) - 1;
	for (i = 0; i < len; i++)
		low[i] =
		    (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] - 'A' + 'a'
							    : key[i]);
	low[len] = '\0';
	for (i = 0; i < sizeof(secret_words) / sizeof(*secret_words); i++)
		if (strstr(low, secret_words[i]))
			return true;
	return false;
}

static size_t ref_put(char *out, size_t o, size_t outlen, const char *s,
		      size_t n)
{
	while (n-- && o + 1 < outlen)
		out[o++] = *s++;
	return o;
}

static size_t ref_log_redact(const char *in, char *out, size_t outlen)
{
	static const char red[] = "[REDACTED]";
	size_t i = 0, o = 0, n;

	if (!outlen)
		return 0;
	while (in[i] && o + 1 < outlen) {
		/* a bare JWT anywhere */
		if ((n = ref_jwt_len_at(in + i))) {
			o = ref_put(out, o, outlen, red, sizeof(red) - 1);
			i += n;
			continue;
		}
		/* "Bearer X", "MUNGE:X" credentials */
		if (!strncasecmp(in + i, "bearer ", 7)) {
			o = ref_put(out, o, outlen, in + i, 7);
			i += 7;
			if (in[i] && in[i] != ' ') {
				o = ref_put(out, o, outlen, red,
					    sizeof(red) - 1);
				while (in[i] && in[i] != ' ' && in[i] != '"' &&
				       in[i] != ',')
					i++;
			}
			continue;
		}
		if (!strncmp(in + i, "MUNGE:", 6)) {
			o = ref_put(out, o, outlen, red, sizeof(red) - 1);
			while (in[i] && (ref_is_word(in[i]) || in[i] == ':' ||
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
			       (ref_is_b64url(in[k - 1]) || in[k - 1] == '-'))
				k--;
			if (ref_key_is_secret(in + k, i - k - quoted_key)) {
				o = ref_put(out, o, outlen, in + i, 1);
				while (in[vstart] == ' ')
					o = ref_put(out, o, outlen,
						    in + vstart++, 1);
				/* "Authorization: Bearer X": keep the scheme */
				if (!strncasecmp(in + vstart, "bearer ", 7) ||
				    !strncasecmp(in + vstart, "basic ", 6)) {
					n = in[vstart + 1] == 'e' ||
						    in[vstart + 1] == 'E'
						? 7
						: 6;
					o = ref_put(out, o, outlen, in + vstart,
						    n);
					vstart += n;
				}
				if (in[vstart] == '"') {
					o = ref_put(out, o, outlen, "\"", 1);
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
					o = ref_put(out, o, outlen, red,
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

static void test_redact_same_as_reference(void **state)
{
	static const char *const bits[] = {
	    "eyJ",	"abc",	   "eyJhbGc",
	    ".",	"Bearer ", "bearer",
	    "BEARER x", "MUNGE:",  "munge:",
	    "token",	"=",	   ":",
	    "\"",	" ",	   ",",
	    "&",	"}",	   "Authorization",
	    "basic ",	"Basic",   "password",
	    "jwt",	"Token",   "x",
	    "-",	"_",	   "\xc3\xa9",
	    "Passwd",	"secret",  "0",
	    "privat",	"cookie=", "credential:",
	    "key",
	};
	char in[512], got[300], want[300];
	size_t nb = sizeof(bits) / sizeof(*bits), len, outlen;
	unsigned seed = 12345;
	int round, k, parts;

	(void)state;
	/* a secret word at the end of a long key: the first 63 characters
	 * are what counts */
	for (k = 50; k < 70; k++) {
		snprintf(
		    in, sizeof(in), "%.*stoken=v a%.*sJWT: w", k,
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxx",
		    k,
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxx");
		log_redact(in, got, sizeof(got));
		ref_log_redact(in, want, sizeof(want));
		assert_string_equal(got, want);
	}
	for (round = 0; round < 20000; round++) {
		len = 0;
		parts = (int)(rand_r(&seed) % 24);
		for (k = 0; k < parts; k++) {
			const char *b = bits[(size_t)rand_r(&seed) % nb];
			size_t bl = strlen(b);

			if (len + bl >= sizeof(in))
				break;
			memcpy(in + len, b, bl);
			len += bl;
		}
		in[len] = '\0';
		outlen = 1 + (size_t)rand_r(&seed) % sizeof(got);
		memset(got, 'G', sizeof(got));
		memset(want, 'G', sizeof(want));
		assert_int_equal(log_redact(in, got, outlen),
				 ref_log_redact(in, want, outlen));
		if (memcmp(got, want, sizeof(got)) != 0)
			fail_msg("redaction differs for \"%s\" (outlen %zu): "
				 "\"%s\" / \"%s\"",
				 in, outlen, got, want);
	}
}

/* A client's bytes cannot forge a line: control characters are escaped. */
static void test_control_characters_escaped(void **state)
{
	(void)state;
	log_info("http GET %s 404",
		 "/v1/jobs/a\n2026-01-01T00:00:00Z x: ok\r\x7f\t");
	assert_int_equal(n_lines, 1);
	assert_string_equal(lines[0],
			    "http GET /v1/jobs/a\\x0a2026-01-01T00:00:00Z "
			    "x: ok\\x0d\\x7f\\x09 404");
	assert_null(strchr(lines[0], '\n'));
}

/* stderr's bytes so far, from the file it was pointed at */
static size_t stderr_text(int fd, char *buf, size_t cap)
{
	ssize_t n = pread(fd, buf, cap - 1, 0);

	assert_true(n >= 0);
	buf[n] = '\0';
	return (size_t)n;
}

/* A loop thread's info lines wait for log_flush; a warning does not. */
static void test_buffered_thread(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", *buf = malloc(64 * 1024);
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), i;
	const char *a, *b, *c;

	(void)state;
	assert_true(fd >= 0 && saved >= 0 && buf);
	unlink(path);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	log_set_sink(NULL, NULL); /* the default sink */
	log_buffer_thread(true);
	log_info("first %d", 1);
	log_info("second %d", 2);
	assert_int_equal(stderr_text(fd, buf, 64 * 1024), 0);
	log_flush();
	stderr_text(fd, buf, 64 * 1024);
	a = strstr(buf, "first 1");
	b = strstr(buf, "second 2");
	assert_true(a && b && a < b);
	/* a warning writes what waits, then itself: in order, at once */
	log_info("third %d", 3);
	log_warn("fourth %d", 4);
	stderr_text(fd, buf, 64 * 1024);
	b = strstr(buf, "third 3");
	c = strstr(buf, "fourth 4");
	assert_true(b && c && b < c);
	/* more than the buffer holds goes out without a flush */
	for (i = 0; i < 400; i++)
		log_info("filler line %04d with some words to take room", i);
	assert_non_null(strstr(buf, "fourth 4"));
	stderr_text(fd, buf, 64 * 1024);
	assert_non_null(strstr(buf, "filler line 0000"));
	assert_null(strstr(buf, "filler line 0399"));
	log_buffer_thread(false); /* writes the rest */
	stderr_text(fd, buf, 64 * 1024);
	assert_non_null(strstr(buf, "filler line 0399"));
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	free(buf);
}

/* "<date>.<ms>Z <prog>[<pid>] <level>: <text>": a forked child's lines
 * carry its own pid, within the same second too. */
static void test_default_sink_line(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", buf[4096], want[512];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), status;
	regex_t re;
	pid_t child;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	log_set_sink(NULL, NULL);
	log_init("test_log");
	log_info("parent %d", 1);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		log_warn("child %d", 2);
		_exit(0);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	log_init("renamed");
	log_err("parent %d", 3);
	dup2(saved, STDERR_FILENO);
	close(saved);
	stderr_text(fd, buf, sizeof(buf));
	close(fd);
	snprintf(want, sizeof(want),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
		 "\\.[0-9]{3}Z test_log\\[%d\\] info: parent 1\n"
		 "[0-9T:.-]{23}Z test_log\\[%d\\] warning: child 2\n"
		 "[0-9T:.-]{23}Z renamed\\[%d\\] error: parent 3\n$",
		 (int)getpid(), (int)child, (int)getpid());
	assert_int_equal(regcomp(&re, want, REG_EXTENDED), 0);
	if (regexec(&re, buf, 0, NULL, 0) != 0)
		fail_msg("lines:\n%s\nwant: %s", buf, want);
	regfree(&re);
	log_init("tiergate");
}

static void test_prefix(void **state)
{
	(void)state;
	log_set_prefix("tiergate: remote: ");
	log_err("task_init failed for job %d", 7);
	assert_string_equal(lines[0],
			    "tiergate: remote: task_init failed for job 7");
	log_set_prefix(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_debug_off_by_default, setup),
	    cmocka_unit_test_setup(test_debug_regex_selects_sites, setup),
	    cmocka_unit_test_setup(test_debug_bad_regex_refused, setup),
	    cmocka_unit_test_setup(test_debug_from_env, setup),
	    cmocka_unit_test_setup(test_token_never_reaches_a_log_line, setup),
	    cmocka_unit_test_setup(test_redact_leaves_plain_text, setup),
	    cmocka_unit_test_setup(test_redact_same_as_reference, setup),
	    cmocka_unit_test_setup(test_prefix, setup),
	    cmocka_unit_test_setup(test_control_characters_escaped, setup),
	    cmocka_unit_test_setup(test_buffered_thread, setup),
	    cmocka_unit_test_setup(test_default_sink_line, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
