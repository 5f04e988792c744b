/*
 * rdma_remote.c - remote_read.h for the rdma transports: the READ link
 * (rdma.h's link ops), the region table (rdma_mr.h) and the READ queue
 * (rdma_read.h) behind the transport-neutral interface the engine calls.
 *
 * No verbs call here: every link call goes to the transport's link ops,
 * the verbs (rdma.c) or the test double of the NIC (rdma_double.c).  On
 * a real device none of it has run (docs/rdma.md); on the test double
 * all of it runs in make check.
 */
#include "rdma.h"
#include "transport_impl.h"

#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

struct rdma_remote_listener {
    struct remote_listener base;
    const struct rdma_link_ops *v;
    struct rdma_link_listener *ll;
    uint16_t port;
};

/* Where one table entry's pages land at the destination. */
struct target {
    uint8_t *local;
    struct rdma_link_mr *mr;
};

struct rdma_remote {
    struct remote_link base;
    const struct rdma_link_ops *v;
    struct rdma_link *link;
    /* Source: what it offered; destination: what it took. */
    struct rdma_mr_table table;
    struct rdma_link_mr *offered[RDMA_MR_MAX]; /* source, by entry */
    struct target targets[RDMA_MR_MAX];        /* destination, by entry */
    struct rdma_read_queue *q;                 /* destination */
};

static struct rdma_remote *of(const struct remote_link *l)
{
    return (struct rdma_remote *)l;
}

static const struct rdma_link_ops *link_ops(const struct transport *t)
{
    return t->remote_priv;
}

static struct remote_link *wrap(const struct rdma_link_ops *v,
                                struct rdma_link *link)
{
    struct rdma_remote *r;

    if (!link) {
        return NULL;
    }
    r = g_new0(struct rdma_remote, 1);
    r->base.ops = &rdma_remote_ops;
    r->v = v;
    r->link = link;
    rdma_mr_table_init(&r->table);
    return &r->base;
}

static struct remote_listener *rr_listen(const struct transport *t,
                                         const char *host, GError **err)
{
    const struct rdma_link_ops *v = link_ops(t);
    g_autofree char *addr = g_strdup_printf(
        strchr(host ? host : "", ':') ? "[%s]:0" : "%s:0", host ? host : "");
    struct rdma_link_listener *ll = v->listen(addr, err);
    struct rdma_remote_listener *l;
    const char *bound;

    if (!ll) {
        return NULL;
    }
    bound = strrchr(v->listener_address(ll), ':');
    l = g_new0(struct rdma_remote_listener, 1);
    l->base.ops = &rdma_remote_ops;
    l->v = v;
    l->ll = ll;
    l->port = bound ? (uint16_t)strtoul(bound + 1, NULL, 10) : 0;
    return &l->base;
}

static uint16_t rr_listener_port(const struct remote_listener *l)
{
    return ((const struct rdma_remote_listener *)l)->port;
}

static struct remote_link *rr_accept(struct remote_listener *l,
                                     unsigned timeout_ms, GError **err)
{
    struct rdma_remote_listener *rl = (struct rdma_remote_listener *)l;

    return wrap(rl->v, rl->v->accept(rl->ll, timeout_ms, err));
}

static void rr_listener_close(struct remote_listener *l)
{
    struct rdma_remote_listener *rl = (struct rdma_remote_listener *)l;

    rl->v->listener_close(rl->ll);
    g_free(rl);
}

static struct remote_link *rr_connect(const struct transport *t,
                                      const char *address, unsigned timeout_ms,
                                      GError **err)
{
    const struct rdma_link_ops *v = link_ops(t);

    return wrap(v, v->connect(address, timeout_ms, err));
}

static bool rr_offer(struct remote_link *l, uint32_t region, void *addr,
                     uint64_t len, uint64_t page_size, GError **err)
{
    struct rdma_remote *r = of(l);
    struct rdma_mr_entry e = {.region = region,
                              .addr = (uintptr_t)addr,
                              .length = len,
                              .page_size = (uint32_t)page_size};
    struct rdma_link_mr *mr;

    /* Checked before a byte is registered: the table must take it. */
    if (!rdma_mr_table_add(&(struct rdma_mr_table){.n = 0}, &e, err)) {
        return false;
    }
    mr = r->v->reg(r->link, addr, len, true, err);
    if (!mr) {
        return false;
    }
    e.rkey = r->v->mr_rkey(mr);
    if (!rdma_mr_table_add(&r->table, &e, err)) {
        r->v->dereg(mr);
        return false;
    }
    r->offered[r->table.n - 1] = mr;
    return true;
}

static GBytes *rr_table(struct remote_link *l)
{
    uint8_t *buf = g_malloc(RDMA_MR_MSG_MAX);
    size_t len = rdma_mr_encode(&of(l)->table, buf);

    return g_bytes_new_take(buf, len);
}

