/*
 * stats_histogram.h - a log-linear histogram of latencies in microseconds
 * that any number of threads record into at once.
 *
 * Contract: record() is a handful of relaxed atomic operations, with no
 * lock and no allocation.  Buckets are HdrHistogram-like: values 0..15 us
 * have a bucket each; above, every power of two [2^m, 2^(m+1) - 1] us,
 * m = 4..23, is split into 8 equal buckets of 2^(m-3) us; the last bucket
 * holds everything from 2^24 us (about 17 s) up.  The maximum is kept
 * exactly beside them.  A percentile is the upper bound of the bucket it
 * falls in, capped at the maximum: never below the true value v, exactly v
 * up to 15 us, and under 2^24 us at most v + (v - 1) / 8 (less than 12.5%
 * above it); in the last bucket it is the maximum.  Reading while others
 * record gives a snapshot off by at most the records in flight.
 */
#ifndef POSTCOPYD_STATS_HISTOGRAM_H
#define POSTCOPYD_STATS_HISTOGRAM_H

#include <stdint.h>
#include <json-glib/json-glib.h>

/* Each power of two is split into 2^STATS_HISTOGRAM_SUB_BITS buckets. */
#define STATS_HISTOGRAM_SUB_BITS 3
#define STATS_HISTOGRAM_SUB      (1u << STATS_HISTOGRAM_SUB_BITS)
/* Values from 2^STATS_HISTOGRAM_RANGE_BITS us go to the last bucket. */
#define STATS_HISTOGRAM_RANGE_BITS 24
/* 16 exact + 8 for each of 2^4..2^23 + the open-ended last one: 177. */
#define STATS_HISTOGRAM_BUCKETS                                                \
    ((STATS_HISTOGRAM_RANGE_BITS - STATS_HISTOGRAM_SUB_BITS + 1) *             \
         STATS_HISTOGRAM_SUB +                                                 \
     1)

struct stats_histogram {
    uint64_t buckets[STATS_HISTOGRAM_BUCKETS]; /* updated atomically */
    uint64_t sum_us;
    uint64_t max_us;
};

/* Empty @h; not while others record into it. */
void stats_histogram_init(struct stats_histogram *h);

void stats_histogram_record(struct stats_histogram *h, uint64_t us);
/* Add every sample of @src to @dst. */
void stats_histogram_merge(struct stats_histogram *dst,
                           const struct stats_histogram *src);

/*
 * The bucket @us falls in, and the largest value bucket @i holds
 * (UINT64_MAX for the last).  Bucket i holds the values above
 * stats_histogram_bucket_le(i - 1), up to its own.
 */
unsigned stats_histogram_bucket(uint64_t us);
uint64_t stats_histogram_bucket_le(unsigned i);

/* Samples in bucket @i. */
uint64_t stats_histogram_bucket_count(const struct stats_histogram *h,
                                      unsigned i);
uint64_t stats_histogram_count(const struct stats_histogram *h);
uint64_t stats_histogram_sum(const struct stats_histogram *h);
uint64_t stats_histogram_max(const struct stats_histogram *h);
/*
 * The value at or below which @p percent (0..100) of the samples fall
 * (nearest rank), rounded up to its bucket's bound (see above); 0 when
 * empty.
 */
uint64_t stats_histogram_percentile(const struct stats_histogram *h, double p);

/*
 * Add to @b, where a value may go, an object: {"count", "sum_us",
 * "max_us", "p50_us", "p99_us", "buckets": [{"le_us", "count"}, ...]}.
 * "count" of a bucket is its own samples (above the previous bucket's
 * "le_us", at most its own), not cumulative; buckets stop at the last
 * non-empty one, and the open-ended last bucket reports the maximum as
 * its "le_us".
 */
void stats_histogram_to_json(const struct stats_histogram *h, JsonBuilder *b);

#endif /* POSTCOPYD_STATS_HISTOGRAM_H */
