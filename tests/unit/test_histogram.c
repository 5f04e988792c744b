/*
 * test_histogram.c - tests for daemon/migration/stats_histogram.h and
 * daemon/migration/blocktime.h: bucket edges and the precision bound over every
 * value, percentiles against exact values on known and random
 * distributions, merges, concurrent records, the JSON shape, and
 * per-thread blocked time for interleaved faults with the tables full.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blocktime.h"
#include "stats_histogram.h"
#include "testlib.h"

#define NTHREADS 8

/* ---- histogram ---- */

#define LAST (STATS_HISTOGRAM_BUCKETS - 1)

/* The documented bound: exact to 15 us, then less than 1/8 above. */
static void assert_within_bound(uint64_t est, uint64_t exact)
{
    g_assert_cmpuint(est, >=, exact);
    if (exact < 2 * STATS_HISTOGRAM_SUB) {
        g_assert_cmpuint(est, ==, exact);
    } else {
        g_assert_cmpuint(est, <=, exact + (exact - 1) / STATS_HISTOGRAM_SUB);
    }
}

static void test_buckets(void)
{
    g_assert_cmpuint(STATS_HISTOGRAM_BUCKETS, ==, 177);
    /* One bucket per value up to 15 us. */
    for (unsigned us = 0; us < 16; us++) {
        g_assert_cmpuint(stats_histogram_bucket(us), ==, us);
        g_assert_cmpuint(stats_histogram_bucket_le(us), ==, us);
    }
    /* Then 8 per power of two: [16, 17], [18, 19], ... [30, 31]. */
    g_assert_cmpuint(stats_histogram_bucket(16), ==, 16);
    g_assert_cmpuint(stats_histogram_bucket(17), ==, 16);
    g_assert_cmpuint(stats_histogram_bucket(18), ==, 17);
    g_assert_cmpuint(stats_histogram_bucket(31), ==, 23);
    g_assert_cmpuint(stats_histogram_bucket(32), ==, 24);
    g_assert_cmpuint(stats_histogram_bucket_le(16), ==, 17);
    g_assert_cmpuint(stats_histogram_bucket_le(23), ==, 31);
    g_assert_cmpuint(stats_histogram_bucket_le(24), ==, 35);
    /* 70 us: [64, 71], where log2 buckets said 127. */
    g_assert_cmpuint(stats_histogram_bucket_le(stats_histogram_bucket(70)), ==,
                     71);
    g_assert_cmpuint(stats_histogram_bucket((1u << 24) - 1), ==, LAST - 1);
    g_assert_cmpuint(stats_histogram_bucket_le(LAST - 1), ==, (1u << 24) - 1);
    g_assert_cmpuint(stats_histogram_bucket(1u << 24), ==, LAST);
    g_assert_cmpuint(stats_histogram_bucket(UINT64_MAX), ==, LAST);
    g_assert_cmpuint(stats_histogram_bucket_le(LAST), ==, UINT64_MAX);
    /* Every bucket's bound is its own and the next value the next one's. */
    for (unsigned i = 0; i < LAST; i++) {
        uint64_t le = stats_histogram_bucket_le(i);

        g_assert_cmpuint(stats_histogram_bucket(le), ==, i);
        g_assert_cmpuint(stats_histogram_bucket(le + 1), ==, i + 1);
    }
}

/* Every value under 2^24 us: its bucket's bound is within the bound. */
static void test_buckets_exhaustive(void)
{
    unsigned prev = 0;

    for (uint64_t us = 0; us < (1u << 24); us++) {
        unsigned i = stats_histogram_bucket(us);

        g_assert_true(i == prev || i == prev + 1);
        assert_within_bound(stats_histogram_bucket_le(i), us);
        prev = i;
    }
    g_assert_cmpuint(prev, ==, LAST - 1);
}

static void test_empty(void)
{
    struct stats_histogram h;

    stats_histogram_init(&h);
    g_assert_cmpuint(stats_histogram_count(&h), ==, 0);
    g_assert_cmpuint(stats_histogram_percentile(&h, 50), ==, 0);
    g_assert_cmpuint(stats_histogram_percentile(&h, 100), ==, 0);
    g_assert_cmpuint(stats_histogram_max(&h), ==, 0);
}

