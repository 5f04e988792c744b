/*
 * test_inject.c - uffd_inject and proc_ram against real child processes
 * standing in for a VMM: a computing loop (one thread and four), a thread
 * blocked in read() and one in nanosleep().  Injection must leave them
 * exactly as they were; the uffd we get must act on the child's memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <gio/gio.h>

#include "proc_ram.h"
#include "region.h"
#include "uffd_compat.h"
#include "uffd_inject.h"

#define NTHREADS   4
#define SLOTS      (1u << 16)
#define SLOT_ITERS (1u << 18)
#define PAGE       4096u
#define SLEEP_MS   400

/* Shared with the children (MAP_SHARED before fork). */
struct comm {
    uint64_t hashes[NTHREADS][SLOTS];
    uint32_t count[NTHREADS]; /* slots published */
    uint64_t addr[3];         /* child mappings, for the parent */
    uint32_t ready;
    uint32_t rt_signals; /* SIGRTMIN handled */
};

struct reply {
    ssize_t n;
    int err;
    int64_t elapsed_ns;
    char buf[64];
};

static struct comm *comm;

static uint64_t step(uint64_t h, uint64_t i)
{
    return (h ^ i) * 0x100000001b3ull;
}

static uint64_t seed(int t)
{
    return 0xcbf29ce484222325ull + t;
}

/* Publish a running hash every SLOT_ITERS steps: lives in registers. */
static void *compute(void *arg)
{
    int t = GPOINTER_TO_INT(arg);
    uint64_t h = seed(t);

    for (uint64_t i = 0;; i++) {
        h = step(h, i);
        if ((i + 1) % SLOT_ITERS == 0) {
            uint64_t k = (i + 1) / SLOT_ITERS - 1;

            if (k >= SLOTS) {
                for (;;) {
                    pause();
                }
            }
            comm->hashes[t][k] = h;
            __atomic_store_n(&comm->count[t], k + 1, __ATOMIC_RELEASE);
        }
    }
    return NULL;
}

static void on_rt_signal(int sig)
{
    (void)sig;
    __atomic_add_fetch(&comm->rt_signals, 1, __ATOMIC_RELAXED);
}

static pid_t spawn_compute(int nthreads)
{
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        struct sigaction sa = {.sa_handler = on_rt_signal,
                               .sa_flags = SA_RESTART};
        pthread_t th;

        sigaction(SIGRTMIN, &sa, NULL);
        for (int t = 1; t < nthreads; t++) {
            pthread_create(&th, NULL, compute, GINT_TO_POINTER(t));
        }
        compute(GINT_TO_POINTER(0));
    }
    return pid;
}

static uint32_t count_of(int t)
{
    return __atomic_load_n(&comm->count[t], __ATOMIC_ACQUIRE);
}

static void wait_slots(int t, uint32_t n)
{
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    while (count_of(t) < n) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

/* Every published hash is what an undisturbed loop computes. */
static void check_hashes(int t)
{
    uint32_t n = count_of(t);
    uint64_t h = seed(t);

    for (uint64_t i = 0; i < (uint64_t)n * SLOT_ITERS; i++) {
        h = step(h, i);
        if ((i + 1) % SLOT_ITERS == 0) {
            g_assert_cmphex(comm->hashes[t][(i + 1) / SLOT_ITERS - 1], ==, h);
        }
    }
}

static void reap(pid_t pid)
{
    int status;

    kill(pid, SIGKILL);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
}

static void reset_comm(void)
{
    memset(comm, 0, sizeof(*comm));
}

static char *fd_link(pid_t pid, int fd)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd/%d", pid, fd);

    return g_file_read_link(path, NULL);
}

static void check_is_uffd(pid_t pid, int fd)
{
    g_autofree char *link = fd_link(pid, fd);

    g_assert_cmpstr(link, ==, "anon_inode:[userfaultfd]");
}

