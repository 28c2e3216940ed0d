/* test_auth.c -- auth.c: which control socket peers are let in. */
#include <unistd.h>

#include "auth.h"
#include "unit.h"

static void test_auth(void)
{
	bf_auth auth;
	char err[256];

	UNIT_CHECK_INT(bf_auth_load(&auth, "", "", err, sizeof err), 0);
	UNIT_CHECK(bf_auth_allows(&auth, 0, 0));
	UNIT_CHECK(bf_auth_allows(&auth, geteuid(), 12345));
	UNIT_CHECK(!bf_auth_allows(&auth, 54321, 54321));
	bf_auth_free(&auth);

	UNIT_CHECK_INT(bf_auth_load(&auth, "root,54321", "77777", err, sizeof err), 0);
	UNIT_CHECK(bf_auth_allows(&auth, 54321, 1));
	UNIT_CHECK(bf_auth_allows(&auth, 999, 77777));
	UNIT_CHECK(!bf_auth_allows(&auth, 999, 1));
	bf_auth_free(&auth);

	UNIT_CHECK_INT(bf_auth_load(&auth, "no_such_user_here", "", err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "no such user \"no_such_user_here\"") != NULL);
	UNIT_CHECK_INT(bf_auth_load(&auth, "", "no_such_group_here", err, sizeof err), -1);
	UNIT_CHECK(strstr(err, "no such group \"no_such_group_here\"") != NULL);
}

int main(void)
{
	UNIT_RUN(test_auth);
	return UNIT_DONE();
}
