/*
 * test_e2e_isolation.c - plugins that crash, exit or hang, run by a real
 * taskqd in worker processes (isolation "process", the default): each
 * attempt fails with the right error_message, the daemon stays up and the
 * other jobs complete.
 *
 * The daemon gets its own plugin directory (TASKQ_PLUGIN_DIR) with copies
 * of the crash, exit3 and hang test plugins and the bundled echo.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_ECHO 20

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

/* Copy <dir_env>/<name>.so into the plugin directory. */
static int add_plugin(const char *dir_env, const char *name)
{
	char from[PATH_MAX], to[PATH_MAX];
	const char *dir = getenv(dir_env);
	int rc;

	if (!dir || !*dir) {
		fprintf(stderr, "%s is not set\n", dir_env);
		return -ENOENT;
	}
	if (snprintf(from, sizeof(from), "%s/%s.so", dir, name) >= (int)sizeof(from) ||
	    snprintf(to, sizeof(to), "%s/%s.so", plugin_dir, name) >= (int)sizeof(to))
		return -ENAMETOOLONG;
	rc = copy_file(from, to);
	if (rc < 0)
		fprintf(stderr, "cannot copy %s: %s\n", from, strerror(-rc));
	return rc;
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

static void expect_failed(const struct th_daemon *d, const char *id,
			  const char *error, int attempts)
{
	cJSON *job = th_wait_status(d, id, "failed", 60000);
	char *msg;

	assert_int_equal(th_json_int(job, "attempts"), attempts);
	cJSON_Delete(job);
	msg = th_job_field(id, "error_message");
	assert_non_null(msg);
	if (strcmp(msg, error) != 0)
		fail_msg("job %s: error_message \"%s\", expected \"%s\"", id, msg,
			 error);
	free(msg);
}

static void test_bad_handlers_cost_attempts_only(void **state)
{
	struct th_daemon *d = th_daemon_start(plugin_dir_env, NULL);
	char crash[TH_ID_LEN], abrt[TH_ID_LEN], ex[TH_ID_LEN], hang[TH_ID_LEN];
	char hang_kill[TH_ID_LEN], echo[N_ECHO][TH_ID_LEN], last[TH_ID_LEN];
	char body[128];
	cJSON *job;
	int i;

	(void)state;
	th_submit(d, "{\"type\":\"test.crash\",\"payload\":{},\"max_attempts\":2}",
		  crash);
	th_submit(d, "{\"type\":\"test.crash\",\"payload\":{\"how\":\"abort\"},"
		     "\"max_attempts\":1}", abrt);
	th_submit(d, "{\"type\":\"test.exit3\",\"payload\":{},\"max_attempts\":2}",
		  ex);
	th_submit(d, "{\"type\":\"test.hang\",\"payload\":{},\"max_attempts\":1,"
		     "\"timeout_s\":1}", hang);
	th_submit(d, "{\"type\":\"test.hang\",\"payload\":{\"ignore_term\":true},"
		     "\"max_attempts\":1,\"timeout_s\":1}", hang_kill);
	for (i = 0; i < N_ECHO; i++) {
		snprintf(body, sizeof(body),
			 "{\"type\":\"echo\",\"payload\":{\"i\":%d}}", i);
		th_submit(d, body, echo[i]);
	}

	for (i = 0; i < N_ECHO; i++) {
		job = th_wait_status(d, echo[i], "completed", 30000);
		assert_int_equal(th_json_int(cJSON_GetObjectItem(job, "result"), "i"), i);
		cJSON_Delete(job);
	}
	expect_failed(d, crash, "handler crashed: SIGSEGV", 2);
	expect_failed(d, abrt, "handler crashed: SIGABRT", 1);
	expect_failed(d, ex, "handler exited with status 3", 2);
	expect_failed(d, hang, "timeout after 1 s", 1);
	expect_failed(d, hang_kill, "timeout after 1 s", 1);

	/* still up, and the crashing plugin's next job runs */
	assert_true(th_daemon_alive(d));
	th_submit(d, "{\"type\":\"test.crash.ok\",\"payload\":{}}", last);
	job = th_wait_status(d, last, "completed", 20000);
	cJSON_Delete(job);
	assert_true(th_daemon_log_count(d, "handler crashed: SIGSEGV") >= 2);
	assert_int_equal(th_sql_long("SELECT count(*) FROM jobs WHERE status = "
				     "'completed'", NULL, 0),
			 N_ECHO + 1);
	th_case_passed();
}

static void test_job_types_report_isolation(void **state)
{
	struct th_daemon *d = th_daemon_start(plugin_dir_env, NULL);
	struct th_resp resp;
	const cJSON *arr, *o;
	int seen = 0;

	(void)state;
	assert_int_equal(th_http(d, "GET", "/v1/job-types", NULL, NULL, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(resp.json);
	arr = cJSON_GetObjectItem(resp.json, "job_types");
	assert_true(cJSON_IsArray(arr));
	cJSON_ArrayForEach(o, arr) {
		const char *name = th_json_str(o, "name");

		assert_non_null(name);
		assert_string_equal(th_json_str(o, "isolation"), "process");
		assert_non_null(th_json_str(o, "version"));
		assert_non_null(th_json_str(o, "plugin"));
		if (!strcmp(name, "test.hang")) {
			assert_string_equal(th_json_str(o, "plugin"), "hang");
			assert_non_null(strstr(th_json_str(o, "file"), "/hang.so"));
			seen++;
		}
	}
	assert_int_equal(seen, 1);
	th_resp_free(&resp);
	th_case_passed();
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	if (th_group_setup("e2e_isolation"))
		return -1;
	if (snprintf(plugin_dir, sizeof(plugin_dir), "%s/tq_iso_XXXXXX",
		     tmp && *tmp ? tmp : "/tmp") >= (int)sizeof(plugin_dir) ||
	    !mkdtemp(plugin_dir)) {
		fprintf(stderr, "cannot make the plugin dir\n");
		return -1;
	}
	snprintf(plugin_dir_env, sizeof(plugin_dir_env), "TASKQ_PLUGIN_DIR=%s",
		 plugin_dir);
	if (add_plugin("TASKQ_TEST_PLUGIN_DIR", "crash") ||
	    add_plugin("TASKQ_TEST_PLUGIN_DIR", "exit3") ||
	    add_plugin("TASKQ_TEST_PLUGIN_DIR", "hang") ||
	    add_plugin("TASKQ_TEST_BUNDLED_PLUGIN_DIR", "echo"))
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
		cmocka_unit_test_setup_teardown(test_bad_handlers_cost_attempts_only,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_job_types_report_isolation,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
