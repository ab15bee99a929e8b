/*
 * test_api_routes.c - the API's routing and Content-Type check (pure
 * functions; the HTTP server itself is exercised end to end elsewhere).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"

#define UUID "0b5e2a6c-3f1d-4c8e-9a7b-1d2e3f4a5b6c"
#define UUID_UPPER "0B5E2A6C-3F1D-4C8E-9A7B-1D2E3F4A5B6C"

static enum tq_api_route_id route(const char *method, const char *path,
				  struct tq_api_route *r)
{
	/* garbage first, to see that everything is reset */
	memset(r, 0x5a, sizeof(*r));
	tq_api_route(method, path, r);
	return r->id;
}

static void expect_route(const char *method, const char *path,
			 enum tq_api_route_id id)
{
	struct tq_api_route r;

	if (route(method, path, &r) != id)
		fail_msg("%s %s: route %d, expected %d", method ? method : "(null)",
			 path ? path : "(null)", (int)r.id, (int)id);
	if (id != TQ_ROUTE_METHOD_NOT_ALLOWED)
		assert_null(r.allow);
	if (id != TQ_ROUTE_JOB_GET && id != TQ_ROUTE_JOB_CANCEL)
		assert_string_equal(r.job_id, "");
}

static void test_collection(void **state)
{
	struct tq_api_route r;

	expect_route("POST", "/v1/jobs", TQ_ROUTE_JOB_SUBMIT);
	expect_route("POST", "/jobs", TQ_ROUTE_JOB_SUBMIT);
	expect_route("GET", "/v1/jobs", TQ_ROUTE_JOB_LIST);
	expect_route("GET", "/jobs", TQ_ROUTE_JOB_LIST);
	expect_route("HEAD", "/v1/jobs", TQ_ROUTE_JOB_LIST);

	assert_int_equal(route("DELETE", "/v1/jobs", &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "GET, HEAD, POST");
	assert_int_equal(route("PUT", "/jobs", &r), TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "GET, HEAD, POST");
	/* methods are case-sensitive (RFC 9110) */
	assert_int_equal(route("post", "/v1/jobs", &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
}

static void test_item(void **state)
{
	struct tq_api_route r;

	assert_int_equal(route("GET", "/v1/jobs/" UUID, &r), TQ_ROUTE_JOB_GET);
	assert_string_equal(r.job_id, UUID);
	assert_null(r.allow);
	assert_int_equal(route("HEAD", "/jobs/" UUID, &r), TQ_ROUTE_JOB_GET);
	assert_string_equal(r.job_id, UUID);
	/* any case in, lower case out */
	assert_int_equal(route("GET", "/v1/jobs/" UUID_UPPER, &r),
			 TQ_ROUTE_JOB_GET);
	assert_string_equal(r.job_id, UUID);

	assert_int_equal(route("DELETE", "/v1/jobs/" UUID, &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "GET, HEAD");
	assert_int_equal(route("POST", "/jobs/" UUID, &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "GET, HEAD");
}

static void test_not_found(void **state)
{
	static const char *const paths[] = {
		"", "/", "/v1", "/v1/", "/v2/jobs", "/v1/jobs/", "/jobs/",
		"/v1/jobsx", "/jobsx", "/v1/jobs/123",
		"/v1/jobs/" UUID "x", "/v1/jobs/" UUID "/",
		"/v1/jobs/" UUID "/result",
		"/v1/jobs/0b5e2a6c-3f1d-4c8e-9a7b-1d2e3f4a5b6",
		"/v1/jobs/0b5e2a6c33f1d-4c8e-9a7b-1d2e3f4a5b6c",
		"/v1/jobs/0b5e2a6g-3f1d-4c8e-9a7b-1d2e3f4a5b6c",
		"/v1/jobs/../healthz", "/healthz/", "/healthzz", "/V1/jobs",
		"//v1/jobs",
	};
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		expect_route("GET", paths[i], TQ_ROUTE_NOT_FOUND);
		expect_route("POST", paths[i], TQ_ROUTE_NOT_FOUND);
	}
	expect_route(NULL, "/v1/jobs", TQ_ROUTE_NOT_FOUND);
	expect_route("GET", NULL, TQ_ROUTE_NOT_FOUND);
}

static void test_health(void **state)
{
	struct tq_api_route r;

	expect_route("GET", "/healthz", TQ_ROUTE_HEALTH);
	expect_route("HEAD", "/healthz", TQ_ROUTE_HEALTH);
	assert_int_equal(route("POST", "/healthz", &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "GET, HEAD");
}

static void test_operations(void **state)
{
	struct tq_api_route r;

	expect_route("GET", "/readyz", TQ_ROUTE_READY);
	expect_route("GET", "/v1/job-types", TQ_ROUTE_JOB_TYPES);
	expect_route("POST", "/v1/plugins/reload", TQ_ROUTE_PLUGINS_RELOAD);
	assert_int_equal(route("GET", "/v1/plugins/reload", &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "POST");
	assert_int_equal(route("POST", "/readyz", &r), TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "GET, HEAD");

	assert_int_equal(route("POST", "/v1/jobs/" UUID_UPPER "/cancel", &r),
			 TQ_ROUTE_JOB_CANCEL);
	assert_string_equal(r.job_id, UUID);
	assert_int_equal(route("POST", "/jobs/" UUID "/cancel", &r), TQ_ROUTE_JOB_CANCEL);
	assert_int_equal(route("GET", "/v1/jobs/" UUID "/cancel", &r),
			 TQ_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(r.allow, "POST");
	expect_route("POST", "/v1/jobs/" UUID "/cancelx", TQ_ROUTE_NOT_FOUND);
	expect_route("POST", "/v1/jobs/not-a-uuid/cancel", TQ_ROUTE_NOT_FOUND);
}

static void test_content_type(void **state)
{
	static const char *const yes[] = {
		"application/json",
		"application/json; charset=utf-8",
		"application/json;charset=UTF-8",
		"Application/JSON",
		" application/json ; charset=utf-8",
		"application/json\t",
	};
	static const char *const no[] = {
		"", " ", "text/plain", "application/jsonx",
		"application/json-patch+json", "application/x-www-form-urlencoded",
		"application/", "application", "text/json", "json",
		"multipart/form-data; boundary=x", "application/json,text/plain",
	};
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!tq_api_is_json_content_type(yes[i]))
			fail_msg("refused \"%s\"", yes[i]);
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (tq_api_is_json_content_type(no[i]))
			fail_msg("accepted \"%s\"", no[i]);
	assert_false(tq_api_is_json_content_type(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collection),
		cmocka_unit_test(test_item),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_operations),
		cmocka_unit_test(test_content_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