static void create_ok(pid_t pid, enum uffd_inject_via via, int *vmm_fd,
                      int *our_fd)
{
    g_autoptr(GError) err = NULL;
    enum uffd_inject_via used = 0;

    g_assert_true(uffd_inject_create(pid, via, vmm_fd, our_fd, &used, &err));
    g_assert_no_error(err);
    g_assert_cmpint(used, ==, via);
    check_is_uffd(pid, *vmm_fd);
    check_is_uffd(getpid(), *our_fd);
    g_test_message("pid %d: uffd %d via %s", pid, *vmm_fd,
                   uffd_inject_via_name(used));
}

/* The uffd's context is the child's mm: UFFDIO_API works on our copy. */
static void api_ok(int fd)
{
    struct uffdio_api api = {.api = UFFD_API};

    g_assert_cmpint(ioctl(fd, UFFDIO_API, &api), ==, 0);
}

static void test_compute(gconstpointer data)
{
    int nthreads = GPOINTER_TO_INT(data);
    pid_t pid;
    int vmm_fd, our_fd;
    uint32_t before[NTHREADS];

    reset_comm();
    pid = spawn_compute(nthreads);
    wait_slots(0, 20);
    for (int i = 0; i < 10; i++) {
        long args[6] = {0};
        long ret = 0;
        g_autoptr(GError) err = NULL;

        g_assert_true(uffd_inject_syscall(pid, __NR_getpid, args, &ret, &err));
        g_assert_no_error(err);
        g_assert_cmpint(ret, ==, pid);
    }
    create_ok(pid, UFFD_INJECT_SYSCALL, &vmm_fd, &our_fd);
    api_ok(our_fd);
    for (int t = 0; t < nthreads; t++) {
        before[t] = count_of(t);
    }
    for (int t = 0; t < nthreads; t++) {
        wait_slots(t, before[t] + 20);
        check_hashes(t);
    }
    close(our_fd);
    reap(pid);
}

/*
 * Real-time signals queue: every one sent while the thread is held by the
 * injection must still be handled exactly once afterwards.
 */
static void *send_rt(void *arg)
{
    pid_t pid = GPOINTER_TO_INT(arg);

    for (int i = 0; i < 2000; i++) {
        kill(pid, SIGRTMIN);
        if (i % 16 == 0) {
            g_usleep(50);
        }
    }
    return NULL;
}

static void test_signals_held(void)
{
    pid_t pid;
    pthread_t th;
    gint64 deadline;
    int n = 0;

    reset_comm();
    pid = spawn_compute(1);
    wait_slots(0, 5);
    pthread_create(&th, NULL, send_rt, GINT_TO_POINTER(pid));
    for (; n < 40; n++) {
        long args[6] = {0};
        long ret = 0;
        g_autoptr(GError) err = NULL;

        g_assert_true(uffd_inject_syscall(pid, __NR_getpid, args, &ret, &err));
        g_assert_no_error(err);
        g_assert_cmpint(ret, ==, pid);
    }
    pthread_join(th, NULL);
    deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (__atomic_load_n(&comm->rt_signals, __ATOMIC_RELAXED) < 2000 &&
           g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
    g_assert_cmpuint(comm->rt_signals, ==, 2000);
    wait_slots(0, count_of(0) + 5);
    check_hashes(0);
    reap(pid);
}

/* /proc/PID/syscall of a thread blocked in syscall @nr, or NULL. */
static char *blocked_in(pid_t pid, long nr)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/syscall", pid);
    g_autofree char *prefix = g_strdup_printf("%ld ", nr);
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < deadline) {
        char *line = NULL;

        if (g_file_get_contents(path, &line, NULL, NULL) &&
            g_str_has_prefix(line, prefix)) {
            g_strchomp(line);
            return line;
        }
        g_free(line);
        g_usleep(1000);
    }
    return NULL;
}

static void reader_main(int in, int out)
{
    struct reply r = {0};

    r.n = read(in, r.buf, sizeof(r.buf));
    r.err = errno;
    if (write(out, &r, sizeof(r)) != sizeof(r)) {
        _exit(1);
    }
    _exit(0);
}

