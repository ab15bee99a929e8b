/*
 * test_chaos.c - the chaos suite: faults injected into a running TaskQ
 * deployment, and per job the proof that nothing was lost.
 *
 * The suite starts its OWN PostgreSQL and Redis (scripts/servers.sh with a
 * temporary TASKQ_RUN_DIR and free ports), so that stopping, killing and
 * flushing them never disturbs another test.  A guardian process stops
 * them and removes their directory when this program ends, however it
 * ends.  Every case is one fault scenario against real taskqd processes
 * (tests/integration/harness.c) with a short lease (3 s), a heartbeat of
 * 1 s, a scheduler pass every second and a pending re-dispatch after 2 s:
 *
 *   kill -9        taskqd killed at random moments and restarted
 *   redis flush    FLUSHALL mid-run
 *   redis kill -9  Redis killed (its pid file) and restarted empty
 *   redis stop     Redis down for a while (5 s, full: 30 s)
 *   pg stop fast   PostgreSQL stopped (fast) and restarted
 *   pg stop immed  PostgreSQL stopped (immediate) and restarted
 *   sigstop        a node frozen past its lease while a second node runs,
 *                  then resumed: its late outcomes must be fenced out
 *   sigterm        graceful stops: unfinished jobs are handed back at once
 *
 * Submitter threads post numbered jobs of type "record" (the test plugin
 * appends "<id> <attempt> <pid> <ms>" per execution to one file), retrying
 * 503s and transport errors until acknowledged or a give-up deadline.
 * When every row is terminal (or progress stalled), each scenario checks:
 *
 *   lost      acknowledged (201) ids missing from PostgreSQL
 *   stuck     rows not terminal at the deadline
 *   failed    terminal rows that are not "completed" (the jobs never fail)
 *   double    more than one terminal transition (an audit trigger on the
 *             jobs table records each), or a result written by another
 *             attempt than the row's last one
 *   dup exec  executions not explained by a fault: an attempt number run
 *             twice, more executions than attempts, or a re-execution whose
 *             previous execution did not start before the end of a fault
 *             that can interrupt attempts (none of the Redis faults can)
 *   re-runs   re-executions explained by a fault (allowed: at-least-once)
 *   unacked   rows whose submission got no answer (the daemon died after
 *             the commit) and was sent again: a retry without an
 *             idempotency key is a new job; reported, not a violation
 *
 * plus the checks of a scenario (sigstop: the stale node logged "outcome
 * rejected" and each frozen job ended with one outcome by the other node;
 * sigterm: clean exit and no row left "running" once the node is gone).
 * A table of all scenarios is printed at the end.
 *
 * TASKQ_CHAOS=full runs the big version (make chaos), anything else or
 * unset the short one (make test).  TASKQ_CHAOS_SEED=N repeats a run's
 * random choices; TASKQ_CHAOS_ONLY=PATTERN runs the matching cases only
 * (a cmocka test filter such as "test_pg_*").
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define CH_LEASE_S 3
#define CH_SLACK_MS 1000          /* clock and scheduling slack of a window */
#define CH_STALL_MS 30000         /* no progress this long: the rest is stuck */
#define CH_SUBMITTERS 4
#define CH_MAX_WINDOWS 32
#define CH_MAX_NODES 2
#define CH_SHOW 5                 /* examples printed per kind of violation */
#define CH_SERVERS_TIMEOUT_MS 120000

/* The node configuration of every scenario (the grace period is added per
 * node: an environment variable given twice would be read once).  Nodes
 * prefetch, so that every fault also finds claims waiting on a node for a
 * worker. */
#define CH_WORKERS 16
#define CH_STR_(x) #x
#define CH_STR(x) CH_STR_(x)
#define CH_ENV                                                                 \
	"TASKQ_WORKERS=" CH_STR(CH_WORKERS), "TASKQ_LEASE_S=3",               \
		"TASKQ_HEARTBEAT_S=1", "TASKQ_SCHEDULER_INTERVAL_S=1",         \
		"TASKQ_PENDING_REDISPATCH_S=2", "TASKQ_BACKOFF_BASE_MS=100",   \
		"TASKQ_BACKOFF_CAP_MS=1000", "TASKQ_DB_POOL_SIZE=16",          \
		"TASKQ_PREFETCH=8", "TASKQ_LOG_LEVEL=info"

/* ---- the scenarios ---- */

struct ch_scenario {
	const char *name;
	int jobs;         /* numbered submissions */
	int faults;       /* faults injected */
	int submit_ms;    /* submissions are spread over this time */
	int down_ms;      /* outage length, where there is one */
	int long_permille; /* share of jobs that run long_min..long_max ms */
	int long_min_ms;
	int long_max_ms;
	int grace_s;      /* workers.shutdown_grace_s of the nodes */
	bool interrupts;  /* the fault may interrupt running attempts */
	/* the fault loses commits that had not reached the disk: a claim
	 * (which does not wait for the disk) may be made again with the
	 * same attempt number; its token keeps the lost run's outcome out */
	bool loses_claims;
};

enum {
	SC_KILL9, SC_REDIS_FLUSH, SC_REDIS_KILL, SC_REDIS_STOP, SC_PG_FAST,
	SC_PG_IMMEDIATE, SC_SIGSTOP, SC_SIGTERM, SC_COUNT
};

/* [short, full] */
static const struct ch_scenario ch_scenarios[SC_COUNT][2] = {
	[SC_KILL9] = {
		{ "kill -9 taskqd", 1000, 2, 8000, 0, 20, 300, 1500, 2, true },
		{ "kill -9 taskqd", 20000, 10, 80000, 0, 10, 300, 1000, 2, true },
	},
	[SC_REDIS_FLUSH] = {
		{ "Redis FLUSHALL", 400, 1, 5000, 0, 20, 300, 1500, 2, false },
		{ "Redis FLUSHALL", 4000, 3, 20000, 0, 20, 300, 1500, 2, false },
	},
	[SC_REDIS_KILL] = {
		{ "Redis kill -9 + restart empty", 400, 1, 5000, 500, 20, 300,
		  1500, 2, false },
		{ "Redis kill -9 + restart empty", 4000, 2, 20000, 2000, 20, 300,
		  1500, 2, false },
	},
	[SC_REDIS_STOP] = {
		{ "Redis stopped 5 s", 400, 1, 6000, 5000, 20, 300, 1500, 2,
		  false },
		{ "Redis stopped 30 s", 4000, 1, 40000, 30000, 20, 300, 1500, 2,
		  false },
	},
	[SC_PG_FAST] = {
		{ "PostgreSQL stop fast + restart", 400, 1, 6000, 4000, 20, 300,
		  1500, 2, true },
		{ "PostgreSQL stop fast + restart", 4000, 2, 30000, 10000, 20,
		  300, 1500, 2, true },
	},
	[SC_PG_IMMEDIATE] = {
		{ "PostgreSQL stop immediate + restart", 400, 1, 6000, 4000, 20,
		  300, 1500, 2, true, true },
		{ "PostgreSQL stop immediate + restart", 4000, 2, 30000, 10000,
		  20, 300, 1500, 2, true, true },
	},
	[SC_SIGSTOP] = {
		{ "SIGSTOP node past lease, 2nd node", 300, 1, 6000, 0, 20, 300,
		  1500, 2, true },
		{ "SIGSTOP node past lease, 2nd node", 3000, 1, 20000, 0, 20,
		  300, 1500, 2, true },
	},
	[SC_SIGTERM] = {
		{ "SIGTERM (grace 1 s) + restart", 400, 1, 5000, 0, 60, 1000,
		  3000, 1, true },
		{ "SIGTERM (grace 1 s) + restart", 4000, 3, 20000, 0, 20, 1000,
		  3000, 1, true },
	},
};

