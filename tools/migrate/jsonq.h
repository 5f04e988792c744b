/*
 * jsonq.h - tolerant lookups in JSON replies from the daemon.
 *
 * Contract: a path is member names joined by '.', e.g. "ram.total".
 * A missing member, a non-object on the way or a value of the wrong type
 * is "absent" (false / NULL), never a crash or a GLib critical: the CLI
 * must render whatever a daemon of another version sends.  Numbers may
 * be integers or doubles in the JSON; each getter converts.
 */
#ifndef POSTCOPY_MIGRATE_JSONQ_H
#define POSTCOPY_MIGRATE_JSONQ_H

#include <stdbool.h>
#include <json-glib/json-glib.h>

JsonNode *jsonq_get(JsonNode *root, const char *path);
bool jsonq_int(JsonNode *root, const char *path, gint64 *out);
bool jsonq_double(JsonNode *root, const char *path, double *out);
const char *jsonq_string(JsonNode *root, const char *path);
JsonArray *jsonq_array(JsonNode *root, const char *path);
/* True only for a JSON true at @path. */
bool jsonq_bool(JsonNode *root, const char *path);

#endif /* POSTCOPY_MIGRATE_JSONQ_H */
