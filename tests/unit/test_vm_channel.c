/* test_vm_channel.c - tests for daemon/vmm/vm_channel.h. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>

#include "attach.pb-c.h"
#include "vm_channel.h"

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    g_assert_nonnull(d);
    while (readdir(d)) {
        n++;
    }
    closedir(d);
    return n;
}

static void make_pair(int sv[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==,
                    0);
}

static int make_memfd(void)
{
    int fd = memfd_create("test_vm_channel", MFD_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;

    g_assert_cmpint(fstat(a, &sa), ==, 0);
    g_assert_cmpint(fstat(b, &sb), ==, 0);
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void header(uint8_t *h, uint32_t magic, uint32_t len, uint32_t type)
{
    magic = GUINT32_TO_LE(magic);
    len = GUINT32_TO_LE(len);
    type = GUINT32_TO_LE(type);
    memcpy(h, &magic, 4);
    memcpy(h + 4, &len, 4);
    memcpy(h + 8, &type, 4);
}

/* Write @len bytes with @nfds fds on the first byte. */
static void raw_send(int sock, const void *buf, size_t len, const int *fds,
                     size_t nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 64)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

    g_assert_cmpuint(nfds, <=, 64);
    if (nfds) {
        struct cmsghdr *c;

        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    g_assert_cmpint(sendmsg(sock, &msg, MSG_NOSIGNAL), ==, (ssize_t)len);
}

/*
 * Send @buf (with two memfds) and close the writer, then expect
 * vm_channel_recv() to fail with @code and a message containing @needle,
 * leaving no fd behind.
 */
