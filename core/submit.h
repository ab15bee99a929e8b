/*
 * submit.h - group commit of concurrent submissions.
 *
 * Every API thread that submits a job hands it here and waits; committer
 * threads take whatever has gathered meanwhile and insert it in one
 * statement and one transaction (tq_store_insert_many).  Each caller still
 * gets its answer only after COMMIT, so 201 keeps meaning durable, while
 * the database sees one commit per batch instead of one per job.
 *
 * The completions waiting on this node's workers ride in the same
 * transaction (see tq_workers_ride()): a busy node commits its
 * submissions and its outcomes with one flush.
 *
 * A batch that fails for one bad row is retried row by row, so that one
 * job's problem is never another's.
 */
#ifndef TQ_SUBMIT_H
#define TQ_SUBMIT_H

#include <stddef.h>

struct tq_store;
struct tq_job_spec;
struct tq_inserted;
struct tq_submit;
struct tq_workers;

/* committers threads, batches of at most max_batch jobs.  With workers
 * (else NULL), the jobs this node can run now are inserted claimed for
 * them (lease_s) and run without going through Redis. */
int tq_submit_start(struct tq_submit **out, struct tq_store *store,
		    struct tq_workers *workers, int lease_s, int committers, int max_batch);
/* Let the committers finish what is queued, then stop them; frees sub. */
void tq_submit_stop(struct tq_submit *sub);

/* Insert one job (a validated, resolved spec); blocks until it is
 * committed.  0 with *out filled, or the store's error (-EAGAIN: the
 * database is unavailable; -ESHUTDOWN: stopping).  Thread-safe. */
int tq_submit_one(struct tq_submit *sub, const struct tq_job_spec *spec,
		  struct tq_inserted *out);

/* Insert n jobs in one transaction (all or nothing) in the caller's
 * thread, claiming as tq_submit_one() does.  out[i].pending: to dispatch;
 * out[i].running: claimed, already handed to the workers. */
int tq_submit_many(struct tq_submit *sub, const struct tq_job_spec *specs, size_t n,
		   struct tq_inserted *out);

#endif
