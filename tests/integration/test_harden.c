/*
 * test_harden.c - the real postcopyd against the holes of issue 13 ("never
 * lose the VM, part 2"): input built to crash it, exhaust it or hold it,
 * from its control socket, its attach socket and its peer port.
 *
 * One daemon serves every scenario; each ends by checking that it still
 * runs and answers its control socket.  Assertions are non-fatal: one
 * scenario that finds a bug does not hide what the others find.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include "attach.h"
#include "daemon_proc.h"
#include "frame.h"
#include "testlib.h"
#include "uffd.h"

#define LOG_MS   5000 /* a refusal the daemon logs at once */
#define CLOSE_MS 2000 /* hanging up on a connection it refused */
/* As daemon.c: peer connections in their handshake, per source and in all. */
#define PREAUTH_PER_SOURCE_MAX 32
#define PREAUTH_MAX            128
/* As daemon.c: a peer's whole handshake, from accept, and each frame. */
#define HANDSHAKE_MS 10000

static struct {
    char *skip;   /* why nothing can run here (the kernel said no) */
    char *broken; /* why the daemon did not start */
    struct daemon_proc d;
} fx;

static bool ready(void)
{
    if (fx.skip) {
        g_test_skip(fx.skip);
        return false;
    }
    if (fx.broken) {
        g_test_fail_printf("%s", fx.broken);
        return false;
    }
    if (!daemon_proc_alive(&fx.d)) {
        g_test_fail_printf("postcopyd is dead");
        return false;
    }
    return true;
}

/* A log line holding @a and @b (if set), within LOG_MS. */
static void assert_log(const char *a, const char *b)
{
    const char *needles[] = {a, b ? b : "", NULL};
    g_autofree char *line = daemon_proc_wait_line(&fx.d, needles, LOG_MS);

    if (!line) {
        g_test_message("no log line with '%s' '%s'", a, b ? b : "");
    } else {
        g_test_message("daemon: %s", line);
    }
    g_assert_nonnull(line);
}

static JsonObject *execute(const char *cmd, const char *args)
{
    g_autofree char *why = NULL;
    JsonObject *r = daemon_proc_execute(&fx.d, cmd, args, &why);

    if (!r) {
        g_test_message("%s: %s", cmd, why);
    }
    return r;
}

/* Alive, and answering its control socket. */
static void assert_serving(void)
{
    g_autoptr(JsonObject) q = NULL;

    g_assert_true(daemon_proc_alive(&fx.d));
    if (!daemon_proc_alive(&fx.d)) {
        return;
    }
    q = execute("query-vms", NULL);
    g_assert_true(q && json_object_has_member(q, "return"));
}

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        g_test_message("connecting to %s: %s", path, g_strerror(errno));
        close(fd);
        fd = -1;
    }
    g_assert_cmpint(fd, >=, 0);
    return fd;
}

/* @len bytes with @nfds fds on the first of them. */
static bool send_with_fds(int sock, const void *buf, size_t len, const int *fds,
                          size_t nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } ctl = {0};
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;

    g_assert_cmpuint(nfds, <=, 8);
    if (nfds) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len;
}

/* ---- 1. deep JSON nesting ---- */

/* 80,000 '[' overflowed json-glib's recursion: SIGSEGV. */
static void test_deep_json_control(void)
{
    g_autofree char *line = g_strnfill(200000, '[');
    g_autofree char *why = NULL;
    g_autoptr(JsonObject) r = NULL;

    if (!ready()) {
        return;
    }
    r = daemon_proc_request(&fx.d, line, &why);
    if (!r) {
        g_test_message("%s", why);
    }
    g_assert_nonnull(r);
    if (r) {
        JsonObject *e = json_object_get_object_member(r, "error");

        g_assert_nonnull(e);
        g_assert_nonnull(
            strstr(json_object_get_string_member_with_default(e, "desc", ""),
                   "nested deeper than"));
    }
    assert_serving();
}

/* The Firecracker form of the attach hello is JSON too. */
static void test_deep_json_attach(void)
{
    g_autofree char *open = g_strnfill(30000, '[');
    g_autofree char *close_ = g_strnfill(30000, ']');
    g_autofree char *json = g_strconcat(open, close_, NULL);
    g_autoptr(GError) err = NULL;
    int uffd, sock;

    if (!ready()) {
        return;
    }
    uffd = uffd_open(&err);
    g_assert_no_error(err);
    sock = connect_unix(fx.d.attach_path);
    g_assert_true(send_with_fds(sock, json, strlen(json), &uffd, 1));
    assert_log("Firecracker", "nested deeper than");
    close(sock);
    close(uffd);
    assert_serving();
}

