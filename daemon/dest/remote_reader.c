/*
 * remote_reader.c - the destination reading the source's memory itself,
 * when the transport can (remote_read.h; rdma): the READ link's set-up,
 * a precopy round's declared pages, and in postcopy the reader thread,
 * which reads what a vCPU faulted on first and what is still missing
 * after, a bounded number of reads out at once.
 *
 * Contract: only readable regions (shmem, hugetlbfs, in the source's
 * table) are read; anonymous ones keep the frame path.  A read holds its
 * pages WRITING (read_plan.h), so the page state table's rules hold as for
 * a receiver: a fault's page goes REQUESTED -> WRITING -> INSTALLING
 * (finish_write: a vCPU waits) -> UFFDIO_CONTINUE -> INSTALLED.  A link
 * that fails is a link loss: before the resume the migration fails, after
 * it pauses.  The link is not set up again: after any pause the rest of
 * the migration moves in frames (the source, reconnecting, streams every
 * missing page), so requests left REQUESTED are sent again on the urgent
 * channel by the fault thread, as over TCP.
 */
#include "dest_session.h"

#include <gio/gio.h>

#include "bitmap.h"
#include "daemon.h"
#include "fault_priority.h"
#include "read_plan.h"

/* Bytes per read request at most: a 2 MiB huge page, or runs of pages. */
#define READ_MAX_BYTES (2u << 20)
/* The reader looks at the session's stop and pause flags this often. */
#define READ_WAIT_MS 20
/* A precopy round's wait for completions, between checks of `stop`. */
#define ROUND_POLL_MS 200
#define DONE_BATCH    64

static uint64_t max_pages(const struct region *r)
{
    return MAX(1, MIN(READ_PLAN_MAX_PAGES, READ_MAX_BYTES / r->page_size));
}

/* ---- set-up ---- */

bool dest_remote_listen(struct dest_session *s, uint32_t *port, GError **err)
{
    const struct transport *t = s->m->daemon->transport;

    *port = 0;
    if (!transport_has_remote_read(t)) {
        return true;
    }
    s->read_listener = remote_listen(t, NULL, err);
    if (!s->read_listener) {
        return false;
    }
    *port = remote_listener_port(s->read_listener);
    return true;
}

static void layout_of(const struct dest_session *s, struct remote_region *rr)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];

        rr[i] = (struct remote_region){
            .index = r->id,
            .size = r->size,
            .page_size = r->page_size,
            .readable = r->kind != BACKING_ANON && r->alias,
        };
    }
}

static bool take_table(struct dest_session *s, GError **err)
{
    struct remote_region layout[REGION_MAX];
    g_autoptr(PeerMessage) msg = channel_recv_msg(s->control, err);
    const ProtobufCBinaryData *tb;

    if (!msg) {
        return false;
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_READABLE_MEMORY) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "expected the readable memory table, got %s",
                    peer_message_name(msg));
        return false;
    }
    tb = &msg->readable_memory->table;
    s->read_bulk = !msg->readable_memory->no_bulk;
    layout_of(s, layout);
    if (!remote_take_table(s->rlink, tb->data, tb->len, layout, s->regions->n,
                           err)) {
        return false;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        struct region *r = &s->regions->regions[i];

        s->readable[i] = remote_readable(s->rlink, r->id);
        if (s->readable[i] &&
            !remote_target(s->rlink, r->id, r->alias, r->size, err)) {
            return false;
        }
    }
    return true;
}

static bool reply_table(struct dest_session *s, const GError *why, GError **err)
{
    Postcopy__Peer__ReadableMemoryReply rr =
        POSTCOPY__PEER__READABLE_MEMORY_REPLY__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    rr.ok = why == NULL;
    rr.error = (char *)(why ? why->message : "");
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_READABLE_MEMORY_REPLY;
    msg.readable_memory_reply = &rr;
    return channel_send_msg(s->control, &msg, err);
}

bool dest_remote_setup(struct dest_session *s, GError **err)
{
    g_autoptr(GError) why = NULL;
    unsigned ms = s->m->daemon->topts.connect_timeout_ms;
    unsigned n = 0;

    if (!s->read_listener) {
        return true;
    }
    s->rlink = remote_accept(s->read_listener, ms, &why);
    g_clear_pointer(&s->read_listener, remote_listener_close);
    if (!s->rlink) {
        g_propagate_prefixed_error(err, g_steal_pointer(&why), "READ link: ");
        return false;
    }
    if (!take_table(s, &why)) {
        reply_table(s, why, NULL);
        g_propagate_prefixed_error(err, g_steal_pointer(&why), "READ link: ");
        return false;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        n += s->readable[i];
    }
    g_message("migration %s: READ link up, %u of %zu region(s) read from "
              "the source's memory, the others in frames",
              s->m->id, n, s->regions->n);
    return reply_table(s, NULL, err);
}

/* ---- reads in flight ---- */

