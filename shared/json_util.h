/*
 * json_util.h: small, strict helpers around jansson.
 *
 * The getters are typed strictly: an integer is a JSON integer (not a real,
 * not a string of digits), a boolean is true/false (not 0/1).  The parser
 * rejects duplicate object keys, refuses nesting deeper than a limit before
 * jansson sees the text, and reports errors as "line L, column C: what"
 * without quoting the input (which may hold a credential).
 *
 * Ownership: strings returned by json_get_str() are borrowed from the object
 * and live as long as it does; json_parse_text() and json_dump_text() hand
 * the caller a new reference / a malloc'd string.
 */
#ifndef TIERGATE_JSON_UTIL_H
#define TIERGATE_JSON_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting limit used when json_parse_text() is given max_depth 0. */
#define JSON_UTIL_DEFAULT_DEPTH 32

/*
 * Typed getters on an object.  Return 0 and set *out when `key` is present
 * with the right type; -ENOENT when it is absent (or JSON null); -EINVAL
 * when `obj` is not an object or the value has another type.  *out is left
 * untouched on error.  The string is borrowed from `obj`.
 */
int json_get_str(const json_t *obj, const char *key, const char **out);
int json_get_int(const json_t *obj, const char *key, int64_t *out);
int json_get_bool(const json_t *obj, const char *key, bool *out);

/*
 * Parse `len` bytes of `text` (need not be NUL-terminated) holding one JSON
 * object or array.  Containers may nest at most `max_depth` levels ("[]" is
 * depth 1; 0 means JSON_UTIL_DEFAULT_DEPTH); duplicate keys, NUL escapes
 * and trailing garbage are errors.  On success returns 0 and *out is a new
 * reference (json_decref it); on failure returns -EINVAL (or -ENOMEM),
 * *out is NULL and err says "line L, column C: ...".
 */
int json_parse_text(const char *text, size_t len, unsigned max_depth,
		    json_t **out, char *err, size_t errlen);

/*
 * Serialize `j` with jansson `flags` (0 gives compact output with sorted
 * keys, JSON_COMPACT | JSON_SORT_KEYS).  On success *out is a malloc'd
 * NUL-terminated string the caller frees with free().
 */
int json_dump_text(const json_t *j, size_t flags, char **out, char *err,
		   size_t errlen);

#endif