static void test_uniform(void)
{
    struct stats_histogram h;

    stats_histogram_init(&h);
    for (uint64_t us = 1; us <= 1000; us++) {
        stats_histogram_record(&h, us);
    }
    g_assert_cmpuint(stats_histogram_count(&h), ==, 1000);
    g_assert_cmpuint(stats_histogram_sum(&h), ==, 500500);
    g_assert_cmpuint(stats_histogram_max(&h), ==, 1000);
    g_assert_cmpuint(stats_histogram_percentile(&h, 0), ==, 1);
    /* Exact p1 is 10: exact under 16. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 1), ==, 10);
    /* Exact p10 is 100, in [96, 103]. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 10), ==, 103);
    /* Exact p25.6 is 256, in [256, 287]. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 25.6), ==, 287);
    /* Exact p50 is 500, in [480, 511]. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 50), ==, 511);
    /* Exact p70 is 700, in [640, 703]. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 70), ==, 703);
    /* Exact p99 is 990, in [960, 1023]: capped at the max. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 99), ==, 1000);
    g_assert_cmpuint(stats_histogram_percentile(&h, 100), ==, 1000);
}

static void test_bimodal(void)
{
    struct stats_histogram h;

    stats_histogram_init(&h);
    for (int i = 0; i < 990; i++) {
        stats_histogram_record(&h, 10);
    }
    for (int i = 0; i < 10; i++) {
        stats_histogram_record(&h, 100000);
    }
    g_assert_cmpuint(stats_histogram_percentile(&h, 50), ==, 10);
    g_assert_cmpuint(stats_histogram_percentile(&h, 99), ==, 10);
    g_assert_cmpuint(stats_histogram_percentile(&h, 99.1), ==, 100000);
    g_assert_cmpuint(stats_histogram_max(&h), ==, 100000);

    /* Past the last bound: the exact max stands in for the bucket's. */
    stats_histogram_record(&h, UINT64_C(1) << 30);
    g_assert_cmpuint(stats_histogram_percentile(&h, 100), ==,
                     UINT64_C(1) << 30);
    g_assert_cmpuint(stats_histogram_bucket_count(&h, LAST), ==, 1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* Log-uniform over 0 .. 2^24 - 1 us, uniform within each power of two. */
static uint64_t random_us(GRand *rand)
{
    int k = g_rand_int_range(rand, -1, 24);

    if (k < 0) {
        return 0;
    }
    return ((uint64_t)1 << k) + g_rand_int_range(rand, 0, 1 << k);
}

/* Nearest rank: the smallest rank covering p% of @n sorted values. */
static uint64_t exact_percentile(const uint64_t *sorted, unsigned n, double p)
{
    double want = p / 100.0 * n;
    unsigned rank = (unsigned)want;

    if (rank < want || rank == 0) {
        rank++;
    }
    return sorted[MIN(rank, n) - 1];
}

/* The documented bound, against exact percentiles of random samples. */
static void test_percentile_bound(void)
{
    const double ps[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100};
    GRand *rand = g_rand_new_with_seed(7);

    for (int round = 0; round < 200; round++) {
        unsigned n = g_rand_int_range(rand, 1, 5000);
        g_autofree uint64_t *v = g_new(uint64_t, n);
        struct stats_histogram h;

        stats_histogram_init(&h);
        for (unsigned i = 0; i < n; i++) {
            v[i] = random_us(rand);
            stats_histogram_record(&h, v[i]);
        }
        qsort(v, n, sizeof(*v), cmp_u64);
        for (unsigned i = 0; i < G_N_ELEMENTS(ps) + 10; i++) {
            double p = i < G_N_ELEMENTS(ps) ? ps[i]
                                            : g_rand_double_range(rand, 0, 100);

            assert_within_bound(stats_histogram_percentile(&h, p),
                                exact_percentile(v, n, p));
        }
        g_assert_cmpuint(stats_histogram_max(&h), ==, v[n - 1]);
        g_assert_cmpuint(stats_histogram_percentile(&h, 100), ==, v[n - 1]);
    }
    g_rand_free(rand);
}

static void test_merge(void)
{
    struct stats_histogram a, b;

    stats_histogram_init(&a);
    stats_histogram_init(&b);
    stats_histogram_record(&a, 5);
    stats_histogram_record(&a, 70);
    stats_histogram_record(&b, 3000);
    stats_histogram_record(&b, 5);
    stats_histogram_merge(&a, &b);
    g_assert_cmpuint(stats_histogram_count(&a), ==, 4);
    g_assert_cmpuint(stats_histogram_sum(&a), ==, 3080);
    g_assert_cmpuint(stats_histogram_max(&a), ==, 3000);
    g_assert_cmpuint(stats_histogram_bucket_count(&a, 5), ==, 2);
    g_assert_cmpuint(
        stats_histogram_bucket_count(&a, stats_histogram_bucket(70)), ==, 1);
    g_assert_cmpuint(
        stats_histogram_bucket_count(&a, stats_histogram_bucket(3000)), ==, 1);
    g_assert_cmpuint(stats_histogram_count(&b), ==, 2);
    g_assert_cmpuint(stats_histogram_percentile(&a, 50), ==, 5);
    g_assert_cmpuint(stats_histogram_percentile(&a, 75), ==, 71);
    g_assert_cmpuint(stats_histogram_percentile(&a, 100), ==, 3000);
    /* A smaller max merged in leaves the larger. */
    stats_histogram_merge(&b, &a);
    g_assert_cmpuint(stats_histogram_max(&b), ==, 3000);
    g_assert_cmpuint(stats_histogram_count(&b), ==, 6);
}

/* Per-part histograms merged equal one that saw every sample. */
static void test_merge_random(void)
{
    GRand *rand = g_rand_new_with_seed(11);
    g_autofree struct stats_histogram *parts =
        g_new(struct stats_histogram, NTHREADS);
    struct stats_histogram all, merged;

    stats_histogram_init(&all);
    stats_histogram_init(&merged);
    for (unsigned i = 0; i < NTHREADS; i++) {
        stats_histogram_init(&parts[i]);
    }
    for (unsigned i = 0; i < 20000; i++) {
        uint64_t us = random_us(rand);

        stats_histogram_record(&all, us);
        stats_histogram_record(&parts[g_rand_int_range(rand, 0, NTHREADS)], us);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        stats_histogram_merge(&merged, &parts[i]);
    }
    g_assert_cmpmem(&merged, sizeof(merged), &all, sizeof(all));
    g_rand_free(rand);
}

struct record_race {
    struct stats_histogram h;
    pthread_barrier_t start;
};

#define RECORDS 100000

/* Spread over most buckets, the same sequence in every thread. */
static uint64_t race_value(uint64_t i)
{
    return i % 2 ? i % 1024 : (i * 7919) % (1u << 22);
}

static void *recorder(void *opaque)
{
    struct record_race *rr = opaque;

    pthread_barrier_wait(&rr->start);
    for (uint64_t i = 0; i < RECORDS; i++) {
        stats_histogram_record(&rr->h, race_value(i));
    }
    return NULL;
}

static void test_concurrent(void)
{
    g_autofree struct record_race *rr = g_new0(struct record_race, 1);
    struct stats_histogram one;
    pthread_t th[NTHREADS];

    pthread_barrier_init(&rr->start, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_create(&th[i], NULL, recorder, rr);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&rr->start);
    /* What one thread records alone, NTHREADS times over, bucket by bucket. */
    stats_histogram_init(&one);
    for (uint64_t i = 0; i < RECORDS; i++) {
        stats_histogram_record(&one, race_value(i));
    }
    g_assert_cmpuint(stats_histogram_count(&rr->h), ==, NTHREADS * RECORDS);
    g_assert_cmpuint(stats_histogram_sum(&rr->h), ==,
                     NTHREADS * stats_histogram_sum(&one));
    g_assert_cmpuint(stats_histogram_max(&rr->h), ==,
                     stats_histogram_max(&one));
    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        g_assert_cmpuint(stats_histogram_bucket_count(&rr->h, i), ==,
                         NTHREADS * stats_histogram_bucket_count(&one, i));
    }
}

static JsonNode *to_json(void (*dump)(const void *, JsonBuilder *),
                         const void *obj)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;
    g_autoptr(JsonNode) root = NULL;

    dump(obj, b);
    root = json_builder_get_root(b);
    /* Through text and back, as the control socket would send it. */
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    return json_from_string(text, NULL);
}

