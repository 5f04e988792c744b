/* link_proxy.c - see link_proxy.h. */
#include "link_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "hostport.h"
#include "peer_msg.h"

/* One relayed connection: @fd[0] the source's end, @fd[1] ours to the
 * destination; a thread per direction. */
struct relay_conn {
    struct link_proxy *p;
    int fd[2];
    GThread *thread[2];
};

struct relay_dir {
    struct relay_conn *c;
    int from, to;
    bool to_dest;
};

static bool read_full(int fd, uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = recv(fd, buf, len, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= n;
    }
    return true;
}

static bool write_full(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= n;
    }
    return true;
}

/* Every connection open now goes down, both ends. */
static void cut_all(struct link_proxy *p)
{
    for (guint i = 0; i < p->conns->len; i++) {
        struct relay_conn *c = p->conns->pdata[i];

        shutdown(c->fd[0], SHUT_RDWR);
        shutdown(c->fd[1], SHUT_RDWR);
    }
}

/*
 * One connection reset, both ends, once the peer behind @sent has taken
 * in all we sent it (a reset drops what is still queued here): connect()
 * to AF_UNSPEC disconnects a TCP socket with an RST and keeps the fd (the
 * relay threads still use it), so the peers' next sends fail at once.
 */
static void reset_conn(struct relay_conn *c, int sent)
{
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    int64_t end = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
    int queued;

    while (ioctl(sent, SIOCOUTQ, &queued) == 0 && queued > 0 &&
           g_get_monotonic_time() < end) {
        g_usleep(1000);
    }

    for (int e = 0; e < 2; e++) {
        connect(c->fd[e], &unspec, sizeof(unspec));
        shutdown(c->fd[e], SHUT_RDWR);
    }
}

/* Every thread of @pid is stopped (2 s at most: a test gives up later). */
static void wait_stopped(GPid pid)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", pid);
    int64_t end = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < end) {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *tid;
        bool all = d != NULL;

        while (all && (tid = g_dir_read_name(d))) {
            g_autofree char *path = g_strdup_printf("%s/%s/stat", dir, tid);
            g_autofree char *text = NULL;
            const char *r;

            all = g_file_get_contents(path, &text, NULL, NULL) &&
                  (r = strrchr(text, ')')) && (r[2] == 'T' || r[2] == 't');
        }
        if (all) {
            return;
        }
        g_usleep(1000);
    }
}

/*
 * The destination's end of the connection @fd is our end of, as
 * /proc/net/tcp spells it ("LOCAL REMOTE", raw address bytes; loopback,
 * IPv4), or NULL.
 */
static char *peer_key(int fd)
{
    struct sockaddr_in us, them;
    socklen_t l1 = sizeof(us), l2 = sizeof(them);

    if (getsockname(fd, (void *)&us, &l1) < 0 ||
        getpeername(fd, (void *)&them, &l2) < 0) {
        return NULL;
    }
    return g_strdup_printf("%08X:%04X %08X:%04X", them.sin_addr.s_addr,
                           ntohs(them.sin_port), us.sin_addr.s_addr,
                           ntohs(us.sin_port));
}

/*
 * Bytes the socket @key names has not read yet, or -1 when it is not
 * listed: closed (a reset that reached it unhashes it).
 */
static long peer_unread(const char *key)
{
    g_autofree char *text = NULL;
    const char *line;
    unsigned long tx, rx;

    if (!key || !g_file_get_contents("/proc/net/tcp", &text, NULL, NULL) ||
        !(line = strstr(text, key)) ||
        sscanf(line + strlen(key), " %*x %lx:%lx", &tx, &rx) != 2) {
        return -1;
    }
    return (long)rx;
}

/*
 * The held reset: all of the frame but its last byte goes through and the
 * destination reads it (it then waits for that byte); the destination is
 * stopped, the last byte and the reset follow, and it runs again only
 * once its socket has taken the reset (a loaded host may leave a packet
 * to ksoftirqd for a while, which the destination's real-time threads can
 * outrun): it finds the whole message and the reset in front of it, acts
 * on the message and its answer fails, in that order every time.
 * Stopping it any earlier would not do: a message longer than its
 * receive window would never get through.
 */
