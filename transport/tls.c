/*
 * tls.c - TLS 1.3 channels (tls.h has the contract).
 *
 * A TLS channel is a channel of its own (struct tls_channel) holding the
 * transport's channel it wraps: GnuTLS reads and writes the wrapped
 * channel's socket itself, and everything that is not I/O (kind tuning,
 * timeouts, shutdown) goes to the wrapped channel's ops.
 */
#include "tls.h"

#include "auth.h"
#include "hostport.h"
#include "transport_impl.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <gio/gio.h>
#include <gnutls/gnutls.h>

/*
 * TLS 1.3 only.  AES-128-GCM first: the fastest with AES-NI for the same
 * 128-bit security every TLS 1.3 suite gives; ChaCha20 for CPUs without
 * it.  PSK: only with an (EC)DHE exchange, for forward secrecy.
 */
#define PRIO_BASE                                                              \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"     \
    "+CHACHA20-POLY1305"
#define PRIO_PSK  PRIO_BASE ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"
#define PRIO_X509 PRIO_BASE

/* The PSK identity; the key, not the name, is the secret. */
#define PSK_IDENTITY "postcopyd"
/* Separates the TLS key from the one auth.c's HMAC exchange uses. */
#define PSK_LABEL "postcopyd-tls-psk-v1"
#define PSK_LEN   32
/* The largest TLS record payload: what one record carries. */
#define RECORD_MAX 16384
/* The first byte of every TLS record that opens a handshake. */
#define TLS_HANDSHAKE_RECORD 0x16

struct tls_context {
    enum tls_mode mode;
    gnutls_priority_t prio;
    uint8_t psk[PSK_LEN];
    gnutls_psk_client_credentials_t psk_client;
    gnutls_psk_server_credentials_t psk_server;
    gnutls_certificate_credentials_t x509; /* both roles */
    char *peer_name; /* x509: what every peer's certificate names */
};

struct tls_channel {
    struct channel ch; /* first: the generic layer hands us &ch */
    struct channel *inner;
    const struct tls_context *ctx;
    gnutls_session_t session;
    char *verify_name; /* x509: the name checked; GnuTLS keeps the pointer */
    int shut;          /* atomic: channel_shutdown() was called */
    unsigned timeout_ms;
    /* A header that a receive timeout cut short, resumed on the next call. */
    uint8_t hdr_part[FRAME_HDR_LEN];
    size_t hdr_got;
    /* Small pieces of a frame gather here into full records (send lock). */
    uint8_t *rec;
    size_t rec_fill;
};

static struct tls_channel *tls_channel(const struct channel *ch)
{
    return (struct tls_channel *)ch;
}

static const char *const mode_names[] = {
    [TLS_OFF] = "off",
    [TLS_PSK] = "psk",
    [TLS_X509] = "x509",
};

const char *tls_mode_name(enum tls_mode mode)
{
    return mode < G_N_ELEMENTS(mode_names) ? mode_names[mode] : "unknown";
}

bool tls_mode_parse(const char *name, enum tls_mode *mode, GError **err)
{
    for (size_t i = 0; i < G_N_ELEMENTS(mode_names); i++) {
        if (!g_strcmp0(name, mode_names[i])) {
            *mode = i;
            return true;
        }
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "tls must be off, psk or x509, not '%s'", name);
    return false;
}

static bool gnutls_failed(GError **err, int rc, const char *what)
{
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", what,
                gnutls_strerror(rc));
    return false;
}

/* Server side: the key for the identity the client named. */
static int psk_lookup(gnutls_session_t session, const char *identity,
                      gnutls_datum_t *key)
{
    const struct tls_context *ctx = gnutls_session_get_ptr(session);

    if (strcmp(identity, PSK_IDENTITY)) {
        return -1;
    }
    key->data = gnutls_malloc(PSK_LEN);
    if (!key->data) {
        return -1;
    }
    memcpy(key->data, ctx->psk, PSK_LEN);
    key->size = PSK_LEN;
    return 0;
}

