/*
 * ids.c - job ids: UUIDs of version 7 (see ids.h).
 *
 * libuuid formats them; it makes no version 7 before util-linux 2.41, and
 * its uuid_generate_random() re-seeds random(3) (a process-wide lock) on
 * every call, which showed in the profile of the submission path.  The
 * random bits come from getrandom(2), read a block at a time into a buffer
 * of each thread's own.
 */
#include "ids.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#define RANDOM_BLOCK 1024 /* bytes read at once: 128 ids */
#define RANDOM_PER_ID 8 /* 62 random bits, rounded up */

static _Thread_local unsigned char pool[RANDOM_BLOCK];
static _Thread_local size_t pool_left;

/* n random bytes; libuuid's generator if getrandom(2) cannot be used. */
static void random_bytes(unsigned char *out, size_t n)
{
	if (pool_left < n) {
		size_t got = 0;

		while (got < sizeof(pool)) {
			ssize_t r = getrandom(pool + got, sizeof(pool) - got, 0);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		for (; got < sizeof(pool); got += sizeof(uuid_t)) {
			uuid_t u;

			uuid_generate_random(u);
			memcpy(pool + got, u, sizeof(pool) - got < sizeof(u) ? sizeof(pool) - got
									     : sizeof(u));
		}
		pool_left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - pool_left, n);
	pool_left -= n;
}

/* ms in the first 48 bits, then the version, 12 bits of sub (rand_a),
 * the variant and 62 random bits. */
static void make(uuid_t out, uint64_t ms, unsigned sub)
{
	unsigned char r[RANDOM_PER_ID];

	random_bytes(r, sizeof(r));
	for (int i = 0; i < 6; i++)
		out[i] = (unsigned char)(ms >> (40 - 8 * i));
	out[6] = (unsigned char)(0x70 | ((sub >> 8) & 0x0f)); /* version 7 */
	out[7] = (unsigned char)(sub & 0xff);
	out[8] = (unsigned char)(0x80 | (r[0] & 0x3f)); /* variant 10 */
	memcpy(out + 9, r + 1, 7);
}

void tq_id_make(uuid_t out, int64_t unix_ms)
{
	unsigned char r[2];

	random_bytes(r, sizeof(r));
	make(out, (uint64_t)unix_ms, (unsigned)(r[0] << 8 | r[1]) & 0xfff);
}

/*
 * The last stamp handed out: Unix time in 1/4096 ms (RFC 9562, 6.2,
 * method 3: the sub-millisecond fraction in rand_a).  Each id takes a
 * stamp later than every one before it in this process, so that ids sort
 * in the order they were made, even within a millisecond.  Past 4,096 ids
 * in one millisecond, or when the clock steps back, the stamps run ahead
 * of the clock until it catches up.
 */
static _Atomic uint64_t last_stamp;

static uint64_t next_stamp(void)
{
	struct timespec ts;
	uint64_t now, prev, next;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) << 12 |
	      (uint64_t)(ts.tv_nsec % 1000000) * 4096 / 1000000;
	prev = atomic_load(&last_stamp);
	do
		next = now > prev ? now : prev + 1;
	while (!atomic_compare_exchange_weak(&last_stamp, &prev, next));
	return next;
}

void tq_id_new(char out[37])
{
	uint64_t stamp = next_stamp();
	uuid_t u;

	make(u, stamp >> 12, (unsigned)(stamp & 0xfff));
	uuid_unparse_lower(u, out);
}
