/*
 * test_procpool.c - plugins isolated in worker processes, run through
 * tq_type_run(): crashes, exits, hangs, timeouts, cancellation in both
 * isolation modes, progress relayed from the process, recycling and the
 * memory limit, and hot reload of a plugin directory.
 *
 * Each case copies test plugins (TASKQ_TEST_PLUGIN_DIR) into a private
 * directory and loads it with a config whose "plugin" blocks set the
 * isolation.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "job.h"
#include "plugin_host.h"
#include "procpool.h"

#define JOB_ID "7d3c2a8e-0d7b-4f61-8d0e-6a9e1b2c3d4e"

static const char *const process_conf =
	"plugin = {\n"
	"  crash = { processes = 1; };\n"
	"  exit3 = { processes = 1; };\n"
	"  hang = { processes = 1; };\n"
	"  progress = { processes = 2; };\n"
	"  leak = { processes = 1; recycle_after = 2; max_memory_mb = 64; };\n"
	"  swap = { processes = 1; };\n"
	"};\n";

static const char *const thread_conf =
	"plugin = { progress = { isolation = \"thread\"; }; };\n";

struct fx {
	char dir[PATH_MAX];
	struct tq_config cfg;
	struct tq_plugins *p;
	struct tq_registry *r;
};

static const char *env_dir(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		fail_msg("%s is not set (run the test through ctest)", name);
	return v;
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t r;
	int in, out;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		fail_msg("cannot open %s: %s", from, strerror(errno));
	/* in place, like cp over an existing file */
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out < 0)
		fail_msg("cannot create %s: %s", to, strerror(errno));
	while ((r = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)r), r);
	assert_int_equal(r, 0);
	close(in);
	assert_int_equal(close(out), 0);
}

static void fx_path(const struct fx *fx, const char *name, char *out,
		    size_t len)
{
	int n = snprintf(out, len, "%s/%s", fx->dir, name);

	assert_true(n > 0 && (size_t)n < len);
}

/* Copy test plugin <name>.so into the case's directory as <as>. */
static void add_plugin(struct fx *fx, const char *name, const char *as)
{
	char from[PATH_MAX], to[PATH_MAX];
	int n;

	n = snprintf(from, sizeof(from), "%s/%s.so",
		     env_dir("TASKQ_TEST_PLUGIN_DIR"), name);
	assert_true(n > 0 && (size_t)n < sizeof(from));
	fx_path(fx, as, to, sizeof(to));
	copy_file(from, to);
}

static struct fx *fx_new(const char *conf)
{
	const char *tmp = getenv("TMPDIR");
	struct fx *fx = calloc(1, sizeof(*fx));
	int n;

	assert_non_null(fx);
	n = snprintf(fx->dir, sizeof(fx->dir), "%s/tq_procpool_XXXXXX",
		     tmp && *tmp ? tmp : "/tmp");
	assert_true(n > 0 && (size_t)n < sizeof(fx->dir));
	assert_non_null(mkdtemp(fx->dir));
	fx->cfg.plugin_dir = fx->dir;
	fx->cfg.workers = 4;
	config_init(&fx->cfg.lc);
	assert_int_equal(config_read_string(&fx->cfg.lc, conf), CONFIG_TRUE);
	fx->cfg.have_file = true;
	assert_int_equal(tq_plugins_open(&fx->p, &fx->cfg), 0);
	return fx;
}

static int fx_setup_process(void **state)
{
	struct fx *fx = fx_new(process_conf);

	add_plugin(fx, "crash", "crash.so");
	add_plugin(fx, "exit3", "exit3.so");
	add_plugin(fx, "hang", "hang.so");
	add_plugin(fx, "progress", "progress.so");
	add_plugin(fx, "leak", "leak.so");
	assert_int_equal(tq_plugins_load(fx->p), 6);
	fx->r = tq_plugins_acquire(fx->p);
	*state = fx;
	return 0;
}

static int fx_setup_thread(void **state)
{
	struct fx *fx = fx_new(thread_conf);

	add_plugin(fx, "progress", "progress.so");
	assert_int_equal(tq_plugins_load(fx->p), 1);
	fx->r = tq_plugins_acquire(fx->p);
	*state = fx;
	return 0;
}

