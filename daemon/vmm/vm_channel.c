/* vm_channel.c - see vm_channel.h. */
#include "vm_channel.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <gio/gio.h>

#include "errno_error.h"
#include "iov.h"
#include "le.h"

bool vm_channel_parse_header(const uint8_t hdr[VM_CHANNEL_HDR_LEN],
                             enum vm_frame_type *type, uint32_t *len,
                             GError **err)
{
    uint32_t magic = get_le32(hdr);
    uint32_t l = get_le32(hdr + 4);
    uint32_t t = get_le32(hdr + 8);

    if (magic != VM_CHANNEL_MAGIC) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "attach socket: bad frame magic 0x%08x (expected 0x%08x)",
                    magic, VM_CHANNEL_MAGIC);
        return false;
    }
    if (t < VM_FRAME_HELLO || t > VM_FRAME_REPLY) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "attach socket: unknown frame type %u", t);
        return false;
    }
    if (l > VM_CHANNEL_MAX_LEN) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "attach socket: frame length %u exceeds the limit of %u", l,
                    VM_CHANNEL_MAX_LEN);
        return false;
    }
    *type = t;
    *len = l;
    return true;
}

static bool send_all(int sock, struct iovec *iov, int iovcnt, const int *fds,
                     size_t nfds, GError **err)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VM_CHANNEL_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {0};
    size_t fd_bytes = sizeof(int) * nfds;

    if (nfds > 0) {
        struct cmsghdr *c;

        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(fd_bytes);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(fd_bytes);
        memcpy(CMSG_DATA(c), fds, fd_bytes);
    }
    while (iovcnt > 0) {
        ssize_t n;

        msg.msg_iov = iov;
        msg.msg_iovlen = iovcnt;
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            errno_error(err, errno, "attach socket: send failed");
            return false;
        }
        /* The fds went with the first byte; never send them twice. */
        msg.msg_control = NULL;
        msg.msg_controllen = 0;
        iov_advance(&iov, &iovcnt, n);
    }
    return true;
}

bool vm_channel_send(int sock, enum vm_frame_type type,
                     const ProtobufCMessage *msg, const int *fds, size_t nfds,
                     GError **err)
{
    uint8_t hdr[VM_CHANNEL_HDR_LEN];
    g_autofree uint8_t *body = NULL;
    size_t len = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    struct iovec iov[2];

    if (len > VM_CHANNEL_MAX_LEN) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                    "attach socket: message of %zu bytes exceeds the limit "
                    "of %u",
                    len, VM_CHANNEL_MAX_LEN);
        return false;
    }
    if (nfds > VM_CHANNEL_MAX_FDS) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "attach socket: %zu fds exceed the limit of %d", nfds,
                    VM_CHANNEL_MAX_FDS);
        return false;
    }
    put_le32(hdr, VM_CHANNEL_MAGIC);
    put_le32(hdr + 4, len);
    put_le32(hdr + 8, type);
    body = g_malloc(len ? len : 1);
    if (len) {
        protobuf_c_message_pack(msg, body);
    }
    iov[0] = (struct iovec){.iov_base = hdr, .iov_len = sizeof(hdr)};
    iov[1] = (struct iovec){.iov_base = body, .iov_len = len};
    return send_all(sock, iov, len ? 2 : 1, fds, nfds, err);
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/*
 * Take the SCM_RIGHTS fds of one recvmsg into @f.  Every fd is collected
 * (or closed) before deciding whether the frame is still good, so none is
 * left behind in the process.
 */
static bool collect_fds(struct msghdr *msg, struct vm_frame *f, GError **err)
{
    bool too_many = false;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        size_t n;
        int *p;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        p = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, p + i, sizeof(fd));
            if (f->nfds < VM_CHANNEL_MAX_FDS) {
                f->fds[f->nfds++] = fd;
            } else {
                close(fd);
                too_many = true;
            }
        }
    }
    if (too_many || (msg->msg_flags & MSG_CTRUNC)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "attach socket: peer sent more than %d fds",
                    VM_CHANNEL_MAX_FDS);
        return false;
    }
    return true;
}

ssize_t vm_channel_recv_bytes(int sock, void *buf, size_t len,
                              struct vm_frame *f, GError **err)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VM_CHANNEL_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    ssize_t n;

    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        errno_error(err, errno, "attach socket: receive failed");
        return -1;
    }
    if (!collect_fds(&msg, f, err)) {
        return -1;
    }
    return n;
}

/*
 * Fill @buf completely.  @got counts bytes of the frame read before this
 * call, so EOF can tell "nothing sent" from "cut short".
 */
static bool recv_full(int sock, uint8_t *buf, size_t len, size_t got,
                      size_t frame_len, struct vm_frame *f, GError **err)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = vm_channel_recv_bytes(sock, buf + done, len - done, f, err);

        if (n < 0) {
            return false;
        }
        if (n == 0 && got + done == 0) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "attach socket: peer closed the attach socket");
            return false;
        }
        if (n == 0) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT,
                        "attach socket: truncated frame (got %zu of %zu "
                        "bytes)",
                        got + done, frame_len);
            return false;
        }
        done += n;
    }
    return true;
}

bool vm_channel_recv(int sock, struct vm_frame *frame, GError **err)
{
    uint8_t hdr[VM_CHANNEL_HDR_LEN];
    uint32_t len;

    memset(frame, 0, sizeof(*frame));
    if (!recv_full(sock, hdr, sizeof(hdr), 0, sizeof(hdr), frame, err)) {
        goto fail;
    }
    if (!vm_channel_parse_header(hdr, &frame->type, &len, err)) {
        goto fail;
    }
    frame->len = len;
    frame->body = g_malloc(len ? len : 1);
    if (!recv_full(sock, frame->body, len, sizeof(hdr), sizeof(hdr) + len,
                   frame, err)) {
        goto fail;
    }
    return true;

fail:
    vm_frame_clear(frame);
    return false;
}

void vm_frame_clear(struct vm_frame *frame)
{
    close_fds(frame->fds, frame->nfds);
    g_free(frame->body);
    memset(frame, 0, sizeof(*frame));
}
