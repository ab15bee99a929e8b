/*
 * submit.h - group commit of concurrent submissions.
 *
 * Every submission the API receives is queued here, and the API thread
 * moves on to other connections; committer threads take whatever has
 * gathered meanwhile and insert it in one statement and one transaction
 * (tq_store_write()).  Each submission is told its outcome only after
 * COMMIT, so 201 keeps meaning durable, while the database sees one commit
 * per batch instead of one per job.
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

/*
 * One submission waiting for its commit.  The caller fills spec, out, done
 * and arg, and owns all of it until done is called: on a committer thread,
 * once, after COMMIT (rc 0, *out filled) or after the store failed (its
 * error; -EAGAIN: the database is unavailable).  From then on the
 * committer does not touch it.
 *
 * A spec with an idempotency key is inserted in a transaction of its own
 * (tq_store_insert_one()), never claimed at submission: rc 0 with job_json the
 * new job; 1 with job_json the job that already held the key, submitted
 * with the same type and payload; -EEXIST when that job's differ (out->id
 * names it).  The caller frees job_json.
 */
struct tq_submission {
	const struct tq_job_spec *spec; /* validated and resolved */
	struct tq_inserted *out;
	void (*done)(struct tq_submission *s, int rc);
	void *arg;
	char *job_json; /* keyed submissions only; NULL otherwise */
	/* the committers' */
	int rc;
	struct tq_submission *next;
};

/* Queue s for the next group commit and return at once: 0, then s->done
 * follows; or -ESHUTDOWN (stopping), and it does not.  Thread-safe. */
int tq_submit_async(struct tq_submit *sub, struct tq_submission *s);

/* Insert n jobs in one transaction (all or nothing) in the caller's
 * thread, claiming as the group commit does.  out[i].pending: to dispatch;
 * out[i].running: claimed, already handed to the workers. */
int tq_submit_many(struct tq_submit *sub, const struct tq_job_spec *specs, size_t n,
		   struct tq_inserted *out);

#endif