static int fx_setup_empty(void **state)
{
	*state = fx_new(process_conf);
	return 0;
}

static void rm_dir(const char *path)
{
	char sub[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(path);

	if (d) {
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (snprintf(sub, sizeof(sub), "%s/%s", path,
				     de->d_name) < (int)sizeof(sub))
				unlink(sub);
		}
		closedir(d);
	}
	rmdir(path);
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	tq_registry_release(fx->r);
	tq_plugins_close(fx->p);
	config_destroy(&fx->cfg.lc);
	rm_dir(fx->dir);
	free(fx);
	return 0;
}

static const struct tq_type *type(struct fx *fx, const char *name)
{
	const struct tq_type *t = tq_registry_find(fx->r, name);

	if (!t)
		fail_msg("type \"%s\" not registered", name);
	return t;
}

/* One attempt; deadline_in_ms 0 = none. */
static enum taskq_outcome run(const struct tq_type *t, struct taskq_job *job,
			      const char *payload, int64_t deadline_in_ms)
{
	tq_job_init(job, JOB_ID, t->name, payload, 1,
		    deadline_in_ms ? tq_now_ms() + deadline_in_ms : 0);
	return tq_type_run(t, job);
}

/* The "pid" member of a result. */
static long result_pid(const char *result)
{
	cJSON *doc = cJSON_Parse(result);
	cJSON *pid = cJSON_GetObjectItemCaseSensitive(doc, "pid");
	long v;

	assert_non_null(doc);
	assert_true(cJSON_IsNumber(pid));
	v = (long)pid->valuedouble;
	cJSON_Delete(doc);
	return v;
}

static long long result_int(const char *result, const char *key)
{
	cJSON *doc = cJSON_Parse(result);
	cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
	long long n;

	assert_non_null(doc);
	assert_true(cJSON_IsNumber(v));
	n = (long long)v->valuedouble;
	cJSON_Delete(doc);
	return n;
}

static pid_t only_pid(const struct tq_type *t)
{
	pid_t pids[4];

	assert_non_null(t->plugin->pool);
	assert_int_equal(tq_procpool_pids(t->plugin->pool, pids, 4), 1);
	return pids[0];
}

static bool process_exists(pid_t pid)
{
	return kill(pid, 0) == 0;
}

/* ---- process isolation: failures cost the attempt only --------------- */

static void test_crash_segv(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.crash");
	struct taskq_job job;
	pid_t before, after;

	before = only_pid(t);
	assert_int_equal(run(t, &job, "{}", 0), TASKQ_RETRY);
	assert_string_equal(job.error, "handler crashed: SIGSEGV");
	assert_null(job.result);
	tq_job_clear(&job);

	/* replaced: a new process, and the plugin's next job runs in it */
	after = only_pid(t);
	assert_true(after != before);
	assert_false(process_exists(before));
	assert_int_equal(run(type(fx, "test.crash.ok"), &job, "{}", 0), TASKQ_DONE);
	assert_int_equal(result_pid(job.result), after);
	assert_true(result_pid(job.result) != (long)getpid());
	tq_job_clear(&job);

	assert_int_equal(run(t, &job, "{\"how\":\"abort\"}", 0), TASKQ_RETRY);
	assert_string_equal(job.error, "handler crashed: SIGABRT");
	tq_job_clear(&job);
	assert_int_equal(run(type(fx, "test.crash.ok"), &job, "{}", 0), TASKQ_DONE);
	tq_job_clear(&job);
}

static void test_exit3(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.exit3");
	struct taskq_job job;
	pid_t before;
	int i;

	for (i = 0; i < 3; i++) {
		before = only_pid(t);
		assert_int_equal(run(t, &job, "{}", 0), TASKQ_RETRY);
		assert_string_equal(job.error, "handler exited with status 3");
		tq_job_clear(&job);
		assert_true(only_pid(t) != before);
	}
}

