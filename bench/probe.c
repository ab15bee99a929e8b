/*
 * probe.c - what taskq-bench reads beside HTTP: CPU time and memory of
 * processes from /proc, Redis command counts (MONITOR attributed to
 * taskqd's own connections, and INFO commandstats), PostgreSQL transaction
 * counts (pg_stat_database).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench.h"

#define PROBE_MAX_SOCKETS 4096
#define PROBE_MAX_PORTS 256

double tq_bench_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double tq_bench_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fields of /proc/<pid>/stat after "(comm)": ppid and the four CPU
 * counters, in clock ticks. */
struct proc_stat {
	pid_t ppid;
	unsigned long long utime, stime, cutime, cstime;
};

static int read_stat(pid_t pid, struct proc_stat *st)
{
	char path[64], buf[2048], *p;
	FILE *f;
	size_t n;
	int rc;

	rc = snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (rc < 0 || (size_t)rc >= sizeof(path))
		return -EINVAL;
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime cutime cstime */
	if (sscanf(p + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
		   &st->ppid, &st->utime, &st->stime, &st->cutime, &st->cstime) != 5)
		return -EINVAL;
	return 0;
}

static double ticks(void)
{
	long t = sysconf(_SC_CLK_TCK);

	return t > 0 ? (double)t : 100.0;
}

double tq_probe_cpu(pid_t pid)
{
	struct proc_stat st;

	if (pid <= 0 || read_stat(pid, &st))
		return -1;
	return (double)(st.utime + st.stime) / ticks();
}

/* Whether /proc/<pid>/task/<tid>/children exists (CONFIG_PROC_CHILDREN). */
static bool children_listed(void)
{
	static int known; /* 0 unknown, 1 yes, -1 no */
	char path[64];

	if (!known) {
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)getpid(),
			 (int)getpid());
		known = access(path, R_OK) == 0 ? 1 : -1;
	}
	return known > 0;
}

/* fn for the process pid if ppid is its parent; 1 if it was, else 0. */
static int visit(pid_t pid, pid_t ppid, void (*fn)(const struct proc_stat *, void *),
		 void *arg)
{
	struct proc_stat st;

	if (read_stat(pid, &st) || st.ppid != ppid)
		return 0;
	if (fn)
		fn(&st, arg);
	return 1;
}

/* The children each of ppid's threads forked, as the kernel lists them:
 * a few files instead of every process's stat. */
static int list_children(pid_t ppid, void (*fn)(const struct proc_stat *, void *),
			 void *arg)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)ppid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char file[96], *end;
		long pid, tid;
		FILE *f;

		errno = 0;
		tid = strtol(de->d_name, &end, 10);
		if (errno || *end || tid <= 0)
			continue;
		snprintf(file, sizeof(file), "/proc/%d/task/%ld/children", (int)ppid, tid);
		f = fopen(file, "re");
		if (!f)
			continue; /* the thread has ended */
		while (fscanf(f, "%ld", &pid) == 1)
			if (pid > 0)
				n += visit((pid_t)pid, ppid, fn, arg);
		fclose(f);
	}
	closedir(d);
	return n;
}

/* Every process's stat, for kernels without the children files. */
static int scan_children(pid_t ppid, void (*fn)(const struct proc_stat *, void *),
			 void *arg)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		long pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		errno = 0;
		pid = strtol(de->d_name, &end, 10);
		if (errno || *end || pid <= 0)
			continue;
		n += visit((pid_t)pid, ppid, fn, arg);
	}
	closedir(d);
	return n;
}

/* Call fn for every process whose parent is ppid; how many, or -errno. */
static int for_children(pid_t ppid, void (*fn)(const struct proc_stat *, void *),
			void *arg)
{
	return children_listed() ? list_children(ppid, fn, arg) : scan_children(ppid, fn, arg);
}

static void add_cpu(const struct proc_stat *st, void *arg)
{
	unsigned long long *sum = arg;

	*sum += st->utime + st->stime;
}

double tq_probe_cpu_tree(pid_t pid)
{
	struct proc_stat st;
	unsigned long long sum;

	if (pid <= 0 || read_stat(pid, &st))
		return -1;
	sum = st.utime + st.stime + st.cutime + st.cstime;
	if (for_children(pid, add_cpu, &sum) < 0)
		return -1;
	return (double)sum / ticks();
}

