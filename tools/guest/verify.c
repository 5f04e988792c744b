/* verify.c - see verify.h. */
#include "verify.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <glib.h>

#include "digest.h"
#include "guest_thread.h"
#include "pattern.h"

/* Name this many bad pages on stderr; the counts say the rest. */
#define REPORT_MAX 8
/* Keep each overlap thread's order and verify's writes apart. */
#define THREAD_SALT 0x6f7665726c6170ULL
#define BURST_SALT  0x6275727374ULL
#define WRITE_SALT  0x7772697465ULL
/* A neighbour is read with probability 1 / BURST_ODDS. */
#define BURST_ODDS 4

struct verify_run {
    const struct verify_params *p;
    const uint64_t *order; /* split mode: the shared random order */
    _Atomic uint64_t *bad; /* bitmap: some read of the page mismatched */
    atomic_uint reported;
    unsigned n; /* threads */
};

struct verify_job {
    struct verify_run *run;
    unsigned id;
    uint64_t begin, end; /* split: slice of order; record: page range */
    uint64_t *table;     /* record: digests go here */
    uint64_t reads, written, overwritten;
    /* This thread's alone: merged into the result once it is joined. */
    struct stats_histogram latency, slow;
};

static uint64_t page_digest(const struct guest_ram *ram, uint64_t pg)
{
    uint64_t len;
    const uint8_t *page = guest_ram_page(ram, pg, &len);

    return digest_bytes(page, len);
}

static gpointer record_main(gpointer opaque)
{
    struct verify_job *j = opaque;

    for (uint64_t pg = j->begin; pg < j->end; pg++) {
        j->table[pg] = page_digest(j->run->p->ram, pg);
    }
    return NULL;
}

static bool may_report(struct verify_run *run)
{
    return atomic_fetch_add(&run->reported, 1) < REPORT_MAX;
}

static bool is_bad(struct verify_run *run, uint64_t pg)
{
    return atomic_load_explicit(&run->bad[pg / 64], memory_order_relaxed) &
           (1ULL << (pg % 64));
}

