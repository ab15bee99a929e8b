/*
 * bench.h - taskq-bench: shared declarations of the load generator
 * (bench.c), the process and server probes (probe.c) and the reporter
 * (report.c).
 *
 * taskq-bench never starts a server: scripts/bench.sh starts PostgreSQL,
 * Redis and taskqd and hands their addresses and pids over.
 */
#ifndef TQ_BENCH_H
#define TQ_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

/* Clocks: monotonic for intervals, realtime to compare with the
 * database's timestamps (same host, same clock). */
double tq_bench_mono(void);
double tq_bench_wall(void);

/* CPU seconds (user + system) of one process, of a process and its live
 * children (plus the reaped ones, cutime/cstime), or -1 when unreadable. */
double tq_probe_cpu(pid_t pid);
double tq_probe_cpu_tree(pid_t pid);
/* The whole machine's CPU time so far (/proc/stat: every CPU, every
 * state), and the part of it the hypervisor gave to other guests
 * (steal), in seconds; 0 or -1 when unreadable. */
int tq_probe_machine_cpu(double *total_s, double *steal_s);
/* Live children of pid (direct). */
int tq_probe_children(pid_t pid);
/* A "VmRSS"/"VmHWM" line of /proc/<pid>/status in KiB, or -1. */
long tq_probe_status_kib(pid_t pid, const char *key);
/* The first line of a pid file, or -1. */
pid_t tq_probe_pidfile(const char *path);

/*
 * Redis commands over seconds of an idle window: counted by MONITOR and
 * attributed to taskqd by the local ports of its connections to
 * redis_port (from /proc), and the server-wide INFO commandstats delta
 * minus the bench's own calls.
 */
struct tq_redis_idle {
	long taskqd_cmds;   /* seen by MONITOR from taskqd's connections */
	long server_cmds;   /* INFO commandstats delta, bench's own removed */
	int taskqd_conns;   /* taskqd's connections to Redis found */
};
int tq_probe_redis_idle(const char *host, int port, pid_t taskqd, double seconds,
			struct tq_redis_idle *out, char *err, size_t errlen);

/* Server-wide Redis commands so far (INFO commandstats; the call itself
 * is counted by the next one), or -1. */
long tq_probe_redis_calls(const char *host, int port);

/* WAL syncs and records of the server so far (pg_stat_wal). */
int tq_probe_pg_wal(PGconn *admin, long long *syncs, long long *records);

/* xact_commit + xact_rollback of database dbname, read over admin (a
 * connection to another database, so that reading costs dbname nothing). */
int tq_probe_pg_xacts(PGconn *admin, const char *dbname, long long *out);

/* Percentiles of n values (sorted in place); q in [0, 1]. */
void tq_bench_sort(double *v, size_t n);
double tq_bench_pct(const double *sorted, size_t n, double q);

/* Print the table of the merged results and return 0. */
int tq_report_print(const cJSON *all);
/* How many scenarios did not work (jobs lost, not finished, a counter not
 * read), each told on stderr.  Targets missed are not failures: they are
 * read in the table. */
int tq_report_check(const cJSON *all);

#endif
