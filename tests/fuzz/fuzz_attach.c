/*
 * fuzz_attach.c - libFuzzer target: the attach handshake (daemon/vmm/attach.h),
 * both forms, with real file descriptors.
 *
 * Input: one byte saying which fds came with the message (bits 0-2: how
 * many, at most 1 + FUZZ_MEMFDS; bit 3: fds[0] is -1), then the bytes on
 * the attach socket.  As attach_recv() does, a message starting with '[', '{'
 * or whitespace goes to attach_parse_firecracker(); anything else is a
 * vm_channel frame as recv_hello() takes it: vm_channel_parse_header() on
 * 12 bytes, a HELLO type, then attach_parse_hello() on the body (what the
 * header announces, as far as the input goes: a packed Hello).
 *
 * The fds are fresh dups, per run, of a uffd (an eventfd where userfaultfd
 * is not allowed) and FUZZ_MEMFDS memfds.  Beyond the sanitizers, the
 * target checks attach.h's contract: on failure an INVALID_DATA error and
 * every fd still open and the caller's; on success the uffd is fds[0],
 * each file region has an open fd of its own, the fds no region uses are
 * closed, the table is sorted, aligned and disjoint, and
 * attach_info_clear() closes everything.  No fd may leak across runs.
 */
#include "attach.h"
#include "vm_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <gio/gio.h>

#define FUZZ_MEMFDS 4
#define FUZZ_FDS    (1 + FUZZ_MEMFDS)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every fd a run may create is below lowest free + FD_WINDOW. */
#define FD_WINDOW (2 * FUZZ_FDS + REGION_MAX + 8)

static int base_fds[FUZZ_FDS];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_attach: %s\n", what);
    abort();
}

static bool fd_open(int fd)
{
    return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

/* Which fds from the lowest free one on are open: before and after a run. */
static void fd_snapshot(bool open[FD_WINDOW], int *first)
{
    int fd = fcntl(base_fds[0], F_DUPFD_CLOEXEC, 0);

    if (fd < 0) {
        die("cannot dup");
    }
    close(fd);
    *first = fd;
    for (int i = 0; i < FD_WINDOW; i++) {
        open[i] = fd_open(fd + i);
    }
}

/*
 * A GLib critical (g_return_if_fail) is a programming error: crash, with
 * abort() so that libFuzzer keeps the input (GLib's own fatal path raises
 * SIGTRAP, which it does not catch).  Messages and warnings are dropped.
 */
static void log_handler(const char *domain, GLogLevelFlags level,
                        const char *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
        fprintf(stderr, "%s: %s\n", domain ? domain : "GLib", message);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct attach_info info;
    g_autoptr(GError) err = NULL;
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

    /* Only ownership matters here: any fd can stand in for the uffd. */
    base_fds[0] = fd >= 0 ? fd : eventfd(0, EFD_CLOEXEC);
    for (int i = 1; i < FUZZ_FDS; i++) {
        base_fds[i] = memfd_create("fuzz_attach", MFD_CLOEXEC);
        if (base_fds[i] < 0 || ftruncate(base_fds[i], 1 << 20) < 0) {
            die("memfd_create failed");
        }
    }
    if (base_fds[0] < 0) {
        die("no uffd or eventfd");
    }
    /* Warm up json-glib's types, so that no first-use allocation looks
     * like a leak of the first input that reaches the parser. */
    attach_info_init(&info);
    if (attach_parse_firecracker("[]", 2, base_fds, 1, &info, &err)) {
        die("an empty Firecracker handshake was accepted");
    }
    g_log_set_default_handler(log_handler, NULL);
    return 0;
}

static void check_error(GError *err)
{
    /* Not one line: json-glib quotes the bad token, newlines and all. */
    if (!err || !err->message[0]) {
        die("failed without an error message");
    }
    /* Only a failed dup (out of fds) may be anything but INVALID_DATA. */
    if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA) &&
        !strstr(err->message, "cannot dup")) {
        fprintf(stderr, "fuzz_attach: unexpected error: %s\n", err->message);
        abort();
    }
    g_error_free(err);
}

