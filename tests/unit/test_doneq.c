/* Unit tests: the completion queue is a FIFO whose failed writes go back
 * to its head, and whose memory follows its length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "doneq.h"

#define KEEP 256

static struct tq_done_item item(int i)
{
	struct tq_done_item d = {.attempt = i, .token = 1000 + i};

	snprintf(d.id, sizeof(d.id), "%036d", i);
	return d;
}

static void test_fifo_and_unshift(void **state)
{
	struct tq_doneq q;
	struct tq_done_item out[8];
	struct tq_done_item d;

	(void)state;
	tq_doneq_init(&q, KEEP);
	assert_int_equal(tq_doneq_take(&q, out, 8), 0);
	for (int i = 0; i < 5; i++) {
		d = item(i);
		assert_int_equal(tq_doneq_push(&q, &d), 0);
	}
	assert_int_equal(tq_doneq_take(&q, out, 3), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(out[i].attempt, i);
	/* the three taken failed to be written: back ahead of 3 and 4 */
	assert_int_equal(tq_doneq_unshift(&q, out, 3), 0);
	assert_int_equal(q.len, 5);
	assert_int_equal(tq_doneq_take(&q, out, 8), 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(out[i].attempt, i);
		assert_int_equal(out[i].token, 1000 + i);
		assert_string_equal(out[i].id, item(i).id);
	}
	assert_int_equal(q.len, 0);
	tq_doneq_free(&q);
	assert_null(q.v);
}

/* A lag of 20,000 grows the queue; once the writers catch up it is back to
 * a batch's room, and it shrinks as it drains (by half once three quarters
 * are taken), not only at the end. */
static void test_memory_follows_the_lag(void **state)
{
	enum { LAG = 20000 };
	struct tq_done_item out[KEEP];
	struct tq_doneq q;
	struct tq_done_item d;
	size_t taken = 0, peak, mid = 0;
	int next = 0;

	(void)state;
	tq_doneq_init(&q, KEEP);
	for (int i = 0; i < LAG; i++) {
		d = item(i);
		assert_int_equal(tq_doneq_push(&q, &d), 0);
	}
	peak = q.cap;
	assert_true(peak >= LAG);
	while (q.len > 0) {
		size_t n = tq_doneq_take(&q, out, KEEP);

		for (size_t i = 0; i < n; i++)
			assert_int_equal(out[i].attempt, next++); /* order kept */
		taken += n;
		if (taken >= LAG - LAG / 4 && !mid)
			mid = q.cap;
		assert_true(q.cap >= q.len);
	}
	assert_int_equal(taken, LAG);
	assert_true(mid <= peak / 2);
	assert_int_equal(q.cap, KEEP);
	/* it does not shrink below a batch's room, and grows again */
	for (int i = 0; i < 3 * KEEP; i++) {
		d = item(i);
		assert_int_equal(tq_doneq_push(&q, &d), 0);
	}
	assert_true(q.cap >= 3 * KEEP);
	assert_int_equal(tq_doneq_take(&q, out, KEEP), KEEP);
	assert_int_equal(q.len, 2 * KEEP);
	assert_true(q.cap >= q.len);
	tq_doneq_free(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_unshift),
		cmocka_unit_test(test_memory_follows_the_lag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
