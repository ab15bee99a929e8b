/*
 * test_e2e_load.c - 200 concurrent submissions: every one is accepted
 * (201), stored once, and executed exactly once.
 */
#include "harness.h"

#include <stdint.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_THREADS 8
#define PER_THREAD 25
#define N_JOBS (N_THREADS * PER_THREAD)

struct submitter {
	const struct th_daemon *d;
	int index;
	long status[PER_THREAD];
	char id[PER_THREAD][TH_ID_LEN];
	char error[PER_THREAD][160];
};

static void *submit_many(void *arg)
{
	struct submitter *s = arg;
	struct th_resp r;
	char body[128];
	const char *id;
	int i;

	for (i = 0; i < PER_THREAD; i++) {
		snprintf(body, sizeof(body),
			 "{\"type\":\"record\",\"payload\":{\"n\":%d}}",
			 s->index * PER_THREAD + i);
		th_http(s->d, "POST", "/v1/jobs", body, "application/json", &r);
		s->status[i] = r.status;
		id = th_json_str(r.json, "id");
		if (id && strlen(id) == TH_ID_LEN - 1)
			memcpy(s->id[i], id, TH_ID_LEN);
		snprintf(s->error[i], sizeof(s->error[i]), "%.80s %.70s",
			 r.body ? r.body : "", r.error);
		th_resp_free(&r);
	}
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 4. 200 concurrent submissions all get 201 and run exactly once. */
static void test_concurrent_submissions(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	static struct submitter subs[N_THREADS];
	pthread_t threads[N_THREADS];
	const char *ids[N_JOBS];
	struct th_records recs;
	int64_t deadline;
	char err[256];
	long long done = 0;
	int t, i, n = 0, bad = 0;

	(void)state;
	memset(subs, 0, sizeof(subs));
	for (t = 0; t < N_THREADS; t++) {
		subs[t].d = d;
		subs[t].index = t;
		assert_int_equal(pthread_create(&threads[t], NULL, submit_many,
						&subs[t]), 0);
	}
	for (t = 0; t < N_THREADS; t++)
		assert_int_equal(pthread_join(threads[t], NULL), 0);

	for (t = 0; t < N_THREADS; t++) {
		for (i = 0; i < PER_THREAD; i++) {
			if (subs[t].status[i] != 201 || !subs[t].id[i][0]) {
				if (bad++ < 5)
					fprintf(stderr, "submission %d.%d: %ld %s\n",
						t, i, subs[t].status[i],
						subs[t].error[i]);
				continue;
			}
			ids[n++] = subs[t].id[i];
		}
	}
	assert_int_equal(bad, 0);
	assert_int_equal(n, N_JOBS);

	/* distinct ids, each stored once */
	qsort(ids, (size_t)n, sizeof(ids[0]), cmp_str);
	for (i = 1; i < n; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	assert_int_equal(th_jobs_count(), N_JOBS);

	deadline = th_now_ms() + 60000;
	while (th_now_ms() < deadline) {
		done = th_sql_long("SELECT count(*) FROM jobs WHERE "
				   "status = 'completed'", NULL, 0);
		if (done == N_JOBS)
			break;
		th_sleep_ms(100);
	}
	assert_int_equal(done, N_JOBS);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE "
				     "status = 'completed' AND attempts = 1 "
				     "AND (result->>'attempt')::int = 1",
				     NULL, 0),
			 N_JOBS);

	/* let any stray duplicate delivery happen before counting */
	th_sleep_ms(1000);
	assert_int_equal(th_records_load(th_record_path(), &recs, err,
					 sizeof(err)), 0);
	for (i = 0; i < n; i++) {
		size_t c = th_records_count(&recs, ids[i]);

		if (c != 1) {
			fprintf(stderr, "job %s executed %zu times\n", ids[i], c);
			bad++;
		}
	}
	assert_int_equal(recs.n, N_JOBS);
	th_records_free(&recs);
	assert_int_equal(bad, 0);
	th_case_passed();
}

/*
 * A batch of slow jobs, claimed at once, runs in parallel: the workers
 * wake one another as they take the claims, and all six start together
 * rather than one after another.
 */
static void test_batch_runs_in_parallel(void **state)
{
	static const char job[] = "{\"type\":\"record\",\"payload\":{\"sleep_ms\":1000}}";
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=6", NULL);
	char body[512] = "{\"jobs\":[";
	struct th_records recs;
	struct th_resp r;
	int64_t first = INT64_MAX, last = 0, deadline;
	long long done = 0;
	char err[256];

	(void)state;
	for (int i = 0; i < 6; i++) {
		strcat(body, i ? "," : "");
		strcat(body, job);
	}
	strcat(body, "]}");
	th_http(d, "POST", "/v1/jobs/batch", body, "application/json", &r);
	assert_int_equal(r.status, 201);
	th_resp_free(&r);
	deadline = th_now_ms() + 20000;
	while (done < 6 && th_now_ms() < deadline) {
		th_sleep_ms(100);
		done = th_sql_long("SELECT count(*) FROM jobs WHERE status = 'completed'",
				   NULL, 0);
	}
	assert_int_equal(done, 6);
	assert_int_equal(th_records_load(th_record_path(), &recs, err, sizeof(err)), 0);
	assert_int_equal(recs.n, 6);
	for (size_t i = 0; i < recs.n; i++) {
		first = recs.v[i].ms < first ? recs.v[i].ms : first;
		last = recs.v[i].ms > last ? recs.v[i].ms : last;
	}
	th_records_free(&recs);
	fprintf(stderr, "six jobs started within %lld ms\n", (long long)(last - first));
	assert_true(last - first < 500);
	th_case_passed();
}

/*
 * Jobs that come one at a time cost the fetcher one pop each: with
 * nothing waiting in Redis it blocks in BLMPOP at once, without first
 * asking with LMPOP, which would find the lists empty every time.
 */
static void test_fetch_blocks_at_once(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_CLAIM_ON_SUBMIT=false", NULL);
	char id[TH_ID_LEN];
	long takes, pops;
	cJSON *job;

	(void)state;
	takes = th_redis_calls("lmpop");
	pops = th_redis_calls("blmpop");
	for (int i = 0; i < 10; i++) {
		th_submit(d, "{\"type\":\"echo\",\"payload\":{}}", id);
		job = th_wait_status(d, id, "completed", 10000);
		cJSON_Delete(job);
	}
	assert_int_equal(th_redis_calls("lmpop") - takes, 0);
	assert_true(th_redis_calls("blmpop") - pops >= 10);
	th_daemon_stop(d, 10000);
	th_case_passed();
}

static int group_setup(void **state)
{
	(void)state;
	return th_group_setup("e2e_load");
}

static int group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_batch_runs_in_parallel,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_submissions,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_fetch_blocks_at_once,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
