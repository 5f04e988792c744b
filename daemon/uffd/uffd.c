/* uffd.c - see uffd.h. */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const feature_names[] = {
    "PAGEFAULT_FLAG_WP",
    "EVENT_FORK",
    "EVENT_REMAP",
    "EVENT_REMOVE",
    "MISSING_HUGETLBFS",
    "MISSING_SHMEM",
    "EVENT_UNMAP",
    "SIGBUS",
    "THREAD_ID",
    "MINOR_HUGETLBFS",
    "MINOR_SHMEM",
    "EXACT_ADDRESS",
    "WP_HUGETLBFS_SHMEM",
    "WP_UNPOPULATED",
    "POISON",
    "WP_ASYNC",
    "MOVE",
};

const char *uffd_feature_name(uint64_t bit)
{
    int i;

    if (bit == 0 || (bit & (bit - 1))) {
        return "?";
    }
    i = __builtin_ctzll(bit);
    return i < (int)G_N_ELEMENTS(feature_names) ? feature_names[i] : "?";
}

const char *uffd_ioctls_string(uint64_t ioctls, char *buf, size_t len)
{
    static const struct {
        int nr;
        const char *name;
    } names[] = {
        {_UFFDIO_WAKE, "WAKE"},
        {_UFFDIO_COPY, "COPY"},
        {_UFFDIO_ZEROPAGE, "ZEROPAGE"},
        {_UFFDIO_MOVE, "MOVE"},
        {_UFFDIO_WRITEPROTECT, "WRITEPROTECT"},
        {_UFFDIO_CONTINUE, "CONTINUE"},
        {_UFFDIO_POISON, "POISON"},
    };
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        if (!(ioctls & (1ULL << names[i].nr)) || used >= len) {
            continue;
        }
        used += snprintf(buf + used, len - used, "%s%s", used ? " " : "",
                         names[i].name);
    }
    return buf;
}

enum uffd_errclass uffd_classify(int err)
{
    switch (err) {
    case EAGAIN:
    case EINTR:
        return UFFD_ERR_RETRY;
    case EEXIST:
        return UFFD_ERR_ALREADY;
    case ESRCH:  /* the VMM's mm is gone */
    case ENOENT: /* the range is no longer registered / mapped */
    case ENOSPC: /* mm exiting (older kernels) */
        return UFFD_ERR_GONE;
    default:
        return UFFD_ERR_FATAL;
    }
}

int uffd_open(GError **err)
{
    int dev, fd;

    /*
     * /dev/userfaultfd is not subject to vm.unprivileged_userfaultfd, so
     * try it first; old kernels only have the syscall.
     */
    dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
        if (fd >= 0) {
            return fd;
        }
    }
    fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot create a userfaultfd: %s", g_strerror(errno));
    }
    return fd;
}

static int api_ioctl(int fd, uint64_t features, struct uffdio_api *api)
{
    memset(api, 0, sizeof(*api));
    api->api = UFFD_API;
    api->features = features;
    return ioctl(fd, UFFDIO_API, api) ? -errno : 0;
}

bool uffd_probe(struct uffd_caps *caps, GError **err)
{
    struct uffdio_api api;
    int fd, r;

    memset(caps, 0, sizeof(*caps));
    fd = uffd_open(err);
    if (fd < 0) {
        return false;
    }
    r = api_ioctl(fd, 0, &api);
    close(fd);
    if (r < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-r),
                    "UFFDIO_API failed: %s", g_strerror(-r));
        return false;
    }
    caps->advertised = api.features;
    caps->api_ioctls = api.ioctls;

    /*
     * An unknown or refused bit fails the whole UFFDIO_API, and the API
     * can be done once per uffd: so one fresh uffd per bit.  A bit the
     * kernel advertises may still be refused (EVENT_FORK without
     * CAP_SYS_PTRACE), which is why advertised is not enough.
     */
    for (int i = 0; i < 64; i++) {
        uint64_t bit = 1ULL << i;

        if (!(UFFD_KNOWN_FEATURES & bit) && !(caps->advertised & bit)) {
            continue;
        }
        fd = uffd_open(NULL);
        if (fd < 0) {
            continue;
        }
        if (api_ioctl(fd, bit, &api) == 0) {
            caps->usable |= bit;
        }
        close(fd);
    }
    return true;
}

bool uffd_api(int fd, uint64_t wanted, const struct uffd_caps *caps,
              struct uffd *u, uint64_t *dropped, GError **err)
{
    struct uffdio_api api;
    uint64_t ask = caps ? (wanted & caps->usable) : wanted;
    int r;

