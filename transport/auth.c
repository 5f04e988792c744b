/* auth.c - see auth.h. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <gio/gio.h>

#include "peer_msg.h"

/* Distinct per direction, so one side's proof never passes as the other's. */
#define LABEL_SERVER "postcopyd-server"
#define LABEL_CLIENT "postcopyd-client"
/* Of a string an unauthenticated peer sent, this much reaches our logs. */
#define PEER_TEXT_MAX 200

G_DEFINE_QUARK(postcopyd_auth_error, auth_error)

typedef Postcopy__Peer__AuthChallenge AuthChallenge;
typedef Postcopy__Peer__AuthResponse AuthResponse;
typedef Postcopy__Peer__AuthResult AuthResult;

/* ---- the key ---------------------------------------------------------- */

void auth_key_clear(struct auth_key *k)
{
    /* explicit_bzero: a plain memset of memory about to die may be elided. */
    explicit_bzero(k->bytes, sizeof(k->bytes));
    k->len = 0;
}

static bool key_error(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool key_error(GError **err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(
        err, g_error_new_valist(AUTH_ERROR, AUTH_ERROR_KEY_FILE, fmt, ap));
    va_end(ap);
    return false;
}

/* Read up to @len bytes, fewer only at the end of the file. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        got += n;
    }
    return got;
}

/*
 * Anyone who can read the key can impersonate either daemon, and anyone
 * who can write it can lock them out: like ssh with its private keys,
 * refuse a file others could have read or replaced.
 */
static bool check_key_file(const char *path, const struct stat *st,
                           GError **err)
{
    uid_t me = geteuid();

    if (!S_ISREG(st->st_mode)) {
        return key_error(err, "key file %s is not a regular file", path);
    }
    if (st->st_mode & (S_IRWXG | S_IRWXO)) {
        return key_error(err,
                         "key file %s has mode %04o; it must be 0600 "
                         "(chmod 600 %s)",
                         path, (unsigned)(st->st_mode & 07777), path);
    }
    if (st->st_uid != 0 && st->st_uid != me) {
        g_autofree char *owner =
            me ? g_strdup_printf("%u", (unsigned)me) : g_strdup("root");

        return key_error(err,
                         "key file %s is owned by uid %u; it must be owned "
                         "by root%s (chown %s %s)",
                         path, (unsigned)st->st_uid,
                         me ? " or this daemon's user" : "", owner, path);
    }
    return true;
}

static bool read_key(struct auth_key *k, int fd, const char *path, GError **err)
{
    uint8_t extra;
    ssize_t n = read_full(fd, k->bytes, sizeof(k->bytes));

    if (n < 0) {
        return key_error(err, "cannot read key file %s: %s", path,
                         g_strerror(errno));
    }
    k->len = n;
    if (n == sizeof(k->bytes) && read_full(fd, &extra, 1) != 0) {
        return key_error(err,
                         "key file %s is longer than %u bytes; is it "
                         "the right file?",
                         path, AUTH_KEY_MAX);
    }
    /* `echo SECRET > file` adds a newline the other host may not have. */
    if (k->len && k->bytes[k->len - 1] == '\n') {
        k->len--;
        if (k->len && k->bytes[k->len - 1] == '\r') {
            k->len--;
        }
    }
    if (!k->len) {
        return key_error(err, "key file %s is empty", path);
    }
    if (k->len < AUTH_KEY_MIN) {
        return key_error(err,
                         "key file %s holds a %zu-byte key; use at "
                         "least %u bytes (head -c 32 /dev/urandom | "
                         "base64 > %s)",
                         path, k->len, AUTH_KEY_MIN, path);
    }
    return true;
}

bool auth_key_file_check(const char *path, GError **err)
{
    struct stat st;
    bool ok;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        return key_error(err, "cannot open key file %s: %s", path,
                         g_strerror(errno));
    }
    ok = fstat(fd, &st) == 0 ? check_key_file(path, &st, err)
                             : key_error(err, "cannot stat key file %s: %s",
                                         path, g_strerror(errno));
    close(fd);
    return ok;
}

bool auth_key_load(struct auth_key *k, const char *path, GError **err)
{
    struct stat st;
    bool ok;
    int fd;

    auth_key_clear(k);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return key_error(err, "cannot open key file %s: %s", path,
                         g_strerror(errno));
    }
    /* fstat, not stat: check the file we read, whatever the path becomes. */
    if (fstat(fd, &st) < 0) {
        ok = key_error(err, "cannot stat key file %s: %s", path,
                       g_strerror(errno));
    } else {
        ok = check_key_file(path, &st, err) && read_key(k, fd, path, err);
    }
    close(fd);
    if (!ok) {
        auth_key_clear(k);
    }
    return ok;
}

