/*
 * postcopy_stream.h - the source's background stream in postcopy: the
 * pages the destination still lacks, sent in an order that follows the
 * guest's faults.  After a fault the stream jumps to the pages just after
 * it; the window grows while faults stay sequential and shrinks back when
 * they scatter, then the stream returns to where it was.
 *
 * Contract: the bulk thread calls postcopy_stream_next(); the request
 * thread calls postcopy_stream_note() for every page it answered (that
 * page need not be streamed, and its neighbours are likely next).  The
 * to-do bitmaps are updated with atomic bit operations; nothing else is
 * shared, and neither call allocates or takes a lock.
 */
#ifndef POSTCOPYD_POSTCOPY_STREAM_H
#define POSTCOPYD_POSTCOPY_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "region.h"

#define STREAM_WINDOW_MIN 16   /* pages sent after a scattered fault */
#define STREAM_WINDOW_MAX 1024 /* after a run of sequential ones */

struct postcopy_stream {
    const struct region_table *regions;
    unsigned long *todo[REGION_MAX];
    _Atomic uint64_t hint; /* (region << 48 | page) + 1 of the last fault */
    /* bulk thread only: */
    size_t region; /* the ordinary sweep's position */
    uint64_t cursor;
    uint32_t pf_region; /* prefetch window after a fault */
    uint64_t pf_pos, pf_end;
    uint64_t last_fault; /* page of the previous hint, for the window */
    uint64_t window;
    uint64_t prefetched; /* pages sent from windows (statistics) */
};

/* @initial: one bitmap per region of the pages to send, or NULL: all. */
void postcopy_stream_init(struct postcopy_stream *ps,
                          const struct region_table *regions,
                          unsigned long *const *initial);
/* Before the bulk threads start: @region is not streamed at all. */
void postcopy_stream_drop_region(struct postcopy_stream *ps, uint32_t region);
void postcopy_stream_destroy(struct postcopy_stream *ps);

/* Request thread: pages [page, page+n) of @region were just sent. */
void postcopy_stream_note(struct postcopy_stream *ps, uint32_t region,
                          uint64_t page, uint64_t n);

/*
 * Bulk thread: the next run (at most @max pages) to send, taken off the
 * to-do set.  False when nothing is left.
 */
bool postcopy_stream_next(struct postcopy_stream *ps, uint32_t *region,
                          uint64_t *first, uint64_t *n, uint64_t max);

#endif /* POSTCOPYD_POSTCOPY_STREAM_H */
