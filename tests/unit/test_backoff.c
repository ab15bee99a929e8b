/* Unit tests: retry backoff bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_ceiling_doubles_then_caps(void **state)
{
	(void)state;
	assert_int_equal(tq_backoff_ceiling_ms(1, 100, 1000), 100);
	assert_int_equal(tq_backoff_ceiling_ms(2, 100, 1000), 200);
	assert_int_equal(tq_backoff_ceiling_ms(3, 100, 1000), 400);
	assert_int_equal(tq_backoff_ceiling_ms(4, 100, 1000), 800);
	assert_int_equal(tq_backoff_ceiling_ms(5, 100, 1000), 1000);
	assert_int_equal(tq_backoff_ceiling_ms(100, 100, 1000), 1000);
	/* no overflow for huge attempt numbers */
	assert_int_equal(tq_backoff_ceiling_ms(1000000, 1000, 86400000), 86400000);
	assert_int_equal(tq_backoff_ceiling_ms(3, 0, 1000), 0);
	assert_int_equal(tq_backoff_ceiling_ms(3, 100, 0), 0);
}

static void test_delay_within_bounds_and_jittered(void **state)
{
	uint64_t rng = 42;
	int64_t lo = INT64_MAX, hi = -1;

	(void)state;
	for (int attempt = 1; attempt <= 12; attempt++) {
		int64_t ceiling = tq_backoff_ceiling_ms(attempt, 250, 30000);

		for (int i = 0; i < 2000; i++) {
			int64_t d = tq_backoff_ms(attempt, 250, 30000, &rng);

			assert_true(d >= 0);
			assert_true(d <= ceiling);
			if (attempt == 3) {
				lo = d < lo ? d : lo;
				hi = d > hi ? d : hi;
			}
		}
	}
	/* full jitter: the draws spread over the whole range */
	assert_true(lo < 100);
	assert_true(hi > 900);
}

static void test_zero_base_means_no_delay(void **state)
{
	uint64_t rng = 7;

	(void)state;
	for (int i = 0; i < 100; i++)
		assert_int_equal(tq_backoff_ms(i + 1, 0, 0, &rng), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ceiling_doubles_then_caps),
		cmocka_unit_test(test_delay_within_bounds_and_jittered),
		cmocka_unit_test(test_zero_base_means_no_delay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