/* What the table shows per scenario. */
struct ch_result {
	const char *name;
	bool ran, finished, passed;
	int jobs, faults;
	long acked, rows, refused, errors, gave_up;
	long lost, stuck, failed, reruns, dups, doubles, anomalies, crashes;
	long reused;   /* jobs with one attempt number executed twice */
	long reclaims; /* of those, explained by a claim lost in a crash */
	double recover_s; /* < 0: not recovered */
	char note[192];
	bool extra_ok;
};

/* ---- process-wide state ---- */

static struct {
	bool full;
	uint64_t seed;
	/* private servers */
	char dir[TH_PATH_MAX];
	char servers[TH_PATH_MAX];
	char redis_pidfile[TH_PATH_MAX];
	int pg_port, redis_port;
	pid_t guardian;
	int guard_fd;
	struct ch_result results[SC_COUNT];
} ch = { .guard_fd = -1 };

struct ch_slot {
	char id[TH_ID_LEN];
	bool acked;
};

struct ch_window {
	int64_t start, end; /* CLOCK_REALTIME ms */
};

struct ch_row {
	char id[TH_ID_LEN];
	char status[16];
	int attempts;
	int result_attempt; /* 0: none */
	int outcomes;       /* terminal transitions in the audit table */
};

/* The running scenario: global so that the case teardown can stop the
 * submitters after an assertion jumped out of the case. */
static struct {
	const struct ch_scenario *sc;
	struct ch_result *res;
	struct th_daemon *nodes[CH_MAX_NODES];
	int nnodes;
	struct th_daemon *target; /* submissions go there */
	struct th_daemon *frozen; /* SIGSTOPped node, to resume in teardown */
	char grace_env[64];
	struct ch_window win[CH_MAX_WINDOWS];
	int nwin;
	uint64_t rng;
	PGconn *db;
	/* submitters */
	struct ch_slot *slots;
	int nslots;    /* long jobs first (sigstop), then the numbered ones */
	int first_numbered;
	atomic_int next;
	atomic_int running_threads;
	atomic_bool stop;
	atomic_long refused, errors, gave_up;
	int64_t t0;
	int64_t giveup_ms;
	pthread_t threads[CH_SUBMITTERS];
	int nthreads;
	/* verification */
	struct ch_row *rows;
	size_t nrows;
	struct th_record *recs;
	size_t nrecs;
} run;

/* ---- small helpers ---- */

static uint64_t ch_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t ch_rand(void)
{
	run.rng = ch_mix(run.rng);
	return run.rng;
}

/* uniform in [lo, hi] */
static int ch_rand_between(int lo, int hi)
{
	if (hi <= lo)
		return lo;
	return lo + (int)(ch_rand() % (uint64_t)(hi - lo + 1));
}

static bool ch_is_terminal(const char *status)
{
	return strcmp(status, "completed") == 0 ||
	       strcmp(status, "failed") == 0 ||
	       strcmp(status, "cancelled") == 0;
}

static int ch_free_port(int avoid)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, port = -1, tries;

	for (tries = 0; tries < 20 && (port <= 0 || port == avoid); tries++) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = 0;
		len = sizeof(sa);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
			port = ntohs(sa.sin_port);
		close(fd);
	}
	return port == avoid ? -EADDRINUSE : port;
}

/* ---- the private servers ---- */

/* Run the servers script with the environment prepared in ch_servers_up
 * (no cmocka: used outside of the cases and by the guardian). */
