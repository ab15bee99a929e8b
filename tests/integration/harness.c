/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>

extern char **environ;

#define TH_BODY_MAX (16u * 1024 * 1024)
#define TH_HEADERS_MAX (64u * 1024)
#define TH_HTTP_TIMEOUT_MS 20000L
#define TH_HEALTHY_TIMEOUT_MS 20000
#define TH_SERVERS_TIMEOUT_MS 90000
#define TH_LOG_TAIL_LINES 60

static struct {
	bool ready;
	char name[32];
	const char *pg_admin_url;
	const char *redis_url;
	const char *servers;
	const char *taskqd;
	const char *test_plugins;
	const char *bundled_plugins;
	char db_name[64];
	char db_url[1024];
	bool db_created;
	PGconn *db;
	char dir[TH_PATH_MAX];
	char plugin_dir[TH_PATH_MAX];
	char record_path[TH_PATH_MAX];
	char prefix_stem[32];
	int seq;
	struct th_daemon daemons[TH_MAX_DAEMONS];
	bool used[TH_MAX_DAEMONS];
	volatile sig_atomic_t pg_stopped;
	bool case_ok;
	bool curl_ready;
} th;

/* ---- time ---- */

int64_t th_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t th_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- small helpers ---- */

static int th_fmt(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int th_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

const char *th_env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		fail_msg("environment variable %s is not set (run the tests "
			 "through `make test`, or export it)", name);
	return v;
}

static const char *th_env_required(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v) {
		fprintf(stderr,
			"harness: environment variable %s is not set (run the "
			"tests through `make test`, or export it)\n", name);
		return NULL;
	}
	return v;
}

const char *th_db_url(void)
{
	return th.db_url;
}

const char *th_record_path(void)
{
	return th.record_path;
}

/* A libconfig string literal cannot hold these without escaping. */
static bool th_conf_safe(const char *s)
{
	return !strpbrk(s, "\"\\\n");
}

/* admin URL "postgresql://u@h:p/postgres?x" -> same with /dbname. */
static int th_url_with_db(const char *admin, const char *db, char *out,
			  size_t len)
{
	const char *scheme = strstr(admin, "://");
	const char *path, *query;

	if (!scheme)
		return -EINVAL;
	path = strchr(scheme + 3, '/');
	query = strchr(scheme + 3, '?');
	if (query && path && path > query)
		path = NULL;
	if (!path)
		path = query ? query : admin + strlen(admin);
	if (!query)
		query = "";
	return th_fmt(out, len, "%.*s/%s%s", (int)(path - admin), admin, db,
		      query);
}

static int th_random_hex(char *out, size_t bytes)
{
	unsigned char buf[16];
	size_t i;

	if (bytes > sizeof(buf))
		return -EINVAL;
	if (getrandom(buf, bytes, 0) != (ssize_t)bytes)
		return -errno;
	for (i = 0; i < bytes; i++)
		snprintf(out + 2 * i, 3, "%02x", buf[i]);
	return 0;
}

/* ---- child processes ---- */

/* Wait for pid up to timeout_ms; returns 0 with *status, or -ETIMEDOUT. */
static int th_wait_pid(pid_t pid, int *status, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (th_now_ms() >= deadline)
			return -ETIMEDOUT;
		th_sleep_ms(10);
	}
}

/* Run "$TASKQ_TEST_SERVERS" arg1 [arg2]; returns its exit code or -errno. */
static int th_run_servers(const char *arg1, const char *arg2)
{
	char *argv[4];
	int status;
	pid_t pid;
	int r;

	argv[0] = (char *)th.servers;
	argv[1] = (char *)arg1;
	argv[2] = (char *)arg2;
	argv[3] = NULL;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		execv(th.servers, argv);
		_exit(127);
	}
	r = th_wait_pid(pid, &status, TH_SERVERS_TIMEOUT_MS);
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return r;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -ECHILD;
}

void th_pg_stop(void)
{
	int r;

	th.pg_stopped = 1;
	r = th_run_servers("pg-stop", "fast");
	if (r != 0)
		fail_msg("servers pg-stop fast failed: %d", r);
}

void th_pg_start(void)
{
	int r = th_run_servers("pg-start", NULL);

	if (r != 0)
		fail_msg("servers pg-start failed: %d", r);
	th.pg_stopped = 0;
}

/* Restart PostgreSQL when a case left it stopped; no cmocka calls. */
static void th_pg_ensure_started(void)
{
	int r;

	if (!th.pg_stopped)
		return;
	r = th_run_servers("pg-start", NULL);
	if (r != 0)
		fprintf(stderr, "harness: cannot restart PostgreSQL: %d\n", r);
	else
		th.pg_stopped = 0;
}

/* ---- watchdog ---- */

static void th_watchdog(int sig)
{
	static const char msg[] =
		"\nharness: watchdog: test case exceeded its time limit, "
		"killing taskqd\n";
	char *argv[3];
	pid_t pid;
	int i;

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing else to do */
	}
	for (i = 0; i < TH_MAX_DAEMONS; i++)
		if (th.used[i] && th.daemons[i].pid > 0)
			kill(th.daemons[i].pid, SIGKILL);
	if (th.pg_stopped) {
		argv[0] = (char *)th.servers;
		argv[1] = (char *)"pg-start";
		argv[2] = NULL;
		pid = fork();
		if (pid == 0) {
			execv(th.servers, argv);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	_exit(3);
}

/* ---- SQL ---- */

static void th_ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *th_connect(const char *url)
{
	const char *keys[] = { "dbname", "connect_timeout", NULL };
	const char *vals[] = { url, "5", NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (c)
		PQsetNoticeProcessor(c, th_ignore_notice, NULL);
	return c;
}

static int th_admin_exec(const char *sql)
{
	PGconn *c = th_connect(th.pg_admin_url);
	PGresult *res = NULL;
	int r = 0;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "harness: cannot connect to %s: %s",
			th.pg_admin_url, PQerrorMessage(c));
		r = -ECONNREFUSED;
		goto out;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(c));
		r = -EIO;
	}
