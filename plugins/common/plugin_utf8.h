/*
 * plugin_utf8.h - shared by the bundled plugins that put bytes from the
 * outside (a response body, a command's output) into their JSON result.
 *
 * Header-only on purpose: a plugin links against nothing of the daemon,
 * so the bundled ones share this code by including it, as an outside
 * plugin would bring its own.
 */
#ifndef TASKQ_PLUGIN_UTF8_H
#define TASKQ_PLUGIN_UTF8_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A NUL-terminated copy of len bytes at s in which every byte that is
 * not part of valid UTF-8 (and every NUL) is replaced by U+FFFD.  NULL
 * when out of memory.  The caller frees it.
 */
static inline char *plugin_utf8_dup(const char *s, size_t len)
{
	static const char repl[] = "\xEF\xBF\xBD";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, need, k;
	char *out;

	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	out = malloc(len * 3 + 1);
	if (!out)
		return NULL;
	while (i < len) {
		unsigned char c = p[i];
		unsigned int cp;

		if (c && c < 0x80) {
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			cp = c & 0x07;
		} else {
			goto bad;
		}
		if (i + need >= len)
			goto bad;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				goto bad;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			goto bad;
		memcpy(out + o, p + i, need + 1);
		o += need + 1;
		i += need + 1;
		continue;
bad:
		memcpy(out + o, repl, 3);
		o += 3;
		i++;
	}
	out[o] = '\0';
	return out;
}

#endif
