/* guest_state.c - see guest_state.h. */
#include "guest_state.h"

#include <string.h>
#include <gio/gio.h>

#include "digest.h"

#define OFF_MAGIC      0
#define OFF_VERSION    4
#define OFF_HEADER_LEN 6
#define OFF_FLAGS      8
#define OFF_RESERVED   12
#define OFF_SEED       16
#define OFF_WRITTEN    24
#define OFF_GENERATION 32
#define OFF_PAGE_SIZE  40
#define OFF_NPAGES     48
#define OFF_CHECK      56

/* Keeps npages * 8 far from overflowing. */
#define MAX_NPAGES (1ULL << 32)

static void put_u16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, sizeof(v));
}

static uint16_t get_u16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT16_FROM_LE(v);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_LE(v);
}

/* The check word covers everything but itself. */
static uint64_t blob_check(const uint8_t *buf, size_t len)
{
    g_autofree uint8_t *copy = g_memdup2(buf, len);

    put_u64(copy + OFF_CHECK, 0);
    return digest_bytes(copy, len);
}

uint8_t *guest_state_encode(const struct guest_state *s, size_t *len)
{
    size_t n = GUEST_STATE_HEADER_LEN + (s->digests ? s->npages * 8 : 0);
    uint8_t *buf = g_malloc0(n);

    put_u32(buf + OFF_MAGIC, GUEST_STATE_MAGIC);
    put_u16(buf + OFF_VERSION, GUEST_STATE_VERSION);
    put_u16(buf + OFF_HEADER_LEN, GUEST_STATE_HEADER_LEN);
    put_u32(buf + OFF_FLAGS, s->digests ? GUEST_STATE_F_DIGESTS : 0);
    put_u64(buf + OFF_SEED, s->seed);
    put_u64(buf + OFF_WRITTEN, s->pages_written);
    put_u64(buf + OFF_GENERATION, s->generation);
    put_u64(buf + OFF_PAGE_SIZE, s->page_size);
    put_u64(buf + OFF_NPAGES, s->npages);
    for (uint64_t i = 0; s->digests && i < s->npages; i++) {
        put_u64(buf + GUEST_STATE_HEADER_LEN + i * 8, s->digests[i]);
    }
    put_u64(buf + OFF_CHECK, digest_bytes(buf, n));
    *len = n;
    return buf;
}

static bool bad(GError **err, const char *msg)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "device state: %s",
                msg);
    return false;
}

static bool check_header(const uint8_t *buf, size_t len, GError **err)
{
    uint32_t magic;
    uint16_t version;

    if (len < GUEST_STATE_HEADER_LEN) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: %zu bytes, shorter than the %d-byte header",
                    len, GUEST_STATE_HEADER_LEN);
        return false;
    }
    magic = get_u32(buf + OFF_MAGIC);
    if (magic != GUEST_STATE_MAGIC) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: bad magic 0x%08x (not a postcopy-guest "
                    "blob)",
                    magic);
        return false;
    }
    version = get_u16(buf + OFF_VERSION);
    if (version != GUEST_STATE_VERSION) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "device state: version %u, this guest reads version %d",
                    version, GUEST_STATE_VERSION);
        return false;
    }
    if (get_u16(buf + OFF_HEADER_LEN) != GUEST_STATE_HEADER_LEN) {
        return bad(err, "unexpected header length");
    }
    if (get_u32(buf + OFF_FLAGS) & ~GUEST_STATE_F_DIGESTS) {
        return bad(err, "unknown flags");
    }
    if (get_u32(buf + OFF_RESERVED)) {
        return bad(err, "reserved field is not zero");
    }
    return true;
}

static bool check_geometry(const uint8_t *buf, size_t len, GError **err)
{
    uint64_t page_size = get_u64(buf + OFF_PAGE_SIZE);
    uint64_t npages = get_u64(buf + OFF_NPAGES);
    bool digests = get_u32(buf + OFF_FLAGS) & GUEST_STATE_F_DIGESTS;
    uint64_t want;

    if (!page_size || (page_size & (page_size - 1))) {
        return bad(err, "page size is not a power of two");
    }
    if (!npages || npages > MAX_NPAGES) {
        return bad(err, "page count out of range");
    }
    want = GUEST_STATE_HEADER_LEN + (digests ? npages * 8 : 0);
    if (len != want) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: %zu bytes, expected %" G_GUINT64_FORMAT
                    " for %" G_GUINT64_FORMAT " pages",
                    len, want, npages);
        return false;
    }
    return true;
}

bool guest_state_decode(const uint8_t *buf, size_t len, struct guest_state *s,
                        GError **err)
{
    if (!check_header(buf, len, err) || !check_geometry(buf, len, err)) {
        return false;
    }
    if (blob_check(buf, len) != get_u64(buf + OFF_CHECK)) {
        return bad(err, "check word mismatch (corrupted in transit?)");
    }
    memset(s, 0, sizeof(*s));
    s->seed = get_u64(buf + OFF_SEED);
    s->pages_written = get_u64(buf + OFF_WRITTEN);
    s->generation = get_u64(buf + OFF_GENERATION);
    s->page_size = get_u64(buf + OFF_PAGE_SIZE);
    s->npages = get_u64(buf + OFF_NPAGES);
    if (get_u32(buf + OFF_FLAGS) & GUEST_STATE_F_DIGESTS) {
        s->digests = g_new(uint64_t, s->npages);
        for (uint64_t i = 0; i < s->npages; i++) {
            s->digests[i] = get_u64(buf + GUEST_STATE_HEADER_LEN + i * 8);
        }
    }
    return true;
}

void guest_state_clear(struct guest_state *s)
{
    g_clear_pointer(&s->digests, g_free);
}