static bool psk_init(struct tls_context *ctx, const struct auth_key *k,
                     GError **err)
{
    gnutls_datum_t key = {.data = ctx->psk, .size = PSK_LEN};
    g_autoptr(GHmac) h = NULL;
    gsize len = PSK_LEN;
    int rc;

    if (!k || !k->len) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "tls = psk needs a psk-file");
        return false;
    }
    h = g_hmac_new(G_CHECKSUM_SHA256, k->bytes, k->len);
    g_hmac_update(h, (const guchar *)PSK_LABEL, strlen(PSK_LABEL));
    g_hmac_get_digest(h, ctx->psk, &len);
    rc = gnutls_psk_allocate_client_credentials(&ctx->psk_client);
    if (rc == 0) {
        rc = gnutls_psk_set_client_credentials(ctx->psk_client, PSK_IDENTITY,
                                               &key, GNUTLS_PSK_KEY_RAW);
    }
    if (rc == 0) {
        rc = gnutls_psk_allocate_server_credentials(&ctx->psk_server);
    }
    if (rc) {
        return gnutls_failed(err, rc, "TLS PSK credentials");
    }
    gnutls_psk_set_server_credentials_function(ctx->psk_server, psk_lookup);
    return true;
}

static bool x509_init(struct tls_context *ctx, const struct tls_settings *s,
                      GError **err)
{
    int rc;

    if (!s->cert_file || !s->key_file || !s->ca_file) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "tls = x509 needs tls-cert-file, tls-key-file and "
                    "tls-ca-file");
        return false;
    }
    /* Whoever reads the private key can be any peer: as for psk-file. */
    if (!auth_key_file_check(s->key_file, err)) {
        g_prefix_error(err, "tls-key-file: ");
        return false;
    }
    rc = gnutls_certificate_allocate_credentials(&ctx->x509);
    if (rc) {
        return gnutls_failed(err, rc, "TLS certificate credentials");
    }
    rc = gnutls_certificate_set_x509_trust_file(ctx->x509, s->ca_file,
                                                GNUTLS_X509_FMT_PEM);
    if (rc <= 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED, "tls-ca-file %s: %s",
                    s->ca_file,
                    rc ? gnutls_strerror(rc) : "no certificate in it");
        return false;
    }
    rc = gnutls_certificate_set_x509_key_file(ctx->x509, s->cert_file,
                                              s->key_file, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "tls-cert-file %s with tls-key-file %s: %s", s->cert_file,
                    s->key_file, gnutls_strerror(rc));
        return false;
    }
    return true;
}

bool tls_context_init(struct tls_context **out, const struct tls_settings *s,
                      GError **err)
{
    struct tls_context *ctx;
    const char *errpos = NULL;
    bool ok;
    int rc;

    *out = NULL;
    if (s->mode == TLS_OFF) {
        return true;
    }
    ctx = g_new0(struct tls_context, 1);
    ctx->mode = s->mode;
    ctx->peer_name = g_strdup(s->peer_name);
    ok = s->mode == TLS_PSK ? psk_init(ctx, s->psk, err)
                            : x509_init(ctx, s, err);
    if (ok) {
        rc = gnutls_priority_init2(
            &ctx->prio, s->mode == TLS_PSK ? PRIO_PSK : PRIO_X509, &errpos, 0);
        ok = rc == 0 || gnutls_failed(err, rc, "TLS priority string");
    }
    if (!ok) {
        tls_context_free(ctx);
        return false;
    }
    *out = ctx;
    return true;
}

void tls_context_free(struct tls_context *ctx)
{
    if (!ctx) {
        return;
    }
    g_free(ctx->peer_name);
    if (ctx->prio) {
        gnutls_priority_deinit(ctx->prio);
    }
    if (ctx->psk_client) {
        gnutls_psk_free_client_credentials(ctx->psk_client);
    }
    if (ctx->psk_server) {
        gnutls_psk_free_server_credentials(ctx->psk_server);
    }
    if (ctx->x509) {
        gnutls_certificate_free_credentials(ctx->x509);
    }
    memset(ctx->psk, 0, sizeof(ctx->psk));
    g_free(ctx);
}

