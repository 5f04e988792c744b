/*
 * control.h - the control socket server: a Unix socket speaking a
 * simplified QMP, for postcopy-migrate, the libvirt hook, scripts and QMP
 * tooling.  docs/control.md has the protocol and every command.
 *
 * Protocol (one JSON object per line, UTF-8, each way):
 *   on connect  <- {"QMP": {"version": {...}, "capabilities": []},
 *                   "postcopyd": {"version": "0.1.0"}}
 *               (negotiation is optional: commands work at once; the
 *               server itself answers qmp_capabilities and
 *               query-commands, see control_request.c)
 *   request     -> {"execute": "migrate", "arguments": {...}, "id": ANY}
 *   success     <- {"return": VALUE, "id": ANY}
 *   failure     <- {"error": {"class": "GenericError", "desc": "..."},
 *                   "id": ANY}
 *   event       <- {"event": "MIGRATION", "data": {...},
 *                   "timestamp": {"seconds": S, "microseconds": US}}
 * "arguments" and "id" are optional; "id" is echoed as given.  A bad
 * request (not JSON, not an object, no string "execute", unknown command,
 * "arguments" not an object, NUL bytes, bad UTF-8) gets an error reply
 * and the connection goes on; a line over CONTROL_LINE_MAX gets an error
 * and the connection is dropped, as is a client whose unread replies
 * exceed CONTROL_OUTPUT_MAX.  Replies come in request order; events may
 * arrive between them.
 *
 * Room: CONTROL_CLIENTS_MAX clients at once, of which root alone may take
 * the last CONTROL_ROOT_RESERVE, so that idle clients of other users
 * never lock root out.  A client that sends no line (a blank one will
 * do) for the idle timeout (CONTROL_IDLE_MS) is dropped: one that only
 * listens for events says something now and then.
 *
 * Threads: the server runs on the thread-default GMainContext of the
 * thread calling control_server_new*() (the daemon's main loop).  Command
 * handlers run there, one at a time, and must not block.
 * control_server_emit_event() may be called from any thread; everything
 * else, control_server_free() included, only from the server's context
 * thread, and no emit may race with or follow control_server_free().
 */
#ifndef POSTCOPYD_CONTROL_H
#define POSTCOPYD_CONTROL_H

#include <json-glib/json-glib.h>

#include "control_error.h"

#define CONTROL_LINE_MAX     (1u << 20) /* longest request line */
#define CONTROL_OUTPUT_MAX   (4u << 20) /* unread replies per client */
#define CONTROL_CLIENTS_MAX  64
#define CONTROL_ROOT_RESERVE 8
#define CONTROL_IDLE_MS      60000

struct peercred_policy;

/*
 * A command.  @arguments is never NULL (an empty object when the request
 * had none) and belongs to the caller.  Return the "return" value (full
 * transfer; NULL means {}), or NULL with @err set for an error reply: a
 * CONTROL_ERROR code picks the class, any other domain is GenericError.
 */
struct control_command {
    const char *name;
    JsonNode *(*fn)(void *opaque, JsonObject *arguments, GError **err);
};

struct control_server;

/*
 * Listen on @path (mode 0600, parent created, stale socket replaced).
 * @table ends with a {NULL} entry and must outlive the server; @opaque is
 * passed to every handler.  Adding a command is one table row.
 */
struct control_server *control_server_new(const char *path,
                                          const struct control_command *table,
                                          void *opaque, GError **err);

/* The same on an already listening socket (systemd socket activation). */
struct control_server *
control_server_new_from_fd(int listen_fd, const struct control_command *table,
                           void *opaque);

/*
 * Accept only clients @policy allows (peercred.h), checked before the
 * greeting; NULL: anyone who can open the socket.  @policy must outlive
 * the server.
 */
void control_server_set_policy(struct control_server *srv,
                               const struct peercred_policy *policy);

/* Drop clients silent for @ms (default CONTROL_IDLE_MS); 0: never. */
void control_server_set_idle_timeout(struct control_server *srv, unsigned ms);

/*
 * Send an event to every connected client.  Any thread; takes @data
 * (may be NULL: no "data" member).  The timestamp is taken here.
 */
void control_server_emit_event(struct control_server *srv, const char *event,
                               JsonNode *data);

/* Disconnect every client, close and remove the socket. */
void control_server_free(struct control_server *srv);

#endif /* POSTCOPYD_CONTROL_H */
