/*
 * good_dup.c - test plugin that claims "test.good" again (good.c owns
 * it).  Its file name sorts after good.so, so in a directory holding both
 * the first loaded, good.so, keeps the type and this one is skipped whole:
 * its own "test.good.dup" is not registered either and init never runs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <taskq/plugin.h>

static enum taskq_outcome dup_run(const struct taskq_host *host,
				  struct taskq_job *job, void *user_data)
{
	(void)user_data;
	host->set_result(job, "{\"from\":\"good_dup\"}");
	return TASKQ_DONE;
}

static int dup_init(const struct taskq_host *host,
		    const struct taskq_config *cfg, void **user_data,
		    char *err, size_t errlen)
{
	const char *file = getenv("TASKQ_TEST_PLUGIN_TRACE");
	int fd;

	(void)host;
	(void)cfg;
	(void)user_data;
	(void)err;
	(void)errlen;
	if (!file || !*file)
		return 0;
	fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	if (write(fd, "good_dup init\n", 14) != 14)
		fprintf(stderr, "good_dup: short trace write\n");
	close(fd);
	return 0;
}

static const struct taskq_job_type dup_types[] = {
	{ .name = "test.good.dup", .handler = dup_run },
	{ .name = "test.good", .handler = dup_run },
};

TASKQ_PLUGIN("good_dup", "0.1.0", dup_types, dup_init, NULL)
