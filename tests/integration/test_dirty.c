/*
 * test_dirty.c - dirty tracking of another process's memory, as a table:
 * scenario x backing (anon, shmem, hugetlbfs) x method (async-wp, sync-wp,
 * soft-dirty), each combination its own path (/dirty/METHOD/BACKING/SCENARIO).
 *
 * The writer is a real separate process: it allocates its guest RAM,
 * creates a uffd in its own mm and hands it over with SCM_RIGHTS, then
 * writes what it is told.  WP methods must report exactly the written
 * pages; soft-dirty a superset.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "bitmap.h"
#include "dirty_tracker.h"
#include "testlib.h"

#define RANGE_SIZE  (16ULL << 20)
#define HUGE_PAGES  8
#define MAX_PAGES   (RANGE_SIZE / 4096)
#define SPIN_MS     300
#define FAULT_BATCH 16

enum scenario {
    SC_EXACT,   /* rounds A, nothing, B, nothing: exactly those */
    SC_MANY,    /* every other page: far more than 512 scan regions */
    SC_REWRITE, /* a write right after collect is in the next collect */
    SC_NOLOST,  /* writes racing collects: the last value always arrives */
    SC_FINAL,   /* the switchover's collect: exact, async WP not re-armed */
    SC_LATER,   /* protect_later: tracked from each page's protect on */
    SC_DESTROY, /* destroy: nothing left protected, blocked writers go */
    SC_N,
};

static const char *const scenario_names[SC_N] = {
    "exact", "many", "rewrite", "nolost", "final", "protect-later", "destroy"};

struct combo {
    enum dirty_method method;
    enum backing_kind kind;
    enum scenario sc;
};

/* ---- the writer process ---- */

enum child_op {
    OP_WRITE = 1, /* one byte at a random offset of each listed page */
    OP_SPIN,      /* counters into the listed pages for spin_ms */
    OP_EXIT,
};

struct child_hello {
    uint64_t base;
    uint64_t size;
    uint64_t page_size;
};

struct child_cmd {
    uint32_t op;
    uint32_t n;
    uint64_t spin_ms;
    uint64_t pages[MAX_PAGES];
};

static bool send_with_fd(int sock, const void *buf, size_t len, int fd)
{
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl,
                        .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return sendmsg(sock, &mh, 0) == (ssize_t)len;
}

static int recv_with_fd(int sock, void *buf, size_t len)
{
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl,
                        .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm;
    int fd = -1;

    if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != (ssize_t)len) {
        return -1;
    }
    cm = CMSG_FIRSTHDR(&mh);
    if (cm && cm->cmsg_type == SCM_RIGHTS) {
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    }
    return fd;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static void child_write(uint8_t *base, uint64_t ps, const struct child_cmd *c,
                        unsigned *seed)
{
    for (uint32_t i = 0; i < c->n; i++) {
        volatile uint8_t *p = base + c->pages[i] * ps + rand_r(seed) % ps;

        *p = *p + 1;
    }
}

static uint64_t child_spin(uint8_t *base, uint64_t ps,
                           const struct child_cmd *c)
{
    uint64_t end = now_ms() + c->spin_ms;
    uint64_t it = 0;

    while (now_ms() < end) {
        it++;
        for (uint32_t i = 0; i < c->n; i++) {
            *(volatile uint64_t *)(base + c->pages[i] * ps) = it;
        }
    }
    return it;
}

/*
 * The VMM stand-in.  Half of its pages are written before the handover,
 * so both populated and never-touched pages are tracked.  _exit() only:
 * the parent's atexit handlers (huge page restore) are not ours to run.
 */
static G_NORETURN void child_main(int sock, enum backing_kind kind)
{
    static struct child_cmd cmd;
    struct child_hello hello = {.size = RANGE_SIZE};
    unsigned seed = getpid();
    void *addr;
    int memfd;
    int uffd;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!backing_alloc(kind, RANGE_SIZE, 0, "dirty-test", &addr, &memfd,
                       NULL)) {
        _exit(2);
    }
    hello.base = (uintptr_t)addr;
    hello.page_size = kind == BACKING_HUGETLBFS ? testlib_hugepage_size()
                                                : (uint64_t)getpagesize();
    for (uint64_t i = 0; i < RANGE_SIZE / hello.page_size; i += 2) {
        ((volatile uint8_t *)addr)[i * hello.page_size] = 1;
    }
    /* Created here so that it acts on this mm; kept open like a VMM. */
    uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0 || !send_with_fd(sock, &hello, sizeof(hello), uffd)) {
        _exit(3);
    }
    for (;;) {
        uint64_t reply = 0;

        if (recv(sock, &cmd, sizeof(cmd), 0) <= 0) {
            _exit(4);
        }
        if (cmd.op == OP_EXIT) {
            _exit(0);
        }
        if (cmd.op == OP_WRITE) {
            child_write(addr, hello.page_size, &cmd, &seed);
        } else {
            reply = child_spin(addr, hello.page_size, &cmd);
        }
        if (send(sock, &reply, sizeof(reply), 0) != sizeof(reply)) {
            _exit(5);
        }
    }
}

