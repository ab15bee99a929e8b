/*
 * bench.c - taskq-bench: drive a running taskqd over HTTP and measure it.
 *
 *   taskq-bench [options] SCENARIO...   run scenarios, write their JSON
 *   taskq-bench report --out FILE PART...  merge JSON parts, print the table
 *
 * Scenarios: burst, bulk, steady, idle, idlecost, memory (see
 * docs/PERFORMANCE.md).  Submissions go over N keep-alive connections,
 * driven by one thread (client.c).  Times of the jobs
 * come from the database (created_at, started_at, completed_at: the
 * database clock); the client's clock (same host) times the requests and
 * the first submission of a burst.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "client.h"

#define BENCH_BODY_MAX (4L << 20)
#define BENCH_MAX_CONNS TQ_CLIENT_MAX_CONNS
#define BENCH_MAX_BATCH 1000
#define BENCH_MAX_JOBS 100000000L
#define BENCH_POLL_S 0.05
#define BENCH_REQUEST_TIMEOUT_S 60.0

struct opts {
	const char *url;      /* http://127.0.0.1:PORT */
	const char *pg;       /* the bench database */
	const char *pg_admin; /* another database of the same server */
	const char *dbname;
	const char *redis_host;
	int redis_port;
	pid_t taskqd, pg_pid, redis_pid;
	int conns;
	long jobs;
	int batch;
	double rate;
	double duration;
	double idle_interval_ms;
	double idle_duration;
	double idle_cost_s;
	long mem_jobs;
	double mem_limit_s;
	double timeout_s;
	const char *tag;
	const char *out;
	bool quick;
};

/* ---- load generation ---- */

struct load {
	const struct opts *o;
	const char *path;
	const char *marker;
	long total;
	int batch;        /* jobs per request; 0: POST /v1/jobs one by one */
	double deadline;  /* mono; 0: none.  No new request after it. */
	/* paced mode: job i is sent at t0 + i / rate, connection k sends
	 * i = k, k + conns, ... */
	double rate;
	double t0;
	int conns;
	long *cursor;     /* paced: connection k's next job */
	double *lat;      /* paced, per job: the HTTP request, s */
	double *late;     /* paced, per job: start behind schedule, s */
	long next;        /* as fast as accepted: the next job to send */
	char *single;     /* the body of one job */
	size_t single_len;
	long accepted, rejected, failed;
	long last_bad_status;
	bool unsupported;
	double first_wall; /* the run's start, opening the connections
			    * included: wall clock */
};

static const char job_fmt[] = "{\"type\":\"noop\",\"payload\":{\"b\":\"%s\"}}";

/* {"jobs":[job,...]} with n jobs, or one job when batch is 0. */
static char *make_body(const struct load *l, long n, size_t *len)
{
	size_t one = sizeof(job_fmt) + strlen(l->marker) + 1;
	size_t cap = (size_t)n * (one + 1) + 32, pos = 0;
	char *b = malloc(cap);
	long i;
	int rc;

	if (!b)
		return NULL;
	if (!l->batch) {
		rc = snprintf(b, cap, job_fmt, l->marker);
		if (rc < 0 || (size_t)rc >= cap)
			goto fail;
		*len = (size_t)rc;
		return b;
	}
	rc = snprintf(b, cap, "{\"jobs\":[");
	if (rc < 0 || (size_t)rc >= cap)
		goto fail;
	pos = (size_t)rc;
	for (i = 0; i < n; i++) {
		rc = snprintf(b + pos, cap - pos, i ? "," : "");
		if (rc < 0 || (size_t)rc >= cap - pos)
			goto fail;
		pos += (size_t)rc;
		rc = snprintf(b + pos, cap - pos, job_fmt, l->marker);
		if (rc < 0 || (size_t)rc >= cap - pos)
			goto fail;
		pos += (size_t)rc;
	}
	rc = snprintf(b + pos, cap - pos, "]}");
	if (rc < 0 || (size_t)rc >= cap - pos)
		goto fail;
	*len = pos + (size_t)rc;
	return b;
fail:
	free(b);
	return NULL;
}

static void account(struct load *l, long status, long n)
{
	if (status == 201) {
		l->accepted += n;
	} else if (status < 0) {
		l->failed += n;
	} else {
		l->rejected += n;
		l->last_bad_status = status;
		if (l->batch && (status == 404 || status == 405))
			l->unsupported = true;
	}
}

/* Connection k's next request (tq_client_ops.next).  Paced: its next job
 * at its time, tagged with the job's index.  Otherwise the next jobs of
 * the run, now, tagged with their count. */