static void hist_dump(const void *h, JsonBuilder *b)
{
    stats_histogram_to_json(h, b);
}

static gint64 member(JsonObject *o, const char *name)
{
    g_assert_true(json_object_has_member(o, name));
    return json_object_get_int_member(o, name);
}

/*
 * Non-cumulative buckets with the bounds of stats_histogram_bucket_le(),
 * in order, up to the last non-empty one; returns the sum of counts.
 */
static gint64 check_json_buckets(JsonArray *bk, gint64 max)
{
    guint n = json_array_get_length(bk);
    gint64 total = 0;

    g_assert_cmpuint(n, >, 0);
    for (guint i = 0; i < n; i++) {
        JsonObject *e = json_array_get_object_element(bk, i);

        g_assert_cmpuint(json_object_get_size(e), ==, 2);
        if (i < LAST) {
            g_assert_cmpint(member(e, "le_us"), ==,
                            stats_histogram_bucket_le(i));
        } else {
            g_assert_cmpint(member(e, "le_us"), ==, max);
        }
        total += member(e, "count");
    }
    g_assert_cmpint(member(json_array_get_object_element(bk, n - 1), "count"),
                    >, 0);
    return total;
}

static void test_json(void)
{
    struct stats_histogram h;
    g_autoptr(JsonNode) node = NULL;
    JsonObject *o;
    JsonArray *bk;

    stats_histogram_init(&h);
    stats_histogram_record(&h, 0);
    stats_histogram_record(&h, 6);
    stats_histogram_record(&h, 6);
    stats_histogram_record(&h, 40000000);
    node = to_json(hist_dump, &h);
    o = json_node_get_object(node);
    g_assert_cmpuint(json_object_get_size(o), ==, 6);
    g_assert_cmpint(member(o, "count"), ==, 4);
    g_assert_cmpint(member(o, "sum_us"), ==, 40000012);
    g_assert_cmpint(member(o, "max_us"), ==, 40000000);
    g_assert_cmpint(member(o, "p50_us"), ==, 6);
    g_assert_cmpint(member(o, "p99_us"), ==, 40000000);
    bk = json_object_get_array_member(o, "buckets");
    g_assert_cmpuint(json_array_get_length(bk), ==, STATS_HISTOGRAM_BUCKETS);
    g_assert_cmpint(check_json_buckets(bk, 40000000), ==, 4);
    g_assert_cmpint(member(json_array_get_object_element(bk, 0), "count"), ==,
                    1);
    g_assert_cmpint(member(json_array_get_object_element(bk, 6), "count"), ==,
                    2);
    g_assert_cmpint(member(json_array_get_object_element(bk, 7), "count"), ==,
                    0);
    g_assert_cmpint(member(json_array_get_object_element(bk, LAST), "le_us"),
                    ==, 40000000);

    /* Trailing empty buckets are left out. */
    stats_histogram_init(&h);
    stats_histogram_record(&h, 2);
    json_node_unref(node);
    node = to_json(hist_dump, &h);
    bk = json_object_get_array_member(json_node_get_object(node), "buckets");
    g_assert_cmpuint(json_array_get_length(bk), ==, 3);
    g_assert_cmpint(check_json_buckets(bk, 2), ==, 1);

    /* 70 us: the array ends with its bucket, [64, 71]. */
    stats_histogram_record(&h, 70);
    json_node_unref(node);
    node = to_json(hist_dump, &h);
    o = json_node_get_object(node);
    bk = json_object_get_array_member(o, "buckets");
    g_assert_cmpuint(json_array_get_length(bk), ==,
                     stats_histogram_bucket(70) + 1);
    g_assert_cmpint(check_json_buckets(bk, 70), ==, 2);
    g_assert_cmpint(
        member(json_array_get_object_element(bk, stats_histogram_bucket(70)),
               "le_us"),
        ==, 71);
    g_assert_cmpint(member(o, "p99_us"), ==, 70);

    /* Empty: no buckets at all. */
    stats_histogram_init(&h);
    json_node_unref(node);
    node = to_json(hist_dump, &h);
    o = json_node_get_object(node);
    g_assert_cmpint(member(o, "count"), ==, 0);
    g_assert_cmpint(member(o, "p50_us"), ==, 0);
    bk = json_object_get_array_member(o, "buckets");
    g_assert_cmpuint(json_array_get_length(bk), ==, 0);
}

