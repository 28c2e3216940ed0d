/* utf8.c -- cutting and cleaning UTF-8 text, so PostgreSQL and jansson accept it. */
#include "utf8.h"

#include <string.h>

static int is_continuation(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

void bf_utf8_trim(char *s)
{
	size_t n = strlen(s), i = n;

	while (i > 0 && is_continuation((unsigned char)s[i - 1]))
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;

	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

size_t bf_utf8_cut(const char *s, size_t n)
{
	if (!is_continuation((unsigned char)s[n]))
		return n;
	while (n > 0 && is_continuation((unsigned char)s[n - 1]))
		n--;
	if (n > 0 && (unsigned char)s[n - 1] >= 0xc0)
		n--;
	return n;
}

/* Length of the valid UTF-8 character at p (by jansson's rules: no
 * overlong forms, no surrogates, nothing above U+10FFFF), 0 when invalid. */
static size_t utf8_char_len(const unsigned char *p)
{
	static const unsigned int min[] = {0, 0, 0x80, 0x800, 0x10000};
	unsigned int cp;
	size_t n;

	if (*p < 0x80)
		return 1;
	if ((*p & 0xe0) == 0xc0) {
		n = 2;
		cp = *p & 0x1f;
	} else if ((*p & 0xf0) == 0xe0) {
		n = 3;
		cp = *p & 0x0f;
	} else if ((*p & 0xf8) == 0xf0) {
		n = 4;
		cp = *p & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if (!is_continuation(p[i]))
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void bf_utf8_one_line(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		size_t n = utf8_char_len(p);

		if (n == 0)
			*p = '?';
		else if (n == 1 && (*p < 0x20 || *p == 0x7f))
			*p = ' ';
		p += n ? n : 1;
	}
}
