/*
 * test_plugin_host.c - loading plugins: the test plugins of tests/plugins
 * (good, wrong ABI, no symbol, duplicate type, failing init, ...) copied
 * into a fresh directory per case, and the bundled plugins run through the
 * host services exactly as a worker runs them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "job.h"
#include "log.h"
#include "plugin_host.h"

#define JOB_ID "5f0c2a8e-0d7b-4f61-8d0e-6a9e1b2c3d4e"

struct fx {
	char dir[PATH_MAX];
	char trace[PATH_MAX];
	struct tq_config cfg;
	struct tq_plugins *p;
};

static const char *env_dir(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		fail_msg("%s is not set (run the test through ctest)", name);
	return v;
}

static int fx_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct fx *fx = calloc(1, sizeof(*fx));
	int n;

	assert_non_null(fx);
	n = snprintf(fx->dir, sizeof(fx->dir), "%s/tq_plugins_XXXXXX",
		     tmp && *tmp ? tmp : "/tmp");
	assert_true(n > 0 && (size_t)n < sizeof(fx->dir));
	assert_non_null(mkdtemp(fx->dir));
	/* not a *.so: the scan ignores it */
	n = snprintf(fx->trace, sizeof(fx->trace), "%s/trace.txt", fx->dir);
	assert_true(n > 0 && (size_t)n < sizeof(fx->trace));
	assert_int_equal(setenv("TASKQ_TEST_PLUGIN_TRACE", fx->trace, 1), 0);

	fx->cfg.plugin_dir = fx->dir;
	config_init(&fx->cfg.lc);
	*state = fx;
	return 0;
}

static void rm_tree(const char *path)
{
	char sub[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (lstat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	d = opendir(path);
	if (d) {
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (snprintf(sub, sizeof(sub), "%s/%s", path,
				     de->d_name) < (int)sizeof(sub))
				rm_tree(sub);
		}
		closedir(d);
	}
	rmdir(path);
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	tq_plugins_close(fx->p);
	config_destroy(&fx->cfg.lc);
	chmod(fx->dir, 0700);
	rm_tree(fx->dir);
	unsetenv("TASKQ_TEST_PLUGIN_TRACE");
	free(fx);
	return 0;
}

static void fx_config(struct fx *fx, const char *text)
{
	assert_int_equal(config_read_string(&fx->cfg.lc, text), CONFIG_TRUE);
	fx->cfg.have_file = true;
}

static void fx_path(const struct fx *fx, const char *name, char *out,
		    size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%s", fx->dir, name);

	assert_true(n > 0 && (size_t)n < outlen);
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t r;
	int in, out;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		fail_msg("cannot open %s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	if (out < 0)
		fail_msg("cannot create %s: %s", to, strerror(errno));
	while ((r = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)r), r);
	assert_int_equal(r, 0);
	close(in);
	close(out);
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

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long len;

	if (!f)
		return calloc(1, 1);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	return buf;
}

static void assert_trace(const struct fx *fx, const char *expected)
{
	char *got = read_file(fx->trace);

	assert_string_equal(got, expected);
	free(got);
}

/* ---- captured log lines ---------------------------------------------- */

struct captured {
	FILE *f;
	int saved;
	char *text;
};

static void capture_begin(struct captured *c)
{
	c->f = tmpfile();
	assert_non_null(c->f);
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(fileno(c->f), STDERR_FILENO) >= 0);
}

static void capture_end(struct captured *c)
{
	long len;

	fflush(stderr);
	assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	assert_int_equal(fseek(c->f, 0, SEEK_END), 0);
	len = ftell(c->f);
	assert_true(len >= 0);
	rewind(c->f);
	c->text = calloc(1, (size_t)len + 1);
	assert_non_null(c->text);
	assert_int_equal(fread(c->text, 1, (size_t)len, c->f), (size_t)len);
	fclose(c->f);
	/* show the lines in the test's output too */
	fputs(c->text, stderr);
}

static const char *field(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : "";
}

/*
 * Lines at level whose msg contains msg_sub and whose "file" field
 * contains file_sub (NULL: any).
 */
