/*
 * test_read_plan.c - tests for daemon/dest/read_plan.h, the destination's
 * one-sided reads as plain data, on a real page state table: a cookie
 * names its read exactly; postcopy claims only what is missing, in runs
 * no longer than asked, passing over held and installed pages; a round
 * claims exactly its declared pages; a finished read leaves each page as
 * a receiver's write would (current, installed for a waiting vCPU, stale
 * if re-dirtied, requested again or back when it failed); and a round's
 * declared set is refused for a region that is not read remotely.
 */
#include <string.h>
#include <gio/gio.h>

#include "bitmap.h"
#include "dirty_set.h"
#include "read_plan.h"

static struct page_state_table *table_new(uint32_t nregions, uint64_t npages)
{
    g_autoptr(GError) err = NULL;
    struct page_state_layout l = {.nregions = nregions};
    struct page_state_table *t;

    g_strlcpy(l.migration_id, "test", sizeof(l.migration_id));
    for (uint32_t i = 0; i < nregions; i++) {
        l.regions[i].npages = npages;
        l.regions[i].page_size = 4096;
    }
    t = page_state_create(NULL, &l, &err);
    g_assert_no_error(err);
    return t;
}

static void test_cookie(void)
{
    const struct read_req reqs[] = {
        {.region = 0, .first = 0, .npages = 1},
        {.region = 63,
         .first = READ_COOKIE_MAX_PAGE,
         .npages = 512,
         .fault = true},
        {.region = 7, .first = 123456789, .npages = 17},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(reqs); i++) {
        struct read_req back;

        read_cookie_parse(read_cookie(&reqs[i]), &back);
        g_assert_cmpuint(back.region, ==, reqs[i].region);
        g_assert_cmpuint(back.first, ==, reqs[i].first);
        g_assert_cmpuint(back.npages, ==, reqs[i].npages);
        g_assert_cmpint(back.fault, ==, reqs[i].fault);
    }
}

/* Postcopy: ABSENT and STALE only, runs cut at @max and at held pages. */
static void test_claim_missing(void)
{
    struct page_state_table *t = table_new(1, 32);
    struct page_run run;
    uint64_t pos = 0;

    /* 0-3 absent, 4 current, 5 stale, 6 requested, 7 installed, 8 writing */
    page_state_set_current(t, 0, 4, false);
    page_state_set_current(t, 0, 5, false);
    page_state_mark_stale(t, 0, 5);
    page_state_try_request(t, 0, 6);
    page_state_set_current(t, 0, 7, false);
    page_state_begin_install(t, 0, 7, PAGE_MASK(PAGE_CURRENT));
    page_state_finish_install(t, 0, 7);
    page_state_begin_write(t, 0, 8);

    g_assert_true(read_plan_claim(t, 0, NULL, &pos, 32, 3, &run));
    g_assert_cmpuint(run.first, ==, 0);
    g_assert_cmpuint(run.npages, ==, 3); /* cut at max */
    g_assert_true(read_plan_claim(t, 0, NULL, &pos, 32, 16, &run));
    g_assert_cmpuint(run.first, ==, 3);
    g_assert_cmpuint(run.npages, ==, 1); /* page 4 is current */
    g_assert_true(read_plan_claim(t, 0, NULL, &pos, 32, 16, &run));
    g_assert_cmpuint(run.first, ==, 5);
    g_assert_cmpuint(run.npages, ==, 1); /* 6 requested, 7 installed */
    g_assert_true(read_plan_claim(t, 0, NULL, &pos, 32, 64, &run));
    g_assert_cmpuint(run.first, ==, 9); /* 8 held by another writer */
    g_assert_cmpuint(run.npages, ==, 23);
    g_assert_false(read_plan_claim(t, 0, NULL, &pos, 32, 64, &run));
    g_assert_cmpuint(pos, ==, 32);
    for (uint64_t p = 0; p < 32; p++) {
        enum page_state want = p == 4   ? PAGE_CURRENT
                               : p == 6 ? PAGE_REQUESTED
                               : p == 7 ? PAGE_INSTALLED
                                        : PAGE_WRITING;

        g_assert_cmpint(page_state_get(t, 0, p), ==, want);
    }
    page_state_close(t);
}

