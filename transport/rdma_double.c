/*
 * rdma_double.c - a TEST DOUBLE of the RDMA NIC: the READ link's ops
 * (rdma.h) without a device, so that the engine's RDMA data path
 * (rdma_remote.c, rdma_read.c, rdma_mr.c, remote_reader.c, read_plan.c,
 * source_remote.c, the control messages) runs in make check on hosts that
 * have no RDMA NIC.  The transport "rdma-test-double" is "rdma" with these
 * link ops instead of the verbs; it exists only when the daemon's
 * environment has POSTCOPYD_TEST_DOUBLES=1 and says so loudly: see
 * docs/rdma.md for why it must never carry a production migration.
 *
 * Only what needs the hardware is replaced:
 *  - rdma_cm: a TCP connection on the port the destination picked (the one
 *    its LayoutReply names); the source first sends its pid.
 *  - registration: a random key per range.  A range registered for remote
 *    READ is also sent to the destination's double, which acknowledges it
 *    before the source hands its key out: that is the responder's
 *    translation table a real NIC keeps.
 *  - a one-sided READ: process_vm_readv() of the source daemon's memory at
 *    the registered address, by a thread of the destination (its "NIC"),
 *    after checking rkey and range as the responder would, lkey and range
 *    as the requester would.  It is possible only because both daemons run
 *    on one machine in one pid namespace, as root (the e2e tests' hosts are
 *    two network namespaces); a real NIC reads over the wire.  Neither uses
 *    the source's CPU.
 *  - completions: a queue the NIC thread fills as it serves the READs, and
 *    an eventfd for the completion channel; after an error the "QP" is in
 *    error and every READ out or posted later completes flushed.
 *  - faults for tests: POSTCOPYD_RDMA_DOUBLE_FAIL_READ=N fails the Nth
 *    READ of each link with IBV_WC_RETRY_EXC_ERR (the peer stopped
 *    answering); the peer closing the link is RDMA_CM_EVENT_DISCONNECTED.
 */
#include "rdma.h"
#include "transport_impl.h"
#include "rdma_error.h"
#include "tcp_socket.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <gio/gio.h>

#include "errno_error.h"

#define DOUBLE_MAGIC 0x52444442u /* "RDDB" */
#define REG_ACK_MS   5000
#define REAP_BATCH   16
#define MAX_MRS      (2 * RDMA_MR_MAX)

enum dbl_kind { DBL_HELLO = 1, DBL_REG, DBL_REG_ACK, DBL_DEREG };

/* One message of the double's own link protocol (same host: no byte order). */
struct dbl_msg {
    uint32_t magic;
    uint32_t kind;
    uint64_t addr; /* HELLO: the sender's pid */
    uint64_t len;
    uint32_t key;
    uint32_t pad;
};

struct dbl_mr {
    struct rdma_link *l;
    uint64_t addr, len;
    uint32_t key;
    bool remote; /* registered for the peer's READs */
};

struct dbl_cqe {
    uint64_t wr_id;
    enum ibv_wc_status status;
};

struct rdma_link {
    int fd;       /* the "rdma_cm" connection */
    int work_fd;  /* eventfd: READs posted, or stop */
    int cq_fd;    /* eventfd: the completion channel */
    int event_fd; /* eventfd: the link's "rdma_cm" event (disconnect) */
    int wake_fd;  /* eventfd: rdma_link_wake() */
    bool source;
    pid_t peer; /* destination: the source daemon's pid */
    GThread *nic;
    GMutex lock; /* everything below */
    bool stop, qp_error, disconnected;
    GQueue sq;                     /* struct rdma_read_wr *, posted */
    GQueue cq;                     /* struct dbl_cqe *, completed */
    struct dbl_mr local[MAX_MRS];  /* our registrations */
    struct dbl_mr remote[MAX_MRS]; /* destination: the source's, for READ */
    uint64_t posted, reads, bytes; /* READs served, done, their bytes */
    uint64_t fail_at;              /* POSTCOPYD_RDMA_DOUBLE_FAIL_READ */
    GError *error; /* a failed completion not reported yet (poller only) */
};

struct rdma_link_listener {
    int fd;
    char *address;
};

static void signal_fd(int fd)
{
    uint64_t one = 1;

    if (write(fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: already signalled. */
    }
}

static void drain_fd(int fd)
{
    uint64_t v;

    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing pending. */
    }
}

