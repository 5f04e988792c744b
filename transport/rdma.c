/*
 * rdma.c - every libibverbs and librdmacm call of postcopyd (rdma.h).
 *
 * Nothing here runs on the machines this project is built and tested on:
 * they have no RDMA device.  It compiles and links with -Werror in every
 * build that has the packages; what it does on a device is untested (see
 * docs/rdma.md).  Keep it small: decisions are made by the plain-data
 * files (rdma_mr.c, rdma_read.c, rdma_error.c), which are tested.
 */
#include "rdma.h"
#include "transport_impl.h"
#include "address.h"
#include "rdma_error.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <string.h>
#include <netinet/in.h>
#include <gio/gio.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "errno_error.h"

/* READs chained into one ibv_post_send(): one doorbell per batch. */
#define POST_BATCH     16
#define LISTEN_BACKLOG 16
/* Hardware retries before a silent peer fails the QP (the maximum). */
#define RETRY_COUNT     7
#define RNR_RETRY_COUNT 6

struct rdma_link {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;
    unsigned credits;
    bool odp_read;  /* the device offers on-demand paging for RC READ */
    bool connected; /* rdma_disconnect() on close */
    int wake_fd;    /* an eventfd: rdma_link_wake() ends a wait */
    GError *error;  /* a failed completion not reported yet */
};

struct rdma_link_listener {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    char *address; /* bound, real port */
};

struct rdma_link_mr {
    struct ibv_mr *mr;
    bool odp;
};

bool rdma_device_probe(GError **err)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);

    if (!list) {
        return errno_error(err, errno,
                           "ibv_get_device_list found no RDMA device");
    }
    ibv_free_device_list(list);
    if (n == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "ibv_get_device_list found no RDMA device");
        return false;
    }
    return true;
}

/* ---- rdma_cm events ---- */

static bool set_nonblock(int fd, GError **err)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return errno_error(err, errno, "fcntl O_NONBLOCK");
    }
    return true;
}

static struct rdma_event_channel *event_channel_new(GError **err)
{
    struct rdma_event_channel *ec = rdma_create_event_channel();

    if (!ec) {
        errno_error(err, errno, "rdma_create_event_channel");
        return NULL;
    }
    if (!set_nonblock(ec->fd, err)) {
        rdma_destroy_event_channel(ec);
        return NULL;
    }
    return ec;
}

/*
 * The next event on @ec within @timeout_ms (0: for ever), which must be
 * @want; *@id (if asked) is the id it concerns (a new one on a request).
 */
static bool wait_event(struct rdma_event_channel *ec,
                       enum rdma_cm_event_type want, unsigned timeout_ms,
                       struct rdma_cm_id **id, GError **err)
{
    struct pollfd p = {.fd = ec->fd, .events = POLLIN};
    struct rdma_cm_event *ev;
    enum rdma_cm_event_type got;
    int status, r;

    do {
        r = poll(&p, 1, timeout_ms ? (int)timeout_ms : -1);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "RDMA connection: no answer within %u ms", timeout_ms);
        return false;
    }
    if (r < 0 || rdma_get_cm_event(ec, &ev) < 0) {
        return errno_error(err, errno, "rdma_get_cm_event");
    }
    got = ev->event;
    status = ev->status;
    if (id) {
        *id = ev->id;
    }
    rdma_ack_cm_event(ev);
    return rdma_cm_expect(got, status, want, err);
}

/* ---- queue pair ---- */

static struct rdma_link *link_new(void)
{
    struct rdma_link *l = g_new0(struct rdma_link, 1);

    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return l;
}

