/*
 * flaky.c - the "flaky" job type: fails a planned number of times, then
 * completes.  For trying out retries and backoff.
 *
 * Payload {"fail_times": N, "permanent": B}: while the attempt number is
 * at most N (0 to 1000) the attempt fails, with a retryable error, or with
 * a permanent one when "permanent" (optional, default false) is true.
 * After that the job completes with {"attempts": K}, K the attempt number.
 */
#include <stdio.h>

#include <cjson/cJSON.h>
#include <taskq/plugin.h>

#define FLAKY_MAX_FAIL_TIMES 1000

struct flaky_plan {
	int fail_times;
	int permanent;
};

/* Read the plan from the payload: 0, or -1 with a reason in err. */
static int flaky_parse(const char *json, struct flaky_plan *plan, char *err,
		       size_t errlen)
{
	const cJSON *v;
	cJSON *doc;
	double d;
	int rc = -1;

	doc = cJSON_Parse(json);
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen,
			 "payload must be a JSON object like {\"fail_times\": 2}");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(doc, "fail_times");
	if (!v) {
		snprintf(err, errlen, "\"fail_times\" is required");
		goto out;
	}
	d = cJSON_IsNumber(v) ? v->valuedouble : -1;
	if (!cJSON_IsNumber(v) || !(d >= 0 && d <= FLAKY_MAX_FAIL_TIMES) ||
	    d != (double)(int)d) {
		snprintf(err, errlen,
			 "\"fail_times\" must be an integer from 0 to %d",
			 FLAKY_MAX_FAIL_TIMES);
		goto out;
	}
	plan->fail_times = (int)d;
	plan->permanent = 0;
	v = cJSON_GetObjectItemCaseSensitive(doc, "permanent");
	if (v) {
		if (!cJSON_IsBool(v)) {
			snprintf(err, errlen, "\"permanent\" must be true or false");
			goto out;
		}
		plan->permanent = cJSON_IsTrue(v);
	}
	rc = 0;
out:
	cJSON_Delete(doc);
	return rc;
}

static int flaky_validate(const struct taskq_host *host, const char *payload,
			  char *err, size_t errlen, void *user_data)
{
	struct flaky_plan plan;

	(void)host;
	(void)user_data;
	return flaky_parse(payload, &plan, err, errlen) < 0 ? 1 : 0;
}

static enum taskq_outcome flaky_run(const struct taskq_host *host,
				    struct taskq_job *job, void *user_data)
{
	struct flaky_plan plan;
	char reason[128];
	char result[64];
	int attempt = host->job_attempt(job);
	int n;

	(void)user_data;
	if (flaky_parse(host->job_payload(job), &plan, reason, sizeof(reason)) < 0) {
		host->set_error(job, "flaky: %s", reason);
		return TASKQ_FAIL;
	}
	if (attempt <= plan.fail_times) {
		host->set_error(job, "flaky failure on attempt %d of %d%s",
				attempt, plan.fail_times,
				plan.permanent ? " (permanent)" : "");
		return plan.permanent ? TASKQ_FAIL : TASKQ_RETRY;
	}
	n = snprintf(result, sizeof(result), "{\"attempts\":%d}", attempt);
	if (n < 0 || (size_t)n >= sizeof(result) ||
	    host->set_result(job, result) != TASKQ_OK) {
		host->set_error(job, "flaky: cannot set the result");
		return TASKQ_FAIL;
	}
	return TASKQ_DONE;
}

static const struct taskq_job_type flaky_types[] = {
	{ .name = "flaky", .handler = flaky_run, .validate = flaky_validate },
};

TASKQ_PLUGIN("flaky", "1.0.0", flaky_types, NULL, NULL)
