/*
 * source.c - the source role: connect to the destination, agree on the
 * layout, run precopy rounds (precopy.c) unless the mode is postcopy,
 * pause the VMM and hand its device state over, then serve page requests
 * (urgent channel, its own thread) and stream what the destination still
 * lacks (bulk channel, its own thread) until it says it has every page.
 *
 * Modes at switchover: precopy sends the last dirty pages during the
 * downtime; hybrid sends only the dirty bitmap and leaves those pages to
 * postcopy; postcopy sends no page before it.  The source VMM stays paused
 * after switchover, so every copy sent from then on is final.
 */
#include "source.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/uio.h>

#include "completion_stats.h"
#include "daemon.h"
#include "dirty_set.h"
#include "fault_priority.h"
#include "frame.h"
#include "region.h"
#include "session_file.h"

#define CONTROL_POLL_MS 500
/* A data channel closed without a Complete on control within this: lost. */
#define DATA_LOST_GRACE_US (2 * G_USEC_PER_SEC)
#define RECONNECT_MIN_MS   100
#define RECONNECT_MAX_MS   2000
#define STREAM_RUN_PAGES   256 /* a 1 MiB run of 4 KiB pages per frame */

static void page_counters_for(struct migration *m, struct page_counters *c)
{
    c->pages = &m->stats.pages_sent;
    c->zero = &m->stats.zero_pages;
    c->bytes = &m->stats.bytes_sent;
    c->phase_bytes = NULL;
}

static bool serve_request(struct source_session *s, struct page_sender *ps,
                          const struct frame_region_limits *limits,
                          const struct frame_hdr *req, GError **err)
{
    const struct region *r;
    uint64_t len;

    if (req->type != FRAME_PAGE_REQ) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "urgent channel: unexpected %s frame",
                    frame_type_name(req->type));
        return false;
    }
    if (!frame_check_page(req, limits, s->regions->n, err)) {
        return false;
    }
    r = &s->regions->regions[req->region];
    len = (uint64_t)req->count * r->page_size;
    if (len > FRAME_MAX_PAYLOAD) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "page request for %u pages is larger than a frame",
                    req->count);
        return false;
    }
    return page_sender_send(ps, s->urgent, r, req->offset / r->page_size,
                            req->count, FRAME_F_REPLY | FRAME_F_FINAL, req->seq,
                            err);
}

static void limits_from(const struct region_table *t,
                        struct frame_region_limits *limits)
{
    for (size_t i = 0; i < t->n; i++) {
        limits[i].size = t->regions[i].size;
        limits[i].page_size = t->regions[i].page_size;
    }
}

/*
 * The destination closes its data channels right after its Complete, which
 * the session thread may not have read yet: a closed data channel is left
 * to the control channel to judge (Complete, or an error there too).  Any
 * other failure stops the migration here.
 */
static void data_channel_failed(struct source_session *s, const GError *err)
{
    if (atomic_load(&s->stop)) {
        return;
    }
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED)) {
        uint64_t zero = 0;

        atomic_compare_exchange_strong(&s->data_lost_us, &zero,
                                       migration_now_us());
        return;
    }
    migration_fail(s->m, MIG_POSTCOPY_PAUSED, "%s", err->message);
    channel_shutdown(s->control);
}

/* Urgent requests never wait behind bulk data: their own thread. */
static gpointer request_thread(gpointer opaque)
{
    struct source_session *s = opaque;
    struct frame_region_limits limits[REGION_MAX];
    struct page_counters c;
    struct page_sender ps;
    int prio = s->m->daemon->cfg->fault_priority;
    struct fault_budget budget;

    fault_budget_init(&budget,
                      fault_priority_enter(prio, "src-requests") ? prio : 0);
    page_counters_for(s->m, &c);
    c.phase_bytes = &s->m->stats.bytes_postcopy;
    page_sender_init(&ps, s->m->vm->info.pid, &c);
    limits_from(s->regions, limits);
    while (!atomic_load(&s->stop)) {
        g_autoptr(GError) err = NULL;
        struct frame_hdr req;

        /*
         * The next fault's request often follows within tens of
         * microseconds, less than a sleep and wake-up costs; and in
         * postcopy this host's VM is paused, so the CPU spent polling is
         * one nobody wants.  (The destination does not poll: its CPUs
         * run the guest.)
         */
        fault_budget_check(&budget);
        if (!channel_spin_readable(s->urgent,
                                   s->m->daemon->cfg->busy_poll_us)) {
            fault_budget_sleeping(&budget);
        }
        if (!channel_recv_hdr(s->urgent, &req, &err) ||
            !serve_request(s, &ps, limits, &req, &err)) {
            data_channel_failed(s, err);
            break;
        }
        if (s->streaming) {
            postcopy_stream_note(&s->stream, req.region,
                                 req.offset /
                                     s->regions->regions[req.region].page_size,
                                 req.count);
        }
        atomic_fetch_add(&s->m->stats.postcopy_requests, 1);
    }
    page_sender_destroy(&ps);
    return NULL;
}

