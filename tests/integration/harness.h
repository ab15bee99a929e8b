/*
 * harness.h - end-to-end test harness: a real taskqd against the real
 * private PostgreSQL and Redis.
 *
 * One test program = one fresh database (taskq_t_<name>_<pid>, created from
 * TASKQ_TEST_PG_URL and dropped at the end) and one temporary directory
 * holding the plugin directory (symlinks to the bundled plugins and to the
 * "record" test plugin), the record file and one config file and log file
 * per daemon.  Every daemon gets a free port and a random Redis key prefix.
 *
 * Use it from cmocka like this:
 *
 *     static int group_setup(void **s) { return th_group_setup("api"); }
 *     static int group_teardown(void **s) { return th_group_teardown(); }
 *     ...
 *     cmocka_unit_test_setup_teardown(test_x, th_case_setup, th_case_teardown)
 *
 * and end every test body with th_case_passed(): th_case_teardown() prints
 * the tail of every daemon log when a case did not get there, then kills
 * the daemons and restarts PostgreSQL if a case stopped it.  Each case runs
 * under a watchdog (alarm) of TH_CASE_TIMEOUT_S; every wait has a deadline.
 *
 * The helpers fail the running test (cmocka fail_msg) on errors of the
 * harness itself; the checks about the daemon's behaviour are left to the
 * tests.  Not thread-safe except th_http() and th_resp_*(), which the load
 * tests call from several threads.
 */
#ifndef TQ_HARNESS_H
#define TQ_HARNESS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#define TH_CASE_TIMEOUT_S 150
#define TH_MAX_DAEMONS 4
#define TH_ID_LEN 37 /* 36 characters of UUID text + NUL */
#define TH_PATH_MAX 512

/* Backoff settings written into every config (the retry tests rely on
 * them). */
#define TH_BACKOFF_BASE_MS 200
#define TH_BACKOFF_CAP_MS 1000

struct th_daemon {
	pid_t pid;      /* 0 once reaped */
	int status;     /* waitpid() status once reaped */
	bool reaped;
	int port;
	char url[64];   /* "http://127.0.0.1:<port>" */
	char prefix[64];
	char conf_path[TH_PATH_MAX];
	char log_path[TH_PATH_MAX];
};

/* ---- fixtures ---- */

/* Check the TASKQ_TEST_* environment (fails loudly when one is missing),
 * make the temp dir and the plugin dir, create the database.  name:
 * [a-z0-9_]{1,20}.  Returns 0 or -1 (with a message on stderr). */
int th_group_setup(const char *name);
/* Kill every daemon, restart PostgreSQL if it was stopped, drop the
 * database, remove the temp dir.  Always returns 0. */
int th_group_teardown(void);
/* Per case: arm the watchdog, empty the jobs table (when it exists) and
 * the record plugin's file. */
int th_case_setup(void **state);
/* Per case: stop the daemons still running with SIGTERM (after a passed
 * case a non-zero exit is an error), report sanitizer lines in their logs
 * as an error, print the logs if the case did not pass, kill what is left,
 * restart PostgreSQL when stopped, disarm the watchdog. */
int th_case_teardown(void **state);
/* Mark the running case as passed (last statement of each test). */
void th_case_passed(void);

/* ---- environment and paths ---- */

/* getenv() that fails the test when the variable is missing or empty. */
const char *th_env(const char *name);
/* URL of this program's database. */
const char *th_db_url(void);
/* The file the record plugin appends to (shared by all daemons). */
const char *th_record_path(void);

/* ---- the daemon ---- */

/*
 * Write a config file, start TASKQ_TEST_TASKQD -c FILE with the
 * environment scrubbed of TASKQ_* variables plus
 * TASKQ_PLUGIN_ALLOW_INSECURE=true and the given "NAME=value" overrides
 * (NULL-terminated), and wait for GET /healthz to answer 200 (20 s).
 * Fails the test when it does not come up.  The daemon belongs to the
 * harness; it is killed in th_case_teardown() at the latest.
 */
struct th_daemon *th_daemon_start(const char *env, ...);
/* As th_daemon_start() with a va_list and a flag: when wait_healthy is
 * false it returns right after the fork. */