/* ---- 2. connections before authentication ---- */

static int peer_port(struct daemon_proc *dp)
{
    return atoi(strrchr(dp->address, ':') + 1);
}

/* A TCP connection to @dp's peer port from 127.0.0.@host; -1 if none. */
static int connect_from(struct daemon_proc *dp, int host)
{
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000000 | host)};
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons(peer_port(dp)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 && (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
                    connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0)) {
        g_test_message("connect from 127.0.0.%d: %s", host, g_strerror(errno));
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Did the daemon hang up on @fd within @ms? */
static bool hung_up(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;

    return poll(&p, 1, ms) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void close_all(GArray *fds)
{
    for (guint i = 0; i < fds->len; i++) {
        close(g_array_index(fds, int, i));
    }
    g_array_set_size(fds, 0);
}

/*
 * Connections that say nothing each held a thread until the hello
 * timeout, without bound: now a source gets PREAUTH_PER_SOURCE_MAX and
 * all sources PREAUTH_MAX, and the next one is closed at once.
 */
static void test_preauth_cap(void)
{
    g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(int));
    int fd;

    if (!ready()) {
        return;
    }
    for (int i = 0; i < PREAUTH_PER_SOURCE_MAX; i++) {
        fd = connect_from(&fx.d, 1);
        g_assert_cmpint(fd, >=, 0);
        g_array_append_val(fds, fd);
    }
    fd = connect_from(&fx.d, 1);
    g_assert_true(hung_up(fd, CLOSE_MS));
    close(fd);
    assert_log("127.0.0.1", "too many connections from 127.0.0.1");
    /* Other sources still get in, up to the total. */
    for (int i = 0; i < PREAUTH_MAX - PREAUTH_PER_SOURCE_MAX; i++) {
        fd = connect_from(&fx.d, 2 + i / PREAUTH_PER_SOURCE_MAX);
        g_assert_cmpint(fd, >=, 0);
        g_array_append_val(fds, fd);
    }
    fd = connect_from(&fx.d, 100);
    g_assert_true(hung_up(fd, CLOSE_MS));
    close(fd);
    assert_log("127.0.0.100", "too many connections in their handshake");
    /* The first of them was never refused. */
    g_assert_false(hung_up(g_array_index(fds, int, 0), 0));
    close_all(fds);
    assert_serving();
}

/* In place: cgroupfs takes no temporary file renamed over its files. */
static bool write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);

    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* The pids cgroup the daemon under test runs in; NULL: skip, with @why. */
static char *pids_cgroup_new(GPid pid, char **why)
{
    g_autofree char *tmpl =
        g_strdup_printf("/sys/fs/cgroup/pids/postcopyd-test-%d", getpid());
    g_autofree char *procs = NULL;
    g_autofree char *text = g_strdup_printf("%d\n", pid);

    if (!g_file_test("/sys/fs/cgroup/pids", G_FILE_TEST_IS_DIR)) {
        *why = g_strdup("no cgroup v1 pids controller here");
        return NULL;
    }
    if (g_mkdir(tmpl, 0755) < 0 && errno != EEXIST) {
        *why = g_strdup_printf("mkdir %s: %s", tmpl, g_strerror(errno));
        return NULL;
    }
    procs = g_build_filename(tmpl, "cgroup.procs", NULL);
    if (!write_file(procs, text)) {
        *why = g_strdup_printf("cannot move postcopyd into %s", tmpl);
        g_rmdir(tmpl);
        return NULL;
    }
    return g_steal_pointer(&tmpl);
}

static bool cgroup_write(const char *cg, const char *file, const char *value)
{
    g_autofree char *path = g_build_filename(cg, file, NULL);

    return write_file(path, value);
}

static unsigned cgroup_read(const char *cg, const char *file)
{
    g_autofree char *path = g_build_filename(cg, file, NULL);
    g_autofree char *text = NULL;

    return g_file_get_contents(path, &text, NULL, NULL) ? atoi(text) : 0;
}

