/*
 * conf.c: see conf.h.  The whole file is read into one arena; entries
 * point into it, so a parsed conf is two allocations plus two arrays.
 */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_MAX_BYTES (1 << 20)

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

static bool is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int check_name(const char *name, const char *what, const char *file,
		      int line, char *err, size_t errlen)
{
	const char *p;

	if (!*name) {
		set_err(err, errlen, "%s:%d: empty %s", file, line, what);
		return -EINVAL;
	}
	for (p = name; *p; p++) {
		if (!is_name_char(*p)) {
			set_err(err, errlen,
				"%s:%d: %s '%s' has a bad character '%c'", file,
				line, what, name, *p);
			return -EINVAL;
		}
	}
	return 0;
}

/* Strip an unquoted trailing comment and surrounding quotes in place. */
static int parse_value(char *v, const char *file, int line, const char *key,
		       char *err, size_t errlen, char **out)
{
	char *p;

	v = trim(v);
	if (*v == '"') {
		p = strchr(v + 1, '"');
		if (!p) {
			set_err(err, errlen,
				"%s:%d: key '%s': unterminated quote", file,
				line, key);
			return -EINVAL;
		}
		*p = '\0';
		p = trim(p + 1);
		if (*p && *p != '#' && *p != ';') {
			set_err(err, errlen,
				"%s:%d: key '%s': text after closing quote",
				file, line, key);
			return -EINVAL;
		}
		*out = v + 1;
		return 0;
	}
	/* " #" starts a comment inside an unquoted value */
	for (p = v; *p; p++) {
		if ((*p == '#' || *p == ';') &&
		    (p == v || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	}
	*out = trim(v);
	return 0;
}

int conf_parse_string(const char *name, const char *text, struct conf **out,
		      char *err, size_t errlen)
{
	struct conf *c;
	size_t cap_e = 16, cap_s = 8, textlen = strlen(text), i;
	const char *cur_section = "", *cur_label = "";
	char *line_p, *next;
	int lineno = 0, rv = -ENOMEM;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out_nomem;
	c->path = strdup(name);
	c->arena = malloc(textlen + 1);
	c->entries = calloc(cap_e, sizeof(*c->entries));
	c->sections = calloc(cap_s, sizeof(*c->sections));
	if (!c->path || !c->arena || !c->entries || !c->sections)
		goto out_free;
	memcpy(c->arena, text, textlen + 1);

	for (line_p = c->arena; line_p; line_p = next) {
		char *s, *eq, *key, *val;

		lineno++;
		next = strchr(line_p, '\n');
		if (next)
			*next++ = '\0';
		s = trim(line_p);
		if (!*s || *s == '#' || *s == ';')
			continue;

		if (*s == '[') {
			char *end = strchr(s, ']'), *sp;

			if (!end || *trim(end + 1)) {
				set_err(err, errlen,
					"%s:%d: malformed section header '%s'",
					name, lineno, s);
				rv = -EINVAL;
				goto out_free;
			}
			*end = '\0';
			s = trim(s + 1);
			sp = strpbrk(s, " \t");
			if (sp) {
				*sp = '\0';
				cur_label = trim(sp + 1);
				rv = check_name(cur_label, "section label",
						name, lineno, err, errlen);
				if (rv)
					goto out_free;
			} else {
				cur_label = "";
			}
			cur_section = s;
			rv = check_name(cur_section, "section", name, lineno,
					err, errlen);
			if (rv)
				goto out_free;
			for (i = 0; i < c->n_sections; i++) {
				if (!strcmp(c->sections[i].section,
					    cur_section) &&
				    !strcmp(c->sections[i].label, cur_label)) {
					set_err(err, errlen,
						"%s:%d: section [%s%s%s] "
						"repeats line %d",
						name, lineno, cur_section,
						*cur_label ? " " : "",
						cur_label, c->sections[i].line);
					rv = -EINVAL;
					goto out_free;
				}
			}
			if (c->n_sections == cap_s) {
				void *p = reallocarray(c->sections, cap_s * 2,
						       sizeof(*c->sections));
				if (!p)
					goto out_nomem_free;
				c->sections = p;
				cap_s *= 2;
			}
			c->sections[c->n_sections++] = (struct conf_section){
			    cur_section, cur_label, lineno};
			continue;
		}

		eq = strchr(s, '=');
		if (!eq) {
			set_err(err, errlen,
				"%s:%d: expected 'key = value', got '%.40s'",
				name, lineno, s);
			rv = -EINVAL;
			goto out_free;
		}
		*eq = '\0';
		key = trim(s);
		rv = check_name(key, "key", name, lineno, err, errlen);
		if (rv)
			goto out_free;
		rv = parse_value(eq + 1, name, lineno, key, err, errlen, &val);
		if (rv)
			goto out_free;
		for (i = 0; i < c->n_entries; i++) {
			struct conf_entry *e = &c->entries[i];

			if (!strcmp(e->section, cur_section) &&
			    !strcmp(e->label, cur_label) &&
			    !strcmp(e->key, key)) {
				set_err(err, errlen,
					"%s:%d: key '%s' repeats line %d", name,
					lineno, key, e->line);
				rv = -EINVAL;
				goto out_free;
			}
		}
		if (c->n_entries == cap_e) {
			void *p = reallocarray(c->entries, cap_e * 2,
					       sizeof(*c->entries));
			if (!p)
				goto out_nomem_free;
			c->entries = p;
			cap_e *= 2;
		}
		c->entries[c->n_entries++] = (struct conf_entry){
		    .section = cur_section,
		    .label = cur_label,
		    .key = key,
		    .value = val,
		    .line = lineno,
		};
	}
	*out = c;
	return 0;

out_nomem_free:
	rv = -ENOMEM;
	set_err(err, errlen, "%s: out of memory", name);
out_free:
	conf_free(c);
	return rv;
out_nomem:
	set_err(err, errlen, "%s: out of memory", name);
	return -ENOMEM;
}

int conf_parse_file(const char *path, struct conf **out, char *err,
		    size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	size_t got = 0;
	int fd, rv;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rv = -errno;
		set_err(err, errlen, "%s: cannot open: %s", path,
			strerror(errno));
		return rv;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		rv = -EINVAL;
		goto out_close;
	}
	if (st.st_size > CONF_MAX_BYTES) {
		set_err(err, errlen, "%s: larger than %d bytes", path,
			CONF_MAX_BYTES);
		rv = -EFBIG;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rv = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rv = n < 0 ? -errno : -EIO;
			set_err(err, errlen, "%s: read failed: %s", path,
				n < 0 ? strerror(errno) : "short read");
			goto out_free;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (strlen(buf) != got) {
		set_err(err, errlen, "%s: contains a NUL byte", path);
		rv = -EINVAL;
		goto out_free;
	}
	rv = conf_parse_string(path, buf, out, err, errlen);
out_free:
	free(buf);
out_close:
	close(fd);
	return rv;
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->entries);
	free(c->sections);
	free(c->arena);
	free(c);
}

struct conf_entry *conf_find(struct conf *c, const char *section,
			     const char *label, const char *key)
{
	size_t i;

	for (i = 0; i < c->n_entries; i++) {
		struct conf_entry *e = &c->entries[i];

		if (!strcmp(e->section, section ? section : "") &&
		    !strcmp(e->label, label ? label : "") &&
		    !strcmp(e->key, key)) {
			e->used = true;
			return e;
		}
	}
	return NULL;
}

void conf_entry_error(const struct conf *c, const struct conf_entry *e,
		      char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return;
	n = snprintf(err, errlen, "%s:%d: key '%s': ", c->path, e->line,
		     e->key);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

int conf_get_str(struct conf *c, const char *section, const char *label,
		 const char *key, const char **out, char *err, size_t errlen)
{
	struct conf_entry *e = conf_find(c, section, label, key);

	(void)err;
	(void)errlen;
	if (!e)
		return 1;
	*out = e->value;
	return 0;
}

int conf_get_int(struct conf *c, const char *section, const char *label,
		 const char *key, long min, long max, long *out, char *err,
		 size_t errlen)
{
	struct conf_entry *e = conf_find(c, section, label, key);
	char *end;
	long v;

	if (!e)
		return 1;
	errno = 0;
	v = strtol(e->value, &end, 10);
	if (!*e->value || *end || errno) {
		conf_entry_error(c, e, err, errlen, "'%s' is not an integer",
				 e->value);
		return -EINVAL;
	}
	if (v < min || v > max) {
		conf_entry_error(c, e, err, errlen, "%ld is outside %ld..%ld",
				 v, min, max);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int conf_get_bool(struct conf *c, const char *section, const char *label,
		  const char *key, bool *out, char *err, size_t errlen)
{
	struct conf_entry *e = conf_find(c, section, label, key);
	static const char *const yes[] = {"1", "yes", "true", "on"};
	static const char *const no[] = {"0", "no", "false", "off"};
	size_t i;

	if (!e)
		return 1;
	for (i = 0; i < 4; i++) {
		if (!strcasecmp(e->value, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(e->value, no[i])) {
			*out = false;
			return 0;
		}
	}
	conf_entry_error(c, e, err, errlen,
			 "'%s' is not a boolean (yes/no, true/false, 1/0)",
			 e->value);
	return -EINVAL;
}

int conf_get_double(struct conf *c, const char *section, const char *label,
		    const char *key, double min, double max, double *out,
		    char *err, size_t errlen)
{
	struct conf_entry *e = conf_find(c, section, label, key);
	char *end;
	double v;

	if (!e)
		return 1;
	errno = 0;
	v = strtod(e->value, &end);
	if (!*e->value || *end || errno || !isfinite(v)) {
		conf_entry_error(c, e, err, errlen, "'%s' is not a number",
				 e->value);
		return -EINVAL;
	}
	if (v < min || v > max) {
		conf_entry_error(c, e, err, errlen, "%g is outside %g..%g", v,
				 min, max);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int conf_get_size(struct conf *c, const char *section, const char *label,
		  const char *key, uint64_t *out, char *err, size_t errlen)
{
	struct conf_entry *e = conf_find(c, section, label, key);
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!e)
		return 1;
	errno = 0;
	v = strtoull(e->value, &end, 10);
	if (!isdigit((unsigned char)*e->value) || errno)
		goto bad;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10;
		end++;
		break;
	case 'M':
	case 'm':
		shift = 20;
		end++;
		break;
	case 'G':
	case 'g':
		shift = 30;
		end++;
		break;
	case 'T':
	case 't':
		shift = 40;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' || *end == 'B' || *end == 'b')
		end +=
		    (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
	if (*end)
		goto bad;
	if (shift && v > (UINT64_MAX >> shift)) {
		conf_entry_error(c, e, err, errlen, "'%s' is too large",
				 e->value);
		return -ERANGE;
	}
	*out = (uint64_t)v << shift;
	return 0;
bad:
	conf_entry_error(c, e, err, errlen,
			 "'%s' is not a size (e.g. 512, 64K, 512M, 2G)",
			 e->value);
	return -EINVAL;
}

int conf_check_unused(const struct conf *c, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < c->n_entries; i++) {
		const struct conf_entry *e = &c->entries[i];

		if (e->used)
			continue;
		if (*e->section)
			set_err(err, errlen,
				"%s:%d: key '%s': unknown key in [%s%s%s]",
				c->path, e->line, e->key, e->section,
				*e->label ? " " : "", e->label);
		else
			set_err(err, errlen, "%s:%d: key '%s': unknown key",
				c->path, e->line, e->key);
		return -EINVAL;
	}
	return 0;
}
