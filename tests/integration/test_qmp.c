/*
 * test_qmp.c - daemon/vmm/qmp.h against a scripted fake QMP server (events
 * kept while a command waits, stale replies skipped, a socket closed
 * mid-command, deep and endless lines refused), and qmp_driver.h against
 * real QEMUs (TCG, no guest kernel): prepare, pause, resume with the
 * device state, resume of the source, quit, and the refusals.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "qmp.h"
#include "qmp_driver.h"

#define QEMU        "qemu-system-x86_64"
#define CONNECT_MS  10000
#define GUEST_BYTES (64ull << 20)

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

/* ---- real QEMUs ---- */

struct qemu {
    char *dir;
    char *sock;
    GPid pid;
    struct vmm_driver *drv;
};

static bool have_qemu(void)
{
    g_autofree char *p = g_find_program_in_path(QEMU);

    if (!p) {
        g_test_skip(QEMU " is not installed");
    }
    return p != NULL;
}

/* Small and short-lived: 64 MiB, no disks, sits in firmware. */
static void qemu_start(struct qemu *vm, bool backend, bool incoming)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    const char *base[] = {QEMU,   "-accel",      "tcg",      "-machine",
                          "pc",   "-nodefaults", "-display", "none",
                          "-vga", "none",        "-m",       "64"};
    struct qmp *q;

    vm->dir = g_dir_make_tmp("test_qmp-XXXXXX", NULL);
    vm->sock = g_build_filename(vm->dir, "qmp.sock", NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(base); i++) {
        g_ptr_array_add(argv, g_strdup(base[i]));
    }
    if (backend) {
        g_ptr_array_add(argv, g_strdup("-object"));
        g_ptr_array_add(argv, g_strdup("memory-backend-memfd,id=ram0,"
                                       "size=64M,share=on"));
        g_ptr_array_add(argv, g_strdup("-machine"));
        g_ptr_array_add(argv, g_strdup("memory-backend=ram0"));
    }
    if (incoming) {
        g_ptr_array_add(argv, g_strdup("-incoming"));
        g_ptr_array_add(argv, g_strdup("defer"));
    }
    g_ptr_array_add(argv, g_strdup("-qmp"));
    g_ptr_array_add(argv,
                    g_strdup_printf("unix:%s,server=on,wait=off", vm->sock));
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_async(NULL, (char **)argv->pdata, NULL,
                                G_SPAWN_SEARCH_PATH |
                                    G_SPAWN_DO_NOT_REAP_CHILD |
                                    G_SPAWN_STDOUT_TO_DEV_NULL,
                                NULL, NULL, &vm->pid, &err));
    q = qmp_connect(vm->sock, CONNECT_MS, &err);
    g_assert_no_error(err);
    vm->drv =
        qmp_driver_new(qmp_channel_socket_new(q, vm->pid), vm->pid, incoming);
}

/* Whether the process exited within @ms (and reap it). */
static bool qemu_exited(struct qemu *vm, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (waitpid(vm->pid, NULL, WNOHANG) == vm->pid) {
            vm->pid = 0;
            return true;
        }
        g_usleep(10 * 1000);
    }
    return false;
}

static void qemu_stop(struct qemu *vm)
{
    vmm_driver_free(vm->drv);
    if (vm->pid > 0) {
        kill(vm->pid, SIGKILL);
        waitpid(vm->pid, NULL, 0);
    }
    g_unlink(vm->sock);
    g_rmdir(vm->dir);
    g_free(vm->sock);
    g_free(vm->dir);
}

static void prepare_shared(struct qemu *vm)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) memdevs = NULL;
    struct qmp_memdev *m;

    g_assert_true(qmp_driver_prepare(vm->drv, &memdevs, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(memdevs->len, ==, 1);
    m = memdevs->pdata[0];
    g_assert_cmpstr(m->id, ==, "ram0");
    g_assert_cmpuint(m->size, ==, GUEST_BYTES);
    g_assert_true(m->share);
}

/* QEMU's memfd, opened through its mapping (what postcopyd reaches). */
static int open_guest_ram(GPid pid)
{
    g_autofree char *maps_path = g_strdup_printf("/proc/%d/maps", pid);
    g_autofree char *maps = NULL;
    g_auto(GStrv) lines = NULL;

    g_assert_true(g_file_get_contents(maps_path, &maps, NULL, NULL));
    lines = g_strsplit(maps, "\n", -1);
    for (char **l = lines; *l; l++) {
        g_autofree char *path = NULL;
        char *sp = strchr(*l, ' ');

        if (!sp || !strstr(*l, "memory-backend-memfd")) {
            continue;
        }
        *sp = '\0';
        path = g_strdup_printf("/proc/%d/map_files/%s", pid, *l);
        return open(path, O_RDWR | O_CLOEXEC);
    }
    return -1;
}

/* The test plays postcopyd: the paused source's RAM into the destination. */
static bool copy_guest_ram(GPid from, GPid to)
{
    int in = open_guest_ram(from), out = open_guest_ram(to);
    g_autofree char *buf = g_malloc(1 << 20);
    bool ok = in >= 0 && out >= 0;

    for (off_t off = 0; ok && off < (off_t)GUEST_BYTES; off += 1 << 20) {
        ok = pread(in, buf, 1 << 20, off) == 1 << 20 &&
             pwrite(out, buf, 1 << 20, off) == 1 << 20;
    }
    if (in >= 0) {
        close(in);
    }
    if (out >= 0) {
        close(out);
    }
    return ok;
}

static void quit_and_check(struct qemu *vm)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vmm_driver_quit(vm->drv, &err));
    g_assert_no_error(err);
    g_assert_true(qemu_exited(vm, 5000));
    g_assert_true(vmm_driver_gone(vm->drv));
}