static bool relay_held(struct relay_dir *d, const uint8_t *hdr,
                       const uint8_t *payload, size_t len)
{
    struct link_proxy *p = d->c->p;
    g_autofree uint8_t *frame = g_malloc(FRAME_HDR_LEN + len);
    g_autofree char *key = peer_key(d->to);
    size_t total = FRAME_HDR_LEN + len;
    int64_t t0 = g_get_monotonic_time(), t1, t2;
    int64_t end = t0 + 2 * G_USEC_PER_SEC;
    int queued = 0;
    long unread;

    memcpy(frame, hdr, FRAME_HDR_LEN);
    memcpy(frame + FRAME_HDR_LEN, payload, len);
    if (!write_full(d->to, frame, total - 1)) {
        return false;
    }
    /* Past these deadlines the test's own checks say what went wrong. */
    while (((ioctl(d->to, SIOCOUTQ, &queued) == 0 && queued > 0) ||
            (unread = peer_unread(key)) != 0) &&
           g_get_monotonic_time() < end) {
        g_usleep(1000);
    }
    t1 = g_get_monotonic_time();
    kill(p->hold_pid, SIGSTOP);
    wait_stopped(p->hold_pid);
    if (write_full(d->to, frame + total - 1, 1)) {
        reset_conn(d->c, d->to);
    }
    end = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
    while ((unread = peer_unread(key)) >= 0 && g_get_monotonic_time() < end) {
        g_usleep(1000);
    }
    t2 = g_get_monotonic_time();
    kill(p->hold_pid, SIGCONT);
    g_mutex_lock(&p->lock);
    g_free(p->held);
    p->held = g_strdup_printf(
        "relay: %zu of %zu bytes read by the destination after "
        "%" G_GINT64_FORMAT " ms; stopped, last byte and reset; its socket %s "
        "after %" G_GINT64_FORMAT " ms more",
        total - 1, total, (t1 - t0) / 1000,
        unread < 0 ? "closed" : "STILL OPEN", (t2 - t1) / 1000);
    g_mutex_unlock(&p->lock);
    return false;
}

/* The PeerMessage kind a frame carries, or 0 for any other frame. */
static int msg_case(const uint8_t *hdr, const uint8_t *payload)
{
    uint32_t len;
    PeerMessage *msg;
    int c;

    memcpy(&len, hdr + 12, 4);
    if (hdr[3] != FRAME_MSG) {
        return 0;
    }
    msg = postcopy__peer__peer_message__unpack(NULL, GUINT32_FROM_LE(len),
                                               payload);
    if (!msg) {
        return 0;
    }
    c = msg->msg_case;
    postcopy__peer__peer_message__free_unpacked(msg, NULL);
    return c;
}

/* Is this the frame the rule drops? */
static bool targeted(struct relay_dir *d, const uint8_t *hdr,
                     const uint8_t *payload)
{
    switch (d->c->p->cut) {
    case LINK_CUT_SWITCHOVER:
    case LINK_RESET_AFTER_SWITCHOVER:
        return d->to_dest && msg_case(hdr, payload) ==
                                 POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER;
    case LINK_CUT_SWITCHOVER_REPLY:
        return !d->to_dest &&
               msg_case(hdr, payload) ==
                   POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY;
    case LINK_CUT_FINAL_DIRTY:
        return d->to_dest && msg_case(hdr, payload) ==
                                 POSTCOPY__PEER__PEER_MESSAGE__MSG_FINAL_DIRTY;
    default:
        return false;
    }
}

/* Forward one frame, or act on the rule; false when the link is done. */
static bool relay_frame(struct relay_dir *d, const uint8_t *hdr,
                        const uint8_t *payload, size_t len)
{
    struct link_proxy *p = d->c->p;
    bool after = p->cut == LINK_RESET_AFTER_SWITCHOVER;
    bool fire = false;

    if (targeted(d, hdr, payload)) {
        g_mutex_lock(&p->lock);
        fire = !p->fired;
        p->fired = true;
        g_mutex_unlock(&p->lock);
    }
    if (fire && !after) {
        g_mutex_lock(&p->lock);
        cut_all(p);
        g_mutex_unlock(&p->lock);
        return false;
    }
    if (!fire) {
        return write_full(d->to, hdr, FRAME_HDR_LEN) &&
               write_full(d->to, payload, len);
    }
    if (p->hold_pid) {
        return relay_held(d, hdr, payload, len);
    }
    if (write_full(d->to, hdr, FRAME_HDR_LEN) &&
        write_full(d->to, payload, len)) {
        reset_conn(d->c, d->to);
    }
    return false;
}

