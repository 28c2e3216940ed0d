/* settargets.c -- which columns an UPDATE's SET list assigns, read the way
 * PostgreSQL's grammar reads it (set_clause in gram.y):
 *
 *   set_target = a_expr   |   ( set_target [, ...] ) = a_expr
 *   set_target:  ColId { . attr_name | [ subscript ] }
 *
 * The values are skipped, not parsed: only their quotes, comments and
 * parentheses matter, to find the ',' that ends each one. The scanner
 * follows sqltext.c's; it is repeated here because sqltext.c keeps its own
 * private and this one must say where it stopped. */
#include "settargets.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "utf8.h"

/* NAMEDATALEN - 1: the server cuts a longer identifier to this many bytes
 * (at a character boundary), so two long names can be the same column. */
#define IDENT_MAX_BYTES 63
/* No SET list anyone writes nests deeper; the bound keeps the recursion of
 * skip_group shallow on hostile text. */
#define NESTING_MAX 256
/* How much of the text an error quotes after its offset. */
#define NEAR_BYTES 24

/* Words the grammar never takes as a column name (kwlist.h: RESERVED and
 * TYPE_FUNC_NAME keywords); "order = 1" is a syntax error, "\"order\" = 1"
 * is not. */
/* clang-format off */
static const char *const reserved_words[] = {
	"all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
	"authorization", "binary", "both", "case", "cast", "check", "collate", "collation",
	"column", "concurrently", "constraint", "create", "cross", "current_catalog",
	"current_date", "current_role", "current_schema", "current_time", "current_timestamp",
	"current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end",
	"except", "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant",
	"group", "having", "ilike", "in", "initially", "inner", "intersect", "into", "is",
	"isnull", "join", "lateral", "leading", "left", "like", "limit", "localtime",
	"localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or",
	"order", "outer", "overlaps", "placing", "primary", "references", "returning", "right",
	"select", "session_user", "similar", "some", "symmetric", "system_user", "table",
	"tablesample", "then", "to", "trailing", "true", "union", "unique", "user", "using",
	"variadic", "verbose", "when", "where", "window", "with",
};
/* clang-format on */

typedef struct target_reader {
	const char *s;	    /* the set_clause */
	char **names;	    /* the columns found so far, resolved */
	bool *through_part; /* names[k] was only assigned through [..] or .field */
	int n, cap;
	char *err;
	size_t errlen;
} target_reader;

static bool is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (unsigned char)c >= 0x80;
}

static bool is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool word_at(const char *s, size_t i, const char *word)
{
	size_t n = strlen(word);

	return strncasecmp(s + i, word, n) == 0 && !is_ident_char(s[i + n]);
}

/* Writes "<what> at offset N (near "<text>")" to err, one line; returns -1. */
static int fail(target_reader *r, size_t at, const char *what, ...) BF_PRINTF(3, 4);

static int fail(target_reader *r, size_t at, const char *what, ...)
{
	char reason[256], near[NEAR_BYTES + 1];
	va_list ap;

	if (!r->err || r->errlen == 0)
		return -1;
	va_start(ap, what);
	vsnprintf(reason, sizeof(reason), what, ap);
	va_end(ap);
	if (!r->s[at]) {
		snprintf(r->err, r->errlen, "%s at the end (offset %zu)", reason, at);
	} else {
		size_t len = bf_utf8_cut(r->s + at, strnlen(r->s + at, NEAR_BYTES));

		memcpy(near, r->s + at, len);
		near[len] = '\0';
		snprintf(r->err, r->errlen, "%s at offset %zu (near \"%s\")", reason, at, near);
	}
	bf_utf8_trim(r->err);
	bf_utf8_one_line(r->err);
	return -1;
}

/* Moves *i past white space, -- comments and nested block comments. */
static int skip_blank(target_reader *r, size_t *i)
{
	const char *s = r->s;
	size_t at = *i;

	for (;;) {
		while (is_blank(s[at]))
			at++;
		if (s[at] == '-' && s[at + 1] == '-') {
			while (s[at] && s[at] != '\n')
				at++;
		} else if (s[at] == '/' && s[at + 1] == '*') {
			size_t start = at;
			int depth = 1;

			for (at += 2; depth > 0;) {
				if (!s[at])
					return fail(r, start, "unterminated /* comment");
				if (s[at] == '/' && s[at + 1] == '*')
					depth++, at += 2;
				else if (s[at] == '*' && s[at + 1] == '/')
					depth--, at += 2;
				else
					at++;
			}
		} else {
			*i = at;
			return 0;
		}
	}
}