static void test_timeout_term(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.hang");
	struct taskq_job job;
	int64_t start, took;
	pid_t before = only_pid(t);

	start = tq_now_ms();
	assert_int_equal(run(t, &job, "{}", 1000), TASKQ_RETRY);
	took = tq_now_ms() - start;
	assert_string_equal(job.error, "timeout after 1 s");
	/* SIGTERM at the deadline is enough for this one */
	assert_true(took >= 1000);
	assert_true(took < 1900);
	tq_job_clear(&job);
	assert_true(only_pid(t) != before);
	assert_false(process_exists(before));
}

static void test_timeout_kill(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.hang");
	struct taskq_job job;
	int64_t start, took;

	/* ignores SIGTERM too: SIGKILL after the grace */
	start = tq_now_ms();
	assert_int_equal(run(t, &job, "{\"ignore_term\":true}", 1000), TASKQ_RETRY);
	took = tq_now_ms() - start;
	assert_string_equal(job.error, "timeout after 1 s");
	assert_true(took >= 2900);
	assert_true(took < 6000);
	tq_job_clear(&job);

	/* and the pool still works */
	assert_int_equal(run(type(fx, "test.progress"), &job,
			     "{\"steps\":1,\"step_ms\":0}", 5000),
			 TASKQ_DONE);
	tq_job_clear(&job);
}

static void test_progress_relayed(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.progress");
	struct taskq_job job;
	char *msg = NULL;
	int percent = -1;

	assert_string_equal(t->plugin->name, "progress");
	assert_int_equal(t->plugin->isolation, TQ_ISOLATION_PROCESS);
	assert_int_equal(run(t, &job, "{\"steps\":4,\"step_ms\":10}", 10000),
			 TASKQ_DONE);
	assert_null(job.error);
	assert_int_equal(result_int(job.result, "steps"), 4);
	/* ran in another process */
	assert_true(result_pid(job.result) != (long)getpid());
	assert_true(tq_job_take_progress(&job, &percent, &msg));
	assert_int_equal(percent, 100);
	assert_non_null(msg);
	assert_string_equal(msg, "step 4 of 4");
	free(msg);
	tq_job_clear(&job);
}

/*
 * Frames that arrive together are each taken: a hundred progress reports
 * sent back to back, then the outcome, most of them in one read.  And a
 * frame longer than one read: a 64 KiB payload whose last member the
 * handler reads.  The same process runs both, so neither left the wire
 * out of step.
 */
static void test_frames_together_and_long(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.progress");
	struct taskq_job job;
	size_t pad = 64 * 1024;
	char *payload = malloc(pad + 64), *msg = NULL;
	int percent = -1, n;
	pid_t pid;

	assert_non_null(payload);
	assert_int_equal(run(t, &job, "{\"steps\":100,\"step_ms\":0}", 10000), TASKQ_DONE);
	assert_null(job.error);
	assert_int_equal(result_int(job.result, "steps"), 100);
	assert_true(tq_job_take_progress(&job, &percent, &msg));
	assert_int_equal(percent, 100);
	assert_string_equal(msg, "step 100 of 100");
	free(msg);
	pid = (pid_t)result_pid(job.result);
	tq_job_clear(&job);

	n = snprintf(payload, 64, "{\"pad\":\"");
	memset(payload + n, 'x', pad);
	snprintf(payload + n + pad, 64, "\",\"steps\":7,\"step_ms\":0}");
	assert_int_equal(run(t, &job, payload, 10000), TASKQ_DONE);
	assert_null(job.error);
	assert_int_equal(result_int(job.result, "steps"), 7);
	assert_int_equal(result_pid(job.result), (long)pid);
	tq_job_clear(&job);

	assert_int_equal(run(t, &job, "{\"steps\":1,\"step_ms\":0}", 10000), TASKQ_DONE);
	assert_int_equal(result_int(job.result, "steps"), 1);
	assert_int_equal(result_pid(job.result), (long)pid);
	tq_job_clear(&job);
	free(payload);
}

struct runner {
	const struct tq_type *t;
	struct taskq_job job;
	const char *payload;
	enum taskq_outcome outcome;
	int64_t took;
};