/* ---- primitives ------------------------------------------------------- */

bool auth_mac_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    /*
     * No early exit: a compare that stops at the first difference tells a
     * peer timing it how many leading bytes of its guess were right.
     */
    volatile uint8_t diff = 0;

    for (size_t i = 0; i < n; i++) {
        diff |= a[i] ^ b[i];
    }
    return diff == 0;
}

static void compute_mac(const struct auth_key *k, const char *label,
                        const uint8_t *first, const uint8_t *second,
                        uint8_t out[AUTH_MAC_LEN])
{
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, k->bytes, k->len);
    gsize len = AUTH_MAC_LEN;

    g_hmac_update(h, (const guchar *)label, strlen(label));
    g_hmac_update(h, first, AUTH_NONCE_LEN);
    g_hmac_update(h, second, AUTH_NONCE_LEN);
    g_hmac_get_digest(h, out, &len);
    g_hmac_unref(h);
    g_assert(len == AUTH_MAC_LEN);
}

static bool random_nonce(uint8_t nonce[AUTH_NONCE_LEN], GError **err)
{
    size_t got = 0;

    /* getrandom() blocks only until the kernel's pool is seeded: wanted. */
    while (got < AUTH_NONCE_LEN) {
        ssize_t n = getrandom(nonce + got, AUTH_NONCE_LEN - got, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                        "cannot get random bytes: %s", g_strerror(errno));
            return false;
        }
        got += n;
    }
    return true;
}

/* A string from a peer not yet trusted, made safe for one log line. */
static char *peer_text(const char *s)
{
    g_autofree char *cut = g_strndup(s ? s : "", PEER_TEXT_MAX);

    return g_strescape(cut, NULL);
}

