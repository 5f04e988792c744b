/*
 * uffd_inject.h - create a userfaultfd inside an unmodified VMM (attached
 * by pid) and take a copy of it, so QEMU needs no postcopyd support.
 *
 * Contract: one thread of the VMM (the thread group leader) is stopped with
 * ptrace for a few syscalls run at an existing `syscall` instruction of its
 * own (the [vdso]); its text is never written, and its registers and the
 * bytes below its stack pointer that held a path are put back exactly.  A
 * syscall the thread was blocked in restarts by itself afterwards.
 * Signals that arrive meanwhile are held back and sent again after detach
 * (their siginfo is lost).  Every wait times out (5 s) instead of hanging.
 * x86_64 only; elsewhere every call fails with a clear error.
 *
 * The VMM keeps its own copy of the uffd open on purpose: if the daemon
 * dies, faults stay blocked instead of reading stale memory.
 */
#ifndef POSTCOPYD_UFFD_INJECT_H
#define POSTCOPYD_UFFD_INJECT_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

enum uffd_inject_via {
    UFFD_INJECT_SYSCALL = 1, /* userfaultfd(2); /dev/userfaultfd on EPERM */
    UFFD_INJECT_DEVICE = 2,  /* open /dev/userfaultfd + USERFAULTFD_IOC_NEW */
};

/* "userfaultfd syscall" or "/dev/userfaultfd", for logs. */
const char *uffd_inject_via_name(enum uffd_inject_via via);

/*
 * Run syscall @nr with @args in thread @pid and return its raw result
 * (a negative errno on failure) in *@ret.  False only when the injection
 * itself failed (pid gone, refused, timed out).
 */
bool uffd_inject_syscall(pid_t pid, long nr, const long args[6], long *ret,
                         GError **err);

/*
 * Create a uffd (O_CLOEXEC | O_NONBLOCK) in VMM @pid, the way @via says,
 * and copy it into this process with pidfd_getfd().  *@vmm_fd is its
 * number in the VMM, *@our_fd our copy (caller closes), *@used the way
 * that worked.
 */
bool uffd_inject_create(pid_t pid, enum uffd_inject_via via, int *vmm_fd,
                        int *our_fd, enum uffd_inject_via *used, GError **err);

/* Our copy of fd @fd of process @pid (pidfd_getfd); -1 with @err. */
int uffd_inject_copy_fd(pid_t pid, int fd, GError **err);

/*
 * A daemon restarted in postcopy carries on with the uffd it left in the
 * VMM (the VMM kept its copy: the guest's faults wait on it): take that
 * one, the only userfaultfd VMM @pid holds, instead of making a new one.
 */
bool uffd_inject_take_existing(pid_t pid, int *vmm_fd, int *our_fd,
                               GError **err);

#endif /* POSTCOPYD_UFFD_INJECT_H */
