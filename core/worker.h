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

#include <stdbool.h>
#include <stddef.h>

struct tq_config;
struct tq_store;
struct tq_plugins;
struct tq_scheduler;
struct tq_dispatch;
struct tq_workers;
struct tq_claim;

/*
 * A heartbeat thread renews the leases of every running attempt of this
 * node in one statement each workers.heartbeat_s, stores their progress,
 * and tells handlers to stop (is_cancelled) when a cancel was requested or
 * the lease was lost.
 */
int tq_workers_start(struct tq_workers **out, const struct tq_config *cfg,
		     struct tq_store *store, struct tq_plugins *plugins,
		     struct tq_scheduler *sched, struct tq_dispatch *dispatch);

/*
 * Claims made at submission (see tq_store_write()): the submitter
 * reserves free slots of this node before its insert, hands the claims it
 * got over after COMMIT, and gives back what it did not use.  Slots are
 * the idle workers plus workers.prefetch, as for the fetcher.
 */
/* Whether this node takes jobs of queue (workers.queues). */
bool tq_workers_take_queue(const struct tq_workers *w, const char *queue);
/* Reserve up to n free slots; returns how many (0 when stopping). */
size_t tq_workers_reserve(struct tq_workers *w, size_t n);
/* Give back n reserved slots that were not used. */
void tq_workers_unreserve(struct tq_workers *w, size_t n);
/* Run n claims on as many reserved slots; takes them over. */
void tq_workers_hand(struct tq_workers *w, struct tq_claim *claims, size_t n);

/*
 * Completions ride in a submitter's transaction (tq_store_write()), so
 * that a busy node commits its submissions and its outcomes together.
 * tq_workers_ride() takes up to max of those waiting (done[] points into
 * *ride, valid until tq_workers_rode()), which then logs them, or puts
 * them back for the completers when the write failed (rc < 0).  While a
 * submitter says it is busy (tq_workers_riding()), the completers leave
 * the completions to its next transaction, for at most 20 ms.
 */
struct tq_ride;
struct tq_done;
size_t tq_workers_ride(struct tq_workers *w, struct tq_done *done, size_t max,
		       struct tq_ride **ride);
void tq_workers_rode(struct tq_workers *w, struct tq_ride *ride, int rc,
		     const bool *written);
void tq_workers_riding(struct tq_workers *w, bool busy);

/* Stop taking jobs, wait up to grace_s for running handlers.  Jobs still
 * running at the deadline are handed back at once (pending again and
 * dispatched, so no node waits for their lease), and their handlers are
 * told to stop.  Returns the number of attempts still running at the
 * deadline; when it is not 0 their threads still use the shared state and
 * w is not freed (the caller exits).  Otherwise frees w. */
int tq_workers_stop(struct tq_workers *w, int grace_s);

#endif