static pid_t spawn_reader(bool unprivileged, int *to_child, int *from_child)
{
    int in[2], out[2];
    pid_t pid;

    g_assert_cmpint(pipe2(in, O_CLOEXEC), ==, 0);
    g_assert_cmpint(pipe2(out, O_CLOEXEC), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        if (unprivileged && setresuid(65534, 65534, 65534) < 0) {
            _exit(1);
        }
        reader_main(in[0], out[1]);
    }
    close(in[0]);
    close(out[1]);
    *to_child = in[1];
    *from_child = out[0];
    return pid;
}

static void read_reply(int fd, struct reply *r)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    g_assert_cmpint(poll(&p, 1, 5000), ==, 1);
    g_assert_cmpint(read(fd, r, sizeof(*r)), ==, sizeof(*r));
}

/* The stack pointer: the second-to-last field of /proc/PID/syscall. */
static uint64_t syscall_sp(const char *line)
{
    g_auto(GStrv) f = g_strsplit(line, " ", -1);
    guint n = g_strv_length(f);

    g_assert_cmpuint(n, ==, 9);
    return g_ascii_strtoull(f[n - 2], NULL, 16);
}

static void read_stack(pid_t pid, uint64_t sp, uint8_t *buf, size_t len)
{
    struct iovec local = {.iov_base = buf, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)(sp - len), .iov_len = len};

    g_assert_cmpint(process_vm_readv(pid, &local, 1, &remote, 1, 0), ==, len);
}

static bool no_device_fd_left(pid_t pid)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", pid);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d))) {
        g_autofree char *link = fd_link(pid, atoi(name));

        if (g_strcmp0(link, "/dev/userfaultfd") == 0) {
            return false;
        }
    }
    return true;
}

/*
 * A thread blocked in read(): after the injection it is blocked in the
 * same read again (same args, sp, pc) with the bytes below its stack
 * unchanged, and that read returns the data written afterwards.
 */
static void test_blocked_read(gconstpointer data)
{
    enum uffd_inject_via via = GPOINTER_TO_INT(data);
    uint8_t stack_before[1024], stack_after[1024];
    g_autofree char *before = NULL;
    g_autofree char *after = NULL;
    struct reply r;
    int to_child, from_child, vmm_fd, our_fd;
    pid_t pid;

    if (via == UFFD_INJECT_DEVICE && access("/dev/userfaultfd", F_OK) != 0) {
        g_test_skip("no /dev/userfaultfd on this kernel");
        return;
    }
    pid = spawn_reader(false, &to_child, &from_child);
    before = blocked_in(pid, __NR_read);
    g_assert_nonnull(before);
    read_stack(pid, syscall_sp(before), stack_before, sizeof(stack_before));

    create_ok(pid, via, &vmm_fd, &our_fd);
    api_ok(our_fd);
    if (via == UFFD_INJECT_DEVICE) {
        g_assert_true(no_device_fd_left(pid));
    }

    after = blocked_in(pid, __NR_read);
    g_assert_cmpstr(after, ==, before);
    read_stack(pid, syscall_sp(after), stack_after, sizeof(stack_after));
    g_assert_cmpmem(stack_before, sizeof(stack_before), stack_after,
                    sizeof(stack_after));

    g_assert_cmpint(write(to_child, "hello", 5), ==, 5);
    read_reply(from_child, &r);
    g_assert_cmpint(r.n, ==, 5);
    g_assert_cmpmem(r.buf, 5, "hello", 5);
    close(our_fd);
    close(to_child);
    close(from_child);
    reap(pid);
}

static bool unprivileged_uffd_refused(void)
{
    g_autofree char *v = NULL;

    return g_file_get_contents("/proc/sys/vm/unprivileged_userfaultfd", &v,
                               NULL, NULL) &&
           v[0] == '0';
}

