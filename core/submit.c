/*
 * submit.c - group commit of concurrent submissions (see submit.h).
 */
#include "submit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "worker.h"

/* Most completions one transaction takes along. */
#define RIDE_MAX 256

struct tq_submit {
	struct tq_store *store;
	struct tq_workers *workers; /* claims at submission; or NULL */
	int lease_s;
	int max_batch;
	pthread_mutex_t lock;
	pthread_cond_t work;  /* submissions arrived, or stopping */
	struct tq_submission *head, *tail;
	bool stopping;
	int n_threads;
	pthread_t *threads;
};

/* Take up to max_batch submissions off the queue; lock held. */
static size_t take(struct tq_submit *sub, struct tq_submission **batch)
{
	size_t n = 0;

	while (sub->head && n < (size_t)sub->max_batch) {
		batch[n++] = sub->head;
		sub->head = sub->head->next;
	}
	if (!sub->head)
		sub->tail = NULL;
	return n;
}

/* Buffers of one insert, for max_batch jobs. */
struct scratch {
	struct tq_job_spec *specs;
	struct tq_inserted *res;
	bool *claim;
	struct tq_claim *claims;
	struct tq_done done[RIDE_MAX]; /* completions riding along */
	bool written[RIDE_MAX];
};

static int scratch_init(struct scratch **out, size_t n)
{
	struct scratch *b = calloc(1, sizeof(*b));

	*out = b;
	if (!b)
		return -ENOMEM;
	b->specs = calloc(n, sizeof(*b->specs));
	b->res = calloc(n, sizeof(*b->res));
	b->claim = calloc(n, sizeof(*b->claim));
	b->claims = calloc(n, sizeof(*b->claims));
	return b->specs && b->res && b->claim && b->claims ? 0 : -ENOMEM;
}

static void scratch_free(struct scratch *b)
{
	if (!b)
		return;
	free(b->specs);
	free(b->res);
	free(b->claim);
	free(b->claims);
	free(b);
}

/* One transaction: the inserts, and the completions waiting on this
 * node's workers when ride (tq_workers_ride()).  A transaction that
 * fails with them is tried again without them, so that an outcome can
 * never cost a submission; they go back to the completers. */
static int write_ride(struct tq_submit *sub, struct tq_write *w, struct scratch *b, bool ride)
{
	struct tq_ride *r = NULL;
	int rc;

	if (ride && sub->workers)
		w->ndone = tq_workers_ride(sub->workers, b->done, RIDE_MAX, &r);
	w->done = b->done;
	w->written = b->written;
	rc = tq_store_write(sub->store, w);
	tq_workers_rode(sub->workers, r, rc, b->written);
	if (rc && r && rc != -EAGAIN) {
		w->ndone = 0;
		rc = tq_store_write(sub->store, w);
	}
	return rc;
}

/*
 * Insert n specs in one transaction.  The jobs due now on a queue this
 * node takes are inserted claimed, as many as its workers have free slots
 * for, and handed to them after COMMIT: no Redis round trip and no claim
 * statement.  The others are left to the caller to dispatch.
 */
static int insert(struct tq_submit *sub, const struct tq_job_spec *specs, size_t n,
		  struct tq_inserted *out, struct scratch *b, bool ride)
{
	bool *claim = b->claim;
	struct tq_claim *claims = b->claims;
	struct tq_write w;
	size_t want = 0, got = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		claim[i] = sub->workers && !specs[i].has_delay && !specs[i].has_run_at &&
			   tq_workers_take_queue(sub->workers, specs[i].queue);
		want += claim[i];
	}
	if (want)
		got = tq_workers_reserve(sub->workers, want);
	for (size_t i = 0, left = got; i < n; i++) {
		if (claim[i] && !left)
			claim[i] = false;
		else if (claim[i])
			left--;
	}
	w = (struct tq_write){.specs = specs, .n = n, .claim = claim, .lease_s = sub->lease_s,
			      .out = out, .claims = claims};
	rc = write_ride(sub, &w, b, ride);
	if (rc == 0 && w.nclaimed)
		tq_workers_hand(sub->workers, claims, w.nclaimed);
	if (got > w.nclaimed)
		tq_workers_unreserve(sub->workers, got - w.nclaimed);
	return rc;
}

static void commit_batch(struct tq_submit *sub, struct tq_submission **batch, size_t n,
			 struct scratch *b)
{
	struct tq_inserted *res = b->res;
	int rc;

	for (size_t i = 0; i < n; i++)
		b->specs[i] = *batch[i]->spec;
	rc = insert(sub, b->specs, n, res, b, true);
	if (rc == 0) {
		for (size_t i = 0; i < n; i++) {
			*batch[i]->out = res[i];
			batch[i]->rc = 0;
		}
		return;
	}
	if (n > 1 && rc != -EAGAIN && rc != -ENOMEM) {
		/* one row spoiled the batch: find it, keep the others */
		for (size_t i = 0; i < n; i++)
			batch[i]->rc = insert(sub, batch[i]->spec, 1, batch[i]->out, b, false);
		return;
	}
	for (size_t i = 0; i < n; i++)
		batch[i]->rc = rc;
}

