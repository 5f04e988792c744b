/* dirty_set.c - see dirty_set.h. */
#include "dirty_set.h"

#include <gio/gio.h>
#include <string.h>

#define BITS_PER_LONG (8 * sizeof(unsigned long))

static bool bit(const unsigned long *map, uint64_t i)
{
    return map[i / BITS_PER_LONG] & (1UL << (i % BITS_PER_LONG));
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Bytes a repeated submessage element costs: tag, length, body. */
static size_t element_cost(size_t body)
{
    return 1 + varint_len(body) + body;
}

/* Append @r's runs to @out; returns their exact encoded size. */
static size_t add_ranges(const struct region *r, const unsigned long *map,
                         GPtrArray *out)
{
    size_t cost = 0;

    uint64_t n = region_pages(r);

    for (uint64_t i = 0; i < n;) {
        Postcopy__Peer__Range *rg;
        uint64_t j;

        if (!bit(map, i)) {
            i++;
            continue;
        }
        for (j = i; j < n && bit(map, j); j++) {
        }
        rg = g_new(Postcopy__Peer__Range, 1);
        postcopy__peer__range__init(rg);
        rg->region = r->id;
        rg->offset = i * r->page_size;
        rg->length = (j - i) * r->page_size;
        g_ptr_array_add(out, rg);
        cost += element_cost(postcopy__peer__range__get_packed_size(rg));
        i = j;
    }
    return cost;
}

static Postcopy__Peer__RegionBitmap *make_bitmap(const struct region *r,
                                                 const unsigned long *map)
{
    Postcopy__Peer__RegionBitmap *b = g_new(Postcopy__Peer__RegionBitmap, 1);
    uint64_t n = region_pages(r);
    uint8_t *bytes = g_malloc0((n + 7) / 8);

    postcopy__peer__region_bitmap__init(b);
    for (uint64_t i = 0; i < n; i++) {
        if (bit(map, i)) {
            bytes[i / 8] |= 1u << (i % 8);
        }
    }
    b->region = r->id;
    b->bitmap.data = bytes;
    b->bitmap.len = (n + 7) / 8;
    return b;
}

void dirty_set_encode(const struct region_table *t,
                      unsigned long *const *bitmaps,
                      Postcopy__Peer__Switchover *so)
{
    GPtrArray *ranges = g_ptr_array_new();
    GPtrArray *maps = g_ptr_array_new();
    uint64_t pages = 0;

    /*
     * Per region, the cheaper encoding by its exact packed size: so the
     * whole never exceeds what the raw bitmaps would cost.
     */
    for (size_t i = 0; i < t->n; i++) {
        const struct region *r = &t->regions[i];
        Postcopy__Peer__RegionBitmap *b;
        guint before = ranges->len;
        size_t range_cost, map_cost;

        for (uint64_t p = 0; p < region_pages(r); p++) {
            pages += bit(bitmaps[i], p);
        }
        range_cost = add_ranges(r, bitmaps[i], ranges);
        if (ranges->len == before) {
            continue; /* nothing dirty here */
        }
        b = make_bitmap(r, bitmaps[i]);
        map_cost =
            element_cost(postcopy__peer__region_bitmap__get_packed_size(b));
        if (range_cost <= map_cost) {
            g_free(b->bitmap.data);
            g_free(b);
            continue;
        }
        for (guint k = before; k < ranges->len; k++) {
            g_free(ranges->pdata[k]);
        }
        g_ptr_array_set_size(ranges, before);
        g_ptr_array_add(maps, b);
    }
    so->dirty_pages = pages;
    so->n_dirty = ranges->len;
    so->dirty = (Postcopy__Peer__Range **)g_ptr_array_free(ranges, FALSE);
    so->n_dirty_bitmaps = maps->len;
    so->dirty_bitmaps =
        (Postcopy__Peer__RegionBitmap **)g_ptr_array_free(maps, FALSE);
}

void dirty_set_clear(Postcopy__Peer__Switchover *so)
{
    for (size_t i = 0; i < so->n_dirty; i++) {
        g_free(so->dirty[i]);
    }
    for (size_t i = 0; i < so->n_dirty_bitmaps; i++) {
        g_free(so->dirty_bitmaps[i]->bitmap.data);
        g_free(so->dirty_bitmaps[i]);
    }
    g_free(so->dirty);
    g_free(so->dirty_bitmaps);
    so->dirty = NULL;
    so->dirty_bitmaps = NULL;
    so->n_dirty = so->n_dirty_bitmaps = 0;
}

static bool check_range(const Postcopy__Peer__Range *rg,
                        const struct region_table *t, GError **err)
{
    const struct region *r;

    if (rg->region >= t->n) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "dirty range names region %u of %zu", rg->region, t->n);
        return false;
    }
    r = &t->regions[rg->region];
    if (rg->offset % r->page_size || rg->length % r->page_size || !rg->length ||
        rg->offset > r->size || rg->length > r->size - rg->offset) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "dirty range 0x%" G_GINT64_MODIFIER
                    "x+0x%" G_GINT64_MODIFIER
                    "x is not whole pages inside region %u",
                    rg->offset, rg->length, rg->region);
        return false;
    }
    return true;
}

static bool check_bitmap(const Postcopy__Peer__RegionBitmap *b,
                         const struct region_table *t, GError **err)
{
    if (b->region >= t->n) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "dirty bitmap names region %u of %zu", b->region, t->n);
        return false;
    }
    if (b->bitmap.len != (region_pages(&t->regions[b->region]) + 7) / 8) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "dirty bitmap of region %u has %zu bytes, expected "
                    "%" G_GUINT64_FORMAT,
                    b->region, b->bitmap.len,
                    (region_pages(&t->regions[b->region]) + 7) / 8);
        return false;
    }
    return true;
}

bool dirty_set_decode(const Postcopy__Peer__Switchover *so,
                      const struct region_table *t, dirty_run_fn fn,
                      void *opaque, uint64_t *pages, GError **err)
{
    uint64_t n = 0;

    /* Validate and count everything before the first callback. */
    for (size_t i = 0; i < so->n_dirty; i++) {
        if (!check_range(so->dirty[i], t, err)) {
            return false;
        }
        n += so->dirty[i]->length / t->regions[so->dirty[i]->region].page_size;
    }
    for (size_t i = 0; i < so->n_dirty_bitmaps; i++) {
        const Postcopy__Peer__RegionBitmap *b = so->dirty_bitmaps[i];

        if (!check_bitmap(b, t, err)) {
            return false;
        }
        for (uint64_t p = 0; p < region_pages(&t->regions[b->region]); p++) {
            n += !!(b->bitmap.data[p / 8] & (1u << (p % 8)));
        }
    }
    if (so->dirty_pages != n) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "switchover says %" G_GUINT64_FORMAT
                    " dirty pages, its ranges hold %" G_GUINT64_FORMAT,
                    so->dirty_pages, n);
        return false;
    }
    for (size_t i = 0; i < so->n_dirty; i++) {
        const Postcopy__Peer__Range *rg = so->dirty[i];
        uint64_t ps = t->regions[rg->region].page_size;

        fn(opaque, rg->region, rg->offset / ps, rg->length / ps);
    }
    for (size_t i = 0; i < so->n_dirty_bitmaps; i++) {
        const Postcopy__Peer__RegionBitmap *b = so->dirty_bitmaps[i];
        uint64_t np = region_pages(&t->regions[b->region]);

        for (uint64_t p = 0; p < np; p++) {
            if (b->bitmap.data[p / 8] & (1u << (p % 8))) {
                fn(opaque, b->region, p, 1);
            }
        }
    }
    *pages = n;
    return true;
}
