/*
 * job.h - one attempt of a job as a plugin sees it (struct taskq_job) and
 * the host services table handed to plugins.
 */
#ifndef TQ_JOB_H
#define TQ_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <taskq/plugin.h>

/* Largest result a handler may set (bytes of JSON text). */
#define TQ_RESULT_MAX (1024 * 1024)
/* Longest error message kept (bytes). */
#define TQ_ERROR_MAX 2048

/* Why job->cancelled was set (any non-zero value makes is_cancelled()
 * true). */
enum tq_cancel_reason {
	TQ_CANCEL_NONE = 0,
	TQ_CANCEL_REQUESTED = 1,  /* POST /v1/jobs/{id}/cancel */
	TQ_CANCEL_SHUTDOWN = 2,   /* the daemon stops; the job is handed back */
	TQ_CANCEL_LEASE_LOST = 3, /* the job moved on; any outcome is fenced */
};

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
	/* progress: written by the handler's thread, read by the heartbeat;
	 * guarded by progress_lock */
	pthread_mutex_t progress_lock;
	int progress; /* -1 = none */
	char *progress_message;
	bool progress_dirty; /* changed since tq_job_take_progress() */
};

/* Services table given to every plugin. */
extern const struct taskq_host tq_host;

void tq_job_init(struct taskq_job *job, const char *id, const char *type,
		 const char *payload, int attempt, int64_t deadline_ms);
/* Frees what the plugin set; the job can be initialised again. */
void tq_job_clear(struct taskq_job *job);

/* Set the progress (any thread); as host->set_progress(). */
int tq_job_set_progress(struct taskq_job *job, int percent, const char *message);
/* When the progress changed since the last call: true, with the percent
 * and a copy of the message (malloc'd or NULL; caller frees).  Thread-safe. */
bool tq_job_take_progress(struct taskq_job *job, int *percent, char **message);

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
