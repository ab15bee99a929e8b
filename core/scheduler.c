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

#include "dispatch.h"
#include "log.h"
#include "store.h"

#define PROMOTE_BATCH 500

struct tq_scheduler {
	struct tq_store *store;
	struct tq_dispatch *dispatch;
	int interval_ms;
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

/* One pass: promote everything due, then learn when the next job is due.
 * Returns the delay until the next pass. */
static int64_t pass(struct tq_scheduler *s)
{
	int64_t next = s->interval_ms, due;
	int n;

	do {
		n = tq_store_promote_due(s->store, PROMOTE_BATCH, on_ready, s);
	} while (n == PROMOTE_BATCH);
	if (n < 0)
		return next; /* the store logged the outage; retry next period */
	if (n > 0)
		tq_debug("scheduler made %d jobs pending", n);
	if (tq_store_next_due_ms(s->store, &due) == 0 && due < next)
		next = due;
	return next;
}

static void *run(void *arg)
{
	struct tq_scheduler *s = arg;
	struct timespec ts;

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

int tq_scheduler_start(struct tq_scheduler **out, struct tq_store *store,
		       struct tq_dispatch *dispatch, int interval_s)
{
	struct tq_scheduler *s = calloc(1, sizeof(*s));
	pthread_condattr_t attr;
	int r;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->store = store;
	s->dispatch = dispatch;
	s->interval_ms = interval_s * 1000;
	s->wake_at_ms = 0; /* a first pass at once */
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &attr);
	pthread_condattr_destroy(&attr);
	r = -pthread_create(&s->thread, NULL, run, s);
	if (r) {
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

void tq_scheduler_stop(struct tq_scheduler *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
