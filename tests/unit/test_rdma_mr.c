/*
 * test_rdma_mr.c - the RDMA region table and its message: what the source
 * may offer, where a READ resolves to (never past a region), and a
 * decoder that refuses every malformed table before using any of it.
 */
#include "rdma_mr.h"

#include <string.h>
#include <gio/gio.h>

#include "le.h"

#define MiB (1024ull * 1024ull)

static const struct rdma_mr_entry shmem = {.region = 0,
                                           .rkey = 0x1234,
                                           .addr = 0x7f0000000000ull,
                                           .length = 64 * MiB,
                                           .page_size = 4096};
static const struct rdma_mr_entry huge = {.region = 2,
                                          .rkey = 0xabcd,
                                          .addr = 0x7e0000000000ull,
                                          .length = 8 * MiB,
                                          .page_size = 2 * MiB};

static void table_two(struct rdma_mr_table *t)
{
    GError *err = NULL;

    rdma_mr_table_init(t);
    g_assert_true(rdma_mr_table_add(t, &shmem, &err));
    g_assert_true(rdma_mr_table_add(t, &huge, &err));
    g_assert_no_error(err);
}

static void assert_err(GError *err, int code, const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != G_IO_ERROR || err->code != code ||
        !strstr(err->message, text)) {
        g_error("got '%s' (code %d), wanted %d with '%s'", err->message,
                err->code, code, text);
    }
}

static void test_resolve(void)
{
    struct rdma_mr_table t;
    uint64_t raddr = 0;
    uint32_t rkey = 0;
    GError *err = NULL;

    table_two(&t);
    g_assert_true(rdma_mr_resolve(&t, 0, 8192, 3 * 4096, &raddr, &rkey, &err));
    g_assert_no_error(err);
    g_assert_cmphex(raddr, ==, shmem.addr + 8192);
    g_assert_cmphex(rkey, ==, 0x1234);
    /* The last page of a region, a whole huge page. */
    g_assert_true(
        rdma_mr_resolve(&t, 0, 64 * MiB - 4096, 4096, &raddr, &rkey, &err));
    g_assert_true(
        rdma_mr_resolve(&t, 2, 6 * MiB, 2 * MiB, &raddr, &rkey, &err));
    g_assert_cmphex(raddr, ==, huge.addr + 6 * MiB);
    g_assert_cmphex(rkey, ==, 0xabcd);
    g_assert_no_error(err);
}

struct bad_read {
    uint32_t region;
    uint64_t offset, len;
    int code;
    const char *text;
};

static const struct bad_read bad_reads[] = {
    {1, 0, 4096, G_IO_ERROR_NOT_FOUND, "region 1 is not registered"},
    {0, 100, 4096, G_IO_ERROR_INVALID_ARGUMENT, "not whole 4096-byte pages"},
    {0, 0, 100, G_IO_ERROR_INVALID_ARGUMENT, "not whole"},
    {0, 0, 0, G_IO_ERROR_INVALID_ARGUMENT, "not whole"},
    {2, 4096, 2 * MiB, G_IO_ERROR_INVALID_ARGUMENT, "2097152-byte pages"},
    {0, 64 * MiB, 4096, G_IO_ERROR_INVALID_ARGUMENT, "past the end"},
    {0, 64 * MiB - 4096, 8192, G_IO_ERROR_INVALID_ARGUMENT, "past the end"},
    /* offset + len wraps: must not pass as "inside". */
    {0, 4096, UINT64_MAX - 4095, G_IO_ERROR_INVALID_ARGUMENT, "past the end"},
};

static void test_resolve_refuses(void)
{
    struct rdma_mr_table t;

    table_two(&t);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_reads); i++) {
        const struct bad_read *b = &bad_reads[i];
        uint64_t raddr = 7;
        uint32_t rkey = 7;
        GError *err = NULL;

        g_assert_false(rdma_mr_resolve(&t, b->region, b->offset, b->len, &raddr,
                                       &rkey, &err));
        assert_err(err, b->code, b->text);
        g_assert_cmpuint(raddr, ==, 7);
        g_error_free(err);
    }
}