/* ---- the tracking side ---- */

struct fixture {
    const struct combo *c;
    pid_t pid;
    int sock;
    struct child_hello mem;
    uint64_t npages;
    struct uffd u;
    struct dirty_tracker dt;
    bool have_dt;
    GThread *fault_thread;
    int stop_fd;
    int bad_msgs;
    struct child_cmd cmd;
    unsigned long *got;
};

static struct uffd_caps caps;

static bool soft_dirty_supported(void)
{
    struct dirty_support s = {0};

    dirty_support_probe(&s, 0);
    return s.soft_dirty;
}

static bool method_is_wp(enum dirty_method m)
{
    return m == DIRTY_ASYNC_WP || m == DIRTY_SYNC_WP;
}

static gpointer fault_thread_main(gpointer opaque)
{
    struct fixture *fx = opaque;
    struct pollfd pfd[2] = {{.fd = fx->u.fd, .events = POLLIN},
                            {.fd = fx->stop_fd, .events = POLLIN}};
    struct uffd_msg msgs[FAULT_BATCH];

    for (;;) {
        int n;

        if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
            break;
        }
        if (pfd[1].revents) {
            break;
        }
        n = uffd_read_msgs(&fx->u, msgs, FAULT_BATCH);
        for (int i = 0; i < n; i++) {
            if (dirty_tracker_handle_wp_fault(&fx->dt, &msgs[i]) != 1) {
                g_atomic_int_inc(&fx->bad_msgs);
            }
        }
    }
    return NULL;
}

static void start_writer(struct fixture *fx)
{
    int sv[2];
    int uffd;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    fx->pid = fork();
    g_assert_cmpint(fx->pid, >=, 0);
    if (fx->pid == 0) {
        close(sv[0]);
        child_main(sv[1], fx->c->kind);
    }
    close(sv[1]);
    fx->sock = sv[0];
    uffd = recv_with_fd(fx->sock, &fx->mem, sizeof(fx->mem));
    g_assert_cmpint(uffd, >=, 0);
    fx->u.fd = uffd;
    fx->npages = fx->mem.size / fx->mem.page_size;
    fx->got = g_new0(unsigned long, MAX_PAGES / BITS_PER_LONG);
}

/* False (and the test skipped) when the kernel refuses the combination. */
static bool fixture_setup(struct fixture *fx, const struct combo *c)
{
    g_autoptr(GError) err = NULL;
    enum dirty_method m = c->method;

    *fx = (struct fixture){.c = c, .sock = -1, .stop_fd = -1};
    fx->u.fd = -1;
    if (c->kind == BACKING_HUGETLBFS) {
        g_autofree char *why = NULL;

        if (!testlib_hugetlb_reserve(HUGE_PAGES, &why)) {
            g_test_skip(why);
            return false;
        }
    }
    start_writer(fx);
    if (method_is_wp(m)) {
        uint64_t dropped = 0;
        int fd = fx->u.fd;

        g_assert_true(uffd_api(fd, dirty_tracker_features(m), &caps, &fx->u,
                               &dropped, &err));
        g_assert_cmphex(dropped, ==, 0);
    }
    if (!dirty_tracker_init(&fx->dt, fx->pid, &fx->u, m, &err)) {
        /* Only one refusal is expected: a kernel without soft-dirty. */
        g_assert_true(m == DIRTY_SOFT_DIRTY && !soft_dirty_supported());
        g_test_skip(err->message);
        return false;
    }
    fx->have_dt = true;
    if (c->sc == SC_LATER) {
        g_assert_true(dirty_tracker_protect_later(&fx->dt));
    }
    if (!dirty_tracker_add_range(&fx->dt, fx->mem.base, fx->mem.size,
                                 fx->mem.page_size, NULL, &err)) {
        /* Only one refusal is expected: see test_soft_dirty_hugetlb(). */
        g_assert_true(m == DIRTY_SOFT_DIRTY && c->kind == BACKING_HUGETLBFS);
        g_test_skip(err->message);
        return false;
    }
    if (m == DIRTY_SYNC_WP) {
        fx->stop_fd = eventfd(0, EFD_CLOEXEC);
        fx->fault_thread = g_thread_new("fault", fault_thread_main, fx);
    }
    return true;
}

