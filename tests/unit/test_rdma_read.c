/*
 * test_rdma_read.c - the destination's READ queue without a device: runs
 * cut into READs, never more out than the credits, each request done once
 * when its last READ completes (in any order), a failed READ failing its
 * request only, stale and unknown completions refused, and a reset that
 * hands every unfinished request back.  A simulated responder copies the
 * "source" memory for each READ, so the bytes are checked too.
 */
#include "rdma_read.h"

#include <string.h>
#include <gio/gio.h>

#define PAGE 4096u
#define MiB  (1024u * 1024u)

struct fixture {
    struct rdma_mr_table t;
    uint8_t *src; /* the "source" region 0: 4 MiB */
    uint8_t *dst;
};

static void fixture_init(struct fixture *f)
{
    struct rdma_mr_entry e = {
        .region = 0, .rkey = 0x77, .length = 4 * MiB, .page_size = PAGE};
    GError *err = NULL;

    f->src = g_malloc(4 * MiB);
    f->dst = g_malloc0(4 * MiB);
    for (size_t i = 0; i < 4 * MiB; i++) {
        f->src[i] = (uint8_t)(i * 7 + i / PAGE);
    }
    e.addr = (uintptr_t)f->src;
    rdma_mr_table_init(&f->t);
    g_assert_true(rdma_mr_table_add(&f->t, &e, &err));
}

static void fixture_free(struct fixture *f)
{
    g_free(f->src);
    g_free(f->dst);
}

static void add(struct rdma_read_queue *q, struct fixture *f, uint64_t off,
                uint64_t len, uint64_t cookie)
{
    struct rdma_read_req r = {.region = 0,
                              .offset = off,
                              .len = len,
                              .local = f->dst + off,
                              .lkey = 0x55,
                              .cookie = cookie};
    GError *err = NULL;

    g_assert_true(rdma_read_queue_add(q, &r, &err));
    g_assert_no_error(err);
}

/* What the responder does for one READ: copy from the remote address. */
static void serve(const struct rdma_read_wr *w)
{
    g_assert_cmphex(w->rkey, ==, 0x77);
    g_assert_cmphex(w->lkey, ==, 0x55);
    memcpy(w->local, (void *)(uintptr_t)w->raddr, w->len);
}

