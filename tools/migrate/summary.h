/*
 * summary.h - the human-readable report of a query-migrate result: a
 * two-column table (status, times, RAM moved, throughput, postcopy
 * requests, fault latency, blocktime per vCPU).
 *
 * Contract: rows whose data the daemon did not send (or sent with the
 * wrong type) are left out; nothing in @stats can make it crash.
 */
#ifndef POSTCOPY_MIGRATE_SUMMARY_H
#define POSTCOPY_MIGRATE_SUMMARY_H

#include <stdio.h>
#include <json-glib/json-glib.h>

void summary_print(FILE *out, JsonNode *stats);

#endif /* POSTCOPY_MIGRATE_SUMMARY_H */