/* ---- blocktime ---- */

#define US 1000 /* ns */

static void assert_thread(const struct blocktime_thread_stats *st, uint32_t tid,
                          uint64_t faults, uint64_t blocked_ns, uint64_t max_ns)
{
    g_assert_cmpuint(st->tid, ==, tid);
    g_assert_cmpuint(st->faults, ==, faults);
    g_assert_cmpuint(st->blocked_ns, ==, blocked_ns);
    g_assert_cmpuint(st->max_ns, ==, max_ns);
}

/*
 *   t(us)  0   10  20  30  50  60  100  130
 *   100    A=========(end A at 50)
 *   200        B=====(30)      C=======(100)
 *   300            A===(50)                 D (never ends)
 * All three wait from 20 to 30.
 */
static struct blocktime *interleaved(void)
{
    struct blocktime *bt = blocktime_new();
    const uint64_t A = 0x7f0000001000, B = 0x7f0000002000;
    const uint64_t C = 0x7f0000003000, D = 0x7f0000004000;

    for (uint32_t tid = 100; tid <= 300; tid += 100) {
        blocktime_add_vcpu(bt, tid, 0);
    }
    blocktime_fault_begin(bt, 100, A, 0 * US);
    blocktime_fault_begin(bt, 200, B, 10 * US);
    blocktime_fault_begin(bt, 300, A, 20 * US);
    g_assert_cmpuint(blocktime_fault_end(bt, B, 30 * US), ==, 1);
    g_assert_cmpuint(blocktime_fault_end(bt, A, 50 * US), ==, 2);
    g_assert_cmpuint(blocktime_fault_end(bt, A, 55 * US), ==, 0);
    blocktime_fault_begin(bt, 200, C, 60 * US);
    g_assert_cmpuint(blocktime_fault_end(bt, C, 100 * US), ==, 1);
    blocktime_fault_begin(bt, 300, D, 130 * US);
    return bt;
}