/*
 * Out of threads (a pids cgroup, as on a busy host): g_thread_new()
 * aborted the daemon.  Now the connection is refused and logged.
 */
static void test_thread_failure(void)
{
    g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(int));
    g_autofree char *why = NULL;
    g_autofree char *cg = NULL;
    g_autofree char *max = NULL;
    struct daemon_proc dp;
    const char *needles[] = {"no thread for its handshake", NULL};
    g_autofree char *line = NULL;

    if (!ready()) {
        return;
    }
    if (!daemon_proc_start(&dp, "pids", &why)) {
        g_test_fail_printf("%s", why);
        return;
    }
    cg = pids_cgroup_new(dp.pid, &why);
    if (!cg) {
        daemon_proc_stop(&dp);
        g_test_skip(why);
        return;
    }
    max = g_strdup_printf("%u\n", cgroup_read(cg, "pids.current") + 2);
    g_assert_true(cgroup_write(cg, "pids.max", max));
    for (int i = 0; i < 10; i++) {
        int fd = connect_from(&dp, 1);

        g_assert_cmpint(fd, >=, 0);
        g_array_append_val(fds, fd);
    }
    line = daemon_proc_wait_line(&dp, needles, LOG_MS);
    g_assert_nonnull(line);
    g_test_message("daemon: %s", line ? line : "(nothing)");
    g_assert_true(daemon_proc_alive(&dp));
    close_all(fds);
    cgroup_write(cg, "pids.max", "max\n");
    daemon_proc_stop(&dp);
    g_rmdir(cg);
}

/* ---- 3. deadlines per frame and per handshake ---- */

/*
 * Two peers that never finish their handshake: one sends a frame a byte
 * a second, the other a keepalive every 2 s.  The receive timeout
 * restarted on every recv() and every frame, so both held their thread
 * for good; now the frame, and the handshake, have HANDSHAKE_MS.
 */
static void test_handshake_deadline(void)
{
    struct frame_hdr hello = {.type = FRAME_MSG, .len = 100};
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE};
    uint8_t slow[FRAME_HDR_LEN], keepalive[FRAME_HDR_LEN];
    int64_t start = g_get_monotonic_time();
    bool slow_gone = false, ka_gone = false;
    int fd_slow, fd_ka;

    if (!ready()) {
        return;
    }
    frame_encode(&hello, slow);
    frame_encode(&ka, keepalive);
    fd_slow = connect_from(&fx.d, 3);
    fd_ka = connect_from(&fx.d, 4);
    g_assert_cmpint(fd_slow, >=, 0);
    g_assert_cmpint(fd_ka, >=, 0);
    for (int s = 0; s < (HANDSHAKE_MS + 4000) / 1000; s++) {
        slow_gone =
            slow_gone ||
            send(fd_slow, &slow[s % FRAME_HDR_LEN], 1, MSG_NOSIGNAL) != 1 ||
            hung_up(fd_slow, 0);
        if (s % 2 == 0) {
            ka_gone = ka_gone ||
                      send(fd_ka, keepalive, FRAME_HDR_LEN, MSG_NOSIGNAL) !=
                          FRAME_HDR_LEN ||
                      hung_up(fd_ka, 0);
        }
        if (slow_gone && ka_gone) {
            break;
        }
        g_usleep(G_USEC_PER_SEC);
    }
    g_test_message("after %" G_GINT64_FORMAT " ms",
                   (g_get_monotonic_time() - start) / 1000);
    g_assert_true(slow_gone);
    g_assert_true(ka_gone);
    assert_log("127.0.0.3", "handshake not finished in time");
    assert_log("127.0.0.4", "handshake not finished in time");
    close(fd_slow);
    close(fd_ka);
    assert_serving();
}

/* ---- attach: what the VMM hands over ---- */

/* query-vms lists a VM named @name. */
static bool vm_listed(const char *name)
{
    g_autoptr(JsonObject) r = execute("query-vms", NULL);
    JsonArray *vms;

    if (!r || !json_object_has_member(r, "return")) {
        return false;
    }
    vms = json_object_get_array_member(r, "return");
    for (guint i = 0; i < json_array_get_length(vms); i++) {
        JsonObject *vm = json_array_get_object_element(vms, i);

        if (!g_strcmp0(
                json_object_get_string_member_with_default(vm, "name", NULL),
                name)) {
            return true;
        }
    }
    return false;
}

