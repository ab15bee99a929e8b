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

/* One waiting submission, on its caller's stack. */
struct pending {
	const struct tq_job_spec *spec;
	struct tq_inserted *out;
	int rc;
	bool done;
	pthread_cond_t cv; /* signalled once done is set */
	struct pending *next;
};

struct tq_submit {
	struct tq_store *store;
	int max_batch;
	pthread_mutex_t lock;
	pthread_cond_t work;  /* submissions arrived, or stopping */
	struct pending *head, *tail;
	bool stopping;
	int n_threads;
	pthread_t *threads;
};

/* Take up to max_batch submissions off the queue; lock held. */
static size_t take(struct tq_submit *sub, struct pending **batch)
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

static void commit_batch(struct tq_submit *sub, struct pending **batch, size_t n,
			 struct tq_job_spec *specs, struct tq_inserted *res)
{
	int rc;

	for (size_t i = 0; i < n; i++)
		specs[i] = *batch[i]->spec;
	rc = tq_store_insert_many(sub->store, specs, n, res);
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
			batch[i]->rc = tq_store_insert_many(sub->store, batch[i]->spec, 1,
							    batch[i]->out);
		return;
	}
	for (size_t i = 0; i < n; i++)
		batch[i]->rc = rc;
}

static void *committer(void *arg)
{
	struct tq_submit *sub = arg;
	struct pending **batch = calloc((size_t)sub->max_batch, sizeof(*batch));
	struct tq_job_spec *specs = calloc((size_t)sub->max_batch, sizeof(*specs));
	struct tq_inserted *res = calloc((size_t)sub->max_batch, sizeof(*res));

	pthread_mutex_lock(&sub->lock);
	for (;;) {
		size_t n;

		while (!sub->head && !sub->stopping)
			pthread_cond_wait(&sub->work, &sub->lock);
		if (!sub->head)
			break;
		n = take(sub, batch);
		pthread_mutex_unlock(&sub->lock);

		if (!batch || !specs || !res) {
			for (size_t i = 0; i < n; i++)
				batch[i]->rc = -ENOMEM;
		} else {
			commit_batch(sub, batch, n, specs, res);
		}

		pthread_mutex_lock(&sub->lock);
		/* wake exactly the submitters of this batch */
		for (size_t i = 0; i < n; i++) {
			batch[i]->done = true;
			pthread_cond_signal(&batch[i]->cv);
		}
	}
	pthread_mutex_unlock(&sub->lock);
	free(batch);
	free(specs);
	free(res);
	return NULL;
}

int tq_submit_start(struct tq_submit **out, struct tq_store *store, int committers,
		    int max_batch)
{
	struct tq_submit *sub = calloc(1, sizeof(*sub));
	int r = 0;

	*out = NULL;
	if (!sub)
		return -ENOMEM;
	sub->store = store;
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

int tq_submit_one(struct tq_submit *sub, const struct tq_job_spec *spec,
		  struct tq_inserted *out)
{
	struct pending p = {.spec = spec, .out = out, .rc = 0, .done = false};

	pthread_cond_init(&p.cv, NULL);
	pthread_mutex_lock(&sub->lock);
	if (sub->stopping) {
		pthread_mutex_unlock(&sub->lock);
		pthread_cond_destroy(&p.cv);
		return -ESHUTDOWN;
	}
	if (sub->tail)
		sub->tail->next = &p;
	else
		sub->head = &p;
	sub->tail = &p;
	pthread_cond_signal(&sub->work);
	while (!p.done)
		pthread_cond_wait(&p.cv, &sub->lock);
	pthread_mutex_unlock(&sub->lock);
	pthread_cond_destroy(&p.cv);
	return p.rc;
}
