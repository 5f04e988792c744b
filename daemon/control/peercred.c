/* peercred.c - see peercred.h. */
#include "peercred.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <gio/gio.h>

#include "errno_error.h"

/* Most processes are in a handful of groups; more take a second call. */
#define PEER_GROUPS_INLINE 64

/*
 * The _r lookups: the policy may be built while other threads run.  Their
 * buffer must hold the whole entry, which for a group lists its members,
 * so it grows until it does.
 */
static bool lookup_user(const char *name, uid_t *uid, GError **err)
{
    g_autofree char *buf = NULL;
    struct passwd pw, *found = NULL;
    size_t size = 1024;
    int e;

    do {
        size *= 2;
        buf = g_realloc(buf, size);
        e = getpwnam_r(name, &pw, buf, size, &found);
    } while (e == ERANGE);
    if (e) {
        return errno_error(err, e, "cannot look up user '%s'", name);
    }
    if (!found) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "allow-user: there is no user '%s'", name);
        return false;
    }
    *uid = pw.pw_uid;
    return true;
}

static bool lookup_group(const char *name, gid_t *gid, GError **err)
{
    g_autofree char *buf = NULL;
    struct group gr, *found = NULL;
    size_t size = 1024;
    int e;

    do {
        size *= 2;
        buf = g_realloc(buf, size);
        e = getgrnam_r(name, &gr, buf, size, &found);
    } while (e == ERANGE);
    if (e) {
        return errno_error(err, e, "cannot look up group '%s'", name);
    }
    if (!found) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "allow-group: there is no group '%s'", name);
        return false;
    }
    *gid = gr.gr_gid;
    return true;
}

bool peercred_policy_init(struct peercred_policy *p, const char *user,
                          const char *group, GError **err)
{
    memset(p, 0, sizeof(*p));
    if (user && *user) {
        if (!lookup_user(user, &p->uid, err)) {
            return false;
        }
        p->user = g_strdup(user);
    }
    if (group && *group) {
        if (!lookup_group(group, &p->gid, err)) {
            peercred_policy_clear(p);
            return false;
        }
        p->group = g_strdup(group);
    }
    return true;
}

void peercred_policy_clear(struct peercred_policy *p)
{
    g_free(p->user);
    g_free(p->group);
    memset(p, 0, sizeof(*p));
}

mode_t peercred_socket_mode(const struct peercred_policy *p)
{
    return p->group ? 0660 : 0600;
}

bool peercred_socket_apply(const char *path, const struct peercred_policy *p,
                           GError **err)
{
    uid_t uid = p->user ? p->uid : (uid_t)-1;
    gid_t gid = p->group ? p->gid : (gid_t)-1;

    if (!p->user && !p->group) {
        return true;
    }
    /* lchown: give away the socket we bound, never what a link points at. */
    if (lchown(path, uid, gid) < 0) {
        int e = errno;
        g_autofree char *to =
            p->user && p->group
                ? g_strdup_printf("user %s and group %s", p->user, p->group)
            : p->user ? g_strdup_printf("user %s", p->user)
                      : g_strdup_printf("group %s", p->group);

        return errno_error(err, e, "cannot give %s to %s", path, to);
    }
    /* Only now that the group is ours to grant does the mode widen. */
    if (chmod(path, peercred_socket_mode(p)) < 0) {
        return errno_error(err, errno, "cannot chmod %s", path);
    }
    return true;
}

/* Is @gid among the peer's supplementary groups (as of its connect())? */
static bool in_peer_groups(int sock, gid_t gid)
{
    gid_t inline_groups[PEER_GROUPS_INLINE];
    g_autofree gid_t *heap = NULL;
    gid_t *groups = inline_groups;
    socklen_t len = sizeof(inline_groups);

    if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        /* ERANGE: @len now says how much it takes. */
        if (errno != ERANGE) {
            return false; /* cannot tell: not a member */
        }
        groups = heap = g_malloc(len);
        if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
            return false;
        }
    }
    for (size_t i = 0; i < len / sizeof(gid_t); i++) {
        if (groups[i] == gid) {
            return true;
        }
    }
    return false;
}

/* "root, user 'alice' or members of group 'kvm'" */
static char *who_may(const struct peercred_policy *p)
{
    GString *s = g_string_new("root");
    uid_t me = geteuid();

    if (me) {
        g_string_append_printf(s, "%s uid %u (this daemon's)",
                               p->user || p->group ? "," : " or", (unsigned)me);
    }
    if (p->user) {
        g_string_append_printf(s, "%s user '%s'", p->group ? "," : " or",
                               p->user);
    }
    if (p->group) {
        g_string_append_printf(s, " or members of group '%s'", p->group);
    }
    return g_string_free(s, FALSE);
}

bool peercred_allowed(int sock, const struct peercred_policy *p, GError **err)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    g_autofree char *who = NULL;

    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return errno_error(err, errno, "cannot read the peer's credentials");
    }
    if (cred.uid == 0 || cred.uid == geteuid()) {
        return true;
    }
    if (p->user && cred.uid == p->uid) {
        return true;
    }
    if (p->group && (cred.gid == p->gid || in_peer_groups(sock, p->gid))) {
        return true;
    }
    who = who_may(p);
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                "refusing pid %d (uid %u, gid %u): only %s may connect",
                (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid, who);
    return false;
}
