/*
 * test_job.c - the host services a plugin gets (struct taskq_host), run
 * against a struct taskq_job as a worker would set it up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libconfig.h>

#include "job.h"
#include "log.h"

#define JOB_ID "0b9e2f0c-4a4e-4a8e-9a53-2f1d7c3e5a11"

static void job_start(struct taskq_job *job, const char *payload, int attempt,
		      int64_t deadline_ms)
{
	tq_job_init(job, JOB_ID, "demo", payload, attempt, deadline_ms);
}

static void test_host_table(void **state)
{
	(void)state;
	assert_int_equal(tq_host.struct_size, sizeof(struct taskq_host));
	assert_int_equal(tq_host.abi_major, TASKQ_ABI_MAJOR);
	assert_int_equal(tq_host.abi_minor, TASKQ_ABI_MINOR);
	assert_true(TASKQ_HOST_HAS(&tq_host, config_bool));
	assert_non_null(tq_host.log);
	assert_non_null(tq_host.job_id);
	assert_non_null(tq_host.job_type);
	assert_non_null(tq_host.job_attempt);
	assert_non_null(tq_host.job_payload);
	assert_non_null(tq_host.job_remaining_ms);
	assert_non_null(tq_host.set_result);
	assert_non_null(tq_host.set_error);
	assert_non_null(tq_host.is_cancelled);
	assert_non_null(tq_host.set_progress);
	assert_non_null(tq_host.retry_after);
	assert_non_null(tq_host.config_string);
	assert_non_null(tq_host.config_int);
	assert_non_null(tq_host.config_bool);
}

static void test_accessors(void **state)
{
	struct taskq_job job;

	(void)state;
	job_start(&job, "{\"a\":1}", 3, 0);
	assert_string_equal(tq_host.job_id(&job), JOB_ID);
	assert_string_equal(tq_host.job_type(&job), "demo");
	assert_int_equal(tq_host.job_attempt(&job), 3);
	assert_string_equal(tq_host.job_payload(&job), "{\"a\":1}");
	assert_int_equal(job.progress, -1);
	assert_null(job.result);
	assert_null(job.error);
	assert_false(job.has_retry_after);
	tq_job_clear(&job);

	/* the payload is never NULL for a plugin */
	job_start(&job, NULL, 1, 0);
	assert_string_equal(tq_host.job_payload(&job), "null");
	tq_job_clear(&job);
}

static void test_set_result(void **state)
{
	struct taskq_job job;

	(void)state;
	job_start(&job, "{}", 1, 0);
	assert_int_equal(tq_host.set_result(&job, "{\"ok\":true}"), TASKQ_OK);
	assert_string_equal(job.result, "{\"ok\":true}");
	/* a later result replaces the earlier one */
	assert_int_equal(tq_host.set_result(&job, " [1, 2, 3] "), TASKQ_OK);
	assert_string_equal(job.result, " [1, 2, 3] ");
	assert_int_equal(tq_host.set_result(&job, "42"), TASKQ_OK);
	assert_string_equal(job.result, "42");

	/* not JSON: refused, the previous result stays */
	assert_int_equal(tq_host.set_result(&job, "{"), TASKQ_EINVAL);
	assert_int_equal(tq_host.set_result(&job, ""), TASKQ_EINVAL);
	assert_int_equal(tq_host.set_result(&job, "hello"), TASKQ_EINVAL);
	assert_int_equal(tq_host.set_result(&job, "{\"a\":1} trailing"),
			 TASKQ_EINVAL);
	assert_int_equal(tq_host.set_result(&job, "{\"a\":1}{\"b\":2}"),
			 TASKQ_EINVAL);
	assert_int_equal(tq_host.set_result(&job, NULL), TASKQ_EINVAL);
	assert_string_equal(job.result, "42");
	tq_job_clear(&job);
	assert_null(job.result);
}

/* A JSON string literal of exactly len bytes. */
static char *json_string_of(size_t len)
{
	char *s = malloc(len + 1);

	assert_non_null(s);
	assert_true(len >= 2);
	memset(s, 'a', len);
	s[0] = '"';
	s[len - 1] = '"';
	s[len] = '\0';
	return s;
}