static bool fail(GError **err, AuthError code, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static bool fail(GError **err, AuthError code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(err, g_error_new_valist(AUTH_ERROR, code, fmt, ap));
    va_end(ap);
    return false;
}

/* ---- messages --------------------------------------------------------- */

/*
 * The next message from a peer not trusted yet.  Only small ones: an
 * unauthenticated peer must not make us allocate FRAME_MAX_MSG bytes.
 */
static PeerMessage *recv_small_msg(struct channel *ch, GError **err)
{
    struct frame_hdr hdr;

    do {
        if (!channel_recv_hdr(ch, &hdr, err)) {
            return NULL;
        }
    } while (hdr.type == FRAME_KEEPALIVE);
    if (hdr.type != FRAME_MSG) {
        g_set_error(err, AUTH_ERROR, AUTH_ERROR_REFUSED,
                    "it sent a %s frame, not a message",
                    frame_type_name(hdr.type));
        return NULL;
    }
    if (hdr.len > AUTH_MSG_MAX) {
        g_set_error(err, AUTH_ERROR, AUTH_ERROR_REFUSED,
                    "it sent a %u-byte message (at most %u before "
                    "authenticating)",
                    hdr.len, AUTH_MSG_MAX);
        return NULL;
    }
    return channel_read_msg(ch, &hdr, err);
}

static bool send_challenge(struct channel *ch,
                           const uint8_t nonce[AUTH_NONCE_LEN], GError **err)
{
    AuthChallenge c = POSTCOPY__PEER__AUTH_CHALLENGE__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    c.nonce.data = (uint8_t *)nonce;
    c.nonce.len = AUTH_NONCE_LEN;
    c.version = AUTH_VERSION;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_CHALLENGE;
    msg.auth_challenge = &c;
    return channel_send_msg(ch, &msg, err);
}

/* @nonce: NULL for the connector's response, which carries none. */
static bool send_response(struct channel *ch, const uint8_t mac[AUTH_MAC_LEN],
                          const uint8_t *nonce, GError **err)
{
    AuthResponse r = POSTCOPY__PEER__AUTH_RESPONSE__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    r.mac.data = (uint8_t *)mac;
    r.mac.len = AUTH_MAC_LEN;
    if (nonce) {
        r.nonce.data = (uint8_t *)nonce;
        r.nonce.len = AUTH_NONCE_LEN;
    }
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESPONSE;
    msg.auth_response = &r;
    return channel_send_msg(ch, &msg, err);
}

static bool send_result(struct channel *ch, bool ok, const char *error,
                        GError **err)
{
    AuthResult r = POSTCOPY__PEER__AUTH_RESULT__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    r.ok = ok;
    r.error = (char *)(error ? error : "");
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESULT;
    msg.auth_result = &r;
    return channel_send_msg(ch, &msg, err);
}

/* Tell a connector without a key why, in the reply it is waiting for. */
static void refuse_hello(struct channel *ch)
{
    Postcopy__Peer__HelloReply r = POSTCOPY__PEER__HELLO_REPLY__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    r.ok = false;
    r.code = POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_AUTH;
    r.error = "authentication required: this daemon has a psk-file; "
              "configure the same key on this side";
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY;
    msg.hello_reply = &r;
    channel_send_msg(ch, &msg, NULL);
}

/* The peer's AuthResult{!ok} instead of what we waited for. */
static bool peer_refused(GError **err, const char *peer, const AuthResult *r)
{
    g_autofree char *why = peer_text(r->error);

    if (!strcmp(r->error, "wrong key")) {
        return fail(err, AUTH_ERROR_WRONG_KEY,
                    "peer %s failed authentication: wrong key (our proof "
                    "did not verify there)",
                    peer);
    }
    return fail(err, AUTH_ERROR_REFUSED, "peer %s refused authentication: %s",
                peer, why);
}

/* Receiving failed: name the peer, keep the transport's code. */
static bool recv_failed(GError **err, GError *local, const char *peer)
{
    if (local->domain == AUTH_ERROR) {
        g_propagate_prefixed_error(err, local,
                                   "peer %s did not authenticate: ", peer);
    } else {
        /* The transport's message names the channel and the peer. */
        g_propagate_prefixed_error(err, local, "peer did not authenticate: ");
    }
    return false;
}

/* ---- the listening side ----------------------------------------------- */

/* The connector's first message: a sound AuthChallenge, or why not. */
static bool check_challenge(struct channel *ch, const PeerMessage *msg,
                            GError **err)
{
    const char *peer = channel_peer(ch);
    const AuthChallenge *c = msg->auth_challenge;

    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO) {
        refuse_hello(ch);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s sent hello without authenticating (is its "
                    "psk-file set?)",
                    peer);
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_CHALLENGE) {
        send_result(ch, false, "expected auth_challenge", NULL);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s did not authenticate: it sent %s first", peer,
                    peer_message_name(msg));
    }
    if (c->version != AUTH_VERSION) {
        send_result(ch, false, "unsupported authentication version", NULL);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s did not authenticate: it speaks authentication "
                    "version %u, this daemon %u",
                    peer, c->version, AUTH_VERSION);
    }
    if (c->nonce.len != AUTH_NONCE_LEN) {
        send_result(ch, false, "bad nonce", NULL);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s did not authenticate: its nonce has %zu bytes, "
                    "not %u",
                    peer, c->nonce.len, AUTH_NONCE_LEN);
    }
    return true;
}

/* The connector's proof: does it match @want? */
static bool check_proof(struct channel *ch, const PeerMessage *msg,
                        const uint8_t want[AUTH_MAC_LEN], GError **err)
{
    const char *peer = channel_peer(ch);
    const AuthResponse *r = msg->auth_response;

    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESULT &&
        !msg->auth_result->ok) {
        return peer_refused(err, peer, msg->auth_result);
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESPONSE) {
        send_result(ch, false, "expected auth_response", NULL);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s did not authenticate: it sent %s instead of its "
                    "proof",
                    peer, peer_message_name(msg));
    }
    if (r->mac.len != AUTH_MAC_LEN ||
        !auth_mac_equal(r->mac.data, want, AUTH_MAC_LEN)) {
        send_result(ch, false, "wrong key", NULL);
        return fail(err, AUTH_ERROR_WRONG_KEY,
                    "peer %s failed authentication: wrong key", peer);
    }
    return true;
}

