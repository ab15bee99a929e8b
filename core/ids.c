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
#include <string.h>
#include <time.h>
#include <sys/random.h>

#define RANDOM_BLOCK 1024 /* bytes read at once: 102 ids */
#define RANDOM_PER_ID 10  /* 74 random bits, rounded up */

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

void tq_id_make(uuid_t out, int64_t unix_ms)
{
	unsigned char r[RANDOM_PER_ID];
	uint64_t ms = (uint64_t)unix_ms;

	random_bytes(r, sizeof(r));
	for (int i = 0; i < 6; i++)
		out[i] = (unsigned char)(ms >> (40 - 8 * i));
	out[6] = (unsigned char)(0x70 | (r[0] & 0x0f)); /* version 7 */
	out[7] = r[1];
	out[8] = (unsigned char)(0x80 | (r[2] & 0x3f)); /* variant 10 */
	memcpy(out + 9, r + 3, 7);
}

void tq_id_new(char out[37])
{
	struct timespec ts;
	uuid_t u;

	clock_gettime(CLOCK_REALTIME, &ts);
	tq_id_make(u, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	uuid_unparse_lower(u, out);
}
