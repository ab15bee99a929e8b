/*
 * good.c - test plugin that does everything right.
 *
 * Types:
 *   "test.good"         validator rejects payloads containing "reject";
 *                       result {"answer": N}, N the "answer" setting of the
 *                       plugin's block (default 42)
 *   "test.good.retry"   fails with a retryable error and retry_after(7)
 *
 * When TASKQ_TEST_PLUGIN_TRACE names a file, init and fini append
 * "good init" / "good fini" lines to it, so tests can count the calls.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <taskq/plugin.h>

struct good {
	long long answer;
};

static void good_trace(const char *what)
{
	const char *file = getenv("TASKQ_TEST_PLUGIN_TRACE");
	char line[64];
	int fd, n;

	if (!file || !*file)
		return;
	n = snprintf(line, sizeof(line), "good %s\n", what);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) != n)
		fprintf(stderr, "good: short trace write\n");
	close(fd);
}

static int good_validate(const struct taskq_host *host, const char *payload,
			 char *err, size_t errlen, void *user_data)
{
	(void)host;
	if (!user_data) {
		snprintf(err, errlen, "validator called without user_data");
		return 1;
	}
	if (strstr(payload, "reject")) {
		snprintf(err, errlen, "rejected on request");
		return 1;
	}
	return 0;
}

static enum taskq_outcome good_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	const struct good *g = user_data;
	char result[64];
	int n;

	host->log(job, TASKQ_LOG_DEBUG, "good handler running");
	n = snprintf(result, sizeof(result), "{\"answer\":%lld}", g->answer);
	if (n < 0 || (size_t)n >= sizeof(result))
		return TASKQ_FAIL;
	if (host->set_result(job, result) != TASKQ_OK)
		return TASKQ_FAIL;
	return TASKQ_DONE;
}

static enum taskq_outcome good_retry(const struct taskq_host *host,
				     struct taskq_job *job, void *user_data)
{
	(void)user_data;
	host->set_error(job, "try again later");
	host->retry_after(job, 7);
	return TASKQ_RETRY;
}

static int good_init(const struct taskq_host *host,
		     const struct taskq_config *cfg, void **user_data,
		     char *err, size_t errlen)
{
	struct good *g;
	long long answer = 42;
	int rc;

	rc = host->config_int(cfg, "answer", &answer);
	if (rc != TASKQ_OK && rc != TASKQ_ENOENT) {
		snprintf(err, errlen, "\"answer\" must be an integer");
		return 1;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	g->answer = answer;
	*user_data = g;
	host->log(NULL, TASKQ_LOG_INFO, "good plugin ready, answer %lld", answer);
	good_trace("init");
	return 0;
}

static void good_fini(void *user_data)
{
	free(user_data);
	good_trace("fini");
}

static const struct taskq_job_type good_types[] = {
	{ .name = "test.good", .handler = good_run, .validate = good_validate,
	  .max_attempts = 3, .timeout_s = 5 },
	{ .name = "test.good.retry", .handler = good_retry },
};

TASKQ_PLUGIN("good", "1.2.3", good_types, good_init, good_fini)
