/* control.c - see control.h. */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib-unix.h>

#include "control_request.h"
#include "peercred.h"
#include "unix_listen.h"
#include "version.h"

#define READ_CHUNK (64u << 10)
/* Events waiting for the main loop; beyond this they are dropped. */
#define EVENT_QUEUE_MAX 4096
#define ACCEPT_PAUSE_MS 1000

struct control_server {
    GMainContext *ctx;
    const struct control_command *table;
    void *opaque;
    int fd;
    char *path;        /* NULL for an adopted socket: not ours to remove */
    struct stat bound; /* identity of the socket file at @path */
    GSource *accept_src;
    GList *clients;
    const struct peercred_policy *policy; /* NULL: no check */
    unsigned idle_ms;                     /* 0: clients may idle */
    GSource *idle_src;                    /* sweeps idle clients */

    GMutex lock; /* the event queue, filled from any thread */
    GQueue events;
    GSource *event_src;
    unsigned events_dropped;
};

struct control_client {
    struct control_server *srv;
    int fd;
    GSource *in_src;
    GSource *out_src; /* only while replies wait for the socket */
    GString *in;
    GString *out;
    size_t scanned; /* bytes of @in known to hold no newline */
    gint64 active;  /* monotonic time of its last line */
};

/* ---- clients ---------------------------------------------------------- */

static void client_free(struct control_client *c)
{
    struct control_server *srv = c->srv;

    srv->clients = g_list_remove(srv->clients, c);
    g_source_destroy(c->in_src);
    g_source_unref(c->in_src);
    if (c->out_src) {
        g_source_destroy(c->out_src);
        g_source_unref(c->out_src);
    }
    close(c->fd);
    g_string_free(c->in, TRUE);
    g_string_free(c->out, TRUE);
    g_free(c);
}

static gboolean client_writable(int fd, GIOCondition cond, gpointer data);

/* Push out what the socket takes now; false: the client is gone. */
static bool client_flush(struct control_client *c)
{
    while (c->out->len) {
        ssize_t n =
            send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n < 0) {
            g_debug("control: client write failed: %s", g_strerror(errno));
            return false;
        }
        g_string_erase(c->out, 0, n);
    }
    if (c->out->len && !c->out_src) {
        c->out_src = g_unix_fd_source_new(c->fd, G_IO_OUT | G_IO_ERR);
        g_source_set_callback(c->out_src, G_SOURCE_FUNC(client_writable), c,
                              NULL);
        g_source_attach(c->out_src, c->srv->ctx);
    }
    return true;
}

static bool client_send(struct control_client *c, const char *line)
{
    size_t len = strlen(line);

    if (c->out->len + len > CONTROL_OUTPUT_MAX) {
        g_message("control: client does not read its replies (%zu bytes "
                  "queued); dropping it",
                  c->out->len);
        return false;
    }
    g_string_append_len(c->out, line, len);
    return client_flush(c);
}

static bool client_send_object(struct control_client *c, JsonObject *obj)
{
    g_autofree char *line = control_json_line(obj);

    return client_send(c, line);
}

static gboolean client_writable(int fd, GIOCondition cond, gpointer data)
{
    struct control_client *c = data;

    if (!client_flush(c)) {
        client_free(c);
        return G_SOURCE_REMOVE;
    }
    if (c->out->len) {
        return G_SOURCE_CONTINUE;
    }
    g_source_unref(c->out_src);
    c->out_src = NULL;
    return G_SOURCE_REMOVE;
}

static bool is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isspace(s[i])) {
            return false;
        }
    }
    return true;
}

static bool client_handle_line(struct control_client *c, const char *line,
                               size_t len)
{
    g_autoptr(JsonObject) reply = NULL;

    if (is_blank(line, len)) {
        return true;
    }
    reply = control_request_handle(c->srv->table, c->srv->opaque, line, len);
    return client_send_object(c, reply);
}

