/*
 * test_transport.c - the transport conformance suite: the same cases run
 * against every transport (connect, frames and messages, page requests,
 * a bulk stream, loss of the peer, timeouts), as /transport/NAME/CASE.
 *
 * TCP runs everywhere.  RDMA runs where transport_probe() finds a device;
 * elsewhere each of its cases is skipped with the probe's reason
 * ("ibv_get_device_list found no RDMA device: ..."), never passed; a build
 * without RDMA skips them as such.  Real loopback connections only.
 */
#include "peer_msg.h"
#include "transport.h"

#include <string.h>
#include <unistd.h>
#include <gio/gio.h>

#define PAGE 4096u
#define MiB  (1024u * 1024u)
/* More than loopback socket buffers hold: a sender of it must wait. */
#define BIG_MSG (48 * MiB)

static const char *const transport_names[] = {"tcp", "rdma"};

struct pair {
    struct listener *l;
    struct channel *out; /* connected: the source's end */
    struct channel *in;  /* accepted: the destination's end */
};

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 131 + i / PAGE);
    }
}

static void assert_err(GError *err, int code, const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != G_IO_ERROR || err->code != code ||
        !strstr(err->message, text) || strchr(err->message, '\n')) {
        g_error("got '%s' (code %d), wanted %d with '%s'", err->message,
                err->code, code, text);
    }
}

/*
 * The transport @name runs here, else the case is skipped with why not.
 * Never a pass: the caller returns at once.
 */
static const struct transport *usable(const char *name)
{
    g_autoptr(GError) err = NULL;
    const struct transport *t = transport_by_name(name, &err);

    if (!t) {
        g_autofree char *why = g_strdup_printf(
            "transport %s not in this build (%s)", name, err->message);
        g_test_skip(why);
        return NULL;
    }
    if (!transport_probe(t, &err)) {
        g_test_skip(err->message);
        return NULL;
    }
    return t;
}

static void pair_open(const struct transport *t, struct pair *p,
                      enum channel_kind kind, uint32_t stream)
{
    GError *err = NULL;

    *p = (struct pair){0};
    p->l = transport_listen(t, "127.0.0.1:0", NULL, &err);
    g_assert_no_error(err);
    p->out =
        transport_connect(t, listener_address(p->l), kind, stream, NULL, &err);
    g_assert_no_error(err);
    p->in = listener_accept(p->l, &err);
    g_assert_no_error(err);
    p->in = listener_handshake(p->in, 0, &err);
    g_assert_no_error(err);
    g_assert_true(channel_set_kind(p->in, kind, stream, &err));
    g_assert_no_error(err);
}

static void pair_close(struct pair *p)
{
    channel_close(p->out);
    channel_close(p->in);
    listener_close(p->l);
}

