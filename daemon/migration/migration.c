/* migration.c - see migration.h. */
#include "migration.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stats_histogram.h"
#include "vm_entry.h"

static const char *const status_names[] = {
    [MIG_NONE] = "none",
    [MIG_SETUP] = "setup",
    [MIG_ACTIVE] = "active",
    [MIG_DEVICE] = "device",
    [MIG_POSTCOPY_ACTIVE] = "postcopy-active",
    [MIG_POSTCOPY_PAUSED] = "postcopy-paused",
    [MIG_COMPLETED] = "completed",
    [MIG_FAILED] = "failed",
    [MIG_CANCELLING] = "cancelling",
    [MIG_CANCELLED] = "cancelled",
};

static const char *const mode_names[] = {
    [MODE_POSTCOPY] = "postcopy",
    [MODE_PRECOPY] = "precopy",
    [MODE_HYBRID] = "hybrid",
};

const char *migration_status_name(enum migration_status s)
{
    return s < G_N_ELEMENTS(status_names) ? status_names[s] : "?";
}

const char *migration_mode_name(enum migration_mode m)
{
    return m < G_N_ELEMENTS(mode_names) ? mode_names[m] : "?";
}

bool migration_mode_parse(const char *s, enum migration_mode *m)
{
    for (size_t i = 0; i < G_N_ELEMENTS(mode_names); i++) {
        if (!strcmp(s, mode_names[i])) {
            *m = i;
            return true;
        }
    }
    return false;
}

bool migration_status_is_final(enum migration_status s)
{
    return s == MIG_COMPLETED || s == MIG_FAILED || s == MIG_CANCELLED;
}

void migration_params_init(struct migration_params *p)
{
    memset(p, 0, sizeof(*p));
    p->mode = MODE_HYBRID;
    p->downtime_limit_ms = MIGRATION_DEFAULT_DOWNTIME_MS;
    p->max_rounds = MIGRATION_DEFAULT_MAX_ROUNDS;
    p->max_precopy_ms = MIGRATION_DEFAULT_MAX_PRECOPY_MS;
    p->streams = 1;
    p->postcopy_bulk = true;
}

void migration_add_round(struct migration *m, const struct round_stats *r)
{
    g_mutex_lock(&m->lock);
    if (m->nrounds < MIGRATION_MAX_ROUNDS_KEPT) {
        m->rounds[m->nrounds] = *r;
    }
    m->nrounds++;
    g_mutex_unlock(&m->lock);
}

uint64_t migration_now_us(void)
{
    return g_get_monotonic_time();
}

struct migration *migration_new(struct daemon *d, enum migration_role role,
                                struct vm_entry *vm,
                                const struct engine_params *ep)
{
    struct migration *m = g_new0(struct migration, 1);

    m->daemon = d;
    m->engine = *ep;
    m->engine.state_dir = g_strdup(ep->state_dir);
    m->role = role;
    m->vm = vm;
    g_strlcpy(m->vm_name, vm->info.vm_name, sizeof(m->vm_name));
    g_mutex_init(&m->lock);
    g_cond_init(&m->cond);
    m->blocktime = blocktime_new();
    migration_params_init(&m->params);
    live_params_init(&m->live, m->params.max_bandwidth,
                     m->params.downtime_limit_ms);
    m->mode = m->params.mode;
    atomic_store(&m->status, MIG_NONE);
    atomic_store(&m->stats.start_us, migration_now_us());
    atomic_store(&m->stats.total_bytes, region_table_bytes(&vm->info.regions));
    return m;
}

void migration_set_id(struct migration *m, const uint8_t id[16])
{
    memcpy(m->id_bytes, id, 16);
    for (int i = 0; i < 16; i++) {
        snprintf(m->id + 2 * i, 3, "%02x", id[i]);
    }
}

