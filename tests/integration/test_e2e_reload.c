/*
 * test_e2e_reload.c - hot reload of the plugin directory under load, end
 * to end: while jobs of sleep-like types run all the time, a plugin is
 * added (POST /v1/plugins/reload), one is replaced by another build of the
 * same plugin copied over its file (SIGHUP), and one is removed (POST);
 * GET /v1/job-types follows each change and no job is lost or fails.
 *
 * The daemon gets its own plugin directory (TASKQ_PLUGIN_DIR).
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_JOBS 2000
#define SUBMIT_EVERY_MS 30

static char plugin_dir[PATH_MAX];
static char plugin_dir_env[PATH_MAX + 32];

static int copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t r;
	int in, out, rc = 0;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	/* in place, as cp does over an existing file */
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	while ((r = read(in, buf, sizeof(buf))) > 0) {
		if (write(out, buf, (size_t)r) != r) {
			rc = -EIO;
			break;
		}
	}
	if (r < 0)
		rc = -errno;
	close(in);
	if (close(out) < 0 && !rc)
		rc = -errno;
	return rc;
}

/* Copy <dir_env>/<name>.so into the plugin directory as <as>.so. */
static int add_plugin(const char *dir_env, const char *name, const char *as)
{
	char from[PATH_MAX], to[PATH_MAX];
	const char *dir = getenv(dir_env);
	int rc;

	if (!dir || !*dir) {
		fprintf(stderr, "%s is not set\n", dir_env);
		return -ENOENT;
	}
	if (snprintf(from, sizeof(from), "%s/%s.so", dir, name) >= (int)sizeof(from) ||
	    snprintf(to, sizeof(to), "%s/%s.so", plugin_dir, as) >= (int)sizeof(to))
		return -ENAMETOOLONG;
	rc = copy_file(from, to);
	if (rc < 0)
		fprintf(stderr, "cannot copy %s: %s\n", from, strerror(-rc));
	return rc;
}

static void rm_plugin(const char *as)
{
	char path[PATH_MAX];

	assert_true(snprintf(path, sizeof(path), "%s/%s.so", plugin_dir, as) <
		    (int)sizeof(path));
	assert_int_equal(unlink(path), 0);
}

static void rm_plugin_dir(void)
{
	char sub[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (!plugin_dir[0])
		return;
	d = opendir(plugin_dir);
	if (d) {
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (snprintf(sub, sizeof(sub), "%s/%s", plugin_dir,
				     de->d_name) < (int)sizeof(sub))
				unlink(sub);
		}
		closedir(d);
	}
	rmdir(plugin_dir);
	plugin_dir[0] = '\0';
}

/* ---- the load ---------------------------------------------------------- */

struct load {
	const struct th_daemon *d;
	atomic_bool stop;
	pthread_mutex_t lock;
	char ids[MAX_JOBS][TH_ID_LEN];
	bool is_swap[MAX_JOBS];
	int n;
	int refused; /* submissions not answered 201 */
};

static void *load_main(void *arg)
{
	struct load *ld = arg;
	struct th_resp resp;
	const char *id;
	int i = 0;

	while (!atomic_load(&ld->stop) && ld->n < MAX_JOBS) {
		bool swap = i++ % 2;
		const char *body = swap ?
			"{\"type\":\"test.swap\",\"payload\":{\"ms\":150}}" :
			"{\"type\":\"sleep\",\"payload\":{\"ms\":150}}";

		th_http(ld->d, "POST", "/v1/jobs", body, "application/json", &resp);
		id = resp.json ? th_json_str(resp.json, "id") : NULL;
		pthread_mutex_lock(&ld->lock);
		if (resp.status == 201 && id && strlen(id) == TH_ID_LEN - 1) {
			memcpy(ld->ids[ld->n], id, TH_ID_LEN);
			ld->is_swap[ld->n] = swap;
			ld->n++;
		} else {
			ld->refused++;
		}
		pthread_mutex_unlock(&ld->lock);
		th_resp_free(&resp);
		th_sleep_ms(SUBMIT_EVERY_MS);
	}
	return NULL;
}

/* ---- GET /v1/job-types --------------------------------------------- */

/* The version of type name in GET /v1/job-types into version ("" when the
 * type is not listed). */
