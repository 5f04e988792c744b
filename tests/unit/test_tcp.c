/*
 * test_tcp.c - the TCP transport over real loopback sockets: address
 * parsing, scatter/gather pages, a 64 MiB transfer, peer messages, a bulk
 * channel's read-ahead, and the ways a peer can go wrong (closing
 * mid-frame, garbage, silence, refusing).
 */
#include "peer_msg.h"
#include "transport.h"
#include "address.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <gio/gio.h>

#define PAGE_SIZE 4096
#define MiB       (1024u * 1024u)

struct parse_case {
    const char *in;
    const char *host; /* NULL: any */
    int port;         /* -1: must fail */
    const char *msg;
};

static const struct parse_case parse_cases[] = {
    {"127.0.0.1:4000", "127.0.0.1", 4000, NULL},
    {"localhost:1", "localhost", 1, NULL},
    {"dest.example.org:65535", "dest.example.org", 65535, NULL},
    {"[::1]:4000", "::1", 4000, NULL},
    {"[fe80::1%eth0]:22", "fe80::1%eth0", 22, NULL},
    {":4000", NULL, 4000, NULL},
    {"*:0", NULL, 0, NULL},
    {"", NULL, -1, "expected HOST:PORT"},
    {"host", NULL, -1, "missing ':PORT'"},
    {"host:", NULL, -1, "no port after ':'"},
    {"host:65536", NULL, -1, "the port must be a number from 0 to 65535"},
    {"host:-1", NULL, -1, "must be a number"},
    {"host:+80", NULL, -1, "must be a number"},
    {"host: 80", NULL, -1, "must be a number"},
    {"host:80x", NULL, -1, "must be a number"},
    {"host:99999999999999999999", NULL, -1, "must be a number"},
    {"::1:4000", NULL, -1, "IPv6 address in brackets"},
    {"[::1]", NULL, -1, "expected ':PORT' after ']'"},
    {"[::1]4000", NULL, -1, "expected ':PORT' after ']'"},
    {"[::1:4000", NULL, -1, "missing ']' after the IPv6 address"},
    {"[]:4000", NULL, -1, "not an IPv6 address between the brackets"},
};

static void test_parse(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(parse_cases); i++) {
        const struct parse_case *c = &parse_cases[i];
        g_autofree char *host = NULL;
        GError *err = NULL;
        uint16_t port = 0;
        bool ok = address_parse(c->in, &host, &port, &err);

        if (c->port < 0) {
            g_assert_false(ok);
            g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
            if (!strstr(err->message, c->msg)) {
                g_error("'%s': '%s' lacks '%s'", c->in, err->message, c->msg);
            }
            g_error_free(err);
            continue;
        }
        g_assert_no_error(err);
        g_assert_true(ok);
        g_assert_cmpstr(host, ==, c->host);
        g_assert_cmpint(port, ==, c->port);
    }
}

static void test_format(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(80)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(81)};
    g_autofree char *a = NULL, *b = NULL, *c = NULL;

    inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
    a = address_format((struct sockaddr *)&in, sizeof(in));
    g_assert_cmpstr(a, ==, "10.1.2.3:80");
    inet_pton(AF_INET6, "fd00::5", &in6.sin6_addr);
    b = address_format((struct sockaddr *)&in6, sizeof(in6));
    g_assert_cmpstr(b, ==, "[fd00::5]:81");
    inet_pton(AF_INET6, "::ffff:10.0.0.9", &in6.sin6_addr);
    c = address_format((struct sockaddr *)&in6, sizeof(in6));
    g_assert_cmpstr(c, ==, "10.0.0.9:81");
}

/* A connected pair: @out is ours (connected), @in the accepted end. */
struct pair {
    struct listener *l;
    struct channel *out;
    struct channel *in;
};

static bool pair_open(struct pair *p, const char *where, enum channel_kind kind,
                      const struct transport_options *opts, GError **err)
{
    const struct transport *tcp = transport_tcp();

    *p = (struct pair){0};
    p->l = transport_listen(tcp, where, opts, err);
    if (!p->l) {
        return false;
    }
    /* The backlog completes the handshake before accept(). */
    p->out = transport_connect(tcp, listener_address(p->l), kind, 2, opts, err);
    if (!p->out) {
        return false;
    }
    p->in = listener_accept(p->l, err);
    return p->in && channel_set_kind(p->in, kind, 2, err);
}

static void pair_close(struct pair *p)
{
    channel_close(p->out);
    channel_close(p->in);
    listener_close(p->l);
}

static void pair_open_or_die(struct pair *p, enum channel_kind kind)
{
    GError *err = NULL;

    g_assert_true(pair_open(p, "127.0.0.1:0", kind, NULL, &err));
    g_assert_no_error(err);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i += 4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        memcpy(buf + i, &x, MIN(4, len - i));
    }
}

static void assert_err_has(GError *err, int code, const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != G_IO_ERROR || err->code != code ||
        !strstr(err->message, text)) {
        g_error("got '%s' (code %d), wanted code %d with '%s'", err->message,
                err->code, code, text);
    }
    g_assert_null(strchr(err->message, '\n'));
}