out:
	PQclear(res);
	PQfinish(c);
	return r;
}

PGresult *th_sql(const char *query, const char *const *params, int nparams)
{
	PGresult *res = NULL;
	ExecStatusType st;
	int try;

	for (try = 0; try < 2; try++) {
		if (!th.db) {
			th.db = th_connect(th.db_url);
		} else if (PQstatus(th.db) != CONNECTION_OK) {
			PQreset(th.db);
		}
		PQclear(res);
		res = PQexecParams(th.db, query, nparams, NULL, params, NULL,
				   NULL, 0);
		st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			return res;
		if (PQstatus(th.db) == CONNECTION_OK)
			break;
	}
	fail_msg("sql \"%s\": %s", query, PQerrorMessage(th.db));
	PQclear(res);
	return NULL;
}

char *th_sql_text(const char *query, const char *const *params, int nparams)
{
	PGresult *res = th_sql(query, params, nparams);
	char *v = NULL;

	if (PQntuples(res) > 1 || PQnfields(res) != 1) {
		PQclear(res);
		fail_msg("sql \"%s\": expected one value", query);
	}
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		v = strdup(PQgetvalue(res, 0, 0));
		assert_non_null(v);
	}
	PQclear(res);
	return v;
}

long long th_sql_long(const char *query, const char *const *params,
		      int nparams)
{
	char *s = th_sql_text(query, params, nparams);
	char *end;
	long long v;

	if (!s)
		fail_msg("sql \"%s\": NULL or no row", query);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end) {
		free(s);
		fail_msg("sql \"%s\": not an integer", query);
	}
	free(s);
	return v;
}

long long th_jobs_count(void)
{
	return th_sql_long("SELECT count(*) FROM jobs", NULL, 0);
}

char *th_job_field(const char *id, const char *column)
{
	char q[256];
	const char *p;

	for (p = column; *p; p++)
		if (!(islower((unsigned char)*p) || *p == '_'))
			fail_msg("bad column name %s", column);
	if (th_fmt(q, sizeof(q),
		   "SELECT %s::text FROM jobs WHERE id::text = $1", column))
		fail_msg("column name too long");
	return th_sql_text(q, TH_PARAMS(id));
}

/* ---- Redis clean-up ---- */

static int th_redis_del_matching(const char *pattern);

static void th_redis_cleanup(void)
{
	char match[64];

	if (!th_fmt(match, sizeof(match), "%s*", th.prefix_stem))
		th_redis_del_matching(match);
}