/*
 * An unprivileged VMM with vm.unprivileged_userfaultfd=0: the syscall gets
 * EPERM, the fallback tries /dev/userfaultfd (root-only here) and says so;
 * the VMM's blocked read is untouched either way.
 */
static void test_unprivileged(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *before = NULL;
    g_autofree char *after = NULL;
    enum uffd_inject_via used;
    struct reply r;
    int to_child, from_child, vmm_fd, our_fd;
    pid_t pid;

    if (getuid() != 0 || !unprivileged_uffd_refused()) {
        g_test_skip("needs root and vm.unprivileged_userfaultfd=0");
        return;
    }
    pid = spawn_reader(true, &to_child, &from_child);
    before = blocked_in(pid, __NR_read);
    g_assert_nonnull(before);
    if (uffd_inject_create(pid, UFFD_INJECT_SYSCALL, &vmm_fd, &our_fd, &used,
                           &err)) {
        /* /dev/userfaultfd is open to others on this machine. */
        g_assert_cmpint(used, ==, UFFD_INJECT_DEVICE);
        close(our_fd);
    } else {
        g_assert_nonnull(strstr(err->message, "/dev/userfaultfd"));
        g_assert_null(strchr(err->message, '\n'));
        g_test_message("%s", err->message);
    }
    after = blocked_in(pid, __NR_read);
    g_assert_cmpstr(after, ==, before);
    g_assert_cmpint(write(to_child, "x", 1), ==, 1);
    read_reply(from_child, &r);
    g_assert_cmpint(r.n, ==, 1);
    close(to_child);
    close(from_child);
    reap(pid);
}

static void sleeper_main(int out)
{
    struct timespec ts = {0, SLEEP_MS * 1000000l}, a, b;
    struct reply r = {0};

    clock_gettime(CLOCK_MONOTONIC, &a);
    r.n = syscall(__NR_nanosleep, &ts, NULL);
    r.err = errno;
    clock_gettime(CLOCK_MONOTONIC, &b);
    r.elapsed_ns =
        (b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec);
    if (write(out, &r, sizeof(r)) != sizeof(r)) {
        _exit(1);
    }
    _exit(0);
}

/*
 * nanosleep restarts through restart_syscall: it sleeps what was left, no
 * less (an EINTR) and not all over again (a plain restart).
 */
static void test_nanosleep(void)
{
    g_autofree char *line = NULL;
    struct reply r;
    int out[2], vmm_fd, our_fd;
    pid_t pid;

    g_assert_cmpint(pipe2(out, O_CLOEXEC), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        sleeper_main(out[1]);
    }
    close(out[1]);
    line = blocked_in(pid, __NR_nanosleep);
    g_assert_nonnull(line);
    /* Halfway: a restart from scratch would sleep SLEEP_MS more. */
    g_usleep(SLEEP_MS / 2 * 1000);
    create_ok(pid, UFFD_INJECT_SYSCALL, &vmm_fd, &our_fd);
    read_reply(out[0], &r);
    g_assert_cmpint(r.n, ==, 0);
    g_assert_cmpint(r.elapsed_ns, >=, SLEEP_MS * 1000000ll);
    g_assert_cmpint(r.elapsed_ns, <, (SLEEP_MS + SLEEP_MS / 3) * 1000000ll);
    g_test_message("slept %.1f ms", r.elapsed_ns / 1e6);
    close(our_fd);
    close(out[0]);
    reap(pid);
}

static void fault_main(int in, int out)
{
    int fd = memfd_create("guest", MFD_CLOEXEC);
    volatile uint8_t *p;
    char go;

    if (fd < 0 || ftruncate(fd, PAGE) < 0) {
        _exit(1);
    }
    p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        _exit(1);
    }
    comm->addr[0] = (uintptr_t)p;
    __atomic_store_n(&comm->ready, 1, __ATOMIC_RELEASE);
    if (read(in, &go, 1) != 1) {
        _exit(1);
    }
    go = p[100]; /* faults: resolved by the parent through our uffd */
    if (write(out, &go, 1) != 1) {
        _exit(1);
    }
    for (;;) {
        pause();
    }
}

