/*
 * channel.c - the transport-neutral half of a channel (transport.h has the
 * contract, transport_impl.h the split with the transports): validation,
 * the send lock, payload accounting, error prefixes.  Peer messages are
 * in peer_msg.c.
 */
#include "transport_impl.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <gio/gio.h>

#define DISCARD_CHUNK (64u << 10)

const char *channel_kind_name(enum channel_kind kind)
{
    switch (kind) {
    case CHANNEL_NONE:
        return "new";
    case CHANNEL_CONTROL:
        return "control";
    case CHANNEL_URGENT:
        return "urgent";
    case CHANNEL_BULK:
        return "bulk";
    }
    return "unknown";
}

static char *make_name(const struct channel *ch)
{
    const char *dir = ch->outgoing ? "to" : "from";

    if (ch->kind == CHANNEL_BULK) {
        return g_strdup_printf("bulk channel %u %s %s", ch->stream, dir,
                               ch->peer);
    }
    return g_strdup_printf("%s channel %s %s", channel_kind_name(ch->kind), dir,
                           ch->peer);
}

void channel_init(struct channel *ch, const struct channel_ops *ops,
                  enum channel_kind kind, uint32_t stream, bool outgoing,
                  const char *peer)
{
    ch->ops = ops;
    ch->kind = kind;
    ch->stream = stream;
    ch->outgoing = outgoing;
    ch->peer = g_strdup(peer);
    ch->name = make_name(ch);
    g_mutex_init(&ch->send_lock);
}

bool channel_set_kind(struct channel *ch, enum channel_kind kind,
                      uint32_t stream, GError **err)
{
    if (kind != CHANNEL_CONTROL && kind != CHANNEL_URGENT &&
        kind != CHANNEL_BULK) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s: invalid channel kind %d", ch->name, kind);
        return false;
    }
    if (!ch->ops->set_kind(ch, kind, err)) {
        g_prefix_error(err, "%s: ", ch->name);
        return false;
    }
    ch->kind = kind;
    ch->stream = stream;
    g_free(ch->name);
    ch->name = make_name(ch);
    return true;
}

bool channel_set_send_buffer(struct channel *ch, unsigned bytes, GError **err)
{
    if (!ch->ops->set_send_buffer) {
        return true;
    }
    if (!ch->ops->set_send_buffer(ch, bytes, err)) {
        g_prefix_error(err, "%s: ", ch->name);
        return false;
    }
    return true;
}

enum channel_kind channel_kind(const struct channel *ch)
{
    return ch->kind;
}

uint32_t channel_stream(const struct channel *ch)
{
    return ch->stream;
}

const char *channel_peer(const struct channel *ch)
{
    return ch->peer;
}

int channel_fd(const struct channel *ch)
{
    return ch->ops->fd(ch);
}

bool channel_has_buffered(const struct channel *ch)
{
    return ch->ops->buffered && ch->ops->buffered(ch);
}

bool channel_spin_readable(const struct channel *ch, unsigned spin_us,
                           bool yield)
{
    struct pollfd p = {.fd = channel_fd(ch), .events = POLLIN};
    int64_t end;

    if (p.fd < 0 || channel_has_buffered(ch)) {
        return true;
    }
    end = g_get_monotonic_time() + spin_us;
    do {
        if (poll(&p, 1, 0) > 0) {
            return true;
        }
        if (yield) {
            sched_yield();
        }
    } while (g_get_monotonic_time() < end);
    return false;
}

bool channel_peer_closed(const struct channel *ch)
{
    struct pollfd p = {.fd = channel_fd(ch), .events = POLLRDHUP};

    if (ch->ops->peer_closed) {
        return ch->ops->peer_closed(ch);
    }
    return p.fd >= 0 && poll(&p, 1, 0) == 1 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

int channel_wait_any(struct channel *const *chs, int n, int timeout_ms)
{
    struct pollfd p[CHANNEL_WAIT_MAX];
    int r;

    g_assert(n > 0 && n <= CHANNEL_WAIT_MAX);
    for (int i = 0; i < n; i++) {
        if (channel_has_buffered(chs[i])) {
            return i;
        }
        p[i] = (struct pollfd){.fd = channel_fd(chs[i]),
                               .events = POLLIN | POLLRDHUP};
    }
    do {
        r = poll(p, n, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        return r < 0 ? -1 : n;
    }
    for (int i = 0; i < n; i++) {
        if (p[i].revents) {
            return i;
        }
    }
    return n;
}

bool channel_set_timeout(struct channel *ch, unsigned timeout_ms, GError **err)
{
    if (!ch->ops->set_timeout(ch, timeout_ms, err)) {
        g_prefix_error(err, "%s: ", ch->name);
        return false;
    }
    ch->timeout_ms = timeout_ms;
    return true;
}

void channel_set_deadline(struct channel *ch, int64_t deadline)
{
    ch->deadline = deadline;
    if (!deadline) {
        ch->ops->set_timeout(ch, ch->timeout_ms, NULL);
    }
}

static bool deadline_passed(struct channel *ch, GError **err)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                "%s: handshake not finished in time", ch->name);
    ch->recv_broken = true;
    return false;
}