static int count_lines(const struct captured *c, const char *level,
		       const char *msg_sub, const char *file_sub)
{
	char *copy = strdup(c->text), *line, *next;
	int count = 0;
	cJSON *o;

	assert_non_null(copy);
	for (line = copy; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		o = cJSON_Parse(line);
		if (!o)
			fail_msg("log line is not JSON: %s", line);
		if (!strcmp(field(o, "level"), level) &&
		    strstr(field(o, "msg"), msg_sub) &&
		    (!file_sub || strstr(field(o, "file"), file_sub)))
			count++;
		cJSON_Delete(o);
	}
	free(copy);
	return count;
}

static int count_all_lines(const struct captured *c)
{
	int n = 0;
	const char *s;

	for (s = c->text; *s; s++)
		n += *s == '\n';
	return n;
}

/* Open the host on the case's directory and load it, capturing the log. */
static int fx_load(struct fx *fx, struct captured *c)
{
	int rc;

	if (!fx->p)
		assert_int_equal(tq_plugins_open(&fx->p, &fx->cfg), 0);
	capture_begin(c);
	rc = tq_plugins_load(fx->p);
	capture_end(c);
	return rc;
}

/* ---- one file --------------------------------------------------------- */

static int load_one(struct fx *fx, const char *file, struct tq_plugin **pl,
		    char *err, size_t errlen)
{
	char path[PATH_MAX];

	fx_path(fx, file, path, sizeof(path));
	return tq_plugin_load_file(path, NULL, pl, err, errlen);
}

static void test_file_good(void **state)
{
	struct fx *fx = *state;
	struct tq_plugin *pl = NULL;
	char err[256] = "";

	add_plugin(fx, "good", "good.so");
	assert_int_equal(load_one(fx, "good.so", &pl, err, sizeof(err)), 0);
	assert_non_null(pl);
	assert_string_equal(pl->name, "good");
	assert_string_equal(pl->version, "1.2.3");
	assert_non_null(strstr(pl->path, "/good.so"));
	assert_true(pl->inited);
	assert_non_null(pl->user_data);
	assert_int_equal(pl->desc->n_types, 2);
	assert_string_equal(pl->desc->types[0].name, "test.good");
	assert_trace(fx, "good init\n");
	tq_plugin_free(pl);
	assert_trace(fx, "good init\ngood fini\n");
	tq_plugin_free(NULL);
}

static void expect_refused(struct fx *fx, const char *name, const char *sub1,
			   const char *sub2)
{
	struct tq_plugin *pl = (struct tq_plugin *)1;
	char file[64], err[256] = "";
	int n;

	n = snprintf(file, sizeof(file), "%s.so", name);
	assert_true(n > 0 && (size_t)n < sizeof(file));
	add_plugin(fx, name, file);
	assert_true(load_one(fx, file, &pl, err, sizeof(err)) < 0);
	assert_null(pl);
	if (!strstr(err, sub1) || (sub2 && !strstr(err, sub2)))
		fail_msg("%s: unexpected reason \"%s\"", name, err);
}

static void test_file_wrong_abi(void **state)
{
	/* both versions named, nothing past the stamp read */
	expect_refused(*state, "wrong_abi", "ABI 2.0", "taskqd supports 1.x");
}

static void test_file_short_descriptor(void **state)
{
	expect_refused(*state, "short_desc", "descriptor of 8 bytes", "ABI 1.0");
}

static void test_file_null_descriptor(void **state)
{
	expect_refused(*state, "null_desc", "returned NULL", NULL);
}

static void test_file_no_symbol(void **state)
{
	expect_refused(*state, "no_symbol", "no taskq_plugin_describe symbol",
		       "build it with TASKQ_PLUGIN()");
}

static void test_file_bad_name(void **state)
{
	expect_refused(*state, "bad_name", "\"Bad Name\"", "[a-z0-9_-]{1,64}");
}

static void test_file_init_fail(void **state)
{
	struct fx *fx = *state;

	expect_refused(fx, "init_fail", "init failed", "no widget configured");
	assert_trace(fx, "init_fail init\n");
}

