/*
 * test_hostile.c - the real postcopyd against bad input.
 *
 * A destination daemon runs with one incoming postcopy-guest attached;
 * the test plays a hostile source against its peer port (the transport
 * library, and raw socket writes where the library would refuse) and a
 * hostile client on its control socket.  Every scenario checks what the
 * bad input gets (a refused HelloReply / LayoutReply / SwitchoverReply, an
 * Error, a dropped connection, an error reply), the one-line error in the
 * daemon's log, that the migration ended without writing guest memory,
 * and that the daemon still serves: alive, answering its control socket,
 * the incoming VM attached and free.  The last test proves it for real: a
 * second daemon migrates a guest into that same incoming VM, and the
 * guest verifies every page.
 *
 * Assertions are non-fatal: one scenario that finds a bug does not hide
 * what the others find.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>

#include "attach.h"
#include "daemon_proc.h"
#include "testlib.h"
#include "peer_msg.h"
#include "transport.h"
#include "uffd.h"

#define VM_NAME    "vm1"
#define GUEST_SIZE "16M"
#define RAM_BYTES  (16ULL << 20)
#define PAGE_SIZE  4096ULL
#define NPAGES     (RAM_BYTES / PAGE_SIZE)
#define REPLY_MS   5000  /* a reply the daemon owes us at once */
#define END_MS     3000  /* ending a migration, releasing its VM */
#define CLOSE_MS   2000  /* hanging up on a peer it refused */
#define VERIFY_MS  30000 /* the good migration and the guest's verify */
#define SETTLE_MS  12000 /* a failed scenario may hold the VM this long */
#define LOG_MS     500   /* a line logged before what we waited for */
#define POLL_MS    20
#define SYNC_SEQ   1

typedef Postcopy__Peer__Hello Hello;
typedef Postcopy__Peer__Layout Layout;
typedef Postcopy__Peer__RegionLayout RegionLayout;

static struct {
    char *skip;   /* why nothing can run here (the kernel said no) */
    char *broken; /* why the daemon or its guest did not start */
    struct daemon_proc dst, src;
    struct daemon_guest incoming, outgoing;
} fx;

/* One hostile migration: our side of its channels. */
struct hostile {
    uint8_t id[16];
    char id_hex[33];
    struct channel *control, *urgent, *bulk;
    int control_port, urgent_port, bulk_port; /* ours, as the daemon logs */
};

enum vm_state { VM_GONE, VM_BUSY, VM_FREE };

static enum vm_state incoming_vm_state(void);

/*
 * Can a scenario run?  A scenario that failed before may have left the
 * VM held (until the daemon times the migration out): wait for it, so
 * that one bug does not fail every scenario after it.
 */
static bool ready(void)
{
    if (fx.skip) {
        g_test_skip(fx.skip);
        return false;
    }
    if (fx.broken) {
        g_test_fail_printf("%s", fx.broken);
        return false;
    }
    if (!daemon_proc_alive(&fx.dst)) {
        g_test_fail_printf("postcopyd (destination) is dead");
        return false;
    }
    for (int waited = 0; waited < SETTLE_MS && incoming_vm_state() == VM_BUSY;
         waited += POLL_MS) {
        g_usleep(POLL_MS * 1000);
    }
    return true;
}

/* ---- the daemon's side: log, control socket, liveness ---- */

/* A line of the destination's log holding all of @a, @b, @c (if set). */
static void assert_log(const char *a, const char *b, const char *c)
{
    const char *needles[4] = {a, b ? b : "", c ? c : "", NULL};
    g_autofree char *line = daemon_proc_wait_line(&fx.dst, needles, LOG_MS);

    if (!line) {
        g_test_message("no log line with '%s' '%s' '%s'", a, b ? b : "",
                       c ? c : "");
    } else {
        g_test_message("daemon: %s", line);
    }
    g_assert_nonnull(line);
}

static JsonObject *execute(struct daemon_proc *dp, const char *cmd,
                           const char *args)
{
    g_autofree char *why = NULL;
    JsonObject *r = daemon_proc_execute(dp, cmd, args, &why);

    if (!r) {
        g_test_message("%s: %s", cmd, why);
    }
    g_assert_nonnull(r);
    return r;
}

/* query-vms' entry for the incoming VM, or NULL. */
static JsonObject *incoming_vm_entry(JsonObject *reply)
{
    JsonNode *ret = json_object_get_member(reply, "return");
    JsonArray *vms;

    if (!ret || !JSON_NODE_HOLDS_ARRAY(ret)) {
        return NULL;
    }
    vms = json_node_get_array(ret);
    for (guint i = 0; i < json_array_get_length(vms); i++) {
        JsonObject *vm = json_array_get_object_element(vms, i);

        if (vm &&
            !g_strcmp0(
                json_object_get_string_member_with_default(vm, "name", ""),
                VM_NAME) &&
            json_object_get_boolean_member_with_default(vm, "incoming",
                                                        false)) {
            return vm;
        }
    }
    return NULL;
}

static enum vm_state incoming_vm_state(void)
{
    g_autoptr(JsonObject) r = execute(&fx.dst, "query-vms", NULL);
    JsonObject *vm = r ? incoming_vm_entry(r) : NULL;

    if (!vm) {
        return VM_GONE;
    }
    return json_object_get_boolean_member_with_default(vm, "busy", true)
               ? VM_BUSY
               : VM_FREE;
}

/* The incoming VM is attached and no migration holds it. */
static bool incoming_vm_free(void)
{
    return incoming_vm_state() == VM_FREE;
}

/* Wait up to END_MS for the migration that held the VM to let it go. */
static bool wait_vm_free(void)
{
    for (int waited = 0; waited < END_MS; waited += POLL_MS) {
        if (incoming_vm_free()) {
            return true;
        }
        g_usleep(POLL_MS * 1000);
    }
    return false;
}

/* After every scenario: the daemon still serves, the guest still waits. */
static void assert_serving(void)
{
    g_autoptr(JsonObject) q = NULL;
    bool free_vm;

    g_assert_true(daemon_proc_alive(&fx.dst));
    if (!daemon_proc_alive(&fx.dst)) {
        return;
    }
    free_vm = wait_vm_free();
    if (!free_vm) {
        g_test_message("the incoming VM is not attached and free");
    }
    g_assert_true(free_vm);
    q = execute(&fx.dst, "query-migrate", NULL);
    g_assert_true(q && json_object_has_member(q, "return"));
    g_assert_true(daemon_guest_alive(&fx.incoming));
}

/* ---- raw connections ---- */

static int dst_port(void)
{
    const char *colon = strrchr(fx.dst.address, ':');

    return atoi(colon + 1);
}

static int local_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        return -1;
    }
    return ntohs(sa.sin_port);
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

static int raw_connect(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(dst_port()),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        g_test_message("connecting to %s: %s", fx.dst.address,
                       g_strerror(errno));
        close(fd);
        fd = -1;
    }
    g_assert_cmpint(fd, >=, 0);
    return fd;
}

/* Did the daemon hang up on @fd within END_MS (data it sent skipped)? */
static bool raw_hung_up(int fd)
{
    int64_t deadline = g_get_monotonic_time() + END_MS * 1000LL;

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (deadline - g_get_monotonic_time()) / 1000;
        char buf[4096];
        ssize_t n;

        if (left <= 0 || poll(&p, 1, left) <= 0) {
            return false;
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            return true; /* EOF, or a reset: unread input was dropped */
        }
    }
}

/*
 * Send @len raw bytes as a new peer, say no more, and expect the daemon
 * to drop the connection with a log line naming us and @needle.
 */
static void raw_expect_drop(const void *buf, size_t len, const char *needle)
{
    int fd = raw_connect();
    g_autofree char *peer = NULL;

    if (fd < 0) {
        return;
    }
    peer = g_strdup_printf("peer 127.0.0.1:%d:", local_port(fd));
    g_assert_true(write_all(fd, buf, len));
    shutdown(fd, SHUT_WR);
    g_assert_true(raw_hung_up(fd));
    close(fd);
    assert_log(peer, needle, NULL);
    assert_serving();
}