static void install_one(void *opaque, uint32_t region, uint64_t page)
{
    struct dest_session *s = opaque;

    dest_install_faulted(s, &s->regions->regions[region], page);
}

/* A read ended: its pages leave WRITING; after the resume, installed. */
static void finished(struct dest_session *s, const struct remote_done *d)
{
    struct read_outcome o = {0};
    struct read_req rq;

    read_cookie_parse(d->cookie, &rq);
    read_plan_finish(s->pst, &rq, d->ok, install_one, s, &o);
    if (o.removed) {
        dest_removed_held(s, &s->regions->regions[rq.region], rq.first,
                          rq.npages);
    }
    if (!d->ok) {
        return;
    }
    atomic_fetch_add(&s->m->stats.pages_received, rq.npages);
    atomic_fetch_add(&s->m->stats.pages_read, rq.npages);
    if (rq.fault) {
        atomic_fetch_add(&s->m->stats.fault_reads, 1);
    }
    if (atomic_load(&s->running) && o.current) {
        dest_install_current(s, &s->regions->regions[rq.region], rq.first,
                             rq.npages);
    }
}

static bool queue_run(struct dest_session *s, const struct region *r,
                      const struct page_run *run, bool fault, GError **err)
{
    struct read_req rq = {.region = r->id,
                          .first = run->first,
                          .npages = run->npages,
                          .fault = fault};

    if (remote_read_add(s->rlink, r->id, run->first * r->page_size,
                        run->npages * r->page_size, read_cookie(&rq), fault,
                        err)) {
        return true;
    }
    read_plan_finish(s->pst, &rq, false, install_one, s,
                     &(struct read_outcome){0});
    return false;
}

/* Finish @n completions; false if one of them failed. */
static bool finish_all(struct dest_session *s, const struct remote_done *done,
                       int n)
{
    bool ok = true;

    for (int i = 0; i < n; i++) {
        finished(s, &done[i]);
        ok &= done[i].ok;
    }
    return ok;
}

/* Wait for and finish what completed; false with @err: the link failed. */
static bool reap(struct dest_session *s, int timeout_ms, GError **err)
{
    struct remote_done done[DONE_BATCH];
    int n = remote_read_poll(s->rlink, done, DONE_BATCH, timeout_ms, err);

    if (n < 0 || finish_all(s, done, n)) {
        return n >= 0;
    }
    /* The link says why once the completions before it are handed back. */
    while ((n = remote_read_poll(s->rlink, done, DONE_BATCH, 0, err)) > 0) {
        finish_all(s, done, n);
    }
    if (n == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "a READ failed");
    }
    return false;
}

/* The link is gone: every read out gives its pages back (read_plan.h). */
static void reset_link(struct dest_session *s)
{
    struct remote_done d;

    /*
     * A READ the device still completes after this lands bytes the paused
     * source cannot have changed, in pages no one holds; before the
     * resume the partial copy is discarded anyway.
     */
    while (remote_read_reset(s->rlink, &d)) {
        finished(s, &d);
    }
}

/* ---- precopy: a round's declared pages ---- */

static bool read_region(struct dest_session *s, const struct region *r,
                        const unsigned long *want, GError **err)
{
    unsigned credits = remote_read_credits(s->rlink);
    uint64_t pos = 0, end = region_pages(r);
    struct page_run run;

    for (;;) {
        bool more = true;

        while (remote_read_pending(s->rlink) < credits &&
               (more = read_plan_claim(s->pst, r->id, want, &pos, end,
                                       max_pages(r), &run))) {
            if (!queue_run(s, r, &run, false, err)) {
                return false;
            }
        }
        if (!remote_read_post(s->rlink, err)) {
            return false;
        }
        if (!more && !remote_read_pending(s->rlink)) {
            return true;
        }
        if (atomic_load(&s->stop)) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                        "the migration stopped during a read round");
            return false;
        }
        if (!reap(s, ROUND_POLL_MS, err)) {
            return false;
        }
    }
}

static bool read_declared(struct dest_session *s,
                          const Postcopy__Peer__ReadRound *rr, uint64_t *npages,
                          GError **err)
{
    unsigned long *maps[REGION_MAX] = {0};
    bool ok;

    for (size_t i = 0; i < s->regions->n; i++) {
        maps[i] = g_new0(unsigned long,
                         BITS_TO_LONGS(region_pages(&s->regions->regions[i])));
    }
    ok = rr->pages && read_round_decode(rr->pages, s->regions, s->readable,
                                        maps, npages, err);
    if (!rr->pages) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "a read round without its pages");
    }
    for (size_t i = 0; ok && i < s->regions->n; i++) {
        if (s->readable[i]) {
            ok = read_region(s, &s->regions->regions[i], maps[i], err);
        }
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        g_free(maps[i]);
    }
    return ok;
}

