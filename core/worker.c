/*
 * worker.c - the worker pool (see worker.h).
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
#include "job.h"
#include "log.h"
#include "plugin_host.h"
#include "queue.h"
#include "scheduler.h"
#include "store.h"

#define POP_TIMEOUT_S 30
#define OUTCOME_RETRY_MS 250
#define STORE_RETRY_MS 500

struct worker {
	struct tq_workers *pool;
	pthread_t thread;
	bool started;
	struct tq_queue *q;
	uint64_t rng;
	struct taskq_job *current; /* guarded by pool->lock */
};

struct tq_workers {
	const struct tq_config *cfg;
	struct tq_store *store;
	struct tq_plugins *plugins;
	struct tq_scheduler *sched;
	struct tq_dispatch *dispatch;
	atomic_bool stopping;

	pthread_mutex_t lock;
	pthread_cond_t exited; /* a worker exited; also wakes the heartbeat */
	int alive;

	pthread_t heartbeat;
	bool heartbeat_started;
	bool heartbeat_stop; /* under lock: set once no attempt runs any more */

	int n;
	struct worker *w;
};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

enum write_kind { WRITE_COMPLETE, WRITE_RETRY, WRITE_FAIL };

/*
 * Write the outcome.  While PostgreSQL is unreachable keep trying until the
 * lease would have expired: past it the job runs again elsewhere, which the
 * delivery contract allows; an outcome written then would be fenced out
 * anyway.
 */
static int write_outcome(struct worker *w, const struct tq_claim *c, enum write_kind kind,
			 const char *result, int64_t delay_ms, const char *error)
{
	int64_t give_up = tq_now_ms() + (int64_t)w->pool->cfg->lease_s * 1000;
	int r;

	for (;;) {
		switch (kind) {
		case WRITE_COMPLETE:
			r = tq_store_complete(w->pool->store, c->id, c->attempt, result);
			break;
		case WRITE_RETRY:
			r = tq_store_retry(w->pool->store, c->id, c->attempt, delay_ms, error);
			break;
		default:
			r = tq_store_fail(w->pool->store, c->id, c->attempt, error);
			break;
		}
		if (r != -EAGAIN || tq_now_ms() >= give_up)
			return r;
		sleep_ms(OUTCOME_RETRY_MS);
	}
}

