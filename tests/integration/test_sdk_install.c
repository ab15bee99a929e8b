/*
 * test_sdk_install.c - the SDK as a plugin author gets it.
 *
 * `cmake --install` of this build into a temporary prefix (no root), then
 * the template plugin of sdk/examples/template built out of tree twice:
 * with the documented pkg-config command line and with CMake's
 * find_package(TaskQPlugin).  Each .so must export taskq_plugin_describe
 * and nothing else, load through the plugin host and run through the host
 * services.  Last, the operator's flow: a running taskqd, the .so dropped
 * into its plugin directory, SIGHUP, and a job of the new type completes.
 *
 * Needs cc, cmake, ctest, pkg-config and nm on PATH; a missing one fails
 * the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libconfig.h>

#include "harness.h"
#include "job.h"
#include "plugin_host.h"

#define TYPE "template.hello"
#define JOB_ID "7d1f9c62-3b1e-4c57-9f0a-2e8b5d6c4a10"
#define OUT_MAX (256 * 1024)

static struct {
	char dir[TH_PATH_MAX];     /* everything of this program */
	char prefix[TH_PATH_MAX];  /* the install prefix */
	char log[TH_PATH_MAX];     /* output of the last command */
	char pcdir[TH_PATH_MAX];   /* <prefix>/lib[/<triplet>]/pkgconfig */
	char template_src[TH_PATH_MAX];
	char so_pc[TH_PATH_MAX];   /* built with pkg-config */
	char cmake_build[TH_PATH_MAX];
	char so_cmake[TH_PATH_MAX]; /* built with find_package */
	bool installed, built_pc, built_cmake;
} sx;

static void fmt(char *buf, size_t len, const char *f, ...) TASKQ_PRINTF(3, 4);

static void fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		fail_msg("path or text too long: %s", f);
}

/* The whole file as a NUL-terminated string (caller frees), or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(OUT_MAX + 1);
	if (!buf) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, OUT_MAX, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void print_log(void)
{
	char *out = slurp(sx.log);

	fprintf(stderr, "---- output of the command ----\n%s\n-------------------------------\n",
		out ? out : "(none)");
	free(out);
}

/*
 * Run argv (PATH lookup) with "NAME=value" settings added to the
 * environment (NULL-terminated list, may be NULL), stdout and stderr into
 * sx.log.  Returns the exit code, or -1 when it did not exit normally.
 */