static void *runner_main(void *arg)
{
	struct runner *rn = arg;
	int64_t start = tq_now_ms();

	rn->outcome = tq_type_run(rn->t, &rn->job);
	rn->took = tq_now_ms() - start;
	return NULL;
}

/* Start an attempt on its own thread. */
static void runner_start(struct runner *rn, pthread_t *th,
			 const struct tq_type *t, const char *payload)
{
	memset(rn, 0, sizeof(*rn));
	rn->t = t;
	tq_job_init(&rn->job, JOB_ID, t->name, payload, 1, 0);
	assert_int_equal(pthread_create(th, NULL, runner_main, rn), 0);
}

static void test_cancel_process_cooperative(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.progress");
	struct runner rn;
	pthread_t th;
	pid_t pids[4];

	runner_start(&rn, &th, t, "{\"steps\":2,\"step_ms\":60000}");
	/* the first step takes a minute: cancel it after a moment */
	{
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 300 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&rn.job.cancelled, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rn.outcome, TASKQ_RETRY);
	/* the handler's own answer came back; it did not need a signal */
	assert_string_equal(rn.job.error, "stopped: cancelled at step 1");
	assert_true(rn.took < 1500);
	tq_job_clear(&rn.job);
	assert_int_equal(tq_procpool_pids(t->plugin->pool, pids, 4), 2);
}

static void test_cancel_process_ignored(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.hang");
	struct runner rn;
	pthread_t th;
	pid_t before = only_pid(t);
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };

	runner_start(&rn, &th, t, "{}");
	nanosleep(&ts, NULL);
	atomic_store(&rn.job.cancelled, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rn.outcome, TASKQ_RETRY);
	assert_string_equal(rn.job.error, "cancelled");
	/* the cancel message, the grace, then SIGTERM */
	assert_true(rn.took >= 2000);
	assert_true(rn.took < 5000);
	tq_job_clear(&rn.job);
	assert_true(only_pid(t) != before);
	assert_false(process_exists(before));
}

static void test_recycle_and_memory_limit(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.leak");
	struct taskq_job job;
	long pids[6];
	int i;

	/* 24 MB a job; a process runs two jobs (48 MB, under the 64 MB
	 * limit), then it is recycled and the next one starts from zero */
	for (i = 0; i < 6; i++) {
		assert_int_equal(run(t, &job, "{\"mb\":24}", 30000), TASKQ_DONE);
		pids[i] = result_pid(job.result);
		assert_int_equal(result_int(job.result, "leaked_mb"), i % 2 ? 48 : 24);
		tq_job_clear(&job);
	}
	assert_true(pids[0] == pids[1]);
	assert_true(pids[2] == pids[3]);
	assert_true(pids[4] == pids[5]);
	assert_true(pids[1] != pids[2]);
	assert_true(pids[3] != pids[4]);
	assert_true(pids[0] != (long)getpid());

	/* more than max_memory_mb at once: refused by the process's limit */
	assert_int_equal(run(t, &job, "{\"mb\":128}", 30000), TASKQ_RETRY);
	assert_string_equal(job.error, "out of memory after 0 MB");
	tq_job_clear(&job);
}

static void test_types_json(void **state)
{
	struct fx *fx = *state;
	cJSON *doc, *arr, *o;
	char *json = NULL;
	int seen = 0;

	assert_int_equal(tq_plugins_types_json(fx->p, &json), 0);
	doc = cJSON_Parse(json);
	assert_non_null(doc);
	arr = cJSON_GetObjectItemCaseSensitive(doc, "job_types");
	assert_true(cJSON_IsArray(arr));
	assert_int_equal(cJSON_GetArraySize(arr), 6);
	cJSON_ArrayForEach(o, arr) {
		const char *name = cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring;
		const char *iso = cJSON_GetObjectItemCaseSensitive(o, "isolation")->valuestring;
		const char *file = cJSON_GetObjectItemCaseSensitive(o, "file")->valuestring;

		assert_non_null(cJSON_GetObjectItemCaseSensitive(o, "plugin"));
		assert_non_null(cJSON_GetObjectItemCaseSensitive(o, "version"));
		assert_non_null(cJSON_GetObjectItemCaseSensitive(o, "max_attempts"));
		assert_non_null(cJSON_GetObjectItemCaseSensitive(o, "timeout_s"));
		assert_string_equal(iso, "process");
		assert_true(strncmp(file, fx->dir, strlen(fx->dir)) == 0);
		if (!strcmp(name, "test.progress")) {
			assert_non_null(strstr(file, "/progress.so"));
			seen++;
		}
	}
	assert_int_equal(seen, 1);
	cJSON_Delete(doc);
	free(json);
}

