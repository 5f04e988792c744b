/*
 * test_auth.c - pre-shared key authentication between two postcopyd, over
 * real TCP channels on 127.0.0.1 (the listening side in a thread): the
 * right key, wrong keys, a side without a key, garbage, a replayed and a
 * reflected proof, and the key file checks.
 */
#include "auth.h"
#include "peer_msg.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

/* A test never waits this long unless something is broken. */
#define TEST_TIMEOUT_MS 5000

#define KEY_A "correct horse battery staple"
#define KEY_B "correct horse battery stapler"

static void key_set(struct auth_key *k, const char *s)
{
    auth_key_clear(k);
    k->len = strlen(s);
    memcpy(k->bytes, s, k->len);
}

static void assert_err(const GError *err, GQuark domain, int code,
                       const char *text)
{
    g_assert_nonnull(err);
    if (err->domain != domain || err->code != code ||
        !strstr(err->message, text)) {
        g_error("got '%s' (%s %d), wanted %s %d with '%s'", err->message,
                g_quark_to_string(err->domain), err->code,
                g_quark_to_string(domain), code, text);
    }
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("%s", err->message); /* what the log would say */
}

/* ---- the listening side, in a thread ---------------------------------- */

enum serve_mode {
    SERVE_AUTH,  /* auth_server(), then read the Hello */
    SERVE_NOKEY, /* what a daemon without a key does: read the Hello */
};

struct server {
    struct listener *l;
    const struct auth_key *key;
    enum serve_mode mode;
    GThread *thread;
    bool ok;
    GError *err;
    PeerMessage *hello; /* the first message after authentication */
};

static gpointer server_main(gpointer opaque)
{
    struct server *s = opaque;
    struct channel *ch = listener_accept(s->l, &s->err);

    if (!ch) {
        return NULL;
    }
    g_assert_true(channel_set_timeout(ch, TEST_TIMEOUT_MS, NULL));
    s->ok = s->mode == SERVE_NOKEY || auth_server(ch, s->key, &s->err);
    if (s->ok) {
        s->hello = channel_recv_msg(ch, &s->err);
    }
    channel_close(ch);
    return NULL;
}

static void server_start(struct server *s, struct listener *l,
                         const struct auth_key *key, enum serve_mode mode)
{
    *s = (struct server){.l = l, .key = key, .mode = mode};
    s->thread = g_thread_new("auth-server", server_main, s);
}

static void server_join(struct server *s)
{
    g_thread_join(s->thread);
}

static void server_clear(struct server *s)
{
    g_clear_error(&s->err);
    g_clear_pointer(&s->hello, peer_message_free);
}

static struct listener *listen_local(void)
{
    GError *err = NULL;
    struct listener *l =
        transport_listen(transport_tcp(), "127.0.0.1:0", NULL, &err);

    g_assert_no_error(err);
    return l;
}

static struct channel *connect_to(struct listener *l)
{
    GError *err = NULL;
    struct channel *ch = transport_connect(transport_tcp(), listener_address(l),
                                           CHANNEL_CONTROL, 0, NULL, &err);

    g_assert_no_error(err);
    g_assert_true(channel_set_timeout(ch, TEST_TIMEOUT_MS, NULL));
    return ch;
}

static bool send_hello(struct channel *ch, GError **err)
{
    Postcopy__Peer__Hello hello = POSTCOPY__PEER__HELLO__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    hello.version = PEER_PROTOCOL_VERSION;
    hello.min_version = PEER_PROTOCOL_VERSION;
    hello.vm_name = "vm0";
    hello.channel = POSTCOPY__PEER__CHANNEL_KIND__CHANNEL_KIND_CONTROL;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    msg.hello = &hello;
    return channel_send_msg(ch, &msg, err);
}

/*
 * Connect with @ckey to a listener with @skey.  On success the connector
 * also sends a Hello, which the listener must read intact.
 */
static bool run_pair(const struct auth_key *ckey, const struct auth_key *skey,
                     struct server *s, GError **err)
{
    struct listener *l = listen_local();
    struct channel *ch;
    bool ok;

    server_start(s, l, skey, SERVE_AUTH);
    ch = connect_to(l);
    ok = auth_client(ch, ckey, err);
    if (ok) {
        g_assert_true(send_hello(ch, NULL));
    }
    server_join(s);
    channel_close(ch);
    listener_close(l);
    return ok;
}

/* ---- the exchange ------------------------------------------------------ */