static void expect_recv_error(const void *buf, size_t len, int code,
                              const char *needle)
{
    int before = count_open_fds();
    int sv[2], fds[2] = {make_memfd(), make_memfd()};
    struct vm_frame f;
    g_autoptr(GError) err = NULL;

    make_pair(sv);
    raw_send(sv[1], buf, len, fds, 2);
    close(fds[0]);
    close(fds[1]);
    close(sv[1]);
    g_assert_false(vm_channel_recv(sv[0], &f, &err));
    g_assert_error(err, G_IO_ERROR, code);
    if (!strstr(err->message, needle)) {
        g_error("message \"%s\" lacks \"%s\"", err->message, needle);
    }
    g_assert_cmpuint(f.nfds, ==, 0);
    g_assert_null(f.body);
    close(sv[0]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

static void test_parse_header(void)
{
    uint8_t h[VM_CHANNEL_HDR_LEN];
    enum vm_frame_type type;
    uint32_t len;
    g_autoptr(GError) err = NULL;

    /* The wire format is fixed: "PCAT" in ASCII, then LE length, type. */
    header(h, VM_CHANNEL_MAGIC, 0x01020304, VM_FRAME_REPLY);
    g_assert_cmpmem(h, 4, "PCAT", 4);
    g_assert_cmpuint(h[4], ==, 0x04);
    g_assert_cmpuint(h[8], ==, 3);

    header(h, VM_CHANNEL_MAGIC, VM_CHANNEL_MAX_LEN, VM_FRAME_COMMAND);
    g_assert_true(vm_channel_parse_header(h, &type, &len, &err));
    g_assert_no_error(err);
    g_assert_cmpint(type, ==, VM_FRAME_COMMAND);
    g_assert_cmpuint(len, ==, VM_CHANNEL_MAX_LEN);

    header(h, VM_CHANNEL_MAGIC + 1, 0, VM_FRAME_HELLO);
    g_assert_false(vm_channel_parse_header(h, &type, &len, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull(strstr(err->message, "bad frame magic 0x54414351"));
    g_clear_error(&err);

    header(h, VM_CHANNEL_MAGIC, 0, 0);
    g_assert_false(vm_channel_parse_header(h, &type, &len, &err));
    g_assert_nonnull(strstr(err->message, "unknown frame type 0"));
    g_clear_error(&err);

    header(h, VM_CHANNEL_MAGIC, 0, 4);
    g_assert_false(vm_channel_parse_header(h, &type, &len, &err));
    g_assert_nonnull(strstr(err->message, "unknown frame type 4"));
    g_clear_error(&err);

    header(h, VM_CHANNEL_MAGIC, VM_CHANNEL_MAX_LEN + 1, VM_FRAME_HELLO);
    g_assert_false(vm_channel_parse_header(h, &type, &len, &err));
    g_assert_nonnull(strstr(err->message, "exceeds the limit"));
}

static void test_round_trip_fds(void)
{
    int before = count_open_fds();
    int sv[2], fds[3] = {make_memfd(), make_memfd(), make_memfd()};
    Postcopy__Attach__Command cmd = POSTCOPY__ATTACH__COMMAND__INIT;
    Postcopy__Attach__Command *got;
    struct vm_frame f;
    g_autoptr(GError) err = NULL;

    make_pair(sv);
    cmd.id = 42;
    cmd.kind = POSTCOPY__ATTACH__COMMAND__KIND__RESUME;
    cmd.device_state.data = (uint8_t *)"state";
    cmd.device_state.len = 5;
    g_assert_true(
        vm_channel_send(sv[1], VM_FRAME_COMMAND, &cmd.base, fds, 3, &err));
    g_assert_no_error(err);
    g_assert_true(vm_channel_recv(sv[0], &f, &err));
    g_assert_no_error(err);
    g_assert_cmpint(f.type, ==, VM_FRAME_COMMAND);
    g_assert_cmpuint(f.len, ==, protobuf_c_message_get_packed_size(&cmd.base));
    g_assert_cmpuint(f.nfds, ==, 3);
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(f.fds[i], !=, fds[i]);
        g_assert_true(same_file(f.fds[i], fds[i]));
        g_assert_cmpint(fcntl(f.fds[i], F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    }
    got = postcopy__attach__command__unpack(NULL, f.len, f.body);
    g_assert_nonnull(got);
    g_assert_cmpuint(got->id, ==, 42);
    g_assert_cmpint(got->kind, ==, POSTCOPY__ATTACH__COMMAND__KIND__RESUME);
    g_assert_cmpmem(got->device_state.data, got->device_state.len, "state", 5);
    postcopy__attach__command__free_unpacked(got, NULL);
    vm_frame_clear(&f);
    g_assert_cmpuint(f.nfds, ==, 0);
    g_assert_null(f.body);

    /* Two frames back to back stay apart; the empty one has no body. */
    g_assert_true(vm_channel_send(sv[1], VM_FRAME_REPLY, NULL, NULL, 0, &err));
    g_assert_true(
        vm_channel_send(sv[1], VM_FRAME_HELLO, &cmd.base, fds, 1, &err));
    g_assert_true(vm_channel_recv(sv[0], &f, &err));
    g_assert_cmpint(f.type, ==, VM_FRAME_REPLY);
    g_assert_cmpuint(f.len, ==, 0);
    g_assert_cmpuint(f.nfds, ==, 0);
    vm_frame_clear(&f);
    g_assert_true(vm_channel_recv(sv[0], &f, &err));
    g_assert_cmpint(f.type, ==, VM_FRAME_HELLO);
    g_assert_cmpuint(f.nfds, ==, 1);
    vm_frame_clear(&f);

    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
    close(sv[0]);
    close(sv[1]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

struct big_send {
    int sock;
    Postcopy__Attach__Reply *msg;
    int fd;
    pthread_t thread;
    int started;
    gboolean ok;
};

static volatile sig_atomic_t signals_seen;

static void on_sigusr1(int sig)
{
    signals_seen++;
}

static gpointer big_sender(gpointer opaque)
{
    struct big_send *b = opaque;
    sigset_t usr1;

    /* GLib starts threads with every signal blocked. */
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    b->thread = pthread_self();
    g_atomic_int_set(&b->started, 1);
    b->ok = vm_channel_send(b->sock, VM_FRAME_REPLY, &b->msg->base, &b->fd, 1,
                            NULL);
    /* A failed send must fail the test, not leave the reader waiting. */
    shutdown(b->sock, SHUT_WR);
    return NULL;
}

/*
 * Bigger than the socket buffer, and the sender is hit by signals without
 * SA_RESTART while it blocks: sendmsg() returns short counts and EINTR,
 * and the frame must still arrive whole, with its fd exactly once.
 */
static void test_large_frame(void)
{
    struct sigaction sa = {.sa_handler = on_sigusr1}, old;
    size_t size = 8u << 20;
    g_autofree uint8_t *data = g_malloc(size);
    Postcopy__Attach__Reply reply = POSTCOPY__ATTACH__REPLY__INIT;
    Postcopy__Attach__Reply *got;
    struct big_send b = {.msg = &reply, .fd = make_memfd()};
    int sv[2], bufsz = 4096;
    struct vm_frame f;
    g_autoptr(GError) err = NULL;
    GThread *t;

    for (size_t i = 0; i < size; i++) {
        data[i] = i * 7 + (i >> 12);
    }
    reply.device_state.data = data;
    reply.device_state.len = size;
    make_pair(sv);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    b.sock = sv[1];
    g_assert_cmpint(sigaction(SIGUSR1, &sa, &old), ==, 0);
    signals_seen = 0;
    t = g_thread_new("sender", big_sender, &b);
    while (!g_atomic_int_get(&b.started)) {
        g_usleep(1000);
    }
    /* The sender cannot finish before we read: it is blocked in send. */
    for (int i = 0; i < 20; i++) {
        g_usleep(2000);
        pthread_kill(b.thread, SIGUSR1);
    }
    g_assert_true(vm_channel_recv(sv[0], &f, &err));
    g_assert_no_error(err);
    g_thread_join(t);
    sigaction(SIGUSR1, &old, NULL);
    g_assert_cmpint(signals_seen, >, 0);
    g_assert_true(b.ok);
    g_assert_cmpuint(f.nfds, ==, 1);
    g_assert_true(same_file(f.fds[0], b.fd));
    got = postcopy__attach__reply__unpack(NULL, f.len, f.body);
    g_assert_nonnull(got);
    g_assert_cmpmem(got->device_state.data, got->device_state.len, data, size);
    postcopy__attach__reply__free_unpacked(got, NULL);
    vm_frame_clear(&f);
    close(b.fd);
    close(sv[0]);
    close(sv[1]);
}

static void test_peer_closed(void)
{
    expect_recv_error("", 0, G_IO_ERROR_CONNECTION_CLOSED,
                      "peer closed the attach socket");
}

static void test_truncated_header(void)
{
    uint8_t h[VM_CHANNEL_HDR_LEN];

    header(h, VM_CHANNEL_MAGIC, 16, VM_FRAME_HELLO);
    expect_recv_error(h, 5, G_IO_ERROR_PARTIAL_INPUT,
                      "truncated frame (got 5 of 12 bytes)");
}

static void test_truncated_body(void)
{
    uint8_t buf[VM_CHANNEL_HDR_LEN + 50] = {0};

    header(buf, VM_CHANNEL_MAGIC, 100, VM_FRAME_HELLO);
    expect_recv_error(buf, sizeof(buf), G_IO_ERROR_PARTIAL_INPUT,
                      "truncated frame (got 62 of 112 bytes)");
}

static void test_bad_frames(void)
{
    uint8_t h[VM_CHANNEL_HDR_LEN];

    header(h, 0x12345678, 0, VM_FRAME_HELLO);
    expect_recv_error(h, sizeof(h), G_IO_ERROR_INVALID_DATA,
                      "bad frame magic 0x12345678");
    header(h, VM_CHANNEL_MAGIC, 0, 9);
    expect_recv_error(h, sizeof(h), G_IO_ERROR_INVALID_DATA,
                      "unknown frame type 9");
    header(h, VM_CHANNEL_MAGIC, UINT32_MAX, VM_FRAME_HELLO);
    expect_recv_error(h, sizeof(h), G_IO_ERROR_INVALID_DATA,
                      "frame length 4294967295 exceeds the limit");
}

static void test_too_many_fds(void)
{
    int before = count_open_fds();
    int n = VM_CHANNEL_MAX_FDS + 8, fds[VM_CHANNEL_MAX_FDS + 8];
    int sv[2], base = make_memfd();
    uint8_t h[VM_CHANNEL_HDR_LEN];
    struct vm_frame f;
    g_autoptr(GError) err = NULL;

    for (int i = 0; i < n; i++) {
        fds[i] = base;
    }
    make_pair(sv);
    header(h, VM_CHANNEL_MAGIC, 0, VM_FRAME_HELLO);
    raw_send(sv[1], h, sizeof(h), fds, n);
    g_assert_false(vm_channel_recv(sv[0], &f, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "more than 32 fds"));
    close(base);
    close(sv[0]);
    close(sv[1]);
    g_assert_cmpint(count_open_fds(), ==, before);

    /* The sender refuses too. */
    g_clear_error(&err);
    make_pair(sv);
    g_assert_false(vm_channel_send(sv[1], VM_FRAME_HELLO, NULL, fds, n, &err));
    g_assert_nonnull(strstr(err->message, "exceed the limit of 32"));
    close(sv[0]);
    close(sv[1]);
}

/* The limit holds for fds that come in pieces, not just in one batch. */
static void test_too_many_fds_in_pieces(void)
{
    int before = count_open_fds();
    int fds[20], sv[2], base = make_memfd();
    uint8_t h[VM_CHANNEL_HDR_LEN];
    struct vm_frame f;
    g_autoptr(GError) err = NULL;

    for (int i = 0; i < 20; i++) {
        fds[i] = base;
    }
    make_pair(sv);
    header(h, VM_CHANNEL_MAGIC, 0, VM_FRAME_HELLO);
    raw_send(sv[1], h, 6, fds, 20);
    raw_send(sv[1], h + 6, 6, fds, 20);
    g_assert_false(vm_channel_recv(sv[0], &f, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "more than 32 fds"));
    close(base);
    close(sv[0]);
    close(sv[1]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

static void test_send_to_closed_peer(void)
{
    int sv[2];
    g_autoptr(GError) err = NULL;

    make_pair(sv);
    close(sv[0]);
    /* MSG_NOSIGNAL: an error, not a SIGPIPE that kills the daemon. */
    g_assert_false(vm_channel_send(sv[1], VM_FRAME_REPLY, NULL, NULL, 0, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE);
    g_assert_nonnull(strstr(err->message, "send failed"));
    close(sv[1]);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vm_channel/parse-header", test_parse_header);
    g_test_add_func("/vm_channel/round-trip-fds", test_round_trip_fds);
    g_test_add_func("/vm_channel/large-frame", test_large_frame);
    g_test_add_func("/vm_channel/peer-closed", test_peer_closed);
    g_test_add_func("/vm_channel/truncated-header", test_truncated_header);
    g_test_add_func("/vm_channel/truncated-body", test_truncated_body);
    g_test_add_func("/vm_channel/bad-frames", test_bad_frames);
    g_test_add_func("/vm_channel/too-many-fds", test_too_many_fds);
    g_test_add_func("/vm_channel/too-many-fds-in-pieces",
                    test_too_many_fds_in_pieces);
    g_test_add_func("/vm_channel/send-to-closed-peer",
                    test_send_to_closed_peer);
    return g_test_run();
}