static void test_file_not_elf(void **state)
{
	struct fx *fx = *state;
	struct tq_plugin *pl = NULL;
	char path[PATH_MAX], err[256] = "";

	fx_path(fx, "text.so", path, sizeof(path));
	write_file(path, "this is not an ELF object\n");
	assert_int_equal(tq_plugin_load_file(path, NULL, &pl, err, sizeof(err)),
			 -ENOEXEC);
	assert_null(pl);
	assert_non_null(strstr(err, "cannot load"));
}

static void test_file_not_regular(void **state)
{
	struct fx *fx = *state;
	struct tq_plugin *pl = NULL;
	char path[PATH_MAX], err[256] = "";

	fx_path(fx, "sub.so", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(tq_plugin_load_file(path, NULL, &pl, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "not a regular file");

	fx_path(fx, "missing.so", path, sizeof(path));
	assert_int_equal(tq_plugin_load_file(path, NULL, &pl, err, sizeof(err)),
			 -ENOENT);
	assert_null(pl);
}

/* ---- a directory ------------------------------------------------------ */

static void test_dir_good(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t;
	struct tq_registry *r;
	struct captured c;

	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	assert_int_equal(count_lines(&c, "info", "plugin loaded", "good.so"), 1);
	assert_int_equal(count_lines(&c, "info", "1.2.3", NULL), 1);
	assert_int_equal(count_lines(&c, "info", "test.good,test.good.retry", NULL), 1);
	assert_int_equal(count_lines(&c, "warn", "", NULL), 0);
	/* host->log() without a job from init() is tied to the plugin */
	assert_int_equal(count_lines(&c, "info", "good plugin ready, answer 42", NULL), 1);
	assert_non_null(strstr(c.text, "\"plugin\":\"good\""));
	free(c.text);

	r = tq_plugins_acquire(fx->p);
	assert_int_equal(tq_registry_count(r), 2);
	/* sorted by name */
	assert_string_equal(tq_registry_at(r, 0)->name, "test.good");
	assert_string_equal(tq_registry_at(r, 1)->name, "test.good.retry");
	assert_null(tq_registry_at(r, 2));

	t = tq_registry_find(r, "test.good");
	assert_non_null(t);
	assert_string_equal(t->name, "test.good");
	assert_string_equal(t->plugin->name, "good");
	assert_string_equal(t->plugin->version, "1.2.3");
	assert_int_equal(t->def->max_attempts, 3);
	assert_int_equal(t->def->timeout_s, 5);
	assert_non_null(t->def->handler);
	assert_ptr_equal(tq_registry_find(r, "test.good.retry")->plugin, t->plugin);
	assert_null(tq_registry_find(r, "test"));
	assert_null(tq_registry_find(r, "test.good.retryx"));
	assert_null(tq_registry_find(r, "echo"));
	tq_registry_release(r);

	/* fini once, at close */
	assert_trace(fx, "good init\n");
	tq_plugins_close(fx->p);
	fx->p = NULL;
	assert_trace(fx, "good init\ngood fini\n");
}

static void test_empty_before_load(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r;

	assert_int_equal(tq_plugins_open(&fx->p, &fx->cfg), 0);
	r = tq_plugins_acquire(fx->p);
	assert_non_null(r);
	assert_int_equal(tq_registry_count(r), 0);
	assert_null(tq_registry_find(r, "test.good"));
	tq_registry_release(r);
	tq_registry_release(NULL);
}

static void test_dir_config_block(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t;
	struct tq_registry *r;
	struct taskq_job job;
	struct captured c;

	fx_config(fx, "plugin = { good = { answer = 7; }; other = { answer = 9; }; };");
	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	free(c.text);

	r = tq_plugins_acquire(fx->p);
	t = tq_registry_find(r, "test.good");
	assert_non_null(t);
	tq_job_init(&job, JOB_ID, "test.good", "{}", 1, tq_now_ms() + 5000);
	assert_int_equal(t->def->handler(&tq_host, &job, t->plugin->user_data),
			 TASKQ_DONE);
	assert_string_equal(job.result, "{\"answer\":7}");
	tq_job_clear(&job);

	t = tq_registry_find(r, "test.good.retry");
	assert_non_null(t);
	tq_job_init(&job, JOB_ID, "test.good.retry", "{}", 1, 0);
	assert_int_equal(t->def->handler(&tq_host, &job, t->plugin->user_data),
			 TASKQ_RETRY);
	assert_string_equal(job.error, "try again later");
	assert_true(job.has_retry_after);
	assert_int_equal(job.retry_after_s, 7);
	tq_job_clear(&job);
	tq_registry_release(r);
}

static void test_dir_bad_config_block(void **state)
{
	struct fx *fx = *state;
	struct captured c;

	/* the plugin's init refuses a string where it wants an integer */
	fx_config(fx, "plugin = { good = { answer = \"seven\"; }; };");
	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 0);
	assert_int_equal(count_lines(&c, "warn", "\"answer\" must be an integer",
				     "good.so"), 1);
	free(c.text);
}

static void test_dir_duplicate_type(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r;
	struct captured c;

	add_plugin(fx, "good", "good.so");
	add_plugin(fx, "good_dup", "good_dup.so");
	assert_int_equal(fx_load(fx, &c), 2);
	assert_int_equal(count_lines(&c, "warn", "plugin skipped", NULL), 1);
	assert_int_equal(count_lines(&c, "warn",
				     "type \"test.good\" already registered by plugin \"good\"",
				     "good_dup.so"),
			 1);
	free(c.text);

	r = tq_plugins_acquire(fx->p);
	assert_int_equal(tq_registry_count(r), 2);
	assert_string_equal(tq_registry_find(r, "test.good")->plugin->name, "good");
	/* the whole plugin is skipped, its other type too */
	assert_null(tq_registry_find(r, "test.good.dup"));
	tq_registry_release(r);
	/* and it was never initialised */
	assert_trace(fx, "good init\n");
}

static void test_dir_duplicate_type_order(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r;
	struct captured c;

	/* names decide the order: here the duplicate comes first and wins */
	add_plugin(fx, "good_dup", "a_dup.so");
	add_plugin(fx, "good", "b_good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	assert_int_equal(count_lines(&c, "warn",
				     "already registered by plugin \"good_dup\"",
				     "b_good.so"),
			 1);
	free(c.text);
	r = tq_plugins_acquire(fx->p);
	assert_string_equal(tq_registry_find(r, "test.good")->plugin->name,
			    "good_dup");
	assert_non_null(tq_registry_find(r, "test.good.dup"));
	assert_null(tq_registry_find(r, "test.good.retry"));
	tq_registry_release(r);
	assert_trace(fx, "good_dup init\n");
}

