/*
 * switchover.c - the destination's part of the switchover: answer the
 * source's Barriers once the bulk data before them is written, then at
 * the Switchover mark the re-dirtied pages STALE and resume the VMM, and
 * mark the last dirty pages when they follow the resume (FinalDirty).
 *
 * Contract: `running` is set just before the VMM resumes, so the first
 * fault finds the new phase; a VMM that refuses to resume leaves the
 * source to resume its own (SwitchoverReply ok = false).  Once the VMM
 * runs, the session is in postcopy even if the reply cannot be sent
 * (dest_switchover false with `running` set): the caller pauses it.  A prealloc still
 * under way is waited for at the Barrier, the last moment a failure costs
 * nothing.
 */
#include "dest_session.h"

#include <gio/gio.h>

#include "daemon.h"
#include "dirty_set.h"
#include "fault_priority.h"
#include "prealloc.h"
#include "session_file.h"

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
    ok = dest_wait_for(s, sync_reached, &w,
                       "waiting for the bulk channel's barrier", err);
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
 * The session file a restarted daemon carries the migration on from, written
 * at the Barrier while the VM still runs at the source; only its rename
 * (commit_session()) is in the downtime: 250-600 us for the whole write
 * there against tens for the rename, measured on this project's machines.
 */
static void prepare_session(struct dest_session *s)
{
    g_autoptr(GError) err = NULL;
    struct session_file f = {.role = ROLE_DESTINATION,
                             .mode = s->m->params.mode};

    g_strlcpy(f.id, s->m->id, sizeof(f.id));
    g_strlcpy(f.vm_name, s->m->vm_name, sizeof(f.vm_name));
    g_strlcpy(f.peer_uri, s->m->peer_uri ? s->m->peer_uri : "",
              sizeof(f.peer_uri));
    g_strlcpy(f.domain, s->m->vm->info.domain, sizeof(f.domain));
    g_strlcpy(f.connect, s->m->vm->info.connect, sizeof(f.connect));
    s->session_prepared =
        session_file_prepare(s->m->engine.state_dir, &f, &err);
    if (!s->session_prepared) {
        g_warning("migration %s: a restart could not carry it on: %s", s->m->id,
                  err->message);
    }
}

/* From here a restarted daemon must be able to carry on. */
static void commit_session(struct dest_session *s)
{
    g_autoptr(GError) err = NULL;

    if (!s->session_prepared) {
        prepare_session(s); /* no Barrier came before the Switchover */
    }
    if (s->session_prepared &&
        !session_file_commit(s->m->engine.state_dir, s->m->id, ROLE_DESTINATION,
                             &err)) {
        g_warning("migration %s: a restart could not carry it on: %s", s->m->id,
                  err->message);
    }
    s->session_prepared = false;
}

static void discard_session(struct dest_session *s)
{
    if (s->session_prepared) {
        session_file_discard(s->m->engine.state_dir, s->m->id,
                             ROLE_DESTINATION);
        s->session_prepared = false;
    }
}

/*
 * A VM whose RAM could not be preallocated would fail in postcopy, where
 * failing costs the guest: refuse it now, while the source still runs it.
 */
bool dest_ram_allocated(struct vm_entry *vm, GError **err)
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
        if (atomic_load(&s->stop) || dest_control_gone(s)) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                        "the source went away while this host was still "
                        "allocating the VM's RAM");
            return false;
        }
        g_usleep(10 * 1000);
    }
    return dest_ram_allocated(s->m->vm, err);
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
    /* The VMM must answer the resume in the downtime: ask it now, while a
     * refusal costs nothing (vmm_driver_ping()). */
    if (!vmm_driver_ping(s->m->vm->driver, err)) {
        g_prefix_error(err, "the VMM here did not answer before the pause: ");
        return false;
    }
    br.sync_seq = msg->barrier->sync_seq;
    reply.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER_REPLY;
    reply.barrier_reply = &br;
    return channel_send_msg(s->control, &reply, err);
}

