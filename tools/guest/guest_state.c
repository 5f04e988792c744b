/* guest_state.c - see guest_state.h. */
#include "guest_state.h"

#include <string.h>
#include <gio/gio.h>

#include "digest.h"

#define OFF_MAGIC      0
#define OFF_VERSION    4
#define OFF_HEADER_LEN 6
#define OFF_FLAGS      8
#define OFF_NREGIONS   12
#define OFF_SEED       16
#define OFF_WRITTEN    24
#define OFF_GENERATION 32
#define OFF_SIZE       40
#define OFF_NPAGES     48
#define OFF_CHECK      56

#define REGION_ENTRY_LEN 16

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

uint64_t guest_state_npages(const struct guest_state *s)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < s->nregions; i++) {
        n += s->regions[i].size / s->regions[i].page_size;
    }
    return n;
}

static size_t blob_len(unsigned nregions, uint64_t npages, bool digests)
{
    return GUEST_STATE_HEADER_LEN + (size_t)nregions * REGION_ENTRY_LEN +
           (digests ? npages * 8 : 0);
}

uint8_t *guest_state_encode(const struct guest_state *s, size_t *len)
{
    uint64_t npages = guest_state_npages(s);
    size_t n = blob_len(s->nregions, npages, s->digests);
    uint8_t *buf = g_malloc0(n);
    uint8_t *p = buf + GUEST_STATE_HEADER_LEN;
    uint64_t size = 0;

    g_assert(s->nregions >= 1 && s->nregions <= GUEST_STATE_REGIONS_MAX);
    for (unsigned i = 0; i < s->nregions; i++, p += REGION_ENTRY_LEN) {
        put_u64(p, s->regions[i].size);
        put_u64(p + 8, s->regions[i].page_size);
        size += s->regions[i].size;
    }
    for (uint64_t i = 0; s->digests && i < npages; i++) {
        put_u64(p + i * 8, s->digests[i]);
    }
    put_u32(buf + OFF_MAGIC, GUEST_STATE_MAGIC);
    put_u16(buf + OFF_VERSION, GUEST_STATE_VERSION);
    put_u16(buf + OFF_HEADER_LEN, GUEST_STATE_HEADER_LEN);
    put_u32(buf + OFF_FLAGS, s->digests ? GUEST_STATE_F_DIGESTS : 0);
    put_u32(buf + OFF_NREGIONS, s->nregions);
    put_u64(buf + OFF_SEED, s->seed);
    put_u64(buf + OFF_WRITTEN, s->pages_written);
    put_u64(buf + OFF_GENERATION, s->generation);
    put_u64(buf + OFF_SIZE, size);
    put_u64(buf + OFF_NPAGES, npages);
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
    if (!get_u32(buf + OFF_NREGIONS) ||
        get_u32(buf + OFF_NREGIONS) > GUEST_STATE_REGIONS_MAX) {
        return bad(err, "region count out of range");
    }
    return true;
}

static bool region_geometry_ok(const uint8_t *entry, unsigned i, GError **err)
{
    uint64_t size = get_u64(entry);
    uint64_t page_size = get_u64(entry + 8);

    if (page_size < 4096 || (page_size & (page_size - 1))) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: ram%u: page size %" G_GUINT64_FORMAT
                    " is not a power of two of at least 4096",
                    i, page_size);
        return false;
    }
    if (!size || size % page_size || size / page_size > MAX_NPAGES) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: ram%u: size %" G_GUINT64_FORMAT
                    " is not a multiple of its page size in range",
                    i, size);
        return false;
    }
    return true;
}

/* Every region valid, and the header's totals are their sums. */
static bool check_regions(const uint8_t *buf, size_t len, GError **err)
{
    unsigned nregions = get_u32(buf + OFF_NREGIONS);
    const uint8_t *p = buf + GUEST_STATE_HEADER_LEN;
    uint64_t size = 0, npages = 0;

    if (len < blob_len(nregions, 0, false)) {
        return bad(err, "shorter than its region table");
    }
    for (unsigned i = 0; i < nregions; i++, p += REGION_ENTRY_LEN) {
        if (!region_geometry_ok(p, i, err)) {
            return false;
        }
        npages += get_u64(p) / get_u64(p + 8);
        if (!g_uint64_checked_add(&size, size, get_u64(p))) {
            return bad(err, "total size out of range");
        }
    }
    if (npages > MAX_NPAGES) {
        return bad(err, "page count out of range");
    }
    if (size != get_u64(buf + OFF_SIZE) ||
        npages != get_u64(buf + OFF_NPAGES)) {
        return bad(err, "totals do not match the region table");
    }
    return true;
}

static bool check_length(const uint8_t *buf, size_t len, GError **err)
{
    unsigned nregions = get_u32(buf + OFF_NREGIONS);
    uint64_t npages = get_u64(buf + OFF_NPAGES);
    bool digests = get_u32(buf + OFF_FLAGS) & GUEST_STATE_F_DIGESTS;
    size_t want = blob_len(nregions, npages, digests);

    if (len != want) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: %zu bytes, expected %zu for %u regions of "
                    "%" G_GUINT64_FORMAT " pages",
                    len, want, nregions, npages);
        return false;
    }
    return true;
}

static void fill_state(const uint8_t *buf, struct guest_state *s)
{
    const uint8_t *p = buf + GUEST_STATE_HEADER_LEN;

    memset(s, 0, sizeof(*s));
    s->seed = get_u64(buf + OFF_SEED);
    s->pages_written = get_u64(buf + OFF_WRITTEN);
    s->generation = get_u64(buf + OFF_GENERATION);
    s->nregions = get_u32(buf + OFF_NREGIONS);
    s->npages = get_u64(buf + OFF_NPAGES);
    for (unsigned i = 0; i < s->nregions; i++, p += REGION_ENTRY_LEN) {
        s->regions[i].size = get_u64(p);
        s->regions[i].page_size = get_u64(p + 8);
    }
    if (get_u32(buf + OFF_FLAGS) & GUEST_STATE_F_DIGESTS) {
        s->digests = g_new(uint64_t, s->npages);
        for (uint64_t i = 0; i < s->npages; i++) {
            s->digests[i] = get_u64(p + i * 8);
        }
    }
}

bool guest_state_decode(const uint8_t *buf, size_t len, struct guest_state *s,
                        GError **err)
{
    if (!check_header(buf, len, err) || !check_regions(buf, len, err) ||
        !check_length(buf, len, err)) {
        return false;
    }
    if (blob_check(buf, len) != get_u64(buf + OFF_CHECK)) {
        return bad(err, "check word mismatch (corrupted in transit?)");
    }
    fill_state(buf, s);
    return true;
}

bool guest_state_fits(const struct guest_state *s,
                      const struct guest_state *mine, GError **err)
{
    if (s->nregions != mine->nregions) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state is for %u regions, this guest has %u",
                    s->nregions, mine->nregions);
        return false;
    }
    for (unsigned i = 0; i < s->nregions; i++) {
        const struct guest_state_region *a = &s->regions[i], *b;

        b = &mine->regions[i];
        if (a->size == b->size && a->page_size == b->page_size) {
            continue;
        }
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "device state: ram%u is %" G_GUINT64_FORMAT
                    " pages of %" G_GUINT64_FORMAT " bytes, this guest has "
                    "%" G_GUINT64_FORMAT " pages of %" G_GUINT64_FORMAT,
                    i, a->size / a->page_size, a->page_size,
                    b->size / b->page_size, b->page_size);
        return false;
    }
    return true;
}

void guest_state_clear(struct guest_state *s)
{
    g_clear_pointer(&s->digests, g_free);
}
