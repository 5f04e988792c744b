/*
 * test_dirty_set.c - tests for daemon/migration/dirty_set.h: encode/decode round
 * trips of random dirty sets over regions of different page counts and
 * page sizes, the choice between ranges and bitmaps, the bound on the
 * encoded Switchover (bitmap bytes plus a little framing, whatever the
 * pattern), and decode's refusals: every malformed set is rejected with a
 * clear message before a single run is reported.
 */
#include <string.h>
#include <gio/gio.h>

#include "bitmap.h"
#include "dirty_set.h"
#include "testlib.h"

#define PAGE_4K 4096ULL
#define PAGE_2M (2ULL << 20)
/*
 * Framing allowed on top of the bitmaps: per region sent, the embedded
 * message's tag and length, the region number, the bytes field's tag and
 * length (<= 10 bytes); per Switchover, dirty_pages and sync_seq.
 */
#define OVERHEAD_PER_REGION 16
#define OVERHEAD_FIXED      16

/* A region table and one bitmap per region, as the source keeps them. */
struct fixture {
    struct region_table t;
    unsigned long *maps[REGION_MAX];
};

static void fixture_init(struct fixture *f, size_t n, const uint64_t *npages,
                         const uint64_t *page_size)
{
    uint64_t base = 1ULL << 30;

    memset(f, 0, sizeof(*f));
    g_assert_cmpuint(n, <=, REGION_MAX);
    for (size_t i = 0; i < n; i++) {
        struct region *r = &f->t.regions[i];

        r->id = i;
        r->page_size = page_size ? page_size[i] : PAGE_4K;
        r->kind = r->page_size == PAGE_4K ? BACKING_ANON : BACKING_HUGETLBFS;
        r->base = base;
        r->size = npages[i] * r->page_size;
        r->fd = -1;
        g_snprintf(r->name, sizeof(r->name), "ram%zu", i);
        base += r->size + PAGE_2M;
        base = (base + PAGE_2M - 1) & ~(PAGE_2M - 1);
        f->maps[i] = g_new0(unsigned long, BITS_TO_LONGS(npages[i]));
    }
    f->t.n = n;
}

static void fixture_clear(struct fixture *f)
{
    for (size_t i = 0; i < f->t.n; i++) {
        g_free(f->maps[i]);
    }
    memset(f, 0, sizeof(*f));
}

static uint64_t npages_of(const struct fixture *f, size_t i)
{
    return region_pages(&f->t.regions[i]);
}

static void set_bit(unsigned long *map, uint64_t i)
{
    bitmap_set_bit(map, i);
}

static bool get_bit(const unsigned long *map, uint64_t i)
{
    return bitmap_test_bit(map, i);
}

static uint64_t count_bits(const struct fixture *f)
{
    uint64_t n = 0;

    for (size_t i = 0; i < f->t.n; i++) {
        for (uint64_t p = 0; p < npages_of(f, i); p++) {
            n += get_bit(f->maps[i], p);
        }
    }
    return n;
}

/* Sum over all regions of ceil(pages / 8): the raw bitmap of everything. */
static uint64_t bitmap_bytes(const struct fixture *f)
{
    uint64_t n = 0;

    for (size_t i = 0; i < f->t.n; i++) {
        n += (npages_of(f, i) + 7) / 8;
    }
    return n;
}

static size_t packed_size(const Postcopy__Peer__Switchover *so)
{
    return postcopy__peer__switchover__get_packed_size(so);
}

/* The encoded set stays within the bitmaps plus framing. */
static void assert_size_bound(const struct fixture *f,
                              const Postcopy__Peer__Switchover *so,
                              const char *what)
{
    uint64_t bound =
        bitmap_bytes(f) + OVERHEAD_PER_REGION * f->t.n + OVERHEAD_FIXED;
    size_t got = packed_size(so);

    if (got > bound) {
        g_test_message("%s: Switchover packs to %zu bytes (%zu ranges, %zu "
                       "bitmaps, %" G_GUINT64_FORMAT " dirty pages); the "
                       "bitmaps are %" G_GUINT64_FORMAT
                       " bytes, bound %" G_GUINT64_FORMAT,
                       what, got, so->n_dirty, so->n_dirty_bitmaps,
                       so->dirty_pages, bitmap_bytes(f), bound);
    }
    g_assert_cmpuint(got, <=, bound);
}

/* ---------------------------------------------------------------- decode */