/* ---- records ---- */

static bool io_error(struct tls_channel *t, int rc, bool sending,
                     const char *where, GError **err)
{
    if (g_atomic_int_get(&t->shut)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                    "channel shut down while %s",
                    sending ? "sending" : "receiving");
    } else if (rc == GNUTLS_E_AGAIN) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "%s timed out after %u ms%s", sending ? "send" : "receive",
                    t->timeout_ms, where);
    } else if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "truncated frame: peer closed the connection%s", where);
    } else {
        /* A record that fails to decrypt was forged or corrupted. */
        g_set_error(err, G_IO_ERROR,
                    rc == GNUTLS_E_DECRYPTION_FAILED ? G_IO_ERROR_INVALID_DATA
                                                     : G_IO_ERROR_FAILED,
                    "TLS %s%s: %s%s%s", sending ? "send" : "receive", where,
                    gnutls_strerror(rc),
                    rc == GNUTLS_E_FATAL_ALERT_RECEIVED ? " " : "",
                    rc == GNUTLS_E_FATAL_ALERT_RECEIVED
                        ? gnutls_alert_get_name(gnutls_alert_get(t->session))
                        : "");
    }
    return false;
}

/* One record of at most RECORD_MAX bytes, all of it. */
static bool send_record(struct tls_channel *t, const uint8_t *p, size_t len,
                        GError **err)
{
    while (len) {
        ssize_t n = gnutls_record_send(t->session, p, len);

        if (n == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        if (n < 0) {
            return io_error(t, n, true, "", err);
        }
        p += n;
        len -= n;
    }
    return true;
}

/*
 * Feed @len bytes at @p into full records: a piece that starts a record
 * and fills it goes out in place, the rest gathers in t->rec.  Records,
 * not pieces, are what cost (a syscall and a tag each).
 */
static bool send_piece(struct tls_channel *t, const uint8_t *p, size_t len,
                       GError **err)
{
    while (len) {
        size_t n;

        if (!t->rec_fill && len >= RECORD_MAX) {
            if (!send_record(t, p, RECORD_MAX, err)) {
                return false;
            }
            p += RECORD_MAX;
            len -= RECORD_MAX;
            continue;
        }
        n = MIN(len, RECORD_MAX - t->rec_fill);
        memcpy(t->rec + t->rec_fill, p, n);
        t->rec_fill += n;
        p += n;
        len -= n;
        if (t->rec_fill == RECORD_MAX) {
            t->rec_fill = 0;
            if (!send_record(t, t->rec, RECORD_MAX, err)) {
                return false;
            }
        }
    }
    return true;
}

static bool tls_send_frame(struct channel *ch, const uint8_t hdr[FRAME_HDR_LEN],
                           const struct iovec *payload, int niov, size_t len,
                           GError **err)
{
    struct tls_channel *t = tls_channel(ch);
    size_t fill;

    t->rec_fill = 0;
    if (!send_piece(t, hdr, FRAME_HDR_LEN, err)) {
        return false;
    }
    for (int i = 0; i < niov; i++) {
        if (!send_piece(t, payload[i].iov_base, payload[i].iov_len, err)) {
            return false;
        }
    }
    /* The frame's tail goes now: nothing waits for a next frame. */
    fill = t->rec_fill;
    t->rec_fill = 0;
    return !fill || send_record(t, t->rec, fill, err);
}

/* Fill @buf up to @len; *@got counts what arrived, also on failure. */
static int recv_full(struct tls_channel *t, uint8_t *buf, size_t len,
                     size_t *got)
{
    while (*got < len) {
        ssize_t n = gnutls_record_recv(t->session, buf + *got, len - *got);

        if (n > 0) {
            *got += n;
        } else if (n != GNUTLS_E_INTERRUPTED) {
            return n;
        }
    }
    return 1;
}

static bool tls_recv_hdr(struct channel *ch, uint8_t hdr[FRAME_HDR_LEN],
                         GError **err)
{
    struct tls_channel *t = tls_channel(ch);
    int rc = recv_full(t, t->hdr_part, FRAME_HDR_LEN, &t->hdr_got);
    g_autofree char *where = NULL;

    if (rc > 0) {
        memcpy(hdr, t->hdr_part, FRAME_HDR_LEN);
        t->hdr_got = 0;
        return true;
    }
    /* Between frames, a close with or without close_notify is a close. */
    if (!t->hdr_got && !g_atomic_int_get(&t->shut) &&
        (rc == 0 || rc == GNUTLS_E_PREMATURE_TERMINATION)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "peer closed the connection");
        return false;
    }
    if (rc == GNUTLS_E_AGAIN && !g_atomic_int_get(&t->shut)) {
        /* hdr_got is kept, and GnuTLS keeps a partial record. */
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "no frame within %u ms", t->timeout_ms);
        return false;
    }
    where = g_strdup_printf(" after %zu of %u header bytes", t->hdr_got,
                            FRAME_HDR_LEN);
    return io_error(t, rc, false, where, err);
}

