/*
 * postcopy.c - the source after the switchover: serve the destination
 * until its Complete, and when the link fails, reconnect (backing off, or
 * at once on `recover`) and stream what the destination says it lacks.
 *
 * Contract: the VM is never given up on: a paused migration retries until
 * it completes or the daemon stops.  A Complete lost with the old
 * connection is learnt from the resume's reply, and so is, after a lost
 * Switchover answer, whether the VM ever ran there: only an explicit
 * `not_resumed` gives it back to this side.
 */
#include "source.h"

#include <gio/gio.h>

#include "completion_stats.h"
#include "control_error.h"
#include "daemon.h"
#include "dirty_set.h"
#include "session_file.h"

#define CONTROL_POLL_MS 500
/* A data channel closed without a Complete on control within this: lost. */
#define DATA_LOST_GRACE_US (2 * G_USEC_PER_SEC)
#define RECONNECT_MIN_MS   100
#define RECONNECT_MAX_MS   2000

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
        g_autoptr(PeerMessage) done = source_expect_msg(
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

void source_close_channels(struct source_session *s)
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
    g_mutex_lock(&s->chan_lock);
    for (size_t i = 0; i < n; i++) {
        if (*chs[i]) {
            channel_close(*chs[i]);
            *chs[i] = NULL;
        }
    }
    g_mutex_unlock(&s->chan_lock);
}

static void missing_run(void *opaque, uint32_t region, uint64_t first,
                        uint64_t n)
{
    struct source_session *s = opaque;

    for (uint64_t p = first; p < first + n; p++) {
        bitmap_set_bit(s->pending[region], p);
    }
}

/* Reconnect a paused migration: what the destination lacks becomes pending. */
static bool resume_connect(struct source_session *s, GError **err)
{
    g_autoptr(PeerMessage) rr = NULL;
    uint64_t pages;

    source_keep_channel(
        s, &s->control,
        source_open_channel(s, s->m->peer_uri, CHANNEL_CONTROL, 0, true, err));
    if (!s->control) {
        return false;
    }
    rr = source_expect_msg(s->control,
                           POSTCOPY__PEER__PEER_MESSAGE__MSG_RESUME_REPLY, err);
    if (!rr) {
        return false;
    }
    if (rr->resume_reply->ok && rr->resume_reply->completed) {
        s->peer_completed = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "the destination completed the migration already");
        return false;
    }
    if (!rr->resume_reply->ok && rr->resume_reply->not_resumed) {
        s->peer_not_resumed = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "the destination did not resume the VM: %s",
                    rr->resume_reply->error);
        return false;
    }
    if (!rr->resume_reply->ok || !rr->resume_reply->missing) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused to resume: %s",
                    rr->resume_reply->error);
        return false;
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        size_t longs = BITS_TO_LONGS(region_pages(&s->regions->regions[i]));

        g_free(s->pending[i]);
        s->pending[i] = g_new0(unsigned long, longs);
    }
    if (!dirty_set_decode(rr->resume_reply->missing, s->regions, missing_run, s,
                          &pages, err)) {
        return false;
    }
    if (!source_open_data_channels(s, true, err)) {
        return false;
    }
    s->resend_missing = true;
    g_message("migration %s: reconnected to %s, %" G_GUINT64_FORMAT
              " page(s) still missing there",
              s->m->id, s->m->peer_uri, pages);
    return true;
}

/*
 * The destination says it never ran the VM (the Switchover's answer was
 * lost, and it failed before it resumed): the VM is this one again.
 */
static void take_back(struct source_session *s, const GError *why)
{
    struct migration *m = s->m;
    g_autoptr(GError) err = NULL;
    bool resumed = vmm_driver_resume(m->vm->driver, NULL, 0, &err);

    atomic_store(&s->outcome_unknown, false);
    g_mutex_lock(&m->daemon->lock);
    m->vm->moved = false;
    g_mutex_unlock(&m->daemon->lock);
    session_file_remove(m->engine.state_dir, m->id, ROLE_SOURCE);
    migration_drop_error(m);
    if (!resumed) {
        migration_fail(m, MIG_FAILED,
                       "%s, and the VM could not be resumed here: %s",
                       why->message, err->message);
        return;
    }
    migration_fail(m, MIG_FAILED, "%s: it runs here again", why->message);
}