static void test_right_key(void)
{
    struct auth_key k;
    GError *err = NULL;
    struct server s;

    key_set(&k, KEY_A);
    g_assert_true(run_pair(&k, &k, &s, &err));
    g_assert_no_error(err);
    g_assert_no_error(s.err);
    g_assert_true(s.ok);
    /* The channel carries the protocol on, framing intact. */
    g_assert_nonnull(s.hello);
    g_assert_cmpint(s.hello->msg_case, ==,
                    POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO);
    g_assert_cmpstr(s.hello->hello->vm_name, ==, "vm0");
    server_clear(&s);
    auth_key_clear(&k);
}

/* No key on either side: nothing is exchanged, the Hello comes first. */
static void test_no_key(void)
{
    struct auth_key none = {0};
    GError *err = NULL;
    struct server s;

    g_assert_true(run_pair(NULL, NULL, &s, &err));
    g_assert_no_error(err);
    g_assert_true(s.ok);
    g_assert_nonnull(s.hello);
    server_clear(&s);
    g_assert_true(run_pair(&none, &none, &s, &err));
    g_assert_true(s.ok);
    g_assert_nonnull(s.hello);
    server_clear(&s);
}

static void check_wrong_key(const char *ckey, const char *skey)
{
    struct auth_key c, k;
    GError *err = NULL;
    struct server s;

    key_set(&c, ckey);
    key_set(&k, skey);
    g_assert_false(run_pair(&c, &k, &s, &err));
    assert_err(err, AUTH_ERROR, AUTH_ERROR_WRONG_KEY,
               "failed authentication: wrong key");
    g_assert_true(g_str_has_prefix(err->message, "peer 127.0.0.1:"));
    g_assert_false(s.ok);
    assert_err(s.err, AUTH_ERROR, AUTH_ERROR_WRONG_KEY,
               "failed authentication: wrong key");
    g_assert_true(g_str_has_prefix(s.err->message, "peer 127.0.0.1:"));
    /* Nothing gets through past a failed exchange. */
    g_assert_null(s.hello);
    g_clear_error(&err);
    server_clear(&s);
}

static void test_wrong_key(void)
{
    check_wrong_key(KEY_A, KEY_B); /* the listener's is wrong */
    check_wrong_key(KEY_B, KEY_A); /* the connector's is */
    /* One bit in the last byte. */
    check_wrong_key("0123456789abcdef", "0123456789abcdeg");
}

/* The connector has no key, the listener has: refused, both say why. */
static void test_client_without_key(void)
{
    struct listener *l = listen_local();
    g_autoptr(PeerMessage) reply = NULL;
    struct channel *ch;
    struct auth_key k;
    GError *err = NULL;
    struct server s;

    key_set(&k, KEY_A);
    server_start(&s, l, &k, SERVE_AUTH);
    ch = connect_to(l);
    g_assert_true(auth_client(ch, NULL, &err)); /* nothing to do */
    g_assert_true(send_hello(ch, &err));
    reply = channel_recv_msg(ch, &err);
    g_assert_no_error(err);
    g_assert_cmpint(reply->msg_case, ==,
                    POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY);
    g_assert_false(reply->hello_reply->ok);
    g_assert_cmpint(reply->hello_reply->code, ==,
                    POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_AUTH);
    g_assert_nonnull(strstr(reply->hello_reply->error, "psk-file"));
    server_join(&s);
    g_assert_false(s.ok);
    assert_err(s.err, AUTH_ERROR, AUTH_ERROR_REFUSED,
               "sent hello without authenticating");
    g_assert_null(s.hello);
    server_clear(&s);
    channel_close(ch);
    listener_close(l);
}

/* The connector has a key, the listener (a daemon without one) has not. */
static void test_server_without_key(void)
{
    struct listener *l = listen_local();
    struct channel *ch;
    struct auth_key k;
    GError *err = NULL;
    struct server s;

    key_set(&k, KEY_A);
    server_start(&s, l, NULL, SERVE_NOKEY);
    ch = connect_to(l);
    g_assert_false(auth_client(ch, &k, &err));
    assert_err(err, AUTH_ERROR, AUTH_ERROR_REFUSED,
               "closed the connection instead of authenticating");
    g_clear_error(&err);
    server_join(&s);
    /* What it got instead of a Hello. */
    g_assert_nonnull(s.hello);
    g_assert_cmpint(s.hello->msg_case, ==,
                    POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_CHALLENGE);
    server_clear(&s);
    channel_close(ch);
    listener_close(l);
}