static bool load_next(void *arg, int k, struct tq_client_req *r)
{
	struct load *l = arg;
	long per = l->batch ? l->batch : 1;

	if (l->rate > 0) {
		long i = l->cursor[k];

		if (i >= l->total)
			return false;
		l->cursor[k] = i + l->conns;
		*r = (struct tq_client_req){.body = l->single, .len = l->single_len,
					    .not_before = l->t0 + (double)i / l->rate,
					    .tag = i};
		return true;
	}
	for (;;) {
		long cnt = l->total - l->next < per ? l->total - l->next : per;
		size_t len = l->single_len;
		char *body;

		if (l->next >= l->total || l->unsupported)
			return false;
		if (l->deadline > 0 && tq_bench_mono() > l->deadline)
			return false;
		l->next += cnt;
		body = l->batch ? make_body(l, cnt, &len) : l->single;
		if (!body) {
			account(l, -1, cnt);
			continue;
		}
		*r = (struct tq_client_req){.body = body, .len = len, .tag = cnt};
		return true;
	}
}

/* The answer to r (tq_client_ops.done). */
static void load_done(void *arg, int k, const struct tq_client_req *r, long status,
		      double start, double end)
{
	struct load *l = arg;

	(void)k;
	if (l->rate > 0) {
		l->lat[r->tag] = end - start;
		l->late[r->tag] = start - r->not_before;
		account(l, status, 1);
		return;
	}
	account(l, status, r->tag);
	if (r->body != l->single)
		free((char *)r->body);
}

/* Run the load on conns connections; the submission phase's wall time in
 * *secs.  A run that cannot start counts every job as failed. */
static void load_run(struct load *l, int conns, double *secs)
{
	static const struct tq_client_ops ops = {.next = load_next, .done = load_done};
	struct tq_client_opts co = {.url = l->o->url, .path = l->path, .conns = conns,
				    .timeout_s = BENCH_REQUEST_TIMEOUT_S};
	char err[256] = "";
	struct load one = *l;
	double t;
	int rc;

	one.batch = 0;
	l->conns = conns;
	l->single = make_body(&one, 1, &l->single_len);
	l->cursor = calloc((size_t)conns, sizeof(*l->cursor));
	if (!l->single || !l->cursor) {
		rc = -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
	} else {
		for (int k = 0; k < conns; k++)
			l->cursor[k] = k;
		l->t0 = tq_bench_mono() + 0.05;
		l->first_wall = tq_bench_wall();
		t = tq_bench_mono();
		rc = tq_client_run(&co, &ops, l, err, sizeof(err));
		*secs = tq_bench_mono() - t;
	}
	if (rc) {
		fprintf(stderr, "taskq-bench: %s\n", err);
		l->failed = l->total - l->accepted - l->rejected;
	}
	free(l->single);
	free(l->cursor);
	l->single = NULL;
	l->cursor = NULL;
}

/* ---- the database side ---- */

struct ctx {
	struct opts o;
	PGconn *db;
	PGconn *admin;
	cJSON *out;
	int run_id;
	bool bulk_ok;
	int max_children;
};

static PGresult *q(struct ctx *x, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(x->db, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "taskq-bench: query failed: %s", PQerrorMessage(x->db));
		PQclear(res);
		return NULL;
	}
	return res;
}

static double getd(PGresult *res, int row, int col)
{
	char *end;
	double v;

	if (PQgetisnull(res, row, col))
		return -1;
	v = strtod(PQgetvalue(res, row, col), &end);
	return end == PQgetvalue(res, row, col) ? -1 : v;
}

/* Wait until no job is pending, running or scheduled (the bench database
 * holds only the bench's jobs); 0, or -ETIMEDOUT. */
static int wait_drained(struct ctx *x, double timeout_s)
{
	double end = tq_bench_mono() + timeout_s;

	for (;;) {
		/* through the partial indexes of open jobs (sql/006): a count
		 * would scan the whole table every poll and bill PostgreSQL's
		 * CPU for it */
		PGresult *res = q(x, "SELECT (EXISTS (SELECT 1 FROM jobs WHERE "
				  "watch_at IS NOT NULL AND status IN ('pending', "
				  "'running')) OR EXISTS (SELECT 1 FROM jobs WHERE "
				  "watch_at IS NULL AND completed_at IS NULL AND "
				  "status = 'scheduled'))::int", 0, NULL);
		double left = -1;
		int ch;

		if (res) {
			left = getd(res, 0, 0);
			PQclear(res);
		}
		ch = tq_probe_children(x->o.taskqd);
		if (ch > x->max_children)
			x->max_children = ch;
		if (left == 0)
			return 0;
		if (tq_bench_mono() > end)
			return -ETIMEDOUT;
		usleep((useconds_t)(BENCH_POLL_S * 1e6));
	}
}

