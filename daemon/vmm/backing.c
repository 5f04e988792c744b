/* backing.c - see backing.h. */
#include "backing.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem_guard.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

#define SMALL_PAGE 4096ULL

/*
 * Why page data moves with pread()/pwrite() on a file and not through a
 * mapping of the daemon's (r->alias, a staging mapping): the first touch
 * of a page through a mapping costs a page-table entry, a fault, and on a
 * virtualised host with shadow paging an exit to the hypervisor as well:
 * 15-20 us per 4 KiB page on our machines (0.2-0.36 GiB/s), where the
 * kernel's copy through its own direct map costs nothing of the kind
 * (pread 5 GiB/s, pwrite 3.3 GiB/s on the same machine).  The daemon
 * touches each page once or twice, so no mapping of it would ever pay for
 * itself.  hugetlbfs has no write(), and its pages cost one entry per huge
 * page: it keeps writing through the mapping.  So does a fault's reply
 * (BACKING_INSTALL_MAPPED): one page, whose write() would wait for the
 * file's lock behind a bulk receiver's 1 MiB write; a fault through the
 * mapping on a page the page cache holds costs a few microseconds.
 */

static int install_minor(struct uffd *u, const struct region *r, uint64_t dst,
                         const void *data, uint64_t len, unsigned flags,
                         uint64_t *done);
static int install_anon(struct uffd *u, const struct region *r, uint64_t dst,
                        const void *data, uint64_t len, unsigned flags,
                        uint64_t *done);
static bool cache_open(const struct region *r, struct copy_area *ca,
                       GError **err);
static void cache_reopen(const struct region *r, struct copy_area *ca);
static int file_write(const struct region *r, struct copy_area *ca,
                      uint64_t off, const void *data, uint64_t len);
static int alias_write(const struct region *r, struct copy_area *ca,
                       uint64_t off, const void *data, uint64_t len);
static bool file_read(const struct region *r, uint64_t off, uint64_t len,
                      uint8_t *buf, GError **err);
static void cache_release(const struct region *r, struct copy_area *ca,
                          uint64_t off, uint64_t len);
static int cache_install(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t off, uint64_t len,
                         bool zero, uint64_t *done);
static void cache_drop(const struct region *r, struct copy_area *ca,
                       uint64_t off, uint64_t len);
static bool file_discard(const struct region *r, GError **err);
static bool staging_open(const struct region *r, struct copy_area *ca,
                         GError **err);
static void staging_reopen(const struct region *r, struct copy_area *ca);
static int staging_write(const struct region *r, struct copy_area *ca,
                         uint64_t off, const void *data, uint64_t len);
static void staging_release(const struct region *r, struct copy_area *ca,
                            uint64_t off, uint64_t len);
static int staging_install(struct uffd *u, const struct region *r,
                           const struct copy_area *ca, uint64_t off,
                           uint64_t len, bool zero, uint64_t *done);
static bool anon_discard(const struct region *r, GError **err);

static const struct backing_ops backing_table[] = {
    {
        .kind = BACKING_ANON,
        .name = "anon",
        .dest_register_mode = UFFDIO_REGISTER_MODE_MISSING,
        .dest_features = 0,
        .minor = false,
        .has_zeropage = true,
        .install = install_anon,
        .copy_open = staging_open,
        .copy_reopen = staging_reopen,
        .copy_write = staging_write,
        .copy_release = staging_release,
        .install_copy = staging_install,
        .copy_drop = staging_release,
        .discard = anon_discard,
    },
    {
        /*
         * MINOR for pages already in the page cache (installed with no
         * network), MISSING for holes: both resolved by writing the page
         * cache through the alias and CONTINUE.
         */
        .kind = BACKING_SHMEM,
        .name = "shmem",
        .dest_register_mode =
            UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
        .dest_features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM,
        .minor = true,
        .has_zeropage = true,
        .has_holes = true,
        .sends_file = true,
        .read = file_read,
        .install = install_minor,
        .copy_open = cache_open,
        .copy_reopen = cache_reopen,
        .copy_write = file_write,
        .copy_release = cache_release,
        .install_copy = cache_install,
        .copy_drop = cache_drop,
        .discard = file_discard,
    },
    {
        /* Whole huge pages only: high-granularity mapping never merged. */
        .kind = BACKING_HUGETLBFS,
        .name = "hugetlbfs",
        .dest_register_mode =
            UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
        .dest_features =
            UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_HUGETLBFS,
        .minor = true,
        .has_zeropage = false,
        .receive_in_place = true,
        .read = file_read,
        .install = install_minor,
        .copy_open = cache_open,
        .copy_reopen = cache_reopen,
        .copy_write = alias_write,
        .copy_release = cache_release,
        .install_copy = cache_install,
        .copy_drop = cache_drop,
        .discard = file_discard,
    },
};

