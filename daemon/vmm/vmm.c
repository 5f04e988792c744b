/* vmm.c - see vmm.h. */
#include "vmm.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <gio/gio.h>

#include "attach.pb-c.h"
#include "vm_channel.h"
#include "vmm_driver.h"

typedef Postcopy__Attach__Command Command;
typedef Postcopy__Attach__Reply Reply;
typedef Postcopy__Attach__Command__Kind CommandKind;

void vmm_init(struct vmm *v, int sock)
{
    memset(v, 0, sizeof(*v));
    v->sock = sock;
    v->next_id = 1;
    v->reply_timeout_ms = VMM_REPLY_TIMEOUT_MS;
}

static int64_t deadline_of(int timeout_ms)
{
    if (timeout_ms < 0) {
        return -1;
    }
    return g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
}

/* Wait for input until @deadline (-1: forever). */
static bool wait_readable(struct vmm *v, int64_t deadline, const char *what,
                          GError **err)
{
    struct pollfd pfd = {.fd = v->sock, .events = POLLIN};
    int r;

    do {
        int timeout = -1;

        if (deadline >= 0) {
            int64_t left = deadline - g_get_monotonic_time();

            timeout = left > 0 ? (int)((left + 999) / 1000) : 0;
        }
        r = poll(&pfd, 1, timeout);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;

        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e), "vmm: poll: %s",
                    g_strerror(e));
        return false;
    }
    if (r == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "vmm: no %s from the VMM in time", what);
        return false;
    }
    return true;
}

/* Receive one Reply frame; fds it may carry are closed. */
static Reply *recv_reply(struct vmm *v, int64_t deadline, const char *what,
                         GError **err)
{
    struct vm_frame f;
    Reply *r;

    if (!wait_readable(v, deadline, what, err) ||
        !vm_channel_recv(v->sock, &f, err)) {
        return NULL;
    }
    if (f.type != VM_FRAME_REPLY) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "vmm: expected a reply frame, got type %d", f.type);
        vm_frame_clear(&f);
        return NULL;
    }
    r = postcopy__attach__reply__unpack(NULL, f.len, f.body);
    vm_frame_clear(&f);
    if (!r) {
        g_set_error_literal(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "vmm: malformed reply from the VMM");
    }
    return r;
}

static void keep_event(struct vmm *v, const Reply *r)
{
    v->events++;
    if (!r->verify) {
        return;
    }
    v->have_verify = true;
    v->verify = (struct vmm_verify){
        .pages_checked = r->verify->pages_checked,
        .mismatches = r->verify->mismatches,
        .first_mismatch = r->verify->first_mismatch,
        .elapsed_us = r->verify->elapsed_us,
        .overwritten = r->verify->overwritten,
    };
}

static const char *kind_name(CommandKind kind)
{
    switch (kind) {
    case POSTCOPY__ATTACH__COMMAND__KIND__PAUSE:
        return "pause";
    case POSTCOPY__ATTACH__COMMAND__KIND__RESUME:
        return "resume";
    case POSTCOPY__ATTACH__COMMAND__KIND__QUERY:
        return "query";
    case POSTCOPY__ATTACH__COMMAND__KIND__QUIT:
        return "quit";
    default:
        return "command";
    }
}

/* The Reply to command @id, storing the events that come before it. */
static Reply *await_reply(struct vmm *v, uint64_t id, const char *what,
                          GError **err)
{
    int64_t deadline = deadline_of(v->reply_timeout_ms);

    for (;;) {
        Reply *r = recv_reply(v, deadline, what, err);

        if (!r) {
            return NULL;
        }
        if (r->id == id) {
            return r;
        }
        if (r->id == 0) {
            keep_event(v, r);
            postcopy__attach__reply__free_unpacked(r, NULL);
            continue;
        }
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "vmm: %s: reply id %" G_GUINT64_FORMAT
                    " does not match command id %" G_GUINT64_FORMAT,
                    what, r->id, id);
        postcopy__attach__reply__free_unpacked(r, NULL);
        return NULL;
    }
}

/* Send a command and return its successful Reply (free_unpacked it). */
static Reply *command(struct vmm *v, CommandKind kind, const uint8_t *state,
                      size_t len, GError **err)
{
    Command c = POSTCOPY__ATTACH__COMMAND__INIT;
    const char *what = kind_name(kind);
    Reply *r;

    c.id = v->next_id++;
    c.kind = kind;
    c.device_state.data = (uint8_t *)state;
    c.device_state.len = len;
    if (!vm_channel_send(v->sock, VM_FRAME_COMMAND, &c.base, NULL, 0, err)) {
        return NULL;
    }
    r = await_reply(v, c.id, what, err);
    if (r && !r->ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "vmm: %s: %s", what,
                    r->error && *r->error ? r->error : "refused");
        postcopy__attach__reply__free_unpacked(r, NULL);
        return NULL;
    }
    return r;
}

bool vmm_pause(struct vmm *v, uint8_t **state, size_t *len, GError **err)
{
    Reply *r = command(v, POSTCOPY__ATTACH__COMMAND__KIND__PAUSE, NULL, 0, err);

    if (!r) {
        return false;
    }
    *len = r->device_state.len;
    *state = g_memdup2(r->device_state.data, r->device_state.len);
    postcopy__attach__reply__free_unpacked(r, NULL);
    return true;
}

