/*
 * session.c - one incoming migration from the Layout to the end: check
 * the layout, take the VMM's uffd and register its RAM, wait for the data
 * channels, run the switchover (switchover.c), then the postcopy loop
 * until every page is installed, pausing and resuming as the link goes.
 *
 * Contract: before the VMM runs here a failure fails the migration and
 * discards the partial copy (the source keeps the VM); after, it pauses
 * the migration and discards nothing.  The session thread owns the
 * session and frees nothing another thread may still use: every thread
 * is joined in dest_stop_threads().
 */
#include "dest_session.h"

#include <gio/gio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "completion_stats.h"
#include "daemon.h"
#include "session_file.h"

#define CHANNEL_WAIT_US (10 * G_USEC_PER_SEC)
#define WAIT_SLICE_US   (100 * 1000)

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

void dest_wake(struct dest_session *s)
{
    g_mutex_lock(&s->m->lock);
    g_cond_broadcast(&s->m->cond);
    g_mutex_unlock(&s->m->lock);
}

static void dest_shutdown_data_channels(struct dest_session *s)
{
    if (s->urgent) {
        channel_shutdown(s->urgent);
    }
    for (unsigned i = 0; i < DEST_MAX_STREAMS; i++) {
        if (s->bulk[i]) {
            channel_shutdown(s->bulk[i]);
        }
    }
}

void dest_shutdown_channels(struct dest_session *s)
{
    if (s->control) {
        channel_shutdown(s->control);
    }
    dest_shutdown_data_channels(s);
}

/*
 * Something went wrong with the peer.  Before the VMM runs here the
 * migration fails (the source keeps the VM).  After, the guest's missing
 * pages exist only at the source: the migration pauses, nothing is
 * discarded, and it carries on when the source reconnects.
 */
void dest_fail(struct dest_session *s, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* Record the cause before the peer, told, can hang up on us. */
    g_mutex_lock(&s->run_lock);
    if (atomic_load(&s->running) || s->switchover_in_hand) {
        migration_fail(s->m, MIG_POSTCOPY_PAUSED, "%s", msg);
        atomic_store(&s->paused, true);
    } else {
        migration_fail(s->m, MIG_FAILED, "%s", msg);
        atomic_store(&s->stop, true);
    }
    g_mutex_unlock(&s->run_lock);
    if (s->control) {
        send_error(s->control, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL,
                   msg);
    }
    /* Paused: control stays for the session thread's last read. */
    if (atomic_load(&s->paused)) {
        dest_shutdown_data_channels(s);
    } else {
        dest_shutdown_channels(s);
    }
    dest_wake(s);
}

/* The VMM's memory cannot be worked on any more (it exited, unmapped). */
void dest_abort(struct dest_session *s, const char *msg)
{
    migration_fail(s->m, MIG_FAILED, "%s", msg);
    atomic_store(&s->stop, true);
    dest_shutdown_channels(s);
    dest_wake(s);
}

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
    /* The READ link is waited for right after the reply (rdma). */
    if (!why && !dest_remote_listen(s, &lr.read_link_port, err)) {
        return false;
    }
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
    uint64_t features = UFFD_FEATURE_THREAD_ID | dest_event_features();
    uint64_t dropped = 0;

    for (size_t i = 0; i < s->regions->n; i++) {
        features |= backing_ops_get(s->regions->regions[i].kind)->dest_features;
    }
    if (vm->api_done) {
        memset(&s->u, 0, sizeof(s->u));
        s->u.fd = vm->info.uffd;
        s->u.features = vm->info.uffd_features;
    } else if (!uffd_api(vm->info.uffd, features, &s->m->daemon->caps, &s->u,
                         &dropped, err)) {
        return false;
    } else {
        vm->api_done = true;
        vm->info.uffd_features = s->u.features;
    }
    if (dropped & dest_event_features()) {
        g_warning("migration %s: the kernel does not offer uffd events "
                  "0x%" G_GINT64_MODIFIER "x: guest RAM the VMM drops "
                  "during postcopy would be served stale",
                  s->m->id, dropped & dest_event_features());
    }
    dest_events_init(s);
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
        if (!dest_installer_open(s, i, err)) {
            return false;
        }
        s->limits[i].size = r->size;
        s->limits[i].page_size = r->page_size;
        atomic_fetch_add(&s->m->stats.pages_total, region_pages(r));
    }
    if (!page_state_layout_init(&layout, s->m->id, s->regions, err)) {
        return false;
    }
    s->pst_path =
        g_strdup_printf("%s/%s.pages", s->m->engine.state_dir, s->m->id);
    s->pst = page_state_create(s->pst_path, &layout, err);
    return s->pst != NULL;
}

