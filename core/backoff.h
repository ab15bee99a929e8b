/*
 * backoff.h - retry delay: exponential with full jitter.
 *
 * The delay before attempt n+1 after attempt n failed is uniform in
 * [0, min(cap, base * 2^(n-1))] milliseconds.  Pure function of its
 * inputs and the caller's random state; thread-safe.
 */
#ifndef TQ_BACKOFF_H
#define TQ_BACKOFF_H

#include <stdint.h>

/* Upper bound of the delay after the attempt-th failure (attempt >= 1). */
int64_t tq_backoff_ceiling_ms(int attempt, int base_ms, int cap_ms);
/* A delay in [0, tq_backoff_ceiling_ms()]; *rng is the caller's state
 * (any non-zero seed). */
int64_t tq_backoff_ms(int attempt, int base_ms, int cap_ms, uint64_t *rng);

#endif
