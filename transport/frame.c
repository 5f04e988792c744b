/* frame.c - see frame.h. */
#include "frame.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <gio/gio.h>

#include "le.h"

enum seq_use {
    SEQ_ZERO,     /* must be 0 */
    SEQ_ANY,      /* free for the sender */
    SEQ_IF_REPLY, /* only with FRAME_F_REPLY */
};

/* What each type may carry; everything else must be zero. */
struct frame_rule {
    const char *name;
    uint32_t min_len;
    uint32_t max_len;
    uint32_t flags;
    bool has_place; /* region + offset */
    bool has_count;
    enum seq_use seq;
};

static const struct frame_rule rules[FRAME_TYPE_MAX + 1] = {
    [FRAME_MSG] = {.name = "message", .min_len = 1, .max_len = FRAME_MAX_MSG},
    [FRAME_PAGE] = {.name = "page",
                    .min_len = 1,
                    .max_len = FRAME_MAX_PAYLOAD,
                    .flags = FRAME_F_REPLY | FRAME_F_FINAL | FRAME_F_MORE,
                    .has_place = true,
                    .seq = SEQ_IF_REPLY},
    [FRAME_PAGE_ZERO] = {.name = "zero-page",
                         .flags = FRAME_F_REPLY | FRAME_F_FINAL,
                         .has_place = true,
                         .has_count = true,
                         .seq = SEQ_IF_REPLY},
    [FRAME_PAGE_REQ] = {.name = "page request",
                        .has_place = true,
                        .has_count = true,
                        .seq = SEQ_ANY},
    [FRAME_SYNC] = {.name = "sync", .seq = SEQ_ANY},
    [FRAME_KEEPALIVE] = {.name = "keepalive"},
};

static const struct frame_rule *rule_for(unsigned type)
{
    if (type == 0 || type > FRAME_TYPE_MAX) {
        return NULL;
    }
    return &rules[type];
}

const char *frame_type_name(unsigned type)
{
    const struct frame_rule *r = rule_for(type);

    return r ? r->name : "unknown";
}