/* The source hung up on control (nothing else is expected there now). */
bool dest_control_gone(struct dest_session *s)
{
    return channel_peer_closed(s->control);
}

/*
 * Wait, in short slices so a source that hangs up is noticed at once,
 * until @done(s) or CHANNEL_WAIT_US.  Called with m->lock held.
 */
bool dest_wait_for(struct dest_session *s, bool (*done)(void *), void *arg,
                   const char *what, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + CHANNEL_WAIT_US;

    while (!done(arg)) {
        int64_t slice = MIN(deadline, g_get_monotonic_time() + WAIT_SLICE_US);

        if (atomic_load(&s->stop) || dest_control_gone(s)) {
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
    ok = dest_wait_for(s, data_channels_open, s,
                       "waiting for its data channels", err);
    g_mutex_unlock(&s->m->lock);
    return ok;
}

/* Every page is in place: the guest runs at native speed from now on. */
static void complete(struct dest_session *s)
{
    struct completion_stats cs;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(GError) err = NULL;

    for (size_t i = 0; i < s->regions->n; i++) {
        const struct region *r = &s->regions->regions[i];

        if (!uffd_unregister(&s->u, r->base, r->size, &err)) {
            g_warning("migration %s: %s", s->m->id, err->message);
            g_clear_error(&err);
        }
    }
    completion_stats_encode(s->m, &cs);
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_COMPLETE;
    msg.complete = &cs.msg;
    /* From here the source may close its channels: not an error. */
    atomic_store(&s->stop, true);
    if (!channel_send_msg(s->control, &msg, &err)) {
        g_warning("migration %s: %s", s->m->id, err->message);
    }
    unlink(s->pst_path);
    session_file_remove(s->m->engine.state_dir, s->m->id, ROLE_DESTINATION);
    s->m->vm->info.incoming = false; /* it may migrate on from here */
    migration_set_status(s->m, MIG_POSTCOPY_ACTIVE, MIG_COMPLETED);
}

static void start_threads(struct dest_session *s)
{
    s->fault_thread = g_thread_new("dst-faults", dest_fault_thread, s);
    dest_start_receivers(s);
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
    dest_shutdown_channels(s);
    dest_join_receivers(s);
    /* A pause ends the READ link's use: the rest moves in frames. */
    dest_remote_join(s);
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
    dest_start_receivers(s);
    /* The fault thread sends them: it alone sends on the urgent channel. */
    atomic_store(&s->rerequest_due, true);
    return true;
}

/*
 * The source ended the migration (its VMM's memory is gone: Error on
 * control): the pages the guest lacks can never come.  Final, and said;
 * nothing the guest has is discarded, and a restart must not carry on.
 */
static void source_ended(struct dest_session *s, const char *why)
{
    /* The data channels' closing, seen first, is not the cause. */
    migration_drop_error(s->m);
    migration_fail(s->m, MIG_FAILED, "the source ended the migration: %s", why);
    session_file_remove(s->m->engine.state_dir, s->m->id, ROLE_DESTINATION);
    unlink(s->pst_path);
    atomic_store(&s->stop, true);
    dest_shutdown_channels(s);
    dest_wake(s);
}

/* The source's last word, before waiting for it to reconnect. */
#define LAST_WORD_MS 200
/* A message begun on control in postcopy: in whole within this. */
#define CONTROL_READ_MS 1000
/* One wait for the FinalDirty; the loop re-checks stop and pause. */
#define FINAL_DIRTY_WAIT_MS 100

/*
 * In postcopy the source says nothing on control unless it ends the
 * migration: read what it sent within @wait_ms, if anything.  Only the
 * session thread reads control in postcopy, and dest_fail() leaves it
 * open, so that an Error sent just before the source closed its data
 * channels is still read once they are noticed closed.
 */
static void watch_control(struct dest_session *s, int wait_ms)
{
    struct channel *const ch[1] = {s->control};
    g_autoptr(GError) err = NULL;
    g_autoptr(PeerMessage) msg = NULL;

    if (!ch[0] || atomic_load(&s->stop) ||
        channel_wait_any(ch, 1, wait_ms) != 0) {
        return;
    }
    /* Keepalives alone must not hold the session thread: a short wait. */
    channel_set_timeout(s->control, CONTROL_READ_MS, NULL);
    msg = channel_recv_msg(s->control, &err);
    channel_set_timeout(s->control, 0, NULL);
    if (!msg && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
        return;
    }
    if (msg && msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR) {
        source_ended(s, msg->error->message);
    } else if (msg &&
               msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_FINAL_DIRTY) {
        if (!dest_final_dirty(s, msg, &err)) {
            dest_fail(s, "control: %s", err->message);
        }
    } else if (!atomic_load(&s->paused)) {
        dest_fail(s, "control: %s",
                  msg ? "a message out of place in postcopy" : err->message);
    }
}

static bool postcopy_goes_on(struct dest_session *s)
{
    return !page_state_all_installed(s->pst) && !atomic_load(&s->stop) &&
           !atomic_load(&s->paused);
}

/*
 * Until every page is installed, pausing and resuming as the link goes.
 * First the dirty set that may follow the resume: the sweep waits for it,
 * so read it as it comes rather than at the next slice.
 */
void dest_postcopy(struct dest_session *s)
{
    while (!page_state_copies_confirmed(s->pst) && postcopy_goes_on(s)) {
        watch_control(s, FINAL_DIRTY_WAIT_MS);
    }
    for (;;) {
        while (postcopy_goes_on(s)) {
            g_mutex_lock(&s->m->lock);
            if (postcopy_goes_on(s)) {
                g_cond_wait_until(&s->m->cond, &s->m->lock,
                                  g_get_monotonic_time() + WAIT_SLICE_US);
            }
            g_mutex_unlock(&s->m->lock);
            watch_control(s, 0);
        }
        if (page_state_all_installed(s->pst)) {
            complete(s);
            return;
        }
        if (atomic_load(&s->paused)) {
            watch_control(s, LAST_WORD_MS);
        }
        if (atomic_load(&s->stop) || !wait_resume(s)) {
            return;
        }
        /* The resume distrusted copies the lost dirty set left unmarked. */
        dest_start_sweep(s);
    }
}

void dest_stop_threads(struct dest_session *s)
{
    atomic_store(&s->stop, true);
    dest_shutdown_channels(s);
    if (s->fault_thread) {
        g_thread_join(s->fault_thread);
    }
    dest_remote_stop(s);
    dest_join_receivers(s);
    if (s->sweep_thread) {
        g_thread_join(s->sweep_thread);
    }
    dest_events_destroy(s);
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

gpointer dest_session_thread(gpointer opaque)
{
    struct dest_session *s = opaque;
    struct migration *m = s->m;
    g_autoptr(GError) err = NULL;

    if (!check_layout(s, &err) || !setup_uffd(s, &err) ||
        !dest_remote_setup(s, &err) ||
        !vmm_driver_expect_incoming(m->vm->driver, &err) ||
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
    if (!dest_switchover(s, &err)) {
        if (!atomic_load(&s->running)) {
            migration_fail(m, s->cancelled ? MIG_CANCELLED : MIG_FAILED, "%s",
                           err->message);
            send_error(s->control,
                       POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL,
                       err->message);
            goto out;
        }
        /*
         * The VM runs here but the source may not know it (its answer
         * lost): pause with the fault thread serving on, and wait for the
         * source to reconnect and ask.
         */
        dest_fail(s,
                  "the VM runs here, but the switchover's answer may "
                  "not have reached the source: %s",
                  err->message);
    }
    dest_postcopy(s);
out:
    dest_stop_threads(s);
    if (!atomic_load(&s->running)) {
        discard_partial(s);
    }
    dest_installer_close(s);
    daemon_release_vm(m->daemon, m->vm);
    g_free(s->pst_path);
    return NULL;
}

struct dest_session *dest_session_new(struct migration *m)
{
    struct dest_session *s = g_new0(struct dest_session, 1);

    s->graveyard = g_ptr_array_new();
    g_mutex_init(&s->read_lock);
    g_mutex_init(&s->run_lock);
    g_cond_init(&s->read_cond);
    s->read_faults = g_array_new(false, false, sizeof(struct fault_page));
    s->m = m;
    s->regions = &m->vm->info.regions;
    m->role_state = s;
    return s;
}
