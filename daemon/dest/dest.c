/*
 * dest.c - the destination role.  Threads of one migration:
 *  - the session thread: Hello, Layout check, uffd set-up, Switchover
 *    (resume the VMM), then waits until every page is installed;
 *  - the fault thread: reads the VMM's uffd, and for each missing page
 *    sends one request on the urgent channel (page_state dedupes);
 *  - receivers (urgent, each bulk stream): take page frames, claim pages in
 *    the page state table, install them (COPY / ZEROPAGE, or page cache +
 *    CONTINUE), and drop data for pages already installed.
 * They share struct dest_session: the page state table decides who may
 * touch a page; everything else in it is set before the threads start,
 * except the channels, which a resumed migration replaces (the fault
 * thread reads `urgent` atomically; old channels are shut down but kept
 * until the session ends, so a stale pointer never dangles).
 *
 * Postcopy failures pause: the fault thread goes on installing pages that
 * are here, requests for the others wait (REQUESTED) until the source
 * reconnects with a resuming Hello, and are then sent again.
 */
#include "migration.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <gio/gio.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backing.h"
#include "daemon.h"
#include "dirty_set.h"
#include "fault_priority.h"
#include "frame.h"
#include "page_state.h"
#include "prealloc.h"
#include "session_file.h"

#define CHANNEL_WAIT_US  (10 * G_USEC_PER_SEC)
#define WAIT_SLICE_US    (100 * 1000)
#define DEST_MAX_STREAMS 8
#define FAULT_BATCH      64
/* The fault thread looks for a resume's re-requests this often at least. */
#define REREQUEST_POLL_MS 20

struct dest_session {
    struct migration *m;
    struct region_table *regions;
    struct frame_region_limits limits[REGION_MAX];
    struct channel *control, *urgent; /* by m->lock until running */
    struct channel *bulk[DEST_MAX_STREAMS];
    struct uffd u;
    struct page_state_table *pst;
    char *pst_path;
    GThread *fault_thread, *urgent_thread, *sweep_thread;
    GThread *bulk_thread[DEST_MAX_STREAMS];
    atomic_bool stop;
    /*
     * Set once the VMM is resumed (just before): from then on, data is
     * installed into the running guest; before, it is only written to the
     * page cache (shmem, hugetlbfs) or the staging area (anon).
     */
    atomic_bool running;
    /* last FRAME_SYNC seen on each bulk stream, by m->lock */
    atomic_uint bulk_sync[DEST_MAX_STREAMS];
    atomic_uint next_seq;
    atomic_uint outstanding;   /* faults begun in blocktime, not ended */
    atomic_bool rerequest_due; /* resumed: the fault thread asks again */
    /* anon regions: precopy data waits here until installed */
    uint8_t *staging[REGION_MAX];
    atomic_bool staged[REGION_MAX];
    size_t registered;     /* regions registered with the uffd */
    uint32_t bulk_streams; /* announced in the control Hello */
    uint32_t next_streams; /* ...in a resuming one, by m->lock */
    bool layout_ok;        /* data channels may attach, by m->lock */
    bool layout_refused;   /* the setup failed on a layout mismatch */
    bool cancelled;        /* the source said Cancel */
    atomic_bool paused;    /* postcopy, channels lost: waiting for a resume */
    atomic_uint epoch;     /* connection generation: receivers of an older
                            one say nothing when their channel dies */
    GPtrArray *graveyard;  /* channels of earlier connections, by m->lock */
    /* A resuming source's new channels, gathered here by m->lock. */
    struct channel *next_control, *next_urgent;
    struct channel *next_bulk[DEST_MAX_STREAMS];
};

static void send_error(struct channel *ch, Postcopy__Peer__ErrorCode code,
                       const char *text)
{
    Postcopy__Peer__Error e = POSTCOPY__PEER__ERROR__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    e.code = code;
    e.message = (char *)text;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR;
    msg.error = &e;
    channel_send_msg(ch, &msg, NULL);
}

static bool send_refusal(struct channel *ch, Postcopy__Peer__ErrorCode code,
                         const char *error, GError **err)
{
    Postcopy__Peer__HelloReply r = POSTCOPY__PEER__HELLO_REPLY__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    r.code = code;
    r.ok = error == NULL;
    r.error = (char *)(error ? error : "");
    r.version = PEER_PROTOCOL_VERSION;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY;
    msg.hello_reply = &r;
    return channel_send_msg(ch, &msg, err);
}

static bool send_hello_reply(struct channel *ch, const char *error,
                             GError **err)
{
    return send_refusal(ch, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED,
                        error, err);
}

static void wake_session(struct dest_session *s)
{
    g_mutex_lock(&s->m->lock);
    g_cond_broadcast(&s->m->cond);
    g_mutex_unlock(&s->m->lock);
}

static void shutdown_channels(struct dest_session *s)
{
    if (s->control) {
        channel_shutdown(s->control);
    }
    if (s->urgent) {
        channel_shutdown(s->urgent);
    }
    for (unsigned i = 0; i < DEST_MAX_STREAMS; i++) {
        if (s->bulk[i]) {
            channel_shutdown(s->bulk[i]);
        }
    }
}

static void dest_fail(struct dest_session *s, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/*
 * Something went wrong with the peer.  Before the VMM runs here the
 * migration fails (the source keeps the VM).  After, the guest's missing
 * pages exist only at the source: the migration pauses, nothing is
 * discarded, and it carries on when the source reconnects.
 */
static void dest_fail(struct dest_session *s, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* Record the cause before the peer, told, can hang up on us. */
    if (atomic_load(&s->running)) {
        migration_fail(s->m, MIG_POSTCOPY_PAUSED, "%s", msg);
        atomic_store(&s->paused, true);
    } else {
        migration_fail(s->m, MIG_FAILED, "%s", msg);
        atomic_store(&s->stop, true);
    }
    if (s->control) {
        send_error(s->control, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL,
                   msg);
    }
    shutdown_channels(s);
    wake_session(s);
}

/* The VMM's memory cannot be worked on any more (it exited, unmapped). */
static void dest_abort(struct dest_session *s, const char *msg)
{
    migration_fail(s->m, MIG_FAILED, "%s", msg);
    atomic_store(&s->stop, true);
    shutdown_channels(s);
    wake_session(s);
}

/* ---- installing ---- */

static void end_faults(struct dest_session *s, const struct region *r,
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
        g_mutex_lock(&s->m->lock);
        g_cond_broadcast(&s->m->cond);
        g_mutex_unlock(&s->m->lock);
    }
}

/* Where a not-yet-installed copy of a page lives in the daemon. */
static uint8_t *copy_area(struct dest_session *s, const struct region *r)
{
    return r->alias ? r->alias : s->staging[r->id];
}

/* Installed pages need no staged copy any more: give the memory back. */
static void release_staging(struct dest_session *s, const struct region *r,
                            uint64_t first, uint64_t n)
{
    if (r->alias || !atomic_load(&s->staged[r->id])) {
        return;
    }
    madvise(s->staging[r->id] + first * r->page_size, n * r->page_size,
            MADV_DONTNEED);
}

/*
 * Before the VMM runs (precopy): keep the copy of pages [first, first+n)
 * for later, in the page cache or the staging area.  A newer copy of the
 * same page simply replaces an older one.
 */
