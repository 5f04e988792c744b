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
#include "iov.h"
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

static void buf_reserve(struct page_sender *ps, uint64_t len)
{
    if (ps->buf_len < len) {
        g_free(ps->buf);
        ps->buf = g_malloc(len);
        ps->buf_len = len;
    }
}

/*
 * @len bytes of the VMM's memory at the @nremote ranges of @remote (which
 * this changes) into @buf.  A range that fails after others were read
 * ends the call short: it is tried again first, to say why it failed.
 */
static bool read_vm(struct page_sender *ps, uint8_t *buf, uint64_t len,
                    struct iovec *remote, int nremote, GError **err)
{
    struct iovec local = {.iov_base = buf, .iov_len = len};
    uint64_t addr;
    ssize_t n;

    do {
        addr = (uintptr_t)remote->iov_base;
        n = process_vm_readv(ps->pid, &local, 1, remote, nremote, 0);
        if (n > 0) {
            local.iov_base = (uint8_t *)local.iov_base + n;
            local.iov_len -= n;
            iov_advance(&remote, &nremote, n);
        }
    } while (n > 0 && local.iov_len);
    if (!local.iov_len) {
        return true;
    }
    /* ESRCH: the VMM exited; EFAULT: it unmapped the range. */
    if (n < 0 && (errno == ESRCH || errno == EFAULT)) {
        g_set_error(err, PAGE_SENDER_ERROR, PAGE_SENDER_ERROR_GONE,
                    "the source VM's memory is gone (pid %d, guest RAM at "
                    "0x%" G_GINT64_MODIFIER "x: %s)",
                    ps->pid, addr, g_strerror(errno));
        return false;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                "reading guest RAM at 0x%" G_GINT64_MODIFIER "x of pid %d: %s",
                addr, ps->pid, n < 0 ? g_strerror(errno) : "short read");
    return false;
}

/*
 * [off, off+len) of @r, read into the buffer: through the region's file
 * (never through the daemon's mapping: backing.c says why), or from the
 * VMM's memory for anonymous RAM.
 */