/*
 * Postcopy background stream: every page (postcopy mode), or the pages
 * that were dirty at switchover (hybrid).  Pages the destination already
 * fetched are dropped there.
 */
static bool stream_next(struct source_session *s, uint32_t *region,
                        uint64_t *first, uint64_t *n)
{
    bool more;

    g_mutex_lock(&s->stream_lock); /* a few instructions, no syscall */
    more = postcopy_stream_next(&s->stream, region, first, n, STREAM_RUN_PAGES);
    g_mutex_unlock(&s->stream_lock);
    return more;
}

static gpointer bulk_thread(gpointer opaque)
{
    struct bulk_stream *b = opaque;
    struct source_session *s = b->s;
    g_autoptr(GError) err = NULL;
    uint32_t region;
    uint64_t first, n;

    page_sender_set_phase(&b->sender, &s->m->stats.bytes_postcopy);
    while (!atomic_load(&s->stop) && stream_next(s, &region, &first, &n)) {
        const struct region *r = &s->regions->regions[region];

        if (!page_sender_send(&b->sender, b->ch, r, first, n, FRAME_F_FINAL, 0,
                              &err)) {
            goto fail;
        }
    }
    return NULL;
fail:
    data_channel_failed(s, err);
    return NULL;
}

static PeerMessage *expect_msg(struct channel *ch,
                               Postcopy__Peer__PeerMessage__MsgCase want,
                               GError **err)
{
    PeerMessage *msg = channel_recv_msg(ch, err);

    if (!msg) {
        return NULL;
    }
    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "destination: %s",
                    msg->error->message);
        peer_message_free(msg);
        return NULL;
    }
    if (msg->msg_case != want) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "destination sent %s out of order", peer_message_name(msg));
        peer_message_free(msg);
        return NULL;
    }
    return msg;
}

static struct channel *open_channel(struct source_session *s, const char *uri,
                                    enum channel_kind kind, uint32_t stream,
                                    bool resume, GError **err)
{
    struct daemon *d = s->m->daemon;
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;
    char *caps[] = {PEER_CAP_ZERO_PAGE, PEER_CAP_HUGETLBFS, PEER_CAP_MINOR};
    struct channel *ch;

    ch = transport_connect(d->transport, uri, kind, stream, &d->topts, err);
    if (ch) {
        ch = tls_client(ch, d->tls, err);
    }
    if (!ch) {
        return NULL;
    }
    channel_set_timeout(ch, AUTH_TIMEOUT_MS, NULL);
    if (!auth_client(ch, &d->psk, err)) {
        goto fail;
    }
    channel_set_timeout(ch, 0, NULL);
    hello.version = PEER_PROTOCOL_VERSION;
    hello.min_version = PEER_PROTOCOL_VERSION;
    hello.vm_name = s->m->vm_name;
    hello.migration_id.data = s->m->id_bytes;
    hello.migration_id.len = 16;
    hello.channel = (Postcopy__Peer__ChannelKind)kind;
    hello.bulk_streams = kind == CHANNEL_CONTROL ? s->nbulk : 0;
    hello.stream = stream;
    hello.n_capabilities = G_N_ELEMENTS(caps);
    hello.capabilities = caps;
    hello.resume = resume;
    hello.mode = s->m->params.mode == MODE_PRECOPY
                     ? POSTCOPY__PEER__MODE__MODE_PRECOPY
                 : s->m->params.mode == MODE_HYBRID
                     ? POSTCOPY__PEER__MODE__MODE_HYBRID
                     : POSTCOPY__PEER__MODE__MODE_POSTCOPY;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    msg.hello = &hello;
    if (!channel_send_msg(ch, &msg, err)) {
        goto fail;
    }
    reply = expect_msg(ch, POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY, err);
    if (!reply) {
        goto fail;
    }
    if (!reply->hello_reply->ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused the %s channel: %s",
                    channel_kind_name(kind), reply->hello_reply->error);
        goto fail;
    }
    return ch;
