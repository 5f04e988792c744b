/*
 * test_peercred.c - who may connect to the control and attach sockets:
 * real Unix sockets, and forked children that drop to an unprivileged
 * user (nobody) before connecting, checked with SO_PEERCRED and
 * SO_PEERGROUPS; the socket file's owner and mode.
 */
#include "peercred.h"
#include "unix_listen.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#define ACCEPT_TIMEOUT_MS 5000

/* What a forked client reports with its exit status. */
enum child_status {
    CHILD_CONNECTED = 0,
    CHILD_EACCES = 1, /* the socket file's mode kept it out */
    CHILD_FAILED = 2, /* connect() failed otherwise */
    CHILD_SETUP = 3,  /* could not drop privileges */
};

/* Who a forked client becomes before it connects. */
struct ident {
    uid_t uid;
    gid_t gid;
    gid_t groups[4]; /* supplementary */
    int ngroups;
};

/* The unprivileged account the tests run clients as. */
struct nobody {
    uid_t uid;
    gid_t gid;
    char *group; /* its primary group's name: "nogroup" on Debian */
};

static bool nobody_get(struct nobody *n)
{
    struct passwd *pw = getpwnam("nobody");
    struct group *gr;

    if (!pw || !pw->pw_uid || !(gr = getgrgid(pw->pw_gid))) {
        return false;
    }
    n->uid = pw->pw_uid;
    n->gid = pw->pw_gid;
    n->group = g_strdup(gr->gr_name);
    return true;
}

/* Forking clients that setuid() needs root and a "nobody"; else skip. */
static bool need_root(struct nobody *n)
{
    if (geteuid() != 0) {
        g_test_skip("needs root to run clients as another user");
        return false;
    }
    if (!nobody_get(n)) {
        g_test_skip("no user 'nobody' with a primary group");
        return false;
    }
    return true;
}

static void assert_err(const GError *err, int code, const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != G_IO_ERROR || err->code != code ||
        !strstr(err->message, text)) {
        g_error("got '%s' (code %d), wanted code %d with '%s'", err->message,
                err->code, code, text);
    }
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("%s", err->message); /* what the log would say */
}

/* ---- a listener in a directory anyone may enter ---------------------- */

struct sock {
    char *dir;
    char *path;
    int fd;
};

static void sock_open(struct sock *s, mode_t mode)
{
    GError *err = NULL;

    s->dir = g_dir_make_tmp("test-peercred-XXXXXX", NULL);
    g_assert_nonnull(s->dir);
    /* The clients are not root: let them reach the socket file. */
    g_assert_cmpint(chmod(s->dir, 0755), ==, 0);
    s->path = g_build_filename(s->dir, "test.sock", NULL);
    s->fd = unix_listen(s->path, mode, NULL, &err);
    g_assert_no_error(err);
}

static void sock_close(struct sock *s)
{
    close(s->fd);
    g_unlink(s->path);
    g_rmdir(s->dir);
    g_free(s->path);
    g_free(s->dir);
}

/*
 * Fork a client that becomes @id and connects to @path, then waits for
 * the server to hang up.  Only async-signal-safe calls after fork().
 */
static pid_t spawn_client(const char *path, const struct ident *id)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    pid_t pid;

    g_assert_cmpuint(strlen(path), <, sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        char c;
        int fd;

        /* Groups first: after setuid() we could no longer drop them. */
        if (setgroups(id->ngroups, id->groups) < 0 || setgid(id->gid) < 0 ||
            setuid(id->uid) < 0) {
            _exit(CHILD_SETUP);
        }
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) {
            _exit(CHILD_FAILED);
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            _exit(errno == EACCES ? CHILD_EACCES : CHILD_FAILED);
        }
        while (read(fd, &c, 1) > 0) {
        }
        _exit(CHILD_CONNECTED);
    }
    return pid;
}