static size_t encode_frame(uint8_t *buf, const struct frame_hdr *h,
                           const void *payload, size_t len)
{
    frame_encode(h, buf);
    memcpy(buf + FRAME_HDR_LEN, payload, len);
    return FRAME_HDR_LEN + len;
}

/* ---- peer messages ---- */

static void hostile_init(struct hostile *hs)
{
    memset(hs, 0, sizeof(*hs));
    for (size_t i = 0; i < sizeof(hs->id); i++) {
        hs->id[i] = g_random_int_range(0, 256);
        snprintf(hs->id_hex + 2 * i, 3, "%02x", hs->id[i]);
    }
}

static void hello_init(Hello *h, const struct hostile *hs,
                       enum channel_kind kind, uint32_t stream)
{
    static char *caps[] = {PEER_CAP_ZERO_PAGE, PEER_CAP_MINOR};

    *h = (Hello)POSTCOPY__PEER__HELLO__INIT;
    h->version = PEER_PROTOCOL_VERSION;
    h->min_version = PEER_PROTOCOL_VERSION;
    h->vm_name = VM_NAME;
    h->migration_id.data = (uint8_t *)hs->id;
    h->migration_id.len = sizeof(hs->id);
    h->channel = (Postcopy__Peer__ChannelKind)kind;
    h->stream = stream;
    h->bulk_streams = kind == CHANNEL_CONTROL ? 1 : 0;
    h->n_capabilities = G_N_ELEMENTS(caps);
    h->capabilities = caps;
    h->mode = POSTCOPY__PEER__MODE__MODE_POSTCOPY;
}

/* The standard layout of the incoming guest, in caller storage. */
static void layout_init(Layout *l, RegionLayout *rl, RegionLayout **rlp)
{
    *rl = (RegionLayout)POSTCOPY__PEER__REGION_LAYOUT__INIT;
    rl->index = 0;
    rl->size = RAM_BYTES;
    rl->page_size = PAGE_SIZE;
    rl->backing = POSTCOPY__PEER__BACKING__BACKING_SHMEM;
    rl->name = "ram";
    rlp[0] = rl;
    *l = (Layout)POSTCOPY__PEER__LAYOUT__INIT;
    l->n_regions = 1;
    l->regions = rlp;
    l->total_bytes = RAM_BYTES;
}

static bool send_msg(struct channel *ch, PeerMessage *msg)
{
    g_autoptr(GError) err = NULL;
    bool ok = channel_send_msg(ch, msg, &err);

    g_assert_no_error(err);
    return ok;
}

static bool send_hello(struct channel *ch, const Hello *h)
{
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    msg.hello = (Hello *)h;
    return send_msg(ch, &msg);
}

static bool send_layout(struct channel *ch, const Layout *l)
{
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT;
    msg.layout = (Layout *)l;
    return send_msg(ch, &msg);
}

static bool send_switchover(struct channel *ch, const void *state, size_t len)
{
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;

    so.device_state.data = (uint8_t *)state;
    so.device_state.len = len;
    so.sync_seq = SYNC_SEQ;
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER;
    msg.switchover = &so;
    return send_msg(ch, &msg);
}

/* A frame, valid or not: what the library refuses goes out raw. */
static bool send_any_frame(struct channel *ch, const struct frame_hdr *h,
                           const void *payload, size_t len)
{
    struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
    uint8_t hdr[FRAME_HDR_LEN];
    g_autoptr(GError) err = NULL;

    if (len == h->len && frame_validate(h, NULL)) {
        bool ok = channel_send_frame(ch, h, &iov, len ? 1 : 0, &err);

        g_assert_no_error(err);
        return ok;
    }
    frame_encode(h, hdr);
    return write_all(channel_fd(ch), hdr, sizeof(hdr)) &&
           write_all(channel_fd(ch), payload, len);
}

/* The next message, or NULL (logged) on an error or after REPLY_MS. */
static PeerMessage *recv_msg(struct channel *ch)
{
    g_autoptr(GError) err = NULL;
    PeerMessage *msg;

    channel_set_timeout(ch, REPLY_MS, NULL);
    msg = channel_recv_msg(ch, &err);
    if (!msg) {
        g_test_message("no message: %s", err->message);
    }
    return msg;
}

/* The next message, which must be of @want. */
static PeerMessage *expect_msg(struct channel *ch,
                               Postcopy__Peer__PeerMessage__MsgCase want)
{
    PeerMessage *msg = recv_msg(ch);

    g_assert_nonnull(msg);
    if (msg && msg->msg_case != want) {
        g_test_message("got %s", peer_message_name(msg));
        g_assert_cmpint(msg->msg_case, ==, want);
        g_clear_pointer(&msg, peer_message_free);
    }
    return msg;
}

/*
 * Does the daemon close @ch within CLOSE_MS?  Messages it sends first (an
 * Error after a refusal) are skipped.
 */
static bool peer_closes(struct channel *ch)
{
    int64_t deadline = g_get_monotonic_time() + CLOSE_MS * 1000LL;

    channel_set_timeout(ch, CLOSE_MS, NULL);
    while (g_get_monotonic_time() < deadline) {
        g_autoptr(GError) err = NULL;
        g_autoptr(PeerMessage) msg = channel_recv_msg(ch, &err);

        if (!msg) {
            return !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
        }
    }
    return false;
}

static void assert_peer_closes(struct channel *ch, const char *what)
{
    bool closed = peer_closes(ch);

    if (!closed) {
        g_test_message("the daemon kept the %s channel open", what);
    }
    g_assert_true(closed);
}

/*
 * A HelloReply that refuses: ok false, a reason holding @needle, and
 * @code unless that is UNSPECIFIED.
 */
static void assert_refused(const PeerMessage *r, const char *needle,
                           Postcopy__Peer__ErrorCode code)
{
    g_assert_nonnull(r);
    if (!r) {
        return;
    }
    g_assert_cmpint(r->msg_case, ==,
                    POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY);
    if (r->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY) {
        return;
    }
    g_test_message("hello reply: ok=%d code=%d '%s'", r->hello_reply->ok,
                   r->hello_reply->code, r->hello_reply->error);
    g_assert_false(r->hello_reply->ok);
    g_assert_nonnull(strstr(r->hello_reply->error, needle));
    if (code != POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED) {
        g_assert_cmpint(r->hello_reply->code, ==, code);
    }
}

static bool code_is_protocol_or_range(Postcopy__Peer__ErrorCode code)
{
    return code == POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL ||
           code == POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_RANGE;
}

/* An Error message on control naming @needle, with a protocol code. */
static void assert_error_msg(struct hostile *hs, const char *needle)
{
    g_autoptr(PeerMessage) e =
        expect_msg(hs->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_ERROR);

    if (!e) {
        return;
    }
    g_test_message("error: code=%d '%s'", e->error->code, e->error->message);
    g_assert_true(code_is_protocol_or_range(e->error->code));
    g_assert_nonnull(strstr(e->error->message, needle));
}

/* ---- hostile migrations ---- */

static struct channel *hostile_connect(enum channel_kind kind, uint32_t stream,
                                       int *port)
{
    struct transport_options opts;
    g_autoptr(GError) err = NULL;
    struct channel *ch;

    transport_options_init(&opts);
    ch = transport_connect(transport_tcp(), fx.dst.address, kind, stream, &opts,
                           &err);
    g_assert_no_error(err);
    if (ch) {
        *port = local_port(channel_fd(ch));
    }
    return ch;
}

