/* qmp.c - see qmp.h. */
#include "qmp.h"

#include "json_depth.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>

#define READ_CHUNK       (64u << 10)
#define CONNECT_RETRY_US (10 * 1000)

struct qmp {
    int fd;
    bool closed;
    unsigned timeout_ms;
    uint64_t next_id;
    GString *in;
    size_t scanned; /* bytes of @in known to hold no newline */
    struct qmp_events *events;
};

G_DEFINE_QUARK(qmp - error - quark, qmp_error)

static void set_closed(struct qmp *q, GError **err)
{
    q->closed = true;
    g_set_error(err, QMP_ERROR, QMP_ERROR_CLOSED, "QEMU closed its QMP socket");
}

/* Milliseconds left until @deadline (monotonic us); 0 when past. */
static int ms_left(int64_t deadline)
{
    int64_t left = deadline - g_get_monotonic_time();

    return left <= 0 ? 0 : (int)((left + 999) / 1000);
}

/* Read what the socket holds now into q->in; false only on error / EOF. */
static bool read_available(struct qmp *q, GError **err)
{
    char buf[READ_CHUNK];

    for (;;) {
        ssize_t n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            g_string_append_len(q->in, buf, n);
            if (q->in->len > QMP_LINE_MAX) {
                return true; /* next_line() refuses it */
            }
            continue;
        }
        if (n == 0) {
            set_closed(q, err);
            return false;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return true;
        }
        if (errno == ECONNRESET) {
            set_closed(q, err);
            return false;
        }
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "reading the QMP socket: %s", g_strerror(errno));
        return false;
    }
}

static JsonObject *parse_line(const char *line, size_t len, GError **err)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    JsonNode *root;

    /* Bounded: json-glib recurses once per level (json_depth.h). */
    if (!json_load_bounded(parser, line, len, &local)) {
        g_autofree char *why = qmp_printable(local->message);

        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "QEMU sent a line that is not JSON: %s", why);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "QEMU sent a line that is not a JSON object");
        return NULL;
    }
    return json_object_ref(json_node_get_object(root));
}

/*
 * The next complete line of q->in, parsed; NULL without an error when no
 * complete line is buffered.
 */
static JsonObject *next_line(struct qmp *q, GError **err)
{
    char *nl = memchr(q->in->str + q->scanned, '\n', q->in->len - q->scanned);
    JsonObject *obj;
    size_t len;

    if (!nl) {
        q->scanned = q->in->len;
        if (q->in->len > QMP_LINE_MAX) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "QEMU sent a line longer than %u bytes", QMP_LINE_MAX);
        }
        return NULL;
    }
    len = nl - q->in->str;
    if (len > QMP_LINE_MAX) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "QEMU sent a line longer than %u bytes", QMP_LINE_MAX);
        return NULL;
    }
    obj = parse_line(q->in->str, len, err);
    g_string_erase(q->in, 0, len + 1);
    q->scanned = 0;
    return obj;
}

/*
 * json-glib's typed getters warn (g_critical) on a member of another
 * type: what QEMU sends is checked before it is read.
 */
JsonObject *qmp_member_object(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;

    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

const char *qmp_member_string(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}

static int64_t member_int(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64) {
        return 0;
    }
    return json_node_get_int(n);
}

static int64_t event_timestamp(JsonObject *msg)
{
    JsonObject *ts = qmp_member_object(msg, "timestamp");

    return member_int(ts, "seconds") * G_USEC_PER_SEC +
           member_int(ts, "microseconds");
}

static void queue_event(struct qmp *q, JsonObject *msg)
{
    struct qmp_event *ev = g_new0(struct qmp_event, 1);
    JsonNode *data = json_object_get_member(msg, "data");

    ev->name = g_strdup(qmp_member_string(msg, "event"));
    ev->timestamp_us = event_timestamp(msg);
    if (data && JSON_NODE_HOLDS_OBJECT(data)) {
        ev->data = json_object_ref(json_node_get_object(data));
    }
    qmp_events_push(q->events, ev);
}

static bool is_event(JsonObject *msg)
{
    return qmp_member_string(msg, "event") != NULL;
}

/*
 * The next message that is not an event, reading until @deadline
 * (monotonic us; 0: only what is already there, NULL and no error if
 * nothing).  Events met on the way are queued.
 */
