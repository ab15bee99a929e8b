/*
 * buf.c - a growing byte buffer (see buf.h).
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void tq_buf_put(struct tq_buf *b, const void *data, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void tq_buf_puts(struct tq_buf *b, const char *s)
{
	tq_buf_put(b, s, strlen(s));
}

void tq_buf_free(struct tq_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