PGconn *th_jobs_lock(void)
{
	PGconn *c = th_connect(th.db_url);
	PGresult *res;

	if (PQstatus(c) != CONNECTION_OK) {
		fail_msg("cannot connect to %s: %s", th.db_url, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	res = PQexec(c, "BEGIN; LOCK TABLE jobs IN SHARE MODE");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fail_msg("cannot lock the jobs table: %s", PQerrorMessage(c));
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

void th_jobs_unlock(PGconn *c)
{
	PGresult *res = PQexec(c, "COMMIT");
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	PQfinish(c);
	if (!ok)
		fail_msg("cannot release the lock on the jobs table");
}

bool th_lock_waiters(int n, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;

	do {
		if (th_sql_long("SELECT count(*) FROM pg_stat_activity "
				"WHERE datname = current_database() AND wait_event_type = 'Lock'",
				NULL, 0) >= n)
			return true;
		th_sleep_ms(20);
	} while (th_now_ms() < deadline);
	return false;
}

long th_redis_forget(const struct th_daemon *d)
{
	char match[96];

	if (th_fmt(match, sizeof(match), "%s*", d->prefix))
		fail_msg("prefix too long");
	return th_redis_del_matching(match);
}

/* A connection to the test Redis (TASKQ_TEST_REDIS_URL), or NULL. */
static redisContext *th_redis_connect(void)
{
	char host[256] = "127.0.0.1";
	const char *p = th.redis_url, *h, *colon, *end;
	long port = 6379;
	char *num_end;
	redisContext *rc;
	struct timeval tv = { .tv_sec = 3 };

	if (strncmp(p, "redis://", 8) != 0)
		return NULL;
	h = p + 8;
	if (strchr(h, '@'))
		h = strchr(h, '@') + 1;
	end = h + strcspn(h, "/?");
	colon = memchr(h, ':', (size_t)(end - h));
	if (colon) {
		port = strtol(colon + 1, &num_end, 10);
		if (num_end == colon + 1 || port <= 0 || port > 65535)
			return NULL;
	} else {
		colon = end;
	}
	if ((size_t)(colon - h) >= sizeof(host) || colon == h)
		return NULL;
	memcpy(host, h, (size_t)(colon - h));
	host[colon - h] = '\0';

	rc = redisConnectWithTimeout(host, (int)port, tv);
	if (rc && rc->err) {
		redisFree(rc);
		rc = NULL;
	}
	return rc;
}

long th_redis_calls(const char *command)
{
	redisContext *rc = th_redis_connect();
	redisReply *rep;
	char key[64];
	const char *at;
	long calls = 0;

	if (!rc)
		fail_msg("cannot connect to redis at %s", th.redis_url);
	rep = redisCommand(rc, "INFO commandstats");
	if (!rep || rep->type != REDIS_REPLY_STRING) {
		freeReplyObject(rep);
		redisFree(rc);
		fail_msg("redis INFO commandstats failed");
	}
	if (th_fmt(key, sizeof(key), "\ncmdstat_%s:calls=", command))
		fail_msg("command name too long");
	at = strstr(rep->str, key);
	if (at)
		calls = strtol(at + strlen(key), NULL, 10);
	freeReplyObject(rep);
	redisFree(rc);
	return calls;
}

/* DEL every key matching pattern; the count, or -1. */
static int th_redis_del_matching(const char *pattern)
{
	redisContext *rc = th_redis_connect();
	redisReply *rep = NULL, *del;
	char cursor[32] = "0";
	size_t i;
	int deleted = -1;

	if (!rc)
		goto out;
	deleted = 0;
	do {
		rep = redisCommand(rc, "SCAN %s MATCH %s COUNT 1000", cursor,
				   pattern);
		if (!rep || rep->type != REDIS_REPLY_ARRAY ||
		    rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING)
			goto out;
		snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
		for (i = 0; i < rep->element[1]->elements; i++) {
			del = redisCommand(rc, "DEL %s",
					   rep->element[1]->element[i]->str);
			if (del && del->type == REDIS_REPLY_INTEGER)
				deleted += (int)del->integer;
			freeReplyObject(del);
		}
		freeReplyObject(rep);
		rep = NULL;
	} while (strcmp(cursor, "0") != 0);
out:
	freeReplyObject(rep);
	if (rc)
		redisFree(rc);
	return deleted;
}

/* ---- fixtures ---- */

static int th_make_plugin_dir(void)
{
	static const char *const bundled[] = { "echo.so", "sleep.so",
					       "flaky.so" };
	char src[TH_PATH_MAX], dst[TH_PATH_MAX];
	struct stat st;
	size_t i;

	if (th_fmt(th.plugin_dir, sizeof(th.plugin_dir), "%s/plugins", th.dir))
		return -ENAMETOOLONG;
	if (mkdir(th.plugin_dir, 0700) < 0)
		return -errno;
	for (i = 0; i <= sizeof(bundled) / sizeof(bundled[0]); i++) {
		const char *file = i < sizeof(bundled) / sizeof(bundled[0]) ?
					   bundled[i] : "record.so";
		const char *from = i < sizeof(bundled) / sizeof(bundled[0]) ?
					   th.bundled_plugins : th.test_plugins;

		if (th_fmt(src, sizeof(src), "%s/%s", from, file) ||
		    th_fmt(dst, sizeof(dst), "%s/%s", th.plugin_dir, file))
			return -ENAMETOOLONG;
		if (stat(src, &st) < 0) {
			fprintf(stderr, "harness: plugin %s is missing: %s\n",
				src, strerror(errno));
			return -ENOENT;
		}
		if (symlink(src, dst) < 0)
			return -errno;
	}
	return 0;
}

static int th_group_setup_inner(const char *name)
{
	char sql[256], hex[17];
	const char *tmp;
	const char *p;
	int r;

	memset(&th, 0, sizeof(th));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, th_watchdog);

	if (strlen(name) > 20 || !*name)
		return -1;
	for (p = name; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
		      *p == '_'))
			return -1;
	snprintf(th.name, sizeof(th.name), "%s", name);

	if (!(th.pg_admin_url = th_env_required("TASKQ_TEST_PG_URL")) ||
	    !(th.redis_url = th_env_required("TASKQ_TEST_REDIS_URL")) ||
	    !(th.servers = th_env_required("TASKQ_TEST_SERVERS")) ||
	    !(th.taskqd = th_env_required("TASKQ_TEST_TASKQD")) ||
	    !(th.test_plugins = th_env_required("TASKQ_TEST_PLUGIN_DIR")) ||
	    !(th.bundled_plugins =
		      th_env_required("TASKQ_TEST_BUNDLED_PLUGIN_DIR")))
		return -1;
	if (access(th.taskqd, X_OK) < 0) {
		fprintf(stderr, "harness: %s is not executable: %s\n",
			th.taskqd, strerror(errno));
		return -1;
	}
	if (!th_conf_safe(th.redis_url) || !th_conf_safe(th.pg_admin_url)) {
		fprintf(stderr, "harness: URLs with quotes are not supported\n");
		return -1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "harness: curl_global_init failed\n");
		return -1;
	}
	th.curl_ready = true;

	if (th_random_hex(hex, 4) < 0)
		return -1;
	snprintf(th.prefix_stem, sizeof(th.prefix_stem), "tqt_%s", hex);

	tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (th_fmt(th.dir, sizeof(th.dir), "%s/taskq-e2e-%s-XXXXXX", tmp,
		   name) || !mkdtemp(th.dir)) {
		fprintf(stderr, "harness: cannot make a temp dir: %s\n",
			strerror(errno));
		th.dir[0] = '\0';
		return -1;
	}
	if (th_fmt(th.record_path, sizeof(th.record_path), "%s/record.log",
		   th.dir) ||
	    !th_conf_safe(th.dir))
		return -1;
	r = th_make_plugin_dir();
	if (r < 0) {
		fprintf(stderr, "harness: cannot make the plugin dir: %s\n",
			strerror(-r));
		return -1;
	}
	th.ready = true;

	snprintf(th.db_name, sizeof(th.db_name), "taskq_t_%s_%ld", name,
		 (long)getpid());
	if (th_url_with_db(th.pg_admin_url, th.db_name, th.db_url,
			   sizeof(th.db_url))) {
		fprintf(stderr, "harness: cannot build a URL from %s\n",
			th.pg_admin_url);
		return -1;
	}
	if (th_fmt(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)",
		   th.db_name) || th_admin_exec(sql) < 0)
		return -1;
	if (th_fmt(sql, sizeof(sql), "CREATE DATABASE \"%s\"", th.db_name) ||
	    th_admin_exec(sql) < 0)
		return -1;
	th.db_created = true;
	th.db = th_connect(th.db_url);
	if (PQstatus(th.db) != CONNECTION_OK) {
		fprintf(stderr, "harness: cannot connect to %s: %s", th.db_url,
			PQerrorMessage(th.db));
		return -1;
	}
	return 0;
}