void rdma_link_wake(struct rdma_link *l)
{
    uint64_t one = 1;

    if (write(l->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: a wake is pending already; nothing else can fail. */
    }
}

static bool query_device(struct rdma_link *l, struct ibv_device_attr_ex *a,
                         GError **err)
{
    int e = ibv_query_device_ex(l->id->verbs, NULL, a);

    if (e) {
        return errno_error(err, e, "ibv_query_device_ex");
    }
    l->credits = MIN(RDMA_LINK_CREDITS, (unsigned)a->orig_attr.max_qp_wr);
    l->credits = MIN(l->credits, (unsigned)a->orig_attr.max_cqe);
    l->odp_read =
        (a->odp_caps.general_caps & IBV_ODP_SUPPORT) &&
        (a->odp_caps.per_transport_caps.rc_odp_caps & IBV_ODP_SUPPORT_READ);
    return true;
}

/* PD, a CQ with a completion channel, and an RC QP sized by the credits. */
static bool create_qp(struct rdma_link *l, struct ibv_device_attr_ex *a,
                      GError **err)
{
    struct ibv_qp_init_attr qa = {0};
    int e;

    if (!query_device(l, a, err)) {
        return false;
    }
    l->pd = ibv_alloc_pd(l->id->verbs);
    if (!l->pd) {
        return errno_error(err, errno, "ibv_alloc_pd");
    }
    l->cc = ibv_create_comp_channel(l->id->verbs);
    if (!l->cc || !set_nonblock(l->cc->fd, err)) {
        return l->cc ? false
                     : errno_error(err, errno, "ibv_create_comp_channel");
    }
    l->cq = ibv_create_cq(l->id->verbs, l->credits, NULL, l->cc, 0);
    if (!l->cq) {
        return errno_error(err, errno, "ibv_create_cq");
    }
    e = ibv_req_notify_cq(l->cq, 0);
    if (e) {
        return errno_error(err, e, "ibv_req_notify_cq");
    }
    qa.send_cq = qa.recv_cq = l->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.sq_sig_all = 1; /* every READ completes: that is how credits return */
    qa.cap.max_send_wr = l->credits;
    qa.cap.max_recv_wr = 1;
    qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
    if (rdma_create_qp(l->id, l->pd, &qa)) {
        return errno_error(err, errno, "rdma_create_qp");
    }
    return true;
}

/* Both directions: the destination READs, the source answers READs. */
static struct rdma_conn_param conn_param(const struct ibv_device_attr_ex *a)
{
    return (struct rdma_conn_param){
        .responder_resources = MIN(a->orig_attr.max_qp_rd_atom, 255),
        .initiator_depth = MIN(a->orig_attr.max_qp_init_rd_atom, 255),
        .retry_count = RETRY_COUNT,
        /* Nothing is ever SENT, so no receiver can be "not ready"; and 7
         * would mean retrying for ever. */
        .rnr_retry_count = RNR_RETRY_COUNT,
    };
}

void rdma_link_close(struct rdma_link *l)
{
    if (!l) {
        return;
    }
    if (l->connected) {
        rdma_disconnect(l->id);
    }
    if (l->id && l->id->qp) {
        rdma_destroy_qp(l->id);
    }
    if (l->cq) {
        ibv_destroy_cq(l->cq);
    }
    if (l->cc) {
        ibv_destroy_comp_channel(l->cc);
    }
    if (l->pd) {
        ibv_dealloc_pd(l->pd);
    }
    if (l->id) {
        rdma_destroy_id(l->id);
    }
    if (l->ec) {
        rdma_destroy_event_channel(l->ec);
    }
    if (l->wake_fd >= 0) {
        close(l->wake_fd);
    }
    g_clear_error(&l->error);
    g_free(l);
}

unsigned rdma_link_credits(const struct rdma_link *l)
{
    return l->credits;
}

static bool resolve_one(const char *address, bool passive,
                        struct addrinfo **res, GError **err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags =
                                 AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    g_autofree char *host = NULL;
    char service[8];
    uint16_t port;
    int rc;

    if (!address_parse(address, &host, &port, err)) {
        return false;
    }
    g_snprintf(service, sizeof(service), "%u", port);
    rc = getaddrinfo(host, service, &hints, res);
    if (rc) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_HOST_NOT_FOUND,
                    "cannot resolve '%s': %s", address, gai_strerror(rc));
        return false;
    }
    return true;
}

