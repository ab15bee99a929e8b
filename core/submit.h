/*
 * submit.h - group commit of concurrent submissions.
 *
 * Every API thread that submits a job hands it here and waits; committer
 * threads take whatever has gathered meanwhile and insert it in one
 * statement and one transaction (tq_store_insert_many).  Each caller still
 * gets its answer only after COMMIT, so 201 keeps meaning durable, while
 * the database sees one commit per batch instead of one per job.
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

/* committers threads, batches of at most max_batch jobs. */
int tq_submit_start(struct tq_submit **out, struct tq_store *store, int committers,
		    int max_batch);
/* Let the committers finish what is queued, then stop them; frees sub. */
void tq_submit_stop(struct tq_submit *sub);

/* Insert one job (a validated, resolved spec); blocks until it is
 * committed.  0 with *out filled, or the store's error (-EAGAIN: the
 * database is unavailable; -ESHUTDOWN: stopping).  Thread-safe. */
int tq_submit_one(struct tq_submit *sub, const struct tq_job_spec *spec,
		  struct tq_inserted *out);

#endif
