/* term.c -- daemon text made safe for a terminal, colors, column widths. */
#include "term.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void bf_term_detect(bf_term *term, int fd)
{
	const char *no_color = getenv("NO_COLOR"), *name = getenv("TERM");

	term->tty = isatty(fd);
	/* https://no-color.org: present and not empty disables color. */
	term->color = term->tty && !(no_color && *no_color) && !(name && strcmp(name, "dumb") == 0);
}

static char unprintable[] = "?";

char *bf_term_clean(const char *s, int keep_newlines)
{
	size_t len = strlen(s);
	char *copy = malloc(len + 1);
	unsigned char *p;

	if (!copy)
		return unprintable;
	memcpy(copy, s, len + 1);
	/* Job names, errors and plans come from the database: a stray escape
	 * sequence must not reprogram the operator's terminal. */
	for (p = (unsigned char *)copy; *p; p++) {
		if (*p == '\n' && keep_newlines)
			continue;
		if (*p == '\n' || *p == '\t' || *p == '\r')
			*p = ' ';
		else if (*p < 0x20 || *p == 0x7f)
			*p = '?';
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			/* U+0080..U+009F, the C1 controls (0x9b is CSI) */
			p[0] = '?';
			p[1] = '?';
			p++;
		}
	}
	return copy;
}

void bf_term_free(char *s)
{
	if (s != unprintable)
		free(s);
}

size_t bf_term_width(const char *s)
{
	size_t width = 0;

	for (; *s; s++)
		width += ((unsigned char)*s & 0xc0) != 0x80;
	return width;
}

void bf_term_cell(FILE *out, const char *s, size_t width, int align_right, const char *sgr)
{
	size_t used = bf_term_width(s), pad = used < width ? width - used : 0;

	if (align_right)
		fprintf(out, "%*s", (int)pad, "");
	if (sgr)
		fprintf(out, "%s%s%s", sgr, s, BF_SGR_RESET);
	else
		fputs(s, out);
	if (!align_right)
		fprintf(out, "%*s", (int)pad, "");
}