static void stop_fault_thread(struct fixture *fx)
{
    uint64_t one = 1;

    if (!fx->fault_thread) {
        return;
    }
    g_assert_cmpint(write(fx->stop_fd, &one, sizeof(one)), ==, 8);
    g_thread_join(fx->fault_thread);
    close(fx->stop_fd);
    fx->fault_thread = NULL;
}

static void fixture_teardown(struct fixture *fx)
{
    int status = 0;

    stop_fault_thread(fx);
    if (fx->have_dt) {
        dirty_tracker_destroy(&fx->dt);
    }
    if (fx->sock >= 0) {
        fx->cmd.op = OP_EXIT;
        send(fx->sock, &fx->cmd, offsetof(struct child_cmd, pages), 0);
        g_assert_cmpint(waitpid(fx->pid, &status, 0), ==, fx->pid);
        close(fx->sock);
    }
    if (fx->u.fd >= 0) {
        close(fx->u.fd);
    }
    g_free(fx->got);
    g_assert_cmpint(fx->bad_msgs, ==, 0);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static size_t cmd_len(const struct child_cmd *c)
{
    return offsetof(struct child_cmd, pages) + c->n * sizeof(uint64_t);
}

static void send_cmd(struct fixture *fx)
{
    g_assert_cmpint(send(fx->sock, &fx->cmd, cmd_len(&fx->cmd), 0), ==,
                    (ssize_t)cmd_len(&fx->cmd));
}

static uint64_t wait_reply(struct fixture *fx)
{
    uint64_t reply;

    g_assert_cmpint(recv(fx->sock, &reply, sizeof(reply), 0), ==,
                    sizeof(reply));
    return reply;
}

/* Tell the writer to write every page i with pick(i, npages), and wait. */
static void write_pages(struct fixture *fx,
                        bool (*pick)(uint64_t i, uint64_t n))
{
    fx->cmd = (struct child_cmd){.op = OP_WRITE};
    for (uint64_t i = 0; i < fx->npages; i++) {
        if (pick(i, fx->npages)) {
            fx->cmd.pages[fx->cmd.n++] = i;
        }
    }
    send_cmd(fx);
    wait_reply(fx);
}

static bool test_bit(const unsigned long *map, uint64_t i)
{
    return map[i / BITS_PER_LONG] & (1UL << (i % BITS_PER_LONG));
}

/*
 * Collect and compare with pick(): exactly for WP methods, at least for
 * soft-dirty.  Returns the number of pages reported.
 */
static uint64_t expect_collected(struct fixture *fx,
                                 bool (*pick)(uint64_t i, uint64_t n),
                                 bool final)
{
    g_autoptr(GError) err = NULL;
    bool exact = method_is_wp(fx->c->method);
    uint64_t n, want = 0;

    g_assert_true(final
                      ? dirty_tracker_collect_final(&fx->dt, &err)
                      : dirty_tracker_collect(&fx->dt, DIRTY_ALL_RANGES, &err));
    /*
     * The final collect is merged into a set that already holds pages (the
     * source's pending set): they must stay, and only the new ones count.
     */
    memset(fx->got, 0, MAX_PAGES / BITS_PER_LONG * sizeof(unsigned long));
    for (uint64_t i = 3; final && i < fx->npages; i += 7) {
        fx->got[i / BITS_PER_LONG] |= 1UL << (i % BITS_PER_LONG);
    }
    n = final ? dirty_tracker_merge(&fx->dt, 0, fx->got)
              : dirty_tracker_take(&fx->dt, 0, fx->got);
    for (uint64_t i = 0; i < fx->npages; i++) {
        bool w = pick(i, fx->npages), held = final && i % 7 == 3;
        bool g = test_bit(fx->got, i);

        want += w;
        if ((w || held) && !g) {
            g_error("page %" G_GUINT64_FORMAT " %s, not reported", i,
                    w ? "written" : "held before the merge");
        }
        if (exact && g && !w && !held) {
            g_error("page %" G_GUINT64_FORMAT " reported, not written", i);
        }
    }
    if (exact) {
        g_assert_cmpuint(n, ==, want);
    }
    if (!exact && n > want) {
        g_test_message("soft-dirty reported %" G_GUINT64_FORMAT
                       " pages for %" G_GUINT64_FORMAT " written",
                       n, want);
    }
    g_assert_cmpuint(dirty_tracker_count(&fx->dt, 0), ==, 0);
    return n;
}

static uint64_t expect_dirty(struct fixture *fx,
                             bool (*pick)(uint64_t i, uint64_t n))
{
    return expect_collected(fx, pick, false);
}

static bool pick_none(uint64_t i, uint64_t n)
{
    return false;
}

/* Mixes pre-touched (even) and never-touched (odd) pages, and the last. */
static bool pick_a(uint64_t i, uint64_t n)
{
    return i % 5 == 0 || i == n - 1;
}

static bool pick_b(uint64_t i, uint64_t n)
{
    return i % 3 == 1;
}

static bool pick_odd(uint64_t i, uint64_t n)
{
    return i % 2 == 1;
}

static bool pick_middle(uint64_t i, uint64_t n)
{
    return i == n / 2;
}

static void run_exact(struct fixture *fx)
{
    expect_dirty(fx, pick_none); /* what the writer did before add_range */
    write_pages(fx, pick_a);
    expect_dirty(fx, pick_a);
    expect_dirty(fx, pick_none);
    write_pages(fx, pick_b);
    expect_dirty(fx, pick_b);
    expect_dirty(fx, pick_none);
}

static void run_many(struct fixture *fx)
{
    struct dirty_stats before, after;
    uint64_t want = fx->npages / 2;
    uint64_t n, min_calls;

    /* 8 huge pages give 4 regions: a short vec makes the loop run. */
    if (fx->c->method == DIRTY_ASYNC_WP &&
        fx->mem.page_size != (uint64_t)getpagesize()) {
        fx->dt.scan_vec_len = 1;
        g_test_message("hugetlb: %" G_GUINT64_FORMAT
                       " regions, scan vec_len lowered to 1",
                       want);
    }
    write_pages(fx, pick_odd);
    dirty_tracker_get_stats(&fx->dt, &before);
    n = expect_dirty(fx, pick_odd);
    dirty_tracker_get_stats(&fx->dt, &after);
    if (!method_is_wp(fx->c->method)) {
        g_assert_cmpuint(n, >=, want);
        return;
    }
    g_assert_cmpuint(n, ==, want);
    /* Summed per report: a page reported twice would count twice. */
    g_assert_cmpuint(after.pages_reported - before.pages_reported, ==, want);
    if (fx->c->method == DIRTY_ASYNC_WP) {
        min_calls = (want + fx->dt.scan_vec_len - 1) / fx->dt.scan_vec_len;
        g_test_message("%" G_GUINT64_FORMAT " PAGEMAP_SCAN calls",
                       after.scan_calls - before.scan_calls);
        g_assert_cmpuint(after.scan_calls - before.scan_calls, >=, min_calls);
    }
    expect_dirty(fx, pick_none);
}

static void run_rewrite(struct fixture *fx)
{
    write_pages(fx, pick_a);
    expect_dirty(fx, pick_a);
    write_pages(fx, pick_a);
    expect_dirty(fx, pick_a);
    write_pages(fx, pick_middle);
    expect_dirty(fx, pick_middle);
    expect_dirty(fx, pick_none);
}

static bool reply_ready(struct fixture *fx)
{
    struct pollfd pfd = {.fd = fx->sock, .events = POLLIN};

    return poll(&pfd, 1, 0) == 1;
}

/* Collect, then read every reported spin page as the source would. */
static uint64_t collect_and_read(struct fixture *fx, uint64_t *shadow)
{
    g_autoptr(GError) err = NULL;
    uint64_t seen = 0;

    g_assert_true(dirty_tracker_collect(&fx->dt, DIRTY_ALL_RANGES, &err));
    dirty_tracker_take(&fx->dt, 0, fx->got);
    for (uint32_t i = 0; i < fx->cmd.n; i++) {
        uint64_t page = fx->cmd.pages[i];
        struct iovec local = {.iov_base = &shadow[i], .iov_len = 8};
        struct iovec remote = {
            .iov_base =
                (void *)(uintptr_t)(fx->mem.base + page * fx->mem.page_size),
            .iov_len = 8};

        if (!test_bit(fx->got, page)) {
            continue;
        }
        g_assert_cmpint(process_vm_readv(fx->pid, &local, 1, &remote, 1, 0), ==,
                        8);
        seen++;
    }
    return seen;
}

static void run_nolost(struct fixture *fx)
{
    uint64_t shadow[4] = {0};
    uint64_t rounds = 0, busy = 0, final;

    fx->cmd = (struct child_cmd){.op = OP_SPIN, .spin_ms = SPIN_MS};
    fx->cmd.pages[fx->cmd.n++] = 0;
    fx->cmd.pages[fx->cmd.n++] = 1;
    fx->cmd.pages[fx->cmd.n++] = fx->npages / 2;
    fx->cmd.pages[fx->cmd.n++] = fx->npages - 1;
    send_cmd(fx);
    while (!reply_ready(fx)) {
        busy += collect_and_read(fx, shadow) > 0;
        rounds++;
    }
    final = wait_reply(fx);
    collect_and_read(fx, shadow);
    g_test_message("%" G_GUINT64_FORMAT " rounds (%" G_GUINT64_FORMAT
                   " with writes), %" G_GUINT64_FORMAT " writer iterations",
                   rounds, busy, final);
    g_assert_cmpuint(busy, >=, 2);
    for (uint32_t i = 0; i < fx->cmd.n; i++) {
        g_assert_cmpuint(shadow[i], ==, final);
    }
    expect_dirty(fx, pick_none);
}

/*
 * The last collect reports exactly what was written.  WP methods leave
 * those pages unprotected (the downtime skips the re-protect): async WP's
 * written bits stay, so a further collect would see them again; sync WP's
 * pages take later writes without a fault, so nothing is recorded.
 */
static void run_final(struct fixture *fx)
{
    write_pages(fx, pick_a);
    expect_dirty(fx, pick_a);
    write_pages(fx, pick_b);
    expect_collected(fx, pick_b, true);
    if (fx->c->method == DIRTY_ASYNC_WP) {
        expect_dirty(fx, pick_b);
    } else if (fx->c->method == DIRTY_SYNC_WP) {
        write_pages(fx, pick_b);
        expect_dirty(fx, pick_none);
    }
}

static bool pick_b_then_unprotected(uint64_t i, uint64_t n)
{
    return i >= n / 2 || pick_b(i, n);
}

static bool pick_odd_second_half(uint64_t i, uint64_t n)
{
    return i >= n / 2 && i % 2 == 1;
}

/*
 * Round 1's order: a write before a page's protect is not reported (the
 * caller reads the page after it), a write after it is; a page never
 * protected is reported by the next collect, which protects it, holes
 * included (the odd pages the writer never touched), so its later writes
 * are reported too.
 */
static void run_later(struct fixture *fx)
{
    g_autoptr(GError) err = NULL;

    write_pages(fx, pick_a);
    g_assert_true(dirty_tracker_protect(&fx->dt, 0, 0, fx->npages / 2, &err));
    write_pages(fx, pick_b);
    expect_dirty(fx, pick_b_then_unprotected);
    write_pages(fx, pick_odd_second_half);
    expect_dirty(fx, pick_odd_second_half);
    /* Protecting protected pages does nothing. */
    g_assert_true(dirty_tracker_protect(&fx->dt, 0, 0, fx->npages, &err));
    expect_dirty(fx, pick_none);
    write_pages(fx, pick_b);
    expect_dirty(fx, pick_b);
}

/* Host pages of the writer's range whose pagemap entry says uffd-wp. */
static uint64_t count_protected(struct fixture *fx)
{
    uint64_t n = fx->mem.size / getpagesize(), count = 0;
    g_autofree uint64_t *pm = g_new(uint64_t, n);

    testlib_pagemap(fx->pid, fx->mem.base, n, pm);
    for (uint64_t i = 0; i < n; i++) {
        count += !!(pm[i] & TESTLIB_PM_UFFD_WP);
    }
    return count;
}

/*
 * Destroy leaves the VMM as if it had never been tracked: no page
 * protected, the range unregistered, and a writer blocked on a protected
 * page (sync-wp, its fault thread stopped first) let go.
 */
static void run_destroy(struct fixture *fx)
{
    uint64_t host_pages = fx->mem.size / getpagesize();
    bool sync = fx->c->method == DIRTY_SYNC_WP;
    struct pollfd pfd = {.fd = fx->sock, .events = POLLIN};
    struct uffdio_writeprotect wp = {
        .range = {.start = fx->mem.base, .len = fx->mem.size},
        .mode = UFFDIO_WRITEPROTECT_MODE_WP,
    };

    write_pages(fx, pick_a);
    expect_dirty(fx, pick_a);
    g_assert_cmpuint(count_protected(fx), ==, host_pages);
    if (sync) {
        stop_fault_thread(fx);
        fx->cmd = (struct child_cmd){.op = OP_WRITE, .n = 1};
        fx->cmd.pages[0] = fx->npages / 2;
        send_cmd(fx);
        g_usleep(100 * 1000);
        g_assert_false(reply_ready(fx)); /* blocked on the protected page */
    }
    dirty_tracker_destroy(&fx->dt);
    fx->have_dt = false;
    if (sync) {
        g_assert_cmpint(poll(&pfd, 1, 5000), ==, 1);
        wait_reply(fx);
    }
    g_assert_cmpuint(count_protected(fx), ==, 0);
    write_pages(fx, pick_b);
    g_assert_cmpuint(count_protected(fx), ==, 0);
    g_assert_cmpint(ioctl(fx->u.fd, UFFDIO_WRITEPROTECT, &wp), ==, -1);
    g_assert_cmpint(errno, ==, ENOENT); /* no longer registered */
}

static void (*const scenario_fns[SC_N])(struct fixture *) = {
    [SC_EXACT] = run_exact,     [SC_MANY] = run_many,
    [SC_REWRITE] = run_rewrite, [SC_NOLOST] = run_nolost,
    [SC_FINAL] = run_final,     [SC_LATER] = run_later,
    [SC_DESTROY] = run_destroy,
};

static void test_combo(gconstpointer data)
{
    const struct combo *c = data;
    struct fixture fx;

    if (!fixture_setup(&fx, c)) {
        fixture_teardown(&fx);
        return;
    }
    scenario_fns[c->sc](&fx);
    fixture_teardown(&fx);
}

/*
 * The kernel fact behind refusing soft-dirty on hugetlb: a huge page
 * written after clear_refs "4" does not show bit 55 in pagemap.
 */
static void test_soft_dirty_hugetlb(void)
{
    uint64_t hps = testlib_hugepage_size();
    g_autofree char *why = NULL;
    volatile uint8_t *p;
    uint64_t entry = 0;
    void *addr;
    int fd, pm, cr;

    if (!soft_dirty_supported()) {
        /* Bit 55 is never set at all: nothing to tell hugetlb apart. */
        g_test_skip("this kernel does not track soft-dirty at all "
                    "(CONFIG_MEM_SOFT_DIRTY unset)");
        return;
    }
    if (!testlib_hugetlb_reserve(1, &why)) {
        g_test_skip(why);
        return;
    }
    g_assert_true(
        backing_alloc(BACKING_HUGETLBFS, hps, 0, "sd", &addr, &fd, NULL));
    p = addr;
    p[0] = 1;
    pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    g_assert_cmpint(write(cr, "4", 1), ==, 1);
    p[1] = 2;
    g_assert_cmpint(pread(pm, &entry, 8, (uintptr_t)addr / getpagesize() * 8),
                    ==, 8);
    g_test_message("hugetlb pagemap entry after a write: 0x%" G_GINT64_MODIFIER
                   "x",
                   entry);
    g_assert_true(entry & (1ULL << 63));  /* present */
    g_assert_false(entry & (1ULL << 55)); /* but never soft-dirty */
    munmap(addr, hps);
    close(fd);
    close(pm);
    close(cr);
}

/* ---- the chooser ---- */

static const uint64_t all_wp =
    UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
    UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_ASYNC;

static enum dirty_method choose(struct dirty_support s, enum dirty_method want,
                                char **note)
{
    g_autoptr(GError) err = NULL;
    enum dirty_method m = DIRTY_AUTO;

    g_assert_true(dirty_method_choose(&s, want, &m, note, &err));
    if (note && *note) {
        g_test_message("note: %s", *note);
    }
    return m;
}

static void test_choose_best(void)
{
    struct dirty_support s = {.uffd_features = all_wp,
                              .pagemap_scan = true,
                              .soft_dirty = true,
                              .file_backed = true};
    g_autofree char *note = NULL;

    g_assert_cmpint(choose(s, DIRTY_AUTO, &note), ==, DIRTY_ASYNC_WP);
    g_assert_null(note);
}

static void test_choose_no_wp_async(void)
{
    struct dirty_support s = {.uffd_features = all_wp & ~UFFD_FEATURE_WP_ASYNC,
                              .pagemap_scan = true,
                              .soft_dirty = true};
    g_autofree char *note = NULL;

    g_assert_cmpint(choose(s, DIRTY_AUTO, &note), ==, DIRTY_SYNC_WP);
    g_assert_nonnull(note);
    g_assert_nonnull(strstr(note, "async-wp unavailable"));
    g_assert_nonnull(strstr(note, "UFFD_FEATURE_WP_ASYNC"));
    g_assert_true(g_str_has_suffix(note, "using sync-wp"));
}

static void test_choose_no_pagemap_scan(void)
{
    struct dirty_support s = {.uffd_features = all_wp, .soft_dirty = true};
    g_autofree char *note = NULL;

    g_assert_cmpint(choose(s, DIRTY_AUTO, &note), ==, DIRTY_SYNC_WP);
    g_assert_nonnull(strstr(note, "PAGEMAP_SCAN"));
}

static void test_choose_no_uffd_wp(void)
{
    struct dirty_support s = {.soft_dirty = true};
    g_autofree char *note = NULL;

    g_assert_cmpint(choose(s, DIRTY_AUTO, &note), ==, DIRTY_SOFT_DIRTY);
    g_assert_nonnull(strstr(note, "sync-wp unavailable"));
    g_assert_true(g_str_has_suffix(note, "using soft-dirty"));
}

static void test_choose_shmem_old_kernel(void)
{
    /* 5.7-5.18: uffd-wp for anonymous memory only. */
    struct dirty_support s = {.uffd_features =
                                  all_wp & ~UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
                              .pagemap_scan = true,
                              .soft_dirty = true,
                              .file_backed = true};
    g_autofree char *note = NULL;

    g_assert_cmpint(choose(s, DIRTY_AUTO, &note), ==, DIRTY_SOFT_DIRTY);
    g_assert_nonnull(strstr(note, "WP_HUGETLBFS_SHMEM"));
}

static void test_choose_impossible(void)
{
    struct dirty_support s = {.soft_dirty = true, .hugetlb = true};
    g_autoptr(GError) err = NULL;
    enum dirty_method m;

    g_assert_false(dirty_method_choose(&s, DIRTY_AUTO, &m, NULL, &err));
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, "hugetlb"));
}

