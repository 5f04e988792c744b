/*
 * uffd_inject.c - ptrace syscall injection into a VMM thread, and the uffd
 * creation built on it (contract in uffd_inject.h).
 *
 * Each injection runs in its own short-lived thread: ptrace ties a tracee
 * to the tracer *thread*, so whatever goes wrong (a timeout while the
 * target never stops), that thread's exit detaches the VMM for good instead
 * of leaving it to stop later under a tracer that no longer waits.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>

#include "uffd_compat.h"
#include "uffd_inject.h"

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif

const char *uffd_inject_via_name(enum uffd_inject_via via)
{
    switch (via) {
    case UFFD_INJECT_SYSCALL:
        return "userfaultfd syscall";
    case UFFD_INJECT_DEVICE:
        return "/dev/userfaultfd";
    }
    return "unknown";
}

#if defined(__x86_64__)

#define INJECT_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define RED_ZONE          128
#define SCAN_MAX          (1u << 20)
#define SIG_MAX           64

/* Kernel-internal restart codes a stopped thread can show in rax. */
#define ERESTARTSYS           512
#define ERESTARTNOINTR        513
#define ERESTARTNOHAND        514
#define ERESTART_RESTARTBLOCK 516

struct session {
    pid_t pid;
    gint64 deadline;
    struct user_regs_struct saved; /* restart done, orig_rax = -1 */
    uint64_t syscall_insn;
    uint16_t held[SIG_MAX + 1]; /* per signal: held back, resent later */
    bool attached;
    bool stopped; /* in a ptrace-stop, registers ours to change */
    bool gone;
};

static void set_gone(struct session *s, GError **err)
{
    s->gone = true;
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                "VMM pid %d exited during syscall injection", s->pid);
}

static bool ptrace_failed(struct session *s, const char *what, GError **err)
{
    int e = errno;

    if (e == ESRCH) {
        set_gone(s, err);
        return false;
    }
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(e),
                "ptrace %s on pid %d: %s", what, s->pid, g_strerror(e));
    return false;
}

/*
 * Wait for the next stop of s->pid.  Polled: waitpid() has no timeout, and
 * a thread stuck in an uninterruptible wait must not hang the daemon.
 */
static bool wait_stop(struct session *s, int *status, GError **err)
{
    gulong delay = 20;

    for (;;) {
        pid_t r = waitpid(s->pid, status, __WALL | WNOHANG);

        if (r == s->pid && WIFSTOPPED(*status)) {
            s->stopped = true;
            return true;
        }
        if (r == s->pid || (r < 0 && errno == ECHILD)) {
            set_gone(s, err);
            return false;
        }
        if (r < 0 && errno != EINTR) {
            return ptrace_failed(s, "wait", err);
        }
        if (g_get_monotonic_time() >= s->deadline) {
            g_set_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "pid %d did not stop for syscall injection in %d s",
                        s->pid, INJECT_TIMEOUT_US / G_USEC_PER_SEC);
            return false;
        }
        g_usleep(delay);
        delay = MIN(delay * 2, 1000);
    }
}

/*
 * A stop we did not ask for: hold back the signal it carries (delivering
 * it now would run a handler on our registers, over our stack bytes).  A
 * group stop (SIGSTOP & co.) is held too, so it happens again after detach.
 */
static void hold_signal(struct session *s, int status)
{
    int sig = WSTOPSIG(status);
    int event = status >> 16;

    if (sig == (SIGTRAP | 0x80) || sig < 1 || sig > SIG_MAX) {
        return;
    }
    if (event == PTRACE_EVENT_STOP && sig == SIGTRAP) {
        return; /* our PTRACE_INTERRUPT */
    }
    if (event && event != PTRACE_EVENT_STOP) {
        return;
    }
    /* Counted: queued real-time signals each arrive once. */
    s->held[sig] = MIN(s->held[sig] + 1, G_MAXUINT16);
}

