/*
 * job.h - one attempt of a job as a plugin sees it (struct taskq_job) and
 * the host services table handed to plugins.
 */
#ifndef TQ_JOB_H
#define TQ_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <taskq/plugin.h>

/* Largest result a handler may set (bytes of JSON text). */
#define TQ_RESULT_MAX (1024 * 1024)
/* Longest error message kept (bytes). */
#define TQ_ERROR_MAX 2048

struct taskq_job {
	/* borrowed from the claim, valid for the attempt */
	const char *id;
	const char *type;
	const char *payload;
	int attempt;
	int64_t deadline_ms; /* tq_now_ms() clock; 0 = no deadline */
	atomic_int cancelled;

	/* set by the plugin through the host; owned here */
	char *result;
	char *error;
	unsigned int retry_after_s;
	bool has_retry_after;
	int progress; /* -1 = none */
	char *progress_message;
};

/* Services table given to every plugin. */
extern const struct taskq_host tq_host;

void tq_job_init(struct taskq_job *job, const char *id, const char *type,
		 const char *payload, int attempt, int64_t deadline_ms);
/* Frees what the plugin set; the job can be initialised again. */
void tq_job_clear(struct taskq_job *job);

/*
 * Name the plugin that host->log() lines of the calling thread belong to
 * (the "plugin" field; NULL for none).  The plugin host sets it around
 * init(), fini() and validate(), where no job exists.  The string is
 * borrowed until it is replaced.  Returns the previous name.
 */
const char *tq_job_set_log_plugin(const char *plugin);

/* Monotonic milliseconds. */
int64_t tq_now_ms(void);

#endif
