/*
 * utf8.c - UTF-8 checks (see utf8.h).
 */
#include "utf8.h"

#include <string.h>

size_t tq_utf8_seq_len(const unsigned char *p, size_t avail)
{
	size_t n, k;

	if (avail == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (avail < n)
		return 0;
	for (k = 1; k < n; k++)
		if ((p[k] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) ||  /* overlong */
	    (p[0] == 0xed && p[1] > 0x9f) ||  /* surrogate */
	    (p[0] == 0xf0 && p[1] < 0x90) ||  /* overlong */
	    (p[0] == 0xf4 && p[1] > 0x8f))    /* past U+10FFFF */
		return 0;
	return n;
}

bool tq_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t n = tq_utf8_seq_len(p + i, len - i);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

size_t tq_utf8_clean_copy(const char *in, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)(in ? in : "");
	size_t len = strlen((const char *)p), i = 0, o = 0;

	while (i < len) {
		size_t n = tq_utf8_seq_len(p + i, len - i);

		if (o + (n ? n : 1) >= outlen)
			break;
		if (n == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, p + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
	return o;
}

void tq_utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t len = strlen(s);

	while (*p) {
		size_t n = tq_utf8_seq_len(p, len - (size_t)(p - (unsigned char *)s));

		if (n == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}

void tq_utf8_trim_partial(char *s)
{
	size_t len = strlen(s), i = len;

	/* back to the last lead byte, at most 3 continuation bytes away */
	while (i > 0 && len - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
		return;
	/* a lead byte whose sequence does not fit what is left: cut it */
	if (tq_utf8_seq_len((const unsigned char *)s + i - 1, len - i + 1) == 0)
		s[i - 1] = '\0';
}
