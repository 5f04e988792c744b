/*
 * floor_stats.h - latency samples of the bench floor tools (fault_floor,
 * tcp_floor) and their one-line JSON report.
 *
 * Contract: samples are nanoseconds.  The report gives exact percentiles
 * (nearest rank over the sorted samples) and, beside them, the same
 * percentiles rounded the way postcopyd's stats_histogram rounds its own
 * (log-linear buckets of microseconds: one per us below 8, then 8 per power
 * of two; a percentile is its bucket's upper bound capped at the maximum;
 * the last bucket holds everything from 2^24 us), plus that histogram, so
 * that a daemon figure and its floor
 * can be compared bucket for bucket.  Header-only: each tool is one file.
 */
#ifndef POSTCOPYD_BENCH_FLOOR_STATS_H
#define POSTCOPYD_BENCH_FLOOR_STATS_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define FLOOR_BUCKETS 177 /* = STATS_HISTOGRAM_BUCKETS */

static inline uint64_t floor_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* As stats_histogram_bucket(): 8 sub-buckets per power of two. */
static inline unsigned floor_bucket(uint64_t us)
{
    unsigned shift;

    if (us >= UINT64_C(1) << 24) {
        return FLOOR_BUCKETS - 1;
    }
    if (us < 8) {
        return (unsigned)us;
    }
    shift = 63 - (unsigned)__builtin_clzll(us) - 3;
    return shift * 8 + (unsigned)(us >> shift);
}

static inline uint64_t floor_bucket_le(unsigned i)
{
    if (i >= FLOOR_BUCKETS - 1) {
        return UINT64_MAX;
    }
    if (i < 8) {
        return i;
    }
    return ((UINT64_C(9) + i % 8) << (i / 8 - 1)) - 1;
}

/*
 * Pin the calling thread to @cpu (< 0 or beyond the set: leave it); false
 * with errno set when the kernel refuses.
 */
static inline bool floor_pin_self(int cpu)
{
    cpu_set_t set;

    if (cpu < 0 || cpu >= CPU_SETSIZE) {
        return true;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    errno = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    return errno == 0;
}

static inline int floor_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest rank covering @p percent of @n samples. */
static inline size_t floor_rank(size_t n, double p)
{
    double want = p / 100.0 * (double)n;
    size_t rank = (size_t)want;

    if ((double)rank < want || rank == 0) {
        rank++;
    }
    return rank > n ? n : rank;
}

/* The daemon's rounding of percentile @p over @h (@n samples). */
static inline uint64_t floor_bucket_percentile(const uint64_t *h, size_t n,
                                               uint64_t max_us, double p)
{
    size_t rank = floor_rank(n, p), seen = 0;

    for (unsigned i = 0; i < FLOOR_BUCKETS; i++) {
        seen += h[i];
        if (seen >= rank) {
            uint64_t le = floor_bucket_le(i);

            return le < max_us ? le : max_us;
        }
    }
    return max_us;
}

/*
 * Print "NAME": {count, p50_us, p99_us, max_us, mean_us, p50_bucket_us,
 * p99_bucket_us, histogram: [{le_us, count}...]} (no trailing comma).
 * Sorts @ns in place.
 */
static inline void floor_print_stats(FILE *f, const char *name, uint64_t *ns,
                                     size_t n)
{
    uint64_t h[FLOOR_BUCKETS] = {0};
    uint64_t max_us, sum = 0;
    const char *sep = "";
    unsigned last = 0;

    if (n == 0) {
        fprintf(f, "\"%s\": {\"count\": 0}", name);
        return;
    }
    qsort(ns, n, sizeof(*ns), floor_cmp_u64);
    for (size_t i = 0; i < n; i++) {
        h[floor_bucket(ns[i] / 1000)]++;
        sum += ns[i];
    }
    max_us = ns[n - 1] / 1000;
    fprintf(f,
            "\"%s\": {\"count\": %zu, \"p50_us\": %.2f, \"p99_us\": %.2f, "
            "\"max_us\": %.2f, \"mean_us\": %.2f, \"p50_bucket_us\": %llu, "
            "\"p99_bucket_us\": %llu, \"histogram\": [",
            name, n, ns[floor_rank(n, 50) - 1] / 1e3,
            ns[floor_rank(n, 99) - 1] / 1e3, ns[n - 1] / 1e3,
            (double)sum / (double)n / 1e3,
            (unsigned long long)floor_bucket_percentile(h, n, max_us, 50),
            (unsigned long long)floor_bucket_percentile(h, n, max_us, 99));
    for (unsigned i = 0; i < FLOOR_BUCKETS; i++) {
        if (h[i]) {
            last = i;
        }
    }
    for (unsigned i = 0; i <= last; i++) {
        if (!h[i]) {
            continue;
        }
        fprintf(f, "%s{\"le_us\": %llu, \"count\": %llu}", sep,
                (unsigned long long)(i == FLOOR_BUCKETS - 1
                                         ? max_us
                                         : floor_bucket_le(i)),
                (unsigned long long)h[i]);
        sep = ", ";
    }
    fprintf(f, "]}");
}

#endif /* POSTCOPYD_BENCH_FLOOR_STATS_H */
