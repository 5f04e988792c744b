/*
 * read_plan.h - the destination's one-sided reads of the source's memory
 * (remote_read.h) as plain data: which pages to read next, how a read is
 * named, what its completion does to the page state table, and the
 * checked set of pages a precopy round declared sent.
 *
 * Contract: a read is like any receiver writing a copy (page_state.h):
 * its pages are held WRITING before it is queued, and it ends in
 * finish_write (done) or abort_write (failed, or the link went), so the
 * page state table's rules hold unchanged: a page re-dirtied meanwhile
 * ends STALE, a vCPU waiting on one is told to install it (DO_INSTALL) or
 * to ask again (REQUESTED), and an INSTALLED page is never read into.
 * No I/O here: remote_reader.c posts and polls.
 */
#ifndef POSTCOPYD_READ_PLAN_H
#define POSTCOPYD_READ_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "page_state.h"
#include "peer.pb-c.h"
#include "region.h"

/* Pages one read request covers at most (a cookie holds up to 2^17-1). */
#define READ_PLAN_MAX_PAGES  512u
#define READ_COOKIE_MAX_PAGE ((1ull << 40) - 1)

/* A read request's cookie: region, first page, count, and whether a vCPU
 * faulted on it. */
struct read_req {
    uint32_t region;
    uint64_t first;
    uint32_t npages;
    bool fault;
};

uint64_t read_cookie(const struct read_req *r);
void read_cookie_parse(uint64_t cookie, struct read_req *r);

/*
 * Hold WRITING the next run of pages in [*pos, end) of @region to read,
 * at most @max pages: those set in @want (a page bitmap; NULL: pages
 * ABSENT or STALE, what postcopy still lacks).  A page that cannot be
 * held (another writer, installing, installed; or, with no @want, in any
 * other state) ends the run and is passed over.  Advances *pos past the
 * run; false when nothing was left to hold.
 */
bool read_plan_claim(struct page_state_table *t, uint32_t region,
                     const unsigned long *want, uint64_t *pos, uint64_t end,
                     uint64_t max, struct page_run *run);

/* What finishing a read did, page by page. */
struct read_outcome {
    uint64_t current;   /* CURRENT now */
    uint64_t install;   /* held INSTALLING for the caller: a vCPU waits */
    uint64_t stale;     /* re-dirtied meanwhile: STALE */
    uint64_t requested; /* not usable and a vCPU waits: REQUESTED again */
    uint64_t back;      /* failed: ABSENT or STALE again */
    uint64_t removed;   /* the VMM removed it meanwhile: REMOVED */
};

/* Called for each page read_plan_finish() leaves held INSTALLING. */
typedef void (*read_install_fn)(void *opaque, uint32_t region, uint64_t page);

/*
 * The read of @r ended (@ok: its bytes are in place): each page leaves
 * WRITING, counted into @o (added to, not reset).
 */
void read_plan_finish(struct page_state_table *t, const struct read_req *r,
                      bool ok, read_install_fn install, void *opaque,
                      struct read_outcome *o);

/*
 * A ReadRound's declared pages, checked against the layout before a bit
 * is set: every run inside its region, and only in regions @readable
 * (by index) says may be read.  On success @maps (one zeroed bitmap per
 * region of @t, allocated by the caller) has the pages, *@pages their
 * count.
 */
bool read_round_decode(const Postcopy__Peer__Switchover *pages,
                       const struct region_table *t, const bool *readable,
                       unsigned long **maps, uint64_t *npages, GError **err);

#endif /* POSTCOPYD_READ_PLAN_H */
