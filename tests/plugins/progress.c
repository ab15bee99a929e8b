/*
 * progress.c - test plugin: job type "test.progress" reports progress and
 * honours cancellation.
 *
 * Payload {"steps": N, "step_ms": M} (N 1-100, M 0-60000): N steps of M
 * milliseconds, after each set_progress(100 * i / N, "step i of N").  It
 * checks is_cancelled() every 5 ms; when cancelled it fails with the
 * retryable error "stopped: cancelled at step i".  Result
 * {"pid": P, "steps": N}: P tells a test which process ran it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <taskq/plugin.h>

static long long progress_member(const char *json, const char *key,
				 long long lo, long long hi, long long dflt)
{
	char pattern[32];
	const char *p;
	long long v;
	char *end;

	snprintf(pattern, sizeof(pattern), "\"%s\":", key);
	p = strstr(json, pattern);
	if (!p)
		return dflt;
	p += strlen(pattern);
	errno = 0;
	v = strtoll(p, &end, 10);
	if (errno || end == p || v < lo || v > hi)
		return -1;
	return v;
}

static enum taskq_outcome progress_run(const struct taskq_host *host,
				       struct taskq_job *job, void *user_data)
{
	const char *payload = host->job_payload(job);
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 5 * 1000 * 1000 };
	long long steps, step_ms, i, slept;
	char msg[64], result[96];

	(void)user_data;
	steps = progress_member(payload, "steps", 1, 100, 3);
	step_ms = progress_member(payload, "step_ms", 0, 60000, 10);
	if (steps < 0 || step_ms < 0) {
		host->set_error(job, "bad payload");
		return TASKQ_FAIL;
	}
	for (i = 1; i <= steps; i++) {
		for (slept = 0; slept < step_ms; slept += 5) {
			if (host->is_cancelled(job)) {
				host->set_error(job, "stopped: cancelled at step %lld", i);
				return TASKQ_RETRY;
			}
			nanosleep(&ts, NULL);
		}
		snprintf(msg, sizeof(msg), "step %lld of %lld", i, steps);
		host->set_progress(job, (int)(100 * i / steps), msg);
	}
	snprintf(result, sizeof(result), "{\"pid\":%ld,\"steps\":%lld}",
		 (long)getpid(), steps);
	host->set_result(job, result);
	return TASKQ_DONE;
}

static const struct taskq_job_type progress_types[] = {
	{ .name = "test.progress", .handler = progress_run },
};

TASKQ_PLUGIN("progress", "1.0.0", progress_types, NULL, NULL);