struct collect {
    const struct fixture *f;
    unsigned long *got[REGION_MAX];
    unsigned calls;
    uint64_t pages;
    bool bad; /* a run outside its region, or a page reported twice */
};

static void collect_init(struct collect *c, const struct fixture *f)
{
    memset(c, 0, sizeof(*c));
    c->f = f;
    for (size_t i = 0; i < f->t.n; i++) {
        c->got[i] = g_new0(unsigned long, BITS_TO_LONGS(npages_of(f, i)));
    }
}

static void collect_clear(struct collect *c)
{
    for (size_t i = 0; i < c->f->t.n; i++) {
        g_free(c->got[i]);
    }
}

static void collect_run(void *opaque, uint32_t region, uint64_t first,
                        uint64_t npages)
{
    struct collect *c = opaque;

    c->calls++;
    c->pages += npages;
    if (region >= c->f->t.n || npages == 0 || first > npages_of(c->f, region) ||
        npages > npages_of(c->f, region) - first) {
        c->bad = true;
        return;
    }
    for (uint64_t p = first; p < first + npages; p++) {
        if (get_bit(c->got[region], p)) {
            c->bad = true;
        }
        set_bit(c->got[region], p);
    }
}

/* Encode f's bitmaps, decode them, and find exactly the same pages. */
static void round_trip(const struct fixture *f, Postcopy__Peer__Switchover *so,
                       const char *what)
{
    g_autoptr(GError) err = NULL;
    struct collect c;
    uint64_t pages = UINT64_MAX;
    uint64_t want = count_bits(f);

    dirty_set_encode(&f->t, f->maps, so);
    g_assert_cmpuint(so->dirty_pages, ==, want);

    collect_init(&c, f);
    g_assert_true(dirty_set_decode(so, &f->t, collect_run, &c, &pages, &err));
    g_assert_no_error(err);
    g_assert_false(c.bad);
    g_assert_cmpuint(pages, ==, want);
    g_assert_cmpuint(c.pages, ==, want);
    for (size_t i = 0; i < f->t.n; i++) {
        size_t longs = BITS_TO_LONGS(npages_of(f, i));

        if (memcmp(c.got[i], f->maps[i], longs * sizeof(unsigned long))) {
            g_test_message("%s: region %zu decodes to other pages", what, i);
            g_test_fail();
        }
    }
    collect_clear(&c);
    assert_size_bound(f, so, what);
}

/* ---------------------------------------------------------------- patterns */

static void fill_random(struct fixture *f, GRand *rnd, double density)
{
    for (size_t i = 0; i < f->t.n; i++) {
        memset(f->maps[i], 0,
               BITS_TO_LONGS(npages_of(f, i)) * sizeof(unsigned long));
        for (uint64_t p = 0; p < npages_of(f, i); p++) {
            if (g_rand_double(rnd) < density) {
                set_bit(f->maps[i], p);
            }
        }
    }
}

/* Random runs of random lengths: clustered writes. */
static void fill_runs(struct fixture *f, GRand *rnd, unsigned maxrun,
                      double gap)
{
    for (size_t i = 0; i < f->t.n; i++) {
        uint64_t n = npages_of(f, i);

        memset(f->maps[i], 0, BITS_TO_LONGS(n) * sizeof(unsigned long));
        for (uint64_t p = 0; p < n;) {
            p += g_rand_int_range(rnd, 0, (gint32)(maxrun * gap) + 1);
            for (unsigned k = g_rand_int_range(rnd, 1, maxrun + 1); k && p < n;
                 k--, p++) {
                set_bit(f->maps[i], p);
            }
            p++;
        }
    }
}

/* Several regions: tiny, word-boundary sizes, large, and huge pages. */
static const uint64_t mixed_pages[] = {1, 63, 64, 65, 1000, 4099, 32768, 48};
static const uint64_t mixed_psize[] = {PAGE_4K, PAGE_4K, PAGE_4K, PAGE_4K,
                                       PAGE_4K, PAGE_4K, PAGE_4K, PAGE_2M};

