/*
 * cmd_metrics.c - `postcopy-migrate metrics`: the daemon's counters
 * (query-metrics) in the Prometheus text exposition format, for a
 * node_exporter textfile collector or a scrape wrapper; --json prints
 * query-metrics as it came.
 */
#include <stdio.h>

#include "cli.h"
#include "jsonq.h"

static void metric(const char *name, const char *type, const char *help)
{
    printf("# HELP postcopyd_%s %s\n# TYPE postcopyd_%s %s\n", name, help, name,
           type);
}

static gint64 int_of(JsonNode *m, const char *path)
{
    gint64 v = 0;

    jsonq_int(m, path, &v);
    return v;
}

/*
 * The fault latency as a Prometheus histogram.  Its buckets are the
 * powers of two from 16 us to 2^24 us, the same set every scrape: the
 * daemon's finer log-linear buckets (non-cumulative, "le_us" their
 * largest value, the open-ended last one reporting the maximum) each
 * fall below one of them (a sample of exactly 2^k us is counted from the
 * next bound on).
 */
static void print_latency(JsonNode *m)
{
    JsonArray *a = jsonq_array(m, "fault-latency.buckets");
    guint n = a ? json_array_get_length(a) : 0;
    gint64 sum_us = int_of(m, "fault-latency.sum_us");
    gint64 total = int_of(m, "fault-latency.count");

    metric("fault_latency_seconds", "histogram",
           "How long destination guest faults waited for their page.");
    for (int bit = 4; bit <= 24; bit++) {
        gint64 below = 0;

        for (guint i = 0; i < n; i++) {
            JsonNode *e = json_array_get_element(a, i);
            gint64 le = 0, c = 0;

            if (jsonq_int(e, "le_us", &le) && jsonq_int(e, "count", &c) &&
                le < (1ll << bit)) {
                below += c;
            }
        }
        printf("postcopyd_fault_latency_seconds_bucket{le=\"%g\"} "
               "%" G_GINT64_FORMAT "\n",
               (double)(1ll << bit) / 1e6, below);
    }
    printf("postcopyd_fault_latency_seconds_bucket{le=\"+Inf\"} "
           "%" G_GINT64_FORMAT "\n",
           total);
    printf("postcopyd_fault_latency_seconds_sum %.6f\n", sum_us / 1e6);
    printf("postcopyd_fault_latency_seconds_count %" G_GINT64_FORMAT "\n",
           total);
}

static void print_prometheus(JsonNode *m)
{
    static const char *const outcomes[] = {"completed", "failed", "cancelled"};
    double downtime = 0;

    metric("migrations_started_total", "counter",
           "Migrations started, either role.");
    printf("postcopyd_migrations_started_total %" G_GINT64_FORMAT "\n",
           int_of(m, "migrations.started"));
    metric("migrations_active", "gauge",
           "Migrations not ended (postcopy-paused included).");
    printf("postcopyd_migrations_active %" G_GINT64_FORMAT "\n",
           int_of(m, "migrations.active"));
    metric("migrations_total", "counter", "Migrations ended, by outcome.");
    for (size_t i = 0; i < G_N_ELEMENTS(outcomes); i++) {
        g_autofree char *path = g_strconcat("migrations.", outcomes[i], NULL);

        printf("postcopyd_migrations_total{outcome=\"%s\"} %" G_GINT64_FORMAT
               "\n",
               outcomes[i], int_of(m, path));
    }
    metric("bytes_sent_total", "counter", "Guest page bytes sent (source).");
    printf("postcopyd_bytes_sent_total %" G_GINT64_FORMAT "\n",
           int_of(m, "bytes-sent"));
    metric("bytes_received_total", "counter",
           "Guest page bytes received (destination).");
    printf("postcopyd_bytes_received_total %" G_GINT64_FORMAT "\n",
           int_of(m, "bytes-received"));
    metric("pages_faulted_total", "counter",
           "Guest page faults served at the destination.");
    printf("postcopyd_pages_faulted_total %" G_GINT64_FORMAT "\n",
           int_of(m, "pages-faulted"));
    jsonq_double(m, "last-downtime", &downtime);
    metric("last_downtime_seconds", "gauge",
           "Downtime of the migration that completed last.");
    printf("postcopyd_last_downtime_seconds %.6f\n", downtime / 1000.0);
    print_latency(m);
}

int cmd_metrics(struct cli *cli, const struct cli_command *cmd, int argc,
                char **argv)
{
    return cli_query_print(cli, cmd, argc, argv, "query-metrics",
                           print_prometheus);
}
