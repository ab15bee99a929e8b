/*
 * dispatch.h - hands committed job ids to Redis without making the caller
 * wait for Redis.
 *
 * API threads and the scheduler call tq_dispatch_push() after COMMIT; a
 * dispatcher thread drains the buffer and pushes the ids in one pipelined
 * round trip.  While Redis is down the ids wait here (bounded); past the
 * bound they are dropped with a warning: the job is committed, so the
 * reconciler re-dispatches it from PostgreSQL.
 */
#ifndef TQ_DISPATCH_H
#define TQ_DISPATCH_H

#include <stddef.h>

struct tq_dispatch;

int tq_dispatch_start(struct tq_dispatch **out, const char *redis_url,
		      const char *prefix, size_t max_buffered, char *err,
		      size_t errlen);
/* Stop the thread after one last flush attempt; frees d. */
void tq_dispatch_stop(struct tq_dispatch *d);

/* Thread-safe; never blocks on Redis. */
void tq_dispatch_push(struct tq_dispatch *d, const char *queue, int priority,
		      const char *id);

/* Block until everything pushed so far was sent (or dropped), at most
 * timeout_ms.  0 or -ETIMEDOUT.  For tests and shutdown. */
int tq_dispatch_flush(struct tq_dispatch *d, int timeout_ms);

#endif