bool dest_remote_round(struct dest_session *s, const PeerMessage *msg,
                       GError **err)
{
    Postcopy__Peer__ReadRoundReply rr = POSTCOPY__PEER__READ_ROUND_REPLY__INIT;
    PeerMessage reply = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    uint64_t n = 0;

    if (!s->rlink) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "a read round, but there is no READ link");
        return false;
    }
    if (!read_declared(s, msg->read_round, &n, err)) {
        reset_link(s);
        g_prefix_error(err, "READ link, round %u: ", msg->read_round->round);
        return false;
    }
    rr.round = msg->read_round->round;
    rr.pages_read = n;
    reply.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_READ_ROUND_REPLY;
    reply.read_round_reply = &rr;
    return channel_send_msg(s->control, &reply, err);
}

/* ---- postcopy: the reader thread ---- */

bool dest_remote_fault(struct dest_session *s, const struct region *r,
                       uint64_t page)
{
    struct fault_page f = {.region = r->id, .page = page};

    if (!atomic_load(&s->reads_on) || !s->readable[r->id]) {
        return false;
    }
    g_mutex_lock(&s->read_lock);
    g_array_append_val(s->read_faults, f);
    g_cond_signal(&s->read_cond);
    g_mutex_unlock(&s->read_lock);
    remote_read_wake(s->rlink);
    return true;
}

/* Faults first: each is one urgent read, ahead of the bulk. */
static bool take_faults(struct dest_session *s, GError **err)
{
    g_autoptr(GArray) faults =
        g_array_new(false, false, sizeof(struct fault_page));

    g_mutex_lock(&s->read_lock);
    g_array_append_vals(faults, s->read_faults->data, s->read_faults->len);
    g_array_set_size(s->read_faults, 0);
    g_mutex_unlock(&s->read_lock);
    for (guint i = 0; i < faults->len; i++) {
        const struct fault_page *f =
            &g_array_index(faults, struct fault_page, i);
        struct page_run run = {.first = f->page, .npages = 1};

        /* REQUESTED by the fault thread; anything else: someone has it. */
        if (page_state_begin_write(s->pst, f->region, f->page) == PAGE_OK &&
            !queue_run(s, &s->regions->regions[f->region], &run, true, err)) {
            return false;
        }
    }
    return true;
}

struct bulk_cursor {
    size_t region;
    uint64_t pos;
};

/* What postcopy still lacks, in runs, while credits are free. */
static bool fill_bulk(struct dest_session *s, struct bulk_cursor *c,
                      GError **err)
{
    unsigned credits = remote_read_credits(s->rlink);

    while (s->read_bulk && c->region < s->regions->n &&
           remote_read_pending(s->rlink) < credits) {
        const struct region *r = &s->regions->regions[c->region];
        struct page_run run;

        if (!s->readable[c->region] ||
            !read_plan_claim(s->pst, r->id, NULL, &c->pos, region_pages(r),
                             max_pages(r), &run)) {
            c->region++;
            c->pos = 0;
            continue;
        }
        if (!queue_run(s, r, &run, false, err)) {
            return false;
        }
    }
    return true;
}

static void wait_for_faults(struct dest_session *s)
{
    g_mutex_lock(&s->read_lock);
    if (!s->read_faults->len) {
        g_cond_wait_until(&s->read_cond, &s->read_lock,
                          g_get_monotonic_time() + READ_WAIT_MS * 1000);
    }
    g_mutex_unlock(&s->read_lock);
}

static bool reader_step(struct dest_session *s, struct bulk_cursor *c,
                        GError **err)
{
    if (!take_faults(s, err) || !fill_bulk(s, c, err) ||
        !remote_read_post(s->rlink, err)) {
        return false;
    }
    if (!remote_read_pending(s->rlink)) {
        wait_for_faults(s);
        return true;
    }
    return reap(s, READ_WAIT_MS, err);
}

static gpointer reader_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct bulk_cursor c = {0};
    g_autoptr(GError) err = NULL;

    /* Started in the downtime's real-time window; it streams, so not. */
    fault_priority_leave();
    while (!atomic_load(&s->stop) && !atomic_load(&s->paused)) {
        if (!reader_step(s, &c, &err)) {
            break;
        }
    }
    /* From now on the fault thread requests in frames. */
    atomic_store(&s->reads_on, false);
    reset_link(s);
    if (err && !atomic_load(&s->stop)) {
        dest_fail(s, "READ link: %s", err->message);
    }
    return NULL;
}

void dest_remote_start(struct dest_session *s)
{
    if (!s->rlink) {
        return;
    }
    atomic_store(&s->reads_on, true);
    s->reader_thread = g_thread_new("dst-reader", reader_thread, s);
}

void dest_remote_join(struct dest_session *s)
{
    atomic_store(&s->reads_on, false);
    if (s->reader_thread) {
        g_thread_join(s->reader_thread);
        s->reader_thread = NULL;
    }
}

void dest_remote_stop(struct dest_session *s)
{
    dest_remote_join(s);
    g_clear_pointer(&s->read_listener, remote_listener_close);
    /* The fault thread is joined: nothing may wake the link any more. */
    g_clear_pointer(&s->rlink, remote_link_close);
}
