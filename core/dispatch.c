/*
 * dispatch.c - a thread that pushes committed job ids to Redis in
 * pipelined batches, so that API threads never wait for Redis (see
 * dispatch.h).
 */
#include "dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "queue.h"
#include "request.h"

#define BATCH_MAX 512
#define RETRY_WAIT_MS 200
/* entries consumed before the rest moves back to the front of the buffer;
 * also the size the buffer shrinks back to once it drains */
#define COMPACT_AT 4096

struct entry {
	char id[37];
	char queue[TQ_QUEUE_NAME_MAX + 1];
	int priority;
};

struct tq_dispatch {
	struct tq_queue *q;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;   /* work arrived or stopping */
	pthread_cond_t idle;   /* the buffer drained */
	/* FIFO: [head, head + count) in alloc entries, moved back to the
	 * front as it is consumed; the buffer grows with a backlog up to cap
	 * (7 MiB at 65,536 ids) and shrinks back once it drains, so that
	 * taskqd's memory follows the backlog, not the ids ever pushed */
	struct entry *buf;
	size_t head, count, alloc, cap;
	size_t max_buffered;
	size_t in_flight;      /* taken by the thread, not yet sent */
	unsigned long long dropped;
	bool stopping;
};

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Move the entries to start at index to; lock held. */
static void move_to(struct tq_dispatch *d, size_t to)
{
	memmove(d->buf + to, d->buf + d->head, d->count * sizeof(*d->buf));
	d->head = to;
}

/* Room for at least want entries (up to cap); false when there is none.
 * The entries keep their indexes.  Lock held. */
static bool reserve(struct tq_dispatch *d, size_t want)
{
	size_t n = d->alloc;
	struct entry *p;

	if (want <= d->alloc)
		return true;
	if (want > d->cap)
		return false;
	while (n < want)
		n = n * 2 < d->cap ? n * 2 : d->cap;
	p = realloc(d->buf, n * sizeof(*p));
	if (!p)
		return false;
	d->buf = p;
	d->alloc = n;
	return true;
}

/* Drained: give a buffer a backlog made large back; lock held. */
static void shrink(struct tq_dispatch *d)
{
	struct entry *p;

	if (d->count || d->alloc <= COMPACT_AT)
		return;
	p = realloc(d->buf, COMPACT_AT * sizeof(*p));
	if (p) {
		d->buf = p;
		d->alloc = COMPACT_AT;
	}
}

/* Take up to BATCH_MAX entries off the front; lock held. */
static size_t take(struct tq_dispatch *d, struct entry *out)
{
	size_t n = d->count < BATCH_MAX ? d->count : BATCH_MAX;

	memcpy(out, d->buf + d->head, n * sizeof(*out));
	d->head += n;
	d->count -= n;
	/* at most as many entries move as were consumed since the last
	 * move: the cost per entry stays constant */
	if (d->count == 0) {
		d->head = 0;
		shrink(d);
	} else if (d->head >= COMPACT_AT && d->head >= d->count) {
		move_to(d, 0);
	}
	d->in_flight = n;
	return n;
}

/* Put entries that could not be sent back at the front; lock held. */
static void put_back(struct tq_dispatch *d, const struct entry *e, size_t n)
{
	size_t room = d->cap - d->count;

	if (n > room) {
		d->dropped += n - room;
		n = room;
	}
	while (n && !reserve(d, d->count + n)) {
		d->dropped++; /* no memory: the reconciler finds them */
		n--;
	}
	if (d->head < n)
		move_to(d, n);
	d->head -= n;
	memcpy(d->buf + d->head, e, n * sizeof(*e));
	d->count += n;
}

