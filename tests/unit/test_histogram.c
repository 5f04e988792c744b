/*
 * test_histogram.c - tests for daemon/stats_histogram.h and
 * daemon/blocktime.h: bucket edges, percentiles against exact values on
 * known distributions, concurrent records, and per-thread blocked time for
 * interleaved faults with the tables full.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blocktime.h"
#include "stats_histogram.h"
#include "testlib.h"

#define NTHREADS 8

/* ---- histogram ---- */

static void test_buckets(void)
{
    g_assert_cmpuint(stats_histogram_bucket(0), ==, 0);
    g_assert_cmpuint(stats_histogram_bucket(1), ==, 1);
    g_assert_cmpuint(stats_histogram_bucket(2), ==, 2);
    g_assert_cmpuint(stats_histogram_bucket(3), ==, 2);
    g_assert_cmpuint(stats_histogram_bucket(4), ==, 3);
    g_assert_cmpuint(stats_histogram_bucket(7), ==, 3);
    g_assert_cmpuint(stats_histogram_bucket(8), ==, 4);
    g_assert_cmpuint(stats_histogram_bucket((1u << 24) - 1), ==, 24);
    g_assert_cmpuint(stats_histogram_bucket(1u << 24), ==, 25);
    g_assert_cmpuint(stats_histogram_bucket(UINT64_MAX), ==, 25);
    g_assert_cmpuint(stats_histogram_bucket_le(0), ==, 0);
    g_assert_cmpuint(stats_histogram_bucket_le(1), ==, 1);
    g_assert_cmpuint(stats_histogram_bucket_le(2), ==, 3);
    g_assert_cmpuint(stats_histogram_bucket_le(24), ==, (1u << 24) - 1);
    g_assert_cmpuint(stats_histogram_bucket_le(25), ==, UINT64_MAX);
    /* Every bucket's bound is its own and the next value the next one's. */
    for (unsigned i = 0; i + 1 < STATS_HISTOGRAM_BUCKETS; i++) {
        uint64_t le = stats_histogram_bucket_le(i);

        g_assert_cmpuint(stats_histogram_bucket(le), ==, i);
        g_assert_cmpuint(stats_histogram_bucket(le + 1), ==, i + 1);
    }
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
    /* Exact p50 is 500, in [256, 511]. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 50), ==, 511);
    /* Exact p99 is 990, in [512, 1023]: capped at the max. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 99), ==, 1000);
    g_assert_cmpuint(stats_histogram_percentile(&h, 100), ==, 1000);
    g_assert_cmpuint(stats_histogram_percentile(&h, 0), ==, 1);
    /* Exact p25 is 250, in [128, 255]. */
    g_assert_cmpuint(stats_histogram_percentile(&h, 25), ==, 255);
    g_assert_cmpuint(stats_histogram_percentile(&h, 25.6), ==, 511);
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
    g_assert_cmpuint(stats_histogram_percentile(&h, 50), ==, 15);
    g_assert_cmpuint(stats_histogram_percentile(&h, 99), ==, 15);
    g_assert_cmpuint(stats_histogram_percentile(&h, 99.1), ==, 100000);
    g_assert_cmpuint(stats_histogram_max(&h), ==, 100000);

    /* Past the last bound: the exact max stands in for the bucket's. */
    stats_histogram_record(&h, UINT64_C(1) << 30);
    g_assert_cmpuint(stats_histogram_percentile(&h, 100), ==,
                     UINT64_C(1) << 30);
    g_assert_cmpuint(stats_histogram_bucket_count(&h, 25), ==, 1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/*
 * The documented bound below the last bucket: exact <= estimate < 2 *
 * exact, 0 staying 0.
 */
static void test_percentile_bound(void)
{
    const double ps[] = {0, 1, 10, 50, 90, 99, 99.9, 100};
    GRand *rand = g_rand_new_with_seed(7);

    for (int round = 0; round < 50; round++) {
        unsigned n = g_rand_int_range(rand, 1, 5000);
        g_autofree uint64_t *v = g_new(uint64_t, n);
        struct stats_histogram h;

        stats_histogram_init(&h);
        for (unsigned i = 0; i < n; i++) {
            /* Log-uniform over 0 .. 2^24 - 1 us. */
            v[i] = (uint64_t)1 << g_rand_int_range(rand, 0, 24);
            v[i] = g_rand_int_range(rand, 0, 2) ? v[i] - 1 : v[i] + v[i] / 3;
            stats_histogram_record(&h, v[i]);
        }
        qsort(v, n, sizeof(*v), cmp_u64);
        for (unsigned i = 0; i < G_N_ELEMENTS(ps); i++) {
            double want = ps[i] / 100.0 * n;
            unsigned rank = (unsigned)want;
            uint64_t exact, est = stats_histogram_percentile(&h, ps[i]);

            /* Nearest rank: the smallest rank covering p%. */
            if (rank < want || rank == 0) {
                rank++;
            }
            exact = v[rank - 1];

            g_assert_cmpuint(est, >=, exact);
            g_assert_cmpuint(est, <=, 2 * exact);
        }
        g_assert_cmpuint(stats_histogram_max(&h), ==, v[n - 1]);
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
    g_assert_cmpuint(stats_histogram_bucket_count(&a, 3), ==, 2);
    g_assert_cmpuint(stats_histogram_count(&b), ==, 2);
    g_assert_cmpuint(stats_histogram_percentile(&a, 100), ==, 3000);
}

struct record_race {
    struct stats_histogram h;
    pthread_barrier_t start;
};

#define RECORDS 100000

static void *recorder(void *opaque)
{
    struct record_race *rr = opaque;

    pthread_barrier_wait(&rr->start);
    for (uint64_t i = 0; i < RECORDS; i++) {
        stats_histogram_record(&rr->h, i % 1024);
    }
    return NULL;
}

static void test_concurrent(void)
{
    g_autofree struct record_race *rr = g_new0(struct record_race, 1);
    pthread_t th[NTHREADS];

    pthread_barrier_init(&rr->start, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_create(&th[i], NULL, recorder, rr);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&rr->start);
    g_assert_cmpuint(stats_histogram_count(&rr->h), ==, NTHREADS * RECORDS);
    /* Each thread records 0..1023 over and over: sum and buckets exact. */
    g_assert_cmpuint(stats_histogram_sum(&rr->h), ==,
                     (uint64_t)NTHREADS * (RECORDS / 1024) * 1023 * 1024 / 2 +
                         (uint64_t)NTHREADS * (RECORDS % 1024) *
                             (RECORDS % 1024 - 1) / 2);
    g_assert_cmpuint(stats_histogram_max(&rr->h), ==, 1023);
    g_assert_cmpuint(stats_histogram_bucket_count(&rr->h, 0), ==,
                     NTHREADS * (RECORDS / 1024 + 1));
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
    g_assert_cmpint(member(o, "count"), ==, 4);
    g_assert_cmpint(member(o, "sum_us"), ==, 40000012);
    g_assert_cmpint(member(o, "max_us"), ==, 40000000);
    g_assert_cmpint(member(o, "p50_us"), ==, 7);
    g_assert_cmpint(member(o, "p99_us"), ==, 40000000);
    bk = json_object_get_array_member(o, "buckets");
    g_assert_cmpuint(json_array_get_length(bk), ==, STATS_HISTOGRAM_BUCKETS);
    g_assert_cmpint(member(json_array_get_object_element(bk, 0), "le_us"), ==,
                    0);
    g_assert_cmpint(member(json_array_get_object_element(bk, 0), "count"), ==,
                    1);
    g_assert_cmpint(member(json_array_get_object_element(bk, 3), "le_us"), ==,
                    7);
    g_assert_cmpint(member(json_array_get_object_element(bk, 3), "count"), ==,
                    2);
    g_assert_cmpint(member(json_array_get_object_element(bk, 25), "le_us"), ==,
                    40000000);

    /* Trailing empty buckets are left out. */
    stats_histogram_init(&h);
    stats_histogram_record(&h, 2);
    json_node_unref(node);
    node = to_json(hist_dump, &h);
    bk = json_object_get_array_member(json_node_get_object(node), "buckets");
    g_assert_cmpuint(json_array_get_length(bk), ==, 3);
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
    g_test_add_func("/histogram/empty", test_empty);
    g_test_add_func("/histogram/percentile/uniform", test_uniform);
    g_test_add_func("/histogram/percentile/bimodal", test_bimodal);
    g_test_add_func("/histogram/percentile/bound", test_percentile_bound);
    g_test_add_func("/histogram/merge", test_merge);
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