static gpointer relay_thread(gpointer opaque)
{
    struct relay_dir *d = opaque;
    uint8_t hdr[FRAME_HDR_LEN];

    for (;;) {
        g_autofree uint8_t *payload = NULL;
        uint32_t len;

        if (!read_full(d->from, hdr, sizeof(hdr))) {
            break;
        }
        memcpy(&len, hdr + 12, 4);
        len = GUINT32_FROM_LE(len);
        if (len > FRAME_MAX_MSG) {
            break; /* not the peer protocol: the daemons will say so */
        }
        payload = g_malloc(len ? len : 1);
        if (!read_full(d->from, payload, len) ||
            !relay_frame(d, hdr, payload, len)) {
            break;
        }
    }
    shutdown(d->from, SHUT_RDWR);
    shutdown(d->to, SHUT_RDWR);
    g_free(d);
    return NULL;
}

static int connect_target(const char *target)
{
    g_autofree char *host = NULL;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    uint16_t port;
    int fd;

    if (!hostport_parse(target, 0, 0, &host, &port, NULL) ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        return -1;
    }
    sa.sin_port = htons(port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void start_relay(struct link_proxy *p, int fd)
{
    struct relay_conn *c = g_new0(struct relay_conn, 1);
    int one = 1;

    c->p = p;
    c->fd[0] = fd;
    c->fd[1] = connect_target(p->target);
    if (c->fd[1] < 0) {
        close(fd);
        g_free(c);
        return;
    }
    for (int i = 0; i < 2; i++) {
        setsockopt(c->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    g_mutex_lock(&p->lock);
    g_ptr_array_add(p->conns, c);
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = g_new0(struct relay_dir, 1);

        *d = (struct relay_dir){
            .c = c, .from = c->fd[i], .to = c->fd[!i], .to_dest = i == 0};
        c->thread[i] = g_thread_new("relay", relay_thread, d);
    }
    g_mutex_unlock(&p->lock);
}

static gpointer accept_thread(gpointer opaque)
{
    struct link_proxy *p = opaque;

    for (;;) {
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return NULL; /* shut down by link_proxy_stop */
        }
        start_relay(p, fd);
    }
}

bool link_proxy_start(struct link_proxy *p, const char *target,
                      enum link_cut cut, char **why)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);

    memset(p, 0, sizeof(*p));
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->listen_fd < 0 || bind(p->listen_fd, (void *)&sa, sizeof(sa)) < 0 ||
        listen(p->listen_fd, 64) < 0 ||
        getsockname(p->listen_fd, (void *)&sa, &len) < 0) {
        *why = g_strdup_printf("proxy listener: %s", g_strerror(errno));
        if (p->listen_fd >= 0) {
            close(p->listen_fd);
        }
        p->listen_fd = -1;
        return false;
    }
    g_mutex_init(&p->lock);
    p->conns = g_ptr_array_new();
    p->cut = cut;
    p->target = g_strdup(target);
    p->address = g_strdup_printf("127.0.0.1:%d", ntohs(sa.sin_port));
    p->accept_thread = g_thread_new("proxy-accept", accept_thread, p);
    return true;
}

bool link_proxy_fired(struct link_proxy *p)
{
    bool fired;

    g_mutex_lock(&p->lock);
    fired = p->fired;
    g_mutex_unlock(&p->lock);
    return fired;
}

void link_proxy_stop(struct link_proxy *p)
{
    if (!p->address) {
        return;
    }
    shutdown(p->listen_fd, SHUT_RDWR);
    g_thread_join(p->accept_thread);
    close(p->listen_fd);
    g_mutex_lock(&p->lock);
    cut_all(p);
    g_mutex_unlock(&p->lock);
    for (guint i = 0; i < p->conns->len; i++) {
        struct relay_conn *c = p->conns->pdata[i];

        for (int j = 0; j < 2; j++) {
            g_thread_join(c->thread[j]);
        }
        close(c->fd[0]);
        close(c->fd[1]);
        g_free(c);
    }
    g_ptr_array_free(p->conns, TRUE);
    g_mutex_clear(&p->lock);
    g_free(p->address);
    g_free(p->target);
    g_free(p->held);
    memset(p, 0, sizeof(*p));
}