static int child_wait(pid_t pid)
{
    int status;

    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int accept_one(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int c;

    g_assert_cmpint(poll(&p, 1, ACCEPT_TIMEOUT_MS), ==, 1);
    c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    g_assert_cmpint(c, >=, 0);
    return c;
}

/*
 * A client as @id connects to @s; does @p let it in?  On refusal the
 * message must name the client's pid and uid and contain @text.
 */
static bool check_client(struct sock *s, const struct peercred_policy *p,
                         const struct ident *id, const char *text)
{
    pid_t pid = spawn_client(s->path, id);
    int c = accept_one(s->fd);
    GError *err = NULL;
    bool ok = peercred_allowed(c, p, &err);

    close(c); /* the client exits when it sees the hang-up */
    g_assert_cmpint(child_wait(pid), ==, CHILD_CONNECTED);
    if (!ok) {
        g_autofree char *who = g_strdup_printf("refusing pid %d (uid %u, ",
                                               (int)pid, (unsigned)id->uid);

        assert_err(err, G_IO_ERROR_PERMISSION_DENIED, text);
        g_assert_true(g_str_has_prefix(err->message, who));
        g_clear_error(&err);
    }
    g_assert_no_error(err);
    return ok;
}

static void policy_or_die(struct peercred_policy *p, const char *user,
                          const char *group)
{
    GError *err = NULL;

    g_assert_true(peercred_policy_init(p, user, group, &err));
    g_assert_no_error(err);
}

/* ---- tests ------------------------------------------------------------- */

/* Our own end of a socketpair: root (or the daemon's own user) is in. */
static void test_root_allowed(void)
{
    struct peercred_policy empty, strict;
    GError *err = NULL;
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    policy_or_die(&empty, NULL, "");
    g_assert_true(peercred_allowed(sv[0], &empty, &err));
    g_assert_no_error(err);
    policy_or_die(&strict, "nobody", NULL);
    g_assert_true(peercred_allowed(sv[1], &strict, &err));
    g_assert_no_error(err);
    peercred_policy_clear(&empty);
    peercred_policy_clear(&strict);
    /* Not a socket: an error, never a pass. */
    g_assert_false(peercred_allowed(-1, &empty, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    close(sv[0]);
    close(sv[1]);
}

static void test_policy_init(void)
{
    struct peercred_policy p;
    GError *err = NULL;
    struct nobody n;

    policy_or_die(&p, NULL, NULL);
    g_assert_null(p.user);
    g_assert_null(p.group);
    g_assert_cmpuint(peercred_socket_mode(&p), ==, 0600);
    peercred_policy_clear(&p);

    policy_or_die(&p, "root", "root");
    g_assert_cmpstr(p.user, ==, "root");
    g_assert_cmpuint(p.uid, ==, 0);
    g_assert_cmpuint(p.gid, ==, 0);
    g_assert_cmpuint(peercred_socket_mode(&p), ==, 0660);
    peercred_policy_clear(&p);

    if (nobody_get(&n)) {
        policy_or_die(&p, "nobody", n.group);
        g_assert_cmpuint(p.uid, ==, n.uid);
        g_assert_cmpuint(p.gid, ==, n.gid);
        peercred_policy_clear(&p);
        g_free(n.group);
    }

    g_assert_false(
        peercred_policy_init(&p, "no-such-user-postcopyd", NULL, &err));
    assert_err(err, G_IO_ERROR_NOT_FOUND,
               "allow-user: there is no user 'no-such-user-postcopyd'");
    g_clear_error(&err);
    g_assert_null(p.user);
    g_assert_false(
        peercred_policy_init(&p, "root", "no-such-group-postcopyd", &err));
    assert_err(err, G_IO_ERROR_NOT_FOUND,
               "allow-group: there is no group 'no-such-group-postcopyd'");
    g_clear_error(&err);
    g_assert_null(p.user); /* nothing half-initialized */
    g_assert_null(p.group);
}

static void test_unprivileged_client(void)
{
    struct ident nobody = {0};
    struct peercred_policy p;
    struct group *users;
    struct nobody n;
    struct sock s;

    if (!need_root(&n)) {
        return;
    }
    nobody.uid = n.uid;
    nobody.gid = n.gid;
    sock_open(&s, 0666);

    /* No user or group configured: root only. */
    policy_or_die(&p, NULL, NULL);
    g_assert_false(check_client(&s, &p, &nobody, "only root may connect"));
    peercred_policy_clear(&p);

    /* allow-user = nobody */
    policy_or_die(&p, "nobody", NULL);
    g_assert_true(check_client(&s, &p, &nobody, NULL));
    peercred_policy_clear(&p);

    /* allow-group = nobody's primary group */
    policy_or_die(&p, NULL, n.group);
    g_assert_true(check_client(&s, &p, &nobody, NULL));
    peercred_policy_clear(&p);

    /* Another user, not in the group, is still out. */
    {
        struct ident other = {.uid = n.uid - 1, .gid = n.gid - 1};
        g_autofree char *text = g_strdup_printf(
            "only root, user 'nobody' or members of group '%s' may connect",
            n.group);

        policy_or_die(&p, "nobody", n.group);
        g_assert_false(check_client(&s, &p, &other, text));
        peercred_policy_clear(&p);
    }

    /* allow-group = a supplementary group of the client (SO_PEERGROUPS). */
    users = getgrnam("users");
    if (users && users->gr_gid != n.gid) {
        struct ident member = nobody;

        member.groups[member.ngroups++] = users->gr_gid;
        policy_or_die(&p, NULL, "users");
        g_assert_false(check_client(&s, &p, &nobody,
                                    "only root or members of group 'users' "
                                    "may connect"));
        g_assert_true(check_client(&s, &p, &member, NULL));
        peercred_policy_clear(&p);
    } else {
        g_test_message("no group 'users': supplementary groups not tested");
    }
    sock_close(&s);
    g_free(n.group);
}

/* The socket file's owner and mode keep others from connecting at all. */
static void test_socket_file(void)
{
    struct ident nobody = {0};
    struct peercred_policy p;
    GError *err = NULL;
    struct nobody n;
    struct stat st;
    struct sock s;
    pid_t pid;

    if (!need_root(&n)) {
        return;
    }
    nobody.uid = n.uid;
    nobody.gid = n.gid;

    /* Root only: 0600, and nobody cannot even connect. */
    sock_open(&s, 0600);
    policy_or_die(&p, NULL, NULL);
    g_assert_true(peercred_socket_apply(s.path, &p, &err));
    g_assert_no_error(err);
    g_assert_cmpint(stat(s.path, &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpuint(st.st_uid, ==, 0);
    pid = spawn_client(s.path, &nobody);
    g_assert_cmpint(child_wait(pid), ==, CHILD_EACCES);
    peercred_policy_clear(&p);

    /* allow-group: 0660 with that group, and its members get in. */
    policy_or_die(&p, NULL, n.group);
    g_assert_true(peercred_socket_apply(s.path, &p, &err));
    g_assert_no_error(err);
    g_assert_cmpint(stat(s.path, &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0660);
    g_assert_cmpuint(st.st_uid, ==, 0);
    g_assert_cmpuint(st.st_gid, ==, n.gid);
    g_assert_true(check_client(&s, &p, &nobody, NULL));
    peercred_policy_clear(&p);
    sock_close(&s);

    /* allow-user: 0600, owned by that user. */
    sock_open(&s, 0600);
    policy_or_die(&p, "nobody", NULL);
    g_assert_true(peercred_socket_apply(s.path, &p, &err));
    g_assert_no_error(err);
    g_assert_cmpint(stat(s.path, &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpuint(st.st_uid, ==, n.uid);
    g_assert_true(check_client(&s, &p, &nobody, NULL));
    peercred_policy_clear(&p);
    sock_close(&s);

    /* A socket that is not there any more. */
    policy_or_die(&p, "nobody", NULL);
    g_assert_false(peercred_socket_apply("/nonexistent/x.sock", &p, &err));
    assert_err(err, G_IO_ERROR_NOT_FOUND,
               "cannot give /nonexistent/x.sock to user nobody");
    g_clear_error(&err);
    peercred_policy_clear(&p);
    g_free(n.group);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/peercred/root-allowed", test_root_allowed);
    g_test_add_func("/peercred/policy-init", test_policy_init);
    g_test_add_func("/peercred/unprivileged-client", test_unprivileged_client);
    g_test_add_func("/peercred/socket-file", test_socket_file);
    return g_test_run();
}
