/* Unit tests: configuration defaults, file, environment, every error. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

static const char *const env_vars[] = {
	"TASKQ_DATABASE_URL", "TASKQ_DB_POOL_SIZE", "TASKQ_AUTO_MIGRATE", "TASKQ_REDIS_URL",
	"TASKQ_REDIS_PREFIX", "TASKQ_LISTEN", "TASKQ_API_THREADS", "TASKQ_MAX_BODY_BYTES",
	"TASKQ_WORKERS", "TASKQ_QUEUES", "TASKQ_LEASE_S", "TASKQ_HEARTBEAT_S",
	"TASKQ_SHUTDOWN_GRACE_S", "TASKQ_MAX_ATTEMPTS", "TASKQ_TIMEOUT_S",
	"TASKQ_BACKOFF_BASE_MS", "TASKQ_BACKOFF_CAP_MS", "TASKQ_SCHEDULER_INTERVAL_S",
	"TASKQ_PENDING_REDISPATCH_S", "TASKQ_PLUGIN_DIR", "TASKQ_PLUGIN_ALLOW_INSECURE",
	"TASKQ_LOG_LEVEL",
};

static char path[64];

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
		unsetenv(env_vars[i]);
	return 0;
}

static int remove_file(void **state)
{
	(void)state;
	if (path[0])
		unlink(path);
	path[0] = '\0';
	return clear_env(state);
}

/* Write text to a fresh temp file; its name is in path. */
static const char *write_conf(const char *text)
{
	int fd;
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/taskq-conf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void expect_error(const char *text, const char *expected)
{
	struct tq_config cfg;
	char err[512] = "", want[512];

	if (tq_config_load(&cfg, write_conf(text), err, sizeof(err)) != -EINVAL)
		fail_msg("accepted: %s", text);
	snprintf(want, sizeof(want), "%s:%s", path, expected);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, want);
	unlink(path);
}

static void test_defaults(void **state)
{
	struct tq_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(tq_config_load(&cfg, NULL, err, sizeof(err)), 0);
	assert_string_equal(cfg.database_url, "postgresql://taskq@127.0.0.1:5432/taskq");
	assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
	assert_string_equal(cfg.redis_prefix, "taskq");
	assert_string_equal(cfg.listen_host, "127.0.0.1");
	assert_int_equal(cfg.listen_port, 8080);
	assert_int_equal(cfg.db_pool_size, 8);
	assert_true(cfg.auto_migrate);
	assert_int_equal(cfg.api_threads, 4);
	assert_int_equal(cfg.max_body_bytes, 1048576);
	assert_int_equal(cfg.workers, 4);
	assert_int_equal(cfg.prefetch, 0);
	assert_true(cfg.claim_on_submit);
	assert_string_equal(cfg.queues[0], "default");
	assert_null(cfg.queues[1]);
	assert_int_equal(cfg.lease_s, 30);
	assert_int_equal(cfg.shutdown_grace_s, 30);
	assert_int_equal(cfg.max_attempts, 5);
	assert_int_equal(cfg.timeout_s, 300);
	assert_int_equal(cfg.backoff_base_ms, 1000);
	assert_int_equal(cfg.backoff_cap_ms, 300000);
	assert_string_equal(cfg.plugin_dir, "/usr/lib/taskq");
	assert_false(cfg.plugin_allow_insecure);
	assert_int_equal(cfg.log_level, TQ_LOG_INFO);
	assert_null(tq_config_plugin_block(&cfg, "echo"));
	tq_config_free(&cfg);
}

