/*
 * prealloc.h - allocate an incoming VM's file-backed RAM (shmem, hugetlbfs)
 * as soon as its VMM attaches, before a migration arrives, as QEMU's
 * -mem-prealloc does.  Why:
 *  - a destination short of memory or of huge pages finds out before the
 *    switchover, where refusing costs nothing (the source keeps running),
 *    not in postcopy, where the guest would take a SIGBUS;
 *  - the first touch of fresh memory is slow on virtualised hosts (each new
 *    guest-physical page is a host fault: ~0.6 GiB/s on our machines, see
 *    README "Performance"), and paying it early keeps it out of the
 *    migration's critical path.
 *
 * Contract: pages are allocated zeroed in the page cache through a
 * short-lived mapping of the region's file; the VMM's own mapping is not
 * touched, so its first access still raises a MINOR fault, and the page
 * state table, never the page cache, says which pages hold guest data.
 * Anonymous regions are skipped (the daemon cannot populate the VMM's
 * private memory, and a present page would never fault).
 *
 * Threads: one worker per VM, started by prealloc_start(); the progress is
 * read from any thread; prealloc_free() stops and joins the worker.
 */
#ifndef POSTCOPYD_PREALLOC_H
#define POSTCOPYD_PREALLOC_H

#include <stdbool.h>
#include <stdint.h>

#include "region.h"

struct prealloc;

struct prealloc_progress {
    uint64_t done;   /* bytes allocated so far */
    uint64_t total;  /* bytes of file-backed RAM */
    bool finished;   /* the worker is done, successfully or not */
    bool failed;     /* ...and could not allocate everything */
    double seconds;  /* time it took, or has taken so far */
    char error[160]; /* why it failed, one line */
};

/*
 * Start allocating the file-backed regions of @regions, which must outlive
 * the returned handle.  NULL when there is nothing to allocate.
 */
struct prealloc *prealloc_start(const struct region_table *regions,
                                const char *vm_name);
void prealloc_get_progress(struct prealloc *p, struct prealloc_progress *out);
/* Stop the worker (at its next chunk) and free @p; NULL is fine. */
void prealloc_free(struct prealloc *p);

#endif /* POSTCOPYD_PREALLOC_H */