/*
 * After the Barrier the Switchover follows within milliseconds, inside
 * the downtime (the source pauses its VM meanwhile).  At real-time
 * priority wait for it blocked: its arrival preempts whatever runs here,
 * and no CPU is taken from anything that runs meanwhile.  A spinner at
 * normal priority, yielding, took a CPU from the source's vCPUs that had
 * to park for the pause, wherever the two hosts share CPUs (traced on the
 * bench's machine: a vCPU runnable for 2.9 ms while the spinner ran);
 * eight alternated runs each at 1 GiB, median downtime 1.92 -> 1.65 ms,
 * the pause 1.17 -> 0.79 ms, for a wake-up more in the Switchover
 * (0.62 -> 0.76 ms).  Without real time spin, yielding, as before.
 */
#define SWITCHOVER_SPIN_US 20000

static void wait_switchover(struct dest_session *s, bool *rt)
{
    if (!*rt) {
        *rt = fault_priority_enter(s->m->engine.fault_priority, "dst-downtime");
    }
    if (!*rt) {
        channel_spin_readable(s->control, SWITCHOVER_SPIN_US, true);
    }
}

/* A READ link's round is long work: never at real-time priority. */
static bool remote_round(struct dest_session *s, PeerMessage *msg, bool *rt,
                         GError **err)
{
    if (*rt) {
        fault_priority_leave();
        *rt = false;
    }
    return dest_remote_round(s, msg, err);
}

/*
 * The next control message that is not a Barrier or a ReadRound (those
 * are answered); *@rt: this thread is at real-time priority now.
 */
static PeerMessage *recv_past_barriers(struct dest_session *s, bool *rt,
                                       GError **err)
{
    for (bool barrier_seen = false;; barrier_seen = true) {
        PeerMessage *msg;

        if (barrier_seen) {
            wait_switchover(s, rt);
        }
        msg = channel_recv_msg(s->control, err);
        while (msg &&
               msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_READ_ROUND) {
            bool ok = remote_round(s, msg, rt, err);

            peer_message_free(msg);
            /* The next round comes much later: no spin for it. */
            msg = ok ? channel_recv_msg(s->control, err) : NULL;
        }
        if (!msg ||
            msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_BARRIER) {
            return msg;
        }
        if (!answer_barrier(s, msg, err)) {
            peer_message_free(msg);
            return NULL;
        }
        peer_message_free(msg);
        prepare_session(s);
    }
}

/*
 * Before the resume: the first fault must find the new phase, and the
 * reader thread ready to READ it (else it goes in frames); with the last
 * dirty pages still to come, no copy is trusted.  Refused if the
 * migration failed meanwhile (the source hung up: a receiver saw it
 * first): then the VM must not start here (run_lock).
 */
static bool begin_running(struct dest_session *s, bool dirty_follows,
                          GError **err)
{
    bool stopped;

    g_mutex_lock(&s->run_lock);
    stopped = atomic_load(&s->stop);
    if (!stopped) {
        if (dirty_follows) {
            page_state_copies_unconfirmed(s->pst);
        }
        atomic_store(&s->running, true);
    }
    g_mutex_unlock(&s->run_lock);
    if (stopped) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "the migration failed before the VM could resume here");
    }
    return !stopped;
}

/*
 * Resume the VM from the Switchover and answer: true if it runs here
 * (*@sent: the answer went out), false with @err if it does not.
 */
