/*
 * crash.c - test plugin: job type "test.crash" kills its own process.
 *
 * Payload {"how": "segv"} (the default) raises SIGSEGV, {"how": "abort"}
 * calls abort().  Type "test.crash.ok" of the same plugin completes with
 * {"pid": P}, to show that the plugin's next job runs.  Only ever run
 * "test.crash" with isolation "process": in a worker thread it takes the
 * daemon down, which is what isolation prevents.
 * raise() rather than a wild store keeps the signal the same under the
 * sanitizers.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <taskq/plugin.h>

static enum taskq_outcome crash_run(const struct taskq_host *host,
				    struct taskq_job *job, void *user_data)
{
	(void)user_data;
	host->log(job, TASKQ_LOG_INFO, "crashing on purpose");
	if (strstr(host->job_payload(job), "\"abort\""))
		abort();
	raise(SIGSEGV);
	host->set_error(job, "still alive after SIGSEGV");
	return TASKQ_FAIL;
}

static enum taskq_outcome crash_ok_run(const struct taskq_host *host,
				       struct taskq_job *job, void *user_data)
{
	char result[48];

	(void)user_data;
	snprintf(result, sizeof(result), "{\"pid\":%ld}", (long)getpid());
	host->set_result(job, result);
	return TASKQ_DONE;
}

static const struct taskq_job_type crash_types[] = {
	{ .name = "test.crash", .handler = crash_run, .max_attempts = 2 },
	{ .name = "test.crash.ok", .handler = crash_ok_run },
};

TASKQ_PLUGIN("crash", "1.0.0", crash_types, NULL, NULL);
