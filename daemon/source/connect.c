/*
 * connect.c - the source's side of the peer handshake: open a channel
 * (transport_connect(), which does TLS and authentication, then Hello),
 * send the Layout, open the data channels.
 *
 * Contract: a channel is returned only once the destination accepted its
 * Hello; on any failure it is closed and the GError says which channel
 * and why (a destination's Error message is passed on as is).
 */
#include "source.h"

#include <gio/gio.h>

#include "daemon.h"

PeerMessage *source_expect_msg(struct channel *ch,
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

struct channel *source_open_channel(struct source_session *s, const char *uri,
                                    enum channel_kind kind, uint32_t stream,
                                    bool resume, GError **err)
{
    struct daemon *d = s->m->daemon;
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;
    char *caps[] = {PEER_CAP_ZERO_PAGE, PEER_CAP_HUGETLBFS, PEER_CAP_MINOR};
    struct channel *ch;

    /* TLS and authentication happen inside: d->topts.security. */
    ch = transport_connect(d->transport, uri, kind, stream, &d->topts, err);
    if (!ch) {
        return NULL;
    }
    /* A frozen peer never answers the Hello: cancel must reach it. */
    source_keep_channel(s, &s->opening, ch);
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
    hello.transport = (char *)transport_name(d->transport);
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
    reply = source_expect_msg(ch, POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY,
                              err);
    if (!reply) {
        goto fail;
    }
    if (!reply->hello_reply->ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused the %s channel: %s",
                    channel_kind_name(kind), reply->hello_reply->error);
        goto fail;
    }
    source_keep_channel(s, &s->opening, NULL);
    return ch;
fail:
    source_keep_channel(s, &s->opening, NULL);
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
    reply = source_expect_msg(
        s->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT_REPLY, err);
    if (!reply) {
        return false;
    }
    if (!reply->layout_reply->ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "destination refused the layout: %s",
                    reply->layout_reply->error);
        return false;
    }
    return source_remote_setup(s, reply->layout_reply->read_link_port, err);
}

bool source_open_data_channels(struct source_session *s, bool resume,
                               GError **err)
{
    source_keep_channel(
        s, &s->urgent,
        source_open_channel(s, s->m->peer_uri, CHANNEL_URGENT, 0, resume, err));
    if (!s->urgent) {
        return false;
    }
    /* Replies go out from the request thread alone: no send lock. */
    channel_set_single_sender(s->urgent);
    for (unsigned i = 0; i < s->nbulk; i++) {
        source_keep_channel(s, &s->bulk[i].ch,
                            source_open_channel(s, s->m->peer_uri, CHANNEL_BULK,
                                                i, resume, err));
        if (!s->bulk[i].ch) {
            return false;
        }
    }
    return true;
}

bool source_setup(struct source_session *s, GError **err)
{
    for (size_t i = 0; i < s->regions->n; i++) {
        if (!region_map_alias(&s->regions->regions[i], err)) {
            return false;
        }
        atomic_fetch_add(&s->m->stats.pages_total,
                         region_pages(&s->regions->regions[i]));
    }
    source_keep_channel(
        s, &s->control,
        source_open_channel(s, s->m->peer_uri, CHANNEL_CONTROL, 0, false, err));
    if (!s->control || !send_layout(s, err)) {
        return false;
    }
    return source_open_data_channels(s, false, err);
}
