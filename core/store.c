/*
 * store.c - the job store: a fixed pool of libpq connections, prepared
 * statements, and one conditional UPDATE per state change.
 *
 * Pool: a connection is taken with pool_acquire() and handed back with
 * pool_release().  A connection that broke (the server closed it, or a
 * statement failed with a connection-level error) is replaced by a fresh
 * one on its next acquire.  While PostgreSQL is unreachable, reconnects
 * are spaced by a capped exponential backoff shared by the whole pool and
 * calls return -EAGAIN without touching the network.  An outage is
 * declared (and logged, once) when a reconnect fails, and over (logged
 * once) when one succeeds; a statement that loses its connection only
 * drops it, so one killed backend is not an outage.
 *
 * Statements are prepared on every connection right after it connects;
 * one that cannot be prepared yet (the jobs table does not exist before
 * the first migration) is prepared on first use instead.
 *
 * Every SQL text is a constant below; user data travels only as
 * parameters of PQexecPrepared().
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <libpq-fe.h>
#include <uuid/uuid.h>

#include "buf.h"
#include "ids.h"
#include "job.h"
#include "log.h"
#include "migrations.h"
#include "pgarray.h"
#include "store.h"
#include "utf8.h"

#define STORE_POOL_MAX 256
#define STORE_BACKOFF_MIN_MS 100
#define STORE_BACKOFF_MAX_MS 2000
#define STORE_LIST_MAX 1000
/* the default of scheduler.pending_redispatch_s */
#define STORE_RECHECK_S_DEFAULT 30
#define STORE_RETRY_DELAY_MAX_MS (366LL * 86400 * 1000)

/*
 * Key of the advisory lock taken by every migration transaction, so that
 * two daemons migrating the same database apply each migration once.
 * ("taskq" in ASCII.)  Never change it: old and new daemons must agree.
 */
#define STORE_MIGRATE_LOCK_KEY "499851160433"

/* A timestamp as the API shows it: RFC 3339, UTC, milliseconds. */
#define TS(col) \
	"to_char(" col " AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* TS of an expression that names no column: a scalar subquery that
 * refers to nothing of the row is run once per statement (an InitPlan). */
#define TS_ONCE(expr) "(SELECT " TS("(" expr ")") ")"

/* The job as GET shows it: the one definition, for insert, get and list. */
#define JOB_JSON \
	"json_build_object(" \
	"'id', id, 'type', type, 'payload', payload, 'status', status, " \
	"'queue', queue, 'priority', priority, 'attempts', attempts, " \
	"'max_attempts', max_attempts, 'timeout_s', timeout_s, " \
	"'error', error_message, 'result', result, 'progress', progress, " \
	"'progress_message', progress_message, " \
	"'run_at', " TS("run_at") ", " \
	"'lease_expires_at', " TS("lease_expires_at") ", " \
	"'created_at', " TS("created_at") ", " \
	"'updated_at', " TS("updated_at") ", " \
	"'started_at', " TS("started_at") ", " \
	"'completed_at', " TS("completed_at") ", " \
	"'idempotency_key', idempotency_key)"

/* Newest first is by id: ids increase with the time they were made
 * (core/ids.c), and the primary key serves the order (sql/008). */
#define LIST_SQL(where) \
	"SELECT json_build_object('jobs', coalesce(json_agg(l.j " \
	"ORDER BY l.id DESC), '[]'::json))::text " \
	"FROM (SELECT id, " JOB_JSON " AS j FROM jobs " where \
	" ORDER BY id DESC LIMIT $3::int) l"

/*
 * The statements that find rows by id name the state they leave as a
 * parameter, never as a literal.  Plans are generic (made once per
 * connection, see conn_connect()), and with a literal such as status =
 * 'pending' the planner may pick a scan of the whole partial index of
 * that state, which is cheapest while the table is empty and stays in
 * the plan as the backlog grows (a claim over 100,000 pending jobs took
 * 4 ms).  With a parameter no partial index applies: the plan is a
 * primary-key lookup whatever the table held when it was made.
 */

/*
 * The outcome fence: $1 the job, $2 the state ("running"), $3 the attempt,
 * $4 the claim's token.  A worker's outcome, lease renewal or hand-back
 * lands only while the job is still running the claim it was given.
 */
#define FENCE \
	"id = $1::uuid AND status = $2::text AND attempts = $3::int " \
	"AND claim_token = $4::bigint"

/*
 * A claim's commit does not wait for the disk: only the submission and the
 * outcome must.  A claim lost in a crash costs a re-run, which the delivery
 * contract allows, and its token keeps the lost run's outcome out (see
 * sql/005_claim_token.sql).  set_config(..., true) lasts until the end of
 * the statement's own transaction, whose commit reads it; as an
 * uncorrelated subquery it runs once, before the first row.
 */
#define ASYNC_COMMIT \
	"(SELECT set_config('synchronous_commit', 'off', true)) = 'off'"

/* A row's entry in a JSON object parameter keyed by "<id>:<claim token>":
 * what a batch sends for each row it names, found only by the claim that
 * holds the row now. */
#define BY_TOKEN(param) \
	"(" param "::jsonb -> (j.id::text || ':' || j.claim_token::text))"

/*
 * The hot path's writes, in batches: the rows travel as arrays (or a JSON
 * object), so that one statement (one round trip, one commit) carries
 * them all.
 *
 * Insert: the rows as ten arrays of one element per row, $1-$10, sent in
 * PostgreSQL's binary format (core/pgarray.h), which the server reads
 * without parsing text: a payload is parsed once, into jsonb.  As JSON
 * rows (json_to_recordset()) they cost the server two parses of the whole
 * batch and a third of each payload, 14 % of its CPU in a burst.
 * delay_ms and run_at_ms are NULL unless given.  $11 is the recheck
 * seconds of a job due now.  A row with c true is inserted claimed by this
 * node (running, attempt 1, lease $12 seconds, token $13), as
 * tq_claim_many would leave it; it comes back with its payload as a claim
 * returns it.
 *
 * The times it returns are nearly all the statement's now(): created_at
 * always, run_at and the lease of every job due at once.  Each of those
 * is formatted once per statement (TS_ONCE), not once per row: to_char()
 * for three columns of every row was 4 % of the server's CPU in a burst.
 */
#define INSERT_MANY_SQL \
	"INSERT INTO jobs (id, type, payload, status, queue, priority, " \
	"max_attempts, timeout_s, run_at, watch_at, attempts, started_at, " \
	"lease_expires_at, claim_token) " \
	"SELECT r.id, r.type, r.payload, " \
	"CASE WHEN r.c THEN 'running' " \
	"WHEN t.run_at > now() THEN 'scheduled' ELSE 'pending' END, " \
	"r.queue, r.priority, r.max_attempts, r.timeout_s, t.run_at, " \
	"CASE WHEN t.run_at <= now() " \
	"THEN now() + make_interval(secs => $11::int) END, " \
	"CASE WHEN r.c THEN 1 ELSE 0 END, CASE WHEN r.c THEN now() END, " \
	"CASE WHEN r.c THEN now() + make_interval(secs => $12::int) END, " \
	"CASE WHEN r.c THEN $13::bigint END " \
	"FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], " \
	"$5::smallint[], $6::int[], $7::int[], $8::bigint[], $9::bigint[], " \
	"$10::boolean[]) AS r(id, type, payload, queue, priority, " \
	"max_attempts, timeout_s, delay_ms, run_at_ms, c) " \
	"CROSS JOIN LATERAL (SELECT CASE " \
	"WHEN r.delay_ms IS NOT NULL " \
	"THEN now() + r.delay_ms * interval '1 millisecond' " \
	"WHEN r.run_at_ms IS NOT NULL " \
	"THEN to_timestamp(r.run_at_ms / 1000.0) " \
	"ELSE now() END AS run_at) t " \
	"RETURNING id::text AS id, status, " \
	"CASE WHEN created_at = now() THEN " TS_ONCE("now()") " " \
	"ELSE " TS("created_at") " END AS created, " \
	"CASE WHEN run_at = now() THEN " TS_ONCE("now()") " " \
	"ELSE " TS("run_at") " END AS run, " \
	"CASE WHEN lease_expires_at IS NOT NULL THEN " \
	TS_ONCE("now() + make_interval(secs => $12::int)") " END AS lease, " \
	"CASE WHEN status = 'running' THEN payload::text END AS payload"

/*
 * Outcomes: ids the ids (uuid[]), map {"<id>:<claim token>": {"a": attempt, "r":
 * result}, ...}, st "running".  The rows are found by id = ANY (no join,
 * whose plans go wrong: see conn_connect()), and each row's entry by its
 * id and the token it holds, so that an outcome of an older claim of the
 * same job finds nothing.
 */
#define COMPLETE_MANY_SQL(ids, map, st) \
	"UPDATE jobs j SET status = 'completed', " \
	"result = " BY_TOKEN(map) " -> 'r', " \
	"completed_at = now(), updated_at = now(), lease_expires_at = NULL, " \
	"watch_at = NULL " \
	"WHERE j.id = ANY(" ids "::uuid[]) AND j.status = " st "::text " \
	"AND j.attempts = (" BY_TOKEN(map) " ->> 'a')::int " \
	"RETURNING j.id::text AS id, j.claim_token"

/* The scheduled jobs, as jobs_scheduled_idx's predicate lets a plan read
 * them (sql/006_watch_at.sql). */
#define SCHEDULED \
	"watch_at IS NULL AND completed_at IS NULL AND status = 'scheduled'"

enum stmt_id {
	ST_PING,
	ST_MIG_LOCK,
	ST_MIG_HAS,
	ST_MIG_RECORD,
	ST_INSERT,
	ST_GET,
	ST_GET_BY_KEY,
	ST_LIST_ALL,
	ST_LIST_STATUS,
	ST_LIST_TYPE,
	ST_LIST_BOTH,
	ST_CLAIM,
	ST_COMPLETE,
	ST_RETRY,
	ST_FAIL,
	ST_PROMOTE,
	ST_NEXT_DUE,
	ST_HEARTBEAT,
	ST_RESCUE,
	ST_RECONCILE,
	ST_PENDING_COUNTS,
	ST_CANCEL,
	ST_RELEASE,
	ST_INSERT_MANY,
	ST_CLAIM_MANY,
	ST_COMPLETE_MANY,
	ST_INSERT_COMPLETE,
	ST_COUNT
};