const struct backing_ops *backing_ops_get(enum backing_kind kind)
{
    for (size_t i = 0; i < G_N_ELEMENTS(backing_table); i++) {
        if (backing_table[i].kind == kind) {
            return &backing_table[i];
        }
    }
    return NULL;
}

uint64_t backing_default_hugepage_size(void)
{
    g_autofree char *text = NULL;
    const char *p;

    if (!g_file_get_contents("/proc/meminfo", &text, NULL, NULL)) {
        return 0;
    }
    p = strstr(text, "Hugepagesize:");
    return p ? strtoull(p + strlen("Hugepagesize:"), NULL, 10) * 1024 : 0;
}

static int memfd_for(enum backing_kind kind, uint64_t page_size,
                     const char *name, GError **err)
{
    unsigned flags = MFD_CLOEXEC;
    int fd;

    if (kind == BACKING_HUGETLBFS) {
        flags |= MFD_HUGETLB |
                 ((unsigned)__builtin_ctzll(page_size) << MFD_HUGE_SHIFT);
    }
    fd = memfd_create(name, flags);
    if (fd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "memfd_create(%s, %s): %s", name,
                    kind == BACKING_HUGETLBFS ? "hugetlb" : "shmem",
                    g_strerror(errno));
    }
    return fd;
}

bool backing_alloc(enum backing_kind kind, uint64_t size, uint64_t page_size,
                   const char *name, void **addr, int *fd, GError **err)
{
    void *p;
    int mfd = -1;

    if (!page_size) {
        page_size = kind == BACKING_HUGETLBFS ? backing_default_hugepage_size()
                                              : SMALL_PAGE;
    }
    if (!page_size || (page_size & (page_size - 1)) || !size ||
        size % page_size) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "guest RAM size %" G_GUINT64_FORMAT
                    " is not a multiple of the page size %" G_GUINT64_FORMAT,
                    size, page_size);
        return false;
    }
    if (kind == BACKING_ANON) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    } else {
        mfd = memfd_for(kind, page_size, name, err);
        if (mfd < 0) {
            return false;
        }
        if (ftruncate(mfd, size)) {
            g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                        "sizing %s guest RAM to %" G_GUINT64_FORMAT ": %s",
                        backing_kind_name(kind), size, g_strerror(errno));
            close(mfd);
            return false;
        }
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    }
    if (p == MAP_FAILED) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                    "mapping %" G_GUINT64_FORMAT " bytes of %s guest RAM: %s%s",
                    size, backing_kind_name(kind), g_strerror(e),
                    kind == BACKING_HUGETLBFS
                        ? " (are enough huge pages reserved in "
                          "/proc/sys/vm/nr_hugepages?)"
                        : "");
        if (mfd >= 0) {
            close(mfd);
        }
        return false;
    }
    *addr = p;
    *fd = mfd;
    return true;
}

static int install_minor(struct uffd *u, const struct region *r, uint64_t dst,
                         const void *data, uint64_t len, unsigned flags,
                         uint64_t *done)
{
    int ret;

    /*
     * The caller guarantees these pages are not installed in the running
     * guest (page state table), so writing the page cache cannot change
     * memory the guest already sees.
     */
    ret = (flags & BACKING_INSTALL_MAPPED) && r->alias
              ? alias_write(r, NULL, dst - r->base, data, len)
              : backing_ops_get(r->kind)->copy_write(r, NULL, dst - r->base,
                                                     data, len);
    if (ret < 0) {
        return ret;
    }
    return uffd_continue(u, dst, len, r->page_size,
                         flags & ~BACKING_INSTALL_MAPPED, done);
}

static int install_anon(struct uffd *u, const struct region *r, uint64_t dst,
                        const void *data, uint64_t len, unsigned flags,
                        uint64_t *done)
{
    flags &= ~BACKING_INSTALL_MAPPED; /* COPY writes no file */
    if (!data) {
        return uffd_zeropage(u, dst, len, r->page_size, flags, done);
    }
    return uffd_copy(u, dst, data, len, r->page_size, flags, done);
}

int backing_install(struct uffd *u, const struct region *r, uint64_t dst,
                    const void *data, uint64_t len, unsigned flags,
                    uint64_t *done)
{
    if (!region_contains(r, dst) || len > r->size - (dst - r->base) ||
        (dst - r->base) % r->page_size || len % r->page_size) {
        return -ERANGE;
    }
    return backing_ops_get(r->kind)->install(u, r, dst, data, len, flags, done);
}

/* ---- the copy area: the page cache (file-backed) ---- */