/* Three separate pages out in one frame, in again as one buffer. */
static void exchange_pages(struct pair *p)
{
    uint8_t *pages[3], got[3 * PAGE_SIZE];
    struct iovec iov[3];
    struct frame_hdr h = {
        .type = FRAME_PAGE, .region = 1, .offset = 0x10000, .len = sizeof(got)};
    struct frame_hdr zero = {
        .type = FRAME_PAGE_ZERO, .offset = 8192, .count = 5};
    struct frame_hdr r;
    GError *err = NULL;

    for (int i = 0; i < 3; i++) {
        pages[i] = g_malloc(PAGE_SIZE);
        fill(pages[i], PAGE_SIZE, i + 1);
        iov[i] = (struct iovec){pages[i], PAGE_SIZE};
    }
    g_assert_true(channel_send_frame(p->out, &h, iov, 3, &err));
    g_assert_true(channel_send_frame(p->out, &zero, NULL, 0, &err));
    g_assert_no_error(err);

    g_assert_true(channel_recv_hdr(p->in, &r, &err));
    g_assert_cmpuint(r.type, ==, FRAME_PAGE);
    g_assert_cmpuint(r.region, ==, 1);
    g_assert_cmphex(r.offset, ==, 0x10000);
    g_assert_cmpuint(r.len, ==, sizeof(got));
    /* In two pieces, as an installer writing two places would. */
    g_assert_true(channel_recv_payload(p->in, got, 5000, &err));
    g_assert_cmpuint(channel_payload_left(p->in), ==, sizeof(got) - 5000);
    g_assert_true(
        channel_recv_payload(p->in, got + 5000, sizeof(got) - 5000, &err));
    g_assert_no_error(err);
    for (int i = 0; i < 3; i++) {
        g_assert_cmpmem(got + i * PAGE_SIZE, PAGE_SIZE, pages[i], PAGE_SIZE);
        g_free(pages[i]);
    }
    g_assert_true(channel_recv_hdr(p->in, &r, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(r.type, ==, FRAME_PAGE_ZERO);
    g_assert_cmpuint(r.count, ==, 5);
    g_assert_cmpuint(r.len, ==, 0);
}

/*
 * A frame whose payload the kernel takes from a file (sendfile): pages 1-3
 * of a memfd, the middle one a hole, arrive as they are there (the hole
 * as zeros); a frame longer than the rest of the file fails, and the
 * channel, no longer framed, refuses to send more.
 */
static void test_send_file(void)
{
    int fd = memfd_create("test_tcp", MFD_CLOEXEC);
    uint8_t page[PAGE_SIZE], want[3 * PAGE_SIZE] = {0}, got[3 * PAGE_SIZE];
    struct frame_hdr h = {
        .type = FRAME_PAGE, .region = 2, .offset = 0x4000, .len = sizeof(got)};
    struct frame_hdr zero = {.type = FRAME_PAGE_ZERO, .count = 1};
    struct frame_hdr r;
    struct pair p;
    GError *err = NULL;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 4 * PAGE_SIZE), ==, 0);
    for (int i = 0; i < 4; i++) {
        if (i == 2) {
            continue; /* a hole */
        }
        fill(page, PAGE_SIZE, 10 + i);
        g_assert_cmpint(pwrite(fd, page, PAGE_SIZE, i * PAGE_SIZE), ==,
                        PAGE_SIZE);
        if (i > 0) {
            memcpy(want + (i - 1) * PAGE_SIZE, page, PAGE_SIZE);
        }
    }
    pair_open_or_die(&p, CHANNEL_BULK);
    g_assert_true(channel_can_send_file(p.out));
    g_assert_true(channel_send_frame_file(p.out, &h, fd, PAGE_SIZE, &err));
    g_assert_no_error(err);
    g_assert_true(channel_recv_hdr(p.in, &r, &err));
    g_assert_cmpuint(r.type, ==, FRAME_PAGE);
    g_assert_cmpuint(r.region, ==, 2);
    g_assert_cmphex(r.offset, ==, 0x4000);
    g_assert_cmpuint(r.len, ==, sizeof(got));
    g_assert_true(channel_recv_payload(p.in, got, sizeof(got), &err));
    g_assert_no_error(err);
    g_assert_cmpmem(got, sizeof(got), want, sizeof(want));

    /* Two pages of the file are left, the frame says three. */
    g_assert_false(channel_send_frame_file(p.out, &h, fd, 2 * PAGE_SIZE, &err));
    assert_err_has(err, G_IO_ERROR_FAILED, "the file ends at");
    g_clear_error(&err);
    g_assert_false(channel_send_frame(p.out, &zero, NULL, 0, &err));
    assert_err_has(err, G_IO_ERROR_NOT_CONNECTED, "earlier send error");
    g_clear_error(&err);
    pair_close(&p);
    close(fd);
}

/* The kernel doubles what it is asked for; pages still go through. */
static void test_send_buffer(void)
{
    GError *err = NULL;
    struct pair p;
    int got = 0;
    socklen_t len = sizeof(got);

    pair_open_or_die(&p, CHANNEL_BULK);
    g_assert_true(channel_set_send_buffer(p.out, 1u << 20, &err));
    g_assert_no_error(err);
    g_assert_cmpint(
        getsockopt(channel_fd(p.out), SOL_SOCKET, SO_SNDBUF, &got, &len), ==,
        0);
    g_assert_cmpint(got, ==, 2 << 20);
    exchange_pages(&p);
    pair_close(&p);
}

static void test_pages_v4(void)
{
    struct pair p;

    pair_open_or_die(&p, CHANNEL_URGENT);
    g_assert_cmpint(channel_kind(p.in), ==, CHANNEL_URGENT);
    g_assert_cmpuint(channel_stream(p.in), ==, 2);
    g_assert_true(g_str_has_prefix(channel_peer(p.in), "127.0.0.1:"));
    g_assert_true(g_str_has_prefix(listener_address(p.l), "127.0.0.1:"));
    g_assert_cmpint(channel_fd(p.in), >=, 0);
    exchange_pages(&p);
    pair_close(&p);
}

static void test_pages_v6(void)
{
    GError *err = NULL;
    struct pair p;

    if (!pair_open(&p, "[::1]:0", CHANNEL_URGENT, NULL, &err)) {
        g_autofree char *why =
            g_strdup_printf("no IPv6 loopback: %s", err->message);

        g_test_skip(why);
        g_error_free(err);
        pair_close(&p);
        return;
    }
    g_assert_true(g_str_has_prefix(listener_address(p.l), "[::1]:"));
    g_assert_true(g_str_has_prefix(channel_peer(p.in), "[::1]:"));
    exchange_pages(&p);
    pair_close(&p);
}

/* ":0" listens on every address; IPv4 clients show up as IPv4. */
static void test_listen_any(void)
{
    const struct transport *tcp = transport_tcp();
    GError *err = NULL;
    struct listener *l = transport_listen(tcp, ":0", NULL, &err);
    g_autofree char *host = NULL, *to = NULL;
    struct channel *out, *in;
    uint16_t port;

    g_assert_no_error(err);
    g_assert_true(address_parse(listener_address(l), &host, &port, &err));
    to = g_strdup_printf("127.0.0.1:%u", port);
    out = transport_connect(tcp, to, CHANNEL_CONTROL, 0, NULL, &err);
    g_assert_no_error(err);
    in = listener_accept(l, &err);
    g_assert_no_error(err);
    g_assert_true(g_str_has_prefix(channel_peer(in), "127.0.0.1:"));
    channel_close(in);
    channel_close(out);
    listener_close(l);
}