static bool connect_steps(struct rdma_link *l, const struct addrinfo *ai,
                          unsigned timeout_ms, GError **err)
{
    struct ibv_device_attr_ex a;
    struct rdma_conn_param p;
    int ms = timeout_ms ? (int)timeout_ms : 10000;

    if (rdma_resolve_addr(l->id, NULL, ai->ai_addr, ms)) {
        return errno_error(err, errno, "rdma_resolve_addr");
    }
    if (!wait_event(l->ec, RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms, NULL,
                    err)) {
        return false;
    }
    if (rdma_resolve_route(l->id, ms)) {
        return errno_error(err, errno, "rdma_resolve_route");
    }
    if (!wait_event(l->ec, RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_ms, NULL,
                    err) ||
        !create_qp(l, &a, err)) {
        return false;
    }
    p = conn_param(&a);
    if (rdma_connect(l->id, &p)) {
        return errno_error(err, errno, "rdma_connect");
    }
    if (!wait_event(l->ec, RDMA_CM_EVENT_ESTABLISHED, timeout_ms, NULL, err)) {
        return false;
    }
    l->connected = true;
    return true;
}

struct rdma_link *rdma_link_connect(const char *address, unsigned timeout_ms,
                                    GError **err)
{
    struct rdma_link *l = link_new();
    struct addrinfo *res = NULL;
    bool ok;

    if (l->wake_fd < 0) {
        errno_error(err, errno, "eventfd");
        goto fail;
    }
    l->ec = event_channel_new(err);
    if (!l->ec || !resolve_one(address, false, &res, err)) {
        goto fail;
    }
    if (rdma_create_id(l->ec, &l->id, NULL, RDMA_PS_TCP)) {
        errno_error(err, errno, "rdma_create_id");
        goto fail;
    }
    ok = connect_steps(l, res, timeout_ms, err);
    freeaddrinfo(res);
    if (ok) {
        return l;
    }
fail:
    g_prefix_error(err, "RDMA link to %s: ", address);
    rdma_link_close(l);
    return NULL;
}

void rdma_link_listener_close(struct rdma_link_listener *ll)
{
    if (!ll) {
        return;
    }
    if (ll->id) {
        rdma_destroy_id(ll->id);
    }
    if (ll->ec) {
        rdma_destroy_event_channel(ll->ec);
    }
    g_free(ll->address);
    g_free(ll);
}

struct rdma_link_listener *rdma_link_listen(const char *address, GError **err)
{
    struct rdma_link_listener *ll = g_new0(struct rdma_link_listener, 1);
    struct addrinfo *res = NULL;

    ll->ec = event_channel_new(err);
    if (!ll->ec || !resolve_one(address, true, &res, err)) {
        goto fail;
    }
    if (rdma_create_id(ll->ec, &ll->id, NULL, RDMA_PS_TCP) ||
        rdma_bind_addr(ll->id, res->ai_addr) ||
        rdma_listen(ll->id, LISTEN_BACKLOG)) {
        errno_error(err, errno, "rdma_cm listen");
        goto fail;
    }
    ll->address = address_format(rdma_get_local_addr(ll->id), res->ai_addrlen);
    freeaddrinfo(res);
    return ll;

fail:
    if (res) {
        freeaddrinfo(res);
    }
    g_prefix_error(err, "RDMA listen on %s: ", address);
    rdma_link_listener_close(ll);
    return NULL;
}

const char *rdma_link_listener_address(const struct rdma_link_listener *ll)
{
    return ll->address;
}

struct rdma_link *rdma_link_accept(struct rdma_link_listener *ll,
                                   unsigned timeout_ms, GError **err)
{
    struct rdma_link *l = link_new();
    struct ibv_device_attr_ex a;
    struct rdma_conn_param p;

    if (l->wake_fd < 0 || !wait_event(ll->ec, RDMA_CM_EVENT_CONNECT_REQUEST,
                                      timeout_ms, &l->id, err)) {
        if (l->wake_fd < 0) {
            errno_error(err, errno, "eventfd");
        }
        rdma_link_close(l);
        return NULL;
    }
    if (!create_qp(l, &a, err)) {
        /* Refuse it, or the peer waits for its timeout. */
        rdma_reject(l->id, NULL, 0);
        goto fail;
    }
    p = conn_param(&a);
    if (rdma_accept(l->id, &p)) {
        errno_error(err, errno, "rdma_accept");
        goto fail;
    }
    if (!wait_event(ll->ec, RDMA_CM_EVENT_ESTABLISHED, timeout_ms, NULL, err)) {
        goto fail;
    }
    l->connected = true;
    /* Its later events (a disconnect) on a channel of its own. */
    l->ec = event_channel_new(err);
    if (!l->ec || rdma_migrate_id(l->id, l->ec)) {
        if (l->ec) {
            errno_error(err, errno, "rdma_migrate_id");
        }
        goto fail;
    }
    return l;

fail:
    g_prefix_error(err, "RDMA accept: ");
    rdma_link_close(l);
    return NULL;
}

