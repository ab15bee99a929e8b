/*
 * test_store.c - the job store against a real PostgreSQL.
 *
 * A fresh database per run (taskq_t_store_<pid>, created from
 * TASKQ_TEST_PG_URL and dropped at the end).  The restart case runs its own
 * throwaway PostgreSQL (scripts/servers.sh with a private run directory
 * and port), so stopping it disturbs nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "job.h"
#include "migrations.h"
#include "store.h"

#define POOL_SIZE 4

static const char *admin_url;
static char db_name[64];
static char *db_conninfo;
static struct tq_store *store;
static PGconn *sql; /* direct connection to the test database */

/* ---- helpers ------------------------------------------------------ */

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Append " key='value'" to buf with conninfo quoting. */
static int append_kv(char *buf, size_t len, const char *key, const char *val)
{
	size_t o = strlen(buf);
	int n;

	n = snprintf(buf + o, len - o, "%s%s='", o ? " " : "", key);
	if (n < 0 || (size_t)n >= len - o)
		return -1;
	o += (size_t)n;
	for (; *val; val++) {
		if (*val == '\'' || *val == '\\') {
			if (o + 1 >= len)
				return -1;
			buf[o++] = '\\';
		}
		if (o + 1 >= len)
			return -1;
		buf[o++] = *val;
	}
	if (o + 2 >= len)
		return -1;
	buf[o++] = '\'';
	buf[o] = '\0';
	return 0;
}

/* The conninfo of url with dbname (and port, when not NULL) replaced. */
static char *conninfo_for(const char *url, const char *dbname,
			  const char *port)
{
	PQconninfoOption *opts, *o;
	char *errmsg = NULL;
	char buf[2048] = "";

	opts = PQconninfoParse(url, &errmsg);
	if (!opts) {
		fprintf(stderr, "bad TASKQ_TEST_PG_URL: %s\n",
			errmsg ? errmsg : "?");
		PQfreemem(errmsg);
		return NULL;
	}
	for (o = opts; o->keyword; o++) {
		const char *v = o->val;

		if (strcmp(o->keyword, "dbname") == 0)
			v = dbname;
		else if (port && strcmp(o->keyword, "port") == 0)
			v = port;
		if (v && *v && append_kv(buf, sizeof(buf), o->keyword, v) < 0) {
			PQconninfoFree(opts);
			return NULL;
		}
	}
	PQconninfoFree(opts);
	return strdup(buf);
}

static void quiet_notice(void *arg, const char *message)
{
}

static int admin_exec(const char *conninfo, const char *query)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *r;
	int rc = 0;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	r = PQexec(c, query);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "%s: %s", query, PQresultErrorMessage(r));
		rc = -1;
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

static int create_db(const char *name)
{
	char q[256];

	snprintf(q, sizeof(q), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	if (admin_exec(admin_url, q) < 0)
		return -1;
	snprintf(q, sizeof(q), "CREATE DATABASE %s", name);
	return admin_exec(admin_url, q);
}

static void drop_db(const char *name)
{
	char q[256];

	snprintf(q, sizeof(q), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	admin_exec(admin_url, q);
}

/* One value from the test database (malloc'd; NULL for SQL NULL). */
static char *sql_text(const char *query, const char *param)
{
	const char *params[1] = {param};
	PGresult *r;
	char *v = NULL;

	r = PQexecParams(sql, query, param ? 1 : 0, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		fail_msg("%s: %s", query, PQerrorMessage(sql));
	}
	assert_int_equal(PQntuples(r), 1);
	if (!PQgetisnull(r, 0, 0))
		v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static long long sql_long(const char *query, const char *param)
{
	char *v = sql_text(query, param);
	long long n;
	char *end;

	assert_non_null(v);
	n = strtoll(v, &end, 10);
	assert_true(*end == '\0');
	free(v);
	return n;
}

static void sql_exec(const char *query)
{
	PGresult *r = PQexec(sql, query);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		fail_msg("%s: %s", query, PQerrorMessage(sql));
	}
	PQclear(r);
}

/* The SQLSTATE of a statement that must fail ("" when it did not). */
static void sql_fails_with(const char *query, const char *sqlstate)
{
	PGresult *r = PQexec(sql, query);
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	if (!st || strcmp(st, sqlstate) != 0) {
		PQclear(r);
		fail_msg("%s: expected SQLSTATE %s, got %s", query, sqlstate,
			 st ? st : "success");
	}
	PQclear(r);
}

/* A loopback TCP port nobody listens on (right now). */
static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd, port;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static void spec_init(struct tq_job_spec *spec, const char *type,
		      const char *payload)
{
	memset(spec, 0, sizeof(*spec));
	spec->type = (char *)type;
	spec->payload = (char *)payload;
	spec->queue = (char *)"default";
	spec->max_attempts = 3;
	spec->timeout_s = 30;
}

/* Insert and return the id; asserts success. */
static void insert_ok(const struct tq_job_spec *spec, char id[37],
		      int expect_pending)
{
	char *json = NULL;
	int pending = -1;

	assert_int_equal(tq_store_insert(store, spec, id, &json, &pending), 0);
	assert_non_null(json);
	assert_int_equal(pending, expect_pending);
	free(json);
}

static cJSON *get_job(const char *id)
{
	char *json = NULL;
	cJSON *j;

	assert_int_equal(tq_store_get_json(store, id, &json), 0);
	assert_non_null(json);
	j = cJSON_Parse(json);
	free(json);
	assert_non_null(j);
	return j;
}

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jint(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v))
		fail_msg("%s is not a number", key);
	return v->valueint;
}

static bool jnull(const cJSON *o, const char *key)
{
	return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, key));
}

static void assert_status(const char *id, const char *status)
{
	cJSON *j = get_job(id);

	assert_string_equal(jstr(j, "status"), status);
	cJSON_Delete(j);
}

/* ---- cases -------------------------------------------------------- */

static void test_open_closed_port(void **state)
{
	struct tq_store *s = NULL;
	char conninfo[256];
	char err[256] = "";

	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%d user=taskq dbname=x connect_timeout=3",
		 free_port());
	assert_int_equal(tq_store_open(&s, conninfo, 2, err, sizeof(err)),
			 -EAGAIN);
	assert_null(s);
	assert_non_null(strstr(err, "postgresql"));

	/* a pool size out of range is refused before any connection */
	assert_int_equal(tq_store_open(&s, db_conninfo, 0, err, sizeof(err)),
			 -EINVAL);
	assert_null(s);
}

/*
 * Before the first migration a new connection prepares nothing: each
 * statement on the missing tables would fail, an error in PostgreSQL's
 * log and a rolled-back transaction in its statistics, two dozen for
 * every connection of a fresh install.  The connection's statistics are
 * flushed as it exits, before it leaves pg_stat_activity.
 */
static void test_connect_before_schema_quietly(void **state)
{
	struct tq_store *fresh = NULL;
	char err[256] = "", *conninfo = NULL;
	const char *rollbacks = "SELECT xact_rollback FROM pg_stat_database "
				"WHERE datname = current_database()";
	long long before;
	int64_t deadline;

	(void)state;
	assert_true(asprintf(&conninfo, "%s application_name=tq_before_schema",
			     db_conninfo) > 0);
	before = sql_long(rollbacks, NULL);
	assert_int_equal(tq_store_open(&fresh, conninfo, 2, err, sizeof(err)), 0);
	assert_int_equal(tq_store_ping(fresh), 0);
	tq_store_close(fresh);
	deadline = mono_ms() + 10000;
	while (sql_long("SELECT count(*) FROM pg_stat_activity "
			"WHERE application_name = 'tq_before_schema'", NULL) > 0) {
		assert_true(mono_ms() < deadline);
		usleep(20000);
	}
	assert_int_equal(sql_long(rollbacks, NULL) - before, 0);
	free(conninfo);
}

