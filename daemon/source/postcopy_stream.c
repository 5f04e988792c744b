/* postcopy_stream.c - see postcopy_stream.h. */
#include "postcopy_stream.h"

#include <glib.h>
#include <string.h>

#include "bitmap.h"

#define HINT_SHIFT 48

void postcopy_stream_init(struct postcopy_stream *ps,
                          const struct region_table *regions,
                          unsigned long *const *initial)
{
    memset(ps, 0, sizeof(*ps));
    ps->regions = regions;
    ps->window = STREAM_WINDOW_MIN;
    for (size_t i = 0; i < regions->n; i++) {
        uint64_t n = region_pages(&regions->regions[i]);
        size_t longs = BITS_TO_LONGS(n);

        ps->todo[i] = g_new0(unsigned long, longs);
        if (initial) {
            memcpy(ps->todo[i], initial[i], longs * sizeof(unsigned long));
            continue;
        }
        memset(ps->todo[i], 0xff, longs * sizeof(unsigned long));
        if (n % BITS_PER_LONG) {
            ps->todo[i][longs - 1] = (1UL << (n % BITS_PER_LONG)) - 1;
        }
    }
}

void postcopy_stream_drop_region(struct postcopy_stream *ps, uint32_t region)
{
    memset(ps->todo[region], 0,
           BITS_TO_LONGS(region_pages(&ps->regions->regions[region])) *
               sizeof(unsigned long));
}

void postcopy_stream_destroy(struct postcopy_stream *ps)
{
    for (size_t i = 0; i < REGION_MAX; i++) {
        g_free(ps->todo[i]);
        ps->todo[i] = NULL;
    }
}

/* Take page @p off the to-do set; true if it was still on it. */
static bool take(struct postcopy_stream *ps, uint32_t r, uint64_t p)
{
    unsigned long mask = 1UL << (p % BITS_PER_LONG);

    return __atomic_fetch_and(&ps->todo[r][p / BITS_PER_LONG], ~mask,
                              __ATOMIC_RELAXED) &
           mask;
}

void postcopy_stream_note(struct postcopy_stream *ps, uint32_t region,
                          uint64_t page, uint64_t n)
{
    for (uint64_t p = page; p < page + n; p++) {
        take(ps, region, p);
    }
    atomic_store_explicit(&ps->hint,
                          (((uint64_t)region << HINT_SHIFT) | page) + 1,
                          memory_order_release);
}

/* A new fault: open a window after it, wider if faults run sequentially. */
static void open_window(struct postcopy_stream *ps, uint64_t hint)
{
    uint32_t r = (hint - 1) >> HINT_SHIFT;
    uint64_t page = (hint - 1) & ((1ULL << HINT_SHIFT) - 1);
    uint64_t npages = region_pages(&ps->regions->regions[r]);

    if (r == ps->pf_region && page >= ps->last_fault &&
        page - ps->last_fault <= ps->window) {
        ps->window = MIN(ps->window * 2, STREAM_WINDOW_MAX);
    } else {
        ps->window = STREAM_WINDOW_MIN;
    }
    ps->last_fault = page;
    ps->pf_region = r;
    ps->pf_pos = MIN(page + 1, npages);
    ps->pf_end = MIN(page + 1 + ps->window, npages);
}

/* The first run of to-do pages in [*pos, end) of @r, taken. */
static bool take_run(struct postcopy_stream *ps, uint32_t r, uint64_t *pos,
                     uint64_t end, uint64_t max, uint64_t *first, uint64_t *n)
{
    const unsigned long *map = ps->todo[r];
    uint64_t p = *pos;

    while (p < end) {
        if (!map[p / BITS_PER_LONG] && p % BITS_PER_LONG == 0) {
            p += BITS_PER_LONG;
            continue;
        }
        if (take(ps, r, p)) {
            break;
        }
        p++;
    }
    if (p >= end) {
        *pos = end;
        return false;
    }
    *first = p++;
    while (p < end && p - *first < max && take(ps, r, p)) {
        p++;
    }
    *n = p - *first;
    *pos = p;
    return true;
}

bool postcopy_stream_next(struct postcopy_stream *ps, uint32_t *region,
                          uint64_t *first, uint64_t *n, uint64_t max)
{
    uint64_t hint =
        atomic_exchange_explicit(&ps->hint, 0, memory_order_acquire);

    if (hint) {
        open_window(ps, hint);
    }
    if (ps->pf_pos < ps->pf_end &&
        take_run(ps, ps->pf_region, &ps->pf_pos, ps->pf_end, max, first, n)) {
        *region = ps->pf_region;
        ps->prefetched += *n;
        return true;
    }
    while (ps->region < ps->regions->n) {
        uint64_t end = region_pages(&ps->regions->regions[ps->region]);

        if (take_run(ps, ps->region, &ps->cursor, end, max, first, n)) {
            *region = ps->region;
            return true;
        }
        ps->region++;
        ps->cursor = 0;
    }
    return false;
}
