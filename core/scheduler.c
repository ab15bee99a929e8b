/*
 * scheduler.c - promotes due scheduled jobs and dispatches them (see
 * scheduler.h).
 */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "config.h"
#include "dispatch.h"
#include "log.h"
#include "queue.h"
#include "store.h"

#define PROMOTE_BATCH 500
#define RESCUE_BATCH 500
#define RECONCILE_BATCH 1000
/* Due pending jobs looked at per statement (see tq_store_reconcile()). */
#define RECHECK_BATCH 10000
/* Between two passes that each left a full batch to do. */
#define RECONCILE_PAUSE_MS 200

struct tq_scheduler {
	const struct tq_config *cfg;
	struct tq_store *store;
	struct tq_dispatch *dispatch;
	struct tq_queue *q; /* to compare Redis with the store */
	int interval_ms;
	struct tq_scheduler_stats stats; /* under lock */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int64_t wake_at_ms; /* CLOCK_MONOTONIC; when the next pass is due */
	bool stopping;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_ready(void *arg, const char *queue, int priority, const char *id)
{
	struct tq_scheduler *s = arg;

	tq_dispatch_push(s->dispatch, queue, priority, id);
}

static void on_rescued(void *arg, const char *id, const char *status)
{
	struct tq_log_fields lf = TQ_LOG_FIELDS_INIT;

	(void)arg;
	lf.job_id = id;
	lf.status = status;
	tq_logf(TQ_LOG_WARN, &lf, "lease expired; job rescued");
}

/* Run a batch step until it returns less than a full batch; the total, or
 * a negative error when the first batch failed. */
#define DRAIN(total, call, batch)                                              \
	do {                                                                   \
		int n_;                                                        \
		(total) = 0;                                                   \
		do {                                                           \
			n_ = (call);                                           \
			if (n_ < 0) {                                          \
				(total) = (total) ? (total) : n_;              \
				break;                                         \
			}                                                      \
			(total) += n_;                                         \
		} while (n_ == (batch));                                       \
	} while (0)

struct reconcile_ctx {
	struct tq_scheduler *s;
	int redispatched;
	bool more; /* a queue has more to look at */
};

/*
 * For one queue with due pending jobs (not claimed within
 * pending_redispatch_s of their hand-off): when Redis holds fewer ids than
 * the store has pending jobs, some were lost (a flush, a restart without
 * persistence, a crash between commit and push, a dropped dispatch): hand
 * that many of the due ones again, oldest first.  Once that is done, the
 * other due ones are in Redis's backlog: the store looks at them again
 * later.  A backlog that Redis still holds is never dispatched twice.
 */
static void reconcile_queue(void *arg, const char *queue, long pending, long due)
{
	struct reconcile_ctx *x = arg;
	struct tq_scheduler *s = x->s;
	long long backlog;
	long missing, left;
	int again, n;

	if (due == 0)
		return;
	if (tq_queue_backlog(s->q, queue, &backlog) != 0)
		return; /* Redis is down: nothing to compare, nowhere to push */
	missing = pending - (long)backlog;
	if (missing > RECONCILE_BATCH) {
		/* one batch a pass, so that a pass stays short and the
		 * dispatcher's buffer is not flooded; nothing is put off while
		 * more are missing than a batch */
		n = tq_store_reconcile(s->store, queue, RECONCILE_BATCH,
				       RECONCILE_BATCH, on_ready, s);
		x->redispatched += n > 0 ? n : 0;
		x->more = true;
		return;
	}
	/* the missing ones, then every other due one put off */
	again = missing > 0 ? (int)missing : 0;
	for (left = due; left > 0; left -= RECHECK_BATCH) {
		n = tq_store_reconcile(s->store, queue, again, RECHECK_BATCH, on_ready, s);
		if (n < 0)
			return;
		x->redispatched += n;
		again = 0;
	}
}

static int reconcile(struct tq_scheduler *s, bool *more)
{
	struct reconcile_ctx x = {.s = s};
	int r = tq_store_pending_counts(s->store, reconcile_queue, &x);

	*more = x.more;
	return r < 0 ? r : x.redispatched;
}

/* One pass: re-dispatch what Redis lost, rescue expired leases, promote
 * everything due, then learn when the next scheduled job is due.  Returns
 * the delay until the next pass. */
static int64_t pass(struct tq_scheduler *s)
{
	const struct tq_config *cfg = s->cfg;
	int64_t next = s->interval_ms, due;
	int rescued, promoted, redispatched;
	bool more = false;

	/* first, so that the due pending jobs it looks at again are out of
	 * the way of the rescue's walk of the same index */
	redispatched = reconcile(s, &more);
	if (redispatched < 0)
		return next; /* the store logged the outage; retry next period */
	if (redispatched > 0)
		tq_info("reconciler dispatched %d pending jobs again", redispatched);
	DRAIN(rescued, tq_store_rescue(s->store, RESCUE_BATCH, cfg->backoff_base_ms,
				       cfg->backoff_cap_ms, on_rescued, s),
	      RESCUE_BATCH);
	if (rescued < 0)
		return next;
	DRAIN(promoted, tq_store_promote_due(s->store, PROMOTE_BATCH, on_ready, s),
	      PROMOTE_BATCH);
	if (rescued > 0 || more)
		/* rescued jobs may be due now, or soon; or more to look at */
		next = more ? RECONCILE_PAUSE_MS : 0;
	else if (tq_store_next_due_ms(s->store, &due) == 0 && due < next)
		next = due;

	pthread_mutex_lock(&s->lock);
	s->stats.passes++;
	s->stats.rescued += rescued > 0 ? (unsigned)rescued : 0;
	s->stats.promoted += promoted > 0 ? (unsigned)promoted : 0;
	s->stats.redispatched += redispatched > 0 ? (unsigned)redispatched : 0;
	pthread_mutex_unlock(&s->lock);
	return next;
}

static void *run(void *arg)
{
	struct tq_scheduler *s = arg;
	struct timespec ts;

	pthread_setname_np(pthread_self(), "tq-scheduler");
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		int64_t now = mono_ms(), delay;

		if (now < s->wake_at_ms) {
			int64_t at = s->wake_at_ms;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (at - now) / 1000;
			ts.tv_nsec += (long)((at - now) % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s->wake, &s->lock, &ts);
			continue;
		}
		/* Anything notified from now on needs another pass. */
		s->wake_at_ms = INT64_MAX;
		pthread_mutex_unlock(&s->lock);
		delay = pass(s);
		pthread_mutex_lock(&s->lock);
		if (mono_ms() + delay < s->wake_at_ms)
			s->wake_at_ms = mono_ms() + delay;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int tq_scheduler_start(struct tq_scheduler **out, const struct tq_config *cfg,
		       struct tq_store *store, struct tq_dispatch *dispatch)
{
	struct tq_scheduler *s = calloc(1, sizeof(*s));
	pthread_condattr_t attr;
	int r;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->cfg = cfg;
	s->store = store;
	s->dispatch = dispatch;
	{
		char err[256];

		r = tq_queue_open(&s->q, cfg->redis_url, cfg->redis_prefix, err, sizeof(err));
		if (r) {
			tq_error("scheduler: %s", err);
			free(s);
			return r;
		}
	}
	s->interval_ms = cfg->reconcile_interval_s * 1000;
	s->wake_at_ms = 0; /* a first pass at once */
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &attr);
	pthread_condattr_destroy(&attr);
	r = -pthread_create(&s->thread, NULL, run, s);
	if (r) {
		tq_queue_close(s->q);
		pthread_cond_destroy(&s->wake);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

void tq_scheduler_notify(struct tq_scheduler *s, int64_t delay_ms)
{
	int64_t at = mono_ms() + (delay_ms > 0 ? delay_ms : 0);

	pthread_mutex_lock(&s->lock);
	if (at < s->wake_at_ms) {
		s->wake_at_ms = at;
		pthread_cond_signal(&s->wake);
	}
	pthread_mutex_unlock(&s->lock);
}

void tq_scheduler_stats(struct tq_scheduler *s, struct tq_scheduler_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
}

void tq_scheduler_stop(struct tq_scheduler *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	tq_queue_close(s->q);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
