/* Integration tests: the Redis queue and the dispatcher, on a real Redis. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "dispatch.h"
#include "keys.h"
#include "queue.h"

static const char *redis_url;
static char prefix[64];
static const char *const queues[] = {"default", NULL};

static void make_id(char id[37], int n)
{
	snprintf(id, 37, "00000000-0000-4000-8000-%012d", n);
}

static int group_setup(void **state)
{
	(void)state;
	redis_url = getenv("TASKQ_TEST_REDIS_URL");
	if (!redis_url) {
		fprintf(stderr, "TASKQ_TEST_REDIS_URL is not set: run the suite with `make test`\n");
		return -1;
	}
	snprintf(prefix, sizeof(prefix), "tqtest%d", (int)getpid());
	return 0;
}

static struct tq_queue *open_queue(void)
{
	struct tq_queue *q;
	char err[256];

	assert_int_equal(tq_queue_open(&q, redis_url, prefix, err, sizeof(err)), 0);
	assert_int_equal(tq_queue_ping(q), 0);
	return q;
}

static void test_parse_url(void **state)
{
	char host[64], pw[64];
	int port, db;

	(void)state;
	assert_int_equal(tq_queue_parse_url("redis://h", host, sizeof(host), &port, &db, pw, sizeof(pw)), 0);
	assert_string_equal(host, "h");
	assert_int_equal(port, 6379);
	assert_int_equal(db, 0);
	assert_int_equal(tq_queue_parse_url("redis://:s3cret@10.0.0.1:7000/3", host, sizeof(host), &port, &db, pw, sizeof(pw)), 0);
	assert_string_equal(host, "10.0.0.1");
	assert_string_equal(pw, "s3cret");
	assert_int_equal(port, 7000);
	assert_int_equal(db, 3);
	assert_int_equal(tq_queue_parse_url("http://h", host, sizeof(host), &port, &db, pw, sizeof(pw)), -EINVAL);
	assert_int_equal(tq_queue_parse_url("redis://h:0", host, sizeof(host), &port, &db, pw, sizeof(pw)), -EINVAL);
	assert_int_equal(tq_queue_parse_url("redis://h:1/x", host, sizeof(host), &port, &db, pw, sizeof(pw)), -EINVAL);
	assert_int_equal(tq_queue_parse_url("redis://", host, sizeof(host), &port, &db, pw, sizeof(pw)), -EINVAL);
}

static void test_key_layout(void **state)
{
	char key[64];

	(void)state;
	assert_int_equal(tq_key_ready(key, sizeof(key), "taskq", "mail", 7), 0);
	assert_string_equal(key, "taskq:v1:ready:mail:7");
	assert_int_equal(tq_key_ready(key, 10, "taskq", "mail", 7), -ENAMETOOLONG);
}

static void test_priority_then_fifo(void **state)
{
	struct tq_queue *q = open_queue();
	struct tq_ready items[6];
	char ids[6][37], got[37];
	static const int prio[6] = {0, 5, 0, 9, 5, 0};
	/* expected order: 9, then the two 5s in submission order, then the 0s */
	static const int order[6] = {3, 1, 4, 0, 2, 5};

	(void)state;
	for (int i = 0; i < 6; i++) {
		make_id(ids[i], i);
		items[i] = (struct tq_ready){.queue = "default", .priority = prio[i], .id = ids[i]};
	}
	assert_int_equal(tq_queue_push(q, items, 6), 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(tq_queue_pop(q, queues, 1, got), 0);
		assert_string_equal(got, ids[order[i]]);
	}
	assert_int_equal(tq_queue_pop(q, queues, 1, got), -ETIMEDOUT);
	tq_queue_close(q);
}

static void test_other_queue_not_taken(void **state)
{
	struct tq_queue *q = open_queue();
	static const char *const mail[] = {"mail", NULL};
	struct tq_ready item;
	char id[37], got[37];

	(void)state;
	make_id(id, 77);
	item = (struct tq_ready){.queue = "mail", .priority = 1, .id = id};
	assert_int_equal(tq_queue_push(q, &item, 1), 0);
	assert_int_equal(tq_queue_pop(q, queues, 1, got), -ETIMEDOUT);
	assert_int_equal(tq_queue_pop(q, mail, 1, got), 0);
	assert_string_equal(got, id);
	tq_queue_close(q);
}

