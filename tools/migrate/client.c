/* client.c - see client.h. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <gio/gio.h>

#include "json_depth.h"
#include "jsonq.h"

struct control_conn {
    int fd;
    GString *in;
    gint64 next_id;
};

static void io_error(GError **err, int e, const char *what)
{
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                "control socket: %s: %s", what, g_strerror(e));
}

static bool send_all(struct control_conn *c, const char *buf, size_t len,
                     GError **err)
{
    while (len) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            io_error(err, errno, "send failed");
            return false;
        }
        buf += n;
        len -= n;
    }
    return true;
}

static bool fill(struct control_conn *c, GError **err)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    char buf[65536];
    ssize_t n;
    int r;

    do {
        r = poll(&pfd, 1, CONTROL_CONN_TIMEOUT_MS);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "control socket: no reply from postcopyd in %d s",
                    CONTROL_CONN_TIMEOUT_MS / 1000);
        return false;
    }
    n = r < 0 ? -1 : recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0) {
        io_error(err, errno, "receive failed");
        return false;
    }
    if (n == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "control socket: postcopyd closed the connection");
        return false;
    }
    g_string_append_len(c->in, buf, n);
    return true;
}

static char *read_line(struct control_conn *c, GError **err)
{
    char *nl, *line;

    while (!(nl = memchr(c->in->str, '\n', c->in->len))) {
        if (c->in->len > CONTROL_CONN_LINE_MAX) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                        "control socket: message from postcopyd over %u "
                        "bytes",
                        CONTROL_CONN_LINE_MAX);
            return NULL;
        }
        if (!fill(c, err)) {
            return NULL;
        }
    }
    line = g_strndup(c->in->str, nl - c->in->str);
    g_string_erase(c->in, 0, nl - c->in->str + 1);
    return line;
}

/* The next message from the daemon, as an object node. */
static JsonNode *read_message(struct control_conn *c, GError **err)
{
    g_autofree char *line = read_line(c, err);
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    JsonNode *root;

    if (!line) {
        return NULL;
    }
    /* A blank or comment-only line parses to no root at all. */
    if (!json_load_bounded(parser, line, -1, NULL) ||
        !(root = json_parser_get_root(parser)) ||
        !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "control socket: unexpected message from postcopyd: "
                    "%.80s",
                    line);
        return NULL;
    }
    return json_node_ref(root);
}

static bool do_connect(int fd, const char *path, GError **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int r;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "cannot connect to %s: path too long", path);
        return false;
    }
    strcpy(sa.sun_path, path);
    do {
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot connect to %s: %s (is postcopyd running?)", path,
                    g_strerror(errno));
        return false;
    }
    return true;
}

static bool check_greeting(struct control_conn *c, GError **err)
{
    g_autoptr(JsonNode) msg = read_message(c, err);

    if (!msg) {
        return false;
    }
    if (!json_object_has_member(json_node_get_object(msg), "postcopyd")) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "control socket: the peer is not postcopyd (bad greeting)");
        return false;
    }
    return true;
}

struct control_conn *control_conn_open(const char *path, GError **err)
{
    struct control_conn *c = g_new0(struct control_conn, 1);

    c->in = g_string_new(NULL);
    c->next_id = 1;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        io_error(err, errno, "socket() failed");
        goto fail;
    }
    if (!do_connect(c->fd, path, err) || !check_greeting(c, err)) {
        goto fail;
    }
    return c;
fail:
    control_conn_close(c);
    return NULL;
}

static char *request_line(const char *command, JsonObject *args, gint64 id)
{
    g_autoptr(JsonObject) req = json_object_new();
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_object_set_string_member(req, "execute", command);
    if (args) {
        json_object_set_object_member(req, "arguments", json_object_ref(args));
    }
    json_object_set_int_member(req, "id", id);
    node = json_node_init_object(json_node_alloc(), req);
    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

static bool is_reply_to(JsonObject *msg, gint64 id)
{
    JsonNode *n = json_object_get_member(msg, "id");

    return n && JSON_NODE_HOLDS_VALUE(n) &&
           json_node_get_value_type(n) == G_TYPE_INT64 &&
           json_node_get_int(n) == id;
}

/* Turn {"error": {"class", "desc"}} into a GError. */
static void reply_error(JsonNode *msg, GError **err)
{
    const char *cls = jsonq_string(msg, "error.class");
    const char *desc = jsonq_string(msg, "error.desc");

    g_set_error_literal(err, CONTROL_ERROR, control_error_from_class(cls),
                        desc ? desc : "malformed error reply");
}

JsonNode *control_conn_execute(struct control_conn *c, const char *command,
                               JsonObject *args, GError **err)
{
    gint64 id = c->next_id++;
    g_autofree char *line = request_line(command, args, id);

    if (!send_all(c, line, strlen(line), err)) {
        return NULL;
    }
    for (;;) {
        g_autoptr(JsonNode) msg = read_message(c, err);
        JsonObject *o;

        if (!msg) {
            return NULL;
        }
        o = json_node_get_object(msg);
        if (!is_reply_to(o, id)) {
            continue; /* an event, or a reply nobody waits for */
        }
        if (json_object_has_member(o, "return")) {
            return json_node_copy(json_object_get_member(o, "return"));
        }
        reply_error(msg, err);
        return NULL;
    }
}

void control_conn_close(struct control_conn *c)
{
    if (!c) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    g_string_free(c->in, TRUE);
    g_free(c);
}