static void test_set_result_too_large(void **state)
{
	struct taskq_job job;
	char *at_limit = json_string_of(TQ_RESULT_MAX);
	char *over = json_string_of((size_t)TQ_RESULT_MAX + 1);

	(void)state;
	job_start(&job, "{}", 1, 0);
	assert_int_equal(tq_host.set_result(&job, over), TASKQ_ETOOLARGE);
	assert_null(job.result);
	assert_int_equal(tq_host.set_result(&job, at_limit), TASKQ_OK);
	assert_non_null(job.result);
	assert_int_equal(strlen(job.result), TQ_RESULT_MAX);
	tq_job_clear(&job);
	free(at_limit);
	free(over);
}

static void test_set_error(void **state)
{
	struct taskq_job job;
	char *big;
	size_t len;

	(void)state;
	job_start(&job, "{}", 2, 0);
	assert_int_equal(tq_host.set_error(&job, "attempt %d failed: %s", 2,
					   "connection refused"),
			 TASKQ_OK);
	assert_string_equal(job.error, "attempt 2 failed: connection refused");
	assert_int_equal(tq_host.set_error(&job, "second"), TASKQ_OK);
	assert_string_equal(job.error, "second");
	assert_int_equal(tq_host.set_error(&job, NULL), TASKQ_EINVAL);
	assert_string_equal(job.error, "second");

	/* bounded by TQ_ERROR_MAX */
	big = malloc(10 * TQ_ERROR_MAX);
	assert_non_null(big);
	memset(big, 'x', 10 * TQ_ERROR_MAX - 1);
	big[10 * TQ_ERROR_MAX - 1] = '\0';
	assert_int_equal(tq_host.set_error(&job, "%s", big), TASKQ_OK);
	assert_int_equal(strlen(job.error), TQ_ERROR_MAX - 1);
	assert_int_equal(job.error[0], 'x');

	/* a cut never leaves half a UTF-8 sequence: "é" is 0xC3 0xA9 and
	 * would straddle the limit here */
	memset(big, 'y', TQ_ERROR_MAX - 2);
	memcpy(big + TQ_ERROR_MAX - 2, "\xc3\xa9tail", 7);
	assert_int_equal(tq_host.set_error(&job, "%s", big), TASKQ_OK);
	len = strlen(job.error);
	assert_int_equal(len, TQ_ERROR_MAX - 2);
	assert_int_equal(job.error[len - 1], 'y');
	free(big);

	/* a short one that fits keeps its multi-byte characters */
	assert_int_equal(tq_host.set_error(&job, "caf\xc3\xa9"), TASKQ_OK);
	assert_string_equal(job.error, "caf\xc3\xa9");
	tq_job_clear(&job);
	assert_null(job.error);
}

static void test_progress(void **state)
{
	struct taskq_job job;
	char msg[32];

	(void)state;
	job_start(&job, "{}", 1, 0);
	assert_int_equal(tq_host.set_progress(&job, -1, NULL), TASKQ_EINVAL);
	assert_int_equal(tq_host.set_progress(&job, 101, "too far"), TASKQ_EINVAL);
	assert_int_equal(job.progress, -1);
	assert_null(job.progress_message);

	assert_int_equal(tq_host.set_progress(&job, 0, NULL), TASKQ_OK);
	assert_int_equal(job.progress, 0);
	snprintf(msg, sizeof(msg), "halfway");
	assert_int_equal(tq_host.set_progress(&job, 50, msg), TASKQ_OK);
	msg[0] = 'X'; /* the host copied it */
	assert_int_equal(job.progress, 50);
	assert_string_equal(job.progress_message, "halfway");
	assert_int_equal(tq_host.set_progress(&job, 100, NULL), TASKQ_OK);
	assert_int_equal(job.progress, 100);
	assert_null(job.progress_message);
	tq_job_clear(&job);
	assert_int_equal(job.progress, -1);
}