/* The discarded payload leaves the stream framed. */
static void test_discard(void)
{
    static uint8_t page[PAGE_SIZE * 100];
    struct iovec iov = {page, sizeof(page)};
    struct frame_hdr h = {.type = FRAME_PAGE, .len = sizeof(page)};
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE}, r;
    GError *err = NULL;
    struct pair p;
    uint8_t some[10];

    pair_open_or_die(&p, CHANNEL_BULK);
    g_assert_true(channel_send_frame(p.out, &h, &iov, 1, &err));
    g_assert_true(channel_send_frame(p.out, &ka, NULL, 0, &err));
    g_assert_true(channel_recv_hdr(p.in, &r, &err));
    g_assert_true(channel_recv_payload(p.in, some, sizeof(some), &err));
    g_assert_no_error(err);
    /* The payload is still pending: no new header yet. */
    g_assert_false(channel_recv_hdr(p.in, &r, &err));
    assert_err_has(err, G_IO_ERROR_FAILED, "payload bytes of the previous");
    g_clear_error(&err);
    g_assert_false(channel_recv_payload(p.in, page, sizeof(page), &err));
    assert_err_has(err, G_IO_ERROR_INVALID_ARGUMENT, "the frame has 409590");
    g_clear_error(&err);
    g_assert_true(channel_discard_payload(p.in, &err));
    g_assert_true(channel_recv_hdr(p.in, &r, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(r.type, ==, FRAME_KEEPALIVE);
    pair_close(&p);
}

struct big {
    struct channel *ch;
    const uint8_t *src;
    size_t len;
    GError *err;
};

/*
 * The first half as 4 MiB frames of 1024 separate 4 KiB iovecs (more than
 * IOV_MAX with the header), the rest as 2 MiB frames of one iovec.
 */
static gpointer big_sender(gpointer opaque)
{
    struct big *b = opaque;
    g_autofree struct iovec *iov = g_new(struct iovec, 1024);
    struct frame_hdr sync = {.type = FRAME_SYNC, .seq = 1};

    for (size_t off = 0; off < b->len;) {
        size_t chunk = off < b->len / 2 ? FRAME_MAX_PAYLOAD : 2 * MiB;
        int niov = off < b->len / 2 ? chunk / PAGE_SIZE : 1;
        struct frame_hdr h = {.type = FRAME_PAGE, .offset = off, .len = chunk};

        for (int i = 0; i < niov; i++) {
            iov[i].iov_base = (uint8_t *)b->src + off + i * (chunk / niov);
            iov[i].iov_len = chunk / niov;
        }
        if (!channel_send_frame(b->ch, &h, iov, niov, &b->err)) {
            return NULL;
        }
        off += chunk;
    }
    channel_send_frame(b->ch, &sync, NULL, 0, &b->err);
    return NULL;
}

static void test_big_transfer(void)
{
    const size_t len = 64 * MiB;
    const struct frame_region_limits lim = {len, PAGE_SIZE};
    struct transport_options opts;
    g_autofree uint8_t *src = g_malloc(len);
    g_autofree uint8_t *dst = g_malloc0(len);
    struct big b = {.src = src, .len = len};
    GError *err = NULL;
    size_t frames = 0;
    struct frame_hdr h;
    GThread *t;
    struct pair p;

    transport_options_init(&opts);
    opts.tcp.bulk_buffer_bytes = 4 * MiB;
    g_assert_true(pair_open(&p, "127.0.0.1:0", CHANNEL_BULK, &opts, &err));
    g_assert_no_error(err);
    fill(src, len, 42);
    b.ch = p.out;
    t = g_thread_new("sender", big_sender, &b);
    for (;;) {
        g_assert_true(channel_recv_hdr(p.in, &h, &err));
        g_assert_no_error(err);
        if (h.type == FRAME_SYNC) {
            break;
        }
        g_assert_true(frame_check_page(&h, &lim, 1, &err));
        g_assert_true(channel_recv_payload(p.in, dst + h.offset, h.len, &err));
        g_assert_no_error(err);
        frames++;
    }
    g_thread_join(t);
    g_assert_no_error(b.err);
    g_assert_cmpuint(frames, ==, 8 + 16);
    g_assert_true(memcmp(src, dst, len) == 0);
    pair_close(&p);
}

struct racer {
    struct channel *ch;
    uint32_t id;
    GError *err;
};

#define RACE_FRAMES 300

static gpointer racer_send(gpointer opaque)
{
    struct racer *r = opaque;
    g_autofree uint8_t *page = g_malloc(8 * PAGE_SIZE);

    memset(page, r->id, 8 * PAGE_SIZE);
    for (int i = 0; i < RACE_FRAMES; i++) {
        uint32_t len = PAGE_SIZE * (1 + i % 8);
        struct iovec iov = {page, len};
        struct frame_hdr h = {.type = FRAME_PAGE, .region = r->id, .len = len};

        if (!channel_send_frame(r->ch, &h, &iov, 1, &r->err)) {
            break;
        }
    }
    return NULL;
}

/* Senders on several threads never interleave inside a frame. */
static void test_concurrent_senders(void)
{
    struct racer r[4];
    GThread *t[4];
    g_autofree uint8_t *buf = g_malloc(8 * PAGE_SIZE);
    GError *err = NULL;
    struct pair p;

    pair_open_or_die(&p, CHANNEL_URGENT);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){.ch = p.out, .id = i + 1};
        t[i] = g_thread_new("racer", racer_send, &r[i]);
    }
    for (int i = 0; i < 4 * RACE_FRAMES; i++) {
        struct frame_hdr h;

        g_assert_true(channel_recv_hdr(p.in, &h, &err));
        g_assert_true(channel_recv_payload(p.in, buf, h.len, &err));
        g_assert_no_error(err);
        for (uint32_t j = 0; j < h.len; j++) {
            g_assert_cmpuint(buf[j], ==, h.region);
        }
    }
    for (int i = 0; i < 4; i++) {
        g_thread_join(t[i]);
        g_assert_no_error(r[i].err);
    }
    pair_close(&p);
}

static void send_hello(struct channel *ch)
{
    static const uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    char *caps[] = {PEER_CAP_ZERO_PAGE, PEER_CAP_HUGETLBFS, PEER_CAP_MINOR};
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage m = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    GError *err = NULL;

    hello.version = PEER_PROTOCOL_VERSION;
    hello.min_version = 1;
    hello.vm_name = "vm-test";
    hello.migration_id = (ProtobufCBinaryData){sizeof(id), (uint8_t *)id};
    hello.channel = POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_BULK;
    hello.stream = 3;
    hello.bulk_streams = 4;
    hello.n_capabilities = G_N_ELEMENTS(caps);
    hello.capabilities = caps;
    hello.mode = POSTCOPY__PEER__MODE__MODE_HYBRID;
    m.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    m.hello = &hello;
    g_assert_true(channel_send_msg(ch, &m, &err));
    g_assert_no_error(err);
}

static void check_hello(const PeerMessage *m)
{
    const Postcopy__Peer__Hello *h = m->hello;

    g_assert_cmpint(m->msg_case, ==, POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO);
    g_assert_cmpstr(peer_message_name(m), ==, "hello");
    g_assert_cmpuint(h->version, ==, PEER_PROTOCOL_VERSION);
    g_assert_cmpstr(h->vm_name, ==, "vm-test");
    g_assert_cmpuint(h->migration_id.len, ==, 16);
    g_assert_cmpuint(h->migration_id.data[9], ==, 10);
    g_assert_cmpint(h->channel, ==,
                    POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_BULK);
    g_assert_cmpuint(h->stream, ==, 3);
    g_assert_cmpuint(h->bulk_streams, ==, 4);
    g_assert_cmpuint(h->n_capabilities, ==, 3);
    g_assert_cmpstr(h->capabilities[2], ==, "minor");
    g_assert_cmpint(h->mode, ==, POSTCOPY__PEER__MODE__MODE_HYBRID);
}