static bool tls_recv_payload(struct channel *ch, void *dst, size_t len,
                             GError **err)
{
    struct tls_channel *t = tls_channel(ch);
    size_t got = 0;
    int rc = recv_full(t, dst, len, &got);
    g_autofree char *where = NULL;

    if (rc > 0) {
        return true;
    }
    where = g_strdup_printf(" after %zu of %u payload bytes",
                            ch->payload_len - ch->payload_left + got,
                            ch->payload_len);
    return io_error(t, rc, false, where, err);
}

static bool tls_set_kind(struct channel *ch, enum channel_kind kind,
                         GError **err)
{
    struct channel *inner = tls_channel(ch)->inner;

    return inner->ops->set_kind(inner, kind, err);
}

static bool tls_set_timeout(struct channel *ch, unsigned timeout_ms,
                            GError **err)
{
    struct tls_channel *t = tls_channel(ch);

    /* Socket timeouts: GnuTLS's reads and writes see them as E_AGAIN. */
    if (!t->inner->ops->set_timeout(t->inner, timeout_ms, err)) {
        return false;
    }
    t->timeout_ms = timeout_ms;
    return true;
}

/* The socket's buffer holds records: the same bytes, sealed. */
static bool tls_set_send_buffer(struct channel *ch, unsigned bytes,
                                GError **err)
{
    struct channel *inner = tls_channel(ch)->inner;

    return inner->ops->set_send_buffer(inner, bytes, err);
}

static int tls_fd(const struct channel *ch)
{
    const struct channel *inner = tls_channel(ch)->inner;

    return inner->ops->fd(inner);
}

static bool tls_buffered(const struct channel *ch)
{
    return gnutls_record_check_pending(tls_channel(ch)->session) > 0;
}

/* No GnuTLS call: a shut socket wakes a thread inside one. */
static void tls_shutdown(struct channel *ch)
{
    struct tls_channel *t = tls_channel(ch);

    g_atomic_int_set(&t->shut, 1);
    t->inner->ops->shutdown(t->inner);
}

static void tls_destroy(struct channel *ch)
{
    struct tls_channel *t = tls_channel(ch);

    if (t->session) {
        gnutls_deinit(t->session);
    }
    channel_close(t->inner);
    g_free(t->rec);
    g_free(t->verify_name);
    g_free(t);
}

