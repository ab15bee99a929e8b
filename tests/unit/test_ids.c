/* Unit tests: job ids are UUIDs of version 7, ordered by time, unique;
 * the ids of one process in the order they were made. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "ids.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t id_ms(const uuid_t u)
{
	int64_t ms = 0;

	for (int i = 0; i < 6; i++)
		ms = (ms << 8) | u[i];
	return ms;
}

static void test_layout(void **state)
{
	int64_t before = now_ms(), after;
	char text[37];
	uuid_t u;

	(void)state;
	tq_id_new(text);
	after = now_ms();
	assert_int_equal(strlen(text), 36);
	assert_int_equal(uuid_parse(text, u), 0);
	assert_int_equal(u[6] >> 4, 7);      /* version */
	assert_int_equal(u[8] >> 6, 2);      /* variant 10 */
	assert_true(id_ms(u) >= before && id_ms(u) <= after);
	assert_true(text[14] == '7');
	for (int i = 0; i < 36; i++)          /* lower case, as the store writes */
		assert_true(text[i] == '-' || (text[i] >= '0' && text[i] <= '9') ||
			    (text[i] >= 'a' && text[i] <= 'f'));
}

static void test_time_order(void **state)
{
	uuid_t a, b;

	(void)state;
	tq_id_make(a, 1000);
	tq_id_make(b, 1001);
	assert_true(memcmp(a, b, sizeof(a)) < 0);
	tq_id_make(a, 0x0000ffffffffffffLL);
	assert_int_equal(id_ms(a), 0x0000ffffffffffffLL);
}

static int cmp_id(const void *x, const void *y)
{
	return memcmp(x, y, sizeof(uuid_t));
}

/* Many ids in one millisecond: the 74 random bits keep them apart, and
 * the random pool refills without repeating itself. */
static void test_unique(void **state)
{
	enum { N = 100000 };
	uuid_t *v = calloc(N, sizeof(*v));

	(void)state;
	assert_non_null(v);
	for (int i = 0; i < N; i++)
		tq_id_make(v[i], 42);
	qsort(v, N, sizeof(*v), cmp_id);
	for (int i = 1; i < N; i++)
		assert_true(memcmp(v[i - 1], v[i], sizeof(uuid_t)) != 0);
	free(v);
}

/* In one millisecond, one process makes ids that still sort in the
 * order they were made: the sub-millisecond stamp only grows. */
static void test_new_ids_increase(void **state)
{
	enum { N = 100000 };
	char prev[37], cur[37];

	(void)state;
	tq_id_new(prev);
	for (int i = 0; i < N; i++) {
		tq_id_new(cur);
		if (strcmp(prev, cur) >= 0)
			fail_msg("id %d (%s) does not sort after the one before (%s)", i, cur,
				 prev);
		assert_true(cur[14] == '7');
		memcpy(prev, cur, sizeof(prev));
	}
}

enum { PER_THREAD = 50000 };

static void *make_many(void *arg)
{
	char (*v)[37] = arg;

	for (int i = 0; i < PER_THREAD; i++)
		tq_id_new(v[i]);
	return NULL;
}

static int cmp_text(const void *x, const void *y)
{
	return strcmp(x, y);
}

/* Two threads at once: each one's ids increase, and no id is made twice. */
static void test_new_ids_across_threads(void **state)
{
	char (*v)[37] = calloc(2 * PER_THREAD, sizeof(*v));
	pthread_t t[2];

	(void)state;
	assert_non_null(v);
	for (int k = 0; k < 2; k++)
		assert_int_equal(pthread_create(&t[k], NULL, make_many, v + k * PER_THREAD), 0);
	for (int k = 0; k < 2; k++)
		assert_int_equal(pthread_join(t[k], NULL), 0);
	for (int k = 0; k < 2; k++)
		for (int i = 1; i < PER_THREAD; i++)
			assert_true(strcmp(v[k * PER_THREAD + i - 1], v[k * PER_THREAD + i]) < 0);
	qsort(v, 2 * PER_THREAD, sizeof(*v), cmp_text);
	for (int i = 1; i < 2 * PER_THREAD; i++)
		assert_true(strcmp(v[i - 1], v[i]) != 0);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_time_order),
		cmocka_unit_test(test_unique),
		cmocka_unit_test(test_new_ids_increase),
		cmocka_unit_test(test_new_ids_across_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
