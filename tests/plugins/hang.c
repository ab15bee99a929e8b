/*
 * hang.c - test plugin: job type "test.hang" never returns and ignores
 * cancellation.
 *
 * Payload {"ignore_term": true} also ignores SIGTERM, so only SIGKILL
 * stops it.  Only for isolation "process".
 */
#include <signal.h>
#include <string.h>
#include <time.h>

#include <taskq/plugin.h>

/* "ignore_term": true in the payload (spaces allowed) */
static int hang_ignore_term(const char *json)
{
	const char *p = strstr(json, "\"ignore_term\"");

	if (!p)
		return 0;
	p += strlen("\"ignore_term\"");
	while (*p == ' ' || *p == ':')
		p++;
	return strncmp(p, "true", 4) == 0;
}

static enum taskq_outcome hang_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };

	(void)user_data;
	if (hang_ignore_term(host->job_payload(job)))
		signal(SIGTERM, SIG_IGN);
	for (;;) {
		/* asks, and does not care */
		(void)host->is_cancelled(job);
		nanosleep(&ts, NULL);
	}
	return TASKQ_RETRY; /* not reached */
}

static const struct taskq_job_type hang_types[] = {
	{ .name = "test.hang", .handler = hang_run, .max_attempts = 2 },
};

TASKQ_PLUGIN("hang", "1.0.0", hang_types, NULL, NULL);