/* Both ends know what they are and who the other is; keepalives pass. */
static void case_connect(const struct transport *t)
{
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE}, h;
    GError *err = NULL;
    struct pair p;

    pair_open(t, &p, CHANNEL_BULK, 3);
    g_assert_cmpint(channel_kind(p.out), ==, CHANNEL_BULK);
    g_assert_cmpint(channel_kind(p.in), ==, CHANNEL_BULK);
    g_assert_cmpuint(channel_stream(p.in), ==, 3);
    g_assert_true(g_str_has_prefix(channel_peer(p.in), "127.0.0.1:"));
    g_assert_true(g_str_has_suffix(listener_address(p.l),
                                   strrchr(channel_peer(p.out), ':')));
    g_assert_true(channel_send_frame(p.out, &ka, NULL, 0, &err));
    g_assert_true(channel_send_frame(p.in, &ka, NULL, 0, &err));
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    g_assert_true(channel_recv_hdr(p.out, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    g_assert_no_error(err);
    g_assert_false(channel_peer_closed(p.in));
    pair_close(&p);
}

/* A nobody listening: refused, naming the channel and the address. */
static void case_connect_refused(const struct transport *t)
{
    GError *err = NULL;
    struct listener *l = transport_listen(t, "127.0.0.1:0", NULL, &err);
    g_autofree char *addr = g_strdup(listener_address(l));

    listener_close(l);
    g_assert_null(transport_connect(t, addr, CHANNEL_URGENT, 0, NULL, &err));
    assert_err(err, G_IO_ERROR_CONNECTION_REFUSED, addr);
    assert_err(err, G_IO_ERROR_CONNECTION_REFUSED, "urgent channel");
    g_clear_error(&err);
}

/* A Hello as the engine sends it, a page frame from scattered buffers. */
static void case_frames(const struct transport *t)
{
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage m = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) got = NULL;
    uint8_t a[PAGE], b[PAGE], back[2 * PAGE];
    struct iovec iov[2] = {{a, PAGE}, {b, PAGE}};
    struct frame_hdr h = {
        .type = FRAME_PAGE, .region = 1, .offset = 8 * PAGE, .len = 2 * PAGE};
    struct frame_hdr sync = {.type = FRAME_SYNC, .seq = 41};
    GError *err = NULL;
    struct pair p;

    pair_open(t, &p, CHANNEL_CONTROL, 0);
    hello.version = PEER_PROTOCOL_VERSION;
    hello.vm_name = "vm-conformance";
    hello.transport = (char *)transport_name(t);
    m.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    m.hello = &hello;
    g_assert_true(channel_send_msg(p.out, &m, &err));
    fill(a, PAGE, 1);
    fill(b, PAGE, 2);
    g_assert_true(channel_send_frame(p.out, &h, iov, 2, &err));
    g_assert_true(channel_send_frame(p.out, &sync, NULL, 0, &err));
    g_assert_no_error(err);

    got = channel_recv_msg(p.in, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(peer_message_name(got), ==, "hello");
    g_assert_cmpstr(got->hello->transport, ==, transport_name(t));
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_PAGE);
    g_assert_cmphex(h.offset, ==, 8 * PAGE);
    g_assert_true(channel_recv_payload(p.in, back, 2 * PAGE, &err));
    g_assert_cmpmem(back, PAGE, a, PAGE);
    g_assert_cmpmem(back + PAGE, PAGE, b, PAGE);
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_SYNC);
    g_assert_cmpuint(h.seq, ==, 41);
    g_assert_no_error(err);
    pair_close(&p);
}

/*
 * Many frames in one call: they arrive whole and in order.  A batch with
 * one bad header is refused before any of it goes: the channel goes on.
 */
