/* workload.c - see workload.h. */
#include "workload.h"

#include <stdatomic.h>
#include <string.h>
#include <glib.h>

#include "digest.h"
#include "guest_thread.h"
#include "pattern.h"

/* Sleep only when this far ahead of the rate; shorter sleeps cost more. */
#define THROTTLE_SLACK_US 1000
/* Further behind than this (e.g. blocked on faults): do not catch up. */
#define THROTTLE_RESET_US 100000

struct vcpu {
    struct workload *w;
    unsigned id;
    GThread *thread;
    uint64_t nunits;  /* units this vCPU may write */
    uint64_t cursor;  /* seq: next unit index */
    uint64_t rng;     /* counter for the random stream */
    int64_t t0_us;    /* throttle baseline */
    uint64_t t0_done; /* writes since t0_us */
    _Atomic uint64_t written;
} __attribute__((aligned(64)));

struct workload {
    struct workload_params p;
    double units_per_us; /* per vCPU; 0: unthrottled */
    struct vcpu *vcpus;

    GMutex lock;
    GCond wake;     /* vCPUs: resume, or a pause cutting a throttle sleep */
    GCond parked_c; /* pauser: one more vCPU parked */
    bool pause_req;
    _Atomic bool pause_flag; /* pause_req, read lock-free between writes */
    bool held;         /* workload_prestart(): threads wait, write nothing */
    unsigned nstarted; /* running vCPUs, the ones a pause waits for */
    unsigned nparked;
    _Atomic uint64_t generation;
};

static const char *const kind_names[] = {
    [WORKLOAD_IDLE] = "idle",
    [WORKLOAD_SEQ] = "seq",
    [WORKLOAD_RANDOM] = "random",
    [WORKLOAD_HOTSET] = "hotset",
};

bool workload_kind_parse(const char *s, enum workload_kind *kind)
{
    for (size_t i = 0; i < G_N_ELEMENTS(kind_names); i++) {
        if (!strcmp(s, kind_names[i])) {
            *kind = i;
            return true;
        }
    }
    return false;
}

const char *workload_kind_name(enum workload_kind kind)
{
    return kind < G_N_ELEMENTS(kind_names) ? kind_names[kind] : "?";
}

void workload_fill(const struct guest_ram *ram, unsigned fill_percent,
                   uint64_t seed)
{
    for (uint64_t pg = 0; pg < ram->npages; pg++) {
        uint64_t v = digest_mix64(seed ^ digest_mix64(pg));
        uint64_t len;
        uint8_t *page = guest_ram_page(ram, pg, &len);

        if (v % 100 < fill_percent) {
            pattern_fill(page, len, digest_mix64(v));
        }
    }
}

/* Units u < @limit with u % n == id. */
static uint64_t share(uint64_t limit, unsigned n, unsigned id)
{
    return limit > id ? (limit - id - 1) / n + 1 : 0;
}

static uint64_t vcpu_next_unit(struct vcpu *v)
{
    uint64_t k;

    if (v->w->p.kind == WORKLOAD_SEQ) {
        k = v->cursor;
        v->cursor = (v->cursor + 1) % v->nunits;
    } else {
        k = digest_mix64(v->rng++) % v->nunits;
    }
    return k * v->w->p.vcpus + v->id;
}

static void vcpu_write(struct vcpu *v)
{
    struct workload *w = v->w;
    uint64_t unit = vcpu_next_unit(v);
    uint64_t n = atomic_load_explicit(&v->written, memory_order_relaxed);
    uint64_t gen = atomic_load_explicit(&w->generation, memory_order_relaxed);
    uint64_t pattern = digest_mix64(w->p.seed ^ digest_mix64(unit) ^
                                    digest_mix64((gen << 32) | v->id) ^ n);

    pattern_fill(guest_ram_unit(w->p.ram, unit, WORKLOAD_UNIT), WORKLOAD_UNIT,
                 pattern);
    atomic_store_explicit(&v->written, n + 1, memory_order_relaxed);
}

static void vcpu_reset_throttle(struct vcpu *v)
{
    v->t0_us = g_get_monotonic_time();
    v->t0_done = 0;
}

static void vcpu_park(struct vcpu *v)
{
    struct workload *w = v->w;

    g_mutex_lock(&w->lock);
    w->nparked++;
    g_cond_broadcast(&w->parked_c);
    while (w->pause_req) {
        g_cond_wait(&w->wake, &w->lock);
    }
    w->nparked--;
    vcpu_reset_throttle(v);
    g_mutex_unlock(&w->lock);
}

static void vcpu_throttle(struct vcpu *v)
{
    struct workload *w = v->w;
    int64_t due, now;

    if (w->units_per_us <= 0) {
        return;
    }
    v->t0_done++;
    due = v->t0_us + (int64_t)(v->t0_done / w->units_per_us);
    now = g_get_monotonic_time();
    if (now - due > THROTTLE_RESET_US) {
        v->t0_us = now;
        v->t0_done = 0;
        return;
    }
    if (due - now < THROTTLE_SLACK_US) {
        return;
    }
    /* A pause broadcasts w->wake, so it never waits for the sleep. */
    g_mutex_lock(&w->lock);
    if (!w->pause_req) {
        g_cond_wait_until(&w->wake, &w->lock, due);
    }
    g_mutex_unlock(&w->lock);
}