static void test_migrate(void **state)
{
	int64_t ms = -1;
	int applied = -1;
	char err[256] = "";
	char *v;

	assert_true(tq_migrations_count >= 1);
	assert_int_equal(tq_store_migrate(store, &applied, err, sizeof(err)), 0);
	assert_int_equal(applied, (int)tq_migrations_count);
	assert_int_equal(tq_store_migrate(store, &applied, err, sizeof(err)), 0);
	assert_int_equal(applied, 0);

	assert_int_equal(sql_long("SELECT count(*) FROM schema_migrations",
				  NULL),
			 (long long)tq_migrations_count);
	v = sql_text("SELECT string_agg(version::text || ':' || name, ',' "
		     "ORDER BY version) FROM schema_migrations", NULL);
	assert_non_null(v);
	assert_non_null(strstr(v, "1:001_jobs"));
	free(v);
	assert_int_equal(sql_long("SELECT count(*) FROM schema_migrations "
				  "WHERE applied_at IS NULL", NULL), 0);
	assert_int_equal(tq_store_ping(store), 0);
	/* nothing is scheduled yet */
	assert_int_equal(tq_store_next_due_ms(store, &ms), -ENOENT);
}

/*
 * Plans are made once per connection (generic plans), and a plan made
 * while the table is nearly empty is kept as the table grows.  Every
 * statement that finds rows by id must still be a primary-key lookup
 * ("Index Cond" on id), never a scan of a state's partial index, of the
 * table or of the whole primary key: each would grow with the backlog.
 * Planned here in the state of a fresh install or of the benchmark's
 * start: vacuumed while empty, then a few rows.  Before the batches of
 * claims, outcomes and heartbeats said "id = ANY", their plans here read
 * the whole primary key in order and filtered it against the ids.
 */
static void test_plans_by_primary_key(void **state)
{
	static const char *const by_id[] = {
		"tq_claim", "tq_claim_many", "tq_complete", "tq_complete_many",
		"tq_retry", "tq_fail", "tq_heartbeat", "tq_release", "tq_get",
		"tq_cancel", "tq_insert_complete",
	};
	char *plan = NULL;

	(void)state;
	assert_int_equal(sql_long("SELECT count(*) FROM jobs", NULL), 0);
	sql_exec("VACUUM ANALYZE jobs");
	sql_exec("INSERT INTO jobs (id, type, payload, status, max_attempts, "
		 "timeout_s, watch_at) SELECT gen_random_uuid(), 'noop', '{}', "
		 "'pending', 3, 60, now() FROM generate_series(1, 5)");
	for (size_t i = 0; i < sizeof(by_id) / sizeof(by_id[0]); i++) {
		assert_int_equal(tq_store_explain(store, by_id[i], &plan), 0);
		if (!strstr(plan, "jobs_pkey") || !strstr(plan, "Index Cond: (id = ") ||
		    strstr(plan, "Seq Scan") || strstr(plan, "jobs_watch_idx") ||
		    strstr(plan, "jobs_scheduled_idx"))
			fail_msg("%s is not planned as a primary-key lookup:\n%s", by_id[i], plan);
		free(plan);
	}
	sql_exec("DELETE FROM jobs");
	assert_int_equal(tq_store_explain(store, "no_such_statement", &plan), -ENOENT);
	assert_null(plan);
}

/*
 * The periodic statements read the open jobs through the partial index
 * that holds them (sql/006_watch_at.sql), never the whole table: their
 * cost follows the open jobs, not the history.  Planned, like every
 * statement, on the empty table.
 */
static void test_plans_by_partial_index(void **state)
{
	static const struct {
		const char *stmt, *index;
	} periodic[] = {
		{"tq_promote", "jobs_scheduled_idx"},
		{"tq_next_due", "jobs_scheduled_idx"},
		{"tq_rescue", "jobs_watch_idx"},
		{"tq_reconcile", "jobs_watch_idx"},
		{"tq_pending_counts", "jobs_watch_idx"},
	};
	char *plan = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(periodic) / sizeof(periodic[0]); i++) {
		assert_int_equal(tq_store_explain(store, periodic[i].stmt, &plan), 0);
		if (!strstr(plan, periodic[i].index) || strstr(plan, "Seq Scan"))
			fail_msg("%s does not read %s:\n%s", periodic[i].stmt,
				 periodic[i].index, plan);
		free(plan);
	}
}

/* Lists read the newest jobs off the end of the primary key and stop at
 * the limit (sql/008): no sort of the whole table, whatever the filter.
 * Planned, like every statement, on the empty table. */
static void test_lists_read_the_primary_key(void **state)
{
	static const char *const lists[] = {
		"tq_list_all", "tq_list_status", "tq_list_type", "tq_list_both",
	};
	char *plan = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		assert_int_equal(tq_store_explain(store, lists[i], &plan), 0);
		if (!strstr(plan, "Index Scan Backward using jobs_pkey") ||
		    strstr(plan, "Seq Scan"))
			fail_msg("%s does not read the primary key backward:\n%s", lists[i],
				 plan);
		free(plan);
	}
}

/* The column checks (domains since sql/007) refuse what the API would
 * never write, in INSERT and in UPDATE alike, and change nothing. */
static void test_checks_refuse_bad_values(void **state)
{
	static const char *const bad[] = {
		"UPDATE jobs SET status = 'lost'",
		"UPDATE jobs SET priority = 10",
		"UPDATE jobs SET attempts = -1",
		"UPDATE jobs SET max_attempts = 0",
		"UPDATE jobs SET timeout_s = 0",
		"UPDATE jobs SET progress = 101",
		"INSERT INTO jobs (id, type, payload, status, max_attempts, timeout_s) "
		"VALUES (gen_random_uuid(), 't', '{}', 'done', 1, 1)",
	};
	struct tq_job_spec spec;
	char id[37];

	(void)state;
	spec_init(&spec, "checked", "{}");
	insert_ok(&spec, id, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		sql_fails_with(bad[i], "23514");
	assert_status(id, "pending");
}

struct mig_arg {
	const char *conninfo;
	int rc;
	int applied;
};

static void *migrate_thread(void *p)
{
	struct mig_arg *a = p;
	struct tq_store *s = NULL;
	char err[256];

	a->rc = tq_store_open(&s, a->conninfo, 1, err, sizeof(err));
	if (a->rc == 0)
		a->rc = tq_store_migrate(s, &a->applied, err, sizeof(err));
	if (a->rc)
		fprintf(stderr, "migrate: %s\n", err);
	tq_store_close(s);
	return NULL;
}

/* Two daemons migrating one database at once apply each migration once. */
static void test_migrate_concurrent(void **state)
{
	struct mig_arg a[4];
	pthread_t t[4];
	char name[80];
	char *ci;
	int total = 0;
	int i;

	snprintf(name, sizeof(name), "%s_mig", db_name);
	assert_int_equal(create_db(name), 0);
	ci = conninfo_for(admin_url, name, NULL);
	assert_non_null(ci);
	for (i = 0; i < 4; i++) {
		a[i] = (struct mig_arg){.conninfo = ci, .rc = -1, .applied = -1};
		assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, &a[i]),
				 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].rc, 0);
		total += a[i].applied;
	}
	free(ci);
	drop_db(name);
	assert_int_equal(total, (int)tq_migrations_count);
}