static bool cache_open(const struct region *r, struct copy_area *ca,
                       GError **err)
{
    if (!r->alias) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "region %u: %s memory not mapped by the daemon", r->id,
                    backing_kind_name(r->kind));
        return false;
    }
    ca->base = r->alias;
    ca->fd = -1;
    ca->owned = false;
    /* The page cache may hold anything: zeroing must really clear. */
    atomic_store(&ca->used, true);
    return true;
}

static void cache_reopen(const struct region *r, struct copy_area *ca)
{
    ca->base = r->alias;
    ca->fd = -1;
    ca->owned = false;
    atomic_store(&ca->used, true);
}

/* What a write of zeroes copies from: a page cache write is a copy. */
static const uint8_t zeros[64 * 1024];

/* @len bytes of @data (NULL: zeroes) at @off of @fd: 0 or a negative errno. */
static int fd_write(int fd, uint64_t off, const void *data, uint64_t len)
{
    while (len) {
        uint64_t step = data ? len : MIN(len, sizeof(zeros));
        ssize_t n = pwrite(fd, data ? data : zeros, step, (off_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        off += n;
        len -= n;
        data = data ? (const uint8_t *)data + n : NULL;
    }
    return 0;
}

static int file_write(const struct region *r, struct copy_area *ca,
                      uint64_t off, const void *data, uint64_t len)
{
    (void)ca;
    return fd_write(r->fd, r->offset + off, data, len);
}

static int alias_write(const struct region *r, struct copy_area *ca,
                       uint64_t off, const void *data, uint64_t len)
{
    (void)ca;
    /* A file the VMM shrank under the alias fails the copy, not the daemon. */
    return mem_guard_copy(r->alias + off, data, len);
}

/* All of [off, off + len) of @fd into @buf: 0 or a negative errno. */
static int fd_read(int fd, uint64_t off, uint64_t len, uint8_t *buf)
{
    while (len) {
        ssize_t n = pread(fd, buf, len, (off_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        off += n;
        len -= n;
        buf += n;
    }
    return 0;
}

static bool file_read(const struct region *r, uint64_t off, uint64_t len,
                      uint8_t *buf, GError **err)
{
    int ret = fd_read(r->fd, r->offset + off, len, buf);

    if (ret < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "reading %s guest RAM at offset %" G_GUINT64_FORMAT ": %s",
                    backing_kind_name(r->kind), r->offset + off,
                    ret == -EIO ? "end of file" : g_strerror(-ret));
        return false;
    }
    return true;
}

/* The page cache is the guest's memory now: nothing to give back. */
static void cache_release(const struct region *r, struct copy_area *ca,
                          uint64_t off, uint64_t len)
{
    (void)r, (void)ca, (void)off, (void)len;
}

static int cache_install(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t off, uint64_t len,
                         bool zero, uint64_t *done)
{
    (void)ca, (void)zero; /* a zero page is zeroes in the page cache */
    return uffd_continue(u, r->base + off, len, r->page_size, 0, done);
}

/*
 * A removed page's copy is the page cache: punch it, so that nothing of
 * the source's shows through once the range is no longer registered.
 */
static void cache_drop(const struct region *r, struct copy_area *ca,
                       uint64_t off, uint64_t len)
{
    (void)ca;
    if (r->fd >= 0) {
        fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(r->offset + off), (off_t)len);
    }
}

static bool file_discard(const struct region *r, GError **err)
{
    if (r->fd < 0 ||
        !fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->offset,
                   r->size)) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                "discarding %" G_GUINT64_FORMAT " MiB of %s RAM: %s",
                r->size >> 20, backing_kind_name(r->kind), g_strerror(errno));
    return false;
}

/*
 * ---- the copy area: a staging area (anonymous) ----
 * A memfd the size of the region, never mapped: pages go in with pwrite
 * and come out with pread into a small buffer for UFFDIO_COPY, both
 * through the kernel's direct map (the top of this file says why).  Its
 * pages are shmem, not the daemon's RSS: /proc/PID/fd names it
 * "postcopyd-staging".
 */

static bool staging_open(const struct region *r, struct copy_area *ca,
                         GError **err)
{
    int fd = memfd_create("postcopyd-staging", MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, (off_t)r->size)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "staging area for region %u: %s", r->id, g_strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    ca->base = NULL;
    ca->fd = fd;
    ca->owned = true;
    /* Fresh staging reads as zero: only a reused one needs clearing. */
    atomic_store(&ca->used, false);
    return true;
}

/* The copies lived in the dead daemon's memory: only zero pages are left. */
static void staging_reopen(const struct region *r, struct copy_area *ca)
{
    (void)r;
    ca->base = NULL;
    ca->fd = -1;
    ca->owned = false;
    atomic_store(&ca->used, false);
}

/* Only frees memory: a hole reads back as zeroes. */
static void staging_punch(const struct copy_area *ca, uint64_t off,
                          uint64_t len)
{
    fallocate(ca->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
              (off_t)len);
}