static bool resume_and_answer(struct dest_session *s, PeerMessage *msg,
                              bool *sent, GError **err)
{
    Postcopy__Peer__SwitchoverReply sr = POSTCOPY__PEER__SWITCHOVER_REPLY__INIT;
    PeerMessage reply = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(GError) rerr = NULL;

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
    g_mutex_lock(&s->run_lock);
    s->switchover_in_hand = true;
    g_mutex_unlock(&s->run_lock);
    sr.ok = prepare_resume(s, msg->switchover, &sr, &rerr) &&
            begin_running(s, msg->switchover->dirty_follows, &rerr);
    if (sr.ok) {
        uint64_t t0 = migration_now_us();

        dest_remote_start(s);
        sr.ok = vmm_driver_resume(s->m->vm->driver,
                                  msg->switchover->device_state.data,
                                  msg->switchover->device_state.len, &rerr);
        if (!sr.ok) {
            g_mutex_lock(&s->run_lock);
            atomic_store(&s->running, false);
            g_mutex_unlock(&s->run_lock);
        }
        sr.resume_us = migration_now_us() - t0;
    }
    /*
     * Before the answer: once the source hears it, it counts on this side
     * to carry on, even through a restart of this daemon (its postcopy
     * starts from the answer; a daemon killed between the answer and the
     * file left a VM nobody could carry on).
     */
    if (sr.ok) {
        commit_session(s);
    } else {
        discard_session(s);
    }
    atomic_store(&s->m->stats.downtime_part_us[DT_DST_BARRIER], sr.barrier_us);
    atomic_store(&s->m->stats.downtime_part_us[DT_DST_STALE], sr.stale_us);
    atomic_store(&s->m->stats.downtime_part_us[DT_DST_RESUME], sr.resume_us);
    sr.error = sr.ok ? "" : rerr->message;
    reply.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY;
    reply.switchover_reply = &sr;
    *sent = channel_send_msg(s->control, &reply, err);
    if (!sr.ok) {
        if (*sent) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "the VMM refused to resume: %s", rerr->message);
        }
        return false;
    }
    return true;
}

/*
 * From the Barrier's answer to the Switchover's at real-time priority:
 * the downtime goes on until this thread has resumed the VM and answered.
 */
bool dest_switchover(struct dest_session *s, GError **err)
{
    bool rt = false, running, sent = false;
    g_autoptr(PeerMessage) msg = recv_past_barriers(s, &rt, err);

    if (!msg) {
        if (rt) {
            fault_priority_leave();
        }
        discard_session(s);
        return false;
    }
    if (!rt) {
        rt = fault_priority_enter(s->m->engine.fault_priority, "dst-downtime");
    }
    running = resume_and_answer(s, msg, &sent, err);
    if (rt) {
        fault_priority_leave();
    }
    if (!running) {
        return false;
    }
    /* The VM runs here whether or not the source heard it. */
    atomic_store(&s->m->stats.resume_us, migration_now_us());
    dest_start_sweep(s);
    /*
     * Active only once the source was told; unanswered, the caller pauses
     * it from here (device -> postcopy-paused, whichever thread sees the
     * link go first), never through an active state the source never saw.
     */
    if (sent) {
        migration_set_status(s->m, MIG_DEVICE, MIG_POSTCOPY_ACTIVE);
    }
    return sent;
}

/*
 * The last dirty pages, collected at the source while the VM already ran
 * here (a Switchover with dirty_follows): mark them STALE, then trust the
 * other copies again and start the sweep.  Until now every fault was
 * served by the source, whose paused VM's pages are final.
 */
bool dest_final_dirty(struct dest_session *s, const PeerMessage *msg,
                      GError **err)
{
    const Postcopy__Peer__FinalDirty *fd = msg->final_dirty;
    uint64_t stale = 0, t0 = migration_now_us();

    if (!fd->stale) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "final dirty set: no pages field");
        return false;
    }
    if (!dirty_set_decode(fd->stale, s->regions, mark_stale_run, s, &stale,
                          err)) {
        return false;
    }
    page_state_confirm_copies(s->pst);
    atomic_fetch_add(&s->m->stats.stale_pages, stale);
    dest_start_sweep(s);
    g_debug("migration %s: %" G_GUINT64_FORMAT " pages of the final dirty "
            "set marked in %" G_GUINT64_FORMAT " us, %" G_GUINT64_FORMAT
            " us after the resume",
            s->m->id, stale, migration_now_us() - t0,
            t0 - atomic_load(&s->m->stats.resume_us));
    return true;
}