/* A round: exactly the declared pages, an older copy replaced too. */
static void test_claim_declared(void)
{
    struct page_state_table *t = table_new(1, 128);
    unsigned long want[BITS_TO_LONGS(128)] = {0};
    struct page_run run;
    uint64_t pos = 0, held = 0;

    bitmap_set_bit(want, 3);
    bitmap_set_bit(want, 4);
    bitmap_set_bit(want, 100);
    page_state_set_current(t, 0, 4, false); /* an earlier round's copy */
    while (read_plan_claim(t, 0, want, &pos, 128, 512, &run)) {
        held += run.npages;
    }
    g_assert_cmpuint(held, ==, 3);
    for (uint64_t p = 0; p < 128; p++) {
        g_assert_cmpint(page_state_get(t, 0, p), ==,
                        bitmap_test_bit(want, p) ? PAGE_WRITING : PAGE_ABSENT);
    }
    page_state_close(t);
}

struct installs {
    uint64_t pages[8];
    unsigned n;
};

static void note_install(void *opaque, uint32_t region, uint64_t page)
{
    struct installs *in = opaque;

    g_assert_cmpuint(region, ==, 0);
    in->pages[in->n++] = page;
}

/* Done: CURRENT; a vCPU waiting: installed; re-dirtied: STALE. */
static void test_finish_ok(void)
{
    struct page_state_table *t = table_new(1, 8);
    struct read_req rq = {.region = 0, .first = 0, .npages = 4};
    struct read_outcome o = {0};
    struct installs in = {0};
    struct page_run run;
    uint64_t pos = 0;

    page_state_try_request(t, 0, 1); /* a fault: REQUESTED */
    g_assert_cmpint(page_state_begin_write(t, 0, 1), ==, PAGE_OK);
    pos = 2;
    g_assert_true(read_plan_claim(t, 0, NULL, &pos, 4, 8, &run));
    g_assert_cmpint(page_state_begin_write(t, 0, 0), ==, PAGE_OK);
    /* page 2 faults while being read; page 3 is re-dirtied (precopy) */
    g_assert_cmpint(page_state_fault(t, 0, 2), ==, PAGE_WAIT);
    page_state_mark_stale(t, 0, 3);

    read_plan_finish(t, &rq, true, note_install, &in, &o);
    g_assert_cmpuint(o.current, ==, 1);
    g_assert_cmpuint(o.install, ==, 2);
    g_assert_cmpuint(o.stale, ==, 1);
    g_assert_cmpuint(o.requested + o.back, ==, 0);
    g_assert_cmpuint(in.n, ==, 2);
    g_assert_cmpuint(in.pages[0], ==, 1);
    g_assert_cmpuint(in.pages[1], ==, 2);
    g_assert_cmpint(page_state_get(t, 0, 0), ==, PAGE_CURRENT);
    g_assert_cmpint(page_state_get(t, 0, 1), ==, PAGE_INSTALLING);
    g_assert_cmpint(page_state_get(t, 0, 2), ==, PAGE_INSTALLING);
    g_assert_cmpint(page_state_get(t, 0, 3), ==, PAGE_STALE);
    page_state_close(t);
}

/* Failed (the link went): a fault's page is asked for again, others back. */
static void test_finish_failed(void)
{
    struct page_state_table *t = table_new(1, 8);
    struct read_req rq = {.region = 0, .first = 2, .npages = 3};
    struct read_outcome o = {0};
    struct installs in = {0};

    page_state_set_current(t, 0, 4, false);
    page_state_mark_stale(t, 0, 4);
    page_state_try_request(t, 0, 3);
    for (uint64_t p = 2; p < 5; p++) {
        g_assert_cmpint(page_state_begin_write(t, 0, p), ==, PAGE_OK);
    }
    read_plan_finish(t, &rq, false, note_install, &in, &o);
    g_assert_cmpuint(in.n, ==, 0);
    g_assert_cmpuint(o.back, ==, 2);
    g_assert_cmpuint(o.requested, ==, 1);
    g_assert_cmpint(page_state_get(t, 0, 2), ==, PAGE_ABSENT);
    g_assert_cmpint(page_state_get(t, 0, 3), ==, PAGE_REQUESTED);
    g_assert_cmpint(page_state_get(t, 0, 4), ==, PAGE_STALE);
    page_state_close(t);
}

/* The VMM removed pages while they were read: REMOVED, never installed. */
static void test_finish_removed(void)
{
    struct page_state_table *t = table_new(1, 8);
    struct read_req rq = {.region = 0, .first = 0, .npages = 3};
    struct read_outcome o = {0};
    struct installs in = {0};

    page_state_try_request(t, 0, 1); /* a vCPU waits for page 1 */
    for (uint64_t p = 0; p < 3; p++) {
        g_assert_cmpint(page_state_begin_write(t, 0, p), ==, PAGE_OK);
    }
    g_assert_cmpint(page_state_remove(t, 0, 1), ==, PAGE_BUSY);
    g_assert_cmpint(page_state_remove(t, 0, 2), ==, PAGE_BUSY);
    read_plan_finish(t, &rq, true, note_install, &in, &o);
    g_assert_cmpuint(o.current, ==, 1);
    g_assert_cmpuint(o.removed, ==, 2);
    g_assert_cmpuint(in.n, ==, 0);
    g_assert_cmpint(page_state_get(t, 0, 1), ==, PAGE_REMOVED);
    g_assert_cmpint(page_state_get(t, 0, 2), ==, PAGE_REMOVED);
    page_state_close(t);
}

