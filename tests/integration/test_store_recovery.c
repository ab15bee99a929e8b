/*
 * Integration tests: the store's recovery statements (heartbeat, rescue,
 * reconcile, cancel, release) on a real PostgreSQL.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "store.h"

static char dbname[64];
static char url[512];
static struct tq_store *store;
static PGconn *sql;

static PGconn *connect_url(const char *u)
{
	PGconn *c = PQconnectdb(u);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect to %s: %s", u, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

static int admin(const char *command)
{
	PGconn *c = connect_url(getenv("TASKQ_TEST_PG_URL"));
	PGresult *r;
	int ok;

	if (!c)
		return -1;
	r = PQexec(c, command);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "%s: %s", command, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? 0 : -1;
}

static int group_setup(void **state)
{
	const char *admin_url = getenv("TASKQ_TEST_PG_URL");
	char cmd[256], err[256];
	const char *slash;
	int applied;

	(void)state;
	if (!admin_url) {
		fprintf(stderr, "TASKQ_TEST_PG_URL is not set: run the suite with `make test`\n");
		return -1;
	}
	snprintf(dbname, sizeof(dbname), "taskq_t_recovery_%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "DROP DATABASE IF EXISTS %s", dbname);
	if (admin(cmd))
		return -1;
	snprintf(cmd, sizeof(cmd), "CREATE DATABASE %s", dbname);
	if (admin(cmd))
		return -1;
	slash = strrchr(admin_url, '/');
	snprintf(url, sizeof(url), "%.*s/%s", (int)(slash - admin_url), admin_url, dbname);
	if (tq_store_open(&store, url, 2, err, sizeof(err)) ||
	    tq_store_migrate(store, &applied, err, sizeof(err))) {
		fprintf(stderr, "store: %s\n", err);
		return -1;
	}
	sql = connect_url(url);
	return sql ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[256];

	(void)state;
	tq_store_close(store);
	PQfinish(sql);
	if (!getenv("TASKQ_TEST_PG_URL"))
		return 0;
	snprintf(cmd, sizeof(cmd), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	return admin(cmd);
}

/* The one value of a query with one text parameter. */
static char *value(const char *query, const char *param)
{
	const char *params[1] = {param};
	PGresult *r = PQexecParams(sql, query, param ? 1 : 0, NULL, params, NULL, NULL, 0);
	char *v;

	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", query, PQerrorMessage(sql));
	v = PQntuples(r) ? strdup(PQgetvalue(r, 0, 0)) : strdup("");
	PQclear(r);
	return v;
}

static void expect(const char *query, const char *id, const char *want)
{
	char *v = value(query, id);

	if (strcmp(v, want) != 0)
		fail_msg("%s -> '%s', expected '%s'", query, v, want);
	free(v);
}

static void submit(char id[37], int max_attempts)
{
	struct tq_job_spec spec = {
		.type = "t", .payload = "{}", .queue = "default",
		.max_attempts = max_attempts, .timeout_s = 60,
	};
	char *json = NULL;
	int pending = 0;

	assert_int_equal(tq_store_insert(store, &spec, id, &json, &pending), 0);
	assert_true(pending);
	free(json);
}

static void claim(const char *id, int lease_s, struct tq_claim *c)
{
	assert_int_equal(tq_store_claim(store, id, lease_s, c), 0);
}

struct seen {
	int n;
	char ids[8][37];
	bool cancel[8];
	char status[8][16];
};

static void on_lease(void *arg, const char *id, bool cancel)
{
	struct seen *s = arg;

	snprintf(s->ids[s->n], 37, "%s", id);
	s->cancel[s->n++] = cancel;
}

