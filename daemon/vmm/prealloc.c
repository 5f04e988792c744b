/* prealloc.c - see prealloc.h. */
#include "prealloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <glib.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/*
 * Bytes mapped and populated per step: small enough that a stop request is
 * seen within milliseconds and the daemon's page tables stay small, large
 * enough that the mmap/munmap pair costs nothing beside the touching.
 */
#define PREALLOC_CHUNK (64ull << 20)

struct prealloc {
    const struct region_table *regions;
    char *vm_name;
    GThread *thread;
    atomic_bool stop;
    _Atomic uint64_t done;
    uint64_t total;
    int64_t t0_us;
    _Atomic int64_t t1_us; /* 0 until the worker ends */
    atomic_bool failed;
    char error[160]; /* written by the worker before t1_us is set */
};

static bool file_backed(const struct region *r)
{
    return r->fd >= 0 && r->kind != BACKING_ANON;
}

/* [off, off + len) of @r's file: allocated and zeroed, or errno. */
static int populate(const struct region *r, uint64_t off, uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd,
                   (off_t)(r->offset + off));
    int ret = 0;

    if (p == MAP_FAILED) {
        return errno;
    }
    if (madvise(p, len, MADV_POPULATE_WRITE)) {
        ret = errno;
    }
    munmap(p, len);
    return ret;
}

static bool populate_region(struct prealloc *pa, const struct region *r)
{
    uint64_t chunk = MAX(PREALLOC_CHUNK / r->page_size, 1) * r->page_size;

    for (uint64_t off = 0; off < r->size && !atomic_load(&pa->stop);
         off += chunk) {
        uint64_t len = MIN(chunk, r->size - off);
        int e = populate(r, off, len);

        if (e) {
            snprintf(pa->error, sizeof(pa->error),
                     "allocating region %s at offset 0x%" G_GINT64_MODIFIER
                     "x: %s",
                     r->name, off, g_strerror(e));
            return false;
        }
        atomic_fetch_add(&pa->done, len);
    }
    return true;
}

static gpointer prealloc_thread(gpointer opaque)
{
    struct prealloc *pa = opaque;
    bool ok = true;

    for (size_t i = 0; ok && i < pa->regions->n; i++) {
        const struct region *r = &pa->regions->regions[i];

        if (file_backed(r)) {
            ok = populate_region(pa, r);
        }
    }
    if (!ok) {
        atomic_store(&pa->failed, true);
        g_warning("vm %s: cannot preallocate its RAM: %s (a migration to it "
                  "is refused)",
                  pa->vm_name, pa->error);
    } else if (!atomic_load(&pa->stop)) {
        g_message("vm %s: %" G_GUINT64_FORMAT " MiB of RAM preallocated in "
                  "%.2f s",
                  pa->vm_name, pa->total >> 20,
                  (g_get_monotonic_time() - pa->t0_us) / 1e6);
    }
    atomic_store(&pa->t1_us, g_get_monotonic_time());
    return NULL;
}

struct prealloc *prealloc_start(const struct region_table *regions,
                                const char *vm_name)
{
    struct prealloc *pa;
    uint64_t total = 0;

    for (size_t i = 0; i < regions->n; i++) {
        if (file_backed(&regions->regions[i])) {
            total += regions->regions[i].size;
        }
    }
    if (!total) {
        return NULL;
    }
    pa = g_new0(struct prealloc, 1);
    pa->regions = regions;
    pa->vm_name = g_strdup(vm_name);
    pa->total = total;
    pa->t0_us = g_get_monotonic_time();
    pa->thread = g_thread_new("prealloc", prealloc_thread, pa);
    return pa;
}

void prealloc_get_progress(struct prealloc *pa, struct prealloc_progress *out)
{
    int64_t t1 = atomic_load(&pa->t1_us);

    memset(out, 0, sizeof(*out));
    out->done = atomic_load(&pa->done);
    out->total = pa->total;
    out->finished = t1 != 0;
    out->failed = out->finished && atomic_load(&pa->failed);
    out->seconds = ((t1 ? t1 : g_get_monotonic_time()) - pa->t0_us) / 1e6;
    if (out->failed) {
        g_strlcpy(out->error, pa->error, sizeof(out->error));
    }
}

void prealloc_free(struct prealloc *pa)
{
    if (!pa) {
        return;
    }
    atomic_store(&pa->stop, true);
    g_thread_join(pa->thread);
    g_free(pa->vm_name);
    g_free(pa);
}
