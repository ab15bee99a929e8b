/*
 * log.c - JSON lines on stderr (see log.h).
 */
#include "log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = TQ_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void tq_log_set_level(enum tq_log_level level)
{
	atomic_store(&log_level, level);
}

bool tq_log_enabled(enum tq_log_level level)
{
	return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

int tq_log_level_parse(const char *name, enum tq_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*out = (enum tq_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*out = TQ_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

const char *tq_log_level_name(enum tq_log_level level)
{
	if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[level];
	return "?";
}

static void format_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000L));
}

static void emit(enum tq_log_level level, const struct tq_log_fields *f,
		 const char *fmt, va_list ap)
{
	char msg[1024], when[40];
	cJSON *o;
	char *line;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	format_time(when, sizeof(when));

	o = cJSON_CreateObject();
	if (!o)
		goto raw;
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddStringToObject(o, "level", tq_log_level_name(level));
	cJSON_AddStringToObject(o, "msg", msg);
	if (f) {
		if (f->job_id)
			cJSON_AddStringToObject(o, "job_id", f->job_id);
		if (f->type)
			cJSON_AddStringToObject(o, "type", f->type);
		if (f->attempt > 0)
			cJSON_AddNumberToObject(o, "attempt", f->attempt);
		if (f->duration_ms >= 0)
			cJSON_AddNumberToObject(o, "duration_ms", (double)f->duration_ms);
		if (f->status)
			cJSON_AddStringToObject(o, "status", f->status);
		if (f->plugin)
			cJSON_AddStringToObject(o, "plugin", f->plugin);
		if (f->file)
			cJSON_AddStringToObject(o, "file", f->file);
	}
	line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line)
		goto raw;
	{
		size_t n = strlen(line);
		char *buf = realloc(line, n + 2);

		if (!buf) {
			free(line);
			goto raw;
		}
		buf[n] = '\n';
		buf[n + 1] = '\0';
		/* One write per line keeps lines whole between threads. */
		if (write(STDERR_FILENO, buf, n + 1) < 0) {
			/* nowhere left to report it */
		}
		free(buf);
	}
	return;
raw:
	fprintf(stderr, "%s %s %s\n", when, tq_log_level_name(level), msg);
}

void tq_log(enum tq_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!tq_log_enabled(level))
		return;
	va_start(ap, fmt);
	emit(level, NULL, fmt, ap);
	va_end(ap);
}

void tq_logf(enum tq_log_level level, const struct tq_log_fields *f,
	     const char *fmt, ...)
{
	va_list ap;

	if (!tq_log_enabled(level))
		return;
	va_start(ap, fmt);
	emit(level, f, fmt, ap);
	va_end(ap);
}
