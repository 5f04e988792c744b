/*
 * test_frame.c - the peer frame header: the wire layout, round trips, each
 * malformed header rejected with its own message, random and mutated
 * headers never crashing, and the page range check against a layout.
 */
#include "frame.h"

#include <string.h>
#include <gio/gio.h>

#define KiB (1024ull)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

static void assert_hdr_equal(const struct frame_hdr *a,
                             const struct frame_hdr *b)
{
    g_assert_cmpuint(a->type, ==, b->type);
    g_assert_cmphex(a->flags, ==, b->flags);
    g_assert_cmpuint(a->region, ==, b->region);
    g_assert_cmpuint(a->len, ==, b->len);
    g_assert_cmphex(a->offset, ==, b->offset);
    g_assert_cmpuint(a->count, ==, b->count);
    g_assert_cmpuint(a->seq, ==, b->seq);
}

static void test_wire_layout(void)
{
    const struct frame_hdr hdr = {
        .type = FRAME_PAGE,
        .flags = FRAME_F_REPLY | FRAME_F_FINAL,
        .region = 0x01020304,
        .len = 0x1000,
        .offset = 0x1122334455667788ull,
        .seq = 0xaabbccdd,
    };
    const uint8_t want[FRAME_HDR_LEN] = {
        'P',  'C',  1,    FRAME_PAGE, 0x03, 0,    0,    0,    0x04, 0x03, 0x02,
        0x01, 0,    0x10, 0,          0,    0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
        0x22, 0x11, 0,    0,          0,    0,    0xdd, 0xcc, 0xbb, 0xaa,
    };
    uint8_t buf[FRAME_HDR_LEN];

    frame_encode(&hdr, buf);
    g_assert_cmpmem(buf, sizeof(buf), want, sizeof(want));
}

static const struct frame_hdr valid_hdrs[] = {
    {.type = FRAME_MSG, .len = 1},
    {.type = FRAME_MSG, .len = FRAME_MAX_MSG},
    {.type = FRAME_PAGE, .region = 3, .offset = 0x200000, .len = 4096},
    {.type = FRAME_PAGE, .len = FRAME_MAX_PAYLOAD, .flags = FRAME_F_FINAL},
    {.type = FRAME_PAGE,
     .len = FRAME_PAGE_CHUNK,
     .flags = FRAME_F_MORE | FRAME_F_REPLY,
     .seq = 77},
    {.type = FRAME_PAGE_ZERO, .region = 1, .offset = 8192, .count = 1},
    {.type = FRAME_PAGE_ZERO,
     .count = 0xffffffff,
     .flags = FRAME_F_REPLY | FRAME_F_FINAL,
     .seq = 5},
    {.type = FRAME_PAGE_REQ, .region = 2, .offset = 4096, .count = 4, .seq = 9},
    {.type = FRAME_SYNC, .seq = 3},
    {.type = FRAME_KEEPALIVE},
};

static void test_round_trip(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(valid_hdrs); i++) {
        uint8_t buf[FRAME_HDR_LEN];
        struct frame_hdr out;
        GError *err = NULL;

        g_assert_true(frame_validate(&valid_hdrs[i], &err));
        g_assert_no_error(err);
        frame_encode(&valid_hdrs[i], buf);
        g_assert_true(frame_decode(buf, &out, &err));
        g_assert_no_error(err);
        assert_hdr_equal(&out, &valid_hdrs[i]);
    }
}

struct bad_case {
    struct frame_hdr hdr;
    int poke_at; /* byte to overwrite after encoding, or -1 */
    uint8_t poke;
    const char *msg;
};