static void test_round_trip_random(void)
{
    static const double densities[] = {0.0,  0.0005, 0.003, 0.02, 0.1,
                                       0.25, 0.5,    0.75,  0.97, 1.0};
    struct fixture f;

    fixture_init(&f, G_N_ELEMENTS(mixed_pages), mixed_pages, mixed_psize);
    for (guint32 seed = 1; seed <= 4; seed++) {
        g_autoptr(GRand) rnd = g_rand_new_with_seed(seed);

        for (size_t d = 0; d < G_N_ELEMENTS(densities); d++) {
            Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
            g_autofree char *what =
                g_strdup_printf("seed %u density %.4f", seed, densities[d]);

            fill_random(&f, rnd, densities[d]);
            round_trip(&f, &so, what);
            dirty_set_clear(&so);
            g_assert_cmpuint(so.n_dirty + so.n_dirty_bitmaps, ==, 0);
        }
        for (unsigned maxrun = 1; maxrun <= 512; maxrun *= 8) {
            Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
            g_autofree char *what =
                g_strdup_printf("seed %u runs <= %u", seed, maxrun);

            fill_runs(&f, rnd, maxrun, 3.0);
            round_trip(&f, &so, what);
            dirty_set_clear(&so);
        }
    }
    fixture_clear(&f);
}

/* Ranges for few runs, the bitmap for many, per region. */
static void test_choice(void)
{
    const uint64_t pages[] = {32768, 32768, 32768, 32768};
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    g_autoptr(GRand) rnd = g_rand_new_with_seed(7);
    struct fixture f;

    fixture_init(&f, G_N_ELEMENTS(pages), pages, NULL);
    /* Region 0 sparse: 20 single pages, far apart. */
    for (uint64_t p = 100; p < 32768; p += 1600) {
        set_bit(f.maps[0], p);
    }
    /* Region 1 fully dirty: one run. */
    for (uint64_t p = 0; p < 32768; p++) {
        set_bit(f.maps[1], p);
    }
    /* Region 2 half dirty at random: fragmented. */
    for (uint64_t p = 0; p < 32768; p++) {
        if (g_rand_boolean(rnd)) {
            set_bit(f.maps[2], p);
        }
    }
    /* Region 3 clean: nothing at all on the wire. */
    round_trip(&f, &so, "choice");

    g_assert_cmpuint(so.n_dirty, ==, 21 + 1);
    for (size_t i = 0; i < so.n_dirty; i++) {
        g_assert_cmpuint(so.dirty[i]->region, !=, 2);
        g_assert_cmpuint(so.dirty[i]->region, !=, 3);
    }
    g_assert_cmpuint(so.n_dirty_bitmaps, ==, 1);
    if (so.n_dirty_bitmaps == 1) {
        g_assert_cmpuint(so.dirty_bitmaps[0]->region, ==, 2);
        g_assert_cmpuint(so.dirty_bitmaps[0]->bitmap.len, ==, 32768 / 8);
    }
    dirty_set_clear(&so);

    /* Nothing dirty anywhere. */
    for (size_t i = 0; i < f.t.n; i++) {
        memset(f.maps[i], 0, BITS_TO_LONGS(32768) * sizeof(unsigned long));
    }
    round_trip(&f, &so, "clean");
    g_assert_cmpuint(so.n_dirty, ==, 0);
    g_assert_cmpuint(so.n_dirty_bitmaps, ==, 0);
    g_assert_cmpuint(so.dirty_pages, ==, 0);
    dirty_set_clear(&so);
    fixture_clear(&f);
}

/* Every other page: the most runs a region can have; the bitmap wins. */
static void test_every_other_page(void)
{
    struct fixture f;
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;

    fixture_init(&f, G_N_ELEMENTS(mixed_pages), mixed_pages, mixed_psize);
    for (size_t i = 0; i < f.t.n; i++) {
        for (uint64_t p = 0; p < npages_of(&f, i); p += 2) {
            set_bit(f.maps[i], p);
        }
    }
    round_trip(&f, &so, "every other page");
    /* The 32768-page region: 16384 runs, a 4096-byte bitmap. */
    g_assert_cmpuint(so.n_dirty_bitmaps, >=, 1);
    g_test_message(
        "every other page: %zu bytes packed, bitmaps %" G_GUINT64_FORMAT
        " bytes, %zu ranges, %zu bitmaps",
        packed_size(&so), bitmap_bytes(&f), so.n_dirty, so.n_dirty_bitmaps);
    dirty_set_clear(&so);
    fixture_clear(&f);

    /* One 128 MiB region, as in the e2e test: 4096 bitmap bytes. */
    const uint64_t one[] = {32768};
    fixture_init(&f, 1, one, NULL);
    for (uint64_t p = 1; p < 32768; p += 2) {
        set_bit(f.maps[0], p);
    }
    round_trip(&f, &so, "every other page, 128 MiB");
    g_assert_cmpuint(so.n_dirty, ==, 0);
    g_assert_cmpuint(so.n_dirty_bitmaps, ==, 1);
    g_assert_cmpuint(packed_size(&so), <=, 4096 + 32);
    dirty_set_clear(&so);
    fixture_clear(&f);
}

