/*
 * qmp_channel_libvirt.c - the QMP channel of a libvirt domain: libvirt
 * owns QEMU's monitor socket, so commands go through its passthrough
 * (virDomainQemuMonitorCommand, ...WithFiles for getfd, libvirt >= 8.2)
 * and QEMU's events come through libvirt's QEMU monitor event callback,
 * with QEMU's own timestamps.  Those callbacks run on libvirt's event
 * loop, which this file starts once per process (a thread running
 * virEventRunDefaultImpl); they queue the events (qmp_events.h) and
 * signal an eventfd the driver polls.  The domain stopping (libvirt's
 * lifecycle event) closes the channel, so that a wait ends at once.
 */
#include "qmp_channel.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "json_depth.h"
#include "libvirt_xml.h"

/* The events the QEMU driver waits for; the rest stay in libvirt. */
#define EVENT_FILTER "^(STOP|RESUME|MIGRATION)$"

/* What the callbacks share with the channel; freed by the last holder. */
struct lv_events {
    struct qmp_events *queue;
    int efd;
    gboolean stopped; /* atomic: the domain stopped */
};

struct libvirt_channel {
    struct qmp_channel base;
    virConnectPtr conn;
    virDomainPtr dom;
    struct lv_events *ev;
    int monitor_cb;
    int lifecycle_cb;
};

static struct libvirt_channel *lc(struct qmp_channel *c)
{
    return (struct libvirt_channel *)c;
}

/* libvirt's last error on this thread, as a one-line GError. */
static void set_virt_error(GError **err, const char *what)
{
    g_autofree char *msg = g_strdup(virGetLastErrorMessage());

    g_strdelimit(msg, "\r\n", ' ');
    g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "%s: %s", what, msg);
}

static void lv_events_clear(gpointer p)
{
    struct lv_events *e = p;

    qmp_events_free(e->queue);
    close(e->efd);
}

static void lv_events_unref(void *p)
{
    g_atomic_rc_box_release_full(p, lv_events_clear);
}

static void signal_events(struct lv_events *e)
{
    uint64_t one = 1;

    if (write(e->efd, &one, sizeof(one)) < 0) {
        /* The counter is full: a wake-up is pending anyway. */
    }
}

static JsonObject *details_object(const char *details)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    JsonNode *root;

    if (!details || !json_load_bounded(parser, details, -1, NULL)) {
        return NULL;
    }
    root = json_parser_get_root(parser);
    return root && JSON_NODE_HOLDS_OBJECT(root)
               ? json_object_ref(json_node_get_object(root))
               : NULL;
}

/* On libvirt's event loop thread. */
static void on_monitor_event(virConnectPtr conn, virDomainPtr dom,
                             const char *event, long long seconds,
                             unsigned int micros, const char *details,
                             void *opaque)
{
    struct lv_events *e = opaque;
    struct qmp_event *ev = g_new0(struct qmp_event, 1);

    ev->name = g_strdup(event);
    ev->data = details_object(details);
    ev->timestamp_us =
        seconds < 0 ? g_get_real_time() : seconds * G_USEC_PER_SEC + micros;
    qmp_events_push(e->queue, ev);
    signal_events(e);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event,
                        int detail, void *opaque)
{
    struct lv_events *e = opaque;

    if (event == VIR_DOMAIN_EVENT_STOPPED) {
        g_atomic_int_set(&e->stopped, TRUE);
        signal_events(e);
    }
    return 0;
}

static gpointer event_loop(gpointer unused)
{
    for (;;) {
        if (virEventRunDefaultImpl() < 0) {
            g_usleep(G_USEC_PER_SEC / 10);
        }
    }
    return NULL;
}

/* Before the first connection: libvirt dispatches events on it. */
static gpointer start_event_loop(gpointer unused)
{
    if (virEventRegisterDefaultImpl() < 0) {
        return NULL;
    }
    g_thread_unref(g_thread_new("libvirt-events", event_loop, NULL));
    return GINT_TO_POINTER(1);
}

static bool event_loop_running(GError **err)
{
    static GOnce once = G_ONCE_INIT;

    if (g_once(&once, start_event_loop, NULL)) {
        return true;
    }
    set_virt_error(err, "libvirt's event loop");
    return false;
}

static char *command_text(const char *cmd, JsonObject *args)
{
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);

    json_object_set_string_member(o, "execute", cmd);
    if (args) {
        json_object_set_object_member(o, "arguments", json_object_ref(args));
    }
    json_node_set_object(n, o);
    return json_to_string(n, FALSE);
}

/* QEMU's reply as libvirt passed it on. */
static bool parse_reply(const char *cmd, const char *text, JsonNode **ret,
                        GError **err)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    JsonNode *root = json_load_bounded(parser, text, -1, NULL)
                         ? json_parser_get_root(parser)
                         : NULL;

    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "%s: QEMU's reply through libvirt is no JSON object", cmd);
        return false;
    }
    return qmp_take_reply(cmd, json_node_get_object(root), ret, err);
}

static bool lv_execute(struct qmp_channel *c, const char *cmd, JsonObject *args,
                       int fd, JsonNode **ret, GError **err)
{
    g_autofree char *text = command_text(cmd, args);
    char *reply = NULL;
    int rc;

    if (ret) {
        *ret = NULL;
    }
    if (fd >= 0) {
        rc = virDomainQemuMonitorCommandWithFiles(lc(c)->dom, text, 1, &fd,
                                                  NULL, NULL, &reply, 0);
    } else {
        rc = virDomainQemuMonitorCommand(lc(c)->dom, text, &reply, 0);
    }
    if (rc < 0) {
        set_virt_error(err, cmd);
        return false;
    }
    rc = parse_reply(cmd, reply, ret, err);
    free(reply);
    return rc;
}