static void test_blocktime_interleaved(void)
{
    struct blocktime *bt = interleaved();
    struct blocktime_thread_stats th[4];
    struct blocktime_totals tot;
    const struct stats_histogram *h = blocktime_histogram(bt);

    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.faults, ==, 4);
    g_assert_cmpuint(tot.blocked_ns, ==, (50 + 20 + 30 + 40) * US);
    g_assert_cmpuint(tot.all_blocked_ns, ==, 10 * US);
    g_assert_cmpuint(tot.outstanding, ==, 1);
    g_assert_cmpuint(tot.threads, ==, 3);
    g_assert_cmpuint(tot.thread_overflow + tot.fault_overflow, ==, 0);

    g_assert_cmpuint(blocktime_threads(bt, th, 4), ==, 3);
    assert_thread(&th[0], 100, 1, 50 * US, 50 * US);
    assert_thread(&th[1], 200, 2, 60 * US, 40 * US);
    assert_thread(&th[2], 300, 1, 30 * US, 30 * US);
    g_assert_cmpuint(blocktime_threads(bt, th, 2), ==, 2);

    g_assert_cmpuint(stats_histogram_count(h), ==, 4);
    g_assert_cmpuint(stats_histogram_max(h), ==, 50);
    g_assert_cmpuint(stats_histogram_sum(h), ==, 140);

    /* The last vCPU still waiting ends with D. */
    g_assert_cmpuint(blocktime_fault_end(bt, 0x7f0000004000, 135 * US), ==, 1);
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.outstanding, ==, 0);
    g_assert_cmpuint(tot.all_blocked_ns, ==, 10 * US);
    blocktime_free(bt);
}