/*
 * The pattern that costs ranges the most just under the point where the
 * encoder switches to the bitmap: as many runs as it still sends as
 * ranges, each in a region with a non-zero index (its number is on the
 * wire), at offsets above 256 MiB (5-byte varints) with lengths of 33
 * pages (3-byte varints).  A QEMU guest's RAM above 4 GiB is such a region.
 */
static void test_worst_case_ranges(void)
{
    /* 8 GiB of 4 KiB pages in region 1: bitmap 262144 bytes. */
    const uint64_t pages[] = {16, 1ULL << 21};
    const uint64_t n = pages[1], first = 1ULL << 16, len = 33;
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    struct fixture f;
    uint64_t bmbytes = n / 8, runs, stride;

    fixture_init(&f, G_N_ELEMENTS(pages), pages, NULL);
    /* The most runs still sent as ranges: runs * 12 <= bitmap bytes. */
    runs = bmbytes / 12;
    stride = (n - first) / runs;
    g_assert_cmpuint(stride, >, len);
    for (uint64_t k = 0; k < runs; k++) {
        for (uint64_t p = 0; p < len; p++) {
            set_bit(f.maps[1], first + k * stride + p);
        }
    }
    dirty_set_encode(&f.t, f.maps, &so);
    g_test_message("worst case for ranges: %" G_GUINT64_FORMAT
                   " runs of %" G_GUINT64_FORMAT " pages: %zu ranges, %zu "
                   "bitmaps, %zu bytes packed, bitmaps %" G_GUINT64_FORMAT
                   " bytes",
                   runs, len, so.n_dirty, so.n_dirty_bitmaps, packed_size(&so),
                   bitmap_bytes(&f));
    dirty_set_clear(&so);
    round_trip(&f, &so, "worst case for ranges");
    dirty_set_clear(&so);
    fixture_clear(&f);
}

/* ---------------------------------------------------------------- refusals */

/*
 * A hand-made Switchover over a fixed layout: region 0 has 1000 pages of
 * 4 KiB, region 1 1000 pages, region 2 16 huge pages of 2 MiB.  Entries
 * are added valid first, the bad one last, so that a decoder reporting
 * runs while it validates is caught.
 */
struct handmade {
    struct fixture f;
    Postcopy__Peer__Range ranges[8];
    Postcopy__Peer__Range *rp[8];
    Postcopy__Peer__RegionBitmap bitmaps[4];
    Postcopy__Peer__RegionBitmap *bp[4];
    uint8_t bits[4][1024];
    Postcopy__Peer__Switchover so;
};

static void handmade_init(struct handmade *h)
{
    const uint64_t pages[] = {1000, 1000, 16};
    const uint64_t psize[] = {PAGE_4K, PAGE_4K, PAGE_2M};

    memset(h, 0, sizeof(*h));
    fixture_init(&h->f, 3, pages, psize);
    postcopy__peer__switchover__init(&h->so);
    h->so.dirty = h->rp;
    h->so.dirty_bitmaps = h->bp;
}

static void add_range(struct handmade *h, uint32_t region, uint64_t offset,
                      uint64_t length)
{
    size_t i = h->so.n_dirty++;

    g_assert_cmpuint(i, <, G_N_ELEMENTS(h->ranges));
    postcopy__peer__range__init(&h->ranges[i]);
    h->ranges[i].region = region;
    h->ranges[i].offset = offset;
    h->ranges[i].length = length;
    h->rp[i] = &h->ranges[i];
}

/* A bitmap of @len bytes with the first @set pages dirty. */
static void add_bitmap(struct handmade *h, uint32_t region, size_t len,
                       unsigned set)
{
    size_t i = h->so.n_dirty_bitmaps++;

    g_assert_cmpuint(i, <, G_N_ELEMENTS(h->bitmaps));
    g_assert_cmpuint(len, <=, sizeof(h->bits[i]));
    postcopy__peer__region_bitmap__init(&h->bitmaps[i]);
    for (unsigned p = 0; p < set; p++) {
        h->bits[i][p / 8] |= 1u << (p % 8);
    }
    h->bitmaps[i].region = region;
    h->bitmaps[i].bitmap.data = h->bits[i];
    h->bitmaps[i].bitmap.len = len;
    h->bp[i] = &h->bitmaps[i];
}

