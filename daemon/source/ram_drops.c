/* ram_drops.c - see ram_drops.h. */
#include "ram_drops.h"

#include <glib.h>

#include "backing.h"
#include "bitmap.h"

void ram_drops_init(struct ram_drops *d, const struct region_table *t)
{
    *d = (struct ram_drops){.regions = t};
    for (size_t i = 0; i < t->n; i++) {
        d->sent_data[i] =
            g_new0(unsigned long, BITS_TO_LONGS(region_pages(&t->regions[i])));
    }
}

void ram_drops_destroy(struct ram_drops *d)
{
    for (size_t i = 0; i < REGION_MAX; i++) {
        g_free(d->sent_data[i]);
    }
    *d = (struct ram_drops){0};
}

/* Set bits of @word where @bits says, clear the others of @mask. */
static void store_word(unsigned long *word, unsigned long mask,
                       unsigned long bits)
{
    if (bits) {
        __atomic_fetch_or(word, bits, __ATOMIC_RELAXED);
    }
    if (mask & ~bits) {
        __atomic_fetch_and(word, ~(mask & ~bits), __ATOMIC_RELAXED);
    }
}

void ram_drops_note(struct ram_drops *d, const struct region *r, uint64_t first,
                    uint64_t n, const bool *zero)
{
    unsigned long *map = d ? d->sent_data[r->id] : NULL;
    unsigned long mask = 0, bits = 0;

    if (!map) {
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t p = first + i;

        mask |= BIT_MASK(p);
        bits |= zero[i] ? 0 : BIT_MASK(p);
        if (i + 1 == n || BIT_WORD(p + 1) != BIT_WORD(p)) {
            store_word(&map[BIT_WORD(p)], mask, bits);
            mask = bits = 0;
        }
    }
}

/*
 * Pages [first, first + n) of @r are absent and went as data: the ones
 * that may read as zero now join @pending.
 */
static uint64_t mark_run(const struct region *r, uint64_t first, uint64_t n,
                         unsigned long *pending)
{
    bool hole[BACKING_HOLES_MAX];
    uint64_t added = 0;

    for (uint64_t p = first; p < first + n; p += BACKING_HOLES_MAX) {
        uint64_t k = MIN(BACKING_HOLES_MAX, first + n - p);
        bool shmem = backing_ops_get(r->kind)->has_holes;

        if (shmem) {
            backing_find_holes(r, p * r->page_size, k, hole);
        }
        for (uint64_t i = 0; i < k; i++) {
            if ((!shmem || hole[i]) && !bitmap_test_bit(pending, p + i)) {
                bitmap_set_bit(pending, p + i);
                added++;
            }
        }
    }
    return added;
}

uint64_t ram_drops_mark(struct ram_drops *d, const struct dirty_tracker *dt,
                        const bool *skip, unsigned long **pending)
{
    uint64_t added = 0;

    for (size_t i = 0; i < d->regions->n; i++) {
        const struct region *r = &d->regions->regions[i];
        const unsigned long *absent = dirty_tracker_absent(dt, i);
        uint64_t npages = region_pages(r);

        if (!absent || skip[i]) {
            continue;
        }
        for (uint64_t w = 0; w < BITS_TO_LONGS(npages); w++) {
            unsigned long both = absent[w] & d->sent_data[i][w];

            while (both) {
                uint64_t b = __builtin_ctzl(both);
                uint64_t first = w * BITS_PER_LONG + b, n = 0;

                /* The run of set bits from b, within this word. */
                while (b + n < BITS_PER_LONG && (both >> (b + n)) & 1) {
                    n++;
                }
                both &= n == BITS_PER_LONG ? 0 : ~(((1UL << n) - 1) << b);
                added += mark_run(r, first, MIN(n, npages - first), pending[i]);
            }
        }
    }
    d->marked += added;
    return added;
}
