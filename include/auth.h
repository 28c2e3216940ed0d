/* auth.h -- who may use the control socket (SO_PEERCRED against the config).
 *
 * Names are resolved to ids when the configuration is loaded (start and
 * reload), never per connection: a user database behind NSS (LDAP, sssd) may
 * be slow, and the event loop must not wait for it.
 */
#ifndef BF_AUTH_H
#define BF_AUTH_H

#include <stddef.h>
#include <sys/types.h>

typedef struct bf_auth {
	uid_t self_uid;
	uid_t *uids; /* allowed_users, and the members of allowed_groups */
	size_t nuids;
	gid_t *gids; /* allowed_groups: a peer whose primary group is one of them */
	size_t ngids;
} bf_auth;

/* Resolves the comma-separated names of control.allowed_users and
 * control.allowed_groups. Returns -1 with a one-line reason in err when a
 * name does not exist (or memory runs out); auth is then left empty. */
int bf_auth_load(bf_auth *auth, const char *users, const char *groups, char *err, size_t errlen);
void bf_auth_free(bf_auth *auth);

/* 1 when a peer with these credentials may use the socket: root, the
 * daemon's own user, or an allowed user or group. */
int bf_auth_allows(const bf_auth *auth, uid_t uid, gid_t gid);

#endif
