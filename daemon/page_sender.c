/* page_sender.c - see page_sender.h. */
#include "page_sender.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/uio.h>

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

/* Runs of zero pages as PAGE_ZERO, the rest as PAGE frames from @data. */
static bool send_data(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t off, const uint8_t *data,
                      uint64_t npages, uint32_t flags, uint32_t seq,
                      GError **err)
{
    uint64_t psz = r->page_size, i = 0;

    while (i < npages) {
        bool zero = page_is_zero(data + i * psz, psz);
        uint64_t j = i + 1;
        struct frame_hdr h = {.region = r->id,
                              .offset = off + i * psz,
                              .flags = flags,
                              .seq = seq};
        struct iovec iov;

        while (j < npages && page_is_zero(data + j * psz, psz) == zero &&
               (zero || (j + 1 - i) * psz <= FRAME_MAX_PAYLOAD)) {
            j++;
        }
        if (zero) {
            h.type = FRAME_PAGE_ZERO;
            h.count = j - i;
            if (!channel_send_frame(ch, &h, NULL, 0, err)) {
                return false;
            }
            count(ps->counters.zero, j - i);
        } else {
            h.type = FRAME_PAGE;
            h.len = (j - i) * psz;
            iov = (struct iovec){.iov_base = (void *)(data + i * psz),
                                 .iov_len = h.len};
            if (!channel_send_frame(ch, &h, &iov, 1, err)) {
                return false;
            }
            count(ps->counters.pages, j - i);
            count(ps->counters.bytes, h.len);
            count(ps->counters.phase_bytes, h.len);
        }
        i = j;
    }
    return true;
}

bool page_sender_send(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t first, uint64_t n,
                      uint32_t flags, uint32_t seq, GError **err)
{
    uint64_t step = MAX(1, PAGE_SENDER_RUN / r->page_size);

    for (uint64_t p = first; p < first + n; p += step) {
        uint64_t k = MIN(step, first + n - p);
        const uint8_t *data =
            read_pages(ps, r, p * r->page_size, k * r->page_size, err);

        if (!data ||
            !send_data(ps, ch, r, p * r->page_size, data, k, flags, seq, err)) {
            return false;
        }
    }
    return true;
}