static int ch_run_servers(const char *arg)
{
	int64_t deadline = th_now_ms() + CH_SERVERS_TIMEOUT_MS;
	int status;
	pid_t pid, r;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(ch.servers, ch.servers, arg, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (th_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		th_sleep_ms(20);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -ECHILD;
}

/*
 * The guardian waits for this process to end (EOF on a close-on-exec
 * pipe that only this process holds), then stops the private servers and
 * removes their directory.  It runs in its own session so that a signal
 * to our process group does not stop it from cleaning up.
 */
static int ch_start_guardian(void)
{
	int fds[2];
	pid_t pid;
	char c;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -errno;
	}
	if (pid == 0) {
		close(fds[1]);
		setsid();
		signal(SIGPIPE, SIG_DFL);
		while (read(fds[0], &c, 1) != 0 && errno == EINTR)
			;
		ch_run_servers("stop");
		pid = fork();
		if (pid == 0) {
			execlp("rm", "rm", "-rf", "--", ch.dir, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
		_exit(0);
	}
	close(fds[0]);
	ch.guardian = pid;
	ch.guard_fd = fds[1];
	return 0;
}

static void ch_servers_down(void)
{
	if (ch.guard_fd >= 0) {
		close(ch.guard_fd);
		ch.guard_fd = -1;
	}
	if (ch.guardian > 0) {
		while (waitpid(ch.guardian, NULL, 0) < 0 && errno == EINTR)
			;
		ch.guardian = 0;
	}
}

static int ch_setenv_fmt(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int ch_setenv_fmt(const char *name, const char *fmt, ...)
{
	char buf[TH_PATH_MAX + 64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	return setenv(name, buf, 1) < 0 ? -errno : 0;
}

/* The default of a TASKQ_TEST_* variable that CTest sets but `make chaos`
 * does not: the paths of this build. */
static void ch_default_env(const char *name, const char *value)
{
	if (!getenv(name) || !*getenv(name))
		setenv(name, value, 1);
}

static int ch_servers_up(void)
{
	const char *tmp = getenv("TMPDIR"), *src;
	int n, r;

	ch_default_env("TASKQ_TEST_TASKQD", TQ_CHAOS_TASKQD);
	ch_default_env("TASKQ_TEST_PLUGIN_DIR", TQ_CHAOS_TEST_PLUGIN_DIR);
	ch_default_env("TASKQ_TEST_BUNDLED_PLUGIN_DIR",
		       TQ_CHAOS_BUNDLED_PLUGIN_DIR);
	ch_default_env("TASKQ_TEST_SOURCE_DIR", TQ_CHAOS_SOURCE_DIR);

	src = getenv("TASKQ_TEST_SERVERS");
	if (src && *src)
		n = snprintf(ch.servers, sizeof(ch.servers), "%s", src);
	else
		n = snprintf(ch.servers, sizeof(ch.servers),
			     "%s/scripts/servers.sh",
			     getenv("TASKQ_TEST_SOURCE_DIR"));
	if (n < 0 || (size_t)n >= sizeof(ch.servers))
		return -ENAMETOOLONG;
	if (access(ch.servers, X_OK) < 0) {
		fprintf(stderr, "chaos: %s is not executable: %s\n", ch.servers,
			strerror(errno));
		return -ENOENT;
	}

	if (!tmp || !*tmp)
		tmp = "/tmp";
	n = snprintf(ch.dir, sizeof(ch.dir), "%s/taskq-chaos-XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof(ch.dir) || !mkdtemp(ch.dir)) {
		fprintf(stderr, "chaos: cannot make a temp dir: %s\n",
			strerror(errno));
		ch.dir[0] = '\0';
		return -EIO;
	}
	/* PostgreSQL runs as an unprivileged user when we are root */
	if (chmod(ch.dir, 0755) < 0)
		return -errno;
	n = snprintf(ch.redis_pidfile, sizeof(ch.redis_pidfile),
		     "%s/redis.pid", ch.dir);
	if (n < 0 || (size_t)n >= sizeof(ch.redis_pidfile))
		return -ENAMETOOLONG;

	ch.pg_port = ch_free_port(0);
	ch.redis_port = ch_free_port(ch.pg_port);
	if (ch.pg_port <= 0 || ch.redis_port <= 0)
		return -EADDRINUSE;
	if (ch_setenv_fmt("TASKQ_RUN_DIR", "%s", ch.dir) ||
	    ch_setenv_fmt("TASKQ_PG_PORT", "%d", ch.pg_port) ||
	    ch_setenv_fmt("TASKQ_REDIS_PORT", "%d", ch.redis_port) ||
	    ch_setenv_fmt("TASKQ_TEST_SERVERS", "%s", ch.servers) ||
	    ch_setenv_fmt("TASKQ_TEST_PG_URL",
			  "postgresql://taskq@127.0.0.1:%d/postgres",
			  ch.pg_port) ||
	    ch_setenv_fmt("TASKQ_TEST_REDIS_URL", "redis://127.0.0.1:%d/0",
			  ch.redis_port))
		return -EINVAL;

	r = ch_start_guardian();
	if (r < 0) {
		fprintf(stderr, "chaos: cannot start the guardian: %s\n",
			strerror(-r));
		return r;
	}
	printf("chaos: private PostgreSQL on 127.0.0.1:%d and Redis on "
	       "127.0.0.1:%d under %s\n", ch.pg_port, ch.redis_port, ch.dir);
	fflush(stdout);
	r = ch_run_servers("start");
	if (r != 0) {
		fprintf(stderr, "chaos: starting the private servers failed: "
			"%d\n", r);
		return -EIO;
	}
	return 0;
}

/* ---- PostgreSQL, tolerant of outages (the harness's th_sql fails the
 * test on an error; here the database may be down on purpose) ---- */

static void ch_no_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGresult *ch_query(const char *sql, int nparams,
			  const char *const *params)
{
	PGresult *res;
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if (!run.db || PQstatus(run.db) != CONNECTION_OK) {
			if (run.db)
				PQfinish(run.db);
			run.db = PQconnectdb(th_db_url());
			if (PQstatus(run.db) != CONNECTION_OK)
				continue;
			PQsetNoticeProcessor(run.db, ch_no_notice, NULL);
		}
		res = PQexecParams(run.db, sql, nparams, NULL, params, NULL,
				   NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    PQresultStatus(res) == PGRES_COMMAND_OK)
			return res;
		if (tries == 1 || PQstatus(run.db) == CONNECTION_OK)
			fprintf(stderr, "chaos: query failed: %s",
				PQerrorMessage(run.db));
		PQclear(res);
		if (PQstatus(run.db) == CONNECTION_OK)
			return NULL; /* an SQL error, not a broken connection */
	}
	return NULL;
}

static int ch_query_long(const char *sql, long long *out)
{
	PGresult *res = ch_query(sql, 0, NULL);
	char *end;
	int r = -1;

	if (!res)
		return -1;
	if (PQntuples(res) == 1 && PQnfields(res) == 1) {
		if (PQgetisnull(res, 0, 0)) {
			*out = 0;
			r = 1;
		} else {
			errno = 0;
			*out = strtoll(PQgetvalue(res, 0, 0), &end, 10);
			r = errno || *end ? -1 : 0;
		}
	}
	PQclear(res);
	return r;
}

/* Each terminal transition of a job (and each change of a set
 * completed_at) becomes a row of chaos_outcomes: two rows for one job are
 * two outcomes. */
static void ch_install_audit(void)
{
	static const char *const sql[] = {
		"CREATE TABLE IF NOT EXISTS chaos_outcomes (id uuid NOT NULL, "
		"old_status text, new_status text, attempts int, "
		"at timestamptz NOT NULL DEFAULT clock_timestamp())",
		"CREATE OR REPLACE FUNCTION chaos_outcome_audit() RETURNS "
		"trigger LANGUAGE plpgsql AS $$ BEGIN "
		"INSERT INTO chaos_outcomes (id, old_status, new_status, "
		"attempts) VALUES (NEW.id, OLD.status, NEW.status, "
		"NEW.attempts); RETURN NULL; END $$",
		"DROP TRIGGER IF EXISTS chaos_outcome_audit ON jobs",
		"CREATE TRIGGER chaos_outcome_audit AFTER UPDATE ON jobs "
		"FOR EACH ROW WHEN ((NEW.status IN ('completed', 'failed', "
		"'cancelled') AND OLD.status IS DISTINCT FROM NEW.status) OR "
		"(OLD.completed_at IS NOT NULL AND "
		"NEW.completed_at IS DISTINCT FROM OLD.completed_at)) "
		"EXECUTE FUNCTION chaos_outcome_audit()",
		"TRUNCATE chaos_outcomes",
	};
	PGresult *res;
	size_t i;

	for (i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		res = ch_query(sql[i], 0, NULL);
		if (!res)
			fail_msg("cannot install the outcome audit trigger");
		PQclear(res);
	}
}

/* ---- Redis ---- */

static int ch_redis_command(const char *cmd)
{
	struct timeval tv = { .tv_sec = 3 };
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", ch.redis_port,
						   tv);
	redisReply *rep = NULL;
	int r = -1;

	if (!rc || rc->err)
		goto out;
	rep = redisCommand(rc, "%s", cmd);
	if (rep && rep->type != REDIS_REPLY_ERROR)
		r = 0;
out:
	if (rep)
		freeReplyObject(rep);
	if (rc)
		redisFree(rc);
	return r;
}

static pid_t ch_redis_pid(void)
{
	FILE *f = fopen(ch.redis_pidfile, "re");
	char buf[32] = "";
	char *end;
	long v;

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n') || v <= 1)
		return -1;
	return (pid_t)v;
}

/* ---- submitters ---- */

static int ch_sleep_of(int i)
{
	const struct ch_scenario *sc = run.sc;
	uint64_t r = ch_mix(ch.seed ^ ((uint64_t)i << 20) ^ 0x5bd1e995ULL);

	if ((int)(r % 1000) < sc->long_permille)
		return sc->long_min_ms +
		       (int)((r >> 16) %
			     (uint64_t)(sc->long_max_ms - sc->long_min_ms + 1));
	return (int)((r >> 16) % 40);
}

static void *ch_submitter(void *arg)
{
	int n = run.nslots - run.first_numbered;
	char body[192];
	struct th_resp resp;
	const char *id;
	int64_t at, deadline;
	int i, k, len;

	(void)arg;
	while (!atomic_load(&run.stop)) {
		k = atomic_fetch_add(&run.next, 1);
		if (k >= n)
			break;
		i = run.first_numbered + k;
		at = run.t0 + (int64_t)k * run.sc->submit_ms / n;
		while (th_now_ms() < at && !atomic_load(&run.stop))
			th_sleep_ms((int)(at - th_now_ms() < 50 ?
						  at - th_now_ms() : 50));
		len = snprintf(body, sizeof(body),
			       "{\"type\":\"record\",\"max_attempts\":10,"
			       "\"payload\":{\"n\":%d,\"sleep_ms\":%d}}",
			       k, ch_sleep_of(k));
		if (len < 0 || (size_t)len >= sizeof(body))
			break;
		deadline = th_now_ms() + run.giveup_ms;
		for (;;) {
			th_http(run.target, "POST", "/v1/jobs", body,
				"application/json", &resp);
			id = th_json_str(resp.json, "id");
			if (resp.status == 201 && id &&
			    strlen(id) == TH_ID_LEN - 1) {
				memcpy(run.slots[i].id, id, TH_ID_LEN);
				run.slots[i].acked = true;
				th_resp_free(&resp);
				break;
			}
			if (resp.status == 503)
				atomic_fetch_add(&run.refused, 1);
			else
				atomic_fetch_add(&run.errors, 1);
			th_resp_free(&resp);
			if (atomic_load(&run.stop) || th_now_ms() >= deadline) {
				atomic_fetch_add(&run.gave_up, 1);
				break;
			}
			th_sleep_ms(100);
		}
	}
	atomic_fetch_sub(&run.running_threads, 1);
	return NULL;
}

static void ch_start_submitters(void)
{
	int i;

	run.t0 = th_now_ms();
	atomic_store(&run.running_threads, CH_SUBMITTERS);
	for (i = 0; i < CH_SUBMITTERS; i++) {
		if (pthread_create(&run.threads[i], NULL, ch_submitter, NULL)) {
			atomic_fetch_sub(&run.running_threads,
					 CH_SUBMITTERS - i);
			fail_msg("cannot start a submitter thread");
		}
		run.nthreads++;
	}
}

static void ch_join_submitters(void)
{
	int i;

	atomic_store(&run.stop, true);
	for (i = 0; i < run.nthreads; i++)
		pthread_join(run.threads[i], NULL);
	run.nthreads = 0;
}

/* ---- nodes ---- */

static struct th_daemon *ch_node_start(void)
{
	struct th_daemon *d = th_daemon_start(CH_ENV, run.grace_env, NULL);

	run.nodes[run.nnodes++] = d;
	return d;
}

static void ch_node_restart(struct th_daemon *d)
{
	th_daemon_restart(d, CH_ENV, run.grace_env, NULL);
}

/*
 * Sleep ms while watching the nodes: a node that exited without being
 * told to is a crash; it is counted, reported, and started again so that
 * the scenario can still tell what was lost.
 */
static void ch_watch(int ms)
{
	int64_t until = th_now_ms() + ms;
	int i;

	for (;;) {
		for (i = 0; i < run.nnodes; i++) {
			struct th_daemon *d = run.nodes[i];

			if (th_daemon_alive(d))
				continue;
			run.res->crashes++;
			fprintf(stderr, "chaos: taskqd on port %d exited by "
				"itself (status 0x%x); restarting it\n",
				d->port, d->status);
			th_daemon_log_tail(d, 30);
			ch_node_restart(d);
		}
		if (th_now_ms() >= until)
			return;
		th_sleep_ms((int)(until - th_now_ms() < 100 ?
					  until - th_now_ms() : 100));
	}
}

static struct ch_window *ch_window_open(void)
{
	struct ch_window *w;

	if (run.nwin == CH_MAX_WINDOWS)
		fail_msg("too many fault windows");
	w = &run.win[run.nwin++];
	w->start = th_wall_ms();
	w->end = w->start;
	return w;
}

/* Poll GET /readyz of d until 200; returns the ms it took, or -1. */
static long ch_wait_ready(const struct th_daemon *d, int timeout_ms)
{
	int64_t start = th_now_ms();
	struct th_resp resp;

	for (;;) {
		th_http(d, "GET", "/readyz", NULL, NULL, &resp);
		if (resp.status == 200) {
			th_resp_free(&resp);
			return (long)(th_now_ms() - start);
		}
		th_resp_free(&resp);
		if (th_now_ms() - start >= timeout_ms)
			return -1;
		th_sleep_ms(100);
	}
}

static void ch_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ch_note(const char *fmt, ...)
{
	size_t used = strlen(run.res->note);
	va_list ap;

	if (used + 2 >= sizeof(run.res->note))
		return;
	if (used) {
		run.res->note[used++] = ';';
		run.res->note[used++] = ' ';
		run.res->note[used] = '\0';
	}
	va_start(ap, fmt);
	vsnprintf(run.res->note + used, sizeof(run.res->note) - used, fmt, ap);
	va_end(ap);
}

/* ---- set-up of a scenario ---- */

static void ch_begin(int which, int nlong)
{
	const struct ch_scenario *sc = &ch_scenarios[which][ch.full ? 1 : 0];
	int n;

	memset(&run, 0, sizeof(run));
	run.sc = sc;
	run.res = &ch.results[which];
	memset(run.res, 0, sizeof(*run.res));
	run.res->name = sc->name;
	run.res->ran = true;
	run.res->jobs = sc->jobs + nlong;
	run.res->extra_ok = true;
	run.res->recover_s = -1;
	run.rng = ch_mix(ch.seed + (uint64_t)which * 7919);
	run.giveup_ms = ch.full ? 120000 : 60000;
	run.first_numbered = nlong;
	run.nslots = sc->jobs + nlong;
	run.slots = calloc((size_t)run.nslots, sizeof(*run.slots));
	assert_non_null(run.slots);
	n = snprintf(run.grace_env, sizeof(run.grace_env),
		     "TASKQ_SHUTDOWN_GRACE_S=%d", sc->grace_s);
	assert_true(n > 0 && (size_t)n < sizeof(run.grace_env));
	printf("\n== %s: %d jobs, %d fault(s) ==\n", sc->name, run.nslots,
	       sc->faults);
	fflush(stdout);
}

/* ---- waiting and verification ---- */

/* Wait for the submitters, then for every row to be terminal (or for
 * progress to stall).  Returns the number of non-terminal rows left. */
static long long ch_settle(void)
{
	int64_t last_change, hard;
	long long left = -1, prev = -2;

	while (atomic_load(&run.running_threads) > 0)
		ch_watch(200);
	ch_join_submitters();
	last_change = th_now_ms();
	hard = last_change + (ch.full ? 900000 : 240000);
	for (;;) {
		if (ch_query_long("SELECT count(*) FROM jobs WHERE status NOT "
				  "IN ('completed', 'failed', 'cancelled')",
				  &left) != 0)
			left = -1;
		if (left == 0)
			return 0;
		if (left != prev) {
			prev = left;
			last_change = th_now_ms();
		}
		if (th_now_ms() - last_change >= CH_STALL_MS ||
		    th_now_ms() >= hard)
			return left;
		ch_watch(250);
	}
}

/* A non-negative integer column; -1 when it is not one. */
static long long ch_nonneg(const char *text)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || end == text || *end || v < 0)
		return -1;
	return v;
}

static int ch_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ch_row *)a)->id,
		      ((const struct ch_row *)b)->id);
}