int th_group_setup(const char *name)
{
	if (th_group_setup_inner(name) == 0)
		return 0;
	/* cmocka skips the group teardown when the setup fails */
	th_group_teardown();
	return -1;
}

static void th_kill_all(void)
{
	int i;

	for (i = 0; i < TH_MAX_DAEMONS; i++) {
		if (!th.used[i])
			continue;
		th_daemon_kill(&th.daemons[i]);
		th.used[i] = false;
	}
}

static void th_rm_dir(void)
{
	char path[TH_PATH_MAX];
	int i;

	if (!th.dir[0])
		return;
	if (th.plugin_dir[0]) {
		static const char *const files[] = { "echo.so", "sleep.so",
						     "flaky.so", "record.so" };
		size_t k;

		for (k = 0; k < sizeof(files) / sizeof(files[0]); k++)
			if (!th_fmt(path, sizeof(path), "%s/%s", th.plugin_dir,
				    files[k]))
				unlink(path);
		rmdir(th.plugin_dir);
	}
	if (th.record_path[0])
		unlink(th.record_path);
	for (i = 1; i <= th.seq; i++) {
		if (!th_fmt(path, sizeof(path), "%s/taskqd-%d.log", th.dir, i))
			unlink(path);
		if (!th_fmt(path, sizeof(path), "%s/taskqd-%d.conf", th.dir, i))
			unlink(path);
	}
	if (rmdir(th.dir) < 0)
		fprintf(stderr, "harness: left %s behind: %s\n", th.dir,
			strerror(errno));
}

int th_group_teardown(void)
{
	char sql[256];

	alarm(0);
	th_kill_all();
	th_pg_ensure_started();
	if (th.db) {
		PQfinish(th.db);
		th.db = NULL;
	}
	if (th.db_created &&
	    !th_fmt(sql, sizeof(sql),
		    "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", th.db_name))
		th_admin_exec(sql);
	if (th.prefix_stem[0] && th.redis_url)
		th_redis_cleanup();
	th_rm_dir();
	if (th.curl_ready)
		curl_global_cleanup();
	/* idempotent: a second call finds nothing to undo */
	memset(&th, 0, sizeof(th));
	return 0;
}

int th_case_setup(void **state)
{
	PGresult *res = NULL;
	int r = 0;

	(void)state;
	if (!th.ready)
		return -1;
	th.case_ok = false;
	alarm(TH_CASE_TIMEOUT_S);
	for (int try = 0; try < 2; try++) {
		/* a restart of the server in the last case shows only now */
		if (PQstatus(th.db) != CONNECTION_OK)
			PQreset(th.db);
		PQclear(res);
		res = PQexec(th.db, "DO $$ BEGIN IF to_regclass('jobs') IS NOT NULL "
				    "THEN TRUNCATE jobs; END IF; END $$");
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			break;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "harness: cannot empty the jobs table: %s",
			PQerrorMessage(th.db));
		r = -1;
	}
	PQclear(res);
	if (th.record_path[0] && unlink(th.record_path) < 0 && errno != ENOENT) {
		fprintf(stderr, "harness: cannot remove %s: %s\n", th.record_path,
			strerror(errno));
		r = -1;
	}
	return r;
}

/* Sanitizer reports in a daemon's log: errors even when the case passed. */
static int th_sanitizer_reports(const struct th_daemon *d)
{
	static const char *const needles[] = { "AddressSanitizer",
					       "LeakSanitizer",
					       "runtime error:" };
	size_t i;
	int n = 0, c;

	for (i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
		c = th_daemon_log_count(d, needles[i]);
		if (c > 0)
			n += c;
	}
	return n;
}

int th_case_teardown(void **state)
{
	struct th_daemon *d;
	int i, code, r = 0;

	(void)state;
	for (i = 0; i < TH_MAX_DAEMONS; i++) {
		if (!th.used[i])
			continue;
		d = &th.daemons[i];
		/* A daemon the case left running must still stop cleanly
		 * (this is also when LeakSanitizer reports). */
		if (th.case_ok && !d->reaped && !th.pg_stopped) {
			code = th_daemon_stop(d, 20000);
			if (code != 0) {
				fprintf(stderr, "harness: taskqd did not exit "
					"cleanly on SIGTERM: %d\n", code);
				th.case_ok = false;
				r = -1;
			}
		}
		if (th_sanitizer_reports(d) > 0) {
			fprintf(stderr, "harness: sanitizer reports in %s\n",
				d->log_path);
			th.case_ok = false;
			r = -1;
		}
	}
	if (!th.case_ok)
		for (i = 0; i < TH_MAX_DAEMONS; i++)
			if (th.used[i])
				th_daemon_log_tail(&th.daemons[i],
						   TH_LOG_TAIL_LINES);
	th_kill_all();
	th_pg_ensure_started();
	alarm(0);
	return r;
}

void th_case_passed(void)
{
	th.case_ok = true;
}

/* ---- the daemon ---- */

