/*
 * tcp.c - the TCP transport: one TCP connection per channel, IPv4 or IPv6.
 *
 * A frame goes out with sendmsg() of the header and the caller's payload
 * buffers.  A payload is received straight into the caller's memory,
 * except what a bulk channel read ahead: while its frames are small
 * (scattered 4 KiB pages, one frame each), a header's recv() takes as
 * much as has arrived, up to RX_CAP, and the frames after it are served
 * from there, one syscall for many frames.  After a big frame a header is
 * received alone again, so a stream of 1 MiB payloads goes straight into
 * the caller's memory (the first after small frames may have up to RX_CAP
 * of it copied).  channel_fd() is then a readiness signal only together
 * with channel_has_buffered(), as for TLS.  The sockets themselves
 * (resolving, connecting, listening, options) are tcp_socket.c.
 */
#include "transport_impl.h"
#include "address.h"
#include "tcp_socket.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <gio/gio.h>

#include "errno_error.h"
#include "iov.h"

/* sendmsg() iovecs that fit on the stack before we allocate. */
#define IOV_STACK 64

/*
 * Read-ahead: its size (15 frames of a 4 KiB page), and the largest
 * payload after which the next header reads ahead.  Past 16 KiB a copy
 * through the buffer costs more than the recv() it saves (~1 us).
 */
#define RX_CAP         (64u << 10)
#define RX_SMALL_FRAME (16u << 10)

struct tcp_channel {
    struct channel ch; /* first: the generic layer hands us &ch */
    int fd;
    int shut; /* atomic: channel_shutdown() was called */
    unsigned timeout_ms;
    /* A header that a receive timeout cut short, resumed on the next call. */
    uint8_t hdr_part[FRAME_HDR_LEN];
    size_t hdr_got;
    /*
     * With a timeout: when the frame under way (its first byte came) must
     * be in whole, monotonic us; 0: none.  SO_RCVTIMEO alone restarts on
     * every recv(), so a peer trickling bytes would never time out.
     */
    int64_t frame_deadline;
    /*
     * Bytes read ahead, not handed out yet: rx[rx_start, rx_end).
     * Allocated at the first read-ahead.  The receiving thread's alone,
     * like the header above.
     */
    uint8_t *rx;
    size_t rx_start, rx_end;
};

struct tcp_listener {
    struct listener l; /* first, as above */
    int fd;
    struct transport_options opts;
};

static struct tcp_channel *tcp_channel(const struct channel *ch)
{
    return (struct tcp_channel *)ch;
}

static bool send_error(struct tcp_channel *t, int e, size_t sent, size_t total,
                       GError **err)
{
    if (g_atomic_int_get(&t->shut)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "channel shut down while sending (%zu of %zu bytes sent)",
                    sent, total);
        return false;
    }
    if (e == EAGAIN || e == EWOULDBLOCK) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "send timed out after %u ms (%zu of %zu bytes sent)",
                    t->timeout_ms, sent, total);
        return false;
    }
    return errno_error(err, e, "send (%zu of %zu bytes sent)", sent, total);
}

static bool send_all(struct tcp_channel *t, struct iovec *iov, int niov,
                     size_t total, GError **err)
{
    size_t sent = 0;

    while (sent < total) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = MIN(niov, IOV_MAX)};
        ssize_t n = sendmsg(t->fd, &mh, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return send_error(t, errno, sent, total, err);
        }
        sent += n;
        iov_advance(&iov, &niov, n);
    }
    return true;
}

static bool tcp_send_frame(struct channel *ch, const uint8_t hdr[FRAME_HDR_LEN],
                           const struct iovec *payload, int niov, size_t len,
                           GError **err)
{
    struct iovec stack[IOV_STACK];
    g_autofree struct iovec *heap = NULL;
    struct iovec *iov = stack;

    if (niov + 1 > IOV_STACK) {
        iov = heap = g_new(struct iovec, niov + 1);
    }
    /* sendmsg() advances through a copy: the caller's iovecs stay const. */
    iov[0] = (struct iovec){.iov_base = (void *)hdr, .iov_len = FRAME_HDR_LEN};
    if (niov) {
        memcpy(iov + 1, payload, niov * sizeof(*iov));
    }
    return send_all(tcp_channel(ch), iov, niov + 1, FRAME_HDR_LEN + len, err);
}

static bool tcp_send_frames(struct channel *ch, struct iovec *iov, int niov,
                            size_t len, GError **err)
{
    return send_all(tcp_channel(ch), iov, niov, len, err);
}