static void test_insert_get(void **state)
{
	struct tq_job_spec spec;
	char id[37], id2[37];
	char *json = NULL;
	int pending = -1;
	cJSON *j, *p;

	spec_init(&spec, "email.send", "{\"to\":\"a@b.c\",\"n\":[1,2]}");
	spec.queue = (char *)"mail";
	spec.priority = 7;
	spec.max_attempts = 5;
	spec.timeout_s = 42;
	assert_int_equal(tq_store_insert(store, &spec, id, &json, &pending), 0);
	assert_int_equal(pending, 1);
	assert_int_equal(strlen(id), 36);

	/* what insert returns is the job as get shows it */
	j = cJSON_Parse(json);
	free(json);
	assert_non_null(j);
	assert_string_equal(jstr(j, "id"), id);
	assert_string_equal(jstr(j, "status"), "pending");
	cJSON_Delete(j);

	j = get_job(id);
	assert_string_equal(jstr(j, "id"), id);
	assert_string_equal(jstr(j, "type"), "email.send");
	assert_string_equal(jstr(j, "status"), "pending");
	assert_string_equal(jstr(j, "queue"), "mail");
	assert_int_equal(jint(j, "priority"), 7);
	assert_int_equal(jint(j, "attempts"), 0);
	assert_int_equal(jint(j, "max_attempts"), 5);
	assert_int_equal(jint(j, "timeout_s"), 42);
	p = cJSON_GetObjectItemCaseSensitive(j, "payload");
	assert_true(cJSON_IsObject(p));
	assert_string_equal(jstr(p, "to"), "a@b.c");
	assert_int_equal(cJSON_GetArraySize(
				 cJSON_GetObjectItemCaseSensitive(p, "n")), 2);
	assert_true(jnull(j, "error"));
	assert_true(jnull(j, "result"));
	assert_true(jnull(j, "progress"));
	assert_true(jnull(j, "progress_message"));
	assert_true(jnull(j, "lease_expires_at"));
	assert_true(jnull(j, "started_at"));
	assert_true(jnull(j, "completed_at"));
	assert_non_null(jstr(j, "created_at"));
	assert_non_null(jstr(j, "updated_at"));
	assert_non_null(jstr(j, "run_at"));
	/* RFC 3339 UTC with milliseconds */
	assert_int_equal(strlen(jstr(j, "created_at")), 24);
	assert_int_equal(jstr(j, "created_at")[23], 'Z');
	cJSON_Delete(j);

	/* a NULL queue is the default queue; payload may be any JSON */
	spec_init(&spec, "echo", "[1,\"x\",null]");
	spec.queue = NULL;
	insert_ok(&spec, id2, 1);
	assert_string_not_equal(id, id2);
	j = get_job(id2);
	assert_string_equal(jstr(j, "queue"), "default");
	assert_int_equal(jint(j, "priority"), 0);
	assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "payload")));
	cJSON_Delete(j);

	/* the row is really there */
	assert_int_equal(sql_long("SELECT count(*) FROM jobs WHERE id = $1::uuid",
				  id), 1);

	/* invalid specs change nothing */
	spec_init(&spec, "echo", "{}");
	spec.priority = 10;
	assert_int_equal(tq_store_insert(store, &spec, id2, &json, &pending),
			 -EINVAL);
	spec_init(&spec, "echo", "{not json");
	assert_int_equal(tq_store_insert(store, &spec, id2, &json, &pending),
			 -EINVAL);
	assert_null(json);
}

static void test_insert_scheduled(void **state)
{
	struct tq_job_spec spec;
	char id[37];
	char expect[40];
	char *v;
	int64_t run_at_ms;
	time_t secs;
	struct tm tm;
	cJSON *j;

	/* delay: relative to the database's clock */
	spec_init(&spec, "sched", "{}");
	spec.has_delay = true;
	spec.delay_ms = 60000;
	insert_ok(&spec, id, 0);
	j = get_job(id);
	assert_string_equal(jstr(j, "status"), "scheduled");
	assert_true(strcmp(jstr(j, "run_at"), jstr(j, "created_at")) > 0);
	cJSON_Delete(j);
	v = sql_text("SELECT round(extract(epoch FROM run_at - created_at) * 1000) "
		     "FROM jobs WHERE id = $1::uuid", id);
	assert_string_equal(v, "60000");
	free(v);

	/* a zero delay is ready now */
	spec.delay_ms = 0;
	insert_ok(&spec, id, 1);
	assert_status(id, "pending");

	/* absolute run_at, to the millisecond */
	spec_init(&spec, "sched", "{}");
	spec.has_run_at = true;
	run_at_ms = (wall_ms() / 1000 + 3600) * 1000 + 123;
	spec.run_at_ms = run_at_ms;
	insert_ok(&spec, id, 0);
	secs = (time_t)(run_at_ms / 1000);
	gmtime_r(&secs, &tm);
	assert_true(strftime(expect, sizeof(expect), "%Y-%m-%dT%H:%M:%S", &tm) > 0);
	assert_true(strlen(expect) + 5 < sizeof(expect));
	memcpy(expect + strlen(expect), ".123Z", 6);
	j = get_job(id);
	assert_string_equal(jstr(j, "status"), "scheduled");
	assert_string_equal(jstr(j, "run_at"), expect);
	cJSON_Delete(j);

	/* run_at in the past: ready now */
	spec.run_at_ms = wall_ms() - 60000;
	insert_ok(&spec, id, 1);
	assert_status(id, "pending");
}

static void test_list(void **state)
{
	struct tq_job_spec spec;
	char ids[4][37];
	char *json = NULL;
	cJSON *j, *jobs, *e;
	int i;

	char other[37];

	/* oldest to newest: ids[1], ids[2], ids[3] (scheduled), a list.b,
	 * ids[0] */
	spec_init(&spec, "list.a", "{\"i\":0}");
	insert_ok(&spec, ids[1], 1);
	insert_ok(&spec, ids[2], 1);
	spec.has_delay = true;
	spec.delay_ms = 3600 * 1000;
	insert_ok(&spec, ids[3], 0);
	spec_init(&spec, "list.b", "{}");
	insert_ok(&spec, other, 1);
	spec_init(&spec, "list.a", "{\"i\":0}");
	insert_ok(&spec, ids[0], 1);

	/* by type, newest first: ids[0] (newest), ids[3], ids[2], ids[1] */
	assert_int_equal(tq_store_list_json(store, NULL, "list.a", 100, &json), 0);
	j = cJSON_Parse(json);
	free(json);
	assert_non_null(j);
	jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
	assert_true(cJSON_IsArray(jobs));
	assert_int_equal(cJSON_GetArraySize(jobs), 4);
	assert_string_equal(jstr(cJSON_GetArrayItem(jobs, 0), "id"), ids[0]);
	assert_string_equal(jstr(cJSON_GetArrayItem(jobs, 1), "id"), ids[3]);
	assert_string_equal(jstr(cJSON_GetArrayItem(jobs, 2), "id"), ids[2]);
	assert_string_equal(jstr(cJSON_GetArrayItem(jobs, 3), "id"), ids[1]);
	for (i = 1; i < 4; i++)
		assert_true(strcmp(jstr(cJSON_GetArrayItem(jobs, i - 1), "created_at"),
				   jstr(cJSON_GetArrayItem(jobs, i), "created_at")) >= 0);
	cJSON_ArrayForEach(e, jobs)
		assert_string_equal(jstr(e, "type"), "list.a");
	cJSON_Delete(j);

	/* limit */
	assert_int_equal(tq_store_list_json(store, NULL, "list.a", 2, &json), 0);
	j = cJSON_Parse(json);
	free(json);
	jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
	assert_int_equal(cJSON_GetArraySize(jobs), 2);
	assert_string_equal(jstr(cJSON_GetArrayItem(jobs, 0), "id"), ids[0]);
	cJSON_Delete(j);

	/* status and type */
	assert_int_equal(tq_store_list_json(store, "scheduled", "list.a", 10,
					    &json), 0);
	j = cJSON_Parse(json);
	free(json);
	jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
	assert_int_equal(cJSON_GetArraySize(jobs), 1);
	assert_string_equal(jstr(cJSON_GetArrayItem(jobs, 0), "id"), ids[3]);
	cJSON_Delete(j);

	/* status only: every row has it */
	assert_int_equal(tq_store_list_json(store, "pending", NULL, 1000, &json), 0);
	j = cJSON_Parse(json);
	free(json);
	jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
	assert_true(cJSON_GetArraySize(jobs) >= 4);
	cJSON_ArrayForEach(e, jobs)
		assert_string_equal(jstr(e, "status"), "pending");
	cJSON_Delete(j);

	/* no filter */
	assert_int_equal(tq_store_list_json(store, NULL, NULL, 3, &json), 0);
	j = cJSON_Parse(json);
	free(json);
	assert_int_equal(cJSON_GetArraySize(
				 cJSON_GetObjectItemCaseSensitive(j, "jobs")), 3);
	cJSON_Delete(j);

	/* nothing matches: an empty array, not null */
	assert_int_equal(tq_store_list_json(store, NULL, "no.such.type", 10,
					    &json), 0);
	j = cJSON_Parse(json);
	free(json);
	jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
	assert_true(cJSON_IsArray(jobs));
	assert_int_equal(cJSON_GetArraySize(jobs), 0);
	cJSON_Delete(j);

	/* bounds */
	assert_int_equal(tq_store_list_json(store, NULL, NULL, 0, &json), -EINVAL);
	assert_int_equal(tq_store_list_json(store, NULL, NULL, 1001, &json),
			 -EINVAL);
	assert_int_equal(tq_store_list_json(store, "bogus", NULL, 10, &json),
			 -EINVAL);
	assert_null(json);
}

