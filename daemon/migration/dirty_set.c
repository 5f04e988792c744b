/* dirty_set.c - see dirty_set.h. */
#include "dirty_set.h"

#include <gio/gio.h>
#include <string.h>

#include "bitmap.h"

/*
 * The encoder runs inside the downtime, over a bitmap of the whole guest
 * (a million bits for 4 GiB): it works a word at a time, never a bit, and
 * allocates only what it sends.
 */

/* The first set bit of @map in [from, n), or n. */
static uint64_t next_set(const unsigned long *map, uint64_t n, uint64_t from)
{
    uint64_t w = from / BITS_PER_LONG;
    unsigned long word;

    if (from >= n) {
        return n;
    }
    word = map[w] & (~0UL << (from % BITS_PER_LONG));
    while (!word) {
        if (++w * BITS_PER_LONG >= n) {
            return n;
        }
        word = map[w];
    }
    return MIN(n, w * BITS_PER_LONG + __builtin_ctzl(word));
}

/* The first clear bit of @map in [from, n), or n. */
static uint64_t next_clear(const unsigned long *map, uint64_t n, uint64_t from)
{
    uint64_t w = from / BITS_PER_LONG;
    unsigned long word;

    if (from >= n) {
        return n;
    }
    word = ~map[w] & (~0UL << (from % BITS_PER_LONG));
    while (!word) {
        if (++w * BITS_PER_LONG >= n) {
            return n;
        }
        word = ~map[w];
    }
    return MIN(n, w * BITS_PER_LONG + __builtin_ctzl(word));
}