static void write_pages(struct dest_session *s, const struct region *r,
                        uint64_t first, uint64_t n, const uint8_t *data)
{
    uint8_t *area = copy_area(s, r);
    uint64_t ps = r->page_size, run = 0;
    /* Fresh staging reads as zero: only a reused one needs clearing. */
    bool clear = r->alias || atomic_load(&s->staged[r->id]);

    if (!r->alias && data) {
        atomic_store(&s->staged[r->id], true);
    }
    for (uint64_t i = 0; i <= n; i++) {
        uint64_t p = first + i;
        bool held =
            i < n && page_state_begin_write(s->pst, r->id, p) == PAGE_OK;

        if (i < n && !held) {
            atomic_fetch_add(&s->m->stats.pages_dropped, 1);
        }
        if (held && data) {
            memcpy(area + p * ps, data + i * ps, ps);
        }
        if (held && !data) {
            run++; /* zeroed below, one call per run */
            continue;
        }
        if (run && clear) {
            if (r->alias) {
                memset(area + (p - run) * ps, 0, run * ps);
            } else {
                madvise(area + (p - run) * ps, run * ps, MADV_DONTNEED);
            }
        }
        for (uint64_t q = p - run; q < p; q++) {
            page_state_finish_write(s->pst, r->id, q, true);
        }
        run = 0;
        if (held) {
            page_state_finish_write(s->pst, r->id, p, false);
        }
    }
    atomic_fetch_add(&s->m->stats.pages_received, n);
}

/*
 * Map pages whose current copy is already here (held INSTALLING by the
 * caller): CONTINUE over the page cache, or COPY from staging.  No network.
 */
static int install_current(struct dest_session *s, const struct region *r,
                           uint64_t first, uint64_t n)
{
    uint64_t ps = r->page_size, addr = r->base + first * ps;
    int ret;

    if (r->alias) {
        ret = uffd_continue(&s->u, addr, n * ps, ps, 0, NULL);
    } else if ((n == 1 && page_state_is_zero(s->pst, r->id, first)) ||
               !s->staging[r->id]) {
        /*
         * Without staging (a restarted daemon: the copies died with the
         * old one) the only current anonymous pages left are zero pages.
         */
        ret = uffd_zeropage(&s->u, addr, n * ps, ps, 0, NULL);
    } else {
        ret = uffd_copy(&s->u, addr, s->staging[r->id] + first * ps, n * ps, ps,
                        0, NULL);
    }
    if (ret == 0) {
        release_staging(s, r, first, n);
        atomic_fetch_add(&s->m->stats.installed_local, n);
    }
    return ret;
}

/*
 * Install @n pages of region @r from page @first: @data (NULL: zeroes).
 * Only pages this thread claims are written; the rest are installed
 * already, or being installed by another thread, and their data dropped.
 */
/* States a page may be installed from when its data is in hand. */
#define INSTALL_FROM                                                           \
    (PAGE_MASK(PAGE_ABSENT) | PAGE_MASK(PAGE_STALE) |                          \
     PAGE_MASK(PAGE_REQUESTED) | PAGE_MASK(PAGE_CURRENT))

static bool install_pages(struct dest_session *s, const struct region *r,
                          uint64_t first, uint64_t n, const uint8_t *data)
{
    const unsigned from = INSTALL_FROM;
    uint64_t pos = first, end = first + n, claimed = 0;
    struct page_run run;

    while (page_state_claim_run(s->pst, r->id, &pos, end, from, &run)) {
        const uint8_t *src =
            data ? data + (run.first - first) * r->page_size : NULL;
        int ret = backing_install(&s->u, r, r->base + run.first * r->page_size,
                                  src, run.npages * r->page_size, 0, NULL);

        if (ret < 0) {
            for (uint64_t p = run.first; p < run.first + run.npages; p++) {
                page_state_abort_install(s->pst, r->id, p);
            }
            g_autofree char *msg =
                g_strdup_printf("installing %" G_GUINT64_FORMAT
                                " page(s) at 0x%" G_GINT64_MODIFIER "x: %s",
                                run.npages, r->base + run.first * r->page_size,
                                g_strerror(-ret));

            dest_abort(s, msg);
            return false;
        }
        page_state_finish_run(s->pst, r->id, &run);
        release_staging(s, r, run.first, run.npages);
        end_faults(s, r, run.first, run.npages);
        claimed += run.npages;
    }
    atomic_fetch_add(&s->m->stats.pages_installed, claimed);
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
            page_state_abort_install(s->pst, r->id, p);
        }
        return channel_recv_payload(ch, buf, h->len, err) &&
               install_pages(s, r, first, n, buf);
    }
    if (!channel_recv_payload(ch, r->alias + h->offset, h->len, err)) {
        for (uint64_t p = first; p < first + n; p++) {
            page_state_abort_install(s->pst, r->id, p); /* torn, unmapped */
        }
        return false;
    }
    ret = uffd_continue(&s->u, r->base + h->offset, h->len, r->page_size, 0,
                        NULL);
    if (ret < 0) {
        g_autofree char *msg =
            g_strdup_printf("installing %" G_GUINT64_FORMAT
                            " page(s) at 0x%" G_GINT64_MODIFIER "x: %s",
                            n, r->base + h->offset, g_strerror(-ret));

        for (uint64_t p = first; p < first + n; p++) {
            page_state_abort_install(s->pst, r->id, p);
        }
        dest_abort(s, msg);
        return false;
    }
    page_state_finish_run(s->pst, r->id, &run);
    end_faults(s, r, first, n);
    atomic_fetch_add(&s->m->stats.pages_installed, n);
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
            page_state_abort_write(s->pst, r->id, p);
        }
        if (!channel_recv_payload(ch, buf, h->len, err)) {
            return false;
        }
        write_pages(s, r, first, n, buf);
        return true;
    }
    /* One call allocates the page cache pages, not one fault per page. */
    madvise(r->alias + h->offset, h->len, MADV_POPULATE_WRITE);
    ok = channel_recv_payload(ch, r->alias + h->offset, h->len, err);
    for (uint64_t p = first; p < first + n; p++) {
        if (ok) {
            page_state_finish_write(s->pst, r->id, p, false);
        } else {
            page_state_abort_write(s->pst, r->id, p); /* torn */
        }
    }
    atomic_fetch_add(&s->m->stats.pages_received, n);
    return ok;
}