static bool send_msg(int fd, enum dbl_kind kind, uint64_t addr, uint64_t len,
                     uint32_t key, GError **err)
{
    struct dbl_msg m = {DOUBLE_MAGIC, kind, addr, len, key, 0};

    if (send(fd, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m)) {
        return errno_error(err, errno ? errno : EPIPE,
                           "RDMA test double: send");
    }
    return true;
}

/* One whole message within @ms (-1: for ever); false: EOF, error, timeout. */
static bool recv_msg(int fd, struct dbl_msg *m, int ms, GError **err)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, ms) != 1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "RDMA test double: no message within %d ms", ms);
        return false;
    }
    n = recv(fd, m, sizeof(*m), MSG_WAITALL);
    if (n != sizeof(*m) || m->magic != DOUBLE_MAGIC) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "RDMA test double: the peer closed the link");
        return false;
    }
    return true;
}

static struct rdma_link *link_new(int fd, bool source)
{
    struct rdma_link *l = g_new0(struct rdma_link, 1);
    const char *fail = g_getenv("POSTCOPYD_RDMA_DOUBLE_FAIL_READ");

    l->fd = fd;
    l->source = source;
    l->work_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->cq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g_mutex_init(&l->lock);
    g_queue_init(&l->sq);
    g_queue_init(&l->cq);
    l->fail_at = fail ? g_ascii_strtoull(fail, NULL, 10) : 0;
    return l;
}

static void dbl_close(struct rdma_link *l)
{
    if (!l) {
        return;
    }
    if (l->nic) {
        g_mutex_lock(&l->lock);
        l->stop = true;
        g_mutex_unlock(&l->lock);
        signal_fd(l->work_fd);
        g_thread_join(l->nic);
        g_message(
            "RDMA test double: link from pid %d closed: %" G_GUINT64_FORMAT
            " READs, %" G_GUINT64_FORMAT " bytes read",
            (int)l->peer, l->reads, l->bytes);
    }
    if (l->fd >= 0) {
        close(l->fd);
    }
    close(l->work_fd);
    close(l->cq_fd);
    close(l->event_fd);
    close(l->wake_fd);
    g_queue_clear_full(&l->sq, g_free);
    g_queue_clear_full(&l->cq, g_free);
    g_clear_error(&l->error);
    g_mutex_clear(&l->lock);
    g_free(l);
}

static unsigned dbl_credits(const struct rdma_link *l)
{
    (void)l;
    return RDMA_LINK_CREDITS;
}

static void dbl_wake(struct rdma_link *l)
{
    signal_fd(l->wake_fd);
}

/* ---- the destination's "NIC": it serves the READs posted ---- */

static const struct dbl_mr *find_mr(const struct dbl_mr *t, uint32_t key,
                                    uint64_t addr, uint64_t len)
{
    for (unsigned i = 0; i < MAX_MRS; i++) {
        if (t[i].key == key && t[i].len && addr >= t[i].addr &&
            len <= t[i].len && addr - t[i].addr <= t[i].len - len) {
            return &t[i];
        }
    }
    return NULL;
}

static bool table_set(struct dbl_mr *t, const struct dbl_mr *mr)
{
    for (unsigned i = 0; i < MAX_MRS; i++) {
        if (!t[i].len) {
            t[i] = *mr;
            return true;
        }
    }
    return false;
}

static void table_drop(struct dbl_mr *t, uint32_t key)
{
    for (unsigned i = 0; i < MAX_MRS; i++) {
        if (t[i].key == key) {
            t[i] = (struct dbl_mr){0};
        }
    }
}

/* The bytes, as the responder's NIC would send them: no CPU of its own. */
static enum ibv_wc_status read_peer(struct rdma_link *l,
                                    const struct rdma_read_wr *w)
{
    uint64_t done = 0;

    while (done < w->len) {
        struct iovec to = {w->local + done, w->len - done};
        struct iovec from = {(void *)(uintptr_t)(w->raddr + done),
                             w->len - done};
        ssize_t n = process_vm_readv(l->peer, &to, 1, &from, 1, 0);

        if (n <= 0) {
            g_warning(
                "RDMA test double: READ of %u bytes at 0x%" G_GINT64_MODIFIER
                "x from pid %d: %s",
                w->len, w->raddr, (int)l->peer,
                n < 0 ? g_strerror(errno) : "nothing read");
            /* A peer that is gone does not answer; a bad address is refused. */
            return n < 0 && errno == ESRCH ? IBV_WC_RETRY_EXC_ERR
                                           : IBV_WC_REM_ACCESS_ERR;
        }
        done += (uint64_t)n;
    }
    return IBV_WC_SUCCESS;
}