static void test_qemu_migrate(void)
{
    struct qemu src = {0}, dst = {0};
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *state = NULL;
    struct qmp_driver_times ts, td;
    size_t len = 0;

    if (!have_qemu()) {
        return;
    }
    qemu_start(&src, true, false);
    qemu_start(&dst, true, true);
    g_assert_true(dst.drv->discard_incoming_ram);
    g_assert_false(src.drv->discard_incoming_ram);
    g_assert_true(src.drv->quit_when_moved);
    prepare_shared(&src);
    prepare_shared(&dst);
    g_assert_false(vmm_driver_gone(src.drv));

    g_assert_true(vmm_driver_pause(src.drv, &state, &len, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(len, >, 0);
    if (!copy_guest_ram(src.pid, dst.pid)) {
        g_test_skip("cannot open QEMU's memfd through /proc/PID/map_files");
        qemu_stop(&src);
        qemu_stop(&dst);
        return;
    }
    g_assert_true(vmm_driver_resume(dst.drv, state, len, &err));
    g_assert_no_error(err);

    qmp_driver_get_times(src.drv, &ts);
    qmp_driver_get_times(dst.drv, &td);
    g_assert_cmpint(ts.stop_event_us, >, 0);
    g_assert_cmpint(td.resume_event_us, >, ts.stop_event_us);
    g_test_message("state %zu bytes, pause %.1f ms, resume %.1f ms, "
                   "RESUME - STOP (QEMU's clocks) %.1f ms",
                   len, ts.pause_us / 1e3, td.resume_us / 1e3,
                   (td.resume_event_us - ts.stop_event_us) / 1e3);

    /* The failure-before-switchover path: the source runs again. */
    g_assert_true(vmm_driver_resume(src.drv, NULL, 0, &err));
    g_assert_no_error(err);
    qmp_driver_get_times(src.drv, &ts);
    g_assert_cmpint(ts.resume_event_us, >, ts.stop_event_us);

    quit_and_check(&src);
    quit_and_check(&dst);
    qemu_stop(&src);
    qemu_stop(&dst);
}

static void test_qemu_refusals(void)
{
    struct qemu vm = {0};
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) memdevs = NULL;

    if (!have_qemu()) {
        return;
    }
    qemu_start(&vm, false, false);
    g_assert_false(qmp_driver_prepare(vm.drv, &memdevs, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "memory-backend-memfd,id=ram0"));
    g_assert_null(strchr(err->message, '\n'));
    g_assert_null(memdevs);
    g_test_message("plain -m: %s", err->message);
    g_clear_error(&err);

    /* QEMU serves one QMP client per socket: ask through the driver's. */
    g_assert_false(
        qmp_driver_execute(vm.drv, "no-such-command", NULL, NULL, &err));
    g_assert_error(err, QMP_ERROR, QMP_ERROR_COMMAND);
    g_assert_nonnull(strstr(err->message, "has not been found"));
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("unknown command: %s", err->message);
    quit_and_check(&vm);
    qemu_stop(&vm);
}

/* A stream QEMU cannot load: an error, not a hang, and QEMU exits. */
static void test_qemu_bad_state(void)
{
    static const uint8_t garbage[] = "this is not a migration stream";
    struct qemu vm = {0};
    g_autoptr(GError) err = NULL;

    if (!have_qemu()) {
        return;
    }
    qemu_start(&vm, true, true);
    prepare_shared(&vm);
    g_assert_false(vmm_driver_resume(vm.drv, garbage, sizeof(garbage), &err));
    g_assert_nonnull(err);
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("garbage state: %s", err->message);
    g_assert_true(qemu_exited(&vm, 5000));
    g_assert_true(vmm_driver_gone(vm.drv));
    qemu_stop(&vm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp/fake/events-kept", test_fake_events);
    g_test_add_func("/qmp/fake/closed-mid-command", test_fake_close);
    g_test_add_func("/qmp/fake/too-deep", test_fake_deep);
    g_test_add_func("/qmp/fake/too-long", test_fake_long);
    g_test_add_func("/qmp/qemu/migrate", test_qemu_migrate);
    g_test_add_func("/qmp/qemu/refusals", test_qemu_refusals);
    g_test_add_func("/qmp/qemu/bad-state", test_qemu_bad_state);
    return g_test_run();
}
