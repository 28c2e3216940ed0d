/* strbuf.h -- a growable string for building SQL and messages. */
#ifndef BF_STRBUF_H
#define BF_STRBUF_H

#include <stddef.h>

#include "log.h"

typedef struct bf_strbuf {
	char *data;
	size_t len, cap;
	int oom; /* an allocation failed: data is incomplete */
} bf_strbuf;

void bf_strbuf_init(bf_strbuf *sb);
void bf_strbuf_append(bf_strbuf *sb, const char *s);
void bf_strbuf_printf(bf_strbuf *sb, const char *fmt, ...) BF_PRINTF(2, 3);
/* Hands over the string (caller frees), or NULL after an allocation failure. */
char *bf_strbuf_finish(bf_strbuf *sb);
void bf_strbuf_free(bf_strbuf *sb);

#endif