/* Run the listener against a connector that sends @bytes raw, then hangs. */
static void check_garbage(const void *bytes, size_t len, GQuark domain,
                          int code, const char *text)
{
    struct listener *l = listen_local();
    struct channel *ch;
    struct auth_key k;
    struct server s;

    key_set(&k, KEY_A);
    server_start(&s, l, &k, SERVE_AUTH);
    ch = connect_to(l);
    g_assert_cmpint(write(channel_fd(ch), bytes, len), ==, (ssize_t)len);
    shutdown(channel_fd(ch), SHUT_WR);
    server_join(&s);
    g_assert_false(s.ok);
    assert_err(s.err, domain, code, text);
    g_assert_nonnull(strstr(s.err->message, "did not authenticate"));
    g_assert_null(s.hello);
    server_clear(&s);
    channel_close(ch);
    listener_close(l);
}

static void test_garbage(void)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: postcopyd\r\n"
                               "User-Agent: curl/7.88.1\r\n\r\n";
    struct frame_hdr page = {.type = FRAME_PAGE, .len = 4096};
    struct frame_hdr big = {.type = FRAME_MSG, .len = 1u << 20};
    uint8_t buf[FRAME_HDR_LEN + 4096] = {0};

    check_garbage(http, sizeof(http) - 1, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                  "bad frame magic");
    /* Well framed, but page data instead of a challenge. */
    frame_encode(&page, buf);
    check_garbage(buf, sizeof(buf), AUTH_ERROR, AUTH_ERROR_REFUSED,
                  "it sent a page frame, not a message");
    /* A message too big to take from a stranger: refused unread. */
    frame_encode(&big, buf);
    check_garbage(buf, FRAME_HDR_LEN + 100, AUTH_ERROR, AUTH_ERROR_REFUSED,
                  "1048576-byte message");
    /* A message frame whose payload is no PeerMessage. */
    big.len = 64;
    frame_encode(&big, buf);
    memset(buf + FRAME_HDR_LEN, 0xff, 64);
    check_garbage(buf, FRAME_HDR_LEN + 64, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                  "undecodable");
    /* The connection closes before anything. */
    check_garbage(buf, 0, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                  "peer closed the connection");
}

/* A challenge the listener cannot accept. */
static void test_bad_challenge(void)
{
    Postcopy__Peer__AuthChallenge c = POSTCOPY__PEER__AUTH_CHALLENGE__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    uint8_t nonce[AUTH_NONCE_LEN] = {1, 2, 3};
    struct listener *l = listen_local();
    struct auth_key k;
    struct server s;

    key_set(&k, KEY_A);
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_CHALLENGE;
    msg.auth_challenge = &c;
    for (int i = 0; i < 2; i++) {
        g_autoptr(PeerMessage) reply = NULL;
        struct channel *ch;

        c.version = i == 0 ? 2 : AUTH_VERSION;
        c.nonce.data = nonce;
        c.nonce.len = i == 0 ? AUTH_NONCE_LEN : 8;
        server_start(&s, l, &k, SERVE_AUTH);
        ch = connect_to(l);
        g_assert_true(channel_send_msg(ch, &msg, NULL));
        reply = channel_recv_msg(ch, NULL);
        g_assert_nonnull(reply);
        g_assert_cmpint(reply->msg_case, ==,
                        POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESULT);
        g_assert_false(reply->auth_result->ok);
        server_join(&s);
        assert_err(s.err, AUTH_ERROR, AUTH_ERROR_REFUSED,
                   i == 0 ? "authentication version 2, this daemon 1"
                          : "its nonce has 8 bytes, not 32");
        server_clear(&s);
        channel_close(ch);
    }
    listener_close(l);
}

/* ---- replay and reflection, with a connector written from the spec ---- */

static void spec_mac(const char *key, const char *label, const uint8_t *first,
                     const uint8_t *second, uint8_t out[AUTH_MAC_LEN])
{
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)key, strlen(key));
    gsize len = AUTH_MAC_LEN;

    g_hmac_update(h, (const guchar *)label, strlen(label));
    g_hmac_update(h, first, AUTH_NONCE_LEN);
    g_hmac_update(h, second, AUTH_NONCE_LEN);
    g_hmac_get_digest(h, out, &len);
    g_hmac_unref(h);
}

