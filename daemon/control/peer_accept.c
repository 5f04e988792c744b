/* peer_accept.c - see peer_accept.h. */
#include "peer_accept.h"

#include "daemon.h"

#define HELLO_TIMEOUT_MS 10000 /* each frame, and the whole handshake */

static bool hello_channel_kind(const Postcopy__Peer__Hello *h,
                               enum channel_kind *kind)
{
    switch (h->channel) {
    case POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_CONTROL:
        *kind = CHANNEL_CONTROL;
        return true;
    case POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_URGENT:
        *kind = CHANNEL_URGENT;
        return true;
    case POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_BULK:
        *kind = CHANNEL_BULK;
        return true;
    default:
        return false;
    }
}

struct peer_conn {
    struct daemon *d;
    struct channel *ch;
    char *source;     /* its slot in d->preauth */
    int64_t deadline; /* for its whole handshake, from accept */
};

static void peer_conn_free(struct peer_conn *pc)
{
    conn_limit_leave(&pc->d->preauth, pc->source);
    g_free(pc->source);
    g_free(pc);
}

/* Read a new connection's Hello off the accept thread, then route it. */
static gpointer peer_conn_thread(gpointer opaque)
{
    struct peer_conn *pc = opaque;
    g_autoptr(GError) err = NULL;
    PeerMessage *msg = NULL;
    enum channel_kind kind;
    struct channel *ch;
    struct daemon *d;

    /* Here, not in the accept thread: a slow handshake blocks no one. */
    pc->ch = listener_handshake(pc->ch, pc->deadline, &err);
    if (!pc->ch) {
        g_warning("%s", err->message);
        goto drop;
    }
    channel_set_timeout(pc->ch, HELLO_TIMEOUT_MS, NULL);
    msg = channel_recv_msg(pc->ch, &err);
    if (!msg) {
        g_warning("peer %s: %s", channel_peer(pc->ch), err->message);
        goto drop;
    }
    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_CHALLENGE) {
        g_warning("peer %s wants to authenticate, but this daemon has no "
                  "psk-file",
                  channel_peer(pc->ch));
        goto drop;
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO ||
        !hello_channel_kind(msg->hello, &kind)) {
        g_warning("peer %s: expected a Hello naming its channel, got %s",
                  channel_peer(pc->ch), peer_message_name(msg));
        goto drop;
    }
    if (!channel_set_kind(pc->ch, kind, msg->hello->stream, &err)) {
        g_warning("peer %s: %s", channel_peer(pc->ch), err->message);
        goto drop;
    }
    channel_set_deadline(pc->ch, 0);
    channel_set_timeout(pc->ch, 0, NULL);
    ch = pc->ch;
    d = pc->d;
    peer_conn_free(pc); /* authenticated: the slot is free again */
    if (kind == CHANNEL_CONTROL) {
        d->roles.accept_control(d, ch, msg);
    } else {
        d->roles.accept_data(d, ch, msg);
    }
    return NULL;
drop:
    if (msg) {
        peer_message_free(msg);
    }
    channel_close(pc->ch);
    peer_conn_free(pc);
    return NULL;
}

/*
 * A thread for @ch's handshake, if its source and the daemon have room
 * for one more; else it is refused at once.
 */
static void peer_conn_start(struct daemon *d, struct channel *ch)
{
    g_autofree char *source = conn_limit_source(channel_peer(ch));
    g_autoptr(GError) err = NULL;
    struct peer_conn *pc;
    GThread *th;

    if (!conn_limit_enter(&d->preauth, source, &err)) {
        g_warning("peer %s: refused: %s", channel_peer(ch), err->message);
        channel_close(ch);
        return;
    }
    pc = g_new0(struct peer_conn, 1);
    pc->d = d;
    pc->ch = ch;
    pc->source = g_steal_pointer(&source);
    pc->deadline =
        g_get_monotonic_time() + HELLO_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
    th = g_thread_try_new("peer-conn", peer_conn_thread, pc, &err);
    if (!th) {
        g_warning("peer %s: refused: no thread for its handshake: %s",
                  channel_peer(ch), err->message);
        channel_close(ch);
        peer_conn_free(pc);
        return;
    }
    g_thread_unref(th);
}

gpointer peer_accept_thread(gpointer opaque)
{
    struct daemon *d = opaque;

    for (;;) {
        g_autoptr(GError) err = NULL;
        struct channel *ch = listener_accept(d->peer, &err);

        if (!ch) {
            if (d->stopping) {
                break;
            }
            g_warning("peer accept: %s", err->message);
            g_usleep(100000);
            continue;
        }
        peer_conn_start(d, ch);
    }
    return NULL;
}
