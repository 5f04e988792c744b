/*
 * dirty_tracker.h - source-side write tracking of another process's memory
 * (the VMM's), through a uffd created in that process's mm and its pid.
 *
 * Contract:
 *  - Methods, best first: DIRTY_ASYNC_WP (WP_ASYNC + PAGEMAP_SCAN on
 *    /proc/PID/pagemap: no faults reach userspace, one scan collects and
 *    re-protects), DIRTY_SYNC_WP (one uffd-wp fault per first write per
 *    round, resolved by the caller's fault thread through
 *    dirty_tracker_handle_wp_fault()), DIRTY_SOFT_DIRTY (clear_refs "4" +
 *    pagemap bit 55, for kernels with neither; not hugetlb, which the kernel
 *    does not soft-dirty track; the process is SIGSTOPped from the pagemap
 *    read to the clear, since a write in between would be lost).
 *  - The caller does UFFDIO_API itself, asking for
 *    dirty_tracker_features(method); dirty_tracker_init() checks that what
 *    the method needs was granted.  Soft-dirty needs no uffd (NULL).
 *  - Each range keeps two bitmaps, one bit per page of its page size:
 *    `live` (sync: written since the page's last protect) and `collected`
 *    (what collect found, handed out and cleared by dirty_tracker_take()).
 *  - A page handed out by take() is protected again before collect returns,
 *    so a write after the caller reads it is reported by the next collect:
 *    no write is ever lost between rounds.  The first collect after
 *    add_range() reports the pages written since add_range().
 *  - handle_wp_fault() may run on another thread than collect/take/add,
 *    and protect() on several; the tracker's lock orders them.  Everything
 *    else is one thread.
 */
#ifndef POSTCOPYD_DIRTY_TRACKER_H
#define POSTCOPYD_DIRTY_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "uffd.h"

enum dirty_method {
    DIRTY_AUTO = 0, /* a request to dirty_method_choose(), never in use */
    DIRTY_ASYNC_WP,
    DIRTY_SYNC_WP,
    DIRTY_SOFT_DIRTY,
};

#define DIRTY_ALL_RANGES ((size_t)-1)

/* What the kernel and the ranges allow, as far as the chooser cares. */
struct dirty_support {
    uint64_t uffd_features; /* usable UFFD_FEATURE_* (uffd_caps.usable) */
    bool pagemap_scan;      /* the PAGEMAP_SCAN ioctl exists */
    bool soft_dirty;        /* CONFIG_MEM_SOFT_DIRTY works */
    bool file_backed;       /* some range is shmem or hugetlbfs */
    bool hugetlb;           /* some range is hugetlbfs */
};

struct dirty_stats {
    uint64_t collects;
    uint64_t scan_calls;     /* PAGEMAP_SCAN ioctls */
    uint64_t wp_faults;      /* sync: faults resolved */
    uint64_t pages_reported; /* summed per report, duplicates included */
    uint64_t freezes;        /* soft-dirty: process stops */
};

struct dirty_range {
    uint64_t base; /* in the tracked process */
    uint64_t size;
    uint64_t page_size;
    uint64_t npages;
    unsigned long *live;
    unsigned long *collected;
    /* watch_absent: not in the process's page table at the last collect */
    unsigned long *absent;
    /* protect_later: not protected yet (dirty_tracker_protect()) */
    unsigned long *unprotected;
};

struct dirty_tracker {
    enum dirty_method method;
    pid_t pid;
    struct uffd *u; /* not owned; NULL for soft-dirty */
    int pagemap_fd;
    int clear_refs_fd;
    GMutex lock;
    struct dirty_range *ranges;
    size_t nranges;
    /* PAGEMAP_SCAN vec_len, <= PM_SCAN_MAX_VEC_LEN; tests lower it. */
    unsigned scan_vec_len;
    bool final;         /* collect_final ran: pages no longer re-protected */
    bool watch_absent;  /* collects note absent pages too */
    bool protect_later; /* pages wait for dirty_tracker_protect() */
    /*
     * Soft-dirty: SIGSTOP the process between reading pagemap and
     * clear_refs, the only way to not lose a write made in between.
     */
    bool freeze;
    struct dirty_stats stats;
};

const char *dirty_method_name(enum dirty_method m);
bool dirty_method_parse(const char *s, enum dirty_method *m);

/*
 * UFFD_FEATURE_* to ask UFFDIO_API for:
 *  async-wp:   WP_ASYNC | WP_UNPOPULATED | WP_HUGETLBFS_SHMEM
 *  sync-wp:    PAGEFAULT_FLAG_WP | WP_UNPOPULATED | WP_HUGETLBFS_SHMEM
 *  soft-dirty: 0 (no uffd)
 * WP_UNPOPULATED is required for anonymous memory (a write to a never
 * touched page is otherwise not reported); WP_HUGETLBFS_SHMEM is needed
 * only to register shmem/hugetlbfs ranges.
 */
uint64_t dirty_tracker_features(enum dirty_method m);

