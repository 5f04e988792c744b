/* region.c - see region.h. */
#include "region.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <gio/gio.h>

#define SMALL_PAGE_SIZE    4096u
#define MIN_HUGE_PAGE_SIZE (2u << 20)

static const char *const kind_names[] = {
    [BACKING_ANON] = "anon",
    [BACKING_SHMEM] = "shmem",
    [BACKING_HUGETLBFS] = "hugetlbfs",
};

const char *backing_kind_name(enum backing_kind kind)
{
    if (kind < BACKING_ANON || kind > BACKING_HUGETLBFS) {
        return "unknown";
    }
    return kind_names[kind];
}

bool backing_kind_parse(const char *s, enum backing_kind *kind)
{
    for (int k = BACKING_ANON; k <= BACKING_HUGETLBFS; k++) {
        if (g_strcmp0(s, kind_names[k]) == 0) {
            *kind = k;
            return true;
        }
    }
    /* The kernel and Firecracker both say "hugetlb". */
    if (g_strcmp0(s, "hugetlb") == 0) {
        *kind = BACKING_HUGETLBFS;
        return true;
    }
    return false;
}

void region_table_init(struct region_table *t)
{
    memset(t, 0, sizeof(*t));
}

static bool check_page_size(const struct region *r, GError **err)
{
    switch (r->kind) {
    case BACKING_ANON:
    case BACKING_SHMEM:
        if (r->page_size == SMALL_PAGE_SIZE) {
            return true;
        }
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": page size %" PRIu64
                    " is not valid for %s (must be 4096)",
                    r->base, r->page_size, backing_kind_name(r->kind));
        return false;
    case BACKING_HUGETLBFS:
        if (r->page_size > REGION_MAX_PAGE_SIZE &&
            (r->page_size & (r->page_size - 1)) == 0) {
            /*
             * A page moves whole in one frame and is installed by one
             * ioctl: a 1 GiB page cannot, and a postcopy fault on it
             * would pause the migration for good.  Refuse it here.
             */
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "region 0x%" PRIx64 ": hugetlbfs pages of %" PRIu64
                        " MiB cannot be migrated (postcopyd moves pages of "
                        "at most %u MiB): back the guest RAM with 2 MiB "
                        "huge pages",
                        r->base, r->page_size >> 20,
                        REGION_MAX_PAGE_SIZE >> 20);
            return false;
        }
        if (r->page_size >= MIN_HUGE_PAGE_SIZE &&
            (r->page_size & (r->page_size - 1)) == 0) {
            return true;
        }
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": page size %" PRIu64
                    " is not valid for hugetlbfs (must be a power of two "
                    ">= 2 MiB)",
                    r->base, r->page_size);
        return false;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "region 0x%" PRIx64 ": unknown backing kind %d", r->base,
                (int)r->kind);
    return false;
}

static bool check_fd(const struct region *r, GError **err)
{
    if (r->kind == BACKING_ANON && r->fd != -1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": anonymous region has fd %d "
                    "(expected -1)",
                    r->base, r->fd);
        return false;
    }
    if (r->kind != BACKING_ANON && r->fd < 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": %s region has no backing fd",
                    r->base, backing_kind_name(r->kind));
        return false;
    }
    return true;
}

static bool check_geometry(const struct region *r, GError **err)
{
    uint64_t mask = r->page_size - 1;

    if (r->size == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": size is 0", r->base);
        return false;
    }
    if ((r->base | r->size | r->offset) & mask) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": base, size 0x%" PRIx64
                    " or offset 0x%" PRIx64
                    " not aligned to the page size %" PRIu64,
                    r->base, r->size, r->offset, r->page_size);
        return false;
    }
    if (r->size > UINT64_MAX - r->base) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": size 0x%" PRIx64
                    " wraps around the address space",
                    r->base, r->size);
        return false;
    }
    if (r->size > UINT64_MAX - r->offset) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region 0x%" PRIx64 ": offset 0x%" PRIx64
                    " + size wraps around",
                    r->base, r->offset);
        return false;
    }
    return true;
}

/* Index of the first region whose base is above @addr. */
static size_t upper_bound(const struct region_table *t, uint64_t addr)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (t->regions[mid].base <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static bool check_overlap(const struct region_table *t, const struct region *r,
                          size_t pos, GError **err)
{
    const struct region *o = NULL;

    /* The table is sorted and disjoint: only the neighbours can overlap. */
    if (pos > 0 && region_contains(&t->regions[pos - 1], r->base)) {
        o = &t->regions[pos - 1];
    } else if (pos < t->n && t->regions[pos].base - r->base < r->size) {
        o = &t->regions[pos];
    }
    if (!o) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "region 0x%" PRIx64 "+0x%" PRIx64 " overlaps region 0x%" PRIx64
                "+0x%" PRIx64,
                r->base, r->size, o->base, o->size);
    return false;
}

bool region_table_add(struct region_table *t, const struct region *r,
                      GError **err)
{
    size_t pos;

    if (t->n >= REGION_MAX) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "region 0x%" PRIx64 ": table full (%d regions)", r->base,
                    REGION_MAX);
        return false;
    }
    if (!check_page_size(r, err) || !check_fd(r, err) ||
        !check_geometry(r, err)) {
        return false;
    }
    pos = upper_bound(t, r->base);
    if (!check_overlap(t, r, pos, err)) {
        return false;
    }

    memmove(&t->regions[pos + 1], &t->regions[pos],
            (t->n - pos) * sizeof(t->regions[0]));
    t->regions[pos] = *r;
    t->regions[pos].name[REGION_NAME_MAX - 1] = '\0';
    t->n++;
    for (size_t i = 0; i < t->n; i++) {
        t->regions[i].id = i;
    }
    return true;
}

const struct region *region_table_lookup(const struct region_table *t,
                                         uint64_t addr)
{
    size_t pos = upper_bound(t, addr);

    if (pos == 0 || !region_contains(&t->regions[pos - 1], addr)) {
        return NULL;
    }
    return &t->regions[pos - 1];
}

uint64_t region_table_bytes(const struct region_table *t)
{
    uint64_t total = 0;

    for (size_t i = 0; i < t->n; i++) {
        total += t->regions[i].size;
    }
    return total;
}

void region_table_clear(struct region_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct region *r = &t->regions[i];

        if (r->alias) {
            munmap(r->alias, r->size);
        }
        if (r->fd >= 0) {
            close(r->fd);
        }
    }
    region_table_init(t);
}

bool region_map_alias(struct region *r, GError **err)
{
    void *p;

    if (r->kind == BACKING_ANON || r->alias) {
        return true;
    }
    p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd,
             r->offset);
    if (p == MAP_FAILED) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                    "region 0x%" PRIx64 ": cannot map %s fd %d at offset "
                    "0x%" PRIx64 ": %s",
                    r->base, backing_kind_name(r->kind), r->fd, r->offset,
                    g_strerror(e));
        return false;
    }
    r->alias = p;
    return true;
}