static void test_dir_duplicate_name(void **state)
{
	struct fx *fx = *state;
	struct captured c;

	add_plugin(fx, "good", "a.so");
	add_plugin(fx, "good", "b.so");
	assert_int_equal(fx_load(fx, &c), 2);
	assert_int_equal(count_lines(&c, "warn", "plugin \"good\" already loaded from",
				     "b.so"),
			 1);
	free(c.text);
	assert_trace(fx, "good init\n");
}

static void test_dir_not_elf(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX];
	struct captured c;

	fx_path(fx, "junk.so", path, sizeof(path));
	write_file(path, "#!/bin/sh\necho not a plugin\n");
	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	assert_int_equal(count_lines(&c, "warn", "plugin skipped: cannot load",
				     "junk.so"),
			 1);
	assert_int_equal(count_lines(&c, "warn", "", NULL), 1);
	free(c.text);
}

static void test_dir_init_fail(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r;
	struct captured c;

	add_plugin(fx, "init_fail", "init_fail.so");
	assert_int_equal(fx_load(fx, &c), 0);
	assert_int_equal(count_lines(&c, "warn", "init failed: no widget configured",
				     "init_fail.so"),
			 1);
	free(c.text);
	r = tq_plugins_acquire(fx->p);
	assert_int_equal(tq_registry_count(r), 0);
	assert_null(tq_registry_find(r, "test.init_fail"));
	tq_registry_release(r);
}