static JsonObject *read_reply(struct qmp *q, int64_t deadline, GError **err)
{
    for (;;) {
        GError *local = NULL;
        JsonObject *msg = next_line(q, &local);
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        int r;

        if (local) {
            g_propagate_error(err, local);
            return NULL;
        }
        if (msg && is_event(msg)) {
            queue_event(q, msg);
            json_object_unref(msg);
            continue;
        }
        if (msg) {
            return msg;
        }
        if (q->closed) {
            set_closed(q, err);
            return NULL;
        }
        r = poll(&p, 1, deadline ? ms_left(deadline) : 0);
        if (r < 0 && errno != EINTR) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "polling the QMP socket: %s", g_strerror(errno));
            return NULL;
        }
        if (r == 0 && (!deadline || ms_left(deadline) == 0)) {
            if (deadline) {
                g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                            "QEMU did not answer on QMP in time");
            }
            return NULL;
        }
        if (r > 0 && !read_available(q, err)) {
            /* Lines that came before the EOF still count. */
            if (q->closed && memchr(q->in->str, '\n', q->in->len)) {
                g_clear_error(err);
                continue;
            }
            return NULL;
        }
    }
}

static bool send_all(struct qmp *q, const char *buf, size_t len, int fd,
                     int64_t deadline, GError **err)
{
    while (len) {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        struct pollfd p = {.fd = q->fd, .events = POLLOUT};
        ssize_t n;

        if (fd >= 0) {
            struct cmsghdr *c;

            memset(&ctl, 0, sizeof(ctl));
            msg.msg_control = ctl.buf;
            msg.msg_controllen = sizeof(ctl.buf);
            c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        n = sendmsg(q->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= n;
            fd = -1; /* the fd went with the first byte */
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET) {
            set_closed(q, err);
            return false;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "writing the QMP socket: %s", g_strerror(errno));
            return false;
        }
        if (poll(&p, 1, ms_left(deadline)) == 0) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                        "QEMU did not read its QMP socket in time");
            return false;
        }
    }
    return true;
}

static char *command_line(const char *cmd, JsonObject *args, const char *id)
{
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_object_set_string_member(obj, "execute", cmd);
    if (args) {
        json_object_set_object_member(obj, "arguments", json_object_ref(args));
    }
    json_object_set_string_member(obj, "id", id);
    node = json_node_init_object(json_node_alloc(), obj);
    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

/* QEMU's desc on one line: the GError goes into logs and replies. */
char *qmp_printable(const char *s)
{
    g_autofree char *valid = g_utf8_make_valid(s, -1);

    return g_strescape(valid, NULL);
}

static void set_command_error(const char *cmd, JsonObject *reply, GError **err)
{
    const char *desc =
        qmp_member_string(qmp_member_object(reply, "error"), "desc");
    g_autofree char *line = qmp_printable(desc ? desc : "no description");

    g_set_error(err, QMP_ERROR, QMP_ERROR_COMMAND, "%s: %s", cmd, line);
}

/* Whether @reply answers the command with @id. */
static bool reply_matches(JsonObject *reply, const char *id)
{
    const char *got = qmp_member_string(reply, "id");

    /* QEMU answers a line it could not parse without an id. */
    if (!json_object_has_member(reply, "id")) {
        return true;
    }
    return got && strcmp(got, id) == 0;
}

bool qmp_take_reply(const char *cmd, JsonObject *reply, JsonNode **ret,
                    GError **err)
{
    JsonNode *r = json_object_get_member(reply, "return");

    if (json_object_has_member(reply, "error")) {
        set_command_error(cmd, reply, err);
        return false;
    }
    if (!r) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "%s: QEMU's reply has neither return nor error", cmd);
        return false;
    }
    if (ret) {
        *ret = json_node_copy(r);
    }
    return true;
}

bool qmp_execute_with_fd(struct qmp *q, const char *cmd, JsonObject *args,
                         int fd, JsonNode **ret, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + q->timeout_ms * 1000ll;
    g_autofree char *id =
        g_strdup_printf("postcopyd-%" G_GUINT64_FORMAT, q->next_id++);
    g_autofree char *line = command_line(cmd, args, id);

    if (ret) {
        *ret = NULL;
    }
    if (q->closed) {
        set_closed(q, err);
        return false;
    }
    if (!send_all(q, line, strlen(line), fd, deadline, err)) {
        return false;
    }
    for (;;) {
        g_autoptr(JsonObject) reply = read_reply(q, deadline, err);

        if (!reply) {
            return false;
        }
        /* A reply to a command that timed out earlier: not ours. */
        if (reply_matches(reply, id)) {
            return qmp_take_reply(cmd, reply, ret, err);
        }
    }
}

bool qmp_execute(struct qmp *q, const char *cmd, JsonObject *args,
                 JsonNode **ret, GError **err)
{
    return qmp_execute_with_fd(q, cmd, args, -1, ret, err);
}

