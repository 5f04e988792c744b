/*
 * qmp_events.h - QEMU's QMP events as the QEMU driver sees them, and the
 * queue that keeps them until it asks: QEMU's own socket (qmp.c) queues
 * what it reads between replies, libvirt's monitor event callback
 * (qmp_channel_libvirt.c) what libvirt passes on from its thread.
 *
 * Contract: events keep QEMU's order; beyond QMP_EVENTS_MAX the oldest
 * go; the queue is safe to push from one thread and take from another;
 * the time of the last event of each name stays known after it is taken.
 */
#ifndef POSTCOPYD_QMP_EVENTS_H
#define POSTCOPYD_QMP_EVENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>

/* Events kept for a later take; beyond it the oldest go. */
#define QMP_EVENTS_MAX 256

struct qmp_event {
    char *name;
    JsonObject *data;     /* NULL when the event has none */
    int64_t timestamp_us; /* QEMU's wall clock (CLOCK_REALTIME) */
};

/* Type name for g_autoptr() only. */
typedef struct qmp_event QmpEvent;

void qmp_event_free(struct qmp_event *ev);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QmpEvent, qmp_event_free)

/* An event filter: true to take @ev. */
typedef bool (*qmp_event_match)(const struct qmp_event *ev, void *opaque);

/* A qmp_event_match: data.status is one of @opaque, a NULL-ended char *[]. */
bool qmp_match_status(const struct qmp_event *ev, void *opaque);

struct qmp_events;

struct qmp_events *qmp_events_new(void);
void qmp_events_free(struct qmp_events *q);

/* Queue @ev (taken). */
void qmp_events_push(struct qmp_events *q, struct qmp_event *ev);
/* The first queued event named @name that @match (NULL: any) takes. */
struct qmp_event *qmp_events_take(struct qmp_events *q, const char *name,
                                  qmp_event_match match, void *opaque);
/* QEMU's timestamp of the last @name event queued; 0 if none yet. */
int64_t qmp_events_last_us(struct qmp_events *q, const char *name);

#endif /* POSTCOPYD_QMP_EVENTS_H */