fail:
    channel_close(ch);
    return NULL;
}

static bool send_layout(struct source_session *s, GError **err)
{
    Postcopy__Peer__Layout layout = POSTCOPY__PEER__LAYOUT__INIT;
    Postcopy__Peer__RegionLayout rl[REGION_MAX];
    Postcopy__Peer__RegionLayout *rlp[REGION_MAX];
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;

    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];

        rl[i] =
            (Postcopy__Peer__RegionLayout)POSTCOPY__PEER__REGION_LAYOUT__INIT;
        rl[i].index = i;
        rl[i].size = r->size;
        rl[i].page_size = r->page_size;
        rl[i].backing = (Postcopy__Peer__Backing)r->kind;
        rl[i].name = (char *)r->name;
        rlp[i] = &rl[i];
        layout.total_bytes += r->size;
    }
    layout.n_regions = s->regions->n;
    layout.regions = rlp;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT;
    msg.layout = &layout;
    if (!channel_send_msg(s->control, &msg, err)) {
        return false;
    }
    reply = expect_msg(s->control,
                       POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT_REPLY, err);
    if (!reply) {
        return false;
    }
    if (!reply->layout_reply->ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused the layout: %s",
                    reply->layout_reply->error);
        return false;
    }
    return true;
}

static bool open_data_channels(struct source_session *s, bool resume,
                               GError **err)
{
    s->urgent = open_channel(s, s->m->peer_uri, CHANNEL_URGENT, 0, resume, err);
    if (!s->urgent) {
        return false;
    }
    /* Replies go out from the request thread alone: no send lock. */
    channel_set_single_sender(s->urgent);
    for (unsigned i = 0; i < s->nbulk; i++) {
        s->bulk[i].ch =
            open_channel(s, s->m->peer_uri, CHANNEL_BULK, i, resume, err);
        if (!s->bulk[i].ch) {
            return false;
        }
    }
    return true;
}

static bool setup(struct source_session *s, GError **err)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        if (!region_map_alias(&s->regions->regions[i], err)) {
            return false;
        }
        atomic_fetch_add(&s->m->stats.pages_total,
                         region_pages(&s->regions->regions[i]));
    }
    s->control =
        open_channel(s, s->m->peer_uri, CHANNEL_CONTROL, 0, false, err);
    if (!s->control || !send_layout(s, err)) {
        return false;
    }
    return open_data_channels(s, false, err);
}

/* The barrier that lets the destination know all precopy data is in. */
static bool send_sync(struct source_session *s, GError **err)
{
    struct frame_hdr h = {.type = FRAME_SYNC, .seq = ++s->sync_seq};

    for (unsigned i = 0; i < s->nbulk; i++) {
        if (!channel_send_frame(s->bulk[i].ch, &h, NULL, 0, err)) {
            return false;
        }
    }
    return true;
}

/*
 * Hybrid: what is pending when precopy ends is stale there already; the
 * Barrier has the destination mark it while the VM runs, which takes the
 * bulk of that work (a byte per page, the set can be most of the guest)
 * out of the downtime.
 */
static void take_prestale(struct source_session *s)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        size_t longs = BITS_TO_LONGS(region_pages(&s->regions->regions[i]));

        g_free(s->prestale[i]);
        s->prestale[i] = g_memdup2(s->pending[i], longs * sizeof(long));
    }
}

static uint64_t count_pending(const struct source_session *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < s->regions->n; i++) {
        size_t longs = BITS_TO_LONGS(region_pages(&s->regions->regions[i]));

        for (size_t j = 0; j < longs; j++) {
            n += __builtin_popcountl(s->pending[i][j]);
        }
    }
    return n;
}

/*
 * pending minus what the Barrier marked: what the Switchover must say,
 * made in the prestale bitmaps themselves (no allocation in the downtime;
 * they are not needed afterwards).  NULL where nothing was marked.
 */
static unsigned long **prestale_to_delta(struct source_session *s)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        size_t longs = BITS_TO_LONGS(region_pages(&s->regions->regions[i]));

        if (!s->prestale[i]) {
            return NULL;
        }
        for (size_t j = 0; j < longs; j++) {
            s->prestale[i][j] = s->pending[i][j] & ~s->prestale[i][j];
        }
    }
    return s->prestale;
}

