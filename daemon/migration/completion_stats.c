/* completion_stats.c - see completion_stats.h. */
#include "completion_stats.h"

#include <string.h>

void completion_stats_encode(struct migration *m, struct completion_stats *cs)
{
    Postcopy__Peer__Complete *c = &cs->msg;
    const struct stats_histogram *h = blocktime_histogram(m->blocktime);
    struct blocktime_thread_stats threads[MIGRATION_MAX_VCPUS];
    size_t nv;

    *c = (Postcopy__Peer__Complete)POSTCOPY__PEER__COMPLETE__INIT;
    c->pages_installed = atomic_load(&m->stats.pages_installed);
    c->pages_requested = atomic_load(&m->stats.postcopy_requests);
    c->faults = atomic_load(&m->stats.faults);
    c->pages_installed_local = atomic_load(&m->stats.installed_local);
    c->n_fault_histogram = STATS_HISTOGRAM_BUCKETS;
    c->fault_histogram = cs->hist;
    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        cs->hist[i] = stats_histogram_bucket_count(h, i);
    }
    c->fault_max_us = stats_histogram_max(h);
    c->fault_sum_us = stats_histogram_sum(h);
    nv = blocktime_threads(m->blocktime, threads, G_N_ELEMENTS(threads));
    for (size_t i = 0; i < nv; i++) {
        Postcopy__Peer__VcpuBlocktime *vb = &cs->vb[i];

        *vb =
            (Postcopy__Peer__VcpuBlocktime)POSTCOPY__PEER__VCPU_BLOCKTIME__INIT;
        vb->tid = threads[i].tid;
        vb->blocked_us = threads[i].blocked_ns / 1000;
        vb->faults = threads[i].faults;
        cs->vbp[i] = vb;
    }
    c->n_vcpu_blocktime = nv;
    c->vcpu_blocktime = cs->vbp;
}

void completion_stats_take(struct migration *m,
                           const Postcopy__Peer__Complete *c)
{
    struct remote_faults *rf = &m->remote;
    /*
     * The count names the layout: buckets of another one (a postcopyd
     * before the log-linear histogram sent 26 log2 buckets) would read as
     * wrong latencies.  The VM already runs there, so only the figures go.
     */
    bool hist_ok = c->n_fault_histogram == STATS_HISTOGRAM_BUCKETS;

    if (!hist_ok) {
        g_warning("migration %s: the destination sent a fault-latency "
                  "histogram of %zu buckets, expected %u (another "
                  "postcopyd version?): fault latency not reported",
                  m->id, c->n_fault_histogram, STATS_HISTOGRAM_BUCKETS);
    }
    g_mutex_lock(&m->lock);
    stats_histogram_init(&rf->hist);
    if (hist_ok) {
        memcpy(rf->hist.buckets, c->fault_histogram, sizeof(rf->hist.buckets));
        rf->hist.max_us = c->fault_max_us;
        rf->hist.sum_us = c->fault_sum_us;
    }
    rf->nvcpus = MIN(c->n_vcpu_blocktime, G_N_ELEMENTS(rf->vcpus));
    for (size_t i = 0; i < rf->nvcpus; i++) {
        rf->vcpus[i].tid = c->vcpu_blocktime[i]->tid;
        rf->vcpus[i].blocked_ns = c->vcpu_blocktime[i]->blocked_us * 1000;
        rf->vcpus[i].faults = c->vcpu_blocktime[i]->faults;
    }
    rf->faults = c->faults;
    atomic_store(&m->stats.installed_local, c->pages_installed_local);
    rf->valid = true;
    g_mutex_unlock(&m->lock);
}