/* s[*i] is '$' and starts a $tag$ ... $tag$ body: moves past it. Returns 1,
 * 0 when the '$' starts no body ($1 is a parameter), -1 if it never ends. */
static int skip_dollar_quoted(target_reader *r, size_t *i)
{
	const char *s = r->s, *end;
	size_t at = *i, j = at + 1;

	if (at > 0 && is_ident_char(s[at - 1]))
		return 0; /* a$b is one identifier */
	if (is_digit(s[j]))
		return 0;
	while (s[j] != '$' && is_ident_char(s[j]))
		j++;
	if (s[j] != '$')
		return 0;
	size_t taglen = j - at + 1;

	for (end = strchr(s + j + 1, '$'); end; end = strchr(end + 1, '$')) {
		if (strncmp(end, s + at, taglen) == 0) {
			*i = (size_t)(end - s) + taglen;
			return 1;
		}
	}
	return fail(r, at, "unterminated dollar-quoted string");
}

/* If a quoted token ('string', "identifier", $tag$ body) starts at *i,
 * moves past it and returns 1; 0 if none starts there; -1 if it never ends. */
static int skip_quoted(target_reader *r, size_t *i)
{
	const char *s = r->s;
	size_t at = *i;
	char q = s[at];

	if (q == '$')
		return skip_dollar_quoted(r, i);
	if (q != '\'' && q != '"')
		return 0;
	/* E'...' strings also take backslash escapes: E'it\'s'. */
	bool backslash = q == '\'' && at > 0 && (s[at - 1] == 'E' || s[at - 1] == 'e') &&
			 (at < 2 || !is_ident_char(s[at - 2]));

	for (at++; s[at]; at++) {
		if (backslash && s[at] == '\\' && s[at + 1]) {
			at++;
		} else if (s[at] == q) {
			if (s[at + 1] != q) {
				*i = at + 1;
				return 1;
			}
			at++;
		}
	}
	return fail(r, *i, "%s",
		    q == '"' ? "unterminated quoted identifier" : "unterminated string");
}

/* Moves *i to the next character outside blanks, comments and quotes. */
static int skip_to_plain(target_reader *r, size_t *i)
{
	for (;;) {
		if (skip_blank(r, i) < 0)
			return -1;
		int q = skip_quoted(r, i);

		if (q <= 0)
			return q;
	}
}

static int skip_group(target_reader *r, size_t *i, int depth, int *elements);

/* Moves *i over an expression, to the first ',', ')' or ']' outside its
 * quotes and groups, or to the end of the text. */
static int skip_expr(target_reader *r, size_t *i, int depth)
{
	for (;;) {
		if (skip_to_plain(r, i) < 0)
			return -1;
		char c = r->s[*i];

		if (!c || c == ',' || c == ')' || c == ']')
			return 0;
		if (c == '(' || c == '[') {
			if (skip_group(r, i, depth + 1, NULL) < 0)
				return -1;
		} else {
			(*i)++;
		}
	}
}

/* s[*i] opens a group, '(' or '[': moves *i past the ')' or ']' that closes
 * it; *elements (if not NULL) is how many comma-separated items it holds. */
static int skip_group(target_reader *r, size_t *i, int depth, int *elements)
{
	const char *s = r->s;
	size_t open = *i;
	char close = s[open] == '(' ? ')' : ']';
	int commas = 0;

	if (depth > NESTING_MAX)
		return fail(r, open, "parentheses nested deeper than %d", NESTING_MAX);
	(*i)++;
	if (skip_blank(r, i) < 0)
		return -1;
	if (s[*i] == close) {
		(*i)++;
		if (elements)
			*elements = 0;
		return 0;
	}
	for (;;) {
		if (skip_expr(r, i, depth) < 0)
			return -1;
		if (s[*i] == ',') {
			commas++;
			(*i)++;
		} else if (s[*i] == close) {
			(*i)++;
			if (elements)
				*elements = commas + 1;
			return 0;
		} else if (!s[*i]) {
			return fail(r, open, "'%c' is never closed", s[open]);
		} else {
			return fail(r, *i, "'%c' does not close the '%c' at offset %zu", s[*i],
				    s[open], open);
		}
	}
}

