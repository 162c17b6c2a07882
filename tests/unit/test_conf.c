/* test_conf.c: the INI parser and its error messages. */
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
#include <unistd.h>

#include "conf.h"

static const char good[] = "# top\n"
			   "listen = 127.0.0.1:8480\n"
			   "\n"
			   "[gateway]\n"
			   "workers = 4   # trailing comment\n"
			   "debug = yes\n"
			   "name = \" padded \"\n"
			   "[site alpha]\n"
			   "url = http://127.0.0.1:6820/#frag\n"
			   "max_body = 64M\n"
			   "rate = 2.5\n"
			   "[site beta]\n";

static void test_parse_and_get(void **state)
{
	struct conf *c;
	char err[256];
	const char *s;
	long n;
	bool b;
	double d;
	uint64_t sz;

	(void)state;
	assert_int_equal(
	    conf_parse_string("t.conf", good, &c, err, sizeof(err)), 0);
	assert_int_equal(
	    conf_get_str(c, "", "", "listen", &s, err, sizeof(err)), 0);
	assert_string_equal(s, "127.0.0.1:8480");
	assert_int_equal(conf_get_int(c, "gateway", NULL, "workers", 1, 64, &n,
				      err, sizeof(err)),
			 0);
	assert_int_equal(n, 4);
	assert_int_equal(
	    conf_get_bool(c, "gateway", "", "debug", &b, err, sizeof(err)), 0);
	assert_true(b);
	conf_get_str(c, "gateway", "", "name", &s, err, sizeof(err));
	assert_string_equal(s, " padded ");
	conf_get_str(c, "site", "alpha", "url", &s, err, sizeof(err));
	assert_string_equal(s, "http://127.0.0.1:6820/#frag");
	assert_int_equal(conf_get_size(c, "site", "alpha", "max_body", &sz, err,
				       sizeof(err)),
			 0);
	assert_int_equal(sz, 64ull << 20);
	assert_int_equal(conf_get_double(c, "site", "alpha", "rate", 0, 10, &d,
					 err, sizeof(err)),
			 0);
	assert_true(d == 2.5);
	/* absent: 1, output untouched */
	n = 77;
	assert_int_equal(conf_get_int(c, "site", "beta", "workers", 0, 9, &n,
				      err, sizeof(err)),
			 1);
	assert_int_equal(n, 77);
	/* empty sections are listed */
	assert_int_equal(c->n_sections, 3);
	assert_string_equal(c->sections[2].label, "beta");
	assert_int_equal(conf_check_unused(c, err, sizeof(err)), 0);
	conf_free(c);
}

static void expect_parse_error(const char *text, const char *msg)
{
	struct conf *c = NULL;
	char err[256] = "";

	assert_int_equal(
	    conf_parse_string("bad.conf", text, &c, err, sizeof(err)), -EINVAL);
	assert_null(c);
	if (!strstr(err, msg))
		fail_msg("error '%s' lacks '%s'", err, msg);
}

static void test_parse_errors_name_file_and_line(void **state)
{
	(void)state;
	expect_parse_error("a = 1\nno equals here\n", "bad.conf:2: expected");
	expect_parse_error("[gateway\n", "bad.conf:1: malformed section");
	expect_parse_error("a = 1\na = 2\n",
			   "bad.conf:2: key 'a' repeats line 1");
	expect_parse_error("[x]\n[x]\n", "bad.conf:2: section [x] repeats");
	expect_parse_error("k y = 1\n", "bad.conf:1: key 'k y' has a bad");
	expect_parse_error("k = \"open\n", "bad.conf:1: key 'k': unterminated");
	expect_parse_error("= 3\n", "bad.conf:1: empty key");
}

static void test_typed_errors(void **state)
{
	struct conf *c;
	char err[256];
	long n;
	bool b;
	uint64_t sz;

	(void)state;
	assert_int_equal(conf_parse_string("x.conf",
					   "n = 12abc\nm = 99\nb = maybe\n"
					   "s = 12Q\n[s t]\nleft = 1\n",
					   &c, err, sizeof(err)),
			 0);
	assert_int_equal(
	    conf_get_int(c, "", "", "n", 0, 100, &n, err, sizeof(err)),
	    -EINVAL);
	assert_string_equal(err,
			    "x.conf:1: key 'n': '12abc' is not an integer");
	assert_int_equal(
	    conf_get_int(c, "", "", "m", 0, 10, &n, err, sizeof(err)), -ERANGE);
	assert_string_equal(err, "x.conf:2: key 'm': 99 is outside 0..10");
	assert_int_equal(conf_get_bool(c, "", "", "b", &b, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "x.conf:3: key 'b'"));
	assert_int_equal(conf_get_size(c, "", "", "s", &sz, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "x.conf:4: key 's'"));
	/* [s t] left was never asked for: a misspelt key is reported */
	assert_int_equal(conf_check_unused(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "x.conf:6: key 'left': unknown key in [s t]");
	conf_free(c);
}

static void test_file_errors(void **state)
{
	struct conf *c;
	char err[256], path[] = "/tmp/tg-conf-XXXXXX";
	int fd;

	(void)state;
	assert_int_equal(
	    conf_parse_file("/nonexistent/t.conf", &c, err, sizeof(err)),
	    -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/t.conf: cannot open"));
	assert_int_equal(conf_parse_file("/tmp", &c, err, sizeof(err)),
			 -EINVAL);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a = 1\n[t x]\nb = 2\n", 18), 18);
	close(fd);
	assert_int_equal(conf_parse_file(path, &c, err, sizeof(err)), 0);
	assert_string_equal(c->path, path);
	assert_non_null(conf_find(c, "t", "x", "b"));
	conf_free(c);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "a = 1\0b = 2\n", 12), 12);
	close(fd);
	assert_int_equal(conf_parse_file(path, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "NUL byte"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_and_get),
	    cmocka_unit_test(test_parse_errors_name_file_and_line),
	    cmocka_unit_test(test_typed_errors),
	    cmocka_unit_test(test_file_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
