/* qmp_events.c - see qmp_events.h. */
#include "qmp_events.h"

#include <string.h>

#include "qmp.h"

struct qmp_events {
    GMutex lock;
    GQueue queue;
    GHashTable *last_us; /* event name -> int64_t *, QEMU's timestamp */
};

void qmp_event_free(struct qmp_event *ev)
{
    if (!ev) {
        return;
    }
    g_free(ev->name);
    g_clear_pointer(&ev->data, json_object_unref);
    g_free(ev);
}

bool qmp_match_status(const struct qmp_event *ev, void *opaque)
{
    const char *const *want = opaque;
    const char *status = qmp_member_string(ev->data, "status");

    return status && g_strv_contains(want, status);
}

struct qmp_events *qmp_events_new(void)
{
    struct qmp_events *q = g_new0(struct qmp_events, 1);

    g_mutex_init(&q->lock);
    g_queue_init(&q->queue);
    q->last_us = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return q;
}

void qmp_events_free(struct qmp_events *q)
{
    if (!q) {
        return;
    }
    g_queue_clear_full(&q->queue, (GDestroyNotify)qmp_event_free);
    g_hash_table_unref(q->last_us);
    g_mutex_clear(&q->lock);
    g_free(q);
}

void qmp_events_push(struct qmp_events *q, struct qmp_event *ev)
{
    int64_t *last;

    g_mutex_lock(&q->lock);
    last = g_hash_table_lookup(q->last_us, ev->name);
    if (!last) {
        last = g_new0(int64_t, 1);
        g_hash_table_insert(q->last_us, g_strdup(ev->name), last);
    }
    *last = ev->timestamp_us;
    g_queue_push_tail(&q->queue, ev);
    if (g_queue_get_length(&q->queue) > QMP_EVENTS_MAX) {
        qmp_event_free(g_queue_pop_head(&q->queue));
    }
    g_mutex_unlock(&q->lock);
}

struct qmp_event *qmp_events_take(struct qmp_events *q, const char *name,
                                  qmp_event_match match, void *opaque)
{
    struct qmp_event *found = NULL;

    g_mutex_lock(&q->lock);
    for (GList *l = q->queue.head; l; l = l->next) {
        struct qmp_event *ev = l->data;

        if (strcmp(ev->name, name) == 0 && (!match || match(ev, opaque))) {
            g_queue_delete_link(&q->queue, l);
            found = ev;
            break;
        }
    }
    g_mutex_unlock(&q->lock);
    return found;
}

int64_t qmp_events_last_us(struct qmp_events *q, const char *name)
{
    int64_t us;
    int64_t *p;

    g_mutex_lock(&q->lock);
    p = g_hash_table_lookup(q->last_us, name);
    us = p ? *p : 0;
    g_mutex_unlock(&q->lock);
    return us;
}