static void test_add_refuses(void)
{
    struct rdma_mr_entry e[] = {
        {.region = 0, .addr = 0, .length = 4096, .page_size = 4096},
        {.region = 1, .addr = 0, .length = 4096, .page_size = 3000},
        {.region = 1, .addr = 0, .length = 4096, .page_size = 2048},
        {.region = 1, .addr = 0, .length = 0, .page_size = 4096},
        {.region = 1, .addr = 0, .length = 6144, .page_size = 4096},
        {.region = 1,
         .addr = UINT64_MAX - 4095,
         .length = 8192,
         .page_size = 4096},
    };
    const char *why[] = {"listed twice", "power of two", "power of two",
                         "whole number", "whole number", "address space"};
    struct rdma_mr_table t;

    table_two(&t);
    for (size_t i = 0; i < G_N_ELEMENTS(e); i++) {
        GError *err = NULL;

        g_assert_false(rdma_mr_table_add(&t, &e[i], &err));
        assert_err(err, G_IO_ERROR_INVALID_ARGUMENT, why[i]);
        g_error_free(err);
    }
    g_assert_cmpuint(t.n, ==, 2);
}

static void test_full(void)
{
    struct rdma_mr_table t;
    GError *err = NULL;

    rdma_mr_table_init(&t);
    for (uint32_t i = 0; i < RDMA_MR_MAX; i++) {
        struct rdma_mr_entry e = shmem;

        e.region = i;
        g_assert_true(rdma_mr_table_add(&t, &e, &err));
    }
    {
        struct rdma_mr_entry e = shmem;

        e.region = RDMA_MR_MAX;
        g_assert_false(rdma_mr_table_add(&t, &e, &err));
        assert_err(err, G_IO_ERROR_INVALID_ARGUMENT, "more than 256");
        g_error_free(err);
    }
}

/* Field by field: the struct has padding. */
static void assert_entry(const struct rdma_mr_entry *a,
                         const struct rdma_mr_entry *b)
{
    g_assert_cmpuint(a->region, ==, b->region);
    g_assert_cmphex(a->rkey, ==, b->rkey);
    g_assert_cmphex(a->addr, ==, b->addr);
    g_assert_cmpuint(a->length, ==, b->length);
    g_assert_cmpuint(a->page_size, ==, b->page_size);
}