void migration_free(struct migration *m)
{
    blocktime_free(m->blocktime);
    g_free(m->error);
    g_free(m->peer_uri);
    g_free(m->engine.state_dir);
    g_mutex_clear(&m->lock);
    g_cond_clear(&m->cond);
    live_params_clear(&m->live);
    g_free(m);
}

enum migration_status migration_status(const struct migration *m)
{
    return atomic_load(&((struct migration *)m)->status);
}

/* The engine does not know the control socket: the daemon tells it. */
static migration_status_fn status_hook;

void migration_set_status_hook(migration_status_fn fn)
{
    __atomic_store_n(&status_hook, fn, __ATOMIC_RELEASE);
}

bool migration_set_status(struct migration *m, enum migration_status old,
                          enum migration_status new_status)
{
    int expected = old;
    migration_status_fn status_fn;

    if (!atomic_compare_exchange_strong(&m->status, &expected, new_status)) {
        return false;
    }
    g_message("migration %s (%s, %s): %s -> %s", m->id, m->vm_name,
              m->role == ROLE_SOURCE ? "source" : "destination",
              migration_status_name(old), migration_status_name(new_status));
    if (migration_status_is_final(new_status)) {
        atomic_store(&m->stats.end_us, migration_now_us());
    }
    status_fn = __atomic_load_n(&status_hook, __ATOMIC_ACQUIRE);
    if (status_fn) {
        status_fn(m->daemon, m);
    }
    g_mutex_lock(&m->lock);
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
    return true;
}

void migration_fail(struct migration *m, enum migration_status final_status,
                    const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    enum migration_status s;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* Channels closing after the end are not the migration's error. */
    if (migration_status_is_final(migration_status(m))) {
        return;
    }
    g_mutex_lock(&m->lock);
    if (!m->error) {
        m->error = g_strdup(msg);
        g_warning("migration %s (%s): %s", m->id, m->vm_name, msg);
    }
    g_mutex_unlock(&m->lock);
    /* Move from whatever non-final status we are in. */
    do {
        s = migration_status(m);
        if (migration_status_is_final(s) || s == final_status) {
            return;
        }
    } while (!migration_set_status(m, s, final_status));
}

void migration_drop_error(struct migration *m)
{
    g_mutex_lock(&m->lock);
    g_clear_pointer(&m->error, g_free);
    g_mutex_unlock(&m->lock);
}

void migration_clear_error(struct migration *m)
{
    g_mutex_lock(&m->lock);
    if (m->error) {
        g_message("migration %s (%s): recovered from: %s", m->id, m->vm_name,
                  m->error);
    }
    g_clear_pointer(&m->error, g_free);
    g_mutex_unlock(&m->lock);
}

static void add_uint(JsonBuilder *b, const char *name, uint64_t v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, (gint64)v);
}

/* "downtime-breakdown": milliseconds per phase (migration.h), if known. */
static void query_downtime(struct migration *m, JsonBuilder *b)
{
    static const char *const names[DT_PARTS] = {
        [DT_PAUSE] = "pause",
        [DT_COLLECT] = "collect",
        [DT_SEND] = "send",
        [DT_SWITCHOVER] = "switchover",
        [DT_DST_BARRIER] = "dst-barrier",
        [DT_DST_STALE] = "dst-stale",
        [DT_DST_RESUME] = "dst-resume",
    };

    if (!atomic_load(&m->stats.downtime_us) &&
        !atomic_load(&m->stats.downtime_part_us[DT_DST_RESUME])) {
        return;
    }
    json_builder_set_member_name(b, "downtime-breakdown");
    json_builder_begin_object(b);
    for (int i = 0; i < DT_PARTS; i++) {
        json_builder_set_member_name(b, names[i]);
        json_builder_add_double_value(
            b, atomic_load(&m->stats.downtime_part_us[i]) / 1000.0);
    }
    json_builder_end_object(b);
}

