/*
 * installer.c - the one place that writes a page's copy or installs a
 * page in the guest, for every caller: a receiver's frame, a fault on a
 * page whose copy is here, the sweep after the resume.
 *
 * Contract: a page is written or installed only while this file holds it
 * in the page state table (WRITING or INSTALLING); a page that reached
 * INSTALLED is never written again (its data is dropped and counted).
 * Before the VMM runs, data is kept in the region's copy area (the page
 * cache, or a staging area: backing.h), which this file opens and closes;
 * after, it is installed.  A
 * failed install has one path: its pages go back, and the migration
 * aborts (the VMM's memory cannot be worked on).  Every fill of guest
 * pages goes through dest_fill() (uffd_events.c), so a page the VMM
 * removed meanwhile is never filled; a held page that ends REMOVED has its
 * copy dropped and its waiters woken (dest_removed_held()).
 */
#include "dest_session.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/mman.h>

#include "backing.h"

/* States a page may be installed from when its data is in hand. */
#define INSTALL_FROM                                                           \
    (PAGE_MASK(PAGE_ABSENT) | PAGE_MASK(PAGE_STALE) |                          \
     PAGE_MASK(PAGE_REQUESTED) | PAGE_MASK(PAGE_CURRENT))

void dest_end_faults(struct dest_session *s, const struct region *r,
                     uint64_t first, uint64_t n)
{
    uint64_t now = g_get_monotonic_time() * 1000;

    if (!atomic_load(&s->outstanding)) {
        return;
    }
    for (uint64_t p = first; p < first + n; p++) {
        unsigned ended = blocktime_fault_end(s->m->blocktime,
                                             r->base + p * r->page_size, now);

        if (ended) {
            atomic_fetch_sub(&s->outstanding, ended);
        }
    }
}

static void signal_if_done(struct dest_session *s)
{
    if (page_state_all_installed(s->pst)) {
        dest_wake(s);
    }
}

bool dest_installer_open(struct dest_session *s, size_t i, GError **err)
{
    return backing_copy_open(&s->regions->regions[i], &s->copies[i], err);
}

void dest_installer_reopen(struct dest_session *s)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        backing_copy_reopen(&s->regions->regions[i], &s->copies[i]);
    }
}

void dest_installer_close(struct dest_session *s)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        backing_copy_close(&s->regions->regions[i], &s->copies[i]);
    }
}

/* A hold ended: a page the VMM removed meanwhile drops its copy. */
static void held_ended(struct dest_session *s, const struct region *r,
                       uint64_t page, enum page_result res)
{
    if (res == PAGE_DROP) {
        dest_removed_held(s, r, page, 1);
    }
}

/*
 * The one failure path of an install: the held pages of the run go back
 * (a CURRENT copy stays current, the others are fetched again), and the
 * migration aborts, since the VMM's memory cannot be worked on any more.
 */
static bool install_failed(struct dest_session *s, const struct region *r,
                           uint64_t first, uint64_t n, int ret)
{
    g_autofree char *msg =
        g_strdup_printf("installing %" G_GUINT64_FORMAT
                        " page(s) at 0x%" G_GINT64_MODIFIER "x: %s",
                        n, r->base + first * r->page_size, g_strerror(-ret));

    for (uint64_t p = first; p < first + n; p++) {
        held_ended(s, r, p, page_state_abort_install(s->pst, r->id, p));
    }
    dest_abort(s, msg);
    return false;
}

/* Pages [first, first + n) are in the guest now: their waiters go on. */
static void installed(struct dest_session *s, const struct region *r,
                      uint64_t first, uint64_t n)
{
    backing_copy_release(r, &s->copies[r->id], first, n);
    dest_end_faults(s, r, first, n);
    atomic_fetch_add(&s->m->stats.pages_installed, n);
}