/* Refuse an overlong line: say why, best effort, then hang up. */
static void client_oversize(struct control_client *c)
{
    g_autoptr(GError) e =
        g_error_new(CONTROL_ERROR, CONTROL_ERROR_GENERIC,
                    "request line longer than %u bytes; closing the "
                    "connection",
                    CONTROL_LINE_MAX);
    g_autoptr(JsonObject) reply = control_error_reply(e);

    g_message("control: client sent a line over %u bytes; dropping it",
              CONTROL_LINE_MAX);
    client_send_object(c, reply);
}

/* Serve every complete line in the input; false: drop the client. */
static bool client_process(struct control_client *c)
{
    size_t start = 0;

    for (;;) {
        char *base = c->in->str + start;
        size_t avail = c->in->len - start;
        char *nl = memchr(base + c->scanned, '\n', avail - c->scanned);
        size_t len;

        if (!nl) {
            c->scanned = avail;
            break;
        }
        len = nl - base;
        if (len > CONTROL_LINE_MAX) {
            break;
        }
        c->active = g_get_monotonic_time();
        if (!client_handle_line(c, base,
                                len && base[len - 1] == '\r' ? len - 1 : len)) {
            return false;
        }
        start += len + 1;
        c->scanned = 0;
    }
    g_string_erase(c->in, 0, start);
    if (c->in->len > CONTROL_LINE_MAX) {
        client_oversize(c);
        return false;
    }
    return true;
}

static gboolean client_readable(int fd, GIOCondition cond, gpointer data)
{
    struct control_client *c = data;
    char buf[READ_CHUNK];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        g_debug("control: client gone%s",
                c->in->len ? " in the middle of a request" : "");
        client_free(c);
        return G_SOURCE_REMOVE;
    }
    g_string_append_len(c->in, buf, n);
    if (!client_process(c)) {
        client_free(c);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/*
 * {"QMP": {...}, "postcopyd": {"version"}}: QMP's greeting, so that QMP
 * tooling (qmp-shell, python qemu.qmp) talks to us; its "qemu" version
 * is ours, and it offers no capabilities.
 */
static JsonObject *greeting_qmp(void)
{
    JsonObject *qmp = json_object_new();
    JsonObject *version = json_object_new();
    JsonObject *numbers = json_object_new();
    unsigned major = 0, minor = 0, micro = 0;

    sscanf(POSTCOPYD_VERSION, "%u.%u.%u", &major, &minor, &micro);
    json_object_set_int_member(numbers, "major", major);
    json_object_set_int_member(numbers, "minor", minor);
    json_object_set_int_member(numbers, "micro", micro);
    json_object_set_object_member(version, "qemu", numbers);
    json_object_set_string_member(version, "package",
                                  "postcopyd " POSTCOPYD_VERSION);
    json_object_set_object_member(qmp, "version", version);
    json_object_set_array_member(qmp, "capabilities", json_array_new());
    return qmp;
}

static void client_greet(struct control_client *c)
{
    g_autoptr(JsonObject) greeting = json_object_new();
    JsonObject *info = json_object_new();

    json_object_set_object_member(greeting, "QMP", greeting_qmp());
    json_object_set_string_member(info, "version", POSTCOPYD_VERSION);
    json_object_set_object_member(greeting, "postcopyd", info);
    if (!client_send_object(c, greeting)) {
        client_free(c);
    }
}

static void client_new(struct control_server *srv, int fd)
{
    struct control_client *c = g_new0(struct control_client, 1);

    c->srv = srv;
    c->fd = fd;
    c->active = g_get_monotonic_time();
    c->in = g_string_sized_new(256);
    c->out = g_string_sized_new(256);
    c->in_src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(c->in_src, G_SOURCE_FUNC(client_readable), c, NULL);
    g_source_attach(c->in_src, srv->ctx);
    srv->clients = g_list_prepend(srv->clients, c);
    client_greet(c);
}

/* ---- listening -------------------------------------------------------- */

static gboolean server_accept(int fd, GIOCondition cond, gpointer data);

static void accept_arm(struct control_server *srv)
{
    srv->accept_src = g_unix_fd_source_new(srv->fd, G_IO_IN);
    g_source_set_callback(srv->accept_src, G_SOURCE_FUNC(server_accept), srv,
                          NULL);
    g_source_attach(srv->accept_src, srv->ctx);
}

static gboolean accept_resume(gpointer data)
{
    struct control_server *srv = data;

    g_source_unref(srv->accept_src); /* the timer: dispatch holds a ref */
    accept_arm(srv);
    return G_SOURCE_REMOVE;
}

/*
 * Out of fds or memory: the pending connection would wake us again at
 * once, so stop accepting for a while instead of spinning.
 */
static void accept_pause(struct control_server *srv)
{
    GSource *timer = g_timeout_source_new(ACCEPT_PAUSE_MS);

    g_source_set_callback(timer, accept_resume, srv, NULL);
    g_source_attach(timer, srv->ctx);
    g_source_unref(srv->accept_src);
    srv->accept_src = timer;
}

static bool peer_is_root(int sock)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    return getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
           cred.uid == 0;
}