static int th_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int th_write_config(struct th_daemon *d)
{
	FILE *f = fopen(d->conf_path, "we");
	int r = 0;

	if (!f)
		return -errno;
	fprintf(f,
		"# written by the end-to-end test harness\n"
		"database = { url = \"%s\"; pool_size = 4; auto_migrate = true; };\n"
		"redis = { url = \"%s\"; prefix = \"%s\"; };\n"
		"api = { listen = \"127.0.0.1:%d\"; threads = 4; };\n"
		"workers = { count = 4; lease_s = 30; shutdown_grace_s = 10; };\n"
		"jobs = { max_attempts = 3; timeout_s = 60; backoff_base_ms = %d;"
		" backoff_cap_ms = %d; };\n"
		"scheduler = { interval_s = 1; pending_redispatch_s = 5; };\n"
		"plugins = { dir = \"%s\"; allow_insecure = true; };\n"
		"log = { level = \"debug\"; };\n"
		"plugin = { record = { file = \"%s\"; }; };\n",
		th.db_url, th.redis_url, d->prefix, d->port, TH_BACKOFF_BASE_MS,
		TH_BACKOFF_CAP_MS, th.plugin_dir, th.record_path);
	if (ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && !r)
		r = -errno;
	return r;
}

/* environ without TASKQ_*, then fixed and given overrides.  The array
 * and its strings are malloc'd (strings borrowed from environ/args). */
static char **th_build_env(const char *first, va_list ap)
{
	static const char allow[] = "TASKQ_PLUGIN_ALLOW_INSECURE=true";
	size_t n = 0, cap, i;
	char **envp;
	const char *s;
	va_list aq;

	for (i = 0; environ[i]; i++)
		n++;
	cap = n + 2;
	va_copy(aq, ap);
	for (s = first; s; s = va_arg(aq, const char *))
		cap++;
	va_end(aq);
	envp = calloc(cap, sizeof(*envp));
	if (!envp)
		return NULL;
	n = 0;
	for (i = 0; environ[i]; i++)
		if (strncmp(environ[i], "TASKQ_", 6) != 0)
			envp[n++] = environ[i];
	envp[n++] = (char *)allow;
	for (s = first; s; s = va_arg(ap, const char *))
		envp[n++] = (char *)s;
	envp[n] = NULL;
	return envp;
}

static bool th_healthy(const struct th_daemon *d)
{
	struct th_resp resp;
	bool ok;

	th_http(d, "GET", "/healthz", NULL, NULL, &resp);
	ok = resp.status == 200;
	th_resp_free(&resp);
	return ok;
}

/*
 * Fork and exec taskqd -c d->conf_path with the environment built from
 * env and ap, its stdout and stderr appended to d->log_path, stdin from
 * /dev/null; it dies with this process.  Returns its pid; fails the test
 * when it cannot fork.
 */
static pid_t th_exec_taskqd(const struct th_daemon *d, const char *env, va_list ap)
{
	char *argv[4];
	char **envp;
	pid_t parent = getpid(), pid;
	int fd;

	envp = th_build_env(env, ap);
	assert_non_null(envp);
	argv[0] = (char *)th.taskqd;
	argv[1] = (char *)"-c";
	argv[2] = (char *)d->conf_path;
	argv[3] = NULL;

	pid = fork();
	if (pid < 0) {
		free(envp);
		fail_msg("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		sigset_t none;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0)
			_exit(126);
		if (fd > 2)
			close(fd);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0 && fd != 0) {
			dup2(fd, 0);
			close(fd);
		}
		execve(th.taskqd, argv, envp);
		_exit(127);
	}
	free(envp);
	return pid;
}

struct th_daemon *th_daemon_startv(bool wait_healthy, const char *env,
				   va_list ap)
{
	struct th_daemon *d = NULL;
	char hex[9];
	pid_t pid;
	int64_t deadline;
	int i, port;

	for (i = 0; i < TH_MAX_DAEMONS; i++)
		if (!th.used[i])
			break;
	if (i == TH_MAX_DAEMONS)
		fail_msg("more than %d daemons in one case", TH_MAX_DAEMONS);
	d = &th.daemons[i];
	memset(d, 0, sizeof(*d));

	port = th_free_port();
	if (port <= 0)
		fail_msg("no free port: %s", strerror(-port));
	d->port = port;
	th.seq++;
	if (th_random_hex(hex, 4) < 0 ||
	    th_fmt(d->url, sizeof(d->url), "http://127.0.0.1:%d", port) ||
	    th_fmt(d->prefix, sizeof(d->prefix), "%s_%d_%s", th.prefix_stem,
		   th.seq, hex) ||
	    th_fmt(d->conf_path, sizeof(d->conf_path), "%s/taskqd-%d.conf",
		   th.dir, th.seq) ||
	    th_fmt(d->log_path, sizeof(d->log_path), "%s/taskqd-%d.log",
		   th.dir, th.seq))
		fail_msg("path too long");
	if (th_write_config(d) < 0)
		fail_msg("cannot write %s", d->conf_path);

	pid = th_exec_taskqd(d, env, ap);
	d->pid = pid;
	th.used[i] = true;
	if (!wait_healthy)
		return d;

	deadline = th_now_ms() + TH_HEALTHY_TIMEOUT_MS;
	for (;;) {
		if (!th_daemon_alive(d)) {
			fail_msg("taskqd exited during start-up (status 0x%x)",
				 d->status);
		}
		if (th_healthy(d))
			return d;
		if (th_now_ms() >= deadline) {
			fail_msg("taskqd did not answer /healthz within %d ms",
				 TH_HEALTHY_TIMEOUT_MS);
		}
		th_sleep_ms(50);
	}
}

struct th_daemon *th_daemon_start(const char *env, ...)
{
	struct th_daemon *d;
	va_list ap;

	va_start(ap, env);
	d = th_daemon_startv(true, env, ap);
	va_end(ap);
	return d;
}

