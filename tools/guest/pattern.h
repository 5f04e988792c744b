/*
 * pattern.h - the non-zero fill patterns postcopy-guest writes into its
 * RAM: the initial contents, the vCPUs' writes and verify's writes.
 *
 * Contract: pattern_fill(p, len, v) writes native 64-bit words derived
 * from @v | 1, so never an all-zero range and no two words alike;
 * pattern_holds() says whether @p still holds exactly that.  @p is 8-byte
 * aligned and @len a multiple of 8.
 */
#ifndef POSTCOPY_GUEST_PATTERN_H
#define POSTCOPY_GUEST_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PATTERN_STEP 0x9e3779b97f4a7c15ULL

static inline void pattern_fill(uint8_t *p, size_t len, uint64_t v)
{
    uint64_t *words = (uint64_t *)p;

    v |= 1; /* never an all-zero unit */
    for (size_t i = 0; i < len / 8; i++) {
        words[i] = v + i * PATTERN_STEP;
    }
}

static inline bool pattern_holds(const uint8_t *p, size_t len, uint64_t v)
{
    const uint64_t *words = (const uint64_t *)p;

    v |= 1;
    for (size_t i = 0; i < len / 8; i++) {
        if (words[i] != v + i * PATTERN_STEP) {
            return false;
        }
    }
    return true;
}

#endif /* POSTCOPY_GUEST_PATTERN_H */