struct cpu {
	double taskqd, pg, redis;
	double machine, steal; /* -1: unreadable */
};

/* Server counters around a run, for the per-job costs. */
struct counters {
	long long xacts, wal_syncs, wal_records;
	long redis_calls;
	bool ok;
};

static void counters_read(const struct ctx *x, struct counters *c)
{
	c->ok = tq_probe_pg_xacts(x->admin, x->o.dbname, &c->xacts) == 0 &&
		tq_probe_pg_wal(x->admin, &c->wal_syncs, &c->wal_records) == 0;
	c->redis_calls = tq_probe_redis_calls(x->o.redis_host, x->o.redis_port);
}

static void per_job_json(cJSON *j, const struct counters *a,
			 const struct counters *b, double jobs)
{
	cJSON *o;

	if (!a->ok || !b->ok || jobs <= 0)
		return;
	o = cJSON_AddObjectToObject(j, "per_job");
	cJSON_AddNumberToObject(o, "pg_xacts", (double)(b->xacts - a->xacts) / jobs);
	cJSON_AddNumberToObject(o, "wal_syncs", (double)(b->wal_syncs - a->wal_syncs) / jobs);
	cJSON_AddNumberToObject(o, "wal_records",
				(double)(b->wal_records - a->wal_records) / jobs);
	if (a->redis_calls >= 0 && b->redis_calls >= 0)
		cJSON_AddNumberToObject(o, "redis_cmds",
					(double)(b->redis_calls - a->redis_calls - 1) / jobs);
}

static void cpu_read(const struct ctx *x, struct cpu *c)
{
	c->taskqd = tq_probe_cpu_tree(x->o.taskqd);
	c->pg = tq_probe_cpu_tree(x->o.pg_pid);
	c->redis = tq_probe_cpu(x->o.redis_pid);
	if (tq_probe_machine_cpu(&c->machine, &c->steal) < 0)
		c->machine = c->steal = -1;
}

static cJSON *cpu_json(const struct cpu *a, const struct cpu *b)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddNumberToObject(j, "taskqd", a->taskqd >= 0 && b->taskqd >= 0 ? b->taskqd - a->taskqd : -1);
	cJSON_AddNumberToObject(j, "postgres", a->pg >= 0 && b->pg >= 0 ? b->pg - a->pg : -1);
	cJSON_AddNumberToObject(j, "redis", a->redis >= 0 && b->redis >= 0 ? b->redis - a->redis : -1);
	/* a virtual machine's CPUs taken by the hypervisor: the same code
	 * then measures slower, and the run says so */
	cJSON_AddNumberToObject(j, "stolen_pct",
				a->machine >= 0 && b->machine > a->machine ?
					100.0 * (b->steal - a->steal) / (b->machine - a->machine) :
					-1);
	return j;
}

static void make_marker(struct ctx *x, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s-%s-%d-%ld", name, x->o.tag[0] ? x->o.tag : "t",
		 ++x->run_id, (long)time(NULL));
}

static void add_pcts(cJSON *obj, const char *name, double *v, size_t n, double scale)
{
	cJSON *j = cJSON_AddObjectToObject(obj, name);

	tq_bench_sort(v, n);
	cJSON_AddNumberToObject(j, "n", (double)n);
	cJSON_AddNumberToObject(j, "p50", tq_bench_pct(v, n, 0.50) * scale);
	cJSON_AddNumberToObject(j, "p95", tq_bench_pct(v, n, 0.95) * scale);
	cJSON_AddNumberToObject(j, "p99", tq_bench_pct(v, n, 0.99) * scale);
	cJSON_AddNumberToObject(j, "max", n ? v[n - 1] * scale : -1);
}

static void add_counts(cJSON *j, const struct load *l)
{
	cJSON_AddNumberToObject(j, "accepted", (double)l->accepted);
	cJSON_AddNumberToObject(j, "rejected", (double)l->rejected);
	cJSON_AddNumberToObject(j, "failed_requests", (double)l->failed);
	if (l->rejected)
		cJSON_AddNumberToObject(j, "last_bad_status", (double)l->last_bad_status);
}

static void load_init(struct ctx *x, struct load *l, const char *path,
		      const char *marker, long total, int batch)
{
	memset(l, 0, sizeof(*l));
	l->o = &x->o;
	l->path = path;
	l->marker = marker;
	l->total = total;
	l->batch = batch;
}

/* burst / bulk: submit total as fast as accepted, wait for the last
 * outcome; submissions/s, end-to-end jobs/s, CPU, memory. */