/* The last CONTROL_ROOT_RESERVE places are root's. */
static bool has_room(struct control_server *srv, int sock)
{
    guint n = g_list_length(srv->clients);
    bool root = peer_is_root(sock);

    if (n < CONTROL_CLIENTS_MAX - CONTROL_ROOT_RESERVE ||
        (root && n < CONTROL_CLIENTS_MAX)) {
        return true;
    }
    g_message("control: %u clients connected already; refusing another%s", n,
              root ? "" : " (the rest is kept for root)");
    return false;
}

static gboolean server_accept(int fd, GIOCondition cond, gpointer data)
{
    struct control_server *srv = data;
    g_autoptr(GError) err = NULL;
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (c < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)) {
        return G_SOURCE_CONTINUE;
    }
    if (c < 0) {
        g_message("control: accept failed: %s; pausing for %d ms",
                  g_strerror(errno), ACCEPT_PAUSE_MS);
        accept_pause(srv);
        return G_SOURCE_REMOVE;
    }
    if (srv->policy && !peercred_allowed(c, srv->policy, &err)) {
        g_warning("control socket: %s", err->message);
        close(c);
        return G_SOURCE_CONTINUE;
    }
    if (!has_room(srv, c)) {
        close(c);
        return G_SOURCE_CONTINUE;
    }
    client_new(srv, c);
    return G_SOURCE_CONTINUE;
}

/* Drop the clients that said nothing for the idle timeout. */
static gboolean idle_sweep(gpointer data)
{
    struct control_server *srv = data;
    gint64 now = g_get_monotonic_time();
    GList *next;

    for (GList *l = srv->clients; l; l = next) {
        struct control_client *c = l->data;

        next = l->next;
        if (now - c->active >= srv->idle_ms * G_TIME_SPAN_MILLISECOND) {
            g_message("control: client silent for %u s; dropping it",
                      srv->idle_ms / 1000);
            client_free(c);
        }
    }
    return G_SOURCE_CONTINUE;
}

void control_server_set_idle_timeout(struct control_server *srv, unsigned ms)
{
    if (srv->idle_src) {
        g_source_destroy(srv->idle_src);
        g_clear_pointer(&srv->idle_src, g_source_unref);
    }
    srv->idle_ms = ms;
    if (!ms) {
        return;
    }
    /* A client goes at most a quarter of the timeout late. */
    srv->idle_src = g_timeout_source_new(MAX(ms / 4, 1));
    g_source_set_callback(srv->idle_src, idle_sweep, srv, NULL);
    g_source_attach(srv->idle_src, srv->ctx);
}