/* Send @h as the first message on @ch; return the HelloReply. */
static PeerMessage *hello_exchange(struct channel *ch, const Hello *h)
{
    if (!ch || !send_hello(ch, h)) {
        return NULL;
    }
    return expect_msg(ch, POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY);
}

static bool hello_ok(struct channel *ch, const struct hostile *hs,
                     enum channel_kind kind, uint32_t stream)
{
    g_autoptr(PeerMessage) r = NULL;
    Hello h;

    hello_init(&h, hs, kind, stream);
    r = hello_exchange(ch, &h);
    if (r && !r->hello_reply->ok) {
        g_test_message("%s hello refused: %s", channel_kind_name(kind),
                       r->hello_reply->error);
    }
    g_assert_true(r && r->hello_reply->ok);
    return r && r->hello_reply->ok;
}

/* Control channel open and greeted: the daemon holds the VM now. */
static bool hostile_begin(struct hostile *hs)
{
    hostile_init(hs);
    hs->control = hostile_connect(CHANNEL_CONTROL, 0, &hs->control_port);
    return hello_ok(hs->control, hs, CHANNEL_CONTROL, 0);
}

static bool hostile_layout_ok(struct hostile *hs)
{
    RegionLayout rl, *rlp[1];
    g_autoptr(PeerMessage) r = NULL;
    Layout l;

    layout_init(&l, &rl, rlp);
    if (!send_layout(hs->control, &l)) {
        return false;
    }
    r = expect_msg(hs->control, POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT_REPLY);
    g_assert_true(r && r->layout_reply->ok);
    return r && r->layout_reply->ok;
}

static bool hostile_open_data(struct hostile *hs)
{
    hs->urgent = hostile_connect(CHANNEL_URGENT, 0, &hs->urgent_port);
    if (!hello_ok(hs->urgent, hs, CHANNEL_URGENT, 0)) {
        return false;
    }
    hs->bulk = hostile_connect(CHANNEL_BULK, 0, &hs->bulk_port);
    return hello_ok(hs->bulk, hs, CHANNEL_BULK, 0);
}

/* Hello, Layout and both data channels: just before the switchover. */
static bool hostile_ready(struct hostile *hs)
{
    return hostile_begin(hs) && hostile_layout_ok(hs) && hostile_open_data(hs);
}

static void hostile_close(struct hostile *hs)
{
    struct channel **chs[] = {&hs->bulk, &hs->urgent, &hs->control};

    for (size_t i = 0; i < G_N_ELEMENTS(chs); i++) {
        g_clear_pointer(chs[i], channel_close);
    }
}

/* A data channel for @hs, or NULL if the daemon refuses it (no asserts). */
static struct channel *try_data_channel(const struct hostile *hs,
                                        enum channel_kind kind)
{
    struct transport_options opts;
    g_autoptr(PeerMessage) r = NULL;
    struct channel *ch;
    Hello h;

    transport_options_init(&opts);
    ch = transport_connect(transport_tcp(), fx.dst.address, kind, 0, &opts,
                           NULL);
    if (!ch) {
        return NULL;
    }
    hello_init(&h, hs, kind, 0);
    channel_set_timeout(ch, REPLY_MS, NULL);
    if (send_hello(ch, &h)) {
        r = channel_recv_msg(ch, NULL);
    }
    if (!r || r->msg_case != POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY ||
        !r->hello_reply->ok) {
        g_clear_pointer(&ch, channel_close);
    }
    return ch;
}

/*
 * End a migration whose layout was accepted without relying on how the
 * daemon treats a source that vanishes (test_data_source_vanishes does):
 * complete its data channels and send a device state the guest refuses.
 */
static void hostile_finish(struct hostile *hs)
{
    Postcopy__Peer__Switchover so = POSTCOPY__PEER__SWITCHOVER__INIT;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    g_autoptr(PeerMessage) r = NULL;

    if (hs->control) {
        if (!hs->urgent) {
            hs->urgent = try_data_channel(hs, CHANNEL_URGENT);
        }
        if (!hs->bulk) {
            hs->bulk = try_data_channel(hs, CHANNEL_BULK);
        }
        so.device_state.data = (uint8_t *)"x";
        so.device_state.len = 1;
        msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER;
        msg.switchover = &so;
        if (channel_send_msg(hs->control, &msg, NULL)) {
            r = channel_recv_msg(hs->control, NULL);
        }
    }
    hostile_close(hs);
}

/* The destination's query-migrate of @hs once it reached a final status. */
static JsonObject *wait_ended(const struct hostile *hs)
{
    const char *finals[] = {"completed", "failed", "cancelled", NULL};

    for (int waited = 0; waited < END_MS; waited += POLL_MS) {
        g_autoptr(JsonObject) r =
            execute(&fx.dst, "query-migrate", "{\"vm\": \"" VM_NAME "\"}");
        JsonNode *ret = r ? json_object_get_member(r, "return") : NULL;
        JsonObject *q = ret && JSON_NODE_HOLDS_OBJECT(ret)
                            ? json_node_get_object(ret)
                            : NULL;

        if (q &&
            !g_strcmp0(json_object_get_string_member_with_default(q, "id", ""),
                       hs->id_hex) &&
            g_strv_contains(finals, json_object_get_string_member_with_default(
                                        q, "status", ""))) {
            return json_object_ref(q);
        }
        g_usleep(POLL_MS * 1000);
    }
    g_test_fail_printf("migration %s did not end within %d ms", hs->id_hex,
                       END_MS);
    return NULL;
}

static int64_t ram_member(JsonObject *q, const char *name)
{
    JsonNode *ram = json_object_get_member(q, "ram");

    if (!ram || !JSON_NODE_HOLDS_OBJECT(ram)) {
        return -1;
    }
    return json_object_get_int_member_with_default(json_node_get_object(ram),
                                                   name, -1);
}

/*
 * @hs's migration failed at the destination, saying @needle (if set),
 * with not one page written to the guest.
 */
static void assert_failed_clean(const struct hostile *hs, const char *needle)
{
    g_autoptr(JsonObject) q = wait_ended(hs);
    const char *desc;

    if (!q) {
        return;
    }
    desc = json_object_get_string_member_with_default(q, "error-desc", "");
    g_test_message("destination: %s: %s",
                   json_object_get_string_member_with_default(q, "status", ""),
                   desc);
    g_assert_cmpstr(json_object_get_string_member_with_default(q, "status", ""),
                    ==, "failed");
    if (needle) {
        g_assert_nonnull(strstr(desc, needle));
    }
    g_assert_cmpint(ram_member(q, "pages-installed"), ==, 0);
}

/* ---- peer port: garbage before any Hello ---- */

static void test_raw_garbage(void)
{
    static const char junk[] = "GET / HTTP/1.1\r\nHost: postcopyd\r\n\r\n"
                               "\x00\xff\x13\x37 garbage garbage garbage";

    if (ready()) {
        raw_expect_drop(junk, sizeof(junk), "bad frame magic");
    }
}

static void test_raw_truncated_header(void)
{
    struct frame_hdr h = {.type = FRAME_MSG, .len = 100};
    uint8_t buf[FRAME_HDR_LEN];

    if (ready()) {
        frame_encode(&h, buf);
        raw_expect_drop(buf, 10, "truncated frame");
    }
}

static void test_raw_truncated_hello(void)
{
    struct hostile hs;
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    struct frame_hdr h = {.type = FRAME_MSG};
    uint8_t buf[1024];
    Hello hello;
    size_t len;

    if (!ready()) {
        return;
    }
    hostile_init(&hs);
    hello_init(&hello, &hs, CHANNEL_CONTROL, 0);
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO;
    msg.hello = &hello;
    len = postcopy__peer__peer_message__pack(&msg, buf + FRAME_HDR_LEN);
    h.len = len;
    frame_encode(&h, buf);
    /* The header promises len bytes; half of them come. */
    raw_expect_drop(buf, FRAME_HDR_LEN + len / 2, "truncated frame");
}

