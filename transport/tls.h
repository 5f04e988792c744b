/*
 * tls.h - optional TLS 1.3 (GnuTLS) on a freshly connected channel, below
 * the authentication exchange (auth.h) and the Hello.  docs/protocol.md,
 * "TLS", has the wire side.
 *
 * A TLS channel wraps the transport's channel: tls_client() / tls_server()
 * run the handshake and hand back a channel whose frames travel in TLS
 * records.  The engine keeps using transport.h and does not know.  With
 * TLS off (a NULL context) they hand back the channel untouched, so the
 * plain TCP path keeps its ops table and costs nothing more.
 *
 * Contract:
 *  - TLS 1.3 only, one of two ways, the same on both daemons:
 *    TLS_PSK   a key derived from the psk-file (HMAC-SHA256 of a fixed
 *              label), with an ephemeral (EC)DHE exchange for forward
 *              secrecy;
 *    TLS_X509  mutual: each side presents its certificate and checks the
 *              other's chain against the configured CA and its name
 *              (subjectAltName DNS or IP): the configured peer_name if
 *              set, else the host the client dialed (client side) or
 *              the address the client connects from (server side).
 *  - tls_client() / tls_server() consume @ch: they return the channel to
 *    use from now on, or NULL after closing @ch, with @err one line for
 *    the caller to log, naming the peer and why ("peer 10.0.0.2:4000:
 *    TLS (x509) handshake failed: peer certificate rejected: ...").  A
 *    plaintext peer facing a TLS listener is told apart before any TLS
 *    byte is parsed.  They do not log.
 *  - The handshake is bounded by TLS_HANDSHAKE_TIMEOUT_MS; the channel
 *    comes back with no timeout set.
 *  - Decrypted bytes may wait inside a TLS channel while its descriptor
 *    is not readable: channel_has_buffered() says so (transport.h).
 *  - The stream is not closed with a TLS close_notify: frames carry their
 *    length, so a connection cut mid-frame is a truncated frame either
 *    way, and one cut between frames is what a TCP reset does anyway.
 *
 * Threads: a context is read-only once made and may be shared by any
 * number of threads and channels.  A TLS channel keeps transport.h's
 * rules: GnuTLS allows one sending and one receiving thread on a session
 * (no renegotiation exists in TLS 1.3, and tickets are off), and the send
 * lock already makes senders one at a time.
 */
#ifndef POSTCOPYD_TLS_H
#define POSTCOPYD_TLS_H

#include <stdbool.h>
#include <glib.h>

#include "auth.h"
#include "transport.h"

#define TLS_HANDSHAKE_TIMEOUT_MS 10000

enum tls_mode {
    TLS_OFF,
    TLS_PSK,
    TLS_X509,
};

struct tls_settings {
    enum tls_mode mode;
    const struct auth_key *psk; /* TLS_PSK: the psk-file's key */
    const char *cert_file;      /* TLS_X509: ours, PEM */
    const char *key_file;       /* TLS_X509: its private key, PEM */
    const char *ca_file;        /* TLS_X509: what signs every peer, PEM */
    const char *peer_name;      /* TLS_X509: name peers carry; NULL: derived */
};

struct tls_context;

/* "off", "psk", "x509": as in the config file. */
bool tls_mode_parse(const char *name, enum tls_mode *mode, GError **err);
const char *tls_mode_name(enum tls_mode mode);

/*
 * Load what @s names into *@ctx: NULL for TLS_OFF.  Fails with one line
 * (a missing setting, an unreadable file, a key that does not match its
 * certificate) and *@ctx NULL.
 */
bool tls_context_init(struct tls_context **ctx, const struct tls_settings *s,
                      GError **err);
void tls_context_free(struct tls_context *ctx);

/*
 * The side that connected (the source), to @host (the name or address it
 * dialed; NULL: the channel's peer address).  See the contract above.
 */
struct channel *tls_client(struct channel *ch, const struct tls_context *ctx,
                           const char *host, GError **err);
/* The side that accepted (the destination).  See the contract above. */
struct channel *tls_server(struct channel *ch, const struct tls_context *ctx,
                           GError **err);

#endif /* POSTCOPYD_TLS_H */
