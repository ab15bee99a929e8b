/*
 * backoff.c - exponential backoff with full jitter (see backoff.h).
 */
#include "backoff.h"

int64_t tq_backoff_ceiling_ms(int attempt, int base_ms, int cap_ms)
{
	int64_t ceiling = base_ms > 0 ? base_ms : 0;

	if (cap_ms < 0)
		cap_ms = 0;
	for (int i = 1; i < attempt && ceiling < cap_ms; i++)
		ceiling *= 2;
	return ceiling < cap_ms ? ceiling : cap_ms;
}

/* xorshift64*: small, fast, good enough for jitter. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

int64_t tq_backoff_ms(int attempt, int base_ms, int cap_ms, uint64_t *rng)
{
	int64_t ceiling = tq_backoff_ceiling_ms(attempt, base_ms, cap_ms);

	if (ceiling <= 0)
		return 0;
	return (int64_t)(next_random(rng) % (uint64_t)(ceiling + 1));
}
