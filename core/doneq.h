/*
 * doneq.h - the completions waiting for their outcome to be written.
 *
 * A FIFO of completed attempts, in one array that grows as the writers of
 * outcomes fall behind and shrinks again as they catch up, so that the
 * memory it holds follows the lag, not the longest lag there ever was.
 * It does no locking: its owner's lock guards it.  The strings of an item
 * belong to whoever holds the item; tq_doneq_free() frees only the array.
 */
#ifndef TQ_DONEQ_H
#define TQ_DONEQ_H

#include <stddef.h>
#include <stdint.h>

/* A completed attempt. */
struct tq_done_item {
	char id[37];
	char *type;
	char *result;
	int attempt;
	int64_t token;
	long long duration_ms;
	int64_t give_up_ms; /* stop retrying the write after this (lease) */
};

struct tq_doneq {
	struct tq_done_item *v;
	size_t len, cap;
	size_t keep; /* the capacity it never shrinks below */
};

/* An empty queue that keeps room for keep items once it has grown. */
void tq_doneq_init(struct tq_doneq *q, size_t keep);

/* Append one item (copied).  0 or -ENOMEM, which leaves q as it was. */
int tq_doneq_push(struct tq_doneq *q, const struct tq_done_item *item);

/* Put n items (copied) back at the head, in their order, ahead of the
 * rest: what a failed write took.  0 or -ENOMEM, which leaves q as it
 * was. */
int tq_doneq_unshift(struct tq_doneq *q, const struct tq_done_item *items, size_t n);

/* Move up to max items from the head to out; how many. */
size_t tq_doneq_take(struct tq_doneq *q, struct tq_done_item *out, size_t max);

/* Free the array (not the items' strings); q is empty afterwards. */
void tq_doneq_free(struct tq_doneq *q);

#endif