/* Send AuthChallenge{@nonce_c}; the listener's AuthResponse back. */
static PeerMessage *spec_challenge(struct channel *ch,
                                   const uint8_t nonce_c[AUTH_NONCE_LEN])
{
    Postcopy__Peer__AuthChallenge c = POSTCOPY__PEER__AUTH_CHALLENGE__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    GError *err = NULL;
    PeerMessage *reply;

    c.nonce.data = (uint8_t *)nonce_c;
    c.nonce.len = AUTH_NONCE_LEN;
    c.version = AUTH_VERSION;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_CHALLENGE;
    msg.auth_challenge = &c;
    g_assert_true(channel_send_msg(ch, &msg, &err));
    reply = channel_recv_msg(ch, &err);
    g_assert_no_error(err);
    g_assert_cmpint(reply->msg_case, ==,
                    POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESPONSE);
    g_assert_cmpuint(reply->auth_response->mac.len, ==, AUTH_MAC_LEN);
    g_assert_cmpuint(reply->auth_response->nonce.len, ==, AUTH_NONCE_LEN);
    return reply;
}

/* Send @mac as our proof; is the listener's AuthResult ok? */
static bool spec_prove(struct channel *ch, const uint8_t mac[AUTH_MAC_LEN])
{
    Postcopy__Peer__AuthResponse r = POSTCOPY__PEER__AUTH_RESPONSE__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) reply = NULL;
    GError *err = NULL;

    r.mac.data = (uint8_t *)mac;
    r.mac.len = AUTH_MAC_LEN;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESPONSE;
    msg.auth_response = &r;
    g_assert_true(channel_send_msg(ch, &msg, &err));
    reply = channel_recv_msg(ch, &err);
    g_assert_no_error(err);
    g_assert_cmpint(reply->msg_case, ==,
                    POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESULT);
    if (!reply->auth_result->ok) {
        g_assert_cmpstr(reply->auth_result->error, ==, "wrong key");
    }
    return reply->auth_result->ok;
}

static void test_replay(void)
{
    struct listener *l = listen_local();
    uint8_t nonce_c[AUTH_NONCE_LEN], nonce_s1[AUTH_NONCE_LEN];
    uint8_t mac[AUTH_MAC_LEN], recorded[AUTH_MAC_LEN];
    struct auth_key k;
    struct server s;

    key_set(&k, KEY_A);
    memset(nonce_c, 0x5a, sizeof(nonce_c));

    /* 1. A legitimate exchange, recorded.  It also checks the wire format
     * docs/protocol.md gives: the labels, the order of the nonces. */
    {
        g_autoptr(PeerMessage) resp = NULL;
        struct channel *ch;

        server_start(&s, l, &k, SERVE_AUTH);
        ch = connect_to(l);
        resp = spec_challenge(ch, nonce_c);
        memcpy(nonce_s1, resp->auth_response->nonce.data, AUTH_NONCE_LEN);
        spec_mac(KEY_A, "postcopyd-server", nonce_c, nonce_s1, mac);
        g_assert_cmpmem(resp->auth_response->mac.data, AUTH_MAC_LEN, mac,
                        AUTH_MAC_LEN);
        spec_mac(KEY_A, "postcopyd-client", nonce_s1, nonce_c, recorded);
        g_assert_true(spec_prove(ch, recorded));
        g_assert_true(send_hello(ch, NULL));
        server_join(&s);
        g_assert_no_error(s.err);
        g_assert_true(s.ok);
        server_clear(&s);
        channel_close(ch);
    }

    /* 2. Someone without the key replays it: the listener's nonce is new. */
    {
        g_autoptr(PeerMessage) resp = NULL;
        struct channel *ch;

        server_start(&s, l, &k, SERVE_AUTH);
        ch = connect_to(l);
        resp = spec_challenge(ch, nonce_c);
        g_assert_true(memcmp(resp->auth_response->nonce.data, nonce_s1,
                             AUTH_NONCE_LEN) != 0);
        g_assert_false(spec_prove(ch, recorded));
        server_join(&s);
        g_assert_false(s.ok);
        assert_err(s.err, AUTH_ERROR, AUTH_ERROR_WRONG_KEY,
                   "failed authentication: wrong key");
        server_clear(&s);
        channel_close(ch);
    }

    /* 3. ...or reflects the listener's own proof back at it. */
    {
        g_autoptr(PeerMessage) resp = NULL;
        struct channel *ch;

        server_start(&s, l, &k, SERVE_AUTH);
        ch = connect_to(l);
        resp = spec_challenge(ch, nonce_c);
        g_assert_false(spec_prove(ch, resp->auth_response->mac.data));
        server_join(&s);
        g_assert_false(s.ok);
        assert_err(s.err, AUTH_ERROR, AUTH_ERROR_WRONG_KEY, "wrong key");
        server_clear(&s);
        channel_close(ch);
    }
    listener_close(l);
}

