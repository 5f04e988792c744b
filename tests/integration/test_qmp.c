/*
 * test_qmp.c - daemon/vmm/qmp.h against a scripted fake QMP server (events
 * kept while a command waits, stale replies skipped, a socket closed
 * mid-command, deep and endless lines refused).
 */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"

#define CONNECT_MS 10000

/* ---- a fake QMP server: one client, one scripted behaviour ---- */

enum fake_script {
    FAKE_EVENTS, /* events and a stale reply before the real one */
    FAKE_CLOSE,  /* closes the socket instead of answering */
    FAKE_DEEP,   /* answers with JSON nested 10000 deep */
    FAKE_LONG,   /* answers with a line that never ends */
};

struct fake {
    char *dir;
    char *path;
    int listen_fd;
    enum fake_script script;
    GThread *thread;
};

static void write_str(int fd, const char *s)
{
    size_t len = strlen(s);

    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

        if (n <= 0) {
            return; /* the client gave up: fine for the refusal tests */
        }
        s += n;
        len -= n;
    }
}

/* The id of the next command line from the client; NULL at EOF. */
static char *read_command_id(int fd)
{
    g_autoptr(GString) line = g_string_new(NULL);
    g_autoptr(JsonParser) parser = json_parser_new();
    char c;

    while (read(fd, &c, 1) == 1 && c != '\n') {
        g_string_append_c(line, c);
    }
    if (!line->len ||
        !json_parser_load_from_data(parser, line->str, -1, NULL)) {
        return NULL;
    }
    return g_strdup(qmp_member_string(
        json_node_get_object(json_parser_get_root(parser)), "id"));
}

static void answer(int fd, const char *id)
{
    g_autofree char *reply =
        g_strdup_printf("{\"return\": {}, \"id\": \"%s\"}\r\n", id);

    write_str(fd, reply);
}

static void script_events(int fd, const char *id)
{
    write_str(fd, "{\"timestamp\": {\"seconds\": 1700000000, "
                  "\"microseconds\": 123456}, \"event\": \"STOP\"}\r\n");
    write_str(fd, "{\"return\": {}, \"id\": \"stale-1\"}\r\n");
    write_str(fd, "{\"timestamp\": {\"seconds\": 1700000001, "
                  "\"microseconds\": 5}, \"event\": \"MIGRATION\", "
                  "\"data\": {\"status\": \"active\"}}\r\n");
    answer(fd, id);
}

static void script_deep(int fd)
{
    g_autoptr(GString) s = g_string_new("{\"return\": ");

    for (int i = 0; i < 10000; i++) {
        g_string_append_c(s, '[');
    }
    for (int i = 0; i < 10000; i++) {
        g_string_append_c(s, ']');
    }
    g_string_append(s, "}\n");
    write_str(fd, s->str);
}

static void script_long(int fd)
{
    g_autofree char *chunk = g_malloc(1 << 20);

    memset(chunk, ' ', 1 << 20);
    chunk[(1 << 20) - 1] = '\0';
    write_str(fd, "{\"return\": \"");
    for (unsigned i = 0; i < QMP_LINE_MAX / (1 << 20) + 2; i++) {
        write_str(fd, chunk);
    }
}

static gpointer fake_main(gpointer opaque)
{
    struct fake *f = opaque;
    int fd = accept(f->listen_fd, NULL, NULL);
    g_autofree char *cap_id = NULL;
    g_autofree char *id = NULL;

    g_assert_cmpint(fd, >=, 0);
    write_str(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
    cap_id = read_command_id(fd);
    g_assert_nonnull(cap_id);
    answer(fd, cap_id);
    id = read_command_id(fd);
    if (id && f->script == FAKE_EVENTS) {
        script_events(fd, id);
    } else if (id && f->script == FAKE_DEEP) {
        script_deep(fd);
    } else if (id && f->script == FAKE_LONG) {
        script_long(fd);
    }
    /* Every script ends with EOF; the client must see it, not hang. */
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f, enum fake_script script)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    f->dir = g_dir_make_tmp("test_qmp-XXXXXX", NULL);
    f->path = g_build_filename(f->dir, "qmp.sock", NULL);
    f->script = script;
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_strlcpy(sa.sun_path, f->path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), ==,
                    0);
    g_assert_cmpint(listen(f->listen_fd, 1), ==, 0);
    f->thread = g_thread_new("fake-qmp", fake_main, f);
}

static void fake_stop(struct fake *f)
{
    g_thread_join(f->thread);
    close(f->listen_fd);
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

static void test_fake_events(void)
{
    struct fake f;
    g_autoptr(GError) err = NULL;
    g_autoptr(Qmp) q = NULL;
    g_autoptr(QmpEvent) ev = NULL;
    const char *const active[] = {"active", NULL};

    fake_start(&f, FAKE_EVENTS);
    q = qmp_connect(f.path, CONNECT_MS, &err);
    g_assert_no_error(err);
    g_assert_true(qmp_execute(q, "stop", NULL, NULL, &err));
    g_assert_no_error(err);
    /* Both events arrived before the reply: queued, not lost. */
    ev = qmp_wait_event(q, "MIGRATION", qmp_match_status, (void *)active, 1000,
                        &err);
    g_assert_no_error(err);
    g_assert_nonnull(ev);
    g_assert_cmpint(ev->timestamp_us, ==, 1700000001ll * G_USEC_PER_SEC + 5);
    g_assert_cmpint(qmp_last_event_us(q, "STOP"), ==,
                    1700000000ll * G_USEC_PER_SEC + 123456);
    g_clear_pointer(&ev, qmp_event_free);
    ev = qmp_wait_event(q, "STOP", NULL, NULL, 1000, &err);
    g_assert_no_error(err);
    g_assert_nonnull(ev);
    fake_stop(&f);
    g_assert_true(qmp_closed(q));
}

/* A script that fails the command; the error must say @expect. */
static void run_failing(enum fake_script script, int code, const char *expect)
{
    struct fake f;
    g_autoptr(GError) err = NULL;
    g_autoptr(Qmp) q = NULL;
    int64_t t0;

    fake_start(&f, script);
    q = qmp_connect(f.path, CONNECT_MS, &err);
    g_assert_no_error(err);
    t0 = g_get_monotonic_time();
    g_assert_false(qmp_execute(q, "query-status", NULL, NULL, &err));
    g_assert_error(err, QMP_ERROR, code);
    g_assert_nonnull(strstr(err->message, expect));
    g_assert_null(strchr(err->message, '\n'));
    /* Well within the client's timeout: no hang. */
    g_assert_cmpint(g_get_monotonic_time() - t0, <, CONNECT_MS * 500ll);
    /* The server may still be writing the endless line: hang up first. */
    g_clear_pointer(&q, qmp_free);
    fake_stop(&f);
}

static void test_fake_close(void)
{
    run_failing(FAKE_CLOSE, QMP_ERROR_CLOSED, "QEMU closed its QMP socket");
}

static void test_fake_deep(void)
{
    run_failing(FAKE_DEEP, QMP_ERROR_FAILED, "nested deeper");
}

static void test_fake_long(void)
{
    run_failing(FAKE_LONG, QMP_ERROR_FAILED, "longer than");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp/fake/events-kept", test_fake_events);
    g_test_add_func("/qmp/fake/closed-mid-command", test_fake_close);
    g_test_add_func("/qmp/fake/too-deep", test_fake_deep);
    g_test_add_func("/qmp/fake/too-long", test_fake_long);
    return g_test_run();
}