static void test_choose_forced(void)
{
    struct dirty_support s = {
        .uffd_features = all_wp, .pagemap_scan = true, .soft_dirty = true};
    g_autoptr(GError) err = NULL;
    g_autofree char *note = NULL;
    enum dirty_method m;

    g_assert_cmpint(choose(s, DIRTY_SOFT_DIRTY, &note), ==, DIRTY_SOFT_DIRTY);
    g_assert_null(note);
    s.uffd_features &= ~UFFD_FEATURE_WP_ASYNC;
    g_assert_false(dirty_method_choose(&s, DIRTY_ASYNC_WP, &m, NULL, &err));
    g_assert_nonnull(strstr(err->message, "async-wp"));
}

static void test_choose_this_kernel(void)
{
    struct dirty_support s = {0};
    g_autofree char *note = NULL;

    dirty_support_probe(&s, caps.usable);
    g_test_message("usable 0x%" G_GINT64_MODIFIER
                   "x, PAGEMAP_SCAN %d, soft-dirty %d",
                   caps.usable, s.pagemap_scan, s.soft_dirty);
    s.file_backed = s.hugetlb = true;
    g_assert_cmpint(choose(s, DIRTY_AUTO, &note), ==, DIRTY_ASYNC_WP);
}

static void test_init_missing_feature(void)
{
    g_autoptr(GError) err = NULL;
    struct dirty_tracker dt;
    struct uffd u;
    int fd = uffd_open(&err);

    g_assert_cmpint(fd, >=, 0);
    g_assert_true(
        uffd_api(fd, UFFD_FEATURE_PAGEFAULT_FLAG_WP, &caps, &u, NULL, &err));
    g_assert_false(dirty_tracker_init(&dt, getpid(), &u, DIRTY_ASYNC_WP, &err));
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, "WP_ASYNC"));
    close(fd);
}

