/*
 * fuzz_control.c - libFuzzer target: request lines on the control socket
 * (daemon/control/control.h).
 *
 * The target reaches the request parsing (control_request.c) as a client
 * does, through the real server: one control_server on an abstract Unix
 * socket, run on a private GMainContext in this thread, and one connected
 * client.  Each input is written to the client as it is (any number of
 * lines, NUL bytes, bad UTF-8 ...), a newline after it, then a sync request of our
 * own; the main context runs until the sync reply is back.  The command
 * table is the fuzzer's, not the daemon's (those need a daemon): "echo"
 * returns its arguments, "fail" fails with the CONTROL_ERROR code given in
 * "code", "null" returns nothing.
 *
 * Checked beyond the sanitizers: every non-blank input line gets exactly
 * one reply, in order, each a JSON object with either "return" or an
 * "error" holding string "class" and "desc"; the server never hangs up on
 * lines shorter than CONTROL_LINE_MAX.
 */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SYNC_CMD "fuzz-sync"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static GMainContext *ctx;
static struct control_server *srv;
static struct sockaddr_un addr;
static socklen_t addr_len;
static int client = -1;
static GString *in; /* bytes from the server, not yet split into lines */
static uint64_t sync_id;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_control: %s\n", what);
    abort();
}

static JsonNode *cmd_echo(void *opaque, JsonObject *args, GError **err)
{
    return json_node_init_object(json_node_alloc(), args);
}

static JsonNode *cmd_fail(void *opaque, JsonObject *args, GError **err)
{
    JsonNode *code = json_object_get_member(args, "code");
    int c = CONTROL_ERROR_GENERIC;

    if (code && JSON_NODE_HOLDS_VALUE(code) &&
        json_node_get_value_type(code) == G_TYPE_INT64) {
        c = (int)json_node_get_int(code);
    }
    g_set_error(err, CONTROL_ERROR, c, "failing on purpose (%d)", c);
    return NULL;
}

static JsonNode *cmd_null(void *opaque, JsonObject *args, GError **err)
{
    return NULL;
}

static JsonNode *cmd_sync(void *opaque, JsonObject *args, GError **err)
{
    return json_node_init_int(json_node_alloc(), 0);
}

static const struct control_command commands[] = {
    {"echo", cmd_echo},   /* returns its arguments */
    {"fail", cmd_fail},   /* fails with the code in "code" */
    {"null", cmd_null},   /* returns NULL: {} */
    {SYNC_CMD, cmd_sync}, /* ours, after each input */
    {NULL, NULL},
};

/* Run the server until @client has something to read or @ms pass. */
static void pump(int ms)
{
    struct pollfd p = {.fd = client, .events = POLLIN};

    while (g_main_context_iteration(ctx, FALSE)) {
    }
    if (poll(&p, 1, 0) == 0) {
        poll(&p, 1, ms);
        while (g_main_context_iteration(ctx, FALSE)) {
        }
    }
}

/* Append what the server sent; false when it hung up. */
static bool drain(void)
{
    char buf[65536];

    for (;;) {
        ssize_t n = recv(client, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            g_string_append_len(in, buf, n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return true;
        }
        return false;
    }
}

/* The next whole line from the server, or NULL (g_free it). */
static char *next_line(void)
{
    char *nl = memchr(in->str, '\n', in->len);
    char *line;

    if (!nl) {
        return NULL;
    }
    line = g_strndup(in->str, nl - in->str);
    g_string_erase(in, 0, nl - in->str + 1);
    return line;
}

/* Wait for one line; false: the server hung up. */
static char *wait_line(bool *gone)
{
    int64_t deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    char *line;

    *gone = false;
    while (!(line = next_line())) {
        if (!drain()) {
            *gone = true;
            return NULL;
        }
        if (memchr(in->str, '\n', in->len)) {
            continue;
        }
        if (g_get_monotonic_time() > deadline) {
            die("no reply from the control server in 10 s");
        }
        pump(10);
    }
    return line;
}

static void connect_client(void)
{
    g_autofree char *greeting = NULL;
    bool gone;

    client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&addr, addr_len) < 0) {
        die("cannot connect to the control socket");
    }
    g_string_truncate(in, 0);
    greeting = wait_line(&gone);
    if (!greeting || !strstr(greeting, "\"postcopyd\"")) {
        die("no greeting from the control server");
    }
}