/* Push six ids of three priorities; take the first without waiting and
 * put them back (tq_queue_unpop()); then take them all with
 * tq_queue_pop_many(): highest priority first, FIFO within one, however
 * many calls that takes; then nothing is left. */
static void check_pop_many(struct tq_queue *q)
{
	struct tq_ready items[6];
	char ids[6][37], got[8][37];
	unsigned short from[8];
	static const int prio[6] = {0, 5, 0, 9, 5, 0};
	static const int order[6] = {3, 1, 4, 0, 2, 5};
	size_t taken = 0, n;

	for (int i = 0; i < 6; i++) {
		make_id(ids[i], 100 + i);
		items[i] = (struct tq_ready){.queue = "default", .priority = prio[i], .id = ids[i]};
	}
	assert_int_equal(tq_queue_push(q, items, 6), 0);
	/* one list (LMPOP) or three of them (the script): either way they
	 * go back to the heads they came from, in their order */
	assert_int_equal(tq_queue_take(q, queues, 3, got, from, &n), 0);
	assert_true(n >= 1 && n <= 3);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(got[i], ids[order[i]]);
	assert_int_equal(tq_queue_unpop(q, got, from, n), 0);
	while (taken < 6) {
		assert_int_equal(tq_queue_pop_many(q, queues, 8 - taken, 1, got + taken, NULL, &n), 0);
		assert_true(n >= 1);
		taken += n;
	}
	assert_int_equal(taken, 6);
	for (int i = 0; i < 6; i++)
		assert_string_equal(got[i], ids[order[i]]);
	assert_int_equal(tq_queue_pop_many(q, queues, 8, 1, got, NULL, &n), -ETIMEDOUT);
	assert_int_equal(tq_queue_take(q, queues, 8, got, from, &n), 0);
	assert_int_equal(n, 0);
}

static void test_pop_many_priority_order(void **state)
{
	struct tq_queue *q = open_queue();

	(void)state;
	check_pop_many(q);
	tq_queue_close(q);
}

/*
 * A Redis without BLMPOP and LMPOP (before 7.0; here a private server
 * that renames them away): taking many ids falls back to a script and
 * keeps the order.
 */
static void test_pop_many_without_blmpop(void **state)
{
	char url[64], port[16], err[256];
	struct tq_queue *q = NULL;
	int p = 16379 + 211, r = -1;
	pid_t pid;

	(void)state;
	snprintf(port, sizeof(port), "%d", p);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", p);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--rename-command", "BLMPOP", "",
		       "--rename-command", "LMPOP", "", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && r != 0; i++) {
		usleep(50 * 1000);
		if (!q && tq_queue_open(&q, url, prefix, err, sizeof(err)) != 0)
			q = NULL;
		r = q ? tq_queue_ping(q) : -1;
	}
	if (r != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("a private redis-server on port %d did not answer", p);
	}
	check_pop_many(q);
	tq_queue_close(q);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

struct popper {
	struct tq_queue *q;
	int result;
};

static void *pop_forever(void *arg)
{
	struct popper *p = arg;
	char id[37];

	p->result = tq_queue_pop(p->q, queues, 0, id);
	return NULL;
}

static void test_interrupt_wakes_blocked_pop(void **state)
{
	struct popper p = {.q = open_queue(), .result = 1};
	pthread_t t;
	struct timespec start, end;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, pop_forever, &p), 0);
	usleep(200 * 1000);
	clock_gettime(CLOCK_MONOTONIC, &start);
	tq_queue_interrupt(p.q);
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &end);
	assert_int_equal(p.result, -EINTR);
	assert_true(end.tv_sec - start.tv_sec < 2);
	tq_queue_close(p.q);
}

