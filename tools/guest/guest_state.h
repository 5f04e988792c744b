/*
 * guest_state.h - postcopy-guest's device-state blob: what a source hands a
 * destination at switchover besides RAM (workload counters, the RAM
 * geometry, and with --verify the digest of every page at the pause).
 *
 * Layout (version 2), little endian: a 64-byte header, the region table,
 * then the optional digest table:
 *   0 u32 magic "PCGS"   4 u16 version (2)   6 u16 header length (64)
 *   8 u32 flags (bit 0: digests follow)      12 u32 nregions
 *  16 u64 seed   24 u64 pages_written   32 u64 generation
 *  40 u64 size (bytes, all regions)     48 u64 npages (all regions)
 *  56 u64 check: digest_bytes() of the whole blob with this field zero
 *  64 nregions x { u64 size, u64 page_size }   in region order (ram0 ...)
 *  .. u64 digests[npages]   by global page number (see guest_ram.h),
 *                           only with flag bit 0
 * Version 1 had one region: page_size at 40, no table, 12 reserved.
 *
 * Contract: guest_state_decode() checks magic, version, header length,
 * flags, every region's geometry and the totals, exact length and the check
 * word before it fills @s, and fails with one clear message otherwise.
 * guest_state_fits() says whether a blob's regions are this guest's.
 */
#ifndef POSTCOPY_GUEST_STATE_H
#define POSTCOPY_GUEST_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "region.h"

#define GUEST_STATE_MAGIC       0x53474350u /* "PCGS" */
#define GUEST_STATE_VERSION     2
#define GUEST_STATE_HEADER_LEN  64
#define GUEST_STATE_F_DIGESTS   (1u << 0)
#define GUEST_STATE_REGIONS_MAX REGION_MAX

struct guest_state_region {
    uint64_t size;
    uint64_t page_size;
};

struct guest_state {
    uint64_t seed;
    uint64_t pages_written;
    uint64_t generation;
    unsigned nregions;
    struct guest_state_region regions[GUEST_STATE_REGIONS_MAX];
    uint64_t npages;   /* sum over the regions; set by decode */
    uint64_t *digests; /* npages entries or NULL; g_free'd by clear */
};

/* Pages of @s's regions; encode callers need not fill s->npages. */
uint64_t guest_state_npages(const struct guest_state *s);

/* Returns a g_malloc'd blob of *@len bytes. */
uint8_t *guest_state_encode(const struct guest_state *s, size_t *len);
bool guest_state_decode(const uint8_t *buf, size_t len, struct guest_state *s,
                        GError **err);
/* Same region count, sizes and page sizes, in the same order as @mine. */
bool guest_state_fits(const struct guest_state *s,
                      const struct guest_state *mine, GError **err);
void guest_state_clear(struct guest_state *s);

#endif /* POSTCOPY_GUEST_STATE_H */
