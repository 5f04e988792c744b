/* progress.c - see progress.h. */
#include "progress.h"

#include <string.h>
#include <unistd.h>

#include "jsonq.h"
#include "migstats.h"

static char *format_eta(JsonNode *stats)
{
    double s;

    if (!migstats_eta_s(stats, &s)) {
        return g_strdup("-");
    }
    if (s < 10) {
        return g_strdup_printf("%.1fs", s);
    }
    if (s < 120) {
        return g_strdup_printf("%.0fs", s);
    }
    return g_strdup_printf("%dm%02ds", (int)(s / 60), (int)s % 60);
}

char *progress_line(JsonNode *stats)
{
    g_autofree char *pct = NULL;
    g_autofree char *rate = NULL;
    g_autofree char *eta = format_eta(stats);
    gint64 faults = 0;
    double bps;
    int p;

    pct = migstats_percent(stats, &p) ? g_strdup_printf("%d%%", p)
                                      : g_strdup("--%");
    rate = migstats_bytes_per_s(stats, &bps) ? migstats_format_rate(bps)
                                             : g_strdup("-- MiB/s");
    jsonq_int(stats, "ram.postcopy-requests", &faults);
    return g_strdup_printf("%-15s %4s  %s  faults %" G_GINT64_FORMAT "  ETA %s",
                           migstats_status(stats), pct, rate, faults, eta);
}

void progress_init(struct progress *p, FILE *out)
{
    memset(p, 0, sizeof(*p));
    p->out = out;
    p->tty = out && isatty(fileno(out));
}

static bool plain_due(struct progress *p, const char *status, gint64 now)
{
    return !p->last_status || strcmp(status, p->last_status) ||
           now - p->last_print_us >= PROGRESS_PLAIN_INTERVAL_US;
}

void progress_update(struct progress *p, JsonNode *stats)
{
    const char *status = migstats_status(stats);
    gint64 now = g_get_monotonic_time();
    g_autofree char *line = NULL;

    if (!p->out || (!p->tty && !plain_due(p, status, now))) {
        return;
    }
    line = progress_line(stats);
    if (p->tty) {
        fprintf(p->out, "\r%s\033[K", line);
        p->line_open = true;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    g_free(p->last_status);
    p->last_status = g_strdup(status);
    p->last_print_us = now;
}

void progress_end(struct progress *p)
{
    if (p->line_open) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    g_clear_pointer(&p->last_status, g_free);
    p->line_open = false;
}
