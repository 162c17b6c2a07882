/*
 * http_response.h: the error shape and the error-code table of docs/api.md,
 * in one place.
 *
 * Every error the gateway answers has this body:
 *
 *   {"error": {"code": "not_found", "message": "no job j-1a2b",
 *              "request_id": "r-..."}}
 *
 * and its `code` comes from the table below (http_response.c), which pairs
 * each code with its one HTTP status.  The HTTP server builds every error
 * response through these functions, including the ones it has to write on
 * a raw socket without libmicrohttpd (429 at accept, 408 for a client too
 * slow sending its request, 413 in the middle of a chunked body).
 *
 * No event loop, no libmicrohttpd objects: pure functions, any thread.
 */
#ifndef TIERGATE_HTTP_RESPONSE_H
#define TIERGATE_HTTP_RESPONSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* One row of the table of docs/api.md. */
struct http_error_def {
	unsigned status;
	const char *code;
	const char *message; /* default message */
	const char *when;    /* the "when" column, for docs and tests */
};

/* The row for `code`, or NULL when the code is not in the table. */
const struct http_error_def *http_error_lookup(const char *code);
/*
 * The whole table, in the order of docs/api.md; *n gets its length.
 * Static storage.
 */
const struct http_error_def *http_error_table(size_t *n);
/* True when (status, code) is a row of the table. */
bool http_error_valid(unsigned status, const char *code);

/*
 * The error object {"error": {"code", "message", "request_id"}} as a new
 * reference (NULL only when out of memory).  `message` NULL gives the
 * code's default text; `request_id` NULL gives JSON null.
 */
json_t *http_error_json(const char *code, const char *message,
			const char *request_id);
/*
 * Same, serialized (compact, sorted keys) and malloc'd; *len gets the
 * length.  NULL when out of memory.
 */
char *http_error_text(const char *code, const char *message,
		      const char *request_id, size_t *len);

/*
 * A complete HTTP/1.1 error response (status line, Content-Type JSON,
 * Content-Length, X-Request-ID, Connection: close, `extra_headers` (each
 * "Name: value\r\n", may be NULL), the JSON body) written into buf, for
 * the paths where the server answers on a raw socket.  Returns the length,
 * or -ENOSPC when buf is too small (nothing usable is in buf then).
 */
int http_error_raw(char *buf, size_t len, unsigned status, const char *code,
		   const char *message, const char *request_id,
		   const char *extra_headers);

/* "Not Found" for 404 (libmicrohttpd's table), "Unknown" when unknown. */
const char *http_status_reason(unsigned status);

#endif
