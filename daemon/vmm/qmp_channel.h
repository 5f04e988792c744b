/*
 * qmp_channel.h - how the QEMU driver (qmp_driver.h) reaches QEMU's QMP
 * monitor.  Two ways: a QMP socket the daemon owns (qmp_channel_socket.c,
 * over qmp.h), or, for a domain libvirt manages, libvirt's monitor
 * passthrough (qmp_channel_libvirt.c): libvirt owns that socket, so the
 * daemon goes through libvirt, never around it, and libvirt sees every
 * STOP and RESUME.
 *
 * Contract: execute sends one command (with an fd for getfd when @fd >= 0)
 * and returns its "return"; QEMU's events are queued in order, whoever
 * reads them, and taken by name; event_fd is readable when events may be
 * waiting (pump then reads them without blocking); quit makes QEMU exit
 * the way its owner expects (QMP quit and the socket closing; libvirt's
 * destroy, so that it marks the domain shut off); closed never blocks.
 * Errors are one-line QMP_ERROR GErrors.  One thread at a time, as the
 * driver that owns the channel.
 */
#ifndef POSTCOPYD_QMP_CHANNEL_H
#define POSTCOPYD_QMP_CHANNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "qmp.h"
#include "qmp_events.h"

struct qmp_channel;

struct qmp_channel_ops {
    /* The driver's name as query-vms shows it. */
    const char *vmm_name;
    bool (*execute)(struct qmp_channel *c, const char *cmd, JsonObject *args,
                    int fd, JsonNode **ret, GError **err);
    /* The first queued @name event @match takes, waiting @timeout_ms. */
    struct qmp_event *(*wait_event)(struct qmp_channel *c, const char *name,
                                    qmp_event_match match, void *opaque,
                                    unsigned timeout_ms, GError **err);
    int64_t (*last_event_us)(struct qmp_channel *c, const char *name);
    int (*event_fd)(struct qmp_channel *c);
    bool (*pump)(struct qmp_channel *c, GError **err);
    bool (*quit)(struct qmp_channel *c, GError **err);
    bool (*closed)(struct qmp_channel *c);
    void (*free)(struct qmp_channel *c);
};

struct qmp_channel {
    const struct qmp_channel_ops *ops;
    /* Prefix of every error: "QEMU pid N" or "libvirt domain NAME". */
    char *label;
    /* How to make the RAM shared, for a refusal. */
    const char *ram_hint;
};

static inline bool qmp_channel_execute(struct qmp_channel *c, const char *cmd,
                                       JsonObject *args, JsonNode **ret,
                                       GError **err)
{
    return c->ops->execute(c, cmd, args, -1, ret, err);
}

static inline bool qmp_channel_execute_fd(struct qmp_channel *c,
                                          const char *cmd, JsonObject *args,
                                          int fd, JsonNode **ret, GError **err)
{
    return c->ops->execute(c, cmd, args, fd, ret, err);
}

static inline struct qmp_event *
qmp_channel_wait_event(struct qmp_channel *c, const char *name,
                       qmp_event_match match, void *opaque, unsigned timeout_ms,
                       GError **err)
{
    return c->ops->wait_event(c, name, match, opaque, timeout_ms, err);
}

/* Without waiting: NULL and no error when none has come yet. */
static inline struct qmp_event *
qmp_channel_take_event(struct qmp_channel *c, const char *name,
                       qmp_event_match match, void *opaque, GError **err)
{
    return c->ops->wait_event(c, name, match, opaque, 0, err);
}

static inline int64_t qmp_channel_last_event_us(struct qmp_channel *c,
                                                const char *name)
{
    return c->ops->last_event_us(c, name);
}

static inline int qmp_channel_event_fd(struct qmp_channel *c)
{
    return c->ops->event_fd(c);
}

static inline bool qmp_channel_pump(struct qmp_channel *c, GError **err)
{
    return c->ops->pump(c, err);
}

static inline bool qmp_channel_quit(struct qmp_channel *c, GError **err)
{
    return c->ops->quit(c, err);
}

static inline bool qmp_channel_closed(struct qmp_channel *c)
{
    return c->ops->closed(c);
}

static inline void qmp_channel_free(struct qmp_channel *c)
{
    if (c) {
        c->ops->free(c);
    }
}

/* QEMU's own QMP socket @q (taken) of the QEMU with pid @pid. */
struct qmp_channel *qmp_channel_socket_new(struct qmp *q, pid_t pid);

/*
 * The active libvirt domain @name on a connection to @uri (NULL:
 * libvirt's default), QMP through virDomainQemuMonitorCommand (getfd
 * through ...WithFiles) and its events through libvirt's QEMU monitor
 * event callback.  Errors are prefixed "libvirt domain NAME: ".
 */
struct qmp_channel *qmp_channel_libvirt_new(const char *uri, const char *name,
                                            GError **err);

#endif /* POSTCOPYD_QMP_CHANNEL_H */
