/*
 * tcp_socket.c - making the TCP sockets tcp.c moves frames on: resolving,
 * connecting within a timeout, listening (dual-stack for ":port"), and the
 * socket options every channel, each kind and the listener get.  See
 * tcp_socket.h.
 */
#include "tcp_socket.h"
#include "address.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <gio/gio.h>

#include "errno_error.h"

#define LISTEN_BACKLOG 64
/* TC_PRIO_INTERACTIVE: the host qdisc dequeues urgent pages first. */
#define URGENT_PRIORITY 6

static bool set_opt(int fd, int level, int name, int value, const char *what,
                    GError **err)
{
    if (setsockopt(fd, level, name, &value, sizeof(value)) < 0) {
        return errno_error(err, errno, "setsockopt %s=%d", what, value);
    }
    return true;
}

static bool tune_keepalive(int fd, const struct transport_options *o,
                           GError **err)
{
    if (!o->tcp.keepalive_idle_s) {
        return true;
    }
    if (!set_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE", err) ||
        !set_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, o->tcp.keepalive_idle_s,
                 "TCP_KEEPIDLE", err)) {
        return false;
    }
    if (o->tcp.keepalive_interval_s &&
        !set_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, o->tcp.keepalive_interval_s,
                 "TCP_KEEPINTVL", err)) {
        return false;
    }
    return !o->tcp.keepalive_count ||
           set_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, o->tcp.keepalive_count,
                   "TCP_KEEPCNT", err);
}

/* Every channel, on both sides. */
bool tcp_socket_tune(int fd, const struct transport_options *o, GError **err)
{
    /*
     * Nodelay on every kind: frames go out whole in one sendmsg(), so Nagle
     * has nothing to merge on a busy channel, while on a quiet one it holds
     * the last small frame (a page reply, the SYNC before switchover) until
     * an ACK the peer may delay by 40 ms.
     */
    if (!set_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", err)) {
        return false;
    }
    if (o->tcp.user_timeout_ms &&
        !set_opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, o->tcp.user_timeout_ms,
                 "TCP_USER_TIMEOUT", err)) {
        return false;
    }
    return tune_keepalive(fd, o, err);
}

/* The FORCE variants pass net.core.[rw]mem_max when we may (root). */
static bool set_buffer(int fd, int force, int plain, int bytes,
                       const char *what, GError **err)
{
    if (setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof(bytes)) == 0) {
        return true;
    }
    return set_opt(fd, SOL_SOCKET, plain, bytes, what, err);
}

/* Before connect()/listen(): the window scale is chosen in the handshake. */
static bool tune_buffers(int fd, unsigned bytes, GError **err)
{
    if (!bytes) {
        return true;
    }
    return set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes, "SO_SNDBUF", err) &&
           set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes, "SO_RCVBUF", err);
}

bool tcp_socket_set_send_buffer(int fd, unsigned bytes, GError **err)
{
    return set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, (int)bytes, "SO_SNDBUF",
                      err);
}

bool tcp_socket_tune_kind(int fd, enum channel_kind kind, GError **err)
{
    if (kind != CHANNEL_URGENT) {
        return true;
    }
    return set_opt(fd, SOL_SOCKET, SO_PRIORITY, URGENT_PRIORITY, "SO_PRIORITY",
                   err);
}

/* Connected channels block; timeouts come from channel_set_timeout(). */
static bool set_blocking(int fd, GError **err)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return errno_error(err, errno, "fcntl O_NONBLOCK");
    }
    return true;
}

/* Blocking I/O with an optional timeout, as channel_set_timeout() asks. */
bool tcp_socket_set_timeout(int fd, unsigned ms, GError **err)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000};

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        return errno_error(err, errno, "setsockopt SO_RCVTIMEO/SO_SNDTIMEO");
    }
    return true;
}

static bool resolve(const char *host, uint16_t port, bool passive,
                    struct addrinfo **res, GError **err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
    char service[8];
    int rc;

    g_snprintf(service, sizeof(service), "%u", port);
    rc = getaddrinfo(host, service, &hints, res);
    if (rc == EAI_SYSTEM) {
        return errno_error(err, errno, "cannot resolve '%s'", host);
    }
    if (rc) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_HOST_NOT_FOUND,
                    "cannot resolve '%s': %s", host, gai_strerror(rc));
        return false;
    }
    return true;
}

static int64_t deadline_after(unsigned ms)
{
    return ms ? g_get_monotonic_time() + (int64_t)ms * 1000 : 0;
}

/* Milliseconds left for poll(): -1 without a deadline, 0 once past it. */
static int ms_left(int64_t deadline)
{
    int64_t left;

    if (!deadline) {
        return -1;
    }
    left = deadline - g_get_monotonic_time();
    return left > 0 ? (int)((left + 999) / 1000) : 0;
}

