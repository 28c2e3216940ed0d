/* utf8.h -- cutting and cleaning UTF-8 text for PostgreSQL and JSON, which
 * both refuse a broken character.
 *
 * Pure functions on NUL-terminated strings; none allocates or fails. */
#ifndef BF_UTF8_H
#define BF_UTF8_H

#include <stddef.h>

/* Drops an incomplete UTF-8 sequence at the end of s, in place (snprintf
 * may cut a multibyte character in two). */
void bf_utf8_trim(char *s);

/* Where to cut s at or before byte n without splitting a character: n
 * when s[n] starts a character (or is the NUL), else the first byte of the
 * character s[n] belongs to. s must hold at least n bytes before its NUL. */
size_t bf_utf8_cut(const char *s, size_t n);

/* Makes s one line of valid UTF-8 in place, by jansson's rules (no overlong
 * forms, no surrogates, nothing above U+10FFFF): a byte that starts no
 * valid character becomes '?', a control character (newline, DEL) ' '. */
void bf_utf8_one_line(char *s);

#endif