static cJSON *scenario_throughput(struct ctx *x, const char *name, long total,
				  int batch, double limit_s)
{
	cJSON *j = cJSON_CreateObject();
	char marker[128];
	const char *params[1] = {marker};
	struct load l;
	struct cpu c0, c1;
	struct counters k0, k1;
	PGresult *res;
	double secs = 0;
	int r;

	make_marker(x, name, marker, sizeof(marker));
	load_init(x, &l, batch ? "/v1/jobs/batch" : "/v1/jobs", marker, total, batch);
	if (limit_s > 0)
		l.deadline = tq_bench_mono() + limit_s;
	x->max_children = tq_probe_children(x->o.taskqd);
	counters_read(x, &k0);
	cpu_read(x, &c0);
	load_run(&l, x->o.conns, &secs);
	if (batch && l.unsupported) {
		cJSON_AddBoolToObject(j, "available", false);
		cJSON_AddNumberToObject(j, "status", (double)l.last_bad_status);
		return j;
	}
	cJSON_AddBoolToObject(j, "available", true);
	cJSON_AddNumberToObject(j, "jobs", (double)total);
	cJSON_AddNumberToObject(j, "connections", x->o.conns);
	if (batch)
		cJSON_AddNumberToObject(j, "batch", batch);
	add_counts(j, &l);
	cJSON_AddNumberToObject(j, "submit_s", secs);
	cJSON_AddNumberToObject(j, "accepted_per_s",
				secs > 0 ? (double)l.accepted / secs : 0);
	r = wait_drained(x, x->o.timeout_s);
	cpu_read(x, &c1);
	/* an idle backend reports its statistics within 1 s, or 10 s when
	 * the shared entry was busy */
	usleep(x->o.quick ? 1200000 : 11000000);
	counters_read(x, &k1);
	cJSON_AddBoolToObject(j, "drained", r == 0);
	cJSON_AddItemToObject(j, "cpu_s", cpu_json(&c0, &c1));
	cJSON_AddNumberToObject(j, "worker_processes_seen", x->max_children);
	cJSON_AddNumberToObject(j, "peak_rss_kib", (double)tq_probe_status_kib(x->o.taskqd, "VmHWM"));
	cJSON_AddNumberToObject(j, "rss_kib", (double)tq_probe_status_kib(x->o.taskqd, "VmRSS"));
	res = q(x, "SELECT count(*), count(*) FILTER (WHERE status = 'completed'), "
		"extract(epoch FROM min(created_at)), "
		"extract(epoch FROM max(completed_at)) "
		"FROM jobs WHERE payload->>'b' = $1", 1, params);
	if (res) {
		double stored = getd(res, 0, 0), done = getd(res, 0, 1);
		double first_created = getd(res, 0, 2), last_done = getd(res, 0, 3);
		double span = last_done - l.first_wall;

		cJSON_AddNumberToObject(j, "stored", stored);
		cJSON_AddNumberToObject(j, "completed", done);
		cJSON_AddNumberToObject(j, "first_submit_to_first_commit_ms",
					(first_created - l.first_wall) * 1e3);
		cJSON_AddNumberToObject(j, "e2e_s", span);
		cJSON_AddNumberToObject(j, "e2e_jobs_per_s", span > 0 ? done / span : 0);
		per_job_json(j, &k0, &k1, stored);
		PQclear(res);
	}
	return j;
}

/* steady / idle: paced submissions, then latency percentiles. */
static cJSON *scenario_paced(struct ctx *x, const char *name, double rate,
			     double duration, int nthreads)
{
	cJSON *j = cJSON_CreateObject();
	char marker[128];
	const char *params[1] = {marker};
	long total = (long)(rate * duration + 0.5), i, n;
	double secs = 0, *start = NULL, *done = NULL, maxlate = 0;
	struct cpu c0, c1;
	struct load l;
	PGresult *res;
	int r;

	make_marker(x, name, marker, sizeof(marker));
	load_init(x, &l, "/v1/jobs", marker, total, 0);
	l.rate = rate;
	l.lat = calloc((size_t)total + 1, sizeof(double));
	l.late = calloc((size_t)total + 1, sizeof(double));
	if (!l.lat || !l.late)
		goto out;
	cpu_read(x, &c0);
	load_run(&l, nthreads, &secs);
	cpu_read(x, &c1);
	cJSON_AddItemToObject(j, "cpu_s", cpu_json(&c0, &c1));
	cJSON_AddNumberToObject(j, "rate", rate);
	cJSON_AddNumberToObject(j, "duration_s", duration);
	cJSON_AddNumberToObject(j, "connections", nthreads);
	cJSON_AddNumberToObject(j, "jobs", (double)total);
	add_counts(j, &l);
	for (i = 0; i < total; i++)
		if (l.late[i] > maxlate)
			maxlate = l.late[i];
	cJSON_AddNumberToObject(j, "client_max_behind_ms", maxlate * 1e3);
	cJSON_AddNumberToObject(j, "achieved_per_s", secs > 0 ? (double)total / secs : 0);
	add_pcts(j, "http_ms", l.lat, (size_t)total, 1e3);
	r = wait_drained(x, x->o.timeout_s);
	cJSON_AddBoolToObject(j, "drained", r == 0);
	res = q(x, "SELECT extract(epoch FROM started_at - created_at), "
		"extract(epoch FROM completed_at - created_at) FROM jobs "
		"WHERE payload->>'b' = $1 AND status = 'completed'", 1, params);
	if (!res)
		goto out;
	n = PQntuples(res);
	start = calloc((size_t)n + 1, sizeof(double));
	done = calloc((size_t)n + 1, sizeof(double));
	if (start && done) {
		for (i = 0; i < n; i++) {
			start[i] = getd(res, (int)i, 0);
			done[i] = getd(res, (int)i, 1);
		}
		add_pcts(j, "submit_to_start_ms", start, (size_t)n, 1e3);
		add_pcts(j, "submit_to_complete_ms", done, (size_t)n, 1e3);
	}
	PQclear(res);
out:
	free(start);
	free(done);
	free(l.lat);
	free(l.late);
	return j;
}

