/*
 * test_control.c - the control socket server over a real Unix socket,
 * driven by raw clients and by the built postcopy-migrate binary.
 *
 * Each test starts a control_server on a fresh temporary socket, with a
 * table of stand-in commands (no migration engine), and runs its main
 * loop in a thread of its own, as the daemon runs it in its main thread.
 * The stand-in "query-migrate" plays a scripted migration per VM name:
 * "x" completes after a few polls, "bad" fails, "sparse" and "empty"
 * answer with missing and mistyped fields, "none" has no migration.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include "control.h"
#include "testlib.h"
#include "version.h"

#define READ_TIMEOUT_MS 10000
#define THREAD_EVENTS   50

struct fixture {
    char *dir;
    char *path;
    GMainContext *ctx;
    GMainLoop *loop;
    GThread *thread;
    struct control_server *srv;

    GMutex lock; /* what the commands saw, read by the test */
    char *last_execute;
    char *last_args; /* JSON text */
    int polls;
};

/* ---- stand-in commands (run in the server thread) ---------------------- */

static char *to_json(JsonNode *n)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();

    json_generator_set_root(gen, n);
    return json_generator_to_data(gen, NULL);
}

static void record(struct fixture *f, const char *execute, JsonObject *args)
{
    g_autoptr(JsonNode) n = json_node_init_object(json_node_alloc(), args);

    g_mutex_lock(&f->lock);
    g_free(f->last_execute);
    g_free(f->last_args);
    f->last_execute = g_strdup(execute);
    f->last_args = to_json(n);
    g_mutex_unlock(&f->lock);
}

static JsonNode *parse_json(const char *text)
{
    g_autoptr(JsonParser) p = json_parser_new();
    g_autoptr(GError) err = NULL;

    g_assert_true(json_parser_load_from_data(p, text, -1, &err));
    g_assert_no_error(err);
    return json_node_ref(json_parser_get_root(p));
}

static JsonNode *status_node(const char *status)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "status", status);
    return json_node_init_object(json_node_alloc(), o);
}

static JsonNode *cmd_migrate(void *opaque, JsonObject *args, GError **err)
{
    struct fixture *f = opaque;
    const char *vm =
        json_object_get_string_member_with_default(args, "vm", NULL);

    record(f, "migrate", args);
    if (!vm || !strcmp(vm, "missing")) {
        g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_DEVICE_NOT_FOUND,
                    "no VM named '%s'", vm ? vm : "");
        return NULL;
    }
    g_mutex_lock(&f->lock);
    f->polls = 0;
    g_mutex_unlock(&f->lock);
    control_server_emit_event(f->srv, "MIGRATION", status_node("setup"));
    return NULL;
}

static const char stats_active[] =
    "{\"status\": \"postcopy-active\", \"total-time\": 120, "
    "\"setup-time\": 3, \"expected-downtime\": 20, \"ram\": {\"total\": "
    "1073741824, \"transferred\": 536870912, \"remaining\": 536870912, "
    "\"mbps\": 8000.5, \"postcopy-requests\": 1234, \"page-size\": 4096}}";

static const char stats_completed[] =
    "{\"status\": \"completed\", \"total-time\": 1234, \"downtime\": 12, "
    "\"setup-time\": 3, \"ram\": {\"total\": 1073741824, \"transferred\": "
    "1073741824, \"remaining\": 0, \"pages\": 262144, \"zero-pages\": 100, "
    "\"mbps\": 6800, \"postcopy-requests\": 1500, \"page-size\": 4096}, "
    "\"fault-latency\": {\"p50-us\": 120, \"p99-us\": 900, \"max-us\": 2100, "
    "\"histogram\": [{\"le-us\": 100, \"count\": 700}, {\"le-us\": 1000, "
    "\"count\": 790}, {\"le-us\": 10000, \"count\": 10}]}, "
    "\"vcpu-blocktime\": [{\"tid\": 4242, \"blocked-ms\": 35, \"faults\": "
    "800}, {\"tid\": 4243, \"blocked-ms\": 20.5, \"faults\": 700}]}";

static const char stats_failed[] =
    "{\"status\": \"failed\", \"total-time\": 300, \"error-desc\": "
    "\"link down: peer reset\", \"ram\": {\"total\": 100}}";

/* Every field present with the wrong type, or absent. */
static const char stats_sparse[] =
    "{\"status\": \"completed\", \"total-time\": \"long\", \"downtime\": "
    "null, \"ram\": 5, \"fault-latency\": {\"p50-us\": \"fast\", "
    "\"histogram\": [1, {\"le-us\": \"x\"}, null]}, \"vcpu-blocktime\": "
    "[null, {\"tid\": \"a\"}, [], {\"tid\": 1}, {\"tid\": 2, "
    "\"blocked-ms\": 2}], \"error-desc\": 7}";

static const char *scripted_stats(const char *vm, int poll)
{
    if (!strcmp(vm, "bad")) {
        return poll < 2 ? stats_active : stats_failed;
    }
    if (!strcmp(vm, "sparse")) {
        return stats_sparse;
    }
    if (!strcmp(vm, "empty")) {
        return "{}";
    }
    if (!strcmp(vm, "none")) {
        return "{\"status\": \"none\"}";
    }
    return poll < 3 ? stats_active : stats_completed;
}

static JsonNode *cmd_query_migrate(void *opaque, JsonObject *args, GError **err)
{
    struct fixture *f = opaque;
    const char *vm =
        json_object_get_string_member_with_default(args, "vm", "x");
    int poll;

    g_mutex_lock(&f->lock);
    poll = ++f->polls;
    g_mutex_unlock(&f->lock);
    return parse_json(scripted_stats(vm, poll));
}

static JsonNode *cmd_record(void *opaque, JsonObject *args, GError **err)
{
    record(opaque, "other", args);
    return NULL;
}

