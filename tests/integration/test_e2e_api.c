/*
 * test_e2e_api.c - the REST API of a real taskqd end to end: submit, poll,
 * list, aliases, delays, priorities, and every 4xx path (which must leave
 * the jobs table unchanged).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const job_fields[] = {
	"id",	       "type",		   "payload",	 "status",
	"queue",       "priority",	   "attempts",	 "max_attempts",
	"timeout_s",   "error",		   "result",	 "progress",
	"progress_message", "run_at",	   "lease_expires_at", "created_at",
	"updated_at",  "started_at",	   "completed_at", "idempotency_key",
};

static void assert_job_shape(const cJSON *job)
{
	size_t i;

	assert_true(cJSON_IsObject(job));
	for (i = 0; i < sizeof(job_fields) / sizeof(job_fields[0]); i++)
		if (!cJSON_HasObjectItem(job, job_fields[i]))
			fail_msg("job JSON lacks \"%s\"", job_fields[i]);
}

/* 1. echo completes with its result. */
static void test_echo_completes_with_result(void **state)
{
	static const char payload[] =
		"{\"a\":1,\"b\":[true,null,\"x\"],\"c\":{\"d\":\"\\u00e9\"}}";
	struct th_daemon *d = th_daemon_start(NULL);
	char body[256], id[TH_ID_LEN];
	cJSON *job, *want;
	long long ok;

	(void)state;
	snprintf(body, sizeof(body), "{\"type\":\"echo\",\"payload\":%s}",
		 payload);
	th_submit(d, body, id);
	job = th_wait_status(d, id, "completed", 10000);
	assert_job_shape(job);
	want = cJSON_Parse(payload);
	assert_non_null(want);
	assert_true(cJSON_Compare(cJSON_GetObjectItem(job, "result"), want, 1));
	assert_true(cJSON_Compare(cJSON_GetObjectItem(job, "payload"), want, 1));
	assert_string_equal(th_json_str(job, "type"), "echo");
	assert_int_equal(th_json_int(job, "attempts"), 1);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(job, "error")));
	assert_non_null(th_json_str(job, "started_at"));
	assert_non_null(th_json_str(job, "completed_at"));
	cJSON_Delete(want);
	cJSON_Delete(job);

	/* and the row says the same */
	ok = th_sql_long("SELECT count(*) FROM jobs WHERE id = $1::uuid AND "
			 "status = 'completed' AND attempts = 1 AND "
			 "result = $2::jsonb AND completed_at IS NOT NULL",
			 TH_PARAMS(id, payload));
	assert_int_equal(ok, 1);
	th_case_passed();
}

