/*
 * test_e2e_outage.c - PostgreSQL goes away under a running taskqd:
 * submissions answer 503 and store nothing, /healthz stays 200, and the
 * daemon recovers by itself when PostgreSQL is back.  The harness restarts
 * PostgreSQL in the teardown even when an assertion fails.
 */
#include "harness.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_BODY "{\"type\":\"echo\",\"payload\":{\"outage\":true}}"
#define N_QUEUED 3

/* The one worker of d runs `block` (a sleep job), and N_QUEUED record jobs
 * wait behind it: their ids sit in Redis. */
static void block_and_queue(struct th_daemon *d, const char *block_body,
			    char block[TH_ID_LEN], char queued[N_QUEUED][TH_ID_LEN])
{
	th_submit(d, block_body, block);
	cJSON_Delete(th_wait_status(d, block, "running", 10000));
	for (int i = 0; i < N_QUEUED; i++)
		th_submit(d, "{\"type\":\"record\",\"payload\":{}}", queued[i]);
}

#define KEYED_BODY "{\"type\":\"echo\",\"payload\":{},\"idempotency_key\":\"outage-1\"}"

/* 6. POST during a PostgreSQL outage answers 503; recovery is automatic. */
static void test_postgres_outage(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	char before_id[TH_ID_LEN], id[TH_ID_LEN] = "";
	struct th_resp r;
	int64_t deadline;
	cJSON *job;
	int i;

	(void)state;
	/* the pool is warm */
	th_submit(d, ECHO_BODY, before_id);
	cJSON_Delete(th_wait_status(d, before_id, "completed", 10000));

	th_pg_stop();

	for (i = 0; i < 3; i++) {
		th_http(d, "POST", "/v1/jobs", ECHO_BODY, "application/json",
			&r);
		if (r.status != 503 ||
		    strcmp(th_resp_code(&r), "UNAVAILABLE") != 0) {
			fprintf(stderr, "POST during outage: %ld %s %s\n",
				r.status, r.body, r.error);
			th_resp_free(&r);
			fail_msg("POST during the outage did not answer 503 "
				 "UNAVAILABLE");
		}
		assert_non_null(th_json_str(r.json, "error"));
		th_resp_free(&r);

		th_http(d, "GET", "/healthz", NULL, NULL, &r);
		assert_int_equal(r.status, 200);
		th_resp_free(&r);
	}
	/* a keyed submission too: 503, and its key is not taken */
	th_http(d, "POST", "/v1/jobs", KEYED_BODY, "application/json", &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(th_resp_code(&r), "UNAVAILABLE");
	th_resp_free(&r);
	assert_true(th_daemon_alive(d));

	th_pg_start();

	/* no restart of taskqd: it must reconnect on its own */
	deadline = th_now_ms() + 30000;
	for (;;) {
		th_http(d, "POST", "/v1/jobs", ECHO_BODY, "application/json",
			&r);
		if (r.status == 201) {
			snprintf(id, sizeof(id), "%s",
				 th_json_str(r.json, "id") ?
					 th_json_str(r.json, "id") : "");
			th_resp_free(&r);
			break;
		}
		if (r.status != 503) {
			fprintf(stderr, "POST after restart: %ld %s %s\n",
				r.status, r.body, r.error);
			th_resp_free(&r);
			fail_msg("POST after the restart answered neither 201 "
				 "nor 503");
		}
		th_resp_free(&r);
		if (th_now_ms() >= deadline)
			fail_msg("taskqd did not recover within 30 s of the "
				 "PostgreSQL restart");
		th_sleep_ms(200);
	}
	assert_int_equal(strlen(id), TH_ID_LEN - 1);
	job = th_wait_status(d, id, "completed", 15000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	cJSON_Delete(job);

	/* the client's retry of the keyed submission makes its job, and a
	 * second retry finds it */
	th_http(d, "POST", "/v1/jobs", KEYED_BODY, "application/json", &r);
	assert_int_equal(r.status, 201);
	snprintf(id, sizeof(id), "%s", th_json_str(r.json, "id"));
	th_resp_free(&r);
	th_http(d, "POST", "/v1/jobs", KEYED_BODY, "application/json", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(th_json_str(r.json, "id"), id);
	th_resp_free(&r);

	/* 503 stored nothing: the three accepted jobs are all there is */
	assert_int_equal(th_jobs_count(), 3);
	assert_true(th_daemon_alive(d));
	th_case_passed();
}

/* Jobs accepted before the outage and still queued complete after it. */
static void test_queued_jobs_survive_outage(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=1",
					      "TASKQ_LEASE_S=5", NULL);
	char block[TH_ID_LEN], queued[N_QUEUED][TH_ID_LEN];
	struct th_resp r;
	int i;

	(void)state;
	block_and_queue(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":1500},"
			"\"timeout_s\":5}", block, queued);

	th_pg_stop();
	th_sleep_ms(2500); /* the sleep job ends while the database is down */
	th_http(d, "GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	th_resp_free(&r);
	th_pg_start();

	/* All end completed: ids a worker popped while the database was down
	 * come back through the pending re-dispatch (pending_redispatch_s 5
	 * in the harness config), the sleep job perhaps through its lease
	 * (timeout_s 5 + lease_s 5) and a second attempt. */
	cJSON_Delete(th_wait_status(d, block, "completed", 60000));
	for (i = 0; i < N_QUEUED; i++)
		cJSON_Delete(th_wait_status(d, queued[i], "completed", 60000));
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE status "
				     "= 'completed'", NULL, 0),
			 4);
	assert_true(th_daemon_alive(d));
	th_case_passed();
}

/* An id the fetcher took out of Redis while PostgreSQL was down is held
 * and claimed when the database is back, not left for the reconciler:
 * with the re-dispatch and the lease an hour away, the reconciler would
 * not bring it back within the test. */
static void test_popped_ids_claimed_after_outage(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=1", "TASKQ_LEASE_S=3600",
					      "TASKQ_PENDING_REDISPATCH_S=3600", NULL);
	char block[TH_ID_LEN], queued[N_QUEUED][TH_ID_LEN];
	int i;

	(void)state;
	block_and_queue(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":1000}}", block, queued);

	th_pg_stop();
	/* the sleep job ends while the database is down: the free worker's
	 * fetcher takes the first queued id, and its claim fails */
	th_sleep_ms(2500);
	th_pg_start();

	cJSON_Delete(th_wait_status(d, block, "completed", 30000));
	for (i = 0; i < N_QUEUED; i++)
		cJSON_Delete(th_wait_status(d, queued[i], "completed", 30000));
	assert_true(th_daemon_alive(d));
	th_case_passed();
}

