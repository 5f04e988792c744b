/* read_plan.c - see read_plan.h. */
#include "read_plan.h"

#include <string.h>
#include <gio/gio.h>

#include "bitmap.h"
#include "dirty_set.h"

/* region 6 bits | fault 1 | npages 17 | first page 40 */
#define COOKIE_REGION_SHIFT 58
#define COOKIE_FAULT_BIT    (1ull << 57)
#define COOKIE_NPAGES_SHIFT 40
#define COOKIE_NPAGES_MASK  0x1ffffull

G_STATIC_ASSERT(REGION_MAX <= 64);
G_STATIC_ASSERT(READ_PLAN_MAX_PAGES <= COOKIE_NPAGES_MASK);

uint64_t read_cookie(const struct read_req *r)
{
    g_assert(r->region < REGION_MAX && r->first <= READ_COOKIE_MAX_PAGE &&
             r->npages <= COOKIE_NPAGES_MASK);
    return (uint64_t)r->region << COOKIE_REGION_SHIFT |
           (r->fault ? COOKIE_FAULT_BIT : 0) |
           (uint64_t)r->npages << COOKIE_NPAGES_SHIFT | r->first;
}

void read_cookie_parse(uint64_t c, struct read_req *r)
{
    *r = (struct read_req){
        .region = c >> COOKIE_REGION_SHIFT,
        .fault = (c & COOKIE_FAULT_BIT) != 0,
        .npages = (c >> COOKIE_NPAGES_SHIFT) & COOKIE_NPAGES_MASK,
        .first = c & READ_COOKIE_MAX_PAGE,
    };
}

/* Postcopy reads what is still missing; a precopy round what it names. */
static bool wanted_page(const struct page_state_table *t, uint32_t region,
                        const unsigned long *want, uint64_t p)
{
    enum page_state s;

    if (want) {
        return bitmap_test_bit(want, p);
    }
    s = page_state_get(t, region, p);
    return s == PAGE_ABSENT || s == PAGE_STALE;
}

bool read_plan_claim(struct page_state_table *t, uint32_t region,
                     const unsigned long *want, uint64_t *pos, uint64_t end,
                     uint64_t max, struct page_run *run)
{
    uint64_t p = *pos;

    g_assert(max >= 1);
    for (;;) {
        while (p < end && !wanted_page(t, region, want, p)) {
            p++;
        }
        if (p >= end) {
            *pos = end;
            return false;
        }
        if (page_state_begin_write(t, region, p) == PAGE_OK) {
            break;
        }
        p++; /* held by another thread, or installed: not ours */
    }
    run->first = p++;
    while (p < end && p - run->first < max && wanted_page(t, region, want, p) &&
           page_state_begin_write(t, region, p) == PAGE_OK) {
        p++;
    }
    run->npages = p - run->first;
    *pos = p;
    return true;
}

static void count_finish(enum page_result res, struct read_outcome *o)
{
    switch (res) {
    case PAGE_OK:
        o->current++;
        break;
    case PAGE_DO_INSTALL:
        o->install++;
        break;
    case PAGE_WENT_STALE:
        o->stale++;
        break;
    case PAGE_DO_REQUEST:
        o->requested++;
        break;
    case PAGE_DROP: /* its copy is worthless: the caller drops it */
        o->removed++;
        break;
    default:
        g_assert_not_reached(); /* the caller held every page WRITING */
    }
}

void read_plan_finish(struct page_state_table *t, const struct read_req *r,
                      bool ok, read_install_fn install, void *opaque,
                      struct read_outcome *o)
{
    for (uint64_t p = r->first; p < r->first + r->npages; p++) {
        enum page_result res;

        if (!ok) {
            res = page_state_abort_write(t, r->region, p);
            if (res == PAGE_OK) {
                o->back++;
            } else {
                count_finish(res, o);
            }
            continue;
        }
        res = page_state_finish_write(t, r->region, p, false);
        count_finish(res, o);
        if (res == PAGE_DO_INSTALL) {
            install(opaque, r->region, p);
        }
    }
}

struct round_check {
    const struct region_table *t;
    const bool *readable;
    unsigned long **maps;
    bool refused;
    uint32_t region;
};

static void set_run(void *opaque, uint32_t region, uint64_t first, uint64_t n)
{
    struct round_check *c = opaque;

    if (c->refused || !c->readable[region]) {
        c->refused = true;
        c->region = region;
        return;
    }
    for (uint64_t p = first; p < first + n; p++) {
        bitmap_set_bit(c->maps[region], p);
    }
}

bool read_round_decode(const Postcopy__Peer__Switchover *pages,
                       const struct region_table *t, const bool *readable,
                       unsigned long **maps, uint64_t *npages, GError **err)
{
    struct round_check c = {.t = t, .readable = readable, .maps = maps};

    /* dirty_set_decode() checks every run before it reports the first. */
    if (!dirty_set_decode(pages, t, set_run, &c, npages, err)) {
        return false;
    }
    if (c.refused) {
        for (size_t i = 0; i < t->n; i++) {
            memset(maps[i], 0,
                   BITS_TO_LONGS(region_pages(&t->regions[i])) *
                       sizeof(unsigned long));
        }
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "a read round names pages of region %u, which is not "
                    "read remotely",
                    c.region);
        return false;
    }
    return true;
}