static JsonNode *cmd_echo(void *opaque, JsonObject *args, GError **err)
{
    return json_node_init_object(json_node_alloc(), args);
}

static JsonNode *cmd_fail(void *opaque, JsonObject *args, GError **err)
{
    g_set_error(err, CONTROL_ERROR, CONTROL_ERROR_DEVICE_NOT_FOUND,
                "no such thing");
    return NULL;
}

static JsonNode *cmd_fail_other(void *opaque, JsonObject *args, GError **err)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "peer went away");
    return NULL;
}

static gpointer emitter(gpointer data)
{
    struct fixture *f = data;

    for (int i = 0; i < THREAD_EVENTS; i++) {
        JsonObject *o = json_object_new();

        json_object_set_int_member(o, "seq", i);
        control_server_emit_event(f->srv, "TICK",
                                  json_node_init_object(json_node_alloc(), o));
    }
    return NULL;
}

/* Events from an engine thread, while this thread is busy. */
static JsonNode *cmd_emit_from_thread(void *opaque, JsonObject *args,
                                      GError **err)
{
    g_thread_join(g_thread_new("emitter", emitter, opaque));
    return NULL;
}

static const struct control_command commands[] = {
    {"migrate", cmd_migrate},
    {"query-migrate", cmd_query_migrate},
    {"migrate-cancel", cmd_record},
    {"migrate-incoming", cmd_record},
    {"echo", cmd_echo},
    {"fail", cmd_fail},
    {"fail-other", cmd_fail_other},
    {"emit-from-thread", cmd_emit_from_thread},
    {NULL},
};

/* ---- fixture ----------------------------------------------------------- */

static gpointer loop_thread(gpointer data)
{
    struct fixture *f = data;

    g_main_context_push_thread_default(f->ctx);
    g_main_loop_run(f->loop);
    g_main_context_pop_thread_default(f->ctx);
    return NULL;
}

/* Run @fn(@data) in the loop thread, which owns f->ctx, and wait. */
struct in_loop {
    void (*fn)(struct fixture *f, void *data);
    struct fixture *f;
    void *data;
    GMutex lock;
    GCond cond;
    bool done;
};

static gboolean in_loop_cb(gpointer p)
{
    struct in_loop *il = p;

    il->fn(il->f, il->data);
    g_mutex_lock(&il->lock);
    il->done = true;
    g_cond_signal(&il->cond);
    g_mutex_unlock(&il->lock);
    return G_SOURCE_REMOVE;
}

static void in_loop(struct fixture *f, void (*fn)(struct fixture *, void *),
                    void *data)
{
    struct in_loop il = {.fn = fn, .f = f, .data = data};

    g_mutex_init(&il.lock);
    g_cond_init(&il.cond);
    g_main_context_invoke(f->ctx, in_loop_cb, &il);
    g_mutex_lock(&il.lock);
    while (!il.done) {
        g_cond_wait(&il.cond, &il.lock);
    }
    g_mutex_unlock(&il.lock);
    g_mutex_clear(&il.lock);
    g_cond_clear(&il.cond);
}

struct server_args {
    const char *path;
    struct control_server *srv;
    GError *err;
};

static void server_new_cb(struct fixture *f, void *data)
{
    struct server_args *a = data;

    a->srv = control_server_new(a->path, commands, f, &a->err);
}

/* A second server on f's (running) loop. */
static struct control_server *server_on(struct fixture *f, const char *path,
                                        GError **err)
{
    struct server_args a = {.path = path};

    in_loop(f, server_new_cb, &a);
    if (a.err) {
        g_propagate_error(err, a.err);
    }
    return a.srv;
}

static void server_free_cb(struct fixture *f, void *srv)
{
    control_server_free(srv);
}

static void fixture_setup(struct fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    memset(f, 0, sizeof(*f));
    g_mutex_init(&f->lock);
    f->dir = g_dir_make_tmp("test-control-XXXXXX", NULL);
    /* Not there yet: the server creates its directory. */
    f->path = g_build_filename(f->dir, "run", "control.sock", NULL);
    f->ctx = g_main_context_new();
    f->loop = g_main_loop_new(f->ctx, FALSE);
    g_main_context_push_thread_default(f->ctx);
    f->srv = control_server_new(f->path, commands, f, &err);
    g_main_context_pop_thread_default(f->ctx);
    g_assert_no_error(err);
    g_assert_nonnull(f->srv);
    f->thread = g_thread_new("control", loop_thread, f);
}

static void fixture_teardown(struct fixture *f, gconstpointer data)
{
    g_autofree char *run = g_path_get_dirname(f->path);

    g_main_loop_quit(f->loop);
    g_thread_join(f->thread);
    /* The loop has stopped: this thread may own the context now. */
    g_main_context_push_thread_default(f->ctx);
    control_server_free(f->srv);
    g_main_context_pop_thread_default(f->ctx);
    g_assert_false(g_file_test(f->path, G_FILE_TEST_EXISTS));
    g_rmdir(run);
    g_rmdir(f->dir);
    g_main_loop_unref(f->loop);
    g_main_context_unref(f->ctx);
    g_free(f->last_execute);
    g_free(f->last_args);
    g_free(f->path);
    g_free(f->dir);
    g_mutex_clear(&f->lock);
}

static char *last_call(struct fixture *f, char **args)
{
    char *execute;

    g_mutex_lock(&f->lock);
    execute = g_strdup(f->last_execute);
    *args = g_strdup(f->last_args);
    g_mutex_unlock(&f->lock);
    return execute;
}

static int polls(struct fixture *f)
{
    int n;

    g_mutex_lock(&f->lock);
    n = f->polls;
    g_mutex_unlock(&f->lock);
    return n;
}

static void reset_polls(struct fixture *f)
{
    g_mutex_lock(&f->lock);
    f->polls = 0;
    g_mutex_unlock(&f->lock);
}