int tq_probe_machine_cpu(double *total_s, double *steal_s)
{
	/* user nice system idle iowait irq softirq steal (guest time is
	 * counted in user and nice already) */
	unsigned long long v[8] = {0}, sum = 0;
	FILE *f = fopen("/proc/stat", "re");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 8)
		return -1;
	for (int i = 0; i < 8; i++)
		sum += v[i];
	*total_s = (double)sum / ticks();
	*steal_s = (double)v[7] / ticks();
	return 0;
}

int tq_probe_children(pid_t pid)
{
	return for_children(pid, NULL, NULL);
}

long tq_probe_status_kib(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long kib = -1;
	FILE *f;
	int rc;

	rc = snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (rc < 0 || (size_t)rc >= sizeof(path))
		return -1;
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *end;

		if (strncmp(line, key, klen) != 0 || line[klen] != ':')
			continue;
		errno = 0;
		kib = strtol(line + klen + 1, &end, 10);
		if (errno || end == line + klen + 1)
			kib = -1;
		break;
	}
	fclose(f);
	return kib;
}

pid_t tq_probe_pidfile(const char *path)
{
	char line[64], *end;
	FILE *f = fopen(path, "re");
	long pid;

	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	errno = 0;
	pid = strtol(line, &end, 10);
	if (errno || end == line || pid <= 0)
		return -1;
	return (pid_t)pid;
}

/* Socket inodes of pid's open descriptors. */
static int socket_inodes(pid_t pid, unsigned long *inodes, int max)
{
	char dir[64], path[320], link[128];
	struct dirent *de;
	DIR *d;
	int n = 0, rc;

	rc = snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if (rc < 0 || (size_t)rc >= sizeof(dir))
		return -EINVAL;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) && n < max) {
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		rc = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (rc < 0 || (size_t)rc >= sizeof(path))
			continue;
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &inodes[n]) == 1)
			n++;
	}
	closedir(d);
	return n;
}

/* Local ports of pid's TCP connections to remote port rport. */
static int client_ports(pid_t pid, int rport, int *ports, int max)
{
	static const char *const tables[] = {"tcp", "tcp6"};
	unsigned long *inodes;
	int ninodes, n = 0;
	size_t t;

	inodes = calloc(PROBE_MAX_SOCKETS, sizeof(*inodes));
	if (!inodes)
		return -ENOMEM;
	ninodes = socket_inodes(pid, inodes, PROBE_MAX_SOCKETS);
	if (ninodes < 0) {
		free(inodes);
		return ninodes;
	}
	for (t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		char path[64], line[512];
		FILE *f;
		int rc;

		rc = snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, tables[t]);
		if (rc < 0 || (size_t)rc >= sizeof(path))
			continue;
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f) && n < max) {
			char local[64], remote[64], *lp, *rp;
			unsigned long inode;
			long lport, rp_val;
			int i;

			if (sscanf(line, " %*d: %63s %63s %*x %*s %*s %*s %*d %*d %lu",
				   local, remote, &inode) != 3)
				continue;
			lp = strrchr(local, ':');
			rp = strrchr(remote, ':');
			if (!lp || !rp)
				continue;
			lport = strtol(lp + 1, NULL, 16);
			rp_val = strtol(rp + 1, NULL, 16);
			if (rp_val != rport)
				continue;
			for (i = 0; i < ninodes; i++) {
				if (inodes[i] == inode) {
					ports[n++] = (int)lport;
					break;
				}
			}
		}
		fclose(f);
	}
	free(inodes);
	return n;
}

static long commandstats_calls(redisContext *c, int *ok)
{
	redisReply *r = redisCommand(c, "INFO commandstats");
	const char *p;
	long sum = 0;

	*ok = 0;
	if (!r)
		return 0;
	if (r->type == REDIS_REPLY_STRING) {
		for (p = r->str; (p = strstr(p, "calls=")); ) {
			char *end;
			long v;

			p += 6;
			errno = 0;
			v = strtol(p, &end, 10);
			if (!errno && end != p)
				sum += v;
		}
		*ok = 1;
	}
	freeReplyObject(r);
	return sum;
}

/* The client port of a MONITOR line: "ts [db host:port] "cmd" ...". */
static int monitor_port(const char *line)
{
	const char *b = strchr(line, '['), *e;
	const char *colon = NULL, *p;

	if (!b)
		return -1;
	e = strchr(b, ']');
	if (!e)
		return -1;
	for (p = b; p < e; p++)
		if (*p == ':')
			colon = p;
	if (!colon)
		return -1;
	return (int)strtol(colon + 1, NULL, 10);
}