static const struct region_table *two_regions(void)
{
    static struct region_table rt;

    rt.n = 2;
    rt.regions[0] = (struct region){.id = 0,
                                    .kind = BACKING_SHMEM,
                                    .base = 0x100000,
                                    .size = 64 * 4096,
                                    .page_size = 4096};
    rt.regions[1] = (struct region){.id = 1,
                                    .kind = BACKING_ANON,
                                    .base = 0x10000000,
                                    .size = 64 * 4096,
                                    .page_size = 4096,
                                    .fd = -1};
    return &rt;
}

static void round_maps(unsigned long **maps, int nset, const uint64_t *set)
{
    for (int i = 0; i < 2; i++) {
        memset(maps[i], 0, BITS_TO_LONGS(64) * sizeof(unsigned long));
    }
    for (int i = 0; i < nset; i++) {
        bitmap_set_bit(maps[set[i] / 64], set[i] % 64);
    }
}

static void test_round_decode(void)
{
    const struct region_table *rt = two_regions();
    const bool readable[2] = {true, false};
    unsigned long m0[BITS_TO_LONGS(64)], m1[BITS_TO_LONGS(64)];
    unsigned long *maps[2] = {m0, m1};
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    const uint64_t ok_set[] = {0, 1, 2, 40}, bad_set[] = {5, 64 + 3};
    g_autoptr(GError) err = NULL;
    uint64_t n = 0;

    round_maps(maps, G_N_ELEMENTS(ok_set), ok_set);
    dirty_set_encode(rt, maps, &so);
    round_maps(maps, 0, NULL);
    g_assert_true(read_round_decode(&so, rt, readable, maps, &n, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(n, ==, 4);
    for (uint64_t p = 0; p < 64; p++) {
        g_assert_cmpint(bitmap_test_bit(m0, p), ==, p <= 2 || p == 40);
        g_assert_false(bitmap_test_bit(m1, p));
    }
    dirty_set_clear(&so);

    /* Anonymous region 1 is not read: the whole round is refused. */
    round_maps(maps, G_N_ELEMENTS(bad_set), bad_set);
    dirty_set_encode(rt, maps, &so);
    round_maps(maps, 0, NULL);
    g_assert_false(read_round_decode(&so, rt, readable, maps, &n, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull(strstr(err->message, "region 1"));
    for (uint64_t p = 0; p < 64; p++) {
        g_assert_false(bitmap_test_bit(m0, p));
    }
    dirty_set_clear(&so);
}

static void test_round_decode_range(void)
{
    const struct region_table *rt = two_regions();
    const bool readable[2] = {true, true};
    unsigned long m0[BITS_TO_LONGS(64)] = {0}, m1[BITS_TO_LONGS(64)] = {0};
    unsigned long *maps[2] = {m0, m1};
    Postcopy__Peer__Range r = POSTCOPY__PEER__RANGE__INIT;
    Postcopy__Peer__Range *rp = &r;
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    g_autoptr(GError) err = NULL;
    uint64_t n = 0;

    r.region = 0;
    r.offset = 60 * 4096;
    r.length = 8 * 4096; /* past the end */
    so.n_dirty = 1;
    so.dirty = &rp;
    so.dirty_pages = 8;
    g_assert_false(read_round_decode(&so, rt, readable, maps, &n, &err));
    g_assert_nonnull(err);
    for (uint64_t p = 0; p < 64; p++) {
        g_assert_false(bitmap_test_bit(m0, p));
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/read-plan/cookie", test_cookie);
    g_test_add_func("/read-plan/claim-missing", test_claim_missing);
    g_test_add_func("/read-plan/claim-declared", test_claim_declared);
    g_test_add_func("/read-plan/finish-ok", test_finish_ok);
    g_test_add_func("/read-plan/finish-failed", test_finish_failed);
    g_test_add_func("/read-plan/finish-removed", test_finish_removed);
    g_test_add_func("/read-plan/round-decode", test_round_decode);
    g_test_add_func("/read-plan/round-decode-range", test_round_decode_range);
    return g_test_run();
}