struct stmt {
	const char *name;
	const char *sql;
};

static const struct stmt stmts[ST_COUNT] = {
	[ST_PING] = {"tq_ping", "SELECT 1"},
	[ST_MIG_LOCK] = {"tq_mig_lock",
		"SELECT pg_advisory_xact_lock($1::bigint)"},
	[ST_MIG_HAS] = {"tq_mig_has",
		"SELECT 1 FROM schema_migrations WHERE version = $1::int"},
	[ST_MIG_RECORD] = {"tq_mig_record",
		"INSERT INTO schema_migrations (version, name) "
		"VALUES ($1::int, $2::text)"},
	/* $8 delay ms from the database's now(), $9 absolute epoch ms,
	 * $10 the pending recheck in seconds, $11 the idempotency key or
	 * NULL: a row whose key another row holds is not inserted, and
	 * nothing comes back (ST_GET_BY_KEY finds that row) */
	[ST_INSERT] = {"tq_insert",
		"INSERT INTO jobs (id, type, payload, status, queue, priority, "
		"max_attempts, timeout_s, run_at, watch_at, idempotency_key) "
		"SELECT $1::uuid, $2::text, $3::jsonb, "
		"CASE WHEN t.run_at > now() THEN 'scheduled' ELSE 'pending' END, "
		"$4::text, $5::smallint, $6::int, $7::int, t.run_at, "
		"CASE WHEN t.run_at <= now() "
		"THEN now() + make_interval(secs => $10::int) END, $11::text "
		"FROM (SELECT CASE "
		"WHEN $8::bigint IS NOT NULL "
		"THEN now() + $8::bigint * interval '1 millisecond' "
		"WHEN $9::bigint IS NOT NULL "
		"THEN to_timestamp($9::bigint / 1000.0) "
		"ELSE now() END AS run_at) t "
		"ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL "
		"DO NOTHING "
		"RETURNING status, " JOB_JSON "::text"},
	[ST_GET] = {"tq_get",
		"SELECT " JOB_JSON "::text FROM jobs WHERE id = $1::uuid"},
	/* the job holding key $1, and whether it was submitted with type
	 * $2 and payload $3 */
	[ST_GET_BY_KEY] = {"tq_get_by_key",
		"SELECT id::text, type = $2::text AND payload = $3::jsonb, "
		JOB_JSON "::text FROM jobs WHERE idempotency_key = $1::text"},
	/* $1 status, $2 type: every variant takes both, so that each one
	 * is planned for the index it can use */
	[ST_LIST_ALL] = {"tq_list_all",
		LIST_SQL("WHERE $1::text IS NULL AND $2::text IS NULL")},
	[ST_LIST_STATUS] = {"tq_list_status",
		LIST_SQL("WHERE status = $1::text AND $2::text IS NULL")},
	[ST_LIST_TYPE] = {"tq_list_type",
		LIST_SQL("WHERE $1::text IS NULL AND type = $2::text")},
	[ST_LIST_BOTH] = {"tq_list_both",
		LIST_SQL("WHERE status = $1::text AND type = $2::text")},
	[ST_CLAIM] = {"tq_claim",
		"UPDATE jobs SET status = 'running', attempts = attempts + 1, "
		"started_at = now(), updated_at = now(), "
		"lease_expires_at = now() + make_interval(secs => $2::int), "
		"claim_token = $3::bigint "
		"WHERE id = $1::uuid AND status = $4::text AND " ASYNC_COMMIT " "
		"RETURNING type, payload::text, queue, attempts, max_attempts, "
		"timeout_s"},
	[ST_COMPLETE] = {"tq_complete",
		"UPDATE jobs SET status = 'completed', result = $5::jsonb, "
		"completed_at = now(), updated_at = now(), "
		"lease_expires_at = NULL, watch_at = NULL "
		"WHERE " FENCE},
	[ST_RETRY] = {"tq_retry",
		"UPDATE jobs SET status = CASE WHEN cancel_requested "
		"THEN 'cancelled' ELSE 'scheduled' END, "
		"run_at = now() + $5::bigint * interval '1 millisecond', "
		"watch_at = NULL, "
		"completed_at = CASE WHEN cancel_requested THEN now() END, "
		"error_message = CASE WHEN cancel_requested THEN 'cancelled' "
		"ELSE $6::text END, updated_at = now(), "
		"lease_expires_at = NULL "
		"WHERE " FENCE},
	[ST_FAIL] = {"tq_fail",
		"UPDATE jobs SET status = CASE WHEN cancel_requested "
		"THEN 'cancelled' ELSE 'failed' END, error_message = $5::text, "
		"completed_at = now(), updated_at = now(), "
		"lease_expires_at = NULL, watch_at = NULL "
		"WHERE " FENCE},
	/*
	 * The periodic statements pick their rows in a CTE (locked, SKIP
	 * LOCKED, materialised once) and join them by primary key.  Written
	 * as "id IN (SELECT ... FOR UPDATE)" the locking subquery cannot
	 * become a join, and with many candidate rows it ran once per row:
	 * a reconcile over 200,000 pending jobs ran for ten minutes.
	 */
	/*
	 * The periodic statements read the two partial indexes of open jobs
	 * (sql/006_watch_at.sql): jobs_scheduled_idx by run_at, and
	 * jobs_watch_idx, from its oldest entry up to now(), for the pending
	 * and running jobs whose watch time has come (few at any moment,
	 * since each pass moves them on).
	 *
	 * Due scheduled jobs become pending; $2 the pending recheck seconds.
	 */
	[ST_PROMOTE] = {"tq_promote",
		"WITH picked AS (SELECT id FROM jobs WHERE " SCHEDULED " "
		"AND run_at <= now() ORDER BY run_at LIMIT $1::int "
		"FOR UPDATE SKIP LOCKED) "
		"UPDATE jobs j SET status = 'pending', updated_at = now(), "
		"watch_at = now() + make_interval(secs => $2::int) "
		"FROM picked WHERE j.id = picked.id "
		"RETURNING j.queue, j.priority, j.id::text"},
	/* min(run_at) over jobs_scheduled_idx */
	[ST_NEXT_DUE] = {"tq_next_due",
		"SELECT greatest(0, ceil(extract(epoch FROM (t.m - now())) "
		"* 1000))::bigint FROM (SELECT min(run_at) AS m FROM jobs "
		"WHERE " SCHEDULED ") t WHERE t.m IS NOT NULL"},
	/*
	 * Renew the leases of a node's running attempts and store their
	 * progress: $1 ids, $2 lease seconds, $3 {"<id>:<claim token>":
	 * {"a": attempt, "p": progress, "m": message}, ...} ("p" absent:
	 * unchanged), $4 "running".  Rows by id = ANY, values by id and token,
	 * as for the outcomes of a batch.  A lease is never renewed past the
	 * attempt's timeout plus one lease, so a hung handler loses it.
	 */
	[ST_HEARTBEAT] = {"tq_heartbeat",
		"UPDATE jobs j SET lease_expires_at = least("
		"now() + make_interval(secs => $2::int), "
		"j.started_at + make_interval(secs => j.timeout_s + $2::int)), "
		"progress = coalesce((" BY_TOKEN("$3") " ->> 'p')::smallint, j.progress), "
		"progress_message = CASE WHEN (" BY_TOKEN("$3") " ->> 'p') IS NULL "
		"THEN j.progress_message ELSE " BY_TOKEN("$3") " ->> 'm' END "
		"WHERE j.id = ANY($1::uuid[]) AND j.status = $4::text "
		"AND j.attempts = (" BY_TOKEN("$3") " ->> 'a')::int "
		"RETURNING j.id::text, j.cancel_requested"},
	/*
	 * Due running jobs, $1 at a time.  Those whose lease expired (their
	 * worker died or hung) go back to scheduled with backoff ($2 base ms,
	 * $3 cap ms, full jitter), failed when attempts are exhausted,
	 * cancelled when a cancel was requested; those still leased are
	 * looked at again when the lease expires (heartbeats move the lease,
	 * not the watch, so that they stay HOT).  A finished job still
	 * watched (changed by hand) leaves the index.  Returns the rescued.
	 */
	[ST_RESCUE] = {"tq_rescue",
		"WITH picked AS (SELECT id, status = 'running' "
		"AND lease_expires_at < now() AS expired, "
		"(random() * least($3::float8, $2::float8 * "
		"power(2::float8, least(attempts - 1, 40))))::bigint "
		"* interval '1 millisecond' AS delay "
		"FROM jobs WHERE watch_at <= now() AND status <> 'pending' "
		"ORDER BY watch_at LIMIT $1::int FOR UPDATE SKIP LOCKED), "
		"kept AS (UPDATE jobs j SET watch_at = CASE WHEN j.status = 'running' "
		"THEN j.lease_expires_at END "
		"FROM picked WHERE j.id = picked.id AND NOT picked.expired) "
		"UPDATE jobs j SET status = CASE WHEN cancel_requested THEN 'cancelled' "
		"WHEN attempts >= max_attempts THEN 'failed' ELSE 'scheduled' END, "
		"run_at = now() + picked.delay, watch_at = NULL, "
		"completed_at = CASE WHEN cancel_requested OR attempts >= max_attempts "
		"THEN now() END, "
		"error_message = CASE WHEN cancel_requested THEN 'cancelled' "
		"ELSE 'lease expired' END, "
		"lease_expires_at = NULL, updated_at = now() "
		"FROM picked WHERE j.id = picked.id AND picked.expired "
		"RETURNING j.id::text, j.status"},
	/*
	 * Due pending jobs of queue $1 (not claimed within $4 seconds of
	 * their hand-off to Redis), $2 at a time, oldest first.  The first
	 * $3 are handed again (the scheduler knows how many Redis lost) and
	 * looked at again in $4 seconds; the others are still in Redis's
	 * backlog and are looked at again after as long as they have waited
	 * (at least $4 s, at most an hour), so that a long backlog costs
	 * each job a few rechecks, not one every $4 seconds.  Column 4 tells
	 * which rows were handed again.
	 */
	[ST_RECONCILE] = {"tq_reconcile",
		"WITH picked AS (SELECT id, watch_at FROM jobs "
		"WHERE watch_at <= now() AND status = 'pending' "
		"AND queue = $1::text ORDER BY watch_at LIMIT $2::int "
		"FOR UPDATE SKIP LOCKED), "
		"ranked AS (SELECT id, row_number() OVER (ORDER BY watch_at) "
		"<= $3::int AS again FROM picked) "
		"UPDATE jobs j SET "
		"updated_at = CASE WHEN r.again THEN now() ELSE j.updated_at END, "
		"watch_at = now() + CASE WHEN r.again "
		"THEN make_interval(secs => $4::int) "
		"ELSE least(greatest(make_interval(secs => $4::int), "
		"now() - j.created_at), interval '1 hour') END "
		"FROM ranked r WHERE j.id = r.id "
		"RETURNING j.queue, j.priority, j.id::text, r.again"},
	/* pending jobs per queue, and how many of them are due */
	[ST_PENDING_COUNTS] = {"tq_pending_counts",
		"SELECT queue, count(*), count(*) FILTER (WHERE watch_at <= now()) "
		"FROM jobs WHERE watch_at IS NOT NULL AND status = 'pending' "
		"GROUP BY queue"},
	/* pending/scheduled -> cancelled at once; running: requested */
	[ST_CANCEL] = {"tq_cancel",
		"UPDATE jobs SET cancel_requested = true, "
		"status = CASE WHEN status = 'running' THEN status "
		"ELSE 'cancelled' END, "
		"completed_at = CASE WHEN status = 'running' THEN NULL "
		"ELSE now() END, "
		"error_message = CASE WHEN status = 'running' THEN error_message "
		"ELSE 'cancelled' END, "
		"watch_at = CASE WHEN status = 'running' THEN watch_at END, "
		"updated_at = now() "
		"WHERE id = $1::uuid "
		"AND status IN ('pending', 'scheduled', 'running') "
		"RETURNING " JOB_JSON "::text"},
	/*
	 * Hand a running attempt back at shutdown: as a lease expiry would,
	 * but at once and without backoff.
	 */
	/* The hot path, in batches (see INSERT_MANY_SQL). */
	[ST_INSERT_MANY] = {"tq_insert_many", INSERT_MANY_SQL},
	[ST_CLAIM_MANY] = {"tq_claim_many",
		"UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, "
		"started_at = now(), updated_at = now(), "
		"lease_expires_at = now() + make_interval(secs => $2::int), "
		"claim_token = $3::bigint "
		"WHERE j.id = ANY($1::uuid[]) AND j.status = $4::text AND " ASYNC_COMMIT " "
		"RETURNING j.id::text, j.type, j.payload::text, j.queue, j.attempts, "
		"j.max_attempts, j.timeout_s"},
	[ST_COMPLETE_MANY] = {"tq_complete_many", COMPLETE_MANY_SQL("$1", "$2", "$3")},
	/*
	 * Both in one statement, so that the outcomes ride in the commit the
	 * submissions wait for anyway: one transaction, one flush.  The
	 * outcomes' rows come after the inserted ones, with a NULL status
	 * and their claim token.  (An UPDATE in a WITH does not see the
	 * rows the INSERT beside it makes: the outcomes are of older jobs.)
	 */
	[ST_INSERT_COMPLETE] = {"tq_insert_complete",
		"WITH i AS (" INSERT_MANY_SQL "), "
		"d AS (" COMPLETE_MANY_SQL("$14", "$15", "$16") ") "
		"SELECT id, status, created, run, lease, payload, NULL FROM i "
		"UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, claim_token::text FROM d"},
	[ST_RELEASE] = {"tq_release",
		"UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' "
		"WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, "
		"completed_at = CASE WHEN cancel_requested OR attempts >= max_attempts "
		"THEN now() END, "
		"error_message = CASE WHEN cancel_requested THEN 'cancelled' "
		"ELSE 'interrupted by shutdown' END, "
		"run_at = now(), lease_expires_at = NULL, updated_at = now(), "
		"watch_at = CASE WHEN NOT cancel_requested "
		"AND attempts < max_attempts "
		"THEN now() + make_interval(secs => $5::int) END "
		"WHERE " FENCE " "
		"RETURNING status, queue, priority"},
};