static void test_raw_undecodable(void)
{
    /* Field 1 (hello), length 127, then two bytes: not protobuf. */
    static const uint8_t junk[] = {0x0a, 0x7f, 0x01, 0x02};
    struct frame_hdr h = {.type = FRAME_MSG, .len = sizeof(junk)};
    uint8_t buf[FRAME_HDR_LEN + sizeof(junk)];

    if (ready()) {
        raw_expect_drop(buf, encode_frame(buf, &h, junk, sizeof(junk)),
                        "undecodable 4-byte message");
    }
}

static void test_raw_unknown_message(void)
{
    /* Field 29 (no kind yet), varint 1: a kind from a future protocol. */
    static const uint8_t future[] = {0xe8, 0x01, 0x01};
    struct frame_hdr h = {.type = FRAME_MSG, .len = sizeof(future)};
    uint8_t buf[FRAME_HDR_LEN + sizeof(future)];

    if (ready()) {
        raw_expect_drop(buf, encode_frame(buf, &h, future, sizeof(future)),
                        "message of a kind this build does not know");
    }
}

static void test_raw_unknown_frame_type(void)
{
    struct frame_hdr h = {.type = 99};
    uint8_t buf[FRAME_HDR_LEN];

    if (ready()) {
        frame_encode(&h, buf);
        raw_expect_drop(buf, sizeof(buf), "unknown frame type 99");
    }
}

static void test_raw_wrong_version(void)
{
    struct frame_hdr h = {.type = FRAME_MSG, .len = 2};
    static const uint8_t payload[] = {0x78, 0x01};
    uint8_t buf[FRAME_HDR_LEN + sizeof(payload)];

    if (ready()) {
        encode_frame(buf, &h, payload, sizeof(payload));
        buf[2] = FRAME_VERSION + 1;
        raw_expect_drop(buf, sizeof(buf), "unsupported frame version 2");
    }
}

static void test_raw_oversized(void)
{
    struct frame_hdr h = {.type = FRAME_MSG, .len = FRAME_MAX_MSG + 1};
    uint8_t buf[FRAME_HDR_LEN];

    if (ready()) {
        frame_encode(&h, buf);
        raw_expect_drop(buf, sizeof(buf), "exceeds the limit");
    }
}

static void test_raw_not_hello(void)
{
    RegionLayout rl, *rlp[1];
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    struct frame_hdr h = {.type = FRAME_MSG};
    uint8_t buf[1024];
    Layout l;

    if (!ready()) {
        return;
    }
    layout_init(&l, &rl, rlp);
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT;
    msg.layout = &l;
    h.len = postcopy__peer__peer_message__pack(&msg, buf + FRAME_HDR_LEN);
    frame_encode(&h, buf);
    raw_expect_drop(buf, FRAME_HDR_LEN + h.len, "expected a Hello");
}

/* ---- Hello ---- */

/* Send @h on a new channel of @kind; expect a refusal and a hang-up. */
static void hello_expect_refused(const Hello *h, enum channel_kind kind,
                                 const char *needle, const char *log_needle,
                                 Postcopy__Peer__ErrorCode code)
{
    int port = 0;
    struct channel *ch = hostile_connect(kind, h->stream, &port);
    g_autoptr(PeerMessage) r = hello_exchange(ch, h);
    g_autofree char *peer = g_strdup_printf("peer 127.0.0.1:%d:", port);

    assert_refused(r, needle, code);
    if (ch) {
        assert_peer_closes(ch, channel_kind_name(kind));
        channel_close(ch);
    }
    assert_log(peer, log_needle, NULL);
}

static void test_hello_version(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    hostile_init(&hs);
    hello_init(&h, &hs, CHANNEL_CONTROL, 0);
    h.version = 99;
    h.min_version = 98;
    hello_expect_refused(&h, CHANNEL_CONTROL, "version", "version",
                         POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_VERSION);
    assert_serving();
}

/* A source on another transport: refused, saying where to look. */
static void test_hello_transport(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    hostile_init(&hs);
    hello_init(&h, &hs, CHANNEL_CONTROL, 0);
    h.transport = "rdma"; /* this daemon runs tcp */
    hello_expect_refused(&h, CHANNEL_CONTROL,
                         "the source's transport is not this daemon's",
                         "[peer] transport on both hosts",
                         POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_PROTOCOL);
    assert_serving();
}

static void test_hello_unknown_vm(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    hostile_init(&hs);
    hello_init(&h, &hs, CHANNEL_CONTROL, 0);
    h.vm_name = "no-such-vm";
    hello_expect_refused(&h, CHANNEL_CONTROL, "no-such-vm", "no-such-vm",
                         POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
    assert_serving();
}

/* An incoming VMM's attach connection, its hello not sent yet. */
static int attach_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, fx.dst.attach_path, sizeof(sa.sun_path));
    g_assert_cmpint(connect(sock, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return sock;
}

/* Its hello, late: a uffd and one shmem region of RAM_BYTES. */
static void attach_send_late(int sock, const char *name)
{
    struct region r = {.kind = BACKING_SHMEM,
                       .base = 0x7f0000000000ULL,
                       .size = RAM_BYTES,
                       .page_size = PAGE_SIZE};
    g_autoptr(GError) err = NULL;
    int uffd = uffd_open(&err);

    g_assert_no_error(err);
    r.fd = memfd_create(name, MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(r.fd, RAM_BYTES), ==, 0);
    g_assert_true(attach_send_hello(sock, name, true, uffd, 0, &r, 1, &err));
    close(r.fd);
    close(uffd);
}

/*
 * A VMM's "ready" comes as it sends its hello, so a source may name it
 * before the daemon has read that hello: the Hello waits for it.
 */
static void test_hello_vm_still_attaching(void)
{
    g_autoptr(PeerMessage) reply = NULL;
    struct hostile hs;
    int sock;
    Hello h;

    if (!ready()) {
        return;
    }
    sock = attach_connect();
    hostile_init(&hs);
    hello_init(&h, &hs, CHANNEL_CONTROL, 0);
    h.vm_name = "late-vm";
    hs.control = hostile_connect(CHANNEL_CONTROL, 0, &hs.control_port);
    g_assert_true(hs.control && send_hello(hs.control, &h));
    g_usleep(300 * 1000);
    attach_send_late(sock, "late-vm");
    reply =
        expect_msg(hs.control, POSTCOPY__PEER__PEER_MESSAGE__MSG_HELLO_REPLY);
    if (reply && !reply->hello_reply->ok) {
        g_test_message("refused: %s", reply->hello_reply->error);
    }
    g_assert_true(reply && reply->hello_reply->ok);
    hostile_close(&hs);
    close(sock);
    assert_serving();
}

static gpointer migrate_incoming_thread(gpointer name)
{
    g_autofree char *args =
        g_strdup_printf("{\"vm\": \"%s\"}", (const char *)name);
    g_autofree char *why = NULL;

    return daemon_proc_execute(&fx.dst, "migrate-incoming", args, &why);
}

/*
 * The same for a control command: one that names a VM right after its
 * VMM said "ready" waits for the attach to be through.
 */
static void test_control_vm_still_attaching(void)
{
    g_autoptr(JsonObject) reply = NULL;
    GThread *th;
    int sock;

    if (!ready()) {
        return;
    }
    sock = attach_connect();
    th = g_thread_new("control", migrate_incoming_thread, "late-vm-2");
    g_usleep(300 * 1000);
    attach_send_late(sock, "late-vm-2");
    reply = g_thread_join(th);
    g_assert_nonnull(reply);
    if (!json_object_has_member(reply, "return")) {
        g_test_message("refused: %s", daemon_proc_error_desc(reply));
    }
    g_assert_true(json_object_has_member(reply, "return"));
    close(sock);
    assert_serving();
}

static void test_hello_short_id(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    hostile_init(&hs);
    hello_init(&h, &hs, CHANNEL_CONTROL, 0);
    h.migration_id.len = 5;
    hello_expect_refused(&h, CHANNEL_CONTROL, "16 bytes", "16 bytes",
                         POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
    assert_serving();
}

/* A second source for a VM that is migrating in already: BUSY. */
static void test_hello_busy(void)
{
    struct hostile hs, other;
    Hello h;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs)) {
        hostile_init(&other);
        hello_init(&h, &other, CHANNEL_CONTROL, 0);
        hello_expect_refused(&h, CHANNEL_CONTROL, "already migrating",
                             "already migrating",
                             POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_BUSY);
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, NULL);
    assert_serving();
}

