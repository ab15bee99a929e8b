/*
 * init_fail.c - test plugin whose init() refuses to start.  Its type
 * "test.init_fail" must never be registered.  When TASKQ_TEST_PLUGIN_TRACE
 * names a file, init appends "init_fail init" to it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <taskq/plugin.h>

static enum taskq_outcome fail_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	(void)user_data;
	host->set_error(job, "must never run");
	return TASKQ_FAIL;
}

static int fail_init(const struct taskq_host *host,
		     const struct taskq_config *cfg, void **user_data,
		     char *err, size_t errlen)
{
	const char *file = getenv("TASKQ_TEST_PLUGIN_TRACE");
	int fd;

	(void)host;
	(void)cfg;
	(void)user_data;
	if (file && *file) {
		fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (write(fd, "init_fail init\n", 15) != 15)
				fprintf(stderr, "init_fail: short trace write\n");
			close(fd);
		}
	}
	snprintf(err, errlen, "no widget configured");
	return 1;
}

static const struct taskq_job_type fail_types[] = {
	{ .name = "test.init_fail", .handler = fail_run },
};

TASKQ_PLUGIN("init_fail", "1.0.0", fail_types, fail_init, NULL)