/* ---- memory registration ---- */

struct rdma_link_mr *rdma_link_register(struct rdma_link *l, void *addr,
                                        size_t len, bool remote_read,
                                        GError **err)
{
    /* The source's guest RAM is only read: never writable by the NIC. */
    int access =
        (remote_read ? IBV_ACCESS_REMOTE_READ : IBV_ACCESS_LOCAL_WRITE) |
        (l->odp_read ? IBV_ACCESS_ON_DEMAND : 0);
    int64_t t0 = g_get_monotonic_time();
    struct ibv_mr *mr = ibv_reg_mr(l->pd, addr, len, access);
    struct rdma_link_mr *m;

    if (!mr) {
        errno_error(err, errno, "ibv_reg_mr of %zu bytes (%s)", len,
                    l->odp_read ? "on-demand paging" : "pinned");
        return NULL;
    }
    /* The registration cost the docs ask operators to look at. */
    g_info("RDMA: registered %zu MiB %s in %.1f ms", len >> 20,
           l->odp_read ? "with on-demand paging" : "pinned",
           (g_get_monotonic_time() - t0) / 1000.0);
    m = g_new0(struct rdma_link_mr, 1);
    m->mr = mr;
    m->odp = l->odp_read;
    return m;
}

uint32_t rdma_link_mr_lkey(const struct rdma_link_mr *mr)
{
    return mr->mr->lkey;
}

uint32_t rdma_link_mr_rkey(const struct rdma_link_mr *mr)
{
    return mr->mr->rkey;
}

bool rdma_link_mr_odp(const struct rdma_link_mr *mr)
{
    return mr->odp;
}

void rdma_link_deregister(struct rdma_link_mr *mr)
{
    if (!mr) {
        return;
    }
    ibv_dereg_mr(mr->mr);
    g_free(mr);
}

/* ---- READs ---- */

bool rdma_link_post(struct rdma_link *l, struct rdma_read_queue *q,
                    GError **err)
{
    struct ibv_send_wr wr[POST_BATCH], *bad = NULL;
    struct ibv_sge sge[POST_BATCH];
    struct rdma_read_wr w;
    int n, e;

    do {
        for (n = 0; n < POST_BATCH && rdma_read_queue_next(q, &w); n++) {
            sge[n] = (struct ibv_sge){(uintptr_t)w.local, w.len, w.lkey};
            wr[n] = (struct ibv_send_wr){
                .wr_id = w.wr_id,
                .next = n + 1 < POST_BATCH ? &wr[n + 1] : NULL,
                .sg_list = &sge[n],
                .num_sge = 1,
                .opcode = IBV_WR_RDMA_READ,
                .wr.rdma = {.remote_addr = w.raddr, .rkey = w.rkey},
            };
        }
        if (!n) {
            return true;
        }
        wr[n - 1].next = NULL;
        e = ibv_post_send(l->id->qp, wr, &bad);
        if (e) {
            /* The credits sized the queue: a full one is a bug, an error
             * state the link's end (the completions flush). */
            return errno_error(err, e, "ibv_post_send of %d READs", n);
        }
    } while (n == POST_BATCH);
    return true;
}

/* A disconnect or device removal waiting on the link's event channel. */
static bool check_events(struct rdma_link *l, GError **err)
{
    struct rdma_cm_event *ev;
    enum rdma_cm_event_type got;
    int status;

    if (rdma_get_cm_event(l->ec, &ev) < 0) {
        return errno == EAGAIN || errno_error(err, errno, "rdma_get_cm_event");
    }
    got = ev->event;
    status = ev->status;
    rdma_ack_cm_event(ev);
    l->connected = false;
    return rdma_cm_expect(got, status, RDMA_CM_EVENT_ESTABLISHED, err);
}

/*
 * Sleep until the CQ or the event channel has something, re-armed, or
 * rdma_link_wake() was called.
 */
