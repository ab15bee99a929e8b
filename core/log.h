/*
 * log.h - the daemon's log: one JSON object per line on stderr.
 *
 *   {"time":"2026-11-28T20:49:29.123Z","level":"info","msg":"job completed",
 *    "job_id":"…","type":"echo","attempt":1,"duration_ms":3,"status":"completed"}
 *
 * Levels are filtered before anything is formatted.  Messages are lowercase
 * without a final period; ids travel in fields, not in the text.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef TQ_LOG_H
#define TQ_LOG_H

#include <stdbool.h>

enum tq_log_level {
	TQ_LOG_ERROR = 0,
	TQ_LOG_WARN = 1,
	TQ_LOG_INFO = 2,
	TQ_LOG_DEBUG = 3,
};

/* Structured fields of a line; NULL strings, attempt 0 and duration_ms < 0
 * are left out.  Start from TQ_LOG_FIELDS_INIT. */
struct tq_log_fields {
	const char *job_id;
	const char *type;
	const char *status;
	const char *plugin;
	const char *file;
	int attempt;
	long long duration_ms;
};
#define TQ_LOG_FIELDS_INIT {.duration_ms = -1}

void tq_log_set_level(enum tq_log_level level);
bool tq_log_enabled(enum tq_log_level level);
/* "error", "warn", "info", "debug" -> 0, or -EINVAL. */
int tq_log_level_parse(const char *name, enum tq_log_level *out);
const char *tq_log_level_name(enum tq_log_level level);

void tq_log(enum tq_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void tq_logf(enum tq_log_level level, const struct tq_log_fields *f,
	     const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define tq_error(...) tq_log(TQ_LOG_ERROR, __VA_ARGS__)
#define tq_warn(...) tq_log(TQ_LOG_WARN, __VA_ARGS__)
#define tq_info(...) tq_log(TQ_LOG_INFO, __VA_ARGS__)
#define tq_debug(...) tq_log(TQ_LOG_DEBUG, __VA_ARGS__)

#endif