/* Redis loses the dispatch entries of committed jobs (FLUSHALL, restart
 * without persistence): the jobs are delayed, never lost (the contract's
 * "PostgreSQL is the truth; Redis is the dispatcher"). */
static void test_redis_loss_delays_not_loses(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=1", NULL);
	char block[TH_ID_LEN], queued[N_QUEUED][TH_ID_LEN];
	int i;

	(void)state;
	block_and_queue(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":1000}}", block, queued);
	/* the ids sit in the ready list while the one worker is busy */
	th_sleep_ms(200);
	assert_true(th_redis_forget(d) >= 1);

	/* pending_redispatch_s is 5 in the harness config */
	cJSON_Delete(th_wait_status(d, block, "completed", 10000));
	for (i = 0; i < N_QUEUED; i++)
		cJSON_Delete(th_wait_status(d, queued[i], "completed", 30000));
	th_case_passed();
}

/* A backlog that Redis still holds outlives pending_redispatch_s (5 s in
 * the harness config): the scheduler looks at it, finds it in Redis and
 * puts it off; no job is handed twice, each runs once. */
static void test_backlog_waits_in_redis(void **state)
{
	static const char *const held =
		"SELECT (status = 'pending' AND updated_at = created_at "
		"AND watch_at > now() + interval '1 s')::int FROM jobs WHERE id = $1::uuid";
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=1", NULL);
	char block[TH_ID_LEN], queued[N_QUEUED][TH_ID_LEN];
	struct th_records recs;
	char err[128];
	int i;

	(void)state;
	block_and_queue(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":8000},"
			"\"timeout_s\":20}", block, queued);
	/* due 5 s after the hand-off; a scheduler pass every second */
	th_sleep_ms(7000);
	for (i = 0; i < N_QUEUED; i++) {
		const char *p[1] = {queued[i]};

		if (th_sql_long(held, p, 1) != 1)
			fail_msg("job %s was not put off: %s", queued[i],
				 th_sql_text("SELECT status || ' ' || (updated_at - created_at) "
					     "|| ' ' || (watch_at - now()) FROM jobs "
					     "WHERE id = $1::uuid", p, 1));
	}
	for (i = 0; i < N_QUEUED; i++)
		cJSON_Delete(th_wait_status(d, queued[i], "completed", 30000));
	assert_int_equal(th_records_load(th_record_path(), &recs, err, sizeof(err)), 0);
	for (i = 0; i < N_QUEUED; i++)
		assert_int_equal(th_records_count(&recs, queued[i]), 1);
	th_records_free(&recs);
	th_case_passed();
}

