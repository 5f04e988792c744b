/*
 * transport_impl.h - the other side of transport.h: what a transport (TCP,
 * RDMA) implements.  Only the transport sources include this.
 *
 * The generic layer (channel.c) owns everything that is the same for every
 * transport: frame validation, the send lock, message packing, payload
 * accounting, the broken flags and error prefixes.  A transport only moves
 * bytes: a whole encoded frame out, a header or part of a payload in.
 * Its ops report plain I/O facts ("peer closed the connection after 10 of
 * 32 header bytes"); channel.c adds which channel it was.
 */
#ifndef POSTCOPYD_TRANSPORT_IMPL_H
#define POSTCOPYD_TRANSPORT_IMPL_H

#include "transport.h"
#include "remote_read.h"

struct channel_ops {
    /* Send the encoded header then @len bytes of @payload, all of it. */
    bool (*send_frame)(struct channel *ch, const uint8_t hdr[FRAME_HDR_LEN],
                       const struct iovec *payload, int niov, size_t len,
                       GError **err);
    /*
     * Send @len bytes of @iov, whole frames (encoded headers and their
     * payloads), all of it; @iov may be changed.  NULL: channel.c sends
     * the frames one by one with send_frame.
     */
    bool (*send_frames)(struct channel *ch, struct iovec *iov, int niov,
                        size_t len, GError **err);
    /*
     * Send the encoded header then @len bytes of file @fd from @off, the
     * kernel moving them (sendfile) without a copy in the caller; a
     * SIGPIPE must be ignored.  NULL: the transport cannot (TLS records
     * are encrypted in user space), the caller reads and sends.
     */
    bool (*send_frame_file)(struct channel *ch,
                            const uint8_t hdr[FRAME_HDR_LEN], int fd,
                            uint64_t off, size_t len, GError **err);
    /*
     * Receive one header.  G_IO_ERROR_TIMED_OUT only when no byte of it
     * came, and the channel can try again; a frame begun must be in whole
     * within the timeout (header and payload), however its bytes are
     * paced.  A clean EOF before the first byte is
     * G_IO_ERROR_CONNECTION_CLOSED.
     */
    bool (*recv_hdr)(struct channel *ch, uint8_t hdr[FRAME_HDR_LEN],
                     GError **err);
    /* The next @len payload bytes; ch->payload_left is not yet reduced. */
    bool (*recv_payload)(struct channel *ch, void *dst, size_t len,
                         GError **err);
    /* Apply the per-kind tuning (latency for urgent, buffers for bulk). */
    bool (*set_kind)(struct channel *ch, enum channel_kind kind, GError **err);
    bool (*set_timeout)(struct channel *ch, unsigned timeout_ms, GError **err);
    /* SO_SNDBUF; NULL: the transport has no send buffer to size. */
    bool (*set_send_buffer)(struct channel *ch, unsigned bytes, GError **err);
    int (*fd)(const struct channel *ch);
    /*
     * The peer hung up, without blocking; NULL: poll channel_fd() for
     * POLLRDHUP (a transport with no fd must provide it).
     */
    bool (*peer_closed)(const struct channel *ch);
    /* Bytes held above the fd (TLS records, TCP read-ahead); NULL: none. */
    bool (*buffered)(const struct channel *ch);
    void (*shutdown)(struct channel *ch);
    /* Release the transport's resources and the channel's memory. */
    void (*destroy)(struct channel *ch);
};

struct channel {
    const struct channel_ops *ops;
    enum channel_kind kind;
    uint32_t stream;
    bool outgoing; /* we connected: "to" the peer, else "from" it */
    char *peer;    /* "10.0.0.2:4000" */
    char *name;    /* "urgent channel to 10.0.0.2:4000", error prefix */
    struct transport_security security; /* accepted: its listener's */

    /* Send side, under send_lock (unless single_sender). */
    GMutex send_lock;
    bool single_sender; /* one thread sends: no lock (transport.h) */
    bool send_broken;
    uint8_t *pack_buf;
    size_t pack_cap;

    /* Receive side: one thread at a time. */
    bool recv_broken;
    unsigned timeout_ms;   /* as channel_set_timeout() asked */
    int64_t deadline;      /* channel_set_deadline(); 0: none */
    uint32_t payload_len;  /* of the frame being received */
    uint32_t payload_left; /* of it, not received yet */
    uint8_t *msg_buf;      /* message payloads, discarded payloads */
    size_t msg_cap;
};