/* The timeout for the next header: no later than the deadline. */
static bool deadline_apply(struct channel *ch, GError **err)
{
    int64_t left_ms = (ch->deadline - g_get_monotonic_time() + 999) / 1000;

    if (left_ms <= 0) {
        return deadline_passed(ch, err);
    }
    if (ch->timeout_ms && ch->timeout_ms < left_ms) {
        left_ms = ch->timeout_ms;
    }
    if (!ch->ops->set_timeout(ch, left_ms, err)) {
        g_prefix_error(err, "%s: ", ch->name);
        return false;
    }
    return true;
}

/* Do the buffers hold exactly @len bytes? */
static bool iov_holds(const struct iovec *iov, int niov, uint32_t len)
{
    size_t total = 0;

    for (int i = 0; i < niov; i++) {
        if (iov[i].iov_len > len - total) {
            return false;
        }
        total += iov[i].iov_len;
    }
    return total == len;
}

void channel_set_single_sender(struct channel *ch)
{
    ch->single_sender = true;
}

/* Frames go out whole: one sender at a time, by the lock or by promise. */
void channel_send_lock(struct channel *ch)
{
    if (!ch->single_sender) {
        g_mutex_lock(&ch->send_lock);
    }
}

void channel_send_unlock(struct channel *ch)
{
    if (!ch->single_sender) {
        g_mutex_unlock(&ch->send_lock);
    }
}

/* Under the send lock: a channel whose stream a failed send unframed sends
 * nothing more. */
static bool send_usable(struct channel *ch, GError **err)
{
    if (ch->send_broken) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                    "%s: cannot send after an earlier send error", ch->name);
        return false;
    }
    return true;
}

/* After a transport's send: on failure part of a frame may be out. */
static bool send_done(struct channel *ch, bool ok, GError *local, GError **err)
{
    if (!ok) {
        ch->send_broken = true;
        g_propagate_prefixed_error(err, local, "%s: ", ch->name);
    }
    return ok;
}

bool channel_send_locked(struct channel *ch, const struct frame_hdr *hdr,
                         const struct iovec *payload, int niov, GError **err)
{
    uint8_t buf[FRAME_HDR_LEN];
    GError *local = NULL;
    bool ok;

    if (!send_usable(ch, err)) {
        return false;
    }
    frame_encode(hdr, buf);
    ok = ch->ops->send_frame(ch, buf, payload, niov, hdr->len, &local);
    return send_done(ch, ok, local, err);
}

static bool frame_sendable(struct channel *ch, const struct frame_hdr *hdr,
                           const struct iovec *payload, int niov, GError **err)
{
    if (!frame_validate(hdr, err)) {
        g_prefix_error(err, "%s: refusing to send: ", ch->name);
        return false;
    }
    if (niov < 0 || !iov_holds(payload, niov, hdr->len)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s: refusing to send: %s frame of %u payload bytes with "
                    "buffers of a different size",
                    ch->name, frame_type_name(hdr->type), hdr->len);
        return false;
    }
    return true;
}

bool channel_send_frame(struct channel *ch, const struct frame_hdr *hdr,
                        const struct iovec *payload, int niov, GError **err)
{
    bool ok;

    if (!frame_sendable(ch, hdr, payload, niov, err)) {
        return false;
    }
    channel_send_lock(ch);
    ok = channel_send_locked(ch, hdr, payload, niov, err);
    channel_send_unlock(ch);
    return ok;
}

/* Frames one by one, for a transport that cannot take them in one write. */
static bool send_frames_each(struct channel *ch, const struct frame_hdr *hdrs,
                             const struct iovec *payloads, int n, GError **err)
{
    for (int i = 0; i < n; i++) {
        if (!channel_send_locked(ch, &hdrs[i], &payloads[i],
                                 payloads[i].iov_len ? 1 : 0, err)) {
            return false;
        }
    }
    return true;
}

bool channel_send_frames(struct channel *ch, const struct frame_hdr *hdrs,
                         const struct iovec *payloads, int n, GError **err)
{
    uint8_t enc[CHANNEL_SEND_FRAMES_MAX][FRAME_HDR_LEN];
    struct iovec iov[2 * CHANNEL_SEND_FRAMES_MAX];
    GError *local = NULL;
    size_t len = 0;
    int niov = 0;
    bool ok;

    g_return_val_if_fail(n >= 0 && n <= CHANNEL_SEND_FRAMES_MAX, false);
    for (int i = 0; i < n; i++) {
        if (!frame_sendable(ch, &hdrs[i], &payloads[i], 1, err)) {
            return false;
        }
        frame_encode(&hdrs[i], enc[i]);
        iov[niov++] =
            (struct iovec){.iov_base = enc[i], .iov_len = FRAME_HDR_LEN};
        if (hdrs[i].len) {
            iov[niov++] = payloads[i];
        }
        len += FRAME_HDR_LEN + hdrs[i].len;
    }
    channel_send_lock(ch);
    if (!ch->ops->send_frames) {
        ok = send_frames_each(ch, hdrs, payloads, n, err);
    } else if (send_usable(ch, err)) {
        ok = ch->ops->send_frames(ch, iov, niov, len, &local);
        ok = send_done(ch, ok, local, err);
    } else {
        ok = false;
    }
    channel_send_unlock(ch);
    return ok;
}