/*
 * The header with MSG_MORE (it leaves in the same segment as the data),
 * then the file's bytes by sendfile: the page cache's pages go to the
 * socket without passing through this process.
 */
static bool tcp_send_frame_file(struct channel *ch,
                                const uint8_t hdr[FRAME_HDR_LEN], int fd,
                                uint64_t off, size_t len, GError **err)
{
    struct tcp_channel *t = tcp_channel(ch);
    size_t total = FRAME_HDR_LEN + len, sent = 0;
    off_t pos = (off_t)off;

    while (sent < FRAME_HDR_LEN) {
        ssize_t n = send(t->fd, hdr + sent, FRAME_HDR_LEN - sent,
                         MSG_NOSIGNAL | MSG_MORE);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return send_error(t, errno, sent, total, err);
        }
        sent += n;
    }
    while (sent < total) {
        ssize_t n = sendfile(t->fd, fd, &pos, total - sent);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return send_error(t, errno, sent, total, err);
        }
        if (n == 0) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "send: the file ends at %" G_GINT64_FORMAT
                        " (%zu of %zu bytes sent)",
                        (gint64)pos, sent, total);
            return false;
        }
        sent += n;
    }
    return true;
}

enum recv_end {
    RECV_OK,
    RECV_EOF,
    RECV_ERROR, /* errno in *e */
};

/* Readable before @deadline (monotonic us)?  Else *@e is why: EAGAIN. */
static bool wait_readable(int fd, int64_t deadline, int *e)
{
    int64_t left_us = deadline - g_get_monotonic_time();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;

    if (left_us <= 0) {
        *e = EAGAIN;
        return false;
    }
    r = poll(&p, 1, (left_us + 999) / 1000);
    if (r < 0 && errno != EINTR) {
        *e = errno;
        return false;
    }
    if (r == 0) {
        *e = EAGAIN;
        return false;
    }
    return true;
}

/*
 * Receive into @buf until *@got reaches @min, taking up to @cap of what
 * is there, by @deadline if not 0 (else each recv() waits as long as
 * SO_RCVTIMEO says); *@got counts what arrived, also on failure.
 */
static enum recv_end recv_some(int fd, uint8_t *buf, size_t min, size_t cap,
                               size_t *got, int64_t deadline, int *e)
{
    int flags = deadline ? MSG_DONTWAIT : min == cap ? MSG_WAITALL : 0;

    while (*got < min) {
        ssize_t n;

        if (deadline && !wait_readable(fd, deadline, e)) {
            return RECV_ERROR;
        }
        n = recv(fd, buf + *got, cap - *got, flags);
        if (n > 0) {
            *got += n;
        } else if (n == 0) {
            return RECV_EOF;
        } else if (errno != EINTR && !(deadline && errno == EAGAIN)) {
            *e = errno;
            return RECV_ERROR;
        }
    }
    return RECV_OK;
}

/* Fill @buf up to @len, as recv_some(). */
static enum recv_end recv_full(int fd, uint8_t *buf, size_t len, size_t *got,
                               int64_t deadline, int *e)
{
    return recv_some(fd, buf, len, len, got, deadline, e);
}

static size_t rx_held(const struct tcp_channel *t)
{
    return t->rx_end - t->rx_start;
}

/* Move up to @len read-ahead bytes to @dst; how many. */
static size_t rx_take(struct tcp_channel *t, uint8_t *dst, size_t len)
{
    size_t n = MIN(len, rx_held(t));

    if (!n) {
        return 0;
    }
    memcpy(dst, t->rx + t->rx_start, n);
    t->rx_start += n;
    if (t->rx_start == t->rx_end) {
        t->rx_start = t->rx_end = 0;
    }
    return n;
}

/*
 * Read ahead for this header?  Bulk channels only: there runs of small
 * frames queue up behind the one being read.  On urgent a vCPU waits for
 * each reply, which mostly comes alone: reading ahead would save no
 * syscall there and add a copy of the page; control carries few frames.
 * And only after a small frame, so that a stream of big ones goes
 * straight into the caller's memory.  ch.payload_len is the previous
 * frame's (channel.c), 0 before the first: a new bulk stream reads ahead,
 * its first big frame stops that at the cost of one buffer's copy.
 */
static bool rx_wanted(const struct tcp_channel *t)
{
    return t->ch.kind == CHANNEL_BULK && t->ch.payload_len <= RX_SMALL_FRAME;
}

/*
 * Receive until hdr_got reaches @want (bytes of the header): read ahead,
 * or exactly the bytes missing.  Called with nothing read ahead held.
 */