/* Register the child's memfd page MISSING, catch its fault, fill it. */
static void test_fault(void)
{
    struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};
    struct uffdio_copy copy = {.len = PAGE};
    struct pollfd pfd = {.events = POLLIN};
    g_autofree uint8_t *page = g_malloc(PAGE);
    g_autofree char *line = NULL;
    struct uffd_msg msg;
    int to_child, from_child, vmm_fd, our_fd;
    uint64_t addr;
    uint8_t got;
    pid_t pid;
    int in[2], out[2];

    reset_comm();
    g_assert_cmpint(pipe2(in, O_CLOEXEC), ==, 0);
    g_assert_cmpint(pipe2(out, O_CLOEXEC), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        fault_main(in[0], out[1]);
    }
    close(in[0]);
    close(out[1]);
    to_child = in[1];
    from_child = out[0];
    line = blocked_in(pid, __NR_read);
    g_assert_nonnull(line);
    addr = comm->addr[0];

    create_ok(pid, UFFD_INJECT_SYSCALL, &vmm_fd, &our_fd);
    api_ok(our_fd);
    reg.range.start = addr;
    reg.range.len = PAGE;
    g_assert_cmpint(ioctl(our_fd, UFFDIO_REGISTER, &reg), ==, 0);
    g_assert_cmpint(write(to_child, "g", 1), ==, 1);

    pfd.fd = our_fd;
    g_assert_cmpint(poll(&pfd, 1, 5000), ==, 1);
    g_assert_cmpint(read(our_fd, &msg, sizeof(msg)), ==, sizeof(msg));
    g_assert_cmpint(msg.event, ==, UFFD_EVENT_PAGEFAULT);
    g_assert_cmphex(msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1), ==,
                    addr);

    memset(page, 0x5a, PAGE);
    copy.dst = addr;
    copy.src = (uintptr_t)page;
    g_assert_cmpint(ioctl(our_fd, UFFDIO_COPY, &copy), ==, 0);
    g_assert_cmpint(
        poll(&(struct pollfd){.fd = from_child, .events = POLLIN}, 1, 5000), ==,
        1);
    g_assert_cmpint(read(from_child, &got, 1), ==, 1);
    g_assert_cmphex(got, ==, 0x5a);
    /* The child's own copy is still there. */
    check_is_uffd(pid, vmm_fd);

    close(our_fd);
    close(to_child);
    close(from_child);
    reap(pid);
}

