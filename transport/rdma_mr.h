/*
 * rdma_mr.h - the table of guest RAM the source offers to RDMA READs, and
 * the message that carries it to the destination (the "rkey exchange").
 *
 * The source registers its alias mapping of each shmem / hugetlbfs region
 * (rdma.c) and lists, per region, the remote address, length, page size and
 * rkey.  Anonymous regions are not in the table: the destination fetches
 * them with frames (docs/rdma.md).  The destination decodes the table and,
 * for every READ, resolves (region, offset, length) to a remote address and
 * rkey with rdma_mr_resolve(), which checks bounds and page alignment the
 * way frame_check_page() checks a frame: a READ never leaves a region.
 *
 * Plain data only: no verbs call here.  Wire format in docs/rdma.md.
 */
#ifndef POSTCOPYD_RDMA_MR_H
#define POSTCOPYD_RDMA_MR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "remote_read.h"

/* Regions a table may hold (the Layout's own bound is lower). */
#define RDMA_MR_MAX       256
#define RDMA_MR_MAGIC     0x524d4450u /* "PDMR" little endian */
#define RDMA_MR_VERSION   1
#define RDMA_MR_HDR_LEN   8
#define RDMA_MR_ENTRY_LEN 32
#define RDMA_MR_MSG_MAX   (RDMA_MR_HDR_LEN + RDMA_MR_MAX * RDMA_MR_ENTRY_LEN)

struct rdma_mr_entry {
    uint32_t region;    /* the Layout's region index */
    uint32_t rkey;      /* of the source's registration */
    uint64_t addr;      /* source virtual address of the region's offset 0 */
    uint64_t length;    /* bytes, a multiple of page_size */
    uint32_t page_size; /* a power of two, at least 4096 */
};

struct rdma_mr_table {
    unsigned n;
    struct rdma_mr_entry e[RDMA_MR_MAX];
};

void rdma_mr_table_init(struct rdma_mr_table *t);
/*
 * Add one region; refuses a region already there, a full table, a length
 * that is zero or not whole pages, a bad page size, or addr + length past
 * 2^64.  Entries stay in the order added.
 */
bool rdma_mr_table_add(struct rdma_mr_table *t, const struct rdma_mr_entry *e,
                       GError **err);
/* The entry of @region, or NULL: that region is read with frames. */
const struct rdma_mr_entry *rdma_mr_table_find(const struct rdma_mr_table *t,
                                               uint32_t region);
/*
 * Where to READ @len bytes at @offset of @region: whole pages inside it.
 * G_IO_ERROR_NOT_FOUND for a region not in the table, INVALID_ARGUMENT for
 * anything else.
 */
bool rdma_mr_resolve(const struct rdma_mr_table *t, uint32_t region,
                     uint64_t offset, uint64_t len, uint64_t *raddr,
                     uint32_t *rkey, GError **err);

/*
 * Check a decoded table against the Layout's @n regions (the destination,
 * before it registers a byte): each region listed must be in the Layout,
 * readable there (never anonymous), with exactly its size and page size.
 * INVALID_DATA naming the first entry that is not.
 */
bool rdma_mr_check_layout(const struct rdma_mr_table *t,
                          const struct remote_region *layout, unsigned n,
                          GError **err);

/* The message: @buf holds RDMA_MR_MSG_MAX bytes; returns the bytes used. */
size_t rdma_mr_encode(const struct rdma_mr_table *t, uint8_t *buf);
/* Decode and check every entry as rdma_mr_table_add() does. */
bool rdma_mr_decode(const uint8_t *buf, size_t len, struct rdma_mr_table *t,
                    GError **err);

#endif /* POSTCOPYD_RDMA_MR_H */