static enum recv_end hdr_fill(struct tcp_channel *t, size_t want,
                              int64_t deadline, int *e)
{
    size_t got = 0;
    enum recv_end end;

    if (!rx_wanted(t)) {
        return recv_full(t->fd, t->hdr_part, want, &t->hdr_got, deadline, e);
    }
    if (!t->rx) {
        t->rx = g_malloc(RX_CAP);
    }
    end = recv_some(t->fd, t->rx, want - t->hdr_got, RX_CAP, &got, deadline, e);
    t->rx_start = 0;
    t->rx_end = got;
    /* On failure this is all of it: what the error counts. */
    t->hdr_got +=
        rx_take(t, t->hdr_part + t->hdr_got, FRAME_HDR_LEN - t->hdr_got);
    return end;
}

static bool recv_hdr_error(struct tcp_channel *t, enum recv_end end, int e,
                           GError **err)
{
    size_t got = t->hdr_got;

    if (g_atomic_int_get(&t->shut)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "channel shut down while receiving");
    } else if (end == RECV_EOF && got == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "peer closed the connection");
    } else if (end == RECV_EOF) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "truncated frame: peer closed the connection after %zu "
                    "of %u header bytes",
                    got, FRAME_HDR_LEN);
    } else if ((e == EAGAIN || e == EWOULDBLOCK) && got == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "no frame within %u ms", t->timeout_ms);
    } else if (e == EAGAIN || e == EWOULDBLOCK) {
        /* Not TIMED_OUT: a frame begun and not finished breaks the stream. */
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT,
                    "timed out after %u ms inside a frame (%zu of %u header "
                    "bytes)",
                    t->timeout_ms, got, FRAME_HDR_LEN);
    } else {
        errno_error(err, e, "receive (%zu of %u header bytes)", got,
                    FRAME_HDR_LEN);
    }
    return false;
}

static bool tcp_recv_hdr(struct channel *ch, uint8_t hdr[FRAME_HDR_LEN],
                         GError **err)
{
    struct tcp_channel *t = tcp_channel(ch);
    enum recv_end end = RECV_OK;
    int e = 0;

    /*
     * With a timeout, the first byte may take that long, and the rest of
     * the frame as long again; a byte read ahead has come.  Without one
     * (data channels) one recv().
     */
    if (t->hdr_got == 0) {
        t->frame_deadline = 0;
    }
    t->hdr_got +=
        rx_take(t, t->hdr_part + t->hdr_got, FRAME_HDR_LEN - t->hdr_got);
    if (t->hdr_got == 0 && t->timeout_ms) {
        end = hdr_fill(t, 1, 0, &e);
    }
    if (end == RECV_OK && t->timeout_ms && !t->frame_deadline) {
        t->frame_deadline =
            g_get_monotonic_time() + t->timeout_ms * G_TIME_SPAN_MILLISECOND;
    }
    if (end == RECV_OK && t->hdr_got < FRAME_HDR_LEN) {
        end = hdr_fill(t, FRAME_HDR_LEN, t->frame_deadline, &e);
    }
    if (end != RECV_OK) {
        return recv_hdr_error(t, end, e, err);
    }
    memcpy(hdr, t->hdr_part, FRAME_HDR_LEN);
    t->hdr_got = 0;
    return true;
}

/* What was read ahead first, then the rest straight into @dst. */
static bool tcp_recv_payload(struct channel *ch, void *dst, size_t len,
                             GError **err)
{
    struct tcp_channel *t = tcp_channel(ch);
    size_t got = rx_take(t, dst, len);
    int e = 0;
    enum recv_end end = recv_full(t->fd, dst, len, &got, t->frame_deadline, &e);
    size_t done = ch->payload_len - ch->payload_left + got;

    if (end == RECV_OK) {
        return true;
    }
    if (g_atomic_int_get(&t->shut)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "channel shut down while receiving");
    } else if (end == RECV_EOF) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "truncated frame: peer closed the connection after %zu "
                    "of %u payload bytes",
                    done, ch->payload_len);
    } else if (e == EAGAIN || e == EWOULDBLOCK) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "timed out after %u ms inside a frame (%zu of %u payload "
                    "bytes)",
                    t->timeout_ms, done, ch->payload_len);
    } else {
        errno_error(err, e, "receive (%zu of %u payload bytes)", done,
                    ch->payload_len);
    }
    return false;
}

static bool tcp_set_kind(struct channel *ch, enum channel_kind kind,
                         GError **err)
{
    /* Bulk buffers were set on the listener, before the handshake. */
    return tcp_socket_tune_kind(tcp_channel(ch)->fd, kind, err);
}