/* Mark @pg bad; only the first thread to see it names it. */
static void mark_bad(struct verify_run *run, uint64_t pg, uint64_t got)
{
    uint64_t bit = 1ULL << (pg % 64);

    if (atomic_fetch_or(&run->bad[pg / 64], bit) & bit) {
        return;
    }
    if (may_report(run)) {
        fprintf(stderr,
                "postcopy-guest: verify: page %" PRIu64 " digest %016" PRIx64
                ", expected %016" PRIx64 "\n",
                pg, got, run->p->expected[pg]);
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The first read of the page is what faults on a destination: time that
 * one byte alone, so the figure is the stall and not the digest.
 */
static void timed_touch(struct verify_job *j, const uint8_t *page)
{
    uint64_t t0 = now_ns(), ns;

    (void)*(const volatile uint8_t *)page;
    ns = now_ns() - t0;
    stats_histogram_record(&j->latency, ns / 1000);
    if (ns > VERIFY_SLOW_NS) {
        stats_histogram_record(&j->slow, ns / 1000);
    }
}

static void check_page(struct verify_job *j, uint64_t pg)
{
    uint64_t len, got;
    const uint8_t *page = guest_ram_page(j->run->p->ram, pg, &len);

    timed_touch(j, page);
    got = digest_bytes(page, len);
    j->reads++;
    if (got != j->run->p->expected[pg]) {
        mark_bad(j->run, pg, got);
    }
}

static gpointer split_main(gpointer opaque)
{
    struct verify_job *j = opaque;

    for (uint64_t i = j->begin; i < j->end; i++) {
        check_page(j, j->run->order[i]);
    }
    return NULL;
}

/* Fisher-Yates over every page number, deterministic in @seed. */
static uint64_t *random_order(uint64_t npages, uint64_t seed)
{
    uint64_t *order = g_new(uint64_t, npages);

    for (uint64_t i = 0; i < npages; i++) {
        order[i] = i;
    }
    for (uint64_t i = npages; i > 1; i--) {
        uint64_t j = digest_mix64(seed + i) % i;
        uint64_t t = order[i - 1];

        order[i - 1] = order[j];
        order[j] = t;
    }
    return order;
}

static gpointer overlap_main(gpointer opaque)
{
    struct verify_job *j = opaque;
    uint64_t npages = j->run->p->ram->npages;
    uint64_t seed = digest_mix64(j->run->p->seed ^ (THREAD_SALT * (j->id + 1)));
    g_autofree uint64_t *order = random_order(npages, seed);
    uint64_t rng = seed ^ BURST_SALT;

    for (uint64_t i = 0; i < npages; i++) {
        uint64_t pg = order[i];
        uint64_t r = digest_mix64(rng++);

        check_page(j, pg);
        /* A burst: whoever faults on p soon wants its neighbours. */
        if (pg > 0 && r % BURST_ODDS == 0) {
            check_page(j, pg - 1);
        }
        if (pg + 1 < npages && (r >> 32) % BURST_ODDS == 0) {
            check_page(j, pg + 1);
        }
    }
    return NULL;
}

static uint64_t write_value(const struct verify_run *run, uint64_t pg)
{
    return digest_mix64(run->p->seed ^ WRITE_SALT ^ digest_mix64(pg));
}

static gpointer write_main(gpointer opaque)
{
    struct verify_job *j = opaque;
    struct verify_run *run = j->run;

    for (uint64_t pg = j->id; pg < run->p->ram->npages; pg += run->n) {
        uint64_t len;
        uint8_t *page = guest_ram_page(run->p->ram, pg, &len);

        if (!is_bad(run, pg)) {
            pattern_fill(page, len, write_value(run, pg));
            j->written++;
        }
    }
    return NULL;
}

static gpointer recheck_main(gpointer opaque)
{
    struct verify_job *j = opaque;
    struct verify_run *run = j->run;

    for (uint64_t pg = j->id; pg < run->p->ram->npages; pg += run->n) {
        uint64_t len;
        const uint8_t *page = guest_ram_page(run->p->ram, pg, &len);

        if (is_bad(run, pg) || pattern_holds(page, len, write_value(run, pg))) {
            continue;
        }
        j->overwritten++;
        if (may_report(run)) {
            fprintf(stderr,
                    "postcopy-guest: verify: page %" PRIu64
                    " changed after the guest wrote it\n",
                    pg);
        }
    }
    return NULL;
}

/* Run @fn on each job, one thread per job, and wait for all of them. */
static void run_jobs(struct verify_job *jobs, unsigned n, GThreadFunc fn)
{
    g_autofree GThread **threads = g_new0(GThread *, n);

    for (unsigned i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("verify%u", i);

        threads[i] = guest_thread_new(name, fn, &jobs[i]);
    }
    for (unsigned i = 0; i < n; i++) {
        g_thread_join(threads[i]);
    }
}

static struct verify_job *new_jobs(struct verify_run *run, uint64_t npages)
{
    struct verify_job *jobs = g_new0(struct verify_job, run->n);

    for (unsigned i = 0; i < run->n; i++) {
        jobs[i].run = run;
        jobs[i].id = i;
        jobs[i].begin = npages * i / run->n;
        jobs[i].end = npages * (i + 1) / run->n;
        stats_histogram_init(&jobs[i].latency);
        stats_histogram_init(&jobs[i].slow);
    }
    return jobs;
}

uint64_t *verify_digest_table(const struct guest_ram *ram, unsigned nthreads)
{
    const struct verify_params p = {.ram = ram};
    struct verify_run run = {
        .p = &p,
        .n = MAX(1, MIN(nthreads, ram->npages)),
    };
    g_autofree struct verify_job *jobs = new_jobs(&run, ram->npages);
    uint64_t *table = g_new(uint64_t, ram->npages);

    for (unsigned i = 0; i < run.n; i++) {
        jobs[i].table = table;
    }
    run_jobs(jobs, run.n, record_main);
    return table;
}

/* Write, let the migration do its worst for settle_ms, look again. */
static void write_phase(struct verify_run *run, struct verify_job *jobs,
                        struct verify_result *out)
{
    run_jobs(jobs, run->n, write_main);
    for (unsigned i = 0; i < run->n; i++) {
        out->pages_written += jobs[i].written;
    }
    printf("postcopy-guest: verify-write: wrote %" PRIu64
           " pages, re-checking in "
           "%u ms\n",
           out->pages_written, run->p->settle_ms);
    g_usleep(run->p->settle_ms * 1000ULL);
    run_jobs(jobs, run->n, recheck_main);
    for (unsigned i = 0; i < run->n; i++) {
        out->overwritten += jobs[i].overwritten;
    }
}

static void tally_mismatches(struct verify_run *run, uint64_t npages,
                             struct verify_result *out)
{
    for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
        uint64_t bits = atomic_load(&run->bad[w]);

        if (bits && !out->mismatches) {
            out->first_mismatch = w * 64 + __builtin_ctzll(bits);
        }
        out->mismatches += __builtin_popcountll(bits);
    }
}

void verify_pages(const struct verify_params *p, struct verify_result *out)
{
    int64_t t0 = g_get_monotonic_time();
    uint64_t npages = p->ram->npages;
    g_autofree uint64_t *order = NULL;
    g_autofree _Atomic uint64_t *bad =
        g_new0(_Atomic uint64_t, (npages + 63) / 64);
    struct verify_run run = {.p = p, .bad = bad};
    g_autofree struct verify_job *jobs = NULL;

    atomic_init(&run.reported, 0);
    run.n = MAX(1, p->overlap ? p->nthreads : MIN(p->nthreads, npages));
    if (!p->overlap) {
        order = random_order(npages, p->seed);
        run.order = order;
    }
    jobs = new_jobs(&run, npages);
    run_jobs(jobs, run.n, p->overlap ? overlap_main : split_main);
    *out = (struct verify_result){.pages_checked = npages};
    stats_histogram_init(&out->latency);
    stats_histogram_init(&out->slow);
    for (unsigned i = 0; i < run.n; i++) {
        out->reads += jobs[i].reads;
        stats_histogram_merge(&out->latency, &jobs[i].latency);
        stats_histogram_merge(&out->slow, &jobs[i].slow);
    }
    tally_mismatches(&run, npages, out);
    if (p->write) {
        write_phase(&run, jobs, out);
    }
    out->elapsed_us = g_get_monotonic_time() - t0;
}