/* ---- raw client -------------------------------------------------------- */

struct raw {
    int fd;
    GString *in;
};

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return fd;
}

static void raw_open_quiet(struct raw *r, const char *path)
{
    r->fd = connect_unix(path);
    r->in = g_string_new(NULL);
}

static void raw_close(struct raw *r)
{
    close(r->fd);
    g_string_free(r->in, TRUE);
}

/* The next line, or NULL at end of stream. */
static char *raw_line(struct raw *r)
{
    char *nl, *line;

    while (!(nl = memchr(r->in->str, '\n', r->in->len))) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        char buf[4096];
        ssize_t n;

        g_assert_cmpint(poll(&pfd, 1, READ_TIMEOUT_MS), ==, 1);
        n = recv(r->fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            g_assert_cmpuint(r->in->len, ==, 0);
            return NULL;
        }
        g_string_append_len(r->in, buf, n);
    }
    line = g_strndup(r->in->str, nl - r->in->str);
    g_string_erase(r->in, 0, nl - r->in->str + 1);
    return line;
}

static JsonNode *raw_next(struct raw *r)
{
    g_autofree char *line = raw_line(r);
    JsonNode *n;

    g_assert_nonnull(line);
    n = parse_json(line);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(n));
    return n;
}

static void raw_open(struct raw *r, const char *path)
{
    g_autoptr(JsonNode) greeting = NULL;

    raw_open_quiet(r, path);
    greeting = raw_next(r);
    g_assert_cmpstr(json_object_get_string_member(
                        json_object_get_object_member(
                            json_node_get_object(greeting), "postcopyd"),
                        "version"),
                    ==, POSTCOPYD_VERSION);
}

static void raw_send(struct raw *r, const void *data, size_t len)
{
    g_assert_cmpint(send(r->fd, data, len, MSG_NOSIGNAL), ==, len);
}

/* Send @request and return the next message that is not an event. */
static JsonNode *raw_cmd(struct raw *r, const char *request)
{
    raw_send(r, request, strlen(request));
    for (;;) {
        JsonNode *n = raw_next(r);

        if (!json_object_has_member(json_node_get_object(n), "event")) {
            return n;
        }
        json_node_unref(n);
    }
}

static void assert_error(JsonNode *reply, const char *cls, const char *desc)
{
    JsonObject *o = json_node_get_object(reply);
    JsonObject *e;

    g_assert_false(json_object_has_member(o, "return"));
    e = json_object_get_object_member(o, "error");
    g_assert_nonnull(e);
    g_test_message("error: %s: %s", json_object_get_string_member(e, "class"),
                   json_object_get_string_member(e, "desc"));
    g_assert_cmpstr(json_object_get_string_member(e, "class"), ==, cls);
    g_assert_nonnull(strstr(json_object_get_string_member(e, "desc"), desc));
}

static void assert_json(JsonNode *n, const char *member, const char *json)
{
    g_autoptr(JsonNode) expected = parse_json(json);
    JsonNode *got = json_object_get_member(json_node_get_object(n), member);

    g_assert_nonnull(got);
    g_assert_true(json_node_equal(got, expected));
}

/* The connection still serves a good request. */
static void assert_alive(struct raw *r)
{
    g_autoptr(JsonNode) reply =
        raw_cmd(r, "{\"execute\": \"echo\", \"arguments\": {\"ok\": 1}}\n");

    assert_json(reply, "return", "{\"ok\": 1}");
}

/* ---- protocol tests ---------------------------------------------------- */

static void test_greeting(struct fixture *f, gconstpointer data)
{
    struct raw r;

    raw_open(&r, f->path);
    assert_alive(&r);
    raw_close(&r);
}

/*
 * A QMP client's session: the greeting has QMP's "QMP" member (version,
 * no capabilities), qmp_capabilities is answered {} with the id and any
 * capability to enable is refused, query-commands lists the built-ins
 * and every command of the table.
 */
static void test_qmp_negotiation(struct fixture *f, gconstpointer data)
{
    g_autoptr(JsonNode) greeting = NULL, reply = NULL, refused = NULL;
    g_autoptr(JsonNode) cmds = NULL;
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    JsonObject *qmp;
    JsonArray *a;
    struct raw r;

    raw_open_quiet(&r, f->path);
    greeting = raw_next(&r);
    qmp = json_object_get_object_member(json_node_get_object(greeting), "QMP");
    g_assert_nonnull(qmp);
    g_assert_cmpuint(json_array_get_length(
                         json_object_get_array_member(qmp, "capabilities")),
                     ==, 0);
    g_assert_true(json_object_has_member(
        json_object_get_object_member(qmp, "version"), "qemu"));
    reply = raw_cmd(&r, "{\"execute\": \"qmp_capabilities\", \"id\": 3}\n");
    assert_json(reply, "return", "{}");
    assert_json(reply, "id", "3");
    refused = raw_cmd(&r, "{\"execute\": \"qmp_capabilities\", \"arguments\": "
                          "{\"enable\": [\"oob\"]}}\n");
    assert_error(refused, "GenericError", "Capability 'oob' not available");
    cmds = raw_cmd(&r, "{\"execute\": \"query-commands\"}\n");
    a = json_object_get_array_member(json_node_get_object(cmds), "return");
    g_assert_nonnull(a);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        g_ptr_array_add(names,
                        (char *)json_object_get_string_member(
                            json_array_get_object_element(a, i), "name"));
    }
    g_ptr_array_add(names, NULL);
    for (const struct control_command *c = commands; c->name; c++) {
        g_assert_true(
            g_strv_contains((const char *const *)names->pdata, c->name));
    }
    g_assert_true(
        g_strv_contains((const char *const *)names->pdata, "qmp_capabilities"));
    g_assert_true(
        g_strv_contains((const char *const *)names->pdata, "query-commands"));
    assert_alive(&r);
    raw_close(&r);
}