static const uint8_t *read_pages(struct page_sender *ps, const struct region *r,
                                 uint64_t off, uint64_t len, GError **err)
{
    struct iovec remote = {.iov_base = (void *)(uintptr_t)(r->base + off),
                           .iov_len = len};

    buf_reserve(ps, len);
    if (r->fd >= 0) {
        return backing_read(r, off, len, ps->buf, err) ? ps->buf : NULL;
    }
    return read_vm(ps, ps->buf, len, &remote, 1, err) ? ps->buf : NULL;
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

/*
 * The queue.  A dirty page on its own costs three syscalls by
 * page_sender_send() (mincore, the header, a sendfile of 4 KiB), and a
 * syscall costs about 1 us on the bench's machine: scattered dirty pages
 * went at 20 us each, a fifth of the bulk rate.  Queued, a run costs one
 * pread (anonymous RAM: one process_vm_readv for the whole queue) and the
 * queue one sendmsg.  No mincore: pread reads a shmem hole as zeroes
 * without allocating it, and a run that reads all zero goes as PAGE_ZERO.
 * Runs of PAGE_SENDER_SHORT_RUN and more are not queued: sendfile moves
 * them with no copy, and their syscalls are few for their bytes.
 */
#define SHORT_PAGES_MAX (PAGE_SENDER_SHORT_RUN / 4096)

void page_sender_discard(struct page_sender *ps)
{
    ps->queue.n = 0;
    ps->queue.bytes = 0;
}

/* Every queued run into ps->buf, one after the other. */
static bool read_queue(struct page_sender *ps, GError **err)
{
    struct page_queue *q = &ps->queue;
    const struct region *r = q->r;
    struct iovec remote[PAGE_SENDER_QUEUE];
    uint64_t psz = r->page_size, at = 0;

    buf_reserve(ps, q->bytes);
    for (unsigned i = 0; i < q->n; i++) {
        uint64_t off = q->first[i] * psz, len = q->count[i] * psz;

        if (r->fd >= 0 && !backing_read(r, off, len, ps->buf + at, err)) {
            return false;
        }
        remote[i] = (struct iovec){
            .iov_base = (void *)(uintptr_t)(r->base + off), .iov_len = len};
        at += len;
    }
    return r->fd >= 0 || read_vm(ps, ps->buf, q->bytes, remote, q->n, err);
}

/* Run @i of the queue, read at @data, as one frame; *@zero per page. */
static void queue_frame(struct page_sender *ps, unsigned i, const uint8_t *data,
                        struct frame_hdr *h, struct iovec *iov, bool *zero)
{
    const struct page_queue *q = &ps->queue;
    uint64_t psz = q->r->page_size, n = q->count[i];
    bool all_zero = true;

    for (uint64_t k = 0; k < n; k++) {
        zero[k] = page_is_zero(data + k * psz, psz);
        all_zero &= zero[k];
    }
    *h = (struct frame_hdr){.type = all_zero ? FRAME_PAGE_ZERO : FRAME_PAGE,
                            .region = q->r->id,
                            .offset = q->first[i] * psz,
                            .len = all_zero ? 0 : n * psz,
                            .count = all_zero ? n : 0,
                            .flags = q->flags,
                            .seq = q->seq};
    *iov = (struct iovec){.iov_base = (void *)data, .iov_len = h->len};
}

static bool send_queue(struct page_sender *ps, GError **err)
{
    struct page_queue *q = &ps->queue;
    struct frame_hdr h[PAGE_SENDER_QUEUE];
    struct iovec iov[PAGE_SENDER_QUEUE];
    bool zero[PAGE_SENDER_QUEUE][SHORT_PAGES_MAX];
    uint64_t at = 0, bytes = 0, zero_pages = 0;

    if (!read_queue(ps, err)) {
        return false;
    }
    for (unsigned i = 0; i < q->n; i++) {
        queue_frame(ps, i, ps->buf + at, &h[i], &iov[i], zero[i]);
        at += q->count[i] * q->r->page_size;
        bytes += h[i].len;
        zero_pages += h[i].count;
    }
    if (!channel_send_frames(q->ch, h, iov, q->n, err)) {
        return false;
    }
    for (unsigned i = 0; i < q->n; i++) {
        ram_drops_note(ps->drops, q->r, q->first[i], q->count[i], zero[i]);
    }
    count(ps->counters.pages, q->bytes / q->r->page_size - zero_pages);
    count(ps->counters.zero, zero_pages);
    count(ps->counters.bytes, bytes);
    count(ps->counters.phase_bytes, bytes);
    return true;
}

bool page_sender_flush(struct page_sender *ps, GError **err)
{
    bool ok = !ps->queue.n || send_queue(ps, err);

    page_sender_discard(ps);
    return ok;
}

static bool queue_fits(const struct page_queue *q, struct channel *ch,
                       const struct region *r, uint64_t len, uint32_t flags,
                       uint32_t seq)
{
    return !q->n ||
           (q->ch == ch && q->r == r && q->flags == flags && q->seq == seq &&
            q->n < PAGE_SENDER_QUEUE && q->bytes + len <= PAGE_SENDER_RUN);
}

bool page_sender_queue(struct page_sender *ps, struct channel *ch,
                       const struct region *r, uint64_t first, uint64_t n,
                       uint32_t flags, uint32_t seq, GError **err)
{
    struct page_queue *q = &ps->queue;
    uint64_t len = n * r->page_size;

    if (len >= PAGE_SENDER_SHORT_RUN) {
        /*
         * What waits goes first: pages leave in the order they were
         * given, and a short run (a postcopy prefetch window's rest) does
         * not wait behind long ones until the stream's end.
         */
        return page_sender_flush(ps, err) &&
               page_sender_send(ps, ch, r, first, n, flags, seq, err);
    }
    if (!queue_fits(q, ch, r, len, flags, seq) && !page_sender_flush(ps, err)) {
        return false;
    }
    q->ch = ch;
    q->r = r;
    q->flags = flags;
    q->seq = seq;
    q->first[q->n] = first;
    q->count[q->n++] = n;
    q->bytes += len;
    return true;
}
