/*
 * bitmap.h - page bitmaps as arrays of unsigned long, bit i of word
 * i / BITS_PER_LONG: the dirty tracker's, the dirty set's, the source's
 * pending and prestale sets, the destination's missing set.
 *
 * Contract: plain (non-atomic) helpers; a bitmap shared between threads
 * uses the __atomic builtins on its words itself.
 */
#ifndef POSTCOPYD_BITMAP_H
#define POSTCOPYD_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#define BITS_PER_LONG    (8 * sizeof(unsigned long))
#define BITS_TO_LONGS(n) (((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)
#define BIT_WORD(i)      ((i) / BITS_PER_LONG)
#define BIT_MASK(i)      (1UL << ((i) % BITS_PER_LONG))

static inline void bitmap_set_bit(unsigned long *map, uint64_t i)
{
    map[BIT_WORD(i)] |= BIT_MASK(i);
}

static inline bool bitmap_test_bit(const unsigned long *map, uint64_t i)
{
    return map[BIT_WORD(i)] & BIT_MASK(i);
}

#endif /* POSTCOPYD_BITMAP_H */
