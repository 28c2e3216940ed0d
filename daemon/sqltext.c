/* sqltext.c -- splits a leading WITH clause off an operator's SQL statement. */
#include "sqltext.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int is_ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* White space, -- comments and nested block comments; (size_t)-1 when a
 * block comment is never closed. */
static size_t skip_blank(const char *s, size_t i)
{
	for (;;) {
		while (s[i] && isspace((unsigned char)s[i]))
			i++;
		if (s[i] == '-' && s[i + 1] == '-') {
			while (s[i] && s[i] != '\n')
				i++;
		} else if (s[i] == '/' && s[i + 1] == '*') {
			int depth = 1;

			i += 2;
			while (depth > 0) {
				if (!s[i])
					return (size_t)-1;
				if (s[i] == '/' && s[i + 1] == '*') {
					depth++;
					i += 2;
				} else if (s[i] == '*' && s[i + 1] == '/') {
					depth--;
					i += 2;
				} else {
					i++;
				}
			}
		} else {
			return i;
		}
	}
}

static int keyword_at(const char *s, size_t i, const char *kw)
{
	size_t n = strlen(kw);

	return strncasecmp(s + i, kw, n) == 0 && !is_ident_char(s[i + n]);
}

/* Skips one quoted token starting at s[i]; returns the index after it, or 0
 * when s[i] starts no quoted token, or (size_t)-1 when it is unterminated. */
static size_t skip_quoted(const char *s, size_t i)
{
	char q = s[i];

	if (q == '\'' || q == '"') {
		/* E'...' strings also take backslash escapes. */
		int backslash = q == '\'' && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
				(i < 2 || !is_ident_char(s[i - 2]));

		for (i++; s[i]; i++) {
			if (backslash && s[i] == '\\' && s[i + 1]) {
				i++;
			} else if (s[i] == q) {
				if (s[i + 1] != q)
					return i + 1;
				i++;
			}
		}
		return (size_t)-1;
	}
	if (q == '$' && (i == 0 || !is_ident_char(s[i - 1]))) {
		/* $tag$ ... $tag$; "$1" is a parameter, not a quote. */
		size_t j = i + 1;

		if (isdigit((unsigned char)s[j]))
			return 0;
		while (s[j] && s[j] != '$' && (isalnum((unsigned char)s[j]) || s[j] == '_'))
			j++;
		if (s[j] != '$')
			return 0;
		size_t taglen = j - i + 1;
		const char *end;

		for (end = s + j + 1; (end = strchr(end, '$')) != NULL; end++)
			if (strncmp(end, s + i, taglen) == 0)
				return (size_t)(end - s) + taglen;
		return (size_t)-1;
	}
	return 0;
}

/* The index of the next character at or after i that is outside blanks,
 * comments and quoted tokens; (size_t)-1 for an unterminated quote. */
static size_t skip_to_plain(const char *s, size_t i)
{
	for (;;) {
		size_t next = skip_blank(s, i);

		if (next == (size_t)-1)
			return next;
		size_t q = skip_quoted(s, next);

		if (q == 0 || q == (size_t)-1)
			return q ? q : next;
		i = q;
	}
}

/* s[i] is '(': returns the index after its matching ')', or (size_t)-1. */
static size_t skip_parens(const char *s, size_t i)
{
	int depth = 0;

	while ((i = skip_to_plain(s, i)) != (size_t)-1 && s[i]) {
		if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i + 1;
		i++;
	}
	return (size_t)-1;
}

static size_t skip_identifier(const char *s, size_t i)
{
	if (s[i] == '"') {
		size_t q = skip_quoted(s, i);

		return q ? q : (size_t)-1;
	}
	if (!is_ident_char(s[i]) || isdigit((unsigned char)s[i]))
		return (size_t)-1;
	while (is_ident_char(s[i]))
		i++;
	return i;
}

int bf_sql_split_with(const char *stmt, bf_sql_with *out)
{
	/* Unterminated quotes and comments first: past this, every skip below
	 * stays inside the string. */
	if (bf_sql_has_semicolon(stmt) < 0)
		return -1;
	size_t i = skip_blank(stmt, 0);

	if (!keyword_at(stmt, i, "WITH"))
		return 0;
	memset(out, 0, sizeof(*out));
	i = skip_blank(stmt, i + 4);
	if (keyword_at(stmt, i, "RECURSIVE")) {
		out->recursive = 1;
		i = skip_blank(stmt, i + 9);
	}
	out->ctes_start = i;
	for (;;) {
		/* name [ ( columns ) ] AS [ [ NOT ] MATERIALIZED ] ( query ) */
		i = skip_identifier(stmt, i);
		if (i == (size_t)-1)
			return -1;
		i = skip_blank(stmt, i);
		if (stmt[i] == '(' && (i = skip_parens(stmt, i)) == (size_t)-1)
			return -1;
		i = skip_blank(stmt, i);
		if (!keyword_at(stmt, i, "AS"))
			return -1;
		i = skip_blank(stmt, i + 2);
		if (keyword_at(stmt, i, "NOT"))
			i = skip_blank(stmt, i + 3);
		if (keyword_at(stmt, i, "MATERIALIZED"))
			i = skip_blank(stmt, i + 12);
		if (stmt[i] != '(' || (i = skip_parens(stmt, i)) == (size_t)-1)
			return -1;
		out->ctes_end = i;
		i = skip_blank(stmt, i);
		if (keyword_at(stmt, i, "SEARCH") || keyword_at(stmt, i, "CYCLE"))
			return -1;
		if (stmt[i] != ',')
			break;
		i = skip_blank(stmt, i + 1);
	}
	if (!stmt[i])
		return -1;
	out->main_start = i;
	return 1;
}

int bf_sql_has_semicolon(const char *text)
{
	size_t i = 0;

	while ((i = skip_to_plain(text, i)) != (size_t)-1 && text[i]) {
		if (text[i] == ';')
			return 1;
		i++;
	}
	return i == (size_t)-1 ? -1 : 0;
}

int bf_sql_parens(const char *text)
{
	size_t i = 0;
	long depth = 0;

	while ((i = skip_to_plain(text, i)) != (size_t)-1 && text[i]) {
		if (text[i] == '(')
			depth++;
		else if (text[i] == ')' && --depth < 0)
			return -1;
		i++;
	}
	return depth > 0 ? 1 : 0;
}

int bf_sql_mentions(const char *text, const char *name)
{
	size_t n = strlen(name), i = 0;

	for (;;) {
		size_t next = skip_blank(text, i);

		if (next == (size_t)-1 || !text[next])
			return 0;
		i = next;
		/* "name" counts, other quoted tokens are skipped whole. */
		if (text[i] == '"' && strncmp(text + i + 1, name, n) == 0 &&
		    text[i + 1 + n] == '"' && text[i + 2 + n] != '"')
			return 1;
		size_t q = skip_quoted(text, i);

		if (q == (size_t)-1)
			return 0;
		if (q) {
			i = q;
			continue;
		}
		if (is_ident_char(text[i]) && (i == 0 || !is_ident_char(text[i - 1]))) {
			size_t start = i;

			while (is_ident_char(text[i]))
				i++;
			/* A qualified name (x.batch) is some other table's column. */
			if (i - start == n && strncasecmp(text + start, name, n) == 0 &&
			    (start == 0 || text[start - 1] != '.'))
				return 1;
			continue;
		}
		i++;
	}
}
