/*
 * exit3.c - test plugin: job type "test.exit3" calls exit(3) from its
 * handler.  Only for isolation "process".
 */
#include <stdlib.h>

#include <taskq/plugin.h>

static enum taskq_outcome exit3_run(const struct taskq_host *host,
				    struct taskq_job *job, void *user_data)
{
	(void)host;
	(void)job;
	(void)user_data;
	exit(3);
}

static const struct taskq_job_type exit3_types[] = {
	{ .name = "test.exit3", .handler = exit3_run, .max_attempts = 2 },
};

TASKQ_PLUGIN("exit3", "1.0.0", exit3_types, NULL, NULL);