static int staging_write(const struct region *r, struct copy_area *ca,
                         uint64_t off, const void *data, uint64_t len)
{
    (void)r;
    if (!data) {
        staging_punch(ca, off, len);
        return 0;
    }
    return fd_write(ca->fd, off, data, len);
}

static void staging_release(const struct region *r, struct copy_area *ca,
                            uint64_t off, uint64_t len)
{
    (void)r;
    if (ca->fd >= 0 && atomic_load(&ca->used)) {
        staging_punch(ca, off, len);
    }
}

/* Per installing thread: what a run of copies is read into for COPY. */
#define STAGING_CHUNK (256 * 1024)
static GPrivate staging_buf = G_PRIVATE_INIT(g_free);

static int staging_install(struct uffd *u, const struct region *r,
                           const struct copy_area *ca, uint64_t off,
                           uint64_t len, bool zero, uint64_t *progress)
{
    uint8_t *buf;

    if (zero || ca->fd < 0) {
        return uffd_zeropage(u, r->base + off, len, r->page_size, 0, progress);
    }
    buf = g_private_get(&staging_buf);
    if (!buf) {
        buf = g_malloc(STAGING_CHUNK);
        g_private_set(&staging_buf, buf);
    }
    for (uint64_t done = 0; done < len;) {
        uint64_t step = MIN(len - done, STAGING_CHUNK), part = 0;
        int ret = fd_read(ca->fd, off + done, step, buf);

        if (ret == 0) {
            ret = uffd_copy(u, r->base + off + done, buf, step, r->page_size, 0,
                            &part);
        }
        if (ret < 0) {
            if (progress) {
                *progress = done + part;
            }
            return ret;
        }
        done += step;
    }
    if (progress) {
        *progress = len;
    }
    return 0;
}

static bool anon_discard(const struct region *r, GError **err)
{
    (void)r, (void)err; /* the VMM's own memory: nothing of ours to drop */
    return true;
}

/* ---- what the engine calls ---- */

bool backing_copy_open(const struct region *r, struct copy_area *ca,
                       GError **err)
{
    return backing_ops_get(r->kind)->copy_open(r, ca, err);
}

void backing_copy_reopen(const struct region *r, struct copy_area *ca)
{
    backing_ops_get(r->kind)->copy_reopen(r, ca);
}

void backing_copy_close(const struct region *r, struct copy_area *ca)
{
    (void)r;
    if (ca->owned && ca->fd >= 0) {
        close(ca->fd);
    }
    ca->base = NULL;
    ca->fd = -1;
    ca->owned = false;
}

int backing_copy_write(const struct region *r, struct copy_area *ca,
                       uint64_t first, uint64_t n, const void *data)
{
    return backing_ops_get(r->kind)->copy_write(r, ca, first * r->page_size,
                                                data, n * r->page_size);
}

void backing_copy_release(const struct region *r, struct copy_area *ca,
                          uint64_t first, uint64_t n)
{
    backing_ops_get(r->kind)->copy_release(r, ca, first * r->page_size,
                                           n * r->page_size);
}

int backing_install_copy(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t first, uint64_t n,
                         bool zero, uint64_t *done)
{
    return backing_ops_get(r->kind)->install_copy(
        u, r, ca, first * r->page_size, n * r->page_size, zero, done);
}

void backing_copy_drop(const struct region *r, struct copy_area *ca,
                       uint64_t first, uint64_t n)
{
    backing_ops_get(r->kind)->copy_drop(r, ca, first * r->page_size,
                                        n * r->page_size);
}

int backing_fault_zero(struct uffd *u, const struct region *r, uint64_t dst)
{
    uint64_t ps = r->page_size;
    void *blank;
    int ret;

    if (backing_ops_get(r->kind)->has_zeropage) {
        return uffd_zeropage(u, dst, ps, ps, 0, NULL);
    }
    /* No ZEROPAGE (hugetlb): COPY from untouched memory, which reads 0. */
    blank = mmap(NULL, ps, PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (blank == MAP_FAILED) {
        return -errno;
    }
    ret = uffd_copy(u, dst, blank, ps, ps, 0, NULL);
    munmap(blank, ps);
    return ret;
}

uint8_t *backing_view(const struct region *r, uint64_t off)
{
    return r->alias ? r->alias + off : NULL;
}

bool backing_read(const struct region *r, uint64_t off, uint64_t len,
                  uint8_t *buf, GError **err)
{
    const struct backing_ops *ops = backing_ops_get(r->kind);

    if (!ops->read || r->fd < 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s guest RAM has no file to read",
                    backing_kind_name(r->kind));
        return false;
    }
    return ops->read(r, off, len, buf, err);
}

bool backing_discard(const struct region *r, GError **err)
{
    return backing_ops_get(r->kind)->discard(r, err);
}