static void test_dir_mix(void **state)
{
	static const char *const bad[] = {
		"good_dup", "wrong_abi", "short_desc", "null_desc",
		"no_symbol", "bad_name", "init_fail",
	};
	struct fx *fx = *state;
	char path[PATH_MAX], file[64];
	struct tq_registry *r;
	struct captured c;
	size_t i;

	add_plugin(fx, "good", "good.so");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(snprintf(file, sizeof(file), "%s.so", bad[i]) > 0);
		add_plugin(fx, bad[i], file);
	}
	fx_path(fx, "junk.so", path, sizeof(path));
	write_file(path, "junk");
	fx_path(fx, "dir.so", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	fx_path(fx, "README", path, sizeof(path));
	write_file(path, "not a .so, not even looked at");
	fx_path(fx, ".hidden.so", path, sizeof(path));
	write_file(path, "hidden files are not looked at");

	assert_int_equal(fx_load(fx, &c), 2);
	/* one line per refused file, naming it */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(snprintf(file, sizeof(file), "/%s.so", bad[i]) > 0);
		if (count_lines(&c, "warn", "plugin skipped", file) != 1)
			fail_msg("expected one line for %s", file);
	}
	assert_int_equal(count_lines(&c, "warn", "plugin skipped", "/junk.so"), 1);
	assert_int_equal(count_lines(&c, "warn", "not a regular file", "/dir.so"), 1);
	assert_int_equal(count_lines(&c, "warn", "plugin skipped", NULL), 9);
	assert_int_equal(count_lines(&c, "info", "plugin loaded", "/good.so"), 1);
	assert_null(strstr(c.text, "README"));
	assert_null(strstr(c.text, "hidden"));
	/* + good's own line from init */
	assert_int_equal(count_all_lines(&c), 11);
	free(c.text);

	r = tq_plugins_acquire(fx->p);
	assert_int_equal(tq_registry_count(r), 2);
	assert_string_equal(tq_registry_find(r, "test.good")->plugin->name, "good");
	tq_registry_release(r);
	assert_trace(fx, "good init\ninit_fail init\n");
}

static void test_registry_snapshots(void **state)
{
	struct fx *fx = *state;
	struct tq_registry *r1, *r2, *r3;
	const struct tq_type *t1;
	char missing[PATH_MAX + 16];
	struct captured c;

	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	free(c.text);
	r1 = tq_plugins_acquire(fx->p);
	r2 = tq_plugins_acquire(fx->p);
	assert_ptr_equal(r1, r2);
	tq_registry_release(r2);
	t1 = tq_registry_find(r1, "test.good");
	assert_non_null(t1);

	/* a reload publishes a new snapshot; the old one stays usable */
	add_plugin(fx, "good_dup", "good_dup.so");
	assert_int_equal(fx_load(fx, &c), 2);
	free(c.text);
	r3 = tq_plugins_acquire(fx->p);
	assert_ptr_not_equal(r1, r3);
	assert_ptr_equal(tq_registry_find(r1, "test.good"), t1);
	assert_string_equal(t1->plugin->name, "good");
	assert_non_null(tq_registry_find(r3, "test.good"));
	tq_registry_release(r1);
	tq_registry_release(r3);

	/* an unreadable directory keeps the current registry */
	snprintf(missing, sizeof(missing), "%s/missing", fx->dir);
	fx->cfg.plugin_dir = missing;
	assert_int_equal(tq_plugins_load(fx->p), -ENOENT);
	fx->cfg.plugin_dir = fx->dir;
	r1 = tq_plugins_acquire(fx->p);
	assert_int_equal(tq_registry_count(r1), 2);
	tq_registry_release(r1);

	/* the unchanged file kept its plugin: one init, one fini at close */
	tq_plugins_close(fx->p);
	fx->p = NULL;
	assert_trace(fx, "good init\ngood fini\n");
}

struct reader {
	struct tq_plugins *p;
	atomic_int *stop;
	atomic_long found;
	atomic_long missing;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	const struct tq_type *t;
	struct tq_registry *r;

	while (!atomic_load(rd->stop)) {
		r = tq_plugins_acquire(rd->p);
		t = tq_registry_find(r, "test.good");
		if (t && !strcmp(t->plugin->name, "good"))
			atomic_fetch_add(&rd->found, 1);
		else
			atomic_fetch_add(&rd->missing, 1);
		tq_registry_release(r);
	}
	return NULL;
}

