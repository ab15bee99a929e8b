/*
 * swap_v2.c - test plugin "swap", version 2: job type "test.swap".
 *
 * swap_v1.so and swap_v2.so are two builds of the same plugin; the reload
 * tests copy one, then the other, to the same file name in a plugin
 * directory (never both into one directory: they claim the same name).
 * Payload {"ms": N} (0-60000, default 0): sleeps N ms, stopping early when
 * cancelled.  Result {"version": 2, "pid": P}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <taskq/plugin.h>

static enum taskq_outcome swap_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	const char *p = strstr(host->job_payload(job), "\"ms\":");
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 5 * 1000 * 1000 };
	long long ms = 0, slept;
	char result[64];
	char *end;

	(void)user_data;
	if (p) {
		errno = 0;
		ms = strtoll(p + 5, &end, 10);
		if (errno || end == p + 5 || ms < 0 || ms > 60000) {
			host->set_error(job, "\"ms\" must be an integer from 0 to 60000");
			return TASKQ_FAIL;
		}
	}
	for (slept = 0; slept < ms; slept += 5) {
		if (host->is_cancelled(job)) {
			host->set_error(job, "cancelled");
			return TASKQ_RETRY;
		}
		nanosleep(&ts, NULL);
	}
	snprintf(result, sizeof(result), "{\"version\":2,\"pid\":%ld}",
		 (long)getpid());
	host->set_result(job, result);
	return TASKQ_DONE;
}

static const struct taskq_job_type swap_types[] = {
	{ .name = "test.swap", .handler = swap_run },
};

TASKQ_PLUGIN("swap", "2", swap_types, NULL, NULL);