struct control_server *
control_server_new_from_fd(int listen_fd, const struct control_command *table,
                           void *opaque)
{
    struct control_server *srv = g_new0(struct control_server, 1);

    srv->ctx = g_main_context_ref_thread_default();
    srv->table = table;
    srv->opaque = opaque;
    srv->fd = listen_fd;
    g_mutex_init(&srv->lock);
    g_queue_init(&srv->events);
    accept_arm(srv);
    control_server_set_idle_timeout(srv, CONTROL_IDLE_MS);
    return srv;
}

struct control_server *control_server_new(const char *path,
                                          const struct control_command *table,
                                          void *opaque, GError **err)
{
    struct control_server *srv;
    struct stat bound;
    int fd = unix_listen(path, 0600, &bound, err);

    if (fd < 0) {
        g_prefix_error(err, "control socket: ");
        return NULL;
    }
    srv = control_server_new_from_fd(fd, table, opaque);
    srv->path = g_strdup(path);
    srv->bound = bound;
    return srv;
}

void control_server_set_policy(struct control_server *srv,
                               const struct peercred_policy *policy)
{
    srv->policy = policy;
}

/* ---- events ----------------------------------------------------------- */

static char *event_line(const char *event, JsonNode *data)
{
    gint64 now = g_get_real_time();
    g_autoptr(JsonObject) obj = json_object_new();
    JsonObject *ts = json_object_new();

    json_object_set_string_member(obj, "event", event);
    if (data) {
        json_object_set_member(obj, "data", data);
    }
    json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
    json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
    json_object_set_object_member(obj, "timestamp", ts);
    return control_json_line(obj);
}

static void broadcast(struct control_server *srv, const char *line)
{
    GList *next;

    for (GList *l = srv->clients; l; l = next) {
        next = l->next;
        if (!client_send(l->data, line)) {
            client_free(l->data);
        }
    }
}

/* In the server's context: send what the other threads queued. */
static gboolean events_flush(gpointer data)
{
    struct control_server *srv = data;
    GQueue lines = G_QUEUE_INIT;
    unsigned dropped;
    char *line;

    g_mutex_lock(&srv->lock);
    lines = srv->events;
    g_queue_init(&srv->events);
    g_clear_pointer(&srv->event_src, g_source_unref);
    dropped = srv->events_dropped;
    srv->events_dropped = 0;
    g_mutex_unlock(&srv->lock);

    if (dropped) {
        g_message("control: %u events dropped: the main loop fell behind",
                  dropped);
    }
    while ((line = g_queue_pop_head(&lines))) {
        broadcast(srv, line);
        g_free(line);
    }
    return G_SOURCE_REMOVE;
}

void control_server_emit_event(struct control_server *srv, const char *event,
                               JsonNode *data)
{
    char *line = event_line(event, data);

    g_mutex_lock(&srv->lock);
    if (srv->events.length >= EVENT_QUEUE_MAX) {
        srv->events_dropped++;
        g_free(line);
    } else {
        g_queue_push_tail(&srv->events, line);
    }
    if (!srv->event_src) {
        srv->event_src = g_idle_source_new();
        g_source_set_callback(srv->event_src, events_flush, srv, NULL);
        g_source_attach(srv->event_src, srv->ctx);
    }
    g_mutex_unlock(&srv->lock);
}

void control_server_free(struct control_server *srv)
{
    if (!srv) {
        return;
    }
    while (srv->clients) {
        client_free(srv->clients->data);
    }
    control_server_set_idle_timeout(srv, 0);
    g_source_destroy(srv->accept_src);
    g_source_unref(srv->accept_src);
    if (srv->path) {
        unix_listen_unlink(srv->path, &srv->bound);
    }
    close(srv->fd);
    g_mutex_lock(&srv->lock);
    if (srv->event_src) {
        g_source_destroy(srv->event_src);
        g_clear_pointer(&srv->event_src, g_source_unref);
    }
    g_queue_clear_full(&srv->events, g_free);
    g_mutex_unlock(&srv->lock);
    g_mutex_clear(&srv->lock);
    g_main_context_unref(srv->ctx);
    g_free(srv->path);
    g_free(srv);
}