/*
 * Start a scenario with no checkpoint owed.  The WAL of the one before (a
 * million jobs in the memory run, half a gigabyte from a pgbench run)
 * would otherwise have PostgreSQL start a checkpoint in the middle of the
 * next, whose writes and full-page images would then fall on whichever
 * scenario comes next.  Needs a superuser or pg_checkpoint; without it
 * the scenario runs as it is, and its result says so.
 */
static bool checkpoint(struct ctx *x)
{
	PGresult *res = PQexec(x->admin, "CHECKPOINT");
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		fprintf(stderr, "taskq-bench: CHECKPOINT before the scenario: %s",
			PQerrorMessage(x->admin));
	PQclear(res);
	return ok;
}

static cJSON *scenario_idlecost(struct ctx *x)
{
	cJSON *j = cJSON_CreateObject();
	struct tq_redis_idle ri;
	long long x0 = 0, x1 = 0;
	char err[256];
	double t0, t1, settle = 11.0;
	PGresult *res;
	int r0, r1, rr;

	wait_drained(x, x->o.timeout_s);
	/* What the window counts is taskqd's: the earlier scenarios' rows
	 * would otherwise have autovacuum and autoanalyze run in it, and they
	 * count for the same database. */
	res = PQexec(x->db, "VACUUM ANALYZE jobs");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fprintf(stderr, "taskq-bench: VACUUM before the idle window: %s",
			PQerrorMessage(x->db));
	PQclear(res);
	/* leave the last statistics (the jobs', the VACUUM's) time to reach
	 * pg_stat_database: within 1 s, or 10 s when the entry was busy */
	usleep((useconds_t)(settle * 1e6));
	r0 = tq_probe_pg_xacts(x->admin, x->o.dbname, &x0);
	t0 = tq_bench_mono();
	rr = tq_probe_redis_idle(x->o.redis_host, x->o.redis_port, x->o.taskqd,
				 x->o.idle_cost_s, &ri, err, sizeof(err));
	t1 = tq_bench_mono();
	r1 = tq_probe_pg_xacts(x->admin, x->o.dbname, &x1);
	cJSON_AddNumberToObject(j, "window_s", t1 - t0);
	if (rr == 0) {
		cJSON_AddNumberToObject(j, "redis_taskqd_connections", ri.taskqd_conns);
		cJSON_AddNumberToObject(j, "redis_cmds", (double)ri.taskqd_cmds);
		cJSON_AddNumberToObject(j, "redis_cmds_per_s", (double)ri.taskqd_cmds / (t1 - t0));
		cJSON_AddNumberToObject(j, "redis_server_cmds_per_s", (double)ri.server_cmds / (t1 - t0));
	} else {
		cJSON_AddStringToObject(j, "redis_error", err);
	}
	if (r0 == 0 && r1 == 0) {
		cJSON_AddNumberToObject(j, "pg_xacts", (double)(x1 - x0));
		cJSON_AddNumberToObject(j, "pg_xacts_per_s", (double)(x1 - x0) / (t1 - t0));
	} else {
		cJSON_AddStringToObject(j, "pg_error", "cannot read pg_stat_database");
	}
	return j;
}

/* One leg of the memory run: through the batch endpoint when there is
 * one, else one job per request. */