static int ch_rec_cmp(const void *a, const void *b)
{
	const struct th_record *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c)
		return c;
	if (x->ms != y->ms)
		return x->ms < y->ms ? -1 : 1;
	return x->attempt - y->attempt;
}

static const struct ch_row *ch_find_row(const char *id)
{
	struct ch_row key;

	memcpy(key.id, id, TH_ID_LEN);
	return bsearch(&key, run.rows, run.nrows, sizeof(*run.rows),
		       ch_row_cmp);
}

/* The executions of id: first index into run.recs and count. */
static size_t ch_execs(const char *id, size_t *first)
{
	size_t lo = 0, hi = run.nrecs, n = 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(run.recs[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first = lo;
	while (lo + n < run.nrecs && strcmp(run.recs[lo + n].id, id) == 0)
		n++;
	return n;
}

static void ch_load_rows(void)
{
	PGresult *res;
	size_t i;
	int tries;

	for (tries = 0; tries < 20; tries++) {
		res = ch_query("SELECT j.id::text, j.status, j.attempts, "
			       "coalesce(j.result->>'attempt', '0'), "
			       "coalesce(o.n, 0) FROM jobs j LEFT JOIN "
			       "(SELECT id, count(*) AS n FROM chaos_outcomes "
			       "GROUP BY id) o ON o.id = j.id", 0, NULL);
		if (res)
			break;
		th_sleep_ms(500);
	}
	if (!res)
		fail_msg("cannot read the jobs table");
	run.nrows = (size_t)PQntuples(res);
	run.rows = calloc(run.nrows ? run.nrows : 1, sizeof(*run.rows));
	assert_non_null(run.rows);
	for (i = 0; i < run.nrows; i++) {
		struct ch_row *r = &run.rows[i];

		snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(res, (int)i, 0));
		snprintf(r->status, sizeof(r->status), "%s",
			 PQgetvalue(res, (int)i, 1));
		r->attempts = (int)ch_nonneg(PQgetvalue(res, (int)i, 2));
		r->result_attempt = (int)ch_nonneg(PQgetvalue(res, (int)i, 3));
		r->outcomes = (int)ch_nonneg(PQgetvalue(res, (int)i, 4));
	}
	PQclear(res);
	qsort(run.rows, run.nrows, sizeof(*run.rows), ch_row_cmp);
}

static void ch_load_records(void)
{
	struct th_records all;
	char err[256] = "";
	size_t i;
	int r;

	r = th_records_load(th_record_path(), &all, err, sizeof(err));
	if (r < 0)
		fail_msg("cannot read the record file: %s", err);
	/* keep the executions of this scenario's jobs only */
	run.recs = calloc(all.n ? all.n : 1, sizeof(*run.recs));
	assert_non_null(run.recs);
	for (i = 0; i < all.n; i++)
		if (ch_find_row(all.v[i].id))
			run.recs[run.nrecs++] = all.v[i];
	th_records_free(&all);
	qsort(run.recs, run.nrecs, sizeof(*run.recs), ch_rec_cmp);
}

/* Is the re-execution after e explained by a fault window? */
static bool ch_explained(const struct th_record *e,
			 const struct th_record *next)
{
	int i;

	if (!run.sc->interrupts)
		return false;
	for (i = 0; i < run.nwin; i++)
		if (e->ms <= run.win[i].end + CH_SLACK_MS &&
		    next->ms >= run.win[i].start - CH_SLACK_MS)
			return true;
	return false;
}

#define CH_SHOW_ONE(counter, ...)                                              \
	do {                                                                   \
		if ((counter) <= CH_SHOW)                                      \
			fprintf(stderr, __VA_ARGS__);                          \
	} while (0)

static void ch_verify_job(const struct ch_row *row)
{
	struct ch_result *res = run.res;
	size_t first, n, i, j;
	bool doubled = false, anomaly = false, reused = false;

	if (!ch_is_terminal(row->status)) {
		res->stuck++;
		CH_SHOW_ONE(res->stuck, "  stuck: %s status %s attempts %d\n",
			    row->id, row->status, row->attempts);
	} else if (strcmp(row->status, "completed") != 0) {
		res->failed++;
		CH_SHOW_ONE(res->failed, "  not completed: %s status %s "
			    "attempts %d\n", row->id, row->status,
			    row->attempts);
	}
	if (row->outcomes > 1) {
		doubled = true;
		CH_SHOW_ONE(res->doubles + 1, "  double outcome: %s has %d "
			    "terminal transitions\n", row->id, row->outcomes);
	}
	if (strcmp(row->status, "completed") == 0 &&
	    row->result_attempt != row->attempts) {
		doubled = true;
		CH_SHOW_ONE(res->doubles + 1, "  stale outcome: %s completed "
			    "by attempt %d of %d\n", row->id,
			    row->result_attempt, row->attempts);
	}
	if (ch_is_terminal(row->status) && row->outcomes == 0) {
		anomaly = true;
		CH_SHOW_ONE(res->anomalies + 1, "  %s is %s without a "
			    "recorded transition\n", row->id, row->status);
	}

	/*
	 * Every execution after the first is a re-execution: a violation
	 * when it repeats an attempt number (unless a crash that loses
	 * unflushed commits explains it: the claim was lost and made again),
	 * or when no fault that can interrupt attempts explains why the one
	 * before it did not end the job.  More
	 * executions than attempts implies one of these, or an anomaly.
	 */
	n = ch_execs(row->id, &first);
	for (i = 0; i < n; i++) {
		const struct th_record *e = &run.recs[first + i];
		bool repeat = false;

		if (e->attempt > row->attempts) {
			anomaly = true;
			CH_SHOW_ONE(res->anomalies + 1, "  %s: execution of "
				    "attempt %d, row says %d attempts\n",
				    row->id, e->attempt, row->attempts);
		}
		for (j = 0; j < i && !repeat; j++)
			if (run.recs[first + j].attempt == e->attempt)
				repeat = true;
		if (i == 0)
			continue;
		if (repeat && run.sc->loses_claims &&
		    ch_explained(&run.recs[first + j - 1], e)) {
			/* the claim of the first run was lost with the
			 * crash; only the kept claim can write the outcome */
			res->reruns++;
			res->reclaims++;
		} else if (repeat) {
			res->dups++;
			reused = true;
			CH_SHOW_ONE(res->dups, "  %s: attempt %d executed "
				    "twice (at %" PRId64 " and %" PRId64 ")\n",
				    row->id, e->attempt, run.recs[first + j - 1].ms,
				    e->ms);
		} else if (ch_explained(e - 1, e)) {
			res->reruns++;
		} else {
			res->dups++;
			CH_SHOW_ONE(res->dups, "  %s: re-executed (attempt %d "
				    "at %" PRId64 ", then attempt %d at %" PRId64
				    ") with no fault to explain it\n", row->id,
				    (e - 1)->attempt, (e - 1)->ms, e->attempt,
				    e->ms);
		}
	}
	if (strcmp(row->status, "completed") == 0) {
		bool ran = false;

		for (i = 0; i < n; i++)
			if (run.recs[first + i].attempt == row->result_attempt)
				ran = true;
		if (!ran) {
			anomaly = true;
			CH_SHOW_ONE(res->anomalies + 1, "  %s completed by "
				    "attempt %d that never executed\n",
				    row->id, row->result_attempt);
		}
	}
	if (reused)
		res->reused++;
	if (doubled)
		res->doubles++;
	if (anomaly)
		res->anomalies++;
}

/* Fill the result from the database and the record file, then fail the
 * case when a delivery rule was broken. */
static void ch_verify(long long left)
{
	struct ch_result *res = run.res;
	int64_t last_end = 0;
	long long last_done;
	PGresult *res_done;
	char since[32];
	size_t i;
	int k;

	res->refused = atomic_load(&run.refused);
	res->errors = atomic_load(&run.errors);
	res->gave_up = atomic_load(&run.gave_up);
	ch_load_rows();
	ch_load_records();
	res->rows = (long)run.nrows;
	for (k = 0; k < run.nslots; k++) {
		if (!run.slots[k].acked)
			continue;
		res->acked++;
		if (!ch_find_row(run.slots[k].id)) {
			res->lost++;
			CH_SHOW_ONE(res->lost, "  LOST: %s was acknowledged "
				    "(201) but is not in PostgreSQL\n",
				    run.slots[k].id);
		}
	}
	for (i = 0; i < run.nrows; i++)
		ch_verify_job(&run.rows[i]);

	for (k = 0; k < run.nwin; k++)
		if (run.win[k].end > last_end)
			last_end = run.win[k].end;
	/* recovery: from the end of the last fault until every job
	 * submitted before that moment was terminal */
	if (snprintf(since, sizeof(since), "%" PRId64, last_end) <
		    (int)sizeof(since) &&
	    left == 0 && res->stuck == 0 &&
	    (res_done = ch_query("SELECT (extract(epoch FROM "
				 "max(completed_at)) * 1000)::bigint FROM jobs "
				 "WHERE created_at <= to_timestamp($1::bigint "
				 "/ 1000.0)", 1, (const char *const[]){ since }))) {
		last_done = PQntuples(res_done) == 1 &&
					    !PQgetisnull(res_done, 0, 0) ?
				    ch_nonneg(PQgetvalue(res_done, 0, 0)) :
				    0;
		PQclear(res_done);
		res->recover_s = last_done > last_end ?
					 (double)(last_done - last_end) / 1000.0 :
					 0.0;
	}
	if (res->reused)
		ch_note("%ld job(s) ran one attempt number twice with no crash "
			"to explain it", res->reused);
	else if (res->reclaims)
		ch_note("%ld claim(s) lost with the crash and made again; "
			"one outcome each", res->reclaims);
	res->finished = true;
	res->passed = res->lost == 0 && res->stuck == 0 && res->failed == 0 &&
		      res->dups == 0 && res->doubles == 0 &&
		      res->anomalies == 0 && res->crashes == 0 &&
		      res->gave_up == 0 && res->extra_ok &&
		      res->faults == run.sc->faults;
	printf("   acked %ld of %d, rows %ld, 503 %ld, other errors %ld, "
	       "gave up %ld | lost %ld stuck %ld failed %ld re-runs %ld "
	       "dup %ld double %ld anomalies %ld crashes %ld | %s%s%s\n",
	       res->acked, res->jobs, res->rows, res->refused, res->errors,
	       res->gave_up, res->lost, res->stuck, res->failed, res->reruns,
	       res->dups, res->doubles, res->anomalies, res->crashes,
	       res->passed ? "PASS" : "FAIL", res->note[0] ? " - " : "",
	       res->note);
	fflush(stdout);
	if (!res->passed)
		fail_msg("%s: the delivery contract was broken (see above)",
			 res->name);
}

/* ---- the generic scenario: one node, submissions spread over
 * submit_ms, faults at random moments of that time ---- */

typedef void (*ch_inject_fn)(struct th_daemon *node, int k);

static void ch_generic(int which, ch_inject_fn inject)
{
	struct th_daemon *node;
	int64_t at;
	long long left;
	int k, faults;

	ch_begin(which, 0);
	node = ch_node_start();
	run.target = node;
	ch_install_audit();
	ch_start_submitters();
	faults = run.sc->faults;
	for (k = 0; k < faults; k++) {
		/* somewhere in the k-th share of the submission time */
		at = run.t0 + (int64_t)run.sc->submit_ms * k / faults +
		     ch_rand_between(run.sc->submit_ms / faults / 5,
				     run.sc->submit_ms / faults * 4 / 5);
		if (at > th_now_ms())
			ch_watch((int)(at - th_now_ms()));
		inject(node, k);
		run.res->faults++;
	}
	left = ch_settle();
	ch_verify(left);
}

static void inject_kill9(struct th_daemon *node, int k)
{
	struct ch_window *w;
	long long running = -1;

	(void)k;
	ch_query_long("SELECT count(*) FROM jobs WHERE status = 'running'",
		      &running);
	w = ch_window_open();
	th_daemon_kill(node);
	printf("   kill -9 #%d (%lld jobs running)\n", k + 1, running);
	th_sleep_ms(ch_rand_between(0, 500));
	ch_node_restart(node);
	w->end = th_wall_ms();
}

static void inject_redis_flush(struct th_daemon *node, int k)
{
	struct ch_window *w = ch_window_open();

	(void)node;
	if (ch_redis_command("FLUSHALL") != 0)
		fail_msg("FLUSHALL failed");
	w->end = th_wall_ms();
	printf("   FLUSHALL #%d\n", k + 1);
}

/* Redis back up: how long until /readyz says so. */
static void ch_note_ready(const struct th_daemon *node)
{
	long ms = ch_wait_ready(node, 30000);

	if (ms < 0) {
		run.res->extra_ok = false;
		ch_note("/readyz not 200 within 30 s after the fault");
	}
}

static void inject_redis_kill(struct th_daemon *node, int k)
{
	struct ch_window *w;
	pid_t pid = ch_redis_pid();
	int i;

	if (pid <= 0)
		fail_msg("no Redis pid in %s", ch.redis_pidfile);
	w = ch_window_open();
	if (kill(pid, SIGKILL) < 0)
		fail_msg("kill -9 Redis %ld: %s", (long)pid, strerror(errno));
	for (i = 0; i < 100 && ch_redis_command("PING") == 0; i++)
		th_sleep_ms(50);
	printf("   Redis kill -9 #%d\n", k + 1);
	ch_watch(run.sc->down_ms);
	if (th_servers("redis-start", NULL) != 0)
		fail_msg("cannot restart Redis");
	w->end = th_wall_ms();
	ch_note_ready(node);
}

static void inject_redis_stop(struct th_daemon *node, int k)
{
	struct ch_window *w = ch_window_open();

	if (th_servers("redis-stop", NULL) != 0 ||
	    ch_redis_command("PING") == 0)
		fail_msg("cannot stop Redis");
	printf("   Redis stopped #%d for %d ms\n", k + 1, run.sc->down_ms);
	ch_watch(run.sc->down_ms);
	if (th_servers("redis-start", NULL) != 0)
		fail_msg("cannot restart Redis");
	w->end = th_wall_ms();
	ch_note_ready(node);
}

static void ch_pg_outage(struct th_daemon *node, int k, const char *mode)
{
	struct ch_window *w = ch_window_open();

	th_pg_stop_mode(mode);
	printf("   PostgreSQL stopped (%s) #%d for %d ms\n", mode, k + 1,
	       run.sc->down_ms);
	ch_watch(run.sc->down_ms);
	th_pg_start();
	w->end = th_wall_ms();
	ch_note_ready(node);
}

static void inject_pg_fast(struct th_daemon *node, int k)
{
	ch_pg_outage(node, k, "fast");
}

static void inject_pg_immediate(struct th_daemon *node, int k)
{
	ch_pg_outage(node, k, "immediate");
}

static void inject_sigterm(struct th_daemon *node, int k)
{
	struct ch_window *w;
	long long before = -1, after = -1;
	int code;

	ch_query_long("SELECT count(*) FROM jobs WHERE status = 'running'",
		      &before);
	w = ch_window_open();
	code = th_daemon_stop(node, 30000);
	/* the node is gone: nothing of it may still be "running" */
	if (ch_query_long("SELECT count(*) FROM jobs WHERE status = "
			  "'running'", &after) != 0)
		after = -1;
	printf("   SIGTERM #%d: exit %d, running before %lld, after exit "
	       "%lld\n", k + 1, code, before, after);
	if (code != 0) {
		run.res->extra_ok = false;
		ch_note("SIGTERM #%d: exit code %d", k + 1, code);
	}
	if (after != 0) {
		run.res->extra_ok = false;
		ch_note("SIGTERM #%d: %lld jobs left running", k + 1, after);
	} else {
		ch_note("#%d: %lld running at SIGTERM, 0 after exit", k + 1,
			before);
	}
	ch_node_restart(node);
	w->end = th_wall_ms();
}

/* ---- the cases ---- */

static void test_kill9(void **state)
{
	(void)state;
	ch_generic(SC_KILL9, inject_kill9);
	th_case_passed();
}

static void test_redis_flush(void **state)
{
	(void)state;
	ch_generic(SC_REDIS_FLUSH, inject_redis_flush);
	th_case_passed();
}

static void test_redis_kill(void **state)
{
	(void)state;
	ch_generic(SC_REDIS_KILL, inject_redis_kill);
	th_case_passed();
}

static void test_redis_stop(void **state)
{
	(void)state;
	ch_generic(SC_REDIS_STOP, inject_redis_stop);
	th_case_passed();
}

static void test_pg_fast(void **state)
{
	(void)state;
	ch_generic(SC_PG_FAST, inject_pg_fast);
	th_case_passed();
}

static void test_pg_immediate(void **state)
{
	(void)state;
	ch_generic(SC_PG_IMMEDIATE, inject_pg_immediate);
	th_case_passed();
}

static void test_sigterm(void **state)
{
	(void)state;
	ch_generic(SC_SIGTERM, inject_sigterm);
	th_case_passed();
}

#define CH_FROZEN_JOBS CH_WORKERS /* every worker of node A is busy */
#define CH_FROZEN_SLEEP_MS 4000

static long long ch_count_ids(const char *sql_prefix)
{
	char sql[4096];
	size_t used;
	long long v = -1;
	int i, n;

	n = snprintf(sql, sizeof(sql), "%s AND id IN (", sql_prefix);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return -1;
	used = (size_t)n;
	for (i = 0; i < CH_FROZEN_JOBS; i++) {
		n = snprintf(sql + used, sizeof(sql) - used, "%s'%s'",
			     i ? ", " : "", run.slots[i].id);
		if (n < 0 || (size_t)n >= sizeof(sql) - used)
			return -1;
		used += (size_t)n;
	}
	if (used + 2 > sizeof(sql))
		return -1;
	sql[used++] = ')';
	sql[used] = '\0';
	if (ch_query_long(sql, &v) != 0)
		return -1;
	return v;
}

/*
 * Node A runs CH_FROZEN_JOBS long jobs, one per worker; node B (same
 * database and Redis prefix) starts and takes the background load; A is
 * frozen with SIGSTOP past its lease, B's rescuer hands the jobs back and
 * B runs them again; A resumes, finishes its stale attempts and must have
 * its outcomes rejected.
 */
static void test_sigstop(void **state)
{
	struct th_daemon *a, *b;
	struct ch_window *w;
	struct th_resp resp;
	char body[160];
	long long n = -1;
	int64_t deadline, stopped_at, frozen_wall;
	pid_t a_pid;
	int i, rejected = 0, len;
	size_t first, ne, j;

	(void)state;
	ch_begin(SC_SIGSTOP, CH_FROZEN_JOBS);
	a = ch_node_start();
	ch_install_audit();
	len = snprintf(body, sizeof(body),
		       "{\"type\":\"record\",\"max_attempts\":10,\"payload\":"
		       "{\"frozen\":true,\"sleep_ms\":%d}}", CH_FROZEN_SLEEP_MS);
	assert_true(len > 0 && (size_t)len < sizeof(body));
	for (i = 0; i < CH_FROZEN_JOBS; i++) {
		th_submit(a, body, run.slots[i].id);
		run.slots[i].acked = true;
	}
	deadline = th_now_ms() + 20000;
	while ((n = ch_count_ids("SELECT count(*) FROM jobs WHERE status = "
				 "'running'")) != CH_FROZEN_JOBS) {
		if (th_now_ms() >= deadline)
			fail_msg("the long jobs did not all start on node A "
				 "(%lld running)", n);
		ch_watch(50);
	}
	a_pid = a->pid;

	b = th_daemon_start_peer(a, CH_ENV, run.grace_env, NULL);
	run.nodes[run.nnodes++] = b;
	run.target = b;
	ch_start_submitters();
	ch_watch(300);

	w = ch_window_open();
	frozen_wall = w->start;
	if (kill(a_pid, SIGSTOP) < 0)
		fail_msg("SIGSTOP: %s", strerror(errno));
	run.frozen = a;
	stopped_at = th_now_ms();
	run.res->faults++;
	printf("   SIGSTOP node A (pid %ld) with %d jobs running\n",
	       (long)a_pid, CH_FROZEN_JOBS);
	/* past the lease, and until B has claimed every frozen job again */
	deadline = stopped_at + CH_LEASE_S * 1000 + 30000;
	for (;;) {
		n = ch_count_ids("SELECT count(*) FROM jobs WHERE attempts "
				 ">= 2");
		if (n == CH_FROZEN_JOBS &&
		    th_now_ms() - stopped_at >= CH_LEASE_S * 1000 + 2000)
			break;
		if (th_now_ms() >= deadline)
			break;
		ch_watch(100);
	}
	printf("   %lld of %d frozen jobs taken over by node B after %.1f s\n",
	       n, CH_FROZEN_JOBS, (double)(th_now_ms() - stopped_at) / 1000);
	if (n != CH_FROZEN_JOBS) {
		run.res->extra_ok = false;
		ch_note("only %lld of %d frozen jobs taken over while A was "
			"stopped", n, CH_FROZEN_JOBS);
	}
	kill(a_pid, SIGCONT);
	run.frozen = NULL;
	w->end = th_wall_ms();

	/* A's workers finish their stale attempts: fenced out */
	deadline = th_now_ms() + 15000;
	while ((rejected = th_daemon_log_count(a, "outcome rejected")) <
		       CH_FROZEN_JOBS &&
	       th_now_ms() < deadline)
		ch_watch(200);
	printf("   node A logged %d \"outcome rejected\" line(s)\n", rejected);
	if (rejected < 1) {
		run.res->extra_ok = false;
		ch_note("stale node logged no \"outcome rejected\"");
	} else {
		ch_note("stale node: %d/%d outcomes rejected", rejected,
			CH_FROZEN_JOBS);
	}

	{
		long long left = ch_settle();

		/* the frozen jobs: one outcome, by a later attempt; their
		 * first execution was A's (B did not exist yet), the last one
		 * B's (it started while A was frozen) */
		ch_load_rows();
		ch_load_records();
		for (i = 0; i < CH_FROZEN_JOBS; i++) {
			const struct ch_row *row = ch_find_row(run.slots[i].id);

			if (!row) {
				run.res->extra_ok = false;
				continue;
			}
			ne = ch_execs(row->id, &first);
			if (strcmp(row->status, "completed") != 0 ||
			    row->attempts < 2 || row->outcomes != 1 ||
			    row->result_attempt != row->attempts || ne < 2 ||
			    run.recs[first].attempt != 1 ||
			    run.recs[first].ms > frozen_wall ||
			    run.recs[first + ne - 1].ms < frozen_wall) {
				run.res->extra_ok = false;
				fprintf(stderr, "  frozen job %s: status %s "
					"attempts %d outcomes %d result of "
					"attempt %d, %zu executions:",
					row->id, row->status, row->attempts,
					row->outcomes, row->result_attempt, ne);
				for (j = 0; j < ne; j++)
					fprintf(stderr, " [attempt %d pid %ld]",
						run.recs[first + j].attempt,
						run.recs[first + j].pid);
				fprintf(stderr, "\n");
			}
		}
		if (!run.res->extra_ok)
			ch_note("frozen jobs: see the log above");
		free(run.rows);
		run.rows = NULL;
		free(run.recs);
		run.recs = NULL;
		run.nrecs = 0;
		ch_verify(left);
	}
	th_http(b, "GET", "/readyz", NULL, NULL, &resp);
	th_resp_free(&resp);
	th_case_passed();
}

/* ---- fixtures ---- */

static int ch_case_setup(void **state)
{
	int r;

	/* a PostgreSQL restart in the previous case broke its connection */
	th_db_reset();
	r = th_case_setup(state);

	/* the harness's watchdog, with this suite's budget per case */
	alarm(ch.full ? 2400 : 420);
	return r;
}

static int ch_case_teardown(void **state)
{
	if (run.frozen && run.frozen->pid > 0)
		kill(run.frozen->pid, SIGCONT);
	run.frozen = NULL;
	ch_join_submitters();
	if (run.res && !run.res->finished)
		snprintf(run.res->note, sizeof(run.res->note), "%s",
			 "did not finish (see the log above)");
	free(run.slots);
	run.slots = NULL;
	free(run.rows);
	run.rows = NULL;
	free(run.recs);
	run.recs = NULL;
	if (run.db) {
		PQfinish(run.db);
		run.db = NULL;
	}
	return th_case_teardown(state);
}

static int ch_group_setup(void **state)
{
	(void)state;
	return th_group_setup("chaos");
}

static int ch_group_teardown(void **state)
{
	(void)state;
	return th_group_teardown();
}

/* ---- the table ---- */

static void ch_print_table(void)
{
	const struct ch_result *r;
	char rec[32];
	int i;

	printf("\nchaos suite (%s), seed %" PRIu64 "\n\n",
	       ch.full ? "TASKQ_CHAOS=full" : "short", ch.seed);
	printf("| fault | jobs | faults | 503 / errors | gave up | unacked "
	       "rows | lost | stuck | not completed | re-runs | dup exec | "
	       "double outcomes | recover (s) | result |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	       "---:|---|\n");
	for (i = 0; i < SC_COUNT; i++) {
		r = &ch.results[i];
		if (!r->ran)
			continue;
		if (r->recover_s >= 0)
			snprintf(rec, sizeof(rec), "%.1f", r->recover_s);
		else
			snprintf(rec, sizeof(rec), "%s", "never");
		printf("| %s | %d | %d | %ld / %ld | %ld | %ld | %ld | %ld | "
		       "%ld | %ld | %ld | %ld | %s | %s%s%s%s |\n",
		       r->name, r->jobs, r->faults, r->refused, r->errors,
		       r->gave_up, r->rows - r->acked, r->lost, r->stuck, r->failed, r->reruns,
		       r->dups, r->doubles, rec,
		       !r->finished ? "ERROR" : r->passed ? "PASS" : "FAIL",
		       r->crashes ? " (taskqd crashed)" : "",
		       r->note[0] ? ": " : "", r->note);
	}
	printf("\n");
	fflush(stdout);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kill9, ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_redis_flush, ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_redis_kill, ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_redis_stop, ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_pg_fast, ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_pg_immediate,
						ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_sigstop, ch_case_setup,
						ch_case_teardown),
		cmocka_unit_test_setup_teardown(test_sigterm, ch_case_setup,
						ch_case_teardown),
	};
	const char *mode = getenv("TASKQ_CHAOS");
	const char *seed = getenv("TASKQ_CHAOS_SEED");
	const char *only = getenv("TASKQ_CHAOS_ONLY");
	char *end;
	int rc, i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ch.full = mode && strcmp(mode, "full") == 0;
	if (seed && *seed) {
		errno = 0;
		ch.seed = strtoull(seed, &end, 10);
		if (errno || *end) {
			fprintf(stderr, "chaos: TASKQ_CHAOS_SEED must be a "
				"number\n");
			return 2;
		}
	} else {
		ch.seed = ch_mix((uint64_t)th_wall_ms() ^
				 ((uint64_t)getpid() << 32));
	}
	printf("chaos suite: %s run, seed %" PRIu64
	       " (TASKQ_CHAOS_SEED repeats it)\n",
	       ch.full ? "full" : "short", ch.seed);

	if (ch_servers_up() < 0) {
		ch_servers_down();
		fprintf(stderr, "chaos: FAIL: the private servers did not "
			"start\n");
		return 1;
	}
	if (only && *only)
		cmocka_set_test_filter(only);
	rc = cmocka_run_group_tests_name("chaos", tests, ch_group_setup,
					 ch_group_teardown);
	ch_print_table();
	for (i = 0; i < SC_COUNT; i++)
		if (ch.results[i].ran && !ch.results[i].passed)
			rc = rc ? rc : 1;
	ch_servers_down();
	printf("chaos suite: %s\n", rc == 0 ? "PASS" : "FAIL");
	return rc == 0 ? 0 : 1;
}
