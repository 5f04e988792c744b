/*
 * dirty_set.h - the dirty set at switchover, on the wire: per region,
 * whichever encoding is smaller, a list of ranges or the raw bitmap, so
 * hybrid's downtime traffic is bounded by the bitmap size whatever the
 * guest's write pattern (Switchover.dirty, Switchover.dirty_bitmaps).
 *
 * Contract: decode checks every region index, offset, length, alignment
 * and bitmap size against the layout before it reports a single run, and
 * fails with one clear message otherwise.
 */
#ifndef POSTCOPYD_DIRTY_SET_H
#define POSTCOPYD_DIRTY_SET_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "peer.pb-c.h"
#include "region.h"

/*
 * Fill @so's dirty fields from one bitmap per region; free with _clear
 * (the ranges share one allocation: only _clear may free them).
 */
void dirty_set_encode(const struct region_table *t,
                      unsigned long *const *bitmaps,
                      Postcopy__Peer__Switchover *so);
void dirty_set_clear(Postcopy__Peer__Switchover *so);

typedef void (*dirty_run_fn)(void *opaque, uint32_t region, uint64_t first,
                             uint64_t npages);
/* Validate, then call @fn for each run of dirty pages; *@pages: count. */
bool dirty_set_decode(const Postcopy__Peer__Switchover *so,
                      const struct region_table *t, dirty_run_fn fn,
                      void *opaque, uint64_t *pages, GError **err);

#endif /* POSTCOPYD_DIRTY_SET_H */