static void test_round_trip(struct fixture *f, gconstpointer data)
{
    static const char *const ids[] = {"\"abc\"", "7", "{\"a\": [1, null]}",
                                      "null"};
    g_autoptr(JsonNode) reply = NULL;
    struct raw r;

    raw_open(&r, f->path);
    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_autofree char *req = g_strdup_printf(
            "{\"execute\": \"echo\", \"arguments\": {\"vm\": \"a\", \"n\": "
            "[1, 2.5]}, \"id\": %s}\r\n",
            ids[i]);
        g_autoptr(JsonNode) rep = raw_cmd(&r, req);

        assert_json(rep, "return", "{\"vm\": \"a\", \"n\": [1, 2.5]}");
        assert_json(rep, "id", ids[i]);
    }
    /* No arguments: the handler gets {}; no return value: {}; no id. */
    reply = raw_cmd(&r, "\n  \n{\"execute\": \"echo\"}\n");
    assert_json(reply, "return", "{}");
    g_assert_false(json_object_has_member(json_node_get_object(reply), "id"));
    g_clear_pointer(&reply, json_node_unref);
    reply = raw_cmd(&r, "{\"execute\": \"migrate-cancel\", \"arguments\": "
                        "{\"vm\": \"v\"}, \"id\": 1}\n");
    assert_json(reply, "return", "{}");
    raw_close(&r);
}

static void test_error_classes(struct fixture *f, gconstpointer data)
{
    g_autoptr(JsonNode) a = NULL;
    g_autoptr(JsonNode) b = NULL;
    g_autoptr(JsonNode) c = NULL;
    struct raw r;

    raw_open(&r, f->path);
    a = raw_cmd(&r, "{\"execute\": \"fail\", \"id\": \"x1\"}\n");
    assert_error(a, "DeviceNotFound", "no such thing");
    assert_json(a, "id", "\"x1\"");
    b = raw_cmd(&r, "{\"execute\": \"fail-other\", \"id\": 2}\n");
    assert_error(b, "GenericError", "peer went away");
    assert_json(b, "id", "2");
    c = raw_cmd(&r, "{\"execute\": \"frobnicate\", \"id\": 3}\n");
    assert_error(c, "CommandNotFound", "'frobnicate'");
    assert_json(c, "id", "3");
    assert_alive(&r);
    raw_close(&r);
}

struct garbage {
    const char *bytes;
    size_t len;
    const char *cls;
    const char *desc;
};

/* Embedded NULs included. */
#define BYTES(s) s, sizeof(s) - 1

static const struct garbage garbage[] = {
    {BYTES("hello\n"), "GenericError", "not valid JSON"},
    {BYTES("{\"execute\": \n"), "GenericError", "not valid JSON"},
    {BYTES("[1, 2]\n"), "GenericError", "not a JSON object"},
    {BYTES("\"execute\"\n"), "GenericError", "not a JSON object"},
    {BYTES("42\n"), "GenericError", "not a JSON object"},
    {BYTES("{}\n"), "GenericError", "no 'execute'"},
    {BYTES("{\"arguments\": {}}\n"), "GenericError", "no 'execute'"},
    {BYTES("{\"execute\": 5}\n"), "GenericError", "must be a string"},
    {BYTES("{\"execute\": null}\n"), "GenericError", "must be a string"},
    {BYTES("{\"execute\": [\"echo\"]}\n"), "GenericError", "must be a string"},
    {BYTES("{\"execute\": \"echo\", \"arguments\": [1]}\n"), "GenericError",
     "'arguments' must be an object"},
    {BYTES("{\"execute\": \"echo\", \"arguments\": \"a\"}\n"), "GenericError",
     "'arguments' must be an object"},
    {BYTES("{\"execute\": \"echo\", \"argument\": {}}\n"), "GenericError",
     "unexpected member 'argument'"},
    {BYTES("{\"execute\": \"ec\0ho\"}\n"), "GenericError", "NUL byte"},
    {BYTES("\0\n"), "GenericError", "NUL byte"},
    {BYTES("{\"execute\": \"\xff\xfe\"}\n"), "GenericError", "UTF-8"},
    /* json-glib would echo these ids back as "2e+53.0" and "inf". */
    {BYTES("{\"execute\": \"query-status\", \"id\": 2e53}\n"), "GenericError",
     "number out of range"},
    {BYTES("{\"execute\": \"query-status\", \"id\": 1e400}\n"), "GenericError",
     "number out of range"},
    {BYTES("{\"execute\": \"\"}\n"), "CommandNotFound", "''"},
};

static void test_garbage(struct fixture *f, gconstpointer data)
{
    struct raw r;

    raw_open(&r, f->path);
    for (size_t i = 0; i < G_N_ELEMENTS(garbage); i++) {
        const struct garbage *g = &garbage[i];
        g_autoptr(JsonNode) reply = NULL;

        raw_send(&r, g->bytes, g->len);
        reply = raw_next(&r);
        assert_error(reply, g->cls, g->desc);
        assert_alive(&r);
    }
    raw_close(&r);
}

/* Several requests in one write, and one request across many writes. */
static void test_framing(struct fixture *f, gconstpointer data)
{
    const char *two = "{\"execute\":\"echo\",\"id\":1}\n"
                      "{\"execute\":\"echo\",\"id\":2}\n";
    const char *one = "{\"execute\": \"echo\", \"id\": 3}\n";
    struct raw r;

    raw_open(&r, f->path);
    raw_send(&r, two, strlen(two));
    for (int id = 1; id <= 2; id++) {
        g_autoptr(JsonNode) reply = raw_next(&r);
        g_autofree char *want = g_strdup_printf("%d", id);

        assert_json(reply, "id", want);
    }
    for (size_t i = 0; one[i]; i++) {
        raw_send(&r, &one[i], 1);
    }
    {
        g_autoptr(JsonNode) reply = raw_next(&r);

        assert_json(reply, "id", "3");
    }
    raw_close(&r);
}

