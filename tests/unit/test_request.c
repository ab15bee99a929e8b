/*
 * test_request.c - parsing and validation of POST /v1/jobs bodies.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "request.h"

static int parse(const char *body, struct tq_job_spec *spec,
		 struct tq_api_error *err)
{
	memset(err, 0, sizeof(*err));
	return tq_request_parse_job(body, strlen(body), spec, err);
}

/* Parse body, expect a 400 with code and (when given) the message
 * containing needle, and an empty spec. */
static void expect_refused(const char *body, const char *code,
			   const char *needle)
{
	struct tq_job_spec spec;
	struct tq_api_error err;
	int rc;

	rc = parse(body, &spec, &err);
	if (rc != -EINVAL)
		fail_msg("accepted: %s", body);
	assert_int_equal(err.status, 400);
	assert_non_null(err.code);
	if (strcmp(err.code, code) != 0)
		fail_msg("body %s: code %s, expected %s (%s)", body, err.code,
			 code, err.message);
	if (needle && !strstr(err.message, needle))
		fail_msg("body %s: message \"%s\" lacks \"%s\"", body,
			 err.message, needle);
	assert_null(spec.type);
	assert_null(spec.payload);
	assert_null(spec.queue);
}

static void expect_field_refused(const char *field, const char *value,
				 const char *message)
{
	char body[512];
	struct tq_job_spec spec;
	struct tq_api_error err;
	int n;

	n = snprintf(body, sizeof(body), "{\"type\":\"echo\",\"%s\":%s}", field,
		     value);
	assert_true(n > 0 && (size_t)n < sizeof(body));
	assert_int_equal(parse(body, &spec, &err), -EINVAL);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, TQ_ERR_INVALID_REQUEST);
	if (strcmp(err.message, message) != 0)
		fail_msg("%s=%s: message \"%s\", expected \"%s\"", field, value,
			 err.message, message);
	assert_null(spec.type);
	assert_null(spec.payload);
}

static void expect_accepted(const char *body, struct tq_job_spec *spec)
{
	struct tq_api_error err;

	if (parse(body, spec, &err) != 0)
		fail_msg("refused %s: %s %s", body, err.code, err.message);
}

static void test_minimal(void **state)
{
	struct tq_job_spec spec;

	expect_accepted("{\"type\":\"echo\"}", &spec);
	assert_string_equal(spec.type, "echo");
	assert_string_equal(spec.payload, "{}");
	assert_string_equal(spec.queue, "default");
	assert_int_equal(spec.priority, 0);
	assert_int_equal(spec.max_attempts, 0);
	assert_int_equal(spec.timeout_s, 0);
	assert_false(spec.has_delay);
	assert_false(spec.has_run_at);
	tq_job_spec_free(&spec);
	assert_null(spec.type);
	tq_job_spec_free(&spec); /* twice is harmless */
	tq_job_spec_free(NULL);
}

static void test_full_with_delay(void **state)
{
	struct tq_job_spec spec;

	expect_accepted(" \n{\"type\": \"mail.send-v2_x\", \"payload\": {\"to\": [1, 2.5, \"x\"], \"n\": null},"
			" \"queue\": \"High.Prio-1_x\", \"priority\": 9, \"max_attempts\": 100,"
			" \"timeout_s\": 86400, \"delay_s\": 1.5}\r\n\t",
			&spec);
	assert_string_equal(spec.type, "mail.send-v2_x");
	assert_string_equal(spec.payload, "{\"to\":[1,2.5,\"x\"],\"n\":null}");
	assert_string_equal(spec.queue, "High.Prio-1_x");
	assert_int_equal(spec.priority, 9);
	assert_int_equal(spec.max_attempts, 100);
	assert_int_equal(spec.timeout_s, 86400);
	assert_true(spec.has_delay);
	assert_int_equal(spec.delay_ms, 1500);
	assert_false(spec.has_run_at);
	tq_job_spec_free(&spec);
}

