/*
 * job.c - one attempt of a job as a plugin sees it, and the table of host
 * services (struct taskq_host) every plugin receives.
 *
 * The services only touch the struct taskq_job they are given (plus the
 * log), so handlers running on different worker threads never share
 * state here.  Everything a plugin hands in is copied and bounded.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <libconfig.h>

#include "job.h"
#include "utf8.h"
#include "log.h"

/* Longest line a plugin logs through host->log() (bytes). */
#define TQ_JOB_LOG_MAX 1024
/* Longest progress message kept (bytes). */
#define TQ_PROGRESS_MESSAGE_MAX 256

/* The plugin whose init/fini/validate runs on this thread, for the log. */
static _Thread_local const char *job_log_plugin;

const char *tq_job_set_log_plugin(const char *plugin)
{
	const char *prev = job_log_plugin;

	job_log_plugin = plugin;
	return prev;
}

int64_t tq_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tq_job_init(struct taskq_job *job, const char *id, const char *type,
		 const char *payload, int attempt, int64_t deadline_ms)
{
	job->id = id ? id : "";
	job->type = type ? type : "";
	job->payload = payload ? payload : "null";
	job->attempt = attempt;
	job->deadline_ms = deadline_ms;
	atomic_init(&job->cancelled, 0);
	job->result = NULL;
	job->error = NULL;
	job->retry_after_s = 0;
	job->has_retry_after = false;
	job->progress = -1;
	job->progress_message = NULL;
	job->progress_dirty = false;
	pthread_mutex_init(&job->progress_lock, NULL);
}

void tq_job_clear(struct taskq_job *job)
{
	if (!job)
		return;
	free(job->result);
	free(job->error);
	free(job->progress_message);
	job->result = NULL;
	job->error = NULL;
	job->progress_message = NULL;
	job->retry_after_s = 0;
	job->has_retry_after = false;
	job->progress = -1;
	job->progress_dirty = false;
	pthread_mutex_destroy(&job->progress_lock);
	pthread_mutex_init(&job->progress_lock, NULL);
}