_Static_assert(ST_COUNT <= 32, "prepared-statement bitmap is 32 bits");

struct store_conn {
	PGconn *pg;       /* NULL or broken: reconnect on next acquire */
	uint32_t prepared; /* bit i: stmts[i] is prepared on pg */
};

struct tq_store {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *conninfo;
	int size;
	struct store_conn *conns;
	int *idle; /* stack of indexes of idle connections */
	int nidle;
	/* reachability, under lock */
	bool down;            /* outage logged, recovery not yet */
	int backoff_ms;
	int64_t next_try_ms;  /* while down: no reconnect before this */
	/* the next claim's token: a random start, then one up per claim */
	_Atomic int64_t next_token;
	/* seconds after a hand-off to Redis that a pending job is looked at
	 * again (tq_store_set_recheck_s), as text for the statements */
	char recheck_s[16];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	if (vsnprintf(err, errlen, fmt, ap) < 0)
		err[0] = '\0';
	va_end(ap);
}

/* libpq messages end with a newline; logs and err buffers do not. */
static void trim_msg(const char *in, char *out, size_t outlen)
{
	size_t n;

	if (!in)
		in = "";
	n = strlen(in);
	while (n > 0 && (in[n - 1] == '\n' || in[n - 1] == ' '))
		n--;
	if (n >= outlen)
		n = outlen - 1;
	memmove(out, in, n);
	out[n] = '\0';
}

static void notice_processor(void *arg, const char *message)
{
	char msg[512];

	trim_msg(message, msg, sizeof(msg));
	tq_debug("postgresql notice: %s", msg);
}

/* ---- reachability ------------------------------------------------- */

static void note_outage(struct tq_store *s, const char *why)
{
	int64_t now = mono_ms();
	bool first = false;

	pthread_mutex_lock(&s->lock);
	if (!s->down) {
		s->down = true;
		s->backoff_ms = STORE_BACKOFF_MIN_MS;
		first = true;
	} else if (s->backoff_ms < STORE_BACKOFF_MAX_MS) {
		s->backoff_ms *= 2;
		if (s->backoff_ms > STORE_BACKOFF_MAX_MS)
			s->backoff_ms = STORE_BACKOFF_MAX_MS;
	}
	s->next_try_ms = now + s->backoff_ms;
	pthread_mutex_unlock(&s->lock);
	if (first)
		tq_warn("postgresql unreachable, retrying in the background: %s",
			why);
}

static void note_reachable(struct tq_store *s)
{
	bool was_down;

	pthread_mutex_lock(&s->lock);
	was_down = s->down;
	s->down = false;
	s->backoff_ms = STORE_BACKOFF_MIN_MS;
	s->next_try_ms = 0;
	pthread_mutex_unlock(&s->lock);
	if (was_down)
		tq_info("postgresql reachable again");
}

/* May a reconnect be tried now?  While down, at most one try per backoff
 * interval for the whole pool: the first caller reserves the slot. */