/*
 * Attach as a VMM named @name with one shmem region of @size bytes on a
 * memfd of @file_size, and a real uffd.  The socket stays open (a VMM
 * keeps it): returned, -1 if the hello could not be sent.
 */
static int attach_shmem(const char *name, uint64_t size, uint64_t file_size)
{
    g_autoptr(GError) err = NULL;
    struct region r = {.kind = BACKING_SHMEM,
                       .base = 0x7f0000000000ULL,
                       .size = size,
                       .page_size = 4096};
    int uffd = uffd_open(&err);
    int sock = connect_unix(fx.d.attach_path);
    bool ok;

    r.fd = memfd_create("harden", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(r.fd, file_size), ==, 0);
    ok = attach_send_hello(sock, name, false, uffd, 0, &r, 1, &err);
    if (!ok) {
        g_test_message("hello: %s", err->message);
    }
    close(r.fd);
    close(uffd);
    if (!ok) {
        close(sock);
        return -1;
    }
    return sock;
}

/* 6. A 2^62-byte region on a 1 MiB memfd was accepted. */
static void test_region_beyond_fd(void)
{
    int sock;

    if (!ready()) {
        return;
    }
    sock = attach_shmem("huge-region", 1ULL << 62, 1 << 20);
    g_assert_cmpint(sock, >=, 0);
    assert_log("attach: region at", "memory fd holds 1048576 bytes");
    g_assert_false(vm_listed("huge-region"));
    close(sock);
    /* The same VM with its real size is welcome. */
    sock = attach_shmem("right-size", 1 << 20, 1 << 20);
    assert_log("vm right-size: attached", NULL);
    g_assert_true(vm_listed("right-size"));
    close(sock);
    assert_serving();
}

/* 7. VM names: printable UTF-8, bounded, one VMM per name. */
static void test_vm_names(void)
{
    static const struct {
        const char *name;
        const char *needle;
    } bad[] = {
        {"vm1\npostcopyd: info: forged line", "holds a control character"},
        {"latin1-\xe9t\xe9", "not valid UTF-8"},
        {"", "the VM name is empty"},
    };
    g_autofree char *log = NULL;
    int first, second;

    if (!ready()) {
        return;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        int sock = attach_shmem(bad[i].name, 1 << 20, 1 << 20);

        assert_log("attach:", bad[i].needle);
        /* query-vms is still valid JSON (it was not with "\xe9"). */
        g_assert_false(vm_listed(bad[i].name));
        close(sock);
    }
    log = daemon_proc_log(&fx.d);
    g_assert_null(strstr(log, "\npostcopyd: info: forged"));
    first = attach_shmem("twin", 1 << 20, 1 << 20);
    assert_log("vm twin: attached", NULL);
    second = attach_shmem("twin", 1 << 20, 1 << 20);
    assert_log("vm twin: refusing pid", "is attached under that name");
    g_assert_true(vm_listed("twin"));
    close(second);
    close(first);
    assert_serving();
}

/* The Firecracker form: named after its pid, or as it says. */
static void test_firecracker_names(void)
{
    static const char regions[] =
        "[{\"base_host_virt_addr\": 139637976727552, \"size\": 65536, "
        "\"offset\": 0, \"page_size\": 4096}]";
    g_autofree char *named = g_strdup_printf(
        "{\"vm_name\": \"fc-named\", \"regions\": %s}", regions);
    g_autofree char *by_pid = g_strdup_printf("firecracker-%d", getpid());
    g_autoptr(GError) err = NULL;
    int uffd, a, b;

    if (!ready()) {
        return;
    }
    uffd = uffd_open(&err);
    g_assert_no_error(err);
    a = connect_unix(fx.d.attach_path);
    g_assert_true(send_with_fds(a, regions, strlen(regions), &uffd, 1));
    b = connect_unix(fx.d.attach_path);
    g_assert_true(send_with_fds(b, named, strlen(named), &uffd, 1));
    assert_log("vm fc-named: attached", NULL);
    g_assert_true(vm_listed("fc-named"));
    g_assert_true(vm_listed(by_pid));
    g_assert_false(vm_listed("firecracker"));
    close(a);
    close(b);
    close(uffd);
    assert_serving();
}