bool qmp_pump(struct qmp *q, GError **err)
{
    GError *local = NULL;

    /* Replies read here answer no pending command: drop them. */
    for (;;) {
        g_autoptr(JsonObject) msg = read_reply(q, 0, &local);

        if (local) {
            g_propagate_error(err, local);
            return false;
        }
        if (!msg) {
            return true;
        }
    }
}

struct qmp_event *qmp_take_event(struct qmp *q, const char *name,
                                 qmp_event_match match, void *opaque,
                                 GError **err)
{
    struct qmp_event *ev = qmp_events_take(q->events, name, match, opaque);

    if (ev || !qmp_pump(q, err)) {
        return ev;
    }
    return qmp_events_take(q->events, name, match, opaque);
}

struct qmp_event *qmp_wait_event(struct qmp *q, const char *name,
                                 qmp_event_match match, void *opaque,
                                 unsigned timeout_ms, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000ll;

    for (;;) {
        GError *local = NULL;
        struct qmp_event *ev = qmp_take_event(q, name, match, opaque, &local);
        struct pollfd p = {.fd = q->fd, .events = POLLIN};

        if (local) {
            g_propagate_error(err, local);
            return NULL;
        }
        if (ev) {
            return ev;
        }
        if (q->closed) {
            set_closed(q, err);
            return NULL;
        }
        if (poll(&p, 1, ms_left(deadline)) == 0 && ms_left(deadline) == 0) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_TIMEOUT,
                        "no %s event from QEMU in %u ms", name, timeout_ms);
            return NULL;
        }
    }
}

bool qmp_closed(struct qmp *q)
{
    if (!q->closed) {
        qmp_pump(q, NULL);
    }
    return q->closed;
}

int64_t qmp_last_event_us(struct qmp *q, const char *name)
{
    return qmp_events_last_us(q->events, name);
}

void qmp_set_timeout(struct qmp *q, unsigned timeout_ms)
{
    q->timeout_ms = timeout_ms;
}

int qmp_get_fd(struct qmp *q)
{
    return q->fd;
}

/* Connect, retrying while QEMU has not created or listened on @path. */
static int connect_unix(const char *path, int64_t deadline, GError **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "QMP socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int e;

        if (fd < 0) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED, "socket: %s",
                        g_strerror(errno));
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return fd;
        }
        e = errno;
        close(fd);
        if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) ||
            ms_left(deadline) == 0) {
            g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                        "connecting to QMP socket %s: %s", path, g_strerror(e));
            return -1;
        }
        g_usleep(CONNECT_RETRY_US);
    }
}

static bool handshake(struct qmp *q, int64_t deadline, GError **err)
{
    g_autoptr(JsonObject) greeting = read_reply(q, deadline, err);

    if (!greeting) {
        return false;
    }
    if (!json_object_has_member(greeting, "QMP")) {
        g_set_error(err, QMP_ERROR, QMP_ERROR_FAILED,
                    "the socket did not greet like QMP");
        return false;
    }
    return qmp_execute(q, "qmp_capabilities", NULL, NULL, err);
}

static struct qmp *qmp_new(int fd, unsigned timeout_ms)
{
    struct qmp *q = g_new0(struct qmp, 1);

    q->fd = fd;
    q->timeout_ms = timeout_ms;
    q->in = g_string_new(NULL);
    q->events = qmp_events_new();
    return q;
}

struct qmp *qmp_connect(const char *path, unsigned timeout_ms, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000ll;
    g_autoptr(Qmp) q = qmp_new(connect_unix(path, deadline, err), timeout_ms);

    if (q->fd < 0 || !handshake(q, deadline, err)) {
        g_prefix_error(err, "QMP %s: ", path);
        return NULL;
    }
    return g_steal_pointer(&q);
}

struct qmp *qmp_new_from_fd(int fd, unsigned timeout_ms, GError **err)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000ll;
    g_autoptr(Qmp) q = qmp_new(fd, timeout_ms);

    if (!g_unix_set_fd_nonblocking(fd, TRUE, err)) {
        g_prefix_error(err, "QMP: ");
        return NULL;
    }
    if (!handshake(q, deadline, err)) {
        return NULL;
    }
    return g_steal_pointer(&q);
}

void qmp_free(struct qmp *q)
{
    if (!q) {
        return;
    }
    if (q->fd >= 0) {
        close(q->fd);
    }
    g_string_free(q->in, TRUE);
    qmp_events_free(q->events);
    g_free(q);
}
