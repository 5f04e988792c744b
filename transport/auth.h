/*
 * auth.h - mutual authentication of two postcopyd with a pre-shared key,
 * on a freshly connected channel, before its Hello.
 *
 * The exchange (docs/protocol.md, "Authentication") is HMAC-SHA256
 * challenge-response in both directions, carried as ordinary FRAME_MSG
 * messages (AuthChallenge, AuthResponse, AuthResult in proto/peer.proto),
 * so it works over any transport:
 *
 *   connector -> listener  AuthChallenge{nonce_c, version}
 *   listener  -> connector AuthResponse{mac_s, nonce_s}
 *   connector -> listener  AuthResponse{mac_c}
 *   listener  -> connector AuthResult{ok}
 *
 *   mac_s = HMAC(key, "postcopyd-server" || nonce_c || nonce_s)
 *   mac_c = HMAC(key, "postcopyd-client" || nonce_s || nonce_c)
 *
 * Nonces are 32 bytes from getrandom(); MACs are compared in constant
 * time.  Each side proves it holds the key over a nonce the other just
 * chose, so a recorded exchange cannot be replayed, and the two labels
 * keep one side's proof from being reflected back as the other's.
 *
 * Contract:
 *  - auth_client() / auth_server() return true only when the peer proved
 *    it holds the same key.  On false, @err is one line naming the peer
 *    ("peer 10.0.0.2:4000 failed authentication: wrong key") for the
 *    caller to log, nothing but the channel was touched, and the caller
 *    must close the channel without using it further.  These functions
 *    do not log.
 *  - A NULL key or one with len 0 means "no psk-file": both return true
 *    at once without touching the channel.  Without a key nothing is
 *    authenticated: for trusted networks only.
 *  - A listener with a key refuses a connector without one (its first
 *    message is a Hello): it answers HelloReply{ok = false, code = AUTH}
 *    so that side says why too.  A connector with a key facing a listener
 *    without one sees the connection closed and says so.
 *  - Authentication covers who is at the other end when the connection
 *    starts, not the traffic after it: nothing is encrypted or
 *    integrity-protected.  Across untrusted networks, carry the
 *    migration over IPsec or WireGuard as well.
 *  - Neither function sets a timeout: bound the exchange with
 *    channel_set_timeout() first (AUTH_TIMEOUT_MS is a sensible value),
 *    or a silent peer blocks it forever.  Before authentication a peer
 *    may send messages of at most AUTH_MSG_MAX bytes.
 *
 * Threads: a channel being authenticated belongs to the calling thread;
 * a loaded key may be shared by any number of threads (read only).
 */
#ifndef POSTCOPYD_AUTH_H
#define POSTCOPYD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "transport.h"

#define AUTH_VERSION    1
#define AUTH_NONCE_LEN  32
#define AUTH_MAC_LEN    32 /* SHA-256 */
#define AUTH_KEY_MIN    16
#define AUTH_KEY_MAX    1024
#define AUTH_MSG_MAX    (64u << 10)
#define AUTH_TIMEOUT_MS 10000

#define AUTH_ERROR auth_error_quark()

typedef enum {
    AUTH_ERROR_KEY_FILE,  /* the key file is missing, unsafe or unusable */
    AUTH_ERROR_WRONG_KEY, /* a proof did not verify: the keys differ */
    AUTH_ERROR_REFUSED,   /* the peer did not authenticate, or refused us */
} AuthError;

/*
 * A key loaded from a psk-file.  Zero-initialized (or after
 * auth_key_clear()) it is "no key".  Fixed size, so it never leaves
 * copies on the heap.
 */
struct auth_key {
    size_t len;
    uint8_t bytes[AUTH_KEY_MAX];
};

GQuark auth_error_quark(void);

/*
 * Read the key in the file at @path into @k.  Refused (AUTH_ERROR_KEY_FILE,
 * @k left empty): a missing or unreadable file, one that is not a regular
 * file, one whose mode lets group or others in ("key file X has mode
 * 0644; it must be 0600 (chmod 600 X)"), one not owned by root or the
 * daemon's user, and a key that is empty, shorter than AUTH_KEY_MIN or
 * longer than AUTH_KEY_MAX bytes.  The file's bytes are the key, except
 * one trailing newline ("\n" or "\r\n"), which is dropped so that
 * `echo SECRET > file` works.
 */
bool auth_key_load(struct auth_key *k, const char *path, GError **err);
/*
 * The same checks on a key file someone else reads (the TLS private key):
 * a regular file, mode 0600 or stricter, owned by root or this user.
 */
bool auth_key_file_check(const char *path, GError **err);

/* Wipe the key from memory; @k is "no key" afterwards. */
void auth_key_clear(struct auth_key *k);

/* The side that connected (the source).  See the contract above. */
bool auth_client(struct channel *ch, const struct auth_key *k, GError **err);

/* The side that accepted (the destination).  See the contract above. */
bool auth_server(struct channel *ch, const struct auth_key *k, GError **err);

/* Are the @n bytes at @a and @b equal?  Takes the same time either way. */
bool auth_mac_equal(const uint8_t *a, const uint8_t *b, size_t n);

#endif /* POSTCOPYD_AUTH_H */