/* ---- data channels ---- */

static void test_data_unknown_id(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    hostile_init(&hs);
    hello_init(&h, &hs, CHANNEL_URGENT, 0);
    hello_expect_refused(&h, CHANNEL_URGENT, "no migration with that id",
                         "urgent channel refused",
                         POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
    assert_serving();
}

/* The id of a migration that already failed opens nothing. */
static void test_data_ended_id(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    hostile_begin(&hs);
    hostile_close(&hs);
    assert_failed_clean(&hs, NULL);
    hello_init(&h, &hs, CHANNEL_BULK, 0);
    hello_expect_refused(&h, CHANNEL_BULK, "", "bulk channel refused",
                         POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
    assert_serving();
}

/* protocol.md: a data channel before the layout was accepted is refused. */
static void test_data_before_layout(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs)) {
        hello_init(&h, &hs, CHANNEL_URGENT, 0);
        hello_expect_refused(
            &h, CHANNEL_URGENT, "", "urgent channel refused",
            POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, NULL);
    assert_serving();
}

static void test_data_duplicate(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs) && hostile_layout_ok(&hs)) {
        hs.urgent = hostile_connect(CHANNEL_URGENT, 0, &hs.urgent_port);
        if (hello_ok(hs.urgent, &hs, CHANNEL_URGENT, 0)) {
            hello_init(&h, &hs, CHANNEL_URGENT, 0);
            hello_expect_refused(
                &h, CHANNEL_URGENT, "already open", "already open",
                POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
        }
    }
    hostile_finish(&hs);
    assert_failed_clean(&hs, NULL);
    assert_serving();
}

/* Hello.bulk_streams is 1: stream 1 does not exist. */
static void test_data_stream_out_of_range(void)
{
    struct hostile hs;
    Hello h;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs) && hostile_layout_ok(&hs)) {
        hello_init(&h, &hs, CHANNEL_BULK, 1);
        hello_expect_refused(
            &h, CHANNEL_BULK, "", "bulk channel refused",
            POSTCOPY__PEER__ERROR_CODE__ERROR_CODE_UNSPECIFIED);
    }
    hostile_finish(&hs);
    assert_failed_clean(&hs, NULL);
    assert_serving();
}

/*
 * A source that hangs up after its layout was accepted, before its data
 * channels: the migration ends then, not when the daemon stops waiting
 * for channels that will never come.
 */
static void test_data_source_vanishes(void)
{
    struct hostile hs;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs)) {
        hostile_layout_ok(&hs);
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, NULL);
    assert_serving();
}

/* ---- Layout ---- */

enum layout_bad {
    LAYOUT_TWO_REGIONS,
    LAYOUT_NO_REGIONS,
    LAYOUT_SIZE,
    LAYOUT_PAGE_SIZE,
    LAYOUT_BACKING,
    LAYOUT_UNKNOWN_BACKING,
    LAYOUT_TOTAL,
};

struct layout_case {
    enum layout_bad bad;
    const char *needle; /* in LayoutReply.error; "" for any reason */
};

static const struct layout_case layout_cases[] = {
    {LAYOUT_TWO_REGIONS, "2 region(s)"},
    {LAYOUT_NO_REGIONS, "0 region(s)"},
    {LAYOUT_SIZE, "8388608"},
    {LAYOUT_PAGE_SIZE, "2097152"},
    {LAYOUT_BACKING, "anon"},
    {LAYOUT_UNKNOWN_BACKING, "unknown"},
    /* Layout.total_bytes is "a cross-check" (peer.proto). */
    {LAYOUT_TOTAL, ""},
};

static void layout_break(Layout *l, RegionLayout *rl, RegionLayout **rlp,
                         enum layout_bad bad)
{
    switch (bad) {
    case LAYOUT_TWO_REGIONS:
        rl[1] = rl[0];
        rl[1].index = 1;
        rlp[1] = &rl[1];
        l->n_regions = 2;
        l->total_bytes = 2 * RAM_BYTES;
        break;
    case LAYOUT_NO_REGIONS:
        l->n_regions = 0;
        l->total_bytes = 0;
        break;
    case LAYOUT_SIZE:
        rl[0].size = l->total_bytes = RAM_BYTES / 2;
        break;
    case LAYOUT_PAGE_SIZE:
        rl[0].page_size = 2u << 20;
        break;
    case LAYOUT_BACKING:
        rl[0].backing = POSTCOPY__PEER__BACKING__BACKING_ANON;
        break;
    case LAYOUT_UNKNOWN_BACKING:
        rl[0].backing = 7;
        break;
    case LAYOUT_TOTAL:
        l->total_bytes = RAM_BYTES + PAGE_SIZE;
        break;
    }
}

/*
 * A layout the VMM does not have: LayoutReply{ok = false} naming the
 * difference, the migration ends, the VM waits for the next one.
 */
static void test_layout_mismatch(gconstpointer data)
{
    const struct layout_case *c = data;
    RegionLayout rl[2], *rlp[2];
    g_autoptr(PeerMessage) r = NULL;
    struct hostile hs;
    Layout l;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs)) {
        layout_init(&l, &rl[0], rlp);
        layout_break(&l, rl, rlp, c->bad);
        if (send_layout(hs.control, &l)) {
            r = expect_msg(hs.control,
                           POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT_REPLY);
        }
        if (r) {
            g_test_message("layout reply: ok=%d '%s'", r->layout_reply->ok,
                           r->layout_reply->error);
            g_assert_false(r->layout_reply->ok);
            g_assert_nonnull(strstr(r->layout_reply->error, c->needle));
            g_assert_cmpstr(r->layout_reply->error, !=, "");
        }
        assert_peer_closes(hs.control, "control");
    }
    hostile_finish(&hs);
    assert_failed_clean(&hs, "layout");
    assert_log(hs.id_hex, "layout", c->needle);
    assert_serving();
}

/* A message out of order on control is a PROTOCOL error, said so. */
static void test_layout_out_of_order(void)
{
    struct hostile hs;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs) && send_switchover(hs.control, "x", 1)) {
        assert_error_msg(&hs, "expected the layout");
        assert_peer_closes(hs.control, "control");
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "expected the layout");
    assert_log(hs.id_hex, "expected the layout", NULL);
    assert_serving();
}

/* Bytes that are not a frame where the Layout belongs. */
static void test_layout_garbage(void)
{
    static const char junk[FRAME_HDR_LEN] = "definitely not a frame header";
    struct hostile hs;

    if (!ready()) {
        return;
    }
    if (hostile_begin(&hs) &&
        write_all(channel_fd(hs.control), junk, sizeof(junk))) {
        assert_error_msg(&hs, "bad frame magic");
        assert_peer_closes(hs.control, "control");
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "bad frame magic");
    assert_log(hs.id_hex, "bad frame magic", NULL);
    assert_serving();
}