long tq_probe_redis_calls(const char *host, int port)
{
	struct timeval tv = {.tv_sec = 5};
	redisContext *c = redisConnectWithTimeout(host, port, tv);
	long calls = -1;
	int ok;

	if (c && !c->err) {
		calls = commandstats_calls(c, &ok);
		if (!ok)
			calls = -1;
	}
	if (c)
		redisFree(c);
	return calls;
}

int tq_probe_redis_idle(const char *host, int port, pid_t taskqd, double seconds,
			struct tq_redis_idle *out, char *err, size_t errlen)
{
	struct timeval tv = {.tv_sec = 5};
	redisContext *info = NULL, *mon = NULL;
	redisReply *r = NULL;
	int ports[PROBE_MAX_PORTS];
	int nports, ok, rc = -EIO, i;
	long before, after;
	double deadline;

	memset(out, 0, sizeof(*out));
	nports = client_ports(taskqd, port, ports, PROBE_MAX_PORTS);
	if (nports < 0) {
		snprintf(err, errlen, "cannot read the sockets of pid %d: %s",
			 (int)taskqd, strerror(-nports));
		return nports;
	}
	out->taskqd_conns = nports;
	info = redisConnectWithTimeout(host, port, tv);
	mon = redisConnectWithTimeout(host, port, tv);
	if (!info || info->err || !mon || mon->err) {
		snprintf(err, errlen, "cannot connect to redis %s:%d", host, port);
		goto out;
	}
	r = redisCommand(mon, "MONITOR");
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis MONITOR failed");
		goto out;
	}
	freeReplyObject(r);
	r = NULL;
	before = commandstats_calls(info, &ok);
	if (!ok) {
		snprintf(err, errlen, "redis INFO commandstats failed");
		goto out;
	}
	deadline = tq_bench_mono() + seconds;
	for (;;) {
		double left = deadline - tq_bench_mono();
		void *reply = NULL;
		int p;

		if (left <= 0.001)
			break;
		tv.tv_sec = (time_t)left;
		tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
		if (redisSetTimeout(mon, tv) != REDIS_OK)
			break;
		if (redisGetReply(mon, &reply) != REDIS_OK)
			break; /* the timeout at the deadline ends the window */
		r = reply;
		if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
			p = monitor_port(r->str);
			for (i = 0; i < nports; i++) {
				if (ports[i] == p) {
					out->taskqd_cmds++;
					break;
				}
			}
		}
		freeReplyObject(r);
		r = NULL;
	}
	after = commandstats_calls(info, &ok);
	if (!ok) {
		snprintf(err, errlen, "redis INFO commandstats failed");
		goto out;
	}
	/* the first INFO is counted by the second one */
	out->server_cmds = after - before - 1;
	rc = 0;
out:
	if (r)
		freeReplyObject(r);
	if (info)
		redisFree(info);
	if (mon)
		redisFree(mon);
	return rc;
}

int tq_probe_pg_wal(PGconn *admin, long long *syncs, long long *records)
{
	PGresult *res;
	char *end1, *end2;
	int rc = -EIO;

	res = PQexec(admin, "SELECT wal_sync, wal_records FROM pg_stat_wal");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		errno = 0;
		*syncs = strtoll(PQgetvalue(res, 0, 0), &end1, 10);
		*records = strtoll(PQgetvalue(res, 0, 1), &end2, 10);
		if (!errno && *end1 == '\0' && *end2 == '\0')
			rc = 0;
	}
	PQclear(res);
	return rc;
}

int tq_probe_pg_xacts(PGconn *admin, const char *dbname, long long *out)
{
	const char *params[1] = {dbname};
	PGresult *res;
	char *end;
	int rc = -EIO;

	res = PQexecParams(admin,
			   "SELECT xact_commit + xact_rollback FROM pg_stat_database "
			   "WHERE datname = $1",
			   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		errno = 0;
		*out = strtoll(PQgetvalue(res, 0, 0), &end, 10);
		if (!errno && *end == '\0')
			rc = 0;
	}
	PQclear(res);
	return rc;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void tq_bench_sort(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
}

double tq_bench_pct(const double *sorted, size_t n, double q)
{
	size_t k;

	if (n == 0)
		return -1;
	/* nearest rank */
	k = (size_t)(q * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return sorted[k - 1];
}
