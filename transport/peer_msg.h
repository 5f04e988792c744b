/*
 * peer_msg.h - the engine's peer messages (proto/peer.proto) on a channel:
 * the protocol version, the Hello capabilities, and sending, receiving and
 * naming a PeerMessage.  transport.h moves frames and knows nothing of
 * protobuf; this header is where the two meet.
 *
 * Threads and errors as in transport.h: sending a message is sending one
 * frame; receiving one is receiving a header and its payload.
 */
#ifndef POSTCOPYD_PEER_MSG_H
#define POSTCOPYD_PEER_MSG_H

#include <stdbool.h>
#include <glib.h>

#include "peer.pb-c.h"
#include "transport.h"

/* The version Hello.version carries; docs/protocol.md says what changed. */
#define PEER_PROTOCOL_VERSION 2

/* Hello.capabilities: pages may travel as FRAME_PAGE_ZERO... */
#define PEER_CAP_ZERO_PAGE "zero-page"
/* ...hugetlbfs regions are supported... */
#define PEER_CAP_HUGETLBFS "hugetlbfs"
/* ...and installed with UFFDIO_CONTINUE (MINOR faults). */
#define PEER_CAP_MINOR "minor"

typedef Postcopy__Peer__PeerMessage PeerMessage;

typedef Postcopy__Peer__PeerMessage PeerMessage;

/* Pack @msg into a FRAME_MSG frame and send it. */
bool channel_send_msg(struct channel *ch, const PeerMessage *msg, GError **err);
/*
 * The next message, skipping keepalives; any other frame is a protocol
 * error.  Free the result with peer_message_free().
 */
PeerMessage *channel_recv_msg(struct channel *ch, GError **err);
/* Unpack the payload of a FRAME_MSG header just received. */
PeerMessage *channel_read_msg(struct channel *ch, const struct frame_hdr *hdr,
                              GError **err);
/* "hello", "layout_reply", ...: which message of the oneof @msg is. */
const char *peer_message_name(const PeerMessage *msg);
void peer_message_free(PeerMessage *msg);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PeerMessage, peer_message_free)

#endif /* POSTCOPYD_PEER_MSG_H */