static void test_roundtrip(void)
{
    uint8_t buf[RDMA_MR_MSG_MAX];
    struct rdma_mr_table t, back;
    GError *err = NULL;
    size_t n;

    table_two(&t);
    n = rdma_mr_encode(&t, buf);
    g_assert_cmpuint(n, ==, RDMA_MR_HDR_LEN + 2 * RDMA_MR_ENTRY_LEN);
    /* The documented layout: magic, version, count, then entries. */
    g_assert_cmphex(get_le32(buf), ==, RDMA_MR_MAGIC);
    g_assert_cmpuint(get_le16(buf + 4), ==, 1);
    g_assert_cmpuint(get_le16(buf + 6), ==, 2);
    g_assert_cmphex(get_le32(buf + 8 + 32 + 4), ==, 0xabcd);
    g_assert_true(rdma_mr_decode(buf, n, &back, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(back.n, ==, 2);
    assert_entry(&back.e[0], &shmem);
    assert_entry(&back.e[1], &huge);
    /* An empty table (every region anonymous) is a valid message. */
    rdma_mr_table_init(&t);
    n = rdma_mr_encode(&t, buf);
    g_assert_true(rdma_mr_decode(buf, n, &back, &err));
    g_assert_cmpuint(back.n, ==, 0);
}

static void test_decode_refuses(void)
{
    uint8_t good[RDMA_MR_MSG_MAX], buf[RDMA_MR_MSG_MAX];
    struct rdma_mr_table t;
    size_t n;
    struct {
        size_t at; /* byte to change, or SIZE_MAX: length only */
        uint8_t val;
        long dlen; /* added to the length */
        const char *text;
    } cases[] = {
        {SIZE_MAX, 0, -(long)RDMA_MR_HDR_LEN - 64 + 7, "shorter than"},
        {0, 0x51, 0, "bad magic"},
        {4, 2, 0, "version 2"},
        {6, 3, 0, "72 bytes for 3 regions"},
        {7, 1, 0, "at most 256"},
        {SIZE_MAX, 0, -1, "71 bytes for 2 regions"},
        {SIZE_MAX, 0, 1, "73 bytes for 2 regions"},
        {8 + 31, 1, 0, "reserved"},
        {8 + 24 + 1, 0x11, 0, "power of two"}, /* page size */
        {8 + 32, 0, 0, "listed twice"},        /* region 2 -> 0 */
        {8 + 16, 1, 0, "whole number"},        /* length + 1 */
    };

    table_two(&t);
    n = rdma_mr_encode(&t, good);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *err = NULL;
        size_t len = n + cases[i].dlen;

        memcpy(buf, good, sizeof(buf));
        if (cases[i].at != SIZE_MAX) {
            buf[cases[i].at] = cases[i].val;
        }
        g_assert_false(rdma_mr_decode(buf, len, &t, &err));
        assert_err(err, G_IO_ERROR_INVALID_ARGUMENT, cases[i].text);
        g_error_free(err);
    }
}

/* The destination checks the source's table against its own Layout. */
static void test_check_layout(void)
{
    struct remote_region layout[] = {
        {.index = 0, .size = 64 * MiB, .page_size = 4096, .readable = true},
        {.index = 1, .size = 2 * MiB, .page_size = 4096, .readable = false},
        {.index = 2, .size = 8 * MiB, .page_size = 2 * MiB, .readable = true},
    };
    struct rdma_mr_entry e;
    struct rdma_mr_table t;
    GError *err = NULL;

    table_two(&t);
    g_assert_true(rdma_mr_check_layout(&t, layout, 3, &err));
    g_assert_no_error(err);
    /* Not every readable region needs to be offered. */
    rdma_mr_table_init(&t);
    g_assert_true(rdma_mr_check_layout(&t, layout, 3, &err));
    /* Region 2 missing from the layout. */
    table_two(&t);
    g_assert_false(rdma_mr_check_layout(&t, layout, 2, &err));
    assert_err(err, G_IO_ERROR_INVALID_DATA, "region 2 is not in the layout");
    g_clear_error(&err);
    /* An anonymous region offered. */
    e = shmem;
    e.region = 1;
    e.length = 2 * MiB;
    g_assert_true(rdma_mr_table_add(&t, &e, &err));
    g_assert_false(rdma_mr_check_layout(&t, layout, 3, &err));
    assert_err(err, G_IO_ERROR_INVALID_DATA, "region 1 is anonymous");
    g_clear_error(&err);
    /* Another size, another page size. */
    layout[0].size = 32 * MiB;
    table_two(&t);
    g_assert_false(rdma_mr_check_layout(&t, layout, 3, &err));
    assert_err(err, G_IO_ERROR_INVALID_DATA, "region 0 has another size");
    g_clear_error(&err);
    layout[0].size = 64 * MiB;
    layout[2].page_size = 4096;
    g_assert_false(rdma_mr_check_layout(&t, layout, 3, &err));
    assert_err(err, G_IO_ERROR_INVALID_DATA, "region 2 has another size");
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rdma-mr/resolve", test_resolve);
    g_test_add_func("/rdma-mr/resolve-refuses", test_resolve_refuses);
    g_test_add_func("/rdma-mr/add-refuses", test_add_refuses);
    g_test_add_func("/rdma-mr/full", test_full);
    g_test_add_func("/rdma-mr/roundtrip", test_roundtrip);
    g_test_add_func("/rdma-mr/decode-refuses", test_decode_refuses);
    g_test_add_func("/rdma-mr/check-layout", test_check_layout);
    return g_test_run();
}
