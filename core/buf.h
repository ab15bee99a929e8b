/*
 * buf.h - a growing byte buffer.
 *
 * An allocation failure sets failed and drops whatever is put after it,
 * so that a writer checks once, at the end.  The bytes are always
 * followed by a NUL, so that a buffer of text is a string.  Zero-
 * initialise one; tq_buf_free() it.
 */
#ifndef TQ_BUF_H
#define TQ_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct tq_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

void tq_buf_put(struct tq_buf *b, const void *data, size_t n);
void tq_buf_puts(struct tq_buf *b, const char *s);
void tq_buf_free(struct tq_buf *b);

#endif
