/*
 * fault_thread.c - the destination's fault thread: reads the VMM's uffd
 * and resolves each fault, with no network when the page's current copy
 * is here, else by one request on the urgent channel, or, where the
 * source's memory is read directly (remote_reader.c), by one READ.
 *
 * Contract: the page state table dedupes requests (one per page until it
 * is installed); this thread is the only sender on the urgent channel, so
 * it also sends a resumed migration's re-requests.  It runs at the fault
 * path's priority ([peer] fault-priority).
 */
#include "dest_session.h"

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

static void handle_fault(struct dest_session *s, const struct uffd_msg *msg)
{
    uint64_t addr = msg->arg.pagefault.address;
    const struct region *r = region_table_lookup(s->regions, addr);
    uint64_t page, page_addr;

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
    switch (page_state_fault(s->pst, r->id, page)) {
    case PAGE_DO_REQUEST:
        /* One READ of the source's memory where there is a link. */
        if (!dest_remote_fault(s, r, page)) {
            request_page(s, r, page);
        }
        break;
    case PAGE_DO_INSTALL: /* a current copy is here: no network */
        dest_install_faulted(s, r, page);
        break;
    case PAGE_WAKE: /* installed between the fault and now */
        uffd_wake(&s->u, page_addr, r->page_size);
        dest_end_faults(s, r, page, 1);
        break;
    default: /* requested or being installed: its installer wakes it */
        break;
    }
}

gpointer dest_fault_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct uffd_msg msgs[FAULT_BATCH];

    fault_priority_enter(s->m->engine.fault_priority, "dst-faults");
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
        n = uffd_read_msgs(&s->u, msgs, FAULT_BATCH);
        for (int i = 0; i < n; i++) {
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
                handle_fault(s, &msgs[i]);
            }
        }
    }
    return NULL;
}