static void test_cancel_and_deadline(void **state)
{
	struct taskq_job job;
	int64_t left;

	(void)state;
	/* no deadline */
	job_start(&job, "{}", 1, 0);
	assert_false(tq_host.is_cancelled(&job));
	assert_true(tq_host.job_remaining_ms(&job) == INT64_MAX);
	atomic_store(&job.cancelled, 1);
	assert_true(tq_host.is_cancelled(&job));
	tq_job_clear(&job);

	/* deadline ahead */
	job_start(&job, "{}", 1, tq_now_ms() + 10000);
	assert_false(tq_host.is_cancelled(&job));
	left = tq_host.job_remaining_ms(&job);
	assert_true(left > 9000 && left <= 10000);
	tq_job_clear(&job);

	/* deadline passed */
	job_start(&job, "{}", 1, tq_now_ms() - 1);
	assert_true(tq_host.is_cancelled(&job));
	assert_true(tq_host.job_remaining_ms(&job) <= 0);
	tq_job_clear(&job);

	/* deadline passes while the job runs */
	job_start(&job, "{}", 1, tq_now_ms() + 30);
	assert_false(tq_host.is_cancelled(&job));
	usleep(60 * 1000);
	assert_true(tq_host.is_cancelled(&job));
	tq_job_clear(&job);
}

static void test_now_ms(void **state)
{
	int64_t a, b;

	(void)state;
	a = tq_now_ms();
	usleep(20 * 1000);
	b = tq_now_ms();
	assert_true(b - a >= 20);
	assert_true(b - a < 5000);
}

static void test_retry_after(void **state)
{
	struct taskq_job job;

	(void)state;
	job_start(&job, "{}", 1, 0);
	tq_host.retry_after(&job, 0);
	assert_true(job.has_retry_after);
	assert_int_equal(job.retry_after_s, 0);
	tq_host.retry_after(&job, 3600);
	assert_int_equal(job.retry_after_s, 3600);
	tq_job_clear(&job);
	assert_false(job.has_retry_after);
}

static const char *const config_text =
	"plugin = {\n"
	"  demo = {\n"
	"    url = \"http://example.invalid/\";\n"
	"    retries = 5;\n"
	"    big = 5000000000L;\n"
	"    verbose = true;\n"
	"    quiet = false;\n"
	"    ratio = 0.5;\n"
	"    list = [1, 2];\n"
	"    nested = { depth = 2; };\n"
	"  };\n"
	"};\n";

static void test_config_getters(void **state)
{
	const struct taskq_config *cfg;
	const config_setting_t *block;
	const char *s = NULL;
	long long i = -1;
	int b = -1;
	config_t lc;

	(void)state;
	config_init(&lc);
	assert_int_equal(config_read_string(&lc, config_text), CONFIG_TRUE);
	block = config_lookup(&lc, "plugin.demo");
	assert_non_null(block);
	cfg = (const struct taskq_config *)(const void *)block;

	assert_int_equal(tq_host.config_string(cfg, "url", &s), TASKQ_OK);
	assert_string_equal(s, "http://example.invalid/");
	assert_int_equal(tq_host.config_string(cfg, "retries", &s), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_string(cfg, "missing", &s), TASKQ_ENOENT);

	assert_int_equal(tq_host.config_int(cfg, "retries", &i), TASKQ_OK);
	assert_int_equal(i, 5);
	assert_int_equal(tq_host.config_int(cfg, "big", &i), TASKQ_OK);
	assert_true(i == 5000000000LL);
	assert_int_equal(tq_host.config_int(cfg, "nested.depth", &i), TASKQ_OK);
	assert_int_equal(i, 2);
	i = 77;
	assert_int_equal(tq_host.config_int(cfg, "url", &i), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_int(cfg, "ratio", &i), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_int(cfg, "verbose", &i), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_int(cfg, "list", &i), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_int(cfg, "nested", &i), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_int(cfg, "missing", &i), TASKQ_ENOENT);
	assert_int_equal(i, 77); /* untouched on error */

	assert_int_equal(tq_host.config_bool(cfg, "verbose", &b), TASKQ_OK);
	assert_int_equal(b, 1);
	assert_int_equal(tq_host.config_bool(cfg, "quiet", &b), TASKQ_OK);
	assert_int_equal(b, 0);
	assert_int_equal(tq_host.config_bool(cfg, "retries", &b), TASKQ_ETYPE);
	assert_int_equal(tq_host.config_bool(cfg, "missing", &b), TASKQ_ENOENT);

	/* no block at all */
	assert_int_equal(tq_host.config_string(NULL, "url", &s), TASKQ_ENOENT);
	assert_int_equal(tq_host.config_int(NULL, "retries", &i), TASKQ_ENOENT);
	assert_int_equal(tq_host.config_bool(NULL, "verbose", &b), TASKQ_ENOENT);

	/* bad arguments */
	assert_int_equal(tq_host.config_string(cfg, NULL, &s), TASKQ_EINVAL);
	assert_int_equal(tq_host.config_int(cfg, "retries", NULL), TASKQ_EINVAL);
	config_destroy(&lc);
}