static bool receive_frame(struct dest_session *s, struct channel *ch,
                          uint8_t *buf, GError **err)
{
    struct frame_hdr h;
    const struct region *r;

    if (!channel_recv_hdr(ch, &h, err)) {
        return false;
    }
    switch (h.type) {
    case FRAME_KEEPALIVE:
        return true;
    case FRAME_SYNC:
        /* All precopy data before it on this channel has been written. */
        g_mutex_lock(&s->m->lock);
        atomic_store(&s->bulk_sync[channel_stream(ch)], h.seq);
        g_cond_broadcast(&s->m->cond);
        g_mutex_unlock(&s->m->lock);
        return true;
    case FRAME_PAGE:
    case FRAME_PAGE_ZERO:
        break;
    default:
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s channel: unexpected %s frame",
                    channel_kind_name(channel_kind(ch)),
                    frame_type_name(h.type));
        return false;
    }
    /* Every check before a byte of guest memory is touched. */
    if (!frame_check_page(&h, s->limits, s->regions->n, err)) {
        return false;
    }
    /* Request ids count up from 0 (request_page()): a reply names one. */
    if ((h.flags & FRAME_F_REPLY) && h.seq >= atomic_load(&s->next_seq)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s channel: a reply to page request %u, which was never "
                    "made",
                    channel_kind_name(channel_kind(ch)), h.seq);
        return false;
    }
    r = &s->regions->regions[h.region];
    if (h.type == FRAME_PAGE_ZERO) {
        atomic_fetch_add(&s->m->stats.zero_pages, h.count);
        if (!atomic_load(&s->running)) {
            write_pages(s, r, h.offset / r->page_size, h.count, NULL);
            return true;
        }
        return install_pages(s, r, h.offset / r->page_size, h.count, NULL);
    }
    if (h.flags & FRAME_F_MORE) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "chunked huge pages are not supported yet");
        return false;
    }
    atomic_fetch_add(&s->m->stats.bytes_sent, h.len);
    atomic_fetch_add(&s->m->stats.pages_sent, h.len / r->page_size);
    if (r->alias) {
        return atomic_load(&s->running)
                   ? install_from_socket(s, ch, r, &h, buf, err)
                   : receive_into_cache(s, ch, r, &h, buf, err);
    }
    if (!channel_recv_payload(ch, buf, h.len, err)) {
        return false;
    }
    if (!atomic_load(&s->running)) {
        write_pages(s, r, h.offset / r->page_size, h.len / r->page_size, buf);
        return true;
    }
    return install_pages(s, r, h.offset / r->page_size, h.len / r->page_size,
                         buf);
}

/* "bulk channel 0 from 10.0.0.1:4000: ", for a one-line error. */
static const char *channel_label(struct channel *ch)
{
    static __thread char buf[160];

    if (channel_kind(ch) == CHANNEL_BULK) {
        snprintf(buf, sizeof(buf),
                 "bulk channel %u from %s: ", channel_stream(ch),
                 channel_peer(ch));
    } else {
        snprintf(buf, sizeof(buf),
                 "%s channel from %s: ", channel_kind_name(channel_kind(ch)),
                 channel_peer(ch));
    }
    return buf;
}

struct receiver {
    struct dest_session *s;
    struct channel *ch;
    unsigned epoch;
};

static gpointer receive_loop(gpointer opaque)
{
    struct receiver *rc = opaque;
    struct dest_session *s = rc->s;
    g_autofree uint8_t *buf = g_malloc(FRAME_MAX_PAYLOAD);

    if (rc->ch == s->urgent) {
        fault_priority_enter(s->m->daemon->cfg->fault_priority, "dst-urgent");
    }
    while (!atomic_load(&s->stop) && !page_state_all_installed(s->pst)) {
        g_autoptr(GError) err = NULL;

        if (!receive_frame(s, rc->ch, buf, &err)) {
            if (!atomic_load(&s->stop) && !atomic_load(&s->paused) &&
                rc->epoch == atomic_load(&s->epoch) && err) {
                /* Transport errors name the channel already. */
                dest_fail(s, "%s%s",
                          strstr(err->message, " channel ")
                              ? ""
                              : channel_label(rc->ch),
                          err->message);
            }
            break;
        }
    }
    g_free(rc);
    return NULL;
}

/* ---- faults ---- */

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

static void handle_fault(struct dest_session *s, const struct uffd_msg *msg)
{
    uint64_t addr = msg->arg.pagefault.address;
    const struct region *r = region_table_lookup(s->regions, addr);
    uint64_t page, page_addr;
    int ret;

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
        request_page(s, r, page);
        break;
    case PAGE_DO_INSTALL: /* a current copy is here: no network */
        ret = install_current(s, r, page, 1);
        if (ret < 0) {
            g_autofree char *why = g_strdup_printf(
                "installing the page at 0x%" G_GINT64_MODIFIER "x: %s",
                page_addr, g_strerror(-ret));

            page_state_abort_install(s->pst, r->id, page);
            dest_abort(s, why);
            return;
        }
        page_state_finish_install(s->pst, r->id, page);
        atomic_fetch_add(&s->m->stats.pages_installed, 1);
        end_faults(s, r, page, 1);
        signal_if_done(s);
        break;
    case PAGE_WAKE: /* installed between the fault and now */
        uffd_wake(&s->u, page_addr, r->page_size);
        end_faults(s, r, page, 1);
        break;
    default: /* requested or being installed: its installer wakes it */
        break;
    }
}

static void rerequest(struct dest_session *s);

static gpointer fault_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct uffd_msg msgs[FAULT_BATCH];

    fault_priority_enter(s->m->daemon->cfg->fault_priority, "dst-faults");
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

/* ---- session ---- */

static const char *layout_mismatch(struct dest_session *s,
                                   const Postcopy__Peer__Layout *l, char *buf,
                                   size_t len)
{
    if (l->n_regions != s->regions->n) {
        snprintf(buf, len, "the source has %zu region(s), the VMM %zu",
                 l->n_regions, s->regions->n);
        return buf;
    }
    if (l->total_bytes != region_table_bytes(s->regions)) {
        snprintf(buf, len,
                 "the layout totals %" G_GUINT64_FORMAT
                 " bytes, the VMM has %" G_GUINT64_FORMAT,
                 l->total_bytes, region_table_bytes(s->regions));
        return buf;
    }
    for (size_t i = 0; i < l->n_regions; i++) {
        const Postcopy__Peer__RegionLayout *rl = l->regions[i];
        const struct region *r = &s->regions->regions[i];

        if (rl->index != i || rl->size != r->size ||
            rl->page_size != r->page_size || (int)rl->backing != (int)r->kind) {
            snprintf(buf, len,
                     "region %zu: source has %" G_GUINT64_FORMAT
                     " bytes of %" G_GUINT64_FORMAT "-byte %s pages, the VMM "
                     "%" G_GUINT64_FORMAT " bytes of %" G_GUINT64_FORMAT
                     "-byte %s pages",
                     i, rl->size, rl->page_size,
                     backing_kind_name((enum backing_kind)rl->backing), r->size,
                     r->page_size, backing_kind_name(r->kind));
            return buf;
        }
    }
    return NULL;
}

static bool check_layout(struct dest_session *s, GError **err)
{
    Postcopy__Peer__LayoutReply lr = POSTCOPY__PEER__LAYOUT_REPLY__INIT;
    PeerMessage reply = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) msg = channel_recv_msg(s->control, err);
    const char *why;
    char buf[256];

    if (!msg) {
        return false;
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "expected the layout, got %s", peer_message_name(msg));
        return false;
    }
    why = layout_mismatch(s, msg->layout, buf, sizeof(buf));
    /* Before the reply: the source opens its data channels right after. */
    g_mutex_lock(&s->m->lock);
    s->layout_ok = why == NULL;
    g_mutex_unlock(&s->m->lock);
    lr.ok = why == NULL;
    lr.error = (char *)(why ? why : "");
    reply.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT_REPLY;
    reply.layout_reply = &lr;
    if (!channel_send_msg(s->control, &reply, err)) {
        return false;
    }
    if (why) {
        s->layout_refused = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "layout refused: %s", why);
        return false;
    }
    return true;
}

