/*
 * log.h: tiergate's logger, shared by the SPANK plugin, the daemon and tools.
 *
 * Always-on lines (log_err/log_warn/log_info) carry time, pid, program and
 * the caller's context string.  Debug lines (dbg) are switched on at run
 * time by a POSIX extended regex matched against "file:line:function"
 * (TIERGATE_DEBUG, or a plugstack argument); when debugging is off a dbg()
 * costs one predictable branch on a global.
 *
 * Secrets never reach a sink: every formatted line passes through
 * log_redact() first (JWTs, Bearer/MUNGE credentials, key=value pairs whose
 * key names a secret).
 */
#ifndef TIERGATE_LOG_H
#define TIERGATE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DBG,
};

/*
 * Where formatted, redacted lines go.  The default sink writes
 * "<time> <prog>[<pid>] <level>: <line>\n" to stderr; the plugin installs
 * one that calls slurm_error/slurm_info.  `line` has no trailing newline.
 */
typedef void log_sink_fn(enum log_level lvl, const char *line, void *arg);

/* Program name used by the default sink; NULL keeps the current one. */
void log_init(const char *prog);
void log_set_sink(log_sink_fn *sink, void *arg);
/* Prefix put before every line, e.g. "tiergate: remote: "; NULL clears. */
void log_set_prefix(const char *prefix);

/*
 * For an event loop's thread: the default sink keeps this thread's info
 * and debug lines in a buffer (up to 16 KiB) instead of one write(2) per
 * line; a warning or an error writes the buffer and itself at once.  The
 * loop calls log_flush() before it waits, so lines are at most one turn
 * late and in order; a crash loses at most that turn's info lines.
 */
void log_buffer_thread(bool on);
/* Write this thread's buffered lines now (a no-op when none). */
void log_flush(void);

/*
 * Switch debug lines on for call sites whose "file:line:func" matches the
 * extended regex `re`; NULL or "" switches them off.  Returns 0, or
 * -EINVAL when the regex does not compile (debugging is then left off).
 */
int log_set_debug(const char *re);
/* log_set_debug(getenv("TIERGATE_DEBUG")) */
int log_debug_from_env(void);

void log_msg(enum log_level lvl, const char *file, int line, const char *func,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void log_vmsg(enum log_level lvl, const char *file, int line, const char *func,
	      const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

#define log_err(...)                                                           \
	log_msg(LOG_LVL_ERR, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warn(...)                                                          \
	log_msg(LOG_LVL_WARN, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_info(...)                                                          \
	log_msg(LOG_LVL_INFO, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* One per dbg() call site: whether it matched, for which regex generation. */
struct log_dbg_site {
	const char *file;
	const char *func;
	int line;
	unsigned generation;
	int enabled;
};

/* Non-zero while any debug regex is set: the one branch a dbg() costs. */
extern int log_debug_on;
int log_dbg_site_enabled(struct log_dbg_site *site);

#define dbg(...)                                                               \
	do {                                                                   \
		if (__builtin_expect(log_debug_on, 0)) {                       \
			static struct log_dbg_site dbg_site_ = {               \
			    __FILE__, __func__, __LINE__, 0, 0};               \
			if (log_dbg_site_enabled(&dbg_site_))                  \
				log_msg(LOG_LVL_DBG, __FILE__, __LINE__,       \
					__func__, __VA_ARGS__);                \
		}                                                              \
	} while (0)

/*
 * Copy `in` to `out` (NUL-terminated, truncated to outlen) with secrets
 * replaced by "[REDACTED]".  Returns the length written.
 */
size_t log_redact(const char *in, char *out, size_t outlen);

#endif