static void test_claim_complete(void **state)
{
	struct tq_job_spec spec;
	struct tq_claim c, c2;
	char id[37], id2[37];
	char *v;
	cJSON *j, *r;

	spec_init(&spec, "claim.me", "{\"k\":\"v\"}");
	spec.queue = (char *)"q2";
	spec.max_attempts = 4;
	spec.timeout_s = 10;
	insert_ok(&spec, id, 1);

	assert_int_equal(tq_store_claim(store, id, 5, &c), 0);
	assert_string_equal(c.id, id);
	assert_string_equal(c.type, "claim.me");
	assert_string_equal(c.queue, "q2");
	assert_int_equal(c.attempt, 1);
	assert_int_equal(c.max_attempts, 4);
	assert_int_equal(c.timeout_s, 10);
	j = cJSON_Parse(c.payload);
	assert_non_null(j);
	assert_string_equal(jstr(j, "k"), "v");
	cJSON_Delete(j);

	/* the lease: lease_s from the database's clock (the heartbeat
	 * renews it) */
	v = sql_text("SELECT round(extract(epoch FROM lease_expires_at - "
		     "started_at)) FROM jobs WHERE id = $1::uuid", id);
	assert_string_equal(v, "5");
	free(v);
	j = get_job(id);
	assert_string_equal(jstr(j, "status"), "running");
	assert_int_equal(jint(j, "attempts"), 1);
	assert_non_null(jstr(j, "started_at"));
	assert_non_null(jstr(j, "lease_expires_at"));
	cJSON_Delete(j);

	/* a second claim loses */
	assert_int_equal(tq_store_claim(store, id, 5, &c2), -ENOENT);
	assert_null(c2.type);

	/* fenced by the attempt */
	assert_int_equal(tq_store_complete(store, id, 2, c.token, "{\"x\":1}"), -ESTALE);
	assert_int_equal(tq_store_complete(store, id, 0, c.token, NULL), -ESTALE);
	assert_status(id, "running");
	assert_int_equal(tq_store_complete(store, id, c.attempt, c.token,
					   "{\"ok\":true,\"n\":3}"), 0);
	j = get_job(id);
	assert_string_equal(jstr(j, "status"), "completed");
	r = cJSON_GetObjectItemCaseSensitive(j, "result");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok")));
	assert_int_equal(jint(r, "n"), 3);
	assert_non_null(jstr(j, "completed_at"));
	assert_true(jnull(j, "lease_expires_at"));
	cJSON_Delete(j);
	/* one outcome only */
	assert_int_equal(tq_store_complete(store, id, c.attempt, c.token, "{}"), -ESTALE);
	assert_int_equal(tq_store_fail(store, id, c.attempt, c.token, "late"), -ESTALE);
	assert_int_equal(tq_store_claim(store, id, 5, &c2), -ENOENT);
	tq_claim_free(&c);

	/* no result */
	insert_ok(&spec, id2, 1);
	assert_int_equal(tq_store_claim(store, id2, 5, &c), 0);
	assert_int_equal(tq_store_complete(store, id2, c.attempt, c.token, NULL), 0);
	j = get_job(id2);
	assert_string_equal(jstr(j, "status"), "completed");
	assert_true(jnull(j, "result"));
	cJSON_Delete(j);
	tq_claim_free(&c);
	tq_claim_free(&c); /* idempotent */

	/* an unknown (but valid) id */
	assert_int_equal(tq_store_claim(store,
					"00000000-0000-4000-8000-000000000000",
					5, &c), -ENOENT);
}

/*
 * A claim does not wait for the disk, so a crash can lose it: the row is
 * pending again with the attempts it had, and the re-run's claim gets
 * the same attempt number.  The token of the lost claim must not end the
 * job that the new claim runs.
 */
static void test_lost_claim_fenced(void **state)
{
	struct tq_job_spec spec;
	struct tq_claim c, c2;
	char id[37];

	(void)state;
	spec_init(&spec, "lost.claim", "{}");
	insert_ok(&spec, id, 1);
	assert_int_equal(tq_store_claim(store, id, 30, &c), 0);
	assert_int_equal(c.attempt, 1);
	/* what the row looks like when the claim's commit never reached
	 * the disk */
	{
		char q[256];

		snprintf(q, sizeof(q), "UPDATE jobs SET status = 'pending', attempts = 0, "
			 "claim_token = NULL, started_at = NULL, lease_expires_at = NULL "
			 "WHERE id = '%s'", id);
		sql_exec(q);
	}
	assert_int_equal(tq_store_claim(store, id, 30, &c2), 0);
	assert_int_equal(c2.attempt, 1);
	assert_true(c2.token != c.token);

	/* the lost claim's run: no lease renewal, no outcome */
	{
		struct tq_lease l = {.id = id, .attempt = 1, .token = c.token, .progress = -1};

		assert_int_equal(tq_store_heartbeat(store, &l, 1, 30, NULL, NULL), 0);
	}
	assert_int_equal(tq_store_complete(store, id, 1, c.token, "{\"run\":1}"), -ESTALE);
	assert_int_equal(tq_store_fail(store, id, 1, c.token, "x"), -ESTALE);
	assert_int_equal(tq_store_retry(store, id, 1, c.token, 0, "x"), -ESTALE);
	assert_status(id, "running");
	/* the kept claim's run ends it */
	assert_int_equal(tq_store_complete(store, id, 1, c2.token, "{\"run\":2}"), 0);
	assert_int_equal(sql_long("SELECT (result->>'run')::int FROM jobs WHERE id = $1::uuid",
				  id), 2);
	tq_claim_free(&c);
	tq_claim_free(&c2);
}

/* The batched hot path: one token per claim statement, fenced per row. */
static void test_claim_complete_many(void **state)
{
	struct tq_job_spec spec;
	struct tq_claim out[3];
	struct tq_done done[2];
	char ids[3][37];
	bool written[2];
	size_t n = 0;

	(void)state;
	spec_init(&spec, "many", "{\"k\":1}");
	for (int i = 0; i < 3; i++)
		insert_ok(&spec, ids[i], 1);
	/* the third is no longer pending */
	assert_int_equal(tq_store_claim(store, ids[2], 30, &out[0]), 0);
	tq_claim_free(&out[0]);
	assert_int_equal(tq_store_claim_many(store, ids, 3, 30, out, &n), 0);
	assert_int_equal(n, 2);
	assert_true(out[0].token == out[1].token);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(out[i].attempt, 1);
		assert_string_equal(out[i].type, "many");
		assert_status(out[i].id, "running");
	}
	done[0] = (struct tq_done){.id = out[0].id, .attempt = 1, .token = out[0].token,
				   .result = "{\"ok\":1}"};
	done[1] = (struct tq_done){.id = out[1].id, .attempt = 1, .token = out[1].token + 1};
	assert_int_equal(tq_store_complete_many(store, done, 2, written), 1);
	assert_true(written[0]);
	assert_false(written[1]);
	assert_status(out[0].id, "completed");
	assert_status(out[1].id, "running");
	for (size_t i = 0; i < n; i++)
		tq_claim_free(&out[i]);
}

/* The times an insert returned are the row's, to the millisecond, as GET
 * shows them: a claimed row's lease, a delayed row's run_at, and the
 * statement's now() that most rows share. */
static void assert_times_stored(const struct tq_inserted *ins)
{
	static const char *const cols[] = {"created_at", "run_at", "lease_expires_at"};
	const char *got[] = {ins->created_at, ins->run_at, ins->lease_expires_at};
	char q[256];

	for (size_t c = 0; c < 3; c++) {
		char *v;

		snprintf(q, sizeof(q),
			 "SELECT coalesce(to_char(%s AT TIME ZONE 'UTC', "
			 "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), '') "
			 "FROM jobs WHERE id = $1::uuid",
			 cols[c]);
		v = sql_text(q, ins->id);
		assert_non_null(v);
		if (strcmp(v, got[c]) != 0)
			fail_msg("%s of %s: returned '%s', stored '%s'", cols[c], ins->id, got[c], v);
		free(v);
	}
}

/*
 * Claimed in the insert: the rows marked (and due now) are running,
 * attempt 1, with a lease, a token and the claim's payload; a marked row
 * with a delay is scheduled and unclaimed; an unmarked one pending.  Then
 * outcomes ride in the next insert's transaction, fenced like any other:
 * one with the claim's token is written, one with another token not.
 */
