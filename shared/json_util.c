/*
 * json_util.c: see json_util.h.
 */
#include "json_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int get_value(const json_t *obj, const char *key, json_t **out)
{
	json_t *v;

	if (!json_is_object(obj) || !key)
		return -EINVAL;
	/* jansson's getter takes a non-const object but does not modify it */
	v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return -ENOENT;
	*out = v;
	return 0;
}

int json_get_str(const json_t *obj, const char *key, const char **out)
{
	json_t *v;
	int rv = get_value(obj, key, &v);

	if (rv)
		return rv;
	if (!json_is_string(v))
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

int json_get_int(const json_t *obj, const char *key, int64_t *out)
{
	json_t *v;
	int rv = get_value(obj, key, &v);

	if (rv)
		return rv;
	if (!json_is_integer(v))
		return -EINVAL;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

int json_get_bool(const json_t *obj, const char *key, bool *out)
{
	json_t *v;
	int rv = get_value(obj, key, &v);

	if (rv)
		return rv;
	if (!json_is_boolean(v))
		return -EINVAL;
	*out = json_is_true(v);
	return 0;
}

/*
 * Walk the text once, tracking string state, and refuse it when containers
 * nest deeper than max_depth.  jansson recurses per level (and has its own,
 * much higher, limit); this keeps the stack and the error message ours.
 */
static int check_depth(const char *text, size_t len, unsigned max_depth,
		       char *err, size_t errlen)
{
	unsigned depth = 0;
	int line = 1, column = 0;
	bool in_str = false, esc = false;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n') {
			line++;
			column = 0;
		} else if ((c & 0xC0) != 0x80) {
			column++; /* count characters, as jansson does */
		}
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			break;
		case '[':
		case '{':
			if (++depth > max_depth) {
				set_err(err, errlen,
					"line %d, column %d: JSON nests deeper "
					"than %u levels",
					line, column, max_depth);
				return -EINVAL;
			}
			break;
		case ']':
		case '}':
			if (depth)
				depth--;
			break;
		default:
			break;
		}
	}
	return 0;
}

int json_parse_text(const char *text, size_t len, unsigned max_depth,
		    json_t **out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *j;
	char *near;
	int rv;

	*out = NULL;
	if (!text) {
		set_err(err, errlen, "no JSON text");
		return -EINVAL;
	}
	if (!max_depth)
		max_depth = JSON_UTIL_DEFAULT_DEPTH;
	rv = check_depth(text, len, max_depth, err, errlen);
	if (rv)
		return rv;

	j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		/* "... near 'x'" would quote the input: keep only the what */
		near = strstr(jerr.text, " near ");
		if (near)
			*near = '\0';
		if (json_error_code(&jerr) == json_error_out_of_memory) {
			set_err(err, errlen, "out of memory parsing JSON");
			return -ENOMEM;
		}
		set_err(err, errlen, "line %d, column %d: %s", jerr.line,
			jerr.column, jerr.text[0] ? jerr.text : "invalid JSON");
		return -EINVAL;
	}
	*out = j;
	return 0;
}

int json_dump_text(const json_t *j, size_t flags, char **out, char *err,
		   size_t errlen)
{
	char *s;

	*out = NULL;
	if (!j) {
		set_err(err, errlen, "no JSON value to serialize");
		return -EINVAL;
	}
	if (!flags)
		flags = JSON_COMPACT | JSON_SORT_KEYS;
	s = json_dumps(j, flags | JSON_ENCODE_ANY);
	if (!s) {
		set_err(err, errlen, "cannot serialize JSON (out of memory?)");
		return -ENOMEM;
	}
	*out = s;
	return 0;
}
