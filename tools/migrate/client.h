/*
 * client.h - postcopy-migrate's end of the control socket (see
 * daemon/control.h for the protocol).
 *
 * Contract: control_conn_open() connects and checks the greeting; a
 * daemon that is not there fails with "cannot connect to PATH: REASON
 * (is postcopyd running?)".  control_conn_execute() sends one command
 * and waits for its reply, skipping events; an error reply becomes a
 * CONTROL_ERROR GError (code from the class, message = desc), a broken
 * or silent connection (CONTROL_CONN_TIMEOUT_MS) a G_IO_ERROR one.
 */
#ifndef POSTCOPY_MIGRATE_CLIENT_H
#define POSTCOPY_MIGRATE_CLIENT_H

#include <json-glib/json-glib.h>

#include "control_error.h"

#define CONTROL_CONN_TIMEOUT_MS 30000
#define CONTROL_CONN_LINE_MAX   (16u << 20)

struct control_conn;

struct control_conn *control_conn_open(const char *path, GError **err);

/* @args may be NULL; returns the "return" value (full transfer). */
JsonNode *control_conn_execute(struct control_conn *c, const char *command,
                               JsonObject *args, GError **err);

void control_conn_close(struct control_conn *c);

#endif /* POSTCOPY_MIGRATE_CLIENT_H */
