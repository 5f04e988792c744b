/* rdma_mr.c - see rdma_mr.h. */
#include "rdma_mr.h"

#include <gio/gio.h>

#include "le.h"

#define MIN_PAGE 4096u

void rdma_mr_table_init(struct rdma_mr_table *t)
{
    t->n = 0;
}

static bool invalid(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool invalid(GError **err, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, msg);
    return false;
}

static bool entry_check(const struct rdma_mr_entry *e, GError **err)
{
    uint32_t ps = e->page_size;

    if (ps < MIN_PAGE || (ps & (ps - 1))) {
        return invalid(err,
                       "RDMA region %u: page size %u is not a power of "
                       "two of at least 4096",
                       e->region, ps);
    }
    if (!e->length || e->length % ps) {
        return invalid(err,
                       "RDMA region %u: length %" G_GUINT64_FORMAT
                       " is not a whole number of %u-byte pages",
                       e->region, e->length, ps);
    }
    if (e->addr > UINT64_MAX - e->length) {
        return invalid(err,
                       "RDMA region %u: address 0x%" G_GINT64_MODIFIER
                       "x + length runs past the address space",
                       e->region, e->addr);
    }
    return true;
}

bool rdma_mr_table_add(struct rdma_mr_table *t, const struct rdma_mr_entry *e,
                       GError **err)
{
    if (!entry_check(e, err)) {
        return false;
    }
    if (rdma_mr_table_find(t, e->region)) {
        return invalid(err, "RDMA region %u listed twice", e->region);
    }
    if (t->n == RDMA_MR_MAX) {
        return invalid(err, "more than %u RDMA regions", RDMA_MR_MAX);
    }
    t->e[t->n++] = *e;
    return true;
}

const struct rdma_mr_entry *rdma_mr_table_find(const struct rdma_mr_table *t,
                                               uint32_t region)
{
    for (unsigned i = 0; i < t->n; i++) {
        if (t->e[i].region == region) {
            return &t->e[i];
        }
    }
    return NULL;
}

bool rdma_mr_resolve(const struct rdma_mr_table *t, uint32_t region,
                     uint64_t offset, uint64_t len, uint64_t *raddr,
                     uint32_t *rkey, GError **err)
{
    const struct rdma_mr_entry *e = rdma_mr_table_find(t, region);

    if (!e) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "region %u is not registered for RDMA", region);
        return false;
    }
    if (!len || offset % e->page_size || len % e->page_size) {
        return invalid(err,
                       "RDMA read of %" G_GUINT64_FORMAT " bytes at "
                       "0x%" G_GINT64_MODIFIER "x in region %u: not whole "
                       "%u-byte pages",
                       len, offset, region, e->page_size);
    }
    if (offset >= e->length || len > e->length - offset) {
        return invalid(
            err,
            "RDMA read at 0x%" G_GINT64_MODIFIER "x + %" G_GUINT64_FORMAT
            " runs past the end of region %u (%" G_GUINT64_FORMAT " bytes)",
            offset, len, region, e->length);
    }
    *raddr = e->addr + offset;
    *rkey = e->rkey;
    return true;
}

size_t rdma_mr_encode(const struct rdma_mr_table *t, uint8_t *buf)
{
    uint8_t *p = buf + RDMA_MR_HDR_LEN;

    put_le32(buf, RDMA_MR_MAGIC);
    put_le16(buf + 4, RDMA_MR_VERSION);
    put_le16(buf + 6, t->n);
    for (unsigned i = 0; i < t->n; i++, p += RDMA_MR_ENTRY_LEN) {
        const struct rdma_mr_entry *e = &t->e[i];

        put_le32(p, e->region);
        put_le32(p + 4, e->rkey);
        put_le64(p + 8, e->addr);
        put_le64(p + 16, e->length);
        put_le32(p + 24, e->page_size);
        put_le32(p + 28, 0); /* reserved: must be zero */
    }
    return p - buf;
}

static bool decode_header(const uint8_t *buf, size_t len, unsigned *n,
                          GError **err)
{
    if (len < RDMA_MR_HDR_LEN) {
        return invalid(err,
                       "RDMA region table: %zu bytes, shorter than its "
                       "header",
                       len);
    }
    if (get_le32(buf) != RDMA_MR_MAGIC) {
        return invalid(err, "RDMA region table: bad magic 0x%08x",
                       get_le32(buf));
    }
    if (get_le16(buf + 4) != RDMA_MR_VERSION) {
        return invalid(err,
                       "RDMA region table: version %u, this daemon "
                       "speaks %u",
                       get_le16(buf + 4), RDMA_MR_VERSION);
    }
    *n = get_le16(buf + 6);
    if (*n > RDMA_MR_MAX) {
        return invalid(err, "RDMA region table: %u regions, at most %u", *n,
                       RDMA_MR_MAX);
    }
    if (len != RDMA_MR_HDR_LEN + (size_t)*n * RDMA_MR_ENTRY_LEN) {
        return invalid(err, "RDMA region table: %zu bytes for %u regions", len,
                       *n);
    }
    return true;
}

bool rdma_mr_decode(const uint8_t *buf, size_t len, struct rdma_mr_table *t,
                    GError **err)
{
    const uint8_t *p = buf + RDMA_MR_HDR_LEN;
    unsigned n = 0;

    rdma_mr_table_init(t);
    if (!decode_header(buf, len, &n, err)) {
        return false;
    }
    for (unsigned i = 0; i < n; i++, p += RDMA_MR_ENTRY_LEN) {
        struct rdma_mr_entry e = {
            .region = get_le32(p),
            .rkey = get_le32(p + 4),
            .addr = get_le64(p + 8),
            .length = get_le64(p + 16),
            .page_size = get_le32(p + 24),
        };

        if (get_le32(p + 28)) {
            return invalid(err,
                           "RDMA region table: entry %u has reserved "
                           "bits set",
                           i);
        }
        if (!rdma_mr_table_add(t, &e, err)) {
            return false;
        }
    }
    return true;
}

static const struct remote_region *
layout_find(const struct remote_region *layout, unsigned n, uint32_t index)
{
    for (unsigned i = 0; i < n; i++) {
        if (layout[i].index == index) {
            return &layout[i];
        }
    }
    return NULL;
}

bool rdma_mr_check_layout(const struct rdma_mr_table *t,
                          const struct remote_region *layout, unsigned n,
                          GError **err)
{
    for (unsigned i = 0; i < t->n; i++) {
        const struct rdma_mr_entry *e = &t->e[i];
        const struct remote_region *r = layout_find(layout, n, e->region);
        const char *why = NULL;

        if (!r) {
            why = "is not in the layout";
        } else if (!r->readable) {
            why = "is anonymous memory, which is never read remotely";
        } else if (e->length != r->size || e->page_size != r->page_size) {
            why = "has another size or page size than in the layout";
        }
        if (why) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "RDMA region table: region %u %s", e->region, why);
            return false;
        }
    }
    return true;
}