/* Take the VMM's uffd, register its RAM, create the page state table. */
static bool setup_uffd(struct dest_session *s, GError **err)
{
    struct vm_entry *vm = s->m->vm;
    struct page_state_layout layout;
    uint64_t features = UFFD_FEATURE_THREAD_ID;

    for (size_t i = 0; i < s->regions->n; i++) {
        features |= backing_ops_get(s->regions->regions[i].kind)->dest_features;
    }
    if (vm->api_done) {
        memset(&s->u, 0, sizeof(s->u));
        s->u.fd = vm->info.uffd;
        s->u.features = vm->info.uffd_features;
    } else if (!uffd_api(vm->info.uffd, features, &s->m->daemon->caps, &s->u,
                         NULL, err)) {
        return false;
    } else {
        vm->api_done = true;
        vm->info.uffd_features = s->u.features;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        struct region *r = &s->regions->regions[i];

        if (!region_map_alias(r, err) ||
            !uffd_register(&s->u, r->base, r->size,
                           backing_ops_get(r->kind)->dest_register_mode, NULL,
                           err)) {
            return false;
        }
        s->registered = i + 1;
        /* After the register: whatever the VMM maps from now on faults. */
        if (vm->driver->discard_incoming_ram && !backing_discard(r, err)) {
            return false;
        }
        if (!r->alias) {
            s->staging[i] =
                mmap(NULL, r->size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (s->staging[i] == MAP_FAILED) {
                s->staging[i] = NULL;
                g_set_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                            "staging area for region %zu: %s", i,
                            g_strerror(errno));
                return false;
            }
        }
        s->limits[i].size = r->size;
        s->limits[i].page_size = r->page_size;
        atomic_fetch_add(&s->m->stats.pages_total, region_pages(r));
    }
    if (!page_state_layout_init(&layout, s->m->id, s->regions, err)) {
        return false;
    }
    s->pst_path =
        g_strdup_printf("%s/%s.pages", s->m->daemon->cfg->state_dir, s->m->id);
    s->pst = page_state_create(s->pst_path, &layout, err);
    return s->pst != NULL;
}

/* The source hung up on control (nothing else is expected there now). */
static bool control_gone(struct dest_session *s)
{
    struct pollfd p = {.fd = channel_fd(s->control), .events = POLLRDHUP};

    return p.fd >= 0 && poll(&p, 1, 0) == 1 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Wait, in short slices so a source that hangs up is noticed at once,
 * until @done(s) or CHANNEL_WAIT_US.  Called with m->lock held.
 */
static bool wait_for(struct dest_session *s, bool (*done)(void *), void *arg,
                     const char *what, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + CHANNEL_WAIT_US;

    while (!done(arg)) {
        int64_t slice = MIN(deadline, g_get_monotonic_time() + WAIT_SLICE_US);

        if (atomic_load(&s->stop) || control_gone(s)) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "the source went away while %s", what);
            return false;
        }
        if (g_get_monotonic_time() >= deadline) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "timed out while %s", what);
            return false;
        }
        g_cond_wait_until(&s->m->cond, &s->m->lock, slice);
    }
    return true;
}

static bool data_channels_open(void *opaque)
{
    struct dest_session *s = opaque;

    for (unsigned i = 0; i < s->bulk_streams; i++) {
        if (!s->bulk[i]) {
            return false;
        }
    }
    return s->urgent != NULL;
}

static bool wait_data_channels(struct dest_session *s, GError **err)
{
    bool ok;

    g_mutex_lock(&s->m->lock);
    ok = wait_for(s, data_channels_open, s, "waiting for its data channels",
                  err);
    g_mutex_unlock(&s->m->lock);
    return ok;
}

struct sync_wait {
    struct dest_session *s;
    uint32_t seq;
};

static bool sync_reached(void *opaque)
{
    struct sync_wait *w = opaque;

    for (unsigned i = 0; w->seq && i < w->s->bulk_streams; i++) {
        if (atomic_load(&w->s->bulk_sync[i]) != w->seq) {
            return false;
        }
    }
    return true;
}

/* Until every bulk stream has written its data up to FRAME_SYNC @seq. */
static bool wait_bulk_sync(struct dest_session *s, uint32_t seq, GError **err)
{
    struct sync_wait w = {.s = s, .seq = seq};
    bool ok;

    g_mutex_lock(&s->m->lock);
    ok = wait_for(s, sync_reached, &w, "waiting for the bulk channel's barrier",
                  err);
    g_mutex_unlock(&s->m->lock);
    return ok;
}

static void mark_stale_run(void *opaque, uint32_t region, uint64_t first,
                           uint64_t n)
{
    struct dest_session *s = opaque;

    /* ABSENT stays ABSENT: it is fetched either way. */
    page_state_mark_stale_run(s->pst, region, first, n);
}

/*
 * Everything sent before the switchover is written (the bulk channel's
 * SYNC says so), then the pages the guest re-dirtied become STALE: their
 * copy here is never installed.
 */
static bool prepare_resume(struct dest_session *s,
                           const Postcopy__Peer__Switchover *so,
                           Postcopy__Peer__SwitchoverReply *sr, GError **err)
{
    uint64_t stale = 0, t0 = migration_now_us(), t1;

    if (!wait_bulk_sync(s, so->sync_seq, err)) {
        return false;
    }
    t1 = migration_now_us();
    sr->barrier_us = t1 - t0;
    if (!dirty_set_decode(so, s->regions, mark_stale_run, s, &stale, err)) {
        return false;
    }
    sr->stale_us = migration_now_us() - t1;
    atomic_fetch_add(&s->m->stats.stale_pages, stale);
    return true;
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
        uint64_t pos = 0;
        struct page_run run;

        while (!atomic_load(&s->stop) &&
               page_state_claim_run(s->pst, r->id, &pos, region_pages(r),
                                    PAGE_MASK(PAGE_CURRENT), &run)) {
            int ret = install_current(s, r, run.first, run.npages);

            if (ret < 0) {
                for (uint64_t p = run.first; p < run.first + run.npages; p++) {
                    page_state_abort_install(s->pst, r->id, p);
                }
                g_autofree char *why = g_strdup_printf(
                    "installing local pages at 0x%" G_GINT64_MODIFIER "x: %s",
                    r->base + run.first * r->page_size, g_strerror(-ret));

                dest_abort(s, why);
                return NULL;
            }
            page_state_finish_run(s->pst, r->id, &run);
            atomic_fetch_add(&s->m->stats.pages_installed, run.npages);
            end_faults(s, r, run.first, run.npages);
        }
    }
    signal_if_done(s);
    return NULL;
}

/* From here a restarted daemon must be able to carry on. */
static void remember_session(struct dest_session *s)
{
    g_autoptr(GError) err = NULL;
    struct session_file f = {.role = ROLE_DESTINATION,
                             .mode = s->m->params.mode};

    g_strlcpy(f.id, s->m->id, sizeof(f.id));
    g_strlcpy(f.vm_name, s->m->vm_name, sizeof(f.vm_name));
    g_strlcpy(f.peer_uri, s->m->peer_uri ? s->m->peer_uri : "",
              sizeof(f.peer_uri));
    if (!session_file_write(s->m->daemon->cfg->state_dir, &f, &err)) {
        g_warning("migration %s: a restart could not carry it on: %s", s->m->id,
                  err->message);
    }
}

/*
 * A VM whose RAM could not be preallocated would fail in postcopy, where
 * failing costs the guest: refuse it now, while the source still runs it.
 */
