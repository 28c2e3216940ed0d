/* strbuf.c -- a growable string. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bf_strbuf_init(bf_strbuf *sb)
{
	sb->data = NULL;
	sb->len = sb->cap = 0;
	sb->oom = 0;
}

static int strbuf_reserve(bf_strbuf *sb, size_t extra)
{
	if (sb->oom)
		return -1;
	if (sb->len + extra + 1 <= sb->cap)
		return 0;
	size_t cap = sb->cap ? sb->cap : 256;

	while (cap < sb->len + extra + 1)
		cap *= 2;
	char *data = realloc(sb->data, cap);

	if (!data) {
		sb->oom = 1;
		return -1;
	}
	sb->data = data;
	sb->cap = cap;
	return 0;
}

void bf_strbuf_append(bf_strbuf *sb, const char *s)
{
	size_t n = strlen(s);

	if (strbuf_reserve(sb, n) != 0)
		return;
	memcpy(sb->data + sb->len, s, n + 1);
	sb->len += n;
}

void bf_strbuf_printf(bf_strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || strbuf_reserve(sb, (size_t)n) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

char *bf_strbuf_finish(bf_strbuf *sb)
{
	char *s = sb->oom ? NULL : sb->data;

	if (!s) {
		free(sb->data);
		if (!sb->oom)
			s = strdup("");
	}
	bf_strbuf_init(sb);
	return s;
}

void bf_strbuf_free(bf_strbuf *sb)
{
	free(sb->data);
	bf_strbuf_init(sb);
}