static void install_done(struct dest_session *s, const struct region *r,
                         const struct page_run *run)
{
    uint64_t n = page_state_finish_run(s->pst, r->id, run);

    if (n < run->npages) {
        dest_removed_held(s, r, run->first, run->npages);
    }
    backing_copy_release(r, &s->copies[r->id], run->first, run->npages);
    dest_end_faults(s, r, run->first, run->npages);
    atomic_fetch_add(&s->m->stats.pages_installed, n);
}

/*
 * Before the VMM runs (precopy): keep the copy of pages [first, first+n)
 * for later, in the page cache or the staging area, one write per run of
 * pages held.  A newer copy of the same page simply replaces an older one.
 */
static bool write_pages(struct dest_session *s, const struct region *r,
                        uint64_t first, uint64_t n, const uint8_t *data)
{
    struct copy_area *ca = &s->copies[r->id];
    uint64_t ps = r->page_size;
    /* Only a copy area that may hold data needs clearing for zeroes. */
    bool clear = atomic_load(&ca->used);

    if (data) {
        atomic_store(&ca->used, true);
    }
    for (uint64_t i = 0; i < n;) {
        uint64_t j = i;
        int ret = 0;

        while (j < n &&
               page_state_begin_write(s->pst, r->id, first + j) == PAGE_OK) {
            j++;
        }
        if (j > i && (data || clear)) {
            ret = backing_copy_write(r, ca, first + i, j - i,
                                     data ? data + i * ps : NULL);
        }
        for (uint64_t p = first + i; p < first + j; p++) {
            held_ended(s, r, p,
                       ret < 0
                           ? page_state_abort_write(s->pst, r->id, p)
                           : page_state_finish_write(s->pst, r->id, p, !data));
        }
        if (ret < 0) {
            g_autofree char *msg = g_strdup_printf(
                "keeping %" G_GUINT64_FORMAT " page(s) of region %u: %s", j - i,
                r->id, g_strerror(-ret));

            dest_abort(s, msg);
            return false;
        }
        if (j < n) {
            atomic_fetch_add(&s->m->stats.pages_dropped, 1); /* not held */
        }
        i = j + 1;
    }
    atomic_fetch_add(&s->m->stats.pages_received, n);
    return true;
}

/* dest_fill() callbacks: from the copy area, or from the data in hand. */
static int fill_copy(struct dest_session *s, const struct region *r,
                     uint64_t first, uint64_t n, const void *ctx,
                     uint64_t *done)
{
    const bool *zero = ctx;

    return backing_install_copy(&s->u, r, &s->copies[r->id], first, n,
                                zero && *zero, done);
}

struct data_in_hand {
    const uint8_t *data; /* NULL: zeroes */
    uint64_t first;      /* the page data[0] belongs to */
    unsigned flags;      /* backing_install()'s */
};

static int fill_data(struct dest_session *s, const struct region *r,
                     uint64_t first, uint64_t n, const void *ctx,
                     uint64_t *done)
{
    const struct data_in_hand *d = ctx;
    const uint8_t *src =
        d->data ? d->data + (first - d->first) * r->page_size : NULL;

    return backing_install(&s->u, r, r->base + first * r->page_size, src,
                           n * r->page_size, d->flags, done);
}

/*
 * Map pages whose current copy is already here (held INSTALLING by the
 * caller), from the copy area.  No network.
 */
static int install_current(struct dest_session *s, const struct region *r,
                           uint64_t first, uint64_t n)
{
    bool zero = n == 1 && page_state_is_zero(s->pst, r->id, first);
    int ret = dest_fill(s, r, first, n, fill_copy, &zero);

    if (ret == 0) {
        atomic_fetch_add(&s->m->stats.installed_local, n);
    }
    return ret;
}

/*
 * Install @n pages of region @r from page @first: @data (NULL: zeroes).
 * Only pages this thread claims are written; the rest are installed
 * already, or being installed by another thread, and their data dropped.
 * @flags: backing_install()'s.
 */