static bool may_reconnect(struct tq_store *s)
{
	int64_t now = mono_ms();
	bool ok = true;

	pthread_mutex_lock(&s->lock);
	if (s->down) {
		if (now < s->next_try_ms)
			ok = false;
		else
			s->next_try_ms = now + s->backoff_ms;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* SQLSTATEs that mean "the server is not there right now". */
static bool sqlstate_transient(const char *st)
{
	if (!st)
		return false;
	return strncmp(st, "08", 2) == 0 ||   /* connection exception */
	       strcmp(st, "57P01") == 0 ||     /* admin_shutdown */
	       strcmp(st, "57P02") == 0 ||     /* crash_shutdown */
	       strcmp(st, "57P03") == 0 ||     /* cannot_connect_now */
	       strcmp(st, "53300") == 0;       /* too_many_connections */
}

/* ---- connections -------------------------------------------------- */

static void conn_drop(struct store_conn *c)
{
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
	c->prepared = 0;
}

static bool conn_ok(struct store_conn *c)
{
	return c->pg && PQstatus(c->pg) == CONNECTION_OK;
}

/*
 * An idle connection has nothing to read unless the server closed it (a
 * restart sends a termination notice, then EOF).  Read what is there so
 * that libpq notices the EOF and marks the connection bad: better a
 * reconnect now than a failed statement later.
 */
static void conn_check_idle(struct store_conn *c)
{
	struct pollfd pfd;
	int i;

	for (i = 0; i < 4 && conn_ok(c); i++) {
		pfd.fd = PQsocket(c->pg);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
			return;
		if (!PQconsumeInput(c->pg))
			return;
	}
}

/* Prepare statement id on c.  0, or -1 with the failed result in *failed
 * (the caller PQclear()s it) when failed is not NULL. */
static int conn_prepare(struct store_conn *c, int id, PGresult **failed)
{
	PGresult *res = PQprepare(c->pg, stmts[id].name, stmts[id].sql, 0, NULL);

	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		c->prepared |= 1u << id;
		PQclear(res);
		return 0;
	}
	if (failed)
		*failed = res;
	else
		PQclear(res);
	return -1;
}

static int conn_connect(struct tq_store *s, struct store_conn *c,
			char *why, size_t whylen)
{
	/* defaults first: the caller's conninfo (expanded from dbname)
	 * overrides them */
	/*
	 * Plans: every statement of taskqd is written for an index (the
	 * primary key, or the partial index of the state it reads), and is
	 * planned once per connection (generic plans): planning each
	 * execution afresh cost a quarter of PostgreSQL's CPU on the hot
	 * path.  A generic plan made while the table is small would keep
	 * hashing or scanning the whole table as it grows, so sequential
	 * scans, hash and merge joins are priced out.  That is not enough for
	 * a join of an unnest() of ids with jobs: planned while the table is
	 * (nearly) empty, its cheapest generic plan reads the whole primary
	 * key in order and filters it against the ids, which made every claim
	 * of a burst after an empty table read the whole backlog, for a
	 * minute, until autovacuum's analyze replaced the plan.  So a batch
	 * that names rows says "id = ANY($1)", which no plan can serve but
	 * by looking the ids up; outcomes and heartbeats read their per-row
	 * values from a JSON object keyed by id and claim token (BY_TOKEN)
	 * instead of joining them.  Planning such joins at each execution
	 * instead cost 12 % of PostgreSQL's CPU in a burst.
	 */
	static const char *const keys[] = {
		"connect_timeout", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "fallback_application_name", "options",
		"dbname", NULL,
	};
	const char *vals[] = {"5", "30", "10", "3", "taskqd",
			      "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off "
			      "-c enable_hashjoin=off -c enable_mergejoin=off",
			      s->conninfo, NULL};
	PGresult *res;
	bool schema;
	int i;

	conn_drop(c);
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (!c->pg) {
		set_err(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (PQstatus(c->pg) != CONNECTION_OK) {
		trim_msg(PQerrorMessage(c->pg), why, whylen);
		conn_drop(c);
		return -EAGAIN;
	}
	PQsetNoticeProcessor(c->pg, notice_processor, NULL);
	/* Statements on tables that do not exist yet are prepared on first
	 * use.  Before the first migration none is prepared here: each
	 * would fail and leave an error in PostgreSQL's log, two dozen for
	 * every new connection of a fresh install. */
	res = PQexec(c->pg, "SELECT to_regclass('jobs') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		PQclear(res);
		if (!conn_ok(c)) {
			trim_msg(PQerrorMessage(c->pg), why, whylen);
			conn_drop(c);
			return -EAGAIN;
		}
		return 0; /* unknown: leave them all to first use */
	}
	schema = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	for (i = 0; schema && i < ST_COUNT; i++) {
		if (conn_prepare(c, i, NULL) < 0 && !conn_ok(c)) {
			trim_msg(PQerrorMessage(c->pg), why, whylen);
			conn_drop(c);
			return -EAGAIN;
		}
	}
	return 0;
}

static int pool_acquire(struct tq_store *s, struct store_conn **out)
{
	struct store_conn *c;
	char why[512];
	int idx;
	int rc;

	pthread_mutex_lock(&s->lock);
	while (s->nidle == 0)
		pthread_cond_wait(&s->cond, &s->lock);
	idx = s->idle[--s->nidle];
	pthread_mutex_unlock(&s->lock);
	c = &s->conns[idx];

	conn_check_idle(c);
	if (conn_ok(c)) {
		*out = c;
		return 0;
	}
	if (!may_reconnect(s)) {
		rc = -EAGAIN;
		goto fail;
	}
	rc = conn_connect(s, c, why, sizeof(why));
	if (rc < 0) {
		note_outage(s, why);
		rc = -EAGAIN;
		goto fail;
	}
	note_reachable(s);
	*out = c;
	return 0;
fail:
	pthread_mutex_lock(&s->lock);
	s->idle[s->nidle++] = idx;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void pool_release(struct tq_store *s, struct store_conn *c)
{
	/* a connection left inside a transaction cannot be reused as is */
	if (c->pg && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		conn_drop(c);
	pthread_mutex_lock(&s->lock);
	s->idle[s->nidle++] = (int)(c - s->conns);
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/*
 * Turn a failed statement into an errno, and log it once.  A
 * connection-level failure drops the connection (reconnected on next
 * acquire) and means -EAGAIN.
 */
static int classify(struct tq_store *s, struct store_conn *c,
		    const PGresult *res, const char *what)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char msg[512];

	trim_msg(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg), msg,
		 sizeof(msg));
	if (!msg[0])
		trim_msg(PQerrorMessage(c->pg), msg, sizeof(msg));
	if (!res || !conn_ok(c) || sqlstate_transient(st)) {
		/* the reconnect on next acquire tells whether this is an
		 * outage (and logs it once) or one lost connection */
		tq_debug("store %s: connection lost: %s", what, msg);
		conn_drop(c);
		return -EAGAIN;
	}
	if (st && strcmp(st, "23505") == 0) {
		tq_debug("store %s: %s", what, msg);
		return -EEXIST;
	}
	if (st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0)) {
		tq_debug("store %s: %s", what, msg);
		return -EINVAL;
	}
	if (st && (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)) {
		tq_warn("store %s: %s", what, msg);
		return -EAGAIN;
	}
	tq_error("store %s failed: %s", what, msg);
	return -EIO;
}

/* Statement id prepared on c (now, unless it already was): 0 or an
 * errno, logged. */
static int conn_ensure_prepared(struct tq_store *s, struct store_conn *c, int id)
{
	PGresult *res = NULL;
	int rc;

	if ((c->prepared & (1u << id)) || conn_prepare(c, id, &res) == 0)
		return 0;
	rc = classify(s, c, res, stmts[id].name);
	PQclear(res);
	return rc;
}

/* The parameters of a statement: text, unless formats says 1 (binary,
 * with its length in lengths) for one. */
struct params {
	int n;
	const char *const *values;
	const int *lengths;
	const int *formats;
};

/*
 * A migration applied while this connection holds prepared statements
 * (by another node, or by an operator) may change the type of a column
 * a statement returns, as 007 did for status.  PostgreSQL keeps the
 * result type a statement was prepared with and refuses it at every
 * execution from then on (feature_not_supported, "cached plan must not
 * change result type"), on every connection that prepared it.  Outside
 * a transaction block the refused statement did nothing: forget this
 * connection's statements, so that each is prepared again on its next
 * use.  true when the statement may be run again.
 */
static bool conn_replan(struct store_conn *c, const PGresult *failed, const char *what)
{
	const char *st = PQresultErrorField(failed, PG_DIAG_SQLSTATE);
	PGresult *res;
	bool ok;

	if (!st || strcmp(st, "0A000") != 0 || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		return false;
	res = PQexec(c->pg, "DEALLOCATE ALL");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (!ok)
		return false;
	c->prepared = 0;
	tq_warn("store %s: the schema changed since this connection prepared its "
		"statements; preparing them again", what);
	return true;
}

/*
 * Run a prepared statement.  Returns the result (caller PQclear()s) or
 * NULL with *rc set.
 */
static PGresult *conn_exec_params(struct tq_store *s, struct store_conn *c, int id,
				  const struct params *p, int *rc)
{
	PGresult *res;
	ExecStatusType es;
	bool replanned = false;

	for (;;) {
		*rc = conn_ensure_prepared(s, c, id);
		if (*rc)
			return NULL;
		res = PQexecPrepared(c->pg, stmts[id].name, p->n, p->values, p->lengths,
				     p->formats, 0);
		es = PQresultStatus(res);
		if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK)
			break;
		if (!replanned && res && conn_replan(c, res, stmts[id].name)) {
			replanned = true;
			PQclear(res);
			continue;
		}
		*rc = classify(s, c, res, stmts[id].name);
		PQclear(res);
		return NULL;
	}
	*rc = 0;
	return res;
}

/* conn_exec_params() with text parameters. */
static PGresult *conn_exec(struct tq_store *s, struct store_conn *c, int id,
			   int nparams, const char *const *params, int *rc)
{
	const struct params p = {.n = nparams, .values = params};

	return conn_exec_params(s, c, id, &p, rc);
}

/* A constant SQL text (migrations, transaction control): no parameters. */
static int conn_exec_simple(struct tq_store *s, struct store_conn *c,
			    const char *sql, const char *what, char *err,
			    size_t errlen)
{
	PGresult *res;
	ExecStatusType es;
	int rc = 0;

	res = PQexec(c->pg, sql);
	es = PQresultStatus(res);
	if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
		set_err(err, errlen, "%s: %s", what,
			res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
		if (err && errlen)
			trim_msg(err, err, errlen);
		rc = classify(s, c, res, what);
	}
	PQclear(res);
	return rc;
}

/* Run one statement on a pooled connection. */
static PGresult *store_exec_params(struct tq_store *s, int id, const struct params *p,
				   int *rc)
{
	struct store_conn *c;
	PGresult *res;

	*rc = pool_acquire(s, &c);
	if (*rc < 0)
		return NULL;
	res = conn_exec_params(s, c, id, p, rc);
	pool_release(s, c);
	return res;
}

/* store_exec_params() with text parameters. */
static PGresult *store_exec(struct tq_store *s, int id, int nparams,
			    const char *const *params, int *rc)
{
	const struct params p = {.n = nparams, .values = params};

	return store_exec_params(s, id, &p, rc);
}

/* A JSON string: runs of plain characters copied at once; quote,
 * backslash and control characters escaped. */
static void tb_put_json_string(struct tq_buf *b, const char *s)
{
	const char *run = s;
	char esc[8];

	tq_buf_put(b, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch != '"' && ch != '\\' && ch >= 0x20)
			continue;
		tq_buf_put(b, run, (size_t)(s - run));
		if (ch == '"' || ch == '\\')
			snprintf(esc, sizeof(esc), "\\%c", ch);
		else
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
		tq_buf_puts(b, esc);
		run = s + 1;
	}
	tq_buf_put(b, run, (size_t)(s - run));
	tq_buf_put(b, "\"", 1);
}

/* ,"key":value for an integer */
static void tb_put_json_int(struct tq_buf *b, const char *key, long long v)
{
	char num[48];

	snprintf(num, sizeof(num), ",\"%s\":%lld", key, v);
	tq_buf_puts(b, num);
}

/* The start of a row's entry in a BY_TOKEN object, after "{" for the
 * first entry or "," for the others: "<id>:<token>":{"a":<attempt> */
static void tb_put_token_entry(struct tq_buf *b, const char *id, int64_t token, int attempt)
{
	char num[64];

	tq_buf_puts(b, b->len ? ",\"" : "{\"");
	tq_buf_puts(b, id);
	snprintf(num, sizeof(num), ":%" PRId64 "\":{\"a\":%d", token, attempt);
	tq_buf_puts(b, num);
}

int tq_store_explain(struct tq_store *s, const char *name, char **plan)
{
	struct tq_buf sql = {0}, text = {0};
	struct store_conn *c;
	PGresult *res = NULL;
	int id, rc, n;

	*plan = NULL;
	for (id = 0; id < ST_COUNT && strcmp(stmts[id].name, name) != 0; id++)
		;
	if (id == ST_COUNT)
		return -ENOENT;
	rc = pool_acquire(s, &c);
	if (rc < 0)
		return rc;
	rc = conn_ensure_prepared(s, c, id);
	if (rc)
		goto out;
	res = PQdescribePrepared(c->pg, stmts[id].name);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = classify(s, c, res, stmts[id].name);
		goto out;
	}
	n = PQnparams(res);
	PQclear(res);
	tq_buf_puts(&sql, "EXPLAIN (COSTS OFF) EXECUTE ");
	tq_buf_puts(&sql, stmts[id].name);
	for (int i = 0; i < n; i++)
		tq_buf_puts(&sql, i ? ", NULL" : "(NULL");
	tq_buf_puts(&sql, n ? ")" : "");
	if (sql.failed) {
		res = NULL;
		rc = -ENOMEM;
		goto out;
	}
	res = PQexec(c->pg, sql.p);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = classify(s, c, res, "explain");
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		tq_buf_puts(&text, PQgetvalue(res, i, 0));
		tq_buf_puts(&text, "\n");
	}
	if (text.failed) {
		rc = -ENOMEM;
		goto out;
	}
	*plan = text.p;
	text.p = NULL;
	rc = 0;
out:
	PQclear(res);
	pool_release(s, c);
	tq_buf_free(&sql);
	tq_buf_free(&text);
	return rc;
}