/* 201 body, Location header, and the unversioned /jobs aliases. */
static void test_location_and_alias(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_resp r;
	char loc[256], want[256], path[128], id[TH_ID_LEN];
	const cJSON *jobs, *it;
	bool found = false;

	(void)state;
	th_http(d, "POST", "/v1/jobs",
		"{\"type\":\"echo\",\"payload\":{\"n\":1},\"priority\":3,"
		"\"max_attempts\":7,\"timeout_s\":42}",
		"application/json", &r);
	assert_int_equal(r.status, 201);
	assert_job_shape(r.json);
	assert_string_equal(th_json_str(r.json, "type"), "echo");
	assert_string_equal(th_json_str(r.json, "queue"), "default");
	assert_int_equal(th_json_int(r.json, "priority"), 3);
	assert_int_equal(th_json_int(r.json, "max_attempts"), 7);
	assert_int_equal(th_json_int(r.json, "timeout_s"), 42);
	/* claimed at submission by this idle node */
	assert_int_equal(th_json_int(r.json, "attempts"), 1);
	assert_non_null(th_json_str(r.json, "created_at"));
	assert_non_null(th_json_str(r.json, "status"));
	assert_non_null(th_json_str(r.json, "id"));
	snprintf(id, sizeof(id), "%s", th_json_str(r.json, "id"));
	assert_true(th_resp_header(&r, "Location", loc, sizeof(loc)));
	snprintf(want, sizeof(want), "/v1/jobs/%s", id);
	assert_string_equal(loc, want);
	assert_true(th_resp_header(&r, "Content-Type", loc, sizeof(loc)));
	assert_true(strncmp(loc, "application/json", 16) == 0);
	th_resp_free(&r);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE id = "
				     "$1::uuid AND priority = 3 AND "
				     "max_attempts = 7 AND timeout_s = 42",
				     TH_PARAMS(id)),
			 1);

	/* POST /jobs is the same endpoint */
	th_http(d, "POST", "/jobs", "{\"type\":\"echo\",\"payload\":{\"n\":2}}",
		"application/json", &r);
	assert_int_equal(r.status, 201);
	assert_non_null(th_json_str(r.json, "id"));
	snprintf(id, sizeof(id), "%s", th_json_str(r.json, "id"));
	th_resp_free(&r);

	snprintf(path, sizeof(path), "/jobs/%s", id);
	th_http(d, "GET", path, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(th_json_str(r.json, "id"), id);
	th_resp_free(&r);

	th_http(d, "GET", "/jobs", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	jobs = cJSON_GetObjectItem(r.json, "jobs");
	assert_true(cJSON_IsArray(jobs));
	cJSON_ArrayForEach(it, jobs)
		if (th_json_str(it, "id") &&
		    strcmp(th_json_str(it, "id"), id) == 0)
			found = true;
	assert_true(found);
	th_resp_free(&r);

	th_http(d, "GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	th_resp_free(&r);
	th_case_passed();
}

/* The 201 body is the job exactly as GET shows it (a job scheduled an
 * hour ahead, so that nothing changes it in between), whatever the
 * payload's spacing, nesting and escapes. */
static void test_created_body_is_the_job(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_resp created, got;
	char path[128];

	(void)state;
	th_http(d, "POST", "/v1/jobs",
		"{\"type\":\"echo\",\"queue\":\"q.A-1_b\",\"delay_s\":3600,"
		"\"payload\": { \"s\" : \"\\u00e9 \\\"q\\\" \\\\\", \"n\":[1, 2.5, -3e2, null],"
		"\"o\":{\"t\":true} } }",
		"application/json", &created);
	assert_int_equal(created.status, 201);
	assert_job_shape(created.json);
	assert_string_equal(th_json_str(created.json, "status"), "scheduled");
	snprintf(path, sizeof(path), "/v1/jobs/%s", th_json_str(created.json, "id"));
	th_http(d, "GET", path, NULL, NULL, &got);
	assert_int_equal(got.status, 200);
	if (!cJSON_Compare(created.json, got.json, 1))
		fail_msg("201 body %s\nGET body %s", created.body, got.body);
	th_resp_free(&created);
	th_resp_free(&got);
	th_case_passed();
}

/*
 * A job this node can run now is inserted claimed by it: the 201 body
 * already says running, attempt 1, started at its creation, as GET says
 * it; it runs without a pass through Redis.  With claim_on_submit off the
 * same submission is pending, as a node without free workers leaves it.
 */
static void test_claimed_at_submission(void **state)
{
	static const char body[] =
		"{\"type\":\"sleep\",\"payload\": { \"ms\" : 1500, \"x\":[1, 2.5]} }";
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_resp created, got;
	char path[128];
	cJSON *job;

	(void)state;
	th_http(d, "POST", "/v1/jobs", body, "application/json", &created);
	assert_int_equal(created.status, 201);
	assert_job_shape(created.json);
	assert_string_equal(th_json_str(created.json, "status"), "running");
	assert_int_equal(th_json_int(created.json, "attempts"), 1);
	assert_string_equal(th_json_str(created.json, "started_at"),
			    th_json_str(created.json, "created_at"));
	assert_non_null(th_json_str(created.json, "lease_expires_at"));
	snprintf(path, sizeof(path), "/v1/jobs/%s", th_json_str(created.json, "id"));
	th_http(d, "GET", path, NULL, NULL, &got);
	assert_int_equal(got.status, 200);
	if (!cJSON_Compare(created.json, got.json, 1))
		fail_msg("201 body %s\nGET body %s", created.body, got.body);
	job = th_wait_status(d, th_json_str(created.json, "id"), "completed", 10000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	cJSON_Delete(job);
	th_resp_free(&created);
	th_resp_free(&got);
	th_daemon_stop(d, 10000);

	d = th_daemon_start("TASKQ_CLAIM_ON_SUBMIT=false", NULL);
	th_http(d, "POST", "/v1/jobs", body, "application/json", &created);
	assert_int_equal(created.status, 201);
	assert_string_equal(th_json_str(created.json, "status"), "pending");
	assert_int_equal(th_json_int(created.json, "attempts"), 0);
	assert_null(th_json_str(created.json, "started_at"));
	job = th_wait_status(d, th_json_str(created.json, "id"), "completed", 10000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	cJSON_Delete(job);
	th_resp_free(&created);
	th_case_passed();
}

/*
 * A submission waiting for its commit does not hold its HTTP thread: with
 * one thread and the inserts held up by a lock, other requests are
 * answered meanwhile, and both waiting submissions get their 201 once the
 * lock is gone.
 */
static void test_commit_wait_frees_the_thread(void **state)
{
	static const char *const bodies[] = {
		"{\"type\":\"echo\",\"payload\":{\"n\":1}}",
		"{\"type\":\"echo\",\"payload\":{\"n\":2}}",
	};
	struct th_daemon *d = th_daemon_start("TASKQ_API_THREADS=1", NULL);
	struct th_async sub[2];
	struct th_resp r;
	PGconn *lock;

	(void)state;
	lock = th_jobs_lock();
	for (int i = 0; i < 2; i++)
		th_http_start(&sub[i], d, "POST", "/v1/jobs", bodies[i]);
	assert_true(th_lock_waiters(1, 10000));
	th_http(d, "GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	th_resp_free(&r);
	th_http(d, "GET", "/v1/jobs?limit=5", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_true(cJSON_IsArray(cJSON_GetObjectItem(r.json, "jobs")));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 0);
	th_resp_free(&r);
	th_jobs_unlock(lock);
	for (int i = 0; i < 2; i++) {
		th_http_join(&sub[i]);
		assert_int_equal(sub[i].resp.status, 201);
		cJSON_Delete(th_wait_status(d, th_json_str(sub[i].resp.json, "id"),
					    "completed", 10000));
		th_resp_free(&sub[i].resp);
	}
	assert_int_equal(th_jobs_count(), 2);
	th_case_passed();
}

static void submit_typed(struct th_daemon *d, const char *type,
			 const char *payload, char id[TH_ID_LEN])
{
	char body[256];

	snprintf(body, sizeof(body), "{\"type\":\"%s\",\"payload\":%s}", type,
		 payload);
	th_submit(d, body, id);
}

/* GET /v1/jobs with status, type and limit filters, newest first. */
static void test_list_filters(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	char echo_ids[3][TH_ID_LEN], sleep_ids[2][TH_ID_LEN];
	const cJSON *jobs, *it;
	struct th_resp r;
	char prev[64] = "";
	cJSON *job;
	int i, n;

	(void)state;
	for (i = 0; i < 3; i++) {
		submit_typed(d, "echo", "{}", echo_ids[i]);
		th_sleep_ms(20);
	}
	for (i = 0; i < 2; i++) {
		submit_typed(d, "sleep", "{\"ms\":1}", sleep_ids[i]);
		th_sleep_ms(20);
	}
	for (i = 0; i < 3; i++)
		cJSON_Delete(th_wait_status(d, echo_ids[i], "completed", 10000));
	for (i = 0; i < 2; i++)
		cJSON_Delete(th_wait_status(d, sleep_ids[i], "completed", 10000));

	/* everything, newest first */
	th_http(d, "GET", "/v1/jobs", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	jobs = cJSON_GetObjectItem(r.json, "jobs");
	assert_true(cJSON_IsArray(jobs));
	assert_int_equal(cJSON_GetArraySize(jobs), 5);
	assert_string_equal(th_json_str(cJSON_GetArrayItem(jobs, 0), "id"),
			    sleep_ids[1]);
	assert_string_equal(th_json_str(cJSON_GetArrayItem(jobs, 4), "id"),
			    echo_ids[0]);
	cJSON_ArrayForEach(it, jobs) {
		const char *c = th_json_str(it, "created_at");

		assert_job_shape(it);
		assert_non_null(c);
		/* RFC 3339 in one zone sorts as text */
		if (prev[0])
			assert_true(strcmp(c, prev) <= 0);
		snprintf(prev, sizeof(prev), "%s", c);
	}
	th_resp_free(&r);

	/* by type */
	th_http(d, "GET", "/v1/jobs?type=sleep", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	jobs = cJSON_GetObjectItem(r.json, "jobs");
	assert_int_equal(cJSON_GetArraySize(jobs), 2);
	cJSON_ArrayForEach(it, jobs)
		assert_string_equal(th_json_str(it, "type"), "sleep");
	assert_string_equal(th_json_str(cJSON_GetArrayItem(jobs, 0), "id"),
			    sleep_ids[1]);
	th_resp_free(&r);

	/* by status and type, limited */
	th_http(d, "GET", "/v1/jobs?status=completed&type=echo&limit=2", NULL,
		NULL, &r);
	assert_int_equal(r.status, 200);
	jobs = cJSON_GetObjectItem(r.json, "jobs");
	assert_int_equal(cJSON_GetArraySize(jobs), 2);
	cJSON_ArrayForEach(it, jobs) {
		assert_string_equal(th_json_str(it, "type"), "echo");
		assert_string_equal(th_json_str(it, "status"), "completed");
	}
	assert_string_equal(th_json_str(cJSON_GetArrayItem(jobs, 0), "id"),
			    echo_ids[2]);
	assert_string_equal(th_json_str(cJSON_GetArrayItem(jobs, 1), "id"),
			    echo_ids[1]);
	th_resp_free(&r);

	/* a status nothing has */
	th_http(d, "GET", "/v1/jobs?status=failed", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	jobs = cJSON_GetObjectItem(r.json, "jobs");
	assert_true(cJSON_IsArray(jobs));
	assert_int_equal(cJSON_GetArraySize(jobs), 0);
	th_resp_free(&r);

	/* limit alone */
	th_http(d, "GET", "/v1/jobs?limit=1", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	n = cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs"));
	assert_int_equal(n, 1);
	th_resp_free(&r);

	job = th_get_job(d, echo_ids[0]);
	assert_non_null(job);
	assert_string_equal(th_json_str(job, "status"), "completed");
	cJSON_Delete(job);
	th_case_passed();
}

/* delay_s and run_at: the job waits in "scheduled", then runs. */
static void test_delay_schedules(void **state)
{
	struct th_daemon *d = th_daemon_start(NULL);
	char id[TH_ID_LEN], id2[TH_ID_LEN], body[256], stamp[64];
	struct th_resp r;
	struct tm tm;
	time_t t;
	cJSON *job;
	long long ms;

	(void)state;
	th_http(d, "POST", "/v1/jobs",
		"{\"type\":\"echo\",\"payload\":{\"d\":1},\"delay_s\":2}",
		"application/json", &r);
	assert_int_equal(r.status, 201);
	assert_string_equal(th_json_str(r.json, "status"), "scheduled");
	assert_non_null(th_json_str(r.json, "run_at"));
	snprintf(id, sizeof(id), "%s", th_json_str(r.json, "id"));
	th_resp_free(&r);

	/* run_at about two seconds after created_at */
	ms = th_sql_long("SELECT (extract(epoch FROM run_at - created_at) * "
			 "1000)::bigint FROM jobs WHERE id = $1::uuid",
			 TH_PARAMS(id));
	assert_in_range(ms, 1900, 2100);

	/* an absolute run_at, RFC 3339, two seconds ahead */
	t = time(NULL) + 2;
	gmtime_r(&t, &tm);
	assert_true(strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) >
		    0);
	snprintf(body, sizeof(body),
		 "{\"type\":\"echo\",\"payload\":{\"d\":2},\"run_at\":\"%s\"}",
		 stamp);
	th_http(d, "POST", "/v1/jobs", body, "application/json", &r);
	assert_int_equal(r.status, 201);
	assert_string_equal(th_json_str(r.json, "status"), "scheduled");
	snprintf(id2, sizeof(id2), "%s", th_json_str(r.json, "id"));
	th_resp_free(&r);

	th_sleep_ms(700);
	job = th_get_job(d, id);
	assert_non_null(job);
	assert_string_equal(th_json_str(job, "status"), "scheduled");
	assert_int_equal(th_json_int(job, "attempts"), 0);
	cJSON_Delete(job);

	cJSON_Delete(th_wait_status(d, id, "completed", 10000));
	cJSON_Delete(th_wait_status(d, id2, "completed", 10000));
	/* it did not start before it was due */
	ms = th_sql_long("SELECT (extract(epoch FROM started_at - created_at) "
			 "* 1000)::bigint FROM jobs WHERE id = $1::uuid",
			 TH_PARAMS(id));
	assert_true(ms >= 1900);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE id = "
				     "$1::uuid AND started_at >= run_at",
				     TH_PARAMS(id2)),
			 1);
	th_case_passed();
}

/* One worker: a blocking job first, then low and high priority jobs; the
 * high one starts first. */
static void test_priority_order(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_WORKERS=1", NULL);
	char block[TH_ID_LEN], low[TH_ID_LEN], low2[TH_ID_LEN],
		high[TH_ID_LEN];
	struct th_records recs;
	struct th_record rl, rl2, rh;
	char err[256];
	size_t i, il = 0, il2 = 0, ih = 0;

	(void)state;
	th_submit(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":1500}}", block);
	cJSON_Delete(th_wait_status(d, block, "running", 10000));
	th_submit(d, "{\"type\":\"record\",\"payload\":{},\"priority\":1}", low);
	th_submit(d, "{\"type\":\"record\",\"payload\":{},\"priority\":1}", low2);
	th_submit(d, "{\"type\":\"record\",\"payload\":{},\"priority\":8}", high);
	cJSON_Delete(th_wait_status(d, block, "completed", 10000));
	cJSON_Delete(th_wait_status(d, high, "completed", 10000));
	cJSON_Delete(th_wait_status(d, low, "completed", 10000));
	cJSON_Delete(th_wait_status(d, low2, "completed", 10000));

	assert_int_equal(th_records_load(th_record_path(), &recs, err,
					 sizeof(err)), 0);
	assert_int_equal(th_records_of(&recs, low, &rl, 1), 1);
	assert_int_equal(th_records_of(&recs, low2, &rl2, 1), 1);
	assert_int_equal(th_records_of(&recs, high, &rh, 1), 1);
	for (i = 0; i < recs.n; i++) {
		if (strcmp(recs.v[i].id, low) == 0)
			il = i;
		else if (strcmp(recs.v[i].id, low2) == 0)
			il2 = i;
		else if (strcmp(recs.v[i].id, high) == 0)
			ih = i;
	}
	th_records_free(&recs);
	/* high before both lows; equal priorities in FIFO order */
	assert_true(ih < il);
	assert_true(il < il2);
	assert_true(rh.ms <= rl.ms);
	th_case_passed();
}

static void expect_error(const struct th_daemon *d, const char *method,
			 const char *path, const char *body, const char *ct,
			 long status, const char *code)
{
	struct th_resp r;
	char hdr[256];

	th_http(d, method, path, body, ct, &r);
	if (r.status != status || strcmp(th_resp_code(&r), code) != 0 ||
	    !th_json_str(r.json, "error") || !*th_json_str(r.json, "error")) {
		fprintf(stderr,
			"%s %s (%s, body %.120s): want %ld %s, got %ld %s %s\n",
			method, path, ct ? ct : "no content type",
			body ? body : "(none)", status, code, r.status,
			r.body ? r.body : "", r.error);
		th_resp_free(&r);
		fail_msg("wrong error answer");
	}
	if (!th_resp_header(&r, "Content-Type", hdr, sizeof(hdr)) ||
	    strncmp(hdr, "application/json", 16) != 0) {
		th_resp_free(&r);
		fail_msg("%s %s: error body is not application/json", method,
			 path);
	}
	th_resp_free(&r);
}

static void expect_invalid(const struct th_daemon *d, const char *body,
			   const char *code)
{
	expect_error(d, "POST", "/v1/jobs", body, "application/json", 400,
		     code);
}

/* 5. every 4xx path answers its code and stores nothing. */
static void test_errors_change_nothing(void **state)
{
	struct th_daemon *d = th_daemon_start("TASKQ_MAX_BODY_BYTES=4096", NULL);
	char id[TH_ID_LEN], big[8192], allow[256];
	struct th_resp r;
	long long before;
	size_t off;

	(void)state;
	/* one real job, so that "unchanged" is not "empty" */
	th_submit(d, "{\"type\":\"echo\",\"payload\":{}}", id);
	cJSON_Delete(th_wait_status(d, id, "completed", 10000));
	before = th_jobs_count();
	assert_int_equal(before, 1);

	expect_invalid(d, "{\"type\":\"echo\",", "INVALID_JSON");
	expect_invalid(d, "not json", "INVALID_JSON");
	expect_invalid(d, "", "INVALID_JSON");
	expect_invalid(d, "[1,2]", "INVALID_REQUEST");
	expect_invalid(d, "\"echo\"", "INVALID_REQUEST");
	expect_invalid(d, "{}", "INVALID_REQUEST");
	expect_invalid(d, "{\"payload\":{}}", "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":5}", "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":null}", "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"queue\":5}", "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"priority\":\"high\"}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"priority\":10}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"priority\":-1}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"priority\":1.5}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"max_attempts\":\"3\"}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"max_attempts\":0}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"max_attempts\":101}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"timeout_s\":\"x\"}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"timeout_s\":0}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"delay_s\":\"x\"}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"delay_s\":-1}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"run_at\":5}", "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"echo\",\"run_at\":\"tomorrow\"}",
		       "INVALID_REQUEST");
	expect_invalid(d, "{\"type\":\"no.such.type\",\"payload\":{}}",
		       "UNKNOWN_JOB_TYPE");
	expect_invalid(d, "{\"type\":\"sleep\",\"payload\":{\"ms\":-1}}",
		       "INVALID_PAYLOAD");

	/* oversized body: valid JSON, larger than api.max_body_bytes */
	off = (size_t)snprintf(big, sizeof(big),
			       "{\"type\":\"echo\",\"payload\":{\"s\":\"");
	memset(big + off, 'x', sizeof(big) - off - 8);
	snprintf(big + sizeof(big) - 8, 8, "\"}}");
	expect_error(d, "POST", "/v1/jobs", big, "application/json", 413,
		     "PAYLOAD_TOO_LARGE");

	/* content type */
	expect_error(d, "POST", "/v1/jobs", "{\"type\":\"echo\"}", "text/plain",
		     415, "UNSUPPORTED_MEDIA_TYPE");
	expect_error(d, "POST", "/v1/jobs", "{\"type\":\"echo\"}", NULL, 415,
		     "UNSUPPORTED_MEDIA_TYPE");
	expect_error(d, "POST", "/v1/jobs", "{\"type\":\"echo\"}",
		     "application/x-www-form-urlencoded", 415,
		     "UNSUPPORTED_MEDIA_TYPE");

	/* paths, methods, ids */
	expect_error(d, "GET", "/v1/nothing", NULL, NULL, 404, "NOT_FOUND");
	expect_error(d, "GET", "/", NULL, NULL, 404, "NOT_FOUND");
	expect_error(d, "POST", "/v1/nothing", "{\"type\":\"echo\"}",
		     "application/json", 404, "NOT_FOUND");
	expect_error(d, "GET", "/v1/jobs/00000000-0000-4000-8000-000000000000",
		     NULL, NULL, 404, "NOT_FOUND");
	expect_error(d, "GET", "/v1/jobs/not-a-uuid", NULL, NULL, 404,
		     "NOT_FOUND");
	expect_error(d, "GET", "/v1/jobs/123", NULL, NULL, 404, "NOT_FOUND");
	expect_error(d, "PUT", "/v1/jobs", "{\"type\":\"echo\"}",
		     "application/json", 405, "METHOD_NOT_ALLOWED");

	th_http(d, "PUT", "/v1/jobs", "{}", "application/json", &r);
	assert_int_equal(r.status, 405);
	assert_true(th_resp_header(&r, "Allow", allow, sizeof(allow)));
	assert_non_null(strstr(allow, "GET"));
	assert_non_null(strstr(allow, "POST"));
	th_resp_free(&r);

	th_http(d, "POST", "/healthz", "{}", "application/json", &r);
	assert_int_equal(r.status, 405);
	assert_true(th_resp_header(&r, "Allow", allow, sizeof(allow)));
	assert_non_null(strstr(allow, "GET"));
	assert_null(strstr(allow, "POST"));
	th_resp_free(&r);

	assert_int_equal(th_jobs_count(), before);

	/* the daemon is still fine, and a charset parameter is accepted */
	th_http(d, "POST", "/v1/jobs", "{\"type\":\"echo\",\"payload\":{}}",
		"application/json; charset=utf-8", &r);
	assert_int_equal(r.status, 201);
	th_resp_free(&r);
	assert_int_equal(th_jobs_count(), before + 1);
	th_case_passed();
}

/* A submission with an idempotency key makes one job however often it
 * is sent: a retry gets that job with 200, the same key with another
 * payload gets 409 and changes nothing, and retries that race each other
 * still make one job. */
static void test_idempotency_key(void **state)
{
	static const char body[] =
		"{\"type\":\"echo\",\"payload\":{\"n\":1},\"idempotency_key\":\"order-42\"}";
	const char *key_param[1] = {"order-42"};
	struct th_daemon *d = th_daemon_start(NULL);
	struct th_async race[8];
	struct th_resp r;
	char id[TH_ID_LEN], loc[128], want_loc[128];
	long long before;
	cJSON *job;
	int created = 0, found = 0;
	size_t i;

	(void)state;
	th_http(d, "POST", "/v1/jobs", body, "application/json", &r);
	assert_int_equal(r.status, 201);
	assert_job_shape(r.json);
	assert_string_equal(th_json_str(r.json, "idempotency_key"), "order-42");
	snprintf(id, sizeof(id), "%s", th_json_str(r.json, "id"));
	th_resp_free(&r);
	job = th_wait_status(d, id, "completed", 10000);
	cJSON_Delete(job);

	/* the retry: the same job, as it is now, with 200 */
	th_http(d, "POST", "/v1/jobs", body, "application/json", &r);
	assert_int_equal(r.status, 200);
	assert_job_shape(r.json);
	assert_string_equal(th_json_str(r.json, "id"), id);
	assert_string_equal(th_json_str(r.json, "status"), "completed");
	assert_int_equal(th_json_int(r.json, "attempts"), 1);
	assert_true(th_resp_header(&r, "Location", loc, sizeof(loc)));
	snprintf(want_loc, sizeof(want_loc), "/v1/jobs/%s", id);
	assert_string_equal(loc, want_loc);
	th_resp_free(&r);

	/* the same key for another job: refused, nothing stored */
	before = th_jobs_count();
	th_http(d, "POST", "/v1/jobs",
		"{\"type\":\"echo\",\"payload\":{\"n\":2},\"idempotency_key\":\"order-42\"}",
		"application/json", &r);
	assert_int_equal(r.status, 409);
	assert_string_equal(th_resp_code(&r), "IDEMPOTENCY_KEY_REUSED");
	assert_non_null(strstr(th_json_str(r.json, "error"), id));
	th_resp_free(&r);
	th_http(d, "POST", "/v1/jobs",
		"{\"type\":\"sleep\",\"payload\":{\"ms\":1},\"idempotency_key\":\"order-42\"}",
		"application/json", &r);
	if (r.status != 409)
		fail_msg("another type: %ld %s", r.status, r.body);
	th_resp_free(&r);
	assert_int_equal(th_jobs_count(), before);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE idempotency_key = $1",
				     key_param, 1), 1);

	/* keys that are not keys, and keys in a batch: 400, nothing stored */
	{
		static const char *const bad[] = {
			"{\"type\":\"echo\",\"idempotency_key\":\"\"}",
			"{\"type\":\"echo\",\"idempotency_key\":\"a\\nb\"}",
			"{\"type\":\"echo\",\"idempotency_key\":\"\\u00e9\"}",
			"{\"type\":\"echo\",\"idempotency_key\":42}",
			"{\"type\":\"echo\",\"idempotency_key\":null}",
		};
		char longer[512];

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			th_http(d, "POST", "/v1/jobs", bad[i], "application/json", &r);
			if (r.status != 400 || strcmp(th_resp_code(&r), "INVALID_REQUEST") != 0)
				fail_msg("%s: %ld %s", bad[i], r.status, r.body);
			th_resp_free(&r);
		}
		snprintf(longer, sizeof(longer),
			 "{\"type\":\"echo\",\"idempotency_key\":\"%0201d\"}", 0);
		th_http(d, "POST", "/v1/jobs", longer, "application/json", &r);
		assert_int_equal(r.status, 400);
		th_resp_free(&r);
		snprintf(longer, sizeof(longer),
			 "{\"type\":\"echo\",\"idempotency_key\":\"%0200d\"}", 0);
		th_http(d, "POST", "/v1/jobs", longer, "application/json", &r);
		assert_int_equal(r.status, 201);
		th_resp_free(&r);
		before = th_jobs_count();
		th_http(d, "POST", "/v1/jobs/batch",
			"{\"jobs\":[{\"type\":\"echo\"},"
			"{\"type\":\"echo\",\"idempotency_key\":\"b-1\"}]}",
			"application/json", &r);
		assert_int_equal(r.status, 400);
		assert_string_equal(th_resp_code(&r), "INVALID_REQUEST");
		assert_non_null(strstr(th_json_str(r.json, "error"), "jobs[1]"));
		th_resp_free(&r);
		assert_int_equal(th_jobs_count(), before);
	}

	/* the Idempotency-Key header: the same key as the field */
	th_http_header(d, "POST", "/v1/jobs", "{\"type\":\"echo\",\"payload\":{\"n\":1}}",
		       "application/json", "Idempotency-Key: order-42", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(th_json_str(r.json, "id"), id);
	th_resp_free(&r);
	th_http_header(d, "POST", "/v1/jobs", body, "application/json",
		       "Idempotency-Key: order-42", &r);
	assert_int_equal(r.status, 200);
	th_resp_free(&r);
	before = th_jobs_count();
	{
		static const char *const bad_headers[] = {
			"Idempotency-Key: order-43", /* differs from the body's */
			"Idempotency-Key: caf\xc3\xa9",
		};

		for (i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
			th_http_header(d, "POST", "/v1/jobs", body, "application/json",
				       bad_headers[i], &r);
			if (r.status != 400 || strcmp(th_resp_code(&r), "INVALID_REQUEST") != 0)
				fail_msg("%s: %ld %s", bad_headers[i], r.status, r.body);
			th_resp_free(&r);
		}
	}
	th_http_header(d, "POST", "/v1/jobs/batch", "{\"jobs\":[{\"type\":\"echo\"}]}",
		       "application/json", "Idempotency-Key: b-2", &r);
	assert_int_equal(r.status, 400);
	th_resp_free(&r);
	assert_int_equal(th_jobs_count(), before);
	th_http_header(d, "POST", "/v1/jobs", "{\"type\":\"echo\",\"payload\":{}}",
		       "application/json", "Idempotency-Key: by-header", &r);
	assert_int_equal(r.status, 201);
	assert_string_equal(th_json_str(r.json, "idempotency_key"), "by-header");
	th_resp_free(&r);

	/* eight retries at once of a submission never seen: one job */
	for (i = 0; i < 8; i++)
		th_http_start(&race[i], d, "POST", "/v1/jobs",
			      "{\"type\":\"echo\",\"payload\":{},\"idempotency_key\":\"race\"}");
	for (i = 0; i < 8; i++) {
		th_http_join(&race[i]);
		if (race[i].resp.status == 201)
			created++;
		else if (race[i].resp.status == 200)
			found++;
		else
			fail_msg("racing submission: %ld %s", race[i].resp.status,
				 race[i].resp.body);
	}
	assert_int_equal(created, 1);
	assert_int_equal(found, 7);
	for (i = 1; i < 8; i++)
		assert_string_equal(th_json_str(race[i].resp.json, "id"),
				    th_json_str(race[0].resp.json, "id"));
	for (i = 0; i < 8; i++)
		th_resp_free(&race[i].resp);
	key_param[0] = "race";
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE idempotency_key = $1",
				     key_param, 1), 1);
	th_case_passed();
}

static int group_setup(void **state)
{
	(void)state;
	return th_group_setup("e2e_api");
}

static int group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_echo_completes_with_result,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_created_body_is_the_job,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_claimed_at_submission,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_commit_wait_frees_the_thread,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_location_and_alias,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_list_filters, th_case_setup,
						th_case_teardown),
		cmocka_unit_test_setup_teardown(test_delay_schedules,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_priority_order,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_errors_change_nothing,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_idempotency_key,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
