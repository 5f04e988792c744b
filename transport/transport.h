/*
 * transport.h - what the migration engine sees of the network: listeners
 * and channels that carry frames (frame.h) between two postcopyd.  TCP
 * (tcp.c) and RDMA (rdma.c) implement it; the engine never learns which, and no
 * descriptor escapes but channel_fd(), which may be -1.  What travels in a
 * FRAME_MSG frame (protobuf) is peer_msg.h's business, not this file's.
 *
 * Threads: any number of threads may send on a channel; each frame goes out
 * whole before the next one starts.  One thread at a time receives: a
 * header with channel_recv_hdr(), then exactly that frame's payload with
 * channel_recv_payload() / channel_discard_payload(), or channel_recv_msg()
 * (peer_msg.h) for both.  One sender and one receiver may run at the same time.
 * channel_shutdown() may be called from any thread and wakes both;
 * channel_close() only when no thread uses the channel any more.
 *
 * Errors are G_IO_ERROR codes with the channel in the message ("urgent
 * channel to 10.0.0.2:4000: ..."): INVALID_DATA for a bad frame from the
 * peer, CONNECTION_CLOSED when it went away (a "truncated frame" when that
 * happened mid-frame), TIMED_OUT after channel_set_timeout().  A receive
 * error leaves the receive side unusable, except a timeout while waiting
 * for a header; a send error leaves the send side unusable.  Either way
 * the other direction still works, so an Error can still be sent.
 */
#ifndef POSTCOPYD_TRANSPORT_H
#define POSTCOPYD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>

#include "frame.h"

/* Numbered like ChannelKind in proto/peer.proto. */
enum channel_kind {
    CHANNEL_NONE = 0, /* accepted, Hello not read yet */
    CHANNEL_CONTROL = 1,
    CHANNEL_URGENT = 2,
    CHANNEL_BULK = 3,
};

/*
 * Security every channel gets inside transport_connect() (client side) and
 * listener_handshake() (server side), whatever the transport: TLS first,
 * then the pre-shared-key authentication.  The engine never layers it.
 * Both live as long as every listener and channel made with them.
 */
struct transport_security {
    const struct tls_context *tls; /* NULL: no TLS (tls.h) */
    const struct auth_key *psk;    /* NULL or empty: no auth (auth.h) */
};

/* TCP's own knobs; another transport brings its own struct. */
struct tcp_options {
    /*
     * Link-failure detection.  TCP_USER_TIMEOUT drops a connection whose
     * sent data stays unacknowledged this long (0: the kernel's ~15 min);
     * keepalive probes a link idle for keepalive_idle_s (0: none).
     */
    unsigned user_timeout_ms;
    unsigned keepalive_idle_s;
    unsigned keepalive_interval_s;
    unsigned keepalive_count;
    /*
     * SO_SNDBUF/SO_RCVBUF for bulk channels (and, on the listening side,
     * for every accepted one: the window scale is fixed before the peer
     * says what it is).  0 keeps Linux's autotuning, usually better: a set
     * size turns autotuning off, and without CAP_NET_ADMIN it is capped at
     * net.core.[rw]mem_max.
     */
    unsigned bulk_buffer_bytes;
};

struct transport_options {
    /* For every transport. */
    unsigned connect_timeout_ms; /* 0: as long as the kernel tries */
    struct transport_security security;
    /* Per transport: each reads its own and ignores the others. */
    struct tcp_options tcp;
};

struct transport;
struct listener;
struct channel;
struct tls_context;
struct auth_key;

/*
 * Defaults: 10 s connect, no TLS, no auth; TCP: 30 s user timeout,
 * keepalive 10 s/5 s x3.
 */
void transport_options_init(struct transport_options *opts);

const struct transport *transport_tcp(void);
/*
 * The transport called @name ("tcp", "rdma" in a build with RDMA); an
 * error names the ones there are.
 */
const struct transport *transport_by_name(const char *name, GError **err);
const char *transport_name(const struct transport *t);
/*
 * Whether @t can run on this host (RDMA: a device is there), else why
 * not; listen and connect fail the same way.  Tests skip on it.
 */
bool transport_probe(const struct transport *t, GError **err);

/* Listen on "host:port" (":port" for every address; port 0 picks one). */
struct listener *transport_listen(const struct transport *t,
                                  const char *address,
                                  const struct transport_options *opts,
                                  GError **err);
/*
 * Connect to "host:port" as a channel of @kind (bulk: stream @stream), then
 * secure it as @opts->security says (TLS handshake, authentication, each
 * bounded by its own timeout); the channel comes back with no timeout set.
 */
struct channel *transport_connect(const struct transport *t,
                                  const char *address, enum channel_kind kind,
                                  uint32_t stream,
                                  const struct transport_options *opts,
                                  GError **err);

/*
 * Blocks until a peer connects; the channel's kind is CHANNEL_NONE.  It
 * is not secured yet: listener_handshake() it off the accepting thread,
 * so that a slow peer blocks no one.
 */
struct channel *listener_accept(struct listener *l, GError **err);
/*
 * The server side of the listener's security (TLS, then authentication)
 * on a channel listener_accept() returned.  Consumes @ch: returns the
 * channel to use from now on (no timeout set; @deadline, for the whole
 * handshake up to the Hello: see channel_set_deadline()), or NULL after
 * closing it, with @err one line naming the peer and why.
 */
struct channel *listener_handshake(struct channel *ch, int64_t deadline,
                                   GError **err);
