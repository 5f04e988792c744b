/* test_region.c - tests for daemon/vmm/region.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <gio/gio.h>

#include "region.h"
#include "testlib.h"

#define PAGE  4096ull
#define HPAGE (2ull << 20)

static struct region anon_region(uint64_t base, uint64_t size)
{
    struct region r = {
        .kind = BACKING_ANON,
        .base = base,
        .size = size,
        .page_size = PAGE,
        .fd = -1,
    };
    return r;
}

static int make_memfd(uint64_t size, unsigned flags)
{
    int fd = memfd_create("test_region", MFD_CLOEXEC | flags);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    return fd;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_backing_names(void)
{
    enum backing_kind k;

    g_assert_cmpstr(backing_kind_name(BACKING_ANON), ==, "anon");
    g_assert_cmpstr(backing_kind_name(BACKING_SHMEM), ==, "shmem");
    g_assert_cmpstr(backing_kind_name(BACKING_HUGETLBFS), ==, "hugetlbfs");
    g_assert_cmpstr(backing_kind_name(0), ==, "unknown");

    g_assert_true(backing_kind_parse("anon", &k));
    g_assert_cmpint(k, ==, BACKING_ANON);
    g_assert_true(backing_kind_parse("shmem", &k));
    g_assert_cmpint(k, ==, BACKING_SHMEM);
    g_assert_true(backing_kind_parse("hugetlbfs", &k));
    g_assert_cmpint(k, ==, BACKING_HUGETLBFS);
    k = BACKING_ANON;
    g_assert_true(backing_kind_parse("hugetlb", &k));
    g_assert_cmpint(k, ==, BACKING_HUGETLBFS);
    g_assert_false(backing_kind_parse("Anon", &k));
    g_assert_false(backing_kind_parse("", &k));
    g_assert_false(backing_kind_parse(NULL, &k));
}

/*
 * Add @r to a table that already holds one region at 16 MiB, expect a
 * refusal whose message contains @needle, and check that nothing changed.
 */