static void run_claimed(struct worker *w, const struct tq_claim *c)
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

	if (!t) {
		snprintf(why, sizeof(why), "no plugin handles type '%s'", c->type);
		error = why;
		outcome = TASKQ_RETRY;
	} else {
		pthread_mutex_lock(&pool->lock);
		w->current = &job;
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
		kind = WRITE_COMPLETE;
		status = "completed";
	} else if (outcome == TASKQ_RETRY && c->attempt < c->max_attempts) {
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
	if (atomic_load(&job.cancelled) == TQ_CANCEL_REQUESTED && kind != WRITE_COMPLETE) {
		/* the store ends it cancelled, whatever the handler said */
		status = "cancelled";
		if (!error)
			error = "cancelled";
	}
	r = write_outcome(w, c, kind, job.result, delay_ms, error);
	lf.status = status;
	if (r == 0) {
		if (kind == WRITE_RETRY)
			tq_scheduler_notify(pool->sched, delay_ms);
		if (kind == WRITE_COMPLETE)
			tq_logf(TQ_LOG_INFO, &lf, "job completed");
		else if (strcmp(status, "cancelled") == 0)
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

/* Tell the handler running job id to stop; pool->lock held. */
static void cancel_current(struct tq_workers *pool, const char *id, int attempt,
			   enum tq_cancel_reason why)
{
	for (int i = 0; i < pool->n; i++) {
		struct taskq_job *job = pool->w[i].current;
		int none = TQ_CANCEL_NONE;

		if (job && job->attempt == attempt && strcmp(job->id, id) == 0)
			atomic_compare_exchange_strong(&job->cancelled, &none, (int)why);
	}
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
	char *msgs[pool->n];
	int r;

	b->n = 0;
	pthread_mutex_lock(&pool->lock);
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
		int attempt = b->leases[i].attempt;

		if (b->cancel[i]) {
			cancel_current(pool, b->ids[i], attempt, TQ_CANCEL_REQUESTED);
		} else if (!b->renewed[i]) {
			lf.job_id = b->ids[i];
			lf.attempt = attempt;
			tq_logf(TQ_LOG_WARN, &lf, "lease lost; telling the handler to stop");
			cancel_current(pool, b->ids[i], attempt, TQ_CANCEL_LEASE_LOST);
		}
	}
	pthread_mutex_unlock(&pool->lock);
}

static void *heartbeat_main(void *arg)
{
	struct tq_workers *pool = arg;
	struct beat b = {
		.leases = calloc((size_t)pool->n, sizeof(*b.leases)),
		.ids = calloc((size_t)pool->n, sizeof(*b.ids)),
		.renewed = calloc((size_t)pool->n, sizeof(*b.renewed)),
		.cancel = calloc((size_t)pool->n, sizeof(*b.cancel)),
	};
	struct timespec next;

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

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct tq_workers *pool = w->pool;
	const char *const *queues = (const char *const *)pool->cfg->queues;
	char id[37];

	while (!atomic_load(&pool->stopping)) {
		struct tq_claim c;
		int r = tq_queue_pop(w->q, queues, POP_TIMEOUT_S, id);

		if (r == -ETIMEDOUT || r == -EINTR)
			continue;
		if (r) {
			/* Redis is down (logged by the queue): wait for it. */
			sleep_ms(STORE_RETRY_MS);
			continue;
		}
		memset(&c, 0, sizeof(c));
		r = tq_store_claim(pool->store, id, pool->cfg->lease_s, &c);
		if (r == -ENOENT) {
			/* claimed elsewhere, cancelled, or a stale id: nothing to do */
			continue;
		}
		if (r) {
			/* Not claimed: the job stays pending for the reconciler. */
			sleep_ms(STORE_RETRY_MS);
			continue;
		}
		run_claimed(w, &c);
		tq_claim_free(&c);
	}

	pthread_mutex_lock(&pool->lock);
	pool->alive--;
	pthread_cond_broadcast(&pool->exited);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

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
	if (!pool->w) {
		free(pool);
		return -ENOMEM;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->exited, &attr);
	pthread_condattr_destroy(&attr);

	for (int i = 0; i < pool->n; i++) {
		struct worker *w = &pool->w[i];

		w->pool = pool;
		w->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)tq_now_ms() ^
			 ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
		r = tq_queue_open(&w->q, cfg->redis_url, cfg->redis_prefix, err, sizeof(err));
		if (r) {
			tq_error("cannot start worker %d: %s", i, err);
			break;
		}
		pthread_mutex_lock(&pool->lock);
		pool->alive++;
		pthread_mutex_unlock(&pool->lock);
		r = -pthread_create(&w->thread, NULL, worker_main, w);
		if (r) {
			pthread_mutex_lock(&pool->lock);
			pool->alive--;
			pthread_mutex_unlock(&pool->lock);
			tq_error("cannot start worker %d: %s", i, strerror(-r));
			break;
		}
		w->started = true;
	}
	if (r == 0) {
		r = -pthread_create(&pool->heartbeat, NULL, heartbeat_main, pool);
		if (r)
			tq_error("cannot start the heartbeat: %s", strerror(-r));
		pool->heartbeat_started = r == 0;
	}
	if (r) {
		tq_workers_stop(pool, 0);
		return r;
	}
	tq_info("started %d workers on queues of %s", pool->n, cfg->queues[0]);
	*out = pool;
	return 0;
}

static void on_released(void *arg, const char *queue, int priority, const char *id)
{
	struct tq_workers *pool = arg;

	if (pool->dispatch)
		tq_dispatch_push(pool->dispatch, queue, priority, id);
}

int tq_workers_stop(struct tq_workers *pool, int grace_s)
{
	struct timespec deadline;
	int abandoned = 0;

	if (!pool)
		return 0;
	atomic_store(&pool->stopping, true);
	for (int i = 0; i < pool->n; i++)
		if (pool->w[i].q)
			tq_queue_interrupt(pool->w[i].q);

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += grace_s;
	pthread_mutex_lock(&pool->lock);
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
			struct tq_log_fields lf = TQ_LOG_FIELDS_INIT;

			if (!job)
				continue;
			atomic_store(&job->cancelled, TQ_CANCEL_SHUTDOWN);
			lf.job_id = job->id;
			lf.type = job->type;
			lf.attempt = job->attempt;
			if (tq_store_release(pool->store, job->id, job->attempt, on_released,
					     pool) == 0)
				tq_logf(TQ_LOG_WARN, &lf, "still running at the shutdown deadline; handed back");
			abandoned++;
		}
		pthread_mutex_unlock(&pool->lock);
		/* Threads still running own their memory: leave it. */
		return abandoned ? abandoned : pool->alive;
	}
	pthread_mutex_unlock(&pool->lock);
	if (pool->heartbeat_started)
		pthread_join(pool->heartbeat, NULL);

	for (int i = 0; i < pool->n; i++) {
		if (pool->w[i].started)
			pthread_join(pool->w[i].thread, NULL);
		tq_queue_close(pool->w[i].q);
	}
	pthread_cond_destroy(&pool->exited);
	pthread_mutex_destroy(&pool->lock);
	free(pool->w);
	free(pool);
	return 0;
}
