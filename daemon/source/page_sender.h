/*
 * page_sender.h - reading the source VMM's pages and putting them on a
 * channel: data runs as PAGE frames, sent straight from the region's file
 * by sendfile (shmem, on a channel that can) or from a buffer filled by
 * pread on the file (hugetlbfs, shmem under TLS) or by process_vm_readv
 * (anon); runs of zero pages (holes; zero data where it was read) as one
 * PAGE_ZERO frame with no payload.  Short runs (scattered dirty pages)
 * can be queued instead: read by one pread each (one process_vm_readv for
 * all of them on anonymous RAM) and sent together in one write, a few
 * syscalls for many pages instead of three for each.
 *
 * Contract: one struct page_sender per sending thread (it owns the read
 * buffer and the queue); the counters it adds to are atomics shared with
 * query-migrate.  Queued pages go out by page_sender_flush(), which the
 * queueing thread calls before anything else is sent on that channel
 * that must follow them (a round's end, a Sync).
 */
#ifndef POSTCOPYD_PAGE_SENDER_H
#define POSTCOPYD_PAGE_SENDER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "region.h"
#include "transport.h"

struct ram_drops;

#define PAGE_SENDER_RUN (1u << 20) /* bytes read and sent per step */

struct page_counters {
    _Atomic uint64_t *pages;       /* data pages */
    _Atomic uint64_t *zero;        /* zero pages */
    _Atomic uint64_t *bytes;       /* payload bytes */
    _Atomic uint64_t *phase_bytes; /* precopy / downtime / postcopy; or NULL */
};

/* Runs shorter than this may be queued (page_sender.c says why). */
#define PAGE_SENDER_SHORT_RUN (64u << 10)
#define PAGE_SENDER_QUEUE     CHANNEL_SEND_FRAMES_MAX

/* Runs queued for one channel, region, flags and seq: one write. */
struct page_queue {
    struct channel *ch;
    const struct region *r;
    uint32_t flags, seq;
    unsigned n;
    uint64_t bytes;
    uint64_t first[PAGE_SENDER_QUEUE], count[PAGE_SENDER_QUEUE];
};

struct page_sender {
    pid_t pid; /* the VMM, for anonymous regions */
    struct page_counters counters;
    uint8_t *buf; /* PAGE_SENDER_RUN bytes, or a huge page if larger */
    size_t buf_len;
    /* Told what went as data and what as zeroes, or NULL (ram_drops.h). */
    struct ram_drops *drops;
    struct page_queue queue;
};

void page_sender_init(struct page_sender *ps, pid_t pid,
                      const struct page_counters *counters);
void page_sender_destroy(struct page_sender *ps);
/* Also set the phase counter that bytes go to from now on. */
void page_sender_set_phase(struct page_sender *ps, _Atomic uint64_t *bytes);

bool page_is_zero(const uint8_t *p, uint64_t len);

/*
 * Send pages [first, first+n) of @r on @ch, reading them now, in steps of
 * at most PAGE_SENDER_RUN bytes (or one huge page).  @flags, @seq go on
 * every frame.  Pages that cannot be read because the VMM's memory is
 * gone (it exited, or unmapped them) fail with PAGE_SENDER_ERROR_GONE:
 * no retry can ever send them.
 */
#define PAGE_SENDER_ERROR page_sender_error_quark()
GQuark page_sender_error_quark(void);
enum { PAGE_SENDER_ERROR_GONE };

bool page_sender_send(struct page_sender *ps, struct channel *ch,
                      const struct region *r, uint64_t first, uint64_t n,
                      uint32_t flags, uint32_t seq, GError **err);

/*
 * As page_sender_send(), but a run shorter than PAGE_SENDER_SHORT_RUN may
 * wait in the queue (read when the queue goes out, which is before the
 * next collect: the caller flushes at the end of its round).  Queued runs
 * go out first when a long run comes, or one on another channel, region,
 * flags or seq: pages leave in the order given.  A failed call leaves
 * nothing queued: no later call sends on a channel that failed.
 */
bool page_sender_queue(struct page_sender *ps, struct channel *ch,
                       const struct region *r, uint64_t first, uint64_t n,
                       uint32_t flags, uint32_t seq, GError **err);
/* Read and send what is queued; nothing is left queued, also on failure. */
bool page_sender_flush(struct page_sender *ps, GError **err);
/* Forget what is queued: the migration stops, nothing more is sent. */
void page_sender_discard(struct page_sender *ps);

#endif /* POSTCOPYD_PAGE_SENDER_H */
