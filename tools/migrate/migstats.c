/* migstats.c - see migstats.h. */
#include "migstats.h"

#include <string.h>

#include "jsonq.h"

const char *migstats_status(JsonNode *stats)
{
    const char *s = jsonq_string(stats, "status");

    return s && *s ? s : "unknown";
}

bool migstats_is_final(const char *status)
{
    /*
     * Not postcopy-paused: the daemons reconnect by themselves, and the
     * migration goes on to completed (or failed) from there.
     */
    static const char *const final[] = {"completed", "failed", "cancelled",
                                        "none", NULL};

    return g_strv_contains(final, status);
}

bool migstats_percent(JsonNode *stats, int *pct)
{
    gint64 total, left, done;

    if (!strcmp(migstats_status(stats), "completed")) {
        *pct = 100;
        return true;
    }
    if (!jsonq_int(stats, "ram.total", &total) || total <= 0) {
        return false;
    }
    if (jsonq_int(stats, "ram.remaining", &left)) {
        done = total - left;
    } else if (!jsonq_int(stats, "ram.transferred", &done)) {
        return false;
    }
    *pct = (int)CLAMP(done * 100.0 / total, 0, 100);
    return true;
}

bool migstats_bytes_per_s(JsonNode *stats, double *bps)
{
    double mbps;

    if (!jsonq_double(stats, "ram.mbps", &mbps) || mbps < 0) {
        return false;
    }
    *bps = mbps * 1e6 / 8;
    return true;
}

bool migstats_eta_s(JsonNode *stats, double *eta)
{
    gint64 left;
    double bps;

    if (!jsonq_int(stats, "ram.remaining", &left) || left < 0 ||
        !migstats_bytes_per_s(stats, &bps) || bps <= 0) {
        return false;
    }
    *eta = left / bps;
    return true;
}

char *migstats_format_rate(double bytes_per_s)
{
    double mib = bytes_per_s / (1 << 20);

    return g_strdup_printf(mib < 10 ? "%.1f MiB/s" : "%.0f MiB/s", mib);
}

char *migstats_format_bytes(double bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;

    while (bytes >= 1024 && u + 1 < G_N_ELEMENTS(units)) {
        bytes /= 1024;
        u++;
    }
    return u ? g_strdup_printf("%.2f %s", bytes, units[u])
             : g_strdup_printf("%.0f B", bytes);
}

char *migstats_format_us(double us)
{
    double s = us / 1e6;

    if (us < 1000) {
        return g_strdup_printf("%.0f us", us);
    }
    if (us < 1e6) {
        return g_strdup_printf(us < 1e4 ? "%.1f ms" : "%.0f ms", us / 1000);
    }
    if (s < 120) {
        return g_strdup_printf(s < 10 ? "%.2f s" : "%.1f s", s);
    }
    /* A reply may say anything: no integer conversion out of range (UB). */
    if (!(s < 1e12)) {
        return g_strdup_printf("%.3g s", s);
    }
    return g_strdup_printf("%" G_GINT64_FORMAT "m%02ds", (gint64)(s / 60),
                           (int)((gint64)s % 60));
}
