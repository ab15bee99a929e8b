/*
 * test_probe.c - the benchmark's reading of a process tree from /proc:
 * the children a process forked from any of its threads, found through
 * the kernel's lists and through the scan of every process alike, and
 * their CPU time added to the parent's; the machine's CPU time and the
 * hypervisor's share of it.
 *
 * probe.c is included whole, so that both ways of finding children (the
 * second is the one for kernels without the lists) can be checked.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "probe.c"

#define FROM_MAIN 3
#define FROM_THREAD 2
#define BUSY_S 0.2 /* CPU time each child spends before it waits */

struct kids {
	pid_t pid[FROM_MAIN + FROM_THREAD];
	int n;
};

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A child: spin for BUSY_S of CPU; with a grandchild of its own (which is
 * not the test's child) when nested; then wait to be killed.  It tells
 * its parent through fd that the CPU time is spent. */
static void child(int fd, bool nested)
{
	volatile unsigned long spin = 0;
	double t0 = cpu_now();

	/* gone with the thread that forked it, should a failed test not
	 * reap it; and reap() kills the group: the grandchild too */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	setpgid(0, 0);
	if (nested && fork() == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	while (cpu_now() - t0 < BUSY_S)
		spin++;
	if (write(fd, "x", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static int ready_fd[2];

static void spawn(struct kids *k, bool nested)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		child(ready_fd[1], nested);
	k->pid[k->n++] = pid;
}

static int hold_fd[2];

/* Forks, then stays until released: the kernel lists a child under the
 * thread that forked it while that thread lives (then under another). */
static void *spawn_from_thread(void *arg)
{
	char c;

	for (int i = 0; i < FROM_THREAD; i++)
		spawn(arg, false);
	if (read(hold_fd[0], &c, 1) != 1)
		return arg;
	return NULL;
}

static void wait_ready(int n)
{
	char c;

	for (int i = 0; i < n; i++)
		assert_int_equal(read(ready_fd[0], &c, 1), 1);
}

static void reap(struct kids *k)
{
	for (int i = 0; i < k->n; i++) {
		kill(-k->pid[i], SIGKILL);
		kill(k->pid[i], SIGKILL);
		waitpid(k->pid[i], NULL, 0);
	}
	k->n = 0;
}

/*
 * Children forked by the main thread and by another thread (the kernel
 * lists each under the thread that forked it) are all found, by both
 * ways; a grandchild is not; a reaped child is gone.
 */
static void test_children_of_every_thread(void **state)
{
	struct kids k = {0};
	pthread_t t;
	void *ret;

	(void)state;
	assert_int_equal(pipe(ready_fd), 0);
	assert_int_equal(pipe(hold_fd), 0);
	spawn(&k, true); /* with a grandchild */
	for (int i = 1; i < FROM_MAIN; i++)
		spawn(&k, false);
	assert_int_equal(pthread_create(&t, NULL, spawn_from_thread, &k), 0);
	wait_ready(FROM_MAIN + FROM_THREAD);

	assert_true(children_listed());
	assert_int_equal(list_children(getpid(), NULL, NULL), FROM_MAIN + FROM_THREAD);
	assert_int_equal(scan_children(getpid(), NULL, NULL), FROM_MAIN + FROM_THREAD);
	assert_int_equal(tq_probe_children(getpid()), FROM_MAIN + FROM_THREAD);
	assert_int_equal(write(hold_fd[1], "x", 1), 1);
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_null(ret);

	reap(&k);
	assert_int_equal(list_children(getpid(), NULL, NULL), 0);
	assert_int_equal(scan_children(getpid(), NULL, NULL), 0);
	close(ready_fd[0]);
	close(ready_fd[1]);
	close(hold_fd[0]);
	close(hold_fd[1]);
}

/* The tree's CPU time holds the children's: each spent BUSY_S. */
static void test_cpu_tree_adds_children(void **state)
{
	struct kids k = {0};
	double self, tree;

	(void)state;
	assert_int_equal(pipe(ready_fd), 0);
	for (int i = 0; i < FROM_MAIN; i++)
		spawn(&k, false);
	wait_ready(FROM_MAIN);
	self = tq_probe_cpu(getpid());
	tree = tq_probe_cpu_tree(getpid());
	assert_true(self >= 0);
	/* clock ticks: allow one tick of each child's time to be unseen */
	if (tree - self < FROM_MAIN * (BUSY_S - 0.02))
		fail_msg("tree %.2f s, self %.2f s: the children's %.2f s not added", tree,
			 self, FROM_MAIN * BUSY_S);
	reap(&k);
	close(ready_fd[0]);
	close(ready_fd[1]);
}

/* The machine's CPU time advances with the clock on every CPU, idle or
 * not; the hypervisor's share of it is a part of it. */
static void test_machine_cpu(void **state)
{
	double t0, s0, t1, s1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	assert_int_equal(tq_probe_machine_cpu(&t0, &s0), 0);
	usleep(200000);
	assert_int_equal(tq_probe_machine_cpu(&t1, &s1), 0);
	assert_true(s0 >= 0 && s0 <= t0);
	assert_true(s1 >= s0 && s1 <= t1);
	/* 0.2 s on each CPU, less a tick's rounding on either reading */
	if (t1 - t0 < 0.15 * (double)(ncpu > 0 ? ncpu : 1))
		fail_msg("machine CPU time grew %.3f s in 0.2 s on %ld CPUs", t1 - t0, ncpu);
}

/* Nothing to find under a process that does not exist. */
static void test_no_such_process(void **state)
{
	(void)state;
	assert_true(list_children(INT32_MAX, NULL, NULL) < 0);
	assert_int_equal(tq_probe_cpu_tree(INT32_MAX), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_children_of_every_thread),
		cmocka_unit_test(test_cpu_tree_adds_children),
		cmocka_unit_test(test_machine_cpu),
		cmocka_unit_test(test_no_such_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
