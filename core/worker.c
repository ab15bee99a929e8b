/*
 * worker.c - the worker pool (see worker.h).
 *
 * Threads and what they own:
 *  - the fetcher: one Redis connection; takes as many ids as there are
 *    free slots, claims them in one statement, queues the claims.  The
 *    slots are the idle workers plus workers.prefetch (0 by default):
 *    without prefetch a claimed job is a running one; with it, a claim
 *    overlaps the runs of the last one, at the price of jobs that wait
 *    on this node, out of priority order with what arrives meanwhile;
 *  - workers.count workers: run a claim's handler, hand a completion to
 *    the completer, write a failure themselves;
 *  - COMPLETERS completers: write completions in batches, one statement
 *    each (two, so that one batch gathers while another commits); while
 *    a submitter is busy they leave the completions to its next
 *    transaction instead (tq_workers_ride()), one commit for both;
 *  - the heartbeat: renews the leases of running attempts.
 * Submitters (core/submit.c) take free slots too: a job this node can
 * run now is inserted claimed and queued here after COMMIT, without a
 * pass through Redis, as long as nothing waits there (the backlog flag:
 * otherwise new jobs would pass older ones).  Ids the fetcher popped
 * while submitters took the slots go back to the head of their list.
 * The pool lock guards the run queue, the completion queue, the free
 * slots and each worker's current job.  The heartbeat renews the leases
 * of queued claims as well as running ones, and marks a queued claim
 * whose job was cancelled, so that it ends without running.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "dispatch.h"
#include "doneq.h"
#include "job.h"
#include "log.h"
#include "plugin_host.h"
#include "queue.h"
#include "scheduler.h"
#include "store.h"

#define POP_TIMEOUT_S 30
#define OUTCOME_RETRY_MS 250
#define STORE_RETRY_MS 500
#define FETCH_MAX 128
#define COMPLETE_BATCH_MAX 256
#define COMPLETERS 2
#define RIDE_WAIT_MS 20

struct worker {
	struct tq_workers *pool;
	pthread_t thread;
	bool started;
	uint64_t rng;
	struct taskq_job *current; /* guarded by pool->lock */
	int64_t token;             /* current's claim token; same lock */
};

/* A claim waiting for a worker. */
struct queued {
	struct tq_claim claim;
	int cancel; /* enum tq_cancel_reason: told while it waited; never runs */
};

struct tq_workers {
	const struct tq_config *cfg;
	struct tq_store *store;
	struct tq_plugins *plugins;
	struct tq_scheduler *sched;
	struct tq_dispatch *dispatch;
	atomic_bool stopping;

	pthread_mutex_t lock;
	pthread_cond_t exited;   /* a worker exited; also wakes the heartbeat */
	pthread_cond_t runnable; /* a claim was queued, or stopping */
	pthread_cond_t slot_cv;  /* a slot became free */
	pthread_cond_t done_cv;  /* a completion was queued */
	int alive;

	/* claims waiting for a worker: a ring of cap = n + prefetch */
	struct queued *runq;
	size_t runq_head, runq_len, runq_cap;
	int sleeping; /* workers waiting on runnable */
	int waking;   /* of those, signalled and not yet back: at most 1 */
	/* cap - running - queued - reserved (by the fetcher for its claim,
	 * by submitters for theirs): how many more to claim */
	int slots;
	/* Redis may hold ids for this node: submitters leave the slots to
	 * the fetcher, so that no new job passes one that waits there.  Set
	 * when a submission or a put-back went to Redis, or a pop came back
	 * full; cleared when a pop finds the ready lists empty. */
	bool backlog;

	/* completions waiting for the completer */
	struct tq_doneq doneq;
	bool completer_stop;
	bool riding; /* a submitter is busy: its next transaction takes them */

	struct tq_queue *fetch_q;
	pthread_t fetcher, completer[COMPLETERS], heartbeat;
	bool fetcher_started, completer_started[COMPLETERS], heartbeat_started;
	bool heartbeat_stop; /* under lock: set once no attempt runs any more */

	int n;
	struct worker *w;
};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* --- outcomes ------------------------------------------------------------- */

enum write_kind { WRITE_RETRY, WRITE_FAIL };

/*
 * Write a failure.  While PostgreSQL is unreachable keep trying until the
 * lease would have expired: past it the job runs again elsewhere, which the
 * delivery contract allows; an outcome written then would be fenced out
 * anyway.
 */
static int write_failure(struct tq_workers *pool, const struct tq_claim *c,
			 enum write_kind kind, int64_t delay_ms, const char *error)
{
	int64_t give_up = tq_now_ms() + (int64_t)pool->cfg->lease_s * 1000;
	int r;

