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

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

#define SMALL_PAGE 4096ULL

static int install_minor(struct uffd *u, const struct region *r, uint64_t dst,
                         const void *data, uint64_t len, unsigned flags,
                         uint64_t *done);
static int install_anon(struct uffd *u, const struct region *r, uint64_t dst,
                        const void *data, uint64_t len, unsigned flags,
                        uint64_t *done);
static bool cache_open(const struct region *r, struct copy_area *ca,
                       GError **err);
static void cache_reopen(const struct region *r, struct copy_area *ca);
static void cache_zero(const struct region *r, struct copy_area *ca,
                       uint64_t off, uint64_t len);
static void cache_release(const struct region *r, struct copy_area *ca,
                          uint64_t off, uint64_t len);
static int cache_install(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t off, uint64_t len,
                         bool zero);
static bool file_discard(const struct region *r, GError **err);
static bool staging_open(const struct region *r, struct copy_area *ca,
                         GError **err);
static void staging_reopen(const struct region *r, struct copy_area *ca);
static void staging_zero(const struct region *r, struct copy_area *ca,
                         uint64_t off, uint64_t len);
static void staging_release(const struct region *r, struct copy_area *ca,
                            uint64_t off, uint64_t len);
static int staging_install(struct uffd *u, const struct region *r,
                           const struct copy_area *ca, uint64_t off,
                           uint64_t len, bool zero);
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
        .copy_zero = staging_zero,
        .copy_release = staging_release,
        .install_copy = staging_install,
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
        .receive_in_place = true,
        .has_holes = true,
        .install = install_minor,
        .copy_open = cache_open,
        .copy_reopen = cache_reopen,
        .copy_zero = cache_zero,
        .copy_release = cache_release,
        .install_copy = cache_install,
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
        .install = install_minor,
        .copy_open = cache_open,
        .copy_reopen = cache_reopen,
        .copy_zero = cache_zero,
        .copy_release = cache_release,
        .install_copy = cache_install,
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
    uint8_t *cache = r->alias + (dst - r->base);

    /*
     * The caller guarantees these pages are not installed in the running
     * guest (page state table), so writing the page cache cannot change
     * memory the guest already sees.
     */
    if (data) {
        memcpy(cache, data, len);
    } else {
        memset(cache, 0, len);
    }
    return uffd_continue(u, dst, len, r->page_size, flags, done);
}

static int install_anon(struct uffd *u, const struct region *r, uint64_t dst,
                        const void *data, uint64_t len, unsigned flags,
                        uint64_t *done)
{
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
    ca->owned = false;
    /* The page cache may hold anything: zeroing must really clear. */
    atomic_store(&ca->used, true);
    return true;
}

static void cache_reopen(const struct region *r, struct copy_area *ca)
{
    ca->base = r->alias;
    ca->owned = false;
    atomic_store(&ca->used, true);
}

static void cache_zero(const struct region *r, struct copy_area *ca,
                       uint64_t off, uint64_t len)
{
    (void)r;
    memset(ca->base + off, 0, len);
}

/* The page cache is the guest's memory now: nothing to give back. */
static void cache_release(const struct region *r, struct copy_area *ca,
                          uint64_t off, uint64_t len)
{
    (void)r, (void)ca, (void)off, (void)len;
}

static int cache_install(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t off, uint64_t len,
                         bool zero)
{
    (void)ca, (void)zero; /* a zero page is zeroes in the page cache */
    return uffd_continue(u, r->base + off, len, r->page_size, 0, NULL);
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

/* ---- the copy area: a staging area (anonymous) ---- */

static bool staging_open(const struct region *r, struct copy_area *ca,
                         GError **err)
{
    void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    if (p == MAP_FAILED) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "staging area for region %u: %s", r->id, g_strerror(errno));
        return false;
    }
    ca->base = p;
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
    ca->owned = false;
    atomic_store(&ca->used, false);
}

static void staging_zero(const struct region *r, struct copy_area *ca,
                         uint64_t off, uint64_t len)
{
    (void)r;
    madvise(ca->base + off, len, MADV_DONTNEED);
}

static void staging_release(const struct region *r, struct copy_area *ca,
                            uint64_t off, uint64_t len)
{
    (void)r;
    if (ca->base && atomic_load(&ca->used)) {
        madvise(ca->base + off, len, MADV_DONTNEED);
    }
}

static int staging_install(struct uffd *u, const struct region *r,
                           const struct copy_area *ca, uint64_t off,
                           uint64_t len, bool zero)
{
    if (zero || !ca->base) {
        return uffd_zeropage(u, r->base + off, len, r->page_size, 0, NULL);
    }
    return uffd_copy(u, r->base + off, ca->base + off, len, r->page_size, 0,
                     NULL);
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
    if (ca->owned && ca->base) {
        munmap(ca->base, r->size);
    }
    ca->base = NULL;
    ca->owned = false;
}

void backing_copy_zero(const struct region *r, struct copy_area *ca,
                       uint64_t first, uint64_t n)
{
    backing_ops_get(r->kind)->copy_zero(r, ca, first * r->page_size,
                                        n * r->page_size);
}

void backing_copy_release(const struct region *r, struct copy_area *ca,
                          uint64_t first, uint64_t n)
{
    backing_ops_get(r->kind)->copy_release(r, ca, first * r->page_size,
                                           n * r->page_size);
}

int backing_install_copy(struct uffd *u, const struct region *r,
                         const struct copy_area *ca, uint64_t first, uint64_t n,
                         bool zero)
{
    return backing_ops_get(r->kind)->install_copy(
        u, r, ca, first * r->page_size, n * r->page_size, zero);
}

uint8_t *backing_view(const struct region *r, uint64_t off)
{
    return r->alias ? r->alias + off : NULL;
}

bool backing_discard(const struct region *r, GError **err)
{
    return backing_ops_get(r->kind)->discard(r, err);
}
