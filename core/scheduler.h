/*
 * scheduler.h - the periodic keeper of the store: one thread that
 *  - moves due "scheduled" jobs (delays, retry backoff) to "pending" and
 *    dispatches them;
 *  - rescues running jobs whose lease expired (their worker died or hung):
 *    back to "scheduled" with backoff, or "failed" when attempts are spent;
 *  - reconciles Redis with PostgreSQL: per queue, when Redis holds fewer
 *    ids than there are pending jobs, that many of the pending jobs not
 *    claimed within pending_redispatch_s of their hand-off are dispatched
 *    again, oldest first (a flushed or restarted Redis, a crash between
 *    commit and push, a dropped dispatch).  A backlog Redis still holds is
 *    never dispatched twice, however long it waits: its jobs are looked
 *    at again after as long as they have waited.
 *
 * It runs a pass at start, then sleeps until the earliest run_at it knows
 * of (asked of PostgreSQL after each pass, and told by
 * tq_scheduler_notify() when this node schedules a job), or until
 * interval_s passes, whichever is sooner.  When nothing is wrong a pass
 * costs a few index-only queries.  No worker ever sleeps for a backoff.
 * Several nodes may run it at once: every step is a conditional UPDATE
 * with SKIP LOCKED.
 */
#ifndef TQ_SCHEDULER_H
#define TQ_SCHEDULER_H

#include <stdint.h>

struct tq_config;
struct tq_store;
struct tq_dispatch;
struct tq_scheduler;

/* Counters since start (for logs and tests). */
struct tq_scheduler_stats {
	unsigned long long promoted;
	unsigned long long rescued;
	unsigned long long redispatched;
	unsigned long long passes;
};

int tq_scheduler_start(struct tq_scheduler **out, const struct tq_config *cfg,
		       struct tq_store *store, struct tq_dispatch *dispatch);
void tq_scheduler_stats(struct tq_scheduler *s, struct tq_scheduler_stats *out);
void tq_scheduler_stop(struct tq_scheduler *s);

/* A job was scheduled to become due in delay_ms: wake in time for it. */
void tq_scheduler_notify(struct tq_scheduler *s, int64_t delay_ms);

#endif
