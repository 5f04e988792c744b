/*
 * test_harden.c - the real postcopyd against the holes of issue 13 ("never
 * lose the VM, part 2"): input built to crash it, exhaust it or hold it,
 * from its control socket, its attach socket and its peer port.
 *
 * One daemon serves every scenario; each ends by checking that it still
 * runs and answers its control socket.  Assertions are non-fatal: one
 * scenario that finds a bug does not hide what the others find.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <gio/gio.h>

#include "daemon_proc.h"
#include "testlib.h"
#include "uffd.h"

#define LOG_MS 5000 /* a refusal the daemon logs at once */

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
    fixture_up();
    ret = g_test_run();
    fixture_down(ret != 0);
    return ret;
}