static void test_exited(void)
{
    g_autoptr(GError) err = NULL;
    int vmm_fd, our_fd, status;
    enum uffd_inject_via used;
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        _exit(0);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_false(uffd_inject_create(pid, UFFD_INJECT_SYSCALL, &vmm_fd,
                                      &our_fd, &used, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("%s", err->message);
}

/* ---- proc_ram: find a child's shared RAM by size ---- */

#define RAM_A (2u << 20)
#define RAM_B (3u << 20)
#define RAM_C (5u << 20)

static void ram_main(int out)
{
    g_autofree char *shm = g_strdup_printf("/dev/shm/test_inject.%d", getpid());
    int mfd = memfd_create("memory-backend-memfd", MFD_CLOEXEC);
    int sfd = open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    uint8_t *a, *b, *c;

    unlink(shm);
    if (mfd < 0 || sfd < 0 || ftruncate(mfd, RAM_A) < 0 ||
        ftruncate(sfd, RAM_B) < 0) {
        _exit(1);
    }
    a = mmap(NULL, RAM_A, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    b = mmap(NULL, RAM_B, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    c = mmap(NULL, RAM_C, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED) {
        _exit(1);
    }
    for (size_t i = 0; i < RAM_A; i += PAGE) {
        a[i] = 'a' + (i / PAGE) % 26;
    }
    for (size_t i = 0; i < RAM_B; i += PAGE) {
        b[i] = 'A' + (i / PAGE) % 26;
    }
    memset(c, 'c', RAM_C);
    comm->addr[0] = (uintptr_t)a;
    comm->addr[1] = (uintptr_t)b;
    __atomic_store_n(&comm->ready, 1, __ATOMIC_RELEASE);
    close(out);
    for (;;) {
        pause();
    }
}

static void check_region(const struct region *r, uint64_t base, uint64_t size,
                         char first)
{
    uint8_t byte;

    g_assert_cmphex(r->base, ==, base);
    g_assert_cmpuint(r->size, ==, size);
    g_assert_cmpuint(r->kind, ==, BACKING_SHMEM);
    g_assert_cmpuint(r->page_size, ==, PAGE);
    g_assert_cmpuint(r->offset, ==, 0);
    for (uint64_t i = 0; i < size; i += PAGE) {
        g_assert_cmpint(pread(r->fd, &byte, 1, r->offset + i), ==, 1);
        g_assert_cmpint(byte, ==, first + (i / PAGE) % 26);
    }
}

static void test_proc_ram(void)
{
    uint64_t sizes[] = {RAM_A, RAM_B};
    uint64_t priv[] = {RAM_C};
    uint64_t none[] = {7u << 20};
    g_autoptr(GError) err = NULL;
    struct region_table t;
    pid_t pid;
    int status;

    reset_comm();
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        ram_main(-1);
    }
    while (!__atomic_load_n(&comm->ready, __ATOMIC_ACQUIRE)) {
        g_assert_cmpint(waitpid(pid, &status, WNOHANG), ==, 0);
        g_usleep(1000);
    }
    region_table_init(&t);
    g_assert_true(proc_ram_find(pid, sizes, 2, &t, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(t.n, ==, 2);
    check_region(region_table_lookup(&t, comm->addr[0]), comm->addr[0], RAM_A,
                 'a');
    check_region(region_table_lookup(&t, comm->addr[1]), comm->addr[1], RAM_B,
                 'A');
    g_assert_cmpstr(region_table_lookup(&t, comm->addr[0])->name, ==,
                    "memory-backend-memfd");
    region_table_clear(&t);

    g_assert_false(proc_ram_find(pid, priv, 1, &t, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
    g_assert_nonnull(strstr(err->message, "a private mapping"));
    g_assert_nonnull(strstr(err->message, "memory-backend-memfd"));
    g_assert_nonnull(strstr(err->message, "size=5M,share=on"));
    g_assert_null(strchr(err->message, '\n'));
    g_test_message("%s", err->message);
    g_clear_error(&err);

    g_assert_false(proc_ram_find(pid, none, 1, &t, &err));
    g_assert_nonnull(strstr(err->message, "no shared mapping"));
    g_clear_error(&err);
    g_assert_cmpuint(t.n, ==, 0);

    reap(pid);
    g_assert_false(proc_ram_find(pid, sizes, 2, &t, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    comm = mmap(NULL, sizeof(*comm), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    g_assert_true(comm != MAP_FAILED);

    g_test_add_data_func("/inject/compute/one-thread", GINT_TO_POINTER(1),
                         test_compute);
    g_test_add_data_func("/inject/compute/four-threads",
                         GINT_TO_POINTER(NTHREADS), test_compute);
    g_test_add_func("/inject/signals-held", test_signals_held);
    g_test_add_data_func("/inject/blocked-read/syscall",
                         GINT_TO_POINTER(UFFD_INJECT_SYSCALL),
                         test_blocked_read);
    g_test_add_data_func("/inject/blocked-read/device",
                         GINT_TO_POINTER(UFFD_INJECT_DEVICE),
                         test_blocked_read);
    g_test_add_func("/inject/nanosleep", test_nanosleep);
    g_test_add_func("/inject/unprivileged-fallback", test_unprivileged);
    g_test_add_func("/inject/fault", test_fault);
    g_test_add_func("/inject/exited", test_exited);
    g_test_add_func("/inject/proc-ram", test_proc_ram);
    return g_test_run();
}