static bool install_pages(struct dest_session *s, const struct region *r,
                          uint64_t first, uint64_t n, const uint8_t *data,
                          unsigned flags)
{
    uint64_t pos = first, end = first + n, claimed = 0;
    const struct data_in_hand d = {
        .data = data, .first = first, .flags = flags};
    struct page_run run;

    while (page_state_claim_run(s->pst, r->id, &pos, end, INSTALL_FROM, &run)) {
        int ret = dest_fill(s, r, run.first, run.npages, fill_data, &d);

        if (ret < 0) {
            return install_failed(s, r, run.first, run.npages, ret);
        }
        install_done(s, r, &run);
        claimed += run.npages;
    }
    atomic_fetch_add(&s->m->stats.pages_dropped, n - claimed);
    signal_if_done(s);
    return true;
}

/*
 * After the resume, a file-backed page that arrives (a fault's reply, the
 * stream) goes from the socket into the page cache and is mapped with
 * CONTINUE: the pages are held INSTALLING first, so no copy through @buf
 * is needed.  If the frame's pages cannot all be held (installed already,
 * or another thread has one), it takes the ordinary path.
 */
static bool install_from_socket(struct dest_session *s, struct channel *ch,
                                const struct region *r,
                                const struct frame_hdr *h, uint8_t *buf,
                                GError **err)
{
    uint64_t first = h->offset / r->page_size, n = h->len / r->page_size;
    uint64_t pos = first;
    struct page_run run = {0};
    int ret;

    if (!page_state_claim_run(s->pst, r->id, &pos, first + n, INSTALL_FROM,
                              &run) ||
        run.first != first || run.npages != n) {
        for (uint64_t p = run.first; p < run.first + run.npages; p++) {
            held_ended(s, r, p, page_state_abort_install(s->pst, r->id, p));
        }
        return channel_recv_payload(ch, buf, h->len, err) &&
               install_pages(s, r, first, n, buf, 0);
    }
    if (!channel_recv_payload(ch, s->copies[r->id].base + h->offset, h->len,
                              err)) {
        for (uint64_t p = first; p < first + n; p++) {
            held_ended(s, r, p,
                       page_state_abort_install(s->pst, r->id,
                                                p)); /* torn, unmapped */
        }
        return false;
    }
    ret = dest_fill(s, r, first, n, fill_copy, NULL);
    if (ret < 0) {
        return install_failed(s, r, first, n, ret);
    }
    install_done(s, r, &run);
    signal_if_done(s);
    return true;
}

/*
 * Before the VMM runs, a file-backed page goes straight from the socket
 * into the page cache through the alias: no copy in between.  Every page
 * of the frame is held WRITING first; if one cannot be (another writer),
 * the frame takes the ordinary path through @buf.
 */
static bool receive_into_cache(struct dest_session *s, struct channel *ch,
                               const struct region *r,
                               const struct frame_hdr *h, uint8_t *buf,
                               GError **err)
{
    uint64_t first = h->offset / r->page_size, n = h->len / r->page_size;
    uint64_t held = 0;
    bool ok;

    while (held < n &&
           page_state_begin_write(s->pst, r->id, first + held) == PAGE_OK) {
        held++;
    }
    if (held < n) {
        for (uint64_t p = first; p < first + held; p++) {
            held_ended(s, r, p, page_state_abort_write(s->pst, r->id, p));
        }
        return channel_recv_payload(ch, buf, h->len, err) &&
               write_pages(s, r, first, n, buf);
    }
    /* One call allocates the page cache pages, not one fault per page. */
    madvise(s->copies[r->id].base + h->offset, h->len, MADV_POPULATE_WRITE);
    ok = channel_recv_payload(ch, s->copies[r->id].base + h->offset, h->len,
                              err);
    for (uint64_t p = first; p < first + n; p++) {
        held_ended(s, r, p,
                   ok ? page_state_finish_write(s->pst, r->id, p, false)
                      : page_state_abort_write(s->pst, r->id, p)); /* torn */
    }
    atomic_fetch_add(&s->m->stats.pages_received, n);
    return ok;
}