static void test_dispatch_delivers_in_order(void **state)
{
	struct tq_dispatch *d;
	struct tq_queue *q = open_queue();
	char err[256], id[37], got[37];

	(void)state;
	assert_int_equal(tq_dispatch_start(&d, redis_url, prefix, 1000, err, sizeof(err)), 0);
	for (int i = 0; i < 300; i++) {
		make_id(id, 1000 + i);
		tq_dispatch_push(d, "default", 2, id);
	}
	assert_int_equal(tq_dispatch_flush(d, 5000), 0);
	for (int i = 0; i < 300; i++) {
		make_id(id, 1000 + i);
		assert_int_equal(tq_queue_pop(q, queues, 1, got), 0);
		assert_string_equal(got, id);
	}
	tq_dispatch_stop(d);
	tq_queue_close(q);
}

/*
 * A long stream that never lets the buffer drain: the dispatcher moves
 * what is left back to the front of its buffer as it goes (the buffer's
 * pages follow the backlog), and nothing is lost or reordered.
 */
static void test_dispatch_long_stream_in_order(void **state)
{
	enum { N = 30000 };
	struct tq_dispatch *d;
	struct tq_queue *q = open_queue();
	char err[256], id[37], got[37];

	(void)state;
	assert_int_equal(tq_dispatch_start(&d, redis_url, prefix, N, err, sizeof(err)), 0);
	for (int i = 0; i < N; i++) {
		make_id(id, 100000 + i);
		tq_dispatch_push(d, "default", 5, id);
	}
	assert_int_equal(tq_dispatch_flush(d, 20000), 0);
	for (int i = 0; i < N; i++) {
		make_id(id, 100000 + i);
		assert_int_equal(tq_queue_pop(q, queues, 1, got), 0);
		if (strcmp(got, id) != 0)
			fail_msg("id %d of %d: got %s, want %s", i, N, got, id);
	}
	tq_dispatch_stop(d);
	tq_queue_close(q);
}

static int servers(const char *what)
{
	const char *script = getenv("TASKQ_TEST_SERVERS");
	char cmd[1024];

	if (!script)
		fail_msg("TASKQ_TEST_SERVERS is not set: run the suite with `make test`");
	snprintf(cmd, sizeof(cmd), "'%s' %s", script, what);
	return system(cmd);
}

/* Redis goes away and comes back empty: the queue reports -EAGAIN (no
 * crash), the dispatcher keeps what it could not send, and both recover by
 * themselves. */
static void test_survives_redis_restart(void **state)
{
	struct tq_queue *q = open_queue();
	struct tq_dispatch *d;
	struct tq_ready item;
	char err[256], id[37], got[37];
	int r = 0;

	(void)state;
	assert_int_equal(tq_dispatch_start(&d, redis_url, prefix, 1000, err, sizeof(err)), 0);
	assert_int_equal(servers("redis-stop"), 0);
	make_id(id, 5000);
	item = (struct tq_ready){.queue = "default", .priority = 0, .id = id};
	r = tq_queue_push(q, &item, 1);
	assert_int_equal(r, -EAGAIN);
	assert_int_equal(tq_queue_pop(q, queues, 1, got), -EAGAIN);
	tq_dispatch_push(d, "default", 0, id);
	assert_int_equal(tq_dispatch_flush(d, 300), -ETIMEDOUT);
	assert_int_equal(servers("redis-start"), 0);
	assert_int_equal(tq_dispatch_flush(d, 10000), 0);
	for (int i = 0; i < 100; i++) {
		r = tq_queue_pop(q, queues, 1, got);
		if (r != -EAGAIN)
			break;
		usleep(100 * 1000);
	}
	assert_int_equal(r, 0);
	assert_string_equal(got, id);
	tq_dispatch_stop(d);
	tq_queue_close(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_url),
		cmocka_unit_test(test_key_layout),
		cmocka_unit_test(test_priority_then_fifo),
		cmocka_unit_test(test_other_queue_not_taken),
		cmocka_unit_test(test_pop_many_priority_order),
		cmocka_unit_test(test_pop_many_without_blmpop),
		cmocka_unit_test(test_interrupt_wakes_blocked_pop),
		cmocka_unit_test(test_dispatch_delivers_in_order),
		cmocka_unit_test(test_dispatch_long_stream_in_order),
		cmocka_unit_test(test_survives_redis_restart),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