/* Until workload_start(): a held vCPU must not touch RAM at all. */
static void vcpu_wait_start(struct vcpu *v)
{
    struct workload *w = v->w;

    g_mutex_lock(&w->lock);
    while (w->held) {
        g_cond_wait(&w->wake, &w->lock);
    }
    vcpu_reset_throttle(v);
    g_mutex_unlock(&w->lock);
}

static gpointer vcpu_main(gpointer opaque)
{
    struct vcpu *v = opaque;

    vcpu_wait_start(v);
    for (;;) {
        if (atomic_load_explicit(&v->w->pause_flag, memory_order_acquire)) {
            /*
             * Adversarial: pages written in the instant before the pause
             * are the ones a migration is most likely to serve stale.
             */
            for (unsigned i = 0; i < v->w->p.last_writes; i++) {
                vcpu_write(v);
            }
            vcpu_park(v);
            continue;
        }
        vcpu_write(v);
        vcpu_throttle(v);
    }
    return NULL;
}

/* Where vCPU v's writes start, from the workload's seed and generation. */
static void seed_vcpu(struct vcpu *v)
{
    v->rng = digest_mix64(v->w->p.seed ^ (v->w->p.generation << 16) ^ v->id);
    v->cursor = 0;
    atomic_store_explicit(&v->written, 0, memory_order_relaxed);
}

struct workload *workload_new(const struct workload_params *p)
{
    struct workload *w = g_new0(struct workload, 1);
    uint64_t units = p->ram->size / WORKLOAD_UNIT;

    w->p = *p;
    if (p->kind == WORKLOAD_HOTSET) {
        units = MAX(1, units * p->hotset_percent / 100);
    }
    if (p->dirty_rate_mib) {
        w->units_per_us = p->dirty_rate_mib * (1048576.0 / WORKLOAD_UNIT) /
                          p->vcpus / G_USEC_PER_SEC;
    }
    atomic_init(&w->generation, p->generation);
    atomic_init(&w->pause_flag, false);
    g_mutex_init(&w->lock);
    g_cond_init(&w->wake);
    g_cond_init(&w->parked_c);
    w->vcpus = g_new0(struct vcpu, p->vcpus);
    for (unsigned i = 0; i < p->vcpus; i++) {
        struct vcpu *v = &w->vcpus[i];

        v->w = w;
        v->id = i;
        v->nunits = share(units, p->vcpus, i);
        seed_vcpu(v);
    }
    return w;
}

/* Create the vCPU threads not created yet. */
static void create_vcpus(struct workload *w)
{
    if (w->p.kind == WORKLOAD_IDLE) {
        return;
    }
    for (unsigned i = 0; i < w->p.vcpus; i++) {
        struct vcpu *v = &w->vcpus[i];
        g_autofree char *name = g_strdup_printf("vcpu%u", i);

        if (v->nunits && !v->thread) {
            v->thread = guest_thread_new(name, vcpu_main, v);
        }
    }
}

void workload_prestart(struct workload *w)
{
    g_mutex_lock(&w->lock);
    w->held = true;
    g_mutex_unlock(&w->lock);
    create_vcpus(w);
}

void workload_adopt(struct workload *w, const struct workload_params *p)
{
    g_mutex_lock(&w->lock);
    g_assert(w->held);
    w->p.seed = p->seed;
    w->p.generation = p->generation;
    w->p.pages_written = p->pages_written;
    atomic_store(&w->generation, p->generation);
    for (unsigned i = 0; i < w->p.vcpus; i++) {
        seed_vcpu(&w->vcpus[i]);
    }
    g_mutex_unlock(&w->lock);
}

void workload_start(struct workload *w)
{
    /* Counted before they run: a pause from now on waits for them. */
    g_mutex_lock(&w->lock);
    w->nstarted = 0;
    for (unsigned i = 0; i < w->p.vcpus; i++) {
        w->nstarted += w->p.kind != WORKLOAD_IDLE && w->vcpus[i].nunits;
    }
    w->held = false;
    g_cond_broadcast(&w->wake);
    g_mutex_unlock(&w->lock);
    create_vcpus(w);
}

void workload_pause(struct workload *w)
{
    g_mutex_lock(&w->lock);
    w->pause_req = true;
    atomic_store_explicit(&w->pause_flag, true, memory_order_release);
    g_cond_broadcast(&w->wake);
    while (w->nparked < w->nstarted) {
        g_cond_wait(&w->parked_c, &w->lock);
    }
    g_mutex_unlock(&w->lock);
}

void workload_resume(struct workload *w)
{
    g_mutex_lock(&w->lock);
    if (w->pause_req) {
        atomic_fetch_add(&w->generation, 1);
    }
    w->pause_req = false;
    atomic_store_explicit(&w->pause_flag, false, memory_order_release);
    g_cond_broadcast(&w->wake);
    g_mutex_unlock(&w->lock);
}

bool workload_paused(struct workload *w)
{
    return atomic_load_explicit(&w->pause_flag, memory_order_acquire);
}

uint64_t workload_pages_written(struct workload *w)
{
    uint64_t n = w->p.pages_written;

    for (unsigned i = 0; i < w->p.vcpus; i++) {
        n += atomic_load_explicit(&w->vcpus[i].written, memory_order_relaxed);
    }
    return n;
}

uint64_t workload_generation(struct workload *w)
{
    return atomic_load(&w->generation);
}
