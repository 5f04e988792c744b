/*
 * test_service.c - postcopyd as a systemd Type=notify service, against a
 * real notify socket (the datagram socket systemd would listen on): READY=1
 * once its sockets exist, WATCHDOG=1 pings at half the period systemd
 * asked for, STOPPING=1 on SIGTERM.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib.h>

#include "daemon_proc.h"

/* The next datagram within @timeout_ms, NUL-terminated; NULL if none. */
static char *next_message(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[512];
    ssize_t n;

    if (poll(&p, 1, timeout_ms) != 1) {
        return NULL;
    }
    n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n < 0) {
        return NULL;
    }
    buf[n] = '\0';
    return g_strdup(buf);
}

/* The first message holding @needle within @timeout_ms; NULL if none. */
static char *wait_message(int fd, const char *needle, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + timeout_ms * 1000ll;

    while (g_get_monotonic_time() < end) {
        int left = (int)((end - g_get_monotonic_time()) / 1000);
        g_autofree char *m = next_message(fd, MAX(left, 1));

        if (m && strstr(m, needle)) {
            return g_steal_pointer(&m);
        }
    }
    return NULL;
}

static int notify_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return fd;
}

static void test_notify(void)
{
    g_autofree char *dir = g_dir_make_tmp("test-service-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "notify.sock", NULL);
    g_autofree char *why = NULL;
    g_autofree char *ready = NULL;
    g_autofree char *stopping = NULL;
    struct daemon_proc dp;
    struct stat st;
    int fd = notify_socket(path), pings = 0;
    gint64 t0;

    g_setenv("NOTIFY_SOCKET", path, TRUE);
    g_setenv("WATCHDOG_USEC", "200000", TRUE); /* 200 ms: pings every 100 */
    if (!daemon_proc_start(&dp, "service", &why)) {
        g_error("postcopyd did not start: %s", why);
    }
    g_unsetenv("NOTIFY_SOCKET");
    g_unsetenv("WATCHDOG_USEC");

    ready = wait_message(fd, "READY=1", 5000);
    g_assert_nonnull(ready);
    g_test_message("ready message: %s", ready);
    g_assert_nonnull(strstr(ready, "STATUS="));
    /* Ready means its sockets are there for the next unit to use. */
    g_assert_cmpint(stat(dp.control_path, &st), ==, 0);
    g_assert_cmpint(stat(dp.attach_path, &st), ==, 0);

    t0 = g_get_monotonic_time();
    while (g_get_monotonic_time() - t0 < 1000 * 1000) {
        g_autofree char *m = next_message(fd, 1000);

        pings += m && strstr(m, "WATCHDOG=1");
    }
    g_test_message("%d watchdog pings in 1 s", pings);
    g_assert_cmpint(pings, >=, 3); /* 10 due; a busy machine may delay */

    g_assert_cmpint(kill(dp.pid, SIGTERM), ==, 0);
    stopping = wait_message(fd, "STOPPING=1", 5000);
    g_assert_nonnull(stopping);
    daemon_proc_stop(&dp);
    close(fd);
    unlink(path);
    rmdir(dir);
}

/* Without a watchdog asked for, none is pinged (and nothing else breaks). */
static void test_no_watchdog(void)
{
    g_autofree char *dir = g_dir_make_tmp("test-service-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "notify.sock", NULL);
    g_autofree char *why = NULL;
    g_autofree char *ready = NULL;
    g_autofree char *ping = NULL;
    struct daemon_proc dp;
    int fd = notify_socket(path);

    g_setenv("NOTIFY_SOCKET", path, TRUE);
    if (!daemon_proc_start(&dp, "service", &why)) {
        g_error("postcopyd did not start: %s", why);
    }
    g_unsetenv("NOTIFY_SOCKET");
    ready = wait_message(fd, "READY=1", 5000);
    g_assert_nonnull(ready);
    ping = wait_message(fd, "WATCHDOG=1", 500);
    g_assert_null(ping);
    daemon_proc_stop(&dp);
    close(fd);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/service/notify", test_notify);
    g_test_add_func("/service/no-watchdog", test_no_watchdog);
    return g_test_run();
}
