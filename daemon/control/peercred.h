/*
 * peercred.h - who may connect to the daemon's Unix sockets (control,
 * attach): root, the daemon's own user, and optionally one configured
 * user and one configured group ([control] / [attach] allow-user,
 * allow-group).
 *
 * Two layers, both needed:
 *  - the socket file's owner and mode keep everyone else from connecting
 *    at all (peercred_socket_apply());
 *  - every accepted connection is checked with SO_PEERCRED (and
 *    SO_PEERGROUPS for supplementary groups) before the daemon reads a
 *    byte from it (peercred_allowed()).  The kernel records a peer's
 *    credentials when it connects, so a client cannot change them later,
 *    and the check does not depend on the file's mode (which an
 *    allow-user owning the file could widen, or a socket-activation unit
 *    set).
 *
 * The daemon's own user is allowed because the socket file admits it
 * anyway and it can already do anything the daemon can; when the daemon
 * runs as root, that is root.
 *
 * Threads: peercred_policy_init() at startup, before the policy is
 * shared; peercred_allowed() from any thread, any number at once.
 */
#ifndef POSTCOPYD_PEERCRED_H
#define POSTCOPYD_PEERCRED_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

struct peercred_policy {
    char *user;  /* allowed user's name; NULL: none */
    uid_t uid;   /* its uid, when user is set */
    char *group; /* allowed group's name; NULL: none */
    gid_t gid;   /* its gid, when group is set */
};

/*
 * Resolve @user and @group (NULL or "" for none) into @p, once: a user or
 * group that does not exist is an error naming it (G_IO_ERROR_NOT_FOUND),
 * so a typo fails at startup instead of locking everyone out later.
 */
bool peercred_policy_init(struct peercred_policy *p, const char *user,
                          const char *group, GError **err);
void peercred_policy_clear(struct peercred_policy *p);

/* 0660 when the policy names a group, else 0600. */
mode_t peercred_socket_mode(const struct peercred_policy *p);

/*
 * Give the socket file at @path, created with mode 0600 (unix_listen()),
 * the policy's owner and mode: the allowed user as owner, the allowed
 * group as group with mode 0660.  The owner and group change before the
 * mode widens, so the file never admits anyone it should not.  Nothing to
 * do for an empty policy.
 */
bool peercred_socket_apply(const char *path, const struct peercred_policy *p,
                           GError **err);

/*
 * May the process connected on @sock use it?  Root, the daemon's own
 * user, the policy's user, and any process whose primary or supplementary
 * groups contain the policy's group are allowed.  Otherwise false with one
 * line naming the peer (G_IO_ERROR_PERMISSION_DENIED): "refusing pid 4242
 * (uid 1000, gid 1000): only root, user 'alice' or group 'kvm' may
 * connect"; the caller prefixes the socket's name, logs it and closes
 * @sock without reading from it.
 */
bool peercred_allowed(int sock, const struct peercred_policy *p, GError **err);

#endif /* POSTCOPYD_PEERCRED_H */
