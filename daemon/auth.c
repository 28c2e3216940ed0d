/* auth.c -- resolves the allowed users and groups of the control socket. */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

static int push_uid(bf_auth *auth, uid_t uid)
{
	uid_t *more = realloc(auth->uids, (auth->nuids + 1) * sizeof(*more));

	if (!more)
		return -1;
	auth->uids = more;
	auth->uids[auth->nuids++] = uid;
	return 0;
}

static int push_gid(bf_auth *auth, gid_t gid)
{
	gid_t *more = realloc(auth->gids, (auth->ngids + 1) * sizeof(*more));

	if (!more)
		return -1;
	auth->gids = more;
	auth->gids[auth->ngids++] = gid;
	return 0;
}

static int add_user(bf_auth *auth, const char *name, char *err, size_t errlen)
{
	struct passwd *pw;

	if (all_digits(name))
		return push_uid(auth, (uid_t)strtoul(name, NULL, 10));
	errno = 0;
	if (!(pw = getpwnam(name))) {
		snprintf(err, errlen, "control.allowed_users: no such user \"%s\"%s%s", name,
			 errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	return push_uid(auth, pw->pw_uid);
}

static int add_group(bf_auth *auth, const char *name, char *err, size_t errlen)
{
	struct group *gr;

	errno = 0;
	gr = all_digits(name) ? getgrgid((gid_t)strtoul(name, NULL, 10)) : getgrnam(name);
	if (!gr) {
		if (all_digits(name))
			return push_gid(auth, (gid_t)strtoul(name, NULL, 10));
		snprintf(err, errlen, "control.allowed_groups: no such group \"%s\"%s%s", name,
			 errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	if (push_gid(auth, gr->gr_gid) != 0)
		return -1;
	/* Supplementary members: SO_PEERCRED tells only the primary group. */
	for (char **m = gr->gr_mem; m && *m; m++) {
		struct passwd *pw = getpwnam(*m);

		if (pw && push_uid(auth, pw->pw_uid) != 0)
			return -1;
	}
	return 0;
}

typedef int (*add_fn)(bf_auth *auth, const char *name, char *err, size_t errlen);

static int add_list(bf_auth *auth, const char *list, add_fn add, char *err, size_t errlen)
{
	char *copy = strdup(list ? list : ""), *save = NULL;
	int rc = 0;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (char *name = strtok_r(copy, ",", &save); name && rc == 0;
	     name = strtok_r(NULL, ",", &save)) {
		err[0] = '\0';
		rc = add(auth, name, err, errlen);
		if (rc != 0 && !err[0])
			snprintf(err, errlen, "out of memory");
	}
	free(copy);
	return rc;
}

int bf_auth_load(bf_auth *auth, const char *users, const char *groups, char *err, size_t errlen)
{
	memset(auth, 0, sizeof(*auth));
	auth->self_uid = geteuid();
	if (add_list(auth, users, add_user, err, errlen) != 0 ||
	    add_list(auth, groups, add_group, err, errlen) != 0) {
		bf_auth_free(auth);
		return -1;
	}
	return 0;
}

void bf_auth_free(bf_auth *auth)
{
	free(auth->uids);
	free(auth->gids);
	auth->uids = NULL;
	auth->gids = NULL;
	auth->nuids = auth->ngids = 0;
}

int bf_auth_allows(const bf_auth *auth, uid_t uid, gid_t gid)
{
	if (uid == 0 || uid == auth->self_uid)
		return 1;
	for (size_t i = 0; i < auth->nuids; i++)
		if (auth->uids[i] == uid)
			return 1;
	for (size_t i = 0; i < auth->ngids; i++)
		if (auth->gids[i] == gid)
			return 1;
	return 0;
}