static void query_ram(struct migration *m, JsonBuilder *b, uint64_t now)
{
    struct migration_stats *st = &m->stats;
    uint64_t total = atomic_load(&st->total_bytes);
    uint64_t sent = atomic_load(&st->bytes_sent);
    uint64_t start = atomic_load(&st->start_us);
    uint64_t end = atomic_load(&st->end_us);
    uint64_t elapsed = (end ? end : now) - start;
    uint64_t pages_total = atomic_load(&st->pages_total);
    uint64_t done_pages =
        m->role == ROLE_SOURCE
            ? atomic_load(&st->pages_sent) + atomic_load(&st->zero_pages)
            : atomic_load(&st->pages_installed);
    uint64_t remaining_pages =
        pages_total > done_pages ? pages_total - done_pages : 0;

    json_builder_set_member_name(b, "ram");
    json_builder_begin_object(b);
    add_uint(b, "total", total);
    add_uint(b, "transferred", sent);
    add_uint(b, "remaining",
             pages_total ? remaining_pages * (total / pages_total) : total);
    add_uint(b, "pages", atomic_load(&st->pages_sent));
    add_uint(b, "zero-pages", atomic_load(&st->zero_pages));
    add_uint(b, "page-size", pages_total ? total / pages_total : 0);
    add_uint(b, "pages-installed", atomic_load(&st->pages_installed));
    add_uint(b, "pages-dropped", atomic_load(&st->pages_dropped));
    add_uint(b, "postcopy-requests", atomic_load(&st->postcopy_requests));
    add_uint(b, "pages-read", atomic_load(&st->pages_read));
    add_uint(b, "fault-reads", atomic_load(&st->fault_reads));
    add_uint(b, "faults",
             m->remote.valid ? m->remote.faults : atomic_load(&st->faults));
    json_builder_set_member_name(b, "mbps");
    json_builder_add_double_value(b, elapsed ? (double)sent * 8 / elapsed
                                             : 0.0); /* bits/us = Mbit/s */
    json_builder_end_object(b);
}

/* Called with m->lock held when the remote view is used. */
static void add_double(JsonBuilder *b, const char *name, double v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_double_value(b, v);
}