static void test_full_with_run_at(void **state)
{
	struct tq_job_spec spec;

	expect_accepted("{\"run_at\":\"2026-01-31T12:00:00Z\",\"timeout_s\":1,"
			"\"max_attempts\":1,\"priority\":0,\"type\":\"a\"}",
			&spec);
	assert_string_equal(spec.type, "a");
	assert_true(spec.has_run_at);
	assert_false(spec.has_delay);
	assert_int_equal(spec.run_at_ms, 1769860800000LL);
	assert_int_equal(spec.max_attempts, 1);
	assert_int_equal(spec.timeout_s, 1);
	tq_job_spec_free(&spec);
}

static void test_invalid_json(void **state)
{
	expect_refused("", TQ_ERR_INVALID_JSON, "empty");
	expect_refused("   ", TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{", TQ_ERR_INVALID_JSON, "not valid JSON");
	expect_refused("{\"type\":\"echo\",}", TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{'type':'echo'}", TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{\"type\":\"echo\"} {}", TQ_ERR_INVALID_JSON,
		       "after the JSON value");
	expect_refused("{\"type\":\"echo\"}x", TQ_ERR_INVALID_JSON, NULL);
	expect_refused("nul", TQ_ERR_INVALID_JSON, NULL);
	/* numbers strtod() takes but JSON does not */
	expect_refused("{\"type\":\"echo\",\"payload\":01}",
		       TQ_ERR_INVALID_JSON, "number");
	expect_refused("{\"type\":\"echo\",\"payload\":[1.]}",
		       TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{\"type\":\"echo\",\"payload\":-.5}",
		       TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{\"type\":\"echo\",\"payload\":{\"a\":1e}}",
		       TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{\"type\":\"echo\",\"priority\":00}",
		       TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{\"type\":\"echo\",\"payload\":.5}",
		       TQ_ERR_INVALID_JSON, NULL);
	expect_refused("{\"type\":\"echo\",\"payload\":+1}",
		       TQ_ERR_INVALID_JSON, NULL);
	/* invalid UTF-8 (a lone continuation byte, an overlong "/") */
	expect_refused("{\"type\":\"echo\",\"payload\":\"\x80\"}",
		       TQ_ERR_INVALID_JSON, "UTF-8");
	expect_refused("{\"type\":\"echo\",\"payload\":\"\xc0\xaf\"}",
		       TQ_ERR_INVALID_JSON, "UTF-8");
	/* a lone surrogate escape */
	expect_refused("{\"type\":\"echo\",\"payload\":\"\\ud800\"}",
		       TQ_ERR_INVALID_JSON, NULL);
}

static void test_embedded_nul_and_length(void **state)
{
	static const char with_nul[] = "{\"type\":\"echo\"}\0garbage";
	static const char prefix[] = "{\"type\":\"echo\"}{\"type\":";
	struct tq_job_spec spec;
	struct tq_api_error err;

	/* A NUL byte inside the body is not JSON. */
	assert_int_equal(tq_request_parse_job(with_nul, sizeof(with_nul) - 1,
					      &spec, &err),
			 -EINVAL);
	assert_string_equal(err.code, TQ_ERR_INVALID_JSON);
	/* Only len bytes are read. */
	assert_int_equal(tq_request_parse_job(prefix, 15, &spec, &err), 0);
	assert_string_equal(spec.type, "echo");
	tq_job_spec_free(&spec);
}

static void test_not_an_object(void **state)
{
	static const char *const bodies[] = {"[]", "[{\"type\":\"echo\"}]",
					     "\"echo\"", "42", "null", "true"};
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct tq_job_spec spec;
		struct tq_api_error err;

		assert_int_equal(parse(bodies[i], &spec, &err), -EINVAL);
		assert_int_equal(err.status, 400);
		assert_string_equal(err.code, TQ_ERR_INVALID_REQUEST);
		assert_string_equal(err.message, "body must be a JSON object");
	}
}

static void test_unknown_and_duplicate_fields(void **state)
{
	char body[400];
	char longname[300];

	expect_refused("{\"type\":\"echo\",\"prio\":1}", TQ_ERR_INVALID_REQUEST,
		       "unknown field \"prio\"");
	expect_refused("{\"Type\":\"echo\"}", TQ_ERR_INVALID_REQUEST,
		       "unknown field \"Type\"");
	expect_refused("{\"type\":\"echo\",\"\":1}", TQ_ERR_INVALID_REQUEST,
		       "unknown field \"\"");
	expect_refused("{\"type\":\"echo\",\"type\":\"other\"}",
		       TQ_ERR_INVALID_REQUEST, "duplicate field \"type\"");
	expect_refused("{\"type\":\"echo\",\"priority\":1,\"priority\":2}",
		       TQ_ERR_INVALID_REQUEST, "duplicate field \"priority\"");

	/* A long unknown name is quoted cut short, not overflowing. */
	memset(longname, 'z', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_true(snprintf(body, sizeof(body), "{\"type\":\"echo\",\"%s\":1}",
			     longname) < (int)sizeof(body));
	expect_refused(body, TQ_ERR_INVALID_REQUEST, "unknown field \"zzz");
	expect_refused(body, TQ_ERR_INVALID_REQUEST, "...\"");
}

static void test_type(void **state)
{
	static const char msg[] =
		"\"type\" must be a string of 1 to 64 characters a-z, 0-9, \"_\", \".\" or \"-\"";
	char name[66];
	char body[128];
	struct tq_job_spec spec;

	expect_refused("{}", TQ_ERR_INVALID_REQUEST, "\"type\" is required");
	expect_refused("{\"payload\":{}}", TQ_ERR_INVALID_REQUEST,
		       "\"type\" is required");
	expect_refused("{\"type\":42}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":null}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":\"\"}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":\"Echo\"}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":\"a b\"}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":\"a/b\"}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":\"\\u00e9\"}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":[\"echo\"]}", TQ_ERR_INVALID_REQUEST, msg);
	expect_refused("{\"type\":true}", TQ_ERR_INVALID_REQUEST, msg);

	/* 64 characters are fine, 65 are not */
	memset(name, 'a', 64);
	name[64] = '\0';
	snprintf(body, sizeof(body), "{\"type\":\"%s\"}", name);
	expect_accepted(body, &spec);
	assert_int_equal(strlen(spec.type), 64);
	tq_job_spec_free(&spec);
	name[64] = 'a';
	name[65] = '\0';
	snprintf(body, sizeof(body), "{\"type\":\"%s\"}", name);
	expect_refused(body, TQ_ERR_INVALID_REQUEST, msg);
}

static void test_huge_type(void **state)
{
	const size_t n = 1 << 20;
	char *body = malloc(n + 32);
	struct tq_job_spec spec;
	struct tq_api_error err;
	int len;

	assert_non_null(body);
	len = snprintf(body, 32, "{\"type\":\"");
	memset(body + len, 'x', n);
	len += (int)n;
	memcpy(body + len, "\"}", 3);
	len += 2;
	memset(&err, 0, sizeof(err));
	assert_int_equal(tq_request_parse_job(body, (size_t)len, &spec, &err),
			 -EINVAL);
	assert_string_equal(err.code, TQ_ERR_INVALID_REQUEST);
	assert_non_null(strstr(err.message, "\"type\""));
	assert_true(strlen(err.message) < 200);
	assert_null(spec.type);
	free(body);
}

static void test_payload(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{"{\"type\":\"echo\"}", "{}"},
		{"{\"type\":\"echo\",\"payload\":{}}", "{}"},
		{"{\"type\":\"echo\",\"payload\":null}", "null"},
		{"{\"type\":\"echo\",\"payload\":42}", "42"},
		{"{\"type\":\"echo\",\"payload\":-0.5}", "-0.5"},
		{"{\"type\":\"echo\",\"payload\":true}", "true"},
		{"{\"type\":\"echo\",\"payload\":false}", "false"},
		{"{\"type\":\"echo\",\"payload\":\"hi \\\"you\\\"\"}", "\"hi \\\"you\\\"\""},
		{"{\"type\":\"echo\",\"payload\":[1, \"a\", [], {}]}", "[1,\"a\",[],{}]"},
		{"{\"type\":\"echo\",\"payload\":{ \"a\" : { \"b\" : [ true ] } }}",
		 "{\"a\":{\"b\":[true]}}"},
		/* the client's text is kept: escapes, number spelling, digits */
		{"{\"type\":\"echo\",\"payload\":\"\\u00e9\xe2\x82\xac\"}",
		 "\"\\u00e9\xe2\x82\xac\""},
		{"{\"type\":\"echo\",\"payload\":{\"id\": 12345678901234567890}}",
		 "{\"id\":12345678901234567890}"},
		{"{\"type\":\"echo\",\"payload\":[1.0, 1E+2, -0, 0.1e-7]}",
		 "[1.0,1E+2,-0,0.1e-7]"},
		{"{\"type\":\"echo\",\"payload\":\" a { b \\\" ] , \"}",
		 "\" a { b \\\" ] , \""},
		{"{\"type\":\"echo\",\"payload\" :\n[ { } , [ ] ]\n,\"priority\":1}",
		 "[{},[]]"},
		{"{\"priority\":1,\"queue\":\"q\",\"payload\":7,\"type\":\"e\"}", "7"},
		/* an escaped backslash followed by the text u0000 is fine */
		{"{\"type\":\"echo\",\"payload\":\"\\\\u0000\"}", "\"\\\\u0000\""},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tq_job_spec spec;

		expect_accepted(cases[i].in, &spec);
		if (strcmp(spec.payload, cases[i].out) != 0)
			fail_msg("payload of %s is %s, expected %s", cases[i].in,
				 spec.payload, cases[i].out);
		tq_job_spec_free(&spec);
	}

	/* PostgreSQL's jsonb cannot hold NUL; refuse it instead of cutting */
	expect_refused("{\"type\":\"echo\",\"payload\":\"a\\u0000b\"}",
		       TQ_ERR_INVALID_REQUEST, "\\u0000");
	expect_refused("{\"type\":\"echo\",\"payload\":{\"\\u0000\":1}}",
		       TQ_ERR_INVALID_REQUEST, "\\u0000");
}

static void test_queue(void **state)
{
	static const char msg[] =
		"\"queue\" must be a string of 1 to 64 characters A-Z, a-z, 0-9, \"_\", \".\" or \"-\"";
	char name[70];
	char value[128];
	struct tq_job_spec spec;

	expect_field_refused("queue", "42", msg);
	expect_field_refused("queue", "null", msg);
	expect_field_refused("queue", "\"\"", msg);
	expect_field_refused("queue", "\"a:b\"", msg);
	expect_field_refused("queue", "\"a b\"", msg);
	expect_field_refused("queue", "{}", msg);
	memset(name, 'Q', 65);
	name[65] = '\0';
	snprintf(value, sizeof(value), "\"%s\"", name);
	expect_field_refused("queue", value, msg);

	name[64] = '\0';
	snprintf(value, sizeof(value), "{\"type\":\"e\",\"queue\":\"%s\"}", name);
	expect_accepted(value, &spec);
	assert_string_equal(spec.queue, name);
	tq_job_spec_free(&spec);
}

static void test_priority(void **state)
{
	static const char msg[] = "\"priority\" must be an integer from 0 to 9";
	static const char *const bad[] = {"-1", "10", "1.5", "1e300", "-1e300",
					  "true", "false", "\"5\"", "null",
					  "[5]", "{}", "9.000001", "1e400"};
	struct tq_job_spec spec;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_field_refused("priority", bad[i], msg);

	expect_accepted("{\"type\":\"e\",\"priority\":0}", &spec);
	assert_int_equal(spec.priority, 0);
	tq_job_spec_free(&spec);
	expect_accepted("{\"type\":\"e\",\"priority\":5.0}", &spec);
	assert_int_equal(spec.priority, 5);
	tq_job_spec_free(&spec);
	expect_accepted("{\"type\":\"e\",\"priority\":9}", &spec);
	assert_int_equal(spec.priority, 9);
	tq_job_spec_free(&spec);
}

static void test_max_attempts(void **state)
{
	static const char msg[] =
		"\"max_attempts\" must be an integer from 1 to 100";
	static const char *const bad[] = {"0", "-3", "101", "2.5", "1e300",
					  "true", "\"3\"", "null"};
	struct tq_job_spec spec;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_field_refused("max_attempts", bad[i], msg);

	expect_accepted("{\"type\":\"e\",\"max_attempts\":1}", &spec);
	assert_int_equal(spec.max_attempts, 1);
	tq_job_spec_free(&spec);
	expect_accepted("{\"type\":\"e\",\"max_attempts\":100}", &spec);
	assert_int_equal(spec.max_attempts, 100);
	tq_job_spec_free(&spec);
}

static void test_timeout(void **state)
{
	static const char msg[] = "\"timeout_s\" must be an integer from 1 to 86400";
	static const char *const bad[] = {"0", "-1", "86401", "1.5", "1e300",
					  "false", "\"60\"", "null"};
	struct tq_job_spec spec;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_field_refused("timeout_s", bad[i], msg);

	expect_accepted("{\"type\":\"e\",\"timeout_s\":1}", &spec);
	assert_int_equal(spec.timeout_s, 1);
	tq_job_spec_free(&spec);
	expect_accepted("{\"type\":\"e\",\"timeout_s\":86400}", &spec);
	assert_int_equal(spec.timeout_s, 86400);
	tq_job_spec_free(&spec);
}

static void test_delay(void **state)
{
	static const char msg[] =
		"\"delay_s\" must be a number of seconds from 0 to 31622400";
	static const char *const bad[] = {"-1", "-0.001", "31622400.5",
					  "1e300", "true", "\"10\"", "null",
					  "[]", "1e400"};
	static const struct {
		const char *in;
		long long ms;
	} good[] = {
		{"0", 0}, {"0.25", 250}, {"1.5", 1500}, {"0.0004", 0},
		{"0.0006", 1}, {"10", 10000}, {"31622400", 31622400000LL},
	};
	char body[128];
	size_t i;

	assert_int_equal(TQ_DELAY_LIMIT_S, 31622400LL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_field_refused("delay_s", bad[i], msg);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct tq_job_spec spec;

		snprintf(body, sizeof(body), "{\"type\":\"e\",\"delay_s\":%s}",
			 good[i].in);
		expect_accepted(body, &spec);
		assert_true(spec.has_delay);
		assert_false(spec.has_run_at);
		if (spec.delay_ms != good[i].ms)
			fail_msg("delay_s %s -> %lld ms, expected %lld",
				 good[i].in, (long long)spec.delay_ms, good[i].ms);
		tq_job_spec_free(&spec);
	}
}

static void test_delay_and_run_at(void **state)
{
	expect_refused("{\"type\":\"e\",\"delay_s\":1,\"run_at\":\"2026-01-31T12:00:00Z\"}",
		       TQ_ERR_INVALID_REQUEST, "\"delay_s\" or \"run_at\", not both");
	expect_refused("{\"run_at\":\"2026-01-31T12:00:00Z\",\"delay_s\":0,\"type\":\"e\"}",
		       TQ_ERR_INVALID_REQUEST, "not both");
}

static void test_run_at_field(void **state)
{
	static const char *const bad[] = {
		"\"tomorrow\"", "\"\"", "1769860800", "null", "true",
		"\"2026-01-31T12:00:00\"", "\"2026-01-31\"",
		"\"2026-01-31T12:00:00+0100\"", "\"2026-13-01T00:00:00Z\"",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[128];

		snprintf(body, sizeof(body), "{\"type\":\"e\",\"run_at\":%s}",
			 bad[i]);
		expect_refused(body, TQ_ERR_INVALID_REQUEST,
			       "\"run_at\" must be an RFC 3339 timestamp");
	}
}

static void test_rfc3339(void **state)
{
	static const struct {
		const char *in;
		long long ms;
	} good[] = {
		{"1970-01-01T00:00:00Z", 0},
		{"1970-01-01T00:00:00.001Z", 1},
		{"1969-12-31T23:59:59.999Z", -1},
		{"2026-01-31T12:00:00Z", 1769860800000LL},
		{"2026-01-31t12:00:00z", 1769860800000LL},
		{"2026-01-31 12:00:00Z", 1769860800000LL},
		{"2026-01-31T12:00:00+00:00", 1769860800000LL},
		{"2026-01-31T12:00:00-00:00", 1769860800000LL},
		{"2026-01-31T12:00:00.5+01:00", 1769857200500LL},
		{"2026-01-31T12:00:00.123-05:30", 1769880600123LL},
		{"2026-01-31T12:00:00.123999999-05:30", 1769880600123LL},
		{"2026-01-31T12:00:00.1Z", 1769860800100LL},
		{"2024-02-29T23:59:59Z", 1709251199000LL},
		{"2000-03-01T00:00:00Z", 951868800000LL},
		{"9999-12-31T23:59:59Z", 253402300799000LL},
		/* a leap second counts as the next one */
		{"2016-12-31T23:59:60Z", 1483228800000LL},
	};
	static const char *const bad[] = {
		"", "garbage", "2026-01-31", "2026-01-31T12:00:00",
		"2026-01-31T12:00Z", "2026-1-31T12:00:00Z", "26-01-31T12:00:00Z",
		"2026-01-31T12:00:00.Z", "2026-01-31T12:00:00,5Z",
		"2026-01-31T12:00:00+0100", "2026-01-31T12:00:00+01",
		"2026-01-31T12:00:00+24:00", "2026-01-31T12:00:00+01:60",
		"2026-00-10T00:00:00Z", "2026-13-10T00:00:00Z",
		"2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z",
		"2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"2026-04-31T00:00:00Z", "2026-01-31T24:00:00Z",
		"2026-01-31T12:60:00Z", "2026-01-31T12:00:61Z",
		"2026-01-31T12:00:00Zjunk", "2026-01-31T12:00:00Z ",
		" 2026-01-31T12:00:00Z", "2026-01-31X12:00:00Z",
		"+2026-01-31T12:00:00Z", "2026-01-31T12:00:00.12345678901234567890123456789012345678901234567890Z",
	};
	size_t i;
	int64_t ms;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = 42;
		if (tq_parse_rfc3339_ms(good[i].in, &ms) != 0)
			fail_msg("refused %s", good[i].in);
		if (ms != good[i].ms)
			fail_msg("%s -> %lld, expected %lld", good[i].in,
				 (long long)ms, good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (tq_parse_rfc3339_ms(bad[i], &ms) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_int_equal(tq_parse_rfc3339_ms(NULL, &ms), -EINVAL);
}

static void test_api_error_set(void **state)
{
	struct tq_api_error err;
	char big[600];

	tq_api_error_set(&err, 404, TQ_ERR_NOT_FOUND, "no job %d", 7);
	assert_int_equal(err.status, 404);
	assert_string_equal(err.code, TQ_ERR_NOT_FOUND);
	assert_string_equal(err.message, "no job 7");

	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	tq_api_error_set(&err, 400, TQ_ERR_INVALID_REQUEST, "%s", big);
	assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
	tq_api_error_set(NULL, 400, TQ_ERR_INVALID_REQUEST, "ignored");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_full_with_delay),
		cmocka_unit_test(test_full_with_run_at),
		cmocka_unit_test(test_invalid_json),
		cmocka_unit_test(test_embedded_nul_and_length),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_unknown_and_duplicate_fields),
		cmocka_unit_test(test_type),
		cmocka_unit_test(test_huge_type),
		cmocka_unit_test(test_payload),
		cmocka_unit_test(test_queue),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_max_attempts),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_delay_and_run_at),
		cmocka_unit_test(test_run_at_field),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_api_error_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
