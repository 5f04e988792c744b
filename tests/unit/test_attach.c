/* test_attach.c - tests for daemon/vmm/attach.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <gio/gio.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>

#include "attach.h"
#include "attach.pb-c.h"
#include "vm_channel.h"

#define PAGE    4096ull
#define BASE    0x7f0000000000ull
#define BASE_S  "139637976727552" /* BASE in decimal */
#define NREGION 3

/* ---- helpers ---- */

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

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int make_memfd(uint64_t size)
{
    int fd = memfd_create("test_attach", MFD_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    return fd;
}

/* A stand-in for the uffd where only fd ownership matters. */
static int make_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

/* A real uffd, or -1 after g_test_skip(). */
static int open_uffd(void)
{
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        g_autofree char *why =
            g_strdup_printf("userfaultfd: %s", g_strerror(errno));
        g_test_skip(why);
    }
    return fd;
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;

    g_assert_cmpint(fstat(a, &sa), ==, 0);
    g_assert_cmpint(fstat(b, &sb), ==, 0);
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/*
 * All uffds share one anonymous inode, so fstat cannot tell them apart:
 * after UFFDIO_API through @a, a second UFFDIO_API fails with EINVAL
 * through @b only if both name the same uffd.
 */
static bool same_uffd(int a, int b)
{
    struct uffdio_api api = {.api = UFFD_API};

    g_assert_cmpint(ioctl(a, UFFDIO_API, &api), ==, 0);
    api = (struct uffdio_api){.api = UFFD_API};
    return ioctl(b, UFFDIO_API, &api) < 0 && errno == EINVAL;
}

static void make_pair(int sv[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==,
                    0);
}

/* Write @len bytes with @nfds fds on the first byte. */
static void raw_send(int sock, const void *buf, size_t len, const int *fds,
                     size_t nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

    g_assert_cmpuint(nfds, <=, 8);
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

static void header(uint8_t *h, uint32_t magic, uint32_t len, uint32_t type)
{
    magic = GUINT32_TO_LE(magic);
    len = GUINT32_TO_LE(len);
    type = GUINT32_TO_LE(type);
    memcpy(h, &magic, 4);
    memcpy(h + 4, &len, 4);
    memcpy(h + 8, &type, 4);
}

static void assert_message(const GError *err, const char *needle)
{
    g_assert_nonnull(err);
    if (!strstr(err->message, needle)) {
        g_error("message \"%s\" lacks \"%s\"", err->message, needle);
    }
    g_assert_null(strchr(err->message, '\n'));
}

static void assert_info_empty(const struct attach_info *info)
{
    g_assert_cmpint(info->uffd, ==, -1);
    g_assert_cmpuint(info->regions.n, ==, 0);
}

/* ---- hello messages built by hand ---- */

/*
 * A good hello: two shmem regions on the same memfd (fd_index 1) and an
 * anonymous one; fds are { uffd, memfd, unused memfd }.
 */
struct hello_fx {
    Postcopy__Attach__Hello h;
    Postcopy__Attach__Region r[NREGION];
    Postcopy__Attach__Region *rp[REGION_MAX + 1];
    Postcopy__Attach__Region extra;
    int fds[3];
};

static void hello_fx_init(struct hello_fx *fx)
{
    fx->h = (Postcopy__Attach__Hello)POSTCOPY__ATTACH__HELLO__INIT;
    fx->h.version = ATTACH_VERSION;
    fx->h.vm_name = (char *)"vm0";
    fx->h.pid = getpid();
    fx->h.uffd_features = 0;
    for (int i = 0; i < NREGION; i++) {
        fx->r[i] = (Postcopy__Attach__Region)POSTCOPY__ATTACH__REGION__INIT;
        fx->r[i].host_addr = BASE + i * 0x100000;
        fx->r[i].size = 16 * PAGE;
        fx->r[i].offset = i * 16 * PAGE;
        fx->r[i].page_size = PAGE;
        fx->r[i].backing = POSTCOPY__ATTACH__BACKING__BACKING_SHMEM;
        fx->r[i].fd_index = 1;
        fx->rp[i] = &fx->r[i];
    }
    fx->r[2].backing = POSTCOPY__ATTACH__BACKING__BACKING_ANON;
    fx->r[2].fd_index = -1;
    fx->r[2].offset = 0;
    fx->h.n_regions = NREGION;
    fx->h.regions = fx->rp;
    fx->fds[0] = make_eventfd();
    fx->fds[1] = make_memfd(64 * PAGE);
    fx->fds[2] = make_memfd(PAGE);
}

static void hello_fx_close(struct hello_fx *fx)
{
    for (int i = 0; i < 3; i++) {
        close(fx->fds[i]);
    }
}

static uint8_t *pack_hello(const Postcopy__Attach__Hello *h, size_t *len)
{
    uint8_t *buf;

    *len = postcopy__attach__hello__get_packed_size(h);
    buf = g_malloc(*len + 1);
    postcopy__attach__hello__pack(h, buf);
    return buf;
}

/* attach_parse_hello() must fail with @needle and leave every fd open. */
static void expect_hello_error(struct hello_fx *fx, size_t nfds,
                               const char *needle)
{
    struct attach_info info;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = NULL;
    size_t len;

    buf = pack_hello(&fx->h, &len);
    attach_info_init(&info);
    g_assert_false(attach_parse_hello(buf, len, fx->fds, nfds, &info, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    assert_message(err, needle);
    assert_info_empty(&info);
    for (int i = 0; i < 3; i++) {
        g_assert_true(fd_is_open(fx->fds[i]));
    }
}

/* One rejection per run, on a fresh fixture, counting fds around it. */
typedef void (*hello_mutator)(struct hello_fx *fx, size_t *nfds);

static void run_hello_case(hello_mutator mutate, const char *needle)
{
    int before = count_open_fds();
    struct hello_fx fx;
    size_t nfds = 3;

    hello_fx_init(&fx);
    mutate(&fx, &nfds);
    expect_hello_error(&fx, nfds, needle);
    hello_fx_close(&fx);
    g_assert_cmpint(count_open_fds(), ==, before);
}

static void m_version(struct hello_fx *fx, size_t *nfds)
{
    fx->h.version = 2;
}

static void m_no_fds(struct hello_fx *fx, size_t *nfds)
{
    *nfds = 0;
}

static void m_fd_index_uffd(struct hello_fx *fx, size_t *nfds)
{
    fx->r[1].fd_index = 0;
}

static void m_fd_index_high(struct hello_fx *fx, size_t *nfds)
{
    fx->r[0].fd_index = 3;
}

static void m_fd_index_only_uffd(struct hello_fx *fx, size_t *nfds)
{
    *nfds = 1;
}

static void m_fd_index_file_minus1(struct hello_fx *fx, size_t *nfds)
{
    fx->r[0].fd_index = -1;
}

static void m_fd_index_anon(struct hello_fx *fx, size_t *nfds)
{
    fx->r[2].fd_index = 2;
}

static void m_overlap(struct hello_fx *fx, size_t *nfds)
{
    fx->r[1].host_addr = fx->r[0].host_addr + 8 * PAGE;
}

static void m_misaligned(struct hello_fx *fx, size_t *nfds)
{
    fx->r[0].host_addr += 0x10;
}

static void m_misaligned_offset(struct hello_fx *fx, size_t *nfds)
{
    fx->r[1].offset = 100;
}

static void m_zero_size(struct hello_fx *fx, size_t *nfds)
{
    fx->r[2].size = 0;
}

static void m_zero_regions(struct hello_fx *fx, size_t *nfds)
{
    fx->h.n_regions = 0;
}

static void m_too_many_regions(struct hello_fx *fx, size_t *nfds)
{
    fx->extra = fx->r[2];
    for (int i = 0; i < REGION_MAX + 1; i++) {
        fx->rp[i] = &fx->extra;
    }
    fx->h.n_regions = REGION_MAX + 1;
}

static void m_backing(struct hello_fx *fx, size_t *nfds)
{
    fx->r[0].backing = POSTCOPY__ATTACH__BACKING__BACKING_UNSPECIFIED;
}

static void m_hugetlb_page(struct hello_fx *fx, size_t *nfds)
{
    fx->r[0].backing = POSTCOPY__ATTACH__BACKING__BACKING_HUGETLBFS;
}

static void m_pid(struct hello_fx *fx, size_t *nfds)
{
    fx->h.pid = 0;
}

static void test_hello_rejects(void)
{
    run_hello_case(m_version, "attach: unsupported version 2 (expected 1)");
    run_hello_case(m_no_fds, "hello carries no uffd");
    run_hello_case(m_fd_index_uffd, "region 1: fd_index 0 names no memory fd");
    run_hello_case(m_fd_index_high, "region 0: fd_index 3 names no memory fd");
    run_hello_case(m_fd_index_only_uffd, "fd_index 1 names no memory fd");
    run_hello_case(m_fd_index_file_minus1, "fd_index -1 names no memory fd");
    run_hello_case(m_fd_index_anon,
                   "anonymous region has fd_index 2 (expected -1)");
    run_hello_case(m_overlap, "overlaps region");
    run_hello_case(m_misaligned, "not aligned to the page size 4096");
    run_hello_case(m_misaligned_offset, "not aligned");
    run_hello_case(m_zero_size, "size is 0");
    run_hello_case(m_zero_regions, "hello has no regions");
    run_hello_case(m_too_many_regions, "hello has 65 regions (limit 64)");
    run_hello_case(m_backing, "region 0: unknown backing 0");
    run_hello_case(m_hugetlb_page, "not valid for hugetlbfs");
    run_hello_case(m_pid, "invalid pid 0");
}

/* Names go into logs, query-vms and session files: printable UTF-8. */
static void test_hello_names(void)
{
    g_autofree char *longest = g_strnfill(ATTACH_NAME_MAX - 1, 'a');
    g_autofree char *too_long = g_strnfill(ATTACH_NAME_MAX, 'a');
    const struct {
        const char *name;
        const char *needle; /* NULL: accepted */
    } cases[] = {
        {"vm-1", NULL},
        {"caf\xc3\xa9 du coin", NULL},
        {longest, NULL},
        {"", "the VM name is empty"},
        {too_long, "the VM name is 64 bytes long (at most 63)"},
        {"bad\xff", "not valid UTF-8"},
        {"vm1\npostcopyd: info: forged", "holds a control character"},
        {"tab\there", "holds a control character"},
        {"bidi\xe2\x80\xae", "holds a control character"},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct hello_fx fx;
        struct attach_info info;
        g_autoptr(GError) err = NULL;
        g_autofree uint8_t *buf = NULL;
        size_t len;

        hello_fx_init(&fx);
        fx.h.vm_name = (char *)cases[i].name;
        if (cases[i].needle) {
            expect_hello_error(&fx, 3, cases[i].needle);
            hello_fx_close(&fx);
            continue;
        }
        buf = pack_hello(&fx.h, &len);
        attach_info_init(&info);
        g_assert_true(attach_parse_hello(buf, len, fx.fds, 3, &info, &err));
        g_assert_no_error(err);
        g_assert_cmpstr(info.vm_name, ==, cases[i].name);
        /* The uffd and the used memfd are info's now; fds[2] is closed. */
        fx.fds[0] = fx.fds[1] = fx.fds[2] = -1;
        attach_info_clear(&info);
    }
}

static void test_hello_malformed(void)
{
    static const uint8_t junk[][6] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* varint never ends */
        {0x12, 0x7f, 'a', 'b', 0, 0},         /* string past the end */
        {0x0f, 0, 0, 0, 0, 0},                /* wire type 7 */
    };
    int before = count_open_fds();
    int fds[1] = {make_eventfd()};

    for (size_t i = 0; i < G_N_ELEMENTS(junk); i++) {
        struct attach_info info;
        g_autoptr(GError) err = NULL;

        attach_info_init(&info);
        g_assert_false(
            attach_parse_hello(junk[i], sizeof(junk[i]), fds, 1, &info, &err));
        assert_message(err, "attach: malformed hello");
        assert_info_empty(&info);
        g_assert_true(fd_is_open(fds[0]));
    }
    close(fds[0]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

/* Shared memfds are dup'd per region; unused memory fds are closed. */
static void test_hello_fd_ownership(void)
{
    int before = count_open_fds();
    struct hello_fx fx;
    struct attach_info info;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = NULL;
    const struct region *r0, *r1, *r2;
    size_t len;

    hello_fx_init(&fx);
    fx.h.incoming = true;
    fx.h.uffd_features = 0x4321;
    fx.r[0].name = (char *)"low";
    buf = pack_hello(&fx.h, &len);
    attach_info_init(&info);
    g_assert_true(attach_parse_hello(buf, len, fx.fds, 3, &info, &err));
    g_assert_no_error(err);

    g_assert_cmpstr(info.vm_name, ==, "vm0");
    g_assert_cmpint(info.pid, ==, getpid());
    g_assert_true(info.incoming);
    g_assert_false(info.firecracker);
    g_assert_cmphex(info.uffd_features, ==, 0x4321);
    g_assert_cmpint(info.uffd, ==, fx.fds[0]);
    g_assert_cmpuint(info.regions.n, ==, 3);
    r0 = region_table_lookup(&info.regions, BASE);
    r1 = region_table_lookup(&info.regions, BASE + 0x100000);
    r2 = region_table_lookup(&info.regions, BASE + 0x200000);
    g_assert_nonnull(r0);
    g_assert_nonnull(r1);
    g_assert_nonnull(r2);
    g_assert_cmpstr(r0->name, ==, "low");
    g_assert_cmpint(r0->kind, ==, BACKING_SHMEM);
    g_assert_cmphex(r1->offset, ==, 16 * PAGE);
    g_assert_cmpint(r2->kind, ==, BACKING_ANON);
    g_assert_cmpint(r2->fd, ==, -1);
    /* One region took the memfd itself, the other owns a dup. */
    g_assert_true(r0->fd == fx.fds[1] || r1->fd == fx.fds[1]);
    g_assert_cmpint(r0->fd, !=, r1->fd);
    g_assert_true(same_file(r0->fd, r1->fd));
    /* Nobody named fds[2]: it was closed. */
    g_assert_false(fd_is_open(fx.fds[2]));

    attach_info_clear(&info);
    assert_info_empty(&info);
    g_assert_false(fd_is_open(fx.fds[0]));
    g_assert_false(fd_is_open(fx.fds[1]));
    g_assert_cmpint(count_open_fds(), ==, before);
}

/* ---- the whole handshake over a socket ---- */

static void test_hello_round_trip(void)
{
    int before = count_open_fds();
    int uffd = open_uffd();
    int mem_a, mem_b, sv[2];
    uint8_t *map_a, *map_b, *anon;
    struct region send[4];
    struct attach_info info;
    g_autoptr(GError) err = NULL;
    const struct region *got;
    struct region *alias_r;

    if (uffd < 0) {
        return;
    }
    mem_a = make_memfd(32 * PAGE);
    mem_b = make_memfd(8 * PAGE);
    map_a = mmap(NULL, 32 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mem_a, 0);
    map_b = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mem_b, 0);
    anon = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(map_a != MAP_FAILED && map_b != MAP_FAILED &&
                  anon != MAP_FAILED);

    /* Deliberately not in address order; mem_a backs two regions. */
    send[0] = (struct region){.kind = BACKING_SHMEM,
                              .base = (uintptr_t)map_a + 16 * PAGE,
                              .size = 16 * PAGE,
                              .offset = 16 * PAGE,
                              .page_size = PAGE,
                              .fd = mem_a,
                              .name = "ram-hi"};
    send[1] = (struct region){.kind = BACKING_ANON,
                              .base = (uintptr_t)anon,
                              .size = 4 * PAGE,
                              .page_size = PAGE,
                              .fd = -1,
                              .name = "rom"};
    send[2] = (struct region){.kind = BACKING_SHMEM,
                              .base = (uintptr_t)map_a,
                              .size = 16 * PAGE,
                              .page_size = PAGE,
                              .fd = mem_a,
                              .name = "ram-lo"};
    send[3] = (struct region){.kind = BACKING_SHMEM,
                              .base = (uintptr_t)map_b,
                              .size = 8 * PAGE,
                              .page_size = PAGE,
                              .fd = mem_b,
                              .name = "vram"};

    make_pair(sv);
    g_assert_true(
        attach_send_hello(sv[1], "vm-test", true, uffd, 0x1234, send, 4, &err));
    g_assert_no_error(err);
    attach_info_init(&info);
    g_assert_true(attach_recv(sv[0], &info, &err));
    g_assert_no_error(err);

    g_assert_cmpstr(info.vm_name, ==, "vm-test");
    g_assert_cmpint(info.pid, ==, getpid());
    g_assert_true(info.incoming);
    g_assert_false(info.firecracker);
    g_assert_cmphex(info.uffd_features, ==, 0x1234);
    g_assert_cmpuint(info.regions.n, ==, 4);
    g_assert_cmpuint(region_table_bytes(&info.regions), ==, 44 * PAGE);
    for (size_t i = 0; i < info.regions.n; i++) {
        g_assert_cmpuint(info.regions.regions[i].id, ==, i);
        if (i > 0) {
            g_assert_cmphex(info.regions.regions[i - 1].base, <,
                            info.regions.regions[i].base);
        }
    }
    for (int i = 0; i < 4; i++) {
        got = region_table_lookup(&info.regions, send[i].base);
        g_assert_nonnull(got);
        g_assert_cmphex(got->base, ==, send[i].base);
        g_assert_cmphex(got->size, ==, send[i].size);
        g_assert_cmphex(got->offset, ==, send[i].offset);
        g_assert_cmpuint(got->page_size, ==, PAGE);
        g_assert_cmpint(got->kind, ==, send[i].kind);
        g_assert_cmpstr(got->name, ==, send[i].name);
        if (send[i].kind == BACKING_ANON) {
            g_assert_cmpint(got->fd, ==, -1);
            continue;
        }
        g_assert_cmpint(got->fd, !=, send[i].fd);
        g_assert_true(same_file(got->fd, send[i].fd));
    }
    g_assert_cmpint(region_table_lookup(&info.regions, send[0].base)->fd, !=,
                    region_table_lookup(&info.regions, send[2].base)->fd);

    /* Page cache written through the daemon's alias shows in the VMM. */
    alias_r = (struct region *)region_table_lookup(&info.regions, send[0].base);
    g_assert_true(region_map_alias(alias_r, &err));
    g_assert_no_error(err);
    memcpy(alias_r->alias + PAGE, "hello", 5);
    g_assert_cmpmem(map_a + 17 * PAGE, 5, "hello", 5);

    g_assert_cmpint(info.uffd, !=, uffd);
    g_assert_true(same_uffd(info.uffd, uffd));

    attach_info_clear(&info);
    munmap(map_a, 32 * PAGE);
    munmap(map_b, 8 * PAGE);
    munmap(anon, 4 * PAGE);
    close(mem_a);
    close(mem_b);
    close(uffd);
    close(sv[0]);
    close(sv[1]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

static void test_send_hello_limits(void)
{
    struct region r[REGION_MAX + 1];
    int sv[2], mem[VM_CHANNEL_MAX_FDS];
    g_autoptr(GError) err = NULL;

    for (int i = 0; i < VM_CHANNEL_MAX_FDS; i++) {
        mem[i] = make_memfd(PAGE);
        r[i] = (struct region){.kind = BACKING_SHMEM,
                               .base = BASE + i * PAGE,
                               .size = PAGE,
                               .page_size = PAGE,
                               .fd = mem[i]};
    }
    make_pair(sv);
    /* 32 memfds plus the uffd do not fit in one hello. */
    g_assert_false(attach_send_hello(sv[1], "x", false, mem[0], 0, r,
                                     VM_CHANNEL_MAX_FDS, &err));
    assert_message(err, "need more than 32 fds");
    g_clear_error(&err);
    g_assert_false(attach_send_hello(sv[1], "x", false, mem[0], 0, r,
                                     REGION_MAX + 1, &err));
    assert_message(err, "65 regions exceed the limit of 64");
    for (int i = 0; i < VM_CHANNEL_MAX_FDS; i++) {
        close(mem[i]);
    }
    close(sv[0]);
    close(sv[1]);
}

/*
 * Send @buf with a uffd stand-in and a memfd, close the writer, and expect
 * attach_recv() to fail with @needle and to keep no fd.
 */
static void expect_recv_error(const void *buf, size_t len, size_t nfds,
                              const char *needle)
{
    int before = count_open_fds();
    int sv[2], fds[2] = {make_eventfd(), make_memfd(PAGE)};
    struct attach_info info;
    g_autoptr(GError) err = NULL;

    make_pair(sv);
    if (len) {
        raw_send(sv[1], buf, len, fds, nfds);
    }
    close(fds[0]);
    close(fds[1]);
    close(sv[1]);
    attach_info_init(&info);
    g_assert_false(attach_recv(sv[0], &info, &err));
    assert_message(err, needle);
    assert_info_empty(&info);
    close(sv[0]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

/* A frame: header for @type around @body. */
static uint8_t *frame(uint32_t magic, uint32_t type, const void *body,
                      size_t len, uint32_t claimed, size_t *out)
{
    uint8_t *buf = g_malloc(VM_CHANNEL_HDR_LEN + len);

    header(buf, magic, claimed, type);
    memcpy(buf + VM_CHANNEL_HDR_LEN, body, len);
    *out = VM_CHANNEL_HDR_LEN + len;
    return buf;
}

static uint8_t *hello_frame(const Postcopy__Attach__Hello *h, size_t *out)
{
    g_autofree uint8_t *body = NULL;
    size_t len;

    body = pack_hello(h, &len);
    return frame(VM_CHANNEL_MAGIC, VM_FRAME_HELLO, body, len, len, out);
}

static void test_recv_bad_frames(void)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    struct hello_fx fx;
    g_autofree uint8_t *f1 = NULL, *f2 = NULL, *f3 = NULL, *f4 = NULL;
    g_autofree uint8_t *f5 = NULL, *f6 = NULL;
    Postcopy__Attach__Command cmd = POSTCOPY__ATTACH__COMMAND__INIT;
    uint8_t cmd_body[64];
    size_t n, cmd_len;

    expect_recv_error(NULL, 0, 0, "peer closed the attach socket");

    f1 = frame(VM_CHANNEL_MAGIC, VM_FRAME_HELLO, junk, sizeof(junk),
               sizeof(junk), &n);
    expect_recv_error(f1, n, 2, "attach: malformed hello");
    /* Half a header, then half a body. */
    expect_recv_error(f1, 6, 2, "truncated frame (got 6 of 12 bytes)");
    f2 = frame(VM_CHANNEL_MAGIC, VM_FRAME_HELLO, junk, sizeof(junk), 10, &n);
    expect_recv_error(f2, n, 2, "truncated frame (got 17 of 22 bytes)");
    f3 = frame(0x41414141, VM_FRAME_HELLO, junk, sizeof(junk), 5, &n);
    expect_recv_error(f3, n, 2, "bad frame magic 0x41414141");
    f4 = frame(VM_CHANNEL_MAGIC, VM_FRAME_HELLO, junk, sizeof(junk),
               VM_CHANNEL_MAX_LEN + 1, &n);
    expect_recv_error(f4, n, 2, "exceeds the limit");

    cmd.id = 1;
    cmd_len = postcopy__attach__command__pack(&cmd, cmd_body);
    f5 = frame(VM_CHANNEL_MAGIC, VM_FRAME_COMMAND, cmd_body, cmd_len, cmd_len,
               &n);
    expect_recv_error(f5, n, 2, "expected a hello frame, got frame type 2");

    hello_fx_init(&fx);
    fx.h.version = 7;
    f6 = hello_frame(&fx.h, &n);
    expect_recv_error(f6, n, 2, "unsupported version 7 (expected 1)");
    hello_fx_close(&fx);
}

/* The socket tells the real pid; a hello that lies about it is refused. */
static void test_recv_pid_mismatch(void)
{
    struct hello_fx fx;
    g_autofree uint8_t *buf = NULL;
    size_t n;

    hello_fx_init(&fx);
    fx.h.pid = getpid() + 100000;
    buf = hello_frame(&fx.h, &n);
    hello_fx_close(&fx);
    expect_recv_error(buf, n, 2, "hello claims pid");
}

static void test_recv_no_uffd(void)
{
    struct hello_fx fx;
    g_autofree uint8_t *buf = NULL;
    size_t n;

    hello_fx_init(&fx);
    buf = hello_frame(&fx.h, &n);
    hello_fx_close(&fx);
    expect_recv_error(buf, n, 0, "hello carries no uffd");
}

/*
 * A region past the end of its memory file (a 2^62-byte region on a
 * 64-page memfd was accepted) is refused at attach, every fd closed.
 */
static void test_recv_region_beyond_fd(void)
{
    static const struct {
        uint64_t size, offset;
        const char *needle; /* NULL: accepted */
    } cases[] = {
        {1ULL << 62, 0, "memory fd holds 262144 bytes"},
        {32 * PAGE, 48 * PAGE, "at offset 196608"},
        {16 * PAGE, 48 * PAGE, NULL}, /* ends at the file's end */
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct hello_fx fx;
        g_autofree uint8_t *buf = NULL;
        g_autoptr(GError) err = NULL;
        struct attach_info info;
        int before = count_open_fds();
        int sv[2];
        size_t n;

        hello_fx_init(&fx);
        close(fx.fds[0]);
        fx.fds[0] = open_uffd();
        if (fx.fds[0] < 0) {
            hello_fx_close(&fx);
            return;
        }
        fx.r[1].host_addr = BASE + (1ULL << 40); /* above the others */
        fx.r[1].size = cases[i].size;
        fx.r[1].offset = cases[i].offset;
        buf = hello_frame(&fx.h, &n);
        make_pair(sv);
        raw_send(sv[1], buf, n, fx.fds, 3);
        hello_fx_close(&fx);
        attach_info_init(&info);
        if (cases[i].needle) {
            g_assert_false(attach_recv(sv[0], &info, &err));
            g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
            assert_message(err, cases[i].needle);
            assert_info_empty(&info);
        } else {
            g_assert_true(attach_recv(sv[0], &info, &err));
            g_assert_no_error(err);
            attach_info_clear(&info);
        }
        close(sv[0]);
        close(sv[1]);
        g_assert_cmpint(count_open_fds(), ==, before);
    }
}

/*
 * Send the good hello with @fds (uffd, memfd, spare) and expect
 * attach_recv() to refuse it with @needle, every fd closed.
 */
static void expect_recv_fds_refused(const int fds[3], const char *needle)
{
    int before = count_open_fds();
    struct hello_fx fx;
    g_autofree uint8_t *buf = NULL;
    g_autoptr(GError) err = NULL;
    struct attach_info info;
    int sv[2];
    size_t n;

    hello_fx_init(&fx);
    buf = hello_frame(&fx.h, &n);
    hello_fx_close(&fx);
    make_pair(sv);
    raw_send(sv[1], buf, n, fds, 3);
    attach_info_init(&info);
    g_assert_false(attach_recv(sv[0], &info, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    assert_message(err, needle);
    assert_info_empty(&info);
    close(sv[0]);
    close(sv[1]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

/*
 * Each fd is what the hello says: a userfaultfd, then tmpfs files.  A
 * socket as guest memory (the VMM's own end of the attach socket: the
 * daemon never saw it close) is refused.
 */
static void test_recv_fd_kinds(void)
{
    g_autofree char *path = g_strdup("attach-test-XXXXXX");
    int uffd = open_uffd();
    int ev = make_eventfd(), mem = make_memfd(64 * PAGE);
    int sv[2], file;

    if (uffd < 0) {
        close(ev);
        close(mem);
        return;
    }
    make_pair(sv);
    expect_recv_fds_refused((int[]){ev, mem, mem}, "is not a userfaultfd");
    expect_recv_fds_refused((int[]){uffd, sv[1], mem},
                            "its memory fd is not a file");
    /* A file, but not tmpfs (the build tree's filesystem, if it is not). */
    file = g_mkstemp(path);
    g_assert_cmpint(file, >=, 0);
    g_assert_cmpint(ftruncate(file, 64 * PAGE), ==, 0);
    unlink(path);
    {
        struct statfs fs;

        fstatfs(file, &fs);
        if (fs.f_type != TMPFS_MAGIC) {
            expect_recv_fds_refused((int[]){uffd, file, mem},
                                    "its memory fd is no shmem file");
        }
    }
    close(file);
    close(sv[0]);
    close(sv[1]);
    close(uffd);
    close(ev);
    close(mem);
}

/* ---- Firecracker ---- */

#define FC_REGION(base, size, off, ps)                                         \
    "{\"base_host_virt_addr\": " base ", \"size\": " size ", \"offset\": " off \
    ", \"page_size\": " ps "}"

static const char fc_good[] = "[" FC_REGION(
    BASE_S, "65536", "0",
    "4096") ", "
            "{\"base_host_virt_addr\": 139637977776128, \"size\": 8192, "
            "\"offset\": 65536, \"page_size_kib\": 4}]";

static void check_fc_info(const struct attach_info *info)
{
    const struct region *r;

    g_assert_true(info->firecracker);
    g_assert_cmphex(info->uffd_features, ==, ATTACH_UFFD_FEATURES_UNKNOWN);
    g_assert_cmpuint(info->regions.n, ==, 2);
    r = &info->regions.regions[0];
    g_assert_cmphex(r->base, ==, BASE);
    g_assert_cmphex(r->size, ==, 65536);
    g_assert_cmphex(r->offset, ==, 0);
    g_assert_cmpuint(r->page_size, ==, PAGE);
    g_assert_cmpint(r->kind, ==, BACKING_ANON);
    g_assert_cmpint(r->fd, ==, -1);
    r = &info->regions.regions[1];
    g_assert_cmphex(r->base, ==, BASE + 0x100000);
    g_assert_cmphex(r->size, ==, 8192);
    g_assert_cmphex(r->offset, ==, 65536);
    g_assert_cmpuint(r->page_size, ==, PAGE); /* 4 KiB * 1024 */
    g_assert_cmpint(r->kind, ==, BACKING_ANON);
}

static void test_fc_parse_good(void)
{
    int before = count_open_fds();
    int fd = make_eventfd();
    struct attach_info info;
    g_autoptr(GError) err = NULL;

    attach_info_init(&info);
    g_assert_true(attach_parse_firecracker(fc_good, strlen(fc_good), &fd, 1,
                                           &info, &err));
    g_assert_no_error(err);
    check_fc_info(&info);
    g_assert_cmpint(info.uffd, ==, fd);
    attach_info_clear(&info);
    g_assert_false(fd_is_open(fd));
    g_assert_cmpint(count_open_fds(), ==, before);
}

/* Firecracker keeps the socket open: the reader must stop at the end of
 * the JSON, even when it arrives in pieces. */
static void fc_recv_good(const char *const *parts, size_t nparts)
{
    g_autofree char *want_name = NULL;
    int before = count_open_fds();
    int uffd = open_uffd();
    int sv[2];
    struct timeval tv = {.tv_sec = 5};
    struct attach_info info;
    g_autoptr(GError) err = NULL;

    if (uffd < 0) {
        return;
    }
    make_pair(sv);
    g_assert_cmpint(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                    ==, 0);
    for (size_t i = 0; i < nparts; i++) {
        raw_send(sv[1], parts[i], strlen(parts[i]), &uffd, i == 0);
    }
    attach_info_init(&info);
    g_assert_true(attach_recv(sv[0], &info, &err));
    g_assert_no_error(err);
    check_fc_info(&info);
    g_assert_cmpint(info.pid, ==, getpid());
    want_name = g_strdup_printf("firecracker-%d", getpid());
    g_assert_cmpstr(info.vm_name, ==, want_name);
    g_assert_true(same_uffd(info.uffd, uffd));
    attach_info_clear(&info);
    close(uffd);
    close(sv[0]);
    close(sv[1]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

static void test_fc_recv_good(void)
{
    const char *one[] = {fc_good};
    g_autofree char *ws = g_strconcat(" \n\t", fc_good, NULL);
    const char *lead[] = {ws};
    g_autofree char *head = g_strndup(fc_good, 40);
    const char *split[] = {head, fc_good + 40};

    fc_recv_good(one, 1);
    fc_recv_good(lead, 1);
    fc_recv_good(split, 2);
}

static void expect_fc_error(const char *json, size_t nfds, const char *needle)
{
    int before = count_open_fds();
    int fds[2] = {make_eventfd(), make_eventfd()};
    struct attach_info info;
    g_autoptr(GError) err = NULL;

    attach_info_init(&info);
    g_assert_false(
        attach_parse_firecracker(json, strlen(json), fds, nfds, &info, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    assert_message(err, needle);
    assert_info_empty(&info);
    g_assert_true(fd_is_open(fds[0]));
    close(fds[0]);
    close(fds[1]);
    g_assert_cmpint(count_open_fds(), ==, before);
}

/* Wrapped in an object, the Firecracker form carries the VM's name. */
static void test_fc_named(void)
{
    g_autofree char *named =
        g_strdup_printf("{\"vm_name\": \"fc-1\", \"regions\": %s}", fc_good);
    g_autofree char *bad_name =
        g_strdup_printf("{\"vm_name\": \"fc\\n1\", \"regions\": %s}", fc_good);
    g_autofree char *no_name = g_strdup_printf("{\"regions\": %s}", fc_good);
    g_autofree char *extra = g_strdup_printf(
        "{\"vm_name\": \"a\", \"regions\": %s, \"x\": 1}", fc_good);
    int fd = make_eventfd();
    struct attach_info info;
    g_autoptr(GError) err = NULL;

    attach_info_init(&info);
    g_assert_true(
        attach_parse_firecracker(named, strlen(named), &fd, 1, &info, &err));
    g_assert_no_error(err);
    check_fc_info(&info);
    g_assert_cmpstr(info.vm_name, ==, "fc-1");
    attach_info_clear(&info);
    expect_fc_error(bad_name, 1, "holds a control character");
    expect_fc_error(no_name, 1, "nor {\"vm_name\"");
    expect_fc_error(extra, 1, "nor {\"vm_name\"");
    expect_fc_error("{\"vm_name\": \"a\", \"regions\": 1}", 1,
                    "is not a JSON array");
}

static void test_fc_rejects(void)
{
    g_autoptr(GString) many = g_string_new("[");

    expect_fc_error("[{\"size\": 4096,", 1, "malformed Firecracker JSON");
    expect_fc_error("", 1, "not a JSON array");
    expect_fc_error("{\"size\": 4096}", 1, "not a JSON array");
    expect_fc_error("[]", 1, "has 0 regions");
    expect_fc_error("[1]", 1, "region 0 is not an object");
    expect_fc_error("[{\"base_host_virt_addr\": 0, \"size\": 4096, "
                    "\"page_size\": 4096}]",
                    1, "region 0: missing \"offset\"");
    expect_fc_error("[{\"base_host_virt_addr\": 0, \"size\": 4096, "
                    "\"offset\": 0}]",
                    1, "region 0: missing \"page_size\"");
    expect_fc_error("[" FC_REGION("0", "-4096", "0", "4096") "]", 1,
                    "\"size\" is negative (-4096)");
    expect_fc_error("[" FC_REGION("0", "\"4096\"", "0", "4096") "]", 1,
                    "\"size\" is not an integer");
    expect_fc_error("[" FC_REGION("0", "4096", "1.5", "4096") "]", 1,
                    "\"offset\" is not an integer");
    expect_fc_error("[" FC_REGION("null", "4096", "0", "4096") "]", 1,
                    "\"base_host_virt_addr\" is not an integer");
    expect_fc_error("[" FC_REGION("0", "4096", "0", "4096") ", " FC_REGION(
                        "4096", "0", "0", "4096") "]",
                    1, "size is 0");
    expect_fc_error("[" FC_REGION("100", "4096", "0", "4096") "]", 1,
                    "not aligned");
    expect_fc_error("[" FC_REGION("0", "8192", "0", "4096") ", " FC_REGION(
                        "4096", "4096", "0", "4096") "]",
                    1, "overlaps");
    expect_fc_error("[" FC_REGION("0", "2097152", "0", "2097152") "]", 1,
                    "page size 2097152 is not valid for anon");
    expect_fc_error("[{\"base_host_virt_addr\": 0, \"size\": 4096, "
                    "\"offset\": 0, \"page_size_kib\": -4}]",
                    1, "\"page_size_kib\" is negative");
    expect_fc_error(fc_good, 0, "exactly one fd (the uffd), got 0");
    expect_fc_error(fc_good, 2, "exactly one fd (the uffd), got 2");

    for (int i = 0; i <= REGION_MAX; i++) {
        g_string_append_printf(many, "%s" FC_REGION("%d", "4096", "0", "4096"),
                               i ? ", " : "", i * 8192);
    }
    g_string_append(many, "]");
    expect_fc_error(many->str, 1, "has 65 regions");
}

static void test_fc_too_long(void)
{
    g_autofree char *big = g_malloc(ATTACH_JSON_MAX + 2);
    int fd = make_eventfd();
    struct attach_info info;
    g_autoptr(GError) err = NULL;

    memset(big, ' ', ATTACH_JSON_MAX + 1);
    big[0] = '[';
    big[ATTACH_JSON_MAX] = ']';
    big[ATTACH_JSON_MAX + 1] = '\0';
    attach_info_init(&info);
    g_assert_false(attach_parse_firecracker(big, ATTACH_JSON_MAX + 1, &fd, 1,
                                            &info, &err));
    assert_message(err, "exceeds 65536");
    close(fd);
}

static void test_fc_recv_rejects(void)
{
    expect_recv_error(fc_good, strlen(fc_good), 2, "got 2");
    expect_recv_error(fc_good, strlen(fc_good), 0, "got 0");
    expect_recv_error("[{\"base_host_virt_addr\": 0", 26, 1,
                      "malformed Firecracker JSON");
    expect_recv_error("[ 1, ]]", 7, 1, "malformed Firecracker JSON");
    expect_recv_error("\n{}", 3, 1, "not a JSON array");
}

/* ---- garbage ---- */

static void test_garbage(void)
{
    int before = count_open_fds();
    int mem = make_memfd(PAGE);

    for (int i = 0; i < 3000; i++) {
        uint8_t buf[512];
        size_t len = g_test_rand_int_range(1, sizeof(buf));
        int fds[3] = {mem, mem, mem};
        size_t nfds = g_test_rand_int_range(0, 4);
        int sv[2];
        struct attach_info info;
        g_autoptr(GError) err = NULL;

        for (size_t j = 0; j < len; j++) {
            buf[j] = g_test_rand_int_range(0, 256);
        }
        switch (g_test_rand_int_range(0, 4)) {
        case 1: /* the Firecracker path */
            buf[0] = "[ \n"[g_test_rand_int_range(0, 3)];
            break;
        case 2: /* a good header, then garbage of the announced length */
        case 3:
            len = MAX(len, VM_CHANNEL_HDR_LEN);
            header(buf, VM_CHANNEL_MAGIC, len - VM_CHANNEL_HDR_LEN,
                   g_test_rand_int_range(1, 4));
            break;
        }
        make_pair(sv);
        raw_send(sv[1], buf, len, fds, nfds);
        close(sv[1]);
        attach_info_init(&info);
        g_assert_false(attach_recv(sv[0], &info, &err));
        g_assert_nonnull(err);
        g_assert_cmpuint(strlen(err->message), >, 0);
        assert_info_empty(&info);
        close(sv[0]);
    }
    close(mem);
    g_assert_cmpint(count_open_fds(), ==, before);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/attach/hello/rejects", test_hello_rejects);
    g_test_add_func("/attach/hello/names", test_hello_names);
    g_test_add_func("/attach/hello/malformed", test_hello_malformed);
    g_test_add_func("/attach/hello/fd-ownership", test_hello_fd_ownership);
    g_test_add_func("/attach/hello/round-trip", test_hello_round_trip);
    g_test_add_func("/attach/hello/send-limits", test_send_hello_limits);
    g_test_add_func("/attach/recv/bad-frames", test_recv_bad_frames);
    g_test_add_func("/attach/recv/pid-mismatch", test_recv_pid_mismatch);
    g_test_add_func("/attach/recv/no-uffd", test_recv_no_uffd);
    g_test_add_func("/attach/recv/region-beyond-fd",
                    test_recv_region_beyond_fd);
    g_test_add_func("/attach/recv/fd-kinds", test_recv_fd_kinds);
    g_test_add_func("/attach/firecracker/parse-good", test_fc_parse_good);
    g_test_add_func("/attach/firecracker/recv-good", test_fc_recv_good);
    g_test_add_func("/attach/firecracker/named", test_fc_named);
    g_test_add_func("/attach/firecracker/rejects", test_fc_rejects);
    g_test_add_func("/attach/firecracker/too-long", test_fc_too_long);
    g_test_add_func("/attach/firecracker/recv-rejects", test_fc_recv_rejects);
    g_test_add_func("/attach/garbage", test_garbage);
    return g_test_run();
}
