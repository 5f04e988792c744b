/*
 * region.h - the region table: the VMM's guest RAM mappings as the daemon
 * sees them (base in the VMM, size, page size, backing kind, backing fd and
 * offset) and the daemon's own "alias" mapping of a shmem/hugetlbfs backing
 * file, through which page contents are written into the page cache.
 *
 * Contract: region_table_add() validates before it stores (a page size the
 * migration can move, alignment to the page size, non-zero size, no overlap, no wrap-around, an fd for file
 * backings); lookup is O(log n) by VMM address.  The table owns the fds and
 * alias mappings of its regions and releases them in region_table_clear().
 */
#ifndef POSTCOPYD_REGION_H
#define POSTCOPYD_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

enum backing_kind {
    BACKING_ANON = 1,
    BACKING_SHMEM = 2,
    BACKING_HUGETLBFS = 3,
};

/*
 * The biggest page a region may have: a page travels in one frame
 * (FRAME_MAX_PAYLOAD, transport/frame.h, checked equal where both are
 * seen) and a 1 GiB huge page does not fit.  Bigger pages are refused at
 * attach rather than found out at the first postcopy fault.
 */
#define REGION_MAX_PAGE_SIZE (4u << 20)

#define REGION_MAX      64
#define REGION_NAME_MAX 32

struct region {
    uint32_t id; /* index in the table, stable for the migration */
    enum backing_kind kind;
    uint64_t base;      /* host virtual address in the VMM */
    uint64_t size;      /* bytes, multiple of page_size */
    uint64_t offset;    /* into the backing fd */
    uint64_t page_size; /* 4 KiB, or the huge page size */
    int fd;             /* backing fd (owned), -1 for anonymous */
    uint8_t *alias;     /* daemon's MAP_SHARED mapping of fd, or NULL */
    char name[REGION_NAME_MAX];
};

struct region_table {
    struct region regions[REGION_MAX]; /* sorted by base */
    size_t n;
};

const char *backing_kind_name(enum backing_kind kind);
bool backing_kind_parse(const char *s, enum backing_kind *kind);

void region_table_init(struct region_table *t);
/*
 * Validate @r and insert a copy (the table takes ownership of r->fd on
 * success only).  Ids are reassigned in address order.
 */
bool region_table_add(struct region_table *t, const struct region *r,
                      GError **err);
const struct region *region_table_lookup(const struct region_table *t,
                                         uint64_t addr);
/* Total guest RAM bytes. */
uint64_t region_table_bytes(const struct region_table *t);
void region_table_clear(struct region_table *t);

static inline bool region_contains(const struct region *r, uint64_t addr)
{
    return addr >= r->base && addr - r->base < r->size;
}

static inline uint64_t region_pages(const struct region *r)
{
    return r->size / r->page_size;
}

static inline uint64_t region_page_index(const struct region *r, uint64_t addr)
{
    return (addr - r->base) / r->page_size;
}

/* Map the backing file MAP_SHARED into the daemon (no-op for anon). */
bool region_map_alias(struct region *r, GError **err);

#endif /* POSTCOPYD_REGION_H */
