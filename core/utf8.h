/*
 * utf8.h - UTF-8 checks for text that reaches PostgreSQL or JSON.
 *
 * PostgreSQL refuses invalid UTF-8 and JSON must not carry it, yet much
 * of what the daemon stores is arbitrary bytes from plugins (errors,
 * progress) or clients.  One definition of "valid" (RFC 3629: no
 * overlongs, no surrogates, nothing past U+10FFFF) for the whole daemon.
 */
#ifndef TQ_UTF8_H
#define TQ_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1-4) of the valid sequence at p, which has avail bytes; 0 when
 * the bytes there are not valid UTF-8. */
size_t tq_utf8_seq_len(const unsigned char *p, size_t avail);

/* Whether len bytes at s are valid UTF-8. */
bool tq_utf8_valid(const char *s, size_t len);

/* Copy in to out (outlen > 0): invalid bytes become '?', and the copy is
 * cut at a character boundary to fit.  Returns the length written. */
size_t tq_utf8_clean_copy(const char *in, char *out, size_t outlen);

/* In place: invalid bytes become '?'. */
void tq_utf8_sanitize(char *s);

/* In place: drop a sequence cut short at the end (after a truncating
 * snprintf()). */
void tq_utf8_trim_partial(char *s);

#endif
