/*
 * report.c - the table of a benchmark run, from the merged JSON results
 * (the scenarios of taskq-bench, "floor" and "meta" from scripts/bench.sh),
 * with the targets of the performance issue beside the numbers.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define MIB 1024.0

/* The number at a dotted path ("burst.cpu_s.taskqd"), or NAN. */
static double num(const cJSON *root, const char *path)
{
	const cJSON *j = root;
	char part[64];

	while (j && *path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);

		if (n >= sizeof(part))
			return NAN;
		memcpy(part, path, n);
		part[n] = '\0';
		j = cJSON_GetObjectItemCaseSensitive(j, part);
		path += n + (dot ? 1 : 0);
	}
	return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

static const char *str(const cJSON *root, const char *obj, const char *key)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, obj);

	j = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(j) ? j->valuestring : NULL;
}

static bool has(const cJSON *root, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(root, key) != NULL;
}

static void row(const char *scen, const char *metric, const char *value,
		const char *target, int verdict)
{
	printf("%-22s %-34s %24s  %-10s %s\n", scen, metric, value, target,
	       verdict > 0 ? "ok" : verdict == 0 ? "MISS" : "");
}

/* verdict: 1 met, 0 missed, -1 no target or no number */
static int at_least(double v, double t)
{
	return isnan(v) ? -1 : v >= t;
}

static int at_most(double v, double t)
{
	return isnan(v) ? -1 : v <= t;
}

/* v with prec decimals and a suffix, or "-" for a missing number */
static void fmtx(char *buf, size_t len, int prec, double v, const char *suffix)
{
	if (isnan(v) || v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f%s", prec, v, suffix);
}

static void fmt(char *buf, size_t len, int prec, double v)
{
	fmtx(buf, len, prec, v, "");
}

static void pcts(const cJSON *all, const char *base, const char *name,
		 const char *scen, const char *target_p50, double t50,
		 const char *target_p99, double t99)
{
	static const char *const ps[] = {"p50", "p95", "p99", "max"};
	char path[128], metric[96], value[32];
	size_t i;

	for (i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		const char *target = "";
		int verdict = -1;
		double v;

		snprintf(path, sizeof(path), "%s.%s", base, ps[i]);
		v = num(all, path);
		snprintf(metric, sizeof(metric), "%s %s (ms)", name, ps[i]);
		fmt(value, sizeof(value), 2, v);
		if (i == 0 && target_p50) {
			target = target_p50;
			verdict = at_most(v, t50);
		} else if (i == 2 && target_p99) {
			target = target_p99;
			verdict = at_most(v, t99);
		}
		row(i == 0 ? scen : "", metric, value, target, verdict);
	}
}

static void cpu_row(const cJSON *all, const char *key)
{
	char p1[96], p2[96], p3[96], value[64];

	snprintf(p1, sizeof(p1), "%s.cpu_s.taskqd", key);
	snprintf(p2, sizeof(p2), "%s.cpu_s.postgres", key);
	snprintf(p3, sizeof(p3), "%s.cpu_s.redis", key);
	snprintf(value, sizeof(value), "%.1f / %.1f / %.1f", num(all, p1),
		 num(all, p2), num(all, p3));
	row("", "CPU s taskqd / postgres / redis", value, "", -1);
	snprintf(p1, sizeof(p1), "%s.cpu_s.stolen_pct", key);
	fmtx(value, sizeof(value), 0, num(all, p1), "%");
	row("", "CPU taken by the hypervisor", value, "", -1);
}

/* The paced scenarios' latencies (key "steady" or "idle", or one tagged). */
static void steady(const cJSON *all, const char *key, const char *scen)
{
	char path[96], value[64];

	if (!has(all, key))
		return;
	snprintf(path, sizeof(path), "%s.achieved_per_s", key);
	fmt(value, sizeof(value), 0, num(all, path));
	row(scen, "submissions/s achieved", value, "", -1);
	snprintf(path, sizeof(path), "%s.submit_to_start_ms", key);
	pcts(all, path, "submit->start", "", "<= 1.5", 1.5, "<= 10", 10);
	snprintf(path, sizeof(path), "%s.submit_to_complete_ms", key);
	pcts(all, path, "submit->complete", "", NULL, 0, NULL, 0);
	snprintf(path, sizeof(path), "%s.http_ms", key);
	pcts(all, path, "HTTP request", "", NULL, 0, NULL, 0);
	cpu_row(all, key);
}

static void idle(const cJSON *all, const char *key, const char *scen)
{
	static const char *const what[] = {"submit->start", "submit->complete"};
	static const char *const field[] = {"submit_to_start_ms", "submit_to_complete_ms"};
	char path[96], metric[64], value[64];

	if (!has(all, key))
		return;
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s.%s.p50", key, field[i]);
		snprintf(metric, sizeof(metric), "%s p50 (ms)", what[i]);
		fmt(value, sizeof(value), 2, num(all, path));
		row(i == 0 ? scen : "", metric, value, i == 0 ? "<= 1.5" : "",
		    i == 0 ? at_most(num(all, path), 1.5) : -1);
		snprintf(path, sizeof(path), "%s.%s.p99", key, field[i]);
		snprintf(metric, sizeof(metric), "%s p99 (ms)", what[i]);
		fmt(value, sizeof(value), 2, num(all, path));
		row("", metric, value, "", -1);
	}
}