/*
 * Before the pause: let the bulk data in flight (socket buffers on both
 * sides, several MiB) reach the destination's memory, and the destination
 * finish setting up (and allocating), while the VM still runs.  The
 * Switchover's own barrier then has almost nothing to wait for; pages
 * written meanwhile are in the final collect.
 */
static bool drain_bulk(struct source_session *s, GError **err)
{
    Postcopy__Peer__Barrier b = POSTCOPY__PEER__BARRIER__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;
    Postcopy__Peer__Switchover stale = POSTCOPY__PEER__SWITCHOVER__INIT;
    bool ok;

    /*
     * Postcopy: no bulk data yet, but the Barrier still pays: it is
     * answered once the destination has finished its own set-up (uffd
     * registration, page state table), which would otherwise run inside
     * the downtime.
     */
    if (s->tracking && !send_sync(s, err)) {
        return false;
    }
    b.sync_seq = s->tracking ? s->sync_seq : 0;
    if (s->m->params.mode == MODE_HYBRID) {
        take_prestale(s);
        dirty_set_encode(s->regions, s->prestale, &stale);
        b.stale = &stale;
    }
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER;
    msg.barrier = &b;
    ok = channel_send_msg(s->control, &msg, err);
    dirty_set_clear(&stale);
    if (!ok) {
        return false;
    }
    reply = expect_msg(s->control,
                       POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER_REPLY, err);
    if (!reply) {
        return false;
    }
    if (reply->barrier_reply->sync_seq != b.sync_seq) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "destination answered barrier %u, not %u",
                    reply->barrier_reply->sync_seq, b.sync_seq);
        return false;
    }
    return true;
}

/*
 * The downtime phase @part ends now: it began where the last one ended
 * (the pause, for the first).  Phases that do not happen stay 0.
 */
static void downtime_mark(struct migration *m, enum downtime_part part)
{
    uint64_t now = migration_now_us(), since = atomic_load(&m->stats.pause_us);

    for (int i = 0; i < (int)part; i++) {
        since += atomic_load(&m->stats.downtime_part_us[i]);
    }
    atomic_store(&m->stats.downtime_part_us[part], now - since);
}

static void downtime_from_reply(struct migration *m,
                                const Postcopy__Peer__SwitchoverReply *r)
{
    atomic_store(&m->stats.downtime_part_us[DT_DST_BARRIER], r->barrier_us);
    atomic_store(&m->stats.downtime_part_us[DT_DST_STALE], r->stale_us);
    atomic_store(&m->stats.downtime_part_us[DT_DST_RESUME], r->resume_us);
}

/*
 * With the VMM paused: the last writes, then what travels during the
 * downtime (precopy: those pages; hybrid: only the dirty set).
 */
static bool prepare_switchover(struct source_session *s,
                               Postcopy__Peer__Switchover *so, GError **err)
{
    struct migration *m = s->m;

    if (!s->tracking) {
        return true;
    }
    if (!precopy_final_collect(s, err)) {
        return false;
    }
    downtime_mark(m, DT_COLLECT);
    source_senders_set_phase(s, &m->stats.bytes_downtime);
    if (m->params.mode == MODE_PRECOPY &&
        !precopy_send_pending(s, FRAME_F_FINAL, err)) {
        return false;
    }
    if (m->params.mode == MODE_HYBRID) {
        unsigned long **delta = prestale_to_delta(s);

        dirty_set_encode(s->regions, delta ? delta : s->pending, so);
        atomic_store(&m->stats.stale_pages, count_pending(s));
    }
    /*
     * Only precopy sent pages on the bulk channels since the Barrier's
     * SYNC; otherwise that SYNC is the one to wait for, and the
     * destination has seen it already: no bulk receiver to wake in the
     * downtime.
     */
    if (m->params.mode == MODE_PRECOPY && !send_sync(s, err)) {
        return false;
    }
    so->sync_seq = s->sync_seq;
    downtime_mark(m, DT_SEND);
    return true;
}

/* The VM is paused, its CPUs idle: wait for the reply awake. */
#define SWITCHOVER_SPIN_US 20000

