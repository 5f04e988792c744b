/*
 * verify.h - proof that a destination's RAM equals the source's at the
 * switchover point: a digest per page taken at the pause, and a check that
 * reads every page again on the destination.
 *
 * Contract: verify_pages() reads each page exactly once, in a random order
 * (from @seed) split over @nthreads threads, so a postcopy destination sees
 * concurrent faults scattered over RAM rather than a sequential sweep.
 * first_mismatch is the lowest mismatching page number (threads race, so
 * "first in time" would not be reproducible).
 */
#ifndef POSTCOPY_GUEST_VERIFY_H
#define POSTCOPY_GUEST_VERIFY_H

#include <stdint.h>

struct verify_result {
    uint64_t pages_checked;
    uint64_t mismatches;
    uint64_t first_mismatch; /* meaningful when mismatches > 0 */
    uint64_t elapsed_us;
};

/* The digest of each of @npages pages; g_free() the table. */
uint64_t *verify_digest_table(const uint8_t *ram, uint64_t page_size,
                              uint64_t npages, unsigned nthreads);

void verify_pages(const uint8_t *ram, uint64_t page_size, uint64_t npages,
                  const uint64_t *expected, unsigned nthreads, uint64_t seed,
                  struct verify_result *out);

#endif /* POSTCOPY_GUEST_VERIFY_H */