static int th_status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

bool th_daemon_alive(struct th_daemon *d)
{
	pid_t r;

	if (d->reaped)
		return false;
	r = waitpid(d->pid, &d->status, WNOHANG);
	if (r == d->pid) {
		d->reaped = true;
		d->pid = 0;
		return false;
	}
	return true;
}

int th_daemon_signal_wait(struct th_daemon *d, int sig, int timeout_ms)
{
	if (d->reaped)
		return th_status_code(d->status);
	kill(d->pid, sig);
	if (th_wait_pid(d->pid, &d->status, timeout_ms) < 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &d->status, 0);
		d->reaped = true;
		d->pid = 0;
		return -1;
	}
	d->reaped = true;
	d->pid = 0;
	return th_status_code(d->status);
}

int th_daemon_stop(struct th_daemon *d, int timeout_ms)
{
	return th_daemon_signal_wait(d, SIGTERM, timeout_ms);
}

void th_daemon_kill(struct th_daemon *d)
{
	if (d->reaped || d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	while (waitpid(d->pid, &d->status, 0) < 0 && errno == EINTR)
		;
	d->reaped = true;
	d->pid = 0;
}

void th_daemon_log_tail(const struct th_daemon *d, int lines)
{
	FILE *f = fopen(d->log_path, "re");
	char *line = NULL;
	size_t cap = 0;
	long *offs = NULL;
	long total = 0, i;
	ssize_t n;

	if (!f) {
		fprintf(stderr, "harness: no log %s\n", d->log_path);
		return;
	}
	offs = calloc((size_t)lines, sizeof(*offs));
	if (!offs)
		goto out;
	for (;;) {
		long pos = ftell(f);

		n = getline(&line, &cap, f);
		if (n < 0)
			break;
		offs[total % lines] = pos;
		total++;
	}
	fprintf(stderr, "---- last %d of %ld lines of %s ----\n",
		total < lines ? (int)total : lines, total, d->log_path);
	i = total < lines ? 0 : total - lines;
	if (total > 0 && fseek(f, offs[i % lines], SEEK_SET) == 0)
		while ((n = getline(&line, &cap, f)) >= 0)
			fputs(line, stderr);
	fprintf(stderr, "---- end of %s ----\n", d->log_path);
out:
	free(offs);
	free(line);
	fclose(f);
}

int th_daemon_log_count(const struct th_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log_path, "re");
	char *line = NULL;
	size_t cap = 0;
	int count = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) >= 0)
		if (strstr(line, needle))
			count++;
	free(line);
	fclose(f);
	return count;
}

/* ---- HTTP ---- */

struct th_buf {
	char *p;
	size_t len;
	size_t max;
	bool overflow;
};

static int th_buf_add(struct th_buf *b, const char *data, size_t n)
{
	char *np;

	if (b->len + n > b->max) {
		b->overflow = true;
		return -1;
	}
	np = realloc(b->p, b->len + n + 1);
	if (!np)
		return -1;
	b->p = np;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static size_t th_on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	return th_buf_add(ud, data, size * nmemb) < 0 ? 0 : size * nmemb;
}

static size_t th_on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct th_buf *b = ud;
	size_t n = size * nmemb;

	/* A new status line starts the block of another response. */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		b->len = 0;
	return th_buf_add(b, data, n) < 0 ? 0 : n;
}

int th_http(const struct th_daemon *d, const char *method, const char *path,
	    const char *body, const char *content_type, struct th_resp *resp)
{
	return th_http_header(d, method, path, body, content_type, NULL, resp);
}

int th_http_header(const struct th_daemon *d, const char *method, const char *path,
		   const char *body, const char *content_type, const char *header,
		   struct th_resp *resp)
{
	struct th_buf bb = { .max = TH_BODY_MAX }, hb = { .max = TH_HEADERS_MAX };
	struct curl_slist *hdrs = NULL, *tmp;
	char url[1024], ct[256];
	CURL *c = NULL;
	CURLcode cc;
	int r = -1;

	memset(resp, 0, sizeof(*resp));
	if (th_fmt(url, sizeof(url), "%s%s", d->url, path) ||
	    th_fmt(ct, sizeof(ct), "Content-Type:%s%s", content_type ? " " : "",
		   content_type ? content_type : "")) {
		snprintf(resp->error, sizeof(resp->error), "url too long");
		goto out;
	}
	c = curl_easy_init();
	if (!c) {
		snprintf(resp->error, sizeof(resp->error), "curl_easy_init");
		goto out;
	}
	tmp = curl_slist_append(hdrs, "Expect:");
	if (tmp)
		hdrs = tmp;
	tmp = curl_slist_append(hdrs, ct);
	if (tmp)
		hdrs = tmp;
	if (header) {
		tmp = curl_slist_append(hdrs, header);
		if (tmp)
			hdrs = tmp;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TH_HTTP_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, th_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &bb);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, th_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
	if (body || strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body ? strlen(body) : 0));
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	if (cc != CURLE_OK) {
		snprintf(resp->error, sizeof(resp->error), "%s %s: %s", method,
			 path, curl_easy_strerror(cc));
		if (resp->status == 0)
			goto out;
	}
	r = 0;
out:
	if (!bb.p)
		bb.p = calloc(1, 1);
	resp->body = bb.p;
	resp->body_len = bb.len;
	resp->headers = hb.p ? hb.p : calloc(1, 1);
	resp->headers_len = hb.len;
	if (resp->body && bb.len > 0)
		resp->json = cJSON_ParseWithLength(resp->body, bb.len);
	curl_slist_free_all(hdrs);
	if (c)
		curl_easy_cleanup(c);
	return r;
}

