/*
 * test_tls.c - TLS 1.3 channels (tls.h) over real TCP on 127.0.0.1, the
 * accepting side in a thread: frames both ways with PSK and X.509, through
 * a relay that records the wire to show that a page's bytes never appear
 * on it (and do with TLS off); then refusals: different keys, a
 * certificate from another CA, plaintext against TLS both ways; timeouts,
 * shutdown, buffered records and the settings checks.
 *
 * Certificates come from tests/lib/tls-certs.sh (certtool), run from the
 * source tree's top, as make check does.
 */
#include "peer_msg.h"
#include "tls.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#define TEST_TIMEOUT_MS 5000
#define PAGE            4096
#define NPAGES          64

static char *cert_dir;

static char *cert(const char *name)
{
    return g_build_filename(cert_dir, name, NULL);
}

static void key_set(struct auth_key *k, const char *s)
{
    auth_key_clear(k);
    k->len = strlen(s);
    memcpy(k->bytes, s, k->len);
}

static struct tls_context *psk_ctx(const char *key)
{
    static struct auth_key k; /* tls_context_init() derives and forgets */
    struct tls_settings s = {.mode = TLS_PSK, .psk = &k};
    struct tls_context *ctx;
    GError *err = NULL;

    key_set(&k, key);
    g_assert_true(tls_context_init(&ctx, &s, &err));
    g_assert_no_error(err);
    g_assert_nonnull(ctx);
    return ctx;
}

/*
 * Our certificate @own ("a", "b": from that CA, naming 127.0.0.1;
 * "wrong": from CA a, naming wrong.invalid only), trusting CA @trust,
 * requiring peers to be named @peer_name (NULL: their address).
 */
static struct tls_context *x509_ctx_named(const char *own, const char *trust,
                                          const char *peer_name)
{
    g_autofree char *crt = g_strdup_printf("%s/peer-%s.pem", cert_dir, own);
    g_autofree char *key = g_strdup_printf("%s/peer-%s.key", cert_dir, own);
    g_autofree char *ca = g_strdup_printf("%s/ca-%s.pem", cert_dir, trust);
    struct tls_settings s = {.mode = TLS_X509,
                             .cert_file = crt,
                             .key_file = key,
                             .ca_file = ca,
                             .peer_name = peer_name};
    struct tls_context *ctx;
    GError *err = NULL;

    g_assert_true(tls_context_init(&ctx, &s, &err));
    g_assert_no_error(err);
    return ctx;
}

static struct tls_context *x509_ctx(const char *own, const char *trust)
{
    return x509_ctx_named(own, trust, NULL);
}

static void assert_err(const GError *err, int code, const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != G_IO_ERROR || err->code != code ||
        !strstr(err->message, text)) {
        g_error("got '%s' (%d), wanted %d with '%s'", err->message, err->code,
                code, text);
    }
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("%s", err->message); /* what the log would say */
}

/* ---- a relay that records what crosses the wire ----------------------- */

struct relay {
    int lfd;
    uint16_t port;
    uint16_t target;
    GThread *thread;
    GByteArray *wire; /* both directions */
};

static int tcp_listen_local(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    g_assert_cmpint(listen(fd, 4), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&a, &len), ==, 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Copy what @from has to @to, recording it; false at EOF or error. */
static bool relay_move(struct relay *r, int from, int to)
{
    uint8_t buf[65536];
    ssize_t n = read(from, buf, sizeof(buf));

    if (n <= 0) {
        return false;
    }
    g_byte_array_append(r->wire, buf, n);
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, n - off);

        if (w <= 0) {
            return false;
        }
        off += w;
    }
    return true;
}