static void test_split_and_credits(void)
{
    struct fixture f;
    struct rdma_read_queue *q;
    struct rdma_read_wr w[8];
    struct rdma_read_done d;
    GError *err = NULL;
    unsigned n = 0;

    fixture_init(&f);
    /* 3 credits, 64 KiB per READ: a 200 KiB run is 4 READs. */
    q = rdma_read_queue_new(&f.t, 3, 64 * 1024);
    add(q, &f, 16 * PAGE, 50 * PAGE, 9);
    while (rdma_read_queue_next(q, &w[n])) {
        n++;
    }
    g_assert_cmpuint(n, ==, 3);
    g_assert_cmpuint(rdma_read_queue_outstanding(q), ==, 3);
    g_assert_cmpuint(w[0].len, ==, 64 * 1024);
    g_assert_cmphex(w[1].raddr, ==, (uintptr_t)f.src + 16 * PAGE + 65536);
    g_assert_true(w[2].local == f.dst + 16 * PAGE + 2 * 65536);
    /* A completion gives back a credit, not the request: READs are left. */
    serve(&w[1]);
    g_assert_false(rdma_read_queue_complete(q, w[1].wr_id, true, &d, &err));
    g_assert_no_error(err);
    g_assert_true(rdma_read_queue_next(q, &w[3]));
    g_assert_cmpuint(w[3].len, ==, 50 * PAGE - 3 * 65536);
    g_assert_false(rdma_read_queue_next(q, &w[4])); /* nothing left */
    serve(&w[3]);
    serve(&w[0]);
    g_assert_false(rdma_read_queue_complete(q, w[3].wr_id, true, &d, &err));
    g_assert_false(rdma_read_queue_complete(q, w[0].wr_id, true, &d, &err));
    g_assert_cmpuint(rdma_read_queue_pending(q), ==, 1);
    serve(&w[2]);
    g_assert_true(rdma_read_queue_complete(q, w[2].wr_id, true, &d, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(d.cookie, ==, 9);
    g_assert_true(d.ok);
    g_assert_cmpuint(rdma_read_queue_pending(q), ==, 0);
    g_assert_cmpuint(rdma_read_queue_outstanding(q), ==, 0);
    g_assert_cmpmem(f.dst + 16 * PAGE, 50 * PAGE, f.src + 16 * PAGE, 50 * PAGE);
    g_assert_cmpuint(f.dst[16 * PAGE - 1], ==, 0); /* nothing outside it */
    g_assert_cmpuint(f.dst[66 * PAGE], ==, 0);
    rdma_read_queue_free(q);
    fixture_free(&f);
}

/*
 * A vCPU's page goes ahead of every bulk request not begun, but a request
 * cut half way goes on after it; the credits still bound what is out.
 */
static void test_urgent(void)
{
    struct fixture f;
    struct rdma_read_queue *q;
    struct rdma_read_req r = {.region = 0, .lkey = 0x55};
    struct rdma_read_wr w[8];
    struct rdma_read_done d;
    GError *err = NULL;
    unsigned n = 0;

    fixture_init(&f);
    q = rdma_read_queue_new(&f.t, 2, 64 * 1024);
    add(q, &f, 0, 32 * PAGE, 1);                   /* two READs */
    add(q, &f, 64 * PAGE, 16 * PAGE, 2);           /* one */
    g_assert_true(rdma_read_queue_next(q, &w[0])); /* request 1, half */
    r.offset = 900 * PAGE;
    r.len = PAGE;
    r.local = f.dst + r.offset;
    r.cookie = 3;
    g_assert_true(rdma_read_queue_add_urgent(q, &r, &err));
    g_assert_no_error(err);
    g_assert_true(rdma_read_queue_next(q, &w[1]));
    g_assert_cmphex(w[1].raddr, ==, (uintptr_t)f.src + 900 * PAGE);
    g_assert_false(rdma_read_queue_next(q, &w[2])); /* out of credits */
    serve(&w[1]);
    g_assert_true(rdma_read_queue_complete(q, w[1].wr_id, true, &d, &err));
    g_assert_cmpuint(d.cookie, ==, 3);
    /* Then the rest of request 1, then request 2. */
    g_assert_true(rdma_read_queue_next(q, &w[2]));
    g_assert_cmphex(w[2].raddr, ==, (uintptr_t)f.src + 16 * PAGE);
    serve(&w[0]);
    serve(&w[2]);
    g_assert_false(rdma_read_queue_complete(q, w[0].wr_id, true, &d, &err));
    g_assert_true(rdma_read_queue_complete(q, w[2].wr_id, true, &d, &err));
    g_assert_cmpuint(d.cookie, ==, 1);
    while (rdma_read_queue_next(q, &w[3 + n])) {
        serve(&w[3 + n]);
        n++;
    }
    g_assert_cmpuint(n, ==, 1);
    g_assert_true(rdma_read_queue_complete(q, w[3].wr_id, true, &d, &err));
    g_assert_cmpuint(d.cookie, ==, 2);
    g_assert_cmpmem(f.dst, 32 * PAGE, f.src, 32 * PAGE);
    g_assert_cmpmem(f.dst + 64 * PAGE, 16 * PAGE, f.src + 64 * PAGE, 16 * PAGE);
    g_assert_cmpmem(f.dst + 900 * PAGE, PAGE, f.src + 900 * PAGE, PAGE);
    /* Refused like any request: nothing queued. */
    r.offset = 4 * MiB;
    g_assert_false(rdma_read_queue_add_urgent(q, &r, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    g_assert_cmpuint(rdma_read_queue_pending(q), ==, 0);
    rdma_read_queue_free(q);
    fixture_free(&f);
}

/* Many requests, completions in a random order, every byte arrives. */
static void test_random_order(void)
{
    struct fixture f;
    struct rdma_read_queue *q;
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    bool seen[256] = {false};
    GRand *rand = g_rand_new_with_seed(14);
    unsigned done = 0, max_out = 0;
    GError *err = NULL;

    fixture_init(&f);
    q = rdma_read_queue_new(&f.t, 16, 3 * PAGE);
    for (unsigned i = 0; i < 256; i++) {
        add(q, &f, i * 4 * PAGE, (1 + i % 4) * PAGE, i);
    }
    while (done < 256) {
        struct rdma_read_wr *w = g_new(struct rdma_read_wr, 1);
        struct rdma_read_done d;

        while (rdma_read_queue_next(q, w)) {
            g_ptr_array_add(out, w);
            w = g_new(struct rdma_read_wr, 1);
        }
        g_free(w);
        max_out = MAX(max_out, rdma_read_queue_outstanding(q));
        g_assert_cmpuint(out->len, ==, rdma_read_queue_outstanding(q));
        w = g_ptr_array_steal_index_fast(out,
                                         g_rand_int_range(rand, 0, out->len));
        serve(w);
        if (rdma_read_queue_complete(q, w->wr_id, true, &d, &err)) {
            g_assert_true(d.ok);
            g_assert_false(seen[d.cookie]);
            seen[d.cookie] = true;
            done++;
        }
        g_assert_no_error(err);
        g_free(w);
    }
    g_assert_cmpuint(max_out, ==, 16);
    for (unsigned i = 0; i < 256; i++) {
        size_t off = i * 4 * PAGE, len = (1 + i % 4) * PAGE;

        g_assert_cmpmem(f.dst + off, len, f.src + off, len);
    }
    g_rand_free(rand);
    g_ptr_array_free(out, true);
    rdma_read_queue_free(q);
    fixture_free(&f);
}

/* One failed READ fails its request, and that request only. */
static void test_failure(void)
{
    struct fixture f;
    struct rdma_read_queue *q;
    struct rdma_read_wr w[4];
    struct rdma_read_done d;
    GError *err = NULL;

    fixture_init(&f);
    q = rdma_read_queue_new(&f.t, 4, 2 * PAGE);
    add(q, &f, 0, 4 * PAGE, 1); /* two READs */
    add(q, &f, 8 * PAGE, PAGE, 2);
    for (int i = 0; i < 3; i++) {
        g_assert_true(rdma_read_queue_next(q, &w[i]));
    }
    g_assert_false(rdma_read_queue_complete(q, w[0].wr_id, false, &d, &err));
    g_assert_true(rdma_read_queue_complete(q, w[2].wr_id, true, &d, &err));
    g_assert_cmpuint(d.cookie, ==, 2);
    g_assert_true(d.ok);
    /* The failed one's other READ completes (flushed): done, not ok. */
    g_assert_true(rdma_read_queue_complete(q, w[1].wr_id, false, &d, &err));
    g_assert_cmpuint(d.cookie, ==, 1);
    g_assert_false(d.ok);
    g_assert_no_error(err);
    /* Completed twice: refused. */
    g_assert_false(rdma_read_queue_complete(q, w[1].wr_id, true, &d, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_clear_error(&err);
    g_assert_false(rdma_read_queue_complete(q, 99, true, &d, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_clear_error(&err);
    rdma_read_queue_free(q);
    fixture_free(&f);
}

/* A run outside the table is refused at once, and nothing is queued. */
static void test_refused(void)
{
    struct fixture f;
    struct rdma_read_queue *q;
    struct rdma_read_req r = {
        .region = 0, .offset = 4 * MiB - PAGE, .len = 2 * PAGE};
    struct rdma_read_wr w;
    GError *err = NULL;

    fixture_init(&f);
    q = rdma_read_queue_new(&f.t, 4, MiB);
    g_assert_false(rdma_read_queue_add(q, &r, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    r.region = 3;
    r.offset = 0;
    g_assert_false(rdma_read_queue_add(q, &r, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_cmpuint(rdma_read_queue_pending(q), ==, 0);
    g_assert_false(rdma_read_queue_next(q, &w));
    rdma_read_queue_free(q);
    fixture_free(&f);
}

/*
 * The link died with READs out and requests waiting: every request comes
 * back once, not ok; completions from before are refused; the queue works
 * again afterwards (a resumed migration).
 */
static void test_reset(void)
{
    struct fixture f;
    struct rdma_read_queue *q;
    struct rdma_read_wr w[3], again;
    struct rdma_read_done d;
    bool back[4] = {false};
    GError *err = NULL;
    unsigned n = 0;

    fixture_init(&f);
    q = rdma_read_queue_new(&f.t, 2, PAGE);
    for (unsigned i = 0; i < 4; i++) {
        add(q, &f, i * 8 * PAGE, 2 * PAGE, i);
    }
    g_assert_true(rdma_read_queue_next(q, &w[0]));
    g_assert_true(rdma_read_queue_next(q, &w[1]));
    g_assert_true(rdma_read_queue_complete(q, w[1].wr_id, true, &d, &err) ==
                  false);
    g_assert_true(rdma_read_queue_next(q, &w[2]));
    while (rdma_read_queue_reset(q, &d)) {
        g_assert_false(d.ok);
        g_assert_false(back[d.cookie]);
        back[d.cookie] = true;
        n++;
    }
    g_assert_cmpuint(n, ==, 4);
    g_assert_cmpuint(rdma_read_queue_outstanding(q), ==, 0);
    g_assert_false(rdma_read_queue_complete(q, w[0].wr_id, true, &d, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_clear_error(&err);
    /* Asked again after the reconnect: the same slot, a new id. */
    add(q, &f, 0, PAGE, 7);
    g_assert_true(rdma_read_queue_next(q, &again));
    g_assert_cmphex(again.wr_id, !=, w[0].wr_id);
    g_assert_false(rdma_read_queue_complete(q, w[0].wr_id, true, &d, &err));
    g_clear_error(&err);
    g_assert_true(rdma_read_queue_complete(q, again.wr_id, true, &d, &err));
    g_assert_cmpuint(d.cookie, ==, 7);
    g_assert_true(d.ok);
    rdma_read_queue_free(q);
    fixture_free(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rdma-read/split-and-credits", test_split_and_credits);
    g_test_add_func("/rdma-read/random-order", test_random_order);
    g_test_add_func("/rdma-read/failure", test_failure);
    g_test_add_func("/rdma-read/refused", test_refused);
    g_test_add_func("/rdma-read/reset", test_reset);
    g_test_add_func("/rdma-read/urgent", test_urgent);
    return g_test_run();
}
