/*
 * fuzz_auth.c - libFuzzer target: what a stranger sends to a daemon that
 * authenticates its peers (transport/auth.h), before anything else it
 * says is believed: AuthChallenge, AuthResponse, AuthResult (or a Hello
 * too early), as FRAME_MSG frames on a real loopback TCP channel.
 *
 * Input: byte 0 bit 0 picks the side under test, the listener
 * (auth_server()) or the connector (auth_client()); the rest is the byte
 * stream from the other end, whose write side is then shut.
 *
 * Checked besides the sanitizers: authentication never succeeds (the
 * other end cannot know the key, and the nonces are fresh each run); the
 * failure is one GError line; every call returns at the end of the
 * stream (nothing waits for the timeout).
 */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FUZZ_AUTH_TIMEOUT_MS 5000
#define FUZZ_AUTH_MAX_INPUT  (AUTH_MSG_MAX + 4096) /* fits the socket buffer */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct listener *listener; /* auth_server()'s side accepts here */
static int raw_listen_fd = -1;    /* auth_client() connects here */
static char *raw_address;
static struct auth_key key = {.len = 32};

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_auth: %s\n", why);
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

static int raw_listen(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(fd, 8) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
        fail("cannot listen on loopback");
    }
    raw_address = g_strdup_printf("127.0.0.1:%u", ntohs(sa.sin_port));
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_autoptr(GError) err = NULL;

    g_log_set_default_handler(log_handler, NULL);
    memset(key.bytes, 0x5a, key.len);
    listener = transport_listen(transport_tcp(), "127.0.0.1:0", NULL, &err);
    if (!listener) {
        fail(err->message);
    }
    raw_listen_fd = raw_listen();
    return 0;
}

static int raw_connect(const char *address)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port =
                                 htons(atoi(strrchr(address, ':') + 1))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int e = 0;

    if (fd < 0) {
        fail("cannot make a socket");
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        e = errno;
    }
    /*
     * libFuzzer's timeout timer (SIGALRM, no SA_RESTART) interrupts a
     * blocking connect(), which then goes on in the background.
     */
    if (e == EINTR) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        socklen_t elen = sizeof(e);

        while (poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen);
    }
    if (e) {
        fail(g_strdup_printf("cannot connect on loopback: %s", g_strerror(e)));
    }
    return fd;
}

/*
 * Abort the other end's connection (RST, SO_LINGER 0) before closing the
 * channel: no side is left in TIME_WAIT, where hundreds of thousands of
 * runs of orderly closes would pile up sockets on the loopback.
 */
static void hang_up(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

/* The other end says @data and nothing more. */
static void say(int fd, const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fail("cannot write the input");
        }
        off += n;
    }
    shutdown(fd, SHUT_WR);
}

static void check(struct channel *ch, bool server)
{
    g_autoptr(GError) err = NULL;
    bool ok;

    if (!channel_set_timeout(ch, FUZZ_AUTH_TIMEOUT_MS, &err)) {
        fail(err->message);
    }
    ok = server ? auth_server(ch, &key, &err) : auth_client(ch, &key, &err);
    if (ok) {
        fail("authenticated a peer that cannot know the key");
    }
    if (!err || strchr(err->message, '\n')) {
        fail("a refusal without a one-line error");
    }
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
        fail("waited for the timeout at the end of the stream");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    bool server;
    struct channel *ch;
    int fd;

    if (size < 1 || size > FUZZ_AUTH_MAX_INPUT) {
        return -1;
    }
    server = !(data[0] & 1);
    if (server) {
        fd = raw_connect(listener_address(listener));
        say(fd, data + 1, size - 1);
        ch = listener_accept(listener, &err);
    } else {
        ch = transport_connect(transport_tcp(), raw_address, CHANNEL_CONTROL, 0,
                               NULL, &err);
        do {
            fd = accept4(raw_listen_fd, NULL, NULL, SOCK_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            fail("cannot accept on loopback");
        }
        say(fd, data + 1, size - 1);
    }
    if (!ch) {
        fail(err->message);
    }
    check(ch, server);
    hang_up(fd);
    channel_close(ch);
    return 0;
}