static const struct channel_ops tls_channel_ops = {
    .send_frame = tls_send_frame,
    .recv_hdr = tls_recv_hdr,
    .recv_payload = tls_recv_payload,
    .set_kind = tls_set_kind,
    .set_timeout = tls_set_timeout,
    .set_send_buffer = tls_set_send_buffer,
    .fd = tls_fd,
    .buffered = tls_buffered,
    .shutdown = tls_shutdown,
    .destroy = tls_destroy,
};

/* ---- handshake ---- */

/*
 * The name the peer's certificate must carry (x509): the configured one,
 * else the host this side dialed (@host, client), else the address the
 * peer connects from (server).  Checked by GnuTLS against the
 * certificate's subjectAltName DNS names and IP addresses.
 */
static char *verify_name(const struct tls_channel *t, const char *host)
{
    g_autofree char *peer_host = NULL;
    uint16_t port;

    if (t->ctx->peer_name) {
        return g_strdup(t->ctx->peer_name);
    }
    if (host) {
        return g_strdup(host);
    }
    if (!hostport_parse(t->inner->peer, 0, HOSTPORT_PORT_ZERO, &peer_host,
                        &port, NULL)) {
        return NULL;
    }
    /* A scope ("fe80::1%eth0") is not in any certificate. */
    *strchrnul(peer_host, '%') = '\0';
    return g_steal_pointer(&peer_host);
}

static bool session_init(struct tls_channel *t, bool server, const char *host,
                         GError **err)
{
    const struct tls_context *ctx = t->ctx;
    unsigned flags = (server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                     GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS;
    int rc = gnutls_init(&t->session, flags);

    if (rc) {
        return gnutls_failed(err, rc, "gnutls_init");
    }
    gnutls_session_set_ptr(t->session, (void *)ctx);
    rc = gnutls_priority_set(t->session, ctx->prio);
    if (rc == 0 && ctx->mode == TLS_PSK) {
        rc = gnutls_credentials_set(t->session, GNUTLS_CRD_PSK,
                                    server ? (void *)ctx->psk_server
                                           : (void *)ctx->psk_client);
    } else if (rc == 0) {
        rc = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
                                    ctx->x509);
        /*
         * Mutual: the chain is checked against the CA on both sides, and
         * the name, so that one CA's certificate for any host is not a
         * pass for every host.
         */
        gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_REQUIRE);
        t->verify_name = verify_name(t, host);
        if (!t->verify_name) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "no name to check the peer's certificate against "
                        "(set tls-peer-name)");
            return false;
        }
        gnutls_session_set_verify_cert(t->session, t->verify_name, 0);
    }
    if (rc) {
        return gnutls_failed(err, rc, "TLS session");
    }
    gnutls_transport_set_int(t->session, tls_fd(&t->ch));
    gnutls_handshake_set_timeout(t->session, TLS_HANDSHAKE_TIMEOUT_MS);
    return true;
}

/*
 * A listener's first look: a TLS client opens with a handshake record,
 * a plaintext postcopyd with a frame header.  Peeked, so GnuTLS still
 * reads it all.
 */
static bool expect_tls_client(struct tls_channel *t, GError **err)
{
    uint8_t first;
    ssize_t n;

    do {
        n = recv(tls_fd(&t->ch), &first, 1, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n == 1 && first == TLS_HANDSHAKE_RECORD) {
        return true;
    }
    if (n == 1) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the peer speaks plaintext, but this daemon requires "
                    "TLS (tls = %s): is tls off on the peer?",
                    tls_mode_name(t->ctx->mode));
    } else if (n == 0) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                    "peer closed the connection before the TLS handshake");
    } else {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "waiting for the TLS handshake: %s",
                    errno == EAGAIN ? "timed out" : g_strerror(errno));
    }
    return false;
}