/* Two exchanges with the same key never see the same listener nonce. */
static void test_fresh_nonces(void)
{
    struct listener *l = listen_local();
    uint8_t nonce_c[AUTH_NONCE_LEN] = {0};
    uint8_t seen[8][AUTH_NONCE_LEN];
    struct auth_key k;
    struct server s;

    key_set(&k, KEY_A);
    for (int i = 0; i < 8; i++) {
        g_autoptr(PeerMessage) resp = NULL;
        struct channel *ch;

        server_start(&s, l, &k, SERVE_AUTH);
        ch = connect_to(l);
        resp = spec_challenge(ch, nonce_c);
        memcpy(seen[i], resp->auth_response->nonce.data, AUTH_NONCE_LEN);
        for (int j = 0; j < i; j++) {
            g_assert_true(memcmp(seen[i], seen[j], AUTH_NONCE_LEN) != 0);
        }
        channel_close(ch); /* walk away mid-exchange */
        server_join(&s);
        g_assert_false(s.ok);
        assert_err(s.err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                   "peer did not authenticate: ");
        server_clear(&s);
    }
    listener_close(l);
}

static void test_mac_equal(void)
{
    uint8_t a[AUTH_MAC_LEN], b[AUTH_MAC_LEN];

    for (size_t i = 0; i < sizeof(a); i++) {
        a[i] = b[i] = i * 7;
    }
    g_assert_true(auth_mac_equal(a, b, sizeof(a)));
    g_assert_true(auth_mac_equal(a, b, 0));
    /* A difference anywhere counts, including the last byte only. */
    for (size_t i = 0; i < sizeof(a); i++) {
        b[i] ^= 0x80;
        g_assert_false(auth_mac_equal(a, b, sizeof(a)));
        b[i] ^= 0x80;
    }
    b[AUTH_MAC_LEN - 1] ^= 1;
    g_assert_false(auth_mac_equal(a, b, sizeof(a)));
    g_assert_true(auth_mac_equal(a, b, sizeof(a) - 1));
}

/* ---- the key file ----------------------------------------------------- */

struct keydir {
    char *dir;
    char *path;
};

static void keydir_init(struct keydir *d)
{
    d->dir = g_dir_make_tmp("test-auth-XXXXXX", NULL);
    g_assert_nonnull(d->dir);
    d->path = g_build_filename(d->dir, "psk", NULL);
}

static void keydir_clear(struct keydir *d)
{
    g_unlink(d->path);
    g_rmdir(d->dir);
    g_free(d->path);
    g_free(d->dir);
}

static void write_key(const struct keydir *d, const void *data, size_t len,
                      mode_t mode)
{
    g_unlink(d->path);
    g_assert_true(g_file_set_contents(d->path, data, len, NULL));
    g_assert_cmpint(chmod(d->path, mode), ==, 0);
}

static void assert_load_fails(const struct keydir *d, const char *text)
{
    struct auth_key k;
    GError *err = NULL;

    key_set(&k, "left over from before");
    g_assert_false(auth_key_load(&k, d->path, &err));
    assert_err(err, AUTH_ERROR, AUTH_ERROR_KEY_FILE, text);
    g_assert_cmpuint(k.len, ==, 0);
    g_clear_error(&err);
}

static void test_key_mode(void)
{
    struct keydir d;
    g_autofree char *want = NULL;
    struct auth_key k;
    GError *err = NULL;

    keydir_init(&d);
    write_key(&d, KEY_A, strlen(KEY_A), 0644);
    want = g_strdup_printf("key file %s has mode 0644; it must be 0600 "
                           "(chmod 600 %s)",
                           d.path, d.path);
    assert_load_fails(&d, want);
    write_key(&d, KEY_A, strlen(KEY_A), 0640);
    assert_load_fails(&d, "has mode 0640");
    write_key(&d, KEY_A, strlen(KEY_A), 0602);
    assert_load_fails(&d, "has mode 0602");
    write_key(&d, KEY_A, strlen(KEY_A), 0400);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_no_error(err);
    write_key(&d, KEY_A, strlen(KEY_A), 0600);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_cmpmem(k.bytes, k.len, KEY_A, strlen(KEY_A));
    /* Someone else's file, even 0600, could have been swapped by them. */
    if (geteuid() == 0) {
        g_assert_cmpint(chown(d.path, 65534, 65534), ==, 0);
        assert_load_fails(&d, "is owned by uid 65534; it must be owned by "
                              "root");
    }
    auth_key_clear(&k);
    keydir_clear(&d);
}