static bool tcp_set_timeout(struct channel *ch, unsigned timeout_ms,
                            GError **err)
{
    struct tcp_channel *t = tcp_channel(ch);

    if (!tcp_socket_set_timeout(t->fd, timeout_ms, err)) {
        return false;
    }
    t->timeout_ms = timeout_ms;
    return true;
}

static bool tcp_set_send_buffer(struct channel *ch, unsigned bytes,
                                GError **err)
{
    return tcp_socket_set_send_buffer(tcp_channel(ch)->fd, bytes, err);
}

static int tcp_fd(const struct channel *ch)
{
    return tcp_channel(ch)->fd;
}

static bool tcp_buffered(const struct channel *ch)
{
    return rx_held(tcp_channel(ch)) > 0;
}

static void tcp_shutdown(struct channel *ch)
{
    struct tcp_channel *t = tcp_channel(ch);

    g_atomic_int_set(&t->shut, 1);
    shutdown(t->fd, SHUT_RDWR);
}

static void tcp_destroy(struct channel *ch)
{
    struct tcp_channel *t = tcp_channel(ch);

    close(t->fd);
    g_free(t->rx);
    g_free(t);
}

static const struct channel_ops tcp_channel_ops = {
    .send_frame = tcp_send_frame,
    .send_frames = tcp_send_frames,
    .send_frame_file = tcp_send_frame_file,
    .recv_hdr = tcp_recv_hdr,
    .recv_payload = tcp_recv_payload,
    .set_kind = tcp_set_kind,
    .set_timeout = tcp_set_timeout,
    .set_send_buffer = tcp_set_send_buffer,
    .fd = tcp_fd,
    .buffered = tcp_buffered,
    .shutdown = tcp_shutdown,
    .destroy = tcp_destroy,
};

static struct channel *tcp_channel_new(int fd, enum channel_kind kind,
                                       uint32_t stream, bool outgoing)
{
    struct tcp_channel *t = g_new0(struct tcp_channel, 1);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    g_autofree char *peer = NULL;

    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        peer = address_format((struct sockaddr *)&ss, len);
    } else {
        peer = g_strdup_printf("(unknown peer: %s)", g_strerror(errno));
    }
    t->fd = fd;
    channel_init(&t->ch, &tcp_channel_ops, kind, stream, outgoing, peer);
    return &t->ch;
}

static struct channel *tcp_connect(const char *address, enum channel_kind kind,
                                   uint32_t stream,
                                   const struct transport_options *o,
                                   GError **err)
{
    int fd = tcp_socket_connect(address, kind, o, err);

    return fd < 0 ? NULL : tcp_channel_new(fd, kind, stream, true);
}

static int tcp_listener_fd(const struct listener *l)
{
    return ((const struct tcp_listener *)l)->fd;
}

/* The listening socket is non-blocking so a poll()ing caller never hangs. */
static struct channel *tcp_accept(struct listener *l, GError **err)
{
    struct tcp_listener *tl = (struct tcp_listener *)l;
    struct pollfd pfd = {.fd = tl->fd, .events = POLLIN};
    int fd;

    for (;;) {
        fd = accept4(tl->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            break;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            errno_error(err, errno, "accept");
            return NULL;
        }
        if (errno == EAGAIN && poll(&pfd, 1, -1) < 0 && errno != EINTR) {
            errno_error(err, errno, "poll");
            return NULL;
        }
    }
    if (!tcp_socket_tune(fd, &tl->opts, err)) {
        close(fd);
        return NULL;
    }
    return tcp_channel_new(fd, CHANNEL_NONE, 0, false);
}

static void tcp_listener_destroy(struct listener *l)
{
    struct tcp_listener *tl = (struct tcp_listener *)l;

    close(tl->fd);
    g_free(tl);
}

static const struct listener_ops tcp_listener_ops = {
    .accept = tcp_accept,
    .fd = tcp_listener_fd,
    .destroy = tcp_listener_destroy,
};

static struct listener *
tcp_listen(const char *address, const struct transport_options *o, GError **err)
{
    g_autofree char *bound = NULL;
    struct tcp_listener *tl;
    int fd = tcp_socket_listen(address, o, &bound, err);

    if (fd < 0) {
        return NULL;
    }
    tl = g_new0(struct tcp_listener, 1);
    tl->fd = fd;
    tl->opts = *o;
    listener_init(&tl->l, &tcp_listener_ops, bound);
    return &tl->l;
}

static const struct transport tcp_transport = {
    .name = "tcp",
    .listen = tcp_listen,
    .connect = tcp_connect,
};

const struct transport *transport_tcp(void)
{
    return &tcp_transport;
}
