/*
 * completion_stats.h - the destination's fault statistics as they travel
 * in its Complete: encoded by the destination, decoded by the source, in
 * one file so that both roles agree on the layout.
 *
 * Contract: completion_stats_encode() fills @cs->msg from @m's counters,
 * histogram and per-vCPU blocktime; @cs owns the arrays the message
 * points to and must outlive the send.  completion_stats_take() keeps a
 * received Complete's figures in m->remote (under m->lock) for
 * query-migrate, and refuses a histogram of another bucket layout.
 */
#ifndef POSTCOPYD_COMPLETION_STATS_H
#define POSTCOPYD_COMPLETION_STATS_H

#include "migration.h"
#include "peer.pb-c.h"

struct completion_stats {
    Postcopy__Peer__Complete msg;
    uint64_t hist[STATS_HISTOGRAM_BUCKETS];
    Postcopy__Peer__VcpuBlocktime vb[MIGRATION_MAX_VCPUS];
    Postcopy__Peer__VcpuBlocktime *vbp[MIGRATION_MAX_VCPUS];
};

void completion_stats_encode(struct migration *m, struct completion_stats *cs);
void completion_stats_take(struct migration *m,
                           const Postcopy__Peer__Complete *c);

#endif /* POSTCOPYD_COMPLETION_STATS_H */
