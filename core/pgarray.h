/*
 * pgarray.h - one-dimensional PostgreSQL arrays in the binary wire format.
 *
 * A statement parameter sent with format 1 (PQexecPrepared()'s
 * paramFormats) reaches array_recv(), which reads each element with its
 * type's binary receive function: no text to scan, quote or unescape, and
 * a jsonb element is parsed once, by jsonb_recv().  The layout is
 * PostgreSQL's (array_send()): ndim, has-nulls flag, element type OID,
 * then per dimension its length and lower bound, then each element as a
 * length (-1: NULL) and its bytes; every integer in network byte order.
 *
 * Usage: tq_pgarray_init(), one call per element, tq_pgarray_finish(),
 * then pass a.buf.p and a.buf.len; tq_pgarray_free() in any case.  An allocation
 * failure is remembered and reported once, by tq_pgarray_finish().
 */
#ifndef TQ_PGARRAY_H
#define TQ_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Element type OIDs (pg_type.dat; fixed since PostgreSQL 9.4). */
#define TQ_OID_BOOL 16
#define TQ_OID_INT8 20
#define TQ_OID_INT2 21
#define TQ_OID_INT4 23
#define TQ_OID_TEXT 25
#define TQ_OID_UUID 2950
#define TQ_OID_JSONB 3802

struct tq_pgarray {
	struct tq_buf buf; /* the array: buf.p, buf.len */
	uint32_t elem_oid;
	uint32_t n;
	bool has_null;
};

void tq_pgarray_init(struct tq_pgarray *a, uint32_t elem_oid);
void tq_pgarray_null(struct tq_pgarray *a);
void tq_pgarray_bool(struct tq_pgarray *a, bool v);
void tq_pgarray_int2(struct tq_pgarray *a, int16_t v);
void tq_pgarray_int4(struct tq_pgarray *a, int32_t v);
void tq_pgarray_int8(struct tq_pgarray *a, int64_t v);
/* text, as it is (the server checks its encoding) */
void tq_pgarray_text(struct tq_pgarray *a, const char *s);
/* JSON text, parsed by the server into jsonb */
void tq_pgarray_jsonb(struct tq_pgarray *a, const char *json);
/* A UUID in its 36-character text form; -EINVAL (nothing added) when it
 * is not one. */
int tq_pgarray_uuid(struct tq_pgarray *a, const char *text);
/* Write the header's counts: 0, or -ENOMEM when an element was lost. */
int tq_pgarray_finish(struct tq_pgarray *a);
void tq_pgarray_free(struct tq_pgarray *a);

#endif
