/*
 * test_rdma_link.c - the READ link on a real device, in one process: a
 * "source" link registers a buffer for remote READ, a "destination" link
 * READs it through a rdma_read_queue, every byte is compared; then the
 * source goes away and the destination sees a link loss, as over TCP.
 *
 * Needs an RDMA device and an IP address on its netdev, named by
 * POSTCOPYD_RDMA_ADDR (rdma_cm resolves addresses to devices; loopback
 * has none).  Without a device it is skipped with the probe's reason,
 * without the variable with that one.  Never run on this project's own
 * machines (no RDMA device): compiled and linked with -Werror in every
 * RDMA build.
 */
#include "rdma.h"
#include "rdma_mr.h"

#include <string.h>
#include <gio/gio.h>

#define PAGE    4096u
#define MiB     (1024u * 1024u)
#define SRC_LEN (8 * MiB)

static const char *link_addr(void)
{
    g_autoptr(GError) err = NULL;
    const char *addr;

    if (!rdma_device_probe(&err)) {
        g_test_skip(err->message);
        return NULL;
    }
    addr = g_getenv("POSTCOPYD_RDMA_ADDR");
    if (!addr || !*addr) {
        g_test_skip("set POSTCOPYD_RDMA_ADDR to an IP address of this host's "
                    "RDMA netdev");
        return NULL;
    }
    return addr;
}

struct connector {
    const char *address;
    struct rdma_link *link;
    GError *err;
};

static gpointer connect_thread(gpointer data)
{
    struct connector *c = data;

    c->link = rdma_link_connect(c->address, 5000, &c->err);
    return NULL;
}

struct links {
    struct rdma_link_listener *ll;
    struct rdma_link *src; /* connected: the source's end */
    struct rdma_link *dst; /* accepted: READs from the source */
};

static void links_open(struct links *k, const char *addr)
{
    g_autofree char *where = g_strdup_printf("%s:0", addr);
    struct connector c = {0};
    GError *err = NULL;
    GThread *t;

    k->ll = rdma_link_listen(where, &err);
    g_assert_no_error(err);
    c.address = rdma_link_listener_address(k->ll);
    t = g_thread_new("rdma-connect", connect_thread, &c);
    k->dst = rdma_link_accept(k->ll, 5000, &err);
    g_thread_join(t);
    g_assert_no_error(err);
    g_assert_no_error(c.err);
    k->src = c.link;
    g_assert_cmpuint(rdma_link_credits(k->dst), >=, 1);
}

/* Post and poll until @n requests are done; each must be ok. */
static void run_reads(struct rdma_link *l, struct rdma_read_queue *q,
                      unsigned n)
{
    struct rdma_read_done done[16];
    GError *err = NULL;

    while (n) {
        int got;

        g_assert_true(rdma_link_post(l, q, &err));
        g_assert_no_error(err);
        got = rdma_link_poll(l, q, done, G_N_ELEMENTS(done), 5000, &err);
        g_assert_no_error(err);
        g_assert_cmpint(got, >=, 0);
        for (int i = 0; i < got; i++) {
            g_assert_true(done[i].ok);
        }
        n -= got;
    }
}

static void test_reads_and_loss(void)
{
    const char *addr = link_addr();
    g_autofree uint8_t *src = NULL, *dst = NULL;
    struct rdma_link_mr *smr, *dmr;
    struct rdma_read_queue *q;
    struct rdma_mr_table t;
    struct rdma_read_done d;
    struct links k = {0};
    GError *err = NULL;
    uint64_t offs[] = {0, 3 * MiB, 7 * MiB - 2 * PAGE};
    uint64_t lens[] = {PAGE, 3 * MiB, 2 * PAGE};

    if (!addr) {
        return;
    }
    src = g_malloc(SRC_LEN);
    dst = g_malloc0(SRC_LEN);
    for (size_t i = 0; i < SRC_LEN; i++) {
        src[i] = (uint8_t)(i * 13 + i / PAGE);
    }
    links_open(&k, addr);
    smr = rdma_link_register(k.src, src, SRC_LEN, true, &err);
    g_assert_no_error(err);
    dmr = rdma_link_register(k.dst, dst, SRC_LEN, false, &err);
    g_assert_no_error(err);
    g_test_message("registered with %s",
                   rdma_link_mr_odp(smr) ? "on-demand paging" : "pinning");

    /* The table as the source would send it, decoded as received. */
    {
        struct rdma_mr_entry e = {.region = 0,
                                  .rkey = rdma_link_mr_rkey(smr),
                                  .addr = (uintptr_t)src,
                                  .length = SRC_LEN,
                                  .page_size = PAGE};
        uint8_t msg[RDMA_MR_MSG_MAX];
        struct rdma_mr_table sent;
        size_t n;

        rdma_mr_table_init(&sent);
        g_assert_true(rdma_mr_table_add(&sent, &e, &err));
        n = rdma_mr_encode(&sent, msg);
        g_assert_true(rdma_mr_decode(msg, n, &t, &err));
        g_assert_no_error(err);
    }
    q = rdma_read_queue_new(&t, rdma_link_credits(k.dst), RDMA_LINK_MAX_READ);
    for (unsigned i = 0; i < G_N_ELEMENTS(offs); i++) {
        struct rdma_read_req r = {.region = 0,
                                  .offset = offs[i],
                                  .len = lens[i],
                                  .local = dst + offs[i],
                                  .lkey = rdma_link_mr_lkey(dmr),
                                  .cookie = i};

        g_assert_true(rdma_read_queue_add(q, &r, &err));
    }
    run_reads(k.dst, q, G_N_ELEMENTS(offs));
    for (unsigned i = 0; i < G_N_ELEMENTS(offs); i++) {
        g_assert_cmpmem(dst + offs[i], lens[i], src + offs[i], lens[i]);
    }
    g_assert_cmpuint(dst[PAGE], ==, 0); /* nothing outside the requests */

    /* The source goes away: a link loss, and the request comes back. */
    rdma_link_deregister(smr);
    rdma_link_close(k.src);
    {
        struct rdma_read_req r = {.region = 0,
                                  .offset = MiB,
                                  .len = PAGE,
                                  .local = dst + MiB,
                                  .lkey = rdma_link_mr_lkey(dmr),
                                  .cookie = 9};
        int got = 0;

        g_assert_true(rdma_read_queue_add(q, &r, &err));
        /* A flushed READ comes back not ok; the error follows it. */
        for (int tries = 0; tries < 3 && !err; tries++) {
            if (!rdma_link_post(k.dst, q, &err)) {
                break;
            }
            got = rdma_link_poll(k.dst, q, &d, 1, 5000, &err);
            if (got == 1) {
                g_assert_false(d.ok);
            }
        }
        g_assert_nonnull(err);
        g_test_message("after the source closed: %s", err->message);
        if (got < 0) {
            g_assert_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
        }
        g_clear_error(&err);
        g_assert_true(rdma_read_queue_reset(q, &d) ||
                      rdma_read_queue_pending(q) == 0);
    }
    rdma_read_queue_free(q);
    rdma_link_deregister(dmr);
    rdma_link_close(k.dst);
    rdma_link_listener_close(k.ll);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rdma-link/reads-and-loss", test_reads_and_loss);
    return g_test_run();
}