/* Called with l->lock held; it is dropped around the copy. */
static enum ibv_wc_status serve(struct rdma_link *l,
                                const struct rdma_read_wr *w)
{
    enum ibv_wc_status st;

    if (l->qp_error) {
        return IBV_WC_WR_FLUSH_ERR;
    }
    if (++l->posted == l->fail_at) {
        g_warning("RDMA test double: READ %" G_GUINT64_FORMAT
                  " fails as POSTCOPYD_RDMA_DOUBLE_FAIL_READ asks",
                  l->fail_at);
        return IBV_WC_RETRY_EXC_ERR;
    }
    if (!find_mr(l->local, w->lkey, (uintptr_t)w->local, w->len)) {
        return IBV_WC_LOC_PROT_ERR;
    }
    if (!find_mr(l->remote, w->rkey, w->raddr, w->len)) {
        return IBV_WC_REM_ACCESS_ERR;
    }
    g_mutex_unlock(&l->lock);
    st = read_peer(l, w);
    g_mutex_lock(&l->lock);
    if (st == IBV_WC_SUCCESS) {
        l->reads++;
        l->bytes += w->len;
    }
    return st;
}

static void serve_posted(struct rdma_link *l)
{
    struct rdma_read_wr *w;

    g_mutex_lock(&l->lock);
    while (!l->stop && (w = g_queue_pop_head(&l->sq))) {
        struct dbl_cqe *c = g_new0(struct dbl_cqe, 1);

        c->wr_id = w->wr_id;
        c->status = serve(l, w);
        /* Any error moves a QP to the error state: the rest is flushed. */
        l->qp_error |= c->status != IBV_WC_SUCCESS;
        g_queue_push_tail(&l->cq, c);
        g_free(w);
        signal_fd(l->cq_fd);
    }
    g_mutex_unlock(&l->lock);
}

/* A registration or deregistration from the source; false: link lost. */
static bool serve_peer(struct rdma_link *l)
{
    struct dbl_msg m;
    struct dbl_mr mr;
    bool ok = true;

    if (!recv_msg(l->fd, &m, 0, NULL)) {
        return false;
    }
    g_mutex_lock(&l->lock);
    if (m.kind == DBL_REG) {
        mr = (struct dbl_mr){.addr = m.addr, .len = m.len, .key = m.key};
        ok = table_set(l->remote, &mr);
    } else if (m.kind == DBL_DEREG) {
        table_drop(l->remote, m.key);
    }
    g_mutex_unlock(&l->lock);
    if (m.kind == DBL_REG && ok) {
        ok = send_msg(l->fd, DBL_REG_ACK, 0, 0, m.key, NULL);
    }
    return ok;
}

static bool stopped(struct rdma_link *l)
{
    bool stop;

    g_mutex_lock(&l->lock);
    stop = l->stop;
    g_mutex_unlock(&l->lock);
    return stop;
}

static gpointer nic_thread(gpointer opaque)
{
    struct rdma_link *l = opaque;
    struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN},
                          {.fd = l->work_fd, .events = POLLIN}};

    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR) {
            break;
        }
        if (p[1].revents) {
            drain_fd(l->work_fd);
        }
        if (stopped(l)) {
            return NULL;
        }
        if (p[0].revents && !serve_peer(l)) {
            break;
        }
        serve_posted(l);
    }
    /* The source is gone: the QP goes to error, the event is reported. */
    g_mutex_lock(&l->lock);
    l->qp_error = l->disconnected = true;
    g_mutex_unlock(&l->lock);
    signal_fd(l->event_fd);
    for (;;) {
        serve_posted(l);
        if (stopped(l)) {
            return NULL;
        }
        if (poll(&p[1], 1, -1) > 0) {
            drain_fd(l->work_fd);
        }
    }
}

/* ---- registration ---- */