/* ---- open / close ------------------------------------------------- */

/* A start for the claim tokens that no other process is likely to share. */
static int64_t random_token_base(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = ((uint64_t)getpid() << 40) ^ (uint64_t)time(NULL);
	/* positive, with room to count up */
	return (int64_t)(v >> 2);
}

void tq_store_set_recheck_s(struct tq_store *s, int seconds)
{
	snprintf(s->recheck_s, sizeof(s->recheck_s), "%d", seconds > 0 ? seconds : 0);
}

int tq_store_open(struct tq_store **out, const char *conninfo, int pool_size,
		  char *err, size_t errlen)
{
	struct tq_store *s = NULL;
	char why[512] = "";
	int nok = 0;
	int rc;
	int i;

	*out = NULL;
	if (!conninfo || pool_size < 1 || pool_size > STORE_POOL_MAX) {
		set_err(err, errlen, "database pool size must be 1-%d",
			STORE_POOL_MAX);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return -ENOMEM;
	}
	if (pthread_cond_init(&s->cond, NULL) != 0) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return -ENOMEM;
	}
	s->size = pool_size;
	s->backoff_ms = STORE_BACKOFF_MIN_MS;
	tq_store_set_recheck_s(s, STORE_RECHECK_S_DEFAULT);
	atomic_init(&s->next_token, random_token_base());
	s->conninfo = strdup(conninfo);
	s->conns = calloc((size_t)pool_size, sizeof(*s->conns));
	s->idle = calloc((size_t)pool_size, sizeof(*s->idle));
	if (!s->conninfo || !s->conns || !s->idle) {
		set_err(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < pool_size; i++) {
		s->idle[s->nidle++] = i;
		if (conn_connect(s, &s->conns[i], why, sizeof(why)) == 0)
			nok++;
		else if (i == 0)
			break; /* the server is not there: do not try the rest */
	}
	if (nok == 0) {
		set_err(err, errlen, "cannot connect to postgresql: %s", why);
		rc = -EAGAIN;
		goto fail;
	}
	/* connections that failed are retried on their first acquire */
	if (nok < pool_size)
		tq_warn("postgresql: %d of %d connections opened: %s", nok,
			pool_size, why);
	*out = s;
	return 0;
fail:
	tq_store_close(s);
	return rc;
}

void tq_store_close(struct tq_store *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; s->conns && i < s->size; i++)
		conn_drop(&s->conns[i]);
	free(s->conns);
	free(s->idle);
	free(s->conninfo);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- migrations --------------------------------------------------- */

static const char create_migrations_sql[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	"version integer PRIMARY KEY, "
	"name text NOT NULL, "
	"applied_at timestamptz NOT NULL DEFAULT now())";

/* Apply migration m unless it is recorded.  1 applied, 0 skipped, <0. */
static int migrate_one(struct tq_store *s, struct store_conn *c,
		       const struct tq_migration *m, char *err, size_t errlen)
{
	const char *lock_params[1] = {STORE_MIGRATE_LOCK_KEY};
	const char *params[2];
	char version[16];
	char what[128];
	PGresult *res = NULL;
	int rc;

	if (snprintf(version, sizeof(version), "%d", m->version) >=
	    (int)sizeof(version))
		return -EINVAL;
	if (snprintf(what, sizeof(what), "migration %s", m->name) < 0)
		return -EINVAL;
	rc = conn_exec_simple(s, c, "BEGIN", what, err, errlen);
	if (rc < 0)
		return rc;
	res = conn_exec(s, c, ST_MIG_LOCK, 1, lock_params, &rc);
	if (!res)
		goto fail;
	PQclear(res);
	params[0] = version;
	params[1] = m->name;
	res = conn_exec(s, c, ST_MIG_HAS, 1, params, &rc);
	if (!res)
		goto fail;
	if (PQntuples(res) > 0) {
		PQclear(res);
		rc = conn_exec_simple(s, c, "COMMIT", what, err, errlen);
		return rc < 0 ? rc : 0;
	}
	PQclear(res);
	rc = conn_exec_simple(s, c, m->sql, what, err, errlen);
	if (rc < 0)
		goto rollback;
	res = conn_exec(s, c, ST_MIG_RECORD, 2, params, &rc);
	if (!res)
		goto fail;
	PQclear(res);
	rc = conn_exec_simple(s, c, "COMMIT", what, err, errlen);
	if (rc < 0)
		return rc;
	tq_info("applied migration %s", m->name);
	return 1;
fail:
	set_err(err, errlen, "%s: %s", what,
		rc == -EAGAIN ? "postgresql unreachable" :
				"database error (see the log)");
rollback:
	if (conn_ok(c))
		conn_exec_simple(s, c, "ROLLBACK", what, NULL, 0);
	return rc;
}

int tq_store_migrate(struct tq_store *s, int *applied, char *err,
		     size_t errlen)
{
	const char *lock_params[1] = {STORE_MIGRATE_LOCK_KEY};
	struct store_conn *c = NULL;
	PGresult *res;
	size_t i;
	int n = 0;
	int rc;

	if (applied)
		*applied = 0;
	rc = pool_acquire(s, &c);
	if (rc < 0) {
		set_err(err, errlen, "postgresql unreachable");
		return rc;
	}
	/* the bookkeeping table, created under the same lock */
	rc = conn_exec_simple(s, c, "BEGIN", "migrations", err, errlen);
	if (rc < 0)
		goto out;
	res = conn_exec(s, c, ST_MIG_LOCK, 1, lock_params, &rc);
	if (!res) {
		set_err(err, errlen, "migrations: cannot take the lock");
		goto out;
	}
	PQclear(res);
	rc = conn_exec_simple(s, c, create_migrations_sql, "schema_migrations",
			      err, errlen);
	if (rc < 0)
		goto out;
	rc = conn_exec_simple(s, c, "COMMIT", "migrations", err, errlen);
	if (rc < 0)
		goto out;

	for (i = 0; i < tq_migrations_count; i++) {
		rc = migrate_one(s, c, &tq_migrations[i], err, errlen);
		if (rc < 0)
			goto out;
		n += rc;
	}
	rc = 0;
out:
	if (c) {
		if (c->pg && PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
		    conn_ok(c))
			conn_exec_simple(s, c, "ROLLBACK", "migrations", NULL, 0);
		pool_release(s, c);
	}
	if (applied)
		*applied = n;
	return rc;
}

/* ---- jobs --------------------------------------------------------- */

int tq_store_ping(struct tq_store *s)
{
	PGresult *res;
	int rc;

	res = store_exec(s, ST_PING, 0, NULL, &rc);
	PQclear(res);
	return rc < 0 ? -EAGAIN : 0;
}

/* Validate and normalise a job id; false for anything not a uuid. */
static bool norm_uuid(const char *id, char out[37])
{
	uuid_t uu;

	if (!id || strnlen(id, 37) != 36 || uuid_parse(id, uu) != 0)
		return false;
	uuid_unparse_lower(uu, out);
	return true;
}

static char *dup_value(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	return strdup(PQgetvalue(res, row, col));
}

static int int_value(const PGresult *res, int row, int col, long *out)
{
	const char *v = PQgetvalue(res, row, col);
	char *end = NULL;

	errno = 0;
	*out = strtol(v, &end, 10);
	if (errno || end == v || *end)
		return -EIO;
	return 0;
}

/* The job holding spec's idempotency key: 1 with its id and JSON when it
 * was submitted with the same type and payload, -EEXIST with its id when
 * not, -ENOENT when no job holds the key (any more). */
static int insert_found(struct tq_store *s, const struct tq_job_spec *spec,
			char id_out[37], char **job_json)
{
	const char *params[3] = {spec->idempotency_key, spec->type, spec->payload};
	PGresult *res;
	int rc;

	res = store_exec(s, ST_GET_BY_KEY, 3, params, &rc);
	if (!res)
		return rc;
	if (PQntuples(res) != 1) {
		rc = -ENOENT;
		goto out;
	}
	snprintf(id_out, 37, "%s", PQgetvalue(res, 0, 0));
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		rc = -EEXIST;
		goto out;
	}
	*job_json = strdup(PQgetvalue(res, 0, 2));
	rc = *job_json ? 1 : -ENOMEM;
out:
	PQclear(res);
	return rc;
}

