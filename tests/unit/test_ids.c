/* Unit tests: job ids are UUIDs of version 7, ordered by time, unique. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_time_order),
		cmocka_unit_test(test_unique),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
