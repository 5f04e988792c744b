/* live_params.c - see live_params.h. */
#include "live_params.h"

/* A wait is cut in slices this long: a cap lifted or a stop acts soon. */
#define PACE_SLICE_US 50000

void live_params_init(struct live_params *lp, uint64_t max_bandwidth,
                      uint64_t downtime_limit_ms)
{
    atomic_store(&lp->max_bandwidth, max_bandwidth);
    atomic_store(&lp->downtime_limit_ms, downtime_limit_ms);
    atomic_store(&lp->postcopy_requested, false);
    g_mutex_init(&lp->pace_lock);
    lp->pace_next_us = 0;
}

void live_params_clear(struct live_params *lp)
{
    g_mutex_clear(&lp->pace_lock);
}

void live_params_pace(struct live_params *lp, uint64_t bytes,
                      const atomic_bool *stop)
{
    uint64_t cap = atomic_load(&lp->max_bandwidth);
    uint64_t now = g_get_monotonic_time(), start;

    if (!cap) {
        return;
    }
    /*
     * Each send books its slot on the shared clock: it may start when
     * the previous one's bytes have drained at the cap.  An idle link
     * earns no credit (no burst after a pause).
     */
    g_mutex_lock(&lp->pace_lock);
    start = MAX(now, lp->pace_next_us);
    lp->pace_next_us = start + bytes * G_USEC_PER_SEC / cap;
    g_mutex_unlock(&lp->pace_lock);
    while (now < start && !atomic_load(stop) &&
           atomic_load(&lp->max_bandwidth)) {
        g_usleep(MIN(start - now, PACE_SLICE_US));
        now = g_get_monotonic_time();
    }
}