static const struct bad_case bad_cases[] = {
    {{.type = FRAME_KEEPALIVE}, 0, 'X', "bad frame magic 0x4358"},
    {{.type = FRAME_KEEPALIVE}, 1, 0, "bad frame magic 0x0050"},
    {{.type = FRAME_KEEPALIVE}, 2, 2, "unsupported frame version 2"},
    {{.type = FRAME_KEEPALIVE}, 2, 0, "unsupported frame version 0"},
    {{.type = 0}, -1, 0, "unknown frame type 0"},
    {{.type = FRAME_TYPE_MAX + 1}, -1, 0, "unknown frame type 7"},
    {{.type = 255}, -1, 0, "unknown frame type 255"},
    {{.type = FRAME_MSG}, -1, 0, "message frame with no payload"},
    {{.type = FRAME_MSG, .len = FRAME_MAX_MSG + 1},
     -1,
     0,
     "message frame payload of 67108865 bytes exceeds the limit of 67108864"},
    {{.type = FRAME_PAGE}, -1, 0, "page frame with no payload"},
    {{.type = FRAME_PAGE, .len = FRAME_MAX_PAYLOAD + 1},
     -1,
     0,
     "page frame payload of 4194305 bytes exceeds the limit of 4194304"},
    {{.type = FRAME_PAGE, .len = 0xffffffff},
     -1,
     0,
     "page frame payload of 4294967295 bytes exceeds"},
    {{.type = FRAME_PAGE_ZERO, .count = 1, .len = 4096},
     -1,
     0,
     "zero-page frame with a 4096-byte payload (it carries none)"},
    {{.type = FRAME_PAGE_REQ, .count = 1, .len = 8},
     -1,
     0,
     "page request frame with a 8-byte payload"},
    {{.type = FRAME_SYNC, .len = 1}, -1, 0, "sync frame with a 1-byte payload"},
    {{.type = FRAME_KEEPALIVE, .len = 4},
     -1,
     0,
     "keepalive frame with a 4-byte payload"},
    {{.type = FRAME_PAGE_ZERO}, -1, 0, "zero-page frame covering no pages"},
    {{.type = FRAME_PAGE_REQ}, -1, 0, "page request frame covering no pages"},
    {{.type = FRAME_PAGE, .len = 4096, .count = 3},
     -1,
     0,
     "page frame with a page count set (3)"},
    {{.type = FRAME_SYNC, .count = 1},
     -1,
     0,
     "sync frame with a page count set (1)"},
    {{.type = FRAME_PAGE, .len = 4096, .flags = 0x8},
     -1,
     0,
     "page frame with unknown flags 0x8"},
    {{.type = FRAME_PAGE, .len = 4096, .flags = 0x80000001},
     -1,
     0,
     "page frame with unknown flags 0x80000000"},
    {{.type = FRAME_PAGE_ZERO, .count = 1, .flags = FRAME_F_MORE},
     -1,
     0,
     "zero-page frame with unknown flags 0x4"},
    {{.type = FRAME_PAGE_REQ, .count = 1, .flags = FRAME_F_REPLY},
     -1,
     0,
     "page request frame with unknown flags 0x1"},
    {{.type = FRAME_MSG, .len = 10, .flags = FRAME_F_FINAL},
     -1,
     0,
     "message frame with unknown flags 0x2"},
    {{.type = FRAME_MSG, .len = 10, .region = 1},
     -1,
     0,
     "message frame with a region or offset set (1, 0x0)"},
    {{.type = FRAME_SYNC, .offset = 0x1000},
     -1,
     0,
     "sync frame with a region or offset set (0, 0x1000)"},
    {{.type = FRAME_KEEPALIVE, .region = 2},
     -1,
     0,
     "keepalive frame with a region or offset set"},
    {{.type = FRAME_PAGE, .len = 4096, .seq = 4},
     -1,
     0,
     "page frame with a sequence number set (4)"},
    {{.type = FRAME_PAGE_ZERO, .count = 1, .seq = 4},
     -1,
     0,
     "zero-page frame with a sequence number set (4)"},
    {{.type = FRAME_MSG, .len = 1, .seq = 1},
     -1,
     0,
     "message frame with a sequence number set (1)"},
    {{.type = FRAME_KEEPALIVE, .seq = 1},
     -1,
     0,
     "keepalive frame with a sequence number set (1)"},
};

