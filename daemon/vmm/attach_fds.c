/*
 * attach_fds.c - what every fd a VMM hands over must be (attach.h,
 * attach_check_fds()): a memory file of at least its region's size, a
 * uffd that answers UFFDIO_API, never a socket.
 */
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "attach_priv.h"
#include "json_depth.h"

static bool fd_errno(GError **err, const struct region *r, const char *what)
{
    int e = errno;

    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                "attach: region at 0x%" PRIx64 ": %s: %s", r->base, what,
                g_strerror(e));
    return false;
}

/*
 * @r's fd is a file of the filesystem its backing says (a memfd or
 * /dev/shm file is tmpfs).  Anything else, a socket above all (the
 * VMM's own end of the attach socket would keep it open for good), is
 * refused.
 */
static bool check_region_fs(const struct region *r, const struct stat *st,
                            GError **err)
{
    unsigned long want =
        r->kind == BACKING_HUGETLBFS ? HUGETLBFS_MAGIC : TMPFS_MAGIC;
    struct statfs fs;

    if (!S_ISREG(st->st_mode)) {
        attach_fail(err,
                    "attach: region at 0x%" PRIx64 ": its memory fd is not a "
                    "file (mode 0%o)",
                    r->base, (unsigned)(st->st_mode & S_IFMT));
        return false;
    }
    if (fstatfs(r->fd, &fs) < 0) {
        return fd_errno(err, r, "fstatfs");
    }
    if ((unsigned long)fs.f_type != want) {
        attach_fail(
            err,
            "attach: region at 0x%" PRIx64 ": its memory fd is no %s file "
            "(filesystem 0x%lx)",
            r->base, backing_kind_name(r->kind), (unsigned long)fs.f_type);
        return false;
    }
    return true;
}

/*
 * @r fits in its memory file: a region past its end would be accepted
 * and fault with SIGBUS (the daemon's alias mapping) or never resolve.
 */
static bool check_region_fd(const struct region *r, GError **err)
{
    struct stat st;

    if (fstat(r->fd, &st) < 0) {
        return fd_errno(err, r, "fstat");
    }
    if (!check_region_fs(r, &st, err)) {
        return false;
    }
    if (r->offset > UINT64_MAX - r->size ||
        r->offset + r->size > (uint64_t)st.st_size) {
        attach_fail(err,
                    "attach: region at 0x%" PRIx64 ": %" PRIu64
                    " bytes at offset "
                    "%" PRIu64 ", but its memory fd holds %" PRIu64 " bytes",
                    r->base, r->size, r->offset, (uint64_t)st.st_size);
        return false;
    }
    return true;
}

/*
 * The link of a userfaultfd names its anon inode.  Asking the fd itself
 * (UFFDIO_API) would use up the one handshake it takes, the VMM's or the
 * daemon's.
 */
static bool is_uffd(int fd)
{
    char path[32], target[64];
    ssize_t n;

    g_snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
        return false;
    }
    target[n] = '\0';
    return !strcmp(target, "anon_inode:[userfaultfd]");
}

bool attach_check_fds(const struct attach_info *info, GError **err)
{
    if (!is_uffd(info->uffd)) {
        attach_fail(err, "attach: the uffd (fds[0]) is not a userfaultfd");
        return false;
    }
    for (size_t i = 0; i < info->regions.n; i++) {
        const struct region *r = &info->regions.regions[i];

        if (r->fd >= 0 && !check_region_fd(r, err)) {
            return false;
        }
    }
    return true;
}