static cJSON *memory_leg(struct ctx *x, const char *name, long jobs, double limit_s)
{
	cJSON *run = scenario_throughput(x, name, jobs, x->bulk_ok ? BENCH_MAX_BATCH : 0,
					 limit_s);

	if (x->bulk_ok && !cJSON_IsTrue(cJSON_GetObjectItem(run, "available"))) {
		cJSON_Delete(run);
		run = scenario_throughput(x, name, jobs, 0, limit_s);
	}
	return run;
}

static double pct_change(long from, long to)
{
	return from > 0 ? 100.0 * (double)(to - from) / (double)from : 0;
}

/*
 * The resident size before the run, after its first tenth (100,000 of
 * 1,000,000 jobs) and at its end.  The target reads "flat from 100,000 to
 * 1,000,000 jobs": the first tenth is the first to take the run's batch
 * size through every connection, whose buffers grow to it once.
 */
static cJSON *scenario_memory(struct ctx *x)
{
	long before = tq_probe_status_kib(x->o.taskqd, "VmRSS");
	long first = x->o.mem_jobs / 10 > 0 ? x->o.mem_jobs / 10 : 1;
	double t0 = tq_bench_mono(), left;
	cJSON *j, *warm, *run;
	long at_first, after;

	warm = memory_leg(x, "memory-first", first, x->o.mem_limit_s);
	at_first = tq_probe_status_kib(x->o.taskqd, "VmRSS");
	left = x->o.mem_limit_s - (tq_bench_mono() - t0);
	run = memory_leg(x, "memory", x->o.mem_jobs - first, left > 1 ? left : 1);
	after = tq_probe_status_kib(x->o.taskqd, "VmRSS");
	j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "jobs_first", (double)first);
	cJSON_AddNumberToObject(j, "rss_before_kib", (double)before);
	cJSON_AddNumberToObject(j, "rss_at_first_kib", (double)at_first);
	cJSON_AddNumberToObject(j, "rss_after_kib", (double)after);
	cJSON_AddNumberToObject(j, "rss_change_pct", pct_change(at_first, after));
	cJSON_AddNumberToObject(j, "rss_change_whole_pct", pct_change(before, after));
	cJSON_AddNumberToObject(j, "peak_rss_kib", (double)tq_probe_status_kib(x->o.taskqd, "VmHWM"));
	cJSON_AddBoolToObject(j, "via_bulk", x->bulk_ok);
	cJSON_AddItemToObject(j, "first", warm);
	cJSON_AddItemToObject(j, "run", run);
	return j;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: taskq-bench [options] SCENARIO...\n"
		"       taskq-bench report --out FILE PART.json...\n"
		"\n"
		"scenarios: burst bulk steady idle idlecost memory\n"
		"\n"
		"  --url URL            taskqd base URL (http://127.0.0.1:PORT)\n"
		"  --pg CONNINFO        the bench database\n"
		"  --pg-admin CONNINFO  another database of the same server\n"
		"  --dbname NAME        name of the bench database\n"
		"  --redis-port N       Redis on 127.0.0.1\n"
		"  --taskqd-pid N --pg-pid N --redis-pid N\n"
		"  --connections N      client connections (32)\n"
		"  --jobs N             jobs of burst and bulk (100000)\n"
		"  --batch N            jobs per bulk request (1000)\n"
		"  --rate N --duration S        steady load (1000/s, 30 s)\n"
		"  --idle-interval-ms N --idle-duration S  idle pickup (100 ms, 10 s)\n"
		"  --idle-cost-s S      idle cost window (10 s)\n"
		"  --mem-jobs N --mem-limit-s S  memory run (1000000, 300 s)\n"
		"  --timeout S          longest wait for the jobs to finish (300 s)\n"
		"  --tag NAME           suffix of the result keys (e.g. process)\n"
		"  --quick              mark the results as a quick run\n"
		"  --out FILE           write the results as JSON\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int write_json(const char *path, const cJSON *j)
{
	char *text = cJSON_Print(j);
	FILE *f;
	int rc = 0;

	if (!text)
		return -ENOMEM;
	f = fopen(path, "we");
	if (!f || fputs(text, f) < 0 || fputc('\n', f) == EOF)
		rc = -EIO;
	if (f && fclose(f))
		rc = -EIO;
	free(text);
	return rc;
}

