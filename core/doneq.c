/*
 * doneq.c - the completions waiting for their outcome to be written (see
 * doneq.h).
 */
#include "doneq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 64

void tq_doneq_init(struct tq_doneq *q, size_t keep)
{
	*q = (struct tq_doneq){.keep = keep > 0 ? keep : 1};
}

/* Room for at least need items.  0 or -ENOMEM. */
static int reserve(struct tq_doneq *q, size_t need)
{
	size_t cap = q->cap ? q->cap : FIRST_CAP;
	struct tq_done_item *grown;

	if (need <= q->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	grown = realloc(q->v, cap * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	q->v = grown;
	q->cap = cap;
	return 0;
}

/* Halve the capacity while three quarters of it are empty, down to keep.
 * Growth doubles at full, so a queue that shrank is at most half full and
 * does not grow again at once. */
static void shrink(struct tq_doneq *q)
{
	size_t cap = q->cap;
	struct tq_done_item *less;

	while (cap / 2 >= q->keep && q->len <= cap / 4)
		cap /= 2;
	if (cap == q->cap)
		return;
	less = realloc(q->v, cap * sizeof(*less));
	if (!less)
		return; /* it stays as large as it was */
	q->v = less;
	q->cap = cap;
}

int tq_doneq_push(struct tq_doneq *q, const struct tq_done_item *item)
{
	if (reserve(q, q->len + 1))
		return -ENOMEM;
	q->v[q->len++] = *item;
	return 0;
}

int tq_doneq_unshift(struct tq_doneq *q, const struct tq_done_item *items, size_t n)
{
	if (n == 0)
		return 0;
	if (reserve(q, q->len + n))
		return -ENOMEM;
	memmove(q->v + n, q->v, q->len * sizeof(*q->v));
	memcpy(q->v, items, n * sizeof(*q->v));
	q->len += n;
	return 0;
}

size_t tq_doneq_take(struct tq_doneq *q, struct tq_done_item *out, size_t max)
{
	size_t n = q->len < max ? q->len : max;

	if (n == 0)
		return 0;
	memcpy(out, q->v, n * sizeof(*out));
	memmove(q->v, q->v + n, (q->len - n) * sizeof(*q->v));
	q->len -= n;
	shrink(q);
	return n;
}

void tq_doneq_free(struct tq_doneq *q)
{
	free(q->v);
	q->v = NULL;
	q->len = 0;
	q->cap = 0;
}