static void *th_async_main(void *arg)
{
	struct th_async *a = arg;

	th_http(a->d, a->method, a->path, a->body, a->body ? "application/json" : NULL,
		&a->resp);
	return NULL;
}

void th_http_start(struct th_async *a, const struct th_daemon *d, const char *method,
		   const char *path, const char *body)
{
	memset(a, 0, sizeof(*a));
	a->d = d;
	a->method = method;
	a->path = path;
	a->body = body;
	if (pthread_create(&a->thread, NULL, th_async_main, a) != 0)
		fail_msg("cannot start a thread for %s %s", method, path);
}

void th_http_join(struct th_async *a)
{
	pthread_join(a->thread, NULL);
}

void th_resp_free(struct th_resp *resp)
{
	free(resp->body);
	free(resp->headers);
	cJSON_Delete(resp->json);
	resp->body = NULL;
	resp->headers = NULL;
	resp->json = NULL;
}

bool th_resp_header(const struct th_resp *resp, const char *name, char *buf,
		    size_t len)
{
	const char *p = resp->headers, *eol, *v;
	size_t nlen = strlen(name), vlen;

	if (!p)
		return false;
	for (; *p; p = *eol ? eol + 1 : eol) {
		eol = strchr(p, '\n');
		if (!eol)
			eol = p + strlen(p);
		if ((size_t)(eol - p) <= nlen || p[nlen] != ':' ||
		    strncasecmp(p, name, nlen) != 0)
			continue;
		v = p + nlen + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vlen = (size_t)(eol - v);
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
			vlen--;
		if (vlen >= len)
			vlen = len - 1;
		memcpy(buf, v, vlen);
		buf[vlen] = '\0';
		return true;
	}
	return false;
}

const char *th_resp_code(const struct th_resp *resp)
{
	const char *c = th_json_str(resp->json, "code");

	return c ? c : "";
}

void th_submit(const struct th_daemon *d, const char *body,
	       char id[TH_ID_LEN])
{
	struct th_resp resp;
	const char *s;

	th_http(d, "POST", "/v1/jobs", body, "application/json", &resp);
	if (resp.status != 201) {
		fprintf(stderr, "POST /v1/jobs %s -> %ld %s %s\n", body,
			resp.status, resp.body, resp.error);
		th_resp_free(&resp);
		fail_msg("submission was not accepted");
	}
	s = th_json_str(resp.json, "id");
	if (!s || strlen(s) != TH_ID_LEN - 1) {
		fprintf(stderr, "201 body without an id: %s\n", resp.body);
		th_resp_free(&resp);
		fail_msg("201 without a job id");
	}
	memcpy(id, s, TH_ID_LEN);
	th_resp_free(&resp);
}

cJSON *th_get_job(const struct th_daemon *d, const char *id)
{
	struct th_resp resp;
	char path[128];
	cJSON *job = NULL;

	if (th_fmt(path, sizeof(path), "/v1/jobs/%s", id))
		fail_msg("id too long");
	th_http(d, "GET", path, NULL, NULL, &resp);
	if (resp.status == 200 && cJSON_IsObject(resp.json)) {
		job = resp.json;
		resp.json = NULL;
	}
	th_resp_free(&resp);
	return job;
}

static bool th_terminal(const char *status)
{
	return status && (strcmp(status, "completed") == 0 ||
			  strcmp(status, "failed") == 0 ||
			  strcmp(status, "cancelled") == 0);
}

cJSON *th_wait_status(const struct th_daemon *d, const char *id,
		      const char *status, int timeout_ms)
{
	int64_t deadline = th_now_ms() + timeout_ms;
	cJSON *job = NULL;
	const char *st;
	char *text;

	for (;;) {
		cJSON_Delete(job);
		job = th_get_job(d, id);
		st = th_json_str(job, "status");
		if (st && strcmp(st, status) == 0)
			return job;
		if (th_terminal(st) || th_now_ms() >= deadline)
			break;
		th_sleep_ms(25);
	}
	text = job ? cJSON_PrintUnformatted(job) : NULL;
	fprintf(stderr, "job %s: wanted status %s, last seen: %s\n", id,
		status, text ? text : "(no job)");
	free(text);
	cJSON_Delete(job);
	fail_msg("job %s did not reach status %s within %d ms", id, status,
		 timeout_ms);
	return NULL;
}

/* ---- JSON ---- */

const char *th_json_str(const cJSON *obj, const char *key)
{
	const cJSON *v;

	if (!obj)
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

long long th_json_int(const cJSON *obj, const char *key)
{
	const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) :
			       NULL;

	if (!cJSON_IsNumber(v))
		fail_msg("JSON member \"%s\" is missing or not a number", key);
	return (long long)v->valuedouble;
}

/* ---- record file ---- */

static int th_parse_long(const char **p, char sep, long long min,
			 long long *out)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)**p))
		return -EINVAL;
	errno = 0;
	v = strtoll(*p, &end, 10);
	if (errno || end == *p || *end != sep || v < min)
		return -EINVAL;
	*out = v;
	*p = end + 1;
	return 0;
}

static int th_parse_record(const char *line, struct th_record *rec)
{
	const char *p = line;
	long long v;
	int i;

	for (i = 0; i < TH_ID_LEN - 1; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? p[i] != '-' : !isxdigit((unsigned char)p[i]))
			return -EINVAL;
	}
	if (p[TH_ID_LEN - 1] != ' ')
		return -EINVAL;
	memcpy(rec->id, p, TH_ID_LEN - 1);
	rec->id[TH_ID_LEN - 1] = '\0';
	p += TH_ID_LEN;
	if (th_parse_long(&p, ' ', 1, &v) || v > INT_MAX)
		return -EINVAL;
	rec->attempt = (int)v;
	if (th_parse_long(&p, ' ', 1, &v) || v > LONG_MAX)
		return -EINVAL;
	rec->pid = (long)v;
	if (th_parse_long(&p, '\n', 1, &v))
		return -EINVAL;
	rec->ms = v;
	return *p == '\0' ? 0 : -EINVAL;
}