/* A Layout cut short by the source going away. */
static void test_layout_truncated(void)
{
    RegionLayout rl, *rlp[1];
    PeerMessage msg = POSTCOPY__PEER__PEER_MESSAGE__INIT;
    struct frame_hdr h = {.type = FRAME_MSG};
    uint8_t buf[1024];
    struct hostile hs;
    Layout l;

    if (!ready()) {
        return;
    }
    layout_init(&l, &rl, rlp);
    msg.msg_case = POSTCOPY__PEER__PEER_MESSAGE__MSG_LAYOUT;
    msg.layout = &l;
    h.len = postcopy__peer__peer_message__pack(&msg, buf + FRAME_HDR_LEN);
    frame_encode(&h, buf);
    if (hostile_begin(&hs)) {
        write_all(channel_fd(hs.control), buf, FRAME_HDR_LEN + h.len / 2);
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "truncated frame");
    assert_log(hs.id_hex, "truncated frame", NULL);
    assert_serving();
}

/* ---- Switchover ---- */

static bool send_sync(struct hostile *hs)
{
    struct frame_hdr h = {.type = FRAME_SYNC, .seq = SYNC_SEQ};

    return send_any_frame(hs->bulk, &h, NULL, 0);
}

/*
 * The guest checks the device state and refuses to resume with a bad
 * one: SwitchoverReply{ok = false}, the migration fails before the VM
 * ran, and the VM waits, paused, for the next one.
 */
static void switchover_refused(const void *state, size_t len)
{
    g_autoptr(PeerMessage) r = NULL;
    struct hostile hs;

    if (!ready()) {
        return;
    }
    if (hostile_ready(&hs) && send_sync(&hs) &&
        send_switchover(hs.control, state, len)) {
        r = expect_msg(hs.control,
                       POSTCOPY__PEER__PEER_MESSAGE__MSG_SWITCHOVER_REPLY);
    }
    if (r) {
        g_test_message("switchover reply: ok=%d '%s'", r->switchover_reply->ok,
                       r->switchover_reply->error);
        g_assert_false(r->switchover_reply->ok);
        g_assert_cmpstr(r->switchover_reply->error, !=, "");
        assert_peer_closes(hs.control, "control");
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "resume");
    assert_log(hs.id_hex, "resume", NULL);
    assert_serving();
}

static void test_switchover_garbage_state(void)
{
    static const char junk[] = "this is not a postcopy-guest device state";

    switchover_refused(junk, sizeof(junk));
}

static void test_switchover_empty_state(void)
{
    switchover_refused(NULL, 0);
}

/* A page frame where the Switchover belongs is not installed. */
static void test_switchover_page_on_control(void)
{
    struct frame_hdr h = {.type = FRAME_PAGE, .len = PAGE_SIZE};
    g_autofree uint8_t *page = g_malloc(PAGE_SIZE);
    struct hostile hs;

    if (!ready()) {
        return;
    }
    memset(page, 0xa5, PAGE_SIZE);
    if (hostile_ready(&hs) && send_any_frame(hs.control, &h, page, PAGE_SIZE)) {
        assert_error_msg(&hs, "page frame");
        assert_peer_closes(hs.control, "control");
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "page frame");
    assert_log(hs.id_hex, "page frame", NULL);
    assert_serving();
}

static void test_switchover_out_of_order(void)
{
    RegionLayout rl, *rlp[1];
    struct hostile hs;
    Layout l;

    if (!ready()) {
        return;
    }
    layout_init(&l, &rl, rlp);
    if (hostile_ready(&hs) && send_layout(hs.control, &l)) {
        assert_error_msg(&hs, "expected the switchover");
        assert_peer_closes(hs.control, "control");
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "expected the switchover");
    assert_log(hs.id_hex, "expected the switchover", NULL);
    assert_serving();
}

/* ---- page frames before the switchover ---- */

struct frame_case {
    const char *name;
    enum channel_kind on;
    struct frame_hdr h;
    bool payload;       /* send h.len bytes of 0xa5 after the header */
    const char *needle; /* in the Error and the log line */
};

#define END_OF_RAM (RAM_BYTES - PAGE_SIZE)

static const struct frame_case frame_cases[] = {
    {"region",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .region = 1, .len = PAGE_SIZE},
     true,
     "for region 1, but the layout has 1"},
    {"offset-beyond",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .offset = RAM_BYTES, .len = PAGE_SIZE},
     true,
     "beyond the end of region 0"},
    {"offset-huge",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .offset = ~0ULL - PAGE_SIZE + 1, .len = PAGE_SIZE},
     true,
     "beyond the end of region 0"},
    {"past-end",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .offset = END_OF_RAM, .len = 2 * PAGE_SIZE},
     true,
     "runs past the end of region 0"},
    {"misaligned",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .offset = 100, .len = PAGE_SIZE},
     true,
     "does not cover whole"},
    {"partial-page",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .len = 100},
     true,
     "does not cover whole"},
    {"zero-past-end",
     CHANNEL_BULK,
     {.type = FRAME_PAGE_ZERO, .offset = END_OF_RAM, .count = 2},
     false,
     "runs past the end of region 0"},
    {"zero-count-huge",
     CHANNEL_BULK,
     {.type = FRAME_PAGE_ZERO, .count = UINT32_MAX},
     false,
     "runs past the end of region 0"},
    {"zero-misaligned",
     CHANNEL_BULK,
     {.type = FRAME_PAGE_ZERO, .offset = 1, .count = 1},
     false,
     "not aligned"},
    {"page-req",
     CHANNEL_BULK,
     {.type = FRAME_PAGE_REQ, .count = 1},
     false,
     "unexpected page request frame"},
    {"bad-flags",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .flags = 1u << 7, .len = PAGE_SIZE},
     true,
     "unknown flags 0x80"},
    {"more-flag",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .flags = FRAME_F_MORE, .len = PAGE_SIZE},
     true,
     "FRAME_F_MORE"},
    {"oversized",
     CHANNEL_BULK,
     {.type = FRAME_PAGE, .len = FRAME_MAX_PAYLOAD + PAGE_SIZE},
     false,
     "exceeds the limit"},
    {"message",
     CHANNEL_BULK,
     {.type = FRAME_MSG, .len = 2},
     true,
     "unexpected message frame"},
    {"unknown-type",
     CHANNEL_BULK,
     {.type = 42},
     false,
     "unknown frame type 42"},
    {"urgent-page-req",
     CHANNEL_URGENT,
     {.type = FRAME_PAGE_REQ, .count = 1},
     false,
     "unexpected page request frame"},
    {"urgent-region",
     CHANNEL_URGENT,
     {.type = FRAME_PAGE, .region = 7, .len = PAGE_SIZE},
     true,
     "for region 7, but the layout has 1"},
    /* In precopy nothing was requested: a reply answers nothing. */
    {"unsolicited-reply",
     CHANNEL_URGENT,
     {.type = FRAME_PAGE,
      .flags = FRAME_F_REPLY | FRAME_F_FINAL,
      .seq = 0,
      .len = PAGE_SIZE},
     true,
     "a reply to page request 0, which was never made"},
    {"unsolicited-zero-reply",
     CHANNEL_URGENT,
     {.type = FRAME_PAGE_ZERO,
      .flags = FRAME_F_REPLY | FRAME_F_FINAL,
      .seq = 7,
      .count = 1},
     false,
     "a reply to page request 7, which was never made"},
};

/*
 * A bad page frame from the source, before the switchover: an Error on
 * control naming the problem, a log line naming the channel, the peer
 * and the problem, the migration failed, and not a page installed.
 */
static void test_bad_frame(gconstpointer data)
{
    const struct frame_case *c = data;
    g_autofree uint8_t *payload = NULL;
    g_autofree char *chan = NULL;
    struct channel *ch;
    struct hostile hs;

    if (!ready()) {
        return;
    }
    payload = g_malloc(c->payload ? c->h.len : 1);
    memset(payload, 0xa5, c->payload ? c->h.len : 1);
    if (hostile_ready(&hs)) {
        ch = c->on == CHANNEL_URGENT ? hs.urgent : hs.bulk;
        chan = c->on == CHANNEL_URGENT
                   ? g_strdup_printf("urgent channel from 127.0.0.1:%d:",
                                     hs.urgent_port)
                   : g_strdup_printf("bulk channel 0 from 127.0.0.1:%d:",
                                     hs.bulk_port);
        g_assert_true(
            send_any_frame(ch, &c->h, payload, c->payload ? c->h.len : 0));
        assert_error_msg(&hs, c->needle);
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, c->needle);
    assert_log(hs.id_hex, chan ? chan : "", c->needle);
    assert_serving();
}

