/*
 * switchover.c - the source's switchover: the Barrier that drains the
 * bulk channels while the VM still runs (hybrid: with most of the dirty
 * set), then pause, the last dirty pages or set, the device state, and
 * the destination's answer.  Also what a failure before it means.
 *
 * Contract: once the Switchover is sent, only an explicit refusal proves
 * the VM did not start at the destination: a lost answer never resumes
 * the VM here (the migration pauses instead, and the reconnect learns the
 * outcome: source_switchover_lost, postcopy.c).  The downtime is measured
 * phase by phase (downtime_part_us).
 */
#include "source.h"

#include <gio/gio.h>

#include "daemon.h"
#include "dirty_set.h"
#include "fault_priority.h"
#include "frame.h"

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

/* Hybrid: the dirty set since the Barrier, in @so's dirty fields. */
static void encode_last_dirty(struct source_session *s,
                              Postcopy__Peer__Switchover *so)
{
    unsigned long **delta = prestale_to_delta(s);

    dirty_set_encode(s->regions, delta ? delta : s->pending, so);
    atomic_store(&s->m->stats.stale_pages, count_pending(s));
}

/*
 * Before the pause: let the bulk data in flight (socket buffers on both
 * sides, several MiB) reach the destination's memory, and the destination
 * finish setting up (and allocating), while the VM still runs.  The
 * Switchover's own barrier then has almost nothing to wait for; pages
 * written meanwhile are in the final collect.
 */
bool source_drain_bulk(struct source_session *s, GError **err)
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
    reply = source_expect_msg(
        s->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER_REPLY, err);
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
 * Hybrid, where the final collect walks the whole guest (async-wp: 1.5 /
 * 5.8 / 13 ms at 1 / 4 / 8 GiB on the bench's machine, most of the
 * downtime): send the Switchover without it and the dirty set after the
 * answer.  Safe because nothing at the destination is installed before
 * the resume: until the set comes, a fault there asks for the page, and
 * what this paused VM sends is final.  The cost moves to the guest's
 * first milliseconds at the destination, its faults served by the
 * network instead of its local copies.  Not with a READ link (its
 * reader plans from the page states), nor with sync-wp, whose final
 * collect reads a bitmap (0.02-0.2 ms).
 */
static bool defer_final_dirty(const struct source_session *s)
{
    return s->m->params.mode == MODE_HYBRID && !s->rlink &&
           dirty_tracker_final_walks_guest(&s->dt);
}

/*
 * With the VMM paused: the last writes, then what travels during the
 * downtime (precopy: those pages; hybrid: only the dirty set, or nothing
 * when it follows the answer).
 */