static void throughput(const cJSON *all, const char *key, const char *scen,
		       double floor_tps, double target)
{
	char path[96], value[64], tgt[32];
	double acc, e2e, done, n;

	snprintf(path, sizeof(path), "%s.accepted_per_s", key);
	acc = num(all, path);
	snprintf(path, sizeof(path), "%s.e2e_jobs_per_s", key);
	e2e = num(all, path);
	snprintf(path, sizeof(path), "%s.completed", key);
	done = num(all, path);
	snprintf(path, sizeof(path), "%s.jobs", key);
	n = num(all, path);
	snprintf(value, sizeof(value), "%.0f / %.0f", done, n);
	row(scen, "jobs completed / submitted", value, "", -1);
	fmt(value, sizeof(value), 0, acc);
	row("", "accepted submissions/s", value, "", -1);
	fmt(value, sizeof(value), 0, e2e);
	if (target > 0)
		snprintf(tgt, sizeof(tgt), ">= %.0f", target);
	else
		tgt[0] = '\0';
	row("", "end-to-end jobs/s", value, tgt, target > 0 ? at_least(e2e, target) : -1);
	if (floor_tps > 0 && target > 0 && strcmp(key, "burst") == 0) {
		fmtx(value, sizeof(value), 2, e2e / floor_tps, "x");
		row("", "end-to-end / floor", value, ">= 3x", at_least(e2e / floor_tps, 3));
	}
	cpu_row(all, key);
}

int tq_report_print(const cJSON *all)
{
	const char *mode = str(all, "meta", "mode");
	double floor_tps = num(all, "floor.jobs_per_s");
	char value[64], tgt[64];
	double v, w;

	printf("\nTaskQ benchmark (%s)", mode ? mode : "?");
	if (str(all, "meta", "cpu"))
		printf(" on %s, %.0f CPUs, %.0f MiB", str(all, "meta", "cpu"),
		       num(all, "meta.nproc"), num(all, "meta.mem_mib"));
	printf("\n\n");
	printf("%-22s %-34s %24s  %-10s %s\n", "scenario", "metric", "value", "target", "");
	printf("%.*s\n", 98, "----------------------------------------------------------------------------------------------------");

	if (has(all, "burst"))
		throughput(all, "burst", "1 burst (thread)", floor_tps, 15000);

	if (has(all, "bulk")) {
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(all, "bulk");

		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "available")))
			row("2 bulk", "end-to-end jobs/s", "n/a (no batch endpoint)",
			    ">= 25000", -1);
		else
			throughput(all, "bulk", "2 bulk (1000/request)", 0, 25000);
	}

	steady(all, "steady", "3 steady");
	idle(all, "idle", "4 idle pickup");
	steady(all, "steady_redis", "3 steady, via Redis");
	idle(all, "idle_redis", "4 idle, via Redis");

	if (has(all, "idlecost")) {
		fmt(value, sizeof(value), 2, num(all, "idlecost.redis_cmds_per_s"));
		row("5 idle cost", "Redis commands/s by taskqd", value, "<= 1",
		    at_most(num(all, "idlecost.redis_cmds_per_s"), 1));
		fmt(value, sizeof(value), 2, num(all, "idlecost.redis_server_cmds_per_s"));
		row("", "Redis commands/s, whole server", value, "", -1);
		fmt(value, sizeof(value), 2, num(all, "idlecost.pg_xacts_per_s"));
		row("", "PostgreSQL transactions/s", value, "<= 1",
		    at_most(num(all, "idlecost.pg_xacts_per_s"), 1));
	}

	if (has(all, "burst_process")) {
		throughput(all, "burst_process", "6 isolation (process)", 0, 0);
		v = num(all, "burst_process.e2e_jobs_per_s");
		w = num(all, "burst.e2e_jobs_per_s");
		fmtx(value, sizeof(value), 0, w > 0 ? 100.0 * v / w : NAN, "%");
		row("", "process / thread end-to-end", value, ">= 70%",
		    w > 0 ? at_least(v / w, 0.7) : -1);
		v = num(all, "burst_process.worker_processes_seen");
		fmt(value, sizeof(value), 0, v);
		row("", "worker processes seen", value, "", -1);
		if (v == 0)
			row("", "note: isolation=process ignored", "(thread numbers)", "", -1);
	}

	if (has(all, "burst")) {
		v = num(all, "burst.peak_rss_kib") / MIB;
		fmt(value, sizeof(value), 1, v);
		row("7 memory", "peak RSS during burst (MiB)", value, "< 100",
		    isnan(v) ? -1 : v < 100);
	}
	if (has(all, "memory")) {
		fmt(value, sizeof(value), 0,
		    num(all, "memory.first.accepted") + num(all, "memory.run.accepted"));
		row("", "jobs in the long run", value, "1000000", -1);
		fmt(value, sizeof(value), 1, num(all, "memory.rss_before_kib") / MIB);
		row("", "RSS before (MiB)", value, "", -1);
		fmt(value, sizeof(value), 1, num(all, "memory.rss_at_first_kib") / MIB);
		snprintf(tgt, sizeof(tgt), "RSS after the first %.0f (MiB)",
			 num(all, "memory.jobs_first"));
		row("", tgt, value, "", -1);
		fmt(value, sizeof(value), 1, num(all, "memory.rss_after_kib") / MIB);
		row("", "RSS after (MiB)", value, "", -1);
		v = num(all, "memory.rss_change_pct");
		snprintf(value, sizeof(value), "%+.1f%%", v);
		row("", "RSS change, first tenth to end", value, "+-10%", isnan(v) ? -1 : fabs(v) <= 10);
		v = num(all, "memory.rss_change_whole_pct");
		snprintf(value, sizeof(value), "%+.1f%%", v);
		row("", "RSS change, whole run", value, "", -1);
		fmt(value, sizeof(value), 1, num(all, "memory.peak_rss_kib") / MIB);
		row("", "peak RSS overall (MiB)", value, "< 100",
		    at_most(num(all, "memory.peak_rss_kib") / MIB, 100));
	}

	if (!isnan(floor_tps)) {
		fmt(value, sizeof(value), 0, floor_tps);
		snprintf(tgt, sizeof(tgt), "jobs/s, %.0f clients, autocommit",
			 num(all, "floor.clients"));
		row("8 floor (pgbench)", tgt, value, "", -1);
	}
	if (!isnan(num(all, "floor.stolen_pct"))) {
		fmtx(value, sizeof(value), 0, num(all, "floor.stolen_pct"), "%");
		row("", "CPU taken by the hypervisor", value, "", -1);
	}
	if (!isnan(num(all, "floor.ceiling_jobs_per_s"))) {
		fmt(value, sizeof(value), 0, num(all, "floor.ceiling_jobs_per_s"));
		snprintf(tgt, sizeof(tgt), "jobs/s, 100 a statement, %.0f clients",
			 num(all, "floor.ceiling_clients"));
		row("  ceiling (pgbench)", tgt, value, "", -1);
	}
	printf("\n");
	return 0;
}