static bool ram_allocated(struct vm_entry *vm, GError **err)
{
    struct prealloc_progress p;

    if (!vm->prealloc) {
        return true;
    }
    prealloc_get_progress(vm->prealloc, &p);
    if (p.failed) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "VM '%s': this host could not allocate its RAM: %s",
                    vm->info.vm_name, p.error);
        return false;
    }
    return true;
}

/*
 * The Barrier is the last moment a failure costs nothing (the source VM
 * still runs): a prealloc still under way is waited for here, however
 * long it takes, so that the guest never meets a page this host cannot
 * give it in postcopy.  The check at the Hello only catches a prealloc
 * that had already failed.
 */
static bool wait_ram_allocated(struct dest_session *s, GError **err)
{
    struct prealloc *pa = s->m->vm->prealloc;
    struct prealloc_progress p;

    if (!pa) {
        return true;
    }
    prealloc_get_progress(pa, &p);
    if (!p.finished) {
        g_message("migration %s: waiting for this host to allocate the VM's "
                  "RAM (%" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                  " MiB) before the switchover",
                  s->m->id, p.done >> 20, p.total >> 20);
    }
    for (; !p.finished; prealloc_get_progress(pa, &p)) {
        if (atomic_load(&s->stop) || control_gone(s)) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                        "the source went away while this host was still "
                        "allocating the VM's RAM");
            return false;
        }
        g_usleep(10 * 1000);
    }
    return ram_allocated(s->m->vm, err);
}

/* The source's Barrier: answer once the bulk data before it is written. */
static bool answer_barrier(struct dest_session *s, const PeerMessage *msg,
                           GError **err)
{
    Postcopy__Peer__BarrierReply br = POSTCOPY__PEER__BARRIER_REPLY__INIT;
    PeerMessage reply = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    uint64_t stale = 0;

    if (!wait_bulk_sync(s, msg->barrier->sync_seq, err) ||
        !wait_ram_allocated(s, err)) {
        return false;
    }
    /* Hybrid: most of the dirty set, marked before the pause (peer.proto). */
    if (msg->barrier->stale &&
        !dirty_set_decode(msg->barrier->stale, s->regions, mark_stale_run, s,
                          &stale, err)) {
        return false;
    }
    atomic_fetch_add(&s->m->stats.stale_pages, stale);
    br.sync_seq = msg->barrier->sync_seq;
    reply.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER_REPLY;
    reply.barrier_reply = &br;
    return channel_send_msg(s->control, &reply, err);
}

/*
 * After the barrier the Switchover follows within milliseconds, inside
 * the downtime: wait for it awake (this host's guest does not run yet, so
 * the CPU is free) rather than pay a wake-up.
 */
#define SWITCHOVER_SPIN_US 20000

/* The next control message that is not a Barrier (those are answered). */
static PeerMessage *recv_past_barriers(struct dest_session *s, GError **err)
{
    for (bool answered = false;; answered = true) {
        PeerMessage *msg;

        if (answered) {
            channel_spin_readable(s->control, SWITCHOVER_SPIN_US);
        }
        msg = channel_recv_msg(s->control, err);

        if (!msg ||
            msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER) {
            return msg;
        }
        if (!answer_barrier(s, msg, err)) {
            peer_message_free(msg);
            return NULL;
        }
        peer_message_free(msg);
    }
}

static bool do_switchover(struct dest_session *s, GError **err)
{
    Postcopy__Peer__SwitchoverReply sr = POSTCOPY__PEER__SWITCHOVER_REPLY__INIT;
    PeerMessage reply = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) msg = recv_past_barriers(s, err);
    g_autoptr(GError) rerr = NULL;

    if (!msg) {
        return false;
    }
    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_CANCEL) {
        s->cancelled = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "the source cancelled the migration: %s",
                    msg->cancel->reason);
        return false;
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "expected the switchover, got %s", peer_message_name(msg));
        return false;
    }
    if (!migration_set_status(s->m, MIG_ACTIVE, MIG_DEVICE)) {
        migration_set_status(s->m, MIG_SETUP, MIG_DEVICE);
    }
    sr.ok = prepare_resume(s, msg->switchover, &sr, &rerr);
    if (sr.ok) {
        uint64_t t0 = migration_now_us();

        /* Before the resume: the first fault must find the new phase. */
        atomic_store(&s->running, true);
        sr.ok = vmm_driver_resume(s->m->vm->driver,
                                  msg->switchover->device_state.data,
                                  msg->switchover->device_state.len, &rerr);
        if (!sr.ok) {
            atomic_store(&s->running, false);
        }
        sr.resume_us = migration_now_us() - t0;
    }
    atomic_store(&s->m->stats.downtime_part_us[DT_DST_BARRIER], sr.barrier_us);
    atomic_store(&s->m->stats.downtime_part_us[DT_DST_STALE], sr.stale_us);
    atomic_store(&s->m->stats.downtime_part_us[DT_DST_RESUME], sr.resume_us);
    sr.error = sr.ok ? "" : rerr->message;
    reply.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY;
    reply.switchover_reply = &sr;
    if (!channel_send_msg(s->control, &reply, err)) {
        return false;
    }
    if (!sr.ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "the VMM refused to resume: %s", rerr->message);
        return false;
    }
    atomic_store(&s->m->stats.resume_us, migration_now_us());
    remember_session(s);
    s->sweep_thread = g_thread_new("dst-sweep", sweep_thread, s);
    return migration_set_status(s->m, MIG_DEVICE, MIG_POSTCOPY_ACTIVE);
}

/* Every page is in place: the guest runs at native speed from now on. */
static void complete(struct dest_session *s)
{
    Postcopy__Peer__Complete c = POSTCOPY__PEER__COMPLETE__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    const struct stats_histogram *h = blocktime_histogram(s->m->blocktime);
    struct blocktime_thread_stats threads[MIGRATION_MAX_VCPUS];
    Postcopy__Peer__VcpuBlocktime vb[MIGRATION_MAX_VCPUS];
    Postcopy__Peer__VcpuBlocktime *vbp[MIGRATION_MAX_VCPUS];
    uint64_t hist[STATS_HISTOGRAM_BUCKETS];
    g_autoptr(GError) err = NULL;
    size_t nv;

    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];

        if (!uffd_unregister(&s->u, r->base, r->size, &err)) {
            g_warning("migration %s: %s", s->m->id, err->message);
            g_clear_error(&err);
        }
    }
    c.pages_installed = atomic_load(&s->m->stats.pages_installed);
    c.pages_requested = atomic_load(&s->m->stats.postcopy_requests);
    c.faults = atomic_load(&s->m->stats.faults);
    c.pages_installed_local = atomic_load(&s->m->stats.installed_local);
    c.n_fault_histogram = STATS_HISTOGRAM_BUCKETS;
    c.fault_histogram = hist;
    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        hist[i] = stats_histogram_bucket_count(h, i);
    }
    c.fault_max_us = stats_histogram_max(h);
    c.fault_sum_us = stats_histogram_sum(h);
    nv = blocktime_threads(s->m->blocktime, threads, G_N_ELEMENTS(threads));
    for (size_t i = 0; i < nv; i++) {
        vb[i] =
            (Postcopy__Peer__VcpuBlocktime)POSTCOPY__PEER__VCPU_BLOCKTIME__INIT;
        vb[i].tid = threads[i].tid;
        vb[i].blocked_us = threads[i].blocked_ns / 1000;
        vb[i].faults = threads[i].faults;
        vbp[i] = &vb[i];
    }
    c.n_vcpu_blocktime = nv;
    c.vcpu_blocktime = vbp;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_COMPLETE;
    msg.complete = &c;
    /* From here the source may close its channels: not an error. */
    atomic_store(&s->stop, true);
    if (!channel_send_msg(s->control, &msg, &err)) {
        g_warning("migration %s: %s", s->m->id, err->message);
    }
    unlink(s->pst_path);
    session_file_remove(s->m->daemon->cfg->state_dir, s->m->id,
                        ROLE_DESTINATION);
    s->m->vm->info.incoming = false; /* it may migrate on from here */
    migration_set_status(s->m, MIG_POSTCOPY_ACTIVE, MIG_COMPLETED);
}

