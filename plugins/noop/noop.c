/*
 * noop.c - the "noop" job type: does nothing and completes at once.
 *
 * It exists for the benchmark (scripts/bench.sh): with a handler that costs
 * nothing, what is measured is the daemon's own path from submission to
 * outcome.
 *
 *     curl -d '{"type":"noop"}' .../v1/jobs
 */
#include <taskq/plugin.h>

static enum taskq_outcome noop_run(const struct taskq_host *host,
				   struct taskq_job *job, void *user_data)
{
	(void)host;
	(void)job;
	(void)user_data;
	return TASKQ_DONE;
}

static const struct taskq_job_type noop_types[] = {
	{ .name = "noop", .handler = noop_run },
};

TASKQ_PLUGIN("noop", "1.0.0", noop_types, NULL, NULL)
