/*
 * pgarray.c - one-dimensional PostgreSQL arrays in the binary wire format
 * (see pgarray.h).
 */
#include "pgarray.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

/* ndim, flags, element type, length of the one dimension, lower bound */
#define HEADER_LEN 20
#define JSONB_VERSION 1

static void put(struct tq_pgarray *a, const void *v, size_t n)
{
	tq_buf_put(&a->buf, v, n);
}

static void put_u32(struct tq_pgarray *a, uint32_t v)
{
	uint32_t be = htonl(v);

	put(a, &be, sizeof(be));
}

/* An element of n bytes: its length, then what the caller puts. */
static void element(struct tq_pgarray *a, size_t n)
{
	put_u32(a, (uint32_t)n);
	a->n++;
}

void tq_pgarray_init(struct tq_pgarray *a, uint32_t elem_oid)
{
	static const char zero[HEADER_LEN];

	memset(a, 0, sizeof(*a));
	a->elem_oid = elem_oid;
	put(a, zero, sizeof(zero)); /* filled in by tq_pgarray_finish() */
}

void tq_pgarray_null(struct tq_pgarray *a)
{
	put_u32(a, UINT32_MAX); /* length -1 */
	a->n++;
	a->has_null = true;
}

void tq_pgarray_bool(struct tq_pgarray *a, bool v)
{
	char b = v ? 1 : 0;

	element(a, 1);
	put(a, &b, 1);
}

void tq_pgarray_int2(struct tq_pgarray *a, int16_t v)
{
	uint16_t be = htons((uint16_t)v);

	element(a, sizeof(be));
	put(a, &be, sizeof(be));
}

void tq_pgarray_int4(struct tq_pgarray *a, int32_t v)
{
	element(a, 4);
	put_u32(a, (uint32_t)v);
}

void tq_pgarray_int8(struct tq_pgarray *a, int64_t v)
{
	element(a, 8);
	put_u32(a, (uint32_t)((uint64_t)v >> 32));
	put_u32(a, (uint32_t)v);
}

void tq_pgarray_text(struct tq_pgarray *a, const char *s)
{
	size_t n = strlen(s);

	element(a, n);
	put(a, s, n);
}

void tq_pgarray_jsonb(struct tq_pgarray *a, const char *json)
{
	static const char version = JSONB_VERSION;
	size_t n = strlen(json);

	element(a, n + 1);
	put(a, &version, 1);
	put(a, json, n);
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tq_pgarray_uuid(struct tq_pgarray *a, const char *text)
{
	unsigned char b[16];
	size_t k = 0;

	for (size_t i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				return -EINVAL;
			continue;
		}
		hi = hex(text[i]);
		lo = hi < 0 ? -1 : hex(text[i + 1]);
		if (lo < 0)
			return -EINVAL;
		b[k++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	if (text[36] != '\0')
		return -EINVAL;
	element(a, sizeof(b));
	put(a, b, sizeof(b));
	return 0;
}

int tq_pgarray_finish(struct tq_pgarray *a)
{
	uint32_t h[5];

	if (a->buf.failed)
		return -ENOMEM;
	h[0] = htonl(1);
	h[1] = htonl(a->has_null ? 1 : 0);
	h[2] = htonl(a->elem_oid);
	h[3] = htonl(a->n);
	h[4] = htonl(1);
	if (a->n == 0) {
		/* an empty array has no dimension */
		h[0] = 0;
		a->buf.len = 12;
	}
	memcpy(a->buf.p, h, a->n ? sizeof(h) : 12);
	return 0;
}

void tq_pgarray_free(struct tq_pgarray *a)
{
	tq_buf_free(&a->buf);
	memset(a, 0, sizeof(*a));
}
