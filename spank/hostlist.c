/* hostlist.c: see hostlist.h. */
#include "hostlist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One "prefix[ranges]suffix" or plain name of length len at s. */
static int nth_in_item(const char *s, size_t len, unsigned *n, char *out,
		       size_t outlen)
{
	const char *lb = memchr(s, '[', len), *rb, *p;
	size_t plen;

	if (!lb) {
		if (*n == 0) {
			snprintf(out, outlen, "%.*s", (int)len, s);
			return 0;
		}
		(*n)--;
		return -ENOENT;
	}
	rb = memchr(lb, ']', len - (size_t)(lb - s));
	if (!rb)
		return -EINVAL;
	plen = (size_t)(lb - s);
	for (p = lb + 1; p < rb;) {
		char *end;
		unsigned long lo, hi;
		int width = 0;
		const char *num = p;

		lo = strtoul(p, &end, 10);
		if (end == p)
			return -EINVAL;
		width = (int)(end - num);
		hi = lo;
		p = end;
		if (*p == '-') {
			hi = strtoul(p + 1, &end, 10);
			if (end == p + 1 || hi < lo)
				return -EINVAL;
			p = end;
		}
		if (*n <= hi - lo) {
			snprintf(out, outlen, "%.*s%0*lu%.*s", (int)plen, s,
				 width, lo + *n,
				 (int)(len - (size_t)(rb + 1 - s)), rb + 1);
			return 0;
		}
		*n -= (unsigned)(hi - lo + 1);
		if (*p == ',')
			p++;
		else if (p != rb)
			return -EINVAL;
	}
	return -ENOENT;
}

int hostlist_nth(const char *list, unsigned n, char *out, size_t len)
{
	const char *p = list;

	while (p && *p) {
		const char *q = p;
		int depth = 0, rv;

		/* the item ends at a comma outside brackets */
		while (*q && (depth || *q != ',')) {
			if (*q == '[')
				depth++;
			else if (*q == ']')
				depth--;
			q++;
		}
		rv = nth_in_item(p, (size_t)(q - p), &n, out, len);
		if (rv != -ENOENT)
			return rv;
		p = *q ? q + 1 : NULL;
	}
	return -ENOENT;
}