static void test_bad_headers(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        uint8_t buf[FRAME_HDR_LEN];
        struct frame_hdr out;
        GError *err = NULL;

        frame_encode(&c->hdr, buf);
        if (c->poke_at >= 0) {
            buf[c->poke_at] = c->poke;
        } else {
            g_assert_false(frame_validate(&c->hdr, NULL));
        }
        g_assert_false(frame_decode(buf, &out, &err));
        g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
        if (!strstr(err->message, c->msg)) {
            g_error("case %zu: '%s' does not contain '%s'", i, err->message,
                    c->msg);
        }
        g_assert_null(strchr(err->message, '\n'));
        g_error_free(err);
    }
}

/* Accepted headers must re-encode to the very same bytes. */
static void decode_any(const uint8_t buf[FRAME_HDR_LEN], unsigned *ok,
                       unsigned *rejected)
{
    uint8_t again[FRAME_HDR_LEN];
    struct frame_hdr hdr;
    GError *err = NULL;

    if (frame_decode(buf, &hdr, &err)) {
        g_assert_no_error(err);
        frame_encode(&hdr, again);
        g_assert_cmpmem(buf, FRAME_HDR_LEN, again, FRAME_HDR_LEN);
        (*ok)++;
        return;
    }
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_cmpuint(strlen(err->message), >, 10);
    g_error_free(err);
    (*rejected)++;
}

static void test_random_headers(void)
{
    unsigned ok = 0, rejected = 0;

    for (int i = 0; i < 200000; i++) {
        uint8_t buf[FRAME_HDR_LEN];

        for (int j = 0; j < FRAME_HDR_LEN; j += 4) {
            uint32_t r = g_test_rand_int();

            memcpy(buf + j, &r, 4);
        }
        /* Half of them get past the magic and version checks. */
        if (i & 1) {
            buf[0] = 'P';
            buf[1] = 'C';
            buf[2] = FRAME_VERSION;
            buf[3] = g_test_rand_int_range(0, FRAME_TYPE_MAX + 2);
        }
        decode_any(buf, &ok, &rejected);
    }
    g_assert_cmpuint(rejected, >, 0);
    g_test_message("random: %u accepted, %u rejected", ok, rejected);
}

/* Valid headers with one to three bytes changed: near misses. */
static void test_mutated_headers(void)
{
    unsigned ok = 0, rejected = 0;

    for (int i = 0; i < 200000; i++) {
        const struct frame_hdr *h =
            &valid_hdrs[g_test_rand_int_range(0, G_N_ELEMENTS(valid_hdrs))];
        int flips = g_test_rand_int_range(1, 4);
        uint8_t buf[FRAME_HDR_LEN];

        frame_encode(h, buf);
        for (int j = 0; j < flips; j++) {
            buf[g_test_rand_int_range(3, FRAME_HDR_LEN)] =
                g_test_rand_int_range(0, 256);
        }
        decode_any(buf, &ok, &rejected);
    }
    g_assert_cmpuint(ok, >, 0);
    g_assert_cmpuint(rejected, >, 0);
    g_test_message("mutated: %u accepted, %u rejected", ok, rejected);
}

static const struct frame_region_limits layout[] = {
    {64 * MiB, 4 * KiB}, /* 0: 4 KiB pages */
    {64 * MiB, 2 * MiB}, /* 1: 2 MiB huge pages */
    {4 * GiB, 1 * GiB},  /* 2: 1 GiB huge pages, sent in chunks */
    {8 * KiB, 4 * KiB},  /* 3: two pages */
};

struct range_case {
    struct frame_hdr hdr;
    const char *msg; /* NULL: accepted */
};

#define PAGE(r, o, l, f)                                                       \
    {                                                                          \
        .type = FRAME_PAGE, .region = (r), .offset = (o), .len = (l),          \
        .flags = (f)                                                           \
    }
