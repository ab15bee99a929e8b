/* Unit tests: the daemon's one definition of valid UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "utf8.h"

static void test_valid_and_invalid(void **state)
{
	(void)state;
	assert_true(tq_utf8_valid("", 0));
	assert_true(tq_utf8_valid("plain ascii", 11));
	assert_true(tq_utf8_valid("\xc3\xa9t\xc3\xa9", 6));               /* été */
	assert_true(tq_utf8_valid("\xe2\x82\xac", 3));                    /* € */
	assert_true(tq_utf8_valid("\xf0\x9f\x98\x80", 4));                /* U+1F600 */
	assert_true(tq_utf8_valid("\xf4\x8f\xbf\xbf", 4));                /* U+10FFFF */
	assert_false(tq_utf8_valid("\xc3", 1));                           /* cut short */
	assert_false(tq_utf8_valid("\xc0\xaf", 2));                       /* overlong / */
	assert_false(tq_utf8_valid("\xe0\x80\xaf", 3));                   /* overlong */
	assert_false(tq_utf8_valid("\xed\xa0\x80", 3));                   /* surrogate */
	assert_false(tq_utf8_valid("\xf4\x90\x80\x80", 4));               /* > U+10FFFF */
	assert_false(tq_utf8_valid("\xff", 1));
	assert_false(tq_utf8_valid("a\x80", 2));                          /* lone continuation */
}

static void test_clean_copy_replaces_and_cuts_on_boundaries(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(tq_utf8_clean_copy("a\xffz", out, sizeof(out)), 3);
	assert_string_equal(out, "a?z");
	/* "abcde" + "€" needs 9 bytes with the NUL: the euro is not split */
	assert_int_equal(tq_utf8_clean_copy("abcde\xe2\x82\xac", out, sizeof(out)), 5);
	assert_string_equal(out, "abcde");
	assert_int_equal(tq_utf8_clean_copy(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

static void test_sanitize_and_trim(void **state)
{
	char a[] = "ok\xc3(\xed\xa0\x80!";
	char b[] = "cut \xe2\x82";
	char c[] = "whole \xe2\x82\xac";
	char d[] = "\xc3";

	(void)state;
	tq_utf8_sanitize(a);
	assert_string_equal(a, "ok?(" "???" "!");
	tq_utf8_trim_partial(b);
	assert_string_equal(b, "cut ");
	tq_utf8_trim_partial(c);
	assert_string_equal(c, "whole \xe2\x82\xac");
	tq_utf8_trim_partial(d);
	assert_string_equal(d, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_and_invalid),
		cmocka_unit_test(test_clean_copy_replaces_and_cuts_on_boundaries),
		cmocka_unit_test(test_sanitize_and_trim),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