/* Install the CURRENT pages of [first, end) in runs; false if one failed. */
static bool install_current_range(struct dest_session *s,
                                  const struct region *r, uint64_t first,
                                  uint64_t end)
{
    uint64_t pos = first;
    struct page_run run;

    while (!atomic_load(&s->stop) &&
           page_state_claim_run(s->pst, r->id, &pos, end,
                                PAGE_MASK(PAGE_CURRENT), &run)) {
        int ret = install_current(s, r, run.first, run.npages);

        if (ret < 0) {
            return install_failed(s, r, run.first, run.npages, ret);
        }
        install_done(s, r, &run);
    }
    return true;
}

void dest_install_current(struct dest_session *s, const struct region *r,
                          uint64_t first, uint64_t n)
{
    if (install_current_range(s, r, first, first + n)) {
        signal_if_done(s);
    }
}

/*
 * After the resume: install every page whose current copy is already here,
 * in contiguous runs, with no network; faults on them need not wait.
 */
static gpointer sweep_thread(gpointer opaque)
{
    struct dest_session *s = opaque;

    for (size_t i = 0; i < s->regions->n && !atomic_load(&s->stop); i++) {
        const struct region *r = &s->regions->regions[i];

        if (!install_current_range(s, r, 0, region_pages(r))) {
            return NULL;
        }
    }
    signal_if_done(s);
    return NULL;
}

void dest_start_sweep(struct dest_session *s)
{
    if (!s->sweep_thread && atomic_load(&s->running) &&
        page_state_copies_confirmed(s->pst)) {
        s->sweep_thread = g_thread_new("dst-sweep", sweep_thread, s);
    }
}

bool dest_install_faulted(struct dest_session *s, const struct region *r,
                          uint64_t page)
{
    int ret = install_current(s, r, page, 1);

    if (ret < 0) {
        return install_failed(s, r, page, 1, ret);
    }
    if (page_state_finish_install(s->pst, r->id, page) == PAGE_DROP) {
        dest_removed_held(s, r, page, 1);
        signal_if_done(s);
        return true;
    }
    installed(s, r, page, 1);
    signal_if_done(s);
    return true;
}

/*
 * A fault's reply is written into the page cache through the daemon's
 * mapping: a write() would wait for the file's lock whenever a bulk
 * receiver's write holds it (BACKING_INSTALL_MAPPED).  The bench machine,
 * 1 GiB shmem postcopy, bulk stream competing, both fault paths on one
 * CPU, six runs with it, three without: fault p99 119-207 us against
 * 287-351 us, p50 51-59 against 55-59 us; unbound p99 575 us both ways.
 */
static unsigned install_flags(bool reply)
{
    return reply ? BACKING_INSTALL_MAPPED : 0;
}

bool dest_install_zero(struct dest_session *s, const struct region *r,
                       uint64_t first, uint64_t n, bool reply)
{
    if (!atomic_load(&s->running)) {
        return write_pages(s, r, first, n, NULL);
    }
    return install_pages(s, r, first, n, NULL, install_flags(reply));
}

bool dest_install_payload(struct dest_session *s, struct channel *ch,
                          const struct region *r, const struct frame_hdr *h,
                          uint8_t *buf, GError **err)
{
    uint64_t first = h->offset / r->page_size, n = h->len / r->page_size;

    if (backing_ops_get(r->kind)->receive_in_place) {
        return atomic_load(&s->running)
                   ? install_from_socket(s, ch, r, h, buf, err)
                   : receive_into_cache(s, ch, r, h, buf, err);
    }
    if (!channel_recv_payload(ch, buf, h->len, err)) {
        return false;
    }
    if (!atomic_load(&s->running)) {
        return write_pages(s, r, first, n, buf);
    }
    return install_pages(s, r, first, n, buf,
                         install_flags(h->flags & FRAME_F_REPLY));
}
