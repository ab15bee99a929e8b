/*
 * test_e2e_retry.c - failures, retries with backoff, and exhaustion,
 * end to end (backoff_base_ms and backoff_cap_ms from harness.h).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Time from the end of one attempt to the start of the next beyond the
 * backoff itself: the outcome write, the scheduler, the dispatch. */
#define SCHED_SLACK_MS 500

/* Upper bound of the backoff after the k-th failed attempt, computed
 * here from the contract rather than taken from the daemon's code. */
static int64_t ceiling_ms(int k)
{
	int64_t c = TH_BACKOFF_BASE_MS;
	int i;

	for (i = 1; i < k && c < TH_BACKOFF_CAP_MS; i++)
		c *= 2;
	return c < TH_BACKOFF_CAP_MS ? c : TH_BACKOFF_CAP_MS;
}

/* 2. flaky fail_times=2 completes on attempt 3; the record plugin shows
 * the gaps between attempts stay within the backoff. */
static void test_flaky_retries_with_backoff(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	char flaky[TH_ID_LEN], rec[TH_ID_LEN], err[256];
	struct th_record runs[8];
	struct th_records recs;
	cJSON *job, *res;
	int64_t gap;
	size_t n, k;

	(void)state;
	assert_int_equal(ceiling_ms(1), 200);
	assert_int_equal(ceiling_ms(2), 400);
	assert_int_equal(ceiling_ms(4), 1000);

	th_submit(d, "{\"type\":\"flaky\",\"payload\":{\"fail_times\":2},"
		     "\"max_attempts\":5}", flaky);
	th_submit(d, "{\"type\":\"record\",\"payload\":{\"fail_times\":2},"
		     "\"max_attempts\":5}", rec);

	job = th_wait_status(d, flaky, "completed", 15000);
	assert_int_equal(th_json_int(job, "attempts"), 3);
	res = cJSON_GetObjectItem(job, "result");
	assert_true(cJSON_IsObject(res));
	assert_int_equal(th_json_int(res, "attempts"), 3);
	cJSON_Delete(job);

	job = th_wait_status(d, rec, "completed", 15000);
	assert_int_equal(th_json_int(job, "attempts"), 3);
	assert_int_equal(th_json_int(cJSON_GetObjectItem(job, "result"),
				     "attempt"), 3);
	cJSON_Delete(job);

	assert_int_equal(th_records_load(th_record_path(), &recs, err,
					 sizeof(err)), 0);
	n = th_records_of(&recs, rec, runs, 8);
	th_records_free(&recs);
	assert_int_equal(n, 3);
	for (k = 0; k < n; k++)
		assert_int_equal(runs[k].attempt, (int)k + 1);
	for (k = 1; k < n; k++) {
		gap = runs[k].ms - runs[k - 1].ms;
		fprintf(stderr, "gap after failure %zu: %lld ms (ceiling %lld)\n",
			k, (long long)gap, (long long)ceiling_ms((int)k));
		assert_true(gap >= 0);
		assert_true(gap <= ceiling_ms((int)k) + SCHED_SLACK_MS);
	}
	/* the row agrees: the failures left no error behind on success */
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE id = "
				     "$1::uuid AND status = 'completed' AND "
				     "attempts = 3",
				     TH_PARAMS(rec)),
			 1);
	th_case_passed();
}

/* While waiting for its retry a job is visible as "scheduled", with the
 * failed attempt counted, and it is not running. */
static void test_retry_goes_through_scheduled(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_BACKOFF_BASE_MS=3000",
					      "TASKQ_BACKOFF_CAP_MS=3000",
					      NULL);
	int64_t deadline = th_now_ms() + 30000;
	char id[TH_ID_LEN];
	const char *st;
	int seen_scheduled = 0;
	cJSON *job;

	(void)state;
	/* three delays uniform in [0, 3 s]: that all three are too short to
	 * be seen by a 25 ms poll is a one-in-a-million event */
	th_submit(d, "{\"type\":\"record\",\"payload\":{\"fail_times\":3},"
		     "\"max_attempts\":4}", id);
	for (;;) {
		job = th_get_job(d, id);
		assert_non_null(job);
		st = th_json_str(job, "status");
		assert_non_null(st);
		if (strcmp(st, "scheduled") == 0) {
			assert_true(th_json_int(job, "attempts") >= 1);
			seen_scheduled++;
		}
		if (strcmp(st, "completed") == 0)
			break;
		assert_string_not_equal(st, "failed");
		cJSON_Delete(job);
		assert_true(th_now_ms() < deadline);
		th_sleep_ms(25);
	}
	assert_int_equal(th_json_int(job, "attempts"), 4);
	cJSON_Delete(job);
	assert_true(seen_scheduled > 0);
	th_case_passed();
}

/* 3. a job that always fails ends failed after max_attempts with its
 * error message. */
static void test_always_failing_exhausts(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	char flaky[TH_ID_LEN], rec[TH_ID_LEN], perm[TH_ID_LEN], err[256];
	struct th_records recs;
	const char *msg;
	cJSON *job;
	char *db_err;

	(void)state;
	th_submit(d, "{\"type\":\"flaky\",\"payload\":{\"fail_times\":1000},"
		     "\"max_attempts\":3}", flaky);
	th_submit(d, "{\"type\":\"record\",\"payload\":{\"fail_times\":1000},"
		     "\"max_attempts\":3}", rec);
	th_submit(d, "{\"type\":\"flaky\",\"payload\":{\"fail_times\":5,"
		     "\"permanent\":true},\"max_attempts\":5}", perm);

	job = th_wait_status(d, flaky, "failed", 20000);
	assert_int_equal(th_json_int(job, "attempts"), 3);
	assert_int_equal(th_json_int(job, "max_attempts"), 3);
	msg = th_json_str(job, "error");
	assert_non_null(msg);
	assert_non_null(strstr(msg, "flaky"));
	assert_non_null(th_json_str(job, "completed_at"));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(job, "result")));
	cJSON_Delete(job);
	db_err = th_job_field(flaky, "error_message");
	assert_non_null(db_err);
	assert_non_null(strstr(db_err, "flaky"));
	free(db_err);

	job = th_wait_status(d, rec, "failed", 20000);
	assert_int_equal(th_json_int(job, "attempts"), 3);
	msg = th_json_str(job, "error");
	assert_non_null(msg);
	assert_non_null(strstr(msg, "planned failure 3"));
	cJSON_Delete(job);

	/* a permanent failure does not retry */
	job = th_wait_status(d, perm, "failed", 20000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	assert_non_null(th_json_str(job, "error"));
	cJSON_Delete(job);

	/* exactly max_attempts executions, and nothing after the end */
	th_sleep_ms(1500);
	assert_int_equal(th_records_load(th_record_path(), &recs, err,
					 sizeof(err)), 0);
	assert_int_equal(th_records_count(&recs, rec), 3);
	th_records_free(&recs);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE id = "
				     "$1::uuid AND status = 'failed' AND "
				     "attempts = 3",
				     TH_PARAMS(rec)),
			 1);
	th_case_passed();
}

static int group_setup(void **state)
{
	(void)state;
	return th_group_setup("e2e_retry");
}

static int group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_flaky_retries_with_backoff,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_retry_goes_through_scheduled,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_always_failing_exhausts,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