static cJSON *read_json(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	cJSON *j = NULL;

	if (!f)
		return NULL;
	for (;;) {
		if (cap - len < 4096) {
			char *nb;

			if (cap > (size_t)BENCH_BODY_MAX)
				goto out;
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb)
				goto out;
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	buf[len] = '\0';
	j = cJSON_Parse(buf);
out:
	fclose(f);
	free(buf);
	return j;
}

static int report_main(int argc, char **argv)
{
	cJSON *all = cJSON_CreateObject();
	const char *out = NULL;
	int i, rc = 1;

	for (i = 1; i < argc; i++) {
		cJSON *part, *it, *next;

		if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			out = argv[++i];
			continue;
		}
		part = read_json(argv[i]);
		if (!part) {
			fprintf(stderr, "taskq-bench: cannot read %s\n", argv[i]);
			goto out;
		}
		for (it = part->child; it; it = next) {
			next = it->next;
			cJSON_DetachItemViaPointer(part, it);
			if (!it->string)
				continue;
			cJSON_DeleteItemFromObject(all, it->string);
			cJSON_AddItemToObject(all, it->string, it);
		}
		cJSON_Delete(part);
	}
	tq_report_print(all);
	if (out && write_json(out, all)) {
		fprintf(stderr, "taskq-bench: cannot write %s\n", out);
		goto out;
	}
	rc = tq_report_check(all) ? 1 : 0;
out:
	cJSON_Delete(all);
	return rc;
}

static void add_result(struct ctx *x, const char *name, cJSON *j)
{
	char key[128];

	if (x->o.tag[0])
		snprintf(key, sizeof(key), "%s_%s", name, x->o.tag);
	else
		snprintf(key, sizeof(key), "%s", name);
	cJSON_AddItemToObject(x->out, key, j);
	/* keep partial results on disk as the run goes */
	if (x->o.out)
		write_json(x->o.out, x->out);
}

enum {
	OPT_URL = 256, OPT_PG, OPT_PG_ADMIN, OPT_DBNAME, OPT_REDIS_PORT,
	OPT_TASKQD_PID, OPT_PG_PID, OPT_REDIS_PID, OPT_CONNS, OPT_JOBS,
	OPT_BATCH, OPT_RATE, OPT_DURATION, OPT_IDLE_INT, OPT_IDLE_DUR,
	OPT_IDLE_COST, OPT_MEM_JOBS, OPT_MEM_LIMIT, OPT_TIMEOUT, OPT_TAG,
	OPT_QUICK, OPT_OUT, OPT_HELP
};

static const struct option longopts[] = {
	{"url", required_argument, NULL, OPT_URL},
	{"pg", required_argument, NULL, OPT_PG},
	{"pg-admin", required_argument, NULL, OPT_PG_ADMIN},
	{"dbname", required_argument, NULL, OPT_DBNAME},
	{"redis-port", required_argument, NULL, OPT_REDIS_PORT},
	{"taskqd-pid", required_argument, NULL, OPT_TASKQD_PID},
	{"pg-pid", required_argument, NULL, OPT_PG_PID},
	{"redis-pid", required_argument, NULL, OPT_REDIS_PID},
	{"connections", required_argument, NULL, OPT_CONNS},
	{"jobs", required_argument, NULL, OPT_JOBS},
	{"batch", required_argument, NULL, OPT_BATCH},
	{"rate", required_argument, NULL, OPT_RATE},
	{"duration", required_argument, NULL, OPT_DURATION},
	{"idle-interval-ms", required_argument, NULL, OPT_IDLE_INT},
	{"idle-duration", required_argument, NULL, OPT_IDLE_DUR},
	{"idle-cost-s", required_argument, NULL, OPT_IDLE_COST},
	{"mem-jobs", required_argument, NULL, OPT_MEM_JOBS},
	{"mem-limit-s", required_argument, NULL, OPT_MEM_LIMIT},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"tag", required_argument, NULL, OPT_TAG},
	{"quick", no_argument, NULL, OPT_QUICK},
	{"out", required_argument, NULL, OPT_OUT},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
};