/*
 * 4. Its own end of the attach socket as guest memory: the daemon held
 * both ends and never saw the VMM go.  Refused: not a file.
 */
static void test_socket_as_memory(void)
{
    g_autoptr(GError) err = NULL;
    struct region r = {.kind = BACKING_SHMEM,
                       .base = 0x7f0000000000ULL,
                       .size = 1 << 20,
                       .page_size = 4096};
    int uffd, sock;

    if (!ready()) {
        return;
    }
    uffd = uffd_open(&err);
    g_assert_no_error(err);
    sock = connect_unix(fx.d.attach_path);
    r.fd = sock;
    g_assert_true(
        attach_send_hello(sock, "sock-as-ram", false, uffd, 0, &r, 1, &err));
    close(sock);
    close(uffd);
    assert_log("attach: region at", "its memory fd is not a file");
    g_assert_false(vm_listed("sock-as-ram"));
    assert_serving();
}

/*
 * 4. A VMM that exits while a child of its keeps the attach socket open
 * was listed by query-vms for good: it is reaped by its pidfd now.
 */
static void test_vmm_exit_reaped(void)
{
    int pipefd[2], status;
    pid_t vmm, keeper = -1;
    bool listed = true;

    if (!ready()) {
        return;
    }
    g_assert_cmpint(pipe2(pipefd, O_CLOEXEC), ==, 0);
    vmm = fork();
    g_assert_cmpint(vmm, >=, 0);
    if (vmm == 0) {
        int sock = attach_shmem("orphan", 1 << 20, 1 << 20);
        pid_t child;

        if (sock < 0) {
            _exit(1);
        }
        /* Alive while the daemon takes its pidfd, as a real VMM is. */
        g_usleep(300 * 1000);
        child = fork();
        if (child == 0) {
            sleep(60); /* holds the socket; killed by the test */
            _exit(0);
        }
        _exit(write(pipefd[1], &child, sizeof(child)) == sizeof(child) ? 0 : 2);
    }
    close(pipefd[1]);
    g_assert_cmpint(read(pipefd[0], &keeper, sizeof(keeper)), ==,
                    sizeof(keeper));
    close(pipefd[0]);
    g_assert_cmpint(waitpid(vmm, &status, 0), ==, vmm);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_log("vm orphan: attached", NULL);
    for (int i = 0; i < 30 && listed; i++) {
        listed = vm_listed("orphan");
        g_usleep(100 * 1000);
    }
    g_assert_false(listed);
    if (keeper > 0) {
        kill(keeper, SIGKILL);
    }
    assert_serving();
}

/* ---- set-up ---- */

static void fixture_up(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *why = NULL;
    int uffd = uffd_open(&err);

    if (uffd < 0) {
        fx.skip = g_strdup_printf("no userfaultfd here: %s", err->message);
        return;
    }
    close(uffd);
    if (!daemon_proc_start(&fx.d, "harden", &why)) {
        fx.broken = g_steal_pointer(&why);
    }
}

static void fixture_down(bool failed)
{
    if (failed && fx.d.dir) {
        g_autofree char *log = daemon_proc_log(&fx.d);

        fprintf(stderr, "# daemon log:\n%s\n", log);
    }
    daemon_proc_stop(&fx.d);
    g_free(fx.skip);
    g_free(fx.broken);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_test_set_nonfatal_assertions();
    g_test_add_func("/harden/json/control", test_deep_json_control);
    g_test_add_func("/harden/json/attach", test_deep_json_attach);
    g_test_add_func("/harden/peer/preauth-cap", test_preauth_cap);
    g_test_add_func("/harden/peer/thread-failure", test_thread_failure);
    g_test_add_func("/harden/peer/handshake-deadline", test_handshake_deadline);
    g_test_add_func("/harden/attach/region-beyond-fd", test_region_beyond_fd);
    g_test_add_func("/harden/attach/vm-names", test_vm_names);
    g_test_add_func("/harden/attach/firecracker-names", test_firecracker_names);
    g_test_add_func("/harden/attach/socket-as-memory", test_socket_as_memory);
    g_test_add_func("/harden/attach/vmm-exit-reaped", test_vmm_exit_reaped);
    fixture_up();
    ret = g_test_run();
    fixture_down(ret != 0);
    return ret;
}