int tq_store_insert(struct tq_store *s, const struct tq_job_spec *spec,
		    char id_out[37], char **job_json, int *is_pending)
{
	char prio[16], attempts[16], timeout[16], delay[32], run_at[32];
	const char *params[11];
	PGresult *res = NULL;
	char id[37];
	int rc, tries;

	*job_json = NULL;
	*is_pending = 0;
	if (!spec->type || !spec->payload ||
	    spec->priority < TQ_PRIORITY_MIN || spec->priority > TQ_PRIORITY_MAX ||
	    spec->max_attempts < 1 || spec->timeout_s < 1)
		return -EINVAL;
	if (snprintf(prio, sizeof(prio), "%d", spec->priority) >= (int)sizeof(prio) ||
	    snprintf(attempts, sizeof(attempts), "%d", spec->max_attempts) >=
		    (int)sizeof(attempts) ||
	    snprintf(timeout, sizeof(timeout), "%d", spec->timeout_s) >=
		    (int)sizeof(timeout) ||
	    snprintf(delay, sizeof(delay), "%lld", (long long)spec->delay_ms) >=
		    (int)sizeof(delay) ||
	    snprintf(run_at, sizeof(run_at), "%lld", (long long)spec->run_at_ms) >=
		    (int)sizeof(run_at))
		return -EINVAL;
	params[0] = id;
	params[1] = spec->type;
	params[2] = spec->payload;
	params[3] = spec->queue ? spec->queue : "default";
	params[4] = prio;
	params[5] = attempts;
	params[6] = timeout;
	params[7] = spec->has_delay ? delay : NULL;
	params[8] = !spec->has_delay && spec->has_run_at ? run_at : NULL;
	params[9] = s->recheck_s;
	params[10] = spec->idempotency_key;

	/* A key another row holds: that row is the answer.  It can be
	 * deleted between the insert that met it and the read (retention),
	 * so the insert is tried again, a bounded number of times. */
	for (tries = 0; tries < 3; tries++) {
		tq_id_new(id);
		res = store_exec(s, ST_INSERT, 11, params, &rc);
		if (!res)
			return rc;
		if (PQntuples(res) == 1)
			break;
		PQclear(res);
		res = NULL;
		if (!spec->idempotency_key)
			return -EIO;
		rc = insert_found(s, spec, id_out, job_json);
		if (rc != -ENOENT)
			return rc;
	}
	if (!res)
		return -EAGAIN;
	if (PQgetisnull(res, 0, 1)) {
		rc = -EIO;
		goto out;
	}
	*job_json = strdup(PQgetvalue(res, 0, 1));
	if (!*job_json) {
		rc = -ENOMEM;
		goto out;
	}
	*is_pending = strcmp(PQgetvalue(res, 0, 0), "pending") == 0;
	memcpy(id_out, id, sizeof(id));
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int tq_store_insert_one(struct tq_store *s, const struct tq_job_spec *spec,
			struct tq_inserted *out, char **job_json)
{
	int pending = 0, rc;

	memset(out, 0, sizeof(*out));
	rc = tq_store_insert(s, spec, out->id, job_json, &pending);
	out->pending = rc == 0 && pending;
	return rc;
}

/* Run a statement keyed by one job id that returns the job's JSON: 0 with
 * *job_json (malloc'd), or -ENOENT when no row came back. */
static int job_json_by_id(struct tq_store *s, int stmt, const char *id, char **job_json)
{
	const char *params[1];
	PGresult *res;
	char uid[37];
	int rc;

	*job_json = NULL;
	if (!norm_uuid(id, uid))
		return -ENOENT;
	params[0] = uid;
	res = store_exec(s, stmt, 1, params, &rc);
	if (!res)
		return rc;
	if (PQntuples(res) == 0) {
		rc = -ENOENT;
	} else {
		*job_json = dup_value(res, 0, 0);
		rc = *job_json ? 0 : -ENOMEM;
	}
	PQclear(res);
	return rc;
}

int tq_store_get_json(struct tq_store *s, const char *id, char **job_json)
{
	return job_json_by_id(s, ST_GET, id, job_json);
}

static bool known_status(const char *st)
{
	static const char *const states[] = {
		"pending", "scheduled", "running", "completed", "failed",
		"cancelled",
	};
	size_t i;

	for (i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (strcmp(st, states[i]) == 0)
			return true;
	return false;
}

int tq_store_list_json(struct tq_store *s, const char *status,
		       const char *type, int limit, char **json)
{
	const char *params[3];
	PGresult *res;
	char lim[16];
	int id;
	int rc;

	*json = NULL;
	if (limit < 1 || limit > STORE_LIST_MAX)
		return -EINVAL;
	if (status && !known_status(status))
		return -EINVAL;
	if (type && (type[0] == '\0' || strnlen(type, TQ_TYPE_NAME_MAX + 1) >
					       TQ_TYPE_NAME_MAX))
		return -EINVAL;
	if (snprintf(lim, sizeof(lim), "%d", limit) >= (int)sizeof(lim))
		return -EINVAL;
	if (status && type)
		id = ST_LIST_BOTH;
	else if (status)
		id = ST_LIST_STATUS;
	else if (type)
		id = ST_LIST_TYPE;
	else
		id = ST_LIST_ALL;
	params[0] = status;
	params[1] = type;
	params[2] = lim;
	res = store_exec(s, id, 3, params, &rc);
	if (!res)
		return rc;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		rc = -EIO;
	} else {
		*json = dup_value(res, 0, 0);
		rc = *json ? 0 : -ENOMEM;
	}
	PQclear(res);
	return rc;
}

/* A fresh claim token, also as text in tok (24 bytes). */
static int64_t new_token(struct tq_store *s, char *tok)
{
	int64_t t = atomic_fetch_add(&s->next_token, 1);

	snprintf(tok, 24, "%" PRId64, t);
	return t;
}

void tq_claim_free(struct tq_claim *c)
{
	if (!c)
		return;
	free(c->type);
	free(c->payload);
	free(c->queue);
	c->type = NULL;
	c->payload = NULL;
	c->queue = NULL;
}

int tq_store_claim(struct tq_store *s, const char *id, int lease_s,
		   struct tq_claim *out)
{
	const char *params[4];
	PGresult *res;
	char lease[16], tok[24];
	char uid[37];
	int64_t token = new_token(s, tok);
	long attempt, max_attempts, timeout_s;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!norm_uuid(id, uid))
		return -ENOENT;
	if (lease_s < 0)
		lease_s = 0;
	if (snprintf(lease, sizeof(lease), "%d", lease_s) >= (int)sizeof(lease))
		return -EINVAL;
	params[0] = uid;
	params[1] = lease;
	params[2] = tok;
	params[3] = "pending";
	res = store_exec(s, ST_CLAIM, 4, params, &rc);
	if (!res)
		return rc;
	if (PQntuples(res) == 0) {
		rc = -ENOENT;
		goto out;
	}
	if (int_value(res, 0, 3, &attempt) < 0 ||
	    int_value(res, 0, 4, &max_attempts) < 0 ||
	    int_value(res, 0, 5, &timeout_s) < 0) {
		rc = -EIO;
		goto out;
	}
	memcpy(out->id, uid, sizeof(uid));
	out->type = dup_value(res, 0, 0);
	out->payload = dup_value(res, 0, 1);
	out->queue = dup_value(res, 0, 2);
	out->attempt = (int)attempt;
	out->token = token;
	out->max_attempts = (int)max_attempts;
	out->timeout_s = (int)timeout_s;
	if (!out->type || !out->payload || !out->queue) {
		tq_claim_free(out);
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

/*
 * An error message as stored: at most TQ_ERROR_MAX bytes of valid UTF-8
 * (a handler's message is arbitrary bytes; PostgreSQL refuses invalid
 * UTF-8, and the outcome must be written anyway).
 */
static void clean_error(const char *in, char *out, size_t outlen)
{
	tq_utf8_clean_copy(in, out, outlen);
}

/* One fenced outcome: $1-$4 the fence, then p5 and p6 (nparams in all). */
static int fenced_update(struct tq_store *s, int stmt, const char *id,
			 int attempt, int64_t token, const char *p5,
			 const char *p6, int nparams)
{
	const char *params[6];
	PGresult *res;
	char uid[37];
	char att[16], tok[24];
	char *end;
	long n;
	int rc;

	if (!norm_uuid(id, uid))
		return -ENOENT;
	if (snprintf(att, sizeof(att), "%d", attempt) >= (int)sizeof(att))
		return -EINVAL;
	snprintf(tok, sizeof(tok), "%" PRId64, token);
	params[0] = uid;
	params[1] = "running";
	params[2] = att;
	params[3] = tok;
	params[4] = p5;
	params[5] = p6;
	res = store_exec(s, stmt, nparams, params, &rc);
	if (!res)
		return rc;
	errno = 0;
	n = strtol(PQcmdTuples(res), &end, 10);
	if (errno || *end)
		rc = -EIO;
	else
		rc = n == 0 ? -ESTALE : 0;
	PQclear(res);
	return rc;
}

int tq_store_complete(struct tq_store *s, const char *id, int attempt,
		      int64_t token, const char *result_json)
{
	return fenced_update(s, ST_COMPLETE, id, attempt, token, result_json, NULL, 5);
}

int tq_store_retry(struct tq_store *s, const char *id, int attempt,
		   int64_t token, int64_t delay_ms, const char *error)
{
	char msg[TQ_ERROR_MAX + 1];
	char delay[32];

	if (delay_ms < 0)
		delay_ms = 0;
	if (delay_ms > STORE_RETRY_DELAY_MAX_MS)
		delay_ms = STORE_RETRY_DELAY_MAX_MS;
	if (snprintf(delay, sizeof(delay), "%lld", (long long)delay_ms) >=
	    (int)sizeof(delay))
		return -EINVAL;
	clean_error(error, msg, sizeof(msg));
	return fenced_update(s, ST_RETRY, id, attempt, token, delay, msg, 6);
}

int tq_store_fail(struct tq_store *s, const char *id, int attempt,
		  int64_t token, const char *error)
{
	char msg[TQ_ERROR_MAX + 1];

	clean_error(error, msg, sizeof(msg));
	return fenced_update(s, ST_FAIL, id, attempt, token, msg, NULL, 5);
}

/*
 * Rows of (queue, priority, id) to a ready callback; with flag >= 0, only
 * the rows whose boolean column flag is true.  Returns how many went.
 */
static int ready_rows(PGresult *res, int flag, tq_store_ready_fn cb, void *arg)
{
	int rows = PQntuples(res), n = 0;
	long prio;

	for (int i = 0; i < rows; i++) {
		if (flag >= 0 && strcmp(PQgetvalue(res, i, flag), "t") != 0)
			continue;
		n++;
		if (!cb)
			continue;
		if (int_value(res, i, 1, &prio) < 0)
			prio = 0;
		cb(arg, PQgetvalue(res, i, 0), (int)prio, PQgetvalue(res, i, 2));
	}
	return n;
}

int tq_store_promote_due(struct tq_store *s, int limit, tq_store_ready_fn cb,
			 void *arg)
{
	const char *params[2];
	PGresult *res;
	char lim[16];
	int n;
	int rc;

	if (limit < 1)
		return 0;
	if (limit > 10000)
		limit = 10000;
	if (snprintf(lim, sizeof(lim), "%d", limit) >= (int)sizeof(lim))
		return -EINVAL;
	params[0] = lim;
	params[1] = s->recheck_s;
	res = store_exec(s, ST_PROMOTE, 2, params, &rc);
	if (!res)
		return rc;
	/* the rows are committed: the connection is back in the pool, so
	 * the callback may use the store */
	n = ready_rows(res, -1, cb, arg);
	PQclear(res);
	return n;
}

int tq_store_next_due_ms(struct tq_store *s, int64_t *ms)
{
	PGresult *res;
	char *end;
	long long v;
	int rc;

	*ms = 0;
	res = store_exec(s, ST_NEXT_DUE, 0, NULL, &rc);
	if (!res)
		return rc;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		rc = -ENOENT;
		goto out;
	}
	errno = 0;
	v = strtoll(PQgetvalue(res, 0, 0), &end, 10);
	if (errno || *end) {
		rc = -EIO;
		goto out;
	}
	*ms = v;
	rc = 0;
out:
	PQclear(res);
	return rc;
}

/* --- recovery: heartbeat, rescue, reconcile, cancel, release ---------- */

int tq_store_heartbeat(struct tq_store *s, const struct tq_lease *leases, size_t n,
		       int lease_s, tq_store_lease_fn cb, void *arg)
{
	struct tq_buf ids = {0}, map = {0};
	const char *params[4];
	char lease[16], msg[TQ_ERROR_MAX + 1];
	PGresult *res = NULL;
	int rc, rows;

	if (n == 0)
		return 0;
	snprintf(lease, sizeof(lease), "%d", lease_s > 0 ? lease_s : 1);
	for (size_t i = 0; i < n; i++) {
		char uid[37];

		if (!norm_uuid(leases[i].id, uid))
			continue;
		tq_buf_puts(&ids, ids.len ? "," : "{");
		tq_buf_puts(&ids, uid);
		tb_put_token_entry(&map, uid, leases[i].token, leases[i].attempt);
		if (leases[i].progress >= 0 && leases[i].progress <= 100) {
			tb_put_json_int(&map, "p", leases[i].progress);
			if (leases[i].progress_message) {
				clean_error(leases[i].progress_message, msg, sizeof(msg));
				tq_buf_puts(&map, ",\"m\":");
				tb_put_json_string(&map, msg);
			}
		}
		tq_buf_puts(&map, "}");
	}
	if (!ids.len) {
		rc = 0;
		goto out;
	}
	tq_buf_puts(&ids, "}");
	tq_buf_puts(&map, "}");
	if (ids.failed || map.failed) {
		rc = -ENOMEM;
		goto out;
	}
	params[0] = ids.p;
	params[1] = lease;
	params[2] = map.p;
	params[3] = "running";
	res = store_exec(s, ST_HEARTBEAT, 4, params, &rc);
	if (!res)
		goto out;
	rows = PQntuples(res);
	for (int i = 0; cb && i < rows; i++)
		cb(arg, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)[0] == 't');
	rc = rows;
out:
	PQclear(res);
	tq_buf_free(&ids);
	tq_buf_free(&map);
	return rc;
}