/* Whether the running daemon's environment holds needle (it is read from
 * /proc, so it is what the process runs with after any exec). */
static bool environ_has(pid_t pid, const char *needle)
{
	char path[64], buf[65536];
	size_t n, off = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (; off < n; off += strlen(buf + off) + 1)
		if (strstr(buf + off, needle))
			return true;
	return false;
}

/*
 * A node killed with -9 in the middle of a job: another node runs it again
 * once its lease expires, even when the lease is far shorter than
 * pending_redispatch_s (the claim does not move the job's watch, so the
 * watch must already fall within a lease of the hand-off).  And the node
 * runs without glibc's per-thread caches of freed blocks, under the same
 * pid (it starts itself again with the tunable set).
 */
static void test_killed_node_job_runs_again_within_lease(void **state)
{
	struct th_daemon *a = th_daemon_start("TASKQ_LEASE_S=3", "TASKQ_HEARTBEAT_S=1",
					      "TASKQ_PENDING_REDISPATCH_S=120", NULL);
	struct th_daemon *b;
	char id[TH_ID_LEN];
	cJSON *job;

	(void)state;
	assert_true(environ_has(a->pid, "glibc.malloc.tcache_count=0"));
	th_submit(a, "{\"type\":\"sleep\",\"payload\":{\"ms\":1500},"
		     "\"timeout_s\":10}", id);
	cJSON_Delete(th_wait_status(a, id, "running", 10000));
	th_daemon_kill(a);
	b = th_daemon_start("TASKQ_LEASE_S=3", "TASKQ_HEARTBEAT_S=1",
			    "TASKQ_PENDING_REDISPATCH_S=120", NULL);
	/* lease 3 s, a pass a second, backoff up to 1 s, the run 1.5 s:
	 * far within the 120 s a watch at pending_redispatch_s would wait */
	job = th_wait_status(b, id, "completed", 20000);
	assert_int_equal(th_json_int(job, "attempts"), 2);
	cJSON_Delete(job);
	th_case_passed();
}

static int group_setup(void **state)
{
	(void)state;
	return th_group_setup("e2e_outage");
}

static int group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_postgres_outage,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_queued_jobs_survive_outage,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_popped_ids_claimed_after_outage,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_redis_loss_delays_not_loses,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_backlog_waits_in_redis,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_killed_node_job_runs_again_within_lease,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