/* ---- thread isolation ------------------------------------------------- */

static void test_thread_mode(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t = type(fx, "test.progress");
	struct runner rn;
	struct taskq_job job;
	char *json = NULL;
	pthread_t th;

	assert_int_equal(t->plugin->isolation, TQ_ISOLATION_THREAD);
	assert_null(t->plugin->pool);
	assert_int_equal(run(t, &job, "{\"steps\":2,\"step_ms\":0}", 0), TASKQ_DONE);
	assert_int_equal(result_pid(job.result), (long)getpid());
	tq_job_clear(&job);

	/* cancellation is cooperative */
	runner_start(&rn, &th, t, "{\"steps\":2,\"step_ms\":60000}");
	{
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&rn.job.cancelled, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rn.outcome, TASKQ_RETRY);
	assert_string_equal(rn.job.error, "stopped: cancelled at step 1");
	assert_true(rn.took < 1000);
	tq_job_clear(&rn.job);

	/* and so is the timeout: the handler sees it as a cancellation */
	assert_int_equal(run(t, &job, "{\"steps\":1,\"step_ms\":60000}", 200),
			 TASKQ_RETRY);
	assert_string_equal(job.error, "stopped: cancelled at step 1");
	tq_job_clear(&job);

	assert_int_equal(tq_plugins_types_json(fx->p, &json), 0);
	assert_non_null(strstr(json, "\"isolation\":\"thread\""));
	free(json);
}

/* ---- load-time safety ------------------------------------------------- */

static void test_group_writable_refused(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r;
	char path[PATH_MAX];

	add_plugin(fx, "progress", "progress.so");
	fx_path(fx, "progress.so", path, sizeof(path));
	assert_int_equal(chmod(path, 0775), 0);
	assert_int_equal(tq_plugins_load(fx->p), 0);
	r = tq_plugins_acquire(fx->p);
	assert_null(tq_registry_find(r, "test.progress"));
	tq_registry_release(r);

	/* a directory its group may write to refuses everything */
	assert_int_equal(chmod(path, 0755), 0);
	assert_int_equal(chmod(fx->dir, 0770), 0);
	assert_int_equal(tq_plugins_load(fx->p), -EPERM);
	assert_int_equal(chmod(fx->dir, 0700), 0);
	assert_int_equal(tq_plugins_load(fx->p), 1);

	/* unless the operator says so */
	assert_int_equal(chmod(path, 0775), 0);
	fx->cfg.plugin_allow_insecure = true;
	r = tq_plugins_acquire(fx->p);
	/* the file changed (its mode does not count): still loaded */
	assert_int_equal(tq_plugins_load(fx->p), 1);
	tq_registry_release(r);
}

/* ---- hot reload ------------------------------------------------------- */

static const char *swap_version(struct fx *fx, struct tq_registry *r)
{
	const struct tq_type *t = tq_registry_find(r, "test.swap");

	(void)fx;
	return t ? t->plugin->version : NULL;
}

static long long run_swap(struct tq_registry *r, const char *payload)
{
	const struct tq_type *t = tq_registry_find(r, "test.swap");
	struct taskq_job job;
	long long v;

	assert_non_null(t);
	assert_int_equal(run(t, &job, payload, 30000), TASKQ_DONE);
	v = result_int(job.result, "version");
	tq_job_clear(&job);
	return v;
}