static bool wait_cq(struct rdma_link *l, int timeout_ms, GError **err)
{
    struct pollfd p[3] = {{.fd = l->cc->fd, .events = POLLIN},
                          {.fd = l->ec->fd, .events = POLLIN},
                          {.fd = l->wake_fd, .events = POLLIN}};
    struct ibv_cq *cq;
    uint64_t woken;
    void *ctx;
    int r;

    do {
        r = poll(p, 3, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno_error(err, errno, "poll");
    }
    if (p[2].revents && read(l->wake_fd, &woken, sizeof(woken)) < 0) {
        /* EAGAIN: another wait consumed it first. */
    }
    if (p[1].revents && !check_events(l, err)) {
        return false;
    }
    if (p[0].revents && ibv_get_cq_event(l->cc, &cq, &ctx) == 0) {
        ibv_ack_cq_events(cq, 1);
        r = ibv_req_notify_cq(l->cq, 0);
        if (r) {
            return errno_error(err, r, "ibv_req_notify_cq");
        }
    }
    return true;
}

/*
 * Reap up to @max completions into @done.  A failed one is kept in
 * l->error and reported once the requests it finished are handed back.
 */
static int reap(struct rdma_link *l, struct rdma_read_queue *q,
                struct rdma_read_done *done, int max, GError **err)
{
    struct ibv_wc wc[POST_BATCH];
    int n, got = 0;

    n = ibv_poll_cq(l->cq, MIN(max, POST_BATCH), wc);
    if (n < 0) {
        errno_error(err, EIO, "ibv_poll_cq");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        bool ok = wc[i].status == IBV_WC_SUCCESS;

        if (!ok && !l->error) {
            rdma_wc_check(wc[i].status, wc[i].vendor_err, &l->error);
        }
        if (rdma_read_queue_complete(q, wc[i].wr_id, ok, &done[got],
                                     l->error ? NULL : &l->error)) {
            got++;
        }
    }
    if (!got && l->error) {
        g_propagate_error(err, g_steal_pointer(&l->error));
        return -1;
    }
    return got;
}

int rdma_link_poll(struct rdma_link *l, struct rdma_read_queue *q,
                   struct rdma_read_done *done, int max, int timeout_ms,
                   GError **err)
{
    int got = reap(l, q, done, max, err);

    if (got != 0 || l->error || !timeout_ms ||
        !rdma_read_queue_outstanding(q)) {
        return got;
    }
    /* Armed before the first reap: a completion since then wakes us. */
    if (!wait_cq(l, timeout_ms, err)) {
        return -1;
    }
    return reap(l, q, done, max, err);
}

const struct rdma_link_ops rdma_verbs_link_ops = {
    .listen = rdma_link_listen,
    .accept = rdma_link_accept,
    .listener_address = rdma_link_listener_address,
    .listener_close = rdma_link_listener_close,
    .connect = rdma_link_connect,
    .close = rdma_link_close,
    .credits = rdma_link_credits,
    .reg = rdma_link_register,
    .mr_lkey = rdma_link_mr_lkey,
    .mr_rkey = rdma_link_mr_rkey,
    .dereg = rdma_link_deregister,
    .post = rdma_link_post,
    .poll = rdma_link_poll,
    .wake = rdma_link_wake,
};

/* ---- the transport: frames on TCP, on a host with an RDMA device ---- */

static struct listener *transport_rdma_listen(const char *address,
                                              const struct transport_options *o,
                                              GError **err)
{
    if (!rdma_device_probe(err)) {
        return NULL;
    }
    return transport_tcp()->listen(address, o, err);
}

static struct channel *rdma_connect_channel(const char *address,
                                            enum channel_kind kind,
                                            uint32_t stream,
                                            const struct transport_options *o,
                                            GError **err)
{
    if (!rdma_device_probe(err)) {
        return NULL;
    }
    return transport_tcp()->connect(address, kind, stream, o, err);
}

static const struct transport rdma_transport = {
    .name = "rdma",
    .probe = rdma_device_probe,
    .remote = &rdma_remote_ops,
    .remote_priv = &rdma_verbs_link_ops,
    .listen = transport_rdma_listen,
    .connect = rdma_connect_channel,
};

const struct transport *transport_rdma(void)
{
    return &rdma_transport;
}
