/* term.c -- daemon text made safe for a terminal, colors, column widths. */
#include "term.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

void bf_term_detect(bf_term *term, int fd)
{
	const char *no_color = getenv("NO_COLOR"), *name = getenv("TERM");

	term->tty = isatty(fd);
	term->columns = term->tty ? bf_term_columns(fd) : 0;
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

int bf_term_columns(int fd)
{
	struct winsize ws;

	if (!isatty(fd) || ioctl(fd, TIOCGWINSZ, &ws) != 0)
		return 0;
	return ws.ws_col;
}

/* Bytes of s that fit in width columns, never cutting a UTF-8 character. */
static size_t fit_bytes(const char *s, size_t len, size_t width)
{
	size_t i = 0, used = 0;

	while (i < len && used < width) {
		i++;
		while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80)
			i++;
		used++;
	}
	return i;
}

/* Where to end a line of s (len bytes) that must fit width columns: after
 * the last " - " that fits, else at the last space, else at the width. */
static size_t fold_at(const char *s, size_t len, size_t width)
{
	size_t fit = fit_bytes(s, len, width), space = 0;

	if (fit == len)
		return len;
	for (size_t i = fit; i > 0; i--) {
		if (i >= 3 && i <= fit && strncmp(s + i - 3, " - ", 3) == 0)
			return i - 3;
		if (!space && s[i] == ' ')
			space = i;
	}
	return space ? space : fit;
}

void bf_term_put_folded(FILE *out, const char *text, int columns, int indent, const char *sgr)
{
	size_t len = strlen(text);
	int first = 1;

	if (sgr)
		fputs(sgr, out);
	while (len > 0 || first) {
		size_t width = columns <= 0			? len + 1
			       : first || columns <= 2 * indent ? (size_t)columns
								: (size_t)(columns - indent);
		size_t n = fold_at(text, len, width ? width : 1);

		if (!first)
			fprintf(out, "\n%*s", indent, "");
		fwrite(text, 1, n, out);
		text += n;
		len -= n;
		/* The break itself: the separator or the space. */
		if (len >= 3 && strncmp(text, " - ", 3) == 0) {
			text += 3;
			len -= 3;
		}
		while (len > 0 && *text == ' ') {
			text++;
			len--;
		}
		first = 0;
	}
	if (sgr)
		fputs(BF_SGR_RESET, out);
	fputc('\n', out);
}