/*
 * Paused in postcopy: try again and again, backing off up to
 * RECONNECT_MAX_MS; `recover` cuts the wait short.  The VM is never given
 * up on: only the daemon stopping ends this.
 */
bool source_reconnect(struct source_session *s)
{
    unsigned delay_ms = RECONNECT_MIN_MS;

    /* Final (the VMM's memory is gone): nothing left to reconnect for. */
    while (!s->m->daemon->stopping &&
           !migration_status_is_final(migration_status(s->m))) {
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
            atomic_store(&s->outcome_unknown, false); /* it runs there */
            migration_clear_error(s->m);
            return migration_set_status(s->m, MIG_POSTCOPY_PAUSED,
                                        MIG_POSTCOPY_ACTIVE);
        }
        source_close_channels(s);
        if (s->peer_not_resumed) {
            take_back(s, err);
            return false;
        }
        if (s->peer_completed) {
            /* Its Complete died with the old connection. */
            atomic_store(&s->outcome_unknown, false);
            migration_clear_error(s->m);
            migration_set_status(s->m, MIG_POSTCOPY_PAUSED, MIG_COMPLETED);
            session_file_remove(s->m->engine.state_dir, s->m->id, ROLE_SOURCE);
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

/*
 * The postcopy threads: the request thread first, so that with the last
 * dirty set still to send (final_deferred) the destination's faults are
 * served while it is collected; then the stream, which needs that set.
 * False when the FinalDirty could not go: the migration pauses.
 */
static bool start_postcopy(struct source_session *s)
{
    struct migration *m = s->m;
    g_autoptr(GError) err = NULL;
    bool streaming;

    /* The final collect takes a CPU as a bulk thread does (poll_us()). */
    atomic_store(&s->bulk_running, s->final_deferred ? 1 : 0);
    s->request_thread = g_thread_new("src-requests", source_request_thread, s);
    if (s->final_deferred) {
        s->final_deferred = false;
        if (!source_send_final_dirty(s, &err)) {
            migration_fail(m, MIG_POSTCOPY_PAUSED,
                           "postcopy: the last dirty set: %s", err->message);
            return false;
        }
        atomic_store(&s->bulk_running, 0);
    }
    /* Precopy mode has nothing left to stream, unless resuming. */
    streaming = (m->params.mode != MODE_PRECOPY || s->resend_missing) &&
                m->params.postcopy_bulk;
    if (!streaming) {
        return true;
    }
    postcopy_stream_init(&s->stream, s->regions,
                         s->resend_missing ? s->pending : NULL);
    /* The destination reads those itself (source_remote.c). */
    for (size_t i = 0; i < s->regions->n; i++) {
        if (source_remote_skips(s, i)) {
            postcopy_stream_drop_region(&s->stream, i);
        }
    }
    source_bulk_postcopy_buffers(s);
    atomic_store(&s->bulk_running, s->nbulk);
    atomic_store(&s->streaming, true); /* the stream is ready: notes go */
    for (unsigned i = 0; i < s->nbulk; i++) {
        s->bulk[i].thread =
            g_thread_new("src-bulk", source_bulk_thread, &s->bulk[i]);
    }
    return true;
}

/* Serve the destination until it has every page, reconnecting as needed. */
void source_postcopy_loop(struct source_session *s)
{
    struct migration *m = s->m;

    for (;;) {
        bool done = start_postcopy(s) && wait_complete(s);

        source_close_channels(s);
        if (atomic_load(&s->streaming)) {
            atomic_fetch_add(&m->stats.pages_prefetched, s->stream.prefetched);
            postcopy_stream_destroy(&s->stream);
            atomic_store(&s->streaming, false);
        }
        if (done) {
            session_file_remove(m->engine.state_dir, m->id, ROLE_SOURCE);
            return;
        }
        /* The destination ended the READ link at the pause: frames. */
        source_remote_close(s);
        if (!source_reconnect(s)) {
            return;
        }
    }
}