bool channel_can_send_file(const struct channel *ch)
{
    return ch->ops->send_frame_file != NULL;
}

bool channel_send_frame_file(struct channel *ch, const struct frame_hdr *hdr,
                             int fd, uint64_t off, GError **err)
{
    uint8_t buf[FRAME_HDR_LEN];
    GError *local = NULL;
    bool ok = false;

    g_return_val_if_fail(channel_can_send_file(ch), false);
    if (!frame_validate(hdr, err)) {
        g_prefix_error(err, "%s: refusing to send: ", ch->name);
        return false;
    }
    frame_encode(hdr, buf);
    channel_send_lock(ch);
    if (send_usable(ch, err)) {
        ok = ch->ops->send_frame_file(ch, buf, fd, off, hdr->len, &local);
        ok = send_done(ch, ok, local, err);
    }
    channel_send_unlock(ch);
    return ok;
}

static bool recv_usable(struct channel *ch, GError **err)
{
    if (ch->recv_broken) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                    "%s: cannot receive after an earlier receive error",
                    ch->name);
        return false;
    }
    return true;
}

bool channel_recv_hdr(struct channel *ch, struct frame_hdr *hdr, GError **err)
{
    uint8_t buf[FRAME_HDR_LEN];
    GError *local = NULL;

    if (!recv_usable(ch, err)) {
        return false;
    }
    if (ch->deadline && !deadline_apply(ch, err)) {
        return false;
    }
    if (ch->payload_left) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "%s: %u payload bytes of the previous frame not consumed",
                    ch->name, ch->payload_left);
        return false;
    }
    if (!ch->ops->recv_hdr(ch, buf, &local)) {
        /* The timeout the deadline shortened: say which one fired. */
        if (ch->deadline && g_get_monotonic_time() >= ch->deadline) {
            g_error_free(local);
            return deadline_passed(ch, err);
        }
        /* Waiting for a header that has not come is not a broken stream. */
        if (!g_error_matches(local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
            ch->recv_broken = true;
        }
        g_propagate_prefixed_error(err, local, "%s: ", ch->name);
        return false;
    }
    if (!frame_decode(buf, hdr, err)) {
        ch->recv_broken = true;
        g_prefix_error(err, "%s: ", ch->name);
        return false;
    }
    ch->payload_len = ch->payload_left = hdr->len;
    return true;
}

bool channel_recv_payload(struct channel *ch, void *dst, size_t len,
                          GError **err)
{
    if (!recv_usable(ch, err)) {
        return false;
    }
    if (len > ch->payload_left) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s: asked for %zu payload bytes, the frame has %u left",
                    ch->name, len, ch->payload_left);
        return false;
    }
    if (len && !ch->ops->recv_payload(ch, dst, len, err)) {
        ch->recv_broken = true;
        g_prefix_error(err, "%s: ", ch->name);
        return false;
    }
    ch->payload_left -= len;
    return true;
}

size_t channel_payload_left(const struct channel *ch)
{
    return ch->payload_left;
}

uint8_t *channel_msg_buf(struct channel *ch, size_t len)
{
    if (ch->msg_cap < len) {
        g_free(ch->msg_buf);
        ch->msg_buf = g_malloc(len);
        ch->msg_cap = len;
    }
    return ch->msg_buf;
}

void channel_msg_buf_trim(struct channel *ch)
{
    if (ch->msg_cap > CHANNEL_MSG_BUF_KEEP) {
        g_clear_pointer(&ch->msg_buf, g_free);
        ch->msg_cap = 0;
    }
}

bool channel_discard_payload(struct channel *ch, GError **err)
{
    uint8_t *buf = channel_msg_buf(ch, DISCARD_CHUNK);

    while (ch->payload_left) {
        if (!channel_recv_payload(ch, buf, MIN(ch->payload_left, DISCARD_CHUNK),
                                  err)) {
            return false;
        }
    }
    return true;
}

void channel_shutdown(struct channel *ch)
{
    ch->ops->shutdown(ch);
}

void channel_close(struct channel *ch)
{
    if (!ch) {
        return;
    }
    g_mutex_clear(&ch->send_lock);
    g_free(ch->peer);
    g_free(ch->name);
    g_free(ch->pack_buf);
    g_free(ch->msg_buf);
    ch->ops->destroy(ch);
}
