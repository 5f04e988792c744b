/* unix_listen.c - see unix_listen.h. */
#include "unix_listen.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <gio/gio.h>

#include "errno_error.h"

#define UNIX_LISTEN_BACKLOG 16

static bool make_parent(const char *path, GError **err)
{
    g_autofree char *dir = g_path_get_dirname(path);

    if (g_mkdir_with_parents(dir, 0755) < 0) {
        return errno_error(err, errno, "cannot create directory %s", dir);
    }
    return true;
}

static bool fill_addr(struct sockaddr_un *sa, const char *path, GError **err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "socket path %s is longer than %zu bytes", path,
                    sizeof(sa->sun_path) - 1);
        return false;
    }
    strcpy(sa->sun_path, path);
    return true;
}

/* Is anyone accepting on the socket at @sa?  Sets @e when unsure. */
static bool socket_is_live(const struct sockaddr_un *sa, int *e)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r;

    if (fd < 0) {
        *e = errno;
        return true;
    }
    r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    *e = r < 0 ? errno : 0;
    close(fd);
    /* EAGAIN: a full backlog is still a live listener. */
    return r == 0 || *e == EAGAIN;
}

static bool remove_stale(const struct sockaddr_un *sa, GError **err)
{
    const char *path = sa->sun_path;
    struct stat st;
    int e = 0;

    if (lstat(path, &st) < 0) {
        return errno == ENOENT ||
               errno_error(err, errno, "cannot stat %s", path);
    }
    if (!S_ISSOCK(st.st_mode)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "%s exists and is not a socket; not replacing it", path);
        return false;
    }
    if (socket_is_live(sa, &e)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                    "%s is in use (is another postcopyd running?)", path);
        return false;
    }
    if (e != ECONNREFUSED) {
        return errno_error(err, e, "cannot probe the old socket %s", path);
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        return errno_error(err, errno, "cannot remove the stale socket %s",
                           path);
    }
    return true;
}

static bool bind_listen(int fd, const struct sockaddr_un *sa, mode_t mode,
                        struct stat *bound, GError **err)
{
    const char *path = sa->sun_path;

    if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        return errno_error(err, errno, "cannot bind %s", path);
    }
    /* Until listen() every connect() is refused: no window to race. */
    if (chmod(path, mode) < 0 || stat(path, bound) < 0) {
        errno_error(err, errno, "cannot chmod %s", path);
        goto fail;
    }
    if (listen(fd, UNIX_LISTEN_BACKLOG) < 0) {
        errno_error(err, errno, "cannot listen on %s", path);
        goto fail;
    }
    return true;
fail:
    unlink(path);
    return false;
}

int unix_listen(const char *path, mode_t mode, struct stat *bound, GError **err)
{
    struct stat ignored;
    struct sockaddr_un sa;
    int fd;

    if (!fill_addr(&sa, path, err) || !make_parent(path, err) ||
        !remove_stale(&sa, err)) {
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errno_error(err, errno, "cannot create a socket for %s", path);
        return -1;
    }
    if (!bind_listen(fd, &sa, mode, bound ? bound : &ignored, err)) {
        close(fd);
        return -1;
    }
    return fd;
}

void unix_listen_unlink(const char *path, const struct stat *bound)
{
    struct stat there;

    if (lstat(path, &there) == 0 && there.st_ino == bound->st_ino &&
        there.st_dev == bound->st_dev) {
        unlink(path);
    }
}