#define ZERO(r, o, n)                                                          \
    {                                                                          \
        .type = FRAME_PAGE_ZERO, .region = (r), .offset = (o), .count = (n)    \
    }
#define REQ(r, o, n)                                                           \
    {                                                                          \
        .type = FRAME_PAGE_REQ, .region = (r), .offset = (o), .count = (n)     \
    }

static const struct range_case range_cases[] = {
    {PAGE(0, 0, 4096, 0), NULL},
    {PAGE(0, 40960, FRAME_MAX_PAYLOAD, FRAME_F_FINAL), NULL},
    {PAGE(0, 64 * MiB - 4096, 4096, 0), NULL},
    {PAGE(1, 2 * MiB, 4 * MiB, 0), NULL},
    {PAGE(2, 0, 2 * MiB, FRAME_F_MORE), NULL},
    {PAGE(2, 3 * GiB - 2 * MiB, 2 * MiB, 0), NULL},
    {PAGE(2, 1 * GiB - 4 * MiB, 4 * MiB, 0), NULL},
    {ZERO(0, 0, 16384), NULL},
    {ZERO(2, 3 * GiB, 1), NULL},
    {REQ(1, 62 * MiB, 1), NULL},
    {REQ(3, 4096, 1), NULL},
    {{.type = FRAME_MSG, .len = 100}, NULL},
    {{.type = FRAME_SYNC, .seq = 1}, NULL},
    {PAGE(4, 0, 4096, 0), "page frame for region 4, but the layout has 4"},
    {REQ(0xffffffff, 0, 1),
     "page request frame for region 4294967295, but the layout has 4"},
    {PAGE(3, 8192, 4096, 0),
     "page frame at offset 0x2000 is beyond the end of region 3 (8192 bytes)"},
    {PAGE(0, 0xfffffffffffff000ull, 4096, 0), "is beyond the end of region 0"},
    {ZERO(3, 8192, 1), "zero-page frame at offset 0x2000 is beyond the end"},
    {PAGE(3, 4096, 8192, 0), "page frame [0x1000, +8192) runs past the end of "
                             "region 3 (8192 bytes)"},
    {PAGE(0, 100, 4096, 0), "page frame [0x64, +4096) does not cover whole "
                            "4096-byte pages of region 0"},
    {PAGE(0, 0, 100, 0), "does not cover whole 4096-byte pages"},
    {PAGE(1, 4096, 2 * MiB, 0), "does not cover whole 2097152-byte pages"},
    {PAGE(0, 0, 4096, FRAME_F_MORE),
     "page frame marked FRAME_F_MORE, but region 0's 4096-byte pages go "
     "whole"},
    {ZERO(3, 4096, 2), "zero-page frame for 2 pages at 0x1000 runs past the "
                       "end of region 3 (8192 bytes)"},
    {ZERO(0, 4096, 0xffffffff), "runs past the end of region 0"},
    {REQ(1, 4096, 1), "page request frame at offset 0x1000 is not aligned to "
                      "region 1's 2097152-byte pages"},
    {REQ(1, 62 * MiB, 2), "runs past the end of region 1"},
    {PAGE(2, 0, 2 * MiB, 0), "does not end its page, but FRAME_F_MORE is "
                             "clear"},
    {PAGE(2, 1 * GiB - 2 * MiB, 2 * MiB, FRAME_F_MORE),
     "ends its page, but FRAME_F_MORE is set"},
    {PAGE(2, 1 * MiB, 2 * MiB, FRAME_F_MORE),
     "page frame [0x100000, +2097152) is not made of 2097152-byte chunks"},
    {PAGE(2, 2 * MiB, 4096, FRAME_F_MORE), "is not made of 2097152-byte "
                                           "chunks"},
    {PAGE(2, 1 * GiB - 2 * MiB, 4 * MiB, 0), "spans two 1073741824-byte "
                                             "pages of region 2"},
    {PAGE(2, 4 * GiB - 2 * MiB, 4 * MiB, 0), "runs past the end of region 2"},
};

