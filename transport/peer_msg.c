/*
 * peer_msg.c - peer messages (proto/peer.proto) on a channel: packing one
 * into a FRAME_MSG frame, unpacking one, naming one.  See peer_msg.h.
 */
#include "peer_msg.h"

#include <gio/gio.h>

#include "transport_impl.h"

G_STATIC_ASSERT(CHANNEL_CONTROL ==
                (int)POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_CONTROL);
G_STATIC_ASSERT(CHANNEL_URGENT ==
                (int)POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_URGENT);
G_STATIC_ASSERT(CHANNEL_BULK ==
                (int)POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_BULK);

const char *peer_message_name(const PeerMessage *msg)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &postcopy__peer__peer_message__descriptor, msg->msg_case);

    return f ? f->name : "empty";
}

void peer_message_free(PeerMessage *msg)
{
    if (msg) {
        postcopy__peer__peer_message__free_unpacked(msg, NULL);
    }
}

bool channel_send_msg(struct channel *ch, const PeerMessage *msg, GError **err)
{
    size_t len = postcopy__peer__peer_message__get_packed_size(msg);
    struct frame_hdr hdr = {.type = FRAME_MSG, .len = len};
    struct iovec iov;
    bool ok;

    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG__NOT_SET) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s: refusing to send an empty message", ch->name);
        return false;
    }
    if (len > FRAME_MAX_MSG) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                    "%s: %s message of %zu bytes exceeds the limit of %u",
                    ch->name, peer_message_name(msg), len, FRAME_MAX_MSG);
        return false;
    }
    channel_send_lock(ch);
    if (ch->pack_cap < len) {
        g_free(ch->pack_buf);
        ch->pack_buf = g_malloc(len);
        ch->pack_cap = len;
    }
    iov.iov_base = ch->pack_buf;
    iov.iov_len = postcopy__peer__peer_message__pack(msg, ch->pack_buf);
    ok = channel_send_locked(ch, &hdr, &iov, 1, err);
    if (ch->pack_cap > CHANNEL_MSG_BUF_KEEP) {
        g_clear_pointer(&ch->pack_buf, g_free);
        ch->pack_cap = 0;
    }
    channel_send_unlock(ch);
    return ok;
}

PeerMessage *channel_read_msg(struct channel *ch, const struct frame_hdr *hdr,
                              GError **err)
{
    PeerMessage *msg;
    uint8_t *buf;

    if (hdr->type != FRAME_MSG || ch->payload_left != hdr->len) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s: no message frame is waiting to be read", ch->name);
        return NULL;
    }
    buf = channel_msg_buf(ch, hdr->len);
    if (!channel_recv_payload(ch, buf, hdr->len, err)) {
        return NULL;
    }
    msg = postcopy__peer__peer_message__unpack(NULL, hdr->len, buf);
    channel_msg_buf_trim(ch);
    /* The frame was whole, so the stream stays usable after these two. */
    if (!msg) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: undecodable %u-byte message", ch->name, hdr->len);
        return NULL;
    }
    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG__NOT_SET) {
        peer_message_free(msg);
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: message of a kind this build does not know", ch->name);
        return NULL;
    }
    return msg;
}

PeerMessage *channel_recv_msg(struct channel *ch, GError **err)
{
    struct frame_hdr hdr;

    do {
        if (!channel_recv_hdr(ch, &hdr, err)) {
            return NULL;
        }
    } while (hdr.type == FRAME_KEEPALIVE);
    if (hdr.type != FRAME_MSG) {
        ch->recv_broken = true;
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: expected a message frame, got a %s frame", ch->name,
                    frame_type_name(hdr.type));
        return NULL;
    }
    return channel_read_msg(ch, &hdr, err);
}