/* Why a handshake failed, in one line, as far as GnuTLS can tell. */
static void handshake_error(struct tls_channel *t, int rc, GError **err)
{
    gnutls_datum_t out = {0};
    g_autofree char *why = NULL;
    GIOErrorEnum code = G_IO_ERROR_FAILED;

    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
        gnutls_certificate_verification_status_print(
            gnutls_session_get_verify_cert_status(t->session), GNUTLS_CRT_X509,
            &out, 0) == 0) {
        why = g_strdup_printf("peer certificate rejected: %s",
                              g_strstrip((char *)out.data));
        gnutls_free(out.data);
    } else if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        why = g_strdup_printf(
            "the peer refused it (%s)%s",
            gnutls_alert_get_name(gnutls_alert_get(t->session)),
            t->ctx->mode == TLS_PSK ? ": do the psk-files differ?"
                                    : ": does its CA sign our certificate?");
    } else if (t->ctx->mode == TLS_PSK &&
               (rc == GNUTLS_E_DECRYPTION_FAILED ||
                rc == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER)) {
        /* The server checks the PSK binder of the ClientHello first. */
        why = g_strdup_printf("the psk-files differ (%s)", gnutls_strerror(rc));
    } else if (rc == GNUTLS_E_PREMATURE_TERMINATION ||
               rc == GNUTLS_E_PULL_ERROR || rc == GNUTLS_E_PUSH_ERROR) {
        code = G_IO_ERROR_CONNECTION_CLOSED;
        why = g_strdup_printf("the peer closed the connection: is tls = %s "
                              "on the peer?",
                              tls_mode_name(t->ctx->mode));
    } else if (rc == GNUTLS_E_TIMEDOUT || rc == GNUTLS_E_AGAIN) {
        code = G_IO_ERROR_TIMED_OUT;
        why =
            g_strdup_printf("no answer within %u ms", TLS_HANDSHAKE_TIMEOUT_MS);
    } else {
        why = g_strdup(gnutls_strerror(rc));
    }
    g_set_error(err, G_IO_ERROR, code, "%s", why);
}

static bool handshake(struct tls_channel *t, bool server, const char *host,
                      GError **err)
{
    int rc;

    if (!tls_set_timeout(&t->ch, TLS_HANDSHAKE_TIMEOUT_MS, err) ||
        !session_init(t, server, host, err) ||
        (server && !expect_tls_client(t, err))) {
        return false;
    }
    do {
        rc = gnutls_handshake(t->session);
    } while (rc == GNUTLS_E_INTERRUPTED);
    if (rc < 0) {
        handshake_error(t, rc, err);
        /* So that the peer's log says why too; bounded by the timeout. */
        if (gnutls_error_is_fatal(rc) && rc != GNUTLS_E_FATAL_ALERT_RECEIVED &&
            rc != GNUTLS_E_PREMATURE_TERMINATION && rc != GNUTLS_E_PULL_ERROR &&
            rc != GNUTLS_E_PUSH_ERROR) {
            gnutls_alert_send_appropriate(t->session, rc);
        }
        return false;
    }
    return tls_set_timeout(&t->ch, 0, err);
}

static struct channel *tls_wrap(struct channel *inner,
                                const struct tls_context *ctx, bool server,
                                const char *host, GError **err)
{
    struct tls_channel *t;

    if (!ctx) {
        return inner;
    }
    t = g_new0(struct tls_channel, 1);
    t->inner = inner;
    t->ctx = ctx;
    t->rec = g_malloc(RECORD_MAX);
    channel_init(&t->ch, &tls_channel_ops, inner->kind, inner->stream,
                 inner->outgoing, inner->peer);
    if (!handshake(t, server, host, err)) {
        g_prefix_error(err, "peer %s: TLS (%s) handshake failed: ", inner->peer,
                       tls_mode_name(ctx->mode));
        channel_close(&t->ch);
        return NULL;
    }
    return &t->ch;
}

struct channel *tls_client(struct channel *ch, const struct tls_context *ctx,
                           const char *host, GError **err)
{
    return tls_wrap(ch, ctx, false, host, err);
}

struct channel *tls_server(struct channel *ch, const struct tls_context *ctx,
                           GError **err)
{
    return tls_wrap(ch, ctx, true, NULL, err);
}
