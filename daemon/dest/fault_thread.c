/*
 * fault_thread.c - the destination's fault thread: reads the VMM's uffd
 * and resolves each fault, with no network when the page's current copy
 * is here, else by one request on the urgent channel, or, where the
 * source's memory is read directly (remote_reader.c), by one READ.
 *
 * Contract: the page state table dedupes requests (one per page until it
 * is installed); this thread is the only sender on the urgent channel, so
 * it also sends a resumed migration's re-requests, and the only reader of
 * the uffd, so it also handles the VMM's events (uffd_events.c).  A page
 * the migration no longer owns (installed, or removed by the VMM) that
 * faults is resolved as the kernel would without postcopy.  It runs at
 * the fault path's priority ([peer] fault-priority).
 */
#include "dest_session.h"

#include <errno.h>

#include "daemon.h"
#include "fault_priority.h"

#define FAULT_BATCH 64
/* The fault thread looks for a resume's re-requests this often at least. */
#define REREQUEST_POLL_MS 20

static void request_page(struct dest_session *s, const struct region *r,
                         uint64_t page)
{
    g_autoptr(GError) err = NULL;
    struct frame_hdr h = {
        .type = FRAME_PAGE_REQ,
        .region = r->id,
        .offset = page * r->page_size,
        .count = 1,
        .seq = atomic_fetch_add(&s->next_seq, 1),
    };

    struct channel *urgent = __atomic_load_n(&s->urgent, __ATOMIC_ACQUIRE);

    atomic_fetch_add(&s->m->stats.postcopy_requests, 1);
    /* While paused the page stays REQUESTED and is asked for on resume. */
    if (!urgent) {
        return; /* carried on after a restart, not reconnected yet */
    }
    if (!channel_send_frame(urgent, &h, NULL, 0, &err) &&
        !atomic_load(&s->stop) && !atomic_load(&s->paused)) {
        dest_fail(s, "%s", err->message);
    }
}

/* Requests that died with the old connection are asked for again. */
static void rerequest(struct dest_session *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        uint64_t p = 0;

        while (
            (p = page_state_next(s->pst, r->id, p, PAGE_MASK(PAGE_REQUESTED))) <
            region_pages(r)) {
            request_page(s, r, p++);
            n++;
        }
    }
    g_message("migration %s: resumed, %" G_GUINT64_FORMAT
              " request(s) sent again",
              s->m->id, n);
}

/*
 * A fault on a page that is no longer the migration's: installed and then
 * zapped by the VMM (MADV_DONTNEED, MADV_REMOVE), or read just after its
 * install.  A MINOR fault maps the page cache as it is, a MISSING one gets
 * a zero page: neither ever overwrites a present page (EEXIST: woken).
 */
static int resolve_installed(struct dest_session *s, const struct region *r,
                             uint64_t addr, bool minor)
{
    if (minor) {
        return uffd_continue(&s->u, addr, r->page_size, r->page_size, 0, NULL);
    }
    return backing_fault_zero(&s->u, r, addr);
}

/*
 * A fault on a page the VMM removed before it arrived: a zero page.  A
 * MINOR fault means the page cache holds a copy that arrived too late
 * (shmem after MADV_DONTNEED): not the guest's, so it is zeroed first.
 */
static int resolve_removed(struct dest_session *s, const struct region *r,
                           uint64_t page, bool minor)
{
    uint64_t addr = r->base + page * r->page_size;

    if (minor) {
        return backing_install(&s->u, r, addr, NULL, r->page_size, 0, NULL);
    }
    return backing_fault_zero(&s->u, r, addr);
}

/* The page is not migrated any more: give it what the kernel would. */
static void resolve_locally(struct dest_session *s, const struct region *r,
                            uint64_t page, enum page_result res, bool minor)
{
    uint64_t addr = r->base + page * r->page_size;
    int ret;

    for (;;) {
        ret = res == PAGE_DO_ZERO ? resolve_removed(s, r, page, minor)
                                  : resolve_installed(s, r, addr, minor);
        if (ret != -EAGAIN || atomic_load(&s->stop)) {
            break;
        }
        dest_events_pending(s);
    }
    if (ret < 0 && uffd_classify(-ret) != UFFD_ERR_GONE) {
        g_autofree char *why = g_strdup_printf(
            "resolving a fault at 0x%" G_GINT64_MODIFIER "x: %s", addr,
            g_strerror(-ret));

        dest_abort(s, why);
        return;
    }
    if (res == PAGE_DO_ZERO) {
        page_state_zeroed(s->pst, r->id, page);
    }
    dest_end_faults(s, r, page, 1);
}

void dest_handle_fault(struct dest_session *s, const struct uffd_msg *msg)
{
    uint64_t addr = msg->arg.pagefault.address;
    const struct region *r = region_table_lookup(s->regions, addr);
    uint64_t page, page_addr;
    enum page_result res;

    if (!r) {
        g_warning("migration %s: fault at 0x%" G_GINT64_MODIFIER
                  "x outside guest RAM",
                  s->m->id, addr);
        return;
    }
    atomic_fetch_add(&s->m->stats.faults, 1);
    page = region_page_index(r, addr);
    page_addr = r->base + page * r->page_size;
    blocktime_fault_begin(s->m->blocktime, msg->arg.pagefault.feat.ptid,
                          page_addr, g_get_monotonic_time() * 1000);
    atomic_fetch_add(&s->outstanding, 1);
    res = page_state_fault(s->pst, r->id, page);
    switch (res) {
    case PAGE_DO_REQUEST:
        /* One READ of the source's memory where there is a link. */
        if (!dest_remote_fault(s, r, page)) {
            request_page(s, r, page);
        }
        break;
    case PAGE_DO_INSTALL: /* a current copy is here: no network */
        dest_install_faulted(s, r, page);
        break;
    case PAGE_WAKE:    /* installed: before the fault was read, or zapped */
    case PAGE_DO_ZERO: /* removed by the VMM */
        resolve_locally(s, r, page, res,
                        msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR);
        break;
    default: /* requested or being installed: its installer wakes it */
        break;
    }
}

/* Faults read while an install waited for the events to be read. */
static void handle_deferred(struct dest_session *s)
{
    while (s->deferred->len && !atomic_load(&s->stop)) {
        struct uffd_msg msg = g_array_index(s->deferred, struct uffd_msg, 0);

        g_array_remove_index(s->deferred, 0);
        dest_handle_fault(s, &msg);
    }
}

gpointer dest_fault_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct uffd_msg msgs[FAULT_BATCH];

    fault_path_enter(s->m->engine.fault_priority,
                     engine_fault_cpus(&s->m->engine), "dst-faults");
    dest_events_reader();
    while (!atomic_load(&s->stop)) {
        int n;

        if (atomic_exchange(&s->rerequest_due, false)) {
            rerequest(s);
        }
        n = uffd_poll(&s->u, REREQUEST_POLL_MS);

        if (n < 0) {
            g_autofree char *why =
                g_strdup_printf("the VMM's uffd failed (did the VMM exit?): %s",
                                g_strerror(-n));

            dest_abort(s, why);
            break;
        }
        if (n == 0) {
            continue;
        }
        n = dest_read_uffd(s, msgs, FAULT_BATCH);
        for (int i = 0; i < n; i++) {
            dest_handle_fault(s, &msgs[i]);
        }
        handle_deferred(s);
    }
    return NULL;
}