static void test_file_values_and_plugin_block(void **state)
{
	struct tq_config cfg;
	char err[256];
	const config_setting_t *b;
	const char *s;

	(void)state;
	write_conf("database = { url = \"postgresql://x@h/db\"; pool_size = 3; auto_migrate = false; };\n"
		   "api = { listen = \"0.0.0.0:9000\"; max_body_bytes = 4096; };\n"
		   "workers = { count = 16; prefetch = 32; claim_on_submit = false; queues = [\"mail\", \"default\"]; };\n"
		   "jobs = { max_attempts = 7; backoff_base_ms = 10; backoff_cap_ms = 20; };\n"
		   "log = { level = \"debug\"; };\n"
		   "plugin = { http = { allow = \"example.org\"; }; };\n");
	assert_int_equal(tq_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg.database_url, "postgresql://x@h/db");
	assert_int_equal(cfg.db_pool_size, 3);
	assert_false(cfg.auto_migrate);
	assert_string_equal(cfg.listen_host, "0.0.0.0");
	assert_int_equal(cfg.listen_port, 9000);
	assert_int_equal(cfg.max_body_bytes, 4096);
	assert_int_equal(cfg.workers, 16);
	assert_int_equal(cfg.prefetch, 32);
	assert_false(cfg.claim_on_submit);
	assert_string_equal(cfg.queues[0], "mail");
	assert_string_equal(cfg.queues[1], "default");
	assert_null(cfg.queues[2]);
	assert_int_equal(cfg.max_attempts, 7);
	assert_int_equal(cfg.log_level, TQ_LOG_DEBUG);
	b = tq_config_plugin_block(&cfg, "http");
	assert_non_null(b);
	assert_true(config_setting_lookup_string(b, "allow", &s));
	assert_string_equal(s, "example.org");
	assert_null(tq_config_plugin_block(&cfg, "mail"));
	tq_config_free(&cfg);
}

static void test_environment_overrides_file(void **state)
{
	struct tq_config cfg;
	char err[256];

	(void)state;
	write_conf("database = { url = \"postgresql://file/db\"; };\n"
		   "workers = { count = 2; };\n");
	setenv("TASKQ_DATABASE_URL", "postgresql://env/db", 1);
	setenv("TASKQ_REDIS_URL", "redis://env:7000/2", 1);
	setenv("TASKQ_LISTEN", "localhost:8181", 1);
	setenv("TASKQ_PLUGIN_DIR", "/opt/plugins", 1);
	setenv("TASKQ_WORKERS", "9", 1);
	setenv("TASKQ_LOG_LEVEL", "warn", 1);
	setenv("TASKQ_QUEUES", "a, b,,c", 1);
	setenv("TASKQ_AUTO_MIGRATE", "off", 1);
	setenv("TASKQ_LEASE_S", "5", 1);
	assert_int_equal(tq_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg.database_url, "postgresql://env/db");
	assert_string_equal(cfg.redis_url, "redis://env:7000/2");
	assert_string_equal(cfg.listen_host, "localhost");
	assert_int_equal(cfg.listen_port, 8181);
	assert_string_equal(cfg.plugin_dir, "/opt/plugins");
	assert_int_equal(cfg.workers, 9);
	assert_int_equal(cfg.log_level, TQ_LOG_WARN);
	assert_string_equal(cfg.queues[0], "a");
	assert_string_equal(cfg.queues[1], "b");
	assert_string_equal(cfg.queues[2], "c");
	assert_null(cfg.queues[3]);
	assert_false(cfg.auto_migrate);
	assert_int_equal(cfg.lease_s, 5);
	tq_config_free(&cfg);
}

static void expect_env_error(const char *var, const char *value, const char *expected)
{
	struct tq_config cfg;
	char err[512] = "";

	setenv(var, value, 1);
	assert_int_equal(tq_config_load(&cfg, NULL, err, sizeof(err)), -EINVAL);
	if (strstr(err, expected) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, expected);
	unsetenv(var);
}

