/* summary.c - see summary.h. */
#include "summary.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "jsonq.h"
#include "migstats.h"

#define LABEL_WIDTH 19

static void row(FILE *out, const char *label, const char *value)
{
    fprintf(out, "%-*s%s\n", LABEL_WIDTH, label, value);
}

static void row_ms(FILE *out, JsonNode *stats, const char *label,
                   const char *path)
{
    g_autofree char *v = NULL;
    double ms;

    if (jsonq_double(stats, path, &ms) && ms >= 0) {
        v = migstats_format_us(ms * 1000);
        row(out, label, v);
    }
}

static void row_int(FILE *out, JsonNode *stats, const char *label,
                    const char *path)
{
    g_autofree char *v = NULL;
    gint64 n;

    if (jsonq_int(stats, path, &n)) {
        v = g_strdup_printf("%" G_GINT64_FORMAT, n);
        row(out, label, v);
    }
}

static void ram_rows(FILE *out, JsonNode *stats)
{
    g_autoptr(GString) s = g_string_new(NULL);
    gint64 moved, total, pages, zero;
    double bps;

    if (jsonq_int(stats, "ram.transferred", &moved)) {
        g_autofree char *m = migstats_format_bytes(moved);

        g_string_append(s, m);
        if (jsonq_int(stats, "ram.total", &total)) {
            g_autofree char *t = migstats_format_bytes(total);

            g_string_append_printf(s, " of %s", t);
        }
        if (jsonq_int(stats, "ram.pages", &pages) &&
            jsonq_int(stats, "ram.zero-pages", &zero)) {
            g_string_append_printf(
                s, " (%" G_GINT64_FORMAT " pages, %" G_GINT64_FORMAT " zero)",
                pages, zero);
        }
        row(out, "RAM moved", s->str);
    }
    if (migstats_bytes_per_s(stats, &bps)) {
        g_autofree char *r = migstats_format_rate(bps);

        row(out, "throughput", r);
    }
    row_int(out, stats, "page size", "ram.page-size");
    row_int(out, stats, "postcopy requests", "ram.postcopy-requests");
}

/* query-migrate's downtime-breakdown: where the downtime went. */
static void downtime_rows(FILE *out, JsonNode *stats)
{
    static const char *const parts[] = {
        "pause",       "collect",   "send",      "switchover",
        "dst-barrier", "dst-stale", "dst-resume"};
    g_autoptr(GString) s = g_string_new(NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(parts); i++) {
        g_autofree char *path =
            g_strconcat("downtime-breakdown.", parts[i], NULL);
        g_autofree char *v = NULL;
        double ms;

        if (jsonq_double(stats, path, &ms) && ms >= 0.05) {
            v = migstats_format_us(ms * 1000);
            g_string_append_printf(s, "%s%s %s", s->len ? ", " : "", parts[i],
                                   v);
        }
    }
    if (s->len) {
        row(out, "downtime phases", s->str);
    }
}

/* Hybrid: the last dirty set went after the resume, not in the downtime. */
static void final_dirty_row(FILE *out, JsonNode *stats)
{
    g_autofree char *v = NULL;
    g_autofree char *line = NULL;
    double ms;

    if (!jsonq_double(stats, "final-dirty-after-resume", &ms)) {
        return;
    }
    v = migstats_format_us(ms * 1000);
    line = g_strdup_printf("%s after the resume", v);
    row(out, "last dirty set", line);
}

/*
 * The daemon's buckets are finer (8 per power of two, see
 * stats_histogram.h) than a summary line wants: shown merged per power
 * of two, "<=N: count" with N the largest value of the last bucket merged.
 */
static void histogram_by_octave(GString *s, JsonArray *hist)
{
    gint64 acc = 0;
    double le = 0;
    int octave = -1;

    for (guint i = 0; hist && i <= json_array_get_length(hist); i++) {
        JsonNode *b = i < json_array_get_length(hist)
                          ? json_array_get_element(hist, i)
                          : NULL;
        gint64 count = 0;
        double us = 0;
        int o;

        if (b && (!jsonq_double(b, "le-us", &us) ||
                  !jsonq_int(b, "count", &count))) {
            continue;
        }
        /* An open last bucket (le-us < 0) closes the line on its own. */
        o = !b       ? INT_MAX
            : us < 0 ? INT_MAX - 1
                     : (us < 1 ? 0 : 64 - __builtin_clzll((uint64_t)us));
        if (o != octave && acc) {
            g_autofree char *v =
                le < 0 ? g_strdup("more") : migstats_format_us(le);

            g_string_append_printf(s, "%s%s%s: %" G_GINT64_FORMAT,
                                   s->len ? ", " : "", le < 0 ? "" : "<=", v,
                                   acc);
            acc = 0;
        }
        octave = o;
        acc += count;
        le = us;
    }
}