/* A non-blocking connect() finished within @timeout_ms? */
static bool connect_wait(int fd, const struct addrinfo *ai, unsigned timeout_ms,
                         GError **err)
{
    int64_t deadline = deadline_after(timeout_ms);
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    socklen_t elen = sizeof(int);
    int e = 0, r;

    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        return true;
    }
    if (errno != EINPROGRESS) {
        return errno_error(err, errno, "connect");
    }
    do {
        r = poll(&pfd, 1, ms_left(deadline));
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "connect: no answer within %u ms", timeout_ms);
        return false;
    }
    if (r < 0) {
        return errno_error(err, errno, "poll");
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0) {
        return errno_error(err, errno, "getsockopt SO_ERROR");
    }
    return e ? errno_error(err, e, "connect") : true;
}

static int connect_one(const struct addrinfo *ai, enum channel_kind kind,
                       const struct transport_options *o, GError **err)
{
    int fd =
        socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0) {
        errno_error(err, errno, "socket");
        return -1;
    }
    if (!tcp_socket_tune(fd, o, err) || !tcp_socket_tune_kind(fd, kind, err) ||
        (kind == CHANNEL_BULK &&
         !tune_buffers(fd, o->tcp.bulk_buffer_bytes, err)) ||
        !connect_wait(fd, ai, o->connect_timeout_ms, err) ||
        !set_blocking(fd, err)) {
        close(fd);
        return -1;
    }
    return fd;
}

int tcp_socket_connect(const char *address, enum channel_kind kind,
                       const struct transport_options *o, GError **err)
{
    g_autofree char *host = NULL;
    struct addrinfo *res, *ai;
    GError *last = NULL;
    uint16_t port;
    int fd = -1;

    if (!address_parse(address, &host, &port, err)) {
        return -1;
    }
    if (!host || !port) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "'%s' names no host and port to connect to", address);
        return -1;
    }
    if (!resolve(host, port, false, &res, err)) {
        return -1;
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        g_clear_error(&last);
        fd = connect_one(ai, kind, o, &last);
        if (fd < 0 && (ai != res || ai->ai_next)) {
            g_autofree char *where =
                address_format(ai->ai_addr, ai->ai_addrlen);

            g_prefix_error(&last, "%s: ", where);
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        g_propagate_error(err, last);
    }
    return fd;
}

static int listen_on(const struct sockaddr *sa, socklen_t len, bool dual,
                     const struct transport_options *o, GError **err)
{
    int fd =
        socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0) {
        errno_error(err, errno, "socket");
        return -1;
    }
    if (!set_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", err) ||
        (dual &&
         !set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY", err)) ||
        !tune_buffers(fd, o->tcp.bulk_buffer_bytes, err)) {
        goto fail;
    }
    if (bind(fd, sa, len) < 0) {
        g_autofree char *where = address_format(sa, len);

        errno_error(err, errno, "bind %s", where);
        goto fail;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        errno_error(err, errno, "listen");
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return -1;
}

/* Every address: IPv6 and IPv4 on one dual-stack socket, or IPv4 alone. */
static int listen_any(uint16_t port, const struct transport_options *o,
                      GError **err)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6,
                               .sin6_port = htons(port),
                               .sin6_addr = IN6ADDR_ANY_INIT};
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    GError *local = NULL;
    int fd = listen_on((struct sockaddr *)&in6, sizeof(in6), true, o, &local);

    if (fd >= 0) {
        return fd;
    }
    if (!g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED)) {
        g_propagate_error(err, local);
        return -1;
    }
    /* IPv6 disabled on this host. */
    g_error_free(local);
    return listen_on((struct sockaddr *)&in, sizeof(in), false, o, err);
}

static int listen_host(const char *host, uint16_t port,
                       const struct transport_options *o, GError **err)
{
    struct addrinfo *res, *ai;
    GError *last = NULL;
    int fd = -1;

    if (!resolve(host, port, true, &res, err)) {
        return -1;
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        g_clear_error(&last);
        fd = listen_on(ai->ai_addr, ai->ai_addrlen, false, o, &last);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        g_propagate_error(err, last);
    }
    return fd;
}

int tcp_socket_listen(const char *address, const struct transport_options *o,
                      char **bound, GError **err)
{
    g_autofree char *host = NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    uint16_t port;
    int fd;

    if (!address_parse(address, &host, &port, err)) {
        return -1;
    }
    fd = host ? listen_host(host, port, o, err) : listen_any(port, o, err);
    if (fd < 0) {
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        errno_error(err, errno, "getsockname");
        close(fd);
        return -1;
    }
    *bound = address_format((struct sockaddr *)&ss, len);
    return fd;
}