static void test_registry_concurrent(void **state)
{
	struct fx *fx = *state;
	struct reader rd[4];
	pthread_t th[4];
	atomic_int stop;
	struct captured c;
	size_t i;
	int k;

	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	free(c.text);
	atomic_init(&stop, 0);
	for (i = 0; i < 4; i++) {
		rd[i].p = fx->p;
		rd[i].stop = &stop;
		atomic_init(&rd[i].found, 0);
		atomic_init(&rd[i].missing, 0);
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
	}
	/* swap snapshots under the readers' feet */
	for (k = 0; k < 20; k++) {
		assert_int_equal(fx_load(fx, &c), 2);
		free(c.text);
	}
	/* every reader got going (bounded wait) */
	for (i = 0, k = 0; i < 4 && k < 5000; k++) {
		if (atomic_load(&rd[i].found) > 0)
			i++;
		else
			usleep(1000);
	}
	atomic_store(&stop, 1);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(atomic_load(&rd[i].missing), 0);
		assert_true(atomic_load(&rd[i].found) > 0);
	}
}

static void test_insecure(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX];
	struct captured c;

	add_plugin(fx, "good", "good.so");
	fx_path(fx, "good.so", path, sizeof(path));

	/* a file anyone may replace is refused */
	assert_int_equal(chmod(path, 0777), 0);
	assert_int_equal(fx_load(fx, &c), 0);
	assert_int_equal(count_lines(&c, "warn", "writable by everyone", "good.so"), 1);
	free(c.text);
	assert_int_equal(chmod(path, 0755), 0);

	/* so is a directory anyone may write to */
	assert_int_equal(chmod(fx->dir, 0777), 0);
	assert_int_equal(fx_load(fx, &c), -EPERM);
	assert_int_equal(count_lines(&c, "error", "writable by everyone", NULL), 1);
	free(c.text);

	/* unless the operator says so */
	fx->cfg.plugin_allow_insecure = true;
	assert_int_equal(fx_load(fx, &c), 2);
	free(c.text);
	assert_int_equal(chmod(fx->dir, 0700), 0);
}

