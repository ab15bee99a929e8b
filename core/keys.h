/*
 * keys.h - the Redis key layout, in one place.
 *
 * Redis holds nothing that PostgreSQL does not: every key can be rebuilt
 * from the jobs table, so changing this layout needs no migration of data,
 * only that every node of a deployment runs the same layout.  If you change
 * it, bump TQ_KEYS_VERSION so that mixed deployments use disjoint keys.
 *
 *   <prefix>:v<TQ_KEYS_VERSION>:ready:<queue>:<priority>
 *       a list of job ids (36-char text) ready to claim; LPUSH to add,
 *       BRPOP over priorities 9..0 to take: priority first, then FIFO.
 */
#ifndef TQ_KEYS_H
#define TQ_KEYS_H

#include <stddef.h>

#define TQ_KEYS_VERSION 1
#define TQ_KEY_PREFIX_DEFAULT "taskq"

/* "<prefix>:v1:ready:<queue>:<priority>" into buf; -ENAMETOOLONG if it
 * does not fit. */
int tq_key_ready(char *buf, size_t len, const char *prefix, const char *queue,
		 int priority);

#endif