static bool prepare_switchover(struct source_session *s,
                               Postcopy__Peer__Switchover *so, GError **err)
{
    struct migration *m = s->m;

    if (!s->tracking) {
        return true;
    }
    s->final_deferred = defer_final_dirty(s);
    if (s->final_deferred) {
        so->dirty_follows = true;
        so->sync_seq = s->sync_seq;
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
        encode_last_dirty(s, so);
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
                            Postcopy__Peer__Switchover *so, bool *rt,
                            GError **err)
{
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;
    size_t len;
    bool spun;

    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER;
    msg.switchover = so;
    len = postcopy__peer__peer_message__get_packed_size(&msg);
    atomic_fetch_add(&s->m->stats.bytes_downtime, len - so->device_state.len);
    if (!channel_send_msg(s->control, &msg, err)) {
        return false;
    }
    /* From here only an explicit refusal proves the VM did not start. */
    s->switchover_sent = true;
    /*
     * The reply is due within milliseconds, in the downtime.  At real-time
     * priority wait blocked: its arrival preempts whatever runs here.  A
     * spinner at normal priority, yielding, waited behind busy CPUs (other
     * VMs; on the bench's shared CPUs the destination's resumed guest):
     * the Switchover to its answer less the resume 0.33-3.5 ms, median
     * 0.90, against 0.40-0.64 ms, median 0.56, blocked at real time (five
     * alternated runs each, 4 GiB sync-wp).  A real-time spinner is worse
     * still: it kept ksoftirqd, which may hold the reply's packet on this
     * CPU, off until the 20 ms spin ran out.  Without real time (precopy
     * mode, no privilege) spin, yielding: that saves a wake-up.
     */
    spun = !*rt && channel_spin_readable(s->control, SWITCHOVER_SPIN_US, true);
    if (!spun && !source_serve_until(s, s->control, err)) {
        return false;
    }
    reply = source_expect_msg(
        s->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY, err);
    if (!reply) {
        return false;
    }
    downtime_mark(s->m, DT_SWITCHOVER);
    /* What follows (the tracker's teardown) is no longer the downtime. */
    if (*rt) {
        fault_priority_leave();
        *rt = false;
    }
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

static bool pause_and_switch(struct source_session *s, bool *rt, GError **err)
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
    m->vm->driver->stopped_us = 0;
    if (!vmm_driver_pause(m->vm->driver, &state, &len, err)) {
        return false;
    }
    s->paused = true;
    /* A VMM that ran on while it set its migration up: the downtime
     * starts when it stopped. */
    if (m->vm->driver->stopped_us > (int64_t)t0) {
        t0 = m->vm->driver->stopped_us;
        atomic_store(&m->stats.pause_us, t0);
    }
    downtime_mark(m, DT_PAUSE);
    so.device_state.data = state;
    so.device_state.len = len;
    ok = prepare_switchover(s, &so, err) && send_switchover(s, &so, rt, err);
    dirty_set_clear(&so);
    if (!ok) {
        return false;
    }
    atomic_store(&m->stats.resume_us, migration_now_us());
    atomic_store(&m->stats.downtime_us, migration_now_us() - t0);
    /*
     * Never migrate or resume this copy again: the guest lives there.  Its
     * write-protection stays until the session ends (free_session()):
     * this VM never runs again unless the switchover failed, and every
     * such path stops tracking before it resumes it.
     */
    g_mutex_lock(&m->daemon->lock);
    m->vm->moved = true;
    g_mutex_unlock(&m->daemon->lock);
    return true;
}

/*
 * Pause, hand the device state over, and learn whether it resumed there;
 * at real-time priority until its answer is read, so that nothing else
 * on this host's CPUs (other VMs, other migrations' streams) lengthens
 * the downtime.  Not in precopy mode: its downtime sends the last dirty
 * pages from this thread, for as long as the wire takes, and a real-time
 * sender would hold its CPU.
 */
bool source_switchover(struct source_session *s, GError **err)
{
    bool rt, ok;

    /* Failing costs nothing yet: the VM runs on here (vmm_driver_ping()). */
    if (!vmm_driver_ping(s->m->vm->driver, err)) {
        g_prefix_error(err, "the VMM did not answer before the pause: ");
        return false;
    }
    rt = s->m->params.mode != MODE_PRECOPY &&
         fault_priority_enter(s->m->engine.fault_priority, "src-downtime");
    ok = pause_and_switch(s, &rt, err);

    if (rt) {
        fault_priority_leave();
    }
    return ok;
}

bool source_send_final_dirty(struct source_session *s, GError **err)
{
    Postcopy__Peer__FinalDirty fd = POSTCOPY__PEER__FINAL_DIRTY__INIT;
    Postcopy__Peer__Switchover stale = POSTCOPY__PEER__SWITCHOVER__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    /*
     * Every fault at the destination goes over the network until this is
     * marked there: at the fault path's priority, as the downtime was.  At
     * normal priority it took 180-250 ms at 1 GiB on the bench's machine
     * (two CPUs for both hosts), against a scan of 1.5 ms.
     */
    bool rt = fault_priority_enter(s->m->engine.fault_priority, "src-final");
    bool ok = precopy_final_collect(s, err);

    if (ok) {
        encode_last_dirty(s, &stale);
        fd.stale = &stale;
        msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_FINAL_DIRTY;
        msg.final_dirty = &fd;
        ok = channel_send_msg(s->control, &msg, err);
        dirty_set_clear(&stale);
    }
    atomic_store(&s->m->stats.final_dirty_us,
                 migration_now_us() - atomic_load(&s->m->stats.resume_us));
    if (rt) {
        fault_priority_leave();
    }
    /* Unsent, the destination fetches every copy it holds again. */
    return ok;
}

/* Tell the destination to drop its partial copy as cancelled, not failed. */
void source_send_cancel(struct source_session *s)
{
    Postcopy__Peer__Cancel c = POSTCOPY__PEER__CANCEL__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    c.reason = "cancelled by the operator";
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_CANCEL;
    msg.cancel = &c;
    channel_send_msg(s->control, &msg, NULL);
}

/*
 * The Switchover went out and its answer was lost (the link failed, the
 * peer died): the VM may already run there, so resuming it here could fork
 * it.  The migration pauses like any postcopy failure: never migrate or
 * resume this copy on a guess (moved), stop tracking (a VM resumed later
 * must not block on write-protection), and the reconnect asks the
 * destination what happened (source_reconnect).  False when the answer
 * was not lost: the caller fails the migration as before the switchover.
 */
bool source_switchover_lost(struct source_session *s, GError *err)
{
    if (!s->switchover_sent || s->switchover_refused) {
        return false;
    }
    atomic_store(&s->outcome_unknown, true);
    g_mutex_lock(&s->m->daemon->lock);
    s->m->vm->moved = true;
    g_mutex_unlock(&s->m->daemon->lock);
    /* No last dirty set then: a destination that runs it distrusts its
     * copies at the reconnect (page_state_distrust_copies()). */
    s->final_deferred = false;
    precopy_stop_tracking(s);
    migration_fail(s->m, MIG_POSTCOPY_PAUSED,
                   "the switchover's answer was lost, the VM stays paused here "
                   "until the destination says whether it resumed it: %s",
                   err ? err->message : "cancelled");
    source_close_channels(s);
    return true;
}

/* Before the destination runs the VM, a failure leaves it running here. */
void source_fail_before_switchover(struct source_session *s, GError *err)
{
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
