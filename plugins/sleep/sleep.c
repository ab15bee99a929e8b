/*
 * sleep.c - the "sleep" job type: wait, then complete.
 *
 * Payload {"ms": N} with N an integer from 0 to 3600000.  The handler
 * sleeps in slices of about 10 ms, reports progress, and stops as soon as
 * the job is cancelled or its timeout passes (the attempt then fails with
 * a retryable "cancelled" error).  Result {"slept_ms": N}.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <taskq/plugin.h>

#define SLEEP_MAX_MS 3600000LL
#define SLEEP_SLICE_MS 10LL

/* Read "ms" from the payload: 0, or -1 with a reason in err. */
static int sleep_parse(const char *json, long long *ms, char *err,
		       size_t errlen)
{
	const cJSON *v;
	cJSON *doc;
	double d;
	int rc = -1;

	doc = cJSON_Parse(json);
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen,
			 "payload must be a JSON object like {\"ms\": 250}");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(doc, "ms");
	if (!v) {
		snprintf(err, errlen, "\"ms\" is required");
		goto out;
	}
	if (!cJSON_IsNumber(v)) {
		snprintf(err, errlen, "\"ms\" must be a number");
		goto out;
	}
	d = v->valuedouble;
	if (!(d >= 0 && d <= (double)SLEEP_MAX_MS) ||
	    d != (double)(long long)d) {
		snprintf(err, errlen, "\"ms\" must be an integer from 0 to %lld",
			 SLEEP_MAX_MS);
		goto out;
	}
	*ms = (long long)d;
	rc = 0;
out:
	cJSON_Delete(doc);
	return rc;
}

static long long sleep_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_for(long long ms)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int sleep_validate(const struct taskq_host *host, const char *payload,
			  char *err, size_t errlen, void *user_data)
{
	long long ms;

	(void)host;
	(void)user_data;
	return sleep_parse(payload, &ms, err, errlen) < 0 ? 1 : 0;
}

static enum taskq_outcome sleep_run(const struct taskq_host *host,
				    struct taskq_job *job, void *user_data)
{
	long long ms, start, elapsed, left;
	char reason[128];
	char result[64];
	int pct, last_pct = -1;
	int n;

	(void)user_data;
	if (sleep_parse(host->job_payload(job), &ms, reason, sizeof(reason)) < 0) {
		host->set_error(job, "sleep: %s", reason);
		return TASKQ_FAIL;
	}

	start = sleep_now_ms();
	for (;;) {
		elapsed = sleep_now_ms() - start;
		if (elapsed >= ms)
			break;
		if (host->is_cancelled(job)) {
			if (host->job_remaining_ms(job) <= 0)
				host->set_error(job,
						"cancelled: timeout passed after %lld of %lld ms",
						elapsed, ms);
			else
				host->set_error(job, "cancelled after %lld of %lld ms",
						elapsed, ms);
			return TASKQ_RETRY;
		}
		pct = (int)(elapsed * 100 / ms);
		if (pct / 10 != last_pct / 10) {
			host->set_progress(job, pct, NULL);
			last_pct = pct;
		}
		left = ms - elapsed;
		sleep_for(left < SLEEP_SLICE_MS ? left : SLEEP_SLICE_MS);
	}

	n = snprintf(result, sizeof(result), "{\"slept_ms\":%lld}", ms);
	if (n < 0 || (size_t)n >= sizeof(result) ||
	    host->set_result(job, result) != TASKQ_OK) {
		host->set_error(job, "sleep: cannot set the result");
		return TASKQ_FAIL;
	}
	host->set_progress(job, 100, NULL);
	return TASKQ_DONE;
}

static const struct taskq_job_type sleep_types[] = {
	{ .name = "sleep", .handler = sleep_run, .validate = sleep_validate },
};

TASKQ_PLUGIN("sleep", "1.0.0", sleep_types, NULL, NULL)
