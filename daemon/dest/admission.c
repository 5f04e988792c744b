/*
 * admission.c - who may start or resume an incoming migration: the Hello
 * on a control channel (version, VM, RAM allocated), a data channel's
 * Hello (which migration, which stream), and a source's resuming Hello
 * (what this side still lacks, or that it completed already).
 *
 * Contract: every refusal answers the peer with a HelloReply that says
 * why, logs one line, and closes the channel; nothing of a migration is
 * touched before its Hello is accepted.
 */
#include "dest_session.h"

#include <gio/gio.h>

#include "bitmap.h"
#include "control_error.h"
#include "daemon.h"
#include "dirty_set.h"

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

static const char *hello_problem(const struct daemon *d,
                                 const Postcopy__Peer__Hello *h,
                                 Postcopy__Peer__ErrorCode *code)
{
    *code = POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL;
    /* Empty: a source from before the field, which only had tcp. */
    if (h->transport[0] &&
        !g_str_equal(h->transport, transport_name(d->transport))) {
        return "the source's transport is not this daemon's (see [peer] "
               "transport on both hosts)";
    }
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
    uint64_t distrusted = page_state_distrust_copies(s->pst);
    bool ok;

    if (distrusted) {
        g_message(
            "migration %s: the last dirty set never came: %" G_GUINT64_FORMAT
            " pages held here are fetched again",
            s->m->id, distrusted);
    }
    for (size_t i = 0; i < s->regions->n; i++) {
        uint64_t n = region_pages(&s->regions->regions[i]);

        maps[i] = g_new0(unsigned long, BITS_TO_LONGS(n));
        for (uint64_t p = 0; (p = page_state_next(s->pst, i, p, lacking)) < n;
             p++) {
            bitmap_set_bit(maps[i], p);
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
 * The migration ended here before the VM ran (it failed or was cancelled
 * at the switchover or before): a source that lost the Switchover's
 * answer learns that it keeps the VM.
 */
static void send_not_resumed(struct migration *m, struct channel *ch)
{
    Postcopy__Peer__ResumeReply rr = POSTCOPY__PEER__RESUME_REPLY__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autofree char *why = NULL;

    g_mutex_lock(&m->lock);
    why = g_strdup(m->error);
    g_mutex_unlock(&m->lock);
    rr.ok = false;
    rr.not_resumed = true;
    rr.error = why ? why : (char *)"the migration ended here";
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
    /* Final, so `running` is settled: the VM never ran here. */
    if (s && migration_status_is_final(st) && !atomic_load(&s->running)) {
        g_message("peer %s: migration %s ended here before the VM ran: "
                  "the source keeps it",
                  channel_peer(ch), m->id);
        send_hello_reply(ch, NULL, NULL);
        send_not_resumed(m, ch);
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
    const char *why = hello_problem(d, h, &code);

    if (why) {
        g_warning("peer %s: %s", channel_peer(ch), why);
        send_refusal(ch, code, why, NULL);
        goto drop;
    }
    if (h->resume) {
        accept_resume(d, ch, hello);
        return;
    }
    vm = daemon_take_vm(d, h->vm_name, true, &err);
    if (!vm) {
        g_warning("peer %s: %s", channel_peer(ch), err->message);
        send_refusal(ch,
                     g_error_matches(err, CONTROL_ERROR, CONTROL_ERROR_GENERIC)
                         ? POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_BUSY
                         : POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VMM,
                     err->message, NULL);
        goto drop;
    }
    if (!dest_ram_allocated(vm, &err)) {
        g_warning("peer %s: %s", channel_peer(ch), err->message);
        send_refusal(ch, POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VMM,
                     err->message, NULL);
        daemon_release_vm(d, vm);
        goto drop;
    }
    m = migration_new(d, ROLE_DESTINATION, vm, &d->engine);
    migration_set_id(m, h->migration_id.data);
    m->params.mode =
        h->mode == POSTCOPY__PEER__MODE__MODE_PRECOPY  ? MODE_PRECOPY
        : h->mode == POSTCOPY__PEER__MODE__MODE_HYBRID ? MODE_HYBRID
                                                       : MODE_POSTCOPY;
    m->mode = m->params.mode;
    m->peer_uri = g_strdup(channel_peer(ch));
    s = dest_session_new(m);
    s->control = ch;
    s->bulk_streams = CLAMP(h->bulk_streams, 1, DEST_MAX_STREAMS);
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
    m->thread = g_thread_new("dest", dest_session_thread, s);
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
    const char *why = hello_problem(d, h, &code);
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