int th_records_load(const char *path, struct th_records *out, char *err,
		    size_t errlen)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0, alloc = 0, lineno = 0;
	struct th_record *nv;
	int r = 0;

	out->v = NULL;
	out->n = 0;
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT)
			return 0; /* no execution yet */
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		if (out->n == alloc) {
			alloc = alloc ? 2 * alloc : 256;
			nv = realloc(out->v, alloc * sizeof(*nv));
			if (!nv) {
				r = -ENOMEM;
				goto out;
			}
			out->v = nv;
		}
		if (th_parse_record(line, &out->v[out->n]) < 0) {
			snprintf(err, errlen, "%s:%zu: malformed record: %.80s",
				 path, lineno, line);
			r = -EINVAL;
			goto out;
		}
		out->n++;
	}
out:
	free(line);
	fclose(f);
	if (r < 0)
		th_records_free(out);
	return r;
}

void th_records_free(struct th_records *r)
{
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

size_t th_records_count(const struct th_records *r, const char *id)
{
	size_t i, n = 0;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->v[i].id, id) == 0)
			n++;
	return n;
}

size_t th_records_of(const struct th_records *r, const char *id,
		     struct th_record *out, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < r->n; i++) {
		if (strcmp(r->v[i].id, id) != 0)
			continue;
		if (n < max)
			out[n] = r->v[i];
		n++;
	}
	return n;
}

/* ---- more daemons and server faults (the chaos suite) ---- */

#define TH_RESTART_TRIES 5

int th_servers(const char *arg1, const char *arg2)
{
	return th_run_servers(arg1, arg2);
}

void th_pg_stop_mode(const char *mode)
{
	int r;

	th.pg_stopped = 1;
	r = th_run_servers("pg-stop", mode);
	if (r != 0)
		fail_msg("servers pg-stop %s failed: %d", mode, r);
}

/*
 * Fork and exec taskqd for the prepared d (port, url, prefix and paths
 * set, config written) in slot.  Returns 0 once /healthz answers, 1 when
 * the daemon exited during start-up (reaped), and fails the test on the
 * other errors.
 */
static int th_spawn(struct th_daemon *d, int slot, const char *env,
		    va_list ap)
{
	int64_t deadline;
	pid_t pid;

	pid = th_exec_taskqd(d, env, ap);
	d->pid = pid;
	d->reaped = false;
	d->status = 0;
	th.used[slot] = true;

	deadline = th_now_ms() + TH_HEALTHY_TIMEOUT_MS;
	for (;;) {
		if (!th_daemon_alive(d))
			return 1;
		if (th_healthy(d))
			return 0;
		if (th_now_ms() >= deadline) {
			fail_msg("taskqd did not answer /healthz within %d ms",
				 TH_HEALTHY_TIMEOUT_MS);
		}
		th_sleep_ms(50);
	}
}

void th_daemon_restart(struct th_daemon *d, const char *env, ...)
{
	int slot = (int)(d - th.daemons);
	int tries, r = 1;
	va_list ap;

	if (slot < 0 || slot >= TH_MAX_DAEMONS || !th.used[slot])
		fail_msg("th_daemon_restart: not a daemon of this harness");
	if (!d->reaped)
		fail_msg("th_daemon_restart: taskqd %ld is still running",
			 (long)d->pid);
	for (tries = 0; tries < TH_RESTART_TRIES && r == 1; tries++) {
		if (tries > 0)
			th_sleep_ms(500);
		va_start(ap, env);
		r = th_spawn(d, slot, env, ap);
		va_end(ap);
	}
	if (r != 0)
		fail_msg("taskqd exited during start-up %d times (status 0x%x)",
			 TH_RESTART_TRIES, d->status);
}

struct th_daemon *th_daemon_start_peer(const struct th_daemon *peer,
				       const char *env, ...)
{
	struct th_daemon *d;
	va_list ap;
	int i, port, r;

	for (i = 0; i < TH_MAX_DAEMONS; i++)
		if (!th.used[i])
			break;
	if (i == TH_MAX_DAEMONS)
		fail_msg("more than %d daemons in one case", TH_MAX_DAEMONS);
	d = &th.daemons[i];
	memset(d, 0, sizeof(*d));
	port = th_free_port();
	if (port <= 0)
		fail_msg("no free port: %s", strerror(-port));
	d->port = port;
	th.seq++;
	if (th_fmt(d->url, sizeof(d->url), "http://127.0.0.1:%d", port) ||
	    th_fmt(d->prefix, sizeof(d->prefix), "%s", peer->prefix) ||
	    th_fmt(d->conf_path, sizeof(d->conf_path), "%s/taskqd-%d.conf",
		   th.dir, th.seq) ||
	    th_fmt(d->log_path, sizeof(d->log_path), "%s/taskqd-%d.log",
		   th.dir, th.seq))
		fail_msg("path too long");
	if (th_write_config(d) < 0)
		fail_msg("cannot write %s", d->conf_path);
	va_start(ap, env);
	r = th_spawn(d, i, env, ap);
	va_end(ap);
	if (r != 0)
		fail_msg("taskqd exited during start-up (status 0x%x)",
			 d->status);
	return d;
}

void th_db_reset(void)
{
	if (th.db)
		PQreset(th.db);
}