int tq_store_rescue(struct tq_store *s, int limit, int base_ms, int cap_ms,
		    tq_store_rescued_fn cb, void *arg)
{
	const char *params[3];
	char lim[16], base[16], cap[16];
	PGresult *res;
	int rc, rows;

	snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 1);
	snprintf(base, sizeof(base), "%d", base_ms > 0 ? base_ms : 0);
	snprintf(cap, sizeof(cap), "%d", cap_ms > 0 ? cap_ms : 0);
	params[0] = lim;
	params[1] = base;
	params[2] = cap;
	res = store_exec(s, ST_RESCUE, 3, params, &rc);
	if (!res)
		return rc;
	rows = PQntuples(res);
	for (int i = 0; cb && i < rows; i++)
		cb(arg, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
	PQclear(res);
	return rows;
}


int tq_store_reconcile(struct tq_store *s, const char *queue, int again,
		       int limit, tq_store_ready_fn cb, void *arg)
{
	const char *params[4];
	char lim[16], nagain[16];
	PGresult *res;
	int rc;

	snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 1);
	snprintf(nagain, sizeof(nagain), "%d", again > 0 ? again : 0);
	params[0] = queue;
	params[1] = lim;
	params[2] = nagain;
	params[3] = s->recheck_s;
	res = store_exec(s, ST_RECONCILE, 4, params, &rc);
	if (!res)
		return rc;
	rc = ready_rows(res, 3, cb, arg);
	PQclear(res);
	return rc;
}

int tq_store_pending_counts(struct tq_store *s, tq_store_count_fn cb, void *arg)
{
	PGresult *res;
	int rc, rows;

	res = store_exec(s, ST_PENDING_COUNTS, 0, NULL, &rc);
	if (!res)
		return rc;
	rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		long n, due;

		if (int_value(res, i, 1, &n) == 0 && int_value(res, i, 2, &due) == 0)
			cb(arg, PQgetvalue(res, i, 0), n, due);
	}
	PQclear(res);
	return rows;
}

int tq_store_cancel(struct tq_store *s, const char *id, char **job_json)
{
	int rc = job_json_by_id(s, ST_CANCEL, id, job_json);

	if (rc != -ENOENT)
		return rc;
	/* Not cancellable: finished already, or no such job. */
	rc = tq_store_get_json(s, id, job_json);
	return rc == 0 ? -EALREADY : rc;
}

int tq_store_release(struct tq_store *s, const char *id, int attempt,
		     int64_t token, tq_store_ready_fn cb, void *arg)
{
	const char *params[5];
	char uid[37], att[16], tok[24];
	PGresult *res;
	long prio;
	int rc;

	if (!norm_uuid(id, uid))
		return -ENOENT;
	snprintf(att, sizeof(att), "%d", attempt);
	snprintf(tok, sizeof(tok), "%" PRId64, token);
	params[0] = uid;
	params[1] = "running";
	params[2] = att;
	params[3] = tok;
	params[4] = s->recheck_s;
	res = store_exec(s, ST_RELEASE, 5, params, &rc);
	if (!res)
		return rc;
	if (PQntuples(res) != 1) {
		rc = -ESTALE;
	} else {
		rc = 0;
		if (strcmp(PQgetvalue(res, 0, 0), "pending") == 0 && cb) {
			if (int_value(res, 0, 2, &prio) < 0)
				prio = 0;
			cb(arg, PQgetvalue(res, 0, 1), (int)prio, uid);
		}
	}
	PQclear(res);
	return rc;
}

/* --- the hot path in batches ------------------------------------------ */

/*
 * The rows travel as one JSON array, printed in one pass: as a cJSON
 * tree it took a dozen allocations per job, 8 % of taskqd's CPU in a
 * burst of single submissions.  Payloads are JSON text already (parsed
 * by the API); every string is escaped.
 */
int tq_store_insert_many(struct tq_store *s, const struct tq_job_spec *specs,
			 size_t n, struct tq_inserted *out)
{
	struct tq_write w = {.specs = specs, .n = n, .out = out};

	return tq_store_write(s, &w);
}

/* Fill claim c from row `row` of an insert (columns as ST_INSERT_MANY
 * returns them) and its spec.  false when out of memory: the row stays
 * claimed, its lease lapses and the rescuer retries it. */
static bool claim_from_insert(struct tq_claim *c, const PGresult *res, int row,
			      const struct tq_job_spec *sp, const char *id, int64_t token)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->type = strdup(sp->type);
	c->payload = dup_value(res, row, 5);
	c->queue = strdup(sp->queue ? sp->queue : "default");
	c->attempt = 1;
	c->token = token;
	c->max_attempts = sp->max_attempts;
	c->timeout_s = sp->timeout_s;
	if (c->type && c->payload && c->queue)
		return true;
	tq_claim_free(c);
	return false;
}

/* The parameters of a batch of n >= 1 outcomes: ids a binary uuid[]
 * (core/pgarray.h), map the entries keyed by id and claim token ("a":
 * attempt, "r": result) of COMPLETE_MANY_SQL.  0, or -ENOMEM, or -EINVAL
 * (an id that is not a UUID). */
static int done_params(const struct tq_done *done, size_t n, struct tq_pgarray *ids,
		       struct tq_buf *map)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = tq_pgarray_uuid(ids, done[i].id);
		/* ids are ours (claimed): no escaping; results are JSON
		 * text (checked when set) */
		tb_put_token_entry(map, done[i].id, done[i].token, done[i].attempt);
		if (done[i].result) {
			tq_buf_puts(map, ",\"r\":");
			tq_buf_puts(map, done[i].result);
		}
		tq_buf_puts(map, "}");
	}
	tq_buf_puts(map, "}");
	if (rc == 0)
		rc = tq_pgarray_finish(ids);
	return rc ? rc : map->failed ? -ENOMEM : 0;
}

/* written[i] for each outcome among the rows of res that have a token
 * (id in column 0, token in column tok_col); returns how many were
 * written. */