/*
 * json-glib recurses once per level: 200,000 '[' (well under the line
 * limit) overflowed the server's stack.  Refused before parsing now.
 */
static void test_deep_nesting(struct fixture *f, gconstpointer data)
{
    g_autofree char *open = g_strnfill(200000, '[');
    g_autofree char *line = g_strconcat(open, "\n", NULL);
    g_autofree char *in_string =
        g_strconcat("{\"execute\": \"echo\", \"arguments\": {\"s\": \"", open,
                    "\"}}\n", NULL);
    g_autoptr(JsonNode) reply = NULL;
    g_autoptr(JsonNode) echoed = NULL;
    struct raw r;

    raw_open(&r, f->path);
    reply = raw_cmd(&r, line);
    assert_error(reply, "GenericError", "nested deeper than");
    assert_alive(&r);
    /* Brackets inside a string are no nesting. */
    echoed = raw_cmd(&r, in_string);
    g_assert_true(
        json_object_has_member(json_node_get_object(echoed), "return"));
    raw_close(&r);
}

static void set_idle_cb(struct fixture *f, void *ms)
{
    control_server_set_idle_timeout(f->srv, GPOINTER_TO_UINT(ms));
}

/* At EOF within @ms: the server hung up on @r. */
static bool raw_dropped(struct raw *r, int ms)
{
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    char buf[4096];

    while (poll(&pfd, 1, ms) == 1) {
        if (recv(r->fd, buf, sizeof(buf), 0) <= 0) {
            return true;
        }
    }
    return false;
}

/*
 * 64 clients that connect and say nothing locked everyone out: idle ones
 * are dropped now; one that speaks stays.
 */
static void test_idle_timeout(struct fixture *f, gconstpointer data)
{
    struct raw idle, busy;

    in_loop(f, set_idle_cb, GUINT_TO_POINTER(300));
    raw_open(&idle, f->path);
    raw_open(&busy, f->path);
    for (int i = 0; i < 10; i++) {
        g_usleep(100 * 1000);
        raw_send(&busy, "\n", 1); /* a blank line is enough */
    }
    g_assert_true(raw_dropped(&idle, 1000));
    assert_alive(&busy);
    raw_close(&idle);
    raw_close(&busy);
}

/*
 * A client connected as @uid: the server checks SO_PEERCRED, which the
 * kernel takes at connect(), so a child connects and hands the fd over.
 */
static int connect_as(const char *path, uid_t uid)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int sv[2], fd = -1, status;
    pid_t pid;

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl = {0};
        char byte = 0;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl.buf)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        int s;

        if (setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
            _exit(1);
        }
        s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            _exit(2);
        }
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &s, sizeof(int));
        _exit(sendmsg(sv[1], &msg, 0) == 1 ? 0 : 3);
    }
    close(sv[1]);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl.buf)};

        if (recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC) == 1 &&
            CMSG_FIRSTHDR(&msg)) {
            memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
        }
    }
    close(sv[0]);
    return fd;
}

/* Clients of other users fill the server: root still gets in. */
static void test_root_reserve(struct fixture *f, gconstpointer data)
{
    const uid_t nobody = 65534;
    struct raw others[CONTROL_CLIENTS_MAX], roots[CONTROL_ROOT_RESERVE];
    struct raw extra;
    int n = CONTROL_CLIENTS_MAX - CONTROL_ROOT_RESERVE;

    if (getuid() != 0) {
        g_test_skip("needs root: clients of another user are forked");
        return;
    }
    /* Let the other user reach the socket. */
    g_assert_cmpint(chmod(f->dir, 0711), ==, 0);
    g_assert_cmpint(chmod(f->path, 0666), ==, 0);
    for (int i = 0; i < n; i++) {
        g_autofree char *greeting = NULL;

        others[i].fd = connect_as(f->path, nobody);
        g_assert_cmpint(others[i].fd, >=, 0);
        others[i].in = g_string_new(NULL);
        greeting = raw_line(&others[i]);
        g_assert_nonnull(greeting);
    }
    extra.fd = connect_as(f->path, nobody);
    extra.in = g_string_new(NULL);
    g_assert_true(raw_dropped(&extra, 2000));
    raw_close(&extra);
    for (int i = 0; i < CONTROL_ROOT_RESERVE; i++) {
        raw_open(&roots[i], f->path);
    }
    assert_alive(&roots[0]);
    raw_open_quiet(&extra, f->path);
    g_assert_true(raw_dropped(&extra, 2000));
    raw_close(&extra);
    for (int i = 0; i < CONTROL_ROOT_RESERVE; i++) {
        raw_close(&roots[i]);
    }
    for (int i = 0; i < n; i++) {
        raw_close(&others[i]);
    }
}

static void test_huge_line(struct fixture *f, gconstpointer data)
{
    const char *head = "{\"execute\": \"echo\", \"arguments\": {\"pad\": \"";
    size_t len = CONTROL_LINE_MAX + 4096;
    g_autofree char *big = g_malloc(len);
    g_autoptr(JsonNode) reply = NULL;
    g_autofree char *eof = NULL;
    size_t sent = 0;
    struct raw r, next;

    memset(big, ' ', len);
    memcpy(big, head, strlen(head));
    raw_open(&r, f->path);
    /* The server may hang up before taking it all: that is the point. */
    while (sent < len) {
        ssize_t n = send(r.fd, big + sent, len - sent, MSG_NOSIGNAL);

        if (n <= 0) {
            break;
        }
        sent += n;
    }
    reply = raw_next(&r);
    assert_error(reply, "GenericError", "longer than");
    eof = raw_line(&r);
    g_assert_null(eof);
    raw_close(&r);

    raw_open(&next, f->path);
    assert_alive(&next);
    raw_close(&next);
}