struct th_daemon *th_daemon_startv(bool wait_healthy, const char *env,
				   va_list ap);
/* Send sig (0: none, only wait); wait up to timeout_ms for the exit.
 * Returns the exit code (0-255), 128+signal when killed by a signal, or
 * -1 when it did not exit in time (it is then killed with SIGKILL). */
int th_daemon_signal_wait(struct th_daemon *d, int sig, int timeout_ms);
/* SIGTERM and wait (th_daemon_signal_wait()). */
int th_daemon_stop(struct th_daemon *d, int timeout_ms);
/* SIGKILL and reap. */
void th_daemon_kill(struct th_daemon *d);
/* true while the process has not exited (reaps it when it has). */
bool th_daemon_alive(struct th_daemon *d);
/* Print the last lines of the daemon's log to stderr. */
void th_daemon_log_tail(const struct th_daemon *d, int lines);
/* Count log lines that contain needle. */
int th_daemon_log_count(const struct th_daemon *d, const char *needle);

/* ---- HTTP ---- */

struct th_resp {
	long status;   /* 0 on a transport error */
	char *body;    /* NUL-terminated, never NULL after th_http() */
	size_t body_len;
	char *headers; /* raw header block of the final response */
	size_t headers_len;
	cJSON *json;   /* body parsed, or NULL */
	char error[256]; /* transport error */
};

/*
 * One request.  body may be NULL (no body).  content_type NULL sends no
 * Content-Type header at all.  Times out after 20 s.  Returns 0, or -1 on
 * a transport error (resp->status is then 0).  Thread-safe.
 */
int th_http(const struct th_daemon *d, const char *method, const char *path,
	    const char *body, const char *content_type, struct th_resp *resp);
/* th_http() with one more header line ("Name: value"), or none (NULL). */
int th_http_header(const struct th_daemon *d, const char *method, const char *path,
		   const char *body, const char *content_type, const char *header,
		   struct th_resp *resp);
void th_resp_free(struct th_resp *resp);
/* Value of header name (case-insensitive), trimmed, into buf; false when
 * absent. */
bool th_resp_header(const struct th_resp *resp, const char *name, char *buf,
		    size_t len);
/* The "code" of an error body, or "" */
const char *th_resp_code(const struct th_resp *resp);

/* One request on a thread of its own: th_http_start() sends it,
 * th_http_join() waits for its answer in resp. */
struct th_async {
	pthread_t thread;
	const struct th_daemon *d;
	const char *method, *path, *body; /* the caller's, until joined */
	struct th_resp resp;
};
void th_http_start(struct th_async *a, const struct th_daemon *d, const char *method,
		   const char *path, const char *body);
void th_http_join(struct th_async *a);

/* POST /v1/jobs with body; asserts 201 and copies the new id. */
void th_submit(const struct th_daemon *d, const char *body,
	       char id[TH_ID_LEN]);
/* GET /v1/jobs/{id}: the job (caller frees) or NULL when not 200. */
cJSON *th_get_job(const struct th_daemon *d, const char *id);
/*
 * Poll GET /v1/jobs/{id} every 25 ms until its status is status; returns
 * the job (caller frees).  Fails the test at the deadline, or earlier when
 * the job reaches another terminal state.
 */
cJSON *th_wait_status(const struct th_daemon *d, const char *id,
		      const char *status, int timeout_ms);

/* ---- JSON ---- */

/* Member key as a string, or NULL when absent or not a string. */
const char *th_json_str(const cJSON *obj, const char *key);
/* Member key as an integer; fails the test when absent or not a number. */
long long th_json_int(const cJSON *obj, const char *key);

/* ---- SQL (this program's database) ---- */

#define TH_PARAMS(...)                                                         \
	(const char *const[]){ __VA_ARGS__ },                                   \
		(int)(sizeof((const char *const[]){ __VA_ARGS__ }) /            \
		      sizeof(const char *))

/* Run query (reconnecting once if the connection broke); fails the test
 * unless it succeeds.  Caller PQclear()s. */
