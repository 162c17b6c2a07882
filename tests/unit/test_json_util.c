/* test_json_util.c: strict getters, the depth-checked parser, dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"

static json_t *parse_ok(const char *text)
{
	json_t *j = NULL;
	char err[256] = "";
	int rv = json_parse_text(text, strlen(text), 0, &j, err, sizeof(err));

	if (rv)
		print_message("parse: %s\n", err);
	assert_int_equal(rv, 0);
	assert_non_null(j);
	return j;
}

static void parse_bad(const char *text, size_t len, unsigned depth,
		      const char *want)
{
	json_t *j = (json_t *)&j;
	char err[256] = "";
	int rv = json_parse_text(text, len, depth, &j, err, sizeof(err));

	if (rv != -EINVAL || !strstr(err, want))
		print_message("rv %d err '%s', wanted '%s'\n", rv, err, want);
	assert_int_equal(rv, -EINVAL);
	assert_null(j);
	assert_non_null(strstr(err, want));
}

static void test_get_typed(void **state)
{
	json_t *o = parse_ok("{\"s\":\"x\",\"i\":-9007199254740993,"
			     "\"big\":9223372036854775807,\"r\":1.0,"
			     "\"si\":\"5\",\"t\":true,\"f\":false,\"n\":null,"
			     "\"one\":1,\"arr\":[1]}");
	const char *s = "untouched";
	int64_t i = 42;
	bool b = false;

	(void)state;
	assert_int_equal(json_get_str(o, "s", &s), 0);
	assert_string_equal(s, "x");
	assert_int_equal(json_get_int(o, "i", &i), 0);
	assert_true(i == -9007199254740993LL);
	assert_int_equal(json_get_int(o, "big", &i), 0);
	assert_true(i == INT64_MAX);
	assert_int_equal(json_get_bool(o, "t", &b), 0);
	assert_true(b);
	assert_int_equal(json_get_bool(o, "f", &b), 0);
	assert_false(b);

	/* absent, null */
	i = 42;
	assert_int_equal(json_get_int(o, "missing", &i), -ENOENT);
	assert_int_equal(json_get_str(o, "n", &s), -ENOENT);
	assert_int_equal(i, 42);

	/* wrong types, *out untouched */
	s = "untouched";
	assert_int_equal(json_get_str(o, "i", &s), -EINVAL);
	assert_int_equal(json_get_str(o, "arr", &s), -EINVAL);
	assert_string_equal(s, "untouched");
	assert_int_equal(json_get_int(o, "r", &i), -EINVAL);
	assert_int_equal(json_get_int(o, "si", &i), -EINVAL);
	assert_int_equal(json_get_int(o, "t", &i), -EINVAL);
	assert_int_equal(i, 42);
	b = true;
	assert_int_equal(json_get_bool(o, "one", &b), -EINVAL);
	assert_int_equal(json_get_bool(o, "s", &b), -EINVAL);
	assert_true(b);

	/* not an object */
	assert_int_equal(json_get_str(NULL, "s", &s), -EINVAL);
	assert_int_equal(json_get_int(json_object_get(o, "arr"), "s", &i),
			 -EINVAL);
	assert_int_equal(json_get_bool(o, NULL, &b), -EINVAL);
	json_decref(o);
}

static void test_parse_ok_and_length(void **state)
{
	const char buf[] = "{\"a\":[1,{\"b\":\"[[[{{\\\"[[\"}]}GARBAGE";
	json_t *j = NULL;
	char err[256];

	(void)state;
	/* only len bytes are read: the trailing garbage is not seen */
	assert_int_equal(
	    json_parse_text(buf, strlen(buf) - 7, 3, &j, err, sizeof(err)), 0);
	assert_string_equal(
	    json_string_value(json_object_get(
		json_array_get(json_object_get(j, "a"), 1), "b")),
	    "[[[{{\"[[");
	json_decref(j);
	/* ... but with it, it is an error */
	parse_bad(buf, strlen(buf), 0, "end of file expected");
	j = parse_ok("[]");
	assert_true(json_is_array(j));
	json_decref(j);
}

