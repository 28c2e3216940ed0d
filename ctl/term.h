/* term.h -- what backfillctl writes to a terminal: daemon text made safe to
 * print, colors when wanted, widths of UTF-8 text for aligned columns.
 */
#ifndef BF_CTL_TERM_H
#define BF_CTL_TERM_H

#include <stddef.h>
#include <stdio.h>

typedef struct bf_term {
	int tty;     /* stdout is a terminal: progress bars, in-place redraw */
	int color;   /* ... and colors are welcome (NO_COLOR unset, TERM not dumb) */
	int columns; /* the terminal's width, to fit lines to; 0: no limit */
} bf_term;

void bf_term_detect(bf_term *term, int fd);

/* The width of the terminal on fd now (it may have been resized); 0 when
 * fd is not a terminal or does not say. */
int bf_term_columns(int fd);

/* Writes text (already clean) and a newline, folded to columns (0: not at
 * all): breaks go at " - " separators where they can, else at spaces, else
 * anywhere; every line after the first is indented by indent spaces. The
 * whole inside sgr when sgr is non-NULL. */
void bf_term_put_folded(FILE *out, const char *text, int columns, int indent, const char *sgr);

/* A copy of s fit for a terminal: control characters (C1 and escape
 * sequences included) become '?'; newlines and tabs become spaces unless
 * keep_newlines. Never NULL: an allocation failure yields "?". Free with
 * free() unless it is the static "?" (use bf_term_free). */
char *bf_term_clean(const char *s, int keep_newlines);
void bf_term_free(char *s);

/* Columns s takes on a terminal (UTF-8 characters, each counted as one). */
size_t bf_term_width(const char *s);

/* Writes s padded with spaces to width columns (on the right when
 * align_right), inside the SGR color sequence sgr when sgr is non-NULL. */
void bf_term_cell(FILE *out, const char *s, size_t width, int align_right, const char *sgr);

#define BF_SGR_RESET  "\033[0m"
#define BF_SGR_BOLD   "\033[1m"
#define BF_SGR_DIM    "\033[2m"
#define BF_SGR_RED    "\033[31m"
#define BF_SGR_GREEN  "\033[32m"
#define BF_SGR_YELLOW "\033[33m"
#define BF_SGR_BLUE   "\033[34m"

#endif
