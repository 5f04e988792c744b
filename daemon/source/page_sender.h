/*
 * page_sender.h - reading the source VMM's pages and putting them on a
 * channel: data runs as PAGE frames, sent straight from the region's file
 * by sendfile (shmem, on a channel that can) or from a buffer filled by
 * pread on the file (hugetlbfs, shmem under TLS) or by process_vm_readv
 * (anon); runs of zero pages (holes; zero data where it was read) as one
 * PAGE_ZERO frame with no payload.
 *
 * Contract: one struct page_sender per sending thread (it owns the read
 * buffer); the counters it adds to are atomics shared with query-migrate.
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

struct page_sender {
    pid_t pid; /* the VMM, for anonymous regions */
    struct page_counters counters;
    uint8_t *buf; /* PAGE_SENDER_RUN bytes, or a huge page if larger */
    size_t buf_len;
    /* Told what went as data and what as zeroes, or NULL (ram_drops.h). */
    struct ram_drops *drops;
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

#endif /* POSTCOPYD_PAGE_SENDER_H */