static void test_write_claims_and_outcomes(void **state)
{
	struct tq_job_spec specs[3];
	struct tq_inserted ins[3], more;
	struct tq_claim claims[3];
	struct tq_done done[2];
	const bool claim[3] = {true, true, false};
	bool written[2] = {true, true};
	struct tq_write w = {.specs = specs, .n = 3, .claim = claim, .lease_s = 45,
			     .out = ins, .claims = claims};

	(void)state;
	for (int i = 0; i < 3; i++)
		spec_init(&specs[i], "direct", "{\"k\": [1, 2]}");
	specs[1].has_delay = true;
	specs[1].delay_ms = 60000;
	assert_int_equal(tq_store_write(store, &w), 0);
	assert_int_equal(w.nclaimed, 1);
	assert_true(ins[0].running && !ins[0].pending);
	assert_true(!ins[1].running && !ins[1].pending);
	assert_true(!ins[2].running && ins[2].pending);
	assert_true(ins[0].lease_expires_at[0] != '\0');
	assert_string_equal(ins[2].lease_expires_at, "");
	assert_string_equal(claims[0].id, ins[0].id);
	assert_string_equal(claims[0].type, "direct");
	assert_string_equal(claims[0].queue, "default");
	assert_string_equal(claims[0].payload, "{\"k\": [1, 2]}"); /* as jsonb prints it */
	assert_int_equal(claims[0].attempt, 1);
	assert_int_equal(claims[0].max_attempts, 3);
	assert_int_equal(claims[0].timeout_s, 30);
	assert_status(ins[0].id, "running");
	assert_status(ins[1].id, "scheduled");
	assert_status(ins[2].id, "pending");
	assert_int_equal(sql_long("SELECT count(*) FROM jobs WHERE id = $1::uuid AND "
				  "attempts = 1 AND started_at = created_at AND "
				  "lease_expires_at = created_at + interval '45 s' AND "
				  "watch_at IS NOT NULL",
				  ins[0].id),
			 1);
	for (int i = 0; i < 3; i++)
		assert_times_stored(&ins[i]);

	done[0] = (struct tq_done){.id = ins[0].id, .attempt = 1, .token = claims[0].token + 1};
	done[1] = (struct tq_done){.id = ins[0].id, .attempt = 1, .token = claims[0].token,
				   .result = "{\"ok\":true}"};
	w = (struct tq_write){.specs = specs, .n = 1, .out = &more, .done = done, .ndone = 2,
			      .written = written};
	assert_int_equal(tq_store_write(store, &w), 0);
	assert_false(written[0]);
	assert_true(written[1]);
	assert_true(more.pending);
	assert_status(more.id, "pending");
	assert_status(ins[0].id, "completed");
	assert_int_equal(sql_long("SELECT count(*) FROM jobs WHERE id = $1::uuid AND "
				  "result = '{\"ok\":true}'::jsonb AND completed_at IS NOT NULL",
				  ins[0].id),
			 1);
	tq_claim_free(&claims[0]);
}

/*
 * A write is all or nothing, outcomes included: one whose outcome spoils
 * the statement (here a result that is not JSON, which the host never
 * lets through) inserts nothing and writes no outcome.  The group commit
 * relies on it when it tries such a write again without the outcomes.
 */
static void test_write_fails_whole(void **state)
{
	struct tq_job_spec spec;
	struct tq_inserted ins, again;
	struct tq_claim claim;
	struct tq_done done;
	const bool claim_it = true;
	bool written = true;
	struct tq_write w = {.specs = &spec, .n = 1, .claim = &claim_it, .lease_s = 30,
			     .out = &ins, .claims = &claim};
	long long jobs;

	(void)state;
	spec_init(&spec, "whole", "{}");
	assert_int_equal(tq_store_write(store, &w), 0);
	assert_int_equal(w.nclaimed, 1);
	jobs = sql_long("SELECT count(*) FROM jobs", NULL);
	done = (struct tq_done){.id = ins.id, .attempt = 1, .token = claim.token,
				.result = "{not json"};
	w = (struct tq_write){.specs = &spec, .n = 1, .out = &again, .done = &done, .ndone = 1,
			      .written = &written};
	assert_true(tq_store_write(store, &w) < 0);
	assert_int_equal(sql_long("SELECT count(*) FROM jobs", NULL), jobs);
	assert_status(ins.id, "running");
	/* without it, the same insert goes through */
	w.ndone = 0;
	assert_int_equal(tq_store_write(store, &w), 0);
	assert_int_equal(sql_long("SELECT count(*) FROM jobs", NULL), jobs + 1);
	assert_status(again.id, "pending");
	tq_claim_free(&claim);
}

/* The jobs table's update counters once the pool's backends have exited
 * and reported them (a backend reports its statistics when it exits). */
static void table_updates(long long *upd, long long *hot)
{
	static const char q[] = "SELECT n_tup_upd || ' ' || n_tup_hot_upd "
				"FROM pg_stat_user_tables WHERE relname = 'jobs'";
	char *v = NULL, *last = NULL;
	int64_t deadline = mono_ms() + 5000;

	tq_store_close(store);
	store = NULL;
	/* until two reads 300 ms apart agree */
	do {
		free(last);
		last = v;
		sleep_ms(300);
		v = sql_text(q, NULL);
	} while ((!last || strcmp(v, last) != 0) && mono_ms() < deadline);
	assert_int_equal(sscanf(v, "%lld %lld", upd, hot), 2);
	free(v);
	free(last);
}

/*
 * A claim changes no column that an index reads (sql/006_watch_at.sql),
 * and the table's pages keep room for its new row versions: the claim is
 * a HOT update, which adds no index entry.
 */
static void test_claims_are_hot(void **state)
{
	struct tq_job_spec spec;
	struct tq_claim out[10];
	char ids[10][37], err[256] = "";
	long long upd0, hot0, upd1, hot1;
	size_t n = 0;

	(void)state;
	spec_init(&spec, "hot", "{\"k\":\"some payload of a usual size\"}");
	for (int i = 0; i < 10; i++)
		insert_ok(&spec, ids[i], 1);
	table_updates(&upd0, &hot0);
	assert_int_equal(tq_store_open(&store, db_conninfo, POOL_SIZE, err, sizeof(err)), 0);
	assert_int_equal(tq_store_claim_many(store, ids, 10, 30, out, &n), 0);
	assert_int_equal(n, 10);
	for (size_t i = 0; i < n; i++)
		tq_claim_free(&out[i]);
	table_updates(&upd1, &hot1);
	assert_int_equal(tq_store_open(&store, db_conninfo, POOL_SIZE, err, sizeof(err)), 0);
	assert_true(upd1 - upd0 >= 10);
	if (hot1 - hot0 < 10)
		fail_msg("%lld of %lld updates were HOT", hot1 - hot0, upd1 - upd0);
}

/* Index entries read through the primary key so far, once the pool's
 * backends have flushed their counters (the store is closed). */
static long long pkey_reads(void)
{
	static const char q[] = "SELECT idx_tup_read FROM pg_stat_user_indexes "
				"WHERE indexrelname = 'jobs_pkey'";
	long long n = -1, last;
	int64_t deadline = mono_ms() + 5000;

	do {
		last = n;
		sleep_ms(300);
		n = sql_long(q, NULL);
	} while (n != last && mono_ms() < deadline);
	return n;
}

/*
 * A batch of claims and of outcomes reads its own rows, however small
 * the table was when its connection planned it: here one connection
 * plans both while the table holds five rows after a vacuum (a fresh
 * install, the benchmark's start), then claims and completes ten jobs of
 * 20,000.  With a kept plan that read the whole primary key and filtered
 * it against the ids, each statement read all 20,000 entries.
 */
/* Insert n pending jobs of type by SQL, then claim and complete those of
 * them that the store should read (at most 10) in one batch each. */
static void add_then_claim_and_complete(const char *type, int n, int take)
{
	struct tq_claim out[10];
	struct tq_done done[10];
	char ids[10][37], q[256];
	bool written[10];
	size_t got = 0;
	PGresult *res;

	assert_true(take <= 10);
	snprintf(q, sizeof(q),
		 "INSERT INTO jobs (id, type, payload, status, max_attempts, timeout_s, "
		 "watch_at) SELECT gen_random_uuid(), '%s', '{}', 'pending', 3, 60, now() "
		 "FROM generate_series(1, %d)", type, n);
	sql_exec(q);
	snprintf(q, sizeof(q), "SELECT id FROM jobs WHERE type = '%s' LIMIT %d", type, take);
	res = PQexec(sql, q);
	assert_int_equal(PQntuples(res), take);
	for (int i = 0; i < take; i++)
		snprintf(ids[i], sizeof(ids[i]), "%s", PQgetvalue(res, i, 0));
	PQclear(res);
	assert_int_equal(tq_store_claim_many(store, ids, (size_t)take, 30, out, &got), 0);
	assert_int_equal(got, take);
	for (size_t i = 0; i < got; i++)
		done[i] = (struct tq_done){.id = out[i].id, .attempt = 1, .token = out[i].token};
	assert_int_equal(tq_store_complete_many(store, done, got, written), take);
	for (size_t i = 0; i < got; i++)
		tq_claim_free(&out[i]);
}