static GThread *start_receiver(struct dest_session *s, struct channel *ch,
                               const char *name)
{
    struct receiver *rc = g_new0(struct receiver, 1);

    rc->s = s;
    rc->epoch = atomic_load(&s->epoch);
    rc->ch = ch;
    return g_thread_new(name, receive_loop, rc);
}

static void start_receivers(struct dest_session *s)
{
    s->urgent_thread = start_receiver(s, s->urgent, "dst-urgent");
    for (unsigned i = 0; i < s->bulk_streams; i++) {
        s->bulk_thread[i] = start_receiver(s, s->bulk[i], "dst-bulk");
    }
}

static void start_threads(struct dest_session *s)
{
    s->fault_thread = g_thread_new("dst-faults", fault_thread, s);
    start_receivers(s);
}

static void join_receivers(struct dest_session *s)
{
    if (s->urgent_thread) {
        g_thread_join(s->urgent_thread);
        s->urgent_thread = NULL;
    }
    for (unsigned i = 0; i < DEST_MAX_STREAMS; i++) {
        if (s->bulk_thread[i]) {
            g_thread_join(s->bulk_thread[i]);
            s->bulk_thread[i] = NULL;
        }
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
 * Paused: wait for a resuming source's three channels, then carry on with
 * them.  The old channels are kept (shut down) in the graveyard.
 */
static bool resume_channels_ready(struct dest_session *s)
{
    for (unsigned i = 0; i < s->next_streams; i++) {
        if (!s->next_bulk[i]) {
            return false;
        }
    }
    return s->next_control && s->next_urgent;
}

static bool wait_resume(struct dest_session *s)
{
    shutdown_channels(s);
    join_receivers(s);
    g_mutex_lock(&s->m->lock);
    while (!resume_channels_ready(s) && !atomic_load(&s->stop)) {
        g_cond_wait(&s->m->cond, &s->m->lock);
    }
    if (atomic_load(&s->stop)) {
        g_mutex_unlock(&s->m->lock);
        return false;
    }
    g_ptr_array_add(s->graveyard, s->control);
    g_ptr_array_add(s->graveyard, s->urgent);
    s->control = s->next_control;
    __atomic_store_n(&s->urgent, s->next_urgent, __ATOMIC_RELEASE);
    s->next_control = s->next_urgent = NULL;
    s->bulk_streams = s->next_streams;
    for (unsigned i = 0; i < DEST_MAX_STREAMS; i++) {
        if (s->bulk[i]) {
            g_ptr_array_add(s->graveyard, s->bulk[i]);
        }
        s->bulk[i] = s->next_bulk[i];
        s->next_bulk[i] = NULL;
    }
    atomic_fetch_add(&s->epoch, 1);
    atomic_store(&s->paused, false);
    g_mutex_unlock(&s->m->lock);
    migration_clear_error(s->m);
    migration_set_status(s->m, MIG_POSTCOPY_PAUSED, MIG_POSTCOPY_ACTIVE);
    start_receivers(s);
    /* The fault thread sends them: it alone sends on the urgent channel. */
    atomic_store(&s->rerequest_due, true);
    return true;
}

/* Until every page is installed, pausing and resuming as the link goes. */
static void postcopy(struct dest_session *s)
{
    for (;;) {
        g_mutex_lock(&s->m->lock);
        while (!page_state_all_installed(s->pst) && !atomic_load(&s->stop) &&
               !atomic_load(&s->paused)) {
            g_cond_wait(&s->m->cond, &s->m->lock);
        }
        g_mutex_unlock(&s->m->lock);
        if (page_state_all_installed(s->pst)) {
            complete(s);
            return;
        }
        if (atomic_load(&s->stop) || !wait_resume(s)) {
            return;
        }
    }
}

static void stop_threads(struct dest_session *s)
{
    atomic_store(&s->stop, true);
    shutdown_channels(s);
    if (s->fault_thread) {
        g_thread_join(s->fault_thread);
    }
    join_receivers(s);
    if (s->sweep_thread) {
        g_thread_join(s->sweep_thread);
    }
    if (s->control) {
        channel_close(s->control);
    }
    if (s->urgent) {
        channel_close(s->urgent);
    }
    for (unsigned i = 0; i < DEST_MAX_STREAMS; i++) {
        if (s->bulk[i]) {
            channel_close(s->bulk[i]);
        }
        if (s->next_bulk[i]) {
            channel_close(s->next_bulk[i]);
        }
    }
    if (s->next_control) {
        channel_close(s->next_control);
    }
    if (s->next_urgent) {
        channel_close(s->next_urgent);
    }
    g_mutex_lock(&s->m->lock);
    for (guint i = 0; i < s->graveyard->len; i++) {
        channel_close(s->graveyard->pdata[i]);
    }
    g_ptr_array_set_size(s->graveyard, 0);
    g_mutex_unlock(&s->m->lock);
    if (s->pst) {
        page_state_close(s->pst);
    }
}

/*
 * The VMM never ran here: drop what precopy put in its page cache,
 * unregister its RAM and forget the page state, so a later migration into
 * the same VMM starts clean.
 */
static void discard_partial(struct dest_session *s)
{
    for (size_t i = 0; i < s->registered; i++) {
        const struct region *r = &s->regions->regions[i];

        g_autoptr(GError) err = NULL;

        uffd_unregister(&s->u, r->base, r->size, NULL);
        if (!backing_discard(r, &err)) {
            g_warning("migration %s: region %zu: %s", s->m->id, i,
                      err->message);
        }
    }
    if (s->pst_path) {
        unlink(s->pst_path);
    }
}

static gpointer dest_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct migration *m = s->m;
    g_autoptr(GError) err = NULL;

    if (!check_layout(s, &err) || !setup_uffd(s, &err) ||
        !wait_data_channels(s, &err)) {
        migration_fail(m, MIG_FAILED, "%s", err->message);
        send_error(s->control,
                   s->layout_refused
                       ? POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_LAYOUT
                       : POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL,
                   err->message);
        goto out;
    }
    atomic_store(&m->stats.setup_done_us, migration_now_us());
    if (m->params.mode != MODE_POSTCOPY) {
        migration_set_status(m, MIG_SETUP, MIG_ACTIVE);
    }
    start_threads(s);
    if (!do_switchover(s, &err)) {
        /* Once resumed, the guest's missing pages exist only there. */
        migration_fail(m,
                       atomic_load(&s->running) ? MIG_POSTCOPY_PAUSED
                       : s->cancelled           ? MIG_CANCELLED
                                                : MIG_FAILED,
                       "%s", err->message);
        send_error(s->control, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL,
                   err->message);
        goto out;
    }
    postcopy(s);
out:
    stop_threads(s);
    if (!atomic_load(&s->running)) {
        discard_partial(s);
    }
    for (size_t i = 0; i < REGION_MAX; i++) {
        if (s->staging[i]) {
            munmap(s->staging[i], s->regions->regions[i].size);
        }
    }
    daemon_release_vm(m->daemon, m->vm);
    g_free(s->pst_path);
    return NULL;
}

static const char *hello_problem(const Postcopy__Peer__Hello *h,
                                 Postcopy__Peer__ErrorCode *code)
{
    *code = POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL;
    if (h->min_version > PEER_PROTOCOL_VERSION ||
        h->version < PEER_PROTOCOL_VERSION) {
        *code = POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VERSION;
        return "no protocol version in common";
    }
    if (h->migration_id.len != 16) {
        return "the migration id must be 16 bytes";
    }
    return NULL;
}

/* What the destination still lacks: the source streams only that. */
static bool send_resume_reply(struct dest_session *s, struct channel *ch,
                              GError **err)
{
    Postcopy__Peer__ResumeReply rr = POSTCOPY__PEER__RESUME_REPLY__INIT;
    Postcopy__Peer__Switchover missing = POSTCOPY__PEER__SWITCHOVER__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    const unsigned lacking = PAGE_MASK(PAGE_ABSENT) | PAGE_MASK(PAGE_STALE) |
                             PAGE_MASK(PAGE_REQUESTED);
    unsigned long *maps[REGION_MAX] = {0};
    bool ok;

    for (size_t i = 0; i < s->regions->n; i++) {
        uint64_t n = region_pages(&s->regions->regions[i]);

        maps[i] = g_new0(unsigned long, (n + 63) / 64);
        for (uint64_t p = 0; (p = page_state_next(s->pst, i, p, lacking)) < n;
             p++) {
            maps[i][p / 64] |= 1UL << (p % 64);
        }
    }
    dirty_set_encode(s->regions, maps, &missing);
    rr.ok = true;
    rr.error = "";
    rr.missing = &missing;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_RESUME_REPLY;
    msg.resume_reply = &rr;
    ok = channel_send_msg(ch, &msg, err);
    dirty_set_clear(&missing);
    for (size_t i = 0; i < s->regions->n; i++) {
        g_free(maps[i]);
    }
    return ok;
}

/* The source lost our Complete with its connection: tell it again. */
static void send_completed(struct channel *ch)
{
    Postcopy__Peer__ResumeReply rr = POSTCOPY__PEER__RESUME_REPLY__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    rr.ok = true;
    rr.error = "";
    rr.completed = true;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_RESUME_REPLY;
    msg.resume_reply = &rr;
    channel_send_msg(ch, &msg, NULL);
}

/*
 * A source reconnects a paused migration.  If this side had not noticed
 * the old connection die yet, it has now.
 */
static void accept_resume(struct daemon *d, struct channel *ch,
                          PeerMessage *hello)
{
    const Postcopy__Peer__Hello *h = hello->hello;
    g_autoptr(GError) err = NULL;
    struct migration *m = daemon_find_migration_id(d, h->migration_id.data);
    struct dest_session *s = m ? m->role_state : NULL;
    enum migration_status st = m ? migration_status(m) : MIG_NONE;

    if (s && st == MIG_COMPLETED) {
        send_hello_reply(ch, NULL, NULL);
        send_completed(ch);
        goto drop;
    }
    if (!s || !atomic_load(&s->running) ||
        (st != MIG_POSTCOPY_ACTIVE && st != MIG_POSTCOPY_PAUSED)) {
        g_warning("peer %s: resume refused: no migration in postcopy with "
                  "that id",
                  channel_peer(ch));
        send_hello_reply(ch, "no migration in postcopy with that id", NULL);
        goto drop;
    }
    if (!atomic_load(&s->paused)) {
        dest_fail(s, "the source reconnected: the old connection is gone");
    }
    /* The new connection may bring another number of bulk streams. */
    if (h->bulk_streams < 1 || h->bulk_streams > DEST_MAX_STREAMS) {
        send_hello_reply(ch, "bulk_streams out of range", NULL);
        goto drop;
    }
    g_mutex_lock(&m->lock);
    s->next_streams = h->bulk_streams;
    g_mutex_unlock(&m->lock);
    if (!send_hello_reply(ch, NULL, &err) || !send_resume_reply(s, ch, &err)) {
        g_warning("peer %s: resume: %s", channel_peer(ch), err->message);
        goto drop;
    }
    g_mutex_lock(&m->lock);
    if (s->next_control) {
        g_ptr_array_add(s->graveyard, s->next_control);
    }
    s->next_control = ch;
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
    peer_message_free(hello);
    return;
drop:
    peer_message_free(hello);
    channel_close(ch);
}

void dest_accept_control(struct daemon *d, struct channel *ch,
                         PeerMessage *hello)
{
    const Postcopy__Peer__Hello *h = hello->hello;
    g_autoptr(GError) err = NULL;
    struct dest_session *s;
    struct migration *m;
    struct vm_entry *vm;
    Postcopy__Peer__ErrorCode code;
    const char *why = hello_problem(h, &code);

    if (why) {
        g_warning("peer %s: %s", channel_peer(ch), why);
        send_refusal(ch, code, why, NULL);
        goto drop;
    }
    if (h->resume) {
        accept_resume(d, ch, hello);
        return;
    }
    vm = daemon_take_incoming_vm(d, h->vm_name, &err);
    if (!vm) {
        g_warning("peer %s: %s", channel_peer(ch), err->message);
        send_refusal(ch,
                     g_error_matches(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC)
                         ? POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_BUSY
                         : POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VMM,
                     err->message, NULL);
        goto drop;
    }
    if (!ram_allocated(vm, &err)) {
        g_warning("peer %s: %s", channel_peer(ch), err->message);
        send_refusal(ch, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VMM,
                     err->message, NULL);
        daemon_release_vm(d, vm);
        goto drop;
    }
    m = migration_new(d, ROLE_DESTINATION, vm);
    migration_set_id(m, h->migration_id.data);
    m->params.mode =
        h->mode == POSTCOPY__PEER__MODE__MODE_PRECOPY  ? MODE_PRECOPY
        : h->mode == POSTCOPY__PEER__MODE__MODE_HYBRID ? MODE_HYBRID
                                                       : MODE_POSTCOPY;
    m->mode = m->params.mode;
    m->peer_uri = g_strdup(channel_peer(ch));
    s = g_new0(struct dest_session, 1);
    s->graveyard = g_ptr_array_new();
    s->m = m;
    s->regions = &vm->info.regions;
    s->control = ch;
    s->bulk_streams = CLAMP(h->bulk_streams, 1, DEST_MAX_STREAMS);
    m->role_state = s;
    daemon_add_migration(d, m);
    migration_set_status(m, MIG_NONE, MIG_SETUP);
    if (!send_hello_reply(ch, NULL, &err)) {
        migration_fail(m, MIG_FAILED, "%s", err->message);
        channel_close(ch);
        daemon_release_vm(d, vm);
        peer_message_free(hello);
        return;
    }
    peer_message_free(hello);
    m->thread = g_thread_new("dest", dest_thread, s);
    return;
drop:
    peer_message_free(hello);
    channel_close(ch);
}

void dest_accept_data(struct daemon *d, struct channel *ch, PeerMessage *hello)
{
    const Postcopy__Peer__Hello *h = hello->hello;
    struct migration *m = NULL;
    struct dest_session *s;
    Postcopy__Peer__ErrorCode code;
    const char *why = hello_problem(h, &code);
    struct channel **slot;

    if (!why) {
        m = daemon_find_migration_id(d, h->migration_id.data);
        why = m ? NULL : "no migration with that id";
    }
    if (why) {
        goto refuse;
    }
    s = m->role_state;
    if (channel_kind(ch) == CHANNEL_BULK &&
        h->stream >= (h->resume ? s->next_streams : s->bulk_streams)) {
        why = "bulk stream number out of range";
        goto refuse;
    }
    if (h->resume) {
        slot = channel_kind(ch) == CHANNEL_URGENT ? &s->next_urgent
                                                  : &s->next_bulk[h->stream];
    } else {
        slot = channel_kind(ch) == CHANNEL_URGENT ? &s->urgent
                                                  : &s->bulk[h->stream];
    }
    g_mutex_lock(&m->lock);
    if (h->resume
            ? !atomic_load(&s->paused) || !s->next_control
            : *slot || migration_status(m) != MIG_SETUP || !s->layout_ok) {
        why = h->resume       ? "no resume in progress for that migration"
              : *slot         ? "that channel is already open"
              : !s->layout_ok ? "the layout was not accepted yet"
                              : "the migration is not in setup";
    } else if (send_hello_reply(ch, NULL, NULL)) {
        if (*slot) {
            g_ptr_array_add(s->graveyard, *slot); /* an earlier attempt */
        }
        if (channel_kind(ch) == CHANNEL_URGENT) {
            channel_set_single_sender(ch); /* the fault thread's alone */
        }
        *slot = ch;
        g_cond_broadcast(&m->cond);
    } else {
        why = "hello reply failed";
    }
    g_mutex_unlock(&m->lock);
    if (why) {
        goto refuse;
    }
    peer_message_free(hello);
    return;
refuse:
    g_warning("peer %s: %s channel refused: %s", channel_peer(ch),
              channel_kind_name(channel_kind(ch)), why);
    send_refusal(ch, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL, why,
                 NULL);
    peer_message_free(hello);
    channel_close(ch);
}

/* ---- carrying on after a restart ---- */

/* Is the VMM's page at @addr mapped (pagemap bit 63)? */
static bool vmm_page_present(int pagemap, uint64_t addr, uint64_t page_size)
{
    uint64_t entry = 0;

    if (pread(pagemap, &entry, sizeof(entry), addr / 4096 * 8) !=
        sizeof(entry)) {
        return false;
    }
    (void)page_size;
    return entry & (1ULL << 63);
}

/*
 * The dead daemon's table: requests died with it (the faulting vCPUs still
 * wait, so their pages are requested again first), anonymous copies lived
 * in its memory, and a page it was installing either made it into the
 * VMM (pagemap says) or not.
 */
static bool reload_table(struct dest_session *s, GError **err)
{
    struct page_state_layout layout;
    struct page_state_reload reload;
    g_autofree char *pm_path =
        g_strdup_printf("/proc/%d/pagemap", s->m->vm->info.pid);
    int pm;

    if (!page_state_layout_init(&layout, s->m->id, s->regions, err)) {
        return false;
    }
    s->pst = page_state_resume(s->pst_path, &layout, &reload, err);
    if (!s->pst) {
        return false;
    }
    pm = open(pm_path, O_RDONLY | O_CLOEXEC);
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];
        uint64_t p = 0;

        while ((p = page_state_next(s->pst, i, p, PAGE_MASK(PAGE_INSTALLING))) <
               region_pages(r)) {
            if (pm >= 0 && vmm_page_present(pm, r->base + p * r->page_size,
                                            r->page_size)) {
                page_state_finish_install(s->pst, i, p);
            } else {
                page_state_abort_install(s->pst, i, p);
            }
            p++;
        }
        if (!r->alias) {
            page_state_forget_copies(s->pst, i);
        }
        for (p = 0; (p = page_state_next(
                         s->pst, i, p,
                         PAGE_MASK(PAGE_ABSENT) | PAGE_MASK(PAGE_STALE) |
                             PAGE_MASK_WANTED)) < region_pages(r);
             p++) {
            page_state_try_request(s->pst, i, p);
        }
    }
    if (pm >= 0) {
        close(pm);
    }
    g_message("migration %s: page state reloaded: %" G_GUINT64_FORMAT
              " request(s) to send again, %" G_GUINT64_FORMAT
              " torn write(s), %" G_GUINT64_FORMAT " install(s) checked",
              s->m->id, reload.requests_dropped, reload.writes_torn,
              reload.installs_uncertain);
    return true;
}

