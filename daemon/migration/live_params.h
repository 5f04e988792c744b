/*
 * live_params.h - what an operator may change while a migration runs
 * (the control commands migrate-set-parameters and
 * migrate-start-postcopy), shared between the thread that writes them
 * (the daemon's main loop) and the source's engine threads, which read
 * each where it acts:
 *
 *   max_bandwidth       the bulk streams, before each run they send
 *                       (live_params_pace); never the urgent channel,
 *                       never the pages sent in the downtime
 *   downtime_limit_ms   the convergence decision at the end of each
 *                       precopy round (precopy.c)
 *   postcopy_requested  precopy ends at the next round boundary; a
 *                       precopy-mode migration then switches over as
 *                       hybrid does (source.c)
 *
 * Contract: the three are atomics, read at any time; max_bandwidth is
 * written with live_params_set_bandwidth() (it restarts the pacing
 * clock), the other two with atomic_store.  The pacing clock is guarded
 * by pace_lock, held for a few instructions, never across a sleep or I/O.
 */
#ifndef POSTCOPYD_LIVE_PARAMS_H
#define POSTCOPYD_LIVE_PARAMS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

struct live_params {
    _Atomic uint64_t max_bandwidth; /* bytes/s, all bulk streams; 0: none */
    _Atomic uint64_t downtime_limit_ms;
    atomic_bool postcopy_requested;
    GMutex pace_lock;
    uint64_t pace_next_us;       /* by pace_lock: when bulk may send again */
    _Atomic uint64_t pace_epoch; /* bumped when the cap changes */
};

void live_params_init(struct live_params *lp, uint64_t max_bandwidth,
                      uint64_t downtime_limit_ms);
void live_params_clear(struct live_params *lp);

/* A new cap (bytes/s, 0: none): senders waiting re-book under it. */
void live_params_set_bandwidth(struct live_params *lp, uint64_t bps);

/*
 * A bulk stream is about to send @bytes: wait until the cap allows it
 * (at once when there is none).  The streams share one clock, so the cap
 * holds for their sum.  Returns early as soon as @go_on(@opaque) says no
 * (the migration stopped, or left the phase the caller paces).
 */
void live_params_pace(struct live_params *lp, uint64_t bytes,
                      bool (*go_on)(void *opaque), void *opaque);

#endif /* POSTCOPYD_LIVE_PARAMS_H */