static uint64_t count_set(const unsigned long *map, uint64_t n)
{
    uint64_t c = 0, full = n / BITS_PER_LONG;

    for (uint64_t w = 0; w < full; w++) {
        c += __builtin_popcountl(map[w]);
    }
    if (n % BITS_PER_LONG) {
        c +=
            __builtin_popcountl(map[full] & ((1UL << (n % BITS_PER_LONG)) - 1));
    }
    return c;
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

/* A varint field's cost (one-byte tag; proto3 leaves zero out). */
static size_t uint_field(uint64_t v)
{
    return v ? 1 + varint_len(v) : 0;
}

/* What postcopy__peer__range__get_packed_size() would say, computed. */
static size_t range_cost(uint32_t region, uint64_t offset, uint64_t length)
{
    return element_cost(uint_field(region) + uint_field(offset) +
                        uint_field(length));
}

static size_t bitmap_cost(uint32_t region, uint64_t pages)
{
    uint64_t len = (pages + 7) / 8;

    return element_cost(uint_field(region) + 1 + varint_len(len) + len);
}

/* @r's runs: how many, and their exact encoded size. */
static size_t ranges_cost(const struct region *r, const unsigned long *map,
                          size_t *count)
{
    uint64_t n = region_pages(r), i = next_set(map, n, 0);
    size_t cost = 0;

    *count = 0;
    while (i < n) {
        uint64_t j = next_clear(map, n, i);

        cost += range_cost(r->id, i * r->page_size, (j - i) * r->page_size);
        (*count)++;
        i = next_set(map, n, j);
    }
    return cost;
}

static void add_ranges(const struct region *r, const unsigned long *map,
                       Postcopy__Peer__Range *out, Postcopy__Peer__Range **ptr)
{
    uint64_t n = region_pages(r), i = next_set(map, n, 0);

    while (i < n) {
        uint64_t j = next_clear(map, n, i);

        postcopy__peer__range__init(out);
        out->region = r->id;
        out->offset = i * r->page_size;
        out->length = (j - i) * r->page_size;
        *ptr++ = out++;
        i = next_set(map, n, j);
    }
}

static Postcopy__Peer__RegionBitmap *make_bitmap(const struct region *r,
                                                 const unsigned long *map)
{
    Postcopy__Peer__RegionBitmap *b = g_new(Postcopy__Peer__RegionBitmap, 1);
    uint64_t n = region_pages(r), len = (n + 7) / 8;
    uint8_t *bytes = g_malloc0(len);

    postcopy__peer__region_bitmap__init(b);
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
    /* Bit i of the longs is bit i % 8 of byte i / 8: the wire's order. */
    memcpy(bytes, map, len);
    if (n % 8) {
        bytes[len - 1] &= (1u << (n % 8)) - 1;
    }
#else
    for (uint64_t i = next_set(map, n, 0); i < n; i = next_set(map, n, i + 1)) {
        bytes[i / 8] |= 1u << (i % 8);
    }
#endif
    b->region = r->id;
    b->bitmap.data = bytes;
    b->bitmap.len = len;
    return b;
}

void dirty_set_encode(const struct region_table *t,
                      unsigned long *const *bitmaps,
                      Postcopy__Peer__Switchover *so)
{
    size_t nranges[REGION_MAX] = {0}, total = 0, k = 0;
    bool as_ranges[REGION_MAX] = {false};
    GPtrArray *maps = g_ptr_array_new();
    Postcopy__Peer__Range *block;
    uint64_t pages = 0;

    /*
     * Per region, the cheaper encoding by its exact packed size: so the
     * whole never exceeds what the raw bitmaps would cost.
     */
    for (size_t i = 0; i < t->n; i++) {
        const struct region *r = &t->regions[i];
        size_t cost = ranges_cost(r, bitmaps[i], &nranges[i]);

        if (!nranges[i]) {
            continue; /* nothing dirty here */
        }
        pages += count_set(bitmaps[i], region_pages(r));
        if (cost <= bitmap_cost(r->id, region_pages(r))) {
            as_ranges[i] = true;
            total += nranges[i];
        } else {
            g_ptr_array_add(maps, make_bitmap(r, bitmaps[i]));
        }
    }
    /* One block holds every range; dirty[0] is its start (see _clear). */
    block = total ? g_new(Postcopy__Peer__Range, total) : NULL;
    so->dirty = total ? g_new(Postcopy__Peer__Range *, total) : NULL;
    for (size_t i = 0; i < t->n; i++) {
        if (as_ranges[i]) {
            add_ranges(&t->regions[i], bitmaps[i], block + k, so->dirty + k);
            k += nranges[i];
        }
    }
    so->dirty_pages = pages;
    so->n_dirty = total;
    so->n_dirty_bitmaps = maps->len;
    so->dirty_bitmaps =
        (Postcopy__Peer__RegionBitmap **)g_ptr_array_free(maps, FALSE);
}

void dirty_set_clear(Postcopy__Peer__Switchover *so)
{
    if (so->n_dirty) {
        g_free(so->dirty[0]); /* the block of every range */
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

/* Bit @i of a wire bitmap (LSB first in each byte). */
static bool wire_bit(const uint8_t *bytes, uint64_t i)
{
    return bytes[i / 8] & (1u << (i % 8));
}

/* Set bits among the first @n of a wire bitmap, 64 at a time. */
static uint64_t bitmap_pages(const Postcopy__Peer__RegionBitmap *b, uint64_t n)
{
    uint64_t c = 0, i = 0;

    for (; i + 64 <= n; i += 64) {
        uint64_t w;

        memcpy(&w, b->bitmap.data + i / 8, 8);
        c += __builtin_popcountll(w);
    }
    for (; i < n; i++) {
        c += wire_bit(b->bitmap.data, i);
    }
    return c;
}

/* 64 bits of a wire bitmap from bit @i (a multiple of 8), zero past @n. */
static uint64_t wire_word(const uint8_t *bytes, uint64_t i, uint64_t n)
{
    uint64_t w = 0, left = n - i;

    if (left >= 64) {
        memcpy(&w, bytes + i / 8, 8);
    } else {
        memcpy(&w, bytes + i / 8, (left + 7) / 8);
        w &= (UINT64_C(1) << left) - 1;
    }
    return GUINT64_FROM_LE(w);
}

/* The first bit of @want (1 or 0) in [from, n), or n: 64 bits a step. */
static uint64_t wire_next(const uint8_t *bytes, uint64_t n, uint64_t from,
                          bool want)
{
    while (from < n) {
        uint64_t base = from & ~UINT64_C(63);
        uint64_t w = wire_word(bytes, base, n);

        if (!want) {
            w = ~w;
            if (n - base < 64) {
                w &= (UINT64_C(1) << (n - base)) - 1;
            }
        }
        w &= ~UINT64_C(0) << (from - base);
        if (w) {
            return MIN(n, base + __builtin_ctzll(w));
        }
        from = base + 64;
    }
    return n;
}

/* @fn for each run of set bits among the first @n, 64 bits at a time. */
static void bitmap_runs(const Postcopy__Peer__RegionBitmap *b, uint64_t n,
                        dirty_run_fn fn, void *opaque)
{
    const uint8_t *bytes = b->bitmap.data;
    uint64_t i = wire_next(bytes, n, 0, true);

    while (i < n) {
        uint64_t j = wire_next(bytes, n, i, false);

        fn(opaque, b->region, i, j - i);
        i = wire_next(bytes, n, j, true);
    }
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
        n += bitmap_pages(b, region_pages(&t->regions[b->region]));
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
        bitmap_runs(b, region_pages(&t->regions[b->region]), fn, opaque);
    }
    *pages = n;
    return true;
}
