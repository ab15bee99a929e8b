/*
 * bad_name.c - test plugin with a name outside [a-z0-9_-]{1,64}; it could
 * not name a configuration block, so the host refuses it.
 */
#include <taskq/plugin.h>

static enum taskq_outcome bad_run(const struct taskq_host *host,
				  struct taskq_job *job, void *user_data)
{
	(void)host;
	(void)job;
	(void)user_data;
	return TASKQ_DONE;
}

static const struct taskq_job_type bad_types[] = {
	{ .name = "test.bad_name", .handler = bad_run },
};

TASKQ_PLUGIN("Bad Name", "1.0.0", bad_types, NULL, NULL)
