/*
 * vm_channel.h - framing on the attach socket between a VMM and postcopyd.
 *
 * A frame is a 12-byte little-endian header { magic "PCAT", length, type }
 * then `length` bytes of protobuf (proto/attach.proto).  File descriptors
 * ride along with SCM_RIGHTS on the first byte of a frame.  Receiving
 * checks the magic, the type and the length limit before reading the body
 * and reports a clear error for short reads; received fds that exceed
 * @max_fds or arrive with a bad frame are closed, never leaked.
 */
#ifndef POSTCOPYD_VM_CHANNEL_H
#define POSTCOPYD_VM_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>
#include <protobuf-c/protobuf-c.h>

#define VM_CHANNEL_MAGIC   0x54414350u /* "PCAT" */
#define VM_CHANNEL_HDR_LEN 12
#define VM_CHANNEL_MAX_LEN (64u << 20)
#define VM_CHANNEL_MAX_FDS 32

enum vm_frame_type {
    VM_FRAME_HELLO = 1,
    VM_FRAME_COMMAND = 2,
    VM_FRAME_REPLY = 3,
};

struct vm_frame {
    enum vm_frame_type type;
    uint8_t *body; /* g_malloc'd; g_free() it */
    size_t len;
    int fds[VM_CHANNEL_MAX_FDS];
    size_t nfds;
};

bool vm_channel_send(int sock, enum vm_frame_type type,
                     const ProtobufCMessage *msg, const int *fds, size_t nfds,
                     GError **err);
/*
 * Receive one frame (blocking).  Returns false with a message on EOF
 * ("peer closed"), bad magic, unknown type, oversize length, or a short
 * read.  On success the caller owns frame->body and frame->fds.
 */
bool vm_channel_recv(int sock, struct vm_frame *frame, GError **err);
void vm_frame_clear(struct vm_frame *frame);

/*
 * One recvmsg of up to @len raw bytes, for a peer that does not frame (the
 * Firecracker handshake): fds that come with them are added to @frame.
 * Returns the byte count, 0 on EOF, -1 with @err set.
 */
ssize_t vm_channel_recv_bytes(int sock, void *buf, size_t len,
                              struct vm_frame *frame, GError **err);

/* Parse a little-endian header; false with a message when it is bad. */
bool vm_channel_parse_header(const uint8_t hdr[VM_CHANNEL_HDR_LEN],
                             enum vm_frame_type *type, uint32_t *len,
                             GError **err);

#endif /* POSTCOPYD_VM_CHANNEL_H */