static int run(const char *const *argv, const char *const *env)
{
	pid_t pid, w;
	int status = 0;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(sx.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		/* the jobserver of an outer make is not ours */
		unsetenv("MAKEFLAGS");
		unsetenv("MFLAGS");
		unsetenv("MAKELEVEL");
		for (; env && *env; env++)
			if (putenv((char *)*env) != 0)
				_exit(126);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	assert_int_equal(w, pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* run() that fails the test, showing the output, unless it exits 0. */
static void run_ok(const char *const *argv, const char *const *env)
{
	int rc = run(argv, env);

	if (rc != 0) {
		print_log();
		fail_msg("%s ... exited with %d", argv[0], rc);
	}
}

static bool is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Depth-first search for a file named name under dir (at most depth
 * levels down); its directory goes into out. */
static bool find_dir_of(const char *dir, const char *name, int depth, char *out,
			size_t outlen)
{
	char path[TH_PATH_MAX];
	struct dirent *de;
	bool found = false;
	DIR *d;

	fmt(path, sizeof(path), "%s/%s", dir, name);
	if (is_file(path)) {
		fmt(out, outlen, "%s", dir);
		return true;
	}
	if (depth == 0 || !(d = opendir(dir)))
		return false;
	while (!found && (de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		fmt(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			found = find_dir_of(path, name, depth - 1, out, outlen);
	}
	closedir(d);
	return found;
}

static void assert_same_file(const char *a, const char *b)
{
	char *x = slurp(a), *y = slurp(b);

	assert_non_null(x);
	assert_non_null(y);
	assert_string_equal(x, y);
	free(x);
	free(y);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t n;

	assert_true(in >= 0);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	assert_int_equal(close(out), 0);
	assert_int_equal(chmod(to, mode), 0);
}

/* ---- steps, each done once and shared by the cases ---- */

static void ensure_installed(void)
{
	const char *bin = th_env("TASKQ_TEST_BINARY_DIR");
	const char *const argv[] = { "cmake", "--install", bin, "--prefix",
				     sx.prefix, NULL };

	int rc;

	if (sx.installed)
		return;
	/* installs every target of the build: build them all first */
	rc = run(argv, NULL);
	if (rc != 0) {
		print_log();
		fail_msg("cmake --install %s failed (%d); is the whole tree built?",
			 bin, rc);
	}
	if (!find_dir_of(sx.prefix, "taskq-plugin.pc", 4, sx.pcdir,
			 sizeof(sx.pcdir)))
		fail_msg("no taskq-plugin.pc under %s", sx.prefix);
	sx.installed = true;
}

/* The exported (defined, dynamic) symbols of so: exactly one, the
 * descriptor function.  Symbols the linker itself defines are allowed. */
static void assert_exports_only_describe(const char *so)
{
	static const char *const linker[] = { "_init", "_fini", "_edata", "_end",
					       "__bss_start", NULL };
	const char *const argv[] = { "nm", "-D", "--defined-only", so, NULL };
	char *out, *line, *next;
	int describe = 0, others = 0;

	run_ok(argv, NULL);
	out = slurp(sx.log);
	assert_non_null(out);
	for (line = out; *line; line = next) {
		char type[8], name[256];
		bool known = false;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		else
			next = line + strlen(line);

		/* "0000000000001139 T taskq_plugin_describe" */
		if (sscanf(line, "%*s %7s %255s", type, name) != 2)
			continue;
		if (strcmp(name, TASKQ_PLUGIN_SYMBOL) == 0) {
			assert_string_equal(type, "T");
			describe++;
			continue;
		}
		for (const char *const *l = linker; *l; l++)
			known |= strcmp(name, *l) == 0;
		if (!known) {
			fprintf(stderr, "%s exports %s\n", so, name);
			others++;
		}
	}
	free(out);
	assert_int_equal(describe, 1);
	assert_int_equal(others, 0);
}

static const struct taskq_job_type *find_type(const struct tq_plugin *pl,
					      const char *name)
{
	for (size_t i = 0; i < pl->desc->n_types; i++)
		if (strcmp(pl->desc->types[i].name, name) == 0)
			return &pl->desc->types[i];
	return NULL;
}

/* Load so through the plugin host with a config block, run one attempt
 * through tq_host, check the validator and init's refusal of a bad
 * block. */
static void load_and_run(const char *so)
{
	const struct taskq_job_type *t;
	struct tq_plugin *pl = NULL;
	struct taskq_job job;
	const cJSON *payload;
	config_t lc;
	cJSON *res;
	char err[256];

	config_init(&lc);
	assert_int_equal(config_read_string(&lc,
		"good = { greeting = \"hey\"; };\n"
		"bad = { greeting = \"say \\\"hi\\\"\"; };\n"), CONFIG_TRUE);

	/* init() refuses a greeting that would need escaping */
	err[0] = '\0';
	assert_int_not_equal(tq_plugin_load_file(so, config_lookup(&lc, "bad"),
						 &pl, err, sizeof(err)), 0);
	assert_null(pl);
	assert_non_null(strstr(err, "greeting"));

	err[0] = '\0';
	if (tq_plugin_load_file(so, config_lookup(&lc, "good"), &pl, err,
				sizeof(err)) != 0)
		fail_msg("%s does not load: %s", so, err);
	assert_non_null(pl);
	assert_string_equal(pl->name, "template");
	assert_int_equal(pl->desc->abi_major, TASKQ_ABI_MAJOR);
	t = find_type(pl, TYPE);
	assert_non_null(t);
	assert_int_equal(t->max_attempts, 3);
	assert_int_equal(t->timeout_s, 30);

	/* the validator */
	assert_non_null(t->validate);
	assert_int_equal(t->validate(&tq_host, "{\"n\":1}", err, sizeof(err),
				     pl->user_data), 0);
	err[0] = '\0';
	assert_int_not_equal(t->validate(&tq_host, "[1,2]", err, sizeof(err),
					 pl->user_data), 0);
	assert_non_null(strstr(err, "object"));

	/* one attempt through the host services */
	tq_job_init(&job, JOB_ID, TYPE, "{\"n\":1}", 2, tq_now_ms() + 10000);
	assert_int_equal(t->handler(&tq_host, &job, pl->user_data), TASKQ_DONE);
	assert_non_null(job.result);
	res = cJSON_Parse(job.result);
	assert_non_null(res);
	assert_string_equal(th_json_str(res, "greeting"), "hey");
	assert_int_equal(th_json_int(res, "attempt"), 2);
	payload = cJSON_GetObjectItemCaseSensitive(res, "payload");
	assert_true(cJSON_IsObject(payload));
	assert_int_equal(th_json_int(payload, "n"), 1);
	assert_int_equal(job.progress, 100);
	cJSON_Delete(res);
	tq_job_clear(&job);

	/* a cancelled attempt gives up with a reason */
	tq_job_init(&job, JOB_ID, TYPE, "{}", 1, tq_now_ms() + 10000);
	atomic_store(&job.cancelled, 1);
	assert_int_equal(t->handler(&tq_host, &job, pl->user_data), TASKQ_RETRY);
	assert_non_null(job.error);
	assert_null(job.result);
	tq_job_clear(&job);

	tq_plugin_free(pl);
	config_destroy(&lc);
}

static void ensure_built_pc(void)
{
	char env_pc[TH_PATH_MAX + 32];
	const char *env[] = { env_pc, NULL };
	/* the command line of the documentation, warnings as errors */
	const char *const argv[] = {
		"/bin/sh", "-c",
		"set -e; flags=$(pkg-config --cflags taskq-plugin); "
		"cc -shared -fPIC -Wall -Wextra -Werror $flags \"$1\" -o \"$2\"",
		"sh", NULL, NULL, NULL,
	};
	const char *args[8];
	char src[TH_PATH_MAX];

	if (sx.built_pc)
		return;
	ensure_installed();
	fmt(env_pc, sizeof(env_pc), "PKG_CONFIG_PATH=%s", sx.pcdir);
	fmt(src, sizeof(src), "%s/template.c", sx.template_src);
	memcpy(args, argv, sizeof(argv));
	args[4] = src;
	args[5] = sx.so_pc;
	run_ok(args, env);
	sx.built_pc = true;
}

static void ensure_built_cmake(void)
{
	char prefix_def[TH_PATH_MAX + 32];
	const char *const configure[] = {
		"cmake", "-S", sx.template_src, "-B", sx.cmake_build,
		prefix_def, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
		"-DCMAKE_C_FLAGS=-Werror",
		"-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
		"-DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF", NULL,
	};
	const char *const build[] = { "cmake", "--build", sx.cmake_build, NULL };

	if (sx.built_cmake)
		return;
	ensure_installed();
	fmt(prefix_def, sizeof(prefix_def), "-DCMAKE_PREFIX_PATH=%s", sx.prefix);
	run_ok(configure, NULL);
	run_ok(build, NULL);
	sx.built_cmake = true;
}

/* ---- cases ---- */

static void test_install_layout(void **state)
{
	const char *src = th_env("TASKQ_TEST_SOURCE_DIR");
	char pc[TH_PATH_MAX], path[TH_PATH_MAX], orig[TH_PATH_MAX];
	char cmakedir[TH_PATH_MAX], plugindir[TH_PATH_MAX];
	char env_pc[TH_PATH_MAX + 32], want[TH_PATH_MAX + 8];
	const char *env[] = { env_pc, NULL };
	const char *const cflags[] = { "pkg-config", "--cflags", "taskq-plugin", NULL };
	const char *const pdir[] = { "pkg-config", "--variable=plugindir",
				     "taskq-plugin", NULL };
	char *out, *nl;

	(void)state;
	ensure_installed();

	/* the header, byte for byte */
	fmt(path, sizeof(path), "%s/include/taskq/plugin.h", sx.prefix);
	fmt(orig, sizeof(orig), "%s/sdk/include/taskq/plugin.h", src);
	assert_same_file(path, orig);

	/* the CMake package beside the pkg-config file's lib directory */
	if (!find_dir_of(sx.prefix, "TaskQPluginConfig.cmake", 5, cmakedir,
			 sizeof(cmakedir)))
		fail_msg("no TaskQPluginConfig.cmake under %s", sx.prefix);
	fmt(path, sizeof(path), "%s/TaskQPluginTargets.cmake", cmakedir);
	assert_true(is_file(path));
	fmt(path, sizeof(path), "%s/TaskQPluginConfigVersion.cmake", cmakedir);
	assert_true(is_file(path));

	/* the daemon's files land under the prefix too, without root */
	fmt(path, sizeof(path), "%s/sbin/taskqd", sx.prefix);
	assert_int_equal(access(path, X_OK), 0);
	fmt(path, sizeof(path), "%s/etc/taskq/taskq.conf", sx.prefix);
	fmt(orig, sizeof(orig), "%s/etc/taskq.conf", src);
	assert_same_file(path, orig);
	fmt(path, sizeof(path), "%s/lib/systemd/system/taskqd.service", sx.prefix);
	assert_true(is_file(path));
	fmt(path, sizeof(path), "%s/share/man/man8/taskqd.8", sx.prefix);
	assert_true(is_file(path));
	fmt(path, sizeof(path), "%s/share/man/man5/taskq.conf.5", sx.prefix);
	assert_true(is_file(path));

	/* pkg-config names the install prefix, not the configure-time one */
	fmt(pc, sizeof(pc), "%s/taskq-plugin.pc", sx.pcdir);
	out = slurp(pc);
	assert_non_null(out);
	fmt(want, sizeof(want), "prefix=%s\n", sx.prefix);
	if (!strstr(out, want))
		fail_msg("%s does not say %s:\n%s", pc, want, out);
	free(out);

	fmt(env_pc, sizeof(env_pc), "PKG_CONFIG_PATH=%s", sx.pcdir);
	run_ok(cflags, env);
	out = slurp(sx.log);
	assert_non_null(out);
	fmt(want, sizeof(want), "-I%s/include", sx.prefix);
	if (!strstr(out, want) || !strstr(out, "-fvisibility=hidden"))
		fail_msg("pkg-config --cflags gave: %s", out);
	free(out);

	/* plugindir is where the bundled plugins went */
	run_ok(pdir, env);
	out = slurp(sx.log);
	assert_non_null(out);
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	fmt(plugindir, sizeof(plugindir), "%s", out);
	free(out);
	fmt(want, sizeof(want), "%s/", sx.prefix);
	assert_memory_equal(plugindir, want, strlen(want));
	fmt(path, sizeof(path), "%s/echo.so", plugindir);
	assert_true(is_file(path));
	th_case_passed();
}

static void test_build_with_pkg_config(void **state)
{
	(void)state;
	ensure_built_pc();
	assert_exports_only_describe(sx.so_pc);
	load_and_run(sx.so_pc);
	th_case_passed();
}

static void test_build_with_cmake(void **state)
{
	char cache[TH_PATH_MAX], want[TH_PATH_MAX + 32];
	const char *const ctest[] = { "ctest", "--test-dir", sx.cmake_build,
				      "--output-on-failure", NULL };
	char *text;

	(void)state;
	ensure_built_cmake();

	/* find_package() took the SDK of the temporary prefix */
	fmt(cache, sizeof(cache), "%s/CMakeCache.txt", sx.cmake_build);
	text = slurp(cache);
	assert_non_null(text);
	fmt(want, sizeof(want), "TaskQPlugin_DIR:PATH=%s/", sx.prefix);
	if (!strstr(text, want))
		fail_msg("TaskQPlugin was not found under %s", sx.prefix);
	free(text);

	assert_true(is_file(sx.so_cmake));
	assert_exports_only_describe(sx.so_cmake);
	load_and_run(sx.so_cmake);

	/* the template's own test: the handler with a stand-in host */
	run_ok(ctest, NULL);
	th_case_passed();
}

static void test_daemon_loads_on_sighup(void **state)
{
	char plugins[TH_PATH_MAX], env_dir[TH_PATH_MAX + 32];
	char from[TH_PATH_MAX], to[TH_PATH_MAX], tmp[TH_PATH_MAX];
	char id[TH_ID_LEN] = "", echo_id[TH_ID_LEN];
	const char *body = "{\"type\":\"" TYPE "\",\"payload\":{\"name\":\"world\"}}";
	struct th_daemon *d;
	struct th_resp resp;
	cJSON *job;
	const cJSON *result, *payload;
	int64_t deadline;

	(void)state;
	ensure_built_pc();

	/* the daemon's plugin directory: echo only, to begin with */
	fmt(plugins, sizeof(plugins), "%s/plugins", sx.dir);
	assert_int_equal(mkdir(plugins, 0755), 0);
	fmt(from, sizeof(from), "%s/echo.so",
	    th_env("TASKQ_TEST_BUNDLED_PLUGIN_DIR"));
	fmt(to, sizeof(to), "%s/echo.so", plugins);
	copy_file(from, to, 0644);
	fmt(env_dir, sizeof(env_dir), "TASKQ_PLUGIN_DIR=%s", plugins);
	d = th_daemon_start(env_dir, NULL);

	/* not there yet */
	assert_int_equal(th_http(d, "POST", "/v1/jobs", body, "application/json",
				 &resp), 0);
	assert_int_equal(resp.status, 400);
	assert_string_equal(th_resp_code(&resp), "UNKNOWN_JOB_TYPE");
	th_resp_free(&resp);

	/* install as an operator does: copy beside, rename into place */
	fmt(tmp, sizeof(tmp), "%s/.template.so.new", plugins);
	fmt(to, sizeof(to), "%s/template.so", plugins);
	copy_file(sx.so_pc, tmp, 0644);
	assert_int_equal(rename(tmp, to), 0);
	assert_int_equal(kill(d->pid, SIGHUP), 0);

	/* the reload is asynchronous: submit until the type is known */
	deadline = th_now_ms() + 15000;
	for (;;) {
		assert_int_equal(th_http(d, "POST", "/v1/jobs", body,
					 "application/json", &resp), 0);
		if (resp.status == 201) {
			snprintf(id, sizeof(id), "%s",
				 th_json_str(resp.json, "id") ?
					 th_json_str(resp.json, "id") : "");
			th_resp_free(&resp);
			break;
		}
		assert_int_equal(resp.status, 400);
		assert_string_equal(th_resp_code(&resp), "UNKNOWN_JOB_TYPE");
		th_resp_free(&resp);
		if (th_now_ms() > deadline) {
			th_daemon_log_tail(d, 40);
			fail_msg("%s not registered 15 s after SIGHUP", TYPE);
		}
		th_sleep_ms(50);
	}
	assert_int_equal(strlen(id), 36);

	job = th_wait_status(d, id, "completed", 30000);
	assert_int_equal(th_json_int(job, "attempts"), 1);
	result = cJSON_GetObjectItemCaseSensitive(job, "result");
	assert_true(cJSON_IsObject(result));
	/* no config block in the daemon's file: the default greeting */
	assert_string_equal(th_json_str(result, "greeting"), "hello");
	assert_int_equal(th_json_int(result, "attempt"), 1);
	payload = cJSON_GetObjectItemCaseSensitive(result, "payload");
	assert_true(cJSON_IsObject(payload));
	assert_string_equal(th_json_str(payload, "name"), "world");
	cJSON_Delete(job);

	/* the plugin's validator runs in the daemon */
	assert_int_equal(th_http(d, "POST", "/v1/jobs",
				 "{\"type\":\"" TYPE "\",\"payload\":[1]}",
				 "application/json", &resp), 0);
	assert_int_equal(resp.status, 400);
	assert_string_equal(th_resp_code(&resp), "INVALID_PAYLOAD");
	th_resp_free(&resp);

	/* the types loaded before the reload still run */
	th_submit(d, "{\"type\":\"echo\",\"payload\":{\"x\":1}}", echo_id);
	job = th_wait_status(d, echo_id, "completed", 30000);
	cJSON_Delete(job);

	assert_int_equal(th_daemon_stop(d, 20000), 0);
	th_case_passed();
}

/* ---- fixtures ---- */

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static int group_setup(void **state)
{
	const char *src, *tmp = getenv("TMPDIR");
	int n;

	(void)state;
	if (th_group_setup("sdk_install") != 0)
		return -1;
	src = getenv("TASKQ_TEST_SOURCE_DIR");
	if (!src || !*src)
		return -1; /* th_group_setup() said so already */
	n = snprintf(sx.dir, sizeof(sx.dir), "%s/tq_sdk_XXXXXX",
		     tmp && *tmp ? tmp : "/tmp");
	if (n < 0 || (size_t)n >= sizeof(sx.dir) || !mkdtemp(sx.dir)) {
		fprintf(stderr, "cannot make a temporary directory\n");
		return -1;
	}
	if (snprintf(sx.prefix, sizeof(sx.prefix), "%s/prefix", sx.dir) >= TH_PATH_MAX ||
	    snprintf(sx.log, sizeof(sx.log), "%s/command.log", sx.dir) >= TH_PATH_MAX ||
	    snprintf(sx.template_src, sizeof(sx.template_src),
		     "%s/sdk/examples/template", src) >= TH_PATH_MAX ||
	    snprintf(sx.so_pc, sizeof(sx.so_pc), "%s/template.so", sx.dir) >= TH_PATH_MAX ||
	    snprintf(sx.cmake_build, sizeof(sx.cmake_build), "%s/build-cmake",
		     sx.dir) >= TH_PATH_MAX ||
	    snprintf(sx.so_cmake, sizeof(sx.so_cmake), "%s/build-cmake/template.so",
		     sx.dir) >= TH_PATH_MAX) {
		fprintf(stderr, "temporary path too long\n");
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (sx.dir[0])
		nftw(sx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return th_group_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_layout,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_build_with_pkg_config,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_build_with_cmake,
						th_case_setup, th_case_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_loads_on_sighup,
						th_case_setup, th_case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
