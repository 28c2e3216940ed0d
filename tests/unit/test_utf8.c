/* test_utf8.c -- cutting and cleaning UTF-8 text (utf8.c). */
#include "unit.h"
#include "utf8.h"

static void test_trim_drops_an_incomplete_character(void)
{
	char two[] = "ab\xc3";	       /* é cut after its first byte */
	char three[] = "ab\xe2\x82";   /* € cut after two of three bytes */
	char four[] = "a\xf0\x9f\x98"; /* 😀 cut after three of four bytes */
	char whole[] = "ab\xc3\xa9";   /* é complete */
	char euro[] = "\xe2\x82\xac";  /* € complete */
	char ascii[] = "plain";
	char empty[] = "";
	char stray[] = "\x80\x80"; /* continuation bytes and no lead */

	bf_utf8_trim(two);
	bf_utf8_trim(three);
	bf_utf8_trim(four);
	bf_utf8_trim(whole);
	bf_utf8_trim(euro);
	bf_utf8_trim(ascii);
	bf_utf8_trim(empty);
	bf_utf8_trim(stray);
	UNIT_CHECK_STR(two, "ab");
	UNIT_CHECK_STR(three, "ab");
	UNIT_CHECK_STR(four, "a");
	UNIT_CHECK_STR(whole, "ab\xc3\xa9");
	UNIT_CHECK_STR(euro, "\xe2\x82\xac");
	UNIT_CHECK_STR(ascii, "plain");
	UNIT_CHECK_STR(empty, "");
	UNIT_CHECK_STR(stray, "\x80\x80");
}

static void test_cut_lands_on_a_character_boundary(void)
{
	const char *s = "a\xe2\x82\xac"
			"b"; /* a € b: bytes 0, 1-3, 4 */

	UNIT_CHECK_INT(bf_utf8_cut(s, 0), 0);
	UNIT_CHECK_INT(bf_utf8_cut(s, 1), 1);
	UNIT_CHECK_INT(bf_utf8_cut(s, 2), 1);
	UNIT_CHECK_INT(bf_utf8_cut(s, 3), 1);
	UNIT_CHECK_INT(bf_utf8_cut(s, 4), 4);
	UNIT_CHECK_INT(bf_utf8_cut(s, 5), 5); /* the NUL */
	UNIT_CHECK_INT(bf_utf8_cut("\xc3\xa9", 1), 0);
}

static void test_one_line_replaces_controls_and_invalid_bytes(void)
{
	char lines[] = "first\nsecond\r\x7f";
	char latin1[] = "caf\xe9!";			       /* é in Latin-1: not UTF-8 */
	char overlong[] = "\xc0\xaf";			       /* '/' spelt in two bytes */
	char surrogate[] = "\xed\xa0\x80";		       /* U+D800 */
	char too_high[] = "\xf4\x90\x80\x80";		       /* above U+10FFFF */
	char valid[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"; /* é € 😀 */
	char cut[] = "x\xe2\x82";

	bf_utf8_one_line(lines);
	bf_utf8_one_line(latin1);
	bf_utf8_one_line(overlong);
	bf_utf8_one_line(surrogate);
	bf_utf8_one_line(too_high);
	bf_utf8_one_line(valid);
	bf_utf8_one_line(cut);
	UNIT_CHECK_STR(lines, "first second  ");
	UNIT_CHECK_STR(latin1, "caf?!");
	UNIT_CHECK_STR(overlong, "??");
	UNIT_CHECK_STR(surrogate, "???");
	UNIT_CHECK_STR(too_high, "????");
	UNIT_CHECK_STR(valid, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	UNIT_CHECK_STR(cut, "x??");
}

int main(void)
{
	UNIT_RUN(test_trim_drops_an_incomplete_character);
	UNIT_RUN(test_cut_lands_on_a_character_boundary);
	UNIT_RUN(test_one_line_replaces_controls_and_invalid_bytes);
	return UNIT_DONE();
}