static struct rdma_link_mr *dbl_register(struct rdma_link *l, void *addr,
                                         size_t len, bool remote_read,
                                         GError **err)
{
    struct dbl_mr mr = {.l = l,
                        .addr = (uintptr_t)addr,
                        .len = len,
                        .key = g_random_int_range(1, G_MAXINT32),
                        .remote = remote_read};
    struct dbl_msg ack;
    bool ok;

    g_mutex_lock(&l->lock);
    ok = table_set(l->local, &mr);
    g_mutex_unlock(&l->lock);
    if (!ok) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "RDMA test double: more than %d registrations", MAX_MRS);
        return NULL;
    }
    /* The peer's "NIC" must know the key before anyone may use it. */
    if (remote_read && (!send_msg(l->fd, DBL_REG, mr.addr, len, mr.key, err) ||
                        !recv_msg(l->fd, &ack, REG_ACK_MS, err) ||
                        ack.kind != DBL_REG_ACK || ack.key != mr.key)) {
        if (err && !*err) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "RDMA test double: registration not acknowledged");
        }
        g_prefix_error(err, "register %zu bytes: ", len);
        return NULL;
    }
    g_info("RDMA test double: registered %zu MiB (key 0x%x) %s", len >> 20,
           mr.key, remote_read ? "for the peer's READs" : "for local writes");
    return (struct rdma_link_mr *)g_memdup2(&mr, sizeof(mr));
}

static uint32_t dbl_mr_key(const struct rdma_link_mr *mr)
{
    return ((const struct dbl_mr *)mr)->key;
}

static void dbl_deregister(struct rdma_link_mr *m)
{
    struct dbl_mr *mr = (struct dbl_mr *)m;

    g_mutex_lock(&mr->l->lock);
    table_drop(mr->l->local, mr->key);
    g_mutex_unlock(&mr->l->lock);
    if (mr->remote) {
        send_msg(mr->l->fd, DBL_DEREG, 0, 0, mr->key, NULL);
    }
    g_free(mr);
}

/* ---- READs: posted to the NIC thread, completions reaped ---- */

static bool dbl_post(struct rdma_link *l, struct rdma_read_queue *q,
                     GError **err)
{
    struct rdma_read_wr w;
    unsigned n = 0;

    (void)err; /* a QP in error takes posts and flushes them, as mlx5 does */
    g_mutex_lock(&l->lock);
    while (rdma_read_queue_next(q, &w)) {
        g_queue_push_tail(&l->sq, g_memdup2(&w, sizeof(w)));
        n++;
    }
    g_mutex_unlock(&l->lock);
    if (n) {
        signal_fd(l->work_fd);
    }
    return true;
}

/* As rdma.c's reap(): a failed completion is reported after the others. */
static int reap(struct rdma_link *l, struct rdma_read_queue *q,
                struct rdma_read_done *done, int max, GError **err)
{
    struct dbl_cqe *c[REAP_BATCH];
    int n = 0, got = 0;

    g_mutex_lock(&l->lock);
    while (n < MIN(max, REAP_BATCH) && (c[n] = g_queue_pop_head(&l->cq))) {
        n++;
    }
    g_mutex_unlock(&l->lock);
    for (int i = 0; i < n; i++) {
        bool ok = c[i]->status == IBV_WC_SUCCESS;

        if (!ok && !l->error) {
            rdma_wc_check(c[i]->status, 0, &l->error);
        }
        if (rdma_read_queue_complete(q, c[i]->wr_id, ok, &done[got],
                                     l->error ? NULL : &l->error)) {
            got++;
        }
        g_free(c[i]);
    }
    if (!got && l->error) {
        g_propagate_error(err, g_steal_pointer(&l->error));
        return -1;
    }
    return got;
}

