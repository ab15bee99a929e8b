/*
 * record.c - test plugin: job type "record" writes one line per execution.
 *
 * Every attempt first appends
 *
 *     <job_id> <attempt> <pid> <CLOCK_REALTIME milliseconds>\n
 *
 * to the file named by the plugin's "file" setting
 * (plugin = { record = { file = "/path"; }; };), with one write() on an
 * O_APPEND descriptor so that lines of concurrent workers and of several
 * daemon processes never interleave.  Only then does it look at the
 * payload:
 *
 *     {"fail_times": N, "sleep_ms": M}     (both optional, >= 0)
 *
 * It sleeps M milliseconds (in slices, stopping early when the job is
 * cancelled), then fails with a retryable error while attempt <= N, and
 * completes with {"attempt": K} otherwise.
 *
 * The integration harness (tests/integration/harness.c) parses the file;
 * the format is part of its interface, change both together.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <taskq/plugin.h>

#define RECORD_MAX_SLEEP_MS (10LL * 60 * 1000)
#define RECORD_SLICE_MS 10

struct record {
	int fd;
};

/*
 * Look up the non-negative integer member "key" of a flat JSON object.
 * Returns 0 and sets *out, 1 when the key is absent, -1 when its value is
 * not a non-negative integer.  The payloads come from the test suite; this
 * is a key lookup, not a JSON validator (the host already parsed the
 * payload as JSON before it was stored).
 */
static int record_int_member(const char *json, const char *key, long long *out)
{
	char pattern[64];
	const char *p;
	char *end;
	long long v;
	int n;

	n = snprintf(pattern, sizeof(pattern), "\"%s\"", key);
	if (n < 0 || (size_t)n >= sizeof(pattern))
		return -1;
	p = strstr(json, pattern);
	if (!p)
		return 1;
	p += n;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != ':')
		return -1;
	p++;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	v = strtoll(p, &end, 10);
	if (errno || end == p || *end == '.' || *end == 'e' || *end == 'E')
		return -1;
	*out = v;
	return 0;
}

static int64_t record_realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void record_sleep(const struct taskq_host *host, struct taskq_job *job,
			 long long ms)
{
	struct timespec ts;
	long long slice;

	while (ms > 0 && !host->is_cancelled(job)) {
		slice = ms < RECORD_SLICE_MS ? ms : RECORD_SLICE_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = slice * 1000000L;
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		ms -= slice;
	}
}

static enum taskq_outcome record_run(const struct taskq_host *host,
				     struct taskq_job *job, void *user_data)
{
	struct record *rec = user_data;
	const char *payload = host->job_payload(job);
	int attempt = host->job_attempt(job);
	long long fail_times = 0, sleep_ms = 0;
	char line[128];
	char result[64];
	ssize_t w;
	int n;

	n = snprintf(line, sizeof(line), "%s %d %ld %lld\n", host->job_id(job),
		     attempt, (long)getpid(), (long long)record_realtime_ms());
	if (n < 0 || (size_t)n >= sizeof(line)) {
		host->set_error(job, "record: line too long");
		return TASKQ_FAIL;
	}
	do {
		w = write(rec->fd, line, (size_t)n);
	} while (w < 0 && errno == EINTR);
	if (w != n) {
		host->set_error(job, "record: cannot append the record: %s",
				w < 0 ? strerror(errno) : "short write");
		return TASKQ_RETRY;
	}

	if (record_int_member(payload, "fail_times", &fail_times) < 0 ||
	    record_int_member(payload, "sleep_ms", &sleep_ms) < 0) {
		host->set_error(job, "record: bad payload");
		return TASKQ_FAIL;
	}
	if (sleep_ms > RECORD_MAX_SLEEP_MS)
		sleep_ms = RECORD_MAX_SLEEP_MS;
	record_sleep(host, job, sleep_ms);

	if (attempt <= fail_times) {
		host->set_error(job, "record: planned failure %d of %lld",
				attempt, fail_times);
		return TASKQ_RETRY;
	}
	n = snprintf(result, sizeof(result), "{\"attempt\":%d}", attempt);
	if (n < 0 || (size_t)n >= sizeof(result))
		return TASKQ_FAIL;
	if (host->set_result(job, result) != TASKQ_OK) {
		host->set_error(job, "record: cannot set the result");
		return TASKQ_FAIL;
	}
	return TASKQ_DONE;
}

static int record_validate(const struct taskq_host *host,
			   const char *payload_json, char *err, size_t errlen,
			   void *user_data)
{
	long long v;

	(void)host;
	(void)user_data;
	if (record_int_member(payload_json, "fail_times", &v) < 0 ||
	    record_int_member(payload_json, "sleep_ms", &v) < 0) {
		snprintf(err, errlen,
			 "fail_times and sleep_ms must be non-negative integers");
		return 1;
	}
	return 0;
}

static int record_init(const struct taskq_host *host,
		       const struct taskq_config *cfg, void **user_data,
		       char *err, size_t errlen)
{
	struct record *rec;
	const char *file = NULL;

	if (host->config_string(cfg, "file", &file) != TASKQ_OK || !file ||
	    !*file) {
		snprintf(err, errlen, "setting \"file\" is required");
		return 1;
	}
	rec = calloc(1, sizeof(*rec));
	if (!rec) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	rec->fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (rec->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", file,
			 strerror(errno));
		free(rec);
		return 1;
	}
	*user_data = rec;
	return 0;
}

static void record_fini(void *user_data)
{
	struct record *rec = user_data;

	if (!rec)
		return;
	close(rec->fd);
	free(rec);
}

static const struct taskq_job_type record_types[] = {
	{ .name = "record", .handler = record_run,
	  .validate = record_validate },
};

TASKQ_PLUGIN("record", "1.0.0", record_types, record_init, record_fini)
