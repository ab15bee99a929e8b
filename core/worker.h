/*
 * worker.h - the worker pool: take an id from Redis, claim the job in
 * PostgreSQL, run its handler, write the outcome.
 *
 * workers threads, each with its own Redis connection blocked in BRPOP
 * (no polling).  A claim that updates no row means another worker has the
 * job (or it was cancelled): the id is dropped.  Outcomes are fenced by
 * the attempt.  Failures are scheduled again with exponential backoff and
 * full jitter (the scheduler makes them pending again), or fail the job
 * once attempts are exhausted or the handler says TASKQ_FAIL.
 */
#ifndef TQ_WORKER_H
#define TQ_WORKER_H

struct tq_config;
struct tq_store;
struct tq_plugins;
struct tq_scheduler;
struct tq_workers;

int tq_workers_start(struct tq_workers **out, const struct tq_config *cfg,
		     struct tq_store *store, struct tq_plugins *plugins,
		     struct tq_scheduler *sched);

/* Stop taking jobs, wait up to grace_s for running handlers.  Jobs still
 * running at the deadline are left running in the store (their lease
 * expires and recovery picks them up); never marked failed.  Returns the
 * number of jobs abandoned at the deadline.  Frees w. */
int tq_workers_stop(struct tq_workers *w, int grace_s);

#endif