static void test_reload(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r1, *r2, *r3;
	const struct tq_plugin *progress1, *swap1;
	const struct tq_type *t;
	struct runner rn;
	char path[PATH_MAX];
	pid_t pids[4], pids2[4];
	pthread_t th;
	size_t n;

	add_plugin(fx, "progress", "progress.so");
	add_plugin(fx, "swap_v1", "swap.so");
	assert_int_equal(tq_plugins_load(fx->p), 2);
	r1 = tq_plugins_acquire(fx->p);
	assert_string_equal(swap_version(fx, r1), "1");
	assert_int_equal(run_swap(r1, "{}"), 1);
	progress1 = tq_registry_find(r1, "test.progress")->plugin;
	swap1 = tq_registry_find(r1, "test.swap")->plugin;
	n = tq_procpool_pids(progress1->pool, pids, 4);
	assert_int_equal(n, 2);

	/* a job of version 1 is running while version 2 replaces it */
	runner_start(&rn, &th, tq_registry_find(r1, "test.swap"), "{\"ms\":700}");
	{
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	add_plugin(fx, "swap_v2", "swap.so"); /* rewritten in place */
	add_plugin(fx, "crash", "crash.so");  /* a new file */
	assert_int_equal(tq_plugins_load(fx->p), 4);
	r2 = tq_plugins_acquire(fx->p);
	assert_string_equal(swap_version(fx, r2), "2");
	assert_non_null(tq_registry_find(r2, "test.crash.ok"));
	/* the unchanged plugin is the same, processes and all */
	assert_ptr_equal(tq_registry_find(r2, "test.progress")->plugin, progress1);
	assert_int_equal(tq_procpool_pids(progress1->pool, pids2, 4), 2);
	assert_memory_equal(pids, pids2, 2 * sizeof(pid_t));
	assert_false(progress1->retired);
	assert_true(swap1->retired);

	/* the running job finishes with the old code */
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rn.outcome, TASKQ_DONE);
	assert_int_equal(result_int(rn.job.result, "version"), 1);
	tq_job_clear(&rn.job);
	/* its processes stopped after that */
	assert_int_equal(tq_procpool_pids(swap1->pool, pids2, 4), 0);

	/* new jobs run the new code; a late one from the old snapshot still
	 * runs the old code */
	assert_int_equal(run_swap(r2, "{}"), 2);
	assert_int_equal(run_swap(r1, "{}"), 1);
	assert_int_equal(tq_procpool_pids(swap1->pool, pids2, 4), 0);

	/* a removed file stops taking jobs */
	fx_path(fx, "swap.so", path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(tq_plugins_load(fx->p), 3);
	r3 = tq_plugins_acquire(fx->p);
	assert_null(tq_registry_find(r3, "test.swap"));
	t = tq_registry_find(r2, "test.swap");
	assert_true(t->plugin->retired);
	/* and back: version 1 again, loaded afresh */
	add_plugin(fx, "swap_v1", "swap.so");
	assert_int_equal(tq_plugins_load(fx->p), 4);
	tq_registry_release(r3);
	r3 = tq_plugins_acquire(fx->p);
	assert_string_equal(swap_version(fx, r3), "1");
	assert_int_equal(run_swap(r3, "{}"), 1);
	assert_int_equal(run_swap(r2, "{}"), 2);

	tq_registry_release(r1);
	tq_registry_release(r2);
	tq_registry_release(r3);
}

int main(void)
{
#define P(fn) cmocka_unit_test_setup_teardown(fn, fx_setup_process, fx_teardown)
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup_thread, fx_teardown)
#define E(fn) cmocka_unit_test_setup_teardown(fn, fx_setup_empty, fx_teardown)
	const struct CMUnitTest tests[] = {
		P(test_crash_segv),
		P(test_exit3),
		P(test_timeout_term),
		P(test_timeout_kill),
		P(test_progress_relayed),
		P(test_frames_together_and_long),
		P(test_cancel_process_cooperative),
		P(test_cancel_process_ignored),
		P(test_recycle_and_memory_limit),
		P(test_types_json),
		T(test_thread_mode),
		E(test_group_writable_refused),
		E(test_reload),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