static void test_validate(void **state)
{
	struct fx *fx = *state;
	const struct tq_type *t;
	struct tq_registry *r;
	struct captured c;
	char err[128];

	add_plugin(fx, "good", "good.so");
	assert_int_equal(fx_load(fx, &c), 2);
	free(c.text);
	r = tq_plugins_acquire(fx->p);
	t = tq_registry_find(r, "test.good");
	assert_non_null(t);
	err[0] = 'X';
	assert_int_equal(tq_type_validate(t, "{\"x\":1}", err, sizeof(err)), 0);
	/* the validator got the plugin's user_data, or it would say so */
	assert_int_equal(tq_type_validate(t, "{\"reject\":true}", err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "rejected on request");

	/* no validator: everything is accepted */
	t = tq_registry_find(r, "test.good.retry");
	assert_non_null(t);
	assert_null(t->def->validate);
	assert_int_equal(tq_type_validate(t, "{\"reject\":true}", err, sizeof(err)), 0);
	tq_registry_release(r);
}

/* ---- the bundled plugins ---------------------------------------------- */

struct bundled {
	struct tq_config cfg;
	struct tq_plugins *p;
	struct tq_registry *r;
};

static int bundled_setup(void **state)
{
	struct bundled *b = calloc(1, sizeof(*b));
	int rc;

	assert_non_null(b);
	b->cfg.plugin_dir = (char *)env_dir("TASKQ_TEST_BUNDLED_PLUGIN_DIR");
	config_init(&b->cfg.lc);
	assert_int_equal(tq_plugins_open(&b->p, &b->cfg), 0);
	rc = tq_plugins_load(b->p);
	assert_true(rc >= 3);
	b->r = tq_plugins_acquire(b->p);
	*state = b;
	return 0;
}

static int bundled_teardown(void **state)
{
	struct bundled *b = *state;

	tq_registry_release(b->r);
	tq_plugins_close(b->p);
	config_destroy(&b->cfg.lc);
	free(b);
	return 0;
}

static const struct tq_type *bundled_type(void **state, const char *name)
{
	struct bundled *b = *state;
	const struct tq_type *t = tq_registry_find(b->r, name);

	if (!t)
		fail_msg("bundled type \"%s\" not registered", name);
	return t;
}

static enum taskq_outcome run(const struct tq_type *t, struct taskq_job *job,
			      const char *payload, int attempt,
			      int64_t deadline_ms)
{
	tq_job_init(job, JOB_ID, t->name, payload, attempt, deadline_ms);
	return t->def->handler(&tq_host, job, t->plugin->user_data);
}

static void assert_json_equal(const char *got, const char *want)
{
	cJSON *a = cJSON_Parse(got), *b = cJSON_Parse(want);

	assert_non_null(a);
	assert_non_null(b);
	if (!cJSON_Compare(a, b, 1))
		fail_msg("JSON differs: got %s, want %s", got, want);
	cJSON_Delete(a);
	cJSON_Delete(b);
}

static void expect_invalid(const struct tq_type *t, const char *payload,
			   const char *sub)
{
	char err[256] = "";

	if (tq_type_validate(t, payload, err, sizeof(err)) != -EINVAL)
		fail_msg("%s accepted %s", t->name, payload);
	if (!strstr(err, sub))
		fail_msg("%s: reason for %s is \"%s\", wanted \"%s\"", t->name,
			 payload, err, sub);
}

static void expect_valid(const struct tq_type *t, const char *payload)
{
	char err[256] = "";

	if (tq_type_validate(t, payload, err, sizeof(err)) != 0)
		fail_msg("%s refused %s: %s", t->name, payload, err);
}

static void test_bundled_echo(void **state)
{
	const struct tq_type *t = bundled_type(state, "echo");
	const char *payload = "{\"hello\":\"world\",\"n\":[1,2.5,null],\"ok\":true}";
	struct taskq_job job;

	assert_string_equal(t->plugin->name, "echo");
	assert_int_equal(run(t, &job, payload, 1, 0), TASKQ_DONE);
	assert_string_equal(job.result, payload);
	assert_null(job.error);
	tq_job_clear(&job);

	assert_int_equal(run(t, &job, "\"just a string\"", 2, 0), TASKQ_DONE);
	assert_string_equal(job.result, "\"just a string\"");
	tq_job_clear(&job);
}

static void test_bundled_flaky(void **state)
{
	const struct tq_type *t = bundled_type(state, "flaky");
	const char *payload = "{\"fail_times\": 2}";
	struct taskq_job job;

	assert_int_equal(run(t, &job, payload, 1, 0), TASKQ_RETRY);
	assert_string_equal(job.error, "flaky failure on attempt 1 of 2");
	assert_null(job.result);
	tq_job_clear(&job);
	assert_int_equal(run(t, &job, payload, 2, 0), TASKQ_RETRY);
	assert_string_equal(job.error, "flaky failure on attempt 2 of 2");
	tq_job_clear(&job);
	assert_int_equal(run(t, &job, payload, 3, 0), TASKQ_DONE);
	assert_json_equal(job.result, "{\"attempts\":3}");
	assert_null(job.error);
	tq_job_clear(&job);

	assert_int_equal(run(t, &job, "{\"fail_times\":0}", 1, 0), TASKQ_DONE);
	assert_json_equal(job.result, "{\"attempts\":1}");
	tq_job_clear(&job);

	assert_int_equal(run(t, &job, "{\"fail_times\":1,\"permanent\":true}", 1, 0),
			 TASKQ_FAIL);
	assert_non_null(strstr(job.error, "flaky failure on attempt 1 of 1"));
	tq_job_clear(&job);
	assert_int_equal(run(t, &job, "{\"fail_times\":1,\"permanent\":false}", 1, 0),
			 TASKQ_RETRY);
	tq_job_clear(&job);

	expect_valid(t, "{\"fail_times\":0}");
	expect_valid(t, "{\"fail_times\":1000,\"permanent\":true}");
	expect_invalid(t, "[]", "JSON object");
	expect_invalid(t, "{}", "\"fail_times\" is required");
	expect_invalid(t, "{\"fail_times\":\"2\"}", "\"fail_times\" must be an integer");
	expect_invalid(t, "{\"fail_times\":-1}", "\"fail_times\" must be an integer");
	expect_invalid(t, "{\"fail_times\":1.5}", "\"fail_times\" must be an integer");
	expect_invalid(t, "{\"fail_times\":1001}", "\"fail_times\" must be an integer");
	expect_invalid(t, "{\"fail_times\":1,\"permanent\":\"yes\"}",
		       "\"permanent\" must be true or false");

	/* a payload the validator would refuse fails the attempt for good */
	assert_int_equal(run(t, &job, "{}", 1, 0), TASKQ_FAIL);
	assert_non_null(strstr(job.error, "fail_times"));
	tq_job_clear(&job);
}

static void test_bundled_sleep(void **state)
{
	const struct tq_type *t = bundled_type(state, "sleep");
	struct taskq_job job;
	int64_t start, took;

	expect_invalid(t, "{\"ms\":-1}", "\"ms\" must be an integer from 0 to 3600000");
	expect_invalid(t, "{\"ms\":3600001}", "\"ms\" must be an integer");
	expect_invalid(t, "{\"ms\":1.5}", "\"ms\" must be an integer");
	expect_invalid(t, "{\"ms\":\"10\"}", "\"ms\" must be a number");
	expect_invalid(t, "{}", "\"ms\" is required");
	expect_invalid(t, "[1]", "JSON object");
	expect_invalid(t, "not json", "JSON object");
	expect_valid(t, "{\"ms\":0}");
	expect_valid(t, "{\"ms\":3600000}");

	start = tq_now_ms();
	assert_int_equal(run(t, &job, "{\"ms\":30}", 1, tq_now_ms() + 10000),
			 TASKQ_DONE);
	took = tq_now_ms() - start;
	assert_true(took >= 30);
	assert_json_equal(job.result, "{\"slept_ms\":30}");
	assert_int_equal(job.progress, 100);
	tq_job_clear(&job);

	assert_int_equal(run(t, &job, "{\"ms\":0}", 1, 0), TASKQ_DONE);
	assert_json_equal(job.result, "{\"slept_ms\":0}");
	tq_job_clear(&job);

	/* the timeout passes: the handler notices within its slice */
	start = tq_now_ms();
	assert_int_equal(run(t, &job, "{\"ms\":3600000}", 1, tq_now_ms() + 50),
			 TASKQ_RETRY);
	took = tq_now_ms() - start;
	assert_true(took >= 50 && took < 2000);
	assert_non_null(job.error);
	assert_true(strncmp(job.error, "cancelled", 9) == 0);
	assert_non_null(strstr(job.error, "timeout"));
	assert_null(job.result);
	tq_job_clear(&job);

	/* cancelled: stops right away */
	tq_job_init(&job, JOB_ID, "sleep", "{\"ms\":3600000}", 1, 0);
	atomic_store(&job.cancelled, 1);
	start = tq_now_ms();
	assert_int_equal(t->def->handler(&tq_host, &job, t->plugin->user_data),
			 TASKQ_RETRY);
	assert_true(tq_now_ms() - start < 1000);
	assert_true(strncmp(job.error, "cancelled", 9) == 0);
	tq_job_clear(&job);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
#define B(fn) cmocka_unit_test_setup_teardown(fn, bundled_setup, bundled_teardown)
	const struct CMUnitTest tests[] = {
		T(test_file_good),
		T(test_file_wrong_abi),
		T(test_file_short_descriptor),
		T(test_file_null_descriptor),
		T(test_file_no_symbol),
		T(test_file_bad_name),
		T(test_file_init_fail),
		T(test_file_not_elf),
		T(test_file_not_regular),
		T(test_empty_before_load),
		T(test_dir_good),
		T(test_dir_config_block),
		T(test_dir_bad_config_block),
		T(test_dir_duplicate_type),
		T(test_dir_duplicate_type_order),
		T(test_dir_duplicate_name),
		T(test_dir_not_elf),
		T(test_dir_init_fail),
		T(test_dir_mix),
		T(test_registry_snapshots),
		T(test_registry_concurrent),
		T(test_insecure),
		T(test_validate),
		B(test_bundled_echo),
		B(test_bundled_flaky),
		B(test_bundled_sleep),
	};
#undef T
#undef B

	tq_log_set_level(TQ_LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
