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
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "control_error.h"
#include "daemon.h"
#include "region.h"
#include "session_file.h"

void source_senders_set_phase(struct source_session *s, _Atomic uint64_t *bytes)
{
    for (unsigned i = 0; i < s->nbulk; i++) {
        page_sender_set_phase(&s->bulk[i].sender, bytes);
    }
}

/* Tuning only: a channel that refuses keeps the kernel's sizing. */
void source_bulk_set_send_buffers(struct source_session *s, unsigned bytes)
{
    for (unsigned i = 0; i < s->nbulk; i++) {
        g_autoptr(GError) err = NULL;

        if (s->bulk[i].ch &&
            !channel_set_send_buffer(s->bulk[i].ch, bytes, &err)) {
            g_warning("migration %s: %s", s->m->id, err->message);
        }
    }
}

/* Half the kernel's ceiling, read once: SO_SNDBUF doubles what it is given. */
static unsigned kernel_sndbuf_ceiling(void)
{
    static gsize once;

    if (g_once_init_enter(&once)) {
        g_autofree char *text = NULL;
        unsigned lo, def, max = 4u << 20; /* the kernel's default */

        if (g_file_get_contents("/proc/sys/net/ipv4/tcp_wmem", &text, NULL,
                                NULL)) {
            sscanf(text, "%u %u %u", &lo, &def, &max);
        }
        g_once_init_leave(&once, MAX(max / 2, 1u));
    }
    return (unsigned)once;
}

void source_bulk_postcopy_buffers(struct source_session *s)
{
    if (s->m->params.mode == MODE_HYBRID) {
        source_bulk_set_send_buffers(s, kernel_sndbuf_ceiling());
    }
}

static void init_streams(struct source_session *s)
{
    struct page_counters c;

    source_page_counters(s->m, &c);
    s->nbulk = CLAMP(s->m->params.streams, 1, SOURCE_MAX_STREAMS);
    g_mutex_init(&s->stream_lock);
    g_mutex_init(&s->chan_lock);
    for (unsigned i = 0; i < s->nbulk; i++) {
        s->bulk[i].s = s;
        s->bulk[i].idx = i;
        page_sender_init(&s->bulk[i].sender, s->m->vm->info.pid, &c);
    }
}

void source_remember_session(struct source_session *s)
{
    g_autoptr(GError) err = NULL;
    struct session_file f = {.role = ROLE_SOURCE, .mode = s->m->params.mode};

    g_strlcpy(f.id, s->m->id, sizeof(f.id));
    g_strlcpy(f.vm_name, s->m->vm_name, sizeof(f.vm_name));
    g_strlcpy(f.peer_uri, s->m->peer_uri, sizeof(f.peer_uri));
    g_strlcpy(f.domain, s->m->vm->info.domain, sizeof(f.domain));
    g_strlcpy(f.connect, s->m->vm->info.connect, sizeof(f.connect));
    if (!session_file_write(s->m->engine.state_dir, &f, &err)) {
        g_warning("migration %s: a restart could not carry it on: %s", s->m->id,
                  err->message);
    }
}

/*
 * Tracking stops here, after the migration's end, unless a failure before
 * the switchover stopped it already to resume the VM: ending it walks
 * every page-table entry of the guest, which right after the switchover
 * delayed the postcopy stream (0.36-0.46 s for 4 GiB on the bench's
 * machine with an unprotect before the unregister; the unregister, all it
 * does now, was 0.15-0.19 s of it).
 */
static void free_session(struct source_session *s)
{
    source_close_channels(s);
    source_remote_close(s);
    precopy_stop_tracking(s);
    for (unsigned i = 0; i < s->nbulk; i++) {
        page_sender_destroy(&s->bulk[i].sender);
    }
    ram_drops_destroy(&s->drops);
    for (size_t i = 0; i < REGION_MAX; i++) {
        g_free(s->pending[i]);
        s->pending[i] = NULL;
        g_clear_pointer(&s->prestale[i], g_free);
    }
}

/*
 * The session is over.  Completed: the destination owns every page and
 * the VM runs there, so the source VMM is told to quit if it exits once
 * migrated (QEMU, postcopy-guest; free_session already gave its RAM back,
 * write-protection off), and the daemon forgets it, whatever its kind:
 * neither query-vms nor a new migrate may find that stale copy.  Else it
 * stays attached: resumed after a failure, or paused in postcopy until
 * the migration recovers.
 */
static void finish(struct migration *m)
{
    g_autoptr(GError) err = NULL;
    struct vm_entry *vm = m->vm;

    if (migration_status(m) != MIG_COMPLETED) {
        daemon_release_vm(m->daemon, vm);
        return;
    }
    if (vm->driver->quit_when_moved && !vmm_driver_quit(vm->driver, &err)) {
        g_warning("migration %s: the source VMM did not quit: %s", m->id,
                  err->message);
    }
    daemon_forget_vm(m->daemon, vm);
}

static gpointer restored_thread(gpointer opaque)
{
    struct source_session *s = opaque;

    if (source_reconnect(s)) {
        source_postcopy_loop(s);
    }
    free_session(s);
    finish(s->m);
    return NULL;
}

