/*
 * echo.c - the "echo" job type: the result is the payload, unchanged.
 *
 * Useful to check that the daemon, the queue and the workers are wired
 * together:
 *
 *     curl -d '{"type":"echo","payload":{"hello":"world"}}' .../v1/jobs
 */
#include <taskq/plugin.h>

static enum taskq_outcome echo_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	int rc;

	(void)user_data;
	rc = host->set_result(job, host->job_payload(job));
	if (rc != TASKQ_OK) {
		host->set_error(job, "echo: payload cannot be the result (error %d)",
				rc);
		return TASKQ_FAIL;
	}
	return TASKQ_DONE;
}

static const struct taskq_job_type echo_types[] = {
	{ .name = "echo", .handler = echo_run },
};

TASKQ_PLUGIN("echo", "1.0.0", echo_types, NULL, NULL)