static void test_disconnects(struct fixture *f, gconstpointer data)
{
    struct raw r;

    /* Gone before reading the greeting. */
    raw_open_quiet(&r, f->path);
    raw_close(&r);
    /* Gone in the middle of a request line. */
    raw_open(&r, f->path);
    raw_send(&r, "{\"execute\": \"ech", 16);
    raw_close(&r);
    /* Gone with a request whose reply it never reads. */
    raw_open(&r, f->path);
    raw_send(&r, "{\"execute\": \"echo\"}\n", 20);
    raw_close(&r);

    raw_open(&r, f->path);
    assert_alive(&r);
    raw_close(&r);
}

static void assert_event(JsonNode *n, const char *name)
{
    JsonObject *o = json_node_get_object(n);
    JsonObject *ts = json_object_get_object_member(o, "timestamp");

    g_assert_cmpstr(json_object_get_string_member(o, "event"), ==, name);
    g_assert_nonnull(ts);
    g_assert_cmpint(json_object_get_int_member(ts, "seconds"), >, 1600000000);
    g_assert_cmpint(json_object_get_int_member(ts, "microseconds"), >=, 0);
    g_assert_cmpint(json_object_get_int_member(ts, "microseconds"), <, 1000000);
}

static void test_events_two_clients(struct fixture *f, gconstpointer data)
{
    g_autoptr(JsonNode) reply = NULL;
    struct raw a, b;

    raw_open(&a, f->path);
    raw_open(&b, f->path);
    reply = raw_cmd(&a, "{\"execute\": \"migrate\", \"arguments\": {\"vm\": "
                        "\"x\", \"uri\": \"h:1\"}, \"id\": 1}\n");
    assert_json(reply, "return", "{}");
    for (int i = 0; i < 2; i++) {
        g_autoptr(JsonNode) ev = raw_next(i ? &b : &a);

        assert_event(ev, "MIGRATION");
        assert_json(ev, "data", "{\"status\": \"setup\"}");
    }

    /* From another thread, in order, to both. */
    g_clear_pointer(&reply, json_node_unref);
    reply = raw_cmd(&a, "{\"execute\": \"emit-from-thread\"}\n");
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < THREAD_EVENTS; i++) {
            g_autoptr(JsonNode) ev = raw_next(c ? &b : &a);
            g_autofree char *want = g_strdup_printf("{\"seq\": %d}", i);

            assert_event(ev, "TICK");
            assert_json(ev, "data", want);
        }
    }
    raw_close(&a);
    raw_close(&b);
}

/* ---- the socket file --------------------------------------------------- */

