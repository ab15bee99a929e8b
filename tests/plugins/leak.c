/*
 * leak.c - test plugin: job type "test.leak" leaks memory on purpose.
 *
 * Payload {"mb": N} (1 to 4096): maps N MiB of anonymous memory, touches
 * every page and never gives it back, so it adds up over the jobs one
 * process runs.  Result {"pid": P, "leaked_mb": M}, M the total this
 * process leaked so far.  When the mapping fails (max_memory_mb) the
 * attempt fails with "out of memory after M MB".  mmap() rather than
 * malloc() behaves the same under the sanitizers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <taskq/plugin.h>

static long long leak_total_mb;

static enum taskq_outcome leak_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	const char *p = strstr(host->job_payload(job), "\"mb\":");
	size_t len, off;
	char result[96];
	long long mb;
	char *end;
	void *mem;

	(void)user_data;
	if (!p) {
		host->set_error(job, "payload needs \"mb\"");
		return TASKQ_FAIL;
	}
	errno = 0;
	mb = strtoll(p + 5, &end, 10);
	if (errno || end == p + 5 || mb < 1 || mb > 4096) {
		host->set_error(job, "\"mb\" must be an integer from 1 to 4096");
		return TASKQ_FAIL;
	}
	len = (size_t)mb * 1024 * 1024;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED) {
		host->set_error(job, "out of memory after %lld MB", leak_total_mb);
		return TASKQ_RETRY;
	}
	for (off = 0; off < len; off += 4096)
		((volatile char *)mem)[off] = 1;
	leak_total_mb += mb;
	snprintf(result, sizeof(result), "{\"pid\":%ld,\"leaked_mb\":%lld}",
		 (long)getpid(), leak_total_mb);
	host->set_result(job, result);
	return TASKQ_DONE;
}

static const struct taskq_job_type leak_types[] = {
	{ .name = "test.leak", .handler = leak_run },
};

TASKQ_PLUGIN("leak", "1.0.0", leak_types, NULL, NULL);
