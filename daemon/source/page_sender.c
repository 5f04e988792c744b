/* page_sender.c - see page_sender.h. */
#include "page_sender.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backing.h"
#include "frame.h"
#include "ram_drops.h"

/* Every page an attached region may have fits in one frame (region.h). */
G_STATIC_ASSERT(REGION_MAX_PAGE_SIZE <= FRAME_MAX_PAYLOAD);

void page_sender_init(struct page_sender *ps, pid_t pid,
                      const struct page_counters *counters)
{
    memset(ps, 0, sizeof(*ps));
    ps->pid = pid;
    ps->counters = *counters;
}

void page_sender_destroy(struct page_sender *ps)
{
    g_free(ps->buf);
    ps->buf = NULL;
}

void page_sender_set_phase(struct page_sender *ps, _Atomic uint64_t *bytes)
{
    ps->counters.phase_bytes = bytes;
}

bool page_is_zero(const uint8_t *p, uint64_t len)
{
    const uint64_t *w = (const uint64_t *)p;

    for (uint64_t i = 0; i < len / 8; i += 4) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3]) {
            return false;
        }
    }
    return true;
}

GQuark page_sender_error_quark(void)
{
    return g_quark_from_static_string("page-sender-error-quark");
}

/*
 * [off, off+len) of @r, read into the buffer: through the region's file
 * (never through the daemon's mapping: backing.c says why), or from the
 * VMM's memory for anonymous RAM.
 */
static const uint8_t *read_pages(struct page_sender *ps, const struct region *r,
                                 uint64_t off, uint64_t len, GError **err)
{
    struct iovec local, remote = {
                            .iov_base = (void *)(uintptr_t)(r->base + off),
                            .iov_len = len,
                        };
    ssize_t n;

    if (ps->buf_len < len) {
        g_free(ps->buf);
        ps->buf = g_malloc(len);
        ps->buf_len = len;
    }
    if (r->fd >= 0) {
        return backing_read(r, off, len, ps->buf, err) ? ps->buf : NULL;
    }
    local = (struct iovec){.iov_base = ps->buf, .iov_len = len};
    n = process_vm_readv(ps->pid, &local, 1, &remote, 1, 0);
    /* ESRCH: the VMM exited; EFAULT: it unmapped the range. */
    if (n < 0 && (errno == ESRCH || errno == EFAULT)) {
        g_set_error(err, PAGE_SENDER_ERROR, PAGE_SENDER_ERROR_GONE,
                    "the source VM's memory is gone (pid %d, guest RAM at "
                    "0x%" G_GINT64_MODIFIER "x: %s)",
                    ps->pid, r->base + off, g_strerror(errno));
        return NULL;
    }
    if (n != (ssize_t)len) {
        g_set_error(
            err, G_IO_ERROR, G_IO_ERROR_FAILED,
            "reading guest RAM at 0x%" G_GINT64_MODIFIER "x of pid %d: %s",
            r->base + off, ps->pid, n < 0 ? g_strerror(errno) : "short read");
        return NULL;
    }
    return ps->buf;
}

static void count(_Atomic uint64_t *c, uint64_t v)
{
    if (c) {
        atomic_fetch_add(c, v);
    }
}

/*
 * A run of zero pages shorter than this travels as data inside the
 * surrounding frame: a frame costs a header and a syscall on each side,
 * and guests scatter lone zero pages everywhere.
 */
#define ZERO_RUN_MIN  8
#define RUN_PAGES_MAX (PAGE_SENDER_RUN / 4096)
G_STATIC_ASSERT(RUN_PAGES_MAX <= BACKING_HOLES_MAX);

static bool send_zero(struct page_sender *ps, struct channel *ch,
                      struct frame_hdr *h, uint64_t n, GError **err)
{
    h->type = FRAME_PAGE_ZERO;
    h->count = n;
    if (!channel_send_frame(ch, h, NULL, 0, err)) {
        return false;
    }
    count(ps->counters.zero, n);
    return true;
}

/*
 * Zeros for the holes inside a data frame: a hole is never read (see
 * backing_find_holes()), so its bytes come from here.  Runs of
 * ZERO_RUN_MIN holes or more go as PAGE_ZERO frames instead, so this
 * covers the longest run that stays in a frame.
 */
static const uint8_t zeros[ZERO_RUN_MIN * 4096];

/* Pages [0, n) of a run: data from @data, holes (@hole) from zeros[]. */
static int run_iov(const uint8_t *data, const bool *hole, uint64_t n,
                   uint64_t psz, struct iovec *iov)
{
    int niov = 0;

    for (uint64_t i = 0; i < n;) {
        uint64_t j = i + 1;

        while (j < n && hole[j] == hole[i] &&
               (!hole[i] || (j - i + 1) * psz <= sizeof(zeros))) {
            j++;
        }
        iov[niov++] = (struct iovec){
            .iov_base = hole[i] ? (void *)zeros : (void *)(data + i * psz),
            .iov_len = (j - i) * psz,
        };
        i = j;
    }
    return niov;
}

