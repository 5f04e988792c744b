/* stats_histogram.c - see stats_histogram.h. */
#include "stats_histogram.h"

#include <stdbool.h>
#include <string.h>

#define LAST_BUCKET (STATS_HISTOGRAM_BUCKETS - 1)

void stats_histogram_init(struct stats_histogram *h)
{
    memset(h, 0, sizeof(*h));
}

/*
 * Bucket = shift * SUB + (us >> shift), where shift keeps the top
 * SUB_BITS + 1 bits of @us (its leading one and the sub-bucket): below
 * 2 * SUB the shift is 0 and every value has its own bucket; above, each
 * power of two adds SUB buckets.  One clz, no loop, no table.
 */
unsigned stats_histogram_bucket(uint64_t us)
{
    unsigned shift;

    if (us >= UINT64_C(1) << STATS_HISTOGRAM_RANGE_BITS) {
        return LAST_BUCKET;
    }
    if (us < STATS_HISTOGRAM_SUB) {
        return us;
    }
    shift = 63 - __builtin_clzll(us) - STATS_HISTOGRAM_SUB_BITS;
    return shift * STATS_HISTOGRAM_SUB + (unsigned)(us >> shift);
}

uint64_t stats_histogram_bucket_le(unsigned i)
{
    unsigned shift;
    uint64_t top;

    if (i >= LAST_BUCKET) {
        return UINT64_MAX;
    }
    if (i < STATS_HISTOGRAM_SUB) {
        return i;
    }
    /* The inverse of the above: top is the bucket's value >> shift. */
    shift = i / STATS_HISTOGRAM_SUB - 1;
    top = STATS_HISTOGRAM_SUB + i % STATS_HISTOGRAM_SUB;
    return ((top + 1) << shift) - 1;
}

static void atomic_max(uint64_t *m, uint64_t v)
{
    uint64_t old = __atomic_load_n(m, __ATOMIC_RELAXED);

    while (v > old &&
           !__atomic_compare_exchange_n(m, &old, v, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
}

void stats_histogram_record(struct stats_histogram *h, uint64_t us)
{
    /* Max first: a reader that sees the sample's bucket sees its max. */
    atomic_max(&h->max_us, us);
    __atomic_fetch_add(&h->sum_us, us, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->buckets[stats_histogram_bucket(us)], 1,
                       __ATOMIC_RELEASE);
}

static uint64_t get(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_ACQUIRE);
}

void stats_histogram_merge(struct stats_histogram *dst,
                           const struct stats_histogram *src)
{
    atomic_max(&dst->max_us, get(&src->max_us));
    __atomic_fetch_add(&dst->sum_us, get(&src->sum_us), __ATOMIC_RELAXED);
    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        __atomic_fetch_add(&dst->buckets[i], get(&src->buckets[i]),
                           __ATOMIC_RELEASE);
    }
}

/* One read of every bucket, so that counts and ranks agree. */
static uint64_t snapshot(const struct stats_histogram *h,
                         uint64_t b[STATS_HISTOGRAM_BUCKETS])
{
    uint64_t n = 0;

    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        b[i] = get(&h->buckets[i]);
        n += b[i];
    }
    return n;
}

uint64_t stats_histogram_bucket_count(const struct stats_histogram *h,
                                      unsigned i)
{
    g_assert(i < STATS_HISTOGRAM_BUCKETS);
    return get(&h->buckets[i]);
}

uint64_t stats_histogram_count(const struct stats_histogram *h)
{
    uint64_t b[STATS_HISTOGRAM_BUCKETS];

    return snapshot(h, b);
}

uint64_t stats_histogram_sum(const struct stats_histogram *h)
{
    return get(&h->sum_us);
}

uint64_t stats_histogram_max(const struct stats_histogram *h)
{
    return get(&h->max_us);
}

static uint64_t percentile_of(const uint64_t b[STATS_HISTOGRAM_BUCKETS],
                              uint64_t n, uint64_t max, double p)
{
    double want = CLAMP(p, 0.0, 100.0) / 100.0 * (double)n;
    uint64_t rank = (uint64_t)want, seen = 0;

    if (n == 0) {
        return 0;
    }
    /* The nearest-rank definition: the smallest rank covering p%. */
    if ((double)rank < want || rank == 0) {
        rank++;
    }
    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        seen += b[i];
        if (seen >= rank) {
            return MIN(stats_histogram_bucket_le(i), max);
        }
    }
    return max;
}

uint64_t stats_histogram_percentile(const struct stats_histogram *h, double p)
{
    uint64_t b[STATS_HISTOGRAM_BUCKETS];
    uint64_t n = snapshot(h, b);

    return percentile_of(b, n, get(&h->max_us), p);
}

static void add_uint(JsonBuilder *b, const char *name, uint64_t v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, (gint64)MIN(v, (uint64_t)G_MAXINT64));
}

static void buckets_to_json(const uint64_t bk[STATS_HISTOGRAM_BUCKETS],
                            uint64_t max, JsonBuilder *b)
{
    int last = LAST_BUCKET;

    while (last >= 0 && bk[last] == 0) {
        last--;
    }
    json_builder_set_member_name(b, "buckets");
    json_builder_begin_array(b);
    for (int i = 0; i <= last; i++) {
        json_builder_begin_object(b);
        add_uint(b, "le_us",
                 i == LAST_BUCKET ? max : stats_histogram_bucket_le(i));
        add_uint(b, "count", bk[i]);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

void stats_histogram_to_json(const struct stats_histogram *h, JsonBuilder *b)
{
    uint64_t bk[STATS_HISTOGRAM_BUCKETS];
    uint64_t n = snapshot(h, bk);
    uint64_t max = get(&h->max_us);

    json_builder_begin_object(b);
    add_uint(b, "count", n);
    add_uint(b, "sum_us", get(&h->sum_us));
    add_uint(b, "max_us", max);
    add_uint(b, "p50_us", percentile_of(bk, n, max, 50));
    add_uint(b, "p99_us", percentile_of(bk, n, max, 99));
    buckets_to_json(bk, max, b);
    json_builder_end_object(b);
}