/* Called with m->lock held. */
static void query_rounds(struct migration *m, JsonBuilder *b)
{
    struct migration_stats *st = &m->stats;

    add_uint(b, "rounds", m->nrounds);
    add_double(b, "expected-downtime",
               atomic_load(&st->expected_downtime_us) / 1000.0);
    add_uint(b, "bytes-precopy", atomic_load(&st->bytes_precopy));
    add_uint(b, "bytes-downtime", atomic_load(&st->bytes_downtime));
    add_uint(b, "bytes-postcopy", atomic_load(&st->bytes_postcopy));
    add_uint(b, "stale-pages", atomic_load(&st->stale_pages));
    if (atomic_load(&st->final_dirty_us)) {
        add_double(b, "final-dirty-after-resume",
                   atomic_load(&st->final_dirty_us) / 1000.0);
    }
    add_uint(b, "pages-installed-local", atomic_load(&st->installed_local));
    add_uint(b, "pages-prefetched", atomic_load(&st->pages_prefetched));
    if (m->dirty_method_name) {
        json_builder_set_member_name(b, "dirty-tracking");
        json_builder_add_string_value(b, m->dirty_method_name);
    }
    json_builder_set_member_name(b, "round-stats");
    json_builder_begin_array(b);
    for (uint32_t i = 0; i < MIN(m->nrounds, MIGRATION_MAX_ROUNDS_KEPT); i++) {
        const struct round_stats *r = &m->rounds[i];

        json_builder_begin_object(b);
        add_uint(b, "round", r->round);
        add_uint(b, "pages", r->pages);
        add_uint(b, "bytes", r->bytes);
        add_uint(b, "dirty-pages", r->dirty_pages);
        add_double(b, "duration-ms", r->duration_us / 1000.0);
        add_double(b, "scan-ms", r->scan_us / 1000.0);
        add_double(b, "dirty-rate-mibps", r->dirty_mbps);
        add_double(b, "send-rate-mibps", r->send_mbps);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static void query_latency(struct migration *m, JsonBuilder *b)
{
    const struct stats_histogram *h =
        m->remote.valid ? &m->remote.hist : blocktime_histogram(m->blocktime);

    json_builder_set_member_name(b, "fault-latency");
    json_builder_begin_object(b);
    add_uint(b, "count", stats_histogram_count(h));
    add_uint(b, "p50-us", stats_histogram_percentile(h, 50));
    add_uint(b, "p99-us", stats_histogram_percentile(h, 99));
    add_uint(b, "max-us", stats_histogram_max(h));
    json_builder_set_member_name(b, "histogram");
    json_builder_begin_array(b);
    for (unsigned i = 0; i < STATS_HISTOGRAM_BUCKETS; i++) {
        uint64_t n = stats_histogram_bucket_count(h, i);

        if (!n) {
            continue;
        }
        json_builder_begin_object(b);
        add_uint(b, "le-us", stats_histogram_bucket_le(i));
        add_uint(b, "count", n);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}

static void query_blocktime(struct migration *m, JsonBuilder *b)
{
    struct blocktime_thread_stats local[MIGRATION_MAX_VCPUS];
    const struct blocktime_thread_stats *threads = m->remote.vcpus;
    size_t n = m->remote.nvcpus;

    if (!m->remote.valid) {
        n = blocktime_threads(m->blocktime, local, G_N_ELEMENTS(local));
        threads = local;
    }

    json_builder_set_member_name(b, "vcpu-blocktime");
    json_builder_begin_array(b);
    for (size_t i = 0; i < n; i++) {
        json_builder_begin_object(b);
        add_uint(b, "tid", threads[i].tid);
        json_builder_set_member_name(b, "blocked-ms");
        json_builder_add_double_value(b, threads[i].blocked_ns / 1e6);
        add_uint(b, "faults", threads[i].faults);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

JsonNode *migration_query(struct migration *m)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    struct migration_stats *st = &m->stats;
    uint64_t now = migration_now_us();
    uint64_t start = atomic_load(&st->start_us);
    uint64_t end = atomic_load(&st->end_us);
    uint64_t setup = atomic_load(&st->setup_done_us);

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b,
                                  migration_status_name(migration_status(m)));
    json_builder_set_member_name(b, "vm");
    json_builder_add_string_value(b, m->vm_name);
    json_builder_set_member_name(b, "role");
    json_builder_add_string_value(b, m->role == ROLE_SOURCE ? "source"
                                                            : "destination");
    json_builder_set_member_name(b, "mode");
    json_builder_add_string_value(b, migration_mode_name(m->mode));
    json_builder_set_member_name(b, "id");
    json_builder_add_string_value(b, m->id);
    add_uint(b, "total-time", ((end ? end : now) - start) / 1000);
    add_uint(b, "setup-time", setup ? (setup - start) / 1000 : 0);
    json_builder_set_member_name(b, "downtime");
    json_builder_add_double_value(b, atomic_load(&st->downtime_us) / 1000.0);
    query_downtime(m, b);
    g_mutex_lock(&m->lock);
    query_ram(m, b, now);
    query_latency(m, b);
    query_blocktime(m, b);
    query_rounds(m, b);
    g_mutex_unlock(&m->lock);
    if (atomic_load(&st->verify_done)) {
        json_builder_set_member_name(b, "verify");
        json_builder_begin_object(b);
        add_uint(b, "pages-checked", atomic_load(&st->verify_checked));
        add_uint(b, "mismatches", atomic_load(&st->verify_mismatches));
        json_builder_end_object(b);
    }
    g_mutex_lock(&m->lock);
    if (m->error) {
        json_builder_set_member_name(b, "error-desc");
        json_builder_add_string_value(b, m->error);
    }
    g_mutex_unlock(&m->lock);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
