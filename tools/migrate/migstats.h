/*
 * migstats.h - what the CLI derives from a query-migrate result (the
 * "return" object; shape in daemon/control.h's users, QEMU-like):
 * status, percent done, throughput, ETA, and how to print sizes and
 * times.
 *
 * Contract: every function accepts a result with any member missing or
 * mistyped and then reports "unknown" (false) rather than guessing.
 * ram.mbps is megabits (10^6 bits) per second, as in QEMU.
 */
#ifndef POSTCOPY_MIGRATE_MIGSTATS_H
#define POSTCOPY_MIGRATE_MIGSTATS_H

#include <stdbool.h>
#include <json-glib/json-glib.h>

/* "unknown" when the daemon did not say. */
const char *migstats_status(JsonNode *stats);

/* completed, failed, cancelled, or none (nothing to follow). */
bool migstats_is_final(const char *status);

bool migstats_percent(JsonNode *stats, int *pct);
bool migstats_bytes_per_s(JsonNode *stats, double *bps);
bool migstats_eta_s(JsonNode *stats, double *eta);

/* "812 MiB/s"; "1.50 GiB"; "850 us", "12 ms", "1.23 s", "2m03s". */
char *migstats_format_rate(double bytes_per_s);
char *migstats_format_bytes(double bytes);
char *migstats_format_us(double us);

#endif /* POSTCOPY_MIGRATE_MIGSTATS_H */