static void send_layout(struct channel *ch)
{
    Postcopy__Peer__RegionLayout r[3], *rp[3];
    Postcopy__Peer__Layout layout = POSTCOPY__PEER__LAYOUT__INIT;
    PeerMessage m = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    GError *err = NULL;

    for (int i = 0; i < 3; i++) {
        postcopy__peer__region_layout__init(&r[i]);
        r[i].index = i;
        r[i].size = (uint64_t)(i + 1) << 30;
        r[i].page_size = i == 2 ? 2 * MiB : PAGE_SIZE;
        r[i].backing = i + 1;
        r[i].name = i == 0 ? "pc.ram" : "";
        rp[i] = &r[i];
        layout.total_bytes += r[i].size;
    }
    layout.n_regions = 3;
    layout.regions = rp;
    m.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT;
    m.layout = &layout;
    g_assert_true(channel_send_msg(ch, &m, &err));
    g_assert_no_error(err);
}

static void check_layout(const PeerMessage *m)
{
    const Postcopy__Peer__Layout *l = m->layout;

    g_assert_cmpstr(peer_message_name(m), ==, "layout");
    g_assert_cmpuint(l->n_regions, ==, 3);
    g_assert_cmpuint(l->total_bytes, ==, 6ull << 30);
    g_assert_cmpuint(l->regions[2]->page_size, ==, 2 * MiB);
    g_assert_cmpint(l->regions[2]->backing, ==,
                    POSTCOPY__PEER__BACKING__BACKING_HUGETLBFS);
    g_assert_cmpstr(l->regions[0]->name, ==, "pc.ram");
}

static void send_switchover(struct channel *ch, size_t state_len)
{
    g_autofree uint8_t *state = g_malloc(state_len);
    Postcopy__Peer__Switchover sw = POSTCOPY__PEER__SWITCHOVER__INIT;
    PeerMessage m = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    GError *err = NULL;

    fill(state, state_len, 7);
    sw.device_state = (ProtobufCBinaryData){state_len, state};
    sw.sync_seq = 12;
    m.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER;
    m.switchover = &sw;
    g_assert_true(channel_send_msg(ch, &m, &err));
    g_assert_no_error(err);
}

static gpointer switchover_sender(gpointer ch)
{
    send_switchover(ch, 8 * MiB);
    return NULL;
}

static void test_messages(void)
{
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE};
    g_autofree uint8_t *want = g_malloc(8 * MiB);
    g_autoptr(PeerMessage) hello = NULL;
    g_autoptr(PeerMessage) layout = NULL;
    g_autoptr(PeerMessage) sw = NULL;
    GError *err = NULL;
    struct pair p;
    GThread *t;

    pair_open_or_die(&p, CHANNEL_CONTROL);
    send_hello(p.out);
    g_assert_true(channel_send_frame(p.out, &ka, NULL, 0, &err));
    send_layout(p.out);
    hello = channel_recv_msg(p.in, &err);
    g_assert_no_error(err);
    check_hello(hello);
    layout = channel_recv_msg(p.in, &err);
    g_assert_no_error(err);
    check_layout(layout);

    /* Bigger than the socket buffers: the sender must not wait on us. */
    t = g_thread_new("switchover", switchover_sender, p.out);
    sw = channel_recv_msg(p.in, &err);
    g_thread_join(t);
    g_assert_no_error(err);
    fill(want, 8 * MiB, 7);
    g_assert_cmpuint(sw->switchover->sync_seq, ==, 12);
    g_assert_cmpmem(sw->switchover->device_state.data,
                    sw->switchover->device_state.len, want, 8 * MiB);
    pair_close(&p);
}

static void test_bad_sends(void)
{
    static uint8_t page[PAGE_SIZE];
    struct iovec iov = {page, 100};
    struct frame_hdr page_hdr = {.type = FRAME_PAGE, .len = PAGE_SIZE};
    struct frame_hdr zero = {.type = FRAME_PAGE_ZERO};
    PeerMessage empty = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    GError *err = NULL;
    struct pair p;

    pair_open_or_die(&p, CHANNEL_URGENT);
    g_assert_false(channel_send_frame(p.out, &page_hdr, &iov, 1, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_ARGUMENT,
                   "refusing to send: page frame of 4096 payload bytes");
    g_clear_error(&err);
    g_assert_false(channel_send_frame(p.out, &zero, NULL, 0, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_DATA,
                   "refusing to send: zero-page frame covering no pages");
    g_clear_error(&err);
    g_assert_false(channel_send_msg(p.out, &empty, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_ARGUMENT, "empty message");
    g_clear_error(&err);
    /* Refusals send nothing: the channel still works. */
    exchange_pages(&p);
    pair_close(&p);
}

/* A plain socket to the listener, for writing what a channel never would. */
static int raw_connect(struct listener *l)
{
    g_autofree char *host = NULL;
    struct sockaddr_in in = {.sin_family = AF_INET};
    uint16_t port;
    int fd;

    g_assert_true(address_parse(listener_address(l), &host, &port, NULL));
    in.sin_port = htons(port);
    inet_pton(AF_INET, host, &in.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(connect(fd, (struct sockaddr *)&in, sizeof(in)), ==, 0);
    return fd;
}

static void raw_write(int fd, const void *buf, size_t len)
{
    g_assert_cmpint(write(fd, buf, len), ==, (ssize_t)len);
}

struct raw_pair {
    struct listener *l;
    int fd;
    struct channel *in;
};

static void raw_open(struct raw_pair *p)
{
    GError *err = NULL;

    p->l = transport_listen(transport_tcp(), "127.0.0.1:0", NULL, &err);
    g_assert_no_error(err);
    p->fd = raw_connect(p->l);
    p->in = listener_accept(p->l, &err);
    g_assert_no_error(err);
    g_assert_true(g_str_has_prefix(channel_peer(p->in), "127.0.0.1:"));
}

static void raw_close(struct raw_pair *p)
{
    if (p->fd >= 0) {
        close(p->fd);
    }
    channel_close(p->in);
    listener_close(p->l);
}

static void test_truncated_header(void)
{
    struct frame_hdr h = {.type = FRAME_KEEPALIVE};
    uint8_t buf[FRAME_HDR_LEN];
    struct raw_pair p;
    GError *err = NULL;

    raw_open(&p);
    frame_encode(&h, buf);
    raw_write(p.fd, buf, 10);
    close(p.fd);
    p.fd = -1;
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   "new channel from 127.0.0.1:");
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   "truncated frame: peer closed the connection after 10 of "
                   "32 header bytes");
    g_clear_error(&err);
    /* Once broken, always broken. */
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_NOT_CONNECTED, "earlier receive error");
    g_clear_error(&err);
    raw_close(&p);
}

/* The rest of a 4096-byte payload of which 100 bytes came: truncated. */
static void expect_truncated_payload(struct channel *in, uint8_t *dst)
{
    GError *err = NULL;

    g_assert_false(channel_recv_payload(in, dst, PAGE_SIZE - 60, &err));
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   "truncated frame: peer closed the connection after 100 of "
                   "4096 payload bytes");
    g_clear_error(&err);
}

