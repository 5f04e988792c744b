/*
 * source.h - the source role's session, shared by source.c (channels,
 * switchover, postcopy service) and precopy.c (dirty tracking and rounds).
 * Internal to those two files.
 *
 * Threads: the session thread owns everything here until switchover; then
 * the request thread owns `urgent` (receive side) and its sender, the bulk
 * thread the bulk sender and `pending`; `stop` is the only thing they all
 * read.  The WP fault thread (sync uffd-wp only) touches just the tracker,
 * which has its own lock.
 */
#ifndef POSTCOPYD_SOURCE_H
#define POSTCOPYD_SOURCE_H

#include "dirty_tracker.h"
#include "migration.h"
#include "page_sender.h"
#include "postcopy_stream.h"

#define SOURCE_MAX_STREAMS 8

/* One bulk connection and the thread and reader that feed it. */
struct bulk_stream {
    struct source_session *s;
    unsigned idx;
    struct channel *ch;
    struct page_sender sender;
    GThread *thread;
};

/* The per-region page bitmaps (pending, prestale): unsigned longs. */
#define BITS_PER_LONG    (8 * sizeof(unsigned long))
#define BITS_TO_LONGS(n) (((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)

struct source_session {
    struct migration *m;
    struct region_table *regions;
    struct channel *control, *urgent;
    unsigned nbulk; /* parallel bulk streams (migration parameter) */
    struct bulk_stream bulk[SOURCE_MAX_STREAMS];
    GThread *request_thread, *wp_thread;
    atomic_bool stop;
    atomic_bool wp_stop;
    bool paused; /* we paused the source VMM */
    bool switchover_sent, switchover_refused;
    _Atomic uint64_t data_lost_us; /* when a data channel closed, or 0 */
    bool resend_missing;     /* bulk streams `pending` (resumed, or hybrid) */
    bool peer_completed;     /* a resume found the migration completed */
    atomic_bool recover_now; /* `recover`: retry the connection at once */
    /* Postcopy background stream: shared by the request thread (note)
     * and the bulk thread (next); see postcopy_stream.h. */
    struct postcopy_stream stream;
    GMutex stream_lock; /* postcopy_stream_next() from several streams */
    bool streaming;

    struct uffd u;
    struct dirty_tracker dt;
    bool tracking;
    /* Per region: pages written since they were last sent. */
    unsigned long *pending[REGION_MAX];
    /* Hybrid: the part of pending already marked STALE there (Barrier). */
    unsigned long *prestale[REGION_MAX];
    uint32_t sync_seq;
};

void source_senders_set_phase(struct source_session *s,
                              _Atomic uint64_t *bytes);

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