/*
 * One PAGE frame of @n pages at h->offset: from @data (NULL: straight
 * from the region's file by sendfile, holes read there as the zero page).
 */
static bool send_run(struct page_sender *ps, struct channel *ch,
                     const struct region *r, struct frame_hdr *h,
                     const uint8_t *data, const bool *hole, uint64_t n,
                     GError **err)
{
    uint64_t psz = r->page_size;
    struct iovec iov[RUN_PAGES_MAX];
    bool ok;

    h->type = FRAME_PAGE;
    h->len = n * psz;
    if (data) {
        ok = channel_send_frame(ch, h, iov, run_iov(data, hole, n, psz, iov),
                                err);
    } else {
        ok = channel_send_frame_file(ch, h, r->fd, r->offset + h->offset, err);
    }
    if (!ok) {
        return false;
    }
    count(ps->counters.pages, n);
    count(ps->counters.bytes, h->len);
    count(ps->counters.phase_bytes, h->len);
    return true;
}

/*
 * Long runs of @zero pages as PAGE_ZERO, the rest as PAGE frames from
 * @data (NULL: from the file).
 */
static bool send_data(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t off, const uint8_t *data,
                      const bool *hole, const bool *zero, uint64_t npages,
                      uint32_t flags, uint32_t seq, GError **err)
{
    uint64_t psz = r->page_size, i = 0;
    uint64_t max_run = MAX(1, FRAME_MAX_PAYLOAD / psz);

    while (i < npages) {
        struct frame_hdr h = {.region = r->id,
                              .offset = off + i * psz,
                              .flags = flags,
                              .seq = seq};
        uint64_t j = i;

        while (j < npages && zero[j]) {
            j++;
        }
        if (j - i >= ZERO_RUN_MIN || (j > i && j == npages)) {
            if (!send_zero(ps, ch, &h, j - i, err)) {
                return false;
            }
            i = j;
            continue;
        }
        /* Data, with the short zero runs inside it. */
        j = i;
        while (j < npages && j - i < max_run) {
            uint64_t k = j;

            while (k < npages && zero[k]) {
                k++;
            }
            if (k - j >= ZERO_RUN_MIN || (k > j && k == npages)) {
                break; /* a long zero run (or the tail) goes as a flag */
            }
            j = MIN(k + 1, i + max_run);
            j = MIN(j, npages);
        }
        if (!send_run(ps, ch, r, &h, data ? data + i * psz : NULL, hole + i,
                      j - i, err)) {
            return false;
        }
        i = j;
    }
    return true;
}

/*
 * Data stretches of shmem go by sendfile where the channel can: no copy
 * into this process and none out of it, the cold pages read once, by the
 * kernel, into the socket.  The price is the zero check, which needs the
 * bytes in hand: an allocated page of zeroes travels as data (a hole, the
 * common zero page of shmem, is still found by backing_find_holes()).
 * Measured on the bench's machine: see README, Performance.
 */
static bool sends_file(const struct channel *ch, const struct region *r)
{
    return r->fd >= 0 && backing_ops_get(r->kind)->sends_file &&
           channel_can_send_file(ch);
}

static bool send_read(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t p, uint64_t k,
                      uint32_t flags, uint32_t seq, GError **err)
{
    bool hole[RUN_PAGES_MAX], zero[RUN_PAGES_MAX];
    uint64_t off = p * r->page_size;
    const uint8_t *data;
    bool ok;

    g_assert(k <= RUN_PAGES_MAX);
    if (backing_find_holes(r, off, k, hole)) {
        struct frame_hdr h = {
            .region = r->id, .offset = off, .flags = flags, .seq = seq};

        ok = send_zero(ps, ch, &h, k, err);
        memcpy(zero, hole, k * sizeof(*hole));
    } else if (sends_file(ch, r)) {
        ok = send_data(ps, ch, r, off, NULL, hole, hole, k, flags, seq, err);
        memcpy(zero, hole, k * sizeof(*hole));
    } else {
        data = read_pages(ps, r, off, k * r->page_size, err);
        if (!data) {
            return false;
        }
        for (uint64_t i = 0; i < k; i++) {
            zero[i] =
                hole[i] || page_is_zero(data + i * r->page_size, r->page_size);
        }
        ok = send_data(ps, ch, r, off, data, hole, zero, k, flags, seq, err);
    }
    if (ok) {
        ram_drops_note(ps->drops, r, p, k, zero);
    }
    return ok;
}

bool page_sender_send(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t first, uint64_t n,
                      uint32_t flags, uint32_t seq, GError **err)
{
    uint64_t step = MAX(1, PAGE_SENDER_RUN / r->page_size);

    for (uint64_t p = first; p < first + n; p += step) {
        uint64_t k = MIN(step, first + n - p);

        if (!send_read(ps, ch, r, p, k, flags, seq, err)) {
            return false;
        }
    }
    return true;
}