/* Write all of @buf while the server runs; false if it hung up. */
static bool send_all(const char *buf, size_t len)
{
    while (len) {
        ssize_t n = send(client, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
        if (n > 0) {
            buf += n;
            len -= n;
        }
        if (!drain()) {
            return false;
        }
        pump(len ? 10 : 0);
    }
    return true;
}

/*
 * A GLib critical (g_return_if_fail) is a programming error: crash, with
 * abort() so that libFuzzer keeps the input (GLib's own fatal path raises
 * SIGTRAP, which it does not catch).  Messages and warnings are dropped.
 */
static void log_handler(const char *domain, GLogLevelFlags level,
                        const char *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
        fprintf(stderr, "%s: %s\n", domain ? domain : "GLib", message);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    g_autoptr(JsonParser) warm = json_parser_new_immutable();
    int n;

    g_log_set_default_handler(log_handler, NULL);
    /* Abstract namespace: nothing to clean up in the file system. */
    addr.sun_family = AF_UNIX;
    n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
                 "postcopyd-fuzz-control-%d", (int)getpid());
    addr_len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, addr_len) < 0 ||
        listen(fd, 4) < 0) {
        die("cannot listen on the control socket");
    }
    ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    srv = control_server_new_from_fd(fd, commands, NULL);
    in = g_string_new(NULL);
    json_parser_load_from_data(warm, "{\"a\":[1,\"b\",null]}", -1, NULL);
    connect_client();
    return 0;
}

static bool blank(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isspace(s[i])) {
            return false;
        }
    }
    return true;
}

/* Lines the server answers: the non-blank ones ("\r\n" ends one too). */
static size_t count_requests(const uint8_t *data, size_t size)
{
    size_t n = 0, start = 0;

    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            size_t len = i - start;

            if (len && data[start + len - 1] == '\r') {
                len--;
            }
            n += !blank(data + start, len);
            start = i + 1;
        }
    }
    return n;
}

static void bad_reply(const char *why, const char *line)
{
    g_autofree char *escaped = g_strescape(line, NULL);

    fprintf(stderr, "fuzz_control: %s: %s\n", why, escaped);
    abort();
}

static bool is_string(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);

    return n && JSON_NODE_HOLDS_VALUE(n) &&
           json_node_get_value_type(n) == G_TYPE_STRING;
}

/* Is @line a reply (not an event)?  Abort when it is malformed. */
static bool check_reply(const char *line, bool *is_sync)
{
    g_autoptr(JsonParser) p = json_parser_new_immutable();
    g_autofree char *want_id =
        g_strdup_printf("sync-%" G_GUINT64_FORMAT, sync_id);
    JsonObject *o;
    JsonNode *e;

    if (!g_utf8_validate(line, -1, NULL)) {
        bad_reply("reply is not valid UTF-8", line);
    }
    if (!json_parser_load_from_data(p, line, -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
        bad_reply("reply is not a JSON object", line);
    }
    o = json_node_get_object(json_parser_get_root(p));
    if (json_object_has_member(o, "event")) {
        return false;
    }
    if (json_object_has_member(o, "return") ==
        json_object_has_member(o, "error")) {
        bad_reply("reply without either return or error", line);
    }
    e = json_object_get_member(o, "error");
    if (e && (!JSON_NODE_HOLDS_OBJECT(e) ||
              !is_string(json_node_get_object(e), "class") ||
              !is_string(json_node_get_object(e), "desc"))) {
        bad_reply("malformed error reply", line);
    }
    *is_sync = is_string(o, "id") &&
               !strcmp(json_object_get_string_member(o, "id"), want_id);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t want = count_requests(data, size), got = 0;
    g_autofree char *sync = NULL;
    bool gone = false, is_sync = false;

    sync = g_strdup_printf("\n{\"execute\": \"" SYNC_CMD "\", \"id\": "
                           "\"sync-%" G_GUINT64_FORMAT "\"}\n",
                           ++sync_id);
    if (!send_all((const char *)data, size) || !send_all(sync, strlen(sync))) {
        gone = true;
    }
    while (!gone) {
        g_autofree char *line = wait_line(&gone);

        if (!line) {
            break;
        }
        if (!check_reply(line, &is_sync)) {
            continue;
        }
        if (is_sync) {
            break;
        }
        got++;
    }
    if (gone) {
        /* Only an overlong line may cost the connection. */
        if (size <= CONTROL_LINE_MAX) {
            die("the control server hung up on a short request");
        }
        close(client);
        connect_client();
        return 0;
    }
    /* A sync request in the input has an old id: it counts as any other. */
    if (got != want) {
        fprintf(stderr, "fuzz_control: %zu replies to %zu requests\n", got,
                want);
        abort();
    }
    return 0;
}