static bool send_switchover(struct source_session *s,
                            Postcopy__Peer__Switchover *so, GError **err)
{
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;
    size_t len;

    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER;
    msg.switchover = so;
    len = postcopy__peer__peer_message__get_packed_size(&msg);
    atomic_fetch_add(&s->m->stats.bytes_downtime, len - so->device_state.len);
    if (!channel_send_msg(s->control, &msg, err)) {
        return false;
    }
    /* From here only an explicit refusal proves the VM did not start. */
    s->switchover_sent = true;
    /* The reply is due within milliseconds, in the downtime: stay awake. */
    channel_spin_readable(s->control, SWITCHOVER_SPIN_US);
    reply = expect_msg(s->control,
                       POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY, err);
    if (!reply) {
        return false;
    }
    downtime_mark(s->m, DT_SWITCHOVER);
    downtime_from_reply(s->m, reply->switchover_reply);
    if (!reply->switchover_reply->ok) {
        s->switchover_refused = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination could not resume the VM: %s",
                    reply->switchover_reply->error);
        return false;
    }
    return true;
}

/* Pause, hand the device state over, and learn whether it resumed there. */
static bool switchover(struct source_session *s, GError **err)
{
    struct migration *m = s->m;
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    g_autofree uint8_t *state = NULL;
    size_t len = 0;
    uint64_t t0 = migration_now_us();
    bool ok;

    if (!migration_set_status(m, s->tracking ? MIG_ACTIVE : MIG_SETUP,
                              MIG_DEVICE)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
        return false;
    }
    atomic_store(&m->stats.pause_us, t0);
    if (!vmm_driver_pause(m->vm->driver, &state, &len, err)) {
        return false;
    }
    s->paused = true;
    downtime_mark(m, DT_PAUSE);
    so.device_state.data = state;
    so.device_state.len = len;
    ok = prepare_switchover(s, &so, err) && send_switchover(s, &so, err);
    dirty_set_clear(&so);
    if (!ok) {
        return false;
    }
    atomic_store(&m->stats.resume_us, migration_now_us());
    atomic_store(&m->stats.downtime_us, migration_now_us() - t0);
    /* Never migrate or resume this copy again: the guest lives there. */
    g_mutex_lock(&m->daemon->lock);
    m->vm->moved = true;
    g_mutex_unlock(&m->daemon->lock);
    precopy_stop_tracking(s);
    return true;
}

/* Tell the destination to drop its partial copy as cancelled, not failed. */
static void send_cancel(struct source_session *s)
{
    Postcopy__Peer__Cancel c = POSTCOPY__PEER__CANCEL__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    c.reason = "cancelled by the operator";
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_CANCEL;
    msg.cancel = &c;
    channel_send_msg(s->control, &msg, NULL);
}

/*
 * Before the destination runs the VM, a failure leaves it running here.
 * If the Switchover went out and no answer came back, the VM may already
 * run there: resuming here too would fork it, so the migration pauses.
 */
static void fail_before_switchover(struct source_session *s, GError *err)
{
    if (s->switchover_sent && !s->switchover_refused) {
        migration_fail(s->m, MIG_POSTCOPY_PAUSED,
                       "switchover outcome unknown, the VM stays paused "
                       "here: %s",
                       err ? err->message : "cancelled");
        return;
    }
    g_autoptr(GError) rerr = NULL;
    enum migration_status final =
        migration_status(s->m) == MIG_CANCELLING ? MIG_CANCELLED : MIG_FAILED;

    precopy_stop_tracking(s); /* a resumed VMM must never block on WP */
    if (s->paused && !vmm_driver_resume(s->m->vm->driver, NULL, 0, &rerr)) {
        g_warning("migration %s: could not resume the source VM: %s", s->m->id,
                  rerr->message);
    }
    migration_fail(s->m, final, "%s", err ? err->message : "cancelled");
}

/*
 * Postcopy, until the destination's Complete: true.  False when the
 * connection failed (the migration is postcopy-paused).  The control
 * channel is read with a short timeout so that a data channel that died
 * while control stays silent is noticed.
 */
static bool wait_complete(struct source_session *s)
{
    channel_set_timeout(s->control, CONTROL_POLL_MS, NULL);
    for (;;) {
        g_autoptr(GError) err = NULL;
        g_autoptr(PeerMessage) done = expect_msg(
            s->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_COMPLETE, &err);
        uint64_t lost = atomic_load(&s->data_lost_us);

        if (done) {
            completion_stats_take(s->m, done->complete);
            migration_set_status(s->m, MIG_POSTCOPY_ACTIVE, MIG_COMPLETED);
            return true;
        }
        if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
            migration_fail(s->m, MIG_POSTCOPY_PAUSED, "postcopy: %s",
                           err->message);
            return false;
        }
        if (migration_status(s->m) == MIG_POSTCOPY_PAUSED) {
            return false; /* a data channel failed */
        }
        if (lost && migration_now_us() - lost > DATA_LOST_GRACE_US) {
            migration_fail(s->m, MIG_POSTCOPY_PAUSED,
                           "postcopy: a data channel to %s closed",
                           s->m->peer_uri);
            return false;
        }
    }
}