/* As rdma.c's wait_cq(): completions, the link's event, or a wake. */
static bool wait_cq(struct rdma_link *l, int timeout_ms, GError **err)
{
    struct pollfd p[3] = {{.fd = l->cq_fd, .events = POLLIN},
                          {.fd = l->event_fd, .events = POLLIN},
                          {.fd = l->wake_fd, .events = POLLIN}};
    int r;

    do {
        r = poll(p, 3, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno_error(err, errno, "poll");
    }
    if (p[2].revents) {
        drain_fd(l->wake_fd);
    }
    if (p[0].revents) {
        drain_fd(l->cq_fd);
    }
    if (p[1].revents) {
        return rdma_cm_expect(RDMA_CM_EVENT_DISCONNECTED, 0,
                              RDMA_CM_EVENT_ESTABLISHED, err);
    }
    return true;
}

static int dbl_poll(struct rdma_link *l, struct rdma_read_queue *q,
                    struct rdma_read_done *done, int max, int timeout_ms,
                    GError **err)
{
    int got = reap(l, q, done, max, err);

    if (got != 0 || l->error || !timeout_ms ||
        !rdma_read_queue_outstanding(q)) {
        return got;
    }
    if (!wait_cq(l, timeout_ms, err)) {
        return -1;
    }
    return reap(l, q, done, max, err);
}

/* ---- the "rdma_cm" connection ---- */

static struct rdma_link_listener *dbl_listen(const char *address, GError **err)
{
    struct rdma_link_listener *ll = g_new0(struct rdma_link_listener, 1);
    struct transport_options o;

    transport_options_init(&o);
    ll->fd = tcp_socket_listen(address, &o, &ll->address, err);
    if (ll->fd < 0) {
        g_prefix_error(err, "RDMA test double: listen on %s: ", address);
        g_free(ll);
        return NULL;
    }
    g_warning("TEST DOUBLE: the READ link on %s is the RDMA test double "
              "(process_vm_readv of the source daemon), not an RDMA NIC",
              ll->address);
    return ll;
}

static const char *dbl_listener_address(const struct rdma_link_listener *ll)
{
    return ll->address;
}

static void dbl_listener_close(struct rdma_link_listener *ll)
{
    if (!ll) {
        return;
    }
    close(ll->fd);
    g_free(ll->address);
    g_free(ll);
}

static struct rdma_link *dbl_accept(struct rdma_link_listener *ll,
                                    unsigned timeout_ms, GError **err)
{
    struct pollfd p = {.fd = ll->fd, .events = POLLIN};
    struct rdma_link *l;
    struct dbl_msg hello;
    int fd;

    if (poll(&p, 1, timeout_ms ? (int)timeout_ms : -1) != 1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "RDMA connection: no answer within %u ms", timeout_ms);
        return NULL;
    }
    fd = accept4(ll->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        errno_error(err, errno, "RDMA test double: accept");
        return NULL;
    }
    l = link_new(fd, false);
    if (!recv_msg(fd, &hello, timeout_ms ? (int)timeout_ms : -1, err) ||
        hello.kind != DBL_HELLO || !hello.addr) {
        g_prefix_error(err, "RDMA accept: ");
        if (err && !*err) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "RDMA accept: no hello from the test double");
        }
        dbl_close(l);
        return NULL;
    }
    l->peer = (pid_t)hello.addr;
    l->nic = g_thread_new("rdma-double-nic", nic_thread, l);
    g_warning("TEST DOUBLE: READ link from pid %d up: the RDMA test double "
              "reads its memory with process_vm_readv",
              (int)l->peer);
    return l;
}

static struct rdma_link *dbl_connect(const char *address, unsigned timeout_ms,
                                     GError **err)
{
    struct transport_options o;
    int fd;

    transport_options_init(&o);
    o.connect_timeout_ms = timeout_ms;
    fd = tcp_socket_connect(address, CHANNEL_CONTROL, &o, err);
    if (fd < 0 || !send_msg(fd, DBL_HELLO, (uint64_t)getpid(), 0, 0, err)) {
        if (fd >= 0) {
            close(fd);
        }
        g_prefix_error(err, "RDMA link to %s: ", address);
        return NULL;
    }
    g_warning("TEST DOUBLE: READ link to %s is the RDMA test double, not an "
              "RDMA NIC",
              address);
    return link_new(fd, true);
}

static const struct rdma_link_ops double_link_ops = {
    .listen = dbl_listen,
    .accept = dbl_accept,
    .listener_address = dbl_listener_address,
    .listener_close = dbl_listener_close,
    .connect = dbl_connect,
    .close = dbl_close,
    .credits = dbl_credits,
    .reg = dbl_register,
    .mr_lkey = dbl_mr_key,
    .mr_rkey = dbl_mr_key,
    .dereg = dbl_deregister,
    .post = dbl_post,
    .poll = dbl_poll,
    .wake = dbl_wake,
};

/* ---- the transport: frames on TCP, READs on the double ---- */

static struct listener *double_listen(const char *address,
                                      const struct transport_options *o,
                                      GError **err)
{
    g_warning("TEST DOUBLE: transport rdma-test-double: RDMA READs are "
              "served by a test double of the NIC (process_vm_readv of the "
              "peer daemon on this machine); never use it in production");
    return transport_tcp()->listen(address, o, err);
}

static struct channel *double_connect(const char *address,
                                      enum channel_kind kind, uint32_t stream,
                                      const struct transport_options *o,
                                      GError **err)
{
    return transport_tcp()->connect(address, kind, stream, o, err);
}

static const struct transport double_transport = {
    .name = "rdma-test-double",
    .remote = &rdma_remote_ops,
    .remote_priv = &double_link_ops,
    .listen = double_listen,
    .connect = double_connect,
};

const struct transport *transport_rdma_double(void)
{
    if (g_strcmp0(g_getenv("POSTCOPYD_TEST_DOUBLES"), "1")) {
        return NULL;
    }
    return &double_transport;
}