static void test_parse_invalid_line_column(void **state)
{
	const char text[] = "{\n"
			    "  \"user\": \"alice\",\n"
			    "  \"password\": hunter2\n"
			    "}\n";
	json_t *j = (json_t *)&j;
	char err[256];

	(void)state;
	assert_int_equal(
	    json_parse_text(text, strlen(text), 0, &j, err, sizeof(err)),
	    -EINVAL);
	assert_null(j);
	assert_non_null(strstr(err, "line 3, column "));
	assert_non_null(strstr(err, "invalid token"));
	assert_null(strstr(err, "hunter2")); /* input is never quoted */
	assert_null(strstr(err, "near"));

	parse_bad("", 0, 0, "line 1, column 0");
	parse_bad("5", 1, 0, "'[' or '{' expected");
	parse_bad("{\"a\":1,}", 8, 0, "line 1, column 8");
	parse_bad("{\"a\":1,\"a\":2}", 13, 0, "duplicate object key");
	parse_bad("{\"a\":\"\\u0000\"}", 14, 0, "\\u0000 is not allowed");
	parse_bad("{\"a\":\"x\0y\"}", 11, 0, "line 1, column");
	parse_bad("{\"a\":\"\xff\"}", 9, 0, "unable to decode byte");
	parse_bad(NULL, 0, 0, "no JSON text");
}

static char *nested(size_t depth, char open, char close)
{
	char *s = malloc(2 * depth + 1);

	assert_non_null(s);
	memset(s, open, depth);
	memset(s + depth, close, depth);
	s[2 * depth] = '\0';
	return s;
}

static void test_parse_depth(void **state)
{
	char *s;
	json_t *j = NULL;
	char err[256];

	(void)state;
	/* 10 000 deep: refused with a clear error, no crash */
	s = nested(10000, '[', ']');
	parse_bad(s, strlen(s), 0,
		  "line 1, column 33: JSON nests deeper than 32 levels");
	/* even when the caller allows it all, jansson's own cap holds */
	parse_bad(s, strlen(s), 20000, "line 1, column");
	free(s);

	/* exactly the limit is fine, one more is not */
	s = nested(32, '[', ']');
	assert_int_equal(json_parse_text(s, strlen(s), 0, &j, err, sizeof(err)),
			 0);
	json_decref(j);
	free(s);
	s = nested(33, '[', ']');
	parse_bad(s, strlen(s), 0, "deeper than 32 levels");
	free(s);
	/* a chosen limit, objects count too, and the position is exact */
	parse_bad("{\"a\":\n {\"b\":\n  {\"c\":1}}}", 24, 2,
		  "line 3, column 3: JSON nests deeper than 2 levels");
	/* brackets inside strings do not count */
	j = NULL;
	assert_int_equal(
	    json_parse_text("[\"[[[[\\\"[[[[\"]", 14, 1, &j, err, sizeof(err)),
	    0);
	json_decref(j);
}

static void test_dump(void **state)
{
	json_t *j = parse_ok("{\"b\":1,\"a\":[true,null,\"\\u00e9\"]}");
	char *s = (char *)&s, err[128];

	(void)state;
	assert_int_equal(json_dump_text(j, 0, &s, err, sizeof(err)), 0);
	assert_string_equal(s, "{\"a\":[true,null,\"\xc3\xa9\"],\"b\":1}");
	free(s);
	assert_int_equal(json_dump_text(j, JSON_INDENT(1) | JSON_SORT_KEYS, &s,
					err, sizeof(err)),
			 0);
	assert_non_null(strstr(s, "\n \"a\": ["));
	free(s);
	json_decref(j);
	j = json_integer(5);
	assert_int_equal(json_dump_text(j, 0, &s, err, sizeof(err)), 0);
	assert_string_equal(s, "5");
	free(s);
	json_decref(j);
	assert_int_equal(json_dump_text(NULL, 0, &s, err, sizeof(err)),
			 -EINVAL);
	assert_null(s);
	assert_non_null(strstr(err, "no JSON value"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_typed),
	    cmocka_unit_test(test_parse_ok_and_length),
	    cmocka_unit_test(test_parse_invalid_line_column),
	    cmocka_unit_test(test_parse_depth),
	    cmocka_unit_test(test_dump),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
