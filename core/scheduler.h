/*
 * scheduler.h - moves due "scheduled" jobs (delays, retry backoff) to
 * "pending" and dispatches them.
 *
 * One thread.  It sleeps until the earliest run_at it knows of (asked of
 * PostgreSQL after each pass, and told by tq_scheduler_notify() when this
 * node schedules a job), or until the reconcile interval passes, whichever
 * is sooner; it never polls faster.  No worker ever sleeps for a backoff.
 */
#ifndef TQ_SCHEDULER_H
#define TQ_SCHEDULER_H

#include <stdint.h>

struct tq_store;
struct tq_dispatch;
struct tq_scheduler;

int tq_scheduler_start(struct tq_scheduler **out, struct tq_store *store,
		       struct tq_dispatch *dispatch, int interval_s);
void tq_scheduler_stop(struct tq_scheduler *s);

/* A job was scheduled to become due in delay_ms: wake in time for it. */
void tq_scheduler_notify(struct tq_scheduler *s, int64_t delay_ms);

#endif