void source_restore(struct daemon *d, struct vm_entry *vm,
                    const struct session_file *f)
{
    g_autoptr(GError) err = NULL;
    struct source_session *s = g_new0(struct source_session, 1);
    struct migration *m = migration_new(d, ROLE_SOURCE, vm, &d->engine);

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

    if (!source_setup(s, &err)) {
        source_fail_before_switchover(s, err);
        goto out;
    }
    atomic_store(&m->stats.setup_done_us, migration_now_us());
    if (m->params.mode != MODE_POSTCOPY &&
        (!migration_set_status(m, MIG_SETUP, MIG_ACTIVE) ||
         !precopy_start_tracking(s, &err) || !precopy_rounds(s, &err))) {
        if (!err) {
            g_set_error(&err, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
        }
        source_fail_before_switchover(s, err);
        goto out;
    }
    /*
     * migrate-start-postcopy on a precopy: the rest goes as hybrid's
     * does, the dirty set in the downtime and the pages in postcopy.
     * Only this thread reads params.mode from here on.
     */
    if (m->params.mode == MODE_PRECOPY &&
        atomic_load(&m->live.postcopy_requested)) {
        m->params.mode = MODE_HYBRID;
    }
    if (source_drain_bulk(s, &err) && source_switchover(s, &err)) {
        migration_set_status(m, MIG_DEVICE, MIG_POSTCOPY_ACTIVE);
        s->resend_missing = m->params.mode == MODE_HYBRID;
        source_remember_session(s);
    } else if (source_switchover_lost(s, err)) {
        /* Paused: the reconnect learns whether the VM runs there. */
        source_remember_session(s);
        if (!source_reconnect(s)) {
            goto out;
        }
    } else {
        source_fail_before_switchover(s, err);
        goto out;
    }
    source_postcopy_loop(s);
out:
    free_session(s);
    finish(m);
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
    atomic_store(&m->live.max_bandwidth, m->params.max_bandwidth);
    atomic_store(&m->live.downtime_limit_ms, m->params.downtime_limit_ms);
    s->m = m;
    s->regions = &m->vm->info.regions;
    init_streams(s);
    m->role_state = s;
    migration_set_status(m, MIG_NONE, MIG_SETUP);
    m->thread = g_thread_new("source", source_thread, s);
    return true;
}

void source_keep_channel(struct source_session *s, struct channel **slot,
                         struct channel *ch)
{
    g_mutex_lock(&s->chan_lock);
    *slot = ch;
    if (ch && migration_status(s->m) == MIG_CANCELLING) {
        channel_shutdown(ch);
    }
    g_mutex_unlock(&s->chan_lock);
}

/* Why a migration in @st cannot be cancelled, truthfully. */
static void refuse_cancel(struct migration *m, enum migration_status st,
                          GError **err)
{
    struct source_session *s = m->role_state;
    const char *why;

    switch (st) {
    case MIG_CANCELLING:
        why = "a cancel is under way already";
        break;
    case MIG_DEVICE:
        why = "the switchover is under way (the VM is paused and its state "
              "on its way to the destination): it can no longer be cancelled";
        break;
    case MIG_POSTCOPY_ACTIVE:
    case MIG_COMPLETED:
        why = "the VM runs on the destination, cancel is no longer possible";
        break;
    case MIG_POSTCOPY_PAUSED:
        why = !atomic_load(&s->outcome_unknown)
                  ? "the VM runs on the destination, cancel is no longer "
                    "possible"
                  : "the switchover's answer was lost (the VM may run on the "
                    "destination): it cannot be cancelled";
        break;
    default:
        why = "it has ended already: there is nothing to cancel";
        break;
    }
    g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                "migration is %s: %s", migration_status_name(st), why);
}

/*
 * Local and immediate: every channel is shut down, so the session thread
 * wakes at once from whatever send or receive a frozen peer holds it in,
 * stops tracking and leaves the VM running (source_fail_before_switchover).
 * The Cancel goes into the control socket's buffer: the destination reads
 * it when it can, and discards its copy either way.
 */
bool source_cancel(struct migration *m, GError **err)
{
    struct source_session *s = m->role_state;

    if (!migration_set_status(m, MIG_SETUP, MIG_CANCELLING) &&
        !migration_set_status(m, MIG_ACTIVE, MIG_CANCELLING)) {
        refuse_cancel(m, migration_status(m), err);
        return false;
    }
    g_mutex_lock(&s->chan_lock);
    if (s->control) {
        source_send_cancel(s); /* small, into an idle socket: no wait */
        channel_shutdown(s->control);
    }
    if (s->urgent) {
        channel_shutdown(s->urgent);
    }
    if (s->opening) {
        channel_shutdown(s->opening);
    }
    for (unsigned i = 0; i < s->nbulk; i++) {
        if (s->bulk[i].ch) {
            channel_shutdown(s->bulk[i].ch);
        }
    }
    g_mutex_unlock(&s->chan_lock);
    return true;
}