static void test_socket_file(struct fixture *f, gconstpointer data)
{
    g_autofree char *run = g_path_get_dirname(f->path);
    g_autoptr(GError) err = NULL;
    mode_t mask = umask(0);
    struct stat st;

    umask(mask);
    g_assert_cmpint(stat(f->path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(stat(run, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0755 & ~mask);

    /* A live server's socket is not taken over. */
    g_assert_null(server_on(f, f->path, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
    g_assert_nonnull(strstr(err->message, "in use"));
}

static void test_stale_socket(struct fixture *f, gconstpointer data)
{
    g_autofree char *stale = g_build_filename(f->dir, "stale.sock", NULL);
    g_autofree char *plain = g_build_filename(f->dir, "plain", NULL);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    g_autoptr(GError) err = NULL;
    struct control_server *srv;
    struct raw r;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    /* A socket file left by a dead daemon: bound, nobody listening. */
    g_strlcpy(sa.sun_path, stale, sizeof(sa.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    close(fd);
    srv = server_on(f, stale, &err);
    g_assert_no_error(err);
    g_assert_nonnull(srv);
    /* Served by f's loop thread: srv is on f->ctx too. */
    raw_open(&r, stale);
    assert_alive(&r);
    raw_close(&r);
    in_loop(f, server_free_cb, srv);
    g_assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));

    /* Not a socket: left alone. */
    g_assert_true(g_file_set_contents(plain, "keep me", -1, NULL));
    g_assert_null(server_on(f, plain, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_assert_true(g_file_test(plain, G_FILE_TEST_IS_REGULAR));
    g_unlink(plain);
}

/* ---- the postcopy-migrate binary --------------------------------------- */

struct run {
    int status;
    char *out;
    char *err;
};

static void run_clear(struct run *r)
{
    g_free(r->out);
    g_free(r->err);
}

/* Run postcopy-migrate with @args (NULL-terminated) and wait for it. */
static void run_cli_env(struct run *r, char **envp, const char *const *args)
{
    g_autofree char *bin = testlib_build_path("postcopy-migrate");
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) err = NULL;
    int wait_status;

    g_ptr_array_add(argv, bin);
    for (size_t i = 0; args[i]; i++) {
        g_ptr_array_add(argv, (char *)args[i]);
    }
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, envp,
                               G_SPAWN_DEFAULT, NULL, NULL, &r->out, &r->err,
                               &wait_status, &err));
    g_assert_no_error(err);
    g_assert_true(WIFEXITED(wait_status));
    r->status = WEXITSTATUS(wait_status);
    g_test_message("exit %d\nstdout:\n%sstderr:\n%s", r->status, r->out,
                   r->err);
}

static void run_cli(struct run *r, const char *const *args)
{
    g_auto(GStrv) env = g_environ_unsetenv(g_get_environ(), "POSTCOPYD_SOCKET");

    run_cli_env(r, env, args);
}

static void assert_last_call(struct fixture *f, const char *execute,
                             const char *args_json)
{
    g_autofree char *args = NULL;
    g_autofree char *got = last_call(f, &args);
    g_autoptr(JsonNode) want = parse_json(args_json);
    g_autoptr(JsonNode) have = NULL;

    g_assert_cmpstr(got, ==, execute);
    have = parse_json(args);
    g_assert_true(json_node_equal(have, want));
}

static void test_cli_migrate_json(struct fixture *f, gconstpointer data)
{
    const char *args[] = {"--socket", f->path, "migrate", "--vm", "x",
                          "--to",     "h:1",   "--json",  NULL};
    g_autoptr(JsonNode) result = NULL;
    struct run r;

    run_cli(&r, args);
    g_assert_cmpint(r.status, ==, 0);
    result = parse_json(r.out);
    g_assert_cmpstr(
        json_object_get_string_member(json_node_get_object(result), "status"),
        ==, "completed");
    assert_last_call(f, "migrate", "{\"vm\": \"x\", \"uri\": \"h:1\"}");
    g_assert_cmpint(polls(f), >=, 3);
    g_assert_cmpstr(r.err, ==, "");
    run_clear(&r);
}

static void test_cli_migrate_human(struct fixture *f, gconstpointer data)
{
    const char *args[] = {"migrate", "--socket", f->path,  "--vm",     "x",
                          "--to",    "[::1]",    "--mode", "postcopy", NULL};
    struct run r;

    run_cli(&r, args);
    g_assert_cmpint(r.status, ==, 0);
    assert_last_call(f, "migrate",
                     "{\"vm\": \"x\", \"uri\": \"[::1]:4444\", \"mode\": "
                     "\"postcopy\"}");
    /* Not a terminal: plain progress lines, then the summary. */
    g_assert_null(strchr(r.out, '\r'));
    g_assert_nonnull(strstr(r.out, "postcopy-active  50%  954 MiB/s  faults "
                                   "1234  ETA 0.5s\n"));
    g_assert_nonnull(strstr(r.out, "status             completed\n"));
    g_assert_nonnull(strstr(r.out, "downtime           12 ms\n"));
    g_assert_nonnull(strstr(r.out, "RAM moved          1.00 GiB of 1.00 GiB "
                                   "(262144 pages, 100 zero)\n"));
    g_assert_nonnull(strstr(r.out, "fault latency      p50 120 us, p99 900 "
                                   "us, max 2.1 ms\n"));
    g_assert_nonnull(strstr(r.out, "vCPU blocktime     tid 4242: 35 ms (800 "
                                   "faults)\n"));
    g_assert_nonnull(strstr(r.out, "\n                   tid 4243: "));
    run_clear(&r);
}

static void test_cli_migrate_failed(struct fixture *f, gconstpointer data)
{
    const char *human[] = {"--socket", f->path, "migrate", "--vm",
                           "bad",      "--to",  "h",       NULL};
    const char *json[] = {"--socket", f->path, "migrate", "--vm", "bad",
                          "--to",     "h",     "--json",  NULL};
    g_autoptr(JsonNode) result = NULL;
    struct run r;

    run_cli(&r, human);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.err, ==,
                    "postcopy-migrate: migration failed: link down: peer "
                    "reset\n");
    g_assert_nonnull(strstr(r.out, "error              link down"));
    run_clear(&r);

    run_cli(&r, json);
    g_assert_cmpint(r.status, ==, 1);
    result = parse_json(r.out);
    g_assert_cmpstr(
        json_object_get_string_member(json_node_get_object(result), "status"),
        ==, "failed");
    g_assert_true(g_str_has_prefix(r.err, "postcopy-migrate: migration "
                                          "failed: link down"));
    run_clear(&r);
}

static void test_cli_daemon_error(struct fixture *f, gconstpointer data)
{
    const char *args[] = {"--socket", f->path, "migrate", "--vm", "missing",
                          "--to",     "h",     "--json",  NULL};
    g_autoptr(JsonNode) result = NULL;
    struct run r;

    run_cli(&r, args);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.err, ==,
                    "postcopy-migrate: migrate: no VM named 'missing'\n");
    result = parse_json(r.out);
    assert_json(result, "error",
                "{\"class\": \"DeviceNotFound\", \"desc\": \"no VM named "
                "'missing'\"}");
    run_clear(&r);
}

static void test_cli_no_daemon(struct fixture *f, gconstpointer data)
{
    g_autofree char *gone = g_build_filename(f->dir, "gone.sock", NULL);
    const char *args[] = {"--socket", gone,   "migrate", "--vm",
                          "x",        "--to", "h:1",     NULL};
    const char *status[] = {"status", NULL};
    g_autofree char *want = g_strdup_printf(
        "postcopy-migrate: cannot connect to %s: No such file or directory "
        "(is postcopyd running?)\n",
        gone);
    g_auto(GStrv) env =
        g_environ_setenv(g_get_environ(), "POSTCOPYD_SOCKET", gone, TRUE);
    struct run r;

    run_cli(&r, args);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.err, ==, want);
    run_clear(&r);
    /* The socket from the environment. */
    run_cli_env(&r, env, status);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.err, ==, want);
    run_clear(&r);
}

static void test_cli_bad_usage(struct fixture *f, gconstpointer data)
{
    const char *const cases[][8] = {
        {NULL},
        {"frobnicate", NULL},
        {"--bogus", "status", NULL},
        {"migrate", NULL},
        {"migrate", "--vm", "x", NULL},
        {"migrate", "--vm", "x", "--to", "h:0", NULL},
        {"migrate", "--vm", "x", "--to", "h", "--mode", "fast", NULL},
        {"migrate", "--vm", "x", "--to", "h", "extra", NULL},
        {"status", "--watch", "--frob", NULL},
        {"incoming", NULL},
        {"cancel", "--vm", NULL},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct run r;

        run_cli(&r, cases[i]);
        g_assert_cmpint(r.status, ==, 2);
        g_assert_nonnull(strstr(r.err, "usage: postcopy-migrate"));
        g_assert_cmpstr(r.out, ==, "");
        run_clear(&r);
    }
}