/* Fill the kernel facts of @s: PAGEMAP_SCAN and soft-dirty presence. */
void dirty_support_probe(struct dirty_support *s, uint64_t usable_features);

/*
 * Pick @want, or the best method when @want is DIRTY_AUTO.  A fallback is
 * explained in *@note ("async-wp unavailable: ...; using sync-wp"; g_free
 * it; NULL when the best method was taken), or logged with g_message()
 * when @note is NULL.  Fails when @want (or every method) is impossible.
 */
bool dirty_method_choose(const struct dirty_support *s, enum dirty_method want,
                         enum dirty_method *out, char **note, GError **err);

bool dirty_tracker_init(struct dirty_tracker *dt, pid_t pid, struct uffd *u,
                        enum dirty_method m, GError **err);
/*
 * Unregister the ranges: no page stays protected and blocked writers are
 * woken.  Stop the thread calling handle_wp_fault() first.
 */
void dirty_tracker_destroy(struct dirty_tracker *dt);

/*
 * From now on each collect also notes which pages are absent from the
 * process's page table (dropped by it: punched, zapped; or never touched,
 * or reclaimed): a drop is not a write, and only this shows it.  async-wp
 * only, where the same PAGEMAP_SCAN says it; false for the other methods
 * (nothing watched).  Call before add_range().
 */
bool dirty_tracker_watch_absent(struct dirty_tracker *dt);
/*
 * From now on add_range() leaves the WP methods' pages unprotected: the
 * caller protects each page with dirty_tracker_protect() before its first
 * read, so a write made before that read is in what it reads and is not
 * reported (a precopy's round 1 sends each page once, not once more for
 * every write the guest made before the round reached it).  A page still
 * unprotected at the next collect is protected then and reported as
 * written: it was never tracked.  False for soft-dirty (clear_refs acts
 * on the whole process at once).  Call before add_range().
 */
bool dirty_tracker_protect_later(struct dirty_tracker *dt);
/*
 * Protect pages [first, first + n) of @range that add_range() left
 * unprotected (none when protect_later is off); one ioctl per run still
 * unprotected, made without the tracker's lock.  Callable from several
 * threads at once, and beside handle_wp_fault().
 */
bool dirty_tracker_protect(struct dirty_tracker *dt, size_t range,
                           uint64_t first, uint64_t n, GError **err);
/*
 * The final collect walks every page-table entry of the ranges (async-wp,
 * soft-dirty), so its cost grows with the guest; sync-wp's only reads its
 * bitmap of what faulted.
 */
bool dirty_tracker_final_walks_guest(const struct dirty_tracker *dt);
/* The absent pages of @range at its last collect, or NULL if not watched. */
const unsigned long *dirty_tracker_absent(const struct dirty_tracker *dt,
                                          size_t range);

/*
 * Track [base, base+size) of pages of @page_size (4 KiB, or the hugetlb
 * page size): WP methods register MODE_WP and protect the whole range
 * (unless dirty_tracker_protect_later());
 * soft-dirty harvests the other ranges and clears the process's bits.
 * *@index (may be NULL) receives the range's index.
 */
bool dirty_tracker_add_range(struct dirty_tracker *dt, uint64_t base,
                             uint64_t size, uint64_t page_size, size_t *index,
                             GError **err);

/*
 * Move what was written since the last collect of @range (or
 * DIRTY_ALL_RANGES) into its collected set, re-protecting those pages
 * first.  Soft-dirty clears the whole process, so it always collects
 * every range.
 */
bool dirty_tracker_collect(struct dirty_tracker *dt, size_t range,
                           GError **err);
/*
 * The last collect, with the guest stopped for good: the same, but the WP
 * methods do not re-protect (nothing will be tracked after it, and skipping
 * the PTE updates and TLB flushes shortens the downtime).  Tracking must
 * be stopped afterwards, not collected again.
 */
bool dirty_tracker_collect_final(struct dirty_tracker *dt, GError **err);

/*
 * Sync WP: record the page of a WP fault message and unprotect it, which
 * wakes the writer.  1 handled, 0 not a WP fault in a tracked range,
 * negative errno when the unprotect failed.
 */
int dirty_tracker_handle_wp_fault(struct dirty_tracker *dt,
                                  const struct uffd_msg *msg);

/* Longs in the bitmap of @range. */
size_t dirty_tracker_bitmap_longs(const struct dirty_tracker *dt, size_t range);
/* Copy the collected set of @range to @out (may be NULL), clear it. */
uint64_t dirty_tracker_take(struct dirty_tracker *dt, size_t range,
                            unsigned long *out);
/*
 * OR the collected set of @range into @out, clear it; no allocation, one
 * pass (the final collect runs in the downtime).
 */
uint64_t dirty_tracker_merge(struct dirty_tracker *dt, size_t range,
                             unsigned long *out);
/* Pages in the collected set of @range. */
uint64_t dirty_tracker_count(struct dirty_tracker *dt, size_t range);
void dirty_tracker_get_stats(struct dirty_tracker *dt, struct dirty_stats *out);

#endif /* POSTCOPYD_DIRTY_TRACKER_H */
