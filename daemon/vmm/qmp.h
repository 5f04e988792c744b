/*
 * qmp.h - a small synchronous QMP client: one QEMU's monitor socket, one
 * command at a time, from one thread.
 *
 * Contract: every call returns within the client's timeout (or the one it
 * is given); an event that arrives while a command waits for its reply is
 * queued (name, data, QEMU's timestamp), never lost; a QMP error becomes a
 * one-line GError carrying QEMU's "desc"; QEMU closing the socket is
 * QMP_ERROR_CLOSED, "QEMU closed its QMP socket".  Lines longer than
 * QMP_LINE_MAX or nested deeper than JSON_DEPTH_MAX (json_depth.h) are
 * refused.
 */
#ifndef POSTCOPYD_QMP_H
#define POSTCOPYD_QMP_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "qmp_events.h"

#define QMP_LINE_MAX (4u << 20)

#define QMP_ERROR qmp_error_quark()

typedef enum {
    QMP_ERROR_FAILED,  /* socket, protocol, anything on our side */
    QMP_ERROR_COMMAND, /* QEMU answered with an error */
    QMP_ERROR_CLOSED,  /* QEMU closed its QMP socket */
    QMP_ERROR_TIMEOUT,
    QMP_ERROR_NOT_RUNNING, /* a libvirt domain that does not run (yet) */
} QmpError;

GQuark qmp_error_quark(void);

struct qmp;

/* Type name for g_autoptr() only. */
typedef struct qmp Qmp;

/*
 * Connect to @path (retrying while QEMU creates it, up to @timeout_ms),
 * read the greeting and leave capabilities negotiation.  @timeout_ms is
 * also the client's timeout for every later command.
 */
struct qmp *qmp_connect(const char *path, unsigned timeout_ms, GError **err);
/* The same on a connected socket @fd, which it takes (closed on failure). */
struct qmp *qmp_new_from_fd(int fd, unsigned timeout_ms, GError **err);
void qmp_free(struct qmp *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Qmp, qmp_free)

void qmp_set_timeout(struct qmp *q, unsigned timeout_ms);
int qmp_get_fd(struct qmp *q);

/*
 * Send @cmd with @args (NULL: none) and wait for its reply; *@ret (may be
 * NULL; json_node_unref it) is its "return".
 */
bool qmp_execute(struct qmp *q, const char *cmd, JsonObject *args,
                 JsonNode **ret, GError **err);
/* The same, passing @fd along with the command (SCM_RIGHTS), for getfd. */
bool qmp_execute_with_fd(struct qmp *q, const char *cmd, JsonObject *args,
                         int fd, JsonNode **ret, GError **err);
/*
 * QEMU's reply @reply to @cmd, however it came: its "return" in *@ret
 * (may be NULL), or QEMU's "error" as a one-line QMP_ERROR_COMMAND.
 */
bool qmp_take_reply(const char *cmd, JsonObject *reply, JsonNode **ret,
                    GError **err);

/*
 * The first event named @name that @match (NULL: any) takes, queued or
 * read within @timeout_ms; NULL with an error if none came.
 */
struct qmp_event *qmp_wait_event(struct qmp *q, const char *name,
                                 qmp_event_match match, void *opaque,
                                 unsigned timeout_ms, GError **err);
/* The same without waiting: NULL and no error when none has come yet. */
struct qmp_event *qmp_take_event(struct qmp *q, const char *name,
                                 qmp_event_match match, void *opaque,
                                 GError **err);
/* Read what QEMU has sent, without waiting, queueing its events. */
bool qmp_pump(struct qmp *q, GError **err);

/* QEMU closed the socket (never blocks; reads what is pending). */
bool qmp_closed(struct qmp *q);

/* QEMU's timestamp of the last @name event received; 0 if none yet. */
int64_t qmp_last_event_us(struct qmp *q, const char *name);

/* @o's member @name if it is an object / a string, else NULL. */
JsonObject *qmp_member_object(JsonObject *o, const char *name);
const char *qmp_member_string(JsonObject *o, const char *name);
/*
 * What QEMU sent, fit for a one-line error or log (g_free it): valid
 * UTF-8, control characters, quotes and bytes past ASCII escaped.
 */
char *qmp_printable(const char *s);

#endif /* POSTCOPYD_QMP_H */