/* Why the text at s, where a column name should start, is not one. */
static const char *not_a_column(const char *s)
{
	if (!*s)
		return "a column name is missing";
	if (*s == '$' && is_digit(s[1]))
		return "a parameter is not a column";
	if (*s == '\'' || *s == '$')
		return "a string constant is not a column";
	if (is_digit(*s) || *s == '.')
		return "a number is not a column";
	if (*s == '(')
		return "a parenthesized expression is not a column";
	return "expected a column name";
}

/* The len bytes at s as a malloc'd name, cut as the server cuts identifiers. */
static char *name_dup(const char *s, size_t len)
{
	char *name = malloc(len + 1);

	if (!name)
		return NULL;
	memcpy(name, s, len);
	name[len] = '\0';
	if (len > IDENT_MAX_BYTES)
		name[bf_utf8_cut(name, IDENT_MAX_BYTES)] = '\0';
	return name;
}

/* A bare name: folded to lower case as the server folds it, ASCII only (a
 * UTF-8 database leaves other letters as written). */
static int read_bare_name(target_reader *r, size_t *i, char **name)
{
	const char *s = r->s;
	size_t start = *i, end = start;

	while (is_ident_char(s[end]))
		end++;
	if (s[end] == '\'') /* E'..', X'..', B'..', N'..' */
		return fail(r, start, "a string constant is not a column");
	for (size_t k = 0; k < sizeof(reserved_words) / sizeof(reserved_words[0]); k++) {
		if (end - start == strlen(reserved_words[k]) &&
		    strncasecmp(s + start, reserved_words[k], end - start) == 0)
			return fail(r, start,
				    "%s is a reserved word, not a column name (a column of that "
				    "name is written \"%s\")",
				    reserved_words[k], reserved_words[k]);
	}
	if (!(*name = name_dup(s + start, end - start)))
		return fail(r, start, "out of memory");
	for (char *c = *name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	*i = end;
	return 0;
}

/* A "quoted" name: as written, with "" unescaped to ". */
static int read_quoted_name(target_reader *r, size_t *i, char **name)
{
	const char *s = r->s;
	size_t start = *i, end = start, len = 0;

	if (skip_quoted(r, &end) < 0)
		return -1;
	if (end - start == 2)
		return fail(r, start, "a zero-length \"\" identifier");
	char *out = malloc(end - start);

	if (!out)
		return fail(r, start, "out of memory");
	for (size_t k = start + 1; k < end - 1; k++) {
		out[len++] = s[k];
		if (s[k] == '"')
			k++;
	}
	*name = name_dup(out, len);
	free(out);
	if (!*name)
		return fail(r, start, "out of memory");
	*i = end;
	return 0;
}

/* The column name that starts at *i, resolved as the server resolves it. */
static int read_column(target_reader *r, size_t *i, char **name)
{
	const char *s = r->s;
	size_t at = *i;

	if ((s[at] == 'U' || s[at] == 'u') && s[at + 1] == '&' && s[at + 2] == '"')
		return fail(r, at,
			    "U&\"...\" identifiers are not supported: write the column as a plain "
			    "\"...\" identifier");
	if (s[at] == '"')
		return read_quoted_name(r, i, name);
	if (is_ident_start(s[at]))
		return read_bare_name(r, i, name);
	return fail(r, at, "%s", not_a_column(s + at));
}

/* After '.': a field name (any word, reserved ones too, or "quoted"). */
static int skip_field(target_reader *r, size_t *i)
{
	const char *s = r->s;

	if (s[*i] == '*')
		return fail(r, *i, "a .* target is not a column: name the field");
	if ((s[*i] == 'U' || s[*i] == 'u') && s[*i + 1] == '&' && s[*i + 2] == '"')
		return fail(r, *i, "U&\"...\" identifiers are not supported");
	if (s[*i] == '"')
		return skip_quoted(r, i) < 0 ? -1 : 0;
	if (!is_ident_start(s[*i]))
		return fail(r, *i, "expected a field name after '.'");
	while (is_ident_char(s[*i]))
		(*i)++;
	return 0;
}

/* Records name (taken over) as assigned at offset at. The server lets a
 * column be assigned several times only through parts of it
 * (arr[1] = 1, arr[2] = 2): the journal keeps the column once. */
static int add_target(target_reader *r, char *name, bool through_part, size_t at)
{
	for (int k = 0; k < r->n; k++) {
		if (strcmp(r->names[k], name) != 0)
			continue;
		if (through_part && r->through_part[k]) {
			free(name);
			return 0;
		}
		fail(r, at, "column \"%s\" is assigned twice", name);
		free(name);
		return -1;
	}
	if (r->n == r->cap) {
		int cap = r->cap ? 2 * r->cap : 8;
		char **names = realloc(r->names, (size_t)cap * sizeof(*names));

		if (names)
			r->names = names;
		bool *parts = names ? realloc(r->through_part, (size_t)cap * sizeof(*parts)) : NULL;

		if (!parts) {
			free(name);
			return fail(r, at, "out of memory");
		}
		r->through_part = parts;
		r->cap = cap;
	}
	r->names[r->n] = name;
	r->through_part[r->n++] = through_part;
	return 0;
}

/* One set_target at *i: a column, then any [subscript] or .field of it. */
static int read_target(target_reader *r, size_t *i)
{
	const char *s = r->s;
	size_t start = *i, at;
	bool through_part = false;
	char *name;

	if (read_column(r, i, &name) < 0)
		return -1;
	for (;;) {
		at = *i;
		if (skip_blank(r, &at) < 0)
			goto fail;
		if (s[at] == '(') {
			fail(r, start, "%s",
			     strcmp(name, "row") == 0
				     ? "ROW(...) is not a column: assign a tuple as (a, b) = ..."
				     : "a function call is not a column");
			goto fail;
		} else if (s[at] == '[') {
			if (skip_group(r, &at, 1, NULL) < 0)
				goto fail;
		} else if (s[at] == '.') {
			at++;
			if (skip_blank(r, &at) < 0 || skip_field(r, &at) < 0)
				goto fail;
		} else {
			break;
		}
		through_part = true;
		*i = at;
	}
	return add_target(r, name, through_part, start);
fail:
	free(name);
	return -1;
}

/* ( set_target [, ...] ) at *i; *columns is how many. */
static int read_tuple(target_reader *r, size_t *i, int *columns)
{
	const char *s = r->s;
	size_t open = (*i)++;

	for (*columns = 0;;) {
		if (skip_blank(r, i) < 0)
			return -1;
		if (s[*i] == ')' && *columns == 0)
			return fail(r, open, "an empty column list ()");
		if (read_target(r, i) < 0 || skip_blank(r, i) < 0)
			return -1;
		(*columns)++;
		if (s[*i] == ')') {
			(*i)++;
			return 0;
		}
		if (s[*i] != ',')
			return fail(r, *i, "%s",
				    s[*i] ? "expected ',' or ')' in the column list"
					  : "'(' of the column list is never closed");
		(*i)++;
	}
}

/* The '=' after the targets. The server's lexer reads a run of operator
 * characters as one operator, so "a => 1" or "a == 1" is no assignment; a
 * run of '+' and '-' after '=' is split off ("a =-1" is "a = -1"). */
static int read_equals(target_reader *r, size_t *i)
{
	const char *s = r->s;

	if (skip_blank(r, i) < 0)
		return -1;
	if (s[*i] != '=')
		return fail(r, *i, "expected '=' after the target");
	for (size_t j = *i + 1; s[j] && strchr("~!@#^&|`?+-*/%<>=", s[j]); j++) {
		if ((s[j] == '-' && s[j + 1] == '-') || (s[j] == '/' && s[j + 1] == '*'))
			break; /* a comment starts: it ends the operator */
		if (s[j] != '+' && s[j] != '-')
			return fail(r, *i, "expected '=' after the target, not another operator");
	}
	(*i)++;
	return 0;
}

/* A tuple's source [start, end), checked against its column count when the
 * count shows: ROW(...), or a parenthesized list of two values or more (or
 * none) that is not a sub-SELECT, with nothing after it. */
static int check_row_source(target_reader *r, size_t start, size_t end, int columns)
{
	const char *s = r->s;
	size_t at = start, after;
	bool row = word_at(s, at, "row");
	int values;

	if (row) {
		at += 3;
		if (skip_blank(r, &at) < 0)
			return -1;
	}
	if (s[at] != '(')
		return 0;
	size_t first = at + 1;

	if (skip_group(r, &at, 1, &values) < 0 || skip_blank(r, &first) < 0)
		return -1;
	after = at;
	if (skip_blank(r, &after) < 0)
		return -1;
	if (after != end)
		return 0; /* (..)::type, (..) || x: not a plain row */
	if (!row && (values == 1 || word_at(s, first, "select") || word_at(s, first, "values") ||
		     word_at(s, first, "with") || word_at(s, first, "table")))
		return 0; /* a sub-SELECT, or one value in parentheses */
	if (values != columns)
		return fail(r, start, "%d column%s but %d value%s", columns,
			    columns == 1 ? "" : "s", values, values == 1 ? "" : "s");
	return 0;
}

/* The value after '=', up to the ',' that ends it or the end of the text;
 * columns > 0 for a tuple's source. */
static int read_value(target_reader *r, size_t *i, int columns)
{
	const char *s = r->s;

	if (skip_blank(r, i) < 0)
		return -1;
	size_t start = *i;

	if (!s[start] || s[start] == ',')
		return fail(r, start, "no value after '='");
	if (skip_expr(r, i, 0) < 0)
		return -1;
	if (s[*i] == ')' || s[*i] == ']')
		return fail(r, *i, "'%c' closes a parenthesis that was never opened", s[*i]);
	return columns > 0 ? check_row_source(r, start, *i, columns) : 0;
}

/* One "target = value" or "(targets) = value" at *i. */
static int read_assignment(target_reader *r, size_t *i)
{
	int columns = 0;

	if (r->s[*i] == '(') {
		if (read_tuple(r, i, &columns) < 0)
			return -1;
	} else if (read_target(r, i) < 0) {
		return -1;
	}
	if (read_equals(r, i) < 0)
		return -1;
	return read_value(r, i, columns);
}

int bf_set_targets(const char *set_clause, char ***names, int *n, char *err, size_t errlen)
{
	target_reader r = {.s = set_clause ? set_clause : "", .err = err, .errlen = errlen};
	size_t i = 0;

	*names = NULL;
	*n = 0;
	if (err && errlen)
		err[0] = '\0';
	if (skip_blank(&r, &i) < 0)
		goto fail;
	if (!r.s[i]) {
		fail(&r, i, "the set_clause is empty");
		goto fail;
	}
	for (;;) {
		if (read_assignment(&r, &i) < 0)
			goto fail;
		if (!r.s[i])
			break;
		i++; /* the ',': a value ends at nothing else */
		if (skip_blank(&r, &i) < 0)
			goto fail;
		if (!r.s[i]) {
			fail(&r, i, "nothing after the last ','");
			goto fail;
		}
	}
	free(r.through_part);
	*names = r.names;
	*n = r.n;
	return 0;
fail:
	bf_set_targets_free(r.names, r.n);
	free(r.through_part);
	return -1;
}

void bf_set_targets_free(char **names, int n)
{
	if (!names)
		return;
	for (int k = 0; k < n; k++)
		free(names[k]);
	free(names);
}

char *bf_set_targets_quote(const char *name)
{
	size_t len = 2;

	for (const char *c = name; *c; c++)
		len += *c == '"' ? 2 : 1;
	char *out = malloc(len + 1), *o = out;

	if (!out)
		return NULL;
	*o++ = '"';
	for (const char *c = name; *c; c++) {
		if (*c == '"')
			*o++ = '"';
		*o++ = *c;
	}
	*o++ = '"';
	*o = '\0';
	return out;
}
