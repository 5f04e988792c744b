/*
 * fuzz_cli_reply.c - libFuzzer target: what postcopy-migrate reads from
 * the control socket (tools/migrate/client.h), and what it makes of a
 * query-migrate answer: the greeting check, replies matched by id among
 * events, error replies, then the human summary (summary.h), the progress
 * line (progress.h) and the figures (migstats.h) of whatever came back.
 *
 * Input: the whole byte stream from "postcopyd" on a Unix socket, whose
 * write side is then shut; the client sends two query-migrate commands.
 *
 * Checked besides the sanitizers: every call returns at the end of the
 * stream (nothing waits for the 30 s timeout); a failure is one GError
 * line; a reply rendered never crashes, whatever its members' types.
 */
#include "client.h"
#include "migstats.h"
#include "progress.h"
#include "summary.h"

#include <gio/gio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FUZZ_CLI_MAX_INPUT (256u << 10)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *sock_path;
static int listen_fd = -1;
static FILE *devnull;

struct daemon_end {
    const uint8_t *data;
    size_t size;
};

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_cli_reply: %s\n", why);
    abort();
}

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
    g_autofree char *dir = g_dir_make_tmp("fuzz-cli-XXXXXX", NULL);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    g_log_set_default_handler(log_handler, NULL);
    devnull = fopen("/dev/null", "w");
    if (!dir || !devnull) {
        fail("no temp dir or /dev/null");
    }
    sock_path = g_build_filename(dir, "control.sock", NULL);
    g_strlcpy(sa.sun_path, sock_path, sizeof(sa.sun_path));
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(listen_fd, 4)) {
        fail("cannot listen");
    }
    return 0;
}

/* The daemon's end: say the input, then read what the client sends. */
static gpointer daemon_thread(gpointer opaque)
{
    struct daemon_end *d = opaque;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    size_t off = 0;
    char buf[4096];

    if (fd < 0) {
        fail("accept failed");
    }
    while (off < d->size) {
        ssize_t n = send(fd, d->data + off, d->size - off, MSG_NOSIGNAL);

        if (n <= 0) {
            break; /* the client gave up: fine */
        }
        off += n;
    }
    shutdown(fd, SHUT_WR);
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
    close(fd);
    return NULL;
}

static void check_error(const GError *err)
{
    if (!err || !err->message || strchr(err->message, '\n')) {
        fail("a failure without a one-line error");
    }
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
        fail("waited for the timeout at the end of the stream");
    }
}

static void render(JsonNode *stats)
{
    g_autofree char *line = progress_line(stats);
    struct progress p;
    double v;
    int pct;

    if (!line) {
        fail("no progress line");
    }
    summary_print(devnull, stats);
    progress_init(&p, devnull);
    progress_update(&p, stats);
    progress_end(&p);
    (void)migstats_is_final(migstats_status(stats));
    (void)migstats_percent(stats, &pct);
    (void)migstats_bytes_per_s(stats, &v);
    (void)migstats_eta_s(stats, &v);
}

static void talk(void)
{
    g_autoptr(GError) err = NULL;
    struct control_conn *c = control_conn_open(sock_path, &err);

    if (!c) {
        check_error(err);
        return;
    }
    for (int i = 0; i < 2; i++) {
        g_autoptr(JsonNode) stats =
            control_conn_execute(c, "query-migrate", NULL, &err);

        if (!stats) {
            check_error(err);
            g_clear_error(&err);
            continue;
        }
        render(stats);
    }
    control_conn_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct daemon_end d = {.data = data, .size = size};
    GThread *th;

    if (size > FUZZ_CLI_MAX_INPUT) {
        return -1;
    }
    th = g_thread_new("daemon", daemon_thread, &d);
    talk();
    g_thread_join(th);
    return 0;
}