/* Resume (suppressing any signal) until the next syscall-entry/exit stop. */
static bool next_syscall_stop(struct session *s, GError **err)
{
    int status;

    for (;;) {
        if (ptrace(PTRACE_SYSCALL, s->pid, 0, 0) < 0) {
            return ptrace_failed(s, "SYSCALL", err);
        }
        s->stopped = false;
        if (!wait_stop(s, &status, err)) {
            return false;
        }
        if (WSTOPSIG(status) == (SIGTRAP | 0x80)) {
            return true;
        }
        hold_signal(s, status);
    }
}

/*
 * A thread stopped inside an interrupted syscall has rax = -ERESTART*; the
 * kernel restarts it on the way out only while orig_rax >= 0, and we set
 * orig_rax = -1 in every register set we write so that it never rewrites
 * ours.  So do the restart in the saved copy: back over the 2-byte
 * syscall instruction with the number (or restart_syscall) in rax.
 */
static void fixup_restart(struct user_regs_struct *r)
{
    if ((long)r->orig_rax >= 0) {
        switch ((long)r->rax) {
        case -ERESTARTSYS:
        case -ERESTARTNOINTR:
        case -ERESTARTNOHAND:
            r->rax = r->orig_rax;
            r->rip -= 2;
            break;
        case -ERESTART_RESTARTBLOCK:
            r->rax = __NR_restart_syscall;
            r->rip -= 2;
            break;
        }
    }
    r->orig_rax = -1;
}

static bool remote_read(pid_t pid, uint64_t addr, void *buf, size_t len,
                        GError **err)
{
    struct iovec local = {.iov_base = buf, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)addr, .iov_len = len};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);

    if (n == (ssize_t)len) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                "read of pid %d memory at 0x%" PRIx64 ": %s", pid, addr,
                n < 0 ? g_strerror(errno) : "short");
    return false;
}

static bool remote_write(pid_t pid, uint64_t addr, const void *buf, size_t len,
                         GError **err)
{
    struct iovec local = {.iov_base = (void *)buf, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)addr, .iov_len = len};
    ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);

    if (n == (ssize_t)len) {
        return true;
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                "write of pid %d memory at 0x%" PRIx64 ": %s", pid, addr,
                n < 0 ? g_strerror(errno) : "short");
    return false;
}

/* First 0x0f 0x05 (syscall) in [start, end) of the target, if readable. */
static bool scan_range(pid_t pid, uint64_t start, uint64_t end, uint64_t *insn)
{
    size_t len = MIN(end - start, SCAN_MAX);
    g_autofree uint8_t *buf = g_malloc(len);
    const uint8_t *p;

    if (!remote_read(pid, start, buf, len, NULL)) {
        return false;
    }
    p = memmem(buf, len, "\x0f\x05", 2);
    if (!p) {
        return false;
    }
    *insn = start + (p - buf);
    return true;
}

/*
 * Find a syscall instruction to point rip at, the [vdso] first: it is
 * small and always mapped.  The bytes need not start an instruction of the
 * original code; the CPU only executes these two.
 */
static bool find_syscall_insn(struct session *s, GError **err)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/maps", s->pid);
    g_autofree char *maps = NULL;
    g_auto(GStrv) lines = NULL;

    if (!g_file_get_contents(path, &maps, NULL, err)) {
        return false;
    }
    lines = g_strsplit(maps, "\n", -1);
    for (int pass = 0; pass < 2; pass++) {
        for (char **l = lines; *l; l++) {
            uint64_t start, end;
            char perms[5];
            bool vdso = g_str_has_suffix(*l, "[vdso]");

            if (sscanf(*l, "%" SCNx64 "-%" SCNx64 " %4s", &start, &end,
                       perms) != 3 ||
                perms[2] != 'x' || vdso != (pass == 0)) {
                continue;
            }
            if (scan_range(s->pid, start, end, &s->syscall_insn)) {
                return true;
            }
        }
    }
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                "no syscall instruction in the executable mappings of pid %d",
                s->pid);
    return false;
}

