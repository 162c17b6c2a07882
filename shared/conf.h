/*
 * conf.h: the INI-style configuration format shared by tiergated and the
 * tier table.
 *
 *   # comment (also ';')
 *   key = value                  top-level keys (section "")
 *   [section]                    e.g. [gateway]
 *   [kind name]                  e.g. [tier premium], [site alpha]
 *   key = "quoted value"         quotes keep leading/trailing blanks
 *
 * Keys and section names are [A-Za-z0-9_.-]+.  A key may not repeat within
 * one section.  Every error names the file, the line and the key, as
 * "FILE:LINE: key 'K': what is wrong".
 */
#ifndef TIERGATE_CONF_H
#define TIERGATE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_entry {
	const char *section; /* "" for top level, else e.g. "tier" */
	const char *label;   /* "premium" in [tier premium], else "" */
	const char *key;
	const char *value;
	int line;
	bool
	    used; /* set by the getters; conf_check_unused() reports the rest */
};

struct conf {
	char *path;
	struct conf_entry *entries;
	size_t n_entries;
	/* section headers in file order, so empty sections are visible */
	struct conf_section {
		const char *section;
		const char *label;
		int line;
	} * sections;
	size_t n_sections;
	char *arena; /* all strings above point into it */
};

/*
 * Parse `path`.  On success *out is a new conf (free with conf_free) and 0
 * is returned; on failure a negative errno and `err` holds the message.
 */
int conf_parse_file(const char *path, struct conf **out, char *err,
		    size_t errlen);
/* Parse an in-memory text; `name` stands for the file name in errors. */
int conf_parse_string(const char *name, const char *text, struct conf **out,
		      char *err, size_t errlen);
void conf_free(struct conf *c);

/* First entry for (section, label, key), or NULL.  Marks it used. */
struct conf_entry *conf_find(struct conf *c, const char *section,
			     const char *label, const char *key);

/*
 * Typed getters: 0 when found and valid, 1 when absent (*out untouched),
 * negative errno with `err` set when present but invalid.
 */
int conf_get_str(struct conf *c, const char *section, const char *label,
		 const char *key, const char **out, char *err, size_t errlen);
int conf_get_int(struct conf *c, const char *section, const char *label,
		 const char *key, long min, long max, long *out, char *err,
		 size_t errlen);
int conf_get_bool(struct conf *c, const char *section, const char *label,
		  const char *key, bool *out, char *err, size_t errlen);
int conf_get_double(struct conf *c, const char *section, const char *label,
		    const char *key, double min, double max, double *out,
		    char *err, size_t errlen);
/* "512", "512K", "64M", "2G" (binary units) into bytes. */
int conf_get_size(struct conf *c, const char *section, const char *label,
		  const char *key, uint64_t *out, char *err, size_t errlen);

/* Format "FILE:LINE: key 'K': ..." for an entry into err. */
void conf_entry_error(const struct conf *c, const struct conf_entry *e,
		      char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* -EINVAL naming the first entry no getter asked for (a misspelt key). */
int conf_check_unused(const struct conf *c, char *err, size_t errlen);

#endif