/* Format into a malloc'd string of at most max - 1 bytes; NULL on ENOMEM. */
static char *job_vformat(size_t max, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static char *job_vformat(size_t max, const char *fmt, va_list ap)
{
	char *buf;
	int n;

	buf = malloc(max);
	if (!buf)
		return NULL;
	n = vsnprintf(buf, max, fmt, ap);
	if (n < 0) {
		buf[0] = '\0';
	} else if ((size_t)n >= max) {
		tq_utf8_trim_partial(buf);
	} else {
		/* give back what the message did not use */
		char *shrunk = realloc(buf, (size_t)n + 1);

		if (shrunk)
			buf = shrunk;
	}
	return buf;
}

static void host_log(struct taskq_job *job, enum taskq_log_level level,
		     const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void host_log(struct taskq_job *job, enum taskq_log_level level,
		     const char *fmt, ...)
{
	struct tq_log_fields f = TQ_LOG_FIELDS_INIT;
	char msg[TQ_JOB_LOG_MAX];
	enum tq_log_level lvl;
	va_list ap;
	int l = (int)level;

	if (!fmt)
		return;
	if (l < (int)TASKQ_LOG_ERROR || l > (int)TASKQ_LOG_DEBUG)
		l = (int)TASKQ_LOG_INFO;
	/* the numbers agree: TASKQ_LOG_X == TQ_LOG_X */
	lvl = (enum tq_log_level)l;
	if (!tq_log_enabled(lvl))
		return;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	tq_utf8_trim_partial(msg);

	if (job) {
		f.job_id = job->id;
		f.type = job->type;
		f.attempt = job->attempt;
	}
	f.plugin = job_log_plugin;
	tq_logf(lvl, &f, "%s", msg);
}

static const char *host_job_id(const struct taskq_job *job)
{
	return job->id;
}

static const char *host_job_type(const struct taskq_job *job)
{
	return job->type;
}

static int host_job_attempt(const struct taskq_job *job)
{
	return job->attempt;
}

static const char *host_job_payload(const struct taskq_job *job)
{
	return job->payload;
}

static int64_t host_job_remaining_ms(const struct taskq_job *job)
{
	if (job->deadline_ms <= 0)
		return INT64_MAX;
	return job->deadline_ms - tq_now_ms();
}

static int host_set_result(struct taskq_job *job, const char *json)
{
	cJSON *doc;
	size_t len;
	char *copy;

	if (!job || !json)
		return TASKQ_EINVAL;
	len = strnlen(json, (size_t)TQ_RESULT_MAX + 1);
	if (len > TQ_RESULT_MAX)
		return TASKQ_ETOOLARGE;
	/* the whole text must be one JSON value, nothing after it */
	doc = cJSON_ParseWithOpts(json, NULL, 1);
	if (!doc)
		return TASKQ_EINVAL;
	cJSON_Delete(doc);

	copy = malloc(len + 1);
	if (!copy)
		return TASKQ_ENOMEM;
	memcpy(copy, json, len + 1);
	free(job->result);
	job->result = copy;
	return TASKQ_OK;
}

static int host_set_error(struct taskq_job *job, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int host_set_error(struct taskq_job *job, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (!job || !fmt)
		return TASKQ_EINVAL;
	va_start(ap, fmt);
	msg = job_vformat(TQ_ERROR_MAX, fmt, ap);
	va_end(ap);
	if (!msg)
		return TASKQ_ENOMEM;
	free(job->error);
	job->error = msg;
	return TASKQ_OK;
}

static int host_is_cancelled(const struct taskq_job *job)
{
	/* the flag is written by another thread; the const is the plugin's
	 * view, the atomic read does not modify the job */
	if (atomic_load(&((struct taskq_job *)job)->cancelled))
		return 1;
	return job->deadline_ms > 0 && tq_now_ms() >= job->deadline_ms;
}

int tq_job_set_progress(struct taskq_job *job, int percent, const char *message)
{
	char *copy = NULL;
	size_t len;

	if (!job || percent < 0 || percent > 100)
		return TASKQ_EINVAL;
	if (message) {
		len = strnlen(message, TQ_PROGRESS_MESSAGE_MAX - 1);
		copy = malloc(len + 1);
		if (!copy)
			return TASKQ_ENOMEM;
		memcpy(copy, message, len);
		copy[len] = '\0';
		tq_utf8_trim_partial(copy);
	}
	pthread_mutex_lock(&job->progress_lock);
	free(job->progress_message);
	job->progress_message = copy;
	job->progress = percent;
	job->progress_dirty = true;
	pthread_mutex_unlock(&job->progress_lock);
	return TASKQ_OK;
}

bool tq_job_take_progress(struct taskq_job *job, int *percent, char **message)
{
	bool dirty;

	pthread_mutex_lock(&job->progress_lock);
	dirty = job->progress_dirty;
	*percent = job->progress;
	*message = NULL;
	if (dirty && job->progress_message)
		*message = strdup(job->progress_message);
	job->progress_dirty = false;
	pthread_mutex_unlock(&job->progress_lock);
	return dirty;
}

static void host_retry_after(struct taskq_job *job, unsigned int seconds)
{
	if (!job)
		return;
	job->retry_after_s = seconds;
	job->has_retry_after = true;
}

/*
 * A struct taskq_config is the plugin's libconfig group; the opaque type
 * only keeps plugins from depending on libconfig.
 */
static int host_config_lookup(const struct taskq_config *cfg, const char *name,
			      const void *out, const config_setting_t **found)
{
	config_setting_t *group = (config_setting_t *)(const void *)cfg;
	const config_setting_t *s;

	if (!name || !out)
		return TASKQ_EINVAL;
	if (!group)
		return TASKQ_ENOENT;
	s = config_setting_lookup(group, name);
	if (!s)
		return TASKQ_ENOENT;
	*found = s;
	return TASKQ_OK;
}

static int host_config_string(const struct taskq_config *cfg, const char *name,
			      const char **out)
{
	const config_setting_t *s;
	int rc;

	rc = host_config_lookup(cfg, name, out, &s);
	if (rc != TASKQ_OK)
		return rc;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return TASKQ_ETYPE;
	*out = config_setting_get_string(s);
	return TASKQ_OK;
}

static int host_config_int(const struct taskq_config *cfg, const char *name,
			   long long *out)
{
	const config_setting_t *s;
	int rc;

	rc = host_config_lookup(cfg, name, out, &s);
	if (rc != TASKQ_OK)
		return rc;
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		*out = config_setting_get_int(s);
		return TASKQ_OK;
	case CONFIG_TYPE_INT64:
		*out = config_setting_get_int64(s);
		return TASKQ_OK;
	default:
		return TASKQ_ETYPE;
	}
}

static int host_config_bool(const struct taskq_config *cfg, const char *name,
			    int *out)
{
	const config_setting_t *s;
	int rc;

	rc = host_config_lookup(cfg, name, out, &s);
	if (rc != TASKQ_OK)
		return rc;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return TASKQ_ETYPE;
	*out = config_setting_get_bool(s) ? 1 : 0;
	return TASKQ_OK;
}

const struct taskq_host tq_host = {
	.struct_size = sizeof(struct taskq_host),
	.abi_major = TASKQ_ABI_MAJOR,
	.abi_minor = TASKQ_ABI_MINOR,
	.log = host_log,
	.job_id = host_job_id,
	.job_type = host_job_type,
	.job_attempt = host_job_attempt,
	.job_payload = host_job_payload,
	.job_remaining_ms = host_job_remaining_ms,
	.set_result = host_set_result,
	.set_error = host_set_error,
	.is_cancelled = host_is_cancelled,
	.set_progress = tq_job_set_progress,
	.retry_after = host_retry_after,
	.config_string = host_config_string,
	.config_int = host_config_int,
	.config_bool = host_config_bool,
};
