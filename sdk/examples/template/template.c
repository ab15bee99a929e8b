/*
 * template.c - a TaskQ plugin to copy from: one job type, "template.hello",
 * with a payload validator, a config block, per-plugin state, progress,
 * cancellation and the three outcomes.
 *
 *     POST /v1/jobs {"type":"template.hello","payload":{"name":"world"}}
 *     -> result {"greeting":"hello","attempt":1,"payload":{"name":"world"}}
 *
 * Its configuration block in taskq.conf (optional):
 *
 *     plugin = { template = { greeting = "hi"; }; };
 *
 * Rename the plugin ("template"), the type ("template.hello") and the file
 * when you start your own.  Build it with the Makefile (pkg-config) or
 * CMakeLists.txt (find_package(TaskQPlugin)) beside this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <taskq/plugin.h>

#define GREETING_MAX 64

/* State of the plugin, made by init(), freed by fini(), shared by every
 * handler call: read-only after init(), so no lock is needed. */
struct hello_state {
	char greeting[GREETING_MAX + 1];
};

/* The greeting goes into the JSON result as is: refuse what would need
 * escaping rather than escape it. */
static int greeting_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > GREETING_MAX)
		return 0;
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			return 0;
	return 1;
}

static int hello_init(const struct taskq_host *host,
		      const struct taskq_config *cfg, void **user_data,
		      char *err, size_t errlen)
{
	struct hello_state *st;
	const char *greeting = "hello";
	int rc;

	/* TASKQ_ENOENT (no block, no such setting) keeps the default. */
	rc = host->config_string(cfg, "greeting", &greeting);
	if (rc != TASKQ_OK && rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "greeting must be a string");
		return -1;
	}
	if (!greeting_ok(greeting)) {
		snprintf(err, errlen,
			 "greeting must be 1-%d characters without quotes, "
			 "backslashes or control characters", GREETING_MAX);
		return -1;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(st->greeting, sizeof(st->greeting), "%s", greeting);
	*user_data = st;
	host->log(NULL, TASKQ_LOG_INFO, "greeting is \"%s\"", st->greeting);
	return 0;
}

static void hello_fini(void *user_data)
{
	free(user_data);
}

/* Called on an API thread when the job is submitted: fast, no I/O.  The
 * payload is valid JSON already; this type wants an object. */
static int hello_validate(const struct taskq_host *host,
			  const char *payload_json, char *err, size_t errlen,
			  void *user_data)
{
	const char *p = payload_json;

	(void)host;
	(void)user_data;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != '{') {
		snprintf(err, errlen, "payload must be a JSON object");
		return -1;
	}
	return 0;
}

/* One attempt.  May run on several worker threads at once. */
static enum taskq_outcome hello_run(const struct taskq_host *host,
				    struct taskq_job *job, void *user_data)
{
	const struct hello_state *st = user_data;
	const char *payload = host->job_payload(job);
	int attempt = host->job_attempt(job);
	enum taskq_outcome outcome = TASKQ_DONE;
	char *result = NULL;
	size_t len;
	int n, rc;

	host->log(job, TASKQ_LOG_INFO, "greeting with \"%s\"", st->greeting);

	/* Long handlers check this between steps and give up quickly. */
	if (host->is_cancelled(job)) {
		host->set_error(job, "cancelled before it started");
		return TASKQ_RETRY;
	}
	host->set_progress(job, 50, "building the greeting");

	len = strlen(payload) + strlen(st->greeting) + 64;
	result = malloc(len);
	if (!result) {
		/* Transient: another attempt may have the memory. */
		host->set_error(job, "out of memory");
		return TASKQ_RETRY;
	}
	n = snprintf(result, len, "{\"greeting\":\"%s\",\"attempt\":%d,\"payload\":%s}",
		     st->greeting, attempt, payload);
	if (n < 0 || (size_t)n >= len) {
		host->set_error(job, "result does not fit");
		outcome = TASKQ_FAIL;
		goto out;
	}

	/* The host copies the result; ours is freed below. */
	rc = host->set_result(job, result);
	if (rc != TASKQ_OK) {
		/* Retrying would give the same answer: permanent failure. */
		host->set_error(job, "result refused by the host (error %d)", rc);
		outcome = TASKQ_FAIL;
		goto out;
	}
	host->set_progress(job, 100, NULL);
out:
	free(result);
	return outcome;
}

static const struct taskq_job_type template_types[] = {
	{
		.name = "template.hello",
		.handler = hello_run,
		.validate = hello_validate,
		.max_attempts = 3, /* 0 would take jobs.max_attempts */
		.timeout_s = 30,   /* 0 would take jobs.timeout_s */
	},
};

TASKQ_PLUGIN("template", "1.0.0", template_types, hello_init, hello_fini)