static void test_environment_errors(void **state)
{
	(void)state;
	expect_env_error("TASKQ_WORKERS", "0", "TASKQ_WORKERS: workers.count must be an integer from 1 to 1024");
	expect_env_error("TASKQ_WORKERS", "4x", "TASKQ_WORKERS: workers.count must be an integer");
	expect_env_error("TASKQ_WORKERS", "", "TASKQ_WORKERS: workers.count must be an integer");
	expect_env_error("TASKQ_PREFETCH", "-1", "TASKQ_PREFETCH: workers.prefetch must be an integer from 0 to 1024");
	expect_env_error("TASKQ_LOG_LEVEL", "loud", "TASKQ_LOG_LEVEL: log.level must be one of error, warn, info, debug");
	expect_env_error("TASKQ_AUTO_MIGRATE", "maybe", "TASKQ_AUTO_MIGRATE: database.auto_migrate must be true or false");
	expect_env_error("TASKQ_DATABASE_URL", "", "TASKQ_DATABASE_URL: database.url must not be empty");
	expect_env_error("TASKQ_QUEUES", " , ", "TASKQ_QUEUES: workers.queues must name at least one queue");
	expect_env_error("TASKQ_LISTEN", "8080", "api.listen must be host:port");
	expect_env_error("TASKQ_LISTEN", "h:70000", "api.listen must be host:port");
	expect_env_error("TASKQ_MAX_BODY_BYTES", "10", "TASKQ_MAX_BODY_BYTES: api.max_body_bytes must be an integer from 256");
}

static void test_file_errors(void **state)
{
	(void)state;
	expect_error("database = { url = 5; };\n", "1: database.url must be a string");
	expect_error("\n\nworkers = { count = 0; };\n", "3: workers.count must be an integer from 1 to 1024");
	expect_error("workers = { cuont = 3; };\n", "1: unknown setting 'workers.cuont'");
	expect_error("\nfoo = { };\n", "2: unknown setting 'foo'");
	expect_error("api = 3;\n", "1: api must be a group");
	expect_error("api = { listen = \"nohost\"; };\n", " api.listen must be host:port");
	expect_error("database = { auto_migrate = \"yes\"; };\n", "1: database.auto_migrate must be true or false");
	expect_error("workers = { queues = []; };\n", "1: workers.queues must name at least one queue");
	expect_error("log = { level = \"verbose\"; };\n", "1: log.level must be one of");
	expect_error("jobs = { backoff_base_ms = 5000; backoff_cap_ms = 10; };\n",
		     " jobs.backoff_base_ms (5000) must not exceed jobs.backoff_cap_ms (10)");
	expect_error("plugin = 4;\n", "1: plugin must be a group");
	/* a syntax error names the line libconfig found it on */
	expect_error("database = {\n url = \n};\n", "3: syntax error");
}

static void test_missing_file(void **state)
{
	struct tq_config cfg;
	char err[512] = "";

	(void)state;
	assert_int_equal(tq_config_load(&cfg, "/nonexistent/taskq.conf", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/nonexistent/taskq.conf: cannot read the file"));
}

static void test_shipped_config_parses(void **state)
{
	const char *src = getenv("TASKQ_TEST_SOURCE_DIR");
	struct tq_config cfg;
	char file[1024], err[512] = "";

	(void)state;
	assert_non_null(src);
	snprintf(file, sizeof(file), "%s/etc/taskq.conf", src);
	if (tq_config_load(&cfg, file, err, sizeof(err)) != 0)
		fail_msg("etc/taskq.conf: %s", err);
	assert_int_equal(cfg.workers, 4);
	tq_config_free(&cfg);
	snprintf(file, sizeof(file), "%s/etc/taskq-dev.conf", src);
	if (tq_config_load(&cfg, file, err, sizeof(err)) != 0)
		fail_msg("etc/taskq-dev.conf: %s", err);
	tq_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, clear_env, remove_file),
		cmocka_unit_test_setup_teardown(test_file_values_and_plugin_block, clear_env, remove_file),
		cmocka_unit_test_setup_teardown(test_environment_overrides_file, clear_env, remove_file),
		cmocka_unit_test_setup_teardown(test_environment_errors, clear_env, remove_file),
		cmocka_unit_test_setup_teardown(test_file_errors, clear_env, remove_file),
		cmocka_unit_test_setup_teardown(test_missing_file, clear_env, remove_file),
		cmocka_unit_test_setup_teardown(test_shipped_config_parses, clear_env, remove_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