static bool rr_take_table(struct remote_link *l, const uint8_t *buf, size_t len,
                          const struct remote_region *layout, unsigned n,
                          GError **err)
{
    struct rdma_remote *r = of(l);

    if (!rdma_mr_decode(buf, len, &r->table, err) ||
        !rdma_mr_check_layout(&r->table, layout, n, err)) {
        rdma_mr_table_init(&r->table);
        return false;
    }
    r->q = rdma_read_queue_new(&r->table, r->v->credits(r->link),
                               RDMA_LINK_MAX_READ);
    return true;
}

static int entry_of(const struct rdma_remote *r, uint32_t region)
{
    const struct rdma_mr_entry *e = rdma_mr_table_find(&r->table, region);

    return e ? (int)(e - r->table.e) : -1;
}

static bool rr_readable(const struct remote_link *l, uint32_t region)
{
    return entry_of(of(l), region) >= 0;
}

static bool rr_target(struct remote_link *l, uint32_t region, void *local,
                      uint64_t len, GError **err)
{
    struct rdma_remote *r = of(l);
    int i = entry_of(r, region);

    if (i < 0 || r->table.e[i].length != len) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "region %u: no readable region of %" G_GUINT64_FORMAT
                    " bytes to target",
                    region, len);
        return false;
    }
    r->targets[i].mr = r->v->reg(r->link, local, len, false, err);
    r->targets[i].local = local;
    return r->targets[i].mr != NULL;
}

static bool rr_add(struct remote_link *l, uint32_t region, uint64_t offset,
                   uint64_t len, uint64_t cookie, bool urgent, GError **err)
{
    struct rdma_remote *r = of(l);
    int i = entry_of(r, region);
    struct rdma_read_req req;

    if (i < 0 || !r->targets[i].mr || !r->q) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "region %u is not read with RDMA", region);
        return false;
    }
    req = (struct rdma_read_req){
        .region = region,
        .offset = offset,
        .len = len,
        .local = r->targets[i].local + offset,
        .lkey = r->v->mr_lkey(r->targets[i].mr),
        .cookie = cookie,
    };
    return urgent ? rdma_read_queue_add_urgent(r->q, &req, err)
                  : rdma_read_queue_add(r->q, &req, err);
}

static bool rr_post(struct remote_link *l, GError **err)
{
    return of(l)->v->post(of(l)->link, of(l)->q, err);
}

static int rr_poll(struct remote_link *l, struct remote_done *done, int max,
                   int timeout_ms, GError **err)
{
    struct rdma_read_done d[RDMA_LINK_CREDITS];
    int n = of(l)->v->poll(of(l)->link, of(l)->q, d,
                           MIN(max, RDMA_LINK_CREDITS), timeout_ms, err);

    for (int i = 0; i < n; i++) {
        done[i] = (struct remote_done){.cookie = d[i].cookie, .ok = d[i].ok};
    }
    return n;
}

static void rr_wake(struct remote_link *l)
{
    of(l)->v->wake(of(l)->link);
}

static unsigned rr_credits(const struct remote_link *l)
{
    return of(l)->v->credits(of(l)->link);
}

static unsigned rr_pending(const struct remote_link *l)
{
    return of(l)->q ? rdma_read_queue_pending(of(l)->q) : 0;
}

static bool rr_reset(struct remote_link *l, struct remote_done *done)
{
    struct rdma_read_done d;

    if (!of(l)->q || !rdma_read_queue_reset(of(l)->q, &d)) {
        return false;
    }
    *done = (struct remote_done){.cookie = d.cookie, .ok = false};
    return true;
}

static void rr_close(struct remote_link *l)
{
    struct rdma_remote *r = of(l);

    rdma_read_queue_free(r->q);
    for (unsigned i = 0; i < RDMA_MR_MAX; i++) {
        if (r->offered[i]) {
            r->v->dereg(r->offered[i]);
        }
        if (r->targets[i].mr) {
            r->v->dereg(r->targets[i].mr);
        }
    }
    r->v->close(r->link);
    g_free(r);
}

const struct remote_read_ops rdma_remote_ops = {
    .listen = rr_listen,
    .listener_port = rr_listener_port,
    .accept = rr_accept,
    .listener_close = rr_listener_close,
    .connect = rr_connect,
    .offer = rr_offer,
    .table = rr_table,
    .take_table = rr_take_table,
    .readable = rr_readable,
    .target = rr_target,
    .add = rr_add,
    .post = rr_post,
    .poll = rr_poll,
    .wake = rr_wake,
    .credits = rr_credits,
    .pending = rr_pending,
    .reset = rr_reset,
    .close = rr_close,
};