static void expect_reject(const struct region *r, const char *needle)
{
    struct region_table t;
    struct region first = anon_region(16ull << 20, 1ull << 20);
    g_autoptr(GError) err = NULL;

    region_table_init(&t);
    g_assert_true(region_table_add(&t, &first, NULL));
    g_assert_false(region_table_add(&t, r, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    if (!strstr(err->message, needle)) {
        g_error("message \"%s\" lacks \"%s\"", err->message, needle);
    }
    g_assert_cmpuint(t.n, ==, 1);
    g_assert_cmphex(t.regions[0].base, ==, first.base);
    if (r->fd >= 0) {
        g_assert_true(fd_is_open(r->fd)); /* not taken on failure */
    }
    region_table_clear(&t);
}

static void test_reject_page_size(void)
{
    struct region r = anon_region(0x100000, 0x10000);
    int fd = make_memfd(HPAGE * 2, 0);

    r.page_size = 8192;
    expect_reject(&r, "page size 8192 is not valid for anon");
    r.page_size = 0;
    expect_reject(&r, "page size 0 is not valid for anon");

    r.kind = BACKING_SHMEM;
    r.fd = fd;
    r.page_size = HPAGE;
    r.base = 0x40000000;
    r.size = HPAGE;
    expect_reject(&r, "page size 2097152 is not valid for shmem");

    r.kind = BACKING_HUGETLBFS;
    r.page_size = PAGE;
    expect_reject(&r, "not valid for hugetlbfs");
    r.page_size = 3ull << 20; /* not a power of two */
    expect_reject(&r, "page size 3145728 is not valid for hugetlbfs");
    r.page_size = 1ull << 20; /* power of two, too small */
    expect_reject(&r, "page size 1048576 is not valid for hugetlbfs");

    /* Bigger than a frame carries: refused at attach, saying what to do. */
    r.page_size = 1ull << 30;
    r.base = 1ull << 30;
    r.size = 1ull << 30;
    expect_reject(&r, "hugetlbfs pages of 1024 MiB cannot be migrated");
    expect_reject(&r, "back the guest RAM with 2 MiB huge pages");
    r.page_size = 8ull << 20;
    expect_reject(&r, "hugetlbfs pages of 8 MiB cannot be migrated");

    r.kind = 7;
    r.page_size = PAGE;
    expect_reject(&r, "unknown backing kind 7");
    close(fd);
}

static void test_reject_alignment(void)
{
    struct region r = anon_region(0x100000, 0x10000);
    int fd = make_memfd(HPAGE * 4, 0);

    r.base = 0x100800;
    expect_reject(&r, "not aligned to the page size 4096");
    r.base = 0x100000;
    r.size = 0x10001;
    expect_reject(&r, "not aligned");
    r.size = 0x10000;
    r.offset = 0x200;
    expect_reject(&r, "not aligned");

    /* 4 KiB aligned is not enough for a 2 MiB page. */
    r.kind = BACKING_HUGETLBFS;
    r.fd = fd;
    r.page_size = HPAGE;
    r.base = 0x40000000 + PAGE;
    r.size = HPAGE;
    r.offset = 0;
    expect_reject(&r, "not aligned to the page size 2097152");
    r.base = 0x40000000;
    r.offset = PAGE;
    expect_reject(&r, "not aligned to the page size 2097152");
    r.offset = 0;
    r.size = HPAGE + PAGE;
    expect_reject(&r, "not aligned to the page size 2097152");
    close(fd);
}

static void test_reject_size_and_wrap(void)
{
    struct region r = anon_region(0x100000, 0);

    expect_reject(&r, "size is 0");
    r.base = UINT64_MAX - PAGE + 1;
    r.size = 2 * PAGE;
    expect_reject(&r, "wraps around the address space");
    /* Ending exactly at 2^64 also wraps: base + size is 0. */
    r.size = PAGE;
    expect_reject(&r, "wraps around the address space");
    r.base = 0x100000;
    r.offset = UINT64_MAX - PAGE + 1;
    r.size = 2 * PAGE;
    expect_reject(&r, "+ size wraps around");
}

static void test_reject_fd(void)
{
    struct region r = anon_region(0x100000, 0x10000);
    int fd = make_memfd(0x10000, 0);

    r.fd = fd;
    expect_reject(&r, "anonymous region has fd");
    r.kind = BACKING_SHMEM;
    r.fd = -1;
    expect_reject(&r, "shmem region has no backing fd");
    r.kind = BACKING_HUGETLBFS;
    r.page_size = HPAGE;
    r.size = HPAGE;
    expect_reject(&r, "hugetlbfs region has no backing fd");
    close(fd);
}

static void test_reject_overlap(void)
{
    /* The existing region is [16 MiB, 17 MiB). */
    uint64_t b = 16ull << 20, s = 1ull << 20;
    struct region r;

    r = anon_region(b, s); /* identical */
    expect_reject(&r, "overlaps region 0x1000000+0x100000");
    r = anon_region(b - PAGE, 2 * PAGE); /* straddles the start */
    expect_reject(&r, "overlaps");
    r = anon_region(b + s - PAGE, 2 * PAGE); /* straddles the end */
    expect_reject(&r, "overlaps");
    r = anon_region(b + PAGE, PAGE); /* inside */
    expect_reject(&r, "overlaps");
    r = anon_region(b - s, 4 * s); /* contains it */
    expect_reject(&r, "overlaps");
}

static void test_adjacent_and_sorted(void)
{
    struct region_table t;
    uint64_t bases[] = {0x300000, 0x100000, 0x200000, 0x0, 0x500000};
    g_autoptr(GError) err = NULL;

    region_table_init(&t);
    for (size_t i = 0; i < G_N_ELEMENTS(bases); i++) {
        struct region r = anon_region(bases[i], 0x100000);

        g_snprintf(r.name, sizeof(r.name), "r%zu", i);
        g_assert_true(region_table_add(&t, &r, &err));
        g_assert_no_error(err);
    }
    g_assert_cmpuint(t.n, ==, 5);
    for (size_t i = 0; i < t.n; i++) {
        g_assert_cmpuint(t.regions[i].id, ==, i);
        if (i > 0) {
            g_assert_cmphex(t.regions[i - 1].base, <, t.regions[i].base);
        }
    }
    g_assert_cmpstr(t.regions[0].name, ==, "r3");
    g_assert_cmpstr(t.regions[4].name, ==, "r4");
    g_assert_cmpuint(region_table_bytes(&t), ==, 5 * 0x100000);
    region_table_clear(&t);
    g_assert_cmpuint(t.n, ==, 0);
    g_assert_cmpuint(region_table_bytes(&t), ==, 0);
}

static void test_table_full(void)
{
    struct region_table t;
    struct region r;
    g_autoptr(GError) err = NULL;

    region_table_init(&t);
    for (int i = 0; i < REGION_MAX; i++) {
        r = anon_region((uint64_t)i * 2 * PAGE, PAGE);
        g_assert_true(region_table_add(&t, &r, NULL));
    }
    r = anon_region(1ull << 40, PAGE);
    g_assert_false(region_table_add(&t, &r, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
    g_assert_nonnull(strstr(err->message, "table full"));
    g_assert_cmpuint(t.n, ==, REGION_MAX);
    region_table_clear(&t);
}

static void test_lookup_boundaries(void)
{
    struct region_table t;
    struct region a = anon_region(0x100000, 0x10000);
    struct region b = anon_region(0x110000, 0x2000); /* adjacent to a */
    struct region c = anon_region(0x200000, 0x1000); /* after a gap */
    const struct region *hit;

    region_table_init(&t);
    g_assert_null(region_table_lookup(&t, 0x100000)); /* empty table */
    g_assert_true(region_table_add(&t, &c, NULL));
    g_assert_true(region_table_add(&t, &a, NULL));
    g_assert_true(region_table_add(&t, &b, NULL));

    g_assert_null(region_table_lookup(&t, 0));
    g_assert_null(region_table_lookup(&t, 0xfffff));
    hit = region_table_lookup(&t, 0x100000);
    g_assert_nonnull(hit);
    g_assert_cmphex(hit->base, ==, 0x100000);
    g_assert_cmpuint(hit->id, ==, 0);
    hit = region_table_lookup(&t, 0x10ffff);
    g_assert_nonnull(hit);
    g_assert_cmphex(hit->base, ==, 0x100000);
    hit = region_table_lookup(&t, 0x110000); /* a's end is b's start */
    g_assert_nonnull(hit);
    g_assert_cmphex(hit->base, ==, 0x110000);
    g_assert_cmpuint(hit->id, ==, 1);
    hit = region_table_lookup(&t, 0x111fff);
    g_assert_nonnull(hit);
    g_assert_cmphex(hit->base, ==, 0x110000);
    g_assert_null(region_table_lookup(&t, 0x112000)); /* b's end: gap */
    g_assert_null(region_table_lookup(&t, 0x1fffff));
    hit = region_table_lookup(&t, 0x200000);
    g_assert_nonnull(hit);
    g_assert_cmpuint(hit->id, ==, 2);
    g_assert_nonnull(region_table_lookup(&t, 0x200fff));
    g_assert_null(region_table_lookup(&t, 0x201000));
    g_assert_null(region_table_lookup(&t, UINT64_MAX));

    g_assert_cmpuint(region_page_index(hit, 0x200fff), ==, 0);
    g_assert_cmpuint(region_pages(&t.regions[0]), ==, 16);
    region_table_clear(&t);
}

static const struct region *lookup_linear(const struct region_table *t,
                                          uint64_t addr)
{
    for (size_t i = 0; i < t->n; i++) {
        if (region_contains(&t->regions[i], addr)) {
            return &t->regions[i];
        }
    }
    return NULL;
}

static void test_lookup_many(void)
{
    struct region_table t;
    uint64_t base = 0x7f0000000000ull;

    region_table_init(&t);
    /* REGION_MAX regions of varying size with varying gaps, added in a
     * shuffled order. */
    for (int k = 0; k < REGION_MAX; k++) {
        int i = (k * 37) % REGION_MAX;
        uint64_t b = base + (uint64_t)i * 64 * PAGE;
        struct region r = anon_region(b, (1 + i % 7) * PAGE);

        g_assert_true(region_table_add(&t, &r, NULL));
    }
    g_assert_cmpuint(t.n, ==, REGION_MAX);
    for (size_t i = 0; i < t.n; i++) {
        const struct region *r = &t.regions[i];

        g_assert_true(region_table_lookup(&t, r->base) == r);
        g_assert_true(region_table_lookup(&t, r->base + r->size - 1) == r);
        g_assert_null(region_table_lookup(&t, r->base + r->size));
        g_assert_null(region_table_lookup(&t, r->base - 1));
    }
    for (int i = 0; i < 20000; i++) {
        uint64_t addr = base - PAGE +
                        g_test_rand_int_range(0, REGION_MAX * 64 + 2) * PAGE +
                        g_test_rand_int_range(0, PAGE);

        g_assert_true(region_table_lookup(&t, addr) == lookup_linear(&t, addr));
    }
    region_table_clear(&t);
}

static void test_alias_shmem(void)
{
    struct region_table t;
    struct region r = {
        .kind = BACKING_SHMEM,
        .base = 0x40000000,
        .size = 2 * PAGE,
        .offset = PAGE,
        .page_size = PAGE,
    };
    g_autoptr(GError) err = NULL;
    struct region *tr;
    uint8_t *view, *alias;
    int fd = make_memfd(4 * PAGE, 0);

    r.fd = fd;
    region_table_init(&t);
    g_assert_true(region_table_add(&t, &r, &err));
    g_assert_no_error(err);
    tr = &t.regions[0];
    g_assert_null(tr->alias);
    g_assert_true(region_map_alias(tr, &err));
    g_assert_no_error(err);
    g_assert_nonnull(tr->alias);
    alias = tr->alias;
    /* A second call keeps the existing mapping. */
    g_assert_true(region_map_alias(tr, &err));
    g_assert_true(tr->alias == alias);

    /* Written through the alias, seen through an independent mapping of
     * the file at the region's offset. */
    memset(alias, 0xa5, PAGE);
    memcpy(alias + PAGE, "postcopy", 8);
    view = mmap(NULL, 4 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(view != MAP_FAILED);
    g_assert_cmpuint(view[0], ==, 0); /* before the offset: untouched */
    g_assert_cmpuint(view[PAGE], ==, 0xa5);
    g_assert_cmpuint(view[2 * PAGE - 1], ==, 0xa5);
    g_assert_cmpmem(view + 2 * PAGE, 8, "postcopy", 8);
    g_assert_cmpuint(view[3 * PAGE], ==, 0);
    munmap(view, 4 * PAGE);

    /* clear releases both the mapping and the fd. */
    region_table_clear(&t);
    g_assert_false(fd_is_open(fd));
    g_assert_cmpint(mincore(alias, PAGE, (unsigned char[1]){0}), ==, -1);
    g_assert_cmpint(errno, ==, ENOMEM);
}

static void test_alias_anon_noop(void)
{
    struct region r = anon_region(0x100000, PAGE);
    g_autoptr(GError) err = NULL;

    g_assert_true(region_map_alias(&r, &err));
    g_assert_no_error(err);
    g_assert_null(r.alias);
}

static void test_alias_failure(void)
{
    int p[2];
    struct region r = {
        .kind = BACKING_SHMEM,
        .base = 0x40000000,
        .size = PAGE,
        .page_size = PAGE,
    };
    g_autoptr(GError) err = NULL;

    /* A pipe cannot be mapped. */
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    r.fd = p[0];
    g_assert_false(region_map_alias(&r, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "cannot map shmem fd"));
    g_assert_null(r.alias);
    close(p[0]);
    close(p[1]);
}

static void test_alias_hugetlb(void)
{
    g_autofree char *why = NULL;
    g_autoptr(GError) err = NULL;
    struct region_table t;
    struct region r = {
        .kind = BACKING_HUGETLBFS,
        .base = 0x40000000,
        .page_size = testlib_hugepage_size(),
    };
    uint8_t *view;
    int fd;

    if (!testlib_hugetlb_reserve(2, &why)) {
        g_test_skip(why);
        return;
    }
    r.size = r.page_size;
    r.offset = r.page_size;
    fd = make_memfd(2 * r.page_size, MFD_HUGETLB);
    r.fd = fd;
    region_table_init(&t);
    g_assert_true(region_table_add(&t, &r, &err));
    g_assert_true(region_map_alias(&t.regions[0], &err));
    g_assert_no_error(err);
    t.regions[0].alias[r.page_size - 1] = 0x5a;
    view = mmap(NULL, 2 * r.page_size, PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(view != MAP_FAILED);
    g_assert_cmpuint(view[2 * r.page_size - 1], ==, 0x5a);
    munmap(view, 2 * r.page_size);
    region_table_clear(&t);
    g_assert_false(fd_is_open(fd));
}

#define GIGA_PAGES "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"

/* Make one 1 GiB huge page free; false and @why where the kernel cannot. */
static bool reserve_giga_page(long *before, char **why)
{
    g_autofree char *text = NULL;
    g_autofree char *more = NULL;
    g_autofree char *now = NULL;

    if (!g_file_get_contents(GIGA_PAGES, &text, NULL, NULL)) {
        *why = g_strdup("the kernel offers no 1 GiB huge pages (no " GIGA_PAGES
                        "; the CPU lacks pdpe1gb?)");
        return false;
    }
    *before = atol(text);
    more = g_strdup_printf("%ld", *before + 1);
    if (!g_file_set_contents(GIGA_PAGES, more, -1, NULL) ||
        !g_file_get_contents(GIGA_PAGES, &now, NULL, NULL) ||
        atol(now) <= *before) {
        *why = g_strdup("the kernel could not reserve a 1 GiB huge page "
                        "(memory too fragmented or too small)");
        return false;
    }
    return true;
}

/* A real 1 GiB hugetlbfs memfd is refused with the reason, fd not taken. */
static void test_reject_giga_hugetlb(void)
{
    g_autofree char *why = NULL;
    g_autofree char *back = NULL;
    struct region r = {
        .kind = BACKING_HUGETLBFS,
        .base = 1ull << 30,
        .size = 1ull << 30,
        .page_size = 1ull << 30,
    };
    long before = 0;

    if (!reserve_giga_page(&before, &why)) {
        g_test_skip(why);
        return;
    }
    r.fd = make_memfd(r.size, MFD_HUGETLB | MFD_HUGE_1GB);
    expect_reject(&r, "hugetlbfs pages of 1024 MiB cannot be migrated");
    close(r.fd);
    back = g_strdup_printf("%ld", before);
    g_file_set_contents(GIGA_PAGES, back, -1, NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/region/backing-names", test_backing_names);
    g_test_add_func("/region/reject/page-size", test_reject_page_size);
    g_test_add_func("/region/reject/hugetlb-1g", test_reject_giga_hugetlb);
    g_test_add_func("/region/reject/alignment", test_reject_alignment);
    g_test_add_func("/region/reject/size-and-wrap", test_reject_size_and_wrap);
    g_test_add_func("/region/reject/fd", test_reject_fd);
    g_test_add_func("/region/reject/overlap", test_reject_overlap);
    g_test_add_func("/region/reject/table-full", test_table_full);
    g_test_add_func("/region/adjacent-and-sorted", test_adjacent_and_sorted);
    g_test_add_func("/region/lookup/boundaries", test_lookup_boundaries);
    g_test_add_func("/region/lookup/many", test_lookup_many);
    g_test_add_func("/region/alias/shmem", test_alias_shmem);
    g_test_add_func("/region/alias/anon-noop", test_alias_anon_noop);
    g_test_add_func("/region/alias/failure", test_alias_failure);
    g_test_add_func("/region/alias/hugetlb", test_alias_hugetlb);
    return g_test_run();
}
