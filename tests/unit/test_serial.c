/*
 * Unit test: TASKQ_TYPE_SERIAL.  Attempts of a serial type never overlap
 * in one worker pool; those of other types do.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "job.h"
#include "plugin_host.h"

#define THREADS 6

static struct tq_plugin *pl;

struct run {
	struct tq_type type;
	char result[64];
};

static void *one(void *arg)
{
	struct run *r = arg;
	struct taskq_job job;

	tq_job_init(&job, "00000000-0000-4000-8000-000000000001", r->type.name, "{}", 1,
		    tq_now_ms() + 10000);
	if (tq_type_run(&r->type, &job) == TASKQ_DONE && job.result)
		snprintf(r->result, sizeof(r->result), "%s", job.result);
	tq_job_clear(&job);
	return NULL;
}

/* The most attempts of types[index] seen at once, over THREADS at once. */
static int most_at_once(size_t index)
{
	struct run runs[THREADS];
	pthread_t t[THREADS];
	int most = 0;

	for (int i = 0; i < THREADS; i++) {
		runs[i].type = (struct tq_type){.name = pl->desc->types[index].name,
						.def = &pl->desc->types[index],
						.plugin = pl};
		runs[i].result[0] = '\0';
		assert_int_equal(pthread_create(&t[i], NULL, one, &runs[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		int seen = 0;

		pthread_join(t[i], NULL);
		assert_int_equal(sscanf(runs[i].result, "{\"max\":%d}", &seen), 1);
		most = seen > most ? seen : most;
	}
	return most;
}

static void test_serial_never_overlaps(void **state)
{
	(void)state;
	assert_int_equal(most_at_once(0), 1);
}

static void test_others_run_together(void **state)
{
	(void)state;
	assert_true(most_at_once(1) > 1);
}

static int setup(void **state)
{
	const char *dir = getenv("TASKQ_TEST_PLUGIN_DIR");
	char path[1024], err[256];

	(void)state;
	if (!dir) {
		fprintf(stderr, "TASKQ_TEST_PLUGIN_DIR is not set: run the suite with ctest\n");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/serial.so", dir);
	if (tq_plugin_load_file(path, NULL, &pl, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tq_plugin_free(pl);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serial_never_overlaps),
		cmocka_unit_test(test_others_run_together),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