/* Readable when listener_accept() would not block; -1 if none. */
int listener_fd(const struct listener *l);
/* The bound address, with the real port: "127.0.0.1:40123". */
const char *listener_address(const struct listener *l);
void listener_close(struct listener *l);

const char *channel_kind_name(enum channel_kind kind);
/* After the peer's Hello names it, before the channel is shared. */
bool channel_set_kind(struct channel *ch, enum channel_kind kind,
                      uint32_t stream, GError **err);
/*
 * Bytes the kernel may hold unsent for this channel (SO_SNDBUF, @bytes as
 * asked: the kernel doubles it); this ends the kernel's own sizing of it.
 * True and nothing done where the transport has no such buffer (RDMA).
 */
bool channel_set_send_buffer(struct channel *ch, unsigned bytes, GError **err);
enum channel_kind channel_kind(const struct channel *ch);
uint32_t channel_stream(const struct channel *ch);
/* "10.0.0.2:4000", for logs. */
const char *channel_peer(const struct channel *ch);
/*
 * Readable when a receive would not block; -1 if the transport has none.
 * A receive does not block either while channel_has_buffered(): a layer
 * such as TLS (tls.h) may hold decrypted bytes the fd no longer shows, and
 * a bulk TCP channel small frames it read ahead (tcp.c).
 */
int channel_fd(const struct channel *ch);
bool channel_has_buffered(const struct channel *ch);
/*
 * Busy-poll: until something can be received on @ch or @spin_us pass,
 * checking without sleeping.  True if something can.  For a receiver whose
 * next frame is due within microseconds, where going to sleep and being
 * woken (on another CPU: 25-100 us on a nested VM) costs more than the
 * spin.  Call between frames only.  With @yield, every empty check lets
 * whatever else is runnable on this CPU go first (sched_yield()): a spinner
 * at normal priority otherwise keeps ksoftirqd, which may hold the very
 * packets it sent or waits for, off its CPU for a whole time slice.
 */
bool channel_spin_readable(const struct channel *ch, unsigned spin_us,
                           bool yield);
/*
 * The peer hung up (or the link failed): a receive would fail once the
 * bytes already here are read.  Never blocks.  For a channel on which
 * nothing more is expected, to notice a peer that went away.
 */
bool channel_peer_closed(const struct channel *ch);
/*
 * Wait up to @timeout_ms (-1: for ever) until one of the @n channels
 * (at most CHANNEL_WAIT_MAX) can be received on, a hang-up or error
 * counting as such.  Its index, the first one of several; @n on timeout;
 * -1 if the wait itself failed (errno).
 */
#define CHANNEL_WAIT_MAX 8
int channel_wait_any(struct channel *const *chs, int n, int timeout_ms);
/*
 * Fail sends and receives that wait longer than @timeout_ms; 0: never.
 * A frame begun must be in whole within @timeout_ms of its first byte.
 */
bool channel_set_timeout(struct channel *ch, unsigned timeout_ms, GError **err);
/*
 * Fail every header receive from @deadline on (g_get_monotonic_time()
 * us; 0: no deadline) with G_IO_ERROR_TIMED_OUT, however the peer paces
 * its frames (keepalives included): a handshake ends in time as a whole.
 * The timeout still applies, shortened to what is left.
 */
void channel_set_deadline(struct channel *ch, int64_t deadline);

/*
 * Promise that from now on one thread only sends on @ch: its frames then go
 * out without the send lock, so a fault path holds no lock across its
 * sendmsg().  Call before that thread starts sending.
 */
void channel_set_single_sender(struct channel *ch);

/*
 * Send @hdr and the @niov buffers of @payload (hdr->len bytes in all)
 * straight from the caller's memory, all of it.
 */
bool channel_send_frame(struct channel *ch, const struct frame_hdr *hdr,
                        const struct iovec *payload, int niov, GError **err);
/*
 * Send @n frames in order: frame i is @hdrs[i] and hdrs[i].len bytes at
 * @payloads[i].  One write where the transport can (TCP: one sendmsg),
 * so many small frames cost one syscall, not one or two each.
 */
#define CHANNEL_SEND_FRAMES_MAX 64
bool channel_send_frames(struct channel *ch, const struct frame_hdr *hdrs,
                         const struct iovec *payloads, int n, GError **err);
/*
 * Can @ch send a payload straight from a file (channel_send_frame_file)?
 * Plain TCP can; TLS cannot.  Fixed for the channel's life.
 */
bool channel_can_send_file(const struct channel *ch);
/*
 * Send @hdr and hdr->len bytes of file @fd from @off, moved by the kernel
 * (sendfile: no copy through the caller, no read into its memory).  Only
 * where channel_can_send_file(); the process must ignore SIGPIPE.
 */
bool channel_send_frame_file(struct channel *ch, const struct frame_hdr *hdr,
                             int fd, uint64_t off, GError **err);
/* The next header; its payload must be consumed before the next one. */
bool channel_recv_hdr(struct channel *ch, struct frame_hdr *hdr, GError **err);
/*
 * The next @len bytes of the current payload, straight into @dst but for
 * what the transport read ahead already (tcp.c: after small frames only).
 */
bool channel_recv_payload(struct channel *ch, void *dst, size_t len,
                          GError **err);
/* Drop the rest of the current payload (data for an installed page). */
bool channel_discard_payload(struct channel *ch, GError **err);
/* Bytes of the current payload not received yet. */
size_t channel_payload_left(const struct channel *ch);

/* Wake every thread blocked on @ch; later calls fail.  Thread-safe. */
void channel_shutdown(struct channel *ch);
void channel_close(struct channel *ch);

#endif /* POSTCOPYD_TRANSPORT_H */