static bool lv_closed(struct qmp_channel *c)
{
    return g_atomic_int_get(&lc(c)->ev->stopped);
}

static bool lv_pump(struct qmp_channel *c, GError **err)
{
    uint64_t n;

    if (read(lc(c)->ev->efd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "eventfd: %s",
                    g_strerror(errno));
        return false;
    }
    return true;
}

static struct qmp_event *lv_wait_event(struct qmp_channel *c, const char *name,
                                       qmp_event_match match, void *opaque,
                                       unsigned timeout_ms, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000ll;

    for (;;) {
        struct qmp_event *ev =
            qmp_events_take(lc(c)->ev->queue, name, match, opaque);
        struct pollfd p = {.fd = lc(c)->ev->efd, .events = POLLIN};
        int64_t left = (deadline - g_get_monotonic_time()) / 1000;

        if (ev || !timeout_ms) {
            return ev;
        }
        if (lv_closed(c)) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_CLOSED,
                        "the domain stopped (QEMU exited)");
            return NULL;
        }
        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                        "no %s event from QEMU in %u ms", name, timeout_ms);
            return NULL;
        }
        if (!lv_pump(c, err)) {
            return NULL;
        }
    }
}

static int64_t lv_last_event_us(struct qmp_channel *c, const char *name)
{
    return qmp_events_last_us(lc(c)->ev->queue, name);
}

static int lv_event_fd(struct qmp_channel *c)
{
    return lc(c)->ev->efd;
}

/*
 * Through libvirt, not QMP quit: libvirt then knows the domain is shut
 * off rather than finding its QEMU gone.
 */
static bool lv_quit(struct qmp_channel *c, GError **err)
{
    if (virDomainDestroy(lc(c)->dom) < 0) {
        set_virt_error(err, "destroy");
        return false;
    }
    return true;
}

static void lv_free(struct qmp_channel *c)
{
    struct libvirt_channel *l = lc(c);

    if (l->monitor_cb >= 0) {
        virConnectDomainQemuMonitorEventDeregister(l->conn, l->monitor_cb);
    }
    if (l->lifecycle_cb >= 0) {
        virConnectDomainEventDeregisterAny(l->conn, l->lifecycle_cb);
    }
    if (l->dom) {
        virDomainFree(l->dom);
    }
    if (l->conn) {
        virConnectClose(l->conn);
    }
    if (l->ev) {
        lv_events_unref(l->ev);
    }
    g_free(c->label);
    g_free(l);
}

static const struct qmp_channel_ops libvirt_ops = {
    .vmm_name = "QEMU (libvirt)",
    .execute = lv_execute,
    .wait_event = lv_wait_event,
    .last_event_us = lv_last_event_us,
    .event_fd = lv_event_fd,
    .pump = lv_pump,
    .quit = lv_quit,
    .closed = lv_closed,
    .free = lv_free,
};

/* Each callback holds a reference to the queue until libvirt drops it. */
static bool register_events(struct libvirt_channel *l, GError **err)
{
    l->monitor_cb = virConnectDomainQemuMonitorEventRegister(
        l->conn, l->dom, EVENT_FILTER, on_monitor_event,
        g_atomic_rc_box_acquire(l->ev), lv_events_unref,
        VIR_CONNECT_DOMAIN_QEMU_MONITOR_EVENT_REGISTER_REGEX);
    if (l->monitor_cb < 0) {
        lv_events_unref(l->ev);
        set_virt_error(err, "QEMU monitor events");
        return false;
    }
    l->lifecycle_cb = virConnectDomainEventRegisterAny(
        l->conn, l->dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), g_atomic_rc_box_acquire(l->ev),
        lv_events_unref);
    if (l->lifecycle_cb < 0) {
        lv_events_unref(l->ev);
        set_virt_error(err, "lifecycle events");
        return false;
    }
    return true;
}

static bool open_domain(struct libvirt_channel *l, const char *uri,
                        const char *name, GError **err)
{
    l->conn = virConnectOpen(uri);
    if (!l->conn) {
        set_virt_error(err, uri ? uri : "libvirt's default URI");
        return false;
    }
    l->dom = virDomainLookupByName(l->conn, name);
    if (!l->dom) {
        set_virt_error(err, "lookup");
        return false;
    }
    if (virDomainIsActive(l->dom) != 1) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_NOT_RUNNING, "not running");
        return false;
    }
    return true;
}

/* libvirt prints its errors on stderr by default: a daemon logs ours. */
static void quiet_errors(void *opaque, virErrorPtr e)
{
}

struct qmp_channel *qmp_channel_libvirt_new(const char *uri, const char *name,
                                            GError **err)
{
    struct libvirt_channel *l = g_new0(struct libvirt_channel, 1);

    virSetErrorFunc(NULL, quiet_errors);
    l->base.ops = &libvirt_ops;
    l->base.label = g_strdup_printf("libvirt domain %s", name);
    l->base.ram_hint = "add " LIBVIRT_SHARED_RAM_XML " to the domain XML";
    l->monitor_cb = l->lifecycle_cb = -1;
    l->ev = g_atomic_rc_box_new0(struct lv_events);
    l->ev->queue = qmp_events_new();
    l->ev->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->ev->efd < 0) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "eventfd: %s",
                    g_strerror(errno));
    } else if (event_loop_running(err) && open_domain(l, uri, name, err) &&
               register_events(l, err)) {
        return &l->base;
    }
    g_prefix_error(err, "%s: ", l->base.label);
    lv_free(&l->base);
    return NULL;
}