static int done_rows(const PGresult *res, int tok_col, const struct tq_done *done, size_t n,
		     bool *written)
{
	int count = 0;

	for (size_t i = 0; i < n; i++)
		written[i] = false;
	for (int row = 0; row < PQntuples(res); row++) {
		const char *id = PQgetvalue(res, row, 0);
		int64_t token = strtoll(PQgetvalue(res, row, tok_col), NULL, 10);

		if (PQgetisnull(res, row, tok_col))
			continue;

		for (size_t i = 0; i < n; i++) {
			if (done[i].token == token && strcmp(done[i].id, id) == 0) {
				written[i] = true;
				count++;
			}
		}
	}
	return count;
}

/* The columns of an insert, in the order of INSERT_MANY_SQL's unnest(). */
enum {
	COL_ID, COL_TYPE, COL_PAYLOAD, COL_QUEUE, COL_PRIORITY, COL_MAX_ATTEMPTS,
	COL_TIMEOUT, COL_DELAY, COL_RUN_AT, COL_CLAIM, NCOLS
};

static const uint32_t col_oids[NCOLS] = {
	TQ_OID_UUID, TQ_OID_TEXT, TQ_OID_JSONB, TQ_OID_TEXT, TQ_OID_INT2,
	TQ_OID_INT4, TQ_OID_INT4, TQ_OID_INT8, TQ_OID_INT8, TQ_OID_BOOL,
};

/* Row i of w into the columns: 0, or -EINVAL for a spec the API should
 * have refused. */
static int put_row(struct tq_pgarray *col, const struct tq_write *w, size_t i)
{
	const struct tq_job_spec *sp = &w->specs[i];
	bool claim = w->claim && w->claim[i] && !sp->has_delay && !sp->has_run_at;

	if (!sp->type || !sp->payload || sp->priority < TQ_PRIORITY_MIN ||
	    sp->priority > TQ_PRIORITY_MAX || sp->max_attempts < 1 || sp->timeout_s < 1 ||
	    tq_pgarray_uuid(&col[COL_ID], w->out[i].id) < 0)
		return -EINVAL;
	tq_pgarray_text(&col[COL_TYPE], sp->type);
	tq_pgarray_jsonb(&col[COL_PAYLOAD], sp->payload);
	tq_pgarray_text(&col[COL_QUEUE], sp->queue ? sp->queue : "default");
	tq_pgarray_int2(&col[COL_PRIORITY], (int16_t)sp->priority);
	tq_pgarray_int4(&col[COL_MAX_ATTEMPTS], sp->max_attempts);
	tq_pgarray_int4(&col[COL_TIMEOUT], sp->timeout_s);
	if (sp->has_delay)
		tq_pgarray_int8(&col[COL_DELAY], sp->delay_ms);
	else
		tq_pgarray_null(&col[COL_DELAY]);
	if (!sp->has_delay && sp->has_run_at)
		tq_pgarray_int8(&col[COL_RUN_AT], sp->run_at_ms);
	else
		tq_pgarray_null(&col[COL_RUN_AT]);
	tq_pgarray_bool(&col[COL_CLAIM], claim); /* only a job due now */
	return 0;
}

int tq_store_write(struct tq_store *s, struct tq_write *w)
{
	struct tq_pgarray col[NCOLS], ids;
	struct tq_buf map = {0};
	const char *values[NCOLS + 6];
	int lengths[NCOLS + 6] = {0}, formats[NCOLS + 6] = {0};
	struct params p = {.values = values, .lengths = lengths, .formats = formats};
	char lease[16], tok[24];
	PGresult *res = NULL;
	int64_t token = 0;
	size_t inserted = 0;
	int rc = 0;

	w->nclaimed = 0;
	for (int k = 0; k < NCOLS; k++)
		tq_pgarray_init(&col[k], col_oids[k]);
	tq_pgarray_init(&ids, TQ_OID_UUID);
	for (size_t i = 0; i < w->n && rc == 0; i++) {
		tq_id_new(w->out[i].id);
		rc = put_row(col, w, i);
	}
	for (int k = 0; k < NCOLS && rc == 0; k++) {
		rc = tq_pgarray_finish(&col[k]);
		values[k] = col[k].buf.p;
		lengths[k] = (int)col[k].buf.len;
		formats[k] = 1;
	}
	if (rc)
		goto out;
	if (w->ndone)
		rc = done_params(w->done, w->ndone, &ids, &map);
	if (rc)
		goto out;
	snprintf(lease, sizeof(lease), "%d", w->lease_s > 0 ? w->lease_s : 1);
	token = new_token(s, tok);
	values[NCOLS] = s->recheck_s;
	values[NCOLS + 1] = lease;
	values[NCOLS + 2] = tok;
	values[NCOLS + 3] = ids.buf.p;
	lengths[NCOLS + 3] = (int)ids.buf.len;
	formats[NCOLS + 3] = 1;
	values[NCOLS + 4] = map.p;
	values[NCOLS + 5] = "running";
	p.n = w->ndone ? NCOLS + 6 : NCOLS + 3;
	res = store_exec_params(s, w->ndone ? ST_INSERT_COMPLETE : ST_INSERT_MANY, &p, &rc);
	if (!res)
		goto out;
	/* the inserted rows have a status, the outcomes' none */
	for (int row = 0; row < PQntuples(res); row++) {
		const char *id = PQgetvalue(res, row, 0);
		size_t i = inserted;

		if (PQgetisnull(res, row, 1))
			continue;
		/* rows come back in the order they went in; look when not */
		if (i >= w->n || strcmp(w->out[i].id, id) != 0)
			for (i = 0; i < w->n && strcmp(w->out[i].id, id) != 0; i++)
				;
		if (i == w->n) {
			rc = -EIO;
			goto out;
		}
		inserted++;
		w->out[i].pending = strcmp(PQgetvalue(res, row, 1), "pending") == 0;
		w->out[i].running = strcmp(PQgetvalue(res, row, 1), "running") == 0;
		snprintf(w->out[i].created_at, sizeof(w->out[i].created_at), "%s",
			 PQgetvalue(res, row, 2));
		snprintf(w->out[i].run_at, sizeof(w->out[i].run_at), "%s",
			 PQgetvalue(res, row, 3));
		snprintf(w->out[i].lease_expires_at, sizeof(w->out[i].lease_expires_at), "%s",
			 PQgetvalue(res, row, 4));
		if (w->out[i].running && w->claims &&
		    claim_from_insert(&w->claims[w->nclaimed], res, row, &w->specs[i], id, token))
			w->nclaimed++;
	}
	if (inserted != w->n) {
		rc = -EIO;
		goto out;
	}
	if (w->ndone)
		done_rows(res, 6, w->done, w->ndone, w->written);
	rc = 0;
out:
	PQclear(res);
	for (int k = 0; k < NCOLS; k++)
		tq_pgarray_free(&col[k]);
	tq_pgarray_free(&ids);
	tq_buf_free(&map);
	return rc;
}

int tq_store_claim_many(struct tq_store *s, char (*ids)[37], size_t n, int lease_s,
			struct tq_claim *out, size_t *nclaimed)
{
	struct tq_buf arr = {0};
	const char *params[4];
	char lease[16], tok[24];
	PGresult *res = NULL;
	int64_t token;
	int rc, rows;

	*nclaimed = 0;
	for (size_t i = 0; i < n; i++) {
		char uid[37];

		if (!norm_uuid(ids[i], uid))
			continue;
		tq_buf_puts(&arr, arr.len ? "," : "{");
		tq_buf_puts(&arr, uid);
	}
	if (!arr.len)
		return 0;
	tq_buf_puts(&arr, "}");
	if (arr.failed) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(lease, sizeof(lease), "%d", lease_s > 0 ? lease_s : 1);
	token = new_token(s, tok);
	params[0] = arr.p;
	params[1] = lease;
	params[2] = tok;
	params[3] = "pending";
	res = store_exec(s, ST_CLAIM_MANY, 4, params, &rc);
	if (!res)
		goto out;
	rows = PQntuples(res);
	for (int i = 0; i < rows && (size_t)i < n; i++) {
		struct tq_claim *c = &out[*nclaimed];
		long attempt, max_attempts, timeout_s;

		memset(c, 0, sizeof(*c));
		if (int_value(res, i, 4, &attempt) < 0 || int_value(res, i, 5, &max_attempts) < 0 ||
		    int_value(res, i, 6, &timeout_s) < 0)
			continue;
		snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(res, i, 0));
		c->type = dup_value(res, i, 1);
		c->payload = dup_value(res, i, 2);
		c->queue = dup_value(res, i, 3);
		c->attempt = (int)attempt;
		c->token = token;
		c->max_attempts = (int)max_attempts;
		c->timeout_s = (int)timeout_s;
		if (!c->type || !c->payload || !c->queue) {
			/* claimed but not runnable here: its lease lapses and the
			 * rescuer retries it */
			tq_claim_free(c);
			continue;
		}
		(*nclaimed)++;
	}
	rc = 0;
out:
	PQclear(res);
	tq_buf_free(&arr);
	return rc;
}

int tq_store_complete_many(struct tq_store *s, const struct tq_done *done, size_t n,
			   bool *written)
{
	struct tq_pgarray ids;
	struct tq_buf map = {0};
	const char *values[3];
	int lengths[3] = {0}, formats[3] = {1, 0, 0};
	const struct params p = {.n = 3, .values = values, .lengths = lengths,
				 .formats = formats};
	PGresult *res = NULL;
	int rc;

	if (n == 0)
		return 0;
	tq_pgarray_init(&ids, TQ_OID_UUID);
	rc = done_params(done, n, &ids, &map);
	if (rc)
		goto out;
	values[0] = ids.buf.p;
	lengths[0] = (int)ids.buf.len;
	values[1] = map.p;
	values[2] = "running";
	res = store_exec_params(s, ST_COMPLETE_MANY, &p, &rc);
	if (res)
		rc = done_rows(res, 1, done, n, written);
out:
	PQclear(res);
	tq_pgarray_free(&ids);
	tq_buf_free(&map);
	return rc;
}