static void case_frames_batched(const struct transport *t)
{
    enum { N = CHANNEL_SEND_FRAMES_MAX };
    g_autofree uint8_t *data = g_malloc(N * 2 * PAGE);
    uint8_t back[2 * PAGE];
    struct frame_hdr hdrs[N], ka = {.type = FRAME_KEEPALIVE}, h;
    struct iovec iov[N];
    GError *err = NULL;
    struct pair p;

    pair_open(t, &p, CHANNEL_BULK, 0);
    fill(data, N * 2 * PAGE, 9);
    for (int i = 0; i < N; i++) {
        uint32_t len = i % 3 == 2 ? 0 : (1 + i % 2) * PAGE;

        hdrs[i] = (struct frame_hdr){.type = len ? FRAME_PAGE : FRAME_PAGE_ZERO,
                                     .offset = (uint64_t)i * 2 * PAGE,
                                     .len = len,
                                     .count = len ? 0 : 2};
        iov[i] = (struct iovec){data + i * 2 * PAGE, len};
    }
    g_assert_true(channel_send_frames(p.out, hdrs, iov, N, &err));
    g_assert_no_error(err);
    hdrs[1].seq = 5; /* frame_validate(): no seq on a page frame */
    g_assert_false(channel_send_frames(p.out, hdrs, iov, N, &err));
    assert_err(err, G_IO_ERROR_INVALID_DATA, "refusing to send");
    g_clear_error(&err);
    g_assert_true(channel_send_frame(p.out, &ka, NULL, 0, &err));

    for (int i = 0; i < N; i++) {
        g_assert_true(channel_recv_hdr(p.in, &h, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(h.type, ==, hdrs[i].type);
        g_assert_cmphex(h.offset, ==, hdrs[i].offset);
        g_assert_cmpuint(h.len, ==, hdrs[i].len);
        g_assert_cmpuint(h.count, ==, hdrs[i].count);
        g_assert_true(channel_recv_payload(p.in, back, h.len, &err));
        g_assert_cmpmem(back, h.len, data + i * 2 * PAGE, h.len);
    }
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    g_assert_no_error(err);
    pair_close(&p);
}

/* The urgent channel's exchange: a request, its page, a zero-page reply. */
static void case_page_requests(const struct transport *t)
{
    struct frame_hdr req = {
        .type = FRAME_PAGE_REQ, .offset = 5 * PAGE, .count = 1, .seq = 7};
    struct frame_hdr zreq = {
        .type = FRAME_PAGE_REQ, .offset = 9 * PAGE, .count = 2, .seq = 8};
    uint8_t page[PAGE], back[PAGE];
    struct iovec iov = {page, PAGE};
    struct frame_hdr h, r;
    GError *err = NULL;
    struct pair p;

    pair_open(t, &p, CHANNEL_URGENT, 0);
    fill(page, PAGE, 5);
    g_assert_true(channel_send_frame(p.in, &req, NULL, 0, &err));
    g_assert_true(channel_send_frame(p.in, &zreq, NULL, 0, &err));
    /* The source: a request in, its page out, with the request's seq. */
    g_assert_true(channel_recv_hdr(p.out, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_PAGE_REQ);
    r = (struct frame_hdr){.type = FRAME_PAGE,
                           .flags = FRAME_F_REPLY | FRAME_F_FINAL,
                           .offset = h.offset,
                           .len = PAGE,
                           .seq = h.seq};
    g_assert_true(channel_send_frame(p.out, &r, &iov, 1, &err));
    g_assert_true(channel_recv_hdr(p.out, &h, &err));
    r = (struct frame_hdr){.type = FRAME_PAGE_ZERO,
                           .flags = FRAME_F_REPLY | FRAME_F_FINAL,
                           .offset = h.offset,
                           .count = h.count,
                           .seq = h.seq};
    g_assert_true(channel_send_frame(p.out, &r, NULL, 0, &err));
    g_assert_no_error(err);
    /* The destination: both replies, in order. */
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_PAGE);
    g_assert_cmpuint(h.flags, ==, FRAME_F_REPLY | FRAME_F_FINAL);
    g_assert_cmpuint(h.seq, ==, 7);
    g_assert_true(channel_recv_payload(p.in, back, PAGE, &err));
    g_assert_cmpmem(back, PAGE, page, PAGE);
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.type, ==, FRAME_PAGE_ZERO);
    g_assert_cmpuint(h.count, ==, 2);
    g_assert_cmpuint(h.seq, ==, 8);
    g_assert_no_error(err);
    pair_close(&p);
}

struct bulk_job {
    struct channel *ch;
    const uint8_t *data;
    size_t len;
    GError *err;
};

/* 4 MiB frames, every page in its place. */
static gpointer bulk_sender(gpointer data)
{
    struct bulk_job *j = data;

    for (size_t off = 0; off < j->len && !j->err; off += 4 * MiB) {
        struct iovec iov = {(void *)(j->data + off), 4 * MiB};
        struct frame_hdr h = {
            .type = FRAME_PAGE, .offset = off, .len = 4 * MiB};

        channel_send_frame(j->ch, &h, &iov, 1, &j->err);
    }
    return NULL;
}

static void case_bulk(const struct transport *t)
{
    const size_t len = 64 * MiB;
    g_autofree uint8_t *src = g_malloc(len);
    g_autofree uint8_t *dst = g_malloc0(len);
    struct bulk_job j = {.data = src, .len = len};
    GError *err = NULL;
    struct pair p;
    GThread *th;

    fill(src, len, 9);
    pair_open(t, &p, CHANNEL_BULK, 0);
    j.ch = p.out;
    th = g_thread_new("bulk", bulk_sender, &j);
    for (size_t got = 0; got < len;) {
        struct frame_hdr h;

        g_assert_true(channel_recv_hdr(p.in, &h, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(h.offset, ==, got);
        g_assert_true(channel_recv_payload(p.in, dst + h.offset, h.len, &err));
        got += h.len;
    }
    g_thread_join(th);
    g_assert_no_error(j.err);
    g_assert_true(memcmp(src, dst, len) == 0);
    pair_close(&p);
}

/* The peer goes away between frames: seen, and each receive says so. */
static void case_peer_lost(const struct transport *t)
{
    struct channel *chs[1];
    struct frame_hdr h;
    GError *err = NULL;
    struct pair p;

    pair_open(t, &p, CHANNEL_URGENT, 0);
    chs[0] = p.in;
    g_assert_cmpint(channel_wait_any(chs, 1, 0), ==, 1); /* nothing yet */
    channel_close(p.out);
    p.out = NULL;
    g_assert_cmpint(channel_wait_any(chs, 1, 5000), ==, 0);
    g_assert_true(channel_peer_closed(p.in));
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err(err, G_IO_ERROR_CONNECTION_CLOSED, "peer closed the connection");
    g_clear_error(&err);
    pair_close(&p);
}

static gpointer big_sender(gpointer data)
{
    struct bulk_job *j = data;
    struct iovec iov = {(void *)j->data, j->len};
    struct frame_hdr h = {.type = FRAME_MSG, .len = j->len};

    channel_send_frame(j->ch, &h, &iov, 1, &j->err);
    return NULL;
}

/* The peer goes away inside a frame: a truncated frame, not a frame. */
static void case_peer_lost_mid_frame(const struct transport *t)
{
    g_autofree uint8_t *big = g_malloc0(BIG_MSG);
    uint8_t part[64 * 1024];
    struct bulk_job j = {.data = big, .len = BIG_MSG};
    struct frame_hdr h;
    GError *err = NULL;
    struct pair p;
    GThread *th;
    bool ok = true;

    pair_open(t, &p, CHANNEL_CONTROL, 0);
    j.ch = p.out;
    th = g_thread_new("big", big_sender, &j);
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_cmpuint(h.len, ==, BIG_MSG);
    g_assert_true(channel_recv_payload(p.in, part, sizeof(part), &err));
    channel_shutdown(p.out); /* the source daemon dies mid-send */
    g_thread_join(th);
    assert_err(j.err, G_IO_ERROR_CANCELLED, "shut down");
    g_clear_error(&j.err);
    while (ok && channel_payload_left(p.in)) {
        ok = channel_recv_payload(
            p.in, part, MIN(sizeof(part), channel_payload_left(p.in)), &err);
    }
    g_assert_false(ok);
    assert_err(err, G_IO_ERROR_CONNECTION_CLOSED, "truncated frame");
    g_clear_error(&err);
    pair_close(&p);
}

/* No frame in time: TIMED_OUT, and the channel works on afterwards. */
static void case_recv_timeout(const struct transport *t)
{
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE}, h;
    GError *err = NULL;
    struct pair p;
    int64_t t0;

    pair_open(t, &p, CHANNEL_CONTROL, 0);
    g_assert_true(channel_set_timeout(p.in, 200, &err));
    t0 = g_get_monotonic_time();
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err(err, G_IO_ERROR_TIMED_OUT, "no frame within 200 ms");
    g_clear_error(&err);
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, 190 * 1000);
    g_assert_true(channel_send_frame(p.out, &ka, NULL, 0, &err));
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    pair_close(&p);
}

/* A peer that stops reading: the sender times out instead of hanging. */
static void case_send_timeout(const struct transport *t)
{
    g_autofree uint8_t *big = g_malloc0(BIG_MSG);
    struct iovec iov = {big, BIG_MSG};
    struct frame_hdr h = {.type = FRAME_MSG, .len = BIG_MSG};
    GError *err = NULL;
    struct pair p;

    pair_open(t, &p, CHANNEL_CONTROL, 0);
    g_assert_true(channel_set_timeout(p.out, 300, &err));
    g_assert_false(channel_send_frame(p.out, &h, &iov, 1, &err));
    assert_err(err, G_IO_ERROR_TIMED_OUT, "timed out after 300 ms");
    g_clear_error(&err);
    pair_close(&p);
}

struct conformance_case {
    const char *name;
    void (*run)(const struct transport *t);
};

static const struct conformance_case cases[] = {
    {"connect", case_connect},
    {"connect-refused", case_connect_refused},
    {"frames", case_frames},
    {"frames-batched", case_frames_batched},
    {"page-requests", case_page_requests},
    {"bulk", case_bulk},
    {"peer-lost", case_peer_lost},
    {"peer-lost-mid-frame", case_peer_lost_mid_frame},
    {"recv-timeout", case_recv_timeout},
    {"send-timeout", case_send_timeout},
};

struct run {
    const char *transport;
    const struct conformance_case *c;
};

static void run_case(gconstpointer data)
{
    const struct run *r = data;
    const struct transport *t = usable(r->transport);

    if (t) {
        r->c->run(t);
    }
}

/* Names: each transport of this build answers to its own. */
static void test_by_name(void)
{
    g_autoptr(GError) err = NULL;
    const struct transport *t = transport_by_name("rdma", &err);

    g_assert_true(transport_by_name("tcp", NULL) == transport_tcp());
    g_assert_true(transport_probe(transport_tcp(), NULL));
    if (!t) {
        /* A build without RDMA says so, and what it has. */
        g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
        g_assert_nonnull(strstr(err->message, "this build has: tcp"));
        return;
    }
    g_assert_cmpstr(transport_name(t), ==, "rdma");
    g_assert_null(transport_by_name("udp", &err));
    g_assert_nonnull(strstr(err->message, "this build has: tcp, rdma"));
}

/* Without a device, RDMA refuses to listen or connect, and says why. */
static void test_rdma_without_device(void)
{
    const struct transport *t = transport_by_name("rdma", NULL);
    g_autoptr(GError) probe = NULL;
    GError *err = NULL;

    if (!t) {
        g_test_skip("transport rdma not in this build");
        return;
    }
    if (transport_probe(t, &probe)) {
        g_test_skip("this host has an RDMA device");
        return;
    }
    g_assert_true(g_str_has_prefix(probe->message,
                                   "ibv_get_device_list found no RDMA device"));
    g_assert_null(transport_listen(t, "127.0.0.1:0", NULL, &err));
    assert_err(err, probe->code,
               "rdma listen on 127.0.0.1:0: ibv_get_device_list");
    g_clear_error(&err);
    g_assert_null(
        transport_connect(t, "127.0.0.1:1", CHANNEL_CONTROL, 0, NULL, &err));
    assert_err(err, probe->code, "rdma control channel connect to 127.0.0.1:1");
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    static struct run runs[G_N_ELEMENTS(transport_names)][G_N_ELEMENTS(cases)];

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/transport/by-name", test_by_name);
    g_test_add_func("/transport/rdma-without-device", test_rdma_without_device);
    for (size_t i = 0; i < G_N_ELEMENTS(transport_names); i++) {
        for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
            g_autofree char *path = g_strdup_printf(
                "/transport/%s/%s", transport_names[i], cases[c].name);

            runs[i][c] = (struct run){transport_names[i], &cases[c]};
            g_test_add_data_func(path, &runs[i][c], run_case);
        }
    }
    return g_test_run();
}
