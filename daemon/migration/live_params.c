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
    atomic_store(&lp->pace_epoch, 0);
    g_mutex_init(&lp->pace_lock);
    lp->pace_next_us = 0;
}

void live_params_clear(struct live_params *lp)
{
    g_mutex_clear(&lp->pace_lock);
}

void live_params_set_bandwidth(struct live_params *lp, uint64_t bps)
{
    g_mutex_lock(&lp->pace_lock);
    atomic_store(&lp->max_bandwidth, bps);
    lp->pace_next_us = 0;
    atomic_fetch_add(&lp->pace_epoch, 1);
    g_mutex_unlock(&lp->pace_lock);
}

/*
 * Book a slot for @bytes on the shared clock: it starts when the bytes
 * booked before have drained at @cap.  An idle link earns no credit (no
 * burst after a pause).
 */
static uint64_t book(struct live_params *lp, uint64_t bytes, uint64_t cap,
                     uint64_t now)
{
    uint64_t start;

    g_mutex_lock(&lp->pace_lock);
    start = MAX(now, lp->pace_next_us);
    lp->pace_next_us = start + bytes * G_USEC_PER_SEC / cap;
    g_mutex_unlock(&lp->pace_lock);
    return start;
}

void live_params_pace(struct live_params *lp, uint64_t bytes,
                      bool (*go_on)(void *opaque), void *opaque)
{
    for (;;) {
        uint64_t epoch = atomic_load(&lp->pace_epoch);
        uint64_t cap = atomic_load(&lp->max_bandwidth);
        uint64_t now = g_get_monotonic_time(), start;

        if (!cap) {
            return;
        }
        start = book(lp, bytes, cap, now);
        while (now < start && go_on(opaque) &&
               atomic_load(&lp->pace_epoch) == epoch) {
            g_usleep(MIN(start - now, PACE_SLICE_US));
            now = g_get_monotonic_time();
        }
        /* Else the cap changed: a slot booked under the old one is void. */
        if (now >= start || !go_on(opaque)) {
            return;
        }
    }
}