static void close_channels(struct source_session *s)
{
    struct channel **chs[2 + SOURCE_MAX_STREAMS] = {&s->control, &s->urgent};
    size_t n = 2;

    for (unsigned i = 0; i < s->nbulk; i++) {
        chs[n++] = &s->bulk[i].ch;
    }
    atomic_store(&s->stop, true);
    for (size_t i = 0; i < n; i++) {
        if (*chs[i]) {
            channel_shutdown(*chs[i]);
        }
    }
    if (s->request_thread) {
        g_thread_join(s->request_thread);
        s->request_thread = NULL;
    }
    for (unsigned i = 0; i < s->nbulk; i++) {
        if (s->bulk[i].thread) {
            g_thread_join(s->bulk[i].thread);
            s->bulk[i].thread = NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (*chs[i]) {
            channel_close(*chs[i]);
            *chs[i] = NULL;
        }
    }
}

void source_senders_set_phase(struct source_session *s, _Atomic uint64_t *bytes)
{
    for (unsigned i = 0; i < s->nbulk; i++) {
        page_sender_set_phase(&s->bulk[i].sender, bytes);
    }
}

static void init_streams(struct source_session *s)
{
    struct page_counters c;

    page_counters_for(s->m, &c);
    s->nbulk = CLAMP(s->m->params.streams, 1, SOURCE_MAX_STREAMS);
    g_mutex_init(&s->stream_lock);
    for (unsigned i = 0; i < s->nbulk; i++) {
        s->bulk[i].s = s;
        s->bulk[i].idx = i;
        page_sender_init(&s->bulk[i].sender, s->m->vm->info.pid, &c);
    }
}

static void missing_run(void *opaque, uint32_t region, uint64_t first,
                        uint64_t n)
{
    struct source_session *s = opaque;

    for (uint64_t p = first; p < first + n; p++) {
        s->pending[region][p / BITS_PER_LONG] |= 1UL << (p % BITS_PER_LONG);
    }
}

/* Reconnect a paused migration: what the destination lacks becomes pending. */
static bool resume_connect(struct source_session *s, GError **err)
{
    g_autoptr(PeerMessage) rr = NULL;
    uint64_t pages;

    s->control = open_channel(s, s->m->peer_uri, CHANNEL_CONTROL, 0, true, err);
    if (!s->control) {
        return false;
    }
    rr = expect_msg(s->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_RESUME_REPLY,
                    err);
    if (!rr) {
        return false;
    }
    if (rr->resume_reply->ok && rr->resume_reply->completed) {
        s->peer_completed = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "the destination completed the migration already");
        return false;
    }
    if (!rr->resume_reply->ok || !rr->resume_reply->missing) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused to resume: %s",
                    rr->resume_reply->error);
        return false;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        size_t longs =
            (region_pages(&s->regions->regions[i]) + BITS_PER_LONG - 1) /
            BITS_PER_LONG;

        g_free(s->pending[i]);
        s->pending[i] = g_new0(unsigned long, longs);
    }
    if (!dirty_set_decode(rr->resume_reply->missing, s->regions, missing_run, s,
                          &pages, err)) {
        return false;
    }
    if (!open_data_channels(s, true, err)) {
        return false;
    }
    s->resend_missing = true;
    g_message("migration %s: reconnected to %s, %" G_GUINT64_FORMAT
              " page(s) still missing there",
              s->m->id, s->m->peer_uri, pages);
    return true;
}

/*
 * Paused in postcopy: try again and again, backing off up to
 * RECONNECT_MAX_MS; `recover` cuts the wait short.  The VM is never given
 * up on: only the daemon stopping ends this.
 */
