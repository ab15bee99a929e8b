/*
 * ids.h - job ids: UUIDs of version 7 (RFC 9562).
 *
 * The first 48 bits are the Unix time in milliseconds, the next 12 (after
 * the version) its fraction, the last 62 (after the variant) random: ids
 * made later sort later, so that new rows land at the right edge of the
 * primary key instead of on random pages and jobs list in the order they
 * were accepted, and two ids made anywhere at any time do not collide.
 */
#ifndef TASKQ_IDS_H
#define TASKQ_IDS_H

#include <stdint.h>
#include <uuid/uuid.h>

/* A new id (16 bytes), made at unix_ms.  Thread-safe. */
void tq_id_make(uuid_t out, int64_t unix_ms);

/* A new id made now, as lower-case text (36 characters and a NUL).  Ids
 * made by one process sort in the order they were made (the 12 bits
 * after the version hold the sub-millisecond time, kept increasing). */
void tq_id_new(char out[37]);

#endif
