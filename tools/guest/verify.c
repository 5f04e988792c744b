/* verify.c - see verify.h. */
#include "verify.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <glib.h>

#include "digest.h"

/* Name this many mismatching pages on stderr; the count says the rest. */
#define REPORT_MAX 8

struct verify_job {
    const uint8_t *ram;
    uint64_t page_size;
    const uint64_t *order; /* page numbers to visit; NULL: [begin, end) */
    uint64_t begin, end;
    const uint64_t *expected; /* check against these ... */
    uint64_t *table;          /* ... or record into this */
    atomic_uint *reported;
    uint64_t mismatches;
    uint64_t first_mismatch;
};

static uint64_t page_digest(const struct verify_job *j, uint64_t pg)
{
    return digest_bytes(j->ram + pg * j->page_size, j->page_size);
}

static gpointer record_main(gpointer opaque)
{
    struct verify_job *j = opaque;

    for (uint64_t pg = j->begin; pg < j->end; pg++) {
        j->table[pg] = page_digest(j, pg);
    }
    return NULL;
}

static void report(struct verify_job *j, uint64_t pg, uint64_t got)
{
    if (atomic_fetch_add(j->reported, 1) < REPORT_MAX) {
        fprintf(stderr,
                "postcopy-guest: verify: page %" PRIu64 " digest %016" PRIx64
                ", expected %016" PRIx64 "\n",
                pg, got, j->expected[pg]);
    }
}

static gpointer check_main(gpointer opaque)
{
    struct verify_job *j = opaque;

    for (uint64_t i = j->begin; i < j->end; i++) {
        uint64_t pg = j->order[i];
        /* The first read of the page is what faults on a destination. */
        uint64_t got = page_digest(j, pg);

        if (got == j->expected[pg]) {
            continue;
        }
        if (!j->mismatches++ || pg < j->first_mismatch) {
            j->first_mismatch = pg;
        }
        report(j, pg, got);
    }
    return NULL;
}

/* Run @fn on each job, one thread per job, and wait for all of them. */
static void run_jobs(struct verify_job *jobs, unsigned n, GThreadFunc fn)
{
    g_autofree GThread **threads = g_new0(GThread *, n);

    for (unsigned i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("verify%u", i);

        threads[i] = g_thread_new(name, fn, &jobs[i]);
    }
    for (unsigned i = 0; i < n; i++) {
        g_thread_join(threads[i]);
    }
}

static void split(struct verify_job *jobs, unsigned n, uint64_t npages)
{
    for (unsigned i = 0; i < n; i++) {
        jobs[i].begin = npages * i / n;
        jobs[i].end = npages * (i + 1) / n;
    }
}

uint64_t *verify_digest_table(const uint8_t *ram, uint64_t page_size,
                              uint64_t npages, unsigned nthreads)
{
    uint64_t *table = g_new(uint64_t, npages);
    unsigned n = MAX(1, MIN(nthreads, npages));
    g_autofree struct verify_job *jobs = g_new0(struct verify_job, n);

    for (unsigned i = 0; i < n; i++) {
        jobs[i].ram = ram;
        jobs[i].page_size = page_size;
        jobs[i].table = table;
    }
    split(jobs, n, npages);
    run_jobs(jobs, n, record_main);
    return table;
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

void verify_pages(const uint8_t *ram, uint64_t page_size, uint64_t npages,
                  const uint64_t *expected, unsigned nthreads, uint64_t seed,
                  struct verify_result *out)
{
    int64_t t0 = g_get_monotonic_time();
    g_autofree uint64_t *order = random_order(npages, seed);
    unsigned n = MAX(1, MIN(nthreads, npages));
    g_autofree struct verify_job *jobs = g_new0(struct verify_job, n);
    atomic_uint reported = 0;

    for (unsigned i = 0; i < n; i++) {
        jobs[i].ram = ram;
        jobs[i].page_size = page_size;
        jobs[i].order = order;
        jobs[i].expected = expected;
        jobs[i].reported = &reported;
    }
    split(jobs, n, npages);
    run_jobs(jobs, n, check_main);
    *out = (struct verify_result){.pages_checked = npages};
    for (unsigned i = 0; i < n; i++) {
        if (!jobs[i].mismatches) {
            continue;
        }
        if (!out->mismatches || jobs[i].first_mismatch < out->first_mismatch) {
            out->first_mismatch = jobs[i].first_mismatch;
        }
        out->mismatches += jobs[i].mismatches;
    }
    out->elapsed_us = g_get_monotonic_time() - t0;
}