static void test_batches_read_only_their_rows(void **state)
{
	char err[256] = "";
	long long before, after;

	(void)state;
	tq_store_close(store);
	store = NULL;
	sql_exec("TRUNCATE jobs");
	sql_exec("VACUUM ANALYZE jobs");
	/* one connection, so that the plans are the ones made on 5 rows */
	assert_int_equal(tq_store_open(&store, db_conninfo, 1, err, sizeof(err)), 0);
	add_then_claim_and_complete("small", 5, 5);
	before = pkey_reads();
	add_then_claim_and_complete("big", 20000, 10);
	tq_store_close(store);
	store = NULL;
	after = pkey_reads();
	sql_exec("TRUNCATE jobs");
	assert_int_equal(tq_store_open(&store, db_conninfo, POOL_SIZE, err, sizeof(err)), 0);
	if (after - before > 1000)
		fail_msg("a claim and an outcome of 10 jobs read %lld primary-key entries",
			 after - before);
}

struct promoted {
	int n;
	char queue[64];
	int priority;
	char id[37];
};

static void on_ready(void *arg, const char *queue, int priority,
		     const char *id)
{
	struct promoted *p = arg;

	p->n++;
	snprintf(p->queue, sizeof(p->queue), "%s", queue);
	p->priority = priority;
	snprintf(p->id, sizeof(p->id), "%s", id);
}

static void test_retry_promote(void **state)
{
	struct tq_job_spec spec;
	struct promoted pr = {0};
	struct tq_claim c;
	int64_t ms = -1;
	char id[37];
	cJSON *j;

	spec_init(&spec, "retry.me", "{}");
	spec.queue = (char *)"rq";
	spec.priority = 3;
	insert_ok(&spec, id, 1);
	assert_int_equal(tq_store_claim(store, id, 5, &c), 0);
	assert_int_equal(c.attempt, 1);
	tq_claim_free(&c);

	assert_int_equal(tq_store_retry(store, id, 2, c.token, 1500, "nope"), -ESTALE);
	assert_int_equal(tq_store_retry(store, id, 1, c.token, 1500, "boom"), 0);
	j = get_job(id);
	assert_string_equal(jstr(j, "status"), "scheduled");
	assert_string_equal(jstr(j, "error"), "boom");
	assert_true(jnull(j, "lease_expires_at"));
	cJSON_Delete(j);
	/* fenced: the attempt is over */
	assert_int_equal(tq_store_complete(store, id, 1, c.token, NULL), -ESTALE);
	assert_int_equal(tq_store_claim(store, id, 5, &c), -ENOENT);

	/* not due yet */
	assert_int_equal(tq_store_promote_due(store, 100, on_ready, &pr), 0);
	assert_int_equal(pr.n, 0);
	assert_int_equal(tq_store_next_due_ms(store, &ms), 0);
	assert_true(ms > 0 && ms <= 1500);

	sleep_ms((int)ms + 50);
	assert_int_equal(tq_store_next_due_ms(store, &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(tq_store_promote_due(store, 100, on_ready, &pr), 1);
	assert_int_equal(pr.n, 1);
	assert_string_equal(pr.id, id);
	assert_string_equal(pr.queue, "rq");
	assert_int_equal(pr.priority, 3);
	assert_status(id, "pending");
	/* promoted once */
	assert_int_equal(tq_store_promote_due(store, 100, on_ready, &pr), 0);

	/* the next attempt */
	assert_int_equal(tq_store_claim(store, id, 5, &c), 0);
	assert_int_equal(c.attempt, 2);
	assert_int_equal(tq_store_complete(store, id, 1, c.token, NULL), -ESTALE);
	assert_int_equal(tq_store_complete(store, id, 2, c.token, NULL), 0);
	tq_claim_free(&c);
	assert_status(id, "completed");
}

static void test_fail(void **state)
{
	struct tq_job_spec spec;
	struct tq_claim c;
	char id[37];
	cJSON *j;

	spec_init(&spec, "fail.me", "{}");
	insert_ok(&spec, id, 1);
	/* not running: nothing to fail */
	assert_int_equal(tq_store_fail(store, id, 0, 0, "x"), -ESTALE);
	assert_int_equal(tq_store_claim(store, id, 5, &c), 0);
	assert_int_equal(tq_store_fail(store, id, 7, c.token, "x"), -ESTALE);
	assert_int_equal(tq_store_fail(store, id, c.attempt, c.token, "fatal: bad input"),
			 0);
	j = get_job(id);
	assert_string_equal(jstr(j, "status"), "failed");
	assert_string_equal(jstr(j, "error"), "fatal: bad input");
	assert_non_null(jstr(j, "completed_at"));
	assert_true(jnull(j, "lease_expires_at"));
	cJSON_Delete(j);
	assert_int_equal(tq_store_fail(store, id, c.attempt, c.token, "again"), -ESTALE);
	assert_int_equal(tq_store_retry(store, id, c.attempt, c.token, 0, "again"),
			 -ESTALE);
	assert_int_equal(tq_store_complete(store, id, c.attempt, c.token, NULL), -ESTALE);
	tq_claim_free(&c);
	assert_status(id, "failed");
}

/* A handler's error text is arbitrary bytes of any length: it is stored
 * bounded and as valid UTF-8, and the outcome is written anyway. */
static void test_error_message_cleaned(void **state)
{
	struct tq_job_spec spec;
	struct tq_claim c;
	char id[37];
	char *msg;
	char *v;
	size_t n = TQ_ERROR_MAX * 3;

	msg = malloc(n + 1);
	assert_non_null(msg);
	memset(msg, 'e', n);
	msg[n] = '\0';
	memcpy(msg, "bad \xff\xfe bytes \xc3\xa9 ok \xe2\x82", 21);
	/* a 3-byte character across the cut */
	memcpy(msg + TQ_ERROR_MAX - 1, "\xe2\x82\xac", 3);

	spec_init(&spec, "err.me", "{}");
	insert_ok(&spec, id, 1);
	assert_int_equal(tq_store_claim(store, id, 5, &c), 0);
	assert_int_equal(tq_store_fail(store, id, c.attempt, c.token, msg), 0);
	tq_claim_free(&c);
	free(msg);

	v = sql_text("SELECT error_message FROM jobs WHERE id = $1::uuid", id);
	assert_non_null(v);
	assert_true(strlen(v) <= TQ_ERROR_MAX);
	assert_true(strlen(v) >= TQ_ERROR_MAX - 3);
	assert_memory_equal(v, "bad ?? bytes \xc3\xa9 ok ??", 21);
	free(v);

	/* NULL error: stored as empty text */
	insert_ok(&spec, id, 1);
	assert_int_equal(tq_store_claim(store, id, 5, &c), 0);
	assert_int_equal(tq_store_retry(store, id, c.attempt, c.token, 3600 * 1000, NULL),
			 0);
	tq_claim_free(&c);
	assert_status(id, "scheduled");
}

static void test_bad_uuid(void **state)
{
	static const char *const bad[] = {
		"", "nope", "1", "00000000-0000-0000-0000-00000000000",
		"00000000-0000-0000-0000-0000000000000",
		"zzzzzzzz-0000-0000-0000-000000000000",
		"' OR 1=1 --", "00000000-0000-0000-0000-000000000000x",
	};
	struct tq_claim c;
	char *json = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tq_store_get_json(store, bad[i], &json), -ENOENT);
		assert_null(json);
		assert_int_equal(tq_store_claim(store, bad[i], 5, &c), -ENOENT);
		assert_int_equal(tq_store_complete(store, bad[i], 1, 0, NULL),
				 -ENOENT);
		assert_int_equal(tq_store_retry(store, bad[i], 1, 0, 0, "x"), -ENOENT);
		assert_int_equal(tq_store_fail(store, bad[i], 1, 0, "x"), -ENOENT);
	}
	assert_int_equal(tq_store_get_json(store, NULL, &json), -ENOENT);
	/* upper case is a valid spelling of the same id */
	assert_int_equal(tq_store_get_json(store,
					   "0000000A-0000-4000-8000-000000000000",
					   &json), -ENOENT);
	/* the pool is still healthy */
	assert_int_equal(tq_store_ping(store), 0);
}

