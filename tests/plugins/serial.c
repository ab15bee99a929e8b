/*
 * Test plugin: "test.serial" is flagged TASKQ_TYPE_SERIAL, "test.parallel"
 * is not.  Each attempt counts how many attempts of its type run at once
 * and reports the most it saw: {"max": N}.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <taskq/plugin.h>

static atomic_int running[2], most[2];

static enum taskq_outcome run(const struct taskq_host *host, struct taskq_job *job, int k)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
	char result[32];
	int now = atomic_fetch_add(&running[k], 1) + 1, seen = atomic_load(&most[k]);

	while (now > seen && !atomic_compare_exchange_weak(&most[k], &seen, now))
		;
	nanosleep(&ts, NULL);
	atomic_fetch_sub(&running[k], 1);
	snprintf(result, sizeof(result), "{\"max\":%d}", atomic_load(&most[k]));
	host->set_result(job, result);
	return TASKQ_DONE;
}

static enum taskq_outcome serial(const struct taskq_host *host, struct taskq_job *job,
				 void *user_data)
{
	(void)user_data;
	return run(host, job, 0);
}

static enum taskq_outcome parallel(const struct taskq_host *host, struct taskq_job *job,
				   void *user_data)
{
	(void)user_data;
	return run(host, job, 1);
}

static const struct taskq_job_type types[] = {
	{.name = "test.serial", .handler = serial, .flags = TASKQ_TYPE_SERIAL},
	{.name = "test.parallel", .handler = parallel},
};

TASKQ_PLUGIN("serial", "1.0.0", types, NULL, NULL);