	for (;;) {
		if (kind == WRITE_RETRY)
			r = tq_store_retry(pool->store, c->id, c->attempt, c->token, delay_ms,
					   error);
		else
			r = tq_store_fail(pool->store, c->id, c->attempt, c->token, error);
		if (r != -EAGAIN || tq_now_ms() >= give_up || atomic_load(&pool->stopping))
			return r;
		sleep_ms(OUTCOME_RETRY_MS);
	}
}

/* Queue a completion for the completer; takes over type and result. */
static int queue_done(struct tq_workers *pool, const struct tq_claim *c, char *result,
		      long long duration_ms)
{
	struct tq_done_item d = {
		.type = strdup(c->type),
		.result = result,
		.attempt = c->attempt,
		.token = c->token,
		.duration_ms = duration_ms,
		.give_up_ms = tq_now_ms() + (int64_t)pool->cfg->lease_s * 1000,
	};

	memcpy(d.id, c->id, sizeof(d.id));
	pthread_mutex_lock(&pool->lock);
	if (!d.type || tq_doneq_push(&pool->doneq, &d)) {
		pthread_mutex_unlock(&pool->lock);
		free(d.type);
		free(result);
		return -ENOMEM;
	}
	/* While a submitter is busy the completers only wait for its
	 * statement to take the queue along (wait_for_rider()): wake one
	 * for the first completion, which starts its wait, and for a full
	 * batch, not for every one in between. */
	if (!pool->riding || pool->doneq.len == 1 || pool->doneq.len >= COMPLETE_BATCH_MAX)
		pthread_cond_signal(&pool->done_cv);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

/* Log what became of n completions (r: the write's result) and free
 * their strings. */
static void log_done(struct tq_done_item *batch, size_t n, int r, const bool *written)
{
	for (size_t i = 0; i < n; i++) {
		struct tq_log_fields lf = TQ_LOG_FIELDS_INIT;

		lf.job_id = batch[i].id;
		lf.type = batch[i].type;
		lf.attempt = batch[i].attempt;
		lf.duration_ms = batch[i].duration_ms;
		lf.status = "completed";
		if (r < 0)
			tq_logf(TQ_LOG_ERROR, &lf,
				"cannot record the outcome (%s); the job runs again after its lease",
				strerror(-r));
		else if (!written[i])
			tq_logf(TQ_LOG_WARN, &lf, "outcome rejected: the job moved on (lease lost)");
		else
			tq_logf(TQ_LOG_INFO, &lf, "job completed");
		free(batch[i].type);
		free(batch[i].result);
	}
}

static void done_to_store(const struct tq_done_item *batch, size_t n, struct tq_done *done)
{
	for (size_t i = 0; i < n; i++)
		done[i] = (struct tq_done){.id = batch[i].id, .attempt = batch[i].attempt,
					   .token = batch[i].token, .result = batch[i].result};
}

/* While a submitter is busy, its next transaction takes the completions
 * along (tq_workers_ride()); wait for that, at most RIDE_WAIT_MS.  Lock
 * held.  false when they are gone meanwhile. */
static bool wait_for_rider(struct tq_workers *pool)
{
	struct timespec until;

	if (!pool->riding)
		return true;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += RIDE_WAIT_MS * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	while (pool->riding && pool->doneq.len > 0 && pool->doneq.len < COMPLETE_BATCH_MAX &&
	       !pool->completer_stop &&
	       pthread_cond_timedwait(&pool->done_cv, &pool->lock, &until) != ETIMEDOUT)
		;
	return pool->doneq.len > 0;
}

static void *completer_main(void *arg)
{
	struct tq_workers *pool = arg;
	struct tq_done_item *batch = calloc(COMPLETE_BATCH_MAX, sizeof(*batch));
	struct tq_done *done = calloc(COMPLETE_BATCH_MAX, sizeof(*done));
	bool *written = calloc(COMPLETE_BATCH_MAX, sizeof(*written));

	pthread_setname_np(pthread_self(), "tq-complete");
	if (!batch || !done || !written) {
		tq_error("completer: out of memory; the other completer and the submitters "
			 "write the completions");
		goto out;
	}
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		size_t n;
		int r;

		while (pool->doneq.len == 0 && !pool->completer_stop)
			pthread_cond_wait(&pool->done_cv, &pool->lock);
		if (pool->doneq.len == 0)
			break;
		if (!wait_for_rider(pool))
			continue;
		n = tq_doneq_take(&pool->doneq, batch, COMPLETE_BATCH_MAX);
		pthread_mutex_unlock(&pool->lock);

		done_to_store(batch, n, done);
		for (;;) {
			r = tq_store_complete_many(pool->store, done, n, written);
			if (r != -EAGAIN || tq_now_ms() >= batch[0].give_up_ms)
				break;
			sleep_ms(OUTCOME_RETRY_MS);
		}
		log_done(batch, n, r, written);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
out:
	free(batch);
	free(done);
	free(written);
	return NULL;
}

/* --- completions riding in a submitter's transaction --------------------- */

struct tq_ride {
	size_t n;
	struct tq_done_item items[];
};

size_t tq_workers_ride(struct tq_workers *pool, struct tq_done *done, size_t max,
		       struct tq_ride **out)
{
	struct tq_ride *ride = NULL;

	pthread_mutex_lock(&pool->lock);
	if (pool->doneq.len > 0 && max > 0) {
		size_t n = pool->doneq.len < max ? pool->doneq.len : max;

		ride = malloc(sizeof(*ride) + n * sizeof(ride->items[0]));
		if (ride)
			ride->n = tq_doneq_take(&pool->doneq, ride->items, n);
	}
	pthread_mutex_unlock(&pool->lock);
	*out = ride;
	if (!ride)
		return 0;
	done_to_store(ride->items, ride->n, done);
	return ride->n;
}

void tq_workers_rode(struct tq_workers *pool, struct tq_ride *ride, int rc,
		     const bool *written)
{
	if (!ride)
		return;
	if (rc == 0) {
		log_done(ride->items, ride->n, 0, written);
		free(ride);
		return;
	}
	/* not written: back to the head of the queue, for the completers */
	pthread_mutex_lock(&pool->lock);
	if (tq_doneq_unshift(&pool->doneq, ride->items, ride->n)) {
		pthread_mutex_unlock(&pool->lock);
		log_done(ride->items, ride->n, -ENOMEM, written);
		free(ride);
		return;
	}
	pthread_cond_broadcast(&pool->done_cv);
	pthread_mutex_unlock(&pool->lock);
	free(ride);
}

void tq_workers_riding(struct tq_workers *pool, bool busy)
{
	pthread_mutex_lock(&pool->lock);
	if (pool->riding != busy) {
		pool->riding = busy;
		if (!busy)
			pthread_cond_broadcast(&pool->done_cv);
	}
	pthread_mutex_unlock(&pool->lock);
}

/* --- running one attempt ---------------------------------------------------- */

static void run_claimed(struct worker *w, const struct tq_claim *c, int cancelled)
{
	struct tq_workers *pool = w->pool;
	struct tq_log_fields lf = TQ_LOG_FIELDS_INIT;
	struct tq_registry *reg = tq_plugins_acquire(pool->plugins);
	const struct tq_type *t = tq_registry_find(reg, c->type);
	struct taskq_job job;
	enum taskq_outcome outcome;
	enum write_kind kind;
	const char *status, *error = NULL;
	char why[128];
	int64_t start, delay_ms = 0;
	int r;

	tq_job_init(&job, c->id, c->type, c->payload, c->attempt,
		    tq_now_ms() + (int64_t)c->timeout_s * 1000);
	lf.job_id = c->id;
	lf.type = c->type;
	lf.attempt = c->attempt;
	start = tq_now_ms();

	if (cancelled != TQ_CANCEL_NONE) {
		/* cancelled, or moved on, while it waited for a worker: its
		 * handler never starts; a stale outcome is fenced out */
		atomic_store(&job.cancelled, cancelled);
		error = cancelled == TQ_CANCEL_REQUESTED ? "cancelled" : "lease lost before it started";
		outcome = TASKQ_FAIL;
	} else if (!t) {
		snprintf(why, sizeof(why), "no plugin handles type '%s'", c->type);
		error = why;
		outcome = TASKQ_RETRY;
	} else {
		pthread_mutex_lock(&pool->lock);
		w->current = &job;
		w->token = c->token;
		pthread_mutex_unlock(&pool->lock);

		outcome = tq_type_run(t, &job);

		pthread_mutex_lock(&pool->lock);
		w->current = NULL;
		pthread_mutex_unlock(&pool->lock);

		if (tq_now_ms() > job.deadline_ms && outcome != TASKQ_FAIL) {
			snprintf(why, sizeof(why), "timeout after %d s", c->timeout_s);
			error = why;
			outcome = TASKQ_RETRY;
		} else if (outcome != TASKQ_DONE) {
			error = job.error ? job.error : "handler failed without a reason";
		}
		if (outcome != TASKQ_DONE && outcome != TASKQ_RETRY && outcome != TASKQ_FAIL) {
			snprintf(why, sizeof(why), "handler returned an unknown outcome %d",
				 (int)outcome);
			error = why;
			outcome = TASKQ_FAIL;
		}
	}
	lf.duration_ms = tq_now_ms() - start;

	if (outcome == TASKQ_DONE) {
		/* the completer writes it, batched with others */
		r = queue_done(pool, c, job.result, lf.duration_ms);
		job.result = NULL;
		if (r)
			tq_logf(TQ_LOG_ERROR, &lf, "cannot record the outcome: out of memory");
		goto out;
	}
	if (outcome == TASKQ_RETRY && c->attempt < c->max_attempts) {
		kind = WRITE_RETRY;
		status = "scheduled";
		delay_ms = job.has_retry_after
				   ? (int64_t)job.retry_after_s * 1000
				   : tq_backoff_ms(c->attempt, pool->cfg->backoff_base_ms,
						   pool->cfg->backoff_cap_ms, &w->rng);
	} else {
		kind = WRITE_FAIL;
		status = "failed";
	}
	if (atomic_load(&job.cancelled) == TQ_CANCEL_REQUESTED) {
		/* the store ends it cancelled, whatever the handler said */
		status = "cancelled";
		if (!error)
			error = "cancelled";
	}
	r = write_failure(pool, c, kind, delay_ms, error);
	lf.status = status;
	if (r == 0) {
		if (kind == WRITE_RETRY)
			tq_scheduler_notify(pool->sched, delay_ms);
		if (strcmp(status, "cancelled") == 0)
			tq_logf(TQ_LOG_INFO, &lf, "job cancelled");
		else
			tq_logf(TQ_LOG_WARN, &lf, "job attempt failed: %s%s", error,
				kind == WRITE_RETRY ? "; retrying" : "");
	} else if (r == -ESTALE) {
		tq_logf(TQ_LOG_WARN, &lf, "outcome rejected: the job moved on (lease lost)");
	} else {
		tq_logf(TQ_LOG_ERROR, &lf,
			"cannot record the outcome (%s); the job runs again after its lease",
			strerror(-r));
	}
out:
	tq_job_clear(&job);
	tq_registry_release(reg);
}

/* --- heartbeat ---------------------------------------------------------- */

struct beat {
	struct tq_lease *leases;
	char (*ids)[37];
	bool *renewed;
	bool *cancel;
	size_t n;
};

/* Tell the handler running job id to stop, or mark its claim that waits
 * for a worker to end unrun; pool->lock held.  false when this node holds
 * that attempt no more (it finished meanwhile). */
static bool cancel_current(struct tq_workers *pool, const char *id, int64_t token,
			   enum tq_cancel_reason why)
{
	bool found = false;

	for (size_t i = 0; i < pool->runq_len; i++) {
		struct queued *q = &pool->runq[(pool->runq_head + i) % pool->runq_cap];

		if (q->claim.token == token && strcmp(q->claim.id, id) == 0) {
			q->cancel = (int)why;
			found = true;
		}
	}
	for (int i = 0; i < pool->n; i++) {
		struct taskq_job *job = pool->w[i].current;
		int none = TQ_CANCEL_NONE;

		if (job && pool->w[i].token == token && strcmp(job->id, id) == 0) {
			atomic_compare_exchange_strong(&job->cancelled, &none, (int)why);
			found = true;
		}
	}
	return found;
}

static void on_lease(void *arg, const char *id, bool cancel_requested)
{
	struct beat *b = arg;

	for (size_t i = 0; i < b->n; i++) {
		if (strcmp(b->ids[i], id) == 0) {
			b->renewed[i] = true;
			b->cancel[i] = cancel_requested;
		}
	}
}

static void beat_once(struct tq_workers *pool, struct beat *b)
{
	struct tq_log_fields lf = TQ_LOG_FIELDS_INIT;
	char *msgs[pool->runq_cap];
	int r;

	b->n = 0;
	pthread_mutex_lock(&pool->lock);
	for (size_t i = 0; i < pool->runq_len; i++) {
		const struct tq_claim *c =
			&pool->runq[(pool->runq_head + i) % pool->runq_cap].claim;

		snprintf(b->ids[b->n], sizeof(b->ids[0]), "%s", c->id);
		b->leases[b->n] = (struct tq_lease){.id = b->ids[b->n], .attempt = c->attempt,
						    .token = c->token, .progress = -1};
		msgs[b->n] = NULL;
		b->renewed[b->n] = false;
		b->cancel[b->n] = false;
		b->n++;
	}
	for (int i = 0; i < pool->n; i++) {
		struct taskq_job *job = pool->w[i].current;
		struct tq_lease *l = &b->leases[b->n];
		char *msg = NULL;
		int pct;

		if (!job)
			continue;
		snprintf(b->ids[b->n], sizeof(b->ids[0]), "%s", job->id);
		l->id = b->ids[b->n];
		l->attempt = job->attempt;
		l->token = pool->w[i].token;
		l->progress = tq_job_take_progress(job, &pct, &msg) ? pct : -1;
		l->progress_message = msg;
		msgs[b->n] = msg;
		b->renewed[b->n] = false;
		b->cancel[b->n] = false;
		b->n++;
	}
	pthread_mutex_unlock(&pool->lock);
	if (b->n == 0)
		return; /* idle: no statement at all */

	r = tq_store_heartbeat(pool->store, b->leases, b->n, pool->cfg->lease_s, on_lease, b);
	for (size_t i = 0; i < b->n; i++)
		free(msgs[i]);
	if (r < 0)
		return; /* the store logged it; the lease may lapse, which is safe */

	pthread_mutex_lock(&pool->lock);
	for (size_t i = 0; i < b->n; i++) {
		int64_t token = b->leases[i].token;

		if (b->cancel[i]) {
			cancel_current(pool, b->ids[i], token, TQ_CANCEL_REQUESTED);
		} else if (!b->renewed[i] &&
			   cancel_current(pool, b->ids[i], token, TQ_CANCEL_LEASE_LOST)) {
			/* not renewed and still running: the job moved on (a
			 * rescue); one that finished meanwhile is no news */
			lf.job_id = b->ids[i];
			lf.attempt = b->leases[i].attempt;
			tq_logf(TQ_LOG_WARN, &lf, "lease lost; telling the handler to stop");
		}
	}
	pthread_mutex_unlock(&pool->lock);
}

static void *heartbeat_main(void *arg)
{
	struct tq_workers *pool = arg;
	struct beat b = {
		.leases = calloc(pool->runq_cap, sizeof(*b.leases)),
		.ids = calloc(pool->runq_cap, sizeof(*b.ids)),
		.renewed = calloc(pool->runq_cap, sizeof(*b.renewed)),
		.cancel = calloc(pool->runq_cap, sizeof(*b.cancel)),
	};
	struct timespec next;

	pthread_setname_np(pthread_self(), "tq-heartbeat");
	if (!b.leases || !b.ids || !b.renewed || !b.cancel) {
		tq_error("heartbeat: out of memory; leases will lapse");
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&pool->lock);
	/* Leases are renewed through the shutdown grace too. */
	while (!pool->heartbeat_stop) {
		next.tv_sec += pool->cfg->heartbeat_s;
		while (!pool->heartbeat_stop &&
		       pthread_cond_timedwait(&pool->exited, &pool->lock, &next) != ETIMEDOUT)
			;
		if (pool->heartbeat_stop)
			break;
		pthread_mutex_unlock(&pool->lock);
		beat_once(pool, &b);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
out:
	free(b.leases);
	free(b.ids);
	free(b.renewed);
	free(b.cancel);
	return NULL;
}

/* Queue n claims for the workers (their slots already taken); lock
 * held.  The caller then asks need_wake() and, after unlocking, wakes a
 * worker with wake_worker(). */
static void enqueue(struct tq_workers *pool, struct tq_claim *claims, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t tail = (pool->runq_head + pool->runq_len) % pool->runq_cap;

		pool->runq[tail] = (struct queued){.claim = claims[i]};
		pool->runq_len++;
	}
}

/*
 * Whether a sleeping worker must be woken for the claims queued; lock
 * held.  One wake-up at a time: a worker that takes a claim while more
 * wait wakes the next (worker_main()), and none is woken while another is
 * on its way.  Short jobs then run one after another on the workers
 * awake, which take the next claim before a woken thread would have got
 * a CPU, instead of costing a thread switch each; long ones still spread
 * over the pool, one thread switch apart.
 */
static bool need_wake(struct tq_workers *pool)
{
	if (pool->runq_len == 0 || pool->sleeping == 0 || pool->waking > 0)
		return false;
	pool->waking++;
	return true;
}

/* Wake one sleeping worker; after need_wake(), without the lock. */
static void wake_worker(struct tq_workers *pool)
{
	pthread_cond_signal(&pool->runnable);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct tq_workers *pool = w->pool;

	pthread_setname_np(pthread_self(), "tq-worker");
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct queued q;
		bool wake;

		while (pool->runq_len == 0 && !atomic_load(&pool->stopping)) {
			pool->sleeping++;
			pthread_cond_wait(&pool->runnable, &pool->lock);
			pool->sleeping--;
			/* the one signalled, or one that woke on its own
			 * first: either way the wake-up in flight is over,
			 * even if another worker took the claim meanwhile */
			if (pool->waking > 0)
				pool->waking--;
		}
		if (atomic_load(&pool->stopping))
			break;
		q = pool->runq[pool->runq_head];
		pool->runq_head = (pool->runq_head + 1) % pool->runq_cap;
		pool->runq_len--;
		wake = need_wake(pool);
		pthread_mutex_unlock(&pool->lock);
		if (wake)
			wake_worker(pool);

		run_claimed(w, &q.claim, q.cancel);
		tq_claim_free(&q.claim);

		pthread_mutex_lock(&pool->lock);
		pool->slots++;
		pthread_cond_signal(&pool->slot_cv);
	}
	pool->alive--;
	pthread_cond_broadcast(&pool->exited);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* --- the fetcher ------------------------------------------------------------ */


static void *fetcher_main(void *arg)
{
	struct tq_workers *pool = arg;
	const char *const *queues = (const char *const *)pool->cfg->queues;
	char (*ids)[37] = calloc(FETCH_MAX, sizeof(*ids));
	unsigned short *from = calloc(FETCH_MAX, sizeof(*from));
	struct tq_claim *claims = calloc(FETCH_MAX, sizeof(*claims));

	pthread_setname_np(pthread_self(), "tq-fetch");
	if (!ids || !from || !claims) {
		tq_error("fetcher: out of memory; this node takes no jobs");
		goto out;
	}
	while (!atomic_load(&pool->stopping)) {
		size_t want, keep, n = 0, claimed = 0;
		bool backlog, wake;
		int r = 0;

		pthread_mutex_lock(&pool->lock);
		while (pool->slots == 0 && !atomic_load(&pool->stopping))
			pthread_cond_wait(&pool->slot_cv, &pool->lock);
		want = (size_t)pool->slots < FETCH_MAX ? (size_t)pool->slots : FETCH_MAX;
		backlog = pool->backlog;
		pthread_mutex_unlock(&pool->lock);
		if (atomic_load(&pool->stopping))
			break;

		/* A blocking pop returns at once what is ready, but cannot
		 * tell that the lists were empty: while a backlog is flagged,
		 * take without waiting first, so that an empty answer can
		 * clear it.  Without one, that take is a wasted round trip. */
		if (backlog)
			r = tq_queue_take(pool->fetch_q, queues, want, ids, from, &n);
		if (r == 0 && n == 0) {
			if (backlog) {
				/* nothing waits in Redis: until something
				 * does, the submitters may claim their own
				 * jobs */
				pthread_mutex_lock(&pool->lock);
				pool->backlog = false;
				pthread_mutex_unlock(&pool->lock);
			}
			r = tq_queue_pop_many(pool->fetch_q, queues, want, POP_TIMEOUT_S, ids,
					      from, &n);
		}
		if (r == -ETIMEDOUT || r == -EINTR)
			continue;
		if (r || n == 0) {
			/* Redis is down (logged by the queue): wait for it */
			sleep_ms(STORE_RETRY_MS);
			continue;
		}
		/* Submitters may have taken slots while the pop waited: what
		 * there is no room for goes back to the head of its list, for
		 * the next pop here or another node's. */
		pthread_mutex_lock(&pool->lock);
		keep = (size_t)pool->slots < n ? (size_t)pool->slots : n;
		pool->slots -= (int)keep;
		if (n == want || keep < n)
			pool->backlog = true;
		pthread_mutex_unlock(&pool->lock);
		if (keep < n && tq_queue_unpop(pool->fetch_q, ids + keep, from + keep, n - keep))
			tq_warn("%zu popped ids could not go back to redis; they wait for the "
				"reconciler", n - keep);
		n = keep;
		if (n == 0)
			continue;
		/* While PostgreSQL is unreachable, hold the ids and claim them
		 * again: they are out of Redis, and dropped they would wait for
		 * the reconciler's next look at them. */
		while ((r = tq_store_claim_many(pool->store, ids, n, pool->cfg->lease_s, claims,
						&claimed)) == -EAGAIN &&
		       !atomic_load(&pool->stopping))
			sleep_ms(STORE_RETRY_MS);
		/* ids not claimed were taken elsewhere, cancelled or stale;
		 * after an error the jobs stay pending for the reconciler */
		pthread_mutex_lock(&pool->lock);
		pool->slots += (int)(n - (r ? 0 : claimed));
		if (!r)
			enqueue(pool, claims, claimed);
		wake = need_wake(pool);
		pthread_mutex_unlock(&pool->lock);
		if (wake)
			wake_worker(pool);
		if (r && r != -EAGAIN)
			sleep_ms(STORE_RETRY_MS);
	}
out:
	free(ids);
	free(from);
	free(claims);
	return NULL;
}

/* --- start and stop ---------------------------------------------------------- */

int tq_workers_start(struct tq_workers **out, const struct tq_config *cfg,
		     struct tq_store *store, struct tq_plugins *plugins,
		     struct tq_scheduler *sched, struct tq_dispatch *dispatch)
{
	struct tq_workers *pool = calloc(1, sizeof(*pool));
	pthread_condattr_t attr;
	char err[256];
	int r = 0;

	*out = NULL;
	if (!pool)
		return -ENOMEM;
	pool->cfg = cfg;
	pool->store = store;
	pool->plugins = plugins;
	pool->sched = sched;
	pool->dispatch = dispatch;
	pool->n = cfg->workers;
	pool->w = calloc((size_t)pool->n, sizeof(*pool->w));
	pool->slots = pool->n + cfg->prefetch;
	pool->runq_cap = (size_t)pool->slots;
	/* no backlog known yet: the fetcher's first look, a moment after
	 * start, tells whether one waits */
	pool->runq = calloc(pool->runq_cap, sizeof(*pool->runq));
	if (!pool->w || !pool->runq) {
		free(pool->w);
		free(pool->runq);
		free(pool);
		return -ENOMEM;
	}
	tq_doneq_init(&pool->doneq, COMPLETE_BATCH_MAX);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->exited, &attr);
	pthread_cond_init(&pool->done_cv, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&pool->runnable, NULL);
	pthread_cond_init(&pool->slot_cv, NULL);

	r = tq_queue_open(&pool->fetch_q, cfg->redis_url, cfg->redis_prefix, err, sizeof(err));
	if (r) {
		tq_error("cannot start the fetcher: %s", err);
		goto fail;
	}
	for (int i = 0; i < pool->n; i++) {
		struct worker *w = &pool->w[i];

		w->pool = pool;
		w->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)tq_now_ms() ^
			 ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
		pthread_mutex_lock(&pool->lock);
		pool->alive++;
		pthread_mutex_unlock(&pool->lock);
		r = -pthread_create(&w->thread, NULL, worker_main, w);
		if (r) {
			pthread_mutex_lock(&pool->lock);
			pool->alive--;
			pthread_mutex_unlock(&pool->lock);
			tq_error("cannot start worker %d: %s", i, strerror(-r));
			goto fail;
		}
		w->started = true;
	}
	for (int i = 0; i < COMPLETERS && r == 0; i++) {
		r = -pthread_create(&pool->completer[i], NULL, completer_main, pool);
		pool->completer_started[i] = r == 0;
	}
	if (r == 0) {
		r = -pthread_create(&pool->heartbeat, NULL, heartbeat_main, pool);
		pool->heartbeat_started = r == 0;
	}
	if (r == 0) {
		r = -pthread_create(&pool->fetcher, NULL, fetcher_main, pool);
		pool->fetcher_started = r == 0;
	}
	if (r) {
		tq_error("cannot start the worker pool: %s", strerror(-r));
		goto fail;
	}
	tq_info("started %d workers on queues of %s", pool->n, cfg->queues[0]);
	*out = pool;
	return 0;