#define RACE_JOBS 50
#define RACE_THREADS 8

static char race_ids[RACE_JOBS][37];
static atomic_int race_wins[RACE_JOBS];
static atomic_int race_other_errors;

static void *race_thread(void *p)
{
	int t = (int)(intptr_t)p;
	struct tq_claim c;
	int i, k, rc;

	for (k = 0; k < RACE_JOBS; k++) {
		i = (k + t * 7) % RACE_JOBS;
		rc = tq_store_claim(store, race_ids[i], 30, &c);
		if (rc == 0) {
			atomic_fetch_add(&race_wins[i], 1);
			if (c.attempt != 1)
				atomic_fetch_add(&race_other_errors, 1);
			tq_claim_free(&c);
		} else if (rc != -ENOENT) {
			atomic_fetch_add(&race_other_errors, 1);
		}
	}
	return NULL;
}

static void test_concurrent_claims(void **state)
{
	struct tq_job_spec spec;
	pthread_t t[RACE_THREADS];
	int i;

	spec_init(&spec, "race", "{}");
	for (i = 0; i < RACE_JOBS; i++) {
		insert_ok(&spec, race_ids[i], 1);
		atomic_store(&race_wins[i], 0);
	}
	atomic_store(&race_other_errors, 0);
	for (i = 0; i < RACE_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race_thread,
						(void *)(intptr_t)i), 0);
	for (i = 0; i < RACE_THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&race_other_errors), 0);
	for (i = 0; i < RACE_JOBS; i++)
		assert_int_equal(atomic_load(&race_wins[i]), 1);
	assert_int_equal(sql_long("SELECT count(*) FROM jobs WHERE type = 'race' "
				  "AND status = 'running' AND attempts = 1",
				  NULL), RACE_JOBS);
}

/* Backends killed under an idle pool: the next calls reconnect and
 * succeed, none of them sees the dead connection. */
static void test_killed_backends(void **state)
{
	char *json = NULL;
	char id[37];
	struct tq_job_spec spec;
	int i;

	/* every connection of the pool was opened by tq_store_open() */
	spec_init(&spec, "killed", "{}");
	assert_true(sql_long("SELECT count(*) FROM pg_stat_activity "
			     "WHERE datname = current_database() "
			     "AND pid <> pg_backend_pid()", NULL) >= POOL_SIZE);
	assert_true(sql_long("SELECT count(pg_terminate_backend(pid)) "
			     "FROM pg_stat_activity "
			     "WHERE datname = current_database() "
			     "AND pid <> pg_backend_pid()", NULL) >= POOL_SIZE);
	sleep_ms(200);
	for (i = 0; i < 3 * POOL_SIZE; i++) {
		insert_ok(&spec, id, 1);
		assert_int_equal(tq_store_get_json(store, id, &json), 0);
		free(json);
		json = NULL;
	}
}

/* A key is held by the first job submitted with it: the same type and
 * payload (as JSON values, whatever their spacing) find that job, another
 * payload or type is refused with its id, and no second row is made. */
static void test_insert_idempotency_key(void **state)
{
	char id[37], again[37] = "", other[37] = "", *json = NULL;
	struct tq_job_spec spec;
	int pending = -1;

	spec_init(&spec, "keyed", "{\"n\": 1, \"s\": \"x\"}");
	spec.idempotency_key = (char *)"k-1";
	assert_int_equal(tq_store_insert(store, &spec, id, &json, &pending), 0);
	assert_int_equal(pending, 1);
	assert_non_null(strstr(json, "\"idempotency_key\" : \"k-1\""));
	free(json);
	json = NULL;

	spec.payload = (char *)"{\"s\":\"x\",\"n\":1}";
	assert_int_equal(tq_store_insert(store, &spec, again, &json, &pending), 1);
	assert_string_equal(again, id);
	assert_non_null(json);
	assert_non_null(strstr(json, id));
	free(json);
	json = NULL;

	spec.payload = (char *)"{\"n\": 2}";
	assert_int_equal(tq_store_insert(store, &spec, other, &json, &pending), -EEXIST);
	assert_string_equal(other, id);
	assert_null(json);
	spec.payload = (char *)"{\"n\": 1, \"s\": \"x\"}";
	spec.type = (char *)"keyed2";
	memset(other, 0, sizeof(other));
	assert_int_equal(tq_store_insert(store, &spec, other, &json, &pending), -EEXIST);
	assert_string_equal(other, id);
	assert_int_equal(sql_long("SELECT count(*) FROM jobs WHERE idempotency_key = $1",
				  "k-1"), 1);

	/* once the job is gone, the key is free again */
	sql_exec("DELETE FROM jobs WHERE idempotency_key = 'k-1'");
	assert_int_equal(tq_store_insert(store, &spec, other, &json, &pending), 0);
	assert_string_not_equal(other, id);
	free(json);
}

#define KEY_RACERS 8
static atomic_int key_created, key_found, key_other;

static void *key_racer(void *p)
{
	struct tq_job_spec spec;
	char id[37], *json = NULL;
	int pending, rc;

	(void)p;
	spec_init(&spec, "keyed", "{}");
	spec.idempotency_key = (char *)"k-race";
	rc = tq_store_insert(store, &spec, id, &json, &pending);
	free(json);
	atomic_fetch_add(rc == 0 ? &key_created : rc == 1 ? &key_found : &key_other, 1);
	return NULL;
}

/* Submissions of one key on every connection of the pool at once, each
 * in its own transaction as two nodes' would be: one makes the job, the
 * others wait for its commit and find it. */
static void test_insert_idempotency_key_race(void **state)
{
	pthread_t t[KEY_RACERS];
	int i;

	for (i = 0; i < KEY_RACERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, key_racer, NULL), 0);
	for (i = 0; i < KEY_RACERS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&key_other), 0);
	assert_int_equal(atomic_load(&key_created), 1);
	assert_int_equal(atomic_load(&key_found), KEY_RACERS - 1);
	assert_int_equal(sql_long("SELECT count(*) FROM jobs WHERE idempotency_key = $1",
				  "k-race"), 1);
}

/* A migration applied by another node while this one runs can change the
 * type of a column a prepared statement returns (007 moved status to a
 * domain).  PostgreSQL then refuses the statement ("cached plan must not
 * change result type") at every execution on every connection that
 * prepared it; the store prepares it again and runs it. */
static void test_schema_change_under_prepared(void **state)
{
	char id[37], *type;
	struct tq_job_spec spec;
	int i;

	spec_init(&spec, "schema", "{}");
	/* every connection prepares and runs the insert */
	for (i = 0; i < 3 * POOL_SIZE; i++)
		insert_ok(&spec, id, 1);
	sql_exec("ALTER TABLE jobs ALTER COLUMN status TYPE text");
	for (i = 0; i < 3 * POOL_SIZE; i++)
		insert_ok(&spec, id, 1);
	assert_status(id, "pending");
	/* and back, which changes the type again */
	sql_exec("ALTER TABLE jobs ALTER COLUMN status TYPE job_status");
	for (i = 0; i < 3 * POOL_SIZE; i++)
		insert_ok(&spec, id, 1);
	type = sql_text("SELECT pg_typeof(status)::text FROM jobs WHERE id = $1::uuid", id);
	assert_string_equal(type, "job_status");
	free(type);
}

/* next_due_ms reads the partial index of scheduled jobs: its scan counter
 * moves when the store's own statement runs.  (A backend reports its
 * statistics when it exits, so the pool is closed to read them.) */
static void test_next_due_uses_index(void **state)
{
	static const char scans[] =
		"SELECT idx_scan FROM pg_stat_user_indexes "
		"WHERE indexrelname = 'jobs_scheduled_idx'";
	char err[256] = "";
	long long before;
	int64_t ms = -1;
	int64_t deadline;

	/* plenty of terminal rows, as in a real table */
	sql_exec("INSERT INTO jobs (id, type, payload, status, max_attempts, "
		 "timeout_s) SELECT gen_random_uuid(), 'bulk', '{}', 'completed', "
		 "1, 1 FROM generate_series(1, 20000)");
	sql_exec("ANALYZE jobs");
	tq_store_close(store);
	store = NULL;
	sleep_ms(200);
	before = sql_long(scans, NULL);
	assert_int_equal(tq_store_open(&store, db_conninfo, 1, err, sizeof(err)),
			 0);
	assert_int_equal(tq_store_next_due_ms(store, &ms), 0);
	assert_true(ms > 0);
	tq_store_close(store);
	store = NULL;
	deadline = mono_ms() + 5000;
	while (sql_long(scans, NULL) == before && mono_ms() < deadline)
		sleep_ms(100);
	assert_true(sql_long(scans, NULL) > before);
	assert_int_equal(tq_store_open(&store, db_conninfo, POOL_SIZE, err,
				       sizeof(err)), 0);
}