bool auth_server(struct channel *ch, const struct auth_key *k, GError **err)
{
    const char *peer = channel_peer(ch);
    uint8_t nonce_c[AUTH_NONCE_LEN], nonce_s[AUTH_NONCE_LEN];
    uint8_t mac_s[AUTH_MAC_LEN], want[AUTH_MAC_LEN];
    g_autoptr(PeerMessage) msg = NULL;
    GError *local = NULL;

    if (!k || !k->len) {
        return true;
    }
    msg = recv_small_msg(ch, &local);
    if (!msg) {
        return recv_failed(err, local, peer);
    }
    if (!check_challenge(ch, msg, err)) {
        return false;
    }
    memcpy(nonce_c, msg->auth_challenge->nonce.data, AUTH_NONCE_LEN);
    g_clear_pointer(&msg, peer_message_free);

    if (!random_nonce(nonce_s, err)) {
        g_prefix_error(err, "cannot authenticate peer %s: ", peer);
        return false;
    }
    compute_mac(k, LABEL_SERVER, nonce_c, nonce_s, mac_s);
    compute_mac(k, LABEL_CLIENT, nonce_s, nonce_c, want);
    if (!send_response(ch, mac_s, nonce_s, err)) {
        g_prefix_error(err, "cannot authenticate peer %s: ", peer);
        return false;
    }

    msg = recv_small_msg(ch, &local);
    if (!msg) {
        return recv_failed(err, local, peer);
    }
    if (!check_proof(ch, msg, want, err)) {
        return false;
    }
    if (!send_result(ch, true, NULL, err)) {
        g_prefix_error(err, "cannot authenticate peer %s: ", peer);
        return false;
    }
    return true;
}

/* ---- the connecting side ---------------------------------------------- */

/* The listener's answer to our challenge: its proof, checked. */
static bool check_server_proof(struct channel *ch, const PeerMessage *msg,
                               const struct auth_key *k,
                               const uint8_t nonce_c[AUTH_NONCE_LEN],
                               GError **err)
{
    const char *peer = channel_peer(ch);
    const AuthResponse *r = msg->auth_response;
    uint8_t want[AUTH_MAC_LEN];

    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESULT &&
        !msg->auth_result->ok) {
        return peer_refused(err, peer, msg->auth_result);
    }
    if (msg->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESPONSE) {
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s did not authenticate: it answered %s", peer,
                    peer_message_name(msg));
    }
    if (r->mac.len != AUTH_MAC_LEN || r->nonce.len != AUTH_NONCE_LEN) {
        send_result(ch, false, "malformed auth_response", NULL);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s did not authenticate: malformed auth_response "
                    "(%zu-byte mac, %zu-byte nonce)",
                    peer, r->mac.len, r->nonce.len);
    }
    compute_mac(k, LABEL_SERVER, nonce_c, r->nonce.data, want);
    if (!auth_mac_equal(r->mac.data, want, AUTH_MAC_LEN)) {
        send_result(ch, false, "wrong key", NULL);
        return fail(err, AUTH_ERROR_WRONG_KEY,
                    "peer %s failed authentication: wrong key", peer);
    }
    return true;
}

/* Receiving failed: a listener without a key just hangs up on us. */
static bool client_recv_failed(GError **err, GError *local, const char *peer)
{
    if (g_error_matches(local, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED)) {
        g_error_free(local);
        return fail(err, AUTH_ERROR_REFUSED,
                    "peer %s closed the connection instead of "
                    "authenticating (is its psk-file set?)",
                    peer);
    }
    return recv_failed(err, local, peer);
}

bool auth_client(struct channel *ch, const struct auth_key *k, GError **err)
{
    const char *peer = channel_peer(ch);
    uint8_t nonce_c[AUTH_NONCE_LEN], nonce_s[AUTH_NONCE_LEN];
    uint8_t mac_c[AUTH_MAC_LEN];
    g_autoptr(PeerMessage) msg = NULL;
    GError *local = NULL;

    if (!k || !k->len) {
        return true;
    }
    if (!random_nonce(nonce_c, err) || !send_challenge(ch, nonce_c, err)) {
        g_prefix_error(err, "cannot authenticate to peer %s: ", peer);
        return false;
    }
    msg = recv_small_msg(ch, &local);
    if (!msg) {
        return client_recv_failed(err, local, peer);
    }
    if (!check_server_proof(ch, msg, k, nonce_c, err)) {
        return false;
    }
    memcpy(nonce_s, msg->auth_response->nonce.data, AUTH_NONCE_LEN);
    g_clear_pointer(&msg, peer_message_free);

    compute_mac(k, LABEL_CLIENT, nonce_s, nonce_c, mac_c);
    if (!send_response(ch, mac_c, NULL, err)) {
        g_prefix_error(err, "cannot authenticate to peer %s: ", peer);
        return false;
    }
    msg = recv_small_msg(ch, &local);
    if (!msg) {
        return client_recv_failed(err, local, peer);
    }
    if (msg->msg_case == POSTCOPY__PEER__PEER_MESSAGE__MSG_AUTH_RESULT) {
        return msg->auth_result->ok ||
               peer_refused(err, peer, msg->auth_result);
    }
    return fail(err, AUTH_ERROR_REFUSED,
                "peer %s did not authenticate: it sent %s instead of the "
                "result",
                peer, peer_message_name(msg));
}