struct listener_ops {
    struct channel *(*accept)(struct listener *l, GError **err);
    int (*fd)(const struct listener *l);
    /* Release the transport's resources and the listener's memory. */
    void (*destroy)(struct listener *l);
};

struct listener {
    const struct listener_ops *ops;
    char *address;                      /* bound address, real port */
    struct transport_security security; /* for listener_handshake() */
};

/*
 * One-sided reads of the peer's memory (remote_read.h), for a transport
 * that has them.  Its listeners and links begin with these headers.
 */
struct remote_read_ops;

struct remote_listener {
    const struct remote_read_ops *ops;
};

struct remote_link {
    const struct remote_read_ops *ops;
};

struct remote_read_ops {
    struct remote_listener *(*listen)(const struct transport *t,
                                      const char *host, GError **err);
    uint16_t (*listener_port)(const struct remote_listener *l);
    struct remote_link *(*accept)(struct remote_listener *l,
                                  unsigned timeout_ms, GError **err);
    void (*listener_close)(struct remote_listener *l);
    struct remote_link *(*connect)(const struct transport *t,
                                   const char *address, unsigned timeout_ms,
                                   GError **err);
    bool (*offer)(struct remote_link *l, uint32_t region, void *addr,
                  uint64_t len, uint64_t page_size, GError **err);
    GBytes *(*table)(struct remote_link *l);
    bool (*take_table)(struct remote_link *l, const uint8_t *buf, size_t len,
                       const struct remote_region *layout, unsigned n,
                       GError **err);
    bool (*readable)(const struct remote_link *l, uint32_t region);
    bool (*target)(struct remote_link *l, uint32_t region, void *local,
                   uint64_t len, GError **err);
    bool (*add)(struct remote_link *l, uint32_t region, uint64_t offset,
                uint64_t len, uint64_t cookie, bool urgent, GError **err);
    bool (*post)(struct remote_link *l, GError **err);
    int (*poll)(struct remote_link *l, struct remote_done *done, int max,
                int timeout_ms, GError **err);
    void (*wake)(struct remote_link *l);
    unsigned (*credits)(const struct remote_link *l);
    unsigned (*pending)(const struct remote_link *l);
    bool (*reset)(struct remote_link *l, struct remote_done *done);
    void (*close)(struct remote_link *l);
};

struct transport {
    const char *name;
    /* NULL: no one-sided reads; every page travels in frames. */
    const struct remote_read_ops *remote;
    /* The transport's own, for its remote ops (rdma: its link ops). */
    const void *remote_priv;
    /* Can it run on this host?  NULL: always (transport_probe()). */
    bool (*probe)(GError **err);
    struct listener *(*listen)(const char *address,
                               const struct transport_options *opts,
                               GError **err);
    struct channel *(*connect)(const char *address, enum channel_kind kind,
                               uint32_t stream,
                               const struct transport_options *opts,
                               GError **err);
};

/* For transports: fill in the generic part of a new channel. */
void channel_init(struct channel *ch, const struct channel_ops *ops,
                  enum channel_kind kind, uint32_t stream, bool outgoing,
                  const char *peer);
/* For peer_msg.c: frames go out whole, one sender at a time. */
void channel_send_lock(struct channel *ch);
void channel_send_unlock(struct channel *ch);
/* Send one frame; call between channel_send_lock() and _unlock(). */
bool channel_send_locked(struct channel *ch, const struct frame_hdr *hdr,
                         const struct iovec *payload, int niov, GError **err);
/*
 * The channel's receive buffer, at least @len bytes, kept across messages
 * unless it grew past CHANNEL_MSG_BUF_KEEP (then trim drops it).
 */
#define CHANNEL_MSG_BUF_KEEP (1u << 20)
uint8_t *channel_msg_buf(struct channel *ch, size_t len);
void channel_msg_buf_trim(struct channel *ch);

/* For transports: fill in the generic part of a new listener. */
void listener_init(struct listener *l, const struct listener_ops *ops,
                   const char *address);

#endif /* POSTCOPYD_TRANSPORT_IMPL_H */