fail:
	tq_workers_stop(pool, 0);
	return r ? r : -ENOMEM;
}

static void on_released(void *arg, const char *queue, int priority, const char *id)
{
	struct tq_workers *pool = arg;

	if (pool->dispatch)
		tq_dispatch_push(pool->dispatch, queue, priority, id);
}

/* Hand an attempt back (pending again at once, dispatched); lock held. */
static void hand_back(struct tq_workers *pool, const char *id, const char *type,
		      int attempt, int64_t token, const char *what)
{
	struct tq_log_fields lf = TQ_LOG_FIELDS_INIT;

	lf.job_id = id;
	lf.type = type;
	lf.attempt = attempt;
	if (tq_store_release(pool->store, id, attempt, token, on_released, pool) == 0)
		tq_logf(TQ_LOG_WARN, &lf, "%s; handed back", what);
}

/* --- claims made at submission ------------------------------------------ */

bool tq_workers_take_queue(const struct tq_workers *pool, const char *queue)
{
	for (char *const *q = pool->cfg->queues; q && *q; q++)
		if (strcmp(*q, queue ? queue : "default") == 0)
			return true;
	return false;
}

size_t tq_workers_reserve(struct tq_workers *pool, size_t n)
{
	size_t got = 0;

	pthread_mutex_lock(&pool->lock);
	if (!atomic_load(&pool->stopping) && !pool->backlog) {
		got = (size_t)pool->slots < n ? (size_t)pool->slots : n;
		pool->slots -= (int)got;
	}
	/* the rest goes to Redis; what comes after waits behind it */
	if (got < n)
		pool->backlog = true;
	pthread_mutex_unlock(&pool->lock);
	return got;
}

