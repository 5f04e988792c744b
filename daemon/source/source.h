/*
 * source.h - the source role's session, shared by the files of
 * daemon/source/: source.c (start, restore, cancel), connect.c (channels),
 * precopy.c (dirty tracking and rounds), switchover.c, serve.c (requests
 * and the postcopy stream) and postcopy.c (until Complete, reconnect).
 * Internal to them.
 *
 * Threads: the session thread owns everything here until switchover; then
 * the request thread owns `urgent` (receive side) and its sender, the bulk
 * thread the bulk sender and `pending`; `stop` is the only thing they all
 * read.  The WP fault thread (sync uffd-wp only) touches just the tracker,
 * which has its own lock.
 */
#ifndef POSTCOPYD_SOURCE_H
#define POSTCOPYD_SOURCE_H

#include "bitmap.h"
#include "dirty_tracker.h"
#include "migration.h"
#include "page_sender.h"
#include "postcopy_stream.h"
#include "ram_drops.h"
#include "source_role.h"
#include "peer_msg.h"
#include "transport.h"
#include "remote_read.h"

#define SOURCE_MAX_STREAMS 8

/* One bulk connection and the thread and reader that feed it. */
struct bulk_stream {
    struct source_session *s;
    unsigned idx;
    struct channel *ch;
    struct page_sender sender;
    GThread *thread;
};

struct source_session {
    struct migration *m;
    struct region_table *regions;
    /*
     * Set and closed by the session thread, under chan_lock; `cancel`
     * (the main loop) shuts them down under it too.
     */
    struct channel *control, *urgent;
    struct channel *opening; /* in its Hello, not stored yet */
    GMutex chan_lock;
    unsigned nbulk; /* parallel bulk streams (migration parameter) */
    struct bulk_stream bulk[SOURCE_MAX_STREAMS];
    GThread *request_thread, *wp_thread;
    atomic_bool stop;
    /* Postcopy bulk threads still streaming (the request thread's poll). */
    atomic_uint bulk_running;
    atomic_bool wp_stop;
    bool paused; /* we paused the source VMM */
    /*
     * Hybrid: the last dirty set goes after the resume (FinalDirty), its
     * collect no longer in the downtime; tracking runs until it is taken
     * (and ends with the session: free_session()).
     */
    bool final_deferred;
    bool switchover_sent, switchover_refused;
    _Atomic uint64_t data_lost_us; /* when a data channel closed, or 0 */
    bool resend_missing;   /* bulk streams `pending` (resumed, or hybrid) */
    bool peer_completed;   /* a resume found the migration completed */
    bool peer_not_resumed; /* ...or that the VM never ran there */
    /* The Switchover's answer was lost and not learnt yet (read by cancel) */
    atomic_bool outcome_unknown;
    atomic_bool recover_now; /* `recover`: retry the connection at once */
    /* Postcopy background stream: shared by the request thread (note)
     * and the bulk thread (next); see postcopy_stream.h. */
    struct postcopy_stream stream;
    GMutex stream_lock;    /* postcopy_stream_next() from several streams */
    atomic_bool streaming; /* the request thread may start before it */

    struct uffd u;
    struct dirty_tracker dt;
    /* Pages the VMM dropped after they went (async-wp), else unused. */
    struct ram_drops drops;
    bool tracking;
    /* Per region: pages written since they were last sent. */
    unsigned long *pending[REGION_MAX];
    /* Hybrid: the part of pending already marked STALE there (Barrier). */
    unsigned long *prestale[REGION_MAX];
    uint32_t sync_seq;

    /*
     * The destination reads offered regions itself (source_remote.c):
     * rounds declare their pages, postcopy streams only the others.
     */
    struct remote_link *rlink;
    bool offered[REGION_MAX];
    bool reads_on;
    uint32_t read_round;
};

void source_senders_set_phase(struct source_session *s,
                              _Atomic uint64_t *bytes);

/*
 * The bulk channels' send buffers in precopy: deep (SO_SNDBUF as asked;
 * the kernel doubles it), so the sender runs on while the receiver drains:
 * round 1 of an idle 4 GiB guest about 20% faster on the bench's machine
 * than with the kernel's own sizing, which stops at the third figure of
 * net.ipv4.tcp_wmem (4 MiB).  Postcopy gets that ceiling back (hybrid:
 * source_bulk_postcopy_buffers()): a deep buffer there speeds the stream a
 * little and slows the faults (p99 with the stream competing +20-40%), a
 * shallow one halves that p99 and slows the stream by 10-35%.
 */
