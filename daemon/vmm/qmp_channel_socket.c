/*
 * qmp_channel_socket.c - the QMP channel over QEMU's own monitor socket
 * (qmp.h), which the daemon holds: events come on the socket between
 * replies, quit is QMP's quit and QEMU closing the socket as it exits.
 */
#include "qmp_channel.h"

#include <poll.h>

/* One QMP command; QEMU answers within milliseconds when healthy. */
#define CMD_TIMEOUT_MS  5000
#define QUIT_TIMEOUT_MS 5000

struct socket_channel {
    struct qmp_channel base;
    struct qmp *q;
};

static struct qmp *qmp_of(struct qmp_channel *c)
{
    return ((struct socket_channel *)c)->q;
}

static bool sock_execute(struct qmp_channel *c, const char *cmd,
                         JsonObject *args, int fd, JsonNode **ret, GError **err)
{
    return qmp_execute_with_fd(qmp_of(c), cmd, args, fd, ret, err);
}

static struct qmp_event *sock_wait_event(struct qmp_channel *c,
                                         const char *name,
                                         qmp_event_match match, void *opaque,
                                         unsigned timeout_ms, GError **err)
{
    if (!timeout_ms) {
        return qmp_take_event(qmp_of(c), name, match, opaque, err);
    }
    return qmp_wait_event(qmp_of(c), name, match, opaque, timeout_ms, err);
}

static int64_t sock_last_event_us(struct qmp_channel *c, const char *name)
{
    return qmp_last_event_us(qmp_of(c), name);
}

static int sock_event_fd(struct qmp_channel *c)
{
    return qmp_get_fd(qmp_of(c));
}

static bool sock_pump(struct qmp_channel *c, GError **err)
{
    return qmp_pump(qmp_of(c), err);
}

/* Until QEMU closes the socket, which it does as it exits. */
static bool wait_closed(struct qmp *q, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + QUIT_TIMEOUT_MS * 1000ll;

    while (!qmp_closed(q)) {
        struct pollfd p = {.fd = qmp_get_fd(q), .events = POLLIN};
        int64_t left = (deadline - g_get_monotonic_time()) / 1000;

        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                        "still there %d ms after quit", QUIT_TIMEOUT_MS);
            return false;
        }
    }
    return true;
}

static bool sock_quit(struct qmp_channel *c, GError **err)
{
    g_autoptr(GError) local = NULL;

    /* QEMU may close the socket before its reply reaches us. */
    if (!qmp_execute(qmp_of(c), "quit", NULL, NULL, &local) &&
        !g_error_matches(local, QMP_ERROR, QMP_ERROR_CLOSED)) {
        g_propagate_error(err, g_steal_pointer(&local));
        return false;
    }
    return wait_closed(qmp_of(c), err);
}

static bool sock_closed(struct qmp_channel *c)
{
    return qmp_closed(qmp_of(c));
}

static void sock_free(struct qmp_channel *c)
{
    qmp_free(qmp_of(c));
    g_free(c->label);
    g_free(c);
}

static const struct qmp_channel_ops socket_ops = {
    .vmm_name = "QEMU (QMP)",
    .execute = sock_execute,
    .wait_event = sock_wait_event,
    .last_event_us = sock_last_event_us,
    .event_fd = sock_event_fd,
    .pump = sock_pump,
    .quit = sock_quit,
    .closed = sock_closed,
    .free = sock_free,
};

struct qmp_channel *qmp_channel_socket_new(struct qmp *q, pid_t pid)
{
    struct socket_channel *s = g_new0(struct socket_channel, 1);

    s->base.ops = &socket_ops;
    s->base.label = g_strdup_printf("QEMU pid %d", (int)pid);
    s->base.ram_hint = "start QEMU with -object "
                       "memory-backend-memfd,id=ram0,size=...,share=on "
                       "-machine memory-backend=ram0";
    s->q = q;
    qmp_set_timeout(q, CMD_TIMEOUT_MS);
    return &s->base;
}
