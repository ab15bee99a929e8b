/* Unit tests: binary arrays are laid out as PostgreSQL's array_send()
 * writes them (the integration tests send them to a real server). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pgarray.h"

static void assert_bytes(const struct tq_pgarray *a, const unsigned char *want, size_t n)
{
	assert_int_equal(a->buf.len, n);
	assert_memory_equal(a->buf.p, want, n);
}

static void test_int4_with_null(void **state)
{
	static const unsigned char want[] = {
		0, 0, 0, 1,             /* one dimension */
		0, 0, 0, 1,             /* has nulls */
		0, 0, 0, 23,            /* int4 */
		0, 0, 0, 3, 0, 0, 0, 1, /* three elements from 1 */
		0, 0, 0, 4, 0, 0, 0, 7,
		0xff, 0xff, 0xff, 0xff, /* NULL */
		0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe,
	};
	struct tq_pgarray a;

	(void)state;
	tq_pgarray_init(&a, TQ_OID_INT4);
	tq_pgarray_int4(&a, 7);
	tq_pgarray_null(&a);
	tq_pgarray_int4(&a, -2);
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_bytes(&a, want, sizeof(want));
	tq_pgarray_free(&a);
}

static void test_scalars(void **state)
{
	static const unsigned char want[] = {
		0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 1,
		0, 0, 0, 8, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	};
	static const unsigned char want2[] = {0, 0, 0, 2, 0xff, 0xfe};
	static const unsigned char want_bool[] = {0, 0, 0, 1, 1};
	struct tq_pgarray a;

	(void)state;
	tq_pgarray_init(&a, TQ_OID_INT8);
	tq_pgarray_int8(&a, 0x0123456789abcdefLL);
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_bytes(&a, want, sizeof(want));
	tq_pgarray_free(&a);

	tq_pgarray_init(&a, TQ_OID_INT2);
	tq_pgarray_int2(&a, -2);
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_int_equal(a.buf.len, 20 + sizeof(want2));
	assert_memory_equal(a.buf.p + 20, want2, sizeof(want2));
	tq_pgarray_free(&a);

	tq_pgarray_init(&a, TQ_OID_BOOL);
	tq_pgarray_bool(&a, true);
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_memory_equal(a.buf.p + 20, want_bool, sizeof(want_bool));
	tq_pgarray_free(&a);
}

static void test_text_and_jsonb(void **state)
{
	struct tq_pgarray a;

	(void)state;
	tq_pgarray_init(&a, TQ_OID_JSONB);
	tq_pgarray_jsonb(&a, "{\"a\":1}");
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_int_equal(a.buf.len, 20 + 4 + 1 + 7);
	assert_memory_equal(a.buf.p + 20, "\0\0\0\x08\x01{\"a\":1}", 12);
	tq_pgarray_free(&a);

	tq_pgarray_init(&a, TQ_OID_TEXT);
	tq_pgarray_text(&a, "noop");
	tq_pgarray_text(&a, "");
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_memory_equal(a.buf.p + 12, "\0\0\0\x02", 4);
	assert_memory_equal(a.buf.p + 20, "\0\0\0\x04noop\0\0\0\0", 12);
	tq_pgarray_free(&a);
}

static void test_uuid(void **state)
{
	static const unsigned char want[] = {
		0, 0, 0, 16, 0x01, 0x8f, 0x2a, 0x3b, 0xc4, 0xd5, 0x7e, 0x6f,
		0x80, 0x91, 0xa2, 0xb3, 0xc4, 0xd5, 0xe6, 0xf7,
	};
	static const char *const bad[] = {
		"018f2a3b-c4d5-7e6f-8091-a2b3c4d5e6f",   /* short */
		"018f2a3b-c4d5-7e6f-8091-a2b3c4d5e6f70", /* long */
		"018f2a3bc-4d5-7e6f-8091-a2b3c4d5e6f7",  /* dash misplaced */
		"018f2a3b-c4d5-7e6f-8091-a2b3c4d5e6fg",  /* not hex */
		"",
	};
	struct tq_pgarray a;

	(void)state;
	tq_pgarray_init(&a, TQ_OID_UUID);
	assert_int_equal(tq_pgarray_uuid(&a, "018f2a3b-c4d5-7E6F-8091-a2b3c4d5e6f7"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tq_pgarray_uuid(&a, bad[i]), -EINVAL);
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.buf.len, 20 + sizeof(want));
	assert_memory_equal(a.buf.p + 20, want, sizeof(want));
	tq_pgarray_free(&a);
}

static void test_empty(void **state)
{
	static const unsigned char want[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25};
	struct tq_pgarray a;

	(void)state;
	tq_pgarray_init(&a, TQ_OID_TEXT);
	assert_int_equal(tq_pgarray_finish(&a), 0);
	assert_bytes(&a, want, sizeof(want));
	tq_pgarray_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int4_with_null),
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_text_and_jsonb),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
