/*
 * serve.c - the source's postcopy service: the request thread answers the
 * destination's page requests on the urgent channel, ahead of everything;
 * each bulk thread streams what the destination still lacks.
 *
 * Contract: the request thread alone sends on the urgent channel (no send
 * lock); it runs at the fault path's priority within its budget.  A data
 * channel that closes is left to the control channel to judge (the
 * destination closes them right after its Complete); a VMM whose memory
 * is gone fails it (on both sides); any other failure pauses it.
 */
#include "source.h"

#include <gio/gio.h>
#include <sched.h>

#include "daemon.h"
#include "fault_priority.h"
#include "frame.h"
#include "session_file.h"

#define STREAM_RUN_PAGES 256 /* a 1 MiB run of 4 KiB pages per frame */

void source_page_counters(struct migration *m, struct page_counters *c)
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

/* Until @ch has something to read: 1; urgent readable first: 0; error -1. */
static int wait_either(struct channel *ch, struct channel *urgent,
                       int timeout_ms)
{
    struct channel *const chs[2] = {ch, urgent};
    int r = channel_wait_any(chs, 2, timeout_ms);

    if (r < 0) {
        return -1;
    }
    /* ch's: the reply, an error or the timeout, for it to report. */
    return r == 1 ? 0 : 1;
}

bool source_serve_until(struct source_session *s, struct channel *ch,
                        GError **err)
{
    struct frame_region_limits limits[REGION_MAX];
    int64_t deadline =
        g_get_monotonic_time() + (int64_t)SOURCE_SERVE_UNTIL_MS * 1000;
    struct page_counters c;
    struct page_sender ps;
    bool ok = true;

    source_page_counters(s->m, &c);
    c.phase_bytes = &s->m->stats.bytes_downtime;
    page_sender_init(&ps, s->m->vm->info.pid, &c);
    limits_from(s->regions, limits);
    for (;;) {
        int64_t left = deadline - g_get_monotonic_time();
        struct frame_hdr req;
        int r = wait_either(ch, s->urgent, MAX(left / 1000, 0));

        if (r != 0) {
            break; /* ch's reader reports errors and timeouts */
        }
        if (!channel_recv_hdr(s->urgent, &req, err) ||
            !serve_request(s, &ps, limits, &req, err)) {
            ok = false;
            break;
        }
        atomic_fetch_add(&s->m->stats.postcopy_requests, 1);
    }
    page_sender_destroy(&ps);
    return ok;
}

/*
 * The destination closes its data channels right after its Complete, which
 * the session thread may not have read yet: a closed data channel is left
 * to the control channel to judge (Complete, or an error there too).  Any
 * other failure stops the migration here.
 */
/*
 * The VMM's memory is gone (an anonymous VMM exited): no page the
 * destination lacks can ever be sent, so pausing and reconnecting would
 * go on for ever.  The migration fails here, and the destination is told
 * why on control (it watches it in postcopy), so it fails too.
 */
static void memory_gone(struct source_session *s, const GError *err)
{
    Postcopy__Peer__Error e = POSTCOPY__PEER__ERROR__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autofree char *why = g_strdup_printf(
        "%s: the pages the destination lacks cannot be sent", err->message);

    migration_fail(s->m, MIG_FAILED, "%s", why);
    session_file_remove(s->m->engine.state_dir, s->m->id, ROLE_SOURCE);
    e.code = POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VMM;
    e.message = why;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR;
    msg.error = &e;
    channel_send_msg(s->control, &msg, NULL);
    channel_shutdown(s->control);
}

static void data_channel_failed(struct source_session *s, const GError *err)
{
    if (atomic_load(&s->stop)) {
        return;
    }
    if (g_error_matches(err, PAGE_SENDER_ERROR, PAGE_SENDER_ERROR_GONE)) {
        memory_gone(s, err);
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

/* CPUs this thread may run on. */
static unsigned usable_cpus(void)
{
    cpu_set_t set;

    return sched_getaffinity(0, sizeof(set), &set) ? 1 : CPU_COUNT(&set);
}

/*
 * How long to poll for the next request.  Polling saves a wake-up per
 * fault (p50 63-79 us polling, 111-159 us not, on the bench's 2-CPU
 * machine) but holds a CPU; where the bulk stream needs that CPU, it costs
 * more than it saves: 4 GiB shmem postcopy took 6.9-8.4 s polling and
 * 3.6-4.5 s not (source CPU 6.2-7.5 s vs 2.1-2.5 s; the faster stream
 * leaves the guest a third of the faults).  So poll while no bulk thread
 * streams (the idle link: every page comes by fault), or where there is
 * a CPU for each bulk thread and one more for this one.
 */
static unsigned poll_us(const struct source_session *s, unsigned cpus)
{
    unsigned streaming = atomic_load(&s->bulk_running);

    if (streaming && cpus <= streaming + 1) {
        return 0;
    }
    return s->m->engine.busy_poll_us;
}

/* Urgent requests never wait behind bulk data: their own thread. */
gpointer source_request_thread(gpointer opaque)
{
    struct source_session *s = opaque;
    struct frame_region_limits limits[REGION_MAX];
    struct page_counters c;
    struct page_sender ps;
    int prio = s->m->engine.fault_priority;
    const cpu_set_t *pin = engine_fault_cpus(&s->m->engine);
    unsigned cpus = usable_cpus(); /* the host's: read before binding */
    struct fault_budget budget;

    fault_budget_init(&budget,
                      fault_path_enter(prio, pin, "src-requests") ? prio : 0);
    source_page_counters(s->m, &c);
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
         * one nobody wants, unless the bulk stream does (poll_us()).
         * (The destination does not poll: its CPUs run the guest.)
         */
        /*
         * Bound to the fault path's CPUs, it may share one with other
         * fault-path threads at its priority (a daemon that is source and
         * destination at once, both daemons on one host), which SCHED_FIFO
         * does not let preempt it: the spin yields to them.
         */
        fault_budget_check(&budget);
        if (!channel_spin_readable(s->urgent, poll_us(s, cpus), pin)) {
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

/* The postcopy stream waits for the bandwidth cap until it stops. */
static bool stream_go_on(void *opaque)
{
    struct source_session *s = opaque;

    return !atomic_load(&s->stop);
}

gpointer source_bulk_thread(gpointer opaque)
{
    struct bulk_stream *b = opaque;
    struct source_session *s = b->s;
    g_autoptr(GError) err = NULL;
    uint32_t region;
    uint64_t first, n;

    page_sender_set_phase(&b->sender, &s->m->stats.bytes_postcopy);
    while (!atomic_load(&s->stop) && stream_next(s, &region, &first, &n)) {
        const struct region *r = &s->regions->regions[region];

        live_params_pace(&s->m->live, n * r->page_size, stream_go_on, s);
        if (!page_sender_queue(&b->sender, b->ch, r, first, n, FRAME_F_FINAL, 0,
                               &err)) {
            goto fail;
        }
    }
    if (atomic_load(&s->stop)) {
        page_sender_discard(&b->sender);
    } else if (!page_sender_flush(&b->sender, &err)) {
        goto fail;
    }
    atomic_fetch_sub(&s->bulk_running, 1);
    return NULL;
fail:
    atomic_fetch_sub(&s->bulk_running, 1);
    data_channel_failed(s, err);
    return NULL;
}
