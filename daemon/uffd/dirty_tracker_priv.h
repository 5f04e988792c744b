/*
 * dirty_tracker_priv.h - what the dirty tracker's files share: pagemap
 * constants, bitmap runs, and each method's entry points.
 *
 * Contract: private to dirty_*.c.  dirty_tracker.c owns set-up, ranges,
 * collect and hand-out and dispatches on the method; dirty_method.c the
 * names, probes and chooser; dirty_wp.c the two write-protect methods
 * (async-wp with PAGEMAP_SCAN, sync-wp with its fault handler);
 * dirty_soft.c soft-dirty.  Callers hold dt->lock where the public call
 * they serve does.
 */
#ifndef POSTCOPYD_DIRTY_TRACKER_PRIV_H
#define POSTCOPYD_DIRTY_TRACKER_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "bitmap.h"
#include "dirty_tracker.h"

#define PM_SOFT_DIRTY   (1ULL << 55)
#define PM_ENTRY_SIZE   sizeof(uint64_t)
#define PM_READ_ENTRIES 512

static inline size_t bitmap_longs(uint64_t nbits)
{
    return BITS_TO_LONGS(nbits);
}

static inline void bitmap_set(unsigned long *map, uint64_t start, uint64_t n)
{
    for (uint64_t i = start; i < start + n; i++) {
        bitmap_set_bit(map, i);
    }
}

static inline void bitmap_clear(unsigned long *map, uint64_t start, uint64_t n)
{
    for (uint64_t i = start; i < start + n; i++) {
        map[i / BITS_PER_LONG] &= ~(1UL << (i % BITS_PER_LONG));
    }
}

/* Set [start, start+n) in @to and clear it in @from. */
static inline void bitmap_move(unsigned long *to, unsigned long *from,
                               uint64_t start, uint64_t n)
{
    for (uint64_t i = start; i < start + n; i++) {
        unsigned long bit = 1UL << (i % BITS_PER_LONG);

        to[i / BITS_PER_LONG] |= bit;
        from[i / BITS_PER_LONG] &= ~bit;
    }
}

/* First index >= @i whose bit equals @set, or @nbits. */
static inline uint64_t bitmap_next(const unsigned long *map, uint64_t nbits,
                                   uint64_t i, bool set)
{
    while (i < nbits) {
        unsigned long w =
            set ? map[i / BITS_PER_LONG] : ~map[i / BITS_PER_LONG];

        w &= ~0UL << (i % BITS_PER_LONG);
        if (w) {
            return MIN(i / BITS_PER_LONG * BITS_PER_LONG + __builtin_ctzl(w),
                       nbits);
        }
        i = (i / BITS_PER_LONG + 1) * BITS_PER_LONG;
    }
    return nbits;
}

static inline uint64_t bitmap_weight(const unsigned long *map, uint64_t nbits)
{
    uint64_t n = 0;

    for (size_t i = 0; i < bitmap_longs(nbits); i++) {
        n += __builtin_popcountl(map[i]);
    }
    return n;
}

/* Does this kernel track soft-dirty bits at all? */
bool dirty_soft_works(void);
/* Soft-dirty: read the first @nranges ranges, then clear the process. */
bool dirty_soft_collect(struct dirty_tracker *dt, size_t nranges, GError **err);
/* Register [base, base+size) for uffd-wp and, if @protect, protect it. */
bool dirty_wp_arm(struct dirty_tracker *dt, uint64_t base, uint64_t size,
                  bool protect, GError **err);
/* async-wp or sync-wp: collect range @i into its collected set. */
bool dirty_wp_collect(struct dirty_tracker *dt, size_t i, GError **err);

#endif
