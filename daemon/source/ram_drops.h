/*
 * ram_drops.h - guest RAM the source VMM drops during precopy.  A page it
 * punches (fallocate, MADV_REMOVE) or zaps (MADV_DONTNEED on anonymous
 * RAM) after it went to the destination as data reads as zeroes here from
 * then on; write-protect tracking never sees it (a drop is not a write),
 * so the destination would keep the old bytes.  Shared RAM is what a
 * balloon or a memory hot-unplug punches.
 *
 * How: the bulk senders note which pages went as non-zero data
 * (`sent_data`, cleared when a page goes as zeroes); after each collect,
 * a page the dirty tracker found absent from the VMM's page table that
 * the destination holds data for joins the pending set if it may read as
 * zero now: shmem when it is a hole (backing_find_holes(); an unmapped
 * page still cached is left alone), anonymous and hugetlbfs RAM always
 * (the sender reads it again and sends zeroes, or the data once more).
 *
 * Contract: ram_drops_note() runs on the bulk senders' threads at once
 * (atomics on the bitmap's words); ram_drops_mark() on the session thread
 * between rounds, when no sender runs.  Needs a tracker that watches
 * absent pages (async-wp); regions the destination reads in place (RDMA)
 * are not watched: their pages are never "sent" here.
 */
#ifndef POSTCOPYD_RAM_DROPS_H
#define POSTCOPYD_RAM_DROPS_H

#include <stdbool.h>
#include <stdint.h>

#include "dirty_tracker.h"
#include "region.h"

struct ram_drops {
    const struct region_table *regions;
    unsigned long *sent_data[REGION_MAX];
    uint64_t marked; /* pages found dropped so far */
};

void ram_drops_init(struct ram_drops *d, const struct region_table *t);
void ram_drops_destroy(struct ram_drops *d);
/* Pages [first, first + n) of @r went: as zeroes where @zero[i] is set. */
void ram_drops_note(struct ram_drops *d, const struct region *r, uint64_t first,
                    uint64_t n, const bool *zero);
/*
 * Add to @pending[i] the pages of region i that were dropped since they
 * went as data, by what @dt's last collect saw; skip regions where
 * @skip[i].  Returns how many pages it added.
 */
uint64_t ram_drops_mark(struct ram_drops *d, const struct dirty_tracker *dt,
                        const bool *skip, unsigned long **pending);

#endif /* POSTCOPYD_RAM_DROPS_H */