static void test_blocktime_all_blocked(void)
{
    struct blocktime *bt = blocktime_new();
    struct blocktime_totals tot;

    /* No vCPUs registered: nothing counts as "all blocked". */
    blocktime_fault_begin(bt, 1, 0x1000, 0);
    blocktime_fault_end(bt, 0x1000, 100);
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.all_blocked_ns, ==, 0);

    /* A non-vCPU thread waiting changes nothing; both vCPUs do. */
    blocktime_add_vcpu(bt, 1, 100);
    blocktime_add_vcpu(bt, 2, 100);
    blocktime_fault_begin(bt, 9, 0x9000, 100);
    blocktime_fault_begin(bt, 1, 0x1000, 200);
    blocktime_fault_begin(bt, 2, 0x2000, 300);
    blocktime_fault_end(bt, 0x9000, 350);
    /* Registering a third, running vCPU ends the stretch. */
    blocktime_add_vcpu(bt, 3, 400);
    blocktime_fault_begin(bt, 3, 0x3000, 500);
    blocktime_fault_end(bt, 0x2000, 700);
    blocktime_fault_end(bt, 0x1000, 800);
    blocktime_fault_end(bt, 0x3000, 900);
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.all_blocked_ns, ==, (400 - 300) + (700 - 500));
    blocktime_free(bt);
}

static void test_blocktime_duplicate(void)
{
    struct blocktime *bt = blocktime_new();
    struct blocktime_thread_stats th;
    struct blocktime_totals tot;

    /* The same fault read twice keeps its first start. */
    blocktime_fault_begin(bt, 7, 0x5000, 100);
    blocktime_fault_begin(bt, 7, 0x5000, 400);
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.outstanding, ==, 1);
    g_assert_cmpuint(blocktime_fault_end(bt, 0x5000, 1100), ==, 1);
    g_assert_cmpuint(blocktime_threads(bt, &th, 1), ==, 1);
    assert_thread(&th, 7, 1, 1000, 1000);
    /* A clock that went backwards counts as no time, not 2^64 - 1. */
    blocktime_fault_begin(bt, 7, 0x5000, 5000);
    g_assert_cmpuint(blocktime_fault_end(bt, 0x5000, 4000), ==, 1);
    g_assert_cmpuint(blocktime_threads(bt, &th, 1), ==, 1);
    assert_thread(&th, 7, 2, 1000, 1000);
    blocktime_free(bt);
}

static void test_blocktime_fault_overflow(void)
{
    struct blocktime *bt = blocktime_new();
    struct blocktime_totals tot;
    uint64_t extra = (uint64_t)BLOCKTIME_MAX_FAULTS << 12;

    for (uint64_t i = 0; i < BLOCKTIME_MAX_FAULTS; i++) {
        blocktime_fault_begin(bt, i % 64, i << 12, 0);
    }
    blocktime_fault_begin(bt, 1, extra, 0);
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.outstanding, ==, BLOCKTIME_MAX_FAULTS);
    g_assert_cmpuint(tot.fault_overflow, ==, 1);
    g_assert_cmpuint(blocktime_fault_end(bt, extra, 10), ==, 0);
    for (uint64_t i = 0; i < BLOCKTIME_MAX_FAULTS; i++) {
        g_assert_cmpuint(blocktime_fault_end(bt, i << 12, 10), ==, 1);
    }
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.outstanding, ==, 0);
    g_assert_cmpuint(tot.faults, ==, BLOCKTIME_MAX_FAULTS);
    g_assert_cmpuint(tot.blocked_ns, ==, 10 * BLOCKTIME_MAX_FAULTS);
    /* Room again once they ended. */
    blocktime_fault_begin(bt, 1, extra, 20);
    g_assert_cmpuint(blocktime_fault_end(bt, extra, 30), ==, 1);
    blocktime_free(bt);
}