static void test_truncated_payload(void)
{
    struct frame_hdr h = {.type = FRAME_PAGE, .len = PAGE_SIZE};
    uint8_t buf[FRAME_HDR_LEN + 100] = {0};
    static uint8_t dst[PAGE_SIZE];
    struct raw_pair p;
    GError *err = NULL;

    raw_open(&p);
    frame_encode(&h, buf);
    raw_write(p.fd, buf, sizeof(buf));
    close(p.fd);
    p.fd = -1;
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_no_error(err);
    g_assert_true(channel_recv_payload(p.in, dst, 60, &err));
    expect_truncated_payload(p.in, dst);
    raw_close(&p);
}

static void test_clean_close(void)
{
    struct frame_hdr h;
    GError *err = NULL;
    struct pair p;

    pair_open_or_die(&p, CHANNEL_CONTROL);
    channel_close(p.out);
    p.out = NULL;
    g_assert_null(channel_recv_msg(p.in, &err));
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   "control channel from 127.0.0.1:");
    g_assert_null(strstr(err->message, "truncated"));
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   ": peer closed the connection");
    g_clear_error(&err);
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    g_clear_error(&err);
    pair_close(&p);
}

/* Garbage gets a clear error; the other direction still carries an Error. */
static void test_garbage(void)
{
    Postcopy__Peer__Error perr = POSTCOPY__PEER__ERROR__INIT;
    PeerMessage m = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) got = NULL;
    uint8_t junk[4096];
    struct frame_hdr h;
    GError *err = NULL;
    struct pair p;
    int fd;

    pair_open_or_die(&p, CHANNEL_CONTROL);
    fill(junk, sizeof(junk), 99);
    junk[0] = 'G';
    fd = channel_fd(p.out);
    raw_write(fd, junk, sizeof(junk));
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_DATA, "bad frame magic");
    assert_err_has(err, G_IO_ERROR_INVALID_DATA, "control channel from ");
    g_clear_error(&err);
    g_assert_null(channel_recv_msg(p.in, &err));
    assert_err_has(err, G_IO_ERROR_NOT_CONNECTED, "earlier receive error");
    g_clear_error(&err);

    perr.code = POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL;
    perr.message = "bad frame magic";
    m.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR;
    m.error = &perr;
    g_assert_true(channel_send_msg(p.in, &m, &err));
    g_assert_no_error(err);
    got = channel_recv_msg(p.out, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(peer_message_name(got), ==, "error");
    g_assert_cmpstr(got->error->message, ==, "bad frame magic");
    pair_close(&p);
}

/* A well-framed but undecodable message spoils only itself. */
static void test_garbage_message(void)
{
    struct frame_hdr h = {.type = FRAME_MSG, .len = 50};
    uint8_t buf[FRAME_HDR_LEN + 50];
    g_autoptr(PeerMessage) unknown = NULL;
    g_autoptr(PeerMessage) hello = NULL;
    GError *err = NULL;
    struct pair p;
    int fd;

    pair_open_or_die(&p, CHANNEL_CONTROL);
    fd = channel_fd(p.out);
    frame_encode(&h, buf);
    memset(buf + FRAME_HDR_LEN, 0xff, 50);
    raw_write(fd, buf, sizeof(buf));
    /* Field 99 (unknown to this build): a newer peer's message. */
    h.len = 3;
    frame_encode(&h, buf);
    memcpy(buf + FRAME_HDR_LEN, "\x98\x06\x01", 3);
    raw_write(fd, buf, FRAME_HDR_LEN + 3);
    send_hello(p.out);

    g_assert_null(channel_recv_msg(p.in, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_DATA, "undecodable 50-byte message");
    g_clear_error(&err);
    unknown = channel_recv_msg(p.in, &err);
    g_assert_null(unknown);
    assert_err_has(err, G_IO_ERROR_INVALID_DATA, "of a kind this build does");
    g_clear_error(&err);
    hello = channel_recv_msg(p.in, &err);
    g_assert_no_error(err);
    check_hello(hello);
    pair_close(&p);
}

static void test_unexpected_frame(void)
{
    struct frame_hdr h = {.type = FRAME_PAGE_REQ, .count = 1};
    GError *err = NULL;
    struct pair p;

    pair_open_or_die(&p, CHANNEL_CONTROL);
    g_assert_true(channel_send_frame(p.out, &h, NULL, 0, &err));
    g_assert_null(channel_recv_msg(p.in, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_DATA,
                   "expected a message frame, got a page request frame");
    g_clear_error(&err);
    pair_close(&p);
}

static void test_connect_refused(void)
{
    const struct transport *tcp = transport_tcp();
    GError *err = NULL;
    struct listener *l = transport_listen(tcp, "127.0.0.1:0", NULL, &err);
    g_autofree char *addr = g_strdup(listener_address(l));

    listener_close(l);
    g_assert_null(transport_connect(tcp, addr, CHANNEL_URGENT, 0, NULL, &err));
    assert_err_has(err, G_IO_ERROR_CONNECTION_REFUSED, "Connection refused");
    assert_err_has(err, G_IO_ERROR_CONNECTION_REFUSED, addr);
    assert_err_has(err, G_IO_ERROR_CONNECTION_REFUSED, "urgent channel");
    g_clear_error(&err);

    g_assert_null(
        transport_connect(tcp, "127.0.0.1:0", CHANNEL_CONTROL, 0, NULL, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_ARGUMENT, "names no host and port");
    g_clear_error(&err);
    g_assert_null(
        transport_connect(tcp, "127.0.0.1", CHANNEL_CONTROL, 0, NULL, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_ARGUMENT, "missing ':PORT'");
    g_clear_error(&err);
    g_assert_null(transport_listen(tcp, "::1:80", NULL, &err));
    assert_err_has(err, G_IO_ERROR_INVALID_ARGUMENT, "tcp listen on ::1:80");
    g_clear_error(&err);
}

/* A listener whose accept queue is full drops SYNs: nobody answers. */
static void test_connect_timeout(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(in);
    struct transport_options opts;
    g_autofree char *addr = NULL;
    struct channel *ch;
    GError *err = NULL;
    int lfd, fds[4];

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&in, sizeof(in)), ==, 0);
    g_assert_cmpint(listen(lfd, 0), ==, 0);
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&in, &len), ==, 0);
    for (int i = 0; i < 4; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        connect(fds[i], (struct sockaddr *)&in, sizeof(in));
    }
    addr = g_strdup_printf("127.0.0.1:%u", ntohs(in.sin_port));
    transport_options_init(&opts);
    opts.connect_timeout_ms = 200;
    ch = transport_connect(transport_tcp(), addr, CHANNEL_CONTROL, 0, &opts,
                           &err);
    if (ch) {
        g_test_skip("the kernel answered a SYN despite a full accept queue");
        channel_close(ch);
    } else {
        assert_err_has(err, G_IO_ERROR_TIMED_OUT,
                       "connect: no answer within 200 ms");
        g_clear_error(&err);
    }
    for (int i = 0; i < 4; i++) {
        close(fds[i]);
    }
    close(lfd);
}

