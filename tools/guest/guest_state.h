/*
 * guest_state.h - postcopy-guest's device-state blob: what a source hands a
 * destination at switchover besides RAM (workload counters, and with
 * --verify the digest of every page at the pause).
 *
 * Layout, little endian, 64-byte header then the optional digest table:
 *   0 u32 magic "PCGS"   4 u16 version (1)   6 u16 header length (64)
 *   8 u32 flags (bit 0: digests follow)      12 u32 reserved (0)
 *  16 u64 seed   24 u64 pages_written   32 u64 generation
 *  40 u64 page_size   48 u64 npages
 *  56 u64 check: digest_bytes() of the whole blob with this field zero
 *  64 u64 digests[npages]                    (only with flag bit 0)
 *
 * Contract: guest_state_decode() checks magic, version, header length,
 * flags, geometry, exact length and the check word before it fills @s, and
 * fails with one clear message otherwise.
 */
#ifndef POSTCOPY_GUEST_STATE_H
#define POSTCOPY_GUEST_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define GUEST_STATE_MAGIC      0x53474350u /* "PCGS" */
#define GUEST_STATE_VERSION    1
#define GUEST_STATE_HEADER_LEN 64
#define GUEST_STATE_F_DIGESTS  (1u << 0)

struct guest_state {
    uint64_t seed;
    uint64_t pages_written;
    uint64_t generation;
    uint64_t page_size;
    uint64_t npages;
    uint64_t *digests; /* npages entries or NULL; g_free'd by clear */
};

/* Returns a g_malloc'd blob of *@len bytes. */
uint8_t *guest_state_encode(const struct guest_state *s, size_t *len);
bool guest_state_decode(const uint8_t *buf, size_t len, struct guest_state *s,
                        GError **err);
void guest_state_clear(struct guest_state *s);

#endif /* POSTCOPY_GUEST_STATE_H */
