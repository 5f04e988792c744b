/*
 * blocktime.h - how long each vCPU thread sat blocked on missing pages
 * during postcopy, keyed by the thread id the kernel reports with each
 * fault (UFFD_FEATURE_THREAD_ID).
 *
 * Contract: the fault thread calls fault_begin() for every fault message;
 * whoever resolves a page calls fault_end() with its address, ending every
 * fault that waits on it.  Pass the same page-aligned address to both.
 * The tables are fixed at creation: a fault or thread that does not fit is
 * counted as overflow, never allocated for.  One mutex guards them, held
 * for a hash probe and never across a syscall.  Time comes from the caller
 * (CLOCK_MONOTONIC nanoseconds), so tests can drive it.  "All vCPUs
 * blocked" time (QEMU's total postcopy blocktime) accumulates while every
 * thread registered with add_vcpu() waits at once.
 */
#ifndef POSTCOPYD_BLOCKTIME_H
#define POSTCOPYD_BLOCKTIME_H

#include <stddef.h>
#include <stdint.h>
#include <json-glib/json-glib.h>

#include "stats_histogram.h"

#define BLOCKTIME_MAX_THREADS 256
#define BLOCKTIME_MAX_FAULTS  4096

struct blocktime_thread_stats {
    uint32_t tid;
    uint64_t faults;     /* ended faults */
    uint64_t blocked_ns; /* their total */
    uint64_t max_ns;     /* the longest one */
};

struct blocktime_totals {
    uint64_t faults;         /* ended faults, of all threads */
    uint64_t blocked_ns;     /* their total */
    uint64_t all_blocked_ns; /* ended intervals with every vCPU waiting */
    uint32_t outstanding;    /* begun, not ended yet */
    uint32_t threads;        /* distinct threads seen */
    uint64_t
        thread_overflow;     /* faults of threads past the table: totals only */
    uint64_t fault_overflow; /* faults not tracked: too many outstanding */
};

struct blocktime;

struct blocktime *blocktime_new(void);
void blocktime_free(struct blocktime *bt);

/* @tid is a vCPU thread: it counts towards "all vCPUs blocked". */
void blocktime_add_vcpu(struct blocktime *bt, uint32_t tid, uint64_t now_ns);

/* Thread @tid faulted on @addr; a repeat while it waits counts once. */
void blocktime_fault_begin(struct blocktime *bt, uint32_t tid, uint64_t addr,
                           uint64_t now_ns);
/* @addr was resolved: end the faults waiting on it; returns how many. */
unsigned blocktime_fault_end(struct blocktime *bt, uint64_t addr,
                             uint64_t now_ns);

void blocktime_totals(struct blocktime *bt, struct blocktime_totals *out);
/* Copy up to @max threads' stats into @out, by tid; returns how many. */
size_t blocktime_threads(struct blocktime *bt,
                         struct blocktime_thread_stats *out, size_t max);
/* Blocked time of each ended fault, in microseconds. */
const struct stats_histogram *blocktime_histogram(const struct blocktime *bt);

/*
 * Add to @b an object: the totals ("faults", "blocked_ns",
 * "all_blocked_ns", "outstanding", "thread_overflow", "fault_overflow"),
 * "latency" (stats_histogram_to_json()) and "threads": [{"tid", "faults",
 * "blocked_ns", "max_ns"}, ...].
 */
void blocktime_to_json(struct blocktime *bt, JsonBuilder *b);

#endif /* POSTCOPYD_BLOCKTIME_H */