/*
 * protocol.md: the side that sees a bad frame "closes every channel of
 * that migration" - it does not wait for the source to hang up.
 */
static void test_bad_frame_closes_channels(void)
{
    struct frame_hdr h = {
        .type = FRAME_PAGE, .offset = RAM_BYTES, .len = PAGE_SIZE};
    g_autofree uint8_t *page = g_malloc0(PAGE_SIZE);
    struct hostile hs;

    if (!ready()) {
        return;
    }
    if (hostile_ready(&hs) && send_any_frame(hs.bulk, &h, page, PAGE_SIZE)) {
        assert_error_msg(&hs, "beyond the end");
        if (peer_closes(hs.control)) {
            assert_peer_closes(hs.urgent, "urgent");
            /* The VM is free again before we hang up. */
            g_assert_true(wait_vm_free());
        } else {
            g_test_fail_printf("after the Error, the daemon kept the control "
                               "channel open until the source hung up");
        }
    }
    hostile_close(&hs);
    assert_failed_clean(&hs, "beyond the end");
    assert_serving();
}

/* ---- the control socket ---- */

static void assert_control_error(struct daemon_proc *dp, const char *line,
                                 const char *cls, const char *needle)
{
    g_autofree char *why = NULL;
    g_autoptr(JsonObject) r = daemon_proc_request(dp, line, &why);
    JsonNode *e = r ? json_object_get_member(r, "error") : NULL;
    JsonObject *eo =
        e && JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    g_autofree char *shown = g_strescape(line, NULL);

    if (!eo) {
        g_test_message("%s: no error reply (%s)", shown, why ? why : "");
    }
    g_assert_nonnull(eo);
    if (!eo) {
        return;
    }
    g_test_message("%s -> %s: %s", shown,
                   json_object_get_string_member_with_default(eo, "class", ""),
                   json_object_get_string_member_with_default(eo, "desc", ""));
    g_assert_cmpstr(json_object_get_string_member_with_default(eo, "class", ""),
                    ==, cls);
    g_assert_nonnull(strstr(
        json_object_get_string_member_with_default(eo, "desc", ""), needle));
}

struct control_case {
    const char *line;
    const char *cls;
    const char *needle;
};

/* Bad input any daemon must refuse the same way. */
static const struct control_case control_cases[] = {
    {"this is not json", "GenericError", "not valid JSON"},
    {"[1, 2, 3]", "GenericError", "not a JSON object"},
    {"{\"execute\": \"\xff\xfe\"}", "GenericError", "UTF-8"},
    {"{\"execute\": 42}", "GenericError", "must be a string"},
    {"{\"execute\": \"no-such-command\"}", "CommandNotFound",
     "no-such-command"},
    {"{\"execute\": \"query-vms\", \"arguments\": [1]}", "GenericError",
     "must be an object"},
    {"{\"execute\": \"query-vms\", \"bogus\": 1}", "GenericError", "bogus"},
    {"{\"execute\": \"migrate\"}", "GenericError", "'vm' and 'uri'"},
    {"{\"execute\": \"migrate\", \"arguments\": {\"vm\": 5, \"uri\": "
     "\"127.0.0.1:1\"}}",
     "GenericError", "'vm' and 'uri'"},
    {"{\"execute\": \"migrate\", \"arguments\": {\"vm\": \"" VM_NAME
     "\", \"uri\": [\"127.0.0.1:1\"]}}",
     "GenericError", "'vm' and 'uri'"},
    {"{\"execute\": \"migrate\", \"arguments\": {\"vm\": \"no-such-vm\", "
     "\"uri\": \"127.0.0.1:1\"}}",
     "DeviceNotFound", "no-such-vm"},
    {"{\"execute\": \"migrate\", \"arguments\": {\"vm\": \"" VM_NAME
     "\", \"uri\": \"127.0.0.1:1\", \"mode\": \"warp\"}}",
     "GenericError", "warp"},
    {"{\"execute\": \"migrate-incoming\", \"arguments\": {\"vm\": 1}}",
     "GenericError", "'vm'"},
    {"{\"execute\": \"migrate-incoming\", \"arguments\": {\"vm\": "
     "\"no-such-vm\"}}",
     "DeviceNotFound", "no-such-vm"},
    {"{\"execute\": \"migrate-cancel\", \"arguments\": {\"vm\": "
     "\"no-such-vm\"}}",
     "DeviceNotActive", "no-such-vm"},
};

static void test_control_dst(void)
{
    if (!ready()) {
        return;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(control_cases); i++) {
        const struct control_case *c = &control_cases[i];

        assert_control_error(&fx.dst, c->line, c->cls, c->needle);
    }
    /* The incoming VM cannot be migrated out of here... */
    assert_control_error(&fx.dst,
                         "{\"execute\": \"migrate\", \"arguments\": {\"vm\": "
                         "\"" VM_NAME "\", \"uri\": \"127.0.0.1:1\"}}",
                         "DeviceNotFound", VM_NAME);
    /* ...and its migrations are cancelled at their source. */
    assert_control_error(&fx.dst, "{\"execute\": \"migrate-cancel\"}",
                         "GenericError", "source");
    assert_serving();
}

static bool ensure_source(void)
{
    static const char *const args[] = {"--backing", "shmem",    "--size",
                                       GUEST_SIZE,  "--verify", NULL};
    g_autofree char *why = NULL;

    if (fx.src.dir) {
        return true;
    }
    if (!daemon_proc_start(&fx.src, "src", &why) ||
        !daemon_guest_spawn(&fx.outgoing, &fx.src, VM_NAME, args, &why)) {
        g_test_fail_printf("source: %s", why);
        return false;
    }
    return true;
}

static bool source_vm_free(void)
{
    g_autoptr(JsonObject) r = execute(&fx.src, "query-vms", NULL);
    JsonNode *ret = r ? json_object_get_member(r, "return") : NULL;
    JsonArray *vms =
        ret && JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;
    JsonObject *vm = vms && json_array_get_length(vms) == 1
                         ? json_array_get_object_element(vms, 0)
                         : NULL;

    return vm && !json_object_get_boolean_member_with_default(vm, "busy", true);
}

/* A source daemon: the same refusals, and a destination that is not one. */
static void test_control_src(void)
{
    g_autoptr(JsonObject) r = NULL;
    bool free_vm = false;

    if (!ready() || !ensure_source()) {
        return;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(control_cases); i++) {
        const struct control_case *c = &control_cases[i];

        assert_control_error(&fx.src, c->line, c->cls, c->needle);
    }
    assert_control_error(&fx.src, "{\"execute\": \"migrate-cancel\"}",
                         "DeviceNotActive", "no migration");
    /* Not an address: refused now, or failed with a reason; VM kept. */
    r = execute(&fx.src, "migrate",
                "{\"vm\": \"" VM_NAME "\", \"uri\": \"not an address\"}");
    if (r && json_object_has_member(r, "return")) {
        g_clear_pointer(&r, json_object_unref);
        for (int waited = 0; waited < END_MS && !r; waited += POLL_MS) {
            g_autoptr(JsonObject) q = execute(&fx.src, "query-migrate", NULL);
            JsonNode *ret = q ? json_object_get_member(q, "return") : NULL;
            JsonObject *m = ret && JSON_NODE_HOLDS_OBJECT(ret)
                                ? json_node_get_object(ret)
                                : NULL;

            if (m && !g_strcmp0(json_object_get_string_member_with_default(
                                    m, "status", ""),
                                "failed")) {
                r = json_object_ref(m);
            }
            g_usleep(POLL_MS * 1000);
        }
        g_assert_nonnull(r);
        g_assert_cmpstr(
            r ? json_object_get_string_member_with_default(r, "error-desc", "")
              : "",
            !=, "");
    }
    for (int waited = 0; !free_vm && waited < END_MS; waited += POLL_MS) {
        free_vm = source_vm_free();
        g_usleep(POLL_MS * 1000);
    }
    g_assert_true(free_vm);
    g_assert_true(daemon_proc_alive(&fx.src));
    g_assert_true(daemon_guest_alive(&fx.outgoing));
}