static bool reconnect(struct source_session *s)
{
    unsigned delay_ms = RECONNECT_MIN_MS;

    while (!s->m->daemon->stopping) {
        g_autoptr(GError) err = NULL;
        int64_t until = g_get_monotonic_time() + delay_ms * 1000LL;

        g_mutex_lock(&s->m->lock);
        while (!atomic_load(&s->recover_now) &&
               g_cond_wait_until(&s->m->cond, &s->m->lock, until)) {
        }
        g_mutex_unlock(&s->m->lock);
        atomic_store(&s->recover_now, false);
        atomic_store(&s->stop, false);
        atomic_store(&s->data_lost_us, 0);
        if (resume_connect(s, &err)) {
            migration_clear_error(s->m);
            return migration_set_status(s->m, MIG_POSTCOPY_PAUSED,
                                        MIG_POSTCOPY_ACTIVE);
        }
        close_channels(s);
        if (s->peer_completed) {
            /* Its Complete died with the old connection. */
            migration_clear_error(s->m);
            migration_set_status(s->m, MIG_POSTCOPY_PAUSED, MIG_COMPLETED);
            session_file_remove(s->m->daemon->cfg->state_dir, s->m->id,
                                ROLE_SOURCE);
            return false;
        }
        g_debug("migration %s: reconnect: %s", s->m->id, err->message);
        delay_ms = MIN(delay_ms * 2, RECONNECT_MAX_MS);
    }
    return false;
}

bool source_recover(struct migration *m, GError **err)
{
    struct source_session *s = m->role_state;

    if (m->role != ROLE_SOURCE || migration_status(m) != MIG_POSTCOPY_PAUSED) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "recover needs a paused postcopy migration on its "
                    "source; this one is %s",
                    migration_status_name(migration_status(m)));
        return false;
    }
    g_mutex_lock(&m->lock);
    atomic_store(&s->recover_now, true);
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
    return true;
}

/* Serve the destination until it has every page, reconnecting as needed. */
static void postcopy_loop(struct source_session *s)
{
    struct migration *m = s->m;

    for (;;) {
        bool done;

        /* Precopy mode has nothing left to stream, unless resuming. */
        s->streaming = (m->params.mode != MODE_PRECOPY || s->resend_missing) &&
                       m->params.postcopy_bulk;
        if (s->streaming) {
            postcopy_stream_init(&s->stream, s->regions,
                                 s->resend_missing ? s->pending : NULL);
        }
        s->request_thread = g_thread_new("src-requests", request_thread, s);
        for (unsigned i = 0; s->streaming && i < s->nbulk; i++) {
            s->bulk[i].thread =
                g_thread_new("src-bulk", bulk_thread, &s->bulk[i]);
        }
        done = wait_complete(s);
        close_channels(s);
        if (s->streaming) {
            atomic_fetch_add(&m->stats.pages_prefetched, s->stream.prefetched);
            postcopy_stream_destroy(&s->stream);
            s->streaming = false;
        }
        if (done) {
            session_file_remove(m->daemon->cfg->state_dir, m->id, ROLE_SOURCE);
            return;
        }
        if (!reconnect(s)) {
            return;
        }
    }
}

/* From the switchover on, a restarted daemon must be able to carry on. */
static void remember_session(struct source_session *s)
{
    g_autoptr(GError) err = NULL;
    struct session_file f = {.role = ROLE_SOURCE, .mode = s->m->params.mode};

    g_strlcpy(f.id, s->m->id, sizeof(f.id));
    g_strlcpy(f.vm_name, s->m->vm_name, sizeof(f.vm_name));
    g_strlcpy(f.peer_uri, s->m->peer_uri, sizeof(f.peer_uri));
    if (!session_file_write(s->m->daemon->cfg->state_dir, &f, &err)) {
        g_warning("migration %s: a restart could not carry it on: %s", s->m->id,
                  err->message);
    }
}

static void free_session(struct source_session *s)
{
    close_channels(s);
    precopy_stop_tracking(s);
    for (unsigned i = 0; i < s->nbulk; i++) {
        page_sender_destroy(&s->bulk[i].sender);
    }
    for (size_t i = 0; i < REGION_MAX; i++) {
        g_free(s->pending[i]);
        s->pending[i] = NULL;
        g_clear_pointer(&s->prestale[i], g_free);
    }
}

/*
 * A VMM that exits once migrated (QEMU, as its own migration leaves the
 * source) is told to now that the destination owns every page; free_session
 * already gave its RAM back to the VMM (write-protection off).
 */