/* ---- pages the process drops ---- */

/*
 * async-wp with watch_absent, on this process's own memory (no fault
 * reaches userspace, so no second process is needed): pages punched
 * (MADV_REMOVE, shmem) or zapped (MADV_DONTNEED, anonymous) after a
 * collect are absent at the next one and not reported written; the pages
 * left alone are neither.  The drop must show although it is no write.
 */
static void test_absent(gconstpointer data)
{
    enum backing_kind kind = GPOINTER_TO_INT(data);
    const uint64_t n = 64, ps = 4096;
    g_autoptr(GError) err = NULL;
    struct dirty_tracker dt;
    struct uffd u;
    unsigned long taken[BITS_TO_LONGS(64)] = {0};
    const unsigned long *absent;
    int fd = uffd_open(&err), mfd = -1;
    uint8_t *ram;

    g_assert_cmpint(fd, >=, 0);
    if (kind == BACKING_SHMEM) {
        mfd = memfd_create("absent", MFD_CLOEXEC);
        g_assert_cmpint(ftruncate(mfd, n * ps), ==, 0);
    }
    ram = mmap(NULL, n * ps, PROT_READ | PROT_WRITE,
               MAP_SHARED | (mfd < 0 ? MAP_ANONYMOUS : 0), mfd, 0);
    if (kind == BACKING_ANON) {
        munmap(ram, n * ps);
        ram = mmap(NULL, n * ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    g_assert_true(ram != MAP_FAILED);
    memset(ram, 0x5a, n * ps);
    g_assert_true(uffd_api(fd, dirty_tracker_features(DIRTY_ASYNC_WP), &caps,
                           &u, NULL, &err));
    g_assert_true(dirty_tracker_init(&dt, getpid(), &u, DIRTY_ASYNC_WP, &err));
    g_assert_true(dirty_tracker_watch_absent(&dt));
    g_assert_true(
        dirty_tracker_add_range(&dt, (uintptr_t)ram, n * ps, ps, NULL, &err));
    g_assert_true(dirty_tracker_collect(&dt, 0, &err));
    dirty_tracker_take(&dt, 0, taken);
    absent = dirty_tracker_absent(&dt, 0);
    g_assert_nonnull(absent);
    for (uint64_t i = 0; i < n; i++) {
        g_assert_false(bitmap_test_bit(absent, i));
    }

    g_assert_cmpint(
        madvise(ram + 8 * ps, 8 * ps,
                kind == BACKING_SHMEM ? MADV_REMOVE : MADV_DONTNEED),
        ==, 0);
    ram[40 * ps] = 1; /* a write beside it is still a write */
    memset(taken, 0, sizeof(taken));
    g_assert_true(dirty_tracker_collect(&dt, 0, &err));
    dirty_tracker_take(&dt, 0, taken);
    absent = dirty_tracker_absent(&dt, 0);
    for (uint64_t i = 0; i < n; i++) {
        bool dropped = i >= 8 && i < 16;

        /* Zapped anonymous pages show as written on this kernel (an empty
         * entry is an unprotected one); punched shmem only as absent. */
        g_assert_cmpint(bitmap_test_bit(absent, i) || bitmap_test_bit(taken, i),
                        ==, dropped || i == 40);
        g_assert_cmpint(bitmap_test_bit(taken, i) && !dropped, ==, i == 40);
        if (kind == BACKING_SHMEM) {
            g_assert_cmpint(bitmap_test_bit(absent, i), ==, dropped);
        }
    }
    dirty_tracker_destroy(&dt);
    munmap(ram, n * ps);
    if (mfd >= 0) {
        close(mfd);
    }
    close(fd);
}

/* Only async-wp can watch: the others say so and watch nothing. */
static void test_absent_sync_wp(void)
{
    g_autoptr(GError) err = NULL;
    struct dirty_tracker dt;
    struct uffd u;
    int fd = uffd_open(&err);

    g_assert_cmpint(fd, >=, 0);
    g_assert_true(uffd_api(fd, dirty_tracker_features(DIRTY_SYNC_WP), &caps, &u,
                           NULL, &err));
    g_assert_true(dirty_tracker_init(&dt, getpid(), &u, DIRTY_SYNC_WP, &err));
    g_assert_false(dirty_tracker_watch_absent(&dt));
    g_assert_null(dirty_tracker_absent(&dt, 0));
    dirty_tracker_destroy(&dt);
    close(fd);
}

/* ---- the table ---- */

static const enum dirty_method methods[] = {DIRTY_ASYNC_WP, DIRTY_SYNC_WP,
                                            DIRTY_SOFT_DIRTY};
static const enum backing_kind kinds[] = {BACKING_ANON, BACKING_SHMEM,
                                          BACKING_HUGETLBFS};

static void add_matrix(void)
{
    for (size_t m = 0; m < G_N_ELEMENTS(methods); m++) {
        for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
            for (int sc = 0; sc < SC_N; sc++) {
                struct combo *c;
                g_autofree char *path = NULL;

                /* clear_refs protects nothing: nothing to test. */
                if ((sc == SC_LATER || sc == SC_DESTROY) &&
                    methods[m] == DIRTY_SOFT_DIRTY) {
                    continue;
                }
                c = g_new(struct combo, 1);
                *c = (struct combo){methods[m], kinds[k], sc};
                path = g_strdup_printf(
                    "/dirty/%s/%s/%s", dirty_method_name(methods[m]),
                    backing_kind_name(kinds[k]), scenario_names[sc]);
                g_test_add_data_func_full(path, c, test_combo, g_free);
            }
        }
    }
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    g_test_init(&argc, &argv, NULL);
    if (!uffd_probe(&caps, &err)) {
        g_printerr("uffd_probe: %s\n", err->message);
        return 77;
    }
    g_test_add_func("/dirty/choose/best", test_choose_best);
    g_test_add_func("/dirty/choose/no-wp-async", test_choose_no_wp_async);
    g_test_add_func("/dirty/choose/no-pagemap-scan",
                    test_choose_no_pagemap_scan);
    g_test_add_func("/dirty/choose/no-uffd-wp", test_choose_no_uffd_wp);
    g_test_add_func("/dirty/choose/shmem-old-kernel",
                    test_choose_shmem_old_kernel);
    g_test_add_func("/dirty/choose/impossible", test_choose_impossible);
    g_test_add_func("/dirty/choose/forced", test_choose_forced);
    g_test_add_func("/dirty/choose/this-kernel", test_choose_this_kernel);
    g_test_add_func("/dirty/init/missing-feature", test_init_missing_feature);
    g_test_add_func("/dirty/soft-dirty/hugetlbfs/kernel-does-not-track",
                    test_soft_dirty_hugetlb);
    g_test_add_data_func("/dirty/async-wp/absent/anon",
                         GINT_TO_POINTER(BACKING_ANON), test_absent);
    g_test_add_data_func("/dirty/async-wp/absent/shmem",
                         GINT_TO_POINTER(BACKING_SHMEM), test_absent);
    g_test_add_func("/dirty/sync-wp/absent/not-watched", test_absent_sync_wp);
    add_matrix();
    return g_test_run();
}