static void test_key_contents(void)
{
    char long_key[AUTH_KEY_MAX + 1];
    struct keydir d;
    struct auth_key k;
    GError *err = NULL;

    keydir_init(&d);
    write_key(&d, "", 0, 0600);
    assert_load_fails(&d, "is empty");
    write_key(&d, "\n", 1, 0600);
    assert_load_fails(&d, "is empty");
    write_key(&d, "0123456789abcde\n", 16, 0600);
    assert_load_fails(&d, "holds a 15-byte key; use at least 16 bytes");

    /* A trailing newline, LF or CRLF, is not part of the key. */
    write_key(&d, "0123456789abcdef\n", 17, 0600);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_no_error(err);
    g_assert_cmpmem(k.bytes, k.len, "0123456789abcdef", 16);
    write_key(&d, "0123456789abcdef\r\n", 18, 0600);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_cmpmem(k.bytes, k.len, "0123456789abcdef", 16);
    /* Only one: the rest is the key as written. */
    write_key(&d, "0123456789abcdef\n\n", 18, 0600);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_cmpmem(k.bytes, k.len, "0123456789abcdef\n", 17);
    /* Binary keys are fine, NULs included. */
    write_key(&d, "\0\1\2\3\4\5\6\7\0\1\2\3\4\5\6\7\0", 17, 0600);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_cmpuint(k.len, ==, 17);

    memset(long_key, 'k', sizeof(long_key));
    write_key(&d, long_key, AUTH_KEY_MAX, 0600);
    g_assert_true(auth_key_load(&k, d.path, &err));
    g_assert_cmpuint(k.len, ==, AUTH_KEY_MAX);
    write_key(&d, long_key, AUTH_KEY_MAX + 1, 0600);
    assert_load_fails(&d, "is longer than 1024 bytes");

    auth_key_clear(&k);
    for (size_t i = 0; i < sizeof(k.bytes); i++) {
        g_assert_cmpuint(k.bytes[i], ==, 0);
    }
    g_assert_cmpuint(k.len, ==, 0);
    keydir_clear(&d);
}

static void test_key_missing(void)
{
    struct keydir d;

    keydir_init(&d);
    assert_load_fails(&d, "cannot open key file ");
    assert_load_fails(&d, "No such file or directory");
    /* A directory is not a key. */
    g_assert_cmpint(g_mkdir(d.path, 0700), ==, 0);
    assert_load_fails(&d, "is not a regular file");
    g_rmdir(d.path);
    keydir_clear(&d);
}

/* Keys loaded from files written two ways authenticate each other. */
static void test_key_files_interoperate(void)
{
    struct keydir d1, d2;
    struct auth_key c, k;
    GError *err = NULL;
    struct server s;

    keydir_init(&d1);
    keydir_init(&d2);
    write_key(&d1, KEY_A "\n", strlen(KEY_A) + 1, 0600);
    write_key(&d2, KEY_A, strlen(KEY_A), 0400);
    g_assert_true(auth_key_load(&c, d1.path, &err));
    g_assert_true(auth_key_load(&k, d2.path, &err));
    g_assert_no_error(err);
    g_assert_true(run_pair(&c, &k, &s, &err));
    g_assert_no_error(err);
    g_assert_true(s.ok);
    server_clear(&s);
    auth_key_clear(&c);
    auth_key_clear(&k);
    keydir_clear(&d1);
    keydir_clear(&d2);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/auth/right-key", test_right_key);
    g_test_add_func("/auth/no-key", test_no_key);
    g_test_add_func("/auth/wrong-key", test_wrong_key);
    g_test_add_func("/auth/client-without-key", test_client_without_key);
    g_test_add_func("/auth/server-without-key", test_server_without_key);
    g_test_add_func("/auth/garbage", test_garbage);
    g_test_add_func("/auth/bad-challenge", test_bad_challenge);
    g_test_add_func("/auth/replay", test_replay);
    g_test_add_func("/auth/fresh-nonces", test_fresh_nonces);
    g_test_add_func("/auth/mac-equal", test_mac_equal);
    g_test_add_func("/auth/key-mode", test_key_mode);
    g_test_add_func("/auth/key-contents", test_key_contents);
    g_test_add_func("/auth/key-missing", test_key_missing);
    g_test_add_func("/auth/key-files-interoperate",
                    test_key_files_interoperate);
    return g_test_run();
}
