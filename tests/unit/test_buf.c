/* Unit tests: the growing buffer keeps every byte, ends in a NUL, and
 * drops nothing silently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"

static void test_grows_and_terminates(void **state)
{
	struct tq_buf b = {0};
	char big[1000];

	(void)state;
	memset(big, 'x', sizeof(big));
	tq_buf_puts(&b, "ab");
	assert_int_equal(b.len, 2);
	assert_string_equal(b.p, "ab");
	tq_buf_put(&b, big, sizeof(big)); /* past the first allocation */
	tq_buf_put(&b, "\0z", 2);         /* binary bytes, a NUL among them */
	assert_false(b.failed);
	assert_int_equal(b.len, 2 + sizeof(big) + 2);
	assert_true(b.cap > b.len);
	assert_memory_equal(b.p + 2, big, sizeof(big));
	assert_memory_equal(b.p + 2 + sizeof(big), "\0z\0", 3);
	tq_buf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
}

static void test_failed_drops_the_rest(void **state)
{
	struct tq_buf b = {0};

	(void)state;
	tq_buf_puts(&b, "kept");
	b.failed = true; /* as after a failed realloc */
	tq_buf_puts(&b, "dropped");
	assert_int_equal(b.len, 4);
	assert_string_equal(b.p, "kept");
	tq_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_and_terminates),
		cmocka_unit_test(test_failed_drops_the_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