static bool restore_uffd(struct dest_session *s, GError **err)
{
    struct vm_entry *vm = s->m->vm;

    memset(&s->u, 0, sizeof(s->u));
    s->u.fd = vm->info.uffd;
    if (!uffd_read_features(vm->info.uffd, &s->u.features, err)) {
        return false;
    }
    vm->api_done = true;
    vm->info.uffd_features = s->u.features;
    /* The registrations live in the VMM's mm: they survived us. */
    for (size_t i = 0; i < s->regions->n; i++) {
        struct region *r = &s->regions->regions[i];

        if (!region_map_alias(r, err)) {
            return false;
        }
        s->limits[i].size = r->size;
        s->limits[i].page_size = r->page_size;
        atomic_fetch_add(&s->m->stats.pages_total, region_pages(r));
    }
    s->registered = s->regions->n;
    return true;
}

static gpointer restored_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct migration *m = s->m;

    postcopy(s);
    stop_threads(s);
    daemon_release_vm(m->daemon, m->vm);
    g_free(s->pst_path);
    return NULL;
}

void dest_restore(struct daemon *d, struct vm_entry *vm,
                  const struct session_file *f)
{
    g_autoptr(GError) err = NULL;
    struct dest_session *s = g_new0(struct dest_session, 1);
    struct migration *m = migration_new(d, ROLE_DESTINATION, vm);

    migration_set_id(m, f->id_bytes);
    m->params.mode = m->mode = f->mode;
    s->m = m;
    s->regions = &vm->info.regions;
    s->graveyard = g_ptr_array_new();
    s->pst_path = g_strdup_printf("%s/%s.pages", d->cfg->state_dir, m->id);
    m->role_state = s;
    daemon_add_migration(d, m);
    atomic_store(&s->running, true);
    atomic_store(&s->paused, true);
    if (!restore_uffd(s, &err) || !reload_table(s, &err)) {
        migration_fail(m, MIG_FAILED, "carrying on after a restart: %s",
                       err->message);
        daemon_release_vm(d, vm);
        return;
    }
    migration_set_status(m, MIG_NONE, MIG_POSTCOPY_PAUSED);
    g_message("migration %s (%s): carried on after a restart, waiting for "
              "the source to reconnect",
              m->id, m->vm_name);
    s->fault_thread = g_thread_new("dst-faults", fault_thread, s);
    s->sweep_thread = g_thread_new("dst-sweep", sweep_thread, s);
    m->thread = g_thread_new("dest", restored_thread, s);
}