static void test_cli_status(struct fixture *f, gconstpointer data)
{
    const char *sparse[] = {"--socket", f->path,  "status",
                            "--vm",     "sparse", NULL};
    const char *empty[] = {"--socket", f->path, "status",
                           "--vm",     "empty", NULL};
    const char *json[] = {"--socket", f->path,  "status", "--vm",
                          "sparse",   "--json", NULL};
    const char *watch[] = {"--socket", f->path, "status", "--watch", NULL};
    const char *none[] = {"--socket", f->path, "status", "--watch",
                          "--vm",     "none",  NULL};
    g_autoptr(JsonNode) result = NULL;
    struct run r;

    run_cli(&r, sparse); /* every field mistyped: no crash */
    g_assert_cmpint(r.status, ==, 0);
    g_assert_true(g_str_has_prefix(r.out, "status             completed\n"));
    g_assert_nonnull(strstr(r.out, "\nvCPU blocktime     tid 2: 2.0 ms\n"));
    g_assert_cmpstr(r.err, ==, "");
    run_clear(&r);

    run_cli(&r, empty);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpstr(r.out, ==, "status             unknown\n");
    run_clear(&r);

    run_cli(&r, json);
    g_assert_cmpint(r.status, ==, 0);
    result = parse_json(r.out);
    assert_json(result, "ram", "5");
    run_clear(&r);

    reset_polls(f); /* "x" has a few polls of progress to show */
    run_cli(&r, watch);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "postcopy-active "));
    g_assert_nonnull(strstr(r.out, "status             completed\n"));
    run_clear(&r);

    run_cli(&r, none);
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
}

static void test_cli_cancel_incoming(struct fixture *f, gconstpointer data)
{
    const char *cancel[] = {"cancel", "--socket", f->path, NULL};
    const char *incoming[] = {"--socket", f->path,  "incoming", "--vm",
                              "y",        "--json", NULL};
    const char *no_wait[] = {"--socket",      f->path,     "migrate",
                             "--vm",          "z",         "--to",
                             "10.1.1.1:7000", "--no-wait", NULL};
    g_autoptr(JsonNode) result = NULL;
    struct run r;

    run_cli(&r, cancel);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpstr(r.out, ==, "cancelling the migration of the VM\n");
    assert_last_call(f, "other", "{}");
    run_clear(&r);

    run_cli(&r, incoming);
    g_assert_cmpint(r.status, ==, 0);
    result = parse_json(r.out);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(result));
    assert_last_call(f, "other", "{\"vm\": \"y\"}");
    run_clear(&r);

    run_cli(&r, no_wait);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpstr(r.out, ==, "migration of z to 10.1.1.1:7000 started\n");
    g_assert_cmpint(polls(f), ==, 0);
    run_clear(&r);
}

/* A "daemon" that greets with @greeting, then hangs up. */
struct fake_daemon {
    int listen_fd;
    const char *greeting;
};

static gpointer fake_daemon_thread(gpointer data)
{
    struct fake_daemon *fd = data;
    int c = accept4(fd->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    size_t len = strlen(fd->greeting);

    if (c >= 0) {
        /* The client may hang up before reading it all. */
        for (size_t sent = 0; sent < len;) {
            ssize_t n = send(c, fd->greeting + sent, len - sent, MSG_NOSIGNAL);

            if (n <= 0) {
                break;
            }
            sent += n;
        }
        close(c);
    }
    return NULL;
}

/* The CLI parses what the daemon says with the same bound. */
static void test_cli_deep_reply(struct fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "fake.sock", NULL);
    g_autofree char *open = g_strnfill(200000, '[');
    g_autofree char *greeting =
        g_strconcat("{\"postcopyd\": ", open, "\n", NULL);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct fake_daemon fake = {.greeting = greeting};
    const char *args[] = {"--socket", path, "status", NULL};
    GThread *th;
    struct run r;

    fake.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(fake.listen_fd, (struct sockaddr *)&sa, sizeof(sa)),
                    ==, 0);
    g_assert_cmpint(listen(fake.listen_fd, 1), ==, 0);
    th = g_thread_new("fake-daemon", fake_daemon_thread, &fake);
    run_cli(&r, args);
    g_thread_join(th);
    close(fake.listen_fd);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.err, "unexpected message from postcopyd"));
    run_clear(&r);
}

#define ADD(name, fn)                                                          \
    g_test_add(name, struct fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ADD("/control/greeting", test_greeting);
    ADD("/control/qmp-negotiation", test_qmp_negotiation);
    ADD("/control/round-trip", test_round_trip);
    ADD("/control/error-classes", test_error_classes);
    ADD("/control/garbage", test_garbage);
    ADD("/control/framing", test_framing);
    ADD("/control/huge-line", test_huge_line);
    ADD("/control/deep-nesting", test_deep_nesting);
    ADD("/control/idle-timeout", test_idle_timeout);
    ADD("/control/root-reserve", test_root_reserve);
    ADD("/control/disconnects", test_disconnects);
    ADD("/control/events-two-clients", test_events_two_clients);
    ADD("/control/socket-file", test_socket_file);
    ADD("/control/stale-socket", test_stale_socket);
    ADD("/control/cli/migrate-json", test_cli_migrate_json);
    ADD("/control/cli/migrate-human", test_cli_migrate_human);
    ADD("/control/cli/migrate-failed", test_cli_migrate_failed);
    ADD("/control/cli/daemon-error", test_cli_daemon_error);
    ADD("/control/cli/no-daemon", test_cli_no_daemon);
    ADD("/control/cli/bad-usage", test_cli_bad_usage);
    ADD("/control/cli/status", test_cli_status);
    ADD("/control/cli/cancel-incoming", test_cli_cancel_incoming);
    ADD("/control/cli/deep-reply", test_cli_deep_reply);
    return g_test_run();
}