static void quit_if_moved(struct migration *m)
{
    g_autoptr(GError) err = NULL;

    if (migration_status(m) != MIG_COMPLETED ||
        !m->vm->driver->quit_when_moved) {
        return;
    }
    if (!vmm_driver_quit(m->vm->driver, &err)) {
        g_warning("migration %s: the source VMM did not quit: %s", m->id,
                  err->message);
    }
}

static gpointer restored_thread(gpointer opaque)
{
    struct source_session *s = opaque;

    if (reconnect(s)) {
        postcopy_loop(s);
    }
    free_session(s);
    quit_if_moved(s->m);
    daemon_release_vm(s->m->daemon, s->m->vm);
    return NULL;
}

void source_restore(struct daemon *d, struct vm_entry *vm,
                    const struct session_file *f)
{
    g_autoptr(GError) err = NULL;
    struct source_session *s = g_new0(struct source_session, 1);
    struct migration *m = migration_new(d, ROLE_SOURCE, vm);

    migration_set_id(m, f->id_bytes);
    m->params.mode = m->mode = f->mode;
    m->peer_uri = g_strdup(f->peer_uri);
    s->m = m;
    s->regions = &vm->info.regions;
    init_streams(s);
    m->role_state = s;
    g_mutex_lock(&d->lock);
    vm->moved = true; /* it runs at the destination */
    g_mutex_unlock(&d->lock);
    daemon_add_migration(d, m);
    for (size_t i = 0; i < s->regions->n; i++) {
        if (!region_map_alias(&s->regions->regions[i], &err)) {
            migration_fail(m, MIG_FAILED, "carrying on after a restart: %s",
                           err->message);
            daemon_release_vm(d, vm);
            return;
        }
        atomic_fetch_add(&m->stats.pages_total,
                         region_pages(&s->regions->regions[i]));
    }
    migration_set_status(m, MIG_NONE, MIG_POSTCOPY_PAUSED);
    g_message("migration %s (%s): carried on after a restart, reconnecting "
              "to %s",
              m->id, m->vm_name, m->peer_uri);
    m->thread = g_thread_new("source", restored_thread, s);
}

static gpointer source_thread(gpointer opaque)
{
    struct source_session *s = opaque;
    struct migration *m = s->m;
    g_autoptr(GError) err = NULL;

    if (!setup(s, &err)) {
        fail_before_switchover(s, err);
        goto out;
    }
    atomic_store(&m->stats.setup_done_us, migration_now_us());
    if (m->params.mode != MODE_POSTCOPY &&
        (!migration_set_status(m, MIG_SETUP, MIG_ACTIVE) ||
         !precopy_start_tracking(s, &err) || !precopy_rounds(s, &err))) {
        if (!err) {
            g_set_error(&err, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
        }
        fail_before_switchover(s, err);
        goto out;
    }
    if (!drain_bulk(s, &err) || !switchover(s, &err)) {
        fail_before_switchover(s, err);
        goto out;
    }
    migration_set_status(m, MIG_DEVICE, MIG_POSTCOPY_ACTIVE);
    s->resend_missing = m->params.mode == MODE_HYBRID;
    remember_session(s);
    postcopy_loop(s);
out:
    free_session(s);
    quit_if_moved(m);
    daemon_release_vm(m->daemon, m->vm);
    return NULL;
}

bool source_start(struct migration *m, const char *uri, GError **err)
{
    struct source_session *s = g_new0(struct source_session, 1);
    uint8_t id[16];

    for (size_t i = 0; i < sizeof(id); i += 4) {
        uint32_t r = g_random_int();

        memcpy(id + i, &r, 4);
    }
    migration_set_id(m, id);
    m->peer_uri = g_strdup(uri);
    s->m = m;
    s->regions = &m->vm->info.regions;
    init_streams(s);
    m->role_state = s;
    migration_set_status(m, MIG_NONE, MIG_SETUP);
    m->thread = g_thread_new("source", source_thread, s);
    return true;
}

bool source_cancel(struct migration *m, GError **err)
{
    struct source_session *s = m->role_state;

    if (!migration_set_status(m, MIG_SETUP, MIG_CANCELLING) &&
        !migration_set_status(m, MIG_ACTIVE, MIG_CANCELLING)) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "migration is %s: the VM runs on the destination, "
                    "cancel is no longer possible",
                    migration_status_name(migration_status(m)));
        return false;
    }
    if (s->control) {
        send_cancel(s); /* small: does not block the main loop */
        channel_shutdown(s->control);
    }
    return true;
}