/* ---- after all that: a real migration into the same incoming VM ---- */

static void run_migrate(int *status, char **out)
{
    g_autofree char *bin = testlib_build_path("postcopy-migrate");
    g_autofree char *limit = g_strdup_printf("%d", VERIFY_MS / 1000);
    const char *argv[] = {
        "timeout", limit,  bin,     "--socket", fx.src.control_path,
        "migrate", "--vm", VM_NAME, "--to",     fx.dst.address,
        NULL};
    g_autofree char *err_text = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH,
                               NULL, NULL, out, &err_text, status, &err));
    g_assert_no_error(err);
    g_test_message("postcopy-migrate: %s%s", *out ? *out : "",
                   err_text ? err_text : "");
}

static void test_good_migration(void)
{
    g_autofree char *out = NULL;
    g_autofree char *verify = NULL;
    g_autoptr(JsonObject) q = NULL;
    guint64 checked = 0, mismatches = 1;
    int status = -1;

    if (!ready() || !ensure_source()) {
        return;
    }
    run_migrate(&status, &out);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    verify = daemon_guest_wait_line(&fx.incoming, "pages checked", VERIFY_MS);
    g_assert_nonnull(verify);
    if (verify) {
        g_test_message("incoming guest: %s", verify);
        g_assert_cmpint(sscanf(verify,
                               "verify: %" G_GUINT64_FORMAT
                               " pages checked, %" G_GUINT64_FORMAT
                               " mismatches",
                               &checked, &mismatches),
                        ==, 2);
        g_assert_cmpuint(checked, ==, NPAGES);
        g_assert_cmpuint(mismatches, ==, 0);
    }
    q = execute(&fx.dst, "query-migrate", "{\"vm\": \"" VM_NAME "\"}");
    if (q && json_object_has_member(q, "return") &&
        JSON_NODE_HOLDS_OBJECT(json_object_get_member(q, "return"))) {
        JsonObject *m = json_object_get_object_member(q, "return");

        g_assert_cmpstr(
            json_object_get_string_member_with_default(m, "status", ""), ==,
            "completed");
        g_assert_cmpint(ram_member(m, "pages-installed"), ==, NPAGES);
    }
    g_assert_true(daemon_proc_alive(&fx.dst));
}

/* ---- set-up ---- */

static void fixture_up(void)
{
    static const char *const args[] = {"--backing", "shmem",      "--size",
                                       GUEST_SIZE,  "--incoming", "--verify",
                                       NULL};
    g_autoptr(GError) err = NULL;
    g_autofree char *why = NULL;
    int uffd = uffd_open(&err);

    /* Without userfaultfd no daemon can run: a skip, not a failure. */
    if (uffd < 0) {
        fx.skip = g_strdup_printf("no userfaultfd here: %s", err->message);
        return;
    }
    close(uffd);
    if (!daemon_proc_start(&fx.dst, "dst", &why) ||
        !daemon_guest_spawn(&fx.incoming, &fx.dst, VM_NAME, args, &why)) {
        fx.broken = g_steal_pointer(&why);
    }
}

static void fixture_down(bool failed)
{
    if (failed) {
        daemon_proc_dump_log(&fx.dst, "dst", 60);
        daemon_proc_dump_log(&fx.src, "src", 60);
    }
    daemon_guest_stop(&fx.outgoing);
    daemon_guest_stop(&fx.incoming);
    daemon_proc_stop(&fx.src);
    daemon_proc_stop(&fx.dst);
    g_free(fx.skip);
    g_free(fx.broken);
}

static void add_cases(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(layout_cases); i++) {
        static const char *const names[] = {
            "two-regions", "no-regions",      "size",       "page-size",
            "backing",     "unknown-backing", "total-bytes"};
        g_autofree char *path =
            g_strdup_printf("/hostile/layout/%s", names[layout_cases[i].bad]);

        g_test_add_data_func(path, &layout_cases[i], test_layout_mismatch);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(frame_cases); i++) {
        g_autofree char *path =
            g_strdup_printf("/hostile/frame/%s", frame_cases[i].name);

        g_test_add_data_func(path, &frame_cases[i], test_bad_frame);
    }
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_test_set_nonfatal_assertions();
    g_test_add_func("/hostile/raw/garbage", test_raw_garbage);
    g_test_add_func("/hostile/raw/truncated-header", test_raw_truncated_header);
    g_test_add_func("/hostile/raw/truncated-hello", test_raw_truncated_hello);
    g_test_add_func("/hostile/raw/undecodable", test_raw_undecodable);
    g_test_add_func("/hostile/raw/unknown-message", test_raw_unknown_message);
    g_test_add_func("/hostile/raw/unknown-frame-type",
                    test_raw_unknown_frame_type);
    g_test_add_func("/hostile/raw/wrong-version", test_raw_wrong_version);
    g_test_add_func("/hostile/raw/oversized", test_raw_oversized);
    g_test_add_func("/hostile/raw/not-hello", test_raw_not_hello);
    g_test_add_func("/hostile/hello/version", test_hello_version);
    g_test_add_func("/hostile/hello/transport", test_hello_transport);
    g_test_add_func("/hostile/hello/unknown-vm", test_hello_unknown_vm);
    g_test_add_func("/hostile/hello/vm-still-attaching",
                    test_hello_vm_still_attaching);
    g_test_add_func("/hostile/control/vm-still-attaching",
                    test_control_vm_still_attaching);
    g_test_add_func("/hostile/hello/short-id", test_hello_short_id);
    g_test_add_func("/hostile/hello/busy", test_hello_busy);
    g_test_add_func("/hostile/data/unknown-id", test_data_unknown_id);
    g_test_add_func("/hostile/data/ended-id", test_data_ended_id);
    g_test_add_func("/hostile/data/before-layout", test_data_before_layout);
    g_test_add_func("/hostile/data/duplicate", test_data_duplicate);
    g_test_add_func("/hostile/data/stream-out-of-range",
                    test_data_stream_out_of_range);
    g_test_add_func("/hostile/data/source-vanishes", test_data_source_vanishes);
    add_cases();
    g_test_add_func("/hostile/layout/out-of-order", test_layout_out_of_order);
    g_test_add_func("/hostile/layout/garbage", test_layout_garbage);
    g_test_add_func("/hostile/layout/truncated", test_layout_truncated);
    g_test_add_func("/hostile/switchover/garbage-state",
                    test_switchover_garbage_state);
    g_test_add_func("/hostile/switchover/empty-state",
                    test_switchover_empty_state);
    g_test_add_func("/hostile/switchover/page-on-control",
                    test_switchover_page_on_control);
    g_test_add_func("/hostile/switchover/out-of-order",
                    test_switchover_out_of_order);
    g_test_add_func("/hostile/frame/closes-channels",
                    test_bad_frame_closes_channels);
    g_test_add_func("/hostile/control/destination", test_control_dst);
    g_test_add_func("/hostile/control/source", test_control_src);
    /* Last: GTest runs a suite's own tests before its sub-suites. */
    g_test_add_func("/hostile/final/good-migration", test_good_migration);
    fixture_up();
    ret = g_test_run();
    fixture_down(ret != 0);
    return ret;
}