void tq_workers_unreserve(struct tq_workers *pool, size_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->slots += (int)n;
	pthread_cond_signal(&pool->slot_cv);
	pthread_mutex_unlock(&pool->lock);
}

void tq_workers_hand(struct tq_workers *pool, struct tq_claim *claims, size_t n)
{
	pthread_mutex_lock(&pool->lock);
	if (!atomic_load(&pool->stopping)) {
		bool wake;

		enqueue(pool, claims, n);
		wake = need_wake(pool);
		pthread_mutex_unlock(&pool->lock);
		if (wake)
			wake_worker(pool);
		return;
	}
	/* stopping: the run queue was handed back already; these too */
	for (size_t i = 0; i < n; i++) {
		hand_back(pool, claims[i].id, claims[i].type, claims[i].attempt,
			  claims[i].token, "claimed at submission during shutdown");
		tq_claim_free(&claims[i]);
	}
	pthread_mutex_unlock(&pool->lock);
}

static void join_completers(struct tq_workers *pool)
{
	for (int i = 0; i < COMPLETERS; i++)
		if (pool->completer_started[i])
			pthread_join(pool->completer[i], NULL);
}

int tq_workers_stop(struct tq_workers *pool, int grace_s)
{
	struct timespec deadline;
	int abandoned = 0;

	if (!pool)
		return 0;
	pthread_mutex_lock(&pool->lock);
	atomic_store(&pool->stopping, true);
	pthread_cond_broadcast(&pool->slot_cv);
	pthread_mutex_unlock(&pool->lock);
	if (pool->fetch_q)
		tq_queue_interrupt(pool->fetch_q);
	if (pool->fetcher_started)
		pthread_join(pool->fetcher, NULL);

	pthread_mutex_lock(&pool->lock);
	pthread_cond_broadcast(&pool->runnable);
	pthread_cond_broadcast(&pool->slot_cv);
	/* claimed but not started: hand them back now rather than start them */
	while (pool->runq_len) {
		struct tq_claim *c = &pool->runq[pool->runq_head].claim;

		hand_back(pool, c->id, c->type, c->attempt, c->token,
			  "claimed but not started at shutdown");
		tq_claim_free(c);
		pool->runq_head = (pool->runq_head + 1) % pool->runq_cap;
		pool->runq_len--;
	}

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += grace_s;
	while (pool->alive > 0 &&
	       pthread_cond_timedwait(&pool->exited, &pool->lock, &deadline) != ETIMEDOUT)
		;
	pool->heartbeat_stop = true;
	pthread_cond_broadcast(&pool->exited);
	if (pool->alive > 0) {
		/* Hand every unfinished attempt back at once, so that no node
		 * waits for its lease, and tell its handler to stop.  Whichever
		 * of the release and a late outcome comes first wins; the other
		 * is fenced out. */
		for (int i = 0; i < pool->n; i++) {
			struct taskq_job *job = pool->w[i].current;

			if (!job)
				continue;
			atomic_store(&job->cancelled, TQ_CANCEL_SHUTDOWN);
			hand_back(pool, job->id, job->type, job->attempt, pool->w[i].token,
				  "still running at the shutdown deadline");
			abandoned++;
		}
		/* what finished before the deadline is still written */
		pool->completer_stop = true;
		pthread_cond_broadcast(&pool->done_cv);
		pthread_mutex_unlock(&pool->lock);
		join_completers(pool);
		/* Threads still running own their memory: leave it. */
		return abandoned ? abandoned : pool->alive;
	}
	/* every worker is done: let the completer write what they finished */
	pool->completer_stop = true;
	pthread_cond_broadcast(&pool->done_cv);
	pthread_mutex_unlock(&pool->lock);

	for (int i = 0; i < pool->n; i++)
		if (pool->w[i].started)
			pthread_join(pool->w[i].thread, NULL);
	join_completers(pool);
	if (pool->heartbeat_started)
		pthread_join(pool->heartbeat, NULL);
	tq_queue_close(pool->fetch_q);
	pthread_cond_destroy(&pool->exited);
	pthread_cond_destroy(&pool->runnable);
	pthread_cond_destroy(&pool->slot_cv);
	pthread_cond_destroy(&pool->done_cv);
	pthread_mutex_destroy(&pool->lock);
	tq_doneq_free(&pool->doneq);
	free(pool->runq);
	free(pool->w);
	free(pool);
	return 0;
}