static void latency_rows(FILE *out, JsonNode *stats)
{
    static const char *const keys[] = {"p50-us", "p99-us", "max-us"};
    static const char *const names[] = {"p50", "p99", "max"};
    g_autoptr(GString) s = g_string_new(NULL);
    JsonArray *hist = jsonq_array(stats, "fault-latency.histogram");

    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
        g_autofree char *path = g_strconcat("fault-latency.", keys[i], NULL);
        g_autofree char *v = NULL;
        double us;

        if (jsonq_double(stats, path, &us)) {
            v = migstats_format_us(us);
            g_string_append_printf(s, "%s%s %s", s->len ? ", " : "", names[i],
                                   v);
        }
    }
    if (s->len) {
        row(out, "fault latency", s->str);
    }
    g_string_truncate(s, 0);
    histogram_by_octave(s, hist);
    if (s->len) {
        row(out, "latency histogram", s->str);
    }
}

static void blocktime_rows(FILE *out, JsonNode *stats)
{
    JsonArray *vcpus = jsonq_array(stats, "vcpu-blocktime");
    const char *label = "vCPU blocktime";

    for (guint i = 0; vcpus && i < json_array_get_length(vcpus); i++) {
        JsonNode *v = json_array_get_element(vcpus, i);
        g_autoptr(GString) s = g_string_new(NULL);
        g_autofree char *t = NULL;
        gint64 tid, faults;
        double ms;

        if (!jsonq_int(v, "tid", &tid) || !jsonq_double(v, "blocked-ms", &ms)) {
            continue;
        }
        t = migstats_format_us(ms * 1000);
        g_string_printf(s, "tid %" G_GINT64_FORMAT ": %s", tid, t);
        if (jsonq_int(v, "faults", &faults)) {
            g_string_append_printf(s, " (%" G_GINT64_FORMAT " faults)", faults);
        }
        row(out, label, s->str);
        label = "";
    }
}

static void bytes_row(FILE *out, JsonNode *stats, const char *label,
                      const char *path)
{
    gint64 n;
    char v[64];

    if (jsonq_int(stats, path, &n) && n > 0) {
        snprintf(v, sizeof(v), "%.2f MiB", n / 1048576.0);
        row(out, label, v);
    }
}

/* Precopy: the tracker, one line per round, and where the bytes went. */
static void precopy_rows(FILE *out, JsonNode *stats)
{
    JsonArray *rounds = jsonq_array(stats, "round-stats");
    const char *method = jsonq_string(stats, "dirty-tracking");
    const char *mode = jsonq_string(stats, "mode");
    const char *label = "rounds";

    if (mode) {
        row(out, "mode", mode);
    }
    if (method) {
        row(out, "dirty tracking", method);
    }
    for (guint i = 0; rounds && i < json_array_get_length(rounds); i++) {
        JsonNode *r = json_array_get_element(rounds, i);
        gint64 n = 0, pages = 0, dirty = 0;
        double ms = 0, scan = 0, rate = 0, send = 0;
        char v[160];

        jsonq_int(r, "round", &n);
        jsonq_int(r, "pages", &pages);
        jsonq_int(r, "dirty-pages", &dirty);
        jsonq_double(r, "duration-ms", &ms);
        jsonq_double(r, "scan-ms", &scan);
        jsonq_double(r, "dirty-rate-mibps", &rate);
        jsonq_double(r, "send-rate-mibps", &send);
        snprintf(v, sizeof(v),
                 "#%" G_GINT64_FORMAT ": %" G_GINT64_FORMAT
                 " pages in %.0f ms (%.0f MiB/s), %" G_GINT64_FORMAT
                 " dirtied (%.0f MiB/s), scan %.2f ms",
                 n, pages, ms, send, dirty, rate, scan);
        row(out, label, v);
        label = "";
    }
    bytes_row(out, stats, "sent in precopy", "bytes-precopy");
    bytes_row(out, stats, "sent in downtime", "bytes-downtime");
    bytes_row(out, stats, "sent in postcopy", "bytes-postcopy");
    row_int(out, stats, "stale pages", "stale-pages");
    final_dirty_row(out, stats);
    row_int(out, stats, "local installs", "pages-installed-local");
}

void summary_print(FILE *out, JsonNode *stats)
{
    const char *status = migstats_status(stats);
    const char *why = jsonq_string(stats, "error-desc");
    const char *vm = jsonq_string(stats, "vm");
    const char *id = jsonq_string(stats, "id");

    /* Which migration this is: a daemon runs several, of several VMs. */
    if (vm) {
        g_autofree char *what = g_strdup_printf(
            "%s (%s, %s)", vm, jsonq_string(stats, "role") ?: "?",
            jsonq_string(stats, "mode") ?: "?");

        row(out, "vm", what);
    }
    if (id) {
        row(out, "migration", id);
    }
    row(out, "status", status);
    if (jsonq_bool(stats, "insecure")) {
        row(out, "WARNING",
            "INSECURE: the daemon's peers are not "
            "authenticated (--insecure)");
    }
    if (why) {
        row(out, "error", why);
    }
    row_ms(out, stats, "total time", "total-time");
    row_ms(out, stats, "setup time", "setup-time");
    row_ms(out, stats, "downtime", "downtime");
    downtime_rows(out, stats);
    if (!migstats_is_final(status)) {
        row_ms(out, stats, "expected downtime", "expected-downtime");
    }
    precopy_rows(out, stats);
    ram_rows(out, stats);
    latency_rows(out, stats);
    blocktime_rows(out, stats);
    fflush(out);
}
