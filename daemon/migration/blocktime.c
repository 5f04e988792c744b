/* blocktime.c - see blocktime.h. */
#include "blocktime.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Linear probing at most half full keeps probes short. */
#define THREAD_SLOTS (2 * BLOCKTIME_MAX_THREADS)
#define FAULT_SLOTS  (2 * BLOCKTIME_MAX_FAULTS)
#define NO_THREAD    UINT32_MAX

struct thread_slot {
    bool used;
    bool vcpu;
    uint32_t tid;
    uint32_t waiting; /* outstanding faults */
    struct blocktime_thread_stats st;
};

struct fault_slot {
    bool used;
    uint32_t thread; /* index in threads[], or NO_THREAD */
    uint64_t addr;
    uint64_t start_ns;
};

struct blocktime {
    GMutex lock;
    struct blocktime_totals tot;
    uint32_t nvcpus;
    uint32_t vcpus_waiting;
    uint64_t all_since_ns;
    struct stats_histogram hist;
    struct thread_slot threads[THREAD_SLOTS];
    struct fault_slot faults[FAULT_SLOTS];
};

G_STATIC_ASSERT((THREAD_SLOTS & (THREAD_SLOTS - 1)) == 0);
G_STATIC_ASSERT((FAULT_SLOTS & (FAULT_SLOTS - 1)) == 0);

static inline uint32_t hash(uint64_t key, uint32_t slots)
{
    return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (slots - 1);
}

static inline uint32_t fault_home(uint64_t addr)
{
    /* Page addresses differ only above bit 12. */
    return hash(addr >> 12, FAULT_SLOTS);
}

struct blocktime *blocktime_new(void)
{
    struct blocktime *bt = g_new0(struct blocktime, 1);

    g_mutex_init(&bt->lock);
    return bt;
}

void blocktime_free(struct blocktime *bt)
{
    if (bt == NULL) {
        return;
    }
    g_mutex_clear(&bt->lock);
    g_free(bt);
}

/* The slot of @tid, made if new; NO_THREAD when the table is full. */
static uint32_t thread_find(struct blocktime *bt, uint32_t tid)
{
    uint32_t i = hash(tid, THREAD_SLOTS);

    while (bt->threads[i].used && bt->threads[i].tid != tid) {
        i = (i + 1) & (THREAD_SLOTS - 1);
    }
    if (bt->threads[i].used) {
        return i;
    }
    if (bt->tot.threads == BLOCKTIME_MAX_THREADS) {
        return NO_THREAD;
    }
    bt->threads[i].used = true;
    bt->threads[i].tid = tid;
    bt->threads[i].st.tid = tid;
    bt->tot.threads++;
    return i;
}

static bool all_waiting(const struct blocktime *bt)
{
    return bt->nvcpus > 0 && bt->vcpus_waiting == bt->nvcpus;
}

/* Change how many vCPUs there are and wait, timing when all of them do. */
static void vcpus_add(struct blocktime *bt, int vcpus, int waiting,
                      uint64_t now)
{
    bool was_all = all_waiting(bt);

    bt->nvcpus += vcpus;
    bt->vcpus_waiting += waiting;
    if (!was_all && all_waiting(bt)) {
        bt->all_since_ns = now;
    } else if (was_all && !all_waiting(bt) && now > bt->all_since_ns) {
        bt->tot.all_blocked_ns += now - bt->all_since_ns;
    }
}

void blocktime_add_vcpu(struct blocktime *bt, uint32_t tid, uint64_t now_ns)
{
    uint32_t i;

    g_mutex_lock(&bt->lock);
    i = thread_find(bt, tid);
    if (i == NO_THREAD) {
        bt->tot.thread_overflow++;
    } else if (!bt->threads[i].vcpu) {
        bt->threads[i].vcpu = true;
        vcpus_add(bt, 1, bt->threads[i].waiting > 0, now_ns);
    }
    g_mutex_unlock(&bt->lock);
}

static void thread_wait_add(struct blocktime *bt, uint32_t ti, int delta,
                            uint64_t now)
{
    struct thread_slot *th;
    bool was;

    if (ti == NO_THREAD) {
        return;
    }
    th = &bt->threads[ti];
    was = th->waiting > 0;
    th->waiting += delta;
    if (th->vcpu && was != (th->waiting > 0)) {
        vcpus_add(bt, 0, was ? -1 : 1, now);
    }
}

/* Is thread @tid already waiting on @addr? Else the free slot for it. */
static struct fault_slot *fault_slot_for(struct blocktime *bt, uint32_t tid,
                                         uint64_t addr, bool *found)
{
    uint32_t i = fault_home(addr);

    for (; bt->faults[i].used; i = (i + 1) & (FAULT_SLOTS - 1)) {
        struct fault_slot *f = &bt->faults[i];

        if (f->addr == addr && f->thread != NO_THREAD &&
            bt->threads[f->thread].tid == tid) {
            *found = true;
            return f;
        }
    }
    *found = false;
    return &bt->faults[i];
}

