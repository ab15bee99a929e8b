/*
 * End to end: batch submission, cancellation (pending, scheduled,
 * running), /readyz through a Redis outage, the job-types listing and
 * reload over the API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

static const char json[] = "application/json";

static void test_batch_all_or_nothing(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_resp r;
	cJSON *ids;
	char body[8192];
	size_t len = 0;

	(void)state;
	len += (size_t)snprintf(body + len, sizeof(body) - len, "{\"jobs\":[");
	for (int i = 0; i < 50; i++)
		len += (size_t)snprintf(body + len, sizeof(body) - len,
					"%s{\"type\":\"echo\",\"payload\":{\"n\":%d},\"priority\":%d}",
					i ? "," : "", i, i % 10);
	snprintf(body + len, sizeof(body) - len, "]}");
	assert_int_equal(th_http(d, "POST", "/v1/jobs/batch", body, json, &r), 0);
	assert_int_equal(r.status, 201);
	ids = cJSON_GetObjectItem(r.json, "ids");
	assert_int_equal(cJSON_GetArraySize(ids), 50);
	assert_int_equal(th_json_int(r.json, "count"), 50);
	for (int i = 0; i < 50; i++) {
		const char *id = cJSON_GetArrayItem(ids, i)->valuestring;
		cJSON *job = th_wait_status(d, id, "completed", 10000);

		assert_int_equal(th_json_int(cJSON_GetObjectItem(job, "result"), "n"), i);
		cJSON_Delete(job);
	}
	th_resp_free(&r);

	/* one bad job refuses the batch, names it, and stores nothing */
	assert_int_equal(th_jobs_count(), 50);
	assert_int_equal(th_http(d, "POST", "/v1/jobs/batch",
				 "{\"jobs\":[{\"type\":\"echo\"},{\"type\":\"echo\",\"priority\":12}]}",
				 json, &r), 0);
	assert_int_equal(r.status, 400);
	assert_string_equal(th_resp_code(&r), "INVALID_REQUEST");
	assert_non_null(strstr(th_json_str(r.json, "error"), "jobs[1]"));
	th_resp_free(&r);
	assert_int_equal(th_http(d, "POST", "/v1/jobs/batch",
				 "{\"jobs\":[{\"type\":\"echo\"},{\"type\":\"nope\"}]}", json, &r), 0);
	assert_int_equal(r.status, 400);
	assert_string_equal(th_resp_code(&r), "UNKNOWN_JOB_TYPE");
	th_resp_free(&r);
	assert_int_equal(th_http(d, "POST", "/v1/jobs/batch", "{\"jobs\":[]}", json, &r), 0);
	assert_int_equal(r.status, 400);
	th_resp_free(&r);
	assert_int_equal(th_http(d, "POST", "/v1/jobs/batch", "[1]", json, &r), 0);
	assert_int_equal(r.status, 400);
	th_resp_free(&r);
	assert_int_equal(th_jobs_count(), 50);
	th_case_passed();
}