    if (dropped) {
        *dropped = wanted & ~ask;
    }
    r = api_ioctl(fd, ask, &api);
    if (r == -EINVAL && ask) {
        /* Distinguish "already initialised" from "feature refused". */
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "UFFDIO_API refused features 0x%" G_GINT64_MODIFIER
                    "x: the uffd was already initialised, or a feature "
                    "is not offered by this kernel",
                    ask);
        return false;
    }
    if (r < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-r),
                    "UFFDIO_API failed: %s", g_strerror(-r));
        return false;
    }
    memset(u, 0, sizeof(*u));
    u->fd = fd;
    u->features = ask;
    return true;
}

bool uffd_read_features(int fd, uint64_t *features, GError **err)
{
    g_autofree char *path = g_strdup_printf("/proc/self/fdinfo/%d", fd);
    g_autofree char *text = NULL;
    unsigned long long api, feat;
    const char *line;

    if (!g_file_get_contents(path, &text, NULL, err)) {
        return false;
    }
    /* "API:\t<api>:<features>:<ioctls>", all hex (fs/userfaultfd.c). */
    line = strstr(text, "API:");
    if (!line || sscanf(line, "API:\t%llx:%llx:", &api, &feat) != 2) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "fd %d is not a userfaultfd (no API line in %s)", fd, path);
        return false;
    }
    /* Bit 31 is the kernel's own "initialised" marker, not a feature. */
    *features = feat & ~(1ULL << 31);
    return true;
}

bool uffd_register(struct uffd *u, uint64_t start, uint64_t len, uint64_t mode,
                   uint64_t *ioctls, GError **err)
{
    struct uffdio_register reg = {
        .range = {.start = start, .len = len},
        .mode = mode,
    };

    if (ioctl(u->fd, UFFDIO_REGISTER, &reg)) {
        int e = errno;

        g_set_error(
            err, G_IO_ERROR, g_io_error_from_errno(e),
            "UFFDIO_REGISTER 0x%" G_GINT64_MODIFIER "x+0x%" G_GINT64_MODIFIER
            "x mode %s%s%s: %s",
            start, len, (mode & UFFDIO_REGISTER_MODE_MISSING) ? "MISSING " : "",
            (mode & UFFDIO_REGISTER_MODE_MINOR) ? "MINOR " : "",
            (mode & UFFDIO_REGISTER_MODE_WP) ? "WP " : "", g_strerror(e));
        return false;
    }
    if (ioctls) {
        *ioctls = reg.ioctls;
    }
    return true;
}

bool uffd_unregister(struct uffd *u, uint64_t start, uint64_t len, GError **err)
{
    struct uffdio_range range = {.start = start, .len = len};

    if (ioctl(u->fd, UFFDIO_UNREGISTER, &range)) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                    "UFFDIO_UNREGISTER 0x%" G_GINT64_MODIFIER
                    "x+0x%" G_GINT64_MODIFIER "x: %s",
                    start, len, g_strerror(e));
        return false;
    }
    return true;
}

/*
 * EAGAIN with no progress means a non-cooperative event is queued unread
 * (mmap_changing): nothing succeeds until somebody reads it.  The owner of
 * the event loop decides (its drain hook); without one, yield and retry,
 * and give up after a bound so nobody spins forever.
 */
static bool backoff(struct uffd *u, int *tries)
{
    if (++*tries > UFFD_EAGAIN_RETRIES) {
        return false;
    }
    if (u->drain) {
        return u->drain(u->drain_opaque);
    }
    sched_yield();
    return true;
}

/*
 * The one loop behind COPY, ZEROPAGE and CONTINUE.  The kernel reports
 * progress in the ioctl's last field: bytes done, or a negative errno when
 * nothing was done.  A page that is already present (EEXIST) is skipped and
 * woken: a thread may be waiting on it since before it appeared.
 */
enum fill_op { FILL_COPY, FILL_ZERO, FILL_CONTINUE };

