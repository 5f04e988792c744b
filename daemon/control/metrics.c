/*
 * metrics.c - query-metrics: the daemon's counters for an operator's
 * graphs, summed over the registry of migrations (migrations.c keeps
 * every migration the daemon ran, so the sums only grow, as counters
 * must; a restart starts them again, as Prometheus counters expect).
 *
 *   migrations     {"started", "active", "completed", "failed",
 *                   "cancelled"}: both roles; active is every one not
 *                   in a final status (postcopy-paused included)
 *   bytes-sent     page payload sent by source migrations
 *   bytes-received page payload received by destination migrations
 *   pages-faulted  guest page faults the destinations served (uffd)
 *   last-downtime  ms, of the migration that completed last (0: none)
 *   fault-latency  the destinations' fault latency, every migration's
 *                  samples merged (stats_histogram_to_json())
 */
#include "daemon.h"

#include "blocktime.h"

struct metrics {
    uint64_t started, active, completed, failed, cancelled;
    uint64_t bytes_sent, bytes_received, pages_faulted;
    uint64_t last_end_us, last_downtime_us;
    struct stats_histogram latency; /* destinations' faults */
};

static void count(struct metrics *t, struct migration *m)
{
    enum migration_status st = migration_status(m);
    uint64_t bytes = atomic_load(&m->stats.bytes_sent);
    uint64_t end = atomic_load(&m->stats.end_us);

    t->started++;
    t->completed += st == MIG_COMPLETED;
    t->failed += st == MIG_FAILED;
    t->cancelled += st == MIG_CANCELLED;
    t->active += !migration_status_is_final(st);
    if (m->role == ROLE_SOURCE) {
        t->bytes_sent += bytes;
    } else {
        t->bytes_received += bytes;
        t->pages_faulted += atomic_load(&m->stats.faults);
        stats_histogram_merge(&t->latency, blocktime_histogram(m->blocktime));
    }
    if (st == MIG_COMPLETED && end >= t->last_end_us) {
        t->last_end_us = end;
        t->last_downtime_us = atomic_load(&m->stats.downtime_us);
    }
}

static void add(JsonBuilder *b, const char *name, uint64_t v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, (gint64)v);
}

JsonNode *daemon_query_metrics(struct daemon *d)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autofree struct metrics *t = g_new0(struct metrics, 1);

    stats_histogram_init(&t->latency);
    g_mutex_lock(&d->lock);
    for (guint i = 0; i < d->migrations->len; i++) {
        count(t, d->migrations->pdata[i]);
    }
    g_mutex_unlock(&d->lock);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "migrations");
    json_builder_begin_object(b);
    add(b, "started", t->started);
    add(b, "active", t->active);
    add(b, "completed", t->completed);
    add(b, "failed", t->failed);
    add(b, "cancelled", t->cancelled);
    json_builder_end_object(b);
    add(b, "bytes-sent", t->bytes_sent);
    add(b, "bytes-received", t->bytes_received);
    add(b, "pages-faulted", t->pages_faulted);
    json_builder_set_member_name(b, "last-downtime");
    json_builder_add_double_value(b, t->last_downtime_us / 1000.0);
    json_builder_set_member_name(b, "fault-latency");
    stats_histogram_to_json(&t->latency, b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