/* Run fn with stderr going to a file; return what was written (free it). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	FILE *f = tmpfile();
	char *buf;
	long len;
	int saved;

	assert_non_null(f);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	fn(arg);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);

	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	return buf;
}

static void log_from_plugin(void *arg)
{
	struct taskq_job *job = arg;

	tq_host.log(job, TASKQ_LOG_WARN, "disk %d%% full", 93);
	tq_host.log(job, TASKQ_LOG_DEBUG, "filtered out");
	tq_host.log(NULL, TASKQ_LOG_INFO, "no job here");
}

static void test_log(void **state)
{
	struct taskq_job job;
	const char *prev;
	cJSON *line;
	char *out, *nl;

	(void)state;
	tq_log_set_level(TQ_LOG_INFO);
	job_start(&job, "{}", 4, 0);
	prev = tq_job_set_log_plugin("demo_plugin");
	out = capture_stderr(log_from_plugin, &job);
	tq_job_set_log_plugin(prev);

	/* two lines: the debug one was filtered */
	nl = strchr(out, '\n');
	assert_non_null(nl);
	*nl = '\0';
	line = cJSON_Parse(out);
	assert_non_null(line);
	assert_string_equal(cJSON_GetObjectItem(line, "level")->valuestring, "warn");
	assert_string_equal(cJSON_GetObjectItem(line, "msg")->valuestring,
			    "disk 93% full");
	assert_string_equal(cJSON_GetObjectItem(line, "job_id")->valuestring, JOB_ID);
	assert_string_equal(cJSON_GetObjectItem(line, "type")->valuestring, "demo");
	assert_int_equal(cJSON_GetObjectItem(line, "attempt")->valueint, 4);
	assert_string_equal(cJSON_GetObjectItem(line, "plugin")->valuestring,
			    "demo_plugin");
	cJSON_Delete(line);

	line = cJSON_Parse(nl + 1);
	assert_non_null(line);
	assert_string_equal(cJSON_GetObjectItem(line, "level")->valuestring, "info");
	assert_string_equal(cJSON_GetObjectItem(line, "msg")->valuestring,
			    "no job here");
	assert_null(cJSON_GetObjectItem(line, "job_id"));
	assert_string_equal(cJSON_GetObjectItem(line, "plugin")->valuestring,
			    "demo_plugin");
	cJSON_Delete(line);
	assert_null(strstr(out + (nl - out) + 1, "filtered out"));
	assert_null(strchr(strchr(nl + 1, '\n') + 1, '\n'));
	free(out);
	tq_job_clear(&job);
}

static void test_clear_and_reuse(void **state)
{
	struct taskq_job job;

	(void)state;
	job_start(&job, "{}", 1, 0);
	assert_int_equal(tq_host.set_result(&job, "{}"), TASKQ_OK);
	assert_int_equal(tq_host.set_error(&job, "e"), TASKQ_OK);
	assert_int_equal(tq_host.set_progress(&job, 10, "m"), TASKQ_OK);
	tq_job_clear(&job);
	tq_job_clear(&job); /* twice is harmless */
	assert_null(job.result);
	assert_null(job.error);
	assert_null(job.progress_message);
	job_start(&job, "[]", 2, 0);
	assert_int_equal(tq_host.set_result(&job, "[]"), TASKQ_OK);
	tq_job_clear(&job);
	tq_job_clear(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_table),
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_set_result),
		cmocka_unit_test(test_set_result_too_large),
		cmocka_unit_test(test_set_error),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_cancel_and_deadline),
		cmocka_unit_test(test_now_ms),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_config_getters),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_clear_and_reuse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