static bool bad(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool bad(GError **err, const char *fmt, ...)
{
    va_list ap;

    if (!err) {
        return false;
    }
    va_start(ap, fmt);
    g_propagate_error(
        err, g_error_new_valist(G_IO_ERROR, G_IO_ERROR_INVALID_DATA, fmt, ap));
    va_end(ap);
    return false;
}

static bool validate_len(const struct frame_rule *r, uint32_t len, GError **err)
{
    if (len < r->min_len) {
        return bad(err, "%s frame with no payload", r->name);
    }
    if (len > r->max_len && r->max_len == 0) {
        return bad(err, "%s frame with a %u-byte payload (it carries none)",
                   r->name, len);
    }
    if (len > r->max_len) {
        return bad(err, "%s frame payload of %u bytes exceeds the limit of %u",
                   r->name, len, r->max_len);
    }
    return true;
}

static bool validate_seq(const struct frame_rule *r,
                         const struct frame_hdr *hdr, GError **err)
{
    bool allowed = r->seq == SEQ_ANY ||
                   (r->seq == SEQ_IF_REPLY && (hdr->flags & FRAME_F_REPLY));

    if (hdr->seq && !allowed) {
        return bad(err, "%s frame with a sequence number set (%u)", r->name,
                   hdr->seq);
    }
    return true;
}

bool frame_validate(const struct frame_hdr *hdr, GError **err)
{
    const struct frame_rule *r = rule_for(hdr->type);

    if (!r) {
        return bad(err, "unknown frame type %u", hdr->type);
    }
    if (!validate_len(r, hdr->len, err)) {
        return false;
    }
    if (hdr->flags & ~r->flags) {
        return bad(err, "%s frame with unknown flags 0x%x", r->name,
                   hdr->flags & ~r->flags);
    }
    if (!r->has_place && (hdr->region || hdr->offset)) {
        return bad(err,
                   "%s frame with a region or offset set (%u, 0x%" PRIx64 ")",
                   r->name, hdr->region, hdr->offset);
    }
    if (r->has_count && hdr->count == 0) {
        return bad(err, "%s frame covering no pages", r->name);
    }
    if (!r->has_count && hdr->count) {
        return bad(err, "%s frame with a page count set (%u)", r->name,
                   hdr->count);
    }
    return validate_seq(r, hdr, err);
}

void frame_encode(const struct frame_hdr *hdr, uint8_t buf[FRAME_HDR_LEN])
{
    put_le16(buf, FRAME_MAGIC);
    buf[2] = FRAME_VERSION;
    buf[3] = hdr->type;
    put_le32(buf + 4, hdr->flags);
    put_le32(buf + 8, hdr->region);
    put_le32(buf + 12, hdr->len);
    put_le64(buf + 16, hdr->offset);
    put_le32(buf + 24, hdr->count);
    put_le32(buf + 28, hdr->seq);
}

bool frame_decode(const uint8_t buf[FRAME_HDR_LEN], struct frame_hdr *hdr,
                  GError **err)
{
    uint16_t magic = get_le16(buf);

    if (magic != FRAME_MAGIC) {
        /* 0x16 0x03: a TLS record, a handshake; the peer speaks TLS. */
        return bad(err, "bad frame magic 0x%04x (expected 0x%04x, \"PC\")%s",
                   magic, FRAME_MAGIC,
                   magic == 0x0316 ? ": the peer speaks TLS (is [peer] tls "
                                     "set on it but off here?)"
                                   : "");
    }
    if (buf[2] != FRAME_VERSION) {
        return bad(err, "unsupported frame version %u (this build speaks %u)",
                   buf[2], FRAME_VERSION);
    }
    *hdr = (struct frame_hdr){
        .type = buf[3],
        .flags = get_le32(buf + 4),
        .region = get_le32(buf + 8),
        .len = get_le32(buf + 12),
        .offset = get_le64(buf + 16),
        .count = get_le32(buf + 24),
        .seq = get_le32(buf + 28),
    };
    return frame_validate(hdr, err);
}

/* ZERO and REQ: `count` whole pages from an aligned offset. */
static bool check_page_run(const struct frame_hdr *hdr,
                           const struct frame_region_limits *l, GError **err)
{
    const char *name = frame_type_name(hdr->type);

    if (hdr->offset & (l->page_size - 1)) {
        return bad(err,
                   "%s frame at offset 0x%" PRIx64 " is not aligned to region "
                   "%u's %" PRIu64 "-byte pages",
                   name, hdr->offset, hdr->region, l->page_size);
    }
    if (hdr->count > (l->size - hdr->offset) / l->page_size) {
        return bad(err,
                   "%s frame for %u pages at 0x%" PRIx64 " runs past the end "
                   "of region %u (%" PRIu64 " bytes)",
                   name, hdr->count, hdr->offset, hdr->region, l->size);
    }
    return true;
}

/* A page bigger than FRAME_MAX_PAYLOAD goes as chunks, in order. */
static bool check_page_chunk(const struct frame_hdr *hdr,
                             const struct frame_region_limits *l, GError **err)
{
    uint64_t end = hdr->offset + hdr->len;
    bool last = (end & (l->page_size - 1)) == 0;

    if ((hdr->offset | hdr->len) & (FRAME_PAGE_CHUNK - 1)) {
        return bad(err,
                   "page frame [0x%" PRIx64 ", +%u) is not made of %u-byte "
                   "chunks of region %u's %" PRIu64 "-byte pages",
                   hdr->offset, hdr->len, FRAME_PAGE_CHUNK, hdr->region,
                   l->page_size);
    }
    if (hdr->offset / l->page_size != (end - 1) / l->page_size) {
        return bad(err,
                   "page frame [0x%" PRIx64 ", +%u) spans two %" PRIu64
                   "-byte pages of region %u",
                   hdr->offset, hdr->len, l->page_size, hdr->region);
    }
    if (!last != !!(hdr->flags & FRAME_F_MORE)) {
        return bad(err,
                   "page frame [0x%" PRIx64 ", +%u) %s, but FRAME_F_MORE is "
                   "%s",
                   hdr->offset, hdr->len,
                   last ? "ends its page" : "does not end its page",
                   last ? "set" : "clear");
    }
    return true;
}

/* PAGE: whole pages, or chunks of one huge page. */
static bool check_page_data(const struct frame_hdr *hdr,
                            const struct frame_region_limits *l, GError **err)
{
    if (hdr->len > l->size - hdr->offset) {
        return bad(err,
                   "page frame [0x%" PRIx64 ", +%u) runs past the end of "
                   "region %u (%" PRIu64 " bytes)",
                   hdr->offset, hdr->len, hdr->region, l->size);
    }
    if (l->page_size > FRAME_MAX_PAYLOAD) {
        return check_page_chunk(hdr, l, err);
    }
    if (hdr->flags & FRAME_F_MORE) {
        return bad(err,
                   "page frame marked FRAME_F_MORE, but region %u's %" PRIu64
                   "-byte pages go whole",
                   hdr->region, l->page_size);
    }
    if ((hdr->offset | hdr->len) & (l->page_size - 1)) {
        return bad(err,
                   "page frame [0x%" PRIx64 ", +%u) does not cover whole "
                   "%" PRIu64 "-byte pages of region %u",
                   hdr->offset, hdr->len, l->page_size, hdr->region);
    }
    return true;
}

bool frame_check_page(const struct frame_hdr *hdr,
                      const struct frame_region_limits *limits, size_t n,
                      GError **err)
{
    const char *name = frame_type_name(hdr->type);
    const struct frame_region_limits *l;

    if (hdr->type != FRAME_PAGE && hdr->type != FRAME_PAGE_ZERO &&
        hdr->type != FRAME_PAGE_REQ) {
        return true;
    }
    if (hdr->region >= n) {
        return bad(err, "%s frame for region %u, but the layout has %zu", name,
                   hdr->region, n);
    }
    l = &limits[hdr->region];
    if (l->page_size == 0 || (l->page_size & (l->page_size - 1))) {
        return bad(err, "region %u has no valid page size (%" PRIu64 ")",
                   hdr->region, l->page_size);
    }
    if (hdr->offset >= l->size) {
        return bad(err,
                   "%s frame at offset 0x%" PRIx64 " is beyond the end of "
                   "region %u (%" PRIu64 " bytes)",
                   name, hdr->offset, hdr->region, l->size);
    }
    if (hdr->type == FRAME_PAGE) {
        return check_page_data(hdr, l, err);
    }
    return check_page_run(hdr, l, err);
}
