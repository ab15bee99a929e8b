/*
 * queue.h - one connection to Redis, the dispatcher.
 *
 * Redis carries job ids to workers; it holds nothing PostgreSQL does not
 * (see keys.h).  A struct tq_queue is one hiredis connection and is not
 * thread-safe: each thread that talks to Redis owns its own.  A broken
 * connection is re-established on the next call.
 *
 * Errors: 0; -EAGAIN when Redis is unreachable or the connection broke;
 * -EINTR when tq_queue_interrupt() woke a blocked pop; -EIO otherwise.
 */
#ifndef TQ_QUEUE_H
#define TQ_QUEUE_H

#include <stddef.h>

struct tq_queue;

/* url: redis://[:password@]host[:port][/db].  Connects lazily when the
 * server is down (first call returns -EAGAIN). */
int tq_queue_open(struct tq_queue **out, const char *url, const char *prefix,
		  char *err, size_t errlen);
void tq_queue_close(struct tq_queue *q);

/* Parse a redis:// URL.  0 or -EINVAL. */
int tq_queue_parse_url(const char *url, char *host, size_t hostlen, int *port,
		       int *db, char *password, size_t passlen);

struct tq_ready {
	const char *queue;
	int priority;
	const char *id;
};

/* LPUSH each id to its ready list, pipelined. */
int tq_queue_push(struct tq_queue *q, const struct tq_ready *items, size_t n);

/* Block until an id is ready in one of the queues (highest priority
 * first) or timeout_s passes (0 = no timeout): 0 with id filled,
 * -ETIMEDOUT, -EINTR, -EAGAIN. */
int tq_queue_pop(struct tq_queue *q, const char *const *queues, int timeout_s,
		 char id[37]);

/* Take up to max ids at once, highest priority first, FIFO within a
 * priority (from, when not NULL: the ready list of each, for
 * tq_queue_unpop()); block (as tq_queue_pop()) while none is ready.  With Redis
 * 7.0 (BLMPOP) the ids of one call come from the first non-empty priority
 * list; older servers get a script that takes from every list.  0 with
 * *n >= 1, or as tq_queue_pop(). */
int tq_queue_pop_many(struct tq_queue *q, const char *const *queues, size_t max,
		      int timeout_s, char (*ids)[37], unsigned short *from, size_t *n);

/* As tq_queue_pop_many() without waiting: 0 with *n = 0 when none is
 * ready. */
int tq_queue_take(struct tq_queue *q, const char *const *queues, size_t max,
		  char (*ids)[37], unsigned short *from, size_t *n);

/* Put n ids of the last pop back where they were, first to pop again
 * first.  from (filled by tq_queue_pop_many()) names the list of each;
 * ids of one list are given in the order they were popped. */
int tq_queue_unpop(struct tq_queue *q, char (*ids)[37], const unsigned short *from,
		   size_t n);

/* Wake a thread blocked in tq_queue_pop() on q (from another thread).
 * Afterwards q answers -EINTR until closed. */
void tq_queue_interrupt(struct tq_queue *q);

/* How many ids wait in the ready lists of queue (all priorities), in one
 * command.  0 or as above. */
int tq_queue_backlog(struct tq_queue *q, const char *queue, long long *n);

/* 0 when PING answers PONG. */
int tq_queue_ping(struct tq_queue *q);

#endif