/* Move the keyed submissions to the end of the batch: the number of
 * keyless ones, which stay in their order unless keyed ones were among
 * them. */
static size_t keyless_first(struct tq_submission **batch, size_t n)
{
	size_t m = n;

	for (size_t i = 0; i < m;) {
		if (batch[i]->spec->idempotency_key) {
			struct tq_submission *t = batch[i];

			batch[i] = batch[--m];
			batch[m] = t;
		} else {
			i++;
		}
	}
	return m;
}

static void *committer(void *arg)
{
	struct tq_submit *sub = arg;
	struct tq_submission **batch = calloc((size_t)sub->max_batch, sizeof(*batch));
	struct scratch *b;
	bool ready = scratch_init(&b, (size_t)sub->max_batch) == 0 && batch;

	pthread_setname_np(pthread_self(), "tq-commit");
	pthread_mutex_lock(&sub->lock);
	for (;;) {
		size_t n;

		if (!sub->head && sub->workers) {
			/* idle: the completers write the outcomes again */
			pthread_mutex_unlock(&sub->lock);
			tq_workers_riding(sub->workers, false);
			pthread_mutex_lock(&sub->lock);
		}
		while (!sub->head && !sub->stopping)
			pthread_cond_wait(&sub->work, &sub->lock);
		if (!sub->head)
			break;
		n = take(sub, batch);
		pthread_mutex_unlock(&sub->lock);
		if (sub->workers)
			tq_workers_riding(sub->workers, true);

		if (!ready) {
			for (size_t i = 0; i < n; i++)
				batch[i]->rc = -ENOMEM;
		} else {
			size_t m = keyless_first(batch, n);

			if (m)
				commit_batch(sub, batch, m, b);
			/* each keyed one in a transaction of its own: a key
			 * is looked up against what is committed, which the
			 * rows of this group commit are not yet */
			for (size_t i = m; i < n; i++)
				batch[i]->rc = tq_store_insert_one(sub->store, batch[i]->spec,
								   batch[i]->out,
								   &batch[i]->job_json);
		}

		/* s is its owner's again once done is called */
		for (size_t i = 0; i < n; i++)
			batch[i]->done(batch[i], batch[i]->rc);
		pthread_mutex_lock(&sub->lock);
	}
	pthread_mutex_unlock(&sub->lock);
	free(batch);
	scratch_free(b);
	return NULL;
}

int tq_submit_start(struct tq_submit **out, struct tq_store *store,
		    struct tq_workers *workers, int lease_s, int committers, int max_batch)
{
	struct tq_submit *sub = calloc(1, sizeof(*sub));
	int r = 0;

	*out = NULL;
	if (!sub)
		return -ENOMEM;
	sub->store = store;
	sub->workers = workers;
	sub->lease_s = lease_s;
	sub->max_batch = max_batch > 0 ? max_batch : 1;
	sub->threads = calloc((size_t)(committers > 0 ? committers : 1), sizeof(*sub->threads));
	if (!sub->threads) {
		free(sub);
		return -ENOMEM;
	}
	pthread_mutex_init(&sub->lock, NULL);
	pthread_cond_init(&sub->work, NULL);
	for (int i = 0; i < (committers > 0 ? committers : 1); i++) {
		r = -pthread_create(&sub->threads[i], NULL, committer, sub);
		if (r)
			break;
		sub->n_threads++;
	}
	if (r && sub->n_threads == 0) {
		tq_submit_stop(sub);
		return r;
	}
	*out = sub;
	return 0;
}

void tq_submit_stop(struct tq_submit *sub)
{
	if (!sub)
		return;
	pthread_mutex_lock(&sub->lock);
	sub->stopping = true;
	pthread_cond_broadcast(&sub->work);
	pthread_mutex_unlock(&sub->lock);
	for (int i = 0; i < sub->n_threads; i++)
		pthread_join(sub->threads[i], NULL);
	pthread_cond_destroy(&sub->work);
	pthread_mutex_destroy(&sub->lock);
	free(sub->threads);
	free(sub);
}

int tq_submit_async(struct tq_submit *sub, struct tq_submission *s)
{
	s->rc = 0;
	s->job_json = NULL;
	s->next = NULL;
	pthread_mutex_lock(&sub->lock);
	if (sub->stopping) {
		pthread_mutex_unlock(&sub->lock);
		return -ESHUTDOWN;
	}
	if (sub->tail)
		sub->tail->next = s;
	else
		sub->head = s;
	sub->tail = s;
	pthread_cond_signal(&sub->work);
	pthread_mutex_unlock(&sub->lock);
	return 0;
}

int tq_submit_many(struct tq_submit *sub, const struct tq_job_spec *specs, size_t n,
		   struct tq_inserted *out)
{
	struct scratch *b;
	int rc = scratch_init(&b, n);

	if (rc == 0)
		rc = insert(sub, specs, n, out, b, true);
	scratch_free(b);
	return rc;
}