static void type_version(const struct th_daemon *d, const char *name,
			 char *version, size_t len)
{
	struct th_resp resp;
	const cJSON *arr, *o;

	version[0] = '\0';
	assert_int_equal(th_http(d, "GET", "/v1/job-types", NULL, NULL, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(resp.json);
	arr = cJSON_GetObjectItem(resp.json, "job_types");
	assert_true(cJSON_IsArray(arr));
	cJSON_ArrayForEach(o, arr) {
		if (strcmp(th_json_str(o, "name"), name) != 0)
			continue;
		assert_string_equal(th_json_str(o, "isolation"), "process");
		snprintf(version, len, "%s", th_json_str(o, "version"));
	}
	th_resp_free(&resp);
}

/* Poll GET /v1/job-types until type name has version want ("" = gone). */
static void wait_type(const struct th_daemon *d, const char *name,
		      const char *want, int timeout_ms)
{
	int64_t until = th_now_ms() + timeout_ms;
	char got[64];

	for (;;) {
		type_version(d, name, got, sizeof(got));
		if (!strcmp(got, want))
			return;
		if (th_now_ms() > until)
			fail_msg("type %s: version \"%s\", expected \"%s\"", name,
				 got, want);
		th_sleep_ms(50);
	}
}

static void reload_api(const struct th_daemon *d)
{
	struct th_resp resp;

	assert_int_equal(th_http(d, "POST", "/v1/plugins/reload", "{}",
				 "application/json", &resp), 0);
	if (resp.status != 200)
		fail_msg("reload: %ld %s", resp.status, resp.body);
	assert_string_equal(th_json_str(resp.json, "status"), "reloaded");
	th_resp_free(&resp);
}

static void test_reload_under_load(void **state)
{
	struct th_daemon *d = th_daemon_start(plugin_dir_env, NULL);
	struct load *ld = calloc(1, sizeof(*ld));
	int64_t swapped_at_n;
	int v1 = 0, v2 = 0, i, n;
	char version[64];
	pthread_t th;
	cJSON *job;

	(void)state;
	assert_non_null(ld);
	ld->d = d;
	pthread_mutex_init(&ld->lock, NULL);
	type_version(d, "test.swap", version, sizeof(version));
	assert_string_equal(version, "1");
	type_version(d, "test.progress", version, sizeof(version));
	assert_string_equal(version, "1.0.0");
	type_version(d, "test.crash.ok", version, sizeof(version));
	assert_string_equal(version, "");

	assert_int_equal(pthread_create(&th, NULL, load_main, ld), 0);
	th_sleep_ms(1000);

	/* 1. a new plugin */
	assert_int_equal(add_plugin("TASKQ_TEST_PLUGIN_DIR", "crash", "crash"), 0);
	reload_api(d);
	wait_type(d, "test.crash.ok", "1.0.0", 5000);
	th_sleep_ms(700);

	/* 2. another build of a plugin copied over its file, SIGHUP */
	assert_int_equal(add_plugin("TASKQ_TEST_PLUGIN_DIR", "swap_v2", "swap"), 0);
	assert_int_equal(kill(d->pid, SIGHUP), 0);
	wait_type(d, "test.swap", "2", 10000);
	pthread_mutex_lock(&ld->lock);
	swapped_at_n = ld->n;
	pthread_mutex_unlock(&ld->lock);
	th_sleep_ms(700);

	/* 3. a plugin removed */
	rm_plugin("progress");
	reload_api(d);
	wait_type(d, "test.progress", "", 5000);
	th_sleep_ms(1000);

	atomic_store(&ld->stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(ld->refused, 0);
	n = ld->n;
	fprintf(stderr, "submitted %d jobs across three reloads\n", n);
	assert_true(n >= 60);

	/* every job completes, on its first attempt */
	for (i = 0; i < n; i++) {
		job = th_wait_status(d, ld->ids[i], "completed", 60000);
		assert_int_equal(th_json_int(job, "attempts"), 1);
		if (ld->is_swap[i]) {
			long long v = th_json_int(cJSON_GetObjectItem(job, "result"),
						  "version");

			if (v == 1)
				v1++;
			else if (v == 2)
				v2++;
			else
				fail_msg("swap job %s: version %lld", ld->ids[i], v);
			/* once version 2 was listed, new jobs run it */
			if (i >= swapped_at_n)
				assert_int_equal(v, 2);
		}
		cJSON_Delete(job);
	}
	assert_true(v1 > 0);
	assert_true(v2 > 0);
	assert_int_equal(th_jobs_count(), n);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE status <> "
				     "'completed' OR attempts <> 1 OR "
				     "error_message IS NOT NULL",
				     NULL, 0),
			 0);
	/* the changed and the removed plugins were retired, the others kept */
	assert_int_equal(th_daemon_log_count(d, "plugin retired"), 2);
	assert_int_equal(th_daemon_log_count(d, "\"msg\":\"plugin loaded"), 5);
	assert_true(th_daemon_alive(d));

	pthread_mutex_destroy(&ld->lock);
	free(ld);
	th_case_passed();
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	if (th_group_setup("e2e_reload"))
		return -1;
	if (snprintf(plugin_dir, sizeof(plugin_dir), "%s/tq_reload_XXXXXX",
		     tmp && *tmp ? tmp : "/tmp") >= (int)sizeof(plugin_dir) ||
	    !mkdtemp(plugin_dir)) {
		fprintf(stderr, "cannot make the plugin dir\n");
		return -1;
	}
	snprintf(plugin_dir_env, sizeof(plugin_dir_env), "TASKQ_PLUGIN_DIR=%s",
		 plugin_dir);
	if (add_plugin("TASKQ_TEST_BUNDLED_PLUGIN_DIR", "sleep", "sleep") ||
	    add_plugin("TASKQ_TEST_PLUGIN_DIR", "swap_v1", "swap") ||
	    add_plugin("TASKQ_TEST_PLUGIN_DIR", "progress", "progress"))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	rm_plugin_dir();
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reload_under_load,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