static void test_heartbeat_renews_and_reports_cancel(void **state)
{
	struct tq_claim a, b;
	struct tq_lease l[3];
	struct seen s = {0};
	char ida[37], idb[37];

	(void)state;
	submit(ida, 3);
	submit(idb, 3);
	claim(ida, 2, &a);
	claim(idb, 2, &b);
	l[0] = (struct tq_lease){.id = ida, .attempt = 1, .token = a.token, .progress = 40,
				 .progress_message = "copying \"x\" \\ y"};
	l[1] = (struct tq_lease){.id = idb, .attempt = 1, .token = b.token, .progress = -1};
	{
		char *json = NULL;

		assert_int_equal(tq_store_cancel(store, idb, &json), 0);
		assert_non_null(strstr(json, "\"running\""));
		free(json);
	}
	/* neither another attempt of a nor another claim of it is renewed
	 * (a batch names a claim once: its entries are keyed by claim) */
	l[2] = (struct tq_lease){.id = ida, .attempt = 7, .token = a.token, .progress = 99};
	assert_int_equal(tq_store_heartbeat(store, &l[2], 1, 600, NULL, NULL), 0);
	l[2] = (struct tq_lease){.id = ida, .attempt = 1, .token = a.token + 1, .progress = 99};
	assert_int_equal(tq_store_heartbeat(store, &l[2], 1, 600, NULL, NULL), 0);
	assert_int_equal(tq_store_heartbeat(store, l, 2, 600, on_lease, &s), 2);
	assert_int_equal(s.n, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(s.cancel[i], strcmp(s.ids[i], idb) == 0);
	expect("SELECT progress || ' ' || progress_message FROM jobs WHERE id = $1::uuid", ida,
	       "40 copying \"x\" \\ y");
	expect("SELECT progress IS NULL FROM jobs WHERE id = $1::uuid", idb, "t");
	/* renewed to about now() + 600 s, not past timeout + lease */
	expect("SELECT lease_expires_at > now() + interval '590 s' FROM jobs WHERE id = $1::uuid",
	       ida, "t");
	expect("SELECT lease_expires_at <= started_at + interval '660 s' FROM jobs WHERE id = $1::uuid",
	       ida, "t");

	/* a cancelled running job: a retry outcome ends it cancelled */
	assert_int_equal(tq_store_retry(store, idb, 1, b.token, 0, "stopped"), 0);
	expect("SELECT status || ' ' || error_message FROM jobs WHERE id = $1::uuid", idb,
	       "cancelled cancelled");
	assert_int_equal(tq_store_complete(store, ida, 1, a.token, NULL), 0);
	tq_claim_free(&a);
	tq_claim_free(&b);
}

static void on_rescued(void *arg, const char *id, const char *status)
{
	struct seen *s = arg;

	snprintf(s->ids[s->n], 37, "%s", id);
	snprintf(s->status[s->n++], 16, "%s", status);
}

static void test_rescue_expired_leases(void **state)
{
	struct tq_claim a, b, c;
	struct seen s = {0};
	char ida[37], idb[37], idc[37];
	char *json;

	(void)state;
	/* looked at from the start, as if handed to Redis long ago */
	tq_store_set_recheck_s(store, 0);
	submit(ida, 3); /* attempts left: back to scheduled */
	submit(idb, 1); /* last attempt: failed */
	submit(idc, 3); /* cancel requested: cancelled */
	tq_store_set_recheck_s(store, 30);
	claim(ida, 0, &a);
	claim(idb, 0, &b);
	claim(idc, 0, &c);
	assert_int_equal(tq_store_cancel(store, idc, &json), 0);
	free(json);
	usleep(20 * 1000);
	assert_int_equal(tq_store_rescue(store, 100, 100, 200, on_rescued, &s), 3);
	expect("SELECT status || ' ' || error_message FROM jobs WHERE id = $1::uuid", ida,
	       "scheduled lease expired");
	expect("SELECT run_at <= now() + interval '101 ms' FROM jobs WHERE id = $1::uuid", ida, "t");
	/* none is watched: one is scheduled, the others finished */
	expect("SELECT watch_at IS NULL FROM jobs WHERE id = $1::uuid", ida, "t");
	expect("SELECT watch_at IS NULL FROM jobs WHERE id = $1::uuid", idb, "t");
	expect("SELECT watch_at IS NULL FROM jobs WHERE id = $1::uuid", idc, "t");
	expect("SELECT status || ' ' || error_message FROM jobs WHERE id = $1::uuid", idb,
	       "failed lease expired");
	expect("SELECT completed_at IS NOT NULL FROM jobs WHERE id = $1::uuid", idb, "t");
	expect("SELECT status FROM jobs WHERE id = $1::uuid", idc, "cancelled");
	/* the stale worker's late outcome is fenced out */
	assert_int_equal(tq_store_complete(store, ida, 1, a.token, "{}"), -ESTALE);
	assert_int_equal(tq_store_fail(store, idb, 1, b.token, "late"), -ESTALE);
	/* nothing more to rescue */
	assert_int_equal(tq_store_rescue(store, 100, 100, 200, NULL, NULL), 0);
	tq_claim_free(&a);
	tq_claim_free(&b);
	tq_claim_free(&c);
}

/*
 * A running job that comes due with its lease alive is not rescued: it is
 * looked at again when the lease expires (its claim left the watch alone,
 * so that the claim was a HOT update).  A finished job that is still
 * watched (changed by hand) leaves the index.
 */
static void test_rescue_waits_for_the_lease(void **state)
{
	struct tq_claim a, b;
	struct seen s = {0};
	char ida[37], idb[37];

	(void)state;
	tq_store_set_recheck_s(store, 0);
	submit(ida, 3);
	submit(idb, 3);
	tq_store_set_recheck_s(store, 30);
	claim(ida, 60, &a);
	claim(idb, 60, &b);
	assert_int_equal(tq_store_complete(store, idb, 1, b.token, NULL), 0);
	free(value("UPDATE jobs SET watch_at = now() - interval '1 s' WHERE id = $1::uuid", idb));
	expect("SELECT watch_at <= now() FROM jobs WHERE id = $1::uuid", ida, "t");
	assert_int_equal(tq_store_rescue(store, 100, 100, 200, on_rescued, &s), 0);
	assert_int_equal(s.n, 0);
	expect("SELECT status || ' ' || (watch_at = lease_expires_at) FROM jobs WHERE id = $1::uuid",
	       ida, "running true");
	expect("SELECT status || ' ' || (watch_at IS NULL) FROM jobs WHERE id = $1::uuid", idb,
	       "completed true");
	/* the lease runs out: now it is rescued */
	free(value("UPDATE jobs SET lease_expires_at = now() - interval '1 s', "
		   "watch_at = now() - interval '1 s' WHERE id = $1::uuid", ida));
	assert_int_equal(tq_store_rescue(store, 100, 100, 200, on_rescued, &s), 1);
	assert_string_equal(s.ids[0], ida);
	assert_int_equal(tq_store_complete(store, ida, 1, a.token, NULL), -ESTALE);
	tq_claim_free(&a);
	tq_claim_free(&b);
}

static void on_ready(void *arg, const char *queue, int priority, const char *id)
{
	struct seen *s = arg;

	(void)queue;
	(void)priority;
	snprintf(s->ids[s->n++], 37, "%s", id);
}

struct count_seen {
	char queue[64];
	long count, due;
};

static void on_count(void *arg, const char *queue, long count, long due)
{
	struct count_seen *c = arg;

	snprintf(c->queue, sizeof(c->queue), "%s", queue);
	c->count = count;
	c->due = due;
}

static void expect_counts(long count, long due)
{
	struct count_seen c = {0};

	assert_int_equal(tq_store_pending_counts(store, on_count, &c), 1);
	assert_string_equal(c.queue, "default");
	assert_int_equal(c.count, count);
	assert_int_equal(c.due, due);
}

static void test_reconcile_old_pending(void **state)
{
	struct seen s = {0};
	char old[37], fresh[37];

	(void)state;
	free(value("UPDATE jobs SET status = 'completed', watch_at = NULL "
		   "WHERE status = 'pending'", NULL));
	submit(old, 3);
	submit(fresh, 3);
	/* each is looked at 30 s after its hand-off */
	expect("SELECT watch_at BETWEEN now() + interval '29 s' AND now() + interval '31 s' "
	       "FROM jobs WHERE id = $1::uuid", fresh, "t");
	free(value("UPDATE jobs SET watch_at = now() - interval '1 s', "
		   "updated_at = now() - interval '1 hour' WHERE id = $1::uuid", old));
	expect_counts(2, 1);
	assert_int_equal(tq_store_reconcile(store, "default", 5, 100, on_ready, &s), 1);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.ids[0], old);
	expect("SELECT updated_at > now() - interval '1 min' AND watch_at > now() + interval '29 s' "
	       "FROM jobs WHERE id = $1::uuid", old, "t");
	/* handed again: not again before its recheck */
	expect_counts(2, 0);
	assert_int_equal(tq_store_reconcile(store, "default", 5, 100, on_ready, &s), 0);

	/* both due, none lost (Redis holds them): not handed, looked at again
	 * after as long as each has waited, between 30 s and an hour */
	free(value("UPDATE jobs SET watch_at = now() - interval '1 s', "
		   "created_at = now() - interval '2 hours' WHERE id = $1::uuid", old));
	free(value("UPDATE jobs SET watch_at = now() - interval '1 s' WHERE id = $1::uuid", fresh));
	expect_counts(2, 2);
	assert_int_equal(tq_store_reconcile(store, "default", 0, 100, on_ready, &s), 0);
	assert_int_equal(s.n, 1);
	expect("SELECT watch_at BETWEEN now() + interval '59 min' AND now() + interval '61 min' "
	       "FROM jobs WHERE id = $1::uuid", old, "t");
	expect("SELECT watch_at BETWEEN now() + interval '29 s' AND now() + interval '31 s' "
	       "FROM jobs WHERE id = $1::uuid", fresh, "t");
	expect_counts(2, 0);
}