bool vmm_resume(struct vmm *v, const uint8_t *state, size_t len, GError **err)
{
    Reply *r =
        command(v, POSTCOPY__ATTACH__COMMAND__KIND__RESUME, state, len, err);

    if (r) {
        postcopy__attach__reply__free_unpacked(r, NULL);
    }
    return r != NULL;
}

bool vmm_query(struct vmm *v, uint64_t *pages_written, bool *paused,
               GError **err)
{
    Reply *r = command(v, POSTCOPY__ATTACH__COMMAND__KIND__QUERY, NULL, 0, err);

    if (!r) {
        return false;
    }
    *pages_written = r->pages_written;
    *paused = r->paused;
    postcopy__attach__reply__free_unpacked(r, NULL);
    return true;
}

bool vmm_quit(struct vmm *v, GError **err)
{
    Reply *r = command(v, POSTCOPY__ATTACH__COMMAND__KIND__QUIT, NULL, 0, err);

    if (r) {
        postcopy__attach__reply__free_unpacked(r, NULL);
    }
    return r != NULL;
}

bool vmm_wait_verify(struct vmm *v, int timeout_ms, struct vmm_verify *out,
                     GError **err)
{
    int64_t deadline = deadline_of(timeout_ms);

    while (!v->have_verify) {
        Reply *r = recv_reply(v, deadline, "verify result", err);

        if (!r) {
            return false;
        }
        if (r->id != 0) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "vmm: reply id %" G_GUINT64_FORMAT
                        " while no command is pending",
                        r->id);
            postcopy__attach__reply__free_unpacked(r, NULL);
            return false;
        }
        keep_event(v, r);
        postcopy__attach__reply__free_unpacked(r, NULL);
    }
    *out = v->verify;
    v->have_verify = false;
    return true;
}

/* The attach channel as a vmm_driver: the synthetic VM (postcopy-guest). */
struct channel_driver {
    struct vmm_driver base;
    struct vmm vmm;
    int pidfd;   /* the VMM process; -1 where pidfd_open() is refused */
    bool exited; /* already gone when its pidfd was asked for */
};

static struct vmm *channel_vmm(struct vmm_driver *drv)
{
    return &((struct channel_driver *)drv)->vmm;
}

static bool channel_pause(struct vmm_driver *drv, uint8_t **state, size_t *len,
                          GError **err)
{
    return vmm_pause(channel_vmm(drv), state, len, err);
}

static bool channel_resume(struct vmm_driver *drv, const uint8_t *state,
                           size_t len, GError **err)
{
    return vmm_resume(channel_vmm(drv), state, len, err);
}

static bool channel_ping(struct vmm_driver *drv, GError **err)
{
    uint64_t written;
    bool paused;

    return vmm_query(channel_vmm(drv), &written, &paused, err);
}

static bool channel_quit(struct vmm_driver *drv, GError **err)
{
    return vmm_quit(channel_vmm(drv), err);
}

/*
 * The VMM exited (its pidfd turns readable), or its end of the attach
 * socket closed.  The socket alone is not enough: a child that inherited
 * it, or a copy the VMM sent us, keeps it open after the VMM is gone.
 */
static bool channel_gone(struct vmm_driver *drv)
{
    struct channel_driver *c = (struct channel_driver *)drv;
    struct pollfd p[2] = {{.fd = c->vmm.sock, .events = POLLIN},
                          {.fd = c->pidfd, .events = POLLIN}};

    if (c->exited) {
        return true;
    }
    if (poll(p, 2, 0) <= 0) {
        return false;
    }
    return (p[0].revents & (POLLHUP | POLLERR)) || (p[1].revents & POLLIN);
}

static void channel_free(struct vmm_driver *drv)
{
    struct channel_driver *c = (struct channel_driver *)drv;

    close(c->vmm.sock);
    if (c->pidfd >= 0) {
        close(c->pidfd);
    }
    g_free(drv);
}

/*
 * A pidfd for the process at the other end of @sock, or -1; *@exited if
 * that process is gone already (and reaped: ESRCH).
 */
static int peer_pidfd(int sock, bool *exited)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int fd;

    /* A peer in another pid namespace reads as pid 0: no pidfd. */
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        cred.pid <= 0) {
        return -1;
    }
    fd = syscall(SYS_pidfd_open, cred.pid, 0);
    *exited = fd < 0 && errno == ESRCH;
    return fd;
}

static const struct vmm_driver_ops channel_ops = {
    .name = "attach channel",
    .pause = channel_pause,
    .resume = channel_resume,
    .ping = channel_ping,
    .quit = channel_quit,
    .gone = channel_gone,
    .free = channel_free,
};

struct vmm_driver *vmm_channel_driver_new(int sock)
{
    struct channel_driver *c = g_new0(struct channel_driver, 1);

    c->base.ops = &channel_ops;
    vmm_init(&c->vmm, sock);
    c->pidfd = peer_pidfd(sock, &c->exited);
    return &c->base;
}