/* The valid part every refusal case starts from: 4 + 2 + 5 pages. */
static void add_valid(struct handmade *h)
{
    add_range(h, 0, 8 * PAGE_4K, 4 * PAGE_4K);
    add_range(h, 2, 3 * PAGE_2M, 2 * PAGE_2M);
    add_bitmap(h, 1, (1000 + 7) / 8, 5);
    h->so.dirty_pages = 11;
}

static void expect_ok(struct handmade *h, uint64_t want)
{
    g_autoptr(GError) err = NULL;
    struct collect c;
    uint64_t pages = 0;

    collect_init(&c, &h->f);
    g_assert_true(
        dirty_set_decode(&h->so, &h->f.t, collect_run, &c, &pages, &err));
    g_assert_no_error(err);
    g_assert_false(c.bad);
    g_assert_cmpuint(pages, ==, want);
    g_assert_cmpuint(c.pages, ==, want);
    collect_clear(&c);
}

/* Refused with INVALID_DATA, a message holding every @words, no callback. */
static void expect_refused(struct handmade *h, const char *case_name,
                           const char *const *words)
{
    g_autoptr(GError) err = NULL;
    struct collect c;
    uint64_t pages = 12345;

    collect_init(&c, &h->f);
    g_assert_false(
        dirty_set_decode(&h->so, &h->f.t, collect_run, &c, &pages, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    if (!err) {
        g_test_message("%s: accepted (%u callback calls)", case_name, c.calls);
        collect_clear(&c);
        return;
    }
    g_test_message("%s: \"%s\" (%u callback calls)", case_name, err->message,
                   c.calls);
    g_assert_cmpuint(strlen(err->message), >, 10);
    g_assert_null(strchr(err->message, '\n'));
    for (size_t i = 0; words && words[i]; i++) {
        if (!strstr(err->message, words[i])) {
            g_test_message("%s: \"%s\" does not say \"%s\"", case_name,
                           err->message, words[i]);
            g_test_fail();
        }
    }
    /* Nothing reported before the whole set was found valid. */
    if (c.calls) {
        g_test_message("%s: %u runs (%" G_GUINT64_FORMAT " pages) reported "
                       "before the set was refused",
                       case_name, c.calls, c.pages);
    }
    g_assert_cmpuint(c.calls, ==, 0);
    g_assert_cmpuint(pages, ==, 12345);
    collect_clear(&c);
}

static void test_decode_valid(void)
{
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    expect_ok(&h, 11);
    /* The first and last pages of regions, up to their very end. */
    add_range(&h, 0, 999 * PAGE_4K, PAGE_4K);
    add_range(&h, 2, 0, PAGE_2M);
    add_range(&h, 2, 5 * PAGE_2M, 11 * PAGE_2M);
    h.so.dirty_pages = 11 + 1 + 1 + 11;
    expect_ok(&h, 24);
    fixture_clear(&h.f);
}

static void test_refuse_range_region(void)
{
    const char *const words[] = {"region 3", NULL};
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    add_range(&h, 3, 0, PAGE_4K);
    h.so.dirty_pages++;
    expect_refused(&h, "range in region 3 of 3", words);
    h.ranges[h.so.n_dirty - 1].region = UINT32_MAX;
    expect_refused(&h, "range in region 2^32-1", NULL);
    fixture_clear(&h.f);
}

static void test_refuse_bitmap_region(void)
{
    const char *const words[] = {"region 3", NULL};
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    add_bitmap(&h, 3, 125, 1);
    h.so.dirty_pages++;
    expect_refused(&h, "bitmap of region 3 of 3", words);
    fixture_clear(&h.f);
}

static void test_refuse_offset_beyond(void)
{
    const char *const words[] = {"region 0", NULL};
    struct handmade h;

    /* Starts at the end of the region. */
    handmade_init(&h);
    add_valid(&h);
    add_range(&h, 0, 1000 * PAGE_4K, PAGE_4K);
    h.so.dirty_pages++;
    expect_refused(&h, "range starting at the end", words);
    /* Starts far beyond. */
    h.ranges[h.so.n_dirty - 1].offset = 1ULL << 40;
    expect_refused(&h, "range starting beyond", words);
    /* Starts inside, ends beyond. */
    h.ranges[h.so.n_dirty - 1].offset = 998 * PAGE_4K;
    h.ranges[h.so.n_dirty - 1].length = 3 * PAGE_4K;
    h.so.dirty_pages += 2;
    expect_refused(&h, "range crossing the end", words);
    /* offset + length wraps around 2^64. */
    h.ranges[h.so.n_dirty - 1].offset = PAGE_4K;
    h.ranges[h.so.n_dirty - 1].length = UINT64_MAX - PAGE_4K + 1;
    expect_refused(&h, "range wrapping around", words);
    fixture_clear(&h.f);
}

static void test_refuse_misaligned(void)
{
    const char *const r0[] = {"region 0", NULL};
    const char *const r2[] = {"region 2", NULL};
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    add_range(&h, 0, 16 * PAGE_4K + 512, PAGE_4K);
    h.so.dirty_pages++;
    expect_refused(&h, "offset not page aligned", r0);
    h.ranges[h.so.n_dirty - 1].offset = 16 * PAGE_4K;
    h.ranges[h.so.n_dirty - 1].length = PAGE_4K + 1;
    expect_refused(&h, "length not page aligned", r0);
    /* 4 KiB aligned is not enough in a region of 2 MiB pages. */
    h.ranges[h.so.n_dirty - 1].region = 2;
    h.ranges[h.so.n_dirty - 1].offset = PAGE_4K;
    h.ranges[h.so.n_dirty - 1].length = PAGE_2M;
    expect_refused(&h, "offset not huge page aligned", r2);
    h.ranges[h.so.n_dirty - 1].offset = 8 * PAGE_2M;
    h.ranges[h.so.n_dirty - 1].length = PAGE_4K;
    expect_refused(&h, "length not huge page aligned", r2);
    fixture_clear(&h.f);
}

static void test_refuse_zero_length(void)
{
    const char *const words[] = {"region 1", NULL};
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    add_range(&h, 1, 100 * PAGE_4K, 0);
    expect_refused(&h, "zero length", words);
    fixture_clear(&h.f);
}

static void test_refuse_bitmap_length(void)
{
    const char *const words[] = {"region 0", "125", NULL};
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    add_bitmap(&h, 0, 124, 1);
    h.so.dirty_pages++;
    expect_refused(&h, "bitmap one byte short", words);
    h.bitmaps[h.so.n_dirty_bitmaps - 1].bitmap.len = 126;
    expect_refused(&h, "bitmap one byte long", words);
    h.bitmaps[h.so.n_dirty_bitmaps - 1].bitmap.len = 0;
    expect_refused(&h, "empty bitmap", words);
    fixture_clear(&h.f);
}

static void test_refuse_count(void)
{
    const char *const words[] = {"12", "11", NULL};
    const char *const words0[] = {"0", "11", NULL};
    struct handmade h;

    handmade_init(&h);
    add_valid(&h);
    h.so.dirty_pages = 12;
    expect_refused(&h, "dirty_pages one too many", words);
    h.so.dirty_pages = 0;
    expect_refused(&h, "dirty_pages 0 with 11 pages in ranges", words0);
    fixture_clear(&h.f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* One broken property fails its test; the others still run. */
    g_test_set_nonfatal_assertions();
    g_test_add_func("/dirty-set/round-trip/random", test_round_trip_random);
    g_test_add_func("/dirty-set/choice", test_choice);
    g_test_add_func("/dirty-set/size/every-other-page", test_every_other_page);
    g_test_add_func("/dirty-set/size/worst-case-ranges",
                    test_worst_case_ranges);
    g_test_add_func("/dirty-set/decode/valid", test_decode_valid);
    g_test_add_func("/dirty-set/decode/refuse/range-region",
                    test_refuse_range_region);
    g_test_add_func("/dirty-set/decode/refuse/bitmap-region",
                    test_refuse_bitmap_region);
    g_test_add_func("/dirty-set/decode/refuse/offset-beyond",
                    test_refuse_offset_beyond);
    g_test_add_func("/dirty-set/decode/refuse/misaligned",
                    test_refuse_misaligned);
    g_test_add_func("/dirty-set/decode/refuse/zero-length",
                    test_refuse_zero_length);
    g_test_add_func("/dirty-set/decode/refuse/bitmap-length",
                    test_refuse_bitmap_length);
    g_test_add_func("/dirty-set/decode/refuse/dirty-pages-count",
                    test_refuse_count);
    return g_test_run();
}