static void check_table(const struct attach_info *info, bool firecracker)
{
    const struct region_table *t = &info->regions;

    if (t->n == 0 || t->n > REGION_MAX) {
        die("accepted a table of no or too many regions");
    }
    if (!memchr(info->vm_name, '\0', sizeof(info->vm_name))) {
        die("vm_name is not terminated");
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct region *r = &t->regions[i];
        uint64_t mask = r->page_size - 1;

        if (r->id != i || r->size == 0 || !r->page_size ||
            (r->page_size & mask) || ((r->base | r->size | r->offset) & mask) ||
            r->size > UINT64_MAX - r->base) {
            die("accepted a region with a bad geometry");
        }
        if (i > 0 &&
            t->regions[i - 1].base + t->regions[i - 1].size > r->base) {
            die("accepted regions out of order or overlapping");
        }
        if ((r->kind == BACKING_ANON) != (r->fd < 0)) {
            die("a region's fd does not match its backing");
        }
        if (firecracker && r->kind != BACKING_ANON) {
            die("a Firecracker region that is not anonymous");
        }
        if (r->fd < 0) {
            continue;
        }
        if (!fd_open(r->fd) || r->fd == info->uffd) {
            die("a region's fd is closed or is the uffd");
        }
        for (size_t j = 0; j < i; j++) {
            if (t->regions[j].fd == r->fd) {
                die("two regions own the same fd");
            }
        }
    }
}

static void accepted(struct attach_info *info, const int *fds, size_t nfds,
                     bool firecracker)
{
    int owned[1 + REGION_MAX];
    size_t nowned = 0;

    if (info->uffd != fds[0] || !fd_open(info->uffd)) {
        die("the uffd is not fds[0], or was closed");
    }
    if (info->firecracker != firecracker) {
        die("the form is misreported");
    }
    check_table(info, firecracker);
    /* Memory fds no region kept belong to @info now: closed. */
    for (size_t i = 1; i < nfds; i++) {
        bool used = false;

        for (size_t j = 0; j < info->regions.n; j++) {
            used |= info->regions.regions[j].fd == fds[i];
        }
        if (!used && fd_open(fds[i])) {
            die("an unused memory fd was left open");
        }
    }
    owned[nowned++] = info->uffd;
    for (size_t j = 0; j < info->regions.n; j++) {
        if (info->regions.regions[j].fd >= 0) {
            owned[nowned++] = info->regions.regions[j].fd;
        }
    }
    attach_info_clear(info);
    if (info->uffd != -1 || info->regions.n != 0) {
        die("attach_info_clear left something behind");
    }
    for (size_t i = 0; i < nowned; i++) {
        if (fd_open(owned[i])) {
            die("attach_info_clear left an fd open");
        }
    }
}

static void refused(GError *err, const struct attach_info *info, const int *fds,
                    size_t nfds)
{
    check_error(err);
    if (info->uffd != -1 || info->regions.n != 0) {
        die("a failed parse filled @info");
    }
    for (size_t i = 0; i < nfds; i++) {
        if (fds[i] >= 0 && close(fds[i]) < 0) {
            die("a failed parse closed one of the caller's fds");
        }
    }
}

/* recv_hello() without the socket: a frame header, then the body. */
static bool parse_hello_frame(const uint8_t *data, size_t size, const int *fds,
                              size_t nfds, struct attach_info *info,
                              GError **err)
{
    enum vm_frame_type type;
    uint32_t len;

    if (size < VM_CHANNEL_HDR_LEN) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "(fuzz) truncated frame header");
        return false;
    }
    if (!vm_channel_parse_header(data, &type, &len, err)) {
        return false;
    }
    if (type != VM_FRAME_HELLO) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "(fuzz) not a hello frame");
        return false;
    }
    data += VM_CHANNEL_HDR_LEN;
    size -= VM_CHANNEL_HDR_LEN;
    return attach_parse_hello(data, MIN(len, size), fds, nfds, info, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct attach_info info;
    GError *err = NULL;
    int fds[FUZZ_FDS];
    size_t nfds;
    bool firecracker, ok;
    bool before[FD_WINDOW], after[FD_WINDOW];
    int first_before, first_after;

    if (size < 1) {
        return 0;
    }
    fd_snapshot(before, &first_before);
    nfds = MIN(data[0] & 7u, (unsigned)FUZZ_FDS);
    for (size_t i = 0; i < nfds; i++) {
        fds[i] = fcntl(base_fds[i], F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) {
            die("cannot dup");
        }
    }
    if (nfds && (data[0] & 8)) {
        close(fds[0]);
        fds[0] = -1;
    }
    data++;
    size--;
    attach_info_init(&info);
    firecracker =
        size && (data[0] == '[' || data[0] == '{' || g_ascii_isspace(data[0]));
    if (firecracker) {
        ok = attach_parse_firecracker((const char *)data, size, fds, nfds,
                                      &info, &err);
    } else {
        ok = parse_hello_frame(data, size, fds, nfds, &info, &err);
    }
    if (ok) {
        if (err) {
            die("accepted with an error set");
        }
        accepted(&info, fds, nfds, firecracker);
    } else {
        refused(err, &info, fds, nfds);
    }
    fd_snapshot(after, &first_after);
    if (first_after != first_before || memcmp(before, after, sizeof(after))) {
        die("an fd leaked or was closed");
    }
    return 0;
}