static void test_page_ranges(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(range_cases); i++) {
        const struct range_case *c = &range_cases[i];
        GError *err = NULL;
        bool ok;

        g_assert_true(frame_validate(&c->hdr, NULL));
        ok = frame_check_page(&c->hdr, layout, G_N_ELEMENTS(layout), &err);
        if (!c->msg) {
            g_assert_no_error(err);
            g_assert_true(ok);
            continue;
        }
        g_assert_false(ok);
        g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
        if (!strstr(err->message, c->msg)) {
            g_error("case %zu: '%s' does not contain '%s'", i, err->message,
                    c->msg);
        }
        g_error_free(err);
    }
}

static void test_bad_limits(void)
{
    const struct frame_region_limits bad[] = {{1 * MiB, 0}, {1 * MiB, 3000}};
    const struct frame_hdr h0 = ZERO(0, 0, 1), h1 = ZERO(1, 0, 1);
    GError *err = NULL;

    g_assert_false(frame_check_page(&h0, bad, 2, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull(strstr(err->message, "region 0 has no valid page size"));
    g_clear_error(&err);
    g_assert_false(frame_check_page(&h1, bad, 2, &err));
    g_assert_nonnull(strstr(err->message, "(3000)"));
    g_clear_error(&err);
    g_assert_false(frame_check_page(&h0, NULL, 0, &err));
    g_assert_nonnull(strstr(err->message, "the layout has 0"));
    g_clear_error(&err);
}

/* Random page frames against the layout: no crash, no overflow. */
static void test_random_ranges(void)
{
    unsigned ok = 0;

    for (int i = 0; i < 100000; i++) {
        struct frame_hdr h = {
            .type = g_test_rand_int_range(FRAME_PAGE, FRAME_PAGE_REQ + 1),
            .region = g_test_rand_int_range(0, 5),
            .offset = ((uint64_t)g_test_rand_int() << 32 | g_test_rand_int()) >>
                      g_test_rand_int_range(0, 64),
            .count = g_test_rand_int() >> g_test_rand_int_range(0, 32),
            .len = g_test_rand_int_range(1, FRAME_MAX_PAYLOAD + 1),
        };
        GError *err = NULL;

        if (h.type == FRAME_PAGE) {
            h.count = 0;
            h.offset &= ~(uint64_t)4095;
            h.len = (h.len & ~4095u) ?: 4096;
        } else {
            h.len = 0;
            h.count = h.count ?: 1;
        }
        if (frame_check_page(&h, layout, G_N_ELEMENTS(layout), &err)) {
            g_assert_cmpuint(h.region, <, G_N_ELEMENTS(layout));
            g_assert_cmpuint(h.offset, <, layout[h.region].size);
            ok++;
        } else {
            g_assert_nonnull(err);
            g_error_free(err);
        }
    }
    g_test_message("random ranges: %u of 100000 accepted", ok);
}

/* A TLS ClientHello where a frame was expected says what it probably is. */
static void test_tls_hint(void)
{
    uint8_t buf[FRAME_HDR_LEN] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    struct frame_hdr h;
    GError *err = NULL;

    g_assert_false(frame_decode(buf, &h, &err));
    g_assert_nonnull(strstr(err->message, "bad frame magic 0x0316"));
    g_assert_nonnull(strstr(err->message, "the peer speaks TLS"));
    g_error_free(err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/frame/decode/tls-hint", test_tls_hint);
    g_test_add_func("/frame/wire-layout", test_wire_layout);
    g_test_add_func("/frame/round-trip", test_round_trip);
    g_test_add_func("/frame/bad-headers", test_bad_headers);
    g_test_add_func("/frame/random-headers", test_random_headers);
    g_test_add_func("/frame/mutated-headers", test_mutated_headers);
    g_test_add_func("/frame/page-ranges", test_page_ranges);
    g_test_add_func("/frame/bad-limits", test_bad_limits);
    g_test_add_func("/frame/random-ranges", test_random_ranges);
    return g_test_run();
}