void blocktime_fault_begin(struct blocktime *bt, uint32_t tid, uint64_t addr,
                           uint64_t now_ns)
{
    struct fault_slot *f;
    uint32_t ti;
    bool found;

    g_mutex_lock(&bt->lock);
    ti = thread_find(bt, tid);
    f = fault_slot_for(bt, tid, addr, &found);
    if (found) {
        goto out;
    }
    if (bt->tot.outstanding == BLOCKTIME_MAX_FAULTS) {
        bt->tot.fault_overflow++;
        goto out;
    }
    if (ti == NO_THREAD) {
        bt->tot.thread_overflow++;
    }
    *f = (struct fault_slot){
        .used = true, .thread = ti, .addr = addr, .start_ns = now_ns};
    bt->tot.outstanding++;
    thread_wait_add(bt, ti, 1, now_ns);
out:
    g_mutex_unlock(&bt->lock);
}

static void fault_account(struct blocktime *bt, const struct fault_slot *f,
                          uint64_t now)
{
    uint64_t ns = now > f->start_ns ? now - f->start_ns : 0;

    bt->tot.faults++;
    bt->tot.blocked_ns += ns;
    bt->tot.outstanding--;
    stats_histogram_record(&bt->hist, ns / 1000);
    if (f->thread != NO_THREAD) {
        struct blocktime_thread_stats *st = &bt->threads[f->thread].st;

        st->faults++;
        st->blocked_ns += ns;
        st->max_ns = MAX(st->max_ns, ns);
    }
    thread_wait_add(bt, f->thread, -1, now);
}

/* Is @home cyclically within (from, to]? */
static bool home_between(uint32_t home, uint32_t from, uint32_t to)
{
    return from <= to ? (from < home && home <= to)
                      : (from < home || home <= to);
}

/* Empty slot @i, moving later entries back so no probe chain breaks. */
static void fault_remove(struct blocktime *bt, uint32_t i)
{
    uint32_t j = i;

    for (;;) {
        j = (j + 1) & (FAULT_SLOTS - 1);
        if (!bt->faults[j].used) {
            break;
        }
        if (home_between(fault_home(bt->faults[j].addr), i, j)) {
            continue;
        }
        bt->faults[i] = bt->faults[j];
        i = j;
    }
    bt->faults[i].used = false;
}

unsigned blocktime_fault_end(struct blocktime *bt, uint64_t addr,
                             uint64_t now_ns)
{
    uint32_t i = fault_home(addr);
    unsigned n = 0;

    g_mutex_lock(&bt->lock);
    while (bt->faults[i].used) {
        if (bt->faults[i].addr != addr) {
            i = (i + 1) & (FAULT_SLOTS - 1);
            continue;
        }
        fault_account(bt, &bt->faults[i], now_ns);
        /* Another entry may move into slot i: look at it again. */
        fault_remove(bt, i);
        n++;
    }
    g_mutex_unlock(&bt->lock);
    return n;
}

void blocktime_totals(struct blocktime *bt, struct blocktime_totals *out)
{
    g_mutex_lock(&bt->lock);
    *out = bt->tot;
    g_mutex_unlock(&bt->lock);
}

static int cmp_tid(const void *a, const void *b)
{
    const struct blocktime_thread_stats *x = a, *y = b;

    return (x->tid > y->tid) - (x->tid < y->tid);
}

size_t blocktime_threads(struct blocktime *bt,
                         struct blocktime_thread_stats *out, size_t max)
{
    size_t n = 0;

    g_mutex_lock(&bt->lock);
    for (uint32_t i = 0; i < THREAD_SLOTS && n < max; i++) {
        if (bt->threads[i].used) {
            out[n++] = bt->threads[i].st;
        }
    }
    g_mutex_unlock(&bt->lock);
    qsort(out, n, sizeof(*out), cmp_tid);
    return n;
}

const struct stats_histogram *blocktime_histogram(const struct blocktime *bt)
{
    return &bt->hist;
}

static void add_uint(JsonBuilder *b, const char *name, uint64_t v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, (gint64)MIN(v, (uint64_t)G_MAXINT64));
}

static void threads_to_json(struct blocktime *bt, JsonBuilder *b)
{
    g_autofree struct blocktime_thread_stats *th =
        g_new(struct blocktime_thread_stats, BLOCKTIME_MAX_THREADS);
    size_t n = blocktime_threads(bt, th, BLOCKTIME_MAX_THREADS);

    json_builder_set_member_name(b, "threads");
    json_builder_begin_array(b);
    for (size_t i = 0; i < n; i++) {
        json_builder_begin_object(b);
        add_uint(b, "tid", th[i].tid);
        add_uint(b, "faults", th[i].faults);
        add_uint(b, "blocked_ns", th[i].blocked_ns);
        add_uint(b, "max_ns", th[i].max_ns);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

void blocktime_to_json(struct blocktime *bt, JsonBuilder *b)
{
    struct blocktime_totals t;

    blocktime_totals(bt, &t);
    json_builder_begin_object(b);
    add_uint(b, "faults", t.faults);
    add_uint(b, "blocked_ns", t.blocked_ns);
    add_uint(b, "all_blocked_ns", t.all_blocked_ns);
    add_uint(b, "outstanding", t.outstanding);
    add_uint(b, "thread_overflow", t.thread_overflow);
    add_uint(b, "fault_overflow", t.fault_overflow);
    json_builder_set_member_name(b, "latency");
    stats_histogram_to_json(&bt->hist, b);
    threads_to_json(bt, b);
    json_builder_end_object(b);
}