static void cancel_job(const struct th_daemon *d, const char *id, const char *status)
{
	char path[96];
	struct th_resp r;

	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
	assert_int_equal(th_http(d, "POST", path, NULL, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(th_json_str(r.json, "status"), status);
	th_resp_free(&r);
}

static void test_cancel_each_state(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_HEARTBEAT_S=1", "TASKQ_WORKERS=1", NULL);
	char running[TH_ID_LEN], queued[TH_ID_LEN], later[TH_ID_LEN], path[96];
	struct th_resp r;
	cJSON *job;
	int64_t t0;

	(void)state;
	th_submit(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":30000}}", running);
	cJSON_Delete(th_wait_status(d, running, "running", 10000));
	/* the only worker is busy: this one stays pending */
	th_submit(d, "{\"type\":\"echo\"}", queued);
	th_submit(d, "{\"type\":\"echo\",\"delay_s\":3600}", later);

	cancel_job(d, queued, "cancelled");
	cancel_job(d, later, "cancelled");

	/* running: told at the next heartbeat, stopped, never retried */
	t0 = th_now_ms();
	cancel_job(d, running, "running");
	job = th_wait_status(d, running, "cancelled", 10000);
	assert_true(th_now_ms() - t0 < 8000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	cJSON_Delete(job);

	/* finished jobs answer 409, unknown ones 404 */
	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", running);
	assert_int_equal(th_http(d, "POST", path, NULL, NULL, &r), 0);
	assert_int_equal(r.status, 409);
	assert_string_equal(th_resp_code(&r), "CONFLICT");
	th_resp_free(&r);
	assert_int_equal(th_http(d, "POST", "/v1/jobs/00000000-0000-4000-8000-000000000000/cancel",
				 NULL, NULL, &r), 0);
	assert_int_equal(r.status, 404);
	th_resp_free(&r);

	/* the cancelled pending job never ran: the worker is free, and it
	 * stays cancelled */
	th_sleep_ms(500);
	job = th_get_job(d, queued);
	assert_string_equal(th_json_str(job, "status"), "cancelled");
	assert_int_equal(th_json_int(job, "attempts"), 0);
	cJSON_Delete(job);
	th_case_passed();
}

/* workers.prefetch: a node claims that many jobs beyond its busy workers,
 * no more, and a claim cancelled while it waits never runs. */
static void test_prefetch_holds_and_cancels(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_HEARTBEAT_S=1", "TASKQ_WORKERS=1",
					      "TASKQ_PREFETCH=1", NULL);
	char busy[TH_ID_LEN], held[TH_ID_LEN], waiting[TH_ID_LEN];
	cJSON *job;

	(void)state;
	th_submit(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":30000}}", busy);
	cJSON_Delete(th_wait_status(d, busy, "running", 10000));
	/* claimed while the only worker is busy: held on the node */
	th_submit(d, "{\"type\":\"echo\"}", held);
	cJSON_Delete(th_wait_status(d, held, "running", 10000));
	/* the prefetch is full: this one stays in Redis, pending */
	th_submit(d, "{\"type\":\"echo\"}", waiting);
	th_sleep_ms(500);
	job = th_get_job(d, waiting);
	assert_string_equal(th_json_str(job, "status"), "pending");
	assert_int_equal(th_json_int(job, "attempts"), 0);
	cJSON_Delete(job);

	/* the held claim learns of its cancel at a heartbeat, before the
	 * worker is free (the busy job's cancel comes at the same beat or a
	 * later one), and ends without running: echo would have completed */
	cancel_job(d, held, "running");
	cancel_job(d, busy, "running");
	job = th_wait_status(d, held, "cancelled", 10000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(job, "result")));
	cJSON_Delete(job);
	cJSON_Delete(th_wait_status(d, busy, "cancelled", 10000));
	cJSON_Delete(th_wait_status(d, waiting, "completed", 10000));
	th_case_passed();
}

static void test_readyz_follows_redis(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_resp r;
	char id[TH_ID_LEN];

	(void)state;
	assert_int_equal(th_http(d, "GET", "/readyz", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(th_json_str(r.json, "status"), "ready");
	th_resp_free(&r);

	assert_int_equal(th_servers("redis-stop", NULL), 0);
	assert_int_equal(th_http(d, "GET", "/readyz", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 503);
	assert_string_equal(th_json_str(r.json, "redis"), "down");
	th_resp_free(&r);
	assert_int_equal(th_http(d, "GET", "/healthz", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	th_resp_free(&r);
	/* PostgreSQL still commits: submissions are accepted and wait */
	th_submit(d, "{\"type\":\"echo\",\"payload\":{\"during\":\"outage\"}}", id);

	assert_int_equal(th_servers("redis-start", NULL), 0);
	cJSON_Delete(th_wait_status(d, id, "completed", 20000));
	assert_int_equal(th_http(d, "GET", "/readyz", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	th_resp_free(&r);
	th_case_passed();
}

static void test_job_types_and_reload(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_resp r;
	cJSON *types, *t;
	bool echo = false;

	(void)state;
	assert_int_equal(th_http(d, "GET", "/v1/job-types", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	types = cJSON_GetObjectItem(r.json, "job_types");
	assert_true(cJSON_GetArraySize(types) >= 4);
	cJSON_ArrayForEach(t, types) {
		if (strcmp(th_json_str(t, "name"), "echo") == 0) {
			echo = true;
			assert_string_equal(th_json_str(t, "plugin"), "echo");
			assert_non_null(th_json_str(t, "file"));
		}
	}
	assert_true(echo);
	th_resp_free(&r);
	assert_int_equal(th_http(d, "POST", "/v1/plugins/reload", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_true(th_json_int(r.json, "job_types") >= 4);
	th_resp_free(&r);
	assert_int_equal(th_http(d, "GET", "/v1/plugins/reload", NULL, NULL, &r), 0);
	assert_int_equal(r.status, 405);
	th_resp_free(&r);
	th_case_passed();
}

/* Redis comes back even when the case failed half-way. */
static int redis_teardown(void **state)
{
	th_servers("redis-start", NULL);
	return th_case_teardown(state);
}

static int group_setup(void **state)
{
	(void)state;
	return th_group_setup("e2e_ops");
}

static int group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_batch_all_or_nothing, th_case_setup,
						th_case_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_each_state, th_case_setup,
						th_case_teardown),
		cmocka_unit_test_setup_teardown(test_prefetch_holds_and_cancels, th_case_setup,
						th_case_teardown),
		cmocka_unit_test_setup_teardown(test_readyz_follows_redis, th_case_setup,
						redis_teardown),
		cmocka_unit_test_setup_teardown(test_job_types_and_reload, th_case_setup,
						th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