static int parse_opts(struct opts *o, int argc, char **argv)
{
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case OPT_URL: o->url = optarg; break;
		case OPT_PG: o->pg = optarg; break;
		case OPT_PG_ADMIN: o->pg_admin = optarg; break;
		case OPT_DBNAME: o->dbname = optarg; break;
		case OPT_REDIS_PORT:
			bad = parse_long(optarg, 1, 65535, &v);
			o->redis_port = (int)v;
			break;
		case OPT_TASKQD_PID:
			bad = parse_long(optarg, 1, 1L << 30, &v);
			o->taskqd = (pid_t)v;
			break;
		case OPT_PG_PID:
			bad = parse_long(optarg, 1, 1L << 30, &v);
			o->pg_pid = (pid_t)v;
			break;
		case OPT_REDIS_PID:
			bad = parse_long(optarg, 1, 1L << 30, &v);
			o->redis_pid = (pid_t)v;
			break;
		case OPT_CONNS:
			bad = parse_long(optarg, 1, BENCH_MAX_CONNS, &v);
			o->conns = (int)v;
			break;
		case OPT_JOBS: bad = parse_long(optarg, 1, BENCH_MAX_JOBS, &o->jobs); break;
		case OPT_BATCH:
			bad = parse_long(optarg, 1, BENCH_MAX_BATCH, &v);
			o->batch = (int)v;
			break;
		case OPT_RATE: bad = parse_double(optarg, 0.1, 1e6, &o->rate); break;
		case OPT_DURATION: bad = parse_double(optarg, 0.1, 3600, &o->duration); break;
		case OPT_IDLE_INT: bad = parse_double(optarg, 1, 60000, &o->idle_interval_ms); break;
		case OPT_IDLE_DUR: bad = parse_double(optarg, 0.1, 3600, &o->idle_duration); break;
		case OPT_IDLE_COST: bad = parse_double(optarg, 0.5, 3600, &o->idle_cost_s); break;
		case OPT_MEM_JOBS: bad = parse_long(optarg, 1, BENCH_MAX_JOBS, &o->mem_jobs); break;
		case OPT_MEM_LIMIT: bad = parse_double(optarg, 1, 86400, &o->mem_limit_s); break;
		case OPT_TIMEOUT: bad = parse_double(optarg, 1, 86400, &o->timeout_s); break;
		case OPT_TAG: o->tag = optarg; break;
		case OPT_QUICK: o->quick = true; break;
		case OPT_OUT: o->out = optarg; break;
		case OPT_HELP: usage(stdout); exit(0);
		default: return -EINVAL;
		}
		if (bad) {
			fprintf(stderr, "taskq-bench: bad value '%s'\n", optarg);
			return -EINVAL;
		}
	}
	if (!o->url || !o->pg || !o->pg_admin || !o->dbname || !o->taskqd) {
		fprintf(stderr, "taskq-bench: --url, --pg, --pg-admin, --dbname and "
			"--taskqd-pid are required\n");
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctx x = {
		.o = {
			.redis_host = "127.0.0.1", .redis_port = 6379, .conns = 32,
			.jobs = 100000, .batch = BENCH_MAX_BATCH, .rate = 1000,
			.duration = 30, .idle_interval_ms = 100, .idle_duration = 10,
			.idle_cost_s = 10, .mem_jobs = 1000000, .mem_limit_s = 300,
			.timeout_s = 300, .tag = "",
		},
	};
	int i, rc = 1;

	if (argc > 1 && strcmp(argv[1], "report") == 0)
		return report_main(argc - 1, argv + 1);
	if (parse_opts(&x.o, argc, argv)) {
		usage(stderr);
		return 2;
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	x.out = cJSON_CreateObject();
	x.db = PQconnectdb(x.o.pg);
	x.admin = PQconnectdb(x.o.pg_admin);
	if (PQstatus(x.db) != CONNECTION_OK || PQstatus(x.admin) != CONNECTION_OK) {
		fprintf(stderr, "taskq-bench: cannot connect to PostgreSQL: %s",
			PQerrorMessage(PQstatus(x.db) != CONNECTION_OK ? x.db : x.admin));
		goto out;
	}
	for (i = optind; i < argc; i++) {
		const char *s = argv[i];
		cJSON *j;
		bool fresh;

		fprintf(stderr, "taskq-bench: %s%s%s\n", s, x.o.tag[0] ? " " : "", x.o.tag);
		fresh = checkpoint(&x);
		if (strcmp(s, "burst") == 0) {
			j = scenario_throughput(&x, s, x.o.jobs, 0, 0);
		} else if (strcmp(s, "bulk") == 0) {
			j = scenario_throughput(&x, s, x.o.jobs, x.o.batch, 0);
			x.bulk_ok = cJSON_IsTrue(cJSON_GetObjectItem(j, "available"));
		} else if (strcmp(s, "steady") == 0) {
			j = scenario_paced(&x, s, x.o.rate, x.o.duration, x.o.conns);
		} else if (strcmp(s, "idle") == 0) {
			j = scenario_paced(&x, s, 1000.0 / x.o.idle_interval_ms,
					   x.o.idle_duration, 1);
		} else if (strcmp(s, "idlecost") == 0) {
			j = scenario_idlecost(&x);
		} else if (strcmp(s, "memory") == 0) {
			j = scenario_memory(&x);
		} else {
			fprintf(stderr, "taskq-bench: unknown scenario '%s'\n", s);
			goto out;
		}
		cJSON_AddBoolToObject(j, "checkpoint_before", fresh);
		add_result(&x, s, j);
	}
	if (x.o.out && write_json(x.o.out, x.out)) {
		fprintf(stderr, "taskq-bench: cannot write %s\n", x.o.out);
		goto out;
	}
	rc = 0;
out:
	PQfinish(x.db);
	PQfinish(x.admin);
	cJSON_Delete(x.out);
	return rc;
}