/* One scenario that ran jobs: every job accepted, stored and finished. */
static int check_jobs(const cJSON *all, const char *key, bool finished_key)
{
	char path[96];
	double jobs, accepted, done;
	const cJSON *sc = cJSON_GetObjectItemCaseSensitive(all, key);

	if (!sc)
		return 0;
	if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(sc, "available"))) {
		fprintf(stderr, "bench: %s: the endpoint is not available\n", key);
		return 1;
	}
	snprintf(path, sizeof(path), "%s.jobs", key);
	jobs = num(all, path);
	snprintf(path, sizeof(path), "%s.accepted", key);
	accepted = num(all, path);
	snprintf(path, sizeof(path), finished_key ? "%s.completed" : "%s.submit_to_start_ms.n",
		 key);
	done = num(all, path);
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sc, "drained")) || isnan(jobs) ||
	    accepted != jobs || done != jobs) {
		fprintf(stderr, "bench: %s: %.0f jobs, %.0f accepted, %.0f finished%s\n", key,
			jobs, accepted, done,
			cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sc, "drained"))
				? "" : ", not drained");
		return 1;
	}
	return 0;
}

int tq_report_check(const cJSON *all)
{
	int broken = 0;

	broken += check_jobs(all, "burst", true);
	broken += check_jobs(all, "bulk", true);
	broken += check_jobs(all, "burst_process", true);
	broken += check_jobs(all, "steady", false);
	broken += check_jobs(all, "idle", false);
	broken += check_jobs(all, "steady_redis", false);
	broken += check_jobs(all, "idle_redis", false);
	if (has(all, "idlecost") && (isnan(num(all, "idlecost.pg_xacts_per_s")) ||
				     isnan(num(all, "idlecost.redis_cmds_per_s")))) {
		fprintf(stderr, "bench: idlecost: a counter could not be read\n");
		broken++;
	}
	if (has(all, "memory") && isnan(num(all, "memory.rss_after_kib"))) {
		fprintf(stderr, "bench: memory: no resident size after the run\n");
		broken++;
	}
	return broken;
}