/* The "-sandbox" option of QEMU's command line, if it has one. */
static bool qemu_sandbox_arg(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/cmdline", pid);
    g_autofree char *cmd = NULL;
    gsize len;
    const char *base;

    if (!g_file_get_contents(path, &cmd, &len, NULL) || !len) {
        return false;
    }
    base = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
    if (!g_str_has_prefix(base, "qemu-system-")) {
        return false;
    }
    for (const char *a = cmd; a < cmd + len; a += strlen(a) + 1) {
        if (strcmp(a, "-sandbox") == 0) {
            return true;
        }
    }
    return false;
}

/*
 * A seccomp filter may kill the VMM for a syscall it does not expect:
 * refuse rather than risk the guest.  One exception: QEMU's own
 * -sandbox (libvirt turns it on by default) as its only filter.  It
 * allows by default and denies fixed groups (obsolete calls, privilege
 * changes, spawning, resource control, QEMU 7.2), none of which holds
 * userfaultfd, openat or ioctl, the calls we inject; QEMU itself makes
 * them for its own postcopy.
 */
static bool seccomp_allows(pid_t pid, const char *status)
{
    const char *filters = strstr(status, "\nSeccomp_filters:\t");

    return filters &&
           g_ascii_strtoll(filters + strlen("\nSeccomp_filters:\t"), NULL,
                           10) == 1 &&
           qemu_sandbox_arg(pid);
}

static bool check_target(pid_t pid, GError **err)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", pid);
    g_autofree char *status = NULL;
    const char *line;

    if (!g_file_get_contents(path, &status, NULL, NULL)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "no process %d (VMM exited?)", pid);
        return false;
    }
    if (strstr(status, "\nState:\tZ")) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "process %d has exited", pid);
        return false;
    }
    line = strstr(status, "\nSeccomp:\t");
    if (line && line[strlen("\nSeccomp:\t")] != '0' &&
        !seccomp_allows(pid, status)) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "pid %d runs under seccomp (QEMU -sandbox?): an injected "
                    "syscall could kill it",
                    pid);
        return false;
    }
    return true;
}

static bool session_begin(struct session *s, pid_t pid, GError **err)
{
    int status;

    memset(s, 0, sizeof(*s));
    s->pid = pid;
    s->deadline = g_get_monotonic_time() + INJECT_TIMEOUT_US;
    if (!check_target(pid, err)) {
        return false;
    }
    if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD) < 0) {
        int e = errno;

        /* Exited in between: say so rather than ESRCH/EPERM. */
        if (!check_target(pid, err)) {
            return false;
        }
        errno = e;
        return ptrace_failed(s, "SEIZE", err);
    }
    s->attached = true;
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0) {
        return ptrace_failed(s, "INTERRUPT", err);
    }
    /* Any stop will do, a signal-delivery-stop too (its signal is held). */
    if (!wait_stop(s, &status, err)) {
        return false;
    }
    hold_signal(s, status);
    if (ptrace(PTRACE_GETREGS, pid, 0, &s->saved) < 0) {
        return ptrace_failed(s, "GETREGS", err);
    }
    fixup_restart(&s->saved);
    return find_syscall_insn(s, err);
}

static bool session_syscall(struct session *s, long nr, const long args[6],
                            long *ret, GError **err)
{
    struct user_regs_struct regs = s->saved;

    regs.rip = s->syscall_insn;
    regs.rax = nr;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    regs.orig_rax = -1;
    if (ptrace(PTRACE_SETREGS, s->pid, 0, &regs) < 0) {
        return ptrace_failed(s, "SETREGS", err);
    }
    if (!next_syscall_stop(s, err)) {
        return false;
    }
    if (ptrace(PTRACE_GETREGS, s->pid, 0, &regs) < 0) {
        return ptrace_failed(s, "GETREGS", err);
    }
    if ((long)regs.orig_rax != nr) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "pid %d entered syscall %lld, not the injected %ld", s->pid,
                    (long long)regs.orig_rax, nr);
        return false;
    }
    if (!next_syscall_stop(s, err)) {
        return false;
    }
    if (ptrace(PTRACE_GETREGS, s->pid, 0, &regs) < 0) {
        return ptrace_failed(s, "GETREGS", err);
    }
    *ret = (long)regs.rax;
    return true;
}

