/* page_sender.c - see page_sender.h. */
#include "page_sender.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "frame.h"

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

/* [off, off+len) of @r: the alias itself, or read into the buffer. */
static const uint8_t *read_pages(struct page_sender *ps, const struct region *r,
                                 uint64_t off, uint64_t len, GError **err)
{
    struct iovec local, remote = {
                            .iov_base = (void *)(uintptr_t)(r->base + off),
                            .iov_len = len,
                        };
    ssize_t n;

    if (r->alias) {
        return r->alias + off;
    }
    if (ps->buf_len < len) {
        g_free(ps->buf);
        ps->buf = g_malloc(len);
        ps->buf_len = len;
    }
    local = (struct iovec){.iov_base = ps->buf, .iov_len = len};
    n = process_vm_readv(ps->pid, &local, 1, &remote, 1, 0);
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

static bool send_run(struct page_sender *ps, struct channel *ch,
                     struct frame_hdr *h, const uint8_t *data, uint64_t n,
                     uint64_t psz, GError **err)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = n * psz};

    h->type = FRAME_PAGE;
    h->len = n * psz;
    if (!channel_send_frame(ch, h, &iov, 1, err)) {
        return false;
    }
    count(ps->counters.pages, n);
    count(ps->counters.bytes, h->len);
    count(ps->counters.phase_bytes, h->len);
    return true;
}

/* Long runs of zero pages as PAGE_ZERO, the rest as PAGE frames from @data. */
static bool send_data(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t off, const uint8_t *data,
                      uint64_t npages, uint32_t flags, uint32_t seq,
                      GError **err)
{
    uint64_t psz = r->page_size, i = 0;
    uint64_t max_run = MAX(1, FRAME_MAX_PAYLOAD / psz);
    bool zero[RUN_PAGES_MAX];

    g_assert(npages <= RUN_PAGES_MAX);
    for (uint64_t k = 0; k < npages; k++) {
        zero[k] = page_is_zero(data + k * psz, psz);
    }
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
        if (!send_run(ps, ch, &h, data + i * psz, j - i, psz, err)) {
            return false;
        }
        i = j;
    }
    return true;
}

/*
 * A run of a file backing that is a hole (never written) is zero: say so
 * without reading it, since reading a shmem hole through the mapping
 * would allocate a page in the VMM's memory for nothing.
 */
static bool is_hole(const struct region *r, uint64_t off, uint64_t len)
{
    off_t data;

    if (r->fd < 0) {
        return false;
    }
    data = lseek(r->fd, (off_t)(r->offset + off), SEEK_DATA);
    if (data < 0) {
        return errno == ENXIO; /* no data from here to the end */
    }
    return (uint64_t)data >= r->offset + off + len;
}

static bool send_read(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t p, uint64_t k,
                      uint32_t flags, uint32_t seq, GError **err)
{
    const uint8_t *data =
        read_pages(ps, r, p * r->page_size, k * r->page_size, err);

    return data &&
           send_data(ps, ch, r, p * r->page_size, data, k, flags, seq, err);
}

bool page_sender_send(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t first, uint64_t n,
                      uint32_t flags, uint32_t seq, GError **err)
{
    uint64_t step = MAX(1, PAGE_SENDER_RUN / r->page_size);

    for (uint64_t p = first; p < first + n; p += step) {
        uint64_t k = MIN(step, first + n - p);

        if (is_hole(r, p * r->page_size, k * r->page_size)) {
            struct frame_hdr h = {.region = r->id,
                                  .offset = p * r->page_size,
                                  .flags = flags,
                                  .seq = seq};

            if (!send_zero(ps, ch, &h, k, err)) {
                return false;
            }
            continue;
        }
        if (!send_read(ps, ch, r, p, k, flags, seq, err)) {
            return false;
        }
    }
    return true;
}
