/*
 * control_request.h - one request line of the control socket (control.h
 * has the protocol): checked (UTF-8, no NUL, JSON depth, members), run
 * through the command table, and answered with the reply object.  No
 * sockets here: control.c reads the lines and writes the replies.
 *
 * Contract: called on the server's context thread only, like the
 * handlers it runs.
 */
#ifndef POSTCOPYD_CONTROL_REQUEST_H
#define POSTCOPYD_CONTROL_REQUEST_H

#include <stddef.h>
#include <json-glib/json-glib.h>

#include "control.h"

/* The reply to one request line (without its newline): full transfer. */
JsonObject *control_request_handle(const struct control_command *table,
                                   void *opaque, const char *line, size_t len);

/* {"error": {"class", "desc"}} for @e (control_error_class()). */
JsonObject *control_error_reply(const GError *e);

/* @obj as one line of compact JSON, newline included (g_free it). */
char *control_json_line(JsonObject *obj);

#endif /* POSTCOPYD_CONTROL_REQUEST_H */