static void test_blocktime_thread_overflow(void)
{
    struct blocktime *bt = blocktime_new();
    g_autofree struct blocktime_thread_stats *th =
        g_new(struct blocktime_thread_stats, BLOCKTIME_MAX_THREADS + 1);
    struct blocktime_totals tot;

    for (uint32_t tid = 1; tid <= BLOCKTIME_MAX_THREADS + 1; tid++) {
        blocktime_fault_begin(bt, tid, (uint64_t)tid << 12, 0);
        blocktime_fault_end(bt, (uint64_t)tid << 12, tid);
    }
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.threads, ==, BLOCKTIME_MAX_THREADS);
    g_assert_cmpuint(tot.thread_overflow, ==, 1);
    /* The untracked thread's fault still counts in the totals. */
    g_assert_cmpuint(tot.faults, ==, BLOCKTIME_MAX_THREADS + 1);
    g_assert_cmpuint(tot.blocked_ns, ==,
                     (BLOCKTIME_MAX_THREADS + 1) * (BLOCKTIME_MAX_THREADS + 2) /
                         2);
    g_assert_cmpuint(blocktime_threads(bt, th, BLOCKTIME_MAX_THREADS + 1), ==,
                     BLOCKTIME_MAX_THREADS);
    for (uint32_t i = 0; i < BLOCKTIME_MAX_THREADS; i++) {
        assert_thread(&th[i], i + 1, 1, i + 1, i + 1);
    }
    blocktime_free(bt);
}

/*
 * Random begins and ends against a plain model: catches a probe chain
 * broken by a removal, which would lose or double-count faults.
 */
static void test_blocktime_model(void)
{
    struct blocktime *bt = blocktime_new();
    g_autoptr(GHashTable) model = g_hash_table_new(g_int64_hash, g_int64_equal);
    GRand *rand = g_rand_new_with_seed(3);
    /* Few pages, many threads: long chains, several waiters per page. */
    static gint64 pages[512];
    uint64_t begun = 0, ended = 0;
    struct blocktime_totals tot;

    for (int i = 0; i < 512; i++) {
        pages[i] = (gint64)(i * 37) << 12;
    }
    for (int i = 0; i < 200000; i++) {
        gint64 *addr = &pages[g_rand_int_range(rand, 0, 512)];
        unsigned waiting = GPOINTER_TO_UINT(g_hash_table_lookup(model, addr));
        uint32_t tid = g_rand_int_range(rand, 0, 200);

        if (g_rand_int_range(rand, 0, 3)) {
            /* tid + addr unique per waiter: encode the waiter in tid. */
            blocktime_fault_begin(bt, tid * 1000 + waiting, *addr, i);
            g_hash_table_insert(model, addr, GUINT_TO_POINTER(waiting + 1));
            begun++;
            continue;
        }
        g_assert_cmpuint(blocktime_fault_end(bt, *addr, i), ==, waiting);
        g_hash_table_remove(model, addr);
        ended += waiting;
    }
    blocktime_totals(bt, &tot);
    g_assert_cmpuint(tot.fault_overflow, ==, 0);
    g_assert_cmpuint(tot.faults, ==, ended);
    g_assert_cmpuint(tot.outstanding, ==, begun - ended);
    g_rand_free(rand);
    blocktime_free(bt);
}

static void bt_dump(const void *bt, JsonBuilder *b)
{
    blocktime_to_json((struct blocktime *)bt, b);
}