#define SOURCE_PRECOPY_SNDBUF (8u << 20)
void source_bulk_set_send_buffers(struct source_session *s, unsigned bytes);
void source_bulk_postcopy_buffers(struct source_session *s);
/* From the switchover on, a restarted daemon must be able to carry on. */
void source_remember_session(struct source_session *s);

/* serve.c */
void source_page_counters(struct migration *m, struct page_counters *c);
gpointer source_request_thread(gpointer opaque);
/*
 * Answer page requests on the urgent channel until @ch has something to
 * read (or SOURCE_SERVE_UNTIL_MS pass): the switchover's reply.  While the
 * destination's VMM loads the device state it may read guest RAM (QEMU:
 * option ROM state, virtio rings), and those faults come here before the
 * reply can; the VM is paused, so what they get is final.
 */
#define SOURCE_SERVE_UNTIL_MS 60000
bool source_serve_until(struct source_session *s, struct channel *ch,
                        GError **err);
gpointer source_bulk_thread(gpointer opaque);

/*
 * Store @ch in @slot (one of the session's channel pointers); a channel
 * opened while a cancel was under way is shut down at once.
 */
void source_keep_channel(struct source_session *s, struct channel **slot,
                         struct channel *ch);

/* connect.c: a channel whose Hello the destination accepted, or NULL. */
struct channel *source_open_channel(struct source_session *s, const char *uri,
                                    enum channel_kind kind, uint32_t stream,
                                    bool resume, GError **err);
/* The next message, if it is @want (an Error becomes the GError). */
PeerMessage *source_expect_msg(struct channel *ch,
                               Postcopy__Peer__PeerMessage__MsgCase want,
                               GError **err);
bool source_open_data_channels(struct source_session *s, bool resume,
                               GError **err);
/* Map the RAM, open control, agree on the layout, open the data channels. */
bool source_setup(struct source_session *s, GError **err);

/* source_remote.c: a destination that reads this VMM's memory itself */
/* After the LayoutReply: connect its READ link (@port 0: none), offer. */
bool source_remote_setup(struct source_session *s, uint32_t port, GError **err);
/* Region @region's pages are read there, never sent in frames. */
bool source_remote_skips(const struct source_session *s, size_t region);
/*
 * Precopy: declare this round's pages of offered regions (@all, or the
 * pending ones) and wait until the destination read them all.
 */
bool source_remote_round(struct source_session *s, bool all, bool final,
                         GError **err);
/* For good (the session ends, or a reconnect: frames from then on). */
void source_remote_close(struct source_session *s);

/* switchover.c */
/* Before the pause: the bulk data in flight reaches the destination. */
bool source_drain_bulk(struct source_session *s, GError **err);
/* Pause, hand the device state over, learn whether it resumed there. */
bool source_switchover(struct source_session *s, GError **err);
/*
 * After the answer of a Switchover with dirty_follows (final_deferred):
 * the final collect, tracking's end, and the FinalDirty; the request
 * thread serves the destination meanwhile.
 */
bool source_send_final_dirty(struct source_session *s, GError **err);
void source_send_cancel(struct source_session *s);
void source_fail_before_switchover(struct source_session *s, GError *err);
/* The Switchover's answer was lost: pause (true), or false if it was not. */
bool source_switchover_lost(struct source_session *s, GError *err);

/* postcopy.c */
void source_close_channels(struct source_session *s);
/* Paused: reconnect until it works (true) or the daemon stops. */
bool source_reconnect(struct source_session *s);
/* Serve the destination until it has every page, reconnecting as needed. */
void source_postcopy_loop(struct source_session *s);

/* precopy.c */
bool precopy_start_tracking(struct source_session *s, GError **err);
/* Rounds until converged or a limit; leaves the last dirty set pending. */
bool precopy_rounds(struct source_session *s, GError **err);
/* After the pause: the final collect, merged into pending. */
bool precopy_final_collect(struct source_session *s, GError **err);
/* Send every pending page on bulk now (precopy mode, during downtime). */
bool precopy_send_pending(struct source_session *s, uint32_t flags,
                          GError **err);
uint64_t precopy_pending_pages(struct source_session *s);
void precopy_stop_tracking(struct source_session *s);

#endif /* POSTCOPYD_SOURCE_H */