static void *run(void *arg)
{
	struct tq_dispatch *d = arg;
	struct entry *batch = calloc(BATCH_MAX, sizeof(*batch));
	struct tq_ready items[BATCH_MAX];
	struct timespec ts;
	bool last_failed = false;

	pthread_setname_np(pthread_self(), "tq-dispatch");
	if (!batch) {
		tq_error("dispatcher: out of memory");
		return NULL;
	}
	pthread_mutex_lock(&d->lock);
	for (;;) {
		size_t n;
		int r;

		while (d->count == 0 && !d->stopping)
			pthread_cond_wait(&d->wake, &d->lock);
		if (d->count == 0 && d->stopping)
			break;
		if (last_failed) {
			/* Redis is down: wait a little, unless stopping. */
			deadline_after(&ts, RETRY_WAIT_MS);
			pthread_cond_timedwait(&d->wake, &d->lock, &ts);
		}
		n = take(d, batch);
		pthread_mutex_unlock(&d->lock);

		for (size_t i = 0; i < n; i++) {
			items[i].queue = batch[i].queue;
			items[i].priority = batch[i].priority;
			items[i].id = batch[i].id;
		}
		r = tq_queue_push(d->q, items, n);

		pthread_mutex_lock(&d->lock);
		d->in_flight = 0;
		last_failed = r == -EAGAIN;
		if (last_failed && !d->stopping)
			put_back(d, batch, n);
		else if (r)
			d->dropped += n; /* the reconciler re-dispatches them */
		if (d->count == 0 || d->stopping)
			pthread_cond_broadcast(&d->idle);
		if (d->stopping && last_failed)
			break;
	}
	if (d->count)
		d->dropped += d->count;
	d->count = 0;
	pthread_cond_broadcast(&d->idle);
	pthread_mutex_unlock(&d->lock);
	free(batch);
	return NULL;
}

int tq_dispatch_start(struct tq_dispatch **out, const char *redis_url,
		      const char *prefix, size_t max_buffered, char *err,
		      size_t errlen)
{
	struct tq_dispatch *d = calloc(1, sizeof(*d));
	int r;

	*out = NULL;
	if (!d)
		return -ENOMEM;
	d->cap = max_buffered ? max_buffered : 1;
	d->max_buffered = d->cap;
	d->alloc = d->cap < COMPACT_AT ? d->cap : COMPACT_AT;
	d->buf = calloc(d->alloc, sizeof(*d->buf));
	if (!d->buf) {
		r = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	r = tq_queue_open(&d->q, redis_url, prefix, err, errlen);
	if (r)
		goto fail;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->wake, NULL);
	pthread_cond_init(&d->idle, NULL);
	r = -pthread_create(&d->thread, NULL, run, d);
	if (r) {
		snprintf(err, errlen, "cannot start the dispatcher thread: %s", strerror(-r));
		tq_queue_close(d->q);
		goto fail;
	}
	*out = d;
	return 0;
fail:
	free(d->buf);
	free(d);
	return r;
}

void tq_dispatch_push(struct tq_dispatch *d, const char *queue, int priority,
		      const char *id)
{
	struct entry *e;

	pthread_mutex_lock(&d->lock);
	if (d->count == d->cap) {
		/* Committed already: the reconciler will find it. */
		if (d->dropped++ % 1000 == 0)
			tq_warn("dispatch buffer full (%zu ids); ids left to the reconciler",
				d->cap);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (d->head + d->count == d->alloc) {
		if (d->head > 0)
			move_to(d, 0);
		else if (!reserve(d, d->count + 1)) {
			d->dropped++;
			tq_warn("dispatch buffer cannot grow (out of memory); id left to the reconciler");
			pthread_mutex_unlock(&d->lock);
			return;
		}
	}
	e = &d->buf[d->head + d->count];
	snprintf(e->id, sizeof(e->id), "%s", id);
	snprintf(e->queue, sizeof(e->queue), "%s", queue);
	e->priority = priority;
	/* The dispatcher waits only while nothing is queued (or, after a
	 * failed push, for its retry time): the first id wakes it, and it
	 * takes the others before it waits again. */
	if (d->count++ == 0)
		pthread_cond_signal(&d->wake);
	pthread_mutex_unlock(&d->lock);
}

int tq_dispatch_flush(struct tq_dispatch *d, int timeout_ms)
{
	struct timespec ts;
	int r = 0;

	deadline_after(&ts, timeout_ms);
	pthread_mutex_lock(&d->lock);
	while ((d->count || d->in_flight) && r == 0)
		r = pthread_cond_timedwait(&d->idle, &d->lock, &ts);
	r = d->count || d->in_flight ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&d->lock);
	return r;
}

void tq_dispatch_stop(struct tq_dispatch *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	if (d->dropped)
		tq_info("dispatcher stopped; %llu ids left to the reconciler", d->dropped);
	tq_queue_close(d->q);
	pthread_cond_destroy(&d->wake);
	pthread_cond_destroy(&d->idle);
	pthread_mutex_destroy(&d->lock);
	free(d->buf);
	free(d);
}