PGresult *th_sql(const char *query, const char *const *params, int nparams);
/* The single value of a one-row, one-column bigint-compatible query. */
long long th_sql_long(const char *query, const char *const *params,
		      int nparams);
/* The single value as text (malloc'd; NULL for SQL NULL). */
char *th_sql_text(const char *query, const char *const *params, int nparams);
/* SELECT count(*) FROM jobs */
long long th_jobs_count(void);
/* One column of the job row as text (malloc'd; NULL for SQL NULL or no
 * such row). */
char *th_job_field(const char *id, const char *column);

/* Hold a lock on the jobs table that lets readers through and makes
 * every insert wait (LOCK TABLE jobs IN SHARE MODE, in a transaction on a
 * connection of its own); fails the test on error.  th_jobs_unlock()
 * commits it and closes the connection. */
PGconn *th_jobs_lock(void);
void th_jobs_unlock(PGconn *c);
/* Wait up to timeout_ms until at least n sessions wait for a lock;
 * false at the deadline. */
bool th_lock_waiters(int n, int timeout_ms);

/* ---- servers ---- */

/* "$TASKQ_TEST_SERVERS" pg-stop fast / pg-start; fail the test on error.
 * The harness restarts a stopped server in the teardowns. */
void th_pg_stop(void);
void th_pg_start(void);

/* Delete every Redis key of the daemon's prefix (what a Redis restart
 * without persistence or FLUSHALL does to it); returns how many. */
long th_redis_forget(const struct th_daemon *d);
/* How many times the Redis server ran command (lower case, as INFO
 * commandstats names it) since it started; fails the test when INFO fails. */
long th_redis_calls(const char *command);

/* ---- the record plugin's file ----
 *
 * One line per execution: "<job_id> <attempt> <pid> <realtime ms>\n"
 * (see tests/plugins/record.c).
 */
struct th_record {
	char id[TH_ID_LEN];
	int attempt;
	long pid;
	int64_t ms;
};

struct th_records {
	struct th_record *v;
	size_t n;
};

/* Parse the whole file strictly.  Returns 0, -errno when it cannot be
 * read, -EINVAL for a malformed line (its number goes to err). */
int th_records_load(const char *path, struct th_records *out, char *err,
		    size_t errlen);
void th_records_free(struct th_records *r);
/* Number of executions of job id. */
size_t th_records_count(const struct th_records *r, const char *id);
/* Executions of job id in file order, at most max, into out; returns how
 * many there are. */
size_t th_records_of(const struct th_records *r, const char *id,
		     struct th_record *out, size_t max);

/* ---- time ---- */

int64_t th_now_ms(void);  /* CLOCK_MONOTONIC */
int64_t th_wall_ms(void); /* CLOCK_REALTIME */
void th_sleep_ms(int ms);

/* ---- more daemons and server faults (the chaos suite) ---- */

/*
 * Start d again after it exited or was killed (it must be reaped): same
 * config file, port, Redis prefix and log file (appended to), with the
 * given "NAME=value" overrides (NULL-terminated).  Waits for /healthz as
 * th_daemon_start() does; a start-up that exits at once (the port not yet
 * reusable) is tried again a few times before the test fails.
 */
void th_daemon_restart(struct th_daemon *d, const char *env, ...);
/* A second node of peer's deployment: a new daemon (own port, config and
 * log file) sharing peer's Redis prefix, started as th_daemon_start(). */
struct th_daemon *th_daemon_start_peer(const struct th_daemon *peer,
				       const char *env, ...);
/* Run "$TASKQ_TEST_SERVERS" arg1 [arg2] (arg2 may be NULL); returns its
 * exit code or -errno.  No cmocka calls. */
int th_servers(const char *arg1, const char *arg2);
/* "$TASKQ_TEST_SERVERS" pg-stop MODE (fast, smart or immediate); fails
 * the test on error.  The teardowns restart PostgreSQL as after
 * th_pg_stop(). */
void th_pg_stop_mode(const char *mode);

/* Reconnect the harness's own database connection (it breaks when
 * PostgreSQL restarts under it; th_case_setup() uses it). */
void th_db_reset(void);

#endif