/* Put the registers back and let go; the held signals are the caller's. */
static void session_end(struct session *s)
{
    if (!s->attached || s->gone) {
        return;
    }
    if (s->stopped) {
        if (ptrace(PTRACE_SETREGS, s->pid, 0, &s->saved) < 0) {
            g_warning("pid %d: registers not restored: %s", s->pid,
                      g_strerror(errno));
        }
    }
    /* Fails if it never stopped: the tracer thread's exit detaches then. */
    ptrace(PTRACE_DETACH, s->pid, 0, 0);
}

typedef bool (*session_fn)(struct session *s, void *opaque, GError **err);

struct tracer_job {
    pid_t pid;
    session_fn fn;
    void *opaque;
    uint16_t held[SIG_MAX + 1];
    GError *err;
    bool ok;
};

static gpointer tracer_main(gpointer data)
{
    struct tracer_job *job = data;
    struct session s;

    if (session_begin(&s, job->pid, &job->err)) {
        job->ok = job->fn(&s, job->opaque, &job->err);
    }
    session_end(&s);
    memcpy(job->held, s.held, sizeof(job->held));
    return NULL;
}

/* Run @fn in a stopped VMM thread, from a thread of its own (see top). */
static bool run_session(pid_t pid, session_fn fn, void *opaque, GError **err)
{
    struct tracer_job job = {.pid = pid, .fn = fn, .opaque = opaque};

    g_thread_join(g_thread_new("uffd-inject", tracer_main, &job));
    /* Detached now: a signal sent earlier would have stopped it again. */
    for (int sig = 1; sig <= SIG_MAX; sig++) {
        for (unsigned i = 0; i < job.held[sig]; i++) {
            syscall(SYS_tgkill, pid, pid, sig);
        }
    }
    if (!job.ok) {
        g_propagate_error(err, job.err);
    }
    return job.ok;
}

struct one_syscall {
    long nr;
    const long *args;
    long ret;
};

static bool one_syscall_fn(struct session *s, void *opaque, GError **err)
{
    struct one_syscall *c = opaque;

    return session_syscall(s, c->nr, c->args, &c->ret, err);
}

bool uffd_inject_syscall(pid_t pid, long nr, const long args[6], long *ret,
                         GError **err)
{
    struct one_syscall c = {.nr = nr, .args = args};

    if (!run_session(pid, one_syscall_fn, &c, err)) {
        return false;
    }
    *ret = c.ret;
    return true;
}

static bool syscall_failed(struct session *s, const char *what, long ret,
                           GError **err)
{
    g_set_error(err, G_IO_ERROR, g_io_error_from_errno(-ret),
                "%s in VMM pid %d: %s", what, s->pid, g_strerror(-ret));
    return false;
}

/*
 * openat() needs the path in the VMM's memory: borrow stack bytes below
 * the red zone (nothing lives there while the thread is stopped; signals
 * are held) and put them back right after.
 */
static bool open_device(struct session *s, long *devfd, GError **err)
{
    static const char path[] = "/dev/userfaultfd";
    uint64_t addr = (s->saved.rsp - RED_ZONE - sizeof(path)) & ~15ull;
    long args[6] = {AT_FDCWD, (long)addr, O_RDWR | O_CLOEXEC};
    char old[sizeof(path)];
    bool ok;

    if (!remote_read(s->pid, addr, old, sizeof(old), err) ||
        !remote_write(s->pid, addr, path, sizeof(path), err)) {
        return false;
    }
    ok = session_syscall(s, __NR_openat, args, devfd, err);
    if (!remote_write(s->pid, addr, old, sizeof(old), ok ? err : NULL)) {
        ok = false;
    }
    if (ok && *devfd < 0) {
        return syscall_failed(s, "open /dev/userfaultfd", *devfd, err);
    }
    return ok;
}