static void test_address_in_use(void)
{
    const struct transport *tcp = transport_tcp();
    GError *err = NULL;
    struct listener *l = transport_listen(tcp, "127.0.0.1:0", NULL, &err);

    g_assert_null(transport_listen(tcp, listener_address(l), NULL, &err));
    assert_err_has(err, G_IO_ERROR_ADDRESS_IN_USE, "Address already in use");
    g_clear_error(&err);
    listener_close(l);
}

static void test_timeout(void)
{
    struct frame_hdr h = {.type = FRAME_KEEPALIVE};
    uint8_t buf[FRAME_HDR_LEN];
    struct raw_pair p;
    GError *err = NULL;

    raw_open(&p);
    g_assert_true(channel_set_timeout(p.in, 100, &err));
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_TIMED_OUT, "no frame within 100 ms");
    g_clear_error(&err);
    /* Nothing came: waiting again is fine. */
    frame_encode(&h, buf);
    raw_write(p.fd, buf, sizeof(buf));
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    /* Half a header and no more: the stream is broken, not resumed. */
    raw_write(p.fd, buf, 10);
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_PARTIAL_INPUT,
                   "timed out after 100 ms inside a frame (10 of 32");
    g_clear_error(&err);
    raw_write(p.fd, buf + 10, sizeof(buf) - 10);
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    g_clear_error(&err);
    raw_close(&p);
}

struct trickle {
    int fd;
    const uint8_t *buf;
    size_t len;
    unsigned every_ms;
    size_t chunk; /* bytes per send; 0: 1 */
};

/* A peer sending @len bytes @chunk at a time, @every_ms apart. */
static gpointer trickle_thread(gpointer opaque)
{
    struct trickle *t = opaque;
    size_t chunk = t->chunk ? t->chunk : 1;

    for (size_t i = 0; i + chunk <= t->len; i += chunk) {
        if (send(t->fd, t->buf + i, chunk, MSG_NOSIGNAL) != (ssize_t)chunk) {
            break;
        }
        g_usleep(t->every_ms * 1000);
    }
    return NULL;
}

/*
 * One byte every 60 ms never let a 100 ms timeout fire (it restarted on
 * every recv()): the whole frame, header and payload, has 100 ms from
 * its first byte.
 */
static void test_timeout_per_frame(void)
{
    uint8_t payload[64] = {0};
    struct frame_hdr h = {.type = FRAME_MSG, .len = sizeof(payload)};
    uint8_t buf[FRAME_HDR_LEN + sizeof(payload)];
    struct trickle t = {.buf = buf + 1, .every_ms = 60};
    GError *err = NULL;
    struct raw_pair p;
    int64_t start;
    GThread *th;

    frame_encode(&h, buf);
    memcpy(buf + FRAME_HDR_LEN, payload, sizeof(payload));
    /* The header alone, trickled (its first byte there already). */
    raw_open(&p);
    g_assert_true(channel_set_timeout(p.in, 100, &err));
    raw_write(p.fd, buf, 1);
    t.fd = p.fd;
    t.len = FRAME_HDR_LEN - 1;
    start = g_get_monotonic_time();
    th = g_thread_new("trickle", trickle_thread, &t);
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_PARTIAL_INPUT, "inside a frame");
    g_clear_error(&err);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 1500 * 1000);
    shutdown(p.fd, SHUT_RDWR);
    g_thread_join(th);
    raw_close(&p);
    /* The header on time, the payload trickled: the same deadline. */
    raw_open(&p);
    g_assert_true(channel_set_timeout(p.in, 100, &err));
    raw_write(p.fd, buf, FRAME_HDR_LEN);
    t.fd = p.fd;
    t.buf = buf + FRAME_HDR_LEN;
    t.len = sizeof(payload);
    start = g_get_monotonic_time();
    th = g_thread_new("trickle", trickle_thread, &t);
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_false(channel_recv_payload(p.in, payload, sizeof(payload), &err));
    assert_err_has(err, G_IO_ERROR_TIMED_OUT, "inside a frame");
    g_clear_error(&err);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 1500 * 1000);
    shutdown(p.fd, SHUT_RDWR);
    g_thread_join(th);
    raw_close(&p);
}

/* A keepalive every 30 ms: each frame on time, the handshake never done. */
static void test_deadline(void)
{
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE};
    uint8_t buf[FRAME_HDR_LEN * 40];
    struct trickle t = {
        .buf = buf, .len = sizeof(buf), .every_ms = 30, .chunk = FRAME_HDR_LEN};
    GError *err = NULL;
    struct raw_pair p;
    PeerMessage *msg;
    int64_t start;
    GThread *th;

    for (size_t i = 0; i < 40; i++) {
        frame_encode(&ka, buf + i * FRAME_HDR_LEN);
    }
    raw_open(&p);
    /* Longer than the deadline: what fires is the deadline. */
    g_assert_true(channel_set_timeout(p.in, 1000, &err));
    start = g_get_monotonic_time();
    channel_set_deadline(p.in, start + 200 * G_TIME_SPAN_MILLISECOND);
    t.fd = p.fd;
    th = g_thread_new("keepalives", trickle_thread, &t);
    msg = channel_recv_msg(p.in, &err);
    g_assert_null(msg);
    assert_err_has(err, G_IO_ERROR_TIMED_OUT, "handshake not finished");
    g_clear_error(&err);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 1000 * 1000);
    shutdown(p.fd, SHUT_RDWR);
    g_thread_join(th);
    raw_close(&p);
}

struct blocked {
    struct channel *ch;
    GError *err;
};

static gpointer blocked_recv(gpointer opaque)
{
    struct blocked *b = opaque;
    struct frame_hdr h;

    channel_recv_hdr(b->ch, &h, &b->err);
    return NULL;
}

static void test_shutdown_wakes(void)
{
    struct blocked b = {0};
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE};
    GError *err = NULL;
    struct pair p;
    GThread *t;

    pair_open_or_die(&p, CHANNEL_URGENT);
    b.ch = p.in;
    t = g_thread_new("blocked", blocked_recv, &b);
    g_usleep(50 * 1000);
    channel_shutdown(p.in);
    g_thread_join(t);
    assert_err_has(b.err, G_IO_ERROR_CANCELLED, "channel shut down");
    g_clear_error(&b.err);
    g_assert_false(channel_send_frame(p.in, &ka, NULL, 0, &err));
    assert_err_has(err, G_IO_ERROR_CANCELLED, "channel shut down");
    g_clear_error(&err);
    pair_close(&p);
}