static int fill_once(struct uffd *u, enum fill_op op, uint64_t dst,
                     const uint8_t *src, uint64_t len, unsigned flags,
                     int64_t *progress)
{
    int r;

    switch (op) {
    case FILL_COPY: {
        struct uffdio_copy c = {
            .dst = dst,
            .src = (uint64_t)(uintptr_t)src,
            .len = len,
            .mode =
                ((flags & UFFD_OP_DONTWAKE) ? UFFDIO_COPY_MODE_DONTWAKE : 0) |
                ((flags & UFFD_OP_WP) ? UFFDIO_COPY_MODE_WP : 0),
        };
        r = ioctl(u->fd, UFFDIO_COPY, &c) ? -errno : 0;
        *progress = c.copy;
        break;
    }
    case FILL_ZERO: {
        struct uffdio_zeropage z = {
            .range = {.start = dst, .len = len},
            .mode =
                (flags & UFFD_OP_DONTWAKE) ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0,
        };
        r = ioctl(u->fd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
        *progress = z.zeropage;
        break;
    }
    default: {
        struct uffdio_continue c = {
            .range = {.start = dst, .len = len},
            .mode = ((flags & UFFD_OP_DONTWAKE) ? UFFDIO_CONTINUE_MODE_DONTWAKE
                                                : 0) |
                    ((flags & UFFD_OP_WP) ? UFFDIO_CONTINUE_MODE_WP : 0),
        };
        r = ioctl(u->fd, UFFDIO_CONTINUE, &c) ? -errno : 0;
        *progress = c.mapped;
        break;
    }
    }
    if (r == 0) {
        *progress = len;
    }
    return r;
}

static int fill(struct uffd *u, enum fill_op op, uint64_t dst,
                const uint8_t *src, uint64_t len, uint64_t page_size,
                unsigned flags, uint64_t *done)
{
    uint64_t off = 0, installed = 0;
    int tries = 0;

    while (off < len) {
        int64_t progress = 0;
        int r = fill_once(u, op, dst + off, src ? src + off : NULL, len - off,
                          flags, &progress);

        if (progress > 0) {
            off += progress;
            installed += progress;
            tries = 0;
            continue;
        }
        if (r == 0) {
            break; /* defensive: success with no progress */
        }
        switch (uffd_classify(-r)) {
        case UFFD_ERR_ALREADY:
            if (!(flags & UFFD_OP_DONTWAKE)) {
                uffd_wake(u, dst + off, page_size);
            }
            off += page_size;
            continue;
        case UFFD_ERR_RETRY:
            if (backoff(u, &tries)) {
                continue;
            }
            /* fall through */
        default:
            if (done) {
                *done = installed;
            }
            return r;
        }
    }
    if (done) {
        *done = installed;
    }
    return 0;
}

int uffd_copy(struct uffd *u, uint64_t dst, const void *src, uint64_t len,
              uint64_t page_size, unsigned flags, uint64_t *done)
{
    return fill(u, FILL_COPY, dst, src, len, page_size, flags, done);
}

int uffd_zeropage(struct uffd *u, uint64_t dst, uint64_t len,
                  uint64_t page_size, unsigned flags, uint64_t *done)
{
    return fill(u, FILL_ZERO, dst, NULL, len, page_size, flags, done);
}

int uffd_continue(struct uffd *u, uint64_t dst, uint64_t len,
                  uint64_t page_size, unsigned flags, uint64_t *done)
{
    return fill(u, FILL_CONTINUE, dst, NULL, len, page_size, flags, done);
}

int uffd_wake(struct uffd *u, uint64_t start, uint64_t len)
{
    struct uffdio_range range = {.start = start, .len = len};

    return ioctl(u->fd, UFFDIO_WAKE, &range) ? -errno : 0;
}

int uffd_writeprotect(struct uffd *u, uint64_t start, uint64_t len,
                      bool protect, unsigned flags)
{
    struct uffdio_writeprotect wp = {
        .range = {.start = start, .len = len},
        .mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
                ((flags & UFFD_OP_DONTWAKE) ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE
                                            : 0),
    };
    int tries = 0;

    while (ioctl(u->fd, UFFDIO_WRITEPROTECT, &wp)) {
        int r = -errno;

        if (uffd_classify(-r) != UFFD_ERR_RETRY || !backoff(u, &tries)) {
            return r;
        }
    }
    return 0;
}

int uffd_read_msgs(struct uffd *u, struct uffd_msg *msgs, int n)
{
    ssize_t got;

    do {
        got = read(u->fd, msgs, sizeof(*msgs) * n);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        return errno == EAGAIN ? 0 : -errno;
    }
    if (got % sizeof(*msgs)) {
        return -EIO; /* the kernel only returns whole messages */
    }
    return got / sizeof(*msgs);
}

int uffd_poll(struct uffd *u, int timeout_ms)
{
    struct pollfd p = {.fd = u->fd, .events = POLLIN};
    int r;

    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return -errno;
    }
    if (r > 0 && (p.revents & (POLLERR | POLLHUP))) {
        return -EPIPE;
    }
    return r;
}