static bool create_via_device(struct session *s, long *fd, GError **err)
{
    long devfd;
    long args[6] = {0, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK};
    long close_args[6] = {0};
    long ignored;

    if (!open_device(s, &devfd, err)) {
        return false;
    }
    args[0] = close_args[0] = devfd;
    if (!session_syscall(s, __NR_ioctl, args, fd, err)) {
        return false;
    }
    if (!session_syscall(s, __NR_close, close_args, &ignored, err)) {
        return false;
    }
    if (*fd < 0) {
        return syscall_failed(s, "USERFAULTFD_IOC_NEW", *fd, err);
    }
    return true;
}

struct create_job {
    enum uffd_inject_via via;
    enum uffd_inject_via used;
    long fd;
};

static bool create_fn(struct session *s, void *opaque, GError **err)
{
    struct create_job *job = opaque;
    long args[6] = {O_CLOEXEC | O_NONBLOCK};

    if (job->via == UFFD_INJECT_SYSCALL) {
        if (!session_syscall(s, __NR_userfaultfd, args, &job->fd, err)) {
            return false;
        }
        job->used = UFFD_INJECT_SYSCALL;
        if (job->fd >= 0) {
            return true;
        }
        /* vm.unprivileged_userfaultfd=0 and an unprivileged VMM. */
        if (job->fd != -EPERM) {
            return syscall_failed(s, "userfaultfd()", job->fd, err);
        }
    }
    job->used = UFFD_INJECT_DEVICE;
    if (!create_via_device(s, &job->fd, err)) {
        if (job->via == UFFD_INJECT_SYSCALL) {
            g_prefix_error(err, "userfaultfd() got EPERM (an unprivileged "
                                "VMM?), then ");
        }
        return false;
    }
    return true;
}

int uffd_inject_copy_fd(pid_t pid, int fd, GError **err)
{
    int pidfd = syscall(__NR_pidfd_open, pid, 0);
    int ours;

    if (pidfd < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "pidfd_open(%d): %s", pid, g_strerror(errno));
        return -1;
    }
    ours = syscall(__NR_pidfd_getfd, pidfd, fd, 0);
    if (ours < 0) {
        g_set_error(err, G_IO_ERROR, g_io_error_from_errno(errno),
                    "pidfd_getfd(%d, fd %d): %s", pid, fd, g_strerror(errno));
    }
    close(pidfd);
    return ours;
}

bool uffd_inject_create(pid_t pid, enum uffd_inject_via via, int *vmm_fd,
                        int *our_fd, enum uffd_inject_via *used, GError **err)
{
    struct create_job job = {.via = via};
    int ours;

    if (via != UFFD_INJECT_SYSCALL && via != UFFD_INJECT_DEVICE) {
        g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "unknown uffd injection way %d", via);
        return false;
    }
    if (!run_session(pid, create_fn, &job, err)) {
        return false;
    }
    ours = uffd_inject_copy_fd(pid, job.fd, err);
    if (ours < 0) {
        return false;
    }
    *vmm_fd = job.fd;
    *our_fd = ours;
    *used = job.used;
    return true;
}

#else /* !__x86_64__ */

bool uffd_inject_syscall(pid_t pid, long nr, const long args[6], long *ret,
                         GError **err)
{
    (void)nr, (void)args, (void)ret;
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "syscall injection into pid %d: only x86_64 is supported", pid);
    return false;
}

bool uffd_inject_create(pid_t pid, enum uffd_inject_via via, int *vmm_fd,
                        int *our_fd, enum uffd_inject_via *used, GError **err)
{
    (void)via, (void)vmm_fd, (void)our_fd, (void)used;
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "uffd injection into pid %d: only x86_64 is supported", pid);
    return false;
}

#endif /* __x86_64__ */