/* Waiting on channels without their descriptors, and a peer's hang-up. */
static void test_wait_and_peer_closed(void)
{
    struct frame_hdr ka = {.type = FRAME_KEEPALIVE}, got;
    struct channel *ins[2];
    struct pair a, b;
    GError *err = NULL;

    pair_open_or_die(&a, CHANNEL_CONTROL);
    pair_open_or_die(&b, CHANNEL_URGENT);
    ins[0] = a.in;
    ins[1] = b.in;

    g_assert_cmpint(channel_wait_any(ins, 2, 0), ==, 2); /* timeout */
    g_assert_true(channel_send_frame(b.out, &ka, NULL, 0, &err));
    g_assert_no_error(err);
    g_assert_cmpint(channel_wait_any(ins, 2, 5000), ==, 1);
    g_assert_true(channel_send_frame(a.out, &ka, NULL, 0, &err));
    g_assert_cmpint(channel_wait_any(ins, 2, 5000), ==, 0); /* first wins */
    g_assert_true(channel_recv_hdr(a.in, &got, &err));
    g_assert_true(channel_recv_hdr(b.in, &got, &err));
    g_assert_no_error(err);

    g_assert_false(channel_peer_closed(a.in));
    channel_close(a.out);
    a.out = NULL;
    for (int i = 0; i < 500 && !channel_peer_closed(a.in); i++) {
        g_usleep(10000);
    }
    g_assert_true(channel_peer_closed(a.in));
    g_assert_cmpint(channel_wait_any(ins, 2, 5000), ==, 0); /* EOF is news */
    g_assert_false(channel_peer_closed(b.in));
    pair_close(&a);
    pair_close(&b);
}

/* Until @n bytes wait in @ch's socket, so that one recv() can take them. */
static void wait_queued(struct channel *ch, int n)
{
    int queued = 0;

    for (int i = 0; i < 500; i++) {
        g_assert_cmpint(ioctl(channel_fd(ch), FIONREAD, &queued), ==, 0);
        if (queued >= n) {
            break;
        }
        g_usleep(10000);
    }
    g_assert_cmpint(queued, ==, n);
}

/* A frame of @len bytes filled from @seed; zero-page frames when 0. */
static void send_seeded(struct channel *ch, uint32_t seed, uint8_t *buf,
                        size_t len)
{
    struct frame_hdr h = {.type = FRAME_PAGE, .offset = seed, .len = len};
    struct iovec iov = {buf, len};
    GError *err = NULL;

    if (!len) {
        h = (struct frame_hdr){
            .type = FRAME_PAGE_ZERO, .offset = seed, .count = 1};
    }
    fill(buf, len, seed);
    g_assert_true(channel_send_frame(ch, &h, &iov, len ? 1 : 0, &err));
    g_assert_no_error(err);
}

/* The next frame is @seed's, its payload as send_seeded() made it. */
static void recv_seeded(struct channel *ch, uint32_t seed, uint8_t *buf,
                        uint8_t *want, size_t len)
{
    struct frame_hdr h;
    GError *err = NULL;

    g_assert_true(channel_recv_hdr(ch, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(h.type, ==, len ? FRAME_PAGE : FRAME_PAGE_ZERO);
    g_assert_cmpuint(h.offset, ==, seed);
    g_assert_cmpuint(h.len, ==, len);
    g_assert_true(channel_recv_payload(ch, buf, len, &err));
    g_assert_no_error(err);
    fill(want, len, seed);
    g_assert_true(memcmp(buf, want, len) == 0);
}

#define RX_QUEUED 10

/*
 * Small frames already queued: a bulk channel takes them with the first
 * header's recv(), and then neither waiting nor spinning looks at the
 * now empty socket alone.  Urgent receives each frame by itself.
 */
static void check_queued_read_ahead(enum channel_kind kind)
{
    const int total = RX_QUEUED * (FRAME_HDR_LEN + PAGE_SIZE) + FRAME_HDR_LEN;
    uint8_t buf[PAGE_SIZE], want[PAGE_SIZE];
    bool bulk = kind == CHANNEL_BULK;
    struct channel *in[1];
    struct pair p;
    int queued;

    pair_open_or_die(&p, kind);
    in[0] = p.in;
    for (uint32_t i = 0; i <= RX_QUEUED; i++) {
        send_seeded(p.out, i, buf, i == 4 ? 0 : PAGE_SIZE);
    }
    wait_queued(p.in, total);
    recv_seeded(p.in, 0, buf, want, PAGE_SIZE);
    g_assert_cmpint(channel_has_buffered(p.in), ==, bulk);
    g_assert_cmpint(ioctl(channel_fd(p.in), FIONREAD, &queued), ==, 0);
    g_assert_cmpint(queued, ==, bulk ? 0 : total - FRAME_HDR_LEN - PAGE_SIZE);
    g_assert_cmpint(channel_wait_any(in, 1, 0), ==, 0);
    g_assert_true(channel_spin_readable(p.in, 0, false));
    for (uint32_t i = 1; i <= RX_QUEUED; i++) {
        recv_seeded(p.in, i, buf, want, i == 4 ? 0 : PAGE_SIZE);
    }
    g_assert_false(channel_has_buffered(p.in));
    g_assert_cmpint(channel_wait_any(in, 1, 0), ==, 1);
    pair_close(&p);
}

#define RX_FRAMES 2000

/* Every 7th frame zero-page, every 50th 1 MiB, the rest a 4 KiB page. */
static size_t rx_frame_len(uint32_t i)
{
    return i % 50 == 49 ? MiB : i % 7 == 3 ? 0 : PAGE_SIZE;
}

static gpointer rx_sender(gpointer ch)
{
    g_autofree uint8_t *buf = g_malloc(MiB);

    for (uint32_t i = 0; i < RX_FRAMES; i++) {
        send_seeded(ch, i, buf, rx_frame_len(i));
    }
    return NULL;
}

/*
 * Runs of small frames with big ones among them arrive whole and in
 * order; a big frame's payload empties the read-ahead, and the header
 * after it is received alone (no copy of the next big one).
 */
static void test_read_ahead(void)
{
    g_autofree uint8_t *buf = g_malloc(MiB);
    g_autofree uint8_t *want = g_malloc(MiB);
    struct pair p;
    GThread *t;

    check_queued_read_ahead(CHANNEL_BULK);
    check_queued_read_ahead(CHANNEL_URGENT);

    pair_open_or_die(&p, CHANNEL_BULK);
    t = g_thread_new("sender", rx_sender, p.out);
    for (uint32_t i = 0; i < RX_FRAMES; i++) {
        recv_seeded(p.in, i, buf, want, rx_frame_len(i));
        if (i > 0 && rx_frame_len(i - 1) == MiB) {
            g_assert_false(channel_has_buffered(p.in));
        }
    }
    g_thread_join(t);
    g_assert_false(channel_has_buffered(p.in));
    pair_close(&p);
}

/* A raw peer on a bulk channel with a 200 ms timeout. */
static void raw_open_bulk(struct raw_pair *p)
{
    GError *err = NULL;

    raw_open(p);
    g_assert_true(channel_set_kind(p->in, CHANNEL_BULK, 0, &err));
    g_assert_true(channel_set_timeout(p->in, 200, &err));
    g_assert_no_error(err);
}

/*
 * A 100-byte frame, then the first @part bytes of a keepalive's header,
 * in one write: the first header's recv() reads ahead the lot.
 */
static void raw_frame_and_part(struct raw_pair *p, uint8_t *ka, size_t part)
{
    struct frame_hdr h = {.type = FRAME_MSG, .len = 100};
    struct frame_hdr k = {.type = FRAME_KEEPALIVE};
    uint8_t buf[FRAME_HDR_LEN + 100 + FRAME_HDR_LEN] = {0};
    uint8_t payload[100];
    GError *err = NULL;

    frame_encode(&h, buf);
    frame_encode(&k, ka);
    memcpy(buf + FRAME_HDR_LEN + 100, ka, part);
    raw_write(p->fd, buf, FRAME_HDR_LEN + 100 + part);
    wait_queued(p->in, FRAME_HDR_LEN + 100 + part);
    g_assert_true(channel_recv_hdr(p->in, &h, &err));
    g_assert_true(channel_recv_payload(p->in, payload, 100, &err));
    g_assert_no_error(err);
    g_assert_true(channel_has_buffered(p->in));
}

/*
 * A header begun in the read-ahead is a frame begun: finished in time it
 * arrives, however split; not finished, PARTIAL_INPUT, not TIMED_OUT.
 * Only a header not begun at all may time out and be waited for again.
 */
static void test_read_ahead_split_header(void)
{
    uint8_t ka[FRAME_HDR_LEN];
    struct trickle t = {.chunk = 11, .len = 22, .every_ms = 30};
    struct frame_hdr h;
    GError *err = NULL;
    struct raw_pair p;
    GThread *th;

    raw_open_bulk(&p);
    raw_frame_and_part(&p, ka, 10);
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_PARTIAL_INPUT,
                   "timed out after 200 ms inside a frame (10 of 32 header");
    g_clear_error(&err);
    raw_close(&p);

    raw_open_bulk(&p);
    raw_frame_and_part(&p, ka, 10);
    t.fd = p.fd;
    t.buf = ka + 10;
    th = g_thread_new("trickle", trickle_thread, &t);
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    g_thread_join(th);
    g_assert_false(channel_has_buffered(p.in));
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_TIMED_OUT, "no frame within 200 ms");
    g_clear_error(&err);
    /* Waiting again is fine; a header in four pieces, 30 ms apart. */
    t.buf = ka;
    t.len = FRAME_HDR_LEN;
    t.chunk = 8;
    th = g_thread_new("trickle", trickle_thread, &t);
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_thread_join(th);
    g_assert_no_error(err);
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    raw_close(&p);
}