static void test_cancel_states(void **state)
{
	struct tq_claim c;
	char id[37], done[37];
	char *json = NULL;

	(void)state;
	submit(id, 3);
	assert_int_equal(tq_store_cancel(store, id, &json), 0);
	assert_non_null(strstr(json, "\"cancelled\""));
	free(json);
	/* a cancelled job is never claimed */
	assert_int_equal(tq_store_claim(store, id, 5, &c), -ENOENT);
	assert_int_equal(tq_store_cancel(store, id, &json), -EALREADY);
	free(json);

	submit(done, 3);
	claim(done, 5, &c);
	assert_int_equal(tq_store_complete(store, done, 1, c.token, "{\"ok\":1}"), 0);
	assert_int_equal(tq_store_cancel(store, done, &json), -EALREADY);
	assert_non_null(strstr(json, "\"completed\""));
	free(json);
	assert_int_equal(tq_store_cancel(store, "00000000-0000-4000-8000-000000000000", &json), -ENOENT);
	assert_int_equal(tq_store_cancel(store, "nope", &json), -ENOENT);
	tq_claim_free(&c);
}

static void test_release_at_shutdown(void **state)
{
	struct tq_claim c;
	struct seen s = {0};
	char id[37], last[37];

	(void)state;
	submit(id, 3);
	claim(id, 60, &c);
	assert_int_equal(tq_store_release(store, id, 1, c.token, on_ready, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.ids[0], id);
	expect("SELECT status || ' ' || (lease_expires_at IS NULL) FROM jobs WHERE id = $1::uuid",
	       id, "pending true");
	/* handed to Redis again: watched from now */
	expect("SELECT watch_at BETWEEN now() + interval '29 s' AND now() + interval '31 s' "
	       "FROM jobs WHERE id = $1::uuid", id, "t");
	/* the worker's late outcome loses */
	assert_int_equal(tq_store_complete(store, id, 1, c.token, NULL), -ESTALE);
	assert_int_equal(tq_store_release(store, id, 1, c.token, on_ready, &s), -ESTALE);
	tq_claim_free(&c);

	submit(last, 1);
	claim(last, 60, &c);
	assert_int_equal(tq_store_release(store, last, 1, c.token, on_ready, &s), 0);
	assert_int_equal(s.n, 1); /* not dispatched: its attempts are spent */
	expect("SELECT status || ' ' || (watch_at IS NULL) FROM jobs WHERE id = $1::uuid", last,
	       "failed true");
	tq_claim_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heartbeat_renews_and_reports_cancel),
		cmocka_unit_test(test_rescue_expired_leases),
		cmocka_unit_test(test_rescue_waits_for_the_lease),
		cmocka_unit_test(test_reconcile_old_pending),
		cmocka_unit_test(test_cancel_states),
		cmocka_unit_test(test_release_at_shutdown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
