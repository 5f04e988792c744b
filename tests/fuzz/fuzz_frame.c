/*
 * fuzz_frame.c - libFuzzer target: the peer frame header (transport/frame.h).
 *
 * The input is a stream of 32-byte wire headers (a short tail is ignored).
 * Each goes through frame_decode() and, when accepted, frame_check_page()
 * against a fixed region layout, as a receiver does before it touches
 * memory.  Beyond the sanitizers, the target checks the contract of
 * frame.h: every rejection is one G_IO_ERROR_INVALID_DATA line, a decoded
 * header passes frame_validate() and encodes back to the same bytes, and a
 * page frame that frame_check_page() accepts lies inside its region, in
 * whole pages (or in-order chunks of one huge page).
 */
#include "frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

#define KiB (1024ull)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

/* What a destination could hold: small, 2 MiB, 1 GiB pages, a huge region. */
static const struct frame_region_limits limits[] = {
    {.size = 1 * MiB, .page_size = 4 * KiB},
    {.size = 64 * MiB, .page_size = 2 * MiB},
    {.size = 4 * GiB, .page_size = 1 * GiB},
    {.size = 12 * KiB, .page_size = 4 * KiB},
    /* The biggest region region_table_add() lets through at base 0. */
    {.size = UINT64_MAX - 1 * GiB + 1, .page_size = 1 * GiB},
    {.size = UINT64_MAX - 4 * KiB + 1, .page_size = 4 * KiB},
    /* frame_check_page() refuses what no region table holds. */
    {.size = 1 * MiB, .page_size = 0},
    {.size = 1 * MiB, .page_size = 3 * KiB},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const uint8_t *buf)
{
    fprintf(stderr, "fuzz_frame: %s; header:", what);
    for (size_t i = 0; i < FRAME_HDR_LEN; i++) {
        fprintf(stderr, " %02x", buf[i]);
    }
    fputc('\n', stderr);
    abort();
}

/* frame.h: "Every rejection is a G_IO_ERROR_INVALID_DATA with a one-line
 * message." */
static void check_rejection(GError *err, const uint8_t *buf)
{
    if (!err) {
        fail("rejected without an error", buf);
    }
    if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA)) {
        fail("rejected with an error other than G_IO_ERROR_INVALID_DATA", buf);
    }
    if (!err->message[0] || strchr(err->message, '\n')) {
        fail("rejection message is empty or not one line", buf);
    }
    g_error_free(err);
}

/* An accepted PAGE, PAGE_ZERO or PAGE_REQ frame names whole pages inside
 * its region (computed without overflow). */
static void check_accepted_page(const struct frame_hdr *h, const uint8_t *buf)
{
    const struct frame_region_limits *l;
    unsigned __int128 end;

    if (h->type != FRAME_PAGE && h->type != FRAME_PAGE_ZERO &&
        h->type != FRAME_PAGE_REQ) {
        return;
    }
    if (h->region >= G_N_ELEMENTS(limits)) {
        fail("accepted a page frame for a region outside the layout", buf);
    }
    l = &limits[h->region];
    if (h->type != FRAME_PAGE) {
        end = (unsigned __int128)h->offset +
              (unsigned __int128)h->count * l->page_size;
        if (h->offset % l->page_size || end > l->size) {
            fail("accepted a page run that is unaligned or past the region",
                 buf);
        }
        return;
    }
    end = (unsigned __int128)h->offset + h->len;
    if (end > l->size) {
        fail("accepted page data past the end of the region", buf);
    }
    if (l->page_size <= FRAME_MAX_PAYLOAD) {
        if (h->offset % l->page_size || h->len % l->page_size ||
            (h->flags & FRAME_F_MORE)) {
            fail("accepted page data that is not whole pages", buf);
        }
        return;
    }
    if (h->offset % FRAME_PAGE_CHUNK || h->len % FRAME_PAGE_CHUNK) {
        fail("accepted a huge page chunk that is not chunk-aligned", buf);
    }
    if (h->offset / l->page_size != (uint64_t)((end - 1) / l->page_size)) {
        fail("accepted a huge page chunk spanning two pages", buf);
    }
    if (!!(h->flags & FRAME_F_MORE) != !!((uint64_t)end % l->page_size)) {
        fail("accepted a huge page chunk with FRAME_F_MORE wrong", buf);
    }
}

static void one_header(const uint8_t *buf)
{
    struct frame_hdr hdr;
    uint8_t again[FRAME_HDR_LEN];
    GError *err = NULL;

    if (!frame_decode(buf, &hdr, &err)) {
        check_rejection(err, buf);
        return;
    }
    if (err) {
        fail("accepted with an error set", buf);
    }
    if (!frame_validate(&hdr, NULL)) {
        fail("frame_decode accepted what frame_validate refuses", buf);
    }
    if (!strcmp(frame_type_name(hdr.type), "unknown")) {
        fail("accepted a header of unknown type", buf);
    }
    frame_encode(&hdr, again);
    if (memcmp(again, buf, FRAME_HDR_LEN)) {
        fail("a decoded header does not encode back to the same bytes", buf);
    }
    if (!frame_check_page(&hdr, limits, G_N_ELEMENTS(limits), &err)) {
        check_rejection(err, buf);
        return;
    }
    if (err) {
        fail("page check passed with an error set", buf);
    }
    check_accepted_page(&hdr, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t off = 0; off + FRAME_HDR_LEN <= size; off += FRAME_HDR_LEN) {
        uint8_t buf[FRAME_HDR_LEN];

        memcpy(buf, data + off, FRAME_HDR_LEN); /* aligned, and no peeking */
        one_header(buf);
    }
    return 0;
}