static void test_blocktime_json(void)
{
    struct blocktime *bt = interleaved();
    g_autoptr(JsonNode) node = to_json(bt_dump, bt);
    JsonObject *o = json_node_get_object(node);
    JsonArray *th = json_object_get_array_member(o, "threads");
    JsonObject *t1 = json_array_get_object_element(th, 1);

    g_assert_cmpint(member(o, "faults"), ==, 4);
    g_assert_cmpint(member(o, "blocked_ns"), ==, 140 * US);
    g_assert_cmpint(member(o, "all_blocked_ns"), ==, 10 * US);
    g_assert_cmpint(member(o, "outstanding"), ==, 1);
    g_assert_cmpint(member(o, "thread_overflow"), ==, 0);
    g_assert_cmpint(member(o, "fault_overflow"), ==, 0);
    g_assert_cmpint(
        member(json_object_get_object_member(o, "latency"), "max_us"), ==, 50);
    g_assert_cmpuint(json_array_get_length(th), ==, 3);
    g_assert_cmpint(member(t1, "tid"), ==, 200);
    g_assert_cmpint(member(t1, "faults"), ==, 2);
    g_assert_cmpint(member(t1, "blocked_ns"), ==, 60 * US);
    g_assert_cmpint(member(t1, "max_ns"), ==, 40 * US);
    blocktime_free(bt);
}

struct bt_race {
    struct blocktime *bt;
    pthread_barrier_t *start;
    unsigned id;
    uint64_t ended;
};

#define BT_PAGES 1024

/* Each thread begins and ends its own faults on shared pages. */
static void *bt_racer(void *opaque)
{
    struct bt_race *me = opaque;

    pthread_barrier_wait(me->start);
    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t addr = ((i * 7 + me->id) % BT_PAGES) << 12;

        blocktime_fault_begin(me->bt, me->id, addr, i);
        me->ended += blocktime_fault_end(me->bt, addr, i + 1);
    }
    return NULL;
}

static void test_blocktime_concurrent(void)
{
    struct bt_race r[NTHREADS];
    pthread_barrier_t start;
    pthread_t th[NTHREADS];
    struct blocktime *bt = blocktime_new();
    struct blocktime_totals tot;
    uint64_t ended = 0;

    pthread_barrier_init(&start, NULL, NTHREADS);
    for (unsigned i = 0; i < NTHREADS; i++) {
        r[i] = (struct bt_race){.bt = bt, .start = &start, .id = i};
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        pthread_create(&th[i], NULL, bt_racer, &r[i]);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        ended += r[i].ended;
    }
    blocktime_totals(bt, &tot);
    /* An end may take another thread's fault too, but never lose one. */
    g_assert_cmpuint(ended, ==, tot.faults);
    g_assert_cmpuint(tot.faults + tot.outstanding, ==, NTHREADS * 20000);
    g_assert_cmpuint(tot.outstanding, ==, 0);
    g_assert_cmpuint(tot.threads, ==, NTHREADS);
    pthread_barrier_destroy(&start);
    blocktime_free(bt);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/histogram/buckets", test_buckets);
    g_test_add_func("/histogram/buckets/exhaustive", test_buckets_exhaustive);
    g_test_add_func("/histogram/empty", test_empty);
    g_test_add_func("/histogram/percentile/uniform", test_uniform);
    g_test_add_func("/histogram/percentile/bimodal", test_bimodal);
    g_test_add_func("/histogram/percentile/bound", test_percentile_bound);
    g_test_add_func("/histogram/merge", test_merge);
    g_test_add_func("/histogram/merge/random", test_merge_random);
    g_test_add_func("/histogram/concurrent", test_concurrent);
    g_test_add_func("/histogram/json", test_json);
    g_test_add_func("/blocktime/interleaved", test_blocktime_interleaved);
    g_test_add_func("/blocktime/all-blocked", test_blocktime_all_blocked);
    g_test_add_func("/blocktime/duplicate", test_blocktime_duplicate);
    g_test_add_func("/blocktime/overflow/faults",
                    test_blocktime_fault_overflow);
    g_test_add_func("/blocktime/overflow/threads",
                    test_blocktime_thread_overflow);
    g_test_add_func("/blocktime/model", test_blocktime_model);
    g_test_add_func("/blocktime/json", test_blocktime_json);
    g_test_add_func("/blocktime/concurrent", test_blocktime_concurrent);
    return g_test_run();
}