/* The peer gone inside a frame partly read ahead: the counts are right. */
static void test_read_ahead_truncated(void)
{
    struct frame_hdr h = {.type = FRAME_PAGE, .len = PAGE_SIZE};
    uint8_t buf[FRAME_HDR_LEN + 100] = {0}, ka[FRAME_HDR_LEN];
    static uint8_t dst[PAGE_SIZE];
    GError *err = NULL;
    struct raw_pair p;

    raw_open_bulk(&p);
    frame_encode(&h, buf);
    raw_write(p.fd, buf, sizeof(buf));
    wait_queued(p.in, sizeof(buf));
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_true(channel_has_buffered(p.in));
    g_assert_true(channel_recv_payload(p.in, dst, 60, &err));
    g_assert_no_error(err);
    close(p.fd);
    p.fd = -1;
    expect_truncated_payload(p.in, dst);
    raw_close(&p);

    raw_open_bulk(&p);
    raw_frame_and_part(&p, ka, 10);
    close(p.fd);
    p.fd = -1;
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   "truncated frame: peer closed the connection after 10 of "
                   "32 header bytes");
    g_clear_error(&err);
    raw_close(&p);

    /* A whole frame read ahead, then a clean close: not truncated. */
    raw_open_bulk(&p);
    raw_frame_and_part(&p, ka, FRAME_HDR_LEN);
    close(p.fd);
    p.fd = -1;
    g_assert_true(channel_recv_hdr(p.in, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(h.type, ==, FRAME_KEEPALIVE);
    g_assert_false(channel_recv_hdr(p.in, &h, &err));
    assert_err_has(err, G_IO_ERROR_CONNECTION_CLOSED,
                   "bulk channel 0 from 127.0.0.1:");
    g_assert_null(strstr(err->message, "truncated"));
    g_clear_error(&err);
    raw_close(&p);
}

/* Transports by the name config and Hello use. */
static void test_by_name(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(transport_by_name("tcp", &err) == transport_tcp());
    g_assert_no_error(err);
    g_assert_cmpstr(transport_name(transport_tcp()), ==, "tcp");
    g_assert_null(transport_by_name("udp", &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
    /* "tcp", and "rdma" in a build with it: test_transport.c. */
    g_assert_nonnull(strstr(err->message, "unknown transport 'udp'"));
    g_assert_nonnull(strstr(err->message, "this build has: tcp"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tcp/by-name", test_by_name);
    g_test_add_func("/tcp/wait-and-peer-closed", test_wait_and_peer_closed);
    g_test_add_func("/tcp/parse", test_parse);
    g_test_add_func("/tcp/format", test_format);
    g_test_add_func("/tcp/pages-ipv4", test_pages_v4);
    g_test_add_func("/tcp/send-buffer", test_send_buffer);
    g_test_add_func("/tcp/send-file", test_send_file);
    g_test_add_func("/tcp/pages-ipv6", test_pages_v6);
    g_test_add_func("/tcp/listen-any", test_listen_any);
    g_test_add_func("/tcp/discard", test_discard);
    g_test_add_func("/tcp/big-transfer", test_big_transfer);
    g_test_add_func("/tcp/concurrent-senders", test_concurrent_senders);
    g_test_add_func("/tcp/messages", test_messages);
    g_test_add_func("/tcp/bad-sends", test_bad_sends);
    g_test_add_func("/tcp/truncated-header", test_truncated_header);
    g_test_add_func("/tcp/truncated-payload", test_truncated_payload);
    g_test_add_func("/tcp/clean-close", test_clean_close);
    g_test_add_func("/tcp/garbage", test_garbage);
    g_test_add_func("/tcp/garbage-message", test_garbage_message);
    g_test_add_func("/tcp/unexpected-frame", test_unexpected_frame);
    g_test_add_func("/tcp/connect-refused", test_connect_refused);
    g_test_add_func("/tcp/connect-timeout", test_connect_timeout);
    g_test_add_func("/tcp/address-in-use", test_address_in_use);
    g_test_add_func("/tcp/timeout", test_timeout);
    g_test_add_func("/tcp/timeout-per-frame", test_timeout_per_frame);
    g_test_add_func("/tcp/deadline", test_deadline);
    g_test_add_func("/tcp/shutdown-wakes", test_shutdown_wakes);
    g_test_add_func("/tcp/read-ahead", test_read_ahead);
    g_test_add_func("/tcp/read-ahead-split-header",
                    test_read_ahead_split_header);
    g_test_add_func("/tcp/read-ahead-truncated", test_read_ahead_truncated);
    return g_test_run();
}
