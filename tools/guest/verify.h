/*
 * verify.h - proof that a destination's RAM equals the source's at the
 * switchover point: a digest per page taken at the pause, and a check that
 * reads every page again on the destination.  Pages are numbered globally
 * over all regions (ram0's pages first; see guest_ram.h).
 *
 * Contract: verify_pages() reads pages in random orders (from @seed) on
 * @nthreads threads, so a postcopy destination sees concurrent faults
 * scattered over RAM rather than a sequential sweep:
 *  - by default each page is read by exactly one thread (one shared random
 *    order, split in slices);
 *  - with @overlap every thread reads every page, each in its own random
 *    order, and after a page p it also reads p - 1 and p + 1, each with
 *    probability 1/4, so threads fault on the same and on neighbouring
 *    pages at once.
 * A page is a mismatch when any read of it disagreed with its digest, and
 * is counted once however many threads saw it.  first_mismatch is the
 * lowest mismatching global page number (threads race, so "first in time"
 * would not be reproducible).
 *
 * With @write, once every thread has finished reading, thread t writes a
 * new pattern into every page p with p % nthreads == t that matched, waits
 * @settle_ms, and checks the pattern is still there: a page the guest wrote
 * after it was installed must never be written by the migration again.
 * Such pages are counted in `overwritten`, apart from mismatches.
 *
 * Every read of a page is timed from before to after its first byte (the
 * touch that faults on a destination: the whole stall a vCPU would see,
 * kernel wake-up included; the digest of the rest is not timed), with
 * CLOCK_MONOTONIC, into per-thread histograms merged at the end: no lock
 * and no allocation in the read loop.  A read above VERIFY_SLOW_NS is
 * "slow" (it faulted), the rest "fast" (the page was mapped already).  In
 * the default mode that is one read per page; with @overlap, every read of
 * every thread, so a page another thread had brought in already counts as
 * fast (one it is still waiting for, as slow: this thread waits too).
 */
#ifndef POSTCOPY_GUEST_VERIFY_H
#define POSTCOPY_GUEST_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_ram.h"
#include "stats_histogram.h"

#define VERIFY_SETTLE_MS 200
/* A page read that took longer faulted: a mapped page reads in < 1 us. */
#define VERIFY_SLOW_NS 5000

struct verify_params {
    const struct guest_ram *ram;
    const uint64_t *expected; /* ram->npages digests */
    unsigned nthreads;
    uint64_t seed;
    bool overlap;
    bool write;
    unsigned settle_ms; /* with write */
};

struct verify_result {
    uint64_t pages_checked;  /* distinct pages: ram->npages */
    uint64_t mismatches;     /* distinct pages */
    uint64_t first_mismatch; /* meaningful when mismatches > 0 */
    uint64_t overwritten;    /* with write: written pages that changed */
    uint64_t pages_written;  /* with write */
    uint64_t reads;          /* page reads over all threads */
    uint64_t elapsed_us;
    struct stats_histogram latency; /* every timed read, us */
    struct stats_histogram slow;    /* the reads above VERIFY_SLOW_NS */
};

/* The digest of each global page; g_free() the table. */
uint64_t *verify_digest_table(const struct guest_ram *ram, unsigned nthreads);

void verify_pages(const struct verify_params *p, struct verify_result *out);

#endif /* POSTCOPY_GUEST_VERIFY_H */
