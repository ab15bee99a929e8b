/*
 * test_e2e_shutdown.c - graceful shutdown: SIGTERM/SIGINT stop taking
 * jobs, let running ones finish within shutdown_grace_s, exit 0.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines of the daemon's stderr that are not JSON objects. */
static int non_json_lines(const struct th_daemon *d)
{
	FILE *f = fopen(d->log_path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int bad = 0;
	cJSON *j;

	if (!f)
		return -1;
	while ((n = getline(&line, &cap, f)) >= 0) {
		j = cJSON_ParseWithLength(line, (size_t)n);
		if (!cJSON_IsObject(j)) {
			if (bad < 3)
				fprintf(stderr, "not a JSON log line: %s", line);
			bad++;
		}
		cJSON_Delete(j);
	}
	free(line);
	fclose(f);
	return bad;
}

/* 7. SIGTERM with jobs running: they finish, queued ones are not taken,
 * the process exits 0. */
static void test_sigterm_finishes_running_jobs(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=2",
					      "TASKQ_SHUTDOWN_GRACE_S=10", NULL);
	char run[2][TH_ID_LEN], queued[2][TH_ID_LEN], err[256];
	struct th_records recs;
	int64_t t0, elapsed;
	char *st;
	int i, code;

	(void)state;
	for (i = 0; i < 2; i++)
		th_submit(d, "{\"type\":\"record\",\"payload\":{\"sleep_ms\":1000}}",
			  run[i]);
	for (i = 0; i < 2; i++)
		cJSON_Delete(th_wait_status(d, run[i], "running", 10000));
	/* both workers are busy: these wait in the queue */
	for (i = 0; i < 2; i++)
		th_submit(d, "{\"type\":\"record\",\"payload\":{}}", queued[i]);

	t0 = th_now_ms();
	code = th_daemon_stop(d, 15000);
	elapsed = th_now_ms() - t0;
	fprintf(stderr, "taskqd exited with %d after %lld ms\n", code,
		(long long)elapsed);
	assert_int_equal(code, 0);

	for (i = 0; i < 2; i++) {
		st = th_job_field(run[i], "status");
		assert_non_null(st);
		assert_string_equal(st, "completed");
		free(st);
		assert_int_equal(th_sql_long("SELECT attempts FROM jobs WHERE "
					     "id = $1::uuid",
					     TH_PARAMS(run[i])),
				 1);
	}
	for (i = 0; i < 2; i++) {
		st = th_job_field(queued[i], "status");
		assert_non_null(st);
		assert_string_equal(st, "pending");
		free(st);
		assert_int_equal(th_sql_long("SELECT attempts FROM jobs WHERE "
					     "id = $1::uuid",
					     TH_PARAMS(queued[i])),
				 0);
	}
	assert_int_equal(th_records_load(th_record_path(), &recs, err,
					 sizeof(err)), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(th_records_count(&recs, run[i]), 1);
		assert_int_equal(th_records_count(&recs, queued[i]), 0);
	}
	th_records_free(&recs);

	/* "Logs are JSON lines on stderr" */
	assert_int_equal(non_json_lines(d), 0);
	th_case_passed();
}

/* SIGINT on an idle daemon: a prompt, clean exit. */
static void test_sigint_idle_exits_zero(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	char id[TH_ID_LEN];
	int64_t t0;

	(void)state;
	th_submit(d, "{\"type\":\"echo\",\"payload\":{}}", id);
	cJSON_Delete(th_wait_status(d, id, "completed", 10000));
	t0 = th_now_ms();
	assert_int_equal(th_daemon_signal_wait(d, SIGINT, 10000), 0);
	assert_true(th_now_ms() - t0 < 5000);
	assert_int_equal(non_json_lines(d), 0);
	th_case_passed();
}

/* A job longer than the grace period does not hold the process: it exits
 * about when the grace ends, and the job is handed back at once for
 * another attempt (pending, not left running until its lease expires, and
 * never marked completed, failed or cancelled by the shutdown). */
static void test_grace_period_is_bounded(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=1",
					      "TASKQ_SHUTDOWN_GRACE_S=1", NULL);
	char id[TH_ID_LEN];
	int64_t t0, elapsed;
	char *st;
	int code;

	(void)state;
	th_submit(d, "{\"type\":\"record\",\"payload\":{\"sleep_ms\":20000}}", id);
	cJSON_Delete(th_wait_status(d, id, "running", 10000));
	t0 = th_now_ms();
	code = th_daemon_stop(d, 15000);
	elapsed = th_now_ms() - t0;
	fprintf(stderr, "taskqd exited with %d after %lld ms\n", code,
		(long long)elapsed);
	assert_true(code >= 0); /* it exited by itself */
	assert_true(elapsed < 6000);
	st = th_job_field(id, "status");
	assert_non_null(st);
	if (strcmp(st, "pending") != 0) {
		fprintf(stderr, "job after shutdown: %s\n", st);
		free(st);
		fail_msg("an unfinished job was not handed back at the deadline");
	}
	free(st);
	st = th_job_field(id, "error_message");
	assert_non_null(st);
	assert_string_equal(st, "interrupted by shutdown");
	free(st);
	th_case_passed();
}

/* SIGTERM while a submission waits for its commit: it is committed and
 * answered 201 before the process exits 0; one that arrives meanwhile is
 * refused with 503 and changes nothing. */
static void test_sigterm_answers_waiting_submission(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_async sub;
	struct th_resp late;
	PGconn *lock;
	char *st;

	(void)state;
	lock = th_jobs_lock();
	th_http_start(&sub, d, "POST", "/v1/jobs", "{\"type\":\"echo\",\"payload\":{}}");
	assert_true(th_lock_waiters(1, 10000));
	assert_int_equal(kill(d->pid, SIGTERM), 0);
	th_sleep_ms(300);
	assert_true(th_daemon_alive(d)); /* it waits for the commit */
	th_http(d, "POST", "/v1/jobs", "{\"type\":\"echo\",\"payload\":{}}",
		"application/json", &late);
	assert_int_equal(late.status, 503);
	assert_string_equal(th_resp_code(&late), "UNAVAILABLE");
	th_resp_free(&late);
	th_jobs_unlock(lock);
	th_http_join(&sub);
	assert_int_equal(sub.resp.status, 201);
	assert_int_equal(th_daemon_signal_wait(d, 0, 15000), 0);
	assert_int_equal(th_jobs_count(), 1);
	st = th_job_field(th_json_str(sub.resp.json, "id"), "status");
	assert_non_null(st);
	free(st);
	th_resp_free(&sub.resp);
	th_case_passed();
}

static int group_setup(void **state)
{
	(void)state;
	return th_group_setup("e2e_shutdown");
}

static int group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sigterm_finishes_running_jobs,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_sigint_idle_exits_zero,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_answers_waiting_submission,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_grace_period_is_bounded,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