static gpointer relay_main(gpointer opaque)
{
    struct relay *r = opaque;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(r->target),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(c, >=, 0);
    g_assert_cmpint(connect(s, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    for (;;) {
        struct pollfd p[2] = {{.fd = c, .events = POLLIN},
                              {.fd = s, .events = POLLIN}};

        if (poll(p, 2, TEST_TIMEOUT_MS * 2) <= 0) {
            break;
        }
        if ((p[0].revents && !relay_move(r, c, s)) ||
            (p[1].revents && !relay_move(r, s, c))) {
            break;
        }
    }
    close(c);
    close(s);
    return NULL;
}

static void relay_start(struct relay *r, uint16_t target)
{
    *r = (struct relay){.target = target, .wire = g_byte_array_new()};
    r->lfd = tcp_listen_local(&r->port);
    r->thread = g_thread_new("relay", relay_main, r);
}

/* After both ends closed: the relay saw EOF. */
static void relay_finish(struct relay *r)
{
    g_thread_join(r->thread);
    close(r->lfd);
}

static bool wire_contains(const struct relay *r, const void *needle, size_t len)
{
    return r->wire->len >= len &&
           memmem(r->wire->data, r->wire->len, needle, len) != NULL;
}

/* ---- a connected pair -------------------------------------------------- */

struct pair {
    struct listener *l;
    const struct tls_context *sctx;
    bool plain_server; /* accept without TLS, whatever sctx */
    struct channel *client, *server;
    GError *cerr, *serr;
};

static gpointer accept_main(gpointer opaque)
{
    struct pair *p = opaque;
    struct channel *ch = listener_accept(p->l, &p->serr);

    if (ch && !p->plain_server) {
        ch = tls_server(ch, p->sctx, &p->serr);
    }
    if (ch) {
        g_assert_true(channel_set_timeout(ch, TEST_TIMEOUT_MS, NULL));
    }
    p->server = ch;
    return NULL;
}

static uint16_t port_of(const char *address)
{
    return atoi(strrchr(address, ':') + 1);
}

/* Connect a client with @cctx to a server with @sctx, via @r if given. */
static void pair_open(struct pair *p, const struct tls_context *cctx,
                      const struct tls_context *sctx, struct relay *r)
{
    GError *err = NULL;
    g_autofree char *to = NULL;
    struct channel *ch;
    GThread *th;

    *p = (struct pair){.sctx = sctx};
    p->l = transport_listen(transport_tcp(), "127.0.0.1:0", NULL, &err);
    g_assert_no_error(err);
    if (r) {
        relay_start(r, port_of(listener_address(p->l)));
    }
    to = r ? g_strdup_printf("127.0.0.1:%u", r->port)
           : g_strdup(listener_address(p->l));
    th = g_thread_new("accept", accept_main, p);
    ch = transport_connect(transport_tcp(), to, CHANNEL_CONTROL, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_true(channel_set_timeout(ch, TEST_TIMEOUT_MS, NULL));
    ch = tls_client(ch, cctx, NULL, &p->cerr);
    if (ch) {
        g_assert_true(channel_set_timeout(ch, TEST_TIMEOUT_MS, NULL));
    }
    p->client = ch;
    g_thread_join(th);
}

static void pair_close(struct pair *p)
{
    channel_close(p->client);
    channel_close(p->server);
    listener_close(p->l);
    g_clear_error(&p->cerr);
    g_clear_error(&p->serr);
}

/* ---- frames both ways -------------------------------------------------- */

static void fill_pages(uint8_t *buf)
{
    for (unsigned i = 0; i < NPAGES; i++) {
        for (unsigned off = 0; off < PAGE; off += 32) {
            char piece[33]; /* 32 bytes and the terminator, left out */

            g_snprintf(piece, sizeof(piece), "SECRET-PAGE-%04u-OFFSET-%06u###",
                       i, off);
            memcpy(buf + i * PAGE + off, piece, 32);
        }
    }
}

/* One PAGE frame of NPAGES pages, one iovec each, then a message. */
static void send_pages(struct channel *ch, const uint8_t *pages)
{
    struct iovec iov[NPAGES];
    struct frame_hdr h = {.type = FRAME_PAGE, .len = NPAGES * PAGE}, batch[3];
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    GError *err = NULL;

    for (unsigned i = 0; i < NPAGES; i++) {
        iov[i] = (struct iovec){(void *)(pages + i * PAGE), PAGE};
    }
    g_assert_true(channel_send_frame(ch, &h, iov, NPAGES, &err));
    g_assert_no_error(err);
    /* Three of the pages again, as single-page frames in one call. */
    for (unsigned i = 0; i < 3; i++) {
        batch[i] = (struct frame_hdr){
            .type = FRAME_PAGE, .offset = i * 5 * PAGE, .len = PAGE};
        iov[i] = (struct iovec){(void *)(pages + i * 5 * PAGE), PAGE};
    }
    g_assert_true(channel_send_frames(ch, batch, iov, 3, &err));
    g_assert_no_error(err);
    hello.vm_name = (char *)"vm-after-pages";
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    msg.hello = &hello;
    g_assert_true(channel_send_msg(ch, &msg, &err));
    g_assert_no_error(err);
}

/* What send_pages() sent, received straight into @dst, page by page. */
static void recv_pages(struct channel *ch, const uint8_t *want)
{
    g_autofree uint8_t *dst = g_malloc0(NPAGES * PAGE);
    g_autoptr(PeerMessage) msg = NULL;
    struct frame_hdr h;
    GError *err = NULL;

    g_assert_true(channel_recv_hdr(ch, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpint(h.type, ==, FRAME_PAGE);
    g_assert_cmpuint(h.len, ==, NPAGES * PAGE);
    for (unsigned i = 0; i < NPAGES; i++) {
        g_assert_true(channel_recv_payload(ch, dst + i * PAGE, PAGE, &err));
    }
    g_assert_cmpmem(dst, NPAGES * PAGE, want, NPAGES * PAGE);
    for (unsigned i = 0; i < 3; i++) {
        g_assert_true(channel_recv_hdr(ch, &h, &err));
        g_assert_no_error(err);
        g_assert_cmphex(h.offset, ==, i * 5 * PAGE);
        g_assert_cmpuint(h.len, ==, PAGE);
        g_assert_true(channel_recv_payload(ch, dst, PAGE, &err));
        g_assert_cmpmem(dst, PAGE, want + i * 5 * PAGE, PAGE);
    }
    msg = channel_recv_msg(ch, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(msg->hello->vm_name, ==, "vm-after-pages");
}

/* Pages both ways through a relay; the pattern is on the wire iff plain. */
static void check_frames(const struct tls_context *cctx,
                         const struct tls_context *sctx)
{
    g_autofree uint8_t *pages = g_malloc(NPAGES * PAGE);
    const char *probe = "SECRET-PAGE-0007-OFFSET-000512";
    struct relay r;
    struct pair p;

    fill_pages(pages);
    pair_open(&p, cctx, sctx, &r);
    g_assert_no_error(p.cerr);
    g_assert_no_error(p.serr);
    send_pages(p.client, pages);
    recv_pages(p.server, pages);
    send_pages(p.server, pages);
    recv_pages(p.client, pages);
    pair_close(&p);
    relay_finish(&r);
    g_assert_cmpuint(r.wire->len, >, 2 * NPAGES * PAGE);
    if (cctx) {
        g_assert_false(wire_contains(&r, probe, strlen(probe)));
        g_assert_false(wire_contains(&r, "vm-after-pages", 14));
    } else {
        g_assert_true(wire_contains(&r, probe, strlen(probe)));
    }
    g_byte_array_unref(r.wire);
}

static void test_plain_frames_visible(void)
{
    check_frames(NULL, NULL);
}

static void test_psk_frames(void)
{
    struct tls_context *a = psk_ctx("correct horse battery staple");
    struct tls_context *b = psk_ctx("correct horse battery staple");

    check_frames(a, b);
    tls_context_free(a);
    tls_context_free(b);
}

static void test_x509_frames(void)
{
    struct tls_context *a = x509_ctx("a", "a");

    check_frames(a, a);
    tls_context_free(a);
}

/* ---- refusals ---------------------------------------------------------- */

static void test_psk_wrong_key(void)
{
    struct tls_context *a = psk_ctx("correct horse battery staple");
    struct tls_context *b = psk_ctx("correct horse battery stapler");
    struct pair p;

    pair_open(&p, a, b, NULL);
    g_assert_null(p.client);
    g_assert_null(p.server);
    assert_err(p.serr, G_IO_ERROR_FAILED, "psk-files differ");
    assert_err(p.cerr, G_IO_ERROR_FAILED, "do the psk-files differ?");
    pair_close(&p);
    tls_context_free(a);
    tls_context_free(b);
}

/* The server's certificate comes from a CA the client does not trust. */
static void test_x509_server_wrong_ca(void)
{
    struct tls_context *c = x509_ctx("a", "a");
    struct tls_context *s = x509_ctx("b", "a");
    struct pair p;

    pair_open(&p, c, s, NULL);
    g_assert_null(p.client);
    g_assert_null(p.server);
    assert_err(p.cerr, G_IO_ERROR_FAILED,
               "peer certificate rejected: The certificate is NOT trusted");
    assert_err(p.serr, G_IO_ERROR_FAILED, "the peer refused it");
    pair_close(&p);
    tls_context_free(c);
    tls_context_free(s);
}

/*
 * The server's certificate is from the right CA but names another host
 * than the one dialed (127.0.0.1): the client refuses it.
 */
static void test_x509_server_wrong_name(void)
{
    struct tls_context *c = x509_ctx("a", "a");
    struct tls_context *s = x509_ctx("wrong", "a");
    struct pair p;

    pair_open(&p, c, s, NULL);
    g_assert_null(p.client);
    g_assert_null(p.server);
    assert_err(p.cerr, G_IO_ERROR_FAILED,
               "The name in the certificate does not match the expected");
    pair_close(&p);
    tls_context_free(c);
    tls_context_free(s);
}

/* The client's certificate does not name the address it comes from. */
static void test_x509_client_wrong_name(void)
{
    struct tls_context *c = x509_ctx("wrong", "a");
    struct tls_context *s = x509_ctx("a", "a");
    struct pair p;

    pair_open(&p, c, s, NULL);
    g_assert_null(p.server);
    assert_err(p.serr, G_IO_ERROR_FAILED,
               "The name in the certificate does not match the expected");
    channel_close(p.client);
    p.client = NULL;
    pair_close(&p);
    tls_context_free(c);
    tls_context_free(s);
}

/* tls-peer-name: certificates that name neither address, but that name. */
static void test_x509_peer_name(void)
{
    struct tls_context *c = x509_ctx_named("wrong", "a", "wrong.invalid");
    struct tls_context *s = x509_ctx_named("wrong", "a", "wrong.invalid");

    check_frames(c, s);
    tls_context_free(c);
    tls_context_free(s);
}

/* The client's certificate comes from a CA the server does not trust. */
static void test_x509_client_wrong_ca(void)
{
    struct tls_context *c = x509_ctx("b", "a");
    struct tls_context *s = x509_ctx("a", "a");
    struct pair p;

    pair_open(&p, c, s, NULL);
    g_assert_null(p.server);
    assert_err(p.serr, G_IO_ERROR_FAILED,
               "peer certificate rejected: The certificate is NOT trusted");
    /* TLS 1.3: the client may finish before the server's verdict. */
    if (p.client) {
        struct frame_hdr h;
        GError *err = NULL;

        g_assert_false(channel_recv_hdr(p.client, &h, &err));
        g_test_message("client after the refusal: %s", err->message);
        g_error_free(err);
    } else {
        assert_err(p.cerr, G_IO_ERROR_FAILED, "the peer refused it");
    }
    pair_close(&p);
    tls_context_free(c);
    tls_context_free(s);
}

static void test_plain_client_tls_server(void)
{
    struct tls_context *s = psk_ctx("correct horse battery staple");
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    struct pair p;
    GThread *th;
    GError *err = NULL;
    struct channel *ch;

    /* pair_open() would block: the plaintext client speaks first. */
    p = (struct pair){.sctx = s};
    p.l = transport_listen(transport_tcp(), "127.0.0.1:0", NULL, &err);
    th = g_thread_new("accept", accept_main, &p);
    ch = transport_connect(transport_tcp(), listener_address(p.l),
                           CHANNEL_CONTROL, 0, NULL, &err);
    g_assert_no_error(err);
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    msg.hello = &hello;
    g_assert_true(channel_send_msg(ch, &msg, &err));
    g_thread_join(th);
    g_assert_null(p.server);
    assert_err(p.serr, G_IO_ERROR_INVALID_DATA,
               "the peer speaks plaintext, but this daemon requires TLS "
               "(tls = psk)");
    g_assert_null(channel_recv_msg(ch, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
    g_clear_error(&err);
    channel_close(ch);
    pair_close(&p);
    tls_context_free(s);
}

/* A plaintext listener, as a daemon with tls = off: one header, then out. */
static gpointer plain_server_main(gpointer opaque)
{
    struct pair *p = opaque;
    struct channel *ch = listener_accept(p->l, &p->serr);
    struct frame_hdr h;

    g_assert_nonnull(ch);
    g_assert_true(channel_set_timeout(ch, TEST_TIMEOUT_MS, NULL));
    g_assert_false(channel_recv_hdr(ch, &h, &p->serr));
    channel_close(ch);
    return NULL;
}

static void test_tls_client_plain_server(void)
{
    struct tls_context *c = psk_ctx("correct horse battery staple");
    GError *err = NULL;
    struct channel *ch;
    struct pair p = {0};
    GThread *th;

    p.l = transport_listen(transport_tcp(), "127.0.0.1:0", NULL, &err);
    g_assert_no_error(err);
    th = g_thread_new("plain", plain_server_main, &p);
    ch = transport_connect(transport_tcp(), listener_address(p.l),
                           CHANNEL_CONTROL, 0, NULL, &err);
    g_assert_no_error(err);
    p.client = tls_client(ch, c, NULL, &p.cerr);
    g_thread_join(th);
    g_assert_null(p.client);
    assert_err(p.cerr, G_IO_ERROR_CONNECTION_CLOSED,
               "the peer closed the connection: is tls = psk on the peer?");
    g_test_message("plaintext side: %s", p.serr->message);
    pair_close(&p);
    tls_context_free(c);
}

/* ---- channel behaviour ------------------------------------------------- */

static void test_timeout_then_frame(void)
{
    struct tls_context *a = psk_ctx("correct horse battery staple");
    struct frame_hdr h, k = {.type = FRAME_KEEPALIVE};
    GError *err = NULL;
    struct pair p;

    pair_open(&p, a, a, NULL);
    g_assert_true(channel_set_timeout(p.server, 100, NULL));
    g_assert_false(channel_recv_hdr(p.server, &h, &err));
    assert_err(err, G_IO_ERROR_TIMED_OUT, "no frame within 100 ms");
    g_clear_error(&err);
    g_assert_true(channel_send_frame(p.client, &k, NULL, 0, &err));
    g_assert_true(channel_recv_hdr(p.server, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpint(h.type, ==, FRAME_KEEPALIVE);
    pair_close(&p);
    tls_context_free(a);
}

static gpointer blocked_recv(gpointer opaque)
{
    struct frame_hdr h;
    GError *err = NULL;

    g_assert_false(channel_recv_hdr(opaque, &h, &err));
    return err;
}

static void test_shutdown_wakes_receiver(void)
{
    struct tls_context *a = psk_ctx("correct horse battery staple");
    struct pair p;
    GThread *th;
    GError *err;

    pair_open(&p, a, a, NULL);
    g_assert_true(channel_set_timeout(p.server, 0, NULL));
    th = g_thread_new("recv", blocked_recv, p.server);
    g_usleep(100000);
    channel_shutdown(p.server);
    err = g_thread_join(th);
    assert_err(err, G_IO_ERROR_CANCELLED, "shut down while receiving");
    g_error_free(err);
    pair_close(&p);
    tls_context_free(a);
}

/* A payload already decrypted shows in channel_has_buffered(), not poll. */
static void test_buffered(void)
{
    struct tls_context *a = psk_ctx("correct horse battery staple");
    uint8_t page[PAGE] = {1, 2, 3}, got[PAGE];
    struct iovec iov = {page, PAGE};
    struct frame_hdr h = {.type = FRAME_PAGE, .len = PAGE};
    struct pollfd pfd;
    GError *err = NULL;
    struct pair p;

    pair_open(&p, a, a, NULL);
    g_assert_false(channel_has_buffered(p.server));
    g_assert_true(channel_send_frame(p.client, &h, &iov, 1, &err));
    g_assert_true(channel_recv_hdr(p.server, &h, &err));
    g_assert_true(channel_has_buffered(p.server));
    pfd = (struct pollfd){.fd = channel_fd(p.server), .events = POLLIN};
    g_assert_cmpint(poll(&pfd, 1, 0), ==, 0);
    g_assert_true(channel_recv_payload(p.server, got, PAGE, &err));
    g_assert_cmpmem(got, PAGE, page, PAGE);
    g_assert_false(channel_has_buffered(p.server));
    pair_close(&p);
    tls_context_free(a);
}

/* ---- settings ---------------------------------------------------------- */

static void expect_init_error(const struct tls_settings *s, const char *text)
{
    struct tls_context *ctx = (void *)1;
    GError *err = NULL;

    g_assert_false(tls_context_init(&ctx, s, &err));
    g_assert_null(ctx);
    g_assert_nonnull(strstr(err->message, text));
    g_test_message("%s", err->message);
    g_error_free(err);
}

static void test_settings(void)
{
    g_autofree char *crt = cert("peer-a.pem");
    g_autofree char *key = cert("peer-b.key");
    g_autofree char *ca = cert("ca-a.pem");
    struct auth_key none = {0};
    struct tls_settings s = {.mode = TLS_OFF};
    struct tls_context *ctx = (void *)1;
    enum tls_mode m;
    GError *err = NULL;

    g_assert_true(tls_context_init(&ctx, &s, &err));
    g_assert_null(ctx);
    g_assert_true(tls_mode_parse("x509", &m, NULL));
    g_assert_cmpint(m, ==, TLS_X509);
    g_assert_false(tls_mode_parse("on", &m, &err));
    g_clear_error(&err);
    expect_init_error(&(struct tls_settings){.mode = TLS_PSK, .psk = &none},
                      "tls = psk needs a psk-file");
    expect_init_error(
        &(struct tls_settings){.mode = TLS_X509, .cert_file = crt},
        "needs tls-cert-file, tls-key-file and tls-ca-file");
    expect_init_error(&(struct tls_settings){.mode = TLS_X509,
                                             .cert_file = crt,
                                             .key_file = key,
                                             .ca_file = "/nonexistent.pem"},
                      "tls-ca-file /nonexistent.pem");
    /* A key that is not the certificate's. */
    expect_init_error(
        &(struct tls_settings){
            .mode = TLS_X509, .cert_file = crt, .key_file = key, .ca_file = ca},
        "tls-cert-file");
    /* The right key, but others may read it: refused, as a psk-file. */
    g_free(key);
    key = cert("peer-a.key");
    g_assert_cmpint(chmod(key, 0644), ==, 0);
    expect_init_error(
        &(struct tls_settings){
            .mode = TLS_X509, .cert_file = crt, .key_file = key, .ca_file = ca},
        "tls-key-file: key file");
    g_assert_cmpint(chmod(key, 0600), ==, 0);
    g_assert_true(tls_context_init(
        &ctx,
        &(struct tls_settings){
            .mode = TLS_X509, .cert_file = crt, .key_file = key, .ca_file = ca},
        &err));
    g_assert_no_error(err);
    tls_context_free(ctx);
}

int main(int argc, char **argv)
{
    const char *script = "tests/lib/tls-certs.sh";
    g_autofree char *cmd = NULL;
    int status, rc;

    g_test_init(&argc, &argv, NULL);
    cert_dir = g_dir_make_tmp("test-tls-XXXXXX", NULL);
    cmd = g_strdup_printf("%s %s", script, cert_dir);
    if (!g_spawn_command_line_sync(cmd, NULL, NULL, &status, NULL) ||
        !g_spawn_check_wait_status(status, NULL)) {
        g_error("%s failed: run from the source tree's top, with certtool",
                cmd);
    }
    g_test_add_func("/tls/plain/frames-visible", test_plain_frames_visible);
    g_test_add_func("/tls/psk/frames", test_psk_frames);
    g_test_add_func("/tls/x509/frames", test_x509_frames);
    g_test_add_func("/tls/psk/wrong-key", test_psk_wrong_key);
    g_test_add_func("/tls/x509/server-wrong-ca", test_x509_server_wrong_ca);
    g_test_add_func("/tls/x509/client-wrong-ca", test_x509_client_wrong_ca);
    g_test_add_func("/tls/refuse/x509-server-wrong-name",
                    test_x509_server_wrong_name);
    g_test_add_func("/tls/refuse/x509-client-wrong-name",
                    test_x509_client_wrong_name);
    g_test_add_func("/tls/x509/peer-name", test_x509_peer_name);
    g_test_add_func("/tls/refuse/plain-client", test_plain_client_tls_server);
    g_test_add_func("/tls/refuse/plain-server", test_tls_client_plain_server);
    g_test_add_func("/tls/timeout-then-frame", test_timeout_then_frame);
    g_test_add_func("/tls/shutdown-wakes-receiver",
                    test_shutdown_wakes_receiver);
    g_test_add_func("/tls/buffered", test_buffered);
    g_test_add_func("/tls/settings", test_settings);
    rc = g_test_run();
    g_free(cmd);
    cmd = g_strdup_printf("rm -rf %s", cert_dir);
    g_spawn_command_line_sync(cmd, NULL, NULL, NULL, NULL);
    g_free(cert_dir);
    return rc;
}