/* ---- a PostgreSQL restart ----------------------------------------- */

static char pg_dir[64];
static int saved_stderr = -1;
static char pg_port[16];
static struct tq_store *rstore;

static int run_servers(const char *a1, const char *a2)
{
	const char *script = getenv("TASKQ_TEST_SERVERS");
	int status;
	pid_t pid;

	if (!script || !*script)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setenv("TASKQ_RUN_DIR", pg_dir, 1);
		setenv("TASKQ_PG_PORT", pg_port, 1);
		execl(script, script, a1, a2, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int restart_teardown(void **state)
{
	pid_t pid;

	if (saved_stderr >= 0) {
		dup2(saved_stderr, STDERR_FILENO);
		close(saved_stderr);
		saved_stderr = -1;
	}
	tq_store_close(rstore);
	rstore = NULL;
	if (pg_dir[0]) {
		run_servers("pg-stop", "fast");
		pid = fork();
		if (pid == 0) {
			execlp("rm", "rm", "-rf", pg_dir, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
		pg_dir[0] = '\0';
	}
	return 0;
}

static int count_in_file(const char *path, const char *needle)
{
	char buf[65536];
	ssize_t n;
	int fd, count = 0;
	char *p;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	for (p = buf; (p = strstr(p, needle)); p += strlen(needle))
		count++;
	return count;
}

static void test_pg_restart(void **state)
{
	const char *script = getenv("TASKQ_TEST_SERVERS");
	struct tq_job_spec spec;
	struct tq_claim c;
	char conninfo[256];
	char logpath[128];
	char err[256] = "";
	char id[37], id2[37];
	char *json = NULL;
	int pending, applied;
	int log_fd;
	int64_t deadline;
	int i;

	if (!script || !*script)
		fail_msg("TASKQ_TEST_SERVERS is not set");
	snprintf(pg_dir, sizeof(pg_dir), "/tmp/taskq-t-store-XXXXXX");
	if (!mkdtemp(pg_dir)) {
		pg_dir[0] = '\0';
		fail_msg("mkdtemp: %s", strerror(errno));
	}
	/* the server may run as an unprivileged user */
	assert_int_equal(chmod(pg_dir, 0755), 0);
	snprintf(pg_port, sizeof(pg_port), "%d", free_port());
	assert_int_equal(run_servers("pg-start", NULL), 0);
	assert_int_equal(run_servers("createdb", "taskq_t_restart"), 0);

	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%s user=taskq dbname=taskq_t_restart",
		 pg_port);
	assert_int_equal(tq_store_open(&rstore, conninfo, 3, err, sizeof(err)), 0);
	assert_int_equal(tq_store_migrate(rstore, &applied, err, sizeof(err)), 0);
	assert_int_equal(applied, (int)tq_migrations_count);
	spec_init(&spec, "durable", "{}");
	assert_int_equal(tq_store_insert(rstore, &spec, id, &json, &pending), 0);
	free(json);
	json = NULL;

	/* the daemon's log goes to a file for the outage */
	snprintf(logpath, sizeof(logpath), "%s/store.log", pg_dir);
	log_fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(log_fd >= 0);
	saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(log_fd, STDERR_FILENO) >= 0);
	close(log_fd);

	assert_int_equal(run_servers("pg-stop", "fast"), 0);
	for (i = 0; i < 20; i++) {
		assert_int_equal(tq_store_ping(rstore), -EAGAIN);
		assert_int_equal(tq_store_insert(rstore, &spec, id2, &json,
						 &pending), -EAGAIN);
		assert_null(json);
		assert_int_equal(tq_store_get_json(rstore, id, &json), -EAGAIN);
		assert_int_equal(tq_store_claim(rstore, id, 5, &c), -EAGAIN);
		sleep_ms(25);
	}
	assert_int_equal(run_servers("pg-start", NULL), 0);

	/* it comes back by itself, within the capped backoff */
	deadline = mono_ms() + 20000;
	while (tq_store_ping(rstore) != 0 && mono_ms() < deadline)
		sleep_ms(50);
	assert_int_equal(tq_store_ping(rstore), 0);
	/* every connection of the pool works again, first time */
	for (i = 0; i < 12; i++) {
		assert_int_equal(tq_store_get_json(rstore, id, &json), 0);
		free(json);
		json = NULL;
		assert_int_equal(tq_store_insert(rstore, &spec, id2, &json,
						 &pending), 0);
		free(json);
		json = NULL;
	}
	assert_int_equal(tq_store_claim(rstore, id, 5, &c), 0);
	tq_claim_free(&c);

	assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
	close(saved_stderr);
	saved_stderr = -1;
	/* the outage and the recovery, each logged once */
	assert_int_equal(count_in_file(logpath, "postgresql unreachable"), 1);
	assert_int_equal(count_in_file(logpath, "postgresql reachable again"), 1);
}

/* ---- main --------------------------------------------------------- */

static int group_setup(void **state)
{
	char err[256] = "";
	int rc;

	snprintf(db_name, sizeof(db_name), "taskq_t_store_%ld", (long)getpid());
	if (create_db(db_name) < 0)
		return -1;
	db_conninfo = conninfo_for(admin_url, db_name, NULL);
	if (!db_conninfo)
		return -1;
	sql = PQconnectdb(db_conninfo);
	if (PQstatus(sql) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect: %s", PQerrorMessage(sql));
		return -1;
	}
	/* opened before the schema exists: statements prepare on use */
	rc = tq_store_open(&store, db_conninfo, POOL_SIZE, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "tq_store_open: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	tq_store_close(store);
	store = NULL;
	PQfinish(sql);
	sql = NULL;
	if (db_name[0])
		drop_db(db_name);
	free(db_conninfo);
	db_conninfo = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_closed_port),
		cmocka_unit_test(test_connect_before_schema_quietly),
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_plans_by_primary_key),
		cmocka_unit_test(test_plans_by_partial_index),
		cmocka_unit_test(test_lists_read_the_primary_key),
		cmocka_unit_test(test_checks_refuse_bad_values),
		cmocka_unit_test(test_migrate_concurrent),
		cmocka_unit_test(test_insert_get),
		cmocka_unit_test(test_insert_scheduled),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_claim_complete),
		cmocka_unit_test(test_lost_claim_fenced),
		cmocka_unit_test(test_claim_complete_many),
		cmocka_unit_test(test_write_claims_and_outcomes),
		cmocka_unit_test(test_write_fails_whole),
		cmocka_unit_test(test_claims_are_hot),
		cmocka_unit_test(test_batches_read_only_their_rows),
		cmocka_unit_test(test_retry_promote),
		cmocka_unit_test(test_fail),
		cmocka_unit_test(test_error_message_cleaned),
		cmocka_unit_test(test_bad_uuid),
		cmocka_unit_test(test_concurrent_claims),
		cmocka_unit_test(test_killed_backends),
		cmocka_unit_test(test_insert_idempotency_key),
		cmocka_unit_test(test_insert_idempotency_key_race),
		cmocka_unit_test(test_schema_change_under_prepared),
		cmocka_unit_test(test_next_due_uses_index),
		cmocka_unit_test_teardown(test_pg_restart, restart_teardown),
	};

	admin_url = getenv("TASKQ_TEST_PG_URL");
	if (!admin_url || !*admin_url) {
		fprintf(stderr, "TASKQ_TEST_PG_URL is not set: this test needs "
				"PostgreSQL (run it through `make test`)\n");
		return 1;
	}
	if (!getenv("TASKQ_TEST_SERVERS") || !*getenv("TASKQ_TEST_SERVERS")) {
		fprintf(stderr, "TASKQ_TEST_SERVERS is not set\n");
		return 1;
	}
	return cmocka_run_group_tests_name("store", tests, group_setup,
					   group_teardown);
}
